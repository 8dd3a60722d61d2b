//! The IRMA requestor client against mock IRMA servers on loopback that answer as irmago does
//! (fixtures/irma/): every proofStatus, rawvalue null, a non-allow-listed attribute, sessions not
//! DONE, SESSION_UNKNOWN, a 500 then success, a server that hangs, statusevents unavailable, token
//! and signed-JWT requestor authentication, TLS and connection failures.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Path;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use tokio::time::Instant;
use veilig_bellen::irma::{
    accept_result, IrmaAuth, IrmaClient, IrmaError, IrmaServerConfig, RequestorToken, SessionStatus,
};
use veilig_bellen::tenant::Tenant;

const RETURN_URL: &str = "tel:+31850000000,12345678";

fn fixture(name: &str) -> String {
    let path = format!("{}/fixtures/irma/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn json(status: StatusCode, body: String) -> axum::response::Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

fn client(url: &str, auth: IrmaAuth, timeout: Duration, retries: u32) -> IrmaClient {
    IrmaClient::new(IrmaServerConfig {
        url: url.to_owned(),
        auth,
        request_timeout: timeout,
        retries,
        result_jwt: None,
    })
    .unwrap()
}

fn plain(url: &str) -> IrmaClient {
    client(url, IrmaAuth::None, Duration::from_secs(5), 2)
}

fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

#[tokio::test]
async fn every_result_fixture_maps_to_the_right_verdict() {
    // GET /session/{name}/result serves fixtures/irma/result-{name}.json; other names are unknown.
    let router = Router::new().route(
        "/session/{name}/result",
        get(|Path(name): Path<String>| async move {
            let path = format!(
                "{}/fixtures/irma/result-{name}.json",
                env!("CARGO_MANIFEST_DIR")
            );
            match std::fs::read_to_string(path) {
                Ok(body) => json(StatusCode::OK, body),
                Err(_) => json(
                    StatusCode::BAD_REQUEST,
                    fixture("error-session-unknown.json"),
                ),
            }
        }),
    );
    let c = plain(&serve(router).await);
    let tenant = Tenant::demo();
    let verdict = |name: &'static str| {
        let c = c.clone();
        let tenant = tenant.clone();
        async move {
            let result = c.result(&RequestorToken::new(name)).await?;
            accept_result(&tenant, &result)
        }
    };

    let valid = verdict("valid").await.unwrap();
    assert_eq!(valid.len(), 2);
    assert_eq!(valid[0].label_en, "Name");
    assert_eq!(valid[0].value.expose().as_deref(), Some("Jan de Vries"));
    assert_eq!(valid[1].value.expose().as_deref(), Some("999993653"));

    let null = verdict("rawvalue-null").await.unwrap();
    assert_eq!(null[0].value.expose(), &None, "rawvalue null stays None");
    assert!(
        !format!("{null:?}").contains("999993653"),
        "Debug must not show values"
    );

    assert!(matches!(verdict("invalid").await, Err(IrmaError::Invalid)));
    assert!(matches!(
        verdict("invalid-timestamp").await,
        Err(IrmaError::Invalid)
    ));
    assert!(matches!(verdict("expired").await, Err(IrmaError::Expired)));
    assert!(matches!(
        verdict("unmatched-request").await,
        Err(IrmaError::UnmatchedRequest)
    ));
    assert!(matches!(
        verdict("missing-attributes").await,
        Err(IrmaError::MissingAttributes)
    ));
    match verdict("not-allowlisted").await {
        Err(IrmaError::NotAllowed { attribute }) => assert_eq!(attribute, "pbdf.pbdf.email.email"),
        other => panic!("not-allowlisted gave {other:?}"),
    }
    assert!(matches!(
        verdict("connected").await,
        Err(IrmaError::NotDone(SessionStatus::Connected))
    ));
    assert!(matches!(
        verdict("cancelled").await,
        Err(IrmaError::NotDone(SessionStatus::Cancelled))
    ));
    assert!(matches!(
        verdict("no-such-session").await,
        Err(IrmaError::SessionUnknown)
    ));
}

#[tokio::test]
async fn token_auth_sends_the_raw_header_and_never_augments_the_return_url() {
    let seen: Arc<Mutex<Option<(HeaderMap, String)>>> = Arc::default();
    let seen2 = seen.clone();
    let router = Router::new().route(
        "/session",
        post(move |headers: HeaderMap, body: String| async move {
            *seen2.lock().unwrap() = Some((headers, body));
            json(StatusCode::OK, fixture("session-package.json"))
        }),
    );
    let c = client(
        &serve(router).await,
        IrmaAuth::Token("s3cret-token".into()),
        Duration::from_secs(5),
        0,
    );
    let tenant = Tenant::demo();
    let started = c
        .start_disclosure(&tenant.disclosure, RETURN_URL)
        .await
        .unwrap();

    assert_eq!(started.token.expose(), "KzxuWKwL5KGLKr4uerws");
    assert_eq!(started.client_token(), Some("ysDohpoySavbHAUDjmpz"));
    assert_eq!(started.session_ptr["irmaqr"], "disclosing");
    assert_eq!(
        started.frontend_request.as_ref().unwrap()["maxProtocolVersion"],
        "1.1"
    );
    let dbg = format!("{started:?} {:?}", started.token);
    assert!(!dbg.contains("KzxuWKwL5KGLKr4uerws"), "{dbg}");
    assert!(!dbg.contains("qGrMmL8UZwZ88Sq8gobV"), "{dbg}");

    let (headers, body) = seen.lock().unwrap().take().unwrap();
    assert_eq!(
        headers[header::AUTHORIZATION],
        "s3cret-token",
        "raw token, no Bearer"
    );
    assert!(headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let request: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        request["@context"],
        "https://irma.app/ld/request/disclosure/v2"
    );
    assert_eq!(request["clientReturnUrl"], RETURN_URL);
    assert_eq!(
        request["disclose"],
        serde_json::to_value(&tenant.disclosure).unwrap()
    );
    assert!(
        request.get("augmentReturnUrl").is_none(),
        "never augmentReturnUrl: {body}"
    );
    assert!(!body.contains("augment"), "{body}");
}

#[derive(serde::Deserialize)]
struct Claims {
    sub: String,
    iss: String,
    iat: u64,
    sprequest: serde_json::Value,
}

/// Captures a text/plain JWT POSTed to /session and answers with the session package.
async fn jwt_mock() -> (String, Arc<Mutex<Option<(String, String)>>>) {
    let seen: Arc<Mutex<Option<(String, String)>>> = Arc::default();
    let seen2 = seen.clone();
    let router = Router::new().route(
        "/session",
        post(move |headers: HeaderMap, body: String| async move {
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            assert!(
                headers.get(header::AUTHORIZATION).is_none(),
                "JWT requests carry no Authorization"
            );
            *seen2.lock().unwrap() = Some((ct, body));
            json(StatusCode::OK, fixture("session-package.json"))
        }),
    );
    (serve(router).await, seen)
}

fn check_claims(jwt: &str, key: &DecodingKey, alg: Algorithm) {
    let mut validation = Validation::new(alg);
    validation.required_spec_claims = HashSet::new();
    validation.validate_exp = false;
    let claims = jsonwebtoken::decode::<Claims>(jwt, key, &validation)
        .expect("signature verifies")
        .claims;
    assert_eq!(claims.sub, "verification_request");
    assert_eq!(claims.iss, "veilig-bellen-test");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        claims.iat.abs_diff(now) < 60,
        "iat {} vs now {now}",
        claims.iat
    );
    let request = &claims.sprequest["request"];
    assert_eq!(
        request["@context"],
        "https://irma.app/ld/request/disclosure/v2"
    );
    assert_eq!(request["clientReturnUrl"], RETURN_URL);
    assert_eq!(
        request["disclose"],
        serde_json::to_value(&Tenant::demo().disclosure).unwrap()
    );
    assert!(request.get("augmentReturnUrl").is_none());
}

