//! `veilig-bellen dtmf` as a user runs it: the built binary on generated recordings (WAV PCM16, A-law
//! and µ-law WAV, raw s16le on stdin, raw A-law), checking the exact output format, digit order and
//! timing, and that every kind of bad input gives exit 2, one stderr line and an empty stdout.

use std::f64::consts::TAU;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_veilig-bellen");

/// A digit sequence laid out in time: (digit, start sample, end sample).
struct Script {
    samples: Vec<i16>,
    truth: Vec<(char, usize, usize)>,
}

fn freqs(d: char) -> (f64, f64) {
    let keys = ["123A", "456B", "789C", "*0#D"];
    let rows = [697.0, 770.0, 852.0, 941.0];
    let cols = [1209.0, 1336.0, 1477.0, 1633.0];
    for (r, k) in keys.iter().enumerate() {
        if let Some(c) = k.find(d) {
            return (rows[r], cols[c]);
        }
    }
    panic!("not a DTMF key: {d}")
}

/// `digits` each `tone_ms` long at −10 dBm0 per tone, separated by `gap_ms` of low noise, with
/// `lead_ms` of noise before the first.
fn script(digits: &str, lead_ms: usize, tone_ms: usize, gap_ms: usize) -> Script {
    // G.711's 0 dBm0 sine peaks 3.14 dB below full scale (not π).
    #[allow(clippy::approx_constant)]
    let amp = 32768.0 * 10f64.powf((-10.0 - 3.14) / 20.0);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut noise = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % 61) as f64 - 30.0
    };
    let mut samples: Vec<i16> = (0..lead_ms * 8).map(|_| noise() as i16).collect();
    let mut truth = Vec::new();
    for d in digits.chars() {
        let (fr, fc) = freqs(d);
        let start = samples.len();
        for n in 0..tone_ms * 8 {
            let t = n as f64 / 8000.0;
            let v = amp * ((TAU * fr * t).sin() + (TAU * fc * t + 1.0).sin()) + noise();
            samples.push(v.round() as i16);
        }
        truth.push((d, start, samples.len()));
        samples.extend((0..gap_ms * 8).map(|_| noise() as i16));
    }
    Script { samples, truth }
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vb-dtmf-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn write_pcm16_wav(path: &Path, samples: &[i16], rate: u32, channels: u16) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &s in samples {
        for _ in 0..channels {
            w.write_sample(s).unwrap();
        }
    }
    w.finalize().unwrap();
}

/// A G.711 WAV (`WAVE_FORMAT_ALAW` 6 or `WAVE_FORMAT_MULAW` 7) with the 18-byte fmt chunk and the
/// `fact` chunk that sox writes.
fn g711_wav(tag: u16, codes: &[u8], data_len: u32) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&(50 + codes.len() as u32).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&18u32.to_le_bytes());
    for x in [tag, 1] {
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.extend_from_slice(&8000u32.to_le_bytes());
    v.extend_from_slice(&8000u32.to_le_bytes());
    for x in [1u16, 8, 0] {
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.extend_from_slice(b"fact");
    v.extend_from_slice(&4u32.to_le_bytes());
    v.extend_from_slice(&(codes.len() as u32).to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&data_len.to_le_bytes());
    v.extend_from_slice(codes);
    if codes.len() % 2 == 1 {
        v.push(0);
    }
    v
}

fn run(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(BIN)
        .arg("dtmf")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(bytes) = stdin {
        // The child may exit early on bad input; a broken pipe here is fine.
        let _ = child.stdin.take().unwrap().write_all(bytes);
    }
    child.wait_with_output().unwrap()
}

/// Asserts success, the exact `DIGIT\tSTART\tEND\n` shape, the digits in order, and times within
/// 10 ms of where the tones really are.
fn assert_digits(out: &Output, truth: &[(char, usize, usize)]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    assert!(out.stderr.is_empty(), "stderr: {stderr}");
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(stdout.ends_with('\n') || stdout.is_empty());
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), truth.len(), "stdout:\n{stdout}");
    for (line, &(digit, start, end)) in lines.iter().zip(truth) {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f.len(), 3, "line {line:?}");
        assert_eq!(f[0], digit.to_string(), "line {line:?}");
        assert!(
            f[1].chars().chain(f[2].chars()).all(|c| c.is_ascii_digit()),
            "line {line:?}"
        );
        let (s, e): (i64, i64) = (f[1].parse().unwrap(), f[2].parse().unwrap());
        assert!(
            (s - start as i64 / 8).abs() <= 10,
            "start of {line:?}, truth {}",
            start / 8
        );
        assert!(
            (e - end as i64 / 8).abs() <= 10,
            "end of {line:?}, truth {}",
            end / 8
        );
    }
}

/// Asserts the failure contract: exit 2, nothing on stdout, exactly one prefixed line on stderr.
fn assert_fails(out: &Output, mentions: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        out.stdout.is_empty(),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(stderr.lines().count(), 1, "stderr: {stderr}");
    assert!(
        stderr.starts_with("veilig-bellen dtmf: "),
        "stderr: {stderr}"
    );
    assert!(
        stderr.contains(mentions),
        "stderr {stderr:?} should mention {mentions:?}"
    );
}

