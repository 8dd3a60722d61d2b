//! RTP I/O models: CPU per packet of a server that gives every call its own UDP socket.
//!
//! A load generator (one UDP socket, its own threads, the same for every model) sends one
//! 172-byte RTP packet (12-byte header + 160 bytes) to each of `VB_SOCKETS` server sockets every
//! 20 ms, spread over the 20 ms in `sendmmsg` batches, and a reader thread drains the replies with
//! blocking `recvfrom`. The server answers every packet with one 172-byte packet from the same
//! socket after the same small work (summing the payload), in one of these I/O models:
//!
//! - `tokio`: multi-thread runtime with 2 workers, one task per socket on an `AsyncFd`
//!   (readable interest only), `recvmmsg` (batch 2, via nix) per wake-up, `send_to` per reply:
//!   the shape of `src/call/task/media.rs` today.
//! - `epoll`: one thread, level-triggered epoll over all sockets (`epoll_wait` up to 256
//!   events), the same `recvmmsg` per ready socket, `send_to` per reply.
//! - `epoll-connected`: as `epoll`, but every socket is `connect()`ed to the generator and
//!   replies with `send` (the same socket setup as `uring`).
//! - `uring`: one thread, one io_uring (single issuer, deferred task work): a multishot `recv`
//!   on every (connected) socket with one shared ring of provided buffers, replies as `Send`
//!   SQEs (completion skipped on success), all submitted with one `io_uring_enter` per loop turn
//!   (`submit_and_wait(1)`), no epoll.
//! - `rtp-io`: the media plane's own ring (`rtp_io::UdpRing`) on unconnected sockets.
//! - `rtp-io-connected`: as `rtp-io`, every socket connected to the generator with
//!   `UdpRing::connect`.
//!
//! Measured per model, after a warm-up: the CPU time (user + system, from
//! `/proc/self/task/<tid>/schedstat` and `stat`) of the server's threads and of the generator's,
//! the packets in and out, and CPU µs per packet (in + out). Loopback only (127.0.0.1).
//!
//! Run: `VB_SOCKETS=2000 nice -n 10 cargo bench --bench rtp_io_models`. Knobs (environment):
//! `VB_SOCKETS` (2000), `VB_MODELS` (`tokio,epoll,epoll-connected,uring,rtp-io,rtp-io-connected`),
//! `VB_SECS` (5, the measured window), `VB_WARMUP_SECS` (1). Prints one `BENCH rtp_io_models model=…` line per model.
//! A model that does not keep up with the offered load says `keeps_up=no`.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// One RTP packet: 12-byte header + 160 bytes of G.711 (20 ms at 8 kHz).
const PKT: usize = 172;
/// Room for one datagram in every model's receive buffers.
const DATAGRAM: usize = 2048;
/// `recvmmsg` batch, as in the server today.
const RECV_BATCH: usize = 2;
/// The generator's packets per socket per second (one every 20 ms).
const RATE_PER_SOCKET: f64 = 50.0;
/// The 20 ms period is cut into this many slots; each slot sends to 1/SLOTS of the sockets.
const SLOTS: usize = 20;
/// Largest `sendmmsg` batch of the generator.
const SEND_BATCH: usize = 64;

/// Counters a server model updates (single writer per counter in the one-thread models).
#[derive(Default)]
struct ServerCounters {
    received: AtomicU64,
    sent: AtomicU64,
    send_errors: AtomicU64,
    recv_errors: AtomicU64,
}

/// Kernel thread ids of the threads to charge, by role.
#[derive(Default)]
struct Threads {
    server: Mutex<Vec<i32>>,
    generator: Mutex<Vec<i32>>,
}

fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// CPU time of a thread of this process: (total ns from schedstat, user+system ns from stat).
fn thread_cpu(tid: i32) -> (u64, u64) {
    let sched = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    let ticks = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the command name (which may hold spaces) start at field 3 (state);
            // utime and stime are fields 14 and 15.
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    (sched, ticks * 1_000_000_000 / hz)
}

fn cpu_of(tids: &Mutex<Vec<i32>>) -> (u64, u64) {
    let tids = tids.lock().expect("tid list").clone();
    tids.iter()
        .map(|&t| thread_cpu(t))
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
}

