//! Someone guesses an agent's password (SIPp running fixtures/sipp/register_wrong_password.xml):
//! every wrong answer gets 401 again, and after the configured number of failures the source's
//! REGISTERs go unanswered — even a fresh one — while OPTIONS from it are still answered.

mod support;

use std::time::Duration;

use support::sip_alone::*;
use tokio::net::UdpSocket;

const MAX_FAILURES: u32 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_get_401_then_the_source_is_blocked() {
    if support::tool("sipp").is_none() {
        return;
    }
    let mut cfg = config();
    cfg.auth_limits.max_failures = MAX_FAILURES;
    let server = start(cfg).await;
    let port = support::ports::port();
    let args: Vec<String> = [
        "-sf",
        &fixture("sipp/register_wrong_password.xml"),
        "-s",
        AGENT,
        "-au",
        AGENT,
        "-ap",
        "not the password",
        "-m",
        &MAX_FAILURES.to_string(),
        "-l",
        "1",
        "-i",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-timeout",
        "15s",
        "-recv_timeout",
        "5000",
        &server.udp().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (ok, out) = sipp(&args, Duration::from_secs(30)).await;
    assert!(ok, "every wrong password should get 401:\n{out}");
    assert!(server.sip.handle.lookup(AGENT).await.unwrap().is_empty());

    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = sock.local_addr().unwrap();
    let register = format!(
        "REGISTER sip:{srv} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKblocked;rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{AGENT}@{srv}>;tag=b1\r\nTo: <sip:{AGENT}@{srv}>\r\n\
         Call-ID: blocked@test\r\nCSeq: 1 REGISTER\r\nContact: <sip:{AGENT}@{me}>\r\n\
         Content-Length: 0\r\n\r\n",
        srv = server.udp()
    );
    let answer = udp_exchange(
        &sock,
        server.udp(),
        register.as_bytes(),
        Duration::from_millis(1500),
    )
    .await;
    assert_eq!(
        answer, None,
        "a blocked source must get no answer to REGISTER"
    );
    let answer = udp_exchange(
        &sock,
        server.udp(),
        options(me, "opt1").as_bytes(),
        Duration::from_secs(3),
    )
    .await
    .expect("OPTIONS from a blocked source is still answered");
    assert_eq!(status_of(&answer), Some(200), "{answer}");
}
