//! The media plane's tokio driver: one task per call, a socket per leg on an `AsyncFd`.
//!
//! The task waits for the first of {a datagram on either leg, the state's timeout, a command};
//! reads `now` once (tokio's clock, so tests may pause it); hands the input to the call's
//! [`MediaState`]; sends what it put in the [`Outbox`]. Used where io_uring is not (see the
//! module above).

use super::{Command, LegId, Outbox, SharedMedia};
use crate::rtp_ports::PortLease;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::mpsc;

/// Reads of the caller's socket for a [`Command::Flush`]: up to 64 datagrams, over a second of
/// 20 ms RTP.
const FLUSH_READS: usize = 32;

/// A call's media task, as its handle sees it.
pub(super) struct CallMedia {
    commands: mpsc::UnboundedSender<Command>,
}

impl CallMedia {
    pub(super) fn send(&self, command: Command) {
        // The task ends only after a `Close` or once this sender is gone.
        let _ = self.commands.send(command);
    }
}

/// Starts the media task of a call.
pub(super) fn spawn(state: SharedMedia) -> CallMedia {
    let (commands, rx) = mpsc::unbounded_channel();
    tokio::spawn(run(state, rx));
    CallMedia { commands }
}

/// A leg's socket and its port.
struct Leg {
    socket: RtpSocket,
    _lease: PortLease,
}

async fn run(state: SharedMedia, mut commands: mpsc::UnboundedReceiver<Command>) {
    let mut legs: [Option<Leg>; 2] = [None, None];
    let mut batches = [RecvBatch::new(), RecvBatch::new()];
    let mut out = Outbox::default();
    let far = || clock() + Duration::from_secs(3600);
    // One timer for the task's life, moved only when the deadline changes.
    let timer = tokio::time::sleep_until(far().into());
    tokio::pin!(timer);
    loop {
        let deadline = crate::sync::lock(&state).poll_timeout().unwrap_or_else(far);
        let deadline = tokio::time::Instant::from_std(deadline);
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        let [caller_batch, agent_batch] = &mut batches;
        tokio::select! {
            command = commands.recv() => match command {
                Some(Command::Add { leg, socket, lease }) => match RtpSocket::new(socket) {
                    Ok(socket) => legs[leg.index()] = Some(Leg { socket, _lease: lease }),
                    Err(e) => tracing::warn!("cannot read an RTP socket: {e}"),
                },
                Some(Command::Remove { leg }) => legs[leg.index()] = None,
                Some(Command::Touch) => crate::sync::lock(&state).handle_changed(&mut out),
                Some(Command::Flush { done }) => {
                    if let Some(leg) = &legs[0] {
                        flush(&state, &leg.socket, caller_batch, &mut out);
                    }
                    send(&legs, &mut out);
                    let _ = done.send(());
                }
                Some(Command::Close { done }) => {
                    drop(legs);
                    let _ = done.send(());
                    return;
                }
                None => return,
            },
            Some(()) = recv(&legs[0], caller_batch) => {
                handle_batch(&state, LegId::Caller, caller_batch, &mut out);
            }
            Some(()) = recv(&legs[1], agent_batch) => {
                handle_batch(&state, LegId::Agent, agent_batch, &mut out);
            }
            _ = &mut timer => {
                crate::sync::lock(&state).handle_timeout(clock(), &mut out);
            }
        }
        send(&legs, &mut out);
    }
}

/// The task's one time source ([`crate::time::runtime_now`]).
use crate::time::runtime_now as clock;

/// The next datagrams of a leg's socket into `batch`; never while the leg has none.
async fn recv(leg: &Option<Leg>, batch: &mut RecvBatch) -> Option<()> {
    match leg {
        Some(leg) => leg.socket.recv_batch(batch).await.ok(),
        None => std::future::pending().await,
    }
}

fn handle_batch(state: &SharedMedia, leg: LegId, batch: &RecvBatch, out: &mut Outbox) {
    let now = clock();
    let mut state = crate::sync::lock(state);
    for (from, bytes) in (0..batch.len()).filter_map(|i| batch.get(i)) {
        state.handle_datagram(now, leg, from, bytes, out);
    }
}

/// What waits in the caller's socket now, bounded by [`FLUSH_READS`] reads.
fn flush(state: &SharedMedia, socket: &RtpSocket, batch: &mut RecvBatch, out: &mut Outbox) {
    for _ in 0..FLUSH_READS {
        if socket.try_recv_batch(batch).is_err() {
            return;
        }
        handle_batch(state, LegId::Caller, batch, out);
        if batch.len() < RECV_BATCH {
            return;
        }
    }
}

