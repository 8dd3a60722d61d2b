//! The existing-exchange API (the design note's option 1): a municipality whose own exchange
//! answers the call and reads the DTMF code itself asks us who is calling, by HTTP.
//!
//! - `POST /api/v1/pbx/calls` — the exchange reports a call (time, calling and called number, the
//!   digits it read, its forwarding number); we verify the code exactly as for a call we answered
//!   ourselves ([`LinkService::verify_call`]: the key's tenant, the calling number's wrong-code
//!   limit, caller-ID binding, `code_reused`) and answer `{"call_id","verified","reason"}`. The
//!   call is then listed for the agents like a trunk call (`via: "exchange"`), with its
//!   attributes.
//! - `GET /api/v1/pbx/calls/{id}/events` — server-sent events telling the exchange what happens:
//!   `waiting`, `answered` (an agent took the call: route the caller to `route_to`), `hangup`
//!   (the agent hung up in the portal), `ended`. The history comes first, so an exchange that
//!   connects late misses nothing.
//! - `POST /api/v1/pbx/calls/{id}/ended` — the exchange's call is over: attributes and calling
//!   number are dropped, the code's binding released, as when a trunk call ends.
//!
//! Each call is a small task ([`task`]) that owns its agents' command channel; the decisions are
//! made by the sans-IO [`ExchangeCall`] ([`call`]). A call nobody ends ends after
//! [`crate::links::LinkConfig::call_hold`] (4 h), as long as its code may hold attributes at all.
//!
//! Auth: `Authorization: Bearer <key>` with one of the tenant's `[[tenants.exchange_keys]]`
//! ([`key`]); the key decides the tenant. Another tenant's call does not exist for a key (404).
//! Failed attempts are limited per client address ([`http`]).

mod call;
mod http;
pub mod key;
mod task;

pub use call::{AgentRoute, EndReason, ExchangeCall, ExchangeEvent, Output};
pub use http::router;
pub use key::{ExchangeAccess, ExchangeKey, KeyHash};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, oneshot, watch};

use crate::call::registry::{CallVia, CallView, Registry, ShownAttribute};
use crate::call::{CallId, CallState, UnverifiedReason};
use crate::http::rate_limit::{RateLimit, RateLimiter};
use crate::links::{CallCode, LinkService};
use crate::pii::Pii;
use crate::store::{CodeError, LinkCode};
use crate::tenant::{normalize_number, Tenant, TenantId, Tenants};

/// A call as the exchange reports it.
#[derive(Debug, Clone)]
pub struct NewCall {
    /// When the exchange answered it.
    pub since: SystemTime,
    /// The calling number as the exchange knows it (empty when withheld).
    pub caller: Pii<String>,
    /// The dialled number (may be empty).
    pub called: String,
    /// The digits the exchange read (empty when the caller sent none).
    pub code: Pii<String>,
    /// Where the exchange would forward the call (its "doorschakelnummer").
    pub forward_to: Option<String>,
}

/// Our answer to a [`NewCall`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classified {
    pub call_id: CallId,
    pub verified: bool,
    /// Why not, when not verified.
    pub reason: Option<UnverifiedReason>,
}

/// Why [`ExchangeCalls::start`] refused a call.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StartError {
    /// The called number is another tenant's own number: a key reaches its own tenant only.
    #[error("the called number belongs to another municipality")]
    CalledNumberOfOtherTenant,
    /// As many exchange calls are live as the install takes calls (`calls.max_calls`).
    #[error("too many live calls")]
    AtCapacity,
    /// The call could not be set up (a bug; logged).
    #[error("the call could not be set up")]
    Internal,
}

/// Asks a call's task to end it; answered once the call is ended in the registry.
#[derive(Debug)]
enum Control {
    Ended(oneshot::Sender<()>),
}

/// What the service keeps of each call (also for a while after its end, so that a late
/// `events` or `ended` request gets the history instead of a 404).
struct Handle {
    tenant: TenantId,
    events: watch::Receiver<Vec<ExchangeEvent>>,
    control: mpsc::Sender<Control>,
}

