//! Someone opens more TCP connections than the driver allows and leaves them idle: connections
//! over the limit are closed at once, idle ones are closed after the idle timeout, and afterwards
//! a phone can connect and get answers again.

mod support;

use std::time::Duration;

use support::sip_alone::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_and_idle_ones_are_closed() {
    let mut cfg = config();
    cfg.streams.max_connections = 2;
    cfg.streams.idle_timeout = Duration::from_millis(600);
    let server = start(cfg).await;

    let mut kept = Vec::new();
    for i in 0..2 {
        let mut c = TcpStream::connect(server.tcp()).await.unwrap();
        assert_eq!(ping(&mut c, &format!("keep{i}")).await, Some(200));
        kept.push(c);
    }
    let mut extra = TcpStream::connect(server.tcp()).await.unwrap();
    assert!(
        closed_within(&mut extra, Duration::from_millis(400)).await,
        "a third connection must be refused"
    );
    for c in &mut kept {
        assert!(
            closed_within(c, Duration::from_secs(3)).await,
            "an idle connection must be closed after the idle timeout"
        );
    }
    let mut fresh = TcpStream::connect(server.tcp()).await.unwrap();
    assert_eq!(ping(&mut fresh, "fresh").await, Some(200));
}

/// OPTIONS over `c`; the status of the answer.
async fn ping(c: &mut TcpStream, branch: &str) -> Option<u16> {
    let me = c.local_addr().unwrap();
    let msg = options(me, branch).replace("/UDP", "/TCP");
    c.write_all(msg.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 8192];
    let n = tokio::time::timeout(Duration::from_secs(3), c.read(&mut buf))
        .await
        .ok()?
        .ok()?;
    status_of(&String::from_utf8_lossy(&buf[..n]))
}

/// Whether the server closes `c` (EOF or reset) within `wait`.
async fn closed_within(c: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout(wait, c.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}
