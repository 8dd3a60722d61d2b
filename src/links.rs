//! Link sessions: the bridge between a Yivi disclosure on the website and the call that follows.
//!
//! [`LinkService::start`] makes an 8-digit [`LinkCode`], starts an IRMA disclosure session whose
//! `clientReturnUrl` is `tel:<tenant number>,<code>` (the Yivi app dials the number, pauses, and
//! sends the code as DTMF), stores a `Pending` row and spawns a watcher task:
//!
//! - DONE → fetch `/result` at once, [`accept_result`], seal the attributes and store them
//!   (`Disclosed`); an unacceptable result → `Cancelled`.
//! - CANCELLED → `Cancelled`; TIMEOUT → `Expired`.
//! - the code's expiry passes first → `DELETE` the IRMA session, `Expired`.
//!
//! The call path calls [`LinkService::bind_code`] with the digits it received: once per code, the
//! first call wins the attributes; later calls get `used_code`. When the code arrives while the
//! watcher is still fetching the result (`NotDisclosed`), `bind_code` retries for
//! [`LinkConfig::disclosure_grace`] and then answers `irma_error`. [`LinkService::release_call`]
//! purges the attributes when the call ends. [`LinkService::spawn_maintenance`] expires codes and
//! forgets old rows; [`LinkService::resume`] re-attaches watchers to pending sessions after a
//! restart.
//!
//! The browser only ever sees the [`FrontendToken`] and the IRMA session pointer
//! ([`PublicSession`]): never the code and never the requestor token.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::irma::{
    accept_result, IrmaClient, IrmaError, RequestorToken, SessionStatus, VerifiedAttribute,
};
use crate::pii::Pii;
use crate::store::{
    unix_now, AttributeKey, BindOutcome, CodeError, ConsumeKey, FrontendToken, LinkCode,
    SessionRow, SessionState, SessionStore, StoreError, UnixSeconds,
};
use crate::tenant::{Tenant, TenantId, Tenants};

/// Lifetimes and waits of link sessions.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// How long a code is valid after the session starts (default 15 min).
    pub code_ttl: Duration,
    /// Longest a bound call may hold the attributes when its end is never reported (default 4 h).
    pub call_hold: Duration,
    /// How long finished rows (and so their codes) are kept before deletion (default 24 h). While
    /// kept, a late call with that code gets `used_code`/`expired_code` and the code is not reissued.
    pub forget_after: Duration,
    /// How long `bind_code` waits for a disclosure that is still being fetched (default 3 s).
    pub disclosure_grace: Duration,
    /// Interval of the maintenance task (default 30 s).
    pub purge_interval: Duration,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            code_ttl: Duration::from_secs(15 * 60),
            call_hold: Duration::from_secs(4 * 3600),
            forget_after: Duration::from_secs(24 * 3600),
            disclosure_grace: Duration::from_secs(3),
            purge_interval: Duration::from_secs(30),
        }
    }
}

/// What the browser gets from `POST /api/v1/sessions`, in yivi-frontend's default mapping.
#[derive(Debug, Clone, Serialize)]
pub struct PublicSession {
    /// Our frontend token (not the IRMA requestor token).
    pub token: FrontendToken,
    #[serde(rename = "sessionPtr")]
    pub session_ptr: serde_json::Value,
    #[serde(rename = "frontendRequest", skip_serializing_if = "Option::is_none")]
    pub frontend_request: Option<serde_json::Value>,
}

/// A call's code matched a disclosed session: who is calling, with proof.
#[derive(Debug, Clone)]
pub struct Verified {
    pub tenant: TenantId,
    /// The session the code belonged to.
    pub session: FrontendToken,
    pub attributes: Vec<VerifiedAttribute>,
}

