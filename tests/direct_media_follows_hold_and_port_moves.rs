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

mod support;

use serde_json::Value;
use std::time::{Duration, Instant};
use support::agent::{answer, server_with_agent, tone_share, AgentPhone, Answer};
use support::server::TestServer;
use support::sipp::{Sipp, TrunkCall, TrunkReinvite};
use veilig_bellen::call::direct::AgentMedia;

const CALLER: &str = "+31612340002";

/// The trunk takes our direct-media re-INVITE and answers with its own media address.
const TRUNK_ACCEPTS_REINVITE: &str = r#"  <recv request="INVITE" timeout="10000"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:trunk@[local_ip]:[local_port]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=trunk 53655765 2353687638 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8 101
      a=rtpmap:8 PCMA/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15
      a=ptime:20
    ]]>
  </send>
  <recv request="ACK"/>
"#;

async fn direct_media_server() -> TestServer {
    server_with_agent(|c| {
        c.calls.agent_media = AgentMedia::Direct;
        c.calls.call.collect.first_digit_timeout = Duration::from_millis(600);
    })
    .await
}

/// Calls, lets the agent answer, waits until media is direct; returns sipp, the call's id and the
/// agent's RTP port (from our re-INVITE to the trunk).
async fn connect_direct(
    srv: &TestServer,
    phone: &mut AgentPhone,
    call: &TrunkCall,
) -> (Sipp, Value, u16) {
    let (sipp, waiting) = srv
        .call_until_waiting(call, Duration::from_secs(8))
        .await
        .expect("no pcap in this call, so no skip");
    let id = waiting["id"].clone();
    assert_eq!(answer(srv, &id).await.0, 202);
    if let Err(e) = phone
        .wait_event("CALL_ESTABLISHED", Duration::from_secs(8))
        .await
    {
        panic!(
            "the agent's phone never took the call: {e}\n{}",
            phone.log()
        );
    }
    srv.wait_for_call(Duration::from_secs(5), |c| {
        c["id"] == id && c["media"] == "direct"
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\nsipp:\n{}\n{}", sipp.logs(), phone.log()));
    let agent_port = audio_ports(&sipp.messages(), "INVITE sip:trunk@")
        .first()
        .copied()
        .unwrap_or_else(|| panic!("no re-INVITE reached the trunk:\n{}", sipp.logs()));
    assert!(!srv.rtp_ports.contains(&agent_port));
    (sipp, id, agent_port)
}

/// The `m=audio` ports of the messages in sipp's log that start with `start`, in order.
fn audio_ports(messages: &str, start: &str) -> Vec<u16> {
    messages
        .split(start)
        .skip(1)
        .filter_map(|rest| {
            // Only this message: up to sipp's next log separator.
            let rest = rest.split("\n-----").next().unwrap_or(rest);
            let m = rest.find("m=audio ")?;
            rest[m + 8..]
                .split_whitespace()
                .next()
                .and_then(|p| p.parse().ok())
        })
        .collect()
}

/// Our 200 OKs with SDP to a peer's re-INVITEs (our origin line is `o=- `): (m=audio port,
/// direction attribute).
fn our_answers(messages: &str) -> Vec<(u16, String)> {
    messages
        .split("SIP/2.0 200 OK")
        .skip(1)
        .filter_map(|rest| {
            let rest = rest.split("\n-----").next().unwrap_or(rest);
            // Answers to re-INVITEs only (the first INVITE is CSeq 1).
            let cseq = rest.split("CSeq:").nth(1)?.lines().next()?.trim();
            if !cseq.ends_with(" INVITE") || cseq.starts_with("1 ") || !rest.contains("o=- ") {
                return None;
            }
            let m = rest.find("m=audio ")?;
            let port = rest[m + 8..].split_whitespace().next()?.parse().ok()?;
            let dir = ["sendrecv", "sendonly", "recvonly", "inactive"]
                .into_iter()
                .find(|d| rest.contains(&format!("a={d}")))
                .unwrap_or("sendrecv");
            Some((port, dir.to_owned()))
        })
        .collect()
}

/// Waits (bounded) until sipp's log satisfies `pred`.
async fn wait_messages(sipp: &Sipp, what: &str, pred: impl Fn(&str) -> bool) {
    let start = Instant::now();
    while !pred(&sipp.messages()) {
        assert!(
            start.elapsed() < Duration::from_secs(8),
            "{what} never happened:\n{}",
            sipp.logs()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Over `time`: how many ms the agent newly heard and the 440 Hz share of it.
async fn listen(phone: &AgentPhone, time: Duration) -> (usize, f64) {
    let before = phone.heard().1.len();
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
    call.after_answer = TRUNK_ACCEPTS_REINVITE.to_owned();
    call.after_answer_requests = 0;
    call.reinvites = vec![
        TrunkReinvite {
            sdp: Some("sendonly"),
            port: None,
            expect: "a=recvonly",
        },
        TrunkReinvite {
            sdp: Some("sendrecv"),
            port: None,
            expect: "a=sendrecv",
        },
    ];
    let (sipp, id, agent_port) = connect_direct(&srv, &mut phone, &call).await;
    let relayed_before = srv.running.calls.relayed_packets();

    // Hold.
    sipp.proceed();
    wait_messages(&sipp, "our answer to the hold", |m| {
        our_answers(m).iter().any(|(_, d)| d == "recvonly")
    })
    .await;
    if let Err(e) = phone
        .wait_event("CALL_REMOTE_SDP", Duration::from_secs(3))
        .await
    {
        panic!(
            "the hold never reached the agent's phone: {e}\n{}",
            phone.log()
        );
    }
    let (held_ms, held_share) = listen(&phone, Duration::from_millis(1000)).await;
    let view = srv
        .calls()
        .await
        .into_iter()
        .find(|c| c["id"] == id)
        .expect("listed");
    assert_eq!(view["media"], "direct", "on hold: {view:#}");

    // Resume.
    sipp.proceed();
    wait_messages(&sipp, "our answer to the resume", |m| {
        our_answers(m).len() >= 2
    })
    .await;
    if let Err(e) = phone
        .wait_event("CALL_REMOTE_SDP", Duration::from_secs(3))
        .await
    {
        panic!(
            "the resume never reached the agent's phone: {e}\n{}",
            phone.log()
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
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
    let view = srv
        .calls()
        .await
        .into_iter()
        .find(|c| c["id"] == id)
        .expect("listed");
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
    call.after_answer = TRUNK_ACCEPTS_REINVITE.to_owned();
    call.reinvites = vec![TrunkReinvite {
        sdp: Some("sendrecv"),
        port: Some(ear_port),
        expect: "",
    }];
    let (sipp, id, agent_port) = connect_direct(&srv, &mut phone, &call).await;
    let relayed_before = srv.running.calls.relayed_packets();

    sipp.proceed();
    wait_messages(&sipp, "our answer to the move", |m| {
        !our_answers(m).is_empty()
    })
    .await;
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
    let view = srv
        .calls()
        .await
        .into_iter()
        .find(|c| c["id"] == id)
        .expect("listed");
    assert_eq!(view["media"], "direct", "{view:#}");

    srv.hang_up_and_check_ended(sipp, &id).await;
    phone.stop().await;
    srv.shutdown().await;
}

/// An agent phone (SIPp, echoing RTP) that takes the call and our three re-INVITEs: the direct-media
/// one (the trunk's answer to ours, on sipp's media port), then the trunk's hold (`a=sendonly`) and
/// resume (`a=sendrecv`), both pointing at the trunk's RTP port `trunk_port` that its hold moved
/// to; answers each with its own media, then waits for our BYE.
fn agent_taking_hold_and_resume(trunk_port: u16) -> String {
    let answer = |direction: &str| {
        format!(
            r#"  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:agent@[local_ip]:[local_port]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=phone 1 2 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8 101
      a=rtpmap:8 PCMA/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15
      a=ptime:20
      a={direction}
    ]]>
  </send>
  <recv request="ACK"/>
"#
        )
    };
    let reinvite = |i: usize, direction: &str, port: &str| {
        format!(
            r#"  <recv request="INVITE" timeout="10000">
    <action>
      <ereg regexp="m=audio {port} " search_in="body" check_it="true" assign_to="port_{i}"/>
      <ereg regexp="a={direction}" search_in="body" check_it="true" assign_to="dir_{i}"/>
    </action>
  </recv>
"#
        )
    };
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="agent phone taking hold and resume">
  <recv request="INVITE">
    <action>
      <ereg regexp="[0-9]+" search_in="hdr" header="CSeq:" check_it="true" assign_to="invite_cseq"/>
    </action>
  </recv>
  <send retrans="500">
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      CSeq: [$invite_cseq] INVITE
      Contact: <sip:agent@[local_ip]:[local_port]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=phone 1 1 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8 101
      a=rtpmap:8 PCMA/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15
      a=ptime:20
    ]]>
  </send>
  <recv request="ACK"/>
{}{}{}{}{}{}  <recv request="BYE" timeout="20000"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]>
  </send>
  <Reference variables="invite_cseq,port_0,dir_0,port_1,dir_1,port_2,dir_2"/>
</scenario>
"#,
        reinvite(0, "sendrecv", "[0-9]+"),
        answer("sendrecv"),
        reinvite(1, "sendonly", &trunk_port.to_string()),
        answer("recvonly"),
        reinvite(2, "sendrecv", &trunk_port.to_string()),
        answer("sendrecv"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_trunk_hold_and_resume_rtp_flows_end_to_end_without_the_relay() {
    let srv = direct_media_server().await;
    // The trunk's RTP: a test socket that talks to the agent's phone and hears its echo.
    let mouth = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let trunk_port = mouth.local_addr().expect("addr").port();
    let Some(agent) = support::sipp_phone::SippPhone::register(
        srv.sip_udp,
        &agent_taking_hold_and_resume(trunk_port),
        true,
    )
    .await
    else {
        return;
    };
    let mut call = TrunkCall::new(CALLER);
    call.media_port = Some(trunk_port);
    call.after_answer = TRUNK_ACCEPTS_REINVITE.to_owned();
    call.reinvites = vec![
        TrunkReinvite {
            sdp: Some("sendonly"),
            port: None,
            expect: "a=recvonly",
        },
        TrunkReinvite {
            sdp: Some("sendrecv"),
            port: None,
            expect: "a=sendrecv",
        },
    ];
    let (sipp, waiting) = srv
        .call_until_waiting(&call, Duration::from_secs(8))
        .await
        .expect("no pcap in this call, so no skip");
    let id = waiting["id"].clone();
    assert_eq!(answer(&srv, &id).await.0, 202);
    srv.wait_for_call(Duration::from_secs(8), |c| {
        c["id"] == id && c["media"] == "direct"
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\ntrunk:\n{}\nagent:\n{}", sipp.logs(), agent.logs()));
    let agent_port = audio_ports(&sipp.messages(), "INVITE sip:trunk@")
        .first()
        .copied()
        .expect("our re-INVITE reached the trunk");
    let relayed_before = srv.running.calls.relayed_packets();

    sipp.proceed();
    wait_messages(&sipp, "our answer to the hold", |m| {
        !our_answers(m).is_empty()
    })
    .await;
    sipp.proceed();
    wait_messages(&sipp, "our answer to the resume", |m| {
        our_answers(m).len() >= 2
    })
    .await;
    // Wait for the agent to take the resume too.
    let start = Instant::now();
    while agent.messages().matches("INVITE sip:").count() < 4 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the resume never reached the agent's phone:\n{}",
            agent.logs()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

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

    srv.hang_up_and_check_ended(sipp, &id).await;
    if let Err(e) = agent.finish().await {
        panic!("the agent's phone was not told hold and resume with the trunk's media: {e}");
    }
    srv.shutdown().await;
}

/// The trunk accepts a re-INVITE whose offer says `a={offered}`, answering `a={answered}` on sipp's
/// media port.
fn trunk_accepts(offered: &str, answered: &str, var: &str) -> String {
    format!(
        r#"  <recv request="INVITE" timeout="10000">
    <action>
      <ereg regexp="a={offered}" search_in="body" check_it="true" assign_to="{var}"/>
    </action>
  </recv>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:trunk@[local_ip]:[local_port]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=trunk 53655765 2353687639 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8 101
      a=rtpmap:8 PCMA/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15
      a=ptime:20
      a={answered}
    ]]>
  </send>
  <recv request="ACK"/>
  <Reference variables="{var}"/>
"#
    )
}

/// An agent phone (SIPp) that takes the call and our direct-media re-INVITE, then puts the caller
/// on hold (`a=sendonly`, our answer must say `a=recvonly`) and resumes (`a=sendrecv`), then waits
/// for our BYE.
fn agent_holding_and_resuming() -> String {
    agent_reinviting(&[
        PhoneStep::Offer("sendonly", "a=recvonly"),
        PhoneStep::Offer("sendrecv", "a=sendrecv"),
    ])
}

/// A re-INVITE the agent's phone sends once the call is direct.
enum PhoneStep {
    /// An offer with this direction; our answer must match the regular expression.
    Offer(&'static str, &'static str),
    /// No offer; our offer in the 200 must match the regular expression, and the phone's answer in
    /// the ACK moves its RTP to this port.
    LateOffer(&'static str, u16),
    /// Takes a re-INVITE of ours whose offer matches the regular expression, answering `sendrecv`.
    Take(&'static str),
}

/// An agent phone (SIPp) that takes the call and our direct-media re-INVITE, then sends `steps`
/// 300 ms apart, then waits for our BYE.
fn agent_reinviting(steps: &[PhoneStep]) -> String {
    let sdp = |version: u32, direction: &str| {
        format!(
            "      v=0
      o=phone 1 {version} IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8 101
      a=rtpmap:8 PCMA/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15
      a=ptime:20
      a={direction}
"
        )
    };
    let head = |method: &str, cseq: u32| {
        format!(
            "      {method} [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: [$our_to];tag=[pid]SIPpTag01[call_number]
      To: [$their_from]
      [routes]
      Call-ID: [call_id]
      CSeq: {cseq} {method}
      Contact: <sip:agent@[local_ip]:[local_port]>
      Max-Forwards: 70
"
        )
    };
    let with_sdp = |sdp: String| {
        format!("      Content-Type: application/sdp\n      Content-Length: [len]\n\n{sdp}")
    };
    let take = |expect: &str, var: String| {
        format!(
            r#"  <recv request="INVITE" timeout="10000">
    <action>
      <ereg regexp="{expect}" search_in="body" check_it="true" assign_to="{var}"/>
    </action>
  </recv>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:agent@[local_ip]:[local_port]>
      Content-Type: application/sdp
      Content-Length: [len]

{}    ]]>
  </send>
  <recv request="ACK"/>
"#,
            sdp(9, "sendrecv")
        )
    };
    let reinvite = |cseq: u32, step: &PhoneStep| {
        let (offer, expect, ack) = match *step {
            PhoneStep::Take(expect) => return take(expect, format!("answer_{cseq}")),
            PhoneStep::Offer(direction, expect) => (
                with_sdp(sdp(cseq + 1, direction)),
                expect,
                "      Content-Length: 0\n".to_owned(),
            ),
            PhoneStep::LateOffer(expect, port) => (
                "      Content-Length: 0\n".to_owned(),
                expect,
                with_sdp(sdp(cseq + 1, "sendrecv").replace("[media_port]", &port.to_string())),
            ),
        };
        format!(
            r#"  <pause milliseconds="300"/>
  <send retrans="500">
    <![CDATA[
{}{offer}    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="200">
    <action>
      <ereg regexp="{expect}" search_in="body" check_it="true" assign_to="answer_{cseq}"/>
    </action>
  </recv>
  <send>
    <![CDATA[
{}{ack}    ]]>
  </send>
"#,
            head("INVITE", cseq),
            head("ACK", cseq)
        )
    };
    let steps_xml: String = steps
        .iter()
        .enumerate()
        .map(|(i, step)| reinvite(i as u32 + 2, step))
        .collect();
    let answers: String = (0..steps.len())
        .map(|i| format!(",answer_{}", i + 2))
        .collect();
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="agent phone re-INVITEing">
  <recv request="INVITE" rrs="true">
    <action>
      <ereg regexp=".*" search_in="hdr" header="From:" check_it="true" assign_to="their_from"/>
      <ereg regexp="^[^;]*" search_in="hdr" header="To:" check_it="true" assign_to="our_to"/>
      <ereg regexp="[0-9]+" search_in="hdr" header="CSeq:" check_it="true" assign_to="invite_cseq"/>
    </action>
  </recv>
  <send retrans="500">
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      CSeq: [$invite_cseq] INVITE
      Contact: <sip:agent@[local_ip]:[local_port]>
      Content-Type: application/sdp
      Content-Length: [len]

{}    ]]>
  </send>
  <recv request="ACK"/>
  <recv request="INVITE" timeout="10000"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:agent@[local_ip]:[local_port]>
      Content-Type: application/sdp
      Content-Length: [len]

{}    ]]>
  </send>
  <recv request="ACK"/>
{steps_xml}  <recv request="BYE" timeout="20000"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]>
  </send>
  <Reference variables="their_from,our_to,invite_cseq{answers}"/>
</scenario>
"#,
        sdp(1, "sendrecv"),
        sdp(2, "sendrecv"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_hold_and_resume_reach_the_trunk_and_media_stays_direct() {
    let srv = direct_media_server().await;
    let Some(agent) =
        support::sipp_phone::SippPhone::register(srv.sip_udp, &agent_holding_and_resuming(), false)
            .await
    else {
        return;
    };
    let mut call = TrunkCall::new(CALLER);
    call.after_answer = TRUNK_ACCEPTS_REINVITE.to_owned()
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
    let start = Instant::now();
    while our_answers(&agent.messages()).len() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(8),
            "the agent's hold and resume were not answered:\nagent:\n{}\ntrunk:\n{}",
            agent.logs(),
            sipp.logs()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    wait_messages(&sipp, "the resume reaching the trunk", |m| {
        audio_ports(m, "INVITE sip:trunk@").len() >= 3
    })
    .await;
    let trunk_port = audio_ports(&agent.messages(), "INVITE sip:agent")
        .get(1)
        .copied()
        .expect("our direct-media re-INVITE reached the phone");
    let agent_port = audio_ports(&sipp.messages(), "INVITE sip:trunk@")
        .first()
        .copied()
        .expect("our direct-media re-INVITE reached the trunk");
    let to_agent = our_answers(&agent.messages());
    let to_trunk = audio_ports(&sipp.messages(), "INVITE sip:trunk@");
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
    let view = srv
        .calls()
        .await
        .into_iter()
        .find(|c| c["id"] == id)
        .expect("listed");
    assert_eq!(view["media"], "direct", "{view:#}");
    srv.hang_up_and_check_ended(sipp, &id).await;
    if let Err(e) = agent.finish().await {
        panic!("the agent's phone scenario failed: {e}");
    }
    srv.shutdown().await;
}

/// When the test says so (OPTIONS), the trunk re-INVITEs offering only PCMU — a codec the agent's
/// leg does not use — and checks our answer takes PCMU.
fn trunk_offers_pcmu_only() -> String {
    format!(
        r#"  <recv request="OPTIONS" timeout="20000"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]>
  </send>
  <send retrans="500">
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
    call.after_answer = (TRUNK_ACCEPTS_REINVITE.to_owned() + &trunk_offers_pcmu_only())
        .replace("[media_port]", &ear_port);
    call.after_answer_requests = 1;
    let (sipp, id, agent_port) = connect_direct(&srv, &mut phone, &call).await;

    sipp.proceed();
    wait_messages(&sipp, "our answer to the PCMU offer", |m| {
        !our_answers(m).is_empty()
    })
    .await;
    if let Err(e) = phone
        .wait_event("CALL_REMOTE_SDP", Duration::from_secs(3))
        .await
    {
        panic!(
            "the agent's phone was not moved back to the relay: {e}\n{}",
            phone.log()
        );
    }
    srv.wait_for_call(Duration::from_secs(3), |c| {
        c["id"] == id && c["media"] == "relay"
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\nsipp:\n{}", sipp.logs()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // What the caller hears now: the agent's 440 Hz, through our relay, in PCMU.
    let mut buf = [0u8; 2048];
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
    let full = agent_taking_hold_and_resume(0);
    // Keep the INVITE, its ACK and the first re-INVITE with its answer; drop hold and resume.
    let first_reinvite_end = full
        .match_indices("<recv request=\"ACK\"/>")
        .nth(1)
        .map(|(i, m)| i + m.len() + 1)
        .expect("scenario shape");
    let bye = full
        .find("  <recv request=\"BYE\"")
        .expect("scenario shape");
    format!("{}{}", &full[..first_reinvite_end], &full[bye..])
        .replace(",port_1,dir_1,port_2,dir_2", "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trunk_refreshes_with_and_without_sdp_change_nothing_on_the_agent_leg() {
    let srv = direct_media_server().await;
    let Some(agent) =
        support::sipp_phone::SippPhone::register(srv.sip_udp, &agent_taking_one_reinvite(), false)
            .await
    else {
        return;
    };
    let mut call = TrunkCall::new(CALLER);
    call.after_answer = TRUNK_ACCEPTS_REINVITE.to_owned();
    call.reinvites = vec![
        // The first SDP again: a pure session refresh.
        TrunkReinvite {
            sdp: Some(""),
            port: None,
            expect: "a=sendrecv",
        },
        // No SDP: we offer in the 200, the trunk answers the same media in the ACK.
        TrunkReinvite {
            sdp: None,
            port: None,
            expect: "a=sendrecv",
        },
    ];
    let (sipp, waiting) = srv
        .call_until_waiting(&call, Duration::from_secs(8))
        .await
        .expect("no pcap in this call, so no skip");
    let id = waiting["id"].clone();
    assert_eq!(answer(&srv, &id).await.0, 202);
    srv.wait_for_call(Duration::from_secs(8), |c| {
        c["id"] == id && c["media"] == "direct"
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\ntrunk:\n{}\nagent:\n{}", sipp.logs(), agent.logs()));
    let agent_port = audio_ports(&sipp.messages(), "INVITE sip:trunk@")
        .first()
        .copied()
        .expect("our re-INVITE reached the trunk");
    let relayed_before = srv.running.calls.relayed_packets();
    sipp.proceed();
    wait_messages(&sipp, "our answer to the refresh", |m| {
        !our_answers(m).is_empty()
    })
    .await;
    sipp.proceed();
    wait_messages(&sipp, "our offer in the 200 to the SDP-less refresh", |m| {
        our_answers(m).len() >= 2
    })
    .await;
    // Give a wrongly sent re-INVITE time to reach the phone.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let answers = our_answers(&sipp.messages());
    let to_agent = agent.messages().matches("INVITE sip:").count();
    let relayed = srv.running.calls.relayed_packets() - relayed_before;
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
    let view = srv
        .calls()
        .await
        .into_iter()
        .find(|c| c["id"] == id)
        .expect("listed");
    assert_eq!(view["media"], "direct", "{view:#}");
    srv.hang_up_and_check_ended(sipp, &id).await;
    if let Err(e) = agent.finish().await {
        panic!("the agent's phone got more than it should: {e}");
    }
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_moving_its_rtp_in_an_ack_while_direct_gets_the_trunk_sending_there() {
    let srv = direct_media_server().await;
    let new_port = support::sipp::free_udp_port();
    // Our offer in the 200 must describe the trunk (sipp's media port, not our relay).
    let Some(agent) = support::sipp_phone::SippPhone::register(
        srv.sip_udp,
        &agent_reinviting(&[PhoneStep::LateOffer(
            "m=audio [0-9]+ RTP/AVP 8 101",
            new_port,
        )]),
        false,
    )
    .await
    else {
        return;
    };
    let mut call = TrunkCall::new(CALLER);
    call.after_answer =
        TRUNK_ACCEPTS_REINVITE.to_owned() + &trunk_accepts("sendrecv", "sendrecv", "moved");
    let (sipp, waiting) = srv
        .call_until_waiting(&call, Duration::from_secs(8))
        .await
        .expect("no pcap in this call, so no skip");
    let id = waiting["id"].clone();
    assert_eq!(answer(&srv, &id).await.0, 202);
    wait_messages(&sipp, "the agent's new port reaching the trunk", |m| {
        audio_ports(m, "INVITE sip:trunk@").len() >= 2
    })
    .await;
    let to_trunk = audio_ports(&sipp.messages(), "INVITE sip:trunk@");
    let trunk_port = audio_ports(&agent.messages(), "INVITE sip:agent")
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
    let view = srv
        .calls()
        .await
        .into_iter()
        .find(|c| c["id"] == id)
        .expect("listed");
    assert_eq!(view["media"], "direct", "{view:#}");
    srv.hang_up_and_check_ended(sipp, &id).await;
    if let Err(e) = agent.finish().await {
        panic!("the agent's phone scenario failed: {e}");
    }
    srv.shutdown().await;
}

/// The trunk refuses a re-INVITE (488).
const TRUNK_REFUSES_REINVITE: &str = r#"  <recv request="INVITE" timeout="10000"/>
  <send>
    <![CDATA[
      SIP/2.0 488 Not Acceptable Here
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]>
  </send>
  <recv request="ACK"/>
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_refusing_the_agents_hold_moves_both_legs_back_to_the_relay() {
    let srv = direct_media_server().await;
    let Some(agent) = support::sipp_phone::SippPhone::register(
        srv.sip_udp,
        &agent_reinviting(&[
            PhoneStep::Offer("sendonly", "a=recvonly"),
            PhoneStep::Take("m=audio [0-9]+ RTP/AVP"),
        ]),
        false,
    )
    .await
    else {
        return;
    };
    let mut call = TrunkCall::new(CALLER);
    call.after_answer = TRUNK_ACCEPTS_REINVITE.to_owned()
        + TRUNK_REFUSES_REINVITE
        + &trunk_accepts("sendrecv", "sendrecv", "back");
    let (sipp, waiting) = srv
        .call_until_waiting(&call, Duration::from_secs(8))
        .await
        .expect("no pcap in this call, so no skip");
    let id = waiting["id"].clone();
    assert_eq!(answer(&srv, &id).await.0, 202);
    wait_messages(&sipp, "our re-INVITE back to the relay", |m| {
        audio_ports(m, "INVITE sip:trunk@").len() >= 3
    })
    .await;
    let start = Instant::now();
    while audio_ports(&agent.messages(), "INVITE sip:agent").len() < 3 {
        assert!(
            start.elapsed() < Duration::from_secs(8),
            "the agent's phone was not moved back to the relay:\n{}",
            agent.logs()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let to_trunk = audio_ports(&sipp.messages(), "INVITE sip:trunk@");
    let to_agent = audio_ports(&agent.messages(), "INVITE sip:agent");
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
    srv.hang_up_and_check_ended(sipp, &id).await;
    if let Err(e) = agent.finish().await {
        panic!("the agent's phone scenario failed: {e}");
    }
    srv.shutdown().await;
}
