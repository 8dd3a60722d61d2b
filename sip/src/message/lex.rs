//! Lexical helpers shared by the SIP message parsers (RFC 3261 §25.1 basic rules): token
//! characters, LWS trimming, quoted strings, and splitting comma/semicolon lists while respecting
//! quotes and `<...>`. Everything works on `&str` slices and never allocates except [`unquote`]
//! when the quoted string contains a backslash escape.

use std::borrow::Cow;

const fn token_table() -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        i += 1;
    }
    t
}

static TOKEN: [bool; 256] = token_table();

/// Byte classes for the single-pass scanners, one bit each (a byte is in several). Every
/// scanner asks for one class, so a run of bytes can be tested four at a time.
/// RFC 3261 `token` character.
pub(crate) const C_TOKEN: u16 = 1;
/// RFC 3261 `user` / `password` character (unreserved, escaped, user-unreserved) or `:`.
pub(crate) const C_USER: u16 = 2;
/// Host name or IPv4 character: alphanumeric, `-`, `.`.
pub(crate) const C_HOST: u16 = 4;
/// RFC 3261 `word` character (Call-ID: token characters and `()<>:\"/[]?{}`) or `@`.
pub(crate) const C_WORD: u16 = 8;
/// Unquoted Via parameter value: token, `:`, `[`, `]`.
pub(crate) const C_VIA_VALUE: u16 = 16;
/// Unquoted name-addr parameter value: token, `:`, `[`, `]`, `/`.
pub(crate) const C_NAME_ADDR_VALUE: u16 = 32;
/// URI parameter value: token, `:`, `[`, `]`, `/`, `&`, `$`.
pub(crate) const C_URI_VALUE: u16 = 64;
/// Anything but `;`, `=`, `"`, `<`, SP, HT, CR, LF: the inside of a plain parameter name.
pub(crate) const C_PLAIN: u16 = 128;
/// [`C_PLAIN`] or `=`: the inside of a plain parameter value.
pub(crate) const C_PLAIN_VALUE: u16 = 256;
/// Decimal digit.
pub(crate) const C_DIGIT: u16 = 512;
/// [`C_USER`] but `:` and `%`: a user part without password or escapes.
pub(crate) const C_USER_PLAIN: u16 = 1024;

const fn class_table() -> [u16; 256] {
    let tokens = token_table();
    let mut t = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let mut c = 0;
        if tokens[i] {
            c |= C_TOKEN | C_WORD | C_VIA_VALUE | C_NAME_ADDR_VALUE | C_URI_VALUE;
        }
        match b {
            b':' | b'[' | b']' => c |= C_VIA_VALUE | C_NAME_ADDR_VALUE | C_URI_VALUE,
            b'/' => c |= C_NAME_ADDR_VALUE | C_URI_VALUE,
            b'&' | b'$' => c |= C_URI_VALUE,
            _ => {}
        }
        if b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'_'
                    | b'.'
                    | b'!'
                    | b'~'
                    | b'*'
                    | b'\''
                    | b'('
                    | b')'
                    | b'%'
                    | b'&'
                    | b'='
                    | b'+'
                    | b'$'
                    | b','
                    | b';'
                    | b'?'
                    | b'/'
                    | b':'
            )
        {
            c |= C_USER;
            if b != b':' && b != b'%' {
                c |= C_USER_PLAIN;
            }
        }
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'.' {
            c |= C_HOST;
        }
        if matches!(
            b,
            b'(' | b')'
                | b'<'
                | b'>'
                | b':'
                | b'\\'
                | b'"'
                | b'/'
                | b'['
                | b']'
                | b'?'
                | b'{'
                | b'}'
                | b'@'
        ) {
            c |= C_WORD;
        }
        if !matches!(b, b';' | b'=' | b'"' | b'<' | b' ' | b'\t' | b'\r' | b'\n') {
            c |= C_PLAIN | C_PLAIN_VALUE;
        }
        if b == b'=' {
            c |= C_PLAIN_VALUE;
        }
        if b.is_ascii_digit() {
            c |= C_DIGIT;
        }
        t[i] = c;
        i += 1;
    }
    t
}

/// The class bits of every byte.
static CLASS: [u16; 256] = class_table();

/// True if byte `b` is in class `class` (one of the `C_` bits).
#[inline(always)]
pub(crate) fn is(b: u8, class: u16) -> bool {
    CLASS[b as usize] & class != 0
}

/// Index of the first byte at or after `from` that is not in class `class` (one of the `C_`
/// bits), or the length of `b`. Four bytes at a time while all four are in the class.
#[inline(always)]
pub(crate) fn skip_class(b: &[u8], from: usize, class: u16) -> usize {
    let mut i = from;
    while let Some(&[c0, c1, c2, c3]) = b.get(i..i.wrapping_add(4)) {
        let all = CLASS[c0 as usize] & CLASS[c1 as usize] & CLASS[c2 as usize] & CLASS[c3 as usize];
        if all & class == 0 {
            break;
        }
        i += 4;
    }
    while let Some(&c) = b.get(i) {
        if !is(c, class) {
            break;
        }
        i += 1;
    }
    i
}

