//! Test support: a light SIP trunk for load tests — many calls from one process without SIPp's
//! thread per RTP stream.
//!
//! Three named std threads (`loadgen-sip`, `loadgen-rtp-tx`, `loadgen-rtp-rx`, so a benchmark can
//! tell their CPU from the server's in `/proc/self/task/*/stat`):
//! - **SIP** over one UDP socket: INVITE with an SDP offer (PCMA + telephone-event) at a bounded
//!   rate, 100/200 handled, ACK; later BYE and its 200. INVITE and BYE retransmit with RFC 3261
//!   Timer A/E doubling from 500 ms, at most [`MAX_SENDS`] times. Requests from the server (BYE when
//!   it ends a call) get a 200.
//! - **RTP out** from one media socket that every call's SDP points at: every 20 ms one PCMA packet
//!   per answered call, speech-like noise (pink noise with a syllable envelope), and on request each
//!   call's own 8-digit code as in-band DTMF tones (80 ms tone, 80 ms pause, -10 dBm0 per tone).
//! - **RTP in** on the same socket (symmetric RTP: the server sends back to where ours come from),
//!   counted per source port, i.e. per call, with loss from sequence-number gaps.
//!
//! Two plans ([`Plan`]): **hold** (the concurrency bench: every call stays up with noise until
//! [`LoadGen::send_codes`], then keys its code in-band, and is hung up by [`LoadGen::finish`]), or
//! **script** (the call-rate bench: every call plays the same RTP datagrams from its answer on —
//! e.g. RFC 4733 digits — and sends its BYE a fixed time after the answer). The RTP sender uses
//! `sendmmsg` (batches of [`SEND_BATCH`]), so the generator's CPU per packet stays well under the
//! server's.
//!
//! Loopback only; every loop is bounded by [`LoadConfig::limit`].

use dsp::testsig::{dbm0_power, Signal, Tone};
use sip::message::{Method, Request, Response};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Thread-name prefix of the generator's threads.
pub const THREAD_PREFIX: &str = "loadgen-";
/// Transmissions of one INVITE or BYE at most (first send included).
pub const MAX_SENDS: u32 = 6;
const FRAME: usize = 160;
const FRAME_TIME: Duration = Duration::from_millis(20);
const T1: Duration = Duration::from_millis(500);
/// How long the receiver sleeps once its socket is drained.
const RX_BATCH: Duration = Duration::from_millis(5);
/// Frames of one key press and of the pause after it (80 ms each).
const KEY_FRAMES: u64 = 4;
/// Silence before and after the code, in frames.
const CODE_LEAD: u64 = 4;
/// Frames of a whole 8-digit code with its lead and tail.
pub const CODE_FRAMES: u64 = 2 * CODE_LEAD + 8 * 2 * KEY_FRAMES;
const PCMA_SILENCE: u8 = 0xD5;

/// What every answered call does.
pub enum Plan {
    /// Speech-like noise until [`LoadGen::send_codes`], then the call's code as in-band tones,
    /// then noise again; hung up by [`LoadGen::finish`].
    Hold,
    /// Call `i` plays `scripts[i]` (the last one when there are fewer: whole RTP datagrams, at
    /// their offset from the answer; the SSRC is made per call), then sends BYE `hang_up_after`
    /// the answer.
    Script {
        scripts: Vec<Vec<(Duration, Vec<u8>)>>,
        hang_up_after: Duration,
    },
}

impl Plan {
    fn hang_up_after(&self) -> Option<Duration> {
        match self {
            Plan::Hold => None,
            Plan::Script { hang_up_after, .. } => Some(*hang_up_after),
        }
    }
}

/// What to generate.
pub struct LoadConfig {
    /// The server's SIP UDP address.
    pub server: SocketAddr,
    /// One 8-digit code per call; its length is the number of calls.
    pub codes: Vec<String>,
    /// New calls per second.
    pub rate: u32,
    /// Dialled number.
    pub called: String,
    /// Nothing runs longer than this after [`LoadGen::start`].
    pub limit: Duration,
    /// What each call does once answered.
    pub plan: Plan,
}

/// The caller number of call `i` (distinct per call, so the server's call list maps back to calls).
pub fn caller(i: usize) -> String {
    format!("+3161{i:07}")
}

/// A running generator.
pub struct LoadGen {
    shared: Arc<Shared>,
    media_port: u16,
    scripted: bool,
    sip: JoinHandle<(Vec<SipCall>, Duration)>,
    tx: JoinHandle<TxStats>,
    rx: JoinHandle<Streams>,
}

