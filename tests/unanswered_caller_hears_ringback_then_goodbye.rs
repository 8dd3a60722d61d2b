//! A caller nobody takes: while waiting the caller hears the Dutch ringback (425 Hz) in the RTP we
//! send; after the maximum wait (shortened here) the goodbye signal plays and we hang up with BYE.
//! The call then shows `ended` and its RTP port is free.

use crate::support;

use std::time::{Duration, Instant};
use support::server;
use support::sipp::TrunkCall;
use tokio::net::UdpSocket;
use veilig_bellen::call::machine::MaxWaitPolicy;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_caller_hears_ringback_then_goodbye_and_is_hung_up() {
    let srv = server::start(4, |c| {
        c.calls.call.collect.first_digit_timeout = Duration::from_millis(300);
        c.calls.call.max_wait = Duration::from_millis(1500);
        c.calls.call.on_max_wait = MaxWaitPolicy::Goodbye;
    })
    .await;
    let ear = UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind caller media");
    let mut call = TrunkCall::new("+31655556666");
    call.await_bye = true;
    call.media_port = Some(ear.local_addr().expect("addr").port());
    let Some(sipp) = support::sipp::Sipp::start(srv.sip_udp, &call) else {
        return;
    };

    // Listen to what the caller hears until our BYE ends the scenario (bounded).
    let started = Instant::now();
    let mut packets = 0u32;
    let mut tone_frames = 0u32;
    let mut buf = [0u8; 2048];
    let mut pcm = [0i16; 2048];
    while started.elapsed() < Duration::from_secs(8) {
        match tokio::time::timeout(Duration::from_millis(500), ear.recv(&mut buf)).await {
            Ok(Ok(n)) if n > 12 && buf[1] & 0x7f == 8 => {
                packets += 1;
                let payload = &buf[12..n];
                let k = dsp::g711::decode_alaw_into(payload, &mut pcm[..payload.len()]);
                if support::tone::frame_share(&pcm[..k], 425.0) > 0.8 {
                    tone_frames += 1;
                }
            }
            Ok(_) => {}
            Err(_) if packets > 0 => break,
            Err(_) => {}
        }
    }
    let messages = sipp
        .finish()
        .await
        .unwrap_or_else(|e| panic!("we did not hang up the waiting caller: {e}"));
    assert!(messages.contains("BYE sip:"), "our BYE reached the trunk");
    eprintln!(
        "caller heard {packets} PCMA packets, {tone_frames} with 425 Hz, in {:?}",
        started.elapsed()
    );
    assert!(
        packets >= 100,
        "comfort and goodbye audio for ≥ 2 s, got {packets} packets"
    );
    assert!(
        tone_frames >= 40,
        "425 Hz ringback/busy tone heard in {tone_frames} frames"
    );

    let ended = srv
        .wait_for_call(Duration::from_secs(2), |c| c["state"] == "ended")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ended["reason"], "no_code");
    srv.wait_rtp_ports_free(Duration::from_secs(3)).await;
    srv.shutdown().await;
}

/// While the code comes in we already send RTP (A-law silence, every 20 ms): trunks hang up answered
/// calls without media, and the caller's NAT binding must stay open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_entering_the_code_receives_a_steady_silence_stream() {
    let srv = server::start(4, |c| {
        c.calls.call.collect.first_digit_timeout = Duration::from_secs(5);
    })
    .await;
    let ear = UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind caller media");
    let mut call = TrunkCall::new("+31655557777");
    call.media_port = Some(ear.local_addr().expect("addr").port());
    let Some(sipp) = support::sipp::Sipp::start(srv.sip_udp, &call) else {
        return;
    };
    let mut buf = [0u8; 2048];
    let mut first: Option<Instant> = None;
    let mut packets = 0u32;
    let mut loud = 0u32;
    let listen = Instant::now();
    while listen.elapsed() < Duration::from_secs(4) {
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(200), ear.recv(&mut buf)).await
        {
            if n <= 12 || buf[1] & 0x7f != 8 {
                continue;
            }
            let t = *first.get_or_insert_with(Instant::now);
            if t.elapsed() > Duration::from_secs(2) {
                break;
            }
            packets += 1;
            // A-law silence is 0xD5 (or 0x55); anything far from it is sound.
            loud += u32::from(buf[12..n].iter().any(|&b| (b ^ 0x55) & 0x7f > 2));
        }
    }
    let calls = srv.calls().await;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["state"], "collecting", "still entering the code");
    assert!(
        (85..=110).contains(&packets),
        "about 100 packets in 2 s of collecting, got {packets}"
    );
    assert_eq!(loud, 0, "only silence while collecting");
    sipp.hang_up();
    let _ = sipp.finish().await;
    srv.shutdown().await;
}
