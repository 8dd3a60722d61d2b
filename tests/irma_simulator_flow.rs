//! The IRMA client against the IRMA simulator over real HTTP on loopback, nested at `/irma-sim` as
//! `veilig-bellen demo` serves it: start → the "app" discloses → wait → result → verified attributes;
//! requestor-token auth; the client API yivi-frontend follows; lifetimes on a simulated clock;
//! declining and cancelling; foreign and null attributes; the "not an IRMA server" label.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use serde_json::{json, Value};
use tokio::time::Instant;
use veilig_bellen::irma::simulator::{
    simulator_router, Simulator, SimulatorConfig, SIMULATOR_HEADER,
};
use veilig_bellen::irma::{
    accept_result, IrmaAuth, IrmaClient, IrmaError, IrmaServerConfig, SessionStatus, StartedSession,
};
use veilig_bellen::tenant::Tenant;

const TOKEN: &str = "requestor-secret";
const RETURN_URL: &str = "tel:+31850000000,12345678";

struct Sim {
    sim: Simulator,
    /// `http://127.0.0.1:port/irma-sim`
    base: String,
    http: reqwest::Client,
    /// The paths of the requests the simulator got, in order.
    requests: Arc<Mutex<Vec<String>>>,
}

impl Sim {
    async fn start(configure: impl FnOnce(&mut SimulatorConfig)) -> Sim {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/irma-sim", listener.local_addr().unwrap());
        let mut config = SimulatorConfig::new(&base);
        config.requestor_token = Some(TOKEN.into());
        configure(&mut config);
        let sim = Simulator::new(config);
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let log = requests.clone();
        let app = Router::new()
            .nest("/irma-sim", simulator_router(sim.clone()))
            .layer(axum::middleware::from_fn(
                move |request: axum::extract::Request, next: axum::middleware::Next| {
                    log.lock().unwrap().push(request.uri().path().to_owned());
                    next.run(request)
                },
            ));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Sim {
            sim,
            base,
            http: reqwest::Client::new(),
            requests,
        }
    }

    /// Waits (at most 5 s) until the simulator got `count` requests whose path ends with `suffix`
    /// (`/statusevents`: a waiting client follows the status; `/status`: it asks or polls).
    async fn until_requested(&self, suffix: &str, count: usize) {
        crate::support::wait_until(Duration::from_secs(5), || {
            self.requests
                .lock()
                .unwrap()
                .iter()
                .filter(|p| p.ends_with(suffix))
                .count()
                >= count
        })
        .await;
    }

    fn client(&self, auth: IrmaAuth) -> IrmaClient {
        IrmaClient::new(IrmaServerConfig {
            url: self.base.clone(),
            auth,
            request_timeout: Duration::from_secs(5),
            retries: 1,
            result_jwt: None,
        })
        .unwrap()
    }

    fn authed(&self) -> IrmaClient {
        self.client(IrmaAuth::Token(TOKEN.into()))
    }

