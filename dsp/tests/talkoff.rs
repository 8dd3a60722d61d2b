//! Talk-off guards of the DTMF detector (`dsp::dtmf`, issue 13): a tone pair that carries the
//! harmonics of a voice or an instrument is no digit (harmonic guard), nor is a twisted,
//! off-frequency or quiet pair with a third tone beside it (chord guard); the speech and music
//! that fooled the detector before the guards (in linear audio, G.711 and through AMR-NB
//! 4.75 kbit/s) give nothing, and every Q.24 accept condition is still accepted with the guards
//! on. Figures (false digits per hour of speech and music) come from
//! `benches/dtmf_talkoff.sh`.

use dsp::dtmf::{digit_freqs, DtmfDetector, DtmfEvent, COL_FREQS, KEYS, ROW_FREQS};
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

/// A raw 8 kHz s16le fixture from `fixtures/dtmf/` (see its README for where each came from).
fn fixture(name: &str) -> Vec<i16> {
    let path = format!("{}/../fixtures/dtmf/{name}", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path).expect("fixture present");
    bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// No digit in `pcm` through any channel, at several alignments of the sub-blocks (5 ms) to it.
fn assert_no_digit(pcm: &[i16]) {
    for ch in Channel::ALL {
        for skip in (0..40).step_by(8) {
            assert_eq!(digits(&ch.apply(&pcm[skip..])), "", "{ch:?} from {skip}");
        }
    }
}

#[test]
fn the_speech_that_fooled_the_detector_gives_nothing() {
    let pcm = fixture("talkoff_dutch_speech_fooled_the_detector.s16le");
    assert_eq!(pcm.len(), 4800);
    assert_no_digit(&pcm);
}

#[test]
fn the_chord_that_fooled_the_detector_gives_nothing() {
    // Square-wave F5 twice (one gliding down 1.4 %), F♯6 and B6: `3` (697 + 1477 Hz) at 9 dB twist,
    // B6 as strong as F♯6, for 0.44 s before the chord guard.
    let pcm = fixture("talkoff_square_chord_fooled_the_detector.s16le");
    assert_eq!(pcm.len(), 4067);
    assert_no_digit(&pcm);
}

#[test]
fn the_off_frequency_speech_that_fooled_the_detector_gives_nothing() {
    // `*` (941 + 1209 Hz) 1.9 % off, with other sound 12 dB under it.
    let pcm = fixture("talkoff_speech_off_frequency_fooled_the_detector.s16le");
    assert_eq!(pcm.len(), 4800);
    assert_no_digit(&pcm);
}

#[test]
fn the_beating_notes_that_fooled_the_detector_give_nothing() {
    // F5 on 697 Hz, and F6 (1397 Hz) with E6 (1319 Hz) beating as one tone 1.6 % above 1336 Hz: `2`.
    let pcm = fixture("talkoff_beating_notes_fooled_the_detector.s16le");
    assert_eq!(pcm.len(), 3200);
    assert_no_digit(&pcm);
}

#[test]
fn notes_through_amr_nb_that_fooled_the_detector_give_nothing() {
    // Through AMR-NB 4.75 kbit/s an instrument's partials are gone; what is left of two notes near
    // DTMF frequencies is two sines, off frequency or twisted, with the codec's noise beside them.
    for (name, what) in [
        // G5 and E6: `5` (770 + 1336 Hz) 1.4–1.9 % off, tried every 5 ms for 0.3 s.
        ("talkoff_amr_off_notes_fooled_the_detector.s16le", "far off"),
        // A♯5 and E6: `0` (941 + 1336 Hz) 1.1–1.3 % off, 7 dB twist.
        (
            "talkoff_amr_twisted_notes_fooled_the_detector.s16le",
            "twisted, off",
        ),
        // F5 and F♯6 at −33 dBm0: `3` (697 + 1477 Hz) on frequency, 4–8 dB reverse twist.
        ("talkoff_amr_quiet_notes_fooled_the_detector.s16le", "quiet"),
        // A♯5 and F♯6: `#` (941 + 1477 Hz), F♯6's octave 9–16 dB under it, tried every 5 ms.
        ("talkoff_amr_held_notes_fooled_the_detector.s16le", "held"),
    ] {
        let pcm = fixture(name);
        assert_eq!(pcm.len(), 4800, "{what}");
        assert_no_digit(&pcm);
    }
}

#[test]
fn speech_that_fooled_the_detector_through_amr_nb_or_quiet_gives_nothing() {
    // Through AMR-NB 4.75 kbit/s: `1` (697 + 1209 Hz), a pitch harmonic on 697 Hz with the one
    // under it 11 dB down, the pair carrying 79 % of the energy.
    let pcm = fixture("talkoff_amr_speech_fooled_the_detector.s16le");
    assert_eq!(pcm.len(), 4800);
    assert_no_digit(&pcm);
    // Linear, at −38 dBm0 (below the accept range): `A` (697 + 1633 Hz), a pitch harmonic on
    // 697 Hz with the one above it 14 dB down.
    let pcm = fixture("talkoff_quiet_speech_fooled_the_detector.s16le");
    assert_eq!(pcm.len(), 4800);
    assert_no_digit(&pcm);
}

#[test]
fn a_lone_pair_off_frequency_twisted_or_quiet_is_still_a_digit() {
    // What the lone-pair limits judge, at the accept corners, in 30 dB SNR white noise: 1.5 % off
    // (either way, each tone) with 8 dB normal or 4 dB reverse twist, and both tones at −36 dBm0 —
    // 40 ms each, G.711 too.
    let mut misses = Vec::new();
    let mut seed = 100;
    for key in all_keys() {
        let cases = [
            (-10.0, 8.0, 0.015, 0.015),
            (-10.0, -4.0, -0.015, 0.015),
            (-12.0, 8.0, 0.015, -0.015),
            (-36.0, 0.0, 0.0, 0.0),
            (-36.0, 0.0, -0.015, -0.015),
        ];
        for (level, twist, row_error, col_error) in cases {
            seed += 1;
            let mut s = Signal::new(seed);
            let lead = s.rng().int(200, 600) as usize;
            let t = Tone {
                row_error,
                col_error,
                ..Tone::new(key, level, 320).twist(twist)
            };
            s.silence(lead).tone(t).silence(800);
            s.add_noise_snr(&t, 30.0);
            for ch in Channel::ALL {
                if digits(&ch.apply(&s.pcm())) != key.to_string() {
                    misses.push(format!(
                        "{key} {level} dBm0 twist {twist} error {row_error}/{col_error} {ch:?}"
                    ));
                }
            }
        }
    }
    assert!(misses.is_empty(), "{} missed: {misses:?}", misses.len());
}

/// A tone pair (Hz) at `row_dbm0` and `col_dbm0`, with other sines (Hz, dBm0) beside it; `lead`
/// samples of silence before, 100 ms after.
fn pair_with(
    rng: &mut Rng,
    freqs: (f64, f64),
    (row_dbm0, col_dbm0): (f64, f64),
    others: &[(f64, f64)],
    len: usize,
    lead: usize,
) -> Vec<i16> {
    let mut parts = vec![(freqs.0, row_dbm0), (freqs.1, col_dbm0)];
    parts.extend_from_slice(others);
    let parts: Vec<(f64, f64, f64)> = parts
        .into_iter()
        .map(|(f, dbm0)| (f, dbm0_amplitude(dbm0), rng.range(0.0, 2.0 * PI)))
        .collect();
    let mut out = vec![0.0f64; lead];
    out.extend((0..len).map(|n| {
        let t = n as f64 / 8000.0;
        parts
            .iter()
            .map(|&(f, a, ph)| a * (2.0 * PI * f * t + ph).sin())
            .sum::<f64>()
    }));
    out.extend(std::iter::repeat_n(0.0, 800));
    to_pcm(&out)
}

/// The lowest frequency from `lo` to `hi` Hz (10 Hz steps) at least 100 Hz from every DTMF
/// frequency and from every partial the harmonic guard judges of the pair `(fr, fc)` (f/2, 3f/2,
/// 2f, 3f), so that a tone there is judged by the chord guard alone.
fn free_freq(lo: f64, hi: f64, (fr, fc): (f64, f64)) -> Option<f64> {
    let taken: Vec<f64> = ROW_FREQS
        .iter()
        .chain(&COL_FREQS)
        .copied()
        .chain(
            [fr, fc]
                .iter()
                .flat_map(|&f| [0.5, 1.5, 2.0, 3.0].map(|m| m * f)),
        )
        .collect();
    (0..)
        .map(|i| lo + 10.0 * f64::from(i))
        .take_while(|&f| f <= hi)
        .find(|&f| taken.iter().all(|&t| (f - t).abs() >= 100.0))
}

/// Levels of a pair at `twist_db` (positive: row stronger), the stronger tone at `dbm0`.
fn twisted(dbm0: f64, twist_db: f64) -> (f64, f64) {
    if twist_db >= 0.0 {
        (dbm0, dbm0 - twist_db)
    } else {
        (dbm0 + twist_db, dbm0)
    }
}

#[test]
fn a_twisted_pair_with_a_third_tone_as_strong_as_its_weaker_one_is_no_digit() {
    // Two notes of a chord on a row and a column frequency, a third note elsewhere: 7 dB normal or
    // 5.5 dB reverse twist (within the accept limits), the third note as strong as the weaker
    // tone, below the row tone or above the column tone.
    let mut rng = Rng::new(17);
    for key in all_keys() {
        let (fr, fc) = digit_freqs(key).expect("a keypad key");
        let below = free_freq(300.0, fr - 200.0, (fr, fc)).expect("room below every row");
        let above = free_freq(fc + 200.0, 3400.0, (fr, fc)).expect("room above every column");
        for twist in [7.0, -5.5] {
            for third in [below, above] {
                let levels = twisted(-10.0, twist);
                let weaker = levels.0.min(levels.1);
                let lead = rng.int(100, 400) as usize;
                let pcm = pair_with(&mut rng, (fr, fc), levels, &[(third, weaker)], 800, lead);
                for ch in Channel::ALL {
                    let got = digits(&ch.apply(&pcm));
                    assert!(
                        got.is_empty(),
                        "{key} twist {twist} third {third:.0} Hz {ch:?}: {got:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn an_off_frequency_pair_with_a_third_tone_is_no_digit() {
    // 1.3 % off (accepted alone, within the spec's 1.5 %), with a third tone 10 dB under it.
    let mut rng = Rng::new(18);
    for key in all_keys() {
        let (fr, fc) = digit_freqs(key).expect("a keypad key");
        for error in [0.013, -0.013] {
            let freqs = (fr * (1.0 + error), fc * (1.0 + error));
            let lead = rng.int(100, 400) as usize;
            let third = free_freq(fc + 200.0, 3400.0, (fr, fc)).expect("room above every column");
            let pcm = pair_with(
                &mut rng,
                freqs,
                (-12.0, -12.0),
                &[(third, -22.0)],
                800,
                lead,
            );
            for ch in Channel::ALL {
                let got = digits(&ch.apply(&pcm));
                assert!(got.is_empty(), "{key} error {error} {ch:?}: {got:?}");
            }
        }
    }
}

#[test]
fn a_digit_with_weaker_sound_beside_it_is_still_a_digit() {
    // What the chord guard lets be: a twisted pair (7 dB normal, 5.5 dB reverse) with another tone
    // 10 dB under its weaker tone, a balanced pair with one 6 dB under its tones (speech over a
    // digit), and a twisted pair with one as strong as its weaker tone between its two (where
    // AMR-NB puts its products) — 40 ms each, G.711 too.
    let mut rng = Rng::new(19);
    let mut misses = Vec::new();
    for key in all_keys() {
        let (fr, fc) = digit_freqs(key).expect("a keypad key");
        let below = free_freq(300.0, fr - 200.0, (fr, fc)).expect("room below every row");
        let above = free_freq(fc + 200.0, 3400.0, (fr, fc)).expect("room above every column");
        let mut cases = vec![
            (twisted(-10.0, 7.0), above, -27.0),
            (twisted(-10.0, -5.5), below, -25.5),
            ((-15.0, -15.0), above, -21.0),
        ];
        if let Some(between) = free_freq(fr + 150.0, fc - 150.0, (fr, fc)) {
            cases.push((twisted(-10.0, 7.0), between, -17.0));
        }
        for (levels, third, third_dbm0) in cases {
            let lead = rng.int(100, 400) as usize;
            let pcm = pair_with(
                &mut rng,
                (fr, fc),
                levels,
                &[(third, third_dbm0)],
                320,
                lead,
            );
            for ch in Channel::ALL {
                if digits(&ch.apply(&pcm)) != key.to_string() {
                    misses.push(format!(
                        "{key} {levels:?} third {third:.0} Hz {third_dbm0} dBm0 {ch:?}"
                    ));
                }
            }
        }
    }
    assert!(misses.is_empty(), "{} missed: {misses:?}", misses.len());
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
