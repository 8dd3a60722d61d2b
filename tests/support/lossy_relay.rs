//! Test support: a UDP relay between the trunk (SIPp) and the SBC that loses the first `200` to an
//! INVITE on its way to the trunk — a lossy last hop, as a real network has now and then.
//!
//! The trunk sends to [`LossyRelay::addr`]; the relay forwards each datagram to the upstream (the
//! SBC's trunk side) from one socket of its own, so the SBC answers (by Via and `rport`) to that
//! socket, and the relay passes the answers back to whoever last sent from the trunk side. The first
//! datagram from upstream that starts with `SIP/2.0 200` and whose CSeq method is INVITE is dropped;
//! everything else goes through both ways. The relay's task ends when it is dropped.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::UdpSocket;

/// A running relay.
pub struct LossyRelay {
    /// Where the trunk sends.
    pub addr: SocketAddr,
    dropped: Arc<AtomicUsize>,
    log: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

/// Whether `datagram` is a 200 response to an INVITE.
pub fn is_invite_ok(datagram: &[u8]) -> bool {
    if !datagram.starts_with(b"SIP/2.0 200") {
        return false;
    }
    let text = String::from_utf8_lossy(datagram);
    text.lines()
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .any(|(name, value)| {
            name.trim().eq_ignore_ascii_case("CSeq") && value.trim().ends_with("INVITE")
        })
}

/// The first line of a SIP message, for the relay's log.
fn first_line(datagram: &[u8]) -> String {
    String::from_utf8_lossy(datagram)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// The relay's loop: trunk → upstream as it comes, upstream → trunk less the first 200 OK to an
/// INVITE.
async fn relay(
    trunk_side: UdpSocket,
    upstream_side: UdpSocket,
    upstream: SocketAddr,
    dropped: Arc<AtomicUsize>,
    log: Arc<Mutex<Vec<String>>>,
) {
    let note = |what: String| log.lock().unwrap_or_else(|e| e.into_inner()).push(what);
    let mut trunk: Option<SocketAddr> = None;
    let mut from_trunk = vec![0u8; 65_536];
    let mut from_upstream = vec![0u8; 65_536];
    loop {
        tokio::select! {
            got = trunk_side.recv_from(&mut from_trunk) => {
                let Ok((len, peer)) = got else { continue };
                trunk = Some(peer);
                let datagram = &from_trunk[..len];
                note(format!("trunk -> sbc: {}", first_line(datagram)));
                let _ = upstream_side.send_to(datagram, upstream).await;
            }
            got = upstream_side.recv_from(&mut from_upstream) => {
                let Ok((len, _)) = got else { continue };
                let datagram = &from_upstream[..len];
                if is_invite_ok(datagram) && dropped.load(Ordering::SeqCst) == 0 {
                    dropped.fetch_add(1, Ordering::SeqCst);
                    note(format!("sbc -> trunk: {} (LOST)", first_line(datagram)));
                    continue;
                }
                note(format!("sbc -> trunk: {}", first_line(datagram)));
                if let Some(trunk) = trunk {
                    let _ = trunk_side.send_to(datagram, trunk).await;
                }
            }
        }
    }
}

impl LossyRelay {
    /// Relays between a trunk and `upstream`, losing the first 200 OK to an INVITE towards the trunk.
    pub async fn start(upstream: SocketAddr) -> LossyRelay {
        let trunk_side = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let upstream_side = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = trunk_side.local_addr().expect("addr");
        let dropped = Arc::new(AtomicUsize::new(0));
        let log = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(relay(
            trunk_side,
            upstream_side,
            upstream,
            dropped.clone(),
            log.clone(),
        ));
        LossyRelay {
            addr,
            dropped,
            log,
            task,
        }
    }

    /// How many datagrams it lost (0 or 1).
    pub fn dropped(&self) -> usize {
        self.dropped.load(Ordering::SeqCst)
    }

    /// What went through (first lines, in order), for failure messages.
    pub fn log(&self) -> String {
        let mut s = String::from("--- lossy relay\n");
        for line in self.log.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            s.push_str(line);
            s.push('\n');
        }
        s
    }
}

impl Drop for LossyRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}