/// The fixed work per packet, the same in every model: sum the payload, answer with a packet of
/// the same header (own SSRC) whose first payload bytes carry the sum. `false`: not RTP-sized.
fn process(pkt: &[u8], reply: &mut [u8; PKT]) -> bool {
    if pkt.len() < 12 {
        return false;
    }
    let sum: u32 = std::hint::black_box(&pkt[12..])
        .iter()
        .map(|&b| u32::from(b))
        .sum();
    reply[..8].copy_from_slice(&pkt[..8]);
    reply[8..12].copy_from_slice(&0x5eed_5eedu32.to_be_bytes());
    reply[12..16].copy_from_slice(&sum.to_be_bytes());
    true
}

fn reply_template() -> [u8; PKT] {
    let mut r = [0xd5u8; PKT];
    r[0] = 0x80;
    r[1] = 8;
    r
}

/// One `recvmmsg` without waiting into `buf` (RECV_BATCH × DATAGRAM), as the server does it today
/// (nix, reused thread-local headers): per datagram its length and IPv4/IPv6 source.
fn recv_mmsg(
    fd: RawFd,
    buf: &mut [u8],
    got: &mut [(usize, Option<SocketAddr>); RECV_BATCH],
) -> io::Result<usize> {
    use nix::sys::socket::{recvmmsg, MsgFlags, MultiHeaders, SockaddrStorage};
    use std::cell::RefCell;
    use std::io::IoSliceMut;
    thread_local! {
        static HEADERS: RefCell<MultiHeaders<SockaddrStorage>> =
            RefCell::new(MultiHeaders::preallocate(RECV_BATCH, None));
    }
    HEADERS.with_borrow_mut(|headers| {
        let (first, second) = buf.split_at_mut(DATAGRAM);
        let mut iovs = [[IoSliceMut::new(first)], [IoSliceMut::new(second)]];
        let results = recvmmsg(fd, headers, iovs.iter_mut(), MsgFlags::MSG_DONTWAIT, None)
            .map_err(io::Error::from)?;
        let mut n = 0;
        for (msg, slot) in results.zip(got.iter_mut()) {
            n += 1;
            let from = msg.address.as_ref().and_then(|a| {
                a.as_sockaddr_in()
                    .map(|v4| SocketAddr::V4((*v4).into()))
                    .or_else(|| a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into())))
            });
            *slot = (msg.bytes.min(DATAGRAM), from);
        }
        Ok(n)
    })
}

// ---------------------------------------------------------------------------------------------
// Load generator

struct Generator {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    received: Arc<AtomicU64>,
    late: Arc<AtomicU64>,
    handles: Vec<thread::JoinHandle<()>>,
}

fn start_generator(
    socket: UdpSocket,
    targets: Vec<SocketAddrV4>,
    threads: &Arc<Threads>,
) -> Generator {
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let received = Arc::new(AtomicU64::new(0));
    let late = Arc::new(AtomicU64::new(0));
    let reader = socket.try_clone().expect("clone generator socket");
    reader
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("generator read timeout");
    let mut handles = Vec::new();
    {
        let (stop, sent, late, threads) =
            (stop.clone(), sent.clone(), late.clone(), threads.clone());
        handles.push(thread::spawn(move || {
            threads.generator.lock().expect("tids").push(gettid());
            generator_send(&socket, &targets, &stop, &sent, &late);
        }));
    }
    {
        let (stop, received, threads) = (stop.clone(), received.clone(), threads.clone());
        handles.push(thread::spawn(move || {
            threads.generator.lock().expect("tids").push(gettid());
            let mut buf = [0u8; DATAGRAM];
            while !stop.load(Relaxed) {
                match reader.recv_from(&mut buf) {
                    Ok(_) => {
                        received.fetch_add(1, Relaxed);
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) => panic!("generator recv_from: {e}"),
                }
            }
        }));
    }
    Generator {
        stop,
        sent,
        received,
        late,
        handles,
    }
}

