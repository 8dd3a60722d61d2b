//! A flood of new requests must not cost a call in progress anything (issue 11, "Robustness").
//!
//! * From the trunk's own address (the worst case: a trunk is never limited per address, it
//!   carries every citizen's call), 30 000 INVITEs arrive as fast as loopback carries them while a
//!   call is up. The call's re-INVITE and BYE — sent as a real UA sends them, retransmitted on T1 —
//!   are both answered `200`: events of existing dialogs never wait behind new requests, and the
//!   flood itself is answered (`503` at capacity or when the new-request queue is full), not
//!   silently piled up.
//! * From an address that is not a trunk, a burst of REGISTERs is cut to the per-address rate
//!   before anything is parsed (counted as shed), while a phone at another address is answered at
//!   once.

use crate::support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::server;
use tokio::net::UdpSocket;
use veilig_bellen::server::ServerConfig;

const TRUNK: &str = "127.0.0.2";
const FLOOD: usize = 30_000;

fn trunk_only(config: &mut ServerConfig) {
    config.calls.trunks = vec![format!("{TRUNK}/32").parse().expect("CIDR")];
    config.calls.max_calls = 2;
}

fn sdp(ip: &str, media: u16, version: u32) -> String {
    format!(
        "v=0\r\no=trunk 1 {version} IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {media} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
    )
}

/// A trunk request; `to_tag` makes it in-dialog.
#[allow(clippy::too_many_arguments)]
fn request(
    method: &str,
    from: SocketAddr,
    to: SocketAddr,
    call_id: &str,
    branch: &str,
    cseq: u32,
    to_tag: Option<&str>,
    body: &str,
) -> String {
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    let content_type = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "{method} sip:{number}@{to} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {from};branch=z9hG4bK-{branch}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:+31600000042@{from_ip}>;tag=trunk-{call_id}\r\n\
         To: <sip:{number}@{to}>{to_tag}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} {method}\r\n\
         Contact: <sip:trunk@{from}>\r\n\
         {content_type}Content-Length: {len}\r\n\r\n{body}",
        number = server::TENANT_NUMBER,
        from_ip = from.ip(),
        len = body.len(),
    )
}

