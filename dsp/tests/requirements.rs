//! DTMF receiver requirements (ITU-T Q.24, ETSI ES 201 235-3), each as a pass test and a reject test,
//! on linear audio and on G.711 A-law and µ-law round-tripped audio, over many random seeds
//! (random phases, noise, alignment). The generator is `dsp::testsig`.

use dsp::dtmf::{DtmfDetector, DtmfEvent};
use dsp::testsig::{code, dbm0_power, Channel, Rng, Signal, Tone};

/// Detected digits (from `Ended` events, which carry start and end).
pub fn detect(pcm: &[i16]) -> Vec<(char, u64, u64)> {
    let mut d = DtmfDetector::new();
    let mut out = Vec::new();
    let mut started: Option<char> = None;
    for chunk in pcm.chunks(160) {
        d.push(chunk);
        while let Some(e) = d.poll_event() {
            match e {
                DtmfEvent::Started { digit, .. } => {
                    assert!(started.is_none(), "two digits started at once");
                    started = Some(digit);
                }
                DtmfEvent::Ended { digit, start, end } => {
                    assert_eq!(
                        started.take(),
                        Some(digit),
                        "Ended without matching Started"
                    );
                    assert!(end > start);
                    out.push((digit, start, end));
                }
            }
        }
    }
    d.finish();
    while let Some(e) = d.poll_event() {
        if let DtmfEvent::Ended { digit, start, end } = e {
            assert_eq!(started.take(), Some(digit));
            out.push((digit, start, end));
        }
    }
    assert!(started.is_none());
    out
}

pub fn digits(pcm: &[i16]) -> String {
    detect(pcm).iter().map(|d| d.0).collect()
}

/// Random code of `n` digits from all 16 keys.
fn random_code(rng: &mut Rng, n: usize) -> String {
    (0..n).map(|_| rng.digit()).collect()
}

/// One digit of `t` with random lead-in (random block alignment), optional white noise at `snr_db`.
fn single(seed: u64, t: Tone, snr_db: Option<f64>) -> Signal {
    let mut s = Signal::new(seed);
    let lead = s.rng().int(200, 600) as usize;
    s.silence(lead).tone(t).silence(800);
    if let Some(snr) = snr_db {
        s.add_noise_snr(&t, snr);
    }
    s
}

/// How many of `seeds` seeds × 3 channels detect exactly the digit of `make(seed)`; returns
/// (hits, trials, a failing example).
fn hit_rate(seeds: u64, make: impl Fn(u64) -> (Signal, String)) -> (usize, usize, Option<String>) {
    let (mut hits, mut n, mut bad) = (0, 0, None);
    for seed in 0..seeds {
        let (sig, want) = make(seed);
        for ch in Channel::ALL {
            let got = digits(&ch.apply(&sig.pcm()));
            n += 1;
            if got == want {
                hits += 1;
            } else if bad.is_none() {
                bad = Some(format!("seed {seed} {ch:?}: want {want:?} got {got:?}"));
            }
        }
    }
    (hits, n, bad)
}

fn assert_all(seeds: u64, make: impl Fn(u64) -> (Signal, String)) {
    let (hits, n, bad) = hit_rate(seeds, make);
    assert_eq!(hits, n, "{hits}/{n}; first failure: {bad:?}");
}

// ---- duration: accept ≥ 40 ms tones with ≥ 40 ms pauses, never report < 20 ms -------------------

#[test]
fn forty_ms_tones_with_forty_ms_pauses_are_all_read() {
    assert_all(50, |seed| {
        let mut rng = Rng::new(seed);
        let want = random_code(&mut rng, 8);
        let level = rng.range(-30.0, -5.0);
        let mut s = code(seed, &want, 40.0, 40.0, level, 37.0 + seed as f64 % 7.0);
        let t = Tone::new('1', level, 1);
        s.add_noise_snr(&t, 25.0);
        (s, want)
    });
}

#[test]
fn twenty_ms_tones_are_never_reported() {
    assert_all(50, |seed| {
        let mut s = Signal::new(seed);
        let level = s.rng().range(-30.0, -3.0);
        for _ in 0..8 {
            let d = s.rng().digit();
            let lead = s.rng().int(300, 400) as usize;
            s.silence(lead).tone_untracked(Tone::new(d, level, 160));
        }
        s.silence(400);
        (s, String::new())
    });
}

// ---- frequency error: accept ±1.5 %, reject ±3.5 % --------------------------------------------------

