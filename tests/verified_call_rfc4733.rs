//! A citizen discloses on the website, gets the link code in the Yivi app, and the phone dials the
//! municipality sending the code as RFC 4733 events (SIPp playing a pcap as the trunk): the agents'
//! call list shows the call `waiting`, verified, with the disclosed attributes (labels and values)
//! and the calling number. When the caller hangs up the call shows `ended` and the attributes and
//! number are gone; the RTP port is free again.

use crate::support;

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::pcap::{dtmf_call_pcap, DtmfPcapConfig};
use support::server::{self, expected_attributes};
use support::sipp::TrunkCall;

const CALLER: &str = "+31612345678";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_with_a_code_in_rfc4733_shows_up_verified_and_ends_clean() {
    let srv = server::start(4, |_| {}).await;
    let code = srv.new_code().await;
    let mut call = TrunkCall::new(CALLER);
    call.pcap = Some(dtmf_call_pcap(&code, &DtmfPcapConfig::default()).expect("pcap"));

    let started = Instant::now();
    let Some((sipp, waiting)) = srv.call_until_waiting(&call, Duration::from_secs(8)).await else {
        return;
    };
    eprintln!("answer to waiting+verified: {:?}", started.elapsed());
    assert_eq!(waiting["verified"], true, "{waiting:#}");
    assert_eq!(waiting["reason"], Value::Null);
    assert_eq!(waiting["caller"], CALLER);
    assert_eq!(waiting["tenant"], "demo");
    let shown: Vec<Value> = expected_attributes()
        .into_iter()
        .map(|(id, label, value)| json!({"id": id, "label": label, "value": value}))
        .collect();
    assert_eq!(waiting["attributes"], Value::Array(shown));

    srv.hang_up_and_check_ended(sipp, &waiting["id"]).await;
    eprintln!("whole call: {:?}", started.elapsed());
    srv.shutdown().await;
}
