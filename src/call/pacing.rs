//! When the next 20 ms frame of a signal we play (comfort signal, goodbye, the hold signal) is due.
//!
//! Frames go out on a fixed 20 ms grid from the start, not 20 ms after each send, so the stream
//! keeps real time (RFC 3551 §4.1 packetisation). After a stall (a busy runtime) the grid restarts
//! from `now` instead of sending the missed frames in a burst the peer's jitter buffer would drop.
//!
//! A call that plays a signal to a caller who sends RTP is woken every 20 ms by the caller's packet
//! anyway: a frame may ride on that wake-up ([`FrameClock::tick_on_packet`]) anywhere within
//! [`EARLY`] before and [`LATE`] after its slot, and the timer ([`FrameClock::deadline`]) only
//! sends it when no packet came by the slot's end. The first packet moves the grid (by less than
//! half a frame, or onto the packet when the pending slot has passed) so that the caller's packets
//! fall on the slots, in the middle of their windows; then the grid stays fixed, so we send
//! exactly 50 frames a second whatever the caller's packet interval or jitter (10 and 30 ms
//! packets included), and a caller sending every 20 ms costs one wake-up per frame instead of two.
//!
//! A frame the timer had to send says no packet came near its slot: the grid may have been set by
//! a packet that a busy runtime handled late (a burst of call set-ups or code lookups), and every
//! later packet then falls outside its window, costing a timer wake-up per frame for the rest of
//! the call (the waiting phase's extra cost in the concurrency bench, issue 13). So a packet that
//! comes early after a timer frame moves the grid again, by the same rule.

use std::time::{Duration, Instant};

/// One frame: 20 ms of 8 kHz audio.
pub const FRAME_TIME: Duration = Duration::from_millis(20);

/// How far behind the grid may fall before it restarts from `now`.
const MAX_LAG: Duration = Duration::from_millis(100);

/// How long before its slot a frame may go with a packet's wake-up.
pub const EARLY: Duration = Duration::from_millis(10);
/// How long after its slot a frame waits for a packet's wake-up before the timer sends it.
pub const LATE: Duration = Duration::from_millis(10);

/// The frame grid of one signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameClock {
    next: Instant,
    /// The grid has been moved to the peer's packets ([`FrameClock::tick_on_packet`]).
    aligned: bool,
    /// When the last frame went.
    last: Option<Instant>,
    /// The timer sent the last frame: no packet came near its slot.
    on_timer: bool,
}

impl FrameClock {
    /// A grid whose first frame is due at `now`.
    pub fn starting(now: Instant) -> Self {
        FrameClock {
            next: now,
            aligned: false,
            last: None,
            on_timer: false,
        }
    }

    /// When the next frame is due.
    pub fn due(&self) -> Instant {
        self.next
    }

    /// The latest the next frame may wait for a packet ([`FrameClock::tick_on_packet`]): when
    /// the timer must send it.
    pub fn deadline(&self) -> Instant {
        self.next + LATE
    }

    /// Whether a frame is due at `now` (the timer woke us); if so the clock moves on to the next
    /// one, and the next packet may move the grid ([`FrameClock::tick_on_packet`]).
    pub fn tick(&mut self, now: Instant) -> bool {
        if now < self.next {
            return false;
        }
        self.advance(now);
        // No packet came near this slot: the grid may sit off the caller's packets.
        self.on_timer = true;
        true
    }

    /// The peer's packet woke us at `now`: whether the next frame goes with it (its slot is at
    /// most [`EARLY`] away, or past); if so the clock moves on. The first packet moves the grid
    /// (by less than half a frame, or onto itself when the pending slot has passed), so that
    /// packets arriving every 20 ms fall on the slots; so does a packet after a frame the timer
    /// sent, when it comes more than [`EARLY`] before its slot. (One that comes later needs no
    /// move: the frame goes with it, and while the runtime runs behind, frames catch up.)
    pub fn tick_on_packet(&mut self, now: Instant) -> bool {
        if !self.aligned {
            // Slots from now on a whole number of frames from this packet; the one pending is the
            // nearest to where it was, or this packet's own if that one has passed.
            self.aligned = true;
            self.next = self.nearest_after_last(nearest_in_step(self.next, now).max(now));
        } else if self.on_timer && now + EARLY < self.next {
            self.next = self.nearest_after_last(nearest_in_step(self.next, now));
        }
        self.on_timer = false;
        if now + EARLY < self.next {
            return false;
        }
        self.advance(now);
        true
    }

    /// `slot`, or the one after when `slot` comes right after a frame the timer sent late (that
    /// frame would go twice).
    fn nearest_after_last(&self, slot: Instant) -> Instant {
        if self.last.is_some_and(|last| slot < last + FRAME_TIME / 2) {
            slot + FRAME_TIME
        } else {
            slot
        }
    }

    fn advance(&mut self, now: Instant) {
        self.last = Some(now);
        self.next += FRAME_TIME;
        if self.next + MAX_LAG < now {
            self.next = now + FRAME_TIME;
        }
    }
}

