//! From the raw file types to a checked [`Config`]: defaults filled in, the `[http]`, `[sip]`,
//! `[irma]` and `[calls]` sections and the API token checked, secret files read, TLS files loaded.
//! Tenants are checked in [`super::tenants`], single values parsed in [`super::values`]. Every
//! problem is collected; nothing stops at the first.

use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::file::{RawCalls, RawConfig, RawHttp, RawIrma, RawSip, Source};
use super::values::{cidr, duration, host, irma_url, media_ip, realm, socket_addr};
use super::{Config, ConfigError, HttpSettings, IrmaSettings, SipSettings};
use crate::call::collect::CollectConfig;
use crate::call::direct::AgentMedia;
use crate::call::machine::{CallConfig, TransferMode};
use crate::call::manager::{CallFlowConfig, UnknownSources};
use crate::irma::{IrmaAuth, IrmaClient, IrmaServerConfig};
use crate::pii::Pii;
use crate::sip_driver::{StreamLimits, TlsConfig};

/// Defaults of keys that may be left out.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/veilig-bellen";
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_SIP_LISTEN: &str = "0.0.0.0:5060";
pub const DEFAULT_RTP_PORTS: &str = "20000-29999";
pub const DEFAULT_REALM: &str = "veilig-bellen";
/// Secrets shorter than this are refused (API token, SIP passwords).
const MIN_TOKEN_LEN: usize = 16;
pub(super) const MIN_SIP_PASSWORD_LEN: usize = 8;
/// Most TCP/TLS connections `sip.max_connections` may allow (each is a file descriptor).
const MAX_SIP_CONNECTIONS: u32 = 100_000;

/// Checks `raw`, pushing every problem to `errors`; the config when it could be built at all.
pub fn check(source: &Source<'_>, raw: RawConfig, errors: &mut Vec<ConfigError>) -> Option<Config> {
    let mut c = Checker {
        source,
        errors,
        base: source.base_dir(),
    };
    let root = 0..0;
    let data_dir = raw
        .data_dir
        .as_ref()
        .map_or_else(|| PathBuf::from(DEFAULT_DATA_DIR), |dir| c.path(dir));
    let key_file = raw.key_file.as_ref().and_then(|f| {
        let path = c.path(f);
        match crate::store::AttributeKey::load_file(&path) {
            Ok(_) => Some(Some(path)),
            Err(e) => {
                c.invalid(&f.span(), "key_file", e.to_string());
                None
            }
        }
    });
    let api_token = c.secret(
        &raw.api_token,
        &raw.api_token_file,
        "",
        "api_token",
        &root,
        MIN_TOKEN_LEN,
    );
    let http = c.http(raw.http);
    let sip = c.sip(raw.sip);
    let irma = match raw.irma {
        Some(irma) => c.irma(irma),
        None => {
            c.missing(&root, "irma", "the IRMA server's `url` and credentials");
            None
        }
    };
    let calls = c.calls(raw.calls, sip.as_ref());
    let links = c.links(raw.links);
    let store = c.store(raw.store, raw.key_file.is_some());
    let (tenants, agents) = c.tenants(raw.tenants.unwrap_or_default());
    let key_file = match (&raw.key_file, key_file) {
        (None, _) => None,
        (Some(_), found) => found?,
    };
    Some(Config {
        data_dir,
        key_file,
        store: store?,
        http: http?,
        sip: sip?,
        irma: irma?,
        calls: calls?,
        links: links?,
        api_token: api_token?,
        tenants: tenants?,
        agents,
    })
}

pub(super) struct Checker<'s, 'a> {
    pub(super) source: &'s Source<'a>,
    pub(super) errors: &'s mut Vec<ConfigError>,
    pub(super) base: PathBuf,
}

impl Checker<'_, '_> {
    pub(super) fn invalid(&mut self, span: &Range<usize>, key: &str, problem: impl Into<String>) {
        self.errors.push(ConfigError::Invalid {
            at: self.source.locate(span),
            key: key.to_owned(),
            problem: problem.into(),
        });
    }

    pub(super) fn missing(&mut self, span: &Range<usize>, key: &str, why: &str) {
        self.errors.push(ConfigError::Missing {
            at: self.source.locate(span),
            key: key.to_owned(),
            why: why.to_owned(),
        });
    }

    /// Parses a present value with `parse`, reporting its error at the value.
    pub(super) fn parse<T>(
        &mut self,
        value: &Spanned<String>,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        match parse(value.get_ref()) {
            Ok(parsed) => Some(parsed),
            Err(problem) => {
                self.invalid(&value.span(), key, problem);
                None
            }
        }
    }

    /// `value` parsed, `default` parsed when absent.
    pub(super) fn or_default<T>(
        &mut self,
        value: &Option<Spanned<String>>,
        default: &str,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        match value {
            Some(value) => self.parse(value, key, parse),
            None => parse(default).ok(),
        }
    }

