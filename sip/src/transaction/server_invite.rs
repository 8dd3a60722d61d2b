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

use std::collections::VecDeque;

use bytes::Bytes;
use std::time::{Duration, Instant};

use super::{check_status, Delivery, TimerConfig, TimerKind, Timers, TransactionError, TxEvent};

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
    state: ServerInviteState,
    config: TimerConfig,
    reliable: bool,
    timers: Timers,
    /// Current Timer G interval (T1, doubling up to T2).
    g_interval: Duration,
    last_response: Option<Bytes>,
    final_status: Option<u16>,
    transmits: VecDeque<Bytes>,
    events: VecDeque<TxEvent>,
}

impl ServerInvite {
    /// A new transaction for a received INVITE, in Proceeding.
    pub fn new(config: TimerConfig, reliable: bool) -> Self {
        ServerInvite {
            state: ServerInviteState::Proceeding,
            config,
            reliable,
            timers: Timers::default(),
            g_interval: config.t1,
            last_response: None,
            final_status: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    pub fn state(&self) -> ServerInviteState {
        self.state
    }

    pub fn is_terminated(&self) -> bool {
        self.state == ServerInviteState::Terminated
    }

    /// The final status sent so far, if any.
    pub fn final_status(&self) -> Option<u16> {
        self.final_status
    }

    /// The TU sends a response. In Accepted, further 2xx (the TU's retransmissions, RFC 6026) are sent.
    pub fn send_response(
        &mut self,
        now: Instant,
        status: u16,
        encoded: Bytes,
    ) -> Result<(), TransactionError> {
        check_status(status)?;
        match self.state {
            ServerInviteState::Proceeding => {
                self.transmits.push_back(encoded.clone());
                self.last_response = Some(encoded);
                match status {
                    100..=199 => {}
                    200..=299 => {
                        self.final_status = Some(status);
                        self.state = ServerInviteState::Accepted;
                        self.timers.set(TimerKind::L, now + self.config.t1x64());
                    }
                    _ => {
                        self.final_status = Some(status);
                        self.state = ServerInviteState::Completed;
                        if !self.reliable {
                            self.timers.set(TimerKind::G, now + self.g_interval);
                        }
                        self.timers.set(TimerKind::H, now + self.config.t1x64());
                    }
                }
                Ok(())
            }
            ServerInviteState::Accepted if (200..=299).contains(&status) => {
                self.transmits.push_back(encoded);
                Ok(())
            }
            ServerInviteState::Terminated => Err(TransactionError::Terminated),
            _ => Err(TransactionError::FinalAlreadySent),
        }
    }

    /// A retransmission of the INVITE arrived: resend the last provisional or non-2xx final.
    pub fn handle_request_retransmission(&mut self, _now: Instant) {
        match self.state {
            ServerInviteState::Proceeding | ServerInviteState::Completed => {
                if let Some(last) = &self.last_response {
                    self.transmits.push_back(last.clone());
                }
            }
            // RFC 6026 §7.1: absorbed in Accepted; the TU retransmits the 2xx itself.
            ServerInviteState::Accepted
            | ServerInviteState::Confirmed
            | ServerInviteState::Terminated => {}
        }
    }

    /// An ACK matched this transaction. In Accepted it is the ACK for the 2xx and goes to the TU.
    pub fn handle_ack(&mut self, now: Instant) -> Delivery {
        match self.state {
            ServerInviteState::Completed => {
                self.timers.stop(TimerKind::G);
                self.timers.stop(TimerKind::H);
                let wait = self.config.t4_or_zero(self.reliable);
                if wait.is_zero() {
                    self.terminate();
                } else {
                    self.state = ServerInviteState::Confirmed;
                    self.timers.set(TimerKind::I, now + wait);
                }
                Delivery::Absorbed
            }
            ServerInviteState::Accepted => Delivery::ToTu,
            _ => Delivery::Absorbed,
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(kind) = self.timers.pop_expired(now) {
            match (self.state, kind) {
                (ServerInviteState::Completed, TimerKind::G) => {
                    if let Some(last) = &self.last_response {
                        self.transmits.push_back(last.clone());
                    }
                    self.g_interval = (self.g_interval * 2).min(self.config.t2);
                    self.timers.set(TimerKind::G, now + self.g_interval);
                }
                (ServerInviteState::Completed, TimerKind::H) => {
                    self.events.push_back(TxEvent::Timeout(TimerKind::H));
                    self.terminate();
                }
                (ServerInviteState::Confirmed, TimerKind::I)
                | (ServerInviteState::Accepted, TimerKind::L) => self.terminate(),
                _ => {}
            }
        }
    }

    /// The transport failed to send a response (RFC 3261 §17.2.4): Terminated.
    pub fn handle_transport_error(&mut self, _now: Instant) {
        if self.state != ServerInviteState::Terminated {
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
        self.state = ServerInviteState::Terminated;
        self.timers.stop_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn drain(tx: &mut ServerInvite) -> Vec<Bytes> {
        std::iter::from_fn(|| tx.poll_transmit()).collect()
    }

    /// Runs the clock to `until`, waking at every deadline; returns the wake times that sent something.
    fn run_until(tx: &mut ServerInvite, t0: Instant, until: Instant) -> Vec<Duration> {
        let mut sends = Vec::new();
        while let Some(at) = tx.poll_timeout().filter(|at| *at <= until) {
            tx.handle_timeout(at);
            for _ in drain(tx) {
                sends.push(at - t0);
            }
        }
        sends
    }

    #[test]
    fn non_2xx_final_is_retransmitted_with_timer_g_doubling_to_t2_then_h_times_out() {
        let t0 = Instant::now();
        let mut tx = ServerInvite::new(TimerConfig::default(), false);
        tx.send_response(t0, 100, Bytes::from_static(b"100"))
            .unwrap();
        tx.send_response(t0, 486, Bytes::from_static(b"486"))
            .unwrap();
        assert_eq!(
            drain(&mut tx),
            vec![Bytes::from_static(b"100"), Bytes::from_static(b"486")]
        );
        assert_eq!(tx.state(), ServerInviteState::Completed);
        let sends = run_until(&mut tx, t0, t0 + Duration::from_secs(40));
        let expected: Vec<Duration> = [
            500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500,
        ]
        .into_iter()
        .map(ms)
        .collect();
        assert_eq!(sends, expected);
        assert_eq!(tx.poll_event(), Some(TxEvent::Timeout(TimerKind::H)));
        assert!(tx.is_terminated());
    }

    #[test]
    fn ack_stops_retransmissions_and_timer_i_terminates() {
        let t0 = Instant::now();
        let mut tx = ServerInvite::new(TimerConfig::default(), false);
        tx.send_response(t0, 603, Bytes::from_static(b"603"))
            .unwrap();
        drain(&mut tx);
        assert_eq!(tx.handle_ack(t0 + ms(100)), Delivery::Absorbed);
        assert_eq!(tx.state(), ServerInviteState::Confirmed);
        // A retransmitted ACK is absorbed too.
        assert_eq!(tx.handle_ack(t0 + ms(200)), Delivery::Absorbed);
        assert_eq!(tx.poll_timeout(), Some(t0 + ms(5100)));
        let sends = run_until(&mut tx, t0, t0 + Duration::from_secs(10));
        assert!(sends.is_empty());
        assert!(tx.is_terminated());
        assert_eq!(tx.poll_event(), None);
    }

    #[test]
    fn request_retransmission_resends_last_response() {
        let t0 = Instant::now();
        let mut tx = ServerInvite::new(TimerConfig::default(), false);
        tx.send_response(t0, 100, Bytes::from_static(b"100"))
            .unwrap();
        tx.send_response(t0, 180, Bytes::from_static(b"180"))
            .unwrap();
        drain(&mut tx);
        tx.handle_request_retransmission(t0 + ms(500));
        assert_eq!(drain(&mut tx), vec![Bytes::from_static(b"180")]);
        tx.send_response(t0 + ms(600), 480, Bytes::from_static(b"480"))
            .unwrap();
        drain(&mut tx);
        tx.handle_request_retransmission(t0 + ms(700));
        assert_eq!(drain(&mut tx), vec![Bytes::from_static(b"480")]);
    }

    #[test]
    fn accepted_absorbs_invite_passes_ack_up_and_ends_on_timer_l() {
        let t0 = Instant::now();
        let mut tx = ServerInvite::new(TimerConfig::default(), false);
        tx.send_response(t0, 200, Bytes::from_static(b"200"))
            .unwrap();
        assert_eq!(drain(&mut tx), vec![Bytes::from_static(b"200")]);
        assert_eq!(tx.state(), ServerInviteState::Accepted);
        tx.handle_request_retransmission(t0 + ms(500));
        assert!(
            drain(&mut tx).is_empty(),
            "the TU, not the transaction, retransmits 2xx"
        );
        tx.send_response(t0 + ms(500), 200, Bytes::from_static(b"200"))
            .unwrap();
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
        tx.send_response(t0, 404, Bytes::from_static(b"404"))
            .unwrap();
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
        tx.send_response(t0, 500, Bytes::from_static(b"500"))
            .unwrap();
        drain(&mut tx);
        let sends = run_until(&mut tx, t0, t0 + Duration::from_secs(40));
        assert!(sends.is_empty());
        assert_eq!(tx.poll_event(), Some(TxEvent::Timeout(TimerKind::H)));
    }

    #[test]
    fn bad_status_and_transport_error() {
        let t0 = Instant::now();
        let mut tx = ServerInvite::new(TimerConfig::default(), false);
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
