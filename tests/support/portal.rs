//! Test support for the agents' portal: a server with two municipalities whose agents can log in,
//! and a browser script (`tests/browser/portal.test.mjs`) that the test steers step by step.
//!
//! Tenants: the demo tenant (agent `agent`, supervisor, portal password [`PORTAL_PASSWORD`], SIP
//! secret [`super::agent::AGENT_PASSWORD`]) and `arnhem` (number [`ARNHEM_NUMBER`], agent `jan`,
//! portal password [`JAN_PASSWORD`], SIP secret [`JAN_SIP_PASSWORD`]). Portal and SIP secrets
//! differ, as in a real config. Calls without digits are classified after 1.5 s.
//!
//! Steps: the script prints `STEP <name> <json>` when it needs the test to act (place a call, check
//! the agent's phone) and waits for one line of JSON on its stdin. It ends with `N passed, N failed`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};
use veilig_bellen::server::ServerConfig;
use veilig_bellen::sip_driver::Credentials;
use veilig_bellen::tenant::{Agent, AgentId, PasswordHash, Tenant, TenantId, Tenants};

use super::server::TestServer;
use super::sipp::{Sipp, TrunkCall};

/// Portal password of the demo tenant's agent `agent`.
pub const PORTAL_PASSWORD: &str = "portal-pw-h10";
/// The other municipality's number.
pub const ARNHEM_NUMBER: &str = "+31263770000";
/// Portal password of `arnhem`'s agent `jan`.
pub const JAN_PASSWORD: &str = "jan-portal-pw-h10";
/// SIP secret of `jan`'s softphone.
pub const JAN_SIP_PASSWORD: &str = "jan-sip-pw-h10";
/// Longest one step of the browser script may take the test.
pub const STEP_LIMIT: Duration = Duration::from_secs(60);

/// The two-tenant configuration described in the module docs, changed by `tweak`.
pub fn two_tenants(c: &mut ServerConfig) {
    let portal = PasswordHash::hash(PORTAL_PASSWORD).expect("hash");
    let mut demo = Tenant::demo();
    for agent in demo.agents.values_mut() {
        agent.password_hash = Some(portal.clone());
        agent.supervisor = true;
    }
    let mut arnhem = Tenant::demo();
    arnhem.id = TenantId("arnhem".into());
    arnhem.display_name = "Gemeente Arnhem".into();
    arnhem.phone_number = ARNHEM_NUMBER.into();
    arnhem.called_numbers = vec![ARNHEM_NUMBER.into()];
    arnhem.agents = [(
        AgentId("jan".into()),
        Agent {
            id: AgentId("jan".into()),
            display_name: "Jan Jansen".into(),
            sip_username: "jan".into(),
            password_hash: Some(PasswordHash::hash(JAN_PASSWORD).expect("hash")),
            supervisor: false,
            srtp: Default::default(),
        },
    )]
    .into();
    c.tenants = Tenants::new(vec![demo, arnhem]);
    c.sip.credentials.push(Credentials {
        username: "jan".into(),
        password: JAN_SIP_PASSWORD.into(),
    });
    c.calls.call.collect.first_digit_timeout = Duration::from_millis(1500);
    c.calls.call.collect.inter_digit_timeout = Duration::from_millis(1000);
}

/// A server as [`two_tenants`] describes (and [`super::agent::server_with_agent`] for `agent`'s
/// phone), changed by `tweak`.
pub async fn portal_server(tweak: impl FnOnce(&mut ServerConfig)) -> TestServer {
    super::agent::server_with_agent(|c| {
        two_tenants(c);
        tweak(c);
    })
    .await
}

/// Where the portal tests put their screenshots: `target/portal-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/portal-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot directory");
    dir
}

/// What the browser script logs in with.
pub fn credentials() -> Value {
    serde_json::json!({
        "agent": "agent",
        "password": PORTAL_PASSWORD,
        "other": "jan",
        "other_password": JAN_PASSWORD,
    })
}

