//! Someone guesses an agent's password (SIPp running fixtures/sipp/register_wrong_password.xml):
//! every wrong answer gets 401 again, and after the configured number of failures the source's
//! REGISTERs go unanswered — even a fresh one — while OPTIONS from it are still answered. An agent
//! who logs in with their own password between guesses at a colleague's is blocked all the same
//! (a success forgives only that account's failures). Guesses at one account from many addresses
//! make the account back off for those addresses, yet the agent's phone at an address that has not
//! failed still registers at once: nobody can lock an agent out.

use crate::support;

use std::net::SocketAddr;
use std::time::Duration;

use sip::auth::{authorize, Challenge};
use support::sip_alone::*;
use tokio::net::UdpSocket;
use veilig_bellen::sip_driver::Credentials;

const MAX_FAILURES: u32 = 3;
/// The agent's colleague, whose password gets guessed.
const COLLEAGUE: &str = "colleague";

/// Runs a one-call sipp REGISTER `scenario` (a fixture) as `user` with `password` from `ip`.
async fn sipp_register(
    server: &Server,
    scenario: &str,
    user: &str,
    password: &str,
    ip: &str,
) -> (bool, String) {
    let port = support::ports::port().to_string();
    let args: Vec<String> = [
        "-sf",
        &fixture(scenario),
        "-s",
        user,
        "-au",
        user,
        "-ap",
        password,
        "-m",
        "1",
        "-l",
        "1",
        "-i",
        ip,
        "-p",
        &port,
        "-timeout",
        "10s",
        "-recv_timeout",
        "5000",
        &server.udp().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    sipp(&args, Duration::from_secs(20)).await
}

/// A REGISTER of `user` from `sock` (CSeq `cseq`), with `auth` as Authorization when given.
fn register(sock: &UdpSocket, server: SocketAddr, user: &str, cseq: u32, auth: &str) -> String {
    let me = sock.local_addr().unwrap();
    let auth = if auth.is_empty() {
        String::new()
    } else {
        format!("Authorization: {auth}\r\n")
    };
    format!(
        "REGISTER sip:{server} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKraw{cseq};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{user}@{server}>;tag=r{cseq}\r\nTo: <sip:{user}@{server}>\r\n\
         Call-ID: raw-{}@test\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{user}@{me}>\r\n\
         {auth}Content-Length: 0\r\n\r\n",
        me.port()
    )
}

/// `user` logs in from `sock` with `password`: the final answer to the challenged REGISTER.
async fn raw_login(sock: &UdpSocket, server: SocketAddr, user: &str, password: &str) -> String {
    let wait = Duration::from_secs(3);
    let first = register(sock, server, user, 1, "");
    let challenge = udp_exchange(sock, server, first.as_bytes(), wait)
        .await
        .expect("a challenge");
    assert_eq!(status_of(&challenge), Some(401), "{challenge}");
    let ch = challenge
        .lines()
        .find_map(|l| l.trim_end().strip_prefix("WWW-Authenticate: "))
        .and_then(Challenge::parse)
        .expect("digest challenge");
    let uri = format!("sip:{server}");
    let auth = authorize(&ch, user, password, "REGISTER", &uri, "rawcnonce", 1);
    let second = register(sock, server, user, 2, &auth);
    udp_exchange(sock, server, second.as_bytes(), wait)
        .await
        .expect("an answer to the authorised REGISTER")
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_interleaving_good_logins_still_gets_blocked_on_a_colleagues_account() {
    if support::tool("sipp").is_none() {
        return;
    }
    let mut cfg = config();
    cfg.auth_limits.max_failures = MAX_FAILURES;
    cfg.credentials.push(Credentials {
        username: COLLEAGUE.into(),
        password: "colleague-pw-q4".into(),
    });
    let server = start(cfg).await;
    for round in 1..=MAX_FAILURES {
        let (ok, out) = sipp_register(
            &server,
            "sipp/register_auth.xml",
            AGENT,
            PASSWORD,
            "127.0.0.1",
        )
        .await;
        assert!(
            ok,
            "round {round}: the agent's own login should succeed:\n{out}"
        );
        let guess = format!("guess {round}");
        let (ok, out) = sipp_register(
            &server,
            "sipp/register_wrong_password.xml",
            COLLEAGUE,
            &guess,
            "127.0.0.1",
        )
        .await;
        assert!(ok, "round {round}: a wrong guess should get 401:\n{out}");
    }
    assert!(!server.sip.handle.lookup(AGENT).await.unwrap().is_empty());
    assert!(server
        .sip
        .handle
        .lookup(COLLEAGUE)
        .await
        .unwrap()
        .is_empty());

    // The good logins in between did not forgive the guesses: the address is blocked, for the
    // colleague's account and the agent's own alike.
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for user in [COLLEAGUE, AGENT] {
        let first = register(&sock, server.udp(), user, 1, "");
        let answer = udp_exchange(
            &sock,
            server.udp(),
            first.as_bytes(),
            Duration::from_millis(1500),
        )
        .await;
        assert_eq!(answer, None, "a blocked address got an answer for {user}");
    }
    // The colleague's own phone, elsewhere, is not locked out.
    let (ok, out) = sipp_register(
        &server,
        "sipp/register_auth.xml",
        COLLEAGUE,
        "colleague-pw-q4",
        "127.0.0.2",
    )
    .await;
    assert!(ok, "the colleague's phone could not register:\n{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guesses_from_many_addresses_slow_the_account_but_never_lock_the_agent_out() {
    if support::tool("sipp").is_none() {
        return;
    }
    let mut cfg = config();
    cfg.auth_limits.max_failures = MAX_FAILURES;
    cfg.auth_limits.account_free_failures = 3;
    let server = start(cfg).await;
    // Four addresses guess once each: the fourth failure on the account starts its back-off.
    for n in 2..=5 {
        let ip = format!("127.0.0.{n}");
        let (ok, out) = sipp_register(
            &server,
            "sipp/register_wrong_password.xml",
            AGENT,
            "a guess",
            &ip,
        )
        .await;
        assert!(ok, "a wrong guess from {ip} should get 401:\n{out}");
    }
    // A guesser that failed before is held back, even with the right password: it is not checked.
    let guesser = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let answer = raw_login(&guesser, server.udp(), AGENT, PASSWORD).await;
    assert_eq!(status_of(&answer), Some(503), "{answer}");
    assert!(answer.contains("Retry-After: "), "{answer}");
    assert!(server.sip.handle.lookup(AGENT).await.unwrap().is_empty());
    // The agent's phone, at an address that has not failed, registers at once.
    let (ok, out) = sipp_register(
        &server,
        "sipp/register_auth.xml",
        AGENT,
        PASSWORD,
        "127.0.0.1",
    )
    .await;
    assert!(ok, "the agent's phone was locked out:\n{out}");
    assert_eq!(server.sip.handle.lookup(AGENT).await.unwrap().len(), 1);
}