/// The exchange calls of this instance, and the limit on failed key attempts.
pub struct ExchangeCalls {
    registry: Arc<Registry>,
    links: LinkService,
    tenants: Arc<Tenants>,
    failures: RateLimiter,
    calls: Mutex<HashMap<CallId, Handle>>,
    max_duration: Duration,
    /// Most live exchange calls at once (each may hold a caller's attributes).
    max_live: usize,
}

/// Failed key attempts a client address may make at once, and how fast it gets them back.
pub const FAILED_KEYS: RateLimit = RateLimit {
    burst: 10,
    per_second: 0.1,
    max_clients: 10_000,
};

impl ExchangeCalls {
    /// The service over the agents' `registry` and the link codes of `links`; a call lasts at most
    /// `links.config().call_hold`, and at most `max_live` calls are live at once.
    pub fn new(
        registry: Arc<Registry>,
        links: LinkService,
        tenants: Arc<Tenants>,
        max_live: usize,
    ) -> Arc<Self> {
        let max_duration = links.config().call_hold;
        Arc::new(ExchangeCalls {
            registry,
            links,
            tenants,
            failures: RateLimiter::new(FAILED_KEYS),
            calls: Mutex::new(HashMap::new()),
            max_duration,
            max_live,
        })
    }

    pub fn tenants(&self) -> &Tenants {
        &self.tenants
    }

    /// The limiter of failed key attempts ([`http`] charges it).
    pub(crate) fn failures(&self) -> &RateLimiter {
        &self.failures
    }

    /// The exchange of `tenant` (key `key_name`) reports `call`: verify its code, list it, start
    /// its task. Runs to the end even when the request that asked is dropped, so a code is never
    /// bound to a call that nobody releases.
    pub async fn start(
        self: &Arc<Self>,
        tenant: &Tenant,
        key_name: &str,
        call: NewCall,
    ) -> Result<Classified, StartError> {
        if self.is_other_tenants_number(&tenant.id, &call.called) {
            tracing::warn!(
                tenant = %tenant.id,
                key = key_name,
                "exchange call refused: the called number is another municipality's"
            );
            return Err(StartError::CalledNumberOfOtherTenant);
        }
        if self.live_calls() >= self.max_live {
            tracing::warn!(
                tenant = %tenant.id,
                key = key_name,
                max = self.max_live,
                "exchange call refused: at capacity"
            );
            return Err(StartError::AtCapacity);
        }
        let this = self.clone();
        let tenant = tenant.clone();
        let key_name = key_name.to_owned();
        tokio::spawn(async move { this.set_up(tenant, &key_name, call).await })
            .await
            .map_err(|e| {
                tracing::error!("setting up an exchange call failed: {e}");
                StartError::Internal
            })
    }

    /// The events of call `id` so far and to come, if it is `tenant`'s.
    pub fn events(
        &self,
        tenant: &TenantId,
        id: CallId,
    ) -> Option<watch::Receiver<Vec<ExchangeEvent>>> {
        self.lock()
            .get(&id)
            .filter(|h| &h.tenant == tenant)
            .map(|h| h.events.clone())
    }

