//! The application's one poison-tolerant lock.
//!
//! A `std::sync::Mutex` is poisoned when a thread panics while holding it. Every mutex in this
//! crate guards plain tables whose critical sections only insert, look up, count or remove (no
//! call that can panic halfway through an update), so the data behind a poisoned lock is still
//! consistent: serve it rather than turn one panic into a panic in every later caller.
//! A mutex guarding an invariant a panic *could* break must not use [`lock`].

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `m`, taking the guard out of a poisoned lock (see the module docs).
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_lock_still_hands_out_its_data() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let _g = m2.lock();
            panic!("poison it");
        })
        .join();
        assert!(m.is_poisoned());
        *lock(&m) += 1;
        assert_eq!(*lock(&m), 2);
    }
}
