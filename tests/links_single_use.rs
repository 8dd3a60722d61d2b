//! A link code binds to exactly one call, even when many calls present it at the same moment: the
//! store decides in one atomic step, for the redb store as for the in-memory one (and PostgreSQL:
//! `store_postgres.rs` runs `race` and `codes_stay_with_their_tenant` there), and through the
//! whole link service.

use crate::links_common;

use std::sync::Arc;

use links_common::{code_from_return_url, start_memory_app};
use serde_json::json;
use veilig_bellen::links::Unverified;
use veilig_bellen::pii::Pii;
use veilig_bellen::store::{
    BindOutcome, FrontendToken, LinkCode, MemoryStore, RedbStore, SessionRow, SessionStore,
};
use veilig_bellen::tenant::TenantId;
use veilig_bellen::time::unix_now;

const CONTENDERS: usize = 32;

pub(crate) async fn race(store: Arc<dyn SessionStore>) {
    let code = LinkCode::generate();
    let token = FrontendToken::generate();
    let row = SessionRow::pending(
        token.clone(),
        "demo".into(),
        "irma-token".into(),
        code.clone(),
        1000,
        1900,
    );
    store.insert(row).await.unwrap();
    assert!(store
        .set_disclosed(token, b"sealed".to_vec(), 1001, 1301)
        .await
        .unwrap());

    let barrier = Arc::new(tokio::sync::Barrier::new(CONTENDERS));
    let tasks: Vec<_> = (0..CONTENDERS)
        .map(|i| {
            let (store, code, barrier) = (store.clone(), code.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                store
                    .bind(code, "demo".into(), format!("call-{i}"), 1002, 9000)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut bound = 0;
    for t in tasks {
        match t.await.unwrap() {
            BindOutcome::Bound { sealed, .. } => {
                assert_eq!(sealed, b"sealed");
                bound += 1;
            }
            BindOutcome::Used { by } => {
                assert!(
                    by.is_some_and(|c| c.starts_with("call-")),
                    "names the winner"
                );
            }
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!(bound, 1, "exactly one call may win the code");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_binds_on_redb_have_one_winner() {
    let dir = std::env::temp_dir().join(format!("vb-single-use-{}", FrontendToken::generate()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = RedbStore::open(&dir.join("sessions.redb")).unwrap();
    race(Arc::new(store)).await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_binds_in_memory_have_one_winner() {
    race(Arc::new(MemoryStore::new())).await;
}

/// A code verifies only a call to the municipality that issued it: dialled to another tenant's
/// number it is `unknown` there (no hint that it exists elsewhere) and stays usable for its own.
pub(crate) async fn codes_stay_with_their_tenant(store: Arc<dyn SessionStore>) {
    let code = LinkCode::generate();
    let token = FrontendToken::generate();
    let row = SessionRow::pending(
        token.clone(),
        "arnhem".into(),
        "irma-token".into(),
        code.clone(),
        1000,
        1900,
    );
    store.insert(row).await.unwrap();
    assert!(store
        .set_disclosed(token.clone(), b"sealed".to_vec(), 1001, 1301)
        .await
        .unwrap());
    let elsewhere = store
        .bind(code.clone(), "nijmegen".into(), "call-n".into(), 1002, 9000)
        .await
        .unwrap();
    assert!(matches!(elsewhere, BindOutcome::Unknown), "{elsewhere:?}");
    let row = store.get(token).await.unwrap().unwrap();
    assert_eq!(
        row.call_id, None,
        "the other tenant's call did not take the code"
    );
    let home = store
        .bind(code, "arnhem".into(), "call-a".into(), 1003, 9000)
        .await
        .unwrap();
    assert!(matches!(home, BindOutcome::Bound { .. }), "{home:?}");
}

#[tokio::test]
async fn a_code_dialled_to_another_tenant_is_unknown_there_in_memory() {
    codes_stay_with_their_tenant(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn a_code_dialled_to_another_tenant_is_unknown_there_on_redb() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(&dir.path().join("sessions.redb")).unwrap();
    codes_stay_with_their_tenant(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_calls_with_one_code_verify_only_one_caller() {
    let (_, app) = start_memory_app().await;
    let session = app.start_session().await;
    let answer = app.app_disclose(&session, json!({"attributes": {}})).await;
    let code = code_from_return_url(answer["clientReturnUrl"].as_str().unwrap());
    assert_eq!(
        app.status(session["token"].as_str().unwrap(), 10).await["status"],
        "done"
    );

    let barrier = Arc::new(tokio::sync::Barrier::new(CONTENDERS));
    let tasks: Vec<_> = (0..CONTENDERS)
        .map(|i| {
            let (links, code, barrier) = (app.links.clone(), code.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                links
                    .bind_code(
                        &TenantId("demo".into()),
                        &Pii::new(code),
                        &format!("call-{i}"),
                        unix_now(),
                    )
                    .await
            })
        })
        .collect();
    let mut verified = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(v) => {
                assert_eq!(v.attributes.len(), 2);
                verified += 1;
            }
            Err(reason) => assert_eq!(reason, Unverified::UsedCode),
        }
    }
    assert_eq!(verified, 1);
}

#[tokio::test]
async fn a_stored_code_is_never_issued_twice() {
    let store = MemoryStore::new();
    let code = LinkCode::generate();
    let first = SessionRow::pending(
        FrontendToken::generate(),
        "demo".into(),
        "a".into(),
        code.clone(),
        1,
        900,
    );
    let second = SessionRow::pending(
        FrontendToken::generate(),
        "demo".into(),
        "b".into(),
        code,
        2,
        900,
    );
    store.insert(first).await.unwrap();
    assert!(matches!(
        store.insert(second).await,
        Err(veilig_bellen::store::StoreError::CodeTaken)
    ));
}
