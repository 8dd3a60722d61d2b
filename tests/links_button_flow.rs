//! The citizen's journey against the IRMA simulator: the website button starts a session, the Yivi
//! app discloses and receives `tel:<number>,<code>`, and the call that dials with that code gets the
//! verified attributes — once.

use crate::links_common;

use links_common::{code_from_return_url, start_memory_app};
use serde_json::json;
use veilig_bellen::irma::simulator::Simulator;
use veilig_bellen::links::Unverified;
use veilig_bellen::pii::Pii;
use veilig_bellen::store::FrontendToken;
use veilig_bellen::tenant::TenantId;
use veilig_bellen::time::unix_now;

#[tokio::test]
async fn button_disclosure_gives_the_call_verified_attributes() {
    let (store, app) = start_memory_app().await;

    let session = app.start_session().await;
    let token = session["token"].as_str().expect("token");
    assert!(session["sessionPtr"]["u"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{}/irma-sim/irma/session/", app.base)));
    assert_eq!(session["sessionPtr"]["irmaqr"], "disclosing");
    assert!(session["frontendRequest"]["authorization"].is_string());
    assert_eq!(app.status(token, 0).await["status"], "pending");

    let answer = app.app_disclose(&session, json!({"attributes": {}})).await;
    assert_eq!(answer["status"], "DONE");
    let code = code_from_return_url(answer["clientReturnUrl"].as_str().expect("clientReturnUrl"));

    let status = app.status(token, 10).await;
    assert_eq!(status["status"], "done");
    assert_eq!(status["tenantName"], "Gemeente Demodam");
    assert_eq!(store.sealed_count(), 1, "attributes cached, sealed");

    let verified = app
        .links
        .bind_code(
            &TenantId("demo".into()),
            &Pii::new(code.clone()),
            "call-1",
            unix_now(),
        )
        .await
        .expect("verified");
    assert_eq!(verified.tenant.0, "demo");
    assert_eq!(verified.session, FrontendToken::parse(token).unwrap());
    let got: Vec<(&str, Option<&str>)> = verified
        .attributes
        .iter()
        .map(|a| (a.id.as_str(), a.value.expose().as_deref()))
        .collect();
    let fullname = "irma-demo.gemeente.personalData.fullname";
    let bsn = "irma-demo.gemeente.personalData.bsn";
    assert_eq!(
        got,
        vec![
            (fullname, Some(Simulator::demo_value(fullname))),
            (bsn, Some(Simulator::demo_value(bsn)))
        ]
    );
    assert_eq!(verified.attributes[1].label_nl, "BSN");

    // The same code from another call: used. From the same call again: the same answer.
    let again = app
        .links
        .bind_code(
            &TenantId("demo".into()),
            &Pii::new(code.clone()),
            "call-2",
            unix_now(),
        )
        .await;
    assert_eq!(again.err(), Some(Unverified::UsedCode));
    assert!(app
        .links
        .bind_code(
            &TenantId("demo".into()),
            &Pii::new(code.clone()),
            "call-1",
            unix_now()
        )
        .await
        .is_ok());

    // The call ends: attributes purged, the code stays used.
    assert!(app.links.release_call("call-1", unix_now()).await);
    assert_eq!(store.sealed_count(), 0);
    let after = app
        .links
        .bind_code(
            &TenantId("demo".into()),
            &Pii::new(code.clone()),
            "call-1",
            unix_now(),
        )
        .await;
    assert_eq!(after.err(), Some(Unverified::UsedCode));
    assert_eq!(app.status(token, 0).await["status"], "done");

    for body in app.bodies.lock().unwrap().iter() {
        assert!(
            !body.contains(&code),
            "a response body contains the link code"
        );
    }
}

#[tokio::test]
async fn declined_disclosure_leaves_the_call_unverified() {
    let (store, app) = start_memory_app().await;
    let session = app.start_session().await;
    let token = session["token"].as_str().unwrap();
    let answer = app.app_disclose(&session, json!({"cancel": true})).await;
    assert_eq!(answer["status"], "CANCELLED");
    assert!(
        answer.get("clientReturnUrl").is_none(),
        "a declining app is not sent to the phone"
    );
    assert_eq!(app.status(token, 10).await["status"], "cancelled");
    assert_eq!(store.sealed_count(), 0);
}

#[tokio::test]
async fn invalid_proof_is_not_accepted() {
    let (store, app) = start_memory_app().await;
    let session = app.start_session().await;
    let token = session["token"].as_str().unwrap();
    let answer = app
        .app_disclose(
            &session,
            json!({"attributes": {}, "proofStatus": "INVALID"}),
        )
        .await;
    let code = code_from_return_url(
        answer["clientReturnUrl"]
            .as_str()
            .expect("the app still gets the URL"),
    );
    assert_eq!(app.status(token, 10).await["status"], "cancelled");
    let bound = app
        .links
        .bind_code(
            &TenantId("demo".into()),
            &Pii::new(code),
            "call-1",
            unix_now(),
        )
        .await;
    assert_eq!(bound.err(), Some(Unverified::IrmaError));
    assert_eq!(store.sealed_count(), 0);
}

#[tokio::test]
async fn digits_that_are_not_a_code_name_their_problem() {
    let (_, app) = start_memory_app().await;
    for (digits, reason) in [
        ("", Unverified::NoCode),
        ("1234", Unverified::IncompleteCode),
        ("12345678", Unverified::UnknownCode),
        ("123456789", Unverified::UnknownCode),
    ] {
        let bound = app
            .links
            .bind_code(
                &TenantId("demo".into()),
                &Pii::new(digits.to_owned()),
                "call",
                unix_now(),
            )
            .await;
        assert_eq!(bound.err(), Some(reason));
    }
}