    /// What the Yivi app would do after scanning: POST the simulator's app stand-in.
    async fn app(&self, started: &StartedSession, body: Value) -> (u16, Value) {
        let ct = started.client_token().unwrap();
        let r = self
            .http
            .post(format!("{}/session/{ct}/disclose", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(20)
}

#[tokio::test]
async fn citizen_disclosure_reaches_verified_attributes() {
    let s = Sim::start(|_| {}).await;
    let c = s.authed();
    let tenant = Tenant::demo();
    let started = c
        .start_disclosure(&tenant.disclosure, RETURN_URL)
        .await
        .unwrap();
    let u = started.session_ptr["u"].as_str().unwrap();
    assert!(u.starts_with(&format!("{}/irma/session/", s.base)), "{u}");
    assert_eq!(
        c.status(&started.token).await.unwrap(),
        SessionStatus::Initialized
    );

    let waiter = {
        let (c, token) = (c.clone(), started.token.clone());
        tokio::spawn(async move { c.wait_terminal(&token, soon()).await })
    };
    // The disclosure comes while the client follows the status.
    s.until_requested("/statusevents", 1).await;
    let (code, answer) = s.app(&started, json!({"attributes": {}})).await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(
        answer["clientReturnUrl"], RETURN_URL,
        "exactly the tel: URL, no token appended"
    );
    assert_eq!(answer["proofStatus"], "VALID");

    assert_eq!(waiter.await.unwrap().unwrap(), SessionStatus::Done);
    let result = c.result(&started.token).await.unwrap();
    let verified = accept_result(&tenant, &result).unwrap();
    let values: Vec<_> = verified
        .iter()
        .map(|a| (a.id.as_str(), a.value.expose().clone()))
        .collect();
    assert_eq!(
        values,
        [
            (
                "irma-demo.gemeente.personalData.fullname",
                Some("Jan de Vries".to_owned())
            ),
            (
                "irma-demo.gemeente.personalData.bsn",
                Some("999993653".to_owned())
            ),
        ]
    );
    // The app cannot disclose twice.
    let (code, answer) = s.app(&started, json!({"attributes": {}})).await;
    assert_eq!(
        (code, answer["error"].as_str()),
        (403, Some("UNEXPECTED_REQUEST"))
    );
}

#[tokio::test]
async fn wrong_or_missing_requestor_token_is_refused_like_irmago() {
    let s = Sim::start(|_| {}).await;
    let d = Tenant::demo().disclosure;
    match s
        .client(IrmaAuth::Token("wrong".into()))
        .start_disclosure(&d, RETURN_URL)
        .await
    {
        Err(IrmaError::Server {
            status: 403, error, ..
        }) => assert_eq!(error, "UNAUTHORIZED"),
        other => panic!("{other:?}"),
    }
    match s
        .client(IrmaAuth::None)
        .start_disclosure(&d, RETURN_URL)
        .await
    {
        Err(IrmaError::Server {
            status: 400, error, ..
        }) => assert_eq!(error, "INVALID_REQUEST"),
        other => panic!("{other:?}"),
    }
    let jwt = IrmaAuth::Hs256 {
        issuer: "x".into(),
        key: b"k".to_vec(),
    };
    assert!(matches!(
        s.client(jwt).start_disclosure(&d, RETURN_URL).await,
        Err(IrmaError::Server { status: 400, .. })
    ));
    assert!(s.sim.pending().is_empty(), "no session was made");
}

#[tokio::test]
async fn frontend_follows_the_session_through_the_client_api() {
    let s = Sim::start(|_| {}).await;
    let started = s
        .authed()
        .start_disclosure(&Tenant::demo().disclosure, RETURN_URL)
        .await
        .unwrap();
    let u = started.session_ptr["u"].as_str().unwrap().to_owned();
    let auth = started.frontend_request.as_ref().unwrap()["authorization"]
        .as_str()
        .unwrap()
        .to_owned();

    let legacy: Value = s
        .http
        .get(format!("{u}/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(legacy, "INITIALIZED");
    let r = s
        .http
        .get(format!("{u}/frontend/status"))
        .header("Authorization", &auth)
        .header("Origin", "http://127.0.0.1:8080")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"status": "INITIALIZED"})
    );
    let r = s
        .http
        .get(format!("{u}/frontend/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        403,
        "frontend endpoints need the frontend authorization"
    );

    // The status stream yivi-frontend listens to, as irmago sends it: no current status (yivi-client
    // 0.1.3 shows an error on an INITIALIZED message), a data-less `open` event after ~200 ms,
    // then each change as a `{"status":..}` object, closed after the terminal one.
    let mut events = s
        .http
        .get(format!("{u}/frontend/statusevents"))
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    assert!(events.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut text = String::new();
    while !text.contains("\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), events.chunk())
            .await
            .expect("an open event within 10 s")
            .unwrap()
            .expect("the stream stays open");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert_eq!(
        text, "event: open\n\n",
        "the first event is irmago's open event"
    );
    s.app(&started, json!({"attributes": {}})).await;
    text.clear();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(10), events.chunk())
        .await
        .expect("the stream closes after DONE")
        .unwrap()
    {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let statuses: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(
        statuses,
        [r#"{"status":"CONNECTED"}"#, r#"{"status":"DONE"}"#],
        "{text}"
    );

    // A finished session refuses new subscriptions (irmago: 500 EXCEPTION on the client API).
    for (path, auth) in [
        ("frontend/statusevents", Some(&auth)),
        ("statusevents", None),
    ] {
        let mut r = s.http.get(format!("{u}/{path}"));
        if let Some(auth) = auth {
            r = r.header("Authorization", auth);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), 500, "{path}");
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "EXCEPTION");
    }
}

#[tokio::test]
async fn requestor_status_stream_sends_changes_only() {
    let s = Sim::start(|_| {}).await;
    let c = s.authed();
    let started = c
        .start_disclosure(&Tenant::demo().disclosure, RETURN_URL)
        .await
        .unwrap();
    let url = format!("{}/session/{}/statusevents", s.base, started.token.expose());
    let mut events = s.http.get(&url).send().await.unwrap();
    assert_eq!(events.status(), 200);
    // The open event has come; then the requestor cancels.
    let mut text = String::new();
    while !text.contains("event: open\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), events.chunk())
            .await
            .expect("the open event within 10 s")
            .unwrap()
            .expect("the stream stays open until the session ends");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    c.cancel(&started.token).await.unwrap();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(10), events.chunk())
        .await
        .expect("the stream closes after CANCELLED")
        .unwrap()
    {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert_eq!(text, "event: open\n\ndata: \"CANCELLED\"\n\n");
    // And the client, which never relies on the stream for the current status, sees it at once.
    assert_eq!(
        c.wait_terminal(&started.token, soon()).await.unwrap(),
        SessionStatus::Cancelled
    );
    let r = s.http.get(&url).send().await.unwrap();
    assert_eq!(
        (
            r.status().as_u16(),
            r.json::<Value>().await.unwrap()["error"].clone()
        ),
        (501, json!("UNSUPPORTED")),
        "irmago's requestor server refuses a finished session's stream"
    );
}

#[tokio::test]
async fn unscanned_session_times_out_and_results_are_forgotten() {
    let s = Sim::start(|_| {}).await;
    let c = s.authed();
    let started = c
        .start_disclosure(&Tenant::demo().disclosure, RETURN_URL)
        .await
        .unwrap();
    let waiter = {
        let (c, token) = (c.clone(), started.token.clone());
        tokio::spawn(async move { c.wait_terminal(&token, soon()).await })
    };
    // The session times out while the client follows the status.
    s.until_requested("/statusevents", 1).await;
    s.sim.advance_clock(Duration::from_secs(5 * 60));
    assert_eq!(waiter.await.unwrap().unwrap(), SessionStatus::Timeout);
    let result = c.result(&started.token).await.unwrap();
    assert!(matches!(
        accept_result(&Tenant::demo(), &result),
        Err(IrmaError::NotDone(SessionStatus::Timeout))
    ));
    let (code, answer) = s.app(&started, json!({"attributes": {}})).await;
    assert_eq!(
        (code, answer["error"].as_str()),
        (403, Some("UNEXPECTED_REQUEST")),
        "too late to scan"
    );

    s.sim.advance_clock(Duration::from_secs(5 * 60));
    assert!(matches!(
        c.result(&started.token).await,
        Err(IrmaError::SessionUnknown)
    ));
    assert!(matches!(
        c.status(&started.token).await,
        Err(IrmaError::SessionUnknown)
    ));
}

#[tokio::test]
async fn without_status_events_the_client_polls_the_simulator() {
    let s = Sim::start(|c| c.sse = false).await;
    let c = s.authed();
    let started = c
        .start_disclosure(&Tenant::demo().disclosure, RETURN_URL)
        .await
        .unwrap();
    let r = s
        .http
        .get(format!(
            "{}/session/{}/statusevents",
            s.base,
            started.token.expose()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "SSE_DISABLED");

    let waiter = {
        let (c, token) = (c.clone(), started.token.clone());
        tokio::spawn(async move { c.wait_terminal(&token, soon()).await })
    };
    // The disclosure comes once the client polls: its first look and a poll after it.
    s.until_requested("/status", 2).await;
    s.app(&started, json!({"attributes": {}})).await;
    assert_eq!(waiter.await.unwrap().unwrap(), SessionStatus::Done);
}

#[tokio::test]
async fn citizen_declines_and_requestor_cancels() {
    let s = Sim::start(|_| {}).await;
    let c = s.authed();
    let d = Tenant::demo().disclosure;

    let declined = c.start_disclosure(&d, RETURN_URL).await.unwrap();
    let (code, answer) = s.app(&declined, json!({"cancel": true})).await;
    assert_eq!((code, answer["status"].as_str()), (200, Some("CANCELLED")));
    assert!(
        answer.get("clientReturnUrl").is_none(),
        "a declined session dials nothing"
    );
    assert_eq!(
        c.wait_terminal(&declined.token, soon()).await.unwrap(),
        SessionStatus::Cancelled
    );
    let result = c.result(&declined.token).await.unwrap();
    assert!(matches!(
        accept_result(&Tenant::demo(), &result),
        Err(IrmaError::NotDone(SessionStatus::Cancelled))
    ));

    let abandoned = c.start_disclosure(&d, RETURN_URL).await.unwrap();
    c.cancel(&abandoned.token).await.unwrap();
    assert_eq!(
        c.status(&abandoned.token).await.unwrap(),
        SessionStatus::Cancelled
    );
    assert!(s.sim.pending().is_empty());
}

#[tokio::test]
async fn foreign_null_and_forced_verdicts_through_the_simulator() {
    let s = Sim::start(|_| {}).await;
    let c = s.authed();
    let tenant = Tenant::demo();
    let name = "irma-demo.gemeente.personalData.fullname";
    let bsn = "irma-demo.gemeente.personalData.bsn";

    // An attribute nobody asked for: VALID at the server, refused by the allow-list.
    let started = c
        .start_disclosure(&tenant.disclosure, RETURN_URL)
        .await
        .unwrap();
    s.app(&started, json!({"attributes": {name: "Jan", bsn: "999993653", "pbdf.pbdf.email.email": "j@example.org"}}))
        .await;
    let result = c.result(&started.token).await.unwrap();
    assert_eq!(
        result.proof_status,
        Some(veilig_bellen::irma::ProofStatus::Valid)
    );
    assert!(matches!(
        accept_result(&tenant, &result),
        Err(IrmaError::NotAllowed { .. })
    ));

    // A credential without a value: rawvalue null.
    let started = c
        .start_disclosure(&tenant.disclosure, RETURN_URL)
        .await
        .unwrap();
    s.app(
        &started,
        json!({"attributes": {name: null, bsn: "999993653"}}),
    )
    .await;
    let verified = accept_result(&tenant, &c.result(&started.token).await.unwrap()).unwrap();
    assert_eq!(verified[0].value.expose(), &None);

    // Missing attribute.
    let started = c
        .start_disclosure(&tenant.disclosure, RETURN_URL)
        .await
        .unwrap();
    let (_, answer) = s.app(&started, json!({"attributes": {name: "Jan"}})).await;
    assert_eq!(answer["proofStatus"], "MISSING_ATTRIBUTES");
    assert!(matches!(
        accept_result(&tenant, &c.result(&started.token).await.unwrap()),
        Err(IrmaError::MissingAttributes)
    ));

    // A forced verdict, as a real server reports an expired credential.
    let started = c
        .start_disclosure(&tenant.disclosure, RETURN_URL)
        .await
        .unwrap();
    s.app(
        &started,
        json!({"attributes": {}, "proofStatus": "EXPIRED"}),
    )
    .await;
    assert!(matches!(
        accept_result(&tenant, &c.result(&started.token).await.unwrap()),
        Err(IrmaError::Expired)
    ));
}

#[tokio::test]
async fn every_response_says_it_is_not_an_irma_server() {
    let s = Sim::start(|c| c.demo_page = true).await;
    let started = s
        .authed()
        .start_disclosure(&Tenant::demo().disclosure, RETURN_URL)
        .await
        .unwrap();
    let (header, value) = SIMULATOR_HEADER;

    let r = s
        .http
        .get(format!("{}/session/nonexistent/result", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()[header], value);
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "SESSION_UNKNOWN");
    assert_eq!(body["description"], "Unknown or expired session");

    let r = s
        .http
        .get(format!("{}/no/such/path", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), r.headers()[header].to_str().unwrap()),
        (404, value)
    );

    let r = s.http.get(&s.base).send().await.unwrap();
    assert_eq!(r.headers()[header], value);
    let page = r.text().await.unwrap();
    assert!(page.contains("NOT an IRMA server"));
    assert!(
        page.contains(started.client_token().unwrap()),
        "the demo page lists the waiting session"
    );
    assert!(
        !page.contains(started.token.expose()),
        "but never its requestor token"
    );

    let s = Sim::start(|_| {}).await;
    let r = s.http.get(&s.base).send().await.unwrap();
    assert_eq!(r.status(), 404, "no demo page unless asked for");
}

/// Collects everything logged, for the test below.
#[derive(Clone, Default)]
struct LogBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn trace_log_holds_no_attribute_values_codes_or_tokens() {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .without_time()
        .with_writer(move || writer.clone())
        .finish();
    // The test runtime is single-threaded, so the server and client tasks log through this default.
    let _guard = tracing::subscriber::set_default(subscriber);

    let s = Sim::start(|c| c.sse = false).await;
    let c = s.authed();
    let tenant = Tenant::demo();
    let started = c
        .start_disclosure(&tenant.disclosure, RETURN_URL)
        .await
        .unwrap();
    s.app(&started, json!({"attributes": {}})).await;
    assert_eq!(
        c.wait_terminal(&started.token, soon()).await.unwrap(),
        SessionStatus::Done
    );
    let verified = accept_result(&tenant, &c.result(&started.token).await.unwrap()).unwrap();
    tracing::debug!(?started, ?verified, "flow done");
    // Failures log too: a dead server and an unknown session.
    let _ = c
        .result(&veilig_bellen::irma::RequestorToken::new("nope"))
        .await;
    let dead = IrmaClient::new(IrmaServerConfig {
        url: "http://127.0.0.1:9".into(),
        auth: IrmaAuth::None,
        request_timeout: Duration::from_millis(500),
        retries: 1,
        result_jwt: None,
    })
    .unwrap();
    let _ = dead.status(&started.token).await;

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("flow done"), "the capture works: {text}");
    for secret in [
        "999993653",
        "Jan de Vries",
        "12345678",
        started.token.expose(),
        TOKEN,
    ] {
        assert!(
            !text.contains(secret),
            "{secret:?} leaked into the log:\n{text}"
        );
    }
}

#[tokio::test]
async fn signed_jwt_requests_are_verified_by_the_simulator() {
    let key = b"shared-hmac-key".to_vec();
    let s = Sim::start(|c| {
        c.requestor_token = None;
        c.requestor_hs256 = Some(("veilig-bellen".into(), key.clone()));
    })
    .await;
    let tenant = Tenant::demo();
    let signed = s.client(IrmaAuth::Hs256 {
        issuer: "veilig-bellen".into(),
        key: key.clone(),
    });
    let started = signed
        .start_disclosure(&tenant.disclosure, RETURN_URL)
        .await
        .unwrap();
    let (_, answer) = s.app(&started, json!({"attributes": {}})).await;
    assert_eq!(answer["clientReturnUrl"], RETURN_URL);
    assert!(accept_result(&tenant, &signed.result(&started.token).await.unwrap()).is_ok());

    let wrong_key = s.client(IrmaAuth::Hs256 {
        issuer: "veilig-bellen".into(),
        key: b"guess".to_vec(),
    });
    let wrong_issuer = s.client(IrmaAuth::Hs256 {
        issuer: "someone".into(),
        key,
    });
    for c in [wrong_key, wrong_issuer, s.client(IrmaAuth::None)] {
        match c.start_disclosure(&tenant.disclosure, RETURN_URL).await {
            Err(IrmaError::Server {
                status: 400, error, ..
            }) => assert_eq!(error, "INVALID_REQUEST"),
            other => panic!("{other:?}"),
        }
    }
    assert!(s.sim.pending().is_empty());
}
