//! Incremental framing of SIP over a byte stream (TCP/TLS/WS-less streams; RFC 3261 §18.3,
//! RFC 5626 §3.5.1 CRLF keep-alives). Push received bytes, pop complete frames. Content-Length is
//! mandatory on streams; its absence, a malformed/negative value, conflicting values, or a head or
//! body above the configured bound are fatal: the connection must be closed (RFC 4475 ncl,
//! mcl01).

use bytes::{Buf, Bytes, BytesMut};

use super::parse::find_head_end;

/// What a stream produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// One complete message (head + exactly Content-Length body bytes); feed it to
    /// [`validate::check`](super::validate::check) or [`Message::parse`](super::Message::parse).
    Message(Bytes),
    /// A double-CRLF keep-alive ping (RFC 5626 §3.5.1): answer with a single CRLF.
    KeepAlive,
}

/// Fatal stream errors: after one, close the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramerError {
    #[error("header section larger than {0} bytes")]
    HeadTooLarge(usize),
    #[error("body larger than {0} bytes")]
    BodyTooLarge(usize),
    #[error("missing Content-Length on a stream transport")]
    MissingContentLength,
    #[error("malformed or negative Content-Length")]
    BadContentLength,
    #[error("conflicting Content-Length values")]
    ConflictingContentLength,
    #[error("stream already failed")]
    Failed,
}

/// Incremental stream framer over one growable buffer.
///
/// ```
/// use sip::message::framer::{Frame, StreamFramer};
/// let mut f = StreamFramer::new();
/// f.push(b"OPTIONS sip:a@b SIP/2.0\r\nl: 2\r\n\r\nh");
/// assert_eq!(f.pop(), Ok(None));
/// f.push(b"i\r\n\r\n");
/// assert!(matches!(f.pop(), Ok(Some(Frame::Message(m))) if m.ends_with(b"hi")));
/// assert_eq!(f.pop(), Ok(Some(Frame::KeepAlive)));
/// ```
#[derive(Debug)]
pub struct StreamFramer {
    buf: BytesMut,
    max_head: usize,
    max_body: usize,
    failed: bool,
}

impl Default for StreamFramer {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamFramer {
    /// Default bounds: 16 KiB head, 64 KiB body.
    pub fn new() -> Self {
        Self::with_limits(16 * 1024, 64 * 1024)
    }

    pub fn with_limits(max_head: usize, max_body: usize) -> Self {
        StreamFramer {
            buf: BytesMut::new(),
            max_head,
            max_body,
            failed: false,
        }
    }

    /// Append received bytes.
    pub fn push(&mut self, data: &[u8]) {
        if !self.failed {
            self.buf.extend_from_slice(data);
        }
    }

    /// Bytes buffered and not yet returned.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed.
    pub fn pop(&mut self) -> Result<Option<Frame>, FramerError> {
        if self.failed {
            return Err(FramerError::Failed);
        }
        match self.pop_inner() {
            Err(e) => {
                self.failed = true;
                self.buf = BytesMut::new();
                Err(e)
            }
            ok => ok,
        }
    }

