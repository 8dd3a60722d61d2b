//! Loopback tests of `UdpRing`. Each is bounded in time; each skips (with a note) when the kernel
//! refuses io_uring.
#![cfg(target_os = "linux")]

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use rtp_io::{Completion, Token, UdpRing};

fn ring(max_sockets: usize) -> Option<UdpRing> {
    match UdpRing::new(max_sockets) {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("SKIP: io_uring unavailable here: {e}");
            None
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Ev {
    Dgram(Token, SocketAddr, Vec<u8>, bool),
    Closed(Token),
}

fn record(evs: &mut Vec<Ev>) -> impl FnMut(Completion<'_>) + '_ {
    move |c| {
        evs.push(match c {
            Completion::Datagram {
                token,
                from,
                bytes,
                truncated,
            } => Ev::Dgram(token, from, bytes.to_vec(), truncated),
            Completion::Closed { token } => Ev::Closed(token),
        })
    }
}

/// Waits (20 ms steps) until `done` or `limit` passed.
fn pump(ring: &mut UdpRing, evs: &mut Vec<Ev>, limit: Duration, done: impl Fn(&[Ev]) -> bool) {
    let end = Instant::now() + limit;
    while !done(evs) && Instant::now() < end {
        ring.wait(Some(Duration::from_millis(20)), &mut record(evs))
            .expect("wait");
    }
}

fn bind(ip: &str) -> Option<UdpSocket> {
    let s = UdpSocket::bind((ip, 0)).ok()?;
    s.set_nonblocking(true).expect("nonblocking");
    Some(s)
}

fn set_rcvbuf(s: &UdpSocket, bytes: i32) {
    // SAFETY: setsockopt reads `bytes` (a live i32 of the given size) on an open socket.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&bytes as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "SO_RCVBUF");
}

/// The kernel's drop counter of the UDP (IPv4) socket bound to `port` (/proc/net/udp).
fn udp_drops(port: u16) -> u64 {
    let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    let want = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(1)?.ends_with(&want)).then(|| f.last()?.parse::<u64>().ok())?
        })
        .sum()
}

fn datagrams(evs: &[Ev], token: Token) -> Vec<(SocketAddr, Vec<u8>)> {
    evs.iter()
        .filter_map(|e| match e {
            Ev::Dgram(t, from, b, _) if *t == token => Some((*from, b.clone())),
            _ => None,
        })
        .collect()
}

fn two_peers(ip: &str) {
    let Some(mut ring) = ring(8) else { return };
    let (Some(a), Some(b)) = (bind(ip), bind(ip)) else {
        eprintln!("SKIP: cannot bind {ip}");
        return;
    };
    let (pa, pb) = (bind(ip).expect("peer"), bind(ip).expect("peer"));
    let (aa, ba) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    ring.add(1, a).expect("add a");
    ring.add(2, b).expect("add b");
    assert!(ring.add(2, bind(ip).unwrap()).is_err(), "token in use");
    ring.wait(Some(Duration::ZERO), &mut |_| {}).expect("arm");
    pa.send_to(b"to-a-1", aa).unwrap();
    pb.send_to(b"to-b-1", ba).unwrap();
    pa.send_to(b"to-b-2", ba).unwrap();
    pb.send_to(&[7u8; 3000], aa).unwrap();
    let mut evs = Vec::new();
    pump(&mut ring, &mut evs, Duration::from_secs(2), |e| {
        e.len() >= 4
    });
    let (fa, fb) = (pa.local_addr().unwrap(), pb.local_addr().unwrap());
    assert_eq!(
        datagrams(&evs, 1),
        vec![(fa, b"to-a-1".to_vec()), (fb, vec![7u8; 2048])]
    );
    assert_eq!(
        datagrams(&evs, 2),
        vec![(fb, b"to-b-1".to_vec()), (fa, b"to-b-2".to_vec())]
    );
    assert!(evs.contains(&Ev::Dgram(1, fb, vec![7u8; 2048], true)));
    assert_eq!(ring.stats().received, 4);
    assert_eq!(ring.stats().truncated, 1);
    // And back: replies from each socket reach the peers, with the socket's address as source.
    assert!(ring.send(1, fa, b"reply-a"));
    assert!(ring.send(2, fb, b"reply-b"));
    assert!(!ring.send(3, fb, b"unknown token"));
    assert!(!ring.send(1, fb, &[0u8; 2049]), "too big");
    ring.wait(Some(Duration::ZERO), &mut |_| {})
        .expect("submit");
    for (peer, from, want) in [(&pa, aa, &b"reply-a"[..]), (&pb, ba, &b"reply-b"[..])] {
        peer.set_nonblocking(false).unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 64];
        let (n, src) = peer.recv_from(&mut buf).expect("reply");
        assert_eq!((&buf[..n], src), (want, from));
    }
}

