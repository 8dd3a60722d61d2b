//! `POST /api/v1/calls/{id}/requests` — an agent asks the caller for one of the tenant's extra
//! requests: body `{"request":"<id>"}` → `202` with the request as the call's `requests` lists it
//! ([`RequestJson`]); a request that cannot reach the caller is listed `unreachable` (still 202:
//! the card says why). Refusals: `404 call_not_found` (also another tenant's call, for an agent),
//! `404 unknown_request`, `409 call_ended`, `409 call_not_verified`, `409 request_limit` (a call
//! takes at most [`MAX_PER_CALL`](super::MAX_PER_CALL) requests), `502 irma_unavailable`.
//!
//! Auth as the rest of the agents' API ([`crate::agent_api`]): the bearer token, or the portal's
//! session cookie with its `X-CSRF-Token` (refused with 403 before anything is looked up).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{AskError, Asker, ExtraRequestView, ExtraRequests, RequestReason, RequestState};
use crate::audit::AuditVia;
use crate::call::CallId;
use crate::http::portal::i18n::Lang;
use crate::http::portal::{AgentAuth, Caller};
use crate::http::ApiError;
use crate::tenant::Tenant;

/// Largest request body.
const MAX_BODY: usize = 1024;

#[derive(Clone)]
struct ApiState {
    requests: ExtraRequests,
    auth: Arc<AgentAuth>,
}

/// The route above, with the portal's security headers.
pub fn router(requests: ExtraRequests, auth: Arc<AgentAuth>) -> Router {
    Router::new()
        .route("/api/v1/calls/{id}/requests", post(ask))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::map_response(
            crate::http::portal::security_headers,
        ))
        .with_state(ApiState { requests, auth })
}

#[derive(Deserialize)]
struct AskBody {
    request: String,
}

/// An extra request as the agents' API shows it, in each call's `requests`.
#[derive(Debug, Serialize, PartialEq)]
pub struct RequestJson {
    /// Its number within the call, from 1.
    pub seq: u32,
    /// Its id in the tenant's configuration.
    pub request: String,
    /// Its label in the asked language.
    pub label: String,
    /// A signature rather than a disclosure.
    pub sign: bool,
    /// `sent`, `shown`, `unreachable`, `done`, `cancelled`, `expired` or `refused`.
    pub state: RequestState,
    /// `page_closed`, `no_page`, `declined`, `replaced`, `call_ended`, `invalid_proof`,
    /// `credential_expired`, `missing_attributes`, `unmatched_request`, `not_allowed`,
    /// `irma_error`, or `null`.
    pub reason: Option<RequestReason>,
    /// Who asked (`null`: the API's bearer token).
    pub agent: Option<String>,
    /// RFC 3339, UTC.
    pub asked_at: String,
    pub ended_at: Option<String>,
    /// What the caller disclosed (or signed with), once `done`, while the call lasts.
    pub attributes: Vec<crate::agent_api::AttributeJson>,
    /// A signature's result, once `done`, while the call lasts.
    pub signature: Option<SignatureJson>,
}

/// `{"message": "<the text signed>", "signed": <irmago's signed message>}`.
#[derive(Debug, Serialize, PartialEq)]
pub struct SignatureJson {
    pub message: String,
    pub signed: serde_json::Value,
}

impl RequestJson {
    /// `view` as `tenant`'s agents see it, labels in `lang`. Attribute values leave their
    /// [`Pii`](crate::pii::Pii) wrapper here: showing them to the agent is the point.
    pub fn new(view: &ExtraRequestView, tenant: Option<&Tenant>, lang: Lang) -> RequestJson {
        let request = tenant.and_then(|t| t.extra_request(&view.request));
        let label = match (lang, request) {
            (Lang::En, Some(r)) => r.label_en.clone(),
            _ => view.label.clone(),
        };
        let attribute_label =
            |id: &str, dutch: &str| match (lang, tenant.and_then(|t| t.allowed(id))) {
                (Lang::En, Some(allowed)) => allowed.label_en.clone(),
                _ => dutch.to_owned(),
            };
        RequestJson {
            seq: view.seq,
            request: view.request.clone(),
            label,
            sign: view.sign,
            state: view.state,
            reason: view.reason,
            agent: view.agent.as_ref().map(|a| a.0.clone()),
            asked_at: crate::time::rfc3339_seconds(view.asked_at),
            ended_at: view.ended_at.map(crate::time::rfc3339_seconds),
            attributes: view
                .attributes
                .iter()
                .map(|a| crate::agent_api::AttributeJson {
                    id: a.id.clone(),
                    label: attribute_label(&a.id, &a.label),
                    value: a.value.expose().clone(),
                })
                .collect(),
            signature: view.signature.as_ref().map(|s| SignatureJson {
                message: s.message.clone(),
                signed: s.signed.expose().clone(),
            }),
        }
    }

    /// Every request of a call.
    pub fn all(
        views: &[ExtraRequestView],
        tenant: Option<&Tenant>,
        lang: Lang,
    ) -> Vec<RequestJson> {
        views
            .iter()
            .map(|v| RequestJson::new(v, tenant, lang))
            .collect()
    }
}

impl From<AskError> for ApiError {
    fn from(e: AskError) -> Self {
        match e {
            AskError::CallNotFound => ApiError::CallNotFound,
            AskError::CallEnded => ApiError::Ended,
            AskError::NotVerified => ApiError::NotVerified,
            AskError::UnknownRequest => ApiError::UnknownRequest,
            AskError::Irma(e) => ApiError::IrmaUnavailable(e),
            AskError::TooMany => ApiError::RequestLimit,
        }
    }
}

async fn ask(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<AskBody>, JsonRejection>,
) -> Result<(StatusCode, Json<RequestJson>), ApiError> {
    let caller = state
        .auth
        .caller(&headers, true, Instant::now())
        .map_err(ApiError::agent_auth)?;
    let id = id.parse().map(CallId).map_err(|_| ApiError::CallNotFound)?;
    let Json(body) =
        body.map_err(|_| ApiError::BadRequest(Some("`request` is required".into())))?;
    let registry = &state.requests.inner.registry;
    let call = registry
        .get(id)
        .filter(|c| caller.sees(&c.tenant))
        .ok_or(ApiError::CallNotFound)?;
    let asker = match &caller {
        Caller::Agent(session) => Asker {
            agent: Some(session.agent.clone()),
            via: AuditVia::Portal,
        },
        Caller::Token => Asker {
            agent: None,
            via: AuditVia::ApiToken,
        },
    };
    let view = state.requests.ask(id, body.request.trim(), asker).await?;
    let tenant = state.requests.inner.tenants.by_id(&call.tenant);
    Ok((
        StatusCode::ACCEPTED,
        Json(RequestJson::new(&view, tenant, Lang::Nl)),
    ))
}
