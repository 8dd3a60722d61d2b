//! Serialization of requests and responses (RFC 3261 §7). Header values are written as stored
//! (unfolded, escapes untouched) under their canonical names; Content-Length is always written
//! from the real body length, at the position of the first Content-Length line (or last).

use bytes::Bytes;

use super::header::{HeaderName, Headers};
use super::{Request, Response};

pub(super) fn request(r: &Request) -> Bytes {
    let mut out = Vec::with_capacity(estimate(&r.headers) + r.body.len() + 64);
    out.extend_from_slice(r.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(r.uri.as_str().as_bytes());
    out.extend_from_slice(b" SIP/2.0\r\n");
    finish(out, &r.headers, &r.body)
}

pub(super) fn response(r: &Response) -> Bytes {
    let mut out = Vec::with_capacity(estimate(&r.headers) + r.body.len() + 64);
    out.extend_from_slice(b"SIP/2.0 ");
    out.extend_from_slice(r.status.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(r.reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    finish(out, &r.headers, &r.body)
}

fn estimate(h: &Headers) -> usize {
    h.lines_str()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum()
}

fn finish(mut out: Vec<u8>, headers: &Headers, body: &Bytes) -> Bytes {
    let mut wrote_cl = false;
    for (name, value) in headers.lines_str() {
        if *name == HeaderName::ContentLength {
            if !wrote_cl {
                write_cl(&mut out, body.len());
                wrote_cl = true;
            }
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        // Stored values never contain CR/LF when parsed; built values might, so flatten them
        // to keep the framing intact.
        if value.bytes().any(|b| b == b'\r' || b == b'\n') {
            out.extend(
                value
                    .bytes()
                    .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
            );
        } else {
            out.extend_from_slice(value.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
    if !wrote_cl {
        write_cl(&mut out, body.len());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    Bytes::from(out)
}

fn write_cl(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(b"Content-Length: ");
    out.extend_from_slice(len.to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
}
