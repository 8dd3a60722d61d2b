//! A whole verified call — website session, disclosure, the trunk call sending the code as RFC 4733,
//! the agents' list, the hang-up — with every log line at TRACE captured in this process: no
//! attribute value, no link code and no calling number may appear in the log output.
//!
//! Two calls: one by our own caller (`veilig-bellen call`, a child process whose logs are not
//! captured here), which needs nothing installed — so the check cannot pass by skipping — and one
//! by sipp playing a pcap, where sipp can.

use crate::support;
use crate::support::call_cli;

use std::time::Duration;
use support::pcap::{dtmf_call_pcap, DtmfPcapConfig};
use support::server::{self, expected_attributes};
use support::sipp::TrunkCall;

const CALLER: &str = "+31622223333";

// One test: the log capture is the process's one global subscriber.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_calls_logged_at_trace_hold_no_personal_data() {
    let buffer = support::log_capture::capture_at_trace();
    let srv = server::start(4, |_| {}).await;

    // Our own caller: needs nothing installed.
    let own_code = srv.new_code().await;
    let uri = format!("sip:{}@{}", server::TENANT_NUMBER, srv.sip_udp);
    let run = call_cli::call(&[&uri, "--code", &own_code, "--from", CALLER, "--hold", "1"]).await;
    assert_eq!(run.code, Some(0), "{run}");
    let verified = srv
        .wait_for_call(Duration::from_secs(10), |c| c["verified"] == true)
        .await
        .unwrap_or_else(|e| panic!("no verified call: {e}"));
    srv.wait_ended(&verified["id"]).await;
    let mut codes = vec![own_code];

    // sipp playing a pcap, where it can.
    let code = srv.new_code().await;
    let mut call = TrunkCall::new(CALLER);
    call.pcap = Some(dtmf_call_pcap(&code, &DtmfPcapConfig::default()).expect("pcap"));
    if let Some((sipp, waiting)) = srv.call_until_waiting(&call, Duration::from_secs(8)).await {
        assert_eq!(waiting["verified"], true, "{waiting:#}");
        srv.hang_up_and_check_ended(sipp, &waiting["id"]).await;
        codes.push(code);
    }
    srv.shutdown().await;
    assert_no_personal_data(&buffer.text(), &codes);
}

/// The server's call logs were captured, and none of them holds the code, the calling number or
/// an attribute value.
fn assert_no_personal_data(log: &str, codes: &[String]) {
    assert!(
        log.contains("answered a call") && log.contains("call ended"),
        "the server's call logs were captured ({} bytes)",
        log.len()
    );
    let mut secrets = vec![
        ("calling number", CALLER.to_owned()),
        (
            "calling number without +",
            CALLER.trim_start_matches('+').to_owned(),
        ),
    ];
    for code in codes {
        secrets.push(("link code", code.clone()));
    }
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
