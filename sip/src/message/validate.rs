//! Checking a received message and choosing the answer (RFC 3261 §8.2 UAS behaviour, §8.1.3.3
//! / §18.1.2 response sanity, RFC 4475 torture tests).
//!
//! [`check`] never panics and never trusts the input. Order of checks for a request:
//! 1. parse; if that fails, salvage Via/From/To/Call-ID/CSeq leniently and answer 505 (unknown
//!    SIP version) or 400 with the reason (e.g. "Content-Length larger than message"); drop if
//!    not even a top Via can be salvaged, or the start line is not a request line, or it is ACK;
//! 2. the top Via must be usable (else drop: there is nowhere to answer);
//! 3. unknown/unimplemented method → 501 with Allow (before CSeq checks: RFC 4475 mismatch02);
//! 4. Via, From, To, Call-ID, CSeq, Max-Forwards, Contact, Expires syntax and cardinality → 400
//!    "Missing/Duplicate/Malformed X header";
//! 5. CSeq method ≠ request method → 400 "CSeq method does not match";
//! 6. Request-URI scheme not sip/sips (or tel when allowed) → 416;
//! 7. Require with option tags not in [`Policy::supported`] → 420 with Unsupported (not for
//!    CANCEL; Proxy-Require is a proxy's business and is ignored here);
//! 8. body type not in [`Policy::accept`] or a Content-Encoding other than identity → 415 with
//!    Accept / Accept-Encoding;
//! 9. INVITE whose Accept excludes everything in [`Policy::produces`] → 406.
//!
//! ACK is never answered: a bad ACK is dropped. Responses are accepted when their top Via,
//! From, To, Call-ID and CSeq parse; otherwise dropped (RFC 4475 scalarlg, bigcode).

use bytes::Bytes;
use sha2::Digest;

use super::header::{HeaderName, Headers};
use super::lex;
use super::method::{Method, StatusCode};
use super::name_addr::Contact;
use super::parse::{find_head_end, leading_crlf};
use super::typed::{HeaderError, Via};
use super::uri::Scheme;
use super::{copy_dialog_headers, Message, ParseError, Request, Response, Text};

/// What the UAS supports. Borrowed so a `const` policy costs nothing per message.
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    /// Option tags we support (checked against Require → 420).
    pub supported: &'a [&'a str],
    /// Body media types we accept (others → 415, listed in its Accept header).
    pub accept: &'a [&'a str],
    /// Body media types we may answer INVITE with (checked against the request's Accept → 406).
    pub produces: &'a [&'a str],
    /// Methods we implement (others → 501 with Allow).
    pub methods: &'a [Method],
    /// Accept `tel:` Request-URIs (else 416).
    pub allow_tel: bool,
}

impl Policy<'static> {
    /// timer/replaces/norefersub; SDP, DTMF relay bodies, sipfrag; all standard methods.
    pub const DEFAULT: Policy<'static> = Policy {
        supported: &["timer", "replaces", "norefersub"],
        accept: &[
            "application/sdp",
            "application/dtmf-relay",
            "application/dtmf",
            "message/sipfrag",
        ],
        produces: &["application/sdp"],
        methods: &Method::STANDARD,
        allow_tel: true,
    };
}

impl Default for Policy<'static> {
    fn default() -> Self {
        Policy::DEFAULT
    }
}

/// The outcome of [`check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// A well-formed request we can process.
    Request(Request),
    /// A well-formed response.
    Response(Response),
    /// The request must be rejected: send this response back (statelessly).
    Reject(Response),
    /// Discard silently.
    Drop(DropReason),
}

/// Why a message was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DropReason {
    #[error("unparseable and unanswerable: {0}")]
    Unanswerable(ParseError),
    #[error("request without a usable Via")]
    NoVia,
    #[error("malformed ACK: {0}")]
    BadAck(String),
    #[error("malformed response: {0}")]
    BadResponse(String),
}

/// Check one received datagram or stream frame.
pub fn check(buf: impl Into<Bytes>, policy: &Policy<'_>) -> Inbound {
    let buf = buf.into();
    match Message::parse(buf.clone()) {
        Ok(Message::Request(r)) => check_request(r, policy),
        Ok(Message::Response(r)) => check_response(r),
        Err(e) => salvage(&buf, e),
    }
}

