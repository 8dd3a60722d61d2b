//! Collecting the link code: digits from three sources (RFC 4733 events, SIP INFO, in-band tones) merged
//! into one sequence, with the collection timeouts. Sans-IO: every input carries `now`, the collector
//! says when it wants to be woken ([`DigitCollector::poll_timeout`]) and what it decided
//! ([`DigitCollector::outcome`]).
//!
//! Rules (issue 4, "Digits, three ways, one result"):
//! - out-of-band digits (RFC 4733, INFO) count at once;
//! - an in-band digit is held until shortly after it ends and is dropped when an out-of-band digit
//!   overlaps it (phones that send RFC 4733 often leave the tones in the audio too), so no digit is ever
//!   counted twice;
//! - when a trunk sends both RFC 4733 and INFO for the same key press, the second report of the same digit
//!   within [`CollectConfig::duplicate_window`] is dropped;
//! - the first digit must come within `first_digit_timeout` of the answer, each next one within
//!   `inter_digit_timeout`; collection ends after `code_len` digits.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Timeouts and code length; defaults follow issue 4 (10 s, 3 s, 8 digits).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CollectConfig {
    pub code_len: usize,
    pub first_digit_timeout: Duration,
    pub inter_digit_timeout: Duration,
    /// How long after an in-band digit ends we wait for an overlapping out-of-band report before counting it.
    pub inband_guard: Duration,
    /// An out-of-band digit equal to the previous one from the other out-of-band source within this window
    /// is the same key press reported twice.
    pub duplicate_window: Duration,
}

impl Default for CollectConfig {
    fn default() -> Self {
        CollectConfig {
            code_len: 8,
            first_digit_timeout: Duration::from_secs(10),
            inter_digit_timeout: Duration::from_secs(3),
            inband_guard: Duration::from_millis(120),
            duplicate_window: Duration::from_millis(400),
        }
    }
}

/// Where a digit came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DigitSource {
    Rfc4733,
    Info,
    InBand,
}

/// How collection ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `code_len` digits arrived. The string holds only `0-9*#A-D`.
    Code(String),
    /// No digit before the first-digit timeout.
    NoCode,
    /// Some digits, then the inter-digit timeout.
    Incomplete { digits: usize },
}

#[derive(Clone, Copy, Debug)]
struct OutOfBand {
    digit: char,
    source: DigitSource,
    start: Instant,
    end: Option<Instant>,
}

#[derive(Clone, Copy, Debug)]
struct PendingInBand {
    digit: char,
    start: Instant,
    end: Instant,
}

/// Merges digit reports into a code. Polling order: feed inputs, then `outcome()`, then `poll_timeout()`.
#[derive(Debug)]
pub struct DigitCollector {
    config: CollectConfig,
    digits: String,
    answered_at: Instant,
    last_digit_at: Option<Instant>,
    /// Recent out-of-band digits, newest last; used to suppress overlapping in-band and duplicate reports.
    recent_oob: VecDeque<OutOfBand>,
    pending_inband: VecDeque<PendingInBand>,
    outcome: Option<Outcome>,
}

const RECENT_OOB_KEPT: usize = 16;

impl DigitCollector {
    /// Starts collecting at `answered_at` (when our 200 OK went out).
    pub fn new(config: CollectConfig, answered_at: Instant) -> Self {
        DigitCollector {
            config,
            digits: String::new(),
            answered_at,
            last_digit_at: None,
            recent_oob: VecDeque::with_capacity(RECENT_OOB_KEPT),
            pending_inband: VecDeque::new(),
            outcome: None,
        }
    }

    /// An out-of-band digit began (RFC 4733 event start, or an INFO, which has no separate end).
    pub fn handle_out_of_band(&mut self, now: Instant, source: DigitSource, digit: char) {
        if self.outcome.is_some() || !is_dtmf_digit(digit) {
            return;
        }
        self.flush_inband(now);
        let duplicate = self.recent_oob.back().is_some_and(|prev| {
            prev.digit == digit
                && prev.source != source
                && now.saturating_duration_since(prev.start) <= self.config.duplicate_window
        });
        let end = (source == DigitSource::Info).then_some(now);
        if self.recent_oob.len() == RECENT_OOB_KEPT {
            self.recent_oob.pop_front();
        }
        self.recent_oob.push_back(OutOfBand {
            digit,
            source,
            start: now,
            end,
        });
        // Any in-band digit overlapping this one is the same key press.
        let guard = self.config.inband_guard;
        self.pending_inband
            .retain(|p| !(p.start <= now + guard && now <= p.end + guard));
        if !duplicate {
            self.accept(now, digit);
        }
    }

