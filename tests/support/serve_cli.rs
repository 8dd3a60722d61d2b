//! Test support: the `veilig-bellen serve` binary as a child process on loopback ports from
//! [`super::ports`] — a config file written for it, waiting (bounded) until it says it runs,
//! plain HTTP/1.1 requests to it, SIGTERM at the end and a kill when a test fails early.
//! Include with `#[path = "support/ports.rs"] mod ports;` and
//! `#[path = "support/serve_cli.rs"] mod serve_cli;` (not part of `support/mod.rs`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_veilig-bellen");
pub const API_TOKEN: &str = "serve-test-api-token-0001";
pub const SIP_PASSWORD: &str = "serve-test-sip-secret";
pub const IRMA_TOKEN: &str = "serve-test-irma-token";
/// `agent hash-password` of "jan-portal-wachtwoord".
pub const JAN_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$chL76Wqo2s04tKY8n/besQ$L+Gvgw1Is6Imc0d8Kd3xlbSK69BRqX+4uO6aZwTiFVs";

/// The Arnhem tenant of the serve tests that talk to an IRMA server: its number, website, the
/// attributes it asks (name and BSN) and a citizen's values for them.
pub const ARNHEM: &str = "+31263770000";
pub const ARNHEM_SITE: &str = "https://www.arnhem.nl";
pub const NAME: &str = "pbdf.gemeente.personalData.fullname";
pub const BSN: &str = "pbdf.gemeente.personalData.bsn";
pub const CITIZEN_NAME: &str = "Fenna Oudeman-Kralingen";
pub const CITIZEN_BSN: &str = "999993653";

/// A config's `[[tenants]]` block: municipality `id` (`name`) on `number`, its website `site`,
/// asking [`NAME`] and [`BSN`], with one agent `(username, display name, SIP password)` whose
/// portal password is the one of [`JAN_HASH`].
pub fn name_and_bsn_tenant(
    id: &str,
    name: &str,
    number: &str,
    site: &str,
    (agent, agent_name, sip_password): (&str, &str, &str),
) -> String {
    format!(
        r#"[[tenants]]
id = "{id}"
name = "{name}"
numbers = ["{number}"]
website_origins = ["{site}"]
disclosure = [[["{NAME}"]], [["{BSN}"]]]
[[tenants.attributes]]
id = "{NAME}"
label_nl = "Naam"
label_en = "Name"
[[tenants.attributes]]
id = "{BSN}"
label_nl = "BSN"
label_en = "Citizen service number"
[[tenants.agents]]
username = "{agent}"
name = "{agent_name}"
password_hash = "{JAN_HASH}"
sip_password = "{sip_password}"
"#
    )
}

/// Ports and a directory for one `serve`.
pub struct Setup {
    pub http: u16,
    pub sip: u16,
    pub rtp: RangeInclusive<u16>,
    pub dir: tempfile::TempDir,
}

