//! Test support: `veilig-bellen demo` as a newcomer runs it — the real binary as a child process on
//! loopback ports of its own, with a known agents' API token and agent password, stopped with
//! Ctrl-C (SIGINT) or killed on drop — and the citizen's side around it (a disclosed link code
//! through the demo's IRMA simulator, the agents' call list).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

/// The agents' API token the demo is started with.
pub const API_TOKEN: &str = "demo-test-token";
/// The password of SIP and portal user `agent`.
pub const AGENT_PASSWORD: &str = "demo-agent-secret";
/// The demo tenant's number (`Tenant::demo`).
pub const TENANT_NUMBER: &str = "+31850000000";

/// A running `veilig-bellen demo`.
pub struct Demo {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    _data: tempfile::TempDir,
    pub sip: SocketAddr,
    pub http_base: String,
    pub client: reqwest::Client,
}

impl Demo {
    /// Starts the demo with `extra` arguments and waits (at most 60 s) until it says it runs.
    pub async fn start(extra: &[&str]) -> Demo {
        let data = tempfile::tempdir().expect("temp dir");
        let sip_port = super::ports::port();
        let http_port = super::ports::port();
        let rtp = super::ports::range(200);
        let sip: SocketAddr = format!("127.0.0.1:{sip_port}").parse().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_veilig-bellen"))
            .arg("demo")
            .args(["--sip", &sip.to_string()])
            .args(["--http", &format!("127.0.0.1:{http_port}")])
            .args(["--api-token", API_TOKEN])
            .args(["--agent-password", AGENT_PASSWORD])
            .args(["--rtp-ports", &format!("{}-{}", rtp.start(), rtp.end())])
            .args(["--data", &data.path().display().to_string()])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("veilig-bellen demo starts");
        let stdout = collect(child.stdout.take().expect("piped stdout"));
        let stderr = collect(child.stderr.take().expect("piped stderr"));
        let demo = Demo {
            child,
            stdout,
            stderr,
            _data: data,
            sip,
            http_base: format!("http://127.0.0.1:{http_port}"),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("HTTP client"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !demo.stdout().contains("Press Ctrl-C to stop.") {
            assert!(
                Instant::now() < deadline,
                "the demo did not start:\n{}\n{}",
                demo.stdout(),
                demo.stderr()
            );
            // The back-off of this bounded wait.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        demo
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().join("\n")
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// A fresh link code as the Yivi app gets it: a session, disclosed with the simulator's demo
    /// values; returned once the website sees the session done.
    pub async fn new_code(&self) -> String {
        super::server::code_of(&self.http_base, "demo", TENANT_NUMBER).await
    }

    /// `GET /api/v1/calls` with the agents' token.
    pub async fn calls(&self) -> Vec<Value> {
        super::server::get_calls(&self.client, &self.http_base, API_TOKEN).await
    }

    /// The first call `pred` accepts, waiting at most `limit`.
    pub async fn wait_for_call(&self, limit: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(call) = self.calls().await.into_iter().find(|c| pred(c)) {
                return call;
            }
            assert!(
                Instant::now() < deadline,
                "no such call within {limit:?}: {:?}",
                self.calls().await
            );
            // The back-off of this bounded wait.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Ctrl-C, as a person stops it; its exit status (killed after 20 s).
    pub async fn stop(mut self) -> ExitStatus {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                return self.child.wait().expect("demo exit status");
            }
            // The back-off of this bounded wait.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn collect(stream: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap().push(line);
        }
    });
    lines
}