    fn pop_inner(&mut self) -> Result<Option<Frame>, FramerError> {
        // Keep-alives: "\r\n\r\n" is a ping, a lone "\r\n" a pong (ignored).
        loop {
            if self.buf.starts_with(b"\r\n\r\n") {
                self.buf.advance(4);
                return Ok(Some(Frame::KeepAlive));
            }
            if self.buf.starts_with(b"\r\n") && self.buf.len() >= 4 {
                self.buf.advance(2);
                continue;
            }
            if self.buf.first() == Some(&b'\n') {
                self.buf.advance(1);
                continue;
            }
            break;
        }
        if self.buf.is_empty() || self.buf.as_ref() == b"\r" || self.buf.as_ref() == b"\r\n" {
            return Ok(None);
        }
        let Some(head_end) = find_head_end(&self.buf) else {
            if self.buf.len() > self.max_head {
                return Err(FramerError::HeadTooLarge(self.max_head));
            }
            return Ok(None);
        };
        if head_end > self.max_head {
            return Err(FramerError::HeadTooLarge(self.max_head));
        }
        let body = content_length(&self.buf[..head_end])?;
        if body > self.max_body {
            return Err(FramerError::BodyTooLarge(self.max_body));
        }
        if self.buf.len() < head_end + body {
            return Ok(None);
        }
        Ok(Some(Frame::Message(
            self.buf.split_to(head_end + body).freeze(),
        )))
    }
}

/// The Content-Length of a complete head (folded values and compact `l` understood).
fn content_length(head: &[u8]) -> Result<usize, FramerError> {
    let mut found: Option<usize> = None;
    let mut lines = head.split(|b| *b == b'\n').peekable();
    lines.next(); // start line
    while let Some(line) = lines.next() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let name = trim(&line[..colon]);
        if !(name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l")) {
            continue;
        }
        let mut value: Vec<u8> = line[colon + 1..].to_vec();
        while let Some(next) = lines.peek() {
            if matches!(next.first(), Some(b' ' | b'\t')) {
                value.push(b' ');
                value.extend_from_slice(next.strip_suffix(b"\r").unwrap_or(next));
                lines.next();
            } else {
                break;
            }
        }
        let v = trim(&value);
        if v.is_empty() || v.len() > 9 || !v.iter().all(u8::is_ascii_digit) {
            return Err(FramerError::BadContentLength);
        }
        let n = v
            .iter()
            .fold(0usize, |acc, d| acc * 10 + usize::from(d - b'0'));
        if found.is_some_and(|f| f != n) {
            return Err(FramerError::ConflictingContentLength);
        }
        found = Some(n);
    }
    found.ok_or(FramerError::MissingContentLength)
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nContent-Length: 5\r\n\r\nhello";

    #[test]
    fn byte_by_byte_delivery_yields_each_message_once() {
        let mut f = StreamFramer::new();
        let mut stream = Vec::new();
        for _ in 0..3 {
            stream.extend_from_slice(MSG);
        }
        let mut out = Vec::new();
        for b in &stream {
            f.push(std::slice::from_ref(b));
            while let Some(fr) = f.pop().unwrap() {
                out.push(fr);
            }
        }
        assert_eq!(out, vec![Frame::Message(Bytes::from_static(MSG)); 3]);
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn missing_negative_or_conflicting_lengths_are_fatal() {
        for (input, err) in [
            (
                &b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\n"[..],
                FramerError::MissingContentLength,
            ),
            (
                b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: -999\r\n\r\n",
                FramerError::BadContentLength,
            ),
            (
                b"OPTIONS sip:a@b SIP/2.0\r\nl: 13\r\nContent-Length: 5\r\n\r\n",
                FramerError::ConflictingContentLength,
            ),
        ] {
            let mut f = StreamFramer::new();
            f.push(input);
            assert_eq!(f.pop(), Err(err));
            assert_eq!(f.pop(), Err(FramerError::Failed));
        }
    }

    #[test]
    fn oversized_heads_and_bodies_are_bounded() {
        let mut f = StreamFramer::with_limits(64, 8);
        f.push(&[b'a'; 65]);
        assert_eq!(f.pop(), Err(FramerError::HeadTooLarge(64)));
        let mut f = StreamFramer::with_limits(1024, 8);
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nl: 9\r\n\r\n");
        assert_eq!(f.pop(), Err(FramerError::BodyTooLarge(8)));
    }

    #[test]
    fn folded_content_length_is_read() {
        let mut f = StreamFramer::new();
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length:\r\n 2\r\n\r\nokNEXT");
        assert!(matches!(f.pop(), Ok(Some(Frame::Message(m))) if m.ends_with(b"\r\n\r\nok")));
        assert_eq!(f.buffered(), 4);
    }
}