    /// The exchange of `tenant` ended call `id`; returns once the call shows ended (at once for a
    /// call that already has). `None`: no such call of this tenant.
    pub async fn end(&self, tenant: &TenantId, id: CallId) -> Option<()> {
        let control = self
            .lock()
            .get(&id)
            .filter(|h| &h.tenant == tenant)
            .map(|h| h.control.clone())?;
        let (ack, done) = oneshot::channel();
        // A task that is gone has ended the call already.
        if control.send(Control::Ended(ack)).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), done).await;
        }
        Some(())
    }

    async fn set_up(&self, tenant: Tenant, key_name: &str, call: NewCall) -> Classified {
        self.prune();
        let id = self.registry.next_id();
        let store_key = crate::call::manager::store_key(id, self.registry.instance());
        let (result, looked_up) = self.verify(&tenant.id, &call, &store_key).await;
        let (verified, reason, attributes) = match result {
            Ok(attributes) => (true, None, attributes),
            Err(reason) => (false, Some(reason), Vec::new()),
        };
        let outcome = reason.map_or("verified", UnverifiedReason::as_str);
        crate::metrics::global().exchange_call(outcome);
        tracing::info!(
            call = %id,
            tenant = %tenant.id,
            key = key_name,
            outcome,
            "the municipality's exchange reported a call"
        );
        let view = CallView {
            verified,
            reason,
            attributes,
            forward_to: call.forward_to.as_deref().map(Arc::from),
            ..CallView::new(
                id,
                tenant.id.clone(),
                CallState::Waiting,
                call.caller,
                call.since,
                CallVia::Exchange,
            )
        };
        let machine = ExchangeCall::new(
            Instant::now(),
            verified,
            reason,
            call.forward_to,
            self.max_duration,
        );
        let (events_tx, events_rx) = watch::channel(Vec::new());
        let (control_tx, control_rx) = mpsc::channel(4);
        let (commands_tx, commands_rx) = mpsc::channel(8);
        // Listed first: a concurrent [`Self::prune`] keeps the handles of listed calls only.
        self.registry.insert(view, commands_tx);
        self.lock().insert(
            id,
            Handle {
                tenant: tenant.id.clone(),
                events: events_rx,
                control: control_tx,
            },
        );
        tokio::spawn(task::run(task::Context {
            id,
            tenant,
            registry: self.registry.clone(),
            links: self.links.clone(),
            store_key: looked_up.then_some(store_key),
            machine,
            commands: commands_rx,
            control: control_rx,
            events: events_tx,
        }));
        Classified {
            call_id: id,
            verified,
            reason,
        }
    }

    /// The code's verdict, as for a trunk call: no digits and too few digits are decided without
    /// a lookup; anything else goes to [`LinkService::verify_call`]. Also whether it was looked up
    /// (only then may the call hold a binding to release).
    async fn verify(
        &self,
        tenant: &TenantId,
        call: &NewCall,
        store_key: &str,
    ) -> (Result<Vec<ShownAttribute>, UnverifiedReason>, bool) {
        match LinkCode::parse(call.code.expose()) {
            Err(CodeError::Empty) => return (Err(UnverifiedReason::NoCode), false),
            Err(CodeError::TooShort) => return (Err(UnverifiedReason::IncompleteCode), false),
            _ => {}
        }
        let code = CallCode {
            tenant,
            caller: &call.caller,
            code: &call.code,
            call_key: store_key,
        };
        let result = self
            .links
            .verify_call(code, crate::time::unix_now())
            .await
            .map(|verified| {
                verified
                    .attributes
                    .iter()
                    .map(ShownAttribute::from)
                    .collect()
            })
            .map_err(crate::call::task::map_reason);
        (result, true)
    }

    /// Whether `called` is the own number of a tenant other than `tenant` (and not `tenant`'s).
    fn is_other_tenants_number(&self, tenant: &TenantId, called: &str) -> bool {
        if called.trim().is_empty() {
            return false;
        }
        let called = normalize_number(called);
        let owns = |t: &Tenant| {
            t.called_numbers
                .iter()
                .any(|n| n != "*" && normalize_number(n) == called)
        };
        let ours = self.tenants.by_id(tenant).is_some_and(owns);
        !ours && self.tenants.iter().any(|t| &t.id != tenant && owns(t))
    }

    /// Forgets the calls the registry no longer lists (ended longer ago than its retention).
    /// Exchange calls not ended yet.
    fn live_calls(&self) -> usize {
        self.prune();
        let ids: Vec<CallId> = self.lock().keys().copied().collect();
        ids.into_iter()
            .filter(|id| {
                self.registry
                    .get(*id)
                    .is_some_and(|v| v.state != CallState::Ended)
            })
            .count()
    }

    fn prune(&self) {
        self.lock().retain(|id, _| self.registry.get(*id).is_some());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CallId, Handle>> {
        // Critical sections only insert, look up or remove entries: a poisoned map is consistent.
        crate::sync::lock(&self.calls)
    }
}
