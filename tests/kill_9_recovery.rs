//! `kill -9` of `veilig-bellen serve` in each state a link code goes through, then a restart on the
//! same data directory (issue 11). The IRMA server (the irmago stand-in,
//! `support/irmago_standin.rs`) lives in the test and outlives every `serve`; SIPp is the trunk
//! (the code as RFC 4733 events) and the agent's phone; everything on loopback.
//!
//! - **code issued** (session started, not disclosed): the citizen discloses while we are down; the
//!   restarted service follows the session again, the website hears `done`, and the code verifies
//!   one call — the next call with it is `used_code`;
//! - **disclosed**: the code still verifies one call after the restart, then is `used_code`;
//! - **bound to a live call**, and **connected** to an agent: the restart ends the call's link
//!   session — the store on disk holds `Consumed` and no sealed attributes, and it logs how many it
//!   ended (a count, no personal data) — a new call with the code is `used_code`, the agents' list
//!   shows no call from before, and the trunk's BYE for the dead call is answered 481. (The agent's
//!   phone of a connected call is not told: the dialog died with the process that knew it.)
//!
//! Before each restart the test opens the store itself and checks the kill hit the state it means
//! to (a pending row, a disclosed row with its sealed attributes, a bound row with them).
//!
//! A kill *during* a write: redb commits each store step as one transaction, so a writer killed
//! mid-stream leaves every row either before or after the step it was in, never half (a row
//! without its code, attributes without a disclosed row, a consumed row still holding them).
//! [`a_write_cut_by_kill_9_is_all_or_nothing`] runs this test binary again as that writer
//! (`--ignored --exact write_loop_child` with `VB_KILL9_WRITER_DB` set), kills it eight times at a
//! random moment inside each kind of step, and checks the reopened file. A step split over two
//! transactions would be caught by most runs, not by every one: where a kill lands is chance.

use crate::support;

use crate::support::irmago_standin;
use crate::support::serve_child;
use crate::support::serve_cli;
use crate::support::store_writer;
use support::ports;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use irmago_standin::IrmagoStandin;
use serde_json::{json, Value};
use serve_child::{Serving, Site, CLASSIFIED_WITHIN};
use serve_cli::{
    Setup, API_TOKEN, ARNHEM, ARNHEM_SITE as SITE, BSN, CITIZEN_BSN, CITIZEN_NAME, IRMA_TOKEN, NAME,
};
use support::agent::AGENT_PASSWORD;
use support::pcap::{dtmf_call_pcap, DtmfPcapConfig};
use support::sipp::{wait_messages, Sipp, TrunkCall};
use support::sipp_phone::{answer_at_once, SippPhone};
use veilig_bellen::store::{
    BindOutcome, ConsumeKey, FrontendToken, LinkCode, RedbStore, SessionState, SessionStore,
};
use veilig_bellen::time::unix_now;

/// How long a trunk call that lives through a restart may wait for the test's go-ahead.
const LIVE_CALL_WAIT: Duration = Duration::from_secs(40);

/// One tenant (Arnhem, asking name and BSN) with one agent, `agent`, whose phone registers with
/// [`AGENT_PASSWORD`]; the IRMA server at `irma_url`.
fn write_config(setup: &Setup, irma_url: &str) -> PathBuf {
    let text = format!(
        "data_dir = \"{data}\"\napi_token = \"{API_TOKEN}\"\n{tables}",
        data = data_dir(setup).display(),
        tables = setup.arnhem_tables(irma_url, AGENT_PASSWORD),
    );
    setup.write_config(&text)
}

fn data_dir(setup: &Setup) -> PathBuf {
    setup.dir.path().join("data")
}

/// The calls this test places, on the [`Site`] of one [`Setup`], whichever life.
impl Site {
    /// A trunk call from `caller` to Arnhem keying `code` (RFC 4733), until the agents' list shows
    /// it `waiting`. `None` when sipp is missing (test skipped).
    async fn call_with_code_until_waiting(
        &self,
        caller: &str,
        code: &str,
    ) -> Option<(Sipp, Value)> {
        let mut call = TrunkCall::new(caller);
        call.called = ARNHEM.to_owned();
        call.pcap = Some(dtmf_call_pcap(code, &DtmfPcapConfig::default()).expect("pcap"));
        call.wait_limit = Some(LIVE_CALL_WAIT);
        call.limit = Some(LIVE_CALL_WAIT + Duration::from_secs(5));
        self.call_until_waiting(&call).await
    }