/// What the generator saw, after [`LoadGen::finish`].
#[derive(Debug, Default)]
pub struct LoadReport {
    pub calls: usize,
    /// Calls answered with 200 OK.
    pub answered: usize,
    /// First INVITE sent to its 200 OK received, per answered call, shortest first.
    pub answer_times: Vec<Duration>,
    /// Time from the first INVITE to the last call's end (its BYE's 200, or the server's BYE).
    pub took: Duration,
    /// CPU seconds (user + system) the generator's threads used in all.
    pub cpu: f64,
    /// Calls refused or never answered: (call, status or 0 for no final answer).
    pub failed: Vec<(usize, u16)>,
    /// Answered calls whose BYE got its 200.
    pub hung_up: usize,
    /// Answered calls the server hung up (its BYE) before ours.
    pub ended_by_server: usize,
    /// Answered calls whose BYE got no final answer.
    pub bye_unanswered: usize,
    /// SIP retransmissions we sent (INVITE + BYE).
    pub retransmissions: u64,
    pub rtp_sent: u64,
    pub rtp_send_errors: u64,
    pub rtp_received: u64,
    /// Packets from the server missing by sequence number (gaps, not late arrivals).
    pub rtp_lost: u64,
    /// Answered calls from which no RTP came back.
    pub calls_without_rtp_back: usize,
}

impl LoadReport {
    /// The `q` quantile (0–1) of [`LoadReport::answer_times`], in milliseconds.
    pub fn answer_ms(&self, q: f64) -> f64 {
        let n = self.answer_times.len();
        if n == 0 {
            return 0.0;
        }
        let i = ((n - 1) as f64 * q).round() as usize;
        self.answer_times[i.min(n - 1)].as_secs_f64() * 1000.0
    }
}

struct Shared {
    deadline: Instant,
    answered: AtomicUsize,
    failed: AtomicUsize,
    /// Calls over: hung up, ended by the server, BYE unanswered, or failed.
    settled: AtomicUsize,
    /// Frame index the sender is at.
    tick: AtomicU64,
    /// Frame index at which every call starts its code (`u64::MAX`: not yet).
    code_tick: AtomicU64,
    stop_media: AtomicBool,
    hang_up: AtomicBool,
    stop_rx: AtomicBool,
    /// RTP packets sent and received so far, for rates over a window.
    sent: AtomicU64,
    received: AtomicU64,
    /// CPU ticks (1/100 s) of the generator's threads that have ended.
    cpu_ticks: AtomicU64,
}

/// Runs `work` and adds the thread's CPU time to `shared`'s count when it is done.
fn counting_cpu<T>(shared: &Shared, work: impl FnOnce() -> T) -> T {
    let out = work();
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    // After the name: state is field 0, utime 11, stime 12.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    shared.cpu_ticks.fetch_add(ticks(11) + ticks(12), Relaxed);
    out
}

impl LoadGen {
    /// Binds the sockets on 127.0.0.1 and starts placing calls at once.
    pub fn start(config: LoadConfig) -> std::io::Result<LoadGen> {
        let sip = UdpSocket::bind("127.0.0.1:0")?;
        let media = bind_media()?;
        let media_addr = media.local_addr()?;
        let shared = Arc::new(Shared {
            deadline: Instant::now() + config.limit,
            answered: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            settled: AtomicUsize::new(0),
            tick: AtomicU64::new(0),
            code_tick: AtomicU64::new(u64::MAX),
            stop_media: AtomicBool::new(false),
            hang_up: AtomicBool::new(false),
            stop_rx: AtomicBool::new(false),
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            cpu_ticks: AtomicU64::new(0),
        });
        let (up_tx, up_rx) = mpsc::channel();
        let rx_socket = media.try_clone()?;
        let audio = Audio::new(&config.codes);
        let scripted = matches!(config.plan, Plan::Script { .. });
        let scripts = match &config.plan {
            Plan::Script { scripts, .. } => scripts.clone(),
            Plan::Hold => Vec::new(),
        };
        let s = shared.clone();
        let sip = std::thread::Builder::new()
            .name(format!("{THREAD_PREFIX}sip"))
            .spawn(move || {
                let shared = s.clone();
                counting_cpu(&shared, || {
                    SipSide::new(sip, media_addr, config, s, up_tx).run()
                })
            })?;
        let s = shared.clone();
        let tx = std::thread::Builder::new()
            .name(format!("{THREAD_PREFIX}rtp-tx"))
            .spawn(move || {
                counting_cpu(&s, || match scripted {
                    false => send_media(&media, &s, &up_rx, &audio),
                    true => send_script(&media, &s, &up_rx, &scripts),
                })
            })?;
        let s = shared.clone();
        let rx = std::thread::Builder::new()
            .name(format!("{THREAD_PREFIX}rtp-rx"))
            .spawn(move || counting_cpu(&s, || receive_media(&rx_socket, &s)))?;
        Ok(LoadGen {
            shared,
            media_port: media_addr.port(),
            scripted,
            sip,
            tx,
            rx,
        })
    }

