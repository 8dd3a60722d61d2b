//! The store operations written once over a key-value transaction ([`Tx`]), for backends that are
//! key-value maps (redb, the in-memory store). Each function must run inside one atomic
//! transaction of the backend; it reads rows, asks [`super::rules`] and writes the change.
//!
//! Four maps: rows by frontend token, frontend token by code, frontend token by call id, sealed
//! attributes by frontend token.

use super::rules::{self, BindVerdict, Change};
use super::{
    BindOutcome, ConsumeKey, FrontendToken, LinkCode, Purged, SessionRow, SessionState, StoreError,
    UnixSeconds,
};

/// One open transaction over the four maps.
pub trait Tx {
    fn row(&mut self, token: &FrontendToken) -> Result<Option<SessionRow>, StoreError>;
    fn put_row(&mut self, row: &SessionRow) -> Result<(), StoreError>;
    fn del_row(&mut self, token: &FrontendToken) -> Result<(), StoreError>;
    fn all_rows(&mut self) -> Result<Vec<SessionRow>, StoreError>;
    fn code(&mut self, code: &LinkCode) -> Result<Option<FrontendToken>, StoreError>;
    fn put_code(&mut self, code: &LinkCode, token: &FrontendToken) -> Result<(), StoreError>;
    fn del_code(&mut self, code: &LinkCode) -> Result<(), StoreError>;
    fn call(&mut self, call_id: &str) -> Result<Option<FrontendToken>, StoreError>;
    fn put_call(&mut self, call_id: &str, token: &FrontendToken) -> Result<(), StoreError>;
    fn del_call(&mut self, call_id: &str) -> Result<(), StoreError>;
    fn attrs(&mut self, token: &FrontendToken) -> Result<Option<Vec<u8>>, StoreError>;
    fn put_attrs(&mut self, token: &FrontendToken, sealed: &[u8]) -> Result<(), StoreError>;
    fn del_attrs(&mut self, token: &FrontendToken) -> Result<(), StoreError>;
}

fn write(tx: &mut dyn Tx, change: &Change) -> Result<(), StoreError> {
    tx.put_row(&change.row)?;
    if let Some(call) = &change.row.call_id {
        tx.put_call(call, &change.row.token)?;
    }
    if change.purge_attributes {
        tx.del_attrs(&change.row.token)?;
    }
    Ok(())
}

pub fn insert(tx: &mut dyn Tx, row: &SessionRow) -> Result<(), StoreError> {
    if tx.code(&row.code)?.is_some() {
        return Err(StoreError::CodeTaken);
    }
    if tx.row(&row.token)?.is_some() {
        return Err(StoreError::TokenTaken);
    }
    tx.put_code(&row.code, &row.token)?;
    tx.put_row(row)
}

pub fn set_disclosed(
    tx: &mut dyn Tx,
    token: &FrontendToken,
    sealed: &[u8],
    now: UnixSeconds,
    call_until: UnixSeconds,
) -> Result<bool, StoreError> {
    let Some(row) = tx.row(token)? else {
        return Ok(false);
    };
    let Some(next) = rules::set_disclosed(&row, now, call_until) else {
        return Ok(false);
    };
    tx.put_attrs(token, sealed)?;
    tx.put_row(&next)?;
    Ok(true)
}

pub fn set_failed(
    tx: &mut dyn Tx,
    token: &FrontendToken,
    to: SessionState,
    now: UnixSeconds,
) -> Result<bool, StoreError> {
    let Some(row) = tx.row(token)? else {
        return Ok(false);
    };
    let Some(next) = rules::set_failed(&row, to, now) else {
        return Ok(false);
    };
    tx.del_attrs(token)?;
    tx.put_row(&next)?;
    Ok(true)
}

