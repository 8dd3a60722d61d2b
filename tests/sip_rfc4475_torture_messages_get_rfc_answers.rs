//! The 49 RFC 4475 torture messages (fixtures/rfc4475/, expectations in MANIFEST.tsv) are sent to
//! the running server over UDP and over TCP; each gets the answer the RFC asks for (or silence),
//! and afterwards the server still answers OPTIONS. The REGISTERs the RFC expects to succeed
//! (cparam01, cparam02, regescrt) are answered once more with digest credentials and must then get
//! 200 listing the contact with url-params and contact-params where the RFC says.
//!
//! Several messages share a transaction key (same Via branch and sent-by): by RFC 3261 §17.2.3 a
//! second one inside the first one's transaction lifetime is a retransmission, answered to the
//! first sender. The server runs with short timers (T1 = 5 ms, so 64·T1 = 320 ms) and the test
//! waits that long before reusing a key, so every message is judged on its own.
//!
//! The messages name hosts that are not ours (192.0.2.x, example.com), so the test re-executes
//! itself in a network namespace of its own (`unshare --net`) with only loopback up: nothing can
//! leave the machine even if the server tried. Answers go to the packet's source (RFC 3261
//! §18.2.2 with RFC 3581), which is the only way the test can see them.

use crate::support;

use std::net::SocketAddr;
use std::time::Duration;

use sip::auth::{authorize, Challenge};
use sip::transaction::TimerConfig;
use support::sip_alone::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use veilig_bellen::sip_driver::Credentials;

/// Longer than every server transaction lives with the test's timers (64·T1 = 320 ms).
const KEY_REUSE_WAIT: Duration = Duration::from_millis(400);

const INNER: &str = "VB_RFC4475_IN_NETNS";
const TEST: &str = "torture_messages_get_the_answers_rfc4475_asks_for";

/// What a message must get: one of these codes, or `None` for silence.
fn expected(file: &str, tcp: bool) -> &'static [Option<u16>] {
    match file {
        // Valid and accepted: INVITEs find nobody to take the call (no call flow attached),
        // OPTIONS are answered, REGISTERs are challenged.
        "wsinv.dat" | "esc01.dat" | "longreq.dat" | "inv2543.dat" => &[Some(480)],
        "lwsdisp.dat" | "semiuri.dat" | "transports.dat" => &[Some(200)],
        "escnull.dat" | "dblreq.dat" => &[Some(401)],
        "intmeth.dat" | "esc02.dat" => &[Some(501)],
        "mpart01.dat" => &[Some(415)],
        // The archive's baddn has no empty line ending its head: on a stream it never ends.
        "baddn.dat" if tcp => &[None],
        // Responses nobody asked for are dropped.
        "unreason.dat" | "noreason.dat" | "scalarlg.dat" | "bigcode.dat" | "bcast.dat" => &[None],
        "badinv01.dat" | "scalar02.dat" | "quotbal.dat" | "ltgtruri.dat" | "lwsruri.dat"
        | "baddn.dat" | "mismatch01.dat" | "badaspec.dat" | "insuf.dat" | "multi01.dat" => {
            &[Some(400)]
        }
        // Over a stream the missing body is waited for until the idle timeout closes it.
        "clerr.dat" if tcp => &[None],
        "clerr.dat" => &[Some(400)],
        "ncl.dat" | "mcl01.dat" => &[Some(400)],
        // May be rejected or accepted liberally; we accept them.
        "lwsstart.dat" | "escruri.dat" | "baddate.dat" => &[Some(400), Some(480)],
        "trws.dat" => &[Some(400), Some(200)],
        "regbadct.dat" => &[Some(400), Some(401)],
        "badvers.dat" => &[Some(505)],
        "mismatch02.dat" => &[Some(501), Some(400)],
        "badbranch.dat" | "zeromf.dat" => &[Some(200)],
        "unkscm.dat" | "novelsc.dat" => &[Some(416)],
        // A registrar answers 400: the AOR must be sip/sips.
        "unksm2.dat" => &[Some(400)],
        // Unknown auth scheme: ignored and challenged.
        "regaut01.dat" => &[Some(401)],
        "bext01.dat" => &[Some(420)],
        "invut.dat" => &[Some(415)],
        "cparam01.dat" | "cparam02.dat" | "regescrt.dat" => &[Some(401)],
        "sdp01.dat" => &[Some(406), Some(400)],
        other => panic!("{other} is in MANIFEST.tsv but has no expectation here"),
    }
}

