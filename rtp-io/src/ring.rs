//! The io_uring UDP driver (Linux only).
//!
//! # Memory the kernel uses, and how long it lives
//!
//! - The provided-buffer ring (`BufRing`: its page-aligned entries and the receive buffers) and
//!   the `msghdr` template of the multishot `recvmsg`: read/written by the kernel while any
//!   receive is armed, so they live as long as the io_uring itself.
//! - A send slot (`SendSlot`: sockaddr + 2048-byte payload, each boxed so its address is
//!   stable): read by the kernel until the send's completion arrives; only then is it reused.
//!   Completions are never skipped (no `CQE_SKIP_SUCCESS`). A send is an `IORING_OP_SEND` of the
//!   slot's payload, with the slot's address as destination (`sendto`), or without one when the
//!   socket is connected to that very address ([`UdpRing::connect`]): then the kernel uses the
//!   socket's cached route instead of a route lookup per packet.
//! - A socket is referenced in its SQEs by its slot in the ring's registered file table (fixed
//!   files: no file lookup and reference count per operation), or — where the table could not be
//!   registered (`RLIMIT_NOFILE` below `max_sockets`) or updated — by its descriptor number. Either
//!   way it stays open while any of its operations (receive, sends, the cancel of `remove`) is
//!   queued or in flight; when the last of them has completed its table slot is cleared (the
//!   table's reference would keep the socket, and its port, alive) and the descriptor closed.
//! - A socket's receive is a multishot `recvmsg` (each datagram with its source) while it is not
//!   connected, and a multishot plain `recv` (no source written: cheaper per datagram) while it
//!   is connected to one peer ([`UdpRing::connect`]), whose datagrams are then reported with the
//!   peer's address — the kernel drops other senders' from the connect on. Datagrams already
//!   queued at the connect are not dropped by it: before the plain receive is armed the socket's
//!   queue is read with `recvfrom`, each datagram with its real source. A connect, reconnect or
//!   disconnect cancels the receive armed for the old state; its last completion arms the new.
//! - The waker's eventfd is polled (no read into our memory) and is shared with the [`Waker`]s
//!   through an `Arc`, so it stays open at least as long as the ring.
//!
//! # Drop order
//!
//! `UdpRing::drop` first (on the thread that used it) cancels everything in flight and waits,
//! bounded by one second, until every operation has completed; then it drops the `IoUring`
//! (unmapping the rings and closing its fd: the kernel cancels anything left); then it frees the
//! buffers and send slots (fields dropped after `drop`), closes the sockets and lets go of the
//! eventfd. If it could not prove that nothing is in flight any more (dropped on another thread
//! than the one that called `wait`, or the kernel did not answer in time) it *leaks* the buffer
//! ring and the send slots instead of freeing memory the kernel might still touch.

use rustc_hash::FxHashMap as HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::mem::ManuallyDrop;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::types::{BufRingEntry, CancelBuilder, Fd, Fixed, RecvMsgOut, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, squeue, IoUring};

/// Which socket a datagram came from / goes out of: the caller's number for it.
pub type Token = u64;

/// A socket as [`UdpRing::add`] registered it: [`UdpRing::send_on`] finds it by its place in
/// the ring instead of looking its token up. Names that socket only: once it is closed and its
/// place taken by another, sends through the old id are refused (the token differs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SocketId {
    index: u32,
    token: Token,
}

impl SocketId {
    /// The token the socket was added with.
    pub fn token(self) -> Token {
        self.token
    }
}

/// Largest datagram payload received or sent (bytes). Longer received datagrams are cut to this
/// and reported `truncated`; longer sends are refused.
pub const MAX_DATAGRAM: usize = 2048;

/// Sends queued or in flight at most; [`UdpRing::send`] drops (returns false) beyond this.
pub const MAX_INFLIGHT_SENDS: usize = 8192;

/// A socket whose receive fails this many times in a row (no datagram in between; ICMP-caused
/// errors such as `ECONNREFUSED` and running out of buffers do not count) is given up: it is
/// closed and reported [`Completion::Closed`] as if [`UdpRing::remove`]d, instead of re-arming
/// it forever.
pub const MAX_RECV_ERRORS: u32 = 8;

/// `struct io_uring_recvmsg_out` (namelen, controllen, payloadlen, flags: 4 × u32) heads every
/// buffer a multishot `recvmsg` fills.
const RECVMSG_OUT_LEN: usize = 16;
/// Room for the source address in every receive buffer: IPv4 or IPv6.
const NAME_LEN: usize = std::mem::size_of::<libc::sockaddr_in6>();
/// One provided buffer: header + source address + payload.
const BUF_LEN: usize = RECVMSG_OUT_LEN + NAME_LEN + MAX_DATAGRAM;
/// The buffer group of the provided-buffer ring.
const BGID: u16 = 0;
/// Submission queue size (more queued SQEs are submitted in several steps of one `wait`).
const SQ_ENTRIES: u32 = 1024;
/// How long `drop` waits for the kernel to finish cancelled operations.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
/// How often `remove` retries cancelling a receive the kernel did not find (a race with its end).
const CANCEL_RETRIES: u8 = 3;

// user_data: the kind of operation in the top byte, an index in the low 32 bits.
const UD_KIND: u64 = 0xff << 56;
const UD_RECV: u64 = 1 << 56;
const UD_SEND: u64 = 2 << 56;
const UD_CANCEL: u64 = 3 << 56;
const UD_WAKE: u64 = 4 << 56;
const UD_CANCEL_ALL: u64 = 5 << 56;
const UD_RECV_PLAIN: u64 = 6 << 56;
const UD_INDEX: u64 = 0xffff_ffff;

/// What [`UdpRing::wait`] hands to its callback.
#[derive(Debug)]
pub enum Completion<'a> {
    /// A datagram received on the socket registered as `token`, from `from`.
    /// `truncated` when it was longer than the buffer (2048 bytes).
    Datagram {
        /// The socket's token.
        token: Token,
        /// The datagram's source (an IPv4-mapped source on an IPv6 socket stays `V6`).
        from: SocketAddr,
        /// The payload (at most [`MAX_DATAGRAM`] bytes).
        bytes: &'a [u8],
        /// The datagram was longer than [`MAX_DATAGRAM`]; `bytes` is its beginning.
        truncated: bool,
    },
    /// The socket registered as `token` was removed ([`UdpRing::remove`]) and is now closed: the
    /// kernel no longer references it, so its port can be bound again. Comes exactly once per
    /// removed token (and also for a socket given up after [`MAX_RECV_ERRORS`] failures).
    Closed {
        /// The socket's token, free for [`UdpRing::add`] again from now on.
        token: Token,
    },
}

