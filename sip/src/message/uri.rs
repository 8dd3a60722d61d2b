//! URIs: `sip:` / `sips:` (RFC 3261 §19.1, §25.1), `tel:` (RFC 3966) and any other scheme kept
//! opaque (RFC 3261 §19.1: an element must not fail on unknown schemes in header fields).
//!
//! A [`Uri`] keeps its text exactly as received — `%` escapes are never decoded or re-encoded —
//! and records where user, host, port, parameters and headers are. Use
//! [`unescape`](super::unescape) when comparing, or [`Uri::equivalent`] for RFC 3261 §19.1.4
//! comparison.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use super::lex;
use super::params::{self, Params};
use super::Text;

/// The scheme of a [`Uri`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Sip,
    Sips,
    Tel,
    /// Anything else: the URI is kept opaque.
    Other,
}

/// Why a URI could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    #[error("URI has no scheme")]
    NoScheme,
    #[error("URI contains whitespace or control characters")]
    BadCharacter,
    #[error("SIP URI has an empty or malformed host")]
    BadHost,
    #[error("SIP URI has a malformed port")]
    BadPort,
    #[error("SIP URI has a malformed user part")]
    BadUser,
    #[error("URI has malformed parameters")]
    BadParams,
    #[error("tel URI has an empty number")]
    BadTelNumber,
}

/// A parsed URI over shared text. Cheap to clone. Equality (`==`) is exact text equality; use
/// [`Uri::equivalent`] for the RFC 3261 comparison rules.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Uri {
    raw: Text,
    scheme: Scheme,
    user: Option<Range<u32>>,
    password: Option<Range<u32>>,
    host: Range<u32>,
    port: Option<u16>,
    params: Range<u32>,
    headers: Option<Range<u32>>,
}

impl Uri {
    /// Parse a complete URI (as found in a Request-URI or inside `<...>`).
    pub fn parse(raw: impl Into<Text>) -> Result<Uri, UriError> {
        Self::parse_text(raw.into())
    }

    pub(crate) fn parse_text(raw: Text) -> Result<Uri, UriError> {
        match scan_sip(raw.as_bytes(), 0, None) {
            Some((parts, end)) if end == raw.len() => Ok(parts.into_uri(raw)),
            _ => Self::parse_general(raw),
        }
    }

    /// The URI that starts at `start` in `text` (a part of `src`) and ends at the first `term`
    /// byte (`<sip:…>` in a name-addr), when it is a regular `sip:`/`sips:` URI: the URI and the
    /// position of `term`. `None` when the general parser must decide.
    #[inline]
    pub(crate) fn scan_until(
        src: &Text,
        text: &str,
        start: usize,
        term: u8,
    ) -> Option<(Uri, usize)> {
        let (parts, end) = scan_sip(text.as_bytes(), start, Some(term))?;
        if text.as_bytes().get(end) != Some(&term) {
            return None;
        }
        let raw = src.slice_ref(text.get(start..end)?);
        Some((parts.into_uri(raw), end))
    }