/// The Contact the 200 must list after authenticating the RFC's "should succeed" REGISTERs.
fn contact_after_auth(file: &str) -> Option<&'static str> {
    match file {
        "cparam01.dat" => Some("<sip:+19725552222@gw1.example.net>;unknownparam;expires=3600"),
        "cparam02.dat" => Some("<sip:+19725552222@gw1.example.net;unknownparam>;expires=3600"),
        "regescrt.dat" => {
            Some("<sip:user@example.com?Route=%3Csip:sip.example.com%3E>;expires=3600")
        }
        _ => None,
    }
}

#[test]
fn torture_messages_get_the_answers_rfc4475_asks_for() {
    if std::env::var_os(INNER).is_none() {
        if support::tool("unshare").is_none() || support::tool("ip").is_none() {
            return;
        }
        let can = std::process::Command::new("unshare")
            .args(["--net", "true"])
            .status()
            .is_ok_and(|s| s.success());
        if !can {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must be able to create a network namespace (run as root)"
            );
            eprintln!("SKIPPED: cannot create a network namespace here");
            return;
        }
        let exe = std::env::current_exe().unwrap();
        let status = std::process::Command::new("unshare")
            .args([
                "--net",
                "sh",
                "-c",
                "ip link set lo up && exec \"$0\" --exact \"$1\" --nocapture --test-threads=1",
            ])
            .arg(exe)
            .arg(support::libtest_name(module_path!(), TEST))
            .env(INNER, "1")
            .status()
            .unwrap();
        assert!(
            status.success(),
            "the run inside the network namespace failed"
        );
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(inside_namespace());
}

async fn inside_namespace() {
    let mut cfg = config();
    // The torture REGISTERs' users, so the "should succeed" ones can authenticate.
    for user in ["watson", "user"] {
        cfg.credentials.push(Credentials {
            username: user.into(),
            password: PASSWORD.into(),
        });
    }
    cfg.streams.idle_timeout = Duration::from_secs(2);
    cfg.timers = TimerConfig {
        t1: Duration::from_millis(5),
        t2: Duration::from_millis(40),
        t4: Duration::from_millis(50),
    };
    // Nothing here is a password guess; keep the limiter out of the way.
    cfg.auth_limits.max_failures = 1000;
    let server = start(cfg).await;
    let dir = fixture("rfc4475");
    let manifest = std::fs::read_to_string(format!("{dir}/MANIFEST.tsv")).unwrap();
    let files: Vec<&str> = manifest
        .lines()
        .skip(1)
        .filter_map(|l| l.split('\t').next())
        .filter(|f| f.ends_with(".dat"))
        .collect();
    assert_eq!(files.len(), 49);

    let mut failures = Vec::new();
    for tcp in [false, true] {
        // Transaction lifetimes are the time under test here (nothing outside shows one end).
        tokio::time::sleep(KEY_REUSE_WAIT).await;
        let mut vias_seen = std::collections::HashSet::new();
        for file in &files {
            let msg = std::fs::read(format!("{dir}/{file}")).unwrap();
            if !vias_seen.insert(top_via(&msg)) {
                // As above: the key's last transaction ends first.
                tokio::time::sleep(KEY_REUSE_WAIT).await;
            }
            let got = if tcp {
                tcp_exchange(server.tcp(), &msg).await
            } else {
                let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
                let wait = if expected(file, tcp) == [None] {
                    1000
                } else {
                    3000
                };
                udp_exchange(&sock, server.udp(), &msg, Duration::from_millis(wait)).await
            };
            let code = got.as_deref().and_then(status_of);
            let want = expected(file, tcp);
            let transport = if tcp { "TCP" } else { "UDP" };
            println!("{transport} {file}: {code:?} (want one of {want:?})");
            if !want.contains(&code) {
                failures.push(format!(
                    "{transport} {file}: got {code:?}, want one of {want:?}"
                ));
                continue;
            }
            if let (Some(resp), Some(contact)) = (got.as_deref(), contact_after_auth(file)) {
                if !tcp {
                    let ok = register_with_auth(&server, file, &msg, resp).await;
                    if !ok.lines().any(|l| l == format!("Contact: {contact}")) {
                        failures.push(format!(
                            "{file}: after auth want Contact {contact}, got:\n{ok}"
                        ));
                    }
                }
            }
        }
        let probe = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let me = probe.local_addr().unwrap();
        let answer = udp_exchange(
            &probe,
            server.udp(),
            options(me, "after").as_bytes(),
            Duration::from_secs(3),
        )
        .await;
        assert_eq!(
            answer.as_deref().and_then(status_of),
            Some(200),
            "the server no longer answers OPTIONS after the torture messages"
        );
    }
    assert!(
        failures.is_empty(),
        "{} wrong answers:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Sends over a fresh TCP connection; the first final response, or `None` if the server stays
/// silent or closes the connection.
async fn tcp_exchange(to: SocketAddr, msg: &[u8]) -> Option<String> {
    let mut s = TcpStream::connect(to).await.unwrap();
    s.write_all(msg).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 65536];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
    loop {
        let n = match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
            Ok(Ok(n)) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        // Skip provisional responses; stop at the end of the first final response head.
        while let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
            buf.drain(..end + 4);
            if !head.starts_with("SIP/2.0 1") {
                return Some(head);
            }
        }
    }
}