    /// Calls answered so far.
    pub fn answered(&self) -> usize {
        self.shared.answered.load(Relaxed)
    }

    /// Calls refused or given up so far.
    pub fn failed(&self) -> usize {
        self.shared.failed.load(Relaxed)
    }

    /// Calls over so far (hung up, ended by the server, or failed).
    pub fn settled(&self) -> usize {
        self.shared.settled.load(Relaxed)
    }

    /// The local port of the generator's one RTP socket.
    pub fn media_port(&self) -> u16 {
        self.media_port
    }

    /// RTP packets sent and received so far.
    pub fn rtp_counts(&self) -> (u64, u64) {
        (
            self.shared.sent.load(Relaxed),
            self.shared.received.load(Relaxed),
        )
    }

    /// Every answered call sends its code as in-band tones from the next frame on; returns how long
    /// the code audio lasts.
    pub fn send_codes(&self) -> Duration {
        let next = self.shared.tick.load(Relaxed) + 1;
        self.shared.code_tick.store(next, Relaxed);
        FRAME_TIME * CODE_FRAMES as u32
    }

    /// Stops the media, hangs every call up (BYE at the call rate), waits for the 200s (bounded by
    /// the limit) and gathers the figures.
    /// With [`Plan::Script`] the calls hang up by themselves: this waits for the last (bounded by
    /// the limit), then stops the media.
    pub fn finish(self) -> LoadReport {
        let (calls, tx) = if self.scripted {
            let calls = self.sip.join().unwrap_or_default();
            self.shared.stop_media.store(true, Relaxed);
            (calls, self.tx.join().unwrap_or_default())
        } else {
            self.shared.stop_media.store(true, Relaxed);
            let tx = self.tx.join().unwrap_or_default();
            self.shared.hang_up.store(true, Relaxed);
            (self.sip.join().unwrap_or_default(), tx)
        };
        let (calls, took) = calls;
        // Packets still in flight from the server arrive within a few frames (counted, not
        // awaited: nothing marks the server's last one).
        std::thread::sleep(5 * FRAME_TIME);
        self.shared.stop_rx.store(true, Relaxed);
        let ports = self.rx.join().unwrap_or_default();
        let mut report = LoadReport {
            calls: calls.len(),
            took,
            cpu: self.shared.cpu_ticks.load(Relaxed) as f64 / 100.0,
            rtp_sent: tx.sent,
            rtp_send_errors: tx.errors,
            ..LoadReport::default()
        };
        for stats in ports.values() {
            report.rtp_received += stats.received;
            report.rtp_lost += stats.expected().saturating_sub(stats.received);
        }
        let ports_heard: std::collections::HashSet<u16> =
            ports.keys().map(|(port, _)| *port).collect();
        report.answer_times = calls.iter().filter_map(|c| c.answer_time).collect();
        report.answer_times.sort();
        for (i, call) in calls.iter().enumerate() {
            report.retransmissions +=
                u64::from(call.sends.saturating_sub(1) + call.bye_sends.saturating_sub(1));
            match call.state {
                State::Failed(status) => report.failed.push((i, status)),
                State::Pending | State::Inviting => report.failed.push((i, 0)),
                State::Up | State::Byeing => report.answered += 1,
                State::Done => {
                    report.answered += 1;
                    report.hung_up += 1;
                }
                State::EndedByServer => {
                    report.answered += 1;
                    report.ended_by_server += 1;
                }
                State::ByeUnanswered => {
                    report.answered += 1;
                    report.bye_unanswered += 1;
                }
            }
            if call
                .rtp_port
                .is_some_and(|port| !ports_heard.contains(&port))
            {
                report.calls_without_rtp_back += 1;
            }
        }
        report
    }
}

fn bind_media() -> std::io::Result<UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    // All calls' media arrives here: a few frames of buffer (the default holds ~2 ms at 2,000
    // calls). The kernel caps it at net.core.rmem_max.
    socket.set_recv_buffer_size(32 << 20)?;
    // As root the cap does not apply (SO_RCVBUFFORCE): 32 MiB hold ~0.3 s at 5,000 calls.
    let _ = rustix::net::sockopt::set_socket_recv_buffer_size_force(&socket, 32 << 20);
    socket.set_send_buffer_size(8 << 20)?;
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("literal address");
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

