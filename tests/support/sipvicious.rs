//! Test support: SIPVicious 0.3.8 (PyPI `sipvicious`), the toolkit behind most SIP scanning on
//! the internet, as the attacker: `svmap` (who answers SIP here?), `svwar` (which extensions
//! exist?) and `svcrack` (online password guessing).
//!
//! `scripts/install-test-deps.sh` installs it into a venv of its own; the tools are looked for in
//! `$VB_SIPVICIOUS_VENV/bin`, then in that default venv
//! (`${XDG_CACHE_HOME:-$HOME/.cache}/veilig-bellen/venv/bin`), then on `PATH`. Missing: the test
//! skips after a note (a failure under `CI`, which installs it). Every run is bounded: killed after
//! its limit, its output kept for the failure message.
//!
//! The attacker's address: `svwar` and `svcrack` 0.3.8 ignore their `-b` (they bind to every
//! interface), so on loopback they would always talk from 127.0.0.1. Each run therefore gets a
//! `sitecustomize.py` on `PYTHONPATH` that binds its sockets to the `-b` address instead — as if
//! the tool ran on that host. (`svmap` honours `-b` itself.)

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// The version the tests were written against (and the install script pins).
pub const VERSION: &str = "0.3.8";

/// Where the tools are.
pub struct Tools {
    bin: PathBuf,
}

/// What one tool run left behind.
#[derive(Debug)]
pub struct Run {
    /// Which tool, with its arguments.
    pub command: String,
    /// Exit code (`None`: killed, or by a signal).
    pub code: Option<i32>,
    /// Standard output: the result table, when there are results.
    pub stdout: String,
    /// Standard error: its log.
    pub stderr: String,
}

impl Run {
    /// The rows of the result table on stdout (`| a | b |` lines), header left out: what a user
    /// would read as "found".
    pub fn rows(&self) -> Vec<Vec<String>> {
        self.stdout
            .lines()
            .filter(|l| l.trim_start().starts_with('|'))
            .map(|l| {
                l.trim()
                    .trim_matches('|')
                    .split('|')
                    .map(|cell| cell.trim().to_owned())
                    .collect::<Vec<_>>()
            })
            .skip(1)
            .collect()
    }

    /// Whether the tool said it found nothing (its closing warning).
    pub fn found_nothing(&self) -> bool {
        self.stderr.contains("found nothing")
    }

    /// Everything, for a failure message.
    pub fn report(&self) -> String {
        format!(
            "$ {}\nexit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.command, self.code, self.stdout, self.stderr
        )
    }
}

/// The three tools, or `None` after a note (a failure under `CI`).
pub fn tools() -> Option<Tools> {
    let mut dirs = Vec::new();
    if let Some(venv) = std::env::var_os("VB_SIPVICIOUS_VENV") {
        dirs.push(PathBuf::from(venv).join("bin"));
    }
    if let Some(venv) = default_venv() {
        dirs.push(venv.join("bin"));
    }
    if let Some(paths) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&paths));
    }
    let found = dirs.into_iter().find(|d| {
        ["svmap", "svwar", "svcrack"]
            .iter()
            .all(|t| d.join(format!("sipvicious_{t}")).is_file())
    });
    if found.is_none() {
        super::sipp::skip_or_fail(&format!(
            "SIPVicious {VERSION} (sipvicious_svmap/svwar/svcrack) not found in \
             $VB_SIPVICIOUS_VENV/bin, \
             {}/bin or on PATH (scripts/install-test-deps.sh installs it)",
            default_venv().map_or("the default venv".into(), |p| p.display().to_string())
        ));
    }
    found.map(|bin| Tools { bin })
}

/// `${XDG_CACHE_HOME:-$HOME/.cache}/veilig-bellen/venv`, as the install script makes it.
fn default_venv() -> Option<PathBuf> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))?;
    Some(cache.join("veilig-bellen").join("venv"))
}

