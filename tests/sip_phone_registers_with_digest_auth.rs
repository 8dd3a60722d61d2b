//! An agent's phone (SIPp running fixtures/sipp/register_auth.xml) registers: the first REGISTER
//! is challenged with 401, the answer with digest credentials gets 200 OK, and the registrar then
//! lists the phone's contact, reachable at the address it registered from.

use crate::support;

use std::time::Duration;

use support::sip_alone::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phone_registers_with_digest_auth_over_udp_and_tcp() {
    if support::tool("sipp").is_none() {
        return;
    }
    let server = start(config()).await;
    for (transport, addr) in [("u1", server.udp()), ("t1", server.tcp())] {
        let port = support::ports::port();
        let args: Vec<String> = [
            "-sf",
            &fixture("sipp/register_auth.xml"),
            "-s",
            AGENT,
            "-au",
            AGENT,
            "-ap",
            PASSWORD,
            "-m",
            "1",
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
        assert!(ok, "sipp REGISTER over {transport} failed:\n{out}");
        let bindings = server.sip.handle.lookup(AGENT).await.unwrap();
        let b = bindings
            .iter()
            .find(|b| b.contact.uri.port() == Some(port))
            .unwrap_or_else(|| panic!("no binding for port {port}: {bindings:?}"));
        assert_eq!(b.target.ip().to_string(), "127.0.0.1");
        assert!(b.remaining(std::time::Instant::now()) > 250);
    }
    assert_eq!(server.sip.handle.lookup(AGENT).await.unwrap().len(), 2);
}