// ---- SIP ----------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Pending,
    Inviting,
    Up,
    Byeing,
    Done,
    /// Our BYE was sent [`MAX_SENDS`] times without a final answer.
    ByeUnanswered,
    EndedByServer,
    Failed(u16),
}

#[derive(Clone, Debug)]
struct SipCall {
    state: State,
    /// A provisional response came: INVITE retransmissions stop (Timer A).
    proceeding: bool,
    sends: u32,
    bye_sends: u32,
    next_send: Instant,
    /// When the first INVITE went, and how long until its 200 OK came.
    invited: Instant,
    answer_time: Option<Duration>,
    to_tag: String,
    rtp_port: Option<u16>,
}

struct SipSide {
    socket: UdpSocket,
    local: SocketAddr,
    media: SocketAddr,
    config: LoadConfig,
    shared: Arc<Shared>,
    up: mpsc::Sender<(usize, SocketAddr)>,
    calls: Vec<SipCall>,
    /// Call-ID prefix of this run.
    run: String,
    /// [`Plan::Script`]: when each answered call sends its BYE, in answer order.
    byes: std::collections::VecDeque<(Instant, usize)>,
}

impl SipSide {
    fn new(
        socket: UdpSocket,
        media: SocketAddr,
        config: LoadConfig,
        shared: Arc<Shared>,
        up: mpsc::Sender<(usize, SocketAddr)>,
    ) -> SipSide {
        let now = Instant::now();
        let call = SipCall {
            state: State::Pending,
            proceeding: false,
            sends: 0,
            bye_sends: 0,
            next_send: now,
            invited: now,
            answer_time: None,
            to_tag: String::new(),
            rtp_port: None,
        };
        SipSide {
            local: socket.local_addr().expect("bound socket has an address"),
            socket,
            media,
            calls: vec![call; config.codes.len()],
            run: format!("lg-{}-{}", std::process::id(), rand::random::<u32>()),
            byes: Default::default(),
            config,
            shared,
            up,
        }
    }

    /// A call is over (`state` is final): counted once.
    fn settle(&mut self, i: usize, state: State) {
        self.calls[i].state = state;
        self.shared.settled.fetch_add(1, Relaxed);
        if matches!(state, State::Failed(_)) {
            self.shared.failed.fetch_add(1, Relaxed);
        }
    }

    fn run(mut self) -> (Vec<SipCall>, Duration) {
        let _ = self.socket.set_read_timeout(Some(Duration::from_millis(5)));
        let hang_up_after = self.config.plan.hang_up_after();
        let rate = f64::from(self.config.rate.max(1));
        let n = self.calls.len();
        let started = Instant::now();
        let mut invited = 0;
        let mut bye_started: Option<Instant> = None;
        let mut byed = 0;
        let mut next_scan = started;
        let mut buf = vec![0u8; 65536];
        while Instant::now() < self.shared.deadline {
            let now = Instant::now();
            let due = ((now - started).as_secs_f64() * rate) as usize + 1;
            while invited < due.min(n) {
                self.send_invite(invited, now);
                invited += 1;
            }
            if hang_up_after.is_some() {
                while let Some(&(at, i)) = self.byes.front().filter(|(at, _)| *at <= now) {
                    let _ = at;
                    self.byes.pop_front();
                    if self.calls[i].state == State::Up {
                        self.send_bye(i, now);
                    }
                }
                if invited == n && self.shared.settled.load(Relaxed) == n {
                    break;
                }
            } else if self.shared.hang_up.load(Relaxed) {
                let since = *bye_started.get_or_insert(now);
                let due = ((now - since).as_secs_f64() * rate) as usize + 1;
                while byed < due.min(n) {
                    if self.calls[byed].state == State::Up {
                        self.send_bye(byed, now);
                    }
                    byed += 1;
                }
                let settled =
                    |c: &SipCall| !matches!(c.state, State::Inviting | State::Up | State::Byeing);
                if byed == n && self.calls.iter().all(settled) {
                    break;
                }
            }
            if now >= next_scan {
                self.retransmit(now);
                next_scan = now + Duration::from_millis(50);
            }
            if let Ok((len, from)) = self.socket.recv_from(&mut buf) {
                if from == self.config.server {
                    self.handle(&buf[..len], Instant::now());
                }
            }
        }
        (self.calls, started.elapsed())
    }

    fn call_id(&self, i: usize) -> String {
        format!("{}-{i}@127.0.0.1", self.run)
    }

    /// The call a Call-ID of ours names.
    fn call_index(&self, call_id: &str) -> Option<usize> {
        let rest = call_id.strip_prefix(&self.run)?.strip_prefix('-')?;
        let i: usize = rest.strip_suffix("@127.0.0.1")?.parse().ok()?;
        (i < self.calls.len()).then_some(i)
    }

