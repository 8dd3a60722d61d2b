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
//! A code lives [`LinkConfig::code_ttl`] (15 min) until the citizen discloses, then
//! [`LinkConfig::call_window`] (5 min) for the call: fewer live codes at any moment, fewer chances
//! for a guess.
//!
//! The call path calls [`LinkService::verify_call`] with the digits it received and the calling
//! number: once per code, the first call wins the attributes; later calls get `used_code`, and the
//! call that used the code is told (`code_reused`, through [`LinkService::on_code_reused`]). When the
//! code arrives while the watcher is still fetching the result (`NotDisclosed`), the lookup retries
//! for [`LinkConfig::disclosure_grace`] and then answers `irma_error`.
//!
//! Guessing is counted ([`guard`]): a calling number that gave [`GuessLimits::max_wrong_codes`]
//! wrong codes within the window has its calls answered `too_many_wrong_codes` without a lookup for
//! the block time (a valid code such a call carries stays unused), and a warning is logged when all
//! numbers together pass [`GuessLimits::alarm_per_minute`]. A tenant with caller-ID binding
//! ([`Tenant::caller_id_attribute`]) only accepts a code from the number the citizen disclosed:
//! from another it is `caller_mismatch`, and the code stays usable. [`LinkService::release_call`]
//! purges the attributes when the call ends. [`LinkService::spawn_maintenance`] expires codes and
//! forgets old rows; after a restart [`LinkService::end_cut_off_calls`] ends the calls the stop cut
//! off (their codes stay used, their attributes go) and [`LinkService::resume`] re-attaches
//! watchers to pending sessions.
//!
//! The browser only ever sees the [`FrontendToken`] and the IRMA session pointer
//! ([`PublicSession`]): never the code and never the requestor token.

mod guard;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::irma::{
    accept_result, IrmaClient, IrmaError, RequestorToken, SessionStatus, VerifiedAttribute,
};
use crate::pii::Pii;
use crate::store::{
    AttributeKey, BindOutcome, CodeError, ConsumeKey, FrontendToken, LinkCode, SessionRow,
    SessionState, SessionStore, StoreError, UnixSeconds,
};
use crate::tenant::{normalize_number, Tenant, TenantId, Tenants};
use crate::time::unix_now;

pub use guard::{GuessLimits, WrongCodeLimiter, WrongCodeRate};

/// Lifetimes and waits of link sessions.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// How long a code is valid after the session starts while the citizen has not disclosed
    /// (default 15 min).
    pub code_ttl: Duration,
    /// How long a code is valid once disclosed: the time the citizen has to call (default 5 min).
    pub call_window: Duration,
    /// Wrong codes per calling number, and the alarm for all of them.
    pub guesses: GuessLimits,
    /// Longest a bound call may hold the attributes when its end is never reported (default 4 h).
    pub call_hold: Duration,
    /// How long finished rows (and so their codes) are kept before deletion (default 24 h). While
    /// kept, a late call with that code gets `used_code`/`expired_code` and the code is not reissued.
    pub forget_after: Duration,
    /// How long `bind_code` waits for a disclosure that is still being fetched (default 3 s).
    pub disclosure_grace: Duration,
    /// Interval of the maintenance task (default 30 s).
    pub purge_interval: Duration,
    /// How long a caller's page and the caller get for an agent's extra request during the call.
    pub requests: crate::extra_requests::RequestTiming,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            code_ttl: Duration::from_secs(15 * 60),
            call_window: Duration::from_secs(5 * 60),
            guesses: GuessLimits::default(),
            call_hold: Duration::from_secs(4 * 3600),
            forget_after: Duration::from_secs(24 * 3600),
            disclosure_grace: Duration::from_secs(3),
            purge_interval: Duration::from_secs(30),
            requests: Default::default(),
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
    /// The calling number gave too many wrong codes lately: its code was not looked up.
    TooManyWrongCodes,
    /// Caller-ID binding: the code belongs to a disclosure of another mobile number than the
    /// calling one. The code stays usable from the disclosed number.
    CallerMismatch,
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
            Unverified::TooManyWrongCodes => "too_many_wrong_codes",
            Unverified::CallerMismatch => "caller_mismatch",
        }
    }

    /// Whether this is a wrong code a guesser could have made (counted per calling number).
    pub fn is_wrong_code(self) -> bool {
        matches!(
            self,
            Unverified::UnknownCode
                | Unverified::ExpiredCode
                | Unverified::UsedCode
                | Unverified::CallerMismatch
        )
    }
}