/// The row of `code` and its sealed attributes when a bind at `now` would bind it; changes nothing.
pub fn peek(
    tx: &mut dyn Tx,
    code: &LinkCode,
    tenant: &str,
    now: UnixSeconds,
) -> Result<Option<(SessionRow, Vec<u8>)>, StoreError> {
    let Some(token) = tx.code(code)? else {
        return Ok(None);
    };
    let Some(row) = tx.row(&token)? else {
        return Err(StoreError::Corrupt("code points at a missing row".into()));
    };
    if row.tenant != tenant || !rules::would_bind(&row, now) {
        return Ok(None);
    }
    let sealed = tx
        .attrs(&token)?
        .ok_or_else(|| StoreError::Corrupt("disclosed row without attributes".into()))?;
    Ok(Some((row, sealed)))
}

pub fn bind(
    tx: &mut dyn Tx,
    code: &LinkCode,
    tenant: &str,
    call_id: &str,
    now: UnixSeconds,
    hold_until: UnixSeconds,
) -> Result<BindOutcome, StoreError> {
    let Some(token) = tx.code(code)? else {
        return Ok(BindOutcome::Unknown);
    };
    let Some(row) = tx.row(&token)? else {
        return Err(StoreError::Corrupt("code points at a missing row".into()));
    };
    if row.tenant != tenant {
        // Another municipality's code: unknown here (no oracle that it exists elsewhere), and left
        // as it is so the citizen's call to the right number still verifies.
        return Ok(BindOutcome::Unknown);
    }
    let (verdict, change) = rules::bind(&row, call_id, now, hold_until);
    if let Some(change) = &change {
        write(tx, change)?;
    }
    Ok(match verdict {
        BindVerdict::Bound => {
            let sealed = tx
                .attrs(&token)?
                .ok_or_else(|| StoreError::Corrupt("disclosed row without attributes".into()))?;
            BindOutcome::Bound {
                row: change.map(|c| c.row).unwrap_or(row),
                sealed,
            }
        }
        BindVerdict::Expired => BindOutcome::Expired,
        BindVerdict::Used => BindOutcome::Used { by: row.call_id },
        BindVerdict::NotDisclosed => BindOutcome::NotDisclosed,
        BindVerdict::IrmaFailed => BindOutcome::IrmaFailed,
    })
}

pub fn consume(tx: &mut dyn Tx, key: &ConsumeKey, now: UnixSeconds) -> Result<bool, StoreError> {
    let token = match key {
        ConsumeKey::Call(call) => tx.call(call)?,
        ConsumeKey::Session(token) => Some(token.clone()),
    };
    let Some(row) = (match token {
        Some(t) => tx.row(&t)?,
        None => None,
    }) else {
        return Ok(false);
    };
    let Some(change) = rules::consume(&row, now) else {
        return Ok(false);
    };
    write(tx, &change)?;
    Ok(true)
}

pub fn purge_expired(
    tx: &mut dyn Tx,
    now: UnixSeconds,
    forget_before: UnixSeconds,
) -> Result<Purged, StoreError> {
    let mut purged = Purged::default();
    for row in tx.all_rows()? {
        if let Some((change, abandoned)) = rules::expire(&row, now) {
            write(tx, &change)?;
            purged.attributes_purged += 1;
            if abandoned {
                purged.abandoned.push(row);
            }
        } else if rules::forget(&row, forget_before) {
            tx.del_attrs(&row.token)?;
            tx.del_code(&row.code)?;
            if let Some(call) = &row.call_id {
                tx.del_call(call)?;
            }
            tx.del_row(&row.token)?;
            purged.forgotten += 1;
        }
    }
    Ok(purged)
}

/// Ends every `Bound` row ([`rules::end_cut_off_call`]); how many.
pub fn end_cut_off_calls(tx: &mut dyn Tx, now: UnixSeconds) -> Result<usize, StoreError> {
    let mut ended = 0;
    for row in tx.all_rows()? {
        if let Some(change) = rules::end_cut_off_call(&row, now) {
            write(tx, &change)?;
            ended += 1;
        }
    }
    Ok(ended)
}

pub fn pending(tx: &mut dyn Tx) -> Result<Vec<SessionRow>, StoreError> {
    Ok(tx
        .all_rows()?
        .into_iter()
        .filter(|r| r.state == SessionState::Pending)
        .collect())
}