fn generator_send(
    socket: &UdpSocket,
    targets: &[SocketAddrV4],
    stop: &AtomicBool,
    sent: &AtomicU64,
    late: &AtomicU64,
) {
    let mut payload = [0u8; PKT];
    payload[0] = 0x80;
    payload[1] = 8;
    for (i, b) in payload[12..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let mut iov = libc::iovec {
        iov_base: payload.as_mut_ptr().cast(),
        iov_len: PKT,
    };
    let mut addrs: Vec<libc::sockaddr_in> = targets
        .iter()
        .map(|t| libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: t.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*t.ip()).to_be(),
            },
            sin_zero: [0; 8],
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = addrs
        .iter_mut()
        .map(|a| {
            // SAFETY: all-zero is a valid msghdr.
            let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
            hdr.msg_name = (a as *mut libc::sockaddr_in).cast();
            hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            hdr.msg_iov = &mut iov;
            hdr.msg_iovlen = 1;
            libc::mmsghdr {
                msg_hdr: hdr,
                msg_len: 0,
            }
        })
        .collect();
    let n = msgs.len();
    let slot = Duration::from_millis(20) / SLOTS as u32;
    let mut next = Instant::now();
    let mut k = 0usize;
    while !stop.load(Relaxed) {
        let s = k % SLOTS;
        let (lo, hi) = (s * n / SLOTS, (s + 1) * n / SLOTS);
        for chunk in msgs[lo..hi].chunks_mut(SEND_BATCH) {
            let mut off = 0;
            while off < chunk.len() {
                let rest = &mut chunk[off..];
                // SAFETY: the headers point at `addrs`, `iov` and `payload`, alive for this loop.
                let r = unsafe {
                    libc::sendmmsg(socket.as_raw_fd(), rest.as_mut_ptr(), rest.len() as u32, 0)
                };
                if r <= 0 {
                    let e = io::Error::last_os_error();
                    assert!(
                        e.kind() == io::ErrorKind::Interrupted,
                        "generator sendmmsg: {e}"
                    );
                    continue;
                }
                off += r as usize;
                sent.fetch_add(r as u64, Relaxed);
            }
        }
        k += 1;
        next += slot;
        let now = Instant::now();
        if next > now {
            thread::sleep(next - now);
        } else if now - next > Duration::from_millis(20) {
            late.fetch_add(1, Relaxed);
            next = now;
        }
    }
    // The headers hold pointers into these: keep them alive until here.
    drop(msgs);
    drop(addrs);
}

// ---------------------------------------------------------------------------------------------
// Server models

trait Server {
    /// Stops the server (its threads exit) and waits for it.
    fn stop(self: Box<Self>);
}

struct ThreadServer {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<()>,
    /// Sends one datagram to a server socket so a thread blocked in the kernel wakes up.
    wake: Box<dyn Fn() + Send>,
}

impl Server for ThreadServer {
    fn stop(self: Box<Self>) {
        self.stop.store(true, Relaxed);
        (self.wake)();
        self.handle.join().expect("server thread");
    }
}

struct TokioServer(tokio::runtime::Runtime);

impl Server for TokioServer {
    fn stop(self: Box<Self>) {
        self.0.shutdown_timeout(Duration::from_secs(1));
    }
}

fn start_tokio(
    sockets: Vec<UdpSocket>,
    counters: &Arc<ServerCounters>,
    threads: &Arc<Threads>,
) -> Box<dyn Server> {
    use tokio::io::{unix::AsyncFd, Interest};
    let t = threads.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(move || t.server.lock().expect("tids").push(gettid()))
        .build()
        .expect("tokio runtime");
    for socket in sockets {
        let counters = counters.clone();
        rt.spawn(async move {
            // As in src/call/task/media.rs: the owned socket stays open while registered.
            #[allow(deprecated)]
            let fd = AsyncFd::with_interest(socket, Interest::READABLE).expect("AsyncFd");
            let mut buf = vec![0u8; RECV_BATCH * DATAGRAM];
            let mut got = [(0usize, None); RECV_BATCH];
            let mut reply = reply_template();
            loop {
                let Ok(mut ready) = fd.readable().await else {
                    counters.recv_errors.fetch_add(1, Relaxed);
                    return;
                };
                let n = match ready
                    .try_io(|s| recv_mmsg(s.get_ref().as_raw_fd(), &mut buf, &mut got))
                {
                    Ok(Ok(n)) => {
                        if n < RECV_BATCH {
                            ready.clear_ready();
                        }
                        n
                    }
                    Ok(Err(_)) => {
                        counters.recv_errors.fetch_add(1, Relaxed);
                        continue;
                    }
                    Err(_would_block) => continue,
                };
                for (i, &(len, from)) in got[..n].iter().enumerate() {
                    counters.received.fetch_add(1, Relaxed);
                    let Some(from) = from else { continue };
                    if !process(&buf[i * DATAGRAM..i * DATAGRAM + len], &mut reply) {
                        continue;
                    }
                    match fd.get_ref().send_to(&reply, from) {
                        Ok(_) => counters.sent.fetch_add(1, Relaxed),
                        Err(_) => counters.send_errors.fetch_add(1, Relaxed),
                    };
                }
            }
        });
    }
    Box::new(TokioServer(rt))
}

