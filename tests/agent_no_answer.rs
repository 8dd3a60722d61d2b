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
    // The 409 is decided before anything reaches the call task, and a call that is taken shows
    // `ringing` at once (`Registry::answer`): the list already tells.
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

/// Polls the registry on simulated time (`step` at a time, `turns` at most) until a call satisfies
/// `pred`.
async fn registry_shows(
    srv: &TestServer,
    turns: u32,
    step: Duration,
    pred: impl Fn(&veilig_bellen::call::registry::CallView) -> bool,
) -> Option<veilig_bellen::call::registry::CallView> {
    for _ in 0..turns {
        let calls = srv.running.registry.list(std::time::SystemTime::now());
        if let Some(call) = calls.into_iter().find(|c| pred(c)) {
            return Some(call);
        }
        // Simulated time: a poll's back-off costs no real time.
        tokio::time::sleep(step).await;
    }
    None
}

/// The ring timeout on tokio's paused clock (the call task, the SIP driver and this test read only
/// tokio's clock): a caller without a code waits after the collecting time, the agent answers, the
/// agent's phone (this test: a UDP socket registered as `agent`) rings and nobody picks up; 20 s of
/// simulated time later, to the millisecond, our CANCEL stops it and the caller waits again, shown
/// as `no_answer`.
#[tokio::test(start_paused = true)]
async fn on_a_paused_clock_the_ring_timeout_cancels_the_phone_after_exactly_its_time() {
    use support::raw_sip::{header, recv_until, response_to, RawTrunk};
    use tokio::net::UdpSocket;
    use tokio::time::Instant as Virtual;
    use veilig_bellen::call::agent_outcome::AgentLegReason;
    use veilig_bellen::call::CallState;
    use veilig_bellen::tenant::AgentId;
    const RING: Duration = Duration::from_secs(20);
    let srv = server_with_agent(|c| {
        c.calls.call.agent_ring_timeout = RING;
        // This caller only listens: no RTP from it must not end the call first.
        c.calls.media_timeout = Duration::from_secs(3600);
        // Media threads keep real time: the calls' media runs on the runtime, on its clock.
        c.calls.media_io = veilig_bellen::media_plane::MediaIo::Tokio;
    })
    .await;
    let real = Instant::now();
    let phone = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    support::sipp_phone::register(&phone, srv.sip_udp).await;
    let sig = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let ear = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let trunk = RawTrunk::new(
        &sig,
        srv.sip_udp,
        ear.local_addr().expect("addr").port(),
        CALLER,
    );
    trunk.send(&trunk.invite(1, "sendrecv")).await;
    let ok = trunk.response_to(1, "INVITE", Duration::from_secs(5)).await;
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    let to = header(&ok, "To").expect("To in the 200 OK");
    trunk.send(&trunk.in_dialog("ACK", 1, &to)).await;

    // No code: after the collecting time (10 s, simulated) the caller waits.
    let waiting = registry_shows(&srv, 300, Duration::from_millis(100), |c| {
        c.state == CallState::Waiting
    })
    .await
    .expect("the caller waits");
    srv.running
        .registry
        .answer(waiting.id, AgentId("agent".into()))
        .expect("the agent takes the call");

    let me = phone.local_addr().expect("addr");
    let invite = loop {
        let m = recv_until(&phone, Virtual::now() + Duration::from_secs(5))
            .await
            .expect("the phone is INVITEd");
        if m.starts_with("INVITE ") {
            break m;
        }
    };
    let rings = Virtual::now();
    let contact = format!("Contact: <sip:agent@{me}>\r\n");
    let ringing = response_to(&invite, "180 Ringing", "rawphone", &contact, "");
    phone
        .send_to(ringing.as_bytes(), srv.sip_udp)
        .await
        .expect("send 180");
    let cancel = loop {
        let m = recv_until(&phone, rings + RING + Duration::from_secs(30))
            .await
            .expect("our CANCEL stops the ringing");
        if m.starts_with("CANCEL ") {
            break m;
        }
    };
    let rang = rings.elapsed();
    for answer in [
        response_to(&cancel, "200 OK", "rawphone", "", ""),
        response_to(&invite, "487 Request Terminated", "rawphone", "", ""),
    ] {
        phone
            .send_to(answer.as_bytes(), srv.sip_udp)
            .await
            .expect("send");
    }
    assert!(
        (RING..RING + Duration::from_millis(100)).contains(&rang),
        "the phone rang {rang:?}, not the ring timeout ({RING:?})"
    );

    let back = registry_shows(&srv, 100, Duration::from_millis(10), |c| {
        c.id == waiting.id && c.state == CallState::Waiting && c.agent_leg.is_some()
    })
    .await
    .expect("the caller waits again");
    let leg = back.agent_leg.expect("the failed leg is shown");
    assert_eq!((leg.reason, leg.status), (AgentLegReason::NoAnswer, None));
    assert_eq!(back.agent, None);
    let real = real.elapsed();
    assert!(
        real < RING / 4,
        "{real:?} of real time for a 10 s wait and a {RING:?} ring"
    );

    trunk.send(&trunk.in_dialog("BYE", 2, &to)).await;
    let bye_ok = trunk.response_to(2, "BYE", Duration::from_secs(5)).await;
    assert!(bye_ok.starts_with("SIP/2.0 200"), "{bye_ok}");
    registry_shows(&srv, 100, Duration::from_millis(10), |c| {
        c.id == waiting.id && c.state == CallState::Ended
    })
    .await
    .expect("the call ends");
    srv.shutdown().await;
}
