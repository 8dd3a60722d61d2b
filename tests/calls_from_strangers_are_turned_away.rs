//! Only the trunks may call (`sip.trunks`). With the trunk at 127.0.0.2, an INVITE from 127.0.0.1 — a
//! scanner, or anyone who found the SIP port — gets no final answer, no call in the agents' list and
//! no RTP (no port is bound, nothing is sent to the address in its SDP); another dialog-creating
//! request (SUBSCRIBE) gets nothing at all, and neither does an OPTIONS (a scanner's probe: OPTIONS
//! is answered outside the trunks only where an agent phone is registered, see
//! `sipvicious_finds_nothing.rs`). With `sip.unknown_sources = "reject"` the INVITE and the OPTIONS
//! get 403. The same INVITE and OPTIONS from the trunk's address are answered and the call listed,
//! so the filter is no blanket refusal.

use crate::support;

use std::net::SocketAddr;
use std::time::Duration;

use support::server::{self, TestServer};
use tokio::net::UdpSocket;
use veilig_bellen::call::manager::UnknownSources;
use veilig_bellen::server::ServerConfig;

const TRUNK: &str = "127.0.0.2";
const STRANGER: &str = "127.0.0.1";

fn trunk_only(config: &mut ServerConfig) {
    config.calls.trunks = vec![format!("{TRUNK}/32").parse().expect("CIDR")];
}

/// A request as a trunk (or scanner) would send it, with an SDP offer to `media` for INVITEs.
fn request(method: &str, from: SocketAddr, to: SocketAddr, call_id: &str, media: u16) -> String {
    let body = if method == "INVITE" {
        format!(
            "v=0\r\no=scan 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
             m=audio {media} RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n",
            ip = from.ip()
        )
    } else {
        String::new()
    };
    let content_type = if body.is_empty() {
        String::new()
    } else {
        "Content-Type: application/sdp\r\n".to_owned()
    };
    let event = if method == "SUBSCRIBE" {
        "Event: presence\r\nExpires: 60\r\n"
    } else {
        ""
    };
    format!(
        "{method} sip:{number}@{to} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {from};branch=z9hG4bK-{call_id}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:+31600000042@{from_ip}>;tag=scan-{call_id}\r\n\
         To: <sip:{number}@{to}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 {method}\r\n\
         Contact: <sip:scan@{from}>\r\n\
         {event}{content_type}Content-Length: {len}\r\n\r\n{body}",
        number = server::TENANT_NUMBER,
        from_ip = from.ip(),
        len = body.len(),
    )
}

/// Status codes of every response that arrives within `wait`.
async fn responses(sock: &UdpSocket, wait: Duration) -> Vec<u16> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 8192];
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Ok((n, _))) = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await {
        let text = String::from_utf8_lossy(&buf[..n]);
        if let Some(status) = text
            .strip_prefix("SIP/2.0 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
        {
            got.push(status);
        }
    }
    got
}

/// A UDP socket on `ip` that the SDP names as media, and how many packets it got within `wait`.
async fn media_socket(ip: &str) -> UdpSocket {
    UdpSocket::bind((ip, 0)).await.expect("bind media socket")
}

async fn packets(sock: &UdpSocket, wait: Duration) -> usize {
    let mut buf = vec![0u8; 2048];
    let mut n = 0;
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Ok(_)) = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await {
        n += 1;
    }
    n
}

