//! Test support for the `tests/sip_*.rs` tests: the SIP driver alone (no call flow) on loopback with
//! one agent, sipp runs with bounded lifetimes, and raw SIP over UDP.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use sip::auth::Algorithm;
use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use veilig_bellen::sip_driver::{self, Credentials, SipConfig, SipServer};

/// The agent every test registers as.
pub const AGENT: &str = "agent";
/// Its password (the same as the full server's agent in [`super::agent`]).
pub const PASSWORD: &str = super::agent::AGENT_PASSWORD;
/// The realm.
pub const REALM: &str = "veilig-bellen.test";

/// A running driver and the means to stop it.
pub struct Server {
    pub sip: SipServer,
    stop: Option<oneshot::Sender<()>>,
}

impl Server {
    pub fn udp(&self) -> SocketAddr {
        self.sip.local.udp[0]
    }
    pub fn tcp(&self) -> SocketAddr {
        self.sip.local.tcp[0]
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// A config on 127.0.0.1:0 (UDP and TCP) with one agent. MD5 only: the peers we test with
/// (SIPp 3.6, baresip 1.0) give up when a SHA-256 challenge is present.
pub fn config() -> SipConfig {
    let mut c = SipConfig::new("127.0.0.1:0".parse().unwrap(), REALM);
    c.digest_algorithms = vec![Algorithm::Md5];
    c.credentials = vec![Credentials {
        username: AGENT.into(),
        password: PASSWORD.into(),
    }];
    c
}

/// Starts the driver with `config`.
pub async fn start(config: SipConfig) -> Server {
    let (tx, rx) = oneshot::channel::<()>();
    let sip = sip_driver::run(config, async move {
        let _ = rx.await;
    })
    .await
    .expect("SIP driver starts");
    Server {
        sip,
        stop: Some(tx),
    }
}

/// Runs sipp with `args` (plus quiet defaults), killed after `limit`. Returns success and output.
pub async fn sipp(args: &[String], limit: Duration) -> (bool, String) {
    let dir = tempdir();
    let err_file = dir.join("errors.log");
    let mut cmd = tokio::process::Command::new("sipp");
    cmd.args(args)
        .args(["-nostdin", "-trace_err", "-error_file"])
        .arg(&err_file)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().expect("sipp starts");
    let out = tokio::time::timeout(limit, child.wait_with_output()).await;
    let errors = std::fs::read_to_string(&err_file).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    match out {
        Ok(Ok(o)) => (
            o.status.success(),
            format!(
                "exit {:?}\n{}\n{}\n{errors}",
                o.status.code(),
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        ),
        Ok(Err(e)) => (false, format!("sipp failed to run: {e}")),
        Err(_) => (
            false,
            format!("sipp did not finish within {limit:?}\n{errors}"),
        ),
    }
}

/// A fresh private directory under the system temp dir.
pub fn tempdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "vb-sip-test-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Path of a fixture file.
pub fn fixture(rel: &str) -> String {
    format!("{}/fixtures/{rel}", env!("CARGO_MANIFEST_DIR"))
}

/// Sends `msg` from `sock` to `to` and returns the first final (non-1xx) response within `wait`.
pub async fn udp_exchange(
    sock: &UdpSocket,
    to: SocketAddr,
    msg: &[u8],
    wait: Duration,
) -> Option<String> {
    sock.send_to(msg, to).await.unwrap();
    read_final(sock, wait).await
}

/// The first final response arriving on `sock` within `wait`.
pub async fn read_final(sock: &UdpSocket, wait: Duration) -> Option<String> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut buf = vec![0u8; 65535];
    loop {
        let r = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await;
        let Ok(Ok((n, _))) = r else { return None };
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if text.starts_with("SIP/2.0 1") {
            continue;
        }
        return Some(text);
    }
}

/// The status code of a response text.
pub fn status_of(resp: &str) -> Option<u16> {
    resp.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

/// An out-of-dialog OPTIONS from `from`.
pub fn options(from: SocketAddr, branch: &str) -> String {
    format!(
        "OPTIONS sip:{from} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK{branch};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:probe@{from}>;tag={branch}\r\nTo: <sip:{from}>\r\n\
         Call-ID: {branch}@test\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}
