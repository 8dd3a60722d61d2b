//! The agents' HTTP API (issue 4): the call list, taking a call, hanging up, and a live event stream.
//!
//! - `GET  /api/v1/calls` → JSON array of calls (`id`, `state`, `verified`, `reason`, `caller`,
//!   `attributes` (only while a verified call lasts), `since`, `agent`, `tenant`, `media`
//!   (`relay` or `direct`), `transferred` (the call left us by REFER), `on_hold` (the agent's phone
//!   holds the caller, who hears the comfort signal meanwhile; false once the call ended));
//! - `POST /api/v1/calls/{id}/answer` with `{"agent":"<username>"}` → 202, or 409 if already taken
//!   (`already_taken`) or when the agent has no registered softphone right now (`agent_unavailable`:
//!   the agent sees at once that the phone is off, and the call stays `waiting` for someone else);
//! - `POST /api/v1/calls/{id}/hangup` → 202;
//! - `GET  /api/v1/calls/events` → server-sent events, one `call` event (a call object) per change and a
//!   `removed` event (`{"id":…}`) when an ended call leaves the list.
//!
//! Auth for now: `Authorization: Bearer <token>` with the configured API token; the portal adds agent
//! login on the same endpoints. This is the only place where attribute values and caller numbers leave
//! their [`Pii`] wrapper, because showing them to the agent is the product.

use crate::call::registry::{CallEvent, CallView, CommandError, Registry};
use crate::call::CallId;
use crate::pii::Pii;
use crate::tenant::{AgentId, Tenants};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::Stream;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::SystemTime;
use subtle::ConstantTimeEq;

/// What the API handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub registry: Arc<Registry>,
    pub tenants: Arc<Tenants>,
    pub token: Arc<Pii<String>>,
    /// The SIP side, to see whether the agent's softphone is registered before taking a call; `None`
    /// skips that check (the call task still sends the call back to `waiting` when nobody is there).
    pub phones: Option<crate::sip_driver::SipHandle>,
}

/// The routes above, with bearer auth on every one.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/v1/calls", get(list_calls))
        .route("/api/v1/calls/events", get(call_events))
        .route("/api/v1/calls/{id}/answer", post(answer_call))
        .route("/api/v1/calls/{id}/hangup", post(hangup_call))
        .with_state(state)
}

/// Every failure of this API, mapped to a status and a JSON body `{"error": name, "message": text}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("a valid bearer token is required")]
    Unauthorized,
    #[error("no such call")]
    CallNotFound,
    #[error("no such agent for this call's municipality")]
    UnknownAgent,
    #[error("the call was already taken by an agent")]
    AlreadyTaken,
    #[error("the call has ended")]
    Ended,
    #[error("the call is still reading the caller's code")]
    NotWaiting,
    #[error("the agent has no registered softphone")]
    AgentUnavailable,
    #[error("bad request: {0}")]
    BadRequest(String),
}

impl ApiError {
    fn name(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::CallNotFound => "call_not_found",
            ApiError::UnknownAgent => "unknown_agent",
            ApiError::AlreadyTaken => "already_taken",
            ApiError::Ended => "call_ended",
            ApiError::NotWaiting => "not_waiting",
            ApiError::AgentUnavailable => "agent_unavailable",
            ApiError::BadRequest(_) => "bad_request",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::CallNotFound | ApiError::UnknownAgent => StatusCode::NOT_FOUND,
            ApiError::AlreadyTaken
            | ApiError::Ended
            | ApiError::NotWaiting
            | ApiError::AgentUnavailable => StatusCode::CONFLICT,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
        }
    }
}

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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({ "error": self.name(), "message": self.to_string() }));
        let mut response = (self.status(), body).into_response();
        if matches!(self, ApiError::Unauthorized) {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
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
    /// `relay` or `direct`: whether the call's audio runs through us.
    pub media: crate::call::direct::MediaPath,
    /// The call left us by REFER (to the agent, or the overflow target).
    pub transferred: bool,
    /// The agent's phone holds the caller, who hears the comfort signal meanwhile (relayed calls).
    pub on_hold: bool,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct AttributeJson {
    pub id: String,
    pub label: String,
    pub value: Option<String>,
}

impl From<&CallView> for CallJson {
    fn from(v: &CallView) -> Self {
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
                    label: a.label.clone(),
                    value: a.value.expose().clone(),
                })
                .collect(),
            since: humantime::format_rfc3339_seconds(v.since).to_string(),
            agent: v.agent.as_ref().map(|a| a.0.clone()),
            media: v.media,
            transferred: v.transferred,
            on_hold: v.on_hold,
        }
    }
}

