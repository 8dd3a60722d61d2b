//! Calls from citizens' browsers (issue 15, variant B): the media half of a WebRTC call, as a
//! gateway between the browser (ICE-lite, DTLS-SRTP, SCTP data channel — `str0m`) and plain RTP
//! on loopback toward the call task, which then treats the browser like any trunk caller.
//!
//! * [`media`]: [`BrowserMedia`], the sans-IO side: accepts the browser's SDP offer and answers
//!   it, turns the browser's audio (Opus with the `opus` feature, else PCMA/PCMU) into 20 ms
//!   frames of 8 kHz linear PCM and back, and carries data-channel text messages.
//! * [`gateway`]: [`Gateway`], the thin tokio driver: one UDP socket for the browser (the ICE host
//!   candidate), one loopback UDP socket for plain RTP (PCMA) toward the call task, and one task
//!   that feeds [`BrowserMedia`] and ends when the call ends.
//!
//! Signalling (WHIP: the browser's `POST` of its offer, `crate::http::whip`) and the call path
//! (`crate::call::browser`) call [`Gateway::start`] with the offer and return the answer.
//!
//! ```text
//!   browser ──UDP: STUN/DTLS/SRTP/SCTP──▶ Gateway ──RTP PCMA, 127.0.0.1──▶ call task ──▶ agent
//!           ◀──────────────────────────── Gateway ◀──RTP PCMA/PCMU──────── call task
//! ```

pub mod gateway;
pub mod media;

pub use gateway::{Gateway, GatewayConfig, GatewayError, GatewayEvent};
pub use media::{
    AudioCodec, BrowserEvent, BrowserMedia, CloseReason, MediaTimeouts, OfferError, Transmit,
    FRAME_SAMPLES,
};
