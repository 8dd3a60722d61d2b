//! Digest authentication for our UAS roles (registrar, agents' requests): RFC 3261 §22.4 with the
//! digest algorithm of RFC 7616 (compatible with RFC 2617) and SHA-256 for SIP per RFC 8760.
//!
//! Sans-IO: the [`Authenticator`] gets `now` with every call and never reads a clock.
//!
//! * **Challenges** ([`Authenticator::challenges`]): one `WWW-Authenticate` value per algorithm we
//!   accept, SHA-256 first, then MD5 (RFC 8760 §2.4: in order of preference), always `qop="auth"`.
//! * **Nonces are stateless**: `hex(issued_ms) ‖ hex(counter) ‖ hex(HMAC-SHA-256(secret, …)[..16])`.
//!   Issuing a challenge stores nothing, so unauthenticated traffic cannot grow our state. A nonce is
//!   checked by recomputing its MAC; one older than `nonce_lifetime` (or one we did not make, e.g.
//!   from before a restart with a new secret) is answered with a fresh challenge carrying
//!   `stale=true`, so the client retries without asking its user.
//! * **Replay protection** (RFC 7616 §3.4): per nonce we keep the highest nonce-count seen, but only
//!   after a response verified, so the table grows only with valid credentials. A request whose `nc`
//!   is not larger is refused. `nc` is 8 hex digits: `0000000a` follows `00000009`. The table is
//!   bounded; when it is full the oldest entry goes and every nonce issued no later than it that is
//!   not in the table counts as stale from then on, so eviction can never re-open a replay.
//! * **Verification** needs the stored secret of the user: a plain password or a precomputed HA1 per
//!   algorithm ([`Secret`]). The response is compared in constant time; the `uri` parameter must equal
//!   the Request-URI byte for byte and the realm must be ours. `qop=auth` is required (we always
//!   offer it, and without it there is no nonce-count to protect against replays); `auth-int`,
//!   `-sess` algorithms and `userhash` are not supported and are refused.
//!
//! The client side ([`authorize`]) builds an `Authorization` value from a challenge; tests use it
//! and so can a future trunk registration.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use md5::Md5;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Why digest credentials did not let a request through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The header value is not a digest credential we can read.
    #[error("malformed credentials: {0}")]
    Malformed(&'static str),
    /// The nonce is too old or not one of ours: challenge again with `stale=true`.
    #[error("stale nonce")]
    Stale,
    /// The nonce-count did not increase: a replayed request.
    #[error("nonce-count replayed")]
    Replay,
    /// The realm, algorithm, qop or uri parameter does not fit this request.
    #[error("credentials do not match the request: {0}")]
    Mismatch(&'static str),
    /// The user is unknown or the response is wrong.
    #[error("wrong username or password")]
    WrongCredentials,
}

impl AuthError {
    /// Whether this counts as a failed login attempt for rate limiting. A stale nonce or a replay
    /// tells nothing about the password; a wrong response, an unknown user or a bad request does.
    pub fn counts_as_failure(&self) -> bool {
        !matches!(self, AuthError::Stale | AuthError::Replay)
    }

    /// Whether the next challenge should say `stale=true`.
    pub fn stale(&self) -> bool {
        matches!(self, AuthError::Stale | AuthError::Replay)
    }
}

/// The digest algorithms we offer and accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `SHA-256` (RFC 7616, RFC 8760). Preferred.
    Sha256,
    /// `MD5` (RFC 2617), still all most phones speak.
    Md5,
}

impl Algorithm {
    /// The token used in the `algorithm` parameter.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Md5 => "MD5",
        }
    }

    /// Reads an `algorithm` parameter value (case-insensitive). `-sess` variants are not supported.
    pub fn parse(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case("SHA-256") {
            Some(Algorithm::Sha256)
        } else if s.eq_ignore_ascii_case("MD5") {
            Some(Algorithm::Md5)
        } else {
            None
        }
    }

    /// Lowercase hex of the hash of `parts` joined with `:`.
    pub fn hex(self, parts: &[&[u8]]) -> String {
        match self {
            Algorithm::Sha256 => hex(&join_hash::<Sha256>(parts)),
            Algorithm::Md5 => hex(&join_hash::<Md5>(parts)),
        }
    }
}

