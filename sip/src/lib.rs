//! Sans-IO SIP core for veilig-bellen.
//!
//! No tokio, no sockets, no clock reads: every input carries `now`, every object answers with what to
//! send (`poll_transmit`), what happened (`poll_event`) and when it wants to be woken (`poll_timeout`).

pub mod auth;
pub mod message;
pub mod ratelimit;
pub mod registrar;
pub mod transaction;
pub mod dialog;
pub mod endpoint;
pub mod testnet;
pub mod sdp;
pub mod rfc4733;
pub mod rtp;
pub mod ports;