#[test]
fn link_code_in_a_pcm16_wav_is_printed_digit_by_digit() {
    let s = script("31415926", 300, 80, 80);
    let path = tmp("code.wav");
    write_pcm16_wav(&path, &s.samples, 8000, 1);
    let out = run(&[path.to_str().unwrap()], None);
    assert_digits(&out, &s.truth);
}

#[test]
fn every_key_is_recognised_in_an_alaw_wav() {
    let s = script("0123456789*#ABCD", 100, 60, 60);
    let codes: Vec<u8> = s
        .samples
        .iter()
        .map(|&x| dsp::g711::alaw_encode(x))
        .collect();
    let path = tmp("keys-alaw.wav");
    std::fs::write(&path, g711_wav(6, &codes, codes.len() as u32)).unwrap();
    assert_digits(&run(&[path.to_str().unwrap()], None), &s.truth);
}

#[test]
fn ulaw_wav_gives_the_same_digits() {
    let s = script("90210#", 200, 100, 100);
    let codes: Vec<u8> = s
        .samples
        .iter()
        .map(|&x| dsp::g711::ulaw_encode(x))
        .collect();
    let path = tmp("code-ulaw.wav");
    std::fs::write(&path, g711_wav(7, &codes, codes.len() as u32)).unwrap();
    assert_digits(
        &run(&["--format", "auto", path.to_str().unwrap()], None),
        &s.truth,
    );
}

#[test]
fn raw_s16le_from_stdin() {
    let s = script("5550123", 0, 70, 50);
    let bytes: Vec<u8> = s.samples.iter().flat_map(|x| x.to_le_bytes()).collect();
    assert_digits(&run(&["--format", "s16le", "-"], Some(&bytes)), &s.truth);
}

#[test]
fn raw_alaw_file_and_streamed_wav_on_stdin() {
    let s = script("42", 50, 90, 90);
    let codes: Vec<u8> = s
        .samples
        .iter()
        .map(|&x| dsp::g711::alaw_encode(x))
        .collect();
    let path = tmp("code.al");
    std::fs::write(&path, &codes).unwrap();
    assert_digits(
        &run(&["--format", "alaw", path.to_str().unwrap()], None),
        &s.truth,
    );
    // sox writing WAV into a pipe cannot fill in the length and puts 0x7FFFF000 there.
    let streamed = g711_wav(6, &codes, 0x7FFF_F000);
    assert_digits(&run(&["-"], Some(&streamed)), &s.truth);
}

#[test]
fn silence_prints_nothing_and_succeeds() {
    let path = tmp("silence.wav");
    write_pcm16_wav(&path, &vec![0i16; 16_000], 8000, 1);
    assert_digits(&run(&[path.to_str().unwrap()], None), &[]);
    assert_digits(&run(&["--format", "ulaw", "-"], Some(&[])), &[]);
}

#[test]
fn wav_at_44k1_is_refused() {
    let path = tmp("cd.wav");
    write_pcm16_wav(&path, &script("1", 0, 100, 0).samples, 44_100, 1);
    assert_fails(&run(&[path.to_str().unwrap()], None), "44100 Hz");
}

#[test]
fn stereo_wav_is_refused() {
    let path = tmp("stereo.wav");
    write_pcm16_wav(&path, &script("1", 0, 100, 0).samples, 8000, 2);
    assert_fails(&run(&[path.to_str().unwrap()], None), "mono");
}

#[test]
fn truncated_wav_is_refused_without_partial_output() {
    let s = script("123", 0, 80, 80);
    let path = tmp("whole.wav");
    write_pcm16_wav(&path, &s.samples, 8000, 1);
    let whole = std::fs::read(&path).unwrap();
    // Cut inside the header, and cut after the first two digits (which must not be printed).
    let in_header = tmp("cut-header.wav");
    std::fs::write(&in_header, &whole[..30]).unwrap();
    assert_fails(&run(&[in_header.to_str().unwrap()], None), "truncated");
    let in_data = tmp("cut-data.wav");
    std::fs::write(&in_data, &whole[..44 + 2 * 8 * 330]).unwrap();
    assert_fails(&run(&[in_data.to_str().unwrap()], None), "truncated");
    let codes: Vec<u8> = s
        .samples
        .iter()
        .map(|&x| dsp::g711::alaw_encode(x))
        .collect();
    let wav = g711_wav(6, &codes, codes.len() as u32);
    assert_fails(&run(&["-"], Some(&wav[..wav.len() / 2])), "truncated");
}

#[test]
fn garbage_is_refused_with_a_hint() {
    let path = tmp("garbage.wav");
    std::fs::write(&path, b"this is not a recording at all\n").unwrap();
    assert_fails(&run(&[path.to_str().unwrap()], None), "--format");
    let mut riff = b"RIFF\x10\0\0\0WAVEfmt \xff\xff\xff\x7f".to_vec();
    riff.extend_from_slice(&[0xAB; 100]);
    assert_fails(&run(&["-"], Some(&riff)), "corrupt");
}

#[test]
fn unknown_format_value_and_missing_file_are_refused() {
    assert_fails(&run(&["--format", "mp3", "x.mp3"], None), "mp3");
    assert_fails(
        &run(&[tmp("does-not-exist.wav").to_str().unwrap()], None),
        "cannot open",
    );
    assert_fails(&run(&["--format", "s16le", "-"], Some(&[1, 2, 3])), "odd");
}
