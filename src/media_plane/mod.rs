//! The media plane: the calls' RTP sockets, read and written away from the call tasks.
//!
//! A call's media (RTP sessions, the in-band detector, the comfort signal, the relay between its
//! legs) is a sans-IO [`MediaState`]: datagrams and timeouts in, datagrams out (an [`Outbox`]),
//! and the next time it wants to be woken. The call task owns the state behind a mutex and
//! changes it when signalling says so (a new leg, a re-INVITE, stop the detector); the media plane
//! feeds it the packets and the time. So a packet costs no wake-up of the call task — a call task
//! wakes for SIP, commands and what its media reports (a digit, a media timeout), a handful of
//! times per call.
//!
//! Two drivers, chosen per server ([`MediaIo`]):
//! - **io_uring** (the default on Linux, [`uring`]): a few media threads (one per core by default),
//!   each with one io_uring owning its calls' sockets — multishot `recvmsg` into a shared buffer
//!   ring (a plain `recv` while a socket is connected, see below), every send of a turn submitted
//!   with one system call, no epoll, no per-packet task wake-up. Measured by `benches/rtp_io_models.rs` (the I/O alone) and `call_path_bench
//!   concurrency` (whole calls).
//! - **tokio** ([`tokio_driver`]): one task per call on the runtime, a socket per leg on an
//!   `AsyncFd`, `recvmmsg` per wake-up. Used where the kernel refuses io_uring (a container's
//!   seccomp profile, an old kernel: the server says so in its log and goes on), when configured
//!   (`calls.media_io = "tokio"`), and by tests on tokio's paused clock.
//!
//! Connected sockets: once a leg's RTP source is fixed (the session's learning window is over, see
//! `sip::rtp`), the state asks for the leg's socket to be connected to it ([`Outbox::connect`]);
//! the io_uring driver does, so the kernel drops every other sender — as the session would —, our
//! sends to it skip a route lookup each, and the socket is read without a source address per
//! datagram (the source is the peer). New media (a re-INVITE) disconnects it until the new
//! source is fixed. The tokio driver leaves sockets unconnected.
//!
//! Ports: a leg's socket comes with its [`PortLease`]; the lease goes back to the pool only once
//! the socket is closed (with io_uring: once the kernel's last reference to it is gone), so the
//! next call that draws the port can bind it.

#[cfg(test)]
mod tests;
mod tokio_driver;
#[cfg(target_os = "linux")]
mod uring;

use crate::rtp_ports::PortLease;
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How long a call waits for the media plane to read what is queued ([`MediaHandle::flush`])
/// or to close its sockets ([`MediaHandle::close`]) before going on without it.
const ANSWER_WAIT: Duration = Duration::from_secs(1);

/// Which of a call's two RTP legs a socket is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LegId {
    /// The caller's leg: the trunk's RTP, or the browser gateway's on loopback.
    Caller,
    /// The agent's phone.
    Agent,
}

impl LegId {
    fn index(self) -> usize {
        match self {
            LegId::Caller => 0,
            LegId::Agent => 1,
        }
    }
}

/// What a call's media does with packets and time. Sans-IO: no sockets, no clock.
pub trait MediaState: Send {
    /// A datagram `bytes` from `from` on `leg`'s socket, at `now`.
    fn handle_datagram(
        &mut self,
        now: Instant,
        leg: LegId,
        from: SocketAddr,
        bytes: &[u8],
        out: &mut Outbox,
    );
    /// `now` reached [`MediaState::poll_timeout`] (or passed it).
    fn handle_timeout(&mut self, now: Instant, out: &mut Outbox);
    /// When to call [`MediaState::handle_timeout`] next; `None`: only packets wake it.
    fn poll_timeout(&self) -> Option<Instant>;
    /// The call task changed the state ([`MediaHandle::touch`]): whatever that asks of the
    /// sockets (a leg to connect or disconnect) goes into `out`.
    fn handle_changed(&mut self, out: &mut Outbox);
    /// Asks the CPU to bring what [`MediaState::handle_datagram`] of one audio packet will read
    /// into its caches (a hint: changes nothing), as far as it lies at fixed places in the state:
    /// reading nothing that may be out of the cache itself. A media thread calls it for every
    /// datagram of a turn before handling them, so that the calls' states, out of the cache at
    /// thousands of calls, are fetched together rather than one miss after another.
    fn prefetch(&self) {}
    /// The rest of what handling a packet reads, at places the lines [`MediaState::prefetch`]
    /// fetched say (a ring buffer's position): called for a turn's datagrams after that.
    fn prefetch_more(&self) {}
}

