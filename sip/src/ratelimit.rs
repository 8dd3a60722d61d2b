//! Failed-login limiting per source and per account: the defence against password guessing on the
//! registrar (RFC 3261 §26.1.3 leaves this to the implementation). Sans-IO: `now` is passed in.
//!
//! Policy:
//!
//! * every failed digest verification counts against the source **and the account** it tried (see
//!   [`AuthError::counts_as_failure`](crate::auth::AuthError::counts_as_failure): a missing or
//!   stale credential does not, a wrong password, unknown user or mismatched parameter does);
//! * failures older than `window` are forgotten (a sliding window);
//! * **per source**: once the failures from a source reach `max_failures` within the window it is
//!   **blocked** for `block_for`: the caller drops its requests that need authentication
//!   *silently* (no response, so no reflected traffic and no oracle for the guesser). Requests that
//!   need no authentication (OPTIONS) are still answered;
//! * a successful login forgives only the failures **on that account from that source** (a phone
//!   that mistyped once is not punished). Failures on other accounts stay: an agent who interleaves
//!   good logins on their own account with guesses at a colleague's is still blocked;
//! * **per account**: once an account collected `account_free_failures` within the window (from
//!   any number of sources), every further failure makes it back off — `account_backoff`, doubling
//!   up to `account_backoff_max` — and until then a source that has already failed on this account
//!   may not try it again ([`Attempt::AccountBackoff`]; its password is not even checked). A source
//!   that has not failed on the account is never held back, so nobody can lock an agent out by
//!   guessing: the agent's phone, at an address that has not failed, still registers at once. A
//!   guesser with many addresses gets one free try per address, then one per back-off period;
//! * sources are keyed by IPv4 address, or by the /64 prefix for IPv6 (one host owns a /64 and
//!   could otherwise rotate addresses); accounts by a hash of the username, so an unbounded name
//!   costs no more memory than a short one;
//! * the tables are bounded by `max_sources` and `max_accounts`: expired entries are purged first,
//!   then the entry seen longest ago is dropped. Blocked sources are only evicted when every entry
//!   is blocked.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Settings of a [`FailureLimiter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitConfig {
    /// Failures from one source within `window` that block it (each on any account, less those a
    /// later success on the same account forgave).
    pub max_failures: u32,
    /// How long failures are remembered.
    pub window: Duration,
    /// How long a source stays blocked.
    pub block_for: Duration,
    /// Most sources tracked at once.
    pub max_sources: usize,
    /// Failures on one account within `window`, from all sources together, before it backs off.
    pub account_free_failures: u32,
    /// The first back-off wait of an account; each further failure doubles it.
    pub account_backoff: Duration,
    /// The longest back-off wait of an account.
    pub account_backoff_max: Duration,
    /// Most accounts tracked at once.
    pub max_accounts: usize,
}

impl Default for LimitConfig {
    /// 5 failures in 10 minutes block a source for 15 minutes; an account backs off after 10
    /// failures in 10 minutes, from 1 s doubling to 15 minutes; 65 536 sources and 4 096 accounts
    /// tracked.
    fn default() -> Self {
        LimitConfig {
            max_failures: 5,
            window: Duration::from_secs(600),
            block_for: Duration::from_secs(900),
            max_sources: 65_536,
            account_free_failures: 10,
            account_backoff: Duration::from_secs(1),
            account_backoff_max: Duration::from_secs(900),
            max_accounts: 4_096,
        }
    }
}

/// What the limiter says about a login attempt, before the credentials are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Check the credentials.
    Allowed,
    /// The source is blocked: drop the request without an answer.
    SourceBlocked,
    /// The account is backing off and this source already failed on it: do not check the
    /// credentials; the source may try again after `retry_after`.
    AccountBackoff { retry_after: Duration },
}

/// Counts failed logins per source and per account. See the module docs.
#[derive(Debug)]
pub struct FailureLimiter {
    config: LimitConfig,
    sources: HashMap<SourceKey, SourceEntry>,
    accounts: HashMap<AccountKey, AccountEntry>,
}

/// A source as the limiters count it: an IPv4 address (IPv4-mapped IPv6 included) or an IPv6 /64.
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

/// Settings of the SIP driver's per-address message limit (`sip.messages_per_second_per_address`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateConfig {
    /// Messages per second one source may send, sustained.
    pub per_second: u32,
    /// Messages one source may send at once after a quiet spell.
    pub burst: u32,
    /// Most sources tracked at once.
    pub max_sources: usize,
}

