//! UAS 2xx retransmission until the ACK arrives (RFC 3261 §13.3.1.4, RFC 6026 §8.1).
//!
//! The INVITE server transaction sends a 2xx once and moves to Accepted; from then on the UAS core
//! resends it: first after T1, doubling up to T2, until the ACK arrives. If no ACK has arrived after
//! 64·T1 the UAS gives up and the call must end with a BYE.
//!
//! This happens on every transport, "even if the transport at the UAS is reliable" (§13.3.1.4):
//! behind a proxy the hop towards us may be TCP while a later hop is UDP, and a 2xx lost there is
//! only ever recovered by our retransmission (the proxy relays 2xx retransmissions statelessly).

use std::time::{Duration, Instant};

use crate::transaction::TimerConfig;

/// What the retransmitter asks of its owner when a deadline passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckWaitEvent {
    /// Send the 2xx again (through the INVITE server transaction, which is in Accepted).
    Retransmit,
    /// 64·T1 passed without an ACK: confirm-and-BYE per §13.3.1.4.
    GaveUp,
}

/// Waits for the ACK of one 2xx.
///
/// Polling order: call [`handle_timeout`](Self::handle_timeout) at [`poll_timeout`](Self::poll_timeout);
/// it returns what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckWait {
    next_resend: Option<Instant>,
    interval: Duration,
    give_up: Instant,
    t2: Duration,
    done: bool,
}

impl AckWait {
    /// Starts waiting at `now`, the moment the 2xx was first sent.
    pub fn new(now: Instant, config: TimerConfig) -> Self {
        AckWait {
            next_resend: Some(now + config.t1),
            interval: config.t1,
            give_up: now + config.t1x64(),
            t2: config.t2,
            done: false,
        }
    }

    /// The ACK arrived: stop.
    pub fn handle_ack(&mut self) {
        self.done = true;
    }

    /// True once the ACK arrived or the wait gave up.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next; `None` once acknowledged or given up.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.done {
            return None;
        }
        Some(
            self.next_resend
                .map_or(self.give_up, |r| r.min(self.give_up)),
        )
    }

    /// Advances to `now`; returns the action due, if any. Call again until it returns `None`.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<AckWaitEvent> {
        if self.done {
            return None;
        }
        if now >= self.give_up {
            self.done = true;
            self.next_resend = None;
            return Some(AckWaitEvent::GaveUp);
        }
        match self.next_resend {
            Some(at) if at <= now => {
                self.interval = (self.interval * 2).min(self.t2);
                self.next_resend = Some(now + self.interval);
                Some(AckWaitEvent::Retransmit)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(w: &mut AckWait, t0: Instant) -> Vec<(u64, AckWaitEvent)> {
        let mut out = Vec::new();
        while let Some(at) = w.poll_timeout() {
            while let Some(ev) = w.handle_timeout(at) {
                out.push(((at - t0).as_millis() as u64, ev));
            }
        }
        out
    }

    #[test]
    fn resends_with_t1_doubling_to_t2_and_gives_up_at_64_t1() {
        let t0 = Instant::now();
        let mut w = AckWait::new(t0, TimerConfig::default());
        let got = run(&mut w, t0);
        let mut expected: Vec<(u64, AckWaitEvent)> = [
            500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500,
        ]
        .into_iter()
        .map(|t| (t, AckWaitEvent::Retransmit))
        .collect();
        expected.push((32000, AckWaitEvent::GaveUp));
        assert_eq!(got, expected);
        assert!(w.is_done());
    }

    #[test]
    fn ack_stops_everything() {
        let t0 = Instant::now();
        let mut w = AckWait::new(t0, TimerConfig::default());
        assert_eq!(
            w.handle_timeout(t0 + Duration::from_millis(500)),
            Some(AckWaitEvent::Retransmit)
        );
        w.handle_ack();
        assert_eq!(w.poll_timeout(), None);
        assert_eq!(w.handle_timeout(t0 + Duration::from_secs(40)), None);
    }
}