#[derive(Debug, Deserialize)]
struct AnswerBody {
    agent: String,
}

fn authorize(state: &ApiState, headers: &HeaderMap) -> Result<(), ApiError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(ApiError::Unauthorized)?;
    let matches: bool = presented
        .trim()
        .as_bytes()
        .ct_eq(state.token.expose().as_bytes())
        .into();
    if matches {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

fn parse_id(raw: &str) -> Result<CallId, ApiError> {
    raw.parse().map(CallId).map_err(|_| ApiError::CallNotFound)
}

async fn list_calls(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<Json<Vec<CallJson>>, ApiError> {
    authorize(&state, &headers)?;
    let calls = state.registry.list(SystemTime::now());
    Ok(Json(calls.iter().map(CallJson::from).collect()))
}

async fn answer_call(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<AnswerBody>, axum::extract::rejection::JsonRejection>,
) -> Result<StatusCode, ApiError> {
    authorize(&state, &headers)?;
    let id = parse_id(&id)?;
    let Json(body) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let call = state.registry.get(id).ok_or(ApiError::CallNotFound)?;
    let agent = AgentId(body.agent);
    let username = state
        .tenants
        .by_id(&call.tenant)
        .and_then(|t| t.agents.get(&agent))
        .map(|a| a.sip_username.clone())
        .ok_or(ApiError::UnknownAgent)?;
    if let Some(phones) = &state.phones {
        // A driver that stopped answers like an agent without phones: nobody can be rung.
        if phones
            .lookup(&username)
            .await
            .map(|b| b.is_empty())
            .unwrap_or(true)
        {
            return Err(ApiError::AgentUnavailable);
        }
    }
    state.registry.answer(id, agent)?;
    Ok(StatusCode::ACCEPTED)
}

async fn hangup_call(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    authorize(&state, &headers)?;
    state.registry.hangup(parse_id(&id)?)?;
    Ok(StatusCode::ACCEPTED)
}

async fn call_events(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, std::convert::Infallible>>>, ApiError> {
    authorize(&state, &headers)?;
    let rx = state.registry.subscribe();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let event = match rx.recv().await {
            Ok(CallEvent::Updated(view)) => {
                let data = serde_json::to_string(&CallJson::from(&view)).unwrap_or_default();
                Event::default().event("call").data(data)
            }
            Ok(CallEvent::Removed(id)) => Event::default()
                .event("removed")
                .data(serde_json::json!({ "id": id }).to_string()),
            // A slow client missed events: tell it to reload the list.
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                Event::default().event("resync").data("{}")
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok(event), rx))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::registry::{CallCommand, ShownAttribute};
    use crate::call::{CallState, UnverifiedReason};
    use crate::tenant::{Tenant, TenantId};
    use axum::body::Body;
    use axum::http::Request;
    use tokio::sync::mpsc;
    use tower::ServiceExt;

    const TOKEN: &str = "s3cret-token";

    fn setup() -> (Router, Arc<Registry>, mpsc::Receiver<CallCommand>) {
        let registry = Arc::new(Registry::new());
        let state = ApiState {
            registry: registry.clone(),
            tenants: Arc::new(Tenants::new(vec![Tenant::demo()])),
            token: Arc::new(Pii::new(TOKEN.to_owned())),
            phones: None,
        };
        let (tx, rx) = mpsc::channel(8);
        registry.insert(
            CallView {
                id: CallId(7),
                tenant: TenantId("demo".into()),
                state: CallState::Waiting,
                verified: true,
                reason: None,
                caller: Pii::new("+31612345678".into()),
                attributes: vec![ShownAttribute {
                    id: "irma-demo.gemeente.personalData.fullname".into(),
                    label: "Naam".into(),
                    value: Pii::new(Some("Jan de Vries".into())),
                }],
                since: SystemTime::UNIX_EPOCH,
                agent: None,
                ended_at: None,
                media: Default::default(),
                transferred: false,
                on_hold: false,
            },
            tx,
        );
        (router(state), registry, rx)
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
}
