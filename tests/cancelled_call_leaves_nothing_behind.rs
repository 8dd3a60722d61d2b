//! A trunk that CANCELs its INVITE while our 200 OK is on its way (we answer at once, so a CANCEL can
//! only race the answer): whichever wins — `487` to the INVITE, or our `200` followed by the trunk's
//! ACK and BYE (RFC 3261 §9.1) — no call stays behind: every listed call is `ended`, the RTP port is
//! free, and the next call is taken (with `max_calls = 1` and one RTP port pair, a leftover would
//! turn it into a 503).
//!
//! The trunk here is a tiny hand-written UAC on a UDP socket rather than SIPp: a SIPp scenario cannot
//! branch on which of the two racing answers arrives, and this test needs to vary the CANCEL's timing.

use crate::support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::server::{self, TestServer};
use tokio::net::UdpSocket;

/// Races run; the CANCEL follows the INVITE after `i` × 2 ms.
const RACES: u32 = 10;

#[derive(Debug, Default)]
struct Tally {
    answered: u32,
    cancelled: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_racing_our_answer_leaves_no_call_and_no_port_behind() {
    let srv = server::start(1, |c| c.calls.max_calls = 1).await;
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind UAC");
    let media = UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind UAC media");
    let media_port = media.local_addr().expect("addr").port();
    let mut tally = Tally::default();
    let started = Instant::now();
    for i in 0..RACES {
        let answered = race(&sock, srv.sip_udp, media_port, i).await;
        if answered {
            tally.answered += 1;
        } else {
            tally.cancelled += 1;
        }
        no_live_call_left(&srv).await;
    }
    eprintln!("{tally:?} in {:?}", started.elapsed());
    assert_eq!(tally.answered + tally.cancelled, RACES);
    srv.shutdown().await;
}

/// Every listed call is ended and the RTP port can be bound again (bounded wait).
async fn no_live_call_left(srv: &TestServer) {
    let start = Instant::now();
    loop {
        let calls = srv.calls().await;
        let live: Vec<_> = calls.iter().filter(|c| c["state"] != "ended").collect();
        // The call's routing entry too: it is what `max_calls` counts, and it goes a moment
        // after the call shows ended and its port is free (the next race's INVITE would get 503).
        let tasks = srv.running.calls.live_calls();
        if live.is_empty() && srv.rtp_ports_free() && tasks == 0 {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "a call, its RTP port or its task stayed behind ({tasks} tasks): {live:#?}"
        );
        // The back-off of this bounded wait.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One INVITE + CANCEL; completes the transaction or dialog the way the answer requires. Returns
/// whether our INVITE was answered (200) rather than cancelled (487).
async fn race(sock: &UdpSocket, server: SocketAddr, media_port: u16, i: u32) -> bool {
    let me = sock.local_addr().expect("addr");
    let call_id = format!("race-{i}-{}@127.0.0.1", std::process::id());
    let branch = format!("z9hG4bK-race-{i}-{}", std::process::id());
    let from = format!("From: <sip:+3160000002{}@{me}>;tag=uac{i}", i % 10);
    let to = format!("To: <sip:+31850000000@{server}>");
    let ruri = format!("sip:+31850000000@{server}");
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {media_port} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n"
    );
    let invite = format!(
        "INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={branch}\r\n{from}\r\n{to}\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:uac@{me}>\r\nMax-Forwards: 70\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    let cancel = format!(
        "CANCEL {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={branch}\r\n{from}\r\n{to}\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 CANCEL\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    send(sock, server, &invite).await;
    if i > 0 {
        // The race under test: each round the CANCEL follows the INVITE 2 ms later.
        tokio::time::sleep(Duration::from_millis(u64::from(i) * 2)).await;
    }
    send(sock, server, &cancel).await;

    let mut invite_final: Option<(u16, String)> = None;
    let mut cancel_final: Option<u16> = None;
    let deadline = Instant::now() + Duration::from_secs(3);
    while invite_final.is_none() || cancel_final.is_none() {
        let msg = recv(sock, deadline).await.unwrap_or_else(|| {
            panic!("race {i}: INVITE answer {invite_final:?}, CANCEL answer {cancel_final:?} within 3 s")
        });
        let Some((status, method, to_line)) = parse_response(&msg) else {
            continue;
        };
        match (method.as_str(), status) {
            ("INVITE", 100..=199) => {}
            ("INVITE", _) => invite_final = Some((status, to_line)),
            ("CANCEL", _) => cancel_final = Some(status),
            _ => {}
        }
    }
    let (status, to_with_tag) = invite_final.unwrap_or_default();
    assert!(
        matches!(cancel_final, Some(200 | 481)),
        "race {i}: CANCEL answered {cancel_final:?}"
    );
    match status {
        200 => {
            let ack = format!(
                "ACK {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={branch}-ack\r\n{from}\r\n{to_with_tag}\r\n\
                 Call-ID: {call_id}\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            );
            send(sock, server, &ack).await;
            let bye = format!(
                "BYE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={branch}-bye\r\n{from}\r\n{to_with_tag}\r\n\
                 Call-ID: {call_id}\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            );
            send(sock, server, &bye).await;
            loop {
                let msg = recv(sock, deadline + Duration::from_secs(2))
                    .await
                    .unwrap_or_else(|| panic!("race {i}: no answer to our BYE"));
                if let Some((status, method, _)) = parse_response(&msg) {
                    if method == "BYE" {
                        assert_eq!(status, 200, "race {i}: BYE answered {status}");
                        return true;
                    }
                }
            }
        }
        487 => {
            let ack = format!(
                "ACK {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={branch}\r\n{from}\r\n{to_with_tag}\r\n\
                 Call-ID: {call_id}\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            );
            send(sock, server, &ack).await;
            false
        }
        other => panic!("race {i}: INVITE answered {other}, expected 200 or 487"),
    }
}

async fn send(sock: &UdpSocket, to: SocketAddr, msg: &str) {
    sock.send_to(msg.as_bytes(), to).await.expect("send");
}

async fn recv(sock: &UdpSocket, deadline: Instant) -> Option<String> {
    let mut buf = vec![0u8; 8192];
    let n = tokio::time::timeout_at(deadline.into(), sock.recv(&mut buf))
        .await
        .ok()?
        .ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// `(status, CSeq method, To header line)` of a response; `None` for requests.
fn parse_response(msg: &str) -> Option<(u16, String, String)> {
    let mut lines = msg.split("\r\n");
    let status = lines
        .next()?
        .strip_prefix("SIP/2.0 ")?
        .get(..3)?
        .parse()
        .ok()?;
    let mut method = String::new();
    let mut to = String::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        match name.trim().to_ascii_lowercase().as_str() {
            "cseq" => {
                method = value
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_owned()
            }
            "to" | "t" => to = format!("To:{value}"),
            _ => {}
        }
    }
    Some((status, method, to))
}
