//! The [`SessionStore`] contract, written once over the trait and run against every backend
//! (memory, redb, PostgreSQL: `tests/store_postgres.rs`): every transition of
//! `src/store/rules.rs` as each backend applies it, with simulated time. `sealed` counts the
//! sealed attribute sets the backend holds, so purging is checked in the store itself.
//!
//! The calls bind with keys `<n>-run@<instance>`, as a named instance's calls do, so a shared store
//! opened as `instance` ends them at `end_cut_off_calls` like a store one process owns.

use veilig_bellen::store::{
    BindOutcome, ConsumeKey, FrontendToken, LinkCode, SessionRow, SessionState, SessionStore,
    StoreError,
};

const T0: u64 = 1_000_000;

fn pending(tenant: &str, expires_at: u64) -> SessionRow {
    SessionRow::pending(
        FrontendToken::generate(),
        tenant.into(),
        "irma-token".into(),
        LinkCode::generate(),
        T0,
        expires_at,
    )
}

/// Inserts a pending row and discloses it at `T0 + 1` until `call_until`.
async fn disclosed(store: &dyn SessionStore, sealed: &[u8], call_until: u64) -> SessionRow {
    let row = pending("demo", T0 + 900);
    store.insert(row.clone()).await.expect("insert");
    assert!(store
        .set_disclosed(row.token.clone(), sealed.to_vec(), T0 + 1, call_until)
        .await
        .expect("set_disclosed"));
    store
        .get(row.token.clone())
        .await
        .expect("get")
        .expect("row")
}

/// `store.bind` of `row`'s code for the demo tenant, which must bind.
async fn bind_demo(
    store: &dyn SessionStore,
    row: &SessionRow,
    call_id: String,
    now: u64,
    hold: u64,
) {
    let outcome = store
        .bind(row.code.clone(), "demo".into(), call_id, now, hold)
        .await
        .expect("bind");
    assert!(matches!(outcome, BindOutcome::Bound { .. }), "{outcome:?}");
}