/// Counters for metrics and benches (cumulative since [`UdpRing::new`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams reported to the callback.
    pub received: u64,
    /// Datagrams the kernel accepted for sending.
    pub sent: u64,
    /// Sends that failed in the kernel (EAGAIN, unreachable, wrong address family…).
    pub send_errors: u64,
    /// Sends refused by [`UdpRing::send`] (it returned false).
    pub send_dropped: u64,
    /// Times a multishot receive stopped because the provided buffers ran out (then re-armed).
    pub recv_enobufs: u64,
    /// Receive errors other than running out of buffers.
    pub recv_errors: u64,
    /// Multishot receives re-armed after they ended.
    pub rearms: u64,
    /// Received datagrams longer than [`MAX_DATAGRAM`] (reported truncated).
    pub truncated: u64,
    /// Completions the kernel could not keep when the completion queue overflowed (lost; with
    /// the sizes used here this stays 0 unless memory runs out).
    pub cq_overflows: u64,
    /// Closed sockets whose slot in the file table could not be cleared (each stays open, with
    /// its port, until the ring is dropped; not expected).
    pub table_clear_errors: u64,
}

/// Wakes the ring's [`UdpRing::wait`] from any thread. Cheap to clone; wakes coalesce.
#[derive(Clone, Debug)]
pub struct Waker {
    eventfd: Arc<File>,
}

impl Waker {
    /// Makes the current or next `wait` of the ring return (after which it may block again).
    /// Harmless after the ring is gone.
    pub fn wake(&self) {
        // A full counter (EAGAIN) already means "woken"; nothing else can fail usefully here.
        let _ = (&*self.eventfd).write(&1u64.to_ne_bytes());
    }
}

// The kernel ABI of a buffer ring entry (`struct io_uring_buf`), which `BufRing::push` writes.
const _: () = assert!(std::mem::size_of::<BufRingEntry>() == 16);

/// Receive buffers shared by all sockets, registered as provided-buffer ring `BGID`.
struct BufRing {
    /// The ring of `count` entries (page-aligned, as the kernel requires).
    entries: NonNull<BufRingEntry>,
    entries_layout: std::alloc::Layout,
    /// `count` buffers of `BUF_LEN` bytes.
    bufs: NonNull<u8>,
    bufs_layout: std::alloc::Layout,
    count: u16,
    /// Our tail (published to the kernel by `publish`).
    tail: u16,
    /// Set when the kernel might still use the memory: then it is never freed.
    leak: bool,
}

impl BufRing {
    fn new(count: u16) -> io::Result<BufRing> {
        let oom = || io::Error::new(io::ErrorKind::OutOfMemory, "rtp-io: buffer ring allocation");
        let entries_layout = std::alloc::Layout::from_size_align(
            usize::from(count) * std::mem::size_of::<BufRingEntry>(),
            4096,
        )
        .map_err(|_| oom())?;
        let bufs_layout = std::alloc::Layout::from_size_align(usize::from(count) * BUF_LEN, 64)
            .map_err(|_| oom())?;
        // SAFETY: the layout has a non-zero size (count ≥ 1); all-zero entries are a valid empty ring.
        let entries = NonNull::new(unsafe { std::alloc::alloc_zeroed(entries_layout) })
            .ok_or_else(oom)?
            .cast::<BufRingEntry>();
        // SAFETY: non-zero size; zeroed so that every byte we ever hand out is initialized.
        let bufs = match NonNull::new(unsafe { std::alloc::alloc_zeroed(bufs_layout) }) {
            Some(p) => p,
            None => {
                // SAFETY: allocated just above with this layout, not registered anywhere yet.
                unsafe { std::alloc::dealloc(entries.as_ptr().cast(), entries_layout) };
                return Err(oom());
            }
        };
        let mut ring = BufRing {
            entries,
            entries_layout,
            bufs,
            bufs_layout,
            count,
            tail: 0,
            leak: false,
        };
        for bid in 0..count {
            ring.push(bid);
        }
        ring.publish();
        Ok(ring)
    }

    /// The whole buffer `bid` (which the kernel handed back to us in a completion).
    fn buf(&self, bid: u16) -> &[u8] {
        debug_assert!(bid < self.count);
        // SAFETY: bid < count (checked by the caller), so the range lies inside the allocation,
        // which is initialized (zeroed, then written by the kernel). The kernel gave this buffer
        // to us with the completion and does not write it again until `push` returns it.
        unsafe {
            std::slice::from_raw_parts(self.bufs.as_ptr().add(usize::from(bid) * BUF_LEN), BUF_LEN)
        }
    }

