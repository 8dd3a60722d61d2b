//! The `serve` configuration: a TOML file (issue 9, "Run it for real"), overridden by
//! `VEILIG_BELLEN_<KEY>` environment variables, checked whole at load and turned into the
//! [`ServerConfig`] that [`crate::server::start`] runs.
//!
//! # Loading
//! 1. [`file::parse`] reads the TOML keeping every key's byte span;
//! 2. [`env::apply`] puts the environment overrides into that document (`__` separates levels,
//!    `VEILIG_BELLEN_IRMA__URL`, `VEILIG_BELLEN_TENANTS__0__NAME`); their values carry a span past the
//!    end of the text, so an error in one names the variable instead of a line;
//! 3. [`file::deserialize`] reads the raw types (all keys optional, unknown keys refused, every
//!    unknown key reported);
//! 4. [`validate::check`] checks every value ([`values`], [`tenants`]) and reads the secret files,
//!    collecting every error.
//!
//! Every error is one line: `FILE:LINE:COLUMN: `key`: problem` or `VEILIG_BELLEN_X: problem`.
//! Secrets (API token, SIP passwords, the IRMA token) are [`Pii`] or redacted in `Debug`.
//! Relative paths in the file are relative to the file's directory.

mod env;
mod exchange;
mod extra_requests;
mod file;
mod links;
mod store;
mod tenants;
mod validate;
mod values;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use crate::call::manager::CallFlowConfig;
use crate::irma::IrmaServerConfig;
use crate::links::LinkConfig;
use crate::pii::Pii;
use crate::server::{IrmaBackend, ServerConfig};
use crate::sip_driver::{Credentials, SipConfig, StreamLimits, TlsConfig};
use crate::tenant::{PasswordHash, TenantId, Tenants};

pub use env::PREFIX as ENV_PREFIX;

/// A loaded and checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the session database and the attribute key live.
    pub data_dir: PathBuf,
    /// The attribute key's file (config `key_file`); `None`: `<data_dir>/attribute.key`.
    pub key_file: Option<PathBuf>,
    /// Where link sessions live (`[store]`): redb in `data_dir` (default) or PostgreSQL.
    pub store: crate::store::StoreBackend,
    pub http: HttpSettings,
    pub sip: SipSettings,
    pub irma: IrmaSettings,
    /// Call flow: who may call (the trunks), timeouts, transfer and media mode, capacity, RTP
    /// ports.
    pub calls: CallFlowConfig,
    /// Link codes: lifetimes and guessing limits (`[links]`).
    pub links: LinkConfig,
    /// Bearer token of the agents' API.
    pub api_token: Pii<String>,
    pub tenants: Tenants,
    /// Every agent of every tenant, in file order.
    pub agents: Vec<AgentLogin>,
}

/// `[http]`
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub listen: SocketAddr,
    /// Certificate and key when HTTP serves TLS itself.
    pub tls: Option<TlsConfig>,
    /// Reverse proxies whose `X-Forwarded-For`/`Forwarded` name the client; empty: the TCP peer
    /// is the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// `[sip]`
#[derive(Debug, Clone)]
pub struct SipSettings {
    /// UDP and TCP.
    pub listen: SocketAddr,
    pub tls_listen: Option<SocketAddr>,
    pub tls: Option<TlsConfig>,
    /// Sources allowed to start calls (and whose identity headers are believed).
    pub trunks: Vec<ipnet::IpNet>,
    /// What a dialog-creating request from anywhere else gets: nothing, or 403.
    pub unknown_sources: crate::call::manager::UnknownSources,
    /// Answer a trunk's SRTP offer with SRTP (`"accept"`) or refuse it (`"off"`).
    pub trunk_srtp: bool,
    /// Host written into Via and Contact.
    pub advertise: Option<String>,
    /// Address written into SDP.
    pub media_ip: Option<IpAddr>,
    /// Where browsers' WebRTC media arrives, and a public address to offer them too.
    pub webrtc_ip: Option<IpAddr>,
    pub webrtc_public_ip: Option<IpAddr>,
    pub rtp_ports: RangeInclusive<u16>,
    pub realm: String,
    pub digest_algorithms: Vec<sip::auth::Algorithm>,
    /// TCP/TLS connection limits (`max_connections`, `max_connections_per_address`,
    /// `first_message_timeout`); the rest at their defaults.
    pub streams: StreamLimits,
    /// Messages per second (and burst) from one address outside the trunks.
    pub message_rate: sip::ratelimit::RateConfig,
}

/// `[irma]`
#[derive(Debug, Clone)]
pub struct IrmaSettings {
    pub server: IrmaServerConfig,
    /// irmago's public key for signed results (also in `server.result_jwt`, which checks them).
    pub result_public_key_file: Option<PathBuf>,
}