#[tokio::test]
async fn hs256_signed_request_verifies_as_irmago_would() {
    let (url, seen) = jwt_mock().await;
    let key = b"hmac-key-shared-with-the-irma-server".to_vec();
    let auth = IrmaAuth::Hs256 {
        issuer: "veilig-bellen-test".into(),
        key: key.clone(),
    };
    let started = client(&url, auth, Duration::from_secs(5), 0)
        .start_disclosure(&Tenant::demo().disclosure, RETURN_URL)
        .await;
    assert!(started.is_ok(), "{started:?}");
    let (ct, jwt) = seen.lock().unwrap().take().unwrap();
    assert!(ct.starts_with("text/plain"), "{ct}");
    check_claims(
        &jwt,
        &DecodingKey::from_secret(&key).unwrap(),
        Algorithm::HS256,
    );
    // A different key must not verify: the mock really checks the signature.
    let mut v = Validation::new(Algorithm::HS256);
    v.required_spec_claims = HashSet::new();
    v.validate_exp = false;
    assert!(
        jsonwebtoken::decode::<Claims>(&jwt, &DecodingKey::from_secret(b"other").unwrap(), &v)
            .is_err()
    );
}

#[tokio::test]
async fn rs256_signed_request_verifies_as_irmago_would() {
    let (url, seen) = jwt_mock().await;
    let auth = IrmaAuth::Rs256 {
        issuer: "veilig-bellen-test".into(),
        pem: fixture("test-requestor-rs256.key.pem").into_bytes(),
    };
    let started = client(&url, auth, Duration::from_secs(5), 0)
        .start_disclosure(&Tenant::demo().disclosure, RETURN_URL)
        .await;
    assert!(started.is_ok(), "{started:?}");
    let (ct, jwt) = seen.lock().unwrap().take().unwrap();
    assert!(ct.starts_with("text/plain"), "{ct}");
    let public =
        DecodingKey::from_rsa_pem(fixture("test-requestor-rs256.pub.pem").as_bytes()).unwrap();
    check_claims(&jwt, &public, Algorithm::RS256);
}

