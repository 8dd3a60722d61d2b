//! `;name=value` parameter lists (RFC 3261 §25.1 `generic-param`, `uri-parameter`,
//! `via-params`, `contact-params`). A [`Params`] keeps the raw text exactly as received (escapes,
//! case and odd LWS included) and is read lazily; lookups are case-insensitive on the name.

use std::fmt;

use super::lex::{self, is_token};
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
        self.iter().find(|p| p.name.eq_ignore_ascii_case(name))
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