    /// An RFC 4733 event ended (end bit, or the event timed out).
    pub fn handle_out_of_band_end(&mut self, now: Instant, digit: char) {
        if let Some(last) = self
            .recent_oob
            .iter_mut()
            .rev()
            .find(|d| d.digit == digit && d.end.is_none())
        {
            last.end = Some(now);
        }
        self.flush_inband(now);
    }

    /// An in-band digit detected in the audio, with its onset and end mapped to wall time by the caller.
    pub fn handle_inband(&mut self, now: Instant, digit: char, start: Instant, end: Instant) {
        if self.outcome.is_some() || !is_dtmf_digit(digit) {
            return;
        }
        let guard = self.config.inband_guard;
        let overlaps_oob = self.recent_oob.iter().any(|o| {
            let o_end = o.end.unwrap_or(now);
            o.start <= end + guard && start <= o_end + guard
        });
        if !overlaps_oob {
            self.pending_inband
                .push_back(PendingInBand { digit, start, end });
        }
        self.flush_inband(now);
    }

    /// Timers fired (or any wake-up): applies held in-band digits and timeouts.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.flush_inband(now);
        if self.outcome.is_some() {
            return;
        }
        if now >= self.digit_deadline() && self.pending_inband.is_empty() {
            self.outcome = Some(if self.digits.is_empty() {
                Outcome::NoCode
            } else {
                Outcome::Incomplete {
                    digits: self.digits.len(),
                }
            });
        }
    }

    /// When to call [`Self::handle_timeout`] next; `None` once decided.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.outcome.is_some() {
            return None;
        }
        let inband = self
            .pending_inband
            .front()
            .map(|p| p.end + self.config.inband_guard);
        Some(match inband {
            Some(t) => t.min(self.digit_deadline()),
            None => self.digit_deadline(),
        })
    }

    /// The result, once collection has ended.
    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    /// Digits counted so far (personal data: don't log).
    pub fn digits_so_far(&self) -> usize {
        self.digits.len()
    }

    fn digit_deadline(&self) -> Instant {
        match self.last_digit_at {
            None => self.answered_at + self.config.first_digit_timeout,
            Some(t) => t + self.config.inter_digit_timeout,
        }
    }

    fn flush_inband(&mut self, now: Instant) {
        while let Some(p) = self.pending_inband.front().copied() {
            if now < p.end + self.config.inband_guard || self.outcome.is_some() {
                break;
            }
            self.pending_inband.pop_front();
            // The digit counts from its onset: a held digit must not be lost to a timeout that passed
            // while we waited for an out-of-band report.
            self.accept(p.start.max(self.last_digit_at.unwrap_or(p.start)), p.digit);
        }
    }

    fn accept(&mut self, at: Instant, digit: char) {
        if self.outcome.is_some() {
            return;
        }
        self.digits.push(digit);
        self.last_digit_at = Some(at);
        if self.digits.len() >= self.config.code_len {
            self.pending_inband.clear();
            self.outcome = Some(Outcome::Code(std::mem::take(&mut self.digits)));
        }
    }
}