#[test]
fn datagrams_from_two_peers_ipv4() {
    two_peers("127.0.0.1");
}

#[test]
fn datagrams_from_two_peers_ipv6() {
    two_peers("::1");
}

#[test]
fn ipv4_destination_on_ipv6_socket() {
    let Some(mut ring) = ring(2) else { return };
    // A dual-stack socket (bound to ::) sends to an IPv4 peer IPv4-mapped.
    let Ok(s) = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0)) else {
        eprintln!("SKIP: no IPv6");
        return;
    };
    let port = s.local_addr().unwrap().port();
    let peer = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    ring.add(9, s).unwrap();
    assert!(ring.send(9, peer.local_addr().unwrap(), b"mapped"));
    ring.wait(Some(Duration::ZERO), &mut |_| {}).unwrap();
    let mut buf = [0u8; 16];
    let (n, src) = peer.recv_from(&mut buf).expect("mapped send");
    assert_eq!(&buf[..n], b"mapped");
    assert_eq!(src.port(), port);
}

#[test]
fn sends_arrive_in_order_and_a_burst_of_1000() {
    let Some(mut ring) = ring(4) else { return };
    let (s1, s2) = (bind("127.0.0.1").unwrap(), bind("127.0.0.1").unwrap());
    let (a1, a2) = (s1.local_addr().unwrap(), s2.local_addr().unwrap());
    ring.add(1, s1).unwrap();
    ring.add(2, s2).unwrap();
    let peer = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    set_rcvbuf(&peer, 4 << 20);
    peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let dest = peer.local_addr().unwrap();
    let mut accepted = [0u32; 2];
    for i in 0..1000u32 {
        let token = u64::from(i % 2) + 1;
        if ring.send(token, dest, &i.to_be_bytes()) {
            accepted[(token - 1) as usize] += 1;
        }
    }
    let dropped = 2000 - accepted.iter().sum::<u32>() - 1000;
    assert_eq!(u64::from(dropped), ring.stats().send_dropped);
    ring.wait(Some(Duration::ZERO), &mut |_| {}).unwrap();
    let mut evs = Vec::new();
    // Collect the send completions too (they count `sent`).
    pump(&mut ring, &mut evs, Duration::from_secs(2), |_| false);
    let mut got = [Vec::new(), Vec::new()];
    let mut buf = [0u8; 16];
    while let Ok((n, src)) = peer.recv_from(&mut buf) {
        assert_eq!(n, 4);
        let i = u32::from_be_bytes(buf[..4].try_into().unwrap());
        let k = if src == a1 {
            0
        } else {
            assert_eq!(src, a2);
            1
        };
        got[k].push(i);
        if got[0].len() + got[1].len() == 1000 - dropped as usize {
            break;
        }
    }
    for (k, g) in got.iter().enumerate() {
        assert_eq!(g.len(), accepted[k] as usize, "socket {k}");
        assert!(g.windows(2).all(|w| w[0] < w[1]), "in order per socket");
    }
    let st = ring.stats();
    assert_eq!(st.sent, 1000 - u64::from(dropped), "{st:?}");
    assert_eq!(st.send_errors, 0);
    eprintln!("burst: {st:?}");
}