/// HA1 = H(username ":" realm ":" password), lowercase hex (RFC 7616 §3.4.2). Precompute it to store
/// credentials without the plain password.
pub fn ha1(algorithm: Algorithm, username: &str, realm: &str, password: &str) -> String {
    algorithm.hex(&[username.as_bytes(), realm.as_bytes(), password.as_bytes()])
}

/// What we store to check one user's digest responses.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// The plain password: works for every algorithm.
    Password(String),
    /// Precomputed HA1 values (lowercase hex) for the realm; a missing one refuses that algorithm.
    Ha1 {
        /// HA1 for SHA-256.
        sha256: Option<String>,
        /// HA1 for MD5.
        md5: Option<String>,
    },
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Password(_) => f.write_str("Password([redacted])"),
            Secret::Ha1 { .. } => f.write_str("Ha1([redacted])"),
        }
    }
}

impl Secret {
    fn ha1(&self, algorithm: Algorithm, username: &str, realm: &str) -> Option<String> {
        match (self, algorithm) {
            (Secret::Password(p), a) => Some(ha1(a, username, realm, p)),
            (Secret::Ha1 { sha256, .. }, Algorithm::Sha256) => sha256.clone(),
            (Secret::Ha1 { md5, .. }, Algorithm::Md5) => md5.clone(),
        }
    }
}

/// Settings of an [`Authenticator`].
#[derive(Debug, Clone)]
pub struct DigestConfig {
    /// The realm we challenge with; clients hash it into HA1.
    pub realm: String,
    /// How long a nonce may be used. After that it is stale.
    pub nonce_lifetime: Duration,
    /// Algorithms offered, in order of preference.
    pub algorithms: Vec<Algorithm>,
    /// Most nonces whose nonce-count we track at once.
    pub max_tracked_nonces: usize,
}

impl DigestConfig {
    /// SHA-256 then MD5, nonces valid for 5 minutes, up to 10 000 nonces tracked.
    pub fn new(realm: impl Into<String>) -> Self {
        DigestConfig {
            realm: realm.into(),
            nonce_lifetime: Duration::from_secs(300),
            algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
            max_tracked_nonces: 10_000,
        }
    }
}

/// One `WWW-Authenticate` (or `Proxy-Authenticate`) value. `Display` writes the header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Realm.
    pub realm: String,
    /// Nonce.
    pub nonce: String,
    /// Algorithm.
    pub algorithm: Algorithm,
    /// Whether the client's previous nonce was merely stale.
    pub stale: bool,
    /// Opaque value to echo, if any.
    pub opaque: Option<String>,
    /// Whether `qop="auth"` was offered.
    pub qop_auth: bool,
}

impl Challenge {
    /// Reads a `Digest` challenge value (client side). `None` for other schemes or unusable ones.
    pub fn parse(value: &str) -> Option<Challenge> {
        let params = parse_digest(value).ok()?;
        let get = |n: &str| params.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let algorithm = match get("algorithm") {
            Some(a) => Algorithm::parse(&a)?,
            None => Algorithm::Md5,
        };
        Some(Challenge {
            realm: get("realm")?,
            nonce: get("nonce")?,
            algorithm,
            stale: get("stale").is_some_and(|s| s.eq_ignore_ascii_case("true")),
            opaque: get("opaque"),
            qop_auth: get("qop").is_some_and(|q| q.split(',').any(|o| o.trim() == "auth")),
        })
    }
}

impl fmt::Display for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Digest realm={}, nonce=\"{}\"",
            quote(&self.realm),
            self.nonce
        )?;
        if let Some(o) = &self.opaque {
            write!(f, ", opaque={}", quote(o))?;
        }
        write!(f, ", algorithm={}", self.algorithm.name())?;
        if self.qop_auth {
            f.write_str(", qop=\"auth\"")?;
        }
        if self.stale {
            f.write_str(", stale=true")?;
        }
        Ok(())
    }
}

