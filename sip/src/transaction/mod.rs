//! SIP transactions (RFC 3261 §17, amended by RFC 6026): four sans-IO state machines, one per file.
//!
//! The state machines work on *encoded* messages and status codes, not on parsed messages: the
//! [`crate::endpoint`] parses, matches (§17.1.3, §17.2.3), encodes and addresses; a transaction only
//! decides what to (re)send, when, and whether a received message goes up to the transaction user
//! (TU). That keeps every timer rule testable with nothing but a virtual clock.
//!
//! Every transaction has the same four verbs:
//!
//! * `handle_*(now, ..)`: feed it an input (a message, a TU action, a timer expiry);
//! * `poll_transmit()`: encoded messages to put on the wire, oldest first;
//! * `poll_event()`: what the TU must learn that no handle call returned (timeouts, transport errors);
//! * `poll_timeout()`: when to call `handle_timeout(now)` next.
//!
//! Polling order after every `handle_*` call: drain `poll_transmit()` until `None`, then drain
//! `poll_event()` until `None`, then read `poll_timeout()`. Once `is_terminated()` the owner drops it.
//!
//! The bookkeeping the four machines share (output queues, timer table, resending the last
//! message, ending) lives in `shared.rs`; each machine file holds only its states and transitions.
//!
//! On a reliable transport (TCP, TLS) no request or response is retransmitted and Timers D, I, J and K
//! are zero, so the transaction goes straight to Terminated (RFC 3261 Table 4).

pub mod client_invite;
pub mod client_non_invite;
pub mod server_invite;
pub mod server_non_invite;
pub(crate) mod shared;
pub mod timer;

pub use client_invite::{ClientInvite, ClientInviteState};
pub use client_non_invite::{ClientNonInvite, ClientNonInviteState};
pub use server_invite::{ServerInvite, ServerInviteState};
pub use server_non_invite::{ServerNonInvite, ServerNonInviteState};
pub(crate) use shared::Transaction;
pub use timer::{TimerConfig, TimerKind, Timers};

use std::fmt;

/// The transport a message travelled on (RFC 3261 §18). Only UDP is unreliable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    /// TCP and TLS are reliable: no retransmissions, zero wait timers.
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// The Via transport token (`SIP/2.0/UDP`, ...).
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.via_token())
    }
}

/// What a transaction tells its owner outside of a `handle_*` return value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxEvent {
    /// A timer ended the transaction without the expected message: B or F (no final response),
    /// H (no ACK for a non-2xx final response).
    Timeout(TimerKind),
    /// The transport reported it could not deliver; the transaction is Terminated.
    TransportError,
}

/// Whether a received message must be passed to the TU or was absorbed by the transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Pass the message up to the transaction user.
    ToTu,
    /// The transaction consumed it (a retransmission, or a message its state ignores).
    Absorbed,
}

/// The owner asked a transaction for something its state forbids.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransactionError {
    #[error("status code {0} is outside 100..=699")]
    BadStatus(u16),
    #[error("the transaction already sent a final response")]
    FinalAlreadySent,
    #[error("the transaction is terminated")]
    Terminated,
}

/// Checks a status code is one a transaction can send.
pub(crate) fn check_status(status: u16) -> Result<(), TransactionError> {
    if (100..=699).contains(&status) {
        Ok(())
    } else {
        Err(TransactionError::BadStatus(status))
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Clock-driving helpers for the state machines' unit tests.

    use std::time::{Duration, Instant};

    use bytes::Bytes;

    use super::Transaction;

    pub(crate) fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A response as the tests' TU encodes it: just its status code.
    pub(crate) fn encoded(status: u16) -> Bytes {
        Bytes::from(status.to_string())
    }

    /// Everything the transaction queued for the wire, oldest first.
    pub(crate) fn drain(tx: &mut impl Transaction) -> Vec<Bytes> {
        std::iter::from_fn(|| tx.poll_transmit()).collect()
    }

    /// Runs the clock to `until`, waking at every deadline; returns, per message sent, the wake
    /// time since `t0`.
    pub(crate) fn sends_until(
        tx: &mut impl Transaction,
        t0: Instant,
        until: Instant,
    ) -> Vec<Duration> {
        let mut sends = Vec::new();
        while let Some(at) = tx.poll_timeout().filter(|at| *at <= until) {
            tx.handle_timeout(at);
            sends.extend(drain(tx).iter().map(|_| at - t0));
        }
        sends
    }

    /// Retransmissions at T1 doubling up to T2 (Timers E and G, §17.1.2.2, §17.2.1) until 64·T1.
    pub(crate) fn doubling_to_t2() -> Vec<Duration> {
        let at = [
            500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500,
        ];
        at.into_iter().map(ms).collect()
    }
}
