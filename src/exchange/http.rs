//! The exchange API's routes (see [`super`]): auth by the tenant's key, the request and response
//! shapes and the event stream. Failures answer as the web side's [`ApiError`].
//!
//! `POST /api/v1/pbx/calls` takes JSON (`Content-Type: application/json`) or a form
//! (`application/x-www-form-urlencoded`, what Asterisk's `CURL()` sends most easily) with the
//! same fields: `time` (RFC 3339 with `Z` or an offset, or Unix seconds; optional, default now),
//! `caller`, `called`, `code`, `forward_to` (all optional strings). It answers `201 Created`
//! with `{"call_id": 7, "verified": true, "reason": null}` and `Location` of the call.
//!
//! Failed key attempts cost a token of the client address's bucket ([`super::FAILED_KEYS`]: 10,
//! one back every 10 s); with none left every request from that address gets 429, whatever its
//! key, so keys cannot be guessed. A missing and a wrong key get the same 401.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{DefaultBodyLimit, FromRequest, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use futures_util::stream::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{ExchangeCalls, ExchangeEvent, KeyHash, NewCall, StartError};
use crate::call::{CallId, UnverifiedReason};
use crate::http::error::Credential;
use crate::http::{ApiError, ClientAddr};
use crate::pii::Pii;
use crate::tenant::Tenant;

/// Largest request body (the JSON of a call is a few hundred bytes).
const MAX_BODY: usize = 4096;
/// Longest `caller`, `called` and `code`; `forward_to` may be a URI up to [`MAX_URI`].
const MAX_FIELD: usize = 128;
const MAX_URI: usize = 256;

/// The routes, over `calls`.
pub fn router(calls: Arc<ExchangeCalls>) -> Router {
    Router::new()
        .route("/api/v1/pbx/calls", post(new_call))
        .route("/api/v1/pbx/calls/{id}/events", get(call_events))
        .route("/api/v1/pbx/calls/{id}/ended", post(call_ended))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(calls)
}

/// `Retry-After` for an address out of key attempts: one comes back every 10 s
/// ([`super::FAILED_KEYS`]).
const WRONG_KEYS_RETRY: Duration = Duration::from_secs(10);
/// `Retry-After` when every live call slot is taken: a few seconds, at a guess.
const AT_CAPACITY_RETRY: Duration = Duration::from_secs(5);

impl From<StartError> for ApiError {
    fn from(e: StartError) -> Self {
        match e {
            StartError::CalledNumberOfOtherTenant => ApiError::CalledNumberOfOtherTenant,
            StartError::AtCapacity => ApiError::AtCapacity {
                retry_after: AT_CAPACITY_RETRY,
            },
            StartError::Internal => ApiError::internal(e),
        }
    }
}

/// The body of `POST /api/v1/pbx/calls`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewCallBody {
    time: Option<TimeField>,
    caller: Option<String>,
    called: Option<String>,
    code: Option<String>,
    forward_to: Option<String>,
}

/// `time` as a JSON number (Unix seconds) or a string (Unix seconds or RFC 3339).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum TimeField {
    Unix(u64),
    Text(String),
}

/// The answer to `POST /api/v1/pbx/calls`.
#[derive(Debug, Serialize)]
struct Verdict {
    call_id: CallId,
    verified: bool,
    reason: Option<UnverifiedReason>,
}

/// The tenant and key name of the request's key; a failure is charged to the client's address.
fn authenticate<'t>(
    calls: &'t ExchangeCalls,
    headers: &HeaderMap,
    client: ClientAddr,
) -> Result<(&'t Tenant, &'t str), ApiError> {
    let now = tokio::time::Instant::now();
    if !calls.failures().allows(client.0, now) {
        return Err(ApiError::TooManyWrongKeys {
            retry_after: WRONG_KEYS_RETRY,
        });
    }
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, key) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
        })
        .filter(|key| !key.is_empty())
        .map(KeyHash::of);
    // Every tenant's every key is compared, whichever matches.
    let mut found = None;
    if let Some(presented) = &presented {
        for tenant in calls.tenants().iter() {
            if let Some(name) = tenant.exchange.key_named(presented) {
                found = found.or(Some((tenant, name)));
            }
        }
    }
    found.ok_or_else(|| {
        let _ = calls.failures().check(client.0, now);
        crate::metrics::global().exchange_auth_failures.inc();
        tracing::warn!(
            client = %client.0,
            "exchange API request with a missing or wrong key"
        );
        ApiError::Unauthorized(Credential::ExchangeKey)
    })
}