impl std::fmt::Display for Unverified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A call's link code as the call flow hands it to [`LinkService::verify_call`].
#[derive(Debug, Clone, Copy)]
pub struct CallCode<'a> {
    /// The tenant the call was made to.
    pub tenant: &'a TenantId,
    /// The calling number as the trunk presented it (any form [`normalize_number`] reads).
    pub caller: &'a Pii<String>,
    /// The digits received.
    pub code: &'a Pii<String>,
    /// The call's key in the store: unique per call, also across restarts.
    pub call_key: &'a str,
}

/// Told the store key of a call whose code a later call presented again (see
/// [`LinkService::on_code_reused`]).
pub type CodeReusedHook = Arc<dyn Fn(&str) + Send + Sync>;

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

/// Whether a session's call has come, lasts or is over ([`LinkService::call_phase`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallPhase {
    /// No call used the session yet.
    Waiting,
    /// A call holds the session's attributes.
    Active,
    /// The call ended (or the session did without one).
    Ended,
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
    guard: Mutex<Guard>,
    reused: Mutex<Option<CodeReusedHook>>,
    /// The session each live call's code verified, by the call's store key: where an agent's
    /// extra request reaches the caller's page ([`LinkService::session_of_call`]).
    calls: Mutex<std::collections::HashMap<String, FrontendToken>>,
}

