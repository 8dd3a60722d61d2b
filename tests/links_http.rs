//! The public API's protections and error shapes, driven with `Router::oneshot`: per-client rate
//! limiting, CORS only for the tenant's website origins, body limits, and JSON errors for unknown
//! tenants, bad JSON and an unreachable IRMA server.

use crate::links_common;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use serde_json::Value;
use tokio::net::TcpListener;
use tower::ServiceExt;
use veilig_bellen::http::{public_router, PublicState, RateLimit};
use veilig_bellen::irma::simulator::{simulator_router, Simulator, SimulatorConfig};
use veilig_bellen::irma::{IrmaClient, IrmaServerConfig};
use veilig_bellen::links::{LinkConfig, LinkService};
use veilig_bellen::store::{AttributeKey, MemoryStore};
use veilig_bellen::tenant::{Tenant, TenantId, Tenants};

use links_common::SITE;

/// Start only the IRMA simulator on loopback; the public router is driven with `oneshot`.
async fn simulator() -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/irma-sim", listener.local_addr().unwrap());
    let router = Router::new().nest(
        "/irma-sim",
        simulator_router(Simulator::new(SimulatorConfig::new(&base))),
    );
    (
        base,
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() }),
    )
}

fn router(irma_url: &str, tenants: Vec<Tenant>, limit: RateLimit) -> Router {
    let mut config = IrmaServerConfig::new(irma_url);
    config.retries = 0;
    config.request_timeout = std::time::Duration::from_secs(2);
    let links = LinkService::new(
        Arc::new(MemoryStore::new()),
        IrmaClient::new(config).unwrap(),
        Tenants::new(tenants),
        AttributeKey::generate(),
        LinkConfig::default(),
    );
    public_router(PublicState::new(links, limit))
}

fn tenant() -> Tenant {
    links_common::demo_tenant("https://other.demodam.example")
}

