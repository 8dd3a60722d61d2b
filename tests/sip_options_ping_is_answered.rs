//! A trunk or phone probes us with OPTIONS (SIPp running fixtures/sipp/options_ping.xml over UDP
//! and TCP; a raw probe over IPv6 loopback): each gets 200 OK with Allow, Accept and Supported.

use crate::support;

use std::time::Duration;

use support::sip_alone::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_ping_gets_200_with_capabilities_over_udp_and_tcp() {
    if support::tool("sipp").is_none() {
        return;
    }
    let server = start(config()).await;
    for (transport, addr) in [("u1", server.udp()), ("t1", server.tcp())] {
        let port = support::ports::port();
        let args: Vec<String> = [
            "-sf",
            &fixture("sipp/options_ping.xml"),
            "-m",
            "3",
            "-t",
            transport,
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-timeout",
            "10s",
            "-recv_timeout",
            "5000",
            &addr.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (ok, out) = sipp(&args, Duration::from_secs(20)).await;
        assert!(
            ok,
            "OPTIONS over {transport} not answered as expected:\n{out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_over_ipv6_loopback_gets_200_over_udp_and_tcp() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("SKIPPED: no IPv6 loopback here");
        return;
    }
    let mut cfg = config();
    cfg.udp = vec!["[::1]:0".parse().unwrap()];
    cfg.tcp = vec!["[::1]:0".parse().unwrap()];
    let server = start(cfg).await;
    assert!(server.udp().is_ipv6() && server.tcp().is_ipv6());

    let sock = tokio::net::UdpSocket::bind("[::1]:0").await.unwrap();
    let me = sock.local_addr().unwrap();
    let r = udp_exchange(
        &sock,
        server.udp(),
        options(me, "v6udp").as_bytes(),
        Duration::from_secs(3),
    )
    .await
    .expect("OPTIONS over UDP/IPv6 answered");
    assert_eq!(status_of(&r), Some(200), "{r}");
    assert!(
        r.contains(&format!("received={}", me.ip())) || r.contains("rport="),
        "{r}"
    );

    let mut tcp = tokio::net::TcpStream::connect(server.tcp()).await.unwrap();
    let me = tcp.local_addr().unwrap();
    let msg = options(me, "v6tcp").replace("/UDP", "/TCP");
    tcp.write_all(msg.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 8192];
    let n = tokio::time::timeout(Duration::from_secs(3), tcp.read(&mut buf))
        .await
        .expect("OPTIONS over TCP/IPv6 answered")
        .unwrap();
    let r = String::from_utf8_lossy(&buf[..n]);
    assert_eq!(status_of(&r), Some(200), "{r}");
}
