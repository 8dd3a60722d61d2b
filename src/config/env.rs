//! Environment overrides: `VEILIG_BELLEN_<KEY>` sets a key of the config document before it is
//! deserialized, `__` between levels and a number for an element of an array of tables:
//! `VEILIG_BELLEN_DATA_DIR`, `VEILIG_BELLEN_IRMA__URL`, `VEILIG_BELLEN_TENANTS__0__AGENTS__1__SIP_PASSWORD`.
//!
//! Values are strings, except that one starting with `[` or `{` is read as a TOML array or inline
//! table (`VEILIG_BELLEN_SIP__TRUNKS='["192.0.2.10/32"]'`). Everything a variable puts in the
//! document carries the span [`Source::env_span`], so a later error about it (an unknown key, a bad
//! value) names the variable. No process state is read here: the caller passes the pairs.

use std::borrow::Cow;
use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::file::{dotted, Segment, Source};
use super::ConfigError;

/// Every override starts with this.
pub const PREFIX: &str = "VEILIG_BELLEN_";

/// Applies `vars` (only those starting with [`PREFIX`]) in order to `document`, whose text is
/// `text_len` bytes long. Returns the names of the variables, indexed as their spans are; a
/// variable that cannot be applied adds an error and changes nothing.
pub fn apply<'a>(
    document: &mut DeTable<'a>,
    text_len: usize,
    vars: &'a [(String, String)],
    errors: &mut Vec<ConfigError>,
) -> Vec<String> {
    let mut names = Vec::new();
    for (name, value) in vars.iter().filter(|(name, _)| name.starts_with(PREFIX)) {
        let span = Source::env_span(text_len, names.len());
        names.push(name.clone());
        let result = path_of(name).and_then(|path| {
            let value = parse_value(value, &span)?;
            set(document, &path, &[], value, &span)
        });
        if let Err(problem) = result {
            errors.push(ConfigError::Env {
                var: name.clone(),
                problem,
            });
        }
    }
    names
}

/// `VEILIG_BELLEN_TENANTS__0__NAME` → `tenants`, `[0]`, `name`.
fn path_of(name: &str) -> Result<Vec<Segment>, String> {
    let rest = name.strip_prefix(PREFIX).unwrap_or(name);
    let path: Vec<Segment> = rest
        .split("__")
        .map(|part| {
            if part.is_empty() {
                Err("empty key between `__` separators".to_owned())
            } else if let Ok(index) = part.parse::<usize>() {
                Ok(Segment::Index(index))
            } else {
                Ok(Segment::Key(part.to_ascii_lowercase()))
            }
        })
        .collect::<Result<_, _>>()?;
    match path.first() {
        Some(Segment::Key(_)) => Ok(path),
        _ => Err("the name must start with a key".to_owned()),
    }
}

fn parse_value<'a>(text: &'a str, span: &Range<usize>) -> Result<DeValue<'a>, String> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') || trimmed.starts_with('{') {
        let value = DeValue::parse(text).map_err(|e| {
            format!(
                "not a TOML array or inline table: {}",
                e.message().lines().next().unwrap_or_default()
            )
        })?;
        Ok(respan(value.into_inner(), span))
    } else {
        Ok(DeValue::String(Cow::Borrowed(text)))
    }
}

/// Gives every key and value inside `value` the variable's span.
fn respan<'a>(value: DeValue<'a>, span: &Range<usize>) -> DeValue<'a> {
    match value {
        DeValue::Array(mut array) => {
            for item in array.iter_mut() {
                let inner = std::mem::replace(item.get_mut(), DeValue::Boolean(false));
                *item = Spanned::new(span.clone(), respan(inner, span));
            }
            DeValue::Array(array)
        }
        DeValue::Table(table) => {
            let mut out = DeTable::new();
            for (key, item) in table {
                out.insert(
                    Spanned::new(span.clone(), key.into_inner()),
                    Spanned::new(span.clone(), respan(item.into_inner(), span)),
                );
            }
            DeValue::Table(out)
        }
        other => other,
    }
}

/// Sets `path` (relative to `table`, which sits at `at`) to `value`, creating tables on the way.
fn set<'a>(
    table: &mut DeTable<'a>,
    path: &[Segment],
    at: &[Segment],
    value: DeValue<'a>,
    span: &Range<usize>,
) -> Result<(), String> {
    let (Some(Segment::Key(key)), rest) = (path.first(), &path[1.min(path.len())..]) else {
        return Err(format!("`{}` is an array: name an element", dotted(at)));
    };
    let here = [at, &path[..1]].concat();
    if rest.is_empty() {
        table.insert(
            Spanned::new(span.clone(), Cow::Owned(key.clone())),
            Spanned::new(span.clone(), value),
        );
        return Ok(());
    }
    if table.get(key.as_str()).is_none() {
        if let Some(Segment::Index(i)) = rest.first() {
            return Err(format!("`{}` has no element {i}", dotted(&here)));
        }
        table.insert(
            Spanned::new(span.clone(), Cow::Owned(key.clone())),
            Spanned::new(span.clone(), DeValue::Table(DeTable::new())),
        );
    }
    match table.get_mut(key.as_str()) {
        Some(inner) => set_in(inner.get_mut(), rest, &here, value, span),
        // Unreachable: the key was inserted just above when missing.
        None => Err(format!("`{}` cannot be set", dotted(&here))),
    }
}

