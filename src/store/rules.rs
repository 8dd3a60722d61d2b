//! The state-transition rules of a link session, as pure functions shared by every store backend.
//!
//! Each function looks at a row (and `now`) and says what the answer is and what, if anything, must
//! be written. A backend calls it inside its own atomic step (a redb write transaction, a SQL
//! transaction, a mutex in the in-memory store) and writes the [`Change`].

use super::{SessionRow, SessionState, UnixSeconds};

/// A row to write back, and whether its sealed attributes must be deleted with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub row: SessionRow,
    pub purge_attributes: bool,
}

/// The answer of [`bind`], before the backend attaches the sealed attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindVerdict {
    Bound,
    Expired,
    Used,
    NotDisclosed,
    IrmaFailed,
}

fn moved(row: &SessionRow, state: SessionState, now: UnixSeconds, purge: bool) -> Change {
    let mut row = row.clone();
    row.state = state;
    row.updated_at = now;
    Change {
        row,
        purge_attributes: purge,
    }
}

/// Bind the row's code to `call_id` at `now`; see [`super::SessionStore::bind`].
pub fn bind(
    row: &SessionRow,
    call_id: &str,
    now: UnixSeconds,
    hold_until: UnixSeconds,
) -> (BindVerdict, Option<Change>) {
    let expired = now >= row.expires_at;
    match row.state {
        SessionState::Pending if expired => (
            BindVerdict::Expired,
            Some(moved(row, SessionState::Expired, now, true)),
        ),
        SessionState::Pending => (BindVerdict::NotDisclosed, None),
        SessionState::Disclosed if expired => (
            BindVerdict::Expired,
            Some(moved(row, SessionState::Expired, now, true)),
        ),
        SessionState::Disclosed => {
            let mut change = moved(row, SessionState::Bound, now, false);
            change.row.call_id = Some(call_id.to_owned());
            change.row.expires_at = hold_until;
            (BindVerdict::Bound, Some(change))
        }
        SessionState::Bound if !expired && row.call_id.as_deref() == Some(call_id) => {
            (BindVerdict::Bound, None)
        }
        SessionState::Bound | SessionState::Consumed => (BindVerdict::Used, None),
        SessionState::Expired => (BindVerdict::Expired, None),
        SessionState::Cancelled => (BindVerdict::IrmaFailed, None),
    }
}

/// `Pending` → `Disclosed`, if still pending and unexpired at `now`. From now on the code lives
/// until `call_until` (the time the citizen has to make the call), whatever was left of its time
/// to be disclosed.
pub fn set_disclosed(
    row: &SessionRow,
    now: UnixSeconds,
    call_until: UnixSeconds,
) -> Option<SessionRow> {
    (row.state == SessionState::Pending && now < row.expires_at).then(|| {
        let mut next = moved(row, SessionState::Disclosed, now, false).row;
        next.expires_at = call_until;
        next
    })
}

/// What [`peek`] sees: whether a [`bind`] at `now` would bind the row (it is disclosed and its
/// code has not expired). Changes nothing.
pub fn would_bind(row: &SessionRow, now: UnixSeconds) -> bool {
    row.state == SessionState::Disclosed && now < row.expires_at
}

/// `Pending` → `to`, where `to` is `Cancelled` or `Expired`.
pub fn set_failed(row: &SessionRow, to: SessionState, now: UnixSeconds) -> Option<SessionRow> {
    let terminal = matches!(to, SessionState::Cancelled | SessionState::Expired);
    (terminal && row.state == SessionState::Pending).then(|| moved(row, to, now, true).row)
}

/// The call ended or the session is given up: `Bound` → `Consumed`; `Pending`/`Disclosed` →
/// `Expired`. Attributes are purged either way.
pub fn consume(row: &SessionRow, now: UnixSeconds) -> Option<Change> {
    match row.state {
        SessionState::Bound => Some(moved(row, SessionState::Consumed, now, true)),
        SessionState::Pending | SessionState::Disclosed => {
            Some(moved(row, SessionState::Expired, now, true))
        }
        SessionState::Consumed | SessionState::Expired | SessionState::Cancelled => None,
    }
}

/// Expiry at `now`: an unbound code past `expires_at` becomes `Expired`; a bound call past its hold
/// time becomes `Consumed`. The flag says whether the IRMA session was still pending (abandoned).
pub fn expire(row: &SessionRow, now: UnixSeconds) -> Option<(Change, bool)> {
    if now < row.expires_at {
        return None;
    }
    match row.state {
        SessionState::Pending => Some((moved(row, SessionState::Expired, now, true), true)),
        SessionState::Disclosed => Some((moved(row, SessionState::Expired, now, true), false)),
        SessionState::Bound => Some((moved(row, SessionState::Consumed, now, true), false)),
        _ => None,
    }
}

/// At startup: a call that was `Bound` when the last process stopped died with that process (a
/// crash or `kill -9` never reports a call's end): `Bound` → `Consumed`, attributes purged. Every
/// other row stays as it is (a pending disclosure is resumed, a disclosed code waits for its call).
pub fn end_cut_off_call(row: &SessionRow, now: UnixSeconds) -> Option<Change> {
    (row.state == SessionState::Bound).then(|| moved(row, SessionState::Consumed, now, true))
}

