//! `;name=value` parameter lists (RFC 3261 §25.1 `generic-param`, `uri-parameter`,
//! `via-params`, `contact-params`). A [`Params`] keeps the raw text exactly as received (escapes,
//! case and odd LWS included) and is read lazily; lookups are case-insensitive on the name.

use std::fmt;

use super::lex::{self, is_token, C_NAME_ADDR_VALUE, C_TOKEN, C_URI_VALUE, C_VIA_VALUE};
use super::Text;

/// One parameter: `name` or `name=value`. The value is raw (quotes and `%` escapes kept); use
/// [`lex::unquote`](super::unquote) / [`unescape`](super::unescape) to compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param<'a> {
    pub name: &'a str,
    pub value: Option<&'a str>,
}

/// A parameter list such as `;branch=z9hG4bK1;rport`. Holds the raw text starting at the first
/// `;` (or empty). Cloning is cheap (shared buffer).
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Params {
    raw: Text,
}

impl Params {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Wrap raw text. Text that does not start with `;` is taken as the first parameter.
    pub fn from_raw(raw: impl Into<Text>) -> Self {
        let raw: Text = raw.into();
        if raw.is_empty() || raw.starts_with(';') {
            Params { raw }
        } else {
            Params {
                raw: Text::from(format!(";{raw}")),
            }
        }
    }

    pub(crate) fn from_text(raw: Text) -> Self {
        Params { raw }
    }

    /// The raw text, `;a=b;c` (empty when there are no parameters).
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// True when there is no parameter.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// Iterate over parameters in order. Empty elements (`;;`) are skipped here; [`Params::check`]
    /// reports them.
    pub fn iter(&self) -> impl Iterator<Item = Param<'_>> + '_ {
        lex::split_top(&self.raw, b';').filter_map(parse_param)
    }

    /// The first parameter called `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<Param<'_>> {
        match find_plain(&self.raw, name) {
            Ok(found) => found,
            Err(Irregular) => self.iter().find(|p| p.name.eq_ignore_ascii_case(name)),
        }
    }

    /// The raw value of parameter `name`; `None` if absent or a flag without value.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|p| p.value)
    }

    /// Like [`Params::value`] but as shared [`Text`] (no copy).
    pub fn value_text(&self, name: &str) -> Option<Text> {
        self.value(name).map(|v| self.raw.slice_ref(v))
    }

    /// True if parameter `name` is present (with or without value).
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// A copy with `name[=value]` appended (any existing `name` is removed first).
    pub fn with(&self, name: &str, value: Option<&str>) -> Params {
        let mut out = String::with_capacity(self.raw.len() + name.len() + 16);
        for p in self.iter().filter(|p| !p.name.eq_ignore_ascii_case(name)) {
            push_param(&mut out, p.name, p.value);
        }
        push_param(&mut out, name, value);
        Params {
            raw: Text::from(out),
        }
    }

    /// A copy without parameter `name`.
    pub fn without(&self, name: &str) -> Params {
        if !self.has(name) {
            return self.clone();
        }
        let mut out = String::with_capacity(self.raw.len());
        for p in self.iter().filter(|p| !p.name.eq_ignore_ascii_case(name)) {
            push_param(&mut out, p.name, p.value);
        }
        Params {
            raw: Text::from(out),
        }
    }

    /// Strict RFC 3261 check: no empty elements, every name a token, every value a token, host or
    /// quoted string (`extra` allows characters such as `:` `[` `]` `%` `/` that URI params use).
    pub fn check(&self, extra: &[u8]) -> bool {
        Self::check_str(&self.raw, extra)
    }

    /// [`Params::check`] on raw text.
    pub(crate) fn check_str(s: &str, extra: &[u8]) -> bool {
        // Almost every list is `;name=value;name` without LWS: one pass over the bytes.
        if let Some(class) = value_class(extra) {
            if scan(s.as_bytes(), 0, class, true) == Some(s.len()) {
                return true;
            }
        }
        Self::check_general(s, extra)
    }

    /// [`Params::check_str`] for any text: LWS, empty elements and errors.
    pub(crate) fn check_general(s: &str, extra: &[u8]) -> bool {
        if s.is_empty() {
            return true;
        }
        if !s.starts_with(';') && !lex::trim(s).starts_with(';') {
            return false;
        }
        let mut first = true;
        for piece in lex::split_top(s, b';') {
            if first {
                first = false;
                if !lex::trim(piece).is_empty() {
                    return false;
                }
                continue;
            }
            let Some(p) = parse_param(piece) else {
                return false;
            };
            if !is_token(p.name) {
                return false;
            }
            if let Some(v) = p.value {
                let ok = if v.starts_with('"') {
                    lex::quoted_len(v) == Some(v.len())
                } else {
                    !v.is_empty()
                        && v.bytes()
                            .all(|b| lex::is_token_char(b) || b == b':' || extra.contains(&b))
                };
                if !ok {
                    return false;
                }
            }
        }
        true
    }
}

/// The character class of the unquoted values [`Params::check`] allows with `extra` (token
/// characters, `:` and `extra`), for the `extra` sets the parsers use.
#[inline]
fn value_class(extra: &[u8]) -> Option<u16> {
    Some(match extra {
        b"[]:" => C_VIA_VALUE,
        b"[]:/" => C_NAME_ADDR_VALUE,
        b"[]/:&+$%" => C_URI_VALUE,
        _ => return None,
    })
}

