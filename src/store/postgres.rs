//! [`SessionStore`] on PostgreSQL, for several instances behind one trunk sharing their link
//! sessions (`[store] backend = "postgres"`).
//!
//! Every method is one SQL transaction on a pooled connection (`tokio-postgres` through
//! `deadpool-postgres`): the row is read with `SELECT … FOR UPDATE`, the pure rules of
//! [`super::rules`] decide, and the change is written before `COMMIT`. Two processes binding the
//! same code at once queue on that row lock; the second reads the first one's committed `Bound` row
//! and answers [`BindOutcome::Used`]. A code is unique by a table constraint, so an `insert` of a
//! code another process already stored fails with [`StoreError::CodeTaken`] whoever inserts
//! first. Transactions that lock several rows (`purge_expired`, `end_cut_off_calls`) lock them in
//! token order, so two instances' maintenance never deadlocks.
//!
//! The schema is created at [`PostgresStore::connect`] (`CREATE TABLE IF NOT EXISTS`, under an
//! advisory lock so two instances starting together do not race) and its version recorded in
//! `veilig_bellen_schema`; a database of a newer version is refused.
//!
//! # Instances
//! Each process has a name (`store.instance`), part of every call key it binds codes with
//! (`<call id>-<run>@<name>`, [`crate::call::registry::Registry::instance`]).
//! [`SessionStore::end_cut_off_calls`] at startup ends only the `Bound` rows of this name — the
//! calls that died with this instance's previous run — and leaves every other instance's live calls
//! alone; a dead instance that never comes back has its rows ended by their hold expiry in
//! [`SessionStore::purge_expired`], which any instance runs. While a store is open it holds a
//! PostgreSQL session-level advisory lock on its name on a connection of its own, so a second
//! process with the same name is refused at start instead of ending the first one's calls.
//!
//! # Privacy
//! The store sees only sealed attributes. Errors never carry a row's values: PostgreSQL's `DETAIL`
//! (which names a duplicate key, i.e. a link code) is left out of every [`StoreError::Backend`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::error::SqlState;
use tokio_postgres::Row;

use super::rules::{self, BindVerdict, Change};
use super::{
    BindOutcome, ConsumeKey, FrontendToken, LinkCode, Purged, SessionRow, SessionState,
    SessionStore, StoreError, StoreFuture, UnixSeconds,
};
use crate::pii::Pii;

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: i32 = 1;

/// Advisory-lock class of the schema migration (an arbitrary constant, "vb" + 1).
const MIGRATION_LOCK: i64 = 0x7662_0001;
/// Advisory-lock class of instance names (first key of the two-key form).
const INSTANCE_LOCK_CLASS: i32 = 0x7662_0002;

/// How long a store call waits for a pooled connection, and a new connection for the server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest one statement may run, a wait for a row another instance holds included
/// ([`PostgresSettings::statement_timeout`]): every store step is a few rows, so a step that takes
/// longer meets a database in trouble, and the call or session waiting on it gets an error instead
/// of waiting for good.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);
/// TCP keepalive on the pool's connections: a database that vanished without closing them (a
/// network cut) is noticed within about a minute, not the kernel's two hours.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);

/// Where and how to reach PostgreSQL, and who this instance is.
#[derive(Clone, Debug)]
pub struct PostgresSettings {
    /// A `postgres://…` URL or a `key=value` connection string (`sslmode=require` for TLS). May
    /// hold a password, so it is kept redacted.
    pub url: Pii<String>,
    /// The password, when not in the URL (`store.password`, `store.password_file`).
    pub password: Option<Pii<String>>,
    /// PEM certificates to trust for the server's TLS certificate instead of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// This instance's stable name (`store.instance`): letters, digits, `.`, `_` and `-`.
    pub instance: String,
    /// Connections in the pool.
    pub max_connections: usize,
    /// Longest one statement may run ([`STATEMENT_TIMEOUT`]), unless the URL sets `options`.
    pub statement_timeout: Duration,
}

impl PostgresSettings {
    /// Settings for `url` with the defaults (no separate password, system roots, 16 connections).
    pub fn new(url: impl Into<String>, instance: impl Into<String>) -> PostgresSettings {
        PostgresSettings {
            url: Pii::new(url.into()),
            password: None,
            ca_file: None,
            instance: instance.into(),
            max_connections: 16,
            statement_timeout: STATEMENT_TIMEOUT,
        }
    }
}

