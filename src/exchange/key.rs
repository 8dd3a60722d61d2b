//! The exchange's API keys: what a tenant's config holds about them, and how a presented key is
//! checked.
//!
//! A key is 32 random bytes (256 bits) as `vbx_` + 43 base64url characters, made by
//! [`ExchangeKey::generate`] (`veilig-bellen tenant exchange-key`). The config holds only its
//! SHA-256 digest, `key_hash = "sha256:<64 hex digits>"`: a key this long cannot be guessed from
//! its digest, so a slow password hash (argon2) would only cost time on every request. A presented
//! key is hashed once and compared with every configured digest in constant time ([`subtle`]).

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::pii::Pii;
use crate::tenant::AgentId;

/// The prefix of every key we make (so a key found in a file is recognisable).
pub const KEY_PREFIX: &str = "vbx_";
/// The prefix of a digest in the config.
pub const HASH_PREFIX: &str = "sha256:";

/// What a tenant's config says about its existing exchange.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExchangeAccess {
    /// The keys that act for this tenant (`[[tenants.exchange_keys]]`); none: the API is closed
    /// to this tenant.
    pub keys: Vec<ExchangeKey>,
    /// Where the exchange routes a call an agent took: the agent's extension or SIP URI at the
    /// municipality's exchange (`tenants.agents[].extension`).
    pub extensions: BTreeMap<AgentId, String>,
}

/// One `[[tenants.exchange_keys]]`: a name for the logs and the key's digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExchangeKey {
    /// Shown in logs instead of the key, e.g. `asterisk-1`.
    pub name: String,
    pub hash: KeyHash,
}

/// The SHA-256 digest of a key. `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyHash([u8; 32]);

/// Why a `key_hash` value is not one.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyHashError {
    #[error("must be `sha256:` followed by 64 hex digits (what `veilig-bellen tenant exchange-key` prints)")]
    Syntax,
}

impl KeyHash {
    /// The digest of `key` as presented.
    pub fn of(key: &str) -> KeyHash {
        KeyHash(Sha256::digest(key.as_bytes()).into())
    }

    /// Reads `sha256:<64 hex digits>` (either case).
    pub fn parse(text: &str) -> Result<KeyHash, KeyHashError> {
        let hex = text.strip_prefix(HASH_PREFIX).ok_or(KeyHashError::Syntax)?;
        if hex.len() != 64 {
            return Err(KeyHashError::Syntax);
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(hex.as_bytes().chunks(2)) {
            let pair = std::str::from_utf8(pair).map_err(|_| KeyHashError::Syntax)?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| KeyHashError::Syntax)?;
        }
        Ok(KeyHash(bytes))
    }

    /// Whether `other` is the same digest, in constant time.
    pub fn matches(&self, other: &KeyHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Display for KeyHash {
    /// The config form, `sha256:<hex>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(HASH_PREFIX)?;
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyHash([redacted])")
    }
}

impl ExchangeKey {
    /// A fresh random key and its digest.
    pub fn generate() -> (Pii<String>, KeyHash) {
        let key = format!(
            "{KEY_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(crate::http::login::random_bytes())
        );
        let hash = KeyHash::of(&key);
        (Pii::new(key), hash)
    }
}

/// Longest key name.
pub const MAX_NAME: usize = 64;

/// Whether `name` may name a key: 1 to [`MAX_NAME`] of `A-Z a-z 0-9 . _ -` (it goes into logs).
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// `veilig-bellen tenant exchange-key --name NAME`: prints a fresh key on the first line and the
/// config table with its hash after it. Returns the exit code.
pub fn print_new_key(name: &str) -> u8 {
    if !is_valid_name(name) {
        eprintln!(
            "veilig-bellen tenant exchange-key: --name: use 1 to {MAX_NAME} letters, digits, `.`, `_` or `-`"
        );
        return crate::cli::exit::INPUT;
    }
    let (key, hash) = ExchangeKey::generate();
    print!("{}", new_key_text(name, &key, &hash));
    crate::cli::exit::OK
}

/// What [`print_new_key`] prints.
fn new_key_text(name: &str, key: &Pii<String>, hash: &KeyHash) -> String {
    format!(
        "{key}\n\
         # ^ the key for the exchange (Authorization: Bearer <key>); it is not stored anywhere.\n\
         # Add this to the municipality's [[tenants]] in the config:\n\
         [[tenants.exchange_keys]]\n\
         name = \"{name}\"\n\
         key_hash = \"{hash}\"\n",
        key = key.expose()
    )
}

impl ExchangeAccess {
    /// The name of the key whose digest is `presented`, checking every key (constant time per key).
    pub fn key_named(&self, presented: &KeyHash) -> Option<&str> {
        let mut found = None;
        for key in &self.keys {
            if key.hash.matches(presented) && found.is_none() {
                found = Some(key.name.as_str());
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_matches_its_printed_hash_and_no_other_key() {
        let (key, hash) = ExchangeKey::generate();
        assert!(key.expose().starts_with(KEY_PREFIX));
        assert_eq!(key.expose().len(), KEY_PREFIX.len() + 43, "256 bits");
        let printed = hash.to_string();
        assert!(printed.starts_with("sha256:") && printed.len() == 7 + 64);
        let parsed = KeyHash::parse(&printed).unwrap();
        assert!(parsed.matches(&KeyHash::of(key.expose())));
        let (other, _) = ExchangeKey::generate();
        assert!(!parsed.matches(&KeyHash::of(other.expose())));
        assert_eq!(format!("{parsed:?}"), "KeyHash([redacted])");
    }

    #[test]
    fn the_digest_is_plain_sha256_of_the_key() {
        // `printf %s abc | sha256sum`
        assert_eq!(
            KeyHash::of("abc").to_string(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            KeyHash::parse(
                "sha256:BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"
            ),
            Ok(KeyHash::of("abc")),
            "upper-case hex is read too"
        );
    }

    #[test]
    fn only_sha256_with_64_hex_digits_is_a_key_hash() {
        for bad in [
            "",
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            "sha256:",
            "sha256:ba7816bf",
            "sha256:za7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad00",
            "sha512:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            "sha256:é816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        ] {
            assert_eq!(KeyHash::parse(bad), Err(KeyHashError::Syntax), "{bad:?}");
        }
    }

    #[test]
    fn the_printed_table_holds_the_hash_of_the_printed_key() {
        let (key, hash) = ExchangeKey::generate();
        let text = new_key_text("asterisk-1", &key, &hash);
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some(key.expose().as_str()));
        let (_, config) = text.split_once('\n').unwrap();
        let table: toml::Table = toml::from_str(config).unwrap();
        let entry = &table["tenants"]["exchange_keys"][0];
        assert_eq!(entry["name"].as_str(), Some("asterisk-1"));
        let printed = KeyHash::parse(entry["key_hash"].as_str().unwrap()).unwrap();
        assert!(printed.matches(&KeyHash::of(key.expose())));
        assert!(is_valid_name("asterisk-1") && !is_valid_name("two words") && !is_valid_name(""));
    }

    #[test]
    fn a_key_is_known_by_its_name() {
        let access = ExchangeAccess {
            keys: vec![
                ExchangeKey {
                    name: "asterisk-1".into(),
                    hash: KeyHash::of("one"),
                },
                ExchangeKey {
                    name: "asterisk-2".into(),
                    hash: KeyHash::of("two"),
                },
            ],
            extensions: BTreeMap::new(),
        };
        assert_eq!(access.key_named(&KeyHash::of("two")), Some("asterisk-2"));
        assert_eq!(access.key_named(&KeyHash::of("three")), None);
    }
}