impl Default for RateConfig {
    /// 50 messages/s, bursts of 200, 65 536 sources tracked: room for a call centre's worth of phones
    /// behind one NAT address (each registers, pings and signals a few messages a minute).
    fn default() -> Self {
        RateConfig {
            per_second: 50,
            burst: 200,
            max_sources: 65_536,
        }
    }
}

/// A username, hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct AccountKey(u64);

impl AccountKey {
    fn of(account: &str) -> Self {
        let mut h = DefaultHasher::new();
        account.hash(&mut h);
        AccountKey(h.finish())
    }
}

#[derive(Debug, Clone)]
struct SourceEntry {
    /// Failures within the window, oldest first, with the account each was on. Never longer than
    /// `max_failures` (the one that reaches it blocks, and a block's end clears the list).
    failures: VecDeque<(Instant, AccountKey)>,
    blocked_until: Option<Instant>,
    last_seen: Instant,
}

impl SourceEntry {
    fn blocked(&self, now: Instant) -> bool {
        self.blocked_until.is_some_and(|u| now < u)
    }

    fn forget_before(&mut self, cutoff: Option<Instant>) {
        while self
            .failures
            .front()
            .is_some_and(|(at, _)| cutoff.is_some_and(|c| *at < c))
        {
            self.failures.pop_front();
        }
    }

    fn expired(&self, now: Instant, cutoff: Option<Instant>) -> bool {
        !self.blocked(now)
            && self
                .failures
                .back()
                .is_none_or(|(at, _)| cutoff.is_some_and(|c| *at < c))
    }
}

#[derive(Debug, Clone)]
struct AccountEntry {
    /// Failures within the window, oldest first (bounded: past `account_free_failures` + 32 the
    /// back-off is at its maximum anyway).
    failures: VecDeque<Instant>,
    /// Sources that already failed on the account may not try it before this.
    next_try: Option<Instant>,
    last_seen: Instant,
}

impl FailureLimiter {
    /// An empty limiter.
    pub fn new(config: LimitConfig) -> Self {
        FailureLimiter {
            config,
            sources: HashMap::new(),
            accounts: HashMap::new(),
        }
    }

    /// Whether requests needing authentication from `ip` must be dropped now.
    pub fn is_blocked(&self, ip: IpAddr, now: Instant) -> bool {
        self.sources
            .get(&SourceKey::of(ip))
            .is_some_and(|e| e.blocked(now))
    }

    /// Whether `ip` may try the credentials of `account` now (see [`Attempt`]).
    pub fn check(&self, ip: IpAddr, account: &str, now: Instant) -> Attempt {
        let Some(source) = self.sources.get(&SourceKey::of(ip)) else {
            return Attempt::Allowed;
        };
        if source.blocked(now) {
            return Attempt::SourceBlocked;
        }
        let key = AccountKey::of(account);
        let cutoff = now.checked_sub(self.config.window);
        let failed_here = source
            .failures
            .iter()
            .any(|(at, a)| *a == key && cutoff.is_none_or(|c| *at >= c));
        let next_try = self.accounts.get(&key).and_then(|e| e.next_try);
        match next_try {
            Some(next) if failed_here && now < next => Attempt::AccountBackoff {
                retry_after: next - now,
            },
            _ => Attempt::Allowed,
        }
    }

    /// Records a failed login from `ip` on `account`. Returns `true` when the source is now
    /// blocked.
    pub fn record_failure(&mut self, ip: IpAddr, account: &str, now: Instant) -> bool {
        let account = AccountKey::of(account);
        self.record_account_failure(account, now);
        let key = SourceKey::of(ip);
        if !self.sources.contains_key(&key) {
            self.make_room_for_source(now);
        }
        let cfg = self.config;
        let cutoff = now.checked_sub(cfg.window);
        let e = self.sources.entry(key).or_insert(SourceEntry {
            failures: VecDeque::new(),
            blocked_until: None,
            last_seen: now,
        });
        e.last_seen = now;
        if e.blocked(now) {
            return true;
        }
        if e.blocked_until.take().is_some() {
            // An earlier block is over: start counting afresh.
            e.failures.clear();
        }
        e.forget_before(cutoff);
        e.failures.push_back((now, account));
        if e.failures.len() >= cfg.max_failures.max(1) as usize {
            e.blocked_until = Some(now + cfg.block_for);
            return true;
        }
        false
    }

