//! Someone opens more TCP connections than the driver allows and leaves them idle: connections
//! over the limit are closed at once, idle ones are closed after the idle timeout, and afterwards
//! a phone can connect and get answers again.

use crate::support;

use std::time::Duration;

use support::sip_alone::*;
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
        assert_eq!(tcp_ping(&mut c, &format!("keep{i}")).await, Some(200));
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
    assert_eq!(tcp_ping(&mut fresh, "fresh").await, Some(200));
}
