//! Transaction keys (RFC 3261 §17.1.3 client matching, §17.2.3 server matching with the RFC 2543
//! fallback) and dialog identifiers (RFC 3261 §12: Call-ID, local tag, remote tag).

use super::header::HeaderName;
use super::method::Method;
use super::typed::HeaderError;
use super::{Request, Response, Text};

/// What identifies a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TransactionKey {
    /// RFC 3261: top-Via branch (with magic cookie), sent-by, and method — ACK is mapped to
    /// INVITE so that an ACK for a non-2xx final response finds its INVITE server transaction.
    Rfc3261 {
        branch: Text,
        /// sent-by host, lowercased.
        host: String,
        port: Option<u16>,
        method: Method,
    },
    /// RFC 2543 fallback when the branch lacks the magic cookie: Request-URI, From tag, Call-ID,
    /// CSeq number, the whole top Via, method (ACK mapped to INVITE). The To tag is left out so
    /// that the ACK (which carries the To tag of our response) matches its INVITE.
    Rfc2543 {
        request_uri: Text,
        from_tag: Option<Text>,
        call_id: Text,
        cseq: u32,
        top_via: Text,
        method: Method,
    },
}

impl TransactionKey {
    /// The server-transaction key of a received request.
    pub fn for_request(req: &Request) -> Result<TransactionKey, HeaderError> {
        let via = req.headers.top_via()?;
        let method = match req.method {
            Method::Ack => Method::Invite,
            ref m => m.clone(),
        };
        if via.has_rfc3261_branch() {
            let branch = via.params.value_text("branch").unwrap_or_default();
            return Ok(TransactionKey::Rfc3261 {
                branch,
                host: via.host.to_ascii_lowercase(),
                port: via.port,
                method,
            });
        }
        let from = req.headers.from()?;
        let cseq = req.headers.cseq()?;
        let top_via = req
            .headers
            .values(&HeaderName::Via)
            .next()
            .ok_or(HeaderError::Missing(HeaderName::Via))?;
        Ok(TransactionKey::Rfc2543 {
            request_uri: req.uri.as_text().clone(),
            from_tag: from.tag().map(Text::from),
            call_id: req.headers.call_id()?.clone(),
            cseq: cseq.seq,
            top_via,
            method,
        })
    }

    /// The client-transaction key a response matches (§17.1.3: top-Via branch, sent-by, and
    /// the CSeq method).
    pub fn for_response(resp: &Response) -> Result<TransactionKey, HeaderError> {
        let via = resp.headers.top_via()?;
        let cseq = resp.headers.cseq()?;
        let branch = via
            .params
            .value_text("branch")
            .ok_or(HeaderError::Malformed(HeaderName::Via))?;
        Ok(TransactionKey::Rfc3261 {
            branch,
            host: via.host.to_ascii_lowercase(),
            port: via.port,
            method: cseq.method,
        })
    }

    /// The same key with another method, e.g. to find the INVITE transaction a CANCEL targets.
    pub fn with_method(&self, m: Method) -> TransactionKey {
        let mut k = self.clone();
        match &mut k {
            TransactionKey::Rfc3261 { method, .. } | TransactionKey::Rfc2543 { method, .. } => {
                *method = m
            }
        }
        k
    }

    /// The method part of the key.
    pub fn method(&self) -> &Method {
        match self {
            TransactionKey::Rfc3261 { method, .. } | TransactionKey::Rfc2543 { method, .. } => {
                method
            }
        }
    }
}

/// A dialog identifier from the point of view of one side (RFC 3261 §12).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    pub call_id: Text,
    pub local_tag: Text,
    /// Empty when the peer sent no tag (RFC 2543 peers).
    pub remote_tag: Text,
}

impl DialogId {
    pub fn new(call_id: &str, local_tag: &str, remote_tag: &str) -> DialogId {
        DialogId {
            call_id: Text::from(call_id),
            local_tag: Text::from(local_tag),
            remote_tag: Text::from(remote_tag),
        }
    }

