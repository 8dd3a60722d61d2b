//! Parsing of whole SIP messages (RFC 3261 §7, §25; RFC 4475 torture cases): start line, header
//! lines with folding and odd LWS, and Content-Length framing of a datagram (§18.3: trailing
//! octets after the body are ignored; without Content-Length the body is the rest of the
//! datagram). Values are positions in one shared buffer (see [`Headers`]); only folded header
//! values are copied.

use bytes::Bytes;

use super::header::{Header, HeaderName, Headers};
use super::lex;
use super::method::{Method, StatusCode};
use super::uri::Uri;
use super::{Message, ParseError, Request, Response, Text};

/// The pieces of a message head, before start-line interpretation.
pub(crate) struct Head {
    /// Byte range of the start line within `headers.head()`, the buffer from its start through
    /// the last header line as text.
    pub start_line: std::ops::Range<usize>,
    pub headers: Headers,
    /// Offset of the first body byte in the buffer.
    pub body_start: usize,
}

/// Find where the head ends: offset just after the empty line, or `None` if not yet seen.
/// Leading CRLFs (keep-alives, RFC 3261 §7.5) are skipped by the caller.
pub(crate) fn find_head_end(buf: &[u8]) -> Option<usize> {
    let mut pos = 0;
    loop {
        let nl = memchr::memchr(b'\n', buf.get(pos..)?)? + pos;
        // The next line is empty if it is "\n" or "\r\n".
        match buf.get(nl + 1) {
            Some(b'\n') => return Some(nl + 2),
            Some(b'\r') if buf.get(nl + 2) == Some(&b'\n') => return Some(nl + 3),
            Some(_) => pos = nl + 1,
            None => return None,
        }
    }
}

/// Number of leading CR/LF bytes.
pub(crate) fn leading_crlf(buf: &[u8]) -> usize {
    buf.iter()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count()
}

/// Line boundaries of a head: `(start, content end)` pairs, inline for typical messages.
struct Lines {
    inline: [(u32, u32); 40],
    n: usize,
    spill: Vec<(u32, u32)>,
}

impl Lines {
    fn new() -> Self {
        Lines {
            inline: [(0, 0); 40],
            n: 0,
            spill: Vec::new(),
        }
    }

    fn push(&mut self, start: usize, end: usize) {
        let l = (start as u32, end as u32);
        if self.n < self.inline.len() {
            self.inline[self.n] = l;
        } else {
            self.spill.push(l);
        }
        self.n += 1;
    }

    fn get(&self, i: usize) -> Option<(usize, usize)> {
        let (a, b) = if i < self.inline.len() {
            *self.inline.get(i).filter(|_| i < self.n)?
        } else {
            *self.spill.get(i - self.inline.len())?
        };
        Some((a as usize, b as usize))
    }
}

/// Split the head of `buf` (which starts at a start line) into start line and header lines.
/// One pass finds line ends (rejecting a CR that is not part of CRLF: it would not survive
/// writing); a second walks the lines without searching again.
pub(crate) fn scan_head(buf: &Bytes) -> Result<Head, ParseError> {
    if buf.len() > u32::MAX as usize {
        return Err(ParseError::BadHeader);
    }
    let skip = leading_crlf(buf);
    let mut lines = Lines::new();
    let mut pos = skip;
    let head_end = loop {
        match memchr::memchr2(b'\r', b'\n', &buf[pos..]) {
            Some(i) => {
                let at = pos + i;
                let next = if buf[at] == b'\n' {
                    at + 1
                } else if buf.get(at + 1) == Some(&b'\n') {
                    at + 2
                } else {
                    return Err(ParseError::BadHeader);
                };
                if at == pos {
                    break next; // the empty line
                }
                lines.push(pos, at);
                pos = next;
            }
            // A datagram ends the message even when the final empty line is missing (RFC 4475
            // baddn archive quirk): the head is the whole buffer if it ends with a line break.
            None if pos == buf.len() && lines.n > 0 => break buf.len(),
            None => return Err(ParseError::Incomplete),
        }
    };
    let text = Text::try_from(buf.slice(..head_end)).map_err(|_| ParseError::NotUtf8)?;
    let s: &str = &text;
    let b = s.as_bytes();
    let (_, sl_end) = lines.get(0).ok_or(ParseError::Incomplete)?;
    let mut headers = Headers::with_capacity(lines.n.saturating_sub(1));
    let mut i = 1;
    while let Some((start, end)) = lines.get(i) {
        i += 1;
        let folded_next = lines
            .get(i)
            .is_some_and(|(cs, _)| matches!(b[cs], b' ' | b'\t'));
        // The usual line, `Name: value` with a token name and no folding, in one pass.
        if !folded_next {
            if let Some((name, v0, v1)) = plain_header(&text, start, end) {
                if matches!(name, HeaderName::CallId) {
                    // Everyone reads Call-ID as text (`call_id()` lends it out): make it now,
                    // which costs less than making it on first request.
                    let value = text.slice_ref(text.get(v0..v1).unwrap_or(""));
                    headers.push_header(Header { name, value });
                } else {
                    headers.push_slice(name, v0, v1);
                }
                continue;
            }
        }
        if matches!(b[start], b' ' | b'\t') {
            return Err(ParseError::BadHeader); // continuation with nothing to continue
        }
        let line = &s[start..end];
        let colon = line
            .bytes()
            .position(|c| c == b':')
            .ok_or(ParseError::BadHeader)?;
        let name = lex::trim(&line[..colon]);
        if !lex::is_token(name) {
            return Err(ParseError::BadHeader);
        }
        let value_start = start + colon + 1;
        // Folding: following lines that start with SP or HT continue this value.
        let mut folded: Option<String> = None;
        while let Some((cs, ce)) = lines
            .get(i)
            .filter(|(cs, _)| matches!(b[*cs], b' ' | b'\t'))
        {
            let v = folded.get_or_insert_with(|| s[value_start..end].to_owned());
            v.push(' ');
            v.push_str(&s[cs..ce]);
            i += 1;
        }
        let value = match folded {
            Some(v) => Text::from(lex::trim(&v).to_owned()),
            None => text.slice_ref(lex::trim(&s[value_start..end])),
        };
        headers.push_header(Header {
            name: HeaderName::from_slice(&text, name),
            value,
        });
    }
    // The values added with `push_slice` are positions in `text`.
    headers.set_head(text);
    Ok(Head {
        start_line: skip..sl_end,
        headers,
        body_start: head_end,
    })
}