    fn request(&self, i: usize, method: &str, branch: &str, cseq: u32, extra: &str) -> String {
        let c = &self.calls[i];
        let to_tag = if c.to_tag.is_empty() {
            String::new()
        } else {
            format!(";tag={}", c.to_tag)
        };
        let uri = if method == "INVITE" {
            format!("sip:{}@{}", self.config.called, self.config.server)
        } else {
            format!("sip:veilig-bellen@{}", self.config.server)
        };
        format!(
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{run}-{i}-{branch}\r\n\
             From: <sip:{caller}@{me}>;tag=lg{i}\r\nTo: <sip:{called}@{srv}>{to_tag}\r\n\
             Call-ID: {cid}\r\nCSeq: {cseq} {method}\r\nContact: <sip:trunk@{me}>\r\nMax-Forwards: 70\r\n{extra}",
            me = self.local,
            run = self.run,
            caller = caller(i),
            called = self.config.called,
            srv = self.config.server,
            cid = self.call_id(i),
        )
    }

    fn send(&self, text: &str) {
        let _ = self.socket.send_to(text.as_bytes(), self.config.server);
    }

    fn invite(&self, i: usize) -> String {
        let sdp = format!(
            "v=0\r\no=trunk {i} 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
             a=fmtp:101 0-15\r\na=ptime:20\r\n",
            ip = self.media.ip(),
            port = self.media.port()
        );
        let extra = format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        );
        self.request(i, "INVITE", "inv", 1, &extra)
    }

    fn send_invite(&mut self, i: usize, now: Instant) {
        self.send(&self.invite(i));
        let c = &mut self.calls[i];
        c.state = State::Inviting;
        c.sends = 1;
        c.invited = now;
        c.next_send = now + T1;
    }

    fn send_bye(&mut self, i: usize, now: Instant) {
        self.send(&self.request(i, "BYE", "bye", 2, "Content-Length: 0\r\n\r\n"));
        let c = &mut self.calls[i];
        c.state = State::Byeing;
        c.bye_sends = 1;
        c.next_send = now + T1;
    }

    /// Timer A / E: resend INVITE (until a provisional) and BYE, doubling, at most [`MAX_SENDS`].
    fn retransmit(&mut self, now: Instant) {
        for i in 0..self.calls.len() {
            let c = &self.calls[i];
            if now < c.next_send {
                continue;
            }
            let (sends, text) = match c.state {
                State::Inviting if !c.proceeding => (c.sends, self.invite(i)),
                State::Byeing => (
                    c.bye_sends,
                    self.request(i, "BYE", "bye", 2, "Content-Length: 0\r\n\r\n"),
                ),
                _ => continue,
            };
            if sends >= MAX_SENDS {
                let state = if c.state == State::Inviting {
                    State::Failed(0)
                } else {
                    State::ByeUnanswered
                };
                self.settle(i, state);
                continue;
            }
            self.send(&text);
            let c = &mut self.calls[i];
            let sends = if c.state == State::Inviting {
                c.sends += 1;
                c.sends
            } else {
                c.bye_sends += 1;
                c.bye_sends
            };
            c.next_send = now + T1 * 2u32.pow(sends - 1);
        }
    }

    fn handle(&mut self, datagram: &[u8], now: Instant) {
        match sip::message::Message::parse(bytes::Bytes::copy_from_slice(datagram)) {
            Ok(sip::message::Message::Response(r)) => self.handle_response(&r, now),
            Ok(sip::message::Message::Request(r)) => self.handle_request(&r),
            Err(_) => {}
        }
    }

    fn handle_response(&mut self, r: &Response, now: Instant) {
        let (Ok(call_id), Ok(cseq)) = (r.headers.call_id(), r.headers.cseq()) else {
            return;
        };
        let Some(i) = self.call_index(call_id) else {
            return;
        };
        let status = r.status.as_u16();
        let state = self.calls[i].state;
        match (cseq.method, state) {
            (Method::Invite, State::Inviting) if status < 200 => self.calls[i].proceeding = true,
            (Method::Invite, State::Inviting) if status < 300 => {
                let tag = r.headers.to().ok().and_then(|t| t.tag().map(str::to_owned));
                let port = sdp_audio_port(&r.body);
                let (Some(tag), Some(port)) = (tag, port) else {
                    self.settle(i, State::Failed(status));
                    return;
                };
                let c = &mut self.calls[i];
                c.answer_time = Some(now.saturating_duration_since(c.invited));
                c.to_tag = tag;
                c.rtp_port = Some(port);
                c.state = State::Up;
                self.send_ack(i);
                self.shared.answered.fetch_add(1, Relaxed);
                if let Some(after) = self.config.plan.hang_up_after() {
                    self.byes.push_back((now + after, i));
                }
                let _ = self
                    .up
                    .send((i, SocketAddr::new(self.config.server.ip(), port)));
            }
            (Method::Invite, State::Inviting) => {
                // Non-2xx final: the ACK belongs to the INVITE transaction (same branch).
                self.calls[i].to_tag = r
                    .headers
                    .to()
                    .ok()
                    .and_then(|t| t.tag().map(str::to_owned))
                    .unwrap_or_default();
                let ack = self.request(i, "ACK", "inv", 1, "Content-Length: 0\r\n\r\n");
                self.send(&ack);
                self.settle(i, State::Failed(status));
            }
            // A retransmitted 200: our ACK was lost.
            (Method::Invite, State::Up | State::Byeing) if (200..300).contains(&status) => {
                self.send_ack(i)
            }
            (Method::Bye, State::Byeing) if status >= 200 => self.settle(i, State::Done),
            _ => {}
        }
    }

    fn send_ack(&self, i: usize) {
        self.send(&self.request(i, "ACK", "ack", 1, "Content-Length: 0\r\n\r\n"));
    }

    /// The server's requests (BYE after its max wait, OPTIONS): 200, and a BYE ends the call.
    fn handle_request(&mut self, r: &Request) {
        let Some(ok) = sip::message::StatusCode::new(200).filter(|_| r.method != Method::Ack)
        else {
            return;
        };
        let response = Response::for_request(r, ok, None);
        let _ = self
            .socket
            .send_to(&response.to_bytes(), self.config.server);
        if r.method == Method::Bye {
            if let Some(i) = r.headers.call_id().ok().and_then(|c| self.call_index(c)) {
                if matches!(self.calls[i].state, State::Up | State::Byeing) {
                    self.settle(i, State::EndedByServer);
                }
            }
        }
    }
}

