//! The public HTTP side: what municipality websites and citizens' browsers talk to.
//!
//! | route | what |
//! | --- | --- |
//! | `POST /api/v1/sessions` | start a Yivi disclosure ([`sessions`]) |
//! | `GET /api/v1/sessions/{token}/status` | the website's view of it |
//! | `POST`, `DELETE /api/v1/sessions/{token}/call` | a call from the browser (WHIP, [`whip`]) |
//! | `GET /widget.js` | the button script ([`widget`]) |
//! | `GET /button-demo` | a page with the button (only when [`PublicState::demo_page`]) |
//! | `GET /` | the demo's walk-through page (only when [`PublicState::demo_page`]) |
//!
//! Protections: a per-client token bucket on `/api/` ([`rate_limit`]; serve with
//! `into_make_service_with_connect_info::<SocketAddr>()` and [`client_addr::identify`] so clients
//! are told apart, also behind a reverse proxy), CORS only for
//! the tenants' configured website origins (and a browser's `Origin` must belong to the tenant the
//! request is about), request bodies of at most 1 KiB (an SDP offer 16 KiB), and every error as one JSON shape
//! ([`error::ApiError`]). No response ever contains a link code or an IRMA requestor token.

pub mod client_addr;
pub mod error;
pub mod html;
pub mod login;
pub mod portal;
pub mod rate_limit;
pub mod sessions;
pub mod tls;
#[cfg(feature = "demo")]
pub mod walkthrough;
pub mod whip;
pub mod widget;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue, Method};
use axum::routing::{get, post};
use axum::Router;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::links::LinkService;
pub use client_addr::{ClientAddr, TrustedProxies};
pub use error::ApiError;
pub use rate_limit::{RateLimit, RateLimiter};

/// Largest request body accepted by the public API.
pub const MAX_BODY: usize = 1024;

/// What the public handlers share.
#[derive(Clone)]
pub struct PublicState {
    pub links: LinkService,
    pub limiter: Arc<RateLimiter>,
    /// Serve `GET /button-demo` and the walk-through at `GET /`.
    pub demo_page: bool,
    /// Our SIP UDP address, for the walk-through's "call it yourself" line.
    pub sip_address: Option<std::net::SocketAddr>,
    /// Calls from citizens' browsers (`POST /api/v1/sessions/{token}/call`); `None` answers 503.
    pub browser_calls: Option<crate::call::browser::BrowserCalls>,
    /// Phone callers' pages following their status for the agent's extra requests
    /// (`?requests=`, [`crate::extra_requests`]); share it with [`crate::extra_requests::ExtraRequests`].
    pub pages: crate::extra_requests::Pages,
}

impl PublicState {
    pub fn new(links: LinkService, limit: RateLimit) -> PublicState {
        PublicState {
            links,
            limiter: Arc::new(RateLimiter::new(limit)),
            demo_page: false,
            sip_address: None,
            browser_calls: None,
            pages: Default::default(),
        }
    }
}

/// The public router. Compose it into the server with `Router::merge`.
pub fn public_router(state: PublicState) -> Router {
    let origins: Vec<HeaderValue> = state
        .links
        .tenants()
        .iter()
        .flat_map(|t| t.website_origins.iter())
        .filter(|o| o.as_str() != "*")
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([header::CONTENT_TYPE])
        .expose_headers([header::LOCATION])
        .max_age(Duration::from_secs(600));
    let limit = axum::middleware::from_fn_with_state(state.limiter.clone(), rate_limit::limit);

    let api = Router::new()
        .route("/api/v1/sessions", post(sessions::start))
        .route("/api/v1/sessions/{token}/status", get(sessions::status))
        .layer(limit.clone())
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(cors.clone());
    let whip = Router::new()
        .route(
            "/api/v1/sessions/{token}/call",
            post(whip::call).delete(whip::hang_up),
        )
        .layer(limit)
        .layer(DefaultBodyLimit::max(whip::MAX_OFFER))
        .layer(cors);

    #[cfg_attr(not(feature = "demo"), allow(unused_mut))]
    let mut router = Router::new()
        .merge(api)
        .merge(whip)
        .route("/widget.js", get(widget::widget_js));
    #[cfg(feature = "demo")]
    if state.demo_page {
        router = router
            .route("/button-demo", get(widget::button_demo))
            .route("/", get(walkthrough::page));
    }
    router.with_state(state)
}
