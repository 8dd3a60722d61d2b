//! The crate-wide error: every module's error in one `#[non_exhaustive]` enum (str0m's
//! `src/error.rs` pattern).
//!
//! Each module keeps its own error type and its functions return it; this enum is for callers that
//! want one type across modules (`?` converts through the `From` impls). New modules add a variant,
//! which is why the enum is non-exhaustive.

use crate::auth::AuthError;
use crate::dialog::DialogError;
use crate::endpoint::EndpointError;
use crate::message::framer::FramerError;
use crate::message::name_addr::NameAddrError;
use crate::message::typed::HeaderError;
use crate::message::uri::UriError;
use crate::message::ParseError;
use crate::ports::PortError;
use crate::registrar::RegisterError;
use crate::rfc4733::Rfc4733Error;
use crate::rtp::RtpError;
use crate::sdp::SdpError;
use crate::transaction::TransactionError;

/// Any error of this crate.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A SIP message could not be parsed ([`crate::message`]).
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// A header value is missing or malformed ([`crate::message::typed`]).
    #[error(transparent)]
    Header(#[from] HeaderError),
    /// A URI is malformed ([`crate::message::uri`]).
    #[error(transparent)]
    Uri(#[from] UriError),
    /// A name-addr (From, To, Contact, ...) is malformed ([`crate::message::name_addr`]).
    #[error(transparent)]
    NameAddr(#[from] NameAddrError),
    /// A TCP/TLS byte stream does not frame into SIP messages ([`crate::message::framer`]).
    #[error(transparent)]
    Framer(#[from] FramerError),
    /// A transaction refused a TU action ([`crate::transaction`]).
    #[error(transparent)]
    Transaction(#[from] TransactionError),
    /// The endpoint could not carry out a TU call ([`crate::endpoint`]).
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// A dialog could not be created or a request built ([`crate::dialog`]).
    #[error(transparent)]
    Dialog(#[from] DialogError),
    /// A REGISTER was refused ([`crate::registrar`]).
    #[error(transparent)]
    Register(#[from] RegisterError),
    /// Digest authentication failed ([`crate::auth`]).
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// An SDP offer or answer was unusable ([`crate::sdp`]).
    #[error(transparent)]
    Sdp(#[from] SdpError),
    /// An RTP packet or session operation failed ([`crate::rtp`]).
    #[error(transparent)]
    Rtp(#[from] RtpError),
    /// An RFC 4733 telephone-event payload was malformed ([`crate::rfc4733`]).
    #[error(transparent)]
    Rfc4733(#[from] Rfc4733Error),
    /// The RTP port pool is misconfigured or exhausted ([`crate::ports`]).
    #[error(transparent)]
    Port(#[from] PortError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_errors_convert_and_keep_their_message() {
        let from_tx: Error = TransactionError::BadStatus(99).into();
        assert_eq!(from_tx, Error::Transaction(TransactionError::BadStatus(99)));
        assert_eq!(from_tx.to_string(), "status code 99 is outside 100..=699");
        let from_endpoint: Error = EndpointError::UnknownTransaction.into();
        assert_eq!(
            from_endpoint.to_string(),
            EndpointError::UnknownTransaction.to_string()
        );
    }

    #[test]
    fn question_mark_converts_across_modules() {
        fn pool() -> Result<crate::ports::PortPool, Error> {
            let key = crate::random::RandomKey::from_bytes([0; 32]);
            Ok(crate::ports::PortPool::new(20_001, 20_000, &key)?)
        }
        assert!(matches!(pool(), Err(Error::Port(_))));
    }
}