/// Sends what the state queued, each from its leg's socket; a leg without one drops its packets.
/// Sockets stay unconnected here (a connection asked for is not needed: sends carry their
/// destination).
fn send(legs: &[Option<Leg>; 2], out: &mut Outbox) {
    out.drain_connects();
    let mut failed = 0;
    out.drain(|leg, dest, bytes| {
        if let Some(leg) = &legs[leg.index()] {
            // A full send buffer drops the frame, as a late one would be.
            if leg.socket.try_send_to(bytes, dest).is_err() {
                failed += 1;
            }
        }
    });
    // Counted once per turn: the metrics' label lookup allocates.
    if failed > 0 {
        crate::metrics::global().rtp_send_failed("kernel", failed);
    }
}

/// A leg's RTP socket. Registered with the runtime for reading only: we send without waiting
/// (a frame that finds the send buffer full is dropped, as a late one would be), so a send never
/// raises a "writable" event. A socket registered for both would get one from the kernel for
/// every datagram it sent (the loopback or NIC frees it at once), each an epoll wake-up for
/// nothing — as many as the packets a call sends.
///
/// Read with `recvmmsg` ([`RtpSocket::recv_batch`]): one system call per wake-up. A plain
/// `recvfrom` per datagram needs a second one that fails with `EAGAIN` before the runtime may wait
/// again (edge-triggered readiness), i.e. two per packet; a batch that comes back short of
/// [`RECV_BATCH`] says the queue was empty, and the readiness is cleared without asking again.
struct RtpSocket {
    fd: AsyncFd<std::net::UdpSocket>,
    /// Bound to an IPv6 address: sources come as `sockaddr_in6` (see [`recv_mmsg`]).
    v6: bool,
}

/// Datagrams one wake-up reads at most. Two are enough to tell "drained" (fewer came back) from
/// "more may wait"; RTP every 20 ms rarely queues more.
const RECV_BATCH: usize = 2;
/// Room for one datagram: larger ones arrive cut short (RTP at 1500-byte MTUs fits).
const DATAGRAM: usize = 2048;

/// The datagrams of one [`RtpSocket::recv_batch`], in arrival order.
struct RecvBatch {
    buf: Vec<u8>,
    /// Per datagram: its length and source (`None`: no IP source, skipped).
    got: [Option<(usize, SocketAddr)>; RECV_BATCH],
    len: usize,
}

impl RecvBatch {
    fn new() -> RecvBatch {
        RecvBatch {
            buf: vec![0; RECV_BATCH * DATAGRAM],
            got: [None; RECV_BATCH],
            len: 0,
        }
    }

    /// How many datagrams the last read brought.
    fn len(&self) -> usize {
        self.len
    }

    /// Datagram `i` of the last read and where it came from.
    fn get(&self, i: usize) -> Option<(SocketAddr, &[u8])> {
        let (n, from) = (*self.got.get(i).filter(|_| i < self.len)?)?;
        let bytes = self.buf.get(i * DATAGRAM..i * DATAGRAM + n)?;
        Some((from, bytes))
    }
}

impl RtpSocket {
    fn new(socket: std::net::UdpSocket) -> std::io::Result<RtpSocket> {
        let v6 = socket.local_addr()?.is_ipv6();
        socket.set_nonblocking(true)?;
        // Deprecated in favour of an `unsafe` constructor whose condition — the descriptor stays
        // open and the same while registered — an owned `std` socket meets by itself: it closes
        // only when the `AsyncFd` (deregistering first) drops it.
        #[allow(deprecated)]
        let fd = AsyncFd::with_interest(socket, Interest::READABLE)?;
        Ok(RtpSocket { fd, v6 })
    }

    /// The next datagrams (at least one, at most [`RECV_BATCH`]) into `batch`.
    async fn recv_batch(&self, batch: &mut RecvBatch) -> std::io::Result<()> {
        loop {
            let mut ready = self.fd.readable().await?;
            // `WouldBlock` clears the readiness and we wait again; anything else is the answer.
            match ready.try_io(|socket| recv_mmsg(socket.get_ref(), self.v6, batch)) {
                Ok(Ok(n)) if n < RECV_BATCH => {
                    // The queue was empty when the call returned. A datagram arriving since has
                    // raised a new readiness event, which this does not clear (tokio compares the
                    // event's tick).
                    ready.clear_ready();
                    return Ok(());
                }
                Ok(result) => return result.map(|_| ()),
                Err(_would_block) => {}
            }
        }
    }