/// ASCII case-insensitive equality, inline (names and parameter names are short: a call to the
/// chunked library version costs more than the comparison).
#[inline]
pub(crate) fn eq_ignore_case(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.eq_ignore_ascii_case(y))
}

/// RFC 3261 `token` character: alphanum / `-.!%*_+`'~`.
#[inline]
pub(crate) fn is_token_char(b: u8) -> bool {
    TOKEN[b as usize]
}

/// True if `s` is a non-empty RFC 3261 `token`.
#[inline]
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

/// Trim SP/HT (and stray CR/LF left by unfolding) on both sides.
#[inline]
pub(crate) fn trim(s: &str) -> &str {
    let b = s.as_bytes();
    let ws = |c: u8| matches!(c, b' ' | b'\t' | b'\r' | b'\n');
    let mut start = 0;
    let mut end = b.len();
    while start < end && ws(b[start]) {
        start += 1;
    }
    while end > start && ws(b[end - 1]) {
        end -= 1;
    }
    // Only ASCII bytes were skipped, so both ends are char boundaries.
    s.get(start..end).unwrap_or("")
}

/// Split `s` at every top-level `sep` byte: separators inside a quoted string (with backslash
/// escapes) or inside `<...>` do not count. Pieces are returned untrimmed. An unterminated quote or
/// `<` makes the rest of the input one piece.
pub(crate) fn split_top(s: &str, sep: u8) -> SplitTop<'_> {
    SplitTop { rest: Some(s), sep }
}

/// Iterator returned by [`split_top`].
pub(crate) struct SplitTop<'a> {
    rest: Option<&'a str>,
    sep: u8,
}

impl<'a> Iterator for SplitTop<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let s = self.rest?;
        match find_top(s, self.sep) {
            Some(i) => {
                self.rest = Some(&s[i + 1..]);
                Some(&s[..i])
            }
            None => {
                self.rest = None;
                Some(s)
            }
        }
    }
}

/// Bytes [`find_top`] stops at for separator `sep`: `sep` itself, `"` and `<`.
const fn stop_table(sep: u8) -> [bool; 256] {
    let mut t = [false; 256];
    t[sep as usize] = true;
    t[b'"' as usize] = true;
    t[b'<' as usize] = true;
    t
}

static STOP_COMMA: [bool; 256] = stop_table(b',');
static STOP_SEMI: [bool; 256] = stop_table(b';');

/// Index of the first top-level `sep` in `s` (outside quotes and angle brackets).
pub(crate) fn find_top(s: &str, sep: u8) -> Option<usize> {
    let stop = match sep {
        b',' => &STOP_COMMA,
        b';' => &STOP_SEMI,
        _ => &stop_table(sep),
    };
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        // One table load per byte skips everything that cannot matter (most of a value).
        let c = b[i];
        if !stop[c as usize] {
            i += 1;
            continue;
        }
        if c == sep {
            return Some(i);
        }
        if c == b'"' {
            i += 1;
            while i < b.len() {
                match b[i] {
                    b'\\' => i += 2,
                    b'"' => break,
                    _ => i += 1,
                }
            }
        } else {
            while i < b.len() && b[i] != b'>' {
                i += 1;
            }
        }
        i += 1;
    }
    None
}

/// Index of the first `c` in `s`. A plain loop: SIP values are short, and a vectorised search
/// costs more in call overhead than it saves.
#[inline]
pub(crate) fn find_byte(s: &str, c: u8) -> Option<usize> {
    s.as_bytes().iter().position(|&b| b == c)
}

/// Index of the first SP or HT in `s`.
#[inline]
pub(crate) fn find_ws(s: &str) -> Option<usize> {
    s.as_bytes().iter().position(|&b| b == b' ' || b == b'\t')
}

/// `s` split around the first `c` (excluded).
#[inline]
pub(crate) fn split_byte(s: &str, c: u8) -> Option<(&str, &str)> {
    let i = find_byte(s, c)?;
    Some((&s[..i], &s[i + 1..]))
}

/// If `s` starts with a quoted string, return its length including both quotes.
pub(crate) fn quoted_len(s: &str) -> Option<usize> {
    quoted_len_bytes(s.as_bytes())
}