async fn send(
    router: &Router,
    from: &str,
    request: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let addr: SocketAddr = format!("{from}:40000").parse().unwrap();
    let response = router
        .clone()
        .layer(MockConnectInfo(addr))
        .oneshot(request)
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

fn start_request(origin: Option<&str>, body: &str) -> Request<Body> {
    let mut builder =
        Request::post("/api/v1/sessions").header(header::CONTENT_TYPE, "application/json");
    if let Some(origin) = origin {
        builder = builder.header(header::ORIGIN, origin);
    }
    builder.body(Body::from(body.to_owned())).unwrap()
}

fn error_name(body: &str) -> String {
    let v: Value = serde_json::from_str(body).expect("error body is JSON");
    assert!(
        v["message"].as_str().is_some_and(|m| !m.is_empty()),
        "error without message"
    );
    v["error"].as_str().expect("error name").to_owned()
}

#[tokio::test]
async fn a_client_over_its_rate_gets_429_and_others_are_still_served() {
    let limit = RateLimit {
        burst: 3,
        per_second: 0.001,
        max_clients: 100,
    };
    let router = router("http://127.0.0.1:9", vec![tenant()], limit);
    let status_of = || {
        Request::get("/api/v1/sessions/00000000000000000000000000000000/status")
            .body(Body::empty())
            .unwrap()
    };
    for _ in 0..3 {
        let (status, _, body) = send(&router, "192.0.2.10", status_of()).await;
        assert_eq!(
            (status, error_name(&body).as_str()),
            (StatusCode::NOT_FOUND, "unknown_session")
        );
    }
    let (status, headers, body) = send(&router, "192.0.2.10", status_of()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(error_name(&body), "rate_limited");
    let retry: u64 = headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    let (status, _, _) = send(&router, "192.0.2.11", status_of()).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another client is not limited"
    );
    // Starting sessions counts against the same bucket.
    let (status, _, _) = send(&router, "192.0.2.10", start_request(None, "{}")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn cors_answers_only_the_tenants_website_origins() {
    let (irma, _sim) = simulator().await;
    let router = router(&irma, vec![tenant()], RateLimit::default());
    let preflight = |origin: &str| {
        Request::builder()
            .method(Method::OPTIONS)
            .uri("/api/v1/sessions")
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "content-type")
            .body(Body::empty())
            .unwrap()
    };
    let (_, headers, _) = send(&router, "192.0.2.20", preflight(SITE)).await;
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], SITE);
    let (_, headers, _) = send(&router, "192.0.2.20", preflight("https://evil.example")).await;
    assert!(headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());

    let (status, headers, body) = send(
        &router,
        "192.0.2.20",
        start_request(Some(SITE), r#"{"tenant":"demo"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], SITE);
    let (status, headers, body) = send(
        &router,
        "192.0.2.20",
        start_request(Some("https://evil.example"), r#"{"tenant":"demo"}"#),
    )
    .await;
    assert_eq!(
        (status, error_name(&body).as_str()),
        (StatusCode::FORBIDDEN, "forbidden_origin")
    );
    assert!(headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
}

#[tokio::test]
async fn bad_requests_get_json_errors() {
    let (irma, _sim) = simulator().await;
    let mut other = tenant();
    other.id = TenantId("nijmegen".into());
    let one = router(&irma, vec![tenant()], RateLimit::default());
    let two = router(&irma, vec![tenant(), other], RateLimit::default());
    let cases: Vec<(&Router, Request<Body>, StatusCode, &str)> = vec![
        (
            &one,
            start_request(None, "{not json"),
            StatusCode::BAD_REQUEST,
            "bad_json",
        ),
        (
            &one,
            start_request(None, r#"{"tenant":"demo","code":"1"}"#),
            StatusCode::BAD_REQUEST,
            "bad_json",
        ),
        (
            &one,
            start_request(None, r#"{"tenant":"atlantis"}"#),
            StatusCode::NOT_FOUND,
            "unknown_tenant",
        ),
        (
            &one,
            start_request(None, &format!(r#"{{"tenant":"{}"}}"#, "x".repeat(4096))),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            &two,
            start_request(None, "{}"),
            StatusCode::BAD_REQUEST,
            "tenant_required",
        ),
        (
            &one,
            Request::get("/api/v1/sessions/zz/status")
                .body(Body::empty())
                .unwrap(),
            StatusCode::NOT_FOUND,
            "unknown_session",
        ),
        (
            &one,
            Request::get("/api/v1/sessions/00000000000000000000000000000000/status?wait=soon")
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "bad_query",
        ),
    ];
    for (router, request, want_status, want_error) in cases {
        let (status, headers, body) = send(router, "192.0.2.30", request).await;
        assert_eq!(
            (status, error_name(&body).as_str()),
            (want_status, want_error)
        );
        assert!(headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/json"));
    }
    // With one tenant the tenant may be left out, even the whole body.
    let (status, _, body) = send(&one, "192.0.2.30", start_request(None, "")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v["sessionPtr"]["u"].is_string() && v["token"].is_string());
}

#[tokio::test]
async fn an_unreachable_irma_server_gives_502() {
    // Port 9 (discard) on loopback: nothing listens, the connection is refused.
    let router = router("http://127.0.0.1:9", vec![tenant()], RateLimit::default());
    let (status, _, body) = send(
        &router,
        "192.0.2.40",
        start_request(Some(SITE), r#"{"tenant":"demo"}"#),
    )
    .await;
    assert_eq!(
        (status, error_name(&body).as_str()),
        (StatusCode::BAD_GATEWAY, "irma_unavailable")
    );
    assert!(
        !body.contains("127.0.0.1"),
        "internal addresses stay out of error bodies"
    );
}

#[tokio::test]
async fn the_widget_script_is_served_from_the_binary() {
    let router = router("http://127.0.0.1:9", vec![tenant()], RateLimit::default());
    let (status, headers, body) = send(
        &router,
        "192.0.2.50",
        Request::get("/widget.js").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    assert_eq!(body, veilig_bellen::http::widget::WIDGET_JS);
    let (status, _, _) = send(
        &router,
        "192.0.2.50",
        Request::get("/button-demo").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the demo page is off unless asked for"
    );
}
