//! Failed-authentication limiting per source address: the defence against password guessing on the
//! registrar (RFC 3261 §26.1.3 leaves this to the implementation). Sans-IO: `now` is passed in.
//!
//! Policy (a sliding-window counter with a block period):
//!
//! * every failed digest verification from a source counts (see
//!   [`AuthError::counts_as_failure`](crate::auth::AuthError::counts_as_failure): a missing or stale
//!   credential does not, a wrong password, unknown user or mismatched parameter does);
//! * failures older than `window` are forgotten (the count restarts when the first failure of a
//!   window is older than `window`);
//! * once a source reaches `max_failures` within a window it is **blocked** for `block_for`: the
//!   caller drops its requests that need authentication *silently* (no response, so no reflected
//!   traffic and no oracle for the guesser). Requests that need no authentication (OPTIONS) are
//!   still answered;
//! * a successful login clears the source's count (a phone that mistyped once is not punished);
//! * sources are keyed by IPv4 address, or by the /64 prefix for IPv6 (one host owns a /64 and
//!   could otherwise rotate addresses);
//! * the table is bounded by `max_sources`: expired entries are purged first, then the entry seen
//!   longest ago is dropped. Blocked entries are only evicted when every entry is blocked.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Settings of a [`FailureLimiter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitConfig {
    /// Failures within `window` that block a source.
    pub max_failures: u32,
    /// How long failures are remembered.
    pub window: Duration,
    /// How long a source stays blocked.
    pub block_for: Duration,
    /// Most sources tracked at once.
    pub max_sources: usize,
}

impl Default for LimitConfig {
    /// 5 failures in 10 minutes block for 15 minutes; 65 536 sources tracked.
    fn default() -> Self {
        LimitConfig {
            max_failures: 5,
            window: Duration::from_secs(600),
            block_for: Duration::from_secs(900),
            max_sources: 65_536,
        }
    }
}

/// Counts failed logins per source and says which sources are blocked. See the module docs.
#[derive(Debug)]
pub struct FailureLimiter {
    config: LimitConfig,
    sources: HashMap<SourceKey, Entry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum SourceKey {
    V4([u8; 4]),
    V6Prefix([u8; 8]),
}

impl SourceKey {
    fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => SourceKey::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => SourceKey::V4(v4.octets()),
                None => {
                    let o = v6.octets();
                    SourceKey::V6Prefix([o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]])
                }
            },
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    window_start: Instant,
    failures: u32,
    blocked_until: Option<Instant>,
    last_seen: Instant,
}

impl Entry {
    fn blocked(&self, now: Instant) -> bool {
        self.blocked_until.is_some_and(|u| now < u)
    }
}

impl FailureLimiter {
    /// An empty limiter.
    pub fn new(config: LimitConfig) -> Self {
        FailureLimiter {
            config,
            sources: HashMap::new(),
        }
    }

    /// Whether requests needing authentication from `ip` must be dropped now.
    pub fn is_blocked(&self, ip: IpAddr, now: Instant) -> bool {
        self.sources
            .get(&SourceKey::of(ip))
            .is_some_and(|e| e.blocked(now))
    }

    /// Records a failed login from `ip`. Returns `true` when the source is now blocked.
    pub fn record_failure(&mut self, ip: IpAddr, now: Instant) -> bool {
        let key = SourceKey::of(ip);
        if !self.sources.contains_key(&key) {
            self.make_room(now);
        }
        let cfg = self.config;
        let e = self.sources.entry(key).or_insert(Entry {
            window_start: now,
            failures: 0,
            blocked_until: None,
            last_seen: now,
        });
        e.last_seen = now;
        if e.blocked(now) {
            return true;
        }
        if now.saturating_duration_since(e.window_start) > cfg.window || e.blocked_until.is_some() {
            // The window (or an earlier block) is over: start counting afresh.
            e.window_start = now;
            e.failures = 0;
            e.blocked_until = None;
        }
        e.failures = e.failures.saturating_add(1);
        if e.failures >= cfg.max_failures {
            e.blocked_until = Some(now + cfg.block_for);
            return true;
        }
        false
    }