    /// [`Uri::parse_text`] for every URI: other schemes, IPv6 references, escapes, errors.
    pub(crate) fn parse_general(raw: Text) -> Result<Uri, UriError> {
        let s: &str = &raw;
        // Without early exit the compiler checks 16 or 32 bytes at a time; URIs are short and
        // almost always clean.
        let bad = s
            .bytes()
            .fold(false, |bad, b| bad | (b <= b' ') | (b == 0x7f));
        if bad {
            return Err(UriError::BadCharacter);
        }
        let b = s.as_bytes();
        let find_from = |from: usize, c: u8| -> Option<usize> {
            b.get(from..)?
                .iter()
                .position(|&x| x == c)
                .map(|i| from + i)
        };
        let colon = find_from(0, b':').ok_or(UriError::NoScheme)?;
        let scheme_str = &s[..colon];
        let sb = scheme_str.as_bytes();
        if sb.is_empty()
            || !sb[0].is_ascii_alphabetic()
            || !sb
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        {
            return Err(UriError::NoScheme);
        }
        let scheme = if scheme_str.eq_ignore_ascii_case("sip") {
            Scheme::Sip
        } else if scheme_str.eq_ignore_ascii_case("sips") {
            Scheme::Sips
        } else if scheme_str.eq_ignore_ascii_case("tel") {
            Scheme::Tel
        } else {
            Scheme::Other
        };
        let rest_start = colon + 1;
        let len = s.len();
        let r = |a: usize, b: usize| a as u32..b as u32;
        match scheme {
            Scheme::Other => Ok(Uri {
                scheme,
                user: None,
                password: None,
                host: r(rest_start, rest_start),
                port: None,
                params: r(len, len),
                headers: None,
                raw,
            }),
            Scheme::Tel => {
                let num_end = find_from(rest_start, b';').unwrap_or(len);
                if num_end == rest_start {
                    return Err(UriError::BadTelNumber);
                }
                let ok = s[rest_start..num_end].bytes().all(|b| {
                    b.is_ascii_hexdigit()
                        || matches!(b, b'+' | b'-' | b'.' | b'(' | b')' | b'*' | b'#')
                });
                if !ok {
                    return Err(UriError::BadTelNumber);
                }
                let uri = Uri {
                    scheme,
                    user: Some(r(rest_start, num_end)),
                    password: None,
                    host: r(num_end, num_end),
                    port: None,
                    params: r(num_end, len),
                    headers: None,
                    raw,
                };
                if !Params::check_str(uri.slice(uri.params.clone()), b"[]/:&+$%") {
                    return Err(UriError::BadParams);
                }
                Ok(uri)
            }
            Scheme::Sip | Scheme::Sips => {
                // userinfo: everything up to the first '@' (neither host, params nor headers may
                // contain an unescaped '@'; the user part may contain ';' '?' '/').
                let (user, password, host_start) = match find_from(rest_start, b'@') {
                    Some(at) => {
                        let (u, p) = match find_from(rest_start, b':').filter(|c| *c < at) {
                            Some(c) => (r(rest_start, c), Some(r(c + 1, at))),
                            None => (r(rest_start, at), None),
                        };
                        (Some(u), p, at + 1)
                    }
                    None => (None, None, rest_start),
                };
                if let Some(u) = &user {
                    let us = &s[u.start as usize..u.end as usize];
                    if us.is_empty() || !user_chars_valid(us) {
                        return Err(UriError::BadUser);
                    }
                }
                if let Some(p) = &password {
                    let ps = &s[p.start as usize..p.end as usize];
                    if !user_chars_valid(ps) {
                        return Err(UriError::BadUser);
                    }
                }
                let hp_end = b
                    .get(host_start..)
                    .and_then(|t| t.iter().position(|&x| x == b';' || x == b'?'))
                    .map_or(len, |i| host_start + i);
                let hostport = &s[host_start..hp_end];
                let (host_len, port) = split_hostport(hostport)?;
                let headers_start = find_from(hp_end, b'?');
                let params_end = headers_start.unwrap_or(len);
                let uri = Uri {
                    scheme,
                    user,
                    password,
                    host: r(host_start, host_start + host_len),
                    port,
                    params: r(hp_end, params_end),
                    headers: headers_start.map(|h| r(h + 1, len)),
                    raw,
                };
                if !Params::check_str(uri.slice(uri.params.clone()), b"[]/:&+$%") {
                    return Err(UriError::BadParams);
                }
                Ok(uri)
            }
        }
    }

    /// Build `sip:user@host[:port]` (user may be empty for `sip:host`).
    pub fn sip(user: Option<&str>, host: &str, port: Option<u16>) -> Result<Uri, UriError> {
        let mut s = String::from("sip:");
        if let Some(u) = user {
            s.push_str(u);
            s.push('@');
        }
        s.push_str(host);
        if let Some(p) = port {
            s.push(':');
            s.push_str(&p.to_string());
        }
        Uri::parse(s)
    }

