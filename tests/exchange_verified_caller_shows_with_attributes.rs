//! A citizen who disclosed with Yivi calls the municipality's own exchange, which reads the code and
//! reports the call by API: the exchange hears `verified: true`, and the agents see the call with
//! the caller's attributes, marked as coming from the exchange with its forwarding number — as JSON
//! and as the form Asterisk's `CURL()` posts. No code, number, attribute value or key reaches the
//! log.

use crate::support;

use serde_json::{json, Value};
use support::exchange::{two_tenants, Pbx, DEMO_KEY};
use support::server::{self, expected_attributes};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_exchange_call_is_listed_with_the_callers_attributes() {
    let logs = support::log_capture::capture_at_trace();
    let srv = server::start(1, two_tenants).await;
    let pbx = Pbx::new(&srv.http_base);
    let code = srv.new_code().await;

    let answer = pbx.call(DEMO_KEY, "+31612345678", Some(&code)).await;
    assert_eq!(answer["verified"], true, "{answer:#}");
    assert_eq!(answer["reason"], Value::Null);
    let id = answer["call_id"].clone();
    assert!(id.is_u64(), "{answer:#}");

    let call = srv
        .calls()
        .await
        .into_iter()
        .find(|c| c["id"] == id)
        .expect("the call is listed");
    assert_eq!(call["state"], "waiting");
    assert_eq!(call["verified"], true);
    assert_eq!(call["via"], "exchange");
    assert_eq!(call["forward_to"], "+31850000099");
    assert_eq!(call["caller"], "+31612345678");
    assert_eq!(
        call["since"], "2025-01-31T08:30:00Z",
        "the exchange's time, in UTC"
    );
    let shown: Vec<(String, String, String)> = call["attributes"]
        .as_array()
        .expect("attributes")
        .iter()
        .map(|a| {
            (
                a["id"].as_str().unwrap_or_default().to_owned(),
                a["label"].as_str().unwrap_or_default().to_owned(),
                a["value"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(shown, expected_attributes());
    assert_eq!(
        call["links"][0]["url"], "https://zaken.demodam.example/burger/999993653",
        "the tenant's links are filled in as for a trunk call"
    );

    // What Asterisk's CURL() posts: a form, the time in Unix seconds.
    let second = srv.new_code().await;
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/pbx/calls", srv.http_base))
        .bearer_auth(DEMO_KEY)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "time=1738312200&caller=%2B31687654321&called=%2B31850000000&code={second}&forward_to="
        ))
        .send()
        .await
        .expect("POST a form");
    assert_eq!(response.status(), 201);
    assert!(response
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .is_some_and(|l| l.starts_with("/api/v1/pbx/calls/")));
    let form_answer: Value = response.json().await.expect("JSON answer");
    assert_eq!(form_answer["verified"], true, "{form_answer:#}");
    let form_call = srv
        .calls()
        .await
        .into_iter()
        .find(|c| c["id"] == form_answer["call_id"])
        .expect("listed");
    assert_eq!(form_call["caller"], "+31687654321");
    assert_eq!(
        form_call["forward_to"],
        Value::Null,
        "an empty forward_to is none"
    );
    assert_eq!(form_call["since"], "2025-01-31T08:30:00Z");

    // A body that is not what the API takes is refused with a reason.
    let (status, bad) = pbx.report(Some(DEMO_KEY), &json!({"code": 12345678})).await;
    assert_eq!(status, 400, "{bad:#}");
    assert_eq!(bad["error"], "bad_request");

    let metrics = veilig_bellen::metrics::global().render();
    assert!(
        metrics.contains("veilig_bellen_exchange_calls_total{outcome=\"verified\"}"),
        "{metrics}"
    );

    for id in [&id, &form_answer["call_id"]] {
        assert_eq!(pbx.end(DEMO_KEY, id).await, 204);
    }
    let log = logs.text();
    assert!(
        log.contains("the municipality's exchange reported a call"),
        "logged at all"
    );
    for secret in [
        code.as_str(),
        second.as_str(),
        "+31612345678",
        "31687654321",
        "Jan de Vries",
        "999993653",
        DEMO_KEY,
    ] {
        assert!(!log.contains(secret), "{secret:?} in the log:\n{log}");
    }
    srv.shutdown().await;
}
