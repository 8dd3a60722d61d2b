//! Codes expire 15 minutes after the session starts while the citizen has not disclosed, and 5
//! minutes after the disclosure once they have (the time to make the call); attributes are purged
//! when the code expires or the call's hold time passes, and old rows are forgotten — all with
//! simulated time (`now` is passed in), so nothing here sleeps for minutes.

use crate::links_common;

use std::sync::Arc;

use links_common::{code_from_return_url, start_app, start_memory_app};
use serde_json::json;
use veilig_bellen::links::{LinkConfig, Unverified};
use veilig_bellen::pii::Pii;
use veilig_bellen::store::{
    BindOutcome, FrontendToken, LinkCode, MemoryStore, SessionRow, SessionState, SessionStore,
};
use veilig_bellen::tenant::TenantId;
use veilig_bellen::time::unix_now;

const TTL: u64 = 15 * 60;
/// A disclosed code's time for the call.
const CALL: u64 = 5 * 60;

#[tokio::test]
async fn a_code_binds_until_its_last_second_and_not_after() {
    let store = MemoryStore::new();
    let (early, late) = (LinkCode::generate(), LinkCode::generate());
    for code in [&early, &late] {
        let token = FrontendToken::generate();
        let row = SessionRow::pending(
            token.clone(),
            "demo".into(),
            "t".into(),
            code.clone(),
            1000,
            1000 + TTL,
        );
        store.insert(row).await.unwrap();
        assert!(store
            .set_disclosed(token, b"x".to_vec(), 1001, 1001 + CALL)
            .await
            .unwrap());
    }
    let bound = store
        .bind(early, "demo".into(), "c1".into(), 1001 + CALL - 1, 99_999)
        .await
        .unwrap();
    assert!(matches!(bound, BindOutcome::Bound { .. }));
    assert_eq!(
        store
            .bind(
                late.clone(),
                "demo".into(),
                "c2".into(),
                1001 + CALL,
                99_999
            )
            .await
            .unwrap(),
        BindOutcome::Expired
    );
    assert_eq!(
        store.sealed_count(),
        1,
        "the expired code's attributes are purged at once"
    );
    assert_eq!(
        store
            .bind(late, "demo".into(), "c3".into(), 1001 + CALL + 5, 99_999)
            .await
            .unwrap(),
        BindOutcome::Expired
    );
}

#[tokio::test]
async fn a_call_after_fifteen_minutes_gets_expired_code() {
    let (store, app) = start_memory_app().await;
    let started_at = unix_now();
    let session = app.start_session().await;
    let token = session["token"].as_str().unwrap();
    let answer = app.app_disclose(&session, json!({"attributes": {}})).await;
    let code = code_from_return_url(answer["clientReturnUrl"].as_str().unwrap());
    assert_eq!(app.status(token, 10).await["status"], "done");

    let late = app
        .links
        .bind_code(
            &TenantId("demo".into()),
            &Pii::new(code.clone()),
            "call-1",
            started_at + TTL + 1,
        )
        .await;
    assert_eq!(late.err(), Some(Unverified::ExpiredCode));
    assert_eq!(store.sealed_count(), 0);
    assert_eq!(app.status(token, 0).await["status"], "expired");
}