#[tokio::test]
async fn a_500_is_retried_and_a_4xx_is_not() {
    let hits = counter();
    let h = hits.clone();
    let router = Router::new()
        .route(
            "/session/{t}/status",
            get(move || {
                let h = h.clone();
                async move {
                    if h.fetch_add(1, Ordering::SeqCst) == 0 {
                        json(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            r#"{"status":500,"error":"EXCEPTION","description":"Encountered unexpected problem"}"#.into(),
                        )
                    } else {
                        json(StatusCode::OK, "\"CONNECTED\"".into())
                    }
                }
            }),
        )
        .route(
            "/session/{t}/result",
            get(|| async {
                json(
                    StatusCode::FORBIDDEN,
                    r#"{"status":403,"error":"UNAUTHORIZED","description":"You are not authorized"}"#.into(),
                )
            }),
        );
    let url = serve(router).await;
    let token = RequestorToken::new("tok");
    assert_eq!(
        plain(&url).status(&token).await.unwrap(),
        SessionStatus::Connected
    );
    assert_eq!(hits.load(Ordering::SeqCst), 2, "one failure, one retry");

    hits.store(0, Ordering::SeqCst);
    let no_retry = client(&url, IrmaAuth::None, Duration::from_secs(5), 0);
    match no_retry.status(&token).await {
        Err(IrmaError::Server {
            status: 500, error, ..
        }) => assert_eq!(error, "EXCEPTION"),
        other => panic!("{other:?}"),
    }
    match plain(&url).result(&token).await {
        Err(IrmaError::Server {
            status: 403, error, ..
        }) => assert_eq!(error, "UNAUTHORIZED"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_hanging_server_times_out_after_bounded_retries() {
    let hits = counter();
    let h = hits.clone();
    let router = Router::new().route(
        "/session/{t}/status",
        get(move || {
            h.fetch_add(1, Ordering::SeqCst);
            async {
                // This server hangs: what is under test is the client giving up (its timeout).
                tokio::time::sleep(Duration::from_secs(60)).await;
                "\"DONE\""
            }
        }),
    );
    let c = client(
        &serve(router).await,
        IrmaAuth::None,
        Duration::from_millis(300),
        1,
    );
    let started = std::time::Instant::now();
    let got = c.status(&RequestorToken::new("tok")).await;
    assert!(matches!(got, Err(IrmaError::Timeout)), "{got:?}");
    assert_eq!(hits.load(Ordering::SeqCst), 2, "first try plus one retry");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "gave up in bounded time"
    );
}

#[tokio::test]
async fn without_status_events_the_client_polls_until_done() {
    let polls = counter();
    let p = polls.clone();
    let router = Router::new()
        .route(
            "/session/{t}/statusevents",
            get(|| async {
                json(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    fixture("error-sse-disabled.json"),
                )
            }),
        )
        .route(
            "/session/{t}/status",
            get(move || {
                let n = p.fetch_add(1, Ordering::SeqCst);
                async move {
                    json(
                        StatusCode::OK,
                        if n < 2 { "\"CONNECTED\"" } else { "\"DONE\"" }.into(),
                    )
                }
            }),
        );
    let c = plain(&serve(router).await);
    let got = c
        .wait_terminal(
            &RequestorToken::new("tok"),
            Instant::now() + Duration::from_secs(20),
        )
        .await;
    assert_eq!(got.unwrap(), SessionStatus::Done);
    assert_eq!(polls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn status_events_are_followed_without_polling() {
    let polls = counter();
    let p = polls.clone();
    let router = Router::new()
        .route(
            "/session/{t}/statusevents",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/event-stream")],
                    fixture("statusevents.txt"),
                )
            }),
        )
        .route(
            "/session/{t}/status",
            get(move || {
                p.fetch_add(1, Ordering::SeqCst);
                async { json(StatusCode::OK, fixture("status-initialized.json")) }
            }),
        );
    let c = plain(&serve(router).await);
    let got = c
        .wait_terminal(
            &RequestorToken::new("tok"),
            Instant::now() + Duration::from_secs(20),
        )
        .await;
    assert_eq!(got.unwrap(), SessionStatus::Done);
    assert_eq!(
        polls.load(Ordering::SeqCst),
        2,
        "one status before and one after subscribing, no polling"
    );
}

#[tokio::test]
async fn a_silent_event_stream_is_backed_by_status_checks() {
    // The stream sends irmago's data-less `open` event and then nothing, forever; the session
    // meanwhile finishes.
    let polls = counter();
    let p = polls.clone();
    let router = Router::new()
        .route(
            "/session/{t}/statusevents",
            get(|| async {
                let first = futures_util::stream::once(async {
                    Ok::<_, std::convert::Infallible>(axum::body::Bytes::from_static(
                        b"event: open\n\n",
                    ))
                });
                let body = axum::body::Body::from_stream(futures_util::StreamExt::chain(
                    first,
                    futures_util::stream::pending(),
                ));
                ([(header::CONTENT_TYPE, "text/event-stream")], body)
            }),
        )
        .route(
            "/session/{t}/status",
            get(move || {
                let n = p.fetch_add(1, Ordering::SeqCst);
                async move {
                    json(
                        StatusCode::OK,
                        if n < 2 { "\"INITIALIZED\"" } else { "\"DONE\"" }.into(),
                    )
                }
            }),
        );
    let c = client(
        &serve(router).await,
        IrmaAuth::None,
        Duration::from_millis(300),
        0,
    );
    let got = c
        .wait_terminal(
            &RequestorToken::new("tok"),
            Instant::now() + Duration::from_secs(20),
        )
        .await;
    assert_eq!(got.unwrap(), SessionStatus::Done);
    assert_eq!(
        polls.load(Ordering::SeqCst),
        3,
        "before, after subscribing, and one check of the quiet stream"
    );
}

#[tokio::test]
async fn at_the_deadline_the_last_status_is_returned() {
    let router = Router::new()
        .route(
            "/session/{t}/statusevents",
            get(|| async { StatusCode::NOT_FOUND }),
        )
        .route(
            "/session/{t}/status",
            get(|| async { json(StatusCode::OK, fixture("status-initialized.json")) }),
        );
    let c = plain(&serve(router).await);
    let got = c
        .wait_terminal(
            &RequestorToken::new("tok"),
            Instant::now() + Duration::from_millis(1500),
        )
        .await;
    let status = got.unwrap();
    assert_eq!(status, SessionStatus::Initialized);
    assert!(!status.is_terminal());
}

#[tokio::test]
async fn session_unknown_ends_status_wait_and_cancel() {
    let unknown = || async {
        json(
            StatusCode::BAD_REQUEST,
            fixture("error-session-unknown.json"),
        )
    };
    let router = Router::new()
        .route("/session/{t}/status", get(unknown))
        .route("/session/{t}/statusevents", get(unknown))
        .route("/session/{t}", axum::routing::delete(unknown));
    let c = plain(&serve(router).await);
    let token = RequestorToken::new("gone");
    assert!(matches!(
        c.status(&token).await,
        Err(IrmaError::SessionUnknown)
    ));
    assert!(matches!(
        c.cancel(&token).await,
        Err(IrmaError::SessionUnknown)
    ));
    let waited = c
        .wait_terminal(&token, Instant::now() + Duration::from_secs(10))
        .await;
    assert!(
        matches!(waited, Err(IrmaError::SessionUnknown)),
        "{waited:?}"
    );
}

#[tokio::test]
async fn tls_and_connection_failures_are_typed_and_never_show_the_token() {
    // An https URL pointing at a plain-HTTP server: the TLS handshake fails.
    let plain_http =
        serve(Router::new().route("/session/{t}/status", get(|| async { "\"DONE\"" }))).await;
    let https = plain_http.replacen("http://", "https://", 1);
    let token = RequestorToken::new("SECRETTOKEN123");
    let got = client(&https, IrmaAuth::None, Duration::from_secs(5), 1)
        .status(&token)
        .await;
    assert!(matches!(got, Err(IrmaError::Tls(_))), "{got:?}");
    assert!(!got.unwrap_err().to_string().contains("SECRETTOKEN123"));

    // A port nobody listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let got = client(&closed, IrmaAuth::None, Duration::from_secs(5), 1)
        .status(&token)
        .await;
    assert!(matches!(got, Err(IrmaError::Unreachable(_))), "{got:?}");
    assert!(!got.unwrap_err().to_string().contains("SECRETTOKEN123"));
}

/// irmago's signed result (`/session/{token}/result-jwt`, RS256 with its `jwt_privkey`): with the
/// server's public key configured, the result is believed only when signature, issuer, subject
/// and expiry check out; the unsigned `/result` is never asked for. The mock signs with the test
/// requestor key pair from fixtures/irma/ standing in for the IRMA server's own.
#[tokio::test]
async fn a_signed_result_is_checked_before_it_is_believed() {
    use jsonwebtoken::{encode, EncodingKey, Header};
    let private = fixture("test-requestor-rs256.key.pem");
    let public = fixture("test-requestor-rs256.pub.pem");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let sign = |iss: &str, sub: &str, exp: i64, key: &EncodingKey| {
        let mut claims: serde_json::Value =
            serde_json::from_str(&fixture("result-valid.json")).unwrap();
        claims["iss"] = iss.into();
        claims["sub"] = sub.into();
        claims["iat"] = now.into();
        claims["exp"] = exp.into();
        encode(&Header::new(Algorithm::RS256), &claims, key).unwrap()
    };
    let key = EncodingKey::from_rsa_pem(private.as_bytes()).unwrap();
    let good = sign("irmaserver", "disclosing_result", now + 120, &key);
    let tampered = {
        // Same header and signature, another payload: the BSN swapped.
        let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        use base64::Engine;
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let payload = String::from_utf8(engine.decode(&parts[1]).unwrap()).unwrap();
        parts[1] = engine.encode(payload.replace("999993653", "123456782"));
        parts.join(".")
    };
    let tokens: Vec<(&'static str, String)> = vec![
        ("good", good),
        ("tampered", tampered),
        ("other-issuer", sign("evil", "disclosing_result", now + 120, &key)),
        ("issuance", sign("irmaserver", "issuing_result", now + 120, &key)),
        ("expired", sign("irmaserver", "disclosing_result", now - 600, &key)),
        (
            "hs256",
            encode(
                &Header::new(Algorithm::HS256),
                &serde_json::json!({"iss": "irmaserver", "sub": "disclosing_result", "exp": now + 120}),
                &EncodingKey::from_secret(public.as_bytes()).unwrap(),
            )
            .unwrap(),
        ),
    ];
    let plain_asked = counter();
    let asked = plain_asked.clone();
    let router = Router::new()
        .route(
            "/session/{name}/result-jwt",
            get(move |Path(name): Path<String>| {
                let jwt = tokens
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, j)| j.clone());
                async move {
                    match jwt {
                        Some(j) => (StatusCode::OK, j).into_response(),
                        None => json(
                            StatusCode::BAD_REQUEST,
                            fixture("error-session-unknown.json"),
                        ),
                    }
                }
            }),
        )
        .route(
            "/session/{name}/result",
            get(move || {
                asked.fetch_add(1, Ordering::SeqCst);
                async { json(StatusCode::OK, fixture("result-valid.json")) }
            }),
        );
    let url = serve(router).await;
    let client = IrmaClient::new(IrmaServerConfig {
        url,
        auth: IrmaAuth::None,
        request_timeout: Duration::from_secs(5),
        retries: 0,
        result_jwt: Some(veilig_bellen::irma::ResultJwtKey {
            public_key_pem: public.into_bytes(),
            issuer: "irmaserver".into(),
        }),
    })
    .unwrap();
    let tenant = Tenant::demo();
    let result = client.result(&RequestorToken::new("good")).await.unwrap();
    let attrs = accept_result(&tenant, &result).unwrap();
    assert_eq!(attrs[1].value.expose().as_deref(), Some("999993653"));
    for bad in ["tampered", "other-issuer", "issuance", "expired", "hs256"] {
        match client.result(&RequestorToken::new(bad)).await {
            Err(IrmaError::UntrustedResult(why)) => {
                assert!(
                    !why.contains("9999"),
                    "{bad}: the reason shows no value: {why}"
                );
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
    assert!(matches!(
        client.result(&RequestorToken::new("gone")).await,
        Err(IrmaError::SessionUnknown)
    ));
    assert_eq!(
        plain_asked.load(Ordering::SeqCst),
        0,
        "the unsigned result is never fetched"
    );
}
