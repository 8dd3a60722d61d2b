//! The media plane's io_uring driver: media threads, each owning its calls' sockets on one ring.
//!
//! A thread's loop: take the calls' commands (new call, new leg, state changed, flush, close);
//! wake the calls whose timeout came (comfort frames, media timeouts); submit every datagram the
//! turn produced and wait on the ring (one `io_uring_enter`) until a datagram, a command's wake-up
//! or the next timeout; hand each datagram to its call's state. A call's timeout lives in one
//! binary heap per thread: a call has at most one live entry, moved earlier when its state wants
//! that and re-queued lazily when it moved later (most packets move a call's timeout by 20 ms).
//!
//! A panic in a call's media (a bug: nothing in it may panic on input) would take the thread and
//! every call on it; it is caught, logged, and only that call's media stops.

use super::{Command, Datagrams, LegId, Outbox, SharedMedia};
use crate::rtp_ports::PortLease;
use rtp_io::{Completion, SocketId, Token, UdpRing, Waker};
use rustc_hash::FxHashMap as HashMap;
use std::cmp::Reverse;
use std::collections::binary_heap::{BinaryHeap, PeekMut};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Sockets a media thread's ring is sized for at least.
const MIN_RING_SOCKETS: usize = 256;

/// The media threads of a server. Dropping it stops them (calls still on them lose their media:
/// by then the server is gone).
pub(super) struct Threads {
    workers: Vec<Arc<Queue>>,
    next_worker: AtomicUsize,
    next_call: AtomicUsize,
}

/// A media thread's inbox and how to wake it.
struct Queue {
    messages: Mutex<Vec<(usize, Message)>>,
    waker: Waker,
}

enum Message {
    Attach(SharedMedia),
    Command(Command),
    Stop,
}

impl Queue {
    fn push(&self, call: usize, message: Message) {
        crate::sync::lock(&self.messages).push((call, message));
        self.waker.wake();
    }
}

impl Threads {
    /// Starts `n` media threads for up to `max_calls` calls; `Err` if the kernel refuses io_uring
    /// (nothing is left running).
    pub(super) fn start(n: usize, max_calls: usize) -> std::io::Result<Threads> {
        let n = n.max(1);
        // Calls are spread evenly; each has its caller's socket, an agent leg's, and for a moment
        // the one a new agent leg replaces.
        let ring_sockets = (3 * max_calls).div_ceil(n) + 64;
        let ring_sockets = ring_sockets.max(MIN_RING_SOCKETS);
        let mut workers = Vec::with_capacity(n);
        for i in 0..n {
            let (ready, started) = std::sync::mpsc::channel();
            let spawned = std::thread::Builder::new()
                .name(format!("vb-media-{i}"))
                .spawn(move || {
                    // The ring is made on the thread that uses it (single issuer).
                    let ring = match UdpRing::new(ring_sockets) {
                        Ok(ring) => ring,
                        Err(e) => {
                            let _ = ready.send(Err(e));
                            return;
                        }
                    };
                    if i == 0 && !ring.uses_fixed_files() {
                        tracing::info!(
                            "media threads: the open-files limit is below {ring_sockets} per \
                             thread, so RTP sockets go by descriptor instead of io_uring's file \
                             table (works the same, a little more CPU per packet)"
                        );
                    }
                    let queue = Arc::new(Queue {
                        messages: Mutex::new(Vec::new()),
                        waker: ring.waker(),
                    });
                    if ready.send(Ok(queue.clone())).is_ok() {
                        Worker::new(ring, queue).run();
                    }
                });
            let result = spawned.and_then(|_| {
                started
                    .recv()
                    .unwrap_or_else(|_| Err(std::io::Error::other("media thread died")))
            });
            match result {
                Ok(queue) => workers.push(queue),
                Err(e) => {
                    for queue in &workers {
                        queue.push(0, Message::Stop);
                    }
                    return Err(e);
                }
            }
        }
        Ok(Threads {
            workers,
            next_worker: AtomicUsize::new(0),
            next_call: AtomicUsize::new(0),
        })
    }

