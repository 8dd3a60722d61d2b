//! A trunk that encrypts its media (an SBC interconnect offering `RTP/SAVP` with SDES keys, RFC
//! 4568) gets SRTP back when `sip.trunk_srtp = "accept"`: our 200 OK answers with its crypto tag
//! and our own key, and the link code sent as SRTP-protected RFC 4733 events verifies the call.
//! The same digits sent in clear on that leg are not digits at all: rejected and counted, the call
//! stays unverified until the protected ones come. Without the setting, the SRTP offer gets 488.

use crate::support;

use std::net::SocketAddr;
use std::time::Duration;

use sip::rtp::srtp::SrtpStreams;
use sip::sdp::crypto::CryptoAttribute;
use sip::sdp::{SrtpKey, SrtpParams, SrtpSuite};
use support::server::{self, TestServer};
use support::tls::rejected_srtp;
use tokio::net::UdpSocket;

const CALLER: &str = "+31611112222";

fn invite(from: SocketAddr, to: SocketAddr, media: u16, key: &SrtpKey) -> String {
    let crypto = CryptoAttribute {
        tag: 1,
        suite: SrtpSuite::AesCm128HmacSha1_80,
        key: key.clone(),
    };
    let body = format!(
        "v=0\r\no=sbc 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {media} RTP/SAVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n\
         a=crypto:{}\r\n",
        crypto.value(),
        ip = from.ip()
    );
    format!(
        "INVITE sip:{number}@{to} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {from};branch=z9hG4bK-srtp-trunk\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{CALLER}@{ip}>;tag=sbc-1\r\n\
         To: <sip:{number}@{to}>\r\n\
         Call-ID: srtp-trunk-call\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:sbc@{from}>\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {len}\r\n\r\n{body}",
        number = server::TENANT_NUMBER,
        ip = from.ip(),
        len = body.len(),
    )
}

/// The final response to our INVITE (retransmitting it on T1), as text.
async fn final_response(sock: &UdpSocket, to: SocketAddr, message: &str) -> String {
    let mut buf = vec![0u8; 65536];
    for _ in 0..6 {
        sock.send_to(message.as_bytes(), to).await.expect("send");
        let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
        while let Ok(Ok((n, _))) = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await
        {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let status: u16 = text.get(8..11).and_then(|s| s.parse().ok()).unwrap_or(0);
            if status >= 200 {
                return text;
            }
        }
    }
    panic!("no final response to the INVITE");
}

fn line_value<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .map(str::trim)
}

/// RFC 4733 packets for `digits`: per digit three updates (the first with the marker) and three
/// copies of the end, 20 ms apart in media time, each digit its own event timestamp.
fn digit_packets(digits: &str) -> Vec<Vec<u8>> {
    let mut packets = Vec::new();
    let mut seq: u16 = 1;
    for (i, d) in digits.chars().enumerate() {
        let event = d.to_digit(10).expect("a decimal digit") as u8;
        let timestamp = 8000 + i as u32 * 1600;
        for step in 0..6u16 {
            let end = step >= 3;
            let duration = 160 * (step.min(3) + 1);
            let mut p = vec![0x80, if step == 0 { 0x80 | 101 } else { 101 }];
            p.extend_from_slice(&seq.to_be_bytes());
            p.extend_from_slice(&timestamp.to_be_bytes());
            p.extend_from_slice(&0x5eed_0001u32.to_be_bytes());
            p.extend_from_slice(&[event, if end { 0x80 | 10 } else { 10 }]);
            p.extend_from_slice(&duration.to_be_bytes());
            packets.push(p);
            seq = seq.wrapping_add(1);
        }
    }
    packets
}

async fn send_paced(sock: &UdpSocket, to: SocketAddr, packets: &[Vec<u8>]) {
    for p in packets {
        sock.send_to(p, to).await.expect("send RTP");
        // RTP's own pace: a packet every 20 ms.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn place(srv: &TestServer, key: &SrtpKey) -> (UdpSocket, UdpSocket, String) {
    let sig = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let media = UdpSocket::bind("127.0.0.1:0").await.expect("bind media");
    let from = sig.local_addr().expect("addr");
    let port = media.local_addr().expect("addr").port();
    let response = final_response(&sig, srv.sip_udp, &invite(from, srv.sip_udp, port, key)).await;
    (sig, media, response)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_srtp_trunk_is_answered_with_srtp_and_its_protected_digits_verify() {
    let srv = server::start(2, |c| c.calls.trunk_srtp = true).await;
    let code = srv.new_code().await;
    let trunk_key = SrtpKey::from_bytes([0x42; 30]);
    let (_sig, media, ok) = place(&srv, &trunk_key).await;
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    assert!(ok.contains("RTP/SAVP"), "our answer is not SRTP:\n{ok}");
    let ours = line_value(&ok, "a=crypto:")
        .and_then(CryptoAttribute::parse)
        .expect("our answer carries one crypto line");
    assert_eq!((ours.tag, ours.suite), (1, SrtpSuite::AesCm128HmacSha1_80));
    assert_ne!(ours.key, trunk_key, "we answered with our own key");
    let port: u16 = line_value(&ok, "m=audio ")
        .and_then(|m| m.split(' ').next()?.parse().ok())
        .expect("our m= line");
    let rtp_to = SocketAddr::from(([127, 0, 0, 1], port));

    // The code in clear: not SRTP, so no digit at all.
    let before = rejected_srtp();
    let packets = digit_packets(&code);
    send_paced(&media, rtp_to, &packets).await;
    // Each is rejected and counted as it comes: once all are, none can have made a digit.
    support::wait_until(Duration::from_secs(3), || {
        rejected_srtp() >= before + packets.len() as f64
    })
    .await;
    assert!(
        rejected_srtp() >= before + packets.len() as f64,
        "clear RTP on the SRTP trunk leg was not rejected"
    );
    assert!(
        srv.calls().await.iter().all(|c| c["verified"] != true),
        "clear digits verified an SRTP call"
    );

    // The code protected with the trunk's key: verified.
    let mut trunk = SrtpStreams::new(&SrtpParams {
        suite: SrtpSuite::AesCm128HmacSha1_80,
        ours: trunk_key,
        theirs: ours.key,
    })
    .expect("contexts");
    let protected: Vec<Vec<u8>> = digit_packets(&code)
        .iter()
        .map(|p| {
            // A new SSRC: the clear attempt above never reached the RTP session, but be plain.
            let mut p = p.clone();
            p[8..12].copy_from_slice(&0x5eed_0002u32.to_be_bytes());
            trunk.protect(&p).expect("protect").to_vec()
        })
        .collect();
    send_paced(&media, rtp_to, &protected).await;
    let verified = srv
        .wait_for_call(Duration::from_secs(5), |c| c["verified"] == true)
        .await;
    assert!(verified.is_ok(), "{verified:?}");
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_trunk_srtp_an_srtp_offer_gets_488() {
    let srv = server::start(2, |_| {}).await;
    let (_sig, _media, response) = place(&srv, &SrtpKey::from_bytes([0x42; 30])).await;
    assert!(response.starts_with("SIP/2.0 488"), "{response}");
    srv.shutdown().await;
}
