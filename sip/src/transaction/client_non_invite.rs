//! Non-INVITE client transaction (RFC 3261 §17.1.2).
//!
//! ```text
//!  request ──► Trying ──1xx──► Proceeding ──200-699──► Completed ──Timer K──► Terminated
//!   (Timer E: resend, doubling to T2; in Proceeding resend every T2; Timer F: timeout)
//!               └──────200-699──────────────────────────┘
//! ```
//!
//! Timer K is T4 on unreliable transports and zero on reliable ones; on a reliable transport Timer E is
//! never armed.

use bytes::Bytes;
use std::time::{Duration, Instant};

use super::shared::{transaction_verbs, TxCore};
use super::{Delivery, TimerConfig, TimerKind};

/// States of the non-INVITE client transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientNonInviteState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// A non-INVITE client transaction.
///
/// Polling order: after [`new`](Self::new) and each `handle_*` call drain
/// [`poll_transmit`](Self::poll_transmit), then [`poll_event`](Self::poll_event), then read
/// [`poll_timeout`](Self::poll_timeout).
#[derive(Debug)]
pub struct ClientNonInvite {
    core: TxCore<ClientNonInviteState>,
    /// Current Timer E interval (T1, doubling up to T2; T2 in Proceeding).
    e_interval: Duration,
}

transaction_verbs!(ClientNonInvite, ClientNonInviteState);

impl ClientNonInvite {
    /// Starts the transaction: the encoded request is queued for sending, Timers E and F armed.
    pub fn new(now: Instant, config: TimerConfig, reliable: bool, request: Bytes) -> Self {
        let state = ClientNonInviteState::Trying;
        let timers = (TimerKind::E, TimerKind::F);
        ClientNonInvite {
            core: TxCore::start_client(now, state, config, reliable, request, timers),
            e_interval: config.t1,
        }
    }

    /// A response matched this transaction.
    pub fn handle_response(&mut self, now: Instant, status: u16) -> Delivery {
        let core = &mut self.core;
        match (core.state, status) {
            (ClientNonInviteState::Trying | ClientNonInviteState::Proceeding, 100..=199) => {
                core.state = ClientNonInviteState::Proceeding;
                Delivery::ToTu
            }
            (ClientNonInviteState::Trying | ClientNonInviteState::Proceeding, 200..=699) => {
                core.final_status = Some(status);
                core.timers.stop_all();
                let wait = core.config.t4_or_zero(core.reliable);
                core.linger(now, ClientNonInviteState::Completed, TimerKind::K, wait);
                Delivery::ToTu
            }
            _ => Delivery::Absorbed,
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(kind) = self.core.timers.pop_expired(now) {
            match (self.core.state, kind) {
                (ClientNonInviteState::Trying, TimerKind::E) => {
                    self.e_interval = (self.e_interval * 2).min(self.core.config.t2);
                    self.core.retransmit(now, TimerKind::E, self.e_interval);
                }
                (ClientNonInviteState::Proceeding, TimerKind::E) => {
                    let t2 = self.core.config.t2;
                    self.core.retransmit(now, TimerKind::E, t2);
                }
                (ClientNonInviteState::Trying | ClientNonInviteState::Proceeding, TimerKind::F) => {
                    self.core.time_out(TimerKind::F)
                }
                (ClientNonInviteState::Completed, TimerKind::K) => self.core.terminate(),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transaction::testutil::{doubling_to_t2, ms, sends_until};
    use crate::transaction::TxEvent;

    /// A transaction for `request` over UDP with RFC 3261 timers, its first send taken.
    fn udp_request(t0: Instant, request: &'static [u8]) -> ClientNonInvite {
        let mut tx = ClientNonInvite::new(
            t0,
            TimerConfig::default(),
            false,
            Bytes::from_static(request),
        );
        assert_eq!(tx.poll_transmit(), Some(Bytes::from_static(request)));
        tx
    }

    #[test]
    fn timer_e_doubles_to_t2_then_timer_f_times_out() {
        let t0 = Instant::now();
        let mut tx = udp_request(t0, b"OPT");
        let sends = sends_until(&mut tx, t0, t0 + Duration::from_secs(60));
        assert_eq!(sends, doubling_to_t2());
        assert_eq!(tx.poll_event(), Some(TxEvent::Timeout(TimerKind::F)));
        assert!(tx.is_terminated());
    }

    #[test]
    fn proceeding_retransmits_every_t2() {
        let t0 = Instant::now();
        let mut tx = udp_request(t0, b"OPT");
        assert_eq!(tx.handle_response(t0 + ms(100), 100), Delivery::ToTu);
        assert_eq!(tx.state(), ClientNonInviteState::Proceeding);
        let sends = sends_until(&mut tx, t0, t0 + ms(9000));
        let expected: Vec<Duration> = [500, 4500, 8500].into_iter().map(ms).collect();
        assert_eq!(sends, expected);
    }

    #[test]
    fn final_response_then_retransmissions_absorbed_until_timer_k() {
        let t0 = Instant::now();
        let mut tx = udp_request(t0, b"BYE");
        assert_eq!(tx.handle_response(t0 + ms(100), 200), Delivery::ToTu);
        assert_eq!(tx.handle_response(t0 + ms(600), 200), Delivery::Absorbed);
        assert_eq!(tx.final_status(), Some(200));
        assert_eq!(tx.poll_timeout(), Some(t0 + ms(5100)));
        assert!(sends_until(&mut tx, t0, t0 + ms(6000)).is_empty());
        assert!(tx.is_terminated());
        assert_eq!(tx.poll_event(), None);
    }

    #[test]
    fn reliable_transport_sends_once_and_terminates_on_final() {
        let t0 = Instant::now();
        let mut tx =
            ClientNonInvite::new(t0, TimerConfig::default(), true, Bytes::from_static(b"BYE"));
        assert!(tx.poll_transmit().is_some());
        assert_eq!(
            tx.poll_timeout(),
            Some(t0 + Duration::from_secs(32)),
            "only Timer F"
        );
        tx.handle_response(t0 + ms(5), 481);
        assert!(tx.is_terminated());
        assert_eq!(tx.poll_transmit(), None);
    }
}
