//! Running from a config file: `veilig-bellen serve --config FILE`, `veilig-bellen config check
//! FILE` and `veilig-bellen agent hash-password`.
//!
//! `serve` loads and checks the whole file first ([`crate::config::load`], environment overrides
//! included; any error: every error on stderr and exit 2, nothing started), then runs the same
//! [`server::start`] as `demo` with the real IRMA server — never the simulator, never the demo
//! pages — prints where it listens (no secrets), and runs until SIGTERM or Ctrl-C.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::Args;

use crate::cli::exit;
use crate::config::{self, Config};
use crate::irma::IrmaAuth;
use crate::server::{self, RunError, Running};
use crate::store::StoreBackend;
use crate::tenant::PasswordHash;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The TOML configuration (see deploy/veilig-bellen.toml); VEILIG_BELLEN_<KEY> variables
    /// override its keys.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
}

/// Loads `path` with the process's overrides; on errors prints them all to stderr and returns
/// the exit code.
pub fn load_or_report(path: &Path) -> Result<Config, u8> {
    match config::load(path, config::process_env()) {
        Ok(config) => Ok(config),
        Err(errors) => {
            for error in &errors.0 {
                eprintln!("{error}");
            }
            eprintln!(
                "veilig-bellen: {} error(s) in the configuration",
                errors.0.len()
            );
            Err(exit::INPUT)
        }
    }
}

/// `config check FILE`: `ok: N tenants, M agents` and 0, or the errors and 2.
pub fn check(path: &Path) -> u8 {
    match load_or_report(path) {
        Ok(config) => {
            println!(
                "ok: {} tenants, {} agents",
                config.tenants.iter().count(),
                config.agents.len()
            );
            exit::OK
        }
        Err(code) => code,
    }
}

/// `agent hash-password`: one line from stdin (the trailing newline dropped) to an argon2id PHC
/// string on stdout.
pub fn hash_password() -> u8 {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("password (shown as you type; pipe it in to avoid that): ");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    if let Err(e) = stdin.lock().read_line(&mut line) {
        eprintln!("veilig-bellen agent hash-password: reading stdin: {e}");
        return exit::INPUT;
    }
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        eprintln!("veilig-bellen agent hash-password: no password on stdin");
        return exit::INPUT;
    }
    match PasswordHash::hash(password) {
        Ok(hash) => {
            println!("{}", hash.as_str());
            exit::OK
        }
        Err(e) => {
            eprintln!("veilig-bellen agent hash-password: {e}");
            exit::FAILURE
        }
    }
}

/// Runs `config` (from [`load_or_report`]) until SIGTERM or Ctrl-C.
pub async fn run(config: Config, path: PathBuf) -> Result<(), RunError> {
    let running = server::start(config.server_config()).await?;
    print!("{}", summary(&config, &running, &path));
    let _ = std::io::stdout().flush();
    wait_for_stop().await?;
    let grace = config.calls.shutdown_grace;
    println!(
        "stopping: new calls get 503; live calls may finish for {}",
        crate::time::format_duration(grace)
    );
    let _ = std::io::stdout().flush();
    let cut = running.drain_and_shutdown(grace).await;
    if cut > 0 {
        println!("hung up {cut} call(s) still up after the grace time");
    }
    Ok(())
}