/// Sockets on the registered file table (the normal case): closing one also clears its slot, or
/// the table would keep the socket, and its port, open.
#[test]
fn remove_reports_closed_and_frees_the_port() {
    let Some(ring) = ring(4) else { return };
    assert!(ring.uses_fixed_files(), "a 4-slot file table is refused");
    remove_frees_the_port(ring);
}

/// Where the file table is refused (it counts against `RLIMIT_NOFILE`: here a ring for more sockets
/// than the soft limit), sockets are named by descriptor and everything works the same.
#[test]
fn without_a_file_table_sockets_go_by_descriptor() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the live struct passed.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    if limit.rlim_cur >= 1 << 20 {
        eprintln!(
            "SKIP: RLIMIT_NOFILE {} allows any file table",
            limit.rlim_cur
        );
        return;
    }
    let Some(ring) = ring(limit.rlim_cur as usize + 1) else {
        return;
    };
    assert!(!ring.uses_fixed_files());
    remove_frees_the_port(ring);
}

fn remove_frees_the_port(mut ring: UdpRing) {
    let s = bind("127.0.0.1").unwrap();
    let addr = s.local_addr().unwrap();
    let keep = bind("127.0.0.1").unwrap();
    let keep_addr = keep.local_addr().unwrap();
    ring.add(5, s).unwrap();
    ring.add(6, keep).unwrap();
    let peer = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    ring.wait(Some(Duration::ZERO), &mut |_| {}).unwrap();
    peer.send_to(b"before", addr).unwrap();
    let mut evs = Vec::new();
    pump(&mut ring, &mut evs, Duration::from_secs(2), |e| {
        !e.is_empty()
    });
    assert_eq!(
        datagrams(&evs, 5),
        vec![(peer.local_addr().unwrap(), b"before".to_vec())]
    );
    // A send queued before the remove still goes out (its fd stays open until it completed).
    assert!(ring.send(5, peer.local_addr().unwrap(), b"last"));
    ring.remove(5);
    ring.remove(5); // twice: no-op
    ring.remove(77); // unknown: no-op
    assert!(!ring.send(5, peer.local_addr().unwrap(), b"after remove"));
    assert!(
        ring.add(5, bind("127.0.0.1").unwrap()).is_err(),
        "in use until Closed"
    );
    for _ in 0..20 {
        let _ = peer.send_to(b"after", addr);
    }
    evs.clear();
    pump(&mut ring, &mut evs, Duration::from_secs(2), |e| {
        e.contains(&Ev::Closed(5))
    });
    assert!(evs.contains(&Ev::Closed(5)), "{evs:?}");
    assert!(
        datagrams(&evs, 5).is_empty(),
        "nothing after remove: {evs:?}"
    );
    // The port is free again: the fd is closed.
    let again = UdpSocket::bind(addr).expect("rebind the removed socket's port");
    // The token can be used again; the other socket is untouched.
    ring.add(5, again).unwrap();
    ring.wait(Some(Duration::ZERO), &mut |_| {}).unwrap();
    peer.send_to(b"new", addr).unwrap();
    peer.send_to(b"keep", keep_addr).unwrap();
    evs.clear();
    pump(&mut ring, &mut evs, Duration::from_secs(2), |e| {
        e.len() >= 2
    });
    assert_eq!(evs.iter().filter(|e| matches!(e, Ev::Closed(_))).count(), 0);
    assert_eq!(datagrams(&evs, 5).len(), 1);
    assert_eq!(datagrams(&evs, 6).len(), 1);
    let mut buf = [0u8; 8];
    peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let (n, _) = peer
        .recv_from(&mut buf)
        .expect("the send queued before remove");
    assert_eq!(&buf[..n], b"last");
}

