//! RTP port pool: hands out even RTP port numbers from a configured range (RFC 3550 §11: RTP on an
//! even port, RTCP on the odd port above it, which stays reserved with it).
//!
//! Owns only numbers — binding sockets is the driver's job. Ports are handed out in an
//! unpredictable order: each allocation picks at random ([`crate::random::Prf`], keyed by the
//! caller) among the free ports, so nobody can tell from one call's port which port the next call
//! gets and aim RTP at it before the call starts. A released port first *rests* in a FIFO of
//! recently released ports (up to a quarter of the pool) and only then becomes pickable again, so
//! stray packets of an old call are unlikely to reach a new one; when nothing else is free the
//! port that rested longest is used. Allocation and release are O(1) (a random swap-remove, and an
//! in-use bitmap that rejects double and foreign releases). A port another process already holds
//! is released like any other: it rests, and the driver asks again (bounded by
//! [`PortPool::capacity`] attempts). The application shares one pool between its call tasks
//! behind a mutex (`src/rtp_ports.rs`, leases released on drop); this type is single-threaded.

use std::collections::VecDeque;

use crate::random::{Prf, RandomKey};

/// Port pool errors.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PortError {
    /// The range holds no even/odd pair (e.g. `LOW > HIGH`, or a single port).
    #[error("RTP port range {low}-{high} holds no even RTP/RTCP pair")]
    EmptyRange {
        /// Configured low end.
        low: u16,
        /// Configured high end.
        high: u16,
    },
    /// Every pair is in use.
    #[error("all {capacity} RTP ports are in use")]
    Exhausted {
        /// How many pairs the pool has.
        capacity: usize,
    },
}

/// The pool itself (single-threaded; the application wraps it in a mutex to share it).
#[derive(Debug)]
pub struct PortPool {
    first: u16,
    /// Free ports allocation picks from at random.
    free: Vec<u16>,
    /// Recently released ports, oldest first, resting before they join `free`.
    resting: VecDeque<u16>,
    in_use: Vec<bool>,
    pick: Prf,
}

impl PortPool {
    /// A pool of the even ports `p` with `low <= p` and `p + 1 <= high`, handed out in an order
    /// drawn from `key` (draw it from the OS; a test may fix it).
    pub fn new(low: u16, high: u16, key: &RandomKey) -> Result<Self, PortError> {
        let first = low.checked_add(low % 2);
        let ports: Vec<u16> = match first {
            Some(first) => (u32::from(first)..u32::from(high))
                .step_by(2)
                // The range bounds keep every value below u16::MAX.
                .map(|p| p as u16)
                .collect(),
            None => Vec::new(),
        };
        let Some(&first) = ports.first() else {
            return Err(PortError::EmptyRange { low, high });
        };
        Ok(PortPool {
            first,
            in_use: vec![false; ports.len()],
            free: ports,
            resting: VecDeque::new(),
            pick: Prf::new(key, b"rtp port pool"),
        })
    }

    /// Number of RTP/RTCP pairs.
    pub fn capacity(&self) -> usize {
        self.in_use.len()
    }

    /// Pairs currently free.
    pub fn available(&self) -> usize {
        self.free.len() + self.resting.len()
    }

    /// Takes a free even RTP port (RTCP is `port + 1`): one picked at random among the rested free
    /// ports, else the one released longest ago.
    pub fn allocate(&mut self) -> Result<u16, PortError> {
        let port = if self.free.is_empty() {
            self.resting.pop_front()
        } else {
            // `below` returns less than `free.len()`, which fits in usize.
            let index = self.pick.below(self.free.len() as u64) as usize;
            Some(self.free.swap_remove(index))
        };
        let port = port.ok_or(PortError::Exhausted {
            capacity: self.capacity(),
        })?;
        if let Some(slot) = self.slot(port) {
            *slot = true;
        }
        Ok(port)
    }

    /// Returns a port. `false` (and no change) for a port that is not ours or not allocated.
    pub fn release(&mut self, port: u16) -> bool {
        match self.slot(port) {
            Some(slot) if *slot => {
                *slot = false;
                self.resting.push_back(port);
                let rest = self.capacity() / 4;
                while self.resting.len() > rest {
                    match self.resting.pop_front() {
                        Some(rested) => self.free.push(rested),
                        None => break,
                    }
                }
                true
            }
            _ => false,
        }
    }

