//! The portal in English, in headless Chromium: the login form labelled Username / Password /
//! Log in (`?lang=en`); a wrong password gets the one generic message and a username guessed too
//! often the lockout in plain words, while the agent's own login (by keyboard) still works; a
//! caller without a code (SIPp as the trunk) shows up **Not verified** with the reason in words;
//! an agent of another municipality (English from the browser's `Accept-Language`) sees none of it,
//! gets 403 without `X-CSRF-Token` and 404 answering it; their cookie is dead after logout; the
//! first agent hangs up. No CSP violation on any page. The browser part is
//! `tests/browser/portal.test.mjs english`; screenshots go to `target/portal-screenshots/`.
//!
//! Needs node, /usr/bin/chromium, `npm ci --prefix tests/browser` and sipp; without them the test
//! prints why and passes, unless `CI` is set.

use crate::support;

use serde_json::{json, Value};
use support::portal::{portal_call, portal_server, BrowserRun};
use support::server::API_TOKEN;
use support::sipp::TrunkCall;

const CALLER: &str = "+31687654321";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_english_portal_shows_an_unverified_caller_to_its_own_tenant_only() {
    if !support::browser::ready("portal test") {
        return;
    }
    let srv = portal_server(|_| {}).await;
    let mut run = BrowserRun::start("english", &srv.http_base);
    let mut caller = None;
    while let Some((step, _)) = run.next_step().await {
        match step.as_str() {
            "unverified-call" => {
                let call = TrunkCall::new(CALLER);
                let Some(sipp) = portal_call(&srv, call) else {
                    return;
                };
                caller = Some(sipp);
                run.reply(&json!({ "caller": CALLER })).await;
            }
            "ended" => {
                run.caller_hung_up(&mut caller, "Hang up").await;
            }
            other => panic!("unknown step {other}:\n{}", run.output()),
        }
    }
    run.expect_passed(1).await;

    let audit: Vec<Value> = reqwest::Client::new()
        .get(format!("{}/api/v1/audit", srv.http_base))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .expect("GET /api/v1/audit")
        .json()
        .await
        .expect("audit JSON");
    let rows: Vec<(&str, &str, &str)> = audit
        .iter()
        .map(|e| {
            (
                e["tenant"].as_str().unwrap_or(""),
                e["agent"].as_str().unwrap_or(""),
                e["action"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("demo", "agent", "hangup"),
            ("arnhem", "jan", "logout"),
            ("arnhem", "jan", "login"),
            ("demo", "agent", "login"),
            ("demo", "agent", "login_failed"),
        ],
        "{audit:#?}"
    );
    assert_eq!(audit[0]["verified"], false);
    srv.shutdown().await;
}
