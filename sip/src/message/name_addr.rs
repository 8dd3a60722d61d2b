//! `name-addr` / `addr-spec` values of From, To, Contact, Route, Record-Route, Refer-To,
//! Referred-By, P-Asserted-Identity (RFC 3261 §20.10, §20.20, §20.39, §25.1).
//!
//! Without angle brackets, everything after the first `;` is a header parameter, not a URI
//! parameter (RFC 3261 §20.10) — the distinction RFC 4475 `cparam01`/`cparam02` test.

use std::borrow::Cow;
use std::fmt;

use super::lex;
use super::params::{self, Params};
use super::uri::Uri;
use super::Text;

/// Why a name-addr could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameAddrError {
    #[error("unterminated quoted display name")]
    UnterminatedQuote,
    #[error("display name is not a token list or quoted string")]
    BadDisplayName,
    #[error("missing '>'")]
    UnclosedAngle,
    #[error("bad URI: {0}")]
    Uri(#[from] super::uri::UriError),
    #[error("malformed parameters")]
    BadParams,
    #[error("empty value")]
    Empty,
}

/// `"Display" <uri>;params` or `uri;params`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct NameAddr {
    display: Option<Text>,
    pub uri: Uri,
    pub params: Params,
    angle: bool,
}

impl NameAddr {
    /// A bare `<uri>` with no display name and no params.
    pub fn new(uri: Uri) -> Self {
        NameAddr {
            display: None,
            uri,
            params: Params::new(),
            angle: true,
        }
    }

    /// Parse from text (strict RFC 3261, liberal only where RFC 4475 says so: no LWS is needed
    /// between a quoted display name and `<`).
    pub fn parse(raw: impl Into<Text>) -> Result<NameAddr, NameAddrError> {
        let raw: Text = raw.into();
        Self::parse_text(&raw)
    }

    pub(crate) fn parse_text(raw: &Text) -> Result<NameAddr, NameAddrError> {
        Self::parse_in(raw, raw)
    }

    /// [`NameAddr::parse_text`] of `v`, a part of `src`.
    pub(crate) fn parse_in(src: &Text, v: &str) -> Result<NameAddr, NameAddrError> {
        match Self::scan(src, v) {
            Some((a, end)) if end == v.len() => Ok(a),
            _ => Self::parse_general(src, v),
        }
    }

    /// One pass over a regular name-addr at the start of `raw`: an optional quoted display name,
    /// `<` a regular SIP URI `>`, regular parameters. Returns it and where it ends (the length of
    /// `raw`, or the byte after the last parameter, e.g. the `,` before the next Contact), or
    /// `None` for anything else ([`NameAddr::parse_general`] then decides). The result is what
    /// the general parser gives for `raw` up to that end.
    pub(crate) fn scan(src: &Text, raw: &str) -> Option<(NameAddr, usize)> {
        let b = raw.as_bytes();
        let (display, lt) = match b.first()? {
            b'"' => {
                let q = lex::quoted_len_bytes(b)?;
                let mut lt = q;
                while matches!(b.get(lt), Some(b' ' | b'\t')) {
                    lt += 1;
                }
                (Some(q), lt)
            }
            _ => (None, 0),
        };
        if b.get(lt) != Some(&b'<') {
            return None;
        }
        let (uri, gt) = Uri::scan_until(src, raw, lt + 1, b'>')?;
        let end = params::scan(b, gt + 1, lex::C_NAME_ADDR_VALUE, true)?;
        let display = match display {
            Some(q) => Some(src.slice_ref(raw.get(..q)?)),
            None => None,
        };
        let params = Params::from_text(src.slice_ref(raw.get(gt + 1..end)?));
        Some((
            NameAddr {
                display,
                uri,
                params,
                angle: true,
            },
            end,
        ))
    }

