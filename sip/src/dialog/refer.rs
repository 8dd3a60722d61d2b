//! REFER and its NOTIFYs (RFC 3515): `message/sipfrag` bodies (RFC 3420) and Subscription-State.
//!
//! The transferor sends REFER with Refer-To; the transferee answers 202 and reports progress in
//! NOTIFYs whose body is the status line of its new call (`SIP/2.0 200 OK`). This module parses
//! and writes those bodies and headers; [`super::Dialog`] builds the requests.

use std::fmt;

/// The media type of a REFER progress NOTIFY body.
pub const SIPFRAG_CONTENT_TYPE: &str = "message/sipfrag;version=2.0";

/// The status line carried in a sipfrag body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipFragStatus {
    pub code: u16,
    pub reason: String,
}

impl SipFragStatus {
    /// Parses the first line of a sipfrag body: `SIP/2.0 <3-digit code> <reason>`. Anything else
    /// (a request line, garbage, a code outside 100..=699) is `None`.
    pub fn parse(body: &[u8]) -> Option<SipFragStatus> {
        let end = body
            .iter()
            .position(|b| *b == b'\r' || *b == b'\n')
            .unwrap_or(body.len());
        let line = std::str::from_utf8(body.get(..end)?).ok()?;
        let rest = line.strip_prefix("SIP/2.0 ")?;
        let code_text = rest.get(..3)?;
        if !code_text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let code: u16 = code_text.parse().ok()?;
        if !(100..=699).contains(&code) {
            return None;
        }
        let after = rest.get(3..)?;
        if !after.is_empty() && !after.starts_with(' ') {
            return None;
        }
        Some(SipFragStatus {
            code,
            reason: after.trim().to_owned(),
        })
    }

    /// The body to send: `SIP/2.0 200 OK\r\n`.
    pub fn to_body(&self) -> String {
        format!("{self}\r\n")
    }

    /// A final status (≥ 200) ends the implicit subscription.
    pub fn is_final(&self) -> bool {
        self.code >= 200
    }
}

impl fmt::Display for SipFragStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SIP/2.0 {} {}",
            self.code,
            self.reason.replace(['\r', '\n'], " ")
        )
    }
}

/// The Subscription-State of a NOTIFY (RFC 6665 §8.2.3, as used by RFC 3515).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionState {
    Active { expires: Option<u32> },
    Pending { expires: Option<u32> },
    Terminated { reason: Option<String> },
}

impl SubscriptionState {
    /// Parses `active;expires=60`, `terminated;reason=noresource`, ...; unknown states are `None`.
    pub fn parse(value: &str) -> Option<SubscriptionState> {
        let mut parts = value.split(';');
        let state = parts.next()?.trim().to_ascii_lowercase();
        let mut expires = None;
        let mut reason = None;
        for p in parts {
            let (name, val) = p.split_once('=').unwrap_or((p, ""));
            match name.trim().to_ascii_lowercase().as_str() {
                "expires" => expires = val.trim().parse().ok(),
                "reason" => reason = Some(val.trim().to_owned()),
                _ => {}
            }
        }
        match state.as_str() {
            "active" => Some(SubscriptionState::Active { expires }),
            "pending" => Some(SubscriptionState::Pending { expires }),
            "terminated" => Some(SubscriptionState::Terminated { reason }),
            _ => None,
        }
    }
}

impl fmt::Display for SubscriptionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubscriptionState::Active { expires } | SubscriptionState::Pending { expires } => {
                let name = if matches!(self, SubscriptionState::Active { .. }) {
                    "active"
                } else {
                    "pending"
                };
                f.write_str(name)?;
                if let Some(e) = expires {
                    write!(f, ";expires={e}")?;
                }
                Ok(())
            }
            SubscriptionState::Terminated { reason } => {
                f.write_str("terminated")?;
                if let Some(r) = reason {
                    write!(f, ";reason={r}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sipfrag_status_lines() {
        assert_eq!(
            SipFragStatus::parse(b"SIP/2.0 200 OK\r\n"),
            Some(SipFragStatus {
                code: 200,
                reason: "OK".into()
            })
        );
        assert_eq!(
            SipFragStatus::parse(b"SIP/2.0 100 Trying"),
            Some(SipFragStatus {
                code: 100,
                reason: "Trying".into()
            })
        );
        let busy = SipFragStatus::parse(b"SIP/2.0 486 Busy Here\r\nContent-Length: 0\r\n").unwrap();
        assert_eq!(busy.code, 486);
        assert!(busy.is_final());
        assert_eq!(SipFragStatus::parse(b"INVITE sip:x SIP/2.0\r\n"), None);
        assert_eq!(SipFragStatus::parse(b"SIP/2.0 2000 OK"), None);
        assert_eq!(SipFragStatus::parse(b"SIP/2.0 099 Low"), None);
        assert_eq!(SipFragStatus::parse(b"SIP/2.0 20"), None);
        assert_eq!(SipFragStatus::parse(b"\xff\xfe"), None);
        assert_eq!(SipFragStatus::parse(b""), None);
    }

    #[test]
    fn sipfrag_round_trips() {
        let s = SipFragStatus {
            code: 180,
            reason: "Ringing".into(),
        };
        assert_eq!(s.to_body(), "SIP/2.0 180 Ringing\r\n");
        assert_eq!(SipFragStatus::parse(s.to_body().as_bytes()), Some(s));
    }

    #[test]
    fn subscription_state_parses_and_writes() {
        assert_eq!(
            SubscriptionState::parse("active;expires=60"),
            Some(SubscriptionState::Active { expires: Some(60) })
        );
        let t = SubscriptionState::parse("Terminated; reason=noresource").unwrap();
        assert_eq!(
            t,
            SubscriptionState::Terminated {
                reason: Some("noresource".into())
            }
        );
        assert_eq!(t.to_string(), "terminated;reason=noresource");
        assert_eq!(SubscriptionState::parse("bogus"), None);
    }
}
