//! Our 200 OK to a re-INVITE (hold) is resent until the peer ACKs it (RFC 3261 §13.3.1.4: at T1,
//! 2·T1, … through that re-INVITE's transaction), from the trunk leg and from the agent leg, and the
//! call then lasts past 64·T1. The peers are hand-written UDP endpoints, since SIPp cannot hold back
//! an ACK: a trunk, and an agent's phone registered as `agent` with digest auth. T1 is 25 ms here.

use crate::support;

use std::time::Duration;
use support::agent::{answer, server_with_agent};
use support::raw_sip::{header, RawTrunk};
use support::sipp::TrunkCall;
use tokio::time::Instant;

const CALLER: &str = "+31611113333";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_answer_to_a_trunk_reinvite_is_resent_until_the_trunk_acks_it() {
    // RFC 3261 §13.3.1.4: the UAS resends a 2xx at T1, 2·T1, … until the ACK arrives. T1 = 25 ms;
    // the re-INVITE comes 2 s into the call, long after the first INVITE's transaction ended.
    let srv = server_with_agent(|c| c.sip.timers.t1 = Duration::from_millis(25)).await;
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let media = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let uac = RawTrunk::new(
        &sock,
        srv.sip_udp,
        media.local_addr().expect("addr").port(),
        CALLER,
    );
    uac.send(&uac.invite(1, "sendrecv")).await;
    let ok = uac.response_to(1, "INVITE", Duration::from_secs(3)).await;
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    let to = header(&ok, "To").expect("To in the 200 OK");
    uac.send(&uac.in_dialog("ACK", 1, &to)).await;
    // The time under test: 2 s on, the first INVITE's transaction (64·T1 = 1.6 s) is gone.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut reinvite = uac.invite(2, "sendonly");
    reinvite = reinvite.replacen(&uac.to_line(), &format!("To: {to}"), 1);
    uac.send(&reinvite).await;
    let first = uac.response_to(2, "INVITE", Duration::from_secs(2)).await;
    assert!(
        first.starts_with("SIP/2.0 200") && first.contains("a=recvonly"),
        "{first}"
    );
    // No ACK yet: the 200 OK comes again, more than once.
    let mut resent = 0;
    let until = Instant::now() + Duration::from_millis(600);
    while let Some(msg) = uac.recv_until(until).await {
        if msg.starts_with("SIP/2.0 200") && msg.contains("CSeq: 2 INVITE") {
            resent += 1;
        }
    }
    assert!(
        resent >= 2,
        "our 200 OK to the re-INVITE was resent {resent} times in 600 ms without an ACK"
    );
    uac.send(&uac.in_dialog("ACK", 2, &to)).await;
    // An OPTIONS in the dialog reaches the call task after the ACK (one queue): once it is
    // answered, every 200 OK resent before the ACK was taken has come (and is skipped here).
    uac.send(&uac.in_dialog("OPTIONS", 3, &to)).await;
    let options_ok = uac.response_to(3, "OPTIONS", Duration::from_secs(2)).await;
    assert!(options_ok.starts_with("SIP/2.0 200"), "{options_ok}");
    let quiet_until = Instant::now() + Duration::from_millis(300);
    while let Some(msg) = uac.recv_until(quiet_until).await {
        assert!(
            !msg.contains("CSeq: 2 INVITE"),
            "the 200 OK was still resent after the ACK:\n{msg}"
        );
    }
    let call = srv
        .wait_for_call(Duration::from_secs(1), |c| c["state"] != "ended")
        .await
        .unwrap_or_else(|e| panic!("the call did not survive the re-INVITE: {e}"));
    uac.send(&uac.in_dialog("BYE", 4, &to)).await;
    let bye_ok = uac.response_to(4, "BYE", Duration::from_secs(2)).await;
    assert!(bye_ok.starts_with("SIP/2.0 200"), "{bye_ok}");
    srv.wait_for_call(Duration::from_secs(3), |c| {
        c["id"] == call["id"] && c["state"] == "ended"
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    srv.wait_rtp_ports_free(Duration::from_secs(3)).await;
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_answer_to_an_agent_phone_reinvite_is_resent_until_the_phone_acks_it() {
    // The agent's phone is this test (a UDP socket registered as `agent`): it takes the call, puts
    // it on hold with a re-INVITE and holds back its ACK. T1 = 25 ms.
    let srv = server_with_agent(|c| c.sip.timers.t1 = Duration::from_millis(25)).await;
    let phone = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    support::sipp_phone::register(&phone, srv.sip_udp).await;
    let me = phone.local_addr().expect("addr");
    let mut call = TrunkCall::new(CALLER);
    call.info_digits = srv.new_code().await;
    call.await_bye = true;
    let Some((sipp, waiting)) = srv.call_until_waiting(&call, Duration::from_secs(8)).await else {
        return;
    };
    let id = waiting["id"].clone();
    assert_eq!(answer(&srv, &id).await.0, 202);

    let raw = RawTrunk::new(&phone, srv.sip_udp, 0, CALLER);
    let invite = raw
        .request("INVITE", Duration::from_secs(3))
        .await
        .expect("the phone is INVITEd");
    let field = |name: &str| header(&invite, name).unwrap_or_else(|| panic!("{name} in {invite}"));
    let (via, from, to, call_id) = (field("Via"), field("From"), field("To"), field("Call-ID"));
    let our_contact = field("Contact");
    let target = our_contact.trim_start_matches('<').trim_end_matches('>');
    let to = format!("{to};tag=rawphone");
    let sdp = format!(
        "v=0\r\no=- 7 7 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
         a=fmtp:101 0-15\r\na=sendrecv\r\n",
        me.port() + 2
    );
    raw.send(&format!(
        "SIP/2.0 200 OK\r\nVia: {via}\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:agent@{me}>\r\nContent-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    ))
    .await;
    raw.request("ACK", Duration::from_secs(2))
        .await
        .expect("our 200 OK is ACKed");
    srv.wait_for_call(Duration::from_secs(2), |c| {
        c["id"] == id && c["state"] == "connected"
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    let in_dialog = |method: &str, cseq: u32, body: &str| {
        let content = if body.is_empty() {
            String::new()
        } else {
            "Content-Type: application/sdp\r\n".to_owned()
        };
        format!(
            "{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-rawphone-{cseq}\r\n\
             From: {to}\r\nTo: {from}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n\
             Contact: <sip:agent@{me}>\r\nMax-Forwards: 70\r\n{content}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let hold = sdp
        .replace("o=- 7 7", "o=- 7 8")
        .replace("a=sendrecv", "a=sendonly");
    raw.send(&in_dialog("INVITE", 2, &hold)).await;
    let first = raw.response_to(2, "INVITE", Duration::from_secs(2)).await;
    assert!(
        first.starts_with("SIP/2.0 200") && first.contains("a=recvonly"),
        "{first}"
    );
    let mut resent = 0;
    let until = Instant::now() + Duration::from_millis(600);
    while let Some(msg) = raw.recv_until(until).await {
        if msg.starts_with("SIP/2.0 200") && msg.contains("CSeq: 2 INVITE") {
            resent += 1;
        }
    }
    assert!(
        resent >= 2,
        "our 200 OK to the phone's re-INVITE was resent {resent} times in 600 ms without an ACK"
    );
    raw.send(&in_dialog("ACK", 2, "")).await;
    // As on the trunk: an OPTIONS after the ACK; its answer comes after every resent 200 OK.
    raw.send(&in_dialog("OPTIONS", 3, "")).await;
    let options_ok = raw.response_to(3, "OPTIONS", Duration::from_secs(2)).await;
    assert!(options_ok.starts_with("SIP/2.0 200"), "{options_ok}");
    let quiet_until = Instant::now() + Duration::from_millis(300);
    while let Some(msg) = raw.recv_until(quiet_until).await {
        assert!(
            !msg.contains("CSeq: 2 INVITE"),
            "the 200 OK was still resent after the ACK:\n{msg}"
        );
    }
    // Past 64·T1 after the hold, still connected; then the agent hangs up. (The time under test.)
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let held = srv
        .wait_for_call(Duration::from_secs(1), |c| c["id"] == id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(held["state"], "connected", "{held:#}");
    raw.send(&in_dialog("BYE", 4, "")).await;
    let bye_ok = raw.response_to(4, "BYE", Duration::from_secs(2)).await;
    assert!(bye_ok.starts_with("SIP/2.0 200"), "{bye_ok}");
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