#[test]
fn remove_before_any_wait() {
    let Some(mut ring) = ring(1) else { return };
    let s = bind("127.0.0.1").unwrap();
    let addr = s.local_addr().unwrap();
    ring.add(1, s).unwrap();
    assert!(
        ring.add(2, bind("127.0.0.1").unwrap()).is_err(),
        "max_sockets"
    );
    ring.remove(1);
    let mut evs = Vec::new();
    pump(&mut ring, &mut evs, Duration::from_secs(2), |e| {
        !e.is_empty()
    });
    assert_eq!(evs, vec![Ev::Closed(1)]);
    UdpSocket::bind(addr).expect("port free");
}

#[test]
fn waker_from_another_thread() {
    let Some(mut ring) = ring(2) else { return };
    let s = bind("127.0.0.1").unwrap();
    let addr = s.local_addr().unwrap();
    ring.add(1, s).unwrap();
    ring.wait(Some(Duration::ZERO), &mut |_| {}).unwrap();
    let waker = ring.waker();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        waker.wake();
        // A second wake coalesces with the first.
        waker.wake();
        // Should the wake be lost, this datagram ends the test's wait (bounded).
        if done_rx.recv_timeout(Duration::from_secs(3)).is_err() {
            let _ = UdpSocket::bind("127.0.0.1:0").and_then(|p| p.send_to(b"x", addr));
        }
    });
    let start = Instant::now();
    let mut evs = Vec::new();
    ring.wait(None, &mut record(&mut evs)).unwrap();
    let took = start.elapsed();
    assert!(took < Duration::from_secs(1), "woke after {took:?}");
    assert!(
        took >= Duration::from_millis(90),
        "returned early: {took:?}"
    );
    assert!(evs.is_empty());
    // The waker is re-armed: a second wake works too.
    let w = ring.waker();
    let t2 = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        w.wake();
    });
    let start = Instant::now();
    ring.wait(Some(Duration::from_secs(2)), &mut |_| {})
        .unwrap();
    assert!(start.elapsed() < Duration::from_secs(1));
    t2.join().unwrap();
    drop(done_tx);
    drop(ring);
    t.join().unwrap();
}

#[test]
fn timeouts() {
    let Some(mut ring) = ring(2) else { return };
    ring.add(1, bind("127.0.0.1").unwrap()).unwrap();
    // The first waits may see the arming's completions; settle.
    ring.wait(Some(Duration::ZERO), &mut |_| {}).unwrap();
    ring.wait(Some(Duration::ZERO), &mut |_| {}).unwrap();
    let start = Instant::now();
    ring.wait(Some(Duration::from_millis(50)), &mut |_| {})
        .unwrap();
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(40) && took < Duration::from_secs(1),
        "{took:?}"
    );
    let start = Instant::now();
    for _ in 0..10 {
        ring.wait(Some(Duration::ZERO), &mut |_| {}).unwrap();
    }
    // Ten non-blocking waits: far below one 50 ms timeout even on a loaded 2-core machine.
    assert!(
        start.elapsed() < Duration::from_millis(200),
        "{:?}",
        start.elapsed()
    );
    // A huge timeout is no error; a wake queued before ends it.
    ring.waker().wake();
    let start = Instant::now();
    ring.wait(Some(Duration::MAX), &mut |_| {})
        .expect("huge timeout");
    assert!(start.elapsed() < Duration::from_secs(1));
}

