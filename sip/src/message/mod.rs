//! SIP messages: parse, inspect, build, write (RFC 3261 §7, §8.2, §18.3, §20, §25; RFC 4475).
//!
//! # Reading a message
//! ```
//! use sip::message::{Message, HeaderName, Method};
//! let raw = "INVITE sip:bob@example.com SIP/2.0\r\n\
//!            v: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776;rport\r\n\
//!            f: \"Alice\" <sip:alice@example.com>;tag=1928\r\n\
//!            t: <sip:bob@example.com>\r\n\
//!            i: a84b4c76e66710\r\n\
//!            CSeq: 314159 INVITE\r\n\
//!            l: 0\r\n\r\n";
//! let Message::Request(req) = Message::parse(raw)? else { unreachable!() };
//! assert_eq!(req.method, Method::Invite);
//! let via = req.headers.top_via()?;                 // typed, parsed on demand
//! assert_eq!(via.branch(), Some("z9hG4bK776"));
//! assert_eq!(req.headers.from()?.tag(), Some("1928"));
//! assert_eq!(req.headers.cseq()?.seq, 314159);
//! assert_eq!(req.headers.get(&HeaderName::CallId).unwrap(), "a84b4c76e66710");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//! * [`Message::parse`] takes one datagram (or one frame from [`StreamFramer`]) as
//!   [`bytes::Bytes`]; every value is a slice of that buffer ([`Text`] = `bytestring::ByteString`,
//!   a cheap-to-clone UTF-8 string). Compact names map to full names ([`HeaderName`]); unknown
//!   headers are kept verbatim in order. Folded values are unfolded; `%` escapes are **never**
//!   decoded — use [`unescape`] (or [`Uri::equivalent`]) explicitly when comparing.
//! * Typed access lives on [`Headers`] (see [`typed`]): `top_via`, `vias`, `from`, `to`,
//!   `call_id`, `cseq`, `contacts`, `routes(&HeaderName::RecordRoute)`, `max_forwards`, `expires`,
//!   `content_length`, `content_type`, `option_tags(&HeaderName::Require)`, `allow`,
//!   `auth(&HeaderName::Authorization)`, `refer_to`, `referred_by`, `replaces`,
//!   `session_expires`, `retry_after`, `reasons`, `p_asserted_identity`. They return
//!   [`HeaderError`] whose `Display` is a ready 400 reason phrase ("Missing Call-ID header").
//! * Raw access: [`Headers::get`], [`Headers::get_all`], [`Headers::values`] (comma-split
//!   elements across lines), [`Headers::iter`].
//!
//! # Receiving from the network
//! Use [`validate::check`] on every received datagram / stream frame: it returns
//! [`Inbound::Request`] (well-formed and acceptable), [`Inbound::Response`], [`Inbound::Reject`]
//! (a ready response to send back: 400 with the reason, 505, 501, 416, 420 with Unsupported, 415
//! with Accept, 406), or [`Inbound::Drop`] (with a [`validate::DropReason`]). The [`Policy`]
//! lists supported option tags, accepted body types, methods; `Policy::DEFAULT` is a sane UAS.
//! For TCP/TLS, push received bytes into a [`StreamFramer`] and pop [`framer::Frame`]s (a
//! message, or a CRLF keep-alive ping to answer with CRLF); a [`FramerError`] means close the
//! connection.
//!
//! # Building and writing
//! [`Request::new`] (method, Request-URI), then `req.headers.push(HeaderName::Via, via.to_string())`
//! etc.; typed values ([`Via`], [`NameAddr`], [`CSeq`], [`Auth`]) implement `Display` for that.
//! [`Response::for_request`] copies Via/From/To/Call-ID/CSeq (RFC 3261 §8.2.6);
//! [`Response::with_to_tag`] adds the To tag; [`build::final_response`] does both and adds `Server`. [`Request::set_body`] sets body and Content-Type.
//! [`Request::cancel`] and [`Request::ack_for_non2xx`] derive CANCEL / non-2xx ACK (§9.1,
//! §17.1.1.3). [`Request::to_bytes`] / [`Response::to_bytes`] write the message; Content-Length is always
//! written from the actual body length. Writing a parsed message and parsing it again gives the
//! same headers, values and body.
//!
//! # Personal data
//! `Debug` of messages, headers and URIs prints caller numbers and names: never log it outside
//! tests; log method, status, CSeq and Call-ID instead.
//!
//! # Keys
//! [`TransactionKey`] (RFC 3261 §17.1.3/§17.2.3, with the RFC 2543 fallback) and [`DialogId`]
//! (Call-ID + local/remote tag) are built from requests and responses; see [`keys`].