/// The parameters of a `Digest` `Authorization` value (RFC 7616 §3.4).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DigestResponse {
    /// `username`.
    pub username: String,
    /// `realm`.
    pub realm: String,
    /// `nonce`.
    pub nonce: String,
    /// `uri` (the Request-URI as the client wrote it).
    pub uri: String,
    /// `response`, hex.
    pub response: String,
    /// `algorithm` (absent means MD5).
    pub algorithm: Option<String>,
    /// `cnonce`.
    pub cnonce: Option<String>,
    /// `nc`, 8 hex digits.
    pub nc: Option<String>,
    /// `qop`.
    pub qop: Option<String>,
    /// `opaque`.
    pub opaque: Option<String>,
    /// `userhash`.
    pub userhash: Option<String>,
}

impl DigestResponse {
    /// Reads an `Authorization` header value. `Ok(None)` when the scheme is not `Digest` (RFC 4475
    /// regaut01: an unknown scheme is ignored and re-challenged, never an error).
    pub fn parse(value: &str) -> Result<Option<DigestResponse>, AuthError> {
        let params = match parse_digest(value) {
            Ok(p) => p,
            Err(ParamError::NotDigest) => return Ok(None),
            Err(ParamError::Syntax(e)) => return Err(AuthError::Malformed(e)),
        };
        Self::from_params(params.iter().map(|(k, v)| (k.as_str(), v.as_str()))).map(Some)
    }

    /// Builds from `(name, value)` pairs (names case-insensitive, values unquoted).
    pub fn from_params<'a>(
        params: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<DigestResponse, AuthError> {
        let mut r = DigestResponse::default();
        let (mut user, mut realm, mut nonce, mut uri, mut resp) =
            (false, false, false, false, false);
        for (name, value) in params {
            let v = value.to_string();
            let n = name.to_ascii_lowercase();
            match n.as_str() {
                "username" => (r.username, user) = (v, true),
                "realm" => (r.realm, realm) = (v, true),
                "nonce" => (r.nonce, nonce) = (v, true),
                "uri" => (r.uri, uri) = (v, true),
                "response" => (r.response, resp) = (v, true),
                "algorithm" => r.algorithm = Some(v),
                "cnonce" => r.cnonce = Some(v),
                "nc" => r.nc = Some(v),
                "qop" => r.qop = Some(v),
                "opaque" => r.opaque = Some(v),
                "userhash" => r.userhash = Some(v),
                _ => {}
            }
        }
        match (user, realm, nonce, uri, resp) {
            (false, ..) => Err(AuthError::Malformed("no username")),
            (_, false, ..) => Err(AuthError::Malformed("no realm")),
            (_, _, false, ..) => Err(AuthError::Malformed("no nonce")),
            (_, _, _, false, _) => Err(AuthError::Malformed("no uri")),
            (_, _, _, _, false) => Err(AuthError::Malformed("no response")),
            _ => Ok(r),
        }
    }
}

/// A request that passed digest authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The authenticated username.
    pub username: String,
    /// The algorithm the client used.
    pub algorithm: Algorithm,
}

/// Issues challenges and verifies digest responses. See the module docs for the nonce design.
///
/// Call order: [`challenges`](Self::challenges) when a request has no usable credentials,
/// [`verify`](Self::verify) when it does; on `Err(e)` answer 401 with `challenges(now, e.stale())`.
pub struct Authenticator {
    config: DigestConfig,
    secret: [u8; 32],
    epoch: Instant,
    counter: u64,
    seen: HashMap<String, NonceUse>,
    /// Nonces issued before this (ms since epoch) and absent from `seen` are stale.
    floor_ms: u64,
}

#[derive(Debug, Clone, Copy)]
struct NonceUse {
    issued_ms: u64,
    highest_nc: u32,
}

const NONCE_LEN: usize = 64;

impl Authenticator {
    /// `secret` keys the nonce MAC (the driver draws it at random at start-up); `now` is the epoch
    /// nonce timestamps count from.
    pub fn new(config: DigestConfig, secret: [u8; 32], now: Instant) -> Self {
        Authenticator {
            config,
            secret,
            epoch: now,
            counter: 0,
            seen: HashMap::new(),
            floor_ms: 0,
        }
    }

    /// The realm.
    pub fn realm(&self) -> &str {
        &self.config.realm
    }

