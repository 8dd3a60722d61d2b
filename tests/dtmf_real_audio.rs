//! The in-band DTMF detector on real audio made by other programs: speech from `espeak-ng` (talk-off,
//! and digits keyed over speech) and tones passed through the AMR-NB mobile voice codec via `sox`.
//!
//! Needs `sox` (with AMR-NB support, Debian `libsox-fmt-all`) and `espeak-ng`. With `CI` set a missing
//! tool fails the test; locally it is skipped with a note.

use dsp::dtmf::{DtmfDetector, DtmfEvent};
use dsp::testsig::{amr_codes, dbm0_power, Signal, Tone};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let base = std::env::temp_dir();
        let prefix = format!("vb-dtmf-{name}-");
        // A run killed mid-test (e.g. by a fail-fast runner) cannot clean up: sweep its stale dirs.
        if let Ok(entries) = std::fs::read_dir(&base) {
            for e in entries.flatten() {
                let stale = e.metadata().and_then(|m| m.modified()).is_ok_and(|t| {
                    t.elapsed()
                        .is_ok_and(|age| age > std::time::Duration::from_secs(3600))
                });
                if stale && e.file_name().to_string_lossy().starts_with(&prefix) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = base.join(format!("{prefix}{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whether `tool` runs; with `CI` set a missing tool is a failure.
fn have(tool: &str, probe: &[&str]) -> bool {
    let ok = Command::new(tool)
        .args(probe)
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} is missing (install it; CI must run this test)"
        );
        eprintln!("note: {tool} not found, skipping");
    }
    ok
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn write_wav(path: &Path, pcm: &[i16]) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("create wav");
    for &s in pcm {
        w.write_sample(s).expect("write wav");
    }
    w.finalize().expect("finish wav");
}

pub fn read_wav(path: &Path) -> Vec<i16> {
    let mut r = hound::WavReader::open(path).expect("open wav");
    let spec = r.spec();
    assert_eq!(
        (spec.sample_rate, spec.channels, spec.bits_per_sample),
        (8000, 1, 16),
        "{path:?}"
    );
    r.samples::<i16>()
        .collect::<Result<_, _>>()
        .expect("read wav")
}

/// Digits with their estimated (start, end).
pub fn detect(pcm: &[i16]) -> Vec<(char, u64, u64)> {
    let mut d = DtmfDetector::new();
    let mut out = Vec::new();
    for chunk in pcm.chunks(160) {
        d.push(chunk);
        while let Some(e) = d.poll_event() {
            if let DtmfEvent::Ended { digit, start, end } = e {
                out.push((digit, start, end));
            }
        }
    }
    d.finish();
    while let Some(e) = d.poll_event() {
        if let DtmfEvent::Ended { digit, start, end } = e {
            out.push((digit, start, end));
        }
    }
    out
}

/// Speech from espeak-ng, resampled to 8 kHz by sox.
fn speech(dir: &TempDir, voice: &str, text: &str, i: usize) -> Vec<i16> {
    let raw = dir.path(&format!("speech{i}.wav"));
    let low = dir.path(&format!("speech{i}-8k.wav"));
    run(Command::new("espeak-ng")
        .args(["-v", voice, "-w"])
        .arg(&raw)
        .arg(text));
    run(Command::new("sox")
        .arg(&raw)
        .args(["-r", "8000", "-c", "1", "-b", "16"])
        .arg(&low));
    read_wav(&low)
}

const SENTENCES: &[(&str, &str)] = &[
    ("nl", "Goedemiddag, u spreekt met de gemeente. Mijn telefoonnummer is nul zes, een twee, drie vier, vijf zes, zeven acht."),
    ("nl+f2", "Ik wil graag een afspraak maken voor een nieuw paspoort. Mijn postcode is twaalf vierendertig AB, huisnummer negen."),
    ("nl+m3", "Hallo? Hoort u mij? De verbinding is slecht. Kunt u het nummer herhalen: vier zeven één negen?"),
    ("en", "Good afternoon. My phone number is zero six one two three four five six seven eight, and my code is nine nine four."),
    ("en-us+f3", "Press one for opening hours, two for parking permits, or hold the line for an operator. Thank you for calling."),
    ("en+m7", "Seven hundred and seventy, eight hundred and fifty two, nine hundred and forty one, one thousand two hundred and nine."),
];

#[test]
fn speech_yields_no_digit_and_digits_over_speech_are_found() {
    if !have("espeak-ng", &["--version"]) || !have("sox", &["--version"]) {
        return;
    }
    let dir = TempDir::new("speech");
    let mut speech_seconds = 0.0;
    for (i, (voice, text)) in SENTENCES.iter().enumerate() {
        let pcm = speech(&dir, voice, text, i);
        speech_seconds += pcm.len() as f64 / 8000.0;
        // Talk-off at the level espeak makes and 10 dB louder (clipping) and 20 dB softer.
        for gain in [1.0, 3.16, 0.1] {
            let scaled: Vec<i16> = pcm
                .iter()
                .map(|&s| (f64::from(s) * gain).clamp(-32768.0, 32767.0) as i16)
                .collect();
            let got = detect(&scaled);
            assert!(got.is_empty(), "{voice} ×{gain}: talk-off {got:?}");
        }
        // A code keyed over the speech (speech at −20 dBm0 mean, tones at −12 dBm0 per tone).
        let mean_sq = pcm.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / pcm.len() as f64;
        let g = (dbm0_power(-20.0) / mean_sq).sqrt();
        let mut s = Signal::new(i as u64);
        let code: String = (0..8).map(|_| s.rng().digit()).collect();
        s.silence(1600);
        for d in code.chars() {
            s.tone(Tone::new(d, -12.0, 640)).silence(640);
        }
        for (k, x) in s.samples.iter_mut().enumerate() {
            *x += g * f64::from(pcm[k % pcm.len()]);
        }
        let got: String = detect(&s.pcm()).iter().map(|d| d.0).collect();
        assert_eq!(got, code, "{voice}: digits over speech");
    }
    eprintln!("talk-off: {speech_seconds:.1} s of speech at three levels, no digit");
}

/// Fully correct codes after an AMR-NB round trip in `mode` (0 = 4.75 kbit/s … 7 = 12.2 kbit/s).
fn amr_correct_codes(dir: &TempDir, mode: u32) -> usize {
    let (sig, codes) = amr_codes(4733);
    let input = dir.path(&format!("codes{mode}.wav"));
    let amr = dir.path(&format!("codes{mode}.amr-nb"));
    let back = dir.path(&format!("back{mode}.wav"));
    write_wav(&input, &sig.pcm());
    run(Command::new("sox")
        .arg(&input)
        .args(["-r", "8000", "-C", &mode.to_string()])
        .arg(&amr));
    run(Command::new("sox")
        .arg(&amr)
        .args(["-r", "8000", "-b", "16"])
        .arg(&back));
    let got = detect(&read_wav(&back));
    let mut correct = 0;
    for (code, begin, end) in &codes {
        let read: String = got
            .iter()
            .filter(|d| d.1 + 800 >= *begin && d.1 < *end + 800)
            .map(|d| d.0)
            .collect();
        if &read == code {
            correct += 1;
        }
    }
    correct
}

/// 40 long held digits (0.25–1 s): the codec's level swings must not split or drop them.
fn amr_long_digits_read(dir: &TempDir, mode: u32) -> (String, String) {
    let mut s = Signal::new(77);
    s.silence(4000);
    for _ in 0..40 {
        let d = s.rng().digit();
        let len = s.rng().int(2000, 8000) as usize;
        let level = s.rng().range(-20.0, -10.0);
        let twist = s.rng().range(0.0, 3.0);
        s.tone(Tone::new(d, level, len).twist(twist)).silence(1600);
    }
    let input = dir.path(&format!("long{mode}.wav"));
    let amr = dir.path(&format!("long{mode}.amr-nb"));
    let back = dir.path(&format!("longback{mode}.wav"));
    write_wav(&input, &s.pcm());
    run(Command::new("sox")
        .arg(&input)
        .args(["-r", "8000", "-C", &mode.to_string()])
        .arg(&amr));
    run(Command::new("sox")
        .arg(&amr)
        .args(["-r", "8000", "-b", "16"])
        .arg(&back));
    let want = s.truth.iter().map(|t| t.digit).collect();
    let got = detect(&read_wav(&back)).iter().map(|d| d.0).collect();
    (want, got)
}

#[test]
fn long_digits_survive_the_amr_nb_mobile_codec_unsplit() {
    if !have("sox", &["--version"]) {
        return;
    }
    let dir = TempDir::new("amr-long");
    for mode in [0, 7] {
        let (want, got) = amr_long_digits_read(&dir, mode);
        assert_eq!(got, want, "AMR-NB mode {mode}");
    }
}

#[test]
fn codes_survive_the_amr_nb_mobile_codec() {
    if !have("sox", &["--version"]) {
        return;
    }
    let dir = TempDir::new("amr");
    let low = amr_correct_codes(&dir, 0);
    let high = amr_correct_codes(&dir, 7);
    eprintln!("AMR-NB: {low}/50 codes fully correct at 4.75 kbit/s, {high}/50 at 12.2 kbit/s");
    assert!(high >= 47, "12.2 kbit/s: {high}/50 (measured 49)");
    assert!(
        low >= 42,
        "4.75 kbit/s: {low}/50 (measured 48; peers read 16–22)"
    );
}
