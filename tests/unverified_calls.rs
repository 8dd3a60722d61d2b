//! Calls that do not bring a valid link code still reach the agents' list as `waiting`, unverified,
//! each with the one reason an agent needs: no digits at all → `no_code`; four digits →
//! `incomplete_code`; eight digits that are no code → `unknown_code`; a code another call already
//! used → `used_code`. The collection timeouts are shortened so each call is classified quickly.

use crate::support;

use serde_json::Value;
use std::time::Duration;
use support::pcap::{dtmf_call_pcap, DtmfPcapConfig};
use support::server::{self, TestServer};
use support::sipp::TrunkCall;
use veilig_bellen::server::ServerConfig;

fn quick_timeouts(config: &mut ServerConfig) {
    config.calls.call.collect.first_digit_timeout = Duration::from_millis(1500);
    config.calls.call.collect.inter_digit_timeout = Duration::from_millis(1000);
}

/// Calls with RFC 4733 `digits` (none: no RTP at all) and checks the call waits unverified for
/// `reason`; then hangs up.
async fn unverified_call(srv: &TestServer, caller: &str, digits: &str, reason: &str) {
    let mut call = TrunkCall::new(caller);
    if !digits.is_empty() {
        call.pcap = Some(dtmf_call_pcap(digits, &DtmfPcapConfig::default()).expect("pcap"));
    }
    let Some((sipp, waiting)) = srv.call_until_waiting(&call, Duration::from_secs(8)).await else {
        return;
    };
    assert_eq!(waiting["verified"], false, "{waiting:#}");
    assert_eq!(waiting["reason"], reason, "{waiting:#}");
    assert_eq!(waiting["caller"], caller);
    assert_eq!(waiting["attributes"], Value::Array(vec![]));
    srv.hang_up_and_check_ended(sipp, &waiting["id"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_without_digits_waits_as_no_code() {
    let srv = server::start(4, quick_timeouts).await;
    unverified_call(&srv, "+31600000001", "", "no_code").await;
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_with_four_digits_waits_as_incomplete_code() {
    let srv = server::start(4, quick_timeouts).await;
    unverified_call(&srv, "+31600000002", "1234", "incomplete_code").await;
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_with_eight_wrong_digits_waits_as_unknown_code() {
    let srv = server::start(4, quick_timeouts).await;
    // A real code exists, but these digits are not it. Repeated digits on purpose: each press is its
    // own RFC 4733 event (own timestamp), so all eight count and the verdict is not `incomplete_code`.
    let code = srv.new_code().await;
    let wrong = if code == "55500011" {
        "55500022"
    } else {
        "55500011"
    };
    unverified_call(&srv, "+31600000003", wrong, "unknown_code").await;
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_call_with_a_used_code_waits_as_used_code() {
    let srv = server::start(4, quick_timeouts).await;
    let code = srv.new_code().await;
    let mut first = TrunkCall::new("+31600000004");
    first.pcap = Some(dtmf_call_pcap(&code, &DtmfPcapConfig::default()).expect("pcap"));
    let Some((first_sipp, first_view)) =
        srv.call_until_waiting(&first, Duration::from_secs(8)).await
    else {
        return;
    };
    assert_eq!(first_view["verified"], true, "{first_view:#}");

    // Someone else dials with the same code while the first call still waits.
    unverified_call(&srv, "+31600000005", &code, "used_code").await;

    let still = srv
        .wait_for_call(Duration::from_secs(1), |c| c["id"] == first_view["id"])
        .await
        .expect("first call listed");
    assert_eq!(still["state"], "waiting");
    assert_eq!(
        still["verified"], true,
        "the first caller keeps the verification"
    );
    srv.hang_up_and_check_ended(first_sipp, &first_view["id"])
        .await;
    srv.shutdown().await;
}
