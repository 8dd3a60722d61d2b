//! Talk-off guards of the DTMF detector (`dsp::dtmf`, issue 13): a tone pair that carries the
//! harmonics of a voice or an instrument is no digit, the speech that fooled the detector before
//! the guards gives nothing, and every Q.24 accept condition is still accepted with the guards on.
//! Figures (false digits per hour of speech and music) come from `benches/dtmf_talkoff.sh`.

use dsp::dtmf::{digit_freqs, DtmfDetector, DtmfEvent, KEYS};
use dsp::testsig::{dbm0_amplitude, to_pcm, Channel, Rng, Signal, Tone};
use std::f64::consts::PI;

/// Digits reported (from `Ended` events), in order.
fn digits(pcm: &[i16]) -> String {
    let mut d = DtmfDetector::new();
    let mut out = String::new();
    let mut take = |d: &mut DtmfDetector| {
        while let Some(e) = d.poll_event() {
            if let DtmfEvent::Ended { digit, .. } = e {
                out.push(digit);
            }
        }
    };
    for frame in pcm.chunks(160) {
        d.push(frame);
        take(&mut d);
    }
    d.finish();
    take(&mut d);
    out
}

/// A tone pair (Hz) at `dbm0` per tone, each with partials at `multiples` of its frequency, each
/// partial `partial_db` relative to its tone; `lead` samples of silence before, 100 ms after.
fn tone_with_partials(
    rng: &mut Rng,
    freqs: (f64, f64),
    dbm0: f64,
    len: usize,
    lead: usize,
    multiples: &[f64],
    partial_db: f64,
) -> Vec<i16> {
    let a = dbm0_amplitude(dbm0);
    let h = a * 10f64.powf(partial_db / 20.0);
    let phases: Vec<f64> = (0..2 + 2 * multiples.len())
        .map(|_| rng.range(0.0, 2.0 * PI))
        .collect();
    let mut out = vec![0.0f64; lead];
    for n in 0..len {
        let t = n as f64 / 8000.0;
        let mut x = 0.0;
        for (i, f) in [freqs.0, freqs.1].into_iter().enumerate() {
            x += a * (2.0 * PI * f * t + phases[i]).sin();
            for (j, m) in multiples.iter().enumerate() {
                x += h * (2.0 * PI * m * f * t + phases[2 + 2 * j + i]).sin();
            }
        }
        out.push(x);
    }
    out.extend(std::iter::repeat_n(0.0, 800));
    to_pcm(&out)
}

fn all_keys() -> impl Iterator<Item = char> {
    KEYS.into_iter().flatten()
}

#[test]
fn a_tone_with_a_strong_second_harmonic_is_rejected() {
    let mut rng = Rng::new(13);
    for key in all_keys() {
        let freqs = digit_freqs(key).expect("a keypad key");
        for level in [-6.0, -15.0, -25.0] {
            let lead = rng.int(100, 400) as usize;
            let pcm = tone_with_partials(&mut rng, freqs, level, 800, lead, &[2.0], -6.0);
            for ch in Channel::ALL {
                let got = digits(&ch.apply(&pcm));
                assert!(got.is_empty(), "{key} at {level} dBm0, {ch:?}: {got:?}");
            }
        }
    }
}

#[test]
fn harmonics_a_sender_may_have_do_not_hide_the_digit() {
    // ETSI ES 201 235-2 keeps a sender's unwanted components ≥ 20 dB down.
    let mut rng = Rng::new(14);
    for key in all_keys() {
        let freqs = digit_freqs(key).expect("a keypad key");
        let lead = rng.int(100, 400) as usize;
        let pcm = tone_with_partials(&mut rng, freqs, -10.0, 400, lead, &[2.0, 3.0], -20.0);
        for ch in Channel::ALL {
            assert_eq!(digits(&ch.apply(&pcm)), key.to_string(), "{key} {ch:?}");
        }
    }
}

#[test]
fn a_voice_with_a_pitch_harmonic_on_each_tone_is_no_digit() {
    // The tones as the 2nd harmonic of a lower note (an octave under, music) and as a pitch with the
    // next harmonics (speech): partials at f/2, 3f/2 and at 2f, 3f, each 8 dB under the tone (the pair
    // still carries 76 % of the energy, which passed before the guard).
    let mut rng = Rng::new(15);
    for key in all_keys() {
        let freqs = digit_freqs(key).expect("a keypad key");
        for multiples in [&[0.5, 1.5][..], &[2.0, 3.0][..]] {
            let pcm = tone_with_partials(&mut rng, freqs, -12.0, 800, 300, multiples, -8.0);
            for ch in Channel::ALL {
                let got = digits(&ch.apply(&pcm));
                assert!(got.is_empty(), "{key} {multiples:?} {ch:?}: {got:?}");
            }
        }
    }
}

#[test]
fn an_octave_is_no_digit() {
    // 833.5 and 1667 Hz: `C` (852 + 1633) with both tones 2.1 % off, and one note's 2nd harmonic.
    let mut rng = Rng::new(16);
    let pcm = tone_with_partials(&mut rng, (833.5, 1667.0), -10.0, 1600, 200, &[], -99.0);
    for ch in Channel::ALL {
        assert_eq!(digits(&ch.apply(&pcm)), "", "{ch:?}");
    }
}

#[test]
fn the_speech_that_fooled_the_detector_gives_nothing() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/dtmf/talkoff_dutch_speech_fooled_the_detector.s16le"
    );
    let bytes = std::fs::read(path).expect("fixture present");
    let pcm: Vec<i16> = bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    assert_eq!(pcm.len(), 4800);
    for ch in Channel::ALL {
        // Every alignment of the sub-blocks (5 ms) to the speech.
        for skip in (0..40).step_by(8) {
            assert_eq!(digits(&ch.apply(&pcm[skip..])), "", "{ch:?} from {skip}");
        }
    }
}

#[test]
fn every_accept_condition_is_still_accepted() {
    // Q.24 / ES 201 235-3 accept corners, combined: 40 ms tones; levels −3…−36 dBm0 (the weaker tone
    // of a twisted pair at −36 at the least), twist 8 dB normal / 4 dB reverse, frequency error
    // ±1.5 %, linear and G.711.
    let mut seed = 0;
    let mut misses = Vec::new();
    for key in all_keys() {
        for level in [-3.0, -20.0, -28.0] {
            for twist in [0.0, 8.0, -4.0] {
                for error in [0.0, 0.015, -0.015] {
                    seed += 1;
                    let mut s = Signal::new(seed);
                    let lead = s.rng().int(200, 600) as usize;
                    let t = Tone::new(key, level, 320).twist(twist).freq_error(error);
                    s.silence(lead).tone(t).silence(800);
                    for ch in Channel::ALL {
                        if digits(&ch.apply(&s.pcm())) != key.to_string() {
                            misses.push(format!(
                                "{key} {level} dBm0 twist {twist} error {error} {ch:?}"
                            ));
                        }
                    }
                }
            }
        }
    }
    assert!(misses.is_empty(), "{} missed: {misses:?}", misses.len());
}