/// Wrong codes, per number and overall.
struct Guard {
    numbers: WrongCodeLimiter,
    rate: WrongCodeRate,
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
        let guard = Guard {
            numbers: WrongCodeLimiter::new(config.guesses.clone()),
            rate: WrongCodeRate::new(config.guesses.alarm_per_minute),
        };
        LinkService {
            inner: Arc::new(Inner {
                store,
                irma,
                tenants,
                key,
                config,
                guard: Mutex::new(guard),
                reused: Mutex::new(None),
                calls: Mutex::default(),
            }),
        }
    }

    /// Who to tell when a call presents a code another call already used: `hook` gets the store
    /// key of the call that used it (the call flow flags that call `code_reused`). Replaces an
    /// earlier hook.
    pub fn on_code_reused(&self, hook: CodeReusedHook) {
        *crate::sync::lock(&self.inner.reused) = Some(hook);
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, Guard> {
        // Every critical section is a few map edits that cannot panic halfway in a way that
        // matters: a poisoned lock still holds usable counts.
        crate::sync::lock(&self.inner.guard)
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

    /// Verify a call by its link code: see the module docs. The calling number's wrong codes
    /// are counted, a blocked number's code is not looked up (`too_many_wrong_codes`), and with
    /// caller-ID binding the code must come from the disclosed number (`caller_mismatch`).
    pub async fn verify_call(
        &self,
        call: CallCode<'_>,
        now: UnixSeconds,
    ) -> Result<Verified, Unverified> {
        let number = normalize_number(call.caller.expose());
        if self.guard().numbers.is_blocked(monotonic_now(), &number) {
            crate::metrics::global().code_lookup(Unverified::TooManyWrongCodes.as_str());
            return Err(Unverified::TooManyWrongCodes);
        }
        let result = self
            .lookup(
                call.tenant,
                Some(call.caller),
                call.code,
                call.call_key,
                now,
            )
            .await;
        if let Err(reason) = &result {
            if reason.is_wrong_code() {
                self.count_wrong_code(Some(&number));
            }
        }
        result
    }

    /// Bind the digits a call to `tenant` delivered to that call, once. A code another tenant
    /// issued is `UnknownCode` here. Without a calling number: no per-number limit and no
    /// caller-ID binding (the call flow uses [`verify_call`](Self::verify_call)); wrong codes
    /// still count towards the alarm.
    pub async fn bind_code(
        &self,
        tenant: &TenantId,
        code: &Pii<String>,
        call_id: &str,
        now: UnixSeconds,
    ) -> Result<Verified, Unverified> {
        let result = self.lookup(tenant, None, code, call_id, now).await;
        if let Err(reason) = &result {
            if reason.is_wrong_code() {
                self.count_wrong_code(None);
            }
        }
        result
    }

    /// Bind the session the browser names by its frontend `token` to the browser call `call_id`,
    /// once, as a phone call binds its code ([`bind_code`](Self::bind_code)): the session's code
    /// is spent, so it verifies no phone call afterwards. A token of another tenant, or none, is
    /// `UnknownCode`; a session not (yet) disclosed is `IrmaError`.
    pub async fn bind_session(
        &self,
        tenant: &TenantId,
        token: &FrontendToken,
        call_id: &str,
        now: UnixSeconds,
    ) -> Result<Verified, Unverified> {
        let store_failed = |e: StoreError| {
            tracing::error!("session store failed while binding a browser call: {e}");
            Unverified::IrmaError
        };
        let row = self
            .inner
            .store
            .get(token.clone())
            .await
            .map_err(store_failed)?
            .filter(|row| row.tenant == tenant.0)
            .ok_or(Unverified::UnknownCode)?;
        let hold_until = now.saturating_add(self.inner.config.call_hold.as_secs());
        let outcome = self
            .inner
            .store
            .bind(
                row.code,
                tenant.0.clone(),
                call_id.to_owned(),
                now,
                hold_until,
            )
            .await
            .map_err(store_failed)?;
        let result = match outcome {
            BindOutcome::Bound { row, sealed } => {
                self.open(&row, &sealed).map(|attributes| Verified {
                    tenant: TenantId(row.tenant.clone()),
                    session: row.token.clone(),
                    attributes,
                })
            }
            BindOutcome::Unknown => Err(Unverified::UnknownCode),
            BindOutcome::Expired => Err(Unverified::ExpiredCode),
            BindOutcome::Used { .. } => Err(Unverified::UsedCode),
            BindOutcome::NotDisclosed | BindOutcome::IrmaFailed => Err(Unverified::IrmaError),
        };
        crate::metrics::global().code_lookup(match &result {
            Ok(_) => "verified",
            Err(reason) => reason.as_str(),
        });
        result
    }

    /// [`lookup_code`](Self::lookup_code), counted in the metrics.
    async fn lookup(
        &self,
        tenant: &TenantId,
        caller: Option<&Pii<String>>,
        code: &Pii<String>,
        call_id: &str,
        now: UnixSeconds,
    ) -> Result<Verified, Unverified> {
        let result = self.lookup_code(tenant, caller, code, call_id, now).await;
        if let Ok(verified) = &result {
            crate::sync::lock(&self.inner.calls)
                .insert(call_id.to_owned(), verified.session.clone());
        }
        let name = match &result {
            Ok(_) => "verified",
            Err(reason) => reason.as_str(),
        };
        crate::metrics::global().code_lookup(name);
        result
    }

    /// A wrong code (from `number`, when known): count it, block the number at its limit, raise
    /// the alarm above the configured rate. Logs never name the number.
    fn count_wrong_code(&self, number: Option<&str>) {
        let now = monotonic_now();
        let metrics = crate::metrics::global();
        metrics.wrong_codes.inc();
        let (blocked, alarm) = {
            let mut guard = self.guard();
            let blocked = number.is_some_and(|n| guard.numbers.handle_wrong_code(now, n));
            (blocked, guard.rate.handle_wrong_code(now))
        };
        let limits = &self.inner.config.guesses;
        if blocked {
            metrics.calling_numbers_blocked.inc();
            tracing::warn!(
                wrong_codes = limits.max_wrong_codes,
                window = %crate::time::format_duration(limits.window),
                block = %crate::time::format_duration(limits.block),
                "a calling number gave too many wrong link codes: its calls are not looked up for a while"
            );
        }
        if let Some(rate) = alarm {
            tracing::warn!(
                rate,
                alarm = limits.alarm_per_minute,
                "wrong link codes per minute above the alarm rate: someone may be guessing codes"
            );
        }
    }

    async fn lookup_code(
        &self,
        tenant: &TenantId,
        caller: Option<&Pii<String>>,
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
        let binding = caller.and_then(|caller| {
            let attribute = inner.tenants.by_id(tenant)?.caller_id_attribute.clone()?;
            Some((attribute, caller))
        });
        let store_failed = |e: StoreError| {
            tracing::error!("session store failed while binding a code: {e}");
            Unverified::IrmaError
        };
        let started = Instant::now();
        let hold_until = now.saturating_add(inner.config.call_hold.as_secs());
        loop {
            let at = now.saturating_add(started.elapsed().as_secs());
            if let Some((attribute, caller)) = &binding {
                // Checked before the code is spent: a call from the wrong number leaves it usable.
                let peeked = inner
                    .store
                    .peek(code.clone(), tenant.0.clone(), at)
                    .await
                    .map_err(store_failed)?;
                if let Some((row, sealed)) = peeked {
                    let attributes = self.open(&row, &sealed)?;
                    if !caller_matches(&attributes, attribute, caller) {
                        tracing::info!(tenant = %tenant, "the calling number is not the disclosed one");
                        return Err(Unverified::CallerMismatch);
                    }
                }
            }
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
                .map_err(store_failed)?;
            return match outcome {
                BindOutcome::Bound { row, sealed } => {
                    let attributes = self.open(&row, &sealed)?;
                    if let Some((attribute, caller)) = &binding {
                        // The disclosure can land between the check and the bind.
                        if !caller_matches(&attributes, attribute, caller) {
                            tracing::info!(tenant = %tenant, "the calling number is not the disclosed one");
                            return Err(Unverified::CallerMismatch);
                        }
                    }
                    Ok(Verified {
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
                BindOutcome::Used { by } => {
                    self.code_reused(tenant, by.as_deref());
                    Err(Unverified::UsedCode)
                }
                BindOutcome::IrmaFailed => Err(Unverified::IrmaError),
            };
        }
    }

    /// A call presented a code that `by` (a store key) used: tell the hook.
    fn code_reused(&self, tenant: &TenantId, by: Option<&str>) {
        tracing::warn!(
            tenant = %tenant,
            "a used link code was presented again: the call that used it is flagged code_reused"
        );
        let hook = crate::sync::lock(&self.inner.reused).clone();
        if let (Some(hook), Some(by)) = (hook, by) {
            hook(by);
        }
    }

    /// The session whose code verified the live call `call_id` (its store key); `None` for a
    /// call no code verified, or one that ended.
    pub fn session_of_call(&self, call_id: &str) -> Option<FrontendToken> {
        crate::sync::lock(&self.inner.calls).get(call_id).cloned()
    }

    /// The call ended: purge its attributes. Returns whether the call held a session.
    pub async fn release_call(&self, call_id: &str, now: UnixSeconds) -> bool {
        crate::sync::lock(&self.inner.calls).remove(call_id);
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

    /// Where a session's call stands, as the citizen's page may know it: `None` for an unknown
    /// token.
    pub async fn call_phase(&self, token: &FrontendToken) -> Result<Option<CallPhase>, StoreError> {
        let row = self.inner.store.get(token.clone()).await?;
        Ok(row.map(|r| match r.state {
            SessionState::Pending | SessionState::Disclosed => CallPhase::Waiting,
            SessionState::Bound => CallPhase::Active,
            SessionState::Consumed | SessionState::Expired | SessionState::Cancelled => {
                CallPhase::Ended
            }
        }))
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
        self.guard().numbers.handle_timeout(monotonic_now());
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

    /// At startup, before any call is taken: end the link sessions of calls the last stop cut off
    /// (a crash or `kill -9` never reports a call's end). Their codes stay used and their
    /// attributes are purged ([`SessionStore::end_cut_off_calls`]). Logs how many (never what they
    /// held); returns it.
    pub async fn end_cut_off_calls(&self, now: UnixSeconds) -> Result<usize, StoreError> {
        let ended = self.inner.store.end_cut_off_calls(now).await?;
        if ended > 0 {
            tracing::warn!(
                ended,
                "calls cut off by an unclean stop: link codes stay used, attributes purged"
            );
        }
        Ok(ended)
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
                let now = unix_now();
                let call_until = now.saturating_add(inner.config.call_window.as_secs());
                inner
                    .store
                    .set_disclosed(row.token.clone(), sealed, now, call_until)
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

/// Whether the disclosed mobile number (attribute `attribute`), when the disclosure has one, is
/// the calling number. A disclosure without it binds nothing.
fn caller_matches(attributes: &[VerifiedAttribute], attribute: &str, caller: &Pii<String>) -> bool {
    match attributes
        .iter()
        .find(|a| a.id == attribute)
        .and_then(|a| a.value.expose().as_deref())
    {
        Some(disclosed) => normalize_number(disclosed) == normalize_number(caller.expose()),
        None => true,
    }
}

/// The monotonic clock the guessing limits run on (tokio's, so tests can pause it).
fn monotonic_now() -> std::time::Instant {
    Instant::now().into_std()
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
            (Unverified::TooManyWrongCodes, "too_many_wrong_codes"),
            (Unverified::CallerMismatch, "caller_mismatch"),
        ];
        for (reason, name) in all {
            assert_eq!(reason.as_str(), name);
            assert_eq!(reason.to_string(), name);
        }
    }

    #[test]
    fn only_wrong_codes_a_caller_controls_count() {
        assert!(Unverified::UnknownCode.is_wrong_code());
        assert!(Unverified::UsedCode.is_wrong_code());
        assert!(Unverified::ExpiredCode.is_wrong_code());
        assert!(Unverified::CallerMismatch.is_wrong_code());
        for not in [
            Unverified::NoCode,
            Unverified::IncompleteCode,
            Unverified::IrmaError,
            Unverified::TooManyWrongCodes,
        ] {
            assert!(!not.is_wrong_code(), "{not}");
        }
    }

    #[test]
    fn caller_id_binding_compares_normalised_numbers() {
        let attr = |value: Option<&str>| VerifiedAttribute {
            id: "pbdf.sidn-pbdf.mobilenumber.mobilenumber".into(),
            label_nl: "Mobiel".into(),
            label_en: "Mobile".into(),
            value: Pii::new(value.map(str::to_owned)),
        };
        let id = "pbdf.sidn-pbdf.mobilenumber.mobilenumber";
        let caller = |n: &str| Pii::new(n.to_owned());
        let disclosed = [attr(Some("+31 6 12345678"))];
        assert!(caller_matches(&disclosed, id, &caller("0612345678")));
        assert!(caller_matches(&disclosed, id, &caller("+31612345678")));
        assert!(caller_matches(&disclosed, id, &caller("0031612345678")));
        assert!(!caller_matches(&disclosed, id, &caller("+31687654321")));
        assert!(!caller_matches(&disclosed, id, &caller("anonymous")));
        // Not disclosed (or empty): nothing to bind to.
        assert!(caller_matches(&[], id, &caller("+31687654321")));
        assert!(caller_matches(&[attr(None)], id, &caller("+31687654321")));
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