/// The whole contract on an empty `store`; `sealed()` counts its sealed attribute sets.
pub async fn contract(store: &dyn SessionStore, instance: &str, sealed: impl AsyncFn() -> u64) {
    let call = |n: u32| format!("{n}-run@{instance}");
    assert_eq!(sealed().await, 0, "starts empty");

    // insert / get, codes and tokens unique.
    let a = pending("demo", T0 + 900);
    store.insert(a.clone()).await.expect("insert");
    assert_eq!(store.get(a.token.clone()).await.unwrap(), Some(a.clone()));
    assert_eq!(store.get(FrontendToken::generate()).await.unwrap(), None);
    let mut same_code = pending("demo", T0 + 900);
    same_code.code = a.code.clone();
    assert!(matches!(
        store.insert(same_code).await,
        Err(StoreError::CodeTaken)
    ));
    let mut same_token = pending("demo", T0 + 900);
    same_token.token = a.token.clone();
    assert!(matches!(
        store.insert(same_token).await,
        Err(StoreError::TokenTaken)
    ));
    let pending_rows = store.pending().await.unwrap();
    assert_eq!(pending_rows, vec![a.clone()]);

    // Not disclosed yet: no bind, no peek.
    assert_eq!(
        store
            .bind(a.code.clone(), "demo".into(), call(1), T0 + 1, T0 + 5000)
            .await
            .unwrap(),
        BindOutcome::NotDisclosed
    );
    assert_eq!(
        store
            .peek(a.code.clone(), "demo".into(), T0 + 1)
            .await
            .unwrap(),
        None
    );

    // Disclosed once.
    assert!(store
        .set_disclosed(a.token.clone(), b"sealed-a".to_vec(), T0 + 1, T0 + 301)
        .await
        .unwrap());
    assert!(!store
        .set_disclosed(a.token.clone(), b"again".to_vec(), T0 + 2, T0 + 302)
        .await
        .unwrap());
    let row = store.get(a.token.clone()).await.unwrap().unwrap();
    assert_eq!(
        (row.state, row.expires_at, row.updated_at),
        (SessionState::Disclosed, T0 + 301, T0 + 1)
    );
    assert_eq!(sealed().await, 1);
    assert!(store.pending().await.unwrap().is_empty());

    // peek: only for the issuing tenant, changes nothing.
    let (peeked, bytes) = store
        .peek(a.code.clone(), "demo".into(), T0 + 2)
        .await
        .unwrap()
        .expect("peek of a disclosed code");
    assert_eq!((peeked, bytes.as_slice()), (row.clone(), &b"sealed-a"[..]));
    assert_eq!(
        store
            .peek(a.code.clone(), "elsewhere".into(), T0 + 2)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .peek(a.code.clone(), "demo".into(), T0 + 301)
            .await
            .unwrap(),
        None,
        "expired at its last second"
    );

    // bind: unknown codes and other tenants' codes are Unknown; one call wins, again and again.
    assert_eq!(
        store
            .bind(
                LinkCode::generate(),
                "demo".into(),
                call(1),
                T0 + 3,
                T0 + 5000
            )
            .await
            .unwrap(),
        BindOutcome::Unknown
    );
    assert_eq!(
        store
            .bind(
                a.code.clone(),
                "elsewhere".into(),
                call(1),
                T0 + 3,
                T0 + 5000
            )
            .await
            .unwrap(),
        BindOutcome::Unknown
    );
    let BindOutcome::Bound {
        row: bound,
        sealed: bytes,
    } = store
        .bind(a.code.clone(), "demo".into(), call(1), T0 + 3, T0 + 5000)
        .await
        .unwrap()
    else {
        panic!("a disclosed code binds");
    };
    assert_eq!(bytes, b"sealed-a");
    assert_eq!(
        (
            bound.state,
            bound.call_id.clone(),
            bound.expires_at,
            bound.updated_at
        ),
        (SessionState::Bound, Some(call(1)), T0 + 5000, T0 + 3)
    );
    assert_eq!(
        store.get(a.token.clone()).await.unwrap(),
        Some(bound.clone())
    );
    bind_demo(store, &a, call(1), T0 + 4, T0 + 5000).await;
    assert_eq!(
        store
            .bind(a.code.clone(), "demo".into(), call(2), T0 + 4, T0 + 5000)
            .await
            .unwrap(),
        BindOutcome::Used { by: Some(call(1)) }
    );

    // consume by call: Consumed, attributes gone, code stays used.
    assert!(store
        .consume(ConsumeKey::Call(call(1)), T0 + 10)
        .await
        .unwrap());
    assert!(!store
        .consume(ConsumeKey::Call(call(1)), T0 + 11)
        .await
        .unwrap());
    assert!(!store
        .consume(ConsumeKey::Call(call(99)), T0 + 11)
        .await
        .unwrap());
    assert_eq!(
        store.get(a.token.clone()).await.unwrap().unwrap().state,
        SessionState::Consumed
    );
    assert_eq!(sealed().await, 0);
    assert_eq!(
        store
            .bind(a.code.clone(), "demo".into(), call(1), T0 + 12, T0 + 5000)
            .await
            .unwrap(),
        BindOutcome::Used { by: Some(call(1)) }
    );

    // set_failed: only from Pending, only to Cancelled/Expired.
    let b = pending("demo", T0 + 900);
    store.insert(b.clone()).await.unwrap();
    assert!(!store
        .set_failed(b.token.clone(), SessionState::Bound, T0 + 5)
        .await
        .unwrap());
    assert!(store
        .set_failed(b.token.clone(), SessionState::Cancelled, T0 + 5)
        .await
        .unwrap());
    assert!(!store
        .set_failed(b.token.clone(), SessionState::Expired, T0 + 6)
        .await
        .unwrap());
    assert_eq!(
        store
            .bind(b.code.clone(), "demo".into(), call(3), T0 + 7, T0 + 5000)
            .await
            .unwrap(),
        BindOutcome::IrmaFailed
    );

    // A bind after the code expired: Expired, attributes purged at once.
    let late = disclosed(store, b"sealed-late", T0 + 301).await;
    assert_eq!(sealed().await, 1);
    assert_eq!(
        store
            .bind(
                late.code.clone(),
                "demo".into(),
                call(4),
                T0 + 301,
                T0 + 5000
            )
            .await
            .unwrap(),
        BindOutcome::Expired
    );
    assert_eq!(sealed().await, 0);
    assert_eq!(
        store.get(late.token.clone()).await.unwrap().unwrap().state,
        SessionState::Expired
    );

    // consume by session: a disclosed row never bound becomes Expired.
    let given_up = disclosed(store, b"sealed-g", T0 + 301).await;
    assert!(store
        .consume(ConsumeKey::Session(given_up.token.clone()), T0 + 20)
        .await
        .unwrap());
    assert_eq!(
        store
            .get(given_up.token.clone())
            .await
            .unwrap()
            .unwrap()
            .state,
        SessionState::Expired
    );
    assert_eq!(sealed().await, 0);

    // purge_expired: pending past its time (abandoned), disclosed past its call window, bound past
    // its hold; then terminal rows before the cutoff are forgotten with their codes.
    let c = pending("demo", T0 + 900);
    store.insert(c.clone()).await.unwrap();
    let d = disclosed(store, b"sealed-d", T0 + 301).await;
    let e = disclosed(store, b"sealed-e", T0 + 301).await;
    bind_demo(store, &e, call(5), T0 + 30, T0 + 600).await;
    assert_eq!(sealed().await, 2);
    let early = store.purge_expired(T0 + 300, 0).await.unwrap();
    assert_eq!(
        (
            early.abandoned.len(),
            early.attributes_purged,
            early.forgotten
        ),
        (0, 0, 0)
    );
    let purged = store.purge_expired(T0 + 900, 0).await.unwrap();
    assert_eq!(purged.attributes_purged, 3);
    assert_eq!(purged.forgotten, 0);
    assert_eq!(
        purged
            .abandoned
            .iter()
            .map(|r| &r.token)
            .collect::<Vec<_>>(),
        vec![&c.token]
    );
    assert_eq!(sealed().await, 0);
    let state = |t: &FrontendToken| {
        let t = t.clone();
        async move { store.get(t).await.unwrap().map(|r| r.state) }
    };
    assert_eq!(state(&c.token).await, Some(SessionState::Expired));
    assert_eq!(state(&d.token).await, Some(SessionState::Expired));
    assert_eq!(state(&e.token).await, Some(SessionState::Consumed));
    let again = store.purge_expired(T0 + 901, 0).await.unwrap();
    assert_eq!((again.attributes_purged, again.abandoned.len()), (0, 0));
    // Everything up to here is terminal and last touched at or before T0 + 900.
    let forgotten = store.purge_expired(T0 + 1000, T0 + 901).await.unwrap();
    assert_eq!(forgotten.forgotten, 7);
    for token in [
        &a.token,
        &b.token,
        &c.token,
        &d.token,
        &e.token,
        &late.token,
    ] {
        assert_eq!(store.get(token.clone()).await.unwrap(), None);
    }
    let mut reuse = pending("demo", T0 + 2000);
    reuse.code = a.code.clone();
    store
        .insert(reuse)
        .await
        .expect("a forgotten row's code is free again");

    // end_cut_off_calls: this instance's bound calls end, codes stay used; others stay as they are.
    let cut = disclosed(store, b"sealed-cut", T0 + 1301).await;
    let waiting = disclosed(store, b"sealed-waiting", T0 + 1301).await;
    bind_demo(store, &cut, call(6), T0 + 40, T0 + 5000).await;
    assert_eq!(store.end_cut_off_calls(T0 + 50).await.unwrap(), 1);
    assert_eq!(store.end_cut_off_calls(T0 + 51).await.unwrap(), 0, "once");
    let ended = store.get(cut.token.clone()).await.unwrap().unwrap();
    assert_eq!(
        (ended.state, ended.updated_at),
        (SessionState::Consumed, T0 + 50)
    );
    assert_eq!(
        sealed().await,
        1,
        "only the waiting code's attributes are left"
    );
    assert_eq!(
        store
            .bind(cut.code.clone(), "demo".into(), call(7), T0 + 52, T0 + 5000)
            .await
            .unwrap(),
        BindOutcome::Used { by: Some(call(6)) }
    );
    bind_demo(store, &waiting, call(8), T0 + 53, T0 + 5000).await;
}