    /// Records a successful login from `ip` on `account`: that source's failures on that account
    /// are forgiven — no others, and no block in force. The account's own count stays (a guesser
    /// elsewhere does not get a fresh start because the agent logged in).
    pub fn record_success(&mut self, ip: IpAddr, account: &str, now: Instant) {
        let key = SourceKey::of(ip);
        let account = AccountKey::of(account);
        let cutoff = now.checked_sub(self.config.window);
        if let Some(e) = self.sources.get_mut(&key) {
            if e.blocked(now) {
                return;
            }
            e.failures.retain(|(_, a)| *a != account);
            if e.expired(now, cutoff) {
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

    /// How many accounts are tracked.
    pub fn accounts_len(&self) -> usize {
        self.accounts.len()
    }

    fn record_account_failure(&mut self, account: AccountKey, now: Instant) {
        if !self.accounts.contains_key(&account) {
            self.make_room_for_account(now);
        }
        let cfg = self.config;
        let cutoff = now.checked_sub(cfg.window);
        let e = self.accounts.entry(account).or_insert(AccountEntry {
            failures: VecDeque::new(),
            next_try: None,
            last_seen: now,
        });
        e.last_seen = now;
        while e
            .failures
            .front()
            .is_some_and(|at| cutoff.is_some_and(|c| *at < c))
        {
            e.failures.pop_front();
        }
        e.failures.push_back(now);
        let free = cfg.account_free_failures as usize;
        if e.failures.len() > free + 32 {
            e.failures.pop_front();
        }
        let over = e.failures.len().saturating_sub(free);
        e.next_try = (over > 0).then(|| {
            // 2^(over - 1) times the first wait; past 2^31 the maximum applies anyway.
            let factor = 1u32 << (over - 1).min(31);
            now + cfg
                .account_backoff
                .saturating_mul(factor)
                .min(cfg.account_backoff_max)
        });
    }

    fn make_room_for_source(&mut self, now: Instant) {
        let max = self.config.max_sources.max(1);
        if self.sources.len() < max {
            return;
        }
        let cutoff = now.checked_sub(self.config.window);
        self.sources.retain(|_, e| !e.expired(now, cutoff));
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

    fn make_room_for_account(&mut self, now: Instant) {
        let max = self.config.max_accounts.max(1);
        if self.accounts.len() < max {
            return;
        }
        let cutoff = now.checked_sub(self.config.window);
        self.accounts.retain(|_, e| {
            e.next_try.is_some_and(|t| now < t)
                || e.failures
                    .back()
                    .is_some_and(|at| cutoff.is_none_or(|c| *at >= c))
        });
        while self.accounts.len() >= max {
            let victim = self
                .accounts
                .iter()
                .min_by_key(|(_, e)| e.last_seen)
                .map(|(k, _)| *k);
            match victim {
                Some(k) => {
                    self.accounts.remove(&k);
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
            account_free_failures: 4,
            account_backoff: Duration::from_secs(1),
            account_backoff_max: Duration::from_secs(8),
            max_accounts: 4,
        }
    }

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn host(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
    }

    #[test]
    fn blocks_after_max_failures_and_unblocks_after_block_period() {
        let t = Instant::now();
        let mut l = FailureLimiter::new(cfg());
        assert!(!l.record_failure(A, "agent", t));
        assert!(!l.record_failure(A, "agent", t + secs(1)));
        assert!(!l.is_blocked(A, t + secs(1)));
        assert!(l.record_failure(A, "agent", t + secs(2)));
        assert!(l.is_blocked(A, t + secs(3)));
        assert_eq!(l.check(A, "agent", t + secs(3)), Attempt::SourceBlocked);
        assert!(!l.is_blocked(B, t + secs(3)), "other sources unaffected");
        assert!(l.is_blocked(A, t + secs(121)));
        assert!(!l.is_blocked(A, t + secs(123)));
        // After the block, one more failure does not re-block at once.
        assert!(!l.record_failure(A, "agent", t + secs(124)));
    }

    #[test]
    fn failures_outside_the_window_are_forgotten() {
        let t = Instant::now();
        let mut l = FailureLimiter::new(cfg());
        l.record_failure(A, "agent", t);
        l.record_failure(A, "agent", t + secs(1));
        assert!(!l.record_failure(A, "agent", t + secs(62)));
        assert!(!l.is_blocked(A, t + secs(62)));
        // The window slides: the failures at 62 s, 63 s and 64 s block.
        assert!(!l.record_failure(A, "agent", t + secs(63)));
        assert!(l.record_failure(A, "agent", t + secs(64)));
        assert!(l.is_blocked(A, t + secs(64)));
    }

    #[test]
    fn success_forgives_that_accounts_failures_but_not_a_block() {
        let t = Instant::now();
        let mut l = FailureLimiter::new(cfg());
        l.record_failure(A, "agent", t);
        l.record_failure(A, "agent", t);
        l.record_success(A, "agent", t);
        assert!(!l.record_failure(A, "agent", t));
        assert!(!l.record_failure(A, "agent", t));
        assert!(l.record_failure(A, "agent", t));
        l.record_success(A, "agent", t);
        assert!(l.is_blocked(A, t));
    }

    #[test]
    fn good_logins_on_ones_own_account_do_not_forgive_guesses_at_a_colleagues() {
        let t = Instant::now();
        let mut l = FailureLimiter::new(cfg());
        for i in 0..2 {
            l.record_success(A, "me", t + secs(i));
            assert!(!l.record_failure(A, "colleague", t + secs(i)));
        }
        l.record_success(A, "me", t + secs(2));
        assert!(
            l.record_failure(A, "colleague", t + secs(2)),
            "the third guess blocks the source"
        );
        assert_eq!(l.check(A, "me", t + secs(3)), Attempt::SourceBlocked);
    }

    #[test]
    fn many_sources_guessing_one_account_are_slowed_but_a_fresh_address_logs_in_at_once() {
        let t = Instant::now();
        let mut l = FailureLimiter::new(LimitConfig {
            max_sources: 1000,
            ..cfg()
        });
        // Four sources fail once each: within the account's free failures.
        for n in 0..4 {
            assert_eq!(l.check(host(n), "agent", t), Attempt::Allowed);
            l.record_failure(host(n), "agent", t);
        }
        assert_eq!(l.check(host(0), "agent", t), Attempt::Allowed);
        // The fifth failure starts the back-off: 1 s, then 2, 4, 8, 8, … for every source that
        // already failed on the account.
        l.record_failure(host(4), "agent", t);
        assert_eq!(
            l.check(host(0), "agent", t),
            Attempt::AccountBackoff {
                retry_after: secs(1)
            }
        );
        let mut waits = Vec::new();
        for n in 5..10 {
            l.record_failure(host(n), "agent", t);
            match l.check(host(n), "agent", t) {
                Attempt::AccountBackoff { retry_after } => waits.push(retry_after.as_secs()),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(waits, vec![2, 4, 8, 8, 8]);
        // Their next try waits for the back-off to pass; then one is checked again.
        assert_eq!(l.check(host(3), "agent", t + secs(8)), Attempt::Allowed);
        // Never a lock-out: an address that has not failed on the account is always checked, …
        assert_eq!(l.check(host(500), "agent", t), Attempt::Allowed);
        // … and so is a source that failed only on another account.
        l.record_failure(host(501), "other", t);
        assert_eq!(l.check(host(501), "agent", t), Attempt::Allowed);
        // Other accounts do not back off.
        assert_eq!(l.check(host(0), "other", t), Attempt::Allowed);
    }

    #[test]
    fn an_accounts_back_off_ends_with_its_window() {
        let t = Instant::now();
        let mut l = FailureLimiter::new(LimitConfig {
            max_sources: 1000,
            ..cfg()
        });
        for n in 0..6 {
            l.record_failure(host(n), "agent", t);
        }
        assert!(matches!(
            l.check(host(0), "agent", t),
            Attempt::AccountBackoff { .. }
        ));
        let later = t + secs(61);
        assert_eq!(l.check(host(0), "agent", later), Attempt::Allowed);
        // The old failures are forgotten: the next one is free again.
        l.record_failure(host(0), "agent", later);
        assert_eq!(l.check(host(0), "agent", later), Attempt::Allowed);
    }

    #[test]
    fn ipv6_sources_in_one_64_share_a_counter() {
        let t = Instant::now();
        let mut l = FailureLimiter::new(cfg());
        for i in 1..=3u16 {
            l.record_failure(
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i)),
                "agent",
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
    fn tables_stay_bounded_and_keep_blocked_sources() {
        let t = Instant::now();
        let mut l = FailureLimiter::new(cfg());
        for _ in 0..3 {
            l.record_failure(A, "agent", t);
        }
        for i in 0..100u8 {
            l.record_failure(
                IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)),
                &format!("user{i}"),
                t,
            );
            assert!(l.len() <= 4);
            assert!(l.accounts_len() <= 4);
        }
        assert!(
            l.is_blocked(A, t),
            "an attacker cannot flush its own block with spoofed sources"
        );
    }
}
