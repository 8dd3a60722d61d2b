//! Graceful shutdown (what `serve` does on SIGTERM): from the moment it starts, a new trunk call is
//! refused with `503` and a `Retry-After` (the trunk tries another instance); a call already up
//! is left alone for the grace time, then hung up with a BYE the caller receives — nobody is left
//! in a dead call.

use crate::support;

use std::time::{Duration, Instant};
use support::server::{self, TestServer};
use support::sipp::{Sipp, TrunkCall};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_calls_get_503_and_live_calls_get_a_bye_after_the_grace_time() {
    let logs = support::log_capture::capture(tracing::Level::INFO);
    let srv = server::start(2, |c| {
        c.calls.retry_after = 23;
        c.calls.call.collect.first_digit_timeout = Duration::from_millis(500);
    })
    .await;
    let mut live = TrunkCall::new("+31600000031");
    live.await_bye = true;
    let Some((live_sipp, _)) = srv.call_until_waiting(&live, Duration::from_secs(8)).await else {
        return;
    };
    let sip = srv.sip_udp;
    let TestServer { running, .. } = srv;
    let grace = Duration::from_secs(2);
    let started = Instant::now();
    let draining = tokio::spawn(running.drain_and_shutdown(grace));
    // The shutdown has begun (new calls are refused from its first step on, before this line).
    assert!(
        logs.wait_for(
            "shutting down: waiting for calls to finish",
            Duration::from_secs(3)
        )
        .await,
        "the shutdown did not begin:\n{}",
        logs.text()
    );

    let mut late = TrunkCall::new("+31600000032");
    late.expect_refusal = Some(503);
    let Some(refused) = Sipp::start(sip, &late) else {
        return;
    };
    let messages = refused
        .finish()
        .await
        .unwrap_or_else(|e| panic!("a call during shutdown was not refused with 503: {e}"));
    assert!(messages.contains("Retry-After: 23"), "{messages}");

    let messages = live_sipp
        .finish()
        .await
        .unwrap_or_else(|e| panic!("the live call got no BYE at shutdown: {e}"));
    let waited = started.elapsed();
    assert!(
        waited >= grace,
        "the call was cut after {waited:?}, before the grace time {grace:?}"
    );
    assert!(messages.contains("BYE sip:"), "{messages}");
    let cut = tokio::time::timeout(Duration::from_secs(10), draining)
        .await
        .expect("shutdown ends")
        .expect("shutdown task");
    assert_eq!(cut, 1, "one call had to be hung up");
}
