//! `veilig-bellen dtmf`: decode DTMF digits from a recording. (Being written: see issue 2.)

use clap::{Args, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Auto,
    Wav,
    S16le,
    Ulaw,
    Alaw,
}

#[derive(Debug, Args)]
pub struct DtmfArgs {
    /// Input format; `auto` reads a WAV header.
    #[arg(long, value_enum, default_value = "auto")]
    pub format: Format,
    /// Recording to decode, or `-` for standard input.
    pub file: PathBuf,
}

pub fn run(_args: &DtmfArgs) -> u8 {
    eprintln!("veilig-bellen dtmf: not built yet");
    crate::cli::exit::INPUT
}
