//! Nothing is lost when the process dies: every session the redb store acknowledged is there after
//! `kill -9` and a restart, its sealed attributes open with the key from the data directory, and
//! a restarted service resumes watching sessions that were still pending.
//!
//! The kill test runs this test binary a second time as the writer (`--ignored --exact
//! restart_writer_child` with `VB_RESTART_DB` set), reads its acknowledgements from stdout, sends
//! SIGKILL mid-stream and reopens the database.

use crate::links_common;
use crate::support::store_writer;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use veilig_bellen::links::LinkConfig;
use veilig_bellen::pii::Pii;
use veilig_bellen::store::{
    AttributeKey, BindOutcome, FrontendToken, LinkCode, RedbStore, SessionState, SessionStore,
};
use veilig_bellen::tenant::TenantId;
use veilig_bellen::time::unix_now;

const DB_ENV: &str = "VB_RESTART_DB";
/// The child stops by itself after this many rows (bounded, in case the parent dies first).
const CHILD_MAX_ROWS: usize = 5_000;
/// The parent kills the child after this many acknowledgements.
const KILL_AFTER: usize = 40;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vb-{name}-{}", FrontendToken::generate()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The writer: inserts disclosed rows one by one and prints `ack <token> <code>` after each commit.
#[test]
#[ignore = "runs only as the child process of killed_writer_loses_no_acknowledged_session"]
fn restart_writer_child() {
    let Some(dir) = std::env::var_os(DB_ENV).map(PathBuf::from) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let key = AttributeKey::load_or_create(&dir).unwrap();
        let store = RedbStore::open(&dir.join("sessions.redb")).unwrap();
        let now = unix_now();
        for i in 0..CHILD_MAX_ROWS {
            let (token, code) = (FrontendToken::generate(), LinkCode::generate());
            store_writer::insert_pending(&store, i, &token, &code, now).await;
            let sealed = key
                .seal(
                    token.as_str().as_bytes(),
                    format!("attributes-{i}").as_bytes(),
                )
                .unwrap();
            store_writer::set_disclosed(&store, &token, sealed, now).await;
            println!("ack {} {} {i}", token.as_str(), code.expose());
        }
    });
}

fn reopen_and_check(dir: &Path, acked: &[(String, String, usize)]) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let key = AttributeKey::load_or_create(dir).unwrap();
        let store =
            RedbStore::open(&dir.join("sessions.redb")).expect("database reopens after kill -9");
        let now = unix_now();
        for (token, code, i) in acked {
            let token = FrontendToken::parse(token).unwrap();
            let row = store
                .get(token.clone())
                .await
                .unwrap()
                .expect("acknowledged row survives");
            assert_eq!(row.state, SessionState::Disclosed);
            let outcome = store
                .bind(
                    LinkCode::parse(code).unwrap(),
                    "demo".into(),
                    format!("call-{i}"),
                    now,
                    now + 60,
                )
                .await
                .unwrap();
            let BindOutcome::Bound { sealed, .. } = outcome else {
                panic!("acknowledged code no longer binds")
            };
            let plain = key
                .open(token.as_str().as_bytes(), &sealed)
                .expect("sealed attributes open after restart");
            assert_eq!(plain, format!("attributes-{i}").as_bytes());
        }
    });
}

#[test]
fn killed_writer_loses_no_acknowledged_session() {
    let dir = temp_dir("kill9");
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            &crate::support::libtest_name(module_path!(), "restart_writer_child"),
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DB_ENV, &dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn writer");
    let stdout = child.stdout.take().unwrap();
    let mut acked = Vec::new();
    let started = Instant::now();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let parts: Vec<&str> = line.split_whitespace().collect();
        if let ["ack", token, code, i] = parts.as_slice() {
            acked.push((token.to_string(), code.to_string(), i.parse().unwrap()));
            if acked.len() >= KILL_AFTER {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "writer too slow"
        );
    }
    // SIGKILL while the writer is in the middle of further transactions.
    child.kill().expect("kill -9 the writer");
    let status = child.wait().unwrap();
    assert!(!status.success(), "the writer was killed, not finished");
    assert_eq!(
        acked.len(),
        KILL_AFTER,
        "writer acknowledged too few rows before dying"
    );

    reopen_and_check(&dir, &acked);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A session started before a restart completes after it: the new process resumes the watcher,
/// the disclosure lands, and the call binds.
#[test]
fn restarted_service_resumes_pending_sessions() {
    let dir = temp_dir("resume");
    let key_dir = dir.clone();
    // The IRMA simulator and public API keep running in their own runtime across the "restart".
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let scratch = Arc::new(veilig_bellen::store::MemoryStore::new());
    let app = server.block_on(links_common::start_app(
        scratch,
        AttributeKey::generate(),
        LinkConfig::default(),
    ));
    let base = app.base.clone();

    // First life: start a session through the service, then kill the runtime (and its watcher).
    let session = {
        let life = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        life.block_on(async {
            let store = Arc::new(RedbStore::open(&dir.join("sessions.redb")).unwrap());
            let key = AttributeKey::load_or_create(&key_dir).unwrap();
            let links = links_common::service(&base, store, key, LinkConfig::default());
            let tenant = links.tenants().single().unwrap().clone();
            links.start(&tenant, unix_now()).await.unwrap()
        })
        // Dropping the runtime drops the watcher task, the service and the database handle.
    };
    let session = serde_json::to_value(&session).unwrap();

    // The citizen scans while we are down.
    let answer = server.block_on(app.app_disclose(&session, json!({"attributes": {}})));
    let code = links_common::code_from_return_url(answer["clientReturnUrl"].as_str().unwrap());

    // Second life: reopen, resume, and the call gets its attributes.
    let life = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    life.block_on(async {
        let (store, key) = veilig_bellen::store::open_data_dir(&key_dir, None).unwrap();
        let links = links_common::service(&base, Arc::new(store), key, LinkConfig::default());
        assert_eq!(links.resume().await.unwrap(), 1);
        let token = FrontendToken::parse(session["token"].as_str().unwrap()).unwrap();
        let (status, _) = links
            .wait_status(&token, Duration::from_secs(10))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(status, veilig_bellen::links::PublicStatus::Done);
        let verified = links
            .bind_code(
                &TenantId("demo".into()),
                &Pii::new(code),
                "call-1",
                unix_now(),
            )
            .await
            .expect("verified after restart");
        assert_eq!(verified.attributes.len(), 2);
    });
    drop(app);
    drop(server);
    std::fs::remove_dir_all(&dir).unwrap();
}