/// Floods `sockets` sockets with `per_socket` datagrams each while the ring is not waiting, then
/// checks that everything the kernel kept is delivered, in order per socket.
fn flood(sockets: u64, per_socket: u32) -> Option<rtp_io::Stats> {
    let mut ring = ring(sockets as usize)?;
    let mut addrs = Vec::new();
    for t in 0..sockets {
        let s = bind("127.0.0.1").unwrap();
        set_rcvbuf(&s, 4 << 20);
        addrs.push(s.local_addr().unwrap());
        ring.add(t, s).unwrap();
    }
    ring.wait(Some(Duration::ZERO), &mut |_| {}).unwrap(); // armed
    let peer = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let mut sent = 0u64;
    for i in 0..per_socket {
        for a in &addrs {
            let mut pkt = [0u8; 172];
            pkt[..4].copy_from_slice(&i.to_be_bytes());
            if peer.send_to(&pkt, a).is_ok() {
                sent += 1;
            }
        }
    }
    let drops = || addrs.iter().map(|a| udp_drops(a.port())).sum::<u64>();
    let mut evs = Vec::new();
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        ring.wait(Some(Duration::from_millis(20)), &mut record(&mut evs))
            .unwrap();
        if evs.len() as u64 + drops() >= sent {
            break;
        }
    }
    let st = ring.stats();
    eprintln!(
        "sent {sent}, received {}, socket drops {}, {st:?}",
        evs.len(),
        drops()
    );
    assert_eq!(
        evs.len() as u64 + drops(),
        sent,
        "none lost beyond the sockets' drops"
    );
    assert_eq!(drops(), 0, "SO_RCVBUF large enough for all");
    for t in 0..sockets {
        let ids: Vec<u32> = datagrams(&evs, t)
            .iter()
            .map(|(_, b)| u32::from_be_bytes(b[..4].try_into().unwrap()))
            .collect();
        assert_eq!(ids, (0..per_socket).collect::<Vec<_>>(), "socket {t}");
    }
    Some(st)
}

#[test]
fn more_datagrams_than_buffers_one_socket() {
    // 3000 > the 512 provided buffers of a small ring.
    flood(1, 3000);
}

#[test]
fn more_datagrams_than_buffers_many_sockets() {
    // Many sockets with a backlog each exhaust the shared buffers within one turn: ENOBUFS, then
    // re-armed after the buffers came back.
    if let Some(st) = flood(32, 100) {
        assert!(st.recv_enobufs > 0, "buffers ran out at least once: {st:?}");
        assert!(st.rearms >= st.recv_enobufs);
    }
}

#[test]
fn drop_with_operations_in_flight() {
    for round in 0..3 {
        let Some(mut ring) = ring(8) else { return };
        let peer = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let dest = peer.local_addr().unwrap();
        let mut addrs = Vec::new();
        for t in 0..8 {
            let s = bind("127.0.0.1").unwrap();
            addrs.push(s.local_addr().unwrap());
            ring.add(t, s).unwrap();
        }
        ring.wait(Some(Duration::ZERO), &mut |_| {}).unwrap();
        for (i, a) in addrs.iter().enumerate().cycle().take(400) {
            let _ = peer.send_to(&[i as u8; 100], a);
        }
        for i in 0..800u64 {
            ring.send(i % 8, dest, &[1u8; 1000]);
        }
        if round > 0 {
            // Submitted and in flight (round 1), or with a remove pending too (round 2).
            ring.wait(Some(Duration::ZERO), &mut |_| {}).unwrap();
        }
        if round == 2 {
            ring.remove(3);
            for i in 0..100u64 {
                ring.send(i % 8, dest, &[2u8; 1000]);
            }
        }
        let waker = ring.waker();
        drop(ring);
        waker.wake(); // after the ring: harmless
    }
    // Never waited: nothing submitted.
    if let Some(mut ring) = ring(2) {
        ring.add(1, bind("127.0.0.1").unwrap()).unwrap();
        ring.send(1, "127.0.0.1:9".parse().unwrap(), b"x");
        drop(ring);
    }
}

#[test]
fn wrong_thread_is_an_error_not_ub() {
    let Some(mut ring) = ring(2) else { return };
    ring.add(1, bind("127.0.0.1").unwrap()).unwrap();
    ring.wait(Some(Duration::ZERO), &mut |_| {}).unwrap();
    // Moved to another thread after the first wait: the kernel refuses (single issuer); the
    // drop there cannot drain and leaks instead of freeing memory in use.
    let r = std::thread::spawn(move || {
        let r = ring.wait(Some(Duration::ZERO), &mut |_| {});
        drop(ring);
        r.map_err(|e| e.raw_os_error())
    })
    .join()
    .expect("no panic");
    eprintln!("wait on another thread: {r:?}");
}