fn start_epoll(
    sockets: Vec<UdpSocket>,
    connected: bool,
    counters: &Arc<ServerCounters>,
    threads: &Arc<Threads>,
) -> Box<dyn Server> {
    let stop = Arc::new(AtomicBool::new(false));
    let (s, c, t) = (stop.clone(), counters.clone(), threads.clone());
    let handle = thread::spawn(move || {
        t.server.lock().expect("tids").push(gettid());
        epoll_loop(&sockets, connected, &s, &c);
    });
    Box::new(ThreadServer {
        stop,
        handle,
        wake: Box::new(|| {}), // epoll_wait wakes up every 100 ms by itself
    })
}

fn epoll_loop(
    sockets: &[UdpSocket],
    connected: bool,
    stop: &AtomicBool,
    counters: &ServerCounters,
) {
    // SAFETY: plain system calls on descriptors this function owns or borrows.
    let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(epfd >= 0, "epoll_create1: {}", io::Error::last_os_error());
    for (i, s) in sockets.iter().enumerate() {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: i as u64,
        };
        // SAFETY: as above.
        let r = unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, s.as_raw_fd(), &mut ev) };
        assert!(r == 0, "epoll_ctl: {}", io::Error::last_os_error());
    }
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let mut buf = vec![0u8; RECV_BATCH * DATAGRAM];
    let mut got = [(0usize, None); RECV_BATCH];
    let mut reply = reply_template();
    while !stop.load(Relaxed) {
        // SAFETY: `events` has room for 256 entries.
        let n = unsafe { libc::epoll_wait(epfd, events.as_mut_ptr(), 256, 100) };
        if n < 0 {
            let e = io::Error::last_os_error();
            assert!(e.kind() == io::ErrorKind::Interrupted, "epoll_wait: {e}");
            continue;
        }
        for ev in &events[..n as usize] {
            let socket = &sockets[ev.u64 as usize];
            let n = match recv_mmsg(socket.as_raw_fd(), &mut buf, &mut got) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(_) => {
                    counters.recv_errors.fetch_add(1, Relaxed);
                    continue;
                }
            };
            for (i, &(len, from)) in got[..n].iter().enumerate() {
                counters.received.fetch_add(1, Relaxed);
                let Some(from) = from else { continue };
                if !process(&buf[i * DATAGRAM..i * DATAGRAM + len], &mut reply) {
                    continue;
                }
                let r = if connected {
                    socket.send(&reply)
                } else {
                    socket.send_to(&reply, from)
                };
                match r {
                    Ok(_) => counters.sent.fetch_add(1, Relaxed),
                    Err(_) => counters.send_errors.fetch_add(1, Relaxed),
                };
            }
        }
    }
    // SAFETY: closing our own epoll descriptor.
    unsafe { libc::close(epfd) };
}

/// Provided buffers of the uring model: count (a power of two) and the buffer group id.
const URING_BUFS: u16 = 1024;
const URING_BGID: u16 = 0;
/// Reply slots per socket in the uring model: a reply buffer is reused only after this many
/// further replies on its socket (UDP sends complete inline at submit; see the report).
const REPLY_SLOTS: usize = 4;
const TAG_RECV: u64 = 1 << 32;
const TAG_SEND: u64 = 2 << 32;

/// Page-aligned memory for the provided-buffer ring's entries and the buffers themselves.
struct BufRing {
    entries: *mut io_uring::types::BufRingEntry,
    entries_layout: std::alloc::Layout,
    bufs: Vec<u8>,
    tail: u16,
}

impl BufRing {
    fn new() -> BufRing {
        let entries_layout = std::alloc::Layout::from_size_align(
            URING_BUFS as usize * std::mem::size_of::<io_uring::types::BufRingEntry>(),
            4096,
        )
        .expect("layout");
        // SAFETY: non-zero size; zeroed memory is a valid (empty) ring.
        let entries: *mut io_uring::types::BufRingEntry =
            unsafe { std::alloc::alloc_zeroed(entries_layout) }.cast();
        assert!(!entries.is_null(), "alloc buf ring");
        let mut ring = BufRing {
            entries,
            entries_layout,
            bufs: vec![0u8; URING_BUFS as usize * DATAGRAM],
            tail: 0,
        };
        for bid in 0..URING_BUFS {
            ring.push(bid);
        }
        ring.publish();
        ring
    }

