//! Link-code guessing, counted: per calling number ([`WrongCodeLimiter`]) and for the whole install
//! ([`WrongCodeRate`]). Both are sans-IO: every input carries `now`, nothing reads a clock or
//! sleeps, so the tests below run days of simulated calls in microseconds. [`super::LinkService`]
//! owns one of each behind a mutex and feeds them.
//!
//! A *wrong code* is a looked-up code that did not verify the call for a reason the caller
//! controls: unknown, already used, expired, or (with caller-ID binding) presented from another
//! number than the disclosed one.
//!
//! Memory is bounded: a record is forgotten once it can no longer matter (its last wrong code left
//! the window and any block ended), and at most [`GuessLimits::max_numbers`] numbers are tracked;
//! when full, the record that would be forgotten soonest makes room. A scanner cycling through a
//! million numbers therefore costs at most `max_numbers` records; each of its numbers can make at
//! most `max_wrong_codes - 1` guesses before it is tracked again, which is what the global
//! [`WrongCodeRate`] alarm is for.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How many wrong codes a calling number may give, and the alarm for all numbers together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuessLimits {
    /// Wrong codes from one calling number within [`window`](Self::window) that block it
    /// (default 5).
    pub max_wrong_codes: u32,
    /// The sliding window the wrong codes are counted in (default 1 h).
    pub window: Duration,
    /// How long a blocked number's calls are not looked up (default 1 h), counted from the wrong
    /// code that blocked it.
    pub block: Duration,
    /// Numbers tracked at most (default 100,000, a few tens of MB at most).
    pub max_numbers: usize,
    /// Wrong codes per minute, all numbers together, above which a warning is logged
    /// (default 20; 0 turns the alarm off).
    pub alarm_per_minute: u32,
}

impl Default for GuessLimits {
    fn default() -> Self {
        GuessLimits {
            max_wrong_codes: 5,
            window: Duration::from_secs(3600),
            block: Duration::from_secs(3600),
            max_numbers: 100_000,
            alarm_per_minute: 20,
        }
    }
}

impl GuessLimits {
    /// The most guesses one calling number can make in `period`: either staying just under the
    /// limit in every window, or reaching it and sitting out each block, whichever gives more.
    pub fn guesses_per_number(&self, period: Duration) -> f64 {
        let k = f64::from(self.max_wrong_codes);
        let secs = period.as_secs_f64();
        let under = (k - 1.0) * secs / self.window.as_secs_f64().max(1.0);
        let blocked = k * secs / self.block.as_secs_f64().max(1.0);
        under.max(blocked)
    }
}

/// Wrong codes per calling number; see the module docs.
///
/// Inputs: [`handle_wrong_code`](Self::handle_wrong_code) for every wrong code of a call that was
/// looked up, [`is_blocked`](Self::is_blocked) before a call's code is looked up, and
/// [`handle_timeout`](Self::handle_timeout) at or after [`poll_timeout`](Self::poll_timeout) (or
/// any time: it only forgets what no longer matters).
#[derive(Debug)]
pub struct WrongCodeLimiter {
    limits: GuessLimits,
    /// The number is stored once, shared with `by_expiry`.
    numbers: HashMap<Arc<str>, Record>,
    /// Every record by the time it may be forgotten, soonest first; the `u64` keeps keys unique.
    by_expiry: BTreeMap<(Instant, u64), Arc<str>>,
    next_seq: u64,
}

#[derive(Debug)]
struct Record {
    /// Times of the wrong codes still in the window, oldest first (fewer than `max_wrong_codes`).
    wrong: VecDeque<Instant>,
    /// Blocked until then.
    blocked_until: Option<Instant>,
    /// This record's key in `by_expiry`.
    expiry: (Instant, u64),
}

impl Record {
    /// When nothing in this record matters any more.
    fn forgettable_at(&self, window: Duration) -> Instant {
        let last = self.wrong.back().map(|t| *t + window);
        match (last, self.blocked_until) {
            (Some(a), Some(b)) => a.max(b),
            (Some(a), None) => a,
            (None, Some(b)) => b,
            // Not reached: after a wrong code a record holds one, or a block.
            (None, None) => self.expiry.0,
        }
    }
}