fn set_in<'a>(
    target: &mut DeValue<'a>,
    path: &[Segment],
    at: &[Segment],
    value: DeValue<'a>,
    span: &Range<usize>,
) -> Result<(), String> {
    match (target, path) {
        (DeValue::Table(table), _) => set(table, path, at, value, span),
        (DeValue::Array(array), [Segment::Index(i), rest @ ..]) => {
            let len = array.len();
            let here = [at, &path[..1]].concat();
            let Some(item) = array.get_mut(*i) else {
                return Err(format!(
                    "`{}` has {len} element(s); there is no [{i}]",
                    dotted(at)
                ));
            };
            if rest.is_empty() {
                *item = Spanned::new(span.clone(), value);
                Ok(())
            } else {
                set_in(item.get_mut(), rest, &here, value, span)
            }
        }
        (DeValue::Array(_), _) => Err(format!("`{}` is an array: name an element", dotted(at))),
        _ => Err(format!("`{}` is a value, not a table", dotted(at))),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{load_str, Config};
    use super::*;
    use std::path::Path;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn load(env: &[(&str, &str)]) -> Result<Config, String> {
        load_str(
            super::super::validate::tests::MINIMAL,
            Path::new("vb.toml"),
            pairs(env),
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn overrides_replace_and_add_keys() {
        let config = load(&[
            ("VEILIG_BELLEN_IRMA__URL", "https://irma.example.nl/"),
            ("VEILIG_BELLEN_HTTP__LISTEN", "127.0.0.1:18080"),
            ("VEILIG_BELLEN_DATA_DIR", "/srv/vb"),
            ("VEILIG_BELLEN_SIP__TRUNKS", "[\"192.0.2.0/24\"]"),
            ("VEILIG_BELLEN_TENANTS__0__NAME", "Gemeente Elders"),
            ("OTHER_VAR", "ignored"),
        ])
        .unwrap();
        assert_eq!(config.irma.server.url, "https://irma.example.nl/");
        assert_eq!(config.http.listen.port(), 18080);
        assert_eq!(config.data_dir, Path::new("/srv/vb"));
        assert_eq!(config.sip.trunks.len(), 1);
        let tenant = config.tenants.iter().next().unwrap();
        assert_eq!(tenant.display_name, "Gemeente Elders");
    }

    #[test]
    fn an_override_of_an_unknown_key_names_the_variable() {
        let e = load(&[("VEILIG_BELLEN_HTTP__PORT", "8080")]).unwrap_err();
        assert!(
            e.starts_with("VEILIG_BELLEN_HTTP__PORT: unknown key `http.port`"),
            "{e}"
        );
        let e = load(&[("VEILIG_BELLEN_NONSENSE", "1")]).unwrap_err();
        assert!(
            e.starts_with("VEILIG_BELLEN_NONSENSE: unknown key `nonsense`"),
            "{e}"
        );
    }

    #[test]
    fn a_bad_override_value_names_the_variable() {
        let e = load(&[("VEILIG_BELLEN_HTTP__LISTEN", "somewhere")]).unwrap_err();
        assert!(
            e.starts_with("VEILIG_BELLEN_HTTP__LISTEN: `http.listen`:"),
            "{e}"
        );
        let e = load(&[("VEILIG_BELLEN_TENANTS__3__NAME", "x")]).unwrap_err();
        assert!(
            e.contains("VEILIG_BELLEN_TENANTS__3__NAME: `tenants` has 1 element"),
            "{e}"
        );
        let e = load(&[("VEILIG_BELLEN_IRMA__URL__X", "x")]).unwrap_err();
        assert!(e.contains("`irma.url` is a value"), "{e}");
        let e = load(&[("VEILIG_BELLEN_SIP__TRUNKS", "[nope")]).unwrap_err();
        assert!(
            e.contains("VEILIG_BELLEN_SIP__TRUNKS: not a TOML array"),
            "{e}"
        );
    }

    #[test]
    fn names_split_on_double_underscores() {
        assert_eq!(
            path_of("VEILIG_BELLEN_TENANTS__0__SIP_PASSWORD").unwrap(),
            vec![
                Segment::Key("tenants".into()),
                Segment::Index(0),
                Segment::Key("sip_password".into())
            ]
        );
        assert!(path_of("VEILIG_BELLEN_A____B").is_err());
        assert!(path_of("VEILIG_BELLEN_0").is_err());
    }
}
