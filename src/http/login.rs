//! The agents' portal login, sans-IO: the session table and the failed-login limiter. Both take
//! `now` with every call and do no I/O, so their timing is unit-tested on simulated time; the HTTP
//! side ([`super::portal`]) keeps each behind a mutex, reads the clock and draws the random ids.
//!
//! - [`SessionTable`]: server-side sessions keyed by a random 256-bit [`SessionId`] (the cookie),
//!   each with its own CSRF token. A session ends after [`SessionPolicy::idle`] without a request
//!   (8 h by default) or when removed (logout); the table holds at most
//!   [`SessionPolicy::max_sessions`], dropping the least recently used.
//! - [`LoginLimiter`]: failed logins counted per username *and* per client address (IPv6 by /64).
//!   After a number of free failures every further one doubles the wait before the next try (to a
//!   cap). A success clears only its own username's count (and takes back its own attempt from the
//!   address); counts are forgotten after a quiet period. Memory stays bounded under a flood of
//!   usernames or addresses: a full table forgets its smallest count first.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use base64::Engine;
use subtle::ConstantTimeEq;

use crate::tenant::{AgentId, TenantId};

/// A session's identifier: 256 random bits, in the cookie as 43 base64url characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId([u8; 32]);

impl SessionId {
    pub fn from_bytes(bytes: [u8; 32]) -> SessionId {
        SessionId(bytes)
    }

    /// A fresh id from the thread's CSPRNG.
    pub fn random() -> SessionId {
        SessionId(random_bytes())
    }

    /// The cookie value.
    pub fn encode(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.0)
    }

    /// Reads a cookie value; anything but 43 base64url characters of 32 bytes is `None`.
    pub fn decode(s: &str) -> Option<SessionId> {
        if s.len() != 43 {
            return None;
        }
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .ok()?;
        bytes.try_into().ok().map(SessionId)
    }
}

impl std::fmt::Debug for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionId([redacted])")
    }
}

/// 32 bytes from the thread's CSPRNG.
pub fn random_bytes() -> [u8; 32] {
    use rand::RngExt;
    rand::rng().random()
}

/// A CSRF token: 256 random bits as base64url, sent back in `X-CSRF-Token`.
pub fn random_csrf() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes())
}

/// One logged-in agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub agent: AgentId,
    pub tenant: TenantId,
    /// What `X-CSRF-Token` must carry on every state-changing request of this session.
    pub csrf: String,
    pub last_seen: Instant,
}

impl Session {
    /// Whether `presented` is this session's CSRF token (constant time).
    pub fn csrf_matches(&self, presented: &str) -> bool {
        presented.as_bytes().ct_eq(self.csrf.as_bytes()).into()
    }
}

/// How long sessions live and how many there may be.
#[derive(Clone, Debug)]
pub struct SessionPolicy {
    /// A session without a request for this long is over.
    pub idle: Duration,
    /// Most sessions held at once.
    pub max_sessions: usize,
}

impl Default for SessionPolicy {
    /// 8 hours of inactivity (a working day), 10 000 sessions.
    fn default() -> Self {
        SessionPolicy {
            idle: Duration::from_secs(8 * 3600),
            max_sessions: 10_000,
        }
    }
}

/// The server-side sessions.
#[derive(Debug)]
pub struct SessionTable {
    policy: SessionPolicy,
    sessions: HashMap<SessionId, Session>,
}

impl SessionTable {
    pub fn new(policy: SessionPolicy) -> SessionTable {
        SessionTable {
            policy,
            sessions: HashMap::new(),
        }
    }

