//! `POST /api/v1/sessions/{token}/call` and `DELETE` of the same: a citizen calls from the page
//! where they disclosed, the way WebRTC ingest is signalled (WHIP, RFC 9725).
//!
//! The page that holds the session's frontend token (128 random bits, known only to that browser)
//! posts its SDP offer as `application/sdp`; once the session is disclosed and accepted, and the
//! municipality takes browser calls (`webrtc = true`), the answer is `201 Created` with our SDP
//! answer and a `Location` whose `DELETE` hangs up (RFC 9725 §4.2, §4.3). One call per session:
//! the token is spent by the call as a phone call spends the link code. The same origin rules and
//! per-client limit as the session API apply; the link code never reaches the page.
//!
//! Refusals: `415` for another content type, `404` for an unknown token, `403` for a foreign
//! origin or a municipality without browser calls, `409 not_disclosed` before the disclosure is
//! done, `409 already_called` for a second call, `410` for an expired or cancelled session,
//! `400` for an offer we cannot answer (no audio, no shared codec), `503` with `Retry-After` when
//! the install is full.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;

use super::error::ApiError;
use super::sessions::check_origin;
use super::PublicState;
use crate::call::browser::BrowserCallError;
use crate::links::{PublicStatus, Unverified};
use crate::store::FrontendToken;
use crate::tenant::Tenant;

/// Largest SDP offer taken: a browser's audio offer with a data channel is 2–6 KB.
pub const MAX_OFFER: usize = 16 * 1024;

/// How soon a browser may try again when the install is full.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// The call's resource (and the path posted to).
fn location(token: &FrontendToken) -> String {
    format!("/api/v1/sessions/{}/call", token.as_str())
}

/// The session `token` names, its status and its tenant, if the request's origin may touch it.
async fn session<'s>(
    state: &'s PublicState,
    token: &str,
    headers: &HeaderMap,
) -> Result<(FrontendToken, PublicStatus, &'s Tenant), ApiError> {
    let token = FrontendToken::parse(token).ok_or(ApiError::UnknownSession)?;
    let (status, tenant_id) = state
        .links
        .status(&token)
        .await?
        .ok_or(ApiError::UnknownSession)?;
    let tenant = state
        .links
        .tenants()
        .by_id(&tenant_id)
        .ok_or(ApiError::UnknownSession)?;
    check_origin(headers, tenant)?;
    Ok((token, status, tenant))
}

pub(super) async fn call(
    State(state): State<PublicState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let is_sdp = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/sdp"));
    if !is_sdp {
        return Err(ApiError::NotSdp);
    }
    let (token, status, tenant) = session(&state, &token, &headers).await?;
    if !tenant.webrtc {
        return Err(ApiError::WebrtcOff);
    }
    match status {
        PublicStatus::Done => {}
        PublicStatus::Pending => return Err(ApiError::NotDisclosed),
        PublicStatus::Cancelled | PublicStatus::Expired => return Err(ApiError::SessionExpired),
    }
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge,
        _ => ApiError::BadRequest(Some("the SDP offer could not be read".into())),
    })?;
    let offer = std::str::from_utf8(&body)
        .map_err(|_| ApiError::BadRequest(Some("the SDP offer is not UTF-8 text".into())))?;
    let calls = state.browser_calls.as_ref().ok_or(ApiError::AtCapacity {
        retry_after: RETRY_AFTER,
    })?;
    let started = calls
        .start(tenant, &token, offer)
        .await
        .map_err(|e| match e {
            BrowserCallError::AtCapacity => ApiError::AtCapacity {
                retry_after: RETRY_AFTER,
            },
            BrowserCallError::Session(Unverified::UsedCode) => ApiError::AlreadyCalled,
            BrowserCallError::Session(Unverified::ExpiredCode) => ApiError::SessionExpired,
            BrowserCallError::Session(Unverified::UnknownCode) => ApiError::UnknownSession,
            BrowserCallError::Session(_) => ApiError::NotDisclosed,
            BrowserCallError::Media(e) if e.is_offer() => {
                ApiError::BadRequest(Some(format!("cannot answer the SDP offer: {e}")))
            }
            BrowserCallError::Media(e) => ApiError::internal(e),
        })?;
    tracing::info!(call = %started.call, tenant = %tenant.id, "a citizen calls from the browser");
    Ok((
        StatusCode::CREATED,
        [
            (header::CONTENT_TYPE, "application/sdp".to_owned()),
            (header::LOCATION, location(&token)),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        started.answer,
    ))
}

/// `DELETE`: the citizen hangs up. `204`, or `404` when the session has no live call.
pub(super) async fn hang_up(
    State(state): State<PublicState>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let (token, _, _) = session(&state, &token, &headers).await?;
    let hung_up = state
        .browser_calls
        .as_ref()
        .is_some_and(|calls| calls.hang_up(&token));
    if hung_up {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::CallNotFound)
    }
}
