//! A trunk that relays the caller's key presses as SIP INFO (`application/dtmf-relay`, `Signal=N`),
//! one request per digit: the call is verified from the link code just as with RFC 4733, and ends
//! clean when the caller hangs up.

use crate::support;

use serde_json::Value;
use std::time::Duration;
use support::server;
use support::sipp::TrunkCall;

const CALLER: &str = "+31687654321";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_with_a_code_in_sip_info_shows_up_verified() {
    let srv = server::start(4, |_| {}).await;
    let code = srv.new_code().await;
    let mut call = TrunkCall::new(CALLER);
    call.info_digits = code.clone();

    let Some((sipp, waiting)) = srv.call_until_waiting(&call, Duration::from_secs(8)).await else {
        return;
    };
    assert_eq!(waiting["verified"], true, "{waiting:#}");
    assert_eq!(waiting["reason"], Value::Null);
    assert_eq!(waiting["caller"], CALLER);
    assert_eq!(
        waiting["attributes"].as_array().map(Vec::len),
        Some(server::expected_attributes().len())
    );

    srv.hang_up_and_check_ended(sipp, &waiting["id"]).await;
    srv.shutdown().await;
}
