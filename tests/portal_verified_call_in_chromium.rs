//! An agent logs in to the portal in headless Chromium, sees a verified caller appear by itself
//! (SIPp as the trunk, the link code in SIP INFO) with the disclosed name and BSN, the
//! **Geverifieerd** badge and the municipality's link; clicks **Opnemen**, and their own softphone
//! (baresip, registered with the agent's own SIP secret, not the portal password) rings and is
//! connected, the card says verbonden; **Ophangen** ends both legs and the attributes leave the
//! page. The browser part is `tests/browser/portal.test.mjs verified`; screenshots go to
//! `target/portal-screenshots/`. The audit log then holds the login, the answer and the hang-up.
//!
//! Needs node, /usr/bin/chromium, `npm ci --prefix tests/browser`, sipp and baresip; without them
//! the test prints why and passes, unless `CI` is set.

use crate::support;

use serde_json::{json, Value};
use std::time::Duration;
use support::agent::{AgentPhone, Answer};
use support::portal::{portal_call, portal_server, BrowserRun};
use support::server::{expected_attributes, API_TOKEN};
use support::sipp::TrunkCall;

const CALLER: &str = "+31612345678";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_sees_a_verified_caller_live_and_takes_the_call_in_the_browser() {
    if !support::browser::ready("portal test") {
        return;
    }
    let srv = portal_server(|_| {}).await;
    let Some(mut phone) = AgentPhone::register(srv.sip_udp, Answer::Auto).await else {
        return;
    };
    let mut run = BrowserRun::start("verified", &srv.http_base);
    let mut caller = None;
    while let Some((step, data)) = run.next_step().await {
        match step.as_str() {
            "verified-call" => {
                let mut call = TrunkCall::new(CALLER);
                call.info_digits = srv.new_code().await;
                let Some(sipp) = portal_call(&srv, call) else {
                    return;
                };
                caller = Some(sipp);
                let attributes: Vec<Value> = expected_attributes()
                    .into_iter()
                    .map(|(_, label, value)| json!([label, value]))
                    .collect();
                let bsn = veilig_bellen::irma::simulator::Simulator::demo_value(
                    "irma-demo.gemeente.personalData.bsn",
                );
                run.reply(&json!({
                    "caller": CALLER,
                    "attributes": attributes,
                    "link_label": "Zaaksysteem",
                    "link": format!("https://zaken.demodam.example/burger/{bsn}"),
                }))
                .await;
            }
            "connected" => {
                phone
                    .expect_event(
                        "CALL_ESTABLISHED",
                        Duration::from_secs(10),
                        "Opnemen did not connect the agent's phone",
                    )
                    .await;
                let id = data["id"].clone();
                let connected = srv
                    .wait_for_call(Duration::from_secs(5), |c| {
                        c["id"] == id && c["state"] == "connected"
                    })
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(
                    connected["agent"], "agent",
                    "answered as the logged-in agent"
                );
                run.reply(&Value::Null).await;
            }
            "ended" => {
                phone
                    .expect_event(
                        "CALL_CLOSED",
                        Duration::from_secs(5),
                        "Ophangen did not end the agent's leg",
                    )
                    .await;
                run.caller_hung_up(&mut caller, "Ophangen").await;
            }
            other => panic!("unknown step {other}:\n{}", run.output()),
        }
    }
    run.expect_passed(1).await;

    let audit: Vec<Value> = reqwest::Client::new()
        .get(format!("{}/api/v1/audit?tenant=demo", srv.http_base))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .expect("GET /api/v1/audit")
        .json()
        .await
        .expect("audit JSON");
    let actions: Vec<(&str, Option<bool>)> = audit
        .iter()
        .map(|e| (e["action"].as_str().unwrap_or(""), e["verified"].as_bool()))
        .collect();
    assert_eq!(
        actions,
        [
            ("hangup", Some(true)),
            ("answer", Some(true)),
            ("login", None)
        ],
        "{audit:#?}"
    );
    assert!(audit
        .iter()
        .all(|e| e["agent"] == "agent" && e["via"] == "portal"));
    let text = serde_json::to_string(&audit).unwrap_or_default();
    for (_, _, value) in expected_attributes() {
        assert!(
            !text.contains(&value),
            "an attribute value in the audit log"
        );
    }
    phone.stop().await;
    srv.shutdown().await;
}