pub mod build;
pub mod framer;
pub mod header;
pub mod keys;
pub(crate) mod lex;
pub mod method;
pub mod name_addr;
pub mod params;
pub(crate) mod parse;
pub mod typed;
pub mod uri;
pub mod validate;
mod write;

#[cfg(test)]
mod scan_tests;

use bytes::Bytes;

pub use bytestring::ByteString as Text;
pub use framer::{FramerError, StreamFramer};
pub use header::{Header, HeaderName, Headers};
pub use keys::{DialogId, TransactionKey};
pub use lex::{quote, unescape, unquote};
pub use method::{Method, StatusCode};
pub use name_addr::{Contact, NameAddr, NameAddrError};
pub use params::{Param, Params};
pub use typed::{
    Auth, CSeq, HeaderError, Reason, Refresher, Replaces, RetryAfter, SessionExpires, Via,
    MAGIC_COOKIE,
};
pub use uri::{Scheme, Uri, UriError};
pub use validate::{Inbound, Policy};

/// Why bytes could not be parsed as a SIP message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    #[error("no end of header section")]
    Incomplete,
    #[error("header section is not UTF-8")]
    NotUtf8,
    #[error("Malformed start line")]
    BadStartLine,
    #[error("Malformed Request-URI: {0}")]
    BadRequestUri(UriError),
    #[error("Version Not Supported")]
    UnsupportedVersion,
    #[error("Malformed status code")]
    BadStatusCode,
    #[error("Malformed header line")]
    BadHeader,
    #[error("Malformed Content-Length")]
    BadContentLength,
    #[error("Conflicting Content-Length values")]
    ConflictingContentLength,
    #[error("Content-Length larger than message")]
    ContentLengthTooLarge,
}

/// A SIP request or response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Request(Request),
    Response(Response),
}

/// A SIP request. Fields are public; `headers` holds every header line in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub uri: Uri,
    pub headers: Headers,
    pub body: Bytes,
}

/// A SIP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: StatusCode,
    /// Reason phrase as received (may be empty).
    pub reason: Text,
    pub headers: Headers,
    pub body: Bytes,
}

impl Message {
    /// Parse one datagram or stream frame. Without Content-Length the body is the rest of the
    /// buffer; octets after Content-Length are ignored.
    pub fn parse(buf: impl Into<Bytes>) -> Result<Message, ParseError> {
        parse::parse_message(buf.into())
    }

    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }

    pub fn headers_mut(&mut self) -> &mut Headers {
        match self {
            Message::Request(r) => &mut r.headers,
            Message::Response(r) => &mut r.headers,
        }
    }

    pub fn body(&self) -> &Bytes {
        match self {
            Message::Request(r) => &r.body,
            Message::Response(r) => &r.body,
        }
    }

    /// Serialize (Content-Length from the body).
    pub fn to_bytes(&self) -> Bytes {
        match self {
            Message::Request(r) => r.to_bytes(),
            Message::Response(r) => r.to_bytes(),
        }
    }
}

impl Request {
    /// A request with no headers and an empty body.
    pub fn new(method: Method, uri: Uri) -> Request {
        Request {
            method,
            uri,
            headers: Headers::new(),
            body: Bytes::new(),
        }
    }

    /// Parse a request; a response is [`ParseError::BadStartLine`].
    pub fn parse(buf: impl Into<Bytes>) -> Result<Request, ParseError> {
        match Message::parse(buf)? {
            Message::Request(r) => Ok(r),
            Message::Response(_) => Err(ParseError::BadStartLine),
        }
    }

    /// Set the body and its Content-Type (removed when `content_type` is `None`).
    pub fn set_body(&mut self, content_type: Option<&str>, body: impl Into<Bytes>) {
        set_body(&mut self.headers, &mut self.body, content_type, body.into());
    }

    /// Serialize.
    pub fn to_bytes(&self) -> Bytes {
        write::request(self)
    }
}

impl Response {
    /// A response with the standard reason phrase, no headers, empty body.
    pub fn new(status: StatusCode) -> Response {
        Response {
            status,
            reason: Text::from_static(status.reason()),
            headers: Headers::new(),
            body: Bytes::new(),
        }
    }