    /// Puts buffer `bid` back at the tail (the kernel sees it after `publish`).
    fn push(&mut self, bid: u16) {
        if bid >= self.count {
            return;
        }
        let idx = usize::from(self.tail & (self.count - 1));
        // SAFETY: bid < count: the buffer is inside the `bufs` allocation.
        let addr = unsafe { self.bufs.as_ptr().add(usize::from(bid) * BUF_LEN) };
        // SAFETY: idx < count, so the entry is inside the (page-aligned, hence 8-byte aligned)
        // entries allocation. It is `struct io_uring_buf { u64 addr; u32 len; u16 bid; u16 resv; }`
        // (size checked at compile time). The entry at our unpublished tail is not in the
        // kernel's [head, tail) window (at most count - 1 buffers are in the ring when we return
        // one; the initial fill in `new` happens before the ring is registered), so the kernel
        // does not read it now. We write only addr, len and bid through raw pointers
        // and never form a reference to the entry: in entry 0, `resv` is the ring's tail, which
        // the kernel reads concurrently.
        unsafe {
            let e = self.entries.as_ptr().add(idx).cast::<u8>();
            e.cast::<u64>().write(addr as u64);
            e.add(8).cast::<u32>().write(BUF_LEN as u32);
            e.add(12).cast::<u16>().write(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes the pushed buffers visible to the kernel.
    fn publish(&self) {
        // SAFETY: `BufRingEntry::tail` points at the tail field inside the first entry (2-byte
        // aligned, inside the allocation); the kernel reads it with acquire semantics, so a
        // release store through an `AtomicU16` publishes the entries written before.
        unsafe {
            let tail =
                BufRingEntry::tail(self.entries.as_ptr()).cast::<std::sync::atomic::AtomicU16>();
            (*tail).store(self.tail, std::sync::atomic::Ordering::Release);
        }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        if self.leak {
            return;
        }
        // SAFETY: both allocated in `new` with these layouts; `UdpRing::drop` dropped the
        // io_uring (which unregisters the ring) before, having seen every operation complete
        // (otherwise `leak` is set).
        unsafe {
            std::alloc::dealloc(self.entries.as_ptr().cast(), self.entries_layout);
            std::alloc::dealloc(self.bufs.as_ptr(), self.bufs_layout);
        }
    }
}

/// One queued or in-flight send: everything the kernel reads, at a stable (boxed) address.
struct SendSlot {
    addr4: libc::sockaddr_in,
    addr6: libc::sockaddr_in6,
    /// The destination is `addr6` (else `addr4`).
    v6: bool,
    /// Queued without a destination address (to the socket's connected peer, which is the
    /// destination held in `addr4`/`addr6`).
    bare: bool,
    /// Payload length.
    len: u32,
    /// The socket (index into `UdpRing::socks`) it goes out of.
    sock: u32,
    buf: [u8; MAX_DATAGRAM],
}

impl SendSlot {
    fn new() -> Box<SendSlot> {
        Box::new(SendSlot {
            // SAFETY: all-zero is a valid sockaddr_in and sockaddr_in6 (plain C structs of
            // integers).
            addr4: unsafe { std::mem::zeroed() },
            // SAFETY: as above.
            addr6: unsafe { std::mem::zeroed() },
            v6: false,
            bare: false,
            len: 0,
            sock: 0,
            buf: [0; MAX_DATAGRAM],
        })
    }

    /// The SQE sending this slot (number `slot_idx`) out of `fd`: to the slot's address, or
    /// without one (`bare`: to the connected peer). `MSG_DONTWAIT`: a send that finds the socket
    /// buffer full fails (counted in `send_errors`) instead of being retried later; so a send is
    /// done (sent or failed) once the `io_uring_enter` that submitted it has returned, which
    /// `UdpRing::connect` relies on (not for memory safety: the slot is freed only on the
    /// completion in any case).
    fn sqe(&self, file: FileRef, slot_idx: u32) -> squeue::Entry {
        let send = match file {
            FileRef::Fd(fd) => opcode::Send::new(Fd(fd), self.buf.as_ptr(), self.len),
            FileRef::Fixed(i) => opcode::Send::new(Fixed(i), self.buf.as_ptr(), self.len),
        }
        .flags(libc::MSG_DONTWAIT);
        let send = if self.bare {
            send
        } else if self.v6 {
            send.dest_addr((&self.addr6 as *const libc::sockaddr_in6).cast())
                .dest_addr_len(std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t)
        } else {
            send.dest_addr((&self.addr4 as *const libc::sockaddr_in).cast())
                .dest_addr_len(std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t)
        };
        send.build().user_data(UD_SEND | u64::from(slot_idx))
    }
}

/// `dest` in the family of a socket (`v6`): IPv4 becomes IPv4-mapped on an IPv6 socket; None for
/// an IPv6 address (not IPv4-mapped) on an IPv4 socket.
fn for_socket(dest: SocketAddr, v6: bool) -> Option<SocketAddr> {
    match (dest, v6) {
        (SocketAddr::V4(a), true) => Some(SocketAddr::V6(SocketAddrV6::new(
            a.ip().to_ipv6_mapped(),
            a.port(),
            0,
            0,
        ))),
        (SocketAddr::V6(a), false) => a
            .ip()
            .to_ipv4_mapped()
            .map(|ip| SocketAddr::V4(SocketAddrV4::new(ip, a.port()))),
        (d, _) => Some(d),
    }
}

/// `addr` as a C socket address (`sockaddr_in` or `sockaddr_in6`, in a `sockaddr_in6`-sized
/// buffer) and its length.
fn to_sockaddr(addr: SocketAddr) -> (libc::sockaddr_in6, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_in6.
    let mut out: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: zero-initialized, so every byte is defined.
            let mut v4: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            v4.sin_family = libc::AF_INET as libc::sa_family_t;
            v4.sin_port = a.port().to_be();
            v4.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
            // SAFETY: sockaddr_in (16 bytes) fits in sockaddr_in6 (28 bytes); both are plain
            // integer structs, and `out` is a local we own, written unaligned-safely.
            unsafe { std::ptr::write_unaligned((&mut out as *mut libc::sockaddr_in6).cast(), v4) };
            (
                out,
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        }
        SocketAddr::V6(a) => {
            out.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            out.sin6_port = a.port().to_be();
            out.sin6_flowinfo = a.flowinfo();
            out.sin6_addr.s6_addr = a.ip().octets();
            out.sin6_scope_id = a.scope_id();
            (
                out,
                std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            )
        }
    }
}

/// How SQEs name a socket: its slot in the registered file table, or its descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FileRef {
    Fd(RawFd),
    Fixed(u32),
}

/// A registered socket.
struct Sock {
    token: Token,
    socket: UdpSocket,
    fd: RawFd,
    /// How its SQEs name it ([`FileRef::Fixed`]: its index in `socks`, set in the file table).
    file: FileRef,
    v6: bool,
    /// The peer the socket is connected to ([`UdpRing::connect`]), in the socket's family.
    peer: Option<SocketAddr>,
    /// The local address when added (restored after a disconnect unbinds an ephemeral port).
    local: SocketAddr,
    /// Operations on `fd` queued or in flight (receive, sends, cancel).
    inflight: u32,
    /// The multishot receive is queued or armed.
    recv_active: bool,
    /// Which: `None` a `recvmsg` (each datagram with its source), `Some(peer)` a plain `recv`
    /// armed while the socket was connected to `peer` (every datagram is from `peer`: the kernel
    /// drops the others). See [`UdpRing::connect`].
    recv_plain: Option<SocketAddr>,
    /// Removed (or given up): no more reports, close when `inflight` reaches 0.
    removed: bool,
    /// Consecutive receive failures.
    errors: u32,
    cancel_retries: u8,
}

/// An io_uring driving up to `max_sockets` UDP sockets. See the crate docs.
///
/// # Threads
///
/// The ring is created with `IORING_SETUP_SINGLE_ISSUER` (and `DEFER_TASKRUN` where available)
/// but *disabled*; the first [`wait`](UdpRing::wait) enables it, which binds it to the calling
/// thread. So: create it anywhere, move it (it is `Send`) to the media thread, and call `wait`
/// and drop it only there. On another thread `wait` fails (`EEXIST` from the kernel, no UB), and a
/// drop elsewhere leaks its buffers (a few MB) rather than risk freeing memory in use.
pub struct UdpRing {
    /// Dropped explicitly first in `Drop` (see the module docs for the order).
    ring: ManuallyDrop<IoUring>,
    enabled: bool,
    shutting_down: bool,
    bufs: BufRing,
    /// The template of every multishot `recvmsg` (only `msg_namelen` matters); boxed: stable.
    recv_msg: Box<libc::msghdr>,
    /// Boxed one by one: the kernel reads a slot at its address while this Vec grows.
    #[allow(clippy::vec_box)]
    slots: Vec<Box<SendSlot>>,
    free_slots: Vec<u32>,
    socks: Vec<Option<Sock>>,
    free_socks: Vec<u32>,
    /// Registered tokens: `Some(index into socks)`, or `None` once closed until `Closed` is reported.
    tokens: HashMap<Token, Option<u32>>,
    /// Sockets holding an fd (open or closing), against `max_sockets`.
    live: usize,
    max_sockets: usize,
    /// A sparse file table of `max_sockets` slots is registered: sockets are used as fixed files.
    fixed_files: bool,
    /// SQEs not yet in the submission queue.
    pending: Vec<squeue::Entry>,
    /// Operations queued or in flight, not yet finally completed.
    inflight: usize,
    /// Tokens closed, `Closed` not reported yet.
    closed: Vec<Token>,
    wake: Arc<File>,
    /// Consecutive failures of the waker's poll (re-armed only below `MAX_RECV_ERRORS`).
    wake_errors: u32,
    cqes: Vec<(u64, i32, u32)>,
    buffers_returned: bool,
    /// Where [`drain_queued`] reads datagrams (boxed: 2 KiB).
    scratch: Box<[u8; MAX_DATAGRAM + 1]>,
    stats: Stats,
}

// SAFETY: the raw pointers (the `BufRing` allocations, and the send slots' msghdr pointing at
// the slot's own iovec, address and buffer) point at memory owned by this value alone, and
// nothing in it is tied to the thread that created it: the kernel's single-issuer binding is
// made by the first `wait` and enforced by the kernel itself with an error, not UB.
unsafe impl Send for UdpRing {}

fn build_ring(cq_entries: u32) -> io::Result<IoUring> {
    let mut last = io::Error::from(io::ErrorKind::Unsupported);
    // DEFER_TASKRUN needs 6.1; SINGLE_ISSUER (6.0) is kept as the marker of a kernel with
    // multishot recvmsg (6.0) and provided buffer rings (5.19).
    for defer in [true, false] {
        let mut b = IoUring::builder();
        b.setup_cqsize(cq_entries)
            .setup_clamp()
            .setup_r_disabled()
            .setup_single_issuer();
        if defer {
            b.setup_defer_taskrun();
        }
        match b.build(SQ_ENTRIES) {
            Ok(ring) => return Ok(ring),
            Err(e) => last = e,
        }
    }
    Err(io::Error::new(
        last.kind(),
        format!("io_uring_setup: {last}"),
    ))
}

fn recv_sqe(file: FileRef, idx: u32, msg: &libc::msghdr) -> squeue::Entry {
    let msg = msg as *const libc::msghdr;
    match file {
        FileRef::Fd(fd) => opcode::RecvMsgMulti::new(Fd(fd), msg, BGID).build(),
        FileRef::Fixed(i) => opcode::RecvMsgMulti::new(Fixed(i), msg, BGID).build(),
    }
    .user_data(UD_RECV | u64::from(idx))
}

fn recv_plain_sqe(file: FileRef, idx: u32) -> squeue::Entry {
    match file {
        FileRef::Fd(fd) => opcode::RecvMulti::new(Fd(fd), BGID).build(),
        FileRef::Fixed(i) => opcode::RecvMulti::new(Fixed(i), BGID).build(),
    }
    .user_data(UD_RECV_PLAIN | u64::from(idx))
}

/// Datagrams [`drain_queued`] reads at most; with more queued the socket keeps `recvmsg`.
const DRAIN_MAX: usize = 64;

/// Reads what is queued on socket `fd` (non-blocking `recvfrom`, each datagram with its source)
/// and hands it to `on`. True when the queue was emptied (`EAGAIN`), false on another error or
/// after [`DRAIN_MAX`] datagrams.
fn drain_queued(
    fd: RawFd,
    scratch: &mut [u8; MAX_DATAGRAM + 1],
    on: &mut dyn FnMut(SocketAddr, &[u8], bool),
) -> bool {
    for _ in 0..DRAIN_MAX {
        // SAFETY: all-zero is a valid sockaddr_in6.
        let mut name: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
        let mut name_len = NAME_LEN as libc::socklen_t;
        // SAFETY: `scratch` and `name` are valid for writes of the lengths given; `fd` is a
        // socket we own.
        let n = unsafe {
            libc::recvfrom(
                fd,
                scratch.as_mut_ptr().cast(),
                scratch.len(),
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                (&mut name as *mut libc::sockaddr_in6).cast(),
                &mut name_len,
            )
        };
        if n < 0 {
            return io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN);
        }
        // SAFETY: the kernel wrote `name_len` (≤ its size) bytes of `name`.
        let name_bytes = unsafe {
            std::slice::from_raw_parts(
                (&name as *const libc::sockaddr_in6).cast::<u8>(),
                (name_len as usize).min(NAME_LEN),
            )
        };
        let len = n as usize;
        if let Some(from) = parse_addr(name_bytes) {
            on(from, &scratch[..len.min(MAX_DATAGRAM)], len > MAX_DATAGRAM);
        }
    }
    false
}