/// The header line `text[start..end]` when it is `token [SP/HT] ":" value` — what the general
/// loop in [`scan_head`] makes of it (name, and where the value starts and ends), without
/// searching the line twice.
#[inline]
fn plain_header(text: &Text, start: usize, end: usize) -> Option<(HeaderName, usize, usize)> {
    let b = text.as_bytes().get(..end)?;
    let name_end = lex::skip_class(b, start, lex::C_TOKEN);
    let mut colon = name_end;
    while matches!(b.get(colon), Some(b' ' | b'\t')) {
        colon += 1;
    }
    if name_end == start || b.get(colon) != Some(&b':') {
        return None;
    }
    let mut v0 = colon + 1;
    while matches!(b.get(v0), Some(b' ' | b'\t')) {
        v0 += 1;
    }
    let mut v1 = end;
    while v1 > v0 && matches!(b[v1 - 1], b' ' | b'\t') {
        v1 -= 1;
    }
    Some((
        HeaderName::from_slice(text, text.get(start..name_end)?),
        v0,
        v1,
    ))
}

/// Parse a message received as a datagram (or a complete stream frame).
pub(crate) fn parse_message(buf: Bytes) -> Result<Message, ParseError> {
    let head = scan_head(&buf)?;
    let cl = head.headers.content_length().map_err(|e| match e {
        super::HeaderError::Duplicate(_) => ParseError::ConflictingContentLength,
        _ => ParseError::BadContentLength,
    })?;
    let available = buf.len() - head.body_start;
    let body_len = match cl {
        Some(n) => {
            let n = n as usize;
            if n > available {
                return Err(ParseError::ContentLengthTooLarge);
            }
            n
        }
        None => available,
    };
    let body = buf.slice(head.body_start..head.body_start + body_len);
    let text = head.headers.head();
    let line = text.get(head.start_line.clone()).unwrap_or("");
    if is_status_line(line) {
        let (status, reason) = parse_status_line(text, line)?;
        Ok(Message::Response(Response {
            status,
            reason,
            headers: head.headers,
            body,
        }))
    } else {
        let (method, uri) = parse_request_line(text, line)?;
        Ok(Message::Request(Request {
            method,
            uri,
            headers: head.headers,
            body,
        }))
    }
}

fn is_status_line(line: &str) -> bool {
    line.len() > 4 && line.as_bytes()[..4].eq_ignore_ascii_case(b"SIP/")
}

fn check_version(v: &str) -> Result<(), ParseError> {
    if v.eq_ignore_ascii_case("SIP/2.0") {
        return Ok(());
    }
    let ok_shape = v.len() > 4
        && v.as_bytes()[..4].eq_ignore_ascii_case(b"SIP/")
        && v[4..].split_once('.').is_some_and(|(a, b)| {
            !a.is_empty()
                && !b.is_empty()
                && (a.bytes().chain(b.bytes())).all(|c| c.is_ascii_digit())
        });
    if ok_shape {
        Err(ParseError::UnsupportedVersion)
    } else {
        Err(ParseError::BadStartLine)
    }
}