    fn slot(&mut self, port: u16) -> Option<&mut bool> {
        if port < self.first || !port.is_multiple_of(2) {
            return None;
        }
        self.in_use.get_mut(usize::from((port - self.first) / 2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn key(byte: u8) -> RandomKey {
        RandomKey::from_bytes([byte; 32])
    }

    fn pool(low: u16, high: u16) -> PortPool {
        PortPool::new(low, high, &key(1)).expect("range")
    }

    #[test]
    fn hands_out_every_even_port_within_the_range_until_exhausted() {
        let mut pool = pool(10001, 10010);
        assert_eq!(
            pool.capacity(),
            4,
            "10002, 10004, 10006, 10008 (10010 has no RTCP port)"
        );
        let mut ports: Vec<u16> = (0..4).map(|_| pool.allocate().expect("free")).collect();
        ports.sort_unstable();
        assert_eq!(ports, vec![10002, 10004, 10006, 10008]);
        assert_eq!(pool.allocate(), Err(PortError::Exhausted { capacity: 4 }));
    }

    #[test]
    fn consecutive_allocations_are_not_sequential_yet_every_port_is_used_and_freed() {
        let mut pool = pool(10000, 19999);
        let capacity = pool.capacity();
        assert_eq!(capacity, 5000);
        let first: Vec<u16> = (0..50).map(|_| pool.allocate().expect("free")).collect();
        let neighbours = first
            .windows(2)
            .filter(|w| w[1].abs_diff(w[0]) == 2)
            .count();
        assert!(
            neighbours <= 2,
            "{neighbours} of 49 steps went to the next port: {first:?}"
        );
        let spread = first.iter().max().unwrap_or(&0) - first.iter().min().unwrap_or(&0);
        assert!(
            spread > 5000,
            "50 picks span only {spread} ports: {first:?}"
        );
        // Every port is still handed out exactly once…
        let mut all: Vec<u16> = first.clone();
        all.extend((50..capacity).map(|_| pool.allocate().expect("free")));
        let unique: HashSet<u16> = all.iter().copied().collect();
        assert_eq!(unique.len(), capacity);
        assert!(all.iter().all(|p| (10000..19999).contains(p) && p % 2 == 0));
        assert!(pool.allocate().is_err());
        // …and every one comes back, once.
        for &p in &all {
            assert!(pool.release(p));
            assert!(!pool.release(p), "double release is refused");
        }
        assert_eq!(pool.available(), capacity);
        let again: HashSet<u16> = (0..capacity)
            .map(|_| pool.allocate().expect("free"))
            .collect();
        assert_eq!(again, unique);
    }

    #[test]
    fn the_order_depends_on_the_key_only() {
        let order = |k: u8| {
            let mut pool = PortPool::new(20000, 29999, &key(k)).expect("range");
            (0..20)
                .map(|_| pool.allocate().expect("free"))
                .collect::<Vec<u16>>()
        };
        assert_eq!(order(1), order(1), "a fixed key in tests repeats");
        assert_ne!(order(1), order(2));
    }

    #[test]
    fn released_ports_rest_before_reuse_and_foreign_releases_are_refused() {
        let mut pool = pool(20000, 20015);
        assert_eq!(pool.capacity(), 8);
        let a = pool.allocate().expect("free");
        assert!(pool.release(a));
        assert!(!pool.release(a), "double release is refused");
        assert!(!pool.release(a + 1), "odd port is not ours");
        assert!(!pool.release(30000), "foreign port is not ours");
        // While seven other ports are free, the one just released is not handed out…
        let others: Vec<u16> = (0..7).map(|_| pool.allocate().expect("free")).collect();
        assert!(!others.contains(&a), "{a} came back at once: {others:?}");
        // …and when nothing else is left, it is.
        assert_eq!(pool.allocate().expect("the rested one"), a);
        assert!(pool.allocate().is_err());
    }

    #[test]
    fn empty_ranges_are_errors() {
        let k = key(1);
        assert!(PortPool::new(5000, 5000, &k).is_err());
        assert!(PortPool::new(5001, 5002, &k).is_err());
        assert!(PortPool::new(6000, 5000, &k).is_err());
        assert_eq!(PortPool::new(65534, 65535, &k).expect("pair").capacity(), 1);
        assert!(PortPool::new(65535, 65535, &k).is_err());
    }
}
