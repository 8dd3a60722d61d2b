//! Guessing link codes does not pay (SIPp as the trunk, codes as SIP INFO digits):
//! - a calling number that gave 5 wrong codes has its next call shown `too_many_wrong_codes`
//!   without a lookup — and the valid code that call carried still verifies from another number;
//! - a second call presenting an already used code flags the call that used it `code_reused`,
//!   in the call list and in the live event stream;
//! - with caller-ID binding, a code from another number than the disclosed mobile number is
//!   `caller_mismatch`, and the citizen's own call with it still verifies.

use crate::support;

use serde_json::Value;
use std::time::Duration;
use support::events::Events;
use support::server::{self, TestServer};
use support::sipp::TrunkCall;
use veilig_bellen::server::ServerConfig;
use veilig_bellen::tenant::AllowedAttribute;

/// Places a call from `caller` that keys `digits` (SIP INFO) and returns the agents' view of it once
/// it waits; then hangs up. `None`: sipp is missing here (test skipped).
async fn call(srv: &TestServer, caller: &str, digits: &str) -> Option<Value> {
    let (sipp, view) = call_and_wait(srv, caller, digits).await?;
    srv.hang_up_and_check_ended(sipp, &view["id"]).await;
    Some(view)
}

async fn call_and_wait(
    srv: &TestServer,
    caller: &str,
    digits: &str,
) -> Option<(support::sipp::Sipp, Value)> {
    let mut call = TrunkCall::new(caller);
    call.info_digits = digits.to_owned();
    srv.call_until_waiting(&call, Duration::from_secs(8)).await
}

/// Eight digits that are not `code`.
fn wrong_code(code: &str, i: u32) -> String {
    let mut wrong = format!("{:08}", 13_572_468 + i * 1_111);
    if wrong == code {
        wrong = format!("{:08}", 24_681_357 + i);
    }
    wrong
}

fn metric(name: &str) -> f64 {
    let text = veilig_bellen::metrics::global().render();
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_wrong_codes_block_the_number_and_the_valid_code_still_verifies_elsewhere() {
    let srv = server::start(4, |_| {}).await;
    let code = srv.new_code().await;
    let guesser = "+31600000101";
    for i in 0..5 {
        let Some(view) = call(&srv, guesser, &wrong_code(&code, i)).await else {
            return;
        };
        assert_eq!(view["reason"], "unknown_code", "guess {i}: {view:#}");
    }
    assert!(metric("veilig_bellen_wrong_codes_total") >= 5.0);
    assert!(metric("veilig_bellen_calling_numbers_blocked_total") >= 1.0);

    // The sixth call carries the real code: not looked up, not spent.
    let Some(blocked) = call(&srv, guesser, &code).await else {
        return;
    };
    assert_eq!(blocked["verified"], false, "{blocked:#}");
    assert_eq!(blocked["reason"], "too_many_wrong_codes", "{blocked:#}");
    assert_eq!(blocked["attributes"], Value::Array(vec![]));

    // The citizen's own phone still verifies with it.
    let Some(citizen) = call(&srv, "+31600000102", &code).await else {
        return;
    };
    assert_eq!(citizen["verified"], true, "{citizen:#}");
    assert_eq!(citizen["reason"], Value::Null);
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_code_flags_the_call_that_used_it() {
    let srv = server::start(4, |_| {}).await;
    let code = srv.new_code().await;
    let Some((first_sipp, first)) = call_and_wait(&srv, "+31600000201", &code).await else {
        return;
    };
    assert_eq!(first["verified"], true, "{first:#}");
    assert_eq!(first["warnings"], serde_json::json!([]), "{first:#}");
    let mut events = Events::open(&srv.http_base).await;

    // Someone else learned the code and calls with it.
    let Some(second) = call(&srv, "+31600000202", &code).await else {
        return;
    };
    assert_eq!(second["reason"], "used_code", "{second:#}");
    assert_eq!(
        second["warnings"],
        serde_json::json!([]),
        "the second call is not flagged"
    );

    let flagged = srv
        .wait_for_call(Duration::from_secs(2), |c| c["id"] == first["id"])
        .await
        .expect("first call listed");
    assert_eq!(
        flagged["warnings"],
        serde_json::json!(["code_reused"]),
        "{flagged:#}"
    );
    assert_eq!(flagged["verified"], true, "the first caller stays verified");
    let event = events
        .until(Duration::from_secs(3), |v| {
            v["id"] == first["id"] && v["warnings"] == serde_json::json!(["code_reused"])
        })
        .await;
    assert!(event.is_some(), "the live stream carries the warning");

    // It stays with the call after the call ends.
    let ended = srv.hang_up_and_check_ended(first_sipp, &first["id"]).await;
    assert_eq!(ended["warnings"], serde_json::json!(["code_reused"]));
    srv.shutdown().await;
}

const MOBILE: &str = "irma-demo.sidn-pbdf.mobilenumber.mobilenumber";
/// What the IRMA simulator discloses for a mobile number.
const DISCLOSED_MOBILE: &str = "+31612345678";

fn bind_caller_id(config: &mut ServerConfig) {
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
    config.tenants = veilig_bellen::tenant::Tenants::new(tenants);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_caller_id_binding_only_the_disclosed_mobile_number_verifies() {
    let srv = server::start(4, bind_caller_id).await;
    let code = srv.new_code().await;
    let Some(other) = call(&srv, "+31687654321", &code).await else {
        return;
    };
    assert_eq!(other["verified"], false, "{other:#}");
    assert_eq!(other["reason"], "caller_mismatch", "{other:#}");
    assert_eq!(other["attributes"], Value::Array(vec![]));

    // The citizen's phone, the number written nationally as trunks often do: verified.
    let national = format!("0{}", &DISCLOSED_MOBILE[3..]);
    let Some(citizen) = call(&srv, &national, &code).await else {
        return;
    };
    assert_eq!(citizen["verified"], true, "{citizen:#}");
    let mobile = citizen["attributes"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["id"] == MOBILE))
        .map(|a| a["value"].clone());
    assert_eq!(mobile, Some(Value::from(DISCLOSED_MOBILE)));
    srv.shutdown().await;
}
