//! SDES key exchange for SRTP in SDP (RFC 4568): the `a=crypto` attribute, the two crypto suites
//! every SIP phone implements (AES_CM_128_HMAC_SHA1_80 and _32, RFC 4568 §6.2), and the master
//! keys they carry.
//!
//! A master key travels in the SDP itself, so it is only as secret as the signalling: the call flow
//! offers SRTP to phones that registered over TLS. Keys never appear in `Debug` output or logs.
//!
//! Parsing is strict where leniency would weaken the key and tolerant where trunks and phones
//! differ harmlessly: a key must be exactly 30 bytes of base64 (16 key + 14 salt); a lifetime
//! (`|2^31`) is accepted and ignored (we never send 2^31 packets in a call); an MKI (`|1:4`), more
//! than one key, or session parameters (`UNENCRYPTED_SRTP`, `KDR=…`) make the line unusable — we
//! support none of them, and a line we cannot honour is skipped, never half-honoured.

use std::fmt;

use base64::Engine;

/// Length of a master key plus master salt for the AES_CM_128 suites.
pub const MASTER_LEN: usize = 30;

/// The crypto suites we offer and accept, strongest tag first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SrtpSuite {
    /// `AES_CM_128_HMAC_SHA1_80`: 80-bit authentication tag.
    AesCm128HmacSha1_80,
    /// `AES_CM_128_HMAC_SHA1_32`: 32-bit authentication tag (RTP only; RTCP keeps 80).
    AesCm128HmacSha1_32,
}

impl SrtpSuite {
    /// Both, in our order of preference.
    pub const ALL: [SrtpSuite; 2] = [
        SrtpSuite::AesCm128HmacSha1_80,
        SrtpSuite::AesCm128HmacSha1_32,
    ];

    /// The name in `a=crypto`.
    pub fn name(self) -> &'static str {
        match self {
            SrtpSuite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            SrtpSuite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
        }
    }

    /// The suite named `name` (case-insensitive).
    pub fn parse(name: &str) -> Option<SrtpSuite> {
        SrtpSuite::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for SrtpSuite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A master key and salt (RFC 3711 §8). `Debug` shows no byte of it.
#[derive(Clone, PartialEq, Eq)]
pub struct SrtpKey([u8; MASTER_LEN]);

impl SrtpKey {
    /// A key from 30 bytes: draw them from a CSPRNG (the call flow does, per leg).
    pub fn from_bytes(bytes: [u8; MASTER_LEN]) -> SrtpKey {
        SrtpKey(bytes)
    }

    /// The 16-byte master key.
    pub fn key(&self) -> &[u8] {
        &self.0[..16]
    }

    /// The 14-byte master salt.
    pub fn salt(&self) -> &[u8] {
        &self.0[16..]
    }

    /// The `inline:` value (base64 of key ‖ salt, RFC 4568 §6.1).
    fn inline(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    fn from_inline(text: &str) -> Option<SrtpKey> {
        // Some stacks leave out the (here unneeded) padding; both forms decode the same 30 bytes.
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
            .ok()?;
        Some(SrtpKey(bytes.try_into().ok()?))
    }
}

impl fmt::Debug for SrtpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SrtpKey(…)")
    }
}

/// One usable `a=crypto` line: `<tag> <suite> inline:<key>[|<lifetime>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoAttribute {
    /// The tag the answer must repeat (RFC 4568 §5.1.2).
    pub tag: u32,
    pub suite: SrtpSuite,
    pub key: SrtpKey,
}

impl CryptoAttribute {
    /// Reads the value of an `a=crypto:` attribute; `None` for anything we cannot honour exactly
    /// (unknown suite, MKI, several keys, session parameters, a key of the wrong length).
    pub fn parse(value: &str) -> Option<CryptoAttribute> {
        let mut fields = value.split_ascii_whitespace();
        let tag = fields.next()?;
        if tag.is_empty() || tag.len() > 9 || !tag.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let tag: u32 = tag.parse().ok()?;
        let suite = SrtpSuite::parse(fields.next()?)?;
        let key_params = fields.next()?;
        if fields.next().is_some() {
            return None; // session parameters: none supported
        }
        if key_params.contains(';') {
            return None; // several keys (each with its own MKI): not supported
        }
        let inline = key_params
            .get(..7)
            .filter(|m| m.eq_ignore_ascii_case("inline:"))
            .and(key_params.get(7..))?;
        let mut parts = inline.split('|');
        let key = SrtpKey::from_inline(parts.next()?)?;
        match (parts.next(), parts.next()) {
            (None, _) => {}
            (Some(lifetime), None) if is_lifetime(lifetime) => {}
            _ => return None, // an MKI, or garbage
        }
        Some(CryptoAttribute { tag, suite, key })
    }

    /// The attribute's value, as written after `a=crypto:`.
    pub fn value(&self) -> String {
        format!("{} {} inline:{}", self.tag, self.suite, self.key.inline())
    }
}

/// `2^31` or a decimal count of packets.
fn is_lifetime(text: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    match text.split_once('^') {
        Some((base, exp)) => digits(base) && digits(exp),
        None => digits(text),
    }
}

/// What was agreed for one leg: the suite and both directions' keys. `Debug` shows no key.
#[derive(Clone, PartialEq, Eq)]
pub struct SrtpParams {
    pub suite: SrtpSuite,
    /// Protects what we send.
    pub ours: SrtpKey,
    /// Protects what the peer sends.
    pub theirs: SrtpKey,
}

impl fmt::Debug for SrtpParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SrtpParams")
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SrtpKey {
        SrtpKey::from_bytes(std::array::from_fn(|i| i as u8))
    }

    #[test]
    fn a_written_attribute_reads_back() {
        for suite in SrtpSuite::ALL {
            let attr = CryptoAttribute {
                tag: 7,
                suite,
                key: key(),
            };
            assert_eq!(CryptoAttribute::parse(&attr.value()), Some(attr));
        }
    }

    #[test]
    fn what_phones_send_is_read() {
        // PJSIP and baresip write these forms.
        let a = CryptoAttribute::parse(
            "1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz",
        )
        .expect("plain");
        assert_eq!(a.tag, 1);
        assert_eq!(a.suite, SrtpSuite::AesCm128HmacSha1_80);
        assert!(CryptoAttribute::parse(
            "2 AES_CM_128_HMAC_SHA1_32 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^31"
        )
        .is_some());
    }

    #[test]
    fn what_we_cannot_honour_is_refused() {
        let k = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";
        for bad in [
            format!("1 AES_256_CM_HMAC_SHA1_80 inline:{k}"),
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{k}|2^20|1:4"),
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{k}|2^20 UNENCRYPTED_SRTP"),
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{k};inline:{k}"),
            "1 AES_CM_128_HMAC_SHA1_80 inline:c2hvcnQ=".to_owned(),
            format!("x AES_CM_128_HMAC_SHA1_80 inline:{k}"),
            format!("1 AES_CM_128_HMAC_SHA1_80 key:{k}"),
            "1 AES_CM_128_HMAC_SHA1_80".to_owned(),
            String::new(),
        ] {
            assert_eq!(CryptoAttribute::parse(&bad), None, "{bad}");
        }
    }

    #[test]
    fn keys_never_show_in_debug_output() {
        let params = SrtpParams {
            suite: SrtpSuite::AesCm128HmacSha1_80,
            ours: key(),
            theirs: key(),
        };
        let shown = format!("{params:?} {:?}", key());
        assert!(!shown.contains(&key().inline()), "{shown}");
        assert!(!shown.contains("0, 1, 2"), "{shown}");
    }
}