impl WrongCodeLimiter {
    pub fn new(limits: GuessLimits) -> Self {
        WrongCodeLimiter {
            limits,
            numbers: HashMap::new(),
            by_expiry: BTreeMap::new(),
            next_seq: 0,
        }
    }

    pub fn limits(&self) -> &GuessLimits {
        &self.limits
    }

    /// Whether calls from `number` are not to be looked up at `now`.
    pub fn is_blocked(&mut self, now: Instant, number: &str) -> bool {
        self.handle_timeout(now);
        self.numbers
            .get(number)
            .and_then(|r| r.blocked_until)
            .is_some_and(|until| now < until)
    }

    /// A call from `number` gave a wrong code at `now`. Returns `true` when this blocks the number
    /// (the `max_wrong_codes`-th wrong code within the window). A wrong code from a number already
    /// blocked (a call looked up just before the block) counts for nothing.
    pub fn handle_wrong_code(&mut self, now: Instant, number: &str) -> bool {
        self.handle_timeout(now);
        if self.limits.max_numbers == 0 {
            return false;
        }
        let (window, block) = (self.limits.window, self.limits.block);
        let max = self.limits.max_wrong_codes.max(1) as usize;
        // Taken out of both maps, changed, and put back under its new expiry.
        let (shared, mut record) = match self.numbers.remove_entry(number) {
            Some((shared, record)) => {
                self.by_expiry.remove(&record.expiry);
                (shared, record)
            }
            None => {
                if self.numbers.len() >= self.limits.max_numbers {
                    self.forget_soonest();
                }
                let record = Record {
                    wrong: VecDeque::new(),
                    blocked_until: None,
                    expiry: (now, 0),
                };
                (Arc::from(number), record)
            }
        };
        let mut blocked = false;
        if record.blocked_until.is_none_or(|until| now >= until) {
            record.blocked_until = None;
            while record.wrong.front().is_some_and(|t| *t + window <= now) {
                record.wrong.pop_front();
            }
            record.wrong.push_back(now);
            if record.wrong.len() >= max {
                blocked = true;
                record.wrong.clear();
                record.blocked_until = Some(now + block);
            }
        }
        record.expiry = self.key(record.forgettable_at(window));
        self.by_expiry.insert(record.expiry, shared.clone());
        self.numbers.insert(shared, record);
        blocked
    }

    /// Forgets every record that no longer matters at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(entry) = self.by_expiry.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let number = entry.remove();
            self.numbers.remove(&number);
        }
    }

    /// When the next record may be forgotten.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.by_expiry.keys().next().map(|(at, _)| *at)
    }

    /// Numbers tracked now.
    pub fn len(&self) -> usize {
        self.numbers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.numbers.is_empty()
    }

    fn key(&mut self, at: Instant) -> (Instant, u64) {
        self.next_seq = self.next_seq.wrapping_add(1);
        (at, self.next_seq)
    }

    /// Makes room: drops the record that would be forgotten soonest.
    fn forget_soonest(&mut self) {
        if let Some((_, number)) = self.by_expiry.pop_first() {
            self.numbers.remove(&number);
        }
    }
}

/// The wrong-code rate of the whole install, for the alarm: a sliding one-minute estimate (the
/// previous minute's count, weighted by how much of it still lies in the last 60 s, plus this
/// minute's count), in constant memory.
#[derive(Debug)]
pub struct WrongCodeRate {
    alarm_per_minute: u32,
    window_start: Option<Instant>,
    current: u32,
    previous: u32,
    last_alarm: Option<Instant>,
}

const MINUTE: Duration = Duration::from_secs(60);

impl WrongCodeRate {
    /// Alarms above `alarm_per_minute` wrong codes per minute (0: never).
    pub fn new(alarm_per_minute: u32) -> Self {
        WrongCodeRate {
            alarm_per_minute,
            window_start: None,
            current: 0,
            previous: 0,
            last_alarm: None,
        }
    }

