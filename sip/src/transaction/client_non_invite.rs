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

use std::collections::VecDeque;

use bytes::Bytes;
use std::time::{Duration, Instant};

use super::{Delivery, TimerConfig, TimerKind, Timers, TxEvent};

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
    state: ClientNonInviteState,
    config: TimerConfig,
    reliable: bool,
    timers: Timers,
    request: Bytes,
    e_interval: Duration,
    final_status: Option<u16>,
    transmits: VecDeque<Bytes>,
    events: VecDeque<TxEvent>,
}

impl ClientNonInvite {
    /// Starts the transaction: the encoded request is queued for sending, Timers E and F armed.
    pub fn new(now: Instant, config: TimerConfig, reliable: bool, request: Bytes) -> Self {
        let mut timers = Timers::default();
        if !reliable {
            timers.set(TimerKind::E, now + config.t1);
        }
        timers.set(TimerKind::F, now + config.t1x64());
        ClientNonInvite {
            state: ClientNonInviteState::Trying,
            config,
            reliable,
            timers,
            transmits: VecDeque::from([request.clone()]),
            request,
            e_interval: config.t1,
            final_status: None,
            events: VecDeque::new(),
        }
    }

    pub fn state(&self) -> ClientNonInviteState {
        self.state
    }

    pub fn is_terminated(&self) -> bool {
        self.state == ClientNonInviteState::Terminated
    }

    /// The final status received, if any.
    pub fn final_status(&self) -> Option<u16> {
        self.final_status
    }

    /// A response matched this transaction.
    pub fn handle_response(&mut self, now: Instant, status: u16) -> Delivery {
        match (self.state, status) {
            (ClientNonInviteState::Trying | ClientNonInviteState::Proceeding, 100..=199) => {
                self.state = ClientNonInviteState::Proceeding;
                Delivery::ToTu
            }
            (ClientNonInviteState::Trying | ClientNonInviteState::Proceeding, 200..=699) => {
                self.final_status = Some(status);
                self.timers.stop_all();
                let wait = self.config.t4_or_zero(self.reliable);
                if wait.is_zero() {
                    self.state = ClientNonInviteState::Terminated;
                } else {
                    self.state = ClientNonInviteState::Completed;
                    self.timers.set(TimerKind::K, now + wait);
                }
                Delivery::ToTu
            }
            _ => Delivery::Absorbed,
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(kind) = self.timers.pop_expired(now) {
            match (self.state, kind) {
                (ClientNonInviteState::Trying, TimerKind::E) => {
                    self.transmits.push_back(self.request.clone());
                    self.e_interval = (self.e_interval * 2).min(self.config.t2);
                    self.timers.set(TimerKind::E, now + self.e_interval);
                }
                (ClientNonInviteState::Proceeding, TimerKind::E) => {
                    self.transmits.push_back(self.request.clone());
                    self.timers.set(TimerKind::E, now + self.config.t2);
                }
                (ClientNonInviteState::Trying | ClientNonInviteState::Proceeding, TimerKind::F) => {
                    self.events.push_back(TxEvent::Timeout(TimerKind::F));
                    self.terminate();
                }
                (ClientNonInviteState::Completed, TimerKind::K) => self.terminate(),
                _ => {}
            }
        }
    }

    /// The transport failed to send the request (§17.1.4): Terminated.
    pub fn handle_transport_error(&mut self, _now: Instant) {
        if self.state != ClientNonInviteState::Terminated {
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
        self.state = ClientNonInviteState::Terminated;
        self.timers.stop_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn run(tx: &mut ClientNonInvite, t0: Instant, until: Instant) -> Vec<Duration> {
        let mut sends = Vec::new();
        while let Some(at) = tx.poll_timeout().filter(|at| *at <= until) {
            tx.handle_timeout(at);
            while tx.poll_transmit().is_some() {
                sends.push(at - t0);
            }
        }
        sends
    }

    #[test]
    fn timer_e_doubles_to_t2_then_timer_f_times_out() {
        let t0 = Instant::now();
        let mut tx = ClientNonInvite::new(
            t0,
            TimerConfig::default(),
            false,
            Bytes::from_static(b"OPT"),
        );
        assert_eq!(tx.poll_transmit(), Some(Bytes::from_static(b"OPT")));
        let sends = run(&mut tx, t0, t0 + Duration::from_secs(60));
        let expected: Vec<Duration> = [
            500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500,
        ]
        .into_iter()
        .map(ms)
        .collect();
        assert_eq!(sends, expected);
        assert_eq!(tx.poll_event(), Some(TxEvent::Timeout(TimerKind::F)));
        assert!(tx.is_terminated());
    }

    #[test]
    fn proceeding_retransmits_every_t2() {
        let t0 = Instant::now();
        let mut tx = ClientNonInvite::new(
            t0,
            TimerConfig::default(),
            false,
            Bytes::from_static(b"OPT"),
        );
        tx.poll_transmit();
        assert_eq!(tx.handle_response(t0 + ms(100), 100), Delivery::ToTu);
        assert_eq!(tx.state(), ClientNonInviteState::Proceeding);
        let sends = run(&mut tx, t0, t0 + ms(9000));
        let expected: Vec<Duration> = [500, 4500, 8500].into_iter().map(ms).collect();
        assert_eq!(sends, expected);
    }

    #[test]
    fn final_response_then_retransmissions_absorbed_until_timer_k() {
        let t0 = Instant::now();
        let mut tx = ClientNonInvite::new(
            t0,
            TimerConfig::default(),
            false,
            Bytes::from_static(b"BYE"),
        );
        tx.poll_transmit();
        assert_eq!(tx.handle_response(t0 + ms(100), 200), Delivery::ToTu);
        assert_eq!(tx.handle_response(t0 + ms(600), 200), Delivery::Absorbed);
        assert_eq!(tx.final_status(), Some(200));
        assert_eq!(tx.poll_timeout(), Some(t0 + ms(5100)));
        assert!(run(&mut tx, t0, t0 + ms(6000)).is_empty());
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
