//! Building messages from other messages.
//!
//! * Final responses a UAS sends on its own ([`final_response`], [`reply`], [`status`],
//!   [`tag`]): the request's dialog headers (§8.2.6), a To tag (§8.2.6.2, §19.3) and a `Server`
//!   header.
//!   The caller brings the randomness ([`tag`] formats 64 bits it drew) and the product name:
//!   this crate reads neither a clock nor the OS random source.
//! * Requests derived from a request we sent: CANCEL (RFC 3261 §9.1) and the ACK for a non-2xx
//!   final response (§17.1.1.3). Both carry only the top Via of the original, so they share its
//!   branch (the CANCEL/ACK match the INVITE's transaction at the peer).

use bytes::Bytes;

use super::header::{HeaderName, Headers};
use super::method::{Method, StatusCode};
use super::typed::HeaderError;
use super::{Request, Response};

/// A final response to `req`: the §8.2.6 copy of Via/From/To/Call-ID/CSeq (and Record-Route for
/// a dialog-creating 2xx, see [`Response::for_request`]), `reason` or the standard phrase, the
/// To tag `to_tag` unless the request's To already has one, and `Server: {server}`.
pub fn final_response(
    req: &Request,
    code: u16,
    reason: Option<&str>,
    to_tag: &str,
    server: &str,
) -> Response {
    let mut resp = Response::for_request(req, status(code), reason).with_to_tag(to_tag);
    resp.headers.push(HeaderName::Server, server);
    resp
}

/// What a UAS answers on its own most of the time: [`final_response`] with the standard reason
/// phrase and the To tag [`tag`]`(random)`, `random` being 64 bits the caller drew from a
/// cryptographic source.
pub fn reply(req: &Request, code: u16, random: u64, server: &str) -> Response {
    final_response(req, code, None, &tag(random), server)
}

/// The status code `code`, or 500 when `code` is outside 100..=699 (a programming slip in the
/// caller becomes a server error on the wire, never a panic).
pub fn status(code: u16) -> StatusCode {
    StatusCode::new(code).unwrap_or(StatusCode::SERVER_INTERNAL_ERROR)
}

/// A To/From tag (§19.3: globally unique, at least 32 random bits) from 64 bits the caller drew
/// from a cryptographic source: 16 lower-case hex digits.
pub fn tag(random: u64) -> String {
    format!("{random:016x}")
}

impl Request {
    /// The CANCEL for this (INVITE) request: same Request-URI, top Via, From, To, Call-ID, CSeq
    /// number and Route set; method CANCEL; Max-Forwards 70.
    pub fn cancel(&self) -> Result<Request, HeaderError> {
        self.derived(Method::Cancel, None)
    }

    /// The ACK for a non-2xx final response to this INVITE: like [`Request::cancel`] but with the
    /// To header of the response (which carries the peer's tag).
    pub fn ack_for_non2xx(&self, resp: &Response) -> Result<Request, HeaderError> {
        let to = resp.headers.single(&HeaderName::To)?.clone();
        self.derived(Method::Ack, Some(to))
    }

