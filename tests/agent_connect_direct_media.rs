//! `media = "direct"`: once the agent's phone is connected through our relay, we re-INVITE the trunk
//! with the agent's RTP address and then the agent with the trunk's, so caller and agent talk end to
//! end. A user sees it as: the call still works (the agent hears its own voice echoed by the caller's
//! phone, `sipp -rtp_echo`), the call shows `media: "direct"`, and our relay forwards nothing any more.
//! A trunk that refuses the re-INVITE (488) keeps the call on the relay, and audio still flows; a
//! trunk whose re-INVITE crossed one of its own (491) gets ours again after the back-off; an agent
//! phone that refuses its re-INVITE after the trunk moved gets the trunk moved back to our relay.
//!
//! Real peers on loopback: SIPp as the trunk, baresip as the agent's phone.

mod support;

use serde_json::Value;
use std::time::Duration;
use support::agent::{answer, server_with_agent, tone_share, AgentPhone, Answer};
use support::server::TestServer;
use support::sipp::{Sipp, TrunkCall};
use support::sipp_phone::SippPhone;
use veilig_bellen::call::direct::AgentMedia;

const CALLER: &str = "+31612340001";

/// The trunk takes our re-INVITE and answers with its own media address.
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

/// The trunk does not do media changes.
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

/// Glare (RFC 3261 §14.1): the trunk answers our first re-INVITE 491, then accepts the retry.
const TRUNK_GLARE_THEN_ACCEPTS: &str = r#"  <recv request="INVITE" timeout="10000"/>
  <send>
    <![CDATA[
      SIP/2.0 491 Request Pending
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

/// An agent phone (SIPp) that answers the call but refuses any media change (488), then waits for
/// our BYE.
const AGENT_REFUSES_REINVITE: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="agent phone refusing re-INVITEs">
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
  <recv request="INVITE" timeout="10000"/>
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
  <recv request="BYE" timeout="14000"/>
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
  <Reference variables="invite_cseq"/>
</scenario>
"#;

async fn direct_media_server() -> TestServer {
    server_with_agent(|c| {
        c.calls.agent_media = AgentMedia::Direct;
        // No link code in these calls: they wait (unverified) after a short silence.
        c.calls.call.collect.first_digit_timeout = Duration::from_millis(600);
    })
    .await
}

/// Calls, lets the agent answer, waits until the agent's phone is in the call; returns sipp and
/// the call's id.
async fn connect(srv: &TestServer, phone: &mut AgentPhone, call: &TrunkCall) -> (Sipp, Value) {
    let (sipp, waiting) = srv
        .call_until_waiting(call, Duration::from_secs(8))
        .await
        .expect("no pcap in this call, so no skip");
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
    (sipp, id)
}

/// Over 1.5 s: packets our relay forwarded, and how much of what the agent newly heard is its own
/// 440 Hz voice come back from the caller's phone.
async fn listen(srv: &TestServer, phone: &AgentPhone) -> (u64, usize, f64) {
    let relayed = srv.running.calls.relayed_packets();
    let before = phone.heard().1.len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let relayed = srv.running.calls.relayed_packets() - relayed;
    let (rate, heard) = phone.heard();
    let new = heard.get(before..).unwrap_or_default();
    let share = tone_share(new, f64::from(rate), 440.0);
    (relayed, new.len() * 1000 / rate.max(1) as usize, share)
}

/// The `m=audio` port of the re-INVITE the trunk received from us (the second INVITE in its log).
fn reinvite_port(messages: &str) -> Option<u16> {
    reinvite_ports(messages).first().copied()
}

/// The `m=audio` ports of every re-INVITE the trunk received from us, in order.
fn reinvite_ports(messages: &str) -> Vec<u16> {
    messages
        .split("INVITE sip:trunk@")
        .skip(1)
        .filter_map(|rest| {
            let m = rest.find("m=audio ")?;
            rest[m + 8..]
                .split_whitespace()
                .next()
                .and_then(|p| p.parse().ok())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_and_agent_talk_end_to_end_after_the_reinvites() {
    let srv = direct_media_server().await;
    let Some(mut phone) = AgentPhone::register(srv.sip_udp, Answer::Auto).await else {
        return;
    };
    let mut call = TrunkCall::new(CALLER);
    call.rtp_echo = true;
    call.after_answer = TRUNK_ACCEPTS_REINVITE.to_owned();
    let (sipp, id) = connect(&srv, &mut phone, &call).await;

    let direct = srv
        .wait_for_call(Duration::from_secs(5), |c| {
            c["id"] == id && c["media"] == "direct"
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\nsipp:\n{}\n{}", sipp.logs(), phone.log()));
    assert_eq!(direct["state"], "connected");
    assert_eq!(direct["agent"], "agent");

    let port = reinvite_port(&sipp.messages())
        .unwrap_or_else(|| panic!("no re-INVITE with SDP reached the trunk:\n{}", sipp.logs()));
    assert!(
        !srv.rtp_ports.contains(&port),
        "the trunk's re-INVITE points at our relay port {port}, not at the agent's phone"
    );

    // Let the moved streams settle, then listen.
    tokio::time::sleep(Duration::from_millis(300)).await;
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
    if let Err(e) = phone
        .wait_event("CALL_CLOSED", Duration::from_secs(5))
        .await
    {
        panic!(
            "the caller's BYE did not end the agent's call: {e}\n{}",
            phone.log()
        );
    }
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
    call.after_answer = TRUNK_REFUSES_REINVITE.to_owned();
    let (sipp, id) = connect(&srv, &mut phone, &call).await;

    // Wait until the trunk got (and refused) our re-INVITE.
    let start = std::time::Instant::now();
    while !sipp.messages().contains("488 Not Acceptable Here") {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no re-INVITE reached the trunk:\n{}",
            sipp.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (relayed, heard_ms, share) = listen(&srv, &phone).await;
    eprintln!("refused re-INVITE: relay forwarded {relayed} packets in 1.5 s; the agent heard {heard_ms} ms, 440 Hz share {share:.2}");
    let calls = srv.calls().await;
    let view = calls
        .iter()
        .find(|c| c["id"] == id)
        .expect("the call is listed");
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

    srv.hang_up_and_check_ended(sipp, &id).await;
    if let Err(e) = phone
        .wait_event("CALL_CLOSED", Duration::from_secs(5))
        .await
    {
        panic!("the agent's call did not end: {e}\n{}", phone.log());
    }
    phone.stop().await;
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_answering_491_gets_the_reinvite_again_and_media_goes_direct() {
    let srv = direct_media_server().await;
    let Some(mut phone) = AgentPhone::register(srv.sip_udp, Answer::Auto).await else {
        return;
    };
    let mut call = TrunkCall::new(CALLER);
    call.rtp_echo = true;
    call.after_answer = TRUNK_GLARE_THEN_ACCEPTS.to_owned() + TRUNK_ACCEPTS_REINVITE;
    let (sipp, id) = connect(&srv, &mut phone, &call).await;
    let started = std::time::Instant::now();
    srv.wait_for_call(Duration::from_secs(8), |c| {
        c["id"] == id && c["media"] == "direct"
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\nsipp:\n{}\n{}", sipp.logs(), phone.log()));
    eprintln!("direct after a 491 in {:?}", started.elapsed());
    let ports = reinvite_ports(&sipp.messages());
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
    let Some(agent) = SippPhone::register(srv.sip_udp, AGENT_REFUSES_REINVITE, false).await else {
        return;
    };
    let mut call = TrunkCall::new(CALLER);
    // First to the agent, then back to us.
    call.after_answer = TRUNK_ACCEPTS_REINVITE.repeat(2);
    let (sipp, waiting) = srv
        .call_until_waiting(&call, Duration::from_secs(8))
        .await
        .expect("no pcap in this call, so no skip");
    let id = waiting["id"].clone();
    assert_eq!(answer(&srv, &id).await.0, 202);
    let start = std::time::Instant::now();
    let ports = loop {
        let ports = reinvite_ports(&sipp.messages());
        if ports.len() >= 2 {
            break ports;
        }
        assert!(
            start.elapsed() < Duration::from_secs(8),
            "the trunk was not moved back: re-INVITE ports {ports:?}\ntrunk:\n{}\nagent:\n{}",
            sipp.logs(),
            agent.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        !srv.rtp_ports.contains(&ports[0]),
        "the first re-INVITE points at our relay ({ports:?}), not at the agent"
    );
    assert!(
        srv.rtp_ports.contains(&ports[1]),
        "the second re-INVITE does not bring the trunk back to our relay: {ports:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let calls = srv.calls().await;
    let view = calls.iter().find(|c| c["id"] == id).expect("listed");
    assert_eq!(view["state"], "connected", "{view:#}");
    assert_eq!(view["media"], "relay", "{view:#}");
    srv.hang_up_and_check_ended(sipp, &id).await;
    if let Err(e) = agent.finish().await {
        panic!("the agent phone's scenario failed (no BYE?): {e}");
    }
    srv.shutdown().await;
}