    /// A wrong code at `now`. `Some(rate)` (wrong codes in the last minute) when the rate is above
    /// the alarm and no alarm was raised in the minute before: log it then.
    pub fn handle_wrong_code(&mut self, now: Instant) -> Option<u32> {
        self.roll(now);
        self.current = self.current.saturating_add(1);
        let rate = self.rate(now);
        let quiet = self
            .last_alarm
            .is_none_or(|t| now.saturating_duration_since(t) >= MINUTE);
        if self.alarm_per_minute > 0 && rate > self.alarm_per_minute && quiet {
            self.last_alarm = Some(now);
            return Some(rate);
        }
        None
    }

    /// Wrong codes in the minute before `now` (estimated).
    pub fn rate(&self, now: Instant) -> u32 {
        let Some(start) = self.window_start else {
            return 0;
        };
        let into = now.saturating_duration_since(start);
        if into >= 2 * MINUTE {
            return 0;
        }
        if into >= MINUTE {
            let left = 1.0 - (into - MINUTE).as_secs_f64() / MINUTE.as_secs_f64();
            return (f64::from(self.current) * left).round() as u32;
        }
        let left = 1.0 - into.as_secs_f64() / MINUTE.as_secs_f64();
        (f64::from(self.previous) * left).round() as u32 + self.current
    }

