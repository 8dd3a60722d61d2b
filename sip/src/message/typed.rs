//! Typed, lazily parsed views of header values (RFC 3261 §20; RFC 3515 Refer-To, RFC 3892
//! Referred-By, RFC 3891 Replaces, RFC 4028 Session-Expires, RFC 3326 Reason). Nothing is parsed
//! until an accessor on [`Headers`] is called; results share the message buffer.

use std::borrow::Cow;
use std::fmt;

use super::header::{HeaderName, Headers};
use super::lex;
use super::method::Method;
use super::name_addr::{Contact, NameAddr};
use super::params::{self, Params};
use super::uri::{scan_port, split_hostport};
use super::Text;

/// A header that is missing, repeated where only one is allowed, or malformed. `Display` gives a
/// reason phrase suitable for a 400 response ("Missing Call-ID header").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("Missing {0} header")]
    Missing(HeaderName),
    #[error("Duplicate {0} header")]
    Duplicate(HeaderName),
    #[error("Malformed {0} header")]
    Malformed(HeaderName),
}

/// The RFC 3261 magic cookie that starts every RFC 3261 branch.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// One Via value: `SIP/2.0/UDP host:port;branch=...;received=...;rport`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Via {
    /// Transport token as received (`UDP`, `tcp`, `TLS`, `SCTP`, `WS`, unknown tokens too).
    pub transport: Text,
    /// sent-by host (IPv6 references keep brackets).
    pub host: Text,
    /// sent-by port.
    pub port: Option<u16>,
    pub params: Params,
}

impl Via {
    /// `SIP/2.0/<transport> host[:port];branch=<branch>`.
    pub fn new(transport: &str, host: &str, port: Option<u16>, branch: &str) -> Via {
        Via {
            transport: Text::from(transport),
            host: Text::from(host),
            port,
            params: Params::from_raw(format!(";branch={branch}")),
        }
    }

    /// Parse one Via value (strict: empty parameters or a non-`SIP/2.0` protocol are errors).
    pub fn parse(v: &Text) -> Option<Via> {
        Self::parse_in(v, v)
    }

    /// [`Via::parse`] of `v`, a part of `src`.
    pub(crate) fn parse_in(src: &Text, v: &str) -> Option<Via> {
        match Self::scan(src, v) {
            Some((via, end)) if end == v.len() => Some(via),
            _ => Self::parse_general(src, v),
        }
    }

    /// One pass over a regular Via value at the start of `v`: `SIP/2.0/<transport> host[:port]`
    /// with a host name or IPv4 address and regular parameters. Returns it and where it ends
    /// (the length of `v`, or the `,` before the next Via value), or `None` for anything else
    /// ([`Via::parse`]'s general path then decides). The result is what the general path gives
    /// for `v` up to that end.
    pub(crate) fn scan(src: &Text, v: &str) -> Option<(Via, usize)> {
        let b = v.as_bytes();
        let proto = b.get(..8)?;
        if !proto[..3].eq_ignore_ascii_case(b"SIP") || &proto[3..] != b"/2.0/" {
            return None;
        }
        let t_end = lex::skip_class(b, 8, lex::C_TOKEN);
        let mut h = t_end;
        while matches!(b.get(h), Some(b' ' | b'\t')) {
            h += 1;
        }
        let host_end = lex::skip_class(b, h, lex::C_HOST);
        if t_end == 8 || h == t_end || host_end == h {
            return None;
        }
        let (port, hp_end) = scan_port(b, host_end)?;
        let end = params::scan(b, hp_end, lex::C_VIA_VALUE, true)?;
        if end != b.len() && b[end] != b',' {
            return None;
        }
        // The usual transports are shared static text: no reference count to touch.
        let transport = match &b[8..t_end] {
            b"UDP" => Text::from_static("UDP"),
            b"TCP" => Text::from_static("TCP"),
            b"TLS" => Text::from_static("TLS"),
            _ => src.slice_ref(v.get(8..t_end)?),
        };
        Some((
            Via {
                transport,
                host: src.slice_ref(v.get(h..host_end)?),
                port,
                params: Params::from_text(src.slice_ref(v.get(hp_end..end)?)),
            },
            end,
        ))
    }

