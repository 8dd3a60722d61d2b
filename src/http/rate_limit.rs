//! Per-client token buckets for the public API, in bounded memory, fair under floods.
//!
//! Each client key (an IPv4 address, or the /64 of an IPv6 address, since one subscriber usually
//! holds a whole /64) gets `burst` tokens that refill at `per_second`. The client is the one
//! [`super::client_addr`] found (behind a trusted reverse proxy: the address it forwarded for).
//!
//! Memory is bounded, and no single source can make everyone wait:
//! - At most `max_clients` buckets are kept, and one *network* (an IPv4 /24, an IPv6 /48) holds at
//!   most a sixteenth of them, so a flood of addresses from one network cannot fill the table.
//! - Room is made by dropping buckets that have refilled completely: a full bucket is what a new
//!   client gets anyway, so nothing is forgotten. (At most once a second, so that a flood does not
//!   make every request scan the table.) A bucket that is not full is never dropped: dropping it
//!   would hand its client a fresh burst.
//! - A client that finds no room (the table full of busy clients, or its network at its share) is
//!   charged to one of [`OVERFLOW_SLOTS`] shared buckets, chosen by a keyed hash of its network
//!   with a key drawn at start. One address or one network flooding empties one slot: newcomers
//!   from elsewhere land in another (a 1 in 1024 chance to share it, which an attacker cannot aim
//!   at), and clients already in the table keep their own buckets.
//!
//! What no bounded table can prevent: a flood from more networks than there are slots empties
//! every slot; newcomers then wait with it, while clients already known keep their buckets.
//!
//! The limiter is per process; behind several processes each enforces its own share. It does no
//! I/O and takes `now` with every call.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;

use super::client_addr::ClientAddr;
use super::error::ApiError;

/// Shared buckets for clients that find no room of their own.
pub const OVERFLOW_SLOTS: usize = 1024;
/// One network may hold at most `max_clients / NETWORK_SHARE` buckets.
const NETWORK_SHARE: usize = 16;
/// Least time between two sweeps for full buckets.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Limits of the public API per client.
#[derive(Debug, Clone)]
pub struct RateLimit {
    /// Requests a client may make at once.
    pub burst: u32,
    /// Tokens regained per second.
    pub per_second: f64,
    /// Most clients tracked at once.
    pub max_clients: usize,
}

impl Default for RateLimit {
    /// 20 requests at once, then one every 2 s; 10 000 clients.
    fn default() -> Self {
        RateLimit {
            burst: 20,
            per_second: 0.5,
            max_clients: 10_000,
        }
    }
}

impl RateLimit {
    fn burst(&self) -> f64 {
        f64::from(self.burst.max(1))
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(limit: &RateLimit, now: Instant) -> Bucket {
        Bucket {
            tokens: limit.burst(),
            at: now,
        }
    }

    fn tokens(&self, limit: &RateLimit, now: Instant) -> f64 {
        let regained = now.saturating_duration_since(self.at).as_secs_f64() * limit.per_second;
        (self.tokens + regained).min(limit.burst())
    }

    /// Takes one token at `now`, or says how long until one is there.
    fn take(&mut self, limit: &RateLimit, now: Instant) -> Result<(), Duration> {
        let tokens = self.tokens(limit, now);
        if tokens >= 1.0 {
            *self = Bucket {
                tokens: tokens - 1.0,
                at: now,
            };
            return Ok(());
        }
        *self = Bucket { tokens, at: now };
        let wait = if limit.per_second > 0.0 {
            (1.0 - tokens) / limit.per_second
        } else {
            3600.0
        };
        Err(Duration::from_secs_f64(wait.clamp(0.0, 3600.0)))
    }
}

/// Token buckets keyed by client.
#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    table: Mutex<Table>,
    /// Keys the hash that picks a network's overflow slot.
    slot_key: RandomState,
}

#[derive(Debug)]
struct Table {
    /// By [`client_key`].
    clients: HashMap<IpAddr, Bucket>,
    /// Buckets in `clients` per [`network_key`] (no zero counts).
    networks: HashMap<IpAddr, usize>,
    /// [`OVERFLOW_SLOTS`] shared buckets, made on first use.
    overflow: Vec<Option<Bucket>>,
    /// No sweep before this.
    next_sweep: Option<Instant>,
}