    /// The URI text exactly as received.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The URI text as shared [`Text`].
    pub fn as_text(&self) -> &Text {
        &self.raw
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The scheme as written (`sip`, `SIP`, `urn`, ...).
    pub fn scheme_str(&self) -> &str {
        let s: &str = &self.raw;
        &s[..lex::find_byte(s, b':').unwrap_or(0)]
    }

    /// True for `sip:` and `sips:`.
    pub fn is_sip(&self) -> bool {
        matches!(self.scheme, Scheme::Sip | Scheme::Sips)
    }

    /// The user part of a SIP URI (escapes kept), or the number of a `tel:` URI.
    pub fn user(&self) -> Option<&str> {
        self.user.clone().map(|r| self.slice(r))
    }

    /// The password of a SIP URI (`sip:user:password@host`).
    pub fn password(&self) -> Option<&str> {
        self.password.clone().map(|r| self.slice(r))
    }

    /// The host of a SIP URI (IPv6 references keep their brackets); empty for tel/opaque.
    pub fn host(&self) -> &str {
        self.slice(self.host.clone())
    }

    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// URI parameters (`;transport=tcp;lr`).
    pub fn params(&self) -> Params {
        let s = self.slice(self.params.clone());
        Params::from_text(self.raw.slice_ref(s))
    }

    /// The raw `?headers` part, without the `?`.
    pub fn headers(&self) -> Option<&str> {
        self.headers.clone().map(|r| self.slice(r))
    }

    /// Everything after `scheme:` (the opaque part for unknown schemes).
    pub fn opaque(&self) -> &str {
        let s: &str = &self.raw;
        &s[lex::find_byte(s, b':').map_or(0, |c| c + 1)..]
    }

    /// `transport` URI parameter, lowercased comparison left to the caller.
    pub fn transport(&self) -> Option<String> {
        self.params().value("transport").map(str::to_owned)
    }

    /// A copy with URI parameter `name[=value]` set.
    pub fn with_param(&self, name: &str, value: Option<&str>) -> Result<Uri, UriError> {
        let s: &str = &self.raw;
        let params = self.params().with(name, value);
        let mut out = String::with_capacity(s.len() + name.len() + 8);
        out.push_str(&s[..self.params.start as usize]);
        out.push_str(params.as_str());
        out.push_str(&s[self.params.end as usize..]);
        Uri::parse(out)
    }

    /// RFC 3261 §19.1.4 comparison for SIP URIs: scheme, user (escapes resolved, case-sensitive),
    /// password, host (case-insensitive), port, the `user`/`ttl`/`method`/`maddr`/`transport`
    /// parameters when present in either, other parameters when present in both, and headers.
    /// Other schemes compare exactly after resolving escapes.
    pub fn equivalent(&self, other: &Uri) -> bool {
        if self.scheme != other.scheme {
            return false;
        }
        if !self.is_sip() {
            return self.scheme_str().eq_ignore_ascii_case(other.scheme_str())
                && lex::unescape(self.opaque()) == lex::unescape(other.opaque());
        }
        if esc(self.user()) != esc(other.user()) || esc(self.password()) != esc(other.password()) {
            return false;
        }
        if !self.host().eq_ignore_ascii_case(other.host()) || self.port != other.port {
            return false;
        }
        let (pa, pb) = (self.params(), other.params());
        let eq_val = |a: Option<&str>, b: Option<&str>| match (a, b) {
            (Some(a), Some(b)) => lex::unescape(a).eq_ignore_ascii_case(&lex::unescape(b)),
            (None, None) => true,
            _ => false,
        };
        for name in ["user", "ttl", "method", "maddr", "transport"] {
            if pa.has(name) != pb.has(name) || !eq_val(pa.value(name), pb.value(name)) {
                return false;
            }
        }
        for p in pa.iter() {
            if let Some(q) = pb.get(p.name) {
                if !eq_val(p.value, q.value) {
                    return false;
                }
            }
        }
        match (self.headers(), other.headers()) {
            (None, None) => true,
            (Some(a), Some(b)) => lex::unescape(a) == lex::unescape(b),
            _ => false,
        }
    }

    fn slice(&self, r: Range<u32>) -> &str {
        let s: &str = &self.raw;
        s.get(r.start as usize..r.end as usize).unwrap_or("")
    }
}

fn esc(a: Option<&str>) -> Option<std::borrow::Cow<'_, [u8]>> {
    a.map(lex::unescape)
}

/// Where the parts of a URI are, relative to its start.
struct Parts {
    scheme: Scheme,
    user: Option<Range<u32>>,
    password: Option<Range<u32>>,
    host: Range<u32>,
    port: Option<u16>,
    params: Range<u32>,
    headers: Option<Range<u32>>,
}

impl Parts {
    fn into_uri(self, raw: Text) -> Uri {
        Uri {
            raw,
            scheme: self.scheme,
            user: self.user,
            password: self.password,
            host: self.host,
            port: self.port,
            params: self.params,
            headers: self.headers,
        }
    }
}

