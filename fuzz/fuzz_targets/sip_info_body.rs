//! Fuzz target: the DTMF digit of a SIP INFO (RFC 6086; `application/dtmf-relay` `Signal=5`, or
//! `application/dtmf` `5`), as a trunk or an attacker writes it — the body under each content type,
//! and whole INFO requests. Must never panic, and a digit it reads is one of 0-9 * # A-D.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sip::message::Request;
use veilig_bellen::call::task::dtmf_from_info;

const CONTENT_TYPES: [&str; 4] = [
    "application/dtmf-relay",
    "application/dtmf",
    "Application/DTMF-Relay; charset=utf-8",
    "text/plain",
];

fn check(request: &Request) {
    if let Some(digit) = dtmf_from_info(request) {
        assert!(
            matches!(digit, '0'..='9' | '*' | '#' | 'A'..='D'),
            "read {digit:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    // The whole request as sent.
    if let Ok(request) = Request::parse(data.to_vec()) {
        check(&request);
    }
    // The body under each content type we accept.
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let content_type = CONTENT_TYPES[usize::from(pick) % CONTENT_TYPES.len()];
    let mut raw = format!(
        "INFO sip:vb@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKfuzz\r\n\
         From: <sip:a@192.0.2.9>;tag=1\r\nTo: <sip:vb@127.0.0.1>;tag=2\r\nCall-ID: fuzz\r\n\
         CSeq: 2 INFO\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    if let Ok(request) = Request::parse(raw) {
        check(&request);
    }
});
