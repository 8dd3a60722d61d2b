//! Embedded, durable [`SessionStore`] on redb.
//!
//! Every operation is one redb write transaction, committed with redb's default `Immediate`
//! durability: when a method returns, its change is on disk and survives `kill -9` and power loss.
//! A transaction that changed nothing (a wrong code's bind, the release of a call that bound no
//! code) is aborted instead: there is nothing to make durable, and its commit would cost a sync
//! of the file — at a thousand calls a second, more syncs than a disk does.
//! A process killed *during* a write leaves the file as the last commit left it: redb writes a
//! transaction's pages copy-on-write and makes them current by one checksummed commit-slot write,
//! so a row, its code and call entries and its sealed attributes change together or not at all;
//! the next [`RedbStore::open`] repairs redb's allocator state after such a stop.
//! redb allows one write transaction at a time, which is what makes [`SessionStore::bind`]
//! single-use without any in-process lock. The file is opened in redb's default
//! `ExclusiveWriter` mode: a lock the kernel drops when the process dies keeps any other process
//! (a second `serve` on the same data directory) out, which is what lets
//! [`SessionStore::end_cut_off_calls`] end every bound call at startup.
//! The blocking redb calls run on tokio's blocking pool.
//!
//! Tables: `sessions` (frontend token → row as JSON), `codes` (code → token), `calls`
//! (call id → token), `attributes` (token → sealed bytes).

use std::path::Path;
use std::sync::Arc;

use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table, TableDefinition,
};

use super::ops::{self, Tx};
use super::{
    BindOutcome, ConsumeKey, FrontendToken, LinkCode, Purged, SessionRow, SessionState,
    SessionStore, StoreError, StoreFuture, UnixSeconds,
};

const SESSIONS: TableDefinition<&str, &str> = TableDefinition::new("sessions");
const CODES: TableDefinition<&str, &str> = TableDefinition::new("codes");
const CALLS: TableDefinition<&str, &str> = TableDefinition::new("calls");
const ATTRIBUTES: TableDefinition<&str, &[u8]> = TableDefinition::new("attributes");

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "sessions.redb";

/// A [`SessionStore`] in a redb file.
#[derive(Clone)]
pub struct RedbStore {
    db: Arc<Database>,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl RedbStore {
    /// Open (or create) the database file at `path`. After an unclean stop redb repairs the file
    /// here; committed transactions are all present.
    pub fn open(path: &Path) -> Result<RedbStore, StoreError> {
        let db = Database::create(path).map_err(backend)?;
        // Sealed attributes live here: owner only, whatever the umask.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| StoreError::Backend(format!("restricting {}: {e}", path.display())))?;
        }
        // redb syncs the file on every commit, not the directory that names it: sync that once, so
        // a newly created database is not lost to a power cut with everything committed into it.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| StoreError::Backend(format!("syncing {}: {e}", dir.display())))?;
        }
        let txn = db.begin_write().map_err(backend)?;
        {
            txn.open_table(SESSIONS).map_err(backend)?;
            txn.open_table(CODES).map_err(backend)?;
            txn.open_table(CALLS).map_err(backend)?;
            txn.open_table(ATTRIBUTES).map_err(backend)?;
        }
        txn.commit().map_err(backend)?;
        Ok(RedbStore { db: Arc::new(db) })
    }

    /// Number of sealed attribute sets on disk (tests check purging with it).
    pub fn sealed_count(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let table = txn.open_table(ATTRIBUTES).map_err(backend)?;
        table.len().map_err(backend)
    }

    /// Run `f` in one write transaction on the blocking pool; commit on `Ok`, abort on `Err`.
    fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Tx) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<'_, T> {
        self.transaction(true, f)
    }

    /// Run `f` in one write transaction on the blocking pool; commit on `Ok` when `commit` and `f`
    /// changed something (else abort: `f` only read), abort on `Err`.
    fn transaction<T: Send + 'static>(
        &self,
        commit: bool,
        f: impl FnOnce(&mut dyn Tx) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<'_, T> {
        let db = self.db.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let txn = db.begin_write().map_err(backend)?;
                let (result, changed) = {
                    let mut tx = RedbTx {
                        sessions: txn.open_table(SESSIONS).map_err(backend)?,
                        codes: txn.open_table(CODES).map_err(backend)?,
                        calls: txn.open_table(CALLS).map_err(backend)?,
                        attributes: txn.open_table(ATTRIBUTES).map_err(backend)?,
                        changed: false,
                    };
                    (f(&mut tx), tx.changed)
                };
                match result {
                    Ok(v) if commit && changed => {
                        txn.commit().map_err(backend)?;
                        Ok(v)
                    }
                    Ok(v) => {
                        txn.abort().map_err(backend)?;
                        Ok(v)
                    }
                    Err(e) => {
                        txn.abort().map_err(backend)?;
                        Err(e)
                    }
                }
            })
            .await
            .map_err(backend)?
        })
    }

    fn read_row(db: &Database, token: &FrontendToken) -> Result<Option<SessionRow>, StoreError> {
        let txn = db.begin_read().map_err(backend)?;
        let table = txn.open_table(SESSIONS).map_err(backend)?;
        let guard = table.get(token.as_str()).map_err(backend)?;
        guard.map(|g| decode(g.value())).transpose()
    }
}

