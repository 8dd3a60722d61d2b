//! An io_uring driver for many UDP sockets (RTP media): the `uring` model of
//! `benches/rtp_io_models.rs` as a library with a safe API.
//!
//! One [`UdpRing`] owns its sockets. Every socket has a multishot `recvmsg` armed on one shared
//! ring of provided buffers (so each datagram comes with its source address, for RTP latching);
//! sends are queued as `send` operations (to an address, or none on a connected socket) and submitted, with the re-arms, by the next
//! [`UdpRing::wait`]: one `io_uring_enter` per loop turn. A [`Waker`] (an eventfd polled by the
//! ring) wakes a blocked `wait` from any thread.
//!
//! This crate is the one place of veilig-bellen allowed `unsafe`; every block carries a
//! `// SAFETY:` comment, and nothing a caller can do with the public API (including dropping
//! things in any order, on any thread, or panicking in a callback) causes undefined behaviour.
//!
//! Linux only (6.0 or later at run time, see [`UdpRing::new`]); elsewhere the crate is empty.
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

#[cfg(target_os = "linux")]
mod ring;

#[cfg(target_os = "linux")]
pub use ring::{
    Completion, SocketId, Stats, Token, UdpRing, Waker, MAX_DATAGRAM, MAX_INFLIGHT_SENDS,
    MAX_RECV_ERRORS,
};
