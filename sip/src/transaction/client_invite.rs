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

use std::collections::VecDeque;

use bytes::Bytes;
use std::time::{Duration, Instant};

use super::{Delivery, TimerConfig, TimerKind, Timers, TxEvent};

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
    state: ClientInviteState,
    config: TimerConfig,
    reliable: bool,
    timers: Timers,
    request: Bytes,
    /// Current Timer A interval (T1, doubling without bound).
    a_interval: Duration,
    ack: Option<Bytes>,
    final_status: Option<u16>,
    transmits: VecDeque<Bytes>,
    events: VecDeque<TxEvent>,
}

impl ClientInvite {
    /// Starts the transaction: the encoded INVITE is queued for sending, Timers A and B armed.
    pub fn new(now: Instant, config: TimerConfig, reliable: bool, request: Bytes) -> Self {
        let mut timers = Timers::default();
        if !reliable {
            timers.set(TimerKind::A, now + config.t1);
        }
        timers.set(TimerKind::B, now + config.t1x64());
        ClientInvite {
            state: ClientInviteState::Calling,
            config,
            reliable,
            timers,
            transmits: VecDeque::from([request.clone()]),
            request,
            a_interval: config.t1,
            ack: None,
            final_status: None,
            events: VecDeque::new(),
        }
    }

    pub fn state(&self) -> ClientInviteState {
        self.state
    }

    pub fn is_terminated(&self) -> bool {
        self.state == ClientInviteState::Terminated
    }

    /// The first final status received, if any.
    pub fn final_status(&self) -> Option<u16> {
        self.final_status
    }

    /// The owner sent a CANCEL for this INVITE (RFC 3261 §9.1): if no final response arrives within
    /// 64·T1 the transaction gives up (Timer B, re-armed here, fires in Proceeding too).
    pub fn handle_cancel_sent(&mut self, now: Instant) {
        if matches!(
            self.state,
            ClientInviteState::Calling | ClientInviteState::Proceeding
        ) {
            self.timers.set(TimerKind::B, now + self.config.t1x64());
        }
    }

    /// Whether a provisional response arrived and no final yet: the INVITE may be cancelled now.
    pub fn is_proceeding(&self) -> bool {
        self.state == ClientInviteState::Proceeding
    }

    /// A response matched this transaction. `build_ack` encodes the ACK for a non-2xx final response;
    /// it is called at most once.
    pub fn handle_response(
        &mut self,
        now: Instant,
        status: u16,
        build_ack: impl FnOnce() -> Bytes,
    ) -> Delivery {
        match (self.state, status) {
            (ClientInviteState::Calling | ClientInviteState::Proceeding, 100..=199) => {
                self.state = ClientInviteState::Proceeding;
                self.timers.stop(TimerKind::A);
                self.timers.stop(TimerKind::B);
                Delivery::ToTu
            }
            (ClientInviteState::Calling | ClientInviteState::Proceeding, 200..=299) => {
                self.final_status = Some(status);
                self.timers.stop_all();
                self.state = ClientInviteState::Accepted;
                self.timers.set(TimerKind::M, now + self.config.t1x64());
                Delivery::ToTu
            }
            (ClientInviteState::Calling | ClientInviteState::Proceeding, 300..=699) => {
                self.final_status = Some(status);
                self.timers.stop_all();
                let ack = build_ack();
                self.transmits.push_back(ack.clone());
                self.ack = Some(ack);
                let wait = self.config.timer_d(self.reliable);
                if wait.is_zero() {
                    self.terminate();
                } else {
                    self.state = ClientInviteState::Completed;
                    self.timers.set(TimerKind::D, now + wait);
                }
                Delivery::ToTu
            }
            (ClientInviteState::Completed, 300..=699) => {
                if let Some(ack) = &self.ack {
                    self.transmits.push_back(ack.clone());
                }
                Delivery::Absorbed
            }
            // RFC 6026 §7.2: every 2xx in Accepted goes to the TU, which re-ACKs it.
            (ClientInviteState::Accepted, 200..=299) => Delivery::ToTu,
            _ => Delivery::Absorbed,
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(kind) = self.timers.pop_expired(now) {
            match (self.state, kind) {
                (ClientInviteState::Calling, TimerKind::A) => {
                    self.transmits.push_back(self.request.clone());
                    self.a_interval = self.a_interval.saturating_mul(2);
                    self.timers.set(TimerKind::A, now + self.a_interval);
                }
                (ClientInviteState::Calling | ClientInviteState::Proceeding, TimerKind::B) => {
                    self.events.push_back(TxEvent::Timeout(TimerKind::B));
                    self.terminate();
                }
                (ClientInviteState::Completed, TimerKind::D)
                | (ClientInviteState::Accepted, TimerKind::M) => self.terminate(),
                _ => {}
            }
        }
    }

    /// The transport failed to send the request or ACK (§17.1.4): Terminated.
    pub fn handle_transport_error(&mut self, _now: Instant) {
        if self.state != ClientInviteState::Terminated {
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
        self.state = ClientInviteState::Terminated;
        self.timers.stop_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn drain(tx: &mut ClientInvite) -> Vec<Bytes> {
        std::iter::from_fn(|| tx.poll_transmit()).collect()
    }

    fn ack() -> Bytes {
        Bytes::from_static(b"ACK")
    }

    #[test]
    fn timer_a_doubles_until_timer_b_times_out() {
        let t0 = Instant::now();
        let mut tx = ClientInvite::new(
            t0,
            TimerConfig::default(),
            false,
            Bytes::from_static(b"INV"),
        );
        assert_eq!(drain(&mut tx), vec![Bytes::from_static(b"INV")]);
        let mut sends = Vec::new();
        while let Some(at) = tx.poll_timeout() {
            tx.handle_timeout(at);
            sends.extend(drain(&mut tx).into_iter().map(|_| at - t0));
        }
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
        let mut tx = ClientInvite::new(
            t0,
            TimerConfig::default(),
            false,
            Bytes::from_static(b"INV"),
        );
        drain(&mut tx);
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
        let mut tx = ClientInvite::new(
            t0,
            TimerConfig::default(),
            false,
            Bytes::from_static(b"INV"),
        );
        drain(&mut tx);
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
        let mut tx = ClientInvite::new(
            t0,
            TimerConfig::default(),
            false,
            Bytes::from_static(b"INV"),
        );
        drain(&mut tx);
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
        let mut tx = ClientInvite::new(
            t0,
            TimerConfig::default(),
            false,
            Bytes::from_static(b"INV"),
        );
        tx.handle_transport_error(t0);
        assert_eq!(tx.poll_event(), Some(TxEvent::TransportError));
        assert!(tx.is_terminated());
        assert_eq!(tx.poll_timeout(), None);
    }
}