/// Whether a row may be deleted altogether (terminal, and last touched before `forget_before`).
pub fn forget(row: &SessionRow, forget_before: UnixSeconds) -> bool {
    !row.state.is_live() && row.updated_at < forget_before
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{FrontendToken, LinkCode};

    fn row(state: SessionState) -> SessionRow {
        let mut r = SessionRow::pending(
            FrontendToken::generate(),
            "demo".into(),
            "irma".into(),
            LinkCode::generate(),
            100,
            1000,
        );
        r.state = state;
        r
    }

    #[test]
    fn disclosed_code_binds_once_then_reports_used() {
        let r = row(SessionState::Disclosed);
        let (v, change) = bind(&r, "call-1", 500, 9000);
        assert_eq!(v, BindVerdict::Bound);
        let bound = change.unwrap().row;
        assert_eq!(
            (bound.state, bound.call_id.as_deref(), bound.expires_at),
            (SessionState::Bound, Some("call-1"), 9000)
        );
        assert_eq!(bind(&bound, "call-2", 501, 9000).0, BindVerdict::Used);
        assert_eq!(
            bind(&bound, "call-1", 501, 9000),
            (BindVerdict::Bound, None)
        );
    }

    #[test]
    fn expiry_wins_over_binding() {
        let (v, change) = bind(&row(SessionState::Disclosed), "c", 1000, 9000);
        assert_eq!(v, BindVerdict::Expired);
        assert!(change.unwrap().purge_attributes);
        assert_eq!(
            bind(&row(SessionState::Pending), "c", 999, 9000).0,
            BindVerdict::NotDisclosed
        );
        assert_eq!(
            bind(&row(SessionState::Pending), "c", 1000, 9000).0,
            BindVerdict::Expired
        );
        assert!(set_disclosed(&row(SessionState::Pending), 1000, 2000).is_none());
    }

    #[test]
    fn a_disclosed_code_lives_for_the_call_window_from_the_disclosure() {
        // Started at 100 with 900 s to be disclosed (expires 1000); disclosed at 400 with 300 s
        // for the call: it now expires at 700, not 1000.
        let disclosed = set_disclosed(&row(SessionState::Pending), 400, 700).unwrap();
        assert_eq!(
            (disclosed.state, disclosed.expires_at),
            (SessionState::Disclosed, 700)
        );
        assert!(would_bind(&disclosed, 699));
        assert!(!would_bind(&disclosed, 700));
        assert_eq!(bind(&disclosed, "c", 699, 9000).0, BindVerdict::Bound);
        assert_eq!(bind(&disclosed, "c", 700, 9000).0, BindVerdict::Expired);
        // A late disclosure still gets its whole call window, past the first deadline.
        let late = set_disclosed(&row(SessionState::Pending), 999, 1299).unwrap();
        assert_eq!(bind(&late, "c", 1200, 9000).0, BindVerdict::Bound);
        assert_eq!(expire(&late, 1298), None);
        assert!(expire(&late, 1299).is_some());
        // Pending rows are never bindable; bound ones neither (they are someone's).
        assert!(!would_bind(&row(SessionState::Pending), 500));
        assert!(!would_bind(&row(SessionState::Bound), 500));
    }

    #[test]
    fn failed_and_finished_rows_answer_with_their_reason() {
        assert_eq!(
            bind(&row(SessionState::Cancelled), "c", 1, 2).0,
            BindVerdict::IrmaFailed
        );
        assert_eq!(
            bind(&row(SessionState::Consumed), "c", 1, 2).0,
            BindVerdict::Used
        );
        assert_eq!(
            bind(&row(SessionState::Expired), "c", 1, 2).0,
            BindVerdict::Expired
        );
        assert!(set_failed(&row(SessionState::Disclosed), SessionState::Cancelled, 5).is_none());
        assert!(set_failed(&row(SessionState::Pending), SessionState::Bound, 5).is_none());
    }

    #[test]
    fn only_bound_calls_end_at_startup() {
        let bound = bind(&row(SessionState::Disclosed), "call-1", 500, 9000)
            .1
            .unwrap()
            .row;
        let ended = end_cut_off_call(&bound, 600).unwrap();
        assert!(ended.purge_attributes);
        assert_eq!(
            (
                ended.row.state,
                ended.row.updated_at,
                ended.row.call_id.as_deref()
            ),
            (SessionState::Consumed, 600, Some("call-1"))
        );
        // Its code stays used, for every call after the restart.
        assert_eq!(bind(&ended.row, "call-2", 601, 9000).0, BindVerdict::Used);
        for state in [
            SessionState::Pending,
            SessionState::Disclosed,
            SessionState::Consumed,
            SessionState::Expired,
            SessionState::Cancelled,
        ] {
            assert_eq!(end_cut_off_call(&row(state), 600), None, "{state:?}");
        }
    }

    #[test]
    fn expiry_and_forgetting() {
        let (c, abandoned) = expire(&row(SessionState::Pending), 1000).unwrap();
        assert!(abandoned && c.purge_attributes && c.row.state == SessionState::Expired);
        assert!(expire(&row(SessionState::Disclosed), 999).is_none());
        assert_eq!(
            expire(&row(SessionState::Bound), 1000).unwrap().0.row.state,
            SessionState::Consumed
        );
        assert!(!forget(&row(SessionState::Disclosed), u64::MAX));
        assert!(forget(&row(SessionState::Consumed), 101));
        assert!(!forget(&row(SessionState::Consumed), 100));
    }
}