    fn derived(&self, method: Method, to: Option<super::Text>) -> Result<Request, HeaderError> {
        let cseq = self.headers.cseq()?;
        let top_via = self
            .headers
            .values(&HeaderName::Via)
            .next()
            .ok_or(HeaderError::Missing(HeaderName::Via))?;
        let mut h = Headers::with_capacity(8);
        h.push(HeaderName::Via, top_via);
        h.push(HeaderName::MaxForwards, "70");
        h.push(
            HeaderName::From,
            self.headers.single(&HeaderName::From)?.clone(),
        );
        h.push(
            HeaderName::To,
            match to {
                Some(t) => t,
                None => self.headers.single(&HeaderName::To)?.clone(),
            },
        );
        h.push(HeaderName::CallId, self.headers.call_id()?.clone());
        h.push(HeaderName::CSeq, format!("{} {}", cseq.seq, method));
        for r in self.headers.get_all(&HeaderName::Route) {
            h.push(HeaderName::Route, r.clone());
        }
        Ok(Request {
            method,
            uri: self.uri.clone(),
            headers: h,
            body: Bytes::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::TransactionKey;

    fn invite() -> Request {
        Request::parse(
            "INVITE sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h1;branch=z9hG4bKa, SIP/2.0/UDP h0;branch=z9hG4bK0\r\n\
             Route: <sip:p1;lr>\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@example.com>\r\nCall-ID: c\r\n\
             CSeq: 5 INVITE\r\nContact: <sip:a@h1>\r\nContent-Type: application/sdp\r\nl: 3\r\n\r\nv=0",
        )
        .unwrap()
    }

    #[test]
    fn final_response_has_tag_server_and_dialog_headers() {
        let inv = invite();
        let r = final_response(&inv, 486, None, &tag(0xab), "vb/1");
        assert_eq!(r.status.as_u16(), 486);
        assert_eq!(r.headers.to().unwrap().tag(), Some("00000000000000ab"));
        assert_eq!(r.headers.get(&HeaderName::Server).unwrap(), "vb/1");
        assert_eq!(r.headers.vias().count(), 2);
        assert_eq!(r.headers.cseq().unwrap().seq, 5);
        let r = final_response(&inv, 403, Some("No\r\nway"), "t", "vb/1");
        assert_eq!(r.reason, "No  way");
    }

    #[test]
    fn reply_tags_a_tagless_request_and_keeps_a_dialogs_tag() {
        let inv = invite();
        let r = reply(&inv, 503, 0x1234, "vb/1");
        assert_eq!(r.status.as_u16(), 503);
        assert_eq!(r.reason, "Service Unavailable");
        assert_eq!(r.headers.to().unwrap().tag(), Some("0000000000001234"));
        assert_eq!(r.headers.get(&HeaderName::Server).unwrap(), "vb/1");
        assert_eq!(r.headers.cseq().unwrap().seq, 5);
        assert_eq!(tag(u64::MAX), "ffffffffffffffff");
        let bye = Request::parse(
            "BYE sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h1;branch=z9hG4bKb\r\n\
             From: <sip:a@h>;tag=1\r\nTo: <sip:b@example.com>;tag=peer\r\nCall-ID: c\r\n\
             CSeq: 6 BYE\r\nl: 0\r\n\r\n",
        )
        .unwrap();
        let r = reply(&bye, 481, 7, "vb/1");
        assert_eq!(r.status.as_u16(), 481);
        assert_eq!(
            r.headers.to().unwrap().tag(),
            Some("peer"),
            "a dialog's tag stays"
        );
    }

    #[test]
    fn status_out_of_range_is_500() {
        assert_eq!(status(99), StatusCode::SERVER_INTERNAL_ERROR);
        assert_eq!(status(700), StatusCode::SERVER_INTERNAL_ERROR);
        assert_eq!(status(180).as_u16(), 180);
    }

    #[test]
    fn cancel_targets_the_invite_transaction() {
        let inv = invite();
        let c = inv.cancel().unwrap();
        assert_eq!(c.method, Method::Cancel);
        assert_eq!(c.uri, inv.uri);
        assert_eq!(c.headers.vias().count(), 1);
        assert_eq!(c.headers.cseq().unwrap().seq, 5);
        assert_eq!(c.headers.get(&HeaderName::Route).unwrap(), "<sip:p1;lr>");
        assert!(c.body.is_empty() && c.headers.get(&HeaderName::Contact).is_none());
        assert_eq!(
            TransactionKey::for_request(&c)
                .unwrap()
                .with_method(Method::Invite),
            TransactionKey::for_request(&inv).unwrap()
        );
    }

    #[test]
    fn ack_for_non2xx_takes_the_response_to_tag() {
        let inv = invite();
        let resp = Response::for_request(&inv, StatusCode::BUSY_HERE, None).with_to_tag("x9");
        let ack = inv.ack_for_non2xx(&resp).unwrap();
        assert_eq!(ack.headers.to().unwrap().tag(), Some("x9"));
        assert_eq!(ack.headers.cseq().unwrap().method, Method::Ack);
        assert_eq!(
            TransactionKey::for_request(&ack).unwrap(),
            TransactionKey::for_request(&inv).unwrap()
        );
    }
}