    /// [`Via::parse`] for any value: LWS, IPv6, odd parameters, errors.
    pub(crate) fn parse_general(src: &Text, v: &str) -> Option<Via> {
        let via = Self::parse_lenient_in(src, v, false)?;
        if !via.params.check(b"[]:") {
            return None;
        }
        Some(via)
    }

    /// Salvage sent-protocol and sent-by, ignoring broken parameters (used to answer 400);
    /// `any_version` also accepts `SIP/x.y` other than 2.0 (to answer 505).
    pub(crate) fn parse_lenient(v: &Text, any_version: bool) -> Option<Via> {
        Self::parse_lenient_in(v, v, any_version)
    }

    /// [`Via::parse_lenient`] of `v`, a part of `src`.
    fn parse_lenient_in(src: &Text, v: &str, any_version: bool) -> Option<Via> {
        let s = lex::trim(v);
        let (name, rest) = lex::split_byte(s, b'/')?;
        let (version, rest) = lex::split_byte(rest, b'/')?;
        if !lex::trim(name).eq_ignore_ascii_case("SIP")
            || (!any_version && lex::trim(version) != "2.0")
        {
            return None;
        }
        let rest = rest.trim_start_matches([' ', '\t']);
        let t_end = lex::find_ws(rest).unwrap_or(rest.len());
        let transport = &rest[..t_end];
        if !lex::is_token(transport) {
            return None;
        }
        let rest = &rest[t_end..];
        let semi = lex::find_byte(rest, b';').unwrap_or(rest.len());
        let sent_by = lex::trim(&rest[..semi]);
        let (hl, port) = split_hostport(sent_by).ok()?;
        let params = lex::trim(&rest[semi..]);
        Some(Via {
            transport: src.slice_ref(transport),
            host: src.slice_ref(&sent_by[..hl]),
            port,
            params: Params::from_text(src.slice_ref(params)),
        })
    }

    pub fn branch(&self) -> Option<&str> {
        self.params.value("branch")
    }

    /// `received` parameter.
    pub fn received(&self) -> Option<&str> {
        self.params.value("received")
    }

    /// `rport`: `None` absent, `Some(None)` flag only, `Some(Some(port))` filled in.
    pub fn rport(&self) -> Option<Option<u16>> {
        let p = self.params.get("rport")?;
        Some(p.value.and_then(|v| v.parse().ok()))
    }

    /// `maddr` parameter.
    pub fn maddr(&self) -> Option<&str> {
        self.params.value("maddr")
    }

    /// True if the branch starts with the RFC 3261 magic cookie and has something after it.
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch()
            .is_some_and(|b| b.len() > MAGIC_COOKIE.len() && b.starts_with(MAGIC_COOKIE))
    }

    /// True for a reliable (stream) transport.
    pub fn is_reliable(&self) -> bool {
        !self.transport.eq_ignore_ascii_case("UDP")
    }

    /// A copy with `received`/`rport` filled in as a server does (RFC 3261 §18.2.1, RFC 3581).
    pub fn with_received(&self, ip: &str, port: Option<u16>) -> Via {
        let mut v = self.clone();
        v.params = v.params.with("received", Some(ip));
        if let (Some(_), Some(p)) = (self.rport(), port) {
            v.params = v.params.with("rport", Some(&p.to_string()));
        }
        v
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/2.0/{} {}", self.transport, self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write!(f, "{}", self.params)
    }
}

impl fmt::Debug for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Via({self})")
    }
}

/// CSeq: sequence number and method.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

impl CSeq {
    pub fn parse(v: &str) -> Option<CSeq> {
        // The usual `digits SP method`, in one pass.
        let b = v.as_bytes();
        let d = lex::skip_class(b, 0, lex::C_DIGIT);
        let mut m = d;
        while matches!(b.get(m), Some(b' ' | b'\t')) {
            m += 1;
        }
        if (1..=10).contains(&d) && m > d && lex::skip_class(b, m, lex::C_TOKEN) == b.len() {
            if let (Some(seq), Some(method)) = (lex::parse_u32(&v[..d]), v.get(m..)) {
                if !method.is_empty() {
                    return Some(CSeq {
                        seq,
                        method: Method::parse(method),
                    });
                }
            }
        }
        Self::parse_general(v)
    }

