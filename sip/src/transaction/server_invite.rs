//! INVITE server transaction (RFC 3261 §17.2.1, with the Accepted state and Timer L of RFC 6026 §7.1).
//!
//! ```text
//!                 1xx from TU: send
//!  INVITE ──► Proceeding ──2xx from TU: send──► Accepted ──Timer L──► Terminated
//!                 │                              (2xx from TU: send, INVITE: absorb, ACK: to TU)
//!                 └─300-699 from TU: send──► Completed ──ACK──► Confirmed ──Timer I──► Terminated
//!                                            (Timer G: resend, Timer H: timeout)
//! ```
//!
//! The endpoint answers 100 Trying at once by calling [`ServerInvite::send_response`] with the
//! encoded 100 right after creating the transaction (we never wait the 200 ms §17.2.1 allows).

use bytes::Bytes;
use std::time::{Duration, Instant};

use super::shared::{transaction_verbs, TxCore};
use super::{check_status, Delivery, TimerConfig, TimerKind, TransactionError};

/// States of the INVITE server transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerInviteState {
    Proceeding,
    Completed,
    Confirmed,
    Accepted,
    Terminated,
}

/// An INVITE server transaction.
///
/// Polling order: after each `handle_*`/`send_response` call drain [`poll_transmit`](Self::poll_transmit),
/// then [`poll_event`](Self::poll_event), then read [`poll_timeout`](Self::poll_timeout).
#[derive(Debug)]
pub struct ServerInvite {
    core: TxCore<ServerInviteState>,
    /// Current Timer G interval (T1, doubling up to T2).
    g_interval: Duration,
}

transaction_verbs!(ServerInvite, ServerInviteState);

impl ServerInvite {
    /// A new transaction for a received INVITE, in Proceeding.
    pub fn new(config: TimerConfig, reliable: bool) -> Self {
        ServerInvite {
            core: TxCore::new(ServerInviteState::Proceeding, config, reliable),
            g_interval: config.t1,
        }
    }

    /// The TU sends a response. In Accepted, further 2xx (the TU's retransmissions, RFC 6026) are sent.
    pub fn send_response(
        &mut self,
        now: Instant,
        status: u16,
        encoded: Bytes,
    ) -> Result<(), TransactionError> {
        check_status(status)?;
        let core = &mut self.core;
        match core.state {
            ServerInviteState::Proceeding => {
                core.send(encoded);
                match status {
                    100..=199 => {}
                    200..=299 => {
                        core.final_status = Some(status);
                        let wait = core.config.t1x64();
                        core.linger(now, ServerInviteState::Accepted, TimerKind::L, wait);
                    }
                    _ => {
                        core.final_status = Some(status);
                        core.state = ServerInviteState::Completed;
                        if !core.reliable {
                            core.timers.set(TimerKind::G, now + self.g_interval);
                        }
                        core.timers.set(TimerKind::H, now + core.config.t1x64());
                    }
                }
                Ok(())
            }
            ServerInviteState::Accepted if (200..=299).contains(&status) => {
                core.send(encoded);
                Ok(())
            }
            ServerInviteState::Terminated => Err(TransactionError::Terminated),
            _ => Err(TransactionError::FinalAlreadySent),
        }
    }

    /// A retransmission of the INVITE arrived: resend the last provisional or non-2xx final.
    pub fn handle_request_retransmission(&mut self, _now: Instant) {
        match self.core.state {
            ServerInviteState::Proceeding | ServerInviteState::Completed => self.core.resend(),
            // RFC 6026 §7.1: absorbed in Accepted; the TU retransmits the 2xx itself.
            ServerInviteState::Accepted
            | ServerInviteState::Confirmed
            | ServerInviteState::Terminated => {}
        }
    }