fn unknown_source_count(method: &str, action: &str) -> f64 {
    let text = veilig_bellen::metrics::global().render();
    text.lines()
        .filter(|l| l.starts_with("veilig_bellen_sip_unknown_source_requests_total{"))
        .filter(|l| l.contains(&format!("method=\"{method}\"")))
        .filter(|l| l.contains(&format!("action=\"{action}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Nothing of a call: none listed, every RTP port free.
async fn no_call(srv: &TestServer) {
    assert!(srv.calls().await.is_empty(), "{:#?}", srv.calls().await);
    assert_eq!(srv.running.calls.live_calls(), 0);
    let (free, all) = srv.running.calls.rtp_pairs().expect("RTP pool");
    assert_eq!(free, all, "no RTP port was taken");
    assert!(srv.rtp_ports_free());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invite_from_a_stranger_gets_no_answer_no_call_and_no_media() {
    let srv = server::start(2, trunk_only).await;
    let sock = UdpSocket::bind((STRANGER, 0)).await.expect("bind");
    let media = media_socket(STRANGER).await;
    let me = sock.local_addr().expect("addr");
    let invite = request(
        "INVITE",
        me,
        srv.sip_udp,
        "stranger-invite",
        media.local_addr().expect("addr").port(),
    );
    sock.send_to(invite.as_bytes(), srv.sip_udp)
        .await
        .expect("send");
    let got = responses(&sock, Duration::from_secs(2)).await;
    assert!(
        got.iter().all(|s| *s < 200),
        "a stranger's INVITE gets no final answer: {got:?}"
    );
    assert_eq!(
        packets(&media, Duration::from_millis(500)).await,
        0,
        "no RTP"
    );
    no_call(&srv).await;
    assert!(unknown_source_count("INVITE", "dropped") >= 1.0);

    // Another request that would start a dialog: not even a provisional answer.
    let subscribe = request("SUBSCRIBE", me, srv.sip_udp, "stranger-subscribe", 0);
    sock.send_to(subscribe.as_bytes(), srv.sip_udp)
        .await
        .expect("send");
    assert_eq!(
        responses(&sock, Duration::from_secs(1)).await,
        Vec::<u16>::new()
    );
    assert!(unknown_source_count("other", "dropped") >= 1.0);

    // A probe with OPTIONS (no phone is registered from here): nothing either, counted alike.
    let dropped = unknown_source_count("other", "dropped");
    let options = request("OPTIONS", me, srv.sip_udp, "stranger-options", 0);
    sock.send_to(options.as_bytes(), srv.sip_udp)
        .await
        .expect("send");
    assert_eq!(
        responses(&sock, Duration::from_secs(2)).await,
        Vec::<u16>::new()
    );
    assert!(unknown_source_count("other", "dropped") > dropped);
    no_call(&srv).await;

    // The trunk's address may probe and call: its OPTIONS is answered, its INVITE answered and
    // listed.
    let trunk = UdpSocket::bind((TRUNK, 0)).await.expect("bind 127.0.0.2");
    let options = request(
        "OPTIONS",
        trunk.local_addr().expect("addr"),
        srv.sip_udp,
        "trunk-options",
        0,
    );
    trunk
        .send_to(options.as_bytes(), srv.sip_udp)
        .await
        .expect("send");
    assert_eq!(responses(&trunk, Duration::from_secs(2)).await, vec![200]);
    let trunk_media = media_socket(TRUNK).await;
    let invite = request(
        "INVITE",
        trunk.local_addr().expect("addr"),
        srv.sip_udp,
        "trunk-invite",
        trunk_media.local_addr().expect("addr").port(),
    );
    trunk
        .send_to(invite.as_bytes(), srv.sip_udp)
        .await
        .expect("send");
    let got = responses(&trunk, Duration::from_secs(1)).await;
    assert!(got.contains(&200), "the trunk's call is answered: {got:?}");
    let listed = srv
        .wait_for_call(Duration::from_secs(3), |c| c["caller"] == "+31600000042")
        .await;
    assert!(listed.is_ok(), "{listed:?}");
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_reject_a_strangers_invite_gets_403_and_still_no_call() {
    let srv = server::start(2, |c| {
        trunk_only(c);
        c.calls.unknown_sources = UnknownSources::Reject;
    })
    .await;
    let sock = UdpSocket::bind((STRANGER, 0)).await.expect("bind");
    let media = media_socket(STRANGER).await;
    let invite = request(
        "INVITE",
        sock.local_addr().expect("addr"),
        srv.sip_udp,
        "stranger-rejected",
        media.local_addr().expect("addr").port(),
    );
    sock.send_to(invite.as_bytes(), srv.sip_udp)
        .await
        .expect("send");
    let got = responses(&sock, Duration::from_secs(1)).await;
    assert_eq!(
        got.iter().find(|s| **s >= 200),
        Some(&403),
        "refused with 403: {got:?}"
    );
    assert_eq!(
        packets(&media, Duration::from_millis(300)).await,
        0,
        "no RTP"
    );
    no_call(&srv).await;
    assert!(unknown_source_count("INVITE", "rejected") >= 1.0);

    // A scanner's OPTIONS gets the same refusal.
    let options = request(
        "OPTIONS",
        sock.local_addr().expect("addr"),
        srv.sip_udp,
        "stranger-options-rejected",
        0,
    );
    sock.send_to(options.as_bytes(), srv.sip_udp)
        .await
        .expect("send");
    assert_eq!(responses(&sock, Duration::from_secs(1)).await, vec![403]);
    assert!(unknown_source_count("other", "rejected") >= 1.0);
    srv.shutdown().await;
}

/// The whole contract: not even `100 Trying` (the endpoint would send one for every INVITE it
/// sees, RFC 3261 §17.2.1): the SIP driver turns strangers away before the transaction layer, so
/// they leave no transaction behind either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invite_from_a_stranger_gets_nothing_at_all() {
    let srv = server::start(2, trunk_only).await;
    let sock = UdpSocket::bind((STRANGER, 0)).await.expect("bind");
    let invite = request(
        "INVITE",
        sock.local_addr().expect("addr"),
        srv.sip_udp,
        "stranger-silence",
        9,
    );
    sock.send_to(invite.as_bytes(), srv.sip_udp)
        .await
        .expect("send");
    assert_eq!(
        responses(&sock, Duration::from_secs(2)).await,
        Vec::<u16>::new()
    );
    srv.shutdown().await;
}
