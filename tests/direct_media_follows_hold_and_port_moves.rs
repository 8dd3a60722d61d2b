//! `media = "direct"` stays direct when a leg re-INVITEs (RFC 3725 §4.1, RFC 3264 §8): the trunk
//! putting the caller's side on hold (`a=sendonly`) is answered with the agent's media
//! (`a=recvonly`, the agent's RTP port — not our relay), the hold goes on to the agent's phone, and
//! a resume brings the audio back end to end; our relay forwards nothing throughout and the call
//! keeps showing `media: "direct"`. The agent's phone holding and resuming reaches the trunk the
//! same way. A trunk moving its RTP port gets the agent's phone sending there, directly; an agent
//! phone moving its RTP in the ACK to our offer gets the trunk re-INVITEd to the new port; session
//! refreshes with unchanged SDP (or none) send nothing to the other leg. A trunk
//! offering a codec the agent's leg lacks is answered from our relay, the agent's phone is moved
//! back to it too, the call shows `media: "relay"` and the audio goes on (transcoded); so does a
//! trunk refusing (488) the agent's hold we pass on.
//!
//! Real peers on loopback: SIPp as the trunk, baresip or SIPp as the agent's phone.

use crate::support;

use serde_json::Value;
use std::time::{Duration, Instant};
use support::agent::{answer, tone_share, AgentPhone, Answer};
use support::direct_media::{
    answered, call_view, connect, hang_up_with_sipp_agent, our_answers,
    server as direct_media_server, trunk_reinvite_ports, trunk_reinvite_ports_acked, wait_direct,
};
use support::server::TestServer;
use support::sipp::{audio_ports, wait_messages, Sipp, TrunkCall, TrunkReinvite};
use support::sipp_phone::{
    ok_invite, scenario, send_reinvite, PhoneReinvite, SippPhone, RECV_INVITE,
};
use support::sipp_xml::{
    ok_last_with_sdp, phone_sdp, recv_request, trunk_accepts, trunk_accepts_reinvite,
    trunk_refuses_reinvite, OK_LAST, RECV_ACK,
};

const CALLER: &str = "+31612340002";

/// Longest any step of these calls may take.
const WAIT: Duration = Duration::from_secs(8);

/// Calls, lets the agent answer, waits until media is direct; returns sipp, the call's id and the
/// agent's RTP port (from our re-INVITE to the trunk).
async fn connect_direct(
    srv: &TestServer,
    phone: &mut AgentPhone,
    call: &TrunkCall,
) -> (Sipp, Value, u16) {
    let (sipp, id) = connect(srv, phone, call, WAIT).await;
    let agent_port = wait_direct(srv, &sipp, &id, Duration::from_secs(5), || phone.log()).await;
    (sipp, id, agent_port)
}

/// Tells the trunk to send its next re-INVITE and waits until sipp's log holds `answers` of our
/// answers to its re-INVITEs; fails saying `what` never came.
async fn proceed_until_answered(sipp: &Sipp, what: &str, answers: usize) {
    sipp.proceed();
    wait_messages(sipp, what, WAIT, |m| our_answers(m).len() >= answers).await;
}

/// The `m=audio` ports of every INVITE the agent's SIPp phone received from us, in order.
fn agent_invite_ports(messages: &str) -> Vec<u16> {
    audio_ports(messages, "INVITE sip:agent")
}

