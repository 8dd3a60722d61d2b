//! Who may open another TCP or TLS connection (issue 11, "Facing the internet"): a budget of all
//! connections ([`StreamLimits::max_connections`](super::StreamLimits)) and a smaller one per
//! remote address ([`StreamLimits::max_connections_per_address`](super::StreamLimits)), so one
//! address holding connections open without a word (a slowloris) cannot use up the budget and lock
//! out the agents' phones. Accepted and outgoing connections count alike.
//!
//! The trunks are exempt from the per-address budget: a trunk carries every citizen's call, so only
//! the total bounds it. An IPv6 remote counts by its /64 (one site, as one NAT address is for
//! IPv4: whoever holds a /64 has 2^64 addresses to spread over); an IPv4-mapped IPv6 address counts
//! as its IPv4 address.
//!
//! Sans-IO: plain counting; `now` comes in only to rate-limit the warning about refusals. The
//! socket tasks share one [`Admission`] behind a lock and give every [`Ticket`] back when their
//! connection ends.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

/// At most one warning about refused connections per this long; the refusals in between are
/// counted into the next one.
pub const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// The connection budget: how many are open, in all and per address.
#[derive(Debug)]
pub struct Admission {
    max_total: usize,
    max_per_address: usize,
    trunks: Vec<ipnet::IpNet>,
    total: usize,
    /// Open connections per address; an address with none has no entry, so this never holds more
    /// entries than there are connections.
    per_address: HashMap<AddressKey, usize>,
    /// Refusals not yet reported in a warning.
    unreported: u64,
    last_warning: Option<Instant>,
}

/// Which budget a refused connection ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// All connections together.
    Total,
    /// The connections of its remote address.
    PerAddress,
}

impl Limit {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Total => "total",
            Limit::PerAddress => "per_address",
        }
    }
}

/// A refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub limit: Limit,
    /// `Some(n)` when a warning is due now: `n` connections were refused since the last one (this
    /// one included). `None`: stay quiet, a warning went out less than [`WARN_INTERVAL`] ago.
    pub warn: Option<u64>,
}

/// One admitted connection's place in the budget; hand it back to [`Admission::release`] when the
/// connection ends.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a ticket that is not released keeps its place in the budget forever"]
pub struct Ticket {
    /// `None` for a trunk, which only counts in the total.
    key: Option<AddressKey>,
}

/// What the per-address budget counts by: an IPv4 address, or an IPv6 address's /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum AddressKey {
    V4(Ipv4Addr),
    V6Prefix(u64),
}

impl AddressKey {
    fn of(ip: IpAddr) -> AddressKey {
        match ip.to_canonical() {
            IpAddr::V4(v4) => AddressKey::V4(v4),
            IpAddr::V6(v6) => AddressKey::V6Prefix((v6.to_bits() >> 64) as u64),
        }
    }
}

impl Ticket {
    /// Whether the connection is a trunk's (exempt from the per-address budget).
    pub fn is_trunk(&self) -> bool {
        self.key.is_none()
    }
}

impl Admission {
    /// A budget of `max_total` connections, `max_per_address` of them from one address (except
    /// from `trunks`).
    pub fn new(max_total: usize, max_per_address: usize, trunks: Vec<ipnet::IpNet>) -> Self {
        Admission {
            max_total,
            max_per_address,
            trunks,
            total: 0,
            per_address: HashMap::new(),
            unreported: 0,
            last_warning: None,
        }
    }

    /// Takes a place for a connection with `remote`, or says which budget is spent.
    pub fn admit(&mut self, now: Instant, remote: IpAddr) -> Result<Ticket, Refused> {
        let key =
            (!crate::sip_driver::in_trunks(&self.trunks, remote)).then(|| AddressKey::of(remote));
        let limit = if self.total >= self.max_total {
            Some(Limit::Total)
        } else if key.is_some_and(|k| self.open_at(k) >= self.max_per_address) {
            Some(Limit::PerAddress)
        } else {
            None
        };
        if let Some(limit) = limit {
            return Err(Refused {
                limit,
                warn: self.refused(now),
            });
        }
        self.total += 1;
        if let Some(k) = key {
            *self.per_address.entry(k).or_insert(0) += 1;
        }
        Ok(Ticket { key })
    }

