//! Asking for more during a call (issue 15): an agent picks one of the tenant's
//! `[[tenants.extra_requests]]` on a verified call's card (**Vraag gegevens**); we start the Yivi
//! session (a disclosure, or a signature on the configured message), push it to the citizen's page
//! over the call's [`CitizenChannel`], follow it to its end, and put the outcome on the card.
//!
//! 1. [`ExtraRequests::ask`]: the call must be verified and not ended; the request is the
//!    tenant's. The citizen's channel is the one attached for the call (a browser call's data
//!    channel, [`ExtraRequests::attach`]) or else the status stream of the page whose session
//!    verified the call ([`LinkService::session_of_call`]). A channel that is not open makes the
//!    request `unreachable` at once, without a Yivi session. Otherwise the session starts
//!    ([`IrmaClient::start_plain_disclosure`] / [`IrmaClient::start_signature`]), the request is
//!    listed `sent` and the push goes out. One request is open per call: a new one cancels the
//!    one before (`cancelled`, `replaced`).
//! 2. A follower task per request: a status-stream page must pick the push up within
//!    [`RequestTiming::page_open`] (`shown`), or the request is `unreachable` and the Yivi session
//!    is cancelled. Then it waits for the session's end (at most [`RequestTiming::answer_within`]),
//!    the call's end (`cancelled`, `call_ended`) or a newer request.
//! 3. DONE → the result, judged by [`accept_session`] exactly as the disclosure that verified the
//!    call (DONE, proofStatus VALID, what was asked, every attribute on the tenant's allow-list; a
//!    signature also on the configured message): `done` with the attributes (and the signed
//!    message), else `refused` with the reason. CANCELLED → `cancelled` (`declined`), TIMEOUT →
//!    `expired`.
//!
//! Every step updates the card ([`CallView::requests`]) and the citizen's page. What the citizen
//! disclosed is personal data: it lives only in the call's view, goes when the call ends
//! ([`Registry`] drops it with the call's other attributes), and is never logged. The audit log
//! records each request and its outcome, never a value.
//!
//! [`CallView::requests`]: crate::call::registry::CallView::requests

mod api;
pub mod channel;
pub mod view;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{broadcast, oneshot};
use tokio::time::Instant;

pub use api::{router, RequestJson, SignatureJson};
pub use channel::{CitizenChannel, CitizenPush, Listened, PageState, Pages};
pub use view::{ExtraRequestView, RequestReason, RequestState, SignedView};

use crate::audit::{AuditAction, AuditEntry, AuditLog, AuditVia};
use crate::call::registry::{CallEvent, Registry, ShownAttribute};
use crate::call::{CallId, CallState};
use crate::irma::{
    accept_session, Asked, IrmaClient, IrmaError, RequestorToken, SessionKind, SessionStatus,
    StartedSession,
};
use crate::links::LinkService;
use crate::pii::Pii;
use crate::tenant::{AgentId, ExtraRequest, Tenant, Tenants};
use channel::Delivery;

/// How long the citizen's page and the citizen get.
#[derive(Clone, Debug)]
pub struct RequestTiming {
    /// A phone caller's page counts as open this long after its last status request ended (the
    /// widget asks again at once), and must pick up a new request within it (default 10 s).
    pub page_open: Duration,
    /// Longest wait for the citizen's answer (default 10 min; the IRMA server's own session
    /// timeout, 5 min by default, usually ends it first).
    pub answer_within: Duration,
}

impl Default for RequestTiming {
    fn default() -> Self {
        RequestTiming {
            page_open: Duration::from_secs(10),
            answer_within: Duration::from_secs(600),
        }
    }
}

