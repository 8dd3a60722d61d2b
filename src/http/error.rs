//! The one error type of the web side: the public API ([`super::sessions`], the rate limit), the
//! agents' API ([`crate::agent_api`]), the portal ([`super::portal`]) and the existing-exchange API
//! ([`crate::exchange`]). Every failure leaves as
//! `{"error":"<name>","message":"<text for people>"}` (a `locked` login also with `retry_after`)
//! with a fitting status, and `Retry-After` or `WWW-Authenticate` where the client needs them.
//!
//! Logging happens here, once per response: every 5xx at WARN (a service we depend on, or our
//! capacity) or ERROR (our own failure), with its cause; a refused request (4xx) only at DEBUG.
//! Log lines carry the error's name, our own text and the cause's, never a request's values
//! (attributes, numbers, codes, keys, passwords, tokens); internal details never reach the client.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::http::portal::AuthError;
use crate::links::LinkError;
use crate::store::StoreError;

/// The cause of an internal error: logged, never sent.
pub type InternalCause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What a 401 asks for. The message names it; a bearer credential also gets
/// `WWW-Authenticate: Bearer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// The agents' API: the API token or a portal session.
    TokenOrSession,
    /// The portal's own routes: a logged-in session.
    Session,
    /// The exchange API: one of the tenant's exchange keys.
    ExchangeKey,
}

impl Credential {
    fn unauthorized(self) -> &'static str {
        match self {
            Credential::TokenOrSession => "a valid bearer token or portal session is required",
            Credential::Session => "log in first",
            Credential::ExchangeKey => {
                "a valid exchange key is required (Authorization: Bearer <key>)"
            }
        }
    }
}