/// The first Via line (full or compact name), which carries the transaction key.
fn top_via(msg: &[u8]) -> String {
    String::from_utf8_lossy(msg)
        .lines()
        .find(|l| {
            let l = l.to_ascii_lowercase();
            l.starts_with("via:")
                || l.starts_with("v:")
                || l.starts_with("via ")
                || l.starts_with("v ")
        })
        .unwrap_or_default()
        .to_string()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Answers a 401 for torture REGISTER `msg` with credentials (new branch, CSeq + 1) over UDP and
/// returns the final response text.
async fn register_with_auth(
    server: &Server,
    file: &str,
    msg: &[u8],
    challenge_resp: &str,
) -> String {
    let ch = challenge_resp
        .lines()
        .find_map(|l| l.strip_prefix("WWW-Authenticate: "))
        .and_then(Challenge::parse)
        .expect("401 carries a digest challenge");
    let text = String::from_utf8_lossy(msg).into_owned();
    let user = text
        .lines()
        .find_map(|l| l.strip_prefix("To: sip:"))
        .and_then(|t| t.split('@').next())
        .expect("torture REGISTER has To: sip:user@...")
        .to_string();
    let auth = authorize(
        &ch,
        &user,
        PASSWORD,
        "REGISTER",
        "sip:example.com",
        "c0ffee",
        1,
    );
    let mut out = String::new();
    for line in text.split("\r\n") {
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("cseq:") {
            let n: u32 = line[5..].trim().split(' ').next().unwrap().parse().unwrap();
            out.push_str(&format!("CSeq: {} REGISTER\r\n", n + 1));
        } else if lower.starts_with("via:") {
            let branch = format!("z9hG4bKauthed-{}", file.trim_end_matches(".dat"));
            out.push_str(&line.replace("z9hG4bKkdjuw", &branch));
            out.push_str("\r\n");
        } else if lower.starts_with("l:") || lower.starts_with("content-length:") {
            out.push_str(&format!("Authorization: {auth}\r\n{line}\r\n"));
        } else {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    let out = out.trim_end_matches("\r\n").to_string() + "\r\n\r\n";
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    udp_exchange(&sock, server.udp(), out.as_bytes(), Duration::from_secs(3))
        .await
        .unwrap_or_default()
}
