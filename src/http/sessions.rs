//! `POST /api/v1/sessions` and `GET /api/v1/sessions/{token}/status`.
//!
//! Start answers `200 {"sessionPtr":…,"token":…,"frontendRequest":…}`: exactly what yivi-frontend's
//! default session mapping reads (`sessionPtr`, `token`, `frontendRequest`). It is 200, not 201,
//! because yivi-client's session start rejects every other status. `token` is our frontend token;
//! the link code and the IRMA requestor token never leave the server.
//!
//! Status answers `{"status":"pending|done|cancelled|expired","tenant":…,"tenantName":…}`; with
//! `?wait=N` (seconds, at most 15) it holds a pending answer until the status changes or N passes.
//! The widget points yivi-frontend's `result` step here.
//!
//! A page that stays open during the call to show the agent's extra requests
//! ([`crate::extra_requests`]) adds `requests=V`: `V` is the `requests` version of its last
//! answer (0 at first). A `done` answer then also waits (up to N) until the requests change, and
//! gains `"requests": <version>`, `"call": "waiting|active|ended"` and, while there is one, the
//! agent's latest request: `"request": {"id","label","labelEn","kind":"disclose|sign",
//! "state":"pending|done|cancelled|expired|refused","sessionPtr","frontendRequest"}` (the Yivi
//! session to show, while pending). While such requests keep coming, the page counts as open for
//! the agent's requests; a page that stops asking is told nothing more, and the agent sees that.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;

use super::error::ApiError;
use super::PublicState;
use crate::links::PublicStatus;
use crate::store::FrontendToken;
use crate::tenant::{Tenant, TenantId};
use crate::time::unix_now;

/// Longest `?wait=` honoured.
const MAX_WAIT: Duration = Duration::from_secs(15);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartRequest {
    #[serde(default)]
    tenant: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct StatusQuery {
    wait: Option<u64>,
    /// The page follows the agent's extra requests; the version it saw last.
    requests: Option<u64>,
}

/// The Origin header, when a browser sent one, must be one of the tenant's website origins.
pub(super) fn check_origin(headers: &HeaderMap, tenant: &Tenant) -> Result<(), ApiError> {
    match headers.get(header::ORIGIN) {
        None => Ok(()),
        Some(origin) => {
            let ok = origin
                .to_str()
                .is_ok_and(|o| tenant.website_origins.iter().any(|w| w == o));
            ok.then_some(()).ok_or(ApiError::ForbiddenOrigin)
        }
    }
}

pub(super) async fn start(
    State(state): State<PublicState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge,
        _ => ApiError::BadJson,
    })?;
    let request: StartRequest = if body.iter().all(u8::is_ascii_whitespace) {
        StartRequest { tenant: None }
    } else {
        serde_json::from_slice(&body).map_err(|_| ApiError::BadJson)?
    };
    let tenants = state.links.tenants();
    let tenant = match &request.tenant {
        Some(id) => tenants
            .by_id(&TenantId(id.clone()))
            .ok_or(ApiError::UnknownTenant)?,
        None => tenants.single().ok_or(ApiError::TenantRequired)?,
    };
    check_origin(&headers, tenant)?;
    let session = state.links.start(tenant, unix_now()).await?;
    Ok((
        StatusCode::OK,
        [(header::CACHE_CONTROL, "no-store")],
        Json(session),
    ))
}

pub(super) async fn status(
    State(state): State<PublicState>,
    Path(token): Path<String>,
    query: Result<Query<StatusQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let token = FrontendToken::parse(&token).ok_or(ApiError::UnknownSession)?;
    let Query(query) = query.map_err(|_| ApiError::BadQuery)?;
    let wait = Duration::from_secs(query.wait.unwrap_or(0)).min(MAX_WAIT);
    let until = tokio::time::Instant::now() + wait;
    let (status, tenant_id) = state
        .links
        .wait_status(&token, wait)
        .await?
        .ok_or(ApiError::UnknownSession)?;
    let tenant = state
        .links
        .tenants()
        .by_id(&tenant_id)
        .ok_or(ApiError::UnknownSession)?;
    check_origin(&headers, tenant)?;
    let mut body = serde_json::json!({
        "status": status,
        "tenant": tenant.id.0,
        "tenantName": tenant.display_name,
        // Whether the page may offer a call from the browser (`POST …/call`).
        "webrtc": tenant.webrtc,
    });
    if let (Some(seen), PublicStatus::Done) = (query.requests, status) {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        let news = state.pages.listen(&token, seen, left).await;
        body["requests"] = news.version.into();
        if let Some(phase) = state.links.call_phase(&token).await? {
            body["call"] = serde_json::to_value(phase).unwrap_or_default();
        }
        if let Some(push) = news.push {
            body["request"] = push;
        }
    }
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(body)))
}