/// The audio port of the SDP's first `m=audio` line.
fn sdp_audio_port(body: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(body).ok()?;
    let line = text.lines().find_map(|l| l.strip_prefix("m=audio "))?;
    line.split(' ').next()?.parse().ok()
}

// ---- RTP ----------------------------------------------------------------------------------------

/// Audio every call sends: shared speech-like noise, and each call's code as tones.
struct Audio {
    /// A-law noise, a whole number of frames long.
    noise: Vec<u8>,
    /// A-law tone of each digit 0–9, [`KEY_FRAMES`] frames.
    keys: Vec<Vec<u8>>,
    /// Per call, the code's digits (0–9).
    codes: Vec<[u8; 8]>,
}

impl Audio {
    fn new(codes: &[String]) -> Audio {
        // 2 s of pink noise at -20 dBm0 under a 3 Hz syllable envelope: speech-like level changes
        // and spectrum, no steady tone pairs.
        let mut noise = Signal::new(2026);
        noise.silence(16_000).add_pink_noise(dbm0_power(-20.0));
        for (n, s) in noise.samples.iter_mut().enumerate() {
            let t = n as f64 / 8000.0;
            *s *= 0.15 + 1.2 * (std::f64::consts::PI * 3.0 * t).sin().abs();
        }
        let keys = (b'0'..=b'9')
            .map(|d| {
                let mut s = Signal::new(u64::from(d));
                s.tone(Tone::new(char::from(d), -10.0, KEY_FRAMES as usize * FRAME));
                alaw(&s.pcm())
            })
            .collect();
        let codes = codes
            .iter()
            .map(|c| {
                let mut digits = [0u8; 8];
                for (d, b) in digits.iter_mut().zip(c.bytes()) {
                    *d = b.wrapping_sub(b'0') % 10;
                }
                digits
            })
            .collect();
        Audio {
            noise: alaw(&noise.pcm()),
            keys,
            codes,
        }
    }

    /// Frame `tick` of call `call`: its code from `code_tick` on, noise otherwise.
    fn frame(&self, call: usize, tick: u64, code_tick: u64) -> &[u8] {
        const SILENCE: [u8; FRAME] = [PCMA_SILENCE; FRAME];
        if let Some(k) = tick.checked_sub(code_tick).filter(|k| *k < CODE_FRAMES) {
            let Some(k) = k.checked_sub(CODE_LEAD) else {
                return &SILENCE;
            };
            let (digit, within) = ((k / (2 * KEY_FRAMES)) as usize, k % (2 * KEY_FRAMES));
            let key = self.codes[call]
                .get(digit)
                .and_then(|d| self.keys.get(usize::from(*d)));
            return match key {
                Some(key) if within < KEY_FRAMES => {
                    let at = within as usize * FRAME;
                    &key[at..at + FRAME]
                }
                _ => &SILENCE,
            };
        }
        let frames = self.noise.len() / FRAME;
        let at = ((call * 7 + tick as usize) % frames) * FRAME;
        &self.noise[at..at + FRAME]
    }
}

