//! The config file as written: raw `serde` types (every key optional and [`Spanned`], unknown keys
//! refused), parsing with byte spans, and turning spans into `file:line:column` or the environment
//! variable a value came from.
//!
//! Deserialization stops at the first error serde meets. Unknown keys are the common mistake and all
//! of them should be reported at once, so [`deserialize`] removes each unknown key it is told about
//! from the document and tries again; any other error (a value of the wrong type) ends the attempt.
//! Every key is optional here, so missing keys are reported by validation, all together.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::{ConfigError, Location};

/// Unknown keys removed before giving up (a file with more is not a config file).
const MAX_UNKNOWN_KEYS: usize = 200;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub data_dir: Option<Spanned<String>>,
    pub key_file: Option<Spanned<String>>,
    pub api_token: Option<Spanned<String>>,
    pub api_token_file: Option<Spanned<String>>,
    pub http: Option<Spanned<RawHttp>>,
    pub sip: Option<Spanned<RawSip>>,
    pub irma: Option<Spanned<RawIrma>>,
    pub calls: Option<Spanned<RawCalls>>,
    pub links: Option<Spanned<RawLinks>>,
    pub store: Option<Spanned<RawStore>>,
    pub tenants: Option<Vec<Spanned<RawTenant>>>,
}

/// `[http]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub listen: Option<Spanned<String>>,
    pub tls_cert: Option<Spanned<String>>,
    pub tls_key: Option<Spanned<String>>,
    pub trusted_proxies: Option<Vec<Spanned<String>>>,
}

/// `[sip]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSip {
    pub listen: Option<Spanned<String>>,
    pub tls_listen: Option<Spanned<String>>,
    pub tls_cert: Option<Spanned<String>>,
    pub tls_key: Option<Spanned<String>>,
    pub trunks: Option<Vec<Spanned<String>>>,
    pub unknown_sources: Option<Spanned<String>>,
    pub trunk_srtp: Option<Spanned<String>>,
    pub advertise: Option<Spanned<String>>,
    pub media_ip: Option<Spanned<String>>,
    pub webrtc_ip: Option<Spanned<String>>,
    pub webrtc_public_ip: Option<Spanned<String>>,
    pub rtp_ports: Option<Spanned<String>>,
    pub realm: Option<Spanned<String>>,
    pub digest_algorithms: Option<Vec<Spanned<String>>>,
    pub max_connections: Option<Spanned<Count>>,
    pub max_connections_per_address: Option<Spanned<Count>>,
    pub first_message_timeout: Option<Spanned<String>>,
    pub messages_per_second_per_address: Option<Spanned<Count>>,
    pub message_burst_per_address: Option<Spanned<Count>>,
}

/// `[irma]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIrma {
    pub url: Option<Spanned<String>>,
    pub token: Option<Spanned<String>>,
    pub token_file: Option<Spanned<String>>,
    pub jwt_key_file: Option<Spanned<String>>,
    pub requestor: Option<Spanned<String>>,
    pub result_public_key_file: Option<Spanned<String>>,
    /// The `iss` of the IRMA server's signed results (its `jwt_issuer`; irmago's default
    /// `irmaserver`).
    pub result_issuer: Option<Spanned<String>>,
    pub request_timeout: Option<Spanned<String>>,
}

/// `[calls]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCalls {
    pub first_digit_timeout: Option<Spanned<String>>,
    pub digit_timeout: Option<Spanned<String>>,
    pub max_wait: Option<Spanned<String>>,
    pub ring_timeout: Option<Spanned<String>>,
    pub transfer: Option<Spanned<String>>,
    pub media: Option<Spanned<String>>,
    pub max_calls: Option<Spanned<Count>>,
    pub shutdown_grace: Option<Spanned<String>>,
    pub media_io: Option<Spanned<String>>,
    pub media_threads: Option<Spanned<Count>>,
}

