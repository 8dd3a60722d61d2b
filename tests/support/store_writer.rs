//! Test support: the steps a store writer of the restart tests takes, each its own transaction as
//! the service does it. Include with `#[path = "support/store_writer.rs"] mod store_writer;` (not
//! part of `support/mod.rs`).

use veilig_bellen::store::{
    FrontendToken, LinkCode, RedbStore, SessionRow, SessionStore, UnixSeconds,
};

/// Inserts session `i` of the demo tenant (IRMA session `irma-{i}`), pending for 15 minutes from
/// `now`.
pub async fn insert_pending(
    store: &RedbStore,
    i: usize,
    token: &FrontendToken,
    code: &LinkCode,
    now: UnixSeconds,
) {
    let row = SessionRow::pending(
        token.clone(),
        "demo".into(),
        format!("irma-{i}"),
        code.clone(),
        now,
        now + 900,
    );
    store.insert(row).await.unwrap();
}

/// Marks the session `token` disclosed with `sealed` attributes, for 5 minutes from `now`.
pub async fn set_disclosed(
    store: &RedbStore,
    token: &FrontendToken,
    sealed: Vec<u8>,
    now: UnixSeconds,
) {
    assert!(store
        .set_disclosed(token.clone(), sealed, now, now + 300)
        .await
        .unwrap());
}