    /// [`NameAddr::parse_text`] for any text: LWS, token display names, addr-spec, errors.
    pub(crate) fn parse_general(src: &Text, raw: &str) -> Result<NameAddr, NameAddrError> {
        let s = lex::trim(raw);
        if s.is_empty() {
            return Err(NameAddrError::Empty);
        }
        let (display, after_display) = if s.starts_with('"') {
            let q = lex::quoted_len(s).ok_or(NameAddrError::UnterminatedQuote)?;
            (Some(&s[..q]), lex::trim(&s[q..]))
        } else {
            match lex::find_byte(s, b'<') {
                Some(lt) => {
                    let d = lex::trim(&s[..lt]);
                    if !d.is_empty()
                        && !d
                            .split([' ', '\t'])
                            .filter(|t| !t.is_empty())
                            .all(lex::is_token)
                    {
                        return Err(NameAddrError::BadDisplayName);
                    }
                    (if d.is_empty() { None } else { Some(d) }, &s[lt..])
                }
                None => (None, s),
            }
        };
        if let Some(inner) = after_display.strip_prefix('<') {
            let gt = lex::find_byte(inner, b'>').ok_or(NameAddrError::UnclosedAngle)?;
            let uri = Uri::parse_text(src.slice_ref(&inner[..gt]))?;
            let rest = lex::trim(&inner[gt + 1..]);
            if !rest.is_empty() && !rest.starts_with(';') {
                return Err(NameAddrError::BadParams);
            }
            let params = Params::from_text(src.slice_ref(rest));
            if !params.check(b"[]:/") {
                return Err(NameAddrError::BadParams);
            }
            Ok(NameAddr {
                display: display.map(|d| src.slice_ref(d)),
                uri,
                params,
                angle: true,
            })
        } else {
            if display.is_some() {
                return Err(NameAddrError::BadDisplayName);
            }
            let semi = lex::find_byte(after_display, b';').unwrap_or(after_display.len());
            let uri = Uri::parse_text(src.slice_ref(lex::trim(&after_display[..semi])))?;
            let params = Params::from_text(src.slice_ref(&after_display[semi..]));
            if !params.check(b"[]:/") {
                return Err(NameAddrError::BadParams);
            }
            Ok(NameAddr {
                display: None,
                uri,
                params,
                angle: false,
            })
        }
    }

    /// The display name as written (quotes and escapes kept), if any.
    pub fn display_raw(&self) -> Option<&str> {
        self.display.as_deref()
    }

    /// The display name with quotes removed and `\x` escapes resolved.
    pub fn display_name(&self) -> Option<Cow<'_, str>> {
        self.display.as_deref().map(lex::unquote)
    }

    /// Set the display name (quoted on output).
    pub fn with_display_name(mut self, name: &str) -> Self {
        self.display = Some(Text::from(lex::quote(name)));
        self.angle = true;
        self
    }

    /// The `tag` parameter (From/To).
    pub fn tag(&self) -> Option<&str> {
        self.params.value("tag")
    }

    /// A copy with `;tag=` set.
    pub fn with_tag(mut self, tag: &str) -> Self {
        self.params = self.params.with("tag", Some(tag));
        self
    }

    /// True when the URI was enclosed in `<...>`.
    pub fn has_angle_brackets(&self) -> bool {
        self.angle
    }
}

/// Writes in canonical form: `"Display" <uri>;params`, always with angle brackets (which keeps
/// header parameters from turning into URI parameters).
impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display {
            write!(f, "{d} ")?;
        }
        write!(f, "<{}>{}", self.uri, self.params)
    }
}

impl fmt::Debug for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NameAddr({self})")
    }
}

/// One Contact value: `*` or an address with `expires` / `q` parameters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Contact {
    /// `Contact: *` (REGISTER removal of all bindings).
    Star,
    Addr(NameAddr),
}

impl Contact {
    /// The address, unless this is `*`.
    pub fn addr(&self) -> Option<&NameAddr> {
        match self {
            Contact::Star => None,
            Contact::Addr(a) => Some(a),
        }
    }