    /// Gives back the place of a connection that ended.
    pub fn release(&mut self, ticket: Ticket) {
        self.total = self.total.saturating_sub(1);
        if let Some(k) = ticket.key {
            if let Some(n) = self.per_address.get_mut(&k) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.per_address.remove(&k);
                }
            }
        }
    }

    /// Connections open now, in all.
    pub fn open(&self) -> usize {
        self.total
    }

    /// Connections open now that count against `remote`'s per-address budget (none for a trunk).
    pub fn open_from(&self, remote: IpAddr) -> usize {
        if crate::sip_driver::in_trunks(&self.trunks, remote) {
            return 0;
        }
        self.open_at(AddressKey::of(remote))
    }

    fn open_at(&self, key: AddressKey) -> usize {
        self.per_address.get(&key).copied().unwrap_or(0)
    }

    /// Counts a refusal; whether a warning is due (see [`Refused::warn`]).
    fn refused(&mut self, now: Instant) -> Option<u64> {
        self.unreported += 1;
        let due = self
            .last_warning
            .is_none_or(|last| now.saturating_duration_since(last) >= WARN_INTERVAL);
        if !due {
            return None;
        }
        self.last_warning = Some(now);
        Some(std::mem::take(&mut self.unreported))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_address_gets_its_share_and_others_still_get_in() {
        let now = Instant::now();
        let mut a = Admission::new(10, 3, Vec::new());
        let mut tickets: Vec<Ticket> = (0..3)
            .map(|_| a.admit(now, ip("203.0.113.7")).unwrap())
            .collect();
        let refused = a.admit(now, ip("203.0.113.7")).unwrap_err();
        assert_eq!(refused.limit, Limit::PerAddress);
        assert_eq!(a.open_from(ip("203.0.113.7")), 3);
        tickets.push(a.admit(now, ip("198.51.100.1")).expect("another address"));
        assert_eq!(a.open(), 4);

        let first = tickets.remove(0);
        a.release(first);
        tickets.push(
            a.admit(now, ip("203.0.113.7"))
                .expect("a place given back is free again"),
        );
        assert_eq!(a.open_from(ip("203.0.113.7")), 3);
    }

    #[test]
    fn the_total_bounds_everyone_trunks_included() {
        let now = Instant::now();
        let trunk: ipnet::IpNet = "192.0.2.0/29".parse().unwrap();
        let mut a = Admission::new(4, 2, vec![trunk]);
        let mut tickets = Vec::new();
        for i in 0..4 {
            tickets.push(
                a.admit(now, ip(&format!("198.51.100.{i}")))
                    .expect("under the total"),
            );
        }
        for remote in ["198.51.100.9", "192.0.2.1"] {
            let refused = a.admit(now, ip(remote)).unwrap_err();
            assert_eq!(refused.limit, Limit::Total, "{remote}");
        }
        for t in tickets {
            a.release(t);
        }
        assert_eq!(a.open(), 0);
        assert!(
            a.per_address.is_empty(),
            "no entry outlives its connections"
        );
    }

    #[test]
    fn a_trunk_is_not_held_to_the_per_address_share() {
        let now = Instant::now();
        let trunk: ipnet::IpNet = "192.0.2.10/32".parse().unwrap();
        let mut a = Admission::new(100, 2, vec![trunk]);
        let tickets: Vec<Ticket> = (0..50)
            .map(|_| a.admit(now, ip("192.0.2.10")).expect("trunk"))
            .collect();
        assert_eq!(a.open(), 50);
        assert_eq!(a.open_from(ip("192.0.2.10")), 0);
        // The same trunk written as an IPv4-mapped IPv6 address is the trunk too.
        let mapped = a.admit(now, ip("::ffff:192.0.2.10")).expect("mapped trunk");
        // Its neighbour is not a trunk.
        let _t1 = a.admit(now, ip("192.0.2.11")).unwrap();
        let _t2 = a.admit(now, ip("192.0.2.11")).unwrap();
        assert_eq!(
            a.admit(now, ip("192.0.2.11")).unwrap_err().limit,
            Limit::PerAddress
        );
        a.release(mapped);
        for t in tickets {
            a.release(t);
        }
        assert_eq!(a.open(), 2);
    }

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
        let now = Instant::now();
        let mut a = Admission::new(100, 2, Vec::new());
        let _t1 = a.admit(now, ip("2001:db8:1:2::1")).unwrap();
        let _t2 = a.admit(now, ip("2001:db8:1:2:ffff::9")).unwrap();
        assert_eq!(
            a.admit(now, ip("2001:db8:1:2:abcd::5")).unwrap_err().limit,
            Limit::PerAddress,
            "the same /64"
        );
        let _t3 = a
            .admit(now, ip("2001:db8:1:3::1"))
            .expect("the next /64 is another site");

        let _t4 = a.admit(now, ip("198.51.100.5")).unwrap();
        let _t5 = a.admit(now, ip("::ffff:198.51.100.5")).unwrap();
        assert_eq!(
            a.admit(now, ip("198.51.100.5")).unwrap_err().limit,
            Limit::PerAddress
        );
    }

    #[test]
    fn refusals_warn_at_most_once_per_interval_with_the_count() {
        let t0 = Instant::now();
        let mut a = Admission::new(1, 1, Vec::new());
        let _held = a.admit(t0, ip("198.51.100.1")).unwrap();
        let warn = |a: &mut Admission, at: Duration| {
            a.admit(t0 + at, ip("198.51.100.2")).unwrap_err().warn
        };
        assert_eq!(
            warn(&mut a, Duration::ZERO),
            Some(1),
            "the first refusal warns"
        );
        assert_eq!(warn(&mut a, Duration::from_secs(1)), None);
        assert_eq!(warn(&mut a, Duration::from_secs(9)), None);
        assert_eq!(
            warn(&mut a, WARN_INTERVAL),
            Some(3),
            "the next warning counts the quiet ones"
        );
        assert_eq!(warn(&mut a, WARN_INTERVAL + Duration::from_secs(1)), None);
    }
}