#[test]
fn frequency_error_of_one_and_a_half_percent_is_accepted() {
    assert_all(50, |seed| {
        let mut rng = Rng::new(seed);
        let d = rng.digit();
        let (er, ec) = (
            if rng.uniform() < 0.5 { 0.015 } else { -0.015 },
            if rng.uniform() < 0.5 { 0.015 } else { -0.015 },
        );
        let t = Tone {
            row_error: er,
            col_error: ec,
            ..Tone::new(d, rng.range(-30.0, -6.0), 400)
        };
        (single(seed, t, Some(30.0)), d.to_string())
    });
}

#[test]
fn frequency_error_of_three_and_a_half_percent_is_rejected() {
    assert_all(50, |seed| {
        let mut rng = Rng::new(seed);
        let d = rng.digit();
        let e = if rng.uniform() < 0.5 { 0.035 } else { -0.035 };
        // Either tone off (the other nominal), or both.
        let t = match seed % 3 {
            0 => Tone {
                row_error: e,
                ..Tone::new(d, -15.0, 800)
            },
            1 => Tone {
                col_error: e,
                ..Tone::new(d, -15.0, 800)
            },
            _ => Tone::new(d, -15.0, 800).freq_error(e),
        };
        (single(seed, t, Some(30.0)), String::new())
    });
}

// ---- twist: accept 8 dB normal and 4 dB reverse, at the limit, every time ---------------------------

#[test]
fn normal_twist_of_eight_db_is_accepted_every_time() {
    assert_all(50, |seed| {
        let mut rng = Rng::new(seed);
        let d = rng.digit();
        let t = Tone::new(d, rng.range(-25.0, -3.0), 320).twist(8.0);
        (single(seed, t, Some(20.0)), d.to_string())
    });
}

#[test]
fn reverse_twist_of_four_db_is_accepted_every_time() {
    assert_all(50, |seed| {
        let mut rng = Rng::new(seed);
        let d = rng.digit();
        let t = Tone::new(d, rng.range(-25.0, -3.0), 320).twist(-4.0);
        (single(seed, t, Some(20.0)), d.to_string())
    });
}

#[test]
fn excessive_twist_is_rejected() {
    // Not a Q.24 requirement, but the receiver has limits: 16 dB normal / 10 dB reverse never pass.
    assert_all(30, |seed| {
        let mut rng = Rng::new(seed);
        let d = rng.digit();
        let tw = if seed % 2 == 0 { 16.0 } else { -10.0 };
        let t = Tone::new(d, -10.0, 800).twist(tw);
        (single(seed, t, Some(30.0)), String::new())
    });
}

// ---- level: accept 0 … −36 dBm0 per tone, reject below −55 dBm0 --------------------------------------

#[test]
fn levels_from_zero_to_minus_36_dbm0_are_accepted() {
    assert_all(40, |seed| {
        let mut rng = Rng::new(seed);
        let d = rng.digit();
        let level = match seed % 4 {
            0 => 0.0,
            1 => -36.0,
            _ => rng.range(-36.0, 0.0),
        };
        (
            single(seed, Tone::new(d, level, 400), Some(30.0)),
            d.to_string(),
        )
    });
}

#[test]
fn levels_below_minus_55_dbm0_are_rejected() {
    assert_all(40, |seed| {
        let mut rng = Rng::new(seed);
        let d = rng.digit();
        let level = rng.range(-70.0, -55.0);
        (single(seed, Tone::new(d, level, 1600), None), String::new())
    });
}

// ---- noise: accept at 15 dB SNR ------------------------------------------------------------------

#[test]
fn fifteen_db_snr_white_noise_is_accepted() {
    assert_all(100, |seed| {
        let mut rng = Rng::new(seed);
        let want = random_code(&mut rng, 4);
        let level = rng.range(-30.0, -6.0);
        let mut s = code(seed, &want, 50.0, 50.0, level, 60.0);
        s.add_noise_snr(&Tone::new('1', level, 1), 15.0);
        (s, want)
    });
}

#[test]
fn noise_alone_never_yields_a_digit() {
    assert_all(30, |seed| {
        let mut s = Signal::new(seed);
        let level = -60.0 + 2.0 * seed as f64;
        s.silence(16_000);
        if seed % 2 == 0 {
            s.add_white_noise(dbm0_power(level));
        } else {
            s.add_pink_noise(dbm0_power(level));
        }
        (s, String::new())
    });
}

// ---- talk-off: no digit from speech-like or music-like signals; a digit over them is found -----------

