//! Non-INVITE server transaction (RFC 3261 §17.2.2).
//!
//! ```text
//!  request ──► Trying ──1xx from TU──► Proceeding ──200-699 from TU──► Completed ──Timer J──► Terminated
//!               └───────────200-699 from TU───────────────────────────────┘
//! ```
//!
//! Request retransmissions are absorbed in Trying and answered with the last response afterwards.
//! Timer J is 64·T1 on unreliable transports and zero on reliable ones.

use std::collections::VecDeque;

use bytes::Bytes;
use std::time::Instant;

use super::{check_status, TimerConfig, TimerKind, Timers, TransactionError, TxEvent};

/// States of the non-INVITE server transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerNonInviteState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// A non-INVITE server transaction.
///
/// Polling order: after each `handle_*`/`send_response` call drain [`poll_transmit`](Self::poll_transmit),
/// then [`poll_event`](Self::poll_event), then read [`poll_timeout`](Self::poll_timeout).
#[derive(Debug)]
pub struct ServerNonInvite {
    state: ServerNonInviteState,
    config: TimerConfig,
    reliable: bool,
    timers: Timers,
    last_response: Option<Bytes>,
    final_status: Option<u16>,
    transmits: VecDeque<Bytes>,
    events: VecDeque<TxEvent>,
}

impl ServerNonInvite {
    /// A new transaction for a received request, in Trying.
    pub fn new(config: TimerConfig, reliable: bool) -> Self {
        ServerNonInvite {
            state: ServerNonInviteState::Trying,
            config,
            reliable,
            timers: Timers::default(),
            last_response: None,
            final_status: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    pub fn state(&self) -> ServerNonInviteState {
        self.state
    }

    pub fn is_terminated(&self) -> bool {
        self.state == ServerNonInviteState::Terminated
    }

    /// The final status sent so far, if any.
    pub fn final_status(&self) -> Option<u16> {
        self.final_status
    }

    /// The TU sends a response.
    pub fn send_response(
        &mut self,
        now: Instant,
        status: u16,
        encoded: Bytes,
    ) -> Result<(), TransactionError> {
        check_status(status)?;
        match self.state {
            ServerNonInviteState::Trying | ServerNonInviteState::Proceeding => {
                self.transmits.push_back(encoded.clone());
                self.last_response = Some(encoded);
                if status < 200 {
                    self.state = ServerNonInviteState::Proceeding;
                } else {
                    self.final_status = Some(status);
                    let wait = self.config.timer_j(self.reliable);
                    if wait.is_zero() {
                        self.terminate();
                    } else {
                        self.state = ServerNonInviteState::Completed;
                        self.timers.set(TimerKind::J, now + wait);
                    }
                }
                Ok(())
            }
            ServerNonInviteState::Completed => Err(TransactionError::FinalAlreadySent),
            ServerNonInviteState::Terminated => Err(TransactionError::Terminated),
        }
    }

    /// A retransmission of the request arrived.
    pub fn handle_request_retransmission(&mut self, _now: Instant) {
        if matches!(
            self.state,
            ServerNonInviteState::Proceeding | ServerNonInviteState::Completed
        ) {
            if let Some(last) = &self.last_response {
                self.transmits.push_back(last.clone());
            }
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(kind) = self.timers.pop_expired(now) {
            if kind == TimerKind::J && self.state == ServerNonInviteState::Completed {
                self.terminate();
            }
        }
    }

    /// The transport failed to send a response (§17.2.4): Terminated.
    pub fn handle_transport_error(&mut self, _now: Instant) {
        if self.state != ServerNonInviteState::Terminated {
            self.events.push_back(TxEvent::TransportError);
            self.terminate();
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<TxEvent> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    fn terminate(&mut self) {
        self.state = ServerNonInviteState::Terminated;
        self.timers.stop_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn drain(tx: &mut ServerNonInvite) -> Vec<Bytes> {
        std::iter::from_fn(|| tx.poll_transmit()).collect()
    }

    #[test]
    fn retransmission_in_trying_is_absorbed() {
        let t0 = Instant::now();
        let mut tx = ServerNonInvite::new(TimerConfig::default(), false);
        tx.handle_request_retransmission(t0);
        assert!(drain(&mut tx).is_empty());
        assert_eq!(tx.state(), ServerNonInviteState::Trying);
    }

    #[test]
    fn completed_answers_retransmissions_until_timer_j() {
        let t0 = Instant::now();
        let mut tx = ServerNonInvite::new(TimerConfig::default(), false);
        tx.send_response(t0, 200, Bytes::from_static(b"200"))
            .unwrap();
        assert_eq!(drain(&mut tx), vec![Bytes::from_static(b"200")]);
        tx.handle_request_retransmission(t0 + Duration::from_secs(1));
        assert_eq!(drain(&mut tx), vec![Bytes::from_static(b"200")]);
        assert_eq!(
            tx.send_response(t0, 500, Bytes::from_static(b"500")),
            Err(TransactionError::FinalAlreadySent)
        );
        assert_eq!(tx.poll_timeout(), Some(t0 + Duration::from_secs(32)));
        tx.handle_timeout(t0 + Duration::from_millis(31_999));
        assert_eq!(tx.state(), ServerNonInviteState::Completed);
        tx.handle_timeout(t0 + Duration::from_secs(32));
        assert!(tx.is_terminated());
    }

    #[test]
    fn provisional_then_final_in_proceeding() {
        let t0 = Instant::now();
        let mut tx = ServerNonInvite::new(TimerConfig::default(), false);
        tx.send_response(t0, 100, Bytes::from_static(b"100"))
            .unwrap();
        assert_eq!(tx.state(), ServerNonInviteState::Proceeding);
        tx.handle_request_retransmission(t0);
        assert_eq!(
            drain(&mut tx),
            vec![Bytes::from_static(b"100"), Bytes::from_static(b"100")]
        );
        tx.send_response(t0, 202, Bytes::from_static(b"202"))
            .unwrap();
        assert_eq!(tx.state(), ServerNonInviteState::Completed);
    }

    #[test]
    fn reliable_final_terminates_at_once() {
        let t0 = Instant::now();
        let mut tx = ServerNonInvite::new(TimerConfig::default(), true);
        tx.send_response(t0, 200, Bytes::from_static(b"200"))
            .unwrap();
        assert_eq!(drain(&mut tx), vec![Bytes::from_static(b"200")]);
        assert!(tx.is_terminated());
        assert_eq!(tx.poll_timeout(), None);
    }

    #[test]
    fn transport_error_terminates_with_event() {
        let t0 = Instant::now();
        let mut tx = ServerNonInvite::new(TimerConfig::default(), false);
        tx.handle_transport_error(t0);
        assert_eq!(tx.poll_event(), Some(TxEvent::TransportError));
        assert!(tx.is_terminated());
    }
}
