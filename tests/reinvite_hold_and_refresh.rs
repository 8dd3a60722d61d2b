//! A connected call survives re-INVITEs on either leg (RFC 3261 §14, hold per RFC 3264 §8.4): the
//! trunk (SIPp) puts the agent on hold with `a=sendonly` and we answer `a=recvonly`, so nothing goes
//! to the trunk until it resumes with `a=sendrecv` (answered `a=sendrecv`) and audio flows both ways
//! again; a session refresh with the same SDP, or with no SDP at all (we offer in the 200 OK), keeps
//! the call; a trunk moving its RTP to a new port gets our RTP on the new port; the agent's phone
//! (baresip `hold`/`resume`) puts the caller on hold and back. After each call both legs end with a
//! BYE and every RTP port is free again.
//!
//! How we hear it: the agent's phone talks a 440 Hz tone and records what it hears; the trunk echoes
//! every RTP packet back (`sipp -rtp_echo`). The tone comes back to the agent only while RTP flows
//! agent → us → trunk → us → agent.

use crate::support;

use serde_json::Value;
use std::time::{Duration, Instant};
use support::agent::{
    answer, answered_caller_with_ear, caller_hangs_up, server_with_agent, tone_share, AgentPhone,
    Answer,
};
use support::hold::phone_and_caller_finish;
use support::pcap::{dtmf_call_pcap, DtmfPcapConfig};
use support::server::TestServer;
use support::sipp::{Sipp, TrunkCall, TrunkReinvite};
use support::sipp_phone::{
    answer_hold_resume_hang_up, answer_move_rtp_in_ack_hang_up, caller_packet, talk,
    trunk_rtp_port, SippPhone,
};

const CALLER: &str = "+31611112222";

