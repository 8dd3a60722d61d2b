//! Fuzz target: in-dialog request and response handling (RFC 3261 §12.2, §14, RFC 4028, RFC 3515)
//! on a confirmed dialog, with whatever a hostile peer sends next: requests (CSeq order, glare,
//! BYE, target refresh) and responses (2xx with Record-Route and Contact, 491, 481), the dialog's
//! timers, and building our own requests afterwards. Must never panic.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use sip::dialog::Dialog;
use sip::endpoint::Target;
use sip::message::{Message, NameAddr, Request, Response, StatusCode};
use sip::transaction::{TimerConfig, Transport};

const INVITE: &str = "INVITE sip:veilig-bellen@127.0.0.1:5060 SIP/2.0\r\n\
    Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKfuzz\r\n\
    Record-Route: <sip:192.0.2.1;lr>\r\n\
    From: <sip:+31612345678@192.0.2.9>;tag=trunk\r\n\
    To: <sip:+31850000000@127.0.0.1>\r\n\
    Call-ID: fuzz-call\r\n\
    CSeq: 10 INVITE\r\n\
    Contact: <sip:trunk@192.0.2.9:5060>\r\n\
    Session-Expires: 90;refresher=uas\r\n\
    Content-Length: 0\r\n\r\n";

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let Ok(invite) = Request::parse(INVITE) else {
        return;
    };
    let ok = Response::for_request(&invite, StatusCode::OK, None).with_to_tag("vb");
    let contact = NameAddr::parse("<sip:veilig-bellen@127.0.0.1:5060>").expect("literal");
    let peer = Target {
        transport: Transport::Udp,
        addr: "192.0.2.1:5060".parse().expect("literal"),
    };
    let Ok(mut dialog) = Dialog::uas(&invite, &ok, contact, peer, TimerConfig::default()) else {
        return;
    };
    dialog.handle_sent_response(now, &ok);
    for (i, chunk) in data.split(|b| *b == 0).take(8).enumerate() {
        let at = now + Duration::from_millis(i as u64 * 700);
        match Message::parse(chunk.to_vec()) {
            Ok(Message::Request(req)) => {
                if dialog.matches_request(&req) || i % 2 == 0 {
                    if let Ok(()) = dialog.handle_request(at, &req) {
                        let _ = dialog.response(&req, StatusCode::OK);
                    }
                }
            }
            Ok(Message::Response(resp)) => {
                let _ = dialog.matches_response(&resp);
                dialog.handle_response(at, &resp, i as u32);
            }
            Err(_) => {}
        }
        dialog.handle_timeout(at);
        while dialog.poll_event().is_some() {}
        let _ = dialog.next_hop();
        let _ = dialog.reinvite(None);
        let _ = dialog.bye();
    }
});
