//! The agents' HTTP API (issue 4): the call list, taking a call, hanging up, and a live event stream.
//!
//! - `GET  /api/v1/calls` → JSON array of calls (`id`, `state`, `verified`, `reason`, `caller`,
//!   `attributes` (only while a verified call lasts), `since`, `agent`, `agent_name`, `tenant`,
//!   `media` (`relay` or `direct`), `transferred` (the call left us by REFER), `on_hold` (the
//!   agent's phone holds the caller, who hears the comfort signal meanwhile; false once the call
//!   ended), `agent_leg` (how the last agent leg failed: `{"agent","status","reason"}`, `null`
//!   when none did or once an agent takes the call again), `links` (the tenant's links filled with
//!   the caller's attribute values, while they last), `via` (`sip`: a trunk's call we answered;
//!   `exchange`: the municipality's own exchange answered it and told us by API,
//!   [`crate::exchange`]), `forward_to` (that exchange's forwarding number for the call, or
//!   `null`), `requests` (what agents asked the caller for during the call, with outcomes and
//!   what was disclosed: [`crate::extra_requests::RequestJson`])); `?lang=en` gives the
//!   attributes' English labels;
//! - `POST /api/v1/calls/{id}/answer` → 202, or 409 if already taken (`already_taken`) or when the
//!   agent has no registered softphone right now (`agent_unavailable`: the agent sees at once that
//!   the phone is off, and the call stays `waiting` for someone else; not checked for an exchange
//!   call, whose caller the exchange routes to the agent). A logged-in agent takes the
//!   call for themselves; a bearer-token caller names the agent: `{"agent":"<username>"}`;
//! - `POST /api/v1/calls/{id}/hangup` → 202;
//! - `POST /api/v1/calls/{id}/requests` → 202: ask the caller for an extra request
//!   ([`crate::extra_requests`], its own router);
//! - `GET  /api/v1/calls/events` → server-sent events, one `call` event (a call object) per change and a
//!   `removed` event (`{"id":…}`) when an ended call leaves the list (`?lang=en` as above).
//!
//! Auth: `Authorization: Bearer <token>` with the configured API token (every tenant), or the
//! portal's session cookie ([`crate::http::portal`]): then only the agent's own tenant's calls exist
//! (another tenant's call is 404), and `answer`/`hangup` need `X-CSRF-Token`, refused with 403
//! before anything else is looked up. Answers and hang-ups go to the audit log.
//! This is the only place where attribute values and caller numbers leave their [`Pii`] wrapper,
//! because showing them to the agent is the product.

use crate::audit::{AuditAction, AuditEntry, AuditVia};
use crate::call::registry::{CallEvent, CallVia, CallView, CommandError, Registry};
use crate::call::CallId;
use crate::http::portal::i18n::Lang;
use crate::http::portal::{AgentAuth, Caller};
use crate::http::ApiError;
use crate::tenant::{AgentId, Tenant, Tenants};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::Stream;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// What the API handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub registry: Arc<Registry>,
    pub tenants: Arc<Tenants>,
    /// The bearer token and the portal's sessions; also holds the audit log.
    pub auth: Arc<AgentAuth>,
    /// The SIP side, to see whether the agent's softphone is registered before taking a call; `None`
    /// skips that check (the call task still sends the call back to `waiting` when nobody is there).
    pub phones: Option<crate::sip_driver::SipHandle>,
}

/// The routes above, each checking who asks.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/v1/calls", get(list_calls))
        .route("/api/v1/calls/events", get(call_events))
        .route("/api/v1/calls/{id}/answer", post(answer_call))
        .route("/api/v1/calls/{id}/hangup", post(hangup_call))
        .layer(axum::middleware::map_response(
            crate::http::portal::security_headers,
        ))
        .with_state(state)
}

/// A refused command, as the agents' API answers it.
impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::NotFound => ApiError::CallNotFound,
            CommandError::AlreadyTaken => ApiError::AlreadyTaken,
            CommandError::Ended => ApiError::Ended,
            CommandError::NotWaiting => ApiError::NotWaiting,
        }
    }
}