/// Whether `name` may be an instance name: 1 to 63 of `A-Z a-z 0-9 . _ -`.
pub fn valid_instance_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Parses a connection string as `tokio-postgres` does, checking it names a host. The error never
/// repeats the string (it may hold a password).
pub fn parse_url(url: &str) -> Result<tokio_postgres::Config, String> {
    let config: tokio_postgres::Config = url
        .parse()
        .map_err(|e: tokio_postgres::Error| format!("not a PostgreSQL connection string: {e}"))?;
    if config.get_hosts().is_empty() {
        return Err("names no host".to_owned());
    }
    Ok(config)
}

/// A [`SessionStore`] in a PostgreSQL database shared by several instances.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    /// `@<instance>`: the end of every call key of this instance.
    call_suffix: String,
    /// The connection that holds this instance's name lock (dropped with the last clone).
    _name_lock: Arc<deadpool_postgres::ClientWrapper>,
}

/// A `tokio-postgres` error as a [`StoreError::Backend`], without PostgreSQL's `DETAIL`/`HINT`
/// (they can name a row's values).
fn pg(e: tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) => StoreError::Backend(format!(
            "PostgreSQL: {} (SQLSTATE {})",
            db.message(),
            db.code().code()
        )),
        None => StoreError::Backend(format!("PostgreSQL: {e}")),
    }
}

fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => pg(e),
        deadpool_postgres::PoolError::Timeout(_) => StoreError::Backend(format!(
            "PostgreSQL: no connection within {} s",
            CONNECT_TIMEOUT.as_secs()
        )),
        other => StoreError::Backend(format!("PostgreSQL connection pool: {other}")),
    }
}