fn alaw(pcm: &[i16]) -> Vec<u8> {
    let mut out = vec![0u8; pcm.len()];
    dsp::g711::encode_alaw_into(pcm, &mut out);
    out
}

#[derive(Default)]
struct TxStats {
    sent: u64,
    errors: u64,
}

/// Packets sent with one `sendmmsg` at most.
pub const SEND_BATCH: usize = 64;
/// The sender wakes every `SLOT`: call `i` sends its frames in slot `i % SLOTS` of each 20 ms, so
/// the calls' packets spread over the frame as a trunk's do, not in one burst.
const SLOT: Duration = Duration::from_millis(5);
const SLOTS: u64 = 4;

/// Datagrams queued for one `sendmmsg` (rustix's safe wrapper).
struct Batch {
    packets: Vec<(SocketAddr, Vec<u8>)>,
}

impl Batch {
    fn new() -> Batch {
        Batch {
            packets: Vec::with_capacity(SEND_BATCH),
        }
    }

    fn push(
        &mut self,
        socket: &UdpSocket,
        shared: &Shared,
        stats: &mut TxStats,
        to: SocketAddr,
        packet: &[u8],
    ) {
        self.packets.push((to, packet.to_vec()));
        if self.packets.len() == SEND_BATCH {
            self.flush(socket, shared, stats);
        }
    }

    fn flush(&mut self, socket: &UdpSocket, shared: &Shared, stats: &mut TxStats) {
        use rustix::net::{sendmmsg, MMsgHdr, SendAncillaryBuffer, SendFlags, SocketAddrAny};
        use std::io::IoSlice;
        if self.packets.is_empty() {
            return;
        }
        let addrs: Vec<SocketAddrAny> = self.packets.iter().map(|(a, _)| (*a).into()).collect();
        let iovs: Vec<[IoSlice<'_>; 1]> = self
            .packets
            .iter()
            .map(|(_, p)| [IoSlice::new(p)])
            .collect();
        let mut controls: Vec<SendAncillaryBuffer<'_, '_, '_>> = (0..self.packets.len())
            .map(|_| SendAncillaryBuffer::default())
            .collect();
        let mut msgs: Vec<MMsgHdr<'_>> = addrs
            .iter()
            .zip(&iovs)
            .zip(controls.iter_mut())
            .map(|((addr, iov), control)| MMsgHdr::new_with_addr(addr, iov, control))
            .collect();
        let mut done = 0;
        while done < msgs.len() {
            match sendmmsg(socket, &mut msgs[done..], SendFlags::empty()) {
                Ok(0) => break,
                Ok(n) => {
                    done += n;
                    stats.sent += n as u64;
                    shared.sent.fetch_add(n as u64, Relaxed);
                }
                Err(rustix::io::Errno::INTR) => {}
                // The first message failed: count it and go on with the next.
                Err(_) => {
                    done += 1;
                    stats.errors += 1;
                }
            }
        }
        drop(msgs);
        self.packets.clear();
    }
}

struct TxCall {
    index: usize,
    dest: SocketAddr,
    seq: u16,
    timestamp: u32,
}

fn send_media(
    socket: &UdpSocket,
    shared: &Shared,
    up: &mpsc::Receiver<(usize, SocketAddr)>,
    audio: &Audio,
) -> TxStats {
    let mut stats = TxStats::default();
    // Per slot, the calls that send in it.
    let mut calls: Vec<Vec<TxCall>> = (0..SLOTS).map(|_| Vec::new()).collect();
    let mut packet = [0u8; 12 + FRAME];
    let mut batch = Batch::new();
    let started = Instant::now();
    let mut slot: u64 = 0;
    while !shared.stop_media.load(Relaxed) && Instant::now() < shared.deadline {
        while let Ok((index, dest)) = up.try_recv() {
            calls[index % SLOTS as usize].push(TxCall {
                index,
                dest,
                seq: rand::random(),
                timestamp: rand::random(),
            });
        }
        let tick = slot / SLOTS;
        let code_tick = shared.code_tick.load(Relaxed);
        for c in &mut calls[(slot % SLOTS) as usize] {
            packet[0] = 0x80;
            packet[1] = 8; // PCMA
            packet[2..4].copy_from_slice(&c.seq.to_be_bytes());
            packet[4..8].copy_from_slice(&c.timestamp.to_be_bytes());
            packet[8..12].copy_from_slice(&(0x4c47_0000 + c.index as u32).to_be_bytes());
            packet[12..].copy_from_slice(audio.frame(c.index, tick, code_tick));
            batch.push(socket, shared, &mut stats, c.dest, &packet);
            c.seq = c.seq.wrapping_add(1);
            c.timestamp = c.timestamp.wrapping_add(FRAME as u32);
        }
        batch.flush(socket, shared, &mut stats);
        slot += 1;
        if slot.is_multiple_of(SLOTS) {
            shared.tick.store(slot / SLOTS, Relaxed);
        }
        let next = started + SLOT * slot as u32;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            // The load's pace: one frame per call every 20 ms, a quarter of the calls every 5 ms.
            std::thread::sleep(wait);
        }
    }
    stats
}

