//! A whole verified call — website session, disclosure, the trunk call sending the code as RFC 4733,
//! the agents' list, the hang-up — with every log line at TRACE captured in this process: no
//! attribute value, no link code and no calling number may appear in the log output.

mod support;

use std::time::Duration;
use support::pcap::{dtmf_call_pcap, DtmfPcapConfig};
use support::server::{self, expected_attributes};
use support::sipp::TrunkCall;

const CALLER: &str = "+31622223333";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_call_logged_at_trace_holds_no_personal_data() {
    let buffer = support::log_capture::capture_at_trace();

    let srv = server::start(4, |_| {}).await;
    let code = srv.new_code().await;
    let mut call = TrunkCall::new(CALLER);
    call.pcap = Some(dtmf_call_pcap(&code, &DtmfPcapConfig::default()).expect("pcap"));
    let Some((sipp, waiting)) = srv.call_until_waiting(&call, Duration::from_secs(8)).await else {
        return;
    };
    assert_eq!(waiting["verified"], true, "{waiting:#}");
    srv.hang_up_and_check_ended(sipp, &waiting["id"]).await;
    srv.shutdown().await;

    let log = buffer.text();
    assert!(
        log.contains("answered a call") && log.contains("call ended"),
        "the server's call logs were captured ({} bytes)",
        log.len()
    );
    let mut secrets = vec![
        ("link code", code.clone()),
        ("calling number", CALLER.to_owned()),
        (
            "calling number without +",
            CALLER.trim_start_matches('+').to_owned(),
        ),
    ];
    for (id, _, value) in expected_attributes() {
        secrets.push(("attribute value", value.clone()));
        let _ = id;
    }
    let leaks: Vec<String> = log
        .lines()
        .filter_map(|line| {
            secrets
                .iter()
                .find(|(_, s)| line.contains(s.as_str()))
                .map(|(what, _)| format!("{what}: {line}"))
        })
        .collect();
    assert!(
        leaks.is_empty(),
        "{} log lines hold personal data:\n{}",
        leaks.len(),
        leaks.join("\n")
    );
}