/// The TLS connector: rustls with the CA file's certificates, or the system's roots. The server's
/// certificate and name are always verified when TLS is used (`sslmode=require`, or `prefer` with
/// a server that offers TLS).
fn tls(
    ca_file: Option<&std::path::Path>,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| {
                    StoreError::Backend(format!("store.ca_file {}: {e}", path.display()))
                })?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(StoreError::Backend(format!(
                    "store.ca_file {}: no usable certificate",
                    path.display()
                )));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            // Unreadable system certificates only matter if TLS is used; then the handshake fails
            // and names the problem.
            roots.add_parsable_certificates(found.certs);
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Backend(format!("TLS to PostgreSQL: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

const COLUMNS: &str =
    "token, tenant, irma_token, code, state, created_at, updated_at, expires_at, call_id";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS veilig_bellen_schema (
    id integer PRIMARY KEY CHECK (id = 1),
    version integer NOT NULL
);
CREATE TABLE IF NOT EXISTS link_sessions (
    token text NOT NULL,
    tenant text NOT NULL,
    irma_token text NOT NULL,
    code text NOT NULL,
    state text NOT NULL CHECK (state IN ('pending', 'disclosed', 'bound', 'consumed', 'expired', 'cancelled')),
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL,
    expires_at bigint NOT NULL,
    call_id text,
    sealed bytea,
    CONSTRAINT link_sessions_token_key PRIMARY KEY (token),
    CONSTRAINT link_sessions_code_key UNIQUE (code)
);
CREATE INDEX IF NOT EXISTS link_sessions_call_id ON link_sessions (call_id);
CREATE INDEX IF NOT EXISTS link_sessions_live ON link_sessions (state, expires_at);
CREATE INDEX IF NOT EXISTS link_sessions_updated ON link_sessions (updated_at);
";

fn state_name(state: SessionState) -> &'static str {
    match state {
        SessionState::Pending => "pending",
        SessionState::Disclosed => "disclosed",
        SessionState::Bound => "bound",
        SessionState::Consumed => "consumed",
        SessionState::Expired => "expired",
        SessionState::Cancelled => "cancelled",
    }
}

fn state_of(name: &str) -> Result<SessionState, StoreError> {
    Ok(match name {
        "pending" => SessionState::Pending,
        "disclosed" => SessionState::Disclosed,
        "bound" => SessionState::Bound,
        "consumed" => SessionState::Consumed,
        "expired" => SessionState::Expired,
        "cancelled" => SessionState::Cancelled,
        _ => return Err(StoreError::Corrupt("unknown session state".into())),
    })
}

fn secs(t: UnixSeconds) -> Result<i64, StoreError> {
    i64::try_from(t).map_err(|_| StoreError::Corrupt("time out of range".into()))
}

fn unsecs(t: i64) -> Result<UnixSeconds, StoreError> {
    UnixSeconds::try_from(t).map_err(|_| StoreError::Corrupt("negative time in a row".into()))
}

fn column<'r, T: tokio_postgres::types::FromSql<'r>>(
    row: &'r Row,
    index: usize,
) -> Result<T, StoreError> {
    row.try_get(index)
        .map_err(|e| StoreError::Corrupt(format!("column {index}: {e}")))
}

/// A row selected with [`COLUMNS`] first.
fn decode(row: &Row) -> Result<SessionRow, StoreError> {
    let token: String = column(row, 0)?;
    let code: String = column(row, 3)?;
    let state: String = column(row, 4)?;
    Ok(SessionRow {
        token: FrontendToken::parse(&token)
            .ok_or_else(|| StoreError::Corrupt("bad token in a row".into()))?,
        tenant: column(row, 1)?,
        irma_token: column(row, 2)?,
        code: LinkCode::parse(&code)
            .map_err(|_| StoreError::Corrupt("bad code in a row".into()))?,
        state: state_of(&state)?,
        created_at: unsecs(column(row, 5)?)?,
        updated_at: unsecs(column(row, 6)?)?,
        expires_at: unsecs(column(row, 7)?)?,
        call_id: column(row, 8)?,
    })
}

/// A row selected with [`COLUMNS`] and then `sealed`.
fn decode_sealed(row: &Row) -> Result<(SessionRow, Option<Vec<u8>>), StoreError> {
    Ok((decode(row)?, column(row, 9)?))
}

/// Writes `change` (state, times, call) and drops the sealed attributes when it says so.
async fn write(tx: &tokio_postgres::Transaction<'_>, change: &Change) -> Result<(), StoreError> {
    let row = &change.row;
    tx.execute(
        "UPDATE link_sessions SET state = $2, updated_at = $3, expires_at = $4, call_id = $5, \
         sealed = CASE WHEN $6 THEN NULL ELSE sealed END WHERE token = $1",
        &[
            &row.token.as_str(),
            &state_name(row.state),
            &secs(row.updated_at)?,
            &secs(row.expires_at)?,
            &row.call_id,
            &change.purge_attributes,
        ],
    )
    .await
    .map_err(pg)?;
    Ok(())
}

impl PostgresStore {
    /// Connects (the pool and the name lock), creates or checks the schema. Fails with
    /// [`StoreError::Backend`] naming the step when the server cannot be reached, refuses the
    /// login, has a newer schema, or another running instance has the same name.
    pub async fn connect(settings: &PostgresSettings) -> Result<PostgresStore, StoreError> {
        if !valid_instance_name(&settings.instance) {
            return Err(StoreError::Backend(
                "store.instance must be 1 to 63 of A-Z a-z 0-9 . _ -".into(),
            ));
        }
        let mut config = parse_url(settings.url.expose())
            .map_err(|e| StoreError::Backend(format!("store.url: {e}")))?;
        if let Some(password) = &settings.password {
            config.password(password.expose().as_bytes());
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_options().is_none() {
            config.options(format!(
                "-c statement_timeout={}",
                settings.statement_timeout.as_millis().max(1)
            ));
        }
        config.keepalives_idle(KEEPALIVE_IDLE);
        config.application_name(format!("veilig-bellen {}", settings.instance));
        let manager = Manager::from_config(
            config,
            tls(settings.ca_file.as_deref())?,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(settings.max_connections.max(2))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Backend(format!("PostgreSQL connection pool: {e}")))?;
        let lock =
            deadpool_postgres::Object::take(pool.get().await.map_err(|e| match pool_error(e) {
                StoreError::Backend(why) => {
                    StoreError::Backend(format!("connecting to PostgreSQL: {why}"))
                }
                other => other,
            })?);
        let locked: bool = lock
            .query_one(
                "SELECT pg_try_advisory_lock($1, hashtext($2))",
                &[&INSTANCE_LOCK_CLASS, &settings.instance],
            )
            .await
            .map_err(pg)
            .and_then(|row| column(&row, 0))?;
        if !locked {
            return Err(StoreError::Backend(format!(
                "another running veilig-bellen on this database has store.instance = {:?}: give \
                 each instance a name of its own (two of one name would end each other's calls)",
                settings.instance
            )));
        }
        let store = PostgresStore {
            pool,
            call_suffix: format!("@{}", settings.instance),
            _name_lock: Arc::new(lock),
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let tx = client.transaction().await.map_err(pg)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(pg)?;
        tx.batch_execute(SCHEMA).await.map_err(pg)?;
        let found = tx
            .query_opt("SELECT version FROM veilig_bellen_schema WHERE id = 1", &[])
            .await
            .map_err(pg)?;
        match found {
            None => {
                tx.execute(
                    "INSERT INTO veilig_bellen_schema (id, version) VALUES (1, $1)",
                    &[&SCHEMA_VERSION],
                )
                .await
                .map_err(pg)?;
            }
            Some(row) => {
                let version: i32 = column(&row, 0)?;
                if version > SCHEMA_VERSION {
                    return Err(StoreError::Backend(format!(
                        "the database has schema version {version}, newer than this build's \
                         {SCHEMA_VERSION}: upgrade veilig-bellen"
                    )));
                }
                // Older versions would be migrated here, step by step; 1 is the first.
            }
        }
        tx.commit().await.map_err(pg)
    }

    /// Number of sealed attribute sets held (tests check purging with it).
    pub async fn sealed_count(&self) -> Result<u64, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let row = client
            .query_one(
                "SELECT count(*) FROM link_sessions WHERE sealed IS NOT NULL",
                &[],
            )
            .await
            .map_err(pg)?;
        let n: i64 = column(&row, 0)?;
        Ok(n.max(0).unsigned_abs())
    }

    /// Runs `body` in one transaction on a pooled connection: commit on `Ok`, roll back on `Err`.
    fn transaction<'s, T, F>(&'s self, body: F) -> StoreFuture<'s, T>
    where
        T: Send + 's,
        F: for<'t> FnOnce(&'t tokio_postgres::Transaction<'t>) -> StoreFuture<'t, T> + Send + 's,
    {
        Box::pin(async move {
            let mut client = self.pool.get().await.map_err(pool_error)?;
            let tx = client.transaction().await.map_err(pg)?;
            let result = body(&tx).await;
            match result {
                Ok(value) => {
                    tx.commit().await.map_err(pg)?;
                    Ok(value)
                }
                Err(e) => {
                    // Dropping it would roll back too; say so to the server now.
                    let _ = tx.rollback().await;
                    Err(e)
                }
            }
        })
    }
}

/// The row of `code` with its sealed attributes, locked for this transaction.
async fn by_code_for_update(
    tx: &tokio_postgres::Transaction<'_>,
    code: &LinkCode,
) -> Result<Option<(SessionRow, Option<Vec<u8>>)>, StoreError> {
    let found = tx
        .query_opt(
            &format!("SELECT {COLUMNS}, sealed FROM link_sessions WHERE code = $1 FOR UPDATE"),
            &[&code.expose()],
        )
        .await
        .map_err(pg)?;
    found.as_ref().map(decode_sealed).transpose()
}

async fn by_token_for_update(
    tx: &tokio_postgres::Transaction<'_>,
    token: &FrontendToken,
) -> Result<Option<SessionRow>, StoreError> {
    let found = tx
        .query_opt(
            &format!("SELECT {COLUMNS} FROM link_sessions WHERE token = $1 FOR UPDATE"),
            &[&token.as_str()],
        )
        .await
        .map_err(pg)?;
    found.as_ref().map(decode).transpose()
}

impl SessionStore for PostgresStore {
    fn insert(&self, row: SessionRow) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let client = self.pool.get().await.map_err(pool_error)?;
            let result = client
                .execute(
                    &format!(
                        "INSERT INTO link_sessions ({COLUMNS}, sealed) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL)"
                    ),
                    &[
                        &row.token.as_str(),
                        &row.tenant,
                        &row.irma_token,
                        &row.code.expose(),
                        &state_name(row.state),
                        &secs(row.created_at)?,
                        &secs(row.updated_at)?,
                        &secs(row.expires_at)?,
                        &row.call_id,
                    ],
                )
                .await;
            match result {
                Ok(_) => Ok(()),
                Err(e) => match e.as_db_error() {
                    Some(db) if db.code() == &SqlState::UNIQUE_VIOLATION => match db.constraint() {
                        Some("link_sessions_code_key") => Err(StoreError::CodeTaken),
                        Some("link_sessions_token_key") => Err(StoreError::TokenTaken),
                        _ => Err(pg(e)),
                    },
                    _ => Err(pg(e)),
                },
            }
        })
    }

    fn get(&self, token: FrontendToken) -> StoreFuture<'_, Option<SessionRow>> {
        Box::pin(async move {
            let client = self.pool.get().await.map_err(pool_error)?;
            let found = client
                .query_opt(
                    &format!("SELECT {COLUMNS} FROM link_sessions WHERE token = $1"),
                    &[&token.as_str()],
                )
                .await
                .map_err(pg)?;
            found.as_ref().map(decode).transpose()
        })
    }

    fn set_disclosed(
        &self,
        token: FrontendToken,
        sealed: Vec<u8>,
        now: UnixSeconds,
        call_until: UnixSeconds,
    ) -> StoreFuture<'_, bool> {
        self.transaction(move |tx| {
            Box::pin(async move {
                let Some(row) = by_token_for_update(tx, &token).await? else {
                    return Ok(false);
                };
                let Some(next) = rules::set_disclosed(&row, now, call_until) else {
                    return Ok(false);
                };
                tx.execute(
                    "UPDATE link_sessions SET state = $2, updated_at = $3, expires_at = $4, \
                     sealed = $5 WHERE token = $1",
                    &[
                        &next.token.as_str(),
                        &state_name(next.state),
                        &secs(next.updated_at)?,
                        &secs(next.expires_at)?,
                        &sealed,
                    ],
                )
                .await
                .map_err(pg)?;
                Ok(true)
            })
        })
    }

    fn set_failed(
        &self,
        token: FrontendToken,
        to: SessionState,
        now: UnixSeconds,
    ) -> StoreFuture<'_, bool> {
        self.transaction(move |tx| {
            Box::pin(async move {
                let Some(row) = by_token_for_update(tx, &token).await? else {
                    return Ok(false);
                };
                let Some(next) = rules::set_failed(&row, to, now) else {
                    return Ok(false);
                };
                write(
                    tx,
                    &Change {
                        row: next,
                        purge_attributes: true,
                    },
                )
                .await?;
                Ok(true)
            })
        })
    }

    fn bind(
        &self,
        code: LinkCode,
        tenant: String,
        call_id: String,
        now: UnixSeconds,
        hold_until: UnixSeconds,
    ) -> StoreFuture<'_, BindOutcome> {
        self.transaction(move |tx| {
            Box::pin(async move {
                let Some((row, sealed)) = by_code_for_update(tx, &code).await? else {
                    return Ok(BindOutcome::Unknown);
                };
                if row.tenant != tenant {
                    // Another municipality's code: unknown here, and left as it is.
                    return Ok(BindOutcome::Unknown);
                }
                let (verdict, change) = rules::bind(&row, &call_id, now, hold_until);
                if let Some(change) = &change {
                    write(tx, change).await?;
                }
                Ok(match verdict {
                    BindVerdict::Bound => BindOutcome::Bound {
                        sealed: sealed.ok_or_else(|| {
                            StoreError::Corrupt("disclosed row without attributes".into())
                        })?,
                        row: change.map(|c| c.row).unwrap_or(row),
                    },
                    BindVerdict::Expired => BindOutcome::Expired,
                    BindVerdict::Used => BindOutcome::Used { by: row.call_id },
                    BindVerdict::NotDisclosed => BindOutcome::NotDisclosed,
                    BindVerdict::IrmaFailed => BindOutcome::IrmaFailed,
                })
            })
        })
    }

    fn peek(
        &self,
        code: LinkCode,
        tenant: String,
        now: UnixSeconds,
    ) -> StoreFuture<'_, Option<(SessionRow, Vec<u8>)>> {
        Box::pin(async move {
            let client = self.pool.get().await.map_err(pool_error)?;
            let found = client
                .query_opt(
                    &format!("SELECT {COLUMNS}, sealed FROM link_sessions WHERE code = $1"),
                    &[&code.expose()],
                )
                .await
                .map_err(pg)?;
            let Some((row, sealed)) = found.as_ref().map(decode_sealed).transpose()? else {
                return Ok(None);
            };
            if row.tenant != tenant || !rules::would_bind(&row, now) {
                return Ok(None);
            }
            let sealed = sealed
                .ok_or_else(|| StoreError::Corrupt("disclosed row without attributes".into()))?;
            Ok(Some((row, sealed)))
        })
    }

    fn consume(&self, key: ConsumeKey, now: UnixSeconds) -> StoreFuture<'_, bool> {
        self.transaction(move |tx| {
            Box::pin(async move {
                let rows = match &key {
                    ConsumeKey::Call(call) => {
                        let found = tx
                            .query(
                                &format!(
                                    "SELECT {COLUMNS} FROM link_sessions WHERE call_id = $1 \
                                     ORDER BY token FOR UPDATE"
                                ),
                                &[call],
                            )
                            .await
                            .map_err(pg)?;
                        found.iter().map(decode).collect::<Result<Vec<_>, _>>()?
                    }
                    ConsumeKey::Session(token) => {
                        by_token_for_update(tx, token).await?.into_iter().collect()
                    }
                };
                let mut changed = false;
                for row in rows {
                    if let Some(change) = rules::consume(&row, now) {
                        write(tx, &change).await?;
                        changed = true;
                    }
                }
                Ok(changed)
            })
        })
    }

    fn purge_expired(
        &self,
        now: UnixSeconds,
        forget_before: UnixSeconds,
    ) -> StoreFuture<'_, Purged> {
        self.transaction(move |tx| {
            Box::pin(async move {
                let mut purged = Purged::default();
                // Terminal rows from before the cutoff go first (as in the key-value stores, a row
                // that expires in this pass is not also forgotten in it).
                let forgotten = tx
                    .execute(
                        "DELETE FROM link_sessions \
                         WHERE state IN ('consumed', 'expired', 'cancelled') AND updated_at < $1",
                        &[&secs(forget_before)?],
                    )
                    .await
                    .map_err(pg)?;
                purged.forgotten = usize::try_from(forgotten).unwrap_or(usize::MAX);
                // Another instance purging at the same moment waits for these locks and then skips
                // the rows this one changed (PostgreSQL re-checks the WHERE on the new version).
                let due = tx
                    .query(
                        &format!(
                            "SELECT {COLUMNS} FROM link_sessions \
                             WHERE state IN ('pending', 'disclosed', 'bound') AND expires_at <= $1 \
                             ORDER BY token FOR UPDATE"
                        ),
                        &[&secs(now)?],
                    )
                    .await
                    .map_err(pg)?;
                for found in &due {
                    let row = decode(found)?;
                    if let Some((change, abandoned)) = rules::expire(&row, now) {
                        write(tx, &change).await?;
                        purged.attributes_purged += 1;
                        if abandoned {
                            purged.abandoned.push(row);
                        }
                    }
                }
                Ok(purged)
            })
        })
    }

    fn pending(&self) -> StoreFuture<'_, Vec<SessionRow>> {
        Box::pin(async move {
            let client = self.pool.get().await.map_err(pool_error)?;
            let rows = client
                .query(
                    &format!("SELECT {COLUMNS} FROM link_sessions WHERE state = 'pending'"),
                    &[],
                )
                .await
                .map_err(pg)?;
            rows.iter().map(decode).collect()
        })
    }

    /// Ends this instance's `Bound` rows only (call keys ending in `@<instance>`): the calls its
    /// previous run was holding when it died. Other instances' calls are theirs.
    fn end_cut_off_calls(&self, now: UnixSeconds) -> StoreFuture<'_, usize> {
        let suffix = self.call_suffix.clone();
        self.transaction(move |tx| {
            Box::pin(async move {
                let rows = tx
                    .query(
                        &format!(
                            "SELECT {COLUMNS} FROM link_sessions WHERE state = 'bound' \
                             AND right(call_id, char_length($1)) = $1 ORDER BY token FOR UPDATE"
                        ),
                        &[&suffix],
                    )
                    .await
                    .map_err(pg)?;
                let mut ended = 0;
                for found in &rows {
                    let row = decode(found)?;
                    let ours = row
                        .call_id
                        .as_deref()
                        .is_some_and(|call| call.ends_with(suffix.as_str()));
                    if !ours {
                        continue;
                    }
                    if let Some(change) = rules::end_cut_off_call(&row, now) {
                        write(tx, &change).await?;
                        ended += 1;
                    }
                }
                Ok(ended)
            })
        })
    }
}