    /// Puts a call on the next media thread (round robin).
    pub(super) fn attach(&self, state: SharedMedia) -> CallMedia {
        let i = self.next_worker.fetch_add(1, Ordering::Relaxed) % self.workers.len();
        let call = self.next_call.fetch_add(1, Ordering::Relaxed);
        let queue = self.workers[i].clone();
        queue.push(call, Message::Attach(state));
        CallMedia { queue, call }
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        for queue in &self.workers {
            queue.push(0, Message::Stop);
        }
    }
}

/// A call on a media thread, as its handle sees it.
pub(super) struct CallMedia {
    queue: Arc<Queue>,
    call: usize,
}

impl CallMedia {
    pub(super) fn send(&self, command: Command) {
        self.queue.push(self.call, Message::Command(command));
    }
}

/// A call on this thread, in its slot of the thread's table.
struct Call {
    /// The call's number (its handle's; unique in the process, never reused).
    id: usize,
    state: SharedMedia,
    /// Each leg's socket (its token, and its place on the ring for sends).
    legs: [Option<SocketId>; 2],
    /// The time of this call's live entry in the timer heap.
    queued: Option<Instant>,
    /// When the state last said it wants to be woken (it is asked after every input and every
    /// change the call task makes, [`Command::Touch`]): read without locking it.
    wanted: Option<Instant>,
    /// Closing: sockets still open, and who waits for them.
    closing: Option<(usize, Option<oneshot::Sender<()>>)>,
    /// Sockets of the call on the ring and not closed yet (also those being removed).
    open: usize,
}

/// A socket on the ring: whose (slot and number), and its port (returned to the pool when the
/// socket is closed).
struct Socket {
    slot: u32,
    id: usize,
    _lease: Option<PortLease>,
}

/// A socket's token: its call's slot in the low 32 bits — so a datagram finds its call by index,
/// without a table lookup — and a per-thread sequence number above, so a token is never in use
/// twice (a leg's old socket may still be closing when its new one is added).
fn token(seq: u32, slot: u32) -> Token {
    (u64::from(seq) << 32) | u64::from(slot)
}

fn slot_of(token: Token) -> u32 {
    token as u32
}

/// Everything of a media thread but its ring (borrowed apart while the ring waits).
struct State {
    /// The calls by slot: a datagram's token names the slot (see [`token`]).
    calls: Vec<Option<Call>>,
    free: Vec<u32>,
    /// Slot by call number, for the calls' commands.
    slots: HashMap<usize, u32>,
    /// Sockets by token, for their close.
    sockets: HashMap<Token, Socket>,
    /// Timer entries: when, the call's slot and number (a slot may have changed hands).
    timers: BinaryHeap<Reverse<(Instant, u32, usize)>>,
    /// The timer entries due in a turn (reused).
    due_entries: Vec<(Instant, u32, usize)>,
    next_seq: u32,
    /// One call's output, moved into `sends` with its sockets' tokens.
    out: Outbox,
    sends: Datagrams<SocketId>,
    /// Sockets to connect to their peer (or disconnect), in order with the sends.
    connects: Vec<(Token, Option<SocketAddr>)>,
}

struct Worker {
    ring: UdpRing,
    queue: Arc<Queue>,
    st: State,
    batch: Batch,
    /// The ring's counters as last reported to the metrics.
    reported: rtp_io::Stats,
}

/// What one wait on the ring brought: datagrams (copied out of the ring's buffers, which go back
/// to the kernel when the wait returns) and closed sockets.
#[derive(Default)]
struct Batch {
    datagrams: Datagrams<Token>,
    closed: Vec<Token>,
}

