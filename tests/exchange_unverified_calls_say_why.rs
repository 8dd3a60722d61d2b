//! The municipality's exchange reports calls whose code does not prove who calls: each answer is
//! `verified: false` with the same reason a trunk call would get, and the agents see it so:
//! no code, too few digits, an unknown code, a used code (which flags the call that used it
//! `code_reused`), an expired code, a code from another number than the disclosed mobile number
//! (caller-ID binding), and a number that guessed too often.

use crate::support;

use std::time::Duration;

use serde_json::{json, Value};
use support::exchange::{other_code, two_tenants, Pbx, DEMO_KEY};
use support::server::{self, TestServer};
use veilig_bellen::server::ServerConfig;
use veilig_bellen::tenant::{AllowedAttribute, Tenants};

/// The listed call `answer` names.
async fn listed(srv: &TestServer, answer: &Value) -> Value {
    srv.calls()
        .await
        .into_iter()
        .find(|c| c["id"] == answer["call_id"])
        .expect("the call is listed")
}

/// Reports a call from `caller` with `code`; checks the answer and the list say `reason`.
async fn unverified(
    srv: &TestServer,
    pbx: &Pbx,
    caller: &str,
    code: Option<&str>,
    reason: &str,
) -> Value {
    let answer = pbx.call(DEMO_KEY, caller, code).await;
    assert_eq!(answer["verified"], false, "{code:?}: {answer:#}");
    assert_eq!(answer["reason"], reason, "{code:?}: {answer:#}");
    let call = listed(srv, &answer).await;
    assert_eq!(call["verified"], false);
    assert_eq!(call["reason"], reason);
    assert_eq!(call["attributes"], json!([]));
    assert_eq!(
        call["state"], "waiting",
        "listed for the agents all the same"
    );
    call
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_missing_and_used_codes_are_named() {
    let srv = server::start(1, two_tenants).await;
    let pbx = Pbx::new(&srv.http_base);
    unverified(&srv, &pbx, "+31600000301", None, "no_code").await;
    unverified(&srv, &pbx, "+31600000301", Some(""), "no_code").await;
    unverified(&srv, &pbx, "+31600000301", Some("1234"), "incomplete_code").await;
    let code = srv.new_code().await;
    unverified(
        &srv,
        &pbx,
        "+31600000302",
        Some(&other_code(&code)),
        "unknown_code",
    )
    .await;

    let first = pbx.call(DEMO_KEY, "+31600000303", Some(&code)).await;
    assert_eq!(first["verified"], true, "{first:#}");
    let second = unverified(&srv, &pbx, "+31600000304", Some(&code), "used_code").await;
    assert_eq!(second["warnings"], json!([]));
    let flagged = listed(&srv, &first).await;
    assert_eq!(flagged["warnings"], json!(["code_reused"]), "{flagged:#}");
    assert_eq!(flagged["verified"], true, "the first caller stays verified");
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_past_its_call_window_is_expired() {
    let srv = server::start(1, |config| {
        two_tenants(config);
        config.links.call_window = Duration::from_secs(1);
    })
    .await;
    let pbx = Pbx::new(&srv.http_base);
    let code = srv.new_code().await;
    // The time under test: the code outlives its 1 s call window.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    unverified(&srv, &pbx, "+31600000401", Some(&code), "expired_code").await;
    srv.shutdown().await;
}

const MOBILE: &str = "irma-demo.sidn-pbdf.mobilenumber.mobilenumber";

fn bind_caller_id(config: &mut ServerConfig) {
    two_tenants(config);
    let mut tenants: Vec<_> = config.tenants.iter().cloned().collect();
    for tenant in &mut tenants {
        tenant.allowed_attributes.push(AllowedAttribute {
            id: MOBILE.to_owned(),
            label_nl: "Mobiel nummer".to_owned(),
            label_en: "Mobile number".to_owned(),
        });
        tenant.disclosure.push(vec![vec![MOBILE.to_owned()]]);
        tenant.caller_id_attribute = Some(MOBILE.to_owned());
    }
    config.tenants = Tenants::new(tenants);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_caller_id_binding_another_number_is_a_mismatch() {
    let srv = server::start(1, bind_caller_id).await;
    let pbx = Pbx::new(&srv.http_base);
    let code = srv.new_code().await;
    unverified(&srv, &pbx, "+31687654321", Some(&code), "caller_mismatch").await;
    // The citizen's own mobile, as the exchange writes it nationally: verified after all.
    let citizen = pbx.call(DEMO_KEY, "0612345678", Some(&code)).await;
    assert_eq!(citizen["verified"], true, "{citizen:#}");
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_that_guessed_too_often_is_not_looked_up() {
    let srv = server::start(1, two_tenants).await;
    let pbx = Pbx::new(&srv.http_base);
    let code = srv.new_code().await;
    let guesser = "+31600000501";
    let mut wrong = code.clone();
    for _ in 0..5 {
        wrong = other_code(&wrong);
        unverified(&srv, &pbx, guesser, Some(&wrong), "unknown_code").await;
    }
    unverified(&srv, &pbx, guesser, Some(&code), "too_many_wrong_codes").await;
    let citizen = pbx.call(DEMO_KEY, "+31600000502", Some(&code)).await;
    assert_eq!(
        citizen["verified"], true,
        "the code was not spent: {citizen:#}"
    );
    srv.shutdown().await;
}
