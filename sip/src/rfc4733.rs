//! RFC 4733 telephone-events: the DTMF digit receiver and the sender's packet plan.
//!
//! Owns the payload format (§2.3: event, E bit, volume, 16-bit duration), digit recognition on
//! packets the RTP session has already classified by the NEGOTIATED telephone-event payload type, and
//! the packet sequence a phone sends for one digit (§2.5.1).
//!
//! Receiver rules (each has a test below):
//! - One digit per (SSRC, RTP timestamp, event code) (§2.5.1.1: all packets of one event carry the
//!   event's start timestamp). Retransmissions, redundant end packets (§2.5.1.4 sends the end three
//!   times) and a replay of the same packets are the same digit. SIPp's `dtmf_2833_*.pcap` carry one
//!   fixed timestamp, so playing `dtmf_2833_1.pcap` twice gives ONE digit — which is what a real phone
//!   that did that would mean, too.
//! - The marker bit is not required: a packet with an unseen key starts a digit.
//! - A packet with a new key ends the running digit (§2.5.1.5 "a new event ... ends the previous").
//! - No packet for the running digit for `end_timeout` (200 ms default) ends it (lost end packets).
//! - Long events: a 16-bit duration that wraps is extended; a new segment (§2.5.1.3: same event, new
//!   timestamp about 0xFFFF samples later, no end bit seen) continues the digit.
//! - Events 0–15 (0-9 * # A-D) are digits; others (16 flash, tones) are ignored.
//!
//! Polling order: after `handle_event`/`handle_timeout`, drain `poll_event`, then ask `poll_timeout`.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

/// Default end-of-event timeout for a digit whose end packets were all lost.
pub const DEFAULT_END_TIMEOUT: Duration = Duration::from_millis(200);

/// How many finished (SSRC, timestamp, event) keys are remembered to drop late retransmissions.
const RECENT_KEYS: usize = 16;

/// Errors of the RFC 4733 payload parser.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rfc4733Error {
    /// An event payload is 4 bytes (§2.3); this one is shorter.
    #[error("telephone-event payload too short: {0} bytes")]
    TooShort(usize),
}

/// A DTMF digit (RFC 4733 §3.2 events 0–15). `Debug` hides the value: digits are link codes,
/// which are personal data; use [`Digit::as_char`] where the value is really needed.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digit(u8);

impl Digit {
    /// The digit for an event code, `None` for non-digit events (flash = 16, etc.).
    pub fn from_event(code: u8) -> Option<Digit> {
        (code <= 15).then_some(Digit(code))
    }

    /// Parses `0-9 * # A-D` (case-insensitive).
    pub fn from_char(c: char) -> Option<Digit> {
        let code = match c.to_ascii_uppercase() {
            d @ '0'..='9' => d as u8 - b'0',
            '*' => 10,
            '#' => 11,
            d @ 'A'..='D' => d as u8 - b'A' + 12,
            _ => return None,
        };
        Some(Digit(code))
    }

    /// The event code on the wire.
    pub fn event_code(self) -> u8 {
        self.0
    }

    /// The digit as a character.
    pub fn as_char(self) -> char {
        match self.0 {
            d @ 0..=9 => (b'0' + d) as char,
            10 => '*',
            11 => '#',
            // Digit is only constructed for codes 0..=15.
            d => (b'A' + d - 12) as char,
        }
    }
}

impl fmt::Debug for Digit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Digit([redacted])")
    }
}

/// One RFC 4733 §2.3 event payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPayload {
    /// Event code (0–15 are DTMF digits).
    pub event: u8,
    /// E bit: this is (one of the copies of) the final packet.
    pub end: bool,
    /// Power level in -dBm0 (0–63).
    pub volume: u8,
    /// Duration so far in timestamp units, from the event's (segment's) timestamp.
    pub duration: u16,
}