/// What `veilig-bellen demo` lets its agent ask for: the address (street, postcode, city of the
/// demo scheme, added to the allow-list) and a signed agreement with the name.
pub fn add_demo_requests(tenant: &mut Tenant) {
    let address = [
        ("irma-demo.gemeente.address.street", "Straat", "Street"),
        ("irma-demo.gemeente.address.zipcode", "Postcode", "Postcode"),
        ("irma-demo.gemeente.address.city", "Woonplaats", "City"),
    ];
    for (id, nl, en) in address {
        if tenant.allowed(id).is_none() {
            tenant
                .allowed_attributes
                .push(crate::tenant::AllowedAttribute {
                    id: id.to_owned(),
                    label_nl: nl.to_owned(),
                    label_en: en.to_owned(),
                });
        }
    }
    tenant.extra_requests = vec![
        ExtraRequest {
            id: "adres".to_owned(),
            label_nl: "Adres".to_owned(),
            label_en: "Address".to_owned(),
            disclose: vec![vec![address.iter().map(|(id, _, _)| (*id).to_owned()).collect()]],
            sign: None,
        },
        ExtraRequest {
            id: "akkoord".to_owned(),
            label_nl: "Akkoord ondertekenen".to_owned(),
            label_en: "Sign the agreement".to_owned(),
            disclose: vec![vec![vec!["irma-demo.gemeente.personalData.fullname".to_owned()]]],
            sign: Some(
                "Ik ga akkoord met de afspraken die ik zojuist telefonisch met Gemeente Demodam heb gemaakt."
                    .to_owned(),
            ),
        },
    ];
}

/// Why [`ExtraRequests::ask`] refused.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    #[error("no such call")]
    CallNotFound,
    #[error("the call has ended")]
    CallEnded,
    #[error("the call is not verified: there is no citizen's page to ask")]
    NotVerified,
    #[error("no such extra request for this call's municipality")]
    UnknownRequest,
    #[error("the Yivi server is not available")]
    Irma(#[source] IrmaError),
    #[error("this call has had as many extra requests as a call may have")]
    TooMany,
}

/// Most extra requests one call may have (each starts a Yivi session).
pub const MAX_PER_CALL: usize = 20;

/// Who asked, for the card and the audit log.
#[derive(Clone, Debug)]
pub struct Asker {
    /// The agent (`None`: the API's bearer token).
    pub agent: Option<AgentId>,
    pub via: AuditVia,
}

/// The extra requests of all calls. Cheap to clone.
#[derive(Clone)]
pub struct ExtraRequests {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Arc<Registry>,
    tenants: Arc<Tenants>,
    links: LinkService,
    irma: IrmaClient,
    pages: Pages,
    audit: Arc<dyn AuditLog>,
    timing: RequestTiming,
    /// Channels attached for calls (browser calls' data channels).
    attached: Mutex<HashMap<CallId, CitizenChannel>>,
    /// Each call's open request: its number, and how to stop its follower.
    open: Mutex<HashMap<CallId, (u32, oneshot::Sender<Stop>)>>,
}

/// Why a follower stops before the citizen answered.
#[derive(Clone, Copy, Debug)]
enum Stop {
    Replaced,
}

/// The end of one request, as the follower found it.
struct Outcome {
    state: RequestState,
    reason: Option<RequestReason>,
    attributes: Vec<ShownAttribute>,
    signature: Option<SignedView>,
}

impl Outcome {
    fn bare(state: RequestState, reason: Option<RequestReason>) -> Outcome {
        Outcome {
            state,
            reason,
            attributes: Vec::new(),
            signature: None,
        }
    }
}

/// What a follower needs of its request.
struct Follow {
    call: CallId,
    seq: u32,
    tenant: Tenant,
    request: ExtraRequest,
    token: RequestorToken,
    channel: CitizenChannel,
    push: CitizenPush,
    picked_up: Option<oneshot::Receiver<()>>,
    stop: oneshot::Receiver<Stop>,
    ended: broadcast::Receiver<CallEvent>,
    asker: Asker,
}

impl ExtraRequests {
    pub fn new(
        registry: Arc<Registry>,
        tenants: Arc<Tenants>,
        links: LinkService,
        irma: IrmaClient,
        pages: Pages,
        audit: Arc<dyn AuditLog>,
        timing: RequestTiming,
    ) -> ExtraRequests {
        ExtraRequests {
            inner: Arc::new(Inner {
                registry,
                tenants,
                links,
                irma,
                pages,
                audit,
                timing,
                attached: Mutex::default(),
                open: Mutex::default(),
            }),
        }
    }

    /// The phone callers' pages (what the status endpoint feeds).
    pub fn pages(&self) -> &Pages {
        &self.inner.pages
    }

    /// Requests for `call` go over `channel` from now on (a browser call's data channel).
    pub fn attach(&self, call: CallId, channel: CitizenChannel) {
        crate::sync::lock(&self.inner.attached).insert(call, channel);
    }