/// Check an already parsed request (steps 2–9).
pub fn check_request(req: Request, policy: &Policy<'_>) -> Inbound {
    let is_ack = req.method == Method::Ack;
    let top = req.headers.values(&HeaderName::Via).next();
    if top
        .as_ref()
        .and_then(|v| Via::parse_lenient(v, false))
        .is_none()
    {
        return Inbound::Drop(DropReason::NoVia);
    }
    if !policy.methods.contains(&req.method) {
        if is_ack {
            return Inbound::Drop(DropReason::BadAck("ACK not in policy".into()));
        }
        let mut resp = reject(&req.headers, StatusCode::NOT_IMPLEMENTED, None);
        resp.headers.push(HeaderName::Allow, allow(policy));
        return Inbound::Reject(resp);
    }
    if let Err(e) = syntax(&req) {
        if is_ack {
            return Inbound::Drop(DropReason::BadAck(e.to_string()));
        }
        return Inbound::Reject(reject(
            &req.headers,
            StatusCode::BAD_REQUEST,
            Some(&e.to_string()),
        ));
    }
    // Only reached once CSeq parsed in `syntax`.
    let cseq_method_ok = req.headers.cseq().is_ok_and(|c| c.method == req.method);
    if !cseq_method_ok {
        if is_ack {
            return Inbound::Drop(DropReason::BadAck("CSeq method does not match".into()));
        }
        return Inbound::Reject(reject(
            &req.headers,
            StatusCode::BAD_REQUEST,
            Some("CSeq method does not match"),
        ));
    }
    if is_ack {
        return Inbound::Request(req);
    }
    let scheme_ok = match req.uri.scheme() {
        Scheme::Sip | Scheme::Sips => true,
        Scheme::Tel => policy.allow_tel,
        Scheme::Other => false,
    };
    if !scheme_ok {
        return Inbound::Reject(reject(
            &req.headers,
            StatusCode::UNSUPPORTED_URI_SCHEME,
            None,
        ));
    }
    if req.method != Method::Cancel {
        let unknown: Vec<Text> = req
            .headers
            .option_tags(&HeaderName::Require)
            .filter(|t| !policy.supported.iter().any(|s| s.eq_ignore_ascii_case(t)))
            .collect();
        if !unknown.is_empty() {
            let mut resp = reject(&req.headers, StatusCode::BAD_EXTENSION, None);
            resp.headers
                .push(HeaderName::Unsupported, join(unknown.iter().map(|t| &**t)));
            return Inbound::Reject(resp);
        }
    }
    if let Some(resp) = content_check(&req, policy) {
        return Inbound::Reject(resp);
    }
    if req.method == Method::Invite && !accepts_any(&req.headers, policy.produces) {
        return Inbound::Reject(reject(&req.headers, StatusCode::NOT_ACCEPTABLE, None));
    }
    Inbound::Request(req)
}

/// Check a parsed response: the headers a client transaction needs must parse.
pub fn check_response(resp: Response) -> Inbound {
    let h = &resp.headers;
    let problem = h
        .vias()
        .find_map(Result::err)
        .or_else(|| h.top_via().err())
        .or_else(|| h.from().err())
        .or_else(|| h.to().err())
        .or_else(|| h.call_id().err())
        .or_else(|| h.cseq().err());
    match problem {
        Some(e) => Inbound::Drop(DropReason::BadResponse(e.to_string())),
        None => Inbound::Response(resp),
    }
}

/// Step 4: syntax and cardinality of the headers we rely on.
fn syntax(req: &Request) -> Result<(), HeaderError> {
    let h = &req.headers;
    for v in h.vias() {
        v?;
    }
    h.from()?;
    h.to()?;
    h.call_id()?;
    h.cseq()?;
    h.max_forwards()?;
    let mut star = false;
    let mut n = 0;
    for c in h.contacts() {
        let c = c?;
        n += 1;
        if let Contact::Star = c {
            star = true;
        }
        if let Some(Err(())) = c.expires() {
            return Err(HeaderError::Malformed(HeaderName::Contact));
        }
        if let Some(Err(())) = c.q() {
            return Err(HeaderError::Malformed(HeaderName::Contact));
        }
    }
    if star && (n > 1 || req.method != Method::Register) {
        return Err(HeaderError::Malformed(HeaderName::Contact));
    }
    h.expires()?;
    Ok(())
}