    fn buf(&self, bid: u16) -> &[u8] {
        &self.bufs[bid as usize * DATAGRAM..(bid as usize + 1) * DATAGRAM]
    }

    /// Puts buffer `bid` back at the tail (visible to the kernel after `publish`).
    fn push(&mut self, bid: u16) {
        let idx = (self.tail & (URING_BUFS - 1)) as usize;
        // SAFETY: idx < URING_BUFS, inside the allocation.
        let e = unsafe { &mut *self.entries.add(idx) };
        e.set_addr(self.bufs[bid as usize * DATAGRAM..].as_ptr() as u64);
        e.set_len(DATAGRAM as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the tail field of the ring's first entry, 2-byte aligned inside the allocation;
        // the kernel reads it with acquire semantics.
        unsafe {
            let tail = io_uring::types::BufRingEntry::tail(self.entries)
                as *const std::sync::atomic::AtomicU16;
            (*tail).store(self.tail, std::sync::atomic::Ordering::Release);
        }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout; the ring using it is dropped first.
        unsafe { std::alloc::dealloc(self.entries.cast(), self.entries_layout) };
    }
}

/// Runs a one-thread model: `run` sets itself up, says whether that worked (`ready`), then serves
/// until `stop`. The server is returned once the setup worked.
fn start_thread_model(
    counters: &Arc<ServerCounters>,
    threads: &Arc<Threads>,
    wake: Box<dyn Fn() + Send>,
    run: impl FnOnce(&dyn Fn(io::Result<()>), &AtomicBool, &ServerCounters) + Send + 'static,
) -> io::Result<Box<dyn Server>> {
    let stop = Arc::new(AtomicBool::new(false));
    let (s, c, t) = (stop.clone(), counters.clone(), threads.clone());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let handle = thread::spawn(move || {
        t.server.lock().expect("tids").push(gettid());
        run(
            &|r| {
                let _ = ready_tx.send(r);
            },
            &s,
            &c,
        );
    });
    match ready_rx.recv().expect("model thread") {
        Ok(()) => Ok(Box::new(ThreadServer { stop, handle, wake })),
        Err(e) => {
            handle.join().expect("model thread");
            Err(e)
        }
    }
}

fn start_uring(
    sockets: Vec<UdpSocket>,
    counters: &Arc<ServerCounters>,
    threads: &Arc<Threads>,
    wake: Box<dyn Fn() + Send>,
) -> io::Result<Box<dyn Server>> {
    start_thread_model(
        counters,
        threads,
        wake,
        move |ready, s, c| match uring_setup() {
            Ok((ring, bufs)) => {
                ready(Ok(()));
                uring_loop(ring, bufs, &sockets, s, c);
            }
            Err(e) => ready(Err(e)),
        },
    )
}

fn uring_setup() -> io::Result<(io_uring::IoUring, BufRing)> {
    let ring = io_uring::IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_cqsize(32768)
        .build(4096)
        .map_err(|e| io::Error::new(e.kind(), format!("io_uring_setup: {e}")))?;
    let bufs = BufRing::new();
    // SAFETY: the entries stay allocated until `bufs` drops, after the ring (see `uring_loop`).
    unsafe {
        ring.submitter().register_buf_ring_with_flags(
            bufs.entries as u64,
            URING_BUFS,
            URING_BGID,
            0,
        )
    }
    .map_err(|e| io::Error::new(e.kind(), format!("register_buf_ring: {e}")))?;
    Ok((ring, bufs))
}

fn recv_multi(fd: RawFd, i: usize) -> io_uring::squeue::Entry {
    io_uring::opcode::RecvMulti::new(io_uring::types::Fd(fd), URING_BGID)
        .build()
        .user_data(TAG_RECV | i as u64)
}

fn uring_loop(
    mut ring: io_uring::IoUring,
    mut bufs: BufRing,
    sockets: &[UdpSocket],
    stop: &AtomicBool,
    counters: &ServerCounters,
) {
    use io_uring::{cqueue, squeue};
    let mut replies = vec![reply_template(); sockets.len() * REPLY_SLOTS];
    let mut next_slot = vec![0u8; sockets.len()];
    let mut pending: Vec<squeue::Entry> = sockets
        .iter()
        .enumerate()
        .map(|(i, s)| recv_multi(s.as_raw_fd(), i))
        .collect();
    let mut rearms = 0u64;
    let mut enobufs = 0u64;
    while !stop.load(Relaxed) {
        // Queue what the last turn produced, submitting early only when the SQ is full.
        let mut queued = 0;
        while queued < pending.len() {
            let mut sq = ring.submission();
            while queued < pending.len() {
                // SAFETY: every SQE points at memory that outlives its operation: the reply slots
                // (reused only REPLY_SLOTS replies later) and the sockets (closed after the ring).
                if unsafe { sq.push(&pending[queued]) }.is_err() {
                    break;
                }
                queued += 1;
            }
            drop(sq);
            if queued < pending.len() {
                ring.submit().expect("io_uring_enter (SQ full)");
            }
        }
        pending.clear();
        match ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
            Err(e) => panic!("io_uring_enter: {e}"),
        }
        let mut returned = false;
        for cqe in ring.completion() {
            let ud = cqe.user_data();
            let i = (ud & 0xffff_ffff) as usize;
            let (res, flags) = (cqe.result(), cqe.flags());
            if ud & TAG_SEND != 0 {
                // Successful sends post no completion (CQE_SKIP_SUCCESS): this is a failure.
                counters.send_errors.fetch_add(1, Relaxed);
                counters.sent.fetch_sub(1, Relaxed);
                continue;
            }
            if res >= 0 {
                if let Some(bid) = cqueue::buffer_select(flags) {
                    counters.received.fetch_add(1, Relaxed);
                    let slot = i * REPLY_SLOTS + next_slot[i] as usize;
                    next_slot[i] = ((next_slot[i] as usize + 1) % REPLY_SLOTS) as u8;
                    let len = (res as usize).min(DATAGRAM);
                    if process(&bufs.buf(bid)[..len], &mut replies[slot]) {
                        let send = io_uring::opcode::Send::new(
                            io_uring::types::Fd(sockets[i].as_raw_fd()),
                            replies[slot].as_ptr(),
                            PKT as u32,
                        )
                        .build()
                        .flags(squeue::Flags::SKIP_SUCCESS)
                        .user_data(TAG_SEND | i as u64);
                        pending.push(send);
                        counters.sent.fetch_add(1, Relaxed);
                    }
                    bufs.push(bid);
                    returned = true;
                }
            } else if res == -libc::ENOBUFS {
                enobufs += 1;
            } else {
                counters.recv_errors.fetch_add(1, Relaxed);
            }
            if !cqueue::more(flags) {
                rearms += 1;
                pending.push(recv_multi(sockets[i].as_raw_fd(), i));
            }
        }
        if returned {
            bufs.publish();
        }
    }
    let overflow = ring.completion().overflow();
    eprintln!("uring: {rearms} multishot re-arms, {enobufs} ENOBUFS, {overflow} CQ overflows");
    drop(ring); // before `bufs`: the kernel no longer uses the buffer ring
    drop(bufs);
}

