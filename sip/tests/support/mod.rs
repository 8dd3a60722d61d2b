//! Shared helpers for the two-endpoint scenarios: request builders over the message layer.
#![allow(dead_code)]

use std::net::SocketAddr;

use sip::message::{CSeq, HeaderName, Method, Request, Response, StatusCode, Uri};

/// A request from the UAC at `from` to the UAS at `to`, out of dialog, with the headers §8.1.1 asks
/// for (the endpoint adds Via and Max-Forwards).
pub fn request(
    method: Method,
    from: SocketAddr,
    to: SocketAddr,
    call_id: &str,
    seq: u32,
) -> Request {
    let uri = Uri::parse(format!("sip:uas@{to}")).expect("test URI is valid");
    let mut req = Request::new(method.clone(), uri);
    req.headers.push(
        HeaderName::From,
        format!("<sip:uac@{from}>;tag=uac-{call_id}"),
    );
    req.headers.push(HeaderName::To, format!("<sip:uas@{to}>"));
    req.headers.push(HeaderName::CallId, call_id.to_owned());
    req.headers
        .push(HeaderName::CSeq, CSeq { seq, method }.to_string());
    req.headers
        .push(HeaderName::Contact, format!("<sip:uac@{from}>"));
    req
}

/// A response to `req` with a To tag and a Contact at `contact`.
pub fn answer(req: &Request, status: u16, to_tag: &str, contact: SocketAddr) -> Response {
    let status = StatusCode::new(status).expect("test status is valid");
    let mut resp = Response::for_request(req, status, None).with_to_tag(to_tag);
    if status.as_u16() > 100 {
        resp.headers
            .push(HeaderName::Contact, format!("<sip:uas@{contact}>"));
    }
    resp
}

/// The ACK for a 2xx (§13.2.2.4) built by hand: same Call-ID/From/CSeq number, the response's To.
pub fn ack_for_2xx(invite: &Request, response: &Response) -> Request {
    let mut ack = Request::new(Method::Ack, invite.uri.clone());
    for name in [HeaderName::From, HeaderName::CallId] {
        if let Some(v) = invite.headers.get(&name) {
            ack.headers.push(name, v.clone());
        }
    }
    if let Some(to) = response.headers.get(&HeaderName::To) {
        ack.headers.push(HeaderName::To, to.clone());
    }
    let seq = invite.headers.cseq().map(|c| c.seq).unwrap_or(1);
    ack.headers.push(
        HeaderName::CSeq,
        CSeq {
            seq,
            method: Method::Ack,
        }
        .to_string(),
    );
    ack
}
