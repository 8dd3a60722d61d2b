//! Property tests for `sip::message`: built messages survive write → parse unchanged; arbitrary
//! bytes never panic the parser, the validator or the stream framer; a stream split anywhere
//! yields the same frames. (cargo-fuzz targets in `fuzz/` cover the same ground for longer runs.)

use bytes::Bytes;
use proptest::prelude::*;
use sip::message::framer::Frame;
use sip::message::validate::{check, Policy};
use sip::message::{HeaderName, Message, Method, Request, Response, StatusCode, StreamFramer, Uri};

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        proptest::sample::select(Method::STANDARD.to_vec()),
        "[A-Z][A-Za-z0-9.!%*_+`'~-]{0,12}".prop_map(|s| Method::parse(&s)),
    ]
}

fn uri() -> impl Strategy<Value = Uri> {
    (
        proptest::option::of("[a-zA-Z0-9_.!~*'()&=+$,;?/-]{1,12}(%[0-9A-F]{2})?"),
        "[a-z][a-z0-9-]{0,10}(\\.[a-z]{2,5}){0,2}",
        proptest::option::of(1u16..),
        "(;[a-z]{1,6}(=[a-zA-Z0-9%]{1,6})?){0,3}",
        prop_oneof![Just("sip"), Just("sips"), Just("SIP")],
    )
        .prop_map(|(user, host, port, params, scheme)| {
            let mut s = format!("{scheme}:");
            if let Some(u) = user {
                s.push_str(&u);
                s.push('@');
            }
            s.push_str(&host);
            if let Some(p) = port {
                s.push_str(&format!(":{p}"));
            }
            s.push_str(&params);
            Uri::parse(s).expect("generated URI is valid")
        })
}

/// Header names: known ones (including ones usually written compact) and extension names.
fn header_name() -> impl Strategy<Value = HeaderName> {
    prop_oneof![
        proptest::sample::select(vec![
            HeaderName::Via,
            HeaderName::From,
            HeaderName::To,
            HeaderName::CallId,
            HeaderName::CSeq,
            HeaderName::Contact,
            HeaderName::Route,
            HeaderName::Subject,
            HeaderName::Supported,
            HeaderName::ReferTo,
            HeaderName::SessionExpires,
            HeaderName::PAssertedIdentity,
            HeaderName::WwwAuthenticate,
        ]),
        "X-[A-Za-z0-9.!%*_+`'~-]{1,16}".prop_map(|s| HeaderName::parse(&s)),
    ]
}

/// Values: no CR/LF, no leading/trailing whitespace; quotes, commas, `<>`, `%`, UTF-8 allowed.
fn header_value() -> impl Strategy<Value = String> {
    "([!-~]|é|ß|€)([ !-~\t]|é){0,40}".prop_map(|s| s.trim_end_matches([' ', '\t']).to_owned())
}

fn headers() -> impl Strategy<Value = Vec<(HeaderName, String)>> {
    proptest::collection::vec((header_name(), header_value()), 0..12)
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..200)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn built_requests_round_trip(m in method(), u in uri(), hs in headers(), b in body()) {
        let mut req = Request::new(m, u);
        for (n, v) in hs {
            req.headers.push(n, v);
        }
        req.set_body(Some("application/octet-stream"), b);
        let wire = req.to_bytes();
        let mut parsed = Request::parse(wire.clone()).expect("written request parses");
        prop_assert_eq!(parsed.headers.remove(&HeaderName::ContentLength), 1);
        prop_assert_eq!(&parsed, &req);
        // and writing again is byte-identical
        prop_assert_eq!(Message::Request(parsed).to_bytes(), wire);
    }

    #[test]
    fn built_responses_round_trip(code in 100u16..700, reason in "[ -~]{0,30}", hs in headers(), b in body()) {
        let mut resp = Response::new(StatusCode::new(code).expect("in range"));
        resp.reason = reason.trim_end().into();
        for (n, v) in hs {
            resp.headers.push(n, v);
        }
        resp.body = Bytes::from(b);
        let mut parsed = Response::parse(resp.to_bytes()).expect("written response parses");
        parsed.headers.remove(&HeaderName::ContentLength);
        prop_assert_eq!(parsed, resp);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = check(data.clone(), &Policy::DEFAULT);
        if let Ok(m) = Message::parse(data.clone()) {
            let h = m.headers();
            let _ = (h.top_via(), h.from(), h.to(), h.cseq(), h.call_id(), h.contacts().count());
            prop_assert!(Message::parse(m.to_bytes()).is_ok());
        }
        let mut f = StreamFramer::with_limits(512, 512);
        f.push(&data);
        while let Ok(Some(_)) = f.pop() {}
    }

    #[test]
    fn sip_like_garbage_never_panics(
        start in prop_oneof![
            Just("INVITE sip:a@b SIP/2.0".to_owned()),
            Just("SIP/2.0 200 OK".to_owned()),
            Just("ACK sip:x SIP/2.0".to_owned()),
            "[ -~]{0,30}",
        ],
        lines in proptest::collection::vec(("(Via|v|From|f|To|t|Call-ID|i|CSeq|Contact|m|l|Content-Length|Max-Forwards|Require|Accept|Content-Type)", "[ -~]{0,40}"), 0..10),
        sep in prop_oneof![Just("\r\n"), Just("\n"), Just("\r\n ")],
        body in "[ -~]{0,40}",
    ) {
        let mut s = start;
        s.push_str("\r\n");
        for (n, v) in lines {
            s.push_str(&format!("{n}:{v}{sep}"));
        }
        s.push_str("\r\n");
        s.push_str(&body);
        let _ = check(s.clone().into_bytes(), &Policy::DEFAULT);
        if let Ok(m) = Message::parse(s.into_bytes()) {
            let again = Message::parse(m.to_bytes()).expect("re-parse");
            prop_assert_eq!(again.body(), m.body());
        }
    }

    #[test]
    fn framer_split_points_do_not_matter(cuts in proptest::collection::vec(1usize..80, 1..20)) {
        let one = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nl: 3\r\n\r\nabc";
        let stream: Vec<u8> = [&one[..], b"\r\n\r\n", one, one].concat();
        let mut f = StreamFramer::new();
        let mut frames = Vec::new();
        let mut pos = 0;
        for c in cuts.iter().cycle() {
            if pos >= stream.len() {
                break;
            }
            let end = (pos + c).min(stream.len());
            f.push(&stream[pos..end]);
            pos = end;
            while let Some(fr) = f.pop().expect("valid stream") {
                frames.push(fr);
            }
        }
        let msg = Frame::Message(Bytes::from_static(one));
        prop_assert_eq!(frames, vec![msg.clone(), Frame::KeepAlive, msg.clone(), msg]);
    }
}