/// Hands a received datagram to the caller and counts it.
fn report(
    stats: &mut Stats,
    on: &mut dyn FnMut(Completion<'_>),
    token: Token,
    from: SocketAddr,
    bytes: &[u8],
    truncated: bool,
) {
    stats.received += 1;
    stats.truncated += u64::from(truncated);
    on(Completion::Datagram {
        token,
        from,
        bytes,
        truncated,
    });
}

/// A source address from the name field of a receive buffer.
fn parse_addr(name: &[u8]) -> Option<SocketAddr> {
    let family = i32::from(u16::from_ne_bytes([*name.first()?, *name.get(1)?]));
    let port = u16::from_be_bytes([*name.get(2)?, *name.get(3)?]);
    match family {
        libc::AF_INET => {
            let a: [u8; 4] = name.get(4..8)?.try_into().ok()?;
            Some(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(a), port)))
        }
        libc::AF_INET6 => {
            let flow = u32::from_ne_bytes(name.get(4..8)?.try_into().ok()?);
            let a: [u8; 16] = name.get(8..24)?.try_into().ok()?;
            let scope = u32::from_ne_bytes(name.get(24..28)?.try_into().ok()?);
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a),
                port,
                flow,
                scope,
            )))
        }
        _ => None,
    }
}

/// Errors that an ICMP message or a transient shortage causes once; re-arming cannot spin on them.
fn transient(errno: i32) -> bool {
    matches!(
        errno,
        libc::ECONNREFUSED
            | libc::EHOSTUNREACH
            | libc::ENETUNREACH
            | libc::EHOSTDOWN
            | libc::ENETDOWN
            | libc::EINTR
            | libc::EAGAIN
            | libc::ECANCELED
    )
}

