//! The portal at TRACE: an agent mistypes the password, logs in, a verified caller waits (code in
//! SIP INFO), the agent lists the calls with the cookie, hangs up and logs out — with every log line
//! of this process captured. The audit lines are there (login, hang-up, logout, with the call id and
//! whether it was verified); no password, session id, CSRF token, attribute value, link code or
//! calling number appears anywhere in the log.

use crate::support;

use std::time::Duration;

use serde_json::{json, Value};
use support::portal::{portal_server, PORTAL_PASSWORD};
use support::server::expected_attributes;
use support::sipp::TrunkCall;

const CALLER: &str = "+31633334444";
const TYPO: &str = "portal-pw-typo-h10";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portal_logged_at_trace_holds_no_secret_and_no_personal_data() {
    let buffer = support::log_capture::capture_at_trace();

    let srv = portal_server(|_| {}).await;
    let http = reqwest::Client::new();
    let login = |password: &'static str| {
        http.post(format!("{}/api/v1/login", srv.http_base))
            .json(&json!({"username": "agent", "password": password}))
            .send()
    };
    assert_eq!(login(TYPO).await.expect("login").status(), 401);
    let response = login(PORTAL_PASSWORD).await.expect("login");
    assert_eq!(response.status(), 200);
    let cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("session cookie")
        .to_owned();
    let session_id = cookie.trim_start_matches("vb_session=").to_owned();
    let body: Value = response.json().await.expect("login JSON");
    let csrf = body["csrf"].as_str().expect("csrf").to_owned();

    let code = srv.new_code().await;
    let mut call = TrunkCall::new(CALLER);
    call.info_digits = code.clone();
    call.await_bye = true;
    let Some((sipp, waiting)) = srv.call_until_waiting(&call, Duration::from_secs(8)).await else {
        return;
    };
    assert_eq!(waiting["verified"], true, "{waiting:#}");
    let id = waiting["id"].clone();
    let list: Value = http
        .get(format!("{}/api/v1/calls", srv.http_base))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("list JSON");
    assert_eq!(list[0]["caller"], CALLER, "the agent sees the caller");
    let post = |path: String| {
        http.post(format!("{}{path}", srv.http_base))
            .header("cookie", &cookie)
            .header("x-csrf-token", &csrf)
            .send()
    };
    let hangup = post(format!("/api/v1/calls/{id}/hangup"))
        .await
        .expect("hangup");
    assert_eq!(hangup.status(), 202);
    if let Err(e) = sipp.finish().await {
        panic!("the hang-up did not reach the caller: {e}");
    }
    assert_eq!(
        post("/api/v1/logout".into())
            .await
            .expect("logout")
            .status(),
        204
    );
    srv.shutdown().await;

    let log = buffer.text();
    let audit: Vec<&str> = log.lines().filter(|l| l.contains(" audit:")).collect();
    let has = |needle: &str| audit.iter().any(|l| l.contains(needle));
    assert!(
        has("action=\"login_failed\"")
            && has("action=\"login\"")
            && has("action=\"logout\"")
            && has(&format!("call={id} verified=true")),
        "audit lines missing:\n{}",
        audit.join("\n")
    );
    let mut secrets = vec![
        ("portal password", PORTAL_PASSWORD.to_owned()),
        ("mistyped password", TYPO.to_owned()),
        ("session id", session_id),
        ("CSRF token", csrf),
        ("link code", code),
        ("calling number", CALLER.to_owned()),
        (
            "calling number without +",
            CALLER.trim_start_matches('+').to_owned(),
        ),
    ];
    for (_, _, value) in expected_attributes() {
        secrets.push(("attribute value", value));
    }
    let leaks: Vec<String> = log
        .lines()
        .filter_map(|line| {
            secrets
                .iter()
                .find(|(_, s)| line.contains(s.as_str()))
                .map(|(what, _)| format!("{what}: {line}"))
        })
        .collect();
    assert!(
        leaks.is_empty(),
        "{} log lines hold secrets or personal data:\n{}",
        leaks.len(),
        leaks.join("\n")
    );
}
