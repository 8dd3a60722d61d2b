//! The 50 link codes of the AMR-NB round trip test (`tests/dtmf_real_audio.rs`, `amr_codes(4733)`:
//! 8 digits each, 70–100 ms tones and pauses, −20…−10 dBm0, 0–3 dB twist), as raw 8 kHz s16le, and
//! how many of them the detector reads back fully correct from a file. With sox in between this is
//! that test's figure without building the application: `benches/dtmf_talkoff.sh` prints it beside
//! the talk-off counts.
//!
//! Usage: `dtmf_amr_codes write OUT.s16le [SEED]` then, after the codec round trip,
//! `dtmf_amr_codes score BACK.s16le [SEED]` (prints `correct/50`). SEED (default: the test's, 4733)
//! makes 50 other codes the same way.

use dsp::dtmf::{DtmfDetector, DtmfEvent};
use dsp::testsig::amr_codes;
use std::process::ExitCode;

/// Seed of the test's codes.
const SEED: u64 = 4733;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seed = match args.get(2).map(|s| s.parse::<u64>()) {
        None => SEED,
        Some(Ok(seed)) => seed,
        Some(Err(e)) => {
            eprintln!("dtmf_amr_codes: seed: {e}");
            return ExitCode::from(2);
        }
    };
    let (sig, codes) = amr_codes(seed);
    match &args[..args.len().min(2)] {
        [verb, path] if verb == "write" => {
            let bytes: Vec<u8> = sig.pcm().iter().flat_map(|s| s.to_le_bytes()).collect();
            if let Err(e) = std::fs::write(path, bytes) {
                eprintln!("dtmf_amr_codes: {path}: {e}");
                return ExitCode::from(2);
            }
        }
        [verb, path] if verb == "score" => {
            let bytes = match std::fs::read(path) {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("dtmf_amr_codes: {path}: {e}");
                    return ExitCode::from(2);
                }
            };
            let pcm: Vec<i16> = bytes
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect();
            let got = detect(&pcm);
            let correct = codes
                .iter()
                .filter(|(code, begin, end)| {
                    let read: String = got
                        .iter()
                        .filter(|d| d.1 + 800 >= *begin && d.1 < *end + 800)
                        .map(|d| d.0)
                        .collect();
                    &read == code
                })
                .count();
            println!("{correct}/{}", codes.len());
        }
        _ => {
            eprintln!("usage: dtmf_amr_codes write OUT.s16le [SEED] | score BACK.s16le [SEED]");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}

/// Digits with their estimated (start, end), fed in 160-sample frames.
fn detect(pcm: &[i16]) -> Vec<(char, u64, u64)> {
    let mut d = DtmfDetector::new();
    let mut out = Vec::new();
    let mut take = |d: &mut DtmfDetector| {
        while let Some(e) = d.poll_event() {
            if let DtmfEvent::Ended { digit, start, end } = e {
                out.push((digit, start, end));
            }
        }
    };
    for chunk in pcm.chunks(160) {
        d.push(chunk);
        take(&mut d);
    }
    d.finish();
    take(&mut d);
    out
}
