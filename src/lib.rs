//! veilig-bellen: a self-contained SIP/RTP softswitch that tells a municipality's contact centre who is
//! calling, with proof from Yivi (IRMA).
//!
//! The protocol cores live in the `dsp` and `sip` crates and do no I/O; this crate holds the
//! application: the call flow, the IRMA client, the session store, the HTTP side and the CLI.

#![forbid(unsafe_code)]

/// Our SIP `Server` / `User-Agent` value.
pub const PRODUCT: &str = concat!("veilig-bellen/", env!("CARGO_PKG_VERSION"));

pub mod agent_api;
pub mod audio_file;
pub mod audit;
pub mod call;
pub mod call_cmd;
pub mod cli;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod dtmf_cmd;
pub mod exchange;
pub mod extra_requests;
pub mod fd_limit;
pub mod http;
pub mod irma;
pub mod links;
pub mod media_plane;
pub mod metrics;
pub mod pii;
pub mod rtp_ports;
pub mod serve;
pub mod server;
pub mod sip_driver;
pub mod softphone;
pub mod store;
pub mod sync;
pub mod tenant;
pub mod time;
pub mod webrtc;