/// The `rtp-io` model: the media plane's own ring (`rtp_io::UdpRing`) on unconnected sockets —
/// multishot `recvmsg` (the source of every datagram), `sendmsg` to an address, a completion per
/// send — on one thread, as a media thread does it. `rtp-io-connected`: the same, every socket
/// connected to the generator with `UdpRing::connect` (replies, to the generator's address, go
/// without a destination address).
fn start_rtp_io(
    sockets: Vec<UdpSocket>,
    connect_to: Option<SocketAddr>,
    counters: &Arc<ServerCounters>,
    threads: &Arc<Threads>,
    wake: Box<dyn Fn() + Send>,
) -> io::Result<Box<dyn Server>> {
    start_thread_model(counters, threads, wake, move |ready, s, c| {
        let mut ring = match rtp_io::UdpRing::new(sockets.len() + 16) {
            Ok(r) => r,
            Err(e) => {
                ready(Err(e));
                return;
            }
        };
        // Each socket's id, by token: replies go through it (`send_on`), as a media thread's do.
        let mut ids = Vec::with_capacity(sockets.len());
        for (i, socket) in sockets.into_iter().enumerate() {
            match ring.add(i as u64, socket).and_then(|id| match connect_to {
                Some(peer) => ring.connect(i as u64, Some(peer)).map(|()| id),
                None => Ok(id),
            }) {
                Ok(id) => ids.push(id),
                Err(e) => {
                    ready(Err(e));
                    return;
                }
            }
        }
        ready(Ok(()));
        let mut replies: Vec<(u64, SocketAddr, [u8; PKT])> = Vec::new();
        let template = reply_template();
        while !s.load(Relaxed) {
            for (token, dest, reply) in replies.drain(..) {
                let sent = match ids.get(token as usize) {
                    Some(&id) => ring.send_on(id, dest, &reply),
                    None => false,
                };
                if sent {
                    c.sent.fetch_add(1, Relaxed);
                } else {
                    c.send_errors.fetch_add(1, Relaxed);
                }
            }
            let result = ring.wait(Some(Duration::from_millis(100)), &mut |completion| {
                if let rtp_io::Completion::Datagram {
                    token, from, bytes, ..
                } = completion
                {
                    c.received.fetch_add(1, Relaxed);
                    let mut reply = template;
                    if process(bytes, &mut reply) {
                        replies.push((token, from, reply));
                    }
                }
            });
            if result.is_err() {
                c.recv_errors.fetch_add(1, Relaxed);
            }
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Driver

struct Snapshot {
    at: Instant,
    server_in: u64,
    server_out: u64,
    server_cpu: (u64, u64),
    gen_sent: u64,
    gen_recv: u64,
    gen_cpu: (u64, u64),
}

fn snapshot(c: &ServerCounters, g: &Generator, t: &Threads) -> Snapshot {
    Snapshot {
        at: Instant::now(),
        server_in: c.received.load(Relaxed),
        server_out: c.sent.load(Relaxed),
        server_cpu: cpu_of(&t.server),
        gen_sent: g.sent.load(Relaxed),
        gen_recv: g.received.load(Relaxed),
        gen_cpu: cpu_of(&t.generator),
    }
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} must be a number"))
        })
        .unwrap_or(default)
}

fn raise_nofile(n: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let lim = getrlimit(Resource::Nofile);
    let want = n + 256;
    if lim.current.is_some_and(|c| c >= want) {
        return;
    }
    let max = lim.maximum.map_or(want, |m| m.max(want));
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(want),
            maximum: Some(max),
        },
    )
    .expect("raise RLIMIT_NOFILE");
}

