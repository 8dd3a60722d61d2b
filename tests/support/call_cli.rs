//! Test support: `veilig-bellen call` run as a user runs it — the real binary, its stdout, stderr
//! and exit code. Include with `#[path = "support/call_cli.rs"] mod call_cli;` (not part of
//! `support/mod.rs`).
#![allow(dead_code)] // each test uses part of it

use std::time::Duration;

/// What one `veilig-bellen call` printed and how it exited.
pub struct CallRun {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `veilig-bellen call ARGS…` to the end (at most 60 s), logging warnings.
pub async fn call(args: &[&str]) -> CallRun {
    call_logging(args, "warn").await
}

/// Runs `veilig-bellen call ARGS…` with `RUST_LOG=rust_log`.
pub async fn call_logging(args: &[&str], rust_log: &str) -> CallRun {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_veilig-bellen"))
        .arg("call")
        .args(args)
        .env("RUST_LOG", rust_log)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("veilig-bellen call ends within 60 s")
        .expect("veilig-bellen call runs");
    CallRun {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

impl std::fmt::Display for CallRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}