impl Worker {
    fn new(ring: UdpRing, queue: Arc<Queue>) -> Worker {
        Worker {
            ring,
            queue,
            st: State {
                calls: Vec::new(),
                free: Vec::new(),
                slots: HashMap::default(),
                sockets: HashMap::default(),
                timers: BinaryHeap::new(),
                due_entries: Vec::new(),
                next_seq: 0,
                out: Outbox::default(),
                sends: Datagrams::default(),
                connects: Vec::new(),
            },
            batch: Batch::default(),
            reported: rtp_io::Stats::default(),
        }
    }

    fn run(mut self) {
        let mut messages = Vec::new();
        let mut due = Vec::new();
        loop {
            std::mem::swap(&mut messages, &mut *crate::sync::lock(&self.queue.messages));
            for (call, message) in messages.drain(..) {
                match message {
                    Message::Attach(state) => {
                        let slot = self.st.insert(Call {
                            id: call,
                            state,
                            legs: [None, None],
                            queued: None,
                            wanted: None,
                            closing: None,
                            open: 0,
                        });
                        self.st.reschedule(slot);
                    }
                    Message::Command(command) => {
                        if let Some(&slot) = self.st.slots.get(&call) {
                            self.command(slot, command);
                        }
                    }
                    Message::Stop => return,
                }
            }
            self.st.run_timers(Instant::now(), &mut due);
            self.submit_sends();
            let timeout = self.st.next_timeout(Instant::now());
            self.wait(timeout);
            self.report();
        }
    }

    /// Adds what the ring counted since the last report to the metrics: sends the kernel failed
    /// and sends the ring refused.
    fn report(&mut self) {
        let now = self.ring.stats();
        let metrics = crate::metrics::global();
        let kernel = now.send_errors.saturating_sub(self.reported.send_errors);
        if kernel > 0 {
            metrics.rtp_send_failed("kernel", kernel);
        }
        let queue = now.send_dropped.saturating_sub(self.reported.send_dropped);
        if queue > 0 {
            metrics.rtp_send_failed("queue", queue);
        }
        self.reported = now;
    }

    /// Waits on the ring (at most `timeout`) and hands what came to the calls: first every
    /// datagram, in order, then the sockets closed (as the ring reports them).
    ///
    /// The datagrams of a turn (dozens, each for another call) are taken in passes: the first
    /// ones only ask the CPU to fetch what each one's call will read ([`MediaState::prefetch`]:
    /// the RTP session, the detector's lines for one frame, the comfort signal) — fetches that
    /// overlap, where one call after the other would wait for memory each time (at thousands of
    /// calls their state is not in the cache) — the last one runs the states.
    fn wait(&mut self, timeout: Option<Duration>) {
        let batch = &mut self.batch;
        batch.datagrams.clear();
        batch.closed.clear();
        let result = self.ring.wait(timeout, &mut |completion| match completion {
            Completion::Datagram {
                token, from, bytes, ..
            } => batch.datagrams.push(token, from, bytes),
            Completion::Closed { token } => batch.closed.push(token),
        });
        if let Err(e) = result {
            // Not expected (EINTR is handled inside); do not spin on it.
            tracing::error!("media thread: waiting on io_uring failed: {e}");
            std::thread::sleep(Duration::from_millis(10));
        }
        let st = &mut self.st;
        if !batch.datagrams.is_empty() {
            st.prefetch_calls(|| batch.datagrams.iter().map(|(token, ..)| slot_of(token)));
            let now = Instant::now();
            for (token, from, bytes) in batch.datagrams.iter() {
                st.datagram(now, token, from, bytes);
            }
        }
        for token in batch.closed.drain(..) {
            st.closed(token);
        }
    }

    fn submit_sends(&mut self) {
        // Connections first: a send to the new peer then goes by the socket's route.
        for (token, peer) in self.st.connects.drain(..) {
            if let Err(e) = self.ring.connect(token, peer) {
                // Sends carry their destination: an unconnected socket still works.
                tracing::debug!("cannot connect an RTP socket to its peer: {e}");
            }
        }
        let ring = &mut self.ring;
        self.st.sends.drain(|socket, dest, bytes| {
            // A full queue drops the frame, as a late one would be.
            ring.send_on(socket, dest, bytes);
        });
    }

