//! A tenant's existing exchange in the config file: its `[[tenants.exchange_keys]]` (a `name` and
//! the key's `key_hash`, or `key_hash_file`) and its agents' `extension`s. Key names are unique
//! within a tenant, key hashes across the install (a key decides its tenant).

use std::collections::{BTreeMap, HashSet};

use toml::Spanned;

use super::file::{RawAgent, RawExchangeKey};
use super::validate::Checker;
use crate::exchange::{ExchangeAccess, ExchangeKey, KeyHash};
use crate::tenant::AgentId;

/// Longest extension.
const MAX_EXTENSION: usize = 256;

impl Checker<'_, '_> {
    /// The exchange settings of tenant `prefix` (`tenants[i]`); `hashes` holds the key hashes of
    /// earlier tenants.
    pub(super) fn exchange(
        &mut self,
        keys: Option<Vec<Spanned<RawExchangeKey>>>,
        agents: &[Spanned<RawAgent>],
        prefix: &str,
        hashes: &mut HashSet<String>,
    ) -> Option<ExchangeAccess> {
        let mut ok = true;
        let mut names = HashSet::new();
        let mut access = ExchangeAccess::default();
        for (j, raw) in keys.unwrap_or_default().into_iter().enumerate() {
            let k = format!("{prefix}.exchange_keys[{j}]");
            match self.exchange_key(raw, &k, &mut names, hashes) {
                Some(key) => access.keys.push(key),
                None => ok = false,
            }
        }
        let mut extensions = BTreeMap::new();
        for (j, agent) in agents.iter().enumerate() {
            let agent = agent.get_ref();
            let (Some(username), Some(extension)) = (&agent.username, &agent.extension) else {
                continue;
            };
            let key = format!("{prefix}.agents[{j}].extension");
            match self.parse(extension, &key, parse_extension) {
                Some(e) => {
                    extensions.insert(AgentId(username.get_ref().clone()), e);
                }
                None => ok = false,
            }
        }
        access.extensions = extensions;
        ok.then_some(access)
    }

    fn exchange_key(
        &mut self,
        raw: Spanned<RawExchangeKey>,
        k: &str,
        names: &mut HashSet<String>,
        hashes: &mut HashSet<String>,
    ) -> Option<ExchangeKey> {
        let span = raw.span();
        let raw = raw.into_inner();
        let name_key = format!("{k}.name");
        let name = self
            .required(&raw.name, &span, &name_key)
            .cloned()
            .and_then(|n| {
                let name = self.parse(&n, &name_key, parse_name)?;
                if names.insert(name.clone()) {
                    Some(name)
                } else {
                    self.invalid(
                        &n.span(),
                        &name_key,
                        format!("this tenant has two keys named {name}"),
                    );
                    None
                }
            });
        // Not a secret (a digest of 256 random bits), but a file keeps it out of a shared config.
        let at = raw
            .key_hash
            .as_ref()
            .or(raw.key_hash_file.as_ref())
            .map(Spanned::span);
        let text = self.secret(
            &raw.key_hash,
            &raw.key_hash_file,
            &format!("{k}."),
            "key_hash",
            &span,
            1,
        );
        let hash_key = match &raw.key_hash {
            Some(_) => format!("{k}.key_hash"),
            None => format!("{k}.key_hash_file"),
        };
        let hash = text.zip(at).and_then(|(text, at)| {
            let hash = match KeyHash::parse(text.expose().trim()) {
                Ok(hash) => hash,
                Err(e) => {
                    self.invalid(&at, &hash_key, e.to_string());
                    return None;
                }
            };
            if hashes.insert(hash.to_string()) {
                Some(hash)
            } else {
                self.invalid(
                    &at,
                    &hash_key,
                    "the same key is configured twice (a key decides its tenant: make one per exchange)",
                );
                None
            }
        });
        Some(ExchangeKey {
            name: name?,
            hash: hash?,
        })
    }
}

/// A key's name: 1–64 of `A-Z a-z 0-9 . _ -` (it goes into log lines).
fn parse_name(s: &str) -> Result<String, String> {
    if crate::exchange::key::is_valid_name(s) {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "use 1 to {} letters, digits, `.`, `_` or `-` (it is shown in logs)",
            crate::exchange::key::MAX_NAME
        ))
    }
}

