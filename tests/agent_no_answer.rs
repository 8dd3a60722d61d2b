//! When the agent's phone does not take the call, the caller goes back to `waiting` and any agent can
//! answer again:
//! - the phone rings but nobody picks up (baresip without auto-answer): after the ring timeout (2 s
//!   here, 20 s by default) our CANCEL stops the ringing and the call is `waiting`; answering again
//!   rings the phone again, and this time it is picked up;
//! - the agent rejects the ringing call (486 Busy Here from baresip): `waiting` at once;
//! - the caller hangs up while the agent's phone rings: our CANCEL stops the ringing;
//! - the agent has no registered phone: the API says `409 agent_unavailable` and the call stays
//!   `waiting` — the agent sees at once that the softphone is off instead of a call that seems taken.

use crate::support;

use serde_json::Value;
use std::time::{Duration, Instant};
use support::agent::{answer, caller_hangs_up, server_with_agent, AgentPhone, Answer};
use support::pcap::{dtmf_call_pcap, DtmfPcapConfig};
use support::server::TestServer;
use support::sipp::{Sipp, TrunkCall};

const CALLER: &str = "+31687654321";

/// A verified caller, `waiting`.
async fn waiting_call(srv: &TestServer) -> Option<(Sipp, Value)> {
    let code = srv.new_code().await;
    let mut call = TrunkCall::new(CALLER);
    call.pcap = Some(dtmf_call_pcap(&code, &DtmfPcapConfig::default()).expect("pcap"));
    let (sipp, waiting) = srv
        .call_until_waiting(&call, Duration::from_secs(8))
        .await?;
    assert_eq!(waiting["verified"], true, "{waiting:#}");
    let id = waiting["id"].clone();
    Some((sipp, id))
}

async fn state_becomes(srv: &TestServer, id: &Value, state: &str, limit: Duration) -> Value {
    srv.wait_for_call(limit, |c| &c["id"] == id && c["state"] == state)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_ringing_returns_the_call_to_waiting_and_it_can_be_answered_again() {
    let srv = server_with_agent(|c| c.calls.call.agent_ring_timeout = Duration::from_secs(2)).await;
    let Some(mut phone) = AgentPhone::register(srv.sip_udp, Answer::Manual).await else {
        return;
    };
    let Some((sipp, id)) = waiting_call(&srv).await else {
        return;
    };

    assert_eq!(answer(&srv, &id).await.0, 202);
    let rang = Instant::now();
    phone
        .wait_event("CALL_INCOMING", Duration::from_secs(3))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ringing = state_becomes(&srv, &id, "ringing", Duration::from_secs(1)).await;
    assert_eq!(ringing["agent"], "agent");
    // Nobody picks up: the ringing stops at the phone and the call waits again.
    phone
        .wait_event("CALL_CLOSED", Duration::from_secs(4))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the phone kept ringing after the ring timeout: {e}\n{}",
                phone.log()
            )
        });
    let back = state_becomes(&srv, &id, "waiting", Duration::from_secs(2)).await;
    let after = rang.elapsed();
    assert!(
        after >= Duration::from_millis(1500),
        "back to waiting after {after:?}, before the ring timeout"
    );
    assert_eq!(back["agent"], Value::Null);
    assert_eq!(back["verified"], true);

    // Answered again: the phone rings again, and now the agent picks up.
    assert_eq!(answer(&srv, &id).await.0, 202);
    phone
        .wait_event("CALL_INCOMING", Duration::from_secs(3))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    phone.command("accept").await;
    phone
        .wait_event("CALL_ESTABLISHED", Duration::from_secs(3))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    state_becomes(&srv, &id, "connected", Duration::from_secs(2)).await;

    srv.hang_up_and_check_ended(sipp, &id).await;
    phone
        .wait_event("CALL_CLOSED", Duration::from_secs(3))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    phone.stop().await;
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_rejecting_the_call_returns_it_to_waiting_at_once() {
    let srv =
        server_with_agent(|c| c.calls.call.agent_ring_timeout = Duration::from_secs(10)).await;
    let Some(mut phone) = AgentPhone::register(srv.sip_udp, Answer::Manual).await else {
        return;
    };
    let Some((sipp, id)) = waiting_call(&srv).await else {
        return;
    };

    assert_eq!(answer(&srv, &id).await.0, 202);
    phone
        .wait_event("CALL_INCOMING", Duration::from_secs(3))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let rejected = Instant::now();
    phone.command("hangup").await;
    let back = state_becomes(&srv, &id, "waiting", Duration::from_secs(3)).await;
    assert!(
        rejected.elapsed() < Duration::from_secs(3),
        "not sent back by the busy answer but by a timeout"
    );
    assert_eq!(back["agent"], Value::Null);

    srv.hang_up_and_check_ended(sipp, &id).await;
    phone.stop().await;
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_without_a_registered_phone_gets_409_and_the_call_keeps_waiting() {
    let srv = server_with_agent(|_| {}).await;
    let Some((sipp, id)) = waiting_call(&srv).await else {
        return;
    };

    let (status, body) = answer(&srv, &id).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("agent_unavailable")),
        "{body}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let still = state_becomes(&srv, &id, "waiting", Duration::from_secs(1)).await;
    assert_eq!(still["agent"], Value::Null);

    srv.hang_up_and_check_ended(sipp, &id).await;
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_hanging_up_while_the_agent_phone_rings_stops_the_ringing() {
    let srv = server_with_agent(|_| {}).await;
    let Some(mut phone) = AgentPhone::register(srv.sip_udp, Answer::Manual).await else {
        return;
    };
    let Some((sipp, id)) = waiting_call(&srv).await else {
        return;
    };
    assert_eq!(answer(&srv, &id).await.0, 202);
    phone
        .wait_event("CALL_INCOMING", Duration::from_secs(3))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    caller_hangs_up(
        srv,
        sipp,
        &id,
        phone,
        Duration::from_secs(3),
        "the agent's phone kept ringing for a caller who left",
    )
    .await;
}
