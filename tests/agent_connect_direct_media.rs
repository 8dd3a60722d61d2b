//! `media = "direct"`: once the agent's phone is connected through our relay, we re-INVITE the trunk
//! with the agent's RTP address and then the agent with the trunk's, so caller and agent talk end to
//! end. A user sees it as: the call still works (the agent hears its own voice echoed by the caller's
//! phone, `sipp -rtp_echo`), the call shows `media: "direct"`, and our relay forwards nothing any more.
//! A trunk that refuses the re-INVITE (488) keeps the call on the relay, and audio still flows; a
//! trunk whose re-INVITE crossed one of its own (491) gets ours again after the back-off; an agent
//! phone that refuses its re-INVITE after the trunk moved gets the trunk moved back to our relay.
//!
//! Real peers on loopback: SIPp as the trunk, baresip as the agent's phone.

use crate::support;

use std::time::Duration;
use support::agent::{caller_hangs_up, tone_share, AgentPhone, Answer};
use support::direct_media::{
    answered, call_view, connect, hang_up_with_sipp_agent, relay_quiet,
    server as direct_media_server, trunk_reinvite_ports,
};
use support::server::TestServer;
use support::sipp::{received, wait_messages, TrunkCall};
use support::sipp_phone::{ok_invite, scenario, SippPhone, RECV_INVITE};
use support::sipp_xml::{trunk_accepts_reinvite, trunk_refuses_reinvite, OK_LAST, RECV_ACK};

const CALLER: &str = "+31612340001";

/// An agent phone (SIPp) that answers the call but refuses any media change (488), then waits for
/// our BYE.
fn agent_refuses_reinvite() -> String {
    scenario(
        "agent phone refusing re-INVITEs",
        &format!(
            "{RECV_INVITE}{}{RECV_ACK}{}  <recv request=\"BYE\" timeout=\"14000\"/>\n{OK_LAST}",
            ok_invite(),
            trunk_refuses_reinvite("488 Not Acceptable Here"),
        ),
    )
}