    /// `call` no longer has its attached channel (the call ended).
    pub fn detach(&self, call: CallId) {
        crate::sync::lock(&self.inner.attached).remove(&call);
    }

    /// The channel to `call`'s citizen, if any.
    fn channel(&self, call: CallId) -> Option<CitizenChannel> {
        if let Some(channel) = crate::sync::lock(&self.inner.attached).get(&call) {
            return Some(channel.clone());
        }
        let key = crate::call::config::store_key(call, self.inner.registry.instance());
        self.inner
            .links
            .session_of_call(&key)
            .map(CitizenChannel::StatusStream)
    }

    /// The agent asks `call`'s citizen for the tenant's extra request `request_id` (see the
    /// module docs). The new request as the card lists it.
    pub async fn ask(
        &self,
        call: CallId,
        request_id: &str,
        asker: Asker,
    ) -> Result<ExtraRequestView, AskError> {
        let inner = &self.inner;
        let view = inner.registry.get(call).ok_or(AskError::CallNotFound)?;
        match view.state {
            CallState::Ended => return Err(AskError::CallEnded),
            CallState::Collecting => return Err(AskError::NotVerified),
            _ if !view.verified => return Err(AskError::NotVerified),
            _ => {}
        }
        if view.requests.len() >= MAX_PER_CALL {
            return Err(AskError::TooMany);
        }
        let tenant = inner
            .tenants
            .by_id(&view.tenant)
            .ok_or(AskError::CallNotFound)?
            .clone();
        let request = tenant
            .extra_request(request_id)
            .ok_or(AskError::UnknownRequest)?
            .clone();
        // Subscribed before anything starts, so the call's end cannot slip by the follower.
        let ended = inner.registry.subscribe();

        let channel = self
            .channel(call)
            .filter(|c| c.is_open(&inner.pages, inner.timing.page_open));
        let Some(channel) = channel else {
            let reason = match self.channel(call) {
                Some(_) => RequestReason::PageClosed,
                None => RequestReason::NoPage,
            };
            tracing::info!(%call, request = %request.id, reason = reason.as_str(), "extra request cannot reach the caller");
            let mut listed = self
                .list(call, &request, &asker)
                .ok_or(AskError::CallEnded)?;
            self.set(
                call,
                listed.seq,
                Outcome::bare(RequestState::Unreachable, Some(reason)),
            );
            listed.advance(RequestState::Unreachable, Some(reason), SystemTime::now());
            self.audit(&tenant, call, &request, &asker, AuditAction::Request)
                .await;
            self.audit(
                &tenant,
                call,
                &request,
                &asker,
                AuditAction::RequestUnanswered,
            )
            .await;
            return Ok(listed);
        };

        let started = match &request.sign {
            Some(message) => inner.irma.start_signature(&request.disclose, message).await,
            None => inner.irma.start_plain_disclosure(&request.disclose).await,
        }
        .map_err(AskError::Irma)?;

        // The request before, if still open, gives way.
        if let Some((_, stop)) = crate::sync::lock(&inner.open).remove(&call) {
            let _ = stop.send(Stop::Replaced);
        }
        let Some(listed) = self.list(call, &request, &asker) else {
            cancel_quietly(&inner.irma, &started.token).await;
            return Err(AskError::CallEnded);
        };
        let push = CitizenPush {
            id: listed.seq,
            label: request.label_nl.clone(),
            label_en: request.label_en.clone(),
            kind: if request.sign.is_some() {
                "sign"
            } else {
                "disclose"
            },
            state: PageState::Pending,
            session_ptr: Some(started.session_ptr.clone()),
            frontend_request: started.frontend_request.clone(),
        };
        self.audit(&tenant, call, &request, &asker, AuditAction::Request)
            .await;
        let picked_up = match channel.deliver(&inner.pages, push.clone()) {
            Delivery::Sent { picked_up } => picked_up,
            Delivery::Unreachable => {
                cancel_quietly(&inner.irma, &started.token).await;
                let reason = Some(RequestReason::PageClosed);
                self.set(
                    call,
                    listed.seq,
                    Outcome::bare(RequestState::Unreachable, reason),
                );
                self.audit(
                    &tenant,
                    call,
                    &request,
                    &asker,
                    AuditAction::RequestUnanswered,
                )
                .await;
                let mut listed = listed;
                listed.advance(RequestState::Unreachable, reason, SystemTime::now());
                return Ok(listed);
            }
        };
        tracing::info!(%call, request = %request.id, seq = listed.seq, "extra request sent to the caller's page");
        let (stop_tx, stop) = oneshot::channel();
        crate::sync::lock(&inner.open).insert(call, (listed.seq, stop_tx));
        let StartedSession { token, .. } = started;
        let follow = Follow {
            call,
            seq: listed.seq,
            tenant,
            request,
            token,
            channel,
            push,
            picked_up,
            stop,
            ended,
            asker,
        };
        let this = self.clone();
        tokio::spawn(async move { this.follow(follow).await });
        Ok(listed)
    }