/// `Method SP Request-URI SP SIP-Version`. Extra SP between elements and trailing SP are
/// tolerated (RFC 4475 lwsstart/trws allow either choice); LWS inside the URI is not.
pub(crate) fn parse_request_line(text: &Text, line: &str) -> Result<(Method, Uri), ParseError> {
    let line = line.trim_end_matches(' ');
    let sp = lex::find_byte(line, b' ').ok_or(ParseError::BadStartLine)?;
    let method = &line[..sp];
    if !lex::is_token(method) {
        return Err(ParseError::BadStartLine);
    }
    let rest = line[sp..].trim_start_matches(' ');
    let vsp = rest.rfind(' ').ok_or(ParseError::BadStartLine)?;
    check_version(&rest[vsp + 1..])?;
    let uri = rest[..vsp].trim_end_matches(' ');
    if uri.is_empty() {
        return Err(ParseError::BadStartLine);
    }
    let uri = Uri::parse_text(text.slice_ref(uri)).map_err(ParseError::BadRequestUri)?;
    Ok((Method::parse(method), uri))
}

/// `SIP-Version SP Status-Code SP Reason-Phrase` (an empty reason is fine).
fn parse_status_line(text: &Text, line: &str) -> Result<(StatusCode, Text), ParseError> {
    let sp = line.find(' ').ok_or(ParseError::BadStartLine)?;
    check_version(&line[..sp])?;
    let rest = &line[sp + 1..];
    let (code, reason) = match lex::find_byte(rest, b' ') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::BadStatusCode);
    }
    let status = code
        .parse::<u16>()
        .ok()
        .and_then(StatusCode::new)
        .ok_or(ParseError::BadStatusCode)?;
    Ok((status, text.slice_ref(reason.trim_end_matches([' ', '\t']))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Message, ParseError> {
        parse_message(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn folded_values_are_unfolded() {
        let m = parse("OPTIONS sip:a@b SIP/2.0\r\nSubject: one\r\n two\r\n\tthree\r\nl: 0\r\n\r\n")
            .unwrap();
        let Message::Request(r) = m else {
            panic!("request expected")
        };
        assert_eq!(
            r.headers.get(&HeaderName::Subject).unwrap(),
            "one  two \tthree"
        );
    }

    #[test]
    fn datagram_framing() {
        let m = parse("OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 2\r\n\r\nabJUNK").unwrap();
        assert_eq!(&m.body()[..], b"ab");
        let m = parse("OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\nrest of datagram").unwrap();
        assert_eq!(&m.body()[..], b"rest of datagram");
        assert_eq!(
            parse("OPTIONS sip:a@b SIP/2.0\r\nl: 99\r\n\r\nab").unwrap_err(),
            ParseError::ContentLengthTooLarge
        );
        assert_eq!(
            parse("OPTIONS sip:a@b SIP/2.0\r\nl: -9\r\n\r\nab").unwrap_err(),
            ParseError::BadContentLength
        );
        assert_eq!(
            parse("OPTIONS sip:a@b SIP/2.0\r\nl: 1\r\nContent-Length: 2\r\n\r\nab").unwrap_err(),
            ParseError::ConflictingContentLength
        );
    }

    #[test]
    fn start_lines() {
        assert_eq!(
            parse("OPTIONS sip:a@b SIP/7.0\r\n\r\n").unwrap_err(),
            ParseError::UnsupportedVersion
        );
        assert!(matches!(
            parse("INVITE <sip:a@b> SIP/2.0\r\n\r\n").unwrap_err(),
            ParseError::BadRequestUri(_)
        ));
        assert_eq!(
            parse("SIP/2.0 4294967301 big\r\n\r\n").unwrap_err(),
            ParseError::BadStatusCode
        );
        let Message::Response(r) = parse("SIP/2.0 100 \r\nl: 0\r\n\r\n").unwrap() else {
            panic!("response expected")
        };
        assert_eq!(&*r.reason, "");
        assert!(parse("INVITE  sip:a@b  SIP/2.0 \r\n\r\n").is_ok());
        assert_eq!(parse("\r\n\r\n").unwrap_err(), ParseError::Incomplete);
        assert_eq!(
            parse("OPTIONS sip:a@b SIP/2.0\r\nl: 0").unwrap_err(),
            ParseError::Incomplete
        );
        assert!(parse("OPTIONS sip:a@b SIP/2.0\r\nl: 0\r\n").is_ok());
        assert_eq!(
            parse("OPTIONS sip:a@b SIP/2.0\r\nSubject: a\rb\r\n\r\n").unwrap_err(),
            ParseError::BadHeader
        );
        assert_eq!(
            parse("garbage\r\n\r\n").unwrap_err(),
            ParseError::BadStartLine
        );
        assert_eq!(
            parse("OPTIONS sip:a@b SIP/2.0\r\nno colon here\r\n\r\n").unwrap_err(),
            ParseError::BadHeader
        );
    }

    #[test]
    fn head_end_accepts_bare_lf() {
        assert_eq!(find_head_end(b"A\r\nB: c\r\n\r\nbody"), Some(11));
        assert_eq!(find_head_end(b"A\nB: c\n\nbody"), Some(8));
        assert_eq!(find_head_end(b"A\r\nB: c\r\n"), None);
    }
}
