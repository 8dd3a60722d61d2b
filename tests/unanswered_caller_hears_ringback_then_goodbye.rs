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

/// The same call on tokio's paused clock (the call task, the SIP driver and this test read only
/// tokio's clock): the ten seconds of collecting, two minutes of waiting and the goodbye pass in
/// simulated time, each to the millisecond, while the caller (this test: SIP and RTP on loopback)
/// hears silence, then the ringback's cadence, then the goodbye and our BYE.
#[tokio::test(start_paused = true)]
async fn on_a_paused_clock_the_wait_and_the_goodbye_last_exactly_as_configured() {
    use support::raw_sip::{header, response_to, RawTrunk};
    use tokio::time::Instant as Virtual;
    const FIRST_DIGIT: Duration = Duration::from_secs(10);
    const MAX_WAIT: Duration = Duration::from_secs(120);
    const GOODBYE: Duration = Duration::from_secs(3);
    let srv = server::start(1, |c| {
        c.calls.call.collect.first_digit_timeout = FIRST_DIGIT;
        c.calls.call.max_wait = MAX_WAIT;
        c.calls.call.on_max_wait = MaxWaitPolicy::Goodbye;
        // This caller only listens: no RTP from it must not end the call first.
        c.calls.media_timeout = Duration::from_secs(3600);
        // Media threads keep real time: the calls' media runs on the runtime, on its clock.
        c.calls.media_io = veilig_bellen::media_plane::MediaIo::Tokio;
    })
    .await;
    let real = Instant::now();
    let sig = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let ear = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let trunk = RawTrunk::new(
        &sig,
        srv.sip_udp,
        ear.local_addr().expect("addr").port(),
        "+31655558888",
    );
    trunk.send(&trunk.invite(1, "sendrecv")).await;
    let ok = trunk.response_to(1, "INVITE", Duration::from_secs(5)).await;
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    let answered = Virtual::now();
    let to = header(&ok, "To").expect("To in the 200 OK");
    trunk.send(&trunk.in_dialog("ACK", 1, &to)).await;

    // Listen until our BYE, on simulated time (bounded in it, in turns and in real time).
    let end = answered + FIRST_DIGIT + MAX_WAIT + GOODBYE + Duration::from_secs(30);
    let (mut frames, mut tone_frames) = (0u32, 0u32);
    let mut first_tone: Option<Duration> = None;
    let mut bye: Option<(Duration, String)> = None;
    let (mut rtp, mut pcm) = ([0u8; 2048], [0i16; 2048]);
    for _ in 0..100_000 {
        if bye.is_some() || real.elapsed() > Duration::from_secs(60) {
            break;
        }
        tokio::select! {
            received = ear.recv(&mut rtp) => {
                let Ok(n) = received else { continue };
                if n <= 12 || rtp[1] & 0x7f != 8 {
                    continue;
                }
                frames += 1;
                let k = dsp::g711::decode_alaw_into(&rtp[12..n], &mut pcm[..n - 12]);
                if support::tone::frame_share(&pcm[..k], 425.0) > 0.8 {
                    tone_frames += 1;
                    first_tone.get_or_insert(answered.elapsed());
                }
            }
            message = support::raw_sip::recv_until(&sig, end) => match message {
                Some(m) if m.starts_with("BYE ") => bye = Some((answered.elapsed(), m)),
                Some(_) => {}
                None => break,
            },
        }
    }
    let real = real.elapsed();
    eprintln!(
        "paused clock: {frames} frames, {tone_frames} of 425 Hz, the first {first_tone:?} and \
         our BYE {:?} after the answer; {real:?} of real time",
        bye.as_ref().map(|b| b.0)
    );
    let (bye_after, bye) = bye.expect("our BYE came within the simulated wait");
    trunk.send(&response_to(&bye, "200 OK", "", "", "")).await;

    let ringback_from = first_tone.expect("the caller heard the ringback");
    assert!(
        (FIRST_DIGIT..FIRST_DIGIT + Duration::from_millis(100)).contains(&ringback_from),
        "the ringback began {ringback_from:?} after the answer, not when collecting gave up \
         ({FIRST_DIGIT:?})"
    );
    let hung_up = FIRST_DIGIT + MAX_WAIT + GOODBYE;
    assert!(
        (hung_up..hung_up + Duration::from_millis(100)).contains(&bye_after),
        "our BYE came {bye_after:?} after the answer, not after collecting, the maximum wait and \
         the goodbye ({hung_up:?})"
    );
    // 20 ms frames all along; the ringback is 1 s of 425 Hz every 5 s (24 bursts in two minutes),
    // and the goodbye's busy tone adds some.
    let expected = (hung_up.as_millis() / 20) as u32;
    assert!(
        frames + 10 >= expected && frames <= expected + 10,
        "{frames} frames in {hung_up:?}"
    );
    assert!(
        (1200..1200 + 150).contains(&tone_frames),
        "{tone_frames} frames of 425 Hz"
    );
    assert!(
        real < hung_up / 4,
        "{real:?} of real time for {hung_up:?} of simulated time"
    );

    let mut ended = None;
    for _ in 0..200 {
        ended = srv
            .running
            .registry
            .list(std::time::SystemTime::now())
            .into_iter()
            .find(|c| c.state == veilig_bellen::call::CallState::Ended);
        if ended.is_some() {
            break;
        }
        // Simulated time: the release is due at once.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ended = ended.expect("the call shows ended");
    assert_eq!(ended.reason.map(|r| r.as_str()), Some("no_code"));
    srv.wait_rtp_ports_free(Duration::from_secs(3)).await;
    srv.shutdown().await;
}
