//! What the four transaction state machines of RFC 3261 §17 share: the current state, the timer
//! table, the output queues, the "resend the last message" rule and the ways a transaction ends.
//!
//! Each machine (`client_invite.rs`, ...) keeps its own state enum and transition tables; this file
//! only holds the bookkeeping they would otherwise each repeat, and [`transaction_verbs!`] writes
//! the accessors and `poll_*` verbs that are the same for all four.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{TimerConfig, TimerKind, Timers, TxEvent};

/// A state enum with a Terminated state.
pub(crate) trait TxState: Copy + PartialEq {
    const TERMINATED: Self;
}

/// The verbs every transaction has, for owners (the endpoint) that hold either kind.
pub(crate) trait Transaction {
    fn handle_timeout(&mut self, now: Instant);
    fn handle_transport_error(&mut self, now: Instant);
    fn poll_transmit(&mut self) -> Option<Bytes>;
    fn poll_event(&mut self) -> Option<TxEvent>;
    fn poll_timeout(&self) -> Option<Instant>;
    fn is_terminated(&self) -> bool;
}

/// State, timers and output of one transaction.
#[derive(Debug)]
pub(crate) struct TxCore<S> {
    pub(crate) state: S,
    pub(crate) config: TimerConfig,
    pub(crate) reliable: bool,
    pub(crate) timers: Timers,
    /// The first final status received (client) or sent (server).
    pub(crate) final_status: Option<u16>,
    /// What a retransmission repeats: the request (client), the ACK for a non-2xx final (INVITE
    /// client in Completed), or the last response (server).
    last_sent: Option<Bytes>,
    transmits: VecDeque<Bytes>,
    events: VecDeque<TxEvent>,
}

impl<S: TxState> TxCore<S> {
    pub(crate) fn new(state: S, config: TimerConfig, reliable: bool) -> Self {
        TxCore {
            state,
            config,
            reliable,
            timers: Timers::default(),
            final_status: None,
            last_sent: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Starts a client transaction (§17.1.1.2, §17.1.2.2): queues `request`, arms the retransmit
    /// timer `resend` at T1 (unreliable transports only) and the timeout timer `give_up` at 64·T1.
    pub(crate) fn start_client(
        now: Instant,
        state: S,
        config: TimerConfig,
        reliable: bool,
        request: Bytes,
        (resend, give_up): (TimerKind, TimerKind),
    ) -> Self {
        let mut core = TxCore::new(state, config, reliable);
        core.send(request);
        if !reliable {
            core.timers.set(resend, now + config.t1);
        }
        core.timers.set(give_up, now + config.t1x64());
        core
    }

    pub(crate) fn is_terminated(&self) -> bool {
        self.state == S::TERMINATED
    }

    /// Queues `bytes` for the wire and remembers them as what [`resend`](Self::resend) repeats.
    pub(crate) fn send(&mut self, bytes: Bytes) {
        self.transmits.push_back(bytes.clone());
        self.last_sent = Some(bytes);
    }

    /// Queues the last message sent again (a retransmission, or the answer to one).
    pub(crate) fn resend(&mut self) {
        if let Some(last) = &self.last_sent {
            self.transmits.push_back(last.clone());
        }
    }

    /// A retransmission timer fired: resend and re-arm `kind` after `interval`.
    pub(crate) fn retransmit(&mut self, now: Instant, kind: TimerKind, interval: Duration) {
        self.resend();
        self.timers.set(kind, now + interval);
    }

    /// Enters `waiting` and arms `kind` to end it after `wait`; a zero wait (reliable transports,
    /// RFC 3261 Table 4) terminates at once.
    pub(crate) fn linger(&mut self, now: Instant, waiting: S, kind: TimerKind, wait: Duration) {
        if wait.is_zero() {
            self.terminate();
        } else {
            self.state = waiting;
            self.timers.set(kind, now + wait);
        }
    }

    /// Timer `kind` ended the transaction without the message it waited for.
    pub(crate) fn time_out(&mut self, kind: TimerKind) {
        self.events.push_back(TxEvent::Timeout(kind));
        self.terminate();
    }

    /// The transport failed (§17.1.4, §17.2.4): Terminated, reported once.
    pub(crate) fn transport_error(&mut self) {
        if !self.is_terminated() {
            self.events.push_back(TxEvent::TransportError);
            self.terminate();
        }
    }

    pub(crate) fn terminate(&mut self) {
        self.state = S::TERMINATED;
        self.timers.stop_all();
    }

    pub(crate) fn poll_transmit(&mut self) -> Option<Bytes> {
        self.transmits.pop_front()
    }

    pub(crate) fn poll_event(&mut self) -> Option<TxEvent> {
        self.events.pop_front()
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }
}

/// Writes the methods that are the same for every transaction type `$tx` (with a `core:
/// TxCore<$state>` field and an inherent `handle_timeout`): `state`, `is_terminated`,
/// `final_status`, `handle_transport_error` and the `poll_*` verbs, plus the [`TxState`] and
/// [`Transaction`] impls.
macro_rules! transaction_verbs {
    ($tx:ident, $state:ident) => {
        impl $crate::transaction::shared::TxState for $state {
            const TERMINATED: Self = $state::Terminated;
        }

        impl $tx {
            pub fn state(&self) -> $state {
                self.core.state
            }

            pub fn is_terminated(&self) -> bool {
                self.core.is_terminated()
            }

            /// The first final status this transaction received (client) or sent (server).
            pub fn final_status(&self) -> Option<u16> {
                self.core.final_status
            }

            /// The transport failed to deliver this transaction's message (RFC 3261 §17.1.4,
            /// §17.2.4): Terminated, with [`TxEvent::TransportError`](super::TxEvent).
            pub fn handle_transport_error(&mut self, _now: Instant) {
                self.core.transport_error();
            }

            /// The next encoded message to put on the wire, oldest first.
            pub fn poll_transmit(&mut self) -> Option<Bytes> {
                self.core.poll_transmit()
            }

            /// The next timeout or transport error to report to the TU.
            pub fn poll_event(&mut self) -> Option<super::TxEvent> {
                self.core.poll_event()
            }

            /// When to call `handle_timeout` next.
            pub fn poll_timeout(&self) -> Option<Instant> {
                self.core.poll_timeout()
            }
        }

        impl $crate::transaction::shared::Transaction for $tx {
            fn handle_timeout(&mut self, now: Instant) {
                $tx::handle_timeout(self, now)
            }
            fn handle_transport_error(&mut self, now: Instant) {
                $tx::handle_transport_error(self, now)
            }
            fn poll_transmit(&mut self) -> Option<Bytes> {
                $tx::poll_transmit(self)
            }
            fn poll_event(&mut self) -> Option<super::TxEvent> {
                $tx::poll_event(self)
            }
            fn poll_timeout(&self) -> Option<Instant> {
                $tx::poll_timeout(self)
            }
            fn is_terminated(&self) -> bool {
                $tx::is_terminated(self)
            }
        }
    };
}

pub(crate) use transaction_verbs;