/// An extension or SIP URI at the exchange: no spaces or control characters.
fn parse_extension(s: &str) -> Result<String, String> {
    if s.is_empty() || s.chars().count() > MAX_EXTENSION {
        return Err(format!(
            "an extension (`201`) or SIP URI (`sip:jan@pbx.example.nl`), 1 to {MAX_EXTENSION} characters"
        ));
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain spaces or control characters".to_owned());
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::super::load_str;
    use super::super::validate::tests::MINIMAL;
    use std::path::Path;

    const HASH: &str = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    fn errors_of(text: &str) -> Vec<String> {
        match load_str(text, Path::new("vb.toml"), Vec::new()) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    fn line_of(text: &str, needle: &str) -> usize {
        text.lines().position(|l| l.contains(needle)).unwrap() + 1
    }

    fn with_key(table: &str) -> String {
        format!("{MINIMAL}[[tenants.exchange_keys]]\n{table}")
    }

    #[test]
    fn keys_and_extensions_reach_the_tenant() {
        let text = with_key(&format!("name = \"asterisk-1\"\nkey_hash = \"{HASH}\"\n")).replacen(
            "sip_password = \"jan-phone-secret\"",
            "sip_password = \"jan-phone-secret\"\nextension = \"201\"",
            1,
        );
        let config = load_str(&text, Path::new("vb.toml"), Vec::new()).unwrap();
        let tenant = config.tenants.iter().next().unwrap();
        let presented = crate::exchange::KeyHash::of("abc");
        assert_eq!(tenant.exchange.key_named(&presented), Some("asterisk-1"));
        assert_eq!(
            tenant
                .exchange
                .extensions
                .get(&crate::tenant::AgentId("jan".into()))
                .map(String::as_str),
            Some("201")
        );
    }

    #[test]
    fn a_bad_key_hash_is_reported_where_it_is() {
        let text = with_key("name = \"asterisk-1\"\nkey_hash = \"abc\"\n");
        let errors = errors_of(&text);
        let line = line_of(&text, "key_hash = \"abc\"");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with(&format!(
                "vb.toml:{line}:12: `tenants[0].exchange_keys[0].key_hash`: must be `sha256:`"
            )),
            "{errors:?}"
        );
    }

    #[test]
    fn a_key_needs_a_name_and_a_hash() {
        let errors = errors_of(&with_key("name = \"two words\"\n"));
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors
            .iter()
            .any(|e| e.contains("`tenants[0].exchange_keys[0].name`: use 1 to 64")));
        assert!(errors
            .iter()
            .any(|e| e.contains("`tenants[0].exchange_keys[0].key_hash` is required")));
        let errors = errors_of(&with_key(&format!(
            "key_hash = \"{HASH}\"\nlabel = \"x\"\n"
        )));
        assert!(
            errors
                .iter()
                .any(|e| e.contains("unknown key `tenants[0].exchange_keys[0].label`")),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("`tenants[0].exchange_keys[0].name` is required")),
            "{errors:?}"
        );
    }

    #[test]
    fn a_key_hash_may_come_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pbx.hash"), format!("{HASH}\n")).unwrap();
        let text = with_key("name = \"pbx\"\nkey_hash_file = \"pbx.hash\"\n");
        let config = load_str(&text, &dir.path().join("vb.toml"), Vec::new()).unwrap();
        let tenant = config.tenants.iter().next().unwrap();
        assert_eq!(tenant.exchange.keys.len(), 1);
        let errors = errors_of(&with_key(
            "name = \"pbx\"\nkey_hash_file = \"missing.hash\"\n",
        ));
        assert!(
            errors[0].contains("`tenants[0].exchange_keys[0].key_hash_file`: cannot read"),
            "{errors:?}"
        );
    }

    #[test]
    fn the_same_key_twice_or_the_same_name_twice_is_refused() {
        let key = |name: &str| {
            format!("[[tenants.exchange_keys]]\nname = \"{name}\"\nkey_hash = \"{HASH}\"\n")
        };
        let errors = errors_of(&format!("{MINIMAL}{}{}", key("a"), key("b")));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains(
                "`tenants[0].exchange_keys[1].key_hash`: the same key is configured twice"
            ),
            "{errors:?}"
        );
        let other = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
        let errors = errors_of(&format!(
            "{MINIMAL}{}[[tenants.exchange_keys]]\nname = \"a\"\nkey_hash = \"{other}\"\n",
            key("a")
        ));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("two keys named a"), "{errors:?}");
    }

    #[test]
    fn an_extension_with_spaces_is_refused() {
        let text = MINIMAL.replacen(
            "sip_password = \"jan-phone-secret\"",
            "sip_password = \"jan-phone-secret\"\nextension = \"2 01\"",
            1,
        );
        let errors = errors_of(&text);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("`tenants[0].agents[0].extension`: must not contain spaces"),
            "{errors:?}"
        );
    }
}
