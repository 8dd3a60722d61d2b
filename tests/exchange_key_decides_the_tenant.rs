//! The municipality's own exchange reports calls with its key (`/api/v1/pbx/…`), and the key decides
//! the tenant:
//! - without a key, or with a wrong one, it gets the same 401 with `WWW-Authenticate: Bearer`;
//! - one municipality's key cannot verify another's codes, cannot claim another's number, and
//!   another's calls do not exist for it (404 on their events and their end);
//! - an address that keeps presenting wrong keys is refused (429), even with a right key.

use crate::support;

use serde_json::{json, Value};
use support::exchange::{two_tenants, Pbx, ARNHEM_KEY, ARNHEM_NUMBER, DEMO_KEY};
use support::server;
use support::server::code_of;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_needs_the_tenants_key_and_reaches_only_that_tenant() {
    let srv = server::start(1, two_tenants).await;
    let pbx = Pbx::new(&srv.http_base);
    let body = json!({"caller": "+31612345678", "called": "+31850000000", "code": "12345678"});

    // No key, a wrong key: the same 401, nothing said about which part was wrong.
    let (status, no_key) = pbx.report(None, &body).await;
    assert_eq!(status, 401);
    let (status, wrong_key) = pbx.report(Some("vbx_not-a-key"), &body).await;
    assert_eq!(status, 401);
    assert_eq!(no_key, wrong_key);
    assert_eq!(no_key["error"], "unauthorized");
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/pbx/calls", srv.http_base))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response
            .headers()
            .get("www-authenticate")
            .map(|v| v.as_bytes()),
        Some(&b"Bearer"[..])
    );
    // The agents' API token is no exchange key either.
    let (status, _) = pbx.report(Some(support::server::API_TOKEN), &body).await;
    assert_eq!(status, 401);

    // Arnhem's citizen's code verifies with Arnhem's key only.
    let code = code_of(&srv.http_base, "arnhem", ARNHEM_NUMBER).await;
    let via_demo = pbx.call(DEMO_KEY, "+31612345678", Some(&code)).await;
    assert_eq!(via_demo["verified"], false, "{via_demo:#}");
    assert_eq!(via_demo["reason"], "unknown_code", "{via_demo:#}");
    let arnhem_call = pbx.call(ARNHEM_KEY, "+31612345678", Some(&code)).await;
    assert_eq!(arnhem_call["verified"], true, "{arnhem_call:#}");
    assert_eq!(arnhem_call["reason"], Value::Null);

    // Naming Arnhem's number does not take the demo key there.
    let (status, refused) = pbx
        .report(
            Some(DEMO_KEY),
            &json!({"caller": "+31612345678", "called": "026 377 0000", "code": code}),
        )
        .await;
    assert_eq!(status, 403, "{refused:#}");
    assert_eq!(refused["error"], "called_number_of_other_tenant");

    // The agents see the call at Arnhem, as an exchange call.
    let id = arnhem_call["call_id"].clone();
    let listed = srv
        .calls()
        .await
        .into_iter()
        .find(|c| c["id"] == id)
        .expect("the call is listed");
    assert_eq!(listed["tenant"], "arnhem");
    assert_eq!(listed["via"], "exchange");
    assert_eq!(listed["state"], "waiting");

    // Another municipality's call does not exist for the demo key.
    let (status, _) = pbx.events(DEMO_KEY, &id).await;
    assert_eq!(status, 404);
    assert_eq!(pbx.end(DEMO_KEY, &id).await, 404);
    let still = srv.calls().await.into_iter().find(|c| c["id"] == id);
    assert_eq!(still.map(|c| c["state"].clone()), Some(json!("waiting")));
    let (status, events) = pbx.events(ARNHEM_KEY, &id).await;
    assert_eq!(status, 200);
    let (name, _) = events
        .expect("stream")
        .next(std::time::Duration::from_secs(3))
        .await
        .expect("the first event");
    assert_eq!(name, "waiting");
    assert_eq!(pbx.end(ARNHEM_KEY, &id).await, 204);
    assert_eq!(pbx.end(DEMO_KEY, &json!(9999)).await, 404, "no such call");

    // Guessing keys: after a few wrong ones this address is refused, whatever it presents.
    let mut refused_at = None;
    for attempt in 0..20 {
        let (status, _) = pbx.report(Some("vbx_guess"), &body).await;
        if status == 429 {
            refused_at = Some(attempt);
            break;
        }
        assert_eq!(status, 401);
    }
    assert!(refused_at.is_some(), "wrong keys are never limited");
    let (status, limited) = pbx.report(Some(DEMO_KEY), &body).await;
    assert_eq!(status, 429, "{limited:#}");
    assert_eq!(limited["error"], "rate_limited");
    srv.shutdown().await;
}