/// Every failure of an HTTP request we answer; see the module docs.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    // 400
    #[error("this install serves several municipalities; say which one")]
    TenantRequired,
    #[error("request body is not the expected JSON")]
    BadJson,
    #[error("query string not understood")]
    BadQuery,
    /// What was wrong (for the client's developer, never a value of the request), if we say.
    #[error("bad request{}", detail(.0))]
    BadRequest(Option<String>),

    // 401
    #[error("{}", .0.unauthorized())]
    Unauthorized(Credential),
    #[error("wrong username or password")]
    InvalidCredentials,

    // 403
    /// A session cookie without its `X-CSRF-Token` on a state-changing request of the agents' API.
    #[error("this request needs the session's X-CSRF-Token header")]
    CsrfRequired,
    /// The same at the portal's own routes, which also refuse another site's `Origin`.
    #[error("this request needs the session's X-CSRF-Token, from the same site")]
    CsrfOrSiteRefused,
    #[error("only supervisors may read the audit log")]
    NotSupervisor,
    #[error("this website may not start sessions for this municipality")]
    ForbiddenOrigin,
    #[error("the called number belongs to another municipality")]
    CalledNumberOfOtherTenant,
    /// A browser call to a municipality that takes none (`webrtc = false`).
    #[error("this municipality takes no calls from the browser")]
    WebrtcOff,

    // 404
    #[error("unknown tenant")]
    UnknownTenant,
    #[error("unknown session")]
    UnknownSession,
    #[error("no such call")]
    CallNotFound,
    #[error("no such agent for this call's municipality")]
    UnknownAgent,
    /// An agent's extra request the call's municipality does not have ([`crate::extra_requests`]).
    #[error("no such extra request for this call's municipality")]
    UnknownRequest,

    // 409
    #[error("the call was already taken by an agent")]
    AlreadyTaken,
    #[error("the call has ended")]
    Ended,
    #[error("the call is still reading the caller's code")]
    NotWaiting,
    #[error("the agent has no registered softphone")]
    AgentUnavailable,
    /// An extra request on a call no disclosure verified: there is no citizen's page to ask.
    #[error("the call is not verified: there is no caller's page to ask")]
    NotVerified,
    /// A call has had as many extra requests as it may.
    #[error("this call has had as many extra requests as a call may have")]
    RequestLimit,
    /// A browser call from a session whose disclosure is not done (yet).
    #[error("the session has no disclosure to call with")]
    NotDisclosed,
    /// A session calls once.
    #[error("this session has called already")]
    AlreadyCalled,

    // 410
    #[error("the session has expired")]
    SessionExpired,

    // 415
    /// WHIP (RFC 9725 §4.2): the offer is `application/sdp`.
    #[error("send the SDP offer as application/sdp")]
    NotSdp,

    // 413
    #[error("request body too large")]
    TooLarge,

    // 429
    /// The public API's per-client token bucket is empty.
    #[error("too many requests; try again shortly")]
    RateLimited { retry_after: Duration },
    /// The exchange API: this address used up its failed key attempts.
    #[error("too many requests with a wrong key from this address; try again later")]
    TooManyWrongKeys { retry_after: Duration },
    /// The portal: too many failed logins for this username.
    #[error("too many failed logins; try again later")]
    Locked { retry_after_secs: u64 },

    // 5xx
    #[error("the Yivi server is not available")]
    IrmaUnavailable(#[source] crate::irma::IrmaError),
    /// The exchange API: as many exchange calls are live as the install takes.
    #[error("too many live calls; try again later")]
    AtCapacity { retry_after: Duration },
    #[error("internal error")]
    Internal(#[source] InternalCause),
}

/// `": {detail}"`, or nothing.
fn detail(detail: &Option<String>) -> String {
    detail
        .as_ref()
        .map(|d| format!(": {d}"))
        .unwrap_or_default()
}

impl ApiError {
    /// An internal error with `cause` (logged, never sent).
    pub fn internal(cause: impl Into<InternalCause>) -> Self {
        ApiError::Internal(cause.into())
    }

    /// A refusal of the agents' API's check (bearer token or portal session).
    pub fn agent_auth(e: AuthError) -> Self {
        match e {
            AuthError::Unauthorized => ApiError::Unauthorized(Credential::TokenOrSession),
            AuthError::Forbidden => ApiError::CsrfRequired,
        }
    }

    /// A refusal of the portal's own check (its session cookie; the bearer token where it counts).
    pub fn portal_auth(e: AuthError) -> Self {
        match e {
            AuthError::Unauthorized => ApiError::Unauthorized(Credential::Session),
            AuthError::Forbidden => ApiError::CsrfOrSiteRefused,
        }
    }

    /// Stable machine-readable name, the `error` field.
    pub fn name(&self) -> &'static str {
        match self {
            ApiError::TenantRequired => "tenant_required",
            ApiError::BadJson => "bad_json",
            ApiError::BadQuery => "bad_query",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::InvalidCredentials => "invalid_credentials",
            ApiError::CsrfRequired | ApiError::CsrfOrSiteRefused => "forbidden",
            ApiError::NotSupervisor => "not_supervisor",
            ApiError::ForbiddenOrigin => "forbidden_origin",
            ApiError::CalledNumberOfOtherTenant => "called_number_of_other_tenant",
            ApiError::WebrtcOff => "webrtc_off",
            ApiError::NotDisclosed => "not_disclosed",
            ApiError::AlreadyCalled => "already_called",
            ApiError::SessionExpired => "session_expired",
            ApiError::NotSdp => "unsupported_media_type",
            ApiError::UnknownTenant => "unknown_tenant",
            ApiError::UnknownSession => "unknown_session",
            ApiError::CallNotFound => "call_not_found",
            ApiError::UnknownAgent => "unknown_agent",
            ApiError::UnknownRequest => "unknown_request",
            ApiError::NotVerified => "call_not_verified",
            ApiError::RequestLimit => "request_limit",
            ApiError::AlreadyTaken => "already_taken",
            ApiError::Ended => "call_ended",
            ApiError::NotWaiting => "not_waiting",
            ApiError::AgentUnavailable => "agent_unavailable",
            ApiError::TooLarge => "payload_too_large",
            ApiError::RateLimited { .. } | ApiError::TooManyWrongKeys { .. } => "rate_limited",
            ApiError::Locked { .. } => "locked",
            ApiError::IrmaUnavailable(_) => "irma_unavailable",
            ApiError::AtCapacity { .. } => "at_capacity",
            ApiError::Internal(_) => "internal",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::TenantRequired
            | ApiError::BadJson
            | ApiError::BadQuery
            | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) | ApiError::InvalidCredentials => StatusCode::UNAUTHORIZED,
            ApiError::CsrfRequired
            | ApiError::CsrfOrSiteRefused
            | ApiError::NotSupervisor
            | ApiError::ForbiddenOrigin
            | ApiError::CalledNumberOfOtherTenant
            | ApiError::WebrtcOff => StatusCode::FORBIDDEN,
            ApiError::UnknownTenant
            | ApiError::UnknownSession
            | ApiError::CallNotFound
            | ApiError::UnknownAgent
            | ApiError::UnknownRequest => StatusCode::NOT_FOUND,
            ApiError::AlreadyTaken
            | ApiError::Ended
            | ApiError::NotWaiting
            | ApiError::AgentUnavailable
            | ApiError::NotVerified
            | ApiError::RequestLimit
            | ApiError::NotDisclosed
            | ApiError::AlreadyCalled => StatusCode::CONFLICT,
            ApiError::SessionExpired => StatusCode::GONE,
            ApiError::NotSdp => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RateLimited { .. }
            | ApiError::TooManyWrongKeys { .. }
            | ApiError::Locked { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::IrmaUnavailable(_) => StatusCode::BAD_GATEWAY,
            ApiError::AtCapacity { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `Retry-After` header's seconds, when the client may try again later.
    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            ApiError::RateLimited { retry_after }
            | ApiError::TooManyWrongKeys { retry_after }
            | ApiError::AtCapacity { retry_after } => Some(retry_after.as_secs().max(1)),
            ApiError::Locked { retry_after_secs } => Some(*retry_after_secs),
            _ => None,
        }
    }

    /// One log line for this response: WARN or ERROR with the cause for a 5xx, DEBUG for a 4xx.
    fn log(&self) {
        let status = self.status().as_u16();
        let name = self.name();
        if !self.status().is_server_error() {
            tracing::debug!(status, error = name, "HTTP request refused");
            return;
        }
        let cause = std::error::Error::source(self)
            .map(|c| format!(": {c}"))
            .unwrap_or_default();
        match self {
            ApiError::Internal(_) => tracing::error!(status, error = name, "HTTP {self}{cause}"),
            _ => tracing::warn!(status, error = name, "HTTP {self}{cause}"),
        }
    }
}

impl From<LinkError> for ApiError {
    fn from(e: LinkError) -> Self {
        match e {
            LinkError::Irma(e) => ApiError::IrmaUnavailable(e),
            LinkError::Store(e) => ApiError::from(e),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::internal(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log();
        let mut body = serde_json::json!({ "error": self.name(), "message": self.to_string() });
        if let ApiError::Locked { retry_after_secs } = self {
            body["retry_after"] = retry_after_secs.into();
        }
        let mut response = (self.status(), Json(body)).into_response();
        let headers = response.headers_mut();
        if let Some(secs) = self.retry_after_secs() {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                headers.insert(header::RETRY_AFTER, v);
            }
        }
        if let ApiError::Unauthorized(Credential::TokenOrSession | Credential::ExchangeKey) = self {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn internal_details_stay_out_of_the_body() {
        let e = ApiError::from(StoreError::Backend("disk /var/lib/secret failed".into()));
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(e.to_string(), "internal error");
        let e = ApiError::IrmaUnavailable(crate::irma::IrmaError::Unreachable(
            "10.0.0.1:8088 refused".into(),
        ));
        assert_eq!(
            (e.status(), e.name()),
            (StatusCode::BAD_GATEWAY, "irma_unavailable")
        );
        assert!(!e.to_string().contains("10.0.0.1"));
    }

    /// The status, headers and JSON body `e` answers with.
    async fn answer(e: ApiError) -> (u16, axum::http::HeaderMap, serde_json::Value) {
        let response = e.into_response();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, headers, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn each_api_keeps_its_words_and_headers() {
        let (s, h, b) = answer(ApiError::Unauthorized(Credential::ExchangeKey)).await;
        assert_eq!((s, b["error"].as_str()), (401, Some("unauthorized")));
        assert_eq!(
            b["message"],
            "a valid exchange key is required (Authorization: Bearer <key>)"
        );
        assert_eq!(h[header::WWW_AUTHENTICATE], "Bearer");
        let (s, h, b) = answer(ApiError::portal_auth(AuthError::Unauthorized)).await;
        assert_eq!((s, b["message"].as_str()), (401, Some("log in first")));
        assert!(!h.contains_key(header::WWW_AUTHENTICATE));
        let (s, _, b) = answer(ApiError::agent_auth(AuthError::Forbidden)).await;
        assert_eq!((s, b["error"].as_str()), (403, Some("forbidden")));
        let (_, _, b) = answer(ApiError::BadRequest(None)).await;
        assert_eq!(b["message"], "bad request");
        let (_, _, b) = answer(ApiError::BadRequest(Some("`agent` is required".into()))).await;
        assert_eq!(b["message"], "bad request: `agent` is required");
        let (s, h, b) = answer(ApiError::Locked {
            retry_after_secs: 42,
        })
        .await;
        assert_eq!((s, b["error"].as_str()), (429, Some("locked")));
        assert_eq!(b["retry_after"].as_u64(), Some(42));
        assert_eq!(h[header::RETRY_AFTER], "42");
        let (s, h, b) = answer(ApiError::TooManyWrongKeys {
            retry_after: Duration::from_secs(10),
        })
        .await;
        assert_eq!((s, b["error"].as_str()), (429, Some("rate_limited")));
        assert_eq!(h[header::RETRY_AFTER], "10");
        assert!(b.get("retry_after").is_none());
        let (s, h, _) = answer(ApiError::RateLimited {
            retry_after: Duration::from_millis(200),
        })
        .await;
        assert_eq!((s, h[header::RETRY_AFTER].to_str().ok()), (429, Some("1")));
    }

    /// What `f` logs at WARN and above, as text.
    fn warnings_of(f: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Sink(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Sink {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                crate::sync::lock(&self.0).extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let bytes = crate::sync::lock(&sink.0).clone();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[test]
    fn every_5xx_is_logged_and_a_4xx_is_not() {
        let logs = warnings_of(|| {
            let _ = ApiError::from(StoreError::Backend("disk full".into())).into_response();
        });
        assert!(logs.contains("ERROR"), "{logs}");
        assert!(
            logs.contains("internal error: store backend: disk full"),
            "{logs}"
        );
        let logs = warnings_of(|| {
            let _ = ApiError::AtCapacity {
                retry_after: Duration::from_secs(5),
            }
            .into_response();
        });
        assert!(
            logs.contains("WARN") && logs.contains("status=503"),
            "{logs}"
        );
        let logs = warnings_of(|| {
            let _ = ApiError::IrmaUnavailable(crate::irma::IrmaError::Timeout).into_response();
        });
        assert!(
            logs.contains("WARN") && logs.contains("irma_unavailable"),
            "{logs}"
        );
        let logs = warnings_of(|| {
            for e in [
                ApiError::CallNotFound,
                ApiError::InvalidCredentials,
                ApiError::Unauthorized(Credential::ExchangeKey),
                ApiError::BadRequest(Some("`time` is too far in the future".into())),
                ApiError::Locked {
                    retry_after_secs: 3,
                },
            ] {
                let _ = e.into_response();
            }
        });
        assert_eq!(logs, "", "refusals stay below WARN");
    }
}
