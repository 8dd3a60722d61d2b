//! A trunk whose RTP source is fixed (past the session's learning window; the media thread has
//! connected the leg's socket to it, so the kernel drops every other sender) moves its RTP to a
//! new port with a re-INVITE: the socket is disconnected again and the digits the trunk then sends
//! from the new port are read. Without that, the kernel would drop the new port's packets and the
//! call would end `no_code`.

use crate::support;

use std::time::Duration;
use support::pcap::{dtmf_call_rtp, DtmfPcapConfig};
use support::raw_sip::{header, RawTrunk};
use support::server;
use tokio::net::UdpSocket;
use veilig_bellen::call::{CallState, UnverifiedReason};

const CALLER: &str = "+31655557777";

/// The `m=audio` port of the SDP in `message`.
fn sdp_port(message: &str) -> u16 {
    message
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no m=audio in {message}"))
}

/// One PCMA packet of silence.
fn silence(seq: u16) -> Vec<u8> {
    let ts = u32::from(seq) * 160;
    let mut p = vec![0x80, 8];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&0x0A0A_0A0Au32.to_be_bytes());
    p.extend_from_slice(&[0xD5; 160]);
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trunk_moving_its_rtp_after_the_latch_is_fixed_still_gets_its_digits_read() {
    let srv = server::start(1, |c| {
        c.calls.call.collect.first_digit_timeout = Duration::from_secs(15);
    })
    .await;
    let sig = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let first = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let moved = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let first_port = first.local_addr().expect("addr").port();
    let moved_port = moved.local_addr().expect("addr").port();
    let trunk = RawTrunk::new(&sig, srv.sip_udp, first_port, CALLER);
    trunk.send(&trunk.invite(1, "sendrecv")).await;
    let ok = trunk.response_to(1, "INVITE", Duration::from_secs(5)).await;
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    let to = header(&ok, "To").expect("To in the 200 OK");
    trunk.send(&trunk.in_dialog("ACK", 1, &to)).await;
    let ours = std::net::SocketAddr::from(([127, 0, 0, 1], sdp_port(&ok)));

    // 3.6 s of RTP from the first port: past the 3 s learning window the latch is fixed (and the
    // io_uring media thread connects our socket to that port).
    let mut interval = tokio::time::interval(Duration::from_millis(20));
    for seq in 0..180u16 {
        interval.tick().await;
        first.send_to(&silence(seq), ours).await.expect("send");
    }

    // The trunk moves its RTP to the other port.
    trunk.send(&trunk.reinvite(2, &to, moved_port)).await;
    let ok = trunk.response_to(2, "INVITE", Duration::from_secs(5)).await;
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    trunk.send(&trunk.in_dialog("ACK", 2, &to)).await;

    // From the new port: 8 RFC 4733 digits of a code nobody made (read: `unknown_code`).
    let cfg = DtmfPcapConfig {
        ssrc: 0x0B0B_0B0B,
        lead_in: Duration::from_millis(200),
        ..DtmfPcapConfig::default()
    };
    let packets = dtmf_call_rtp("73194628", &cfg).expect("packets");
    let start = tokio::time::Instant::now();
    for p in packets {
        tokio::time::sleep_until(start + p.at).await;
        moved.send_to(&p.payload, ours).await.expect("send");
    }

    let call = loop {
        let calls = srv.running.registry.list(std::time::SystemTime::now());
        if let Some(c) = calls
            .into_iter()
            .find(|c| c.reason.is_some() || c.state == CallState::Ended)
        {
            break c;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the call was not classified within 10 s of the move"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        call.reason,
        Some(UnverifiedReason::UnknownCode),
        "the 8 digits sent from the new port were read (not `no_code`): {:?}",
        call.state
    );
    trunk.send(&trunk.in_dialog("BYE", 3, &to)).await;
    srv.shutdown().await;
}
