//! A phone that sends each key press twice — as an RFC 4733 event and as the DTMF tone in the audio
//! it keeps sending beside the events (common with trunks that do not mute the tones): every digit
//! counts once, so the call is verified. Counting a press twice would fill the eight digits after
//! four presses and make the call `unknown_code`.

use crate::support;

use dsp::testsig::{Signal, Tone};
use serde_json::Value;
use std::time::Duration;
use support::pcap::{
    dtmf_call_rtp, merge_streams, payload_type, pcma_call_rtp, to_pcap, DtmfPcapConfig,
};
use support::server;
use support::sipp::TrunkCall;

const CALLER: &str = "+31633334444";

/// A-law audio with the tone of each digit exactly where the RFC 4733 writer puts its event.
fn tones_beside_events(code: &str, cfg: &DtmfPcapConfig) -> Vec<u8> {
    let samples = |d: Duration| (d.as_micros() * 8 / 1000) as usize;
    let mut signal = Signal::new(2833);
    signal.silence(samples(cfg.lead_in));
    for (i, digit) in code.chars().enumerate() {
        signal.tone(Tone::new(digit, -10.0, samples(cfg.digit_duration)));
        signal.silence(samples(if i + 1 == code.len() {
            cfg.tail
        } else {
            cfg.gap
        }));
    }
    let pcm = signal.pcm();
    let mut alaw = vec![0u8; pcm.len()];
    dsp::g711::encode_alaw_into(&pcm, &mut alaw);
    alaw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_press_sent_as_event_and_as_tone_counts_once() {
    let srv = server::start(4, |_| {}).await;
    let code = srv.new_code().await;
    let cfg = DtmfPcapConfig::default();
    let events: Vec<_> = dtmf_call_rtp(&code, &cfg)
        .expect("events")
        .into_iter()
        .filter(|p| payload_type(p) == Some(cfg.event_pt))
        .collect();
    let audio = pcma_call_rtp(&tones_beside_events(&code, &cfg), &cfg);
    let mut call = TrunkCall::new(CALLER);
    call.pcap = Some(to_pcap(&merge_streams(events, audio, cfg.initial_seq)));

    let Some((sipp, waiting)) = srv.call_until_waiting(&call, Duration::from_secs(8)).await else {
        return;
    };
    assert_eq!(waiting["reason"], Value::Null, "{waiting:#}");
    assert_eq!(waiting["verified"], true, "{waiting:#}");
    srv.hang_up_and_check_ended(sipp, &waiting["id"]).await;
    srv.shutdown().await;
}