async fn new_call(
    State(calls): State<Arc<ExchangeCalls>>,
    client: ClientAddr,
    request: Request,
) -> Result<Response, ApiError> {
    let (tenant, key_name) = authenticate(&calls, request.headers(), client)?;
    let form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let body = if form {
        Form::<NewCallBody>::from_request(request, &())
            .await
            .map(|Form(b)| b)
            .map_err(|e| ApiError::BadRequest(Some(e.body_text())))?
    } else {
        Json::<NewCallBody>::from_request(request, &())
            .await
            .map(|Json(b)| b)
            .map_err(|e| ApiError::BadRequest(Some(e.body_text())))?
    };
    let call = new_call_of(body, SystemTime::now()).map_err(|e| ApiError::BadRequest(Some(e)))?;
    let verdict = calls.start(tenant, key_name, call).await?;
    let location = format!("/api/v1/pbx/calls/{}", verdict.call_id);
    let body = Json(Verdict {
        call_id: verdict.call_id,
        verified: verdict.verified,
        reason: verdict.reason,
    });
    let mut response = (StatusCode::CREATED, body).into_response();
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// The checked fields of a request (received at `now`).
fn new_call_of(body: NewCallBody, now: SystemTime) -> Result<NewCall, String> {
    let field = |name: &str, value: Option<String>, max: usize| {
        let value = value.unwrap_or_default();
        let value = value.trim();
        if value.chars().count() > max {
            return Err(format!("`{name}` is longer than {max} characters"));
        }
        if value.chars().any(char::is_control) {
            return Err(format!("`{name}` contains control characters"));
        }
        Ok(value.to_owned())
    };
    let since = match body.time {
        None => now,
        Some(TimeField::Unix(secs)) => crate::time::from_unix_seconds(secs)
            .ok_or_else(|| "`time` is too far in the future".to_owned())?,
        Some(TimeField::Text(text)) => parse_time(text.trim()).ok_or_else(|| {
            "`time` must be RFC 3339 with `Z` or an offset (2025-01-31T09:30:00+01:00) or Unix seconds"
                .to_owned()
        })?,
    };
    let forward_to = field("forward_to", body.forward_to, MAX_URI)?;
    Ok(NewCall {
        since,
        caller: Pii::new(field("caller", body.caller, MAX_FIELD)?),
        called: field("called", body.called, MAX_FIELD)?,
        code: Pii::new(field("code", body.code, MAX_FIELD)?),
        forward_to: (!forward_to.is_empty()).then_some(forward_to),
    })
}

/// Unix seconds, or RFC 3339 with `Z` or a `±HH:MM` offset.
fn parse_time(text: &str) -> Option<SystemTime> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok().and_then(crate::time::from_unix_seconds);
    }
    if text.ends_with(['Z', 'z']) {
        return crate::time::parse_rfc3339_utc(&text[..text.len() - 1]);
    }
    // `…±HH:MM`: the offset's sign sits 6 bytes before the end.
    let at = text.len().checked_sub(6)?;
    let (local, offset) = (text.get(..at)?, text.get(at..)?);
    let sign = match offset.as_bytes()[0] {
        b'+' => 1i64,
        b'-' => -1,
        _ => return None,
    };
    let (hours, minutes) = offset[1..].split_once(':')?;
    let (hours, minutes): (u64, u64) = (hours.parse().ok()?, minutes.parse().ok()?);
    if hours > 23 || minutes > 59 || !local.contains(['T', 't', ' ']) {
        return None;
    }
    let local = crate::time::parse_rfc3339_utc(local)?;
    let offset = Duration::from_secs(hours * 3600 + minutes * 60);
    if sign > 0 {
        local.checked_sub(offset)
    } else {
        local.checked_add(offset)
    }
}

fn parse_id(raw: &str) -> Result<CallId, ApiError> {
    raw.parse().map(CallId).map_err(|_| ApiError::CallNotFound)
}