impl EventPayload {
    /// Parses the first event of a payload (a packet carries one event unless RFC 2198 is used).
    pub fn parse(payload: &[u8]) -> Result<Self, Rfc4733Error> {
        match payload {
            [event, flags, d0, d1, ..] => Ok(EventPayload {
                event: *event,
                end: flags & 0x80 != 0,
                volume: flags & 0x3f,
                duration: u16::from_be_bytes([*d0, *d1]),
            }),
            _ => Err(Rfc4733Error::TooShort(payload.len())),
        }
    }

    /// The 4 payload bytes (R bit zero).
    pub fn to_bytes(self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        [
            self.event,
            (u8::from(self.end) << 7) | (self.volume & 0x3f),
            d[0],
            d[1],
        ]
    }
}

/// What the receiver reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigitEvent {
    /// A digit started (first packet of its key seen).
    DigitStart {
        /// The digit.
        digit: Digit,
        /// When its first packet arrived.
        at: Instant,
    },
    /// The digit ended: end packet, a newer event, or the end timeout.
    DigitEnd {
        /// The digit.
        digit: Digit,
        /// Its duration per the last duration field seen (plus wrapped segments).
        duration: Duration,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    ssrc: u32,
    timestamp: u32,
    event: u8,
}

#[derive(Debug, Clone)]
struct Running {
    first: Key,
    segment_timestamp: u32,
    digit: Digit,
    last_packet: Instant,
    /// Samples accounted for by earlier segments and 16-bit wraps.
    base: u64,
    last_duration: u16,
}

/// Sans-IO RFC 4733 digit receiver for one call leg. Feed it the payloads of packets whose payload
/// type is the negotiated telephone-event type; the RTP session does this for you.
#[derive(Debug)]
pub struct Rfc4733Receiver {
    clock_rate: u32,
    end_timeout: Duration,
    running: Option<Running>,
    recent: VecDeque<Key>,
    events: VecDeque<DigitEvent>,
}

impl Rfc4733Receiver {
    /// A receiver for a telephone-event stream at `clock_rate` Hz (8000 for our G.711 calls).
    pub fn new(clock_rate: u32) -> Self {
        Rfc4733Receiver {
            clock_rate: clock_rate.max(1),
            end_timeout: DEFAULT_END_TIMEOUT,
            running: None,
            recent: VecDeque::with_capacity(RECENT_KEYS),
            events: VecDeque::new(),
        }
    }

    /// Changes how long a digit may go without packets before it is ended.
    pub fn with_end_timeout(mut self, end_timeout: Duration) -> Self {
        self.end_timeout = end_timeout;
        self
    }

    /// Handles one telephone-event packet (its SSRC, RTP timestamp and payload).
    pub fn handle_event(
        &mut self,
        now: Instant,
        ssrc: u32,
        timestamp: u32,
        payload: &[u8],
    ) -> Result<(), Rfc4733Error> {
        let p = EventPayload::parse(payload)?;
        let Some(digit) = Digit::from_event(p.event) else {
            return Ok(());
        };
        let key = Key {
            ssrc,
            timestamp,
            event: p.event,
        };
        let slack = u64::from(self.clock_rate / 5);
        if let Some(run) = self.running.as_mut() {
            let same_stream = run.first.ssrc == ssrc && run.first.event == p.event;
            if same_stream && run.first.timestamp == timestamp && run.segment_timestamp != timestamp
            {
                // A late packet of an earlier segment of this long event.
                return Ok(());
            }
            if same_stream && run.segment_timestamp == timestamp {
                run.update(now, p);
                if p.end {
                    self.finish();
                }
                return Ok(());
            }
            let advance = u64::from(timestamp.wrapping_sub(run.segment_timestamp));
            if same_stream && (0x8000..=0xFFFF + slack).contains(&advance) {
                // §2.5.1.3: a long event continues in a new segment.
                run.base += advance;
                run.segment_timestamp = timestamp;
                run.last_duration = 0;
                run.update(now, p);
                if p.end {
                    self.finish();
                }
                return Ok(());
            }
        }
        if self.recent.contains(&key) {
            return Ok(());
        }
        if self.running.is_some() {
            self.finish();
        }
        self.events
            .push_back(DigitEvent::DigitStart { digit, at: now });
        let mut run = Running {
            first: key,
            segment_timestamp: timestamp,
            digit,
            last_packet: now,
            base: 0,
            last_duration: 0,
        };
        run.update(now, p);
        self.running = Some(run);
        if p.end {
            self.finish();
        }
        Ok(())
    }

