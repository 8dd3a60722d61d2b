//! INVITE client transaction (RFC 3261 §17.1.1, with the Accepted state and Timer M of RFC 6026 §7.2).
//!
//! ```text
//!  INVITE ──► Calling ──1xx──► Proceeding ──2xx──► Accepted ──Timer M──► Terminated
//!   (Timer A: resend,   │        │ 1xx      (2xx retransmissions: to TU)
//!    Timer B: timeout)  │        └─300-699──► Completed ──Timer D──► Terminated
//!                       ├─2xx──► Accepted     (send ACK; final retransmissions: resend ACK)
//!                       └─300-699──► Completed
//! ```
//!
//! The transaction itself sends the ACK for a non-2xx final response (§17.1.1.3). It cannot build it
//! (the ACK's To tag comes from the response), so the endpoint hands it a closure that encodes one; it
//! is called once, on the first non-2xx final. The ACK for a 2xx is the TU's (dialog's) business.

use bytes::Bytes;
use std::time::{Duration, Instant};

use super::shared::{transaction_verbs, TxCore};
use super::{Delivery, TimerConfig, TimerKind};

/// States of the INVITE client transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientInviteState {
    Calling,
    Proceeding,
    Completed,
    Accepted,
    Terminated,
}

/// An INVITE client transaction.
///
/// Polling order: after [`new`](Self::new) and each `handle_*` call drain
/// [`poll_transmit`](Self::poll_transmit), then [`poll_event`](Self::poll_event), then read
/// [`poll_timeout`](Self::poll_timeout).
#[derive(Debug)]
pub struct ClientInvite {
    core: TxCore<ClientInviteState>,
    /// Current Timer A interval (T1, doubling without bound).
    a_interval: Duration,
}

transaction_verbs!(ClientInvite, ClientInviteState);

impl ClientInvite {
    /// Starts the transaction: the encoded INVITE is queued for sending, Timers A and B armed.
    pub fn new(now: Instant, config: TimerConfig, reliable: bool, request: Bytes) -> Self {
        let state = ClientInviteState::Calling;
        let timers = (TimerKind::A, TimerKind::B);
        ClientInvite {
            core: TxCore::start_client(now, state, config, reliable, request, timers),
            a_interval: config.t1,
        }
    }

    /// The owner sent a CANCEL for this INVITE (RFC 3261 §9.1): if no final response arrives within
    /// 64·T1 the transaction gives up (Timer B, re-armed here, fires in Proceeding too).
    pub fn handle_cancel_sent(&mut self, now: Instant) {
        if matches!(
            self.core.state,
            ClientInviteState::Calling | ClientInviteState::Proceeding
        ) {
            let at = now + self.core.config.t1x64();
            self.core.timers.set(TimerKind::B, at);
        }
    }

    /// Whether a provisional response arrived and no final yet: the INVITE may be cancelled now.
    pub fn is_proceeding(&self) -> bool {
        self.core.state == ClientInviteState::Proceeding
    }

