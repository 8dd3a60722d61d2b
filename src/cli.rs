//! Command-line interface: argument definitions and dispatch. `main.rs` only parses and calls [`run`].

use clap::{Parser, Subcommand};

/// Process exit codes shared by every subcommand.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// The service could not start or stopped on an error.
    pub const FAILURE: u8 = 1;
    /// Bad input: unreadable file, wrong format, bad arguments.
    pub const INPUT: u8 = 2;
}

#[derive(Debug, Parser)]
#[command(
    name = "veilig-bellen",
    version,
    about = "Veilig bellen: know who is calling, with Yivi proof"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Decode DTMF digits from a recording; prints DIGIT<TAB>START_MS<TAB>END_MS per digit.
    Dtmf(crate::dtmf_cmd::DtmfArgs),
    /// Run the whole product on embedded defaults: SIP, HTTP, one tenant, one agent, IRMA simulator.
    Demo(crate::demo::DemoArgs),
}

/// Run the parsed command line and return the process exit code.
pub fn run(cli: Cli) -> u8 {
    match cli.command {
        Command::Dtmf(args) => crate::dtmf_cmd::run(&args),
        Command::Demo(args) => run_async(crate::demo::run(args)),
    }
}

/// Logs go to stderr; `RUST_LOG` overrides the default `info`. Log lines never carry personal data
/// (see `crate::pii`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn run_async(task: impl std::future::Future<Output = anyhow::Result<()>>) -> u8 {
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("veilig-bellen: starting the async runtime: {e}");
            return exit::FAILURE;
        }
    };
    match runtime.block_on(task) {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("veilig-bellen: {e:#}");
            exit::FAILURE
        }
    }
}
