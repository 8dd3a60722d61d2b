//! Where this crate's unpredictable values come from: a keyed pseudo-random function, HMAC-SHA256
//! (RFC 2104) over a counter, under a 256-bit [`RandomKey`] the driver draws from the operating
//! system at start-up. No I/O here: the key comes in from outside, so a test can pass a fixed one
//! and get the same branches, tags, Call-IDs and port choices every run.
//!
//! Why a PRF and not a fast generator: branches (RFC 3261 §8.1.1.7), tags (§19.3) and Call-IDs
//! (§8.1.1.4) are what an off-path attacker must guess to forge a response or an in-dialog request.
//! Outputs of an invertible generator (splitmix64, xorshift, an LCG) give away its state, so one
//! observed To tag predicts every later branch. HMAC outputs reveal nothing about the key or about
//! other counters' outputs. Each user keys its own [`Prf`] with a distinct `domain` label, so the
//! endpoint's identifiers and the port pool's choices are independent even under one key.
//!
//! [`RandomKey`] has no `Default` and prints as `[redacted]`: a production endpoint cannot end up
//! with a constant key by accident, and the key never reaches a log.

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A 256-bit secret keying a [`Prf`]. Draw it from the OS (`rand::random::<[u8; 32]>()` in the
/// driver) once per process; tests may pass fixed bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct RandomKey([u8; 32]);

impl RandomKey {
    /// A key from 32 bytes. In production they must come from a CSPRNG.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        RandomKey(bytes)
    }
}

impl std::fmt::Debug for RandomKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RandomKey([redacted])")
    }
}

/// HMAC-SHA256(key, domain ‖ counter): a stream of unpredictable 256-bit blocks. See the module
/// docs.
#[derive(Clone)]
pub struct Prf {
    /// The keyed MAC state, cloned for each block (the key schedule runs once).
    keyed: Hmac<Sha256>,
    counter: u64,
}

impl Prf {
    /// A PRF under `key` for one purpose, `domain` (e.g. `b"sip endpoint ids"`).
    pub fn new(key: &RandomKey, domain: &[u8]) -> Self {
        // HMAC pads a key shorter than the hash's block (64 bytes) with zeros (RFC 2104 §2), so the
        // padded block is the same key and the fixed-size constructor cannot fail.
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(&key.0);
        let mut keyed = <Hmac<Sha256> as KeyInit>::new(&block.into());
        keyed.update(b"veilig-bellen prf\0");
        keyed.update(&(domain.len() as u64).to_be_bytes());
        keyed.update(domain);
        Prf { keyed, counter: 0 }
    }

    /// The next 256-bit block.
    pub fn next_block(&mut self) -> [u8; 32] {
        let mut mac = self.keyed.clone();
        mac.update(&self.counter.to_be_bytes());
        self.counter = self.counter.wrapping_add(1);
        mac.finalize().into_bytes().into()
    }

    /// The next 64 unpredictable bits.
    pub fn next_u64(&mut self) -> u64 {
        let block = self.next_block();
        let mut word = [0u8; 8];
        word.copy_from_slice(&block[..8]);
        u64::from_be_bytes(word)
    }

    /// A number in `0..n` (`0` when `n` is 0). The bias of reducing 64 bits modulo `n` is below
    /// `n / 2^64`: nothing for port numbers or list indices.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64().checked_rem(n).unwrap_or(0)
    }

    /// The next 128 unpredictable bits as 32 lowercase hex digits: a branch suffix, tag or Call-ID.
    pub fn hex128(&mut self) -> String {
        let block = self.next_block();
        let mut out = String::with_capacity(32);
        for byte in &block[..16] {
            out.push(hex_digit(byte >> 4));
            out.push(hex_digit(byte & 0x0f));
        }
        out
    }
}

impl std::fmt::Debug for Prf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prf")
            .field("key", &"[redacted]")
            .field("counter", &self.counter)
            .finish()
    }
}

fn hex_digit(nibble: u8) -> char {
    char::from_digit(u32::from(nibble), 16).unwrap_or('0')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn key(byte: u8) -> RandomKey {
        RandomKey::from_bytes([byte; 32])
    }

    #[test]
    fn same_key_and_domain_repeat_the_stream_so_tests_are_deterministic() {
        let mut a = Prf::new(&key(1), b"ids");
        let mut b = Prf::new(&key(1), b"ids");
        for _ in 0..10 {
            assert_eq!(a.hex128(), b.hex128());
        }
    }

    #[test]
    fn different_keys_or_domains_give_unrelated_streams() {
        let streams: Vec<Vec<u64>> = [(1u8, &b"ids"[..]), (2, b"ids"), (1, b"ports")]
            .into_iter()
            .map(|(k, d)| {
                let mut p = Prf::new(&key(k), d);
                (0..64).map(|_| p.next_u64()).collect()
            })
            .collect();
        for (i, x) in streams.iter().enumerate() {
            for y in &streams[i + 1..] {
                let shared: HashSet<&u64> = x.iter().collect();
                assert!(y.iter().all(|v| !shared.contains(v)), "a shared output");
                // Not a shifted or offset copy either: the differences are not constant.
                let diffs: HashSet<u64> =
                    x.iter().zip(y).map(|(a, b)| a.wrapping_sub(*b)).collect();
                assert!(diffs.len() > 60, "related streams");
            }
        }
    }

    #[test]
    fn hex128_is_32_lowercase_hex_digits_and_below_stays_in_range() {
        let mut p = Prf::new(&key(9), b"t");
        let h = p.hex128();
        assert_eq!(h.len(), 32);
        assert!(h
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert!((0..1000).all(|_| p.below(7) < 7));
        assert_eq!(p.below(0), 0);
    }

    #[test]
    fn the_key_never_prints() {
        let k = RandomKey::from_bytes([0xab; 32]);
        let shown = format!("{k:?} {:?}", Prf::new(&k, b"d"));
        assert!(!shown.contains("ab, ") && !shown.contains("171"), "{shown}");
        assert!(shown.contains("[redacted]"));
    }
}