/// A call playing its script: where it is.
struct ScriptCall<'a> {
    index: usize,
    dest: SocketAddr,
    answered: Instant,
    script: &'a [(Duration, Vec<u8>)],
    next: usize,
}

/// [`Plan::Script`]: every answered call plays its script from the moment its answer came.
fn send_script(
    socket: &UdpSocket,
    shared: &Shared,
    up: &mpsc::Receiver<(usize, SocketAddr)>,
    scripts: &[Vec<(Duration, Vec<u8>)>],
) -> TxStats {
    let mut stats = TxStats::default();
    let mut calls: Vec<ScriptCall> = Vec::new();
    let mut batch = Batch::new();
    let mut packet = Vec::new();
    while !shared.stop_media.load(Relaxed) && Instant::now() < shared.deadline {
        let now = Instant::now();
        while let Ok((index, dest)) = up.try_recv() {
            let Some(script) = scripts.get(index).or(scripts.last()) else {
                continue;
            };
            calls.push(ScriptCall {
                index,
                dest,
                answered: now,
                script,
                next: 0,
            });
        }
        for c in &mut calls {
            let since = now.saturating_duration_since(c.answered);
            while let Some((_, datagram)) = c.script.get(c.next).filter(|(at, _)| *at <= since) {
                packet.clear();
                packet.extend_from_slice(datagram);
                if packet.len() >= 12 {
                    packet[8..12].copy_from_slice(&(0x4c47_0000 + c.index as u32).to_be_bytes());
                }
                batch.push(socket, shared, &mut stats, c.dest, &packet);
                c.next += 1;
            }
        }
        batch.flush(socket, shared, &mut stats);
        calls.retain(|c| c.next < c.script.len());
        // The script's pace: every 5 ms whatever is due.
        std::thread::sleep(SLOT);
    }
    stats
}

/// Packets from one server port (one call).
#[derive(Clone, Copy, Default)]
struct PortStats {
    received: u64,
    started: bool,
    last: u16,
    /// Highest sequence number seen, extended over wraps, counted from the first packet.
    highest: u64,
}

impl PortStats {
    fn expected(&self) -> u64 {
        if self.started {
            self.highest + 1
        } else {
            0
        }
    }

    fn packet(&mut self, seq: u16) {
        self.received += 1;
        if !self.started {
            self.started = true;
            self.last = seq;
            return;
        }
        // Forward steps below half the space are new packets (RFC 3550 A.1); others are late.
        let step = seq.wrapping_sub(self.last);
        if step != 0 && step < 0x8000 {
            self.last = seq;
            self.highest += u64::from(step);
        }
    }
}

/// Per stream (the server's port and SSRC: a port serves one call after another), what came.
type Streams = std::collections::HashMap<(u16, u32), PortStats>;

fn receive_media(socket: &UdpSocket, shared: &Shared) -> Streams {
    let mut streams = Streams::new();
    // Drain in batches rather than block per packet: a reader asleep in recv makes every packet
    // the server sends also wake this thread, work a real trunk on another machine never causes
    // the server (on loopback it is charged to the sender's send_to).
    let _ = socket.set_nonblocking(true);
    let mut buf = [0u8; 2048];
    while !shared.stop_rx.load(Relaxed) && Instant::now() < shared.deadline {
        match socket.recv_from(&mut buf) {
            Ok((n, from)) if n >= 12 && buf[0] >> 6 == 2 => {
                let seq = u16::from_be_bytes([buf[2], buf[3]]);
                let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
                streams.entry((from.port(), ssrc)).or_default().packet(seq);
                shared.received.fetch_add(1, Relaxed);
            }
            Ok(_) => {}
            // Nothing to read: the batch interval (see above).
            Err(_) => std::thread::sleep(RX_BATCH),
        }
    }
    streams
}