    /// A response to `req` per RFC 3261 §8.2.6: copies every Via (in order), From, To, Call-ID
    /// and CSeq values verbatim. `reason` `None` uses the standard phrase. Add a To tag with
    /// [`Response::with_to_tag`].
    ///
    /// A 101–299 response, one that sets up or belongs to a dialog, also copies the request's
    /// Record-Route values in order (§12.1.1: the UAS "MUST copy all Record-Route header field
    /// values from the request into the response"): without them the caller's route set is empty
    /// and its ACK and BYE bypass a record-routing proxy. REGISTER, CANCEL and ACK never create or
    /// belong to a dialog, and 100 Trying is hop by hop: they copy none.
    pub fn for_request(req: &Request, status: StatusCode, reason: Option<&str>) -> Response {
        let mut resp = Response::new(status);
        if let Some(r) = reason {
            resp.reason = Text::from(r.replace(['\r', '\n'], " "));
        }
        copy_dialog_headers(&req.headers, &mut resp.headers);
        if copies_record_route(&req.method, status) {
            for v in req.headers.values(&HeaderName::RecordRoute) {
                resp.headers.push(HeaderName::RecordRoute, v.clone());
            }
        }
        resp
    }

    /// Parse a response; a request is [`ParseError::BadStartLine`].
    pub fn parse(buf: impl Into<Bytes>) -> Result<Response, ParseError> {
        match Message::parse(buf)? {
            Message::Response(r) => Ok(r),
            Message::Request(_) => Err(ParseError::BadStartLine),
        }
    }

    /// Add `;tag=` to To unless it already has a tag (unparseable To is left alone).
    pub fn with_to_tag(mut self, tag: &str) -> Response {
        if let Ok(to) = self.headers.to() {
            if to.tag().is_none() {
                let v = self
                    .headers
                    .get(&HeaderName::To)
                    .map(|v| format!("{v};tag={tag}"));
                if let Some(v) = v {
                    self.headers.replace(HeaderName::To, v);
                }
            }
        }
        self
    }

    /// Set the body and its Content-Type (removed when `content_type` is `None`).
    pub fn set_body(&mut self, content_type: Option<&str>, body: impl Into<Bytes>) {
        set_body(&mut self.headers, &mut self.body, content_type, body.into());
    }

    /// Serialize.
    pub fn to_bytes(&self) -> Bytes {
        write::response(self)
    }
}

/// Copy Via, From, To, Call-ID, CSeq lines verbatim, in the order they appear.
/// Whether a `status` response to a `method` request carries the request's Record-Route (§12.1.1).
fn copies_record_route(method: &Method, status: StatusCode) -> bool {
    let dialog_status = (101..300).contains(&status.as_u16());
    dialog_status && !matches!(method, Method::Register | Method::Cancel | Method::Ack)
}

pub(crate) fn copy_dialog_headers(from: &Headers, to: &mut Headers) {
    let dialog = |name: &HeaderName| {
        matches!(
            name,
            HeaderName::Via
                | HeaderName::From
                | HeaderName::To
                | HeaderName::CallId
                | HeaderName::CSeq
        )
    };
    for (name, value) in from.lines_text(dialog) {
        to.push(name.clone(), value);
    }
}

