//! Asking for more during a call, with the real pages in headless Chromium
//! (`tests/browser/extra_request.test.mjs`): the citizen's page (the button demo with the widget)
//! stays open after the disclosure, the citizen calls (our own caller, `veilig-bellen call
//! --stay`, or from the page over WebRTC), the agent picks **Vraag gegevens** → **Adres** on the portal's card, the page shows
//! the new Yivi session, the simulated app discloses, and the card lists the address as added
//! during the call; **Ophangen** ends the call and the address leaves the page.
//!
//! Needs node, /usr/bin/chromium and `npm ci --prefix tests/browser`. Without them the test prints
//! why and passes, unless `CI` is set, where it fails.

use crate::extra_request_reaches_a_phone_callers_page::with_extra_requests;
use crate::support;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::Duration;

use serde_json::json;
use support::portal::{credentials, BrowserRun};
use support::server;

/// The server (the tenant's website is the server's own demo page) and the browser script in
/// `mode` (`phone` or `browser`).
async fn start(mode: &str) -> (server::TestServer, BrowserRun) {
    // The page's origin must be the tenant's website: a port known before the server starts.
    let http: SocketAddr = {
        let probe = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a free port");
        probe.local_addr().expect("its address")
    };
    let srv = server::start(4, |c| {
        with_extra_requests(c);
        c.http = http;
        c.demo_pages = true;
        let mut tenants: Vec<_> = c.tenants.iter().cloned().collect();
        for tenant in &mut tenants {
            tenant.website_origins = vec![format!("http://{http}")];
        }
        c.tenants = veilig_bellen::tenant::Tenants::new(tenants);
    })
    .await;
    let creds = credentials().to_string();
    let run = BrowserRun::start_script(
        "tests/browser/extra_request.test.mjs",
        &[&srv.http_base, &creds, mode],
    );
    (srv, run)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_asks_in_the_portal_and_the_callers_page_shows_it() {
    if !support::browser::ready("extra request browser test") {
        return;
    }
    let (srv, mut run) = start("phone").await;
    let Some((name, data)) = run.next_step().await else {
        panic!("the script ended early:\n{}", run.output());
    };
    assert_eq!(name, "call", "{}", run.output());
    let code = data["code"]
        .as_str()
        .expect("the code the app got")
        .to_owned();
    let mut caller = srv.call_and_stay(&code, Duration::from_secs(90));
    let call = srv
        .wait_for_call(Duration::from_secs(10), |c| {
            c["verified"] == true && c["state"] == "waiting"
        })
        .await
        .unwrap_or_else(|e| panic!("no verified call: {e}"));
    run.reply(&json!({ "id": call["id"] })).await;

    let Some((name, _)) = run.next_step().await else {
        panic!("the script ended early:\n{}", run.output());
    };
    assert_eq!(name, "ended", "{}", run.output());
    let ended = tokio::time::timeout(Duration::from_secs(10), caller.wait()).await;
    assert!(ended.is_ok(), "Ophangen did not end the caller's call");
    run.reply(&serde_json::Value::Null).await;
    run.expect_passed(1).await;
    srv.shutdown().await;
}

/// The same for a citizen who calls from the page itself (WebRTC): the request reaches the page
/// over the call's data channel, not its status answers; **Ophangen** ends the page's call too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_asks_a_browser_caller_over_the_data_channel() {
    if !support::browser::ready("extra request browser test") {
        return;
    }
    let (srv, mut run) = start("browser").await;
    let Some((name, _)) = run.next_step().await else {
        panic!("the script ended early:\n{}", run.output());
    };
    assert_eq!(name, "browser_call", "{}", run.output());
    let call = srv
        .wait_for_call(Duration::from_secs(10), |c| {
            c["via"] == "browser" && c["verified"] == true && c["state"] == "waiting"
        })
        .await
        .unwrap_or_else(|e| panic!("no verified browser call: {e}"));
    run.reply(&json!({ "id": call["id"] })).await;

    let Some((name, _)) = run.next_step().await else {
        panic!("the script ended early:\n{}", run.output());
    };
    assert_eq!(name, "ended", "{}", run.output());
    let ended = srv
        .wait_for_call(Duration::from_secs(10), |c| {
            c["id"] == call["id"] && c["state"] == "ended"
        })
        .await
        .unwrap_or_else(|e| panic!("the browser call did not end: {e}"));
    assert_eq!(ended["attributes"], json!([]), "purged at the end: {ended}");
    run.reply(&serde_json::Value::Null).await;
    run.expect_passed(1).await;
    srv.shutdown().await;
}