#[test]
fn created_on_one_thread_used_on_another() {
    let Some(mut ring) = ring(2) else { return };
    let s = bind("127.0.0.1").unwrap();
    let addr = s.local_addr().unwrap();
    ring.add(1, s).unwrap();
    let t = std::thread::spawn(move || {
        let mut evs = Vec::new();
        ring.wait(Some(Duration::ZERO), &mut record(&mut evs))
            .unwrap();
        UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .send_to(b"hi", addr)
            .unwrap();
        pump(&mut ring, &mut evs, Duration::from_secs(2), |e| {
            !e.is_empty()
        });
        evs.len()
    });
    assert_eq!(t.join().unwrap(), 1);
}

/// Receives one datagram on `peer` (blocking, 2 s): its bytes and source.
fn recv_one(peer: &UdpSocket) -> Option<(Vec<u8>, SocketAddr)> {
    peer.set_nonblocking(false).unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 64];
    let (n, src) = peer.recv_from(&mut buf).ok()?;
    Some((buf[..n].to_vec(), src))
}

/// Nothing arrives on `peer` within 100 ms.
fn nothing_on(peer: &UdpSocket) -> bool {
    peer.set_nonblocking(false).unwrap();
    peer.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = [0u8; 64];
    peer.recv_from(&mut buf).is_err()
}

fn connected(ip: &str) {
    let Some(mut ring) = ring(4) else { return };
    let Some(s) = bind(ip) else {
        eprintln!("SKIP: cannot bind {ip}");
        return;
    };
    let (pa, pb) = (bind(ip).expect("peer"), bind(ip).expect("peer"));
    let (sa, fa, fb) = (
        s.local_addr().unwrap(),
        pa.local_addr().unwrap(),
        pb.local_addr().unwrap(),
    );
    ring.add(1, s).expect("add");
    ring.connect(1, Some(fa)).expect("connect");
    // To the connected peer (no address in the SQE), in order, from the socket's address; and to
    // another address (with its address: Linux sends there even on a connected socket).
    for m in [&b"c-1"[..], b"c-2", b"c-3"] {
        assert!(ring.send(1, fa, m));
    }
    assert!(ring.send(1, fb, b"elsewhere"));
    ring.wait(Some(Duration::ZERO), &mut |_| {})
        .expect("submit");
    for m in [&b"c-1"[..], b"c-2", b"c-3"] {
        assert_eq!(recv_one(&pa), Some((m.to_vec(), sa)));
    }
    assert_eq!(recv_one(&pb), Some((b"elsewhere".to_vec(), sa)));
    assert_eq!(ring.stats().send_errors, 0);
    // Connected: only the peer's datagrams arrive.
    pb.send_to(b"from-b-while-connected", sa).unwrap();
    pa.send_to(b"from-a", sa).unwrap();
    let mut evs = Vec::new();
    pump(&mut ring, &mut evs, Duration::from_secs(2), |e| {
        !e.is_empty()
    });
    pump(&mut ring, &mut evs, Duration::from_millis(100), |_| false);
    assert_eq!(datagrams(&evs, 1), vec![(fa, b"from-a".to_vec())]);
    // A send queued to the old peer and not yet submitted still goes there after a reconnect.
    assert!(ring.send(1, fa, b"queued-for-a"));
    ring.connect(1, Some(fb)).expect("reconnect");
    assert!(ring.send(1, fb, b"for-b"));
    ring.wait(Some(Duration::ZERO), &mut |_| {})
        .expect("submit");
    assert_eq!(recv_one(&pa), Some((b"queued-for-a".to_vec(), sa)));
    assert_eq!(recv_one(&pb), Some((b"for-b".to_vec(), sa)));
    // Disconnected: datagrams from anyone arrive again, sends to anyone work.
    ring.connect(1, None).expect("disconnect");
    assert!(ring.send(1, fa, b"after-a"));
    assert!(ring.send(1, fb, b"after-b"));
    ring.wait(Some(Duration::ZERO), &mut |_| {})
        .expect("submit");
    assert_eq!(recv_one(&pa), Some((b"after-a".to_vec(), sa)));
    assert_eq!(recv_one(&pb), Some((b"after-b".to_vec(), sa)));
    pa.send_to(b"a-again", sa).unwrap();
    pb.send_to(b"b-again", sa).unwrap();
    let mut evs = Vec::new();
    pump(&mut ring, &mut evs, Duration::from_secs(2), |e| {
        e.len() >= 2
    });
    let mut got = datagrams(&evs, 1);
    got.sort();
    let mut want = vec![(fa, b"a-again".to_vec()), (fb, b"b-again".to_vec())];
    want.sort();
    assert_eq!(got, want);
    assert_eq!(ring.stats().send_errors, 0);
    // Errors: unknown token, removed token.
    let e = ring.connect(7, Some(fa)).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    assert_eq!(
        ring.connect(7, None).unwrap_err().kind(),
        std::io::ErrorKind::NotFound
    );
    ring.remove(1);
    assert_eq!(
        ring.connect(1, Some(fa)).unwrap_err().kind(),
        std::io::ErrorKind::NotFound
    );
}

