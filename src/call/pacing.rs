//! When the next 20 ms frame of a signal we play (comfort signal, goodbye, the hold signal) is due.
//!
//! Frames go out on a fixed 20 ms grid from the start, not 20 ms after each send, so the stream
//! keeps real time (RFC 3551 §4.1 packetisation). After a stall (a busy runtime) the grid restarts
//! from `now` instead of sending the missed frames in a burst the peer's jitter buffer would drop.

use std::time::{Duration, Instant};

/// One frame: 20 ms of 8 kHz audio.
pub const FRAME_TIME: Duration = Duration::from_millis(20);

/// How far behind the grid may fall before it restarts from `now`.
const MAX_LAG: Duration = Duration::from_millis(100);

/// The frame grid of one signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameClock {
    next: Instant,
}

impl FrameClock {
    /// A grid whose first frame is due at `now`.
    pub fn starting(now: Instant) -> Self {
        FrameClock { next: now }
    }

    /// When the next frame is due.
    pub fn due(&self) -> Instant {
        self.next
    }

    /// Whether a frame is due at `now`; if so the clock moves on to the next one.
    pub fn tick(&mut self, now: Instant) -> bool {
        if now < self.next {
            return false;
        }
        self.next += FRAME_TIME;
        if self.next + MAX_LAG < now {
            self.next = now + FRAME_TIME;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_every_20_ms_on_the_grid_from_the_start() {
        let t0 = Instant::now();
        let mut clock = FrameClock::starting(t0);
        assert!(clock.tick(t0));
        assert!(!clock.tick(t0 + Duration::from_millis(19)));
        // Woken 5 ms late: the frame goes, the next stays on the grid (40 ms), not at 45 ms.
        assert!(clock.tick(t0 + Duration::from_millis(25)));
        assert_eq!(clock.due(), t0 + Duration::from_millis(40));
    }

    #[test]
    fn a_stall_restarts_the_grid_instead_of_bursting() {
        let t0 = Instant::now();
        let mut clock = FrameClock::starting(t0);
        assert!(clock.tick(t0));
        let late = t0 + Duration::from_secs(2);
        assert!(clock.tick(late));
        assert_eq!(clock.due(), late + FRAME_TIME);
        assert!(!clock.tick(late + Duration::from_millis(10)));
    }
}
