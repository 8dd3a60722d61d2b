//! The RTP port pool shared by the call tasks: [`sip::ports::PortPool`] (which numbers, in what
//! order) behind a mutex, handing out [`PortLease`]s that give their port back when dropped.
//!
//! A port another process already holds is handed back with [`PortLease::taken_elsewhere`]: it
//! rests like any released port and the driver asks again (bounded by
//! [`SharedPortPool::capacity`] attempts).

use std::sync::{Arc, Mutex, MutexGuard};

use sip::ports::{PortError, PortPool};
use sip::random::RandomKey;

/// A pool shared by the call tasks; leases give their port back when dropped.
#[derive(Debug, Clone)]
pub struct SharedPortPool(Arc<Mutex<PortPool>>);

impl SharedPortPool {
    /// See [`PortPool::new`].
    pub fn new(low: u16, high: u16, key: &RandomKey) -> Result<Self, PortError> {
        Ok(SharedPortPool(Arc::new(Mutex::new(PortPool::new(
            low, high, key,
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
        // A panic while holding this lock cannot leave the pool inconsistent (every `PortPool`
        // method updates `free` and `in_use` without calls that can panic in between).
        crate::sync::lock(&self.0)
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

    /// Binding failed because another process holds this port: give it back (it rests like any
    /// released port) so the driver can allocate another one.
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

    fn key(byte: u8) -> RandomKey {
        RandomKey::from_bytes([byte; 32])
    }

    #[test]
    fn leases_release_on_drop_and_skip_taken_ports() {
        let pool = SharedPortPool::new(30000, 30005, &key(3)).expect("range");
        let a = pool.allocate().expect("free");
        assert_eq!(a.rtcp_port(), a.rtp_port() + 1);
        let b = pool.allocate().expect("free");
        let c = pool.allocate().expect("free");
        assert!(pool.allocate().is_err());
        let b_port = b.rtp_port();
        drop(b);
        assert_eq!(pool.available(), 1);
        // The driver could not bind it: hand it back; the next try gets it again only when free.
        let again = pool.allocate().expect("the freed one");
        assert_eq!(again.rtp_port(), b_port);
        again.taken_elsewhere();
        assert_eq!(pool.available(), 1);
        drop(c);
        assert_eq!(pool.available(), 2);
        drop(a);
        assert_eq!(pool.available(), 3);
    }

    #[test]
    fn concurrent_leases_never_share_a_port() {
        let pool = SharedPortPool::new(40000, 40999, &key(4)).expect("range");
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