    /// The `expires` contact parameter. `Some(Err(()))` when present but not a `u32`.
    pub fn expires(&self) -> Option<Result<u32, ()>> {
        let v = self.addr()?.params.value("expires")?;
        Some(lex::parse_u32(v).ok_or(()))
    }

    /// The `q` parameter in thousandths (`q=0.33` → 330). `Some(Err(()))` when malformed.
    pub fn q(&self) -> Option<Result<u16, ()>> {
        let v = lex::trim(self.addr()?.params.value("q")?);
        Some(parse_qvalue(v).ok_or(()))
    }
}

fn parse_qvalue(v: &str) -> Option<u16> {
    let (int, frac) = match v.split_once('.') {
        Some((i, f)) => (i, f),
        None => (v, ""),
    };
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut thousandths = 0u16;
    for (i, b) in frac.bytes().enumerate() {
        thousandths += u16::from(b - b'0') * [100, 10, 1][i];
    }
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

impl fmt::Display for Contact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Contact::Star => f.write_str("*"),
            Contact::Addr(a) => a.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn na(s: &'static str) -> Result<NameAddr, NameAddrError> {
        NameAddr::parse(s)
    }

    #[test]
    fn quoted_display_with_escapes_and_odd_lws() {
        let a =
            na(r#""J Rosenberg \\\""       <sip:jdrosen@example.com>  ;   tag = 98asjd8"#).unwrap();
        assert_eq!(a.display_name().unwrap(), r#"J Rosenberg \""#);
        assert_eq!(a.uri.as_str(), "sip:jdrosen@example.com");
        assert_eq!(a.tag(), Some("98asjd8"));
    }

    #[test]
    fn addr_spec_params_belong_to_the_header() {
        let a = na("sip:+19725552222@gw1.example.net;unknownparam").unwrap();
        assert!(a.params.has("unknownparam"));
        assert!(!a.uri.params().has("unknownparam"));
        let b = na("<sip:+19725552222@gw1.example.net;unknownparam>").unwrap();
        assert!(!b.params.has("unknownparam"));
        assert!(b.uri.params().has("unknownparam"));
    }

    #[test]
    fn malformed_display_names_are_rejected() {
        assert_eq!(
            na(r#""Mr. J. User <sip:j.user@example.com>"#),
            Err(NameAddrError::UnterminatedQuote)
        );
        assert_eq!(
            na("Bell, Alexander <sip:a.g.bell@example.com>;tag=43"),
            Err(NameAddrError::BadDisplayName)
        );
        assert!(na(r#""Joe" <sip:joe@example.org>;;;;"#).is_err());
        assert!(na("A. Bell <sip:a.g.bell@example.com>;tag=qweoiqpe").is_ok());
        assert!(na(r#""caller"<sip:caller@example.com>;tag=323"#).is_ok());
    }

    #[test]
    fn contact_expires_and_q() {
        let c = Contact::Addr(na("<sip:a@b>;expires=3600;q=0.33").unwrap());
        assert_eq!(c.expires(), Some(Ok(3600)));
        assert_eq!(c.q(), Some(Ok(330)));
        let big = Contact::Addr(na("<sip:a@b>;expires=280297596632815").unwrap());
        assert_eq!(big.expires(), Some(Err(())));
    }

    #[test]
    fn writes_canonical_form() {
        let a = na("sip:a@b;tag=1").unwrap();
        assert_eq!(a.to_string(), "<sip:a@b>;tag=1");
        let b = NameAddr::new("sip:x@y".parse().unwrap())
            .with_display_name("A \"B\"")
            .with_tag("t1");
        assert_eq!(b.to_string(), r#""A \"B\"" <sip:x@y>;tag=t1"#);
        assert_eq!(NameAddr::parse(b.to_string()).unwrap(), b);
    }
}