/// A call as the API shows it.
#[derive(Debug, Serialize, PartialEq)]
pub struct CallJson {
    pub id: CallId,
    pub tenant: String,
    pub state: crate::call::CallState,
    pub verified: bool,
    pub reason: Option<crate::call::UnverifiedReason>,
    pub caller: String,
    pub attributes: Vec<AttributeJson>,
    /// RFC 3339, UTC.
    pub since: String,
    pub agent: Option<String>,
    /// The display name of the agent who took the call.
    pub agent_name: Option<String>,
    /// `relay` or `direct`: whether the call's audio runs through us.
    pub media: crate::call::direct::MediaPath,
    /// The call left us by REFER (to the agent, or the overflow target).
    pub transferred: bool,
    /// The agent's phone holds the caller, who hears the comfort signal meanwhile (relayed calls).
    pub on_hold: bool,
    /// Warnings about the call: `code_reused` (a later call presented this call's link code).
    pub warnings: Vec<crate::call::CallWarning>,
    /// How the last agent leg failed, until an agent takes the call again.
    pub agent_leg: Option<AgentLegJson>,
    /// The tenant's links into its own systems, filled with this caller's attribute values
    /// (URL-encoded); only links whose every placeholder has a value, only while the call lasts.
    pub links: Vec<LinkJson>,
    /// `sip` or `exchange`: how the call reached us.
    pub via: CallVia,
    /// The exchange's forwarding number for the call (exchange calls that gave one).
    pub forward_to: Option<String>,
    /// What agents asked the caller for during the call, with the outcomes
    /// ([`crate::extra_requests`]).
    pub requests: Vec<crate::extra_requests::RequestJson>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct AttributeJson {
    pub id: String,
    pub label: String,
    pub value: Option<String>,
}

/// An agent leg that did not connect: `{"agent":"jan","status":488,"reason":"not_acceptable"}`.
#[derive(Debug, Serialize, PartialEq)]
pub struct AgentLegJson {
    /// The username of the agent whose phone it was.
    pub agent: String,
    /// The phone's final SIP status; `null` when none came (ring timeout, unreachable).
    pub status: Option<u16>,
    pub reason: crate::call::agent_outcome::AgentLegReason,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct LinkJson {
    pub label: String,
    pub url: String,
}

impl CallJson {
    /// `view` as `tenant`'s agents see it, attribute labels in `lang`.
    pub fn new(v: &CallView, tenant: Option<&Tenant>, lang: Lang) -> CallJson {
        let label = |id: &str, dutch: &str| match (lang, tenant.and_then(|t| t.allowed(id))) {
            (Lang::En, Some(allowed)) => allowed.label_en.clone(),
            _ => dutch.to_owned(),
        };
        let agent_name = v.agent.as_ref().and_then(|a| {
            tenant
                .and_then(|t| t.agents.get(a))
                .map(|a| a.display_name.clone())
        });
        CallJson {
            id: v.id,
            tenant: v.tenant.0.clone(),
            state: v.state,
            verified: v.verified,
            reason: v.reason,
            caller: v.caller.expose().clone(),
            attributes: v
                .attributes
                .iter()
                .map(|a| AttributeJson {
                    id: a.id.clone(),
                    label: label(&a.id, &a.label),
                    value: a.value.expose().clone(),
                })
                .collect(),
            since: crate::time::rfc3339_seconds(v.since),
            agent: v.agent.as_ref().map(|a| a.0.clone()),
            agent_name,
            media: v.media,
            transferred: v.transferred,
            on_hold: v.on_hold,
            warnings: v.warnings.clone(),
            agent_leg: v.agent_leg.as_ref().map(|o| AgentLegJson {
                agent: o.agent.0.clone(),
                status: o.status,
                reason: o.reason,
            }),
            links: tenant.map(|t| links(t, v)).unwrap_or_default(),
            via: v.via,
            forward_to: v.forward_to.as_deref().map(str::to_owned),
            requests: crate::extra_requests::RequestJson::all(&v.requests, tenant, lang),
        }
    }
}

impl From<&CallView> for CallJson {
    fn from(v: &CallView) -> Self {
        CallJson::new(v, None, Lang::Nl)
    }
}

/// Characters kept as they are in a filled-in value: RFC 3986 unreserved.
const VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `tenant`'s links for call `v`: each `{attribute-id}` replaced by that attribute's value,
/// URL-encoded. A link with a placeholder the call has no value for is left out, and so is any
/// link that does not come out as an http(s) URL.
fn links(tenant: &Tenant, v: &CallView) -> Vec<LinkJson> {
    if v.attributes.is_empty() {
        return Vec::new();
    }
    let value = |id: &str| {
        v.attributes
            .iter()
            .find(|a| a.id == id)
            .and_then(|a| a.value.expose().as_deref())
    };
    tenant
        .links
        .iter()
        .filter_map(|link| {
            let mut url = String::new();
            let mut rest = link.url_template.as_str();
            while let Some(open) = rest.find('{') {
                let close = rest[open..].find('}')? + open;
                url.push_str(&rest[..open]);
                let filled = value(&rest[open + 1..close])?;
                url.extend(percent_encoding::utf8_percent_encode(filled, VALUE));
                rest = &rest[close + 1..];
            }
            url.push_str(rest);
            (url.starts_with("https://") || url.starts_with("http://")).then(|| LinkJson {
                label: link.label.clone(),
                url,
            })
        })
        .collect()
}

#[derive(Debug, Deserialize)]
struct AnswerBody {
    agent: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    lang: Option<String>,
}

impl ListQuery {
    fn lang(&self) -> Lang {
        self.lang
            .as_deref()
            .and_then(Lang::parse)
            .unwrap_or_default()
    }
}

fn caller(state: &ApiState, headers: &HeaderMap, state_changing: bool) -> Result<Caller, ApiError> {
    state
        .auth
        .caller(headers, state_changing, Instant::now())
        .map_err(ApiError::agent_auth)
}

fn parse_id(raw: &str) -> Result<CallId, ApiError> {
    raw.parse().map(CallId).map_err(|_| ApiError::CallNotFound)
}

/// Call `id`, if `caller` may see it (another tenant's call does not exist for an agent).
fn visible_call(state: &ApiState, caller: &Caller, id: CallId) -> Result<CallView, ApiError> {
    state
        .registry
        .get(id)
        .filter(|c| caller.sees(&c.tenant))
        .ok_or(ApiError::CallNotFound)
}

fn json(state: &ApiState, view: &CallView, lang: Lang) -> CallJson {
    CallJson::new(view, state.tenants.by_id(&view.tenant), lang)
}

async fn list_calls(
    State(state): State<ApiState>,
    Query(query): Query<ListQuery>,
    headers: HeaderMap,
) -> Result<Json<Vec<CallJson>>, ApiError> {
    let caller = caller(&state, &headers, false)?;
    let calls = state.registry.list(SystemTime::now());
    Ok(Json(
        calls
            .iter()
            .filter(|c| caller.sees(&c.tenant))
            .map(|c| json(&state, c, query.lang()))
            .collect(),
    ))
}

async fn answer_call(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<AnswerBody>, axum::extract::rejection::JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let caller = caller(&state, &headers, true)?;
    let id = parse_id(&id)?;
    let (agent, via) = match &caller {
        Caller::Agent(session) => (session.agent.clone(), AuditVia::Portal),
        Caller::Token => {
            let Json(body) = body.map_err(|e| ApiError::BadRequest(Some(e.body_text())))?;
            let agent = body
                .agent
                .ok_or_else(|| ApiError::BadRequest(Some("`agent` is required".into())))?;
            (AgentId(agent), AuditVia::ApiToken)
        }
    };
    let call = visible_call(&state, &caller, id)?;
    let (username, srtp) = state
        .tenants
        .by_id(&call.tenant)
        .and_then(|t| t.agents.get(&agent))
        .map(|a| (a.sip_username.clone(), a.srtp))
        .ok_or(ApiError::UnknownAgent)?;
    // An exchange call's caller is routed to the agent by the exchange, not rung here.
    let phones = state
        .phones
        .as_ref()
        .filter(|_| call.via != CallVia::Exchange);
    if let Some(phones) = phones {
        // A driver that stopped answers like an agent without phones: nobody can be rung. Nor can
        // an agent whose SRTP is required and whose phones are none of them on TLS.
        let ringable = match phones.lookup(&username).await {
            Ok(bindings) => !srtp.plan(bindings).0.is_empty(),
            Err(_) => false,
        };
        if !ringable {
            return Err(ApiError::AgentUnavailable);
        }
    }
    state.registry.answer(id, agent.clone())?;
    let entry = AuditEntry::new(
        SystemTime::now(),
        &call.tenant,
        Some(&agent.0),
        AuditAction::Answer,
        via,
    )
    .call(id, call.verified);
    crate::audit::record(state.auth.audit.clone(), entry).await;
    Ok(StatusCode::ACCEPTED)
}

async fn hangup_call(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let caller = caller(&state, &headers, true)?;
    let id = parse_id(&id)?;
    let call = visible_call(&state, &caller, id)?;
    state.registry.hangup(id)?;
    let (agent, via) = match &caller {
        Caller::Agent(session) => (Some(session.agent.0.as_str()), AuditVia::Portal),
        Caller::Token => (None, AuditVia::ApiToken),
    };
    let entry = AuditEntry::new(
        SystemTime::now(),
        &call.tenant,
        agent,
        AuditAction::Hangup,
        via,
    )
    .call(id, call.verified);
    crate::audit::record(state.auth.audit.clone(), entry).await;
    Ok(StatusCode::ACCEPTED)
}

/// How often an agent's event stream checks that its session still lives (logout, expiry).
const SESSION_CHECK: std::time::Duration = std::time::Duration::from_secs(5);

/// What one event stream remembers: which calls its caller has seen, so a `removed` event goes
/// only to those who saw the call (the removed call's tenant is gone with it).
struct EventStream {
    rx: tokio::sync::broadcast::Receiver<CallEvent>,
    state: ApiState,
    caller: Caller,
    lang: Lang,
    seen: HashSet<CallId>,
    check: tokio::time::Interval,
}

impl EventStream {
    /// The next event for this caller; `None` ends the stream (the bus closed, or the agent's
    /// session ended: logout or expiry end the live updates too, within [`SESSION_CHECK`]).
    async fn next(&mut self) -> Option<Event> {
        loop {
            let received = tokio::select! {
                received = self.rx.recv() => received,
                _ = self.check.tick() => {
                    if let Caller::Agent(session) = &self.caller {
                        if !self.state.auth.is_live(Instant::now(), &session.id) {
                            return None;
                        }
                    }
                    continue;
                }
            };
            if let Caller::Agent(session) = &self.caller {
                if !self.state.auth.is_live(Instant::now(), &session.id) {
                    return None;
                }
            }
            return Some(match received {
                Ok(CallEvent::Updated(view)) => {
                    if !self.caller.sees(&view.tenant) {
                        continue;
                    }
                    self.seen.insert(view.id);
                    let data = serde_json::to_string(&json(&self.state, &view, self.lang))
                        .unwrap_or_default();
                    Event::default().event("call").data(data)
                }
                Ok(CallEvent::Removed(id)) => {
                    if !self.seen.remove(&id) {
                        continue;
                    }
                    Event::default()
                        .event("removed")
                        .data(serde_json::json!({ "id": id }).to_string())
                }
                // A slow client missed events: tell it to reload the list.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    Event::default().event("resync").data("{}")
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            });
        }
    }
}

async fn call_events(
    State(state): State<ApiState>,
    Query(query): Query<ListQuery>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, std::convert::Infallible>>>, ApiError> {
    let caller = caller(&state, &headers, false)?;
    // Subscribe first, then list: a call added in between arrives as an event.
    let rx = state.registry.subscribe();
    let seen = state
        .registry
        .list(SystemTime::now())
        .iter()
        .filter(|c| caller.sees(&c.tenant))
        .map(|c| c.id)
        .collect();
    let mut check = tokio::time::interval(SESSION_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let start = EventStream {
        rx,
        state,
        caller,
        lang: query.lang(),
        seen,
        check,
    };
    let stream = futures_util::stream::unfold(start, |mut s| async move {
        let event = s.next().await?;
        Some((Ok(event), s))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditLog, MemoryAudit};
    use crate::call::registry::{CallCommand, ShownAttribute};
    use crate::call::{CallState, UnverifiedReason};
    use crate::http::login::{LoginPolicy, SessionPolicy};
    use crate::pii::Pii;
    use crate::tenant::{Agent, PasswordHash, Tenant, TenantId};
    use axum::body::Body;
    use axum::http::{header, Request};
    use tokio::sync::mpsc;
    use tower::ServiceExt;

    const TOKEN: &str = "s3cret-token";

    struct Setup {
        app: Router,
        registry: Arc<Registry>,
        commands: mpsc::Receiver<CallCommand>,
        audit: Arc<MemoryAudit>,
    }

    /// The demo tenant with agent `agent` (password `pw`), and tenant `arnhem` with agent `jan`
    /// (password `pw`); call 7 of the demo tenant waits, verified.
    fn setup() -> (Router, Arc<Registry>, mpsc::Receiver<CallCommand>) {
        let s = setup_full();
        (s.app, s.registry, s.commands)
    }

    fn setup_full() -> Setup {
        let registry = Arc::new(Registry::new());
        let hash = PasswordHash::hash("pw").unwrap();
        let mut demo = Tenant::demo();
        for a in demo.agents.values_mut() {
            a.password_hash = Some(hash.clone());
        }
        let mut arnhem = Tenant::demo();
        arnhem.id = TenantId("arnhem".into());
        arnhem.called_numbers = vec!["+31263770000".into()];
        arnhem.agents = [(
            AgentId("jan".into()),
            Agent {
                id: AgentId("jan".into()),
                display_name: "Jan".into(),
                sip_username: "jan".into(),
                password_hash: Some(hash),
                supervisor: false,
                srtp: crate::tenant::SrtpPolicy::default(),
            },
        )]
        .into();
        let tenants = Arc::new(Tenants::new(vec![demo, arnhem]));
        let audit = Arc::new(MemoryAudit::new());
        let auth = Arc::new(AgentAuth::new(
            tenants.clone(),
            Arc::new(Pii::new(TOKEN.to_owned())),
            audit.clone(),
            SessionPolicy::default(),
            LoginPolicy::default(),
        ));
        let state = ApiState {
            registry: registry.clone(),
            tenants,
            auth: auth.clone(),
            phones: None,
        };
        let (tx, rx) = mpsc::channel(8);
        registry.insert(
            CallView {
                verified: true,
                attributes: vec![ShownAttribute {
                    id: "irma-demo.gemeente.personalData.fullname".into(),
                    label: "Naam".into(),
                    value: Pii::new(Some("Jan de Vries".into())),
                }],
                ..CallView::new(
                    CallId(7),
                    TenantId("demo".into()),
                    CallState::Waiting,
                    Pii::new("+31612345678".into()),
                    SystemTime::UNIX_EPOCH,
                    CallVia::Sip,
                )
            },
            tx,
        );
        let app = router(state).merge(crate::http::portal::router(auth));
        Setup {
            app,
            registry,
            commands: rx,
            audit,
        }
    }

    /// Sends `req` with `body` through the router; the status and the JSON body (`null` if none).
    async fn send(
        app: &Router,
        req: axum::http::request::Builder,
        body: &str,
    ) -> (StatusCode, serde_json::Value) {
        let response = app
            .clone()
            .oneshot(req.body(Body::from(body.to_owned())).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }

    async fn call(
        app: &Router,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: &str,
    ) -> (StatusCode, serde_json::Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json");
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        send(app, req, body).await
    }

    #[tokio::test]
    async fn the_list_needs_the_token() {
        let (app, _, _) = setup();
        assert_eq!(
            call(&app, "GET", "/api/v1/calls", None, "").await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            call(&app, "GET", "/api/v1/calls", Some("wrong"), "")
                .await
                .0,
            StatusCode::UNAUTHORIZED
        );
        let (status, body) = call(&app, "GET", "/api/v1/calls", Some(TOKEN), "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body[0]["id"], 7);
        assert_eq!(body[0]["state"], "waiting");
        assert_eq!(body[0]["verified"], true);
        assert_eq!(body[0]["reason"], serde_json::Value::Null);
        assert_eq!(body[0]["caller"], "+31612345678");
        assert_eq!(body[0]["attributes"][0]["label"], "Naam");
        assert_eq!(body[0]["attributes"][0]["value"], "Jan de Vries");
        assert_eq!(body[0]["since"], "1970-01-01T00:00:00Z");
        assert_eq!(body[0]["agent_leg"], serde_json::Value::Null);
    }

    #[tokio::test]
    async fn a_refused_agent_leg_shows_as_agent_status_and_reason() {
        use crate::call::agent_outcome::AgentLegFailure;
        let (app, registry, _) = setup();
        registry.update(CallId(7), |v| {
            v.agent_leg = Some(AgentLegFailure::response(488).of(AgentId("agent".into())));
        });
        let (_, body) = call(&app, "GET", "/api/v1/calls", Some(TOKEN), "").await;
        assert_eq!(
            body[0]["agent_leg"],
            serde_json::json!({"agent": "agent", "status": 488, "reason": "not_acceptable"})
        );
        registry.update(CallId(7), |v| {
            v.agent_leg = Some(AgentLegFailure::no_answer().of(AgentId("agent".into())));
        });
        let (_, body) = call(&app, "GET", "/api/v1/calls", Some(TOKEN), "").await;
        assert_eq!(
            body[0]["agent_leg"],
            serde_json::json!({"agent": "agent", "status": null, "reason": "no_answer"})
        );
    }

    #[tokio::test]
    async fn answering_twice_gives_409_and_one_command() {
        let (app, _, mut rx) = setup();
        let body = r#"{"agent":"agent"}"#;
        assert_eq!(
            call(&app, "POST", "/api/v1/calls/7/answer", Some(TOKEN), body)
                .await
                .0,
            StatusCode::ACCEPTED
        );
        let (status, err) = call(&app, "POST", "/api/v1/calls/7/answer", Some(TOKEN), body).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(err["error"], "already_taken");
        assert!(matches!(rx.try_recv(), Ok(CallCommand::Answer { .. })));
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn bad_requests_get_named_errors() {
        let (app, _, _) = setup();
        let (s, e) = call(&app, "POST", "/api/v1/calls/7/answer", Some(TOKEN), "{nope").await;
        assert_eq!(
            (s, e["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("bad_request"))
        );
        let (s, e) = call(
            &app,
            "POST",
            "/api/v1/calls/7/answer",
            Some(TOKEN),
            r#"{"agent":"mallory"}"#,
        )
        .await;
        assert_eq!(
            (s, e["error"].as_str()),
            (StatusCode::NOT_FOUND, Some("unknown_agent"))
        );
        let (s, _) = call(
            &app,
            "POST",
            "/api/v1/calls/99/answer",
            Some(TOKEN),
            r#"{"agent":"agent"}"#,
        )
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, _) = call(&app, "POST", "/api/v1/calls/x/hangup", Some(TOKEN), "").await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn ended_calls_are_listed_without_personal_data() {
        let (app, registry, _) = setup();
        registry.update(CallId(7), |v| {
            v.verified = false;
            v.reason = Some(UnverifiedReason::NoCode);
        });
        registry.end(CallId(7), SystemTime::now());
        let (_, body) = call(&app, "GET", "/api/v1/calls", Some(TOKEN), "").await;
        assert_eq!(body[0]["state"], "ended");
        assert_eq!(body[0]["reason"], "no_code");
        assert_eq!(body[0]["attributes"], serde_json::json!([]));
        assert_eq!(body[0]["caller"], "");
        let (s, _) = call(&app, "POST", "/api/v1/calls/7/hangup", Some(TOKEN), "").await;
        assert_eq!(s, StatusCode::CONFLICT);
    }

    /// Logs in through the portal's route: the cookie pair and the CSRF token.
    async fn log_in(app: &Router, user: &str) -> (String, String) {
        let req = Request::post("/api/v1/login")
            .header("content-type", "application/json")
            .body(Body::from(format!(
                r#"{{"username":"{user}","password":"pw"}}"#
            )))
            .unwrap();
        let response = app.clone().oneshot(req).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let cookie = response.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        (cookie, json["csrf"].as_str().unwrap().to_owned())
    }

    async fn with_cookie(
        app: &Router,
        method: &str,
        uri: &str,
        cookie: &str,
        csrf: Option<&str>,
        body: &str,
    ) -> (StatusCode, serde_json::Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header("cookie", cookie)
            .header("content-type", "application/json");
        if let Some(c) = csrf {
            req = req.header("x-csrf-token", c);
        }
        send(app, req, body).await
    }

    #[tokio::test]
    async fn an_agent_answers_for_themselves_with_the_csrf_token() {
        let mut s = setup_full();
        let (cookie, csrf) = log_in(&s.app, "agent").await;
        let (status, body) = with_cookie(&s.app, "GET", "/api/v1/calls", &cookie, None, "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body[0]["attributes"][0]["value"], "Jan de Vries");
        // The body's agent is ignored: a session answers as its own agent.
        let (status, _) = with_cookie(
            &s.app,
            "POST",
            "/api/v1/calls/7/answer",
            &cookie,
            Some(&csrf),
            r#"{"agent":"someone-else"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert_eq!(
            s.commands.try_recv().ok(),
            Some(CallCommand::Answer {
                agent: AgentId("agent".into())
            })
        );
        let rows = s.audit.recent(Some("demo"), 10).unwrap();
        assert_eq!(rows[0].action, AuditAction::Answer);
        assert_eq!(rows[0].agent.as_deref(), Some("agent"));
        assert_eq!((rows[0].call, rows[0].verified), (Some(7), Some(true)));
        let (_, body) = with_cookie(&s.app, "GET", "/api/v1/calls", &cookie, None, "").await;
        assert_eq!(body[0]["agent_name"], "Demo agent");
    }

    #[tokio::test]
    async fn without_the_csrf_header_a_cookie_gets_403_before_the_call_is_looked_up() {
        let s = setup_full();
        let (cookie, csrf) = log_in(&s.app, "agent").await;
        for uri in [
            "/api/v1/calls/7/answer",
            "/api/v1/calls/7/hangup",
            "/api/v1/calls/999/answer",
            "/api/v1/calls/not-a-number/hangup",
        ] {
            let (status, body) = with_cookie(&s.app, "POST", uri, &cookie, None, "{}").await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{uri}");
            assert_eq!(body["error"], "forbidden");
        }
        let (status, _) = with_cookie(
            &s.app,
            "POST",
            "/api/v1/calls/7/hangup",
            &cookie,
            Some("x"),
            "",
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "a wrong token too");
        let (status, _) = with_cookie(
            &s.app,
            "POST",
            "/api/v1/calls/999/hangup",
            &cookie,
            Some(&csrf),
            "",
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn an_agent_of_another_tenant_sees_none_of_these_calls() {
        let mut s = setup_full();
        let (cookie, csrf) = log_in(&s.app, "jan").await;
        let (status, body) = with_cookie(&s.app, "GET", "/api/v1/calls", &cookie, None, "").await;
        assert_eq!((status, body), (StatusCode::OK, serde_json::json!([])));
        for action in ["answer", "hangup"] {
            let (status, body) = with_cookie(
                &s.app,
                "POST",
                &format!("/api/v1/calls/7/{action}"),
                &cookie,
                Some(&csrf),
                "{}",
            )
            .await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{action}");
            assert_eq!(body["error"], "call_not_found");
        }
        assert!(s.commands.try_recv().is_err(), "nothing reached the call");
        // The bearer token sees every tenant.
        let (_, body) = call(&s.app, "GET", "/api/v1/calls", Some(TOKEN), "").await;
        assert_eq!(body.as_array().map(Vec::len), Some(1));
    }

    #[tokio::test]
    async fn english_labels_and_the_tenants_links_filled_in() {
        let s = setup_full();
        s.registry.update(CallId(7), |v| {
            v.attributes.push(ShownAttribute {
                id: "irma-demo.gemeente.personalData.bsn".into(),
                label: "BSN".into(),
                value: Pii::new(Some("999 99/3653".into())),
            })
        });
        let (_, body) = call(&s.app, "GET", "/api/v1/calls?lang=en", Some(TOKEN), "").await;
        assert_eq!(body[0]["attributes"][0]["label"], "Name");
        assert_eq!(body[0]["attributes"][1]["label"], "Citizen service number");
        assert_eq!(
            body[0]["links"],
            serde_json::json!([{
                "label": "Zaaksysteem",
                "url": "https://zaken.demodam.example/burger/999%2099%2F3653"
            }])
        );
        let (_, body) = call(&s.app, "GET", "/api/v1/calls", Some(TOKEN), "").await;
        assert_eq!(body[0]["attributes"][0]["label"], "Naam");
        s.registry.end(CallId(7), SystemTime::now());
        let (_, body) = call(&s.app, "GET", "/api/v1/calls", Some(TOKEN), "").await;
        assert_eq!(
            body[0]["links"],
            serde_json::json!([]),
            "gone with the call"
        );
    }

    #[tokio::test]
    async fn the_api_sends_the_security_headers() {
        let s = setup_full();
        let response = s
            .app
            .clone()
            .oneshot(
                Request::get("/api/v1/calls")
                    .header("authorization", format!("Bearer {TOKEN}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let h = response.headers();
        assert_eq!(h[header::CACHE_CONTROL], "no-store");
        assert!(h.contains_key(header::CONTENT_SECURITY_POLICY));
    }
}