/// One pass over a regular `sip:`/`sips:` URI starting at `start` in `b`: user and password
/// of user characters, a host name or IPv4 address, a port, `;name=value` parameters without
/// quotes or LWS, `?headers` without whitespace or controls. It ends at the length of `b` or at
/// `term`. Returns the parts (relative to `start`) and the end, or `None` for anything else
/// (IPv6, other schemes, odd or malformed URIs): [`Uri::parse_general`] then decides. Whenever
/// this returns, the general parser returns the same parts for the same text.
#[inline(always)]
fn scan_sip(b: &[u8], start: usize, term: Option<u8>) -> Option<(Parts, usize)> {
    use lex::{skip_class, C_HOST, C_USER, C_USER_PLAIN};
    let s = b.get(start..)?;
    let (scheme, rest) = match s.get(..5)? {
        [b's' | b'S', b'i' | b'I', b'p' | b'P', b':', _] => (Scheme::Sip, 4),
        [b's' | b'S', b'i' | b'I', b'p' | b'P', b's' | b'S', b':'] => (Scheme::Sips, 5),
        _ => return None,
    };
    let ends = |i: usize| match s.get(i) {
        None => true,
        Some(&c) => Some(c) == term,
    };
    // userinfo: user characters up to '@'. Stopping at the end (or `term`) instead means there is
    // no '@' in the URI; any other byte is left to the general parser. The usual user part has
    // neither password nor escapes: one run of plain user characters.
    let plain = skip_class(s, rest, C_USER_PLAIN);
    let (user, password, host_start) = if s.get(plain) == Some(&b'@') && plain > rest {
        (Some(rest as u32..plain as u32), None, plain + 1)
    } else {
        let stop = skip_class(s, plain, C_USER);
        if s.get(stop) == Some(&b'@') {
            let info = &s[rest..stop];
            let (u, p) = match info.iter().position(|&c| c == b':') {
                Some(c) => (&info[..c], Some(&info[c + 1..])),
                None => (info, None),
            };
            if u.is_empty() {
                return None;
            }
            let escapes_ok = |x: &[u8]| !x.contains(&b'%') || lex::escapes_valid_bytes(x);
            if !escapes_ok(u) || !p.is_none_or(escapes_ok) {
                return None;
            }
            let r = |a: usize, len: usize| a as u32..(a + len) as u32;
            let user = r(rest, u.len());
            let password = p.map(|p| r(rest + u.len() + 1, p.len()));
            (Some(user), password, stop + 1)
        } else if ends(stop) {
            (None, None, rest)
        } else {
            return None;
        }
    };
    let host_end = skip_class(s, host_start, C_HOST);
    if host_end == host_start {
        return None;
    }
    let (port, hp_end) = scan_port(s, host_end)?;
    let params_end = params::scan(s, hp_end, lex::C_URI_VALUE, false)?;
    let (headers, end) = if s.get(params_end) == Some(&b'?') {
        let h0 = params_end + 1;
        let mut h1 = h0;
        while let Some(&c) = s.get(h1) {
            if Some(c) == term || c <= b' ' || c == 0x7f {
                break;
            }
            h1 += 1;
        }
        (Some(h0 as u32..h1 as u32), h1)
    } else {
        (None, params_end)
    };
    if !ends(end) {
        return None;
    }
    let r = |a: usize, z: usize| a as u32..z as u32;
    Some((
        Parts {
            scheme,
            user,
            password,
            host: r(host_start, host_end),
            port,
            params: r(hp_end, params_end),
            headers,
        },
        start + end,
    ))
}

/// An optional `:port` at `at` in `b` (1 to 5 digits, at most 65535): the port and the position
/// after it; `None` when there is a `:` without a valid port.
#[inline]
pub(crate) fn scan_port(b: &[u8], at: usize) -> Option<(Option<u16>, usize)> {
    if b.get(at) != Some(&b':') {
        return Some((None, at));
    }
    let d0 = at + 1;
    let mut d1 = d0;
    let mut n = 0u32;
    while let Some(&d) = b.get(d1) {
        if !d.is_ascii_digit() || d1 - d0 == 5 {
            break;
        }
        n = n * 10 + u32::from(d - b'0');
        d1 += 1;
    }
    if d1 == d0 || b.get(d1).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    Some((Some(u16::try_from(n).ok()?), d1))
}

/// `user` / `password` characters of RFC 3261: unreserved, escaped, user-unreserved (the
/// lexer's [`lex::C_USER`] class).
fn is_user_char(b: u8) -> bool {
    lex::is(b, lex::C_USER)
}

/// Every byte of `s` a user/password character and every `%` a valid escape (checked only when
/// there is a `%`, which is rare).
fn user_chars_valid(s: &str) -> bool {
    let (mut ok, mut pct) = (true, false);
    for &c in s.as_bytes() {
        ok &= is_user_char(c);
        pct |= c == b'%';
    }
    ok && (!pct || lex::escapes_valid(s))
}

/// Characters of a host name or IPv4 address: alphanumerics, `-` and `.`.
static HOST: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = c.is_ascii_alphanumeric() || c == b'-' || c == b'.';
        i += 1;
    }
    t
};

