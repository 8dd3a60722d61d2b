//! A phone (or trunk) that only sends the code as in-band DTMF tones in the audio: SIPp plays a pcap
//! of PCMA packets carrying the eight tone pairs (generated with the `dsp` test-signal generator, no
//! RFC 4733 events), and the call is verified from the tones alone.

use crate::support;

use dsp::testsig::{Signal, Tone};
use serde_json::Value;
use std::time::Duration;
use support::pcap::{pcma_call_rtp, to_pcap, DtmfPcapConfig};
use support::server;
use support::sipp::TrunkCall;

const CALLER: &str = "+31611112222";

/// A-law audio of `code` as DTMF tones: 300 ms silence, then per digit 100 ms tone at -10 dBm0 and
/// 100 ms silence, then 300 ms silence.
fn tones_alaw(code: &str) -> Vec<u8> {
    let mut signal = Signal::new(4733);
    signal.silence(2400);
    for digit in code.chars() {
        signal.tone(Tone::new(digit, -10.0, 800)).silence(800);
    }
    signal.silence(2400);
    let pcm = signal.pcm();
    let mut alaw = vec![0u8; pcm.len()];
    dsp::g711::encode_alaw_into(&pcm, &mut alaw);
    alaw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_with_a_code_in_inband_tones_shows_up_verified() {
    let srv = server::start(4, |_| {}).await;
    let code = srv.new_code().await;
    let mut call = TrunkCall::new(CALLER);
    call.pcap = Some(to_pcap(&pcma_call_rtp(
        &tones_alaw(&code),
        &DtmfPcapConfig::default(),
    )));

    let Some((sipp, waiting)) = srv.call_until_waiting(&call, Duration::from_secs(8)).await else {
        return;
    };
    assert_eq!(waiting["verified"], true, "{waiting:#}");
    assert_eq!(waiting["reason"], Value::Null);
    assert_eq!(waiting["caller"], CALLER);
    assert_eq!(
        waiting["attributes"].as_array().map(Vec::len),
        Some(server::expected_attributes().len())
    );

    srv.hang_up_and_check_ended(sipp, &waiting["id"]).await;
    srv.shutdown().await;
}
