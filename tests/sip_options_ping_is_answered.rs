//! A trunk or phone probes us with OPTIONS (SIPp running fixtures/sipp/options_ping.xml, over UDP
//! and TCP): each gets 200 OK with Allow, Accept and Supported.

mod sip_support;

use std::time::Duration;

use sip_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_ping_gets_200_with_capabilities_over_udp_and_tcp() {
    if tool("sipp").is_none() {
        return;
    }
    let server = start(config()).await;
    for (transport, addr) in [("u1", server.udp()), ("t1", server.tcp())] {
        let port = free_udp_port();
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
