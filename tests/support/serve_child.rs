//! Test support: `veilig-bellen serve` as a child process that keeps its stdout line by line and
//! writes its stderr to a file (stopped with SIGTERM or `kill -9`, killed on drop), and the website,
//! the agents' API and the trunk around it. Include with `mod support;`,
//! `#[path = "support/serve_cli.rs"] mod serve_cli;` and
//! `#[path = "support/serve_child.rs"] mod serve_child;` (not part of `support/mod.rs`).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

use super::serve_cli::{serve_command, Setup, API_TOKEN};
use super::server::{get_calls, poll_for_call};
use super::sipp::{Sipp, TrunkCall};

/// Longest wait for a call to show up classified in the agents' list.
pub const CLASSIFIED_WITHIN: Duration = Duration::from_secs(10);

/// `veilig-bellen [--log-format json] serve --config FILE` as a child: stdout read line by line,
/// stderr into a file. Killed on drop unless it was stopped.
pub struct Serving {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: PathBuf,
}

impl Serving {
    /// Starts it with `RUST_LOG=rust_log`, its stderr into `stderr`, and waits (at most 60 s) until
    /// it says it runs; `name` names it in a failure.
    pub async fn start(
        config: &Path,
        json_logs: bool,
        rust_log: &str,
        stderr: PathBuf,
        name: &str,
    ) -> Serving {
        let mut cmd = serve_command(config, json_logs, rust_log);
        cmd.stderr(std::fs::File::create(&stderr).expect("stderr file"));
        let mut child = cmd.spawn().expect("serve starts");
        let out = child.stdout.take().expect("piped stdout");
        let stdout: Arc<Mutex<Vec<String>>> = Arc::default();
        let lines = stdout.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                lines.lock().unwrap().push(line);
            }
        });
        let mut serving = Serving {
            child,
            stdout,
            stderr,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !serving.stdout().contains("Stop with SIGTERM") {
            if let Ok(Some(status)) = serving.child.try_wait() {
                panic!(
                    "{name} exited ({status}) before it ran; stdout:\n{}\nstderr:\n{}",
                    serving.stdout(),
                    serving.stderr_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not say it runs within 60 s; stdout:\n{}\nstderr:\n{}",
                serving.stdout(),
                serving.stderr_tail()
            );
            // The back-off of this bounded wait.
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        serving
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().join("\n")
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits (at most `limit`) until its stderr holds `needle`; whether it did.
    pub async fn wait_stderr(&self, needle: &str, limit: Duration) -> bool {
        super::wait_until(limit, || self.stderr().contains(needle)).await
    }

    /// The last 40 lines of its stderr.
    pub fn stderr_tail(&self) -> String {
        let all = self.stderr();
        let lines: Vec<&str> = all.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Sends SIGTERM (now).
    pub fn sigterm(&self) {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
    }

    /// Waits (at most `limit`) for the process to exit.
    pub async fn exit_within(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("polling serve") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "serve still ran {limit:?} after SIGTERM; stderr:\n{}",
                self.stderr_tail()
            );
            // The back-off of this bounded wait.
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// SIGTERM, then the exit status (within 20 s).
    pub async fn terminate(&mut self) -> ExitStatus {
        self.sigterm();
        self.exit_within(Duration::from_secs(20)).await
    }

    /// SIGKILL, and the process is gone (no shutdown code of ours ran). Its stderr.
    pub fn kill_9(mut self) -> String {
        self.child.kill().expect("SIGKILL");
        let status = self.child.wait().expect("reaping serve");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "killed by SIGKILL: {status:?}");
        self.stderr()
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The website, the agents' API and the trunk around the `serve` of one [`Setup`]. A test adds
/// the website's requests it needs in its own `impl Site`.
pub struct Site {
    pub http: String,
    pub sip: SocketAddr,
    pub client: reqwest::Client,
}

impl Site {
    pub fn new(setup: &Setup) -> Site {
        Site {
            http: format!("http://127.0.0.1:{}", setup.http),
            sip: SocketAddr::from(([127, 0, 0, 1], setup.sip)),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("HTTP client"),
        }
    }

    /// What the widget on `origin` does on a click: `POST /api/v1/sessions` for `tenant`. Status
    /// and body.
    pub async fn start_session(&self, tenant: &str, origin: &str) -> (u16, String) {
        let response = self
            .client
            .post(format!("{}/api/v1/sessions", self.http))
            .header("origin", origin)
            .json(&json!({ "tenant": tenant }))
            .send()
            .await
            .expect("POST /api/v1/sessions");
        let status = response.status().as_u16();
        (status, response.text().await.expect("session body"))
    }

    /// An Arnhem session started from its website ([`super::serve_cli::ARNHEM_SITE`]) that
    /// `serve` follows at the IRMA server `standin` (its status events seen). The session JSON.
    pub async fn started_arnhem_session(
        &self,
        standin: &super::irmago_standin::IrmagoStandin,
    ) -> Value {
        let (status, body) = self
            .start_session("arnhem", super::serve_cli::ARNHEM_SITE)
            .await;
        assert_eq!(status, 200, "{body}");
        let session: Value = serde_json::from_str(&body).expect("session JSON");
        let u = session["sessionPtr"]["u"].as_str().expect("sessionPtr.u");
        let client_token = u.rsplit('/').next().expect("client token");
        let irma_token = standin
            .requestor_token_of(client_token)
            .expect("the IRMA session");
        let events = format!("/session/{irma_token}/statusevents");
        super::irmago_standin::wait_seen(standin, Duration::from_secs(5), |seen| {
            seen.iter().any(|s| s.path == events)
        })
        .await
        .unwrap_or_else(|seen| panic!("serve did not follow the session: {seen:#?}"));
        session
    }

    /// The widget's wait for the outcome: `GET /api/v1/sessions/{token}/status?wait=5` from
    /// `origin`.
    pub async fn session_status(&self, token: &str, origin: &str) -> Value {
        let response = self
            .client
            .get(format!(
                "{}/api/v1/sessions/{token}/status?wait=5",
                self.http
            ))
            .header("origin", origin)
            .send()
            .await
            .expect("session status");
        assert_eq!(response.status(), 200);
        response.json().await.expect("status JSON")
    }

    /// `GET /api/v1/calls` with the agents' token.
    pub async fn calls(&self) -> Vec<Value> {
        get_calls(&self.client, &self.http, API_TOKEN).await
    }

    /// Polls the call list (at most `limit`) for a call satisfying `pred`.
    pub async fn wait_for_call(&self, limit: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        poll_for_call(|| self.calls(), limit, pred)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Places `call` and waits until the agents' list shows it `waiting` (classified). `None`
    /// when sipp is missing (test skipped).
    pub async fn call_until_waiting(&self, call: &TrunkCall) -> Option<(Sipp, Value)> {
        let sipp = Sipp::start(self.sip, call)?;
        let caller = call.caller.clone();
        let waiting = poll_for_call(
            || self.calls(),
            CLASSIFIED_WITHIN,
            |c| c["state"] == "waiting" && c["caller"] == caller.as_str(),
        )
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the call from {caller} never showed up waiting: {e}\nsipp:\n{}",
                sipp.logs()
            )
        });
        Some((sipp, waiting))
    }

    /// The trunk hangs up; the call shows `ended`, without attributes. The ended call.
    pub async fn hang_up(&self, sipp: Sipp, id: &Value) -> Value {
        sipp.hang_up();
        if let Err(e) = sipp.finish().await {
            panic!("the trunk's call did not end cleanly: {e}");
        }
        let ended = self
            .wait_for_call(Duration::from_secs(5), |c| {
                &c["id"] == id && c["state"] == "ended"
            })
            .await;
        assert_eq!(ended["attributes"], json!([]), "{ended:#}");
        ended
    }
}