fn set_body(headers: &mut Headers, body: &mut Bytes, content_type: Option<&str>, new: Bytes) {
    match content_type {
        Some(ct) => headers.replace(HeaderName::ContentType, ct),
        None => {
            headers.remove(&HeaderName::ContentType);
        }
    }
    *body = new;
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0\r\n\
        Via: SIP/2.0/UDP pc33.example.com;branch=z9hG4bK776asdhds\r\n\
        Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp1\r\n\
        Max-Forwards: 70\r\n\
        To: Bob <sip:bob@example.com>\r\n\
        From: Alice <sip:alice@example.com>;tag=1928301774\r\n\
        Call-ID: a84b4c76e66710@pc33.example.com\r\n\
        CSeq: 314159 INVITE\r\n\
        Contact: <sip:alice@pc33.example.com>\r\n\
        Content-Type: application/sdp\r\n\
        Content-Length: 4\r\n\r\nv=0\n";

    #[test]
    fn response_for_request_copies_section_8_2_6_headers() {
        let req = Request::parse(INVITE).unwrap();
        let resp = Response::for_request(&req, StatusCode::RINGING, None).with_to_tag("abc");
        assert_eq!(resp.reason, "Ringing");
        assert_eq!(resp.headers.count(&HeaderName::Via), 2);
        assert_eq!(resp.headers.to().unwrap().tag(), Some("abc"));
        assert_eq!(resp.headers.from().unwrap().tag(), Some("1928301774"));
        assert_eq!(resp.headers.cseq().unwrap(), req.headers.cseq().unwrap());
        assert!(resp.headers.get(&HeaderName::Contact).is_none());
        let again = resp.clone().with_to_tag("other");
        assert_eq!(again.headers.to().unwrap().tag(), Some("abc"));
        let mut parsed = Response::parse(resp.to_bytes()).unwrap();
        parsed.headers.remove(&HeaderName::ContentLength);
        assert_eq!(parsed, resp);
    }

    /// `request` with `method` in the request line and CSeq, and two Record-Route lines (three
    /// values) as a pair of record-routing proxies leave them.
    fn record_routed(method: &str) -> Request {
        let text = INVITE
            .replace("INVITE sip:", &format!("{method} sip:"))
            .replace("CSeq: 314159 INVITE", &format!("CSeq: 314159 {method}"))
            .replace(
                "Max-Forwards: 70\r\n",
                "Max-Forwards: 70\r\nRecord-Route: <sip:p2.example.com;lr>\r\n\
                 Record-Route: <sip:p1.example.com;lr;transport=tcp>, <sip:p1.example.com;lr>\r\n",
            );
        Request::parse(text).unwrap()
    }

    fn record_route_of(resp: &Response) -> Vec<String> {
        let bytes = resp.to_bytes();
        let parsed = Response::parse(bytes).unwrap();
        parsed
            .headers
            .values(&HeaderName::RecordRoute)
            .map(|v| v.to_string())
            .collect()
    }

    const PROXIES: [&str; 3] = [
        "<sip:p2.example.com;lr>",
        "<sip:p1.example.com;lr;transport=tcp>",
        "<sip:p1.example.com;lr>",
    ];

    #[test]
    fn dialog_responses_to_invite_copy_record_route_in_order() {
        let req = record_routed("INVITE");
        for status in [StatusCode::RINGING, StatusCode::OK] {
            let resp = Response::for_request(&req, status, None).with_to_tag("t");
            assert_eq!(record_route_of(&resp), PROXIES, "{status:?}");
        }
        let trying = Response::for_request(&req, StatusCode::TRYING, None);
        assert!(record_route_of(&trying).is_empty(), "100 is hop by hop");
        let busy = Response::for_request(&req, StatusCode::BUSY_HERE, None);
        assert!(
            record_route_of(&busy).is_empty(),
            "a failure sets up no dialog"
        );
    }

    #[test]
    fn dialog_creating_and_in_dialog_requests_copy_record_route() {
        for method in [
            "SUBSCRIBE",
            "REFER",
            "NOTIFY",
            "UPDATE",
            "INFO",
            "BYE",
            "OPTIONS",
        ] {
            let req = record_routed(method);
            let resp = Response::for_request(&req, StatusCode::OK, None).with_to_tag("t");
            assert_eq!(record_route_of(&resp), PROXIES, "{method}");
        }
    }

    #[test]
    fn register_and_cancel_responses_carry_no_record_route() {
        for method in ["REGISTER", "CANCEL"] {
            let req = record_routed(method);
            let resp = Response::for_request(&req, StatusCode::OK, None).with_to_tag("t");
            assert!(record_route_of(&resp).is_empty(), "{method}");
        }
    }

    #[test]
    fn build_and_write_a_request() {
        let mut req = Request::new(Method::Options, "sip:x@example.com".parse().unwrap());
        req.headers.push(
            HeaderName::Via,
            Via::new("UDP", "10.0.0.1", Some(5060), "z9hG4bKa").to_string(),
        );
        req.headers.push(
            HeaderName::CSeq,
            CSeq {
                seq: 1,
                method: Method::Options,
            }
            .to_string(),
        );
        req.set_body(Some("text/plain"), &b"hi"[..]);
        let bytes = req.to_bytes();
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.starts_with("OPTIONS sip:x@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa\r\n"));
        assert!(text.ends_with("Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"));
        let mut parsed = Request::parse(bytes).unwrap();
        assert_eq!(parsed.headers.remove(&HeaderName::ContentLength), 1);
        assert_eq!(parsed, req);
    }
}