/// Step 8: Content-Type / Content-Encoding of a non-empty body.
fn content_check(req: &Request, policy: &Policy<'_>) -> Option<Response> {
    if req.body.is_empty() {
        return None;
    }
    let encodings_ok = req
        .headers
        .option_tags(&HeaderName::ContentEncoding)
        .all(|e| e.eq_ignore_ascii_case("identity"));
    let type_ok = req
        .headers
        .content_type()
        .is_some_and(|ct| policy.accept.iter().any(|a| a.eq_ignore_ascii_case(ct)));
    if type_ok && encodings_ok {
        return None;
    }
    let mut resp = reject(&req.headers, StatusCode::UNSUPPORTED_MEDIA_TYPE, None);
    resp.headers
        .push(HeaderName::Accept, join(policy.accept.iter().copied()));
    resp.headers.push(HeaderName::AcceptEncoding, "identity");
    Some(resp)
}

/// Step 9: does the request's Accept allow any type we produce? No Accept = application/sdp
/// (RFC 3261 §20.1); an empty Accept allows nothing.
fn accepts_any(h: &Headers, produces: &[&str]) -> bool {
    if h.count(&HeaderName::Accept) == 0 {
        return true;
    }
    h.values(&HeaderName::Accept).any(|range| {
        let range = lex::trim(range.split(';').next().unwrap_or(""));
        let Some((rt, rs)) = range.split_once('/') else {
            return false;
        };
        produces.iter().any(|p| {
            let (pt, ps) = p.split_once('/').unwrap_or((p, ""));
            (rt == "*" || rt.eq_ignore_ascii_case(pt)) && (rs == "*" || rs.eq_ignore_ascii_case(ps))
        })
    })
}

/// Build a stateless rejection: copied headers plus a deterministic To tag (the same request
/// retransmitted gets the same tag).
fn reject(h: &Headers, status: StatusCode, reason: Option<&str>) -> Response {
    let mut resp = Response::new(status);
    if let Some(r) = reason {
        resp.reason = Text::from(r.replace(['\r', '\n'], " "));
    }
    copy_dialog_headers(h, &mut resp.headers);
    let has_tag = h.to().map(|t| t.tag().is_some()).unwrap_or(true);
    if has_tag {
        return resp;
    }
    let mut hasher = sha2::Sha256::new();
    for name in [HeaderName::CallId, HeaderName::From, HeaderName::CSeq] {
        if let Some(v) = h.get(&name) {
            hasher.update(v.as_bytes());
        }
        hasher.update(b"\n");
    }
    if let Some(v) = h.values(&HeaderName::Via).next() {
        hasher.update(v.as_bytes());
    }
    let digest = hasher.finalize();
    let tag: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
    resp.with_to_tag(&tag)
}

fn allow(policy: &Policy<'_>) -> String {
    join(policy.methods.iter().map(Method::as_str))
}

fn join<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for (i, s) in items.enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(s);
    }
    out
}

/// Step 1: the message could not be parsed. Answer from leniently extracted headers if it is a
/// request with a usable top Via; otherwise drop.
fn salvage(buf: &Bytes, err: ParseError) -> Inbound {
    let skip = leading_crlf(buf);
    let rest = &buf[skip..];
    let head_end = find_head_end(rest).unwrap_or(rest.len());
    let head = String::from_utf8_lossy(&rest[..head_end]);
    let mut lines = unfolded_lines(&head).into_iter();
    let Some(start) = lines.next() else {
        return Inbound::Drop(DropReason::Unanswerable(err));
    };
    let mut parts = start.split([' ', '\t']).filter(|p| !p.is_empty());
    let (Some(method), Some(last)) = (
        parts.next(),
        start.split([' ', '\t']).rfind(|p| !p.is_empty()),
    ) else {
        return Inbound::Drop(DropReason::Unanswerable(err));
    };
    let looks_like_request = lex::is_token(method)
        && last.len() > 4
        && last.as_bytes()[..4].eq_ignore_ascii_case(b"SIP/");
    if !looks_like_request || method == "ACK" {
        return Inbound::Drop(DropReason::Unanswerable(err));
    }
    let mut headers = Headers::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim_end_matches([' ', '\t']);
        if !lex::is_token(name) {
            continue;
        }
        headers.push(HeaderName::parse(name), lex::trim(value).to_owned());
    }
    let top = headers.values(&HeaderName::Via).next();
    if top
        .as_ref()
        .and_then(|v| Via::parse_lenient(v, true))
        .is_none()
    {
        return Inbound::Drop(DropReason::Unanswerable(err));
    }
    let (status, reason) = match &err {
        ParseError::UnsupportedVersion => (StatusCode::VERSION_NOT_SUPPORTED, None),
        ParseError::BadRequestUri(_) => (
            StatusCode::BAD_REQUEST,
            Some("Malformed Request-URI".to_owned()),
        ),
        e => (StatusCode::BAD_REQUEST, Some(e.to_string())),
    };
    Inbound::Reject(reject(&headers, status, reason.as_deref()))
}

