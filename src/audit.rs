//! The audit log (issue 10): who logged in to the agents' portal, who answered or hung up which
//! call, whether that call was verified, and when.
//!
//! Every entry goes out twice: as one structured tracing line (target `audit`) and as a row in an
//! append-only table behind [`AuditLog`] — [`RedbAudit`] keeps it in its own redb file
//! (`audit.redb` in the data directory, next to the session store), [`MemoryAudit`] in memory for
//! tests. The trait has no way to change or delete a row. Supervisors read their tenant's rows with
//! `GET /api/v1/audit` ([`crate::http::portal`]).
//!
//! An entry holds identifiers only — tenant, agent username, call id, the verified flag — never an
//! attribute value, a calling number or a link code.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::call::CallId;
use crate::tenant::TenantId;

/// File name of the audit database inside the data directory.
pub const AUDIT_FILE: &str = "audit.redb";

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// An agent logged in to the portal.
    Login,
    /// A known agent's username with a wrong password (unknown usernames are not recorded).
    LoginFailed,
    /// An agent logged out.
    Logout,
    /// A call was taken for `agent`.
    Answer,
    /// A hang-up was asked for.
    Hangup,
    /// An agent asked the caller for an extra request during the call (`request` names it).
    Request,
    /// The caller answered an extra request and the answer was accepted.
    RequestAnswered,
    /// The caller answered an extra request, but the answer was not acceptable.
    RequestRefused,
    /// An extra request ended unanswered: unreachable, declined, replaced, expired, or the call
    /// ended first.
    RequestUnanswered,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Login => "login",
            AuditAction::LoginFailed => "login_failed",
            AuditAction::Logout => "logout",
            AuditAction::Answer => "answer",
            AuditAction::Hangup => "hangup",
            AuditAction::Request => "request",
            AuditAction::RequestAnswered => "request_answered",
            AuditAction::RequestRefused => "request_refused",
            AuditAction::RequestUnanswered => "request_unanswered",
        }
    }
}

/// Who acted: a logged-in agent in the portal, or a holder of the API's bearer token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditVia {
    Portal,
    ApiToken,
}

/// One row. Identifiers only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub tenant: String,
    /// The agent's username (for a bearer-token hang-up: none).
    pub agent: Option<String>,
    pub action: AuditAction,
    pub via: AuditVia,
    /// Our call id (`CallId`).
    pub call: Option<u64>,
    /// Whether the call was verified (call actions only).
    pub verified: Option<bool>,
    /// The extra request's id in the tenant's configuration (request actions only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
}

impl AuditEntry {
    /// An entry at `at` with no call.
    pub fn new(
        at: SystemTime,
        tenant: &TenantId,
        agent: Option<&str>,
        action: AuditAction,
        via: AuditVia,
    ) -> AuditEntry {
        AuditEntry {
            at_ms: crate::time::unix_millis(at),
            tenant: tenant.0.clone(),
            agent: agent.map(str::to_owned),
            action,
            via,
            call: None,
            verified: None,
            request: None,
        }
    }

    /// The same entry about call `id`, verified or not.
    pub fn call(mut self, id: CallId, verified: bool) -> AuditEntry {
        self.call = Some(id.0);
        self.verified = Some(verified);
        self
    }

    /// The same entry about the tenant's extra request `id`.
    pub fn request(mut self, id: &str) -> AuditEntry {
        self.request = Some(id.to_owned());
        self
    }

    /// When, as a time.
    pub fn at(&self) -> SystemTime {
        // A stored value too large for this platform's clock reads as the epoch, not a panic.
        crate::time::from_unix_millis(self.at_ms).unwrap_or(UNIX_EPOCH)
    }
}

/// Failures of the audit table.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit store: {0}")]
    Backend(String),
}

fn backend(e: impl std::fmt::Display) -> AuditError {
    AuditError::Backend(e.to_string())
}

/// An append-only table of [`AuditEntry`]s. Calls may block (disk); [`record`] runs them on the
/// blocking pool.
pub trait AuditLog: Send + Sync {
    /// Adds `entry` after every earlier one.
    fn append(&self, entry: &AuditEntry) -> Result<(), AuditError>;
    /// The newest `limit` entries, of `tenant` only when given, newest first.
    fn recent(&self, tenant: Option<&str>, limit: usize) -> Result<Vec<AuditEntry>, AuditError>;
}

/// Writes the tracing line and appends the row (on the blocking pool). A failing table is logged,
/// not returned: the action itself already happened.
pub async fn record(log: Arc<dyn AuditLog>, entry: AuditEntry) {
    tracing::info!(
        target: "audit",
        tenant = %entry.tenant,
        agent = entry.agent.as_deref().unwrap_or("-"),
        action = entry.action.as_str(),
        via = ?entry.via,
        call = entry.call,
        verified = entry.verified,
        request = entry.request.as_deref(),
        "audit"
    );
    let result = tokio::task::spawn_blocking(move || log.append(&entry)).await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!("could not append to the audit log: {e}"),
        Err(e) => tracing::error!("the audit append task failed: {e}"),
    }
}