fn decode(json: &str) -> Result<SessionRow, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(e.to_string()))
}

struct RedbTx<'t> {
    sessions: Table<'t, &'static str, &'static str>,
    codes: Table<'t, &'static str, &'static str>,
    calls: Table<'t, &'static str, &'static str>,
    attributes: Table<'t, &'static str, &'static [u8]>,
    /// Whether anything was written or removed (else the transaction is aborted, not committed).
    changed: bool,
}

fn token_of(s: &str) -> Result<FrontendToken, StoreError> {
    FrontendToken::parse(s).ok_or_else(|| StoreError::Corrupt("bad token in index".into()))
}

impl Tx for RedbTx<'_> {
    fn row(&mut self, token: &FrontendToken) -> Result<Option<SessionRow>, StoreError> {
        let guard = self.sessions.get(token.as_str()).map_err(backend)?;
        guard.map(|g| decode(g.value())).transpose()
    }
    fn put_row(&mut self, row: &SessionRow) -> Result<(), StoreError> {
        self.changed = true;
        let json = serde_json::to_string(row).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.sessions
            .insert(row.token.as_str(), json.as_str())
            .map_err(backend)?;
        Ok(())
    }
    fn del_row(&mut self, token: &FrontendToken) -> Result<(), StoreError> {
        self.changed = true;
        self.sessions.remove(token.as_str()).map_err(backend)?;
        Ok(())
    }
    fn all_rows(&mut self) -> Result<Vec<SessionRow>, StoreError> {
        let mut rows = Vec::new();
        for entry in self.sessions.iter().map_err(backend)? {
            let (_, v) = entry.map_err(backend)?;
            rows.push(decode(v.value())?);
        }
        Ok(rows)
    }
    fn code(&mut self, code: &LinkCode) -> Result<Option<FrontendToken>, StoreError> {
        let guard = self.codes.get(code.expose()).map_err(backend)?;
        guard.map(|g| token_of(g.value())).transpose()
    }
    fn put_code(&mut self, code: &LinkCode, token: &FrontendToken) -> Result<(), StoreError> {
        self.changed = true;
        self.codes
            .insert(code.expose(), token.as_str())
            .map_err(backend)?;
        Ok(())
    }
    fn del_code(&mut self, code: &LinkCode) -> Result<(), StoreError> {
        self.changed = true;
        self.codes.remove(code.expose()).map_err(backend)?;
        Ok(())
    }
    fn call(&mut self, call_id: &str) -> Result<Option<FrontendToken>, StoreError> {
        let guard = self.calls.get(call_id).map_err(backend)?;
        guard.map(|g| token_of(g.value())).transpose()
    }
    fn put_call(&mut self, call_id: &str, token: &FrontendToken) -> Result<(), StoreError> {
        self.changed = true;
        self.calls
            .insert(call_id, token.as_str())
            .map_err(backend)?;
        Ok(())
    }
    fn del_call(&mut self, call_id: &str) -> Result<(), StoreError> {
        self.changed = true;
        self.calls.remove(call_id).map_err(backend)?;
        Ok(())
    }
    fn attrs(&mut self, token: &FrontendToken) -> Result<Option<Vec<u8>>, StoreError> {
        let guard = self.attributes.get(token.as_str()).map_err(backend)?;
        Ok(guard.map(|g| g.value().to_vec()))
    }
    fn put_attrs(&mut self, token: &FrontendToken, sealed: &[u8]) -> Result<(), StoreError> {
        self.changed = true;
        self.attributes
            .insert(token.as_str(), sealed)
            .map_err(backend)?;
        Ok(())
    }
    fn del_attrs(&mut self, token: &FrontendToken) -> Result<(), StoreError> {
        self.changed = true;
        self.attributes.remove(token.as_str()).map_err(backend)?;
        Ok(())
    }
}

