//! `transfer = "refer"`: when an agent takes a call we ask the trunk (REFER, RFC 3515) to call the
//! agent's phone itself and leave the call once its NOTIFY says the new call is up (sipfrag
//! `200 OK`, RFC 5589: we BYE our leg). The call list shows the call ended, transferred, with the
//! agent recorded; no RTP port stays held; our phone never rang. When the trunk refuses the REFER
//! (403, 501) or its NOTIFY reports a failure, we fall back to bridging: the agent's phone rings and
//! talks to the caller through our relay.
//!
//! Real peers on loopback: SIPp as the trunk (the transferee), baresip as the agent's phone.

use crate::support;

use serde_json::Value;
use std::time::Duration;
use support::agent::{answer, caller_hangs_up, server_with_agent, tone_share, AgentPhone, Answer};
use support::refer::{answer_refer, notify, refer_to, transfer_succeeds};
use support::server::TestServer;
use support::sipp::{Sipp, TrunkCall};
use veilig_bellen::call::machine::TransferMode;

const CALLER: &str = "+31612340002";

async fn refer_server() -> TestServer {
    server_with_agent(|c| {
        c.calls.call.transfer = TransferMode::Refer;
        // No link code in these calls: they wait (unverified) after a short silence.
        c.calls.call.collect.first_digit_timeout = Duration::from_millis(600);
    })
    .await
}

async fn waiting_call(srv: &TestServer, call: &TrunkCall) -> (Sipp, Value) {
    let (sipp, waiting) = srv
        .call_until_waiting(call, Duration::from_secs(8))
        .await
        .expect("no pcap in this call, so no skip");
    let id = waiting["id"].clone();
    (sipp, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trunk_takes_the_refer_and_the_call_leaves_us_transferred() {
    let srv = refer_server().await;
    let Some(mut phone) = AgentPhone::register(srv.sip_udp, Answer::Manual).await else {
        return;
    };
    let mut call = TrunkCall::new(CALLER);
    call.after_answer = transfer_succeeds(CALLER);
    call.after_answer_requests = 2;
    call.await_bye = true;
    let (sipp, id) = waiting_call(&srv, &call).await;
    assert_eq!(answer(&srv, &id).await.0, 202);

    let messages = match sipp.finish().await {
        Ok(m) => m,
        Err(e) => panic!("the trunk's REFER scenario failed (no BYE after the 200 sipfrag?): {e}"),
    };
    let target = refer_to(&messages).expect("the trunk got a REFER with Refer-To");
    eprintln!("Refer-To: {target}");
    assert!(
        target.contains("sip:agent") && target.contains("127.0.0.1"),
        "Refer-To is not the agent's registered phone: {target}"
    );
    let ended = srv
        .wait_for_call(Duration::from_secs(3), |c| {
            c["id"] == id && c["state"] == "ended"
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ended["transferred"], true, "{ended:#}");
    assert_eq!(ended["agent"], "agent", "{ended:#}");
    assert_eq!(ended["caller"], "", "calling number gone after the call");
    srv.wait_rtp_ports_free(Duration::from_secs(3)).await;
    assert_eq!(srv.running.calls.live_calls(), 0);
    // We handed the call over: our own INVITE never went to the agent's phone.
    assert!(
        phone
            .wait_event("CALL_INCOMING", Duration::from_millis(500))
            .await
            .is_err(),
        "we rang the agent's phone although the trunk took the REFER"
    );
    phone.stop().await;
    srv.shutdown().await;
}

/// The trunk does not transfer (`after_answer`): the agent's phone rings, answers, and hears its
/// own voice echoed by the caller's phone through our relay.
async fn falls_back_to_bridging(after_answer: String, requests: u32) {
    let srv = refer_server().await;
    let Some(mut phone) = AgentPhone::register(srv.sip_udp, Answer::Auto).await else {
        return;
    };
    let mut call = TrunkCall::new(CALLER);
    call.rtp_echo = true;
    call.after_answer = after_answer;
    call.after_answer_requests = requests;
    let (sipp, id) = waiting_call(&srv, &call).await;
    assert_eq!(answer(&srv, &id).await.0, 202);
    if let Err(e) = phone
        .wait_event("CALL_ESTABLISHED", Duration::from_secs(8))
        .await
    {
        panic!(
            "no fallback: the agent's phone never got the call: {e}\n{}\nsipp:\n{}",
            phone.log(),
            sipp.logs()
        );
    }
    let connected = srv
        .wait_for_call(Duration::from_secs(3), |c| {
            c["id"] == id && c["state"] == "connected"
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(connected["transferred"], false);
    assert_eq!(connected["media"], "relay");
    assert!(
        refer_to(&sipp.messages()).is_some(),
        "the REFER was never tried"
    );
    let (rate, heard) = phone
        .wait_heard(
            Duration::from_millis(500),
            440.0,
            0.3,
            Duration::from_secs(5),
        )
        .await;
    let share = tone_share(&heard, f64::from(rate), 440.0);
    assert!(
        heard.len() >= rate as usize / 2 && share > 0.3,
        "no audio round trip through the relay after the fallback: {} samples, 440 Hz share {share:.2}",
        heard.len()
    );
    caller_hangs_up(
        srv,
        sipp,
        &id,
        phone,
        Duration::from_secs(5),
        "the agent's call did not end",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_refer_403_falls_back_to_ringing_the_agent() {
    falls_back_to_bridging(answer_refer("403 Forbidden"), 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_without_refer_501_falls_back_to_ringing_the_agent() {
    falls_back_to_bridging(answer_refer("501 Not Implemented"), 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_transfer_sipfrag_falls_back_to_ringing_the_agent() {
    let steps = answer_refer("202 Accepted")
        + &notify(CALLER, 2, "100 Trying")
        + &notify(CALLER, 3, "486 Busy Here");
    falls_back_to_bridging(steps, 2).await;
}