impl Setup {
    pub fn new() -> Setup {
        Setup {
            http: super::ports::port(),
            sip: super::ports::port(),
            rtp: super::ports::range(8),
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// A config's `[http]`, `[sip]`, `[irma]` and `[[tenants]]` for this setup's ports: Arnhem
    /// ([`ARNHEM`], asking [`NAME`] and [`BSN`]) with one agent, `agent`, whose phone registers
    /// with `agent_password`, and the IRMA server at `irma_url`. Top-level keys and other tables
    /// go before it.
    pub fn arnhem_tables(&self, irma_url: &str, agent_password: &str) -> String {
        format!(
            r#"[http]
listen = "127.0.0.1:{http}"
[sip]
listen = "127.0.0.1:{sip}"
trunks = ["127.0.0.0/8"]
rtp_ports = "{low}-{high}"
[irma]
url = "{irma_url}"
token = "{IRMA_TOKEN}"
request_timeout = "3s"
{tenant}"#,
            tenant = name_and_bsn_tenant(
                "arnhem",
                "Gemeente Arnhem",
                ARNHEM,
                ARNHEM_SITE,
                ("agent", "Agent", agent_password),
            ),
            http = self.http,
            sip = self.sip,
            low = self.rtp.start(),
            high = self.rtp.end(),
        )
    }

    /// One tenant (arnhem, +31263770000), one agent (jan), the IRMA server on a loopback port
    /// nobody listens on; `http_extra` goes into `[http]`.
    pub fn config(&self, http_extra: &str) -> PathBuf {
        let text = format!(
            r#"
data_dir = "{data}"
api_token = "{API_TOKEN}"
[http]
listen = "127.0.0.1:{http}"
{http_extra}
[sip]
listen = "127.0.0.1:{sip}"
trunks = ["127.0.0.0/8"]
rtp_ports = "{low}-{high}"
[irma]
url = "http://127.0.0.1:9"
token = "{IRMA_TOKEN}"
[[tenants]]
id = "arnhem"
name = "Gemeente Arnhem"
numbers = ["+31263770000"]
website_origins = ["https://www.arnhem.nl"]
disclosure = [[["pbdf.gemeente.personalData.bsn"]]]
[[tenants.attributes]]
id = "pbdf.gemeente.personalData.bsn"
label_nl = "BSN"
label_en = "Citizen service number"
[[tenants.agents]]
username = "jan"
name = "Jan de Vries"
password_hash = "{JAN_HASH}"
sip_password = "{SIP_PASSWORD}"
"#,
            data = self.dir.path().join("data").display(),
            http = self.http,
            sip = self.sip,
            low = self.rtp.start(),
            high = self.rtp.end(),
        );
        self.write_config(&text)
    }

    /// Writes `text` as `veilig-bellen.toml` in the directory; its path.
    pub fn write_config(&self, text: &str) -> PathBuf {
        let path = self.dir.path().join("veilig-bellen.toml");
        std::fs::write(&path, text).expect("writing the config");
        path
    }
}

/// `veilig-bellen [--log-format json] serve --config FILE` with `RUST_LOG=rust_log`, stdin closed,
/// stdout piped and no `VEILIG_BELLEN_*` from the test's environment; stderr is the caller's.
pub fn serve_command(config: &Path, json_logs: bool, rust_log: &str) -> Command {
    let mut cmd = Command::new(BIN);
    if json_logs {
        cmd.args(["--log-format", "json"]);
    }
    cmd.args(["serve", "--config", config.to_str().expect("UTF-8 path")])
        .env("RUST_LOG", rust_log)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    for (key, _) in std::env::vars() {
        if key.starts_with("VEILIG_BELLEN_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// A running `serve`; killed on drop unless [`Serve::terminate`] stopped it.
pub struct Serve {
    child: Child,
    /// What it printed up to "Stop with SIGTERM or Ctrl-C."
    pub summary: String,
}

impl Serve {
    /// Starts `serve --config PATH` (no `VEILIG_BELLEN_*` from the test's environment) and waits up
    /// to 60 s for its summary.
    pub fn start(config: &Path) -> Serve {
        let mut cmd = serve_command(config, false, "warn");
        cmd.stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("serve starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut serve = Serve {
            child,
            summary: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    let done = line.starts_with("Stop with SIGTERM");
                    serve.summary.push_str(&line);
                    serve.summary.push('\n');
                    if done {
                        return serve;
                    }
                }
                Err(e) => panic!(
                    "serve did not report it was running ({e}); it printed:\n{}",
                    serve.summary
                ),
            }
        }
    }

    /// SIGTERM, then waits up to 20 s for the exit.
    pub fn terminate(mut self) -> ExitStatus {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("polling serve") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "serve did not stop within 20 s of SIGTERM"
            );
            // The back-off of this bounded wait.
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One plain HTTP/1.1 request to 127.0.0.1:`port`; the status code and body. Bounded by socket
/// timeouts.
pub fn http_request(port: u16, method: &str, path: &str, headers: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to serve's HTTP");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .expect("write timeout");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(head.as_bytes())
        .expect("sending the request");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Runs the binary with `args` to its end (at most 30 s); status, stdout, stderr.
pub fn run_to_end(args: &[&str]) -> (ExitStatus, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("polling the child") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`veilig-bellen {}` still ran after 30 s", args.join(" "));
        }
        // The back-off of this bounded wait.
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut stdout);
    }
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut stderr);
    }
    (status, stdout, stderr)
}
