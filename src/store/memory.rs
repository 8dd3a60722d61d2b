//! In-memory [`SessionStore`] for tests and throwaway demos. Nothing survives the process; one
//! mutex makes each operation atomic (within this one process, which is all it claims).

use std::collections::HashMap;
use std::sync::Mutex;

use super::ops::{self, Tx};
use super::{
    BindOutcome, ConsumeKey, FrontendToken, LinkCode, Purged, SessionRow, SessionState,
    SessionStore, StoreError, StoreFuture, UnixSeconds,
};

/// The four maps of [`ops`], in memory.
#[derive(Default)]
struct Maps {
    rows: HashMap<FrontendToken, SessionRow>,
    codes: HashMap<LinkCode, FrontendToken>,
    calls: HashMap<String, FrontendToken>,
    attrs: HashMap<FrontendToken, Vec<u8>>,
}

/// A [`SessionStore`] in a `HashMap`.
#[derive(Default)]
pub struct MemoryStore {
    maps: Mutex<Maps>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Run one operation atomically. A poisoned lock only means another operation panicked midway
    /// through plain map edits; the maps themselves are still valid, so carry on with them.
    fn with<T>(
        &self,
        f: impl FnOnce(&mut dyn Tx) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut maps = crate::sync::lock(&self.maps);
        f(&mut *maps)
    }

    /// Number of sealed attribute sets held (tests check purging with it).
    pub fn sealed_count(&self) -> usize {
        crate::sync::lock(&self.maps).attrs.len()
    }
}

impl Tx for Maps {
    fn row(&mut self, token: &FrontendToken) -> Result<Option<SessionRow>, StoreError> {
        Ok(self.rows.get(token).cloned())
    }
    fn put_row(&mut self, row: &SessionRow) -> Result<(), StoreError> {
        self.rows.insert(row.token.clone(), row.clone());
        Ok(())
    }
    fn del_row(&mut self, token: &FrontendToken) -> Result<(), StoreError> {
        self.rows.remove(token);
        Ok(())
    }
    fn all_rows(&mut self) -> Result<Vec<SessionRow>, StoreError> {
        Ok(self.rows.values().cloned().collect())
    }
    fn code(&mut self, code: &LinkCode) -> Result<Option<FrontendToken>, StoreError> {
        Ok(self.codes.get(code).cloned())
    }
    fn put_code(&mut self, code: &LinkCode, token: &FrontendToken) -> Result<(), StoreError> {
        self.codes.insert(code.clone(), token.clone());
        Ok(())
    }
    fn del_code(&mut self, code: &LinkCode) -> Result<(), StoreError> {
        self.codes.remove(code);
        Ok(())
    }
    fn call(&mut self, call_id: &str) -> Result<Option<FrontendToken>, StoreError> {
        Ok(self.calls.get(call_id).cloned())
    }
    fn put_call(&mut self, call_id: &str, token: &FrontendToken) -> Result<(), StoreError> {
        self.calls.insert(call_id.to_owned(), token.clone());
        Ok(())
    }
    fn del_call(&mut self, call_id: &str) -> Result<(), StoreError> {
        self.calls.remove(call_id);
        Ok(())
    }
    fn attrs(&mut self, token: &FrontendToken) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.attrs.get(token).cloned())
    }
    fn put_attrs(&mut self, token: &FrontendToken, sealed: &[u8]) -> Result<(), StoreError> {
        self.attrs.insert(token.clone(), sealed.to_vec());
        Ok(())
    }
    fn del_attrs(&mut self, token: &FrontendToken) -> Result<(), StoreError> {
        self.attrs.remove(token);
        Ok(())
    }
}

impl SessionStore for MemoryStore {
    fn insert(&self, row: SessionRow) -> StoreFuture<'_, ()> {
        Box::pin(std::future::ready(self.with(|tx| ops::insert(tx, &row))))
    }
    fn get(&self, token: FrontendToken) -> StoreFuture<'_, Option<SessionRow>> {
        Box::pin(std::future::ready(self.with(|tx| tx.row(&token))))
    }
    fn set_disclosed(
        &self,
        token: FrontendToken,
        sealed: Vec<u8>,
        now: UnixSeconds,
        call_until: UnixSeconds,
    ) -> StoreFuture<'_, bool> {
        Box::pin(std::future::ready(self.with(|tx| {
            ops::set_disclosed(tx, &token, &sealed, now, call_until)
        })))
    }
    fn set_failed(
        &self,
        token: FrontendToken,
        to: SessionState,
        now: UnixSeconds,
    ) -> StoreFuture<'_, bool> {
        Box::pin(std::future::ready(
            self.with(|tx| ops::set_failed(tx, &token, to, now)),
        ))
    }
    fn bind(
        &self,
        code: LinkCode,
        tenant: String,
        call_id: String,
        now: UnixSeconds,
        hold_until: UnixSeconds,
    ) -> StoreFuture<'_, BindOutcome> {
        Box::pin(std::future::ready(self.with(|tx| {
            ops::bind(tx, &code, &tenant, &call_id, now, hold_until)
        })))
    }
    fn peek(
        &self,
        code: LinkCode,
        tenant: String,
        now: UnixSeconds,
    ) -> StoreFuture<'_, Option<(SessionRow, Vec<u8>)>> {
        Box::pin(std::future::ready(
            self.with(|tx| ops::peek(tx, &code, &tenant, now)),
        ))
    }
    fn consume(&self, key: ConsumeKey, now: UnixSeconds) -> StoreFuture<'_, bool> {
        Box::pin(std::future::ready(
            self.with(|tx| ops::consume(tx, &key, now)),
        ))
    }
    fn purge_expired(
        &self,
        now: UnixSeconds,
        forget_before: UnixSeconds,
    ) -> StoreFuture<'_, Purged> {
        Box::pin(std::future::ready(
            self.with(|tx| ops::purge_expired(tx, now, forget_before)),
        ))
    }
    fn pending(&self) -> StoreFuture<'_, Vec<SessionRow>> {
        Box::pin(std::future::ready(self.with(ops::pending)))
    }
    fn end_cut_off_calls(&self, now: UnixSeconds) -> StoreFuture<'_, usize> {
        Box::pin(std::future::ready(
            self.with(|tx| ops::end_cut_off_calls(tx, now)),
        ))
    }
}
