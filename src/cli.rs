//! Command-line interface: argument definitions and dispatch. `main.rs` only parses and calls [`run`].

use clap::{Parser, Subcommand};

/// Process exit codes shared by every subcommand.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// Bad input: unreadable file, wrong format, bad arguments.
    pub const INPUT: u8 = 2;
}

#[derive(Debug, Parser)]
#[command(name = "veilig-bellen", version, about = "Veilig bellen: know who is calling, with Yivi proof")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Decode DTMF digits from a recording; prints DIGIT<TAB>START_MS<TAB>END_MS per digit.
    Dtmf(crate::dtmf_cmd::DtmfArgs),
}

/// Run the parsed command line and return the process exit code.
pub fn run(cli: Cli) -> u8 {
    match cli.command {
        Command::Dtmf(args) => crate::dtmf_cmd::run(&args),
    }
}
