//! The `veilig-bellen` binary: parse arguments, hand over to [`veilig_bellen::cli::run`].

#![forbid(unsafe_code)]

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = veilig_bellen::cli::Cli::parse();
    ExitCode::from(veilig_bellen::cli::run(cli))
}