impl SessionStore for RedbStore {
    fn insert(&self, row: SessionRow) -> StoreFuture<'_, ()> {
        self.write(move |tx| ops::insert(tx, &row))
    }
    fn get(&self, token: FrontendToken) -> StoreFuture<'_, Option<SessionRow>> {
        let db = self.db.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || RedbStore::read_row(&db, &token))
                .await
                .map_err(backend)?
        })
    }
    fn set_disclosed(
        &self,
        token: FrontendToken,
        sealed: Vec<u8>,
        now: UnixSeconds,
        call_until: UnixSeconds,
    ) -> StoreFuture<'_, bool> {
        self.write(move |tx| ops::set_disclosed(tx, &token, &sealed, now, call_until))
    }
    fn set_failed(
        &self,
        token: FrontendToken,
        to: SessionState,
        now: UnixSeconds,
    ) -> StoreFuture<'_, bool> {
        self.write(move |tx| ops::set_failed(tx, &token, to, now))
    }
    fn bind(
        &self,
        code: LinkCode,
        tenant: String,
        call_id: String,
        now: UnixSeconds,
        hold_until: UnixSeconds,
    ) -> StoreFuture<'_, BindOutcome> {
        self.write(move |tx| ops::bind(tx, &code, &tenant, &call_id, now, hold_until))
    }
    fn peek(
        &self,
        code: LinkCode,
        tenant: String,
        now: UnixSeconds,
    ) -> StoreFuture<'_, Option<(SessionRow, Vec<u8>)>> {
        self.transaction(false, move |tx| ops::peek(tx, &code, &tenant, now))
    }
    fn consume(&self, key: ConsumeKey, now: UnixSeconds) -> StoreFuture<'_, bool> {
        self.write(move |tx| ops::consume(tx, &key, now))
    }
    fn purge_expired(
        &self,
        now: UnixSeconds,
        forget_before: UnixSeconds,
    ) -> StoreFuture<'_, Purged> {
        self.write(move |tx| ops::purge_expired(tx, now, forget_before))
    }
    fn pending(&self) -> StoreFuture<'_, Vec<SessionRow>> {
        self.write(ops::pending)
    }
    fn end_cut_off_calls(&self, now: UnixSeconds) -> StoreFuture<'_, usize> {
        self.write(move |tx| ops::end_cut_off_calls(tx, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disclosed_row(store: &RedbStore, now: UnixSeconds) -> (FrontendToken, LinkCode) {
        let (token, code) = (FrontendToken::generate(), LinkCode::generate());
        let row = SessionRow::pending(
            token.clone(),
            "demo".into(),
            "irma".into(),
            code.clone(),
            now,
            now + 900,
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            store.insert(row).await.unwrap();
            assert!(store
                .set_disclosed(token.clone(), b"sealed".to_vec(), now, now + 300)
                .await
                .unwrap());
        });
        (token, code)
    }

    #[test]
    fn a_second_open_of_the_same_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DB_FILE);
        let first = RedbStore::open(&path).unwrap();
        assert!(
            RedbStore::open(&path).is_err(),
            "two owners of one store could end each other's calls"
        );
        drop(first);
        RedbStore::open(&path).expect("free again once closed");
    }

    #[test]
    fn calls_cut_off_by_a_stop_end_on_the_next_open_and_their_codes_stay_used() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DB_FILE);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let now = 1_000_000;
        let (bound_token, bound_code, waiting_token, waiting_code, pending_token) = {
            let store = RedbStore::open(&path).unwrap();
            let (bound_token, bound_code) = disclosed_row(&store, now);
            let (waiting_token, waiting_code) = disclosed_row(&store, now);
            let pending_token = FrontendToken::generate();
            rt.block_on(async {
                let bound = store
                    .bind(
                        bound_code.clone(),
                        "demo".into(),
                        "7-instance1".into(),
                        now + 1,
                        now + 3600,
                    )
                    .await
                    .unwrap();
                assert!(matches!(bound, BindOutcome::Bound { .. }));
                store
                    .insert(SessionRow::pending(
                        pending_token.clone(),
                        "demo".into(),
                        "irma".into(),
                        LinkCode::generate(),
                        now,
                        now + 900,
                    ))
                    .await
                    .unwrap();
            });
            assert_eq!(store.sealed_count().unwrap(), 2);
            // The process dies here: no consume for the bound call.
            (
                bound_token,
                bound_code,
                waiting_token,
                waiting_code,
                pending_token,
            )
        };

        let store = RedbStore::open(&path).unwrap();
        rt.block_on(async {
            assert_eq!(store.end_cut_off_calls(now + 10).await.unwrap(), 1);
            assert_eq!(store.sealed_count().unwrap(), 1, "only the waiting code's");
            let ended = store.get(bound_token).await.unwrap().unwrap();
            assert_eq!(
                (ended.state, ended.updated_at),
                (SessionState::Consumed, now + 10)
            );
            assert_eq!(
                store
                    .bind(
                        bound_code,
                        "demo".into(),
                        "1-instance2".into(),
                        now + 11,
                        now + 3600
                    )
                    .await
                    .unwrap(),
                BindOutcome::Used {
                    by: Some("7-instance1".into())
                }
            );
            assert_eq!(
                store.end_cut_off_calls(now + 11).await.unwrap(),
                0,
                "once is all"
            );
            // Untouched: the disclosed code still binds once, the pending session is resumed.
            assert_eq!(
                store.get(waiting_token).await.unwrap().unwrap().state,
                SessionState::Disclosed
            );
            assert!(matches!(
                store
                    .bind(
                        waiting_code,
                        "demo".into(),
                        "2-instance2".into(),
                        now + 12,
                        now + 3600
                    )
                    .await
                    .unwrap(),
                BindOutcome::Bound { .. }
            ));
            let pending: Vec<_> = store.pending().await.unwrap();
            assert_eq!(pending.len(), 1);
            assert_eq!(pending[0].token, pending_token);
        });
    }
}