/// Scan `;name[=value]` elements of `b` from `at` while they are regular: a token name and a
/// value that is a run of `class` characters or (if `quotes`) one quoted string, no LWS, no
/// empty element. Returns where the scan stopped (the first byte that does not continue an
/// element, or the length), or `None` when an element is cut short — in both cases the caller
/// takes the general path unless the stop is where it expects the list to end. Every list this
/// accepts up to its end passes [`Params::check`] with the matching `extra`.
#[inline(always)]
pub(crate) fn scan(b: &[u8], mut at: usize, class: u16, quotes: bool) -> Option<usize> {
    while b.get(at) == Some(&b';') {
        let name = at + 1;
        at = lex::skip_class(b, name, C_TOKEN);
        if at == name {
            return None;
        }
        if b.get(at) == Some(&b'=') {
            let value = at + 1;
            if quotes && b.get(value) == Some(&b'"') {
                at = value + lex::quoted_len_bytes(b.get(value..)?)?;
            } else {
                at = lex::skip_class(b, value, class);
                if at == value {
                    return None;
                }
            }
        }
    }
    Some(at)
}

/// The general path is needed (LWS, quotes, `<`, text before the first `;`).
struct Irregular;

/// [`Params::get`] for the usual list (`;a=b;c`: starts with `;`, no LWS, no quotes, no `<`),
/// with the same answer as splitting at top-level `;` and trimming; `Err` for any other list.
fn find_plain<'a>(s: &'a str, name: &str) -> Result<Option<Param<'a>>, Irregular> {
    let b = s.as_bytes();
    let mut at = 0;
    while at < b.len() {
        if b[at] != b';' {
            return Err(Irregular);
        }
        let n0 = at + 1;
        at = lex::skip_class(b, n0, lex::C_PLAIN);
        let n1 = at;
        let value = if b.get(at) == Some(&b'=') {
            let v0 = at + 1;
            at = lex::skip_class(b, v0, lex::C_PLAIN_VALUE);
            Some((v0, at))
        } else {
            None
        };
        if at < b.len() && b[at] != b';' {
            return Err(Irregular);
        }
        let pname = s.get(n0..n1).ok_or(Irregular)?;
        if lex::eq_ignore_case(pname.as_bytes(), name.as_bytes())
            && !(pname.is_empty() && value.is_none())
        {
            let value = match value {
                Some((v0, v1)) => Some(s.get(v0..v1).ok_or(Irregular)?),
                None => None,
            };
            return Ok(Some(Param { name: pname, value }));
        }
    }
    Ok(None)
}

fn push_param(out: &mut String, name: &str, value: Option<&str>) {
    out.push(';');
    out.push_str(name);
    if let Some(v) = value {
        out.push('=');
        out.push_str(v);
    }
}

fn parse_param(piece: &str) -> Option<Param<'_>> {
    let piece = lex::trim(piece);
    if piece.is_empty() {
        return None;
    }
    match lex::find_byte(piece, b'=') {
        Some(eq) => Some(Param {
            name: lex::trim(&piece[..eq]),
            value: Some(lex::trim(&piece[eq + 1..])),
        }),
        None => Some(Param {
            name: piece,
            value: None,
        }),
    }
}

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl fmt::Debug for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Params({:?})", &*self.raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_lws_around_equals_is_ignored() {
        let p = Params::from_raw(";   tag    = 1918181833n");
        assert_eq!(p.value("TAG"), Some("1918181833n"));
        assert!(p.check(b""));
    }

    #[test]
    fn flags_and_values_are_distinguished() {
        let p = Params::from_raw(";rport;received=192.0.2.1;branch=z9hG4bK1");
        assert!(p.has("rport"));
        assert_eq!(p.value("rport"), None);
        assert_eq!(p.value("received"), Some("192.0.2.1"));
        let q = p.with("rport", Some("5060")).without("received");
        assert_eq!(q.as_str(), ";branch=z9hG4bK1;rport=5060");
    }

    /// The one-pass check and lookup agree with the general ones.
    #[test]
    fn fast_paths_agree_with_the_general_path() {
        let lists = [
            "",
            ";",
            ";;",
            ";a",
            ";a=",
            ";a=b",
            ";A=b;c",
            ";=x;tag=1",
            ";tag=1;tag=2",
            ";branch=z9hG4bK-1;rport;received=192.0.2.1",
            ";maddr=[2001:db8::1];x=a:b",
            ";lr;transport=tcp;x=/p&q$r+%41",
            r#";a="q;uoted";b=c"#,
            r#";a="unterminated;b=c"#,
            r#";a="q"x;b"#,
            "; a = b ;c",
            ";a=b c",
            "x;a=b",
            ";a=<b;c>;d",
            ";a=b=c;tag",
            ";a=é;tag=ü",
            ";a\t=b",
            ";a=b,c;tag=1",
        ];
        for s in lists {
            for extra in [&b""[..], b"[]:", b"[]:/", b"[]/:&+$%"] {
                assert_eq!(
                    Params::check_str(s, extra),
                    Params::check_general(s, extra),
                    "{s:?} {extra:?}"
                );
            }
            let p = Params::from_text(Text::from(s));
            for name in ["a", "A", "b", "c", "tag", "branch", "", "lr", "d"] {
                let general = p.iter().find(|q| q.name.eq_ignore_ascii_case(name));
                assert_eq!(p.get(name), general, "{s:?} {name:?}");
            }
        }
    }

    #[test]
    fn empty_elements_fail_the_strict_check() {
        assert!(!Params::from_raw(";;").check(b""));
        assert!(!Params::from_raw(";a=").check(b""));
        assert!(Params::from_raw(r#";a="quoted; value""#).check(b""));
        assert_eq!(
            Params::from_raw(r#";a="quoted; value";b"#).value("a"),
            Some(r#""quoted; value""#)
        );
    }
}