#[test]
fn connected_socket_ipv4() {
    connected("127.0.0.1");
}

#[test]
fn connected_socket_ipv6() {
    connected("::1");
}

#[test]
fn connect_family_mismatch_and_ipv4_peer_on_ipv6_socket() {
    let Some(mut ring) = ring(4) else { return };
    let v4 = bind("127.0.0.1").expect("bind");
    ring.add(1, v4).unwrap();
    let e = ring
        .connect(1, Some("[::1]:5004".parse().unwrap()))
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    // A dual-stack socket connected to an IPv4 peer (IPv4-mapped) sends to it without address.
    let Ok(s) = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0)) else {
        eprintln!("SKIP: no IPv6");
        return;
    };
    let port = s.local_addr().unwrap().port();
    let peer = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    ring.add(2, s).unwrap();
    ring.connect(2, Some(peer.local_addr().unwrap()))
        .expect("connect mapped");
    assert!(ring.send(2, peer.local_addr().unwrap(), b"mapped-connected"));
    ring.wait(Some(Duration::ZERO), &mut |_| {}).unwrap();
    let (bytes, src) = recv_one(&peer).expect("mapped connected send");
    assert_eq!(bytes, b"mapped-connected");
    assert_eq!(src.port(), port);
    assert_eq!(ring.stats().send_errors, 0);
    assert!(nothing_on(&peer));
}

