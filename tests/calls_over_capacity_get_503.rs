//! At capacity (here `max_calls = 1` and one RTP port pair) a further trunk call is refused with
//! `503 Service Unavailable` and a `Retry-After`, so the trunk can route it elsewhere or retry; once
//! the first call ends, its capacity and its RTP port are back and the next call is answered.

use crate::support;

use std::time::Duration;
use support::server;
use support::sipp::{Sipp, TrunkCall};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_over_capacity_gets_503_with_retry_after_and_capacity_comes_back() {
    let srv = server::start(1, |c| {
        c.calls.max_calls = 1;
        c.calls.retry_after = 17;
        c.calls.call.collect.first_digit_timeout = Duration::from_millis(500);
    })
    .await;

    let first = TrunkCall::new("+31600000010");
    let Some((first_sipp, first_view)) =
        srv.call_until_waiting(&first, Duration::from_secs(5)).await
    else {
        return;
    };

    let mut second = TrunkCall::new("+31600000011");
    second.expect_refusal = Some(503);
    let Some(refused) = Sipp::start(srv.sip_udp, &second) else {
        return;
    };
    let messages = refused_messages(refused).await;
    assert!(
        messages.contains("Retry-After: 17"),
        "the 503 says when to retry:\n{messages}"
    );
    assert_eq!(srv.calls().await.len(), 1, "the refused call is not listed");

    srv.hang_up_and_check_ended(first_sipp, &first_view["id"])
        .await;

    let third = TrunkCall::new("+31600000012");
    let Some((third_sipp, third_view)) =
        srv.call_until_waiting(&third, Duration::from_secs(5)).await
    else {
        return;
    };
    srv.hang_up_and_check_ended(third_sipp, &third_view["id"])
        .await;
    srv.shutdown().await;
}

async fn refused_messages(sipp: Sipp) -> String {
    sipp.finish()
        .await
        .unwrap_or_else(|e| panic!("the trunk did not get a 503 with Retry-After: {e}"))
}
