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
        let mut bytes = Vec::new();
        if let Err(e) = std::fs::File::open(file).and_then(|mut f| f.read_to_end(&mut bytes)) {
            eprintln!("dtmf_scan: {file}: {e}");
            return ExitCode::from(2);
        }
        let pcm: Vec<i16> = bytes
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
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
        for frame in pcm.chunks(160) {
            det.push(frame);
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
            pcm.len() as f64 / 8000.0 / 3600.0
        );
    }
    if out.flush().is_err() {
        return ExitCode::from(2);
    }
    ExitCode::SUCCESS
}
