//! The one-pass scanners (the usual shapes of URIs, name-addrs, Via values, parameter lists, CSeq,
//! header lines) against the general parsers they shortcut: whenever a scanner answers, the
//! general parser gives the same answer for the same text.

use proptest::prelude::*;

use super::header::{HeaderName, Headers};
use super::lex;
use super::name_addr::NameAddr;
use super::params::Params;
use super::typed::{CSeq, Via};
use super::uri::Uri;
use super::{Message, Text};

/// Pieces that make up URIs, name-addrs, Via values and parameter lists, odd ones included.
const ATOMS: &[&str] = &[
    "sip:",
    "sips:",
    "SIP:",
    "sIpS:",
    "tel:",
    "urn:",
    "sip",
    "user",
    "+31612345678",
    "a",
    "@",
    ":",
    "5060",
    "65535",
    "65536",
    "050600",
    "0",
    ".",
    "-",
    "host.example.com",
    "192.0.2.1",
    "[2001:db8::1]",
    "[",
    "]",
    ";",
    "lr",
    "=",
    "transport",
    "tcp",
    "?",
    "h=v",
    "&",
    "$",
    "%41",
    "%4",
    "%",
    ",",
    "\"",
    "\\",
    "<",
    ">",
    " ",
    "\t",
    "é",
    "/",
    "*",
    "!",
    "~",
    "'",
    "(",
    ")",
    "tag",
    "TAG",
    "branch",
    "z9hG4bK1",
    "SIP/2.0/UDP ",
    "SIP/2.0/",
    "SIP / 2.0 / TCP ",
    "UDP",
    "udp",
    "received",
    "rport",
    "expires",
    "600",
    "\"Bob\"",
    "\"a\\\"b\"",
    "\"unterminated",
    "Bob ",
    "<sip:a@b>",
    "<sip:x@192.0.2.9:5070;lr>",
    ";tag=1",
    ";branch=z9hG4bKx",
    "\r",
    "\n",
    "INVITE",
    "1",
    "00000000001",
    "4294967296",
];

fn atoms() -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(ATOMS), 0..14).prop_map(|v| v.concat())
}

/// One of `usual` (most of the time) or one of `odd`.
fn pick(
    usual: &'static [&'static str],
    odd: &'static [&'static str],
) -> impl Strategy<Value = &'static str> {
    prop_oneof![
        8 => proptest::sample::select(usual),
        1 => proptest::sample::select(odd),
    ]
}

/// Mostly well-formed URIs, each part picked from usual (most often) and odd choices.
fn uri_shaped() -> impl Strategy<Value = String> {
    (
        pick(&["sip:", "sips:", "SIP:"], &["tel:", "sip", "urn:"]),
        pick(
            &["", "alice@", "+3161@", "a:pw@", "a%41@", "a;b=c@", "a?b@"],
            &["%4@", "@", "é@", "a:@", ":p@"],
        ),
        pick(
            &["192.0.2.1", "host.example.com", "h", "a.b-c"],
            &["[2001:db8::1]", "", "h_x"],
        ),
        pick(&["", ":5060", ":65535"], &[":65536", ":", ":050600", ":5a"]),
        proptest::collection::vec(
            pick(
                &[
                    ";lr",
                    ";transport=tcp",
                    ";tag=1",
                    ";m=a/b&c$d+%41",
                    ";x=[::1]",
                ],
                &[";", ";a=", ";a=\"q\"", ";a b", ";a,b"],
            ),
            0..3,
        ),
        pick(&["", "?h=v", "?h=v&i=<w>"], &["?", "?a b", "?a\"b"]),
    )
        .prop_map(|(scheme, user, host, port, params, headers)| {
            format!("{scheme}{user}{host}{port}{}{headers}", params.concat())
        })
}

/// Mostly well-formed name-addrs.
fn name_addr_shaped() -> impl Strategy<Value = String> {
    (
        pick(
            &["", "\"Bob\" ", "\"a,b\"", "\"a\\\"b\" "],
            &["Bob ", "\"x", " ", "\"a\"\t"],
        ),
        pick(&["<"], &["", "< "]),
        uri_shaped(),
        pick(&[">"], &["", " >", ">>"]),
        proptest::collection::vec(
            pick(
                &[
                    ";tag=1",
                    ";expires=600",
                    ";q=0.5",
                    ";+sip.instance=\"<urn:x>\"",
                ],
                &[";", ";a=", " ;a", ";a=b c", ";a=[x]/y"],
            ),
            0..3,
        ),
        pick(&["", ", <sip:b@c>", ","], &[" , x", "x", " "]),
    )
        .prop_map(|(d, lt, uri, gt, params, rest)| {
            format!("{d}{lt}{uri}{gt}{}{rest}", params.concat())
        })
}

