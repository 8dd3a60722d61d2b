//! An exchange (or a stolen key) reporting calls without end cannot pile up callers' data: once as
//! many exchange calls are live as the install takes calls (`calls.max_calls`), the next report
//! gets `503` with `Retry-After`, and a report is taken again as soon as a call ended.

use crate::support;

use serde_json::json;
use support::exchange::{two_tenants, Pbx, DEMO_KEY};
use support::server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_beyond_max_calls_get_503_until_one_ends() {
    let srv = server::start(1, |config| {
        two_tenants(config);
        config.calls.max_calls = 2;
    })
    .await;
    let pbx = Pbx::new(&srv.http_base);
    let first = pbx.call(DEMO_KEY, "+31611111111", None).await;
    pbx.call(DEMO_KEY, "+31622222222", None).await;

    let body = json!({"caller": "+31633333333", "called": "+31850000000"});
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/pbx/calls", srv.http_base))
        .bearer_auth(DEMO_KEY)
        .json(&body)
        .send()
        .await
        .expect("POST /api/v1/pbx/calls");
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(answer["error"], "at_capacity");
    assert_eq!(srv.calls().await.len(), 2, "the refused call is not listed");

    assert_eq!(pbx.end(DEMO_KEY, &first["call_id"]).await, 204);
    let third = pbx.call(DEMO_KEY, "+31633333333", None).await;
    assert_eq!(third["verified"], false);
    srv.shutdown().await;
}
