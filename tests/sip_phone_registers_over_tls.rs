//! An agent's phone that talks SIP over TLS (RFC 3261 §26.2) registers with a SHA-256 digest (our
//! preferred challenge): 401, then 200 OK listing its contact; the binding records the TLS
//! connection it came on, and OPTIONS on the same connection gets 200.

use crate::support;

use sip::auth::Algorithm;
use sip::transaction::Transport;
use support::sip_alone::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phone_registers_over_tls_with_a_sha256_digest() {
    let (mut cfg, cert, dir) = tls_config();
    cfg.digest_algorithms = vec![Algorithm::Sha256, Algorithm::Md5];
    let server = start(cfg).await;
    let _ = std::fs::remove_dir_all(&dir);
    let tls_addr = server.sip.local.tls[0];

    let tcp = TcpStream::connect(tls_addr).await.unwrap();
    let me = tcp.local_addr().unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = tls_connector(&cert)
        .connect(name, tcp)
        .await
        .expect("TLS handshake with our certificate");

    let (ch, ok) = register_over_tls(&mut tls, me, tls_addr, "tls").await;
    assert_eq!(ch.algorithm, Algorithm::Sha256, "SHA-256 is offered first");
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
    let opt = read_final_on(&mut tls).await;
    assert!(opt.starts_with("SIP/2.0 200"), "{opt}");
}