/// `[links]`: link-code lifetimes and guessing limits.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLinks {
    pub code_ttl: Option<Spanned<String>>,
    pub call_window: Option<Spanned<String>>,
    pub max_wrong_codes: Option<Spanned<Count>>,
    pub wrong_code_window: Option<Spanned<String>>,
    pub wrong_code_block: Option<Spanned<String>>,
    pub wrong_code_alarm: Option<Spanned<Count>>,
}

/// `[store]`: where link sessions live (redb in `data_dir`, or a shared PostgreSQL database).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub backend: Option<Spanned<String>>,
    pub url: Option<Spanned<String>>,
    pub password: Option<Spanned<String>>,
    pub password_file: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<String>>,
    pub instance: Option<Spanned<String>>,
    pub max_connections: Option<Spanned<Count>>,
}

/// A count written as a TOML integer or, from an environment variable, as a string of digits.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Count {
    Int(i64),
    Text(String),
}

/// A yes/no written as a TOML boolean or, from an environment variable, as `true`/`false`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Flag {
    Bool(bool),
    Text(String),
}

/// `[[tenants]]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTenant {
    pub id: Option<Spanned<String>>,
    pub name: Option<Spanned<String>>,
    pub numbers: Option<Vec<Spanned<String>>>,
    pub callback_number: Option<Spanned<String>>,
    pub website_origins: Option<Vec<Spanned<String>>>,
    pub disclosure: Option<Spanned<RawCondiscon>>,
    pub attributes: Option<Vec<Spanned<RawAttribute>>>,
    pub links: Option<Vec<Spanned<RawLink>>>,
    pub agents: Option<Vec<Spanned<RawAgent>>>,
    pub prompts: Option<Spanned<RawPrompts>>,
    pub calls: Option<Spanned<RawTenantCalls>>,
    pub caller_id_attribute: Option<Spanned<String>>,
    pub srtp: Option<Spanned<String>>,
    pub exchange_keys: Option<Vec<Spanned<RawExchangeKey>>>,
    pub webrtc: Option<Spanned<Flag>>,
    pub extra_requests: Option<Vec<Spanned<RawExtraRequest>>>,
}

/// `[[tenants.extra_requests]]`: a disclosure (or, with `sign`, a signature) agents may ask for
/// during a call.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExtraRequest {
    pub id: Option<Spanned<String>>,
    pub label: Option<Spanned<String>>,
    pub label_en: Option<Spanned<String>>,
    pub disclose: Option<Spanned<RawCondiscon>>,
    pub sign: Option<Spanned<String>>,
}

/// `[[tenants.exchange_keys]]`: a key of the municipality's exchange for `/api/v1/pbx/…`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExchangeKey {
    pub name: Option<Spanned<String>>,
    pub key_hash: Option<Spanned<String>>,
    pub key_hash_file: Option<Spanned<String>>,
}

/// `[tenants.prompts]`: WAV files (8 kHz mono; 16-bit PCM, A-law or µ-law).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrompts {
    pub greeting: Option<Spanned<String>>,
    pub waiting: Option<Spanned<String>>,
    pub goodbye: Option<Spanned<String>>,
}

/// `[tenants.calls]`: this tenant's timeouts instead of the install's.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTenantCalls {
    pub first_digit_timeout: Option<Spanned<String>>,
    pub digit_timeout: Option<Spanned<String>>,
    pub max_wait: Option<Spanned<String>>,
    pub ring_timeout: Option<Spanned<String>>,
}

/// A disclosure request as written: an AND of OR-lists of attribute sets.
pub type RawCondiscon = Vec<Vec<Vec<Spanned<String>>>>;

/// `[[tenants.attributes]]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAttribute {
    pub id: Option<Spanned<String>>,
    pub label_nl: Option<Spanned<String>>,
    pub label_en: Option<Spanned<String>>,
}

/// `[[tenants.links]]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLink {
    pub label: Option<Spanned<String>>,
    pub url: Option<Spanned<String>>,
}

/// `[[tenants.agents]]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    pub username: Option<Spanned<String>>,
    pub name: Option<Spanned<String>>,
    pub password_hash: Option<Spanned<String>>,
    pub sip_password: Option<Spanned<String>>,
    pub sip_password_file: Option<Spanned<String>>,
    pub supervisor: Option<Spanned<Flag>>,
    pub srtp: Option<Spanned<String>>,
    /// The agent's extension or SIP URI at the municipality's own exchange.
    pub extension: Option<Spanned<String>>,
}

