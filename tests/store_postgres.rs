//! The PostgreSQL session store against a real PostgreSQL (a throwaway cluster per test,
//! `support/postgres.rs`): the same store contract as the memory and redb stores
//! (`support/store_contract.rs`, and the single-use and tenant checks of `links_single_use.rs`),
//! two instances (two stores, each its own pool, as two processes have) racing for the same codes,
//! each instance ending only its own cut-off calls after a restart, and a dead database giving
//! errors, never a panic.

use crate::links_single_use;
use crate::support::postgres::{PgCluster, PASSWORD};
use crate::support::store_contract;

use std::sync::Arc;
use std::time::Duration;

use veilig_bellen::store::{
    BindOutcome, FrontendToken, LinkCode, MemoryStore, PostgresSettings, PostgresStore, RedbStore,
    SessionRow, SessionState, SessionStore, StoreError,
};

/// A store on database `db` of `cluster` as instance `instance`, password given apart from the URL
/// (as `store.password` does).
async fn open(cluster: &PgCluster, db: &str, instance: &str) -> Result<PostgresStore, StoreError> {
    let mut settings = PostgresSettings::new(cluster.url(db), instance);
    settings.password = Some(PASSWORD.to_owned().into());
    settings.max_connections = 8;
    PostgresStore::connect(&settings).await
}

async fn fresh(cluster: &PgCluster, db: &str, instance: &str) -> PostgresStore {
    cluster.create_database(db).await;
    open(cluster, db, instance).await.expect("store opens")
}

#[tokio::test]
async fn the_store_contract_holds_in_memory() {
    let store = MemoryStore::new();
    store_contract::contract(&store, "any", async || store.sealed_count() as u64).await;
}