    /// Adds a `sent` request to `call`'s card; `None` when the call ended meanwhile.
    fn list(
        &self,
        call: CallId,
        request: &ExtraRequest,
        asker: &Asker,
    ) -> Option<ExtraRequestView> {
        let mut listed = None;
        self.inner.registry.update(call, |v| {
            if v.state == CallState::Ended {
                return;
            }
            let seq = v.requests.last().map_or(1, |r| r.seq.saturating_add(1));
            let view = ExtraRequestView {
                seq,
                request: request.id.clone(),
                label: request.label_nl.clone(),
                sign: request.sign.is_some(),
                state: RequestState::Sent,
                reason: None,
                agent: asker.agent.clone(),
                asked_at: SystemTime::now(),
                ended_at: None,
                attributes: Vec::new(),
                signature: None,
            };
            v.requests.push(view.clone());
            listed = Some(view);
        });
        listed
    }

    /// Request `seq` of `call` moves on to `outcome` (when that is a step forward); whether it did.
    fn set(&self, call: CallId, seq: u32, outcome: Outcome) -> bool {
        let mut moved = false;
        self.inner.registry.update(call, |v| {
            let ended = v.state == CallState::Ended;
            if let Some(r) = v.requests.iter_mut().find(|r| r.seq == seq) {
                moved = r.advance(outcome.state, outcome.reason, SystemTime::now());
                if moved && !ended {
                    r.attributes = outcome.attributes;
                    r.signature = outcome.signature;
                }
            }
        });
        moved
    }

