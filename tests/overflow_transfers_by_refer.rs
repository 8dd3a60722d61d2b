//! Overflow: a caller nobody answered within the maximum wait is transferred to the fallback number
//! by REFER (RFC 3515) to the trunk. When the trunk's NOTIFY says the new call is up we BYE our leg
//! and the call ends `transferred`; when the trunk refuses the REFER the caller hears the goodbye
//! signal and gets our BYE, as without overflow.
//!
//! Real peer on loopback: SIPp as the trunk.

use crate::support;

use std::time::{Duration, Instant};
use support::refer::{answer_refer, refer_to, transfer_succeeds};
use support::server::{start, TestServer};
use support::sipp::TrunkCall;
use veilig_bellen::call::machine::MaxWaitPolicy;

const CALLER: &str = "+31612340003";
const FALLBACK: &str = "sip:+31240000000@127.0.0.1";

async fn overflow_server() -> TestServer {
    start(4, |c| {
        c.calls.call.collect.first_digit_timeout = Duration::from_millis(600);
        c.calls.call.max_wait = Duration::from_millis(1500);
        c.calls.call.on_max_wait = MaxWaitPolicy::Overflow(FALLBACK.to_owned());
    })
    .await
}

/// Runs `call` until sipp ends (the scenario waits for our BYE); returns its messages, the ended
/// call's view and how long the call waited after it showed `waiting`.
async fn run(srv: &TestServer, call: &TrunkCall) -> Option<(String, serde_json::Value, Duration)> {
    let (sipp, waiting) = srv.call_until_waiting(call, Duration::from_secs(8)).await?;
    let since = Instant::now();
    let id = waiting["id"].clone();
    let messages = match sipp.finish().await {
        Ok(m) => m,
        Err(e) => panic!("the trunk never got our BYE: {e}"),
    };
    let waited = since.elapsed();
    let ended = srv
        .wait_for_call(Duration::from_secs(3), |c| {
            c["id"] == id && c["state"] == "ended"
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    srv.wait_rtp_ports_free(Duration::from_secs(3)).await;
    Some((messages, ended, waited))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_caller_is_referred_to_the_fallback_number() {
    let srv = overflow_server().await;
    let mut call = TrunkCall::new(CALLER);
    call.after_answer = transfer_succeeds(CALLER);
    call.after_answer_requests = 2;
    call.await_bye = true;
    let Some((messages, ended, waited)) = run(&srv, &call).await else {
        return;
    };
    assert_eq!(
        refer_to(&messages).as_deref(),
        Some(FALLBACK),
        "REFER to the fallback"
    );
    assert_eq!(ended["transferred"], true, "{ended:#}");
    assert_eq!(ended["agent"], serde_json::Value::Null);
    assert!(
        waited < Duration::from_millis(3500),
        "our BYE came {waited:?} after the max wait began: not right after the 200 sipfrag"
    );
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_overflow_refer_says_goodbye_and_hangs_up() {
    let srv = overflow_server().await;
    let mut call = TrunkCall::new(CALLER);
    call.after_answer = answer_refer("403 Forbidden");
    call.await_bye = true;
    let Some((messages, ended, waited)) = run(&srv, &call).await else {
        return;
    };
    assert!(refer_to(&messages).is_some(), "the REFER was tried");
    assert_eq!(ended["transferred"], false, "{ended:#}");
    // Max wait (1.5 s), then the goodbye signal (3 s), then BYE.
    assert!(
        waited >= Duration::from_millis(4000),
        "BYE after {waited:?}: the goodbye signal did not play after the refused REFER"
    );
    srv.shutdown().await;
}