/// A verified call from `call`, answered by the agent's auto-answering phone; returns sipp and the
/// call id once the API shows it `connected`.
async fn connect(
    srv: &TestServer,
    phone: &mut AgentPhone,
    call: &TrunkCall,
) -> Option<(Sipp, Value)> {
    let (sipp, waiting) = srv.call_until_waiting(call, Duration::from_secs(8)).await?;
    assert_eq!(waiting["verified"], true, "{waiting:#}");
    let id = waiting["id"].clone();
    assert_eq!(answer(srv, &id).await.0, 202);
    phone
        .expect_event(
            "CALL_ESTABLISHED",
            Duration::from_secs(8),
            "the agent's phone never took the call",
        )
        .await;
    srv.wait_for_call(Duration::from_secs(3), |c| {
        c["id"] == id && c["state"] == "connected"
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    Some((sipp, id))
}

/// A verified trunk call whose phone echoes RTP and sends `reinvites` on [`Sipp::proceed`].
async fn trunk_call(srv: &TestServer, reinvites: Vec<TrunkReinvite>, await_bye: bool) -> TrunkCall {
    let code = srv.new_code().await;
    let mut call = TrunkCall::new(CALLER);
    call.pcap = Some(dtmf_call_pcap(&code, &DtmfPcapConfig::default()).expect("pcap"));
    call.rtp_echo = true;
    call.await_bye = await_bye;
    call.reinvites = reinvites;
    call
}

/// How much of what the agent hears during the next `window` is the agent's own 440 Hz voice, and
/// how many seconds of audio that was.
async fn echo_share(phone: &AgentPhone, window: Duration) -> (f64, f64) {
    let before = phone.heard().1.len();
    // The listening window itself.
    tokio::time::sleep(window).await;
    let (rate, heard) = phone.heard();
    let new = heard.get(before..).unwrap_or_default();
    (
        tone_share(new, f64::from(rate), 440.0),
        new.len() as f64 / f64::from(rate),
    )
}

/// The agent hears its own voice back: RTP flows both ways through us.
async fn assert_audio_both_ways(phone: &AgentPhone, when: &str) {
    let (share, secs) = echo_share(phone, Duration::from_millis(1200)).await;
    assert!(
        secs > 0.5 && share > 0.3,
        "{when}: the agent's echoed voice is {share:.2} of {secs:.2} s heard: no RTP round trip\n{}",
        phone.log()
    );
}

/// Waits (bounded) until sipp has ACKed the answer to its re-INVITE with CSeq `cseq`.
async fn reinvite_done(sipp: &Sipp, cseq: u32) {
    let start = Instant::now();
    let ack = format!("CSeq: {cseq} ACK");
    while !sipp.messages().contains(&ack) {
        assert!(
            start.elapsed() < Duration::from_secs(8),
            "re-INVITE {cseq} not answered within 8 s:\n{}",
            sipp.logs()
        );
        // The back-off of this bounded wait.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The 200 OK sipp received for its INVITE with CSeq `cseq`.
fn answer_to(messages: &str, cseq: u32) -> String {
    let needle = format!("CSeq: {cseq} INVITE");
    messages
        .split("\n\n")
        .filter(|m| m.contains("SIP/2.0 200") && m.contains(&needle))
        .last()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trunk_hold_resume_and_session_refreshes_keep_the_call() {
    // T1 = 25 ms: a 2xx whose ACK we missed would end the call 1.6 s later (RFC 3261 §13.3.1.4).
    let srv = server_with_agent(|c| c.sip.timers.t1 = Duration::from_millis(25)).await;
    let Some(mut phone) = AgentPhone::register(srv.sip_udp, Answer::Auto).await else {
        return;
    };
    let reinvites = vec![
        TrunkReinvite::offer(Some("sendonly"), "a=recvonly"),
        TrunkReinvite::offer(Some("sendrecv"), "a=sendrecv"),
        TrunkReinvite::offer(Some(""), "a=sendrecv"),
        TrunkReinvite::offer(None, "m=audio [0-9]+ RTP/AVP"),
    ];
    let call = trunk_call(&srv, reinvites, false).await;
    let Some((sipp, id)) = connect(&srv, &mut phone, &call).await else {
        return;
    };
    assert_audio_both_ways(&phone, "before hold").await;

    // Hold: we answer recvonly and send the trunk nothing, so the agent's voice stops coming back.
    sipp.proceed();
    reinvite_done(&sipp, 2).await;
    // Left out of the window: the agent's voice already on its way round, and in baresip's jitter
    // buffer, when the hold took effect (nothing marks when it has played out).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (share, secs) = echo_share(&phone, Duration::from_millis(1200)).await;
    assert!(
        share * secs < 0.1,
        "on hold, yet the agent's voice still went to the caller ({share:.2} of {secs:.2} s came back)"
    );
    let on_hold = srv
        .wait_for_call(Duration::from_secs(1), |c| c["id"] == id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(on_hold["state"], "connected", "hold ended the call");
    // The caller's hold is not the agent's: no comfort signal, nothing shown.
    assert_eq!(on_hold["on_hold"], false, "{on_hold:#}");
    let (rate, heard) = phone.heard();
    let last_second = heard.len().saturating_sub(rate as usize);
    let ringback = tone_share(
        heard.get(last_second..).unwrap_or_default(),
        f64::from(rate),
        425.0,
    );
    assert!(
        ringback < 0.1,
        "the agent heard {ringback:.2} ringback while the caller held the call"
    );

    // Resume: sendrecv again, audio both ways.
    sipp.proceed();
    reinvite_done(&sipp, 3).await;
    assert_audio_both_ways(&phone, "after resume").await;

    // Session refresh with the same SDP, then one without SDP.
    sipp.proceed();
    reinvite_done(&sipp, 4).await;
    sipp.proceed();
    reinvite_done(&sipp, 5).await;
    let messages = sipp.messages();
    let refresh = answer_to(&messages, 4);
    let late_offer = answer_to(&messages, 5);
    assert!(
        refresh.contains("a=sendrecv"),
        "answer to the refresh:\n{refresh}"
    );
    assert!(
        late_offer.contains("a=sendrecv") && late_offer.contains("a=rtpmap:101 telephone-event"),
        "our offer in the 200 OK to an INVITE without SDP:\n{late_offer}"
    );
    assert_audio_both_ways(&phone, "after the session refreshes").await;
    srv.wait_for_call(Duration::from_secs(1), |c| {
        c["id"] == id && c["state"] == "connected"
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    srv.hang_up_and_check_ended(sipp, &id).await;
    phone
        .expect_event(
            "CALL_CLOSED",
            Duration::from_secs(5),
            "the caller's BYE did not reach the agent",
        )
        .await;
    srv.wait_rtp_ports_free(Duration::from_secs(3)).await;
    phone.stop().await;
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trunk_moving_its_rtp_port_gets_our_rtp_on_the_new_port() {
    trunk_moves_its_rtp(Some("sendrecv")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trunk_answering_our_offer_in_the_ack_with_a_new_port_gets_our_rtp_there() {
    // A re-INVITE without SDP: we offer in the 200 OK, the trunk's answer in the ACK moves its RTP.
    trunk_moves_its_rtp(None).await;
}

/// The trunk moves its RTP to a new port with a re-INVITE whose `sdp` is as in [`TrunkReinvite`]:
/// our RTP (the agent's voice) follows to the new port.
async fn trunk_moves_its_rtp(sdp: Option<&'static str>) {
    let srv = server_with_agent(|_| {}).await;
    let Some(mut phone) = AgentPhone::register(srv.sip_udp, Answer::Auto).await else {
        return;
    };
    let new_port = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = new_port.local_addr().expect("addr").port();
    let reinvites = vec![TrunkReinvite {
        sdp,
        port: Some(port),
        expect: "a=sendrecv",
    }];
    let call = trunk_call(&srv, reinvites, false).await;
    let Some((sipp, id)) = connect(&srv, &mut phone, &call).await else {
        return;
    };
    assert_audio_both_ways(&phone, "before the move").await;

    sipp.proceed();
    reinvite_done(&sipp, 2).await;
    // The agent's voice now reaches the new port, from our trunk-side RTP port.
    let mut buf = [0u8; 2048];
    let mut packets = 0;
    // 25 packets take 0.5 s; the bound only keeps a broken run short on a loaded machine.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while packets < 25 {
        match tokio::time::timeout_at(deadline, new_port.recv_from(&mut buf)).await {
            Ok(Ok((n, from))) => {
                assert!(
                    srv.rtp_ports.contains(&from.port()),
                    "RTP from {from}, not from our range"
                );
                assert!(
                    n > 12 && buf[1] & 0x7f == 8,
                    "not PCMA RTP: {:?}",
                    &buf[..n.min(16)]
                );
                packets += 1;
            }
            Ok(Err(e)) => panic!("recv: {e}"),
            Err(_) => panic!(
                "only {packets} RTP packets reached the trunk's new port {port} in 5 s\n{}",
                sipp.logs()
            ),
        }
    }
    caller_hangs_up(
        srv,
        sipp,
        &id,
        phone,
        Duration::from_secs(5),
        "the caller's BYE did not reach the agent",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_phone_holding_gets_recvonly_and_nothing_until_it_resumes() {
    // T1 = 25 ms: a 2xx whose ACK we miss is given up on (64·T1, RFC 3261 §13.3.1.4) after 1.6 s,
    // well within the hold and within the resumed call.
    let srv = server_with_agent(|c| c.sip.timers.t1 = Duration::from_millis(25)).await;
    // The agent's phone: answers, holds after 2.5 s, resumes 2.5 s later, hangs up 2.5 s after
    // that; it echoes what it receives, and fails unless our answers say recvonly, then sendrecv.
    let scenario = answer_hold_resume_hang_up(Duration::from_millis(2500));
    let Some(phone) = SippPhone::register(srv.sip_udp, &scenario, true).await else {
        return;
    };
    let Some((ear, sipp, id)) = answered_caller_with_ear(&srv, CALLER).await else {
        return;
    };
    srv.wait_for_call(Duration::from_secs(3), |c| {
        c["id"] == id && c["state"] == "connected"
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let our_port = trunk_rtp_port(&sipp.messages()).expect("our SDP answer to the trunk");
    let echoed = talk(&ear, our_port, Duration::from_millis(1000)).await;
    assert!(
        echoed >= 30,
        "before hold only {echoed} of 50 packets made the round trip"
    );

    wait_for(&phone.messages(), "CSeq: 2 ACK", || phone.messages()).await;
    let echoed = talk(&ear, our_port, Duration::from_millis(1200)).await;
    assert!(
        echoed <= 2,
        "the agent's phone is on hold (recvonly for us), yet {echoed} packets went to it and came back"
    );
    let held = srv
        .wait_for_call(Duration::from_secs(1), |c| c["id"] == id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(held["state"], "connected", "hold ended the call");

    wait_for(&phone.messages(), "CSeq: 3 ACK", || phone.messages()).await;
    let echoed = talk(&ear, our_port, Duration::from_millis(1200)).await;
    assert!(
        echoed >= 30,
        "after resume only {echoed} of 60 packets made the round trip\n{}",
        phone.logs()
    );
    // More than 64·T1 after the hold: the agent's ACKs to our answers were taken.
    let resumed = srv
        .wait_for_call(Duration::from_secs(1), |c| c["id"] == id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        resumed["state"], "connected",
        "the call did not outlive the agent's re-INVITEs: {resumed:#}"
    );

    phone_and_caller_finish(phone, sipp).await;
    let ended = srv.wait_ended(&id).await;
    assert_eq!(ended["attributes"], serde_json::json!([]));
    srv.wait_rtp_ports_free(Duration::from_secs(3)).await;
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_agent_holds_and_resumes_then_hangs_up() {
    let srv = server_with_agent(|_| {}).await;
    let Some(mut phone) = AgentPhone::register(srv.sip_udp, Answer::Auto).await else {
        return;
    };
    let ear = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let mut call = TrunkCall::new(CALLER);
    call.info_digits = srv.new_code().await;
    call.media_port = Some(ear.local_addr().expect("addr").port());
    call.await_bye = true;
    let Some((sipp, id)) = connect(&srv, &mut phone, &call).await else {
        return;
    };
    let our_port = trunk_rtp_port(&sipp.messages()).expect("our SDP answer to the trunk");
    let (packets, share) = hears_agent(&ear, our_port, Duration::from_millis(1000)).await;
    assert!(
        packets >= 30 && share > 0.3,
        "before hold the caller got {packets} packets, {share:.2} of it the agent's voice"
    );

    // baresip logs `call: hold`, then `stream: update` once our answer to its re-INVITE is in.
    let updates = phone.log().matches("stream: update").count();
    phone.command("hold").await;
    let start = Instant::now();
    while !phone.log().contains("call: hold")
        || phone.log().matches("stream: update").count() == updates
    {
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "the agent's phone did not put the call on hold:\n{}",
            phone.log()
        );
        // The back-off of this bounded wait.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // We took the hold: the call shows it (or ended, which it must not).
    let held = srv
        .wait_for_call(Duration::from_secs(3), |c| {
            c["id"] == id && (c["on_hold"] == true || c["state"] == "ended")
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(held["state"], "connected", "hold ended the call");

    phone.command("resume").await;
    let start = Instant::now();
    while !phone.log().contains("call: resume") {
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "the agent's phone did not resume:\n{}",
            phone.log()
        );
        // The back-off of this bounded wait.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (packets, share) = hears_agent(&ear, our_port, Duration::from_millis(1500)).await;
    assert!(
        packets >= 30 && share > 0.3,
        "after resume the caller got {packets} packets, {share:.2} of it the agent's voice"
    );

    phone.hang_up_on(sipp).await;
    let ended = srv.wait_ended(&id).await;
    assert_eq!(ended["attributes"], serde_json::json!([]));
    srv.wait_rtp_ports_free(Duration::from_secs(3)).await;
    phone.stop().await;
    srv.shutdown().await;
}

/// Waits (bounded) until `read()` contains `needle`.
async fn wait_for(first: &str, needle: &str, read: impl Fn() -> String) {
    let start = Instant::now();
    let mut text = first.to_owned();
    while !text.contains(needle) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no {needle:?} within 5 s:\n{text}"
        );
        // The back-off of this bounded wait.
        tokio::time::sleep(Duration::from_millis(20)).await;
        text = read();
    }
}

/// The caller talks on `ear` (so our RTP latches to it) for `time`: how many PCMA packets we sent
/// it, and how much of that audio is the agent's 440 Hz voice.
async fn hears_agent(ear: &tokio::net::UdpSocket, our_port: u16, time: Duration) -> (u32, f64) {
    let mut buf = [0u8; 2048];
    while ear.try_recv_from(&mut buf).is_ok() {}
    let start = Instant::now();
    let mut pcm = [0i16; 2048];
    let mut heard = Vec::new();
    let mut packets = 0;
    let mut next = tokio::time::Instant::now();
    while start.elapsed() < time {
        ear.send_to(&caller_packet(0xd5), ("127.0.0.1", our_port))
            .await
            .expect("send RTP");
        next += Duration::from_millis(20);
        while let Ok(Ok((n, _))) = tokio::time::timeout_at(next, ear.recv_from(&mut buf)).await {
            if n > 12 && buf[1] & 0x7f == 8 {
                packets += 1;
                let payload = &buf[12..n];
                let k = dsp::g711::decode_alaw_into(payload, &mut pcm[..payload.len()]);
                heard.extend_from_slice(&pcm[..k]);
            }
        }
    }
    (packets, tone_share(&heard, 8000.0, 440.0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_phone_moving_its_rtp_in_an_ack_gets_our_rtp_there() {
    let srv = server_with_agent(|_| {}).await;
    let new_port = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = new_port.local_addr().expect("addr").port();
    // The agent's phone re-INVITEs without SDP 2 s after answering, answers our offer in its ACK
    // with RTP on `port`, and hangs up 2 s later.
    let scenario = answer_move_rtp_in_ack_hang_up(Duration::from_secs(2), port);
    let Some(phone) = SippPhone::register(srv.sip_udp, &scenario, false).await else {
        return;
    };
    let Some((ear, sipp, id)) = answered_caller_with_ear(&srv, CALLER).await else {
        return;
    };
    let our_port = trunk_rtp_port(&sipp.messages()).expect("our SDP answer to the trunk");
    wait_for(&phone.messages(), "CSeq: 2 ACK", || phone.messages()).await;

    // The caller talks; what it says now reaches the phone's new port.
    let count = async {
        let mut buf = [0u8; 2048];
        let mut packets = 0u32;
        let until = tokio::time::Instant::now() + Duration::from_millis(1200);
        while let Ok(Ok((n, from))) =
            tokio::time::timeout_at(until, new_port.recv_from(&mut buf)).await
        {
            if srv.rtp_ports.contains(&from.port()) && n > 12 && buf[1] & 0x7f == 8 {
                packets += 1;
            }
        }
        packets
    };
    let (_, packets) = tokio::join!(talk(&ear, our_port, Duration::from_millis(1200)), count);
    assert!(
        packets >= 25,
        "only {packets} RTP packets reached the port the agent's phone moved to in its ACK"
    );

    phone
        .finish()
        .await
        .unwrap_or_else(|e| panic!("the agent's phone saw a wrong answer: {e}"));
    if let Err(e) = sipp.finish().await {
        panic!("the caller did not get the agent's hang-up as a BYE: {e}");
    }
    srv.wait_for_call(Duration::from_secs(3), |c| {
        c["id"] == id && c["state"] == "ended"
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    srv.wait_rtp_ports_free(Duration::from_secs(3)).await;
    srv.shutdown().await;
}