    /// Fresh challenges, one per configured algorithm in order of preference, sharing one nonce.
    pub fn challenges(&mut self, now: Instant, stale: bool) -> Vec<Challenge> {
        let nonce = self.new_nonce(now);
        self.config
            .algorithms
            .iter()
            .map(|&algorithm| Challenge {
                realm: self.config.realm.clone(),
                nonce: nonce.clone(),
                algorithm,
                stale,
                opaque: None,
                qop_auth: true,
            })
            .collect()
    }

    /// Checks `creds` for a request with `method` and the Request-URI written as `request_uri`.
    /// `secret` is what we store for `creds.username` (`None`: unknown user).
    pub fn verify(
        &mut self,
        now: Instant,
        method: &str,
        request_uri: &str,
        creds: &DigestResponse,
        secret: Option<&Secret>,
    ) -> Result<Verified, AuthError> {
        if creds.realm != self.config.realm {
            return Err(AuthError::Mismatch("realm"));
        }
        let algorithm = match creds.algorithm.as_deref() {
            None => Algorithm::Md5,
            Some(a) => Algorithm::parse(a).ok_or(AuthError::Mismatch("algorithm"))?,
        };
        if !self.config.algorithms.contains(&algorithm) {
            return Err(AuthError::Mismatch("algorithm"));
        }
        if creds
            .userhash
            .as_deref()
            .is_some_and(|u| u.eq_ignore_ascii_case("true"))
        {
            return Err(AuthError::Mismatch("userhash"));
        }
        if creds.qop.as_deref() != Some("auth") {
            return Err(AuthError::Mismatch("qop"));
        }
        let (Some(cnonce), Some(nc_text)) = (creds.cnonce.as_deref(), creds.nc.as_deref()) else {
            return Err(AuthError::Malformed("qop=auth without cnonce or nc"));
        };
        let nc = parse_nc(nc_text).ok_or(AuthError::Malformed("nc"))?;
        if creds.uri != request_uri {
            return Err(AuthError::Mismatch("uri"));
        }
        let now_ms = self.ms(now);
        let issued_ms = self.check_nonce(&creds.nonce).ok_or(AuthError::Stale)?;
        if issued_ms > now_ms || now_ms - issued_ms > duration_ms(self.config.nonce_lifetime) {
            return Err(AuthError::Stale);
        }

        let realm = self.config.realm.as_str();
        let ha1 = secret.and_then(|s| s.ha1(algorithm, &creds.username, realm));
        // Hash even for an unknown user so the answer takes the same time.
        let ha1_hex = ha1
            .clone()
            .unwrap_or_else(|| algorithm.hex(&[&self.secret]));
        let expected = response_hex(
            algorithm,
            &ha1_hex,
            &creds.nonce,
            nc_text,
            cnonce,
            method,
            &creds.uri,
        );
        let given = creds.response.to_ascii_lowercase();
        let equal: bool = expected.as_bytes().ct_eq(given.as_bytes()).into();
        if ha1.is_none() || !equal {
            return Err(AuthError::WrongCredentials);
        }

        match self.seen.get_mut(&creds.nonce) {
            Some(u) if nc <= u.highest_nc => return Err(AuthError::Replay),
            Some(u) => u.highest_nc = nc,
            None if issued_ms < self.floor_ms => return Err(AuthError::Stale),
            None => self.remember(now_ms, creds.nonce.clone(), issued_ms, nc),
        }
        Ok(Verified {
            username: creds.username.clone(),
            algorithm,
        })
    }

    fn remember(&mut self, now_ms: u64, nonce: String, issued_ms: u64, nc: u32) {
        if self.seen.len() >= self.config.max_tracked_nonces {
            let life = duration_ms(self.config.nonce_lifetime);
            self.seen
                .retain(|_, u| now_ms.saturating_sub(u.issued_ms) <= life);
        }
        while self.seen.len() >= self.config.max_tracked_nonces.max(1) {
            let oldest = self
                .seen
                .iter()
                .min_by_key(|(_, u)| u.issued_ms)
                .map(|(k, u)| (k.clone(), u.issued_ms));
            let Some((key, issued)) = oldest else { break };
            self.seen.remove(&key);
            self.floor_ms = self.floor_ms.max(issued.saturating_add(1));
        }
        self.seen.insert(
            nonce,
            NonceUse {
                issued_ms,
                highest_nc: nc,
            },
        );
    }