impl UdpRing {
    /// An io_uring for up to `max_sockets` sockets. Err when the kernel refuses io_uring
    /// (disabled, seccomp in a container, too old: needs multishot recvmsg and provided buffer
    /// rings, Linux 6.0+) — the caller then falls back to another driver. Never panics.
    ///
    /// Cheap (a few system calls, 1–2 MB of receive buffers: 2 per socket, 512 to 1024 — a
    /// buffer goes back to the kernel at the end of the `wait` that reported it, so a turn needs
    /// one per datagram it takes, and fewer buffers stay in the caches; more datagrams than
    /// buffers wait in their sockets for the next turn).
    pub fn new(max_sockets: usize) -> io::Result<UdpRing> {
        let max_sockets = max_sockets.clamp(1, u32::MAX as usize / 4);
        let nbufs = max_sockets
            .saturating_mul(2)
            .next_power_of_two()
            .clamp(512, 1024);
        // Room for every completion that can be outstanding at once: one per buffer, one final
        // receive and one cancel per socket, one per send, the waker and spare. The kernel caps
        // it at 65536 (setup_clamp); beyond that it keeps overflowing completions (NODROP).
        let cq = (nbufs + 2 * max_sockets + MAX_INFLIGHT_SENDS + 64)
            .checked_next_power_of_two()
            .unwrap_or(1 << 16)
            .min(1 << 16) as u32;
        let ring = build_ring(cq)?;
        let p = ring.params();
        if !p.is_feature_ext_arg() || !p.is_feature_nodrop() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "io_uring: kernel lacks EXT_ARG/NODROP",
            ));
        }
        // SAFETY: eventfd has no memory preconditions; the result is checked below.
        let efd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if efd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `efd` is a fresh descriptor that nothing else owns.
        let wake = Arc::new(File::from(unsafe { OwnedFd::from_raw_fd(efd) }));
        let bufs = BufRing::new(nbufs as u16)?;
        // SAFETY: all-zero is a valid msghdr.
        let mut recv_msg: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        recv_msg.msg_namelen = NAME_LEN as libc::socklen_t;
        let mut this = UdpRing {
            ring: ManuallyDrop::new(ring),
            enabled: false,
            shutting_down: false,
            bufs,
            recv_msg,
            slots: Vec::new(),
            free_slots: Vec::new(),
            socks: Vec::new(),
            free_socks: Vec::new(),
            tokens: HashMap::default(),
            live: 0,
            max_sockets,
            fixed_files: false,
            pending: Vec::new(),
            inflight: 0,
            closed: Vec::new(),
            wake,
            wake_errors: 0,
            cqes: Vec::new(),
            buffers_returned: false,
            scratch: Box::new([0; MAX_DATAGRAM + 1]),
            stats: Stats::default(),
        };
        // SAFETY: the entries stay allocated and are not moved until the io_uring is dropped
        // (`UdpRing::drop` drops it before `bufs`, or leaks `bufs`); count is a power of two
        // ≤ 32768. On error `this` is dropped: nothing was submitted, so that is sound.
        unsafe {
            this.ring.submitter().register_buf_ring_with_flags(
                this.bufs.entries.as_ptr() as u64,
                this.bufs.count,
                BGID,
                0,
            )
        }
        .map_err(|e| io::Error::new(e.kind(), format!("io_uring register_buf_ring: {e}")))?;
        // Refused where RLIMIT_NOFILE is below `max_sockets` (the table counts against it): then
        // sockets are named by descriptor, which works the same, a little slower.
        this.fixed_files = this
            .ring
            .submitter()
            .register_files_sparse(max_sockets as u32)
            .is_ok();
        this.arm_wake();
        Ok(this)
    }

    /// A handle that wakes `wait` from any thread.
    pub fn waker(&self) -> Waker {
        Waker {
            eventfd: self.wake.clone(),
        }
    }

    /// Starts receiving on `socket` (a bound UDP socket, IPv4 or IPv6; set it non-blocking
    /// yourself if needed). The ring owns it from now on. Err if the token is in use (registered,
    /// or removed but its `Closed` not reported yet), if `max_sockets` sockets are open, or if
    /// the socket has no local address.
    pub fn add(&mut self, token: Token, socket: UdpSocket) -> io::Result<SocketId> {
        if self.tokens.contains_key(&token) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "rtp-io: token in use",
            ));
        }
        if self.live >= self.max_sockets {
            return Err(io::Error::other("rtp-io: max_sockets reached"));
        }
        let local = socket.local_addr()?;
        let v6 = local.is_ipv6();
        let idx = match self.free_socks.pop() {
            Some(i) => i,
            None => {
                self.socks.push(None);
                (self.socks.len() - 1) as u32
            }
        };
        let fd = socket.as_raw_fd();
        // In the file table when there is one: the slot is free (cleared when its last socket
        // closed), and a failed update leaves the socket named by its descriptor.
        let file = if self.fixed_files
            && (idx as usize) < self.max_sockets
            && self
                .ring
                .submitter()
                .register_files_update(idx, &[fd])
                .is_ok()
        {
            FileRef::Fixed(idx)
        } else {
            FileRef::Fd(fd)
        };
        self.pending.push(recv_sqe(file, idx, &self.recv_msg));
        self.inflight += 1;
        self.socks[idx as usize] = Some(Sock {
            token,
            socket,
            fd,
            file,
            v6,
            peer: None,
            local,
            inflight: 1,
            recv_active: true,
            recv_plain: None,
            removed: false,
            errors: 0,
            cancel_retries: 0,
        });
        self.tokens.insert(token, Some(idx));
        self.live += 1;
        Ok(SocketId { index: idx, token })
    }

    /// Stops receiving on `token`'s socket and closes it: cancels the multishot recvmsg and
    /// closes the fd once its final completion and every send on it have completed, then
    /// `wait` reports [`Completion::Closed`]. Unknown or already removed token: no-op.
    pub fn remove(&mut self, token: Token) {
        let Some(&Some(idx)) = self.tokens.get(&token) else {
            return;
        };
        let Some(Some(sock)) = self.socks.get_mut(idx as usize) else {
            return;
        };
        if sock.removed {
            return;
        }
        sock.removed = true;
        if sock.recv_active {
            Self::queue_cancel(&mut self.pending, &mut self.inflight, sock, idx);
        }
        self.maybe_close(idx);
    }

    /// Connects `token`'s socket to `peer` (a plain UDP `connect`: immediate), or disconnects it
    /// (`None`). While connected, [`send`](UdpRing::send)s to `peer` go without a destination
    /// address (cheaper: the kernel uses the socket's cached route), sends elsewhere still work,
    /// and — that is what a UDP `connect` does — the socket *receives only from `peer`*: other
    /// sources are dropped by the kernel until `connect(token, None)`. An IPv4 `peer` on an IPv6
    /// socket is connected IPv4-mapped.
    ///
    /// Sends queued before the call keep their destination: those not submitted yet to the old
    /// peer are given its address; those submitted are already done (sends never wait). Err:
    /// unknown or removed token (`NotFound`), an IPv6 `peer` on an IPv4 socket
    /// (`InvalidInput`), or the `connect` error (e.g. no route; the socket is then treated as not
    /// connected, which is always correct: its sends carry their address).
    ///
    /// Disconnecting a socket that was bound to port 0 makes Linux release its port; `connect`
    /// then binds it again to the address it had when added (so it keeps its port). If that
    /// fails (someone took the port in between) the error says so and the socket receives
    /// nothing until removed.
    pub fn connect(&mut self, token: Token, peer: Option<SocketAddr>) -> io::Result<()> {
        let result = self.connect_socket(token, peer);
        // Whatever came of it: a receive armed for another state than the socket's now ends,
        // and its last completion arms the right one (see `complete_recv`).
        if let Some(&Some(idx)) = self.tokens.get(&token) {
            if let Some(Some(sock)) = self.socks.get_mut(idx as usize) {
                if !sock.removed && sock.recv_active && sock.recv_plain != sock.peer {
                    Self::queue_cancel(&mut self.pending, &mut self.inflight, sock, idx);
                }
            }
        }
        result
    }

    fn connect_socket(&mut self, token: Token, peer: Option<SocketAddr>) -> io::Result<()> {
        let not_found = || io::Error::new(io::ErrorKind::NotFound, "rtp-io: unknown token");
        let Some(&Some(idx)) = self.tokens.get(&token) else {
            return Err(not_found());
        };
        let Some(Some(sock)) = self.socks.get_mut(idx as usize) else {
            return Err(not_found());
        };
        if sock.removed {
            return Err(not_found());
        }
        let peer = match peer {
            Some(p) => Some(for_socket(p, sock.v6).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "rtp-io: IPv6 peer for an IPv4 socket",
                )
            })?),
            None => None,
        };
        if sock.peer.is_some() && sock.peer != peer {
            // Queued address-less sends were meant for the old peer: give them its address.
            for sqe in self.pending.iter_mut() {
                let ud = sqe.get_user_data();
                if ud & UD_KIND != UD_SEND {
                    continue;
                }
                let slot_idx = (ud & UD_INDEX) as u32;
                if let Some(slot) = self.slots.get_mut(slot_idx as usize) {
                    if slot.bare && slot.sock == idx {
                        slot.bare = false;
                        *sqe = slot.sqe(sock.file, slot_idx);
                    }
                }
            }
            // SQEs left in the submission queue by an interrupted `io_uring_enter` may hold some
            // too: let the kernel take them (and so send them) before the socket changes.
            if self.enabled && !self.ring.submission().is_empty() {
                self.ring.submit()?;
            }
        }
        sock.peer = None;
        let r = match peer {
            Some(p) => {
                let (addr, len) = to_sockaddr(p);
                // SAFETY: `addr` is a valid sockaddr_in/sockaddr_in6 of `len` bytes on our stack;
                // `sock.fd` is the socket we own (open while registered).
                unsafe { libc::connect(sock.fd, (&addr as *const libc::sockaddr_in6).cast(), len) }
            }
            None => {
                // SAFETY: all-zero is a valid sockaddr.
                let mut addr: libc::sockaddr = unsafe { std::mem::zeroed() };
                addr.sa_family = libc::AF_UNSPEC as libc::sa_family_t;
                // SAFETY: `addr` is a valid sockaddr of that size on our stack; the fd is ours.
                unsafe {
                    libc::connect(
                        sock.fd,
                        &addr,
                        std::mem::size_of::<libc::sockaddr>() as libc::socklen_t,
                    )
                }
            }
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        if peer.is_none() {
            // Linux unbinds the port of a socket bound to port 0 when it is disconnected (no
            // SOCK_BINDPORT_LOCK): bind it again to the address it had, or it would receive
            // nothing and send from a new port.
            if sock.socket.local_addr().ok() != Some(sock.local) {
                let (addr, len) = to_sockaddr(sock.local);
                // SAFETY: `addr` is a valid sockaddr_in/sockaddr_in6 of `len` bytes on our stack;
                // `sock.fd` is the socket we own.
                let r = unsafe {
                    libc::bind(sock.fd, (&addr as *const libc::sockaddr_in6).cast(), len)
                };
                if r != 0 {
                    let e = io::Error::last_os_error();
                    return Err(io::Error::new(
                        e.kind(),
                        format!("rtp-io: re-binding {} after disconnect: {e}", sock.local),
                    ));
                }
            }
        }
        sock.peer = peer;
        Ok(())
    }

    fn queue_cancel(
        pending: &mut Vec<squeue::Entry>,
        inflight: &mut usize,
        sock: &mut Sock,
        idx: u32,
    ) {
        let kind = if sock.recv_plain.is_some() {
            UD_RECV_PLAIN
        } else {
            UD_RECV
        };
        pending.push(
            opcode::AsyncCancel::new(kind | u64::from(idx))
                .build()
                .user_data(UD_CANCEL | u64::from(idx)),
        );
        sock.inflight += 1;
        *inflight += 1;
    }

    /// Queues one datagram from `token`'s socket to `dest` (copied; up to 2048 bytes). Submitted
    /// with the next `wait`. Returns false if dropped: unknown or removed token, too big,
    /// [`MAX_INFLIGHT_SENDS`] already queued or in flight, or an IPv6 destination (not
    /// IPv4-mapped) for an IPv4 socket. (An IPv4 destination on an IPv6 socket is sent
    /// IPv4-mapped.) A send that fails in the kernel (including a full socket send buffer: sends
    /// never wait for room) is counted in [`Stats::send_errors`].
    ///
    /// On a [`connect`](UdpRing::connect)ed socket, a send to the connected peer goes without a
    /// destination address (the socket's cached route, no route lookup per packet); a send to any
    /// other address still goes there (with its address: Linux sends a UDP datagram with an
    /// explicit destination to that destination even on a connected socket).
    pub fn send(&mut self, token: Token, dest: SocketAddr, bytes: &[u8]) -> bool {
        let Some(&Some(index)) = self.tokens.get(&token) else {
            self.stats.send_dropped += 1;
            return false;
        };
        self.send_on(SocketId { index, token }, dest, bytes)
    }

    /// [`send`](UdpRing::send) out of the socket `id` names (what [`add`](UdpRing::add)
    /// returned), without looking its token up; false also when that socket is gone.
    pub fn send_on(&mut self, id: SocketId, dest: SocketAddr, bytes: &[u8]) -> bool {
        let idx = id.index;
        let Some(Some(sock)) = self.socks.get_mut(idx as usize) else {
            self.stats.send_dropped += 1;
            return false;
        };
        if sock.token != id.token || sock.removed || bytes.len() > MAX_DATAGRAM {
            self.stats.send_dropped += 1;
            return false;
        }
        let Some(dest) = for_socket(dest, sock.v6) else {
            self.stats.send_dropped += 1;
            return false;
        };
        let slot_idx = match self.free_slots.pop() {
            Some(i) => i,
            None if self.slots.len() < MAX_INFLIGHT_SENDS => {
                self.slots.push(SendSlot::new());
                (self.slots.len() - 1) as u32
            }
            None => {
                self.stats.send_dropped += 1;
                return false;
            }
        };
        // The slot is free: no operation references it, so it may be rewritten.
        let slot = &mut *self.slots[slot_idx as usize];
        slot.buf[..bytes.len()].copy_from_slice(bytes);
        slot.len = bytes.len() as u32;
        match dest {
            SocketAddr::V4(a) => {
                slot.addr4.sin_family = libc::AF_INET as libc::sa_family_t;
                slot.addr4.sin_port = a.port().to_be();
                slot.addr4.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
                slot.v6 = false;
            }
            SocketAddr::V6(a) => {
                slot.addr6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                slot.addr6.sin6_port = a.port().to_be();
                slot.addr6.sin6_flowinfo = a.flowinfo();
                slot.addr6.sin6_addr.s6_addr = a.ip().octets();
                slot.addr6.sin6_scope_id = a.scope_id();
                slot.v6 = true;
            }
        }
        // To the connected peer: no address, the kernel uses the socket's cached route.
        slot.bare = sock.peer == Some(dest);
        slot.sock = idx;
        self.pending.push(slot.sqe(sock.file, slot_idx));
        sock.inflight += 1;
        self.inflight += 1;
        true
    }

    /// Submits queued sends and re-arms, waits until at least one completion, a
    /// [`Waker::wake`], or `timeout` (None = no timeout; Some(ZERO) = don't block), then calls
    /// `on` for every datagram and closed socket that is ready, and returns. EINTR is not an
    /// error. Must be called on the thread that first called it (see [`UdpRing`]).
    ///
    /// If `on` panics, the datagrams after it in this batch are lost (and their buffers and
    /// sockets may stay held); nothing unsound happens.
    pub fn wait(
        &mut self,
        timeout: Option<Duration>,
        on: &mut dyn FnMut(Completion<'_>),
    ) -> io::Result<()> {
        if !self.enabled {
            self.ring
                .submitter()
                .register_enable_rings()
                .map_err(|e| io::Error::new(e.kind(), format!("io_uring enable: {e}")))?;
            self.enabled = true;
        }
        self.push_pending()?;
        let timeout = if self.closed.is_empty() {
            timeout
        } else {
            Some(Duration::ZERO)
        };
        self.enter(timeout)?;
        self.reap(on);
        let closed = std::mem::take(&mut self.closed);
        for token in closed {
            self.tokens.remove(&token);
            on(Completion::Closed { token });
        }
        Ok(())
    }

    /// Whether sockets go on the registered file table (else by descriptor; see the module docs).
    pub fn uses_fixed_files(&self) -> bool {
        self.fixed_files
    }

    /// Counters for metrics and benches.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    fn enter(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let submitter = self.ring.submitter();
        let r = match timeout {
            None => submitter.submit_and_wait(1),
            Some(t) => {
                // The kernel takes a signed 64-bit seconds count: cap absurd timeouts (~68 years).
                let ts = Timespec::new()
                    .sec(t.as_secs().min(u64::from(u32::MAX) / 2))
                    .nsec(t.subsec_nanos());
                let args = SubmitArgs::new().timespec(&ts);
                submitter.submit_with_args(1, &args)
            }
        };
        match r {
            Ok(_) => Ok(()),
            Err(e) => match e.raw_os_error() {
                // Interrupted, timed out, or the completion queue is backed up: go reap.
                Some(libc::EINTR | libc::ETIME | libc::EBUSY | libc::EAGAIN) => Ok(()),
                // The kernel dropped completions (counted from the ring's overflow counter).
                Some(libc::EBADR) => Ok(()),
                _ => Err(e),
            },
        }
    }

    /// Moves `pending` into the submission queue, submitting whenever it fills up. What does not
    /// fit (the kernel did not take anything) stays pending for the next `wait`.
    fn push_pending(&mut self) -> io::Result<()> {
        let mut done = 0;
        while done < self.pending.len() {
            {
                let mut sq = self.ring.submission();
                while done < self.pending.len() {
                    // SAFETY: every SQE points at memory that outlives its operation: the recv
                    // msghdr template and the buffer ring (kept until the io_uring is gone), a
                    // send slot (not reused before its completion), the socket fds (closed only
                    // after all their operations completed) and the eventfd (kept with the ring).
                    if unsafe { sq.push(&self.pending[done]) }.is_err() {
                        break;
                    }
                    done += 1;
                }
            }
            if done < self.pending.len() {
                match self.ring.submit() {
                    Ok(n) if n > 0 => {}
                    Ok(_) => break,
                    Err(e)
                        if matches!(
                            e.raw_os_error(),
                            Some(libc::EINTR | libc::EBUSY | libc::EAGAIN)
                        ) =>
                    {
                        break
                    }
                    Err(e) => {
                        self.pending.drain(..done);
                        return Err(e);
                    }
                }
            }
        }
        self.pending.drain(..done);
        Ok(())
    }

    fn reap(&mut self, on: &mut dyn FnMut(Completion<'_>)) {
        let mut cqes = std::mem::take(&mut self.cqes);
        cqes.clear();
        {
            let cq = self.ring.completion();
            self.stats.cq_overflows = u64::from(cq.overflow());
            cqes.extend(cq.map(|c| (c.user_data(), c.result(), c.flags())));
        }
        for &(ud, res, flags) in &cqes {
            self.complete(ud, res, flags, on);
        }
        if self.buffers_returned {
            self.bufs.publish();
            self.buffers_returned = false;
        }
        self.cqes = cqes;
    }

    fn complete(&mut self, ud: u64, res: i32, flags: u32, on: &mut dyn FnMut(Completion<'_>)) {
        let idx = (ud & UD_INDEX) as u32;
        match ud & UD_KIND {
            UD_RECV => self.complete_recv(idx, res, flags, false, on),
            UD_RECV_PLAIN => self.complete_recv(idx, res, flags, true, on),
            UD_SEND => {
                self.inflight = self.inflight.saturating_sub(1);
                if res >= 0 {
                    self.stats.sent += 1;
                } else {
                    self.stats.send_errors += 1;
                }
                let Some(slot) = self.slots.get(idx as usize) else {
                    return;
                };
                let sock = slot.sock;
                self.free_slots.push(idx);
                self.op_done(sock);
            }
            UD_CANCEL => {
                self.inflight = self.inflight.saturating_sub(1);
                if res < 0 && !self.shutting_down {
                    // Not found: normally the receive just ended (its final completion is on its
                    // way). If it is still armed, try again, a few times.
                    if let Some(Some(sock)) = self.socks.get_mut(idx as usize) {
                        if sock.recv_active && sock.cancel_retries < CANCEL_RETRIES {
                            sock.cancel_retries += 1;
                            Self::queue_cancel(&mut self.pending, &mut self.inflight, sock, idx);
                        }
                    }
                }
                self.op_done(idx);
            }
            UD_WAKE => {
                let mut b = [0u8; 8];
                let _ = (&*self.wake).read(&mut b);
                if res >= 0 {
                    self.wake_errors = 0;
                } else if res != -libc::ECANCELED {
                    self.wake_errors += 1;
                }
                if !cqueue::more(flags) {
                    self.inflight = self.inflight.saturating_sub(1);
                    // A poll that keeps failing is not re-armed forever (then only completions
                    // and timeouts end a `wait`).
                    if !self.shutting_down && self.wake_errors < MAX_RECV_ERRORS {
                        self.arm_wake();
                    }
                }
            }
            UD_CANCEL_ALL => self.inflight = self.inflight.saturating_sub(1),
            _ => {}
        }
    }

    fn complete_recv(
        &mut self,
        idx: u32,
        res: i32,
        flags: u32,
        plain: bool,
        on: &mut dyn FnMut(Completion<'_>),
    ) {
        let bid = cqueue::buffer_select(flags).filter(|&b| b < self.bufs.count);
        let Some(Some(sock)) = self.socks.get_mut(idx as usize) else {
            if let Some(bid) = bid {
                self.bufs.push(bid);
                self.buffers_returned = true;
            }
            return;
        };
        if let Some(bid) = bid {
            if res >= 0 && !sock.removed && !self.shutting_down {
                let buf = self.bufs.buf(bid);
                // A plain receive's buffer is the payload, from the peer it was armed for; a
                // `recvmsg`'s starts with a header and the source address.
                let msg = if plain {
                    None
                } else {
                    RecvMsgOut::parse(buf, &self.recv_msg).ok()
                };
                let datagram = if plain {
                    sock.recv_plain.map(|from| {
                        let len = usize::try_from(res).unwrap_or(0);
                        (from, &buf[..len.min(MAX_DATAGRAM)], len > MAX_DATAGRAM)
                    })
                } else {
                    msg.as_ref().and_then(|out| {
                        let from = parse_addr(out.name_data())?;
                        Some((from, out.payload_data(), out.is_payload_truncated()))
                    })
                };
                match datagram {
                    Some((from, bytes, truncated)) => {
                        sock.errors = 0;
                        report(&mut self.stats, on, sock.token, from, bytes, truncated);
                    }
                    None => self.stats.recv_errors += 1,
                }
            }
            self.bufs.push(bid);
            self.buffers_returned = true;
        }
        if res < 0 {
            if res == -libc::ENOBUFS {
                self.stats.recv_enobufs += 1;
            } else if res != -libc::ECANCELED {
                self.stats.recv_errors += 1;
                if !transient(-res) {
                    sock.errors += 1;
                }
            }
        }
        if !cqueue::more(flags) {
            sock.recv_active = false;
            sock.inflight = sock.inflight.saturating_sub(1);
            self.inflight = self.inflight.saturating_sub(1);
            if !sock.removed && !self.shutting_down {
                if sock.errors >= MAX_RECV_ERRORS {
                    // Given up: closed and reported like a removed socket.
                    sock.removed = true;
                } else {
                    // Connected: a plain receive, once what came before the connect is read
                    // with its sources (the kernel filters new datagrams, not queued ones).
                    let plain = match sock.peer {
                        Some(peer) if sock.recv_plain == Some(peer) => Some(peer),
                        Some(peer) => {
                            let token = sock.token;
                            let drained = drain_queued(
                                sock.fd,
                                &mut self.scratch,
                                &mut |from, bytes, truncated| {
                                    report(&mut self.stats, on, token, from, bytes, truncated)
                                },
                            );
                            drained.then_some(peer)
                        }
                        None => None,
                    };
                    sock.recv_plain = plain;
                    self.pending.push(match plain {
                        Some(_) => recv_plain_sqe(sock.file, idx),
                        None => recv_sqe(sock.file, idx, &self.recv_msg),
                    });
                    sock.recv_active = true;
                    sock.inflight += 1;
                    self.inflight += 1;
                    self.stats.rearms += 1;
                }
            }
            self.maybe_close(idx);
        }
    }

    /// One operation on socket `idx` finally completed.
    fn op_done(&mut self, idx: u32) {
        if let Some(Some(sock)) = self.socks.get_mut(idx as usize) {
            sock.inflight = sock.inflight.saturating_sub(1);
        }
        self.maybe_close(idx);
    }

    /// Closes socket `idx` if it is removed and nothing references its fd any more.
    fn maybe_close(&mut self, idx: u32) {
        let Some(slot) = self.socks.get_mut(idx as usize) else {
            return;
        };
        if !slot.as_ref().is_some_and(|s| s.removed && s.inflight == 0) {
            return;
        }
        let Some(sock) = slot.take() else {
            return;
        };
        if let FileRef::Fixed(i) = sock.file {
            // No queued or in-flight operation uses the slot: take the table's reference away,
            // or the socket would stay open (and keep its port) after the close below.
            if self
                .ring
                .submitter()
                .register_files_update(i, &[-1])
                .is_err()
            {
                self.stats.table_clear_errors += 1;
            }
        }
        drop(sock.socket); // closes the fd: no queued or in-flight operation uses it
        self.free_socks.push(idx);
        self.live = self.live.saturating_sub(1);
        self.tokens.insert(sock.token, None);
        self.closed.push(sock.token);
    }

    fn arm_wake(&mut self) {
        self.pending.push(
            opcode::PollAdd::new(Fd(self.wake.as_raw_fd()), libc::POLLIN as u32)
                .multi(true)
                .build()
                .user_data(UD_WAKE),
        );
        self.inflight += 1;
    }

    /// Cancels everything and waits (bounded) until no operation is in flight. True when the
    /// kernel provably no longer uses our memory.
    fn drain(&mut self) -> bool {
        if !self.enabled {
            // Nothing was ever submitted (only `wait` submits, after enabling).
            return true;
        }
        self.shutting_down = true;
        self.pending.push(
            opcode::AsyncCancel2::new(CancelBuilder::any())
                .build()
                .user_data(UD_CANCEL_ALL),
        );
        self.inflight += 1;
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        let mut cancel_again = false;
        while self.inflight > 0 && Instant::now() < deadline {
            if cancel_again {
                // Operations that were still pending when the first cancel ran.
                self.pending.push(
                    opcode::AsyncCancel2::new(CancelBuilder::any())
                        .build()
                        .user_data(UD_CANCEL_ALL),
                );
                self.inflight += 1;
            }
            if self.push_pending().is_err() || self.enter(Some(Duration::from_millis(10))).is_err()
            {
                return false;
            }
            self.reap(&mut |_| {});
            cancel_again = self.pending.is_empty() && self.inflight > 0;
        }
        self.inflight == 0
    }
}

impl Drop for UdpRing {
    fn drop(&mut self) {
        let drained = self.drain();
        // SAFETY: `ring` is not used after this; it is dropped before the memory it used (the
        // fields below, dropped after this function), as the module docs describe.
        unsafe { ManuallyDrop::drop(&mut self.ring) };
        if !drained {
            // The kernel may still hold references: never free that memory.
            self.bufs.leak = true;
            std::mem::forget(std::mem::take(&mut self.slots));
            // SAFETY: all-zero is a valid msghdr.
            let template =
                std::mem::replace(&mut self.recv_msg, Box::new(unsafe { std::mem::zeroed() }));
            std::mem::forget(template);
        }
        // Then (field drops): the buffer ring and send slots are freed, the sockets closed, the
        // eventfd released (if no Waker holds it).
    }
}

impl std::fmt::Debug for UdpRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpRing")
            .field("sockets", &self.live)
            .field("inflight", &self.inflight)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_and_sync() {
        fn send<T: Send>() {}
        fn send_sync<T: Send + Sync>() {}
        send::<UdpRing>();
        send_sync::<Waker>();
    }

    #[test]
    fn parse_addr_rejects_short_and_unknown() {
        assert_eq!(parse_addr(&[]), None);
        assert_eq!(parse_addr(&[0; 28]), None);
        let mut v4 = [0u8; 28];
        v4[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        v4[2..4].copy_from_slice(&5004u16.to_be_bytes());
        v4[4..8].copy_from_slice(&[10, 0, 0, 1]);
        assert_eq!(parse_addr(&v4), Some("10.0.0.1:5004".parse().unwrap()));
        assert_eq!(parse_addr(&v4[..6]), None);
        let mut v6 = [0u8; 28];
        v6[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
        v6[2..4].copy_from_slice(&5006u16.to_be_bytes());
        v6[23] = 1;
        assert_eq!(parse_addr(&v6), Some("[::1]:5006".parse().unwrap()));
        assert_eq!(parse_addr(&v6[..27]), None);
    }
}
