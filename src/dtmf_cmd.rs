//! `veilig-bellen dtmf`: decode in-band DTMF digits (ITU-T Q.23/Q.24) from a recording with the same
//! detector the call path uses (`dsp::dtmf`), so a support engineer can check a problem call offline.
//!
//! Input: a WAV file (16-bit PCM, A-law or µ-law, 8 kHz mono) or, with `--format`, raw headerless
//! s16le / µ-law / A-law at 8 kHz mono; `-` reads standard input. The input is streamed, never held
//! whole in memory. Stereo files are rejected (a call recording often has caller and agent on separate
//! channels, and silently decoding only one could miss digits); extract the channel you want first.
//!
//! Output: one line `DIGIT<TAB>START_MS<TAB>END_MS` per digit, milliseconds from the start of the
//! input, and nothing else on stdout. Lines are printed after the whole input has been read, so a
//! truncated or corrupt input prints no partial result. Exit 0 on success (also with no digits); any
//! bad input gives exit 2 and one line on stderr starting `veilig-bellen dtmf: `.

use crate::audio_file::{AudioFileError, AudioReader, InputFormat, READ_BLOCK};
use clap::Args;
use dsp::dtmf::{DtmfDetector, DtmfEvent};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;

/// Input encodings accepted by `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Read the WAV header (same as `wav`; named for scripts that may pass it explicitly).
    Auto,
    Wav,
    S16le,
    Ulaw,
    Alaw,
}

impl std::str::FromStr for Format {
    type Err = DtmfCmdError;

    fn from_str(s: &str) -> Result<Format, DtmfCmdError> {
        Ok(match s {
            "auto" => Format::Auto,
            "wav" => Format::Wav,
            "s16le" => Format::S16le,
            "ulaw" | "mulaw" | "pcmu" => Format::Ulaw,
            "alaw" | "pcma" => Format::Alaw,
            other => return Err(DtmfCmdError::UnknownFormat(other.to_owned())),
        })
    }
}

#[derive(Debug, Args)]
pub struct DtmfArgs {
    /// Input format: auto, wav, s16le, ulaw or alaw (raw formats are 8 kHz mono without a header).
    // A plain string, parsed in `run`, so an unknown value gives our one-line error, not clap's.
    #[arg(long, default_value = "auto", value_name = "auto|wav|s16le|ulaw|alaw")]
    pub format: String,
    /// Recording to decode, or `-` for standard input.
    pub file: PathBuf,
}

/// Everything that can go wrong; each prints as one line.
#[derive(Debug, thiserror::Error)]
pub enum DtmfCmdError {
    #[error("unknown --format {0:?} (expected auto, wav, s16le, ulaw or alaw)")]
    UnknownFormat(String),
    #[error("cannot open {path}: {source}")]
    Open { path: String, source: io::Error },
    #[error("{0}; for raw audio pass --format s16le, ulaw or alaw")]
    NotWav(AudioFileError),
    #[error("{0}")]
    Audio(AudioFileError),
    #[error("writing output: {0}")]
    Output(io::Error),
}

impl From<AudioFileError> for DtmfCmdError {
    fn from(e: AudioFileError) -> Self {
        match e {
            AudioFileError::NotWav => DtmfCmdError::NotWav(e),
            e => DtmfCmdError::Audio(e),
        }
    }
}

/// Runs the subcommand and returns the process exit code.
pub fn run(args: &DtmfArgs) -> u8 {
    match decode(args) {
        Ok(text) => match io::stdout().lock().write_all(text.as_bytes()) {
            Ok(()) => crate::cli::exit::OK,
            Err(e) => fail(&DtmfCmdError::Output(e)),
        },
        Err(e) => fail(&e),
    }
}

fn fail(e: &DtmfCmdError) -> u8 {
    // Error texts can embed file names or OS messages; keep the promise of exactly one line.
    let line = e.to_string().replace(['\n', '\r'], " ");
    eprintln!("veilig-bellen dtmf: {line}");
    crate::cli::exit::INPUT
}

/// Decodes the whole input and returns the lines to print.
fn decode(args: &DtmfArgs) -> Result<String, DtmfCmdError> {
    let format: Format = args.format.parse()?;
    let input: Box<dyn Read> = if args.file.as_os_str() == "-" {
        Box::new(io::stdin().lock())
    } else {
        let f = File::open(&args.file).map_err(|source| DtmfCmdError::Open {
            path: args.file.display().to_string(),
            source,
        })?;
        Box::new(f)
    };
    // No BufReader: `AudioReader` reads `READ_BLOCK` samples per system call into its own buffer.
    let format = match format {
        Format::Auto | Format::Wav => InputFormat::Wav,
        Format::S16le => InputFormat::RawS16le,
        Format::Ulaw => InputFormat::RawUlaw,
        Format::Alaw => InputFormat::RawAlaw,
    };
    detect(AudioReader::new(input, format)?)
}

/// Runs the detector over the stream and formats each finished digit.
pub fn detect<R: Read>(mut audio: AudioReader<R>) -> Result<String, DtmfCmdError> {
    let mut detector = DtmfDetector::new();
    let mut block = vec![0i16; READ_BLOCK];
    let mut out = String::new();
    loop {
        let n = audio.read(&mut block)?;
        if n == 0 {
            break;
        }
        // Invariant: `read` returns at most `block.len()`.
        detector.push(&block[..n]);
        drain(&mut detector, &mut out);
    }
    detector.finish();
    drain(&mut detector, &mut out);
    Ok(out)
}

fn drain(detector: &mut DtmfDetector, out: &mut String) {
    let samples_per_ms = u64::from(dsp::dtmf::SAMPLE_RATE) / 1000;
    while let Some(ev) = detector.poll_event() {
        if let DtmfEvent::Ended { digit, start, end } = ev {
            // Writing to a String cannot fail.
            let _ = writeln!(
                out,
                "{digit}\t{}\t{}",
                start / samples_per_ms,
                end / samples_per_ms
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_names_parse_and_unknown_ones_are_rejected() {
        assert_eq!("auto".parse::<Format>().unwrap(), Format::Auto);
        assert_eq!("ulaw".parse::<Format>().unwrap(), Format::Ulaw);
        assert_eq!("pcma".parse::<Format>().unwrap(), Format::Alaw);
        let e = "mp3".parse::<Format>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown --format \"mp3\" (expected auto, wav, s16le, ulaw or alaw)"
        );
    }

    #[test]
    fn raw_silence_has_no_digits() {
        let silence = vec![0u8; 16_000];
        let audio = AudioReader::new(&silence[..], InputFormat::RawS16le).unwrap();
        assert_eq!(detect(audio).unwrap(), "");
    }
}