    fn ms(&self, now: Instant) -> u64 {
        duration_ms(now.saturating_duration_since(self.epoch))
    }

    fn new_nonce(&mut self, now: Instant) -> String {
        let issued = self.ms(now);
        self.counter = self.counter.wrapping_add(1);
        let mac = self.nonce_mac(issued, self.counter);
        let mut s = String::with_capacity(NONCE_LEN);
        s.push_str(&format!("{issued:016x}{:016x}", self.counter));
        s.push_str(&hex(&mac));
        s
    }

    /// The issue time of a nonce we made, or `None`.
    fn check_nonce(&self, nonce: &str) -> Option<u64> {
        if nonce.len() != NONCE_LEN || !nonce.is_ascii() {
            return None;
        }
        let issued = u64::from_str_radix(nonce.get(0..16)?, 16).ok()?;
        let counter = u64::from_str_radix(nonce.get(16..32)?, 16).ok()?;
        let expected = hex(&self.nonce_mac(issued, counter));
        let ok: bool = expected
            .as_bytes()
            .ct_eq(nonce.get(32..)?.as_bytes())
            .into();
        ok.then_some(issued)
    }

    fn nonce_mac(&self, issued: u64, counter: u64) -> [u8; 16] {
        let mut out = [0u8; 16];
        // HMAC takes keys of any length, so this cannot fail; fall back to zeros rather than panic.
        if let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.secret) {
            mac.update(b"veilig-bellen digest nonce\0");
            mac.update(&issued.to_be_bytes());
            mac.update(&counter.to_be_bytes());
            mac.update(self.config.realm.as_bytes());
            let tag = mac.finalize().into_bytes();
            for (o, t) in out.iter_mut().zip(tag.iter()) {
                *o = *t;
            }
        }
        out
    }
}

/// The `response` value (RFC 7616 §3.4.1, qop=auth).
pub fn response_hex(
    algorithm: Algorithm,
    ha1_hex: &str,
    nonce: &str,
    nc: &str,
    cnonce: &str,
    method: &str,
    uri: &str,
) -> String {
    let ha2 = algorithm.hex(&[method.as_bytes(), uri.as_bytes()]);
    algorithm.hex(&[
        ha1_hex.as_bytes(),
        nonce.as_bytes(),
        nc.as_bytes(),
        cnonce.as_bytes(),
        b"auth",
        ha2.as_bytes(),
    ])
}

/// Client side: the `Authorization` value answering `challenge` (qop=auth) for a request with
/// `method` and Request-URI `uri`. `nc` counts requests made with this nonce, starting at 1.
pub fn authorize(
    challenge: &Challenge,
    username: &str,
    password: &str,
    method: &str,
    uri: &str,
    cnonce: &str,
    nc: u32,
) -> String {
    let a = challenge.algorithm;
    let ha1 = ha1(a, username, &challenge.realm, password);
    let nc = format!("{nc:08x}");
    let response = response_hex(a, &ha1, &challenge.nonce, &nc, cnonce, method, uri);
    let mut v = format!(
        "Digest username={}, realm={}, nonce={}, uri={}, response=\"{response}\", algorithm={}, \
         cnonce={}, qop=auth, nc={nc}",
        quote(username),
        quote(&challenge.realm),
        quote(&challenge.nonce),
        quote(uri),
        a.name(),
        quote(cnonce),
    );
    if let Some(o) = &challenge.opaque {
        v.push_str(&format!(", opaque={}", quote(o)));
    }
    v
}

fn parse_nc(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn join_hash<D: Digest>(parts: &[&[u8]]) -> Vec<u8> {
    let mut h = D::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update(b":");
        }
        h.update(p);
    }
    h.finalize().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    s
}

fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