/// Where the text came from, to turn spans into places a person can find.
#[derive(Debug, Clone)]
pub struct Source<'a> {
    pub path: &'a Path,
    pub text: &'a str,
    /// Names of the environment variables applied, in order; variable `i` owns span
    /// [`Source::env_span`]`(i)`.
    pub env_vars: Vec<String>,
}

impl Source<'_> {
    /// The span given to everything environment variable number `index` put into the document:
    /// past the end of the text, so it can never be mistaken for a place in the file.
    pub fn env_span(text_len: usize, index: usize) -> Range<usize> {
        let at = text_len + 1 + index;
        at..at + 1
    }

    /// The place a span points at.
    pub fn locate(&self, span: &Range<usize>) -> Location {
        if span.start > self.text.len() {
            let index = span.start - self.text.len() - 1;
            if let Some(var) = self.env_vars.get(index) {
                return Location::Env(var.clone());
            }
        }
        let (line, column) = line_column(self.text, span.start);
        Location::File {
            path: self.path.to_path_buf(),
            line,
            column,
        }
    }

    /// Directory relative paths in the file are taken from.
    pub fn base_dir(&self) -> PathBuf {
        self.path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }
}

/// 1-based line and column (in characters) of byte `offset`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |nl| nl + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Parses the text into a document that keeps every key's and value's byte span.
pub fn parse<'a>(source: &Source<'a>) -> Result<Spanned<DeTable<'a>>, ConfigError> {
    DeTable::parse(source.text).map_err(|e| ConfigError::Syntax {
        at: source.locate(&e.span().unwrap_or(0..0)),
        message: first_line(e.message()),
    })
}