async fn call_events(
    State(calls): State<Arc<ExchangeCalls>>,
    client: ClientAddr,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let (tenant, _) = authenticate(&calls, &headers, client)?;
    let id = parse_id(&id)?;
    let events = calls.events(&tenant.id, id).ok_or(ApiError::CallNotFound)?;
    let follow = Follow {
        events,
        sent: 0,
        pending: Default::default(),
        started: false,
        done: false,
    };
    let stream = futures_util::stream::unfold(follow, |mut f| async move {
        let event = f.next().await?;
        Some((Ok(event), f))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

async fn call_ended(
    State(calls): State<Arc<ExchangeCalls>>,
    client: ClientAddr,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let (tenant, key_name) = authenticate(&calls, &headers, client)?;
    let id = parse_id(&id)?;
    calls
        .end(&tenant.id, id)
        .await
        .ok_or(ApiError::CallNotFound)?;
    tracing::info!(call = %id, key = key_name, "the exchange ended its call");
    Ok(StatusCode::NO_CONTENT)
}

/// One exchange's view of one call's events: everything so far, then each new one, until `ended`.
struct Follow {
    events: watch::Receiver<Vec<ExchangeEvent>>,
    /// How many of the call's events this stream has taken.
    sent: usize,
    pending: std::collections::VecDeque<ExchangeEvent>,
    started: bool,
    done: bool,
}

impl Follow {
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                self.done |= matches!(event, ExchangeEvent::Ended { .. });
                return Some(sse(&event));
            }
            if self.done {
                return None;
            }
            // The first turn takes the history; later ones wait for news (or the task's end).
            let gone = self.started && self.events.changed().await.is_err();
            self.started = true;
            let log = self.events.borrow_and_update();
            self.pending.extend(log.iter().skip(self.sent).cloned());
            self.sent = log.len();
            drop(log);
            if gone && self.pending.is_empty() {
                return None;
            }
        }
    }
}

/// The server-sent event for `event`: named as its `event` field, its JSON as data.
fn sse(event: &ExchangeEvent) -> Event {
    let name = match event {
        ExchangeEvent::Waiting { .. } => "waiting",
        ExchangeEvent::Answered { .. } => "answered",
        ExchangeEvent::Hangup => "hangup",
        ExchangeEvent::Ended { .. } => "ended",
    };
    Event::default()
        .event(name)
        .data(serde_json::to_string(event).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn time_is_unix_seconds_or_rfc3339_with_zone() {
        // 2025-01-31T08:30:00Z
        let t = at(1_738_312_200);
        assert_eq!(parse_time("1738312200"), Some(t));
        assert_eq!(parse_time("2025-01-31T08:30:00Z"), Some(t));
        assert_eq!(parse_time("2025-01-31T09:30:00+01:00"), Some(t));
        assert_eq!(parse_time("2025-01-31T07:30:00-01:00"), Some(t));
        assert_eq!(
            parse_time("2025-01-31T08:30:00.250Z"),
            Some(t + Duration::from_millis(250))
        );
        for bad in [
            "",
            "2025-01-31T08:30:00",
            "2025-01-31",
            "yesterday",
            "2025-01-31T09:30:00+1:00",
            "2025-01-31T09:30:00+24:00",
            "-5",
        ] {
            assert_eq!(parse_time(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_body_becomes_a_call_with_defaults_and_limits() {
        let now = at(1000);
        let body = |json: serde_json::Value| -> Result<NewCall, String> {
            new_call_of(
                serde_json::from_value(json).map_err(|e| e.to_string())?,
                now,
            )
        };
        let call = body(serde_json::json!({})).unwrap();
        assert_eq!(call.since, now);
        assert!(call.caller.expose().is_empty() && call.code.expose().is_empty());
        assert_eq!(call.forward_to, None);
        let call = body(serde_json::json!({
            "time": 5, "caller": " +31612345678 ", "called": "+31263770000",
            "code": "12345678", "forward_to": "+31263770001"
        }))
        .unwrap();
        assert_eq!(call.since, at(5));
        assert_eq!(call.caller.expose(), "+31612345678");
        assert_eq!(call.forward_to.as_deref(), Some("+31263770001"));
        assert!(body(serde_json::json!({"code": "1".repeat(129)})).is_err());
        assert!(body(serde_json::json!({"caller": "a\nb"})).is_err());
        assert!(body(serde_json::json!({"time": "soon"})).is_err());
        assert!(
            body(serde_json::json!({"code": 12345678})).is_err(),
            "a number would lose leading zeros"
        );
        assert!(
            body(serde_json::json!({"digits": "1"})).is_err(),
            "unknown field"
        );
    }
}
