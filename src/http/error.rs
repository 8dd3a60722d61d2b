//! The one error type of the public HTTP API. Every failure leaves as
//! `{"error":"<name>","message":"<text for people>"}` with a fitting status; internal details are
//! logged here and never sent to the client.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::links::LinkError;
use crate::store::StoreError;

/// Public API failures.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("unknown tenant")]
    UnknownTenant,
    #[error("this install serves several municipalities; say which one")]
    TenantRequired,
    #[error("request body is not the expected JSON")]
    BadJson,
    #[error("query string not understood")]
    BadQuery,
    #[error("request body too large")]
    TooLarge,
    #[error("unknown session")]
    UnknownSession,
    #[error("this website may not start sessions for this municipality")]
    ForbiddenOrigin,
    #[error("too many requests; try again shortly")]
    RateLimited { retry_after: Duration },
    #[error("the Yivi server is not available")]
    IrmaUnavailable(#[source] crate::irma::IrmaError),
    #[error("internal error")]
    Internal(#[source] StoreError),
}

impl ApiError {
    /// Stable machine-readable name, the `error` field.
    pub fn name(&self) -> &'static str {
        match self {
            ApiError::UnknownTenant => "unknown_tenant",
            ApiError::TenantRequired => "tenant_required",
            ApiError::BadJson => "bad_json",
            ApiError::BadQuery => "bad_query",
            ApiError::TooLarge => "payload_too_large",
            ApiError::UnknownSession => "unknown_session",
            ApiError::ForbiddenOrigin => "forbidden_origin",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::IrmaUnavailable(_) => "irma_unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::UnknownTenant | ApiError::UnknownSession => StatusCode::NOT_FOUND,
            ApiError::TenantRequired | ApiError::BadJson | ApiError::BadQuery => {
                StatusCode::BAD_REQUEST
            }
            ApiError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::ForbiddenOrigin => StatusCode::FORBIDDEN,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::IrmaUnavailable(_) => StatusCode::BAD_GATEWAY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<LinkError> for ApiError {
    fn from(e: LinkError) -> Self {
        match e {
            LinkError::Irma(e) => ApiError::IrmaUnavailable(e),
            LinkError::Store(e) => ApiError::Internal(e),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Internal(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::IrmaUnavailable(e) => {
                tracing::warn!("session start failed at the IRMA server: {e}")
            }
            ApiError::Internal(e) => tracing::error!("public API internal error: {e}"),
            _ => tracing::debug!("public API refused a request: {}", self.name()),
        }
        let body = serde_json::json!({ "error": self.name(), "message": self.to_string() });
        let mut response = (self.status(), Json(body)).into_response();
        if let ApiError::RateLimited { retry_after } = self {
            let secs = retry_after.as_secs().max(1);
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_details_stay_out_of_the_body() {
        let e = ApiError::Internal(StoreError::Backend("disk /var/lib/secret failed".into()));
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
}
