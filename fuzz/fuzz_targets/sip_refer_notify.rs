//! Fuzz target: REFER progress as a trunk reports it — a NOTIFY's `message/sipfrag` body (RFC 3420)
//! and its `Subscription-State` header (RFC 6665 §8.2.3), parsed and read back through
//! `Dialog::read_refer_notify`. Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sip::dialog::refer::{SipFragStatus, SubscriptionState};
use sip::dialog::Dialog;
use sip::message::{HeaderName, Method, Request};

fuzz_target!(|data: &[u8]| {
    let _ = SipFragStatus::parse(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(state) = SubscriptionState::parse(text) {
        // What we write we read back the same.
        let again = SubscriptionState::parse(&state.to_string());
        assert_eq!(again.as_ref(), Some(&state), "{state:?}");
    }
    // The first line as the header, the rest as the body.
    let (header, body) = text.split_once('\n').unwrap_or((text, ""));
    let mut notify = Request::new(
        Method::Notify,
        "sip:veilig-bellen@127.0.0.1:5060"
            .parse()
            .expect("literal URI"),
    );
    notify
        .headers
        .push(HeaderName::SubscriptionState, header.replace('\r', ""));
    notify.set_body(Some("message/sipfrag"), body.as_bytes().to_vec());
    let _ = Dialog::read_refer_notify(&notify);
});
