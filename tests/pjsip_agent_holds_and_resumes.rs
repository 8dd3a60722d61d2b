//! A PJSIP agent phone (2.15.1, `pjsua2-python`) holds a relayed call and resumes it. PJSIP sends
//! `hold` as a re-INVITE `a=sendonly` (we answer `recvonly`) and `unhold` as one with `a=sendrecv`
//! (we answer `sendrecv`, same ports); at every re-INVITE it builds a new audio stream (new SSRC,
//! its stats start again).
//!
//! - Over UDP: answered, held for about 1.5 s, resumed; after the resume audio goes both ways
//!   through us, told apart by frequency: the caller's 800 Hz reaches the phone's recording, the
//!   phone's 440 Hz reaches the caller, and PJSIP's own counters show our RTP arriving.
//! - A phone without voice activity detection (`--vad off`) keeps streaming silence while it
//!   holds: the caller hears our 425 Hz waiting signal meanwhile, not dead air.
//! - Over TLS with SRTP mandatory (our default `srtp = "offer"` gives TLS phones SDES-SRTP): the
//!   same hold and resume, audio both ways afterwards through SRTP.

use crate::support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::agent::tone_share;
use support::hold::{longest_tone, shows_on_hold, CallerEar};
use support::pjsua::{
    caller_talks, phone_takes_verified_call, pjsip_server, seconds_of_tone, tls_options,
    PjsuaOptions, PjsuaPhone, Srtp,
};
use support::server::TestServer;
use support::sipp::Sipp;
use support::sipp_phone::trunk_rtp_port;
use support::tls::with_tls;

const CALLER: &str = "+31687654321";
/// The caller's voice; the phone's is 440 Hz.
const CALLER_HZ: f64 = 800.0;
/// How long the phone holds.
const HOLD: Duration = Duration::from_millis(1500);

/// A verified caller, answered by the PJSIP phone: (caller's ear socket, sipp, call id, our
/// trunk-side RTP port, PJSIP's `media active` line). `None`: sipp is missing.
async fn connected(
    srv: &TestServer,
    phone: &mut PjsuaPhone,
) -> Option<(tokio::net::UdpSocket, Sipp, Value, u16, String)> {
    let (ear, sipp, id, taken) = phone_takes_verified_call(
        srv,
        phone,
        CALLER,
        "our INVITE never reached the PJSIP phone",
        false,
        |_, _, _| {},
    )
    .await?;
    let our_port = trunk_rtp_port(&sipp.messages()).expect("our SDP answer to the trunk");
    Some((ear, sipp, id, our_port, taken.media))
}

/// The phone holds (`media local-hold`, the list shows `on_hold`).
async fn hold(srv: &TestServer, phone: &mut PjsuaPhone, id: &Value) {
    phone
        .command("hold", Duration::from_secs(3))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", phone.log()));
    phone
        .expect(
            "media local-hold",
            Duration::from_secs(3),
            "PJSIP's hold was not answered",
        )
        .await;
    shows_on_hold(srv, id, true).await;
}

/// The phone resumes (`media active` again, the list no longer shows `on_hold`).
async fn resume(srv: &TestServer, phone: &mut PjsuaPhone, id: &Value) -> String {
    phone
        .command("unhold", Duration::from_secs(3))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", phone.log()));
    let media = phone
        .expect(
            "media active ",
            Duration::from_secs(3),
            "PJSIP's audio did not come back after its unhold",
        )
        .await;
    shows_on_hold(srv, id, false).await;
    media
}

/// PJSIP's RTP counters of its current audio stream: (rx, tx).
async fn stats(phone: &mut PjsuaPhone) -> (u64, u64) {
    phone
        .command("stats", Duration::from_secs(2))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", phone.log()));
    let line = phone
        .events()
        .iter()
        .rev()
        .find(|e| e.starts_with("stats "))
        .cloned()
        .expect("a stats event");
    let n: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(n.len(), 2, "{line}");
    (n[0], n[1])
}

/// After the resume the caller talks 800 Hz for 2 s: the phone must record it, and the caller
/// must hear the phone's 440 Hz.
async fn audio_both_ways_after_resume(
    phone: &mut PjsuaPhone,
    ear: &tokio::net::UdpSocket,
    our_port: u16,
    media: &str,
) {
    let (rx_before, _) = stats(phone).await;
    // Only what the phone records from now on counts (the caller talked before the hold too).
    let recorded_before = phone.recorded_wav().1.len();
    let caller_heard = caller_talks(ear, our_port, CALLER_HZ, Duration::from_secs(2)).await;
    let (rx, tx) = stats(phone).await;
    let (rate, mut phone_heard) = phone.recorded_wav();
    phone_heard.drain(..recorded_before.min(phone_heard.len()));
    let to_caller = seconds_of_tone(&caller_heard, 8000, 440.0);
    let to_phone = seconds_of_tone(&phone_heard, rate, CALLER_HZ);
    eprintln!(
        "after the resume ({media}): the caller heard {to_caller:.1} s of the phone's 440 Hz, the \
         phone heard {to_phone:.1} s of the caller's {CALLER_HZ} Hz; PJSIP's stream: rx \
         {rx_before} -> {rx}, tx {tx}"
    );
    assert!(
        rx >= rx_before + 60,
        "PJSIP's resumed stream received {} of our packets while the caller talked 2 s \
         (rx {rx_before} -> {rx}, tx {tx})\n{}",
        rx.saturating_sub(rx_before),
        phone.log()
    );
    assert!(
        to_phone >= 1.2,
        "after the resume, of the caller's 2 s of {CALLER_HZ} Hz the PJSIP phone recorded \
         {to_phone:.1} s\n{}",
        phone.log()
    );
    assert!(
        to_caller >= 1.2,
        "after the resume, in 2 s the caller heard {to_caller:.1} s of the phone's 440 Hz\n{}",
        phone.log()
    );
}

