//! The link-session store: one row per Yivi session a citizen starts on a municipality's website.
//!
//! A row holds the tenant, the IRMA requestor token, the 8-digit link code, the state, its times
//! and, once the disclosure is in, the attributes sealed with [`AttributeKey`]. The store never
//! sees plaintext attributes.
//!
//! ```text
//!            set_disclosed            bind (single use)      consume / hold expiry / restart
//!  Pending ───────────────▶ Disclosed ─────────────────▶ Bound ─────────────────────────▶ Consumed
//!     │ set_failed / expiry      │ expiry
//!     ▼                          ▼
//!  Cancelled / Expired        Expired
//! ```
//!
//! After an unclean stop (a crash, `kill -9`, power loss) every committed step is there and no
//! other: a `Pending` row is watched again ([`SessionStore::pending`]), a `Disclosed` code still
//! waits for its call, and a `Bound` row — its call died with the process — is ended at startup
//! ([`SessionStore::end_cut_off_calls`]): its code stays used, its attributes are purged.
//!
//! [`SessionStore`] is object-safe (`Arc<dyn SessionStore>`) and async: every method returns a
//! boxed future. Each method is one atomic step *in the store* (one write transaction), never
//! guarded by an in-process lock, so a PostgreSQL implementation (one `UPDATE … WHERE state = …`
//! or `SELECT … FOR UPDATE` per method) can run several processes against one database.
//! The transition rules themselves are the pure functions in [`rules`]; the backends only load,
//! apply and write. Time is always passed in (`now`, unix seconds) so tests can simulate it.
//!
//! Backends: [`RedbStore`] (embedded, durable: every commit is fsynced before it returns; one
//! process), [`PostgresStore`] (one database shared by several instances behind one trunk) and
//! [`MemoryStore`] (tests). Which one `serve` opens is [`StoreBackend`] (`[store]` in the config).

pub mod code;
pub mod key;
pub mod memory;
pub mod ops;
pub mod postgres;
pub mod redb_store;
pub mod rules;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

pub use code::{CodeError, FrontendToken, LinkCode};
pub use key::{AttributeKey, KeyError};
pub use memory::MemoryStore;
pub use postgres::{PostgresSettings, PostgresStore};
pub use redb_store::RedbStore;

/// Why a data directory could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("data directory {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Open the durable store of a data directory: `<dir>/sessions.redb`, with the attribute key from
/// config (`configured_key`, base64 of 32 bytes) or else from `<dir>/attribute.key` (created 0600
/// on first use). The directory is created (0700) when missing.
pub fn open_data_dir(
    dir: &Path,
    configured_key: Option<&str>,
) -> Result<(RedbStore, AttributeKey), DataDirError> {
    use std::os::unix::fs::DirBuilderExt;
    let io = |source| DataDirError::Io {
        path: dir.display().to_string(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io)?;
    let key = match configured_key {
        Some(text) => AttributeKey::from_base64(text)?,
        None => AttributeKey::load_or_create(dir)?,
    };
    let store = RedbStore::open(&dir.join(redb_store::DB_FILE))?;
    Ok((store, key))
}

pub use crate::time::UnixSeconds;

/// Where `serve` keeps link sessions (`[store] backend`).
#[derive(Debug, Clone, Default)]
pub enum StoreBackend {
    /// `<data_dir>/sessions.redb`, owned by one process (the default).
    #[default]
    Redb,
    /// A PostgreSQL database shared by several instances.
    Postgres(PostgresSettings),
}

impl StoreBackend {
    /// The stable instance name that goes into call keys, when one is configured.
    pub fn instance(&self) -> Option<&str> {
        match self {
            StoreBackend::Redb => None,
            StoreBackend::Postgres(settings) => Some(&settings.instance),
        }
    }
}

/// Where a link session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// The IRMA session runs; no attributes yet.
    Pending,
    /// Attributes accepted and cached (sealed); the code waits for a call.
    Disclosed,
    /// A call bound the code; attributes stay until the call ends.
    Bound,
    /// The call ended; attributes purged.
    Consumed,
    /// The code expired before a call bound it; attributes purged.
    Expired,
    /// The citizen cancelled, the IRMA server failed, or the result was not acceptable.
    Cancelled,
}

impl SessionState {
    /// Whether the row can still change because of a citizen or a call.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            SessionState::Pending | SessionState::Disclosed | SessionState::Bound
        )
    }
}

/// One row, without the sealed attributes (those are only handed out by [`SessionStore::bind`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRow {
    pub token: FrontendToken,
    pub tenant: String,
    /// The IRMA requestor token: a secret towards the browser, never sent to it.
    pub irma_token: String,
    pub code: LinkCode,
    pub state: SessionState,
    pub created_at: UnixSeconds,
    pub updated_at: UnixSeconds,
    /// Until `Bound`: when the code expires. From `Bound` on: until when the attributes may be held
    /// for the call (a safety net when a call's end is never reported).
    pub expires_at: UnixSeconds,
    pub call_id: Option<String>,
}

impl SessionRow {
    /// A new `Pending` row.
    pub fn pending(
        token: FrontendToken,
        tenant: String,
        irma_token: String,
        code: LinkCode,
        now: UnixSeconds,
        expires_at: UnixSeconds,
    ) -> SessionRow {
        SessionRow {
            token,
            tenant,
            irma_token,
            code,
            state: SessionState::Pending,
            created_at: now,
            updated_at: now,
            expires_at,
            call_id: None,
        }
    }
}

