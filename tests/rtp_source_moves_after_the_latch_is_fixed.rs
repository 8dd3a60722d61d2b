//! A trunk whose RTP source is fixed (past the session's learning window; the media thread has
//! connected the leg's socket to it, so the kernel drops every other sender) moves its RTP to a
//! new port with a re-INVITE: the socket is disconnected again and the digits the trunk then sends
//! from the new port are read. Without that, the kernel would drop the new port's packets and the
//! call would end `no_code`.

use crate::support;

use std::time::Duration;
use support::pcap::{dtmf_call_rtp, pcma_call_rtp, DtmfPcapConfig, PcapPacket, PCMA_SILENCE};
use support::raw_sip::{header, RawTrunk};
use support::server;
use tokio::net::UdpSocket;
use veilig_bellen::call::{CallState, UnverifiedReason};

const CALLER: &str = "+31655557777";

/// Sends `packets` from `socket` to `to`, each at its time from now.
async fn play(socket: &UdpSocket, packets: &[PcapPacket], to: std::net::SocketAddr) {
    let start = tokio::time::Instant::now();
    for p in packets {
        tokio::time::sleep_until(start + p.at).await;
        socket.send_to(&p.payload, to).await.expect("send");
    }
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
    let port = support::sipp_phone::trunk_rtp_port(&ok).expect("our RTP port in the 200 OK");
    let ours = std::net::SocketAddr::from(([127, 0, 0, 1], port));

    // 3.6 s of RTP from the first port: past the 3 s learning window the latch is fixed (and the
    // io_uring media thread connects our socket to that port).
    let silence = [PCMA_SILENCE; 180 * 160];
    play(
        &first,
        &pcma_call_rtp(&silence, &DtmfPcapConfig::default()),
        ours,
    )
    .await;

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
    let start = tokio::time::Instant::now();
    play(
        &moved,
        &dtmf_call_rtp("73194628", &cfg).expect("packets"),
        ours,
    )
    .await;

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