/// [`quoted_len`] on bytes.
pub(crate) fn quoted_len_bytes(b: &[u8]) -> Option<usize> {
    if b.first() != Some(&b'"') {
        return None;
    }
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Remove the surrounding quotes of a quoted string and resolve `\x` escapes. Input that is not
/// quoted is returned unchanged (trimmed).
pub fn unquote(s: &str) -> Cow<'_, str> {
    let s = trim(s);
    let inner = match s.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        Some(inner) if s.len() >= 2 => inner,
        _ => return Cow::Borrowed(s),
    };
    if !inner.contains('\\') {
        return Cow::Borrowed(inner);
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Quote `s` as an RFC 3261 quoted-string, escaping `"` and `\`.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Parse a decimal scalar the way RFC 4475 §3.1.2.4 wants: digits only (leading zeros allowed,
/// e.g. `0009`), no sign, and it must fit in `u32`.
pub(crate) fn parse_u32(s: &str) -> Option<u32> {
    let s = trim(s);
    if s.is_empty() {
        return None;
    }
    let mut n = 0u64;
    for &d in s.as_bytes() {
        if !d.is_ascii_digit() {
            return None;
        }
        // Leading zeros keep `n` at 0; anything that reaches 2^32 is out of range.
        n = n * 10 + u64::from(d - b'0');
        if n > u64::from(u32::MAX) {
            return None;
        }
    }
    u32::try_from(n).ok()
}

/// Decode `%HH` escapes into raw bytes. Invalid escapes are kept literally. This is the explicit
/// helper for comparisons (RFC 3261 §19.1.4); parsed values always keep escapes as received.
pub fn unescape(s: &str) -> Cow<'_, [u8]> {
    let b = s.as_bytes();
    if !b.contains(&b'%') {
        return Cow::Borrowed(b);
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    Cow::Owned(out)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// True if every `%` in `s` starts a valid `%HH` escape.
pub(crate) fn escapes_valid(s: &str) -> bool {
    escapes_valid_bytes(s.as_bytes())
}

/// [`escapes_valid`] on bytes.
pub(crate) fn escapes_valid_bytes(b: &[u8]) -> bool {
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            match (b.get(i + 1), b.get(i + 2)) {
                (Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => i += 3,
                _ => return false,
            }
        } else {
            i += 1;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_respect_quotes_and_angles() {
        let v: Vec<_> = split_top(r#""a, \"b" <sip:x,y@h>;p=1, sip:z"#, b',').collect();
        assert_eq!(v, vec![r#""a, \"b" <sip:x,y@h>;p=1"#, " sip:z"]);
    }

    /// The class table agrees with the character sets it stands for.
    #[test]
    fn class_bits() {
        for b in 0..=255u8 {
            let token = is_token_char(b);
            assert_eq!(is(b, C_TOKEN), token, "{b}");
            let word = token || br#"()<>:\"/[]?{}@"#.contains(&b);
            assert_eq!(is(b, C_WORD), word, "{b}");
            let user = b.is_ascii_alphanumeric() || b"-_.!~*'()%&=+$,;?/:".contains(&b);
            assert_eq!(is(b, C_USER), user, "{b}");
            assert_eq!(is(b, C_USER_PLAIN), user && b != b':' && b != b'%', "{b}");
            let host = b.is_ascii_alphanumeric() || b == b'-' || b == b'.';
            assert_eq!(is(b, C_HOST), host, "{b}");
            let value = |extra: &[u8]| token || b == b':' || extra.contains(&b);
            assert_eq!(is(b, C_VIA_VALUE), value(b"[]:"), "{b}");
            assert_eq!(is(b, C_NAME_ADDR_VALUE), value(b"[]:/"), "{b}");
            assert_eq!(is(b, C_URI_VALUE), value(b"[]/:&+$%"), "{b}");
            let plain = !b";=\"< \t\r\n".contains(&b);
            assert_eq!(is(b, C_PLAIN), plain, "{b}");
            assert_eq!(is(b, C_PLAIN_VALUE), plain || b == b'=', "{b}");
            assert_eq!(is(b, C_DIGIT), b.is_ascii_digit(), "{b}");
        }
        let s = b"abc;def.ghi;";
        for from in 0..=s.len() + 1 {
            let want = (from..s.len())
                .find(|&i| !is(s[i], C_TOKEN))
                .unwrap_or(s.len().max(from));
            assert_eq!(skip_class(s, from, C_TOKEN), want, "{from}");
        }
    }

    #[test]
    fn unquote_resolves_escapes() {
        assert_eq!(unquote(r#""J Rosenberg \\\"""#), r#"J Rosenberg \""#);
        assert_eq!(unquote("plain"), "plain");
        assert_eq!(quote(r#"a"b\"#), r#""a\"b\\""#);
    }

    #[test]
    fn scalars_reject_overlarge_and_signed() {
        assert_eq!(parse_u32("0009"), Some(9));
        assert_eq!(parse_u32("4294967295"), Some(u32::MAX));
        assert_eq!(parse_u32("4294967296"), None);
        assert_eq!(parse_u32("36893488147419103232"), None);
        assert_eq!(parse_u32("-1"), None);
        assert_eq!(parse_u32("+1"), None);
    }

    #[test]
    fn unescape_is_explicit_and_single_pass() {
        assert_eq!(&*unescape("v%61lue%25%34%31"), b"value%41");
        assert_eq!(&*unescape("null-%00-null"), b"null-\0-null");
        assert_eq!(&*unescape("100%"), b"100%");
        assert!(escapes_valid("a%20b"));
        assert!(!escapes_valid("a%2"));
        assert!(!escapes_valid("%ZZ"));
    }
}
