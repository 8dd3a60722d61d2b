//! Fuzz target: the registrar's REGISTER handling (RFC 3261 §10.3) on what a hostile phone may send:
//! the datagram is parsed, read as the driver's transaction user reads a REGISTER (To as AOR,
//! Contacts, Expires, Path), and handed to one long-lived registrar; bindings are then looked up and
//! expired. Must never panic, and never hold more bindings per AOR than its limit.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use sip::message::{Contact, HeaderName, Message};
use sip::registrar::{RegisterRequest, Registrar, RegistrarConfig};
use sip::transaction::Transport;

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let mut registrar = Registrar::new(RegistrarConfig::default());
    let source: SocketAddr = "192.0.2.7:5062".parse().expect("literal address");
    // Several REGISTERs in one input, separated by a NUL byte, to reach refreshes and removals.
    for (i, chunk) in data.split(|b| *b == 0).take(8).enumerate() {
        let Ok(Message::Request(req)) = Message::parse(chunk.to_vec()) else {
            continue;
        };
        let h = &req.headers;
        let Ok(to) = h.to() else { continue };
        let Ok(aor) = RegisterRequest::aor_of(&to.uri) else {
            continue;
        };
        let Ok(contacts) = h.contacts().collect::<Result<Vec<Contact>, _>>() else {
            continue;
        };
        let (Ok(call_id), Ok(cseq), Ok(expires)) = (h.call_id(), h.cseq(), h.expires()) else {
            continue;
        };
        let register = RegisterRequest {
            aor: aor.clone(),
            call_id: call_id.to_string(),
            cseq: cseq.seq,
            contacts,
            expires,
            path: h.values(&HeaderName::Path).map(|v| v.to_string()).collect(),
            source,
            transport: Transport::Udp,
        };
        let at = now + Duration::from_secs(i as u64 * 30);
        let _ = registrar.handle_register(at, &register);
        let held = registrar.lookup(&aor, at).len();
        assert!(
            held <= RegistrarConfig::default().max_contacts,
            "{held} bindings"
        );
    }
    registrar.handle_timeout(now + Duration::from_secs(7 * 24 * 3600));
    while registrar.poll_event().is_some() {}
});