/// A call's media as the plane holds it.
pub type SharedMedia = Arc<Mutex<dyn MediaState>>;

/// Datagrams, each with a key (the leg it goes out of, the socket it came in on) and an address,
/// their bytes in one buffer. Reused: cleared, never shrunk.
pub struct Datagrams<K> {
    /// (key, address, range in `bytes`).
    list: Vec<(K, SocketAddr, std::ops::Range<usize>)>,
    bytes: Vec<u8>,
}

impl<K> Default for Datagrams<K> {
    fn default() -> Self {
        Datagrams {
            list: Vec::new(),
            bytes: Vec::new(),
        }
    }
}

impl<K: Copy> Datagrams<K> {
    /// Adds a copy of `bytes` with `key` and `addr`.
    pub fn push(&mut self, key: K, addr: SocketAddr, bytes: &[u8]) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(bytes);
        self.list.push((key, addr, start..self.bytes.len()));
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The datagrams in order.
    pub fn iter(&self) -> impl Iterator<Item = (K, SocketAddr, &[u8])> {
        self.list
            .iter()
            .filter_map(|(key, addr, range)| Some((*key, *addr, self.bytes.get(range.clone())?)))
    }

    /// Hands every datagram to `f`, in order, leaving none.
    pub fn drain(&mut self, mut f: impl FnMut(K, SocketAddr, &[u8])) {
        for (key, addr, bytes) in self.iter() {
            f(key, addr, bytes);
        }
        self.clear();
    }

    pub fn clear(&mut self) {
        self.list.clear();
        self.bytes.clear();
    }
}

/// Datagrams to send, each from one of the call's legs, and legs whose socket is to be connected
/// to their one peer (or disconnected). Reused: cleared, never shrunk.
#[derive(Default)]
pub struct Outbox {
    packets: Datagrams<LegId>,
    connects: Vec<(LegId, Option<SocketAddr>)>,
}

impl Outbox {
    /// Queues `bytes` to `dest` from `leg`'s socket.
    pub fn push(&mut self, leg: LegId, dest: SocketAddr, bytes: &[u8]) {
        self.packets.push(leg, dest, bytes);
    }

    /// `leg`'s socket is to be connected to `peer` (its only source from now on: the kernel
    /// drops other senders and keeps the route for our sends), or disconnected (`None`). A
    /// driver may ignore it: sends carry their destination anyway.
    pub fn connect(&mut self, leg: LegId, peer: Option<SocketAddr>) {
        self.connects.push((leg, peer));
    }

    pub fn is_empty(&self) -> bool {
        self.packets.is_empty() && self.connects.is_empty()
    }

    /// The connections asked for, in order, leaving none.
    pub fn drain_connects(&mut self) -> std::vec::Drain<'_, (LegId, Option<SocketAddr>)> {
        self.connects.drain(..)
    }

    /// The queued datagrams in order, leaving the box empty.
    pub fn drain(&mut self, send: impl FnMut(LegId, SocketAddr, &[u8])) {
        self.packets.drain(send);
    }
}

/// Which driver runs the media (`calls.media_io`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaIo {
    /// Media threads on io_uring; falls back to [`MediaIo::Tokio`] where the kernel refuses it.
    Uring {
        /// Media threads (`calls.media_threads`); 0: one per core.
        threads: usize,
    },
    /// A task per call on the tokio runtime.
    Tokio,
}

impl Default for MediaIo {
    fn default() -> Self {
        MediaIo::Uring { threads: 0 }
    }
}

/// The server's media plane: hands each new call a [`MediaHandle`]. Cheap to clone.
#[derive(Clone)]
pub struct MediaPlane {
    inner: Arc<PlaneInner>,
}

enum PlaneInner {
    Tokio,
    #[cfg(target_os = "linux")]
    Uring(uring::Threads),
}

impl MediaPlane {
    /// Starts the plane `io` asks for, for up to `max_calls` calls at once: io_uring threads, or —
    /// where the kernel refuses them, or when asked — calls' own tokio tasks. Must be called
    /// inside a tokio runtime.
    pub fn start(io: MediaIo, max_calls: usize) -> MediaPlane {
        let inner = match io {
            MediaIo::Tokio => PlaneInner::Tokio,
            MediaIo::Uring { threads } => Self::start_uring(threads, max_calls),
        };
        MediaPlane {
            inner: Arc::new(inner),
        }
    }