    fn roll(&mut self, now: Instant) {
        let start = *self.window_start.get_or_insert(now);
        let into = now.saturating_duration_since(start);
        if into >= 2 * MINUTE {
            self.previous = 0;
            self.current = 0;
            self.window_start = Some(now);
        } else if into >= MINUTE {
            self.previous = self.current;
            self.current = 0;
            self.window_start = Some(start + MINUTE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write as _;

    const MIN: Duration = Duration::from_secs(60);

    fn limiter() -> WrongCodeLimiter {
        WrongCodeLimiter::new(GuessLimits::default())
    }

    #[test]
    fn five_wrong_codes_within_an_hour_block_the_number_for_the_next_hour() {
        let t0 = Instant::now();
        let mut l = limiter();
        for i in 0..4 {
            assert!(!l.handle_wrong_code(t0 + i * 10 * MIN, "+31600000001"));
            assert!(!l.is_blocked(t0 + i * 10 * MIN, "+31600000001"));
        }
        let fifth = t0 + 50 * MIN;
        assert!(
            l.handle_wrong_code(fifth, "+31600000001"),
            "the fifth blocks"
        );
        assert!(l.is_blocked(fifth, "+31600000001"));
        assert!(l.is_blocked(fifth + 59 * MIN, "+31600000001"));
        assert!(
            !l.is_blocked(fifth, "+31600000002"),
            "other numbers are not affected"
        );
        assert!(!l.is_blocked(fifth + 60 * MIN, "+31600000001"));
        assert!(l.is_empty(), "a block that ended is forgotten");
    }

    #[test]
    fn wrong_codes_more_than_an_hour_apart_never_block() {
        let t0 = Instant::now();
        let mut l = limiter();
        // One every 15 minutes: never five within an hour (at most four).
        for i in 0..100 {
            let t = t0 + i * 15 * MIN;
            assert!(!l.handle_wrong_code(t, "+31600000001"), "wrong code {i}");
            assert!(!l.is_blocked(t, "+31600000001"));
        }
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn a_blocked_number_counts_nothing_more_and_starts_afresh_after_the_block() {
        let t0 = Instant::now();
        let mut l = limiter();
        for _ in 0..5 {
            l.handle_wrong_code(t0, "n");
        }
        // A call looked up just before the block ends wrong too: it does not extend the block.
        assert!(!l.handle_wrong_code(t0 + MIN, "n"));
        assert!(!l.is_blocked(t0 + 60 * MIN, "n"));
        for i in 0..4 {
            assert!(!l.handle_wrong_code(t0 + 60 * MIN + i * MIN, "n"));
        }
        assert!(l.handle_wrong_code(t0 + 65 * MIN, "n"));
        assert!(l.is_blocked(t0 + 124 * MIN, "n"));
        assert!(!l.is_blocked(t0 + 125 * MIN, "n"));
    }

    #[test]
    fn a_scanner_with_a_million_numbers_keeps_memory_bounded() {
        let t0 = Instant::now();
        let mut l = WrongCodeLimiter::new(GuessLimits {
            max_numbers: 1000,
            ..GuessLimits::default()
        });
        let mut number = String::new();
        for i in 0..1_000_000u32 {
            number.clear();
            let _ = write!(number, "+316{i:08}");
            l.handle_wrong_code(t0 + Duration::from_millis(u64::from(i)), &number);
            if i % 1000 == 0 {
                assert!(l.len() <= 1000);
            }
        }
        assert_eq!(l.len(), 1000);
        assert_eq!(l.by_expiry.len(), 1000, "index and records stay in step");
        // The newest numbers are the ones kept.
        let last = t0 + Duration::from_millis(999_999);
        for _ in 0..4 {
            l.handle_wrong_code(last, "+31600999999");
        }
        assert!(l.is_blocked(last, "+31600999999"));
        // An hour after the scan everything is forgotten.
        l.handle_timeout(last + 61 * MIN);
        assert!(l.is_empty() && l.by_expiry.is_empty());
        assert_eq!(l.poll_timeout(), None);
    }

    #[test]
    fn records_are_forgotten_when_their_last_wrong_code_leaves_the_window() {
        let t0 = Instant::now();
        let mut l = limiter();
        l.handle_wrong_code(t0, "a");
        l.handle_wrong_code(t0 + 30 * MIN, "a");
        l.handle_wrong_code(t0 + 10 * MIN, "b");
        assert_eq!(l.poll_timeout(), Some(t0 + 70 * MIN));
        l.handle_timeout(t0 + 70 * MIN);
        assert_eq!(l.len(), 1, "b forgotten, a still counts");
        l.handle_timeout(t0 + 90 * MIN);
        assert!(l.is_empty());
    }

    #[test]
    fn guesses_per_number_follow_the_limits() {
        let day = Duration::from_secs(86_400);
        assert_eq!(GuessLimits::default().guesses_per_number(day), 120.0);
        let long_window = GuessLimits {
            window: Duration::from_secs(24 * 3600),
            block: Duration::from_secs(24 * 3600),
            ..GuessLimits::default()
        };
        assert_eq!(long_window.guesses_per_number(day), 5.0);
        // A short window with a long block: staying under the limit gives more.
        let short_window = GuessLimits {
            window: Duration::from_secs(60),
            ..GuessLimits::default()
        };
        assert_eq!(short_window.guesses_per_number(day), 4.0 * 1440.0);
    }

    #[test]
    fn the_rate_alarm_fires_once_a_minute_while_the_rate_stays_high() {
        let t0 = Instant::now();
        let mut r = WrongCodeRate::new(20);
        let mut alarms = Vec::new();
        // 30 wrong codes a minute (one every 2 s) for five minutes.
        for i in 0..150u32 {
            let t = t0 + Duration::from_secs(2 * u64::from(i));
            if let Some(rate) = r.handle_wrong_code(t) {
                alarms.push((t.duration_since(t0).as_secs(), rate));
            }
        }
        assert!(
            (4..=5).contains(&alarms.len()),
            "about one alarm a minute: {alarms:?}"
        );
        assert_eq!(alarms[0].1, 21, "the first alarm as the rate crosses 20");
        assert!(alarms.windows(2).all(|w| w[1].0 - w[0].0 >= 60));
        // Quiet for a while: the rate decays.
        assert_eq!(r.rate(t0 + Duration::from_secs(300 + 120)), 0);
    }

    #[test]
    fn a_normal_rate_never_alarms() {
        let t0 = Instant::now();
        let mut r = WrongCodeRate::new(20);
        // 10 a minute for a day.
        for i in 0..14_400u64 {
            assert_eq!(r.handle_wrong_code(t0 + Duration::from_secs(6 * i)), None);
        }
        let mut off = WrongCodeRate::new(0);
        for _ in 0..1000 {
            assert_eq!(off.handle_wrong_code(t0), None);
        }
    }
}