/// Voiced-speech-like signal: a glottal pulse train with a gliding pitch through two formant
/// resonators that move between vowels, with unvoiced noise bursts.
pub fn speechlike(rng: &mut Rng, len: usize, dbm0: f64) -> Vec<f64> {
    let mut out = Vec::with_capacity(len);
    let mut f0 = rng.range(90.0, 260.0);
    let mut phase = 0.0f64;
    let (mut y1, mut y2, mut z1, mut z2) = (0.0f64, 0.0, 0.0, 0.0);
    let mut formants = (rng.range(300.0, 900.0), rng.range(900.0, 2500.0));
    let mut seg = 0usize;
    let mut voiced = true;
    for _ in 0..len {
        if seg == 0 {
            seg = rng.int(400, 1600) as usize;
            formants = (rng.range(300.0, 900.0), rng.range(900.0, 2500.0));
            f0 = (f0 * rng.range(0.85, 1.18)).clamp(80.0, 300.0);
            voiced = rng.uniform() < 0.8;
        }
        seg -= 1;
        f0 += rng.normal() * 0.05;
        phase += f0 / 8000.0;
        let excitation = if voiced {
            if phase >= 1.0 {
                phase -= 1.0;
                1.0
            } else {
                0.0
            }
        } else {
            0.3 * rng.normal()
        };
        let res = |f: f64, bw: f64| {
            let r = (-std::f64::consts::PI * bw / 8000.0).exp();
            (
                2.0 * r * (2.0 * std::f64::consts::PI * f / 8000.0).cos(),
                -r * r,
            )
        };
        let (a1, a2) = res(formants.0, 80.0);
        let (b1, b2) = res(formants.1, 120.0);
        let y = excitation + a1 * y1 + a2 * y2;
        y2 = y1;
        y1 = y;
        let z = y + b1 * z1 + b2 * z2;
        z2 = z1;
        z1 = z;
        out.push(y + 0.5 * z);
    }
    let p = out.iter().map(|x| x * x).sum::<f64>() / len as f64;
    let g = (dbm0_power(dbm0) / p).sqrt();
    out.iter().map(|x| x * g).collect()
}

/// Music-like signal: notes of harmonic-rich tones (3–5 harmonics) in chords of two or three notes of
/// the equal-tempered scale, 100–400 ms each.
pub fn musiclike(rng: &mut Rng, len: usize, dbm0: f64) -> Vec<f64> {
    let mut out = vec![0.0; len];
    let mut at = 0;
    while at < len {
        let dur = (rng.int(800, 3200) as usize).min(len - at);
        let voices = rng.int(2, 3);
        for _ in 0..voices {
            let semitone = rng.int(0, 36) as f64;
            let f = 110.0 * 2f64.powf(semitone / 12.0);
            let harmonics = rng.int(3, 5);
            for h in 1..=harmonics {
                let fh = f * h as f64;
                if fh > 3800.0 {
                    break;
                }
                let a = 1.0 / h as f64;
                let ph = rng.range(0.0, 6.3);
                for n in 0..dur {
                    let env = (-(n as f64) / 2000.0).exp();
                    out[at + n] +=
                        a * env * (2.0 * std::f64::consts::PI * fh * n as f64 / 8000.0 + ph).sin();
                }
            }
        }
        at += dur;
    }
    let p = out.iter().map(|x| x * x).sum::<f64>() / len as f64;
    let g = (dbm0_power(dbm0) / p).sqrt();
    out.iter().map(|x| x * g).collect()
}

#[test]
pub fn speechlike_and_musiclike_signals_yield_no_digit() {
    let (mut fired, mut n) = (0, 0);
    for seed in 0..40 {
        let mut rng = Rng::new(seed);
        let level = rng.range(-30.0, -8.0);
        let sig = if seed % 2 == 0 {
            speechlike(&mut rng, 80_000, level)
        } else {
            musiclike(&mut rng, 80_000, level)
        };
        let pcm = dsp::testsig::to_pcm(&sig);
        for ch in Channel::ALL {
            n += 1;
            let got = digits(&ch.apply(&pcm));
            if !got.is_empty() {
                fired += 1;
                eprintln!("seed {seed} {ch:?}: {got}");
            }
        }
    }
    assert_eq!(fired, 0, "talk-off in {fired} of {n} 10 s signals");
}

#[test]
fn digits_held_during_speech_are_found() {
    assert_all(30, |seed| {
        let mut rng = Rng::new(seed);
        let want = random_code(&mut rng, 4);
        let level = rng.range(-20.0, -8.0);
        let mut s = code(seed, &want, 80.0, 80.0, level, 200.0);
        let speech = speechlike(&mut rng, s.len(), level - 12.0);
        for (x, y) in s.samples.iter_mut().zip(speech) {
            *x += y;
        }
        (s, want)
    });
}