/// Reads the newest entries on the blocking pool.
pub async fn recent(
    log: Arc<dyn AuditLog>,
    tenant: Option<String>,
    limit: usize,
) -> Result<Vec<AuditEntry>, AuditError> {
    tokio::task::spawn_blocking(move || log.recent(tenant.as_deref(), limit))
        .await
        .map_err(backend)?
}

/// The audit table in memory (tests, and a server without a data directory).
#[derive(Default)]
pub struct MemoryAudit {
    rows: Mutex<Vec<AuditEntry>>,
}

impl MemoryAudit {
    pub fn new() -> MemoryAudit {
        MemoryAudit::default()
    }
}

impl AuditLog for MemoryAudit {
    fn append(&self, entry: &AuditEntry) -> Result<(), AuditError> {
        // Pushing to a Vec cannot leave it half-changed: a poisoned lock still holds valid rows.
        crate::sync::lock(&self.rows).push(entry.clone());
        Ok(())
    }

    fn recent(&self, tenant: Option<&str>, limit: usize) -> Result<Vec<AuditEntry>, AuditError> {
        let rows = crate::sync::lock(&self.rows);
        Ok(rows
            .iter()
            .rev()
            .filter(|e| tenant.is_none_or(|t| e.tenant == t))
            .take(limit)
            .cloned()
            .collect())
    }
}

/// Sequence number → entry as JSON.
const AUDIT: TableDefinition<u64, &str> = TableDefinition::new("audit");

/// The audit table in its own redb file; every append is one committed write transaction.
pub struct RedbAudit {
    db: Database,
}

impl RedbAudit {
    /// Opens (or creates) the file at `path`.
    pub fn open(path: &Path) -> Result<RedbAudit, AuditError> {
        let db = Database::create(path).map_err(backend)?;
        // Owner only, like everything in the data directory (whatever the umask).
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(backend)?;
        }
        let txn = db.begin_write().map_err(backend)?;
        txn.open_table(AUDIT).map_err(backend)?;
        txn.commit().map_err(backend)?;
        Ok(RedbAudit { db })
    }
}

impl AuditLog for RedbAudit {
    fn append(&self, entry: &AuditEntry) -> Result<(), AuditError> {
        let json = serde_json::to_string(entry).map_err(backend)?;
        let txn = self.db.begin_write().map_err(backend)?;
        {
            let mut table = txn.open_table(AUDIT).map_err(backend)?;
            let next = table
                .last()
                .map_err(backend)?
                .map_or(0, |(k, _)| k.value().saturating_add(1));
            table.insert(next, json.as_str()).map_err(backend)?;
        }
        txn.commit().map_err(backend)
    }

    fn recent(&self, tenant: Option<&str>, limit: usize) -> Result<Vec<AuditEntry>, AuditError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let table = txn.open_table(AUDIT).map_err(backend)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(backend)?.rev() {
            if out.len() >= limit {
                break;
            }
            let (_, json) = row.map_err(backend)?;
            let entry: AuditEntry = serde_json::from_str(json.value()).map_err(backend)?;
            if tenant.is_none_or(|t| entry.tenant == t) {
                out.push(entry);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn entry(tenant: &str, action: AuditAction, secs: u64) -> AuditEntry {
        AuditEntry::new(
            UNIX_EPOCH + Duration::from_secs(secs),
            &TenantId(tenant.into()),
            Some("agent"),
            action,
            AuditVia::Portal,
        )
    }

    fn newest_first_per_tenant(log: &dyn AuditLog) {
        log.append(&entry("demo", AuditAction::Login, 1)).unwrap();
        log.append(&entry("arnhem", AuditAction::Login, 2)).unwrap();
        log.append(&entry("demo", AuditAction::Answer, 3).call(CallId(7), true))
            .unwrap();
        let demo = log.recent(Some("demo"), 10).unwrap();
        assert_eq!(
            demo.iter().map(|e| e.action).collect::<Vec<_>>(),
            [AuditAction::Answer, AuditAction::Login]
        );
        assert_eq!(demo[0].call, Some(7));
        assert_eq!(demo[0].verified, Some(true));
        assert_eq!(demo[0].at(), UNIX_EPOCH + Duration::from_secs(3));
        assert_eq!(log.recent(None, 10).unwrap().len(), 3);
        assert_eq!(log.recent(None, 1).unwrap()[0].tenant, "demo");
    }

    #[test]
    fn memory_rows_come_back_newest_first_per_tenant() {
        newest_first_per_tenant(&MemoryAudit::new());
    }

    #[test]
    fn redb_rows_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(AUDIT_FILE);
        newest_first_per_tenant(&RedbAudit::open(&path).unwrap());
        let reopened = RedbAudit::open(&path).unwrap();
        reopened
            .append(&entry("demo", AuditAction::Logout, 4))
            .unwrap();
        let rows = reopened.recent(Some("demo"), 10).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].action, AuditAction::Logout);
    }

    #[test]
    fn an_entry_serialises_identifiers_only() {
        let json =
            serde_json::to_string(&entry("demo", AuditAction::Hangup, 5).call(CallId(9), false))
                .unwrap();
        assert_eq!(
            json,
            r#"{"at_ms":5000,"tenant":"demo","agent":"agent","action":"hangup","via":"portal","call":9,"verified":false}"#
        );
    }
}