    /// A required value.
    pub(super) fn required<'v, T>(
        &mut self,
        value: &'v Option<Spanned<T>>,
        table: &Range<usize>,
        key: &str,
    ) -> Option<&'v Spanned<T>> {
        if value.is_none() {
            self.missing(table, key, "");
        }
        value.as_ref()
    }

    /// A required, non-empty string.
    pub(super) fn text(
        &mut self,
        value: &Option<Spanned<String>>,
        table: &Range<usize>,
        key: &str,
    ) -> Option<String> {
        let value = self.required(value, table, key)?;
        self.parse(value, key, |s| {
            if s.trim().is_empty() {
                Err("must not be empty".to_owned())
            } else {
                Ok(s.to_owned())
            }
        })
    }

    pub(super) fn path(&self, value: &Spanned<String>) -> PathBuf {
        self.base.join(value.get_ref())
    }

    /// A secret given inline as `<prefix><name>` or read from `<prefix><name>_file` (trailing
    /// newline trimmed): exactly one of the two, at least `min_len` characters.
    pub(super) fn secret(
        &mut self,
        inline: &Option<Spanned<String>>,
        file: &Option<Spanned<String>>,
        prefix: &str,
        name: &str,
        table: &Range<usize>,
        min_len: usize,
    ) -> Option<Pii<String>> {
        let key = format!("{prefix}{name}");
        let file_key = format!("{key}_file");
        let (value, span, at_key) = match (inline, file) {
            (Some(_), Some(f)) => {
                self.invalid(
                    &f.span(),
                    &file_key,
                    format!("set `{key}` or `{file_key}`, not both"),
                );
                return None;
            }
            (None, None) => {
                self.missing(table, &key, &format!("or `{file_key}`"));
                return None;
            }
            (Some(value), None) => (value.get_ref().clone(), value.span(), key),
            (None, Some(f)) => {
                let path = self.path(f);
                match std::fs::read_to_string(&path) {
                    Ok(text) => (trim_newline(text), f.span(), file_key),
                    Err(source) => {
                        self.errors.push(ConfigError::SecretFile {
                            at: self.source.locate(&f.span()),
                            key: file_key,
                            path,
                            source,
                        });
                        return None;
                    }
                }
            }
        };
        if value.chars().count() < min_len {
            self.invalid(
                &span,
                &at_key,
                format!("too short: use at least {min_len} characters"),
            );
            return None;
        }
        if value.chars().any(char::is_control) {
            self.invalid(&span, &at_key, "contains control characters");
            return None;
        }
        Some(Pii::new(value))
    }

    /// A certificate and key pair, both or neither; loaded to prove they fit.
    fn tls_pair(
        &mut self,
        cert: &Option<Spanned<String>>,
        key: &Option<Spanned<String>>,
        prefix: &str,
        table: &Range<usize>,
    ) -> Result<Option<TlsConfig>, ()> {
        match (cert, key) {
            (None, None) => Ok(None),
            (Some(_), None) => {
                self.missing(table, &format!("{prefix}.tls_key"), "with `tls_cert`");
                Err(())
            }
            (None, Some(_)) => {
                self.missing(table, &format!("{prefix}.tls_cert"), "with `tls_key`");
                Err(())
            }
            (Some(cert), Some(key)) => {
                let tls = TlsConfig {
                    cert_chain: self.path(cert),
                    private_key: self.path(key),
                };
                match crate::sip_driver::tls::acceptor(&tls) {
                    Ok(_) => Ok(Some(tls)),
                    Err(e) => {
                        self.invalid(&cert.span(), &format!("{prefix}.tls_cert"), e.to_string());
                        Err(())
                    }
                }
            }
        }
    }

    fn http(&mut self, raw: Option<Spanned<RawHttp>>) -> Option<HttpSettings> {
        let span = raw.as_ref().map_or(0..0, Spanned::span);
        let raw = raw.map(Spanned::into_inner).unwrap_or_default();
        let listen = self.or_default(&raw.listen, DEFAULT_HTTP_LISTEN, "http.listen", socket_addr);
        let tls = self.tls_pair(&raw.tls_cert, &raw.tls_key, "http", &span);
        let trusted_proxies: Vec<Option<ipnet::IpNet>> = raw
            .trusted_proxies
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, p)| self.parse(p, &format!("http.trusted_proxies[{i}]"), trusted_proxy))
            .collect();
        Some(HttpSettings {
            listen: listen?,
            tls: tls.ok()?,
            trusted_proxies: trusted_proxies.into_iter().collect::<Option<_>>()?,
        })
    }

    fn sip(&mut self, raw: Option<Spanned<RawSip>>) -> Option<SipSettings> {
        let span = raw.as_ref().map_or(0..0, Spanned::span);
        let raw = raw.map(Spanned::into_inner).unwrap_or_default();
        let listen = self.or_default(&raw.listen, DEFAULT_SIP_LISTEN, "sip.listen", socket_addr);
        let tls_listen = raw
            .tls_listen
            .as_ref()
            .map(|v| self.parse(v, "sip.tls_listen", socket_addr));
        let tls = self.tls_pair(&raw.tls_cert, &raw.tls_key, "sip", &span);
        let tls_ok = match (&tls_listen, &tls) {
            (Some(_), Ok(None)) => {
                self.missing(
                    &span,
                    "sip.tls_cert",
                    "`tls_listen` needs `tls_cert` and `tls_key`",
                );
                false
            }
            (None, Ok(Some(_))) => {
                self.missing(
                    &span,
                    "sip.tls_listen",
                    "`tls_cert` and `tls_key` are only used by it",
                );
                false
            }
            (_, Ok(_)) => true,
            (_, Err(())) => false,
        };
        let trunks: Vec<Option<ipnet::IpNet>> = raw
            .trunks
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, t)| self.parse(t, &format!("sip.trunks[{i}]"), cidr))
            .collect();
        let unknown_sources = self.or_default(
            &raw.unknown_sources,
            "drop",
            "sip.unknown_sources",
            |s| match s {
                "drop" => Ok(UnknownSources::Drop),
                "reject" => Ok(UnknownSources::Reject),
                other => Err(format!("{other:?} is not `drop` or `reject`")),
            },
        );
        let trunk_srtp = self.or_default(&raw.trunk_srtp, "off", "sip.trunk_srtp", |s| match s {
            "off" => Ok(false),
            "accept" => Ok(true),
            other => Err(format!("{other:?} is not `off` or `accept`")),
        });
        let advertise = raw
            .advertise
            .as_ref()
            .map(|v| self.parse(v, "sip.advertise", host));
        let media_ip = raw
            .media_ip
            .as_ref()
            .map(|v| self.parse(v, "sip.media_ip", media_ip));
        let webrtc_ip = raw
            .webrtc_ip
            .as_ref()
            .map(|v| self.parse(v, "sip.webrtc_ip", super::values::media_ip));
        let webrtc_public_ip = raw
            .webrtc_public_ip
            .as_ref()
            .map(|v| self.parse(v, "sip.webrtc_public_ip", super::values::media_ip));
        let rtp_ports = self.or_default(
            &raw.rtp_ports,
            DEFAULT_RTP_PORTS,
            "sip.rtp_ports",
            crate::cli::parse_port_range,
        );
        let realm = self.or_default(&raw.realm, DEFAULT_REALM, "sip.realm", realm);
        let digest_algorithms = match &raw.digest_algorithms {
            None => Some(vec![
                sip::auth::Algorithm::Sha256,
                sip::auth::Algorithm::Md5,
            ]),
            Some(list) if list.is_empty() => {
                self.invalid(
                    &span,
                    "sip.digest_algorithms",
                    "name at least one of SHA-256, MD5",
                );
                None
            }
            Some(list) => list
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    self.parse(a, &format!("sip.digest_algorithms[{i}]"), |s| {
                        sip::auth::Algorithm::parse(s)
                            .ok_or_else(|| format!("{s:?} is not SHA-256 or MD5"))
                    })
                })
                .collect(),
        };
        let streams = self.stream_limits(&raw);
        let message_rate = self.message_rate(&raw);
        Some(SipSettings {
            listen: listen?,
            tls_listen: tls_listen.flatten(),
            tls: if tls_ok { tls.ok()? } else { return None },
            trunks: trunks.into_iter().collect::<Option<_>>()?,
            unknown_sources: unknown_sources?,
            trunk_srtp: trunk_srtp?,
            advertise: advertise.map(|a| a.ok_or(())).transpose().ok()?,
            media_ip: media_ip.map(|a| a.ok_or(())).transpose().ok()?,
            webrtc_ip: webrtc_ip.map(|a| a.ok_or(())).transpose().ok()?,
            webrtc_public_ip: webrtc_public_ip.map(|a| a.ok_or(())).transpose().ok()?,
            rtp_ports: rtp_ports?,
            realm: realm?,
            digest_algorithms: digest_algorithms?,
            streams: streams?,
            message_rate: message_rate?,
        })
    }

    fn message_rate(&mut self, raw: &RawSip) -> Option<sip::ratelimit::RateConfig> {
        let defaults = sip::ratelimit::RateConfig::default();
        let per_second = self.count(
            &raw.messages_per_second_per_address,
            "sip.messages_per_second_per_address",
            defaults.per_second,
            1,
            100_000,
        );
        let burst = self.count(
            &raw.message_burst_per_address,
            "sip.message_burst_per_address",
            defaults.burst,
            1,
            1_000_000,
        );
        Some(sip::ratelimit::RateConfig {
            per_second: per_second?,
            burst: burst?,
            ..defaults
        })
    }

    /// `sip.max_connections`, `sip.max_connections_per_address` (at most the former) and
    /// `sip.first_message_timeout`.
    fn stream_limits(&mut self, raw: &RawSip) -> Option<StreamLimits> {
        let defaults = StreamLimits::default();
        let total = self.count(
            &raw.max_connections,
            "sip.max_connections",
            clamp_u32(defaults.max_connections),
            1,
            MAX_SIP_CONNECTIONS,
        );
        let per_address = self.count(
            &raw.max_connections_per_address,
            "sip.max_connections_per_address",
            clamp_u32(defaults.max_connections_per_address),
            1,
            total.unwrap_or(MAX_SIP_CONNECTIONS),
        );
        let first_message = match &raw.first_message_timeout {
            None => Some(defaults.first_message_timeout),
            Some(v) => self.parse(v, "sip.first_message_timeout", |s| {
                duration(s, Duration::from_secs(1), Duration::from_secs(600))
            }),
        };
        Some(StreamLimits {
            max_connections: usize::try_from(total?).ok()?,
            max_connections_per_address: usize::try_from(per_address?).ok()?,
            first_message_timeout: first_message?,
            ..defaults
        })
    }

    fn irma(&mut self, raw: Spanned<RawIrma>) -> Option<IrmaSettings> {
        let span = raw.span();
        let raw = raw.into_inner();
        let url = self
            .required(&raw.url, &span, "irma.url")
            .cloned()
            .and_then(|url| {
                self.parse(&url, "irma.url", irma_url)
                    .map(|u| (u, url.span()))
            });
        let auth = self.irma_auth(&raw, &span);
        let request_timeout =
            self.or_default(&raw.request_timeout, "10s", "irma.request_timeout", |s| {
                duration(s, Duration::from_millis(100), Duration::from_secs(120))
            });
        let result_public_key_file = raw.result_public_key_file.as_ref().and_then(|f| {
            let path = self.path(f);
            match std::fs::read(&path) {
                Ok(pem) => match jsonwebtoken::DecodingKey::from_rsa_pem(&pem) {
                    Ok(_) => Some(Some((path, pem))),
                    Err(e) => {
                        self.invalid(
                            &f.span(),
                            "irma.result_public_key_file",
                            format!("{} is not a PEM RSA public key: {e}", path.display()),
                        );
                        None
                    }
                },
                Err(source) => {
                    self.errors.push(ConfigError::SecretFile {
                        at: self.source.locate(&f.span()),
                        key: "irma.result_public_key_file".into(),
                        path,
                        source,
                    });
                    None
                }
            }
        });
        let (url, url_span) = url?;
        let result_jwt = match &result_public_key_file {
            Some(Some((_, pem))) => Some(crate::irma::ResultJwtKey {
                public_key_pem: pem.clone(),
                issuer: raw.result_issuer.as_ref().map_or_else(
                    || "irmaserver".to_owned(),
                    |i| i.get_ref().trim().to_owned(),
                ),
            }),
            _ => None,
        };
        let server = IrmaServerConfig {
            url,
            auth: auth?,
            request_timeout: request_timeout?,
            retries: 2,
            result_jwt,
        };
        // Builds the client once, as `serve` will: proves the token is a valid header value and
        // the key can sign.
        if let Err(e) = IrmaClient::new(server.clone()) {
            self.invalid(&url_span, "irma", e.to_string());
            return None;
        }
        Some(IrmaSettings {
            server,
            result_public_key_file: match (raw.result_public_key_file, result_public_key_file) {
                (None, _) => None,
                (Some(_), Some(found)) => found.map(|(path, _)| path),
                (Some(_), None) => return None,
            },
        })
    }

    /// Exactly one of `token`, `token_file`, `jwt_key_file` (with `requestor`).
    fn irma_auth(&mut self, raw: &RawIrma, span: &Range<usize>) -> Option<IrmaAuth> {
        let given = [&raw.token, &raw.token_file, &raw.jwt_key_file]
            .iter()
            .filter(|v| v.is_some())
            .count();
        if given > 1 {
            self.invalid(
                span,
                "irma",
                "set one of `token`, `token_file`, `jwt_key_file` (with `requestor`), not several",
            );
            return None;
        }
        if let Some(requestor) = &raw.requestor {
            if raw.jwt_key_file.is_none() {
                self.invalid(
                    &requestor.span(),
                    "irma.requestor",
                    "only used with `jwt_key_file`",
                );
                return None;
            }
        }
        if let Some(key_file) = &raw.jwt_key_file {
            let requestor = self.text(&raw.requestor, span, "irma.requestor")?;
            let path = self.path(key_file);
            let bytes = match std::fs::read(&path) {
                Ok(bytes) => bytes,
                Err(source) => {
                    self.errors.push(ConfigError::SecretFile {
                        at: self.source.locate(&key_file.span()),
                        key: "irma.jwt_key_file".into(),
                        path,
                        source,
                    });
                    return None;
                }
            };
            if bytes.windows(11).any(|w| w == b"-----BEGIN ") {
                return Some(IrmaAuth::Rs256 {
                    issuer: requestor,
                    pem: bytes,
                });
            }
            use base64::Engine;
            let text = String::from_utf8_lossy(&bytes);
            return match base64::engine::general_purpose::STANDARD.decode(text.trim()) {
                Ok(key) if !key.is_empty() => Some(IrmaAuth::Hs256 {
                    issuer: requestor,
                    key,
                }),
                _ => {
                    self.invalid(
                        &key_file.span(),
                        "irma.jwt_key_file",
                        format!(
                            "{} holds neither a PEM RSA private key (RS256) nor a base64 HMAC key (HS256)",
                            path.display()
                        ),
                    );
                    None
                }
            };
        }
        let token = self.secret(&raw.token, &raw.token_file, "irma.", "token", span, 1)?;
        Some(IrmaAuth::Token(token.into_inner()))
    }

    fn calls(
        &mut self,
        raw: Option<Spanned<RawCalls>>,
        sip: Option<&SipSettings>,
    ) -> Option<CallFlowConfig> {
        let raw = raw.map(Spanned::into_inner).unwrap_or_default();
        let defaults = CallConfig::default();
        let mut timeout = |value: &Option<Spanned<String>>, default: &str, key: &str, max: u64| {
            self.or_default(value, default, key, |s| {
                duration(s, Duration::from_secs(1), Duration::from_secs(max))
            })
        };
        let first_digit = timeout(
            &raw.first_digit_timeout,
            "10s",
            "calls.first_digit_timeout",
            300,
        );
        let digit = timeout(&raw.digit_timeout, "5s", "calls.digit_timeout", 300);
        let max_wait = timeout(&raw.max_wait, "10m", "calls.max_wait", 24 * 3600);
        let ring = timeout(&raw.ring_timeout, "20s", "calls.ring_timeout", 600);
        let grace = timeout(&raw.shutdown_grace, "30s", "calls.shutdown_grace", 3600);
        let transfer = self.or_default(&raw.transfer, "bridge", "calls.transfer", |s| match s {
            "bridge" => Ok(TransferMode::Bridge),
            "refer" => Ok(TransferMode::Refer),
            other => Err(format!("{other:?} is not `bridge` or `refer`")),
        });
        let media = self.or_default(&raw.media, "relay", "calls.media", |s| match s {
            "relay" => Ok(AgentMedia::Relay),
            "direct" => Ok(AgentMedia::Direct),
            other => Err(format!("{other:?} is not `relay` or `direct`")),
        });
        let max_calls = self
            .count(
                &raw.max_calls,
                "calls.max_calls",
                clamp_u32(CallFlowConfig::default().max_calls),
                1,
                100_000,
            )
            .map(|n| n as usize);
        // 0: one per core.
        let media_threads = self
            .count(&raw.media_threads, "calls.media_threads", 0, 1, 64)
            .map(|n| n as usize);
        let media_io = self.or_default(&raw.media_io, "io_uring", "calls.media_io", |s| match s {
            "io_uring" => Ok(true),
            "tokio" => Ok(false),
            other => Err(format!("{other:?} is not `io_uring` or `tokio`")),
        });
        let media_io = match (media_io?, media_threads?) {
            (true, threads) => crate::media_plane::MediaIo::Uring { threads },
            (false, _) => crate::media_plane::MediaIo::Tokio,
        };
        let sip = sip?;
        Some(CallFlowConfig {
            media_io,
            call: CallConfig {
                collect: CollectConfig {
                    first_digit_timeout: first_digit?,
                    inter_digit_timeout: digit?,
                    ..CollectConfig::default()
                },
                max_wait: max_wait?,
                agent_ring_timeout: ring?,
                transfer: transfer?,
                ..defaults
            },
            trunks: sip.trunks.clone(),
            unknown_sources: sip.unknown_sources,
            trunk_srtp: sip.trunk_srtp,
            rtp_ports: sip.rtp_ports.clone(),
            media_ip: sip.media_ip,
            webrtc_ip: sip.webrtc_ip,
            webrtc_public_ip: sip.webrtc_public_ip,
            max_calls: max_calls?,
            agent_media: media?,
            shutdown_grace: grace?,
            contact_host: sip.advertise.clone(),
            ..CallFlowConfig::default()
        })
    }
}