enum ParamError {
    NotDigest,
    Syntax(&'static str),
}

/// Splits `Digest a=b, c="d"` into lowercase names and unquoted values (RFC 3261 §25.1 auth-param).
fn parse_digest(value: &str) -> Result<Vec<(String, String)>, ParamError> {
    let v = value.trim_start_matches([' ', '\t', '\r', '\n']);
    let scheme_end = v.find([' ', '\t', '\r', '\n']).unwrap_or(v.len());
    let (scheme, mut rest) = v.split_at(scheme_end);
    if !scheme.eq_ignore_ascii_case("Digest") {
        return Err(ParamError::NotDigest);
    }
    let mut out: Vec<(String, String)> = Vec::new();
    loop {
        rest = rest.trim_start_matches([' ', '\t', '\r', '\n', ',']);
        if rest.is_empty() {
            break;
        }
        let name_end = rest.find(|c: char| !is_token_char(c)).unwrap_or(rest.len());
        if name_end == 0 {
            return Err(ParamError::Syntax("expected a parameter name"));
        }
        let name = rest[..name_end].to_ascii_lowercase();
        rest = rest[name_end..].trim_start_matches([' ', '\t', '\r', '\n']);
        rest = rest
            .strip_prefix('=')
            .ok_or(ParamError::Syntax("expected '='"))?
            .trim_start_matches([' ', '\t', '\r', '\n']);
        let value;
        if let Some(q) = rest.strip_prefix('"') {
            let mut val = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some((_, e)) => val.push(e),
                        None => break,
                    },
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => val.push(c),
                }
            }
            let end = end.ok_or(ParamError::Syntax("unterminated quoted string"))?;
            value = val;
            rest = &q[end..];
        } else {
            let end = rest.find(|c: char| !is_token_char(c)).unwrap_or(rest.len());
            value = rest[..end].to_string();
            rest = &rest[end..];
        }
        if out.iter().any(|(n, _)| *n == name) {
            return Err(ParamError::Syntax("duplicate parameter"));
        }
        out.push((name, value));
        rest = rest.trim_start_matches([' ', '\t', '\r', '\n']);
        if !rest.is_empty() && !rest.starts_with(',') {
            return Err(ParamError::Syntax("expected ','"));
        }
    }
    Ok(out)
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(now: Instant) -> Authenticator {
        Authenticator::new(DigestConfig::new("veilig-bellen"), [7u8; 32], now)
    }

    fn creds_for(
        ch: &Challenge,
        user: &str,
        pw: &str,
        method: &str,
        uri: &str,
        nc: u32,
    ) -> DigestResponse {
        let v = authorize(ch, user, pw, method, uri, "0a4f113b", nc);
        DigestResponse::parse(&v).unwrap().unwrap()
    }

    #[test]
    fn rfc2617_example_md5_qop_auth() {
        // RFC 2617 §3.5.
        let ha1 = ha1(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
        );
        let r = response_hex(
            Algorithm::Md5,
            &ha1,
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            "00000001",
            "0a4f113b",
            "GET",
            "/dir/index.html",
        );
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn rfc7616_examples_sha256_and_md5() {
        // RFC 7616 §3.9.1.
        let nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        for (alg, want) in [
            (
                Algorithm::Sha256,
                "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
            ),
            (Algorithm::Md5, "8ca523f5e9506fed4657c9700eebdbec"),
        ] {
            let h = ha1(alg, "Mufasa", "http-auth@example.org", "Circle of Life");
            let r = response_hex(alg, &h, nonce, "00000001", cnonce, "GET", "/dir/index.html");
            assert_eq!(r, want, "{alg:?}");
        }
    }

    #[test]
    fn challenge_offers_sha256_first_then_md5_with_qop_auth() {
        let t = Instant::now();
        let mut a = auth(t);
        let ch = a.challenges(t, false);
        assert_eq!(ch.len(), 2);
        let first = ch[0].to_string();
        assert!(
            first.starts_with("Digest realm=\"veilig-bellen\", nonce=\""),
            "{first}"
        );
        assert!(first.contains("algorithm=SHA-256"), "{first}");
        assert!(first.contains("qop=\"auth\""), "{first}");
        assert!(!first.contains("stale"), "{first}");
        assert!(ch[1].to_string().contains("algorithm=MD5"));
        assert_eq!(Challenge::parse(&first), Some(ch[0].clone()));
        let stale = a.challenges(t, true);
        assert!(stale[0].to_string().ends_with("stale=true"));
        assert_ne!(
            stale[0].nonce, ch[0].nonce,
            "every challenge gets a fresh nonce"
        );
    }

    #[test]
    fn correct_password_verifies_with_either_algorithm() {
        let t = Instant::now();
        let mut a = auth(t);
        let secret = Secret::Password("geheim".into());
        for ch in a.challenges(t, false) {
            // The two challenges share one nonce, so each use needs a fresh nonce-count.
            let nc = if ch.algorithm == Algorithm::Sha256 {
                1
            } else {
                2
            };
            let c = creds_for(&ch, "agent", "geheim", "REGISTER", "sip:127.0.0.1", nc);
            let v = a.verify(t, "REGISTER", "sip:127.0.0.1", &c, Some(&secret));
            assert_eq!(
                v,
                Ok(Verified {
                    username: "agent".into(),
                    algorithm: ch.algorithm
                })
            );
        }
    }

    #[test]
    fn precomputed_ha1_verifies_and_missing_algorithm_is_refused() {
        let t = Instant::now();
        let mut a = auth(t);
        let secret = Secret::Ha1 {
            sha256: Some(ha1(Algorithm::Sha256, "agent", "veilig-bellen", "pw")),
            md5: None,
        };
        let ch = a.challenges(t, false);
        let c = creds_for(&ch[0], "agent", "pw", "REGISTER", "sip:x", 1);
        assert!(a.verify(t, "REGISTER", "sip:x", &c, Some(&secret)).is_ok());
        let c = creds_for(&ch[1], "agent", "pw", "REGISTER", "sip:x", 1);
        assert_eq!(
            a.verify(t, "REGISTER", "sip:x", &c, Some(&secret)),
            Err(AuthError::WrongCredentials)
        );
    }

    #[test]
    fn wrong_password_and_unknown_user_are_failures() {
        let t = Instant::now();
        let mut a = auth(t);
        let secret = Secret::Password("right".into());
        let ch = a.challenges(t, false);
        let c = creds_for(&ch[0], "agent", "wrong", "REGISTER", "sip:x", 1);
        let e = a
            .verify(t, "REGISTER", "sip:x", &c, Some(&secret))
            .unwrap_err();
        assert_eq!(e, AuthError::WrongCredentials);
        assert!(e.counts_as_failure() && !e.stale());
        let c = creds_for(&ch[0], "nobody", "right", "REGISTER", "sip:x", 1);
        assert_eq!(
            a.verify(t, "REGISTER", "sip:x", &c, None),
            Err(AuthError::WrongCredentials)
        );
    }

    #[test]
    fn nonce_count_replay_is_refused_and_hex_nc_0a_follows_09() {
        let t = Instant::now();
        let mut a = auth(t);
        let s = Secret::Password("pw".into());
        let ch = a.challenges(t, false).remove(0);
        for nc in 1..=9 {
            let c = creds_for(&ch, "agent", "pw", "REGISTER", "sip:x", nc);
            assert!(
                a.verify(t, "REGISTER", "sip:x", &c, Some(&s)).is_ok(),
                "nc {nc}"
            );
        }
        let c9 = creds_for(&ch, "agent", "pw", "REGISTER", "sip:x", 9);
        assert_eq!(c9.nc.as_deref(), Some("00000009"));
        let e = a.verify(t, "REGISTER", "sip:x", &c9, Some(&s)).unwrap_err();
        assert_eq!(e, AuthError::Replay);
        assert!(e.stale() && !e.counts_as_failure());
        let c10 = creds_for(&ch, "agent", "pw", "REGISTER", "sip:x", 10);
        assert_eq!(c10.nc.as_deref(), Some("0000000a"));
        assert!(a.verify(t, "REGISTER", "sip:x", &c10, Some(&s)).is_ok());
        let c3 = creds_for(&ch, "agent", "pw", "REGISTER", "sip:x", 3);
        assert_eq!(
            a.verify(t, "REGISTER", "sip:x", &c3, Some(&s)),
            Err(AuthError::Replay)
        );
    }

    #[test]
    fn expired_nonce_is_stale_and_forged_nonce_is_stale() {
        let t = Instant::now();
        let mut a = auth(t);
        let s = Secret::Password("pw".into());
        let ch = a.challenges(t, false).remove(0);
        let c = creds_for(&ch, "agent", "pw", "REGISTER", "sip:x", 1);
        let later = t + Duration::from_secs(301);
        assert_eq!(
            a.verify(later, "REGISTER", "sip:x", &c, Some(&s)),
            Err(AuthError::Stale)
        );
        // Same nonce text from another server secret (e.g. before a restart).
        let mut other = Authenticator::new(DigestConfig::new("veilig-bellen"), [8u8; 32], t);
        let foreign = other.challenges(t, false).remove(0);
        let c = creds_for(&foreign, "agent", "pw", "REGISTER", "sip:x", 1);
        assert_eq!(
            a.verify(t, "REGISTER", "sip:x", &c, Some(&s)),
            Err(AuthError::Stale)
        );
    }

    #[test]
    fn uri_realm_qop_must_match() {
        let t = Instant::now();
        let mut a = auth(t);
        let s = Secret::Password("pw".into());
        let ch = a.challenges(t, false).remove(0);
        let c = creds_for(&ch, "agent", "pw", "REGISTER", "sip:other", 1);
        assert_eq!(
            a.verify(t, "REGISTER", "sip:x", &c, Some(&s)),
            Err(AuthError::Mismatch("uri"))
        );
        let mut c = creds_for(&ch, "agent", "pw", "REGISTER", "sip:x", 1);
        c.realm = "elsewhere".into();
        assert_eq!(
            a.verify(t, "REGISTER", "sip:x", &c, Some(&s)),
            Err(AuthError::Mismatch("realm"))
        );
        let mut c = creds_for(&ch, "agent", "pw", "REGISTER", "sip:x", 1);
        c.qop = None;
        assert!(a.verify(t, "REGISTER", "sip:x", &c, Some(&s)).is_err());
        // A response for another method does not verify.
        let c = creds_for(&ch, "agent", "pw", "INVITE", "sip:x", 1);
        assert_eq!(
            a.verify(t, "REGISTER", "sip:x", &c, Some(&s)),
            Err(AuthError::WrongCredentials)
        );
    }

    #[test]
    fn evicted_nonces_become_stale_never_replayable() {
        let t = Instant::now();
        let mut cfg = DigestConfig::new("r");
        cfg.max_tracked_nonces = 2;
        let mut a = Authenticator::new(cfg, [1u8; 32], t);
        let s = Secret::Password("pw".into());
        let chs: Vec<Challenge> = (0..3)
            .map(|i| a.challenges(t + Duration::from_millis(i), false).remove(0))
            .collect();
        let at = t + Duration::from_secs(1);
        for ch in &chs {
            let c = creds_for(ch, "u", "pw", "REGISTER", "sip:x", 1);
            assert!(a.verify(at, "REGISTER", "sip:x", &c, Some(&s)).is_ok());
        }
        // The first nonce was evicted; replaying its nc=1 must not pass.
        let c = creds_for(&chs[0], "u", "pw", "REGISTER", "sip:x", 1);
        assert_eq!(
            a.verify(at, "REGISTER", "sip:x", &c, Some(&s)),
            Err(AuthError::Stale)
        );
        assert!(a.seen.len() <= 2);
    }

    #[test]
    fn parses_authorization_values_and_ignores_unknown_schemes() {
        let v = "Digest username=\"bob\",realm=\"r\" , nonce=\"n\", uri=\"sip:a@b;x=\\\"y\", \
                 response=\"abc\", qop=auth, nc=0000000a, cnonce=\"c\", algorithm=SHA-256";
        let r = DigestResponse::parse(v).unwrap().unwrap();
        assert_eq!(r.username, "bob");
        assert_eq!(r.uri, "sip:a@b;x=\"y");
        assert_eq!(r.nc.as_deref(), Some("0000000a"));
        assert_eq!(r.algorithm.as_deref(), Some("SHA-256"));
        // RFC 4475 regaut01.
        assert_eq!(
            DigestResponse::parse("NoOneKnowsThisScheme opaque-data=here"),
            Ok(None)
        );
        assert!(DigestResponse::parse("Digest username=\"bob").is_err());
        assert!(DigestResponse::parse("Digest realm=\"r\"").is_err());
        assert!(DigestResponse::parse("Digest username=a, username=b").is_err());
    }

    proptest::proptest! {
        #[test]
        fn parsing_arbitrary_values_never_panics(s in ".{0,200}") {
            let _ = DigestResponse::parse(&s);
            let _ = Challenge::parse(&s);
            let _ = DigestResponse::parse(&format!("Digest {s}"));
        }
    }
}