    /// Records a successful login from `ip`: its failures are forgiven (a block stays in force).
    pub fn record_success(&mut self, ip: IpAddr, now: Instant) {
        let key = SourceKey::of(ip);
        if let Some(e) = self.sources.get(&key) {
            if !e.blocked(now) {
                self.sources.remove(&key);
            }
        }
    }

    /// How many sources are tracked.
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    /// Whether no source is tracked.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    fn make_room(&mut self, now: Instant) {
        let max = self.config.max_sources.max(1);
        if self.sources.len() < max {
            return;
        }
        let window = self.config.window;
        self.sources.retain(|_, e| {
            e.blocked(now) || now.saturating_duration_since(e.window_start) <= window
        });
        while self.sources.len() >= max {
            let victim = self
                .sources
                .iter()
                .min_by_key(|(_, e)| (e.blocked(now), e.last_seen))
                .map(|(k, _)| *k);
            match victim {
                Some(k) => {
                    self.sources.remove(&k);
                }
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn cfg() -> LimitConfig {
        LimitConfig {
            max_failures: 3,
            window: Duration::from_secs(60),
            block_for: Duration::from_secs(120),
            max_sources: 4,
        }
    }

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn blocks_after_max_failures_and_unblocks_after_block_period() {
        let t = Instant::now();
        let mut l = FailureLimiter::new(cfg());
        assert!(!l.record_failure(A, t));
        assert!(!l.record_failure(A, t + Duration::from_secs(1)));
        assert!(!l.is_blocked(A, t + Duration::from_secs(1)));
        assert!(l.record_failure(A, t + Duration::from_secs(2)));
        assert!(l.is_blocked(A, t + Duration::from_secs(3)));
        assert!(
            !l.is_blocked(B, t + Duration::from_secs(3)),
            "other sources unaffected"
        );
        assert!(l.is_blocked(A, t + Duration::from_secs(121)));
        assert!(!l.is_blocked(A, t + Duration::from_secs(123)));
        // After the block, one more failure does not re-block at once.
        assert!(!l.record_failure(A, t + Duration::from_secs(124)));
    }

    #[test]
    fn failures_outside_the_window_are_forgotten() {
        let t = Instant::now();
        let mut l = FailureLimiter::new(cfg());
        l.record_failure(A, t);
        l.record_failure(A, t + Duration::from_secs(1));
        assert!(!l.record_failure(A, t + Duration::from_secs(62)));
        assert!(!l.is_blocked(A, t + Duration::from_secs(62)));
    }

    #[test]
    fn success_forgives_failures_but_not_a_block() {
        let t = Instant::now();
        let mut l = FailureLimiter::new(cfg());
        l.record_failure(A, t);
        l.record_failure(A, t);
        l.record_success(A, t);
        assert!(!l.record_failure(A, t));
        assert!(!l.record_failure(A, t));
        assert!(l.record_failure(A, t));
        l.record_success(A, t);
        assert!(l.is_blocked(A, t));
    }

    #[test]
    fn ipv6_sources_in_one_64_share_a_counter() {
        let t = Instant::now();
        let mut l = FailureLimiter::new(cfg());
        for i in 1..=3u16 {
            l.record_failure(
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i)),
                t,
            );
        }
        assert!(l.is_blocked(
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 9, 9, 9, 9)),
            t
        ));
        assert!(!l.is_blocked(
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 1)),
            t
        ));
    }

    #[test]
    fn table_stays_bounded_and_keeps_blocked_sources() {
        let t = Instant::now();
        let mut l = FailureLimiter::new(cfg());
        for _ in 0..3 {
            l.record_failure(A, t);
        }
        for i in 0..100u8 {
            l.record_failure(IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)), t);
            assert!(l.len() <= 4);
        }
        assert!(
            l.is_blocked(A, t),
            "an attacker cannot flush its own block with spoofed sources"
        );
    }
}