/// The bucket key for an address: IPv4 as is, IPv6 by /64 (IPv4-mapped IPv6 as IPv4).
pub fn client_key(ip: IpAddr) -> IpAddr {
    prefix(ip, 32, 64)
}

/// The network an address belongs to for the share of the table and the overflow slot: IPv4 by
/// /24, IPv6 by /48 (a site's usual assignment).
pub fn network_key(ip: IpAddr) -> IpAddr {
    prefix(ip, 24, 48)
}

fn prefix(ip: IpAddr, v4_bits: u32, v6_bits: u32) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - v4_bits).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - v6_bits).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> RateLimiter {
        RateLimiter {
            limit,
            table: Mutex::new(Table {
                clients: HashMap::new(),
                networks: HashMap::new(),
                overflow: vec![None; OVERFLOW_SLOTS],
                next_sweep: None,
            }),
            slot_key: RandomState::new(),
        }
    }

    /// Take one token for `ip` at `now`, or say how long until one is available.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let limit = &self.limit;
        // Bucket updates are plain arithmetic; a poisoned lock still holds valid buckets.
        let mut table = crate::sync::lock(&self.table);
        let key = client_key(ip);
        if !table.clients.contains_key(&key) {
            let network = network_key(ip);
            let max = limit.max_clients.max(1);
            let share = (max / NETWORK_SHARE).max(1);
            let crowded = |t: &Table| {
                t.clients.len() >= max || t.networks.get(&network).is_some_and(|&n| n >= share)
            };
            if crowded(&table) {
                table.sweep(limit, now);
            }
            if crowded(&table) {
                let slot = self.overflow_slot(network);
                return table.overflow[slot]
                    .get_or_insert_with(|| Bucket::full(limit, now))
                    .take(limit, now);
            }
            *table.networks.entry(network).or_insert(0) += 1;
        }
        table
            .clients
            .entry(key)
            .or_insert_with(|| Bucket::full(limit, now))
            .take(limit, now)
    }

    /// Whether [`check`](Self::check) would give `ip` a token at `now`, without taking one: for
    /// limits that charge only failures (a wrong API key), asked before each attempt. Without a
    /// bucket of its own a client has a full one, unless the table is crowded and its network's
    /// overflow slot is empty (no sweep is made here, so under a flood this errs on refusing).
    pub fn allows(&self, ip: IpAddr, now: Instant) -> bool {
        let limit = &self.limit;
        // Read only; a poisoned lock still holds valid buckets.
        let table = crate::sync::lock(&self.table);
        if let Some(bucket) = table.clients.get(&client_key(ip)) {
            return bucket.tokens(limit, now) >= 1.0;
        }
        let network = network_key(ip);
        let max = limit.max_clients.max(1);
        let share = (max / NETWORK_SHARE).max(1);
        let crowded =
            table.clients.len() >= max || table.networks.get(&network).is_some_and(|&n| n >= share);
        !crowded
            || table.overflow[self.overflow_slot(network)]
                .is_none_or(|b| b.tokens(limit, now) >= 1.0)
    }

    /// Number of clients with a bucket of their own (tests check the memory bound with it).
    pub fn tracked(&self) -> usize {
        crate::sync::lock(&self.table).clients.len()
    }

    /// The overflow slot of `network`.
    fn overflow_slot(&self, network: IpAddr) -> usize {
        // The remainder is below OVERFLOW_SLOTS, so it fits a usize.
        (self.slot_key.hash_one(network) % OVERFLOW_SLOTS as u64) as usize
    }
}

impl Table {
    /// Drops every bucket that has refilled completely, unless the last sweep was less than
    /// [`SWEEP_EVERY`] ago.
    fn sweep(&mut self, limit: &RateLimit, now: Instant) {
        if self.next_sweep.is_some_and(|next| now < next) {
            return;
        }
        self.next_sweep = Some(now + SWEEP_EVERY);
        let burst = limit.burst();
        let networks = &mut self.networks;
        self.clients.retain(|key, bucket| {
            let keep = bucket.tokens(limit, now) < burst;
            if !keep {
                let network = network_key(*key);
                if let Some(n) = networks.get_mut(&network) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        networks.remove(&network);
                    }
                }
            }
            keep
        });
        for slot in &mut self.overflow {
            if slot.is_some_and(|b| b.tokens(limit, now) >= burst) {
                *slot = None;
            }
        }
    }
}

