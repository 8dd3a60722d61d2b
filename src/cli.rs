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
    /// Log lines on stderr as text for people (`human`) or one JSON object per line (`json`), for
    /// a log collector. `RUST_LOG` sets the level (default `info`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Decode DTMF digits from a recording; prints DIGIT<TAB>START_MS<TAB>END_MS per digit.
    Dtmf(crate::dtmf_cmd::DtmfArgs),
    /// Place one call and key in a link code, to try an install without a softphone; exits 0
    /// when the call went through (answered, code sent), 1 when not, 2 on bad input.
    Call(crate::call_cmd::CallArgs),
    /// Run the whole product on embedded defaults: SIP, HTTP, one tenant, one agent, IRMA simulator.
    #[cfg(feature = "demo")]
    Demo(crate::demo::DemoArgs),
    /// Run the product from a config file, against the municipality's real IRMA server.
    Serve(crate::serve::ServeArgs),
    /// Check a config file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Agent accounts.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Municipalities' settings.
    #[command(subcommand)]
    Tenant(TenantCommand),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Load and check FILE as `serve` would (with VEILIG_BELLEN_* overrides): prints
    /// "ok: N tenants, M agents" and exits 0, or every error and exits 2.
    Check {
        #[arg(value_name = "FILE")]
        file: std::path::PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Read a password from stdin and print its argon2id hash, for `password_hash` in the config.
    HashPassword,
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Print a fresh random API key for the municipality's own exchange (`/api/v1/pbx/…`), and
    /// the `[[tenants.exchange_keys]]` table with its hash for the config. Only the hash is kept.
    ExchangeKey {
        /// The key's name in the config and the logs (letters, digits, `.`, `_`, `-`).
        #[arg(long, default_value = "exchange")]
        name: String,
    },
}

/// Run the parsed command line and return the process exit code.
pub fn run(cli: Cli) -> u8 {
    let log = cli.log_format;
    match cli.command {
        Command::Dtmf(args) => crate::dtmf_cmd::run(&args),
        Command::Call(args) => crate::call_cmd::run(args, log),
        #[cfg(feature = "demo")]
        Command::Demo(args) => match crate::demo::check_exposure(&args) {
            Ok(()) => run_async(log, crate::demo::run(args)),
            Err(why) => {
                eprintln!("veilig-bellen demo: {why}");
                exit::INPUT
            }
        },
        Command::Serve(args) => match crate::serve::load_or_report(&args.config) {
            Ok(config) => run_async(log, crate::serve::run(config, args.config)),
            Err(code) => code,
        },
        Command::Config(ConfigCommand::Check { file }) => crate::serve::check(&file),
        Command::Agent(AgentCommand::HashPassword) => crate::serve::hash_password(),
        Command::Tenant(TenantCommand::ExchangeKey { name }) => {
            crate::exchange::key::print_new_key(&name)
        }
    }
}

/// Logs go to stderr; `RUST_LOG` overrides the `default` level (`info` for the services, `warn` for
/// `call`, whose stdout is the report). Log lines never carry personal data (see `crate::pii`).
pub(crate) fn init_logging(format: LogFormat, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Runs `task` on a fresh runtime; an error is printed with its causes (`{:#}`), the one place
/// that uses anyhow.
fn run_async<E>(format: LogFormat, task: impl std::future::Future<Output = Result<(), E>>) -> u8
where
    E: std::error::Error + Send + Sync + 'static,
{
    init_logging(format, "info");
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
            eprintln!("veilig-bellen: {:#}", anyhow::Error::new(e));
            exit::FAILURE
        }
    }
}

/// Parses `LOW-HIGH` into an inclusive range of even-aligned RTP ports.
pub fn parse_port_range(s: &str) -> Result<std::ops::RangeInclusive<u16>, String> {
    let (low, high) = s
        .split_once('-')
        .ok_or_else(|| format!("expected LOW-HIGH, got {s:?}"))?;
    let low: u16 = low
        .trim()
        .parse()
        .map_err(|_| format!("bad low port {low:?}"))?;
    let high: u16 = high
        .trim()
        .parse()
        .map_err(|_| format!("bad high port {high:?}"))?;
    if low == 0 || high < low.saturating_add(1) {
        return Err(format!(
            "the range {low}-{high} must hold at least one RTP/RTCP port pair"
        ));
    }
    Ok(low..=high)
}