/// One `[[tenants.agents]]`.
#[derive(Debug, Clone)]
pub struct AgentLogin {
    pub tenant: TenantId,
    pub username: String,
    /// argon2id hash of the agent's portal password.
    pub password_hash: PasswordHash,
    /// Digest secret of the agent's softphone.
    pub sip_password: Pii<String>,
}

impl Config {
    /// What [`crate::server::start`] runs: the real IRMA server, no simulator, no demo pages.
    pub fn server_config(&self) -> ServerConfig {
        let mut sip = SipConfig::new(self.sip.listen, self.sip.realm.clone());
        sip.tls = self.sip.tls_listen.into_iter().collect();
        sip.tls_files = self.sip.tls.clone();
        sip.advertise = self.sip.advertise.clone();
        sip.digest_algorithms = self.sip.digest_algorithms.clone();
        sip.streams = self.sip.streams;
        sip.message_rate = self.sip.message_rate;
        sip.credentials = self
            .agents
            .iter()
            .map(|a| Credentials {
                username: a.username.clone(),
                password: a.sip_password.expose().clone(),
            })
            .collect();
        ServerConfig {
            sip,
            http: self.http.listen,
            http_tls: self.http.tls.clone(),
            trusted_proxies: crate::http::TrustedProxies::new(self.http.trusted_proxies.clone()),
            api_token: self.api_token.clone(),
            tenants: self.tenants.clone(),
            data_dir: self.data_dir.clone(),
            key_file: self.key_file.clone(),
            store: self.store.clone(),
            irma: IrmaBackend::Server(self.irma.server.clone()),
            links: self.links.clone(),
            calls: self.calls.clone(),
            demo_pages: false,
        }
    }
}

/// Loads and checks the file at `path` with the environment overrides in `env` (pass
/// [`process_env`] in production; tests pass their own pairs).
pub fn load(
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|source| {
        ConfigErrors(vec![ConfigError::Read {
            path: path.to_path_buf(),
            source,
        }])
    })?;
    load_str(&text, path, env)
}

/// As [`load`], with the file's text given; `path` names it in errors and anchors relative paths.
pub fn load_str(
    text: &str,
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigErrors> {
    let vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(key, _)| key.starts_with(env::PREFIX))
        .collect();
    let mut source = file::Source {
        path,
        text,
        env_vars: Vec::new(),
    };
    let mut document = file::parse(&source).map_err(|e| ConfigErrors(vec![e]))?;
    let mut errors = Vec::new();
    source.env_vars = env::apply(document.get_mut(), text.len(), &vars, &mut errors);
    let (raw, mut more) = file::deserialize(&source, document);
    errors.append(&mut more);
    let config = raw.and_then(|raw| validate::check(&source, raw, &mut errors));
    match config {
        Some(config) if errors.is_empty() => Ok(config),
        _ => Err(ConfigErrors(errors)),
    }
}

/// The process's `VEILIG_BELLEN_*` variables (values that are not UTF-8 are taken lossily, and
/// then fail validation).
pub fn process_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(key, value)| {
            let key = key.into_string().ok()?;
            key.starts_with(env::PREFIX)
                .then(|| (key, value.to_string_lossy().into_owned()))
        })
        .collect()
}

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    File {
        path: PathBuf,
        line: usize,
        column: usize,
    },
    /// An environment variable (its name).
    Env(String),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::File { path, line, column } => {
                write!(f, "{}:{line}:{column}", path.display())
            }
            Location::Env(var) => f.write_str(var),
        }
    }
}

/// One thing wrong with the configuration. Never holds a secret's value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("{}: cannot read the config file: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{at}: TOML syntax: {message}")]
    Syntax { at: Location, message: String },
    #[error("{at}: unknown key `{key}`{}", hint(expected))]
    UnknownKey {
        at: Location,
        key: String,
        /// serde's list of the keys allowed there.
        expected: String,
    },
    #[error("{at}: `{key}`: {problem}")]
    Invalid {
        at: Location,
        key: String,
        problem: String,
    },
    #[error("{at}: `{key}` is required{}", hint(why))]
    Missing {
        at: Location,
        key: String,
        why: String,
    },
    #[error("{at}: `{key}`: cannot read {}: {source}", path.display())]
    SecretFile {
        at: Location,
        key: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{var}: {problem}")]
    Env { var: String, problem: String },
}

fn hint(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!(" ({text})")
    }
}

/// Everything wrong with a configuration, one error per line.
#[derive(Debug, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_one_error_naming_it() {
        let e = load(Path::new("/nonexistent/vb.toml"), Vec::new())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.starts_with("/nonexistent/vb.toml: cannot read"), "{e}");
    }
}