    /// An ACK matched this transaction. In Accepted it is the ACK for the 2xx and goes to the TU.
    pub fn handle_ack(&mut self, now: Instant) -> Delivery {
        let core = &mut self.core;
        match core.state {
            ServerInviteState::Completed => {
                core.timers.stop(TimerKind::G);
                core.timers.stop(TimerKind::H);
                let wait = core.config.t4_or_zero(core.reliable);
                core.linger(now, ServerInviteState::Confirmed, TimerKind::I, wait);
                Delivery::Absorbed
            }
            ServerInviteState::Accepted => Delivery::ToTu,
            _ => Delivery::Absorbed,
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(kind) = self.core.timers.pop_expired(now) {
            match (self.core.state, kind) {
                (ServerInviteState::Completed, TimerKind::G) => {
                    self.g_interval = (self.g_interval * 2).min(self.core.config.t2);
                    self.core.retransmit(now, TimerKind::G, self.g_interval);
                }
                (ServerInviteState::Completed, TimerKind::H) => self.core.time_out(TimerKind::H),
                (ServerInviteState::Confirmed, TimerKind::I)
                | (ServerInviteState::Accepted, TimerKind::L) => self.core.terminate(),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transaction::testutil::{doubling_to_t2, drain, encoded, ms, sends_until};
    use crate::transaction::TxEvent;

    /// An INVITE server transaction over UDP with RFC 3261 timers.
    fn udp() -> ServerInvite {
        ServerInvite::new(TimerConfig::default(), false)
    }

    #[test]
    fn non_2xx_final_is_retransmitted_with_timer_g_doubling_to_t2_then_h_times_out() {
        let t0 = Instant::now();
        let mut tx = udp();
        tx.send_response(t0, 100, encoded(100)).unwrap();
        tx.send_response(t0, 486, encoded(486)).unwrap();
        assert_eq!(
            drain(&mut tx),
            vec![Bytes::from_static(b"100"), Bytes::from_static(b"486")]
        );
        assert_eq!(tx.state(), ServerInviteState::Completed);
        let sends = sends_until(&mut tx, t0, t0 + Duration::from_secs(40));
        assert_eq!(sends, doubling_to_t2());
        assert_eq!(tx.poll_event(), Some(TxEvent::Timeout(TimerKind::H)));
        assert!(tx.is_terminated());
    }

    #[test]
    fn ack_stops_retransmissions_and_timer_i_terminates() {
        let t0 = Instant::now();
        let mut tx = udp();
        tx.send_response(t0, 603, encoded(603)).unwrap();
        drain(&mut tx);
        assert_eq!(tx.handle_ack(t0 + ms(100)), Delivery::Absorbed);
        assert_eq!(tx.state(), ServerInviteState::Confirmed);
        // A retransmitted ACK is absorbed too.
        assert_eq!(tx.handle_ack(t0 + ms(200)), Delivery::Absorbed);
        assert_eq!(tx.poll_timeout(), Some(t0 + ms(5100)));
        let sends = sends_until(&mut tx, t0, t0 + Duration::from_secs(10));
        assert!(sends.is_empty());
        assert!(tx.is_terminated());
        assert_eq!(tx.poll_event(), None);
    }

    #[test]
    fn request_retransmission_resends_last_response() {
        let t0 = Instant::now();
        let mut tx = udp();
        tx.send_response(t0, 100, encoded(100)).unwrap();
        tx.send_response(t0, 180, encoded(180)).unwrap();
        drain(&mut tx);
        tx.handle_request_retransmission(t0 + ms(500));
        assert_eq!(drain(&mut tx), vec![Bytes::from_static(b"180")]);
        tx.send_response(t0 + ms(600), 480, encoded(480)).unwrap();
        drain(&mut tx);
        tx.handle_request_retransmission(t0 + ms(700));
        assert_eq!(drain(&mut tx), vec![Bytes::from_static(b"480")]);
    }

    #[test]
    fn accepted_absorbs_invite_passes_ack_up_and_ends_on_timer_l() {
        let t0 = Instant::now();
        let mut tx = udp();
        tx.send_response(t0, 200, encoded(200)).unwrap();
        assert_eq!(drain(&mut tx), vec![Bytes::from_static(b"200")]);
        assert_eq!(tx.state(), ServerInviteState::Accepted);
        tx.handle_request_retransmission(t0 + ms(500));
        assert!(
            drain(&mut tx).is_empty(),
            "the TU, not the transaction, retransmits 2xx"
        );
        tx.send_response(t0 + ms(500), 200, encoded(200)).unwrap();
        assert_eq!(drain(&mut tx), vec![Bytes::from_static(b"200")]);
        assert_eq!(tx.handle_ack(t0 + ms(600)), Delivery::ToTu);
        assert_eq!(
            tx.send_response(t0, 486, Bytes::from_static(b"486")),
            Err(TransactionError::FinalAlreadySent)
        );
        assert_eq!(tx.poll_timeout(), Some(t0 + Duration::from_secs(32)));
        tx.handle_timeout(t0 + Duration::from_secs(32));
        assert!(tx.is_terminated());
        assert_eq!(tx.poll_event(), None);
    }

    #[test]
    fn reliable_transport_never_retransmits_and_skips_confirmed() {
        let t0 = Instant::now();
        let mut tx = ServerInvite::new(TimerConfig::default(), true);
        tx.send_response(t0, 404, encoded(404)).unwrap();
        drain(&mut tx);
        assert_eq!(
            tx.poll_timeout(),
            Some(t0 + Duration::from_secs(32)),
            "only Timer H"
        );
        tx.handle_ack(t0 + ms(10));
        assert!(tx.is_terminated(), "Timer I is zero on reliable transports");
    }

    #[test]
    fn reliable_transport_missing_ack_times_out_without_resending() {
        let t0 = Instant::now();
        let mut tx = ServerInvite::new(TimerConfig::default(), true);
        tx.send_response(t0, 500, encoded(500)).unwrap();
        drain(&mut tx);
        let sends = sends_until(&mut tx, t0, t0 + Duration::from_secs(40));
        assert!(sends.is_empty());
        assert_eq!(tx.poll_event(), Some(TxEvent::Timeout(TimerKind::H)));
    }

    #[test]
    fn bad_status_and_transport_error() {
        let t0 = Instant::now();
        let mut tx = udp();
        assert_eq!(
            tx.send_response(t0, 99, Bytes::new()),
            Err(TransactionError::BadStatus(99))
        );
        tx.handle_transport_error(t0);
        assert_eq!(tx.poll_event(), Some(TxEvent::TransportError));
        assert!(tx.is_terminated());
        assert_eq!(
            tx.send_response(t0, 200, Bytes::new()),
            Err(TransactionError::Terminated)
        );
    }
}
