//! IRMA/Yivi: the requestor client that talks to a municipality's IRMA server, the rule that decides
//! whether a disclosure result is acceptable, and a simulator of the IRMA server for `demo` and tests.
//!
//! # The journey
//! 1. [`IrmaClient::start_disclosure`] posts `{"@context": ".../disclosure/v2", "disclose": <tenant
//!    condiscon>, "clientReturnUrl": "tel:<number>,<code>"}` to `POST {irma}/session` and returns a
//!    [`StartedSession`]: the secret [`RequestorToken`] (stays on our server) and the session pointer
//!    for yivi-frontend. `augmentReturnUrl` is never set: irmago would append the token to the URL.
//! 2. [`IrmaClient::wait_terminal`] follows `GET /session/{token}/statusevents` (server-sent events,
//!    each `data:` a JSON-quoted status) and falls back to polling `GET /session/{token}/status` every
//!    second, until DONE, CANCELLED, TIMEOUT or the caller's deadline. A quiet stream is backed by a
//!    status check every three request timeouts (1–30 s), so a silently dead stream costs little.
//! 3. On DONE, fetch [`IrmaClient::result`] at once: irmago forgets results 5 minutes after the end.
//! 4. [`accept_result`] is the only way to [`VerifiedAttribute`]s: status DONE, proofStatus VALID,
//!    every requested disjunction satisfied, every disclosed id on the tenant's allow-list.
//! 5. [`IrmaClient::cancel`] (`DELETE /session/{token}`) when a session is abandoned.
//!
//! Every request has a timeout and bounded retries (connection failures, timeouts and 5xx; never 4xx).
//! Error messages never contain attribute values, request URLs (they hold the token) or tokens.
//!
//! # Simulator
//! [`simulator::simulator_router`] is an axum router, nested at `/irma-sim`, that speaks the same
//! requestor API with irmago's JSON shapes and errors, plus a stand-in for the Yivi app
//! (`POST /irma-sim/session/{clientToken}/disclose`). It is **not** an IRMA server: it verifies no
//! cryptography and says so in a header on every response.

mod accept;
mod client;
#[cfg(feature = "demo")]
pub mod simulator;
mod sse;
mod types;

pub use accept::{accept_result, accept_session, Asked, VerifiedAttribute};
pub use client::{IrmaAuth, IrmaClient, IrmaServerConfig, ResultJwtKey, SessionKind};
pub use sse::{SseError, SseParser};
pub use types::{
    AttributeProofStatus, DisclosedAttribute, ProofStatus, RemoteError, RequestorToken,
    SessionResult, SessionStatus, StartedSession, DISCLOSURE_CONTEXT, SIGNATURE_CONTEXT,
    SIGNED_MESSAGE_CONTEXT,
};

/// Everything that can go wrong talking to an IRMA server or judging its result. Messages never
/// contain attribute values, tokens or request URLs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IrmaError {
    /// proofStatus INVALID or INVALID_TIMESTAMP, or a result that contradicts itself.
    #[error("the disclosure proof is invalid")]
    Invalid,
    /// proofStatus EXPIRED: a disclosed credential had expired.
    #[error("a disclosed credential has expired")]
    Expired,
    /// proofStatus UNMATCHED_REQUEST: the proof belongs to another request.
    #[error("the disclosure does not match the request")]
    UnmatchedRequest,
    /// proofStatus MISSING_ATTRIBUTES, or a requested disjunction left unsatisfied.
    #[error("not all requested attributes were disclosed")]
    MissingAttributes,
    /// A disclosed attribute id is not on the tenant's allow-list (the id, never its value).
    #[error("attribute {attribute} is not on the tenant's allow-list")]
    NotAllowed { attribute: String },
    /// The session ended (or is still running) without DONE.
    #[error("the session is not done (status {0})")]
    NotDone(SessionStatus),
    /// The IRMA server does not know the token (never existed, or forgotten 5 minutes after the end).
    #[error("the IRMA server does not know this session (SESSION_UNKNOWN)")]
    SessionUnknown,
    /// No answer within the configured request timeout, after all retries.
    #[error("the IRMA server did not answer in time")]
    Timeout,
    /// TLS handshake or certificate failure.
    #[error("TLS failure talking to the IRMA server: {0}")]
    Tls(String),
    /// Connection refused, DNS failure, connection reset.
    #[error("the IRMA server is unreachable: {0}")]
    Unreachable(String),
    /// The IRMA server answered with an error body (irmago `RemoteError`).
    #[error("the IRMA server answered {status} {error}: {description}")]
    Server {
        status: u16,
        error: String,
        description: String,
    },
    /// A signed result failed its check (signature, issuer, subject or expiry): nothing in it is
    /// believed.
    #[error("the IRMA server's signed result is not trusted: {0}")]
    UntrustedResult(String),
    /// The answer was not what the irmago API promises.
    #[error("unexpected answer from the IRMA server: {0}")]
    BadResponse(String),
    /// The client configuration is unusable (bad URL, bad key).
    #[error("bad IRMA client configuration: {0}")]
    Config(String),
}
