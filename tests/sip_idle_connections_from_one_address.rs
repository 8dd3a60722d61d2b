//! One address opens more TCP connections than the whole server allows and leaves them idle (a
//! slowloris): only its per-address share is accepted, the rest are refused at once, and an agent's
//! phone at another address still registers over TLS with a digest. A trunk is not held to that
//! share; and a connection that never says anything is closed after `first_message_timeout`
//! instead of living until the idle timeout.

use crate::support;

use std::net::SocketAddr;
use std::time::Duration;

use sip::transaction::Transport;
use support::sip_alone::*;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use veilig_bellen::sip_driver::TrunkGate;

/// Where the flood comes from, where the phone is, and the trunk.
const FLOODER: &str = "127.0.0.3";
const PHONE: &str = "127.0.0.4";
const TRUNK: &str = "127.0.0.5";
const NEIGHBOUR: &str = "127.0.0.6";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_from_one_address_leave_a_tls_phone_able_to_register() {
    const TOTAL: usize = 64;
    const PER_ADDRESS: usize = 16;
    const FLOOD: usize = 80;
    let (mut cfg, cert, dir) = tls_config();
    cfg.streams.max_connections = TOTAL;
    cfg.streams.max_connections_per_address = PER_ADDRESS;
    // Nothing is closed for silence during the test: the per-address share alone must do it.
    cfg.streams.first_message_timeout = Duration::from_secs(120);
    let server = start(cfg).await;
    let _ = std::fs::remove_dir_all(&dir);
    let tls_addr = server.sip.local.tls[0];
    let refused_before = refused_per_address();

    let mut flood = Vec::new();
    for _ in 0..FLOOD {
        flood.push(connect_from(FLOODER, server.tcp()).await);
    }
    // The flood alone would fill the whole budget.
    const { assert!(FLOOD > TOTAL) };
    // The refusals happen at accept, in order; wait until they are all seen.
    let mut closed = [false; FLOOD];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while closed.iter().filter(|c| **c).count() < FLOOD - PER_ADDRESS
        && tokio::time::Instant::now() < deadline
    {
        for (c, done) in flood.iter_mut().zip(closed.iter_mut()) {
            if !*done {
                *done = is_closed(c).await;
            }
        }
        // The back-off of this bounded wait.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (mut phone, me) = tls_connect_from(PHONE, tls_addr, &cert).await;
    register(&mut phone, me, tls_addr).await;
    let bindings = server.sip.handle.lookup(AGENT).await.unwrap();
    assert_eq!(bindings.len(), 1);
    assert_eq!(bindings[0].transport, Transport::Tls);
    assert_eq!(bindings[0].target, me);

    for (c, done) in flood.iter_mut().zip(closed.iter_mut()) {
        if !*done {
            *done = is_closed(c).await;
        }
    }
    let refused = closed.iter().filter(|c| **c).count();
    assert_eq!(
        refused,
        FLOOD - PER_ADDRESS,
        "one address keeps exactly its share of {PER_ADDRESS} connections open"
    );
    let counted = refused_per_address() - refused_before;
    assert!(
        counted >= (FLOOD - PER_ADDRESS) as u64,
        "refusals are counted in the metric: {counted}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_is_not_held_to_the_per_address_share() {
    const PER_ADDRESS: usize = 4;
    const TRUNK_CONNECTIONS: usize = 40;
    const FIRST_MESSAGE: Duration = Duration::from_secs(3);
    let mut cfg = config();
    cfg.streams.max_connections = 64;
    cfg.streams.max_connections_per_address = PER_ADDRESS;
    cfg.streams.first_message_timeout = FIRST_MESSAGE;
    cfg.gate = Some(TrunkGate {
        trunks: vec![format!("{TRUNK}/32").parse().unwrap()],
        reject: false,
    });
    let server = start(cfg).await;
    let mut silent_trunk = connect_from(TRUNK, server.tcp()).await;
    let silent_since = tokio::time::Instant::now();

    // Refused connections are closed at once; accepted ones live until FIRST_MESSAGE.
    let mut neighbour = Vec::new();
    for _ in 0..2 * PER_ADDRESS {
        neighbour.push(connect_from(NEIGHBOUR, server.tcp()).await);
    }
    let mut closed = vec![false; neighbour.len()];
    let deadline = tokio::time::Instant::now() + FIRST_MESSAGE / 2;
    loop {
        for (c, done) in neighbour.iter_mut().zip(closed.iter_mut()) {
            if !*done {
                *done = is_closed(c).await;
            }
        }
        if closed.iter().filter(|c| **c).count() >= PER_ADDRESS
            || tokio::time::Instant::now() >= deadline
        {
            break;
        }
        // The back-off of this bounded wait.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        closed.iter().filter(|c| !**c).count(),
        PER_ADDRESS,
        "an address next to the trunk is held to its share"
    );

    let mut trunk = Vec::new();
    for _ in 0..TRUNK_CONNECTIONS {
        trunk.push(connect_from(TRUNK, server.tcp()).await);
    }
    let mut answered = 0;
    for (i, c) in trunk.iter_mut().enumerate() {
        if tcp_ping(c, &format!("trunk{i}")).await == Some(200) {
            answered += 1;
        }
    }
    assert_eq!(
        answered, TRUNK_CONNECTIONS,
        "every connection of the trunk is served"
    );

    tokio::time::sleep_until(silent_since + FIRST_MESSAGE + Duration::from_millis(500)).await;
    assert!(
        !is_closed(&mut silent_trunk).await,
        "a trunk's connection is not closed for saying nothing yet"
    );
    assert_eq!(tcp_ping(&mut silent_trunk, "late").await, Some(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_speaks_is_closed_long_before_the_idle_timeout() {
    let (mut cfg, _cert, dir) = tls_config();
    cfg.streams.first_message_timeout = Duration::from_millis(500);
    assert_eq!(cfg.streams.idle_timeout, Duration::from_secs(600));
    let server = start(cfg).await;
    let _ = std::fs::remove_dir_all(&dir);
    let tls_addr = server.sip.local.tls[0];

    let mut talker = connect_from(FLOODER, server.tcp()).await;
    assert_eq!(tcp_ping(&mut talker, "talker").await, Some(200));
    let mut silent_tcp = connect_from(FLOODER, server.tcp()).await;
    // Connected to the TLS port, but never starts the handshake.
    let mut silent_tls = connect_from(FLOODER, tls_addr).await;
    for (what, c) in [("TCP", &mut silent_tcp), ("TLS", &mut silent_tls)] {
        assert!(
            closed_within(c, Duration::from_secs(4)).await,
            "a silent {what} connection is closed after first_message_timeout"
        );
    }
    assert!(
        !is_closed(&mut talker).await,
        "a connection that spoke lives on to the idle timeout"
    );
    assert_eq!(tcp_ping(&mut talker, "talker2").await, Some(200));
}

/// A TCP connection from loopback address `from` to `to`.
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(format!("{from}:0").parse().unwrap()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), sock.connect(to))
        .await
        .expect("connect within 5 s")
        .expect("the kernel accepts the connection")
}

/// A TLS connection from `from` to `to`, trusting `cert`; and our address.
async fn tls_connect_from(
    from: &str,
    to: SocketAddr,
    cert: &CertificateDer<'static>,
) -> (TlsStream<TcpStream>, SocketAddr) {
    let tcp = connect_from(from, to).await;
    let me = tcp.local_addr().unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let tls = tokio::time::timeout(
        Duration::from_secs(5),
        tls_connector(cert).connect(name, tcp),
    )
    .await
    .expect("TLS handshake within 5 s")
    .expect("TLS handshake with our certificate: the connection was not refused");
    (tls, me)
}

/// Registers the agent over `tls`: 401, then 200 with digest auth.
async fn register(tls: &mut TlsStream<TcpStream>, me: SocketAddr, to: SocketAddr) {
    register_over_tls(tls, me, to, "idle").await;
}

/// Whether the server has closed `c` already (EOF or reset waiting to be read).
async fn is_closed(c: &mut TcpStream) -> bool {
    let mut buf = [0u8; 512];
    matches!(
        tokio::time::timeout(Duration::from_millis(5), c.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

/// `veilig_bellen_sip_connections_refused_total{limit="per_address"}` now.
fn refused_per_address() -> u64 {
    let text = veilig_bellen::metrics::global().render();
    text.lines()
        .find_map(|l| {
            l.strip_prefix("veilig_bellen_sip_connections_refused_total{limit=\"per_address\"} ")
        })
        .map_or(0, |v| v.trim().parse().unwrap())
}
