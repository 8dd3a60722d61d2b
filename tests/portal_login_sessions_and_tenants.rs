//! The portal's login, sessions and tenant walls over plain HTTP, against the whole server: the
//! session cookie's flags (`Secure` once we serve HTTPS); one generic 401 for a wrong username or
//! password; the lockout (429, `Retry-After`) that leaves other usernames alone; with a real trunk
//! call (SIPp, no code) waiting: an agent of another municipality sees no call and gets 404 acting
//! on it, every state-changing request with the cookie but without `X-CSRF-Token` gets 403 (also for
//! a call that does not exist), the right agent hangs up; logout kills the cookie and ends the
//! live updates opened with it; the bearer-token
//! API works as before; the audit log is for supervisors. And the demo's agent logs in with the
//! `--agent-password` the demo prints.

use crate::support;

use std::time::Duration;

use reqwest::header::{HeaderMap, SET_COOKIE};
use serde_json::{json, Value};
use support::portal::{portal_server, JAN_PASSWORD, PORTAL_PASSWORD};
use support::sipp::TrunkCall;

/// A browser-less agent: a client that sends one session cookie.
struct Agent {
    client: reqwest::Client,
    base: String,
    cookie: String,
    csrf: String,
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client")
}

async fn login(base: &str, username: &str, password: &str) -> reqwest::Response {
    client()
        .post(format!("{base}/api/v1/login"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .expect("POST /api/v1/login")
}

fn set_cookie(headers: &HeaderMap) -> String {
    headers
        .get(SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .expect("a Set-Cookie")
        .to_owned()
}

impl Agent {
    async fn log_in(base: &str, username: &str, password: &str) -> Agent {
        let response = login(base, username, password).await;
        assert_eq!(response.status(), 200, "{username} cannot log in");
        let cookie = set_cookie(response.headers());
        let body: Value = response.json().await.expect("login JSON");
        assert_eq!(body["agent"], username);
        Agent {
            client: client(),
            base: base.to_owned(),
            cookie: cookie.split(';').next().unwrap_or_default().to_owned(),
            csrf: body["csrf"].as_str().expect("csrf").to_owned(),
        }
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .expect("GET");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, csrf: bool) -> (u16, Value) {
        let mut request = self
            .client
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .json(&json!({}));
        if csrf {
            request = request.header("x-csrf-token", &self.csrf);
        }
        let response = request.send().await.expect("POST");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_csrf_and_tenant_walls_hold_around_a_real_call() {
    let srv = portal_server(|_| {}).await;
    let base = srv.http_base.clone();

    // The page and its protections.
    let page = client()
        .get(format!("{base}/portal"))
        .send()
        .await
        .expect("GET /portal");
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        csp.contains("default-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    assert!(page
        .text()
        .await
        .unwrap_or_default()
        .contains(">Gebruikersnaam</label>"));

    // Wrong username or wrong password: the same 401.
    let wrong_password = login(&base, "agent", "nope").await;
    assert_eq!(wrong_password.status(), 401);
    let wrong_password = wrong_password.text().await.unwrap_or_default();
    let unknown = login(&base, "nobody", PORTAL_PASSWORD).await;
    assert_eq!(unknown.status(), 401);
    assert_eq!(unknown.text().await.unwrap_or_default(), wrong_password);
    // The SIP secret is not the portal password.
    assert_eq!(
        login(&base, "agent", support::agent::AGENT_PASSWORD)
            .await
            .status(),
        401
    );

    let response = login(&base, "agent", PORTAL_PASSWORD).await;
    let cookie = set_cookie(response.headers());
    assert!(cookie.starts_with("vb_session="), "{cookie}");
    for flag in ["; HttpOnly", "; SameSite=Strict", "; Path=/"] {
        assert!(cookie.contains(flag), "{cookie} lacks {flag}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    let agent = Agent::log_in(&base, "agent", PORTAL_PASSWORD).await;
    let jan = Agent::log_in(&base, "jan", JAN_PASSWORD).await;

    // A caller of the demo municipality waits.
    let mut call = TrunkCall::new("+31611112222");
    call.await_bye = true;
    let Some((sipp, waiting)) = srv.call_until_waiting(&call, Duration::from_secs(8)).await else {
        return;
    };
    let id = waiting["id"].clone();
    assert_eq!(waiting["reason"], "no_code");

    // The other municipality's agent: no call, 404 on it, 403 without the header.
    assert_eq!(jan.get("/api/v1/calls").await, (200, json!([])));
    for action in ["answer", "hangup"] {
        let (status, body) = jan
            .post(&format!("/api/v1/calls/{id}/{action}"), true)
            .await;
        assert_eq!((status, &body["error"]), (404, &json!("call_not_found")));
        let (status, _) = jan
            .post(&format!("/api/v1/calls/{id}/{action}"), false)
            .await;
        assert_eq!(status, 403);
    }
    // The right agent: sees it; without the header 403, even for a call that does not exist.
    let (status, list) = agent.get("/api/v1/calls").await;
    assert_eq!(status, 200);
    assert_eq!(list[0]["caller"], "+31611112222");
    for path in [
        format!("/api/v1/calls/{id}/answer"),
        format!("/api/v1/calls/{id}/hangup"),
        "/api/v1/calls/987654/answer".to_owned(),
        "/api/v1/logout".to_owned(),
    ] {
        let (status, body) = agent.post(&path, false).await;
        assert_eq!(
            (status, &body["error"]),
            (403, &json!("forbidden")),
            "{path}"
        );
    }
    let (status, _) = agent.post("/api/v1/calls/987654/answer", true).await;
    assert_eq!(status, 404);
    // Answering without a registered phone: the agent is told at once.
    let (status, body) = agent
        .post(&format!("/api/v1/calls/{id}/answer"), true)
        .await;
    assert_eq!((status, &body["error"]), (409, &json!("agent_unavailable")));
    let (status, _) = agent
        .post(&format!("/api/v1/calls/{id}/hangup"), true)
        .await;
    assert_eq!(status, 202);
    if let Err(e) = sipp.finish().await {
        panic!("the hang-up did not reach the caller: {e}");
    }

    // The bearer token works as before, across tenants.
    let ended = srv
        .wait_for_call(Duration::from_secs(3), |c| {
            c["id"] == id && c["state"] == "ended"
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ended["caller"], "");

    // Audit: for supervisors, their own tenant only.
    let (status, rows) = agent.get("/api/v1/audit").await;
    assert_eq!(status, 200);
    let rows = rows.as_array().cloned().unwrap_or_default();
    assert!(rows.iter().all(|r| r["tenant"] == "demo"), "{rows:#?}");
    assert_eq!(rows[0]["action"], "hangup");
    assert_eq!(rows[0]["call"], id);
    assert_eq!(rows[0]["verified"], false);
    assert!(rows
        .iter()
        .any(|r| r["action"] == "login_failed" && r["agent"] == "agent"));
    let (status, body) = jan.get("/api/v1/audit").await;
    assert_eq!((status, &body["error"]), (403, &json!("not_supervisor")));

    // Logout: the cookie is dead, and the live updates it had opened end.
    let events = reqwest::Client::new()
        .get(format!("{base}/api/v1/calls/events"))
        .header("cookie", &agent.cookie)
        .send()
        .await
        .expect("GET /api/v1/calls/events");
    assert_eq!(events.status(), 200);
    let (status, _) = agent.post("/api/v1/logout", true).await;
    assert_eq!(status, 204);
    let mut stream = events.bytes_stream();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        use futures_util::StreamExt;
        while let Some(Ok(_)) = stream.next().await {}
    })
    .await;
    assert!(ended.is_ok(), "the event stream outlived the logout");
    assert_eq!(agent.get("/api/v1/calls").await.0, 401);
    assert_eq!(agent.post("/api/v1/logout", true).await.0, 401);
    assert_eq!(
        jan.get("/api/v1/calls").await.0,
        200,
        "other sessions live on"
    );

    // Lockout: jan's username after five failures; the agent's username is not affected.
    for _ in 0..5 {
        assert_eq!(login(&base, "jan", "guess").await.status(), 401);
    }
    let locked = login(&base, "jan", JAN_PASSWORD).await;
    assert_eq!(locked.status(), 429);
    assert!(locked.headers().contains_key("retry-after"));
    let body: Value = locked.json().await.unwrap_or(Value::Null);
    assert_eq!(body["error"], "locked");
    assert_eq!(login(&base, "agent", PORTAL_PASSWORD).await.status(), 200);
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_https_the_session_cookie_is_secure() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).expect("cert file");
    std::fs::write(&key, ck.signing_key.serialize_pem()).expect("key file");
    let srv = portal_server(|c| {
        c.http_tls = Some(veilig_bellen::sip_driver::TlsConfig {
            cert_chain: cert,
            private_key: key,
        });
    })
    .await;
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ck.cert.pem().as_bytes()).expect("pem")])
        .resolve("localhost", srv.running.http)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let response = client
        .post(format!(
            "https://localhost:{}/api/v1/login",
            srv.running.http.port()
        ))
        .json(&json!({"username": "agent", "password": PORTAL_PASSWORD}))
        .send()
        .await
        .expect("login over HTTPS");
    assert_eq!(response.status(), 200);
    let cookie = set_cookie(response.headers());
    assert!(cookie.ends_with("; Secure"), "{cookie}");
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_agent_logs_in_with_the_demo_agent_password() {
    use clap::Parser;
    let dir = tempfile::tempdir().expect("temp dir");
    let rtp = support::ports::range(8);
    let cli = veilig_bellen::cli::Cli::try_parse_from([
        "veilig-bellen",
        "demo",
        "--http",
        "127.0.0.1:0",
        "--sip",
        "127.0.0.1:0",
        "--agent-password",
        "demo-pw-h10",
        "--rtp-ports",
        &format!("{}-{}", rtp.start(), rtp.end()),
    ])
    .expect("demo arguments");
    let veilig_bellen::cli::Command::Demo(args) = cli.command else {
        panic!("not the demo command");
    };
    let (config, _, password) = veilig_bellen::demo::config(&args, dir.path().to_path_buf());
    assert_eq!(password, "demo-pw-h10");
    let running = veilig_bellen::server::start(config)
        .await
        .expect("demo starts");
    let base = format!("http://{}", running.http);
    let agent = Agent::log_in(&base, "agent", "demo-pw-h10").await;
    assert_eq!(agent.get("/api/v1/calls").await, (200, json!([])));
    assert_eq!(login(&base, "agent", "other").await.status(), 401);
    running.shutdown().await;
}