/// Over `time`: how many ms the agent newly heard and the 440 Hz share of it.
async fn listen(phone: &AgentPhone, time: Duration) -> (usize, f64) {
    let before = phone.heard().1.len();
    // The listening window itself.
    tokio::time::sleep(time).await;
    let (rate, heard) = phone.heard();
    let new = heard.get(before..).unwrap_or_default();
    (
        new.len() * 1000 / rate.max(1) as usize,
        tone_share(new, f64::from(rate), 440.0),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_hold_and_resume_reach_the_agents_phone_and_media_stays_direct() {
    let srv = direct_media_server().await;
    let Some(mut phone) = AgentPhone::register(srv.sip_udp, Answer::Auto).await else {
        return;
    };
    let mut call = TrunkCall::new(CALLER);
    call.rtp_echo = true;
    call.after_answer = trunk_accepts_reinvite();
    call.after_answer_requests = 0;
    call.reinvites = TrunkReinvite::hold_and_resume();
    let (sipp, id, agent_port) = connect_direct(&srv, &mut phone, &call).await;
    let relayed_before = srv.running.calls.relayed_packets();

    // Hold.
    sipp.proceed();
    wait_messages(&sipp, "our answer to the hold", WAIT, |m| {
        our_answers(m).iter().any(|(_, d)| d == "recvonly")
    })
    .await;
    phone
        .expect_event(
            "CALL_REMOTE_SDP",
            Duration::from_secs(3),
            "the hold never reached the agent's phone",
        )
        .await;
    let (held_ms, held_share) = listen(&phone, Duration::from_millis(1000)).await;
    let view = call_view(&srv, &id).await;
    assert_eq!(view["media"], "direct", "on hold: {view:#}");

    // Resume.
    proceed_until_answered(&sipp, "our answer to the resume", 2).await;
    phone
        .expect_event(
            "CALL_REMOTE_SDP",
            Duration::from_secs(3),
            "the resume never reached the agent's phone",
        )
        .await;
    let (heard_ms, share) = listen(&phone, Duration::from_millis(1500)).await;
    let relayed = srv.running.calls.relayed_packets() - relayed_before;
    let answers = our_answers(&sipp.messages());
    eprintln!(
        "hold/resume while direct: our answers {answers:?} (agent RTP port {agent_port}); on hold the agent heard {held_ms} ms (440 Hz share {held_share:.2}); after resume {heard_ms} ms in 1.5 s, share {share:.2}; relay forwarded {relayed}"
    );
    assert_eq!(
        answers,
        vec![
            (agent_port, "recvonly".to_owned()),
            (agent_port, "sendrecv".to_owned())
        ],
        "the trunk's hold and resume must be answered with the agent's media"
    );
    assert!(
        relayed <= 5,
        "our relay forwarded {relayed} packets during hold and resume of a direct call"
    );
    // baresip 1.0.0 renegotiates correctly (its SIP trace: `a=recvonly` to the hold, `a=sendrecv`
    // to the resume, both on the trunk's RTP port) but does not restart its audio source after a
    // recvonly stretch (its own status line reads 0 bit/s both ways), so no audio is asserted
    // here: the SIPp phone test below checks what the agent is told on resume.
    let view = call_view(&srv, &id).await;
    assert_eq!(view["media"], "direct", "after resume: {view:#}");

    srv.hang_up_and_check_ended(sipp, &id).await;
    phone.stop().await;
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_moving_its_rtp_port_gets_the_agents_rtp_there_directly() {
    let srv = direct_media_server().await;
    let Some(mut phone) = AgentPhone::register(srv.sip_udp, Answer::Auto).await else {
        return;
    };
    let ear = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let ear_port = ear.local_addr().expect("addr").port();
    let mut call = TrunkCall::new(CALLER);
    call.rtp_echo = true;
    call.after_answer = trunk_accepts_reinvite();
    call.reinvites = vec![TrunkReinvite {
        sdp: Some("sendrecv"),
        port: Some(ear_port),
        expect: "",
    }];
    let (sipp, id, agent_port) = connect_direct(&srv, &mut phone, &call).await;
    let relayed_before = srv.running.calls.relayed_packets();

    proceed_until_answered(&sipp, "our answer to the move", 1).await;
    // Drain what came before the move, then count what reaches the new port for 1 s.
    let mut buf = [0u8; 2048];
    let start = Instant::now();
    let mut packets = 0u32;
    let mut sources = std::collections::BTreeSet::new();
    while start.elapsed() < Duration::from_millis(1500) {
        match tokio::time::timeout(Duration::from_millis(200), ear.recv_from(&mut buf)).await {
            Ok(Ok((_, from))) if start.elapsed() > Duration::from_millis(500) => {
                packets += 1;
                sources.insert(from.port());
            }
            _ => {}
        }
    }
    let relayed = srv.running.calls.relayed_packets() - relayed_before;
    let answers = our_answers(&sipp.messages());
    eprintln!(
        "port move while direct: our answer {answers:?}; the new port got {packets} packets in 1 s from ports {sources:?} (agent {agent_port}); relay forwarded {relayed}"
    );
    assert_eq!(answers.first().map(|a| a.0), Some(agent_port));
    assert!(
        packets >= 25,
        "the agent's RTP did not follow the trunk to its new port: {packets} packets in 1 s"
    );
    assert!(
        sources.iter().all(|p| !srv.rtp_ports.contains(p)),
        "RTP reached the new port through our relay: sources {sources:?}"
    );
    assert!(relayed <= 5, "our relay forwarded {relayed} packets");
    let view = call_view(&srv, &id).await;
    assert_eq!(view["media"], "direct", "{view:#}");

    srv.hang_up_and_check_ended(sipp, &id).await;
    phone.stop().await;
    srv.shutdown().await;
}

/// An agent phone (SIPp) that takes the call, then each of our re-INVITEs in `reinvites`: (the
/// direction it must offer, the `m=audio` port it must offer as a regular expression, the direction
/// the phone answers with its own media); then waits for our BYE. Any other re-INVITE fails it.
fn agent_taking(reinvites: &[(&str, &str, &str)]) -> String {
    let mut body = format!("{RECV_INVITE}{}{RECV_ACK}", ok_invite());
    let mut vars = Vec::new();
    for (i, (offered, port, answered)) in reinvites.iter().enumerate() {
        let (port_var, dir_var) = (format!("port_{i}"), format!("dir_{i}"));
        body += &recv_request(
            "INVITE",
            10_000,
            &[
                (&format!("m=audio {port} "), "body", &port_var),
                (&format!("a={offered}"), "body", &dir_var),
            ],
        );
        body += &ok_last_with_sdp("agent", "", &phone_sdp(2, Some(answered)));
        body += RECV_ACK;
        vars.extend([port_var, dir_var]);
    }
    body += &format!(
        "  <recv request=\"BYE\" timeout=\"20000\"/>\n{OK_LAST}  <Reference variables=\"{}\"/>\n",
        vars.join(",")
    );
    scenario("agent phone taking re-INVITEs", &body)
}

/// An agent phone (SIPp, echoing RTP) that takes the call and our three re-INVITEs: the direct-media
/// one (the trunk's answer to ours, on sipp's media port), then the trunk's hold (`a=sendonly`) and
/// resume (`a=sendrecv`), both pointing at the trunk's RTP port `trunk_port` that its hold moved
/// to; answers each with its own media, then waits for our BYE.
fn agent_taking_hold_and_resume(trunk_port: u16) -> String {
    let port = trunk_port.to_string();
    agent_taking(&[
        ("sendrecv", "[0-9]+", "sendrecv"),
        ("sendonly", &port, "recvonly"),
        ("sendrecv", &port, "sendrecv"),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_trunk_hold_and_resume_rtp_flows_end_to_end_without_the_relay() {
    let srv = direct_media_server().await;
    // The trunk's RTP: a test socket that talks to the agent's phone and hears its echo.
    let mouth = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let trunk_port = mouth.local_addr().expect("addr").port();
    let Some(agent) =
        SippPhone::register(srv.sip_udp, &agent_taking_hold_and_resume(trunk_port), true).await
    else {
        return;
    };
    let mut call = TrunkCall::new(CALLER);
    call.media_port = Some(trunk_port);
    call.after_answer = trunk_accepts_reinvite();
    call.reinvites = TrunkReinvite::hold_and_resume();
    let (sipp, id) = answered(&srv, &call).await;
    let agent_port = wait_direct(&srv, &sipp, &id, WAIT, || agent.logs()).await;
    let relayed_before = srv.running.calls.relayed_packets();

    proceed_until_answered(&sipp, "our answer to the hold", 1).await;
    proceed_until_answered(&sipp, "our answer to the resume", 2).await;
    // Wait for the agent to take the resume too.
    wait_messages(
        &agent,
        "the resume reaching the agent's phone",
        Duration::from_secs(5),
        |m| m.matches("INVITE sip:").count() >= 4,
    )
    .await;

    // What our relay sent the caller before the agent answered (ringback) is old news.
    let mut buf = [0u8; 2048];
    while let Ok(Ok(_)) =
        tokio::time::timeout(Duration::from_millis(50), mouth.recv_from(&mut buf)).await
    {}
    // The caller talks to the agent's RTP port and hears the agent's phone (echoing) from there.
    let mut packet = vec![0x80u8, 8, 0, 0, 0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78];
    packet.extend([0xd5u8; 160]);
    let mut echoes = 0u32;
    let mut sources = std::collections::BTreeSet::new();
    for seq in 0..50u16 {
        packet[2..4].copy_from_slice(&seq.to_be_bytes());
        let _ = mouth.send_to(&packet, ("127.0.0.1", agent_port)).await;
        let until = tokio::time::Instant::now() + Duration::from_millis(20);
        while let Ok(Ok((_, from))) =
            tokio::time::timeout_at(until, mouth.recv_from(&mut buf)).await
        {
            echoes += 1;
            sources.insert(from.port());
        }
    }
    let relayed = srv.running.calls.relayed_packets() - relayed_before;
    let answers = our_answers(&sipp.messages());
    eprintln!(
        "hold/resume (SIPp agent): our answers {answers:?}; 50 packets to the agent's port {agent_port} came back {echoes} times from {sources:?}; relay forwarded {relayed}"
    );
    assert_eq!(
        answers,
        vec![
            (agent_port, "recvonly".to_owned()),
            (agent_port, "sendrecv".to_owned())
        ]
    );
    assert!(
        echoes >= 40,
        "only {echoes} of 50 packets came back end to end"
    );
    assert_eq!(
        sources.into_iter().collect::<Vec<_>>(),
        vec![agent_port],
        "RTP came back from somewhere else than the agent's phone"
    );
    assert!(relayed <= 5, "our relay forwarded {relayed} packets");

    hang_up_with_sipp_agent(
        srv,
        sipp,
        &id,
        agent,
        "the agent's phone was not told hold and resume with the trunk's media",
    )
    .await;
}

/// An agent phone (SIPp) that takes the call and our direct-media re-INVITE, then puts the caller
/// on hold (`a=sendonly`, our answer must say `a=recvonly`) and resumes (`a=sendrecv`), then waits
/// for our BYE.
fn agent_holding_and_resuming() -> String {
    agent_reinviting(&[
        PhoneStep::Send(PhoneReinvite::Offer("sendonly", "a=recvonly")),
        PhoneStep::Send(PhoneReinvite::Offer("sendrecv", "a=sendrecv")),
    ])
}

/// What the agent's phone does once the call is direct.
enum PhoneStep {
    /// Sends this re-INVITE.
    Send(PhoneReinvite),
    /// Takes a re-INVITE of ours whose offer matches the regular expression, answering `sendrecv`.
    Take(&'static str),
}

/// An agent phone (SIPp) that takes the call and our direct-media re-INVITE, then does `steps`
/// (sending 300 ms apart), then waits for our BYE.
fn agent_reinviting(steps: &[PhoneStep]) -> String {
    let take_reinvite = |expect: &str, var: &str| {
        recv_request("INVITE", 10_000, &[(expect, "body", var)])
            + &ok_last_with_sdp("agent", "", &phone_sdp(9, Some("sendrecv")))
            + RECV_ACK
    };
    let mut body = format!(
        "{RECV_INVITE}{}{RECV_ACK}{}",
        ok_invite(),
        recv_request("INVITE", 10_000, &[])
            + &ok_last_with_sdp("agent", "", &phone_sdp(2, Some("sendrecv")))
            + RECV_ACK
    );
    let mut answers = Vec::new();
    for (cseq, step) in (2..).zip(steps) {
        let var = format!("answer_{cseq}");
        body += &match step {
            PhoneStep::Send(reinvite) => send_reinvite(reinvite, cseq, u64::from(cseq) + 1, 300),
            PhoneStep::Take(expect) => take_reinvite(expect, &var),
        };
        answers.push(var);
    }
    body += &format!(
        "  <recv request=\"BYE\" timeout=\"20000\"/>\n{OK_LAST}  <Reference variables=\"{}\"/>\n",
        answers.join(",")
    );
    scenario("agent phone re-INVITEing", &body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_hold_and_resume_reach_the_trunk_and_media_stays_direct() {
    let srv = direct_media_server().await;
    let Some(agent) = SippPhone::register(srv.sip_udp, &agent_holding_and_resuming(), false).await
    else {
        return;
    };
    let mut call = TrunkCall::new(CALLER);
    call.after_answer = trunk_accepts_reinvite()
        + &trunk_accepts("sendonly", "recvonly", "held")
        + &trunk_accepts("sendrecv", "sendrecv", "resumed");
    let (sipp, waiting) = srv
        .call_until_waiting(&call, Duration::from_secs(8))
        .await
        .expect("no pcap in this call, so no skip");
    let id = waiting["id"].clone();
    let relayed_before = srv.running.calls.relayed_packets();
    assert_eq!(answer(&srv, &id).await.0, 202);
    // Our initial INVITE and direct-media re-INVITE to the phone, then its hold and resume.
    wait_messages(
        &agent,
        "our answers to the agent's hold and resume",
        WAIT,
        |m| our_answers(m).len() >= 2,
    )
    .await;
    wait_messages(&sipp, "the resume reaching the trunk", WAIT, |m| {
        trunk_reinvite_ports_acked(m).len() >= 3
    })
    .await;
    let trunk_port = agent_invite_ports(&agent.messages())
        .get(1)
        .copied()
        .expect("our direct-media re-INVITE reached the phone");
    let agent_port = trunk_reinvite_ports(&sipp.messages())
        .first()
        .copied()
        .expect("our direct-media re-INVITE reached the trunk");
    let to_agent = our_answers(&agent.messages());
    let to_trunk = trunk_reinvite_ports(&sipp.messages());
    let relayed = srv.running.calls.relayed_packets() - relayed_before;
    eprintln!(
        "agent hold/resume while direct: our answers to the phone {to_agent:?} (trunk RTP port {trunk_port}); re-INVITE ports to the trunk {to_trunk:?}; relay forwarded {relayed}"
    );
    assert!(!srv.rtp_ports.contains(&trunk_port));
    assert_eq!(
        to_agent,
        vec![
            (trunk_port, "recvonly".to_owned()),
            (trunk_port, "sendrecv".to_owned())
        ],
        "the phone's hold and resume must be answered with the trunk's media"
    );
    assert_eq!(
        to_trunk,
        vec![agent_port; 3],
        "hold and resume must reach the trunk pointing at the agent's phone"
    );
    let view = call_view(&srv, &id).await;
    assert_eq!(view["media"], "direct", "{view:#}");
    hang_up_with_sipp_agent(srv, sipp, &id, agent, "the agent's phone scenario failed").await;
}

/// When the test says so (OPTIONS), the trunk re-INVITEs offering only PCMU — a codec the agent's
/// leg does not use — and checks our answer takes PCMU.
fn trunk_offers_pcmu_only() -> String {
    format!(
        r#"  <recv request="OPTIONS" timeout="20000"/>
{OK_LAST}  <send retrans="500">
    <![CDATA[
      INVITE sip:veilig-bellen@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:{CALLER}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:{number}@[remote_ip]:[remote_port]>;tag=[$peer_tag]
      Call-ID: [call_id]
      CSeq: 2 INVITE
      Contact: <sip:trunk@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=trunk 53655765 2353687699 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15
      a=ptime:20
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="200">
    <action>
      <ereg regexp="PCMU/8000" search_in="body" check_it="true" assign_to="pcmu"/>
    </action>
  </recv>
  <send>
    <![CDATA[
      ACK sip:veilig-bellen@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:{CALLER}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:{number}@[remote_ip]:[remote_port]>;tag=[$peer_tag]
      Call-ID: [call_id]
      CSeq: 2 ACK
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <Reference variables="pcmu"/>
"#,
        number = support::server::TENANT_NUMBER
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_offering_a_codec_the_agent_lacks_moves_the_call_back_to_the_relay() {
    let srv = direct_media_server().await;
    let Some(mut phone) = AgentPhone::register(srv.sip_udp, Answer::Auto).await else {
        return;
    };
    // The caller's RTP: a test socket that hears what reaches the caller.
    let ear = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let ear_port = ear.local_addr().expect("addr").port().to_string();
    let mut call = TrunkCall::new(CALLER);
    call.media_port = ear_port.parse().ok();
    call.after_answer =
        (trunk_accepts_reinvite() + &trunk_offers_pcmu_only()).replace("[media_port]", &ear_port);
    call.after_answer_requests = 1;
    let (sipp, id, agent_port) = connect_direct(&srv, &mut phone, &call).await;

    proceed_until_answered(&sipp, "our answer to the PCMU offer", 1).await;
    phone
        .expect_event(
            "CALL_REMOTE_SDP",
            Duration::from_secs(3),
            "the agent's phone was not moved back to the relay",
        )
        .await;
    srv.wait_for_call(Duration::from_secs(3), |c| {
        c["id"] == id && c["media"] == "relay"
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\nsipp:\n{}", sipp.logs()));
    // What the caller hears now: the agent's 440 Hz, through our relay, in PCMU. Listening starts
    // once the first of it came (bounded; the assertions below judge what came).
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        let got = tokio::time::timeout(Duration::from_millis(100), ear.recv_from(&mut buf)).await;
        if let Ok(Ok((n, from))) = got {
            if n > 12 && buf[1] & 0x7f == 0 && srv.rtp_ports.contains(&from.port()) {
                break;
            }
        }
    }
    while let Ok(Ok(_)) =
        tokio::time::timeout(Duration::from_millis(5), ear.recv_from(&mut buf)).await
    {}
    let relayed_before = srv.running.calls.relayed_packets();
    let start = Instant::now();
    let mut pcm = Vec::new();
    let mut sources = std::collections::BTreeSet::new();
    let mut payload_types = std::collections::BTreeSet::new();
    while start.elapsed() < Duration::from_millis(1500) {
        if let Ok(Ok((n, from))) =
            tokio::time::timeout(Duration::from_millis(100), ear.recv_from(&mut buf)).await
        {
            let Some(payload) = buf.get(12..n) else {
                continue;
            };
            sources.insert(from.port());
            payload_types.insert(buf[1] & 0x7f);
            let mut out = vec![0i16; payload.len()];
            dsp::g711::decode_ulaw_into(payload, &mut out);
            pcm.extend(out);
        }
    }
    let relayed = srv.running.calls.relayed_packets() - relayed_before;
    let heard_ms = pcm.len() / 8;
    let share = tone_share(&pcm, 8000.0, 440.0);
    let answers = our_answers(&sipp.messages());
    eprintln!(
        "PCMU offer while direct: our answer {answers:?}; the caller heard {heard_ms} ms in 1.5 s from ports {sources:?} (agent {agent_port}), payload types {payload_types:?}, 440 Hz share {share:.2}; relay forwarded {relayed}"
    );
    assert!(
        answers
            .first()
            .is_some_and(|(p, _)| srv.rtp_ports.contains(p)),
        "the PCMU offer must be answered from our relay: {answers:?}"
    );
    assert!(
        !sources.is_empty() && sources.iter().all(|p| srv.rtp_ports.contains(p)),
        "the caller's audio must come from our relay now: {sources:?}"
    );
    assert_eq!(payload_types.into_iter().collect::<Vec<_>>(), vec![0]);
    assert!(
        heard_ms >= 1000 && share > 0.3,
        "the agent's voice through the relay (PCMA → PCMU): {heard_ms} ms, share {share:.2}"
    );
    assert!(relayed >= 50, "the relay forwarded only {relayed} packets");
    srv.hang_up_and_check_ended(sipp, &id).await;
    phone.stop().await;
    srv.shutdown().await;
}

/// An agent phone (SIPp) that takes the call and exactly one re-INVITE (our direct-media one), then
/// waits for our BYE: any further re-INVITE fails its scenario.
fn agent_taking_one_reinvite() -> String {
    agent_taking(&[("sendrecv", "[0-9]+", "sendrecv")])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trunk_refreshes_with_and_without_sdp_change_nothing_on_the_agent_leg() {
    let srv = direct_media_server().await;
    let Some(agent) = SippPhone::register(srv.sip_udp, &agent_taking_one_reinvite(), false).await
    else {
        return;
    };
    let mut call = TrunkCall::new(CALLER);
    call.after_answer = trunk_accepts_reinvite();
    call.reinvites = vec![
        // The first SDP again: a pure session refresh.
        TrunkReinvite::offer(Some(""), "a=sendrecv"),
        // No SDP: we offer in the 200, the trunk answers the same media in the ACK.
        TrunkReinvite::offer(None, "a=sendrecv"),
    ];
    let (sipp, id) = answered(&srv, &call).await;
    let agent_port = wait_direct(&srv, &sipp, &id, WAIT, || agent.logs()).await;
    let relayed_before = srv.running.calls.relayed_packets();
    proceed_until_answered(&sipp, "our answer to the refresh", 1).await;
    proceed_until_answered(&sipp, "our offer in the 200 to the SDP-less refresh", 2).await;
    let answers = our_answers(&sipp.messages());
    let relayed = srv.running.calls.relayed_packets() - relayed_before;
    let view = call_view(&srv, &id).await;
    assert_eq!(view["media"], "direct", "{view:#}");
    // A re-INVITE wrongly sent to the phone for a refresh goes out before our BYE to it (one call
    // task, in order): once the call is over, the phone's whole log tells.
    srv.hang_up_and_check_ended(sipp, &id).await;
    let messages = agent
        .finish()
        .await
        .unwrap_or_else(|e| panic!("the agent's phone got more than it should: {e}"));
    let to_agent = messages.matches("INVITE sip:").count();
    eprintln!(
        "refreshes while direct: our SDP to the trunk {answers:?} (agent {agent_port}); INVITEs the phone got: {to_agent}; relay forwarded {relayed}"
    );
    assert_eq!(
        answers,
        vec![
            (agent_port, "sendrecv".to_owned()),
            (agent_port, "sendrecv".to_owned())
        ]
    );
    assert_eq!(
        to_agent, 2,
        "the phone must get only the call and the direct-media re-INVITE"
    );
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_moving_its_rtp_in_an_ack_while_direct_gets_the_trunk_sending_there() {
    let srv = direct_media_server().await;
    let new_port = support::ports::port();
    // Our offer in the 200 must describe the trunk (sipp's media port, not our relay).
    let Some(agent) = SippPhone::register(
        srv.sip_udp,
        &agent_reinviting(&[PhoneStep::Send(PhoneReinvite::LateOffer(
            "m=audio [0-9]+ RTP/AVP 8 101",
            new_port,
        ))]),
        false,
    )
    .await
    else {
        return;
    };
    let mut call = TrunkCall::new(CALLER);
    call.after_answer = trunk_accepts_reinvite() + &trunk_accepts("sendrecv", "sendrecv", "moved");
    let (sipp, id) = answered(&srv, &call).await;
    wait_messages(
        &sipp,
        "the agent's new port reaching the trunk",
        WAIT,
        |m| trunk_reinvite_ports_acked(m).len() >= 2,
    )
    .await;
    let to_trunk = trunk_reinvite_ports(&sipp.messages());
    let trunk_port = agent_invite_ports(&agent.messages())
        .get(1)
        .copied()
        .expect("our direct-media re-INVITE reached the phone");
    let offered_in_200 = audio_ports(&agent.messages(), "SIP/2.0 200 OK")
        .into_iter()
        .filter(|p| *p == trunk_port)
        .count();
    eprintln!(
        "agent late offer while direct: re-INVITE ports to the trunk {to_trunk:?} (new agent port {new_port}); trunk port {trunk_port} offered in our 200s {offered_in_200} time(s)"
    );
    assert_eq!(to_trunk.get(1), Some(&new_port), "{to_trunk:?}");
    assert!(!srv.rtp_ports.contains(&trunk_port));
    assert_eq!(
        offered_in_200, 1,
        "our offer in the 200 to the phone's SDP-less re-INVITE must describe the trunk"
    );
    let view = call_view(&srv, &id).await;
    assert_eq!(view["media"], "direct", "{view:#}");
    hang_up_with_sipp_agent(srv, sipp, &id, agent, "the agent's phone scenario failed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_refusing_the_agents_hold_moves_both_legs_back_to_the_relay() {
    let srv = direct_media_server().await;
    let Some(agent) = SippPhone::register(
        srv.sip_udp,
        &agent_reinviting(&[
            PhoneStep::Send(PhoneReinvite::Offer("sendonly", "a=recvonly")),
            PhoneStep::Take("m=audio [0-9]+ RTP/AVP"),
        ]),
        false,
    )
    .await
    else {
        return;
    };
    let mut call = TrunkCall::new(CALLER);
    call.after_answer = trunk_accepts_reinvite()
        + &trunk_refuses_reinvite("488 Not Acceptable Here")
        + &trunk_accepts("sendrecv", "sendrecv", "back");
    let (sipp, id) = answered(&srv, &call).await;
    wait_messages(&sipp, "our re-INVITE back to the relay", WAIT, |m| {
        trunk_reinvite_ports_acked(m).len() >= 3
    })
    .await;
    wait_messages(
        &agent,
        "the agent's phone moved back to the relay",
        WAIT,
        |m| agent_invite_ports(m).len() >= 3,
    )
    .await;
    let to_trunk = trunk_reinvite_ports(&sipp.messages());
    let to_agent = agent_invite_ports(&agent.messages());
    eprintln!(
        "refused hold while direct: re-INVITE ports to the trunk {to_trunk:?}, to the agent {to_agent:?}"
    );
    assert!(
        !srv.rtp_ports.contains(&to_trunk[0]) && !srv.rtp_ports.contains(&to_trunk[1]),
        "direct media, then the agent's hold pointing at the agent: {to_trunk:?}"
    );
    assert!(
        srv.rtp_ports.contains(&to_trunk[2]),
        "the trunk was not moved back to our relay: {to_trunk:?}"
    );
    assert!(
        srv.rtp_ports.contains(&to_agent[2]),
        "the agent's phone was not moved back to our relay: {to_agent:?}"
    );
    srv.wait_for_call(Duration::from_secs(3), |c| {
        c["id"] == id && c["media"] == "relay" && c["state"] == "connected"
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    hang_up_with_sipp_agent(srv, sipp, &id, agent, "the agent's phone scenario failed").await;
}
