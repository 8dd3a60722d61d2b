//! Someone who knows our RTP ports sprays packets at them in the middle of a connected call — from
//! another host (127.0.0.2) and from another port of the caller's and the phone's own host: nobody
//! hears those packets, and the call's audio keeps flowing between the caller and the agent's phone,
//! not towards the spoofer (RTP latches once, in a learning window at the start of the stream, and
//! only to the SDP address or the signalling IP; `sip::rtp`).
//!
//! The caller is this test (SIPp for the SIP, a test socket `ear` for the RTP it sends and hears);
//! the agent's phone is a SIPp phone that echoes RTP, so what the caller says comes back through
//! both of our legs. A spoofed packet sent to the trunk leg would reach the phone and come back
//! echoed; one sent to the agent leg would go straight to the caller: either way the ear would hear
//! the spoofer's payload.

use crate::support;

use std::time::{Duration, Instant};
use support::agent::{answer, server_with_agent};
use support::sipp::{audio_ports, TrunkCall};
use support::sipp_phone::{answer_at_once, caller_packet, talk, trunk_rtp_port, SippPhone};
use tokio::net::UdpSocket;

const CALLER: &str = "+31611112222";
/// What the caller says, and what the spoofers say.
const CALLER_MARK: u8 = 0x2a;
const SPOOF_MARK: u8 = 0x5a;

/// A PCMA packet of 20 ms of `mark` from a spoofer's own stream (its SSRC, consecutive sequence
/// numbers: what the old re-latching rule would have followed).
fn spoofed_packet(ssrc: u32, seq: u16) -> Vec<u8> {
    let mut packet = vec![0x80, 8];
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    packet.extend_from_slice(&ssrc.to_be_bytes());
    packet.extend(std::iter::repeat_n(SPOOF_MARK, 160));
    packet
}

/// The payload mark of a 20 ms PCMA packet, if it is one with a uniform payload.
fn mark_of(packet: &[u8]) -> Option<u8> {
    let payload = packet.get(12..)?;
    (packet.len() == 12 + 160 && packet[1] & 0x7f == 8 && payload.iter().all(|&b| b == payload[0]))
        .then_some(payload[0])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_rtp_mid_call_is_not_heard_and_does_not_move_the_stream() {
    let srv = server_with_agent(|_| {}).await;
    let Some(phone) = SippPhone::register(srv.sip_udp, &answer_at_once(), true).await else {
        return;
    };
    let ear = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let mut call = TrunkCall::new(CALLER);
    call.info_digits = srv.new_code().await;
    call.media_port = Some(ear.local_addr().expect("addr").port());
    let Some((sipp, waiting)) = srv.call_until_waiting(&call, Duration::from_secs(8)).await else {
        return;
    };
    let id = waiting["id"].clone();
    assert_eq!(answer(&srv, &id).await.0, 202);
    srv.wait_for_call(Duration::from_secs(5), |c| {
        c["id"] == id && c["state"] == "connected"
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    // Audio flows: the caller's voice comes back through both legs and the phone's echo.
    let trunk_port = trunk_rtp_port(&sipp.messages()).expect("our SDP answer to the trunk");
    let agent_port = *audio_ports(&phone.messages(), "INVITE sip:agent@")
        .first()
        .expect("our SDP offer to the phone");
    let echoed = talk(&ear, trunk_port, Duration::from_millis(1500)).await;
    assert!(
        echoed >= 50,
        "only {echoed} packets came back before the spoofing"
    );
    // Past the learning window of both streams (3 s from their first packets): the time under test.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Spoofers at another host and at other ports of the caller's and the phone's host, each with
    // one steady stream (one SSRC, consecutive sequence numbers) at each of our two ports, while the
    // caller goes on talking.
    let mut spoofers = Vec::new();
    for host in ["127.0.0.2", "127.0.0.1"] {
        spoofers.push(UdpSocket::bind((host, 0)).await.expect("bind a spoofer"));
    }
    let mut heard_caller = 0u32;
    let mut heard_spoof = 0u32;
    let mut reached_spoofers = 0u32;
    let mut buf = [0u8; 2048];
    let start = Instant::now();
    let mut next = tokio::time::Instant::now();
    let mut seq = 1000u16;
    while start.elapsed() < Duration::from_millis(2000) {
        ear.send_to(&caller_packet(CALLER_MARK), ("127.0.0.1", trunk_port))
            .await
            .expect("caller RTP");
        for (i, spoofer) in spoofers.iter().enumerate() {
            for (j, port) in [trunk_port, agent_port].into_iter().enumerate() {
                let ssrc = 0x5b00_0000 + (i * 2 + j) as u32;
                spoofer
                    .send_to(&spoofed_packet(ssrc, seq), ("127.0.0.1", port))
                    .await
                    .expect("spoofed RTP");
            }
        }
        seq = seq.wrapping_add(1);
        next += Duration::from_millis(20);
        while let Ok(Ok((n, _))) = tokio::time::timeout_at(next, ear.recv_from(&mut buf)).await {
            match mark_of(&buf[..n]) {
                Some(CALLER_MARK) => heard_caller += 1,
                Some(SPOOF_MARK) => heard_spoof += 1,
                _ => {}
            }
        }
        for spoofer in &spoofers {
            while spoofer.try_recv_from(&mut buf).is_ok() {
                reached_spoofers += 1;
            }
        }
    }
    assert_eq!(heard_spoof, 0, "the caller heard the spoofers");
    assert_eq!(
        reached_spoofers, 0,
        "our RTP went to a spoofer: the stream moved"
    );
    assert!(
        heard_caller >= 60,
        "only {heard_caller} of the caller's packets came back while the spoofers sent"
    );

    // And afterwards the call is as it was.
    let echoed = talk(&ear, trunk_port, Duration::from_millis(1000)).await;
    assert!(
        echoed >= 30,
        "only {echoed} packets came back after the spoofing"
    );
    srv.hang_up_and_check_ended(sipp, &id).await;
    phone
        .finish()
        .await
        .unwrap_or_else(|e| panic!("the phone did not get the caller's hang-up: {e}"));
    srv.wait_rtp_ports_free(Duration::from_secs(3)).await;
    srv.shutdown().await;
}
