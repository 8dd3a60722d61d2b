//! The agent has two registered phones; taking a call rings both in parallel (RFC 3261 §16.7-style
//! forking done by our B2BUA): the first 200 OK wins and the call is connected to that phone, the
//! other phone is CANCELled (§9.1) — or, when its 200 OK crossed our CANCEL, it gets our ACK and then a
//! BYE (§13.2.2.4) — while the call stays connected to the winner with audio both ways.
//!
//! Phones: baresip (auto-answer, talks a 440 Hz tone and records what it hears) and SIPp phones
//! registered as the same user with digest auth (`support::sipp_phone`), whose scenarios fail when
//! the CANCEL, ACK or BYE they expect never comes.

use crate::support;

use serde_json::Value;
use std::time::{Duration, Instant};
use support::agent::{answer, server_with_agent, tone_share, AgentPhone, Answer};
use support::pcap::{dtmf_call_pcap, DtmfPcapConfig};
use support::server::TestServer;
use support::sipp::{Sipp, TrunkCall};
use support::sipp_phone::{answer_at_once, ring_until_cancelled, talk, trunk_rtp_port, SippPhone};
use tokio::net::UdpSocket;

const CALLER: &str = "+31622223333";

/// A verified caller waiting, then answered by the agent: the call id.
async fn answered(srv: &TestServer, call: &TrunkCall) -> Option<(Sipp, Value)> {
    let (sipp, waiting) = srv.call_until_waiting(call, Duration::from_secs(8)).await?;
    assert_eq!(waiting["verified"], true, "{waiting:#}");
    let id = waiting["id"].clone();
    assert_eq!(answer(srv, &id).await.0, 202);
    Some((sipp, id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_phones_ring_the_one_that_answers_gets_the_call_the_other_is_cancelled() {
    let srv = server_with_agent(|_| {}).await;
    let Some(mut desk) = AgentPhone::register(srv.sip_udp, Answer::Auto).await else {
        return;
    };
    let Some(mobile) = SippPhone::register(srv.sip_udp, &ring_until_cancelled(), false).await
    else {
        return;
    };
    let code = srv.new_code().await;
    let mut call = TrunkCall::new(CALLER);
    call.pcap = Some(dtmf_call_pcap(&code, &DtmfPcapConfig::default()).expect("pcap"));
    call.rtp_echo = true;
    let Some((sipp, id)) = answered(&srv, &call).await else {
        return;
    };

    desk.wait_event("CALL_ESTABLISHED", Duration::from_secs(8))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the answering phone never took the call: {e}\n{}",
                desk.log()
            )
        });
    // The ringing phone got our CANCEL (its scenario fails otherwise) and answered it 487.
    let rang = mobile
        .finish()
        .await
        .unwrap_or_else(|e| panic!("the other phone was not cancelled: {e}"));
    assert!(
        rang.contains("INVITE sip:agent@"),
        "the other phone was INVITEd"
    );
    assert!(rang.contains("CANCEL sip:agent@"), "and then CANCELled");
    let connected = srv
        .wait_for_call(Duration::from_secs(3), |c| {
            c["id"] == id && c["state"] == "connected"
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(connected["agent"], "agent");

    // Audio both ways: the agent's voice comes back through the caller's echoing phone.
    let (rate, heard) = desk
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
        "the agent heard {} samples, {share:.2} of them its own echoed voice\n{}",
        heard.len(),
        desk.log()
    );

    srv.hang_up_and_check_ended(sipp, &id).await;
    desk.expect_event(
        "CALL_CLOSED",
        Duration::from_secs(5),
        "the caller's BYE did not reach the agent",
    )
    .await;
    srv.wait_rtp_ports_free(Duration::from_secs(3)).await;
    desk.stop().await;
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_phones_answer_the_loser_gets_ack_and_bye_and_the_call_stays_with_the_winner() {
    let srv = server_with_agent(|_| {}).await;
    // Two phones that both answer at once, without ringing: the loser's 200 OK comes after we chose
    // the winner (and before any CANCEL could go out: no provisional response to cancel after).
    let Some(mut first) = SippPhone::register(srv.sip_udp, &answer_at_once(), true).await else {
        return;
    };
    let Some(mut second) = SippPhone::register(srv.sip_udp, &answer_at_once(), true).await else {
        return;
    };
    // The caller's phone is this test: it sends the code as SIP INFO and talks on `ear`.
    let ear = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let mut call = TrunkCall::new(CALLER);
    call.info_digits = srv.new_code().await;
    call.media_port = Some(ear.local_addr().expect("addr").port());
    let Some((sipp, id)) = answered(&srv, &call).await else {
        return;
    };
    srv.wait_for_call(Duration::from_secs(3), |c| {
        c["id"] == id && c["state"] == "connected"
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    // The loser's scenario ends at once (our ACK, then our BYE); the winner's lasts.
    let start = Instant::now();
    let loser_is_first = loop {
        match (first.ended(), second.ended()) {
            (true, false) => break true,
            (false, true) => break false,
            (true, true) => panic!(
                "both phones' calls ended:\n{}\n{}",
                first.logs(),
                second.logs()
            ),
            (false, false) => {}
        }
        assert!(
            start.elapsed() < Duration::from_secs(4),
            "neither phone was hung up as the loser:\n{}\n{}",
            first.logs(),
            second.logs()
        );
        // The back-off of this bounded wait for the loser's end.
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (loser, winner) = if loser_is_first {
        (first, second)
    } else {
        (second, first)
    };
    let lost = loser
        .finish()
        .await
        .unwrap_or_else(|e| panic!("the losing phone's call did not end cleanly: {e}"));
    let ack = lost.find("ACK sip:").expect("the loser's 200 OK was ACKed");
    let bye = lost.find("BYE sip:").expect("the loser got a BYE");
    assert!(ack < bye, "ACK before BYE:\n{lost}");

    // Still connected, to the winner: what the caller says comes back from the winner's echo.
    let still = srv
        .wait_for_call(Duration::from_secs(1), |c| c["id"] == id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        still["state"], "connected",
        "the loser's BYE ended the call"
    );
    let our_port = trunk_rtp_port(&sipp.messages()).expect("our SDP answer to the trunk");
    let echoed = talk(&ear, our_port, Duration::from_millis(1500)).await;
    assert!(
        echoed >= 50,
        "only {echoed} of the caller's packets came back from the winning phone"
    );

    srv.hang_up_and_check_ended(sipp, &id).await;
    winner
        .finish()
        .await
        .unwrap_or_else(|e| panic!("the winning phone did not get the caller's hang-up: {e}"));
    srv.wait_rtp_ports_free(Duration::from_secs(3)).await;
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_neither_phone_answers_both_are_cancelled_and_the_call_waits_again() {
    let srv =
        server_with_agent(|c| c.calls.call.agent_ring_timeout = Duration::from_millis(1500)).await;
    let Some(desk) = SippPhone::register(srv.sip_udp, &ring_until_cancelled(), false).await else {
        return;
    };
    let Some(mobile) = SippPhone::register(srv.sip_udp, &ring_until_cancelled(), false).await
    else {
        return;
    };
    let mut call = TrunkCall::new(CALLER);
    call.info_digits = srv.new_code().await;
    let Some((sipp, id)) = answered(&srv, &call).await else {
        return;
    };
    srv.wait_for_call(Duration::from_secs(2), |c| {
        c["id"] == id && c["state"] == "ringing"
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    // After the ring timeout both phones get our CANCEL (their scenarios fail otherwise)…
    for (name, phone) in [("desk", desk), ("mobile", mobile)] {
        phone
            .finish()
            .await
            .unwrap_or_else(|e| panic!("the {name} phone kept ringing: {e}"));
    }
    // …and the caller waits for an agent again.
    let back = srv
        .wait_for_call(Duration::from_secs(2), |c| {
            c["id"] == id && c["state"] == "waiting"
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back["agent"], Value::Null);
    srv.hang_up_and_check_ended(sipp, &id).await;
    srv.shutdown().await;
}