/// Header lines with folding undone.
fn unfolded_lines(head: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for raw in head.split('\n') {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.is_empty() {
            continue;
        }
        match (line.starts_with([' ', '\t']), out.last_mut()) {
            (true, Some(prev)) => {
                prev.push(' ');
                prev.push_str(line);
            }
            _ => out.push(line.to_owned()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str =
        "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nFrom: <sip:a@example.com>;tag=f\r\n\
                        To: <sip:b@example.com>\r\nCall-ID: c@h\r\nMax-Forwards: 70\r\n";

    fn run(start: &str, extra: &str, body: &str) -> Inbound {
        let msg = format!(
            "{start}\r\n{BASE}{extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        check(msg.into_bytes(), &Policy::DEFAULT)
    }

    fn status(i: &Inbound) -> Option<(u16, String)> {
        match i {
            Inbound::Reject(r) => Some((r.status.as_u16(), r.reason.to_string())),
            _ => None,
        }
    }

    #[test]
    fn good_request_passes() {
        let i = run(
            "OPTIONS sip:b@example.com SIP/2.0",
            "CSeq: 1 OPTIONS\r\n",
            "",
        );
        assert!(matches!(i, Inbound::Request(_)), "{i:?}");
    }

    #[test]
    fn rejections_carry_reason_and_to_tag() {
        let i = run(
            "OPTIONS sip:b@example.com SIP/2.0",
            "CSeq: 1 INVITE\r\n",
            "",
        );
        assert_eq!(status(&i), Some((400, "CSeq method does not match".into())));
        let Inbound::Reject(r) = &i else {
            unreachable!()
        };
        assert!(r.headers.to().unwrap().tag().is_some());
        assert_eq!(r.headers.get(&HeaderName::CallId).unwrap(), "c@h");
        let again = run(
            "OPTIONS sip:b@example.com SIP/2.0",
            "CSeq: 1 INVITE\r\n",
            "",
        );
        assert_eq!(again, i, "deterministic To tag");
    }

    #[test]
    fn extension_and_media_checks() {
        let i = run(
            "OPTIONS sip:b@example.com SIP/2.0",
            "CSeq: 1 OPTIONS\r\nRequire: timer, 100rel\r\n",
            "",
        );
        assert_eq!(status(&i).unwrap().0, 420);
        let Inbound::Reject(r) = &i else {
            unreachable!()
        };
        assert_eq!(r.headers.get(&HeaderName::Unsupported).unwrap(), "100rel");
        let i = run(
            "INVITE sip:b@example.com SIP/2.0",
            "CSeq: 1 INVITE\r\nContent-Type: text/x-odd\r\n",
            "hi",
        );
        let Inbound::Reject(r) = &i else {
            panic!("{i:?}")
        };
        assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(r
            .headers
            .get(&HeaderName::Accept)
            .unwrap()
            .contains("application/sdp"));
        let i = run(
            "INVITE sip:b@example.com SIP/2.0",
            "CSeq: 1 INVITE\r\nAccept: application/*\r\n",
            "",
        );
        assert!(matches!(i, Inbound::Request(_)));
        let i = run(
            "INVITE sip:b@example.com SIP/2.0",
            "CSeq: 1 INVITE\r\nAccept: text/plain\r\n",
            "",
        );
        assert_eq!(status(&i).unwrap().0, 406);
        let i = run("OPTIONS urn:x:y SIP/2.0", "CSeq: 1 OPTIONS\r\n", "");
        assert_eq!(status(&i).unwrap().0, 416);
    }

    #[test]
    fn acks_are_never_answered() {
        let i = run("ACK sip:b@example.com SIP/2.0", "CSeq: 1 INVITE\r\n", "");
        assert!(matches!(i, Inbound::Drop(DropReason::BadAck(_))));
        let i = check(
            &b"ACK <sip:b@h> SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n\r\n"[..],
            &Policy::DEFAULT,
        );
        assert!(matches!(i, Inbound::Drop(_)));
    }

    #[test]
    fn garbage_is_dropped() {
        for g in [
            &b""[..],
            b"\r\n\r\n",
            b"hello world",
            b"INVITE sip:a@b SIP/2.0\r\nVia: garbage\r\n\r\n",
            b"\xff\xfe",
        ] {
            assert!(
                matches!(check(g, &Policy::DEFAULT), Inbound::Drop(_)),
                "{g:?}"
            );
        }
    }
}