/// What `serve` prints once it listens: addresses, the IRMA server, tenants and their numbers,
/// and warnings. No secrets.
pub fn summary(config: &Config, running: &Running, path: &Path) -> String {
    let mut out = format!("veilig-bellen serve is running ({})\n\n", path.display());
    let mut line = |label: &str, value: String| {
        out.push_str(&format!("  {label:<22} {value}\n"));
    };
    for udp in &running.sip.udp {
        line("SIP (UDP)", format!("sip:{udp}"));
    }
    for tcp in &running.sip.tcp {
        line("SIP (TCP)", format!("sip:{tcp};transport=tcp"));
    }
    for tls in &running.sip.tls {
        line("SIP (TLS)", format!("sips:{tls}"));
    }
    if let Some(host) = &config.sip.advertise {
        line("SIP advertised as", host.clone());
    }
    if config.sip.trunks.is_empty() {
        line(
            "trunks",
            "none: every call is turned away (set sip.trunks)".to_owned(),
        );
    } else {
        let trunks: Vec<String> = config.sip.trunks.iter().map(ToString::to_string).collect();
        let others = match config.sip.unknown_sources {
            crate::call::manager::UnknownSources::Drop => "dropped",
            crate::call::manager::UnknownSources::Reject => "refused 403",
        };
        line(
            "trunks",
            format!("{} (calls from elsewhere {others})", trunks.join(", ")),
        );
    }
    let guesses = &config.links.guesses;
    line(
        "link-code guessing",
        format!(
            "{} wrong codes per calling number in {} block it for {} (at most {:.0} guesses a day)",
            guesses.max_wrong_codes,
            crate::time::format_duration(guesses.window),
            crate::time::format_duration(guesses.block),
            guesses.guesses_per_number(std::time::Duration::from_secs(86_400)),
        ),
    );
    line(
        "RTP ports",
        format!(
            "{}-{}",
            config.calls.rtp_ports.start(),
            config.calls.rtp_ports.end()
        ),
    );
    let scheme = if config.http.tls.is_some() {
        "https"
    } else {
        "http"
    };
    line("HTTP", format!("{scheme}://{}", running.http));
    line(
        "agents' API",
        format!("{scheme}://{}/api/v1/calls", running.http),
    );
    line(
        "IRMA server",
        format!(
            "{} ({})",
            running.irma_url,
            auth_kind(&config.irma.server.auth)
        ),
    );
    for tenant in config.tenants.iter() {
        line(
            &format!("tenant {}", tenant.id),
            format!(
                "{}: {} (Yivi calls back {}), {} agent(s)",
                tenant.display_name,
                tenant.called_numbers.join(", "),
                tenant.phone_number,
                tenant.agents.len()
            ),
        );
    }
    line("data directory", config.data_dir.display().to_string());
    line(
        "session store",
        match &config.store {
            StoreBackend::Redb => "redb in the data directory (this instance alone)".to_owned(),
            StoreBackend::Postgres(settings) => format!(
                "PostgreSQL, shared; this instance is {:?}",
                settings.instance
            ),
        },
    );
    out.push('\n');
    if config.http.tls.is_none() {
        out.push_str(
            "WARNING: HTTP is not TLS. Put a TLS-terminating proxy in front, or set http.tls_cert and http.tls_key.\n",
        );
    }
    match &config.key_file {
        None => out.push_str(
            "NOTE: the attribute key is in the data directory (attribute.key): a copy of that directory holds the sealed attributes and their key. Set key_file to a file elsewhere.\n",
        ),
        Some(key) if key.starts_with(&config.data_dir) => out.push_str(
            "WARNING: key_file lies inside data_dir: a copy of the data directory holds the sealed attributes and their key.\n",
        ),
        Some(_) => {}
    }
    if let StoreBackend::Postgres(settings) = &config.store {
        let tls = crate::store::postgres::parse_url(settings.url.expose())
            .is_ok_and(|url| url.get_ssl_mode() == tokio_postgres::config::SslMode::Require);
        if !tls {
            out.push_str(
                "NOTE: store.url does not say sslmode=require: sealed attributes may travel to PostgreSQL unencrypted by TLS.\n",
            );
        }
    }
    if config.irma.result_public_key_file.is_none() {
        out.push_str(
            "NOTE: irma.result_public_key_file is not set: disclosure results are trusted on the IRMA server's TLS alone, not on its signature.\n",
        );
    }
    out.push_str("Stop with SIGTERM or Ctrl-C.\n");
    out
}

fn auth_kind(auth: &IrmaAuth) -> &'static str {
    match auth {
        IrmaAuth::None => "no requestor authentication",
        IrmaAuth::Token(_) => "token",
        IrmaAuth::Hs256 { .. } => "HS256-signed requests",
        IrmaAuth::Rs256 { .. } => "RS256-signed requests",
    }
}

/// Resolves on SIGTERM (systemd, container engines) or Ctrl-C.
async fn wait_for_stop() -> Result<(), RunError> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term =
            signal(SignalKind::terminate()).map_err(RunError::io("listening for SIGTERM"))?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.map_err(RunError::io("waiting for Ctrl-C"))?,
            _ = term.recv() => {}
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c()
            .await
            .map_err(RunError::io("waiting for Ctrl-C"))
    }
}

#[cfg(test)]
mod tests {
    use crate::cli::{Cli, Command};
    use clap::Parser;

    #[test]
    fn the_new_commands_parse() {
        let cli =
            Cli::try_parse_from(["veilig-bellen", "serve", "--config", "/etc/vb.toml"]).unwrap();
        assert!(
            matches!(cli.command, Command::Serve(ref a) if a.config.to_str() == Some("/etc/vb.toml"))
        );
        assert!(
            Cli::try_parse_from(["veilig-bellen", "serve"]).is_err(),
            "--config is required"
        );
        let cli = Cli::try_parse_from(["veilig-bellen", "config", "check", "x.toml"]).unwrap();
        assert!(matches!(cli.command, Command::Config(_)));
        let cli = Cli::try_parse_from(["veilig-bellen", "agent", "hash-password"]).unwrap();
        assert!(matches!(cli.command, Command::Agent(_)));
    }
}