/// Split `host[:port]`, returning the host length and port. One pass over the bytes.
pub(crate) fn split_hostport(hp: &str) -> Result<(usize, Option<u16>), UriError> {
    let b = hp.as_bytes();
    let host_len = if b.first() == Some(&b'[') {
        let end = b.iter().position(|&c| c == b']').ok_or(UriError::BadHost)?;
        let inner = &b[1..end];
        if inner.is_empty()
            || !inner
                .iter()
                .all(|c| c.is_ascii_hexdigit() || *c == b':' || *c == b'.')
        {
            return Err(UriError::BadHost);
        }
        end + 1
    } else {
        let mut i = 0;
        while i < b.len() && b[i] != b':' {
            if !HOST[b[i] as usize] {
                return Err(UriError::BadHost);
            }
            i += 1;
        }
        if i == 0 {
            return Err(UriError::BadHost);
        }
        i
    };
    let rest = &b[host_len..];
    if rest.is_empty() {
        return Ok((host_len, None));
    }
    let digits = rest.strip_prefix(b":").ok_or(UriError::BadPort)?;
    if digits.is_empty() || digits.len() > 5 {
        return Err(UriError::BadPort);
    }
    let mut port: u32 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Err(UriError::BadPort);
        }
        port = port * 10 + u32::from(d - b'0');
    }
    let port = u16::try_from(port).map_err(|_| UriError::BadPort)?;
    Ok((host_len, Some(port)))
}

impl FromStr for Uri {
    type Err = UriError;
    fn from_str(s: &str) -> Result<Uri, UriError> {
        Uri::parse(s.to_owned())
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl fmt::Debug for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Uri({:?})", &*self.raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_uri_parts_keep_escapes() {
        let u: Uri = "sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31"
            .parse()
            .unwrap();
        assert_eq!(u.user(), Some("cal%6Cer"));
        assert_eq!(u.host(), "host5.example.net");
        assert_eq!(u.params().value("n%61me"), Some("v%61lue%25%34%31"));
        assert_eq!(
            u.as_str(),
            "sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31"
        );
        assert_eq!(&*crate::message::unescape(u.user().unwrap()), b"caller");
    }

    #[test]
    fn semicolons_in_user_part_stay_in_the_user() {
        let u: Uri = "sip:user;par=u%40example.net@example.com".parse().unwrap();
        assert_eq!(u.user(), Some("user;par=u%40example.net"));
        assert_eq!(u.host(), "example.com");
        assert!(u.params().is_empty());
    }

    #[test]
    fn ports_ipv6_and_headers() {
        let u: Uri = "sips:[2001:db8::1]:5061;transport=tcp?Route=%3Csip:a%3E"
            .parse()
            .unwrap();
        assert_eq!(u.scheme(), Scheme::Sips);
        assert_eq!(u.host(), "[2001:db8::1]");
        assert_eq!(u.port(), Some(5061));
        assert_eq!(u.params().value("transport"), Some("tcp"));
        assert_eq!(u.headers(), Some("Route=%3Csip:a%3E"));
        assert_eq!("sip:h:99999".parse::<Uri>(), Err(UriError::BadPort));
        assert_eq!("sip:".parse::<Uri>(), Err(UriError::BadHost));
    }

    #[test]
    fn tel_and_opaque_schemes() {
        let t: Uri = "tel:+31-20-555-0123;phone-context=+31".parse().unwrap();
        assert_eq!(t.scheme(), Scheme::Tel);
        assert_eq!(t.user(), Some("+31-20-555-0123"));
        assert_eq!(t.params().value("phone-context"), Some("+31"));
        let o: Uri = "soap.beep://192.0.2.103:3002".parse().unwrap();
        assert_eq!(o.scheme(), Scheme::Other);
        assert_eq!(o.scheme_str(), "soap.beep");
        assert_eq!(o.opaque(), "//192.0.2.103:3002");
        assert_eq!("<sip:a@b>".parse::<Uri>(), Err(UriError::NoScheme));
        assert_eq!("sip:a@b; lr".parse::<Uri>(), Err(UriError::BadCharacter));
    }

    #[test]
    fn rfc3261_equivalence() {
        let a: Uri = "sip:%61lice@ATLANTA.com;transport=TCP".parse().unwrap();
        let b: Uri = "sip:alice@AtLanTa.CoM;Transport=tcp".parse().unwrap();
        assert!(a.equivalent(&b));
        assert_ne!(a, b);
        let c: Uri = "sip:alice@atlanta.com".parse().unwrap();
        assert!(!a.equivalent(&c));
        let d: Uri = "sip:ALICE@atlanta.com;transport=tcp".parse().unwrap();
        assert!(!a.equivalent(&d));
    }
}