// ---- repeated digits and drop-outs -------------------------------------------------------------------

#[test]
fn equal_digits_forty_ms_apart_are_two_digits() {
    assert_all(50, |seed| {
        let mut rng = Rng::new(seed);
        let d = rng.digit();
        let level = rng.range(-30.0, -6.0);
        let mut s = Signal::new(seed);
        let lead = rng.int(100, 500) as usize;
        let t = Tone::new(d, level, rng.int(320, 600) as usize);
        s.silence(lead).tone(t).silence(320).tone(t).silence(600);
        s.add_noise_snr(&t, 20.0);
        (s, format!("{d}{d}"))
    });
}

#[test]
fn twenty_ms_dropout_inside_a_tone_is_not_a_split() {
    assert_all(50, |seed| {
        let mut rng = Rng::new(seed);
        let d = rng.digit();
        let level = rng.range(-30.0, -6.0);
        let mut s = Signal::new(seed);
        let lead = rng.int(100, 500) as usize;
        let t = Tone::new(d, level, 800);
        let at = rng.int(200, 440) as usize;
        s.silence(lead).tone_with_dropout(t, at, 160).silence(600);
        s.add_noise_snr(&t, 20.0);
        (s, d.to_string())
    });
}

// ---- latency and timing ---------------------------------------------------------------------------

#[test]
fn started_is_reported_within_45_ms_of_the_onset() {
    for seed in 0..50 {
        let mut rng = Rng::new(seed);
        let d = rng.digit();
        let t = Tone::new(d, rng.range(-30.0, -3.0), 800);
        let sig = single(seed, t, Some(30.0));
        let onset = sig.truth[0].start;
        for ch in Channel::ALL {
            let pcm = ch.apply(&sig.pcm());
            let mut det = DtmfDetector::new();
            let mut seen = None;
            for chunk in pcm.chunks(8) {
                det.push(chunk);
                if let Some(DtmfEvent::Started { digit, .. }) = det.poll_event() {
                    assert_eq!(digit, d);
                    seen = Some(det.position());
                    break;
                }
            }
            let at = seen.unwrap_or_else(|| panic!("seed {seed} {ch:?}: no Started"));
            assert!(
                at <= onset + 360,
                "seed {seed} {ch:?}: Started {} ms after onset",
                (at - onset) / 8
            );
        }
    }
}

#[test]
fn start_and_end_positions_are_accurate_to_a_few_ms() {
    let mut worst = 0u64;
    for seed in 0..60 {
        let mut rng = Rng::new(seed);
        let d = rng.digit();
        let t = Tone::new(d, rng.range(-30.0, -3.0), rng.int(320, 1200) as usize);
        let sig = single(seed, t, Some(if seed % 2 == 0 { 30.0 } else { 15.0 }));
        let truth = sig.truth[0];
        for ch in Channel::ALL {
            let got = detect(&ch.apply(&sig.pcm()));
            assert_eq!(got.len(), 1, "seed {seed} {ch:?}: {got:?}");
            let (_, start, end) = got[0];
            worst = worst
                .max(start.abs_diff(truth.start))
                .max(end.abs_diff(truth.end));
            assert!(
                start.abs_diff(truth.start) <= 32,
                "seed {seed} {ch:?}: start {start} vs {}",
                truth.start
            );
            assert!(
                end.abs_diff(truth.end) <= 32,
                "seed {seed} {ch:?}: end {end} vs {}",
                truth.end
            );
        }
    }
    eprintln!("worst start/end error {worst} samples");
}

// ---- robustness ---------------------------------------------------------------------------------

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_input_in_arbitrary_chunks_never_panics(
            samples in proptest::collection::vec(any::<i16>(), 0..4000),
            chunk in 1usize..400,
        ) {
            let mut d = DtmfDetector::new();
            for c in samples.chunks(chunk) {
                d.push(c);
                while d.poll_event().is_some() {}
            }
            d.finish();
            while d.poll_event().is_some() {}
            prop_assert_eq!(d.position(), samples.len() as u64);
        }

        #[test]
        fn white_or_pink_noise_at_any_level_yields_no_digit(seed in any::<u64>(), dbm0 in -70.0f64..3.0, pink in any::<bool>()) {
            let mut s = Signal::new(seed);
            s.silence(8000);
            if pink { s.add_pink_noise(dbm0_power(dbm0)); } else { s.add_white_noise(dbm0_power(dbm0)); }
            prop_assert_eq!(digits(&s.pcm()), "");
        }
    }
}
