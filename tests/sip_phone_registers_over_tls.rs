//! An agent's phone that talks SIP over TLS (RFC 3261 §26.2) registers with a SHA-256 digest (our
//! preferred challenge): 401, then 200 OK listing its contact; the binding records the TLS
//! connection it came on, and OPTIONS on the same connection gets 200.

mod support;

use std::sync::Arc;
use std::time::Duration;

use sip::auth::{authorize, Algorithm, Challenge};
use sip::transaction::Transport;
use support::sip_alone::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use veilig_bellen::sip_driver::TlsConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phone_registers_over_tls_with_a_sha256_digest() {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let dir = tempdir();
    std::fs::write(dir.join("cert.pem"), ck.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), ck.signing_key.serialize_pem()).unwrap();
    let mut cfg = config();
    cfg.digest_algorithms = vec![Algorithm::Sha256, Algorithm::Md5];
    cfg.tls = vec!["127.0.0.1:0".parse().unwrap()];
    cfg.tls_files = Some(TlsConfig {
        cert_chain: dir.join("cert.pem"),
        private_key: dir.join("key.pem"),
    });
    let server = start(cfg).await;
    let _ = std::fs::remove_dir_all(&dir);
    let tls_addr = server.sip.local.tls[0];

    let mut roots = RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(tls_addr).await.unwrap();
    let me = tcp.local_addr().unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = TlsConnector::from(Arc::new(client))
        .connect(name, tcp)
        .await
        .expect("TLS handshake with our certificate");

    let uri = format!("sips:{tls_addr}");
    let register = |cseq: u32, auth: Option<String>| {
        let auth = auth
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        format!(
            "REGISTER {uri} SIP/2.0\r\nVia: SIP/2.0/TLS {me};branch=z9hG4bKtls{cseq};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sips:{AGENT}@{tls_addr}>;tag=t1\r\n\
             To: <sips:{AGENT}@{tls_addr}>\r\nCall-ID: tls-reg@test\r\nCSeq: {cseq} REGISTER\r\n\
             Contact: <sips:{AGENT}@{me}>\r\nExpires: 600\r\n{auth}Content-Length: 0\r\n\r\n"
        )
    };
    tls.write_all(register(1, None).as_bytes()).await.unwrap();
    let challenge = read_final(&mut tls).await;
    assert!(challenge.starts_with("SIP/2.0 401"), "{challenge}");
    let ch = challenge
        .lines()
        .find_map(|l| l.strip_prefix("WWW-Authenticate: "))
        .and_then(Challenge::parse)
        .expect("digest challenge");
    assert_eq!(ch.algorithm, Algorithm::Sha256, "SHA-256 is offered first");
    let auth = authorize(&ch, AGENT, PASSWORD, "REGISTER", &uri, "tlscnonce", 1);
    tls.write_all(register(2, Some(auth)).as_bytes())
        .await
        .unwrap();
    let ok = read_final(&mut tls).await;
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    assert!(
        ok.contains(&format!("Contact: <sips:{AGENT}@{me}>;expires=600")),
        "{ok}"
    );
    let b = server.sip.handle.lookup(AGENT).await.unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].transport, Transport::Tls);
    assert_eq!(b[0].target, me);

    tls.write_all(options(me, "tlsopt").replace("/UDP", "/TLS").as_bytes())
        .await
        .unwrap();
    let opt = read_final(&mut tls).await;
    assert!(opt.starts_with("SIP/2.0 200"), "{opt}");
}

/// Reads responses from a stream until a final one; returns its head.
async fn read_final<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S) -> String {
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