#[tokio::test]
async fn a_disclosed_code_gives_five_minutes_for_the_call() {
    let (store, app) = start_memory_app().await;
    let session = app.start_session().await;
    let answer = app.app_disclose(&session, json!({"attributes": {}})).await;
    let code = code_from_return_url(answer["clientReturnUrl"].as_str().unwrap());
    let token = session["token"].as_str().unwrap();
    assert_eq!(app.status(token, 10).await["status"], "done");
    let disclosed_at = unix_now();
    let row = store
        .get(FrontendToken::parse(token).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(
        (disclosed_at - 1..=disclosed_at).contains(&(row.expires_at - CALL)),
        "expires {} s after the disclosure, not {} s after the start",
        CALL,
        TTL
    );

    let late = app
        .links
        .bind_code(
            &TenantId("demo".into()),
            &Pii::new(code),
            "call-1",
            row.expires_at,
        )
        .await;
    assert_eq!(late.err(), Some(Unverified::ExpiredCode));
    assert_eq!(store.sealed_count(), 0);
}

#[tokio::test]
async fn maintenance_expires_unused_codes_and_cancels_their_irma_sessions() {
    let (store, app) = start_memory_app().await;
    let now = unix_now();
    let scanned = app.start_session().await;
    let unscanned = app.start_session().await;
    app.app_disclose(&scanned, json!({"attributes": {}})).await;
    assert_eq!(
        app.status(scanned["token"].as_str().unwrap(), 10).await["status"],
        "done"
    );
    assert_eq!(store.sealed_count(), 1);

    app.links.purge(now + CALL - 5).await.unwrap();
    assert_eq!(store.sealed_count(), 1, "nothing expires early");
    app.links.purge(now + CALL + 5).await.unwrap();
    assert_eq!(
        store.sealed_count(),
        0,
        "the disclosure nobody called with is purged after the call window"
    );
    assert_eq!(
        app.status(scanned["token"].as_str().unwrap(), 0).await["status"],
        "expired"
    );
    app.links.purge(now + TTL - 5).await.unwrap();
    assert_eq!(
        app.status(unscanned["token"].as_str().unwrap(), 0).await["status"],
        "pending",
        "a code not yet disclosed lives its 15 minutes"
    );
    app.links.purge(now + TTL + 5).await.unwrap();
    assert_eq!(
        app.status(unscanned["token"].as_str().unwrap(), 0).await["status"],
        "expired"
    );

    // The abandoned IRMA session was cancelled at the IRMA server (DELETE /session/{token}).
    let token = FrontendToken::parse(unscanned["token"].as_str().unwrap()).unwrap();
    let row = store.get(token).await.unwrap().unwrap();
    let url = format!("{}/irma-sim/session/{}/status", app.base, row.irma_token);
    let status: String = app
        .http
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status, "CANCELLED");
}

#[tokio::test]
async fn a_call_that_never_ends_loses_its_attributes_after_the_hold_time() {
    let store = Arc::new(MemoryStore::new());
    let config = LinkConfig::default();
    let hold = config.call_hold.as_secs();
    let forget = config.forget_after.as_secs();
    let app = start_app(
        store.clone(),
        veilig_bellen::store::AttributeKey::generate(),
        config,
    )
    .await;
    let session = app.start_session().await;
    let answer = app.app_disclose(&session, json!({"attributes": {}})).await;
    let code = code_from_return_url(answer["clientReturnUrl"].as_str().unwrap());
    assert_eq!(
        app.status(session["token"].as_str().unwrap(), 10).await["status"],
        "done"
    );
    let bound_at = unix_now();
    app.links
        .bind_code(
            &TenantId("demo".into()),
            &Pii::new(code.clone()),
            "call-1",
            bound_at,
        )
        .await
        .expect("verified");

    // Past the code's 15 minutes the bound call keeps its attributes; past the hold time it does not.
    app.links.purge(bound_at + TTL + 60).await.unwrap();
    assert_eq!(store.sealed_count(), 1);
    app.links.purge(bound_at + hold).await.unwrap();
    assert_eq!(store.sealed_count(), 0);
    let token = FrontendToken::parse(session["token"].as_str().unwrap()).unwrap();
    assert_eq!(
        store.get(token.clone()).await.unwrap().unwrap().state,
        SessionState::Consumed
    );

    // A day later the row and its code are forgotten.
    app.links.purge(bound_at + hold + forget + 1).await.unwrap();
    assert!(store.get(token).await.unwrap().is_none());
    let late = app
        .links
        .bind_code(
            &TenantId("demo".into()),
            &Pii::new(code),
            "call-2",
            bound_at + hold + forget + 2,
        )
        .await;
    assert_eq!(late.err(), Some(Unverified::UnknownCode));
}