    /// Ends a digit whose packets stopped (call when `poll_timeout` is due).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.poll_timeout().is_some_and(|t| now >= t) {
            self.finish();
        }
    }

    /// Next digit event, oldest first.
    pub fn poll_event(&mut self) -> Option<DigitEvent> {
        self.events.pop_front()
    }

    /// When the running digit times out, if one is running.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.running
            .as_ref()
            .map(|r| r.last_packet + self.end_timeout)
    }

    /// Whether a digit is currently held down.
    pub fn digit_running(&self) -> bool {
        self.running.is_some()
    }

    fn finish(&mut self) {
        let Some(run) = self.running.take() else {
            return;
        };
        let samples = run.base + u64::from(run.last_duration);
        let duration = Duration::from_micros(samples * 1_000_000 / u64::from(self.clock_rate));
        self.events.push_back(DigitEvent::DigitEnd {
            digit: run.digit,
            duration,
        });
        self.remember(run.first);
        if run.segment_timestamp != run.first.timestamp {
            self.remember(Key {
                timestamp: run.segment_timestamp,
                ..run.first
            });
        }
    }

    fn remember(&mut self, key: Key) {
        if self.recent.len() == RECENT_KEYS {
            self.recent.pop_front();
        }
        self.recent.push_back(key);
    }
}

impl Running {
    fn update(&mut self, now: Instant, p: EventPayload) {
        self.last_packet = now;
        if p.duration >= self.last_duration {
            self.last_duration = p.duration;
        } else if self.last_duration - p.duration > 0x8000 {
            // The 16-bit duration wrapped without a new segment (non-conforming long event).
            self.base += 0x1_0000;
            self.last_duration = p.duration;
        }
        // Otherwise a reordered older update: keep the larger duration.
    }
}

/// How the sender paces a digit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderConfig {
    /// RTP clock rate of telephone-event (8000 for G.711 calls).
    pub clock_rate: u32,
    /// Interval of update packets (RFC 4733 §2.5.1.2: typically 50 ms, or the audio ptime).
    pub update_interval: Duration,
    /// Volume field (-dBm0), 10 is what most phones send.
    pub volume: u8,
}

impl Default for SenderConfig {
    fn default() -> Self {
        SenderConfig {
            clock_rate: 8000,
            update_interval: Duration::from_millis(50),
            volume: 10,
        }
    }
}

/// One packet of a digit's sequence, relative to the digit's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedPacket {
    /// When to send it, counted from the first packet.
    pub at: Duration,
    /// Add to the event's start timestamp (non-zero only for the segments of events > 8.19 s).
    pub timestamp_offset: u32,
    /// RTP marker bit (set on the first packet of the event, §2.5.1.1).
    pub marker: bool,
    /// The payload.
    pub payload: EventPayload,
}

/// The packets a phone sends for one digit: a start packet with the marker bit, updates every
/// `update_interval`, then three end packets carrying the final duration (§2.5.1.4). Long digits are
/// split into 0xFFFF-sample segments (§2.5.1.3).
pub fn packets_for_digit(
    digit: Digit,
    duration: Duration,
    cfg: &SenderConfig,
) -> Vec<PlannedPacket> {
    let rate = u64::from(cfg.clock_rate.max(1));
    let to_samples =
        |d: Duration| -> u64 { (d.as_micros() as u64).saturating_mul(rate) / 1_000_000 };
    let total = to_samples(duration).max(1);
    let step = cfg.update_interval.max(Duration::from_millis(1));
    let mut out = Vec::new();
    let mut at = Duration::ZERO;
    while to_samples(at) < total {
        out.push(planned(
            digit,
            cfg,
            to_samples(at),
            false,
            at,
            out.is_empty(),
        ));
        at += step;
    }
    for _ in 0..3 {
        out.push(planned(digit, cfg, total, true, duration, false));
    }
    out
}