struct ModelResult {
    model: String,
    in_s: f64,
    out_s: f64,
    server_us: f64,
    server_us_ticks: f64,
    gen_us: f64,
    gen_sent_s: f64,
    gen_recv_s: f64,
    keeps_up: bool,
    errors: String,
}

fn run_model(model: &str, n: usize, warmup: Duration, secs: Duration) -> io::Result<ModelResult> {
    let gen_socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind generator");
    {
        let s = socket2::SockRef::from(&gen_socket);
        s.set_recv_buffer_size(4 << 20)
            .expect("generator SO_RCVBUF");
        s.set_send_buffer_size(4 << 20)
            .expect("generator SO_SNDBUF");
    }
    let gen_addr = gen_socket.local_addr().expect("generator address");
    let connect = !matches!(model, "tokio" | "epoll" | "rtp-io" | "rtp-io-connected");
    let mut sockets = Vec::with_capacity(n);
    let mut targets = Vec::with_capacity(n);
    for _ in 0..n {
        let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind server socket");
        s.set_nonblocking(true).expect("nonblocking");
        if connect {
            s.connect(gen_addr).expect("connect server socket");
        }
        match s.local_addr().expect("server address") {
            SocketAddr::V4(a) => targets.push(a),
            SocketAddr::V6(_) => unreachable!("bound to 127.0.0.1"),
        }
        sockets.push(s);
    }
    let counters = Arc::new(ServerCounters::default());
    let threads = Arc::new(Threads::default());
    let first_target = targets[0];
    let waker = gen_socket.try_clone().expect("clone generator socket");
    let server = match model {
        "tokio" => start_tokio(sockets, &counters, &threads),
        "epoll" => start_epoll(sockets, false, &counters, &threads),
        "epoll-connected" => start_epoll(sockets, true, &counters, &threads),
        "uring" => start_uring(
            sockets,
            &counters,
            &threads,
            Box::new(move || {
                let _ = waker.send_to(&[0u8; PKT], first_target);
            }),
        )?,
        "rtp-io" | "rtp-io-connected" => start_rtp_io(
            sockets,
            (model == "rtp-io-connected").then_some(gen_addr),
            &counters,
            &threads,
            Box::new({
                let waker = gen_socket.try_clone().expect("clone generator socket");
                move || {
                    let _ = waker.send_to(&[0u8; PKT], first_target);
                }
            }),
        )?,
        other => panic!("unknown model {other}"),
    };
    let generator = start_generator(gen_socket, targets, &threads);
    thread::sleep(warmup);
    let a = snapshot(&counters, &generator, &threads);
    let late0 = generator.late.load(Relaxed);
    thread::sleep(secs);
    let b = snapshot(&counters, &generator, &threads);
    let late = generator.late.load(Relaxed) - late0;
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    server.stop();
    generator.stop.store(true, Relaxed);
    for h in generator.handles {
        h.join().expect("generator thread");
    }
    let dt = (b.at - a.at).as_secs_f64();
    let (pin, pout) = (b.server_in - a.server_in, b.server_out - a.server_out);
    let (gs, gr) = (b.gen_sent - a.gen_sent, b.gen_recv - a.gen_recv);
    let per = |ns: u64, pkts: u64| ns as f64 / 1000.0 / pkts.max(1) as f64;
    let expected = n as f64 * RATE_PER_SOCKET * dt;
    // The server keeps up if it answers what the generator sent; the generator (sharing the 2
    // cores) may itself fall short of the nominal load, reported apart as `offered_load_ok`.
    let keeps_up = pin as f64 >= 0.97 * gs as f64
        && pout as f64 >= 0.97 * pin as f64
        && gr as f64 >= 0.97 * pout as f64;
    let offered_ok = gs as f64 >= 0.97 * expected;
    let errors = format!(
        "offered_load_ok={} recv_errors={} send_errors={} generator_late_periods={} loadavg_1m={}",
        if offered_ok { "yes" } else { "no" },
        counters.recv_errors.load(Relaxed),
        counters.send_errors.load(Relaxed),
        late,
        loadavg.split_whitespace().next().unwrap_or("?"),
    );
    Ok(ModelResult {
        model: model.to_string(),
        in_s: pin as f64 / dt,
        out_s: pout as f64 / dt,
        server_us: per(b.server_cpu.0 - a.server_cpu.0, pin + pout),
        server_us_ticks: per(b.server_cpu.1 - a.server_cpu.1, pin + pout),
        gen_us: per(b.gen_cpu.0 - a.gen_cpu.0, gs + gr),
        gen_sent_s: gs as f64 / dt,
        gen_recv_s: gr as f64 / dt,
        keeps_up,
        errors,
    })
}