/// What [`SessionStore::bind`] found for a code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindOutcome {
    /// This call now owns the code; here are the sealed attributes.
    Bound { row: SessionRow, sealed: Vec<u8> },
    /// No row has this code.
    Unknown,
    /// The code expired (now or earlier).
    Expired,
    /// Another call bound the code already, or its call has ended. `by` is the store key of the
    /// call that bound it (so that call can be warned that its code was presented again).
    Used { by: Option<String> },
    /// The IRMA session is still running (the caller may wait briefly and retry).
    NotDisclosed,
    /// The IRMA session was cancelled, failed, or gave an unacceptable result.
    IrmaFailed,
}

/// How [`SessionStore::consume`] finds the row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsumeKey {
    Call(String),
    Session(FrontendToken),
}

/// What [`SessionStore::purge_expired`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Purged {
    /// Rows that were `Pending` and expired now: their IRMA sessions should be cancelled.
    pub abandoned: Vec<SessionRow>,
    /// Rows whose attributes were purged now (expired codes and calls past their hold time).
    pub attributes_purged: usize,
    /// Terminal rows older than the retention cutoff, deleted with their code.
    pub forgotten: usize,
}

/// Store failures. Transition refusals are not errors: they are [`BindOutcome`]s and `false`s.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("link code already in use")]
    CodeTaken,
    #[error("session token already in use")]
    TokenTaken,
    #[error("stored row is unreadable: {0}")]
    Corrupt(String),
    #[error("store backend: {0}")]
    Backend(String),
}

/// A boxed future returned by every store method.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Persistent, multi-process-safe home of link sessions. Every method is one atomic step.
pub trait SessionStore: Send + Sync + 'static {
    /// Insert a new row. Fails with [`StoreError::CodeTaken`] when any stored row (live or not yet
    /// forgotten) has the same code, so a late call with an old code can never reach a new session.
    fn insert(&self, row: SessionRow) -> StoreFuture<'_, ()>;

    /// The row for a frontend token.
    fn get(&self, token: FrontendToken) -> StoreFuture<'_, Option<SessionRow>>;

    /// `Pending` → `Disclosed` with the sealed attributes, if the row is still pending and its code
    /// has not expired at `now`; the code then expires at `call_until` (the time left for the
    /// call). Returns whether it changed.
    fn set_disclosed(
        &self,
        token: FrontendToken,
        sealed: Vec<u8>,
        now: UnixSeconds,
        call_until: UnixSeconds,
    ) -> StoreFuture<'_, bool>;

    /// `Pending` → `to` (`Cancelled` or `Expired`). Returns whether it changed.
    fn set_failed(
        &self,
        token: FrontendToken,
        to: SessionState,
        now: UnixSeconds,
    ) -> StoreFuture<'_, bool>;

    /// Bind `code` to `call_id`, once: `Disclosed` → `Bound`, setting `expires_at = hold_until`.
    /// Binding again with the same `call_id` returns the attributes again (a call may deliver its
    /// code twice, e.g. RFC 4733 and SIP INFO); any other call gets [`BindOutcome::Used`].
    /// A code issued by another tenant than the called `tenant` is [`BindOutcome::Unknown`] and
    /// stays untouched, still usable for a call to its own tenant.
    fn bind(
        &self,
        code: LinkCode,
        tenant: String,
        call_id: String,
        now: UnixSeconds,
        hold_until: UnixSeconds,
    ) -> StoreFuture<'_, BindOutcome>;

    /// The row and sealed attributes a [`bind`](Self::bind) of `code` for `tenant` at `now` would
    /// bind, without binding it (`None` for every other outcome). For checks that must pass
    /// before a code is spent, such as caller-ID binding; the bind that follows stays the one
    /// atomic step that decides.
    fn peek(
        &self,
        code: LinkCode,
        tenant: String,
        now: UnixSeconds,
    ) -> StoreFuture<'_, Option<(SessionRow, Vec<u8>)>>;

    /// The call ended (or the session is done with): purge the attributes, state `Consumed`
    /// (a row never bound becomes `Expired`). Returns whether a row was found and changed.
    fn consume(&self, key: ConsumeKey, now: UnixSeconds) -> StoreFuture<'_, bool>;

    /// Expire codes and hold times that passed at `now` (purging their attributes) and delete
    /// terminal rows last updated before `forget_before`.
    fn purge_expired(
        &self,
        now: UnixSeconds,
        forget_before: UnixSeconds,
    ) -> StoreFuture<'_, Purged>;

    /// All `Pending` rows (to resume watching their IRMA sessions after a restart).
    fn pending(&self) -> StoreFuture<'_, Vec<SessionRow>>;

    /// At startup, before this process takes a call: every `Bound` row of this instance →
    /// `Consumed`, its attributes purged; returns how many. Those calls died with the process that
    /// ran them (a crash or `kill -9` never reports a call's end), and attributes go when the call
    /// ends; the code stays used. A store one process owns (redb's file lock makes sure; the
    /// in-memory store) ends every `Bound` row. A shared store ends only the rows whose call key
    /// names this instance (`…@<instance>`, see [`PostgresStore`]): other instances' calls are live;
    /// the rows of an instance that never comes back end at their hold expiry
    /// ([`purge_expired`](Self::purge_expired)).
    fn end_cut_off_calls(&self, now: UnixSeconds) -> StoreFuture<'_, usize>;
}