fn is_dtmf_digit(c: char) -> bool {
    matches!(c, '0'..='9' | '*' | '#' | 'A'..='D')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn collector() -> (DigitCollector, Instant) {
        let t0 = Instant::now();
        (DigitCollector::new(CollectConfig::default(), t0), t0)
    }

    /// Presses `code` as RFC 4733 events, 100 ms on / 100 ms off, starting at `start`.
    fn press_rfc4733(c: &mut DigitCollector, start: Instant, code: &str) -> Instant {
        let mut t = start;
        for d in code.chars() {
            c.handle_out_of_band(t, DigitSource::Rfc4733, d);
            c.handle_out_of_band_end(t + ms(100), d);
            t += ms(200);
        }
        t
    }

    #[test]
    fn eight_rfc4733_digits_make_a_code_at_once() {
        let (mut c, t0) = collector();
        press_rfc4733(&mut c, t0 + ms(500), "12345678");
        assert_eq!(c.outcome(), Some(&Outcome::Code("12345678".into())));
        assert_eq!(c.poll_timeout(), None);
    }

    #[test]
    fn repeated_digits_are_separate_presses() {
        let (mut c, t0) = collector();
        press_rfc4733(&mut c, t0, "11223344");
        assert_eq!(c.outcome(), Some(&Outcome::Code("11223344".into())));
    }

    #[test]
    fn silence_for_ten_seconds_is_no_code() {
        let (mut c, t0) = collector();
        assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(10)));
        c.handle_timeout(t0 + Duration::from_secs(10) - ms(1));
        assert_eq!(c.outcome(), None);
        c.handle_timeout(t0 + Duration::from_secs(10));
        assert_eq!(c.outcome(), Some(&Outcome::NoCode));
    }

    #[test]
    fn a_three_second_gap_ends_an_incomplete_code() {
        let (mut c, t0) = collector();
        let t = press_rfc4733(&mut c, t0 + ms(300), "1234");
        let last_start = t - ms(200);
        assert_eq!(c.poll_timeout(), Some(last_start + Duration::from_secs(3)));
        c.handle_timeout(last_start + Duration::from_secs(3));
        assert_eq!(c.outcome(), Some(&Outcome::Incomplete { digits: 4 }));
    }

    #[test]
    fn a_slow_but_steady_caller_is_not_cut_off() {
        let (mut c, t0) = collector();
        let mut t = t0 + Duration::from_secs(9);
        for d in "87654321".chars() {
            c.handle_timeout(t);
            assert_eq!(c.outcome(), None, "timed out before digit {d}");
            c.handle_out_of_band(t, DigitSource::Info, d);
            t += ms(2900);
        }
        assert_eq!(c.outcome(), Some(&Outcome::Code("87654321".into())));
    }

    #[test]
    fn inband_digits_alone_make_a_code() {
        let (mut c, t0) = collector();
        let mut t = t0 + ms(400);
        for d in "90909090".chars() {
            c.handle_inband(t + ms(140), d, t, t + ms(100));
            t += ms(200);
            c.handle_timeout(t);
        }
        c.handle_timeout(t + ms(200));
        assert_eq!(c.outcome(), Some(&Outcome::Code("90909090".into())));
    }

    #[test]
    fn inband_overlapping_rfc4733_is_counted_once() {
        let (mut c, t0) = collector();
        let mut t = t0 + ms(400);
        for d in "55667788".chars() {
            // The event arrives first; the detector reports the same press ~45 ms into the tone and at its end.
            c.handle_out_of_band(t, DigitSource::Rfc4733, d);
            c.handle_inband(t + ms(105), d, t + ms(2), t + ms(98));
            c.handle_out_of_band_end(t + ms(100), d);
            t += ms(200);
            c.handle_timeout(t);
        }
        assert_eq!(c.outcome(), Some(&Outcome::Code("55667788".into())));
    }

    #[test]
    fn inband_reported_before_a_late_rfc4733_event_is_counted_once() {
        let (mut c, t0) = collector();
        let t = t0 + ms(400);
        c.handle_inband(t + ms(100), '4', t, t + ms(90));
        // The RFC 4733 packet is late (jitter), but still inside the guard after the tone.
        c.handle_out_of_band(t + ms(150), DigitSource::Rfc4733, '4');
        c.handle_timeout(t + ms(400));
        assert_eq!(c.digits_so_far(), 1);
    }

    #[test]
    fn rfc4733_and_info_for_the_same_press_count_once() {
        let (mut c, t0) = collector();
        let t = t0 + ms(400);
        c.handle_out_of_band(t, DigitSource::Rfc4733, '7');
        c.handle_out_of_band(t + ms(30), DigitSource::Info, '7');
        assert_eq!(c.digits_so_far(), 1);
        // A real second press of the same key over the other source, later, does count.
        c.handle_out_of_band(t + ms(600), DigitSource::Info, '7');
        assert_eq!(c.digits_so_far(), 2);
    }

    #[test]
    fn digits_after_the_code_are_ignored_and_non_digits_never_count() {
        let (mut c, t0) = collector();
        c.handle_out_of_band(t0, DigitSource::Info, 'x');
        c.handle_inband(t0, '!', t0, t0);
        press_rfc4733(&mut c, t0, "12345678");
        c.handle_out_of_band(t0 + Duration::from_secs(2), DigitSource::Rfc4733, '9');
        assert_eq!(c.outcome(), Some(&Outcome::Code("12345678".into())));
    }
}