/// Deserializes the document into [`RawConfig`]. Unknown keys are all collected (each one is
/// removed and deserialization retried); another error ends it. Returns what it could read and
/// every error met.
pub fn deserialize(
    source: &Source<'_>,
    mut document: Spanned<DeTable<'_>>,
) -> (Option<RawConfig>, Vec<ConfigError>) {
    let mut errors = Vec::new();
    for _ in 0..=MAX_UNKNOWN_KEYS {
        let error = match RawConfig::deserialize(toml::de::Deserializer::from(document.clone())) {
            Ok(raw) => return (Some(raw), errors),
            Err(e) => e,
        };
        let span = error.span().unwrap_or(0..0);
        // serde: "unknown field `name`, expected one of `a`, `b`"
        let unknown = error
            .message()
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.split_once('`'));
        if let Some((name, rest)) = unknown {
            if let Some(found) = find(document.get_ref(), &span, Some(name)) {
                if found.hit == Hit::Key && remove(document.get_mut(), &found.path) {
                    errors.push(ConfigError::UnknownKey {
                        at: source.locate(&span),
                        key: dotted(&found.path),
                        expected: rest.trim_start_matches(',').trim().to_owned(),
                    });
                    continue;
                }
            }
        }
        let found = find(document.get_ref(), &span, None);
        let key = found.map(|f| dotted(&f.path)).unwrap_or_default();
        errors.push(ConfigError::Invalid {
            at: source.locate(&span),
            key,
            problem: first_line(error.message()),
        });
        return (None, errors);
    }
    errors.push(ConfigError::Invalid {
        at: source.locate(&(0..0)),
        key: String::new(),
        problem: format!(
            "more than {MAX_UNKNOWN_KEYS} unknown keys; is this a veilig-bellen config?"
        ),
    });
    (None, errors)
}

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// `tenants[0].agents[1].password_hash`
pub fn dotted(path: &[Segment]) -> String {
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hit {
    Key,
    Value,
}

#[derive(Debug)]
struct Found {
    path: Vec<Segment>,
    hit: Hit,
}

/// The key called `name` whose span is exactly `span` (any key with `name` `None`), or a value
/// with that span, searched depth first; else the innermost value that contains it. (Everything one
/// environment variable created shares one span, so the name tells its keys apart.)
fn find(table: &DeTable<'_>, span: &Range<usize>, name: Option<&str>) -> Option<Found> {
    for (key, value) in table.iter() {
        let here = Segment::Key(key.get_ref().to_string());
        if key.span() == *span && name.is_none_or(|n| n == key.get_ref().as_ref()) {
            return Some(Found {
                path: vec![here],
                hit: Hit::Key,
            });
        }
        if let Some(mut found) = find_in_value(value, span, name) {
            found.path.insert(0, here);
            return Some(found);
        }
    }
    None
}

fn find_in_value(
    value: &Spanned<DeValue<'_>>,
    span: &Range<usize>,
    name: Option<&str>,
) -> Option<Found> {
    let inner = match value.get_ref() {
        DeValue::Table(table) => find(table, span, name),
        DeValue::Array(array) => array.iter().enumerate().find_map(|(i, item)| {
            find_in_value(item, span, name).map(|mut found| {
                found.path.insert(0, Segment::Index(i));
                found
            })
        }),
        _ => None,
    };
    if inner.is_some() || name.is_some() {
        return inner;
    }
    {
        let own = value.span();
        (own == *span || (own.start <= span.start && span.end <= own.end && own != (0..0))).then(
            || Found {
                path: Vec::new(),
                hit: Hit::Value,
            },
        )
    }
}

/// Removes the entry at `path` (which ends in a key). Whether it was there.
fn remove(table: &mut DeTable<'_>, path: &[Segment]) -> bool {
    match path {
        [Segment::Key(key)] => table.remove(key.as_str()).is_some(),
        [Segment::Key(key), rest @ ..] => match table.get_mut(key.as_str()) {
            Some(value) => remove_in_value(value.get_mut(), rest),
            None => false,
        },
        _ => false,
    }
}

fn remove_in_value(value: &mut DeValue<'_>, path: &[Segment]) -> bool {
    match (value, path) {
        (DeValue::Table(table), _) => remove(table, path),
        (DeValue::Array(array), [Segment::Index(i), rest @ ..]) => match array.get_mut(*i) {
            Some(item) => remove_in_value(item.get_mut(), rest),
            None => false,
        },
        _ => false,
    }
}

fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or_default().trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(text: &str) -> Source<'_> {
        Source {
            path: Path::new("vb.toml"),
            text,
            env_vars: Vec::new(),
        }
    }

    #[test]
    fn lines_and_columns_count_from_one() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        assert_eq!(line_column(text, 9), (2, 3), "é is one column");
        assert_eq!(line_column(text, 1000), (3, 1));
    }

    #[test]
    fn every_unknown_key_is_reported_with_its_line() {
        let text = "nonsense = 1\n[http]\nlisten = \"127.0.0.1:1\"\nport = 2\n[[tenants]]\nid = \"a\"\nnmbers = []\n";
        let src = source(text);
        let document = parse(&src).unwrap();
        let (raw, errors) = deserialize(&src, document);
        assert!(raw.is_some(), "the known keys still deserialize");
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines
            .iter()
            .any(|l| l.starts_with("vb.toml:1:1: unknown key `nonsense`")));
        assert!(lines
            .iter()
            .any(|l| l.starts_with("vb.toml:4:1: unknown key `http.port`")));
        assert!(lines
            .iter()
            .any(|l| l.starts_with("vb.toml:7:1: unknown key `tenants[0].nmbers`")));
    }

    #[test]
    fn a_wrong_type_names_key_and_line() {
        let text = "[http]\nlisten = 8080\n";
        let src = source(text);
        let (raw, errors) = deserialize(&src, parse(&src).unwrap());
        assert!(raw.is_none());
        let line = errors[0].to_string();
        assert!(
            line.starts_with("vb.toml:2:10: `http.listen`: invalid type"),
            "{line}"
        );
    }

    #[test]
    fn a_syntax_error_names_the_line() {
        let src = source("[http]\nlisten = \n");
        let e = parse(&src).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.starts_with("vb.toml:2:"), "{e}");
    }
}