    #[cfg(target_os = "linux")]
    fn start_uring(threads: usize, max_calls: usize) -> PlaneInner {
        let threads = match threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        match uring::Threads::start(threads, max_calls) {
            Ok(t) => {
                tracing::debug!(threads, "media plane: io_uring");
                PlaneInner::Uring(t)
            }
            Err(e) => {
                tracing::warn!(
                    "io_uring is not available ({e}); the calls' media runs on the tokio runtime \
                     instead (more CPU per call; set calls.media_io = \"tokio\" to say so)"
                );
                PlaneInner::Tokio
            }
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn start_uring(_threads: usize, _max_calls: usize) -> PlaneInner {
        PlaneInner::Tokio
    }

    /// Which driver runs (for the log and tests): `"io_uring"` or `"tokio"`.
    pub fn driver(&self) -> &'static str {
        match &*self.inner {
            PlaneInner::Tokio => "tokio",
            #[cfg(target_os = "linux")]
            PlaneInner::Uring(_) => "io_uring",
        }
    }

    /// Starts driving a call's media `state`; its sockets come with [`MediaHandle::add`].
    pub fn attach(&self, state: SharedMedia) -> MediaHandle {
        let driver = match &*self.inner {
            PlaneInner::Tokio => Driver::Tokio(tokio_driver::spawn(state)),
            #[cfg(target_os = "linux")]
            PlaneInner::Uring(threads) => Driver::Uring(threads.attach(state)),
        };
        MediaHandle {
            driver,
            closed: false,
        }
    }
}

/// What a call asks of the plane about its media.
pub(crate) enum Command {
    /// Read `socket` as `leg` (replacing a socket the leg had: that one is closed).
    Add {
        leg: LegId,
        socket: UdpSocket,
        lease: PortLease,
    },
    /// Close `leg`'s socket and give its port back.
    Remove { leg: LegId },
    /// The call changed its state: ask it again when it wants to be woken.
    Touch,
    /// Read what waits in the caller leg's socket now, then answer.
    Flush { done: oneshot::Sender<()> },
    /// Close every socket, answer once they are closed and their ports back, forget the call.
    Close { done: oneshot::Sender<()> },
}

enum Driver {
    Tokio(tokio_driver::CallMedia),
    #[cfg(target_os = "linux")]
    Uring(uring::CallMedia),
}

/// One call's link to the media plane. Dropping it closes the call's sockets (without waiting).
pub struct MediaHandle {
    driver: Driver,
    closed: bool,
}

impl MediaHandle {
    fn send(&self, command: Command) {
        match &self.driver {
            Driver::Tokio(d) => d.send(command),
            #[cfg(target_os = "linux")]
            Driver::Uring(d) => d.send(command),
        }
    }

    /// The plane reads `socket` as the call's `leg` from now on; `lease` is its port.
    pub fn add(&self, leg: LegId, socket: UdpSocket, lease: PortLease) {
        self.send(Command::Add { leg, socket, lease });
    }

    /// Closes `leg`'s socket; its port goes back to the pool once closed.
    pub fn remove(&self, leg: LegId) {
        self.send(Command::Remove { leg });
    }

    /// The call changed its media state (started a signal, a new RTP session…): the plane asks
    /// the state again when to wake it.
    pub fn touch(&self) {
        self.send(Command::Touch);
    }

    /// Returns once what was waiting in the caller leg's socket has been handed to the state
    /// (the last digits before a BYE), or after [`ANSWER_WAIT`].
    pub async fn flush(&self) {
        let (done, answered) = oneshot::channel();
        self.send(Command::Flush { done });
        let _ = tokio::time::timeout(ANSWER_WAIT, answered).await;
    }

    /// Closes every socket of the call and returns once their ports are back in the pool (or
    /// after [`ANSWER_WAIT`]). The state is no longer driven.
    pub async fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        let (done, answered) = oneshot::channel();
        self.send(Command::Close { done });
        let _ = tokio::time::timeout(ANSWER_WAIT, answered).await;
    }
}

impl Drop for MediaHandle {
    fn drop(&mut self) {
        if !self.closed {
            let (done, _) = oneshot::channel();
            self.send(Command::Close { done });
        }
    }
}