    /// [`CSeq::parse`] for any value: LWS around the parts, errors.
    pub(crate) fn parse_general(v: &str) -> Option<CSeq> {
        let s = lex::trim(v);
        let split = lex::find_ws(s)?;
        let seq = lex::parse_u32(&s[..split])?;
        let m = lex::trim(&s[split..]);
        if !lex::is_token(m) {
            return None;
        }
        Some(CSeq {
            seq,
            method: Method::parse(m),
        })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

/// Authorization / Proxy-Authorization credentials or WWW-/Proxy-Authenticate challenge
/// (RFC 3261 §20.7, §20.44; RFC 7616 params). Parameter order is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    pub scheme: Text,
    /// `(name, raw value)` with quotes kept; [`Auth::param`] unquotes.
    pub params: Vec<(Text, Text)>,
    /// Scheme data that is not `name=value` pairs (e.g. Basic credentials).
    pub token68: Option<Text>,
}

impl Auth {
    /// A new challenge/credentials with no params yet.
    pub fn new(scheme: &str) -> Auth {
        Auth {
            scheme: Text::from(scheme),
            params: Vec::new(),
            token68: None,
        }
    }

    /// Append a parameter written as a quoted string.
    pub fn quoted(mut self, name: &str, value: &str) -> Auth {
        self.params
            .push((Text::from(name), Text::from(lex::quote(value))));
        self
    }

    /// Append a parameter written as a bare token (`algorithm=MD5`, `nc=00000001`).
    pub fn token(mut self, name: &str, value: &str) -> Auth {
        self.params.push((Text::from(name), Text::from(value)));
        self
    }

    pub fn parse(v: &Text) -> Option<Auth> {
        Self::parse_in(v, v)
    }

    /// [`Auth::parse`] of `v`, a part of `src`.
    pub(crate) fn parse_in(src: &Text, v: &str) -> Option<Auth> {
        let s = lex::trim(v);
        let end = lex::find_ws(s).unwrap_or(s.len());
        let scheme = &s[..end];
        if !lex::is_token(scheme) {
            return None;
        }
        let rest = lex::trim(&s[end..]);
        let mut params = Vec::new();
        let mut token68 = None;
        if !rest.is_empty() {
            for piece in lex::split_top(rest, b',') {
                let piece = lex::trim(piece);
                if piece.is_empty() {
                    continue;
                }
                match lex::split_byte(piece, b'=') {
                    Some((n, val)) if lex::is_token(lex::trim(n)) => {
                        let val = lex::trim(val);
                        if val.starts_with('"') && lex::quoted_len(val) != Some(val.len()) {
                            return None;
                        }
                        params.push((src.slice_ref(lex::trim(n)), src.slice_ref(val)));
                    }
                    _ => {
                        token68 = Some(src.slice_ref(rest));
                        params.clear();
                        break;
                    }
                }
            }
        }
        Some(Auth {
            scheme: src.slice_ref(scheme),
            params,
            token68,
        })
    }

    /// Parameter value with quotes removed (case-insensitive name).
    pub fn param(&self, name: &str) -> Option<Cow<'_, str>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| lex::unquote(v))
    }
}

impl fmt::Display for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.scheme)?;
        if let Some(t) = &self.token68 {
            return write!(f, " {t}");
        }
        for (i, (n, v)) in self.params.iter().enumerate() {
            let sep = if i == 0 { " " } else { ", " };
            write!(f, "{sep}{n}={v}")?;
        }
        Ok(())
    }
}

/// Session-Expires (RFC 4028 §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionExpires {
    pub delta: u32,
    /// `refresher=uac` / `uas`.
    pub refresher: Option<Refresher>,
    pub params: Params,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresher {
    Uac,
    Uas,
}

/// Retry-After (RFC 3261 §20.33).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryAfter {
    pub delta: u32,
    pub comment: Option<Text>,
    pub params: Params,
}

/// One Reason value (RFC 3326): `SIP ;cause=200 ;text="Call completed elsewhere"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    pub protocol: Text,
    pub params: Params,
}

impl Reason {
    pub fn cause(&self) -> Option<u16> {
        self.params.value("cause").and_then(|c| c.parse().ok())
    }

    pub fn text(&self) -> Option<Cow<'_, str>> {
        self.params.value("text").map(lex::unquote)
    }
}