    /// A response matched this transaction. `build_ack` encodes the ACK for a non-2xx final response;
    /// it is called at most once.
    pub fn handle_response(
        &mut self,
        now: Instant,
        status: u16,
        build_ack: impl FnOnce() -> Bytes,
    ) -> Delivery {
        let core = &mut self.core;
        match (core.state, status) {
            (ClientInviteState::Calling | ClientInviteState::Proceeding, 100..=199) => {
                core.state = ClientInviteState::Proceeding;
                core.timers.stop(TimerKind::A);
                core.timers.stop(TimerKind::B);
                Delivery::ToTu
            }
            (ClientInviteState::Calling | ClientInviteState::Proceeding, 200..=299) => {
                core.final_status = Some(status);
                core.timers.stop_all();
                let wait = core.config.t1x64();
                core.linger(now, ClientInviteState::Accepted, TimerKind::M, wait);
                Delivery::ToTu
            }
            (ClientInviteState::Calling | ClientInviteState::Proceeding, 300..=699) => {
                core.final_status = Some(status);
                core.timers.stop_all();
                // From now on a retransmission repeats the ACK, not the INVITE.
                core.send(build_ack());
                let wait = core.config.timer_d(core.reliable);
                core.linger(now, ClientInviteState::Completed, TimerKind::D, wait);
                Delivery::ToTu
            }
            (ClientInviteState::Completed, 300..=699) => {
                core.resend();
                Delivery::Absorbed
            }
            // RFC 6026 §7.2: every 2xx in Accepted goes to the TU, which re-ACKs it.
            (ClientInviteState::Accepted, 200..=299) => Delivery::ToTu,
            _ => Delivery::Absorbed,
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(kind) = self.core.timers.pop_expired(now) {
            match (self.core.state, kind) {
                (ClientInviteState::Calling, TimerKind::A) => {
                    self.a_interval = self.a_interval.saturating_mul(2);
                    self.core.retransmit(now, TimerKind::A, self.a_interval);
                }
                (ClientInviteState::Calling | ClientInviteState::Proceeding, TimerKind::B) => {
                    self.core.time_out(TimerKind::B)
                }
                (ClientInviteState::Completed, TimerKind::D)
                | (ClientInviteState::Accepted, TimerKind::M) => self.core.terminate(),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transaction::testutil::{drain, ms, sends_until};
    use crate::transaction::TxEvent;

    /// An INVITE transaction over UDP with RFC 3261 timers, its first send drained.
    fn udp_invite(t0: Instant) -> ClientInvite {
        let mut tx = ClientInvite::new(
            t0,
            TimerConfig::default(),
            false,
            Bytes::from_static(b"INV"),
        );
        assert_eq!(drain(&mut tx), vec![Bytes::from_static(b"INV")]);
        tx
    }

    fn ack() -> Bytes {
        Bytes::from_static(b"ACK")
    }

    #[test]
    fn timer_a_doubles_until_timer_b_times_out() {
        let t0 = Instant::now();
        let mut tx = udp_invite(t0);
        let sends = sends_until(&mut tx, t0, t0 + Duration::from_secs(60));
        let expected: Vec<Duration> = [500, 1500, 3500, 7500, 15500, 31500]
            .into_iter()
            .map(ms)
            .collect();
        assert_eq!(sends, expected);
        assert_eq!(tx.poll_event(), Some(TxEvent::Timeout(TimerKind::B)));
        assert!(tx.is_terminated());
    }

    #[test]
    fn provisional_stops_retransmission_and_final_failure_is_acked_once_then_resent() {
        let t0 = Instant::now();
        let mut tx = udp_invite(t0);
        assert_eq!(tx.handle_response(t0 + ms(100), 180, ack), Delivery::ToTu);
        assert_eq!(tx.state(), ClientInviteState::Proceeding);
        assert_eq!(
            tx.poll_timeout(),
            None,
            "no retransmission, no timeout in Proceeding"
        );
        let mut built = 0;
        let d = tx.handle_response(t0 + ms(200), 486, || {
            built += 1;
            ack()
        });
        assert_eq!(d, Delivery::ToTu);
        assert_eq!(drain(&mut tx), vec![ack()]);
        let d = tx.handle_response(t0 + ms(300), 486, || {
            built += 1;
            ack()
        });
        assert_eq!(d, Delivery::Absorbed);
        assert_eq!(
            drain(&mut tx),
            vec![ack()],
            "retransmitted final gets the same ACK"
        );
        assert_eq!(built, 1);
        assert_eq!(
            tx.poll_timeout(),
            Some(t0 + ms(200) + Duration::from_secs(32))
        );
        tx.handle_timeout(t0 + ms(200) + Duration::from_secs(32));
        assert!(tx.is_terminated());
        assert_eq!(tx.poll_event(), None);
    }

    #[test]
    fn accepted_passes_2xx_retransmissions_up_until_timer_m() {
        let t0 = Instant::now();
        let mut tx = udp_invite(t0);
        assert_eq!(tx.handle_response(t0 + ms(50), 200, ack), Delivery::ToTu);
        assert_eq!(tx.state(), ClientInviteState::Accepted);
        assert!(
            drain(&mut tx).is_empty(),
            "the transaction never ACKs a 2xx"
        );
        assert_eq!(tx.handle_response(t0 + ms(550), 200, ack), Delivery::ToTu);
        assert_eq!(
            tx.handle_response(t0 + ms(560), 180, ack),
            Delivery::Absorbed
        );
        tx.handle_timeout(t0 + ms(50) + Duration::from_secs(32));
        assert!(tx.is_terminated());
    }

    #[test]
    fn reliable_transport_sends_once_and_skips_completed() {
        let t0 = Instant::now();
        let mut tx =
            ClientInvite::new(t0, TimerConfig::default(), true, Bytes::from_static(b"INV"));
        assert_eq!(drain(&mut tx).len(), 1);
        assert_eq!(
            tx.poll_timeout(),
            Some(t0 + Duration::from_secs(32)),
            "only Timer B"
        );
        tx.handle_response(t0 + ms(10), 404, ack);
        assert_eq!(drain(&mut tx), vec![ack()]);
        assert!(tx.is_terminated(), "Timer D is zero on reliable transports");
    }

    #[test]
    fn custom_t1_scales_timers() {
        let t0 = Instant::now();
        let config = TimerConfig {
            t1: ms(100),
            ..TimerConfig::default()
        };
        let tx = ClientInvite::new(t0, config, false, Bytes::from_static(b"INV"));
        assert_eq!(tx.poll_timeout(), Some(t0 + ms(100)));
        let mut tx = tx;
        tx.handle_timeout(t0 + ms(100));
        assert_eq!(tx.poll_timeout(), Some(t0 + ms(300)));
    }

    #[test]
    fn cancel_without_final_response_gives_up_after_64_t1() {
        let t0 = Instant::now();
        let mut tx = udp_invite(t0);
        tx.handle_response(t0 + ms(10), 180, ack);
        assert!(tx.is_proceeding());
        tx.handle_cancel_sent(t0 + ms(1000));
        assert_eq!(tx.poll_timeout(), Some(t0 + ms(33_000)));
        tx.handle_timeout(t0 + ms(33_000));
        assert_eq!(tx.poll_event(), Some(TxEvent::Timeout(TimerKind::B)));
        assert!(tx.is_terminated());
    }

    #[test]
    fn transport_error_terminates_with_event() {
        let t0 = Instant::now();
        let mut tx = udp_invite(t0);
        tx.handle_transport_error(t0);
        assert_eq!(tx.poll_event(), Some(TxEvent::TransportError));
        assert!(tx.is_terminated());
        assert_eq!(tx.poll_timeout(), None);
    }
}
