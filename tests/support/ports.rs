//! Test support: loopback ports that no other test process, and not the kernel, hands out meanwhile.
//!
//! nextest runs every test in its own process, many at a time. A port found free by binding `:0` and
//! closing the socket is free only until somebody binds it again, and the kernel hands out exactly
//! such ports to every `bind(…:0)`. A peer started a moment later on a port picked that way (SIPp's
//! `-mp`, a server's RTP range that it binds call by call) now and then found it taken: CI once saw
//! SIPp exit with EADDRINUSE on its audio port. So the ports a test picks ahead of use come from
//! below the kernel's ephemeral range, in blocks of [`BLOCK`] ports, each claimed by an exclusive
//! lock on a file in the temp dir; the lock lasts as long as the test process (it goes with it, also
//! on a crash), so two processes never hold the same block.

use std::fs::{File, OpenOptions};
use std::net::UdpSocket;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::Mutex;

/// Ports per lock: SIPp's `-mp P` binds P and P + 2, so a single port is the start of a block of 4.
pub const BLOCK: u16 = 4;
/// The lowest port handed out (well above the registered ports services tend to use).
const FLOOR: u16 = 12_000;

/// Locks this process holds; kept until it exits.
static HELD: Mutex<Vec<File>> = Mutex::new(Vec::new());

/// One free UDP port on 127.0.0.1, first of a block of [`BLOCK`] (so `port + 2` is ours too).
pub fn port() -> u16 {
    *range(BLOCK).start()
}

/// `count` consecutive ports on 127.0.0.1 that bind now and that no other test will pick; the range
/// starts on an even port (RTP on even, RTCP on odd).
pub fn range(count: u16) -> RangeInclusive<u16> {
    let blocks = count.div_ceil(BLOCK).max(1);
    let ceiling = ephemeral_low().min(32_768);
    let total = (ceiling.saturating_sub(FLOOR) / BLOCK).saturating_sub(blocks - 1);
    assert!(
        total > 0,
        "no room for {count} test ports between {FLOOR} and the ephemeral range at {ceiling}"
    );
    let dir = lock_dir();
    let first_try = rand::random::<u16>() % total;
    for attempt in 0..total {
        let first = (first_try + attempt) % total;
        let low = FLOOR + first * BLOCK;
        let high = low + blocks * BLOCK - 1;
        let mut locks = Vec::with_capacity(usize::from(blocks));
        for block in 0..blocks {
            match claim(&dir, low + block * BLOCK) {
                Some(lock) => locks.push(lock),
                None => break,
            }
        }
        let claimed = locks.len() == usize::from(blocks);
        if claimed && (low..=high).all(|p| UdpSocket::bind(("127.0.0.1", p)).is_ok()) {
            HELD.lock().unwrap_or_else(|e| e.into_inner()).extend(locks);
            return low..=low + count.max(1) - 1;
        }
    }
    panic!("no {count} free test ports left between {FLOOR} and {ceiling}");
}

/// The lock on the block starting at `port`, unless another process holds it.
fn claim(dir: &std::path::Path, port: u16) -> Option<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(format!("{port}.lock")))
        .unwrap_or_else(|e| panic!("test port lock file in {}: {e}", dir.display()));
    file.try_lock().ok().map(|()| file)
}

fn lock_dir() -> PathBuf {
    let dir = std::env::temp_dir().join("veilig-bellen-test-ports");
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("test port lock dir {}: {e}", dir.display()));
    dir
}

/// Whether something listens on 127.0.0.1:`port`: a bound UDP socket, or (`tcp`) a listening TCP
/// one. Read from `/proc/net`, so the port is not touched (a probe that bound it could take it from
/// the peer about to bind it).
pub fn listening(port: u16, tcp: bool) -> bool {
    // Socket states: UDP sockets are `07` (unconnected), listening TCP sockets `0A`.
    let (table, state) = if tcp {
        ("/proc/net/tcp", "0A")
    } else {
        ("/proc/net/udp", "07")
    };
    let local = format!("0100007F:{port:04X}");
    std::fs::read_to_string(table)
        .unwrap_or_default()
        .lines()
        .skip(1)
        .any(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            cols.len() > 3 && cols[1] == local && cols[3] == state
        })
}

/// The first port of the kernel's ephemeral range (what `bind(…:0)` draws from).
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}
