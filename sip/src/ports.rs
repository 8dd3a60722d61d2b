//! RTP port pool: hands out even RTP port numbers from a configured range (RFC 3550 §11: RTP on an
//! even port, RTCP on the odd port above it, which stays reserved with it).
//!
//! Owns only numbers — binding sockets is the driver's job. Allocation is O(1) (a FIFO of free ports,
//! so a just-released port is reused last and stray packets of an old call are unlikely to reach a new
//! one) and release is O(1) (an in-use bitmap rejects double and foreign releases). A port another
//! process already holds is handed back with [`PortLease::taken_elsewhere`]: it goes to the back of
//! the queue and the driver asks again (bounded by [`SharedPortPool::capacity`] attempts).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

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

/// The pool itself (single-threaded); see [`SharedPortPool`] for leases released on drop.
#[derive(Debug)]
pub struct PortPool {
    first: u16,
    free: VecDeque<u16>,
    in_use: Vec<bool>,
}

impl PortPool {
    /// A pool of the even ports `p` with `low <= p` and `p + 1 <= high`.
    pub fn new(low: u16, high: u16) -> Result<Self, PortError> {
        let first = low.checked_add(low % 2);
        let ports: VecDeque<u16> = match first {
            Some(first) => (u32::from(first)..u32::from(high))
                .step_by(2)
                // The range bounds keep every value below u16::MAX.
                .map(|p| p as u16)
                .collect(),
            None => VecDeque::new(),
        };
        let Some(&first) = ports.front() else {
            return Err(PortError::EmptyRange { low, high });
        };
        Ok(PortPool {
            first,
            in_use: vec![false; ports.len()],
            free: ports,
        })
    }

    /// Number of RTP/RTCP pairs.
    pub fn capacity(&self) -> usize {
        self.in_use.len()
    }

    /// Pairs currently free.
    pub fn available(&self) -> usize {
        self.free.len()
    }

    /// Takes a free even RTP port (RTCP is `port + 1`).
    pub fn allocate(&mut self) -> Result<u16, PortError> {
        let port = self.free.pop_front().ok_or(PortError::Exhausted {
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
                self.free.push_back(port);
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

/// A pool shared by the call tasks; leases give their port back when dropped.
#[derive(Debug, Clone)]
pub struct SharedPortPool(Arc<Mutex<PortPool>>);

impl SharedPortPool {
    /// See [`PortPool::new`].
    pub fn new(low: u16, high: u16) -> Result<Self, PortError> {
        Ok(SharedPortPool(Arc::new(Mutex::new(PortPool::new(
            low, high,
        )?))))
    }

    /// Leases a port until the lease is dropped.
    pub fn allocate(&self) -> Result<PortLease, PortError> {
        let port = self.lock().allocate()?;
        Ok(PortLease {
            pool: self.clone(),
            port,
        })
    }

    /// Number of pairs (the upper bound of allocation attempts when skipping taken ports).
    pub fn capacity(&self) -> usize {
        self.lock().capacity()
    }

    /// Pairs currently free.
    pub fn available(&self) -> usize {
        self.lock().available()
    }

    fn lock(&self) -> MutexGuard<'_, PortPool> {
        // A panic while holding this lock cannot leave the pool inconsistent (every method updates
        // `free` and `in_use` without calls that can panic in between), so a poisoned lock is usable.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// An allocated even RTP port; RTCP is `rtp_port() + 1`. Released on drop.
#[derive(Debug)]
pub struct PortLease {
    pool: SharedPortPool,
    port: u16,
}

impl PortLease {
    /// The RTP port.
    pub fn rtp_port(&self) -> u16 {
        self.port
    }

    /// The RTCP port (reserved with the RTP port).
    pub fn rtcp_port(&self) -> u16 {
        self.port + 1
    }

    /// Binding failed because another process holds this port: give it back (to the back of the
    /// queue) so the driver can allocate the next one.
    pub fn taken_elsewhere(self) {
        drop(self);
    }
}

impl Drop for PortLease {
    fn drop(&mut self) {
        self.pool.lock().release(self.port);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn hands_out_even_ports_within_the_range_until_exhausted() {
        let mut pool = PortPool::new(10001, 10010).expect("range");
        assert_eq!(
            pool.capacity(),
            4,
            "10002, 10004, 10006, 10008 (10010 has no RTCP port)"
        );
        let ports: Vec<u16> = (0..4).map(|_| pool.allocate().expect("free")).collect();
        assert_eq!(ports, vec![10002, 10004, 10006, 10008]);
        assert_eq!(pool.allocate(), Err(PortError::Exhausted { capacity: 4 }));
    }

    #[test]
    fn released_ports_are_reused_last_and_never_twice() {
        let mut pool = PortPool::new(20000, 20007).expect("range");
        let a = pool.allocate().expect("free");
        let b = pool.allocate().expect("free");
        assert!(pool.release(a));
        assert!(!pool.release(a), "double release is refused");
        assert!(!pool.release(a + 1), "odd port is not ours");
        assert!(!pool.release(30000), "foreign port is not ours");
        let c = pool.allocate().expect("free");
        let d = pool.allocate().expect("free");
        assert_eq!((c, d), (20004, 20006), "fresh ports first");
        assert_eq!(pool.allocate().expect("released one"), a);
        assert_ne!(b, a);
        assert!(pool.allocate().is_err());
    }

    #[test]
    fn empty_ranges_are_errors() {
        assert!(PortPool::new(5000, 5000).is_err());
        assert!(PortPool::new(5001, 5002).is_err());
        assert!(PortPool::new(6000, 5000).is_err());
        assert_eq!(PortPool::new(65534, 65535).expect("pair").capacity(), 1);
        assert!(PortPool::new(65535, 65535).is_err());
    }

    #[test]
    fn leases_release_on_drop_and_skip_taken_ports() {
        let pool = SharedPortPool::new(30000, 30005).expect("range");
        let a = pool.allocate().expect("free");
        assert_eq!((a.rtp_port(), a.rtcp_port()), (30000, 30001));
        let b = pool.allocate().expect("free");
        let c = pool.allocate().expect("free");
        assert!(pool.allocate().is_err());
        drop(b);
        assert_eq!(pool.available(), 1);
        // The driver could not bind 30002: hand it back, the next try gets another one when free.
        let again = pool.allocate().expect("30002");
        assert_eq!(again.rtp_port(), 30002);
        again.taken_elsewhere();
        drop(c);
        assert_eq!(
            pool.allocate().expect("free").rtp_port(),
            30002,
            "FIFO order"
        );
        drop(a);
    }

    #[test]
    fn concurrent_leases_never_share_a_port() {
        let pool = SharedPortPool::new(40000, 40999).expect("range");
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let pool = pool.clone();
                std::thread::spawn(move || {
                    (0..100)
                        .map(|_| pool.allocate().expect("enough ports"))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let leases: Vec<PortLease> = handles
            .into_iter()
            .flat_map(|h| h.join().expect("no panic"))
            .collect();
        let unique: HashSet<u16> = leases.iter().map(PortLease::rtp_port).collect();
        assert_eq!(unique.len(), 400);
        drop(leases);
        assert_eq!(pool.available(), 500);
    }
}