    /// A call with `code` verifies: the citizen's name and BSN. Hung up after.
    async fn verifies(&self, caller: &str, code: &str) -> Option<()> {
        let (sipp, waiting) = self.call_with_code_until_waiting(caller, code).await?;
        assert_verified(&waiting);
        self.hang_up(sipp, &waiting["id"]).await;
        Some(())
    }

    /// After a restart: the website hears `done` for `token`, a call from `first` with `code`
    /// verifies, and then one from `second` is `used_code`.
    async fn verifies_once(
        &self,
        token: &FrontendToken,
        first: &str,
        second: &str,
        code: &str,
    ) -> Option<()> {
        assert_eq!(
            self.session_status(token.as_str(), SITE).await["status"],
            "done",
            "the restarted service followed the session to its result"
        );
        self.verifies(first, code).await?;
        self.is_used(second, code).await
    }

    /// A call with `code` is turned down as `used_code`, without attributes. Hung up after.
    async fn is_used(&self, caller: &str, code: &str) -> Option<()> {
        let (sipp, waiting) = self.call_with_code_until_waiting(caller, code).await?;
        assert_eq!(waiting["verified"], false, "{waiting:#}");
        assert_eq!(waiting["reason"], "used_code", "{waiting:#}");
        assert_eq!(waiting["attributes"], json!([]), "{waiting:#}");
        self.hang_up(sipp, &waiting["id"]).await;
        Some(())
    }
}

fn assert_verified(waiting: &Value) {
    assert_eq!(waiting["verified"], true, "{waiting:#}");
    assert_eq!(
        waiting["attributes"],
        json!([
            {"id": NAME, "label": "Naam", "value": CITIZEN_NAME},
            {"id": BSN, "label": "BSN", "value": CITIZEN_BSN},
        ]),
        "{waiting:#}"
    );
}

/// One install: the IRMA server, the ports and data directory, the config file, the website.
struct Install {
    standin: IrmagoStandin,
    setup: Setup,
    config: PathBuf,
    site: Site,
}

impl Install {
    async fn new() -> Install {
        let standin = IrmagoStandin::start(ports::port(), IRMA_TOKEN).await;
        let setup = Setup::new();
        let config = write_config(&setup, &standin.url);
        let site = Site::new(&setup);
        Install {
            standin,
            setup,
            config,
            site,
        }
    }

    /// Life number `life` of its `serve`.
    async fn serve(&self, life: u32) -> Serving {
        let stderr = self.config.with_file_name(format!("serve-{life}.stderr"));
        let name = format!("serve (life {life})");
        Serving::start(&self.config, true, "info", stderr, &name).await
    }

    /// A session started on the website, disclosed, the website told `done`: its token and code.
    async fn disclosed_code(&self) -> (FrontendToken, String) {
        let session = self.site.started_arnhem_session(&self.standin).await;
        let token = token_of(&session);
        let code = irmago_standin::disclose_arnhem(&self.standin, &session);
        assert_eq!(
            self.site.session_status(token.as_str(), SITE).await["status"],
            "done"
        );
        (token, code)
    }
}

fn token_of(session: &Value) -> FrontendToken {
    FrontendToken::parse(session["token"].as_str().expect("token")).expect("a frontend token")
}

/// Opens the store of a stopped `serve` (redb's lock keeps it out while one runs): the session's
/// state and how many sealed attribute sets the file holds.
async fn on_disk(setup: &Setup, token: &FrontendToken) -> (Option<SessionState>, u64) {
    let store = RedbStore::open(&data_dir(setup).join("sessions.redb"))
        .expect("the store opens after kill -9");
    let state = store
        .get(token.clone())
        .await
        .expect("reading the row")
        .map(|r| r.state);
    (state, store.sealed_count().expect("counting sealed sets"))
}

/// The JSON log lines of `stderr` whose message contains `text`.
fn log_lines(stderr: &str, text: &str) -> Vec<Value> {
    stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(text))
        })
        .collect()
}

const CUT_OFF_LOG: &str = "calls cut off by an unclean stop";

/// No log of any life (numbered from 1) holds the code, the citizen's data or a calling number
/// (also without its country code).
fn assert_no_personal_data(lives: &[String], code: &str, callers: &[&str]) {
    let mut secrets = vec![code, CITIZEN_NAME, CITIZEN_BSN];
    secrets.extend(callers.iter().flat_map(|c| [*c, &c[3..]]));
    for (life, log) in (1..).zip(lives) {
        for secret in &secrets {
            if let Some(line) = log.lines().find(|l| l.contains(secret)) {
                panic!("personal data ({secret}) in the log of life {life}: {line}");
            }
        }
    }
}

