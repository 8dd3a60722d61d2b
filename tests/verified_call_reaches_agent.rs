//! The agent clicks "answer" and talks to the caller. A citizen calls with a valid code (SIPp as the
//! trunk, RFC 4733 digits from a pcap) and shows up `waiting` and verified; the agent's softphone
//! (baresip, registered with digest auth, auto-answer) is INVITEd when the agent answers through the
//! API; the call shows `connected`; the agent's voice (a 440 Hz tone) goes to the caller, whose phone
//! (`sipp -rtp_echo`) sends it straight back, and the agent hears it — so RTP went through us both
//! ways (once through PCMA↔PCMU transcoding, once with the same codec on both legs). Then one side
//! hangs up and the other side's call ends too.

use crate::support;

use serde_json::Value;
use std::time::Duration;
use support::agent::{answer, caller_hangs_up, server_with_agent, tone_share, AgentPhone, Answer};
use support::pcap::{dtmf_call_pcap, DtmfPcapConfig};
use support::server::TestServer;
use support::sipp::{Sipp, TrunkCall};

const CALLER: &str = "+31612345678";

/// A verified caller waiting, the agent's phone registered, the agent answers: returns the call's
/// id once the API shows it `connected` and both phones had 1.5 s to talk.
async fn connect(
    srv: &TestServer,
    phone: &mut AgentPhone,
    call: &TrunkCall,
) -> Option<(Sipp, Value)> {
    let (sipp, waiting) = srv.call_until_waiting(call, Duration::from_secs(8)).await?;
    assert_eq!(waiting["verified"], true, "{waiting:#}");
    let id = waiting["id"].clone();
    assert_eq!(answer(srv, &id).await.0, 202);
    if let Err(e) = phone
        .wait_event("CALL_ESTABLISHED", Duration::from_secs(5))
        .await
    {
        panic!(
            "the agent's phone never took the call: {e}\n{}\nsipp:\n{}",
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
    assert_eq!(connected["agent"], "agent");
    assert_eq!(connected["verified"], true);
    let (rate, heard) = phone
        .wait_heard(
            Duration::from_millis(500),
            440.0,
            0.3,
            Duration::from_secs(5),
        )
        .await;
    assert!(
        heard.len() >= rate as usize / 2,
        "the agent heard {} samples at {rate} Hz in 5 s: no RTP from the caller's side\n{}",
        heard.len(),
        phone.log()
    );
    let share = tone_share(&heard, f64::from(rate), 440.0);
    assert!(
        share > 0.3,
        "the agent's own voice, echoed by the caller's phone, is only {share:.2} of what the agent heard: \
         RTP did not make the round trip agent → caller → agent"
    );
    assert!(
        !phone.log().contains("received event"),
        "digits of the caller's link code reached the agent's phone:\n{}",
        phone.log()
    );
    Some((sipp, id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_talks_to_a_verified_caller_until_the_caller_hangs_up() {
    let srv = server_with_agent(|_| {}).await;
    // The trunk speaks A-law, this phone only µ-law: every packet is transcoded both ways.
    let Some(mut phone) =
        AgentPhone::register_with(srv.sip_udp, Answer::Auto, ";audio_codecs=PCMU/8000/1").await
    else {
        return;
    };
    let code = srv.new_code().await;
    let mut call = TrunkCall::new(CALLER);
    call.pcap = Some(dtmf_call_pcap(&code, &DtmfPcapConfig::default()).expect("pcap"));
    call.rtp_echo = true;
    let Some((sipp, id)) = connect(&srv, &mut phone, &call).await else {
        return;
    };
    assert!(
        phone.log().contains("audio decoder: PCMU"),
        "the agent leg is not µ-law:\n{}",
        phone.log()
    );

    caller_hangs_up(
        srv,
        sipp,
        &id,
        phone,
        Duration::from_secs(5),
        "the caller's BYE did not end the agent's call",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_hangs_up_and_the_caller_gets_a_bye() {
    let srv = server_with_agent(|_| {}).await;
    let Some(mut phone) = AgentPhone::register(srv.sip_udp, Answer::Auto).await else {
        return;
    };
    let code = srv.new_code().await;
    let mut call = TrunkCall::new(CALLER);
    call.pcap = Some(dtmf_call_pcap(&code, &DtmfPcapConfig::default()).expect("pcap"));
    call.rtp_echo = true;
    call.await_bye = true;
    let Some((sipp, id)) = connect(&srv, &mut phone, &call).await else {
        return;
    };

    phone.hang_up_on(sipp).await;
    let ended = srv
        .wait_for_call(Duration::from_secs(3), |c| {
            c["id"] == id && c["state"] == "ended"
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ended["attributes"], serde_json::json!([]));
    srv.wait_rtp_ports_free(Duration::from_secs(3)).await;
    phone.stop().await;
    srv.shutdown().await;
}
