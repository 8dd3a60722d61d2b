//! Fuzz target: one datagram through `sip::message` — parse, every typed accessor, validation
//! (which may build a response from salvaged headers), write and re-parse. Must never panic, and
//! a parsed message written out must parse again to the same headers and body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sip::message::validate::{check, Policy};
use sip::message::{HeaderName, Message, TransactionKey};

fuzz_target!(|data: &[u8]| {
    let _ = check(data.to_vec(), &Policy::DEFAULT);
    let Ok(msg) = Message::parse(data.to_vec()) else {
        return;
    };
    let h = msg.headers();
    let _ = h.vias().count();
    let _ = (
        h.from(),
        h.to(),
        h.call_id(),
        h.cseq(),
        h.max_forwards(),
        h.expires(),
    );
    for c in h.contacts().flatten() {
        let _ = (c.expires(), c.q(), c.addr().map(|a| a.display_name()));
    }
    let _ = h.routes(&HeaderName::RecordRoute).count();
    let _ = h.auth(&HeaderName::Authorization);
    let _ = (
        h.session_expires(),
        h.retry_after(),
        h.replaces(),
        h.refer_to(),
    );
    let _ = h.reasons().count();
    if let Message::Request(r) = &msg {
        let _ = TransactionKey::for_request(r);
        let _ = (r.uri.user(), r.uri.host(), r.uri.params().iter().count());
    }
    let written = msg.to_bytes();
    let again = Message::parse(written).expect("written message parses");
    assert_eq!(again.body(), msg.body());
    let strip = |m: &Message| {
        m.headers()
            .iter()
            .filter(|h| h.name != HeaderName::ContentLength)
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&again), strip(&msg));
});
