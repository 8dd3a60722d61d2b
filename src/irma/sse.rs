//! Server-sent events parser (WHATWG HTML "Server-sent events", §9.2.6 "Interpreting an event stream"),
//! sans-IO: feed it bytes as they arrive, take out the `data` of each dispatched event. Only what the
//! IRMA status stream needs: `data` lines, comments, blank-line dispatch; `event`, `id` and `retry`
//! are parsed and ignored. Lines may end in LF, CRLF or CR. Bounded memory: a line longer than
//! [`SseParser::MAX_LINE`] is an error, so a hostile server cannot grow the buffer without limit.

/// A stream that breaks the parser's limits.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SseError {
    #[error("event stream line longer than {0} bytes")]
    LineTooLong(usize),
    #[error("event data longer than {0} bytes")]
    EventTooLong(usize),
}

/// Incremental event-stream parser.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    data: String,
    has_data: bool,
    /// The previous chunk ended in CR: a following LF belongs to that line end.
    after_cr: bool,
}

impl SseParser {
    /// Longest line accepted.
    pub const MAX_LINE: usize = 16 * 1024;
    /// Largest accumulated `data` of one event.
    pub const MAX_EVENT: usize = 64 * 1024;

    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes; returns the data of every event completed by them, in order.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<String>, SseError> {
        let mut events = Vec::new();
        for &b in bytes {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    if let Some(data) = self.line_done(&line)? {
                        events.push(data);
                    }
                }
                _ => {
                    if self.line.len() >= Self::MAX_LINE {
                        return Err(SseError::LineTooLong(Self::MAX_LINE));
                    }
                    self.line.push(b);
                }
            }
        }
        Ok(events)
    }

    fn line_done(&mut self, line: &[u8]) -> Result<Option<String>, SseError> {
        if line.is_empty() {
            if !self.has_data {
                return Ok(None);
            }
            self.has_data = false;
            let mut data = std::mem::take(&mut self.data);
            if data.ends_with('\n') {
                data.pop();
            }
            return Ok(Some(data));
        }
        if line.first() == Some(&b':') {
            return Ok(None); // comment
        }
        let text = String::from_utf8_lossy(line);
        let (field, value) = match text.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (text.as_ref(), ""),
        };
        if field == "data" {
            if self.data.len() + value.len() + 1 > Self::MAX_EVENT {
                return Err(SseError::EventTooLong(Self::MAX_EVENT));
            }
            self.data.push_str(value);
            self.data.push('\n');
            self.has_data = true;
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn irmago_status_events_split_anywhere() {
        let stream = b"data: \"CONNECTED\"\n\n: keepalive\r\ndata: \"DONE\"\r\n\r\n";
        for cut in 0..stream.len() {
            let mut p = SseParser::new();
            let mut got = p.push(&stream[..cut]).unwrap();
            got.extend(p.push(&stream[cut..]).unwrap());
            assert_eq!(got, vec!["\"CONNECTED\"", "\"DONE\""], "cut at {cut}");
        }
    }

    #[test]
    fn multi_line_data_and_ignored_fields() {
        let mut p = SseParser::new();
        let got = p
            .push(b"event: message\nid: 7\nretry: 10\ndata:a\ndata: b\r\rdata\n\n")
            .unwrap();
        assert_eq!(got, vec!["a\nb".to_owned(), String::new()]);
    }

    proptest::proptest! {
        /// Any bytes: no panic, and where the stream is cut makes no difference.
        #[test]
        fn arbitrary_bytes_parse_the_same_however_split(bytes: Vec<u8>, cut: usize) {
            let whole = SseParser::new().push(&bytes);
            let cut = cut % (bytes.len() + 1);
            let mut p = SseParser::new();
            let split = p.push(&bytes[..cut]).and_then(|mut a| {
                a.extend(p.push(&bytes[cut..])?);
                Ok(a)
            });
            proptest::prop_assert_eq!(whole, split);
        }
    }

    #[test]
    fn endless_line_is_refused() {
        let mut p = SseParser::new();
        let junk = vec![b'x'; SseParser::MAX_LINE + 1];
        assert_eq!(
            p.push(&junk),
            Err(SseError::LineTooLong(SseParser::MAX_LINE))
        );
    }
}