fn planned(
    digit: Digit,
    cfg: &SenderConfig,
    elapsed: u64,
    end: bool,
    at: Duration,
    marker: bool,
) -> PlannedPacket {
    // Segment n covers samples (n*0xFFFF, (n+1)*0xFFFF]; a duration of exactly 0xFFFF stays in n.
    let segment = elapsed.saturating_sub(1) / 0xFFFF;
    let timestamp_offset = (segment * 0xFFFF) as u32;
    let in_segment = elapsed - segment * 0xFFFF;
    PlannedPacket {
        at,
        timestamp_offset,
        marker,
        payload: EventPayload {
            event: digit.event_code(),
            end,
            volume: cfg.volume,
            // in_segment <= 0xFFFF by construction of `segment`.
            duration: in_segment.min(0xFFFF) as u16,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SSRC: u32 = 0x1234_5678;

    fn d(c: char) -> Digit {
        Digit::from_char(c).expect("test digit")
    }

    /// Feeds a planned digit at `start` (wall clock) with RTP timestamp `ts`.
    fn feed(rx: &mut Rfc4733Receiver, start: Instant, ts: u32, plan: &[PlannedPacket]) {
        for p in plan {
            rx.handle_event(
                start + p.at,
                SSRC,
                ts.wrapping_add(p.timestamp_offset),
                &p.payload.to_bytes(),
            )
            .expect("valid payload");
        }
    }

    fn drain(rx: &mut Rfc4733Receiver) -> Vec<DigitEvent> {
        std::iter::from_fn(|| rx.poll_event()).collect()
    }

    fn digits(events: &[DigitEvent]) -> String {
        events
            .iter()
            .filter_map(|e| match e {
                DigitEvent::DigitEnd { digit, .. } => Some(digit.as_char()),
                DigitEvent::DigitStart { .. } => None,
            })
            .collect()
    }

    fn plan(c: char, ms: u64) -> Vec<PlannedPacket> {
        packets_for_digit(d(c), Duration::from_millis(ms), &SenderConfig::default())
    }

    #[test]
    fn digit_with_three_end_packets_is_one_digit_with_its_duration() {
        let t0 = Instant::now();
        let mut rx = Rfc4733Receiver::new(8000);
        feed(&mut rx, t0, 1000, &plan('5', 100));
        let ev = drain(&mut rx);
        assert_eq!(
            ev,
            vec![
                DigitEvent::DigitStart {
                    digit: d('5'),
                    at: t0
                },
                DigitEvent::DigitEnd {
                    digit: d('5'),
                    duration: Duration::from_millis(100)
                },
            ]
        );
        assert_eq!(rx.poll_timeout(), None, "nothing running after the end");
    }

    #[test]
    fn sipp_style_replay_with_fixed_timestamp_is_one_digit() {
        let t0 = Instant::now();
        let mut rx = Rfc4733Receiver::new(8000);
        let p = plan('1', 100);
        feed(&mut rx, t0, 4242, &p);
        feed(&mut rx, t0 + Duration::from_millis(500), 4242, &p);
        assert_eq!(digits(&drain(&mut rx)), "1");
    }

    #[test]
    fn same_digit_twice_with_new_timestamps_is_two_digits() {
        let t0 = Instant::now();
        let mut rx = Rfc4733Receiver::new(8000);
        feed(&mut rx, t0, 8000, &plan('1', 100));
        feed(
            &mut rx,
            t0 + Duration::from_millis(300),
            8000 + 2400,
            &plan('1', 100),
        );
        assert_eq!(digits(&drain(&mut rx)), "11");
    }

    #[test]
    fn start_without_marker_or_start_packet_is_recognised() {
        let t0 = Instant::now();
        let mut rx = Rfc4733Receiver::new(8000);
        // The first packets (with the marker) were lost: an update with duration 400 arrives first.
        let update = EventPayload {
            event: 11,
            end: false,
            volume: 10,
            duration: 400,
        };
        rx.handle_event(t0, SSRC, 77, &update.to_bytes())
            .expect("valid");
        assert_eq!(
            drain(&mut rx),
            vec![DigitEvent::DigitStart {
                digit: d('#'),
                at: t0
            }]
        );
    }

    #[test]
    fn new_event_ends_the_old_one_when_its_end_packets_were_lost() {
        let t0 = Instant::now();
        let mut rx = Rfc4733Receiver::new(8000);
        let no_end: Vec<_> = plan('3', 100)
            .into_iter()
            .filter(|p| !p.payload.end)
            .collect();
        feed(&mut rx, t0, 100, &no_end);
        feed(
            &mut rx,
            t0 + Duration::from_millis(120),
            1060,
            &plan('4', 100),
        );
        let ev = drain(&mut rx);
        assert_eq!(digits(&ev), "34");
        assert_eq!(
            ev[1],
            DigitEvent::DigitEnd {
                digit: d('3'),
                duration: Duration::from_millis(50)
            },
            "the last update of '3' (sent at 50 ms) said 400 samples"
        );
    }

    #[test]
    fn lost_end_packets_time_out_after_200ms_and_late_ends_are_ignored() {
        let t0 = Instant::now();
        let mut rx = Rfc4733Receiver::new(8000);
        let p = plan('7', 150);
        let (ends, updates): (Vec<_>, Vec<_>) = p.iter().partition(|p| p.payload.end);
        feed(&mut rx, t0, 5, &updates);
        let last = t0 + updates.last().expect("updates").at;
        assert_eq!(rx.poll_timeout(), Some(last + Duration::from_millis(200)));
        rx.handle_timeout(last + Duration::from_millis(199));
        assert_eq!(digits(&drain(&mut rx)), "", "not yet");
        rx.handle_timeout(last + Duration::from_millis(200));
        assert_eq!(digits(&drain(&mut rx)), "7");
        // The end packets turn up late: still the same digit, not a second one.
        feed(&mut rx, t0 + Duration::from_millis(400), 5, &ends);
        assert!(drain(&mut rx).is_empty());
    }

    #[test]
    fn long_event_in_segments_is_one_digit() {
        let t0 = Instant::now();
        let mut rx = Rfc4733Receiver::new(8000);
        let p = plan('0', 20_000);
        assert!(
            p.iter().any(|p| p.timestamp_offset == 2 * 0xFFFF),
            "20 s spans three segments"
        );
        feed(&mut rx, t0, u32::MAX - 1000, &p); // also crosses the 32-bit timestamp wrap
        let ev = drain(&mut rx);
        assert_eq!(digits(&ev), "0");
        assert_eq!(
            ev.last(),
            Some(&DigitEvent::DigitEnd {
                digit: d('0'),
                duration: Duration::from_secs(20)
            })
        );
    }

    #[test]
    fn sixteen_bit_duration_wrap_without_segments_is_extended() {
        let t0 = Instant::now();
        let mut rx = Rfc4733Receiver::new(8000);
        for (i, dur) in [60_000u16, 65_000, 400].into_iter().enumerate() {
            let p = EventPayload {
                event: 9,
                end: i == 2,
                volume: 10,
                duration: dur,
            };
            rx.handle_event(
                t0 + Duration::from_millis(50 * i as u64),
                SSRC,
                1,
                &p.to_bytes(),
            )
            .expect("valid");
        }
        let ev = drain(&mut rx);
        assert_eq!(
            ev.last(),
            Some(&DigitEvent::DigitEnd {
                digit: d('9'),
                duration: Duration::from_micros((65_536 + 400) * 125)
            })
        );
    }

    #[test]
    fn reordered_update_does_not_shrink_the_duration() {
        let t0 = Instant::now();
        let mut rx = Rfc4733Receiver::new(8000);
        for (dur, end) in [(800u16, false), (400, false), (1600, true), (1200, false)] {
            let p = EventPayload {
                event: 2,
                end,
                volume: 10,
                duration: dur,
            };
            rx.handle_event(t0, SSRC, 9, &p.to_bytes()).expect("valid");
        }
        let ev = drain(&mut rx);
        assert_eq!(digits(&ev), "2");
        assert_eq!(
            ev[1],
            DigitEvent::DigitEnd {
                digit: d('2'),
                duration: Duration::from_millis(200)
            }
        );
    }

    #[test]
    fn end_packet_alone_is_a_whole_digit() {
        let t0 = Instant::now();
        let mut rx = Rfc4733Receiver::new(8000);
        let p = EventPayload {
            event: 14,
            end: true,
            volume: 10,
            duration: 800,
        };
        rx.handle_event(t0, SSRC, 1, &p.to_bytes()).expect("valid");
        rx.handle_event(t0, SSRC, 1, &p.to_bytes()).expect("valid");
        assert_eq!(digits(&drain(&mut rx)), "C");
    }

    #[test]
    fn flash_and_other_non_digit_events_are_ignored() {
        let t0 = Instant::now();
        let mut rx = Rfc4733Receiver::new(8000);
        for event in [16u8, 32, 255] {
            let p = EventPayload {
                event,
                end: false,
                volume: 10,
                duration: 160,
            };
            rx.handle_event(t0, SSRC, u32::from(event), &p.to_bytes())
                .expect("valid");
        }
        assert!(drain(&mut rx).is_empty());
        assert_eq!(rx.poll_timeout(), None);
    }

    #[test]
    fn new_ssrc_with_same_timestamp_is_a_new_digit() {
        let t0 = Instant::now();
        let mut rx = Rfc4733Receiver::new(8000);
        let p = EventPayload {
            event: 1,
            end: true,
            volume: 10,
            duration: 800,
        };
        rx.handle_event(t0, 1, 100, &p.to_bytes()).expect("valid");
        rx.handle_event(t0, 2, 100, &p.to_bytes()).expect("valid");
        assert_eq!(digits(&drain(&mut rx)), "11");
    }

    #[test]
    fn short_payload_is_an_error_not_a_panic() {
        let mut rx = Rfc4733Receiver::new(8000);
        assert_eq!(
            rx.handle_event(Instant::now(), 1, 1, &[1, 2, 3]),
            Err(Rfc4733Error::TooShort(3))
        );
    }

    #[test]
    fn digits_map_to_event_codes_and_debug_hides_them() {
        let all = "0123456789*#ABCD";
        for (code, c) in all.chars().enumerate() {
            let digit = Digit::from_char(c).expect("valid digit");
            assert_eq!(usize::from(digit.event_code()), code);
            assert_eq!(digit.as_char(), c);
            assert_eq!(Digit::from_event(code as u8), Some(digit));
        }
        assert_eq!(Digit::from_event(16), None);
        assert_eq!(Digit::from_char('x'), None);
        assert!(!format!("{:?}", d('7')).contains('7'));
    }

    #[test]
    fn sender_plan_has_marker_start_updates_and_three_end_packets() {
        let p = plan('8', 200);
        assert!(p[0].marker && !p[0].payload.end && p[0].at == Duration::ZERO);
        assert_eq!(p.iter().filter(|p| p.marker).count(), 1);
        let updates: Vec<_> = p.iter().filter(|p| !p.payload.end).collect();
        assert_eq!(updates.len(), 4, "0, 50, 100, 150 ms");
        assert!(updates
            .windows(2)
            .all(|w| w[1].at - w[0].at == Duration::from_millis(50)));
        let ends: Vec<_> = p.iter().filter(|p| p.payload.end).collect();
        assert_eq!(ends.len(), 3);
        assert!(ends
            .iter()
            .all(|e| e.payload.duration == 1600 && e.at == Duration::from_millis(200)));
        assert!(p
            .iter()
            .all(|p| p.timestamp_offset == 0 && p.payload.event == 8));
    }
}