    fn command(&mut self, slot: u32, command: Command) {
        let Some(c) = self.st.call_mut(slot) else {
            return;
        };
        match command {
            Command::Add { leg, socket, lease } => {
                if let Some(old) = c.legs[leg.index()].take() {
                    self.ring.remove(old.token());
                }
                let id = c.id;
                let token = token(self.st.next_seq, slot);
                self.st.next_seq = self.st.next_seq.wrapping_add(1);
                match self.ring.add(token, socket) {
                    Ok(socket) => {
                        if let Some(c) = self.st.call_mut(slot) {
                            c.legs[leg.index()] = Some(socket);
                            c.open += 1;
                        }
                        self.st.sockets.insert(
                            token,
                            Socket {
                                slot,
                                id,
                                _lease: Some(lease),
                            },
                        );
                    }
                    Err(e) => tracing::warn!("cannot read an RTP socket on io_uring: {e}"),
                }
            }
            Command::Remove { leg } => {
                if let Some(socket) = c.legs[leg.index()].take() {
                    self.ring.remove(socket.token());
                }
            }
            Command::Touch => {
                let wanted = self.st.drive(slot, |state, out| state.handle_changed(out));
                self.st.queue_timeout(slot, wanted, None);
            }
            Command::Flush { done } => {
                // What the kernel holds for the call's socket now comes out as completions.
                self.wait(Some(Duration::ZERO));
                let _ = done.send(());
            }
            Command::Close { done } => self.close(slot, Some(done)),
        }
    }

    /// Closes every socket of the call in `slot`; `done` hears when they are closed.
    fn close(&mut self, slot: u32, done: Option<oneshot::Sender<()>>) {
        let Some(c) = self.st.call_mut(slot) else {
            return;
        };
        for socket in c.legs.iter_mut().filter_map(Option::take) {
            self.ring.remove(socket.token());
        }
        // Every socket of the call not closed yet, also one removed earlier.
        let open = c.open;
        if open == 0 {
            self.st.remove(slot);
            if let Some(done) = done {
                let _ = done.send(());
            }
        } else {
            c.closing = Some((open, done));
        }
    }
}

impl State {
    /// Puts `call` in a free slot.
    fn insert(&mut self, call: Call) -> u32 {
        let id = call.id;
        let slot = match self.free.pop() {
            Some(slot) => {
                self.calls[slot as usize] = Some(call);
                slot
            }
            None => {
                self.calls.push(Some(call));
                (self.calls.len() - 1) as u32
            }
        };
        self.slots.insert(id, slot);
        slot
    }

    /// Frees `slot` (its call is done).
    fn remove(&mut self, slot: u32) {
        if let Some(c) = self.calls.get_mut(slot as usize).and_then(Option::take) {
            self.slots.remove(&c.id);
            self.free.push(slot);
        }
    }

    fn call(&self, slot: u32) -> Option<&Call> {
        self.calls.get(slot as usize)?.as_ref()
    }

    fn call_mut(&mut self, slot: u32) -> Option<&mut Call> {
        self.calls.get_mut(slot as usize)?.as_mut()
    }

    /// Asks the state in `slot` when it wants to be woken and queues that, if earlier than its
    /// entry.
    fn reschedule(&mut self, slot: u32) {
        let Some(c) = self.call(slot) else {
            return;
        };
        let wanted = crate::sync::lock(&c.state).poll_timeout();
        self.queue_timeout(slot, wanted, None);
    }