/// Places `call` at `srv` for a browser scenario: it stays up (80 s at most, waiting for our BYE)
/// while the portal acts on it. `None`: sipp is missing (test skipped).
pub fn portal_call(srv: &TestServer, mut call: TrunkCall) -> Option<Sipp> {
    call.await_bye = true;
    call.limit = Some(Duration::from_secs(90));
    call.wait_limit = Some(Duration::from_secs(80));
    Sipp::start(srv.sip_udp, &call)
}

/// A running `node tests/browser/portal.test.mjs <scenario> <base> <credentials>`.
pub struct BrowserRun {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: tempfile::NamedTempFile,
    /// Every line it printed so far.
    pub transcript: Vec<String>,
}

impl BrowserRun {
    /// Starts scenario `scenario` against `base` (`http://127.0.0.1:PORT`), with the agents'
    /// usernames and portal passwords ([`credentials`]).
    pub fn start(scenario: &str, base: &str) -> BrowserRun {
        BrowserRun::start_script(
            "tests/browser/portal.test.mjs",
            &[scenario, base, &credentials().to_string()],
        )
    }

    /// Starts another script of `tests/browser/` that speaks the same steps, with `args`.
    pub fn start_script(rel_script: &str, args: &[&str]) -> BrowserRun {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel_script);
        let stderr = tempfile::NamedTempFile::new().expect("stderr file");
        let mut child = tokio::process::Command::new("node")
            .arg(script)
            .args(args)
            .env("VB_SCREENSHOTS", screenshot_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr.reopen().expect("stderr file"))
            .kill_on_drop(true)
            .spawn()
            .expect("node runs");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        BrowserRun {
            child,
            stdin,
            stdout,
            stderr,
            transcript: Vec::new(),
        }
    }

    /// The next step the script asks for, `(name, data)`; `None` once the script has ended.
    pub async fn next_step(&mut self) -> Option<(String, Value)> {
        loop {
            let line = tokio::time::timeout(STEP_LIMIT, self.stdout.next_line())
                .await
                .unwrap_or_else(|_| panic!("the browser script hung:\n{}", self.output()))
                .expect("reading the script's output")?;
            println!("browser: {line}");
            self.transcript.push(line.clone());
            if let Some(step) = line.strip_prefix("STEP ") {
                let (name, data) = step.split_once(' ').unwrap_or((step, "null"));
                let data = serde_json::from_str(data).unwrap_or(Value::Null);
                return Some((name.to_owned(), data));
            }
        }
    }

    /// Answers the current step.
    pub async fn reply(&mut self, data: &Value) {
        let line = format!("{data}\n");
        self.stdin
            .write_all(line.as_bytes())
            .await
            .expect("writing to the script");
        self.stdin.flush().await.expect("flushing to the script");
    }

    /// Everything it printed, and its stderr.
    pub fn output(&self) -> String {
        format!(
            "{}\n--- stderr\n{}",
            self.transcript.join("\n"),
            std::fs::read_to_string(self.stderr.path()).unwrap_or_default()
        )
    }

    /// A script's `ended` step: `button` in the portal hung up, so the caller placed earlier
    /// (taken out of `caller`) got a BYE and its sipp ends cleanly; the script goes on.
    pub async fn caller_hung_up(&mut self, caller: &mut Option<Sipp>, button: &str) {
        let sipp = caller.take().expect("the call was placed");
        if let Err(e) = sipp.finish().await {
            panic!("{button} did not send the caller a BYE: {e}");
        }
        self.reply(&Value::Null).await;
    }

    /// Waits (bounded) for the script to end; panics unless it passed `passed` scenarios and
    /// failed none.
    pub async fn expect_passed(mut self, passed: usize) {
        if let Some((name, _)) = self.next_step().await {
            panic!("unexpected step {name}:\n{}", self.output());
        }
        let status = tokio::time::timeout(STEP_LIMIT, self.child.wait())
            .await
            .expect("the script ends")
            .expect("waiting for node");
        let output = self.output();
        assert!(status.success(), "browser scenarios failed:\n{output}");
        assert!(
            output.contains(&format!("{passed} passed, 0 failed")),
            "{output}"
        );
    }
}