/// Replaces (RFC 3891): `call-id;to-tag=..;from-tag=..[;early-only]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replaces {
    pub call_id: Text,
    pub to_tag: Text,
    pub from_tag: Text,
    pub early_only: bool,
}

/// Typed accessors. Single-valued headers report [`HeaderError::Duplicate`] when repeated.
impl Headers {
    /// The one value of a single-valued header.
    pub fn single(&self, name: &HeaderName) -> Result<&Text, HeaderError> {
        match self.first_and_count(name) {
            (Some(v), 1) => Ok(v),
            (None, _) => Err(HeaderError::Missing(name.clone())),
            (Some(_), _) => Err(HeaderError::Duplicate(name.clone())),
        }
    }

    /// [`Headers::single`] as the value with the shared text it is part of, without making the
    /// value a text of its own (see [`Headers::source`]).
    fn single_source(&self, name: &HeaderName) -> Result<(&Text, &str), HeaderError> {
        match self.first_source_and_count(name) {
            (Some(v), 1) => Ok(v),
            (None, _) => Err(HeaderError::Missing(name.clone())),
            (Some(_), _) => Err(HeaderError::Duplicate(name.clone())),
        }
    }

    fn single_opt(&self, name: &HeaderName) -> Result<Option<&str>, HeaderError> {
        match self.single_source(name) {
            Ok((_, v)) => Ok(Some(v)),
            Err(HeaderError::Missing(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every Via value in order (top first).
    pub fn vias(&self) -> impl Iterator<Item = Result<Via, HeaderError>> + '_ {
        self.values(&HeaderName::Via)
            .map(|v| Via::parse(&v).ok_or(HeaderError::Malformed(HeaderName::Via)))
    }

    /// The top Via.
    pub fn top_via(&self) -> Result<Via, HeaderError> {
        // The usual first line parses in one pass, up to its end or the comma before the next
        // value, without splitting the line first.
        if let Some((via, _)) = self
            .source(&HeaderName::Via)
            .and_then(|(src, v)| Via::scan(src, v))
        {
            return Ok(via);
        }
        self.vias()
            .next()
            .unwrap_or(Err(HeaderError::Missing(HeaderName::Via)))
    }

    /// From.
    pub fn from(&self) -> Result<NameAddr, HeaderError> {
        self.name_addr(&HeaderName::From)
    }

    /// To.
    pub fn to(&self) -> Result<NameAddr, HeaderError> {
        self.name_addr(&HeaderName::To)
    }

    fn name_addr(&self, name: &HeaderName) -> Result<NameAddr, HeaderError> {
        let (src, v) = self.single_source(name)?;
        NameAddr::parse_in(src, v).map_err(|_| HeaderError::Malformed(name.clone()))
    }

    /// Call-ID (RFC 3261 `callid = word ["@" word]`).
    pub fn call_id(&self) -> Result<&Text, HeaderError> {
        let v = self.single(&HeaderName::CallId)?;
        let b = v.as_bytes();
        // word characters and '@' throughout, at most one '@', and not at either end
        let (words, ats) = b.iter().fold((true, 0usize), |(w, a), &c| {
            (w & lex::is(c, lex::C_WORD), a + usize::from(c == b'@'))
        });
        let ok = words
            && match ats {
                0 => !b.is_empty(),
                1 => b.first() != Some(&b'@') && b.last() != Some(&b'@'),
                _ => false,
            };
        if !ok {
            return Err(HeaderError::Malformed(HeaderName::CallId));
        }
        Ok(v)
    }

    /// CSeq.
    pub fn cseq(&self) -> Result<CSeq, HeaderError> {
        let (_, v) = self.single_source(&HeaderName::CSeq)?;
        CSeq::parse(v).ok_or(HeaderError::Malformed(HeaderName::CSeq))
    }

    /// Every Contact value, in order.
    pub fn contacts(&self) -> impl Iterator<Item = Result<Contact, HeaderError>> + '_ {
        self.values(&HeaderName::Contact).map(|v| {
            if &*v == "*" {
                Ok(Contact::Star)
            } else {
                NameAddr::parse_text(&v)
                    .map(Contact::Addr)
                    .map_err(|_| HeaderError::Malformed(HeaderName::Contact))
            }
        })
    }

    /// The first Contact (the remote target of a dialog-creating message).
    pub fn contact(&self) -> Result<Contact, HeaderError> {
        // The usual first line parses in one pass, up to its end or the comma before the next
        // value, without splitting the line first.
        if let Some((src, v)) = self.source(&HeaderName::Contact) {
            if let Some((a, end)) = NameAddr::scan(src, v) {
                if end == v.len() || v.as_bytes()[end] == b',' {
                    return Ok(Contact::Addr(a));
                }
            }
        }
        self.contacts()
            .next()
            .unwrap_or(Err(HeaderError::Missing(HeaderName::Contact)))
    }

    /// Route or Record-Route entries (or Path / Service-Route), in order.
    pub fn routes<'a>(
        &'a self,
        name: &'a HeaderName,
    ) -> impl Iterator<Item = Result<NameAddr, HeaderError>> + 'a {
        self.values(name).map(move |v| {
            NameAddr::parse_text(&v).map_err(|_| HeaderError::Malformed(name.clone()))
        })
    }

