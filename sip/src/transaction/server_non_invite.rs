//! Non-INVITE server transaction (RFC 3261 §17.2.2).
//!
//! ```text
//!  request ──► Trying ──1xx from TU──► Proceeding ──200-699 from TU──► Completed ──Timer J──► Terminated
//!               └───────────200-699 from TU───────────────────────────────┘
//! ```
//!
//! Request retransmissions are absorbed in Trying and answered with the last response afterwards.
//! Timer J is 64·T1 on unreliable transports and zero on reliable ones.

use bytes::Bytes;
use std::time::Instant;

use super::shared::{transaction_verbs, TxCore};
use super::{check_status, TimerConfig, TimerKind, TransactionError};

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
    core: TxCore<ServerNonInviteState>,
}

transaction_verbs!(ServerNonInvite, ServerNonInviteState);

impl ServerNonInvite {
    /// A new transaction for a received request, in Trying.
    pub fn new(config: TimerConfig, reliable: bool) -> Self {
        ServerNonInvite {
            core: TxCore::new(ServerNonInviteState::Trying, config, reliable),
        }
    }

    /// The TU sends a response.
    pub fn send_response(
        &mut self,
        now: Instant,
        status: u16,
        encoded: Bytes,
    ) -> Result<(), TransactionError> {
        check_status(status)?;
        let core = &mut self.core;
        match core.state {
            ServerNonInviteState::Trying | ServerNonInviteState::Proceeding => {
                core.send(encoded);
                if status < 200 {
                    core.state = ServerNonInviteState::Proceeding;
                } else {
                    core.final_status = Some(status);
                    let wait = core.config.timer_j(core.reliable);
                    core.linger(now, ServerNonInviteState::Completed, TimerKind::J, wait);
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
            self.core.state,
            ServerNonInviteState::Proceeding | ServerNonInviteState::Completed
        ) {
            self.core.resend();
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(kind) = self.core.timers.pop_expired(now) {
            if kind == TimerKind::J && self.core.state == ServerNonInviteState::Completed {
                self.core.terminate();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transaction::testutil::{drain, encoded};
    use crate::transaction::TxEvent;
    use std::time::Duration;

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
        tx.send_response(t0, 200, encoded(200)).unwrap();
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
        tx.send_response(t0, 100, encoded(100)).unwrap();
        assert_eq!(tx.state(), ServerNonInviteState::Proceeding);
        tx.handle_request_retransmission(t0);
        assert_eq!(
            drain(&mut tx),
            vec![Bytes::from_static(b"100"), Bytes::from_static(b"100")]
        );
        tx.send_response(t0, 202, encoded(202)).unwrap();
        assert_eq!(tx.state(), ServerNonInviteState::Completed);
    }

    #[test]
    fn reliable_final_terminates_at_once() {
        let t0 = Instant::now();
        let mut tx = ServerNonInvite::new(TimerConfig::default(), true);
        tx.send_response(t0, 200, encoded(200)).unwrap();
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