/// A connected socket is read without source addresses (the kernel drops other senders' new
/// datagrams) — but a `connect` does not drop what is already queued: a stranger's datagram that
/// came before it is still reported with the stranger's address, never as the peer's.
#[test]
fn datagrams_queued_before_a_connect_keep_their_source() {
    let Some(mut ring) = ring(4) else { return };
    let s = bind("127.0.0.1").expect("bind");
    let (pa, pb) = (bind("127.0.0.1").unwrap(), bind("127.0.0.1").unwrap());
    let (sa, fa, fb) = (
        s.local_addr().unwrap(),
        pa.local_addr().unwrap(),
        pb.local_addr().unwrap(),
    );
    ring.add(1, s).expect("add");
    let mut evs = Vec::new();
    pump(&mut ring, &mut evs, Duration::from_millis(50), |_| false);
    for round in 0..3 {
        // Disconnected (from the last round's peer): anyone's datagrams are taken.
        ring.connect(1, None).expect("disconnect");
        pump(&mut ring, &mut evs, Duration::from_millis(50), |_| false);
        // Queued in the socket while the ring is not looking, then the connect.
        pb.send_to(format!("early-b-{round}").as_bytes(), sa)
            .unwrap();
        pa.send_to(format!("early-a-{round}").as_bytes(), sa)
            .unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let (peer, other) = if round % 2 == 0 { (fa, fb) } else { (fb, fa) };
        ring.connect(1, Some(peer)).expect("connect");
        // After it: the peer's datagrams arrive (read without addresses), the other's do not.
        let (to_peer, to_other) = if round % 2 == 0 {
            (&pa, &pb)
        } else {
            (&pb, &pa)
        };
        let mut evs = Vec::new();
        pump(&mut ring, &mut evs, Duration::from_millis(100), |_| false);
        for i in 0..3 {
            to_other
                .send_to(format!("late-other-{i}").as_bytes(), sa)
                .unwrap();
            to_peer
                .send_to(format!("late-peer-{i}").as_bytes(), sa)
                .unwrap();
        }
        pump(&mut ring, &mut evs, Duration::from_secs(2), |e| {
            e.len() >= 5
        });
        pump(&mut ring, &mut evs, Duration::from_millis(100), |_| false);
        let b = |t: &str| t.as_bytes().to_vec();
        assert_eq!(
            datagrams(&evs, 1),
            vec![
                (fb, b(&format!("early-b-{round}"))),
                (fa, b(&format!("early-a-{round}"))),
                (peer, b("late-peer-0")),
                (peer, b("late-peer-1")),
                (peer, b("late-peer-2")),
            ],
            "round {round}: connected to {peer}, not to {other}"
        );
    }
    // Disconnected again: everyone's datagrams, each with its own source.
    ring.connect(1, None).expect("disconnect");
    let mut evs = Vec::new();
    pump(&mut ring, &mut evs, Duration::from_millis(50), |_| false);
    pa.send_to(b"a-after", sa).unwrap();
    pb.send_to(b"b-after", sa).unwrap();
    pump(&mut ring, &mut evs, Duration::from_secs(2), |e| {
        e.len() >= 2
    });
    let mut got = datagrams(&evs, 1);
    got.sort();
    let mut want = vec![(fa, b"a-after".to_vec()), (fb, b"b-after".to_vec())];
    want.sort();
    assert_eq!(got, want);
    assert_eq!(ring.stats().recv_errors, 0);
}

/// `send_on` goes out of the socket its id names, and never out of another socket that took the
/// closed one's place on the ring.
#[test]
fn send_on_names_one_socket_only() {
    let Some(mut ring) = ring(4) else { return };
    let (s1, s2) = (bind("127.0.0.1").unwrap(), bind("127.0.0.1").unwrap());
    let (a1, a2) = (s1.local_addr().unwrap(), s2.local_addr().unwrap());
    let peer = bind("127.0.0.1").unwrap();
    let to = peer.local_addr().unwrap();
    let first = ring.add(1, s1).expect("add");
    assert_eq!(first.token(), 1);
    assert!(ring.send_on(first, to, b"one"));
    ring.wait(Some(Duration::ZERO), &mut |_| {}).unwrap();
    assert_eq!(recv_one(&peer), Some((b"one".to_vec(), a1)));
    ring.remove(1);
    let mut evs = Vec::new();
    pump(&mut ring, &mut evs, Duration::from_secs(2), |e| {
        e.contains(&Ev::Closed(1))
    });
    assert!(evs.contains(&Ev::Closed(1)));
    // The second socket takes the first one's place on the ring.
    let second = ring.add(2, s2).expect("add");
    assert!(!ring.send_on(first, to, b"stale"));
    assert!(ring.send_on(second, to, b"two"));
    ring.wait(Some(Duration::ZERO), &mut |_| {}).unwrap();
    assert_eq!(recv_one(&peer), Some((b"two".to_vec(), a2)));
    assert!(nothing_on(&peer));
    assert_eq!(ring.stats().send_dropped, 1);
}
