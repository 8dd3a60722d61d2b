//! Scan raw 8 kHz s16le files for in-band DTMF digits with [`dsp::dtmf::DtmfDetector`]: one line per
//! digit found (`file<TAB>digit<TAB>start_s<TAB>end_s`) and a summary per file on stderr. Used by
//! `benches/dtmf_talkoff.sh` to count false digits in speech and music.
//!
//! Usage: `cargo run --release -p dsp --example dtmf_scan -- FILE.s16le…`

use dsp::dtmf::{DtmfDetector, DtmfEvent};
use std::io::{BufWriter, Read, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        eprintln!("usage: dtmf_scan FILE.s16le…");
        return ExitCode::from(2);
    }
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    for file in &files {
        let mut input = match std::fs::File::open(file) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("dtmf_scan: {file}: {e}");
                return ExitCode::from(2);
            }
        };
        let mut det = DtmfDetector::new();
        let mut found = 0usize;
        let mut write = |ev: DtmfEvent| -> std::io::Result<()> {
            if let DtmfEvent::Ended { digit, start, end } = ev {
                found += 1;
                writeln!(
                    out,
                    "{file}\t{digit}\t{:.3}\t{:.3}",
                    start as f64 / 8000.0,
                    end as f64 / 8000.0
                )?;
            }
            Ok(())
        };
        // Streamed in 8192-sample reads, as `veilig-bellen dtmf` and the spandsp harness read.
        let mut bytes = vec![0u8; 16384];
        let mut pcm = vec![0i16; 8192];
        let (mut samples, mut carry) = (0u64, None::<u8>);
        loop {
            let n = match input.read(&mut bytes) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    eprintln!("dtmf_scan: {file}: {e}");
                    return ExitCode::from(2);
                }
            };
            let mut got = &bytes[..n];
            let mut len = 0;
            if let (Some(lo), Some((&hi, rest))) = (carry, got.split_first()) {
                pcm[0] = i16::from_le_bytes([lo, hi]);
                len = 1;
                got = rest;
                carry = None;
            }
            let pairs = got.chunks_exact(2);
            carry = pairs.remainder().first().copied().or(carry);
            for (d, b) in pcm[len..].iter_mut().zip(pairs) {
                *d = i16::from_le_bytes([b[0], b[1]]);
                len += 1;
            }
            samples += len as u64;
            det.push(&pcm[..len]);
            while let Some(ev) = det.poll_event() {
                if write(ev).is_err() {
                    return ExitCode::from(2);
                }
            }
        }
        det.finish();
        while let Some(ev) = det.poll_event() {
            if write(ev).is_err() {
                return ExitCode::from(2);
            }
        }
        eprintln!(
            "{file}: {:.2} h, {found} digits",
            samples as f64 / 8000.0 / 3600.0
        );
    }
    if out.flush().is_err() {
        return ExitCode::from(2);
    }
    ExitCode::SUCCESS
}
