//! The media plane's drivers, each against the same test state on loopback: datagrams reach the
//! state with their leg and source, what it queues goes out of the right leg's socket, its
//! timeouts come, a flush reads what waits, closing gives the ports back.

use super::*;
use crate::rtp_ports::SharedPortPool;
use sip::random::RandomKey;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::net::UdpSocket as PeerSocket;

/// What a test state was handed: leg, source, bytes.
type Seen = Arc<Mutex<Vec<(LegId, SocketAddr, Vec<u8>)>>>;

/// Echoes every datagram back to its source from the other leg (if any: else the same leg) with
/// a leg tag, and counts timeouts; wants one every `tick` while `tick` is set.
struct Echo {
    seen: Seen,
    timeouts: Arc<AtomicUsize>,
    tick: Option<Duration>,
    next: Option<Instant>,
    /// Where timeouts send a "tick" datagram (from the caller leg).
    tick_to: Option<SocketAddr>,
}

impl MediaState for Echo {
    fn handle_datagram(
        &mut self,
        _now: Instant,
        leg: LegId,
        from: SocketAddr,
        bytes: &[u8],
        out: &mut Outbox,
    ) {
        if bytes == b"panic" {
            panic!("a test state that panics on a datagram");
        }
        crate::sync::lock(&self.seen).push((leg, from, bytes.to_vec()));
        let tag: &[u8] = match leg {
            LegId::Caller => b"C:",
            LegId::Agent => b"A:",
        };
        out.push(leg, from, &[tag, bytes].concat());
    }