    /// Adds a session (its `last_seen` is `now`). When the table is full, expired sessions go
    /// first, then the least recently used one.
    pub fn insert(&mut self, now: Instant, id: SessionId, mut session: Session) {
        session.last_seen = now;
        if self.sessions.len() >= self.policy.max_sessions.max(1) {
            self.expire(now);
        }
        if self.sessions.len() >= self.policy.max_sessions.max(1) {
            let oldest = self
                .sessions
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(id, _)| *id);
            if let Some(oldest) = oldest {
                self.sessions.remove(&oldest);
            }
        }
        self.sessions.insert(id, session);
    }

    /// The live session `id`, marked as used at `now`; an expired one is removed and `None`.
    pub fn touch(&mut self, now: Instant, id: &SessionId) -> Option<&Session> {
        let idle = self.policy.idle;
        let expired = now.saturating_duration_since(self.sessions.get(id)?.last_seen) >= idle;
        if expired {
            self.sessions.remove(id);
            return None;
        }
        let session = self.sessions.get_mut(id)?;
        session.last_seen = now;
        Some(session)
    }

    /// Whether session `id` lives at `now`, without marking it used; an expired one is removed.
    pub fn is_live(&mut self, now: Instant, id: &SessionId) -> bool {
        let Some(session) = self.sessions.get(id) else {
            return false;
        };
        if now.saturating_duration_since(session.last_seen) >= self.policy.idle {
            self.sessions.remove(id);
            return false;
        }
        true
    }

    /// Ends session `id` (logout).
    pub fn remove(&mut self, id: &SessionId) -> Option<Session> {
        self.sessions.remove(id)
    }

    /// Drops every session idle for [`SessionPolicy::idle`] at `now`.
    pub fn expire(&mut self, now: Instant) {
        let idle = self.policy.idle;
        self.sessions
            .retain(|_, s| now.saturating_duration_since(s.last_seen) < idle);
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}

/// How failed logins are slowed down.
#[derive(Clone, Debug)]
pub struct LoginPolicy {
    /// Failures of one username before waits begin.
    pub free_per_username: u32,
    /// Failures from one address (all usernames) before waits begin.
    pub free_per_address: u32,
    /// The first wait; each further failure doubles it.
    pub first_wait: Duration,
    /// The longest wait.
    pub max_wait: Duration,
    /// A count not added to for this long is forgotten (once its wait is over).
    pub forget_after: Duration,
    /// Most usernames, and most addresses, tracked at once.
    pub max_entries: usize,
}