/// axum middleware: refuse with 429 when the client's bucket is empty.
pub async fn limit(
    State(limiter): State<Arc<RateLimiter>>,
    request: Request,
    next: Next,
) -> Response {
    match limiter.check(ClientAddr::of(request.extensions()), Instant::now()) {
        Ok(()) => next.run(request).await,
        Err(retry_after) => ApiError::RateLimited { retry_after }.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn limiter(burst: u32, per_second: f64, max_clients: usize) -> RateLimiter {
        RateLimiter::new(RateLimit {
            burst,
            per_second,
            max_clients,
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn v4(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(n))
    }

    /// A client of its own /24, `n` apart from the others.
    fn far(n: u32) -> IpAddr {
        v4(0x0a00_0000 + (n << 8))
    }

    #[test]
    fn allows_tells_without_taking() {
        let l = limiter(2, 1.0, 100);
        let now = Instant::now();
        let a = ip("192.0.2.1");
        assert!(l.allows(a, now), "a new client has a full bucket");
        assert_eq!(l.tracked(), 0, "asking makes no bucket");
        assert!(l.check(a, now).is_ok() && l.check(a, now).is_ok());
        assert!(!l.allows(a, now));
        assert!(l.allows(ip("192.0.2.2"), now), "others are not affected");
        assert!(l.allows(a, now + S), "a token came back");
    }

    /// Takes tokens for `ip` until refused; how many it got.
    fn drain(l: &RateLimiter, ip: IpAddr, now: Instant) -> usize {
        (0..10_000).take_while(|_| l.check(ip, now).is_ok()).count()
    }

    /// An address whose network's overflow slot is not `avoid`'s.
    fn other_slot(l: &RateLimiter, avoid: IpAddr, from: u32) -> IpAddr {
        let taken = l.overflow_slot(network_key(avoid));
        (from..)
            .map(far)
            .find(|&a| l.overflow_slot(network_key(a)) != taken)
            .unwrap()
    }

    #[test]
    fn burst_then_refill() {
        let l = limiter(3, 1.0, 10);
        let ip = ip("192.0.2.1");
        let t0 = Instant::now();
        assert!((0..3).all(|_| l.check(ip, t0).is_ok()));
        let wait = l.check(ip, t0).unwrap_err();
        assert!(wait > Duration::from_millis(900) && wait <= S);
        assert!(
            l.check("192.0.2.2".parse().unwrap(), t0).is_ok(),
            "another client is not affected"
        );
        assert!(l.check(ip, t0 + Duration::from_millis(1100)).is_ok());
        assert!(l.check(ip, t0 + Duration::from_millis(1100)).is_err());
    }

    #[test]
    fn ipv6_clients_are_limited_per_slash_64() {
        let l = limiter(1, 0.0, 10);
        let t0 = Instant::now();
        assert!(l.check(ip("2001:db8:1:2::1"), t0).is_ok());
        assert!(l.check(ip("2001:db8:1:2:ffff::9"), t0).is_err());
        assert!(l.check(ip("2001:db8:1:3::1"), t0).is_ok());
        assert!(l.check(ip("::ffff:192.0.2.1"), t0).is_ok());
        assert!(l.check(ip("192.0.2.1"), t0).is_err(), "IPv4-mapped is IPv4");
    }

    #[test]
    fn keys_and_networks() {
        assert_eq!(client_key(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
        assert_eq!(network_key(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1::"));
        assert_eq!(client_key(ip("192.0.2.77")), ip("192.0.2.77"));
        assert_eq!(network_key(ip("192.0.2.77")), ip("192.0.2.0"));
        assert_eq!(network_key(ip("::ffff:192.0.2.77")), ip("192.0.2.0"));
    }

    #[test]
    fn a_flood_of_addresses_keeps_memory_bounded_and_newcomers_served() {
        let l = limiter(2, 0.001, 100);
        let t0 = Instant::now();
        // 5000 addresses from 50 networks, each using its whole burst.
        for i in 0..5000u32 {
            let _ = drain(&l, v4(0x0a00_0000 + (i % 50) * 256 + i / 50), t0);
        }
        assert!(l.tracked() <= 100, "tracked {}", l.tracked());
        // The flood emptied at most 50 of the 1024 overflow slots: citizens arriving now are served
        // from the others (about 95 % of them; fewer than 75 % is beyond chance).
        let served = (0..200u32)
            .filter(|i| l.check(v4(0xc612_0000 + (i << 8)), t0).is_ok())
            .count();
        assert!(served >= 150, "only {served} of 200 newcomers served");
    }

    #[test]
    fn one_address_flooding_a_full_table_empties_only_its_own_slot() {
        let l = limiter(5, 0.001, 64);
        let t0 = Instant::now();
        // The table is full of citizens in the middle of their requests.
        for i in 0..64 {
            assert!(l.check(far(i), t0).is_ok());
        }
        assert_eq!(l.tracked(), 64);
        // A flooder arrives: no room, so it gets an overflow slot, and empties it.
        let flooder = ip("203.0.113.66");
        assert_eq!(drain(&l, flooder, t0), 5);
        assert!(l.check(flooder, t0 + 10 * S).is_err());
        // A citizen from another network is served all the same, and the known ones still are.
        let newcomer = other_slot(&l, flooder, 1000);
        assert_eq!(drain(&l, newcomer, t0 + 10 * S), 5);
        assert!(l.check(far(3), t0 + 10 * S).is_ok());
    }

    #[test]
    fn many_addresses_from_one_network_take_only_their_share() {
        let l = limiter(3, 0.001, 160);
        let t0 = Instant::now();
        // Thousands of /64s of one /48: each gets a burst until the network holds its share (10),
        // then they all share one overflow bucket.
        let attacker =
            |n: u32| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xbad, n as u16, 0, 0, 0, 1));
        let granted: usize = (0..5000).map(|n| drain(&l, attacker(n), t0)).sum();
        assert_eq!(granted, 10 * 3 + 3, "ten own buckets and one shared one");
        assert_eq!(l.tracked(), 10);
        // Citizens from elsewhere still get buckets of their own.
        for i in 0..100 {
            assert_eq!(drain(&l, far(i), t0), 3, "citizen {i}");
        }
        assert_eq!(l.tracked(), 110);
        // Same for an IPv4 /24 (whose overflow slot may, by chance, be the one already emptied).
        let slot = |ip| l.overflow_slot(network_key(ip));
        let shared = slot(v4(0xcb00_7100)) == slot(attacker(0));
        let granted: usize = (0..256).map(|n| drain(&l, v4(0xcb00_7100 + n), t0)).sum();
        assert_eq!(granted, 10 * 3 + if shared { 0 } else { 3 });
    }

    #[test]
    fn refilled_buckets_make_room_and_busy_ones_are_kept() {
        let l = limiter(2, 1.0, 4);
        let t0 = Instant::now();
        // Four clients, one of which keeps using its bucket.
        for i in 0..4 {
            assert!(l.check(far(i), t0).is_ok());
        }
        let busy = far(0);
        assert!(l.check(busy, t0).is_ok());
        assert!(l.check(busy, t0).is_err(), "emptied");
        // A newcomer finds the table full of buckets that have not refilled: it is served from its
        // overflow slot, and gets no bucket of its own.
        assert!(l.check(far(10), t0).is_ok());
        assert_eq!(l.tracked(), 4);
        // 1.5 s later the idle three have refilled, the busy one has not (one token short).
        let t1 = t0 + 1500 * Duration::from_millis(1);
        assert!(l.check(busy, t1).is_ok());
        assert!(l.check(far(11), t1).is_ok());
        assert_eq!(
            l.tracked(),
            2,
            "the idle ones made room, the busy one stays"
        );
        assert!(l.check(busy, t1).is_err(), "and keeps its count");
    }

    #[test]
    fn sweeps_are_at_most_once_a_second() {
        let l = limiter(1, 100.0, 2);
        let t0 = Instant::now();
        assert!(l.check(far(0), t0).is_ok());
        assert!(l.check(far(1), t0).is_ok());
        // Table full and nothing refilled: the sweep finds nothing.
        assert!(l.check(far(2), t0).is_ok());
        assert_eq!(l.tracked(), 2);
        // Everything has refilled 0.5 s later, but the next sweep is not due yet.
        let t1 = t0 + S / 2;
        assert!(l.check(far(3), t1).is_ok());
        assert_eq!(l.tracked(), 2);
        assert!(!l.table.lock().unwrap().clients.contains_key(&far(3)));
        assert!(l.check(far(4), t0 + S).is_ok());
        assert!(l.table.lock().unwrap().clients.contains_key(&far(4)));
    }
}
