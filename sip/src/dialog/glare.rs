//! re-INVITE glare (RFC 3261 §14.1): the 491 answer and the UAC's randomized retry delay.
//!
//! A UAS that receives a re-INVITE while its own re-INVITE on the same dialog is pending answers 491
//! Request Pending. The UAC that receives a 491 waits a random time before retrying: if it owns the
//! dialog's Call-ID (it sent the initial INVITE) 2.1–4 s in 10 ms units, otherwise 0–2 s in 10 ms
//! units. The random number is an input so the choice is reproducible in tests.

use std::time::Duration;

/// The delay before retrying a re-INVITE that got a 491. `random` may be any value; only its
/// remainder is used.
pub fn retry_delay(owns_call_id: bool, random: u32) -> Duration {
    let steps = if owns_call_id {
        // 2.1 s ..= 4.0 s in 10 ms steps: 210..=400.
        210 + random % 191
    } else {
        // 0 ..= 2.0 s in 10 ms steps.
        random % 201
    };
    Duration::from_millis(u64::from(steps) * 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_id_owner_waits_between_2_1_and_4_seconds() {
        assert_eq!(retry_delay(true, 0), Duration::from_millis(2100));
        assert_eq!(retry_delay(true, 190), Duration::from_millis(4000));
        assert_eq!(retry_delay(true, 191), Duration::from_millis(2100));
        for r in [1u32, 77, 12345, u32::MAX] {
            let d = retry_delay(true, r);
            assert!(d >= Duration::from_millis(2100) && d <= Duration::from_secs(4));
        }
    }

    #[test]
    fn other_side_waits_at_most_2_seconds() {
        assert_eq!(retry_delay(false, 0), Duration::ZERO);
        assert_eq!(retry_delay(false, 200), Duration::from_secs(2));
        for r in [3u32, 999, u32::MAX] {
            assert!(retry_delay(false, r) <= Duration::from_secs(2));
            assert_eq!(retry_delay(false, r).as_millis() % 10, 0);
        }
    }
}