impl Default for LoginPolicy {
    /// 5 free failures per username, 20 per address; then 1 s, 2 s, 4 s … up to 15 min; forgotten
    /// after an hour without failures; 10 000 entries each.
    fn default() -> Self {
        LoginPolicy {
            free_per_username: 5,
            free_per_address: 20,
            first_wait: Duration::from_secs(1),
            max_wait: Duration::from_secs(15 * 60),
            forget_after: Duration::from_secs(3600),
            max_entries: 10_000,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Failures {
    count: u32,
    last: Instant,
}

/// Counts of one kind (usernames or addresses).
#[derive(Debug)]
struct Counts<K> {
    free: u32,
    map: HashMap<K, Failures>,
}

impl<K: Hash + Eq + Clone> Counts<K> {
    fn new(free: u32) -> Counts<K> {
        Counts {
            free,
            map: HashMap::new(),
        }
    }

    fn wait(&self, policy: &LoginPolicy, f: &Failures, now: Instant) -> Option<Duration> {
        if f.count < self.free {
            return None;
        }
        let doublings = (f.count - self.free).min(30);
        let wait = policy
            .first_wait
            .saturating_mul(1 << doublings)
            .min(policy.max_wait);
        let until = f.last + wait;
        (now < until).then(|| until - now)
    }

    fn forgotten(&self, policy: &LoginPolicy, f: &Failures, now: Instant) -> bool {
        now.saturating_duration_since(f.last) >= policy.forget_after
            && self.wait(policy, f, now).is_none()
    }

    /// Makes room for `key` in a full table: forgotten counts go first, then the smallest count
    /// (the oldest of those). A username or address under a sustained attack has a high count, so a
    /// flood of one-off guesses cannot push it out.
    fn make_room(&mut self, policy: &LoginPolicy, key: &K, now: Instant) {
        let max = policy.max_entries.max(1);
        if self.map.contains_key(key) || self.map.len() < max {
            return;
        }
        let map = std::mem::take(&mut self.map);
        self.map = map
            .into_iter()
            .filter(|(_, f)| !self.forgotten(policy, f, now))
            .collect();
        if self.map.len() >= max {
            let smallest = self
                .map
                .iter()
                .min_by_key(|(_, f)| (f.count, f.last))
                .map(|(k, _)| k.clone());
            if let Some(k) = smallest {
                self.map.remove(&k);
            }
        }
    }

    fn check(&self, policy: &LoginPolicy, key: &K, now: Instant) -> Option<Duration> {
        let f = self.map.get(key)?;
        if self.forgotten(policy, f, now) {
            return None;
        }
        self.wait(policy, f, now)
    }

    fn count(&mut self, policy: &LoginPolicy, key: K, now: Instant) {
        self.make_room(policy, &key, now);
        let forget = self
            .map
            .get(&key)
            .is_some_and(|f| self.forgotten(policy, f, now));
        let f = self.map.entry(key).or_insert(Failures {
            count: 0,
            last: now,
        });
        if forget {
            f.count = 0;
        }
        f.count = f.count.saturating_add(1);
        f.last = now;
    }
}

/// Failed-login counts per username and per client address.
#[derive(Debug)]
pub struct LoginLimiter {
    policy: LoginPolicy,
    usernames: Counts<String>,
    addresses: Counts<IpAddr>,
}

impl LoginLimiter {
    pub fn new(policy: LoginPolicy) -> LoginLimiter {
        LoginLimiter {
            usernames: Counts::new(policy.free_per_username),
            addresses: Counts::new(policy.free_per_address),
            policy,
        }
    }

    /// A login for `username` from `address` is about to check a password. `Err(wait)`: refused
    /// without checking, try again after `wait`. `Ok`: the attempt counts as a failure until
    /// [`LoginLimiter::succeeded`] says otherwise, so parallel guesses cannot slip past the count.
    pub fn attempt(
        &mut self,
        now: Instant,
        username: &str,
        address: IpAddr,
    ) -> Result<(), Duration> {
        let policy = &self.policy;
        let addr = super::rate_limit::client_key(address);
        let user = username.to_owned();
        let wait = [
            self.usernames.check(policy, &user, now),
            self.addresses.check(policy, &addr, now),
        ]
        .into_iter()
        .flatten()
        .max();
        if let Some(wait) = wait {
            return Err(wait);
        }
        self.usernames.count(policy, user, now);
        self.addresses.count(policy, addr, now);
        Ok(())
    }

    /// The password was right: `username` starts afresh, and the address gets this attempt back.
    /// Other usernames keep their counts.
    pub fn succeeded(&mut self, username: &str, address: IpAddr) {
        self.usernames.map.remove(username);
        let addr = super::rate_limit::client_key(address);
        if let Some(f) = self.addresses.map.get_mut(&addr) {
            f.count = f.count.saturating_sub(1);
        }
    }

    /// Usernames and addresses tracked (tests check the memory bound with it).
    pub fn tracked(&self) -> (usize, usize) {
        (self.usernames.map.len(), self.addresses.map.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn session(agent: &str, now: Instant) -> Session {
        Session {
            agent: AgentId(agent.into()),
            tenant: TenantId("demo".into()),
            csrf: random_csrf(),
            last_seen: now,
        }
    }

    #[test]
    fn session_ids_are_random_and_round_trip_as_cookie_values() {
        let a = SessionId::random();
        let b = SessionId::random();
        assert_ne!(a, b);
        let cookie = a.encode();
        assert_eq!(cookie.len(), 43);
        assert_eq!(SessionId::decode(&cookie), Some(a));
        assert_eq!(SessionId::decode(&cookie[1..]), None);
        assert_eq!(SessionId::decode(&format!("{}=", &cookie[1..])), None);
        assert_eq!(SessionId::decode("not a session"), None);
        assert_eq!(format!("{a:?}"), "SessionId([redacted])");
        assert_ne!(random_csrf(), random_csrf());
    }

    #[test]
    fn a_session_lives_while_used_and_ends_after_eight_idle_hours() {
        let t0 = Instant::now();
        let mut table = SessionTable::new(SessionPolicy::default());
        let id = SessionId::random();
        table.insert(t0, id, session("agent", t0));
        // Used every 7 hours: alive for days.
        let mut now = t0;
        for _ in 0..5 {
            now += 7 * 3600 * S;
            assert!(table.touch(now, &id).is_some());
        }
        assert!(table.is_live(now + 7 * 3600 * S, &id));
        assert!(
            !table.is_live(now + 8 * 3600 * S, &id),
            "looking does not keep it alive"
        );
        assert!(table.touch(now + 8 * 3600 * S, &id).is_none());
        assert!(table.is_empty(), "an expired session is removed");
    }

    #[test]
    fn logout_ends_the_session_and_other_sessions_stay() {
        let t0 = Instant::now();
        let mut table = SessionTable::new(SessionPolicy::default());
        let (a, b) = (SessionId::random(), SessionId::random());
        table.insert(t0, a, session("agent", t0));
        table.insert(t0, b, session("colleague", t0));
        assert_eq!(
            table.remove(&a).map(|s| s.agent),
            Some(AgentId("agent".into()))
        );
        assert!(table.touch(t0, &a).is_none());
        assert!(table.touch(t0, &b).is_some());
    }

    #[test]
    fn a_full_table_drops_expired_then_least_recently_used_sessions() {
        let t0 = Instant::now();
        let mut table = SessionTable::new(SessionPolicy {
            idle: 10 * S,
            max_sessions: 2,
        });
        let ids: Vec<SessionId> = (0..4).map(|_| SessionId::random()).collect();
        table.insert(t0, ids[0], session("a", t0));
        table.insert(t0 + S, ids[1], session("b", t0));
        assert!(table.touch(t0 + 2 * S, &ids[0]).is_some());
        table.insert(t0 + 3 * S, ids[2], session("c", t0));
        assert_eq!(table.len(), 2);
        assert!(
            table.touch(t0 + 3 * S, &ids[1]).is_none(),
            "least recently used"
        );
        assert!(table.touch(t0 + 3 * S, &ids[0]).is_some());
        // Both expire; a new one fits without evicting anything live.
        table.insert(t0 + 20 * S, ids[3], session("d", t0));
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn the_csrf_token_must_match_exactly() {
        let s = session("agent", Instant::now());
        assert!(s.csrf_matches(&s.csrf.clone()));
        assert!(!s.csrf_matches(""));
        assert!(!s.csrf_matches(&s.csrf[1..]));
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn five_free_failures_then_waits_double_up_to_the_cap() {
        let mut l = LoginLimiter::new(LoginPolicy::default());
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        for _ in 0..5 {
            assert_eq!(l.attempt(t0, "agent", a), Ok(()));
        }
        assert_eq!(l.attempt(t0, "agent", a), Err(S));
        assert_eq!(
            l.attempt(t0 + S / 2, "agent", a),
            Err(S / 2),
            "a refused try does not count"
        );
        assert_eq!(l.attempt(t0 + S, "agent", a), Ok(()));
        assert_eq!(l.attempt(t0 + S, "agent", a), Err(2 * S));
        assert_eq!(l.attempt(t0 + 3 * S, "agent", a), Ok(()));
        assert_eq!(l.attempt(t0 + 3 * S, "agent", a), Err(4 * S));
        // Keep failing: the wait stops growing at 15 minutes.
        let mut now = t0 + 3 * S;
        let mut longest = Duration::ZERO;
        for _ in 0..40 {
            if let Err(wait) = l.attempt(now, "agent", a) {
                longest = longest.max(wait);
                now += wait;
            }
        }
        assert_eq!(longest, 15 * 60 * S);
        if let Err(wait) = l.attempt(now, "agent", a) {
            now += wait;
        }
        assert_eq!(l.attempt(now, "agent", a), Ok(()));
        assert_eq!(
            l.attempt(now, "agent", ip("192.0.2.9")),
            Err(15 * 60 * S),
            "another address does not escape a username's wait"
        );
    }

    #[test]
    fn a_success_clears_its_own_username_only() {
        let mut l = LoginLimiter::new(LoginPolicy::default());
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        for _ in 0..5 {
            l.attempt(t0, "victim", a).unwrap();
        }
        // The attacker also owns an account and logs in with it between guesses.
        l.attempt(t0, "attacker", a).unwrap();
        l.succeeded("attacker", a);
        assert!(
            l.attempt(t0, "victim", a).is_err(),
            "the other username's count stays"
        );
        // The victim's right password, once the wait is over, clears the victim's count.
        l.attempt(t0 + S, "victim", a).unwrap();
        l.succeeded("victim", a);
        assert_eq!(l.attempt(t0 + S, "victim", a), Ok(()));
    }

    #[test]
    fn one_address_trying_many_usernames_is_slowed_down() {
        let mut l = LoginLimiter::new(LoginPolicy::default());
        let t0 = Instant::now();
        for i in 0..20 {
            assert_eq!(
                l.attempt(t0, &format!("user{i}"), ip("2001:db8::1")),
                Ok(())
            );
        }
        assert_eq!(
            l.attempt(t0, "user20", ip("2001:db8::2")),
            Err(S),
            "same /64"
        );
        assert_eq!(l.attempt(t0, "user20", ip("2001:db8:0:1::1")), Ok(()));
        // Successes give back their own attempt only.
        let mut l = LoginLimiter::new(LoginPolicy::default());
        for _ in 0..100 {
            l.attempt(t0, "agent", ip("192.0.2.7")).unwrap();
            l.succeeded("agent", ip("192.0.2.7"));
        }
        assert_eq!(
            l.attempt(t0, "agent", ip("192.0.2.7")),
            Ok(()),
            "an office of agents logging in is never slowed"
        );
    }

    #[test]
    fn counts_are_forgotten_after_a_quiet_hour() {
        let mut l = LoginLimiter::new(LoginPolicy::default());
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        for _ in 0..5 {
            l.attempt(t0, "agent", a).unwrap();
        }
        assert!(l.attempt(t0 + 59 * 60 * S, "agent", a).is_ok());
        assert!(l.attempt(t0 + 59 * 60 * S, "agent", a).is_err());
        let later = t0 + 59 * 60 * S + 3600 * S;
        for _ in 0..5 {
            assert_eq!(l.attempt(later, "agent", a), Ok(()));
        }
    }

    #[test]
    fn memory_stays_bounded_and_a_flood_does_not_free_an_attacked_username() {
        let mut l = LoginLimiter::new(LoginPolicy {
            max_entries: 100,
            ..LoginPolicy::default()
        });
        let t0 = Instant::now();
        for _ in 0..5 {
            l.attempt(t0, "victim", ip("192.0.2.1")).unwrap();
        }
        for i in 0..5000u32 {
            let _ = l.attempt(
                t0,
                &format!("guess{i}"),
                IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i)),
            );
        }
        let (users, addrs) = l.tracked();
        assert!(users <= 100 && addrs <= 100, "tracked {users} and {addrs}");
        assert_eq!(
            l.attempt(t0, "victim", ip("198.51.100.7")),
            Err(S),
            "still counted"
        );
    }
}
