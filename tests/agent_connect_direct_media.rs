//! `media = "direct"`: once the agent's phone is connected through our relay, we re-INVITE the trunk
//! with the agent's RTP address and then the agent with the trunk's, so caller and agent talk end to
//! end. A user sees it as: the call still works (the agent hears its own voice echoed by the caller's
//! phone, `sipp -rtp_echo`), the call shows `media: "direct"`, and our relay forwards nothing any more.
//! A trunk that refuses the re-INVITE (488) keeps the call on the relay, and audio still flows.
//!
//! Real peers on loopback: SIPp as the trunk, baresip as the agent's phone.

mod support;

use serde_json::Value;
use std::time::Duration;
use support::agent::{answer, server_with_agent, tone_share, AgentPhone, Answer};
use support::server::TestServer;
use support::sipp::{Sipp, TrunkCall};
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
    let at = messages.match_indices("INVITE sip:trunk@").next()?.0;
    let rest = &messages[at..];
    let m = rest.find("m=audio ")?;
    rest[m + 8..]
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
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
