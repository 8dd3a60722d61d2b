//! SIPVicious 0.3.8 — the scanner kit behind most SIP attacks on the internet — run against the
//! whole server from an address that is not a trunk (issue 11), with the trunk at 127.0.0.3, the
//! attacker at 127.0.0.2 and the agent's phone at 127.0.0.1:
//!
//! * `svmap` lists no device: its OPTIONS probe (and an INVITE probe) go unanswered. From the
//!   trunk's address the same scan lists us, so the silence is the gate's doing. (A probe with
//!   `svmap -m REGISTER` does get a 401: the registrar answers phones anywhere.)
//! * An agent phone's OPTIONS keep-alive is answered from the address it registered from, and only
//!   while that registration lives.
//! * `svwar` enumerates no extension: the registrar challenges a name it does not know exactly as
//!   it challenges a real agent, so there is no difference to find — not from a stranger, not even
//!   from the trunk (svwar, seeing a real agent answered like its random name, gives up). Its
//!   OPTIONS and INVITE scans from a stranger hear nothing. Against a registrar that answers 404
//!   for unknown names, the same scan lists the agents, so the test can tell.
//! * `svcrack` never finds the agent's password, put at position 50 of its wordlist: after the
//!   configured number of failed logins the address gets no answer at all and the tool gives up;
//!   the agent's real phone (baresip) still registers afterwards. With the failed-login limit
//!   lifted, the same run finds the password, so the test can tell.
//!
//! The server offers only MD5 digests here, as with the older phones some municipalities have:
//! svcrack cannot answer a SHA-256 challenge, and the test must not pass for that reason.

use crate::support;

use std::net::SocketAddr;
use std::time::Duration;

use sip::ratelimit::LimitConfig;
use support::agent::{server_with_agent, AgentPhone, Answer, AGENT_PASSWORD};
use support::server::TestServer;
use support::sipvicious::{self, Run};
use tokio::net::UdpSocket;
use veilig_bellen::server::ServerConfig;
use veilig_bellen::sip_driver::Credentials;

const TRUNK: &str = "127.0.0.3";
const ATTACKER: &str = "127.0.0.2";
const PHONE: &str = "127.0.0.1";
/// A second agent, with a number for a login as many PBXes have.
const NUMERIC_AGENT: &str = "1042";

fn trunk_and_agents(config: &mut ServerConfig) {
    config.calls.trunks = vec![format!("{TRUNK}/32").parse().expect("CIDR")];
    config.sip.credentials.push(Credentials {
        username: NUMERIC_AGENT.into(),
        password: "numeric-agent-pw-7k".into(),
    });
}