    /// Follows one request to its end (module docs, step 2 and 3).
    async fn follow(self, mut f: Follow) {
        let inner = &self.inner;
        let deadline = Instant::now() + inner.timing.answer_within;
        let outcome = 'outcome: {
            if let Some(picked_up) = f.picked_up.take() {
                let shown = tokio::select! {
                    got = picked_up => got.is_ok(),
                    _ = tokio::time::sleep(inner.timing.page_open) => false,
                    stop = &mut f.stop => break 'outcome stopped(stop),
                    _ = call_ended(&inner.registry, &mut f.ended, f.call) => {
                        break 'outcome Outcome::bare(RequestState::Cancelled, Some(RequestReason::CallEnded));
                    }
                };
                if !shown {
                    break 'outcome Outcome::bare(
                        RequestState::Unreachable,
                        Some(RequestReason::PageClosed),
                    );
                }
            }
            self.set(f.call, f.seq, Outcome::bare(RequestState::Shown, None));
            tokio::select! {
                status = inner.irma.wait_terminal(&f.token, deadline) => self.judge(&f, status).await,
                stop = &mut f.stop => stopped(stop),
                _ = call_ended(&inner.registry, &mut f.ended, f.call) => {
                    Outcome::bare(RequestState::Cancelled, Some(RequestReason::CallEnded))
                }
            }
        };
        if outcome.state != RequestState::Done {
            // Whatever still runs at the IRMA server is of no use any more.
            cancel_quietly(&inner.irma, &f.token).await;
        }
        let state = outcome.state;
        let reason = outcome.reason;
        self.set(f.call, f.seq, outcome);
        f.channel.update(&inner.pages, f.push.with_state(state));
        {
            let mut open = crate::sync::lock(&inner.open);
            if open.get(&f.call).is_some_and(|(seq, _)| *seq == f.seq) {
                open.remove(&f.call);
            }
        }
        tracing::info!(
            call = %f.call,
            request = %f.request.id,
            seq = f.seq,
            state = state.as_str(),
            reason = reason.map(RequestReason::as_str).unwrap_or("-"),
            "extra request ended"
        );
        let action = match state {
            RequestState::Done => AuditAction::RequestAnswered,
            RequestState::Refused => AuditAction::RequestRefused,
            _ => AuditAction::RequestUnanswered,
        };
        self.audit(&f.tenant, f.call, &f.request, &f.asker, action)
            .await;
    }

    /// The outcome of a session that ended with `status` (or failed to be followed).
    async fn judge(&self, f: &Follow, status: Result<SessionStatus, IrmaError>) -> Outcome {
        let kind = match f.request.sign {
            Some(_) => SessionKind::Signing,
            None => SessionKind::Disclosing,
        };
        match status {
            Ok(SessionStatus::Done) => {}
            Ok(SessionStatus::Cancelled) => {
                return Outcome::bare(RequestState::Cancelled, Some(RequestReason::Declined))
            }
            Ok(_) | Err(IrmaError::SessionUnknown) => {
                return Outcome::bare(RequestState::Expired, None)
            }
            Err(e) => {
                tracing::warn!(call = %f.call, request = %f.request.id, "an extra request's Yivi session could not be followed: {e}");
                return Outcome::bare(RequestState::Refused, Some(RequestReason::IrmaError));
            }
        }
        let result = match self.inner.irma.result_of(&f.token, kind).await {
            Ok(result) => result,
            Err(e) => {
                tracing::warn!(call = %f.call, request = %f.request.id, "fetching an extra request's result failed: {e}");
                return Outcome::bare(RequestState::Refused, Some(RequestReason::IrmaError));
            }
        };
        let asked = match &f.request.sign {
            Some(message) => Asked::Signature {
                disclose: &f.request.disclose,
                message,
            },
            None => Asked::Disclosure(&f.request.disclose),
        };
        match accept_session(&f.tenant, asked, &result) {
            Ok(attributes) => Outcome {
                state: RequestState::Done,
                reason: None,
                attributes: attributes.iter().map(ShownAttribute::from).collect(),
                signature: f.request.sign.as_ref().and_then(|message| {
                    let signed = result.signature.expose().clone()?;
                    Some(SignedView {
                        message: message.clone(),
                        signed: Pii::new(signed),
                    })
                }),
            },
            Err(e) => {
                // The error names attribute ids at most, never values.
                tracing::info!(call = %f.call, request = %f.request.id, "an extra request's answer was not accepted: {e}");
                Outcome::bare(RequestState::Refused, Some(RequestReason::of_refusal(&e)))
            }
        }
    }

    async fn audit(
        &self,
        tenant: &Tenant,
        call: CallId,
        request: &ExtraRequest,
        asker: &Asker,
        action: AuditAction,
    ) {
        let entry = AuditEntry::new(
            SystemTime::now(),
            &tenant.id,
            asker.agent.as_ref().map(|a| a.0.as_str()),
            action,
            asker.via,
        )
        .call(call, true)
        .request(&request.id);
        crate::audit::record(self.inner.audit.clone(), entry).await;
    }
}

/// The outcome when a newer request (or anything else) stopped the follower.
fn stopped(stop: Result<Stop, oneshot::error::RecvError>) -> Outcome {
    match stop {
        Ok(Stop::Replaced) | Err(_) => {
            Outcome::bare(RequestState::Cancelled, Some(RequestReason::Replaced))
        }
    }
}

/// Resolves when `call` has ended (or left the list).
async fn call_ended(
    registry: &Registry,
    events: &mut broadcast::Receiver<CallEvent>,
    call: CallId,
) {
    let gone = |registry: &Registry| {
        registry
            .get(call)
            .is_none_or(|v| v.state == CallState::Ended)
    };
    if gone(registry) {
        return;
    }
    loop {
        match events.recv().await {
            Ok(CallEvent::Updated(v)) if v.id == call && v.state == CallState::Ended => return,
            Ok(CallEvent::Removed(id)) if id == call => return,
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => {
                if gone(registry) {
                    return;
                }
            }
            // The registry went away: nothing will end the call any more.
            Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}

async fn cancel_quietly(irma: &IrmaClient, token: &RequestorToken) {
    if let Err(e) = irma.cancel(token).await {
        tracing::debug!("cancelling an extra request's IRMA session failed: {e}");
    }
}
