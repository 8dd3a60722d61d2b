//! Our own user agents, built from the `sip` and `dsp` crates: the caller behind
//! `veilig-bellen call` and the demo's **Bel nu** ([`caller`], [`bel_nu`]), and the demo's built-in
//! agent phone ([`agent_phone`]). They let anyone see a verified call without installing sipp or a softphone.
//!
//! Each user agent is a sans-IO state machine implementing [`UserAgent`] — the four verbs of the
//! `sip` crate, with SIP and RTP datagrams as input — and [`driver`] is the one thin tokio driver
//! that owns the two UDP sockets (SIP and RTP) and the timer for any of them.

pub mod agent_phone;
#[cfg(feature = "demo")]
pub mod bel_nu;
pub mod caller;
pub mod driver;
pub mod media;

use bytes::Bytes;
use std::net::SocketAddr;
use std::time::Instant;

/// Which of a user agent's two sockets a datagram arrived on or leaves from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Socket {
    Sip,
    Rtp,
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    pub socket: Socket,
    pub to: SocketAddr,
    pub bytes: Bytes,
}

/// A sans-IO user agent. Polling order after every `handle_*`: drain [`UserAgent::poll_transmit`],
/// drain [`UserAgent::poll_event`], then sleep until [`UserAgent::poll_timeout`] or the next datagram.
pub trait UserAgent {
    /// What the user agent reports (call answered, digit sent, …).
    type Event;

    /// A datagram arrived on `socket` from `from`.
    fn handle_datagram(&mut self, now: Instant, socket: Socket, from: SocketAddr, bytes: Bytes);
    /// The deadline from [`UserAgent::poll_timeout`] passed (calling early is harmless).
    fn handle_timeout(&mut self, now: Instant);
    fn poll_transmit(&mut self) -> Option<Datagram>;
    fn poll_event(&mut self) -> Option<Self::Event>;
    fn poll_timeout(&self) -> Option<Instant>;
    /// The user agent has nothing left to do; the driver stops.
    fn is_finished(&self) -> bool;
}