    /// Max-Forwards (0..=255); `Ok(None)` when absent.
    pub fn max_forwards(&self) -> Result<Option<u8>, HeaderError> {
        self.scalar(&HeaderName::MaxForwards)?
            .map(|v| u8::try_from(v).map_err(|_| HeaderError::Malformed(HeaderName::MaxForwards)))
            .transpose()
    }

    /// Expires header (delta-seconds, u32); `Ok(None)` when absent.
    pub fn expires(&self) -> Result<Option<u32>, HeaderError> {
        self.scalar(&HeaderName::Expires)
    }

    /// Min-Expires; `Ok(None)` when absent.
    pub fn min_expires(&self) -> Result<Option<u32>, HeaderError> {
        self.scalar(&HeaderName::MinExpires)
    }

    /// Content-Length as written; `Ok(None)` when absent. Repeated equal values are accepted,
    /// conflicting ones are [`HeaderError::Duplicate`].
    pub fn content_length(&self) -> Result<Option<u32>, HeaderError> {
        let mut out = None;
        for (_, v) in self.sources(&HeaderName::ContentLength) {
            let n = lex::parse_u32(v).ok_or(HeaderError::Malformed(HeaderName::ContentLength))?;
            if out.is_some_and(|o| o != n) {
                return Err(HeaderError::Duplicate(HeaderName::ContentLength));
            }
            out = Some(n);
        }
        Ok(out)
    }

    fn scalar(&self, name: &HeaderName) -> Result<Option<u32>, HeaderError> {
        match self.single_opt(name)? {
            None => Ok(None),
            Some(v) => lex::parse_u32(v)
                .map(Some)
                .ok_or_else(|| HeaderError::Malformed(name.clone())),
        }
    }

    /// Content-Type media type without parameters, trimmed (`application/sdp`).
    pub fn content_type(&self) -> Option<&str> {
        self.get_str(&HeaderName::ContentType)
            .map(|v| lex::trim(v.split(';').next().unwrap_or("")))
    }