/// The phone hangs up; the caller gets a BYE and the ports are free again.
async fn hang_up(srv: &TestServer, mut phone: PjsuaPhone, sipp: Sipp) {
    phone.hang_up().await;
    if let Err(e) = sipp.finish().await {
        panic!("the caller did not get the agent's hang-up as a BYE: {e}");
    }
    srv.wait_rtp_ports_free(Duration::from_secs(3)).await;
    phone.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pjsip_holds_and_resumes_and_audio_flows_both_ways_again() {
    let srv = pjsip_server(|_| {}).await;
    let Some(mut phone) = PjsuaPhone::register(PjsuaOptions::new(srv.sip_udp)).await else {
        return;
    };
    let Some((ear, sipp, id, our_port, media)) = connected(&srv, &mut phone).await else {
        return;
    };
    // The caller talks before and all through the hold, as callers do: 2 s, then on through the
    // hold (each talk a stream of its own: `caller_talks` starts at sequence 0 under a new SSRC).
    caller_talks(&ear, our_port, CALLER_HZ, Duration::from_secs(2)).await;
    hold(&srv, &mut phone, &id).await;
    caller_talks(&ear, our_port, CALLER_HZ, HOLD).await;
    let resumed = resume(&srv, &mut phone, &id).await;
    assert_eq!(resumed, media, "the resumed audio differs");
    audio_both_ways_after_resume(&mut phone, &ear, our_port, &resumed).await;
    hang_up(&srv, phone, sipp).await;
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pjsip_streaming_silence_while_holding_leaves_the_caller_our_waiting_signal() {
    let srv = pjsip_server(|_| {}).await;
    let mut options = PjsuaOptions::new(srv.sip_udp);
    options.vad = false;
    let Some(mut phone) = PjsuaPhone::register(options).await else {
        return;
    };
    let Some((ear, sipp, id, our_port, _)) = connected(&srv, &mut phone).await else {
        return;
    };
    let mut ear = CallerEar::start(ear, our_port, Duration::from_secs(15));
    hold(&srv, &mut phone, &id).await;
    let held = Instant::now();
    // The held window the caller's ear is judged on.
    tokio::time::sleep(HOLD + Duration::from_millis(500)).await;
    // PJSIP (VAD off) kept streaming while holding: its silence, and our signal instead of it.
    let (_, heard) = ear.between(held + Duration::from_millis(200), Instant::now());
    let share = tone_share(&heard, 8000.0, 425.0);
    let burst = longest_tone(&heard, 425.0);
    eprintln!(
        "held by a phone without VAD: {:.2} s heard, 425 Hz share {share:.2}, longest 425 Hz \
         burst {burst:.1} s",
        heard.len() as f64 / 8000.0
    );
    assert!(
        heard.len() >= 8000,
        "the held caller heard only {:.2} s in 1.8 s\n{}",
        heard.len() as f64 / 8000.0,
        phone.log()
    );
    assert!(
        share > 0.5 && burst >= 0.8,
        "the held caller heard {share:.2} of our 425 Hz waiting signal (longest burst \
         {burst:.1} s) while the phone streamed silence"
    );
    resume(&srv, &mut phone, &id).await;
    ear.stop().await;
    hang_up(&srv, phone, sipp).await;
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pjsip_over_tls_with_srtp_holds_and_resumes() {
    let certs = tempfile::tempdir().expect("temp dir");
    let dir = certs.path().to_owned();
    let srv = pjsip_server(move |c| with_tls(c, &dir)).await;
    let options = tls_options(&srv, certs.path().join("cert.pem"), Srtp::Mandatory);
    let Some(mut phone) = PjsuaPhone::register(options).await else {
        return;
    };
    let Some((ear, sipp, id, our_port, media)) = connected(&srv, &mut phone).await else {
        return;
    };
    assert!(media.ends_with(" RTP/SAVP"), "{media}");
    let srtp = phone
        .events()
        .iter()
        .find(|e| e.starts_with("srtp "))
        .cloned();
    assert!(
        srtp.as_deref()
            .is_some_and(|s| s.starts_with("srtp active")),
        "{srtp:?}"
    );
    // The caller talks before and all through the hold, as callers do: 2 s, then on through the
    // hold (each talk a stream of its own: `caller_talks` starts at sequence 0 under a new SSRC).
    caller_talks(&ear, our_port, CALLER_HZ, Duration::from_secs(2)).await;
    hold(&srv, &mut phone, &id).await;
    caller_talks(&ear, our_port, CALLER_HZ, HOLD).await;
    let resumed = resume(&srv, &mut phone, &id).await;
    assert!(resumed.ends_with(" RTP/SAVP"), "{resumed}");
    audio_both_ways_after_resume(&mut phone, &ear, our_port, &resumed).await;
    hang_up(&srv, phone, sipp).await;
    srv.shutdown().await;
}
