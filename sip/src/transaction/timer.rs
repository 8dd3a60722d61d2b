//! Transaction timers as data (RFC 3261 §17 and Table 4, RFC 6026 §8.11 for Timers L and M).
//!
//! A transaction never sleeps: it writes deadlines into a [`Timers`] table, the driver asks
//! `poll_timeout()` when to wake and calls `handle_timeout(now)` then. That is what lets the tests run
//! sixty-four seconds of retransmissions in microseconds.

use std::time::{Duration, Instant};

/// The base timer values of RFC 3261 §17.1.1.1 and Table 4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate, default 500 ms.
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE responses, default 4 s.
    pub t2: Duration,
    /// Maximum duration a message will remain in the network, default 5 s.
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl TimerConfig {
    /// 64·T1: Timers B, F, H, J, L and M.
    pub fn t1x64(&self) -> Duration {
        self.t1.saturating_mul(64)
    }

    /// Timer D: at least 32 s on unreliable transports, zero on reliable ones (Table 4).
    pub fn timer_d(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            Duration::from_secs(32).max(self.t1x64())
        }
    }

    /// Timers I and K: T4 on unreliable transports, zero on reliable ones.
    pub fn t4_or_zero(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            self.t4
        }
    }

    /// Timer J: 64·T1 on unreliable transports, zero on reliable ones.
    pub fn timer_j(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            self.t1x64()
        }
    }
}

/// The named timers of RFC 3261 Table 4 plus RFC 6026's L and M.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimerKind {
    /// INVITE request retransmit (client, unreliable only).
    A,
    /// INVITE transaction timeout (client).
    B,
    /// Wait time for response retransmits after a non-2xx final (client INVITE).
    D,
    /// Non-INVITE request retransmit (client, unreliable only).
    E,
    /// Non-INVITE transaction timeout (client).
    F,
    /// INVITE final response retransmit (server, unreliable only).
    G,
    /// Wait time for ACK receipt (server INVITE).
    H,
    /// Wait time for ACK retransmits (server INVITE).
    I,
    /// Wait time for non-INVITE request retransmits (server).
    J,
    /// Wait time for response retransmits (client non-INVITE).
    K,
    /// Wait time for INVITE request retransmits after a 2xx (server, RFC 6026).
    L,
    /// Wait time for 2xx retransmissions (client INVITE, RFC 6026).
    M,
}

impl TimerKind {
    /// Every timer, in table order.
    pub const ALL: [TimerKind; 12] = [
        TimerKind::A,
        TimerKind::B,
        TimerKind::D,
        TimerKind::E,
        TimerKind::F,
        TimerKind::G,
        TimerKind::H,
        TimerKind::I,
        TimerKind::J,
        TimerKind::K,
        TimerKind::L,
        TimerKind::M,
    ];

    fn slot(self) -> usize {
        match self {
            TimerKind::A => 0,
            TimerKind::B => 1,
            TimerKind::D => 2,
            TimerKind::E => 3,
            TimerKind::F => 4,
            TimerKind::G => 5,
            TimerKind::H => 6,
            TimerKind::I => 7,
            TimerKind::J => 8,
            TimerKind::K => 9,
            TimerKind::L => 10,
            TimerKind::M => 11,
        }
    }
}

/// A table of deadlines, one slot per [`TimerKind`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timers {
    deadlines: [Option<Instant>; 12],
}

impl Timers {
    /// Arms `kind` to fire at `at`, replacing any earlier deadline.
    pub fn set(&mut self, kind: TimerKind, at: Instant) {
        self.deadlines[kind.slot()] = Some(at);
    }

    /// Disarms `kind`.
    pub fn stop(&mut self, kind: TimerKind) {
        self.deadlines[kind.slot()] = None;
    }

    /// Disarms every timer.
    pub fn stop_all(&mut self) {
        self.deadlines = [None; 12];
    }

    /// The deadline of `kind`, if armed.
    pub fn deadline(&self, kind: TimerKind) -> Option<Instant> {
        self.deadlines[kind.slot()]
    }

    /// The earliest armed deadline.
    pub fn next(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }

    /// Disarms and returns the earliest timer whose deadline is at or before `now`.
    pub fn pop_expired(&mut self, now: Instant) -> Option<TimerKind> {
        let kind = TimerKind::ALL
            .into_iter()
            .filter_map(|k| self.deadline(k).filter(|at| *at <= now).map(|at| (at, k)))
            .min_by_key(|(at, _)| *at)
            .map(|(_, k)| k)?;
        self.stop(kind);
        Some(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_rfc3261_values() {
        let c = TimerConfig::default();
        assert_eq!(c.t1, Duration::from_millis(500));
        assert_eq!(c.t2, Duration::from_secs(4));
        assert_eq!(c.t4, Duration::from_secs(5));
        assert_eq!(c.t1x64(), Duration::from_secs(32));
        assert_eq!(c.timer_d(false), Duration::from_secs(32));
        assert_eq!(c.timer_d(true), Duration::ZERO);
        assert_eq!(c.timer_j(true), Duration::ZERO);
        assert_eq!(c.t4_or_zero(false), Duration::from_secs(5));
    }

    #[test]
    fn expired_timers_pop_earliest_first_and_only_once() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        timers.set(TimerKind::B, t0 + Duration::from_secs(32));
        timers.set(TimerKind::A, t0 + Duration::from_millis(500));
        assert_eq!(timers.next(), Some(t0 + Duration::from_millis(500)));
        assert_eq!(timers.pop_expired(t0), None);
        let late = t0 + Duration::from_secs(40);
        assert_eq!(timers.pop_expired(late), Some(TimerKind::A));
        assert_eq!(timers.pop_expired(late), Some(TimerKind::B));
        assert_eq!(timers.pop_expired(late), None);
        assert_eq!(timers.next(), None);
    }

    #[test]
    fn stop_disarms() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        timers.set(TimerKind::H, t0);
        timers.stop(TimerKind::H);
        assert_eq!(timers.pop_expired(t0 + Duration::from_secs(1)), None);
    }
}
