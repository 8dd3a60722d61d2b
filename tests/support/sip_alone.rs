//! Test support for the `tests/sip_*.rs` tests: the SIP driver alone (no call flow) on loopback with
//! one agent, sipp runs with bounded lifetimes, and raw SIP over UDP.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use std::sync::Arc;

use sip::auth::{authorize, Algorithm, Challenge};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::oneshot;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use veilig_bellen::sip_driver::{self, Credentials, SipConfig, SipServer, TlsConfig};

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

/// The driver's test config with a TLS listener and a fresh self-signed certificate for 127.0.0.1;
/// the certificate, and the directory holding its files (remove it once the server started).
pub fn tls_config() -> (SipConfig, CertificateDer<'static>, PathBuf) {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let dir = tempdir();
    std::fs::write(dir.join("cert.pem"), ck.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), ck.signing_key.serialize_pem()).unwrap();
    let mut cfg = config();
    cfg.tls = vec!["127.0.0.1:0".parse().unwrap()];
    cfg.tls_files = Some(TlsConfig {
        cert_chain: dir.join("cert.pem"),
        private_key: dir.join("key.pem"),
    });
    (cfg, ck.cert.der().clone(), dir)
}

/// A TLS client that trusts `cert` alone.
pub fn tls_connector(cert: &CertificateDer<'static>) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(client))
}

/// Registers [`AGENT`] over the TLS stream `tls` (our end `me`, the server's `to`): 401, then
/// 200 with digest auth (Call-ID `{tag}-reg@test`, cnonce `{tag}cnonce`). The challenge and the
/// 200's head.
pub async fn register_over_tls<S: AsyncRead + AsyncWrite + Unpin>(
    tls: &mut S,
    me: SocketAddr,
    to: SocketAddr,
    tag: &str,
) -> (Challenge, String) {
    let uri = format!("sips:{to}");
    let register = |cseq: u32, auth: Option<String>| {
        let auth = auth
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        format!(
            "REGISTER {uri} SIP/2.0\r\nVia: SIP/2.0/TLS {me};branch=z9hG4bK{tag}{cseq};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sips:{AGENT}@{to}>;tag=t1\r\n\
             To: <sips:{AGENT}@{to}>\r\nCall-ID: {tag}-reg@test\r\nCSeq: {cseq} REGISTER\r\n\
             Contact: <sips:{AGENT}@{me}>\r\nExpires: 600\r\n{auth}Content-Length: 0\r\n\r\n"
        )
    };
    tls.write_all(register(1, None).as_bytes()).await.unwrap();
    let challenge = read_final_on(tls).await;
    assert!(challenge.starts_with("SIP/2.0 401"), "{challenge}");
    let ch = www_authenticate(&challenge).expect("digest challenge");
    let auth = agent_register_auth(&ch, &uri, &format!("{tag}cnonce"));
    tls.write_all(register(2, Some(auth)).as_bytes())
        .await
        .unwrap();
    let ok = read_final_on(tls).await;
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    (ch, ok)
}

/// The digest challenge in `response`'s `WWW-Authenticate`, if any.
pub fn www_authenticate(response: &str) -> Option<Challenge> {
    response
        .lines()
        .find_map(|l| l.strip_prefix("WWW-Authenticate: "))
        .and_then(Challenge::parse)
}

/// The `Authorization` value answering `ch` for [`AGENT`]'s REGISTER to `uri` (client nonce
/// `cnonce`, nonce count 1).
pub fn agent_register_auth(ch: &Challenge, uri: &str, cnonce: &str) -> String {
    authorize(ch, AGENT, PASSWORD, "REGISTER", uri, cnonce, 1)
}

/// Reads responses from a stream until a final one (within 5 s); returns its head.
pub async fn read_final_on<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S) -> String {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16384];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
            buf.drain(..end + 4);
            if !head.starts_with("SIP/2.0 1") {
                return head;
            }
        }
        let n = tokio::time::timeout_at(deadline, s.read(&mut chunk))
            .await
            .expect("a response within 5 s")
            .expect("connection stays open");
        assert!(n > 0, "server closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// OPTIONS over TCP connection `c`; the status of the answer, `None` if the connection was closed.
pub async fn tcp_ping(c: &mut TcpStream, branch: &str) -> Option<u16> {
    let me = c.local_addr().unwrap();
    let msg = options(me, branch).replace("/UDP", "/TCP");
    c.write_all(msg.as_bytes()).await.ok()?;
    let mut buf = vec![0u8; 8192];
    let n = tokio::time::timeout(Duration::from_secs(3), c.read(&mut buf))
        .await
        .ok()?
        .ok()?;
    status_of(&String::from_utf8_lossy(&buf[..n]))
}

/// Whether the server closes `c` (EOF or reset) within `wait`.
pub async fn closed_within(c: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout(wait, c.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}