/// Mostly well-formed Via values.
fn via_shaped() -> impl Strategy<Value = String> {
    (
        pick(
            &["SIP/2.0/", "sip/2.0/"],
            &["SIP/2.1/", "SIP /2.0/", "SIP/2.0"],
        ),
        pick(&["UDP", "TCP", "TLS", "udp", "WSS"], &["", "U;P"]),
        pick(&[" ", "  ", "\t"], &[""]),
        pick(
            &["192.0.2.1", "host.example.com"],
            &["[2001:db8::1]", "", "h_x"],
        ),
        pick(&["", ":5060"], &[":65536", ":"]),
        proptest::collection::vec(
            pick(
                &[
                    ";branch=z9hG4bK1",
                    ";rport",
                    ";rport=5060",
                    ";received=[::1]",
                    ";a=\"q,\"",
                ],
                &[";", ";a=b/c", " ;x"],
            ),
            0..3,
        ),
        pick(&["", ", SIP/2.0/UDP x", ","], &[" , y", " "]),
    )
        .prop_map(|(p, t, ws, host, port, params, rest)| {
            format!("{p}{t}{ws}{host}{port}{}{rest}", params.concat())
        })
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![atoms(), uri_shaped(), name_addr_shaped(), via_shaped()]
}

/// The first comma-separated element, as [`Headers::values`] yields it.
fn first_element(s: &str) -> &str {
    lex::trim(lex::split_top(s, b',').next().unwrap_or(""))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, .. ProptestConfig::default() })]

    #[test]
    fn uri_scan_agrees(s in text()) {
        let t = Text::from(s.as_str());
        prop_assert_eq!(Uri::parse_text(t.clone()), Uri::parse_general(t));
        let wrapped = Text::from(format!("<{s}>;x"));
        if let Some((u, end)) = Uri::scan_until(&wrapped, &wrapped, 1, b'>') {
            prop_assert_eq!(Ok(u), Uri::parse_general(wrapped.slice_ref(&wrapped[1..end])));
            prop_assert_eq!(lex::find_byte(&wrapped, b'>'), Some(end));
        }
    }

    #[test]
    fn name_addr_scan_agrees(s in text()) {
        let t = Text::from(s.as_str());
        prop_assert_eq!(NameAddr::parse_text(&t), NameAddr::parse_general(&t, &t));
        if let Some((a, end)) = NameAddr::scan(&t, &t) {
            if end < t.len() && t.as_bytes()[end] == b',' {
                let first = first_element(&t);
                prop_assert_eq!(first, &t[..end]);
                prop_assert_eq!(Ok(a), NameAddr::parse_general(&t, first));
            }
        }
    }

    #[test]
    fn via_scan_agrees(s in text()) {
        let t = Text::from(s.as_str());
        prop_assert_eq!(Via::parse(&t), Via::parse_general(&t, &t));
        if let Some((v, end)) = Via::scan(&t, &t) {
            let first = first_element(&t);
            prop_assert_eq!(first, &t[..end]);
            prop_assert_eq!(Some(v), Via::parse_general(&t, first));
        }
    }

    #[test]
    fn typed_reads_agree_with_splitting_first(s in text()) {
        let mut h = Headers::new();
        h.push(HeaderName::Via, s.as_str());
        h.push(HeaderName::Contact, s.as_str());
        let via = h.values(&HeaderName::Via).next().map(|v| Via::parse_general(&v, &v));
        prop_assert_eq!(h.top_via().ok(), via.flatten());
        let contact = h.values(&HeaderName::Contact).next().and_then(|v| {
            if &*v == "*" {
                Some(super::Contact::Star)
            } else {
                NameAddr::parse_general(&v, &v).ok().map(super::Contact::Addr)
            }
        });
        prop_assert_eq!(h.contact().ok(), contact);
    }

    #[test]
    fn params_scan_agrees(s in text()) {
        for extra in [&b""[..], b"[]:", b"[]:/", b"[]/:&+$%"] {
            prop_assert_eq!(Params::check_str(&s, extra), Params::check_general(&s, extra));
        }
        let p = Params::from_text(Text::from(s.as_str()));
        for name in ["tag", "branch", "lr", "transport", "a", "", "h"] {
            let general = p.iter().find(|q| q.name.eq_ignore_ascii_case(name));
            prop_assert_eq!(p.get(name), general);
        }
    }

    #[test]
    fn cseq_and_scalars_agree(s in text()) {
        prop_assert_eq!(CSeq::parse(&s), CSeq::parse_general(&s));
        prop_assert_eq!(lex::parse_u32(&s), parse_u32_general(&s));
        let mut h = Headers::new();
        h.push(HeaderName::CallId, s.as_str());
        prop_assert_eq!(h.call_id().is_ok(), call_id_general(&s));
    }

    /// A header line with any name and value parses to the trimmed name and value.
    #[test]
    fn header_lines(name in "[A-Za-z-]{1,12}|v|i|[A-Za-z]{1,4} ", ws1 in "[ \t]{0,2}", value in text()) {
        prop_assume!(HeaderName::parse(name.trim_end()) != HeaderName::ContentLength);
        let value = value.replace(['\r', '\n'], "");
        let raw = format!("OPTIONS sip:a@b SIP/2.0\r\n{name}{ws1}:{value}\r\nl: 0\r\n\r\n");
        let parsed = Message::parse(raw.clone());
        let name_ok = lex::is_token(name.trim_end());
        prop_assert_eq!(parsed.is_ok(), name_ok, "{:?}", raw);
        if let Ok(m) = parsed {
            let h = m.headers().iter().next().unwrap();
            prop_assert_eq!(&h.name, &HeaderName::parse(name.trim_end()));
            prop_assert_eq!(&*h.value, lex::trim(&value));
        }
    }
}