/// Killed with a session started and not yet disclosed; the citizen discloses while we are down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_issued_before_kill_9_is_disclosed_after_the_restart_and_verifies_once() {
    let install = Install::new().await;
    let (setup, site) = (&install.setup, &install.site);
    let mut logs = Vec::new();

    let serve = install.serve(1).await;
    let session = site.started_arnhem_session(&install.standin).await;
    let token = token_of(&session);
    logs.push(serve.kill_9());
    assert_eq!(
        on_disk(setup, &token).await,
        (Some(SessionState::Pending), 0),
        "killed while the session was pending"
    );

    let code = irmago_standin::disclose_arnhem(&install.standin, &session);

    let serve = install.serve(2).await;
    let Some(()) = site
        .verifies_once(&token, "+31612349001", "+31612349002", &code)
        .await
    else {
        return;
    };
    logs.push(serve.kill_9());
    assert!(log_lines(&logs[1], CUT_OFF_LOG).is_empty(), "{}", logs[1]);
    assert_no_personal_data(&logs, &code, &["+31612349001", "+31612349002"]);
}

/// Killed with a disclosed code waiting for its call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_disclosed_before_kill_9_verifies_once_after_the_restart() {
    let install = Install::new().await;
    let (setup, site) = (&install.setup, &install.site);
    let mut logs = Vec::new();

    let serve = install.serve(1).await;
    let (token, code) = install.disclosed_code().await;
    logs.push(serve.kill_9());
    assert_eq!(
        on_disk(setup, &token).await,
        (Some(SessionState::Disclosed), 1),
        "killed with the code disclosed, its attributes sealed on disk"
    );

    let serve = install.serve(2).await;
    let Some(()) = site
        .verifies_once(&token, "+31612349011", "+31612349012", &code)
        .await
    else {
        return;
    };
    logs.push(serve.kill_9());
    assert_eq!(
        on_disk(setup, &token).await,
        (Some(SessionState::Consumed), 0),
        "the call's end purged the attributes"
    );
    assert_no_personal_data(&logs, &code, &["+31612349011", "+31612349012"]);
}

/// A call that was up when `serve` (life 1, its log `log`) was killed: its code and the calling
/// number.
struct CutOff {
    token: FrontendToken,
    code: String,
    caller: &'static str,
    trunk: Sipp,
    log: String,
}

/// What a live call leaves behind a `kill -9`, over two more lives: the first restart ends its link
/// session on disk (checked with that life killed as well) and logs a count; in the next, a call
/// with the code is `used_code`, no call from before is listed, and the trunk's BYE for the dead
/// call gets 481.
async fn after_a_kill_during_a_call(install: &Install, cut: CutOff) {
    let (setup, site) = (&install.setup, &install.site);
    assert_eq!(
        on_disk(setup, &cut.token).await,
        (Some(SessionState::Bound), 1),
        "killed with the code bound to the call, its attributes on disk"
    );
    let mut logs = vec![cut.log];

    let serve = install.serve(2).await;
    logs.push(serve.kill_9());
    let ended = log_lines(&logs[1], CUT_OFF_LOG);
    assert_eq!(ended.len(), 1, "one startup log line:\n{}", logs[1]);
    assert_eq!(ended[0]["fields"]["ended"], 1, "{}", ended[0]);
    assert_eq!(
        on_disk(setup, &cut.token).await,
        (Some(SessionState::Consumed), 0),
        "the restart ended the cut-off call's session and purged its attributes, durably"
    );

    let serve = install.serve(3).await;
    assert_eq!(
        site.calls().await,
        Vec::<Value>::new(),
        "no call from before the kill is listed"
    );
    let used_from = "+31612349099";
    let Some(()) = site.is_used(used_from, &cut.code).await else {
        return;
    };
    cut.trunk.hang_up();
    wait_messages(
        &cut.trunk,
        "a 481 to the trunk's BYE for the dead call",
        Duration::from_secs(5),
        |m| m.contains("SIP/2.0 481"),
    )
    .await;
    logs.push(serve.kill_9());
    assert!(
        log_lines(&logs[2], CUT_OFF_LOG).is_empty(),
        "nothing more to end:\n{}",
        logs[2]
    );
    assert_no_personal_data(&logs, &cut.code, &[cut.caller, used_from]);
}

/// Killed while a verified call waits for an agent (the code bound to it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_live_at_kill_9_keeps_its_code_used_and_loses_its_attributes() {
    let install = Install::new().await;
    let serve = install.serve(1).await;
    let (token, code) = install.disclosed_code().await;
    let caller = "+31612349021";
    let Some((trunk, waiting)) = install
        .site
        .call_with_code_until_waiting(caller, &code)
        .await
    else {
        return;
    };
    assert_verified(&waiting);
    let log = serve.kill_9();

    let cut = CutOff {
        token,
        code,
        caller,
        trunk,
        log,
    };
    after_a_kill_during_a_call(&install, cut).await;
}