fn status(text: &str) -> Option<u16> {
    text.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

fn to_tag(text: &str) -> Option<String> {
    let to = text
        .lines()
        .find(|l| l.starts_with("To:") || l.starts_with("t:"))?;
    let tag = to.split(";tag=").nth(1)?;
    Some(tag.split([';', '\r', ' ']).next()?.to_owned())
}

/// Sends `message` and retransmits it on T1 (500 ms, doubling to 4 s, RFC 3261 §17.1.1.2) until a
/// final response to `cseq_method` arrives or `limit` passes. The final response's text.
async fn transact(
    sock: &UdpSocket,
    to: SocketAddr,
    message: &str,
    cseq_method: &str,
    limit: Duration,
) -> Option<String> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut interval = Duration::from_millis(500);
    let mut buf = vec![0u8; 65536];
    loop {
        sock.send_to(message.as_bytes(), to).await.expect("send");
        let next = (tokio::time::Instant::now() + interval).min(deadline);
        while let Ok(Ok((n, _))) = tokio::time::timeout_at(next, sock.recv_from(&mut buf)).await {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if status(&text).is_some_and(|s| s >= 200) && text.contains(cseq_method) {
                return Some(text);
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        interval = (interval * 2).min(Duration::from_secs(4));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invite_flood_from_the_trunk_leaves_a_live_calls_reinvite_and_bye_answered() {
    let srv = server::start(4, trunk_only).await;
    let to = srv.sip_udp;
    let call = UdpSocket::bind((TRUNK, 0)).await.expect("bind");
    let media = UdpSocket::bind((TRUNK, 0)).await.expect("bind media");
    let me = call.local_addr().expect("addr");
    let media_port = media.local_addr().expect("addr").port();

    // The live call: answered and acknowledged before the flood.
    let invite = request(
        "INVITE",
        me,
        to,
        "live",
        "live-1",
        1,
        None,
        &sdp(TRUNK, media_port, 1),
    );
    let ok = transact(&call, to, &invite, "1 INVITE", Duration::from_secs(10))
        .await
        .expect("the live call is answered");
    assert_eq!(status(&ok), Some(200), "{ok}");
    let tag = to_tag(&ok).expect("a To tag");
    let ack = request("ACK", me, to, "live", "live-ack", 1, Some(&tag), "");
    call.send_to(ack.as_bytes(), to).await.expect("send ACK");
    srv.wait_for_call(Duration::from_secs(5), |c| c["caller"] == "+31600000042")
        .await
        .expect("the live call is listed");

    // The flood, from the trunk's address, bounded in count.
    let flood = Arc::new(UdpSocket::bind((TRUNK, 0)).await.expect("bind flood"));
    let refused = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicUsize::new(0));
    let counter = {
        let flood = flood.clone();
        let refused = refused.clone();
        let answered = answered.clone();
        tokio::spawn(async move {
            // Answers while the flood lasts and a little after (not the retransmissions of the
            // 503s, which nobody here acknowledges, for the 32 s of Timer H).
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            let mut buf = vec![0u8; 65536];
            while let Ok(Ok((n, _))) =
                tokio::time::timeout_at(deadline, flood.recv_from(&mut buf)).await
            {
                match status(&String::from_utf8_lossy(&buf[..n])) {
                    Some(503) => refused.fetch_add(1, Ordering::Relaxed),
                    Some(_) => answered.fetch_add(1, Ordering::Relaxed),
                    None => 0,
                };
            }
        })
    };
    let sender = {
        let flood = flood.clone();
        tokio::spawn(async move {
            let from = flood.local_addr().expect("addr");
            let body = sdp(TRUNK, 9, 1);
            for i in 0..FLOOD {
                let id = format!("flood-{i}");
                let invite = request("INVITE", from, to, &id, &id, 1, None, &body);
                let _ = flood.send_to(invite.as_bytes(), to).await;
                if i % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };

    // In the middle of it (the flood is answered 503 already): the live call refreshes its
    // session, then hangs up.
    support::wait_until(Duration::from_secs(5), || {
        refused.load(Ordering::Relaxed) > 0
    })
    .await;
    let reinvite = request(
        "INVITE",
        me,
        to,
        "live",
        "live-2",
        2,
        Some(&tag),
        &sdp(TRUNK, media_port, 2),
    );
    let answer = transact(&call, to, &reinvite, "2 INVITE", Duration::from_secs(15))
        .await
        .expect("the re-INVITE gets a final answer during the flood");
    assert_eq!(
        status(&answer),
        Some(200),
        "the live call's re-INVITE: {answer}"
    );
    let ack = request("ACK", me, to, "live", "live-ack2", 2, Some(&tag), "");
    call.send_to(ack.as_bytes(), to).await.expect("send ACK");
    let bye = request("BYE", me, to, "live", "live-3", 3, Some(&tag), "");
    let bye_ok = transact(&call, to, &bye, "3 BYE", Duration::from_secs(15))
        .await
        .expect("the BYE gets a final answer during the flood");
    assert_eq!(status(&bye_ok), Some(200), "the live call's BYE: {bye_ok}");

    sender.await.expect("flood sender");
    counter.await.expect("flood counter");
    let refused = refused.load(Ordering::Relaxed);
    assert!(
        refused > 100,
        "the flood was real and was answered 503 rather than piled up: {refused} refused, {} other answers",
        answered.load(Ordering::Relaxed)
    );
    srv.shutdown().await;
}

fn shed(queue: &str) -> f64 {
    veilig_bellen::metrics::global()
        .render()
        .lines()
        .filter(|l| l.starts_with("veilig_bellen_sip_events_shed_total{"))
        .filter(|l| l.contains(&format!("queue=\"{queue}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn register(from: SocketAddr, to: SocketAddr, i: usize) -> String {
    format!(
        "REGISTER sip:{ip} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {from};branch=z9hG4bK-reg-{i}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:agent@{ip}>;tag=reg-{i}\r\n\
         To: <sip:agent@{ip}>\r\n\
         Call-ID: reg-{from}-{i}\r\n\
         CSeq: 1 REGISTER\r\n\
         Contact: <sip:agent@{from}>\r\n\
         Expires: 60\r\n\
         Content-Length: 0\r\n\r\n",
        ip = to.ip(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_from_a_stranger_is_cut_to_its_rate_and_a_phone_elsewhere_is_answered() {
    let srv = server::start(2, trunk_only).await;
    let to = srv.sip_udp;
    let before = shed("source");
    let stranger = UdpSocket::bind(("127.0.0.3", 0)).await.expect("bind");
    let from = stranger.local_addr().expect("addr");
    const BURST: usize = 2_000;
    for i in 0..BURST {
        stranger
            .send_to(register(from, to, i).as_bytes(), to)
            .await
            .expect("send");
        if i % 100 == 99 {
            // Paced a little, so the kernel's socket buffer is not what cuts the burst (pacing of a
            // load loop, not a wait).
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let mut answers = 0;
    let mut buf = vec![0u8; 65536];
    while let Ok(Ok(_)) =
        tokio::time::timeout(Duration::from_secs(1), stranger.recv_from(&mut buf)).await
    {
        answers += 1;
    }
    // The default rate: bursts of 200, then 50/s; the burst took well under two seconds.
    assert!(
        answers > 0 && answers <= 400,
        "{answers} of {BURST} REGISTERs from one stranger were answered"
    );
    assert!(
        shed("source") - before >= (BURST / 4) as f64,
        "what was cut is counted as shed: {} shed, {answers} answered",
        shed("source") - before
    );

    // A phone at another address is answered (challenged) at once.
    let phone = UdpSocket::bind(("127.0.0.4", 0)).await.expect("bind");
    let phone_addr = phone.local_addr().expect("addr");
    let answer = transact(
        &phone,
        to,
        &register(phone_addr, to, 0),
        "1 REGISTER",
        Duration::from_secs(2),
    )
    .await
    .expect("the phone's REGISTER is answered");
    assert_eq!(status(&answer), Some(401), "{answer}");
    srv.shutdown().await;
}
