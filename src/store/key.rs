//! The key that encrypts cached attributes at rest, and sealing/opening with it.
//!
//! Attributes are sealed with XChaCha20-Poly1305 (random 192-bit nonce per message, so random
//! nonces never repeat in practice). The session's frontend token is the associated data: a
//! ciphertext copied into another session's row does not open. Sealed layout:
//! `0x01 || nonce (24 bytes) || ciphertext || tag (16 bytes)`.
//!
//! The key comes from config (base64 of 32 bytes) or from `<data dir>/attribute.key`, generated on
//! first start with mode 0600. A key file readable by group or others is refused.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::Rng;

/// Name of the generated key file inside the data directory.
pub const KEY_FILE: &str = "attribute.key";

const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const KEY_LEN: usize = 32;

/// Problems with the key or with a sealed value.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("attribute key must be base64 of exactly 32 bytes")]
    BadKey,
    #[error("key file {path} is readable by group or others (mode {mode:o}); chmod 600 it")]
    LooseKeyFile { path: String, mode: u32 },
    #[error("key file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("sealed attributes do not open with this key")]
    Open,
    #[error("sealing failed")]
    Seal,
}

/// Symmetric key for cached attributes. `Debug` never shows it.
#[derive(Clone)]
pub struct AttributeKey {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for AttributeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AttributeKey([redacted])")
    }
}

impl AttributeKey {
    /// A fresh random key (tests, or a caller that persists it elsewhere).
    pub fn generate() -> AttributeKey {
        let mut raw = [0u8; KEY_LEN];
        rand::rng().fill_bytes(&mut raw);
        AttributeKey::from_bytes(&raw)
    }

    /// From a key file the operator keeps (config `key_file`, ideally outside the data
    /// directory): base64 of 32 bytes, and readable by its owner only.
    pub fn load_file(path: &Path) -> Result<AttributeKey, KeyError> {
        let io = |source| KeyError::Io {
            path: path.display().to_string(),
            source,
        };
        let mode = fs::metadata(path).map_err(io)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(KeyError::LooseKeyFile {
                path: path.display().to_string(),
                mode: mode & 0o777,
            });
        }
        AttributeKey::from_base64(&fs::read_to_string(path).map_err(io)?)
    }

    /// From config: base64 (standard alphabet, padded) of 32 bytes.
    pub fn from_base64(text: &str) -> Result<AttributeKey, KeyError> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| KeyError::BadKey)?;
        if raw.len() != KEY_LEN {
            return Err(KeyError::BadKey);
        }
        Ok(AttributeKey::from_bytes(&raw))
    }

    /// Load `<dir>/attribute.key`, creating it (0600) with a random key when absent.
    pub fn load_or_create(dir: &Path) -> Result<AttributeKey, KeyError> {
        let path = dir.join(KEY_FILE);
        let io = |source| KeyError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut raw = [0u8; KEY_LEN];
        rand::rng().fill_bytes(&mut raw);
        let text = base64::engine::general_purpose::STANDARD.encode(raw);
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(mut file) => {
                file.write_all(format!("{text}\n").as_bytes()).map_err(io)?;
                file.sync_all().map_err(io)?;
                // The file's name must outlive a power cut as well: attributes sealed from now on
                // open with this key only, and a lost name would make the next start draw another.
                fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
                return Ok(AttributeKey::from_bytes(&raw));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(e)),
        }
        let mode = fs::metadata(&path).map_err(io)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(KeyError::LooseKeyFile {
                path: path.display().to_string(),
                mode: mode & 0o777,
            });
        }
        AttributeKey::from_base64(&fs::read_to_string(&path).map_err(io)?)
    }

    fn from_bytes(raw: &[u8]) -> AttributeKey {
        // Invariant: callers pass exactly KEY_LEN bytes, which is XChaCha20Poly1305's key size.
        let cipher = XChaCha20Poly1305::new_from_slice(raw).expect("32-byte key");
        AttributeKey { cipher }
    }

    /// Encrypt `plaintext` bound to `context` (the session's frontend token).
    pub fn seal(&self, context: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let ct = self
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: context,
                },
            )
            .map_err(|_| KeyError::Seal)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Decrypt what [`seal`](Self::seal) made for the same `context`.
    pub fn open(&self, context: &[u8], sealed: &[u8]) -> Result<Vec<u8>, KeyError> {
        let (&version, rest) = sealed.split_first().ok_or(KeyError::Open)?;
        if version != VERSION || rest.len() < NONCE_LEN {
            return Err(KeyError::Open);
        }
        let (nonce, ct) = rest.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| KeyError::Open)?;
        self.cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ct,
                    aad: context,
                },
            )
            .map_err(|_| KeyError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_attributes_open_only_with_same_key_and_context() {
        let key = AttributeKey::generate();
        let sealed = key.seal(b"session-a", b"999993653").unwrap();
        assert!(
            !sealed.windows(9).any(|w| w == b"999993653"),
            "plaintext visible in ciphertext"
        );
        assert_eq!(key.open(b"session-a", &sealed).unwrap(), b"999993653");
        assert!(key.open(b"session-b", &sealed).is_err());
        assert!(AttributeKey::generate()
            .open(b"session-a", &sealed)
            .is_err());
        assert!(key.open(b"session-a", &sealed[..10]).is_err());
        assert!(key.open(b"session-a", &[]).is_err());
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = std::env::temp_dir().join(format!(
            "vb-key-{}",
            crate::store::FrontendToken::generate()
        ));
        fs::create_dir_all(&dir).unwrap();
        let first = AttributeKey::load_or_create(&dir).unwrap();
        let mode = fs::metadata(dir.join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let sealed = first.seal(b"t", b"value").unwrap();
        let again = AttributeKey::load_or_create(&dir).unwrap();
        assert_eq!(again.open(b"t", &sealed).unwrap(), b"value");

        fs::set_permissions(dir.join(KEY_FILE), fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            AttributeKey::load_or_create(&dir),
            Err(KeyError::LooseKeyFile { .. })
        ));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn config_key_must_be_32_bytes() {
        assert!(AttributeKey::from_base64("c2hvcnQ=").is_err());
        assert!(AttributeKey::from_base64("not base64!").is_err());
        let b64 = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert!(AttributeKey::from_base64(&b64).is_ok());
    }
}