fn clamp_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// One `http.trusted_proxies` entry: a CIDR or an address, but not every address (that would let
/// any client write its own address into `X-Forwarded-For`).
fn trusted_proxy(s: &str) -> Result<ipnet::IpNet, String> {
    let net = cidr(s)?;
    if net.prefix_len() == 0 {
        return Err(format!(
            "{s:?} trusts every address, so any client could choose its own; list the proxies"
        ));
    }
    Ok(net)
}

fn trim_newline(mut text: String) -> String {
    while text.ends_with('\n') || text.ends_with('\r') {
        text.pop();
    }
    text
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::load_str;
    use super::*;
    use std::path::Path;

    /// A small valid file; tests change one thing at a time.
    pub const MINIMAL: &str = r#"
api_token = "0123456789abcdef-token"
[irma]
url = "https://irma.example.nl"
token = "requestor-token"
[[tenants]]
id = "arnhem"
name = "Gemeente Arnhem"
numbers = ["+31263770000"]
website_origins = ["https://www.arnhem.nl"]
disclosure = [[["pbdf.gemeente.personalData.bsn"]]]
[[tenants.attributes]]
id = "pbdf.gemeente.personalData.bsn"
label_nl = "BSN"
label_en = "Citizen service number"
[[tenants.links]]
label = "Zaaksysteem"
url = "https://zaak.arnhem.nl/persoon?bsn={pbdf.gemeente.personalData.bsn}"
[[tenants.agents]]
username = "jan"
name = "Jan de Vries"
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$2nK4GvT2KPQxkjaYGDm2PQKq3JSPwvJMHuV3tAbU3vE"
sip_password = "jan-phone-secret"
"#;

    fn errors_of(text: &str) -> Vec<String> {
        match load_str(text, Path::new("vb.toml"), Vec::new()) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    /// `MINIMAL` with `from` replaced by `to`; the errors it gives.
    fn with(from: &str, to: &str) -> Vec<String> {
        assert!(MINIMAL.contains(from), "{from}");
        errors_of(&MINIMAL.replacen(from, to, 1))
    }

    fn line_of(needle: &str) -> usize {
        MINIMAL
            .lines()
            .position(|l| l.contains(needle))
            .map(|i| i + 1)
            .unwrap()
    }

    #[test]
    fn the_minimal_file_loads_with_defaults() {
        let config = load_str(MINIMAL, Path::new("/etc/vb/vb.toml"), Vec::new()).unwrap();
        assert_eq!(config.http.listen.to_string(), DEFAULT_HTTP_LISTEN);
        assert_eq!(config.sip.listen.to_string(), DEFAULT_SIP_LISTEN);
        assert_eq!(config.data_dir, Path::new(DEFAULT_DATA_DIR));
        assert_eq!(
            config.calls.call.collect.inter_digit_timeout,
            Duration::from_secs(5)
        );
        assert_eq!(config.agents.len(), 1);
        assert_eq!(config.agents[0].tenant.0, "arnhem");
        let server = config.server_config();
        assert!(!server.demo_pages);
        assert!(matches!(server.irma, crate::server::IrmaBackend::Server(_)));
        assert_eq!(server.sip.credentials.len(), 1);
        assert_eq!(server.sip.credentials[0].password, "jan-phone-secret");
        let tenant = server.tenants.for_called("+31263770000").unwrap();
        assert_eq!(
            tenant.phone_number, "+31263770000",
            "callback defaults to the first number"
        );
        assert!(
            !format!("{config:?}").contains("jan-phone-secret"),
            "secrets are redacted"
        );
        assert!(!format!("{config:?}").contains("requestor-token"));
        assert!(!format!("{config:?}").contains("0123456789abcdef-token"));
    }

    #[test]
    fn trusted_proxies_are_addresses_or_cidrs_but_not_everyone() {
        let default = load_str(MINIMAL, Path::new("vb.toml"), Vec::new()).unwrap();
        assert!(default.server_config().trusted_proxies.is_empty());
        let text = MINIMAL.replacen(
            "[irma]\n",
            "[http]\ntrusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\", \"2001:db8::/48\"]\n[irma]\n",
            1,
        );
        let config = load_str(&text, Path::new("vb.toml"), Vec::new()).unwrap();
        let trusted = config.server_config().trusted_proxies;
        assert_eq!(trusted.nets().len(), 3);
        for (ip, is) in [
            ("127.0.0.1", true),
            ("127.0.0.2", false),
            ("10.9.8.7", true),
            ("2001:db8:0:ffff::1", true),
            ("2001:db8:1::1", false),
        ] {
            assert_eq!(trusted.contains(ip.parse().unwrap()), is, "{ip}");
        }
        let env = vec![(
            "VEILIG_BELLEN_HTTP__TRUSTED_PROXIES".to_owned(),
            "[\"192.0.2.1\"]".to_owned(),
        )];
        let config = load_str(MINIMAL, Path::new("vb.toml"), env).unwrap();
        let trusted = config.server_config().trusted_proxies;
        assert!(trusted.contains("192.0.2.1".parse().unwrap()));

        let errors = with(
            "[irma]\n",
            "[http]\ntrusted_proxies = [\"127.0.0.1\", \"proxy.example\", \"::/0\"]\n[irma]\n",
        );
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].contains("`http.trusted_proxies[1]`") && errors[0].contains("not a CIDR"),
            "{errors:?}"
        );
        assert!(
            errors[1].contains("`http.trusted_proxies[2]`")
                && errors[1].contains("trusts every address"),
            "{errors:?}"
        );
    }

    #[test]
    fn an_unknown_key_names_file_line_and_key() {
        let errors = with("[irma]\n", "[irma]\nurll = \"x\"\n");
        assert_eq!(errors.len(), 1, "{errors:?}");
        let line = line_of("[irma]") + 1;
        assert!(
            errors[0].starts_with(&format!("vb.toml:{line}:1: unknown key `irma.urll`")),
            "{errors:?}"
        );
        assert!(
            errors[0].contains("`url`"),
            "lists the allowed keys: {errors:?}"
        );
    }

    #[test]
    fn every_error_is_reported_not_just_the_first() {
        let text = MINIMAL
            .replacen(
                "numbers = [\"+31263770000\"]",
                "numbers = [\"0263770000\"]",
                1,
            )
            .replacen(
                "sip_password = \"jan-phone-secret\"",
                "sip_password = \"short\"",
                1,
            )
            .replacen("[irma]\n", "[http]\nlisten = \"localhost\"\n[irma]\n", 1);
        let errors = errors_of(&text);
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors.iter().any(|e| e.contains("`http.listen`")));
        assert!(errors.iter().any(|e| e.contains("`tenants[0].numbers[0]`")));
        assert!(errors
            .iter()
            .any(|e| e.contains("`tenants[0].agents[0].sip_password`: too short")));
    }

    #[test]
    fn a_bad_address_is_refused() {
        let errors = with("[irma]\n", "[sip]\nlisten = \"0.0.0.0\"\n[irma]\n");
        assert_eq!(errors.len(), 1, "{errors:?}");
        let line = line_of("[irma]") + 1;
        assert!(
            errors[0].starts_with(&format!(
                "vb.toml:{line}:10: `sip.listen`: \"0.0.0.0\" is not an address"
            )),
            "{errors:?}"
        );
        let errors = with("[irma]\n", "[sip]\ntrunks = [\"192.0.2.300/32\"]\n[irma]\n");
        assert!(errors[0].contains("`sip.trunks[0]`"), "{errors:?}");
    }

    #[test]
    fn a_number_not_in_e164_is_refused() {
        let errors = with(
            "numbers = [\"+31263770000\"]",
            "numbers = [\"+31 26 377 0000\"]",
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0]
                .contains("`tenants[0].numbers[0]`: \"+31 26 377 0000\" is not an E.164 number"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_template_naming_an_unlisted_attribute_is_refused() {
        let errors = with(
            "persoon?bsn={pbdf.gemeente.personalData.bsn}",
            "persoon?naam={pbdf.gemeente.personalData.fullname}",
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        let line = line_of("https://zaak.arnhem.nl");
        assert!(
            errors[0].starts_with(&format!("vb.toml:{line}:7: `tenants[0].links[0].url`")),
            "{errors:?}"
        );
        assert!(
            errors[0].contains("not one of this tenant's attributes"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_disclosure_of_an_unlisted_attribute_is_refused() {
        let errors = with(
            "disclosure = [[[\"pbdf.gemeente.personalData.bsn\"]]]",
            "disclosure = [[[\"pbdf.gemeente.personalData.bsn\", \"pbdf.x.y.z\"]]]",
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("pbdf.x.y.z is not one of this tenant's attributes"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_bad_argon2_hash_is_refused() {
        let errors = with("$argon2id$v=19$m=19456", "$argon2i$v=19$m=19456");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains(
                "`tenants[0].agents[0].password_hash`: algorithm argon2i is not argon2id"
            ),
            "{errors:?}"
        );
        let errors = with("$argon2id$v=19$m=19456", "argon2id-but-not-really$m=19456");
        assert!(
            errors[0].contains("not an argon2id PHC string"),
            "{errors:?}"
        );
    }

    #[test]
    fn plain_http_to_a_non_loopback_irma_server_is_refused() {
        let errors = with("https://irma.example.nl", "http://irma.example.nl");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("`irma.url`") && errors[0].contains("plain http is refused"),
            "{errors:?}"
        );
        assert!(with("https://irma.example.nl", "http://127.0.0.1:8088").is_empty());
        assert!(with("https://irma.example.nl", "http://localhost:8088").is_empty());
        assert!(with("https://irma.example.nl", "http://[::1]:8088").is_empty());
    }

    #[test]
    fn a_missing_secret_file_names_key_and_path() {
        let errors = with(
            "sip_password = \"jan-phone-secret\"",
            "sip_password_file = \"secrets/jan.sip\"",
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0]
                .contains("`tenants[0].agents[0].sip_password_file`: cannot read secrets/jan.sip"),
            "{errors:?}"
        );
    }

    #[test]
    fn secret_files_are_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("jan.sip"), "from-a-file-secret\n").unwrap();
        std::fs::write(dir.path().join("api"), "api-token-from-a-file\r\n").unwrap();
        let text = MINIMAL
            .replacen(
                "sip_password = \"jan-phone-secret\"",
                "sip_password_file = \"jan.sip\"",
                1,
            )
            .replacen(
                "api_token = \"0123456789abcdef-token\"",
                "api_token_file = \"api\"",
                1,
            );
        let config = load_str(&text, &dir.path().join("vb.toml"), Vec::new()).unwrap();
        assert_eq!(config.agents[0].sip_password.expose(), "from-a-file-secret");
        assert_eq!(config.api_token.expose(), "api-token-from-a-file");
        let both = MINIMAL.replacen(
            "sip_password =",
            "sip_password_file = \"x\"\nsip_password =",
            1,
        );
        assert!(errors_of(&both)[0].contains("not both"));
    }

    #[test]
    fn missing_keys_are_all_named() {
        let errors = errors_of("[irma]\n");
        assert!(
            errors.iter().any(|e| e.contains("`api_token` is required")),
            "{errors:?}"
        );
        assert!(
            errors.iter().any(|e| e.contains("`irma.url` is required")),
            "{errors:?}"
        );
        assert!(
            errors.iter().any(|e| e.contains("`tenants` is required")),
            "{errors:?}"
        );
    }

    #[test]
    fn duplicates_across_tenants_are_refused() {
        let second = MINIMAL
            .split_once("[[tenants]]")
            .map(|(_, t)| format!("[[tenants]]{t}"))
            .unwrap();
        let errors = errors_of(&format!("{MINIMAL}{second}"));
        assert!(
            errors
                .iter()
                .any(|e| e.contains("+31263770000 already routes")),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("agent jan is defined twice")),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("tenant `arnhem` is defined twice")),
            "{errors:?}"
        );
    }

    #[test]
    fn a_key_file_must_be_a_private_32_byte_key() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("attribute.key");
        std::fs::write(&key, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let text = format!("key_file = {:?}\n{MINIMAL}", key.display().to_string());
        let config = load_str(&text, Path::new("vb.toml"), Vec::new()).unwrap();
        assert_eq!(config.key_file.as_deref(), Some(key.as_path()));
        assert_eq!(
            config.server_config().key_file.as_deref(),
            Some(key.as_path())
        );
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let errors = errors_of(&text);
        assert!(
            errors
                .iter()
                .any(|e| e.contains("`key_file`") && e.contains("chmod 600")),
            "{errors:?}"
        );
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&key, "too short").unwrap();
        let errors = errors_of(&text);
        assert!(errors.iter().any(|e| e.contains("32 bytes")), "{errors:?}");
    }

    #[test]
    fn tenant_prompts_are_loaded_and_bad_recordings_refused_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let wav = |name: &str, rate: u32, channels: u16, secs: f32| {
            let path = dir.path().join(name);
            let spec = hound::WavSpec {
                channels,
                sample_rate: rate,
                bits_per_sample: 16,
                sample_format: hound::SampleFormat::Int,
            };
            let mut w = hound::WavWriter::create(&path, spec).unwrap();
            for i in 0..(secs * rate as f32) as u32 * u32::from(channels) {
                w.write_sample(((i % 40) as i16 - 20) * 300).unwrap();
            }
            w.finalize().unwrap();
            path.display().to_string()
        };
        let good = wav("welkom.wav", 8000, 1, 1.5);
        let cd = wav("cd.wav", 44100, 2, 0.5);
        let with = |prompts: &str| {
            format!(
                "{MINIMAL}[tenants.prompts]\n{prompts}[tenants.calls]\nfirst_digit_timeout = \"20s\"\nmax_wait = \"3m\"\n"
            )
        };
        let config = load_str(
            &with(&format!("greeting = {good:?}\nwaiting = {good:?}\n")),
            Path::new("vb.toml"),
            Vec::new(),
        )
        .unwrap();
        let tenant = config.tenants.iter().next().unwrap();
        assert_eq!(
            tenant.prompts.greeting.as_ref().map(|p| p.len()),
            Some(12_000)
        );
        assert!(tenant.prompts.goodbye.is_none(), "not given: the busy tone");
        let call = tenant.timeouts.apply(&config.calls.call);
        assert_eq!(call.collect.first_digit_timeout, Duration::from_secs(20));
        assert_eq!(call.max_wait, Duration::from_secs(180));
        assert_eq!(
            call.collect.inter_digit_timeout, config.calls.call.collect.inter_digit_timeout,
            "what the tenant does not set stays the install's"
        );
        // A CD-rate recording is resampled to 8 kHz at start: half a second stays half a second.
        let config = load_str(
            &with(&format!("goodbye = {cd:?}\n")),
            Path::new("vb.toml"),
            Vec::new(),
        )
        .unwrap();
        let goodbye = config
            .tenants
            .iter()
            .next()
            .unwrap()
            .prompts
            .goodbye
            .clone();
        let len = goodbye.map_or(0, |p| p.len());
        assert!(
            (3500..=4100).contains(&len),
            "{len} samples at 8 kHz for 0.5 s"
        );
        // What cannot be resampled (8-bit here) is refused with the key and the fix.
        let eight_bit = {
            let path = dir.path().join("eight.wav");
            let spec = hound::WavSpec {
                channels: 1,
                sample_rate: 22050,
                bits_per_sample: 8,
                sample_format: hound::SampleFormat::Int,
            };
            let mut w = hound::WavWriter::create(&path, spec).unwrap();
            for i in 0..11025u32 {
                w.write_sample((i % 50) as i8).unwrap();
            }
            w.finalize().unwrap();
            path.display().to_string()
        };
        let errors = errors_of(&with(&format!("goodbye = {eight_bit:?}\n")));
        assert!(
            errors
                .iter()
                .any(|e| e.contains("tenants[0].prompts.goodbye") && e.contains("sox")),
            "{errors:?}"
        );
        let errors = errors_of(&with("greeting = \"/nonexistent/welkom.wav\"\n"));
        assert!(
            errors
                .iter()
                .any(|e| e.contains("tenants[0].prompts.greeting")),
            "{errors:?}"
        );
    }

    #[test]
    fn a_result_public_key_makes_the_irma_client_check_signed_results() {
        let key = format!(
            "{}/fixtures/irma/test-requestor-rs256.pub.pem",
            env!("CARGO_MANIFEST_DIR")
        );
        let with_irma = |extra: &str| {
            MINIMAL.replacen(
                "[irma]\n",
                &format!("[irma]\nresult_public_key_file = {key:?}\n{extra}"),
                1,
            )
        };
        assert!(
            MINIMAL.contains("[irma]\n"),
            "the minimal config has an [irma] table"
        );
        let config = load_str(&with_irma(""), Path::new("vb.toml"), Vec::new()).unwrap();
        let check = config
            .irma
            .server
            .result_jwt
            .as_ref()
            .expect("result JWT check");
        assert_eq!(check.issuer, "irmaserver", "irmago's default jwt_issuer");
        let config = load_str(
            &with_irma("result_issuer = \"irma.arnhem.nl\"\n"),
            Path::new("vb.toml"),
            Vec::new(),
        )
        .unwrap();
        assert_eq!(
            config
                .irma
                .server
                .result_jwt
                .as_ref()
                .map(|k| k.issuer.as_str()),
            Some("irma.arnhem.nl")
        );
        let plain = load_str(MINIMAL, Path::new("vb.toml"), Vec::new()).unwrap();
        assert!(plain.irma.server.result_jwt.is_none());
    }

    #[test]
    fn calls_timeouts_map_to_the_call_flow() {
        let text = format!(
            "{MINIMAL}\n[calls]\nfirst_digit_timeout = \"15s\"\ndigit_timeout = \"7s\"\nmax_wait = \"5m\"\nring_timeout = \"30s\"\ntransfer = \"refer\"\nmedia = \"direct\"\nmax_calls = 40\n"
        );
        let config = load_str(&text, Path::new("vb.toml"), Vec::new()).unwrap();
        let call = &config.calls.call;
        assert_eq!(call.collect.first_digit_timeout, Duration::from_secs(15));
        assert_eq!(call.collect.inter_digit_timeout, Duration::from_secs(7));
        assert_eq!(call.max_wait, Duration::from_secs(300));
        assert_eq!(call.agent_ring_timeout, Duration::from_secs(30));
        assert_eq!(call.transfer, TransferMode::Refer);
        assert_eq!(config.calls.agent_media, AgentMedia::Direct);
        assert_eq!(config.calls.max_calls, 40);
        let errors = errors_of(&format!("{MINIMAL}\n[calls]\ndigit_timeout = \"soon\"\n"));
        assert!(errors[0].contains("`calls.digit_timeout`"), "{errors:?}");
    }

    #[test]
    fn the_media_driver_is_io_uring_on_every_core_unless_the_config_says_otherwise() {
        use crate::media_plane::MediaIo;
        let load = |calls: &str| {
            load_str(
                &format!("{MINIMAL}\n[calls]\n{calls}"),
                Path::new("vb.toml"),
                Vec::new(),
            )
            .map(|c| c.calls.media_io)
        };
        assert_eq!(load("").unwrap(), MediaIo::Uring { threads: 0 });
        assert_eq!(
            load("media_threads = 3\n").unwrap(),
            MediaIo::Uring { threads: 3 }
        );
        assert_eq!(load("media_io = \"tokio\"\n").unwrap(), MediaIo::Tokio);
        for (bad, key) in [
            ("media_io = \"epoll\"\n", "`calls.media_io`"),
            ("media_threads = 0\n", "`calls.media_threads`"),
            ("media_threads = 65\n", "`calls.media_threads`"),
        ] {
            let errors = errors_of(&format!("{MINIMAL}\n[calls]\n{bad}"));
            assert!(errors.iter().any(|e| e.contains(key)), "{bad}: {errors:?}");
        }
    }

    #[test]
    fn sip_connection_limits_reach_the_driver() {
        let defaults = load_str(MINIMAL, Path::new("vb.toml"), Vec::new()).unwrap();
        assert_eq!(
            defaults.server_config().sip.streams,
            StreamLimits::default()
        );

        let text = MINIMAL.replacen(
            "[irma]\n",
            "[sip]\nmax_connections = 300\nfirst_message_timeout = \"15s\"\n[irma]\n",
            1,
        );
        let env = vec![(
            "VEILIG_BELLEN_SIP__MAX_CONNECTIONS_PER_ADDRESS".to_owned(),
            "64".to_owned(),
        )];
        let streams = load_str(&text, Path::new("vb.toml"), env)
            .unwrap()
            .server_config()
            .sip
            .streams;
        assert_eq!(streams.max_connections, 300);
        assert_eq!(streams.max_connections_per_address, 64);
        assert_eq!(streams.first_message_timeout, Duration::from_secs(15));
        assert_eq!(streams.idle_timeout, StreamLimits::default().idle_timeout);

        let errors = with(
            "[irma]\n",
            "[sip]\nmax_connections = 10\nmax_connections_per_address = 11\n[irma]\n",
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0]
                .contains("`sip.max_connections_per_address`: must be a whole number from 1 to 10"),
            "{errors:?}"
        );
        let errors = with(
            "[irma]\n",
            "[sip]\nmax_connections = 0\nfirst_message_timeout = \"1h\"\n[irma]\n",
        );
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("`sip.max_connections`"), "{errors:?}");
        assert!(
            errors[1].contains("`sip.first_message_timeout`"),
            "{errors:?}"
        );
    }

    #[test]
    fn trunk_srtp_is_off_unless_accepted() {
        let flow = |text: &str| {
            load_str(text, Path::new("vb.toml"), vec![]).map(|c| c.server_config().calls.trunk_srtp)
        };
        assert_eq!(flow(MINIMAL).ok(), Some(false));
        let accept = MINIMAL.replacen("[irma]\n", "[sip]\ntrunk_srtp = \"accept\"\n[irma]\n", 1);
        assert_eq!(flow(&accept).ok(), Some(true));
        let errors = with("[irma]\n", "[sip]\ntrunk_srtp = \"yes\"\n[irma]\n");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("`sip.trunk_srtp`"), "{errors:?}");
    }

    #[test]
    fn srtp_is_set_per_tenant_and_per_agent() {
        use crate::tenant::{AgentId, SrtpPolicy};
        let srtp_of = |text: &str| {
            let config = load_str(text, Path::new("vb.toml"), vec![]).unwrap();
            let tenant = config.tenants.iter().next().unwrap().clone();
            tenant.agents[&AgentId("jan".into())].srtp
        };
        assert_eq!(srtp_of(MINIMAL), SrtpPolicy::Offer);
        let tenant_wide =
            MINIMAL.replacen("disclosure = ", "srtp = \"required\"\ndisclosure = ", 1);
        assert_eq!(srtp_of(&tenant_wide), SrtpPolicy::Required);
        let agent_own = format!("{tenant_wide}srtp = \"off\"\n");
        assert_eq!(srtp_of(&agent_own), SrtpPolicy::Off);
        let errors = errors_of(&format!("{MINIMAL}srtp = \"maybe\"\n"));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("`tenants[0].agents[0].srtp`"),
            "{errors:?}"
        );
    }

    #[test]
    fn the_per_address_message_rate_is_configurable_and_checked() {
        let defaults = load_str(MINIMAL, Path::new("vb.toml"), vec![]).unwrap();
        assert_eq!(
            defaults.server_config().sip.message_rate,
            sip::ratelimit::RateConfig::default()
        );
        let text = MINIMAL.replacen(
            "[irma]\n",
            "[sip]\nmessages_per_second_per_address = 20\nmessage_burst_per_address = 40\n[irma]\n",
            1,
        );
        let rate = load_str(&text, Path::new("vb.toml"), vec![])
            .unwrap()
            .server_config()
            .sip
            .message_rate;
        assert_eq!((rate.per_second, rate.burst), (20, 40));
        let errors = with(
            "[irma]\n",
            "[sip]\nmessages_per_second_per_address = 0\n[irma]\n",
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("`sip.messages_per_second_per_address`"),
            "{errors:?}"
        );
    }

    #[test]
    fn no_truncation_or_mangling_of_a_valid_file_panics() {
        let env = || {
            vec![(
                "VEILIG_BELLEN_TENANTS__0__AGENTS__0__NAME".to_owned(),
                "Jan".to_owned(),
            )]
        };
        for (cut, _) in MINIMAL.char_indices() {
            let _ = load_str(&MINIMAL[..cut], Path::new("vb.toml"), env());
            let mangled = format!("{}\"{{[]}}=\n{}", &MINIMAL[..cut], &MINIMAL[cut..]);
            let _ = load_str(&mangled, Path::new("vb.toml"), env());
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,200}", value in "\\PC{0,40}") {
            let env = vec![("VEILIG_BELLEN_IRMA__URL".to_owned(), value)];
            let _ = load_str(&text, Path::new("vb.toml"), env);
        }
    }
}