fn unknown_source_count(action: &str) -> f64 {
    let text = veilig_bellen::metrics::global().render();
    text.lines()
        .filter(|l| l.starts_with("veilig_bellen_sip_unknown_source_requests_total{"))
        .filter(|l| l.contains("method=\"other\""))
        .filter(|l| l.contains(&format!("action=\"{action}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn assert_nothing_found(run: &Run, what: &str) {
    assert!(
        run.rows().is_empty() && run.found_nothing(),
        "{what}: the tool found something:\n{}",
        run.report()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn svmap_from_a_stranger_finds_nothing_but_from_the_trunk_finds_us() {
    let Some(tools) = sipvicious::tools() else {
        return;
    };
    let srv = server_with_agent(trunk_and_agents).await;
    let dropped = unknown_source_count("dropped");

    let scan = tools.svmap(ATTACKER, srv.sip_udp, &[]).await;
    assert_nothing_found(&scan, "svmap (OPTIONS) from a stranger");
    assert!(
        unknown_source_count("dropped") > dropped,
        "the dropped probe is counted"
    );
    let scan = tools.svmap(ATTACKER, srv.sip_udp, &["-m", "INVITE"]).await;
    assert_nothing_found(&scan, "svmap -m INVITE from a stranger");

    // The same scan from the trunk's address lists us: the tool works, the gate kept it quiet.
    let scan = tools.svmap(TRUNK, srv.sip_udp, &[]).await;
    let rows = scan.rows();
    assert!(
        rows.len() == 1 && rows[0][0] == srv.sip_udp.to_string(),
        "svmap from the trunk should list us:\n{}",
        scan.report()
    );
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_phones_keepalive_is_answered_from_its_address_while_it_is_registered() {
    let srv = server_with_agent(trunk_and_agents).await;
    let phone = UdpSocket::bind((PHONE, 0)).await.expect("bind");
    // The keep-alive comes from another port of the phone's address (as behind a NAT that moved).
    let keepalive = UdpSocket::bind((PHONE, 0)).await.expect("bind");
    let stranger = UdpSocket::bind((ATTACKER, 0)).await.expect("bind");

    assert_eq!(
        options(&keepalive, srv.sip_udp, "before").await,
        None,
        "no registration yet: the address is a stranger's"
    );
    assert_eq!(register(&phone, srv.sip_udp, 300, 1).await, 200);
    assert_eq!(
        options(&keepalive, srv.sip_udp, "registered").await,
        Some(200)
    );
    assert_eq!(
        options(&stranger, srv.sip_udp, "stranger").await,
        None,
        "another address learns nothing"
    );
    assert_eq!(register(&phone, srv.sip_udp, 0, 3).await, 200);
    assert_eq!(
        options(&keepalive, srv.sip_udp, "unregistered").await,
        None,
        "answered only while the phone is registered"
    );
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn svwar_enumerates_no_extension() {
    let Some(tools) = sipvicious::tools() else {
        return;
    };
    let srv = server_with_agent(trunk_and_agents).await;
    let dir = tempfile::tempdir().expect("temp dir");

    // svwar first asks for a random name, then compares each name's answer with that one; on the
    // first answer that is the same 401 it gives up. So each real agent goes first in a list.
    for real in ["agent", NUMERIC_AGENT] {
        let list = sipvicious::wordlist(dir.path(), &format!("{real}.txt"), &names_from(real));
        for from in [ATTACKER, TRUNK] {
            let scan = tools.svwar(from, srv.sip_udp, &list, &["-vvv"]).await;
            assert_nothing_found(&scan, &format!("svwar (REGISTER) from {from}"));
            // It did ask for the real agent and compare, and got the random name's 401.
            assert!(
                scan.stderr
                    .contains("Bad user = ('SIP/2.0 401 Unauthorized',)")
                    && scan
                        .stderr
                        .contains(&format!("sending request for {real}\n"))
                    && scan.stderr.contains("1st line: 'SIP/2.0 401 Unauthorized'"),
                "svwar from {from} should have compared {real}'s answer:\n{}",
                scan.report()
            );
        }
    }
    let list = sipvicious::wordlist(dir.path(), "names.txt", &names_from("agent"));
    // OPTIONS and INVITE scans from a stranger hear nothing at all.
    for method in ["OPTIONS", "INVITE"] {
        let scan = tools
            .svwar(ATTACKER, srv.sip_udp, &list, &["-m", method])
            .await;
        assert_nothing_found(&scan, &format!("svwar -m {method} from a stranger"));
    }
    srv.shutdown().await;
}

/// The positive control of the test above: a registrar that answers `404` for names it does not
/// know (as many PBXes do out of the box) gives both agents away to the same scan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn svwar_finds_the_agents_of_a_registrar_that_gives_them_away() {
    let Some(tools) = sipvicious::tools() else {
        return;
    };
    let oracle = oracle_registrar(&["agent", NUMERIC_AGENT]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let list = sipvicious::wordlist(dir.path(), "names.txt", &names_from("agent"));
    let scan = tools.svwar(ATTACKER, oracle, &list, &[]).await;
    let mut found: Vec<String> = scan.rows().into_iter().map(|r| r[0].clone()).collect();
    found.sort();
    assert_eq!(found, ["1042", "agent"], "{}", scan.report());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn svcrack_never_finds_the_password_and_the_phone_still_registers() {
    let Some(tools) = sipvicious::tools() else {
        return;
    };
    let srv = server_with_agent(trunk_and_agents).await;

    let crack = crack_the_agent(&tools, &srv).await;
    assert!(
        crack.rows().is_empty() && crack.found_nothing(),
        "svcrack found a password:\n{}",
        crack.report()
    );
    // It gave up because we went silent after a few guesses; the right one was never even sent.
    let tried = crack.stderr.matches("DEBUG:ASipOfRedWine:trying ").count();
    let limit = LimitConfig::default().max_failures as usize;
    assert!(
        crack
            .stderr
            .contains("seconds since we last received a response")
            && (limit..=limit + 1).contains(&tried)
            && !crack.stderr.contains(&format!("trying {AGENT_PASSWORD}")),
        "svcrack should have been silenced after {limit} guesses (tried {tried}):\n{}",
        crack.report()
    );

    // The agent's real phone, at its own address, registers as ever.
    let Some(phone) = AgentPhone::register(srv.sip_udp, Answer::Auto).await else {
        return;
    };
    phone.stop().await;
    srv.shutdown().await;
}

/// The positive control of the test above: with the failed-login limits lifted, the same run finds
/// the password — so what stops it there is the limiter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn svcrack_finds_the_password_when_failed_logins_are_not_limited() {
    let Some(tools) = sipvicious::tools() else {
        return;
    };
    let srv: TestServer = server_with_agent(|c| {
        trunk_and_agents(c);
        c.sip.auth_limits.max_failures = 1_000;
        c.sip.auth_limits.account_free_failures = 1_000;
    })
    .await;
    let crack = crack_the_agent(&tools, &srv).await;
    assert_eq!(
        crack.rows(),
        vec![vec!["agent".to_owned(), AGENT_PASSWORD.to_owned()]],
        "{}",
        crack.report()
    );
    srv.shutdown().await;
}

/// `svcrack -vvv` from the attacker's address at `srv`, guessing `agent`'s password from
/// [`passwords_with_the_right_one_50th`].
async fn crack_the_agent(tools: &sipvicious::Tools, srv: &TestServer) -> Run {
    let dir = tempfile::tempdir().expect("temp dir");
    let list = sipvicious::wordlist(
        dir.path(),
        "passwords.txt",
        &passwords_with_the_right_one_50th(),
    );
    tools
        .svcrack(ATTACKER, srv.sip_udp, "agent", &list, &["-vvv"])
        .await
}

/// 80 passwords of the kind wordlists hold; the agent's is the 50th.
fn passwords_with_the_right_one_50th() -> Vec<String> {
    let mut list: Vec<String> = (1..=79).map(|n| format!("Welkom{n:02}!")).collect();
    list.insert(49, AGENT_PASSWORD.to_owned());
    assert_eq!(list[49], AGENT_PASSWORD);
    list
}

/// 60 names a scanner tries, `first` first, the two real agents among them.
fn names_from(first: &str) -> Vec<String> {
    let mut names: Vec<String> = (1000..1050).map(|n| n.to_string()).collect();
    names.extend(
        [
            "admin", "agent", "balie", "test", "user", "sip", "operator", "voip", "guest", "info",
        ]
        .map(String::from),
    );
    names.retain(|n| n != first);
    names.insert(0, first.to_owned());
    assert!(names.iter().any(|n| n == NUMERIC_AGENT) && names.iter().any(|n| n == "agent"));
    names
}

/// One out-of-dialog OPTIONS from `sock`; the status of its answer within 2 s.
async fn options(sock: &UdpSocket, server: SocketAddr, branch: &str) -> Option<u16> {
    let me = sock.local_addr().expect("addr");
    let msg = format!(
        "OPTIONS sip:{server} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-ka-{branch};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:agent@{server}>;tag=ka-{branch}\r\nTo: <sip:{server}>\r\n\
         Call-ID: ka-{branch}@{me}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    let answer =
        support::sip_alone::udp_exchange(sock, server, msg.as_bytes(), Duration::from_secs(2))
            .await?;
    support::sip_alone::status_of(&answer)
}

/// REGISTER `agent` with its password from `sock` (contact: the socket) for `expires` seconds,
/// answering the challenge with CSeq `cseq` + 1; the final status.
async fn register(sock: &UdpSocket, server: SocketAddr, expires: u32, cseq: u32) -> u16 {
    let me = sock.local_addr().expect("addr");
    let uri = format!("sip:{server}");
    let request = |cseq: u32, auth: &str| {
        format!(
            "REGISTER {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-reg-{cseq};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:agent@{server}>;tag=reg\r\nTo: <sip:agent@{server}>\r\n\
             Call-ID: reg@{me}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:agent@{me}>\r\n\
             Expires: {expires}\r\n{auth}Content-Length: 0\r\n\r\n"
        )
    };
    let wait = Duration::from_secs(3);
    let challenge =
        support::sip_alone::udp_exchange(sock, server, request(cseq, "").as_bytes(), wait)
            .await
            .expect("a challenge");
    let ch = support::sip_alone::www_authenticate(&challenge)
        .unwrap_or_else(|| panic!("digest challenge in {challenge}"));
    let auth = support::sip_alone::agent_register_auth(&ch, &uri, "kacnonce");
    let second = request(cseq + 1, &format!("Authorization: {auth}\r\n"));
    let answer = support::sip_alone::udp_exchange(sock, server, second.as_bytes(), wait)
        .await
        .expect("an answer to the authorised REGISTER");
    support::sip_alone::status_of(&answer).expect("a status line")
}

/// A registrar with a user oracle on 127.0.0.1: `401` with a challenge for the names in `known`,
/// `404 Not Found` for any other. It answers until the test ends.
async fn oracle_registrar(known: &'static [&'static str]) -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let addr = sock.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut buf = vec![0u8; 8192];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if text.starts_with("SIP/2.0") {
                continue;
            }
            let header = |name: &str| {
                text.lines()
                    .find(|l| {
                        l.get(..name.len() + 1)
                            .is_some_and(|h| h.eq_ignore_ascii_case(&format!("{name}:")))
                    })
                    .unwrap_or_default()
                    .to_owned()
            };
            let to = header("To");
            let user = to
                .split("sip:")
                .nth(1)
                .and_then(|rest| rest.split('@').next())
                .unwrap_or_default();
            let status = if known.contains(&user) {
                "401 Unauthorized\r\n\
                 WWW-Authenticate: Digest realm=\"oracle\", nonce=\"n0\", algorithm=MD5"
            } else {
                "404 Not Found"
            };
            let answer = format!(
                "SIP/2.0 {status}\r\n{}\r\n{}\r\n{};tag=oracle\r\n{}\r\n{}\r\n\
                 Content-Length: 0\r\n\r\n",
                header("Via"),
                header("From"),
                to,
                header("Call-ID"),
                header("CSeq"),
            );
            let _ = sock.send_to(answer.as_bytes(), from).await;
        }
    });
    addr
}