    /// For a request we received (we are UAS): local = To tag, remote = From tag. `Ok(None)` when
    /// the To has no tag (not yet in a dialog).
    pub fn for_uas(req: &Request) -> Result<Option<DialogId>, HeaderError> {
        let to = req.headers.to()?;
        let Some(local) = to.tag() else {
            return Ok(None);
        };
        let from = req.headers.from()?;
        Ok(Some(DialogId {
            call_id: req.headers.call_id()?.clone(),
            local_tag: Text::from(local),
            remote_tag: Text::from(from.tag().unwrap_or("")),
        }))
    }

    /// For a request we received, with the local tag we are about to put in our To.
    pub fn for_uas_with_tag(req: &Request, local_tag: &str) -> Result<DialogId, HeaderError> {
        let from = req.headers.from()?;
        Ok(DialogId {
            call_id: req.headers.call_id()?.clone(),
            local_tag: Text::from(local_tag),
            remote_tag: Text::from(from.tag().unwrap_or("")),
        })
    }

    /// For a response we received (we are UAC): local = From tag, remote = To tag. `Ok(None)` when
    /// the response's To has no tag.
    pub fn for_uac(resp: &Response) -> Result<Option<DialogId>, HeaderError> {
        let to = resp.headers.to()?;
        let Some(remote) = to.tag() else {
            return Ok(None);
        };
        let from = resp.headers.from()?;
        Ok(Some(DialogId {
            call_id: resp.headers.call_id()?.clone(),
            local_tag: Text::from(from.tag().unwrap_or("")),
            remote_tag: Text::from(remote),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::StatusCode;

    fn req(method: &str, via: &str, to: &str) -> Request {
        Request::parse(format!(
            "{method} sip:b@example.com SIP/2.0\r\nVia: {via}\r\nFrom: <sip:a@example.com>;tag=f1\r\n\
             To: {to}\r\nCall-ID: c1@h\r\nCSeq: 7 {m}\r\nMax-Forwards: 70\r\nl: 0\r\n\r\n",
            m = if method == "ACK" { "ACK" } else { method }
        ))
        .unwrap()
    }

    #[test]
    fn ack_matches_its_invite_server_transaction() {
        let inv = req(
            "INVITE",
            "SIP/2.0/UDP Host.example.com;branch=z9hG4bK1",
            "<sip:b@example.com>",
        );
        let ack = req(
            "ACK",
            "SIP/2.0/UDP host.example.com;branch=z9hG4bK1",
            "<sip:b@example.com>;tag=t9",
        );
        let cancel = req(
            "CANCEL",
            "SIP/2.0/UDP host.example.com;branch=z9hG4bK1",
            "<sip:b@example.com>",
        );
        let k = TransactionKey::for_request(&inv).unwrap();
        assert_eq!(TransactionKey::for_request(&ack).unwrap(), k);
        let kc = TransactionKey::for_request(&cancel).unwrap();
        assert_ne!(kc, k);
        assert_eq!(kc.with_method(Method::Invite), k);
    }

    #[test]
    fn rfc2543_fallback_when_branch_has_no_cookie() {
        let inv = req(
            "INVITE",
            "SIP/2.0/UDP h;branch=z9hG4bK",
            "<sip:b@example.com>",
        );
        let ack = req(
            "ACK",
            "SIP/2.0/UDP h;branch=z9hG4bK",
            "<sip:b@example.com>;tag=x",
        );
        let k = TransactionKey::for_request(&inv).unwrap();
        assert!(matches!(k, TransactionKey::Rfc2543 { cseq: 7, .. }));
        assert_eq!(TransactionKey::for_request(&ack).unwrap(), k);
    }

    #[test]
    fn response_key_and_dialog_ids() {
        let inv = req(
            "INVITE",
            "SIP/2.0/UDP h:5060;branch=z9hG4bKz",
            "<sip:b@example.com>",
        );
        let resp = Response::for_request(&inv, StatusCode::OK, None).with_to_tag("t2");
        let kr = TransactionKey::for_response(&resp).unwrap();
        assert_eq!(kr, TransactionKey::for_request(&inv).unwrap());
        assert_eq!(DialogId::for_uas(&inv).unwrap(), None);
        let uas = DialogId::for_uas_with_tag(&inv, "t2").unwrap();
        let uac = DialogId::for_uac(&resp).unwrap().unwrap();
        assert_eq!(
            (uas.local_tag.clone(), uas.remote_tag.clone()),
            (uac.remote_tag, uac.local_tag)
        );
        assert_eq!(uas.call_id, "c1@h");
    }
}