/// Killed while a verified call is connected to the agent's phone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_connected_at_kill_9_keeps_its_code_used_loses_its_attributes_and_is_not_listed() {
    let install = Install::new().await;
    let site = &install.site;
    let serve = install.serve(1).await;
    let (token, code) = install.disclosed_code().await;
    let Some(phone) = SippPhone::register(site.sip, &answer_at_once(), false).await else {
        return;
    };
    let caller = "+31612349031";
    let Some((trunk, waiting)) = site.call_with_code_until_waiting(caller, &code).await else {
        return;
    };
    assert_verified(&waiting);
    let id = waiting["id"].clone();
    let answered = site
        .client
        .post(format!("{}/api/v1/calls/{id}/answer", site.http))
        .bearer_auth(API_TOKEN)
        .json(&json!({"agent": "agent"}))
        .send()
        .await
        .expect("POST answer");
    assert_eq!(answered.status(), 202);
    let connected = site
        .wait_for_call(CLASSIFIED_WITHIN, |c| {
            c["id"] == id && c["state"] == "connected"
        })
        .await;
    assert_eq!(connected["agent"], "agent", "{connected:#}");
    assert!(
        phone.messages().contains("ACK sip:agent@"),
        "the phone took the call:\n{}",
        phone.logs()
    );
    let log = serve.kill_9();
    // The agent's phone keeps a dialog nobody will end now (the process that knew it is gone): its
    // scenario would wait for our BYE until its time limit; dropping it ends it.
    drop(phone);

    let cut = CutOff {
        token,
        code,
        caller,
        trunk,
        log,
    };
    after_a_kill_during_a_call(&install, cut).await;
}

// ---- a kill during a write ----------------------------------------------------------------------

const WRITER_DB_ENV: &str = "VB_KILL9_WRITER_DB";
/// The writer stops by itself after this many sessions (bounded, should the parent die first).
const WRITER_MAX_SESSIONS: usize = 2_000;
/// Sealed attributes this big make each disclosing commit write many pages.
const SEALED_LEN: usize = 48 * 1024;

/// The writer: session after session, each step in its own transaction as the service does it
/// (insert, disclose, bind to a call, the call's end). Prints `kill9: begin <token> <code>` before
/// a session and `kill9: did <token> <state>` after each commit.
#[tokio::test(flavor = "current_thread")]
#[ignore = "runs only as the child process of a_write_cut_by_kill_9_is_all_or_nothing"]
async fn write_loop_child() {
    let Some(dir) = std::env::var_os(WRITER_DB_ENV).map(PathBuf::from) else {
        return;
    };
    let store = RedbStore::open(&dir.join("sessions.redb")).unwrap();
    let now = unix_now();
    for i in 0..WRITER_MAX_SESSIONS {
        let (token, code) = (FrontendToken::generate(), LinkCode::generate());
        let call = format!("{i}-writer");
        println!("kill9: begin {} {}", token.as_str(), code.expose());
        store_writer::insert_pending(&store, i, &token, &code, now).await;
        println!("kill9: did {} pending", token.as_str());
        let sealed = vec![(i % 251) as u8; SEALED_LEN];
        store_writer::set_disclosed(&store, &token, sealed, now).await;
        println!("kill9: did {} disclosed", token.as_str());
        let bound = store
            .bind(code, "demo".into(), call.clone(), now, now + 3600)
            .await
            .unwrap();
        assert!(matches!(bound, BindOutcome::Bound { .. }));
        println!("kill9: did {} bound", token.as_str());
        assert!(store.consume(ConsumeKey::Call(call), now).await.unwrap());
        println!("kill9: did {} consumed", token.as_str());
    }
}

/// The state a step leaves a session in, in order.
const STEPS: [Option<SessionState>; 5] = [
    None,
    Some(SessionState::Pending),
    Some(SessionState::Disclosed),
    Some(SessionState::Bound),
    Some(SessionState::Consumed),
];

fn step_of(name: &str) -> usize {
    match name {
        "pending" => 1,
        "disclosed" => 2,
        "bound" => 3,
        "consumed" => 4,
        other => panic!("unknown step {other}"),
    }
}