/// `parse_u32` as it was: digits only, leading zeros allowed, fits in u32.
fn parse_u32_general(s: &str) -> Option<u32> {
    let s = lex::trim(s);
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let s = s.trim_start_matches('0');
    if s.is_empty() {
        return Some(0);
    }
    if s.len() > 10 {
        return None;
    }
    s.parse::<u64>().ok().and_then(|v| u32::try_from(v).ok())
}

/// RFC 3261 `callid = word ["@" word]`, written out.
fn call_id_general(v: &str) -> bool {
    let word = |b: u8| lex::is_token_char(b) || br#"()<>:\"/[]?{}"#.contains(&b);
    !v.is_empty()
        && v.split_once('@')
            .is_none_or(|(a, b)| !a.is_empty() && !b.is_empty() && !b.contains('@'))
        && v.bytes().all(|b| word(b) || b == b'@')
}

/// The usual shapes do take the one-pass paths (the comparisons above are not vacuous).
#[test]
fn usual_shapes_take_the_one_pass_paths() {
    for uri in [
        "<sip:+31612345678@192.0.2.10>",
        "<sip:192.0.2.20:5060;lr>",
        "<sips:agent-17:secret@sip.example.nl;transport=tls?subject=x>",
        "<sip:a%20b@h>",
    ] {
        let t = Text::from(uri);
        let (u, end) = Uri::scan_until(&t, &t, 1, b'>').expect(uri);
        assert_eq!((u.as_str(), end), (&uri[1..uri.len() - 1], uri.len() - 1));
    }
    for na in [
        "\"+31612345678\" <sip:+31612345678@192.0.2.10>;tag=as6f1e3b21",
        "<sip:agent-17@198.51.100.7:5062;transport=udp>;expires=600",
        "<sip:a@b>;q=0.5, <sip:c@d>",
    ] {
        let t = Text::from(na);
        assert!(NameAddr::scan(&t, &t).is_some(), "{na}");
    }
    for via in [
        "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-77ba429d3b1c8f5e;rport",
        "SIP/2.0/TCP h.example.com;branch=z9hG4bK1;received=192.0.2.1, SIP/2.0/UDP x",
    ] {
        let t = Text::from(via);
        assert!(Via::scan(&t, &t).is_some(), "{via}");
    }
    for p in [";tag=1", ";branch=z9hG4bK1;rport", ";lr;transport=udp"] {
        assert_eq!(
            super::params::scan(p.as_bytes(), 0, super::lex::C_VIA_VALUE, true),
            Some(p.len())
        );
    }
}