fn main() {
    let n = env_num("VB_SOCKETS", 2000) as usize;
    let secs = Duration::from_secs(env_num("VB_SECS", 5));
    let warmup = Duration::from_secs(env_num("VB_WARMUP_SECS", 1));
    let models = std::env::var("VB_MODELS")
        .unwrap_or_else(|_| "tokio,epoll,epoll-connected,uring,rtp-io,rtp-io-connected".into());
    raise_nofile(n as u64 * 2);
    if let Ok(v) = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled") {
        println!("io_uring_disabled={}", v.trim());
    }
    let mut tokio_us = None;
    for model in models.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        match run_model(model, n, warmup, secs) {
            Ok(r) => {
                if r.model == "tokio" {
                    tokio_us = Some(r.server_us);
                }
                let ratio =
                    tokio_us.map_or("n/a".to_string(), |t| format!("{:.2}", r.server_us / t));
                println!(
                    "BENCH rtp_io_models model={} sockets={n} in/s={:.0} out/s={:.0} \
                     server_us_per_packet={:.2} generator_us_per_packet={:.2} ratio_vs_tokio={ratio} \
                     keeps_up={} generator_sent/s={:.0} generator_received/s={:.0} \
                     server_us_per_packet_stat_ticks={:.2} {}",
                    r.model,
                    r.in_s,
                    r.out_s,
                    r.server_us,
                    r.gen_us,
                    if r.keeps_up { "yes" } else { "no" },
                    r.gen_sent_s,
                    r.gen_recv_s,
                    r.server_us_ticks,
                    r.errors,
                );
            }
            Err(e) => println!("BENCH rtp_io_models model={model} sockets={n} error=\"{e}\""),
        }
    }
}