/// The instant within half a frame of `slot` that is a whole number of frames from `packet`.
fn nearest_in_step(slot: Instant, packet: Instant) -> Instant {
    let frame = FRAME_TIME.as_nanos();
    // How far `packet` is past the grid point before it, in [0, frame).
    let past = match packet.checked_duration_since(slot) {
        Some(after) => after.as_nanos() % frame,
        None => (frame - slot.duration_since(packet).as_nanos() % frame) % frame,
    };
    // Both below a frame (20 ms): the conversions cannot truncate.
    if past < frame / 2 {
        slot + Duration::from_nanos(past as u64)
    } else {
        slot - Duration::from_nanos((frame - past) as u64)
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

    /// Frames sent over `ms` milliseconds with the caller's packets every `interval` (first at
    /// `phase`), woken by each packet and by the timer: (frames on packets, frames on the timer,
    /// longest gap between frames in ms).
    fn run(interval: u64, phase: u64, ms: u64) -> (u32, u32, u64) {
        let t0 = Instant::now();
        let at = |m: u64| t0 + Duration::from_millis(m);
        let mut clock = FrameClock::starting(t0);
        let (mut on_packets, mut on_timer) = (0, 0);
        let (mut last, mut gap) = (None::<Instant>, 0);
        let mut sent = |t: Instant| {
            if let Some(l) = last {
                gap = gap.max(t.duration_since(l).as_millis() as u64);
            }
            last = Some(t);
        };
        let mut packet = phase;
        let mut now = 0;
        while now < ms {
            let timer = clock.deadline();
            if at(packet) <= timer {
                now = packet;
                if clock.tick_on_packet(at(packet)) {
                    on_packets += 1;
                    sent(at(packet));
                }
                packet += interval;
            } else {
                now = timer.duration_since(t0).as_millis() as u64;
                assert!(clock.tick(timer), "the deadline always sends");
                on_timer += 1;
                sent(timer);
            }
        }
        (on_packets, on_timer, gap)
    }

    #[test]
    fn frames_ride_on_the_callers_packets_at_any_phase() {
        for phase in [0, 3, 9, 10, 11, 17, 19] {
            let (packets, timer, gap) = run(20, phase, 2000);
            // The first frame may need the timer; every other one goes with a packet.
            assert!(timer <= 1, "phase {phase}: {timer} frames on the timer");
            assert!((99..=101).contains(&(packets + timer)), "phase {phase}");
            assert!(gap <= 30, "phase {phase}: gap {gap} ms");
        }
    }

    #[test]
    fn fifty_frames_a_second_whatever_the_callers_packet_interval() {
        for interval in [10, 30, 60] {
            let (packets, timer, gap) = run(interval, 7, 3000);
            let frames = packets + timer;
            assert!(
                (148..=151).contains(&frames),
                "{interval} ms packets: {frames} frames"
            );
            assert!(gap <= 40, "{interval} ms packets: gap {gap} ms");
        }
        // No packets at all: the timer sends every frame, 20 ms apart.
        let t0 = Instant::now();
        let mut clock = FrameClock::starting(t0);
        let mut times = Vec::new();
        for _ in 0..5 {
            let t = clock.deadline();
            assert!(clock.tick(t));
            times.push(t);
        }
        assert!(times.windows(2).all(|w| w[1] - w[0] == FRAME_TIME));
    }

    #[test]
    fn a_grid_set_by_a_late_packet_moves_back_onto_the_packets() {
        // The caller's packets come every 20 ms at 5, 25, 45 … ms, but the first one was handled
        // 15 ms late (a busy runtime), at 20 ms, and set the grid there: every later packet is
        // 15 ms before its slot, outside the window.
        let t0 = Instant::now();
        let at = |m: u64| t0 + Duration::from_millis(m);
        let mut clock = FrameClock::starting(t0);
        let (mut on_packets, mut on_timer) = (0, 0);
        let mut frames = Vec::new();
        let mut packets = std::iter::once(20)
            .chain((1..100).map(|k| 5 + 20 * k))
            .peekable();
        while let Some(&packet) = packets.peek() {
            if at(packet) <= clock.deadline() {
                if clock.tick_on_packet(at(packet)) {
                    on_packets += 1;
                    frames.push(packet);
                }
                packets.next();
            } else {
                let timer = clock.deadline();
                assert!(clock.tick(timer));
                on_timer += 1;
                frames.push(timer.duration_since(t0).as_millis() as u64);
            }
        }
        assert!(on_timer <= 2, "{on_timer} frames on the timer");
        assert!((98..=101).contains(&(on_packets + on_timer)), "{frames:?}");
        let gap = frames.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
        assert!(gap <= 30, "gap {gap} ms");
    }

    #[test]
    fn the_first_packet_moves_the_grid_by_less_than_half_a_frame() {
        let t0 = Instant::now();
        let ms = |m: u64| Duration::from_millis(m);
        // Slot at t0, a packet 13 ms later: the frame goes with it, the next slot 20 ms on.
        let mut clock = FrameClock::starting(t0);
        assert!(clock.tick_on_packet(t0 + ms(13)));
        assert_eq!(clock.due(), t0 + ms(33));
        // A packet 4 ms after the slot: the slot moves 4 ms later and the frame goes.
        let mut clock = FrameClock::starting(t0 + ms(20));
        assert!(!clock.tick_on_packet(t0 + ms(4)), "16 ms before its slot");
        assert_eq!(clock.due(), t0 + ms(24));
        assert!(clock.tick_on_packet(t0 + ms(24)));
        assert_eq!(clock.due(), t0 + ms(44));
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