#[tokio::test]
async fn the_store_contract_holds_on_redb() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(&dir.path().join("sessions.redb")).unwrap();
    store_contract::contract(&store, "any", async || store.sealed_count().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_contract_holds_on_postgres() {
    let cluster = PgCluster::start();
    let store = fresh(&cluster, "contract", "vb-a").await;
    store_contract::contract(&store, "vb-a", async || store.sealed_count().await.unwrap()).await;
    // The single-use race and the tenant check the other backends run in links_single_use.rs.
    let store = fresh(&cluster, "race", "vb-a").await;
    links_single_use::race(Arc::new(store)).await;
    let store = fresh(&cluster, "tenants", "vb-a").await;
    links_single_use::codes_stay_with_their_tenant(Arc::new(store)).await;
}

/// Codes raced for; contenders per code on each instance.
const CODES: usize = 40;
const PER_INSTANCE: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_racing_for_the_same_codes_bind_each_once() {
    let cluster = PgCluster::start();
    cluster.create_database("shared").await;
    let a = Arc::new(open(&cluster, "shared", "vb-a").await.unwrap());
    let b = Arc::new(open(&cluster, "shared", "vb-b").await.unwrap());

    let mut codes = Vec::new();
    for i in 0..CODES {
        // Sessions start on either instance.
        let issuer = if i % 2 == 0 { &a } else { &b };
        let row = SessionRow::pending(
            FrontendToken::generate(),
            "demo".into(),
            format!("irma-{i}"),
            LinkCode::generate(),
            1000,
            1900,
        );
        issuer.insert(row.clone()).await.unwrap();
        assert!(issuer
            .set_disclosed(
                row.token.clone(),
                format!("sealed-{i}").into_bytes(),
                1001,
                1301
            )
            .await
            .unwrap());
        // The other instance can never store a session with the same code (nor the same token).
        let other = if i % 2 == 0 { &b } else { &a };
        let mut dup = SessionRow::pending(
            FrontendToken::generate(),
            "demo".into(),
            "irma-dup".into(),
            row.code.clone(),
            1000,
            1900,
        );
        assert!(matches!(
            other.insert(dup.clone()).await,
            Err(StoreError::CodeTaken)
        ));
        dup.code = LinkCode::generate();
        dup.token = row.token.clone();
        assert!(matches!(
            other.insert(dup).await,
            Err(StoreError::TokenTaken)
        ));
        codes.push(row.code);
    }

    let contenders = 2 * PER_INSTANCE;
    let barrier = Arc::new(tokio::sync::Barrier::new(CODES * contenders));
    let mut tasks = Vec::new();
    for (i, code) in codes.iter().enumerate() {
        for j in 0..contenders {
            let (store, instance) = if j % 2 == 0 {
                (a.clone(), "vb-a")
            } else {
                (b.clone(), "vb-b")
            };
            let (code, barrier) = (code.clone(), barrier.clone());
            let call = format!("{j}-run@{instance}");
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                let outcome = store
                    .bind(code, "demo".into(), call.clone(), 1002, 9000)
                    .await
                    .expect("bind");
                (i, call, outcome)
            }));
        }
    }
    let mut winners: Vec<Vec<String>> = vec![Vec::new(); CODES];
    let mut losers: Vec<Vec<Option<String>>> = vec![Vec::new(); CODES];
    for task in tasks {
        let (i, call, outcome) = tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("binds finish")
            .unwrap();
        match outcome {
            BindOutcome::Bound { sealed, row } => {
                assert_eq!(sealed, format!("sealed-{i}").into_bytes());
                assert_eq!(row.call_id.as_deref(), Some(call.as_str()));
                winners[i].push(call);
            }
            BindOutcome::Used { by } => losers[i].push(by),
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    for i in 0..CODES {
        assert_eq!(
            winners[i].len(),
            1,
            "code {i}: exactly one call wins: {:?}",
            winners[i]
        );
        assert_eq!(losers[i].len(), contenders - 1);
        assert!(
            losers[i]
                .iter()
                .all(|by| by.as_ref() == Some(&winners[i][0])),
            "code {i}: every other call hears who won"
        );
    }
    let a_won = winners.iter().filter(|w| w[0].ends_with("@vb-a")).count();
    eprintln!(
        "instance a won {a_won} of {CODES} codes, b {}",
        CODES - a_won
    );
}

/// A disclosed row in `store` (demo tenant, code valid for calls until 1301).
async fn disclosed_row(store: &PostgresStore) -> SessionRow {
    let row = SessionRow::pending(
        FrontendToken::generate(),
        "demo".into(),
        "irma".into(),
        LinkCode::generate(),
        1000,
        1900,
    );
    store.insert(row.clone()).await.expect("insert");
    assert!(store
        .set_disclosed(row.token.clone(), b"sealed".to_vec(), 1001, 1301)
        .await
        .expect("disclosed"));
    row
}

/// Binds a freshly disclosed code of `store` to `call`; the row's token.
async fn bound(store: &PostgresStore, call: &str) -> FrontendToken {
    let row = disclosed_row(store).await;
    assert!(matches!(
        store
            .bind(row.code, "demo".into(), call.into(), 1002, 5000)
            .await
            .unwrap(),
        BindOutcome::Bound { .. }
    ));
    row.token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_instance_ends_only_its_own_cut_off_calls() {
    let cluster = PgCluster::start();
    cluster.create_database("shared").await;
    let a = open(&cluster, "shared", "vb-a").await.unwrap();
    let b = open(&cluster, "shared", "vb-b").await.unwrap();
    let c = open(&cluster, "shared", "vb-c").await.unwrap();
    // A look-alike name must not match: `vb-a` is not `x-vb-a`.
    let lookalike = open(&cluster, "shared", "x-vb-a").await.unwrap();
    let a_call = bound(&a, "1-0aa@vb-a").await;
    let b_call = bound(&b, "1-0bb@vb-b").await;
    let c_call = bound(&c, "1-0cc@vb-c").await;
    let lookalike_call = bound(&lookalike, "1-0dd@x-vb-a").await;
    let state = |t: &FrontendToken| {
        let (b, t) = (&b, t.clone());
        async move { b.get(t).await.unwrap().unwrap().state }
    };

    // Instance a dies (its pool and name lock go with it) and c dies for good; b lives on.
    drop(a);
    drop(c);
    let restarted = reopen_when_free(&cluster, "vb-a").await;
    assert_eq!(restarted.end_cut_off_calls(1100).await.unwrap(), 1);
    assert_eq!(state(&a_call).await, SessionState::Consumed);
    assert_eq!(
        state(&b_call).await,
        SessionState::Bound,
        "b's live call is b's"
    );
    assert_eq!(
        state(&c_call).await,
        SessionState::Bound,
        "until its hold runs out"
    );
    assert_eq!(state(&lookalike_call).await, SessionState::Bound);
    assert_eq!(restarted.sealed_count().await.unwrap(), 3);

    // b's call goes on: its code still binds to it (a second delivery of the code), ends normally.
    assert!(b
        .consume(
            veilig_bellen::store::ConsumeKey::Call("1-0bb@vb-b".into()),
            1200
        )
        .await
        .unwrap());
    // c never comes back: its call's attributes go at its hold time, in anyone's maintenance.
    let purged = restarted.purge_expired(4999, 0).await.unwrap();
    assert_eq!(purged.attributes_purged, 0);
    let purged = restarted.purge_expired(5000, 0).await.unwrap();
    assert_eq!(purged.attributes_purged, 2, "c's and the look-alike's");
    assert_eq!(state(&c_call).await, SessionState::Consumed);
    assert_eq!(b.sealed_count().await.unwrap(), 0);
}

/// Opens instance `name` again once the dead one's name lock is gone (its connection closing is
/// asynchronous); at most 10 s.
async fn reopen_when_free(cluster: &PgCluster, name: &str) -> PostgresStore {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match open(cluster, "shared", name).await {
            Ok(store) => return store,
            Err(e) if tokio::time::Instant::now() < deadline => {
                assert!(e.to_string().contains("store.instance"), "{e}");
                // The back-off of this bounded wait for the server to see the connection go.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("instance {name} could not be opened again: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_live_instance_with_the_same_name_is_refused() {
    let cluster = PgCluster::start();
    cluster.create_database("shared").await;
    let first = open(&cluster, "shared", "vb-a").await.unwrap();
    let Err(e) = open(&cluster, "shared", "vb-a").await else {
        panic!("two live instances named vb-a would end each other's calls");
    };
    let message = e.to_string();
    assert!(
        message.contains("store.instance") && message.contains("vb-a"),
        "{message}"
    );
    open(&cluster, "shared", "vb-b")
        .await
        .expect("another name is fine");
    drop(first);
    reopen_when_free(&cluster, "vb-a").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_is_created_once_and_a_newer_one_is_refused() {
    let cluster = PgCluster::start();
    cluster.create_database("shared").await;
    // Two instances starting at the same moment both create or find the schema.
    let (a, b) = tokio::join!(
        open(&cluster, "shared", "vb-a"),
        open(&cluster, "shared", "vb-b")
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let client = cluster.client("shared").await;
    let version: i32 = client
        .query_one("SELECT version FROM veilig_bellen_schema", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, veilig_bellen::store::postgres::SCHEMA_VERSION);
    drop((a, b));
    client
        .execute("UPDATE veilig_bellen_schema SET version = 99", &[])
        .await
        .unwrap();
    let Err(e) = open(&cluster, "shared", "vb-c").await else {
        panic!("a newer schema must be refused");
    };
    assert!(e.to_string().contains("schema version 99"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_or_dead_database_is_an_error_not_a_panic() {
    // Nobody listens here.
    let port = crate::support::ports::port();
    let settings = PostgresSettings::new(format!("postgres://vb@127.0.0.1:{port}/x"), "vb-a");
    let Err(e) = PostgresStore::connect(&settings).await else {
        panic!("connected to nothing");
    };
    assert!(matches!(e, StoreError::Backend(_)), "{e:?}");
    assert!(e.to_string().contains("connecting to PostgreSQL"), "{e}");

    // A wrong password is refused with PostgreSQL's reason, the password not in it.
    let mut cluster = PgCluster::start();
    let mut wrong = PostgresSettings::new(cluster.url("postgres"), "vb-a");
    wrong.password = Some("not-the-password".to_owned().into());
    let Err(e) = PostgresStore::connect(&wrong).await else {
        panic!("a wrong password was accepted");
    };
    assert!(
        e.to_string().contains("password authentication failed"),
        "{e}"
    );
    assert!(!e.to_string().contains("not-the-password"));

    // The database goes away under a working store: each step fails with an error.
    let store = fresh(&cluster, "shared", "vb-a").await;
    let token = bound(&store, "1-run@vb-a").await;
    cluster.stop();
    let code = LinkCode::generate();
    let outcome = tokio::time::timeout(
        Duration::from_secs(30),
        store.bind(code, "demo".into(), "2-run@vb-a".into(), 1003, 5000),
    )
    .await
    .expect("fails within the timeouts");
    assert!(
        matches!(outcome, Err(StoreError::Backend(_))),
        "{outcome:?}"
    );
    assert!(matches!(
        store.get(token).await,
        Err(StoreError::Backend(_))
    ));
}

/// A step that waits on a row another transaction holds (a stuck instance, a slow database) ends
/// with an error after the statement timeout instead of waiting for good; the row is then usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_stuck_on_a_locked_row_fails_after_the_statement_timeout() {
    let cluster = PgCluster::start();
    cluster.create_database("stuck").await;
    let mut settings = PostgresSettings::new(cluster.url_with_password("stuck"), "vb-a");
    settings.statement_timeout = Duration::from_millis(700);
    let store = PostgresStore::connect(&settings)
        .await
        .expect("store opens");
    let row = disclosed_row(&store).await;

    let mut db = cluster.client("stuck").await;
    let lock = db.transaction().await.expect("a transaction");
    lock.query(
        "SELECT 1 FROM link_sessions WHERE code = $1 FOR UPDATE",
        &[&row.code.expose()],
    )
    .await
    .expect("the row lock");
    let started = std::time::Instant::now();
    let outcome = tokio::time::timeout(
        Duration::from_secs(20),
        store.bind(
            row.code.clone(),
            "demo".into(),
            "1-run@vb-a".into(),
            1002,
            5000,
        ),
    )
    .await
    .expect("the bind gives up by itself");
    assert!(
        matches!(&outcome, Err(StoreError::Backend(why)) if why.contains("statement timeout")),
        "{outcome:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(600));
    lock.rollback().await.expect("rollback");
    // Nothing half-done: the code binds now.
    assert!(matches!(
        store
            .bind(row.code, "demo".into(), "1-run@vb-a".into(), 1003, 5000)
            .await,
        Ok(BindOutcome::Bound { .. })
    ));
}