    /// Option tags of Supported / Require / Proxy-Require / Unsupported (empty elements skipped).
    pub fn option_tags<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = Text> + 'a {
        self.values(name).filter(|t| !t.is_empty())
    }

    /// Methods listed in Allow.
    pub fn allow(&self) -> impl Iterator<Item = Method> + '_ {
        self.values(&HeaderName::Allow)
            .filter(|t| !t.is_empty())
            .map(|t| Method::parse(&t))
    }

    /// First Authorization / Proxy-Authorization / WWW-Authenticate / Proxy-Authenticate value.
    pub fn auth(&self, name: &HeaderName) -> Option<Result<Auth, HeaderError>> {
        self.source(name).map(|(src, v)| {
            Auth::parse_in(src, v).ok_or_else(|| HeaderError::Malformed(name.clone()))
        })
    }

    /// Every value of an auth header (one per header line).
    pub fn auths<'a>(
        &'a self,
        name: &'a HeaderName,
    ) -> impl Iterator<Item = Result<Auth, HeaderError>> + 'a {
        self.sources(name).map(move |(src, v)| {
            Auth::parse_in(src, v).ok_or_else(|| HeaderError::Malformed(name.clone()))
        })
    }

    /// Refer-To (RFC 3515).
    pub fn refer_to(&self) -> Option<Result<NameAddr, HeaderError>> {
        self.opt_name_addr(&HeaderName::ReferTo)
    }

    /// Referred-By (RFC 3892).
    pub fn referred_by(&self) -> Option<Result<NameAddr, HeaderError>> {
        self.opt_name_addr(&HeaderName::ReferredBy)
    }

    /// P-Asserted-Identity values (RFC 3325).
    pub fn p_asserted_identity(&self) -> impl Iterator<Item = Result<NameAddr, HeaderError>> + '_ {
        self.routes(&HeaderName::PAssertedIdentity)
    }

    fn opt_name_addr(&self, name: &HeaderName) -> Option<Result<NameAddr, HeaderError>> {
        match self.name_addr(name) {
            Err(HeaderError::Missing(_)) => None,
            r => Some(r),
        }
    }

    /// Replaces (RFC 3891).
    pub fn replaces(&self) -> Option<Result<Replaces, HeaderError>> {
        let (src, v) = self.source(&HeaderName::Replaces)?;
        let bad = || HeaderError::Malformed(HeaderName::Replaces);
        let semi = v.find(';').unwrap_or(v.len());
        let call_id = lex::trim(&v[..semi]);
        let params = Params::from_text(src.slice_ref(&v[semi..]));
        let r = (|| {
            if call_id.is_empty() {
                return Err(bad());
            }
            Ok(Replaces {
                call_id: src.slice_ref(call_id),
                to_tag: src.slice_ref(params.value("to-tag").ok_or_else(bad)?),
                from_tag: src.slice_ref(params.value("from-tag").ok_or_else(bad)?),
                early_only: params.has("early-only"),
            })
        })();
        Some(r)
    }

    /// Session-Expires (RFC 4028).
    pub fn session_expires(&self) -> Option<Result<SessionExpires, HeaderError>> {
        let (src, v) = self.source(&HeaderName::SessionExpires)?;
        let bad = HeaderError::Malformed(HeaderName::SessionExpires);
        let semi = v.find(';').unwrap_or(v.len());
        let Some(delta) = lex::parse_u32(&v[..semi]) else {
            return Some(Err(bad));
        };
        let params = Params::from_text(src.slice_ref(&v[semi..]));
        let refresher = match params.value("refresher") {
            None => None,
            Some(r) if r.eq_ignore_ascii_case("uac") => Some(Refresher::Uac),
            Some(r) if r.eq_ignore_ascii_case("uas") => Some(Refresher::Uas),
            Some(_) => return Some(Err(bad)),
        };
        Some(Ok(SessionExpires {
            delta,
            refresher,
            params,
        }))
    }

    /// Retry-After (RFC 3261 §20.33).
    pub fn retry_after(&self) -> Option<Result<RetryAfter, HeaderError>> {
        let (src, v) = self.source(&HeaderName::RetryAfter)?;
        let bad = HeaderError::Malformed(HeaderName::RetryAfter);
        let s = lex::trim(v);
        let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let Some(delta) = lex::parse_u32(&s[..digits_end]) else {
            return Some(Err(bad));
        };
        let mut rest = lex::trim(&s[digits_end..]);
        let mut comment = None;
        if rest.starts_with('(') {
            let Some(close) = rest.rfind(')') else {
                return Some(Err(bad));
            };
            comment = Some(src.slice_ref(&rest[1..close]));
            rest = lex::trim(&rest[close + 1..]);
        }
        Some(Ok(RetryAfter {
            delta,
            comment,
            params: Params::from_text(src.slice_ref(rest)),
        }))
    }

    /// Reason values (RFC 3326).
    pub fn reasons(&self) -> impl Iterator<Item = Result<Reason, HeaderError>> + '_ {
        self.values(&HeaderName::Reason).map(|v| {
            let semi = v.find(';').unwrap_or(v.len());
            let proto = lex::trim(&v[..semi]);
            if !lex::is_token(proto) {
                return Err(HeaderError::Malformed(HeaderName::Reason));
            }
            Ok(Reason {
                protocol: v.slice_ref(proto),
                params: Params::from_text(v.slice_ref(&v[semi..])),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Text {
        Text::from(s)
    }

    #[test]
    fn via_with_odd_lws_and_params() {
        let v = Via::parse(&t("SIP  /   2.0  /UDP     192.0.2.2;branch=390skdjuw")).unwrap();
        assert_eq!(&*v.transport, "UDP");
        assert_eq!(&*v.host, "192.0.2.2");
        assert_eq!(v.branch(), Some("390skdjuw"));
        assert!(!v.has_rfc3261_branch());
        let v = Via::parse(&t(
            "SIP/2.0/TCP [2001:db8::9]:5061;branch=z9hG4bKx;rport;received=[2001:db8::1]",
        ))
        .unwrap();
        assert_eq!(v.port, Some(5061));
        assert_eq!(v.rport(), Some(None));
        assert!(v.has_rfc3261_branch() && v.is_reliable());
        assert!(Via::parse(&t("SIP/2.0/UDP 192.0.2.15;;")).is_none());
        assert!(Via::parse_lenient(&t("SIP/2.0/UDP 192.0.2.15;;"), false).is_some());
        assert!(Via::parse(&t("SIP/7.0/UDP c.example.com")).is_none());
        let w = Via::new("UDP", "10.0.0.1", Some(5060), "z9hG4bKabc")
            .with_received("192.0.2.7", Some(4000));
        assert_eq!(
            w.to_string(),
            "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc;received=192.0.2.7"
        );
    }

    #[test]
    fn cseq_bounds() {
        assert_eq!(CSeq::parse("0009    INVITE").unwrap().seq, 9);
        assert!(CSeq::parse("36893488147419103232 REGISTER").is_none());
        assert!(CSeq::parse("-1 INVITE").is_none());
        assert!(CSeq::parse("1").is_none());
    }

    #[test]
    fn digest_credentials_keep_order_and_unquote() {
        let a = Auth::parse(&t(r#"Digest username="bob", realm="a \"b\"", nonce="n1", uri="sip:x", response="abc", algorithm=MD5, qop=auth, nc=00000001, cnonce="c""#)).unwrap();
        assert_eq!(&*a.scheme, "Digest");
        assert_eq!(a.param("REALM").unwrap(), r#"a "b""#);
        assert_eq!(a.param("nc").unwrap(), "00000001");
        assert_eq!(&*a.params[0].0, "username");
        let again = Auth::parse(&t(&a.to_string())).unwrap();
        assert_eq!(again, a);
        let odd = Auth::parse(&t("NoOneKnowsThisScheme opaque-data=here")).unwrap();
        assert_eq!(odd.param("opaque-data").unwrap(), "here");
    }

    #[test]
    fn extension_headers() {
        let mut h = Headers::new();
        h.push(HeaderName::SessionExpires, "1800;refresher=uac");
        h.push(HeaderName::RetryAfter, "18000 (vacation);duration=3600");
        h.push(
            HeaderName::Reason,
            r#"SIP ;cause=200 ;text="Call completed elsewhere""#,
        );
        h.push(HeaderName::Replaces, "abc@h;to-tag=1;from-tag=2;early-only");
        let se = h.session_expires().unwrap().unwrap();
        assert_eq!((se.delta, se.refresher), (1800, Some(Refresher::Uac)));
        let ra = h.retry_after().unwrap().unwrap();
        assert_eq!((ra.delta, ra.comment.as_deref()), (18000, Some("vacation")));
        assert_eq!(ra.params.value("duration"), Some("3600"));
        let r = h.reasons().next().unwrap().unwrap();
        assert_eq!(
            (r.cause(), r.text().unwrap().as_ref()),
            (Some(200), "Call completed elsewhere")
        );
        let rp = h.replaces().unwrap().unwrap();
        assert_eq!(
            (&*rp.call_id, &*rp.to_tag, &*rp.from_tag, rp.early_only),
            ("abc@h", "1", "2", true)
        );
    }

    #[test]
    fn single_valued_headers_reject_duplicates() {
        let mut h = Headers::new();
        h.push(HeaderName::CallId, "a@b");
        h.push(HeaderName::CallId, "c@d");
        h.push(HeaderName::MaxForwards, "300");
        assert_eq!(h.call_id(), Err(HeaderError::Duplicate(HeaderName::CallId)));
        assert_eq!(
            h.max_forwards(),
            Err(HeaderError::Malformed(HeaderName::MaxForwards))
        );
        assert_eq!(
            HeaderError::Missing(HeaderName::CallId).to_string(),
            "Missing Call-ID header"
        );
    }
}