impl Tools {
    /// `sipvicious_<tool> <args>`, killed after `limit`, its sockets bound to `from`. It runs in a
    /// private directory that is also its `HOME` (where it would keep sessions).
    pub async fn run(&self, tool: &str, from: &str, args: &[String], limit: Duration) -> Run {
        let home = tempfile::Builder::new()
            .prefix("vb-sipvicious-")
            .tempdir()
            .expect("temp dir");
        std::fs::write(home.path().join("sitecustomize.py"), BIND_TO_SOURCE)
            .expect("write sitecustomize.py");
        let program = self.bin.join(format!("sipvicious_{tool}"));
        let command = format!("sipvicious_{tool} {}", args.join(" "));
        let child = tokio::process::Command::new(&program)
            .args(args)
            .current_dir(home.path())
            .env("HOME", home.path())
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONPATH", home.path())
            .env("VB_SIPVICIOUS_SOURCE", from)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{} does not start: {e}", program.display()));
        let run = match tokio::time::timeout(limit, child.wait_with_output()).await {
            Ok(Ok(out)) => Run {
                command,
                code: out.status.code(),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            },
            Ok(Err(e)) => panic!("{command}: {e}"),
            Err(_) => panic!("{command} did not finish within {limit:?}"),
        };
        // Shown with the test's output when a later step fails.
        eprintln!("{}", run.report());
        run
    }

    /// `svmap` from `from` (its source address, port from our test ports) at `target`, with the
    /// default OPTIONS probe unless `extra` says otherwise.
    pub async fn svmap(&self, from: &str, target: SocketAddr, extra: &[&str]) -> Run {
        let mut args = source_args(from, target);
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push(target.ip().to_string());
        self.run("svmap", from, &args, Duration::from_secs(30))
            .await
    }

    /// `svwar` from `from` at `target` trying the names in `wordlist` (`--force`: as an attacker
    /// would, when the first answer is already a challenge), plus `extra`.
    pub async fn svwar(
        &self,
        from: &str,
        target: SocketAddr,
        wordlist: &Path,
        extra: &[&str],
    ) -> Run {
        let mut args = source_args(from, target);
        args.extend(["--force", "-d"].map(String::from));
        args.push(wordlist.display().to_string());
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push(target.ip().to_string());
        self.run("svwar", from, &args, Duration::from_secs(60))
            .await
    }

    /// `svcrack` from `from` at `target`, guessing `user`'s password from `wordlist`, plus `extra`;
    /// it gives up `--maximumtime` (3 s) after the last answer.
    pub async fn svcrack(
        &self,
        from: &str,
        target: SocketAddr,
        user: &str,
        wordlist: &Path,
        extra: &[&str],
    ) -> Run {
        let mut args = source_args(from, target);
        args.extend(["--maximumtime", "3", "-u", user, "-d"].map(String::from));
        args.push(wordlist.display().to_string());
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push(target.ip().to_string());
        self.run("svcrack", from, &args, Duration::from_secs(60))
            .await
    }
}

/// Loaded by Python at start (`site`): a bind to "any address" becomes a bind to
/// `$VB_SIPVICIOUS_SOURCE`.
const BIND_TO_SOURCE: &str = r#"import os, socket

_source = os.environ.get("VB_SIPVICIOUS_SOURCE")
if _source:
    _bind = socket.socket.bind

    def _bind_to_source(self, address):
        if isinstance(address, tuple) and address[0] in ("", "0.0.0.0"):
            address = (_source,) + tuple(address[1:])
        return _bind(self, address)

    socket.socket.bind = _bind_to_source
"#;

/// Bind to `from` on a port nobody else uses, talk to `target`'s port.
fn source_args(from: &str, target: SocketAddr) -> Vec<String> {
    vec![
        "-b".into(),
        from.into(),
        "-P".into(),
        super::ports::port().to_string(),
        "-p".into(),
        target.port().to_string(),
    ]
}

/// A wordlist file (one entry a line) in `dir`.
pub fn wordlist(dir: &Path, name: &str, entries: &[String]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, entries.join("\n") + "\n").expect("write wordlist");
    path
}