/// Why a call is not verified. [`Unverified::as_str`] gives the names shown to agents and in events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unverified {
    /// The caller sent no digits.
    NoCode,
    /// Fewer than 8 digits arrived.
    IncompleteCode,
    /// No session has this code (or the digits are not a code).
    UnknownCode,
    /// The code expired before the call.
    ExpiredCode,
    /// Another call already used the code.
    UsedCode,
    /// The disclosure failed, was cancelled, was not acceptable, is still unfinished after the
    /// grace period, or its stored attributes could not be read.
    IrmaError,
}

impl Unverified {
    pub fn as_str(self) -> &'static str {
        match self {
            Unverified::NoCode => "no_code",
            Unverified::IncompleteCode => "incomplete_code",
            Unverified::UnknownCode => "unknown_code",
            Unverified::ExpiredCode => "expired_code",
            Unverified::UsedCode => "used_code",
            Unverified::IrmaError => "irma_error",
        }
    }
}

impl std::fmt::Display for Unverified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a session stands, as the website may know it (no code, no attributes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PublicStatus {
    /// Waiting for the citizen's Yivi app.
    Pending,
    /// Disclosed and accepted: the phone will call (or has called).
    Done,
    /// Cancelled, failed, or not acceptable.
    Cancelled,
    /// The code expired.
    Expired,
}

impl From<SessionState> for PublicStatus {
    fn from(s: SessionState) -> Self {
        match s {
            SessionState::Pending => PublicStatus::Pending,
            SessionState::Disclosed | SessionState::Bound | SessionState::Consumed => {
                PublicStatus::Done
            }
            SessionState::Cancelled => PublicStatus::Cancelled,
            SessionState::Expired => PublicStatus::Expired,
        }
    }
}

/// Failures of [`LinkService::start`].
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("IRMA server: {0}")]
    Irma(#[from] IrmaError),
    #[error("session store: {0}")]
    Store(#[from] StoreError),
}

/// The sealed form of one attribute (labels kept as they were when the citizen disclosed).
#[derive(Serialize, Deserialize)]
struct SealedAttribute {
    id: String,
    label_nl: String,
    label_en: String,
    value: Option<String>,
}

/// Link sessions over a [`SessionStore`] and an [`IrmaClient`]. Cheap to clone.
#[derive(Clone)]
pub struct LinkService {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn SessionStore>,
    irma: IrmaClient,
    tenants: Tenants,
    key: AttributeKey,
    config: LinkConfig,
}

/// How often [`LinkService::bind_code`] and [`LinkService::wait_status`] look again.
const RECHECK: Duration = Duration::from_millis(200);
/// Attempts at finding an unused code before giving up.
const CODE_ATTEMPTS: usize = 4;

impl LinkService {
    pub fn new(
        store: Arc<dyn SessionStore>,
        irma: IrmaClient,
        tenants: Tenants,
        key: AttributeKey,
        config: LinkConfig,
    ) -> LinkService {
        LinkService {
            inner: Arc::new(Inner {
                store,
                irma,
                tenants,
                key,
                config,
            }),
        }
    }

    pub fn tenants(&self) -> &Tenants {
        &self.inner.tenants
    }

    pub fn config(&self) -> &LinkConfig {
        &self.inner.config
    }

    /// Start a disclosure for `tenant`: new code, IRMA session, stored row, watcher task.
    pub async fn start(
        &self,
        tenant: &Tenant,
        now: UnixSeconds,
    ) -> Result<PublicSession, LinkError> {
        let inner = &self.inner;
        let expires_at = now.saturating_add(inner.config.code_ttl.as_secs());
        let mut attempt = 0;
        let (row, started) = loop {
            attempt += 1;
            let code = LinkCode::generate();
            let return_url = format!("tel:{},{}", tenant.phone_number, code.expose());
            let started = inner
                .irma
                .start_disclosure(&tenant.disclosure, &return_url)
                .await?;
            let row = SessionRow::pending(
                FrontendToken::generate(),
                tenant.id.0.clone(),
                started.token.expose().to_owned(),
                code,
                now,
                expires_at,
            );
            match inner.store.insert(row.clone()).await {
                Ok(()) => break (row, started),
                Err(e) => {
                    cancel_quietly(&inner.irma, &started.token).await;
                    let retry = matches!(e, StoreError::CodeTaken | StoreError::TokenTaken);
                    if !retry || attempt >= CODE_ATTEMPTS {
                        return Err(e.into());
                    }
                    tracing::info!("link code collided with a stored one; drawing another");
                }
            }
        };
        tracing::info!(tenant = %tenant.id, session = %row.token, "link session started");
        let public = PublicSession {
            token: row.token.clone(),
            session_ptr: started.session_ptr,
            frontend_request: started.frontend_request,
        };
        self.spawn_watcher(row, tenant.clone());
        Ok(public)
    }

    /// Bind the digits a call to `tenant` delivered to that call, once. A code another tenant
    /// issued is `UnknownCode` here. See the module docs for the waiting.
    pub async fn bind_code(
        &self,
        tenant: &TenantId,
        code: &Pii<String>,
        call_id: &str,
        now: UnixSeconds,
    ) -> Result<Verified, Unverified> {
        let result = self.lookup_code(tenant, code, call_id, now).await;
        let name = match &result {
            Ok(_) => "verified",
            Err(reason) => reason.as_str(),
        };
        crate::metrics::global().code_lookup(name);
        result
    }

    async fn lookup_code(
        &self,
        tenant: &TenantId,
        code: &Pii<String>,
        call_id: &str,
        now: UnixSeconds,
    ) -> Result<Verified, Unverified> {
        let code = LinkCode::parse(code.expose()).map_err(|e| match e {
            CodeError::Empty => Unverified::NoCode,
            CodeError::TooShort => Unverified::IncompleteCode,
            CodeError::TooLong | CodeError::NotDigits => Unverified::UnknownCode,
        })?;
        let inner = &self.inner;
        let started = Instant::now();
        let hold_until = now.saturating_add(inner.config.call_hold.as_secs());
        loop {
            let at = now.saturating_add(started.elapsed().as_secs());
            let outcome = inner
                .store
                .bind(
                    code.clone(),
                    tenant.0.clone(),
                    call_id.to_owned(),
                    at,
                    hold_until,
                )
                .await
                .map_err(|e| {
                    tracing::error!("session store failed while binding a code: {e}");
                    Unverified::IrmaError
                })?;
            return match outcome {
                BindOutcome::Bound { row, sealed } => {
                    self.open(&row, &sealed).map(|attributes| Verified {
                        tenant: TenantId(row.tenant.clone()),
                        session: row.token.clone(),
                        attributes,
                    })
                }
                BindOutcome::NotDisclosed if started.elapsed() < inner.config.disclosure_grace => {
                    tokio::time::sleep(RECHECK).await;
                    continue;
                }
                BindOutcome::NotDisclosed => Err(Unverified::IrmaError),
                BindOutcome::Unknown => Err(Unverified::UnknownCode),
                BindOutcome::Expired => Err(Unverified::ExpiredCode),
                BindOutcome::Used => Err(Unverified::UsedCode),
                BindOutcome::IrmaFailed => Err(Unverified::IrmaError),
            };
        }
    }

    /// The call ended: purge its attributes. Returns whether the call held a session.
    pub async fn release_call(&self, call_id: &str, now: UnixSeconds) -> bool {
        match self
            .inner
            .store
            .consume(ConsumeKey::Call(call_id.to_owned()), now)
            .await
        {
            Ok(changed) => changed,
            Err(e) => {
                tracing::error!("session store failed while releasing a call: {e}");
                false
            }
        }
    }

    /// The website's view of a session: its status and tenant. `None` for an unknown token.
    pub async fn status(
        &self,
        token: &FrontendToken,
    ) -> Result<Option<(PublicStatus, TenantId)>, StoreError> {
        let row = self.inner.store.get(token.clone()).await?;
        Ok(row.map(|r| (PublicStatus::from(r.state), TenantId(r.tenant))))
    }

    /// As [`status`](Self::status), but while pending wait up to `wait` for it to change.
    pub async fn wait_status(
        &self,
        token: &FrontendToken,
        wait: Duration,
    ) -> Result<Option<(PublicStatus, TenantId)>, StoreError> {
        let until = Instant::now() + wait;
        loop {
            let status = self.status(token).await?;
            match status {
                Some((PublicStatus::Pending, _)) if Instant::now() + RECHECK <= until => {
                    tokio::time::sleep(RECHECK).await
                }
                other => return Ok(other),
            }
        }
    }

    /// Expire codes and hold times passed at `now`, cancel abandoned IRMA sessions, forget old rows.
    pub async fn purge(&self, now: UnixSeconds) -> Result<(), StoreError> {
        let forget_before = now.saturating_sub(self.inner.config.forget_after.as_secs());
        let purged = self.inner.store.purge_expired(now, forget_before).await?;
        if purged.attributes_purged + purged.forgotten > 0 {
            tracing::info!(
                expired = purged.attributes_purged,
                forgotten = purged.forgotten,
                "link sessions purged"
            );
        }
        for row in purged.abandoned {
            cancel_quietly(&self.inner.irma, &RequestorToken::new(row.irma_token)).await;
        }
        Ok(())
    }

    /// Run [`purge`](Self::purge) every [`LinkConfig::purge_interval`] until the task is aborted.
    pub fn spawn_maintenance(&self) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(this.inner.config.purge_interval);
            loop {
                tick.tick().await;
                if let Err(e) = this.purge(unix_now()).await {
                    tracing::error!("purging link sessions failed: {e}");
                }
            }
        })
    }

    /// After a restart: watch every pending session again. Returns how many watchers started.
    pub async fn resume(&self) -> Result<usize, StoreError> {
        let mut resumed = 0;
        for row in self.inner.store.pending().await? {
            match self.inner.tenants.by_id(&TenantId(row.tenant.clone())) {
                Some(tenant) => {
                    self.spawn_watcher(row, tenant.clone());
                    resumed += 1;
                }
                None => {
                    self.inner
                        .store
                        .set_failed(row.token, SessionState::Cancelled, unix_now())
                        .await?;
                }
            }
        }
        Ok(resumed)
    }

    fn spawn_watcher(&self, row: SessionRow, tenant: Tenant) {
        let this = self.clone();
        tokio::spawn(async move { this.watch(row, tenant).await });
    }

    /// Follow one IRMA session to its end and record the outcome (see the module docs).
    async fn watch(&self, row: SessionRow, tenant: Tenant) {
        let inner = &self.inner;
        let irma_token = RequestorToken::new(row.irma_token.clone());
        let left = row.expires_at.saturating_sub(unix_now());
        let deadline = Instant::now() + Duration::from_secs(left);
        let outcome = match inner.irma.wait_terminal(&irma_token, deadline).await {
            Ok(SessionStatus::Done) => self.collect(&row, &irma_token, &tenant).await,
            Ok(SessionStatus::Cancelled) => Err(SessionState::Cancelled),
            Ok(SessionStatus::Timeout) => Err(SessionState::Expired),
            Ok(_) => {
                cancel_quietly(&inner.irma, &irma_token).await;
                Err(SessionState::Expired)
            }
            Err(IrmaError::SessionUnknown) => Err(SessionState::Cancelled),
            Err(e) => {
                tracing::warn!(session = %row.token, "IRMA session could not be followed: {e}");
                cancel_quietly(&inner.irma, &irma_token).await;
                Err(SessionState::Expired)
            }
        };
        let recorded = match outcome {
            Ok(sealed) => {
                inner
                    .store
                    .set_disclosed(row.token.clone(), sealed, unix_now())
                    .await
            }
            Err(to) => {
                inner
                    .store
                    .set_failed(row.token.clone(), to, unix_now())
                    .await
            }
        };
        match recorded {
            Ok(true) => tracing::info!(session = %row.token, "link session outcome recorded"),
            Ok(false) => tracing::info!(session = %row.token, "link session had already ended"),
            Err(e) => {
                tracing::error!(session = %row.token, "recording a link session outcome failed: {e}")
            }
        }
    }

    /// Fetch, judge and seal the result of a DONE session.
    async fn collect(
        &self,
        row: &SessionRow,
        token: &RequestorToken,
        tenant: &Tenant,
    ) -> Result<Vec<u8>, SessionState> {
        let result = self.inner.irma.result(token).await.map_err(|e| {
            tracing::warn!(session = %row.token, "fetching the IRMA result failed: {e}");
            SessionState::Cancelled
        })?;
        let attributes = accept_result(tenant, &result).map_err(|e| {
            tracing::warn!(session = %row.token, "disclosure not accepted: {e}");
            SessionState::Cancelled
        })?;
        let plain: Vec<SealedAttribute> = attributes
            .into_iter()
            .map(|a| SealedAttribute {
                id: a.id,
                label_nl: a.label_nl,
                label_en: a.label_en,
                value: a.value.into_inner(),
            })
            .collect();
        let json = Pii::new(serde_json::to_vec(&plain).map_err(|_| SessionState::Cancelled)?);
        self.inner
            .key
            .seal(row.token.as_str().as_bytes(), json.expose())
            .map_err(|e| {
                tracing::error!(session = %row.token, "sealing attributes failed: {e}");
                SessionState::Cancelled
            })
    }

    fn open(&self, row: &SessionRow, sealed: &[u8]) -> Result<Vec<VerifiedAttribute>, Unverified> {
        let plain = self
            .inner
            .key
            .open(row.token.as_str().as_bytes(), sealed)
            .map_err(|e| {
                tracing::error!(session = %row.token, "stored attributes do not open: {e}");
                Unverified::IrmaError
            })?;
        let attrs: Vec<SealedAttribute> = serde_json::from_slice(&plain).map_err(|_| {
            tracing::error!(session = %row.token, "stored attributes are unreadable");
            Unverified::IrmaError
        })?;
        Ok(attrs
            .into_iter()
            .map(|a| VerifiedAttribute {
                id: a.id,
                label_nl: a.label_nl,
                label_en: a.label_en,
                value: Pii::new(a.value),
            })
            .collect())
    }
}

async fn cancel_quietly(irma: &IrmaClient, token: &RequestorToken) {
    if let Err(e) = irma.cancel(token).await {
        tracing::debug!("cancelling an IRMA session failed: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_have_the_documented_names() {
        let all = [
            (Unverified::NoCode, "no_code"),
            (Unverified::IncompleteCode, "incomplete_code"),
            (Unverified::UnknownCode, "unknown_code"),
            (Unverified::ExpiredCode, "expired_code"),
            (Unverified::UsedCode, "used_code"),
            (Unverified::IrmaError, "irma_error"),
        ];
        for (reason, name) in all {
            assert_eq!(reason.as_str(), name);
            assert_eq!(reason.to_string(), name);
        }
    }

    #[test]
    fn the_website_sees_done_for_every_successful_state() {
        for s in [
            SessionState::Disclosed,
            SessionState::Bound,
            SessionState::Consumed,
        ] {
            assert_eq!(PublicStatus::from(s), PublicStatus::Done);
        }
        assert_eq!(
            PublicStatus::from(SessionState::Pending),
            PublicStatus::Pending
        );
        assert_eq!(
            PublicStatus::from(SessionState::Cancelled),
            PublicStatus::Cancelled
        );
    }
}