    /// Queues the timeout `wanted` of the call in `slot` (what its state's `poll_timeout` said),
    /// if earlier than its entry; not before `not_before` (after a timeout was handled: a state
    /// that still wants `now` is woken a millisecond later, not in a loop).
    fn queue_timeout(&mut self, slot: u32, wanted: Option<Instant>, not_before: Option<Instant>) {
        let Some(c) = self.calls.get_mut(slot as usize).and_then(Option::as_mut) else {
            return;
        };
        if c.closing.is_some() {
            return;
        }
        let wanted = wanted.map(|t| not_before.map_or(t, |n| t.max(n)));
        c.wanted = wanted;
        if let Some(t) = wanted {
            if c.queued.is_none_or(|q| t < q) {
                c.queued = Some(t);
                self.timers.push(Reverse((t, slot, c.id)));
            }
        }
    }

    /// The call an entry of the timer heap is for, if the entry is live (the call still in its
    /// slot, not closing, and the entry its present one).
    fn live_entry(&mut self, t: Instant, slot: u32, id: usize) -> Option<&mut Call> {
        self.calls
            .get_mut(slot as usize)?
            .as_mut()
            .filter(|c| c.id == id && c.queued == Some(t) && c.closing.is_none())
    }

    /// How long the thread may wait for datagrams before a call's timeout. An entry a call has
    /// since moved later (its caller's packet sent the frame the entry was for) is moved to the
    /// call's present timeout here, without waking the thread for it: otherwise every call would
    /// cost a wake-up between its packets.
    fn next_timeout(&mut self, now: Instant) -> Option<Duration> {
        loop {
            let &Reverse((t, slot, id)) = self.timers.peek()?;
            let Some(c) = self.live_entry(t, slot, id) else {
                self.timers.pop();
                continue;
            };
            if t <= now {
                return Some(Duration::ZERO);
            }
            let wanted = c.wanted;
            if wanted == Some(t) {
                return Some(t - now);
            }
            c.queued = wanted;
            // Moved later (the common case: a packet came): the entry takes its new time in
            // place, one sift down instead of a pop and a push.
            let mut top = self.timers.peek_mut()?;
            match wanted {
                Some(w) => *top = Reverse((w, slot, id)),
                None => {
                    PeekMut::pop(top);
                }
            }
        }
    }

    /// Asks the CPU to fetch what the calls in `slots` (a turn's datagrams' or timeouts')
    /// will read, before they run ([`MediaState::prefetch`]). In passes, each reading only what
    /// the one before fetched, so that no pass waits for memory: the calls' slab entries, the
    /// lines of their locks, what their states read at fixed places, then what those lines
    /// point to. (Taking a lock is an atomic operation, which waits for every load before it:
    /// taken on a line out of the cache, or after a load that missed, it would make the calls
    /// wait one after the other again.)
    fn prefetch_calls<I: Iterator<Item = u32>>(&self, slots: impl Fn() -> I) {
        for slot in slots() {
            if let Some(entry) = self.calls.get(slot as usize) {
                dsp::prefetch(entry);
            }
        }
        let calls = || slots().filter_map(|slot| self.call(slot));
        for c in calls() {
            dsp::prefetch_start(&*c.state);
        }
        // Locked by its call task just now (rare): its state is in a cache anyway.
        for c in calls() {
            if let Ok(state) = c.state.try_lock() {
                state.prefetch();
            }
        }
        for c in calls() {
            if let Ok(state) = c.state.try_lock() {
                state.prefetch_more();
            }
        }
    }

