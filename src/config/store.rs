//! `[store]`: where link sessions live. `backend = "redb"` (the default: `<data_dir>/sessions.redb`,
//! one process) or `"postgres"`: one database shared by several instances behind one trunk, with
//! `url`, optionally `password`/`password_file` (so the password need not sit in the URL or the
//! file; `VEILIG_BELLEN_STORE__PASSWORD` works too), `ca_file` (PEM roots for `sslmode=require`
//! instead of the system's), `instance` (this instance's stable name, required) and
//! `max_connections`. With PostgreSQL `key_file` is required: every instance must open the
//! attributes any instance sealed.

use toml::Spanned;

use super::file::RawStore;
use super::validate::Checker;
use crate::store::postgres::{parse_url, valid_instance_name};
use crate::store::{PostgresSettings, StoreBackend};

impl Checker<'_, '_> {
    pub(super) fn store(
        &mut self,
        raw: Option<Spanned<RawStore>>,
        has_key_file: bool,
    ) -> Option<StoreBackend> {
        let Some(raw) = raw else {
            return Some(StoreBackend::Redb);
        };
        let table = raw.span();
        let raw = raw.into_inner();
        let backend = self.or_default(&raw.backend, "redb", "store.backend", |s| match s {
            "redb" => Ok(false),
            "postgres" | "postgresql" => Ok(true),
            other => Err(format!("{other:?} is not `redb` or `postgres`")),
        })?;
        if !backend {
            let postgres_only = [
                ("url", &raw.url),
                ("password", &raw.password),
                ("password_file", &raw.password_file),
                ("ca_file", &raw.ca_file),
                ("instance", &raw.instance),
            ];
            let mut ok = true;
            for (key, value) in postgres_only {
                if let Some(value) = value {
                    self.invalid(
                        &value.span(),
                        &format!("store.{key}"),
                        "only used with `backend = \"postgres\"`",
                    );
                    ok = false;
                }
            }
            if let Some(value) = &raw.max_connections {
                self.invalid(
                    &value.span(),
                    "store.max_connections",
                    "only used with `backend = \"postgres\"`",
                );
                ok = false;
            }
            return ok.then_some(StoreBackend::Redb);
        }
        if !has_key_file {
            self.missing(
                &table,
                "key_file",
                "with `store.backend = \"postgres\"` every instance must seal and open the \
                 attributes with the same key: give each instance a copy of one key file",
            );
        }
        let url = self
            .required(&raw.url, &table, "store.url")
            .and_then(|url| {
                self.parse(url, "store.url", |s| {
                    parse_url(s).map(|_| crate::pii::Pii::new(s.to_owned()))
                })
            });
        let password = match (&raw.password, &raw.password_file) {
            (None, None) => Some(None),
            _ => self
                .secret(
                    &raw.password,
                    &raw.password_file,
                    "store.",
                    "password",
                    &table,
                    1,
                )
                .map(Some),
        };
        let ca_file = match &raw.ca_file {
            None => Some(None),
            Some(file) => {
                let path = self.path(file);
                match std::fs::metadata(&path) {
                    Ok(meta) if meta.is_file() => Some(Some(path)),
                    Ok(_) => {
                        self.invalid(&file.span(), "store.ca_file", "is not a file");
                        None
                    }
                    Err(e) => {
                        self.invalid(
                            &file.span(),
                            "store.ca_file",
                            format!("cannot read {}: {e}", path.display()),
                        );
                        None
                    }
                }
            }
        };
        let instance = self
            .required(
                &raw.instance,
                &table,
                "store.instance",
            )
            .and_then(|name| {
                self.parse(name, "store.instance", |s| {
                    if valid_instance_name(s) {
                        Ok(s.to_owned())
                    } else {
                        Err("must be 1 to 63 of A-Z a-z 0-9 . _ - (a name of its own for each instance, the same across its restarts)".to_owned())
                    }
                })
            });
        let max_connections = self
            .count(&raw.max_connections, "store.max_connections", 16, 2, 1000)
            .map(|n| n as usize);
        if !has_key_file {
            return None;
        }
        Some(StoreBackend::Postgres(PostgresSettings {
            url: url?,
            password: password?,
            ca_file: ca_file?,
            instance: instance?,
            max_connections: max_connections?,
            statement_timeout: crate::store::postgres::STATEMENT_TIMEOUT,
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::load_str;
    use super::super::validate::tests::MINIMAL;
    use crate::store::StoreBackend;

    fn errors(text: &str, env: Vec<(String, String)>) -> Vec<String> {
        match load_str(text, Path::new("vb.toml"), env) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    fn key_file(dir: &Path) -> String {
        use std::os::unix::fs::PermissionsExt;
        let key = dir.join("attribute.key");
        std::fs::write(&key, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        format!("key_file = {:?}\n", key.display().to_string())
    }

    const POSTGRES: &str = r#"
[store]
backend = "postgres"
url = "postgres://vb@db.example.nl/vb?sslmode=require"
instance = "vb-1"
"#;

    #[test]
    fn redb_in_the_data_dir_is_the_default() {
        let config = load_str(MINIMAL, Path::new("vb.toml"), Vec::new()).unwrap();
        assert!(matches!(config.store, StoreBackend::Redb));
        let text = format!("{MINIMAL}\n[store]\nbackend = \"redb\"\n");
        let config = load_str(&text, Path::new("vb.toml"), Vec::new()).unwrap();
        assert!(matches!(config.server_config().store, StoreBackend::Redb));
    }

    #[test]
    fn postgres_needs_the_shared_key_file_and_says_why() {
        let text = format!("{MINIMAL}{POSTGRES}");
        let errors = errors(&text, Vec::new());
        assert!(
            errors.iter().any(|e| e.contains("`key_file` is required")
                && e.contains("postgres")
                && e.contains("same key")),
            "{errors:?}"
        );
    }

    #[test]
    fn postgres_settings_are_read_with_the_password_from_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("{}{MINIMAL}{POSTGRES}", key_file(dir.path()));
        let env = vec![(
            "VEILIG_BELLEN_STORE__PASSWORD".to_owned(),
            "s3cret-db-password".to_owned(),
        )];
        let config = load_str(&text, Path::new("vb.toml"), env).unwrap();
        let StoreBackend::Postgres(settings) = config.server_config().store else {
            panic!("postgres expected");
        };
        assert_eq!(settings.instance, "vb-1");
        assert_eq!(settings.max_connections, 16);
        assert_eq!(
            settings.password.as_ref().map(|p| p.expose().as_str()),
            Some("s3cret-db-password")
        );
        assert!(
            !format!("{config:?}").contains("s3cret-db-password"),
            "the password never shows in Debug"
        );
    }

    #[test]
    fn bad_store_settings_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let key = key_file(dir.path());
        let cases = [
            ("[store]\nbackend = \"mysql\"\n", "`store.backend`"),
            (
                "[store]\nbackend = \"postgres\"\ninstance = \"vb-1\"\n",
                "`store.url` is required",
            ),
            (
                "[store]\nbackend = \"postgres\"\nurl = \"postgres://vb@db/vb\"\n",
                "`store.instance` is required",
            ),
            (
                "[store]\nbackend = \"postgres\"\nurl = \"postgres://vb@db/vb\"\ninstance = \"vb 1\"\n",
                "`store.instance`",
            ),
            (
                "[store]\nbackend = \"postgres\"\nurl = \"postgres://vb@db/vb?sslmode=sometimes\"\ninstance = \"a\"\n",
                "`store.url`",
            ),
            (
                "[store]\nurl = \"postgres://vb@db/vb\"\n",
                "only used with `backend = \"postgres\"`",
            ),
            (
                "[store]\nbackend = \"postgres\"\nurl = \"postgres://vb@db/vb\"\ninstance = \"a\"\nca_file = \"/nonexistent/ca.pem\"\n",
                "`store.ca_file`",
            ),
        ];
        for (store, expected) in cases {
            let text = format!("{key}{MINIMAL}{store}");
            let errors = errors(&text, Vec::new());
            assert!(
                errors.iter().any(|e| e.contains(expected)),
                "{store}: {errors:?}"
            );
        }
    }
}