/// Notes one line of the writer in `sessions` (token, code, steps acknowledged); whether it
/// acknowledged a step.
fn note(sessions: &mut Vec<(String, String, usize)>, line: &str) -> bool {
    // libtest may have started the line (`test write_loop_child ... `).
    let Some((_, ours)) = line.split_once("kill9: ") else {
        return false;
    };
    match ours.split_whitespace().collect::<Vec<_>>().as_slice() {
        ["begin", token, code] => {
            sessions.push((token.to_string(), code.to_string(), 0));
            false
        }
        ["did", token, step] => {
            let last = sessions.last_mut().expect("a begun session");
            assert_eq!(last.0, *token);
            last.2 = step_of(step);
            true
        }
        _ => false,
    }
}

/// One writer killed after `kill_after` acknowledged steps, then the checks on the reopened file.
async fn kill_writer_and_check(kill_after: usize) {
    let dir = tempfile::Builder::new()
        .prefix("vb-kill9-writer-")
        .tempdir()
        .unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            &support::libtest_name(module_path!(), "write_loop_child"),
            "--nocapture",
            "--test-threads=1",
        ])
        .env(WRITER_DB_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the writer");
    let stdout = child.stdout.take().unwrap();
    // (token, code, steps acknowledged)
    let mut sessions: Vec<(String, String, usize)> = Vec::new();
    let mut acked = 0;
    let started = std::time::Instant::now();
    let mut lines = BufReader::new(stdout).lines();
    while acked < kill_after {
        let line = lines
            .next()
            .expect("the writer ended before the kill")
            .unwrap();
        acked += usize::from(note(&mut sessions, &line));
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "writer too slow"
        );
    }
    // SIGKILL a moment later, somewhere inside the writer's next step (one takes a few ms): the
    // random point of the kill is what is under test.
    std::thread::sleep(Duration::from_micros(u64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos()
            % 4_000,
    )));
    child.kill().expect("kill -9 the writer");
    let status = child.wait().unwrap();
    assert!(!status.success(), "the writer was killed, not finished");
    // What it printed before it died: each `did` a commit, a `begin` perhaps an insert in flight.
    for line in lines {
        note(&mut sessions, &line.unwrap());
    }

    let store = RedbStore::open(&dir.path().join("sessions.redb"))
        .expect("reopens after kill -9 mid-write");
    let (last_token, last_code, _) = sessions.last().cloned().expect("sessions");
    let mut holding_attributes = 0;
    let mut last_state = None;
    for (i, (token, _, acked)) in sessions.iter().enumerate() {
        let state = store
            .get(FrontendToken::parse(token).unwrap())
            .await
            .expect("every row reads")
            .map(|r| r.state);
        let is_last = i + 1 == sessions.len();
        // Only the step in flight may or may not have landed.
        let allowed = if is_last {
            &STEPS[*acked..(*acked + 2).min(STEPS.len())]
        } else {
            &STEPS[*acked..=*acked]
        };
        assert!(
            allowed.contains(&state),
            "session {i} of {} (acknowledged {:?}) is {state:?} after the kill",
            sessions.len(),
            STEPS[*acked]
        );
        if matches!(state, Some(SessionState::Disclosed | SessionState::Bound)) {
            holding_attributes += 1;
        }
        last_state = state;
    }
    assert_eq!(
        store.sealed_count().unwrap(),
        holding_attributes,
        "sealed attributes exist exactly for the disclosed and bound rows"
    );
    let pending = store.pending().await.unwrap();
    assert_eq!(
        pending.iter().map(|r| r.token.as_str()).collect::<Vec<_>>(),
        if last_state == Some(SessionState::Pending) {
            vec![last_token.as_str()]
        } else {
            vec![]
        },
    );
    // The code index agrees with the rows: the last code binds, or says why not — never a code
    // pointing at a missing row.
    let now = unix_now();
    let outcome = store
        .bind(
            LinkCode::parse(&last_code).unwrap(),
            "demo".into(),
            "1-after-restart".into(),
            now,
            now + 60,
        )
        .await
        .expect("the code index is whole");
    match last_state {
        None => assert_eq!(outcome, BindOutcome::Unknown),
        Some(SessionState::Pending) => assert_eq!(outcome, BindOutcome::NotDisclosed),
        Some(SessionState::Disclosed) => assert!(matches!(outcome, BindOutcome::Bound { .. })),
        Some(SessionState::Bound | SessionState::Consumed) => {
            assert!(matches!(outcome, BindOutcome::Used { .. }), "{outcome:?}")
        }
        other => panic!("the writer never makes {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_cut_by_kill_9_is_all_or_nothing() {
    // Each step of the cycle of four twice (11 apart), at different distances into the file.
    let jitter = (unix_now() % 4) as usize;
    for kill_after in (0..8).map(|k| 21 + 11 * k + jitter) {
        kill_writer_and_check(kill_after).await;
    }
}