    fn handle_timeout(&mut self, now: Instant, out: &mut Outbox) {
        self.timeouts.fetch_add(1, Ordering::Relaxed);
        self.next = self.tick.map(|t| now + t);
        if let Some(to) = self.tick_to {
            out.push(LegId::Caller, to, b"tick");
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.next
    }

    fn handle_changed(&mut self, _out: &mut Outbox) {}
}

struct Harness {
    plane: MediaPlane,
    pool: SharedPortPool,
}

fn harness(io: MediaIo) -> Option<Harness> {
    let plane = MediaPlane::start(io, 16);
    if io != MediaIo::Tokio && plane.driver() != "io_uring" {
        eprintln!("io_uring refused here: the io_uring driver's tests are skipped");
        return None;
    }
    let pool = SharedPortPool::new(41000, 41999, &RandomKey::from_bytes([7; 32])).ok()?;
    Some(Harness { plane, pool })
}

fn bind(pool: &SharedPortPool) -> (std::net::UdpSocket, PortLease, SocketAddr) {
    for _ in 0..16 {
        let lease = pool.allocate().expect("a free port");
        if let Ok(s) = std::net::UdpSocket::bind(("127.0.0.1", lease.rtp_port())) {
            let addr = s.local_addr().expect("addr");
            return (s, lease, addr);
        }
        lease.taken_elsewhere();
    }
    panic!("no port to bind");
}

fn echo(tick: Option<Duration>, tick_to: Option<SocketAddr>) -> (Echo, Seen, Arc<AtomicUsize>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let timeouts = Arc::new(AtomicUsize::new(0));
    let state = Echo {
        seen: seen.clone(),
        timeouts: timeouts.clone(),
        tick,
        next: tick.map(|t| Instant::now() + t),
        tick_to,
    };
    (state, seen, timeouts)
}

async fn recv(peer: &PeerSocket) -> Vec<u8> {
    let mut buf = [0u8; 2048];
    let (n, _) = tokio::time::timeout(Duration::from_secs(2), peer.recv_from(&mut buf))
        .await
        .expect("a datagram within 2 s")
        .expect("recv");
    buf[..n].to_vec()
}

const DRIVERS: [MediaIo; 2] = [MediaIo::Uring { threads: 2 }, MediaIo::Tokio];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datagrams_reach_the_state_by_leg_and_replies_leave_from_that_legs_socket() {
    for io in DRIVERS {
        let Some(h) = harness(io) else { continue };
        let (state, seen, _) = echo(None, None);
        let media = h.plane.attach(Arc::new(Mutex::new(state)));
        let (caller, caller_lease, caller_addr) = bind(&h.pool);
        let (agent, agent_lease, agent_addr) = bind(&h.pool);
        media.add(LegId::Caller, caller, caller_lease);
        media.add(LegId::Agent, agent, agent_lease);
        let trunk = PeerSocket::bind("127.0.0.1:0").await.expect("bind");
        let phone = PeerSocket::bind("127.0.0.1:0").await.expect("bind");
        for i in 0..20u8 {
            trunk.send_to(&[b't', i], caller_addr).await.expect("send");
            assert_eq!(recv(&trunk).await, [&b"C:t"[..], &[i]].concat(), "{io:?}");
            phone.send_to(&[b'p', i], agent_addr).await.expect("send");
            assert_eq!(recv(&phone).await, [&b"A:p"[..], &[i]].concat(), "{io:?}");
        }
        let seen = crate::sync::lock(&seen).clone();
        assert_eq!(seen.len(), 40, "{io:?}");
        let trunk_addr = trunk.local_addr().expect("addr");
        assert!(seen
            .iter()
            .filter(|(leg, ..)| *leg == LegId::Caller)
            .all(|(_, from, bytes)| *from == trunk_addr && bytes[0] == b't'));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_states_timeouts_come_and_what_it_sends_then_goes_out() {
    for io in DRIVERS {
        let Some(h) = harness(io) else { continue };
        let ear = PeerSocket::bind("127.0.0.1:0").await.expect("bind");
        let (state, _, timeouts) = echo(
            Some(Duration::from_millis(20)),
            Some(ear.local_addr().expect("addr")),
        );
        let media = h.plane.attach(Arc::new(Mutex::new(state)));
        let (caller, lease, _) = bind(&h.pool);
        media.add(LegId::Caller, caller, lease);
        for _ in 0..10 {
            assert_eq!(recv(&ear).await, b"tick", "{io:?}");
        }
        let n = timeouts.load(Ordering::Relaxed);
        assert!((10..=12).contains(&n), "{io:?}: {n} timeouts for 10 ticks");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_hands_over_what_waits_in_the_callers_socket() {
    for io in DRIVERS {
        let Some(h) = harness(io) else { continue };
        let (state, seen, _) = echo(None, None);
        let media = h.plane.attach(Arc::new(Mutex::new(state)));
        let (caller, lease, addr) = bind(&h.pool);
        media.add(LegId::Caller, caller, lease);
        let trunk = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        // Registered before the datagrams go (the plane takes its commands in order).
        media.flush().await;
        for i in 0..30u8 {
            trunk.send_to(&[i], addr).expect("send");
        }
        media.flush().await;
        let n = crate::sync::lock(&seen).len();
        assert_eq!(
            n, 30,
            "{io:?}: every datagram sent before the flush is handed over by it"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_call_closes_its_sockets_and_gives_its_ports_back() {
    for io in DRIVERS {
        let Some(h) = harness(io) else { continue };
        let free = h.pool.available();
        let (state, _, _) = echo(Some(Duration::from_millis(5)), None);
        let mut media = h.plane.attach(Arc::new(Mutex::new(state)));
        let (caller, lease, caller_addr) = bind(&h.pool);
        let (agent, agent_lease, agent_addr) = bind(&h.pool);
        media.add(LegId::Caller, caller, lease);
        media.add(LegId::Agent, agent, agent_lease);
        // A removed leg's port comes back too.
        media.remove(LegId::Agent);
        media.flush().await;
        assert_eq!(
            h.pool.available(),
            free - 1,
            "{io:?}: the removed leg's port is back"
        );
        assert!(
            std::net::UdpSocket::bind(agent_addr).is_ok(),
            "{io:?}: and bindable"
        );
        media.close().await;
        assert_eq!(
            h.pool.available(),
            free,
            "{io:?}: both ports are back after close"
        );
        assert!(
            std::net::UdpSocket::bind(caller_addr).is_ok(),
            "{io:?}: the closed socket's port can be bound again at once"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_that_panics_stops_only_its_own_calls_media() {
    let Some(h) = harness(MediaIo::Uring { threads: 1 }) else {
        return;
    };
    let (bad, _, _) = echo(None, None);
    let (good, good_seen, _) = echo(None, None);
    let bad_media = h.plane.attach(Arc::new(Mutex::new(bad)));
    let good_media = h.plane.attach(Arc::new(Mutex::new(good)));
    let (s1, l1, bad_addr) = bind(&h.pool);
    let (s2, l2, good_addr) = bind(&h.pool);
    bad_media.add(LegId::Caller, s1, l1);
    good_media.add(LegId::Caller, s2, l2);
    let trunk = PeerSocket::bind("127.0.0.1:0").await.expect("bind");
    trunk.send_to(b"panic", bad_addr).await.expect("send");
    bad_media.flush().await;
    trunk.send_to(b"still here", good_addr).await.expect("send");
    assert_eq!(recv(&trunk).await, b"C:still here");
    assert_eq!(crate::sync::lock(&good_seen).len(), 1);
}

/// The `reason="kernel"` RTP send failures in the metrics so far.
fn kernel_send_failures() -> u64 {
    crate::metrics::global()
        .render()
        .lines()
        .find(|l| l.starts_with("veilig_bellen_rtp_send_failures_total{reason=\"kernel\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_the_kernel_refuses_are_counted_in_the_metrics() {
    for io in DRIVERS {
        let Some(h) = harness(io) else { continue };
        let before = kernel_send_failures();
        // Port 0 is no destination: the kernel refuses each send (EINVAL), nothing leaves.
        let nowhere = SocketAddr::from(([127, 0, 0, 1], 0));
        let (state, _, timeouts) = echo(Some(Duration::from_millis(5)), Some(nowhere));
        let media = h.plane.attach(Arc::new(Mutex::new(state)));
        let (caller, lease, _) = bind(&h.pool);
        media.add(LegId::Caller, caller, lease);
        let start = Instant::now();
        while kernel_send_failures() < before + 5 && start.elapsed() < Duration::from_secs(3) {
            // The back-off of this bounded wait for the media thread's sends.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let counted = kernel_send_failures() - before;
        let tried = timeouts.load(Ordering::Relaxed) as u64;
        assert!(
            counted >= 5 && counted <= tried,
            "{io:?}: {counted} failures counted for {tried} sends tried"
        );
    }
}