/// Over 1.5 s: packets our relay forwarded, and how much of what the agent newly heard is its own
/// 440 Hz voice come back from the caller's phone.
async fn listen(srv: &TestServer, phone: &AgentPhone) -> (u64, usize, f64) {
    let relayed = srv.running.calls.relayed_packets();
    let before = phone.heard().1.len();
    // The listening window the caller's assertions are about.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let relayed = srv.running.calls.relayed_packets() - relayed;
    let (rate, heard) = phone.heard();
    let new = heard.get(before..).unwrap_or_default();
    let share = tone_share(new, f64::from(rate), 440.0);
    (relayed, new.len() * 1000 / rate.max(1) as usize, share)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_and_agent_talk_end_to_end_after_the_reinvites() {
    let srv = direct_media_server().await;
    let Some(mut phone) = AgentPhone::register(srv.sip_udp, Answer::Auto).await else {
        return;
    };
    let mut call = TrunkCall::new(CALLER);
    call.rtp_echo = true;
    call.after_answer = trunk_accepts_reinvite();
    let (sipp, id) = connect(&srv, &mut phone, &call, Duration::from_secs(5)).await;

    let direct = srv
        .wait_for_call(Duration::from_secs(5), |c| {
            c["id"] == id && c["media"] == "direct"
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\nsipp:\n{}\n{}", sipp.logs(), phone.log()));
    assert_eq!(direct["state"], "connected");
    assert_eq!(direct["agent"], "agent");

    let port = trunk_reinvite_ports(&sipp.messages())
        .first()
        .copied()
        .unwrap_or_else(|| panic!("no re-INVITE with SDP reached the trunk:\n{}", sipp.logs()));
    assert!(
        !srv.rtp_ports.contains(&port),
        "the trunk's re-INVITE points at our relay port {port}, not at the agent's phone"
    );

    // Once the moved streams have left our relay, listen.
    relay_quiet(&srv, Duration::from_secs(3)).await;
    let (relayed, heard_ms, share) = listen(&srv, &phone).await;
    eprintln!("direct media: relay forwarded {relayed} packets in 1.5 s; the agent heard {heard_ms} ms, 440 Hz share {share:.2}");
    assert!(
        relayed <= 5,
        "our relay still forwarded {relayed} packets in 1.5 s of direct media"
    );
    assert!(
        heard_ms >= 700,
        "the agent heard only {heard_ms} ms in 1.5 s of direct media\n{}",
        phone.log()
    );
    assert!(
        share > 0.3,
        "the agent's voice, echoed by the caller's phone end to end, is only {share:.2} of what it heard"
    );

    let ended = srv.hang_up_and_check_ended(sipp, &id).await;
    assert_eq!(
        ended["agent"], "agent",
        "the agent stays on record: {ended:#}"
    );
    assert_eq!(ended["transferred"], false);
    phone
        .expect_event(
            "CALL_CLOSED",
            Duration::from_secs(5),
            "the caller's BYE did not end the agent's call",
        )
        .await;
    phone.stop().await;
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_refusing_the_reinvite_keeps_the_call_on_the_relay() {
    let srv = direct_media_server().await;
    let Some(mut phone) = AgentPhone::register(srv.sip_udp, Answer::Auto).await else {
        return;
    };
    let mut call = TrunkCall::new(CALLER);
    call.rtp_echo = true;
    call.after_answer = trunk_refuses_reinvite("488 Not Acceptable Here");
    let (sipp, id) = connect(&srv, &mut phone, &call, Duration::from_secs(5)).await;

    // Wait until the trunk got (and refused) our re-INVITE.
    wait_messages(
        &sipp,
        "a re-INVITE reaching the trunk",
        Duration::from_secs(5),
        |m| m.contains("488 Not Acceptable Here"),
    )
    .await;
    let (relayed, heard_ms, share) = listen(&srv, &phone).await;
    eprintln!("refused re-INVITE: relay forwarded {relayed} packets in 1.5 s; the agent heard {heard_ms} ms, 440 Hz share {share:.2}");
    let view = call_view(&srv, &id).await;
    assert_eq!(view["state"], "connected");
    assert_eq!(view["media"], "relay");
    // 50 packets/s each way through us.
    assert!(
        relayed >= 100,
        "the relay forwarded only {relayed} packets in 1.5 s"
    );
    assert!(
        heard_ms >= 700 && share > 0.3,
        "audio stopped after the refused re-INVITE: {heard_ms} ms heard, 440 Hz share {share:.2}"
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
async fn a_trunk_answering_491_gets_the_reinvite_again_and_media_goes_direct() {
    let srv = direct_media_server().await;
    let Some(mut phone) = AgentPhone::register(srv.sip_udp, Answer::Auto).await else {
        return;
    };
    let mut call = TrunkCall::new(CALLER);
    call.rtp_echo = true;
    call.after_answer = trunk_refuses_reinvite("491 Request Pending") + &trunk_accepts_reinvite();
    let (sipp, id) = connect(&srv, &mut phone, &call, Duration::from_secs(5)).await;
    let started = std::time::Instant::now();
    srv.wait_for_call(Duration::from_secs(8), |c| {
        c["id"] == id && c["media"] == "direct"
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\nsipp:\n{}\n{}", sipp.logs(), phone.log()));
    eprintln!("direct after a 491 in {:?}", started.elapsed());
    let ports = trunk_reinvite_ports(&sipp.messages());
    assert_eq!(
        ports.len(),
        2,
        "one re-INVITE refused with 491, one retried: {ports:?}"
    );
    assert_eq!(ports[0], ports[1], "the retry offers the same media");
    let (relayed, heard_ms, share) = listen(&srv, &phone).await;
    assert!(
        relayed <= 5 && heard_ms >= 700 && share > 0.3,
        "after the retry: relay forwarded {relayed}, agent heard {heard_ms} ms, share {share:.2}"
    );
    srv.hang_up_and_check_ended(sipp, &id).await;
    phone.stop().await;
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_refusing_its_reinvite_gets_the_trunk_moved_back_to_the_relay() {
    let srv = direct_media_server().await;
    let Some(agent) = SippPhone::register(srv.sip_udp, &agent_refuses_reinvite(), false).await
    else {
        return;
    };
    let mut call = TrunkCall::new(CALLER);
    // First to the agent, then back to us.
    call.after_answer = trunk_accepts_reinvite().repeat(2);
    let (sipp, id) = answered(&srv, &call).await;
    wait_messages(&sipp, "the trunk moved back", Duration::from_secs(8), |m| {
        trunk_reinvite_ports(m).len() >= 2
    })
    .await;
    let ports = trunk_reinvite_ports(&sipp.messages());
    assert!(
        !srv.rtp_ports.contains(&ports[0]),
        "the first re-INVITE points at our relay ({ports:?}), not at the agent"
    );
    assert!(
        srv.rtp_ports.contains(&ports[1]),
        "the second re-INVITE does not bring the trunk back to our relay: {ports:?}"
    );
    // The trunk's 200 OK to the move back was ACKed: we are done with it.
    wait_messages(
        &sipp,
        "our ACK to the move back",
        Duration::from_secs(3),
        |m| received(m, "ACK sip:") >= 2,
    )
    .await;
    let view = call_view(&srv, &id).await;
    assert_eq!(view["state"], "connected", "{view:#}");
    assert_eq!(view["media"], "relay", "{view:#}");
    hang_up_with_sipp_agent(
        srv,
        sipp,
        &id,
        agent,
        "the agent phone's scenario failed (no BYE?)",
    )
    .await;
}