    /// The datagrams waiting now, without waiting for any: how many the kernel gave
    /// (`WouldBlock` for none).
    fn try_recv_batch(&self, batch: &mut RecvBatch) -> std::io::Result<usize> {
        recv_mmsg(self.fd.get_ref(), self.v6, batch)
    }

    /// Sends `buf` to `dest` now, or fails (`WouldBlock` when the send buffer is full).
    fn try_send_to(&self, buf: &[u8], dest: SocketAddr) -> std::io::Result<usize> {
        self.fd.get_ref().send_to(buf, dest)
    }
}

/// One `recvmmsg` without waiting into `batch`: how many datagrams the kernel gave
/// (`WouldBlock` for none). `v6`: the socket is bound to an IPv6 address.
fn recv_mmsg(
    socket: &std::net::UdpSocket,
    v6: bool,
    batch: &mut RecvBatch,
) -> std::io::Result<usize> {
    use nix::sys::socket::{recvmmsg, MsgFlags, MultiHeaders, SockaddrStorage};
    use std::cell::RefCell;
    use std::io::IoSliceMut;
    use std::os::fd::AsRawFd;
    thread_local! {
        // The kernel's message headers, reused: they hold pointers, so they may not live in the
        // call's future (not `Send`), and nothing awaits while they are borrowed. One set per
        // address family: the kernel shortens a header's address length to the source it wrote
        // and `nix` does not restore it, so an IPv4 socket's headers would cut an IPv6 source
        // short. A socket's sources are all of its own family (IPv4 on an IPv6 socket comes
        // mapped), so each set keeps the length it needs.
        static HEADERS_V4: RefCell<MultiHeaders<SockaddrStorage>> =
            RefCell::new(MultiHeaders::preallocate(RECV_BATCH, None));
        static HEADERS_V6: RefCell<MultiHeaders<SockaddrStorage>> =
            RefCell::new(MultiHeaders::preallocate(RECV_BATCH, None));
    }
    let RecvBatch { buf, got, len } = batch;
    *len = 0;
    let headers = if v6 { &HEADERS_V6 } else { &HEADERS_V4 };
    headers.with_borrow_mut(|headers| {
        let (first, second) = buf.split_at_mut(DATAGRAM);
        let mut iovs = [[IoSliceMut::new(first)], [IoSliceMut::new(second)]];
        let results = recvmmsg(
            socket.as_raw_fd(),
            headers,
            iovs.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        )
        .map_err(std::io::Error::from)?;
        for (msg, slot) in results.zip(got.iter_mut()) {
            *len += 1;
            let from = msg.address.as_ref().and_then(|a| {
                a.as_sockaddr_in()
                    .map(|v4| SocketAddr::V4((*v4).into()))
                    .or_else(|| a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into())))
            });
            // A datagram without an IP source (none on a UDP socket) is skipped.
            *slot = from.map(|from| (msg.bytes.min(DATAGRAM), from));
        }
        Ok(*len)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_batch_reads_what_is_queued_and_then_waits_for_more() {
        let quiet = Duration::from_millis(50);
        for (ours, theirs) in [("127.0.0.1:0", "127.0.0.1:0"), ("[::1]:0", "[::1]:0")] {
            let Ok(socket) = std::net::UdpSocket::bind(ours).and_then(RtpSocket::new) else {
                continue; // no IPv6 loopback here
            };
            let addr = socket.fd.get_ref().local_addr().unwrap();
            let peer = std::net::UdpSocket::bind(theirs).unwrap();
            let from = peer.local_addr().unwrap();
            for datagram in [&b"one"[..], b"two", b"three"] {
                peer.send_to(datagram, addr).unwrap();
            }
            let mut batch = RecvBatch::new();
            let mut read = Vec::new();
            while read.len() < 3 {
                tokio::time::timeout(quiet, socket.recv_batch(&mut batch))
                    .await
                    .expect("queued datagrams are read at once")
                    .unwrap();
                assert!((1..=RECV_BATCH).contains(&batch.len()));
                read.extend((0..batch.len()).filter_map(|i| batch.get(i)).map(|(f, b)| {
                    assert_eq!(f, from);
                    b.to_vec()
                }));
            }
            assert_eq!(read, [&b"one"[..], b"two", b"three"]);
            // Drained: the next read waits, and a datagram sent meanwhile wakes it.
            {
                let next = socket.recv_batch(&mut batch);
                tokio::pin!(next);
                assert!(tokio::time::timeout(quiet, &mut next).await.is_err());
                peer.send_to(b"four", addr).unwrap();
                tokio::time::timeout(quiet, next)
                    .await
                    .expect("woken")
                    .unwrap();
            }
            assert_eq!(batch.get(0), Some((from, &b"four"[..])));
        }
    }
}