    /// Wakes every call whose timeout has come by `now`, each once.
    fn run_timers(&mut self, now: Instant, due: &mut Vec<u32>) {
        // The entries due first (their calls' slab entries fetched meanwhile), then which are
        // live, then the calls.
        let mut entries = std::mem::take(&mut self.due_entries);
        while let Some(&Reverse(entry)) = self.timers.peek() {
            if entry.0 > now {
                break;
            }
            self.timers.pop();
            if let Some(c) = self.calls.get(entry.1 as usize) {
                dsp::prefetch(c);
            }
            entries.push(entry);
        }
        for (t, slot, id) in entries.drain(..) {
            // Not live: the call moved its entry earlier, is closing, or is gone.
            if let Some(c) = self.live_entry(t, slot, id) {
                c.queued = None;
                due.push(slot);
            }
        }
        self.due_entries = entries;
        self.prefetch_calls(|| due.iter().copied());
        for slot in due.drain(..) {
            let wants_now = self.call(slot).is_some_and(|c| {
                crate::sync::lock(&c.state)
                    .poll_timeout()
                    .is_some_and(|w| w <= now)
            });
            let wanted = if wants_now {
                self.drive(slot, |state, out| state.handle_timeout(now, out))
            } else {
                self.call(slot)
                    .and_then(|c| crate::sync::lock(&c.state).poll_timeout())
            };
            self.queue_timeout(slot, wanted, Some(now + Duration::from_millis(1)));
        }
    }

    fn datagram(&mut self, now: Instant, token: Token, from: SocketAddr, bytes: &[u8]) {
        let slot = slot_of(token);
        let Some(c) = self.call(slot).filter(|c| c.closing.is_none()) else {
            return;
        };
        let leg = match c.legs {
            [Some(s), _] if s.token() == token => LegId::Caller,
            [_, Some(s)] if s.token() == token => LegId::Agent,
            // A socket being removed: what it still brought is not the call's any more.
            _ => return,
        };
        let wanted = self.drive(slot, |state, out| {
            state.handle_datagram(now, leg, from, bytes, out)
        });
        self.queue_timeout(slot, wanted, None);
    }

    /// Runs `f` on the state in `slot` and queues what it sent; returns when the state wants to
    /// be woken next. A panic stops only this call's media.
    fn drive(
        &mut self,
        slot: u32,
        f: impl FnOnce(&mut dyn super::MediaState, &mut Outbox),
    ) -> Option<Instant> {
        let c = self.calls.get(slot as usize)?.as_ref()?;
        let out = &mut self.out;
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut state = crate::sync::lock(&c.state);
            f(&mut *state, out);
            state.poll_timeout()
        }));
        let legs = c.legs;
        let Ok(wanted) = ran else {
            tracing::error!("a call's media failed (a bug); its media stops");
            self.out = Outbox::default();
            if let Some(c) = self.call_mut(slot) {
                c.closing = Some((0, None));
            }
            return None;
        };
        for (leg, peer) in self.out.drain_connects() {
            if let Some(socket) = legs[leg.index()] {
                self.connects.push((socket.token(), peer));
            }
        }
        let sends = &mut self.sends;
        self.out.drain(|leg, dest, packet| {
            if let Some(socket) = legs[leg.index()] {
                sends.push(socket, dest, packet);
            }
        });
        wanted
    }

    /// The ring closed `token`'s socket: its port goes back, and a closing call may be done.
    fn closed(&mut self, token: Token) {
        let Some(socket) = self.sockets.remove(&token) else {
            return;
        };
        let (slot, id) = (socket.slot, socket.id);
        drop(socket);
        let Some(c) = self.call_mut(slot).filter(|c| c.id == id) else {
            return;
        };
        c.open = c.open.saturating_sub(1);
        if let Some(leg) = c
            .legs
            .iter_mut()
            .find(|s| s.is_some_and(|s| s.token() == token))
        {
            // Closed without being removed: its receive kept failing (rtp-io gives up on it).
            tracing::warn!("an RTP socket kept failing and was closed; that leg's media stops");
            *leg = None;
        }
        let mut done_with_call = false;
        if let Some((open, done)) = &mut c.closing {
            *open = open.saturating_sub(1);
            if *open == 0 {
                if let Some(done) = done.take() {
                    let _ = done.send(());
                }
                done_with_call = true;
            }
        }
        if done_with_call {
            self.remove(slot);
        }
    }
}
