//! The tokio driver of the SIP core: the only place where SIP touches sockets and the clock.
//!
//! [`run`] binds UDP, TCP and (optionally) TLS listeners on the configured addresses (IPv4 and
//! IPv6; port 0 picks a free port, and a TCP address with port 0 first tries the port its UDP
//! sibling got), then spawns one task that owns the sans-IO [`Endpoint`] (transactions, validation)
//! and the driver's own transaction user ([`tu::Tu`]: registrar with digest authentication and
//! failed-login limiting). It returns at once with the bound addresses, a [`SipHandle`] and the
//! receiver of [`SipEvent`]s.
//!
//! # How the call flow plugs in
//! * Set [`SipConfig::forward_requests`]. Every request the TU does not handle itself (INVITE, BYE,
//!   INFO, REFER, in-dialog OPTIONS, ...) then arrives as `SipEvent::Endpoint(Event::Request { id,
//!   .. })`; answer it with [`SipHandle::respond`]. ACKs for 2xx, CANCELs (already answered 200/487
//!   by the endpoint), responses to requests you sent and transaction timeouts arrive as the other
//!   [`Event`]s. Without `forward_requests` (or once the receiver is dropped) the driver answers
//!   them itself: INVITE 480, in-dialog methods 481, MESSAGE/SUBSCRIBE/PUBLISH 405.
//! * [`SipHandle::lookup`] gives an agent's registered contacts; each [`Binding`]'s `target` and
//!   `transport` form the [`Target`] for [`SipHandle::send_request`] (the address the phone
//!   registered from, never a host name from its Contact).
//! * Registrar changes arrive as [`SipEvent::Registration`].
//!
//! # Loop
//! One task, `select!` over: socket input (every socket and connection has a reader task feeding
//! one channel), handle commands, the earliest of `Endpoint::poll_timeout` and the registrar's
//! expiry, and shutdown. After each input: drain `poll_transmit`, then `poll_event`, repeat until
//! both are empty (the endpoint's documented order). Time is `tokio::time::Instant` converted to
//! std, so tests can pause it.
//!
//! With a [`TrunkGate`] ([`SipConfig::gate`]), a request from outside the trunks that would start
//! something (no To tag) — INVITE, SUBSCRIBE, REFER, NOTIFY, MESSAGE, PUBLISH, and OPTIONS — is
//! dropped, or answered `403` statelessly, before the transaction layer sees it, and counted. The
//! one exception is an OPTIONS from an address where an agent phone holds a live registration
//! (its keep-alive, [`Tu::has_registration_from`]). So a scanner (svmap) elsewhere hears nothing.
//! REGISTER is answered from anywhere, since agents' phones roam: unknown and known usernames get
//! the same 401 ([`tu`]), so there is nothing to enumerate.
//!
//! A source that failed digest authentication too often ([`sip::ratelimit`]) has its REGISTERs
//! dropped before parsing; its other requests are treated as those of any other address. An
//! account many sources guessed at backs off those sources (503 with Retry-After), never a fresh
//! address.
//!
//! With a [`TrunkGate`], every message from an address outside the trunks first passes a token
//! bucket per address ([`SipConfig::message_rate`]); over it, it is dropped unparsed. Trunks are
//! never limited per address. Events reach the application in three queues ([`SipEvents`]), so a
//! flood of new requests sheds only new requests (`503`), never an event of a call in progress.
//!
//! The [`Endpoint`] gets a key drawn from the OS at start ([`EndpointConfig::key`]), so its
//! branches, tags and Call-IDs are unpredictable, and it accepts a response only from the address or
//! connection its request went to; [`SipHandle::endpoint_stats`] counts what it dropped.

pub mod resolve;
pub mod tls;
pub mod transport;
pub mod tu;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use sip::auth::{Algorithm, DigestConfig};
use sip::dialog::Dialog;
use sip::endpoint::{
    ClientTxId, Endpoint, EndpointConfig, EndpointError, EndpointStats, Event, Local, ServerTxId,
    Target, Transmit,
};
use sip::message::validate::Policy;
use sip::message::{build, HeaderName, Method, Request, Response};
use sip::random::RandomKey;
use sip::ratelimit::{LimitConfig, RateConfig};
use sip::registrar::{Binding, RegistrarConfig, RegistrarEvent};
use sip::transaction::{TimerConfig, Transport};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

pub use tls::TlsConfig;
pub use transport::StreamLimits;
pub use tu::Credentials;

use transport::{ConnId, NetInput, Streams};
use tu::{Tu, TuConfig, TuOutcome};

/// What we accept and advertise (Allow/Accept/Supported of OPTIONS answers, Require checks).
pub const POLICY: Policy<'static> = Policy {
    supported: &["path", "timer", "replaces", "norefersub"],
    accept: &[
        "application/sdp",
        "application/dtmf-relay",
        "application/dtmf",
        "message/sipfrag",
    ],
    produces: &["application/sdp"],
    methods: &Method::STANDARD,
    allow_tel: true,
};

/// Everything the SIP side needs.
#[derive(Debug, Clone)]
pub struct SipConfig {
    /// UDP addresses to listen on (port 0: any free port).
    pub udp: Vec<SocketAddr>,
    /// TCP addresses to listen on.
    pub tcp: Vec<SocketAddr>,
    /// TLS addresses to listen on; needs `tls_files`.
    pub tls: Vec<SocketAddr>,
    /// Certificate and key for TLS.
    pub tls_files: Option<TlsConfig>,
    /// Host written into our Via headers (default: the listening IP).
    pub advertise: Option<String>,
    /// Digest realm agents authenticate in.
    pub realm: String,
    /// Digest algorithms offered, preferred first. Note: baresip 1.0 (libre 1.1) and SIPp 3.6 give
    /// up when any SHA-256 challenge is present; such phones need `[Md5]` alone.
    pub digest_algorithms: Vec<Algorithm>,
    /// The agents' SIP logins.
    pub credentials: Vec<Credentials>,
    /// Registrar limits.
    pub registrar: RegistrarConfig,
    /// Failed-login limits per source and per account.
    pub auth_limits: LimitConfig,
    /// TCP/TLS limits.
    pub streams: StreamLimits,
    /// RFC 3261 timer values.
    pub timers: TimerConfig,
    /// Pass requests the TU does not handle to the application (the call flow).
    pub forward_requests: bool,
    /// Who may start dialogs and have OPTIONS answered (the trunks, plus registered phones for
    /// OPTIONS); `None`: everyone. Checked before the transaction layer, so a stranger's INVITE
    /// gets no `100 Trying`, no transaction and no state at all.
    pub gate: Option<TrunkGate>,
    /// Messages per second from one address outside the trunks (with a gate; trunks are never
    /// limited per address: they carry every citizen's call). Over it, messages are dropped
    /// before parsing and counted (`sip_events_shed_total{queue="source"}`).
    pub message_rate: RateConfig,
}

/// The trunks, as the driver enforces them (`sip.trunks`, `sip.unknown_sources`).
#[derive(Debug, Clone)]
pub struct TrunkGate {
    pub trunks: Vec<ipnet::IpNet>,
    /// Answer strangers `403 Forbidden` (statelessly) instead of not at all.
    pub reject: bool,
}

impl TrunkGate {
    /// Whether `ip` may start dialogs.
    pub fn admits(&self, ip: std::net::IpAddr) -> bool {
        in_trunks(&self.trunks, ip)
    }
}

/// Whether `ip` lies in one of `trunks` (an IPv4-mapped IPv6 address counts as its IPv4 address):
/// the one test of "is this a trunk", for the driver's gate and the call flow's identity headers.
pub fn in_trunks(trunks: &[ipnet::IpNet], ip: std::net::IpAddr) -> bool {
    let ip = ip.to_canonical();
    trunks.iter().any(|net| net.contains(&ip))
}

/// Methods a stranger may not send outside a dialog: those that start a dialog or stand alone and
/// reach the call flow, and OPTIONS, which is answered outside the trunks only for an address with
/// a live registration ([`KEEPALIVE`]). REGISTER (the registrar's, from phones anywhere) and
/// ACK/CANCEL (matched to transactions) are not among them. A stranger's other tagless request (a
/// stray BYE or INFO) goes on to the call flow, which turns it away by the same [`in_trunks`] test.
const GATED_METHODS: [&[u8]; 7] = [
    b"INVITE ",
    b"SUBSCRIBE ",
    b"REFER ",
    b"NOTIFY ",
    b"MESSAGE ",
    b"PUBLISH ",
    KEEPALIVE,
];

/// An agent phone's keep-alive (and a scanner's probe): answered from trunks and from addresses
/// where a phone is registered, turned away elsewhere.
const KEEPALIVE: &[u8] = b"OPTIONS ";

impl SipConfig {
    /// UDP and TCP on `addr`, realm `realm`, no agents, defaults elsewhere.
    pub fn new(addr: SocketAddr, realm: impl Into<String>) -> Self {
        SipConfig {
            udp: vec![addr],
            tcp: vec![addr],
            tls: Vec::new(),
            tls_files: None,
            advertise: None,
            realm: realm.into(),
            digest_algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
            credentials: Vec::new(),
            registrar: RegistrarConfig::default(),
            auth_limits: LimitConfig::default(),
            streams: StreamLimits::default(),
            timers: TimerConfig::default(),
            forward_requests: false,
            gate: None,
            message_rate: RateConfig::default(),
        }
    }
}

/// Why the driver could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("binding {transport} {addr}: {source}")]
    Bind {
        transport: Transport,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS listeners configured without certificate and key")]
    TlsWithoutFiles,
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("the SIP driver has stopped")]
    Stopped,
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
}

/// The addresses actually bound.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BoundAddrs {
    pub udp: Vec<SocketAddr>,
    pub tcp: Vec<SocketAddr>,
    pub tls: Vec<SocketAddr>,
}

/// What the driver tells the application.
// Each event crosses one channel once; boxing would only add an allocation per message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum SipEvent {
    /// An endpoint event the TU passed on (requests, ACKs, CANCELs, responses, timeouts).
    Endpoint(Event),
    /// An agent's registrations changed.
    Registration(RegistrarEvent),
}

/// The events of a running driver, in three queues read in order of precedence, so that a flood
/// of new requests never costs a call in progress anything:
///
/// 1. what belongs to an existing transaction (responses, timeouts, transport errors, CANCELs
///    of our INVITE server transactions) and registrar changes: never dropped. Their number is
///    bounded by the transactions that exist, which the endpoint bounds;
/// 2. requests inside a dialog (a To tag) and ACKs for 2xx: bounded; when full, a request is
///    answered `503` with Retry-After (the peer retries) and an ACK is dropped (our 2xx is resent
///    until one gets through);
/// 3. requests that would start something new (no To tag): bounded; when full, answered `503`.
///
/// Every shed event is counted (`sip_events_shed_total{queue}`).
pub struct SipEvents {
    existing: mpsc::UnboundedReceiver<SipEvent>,
    in_dialog: mpsc::Receiver<SipEvent>,
    fresh: mpsc::Receiver<SipEvent>,
}

impl SipEvents {
    /// The next event, existing transactions first, then dialogs, then new requests; `None` once
    /// the driver has stopped and every queue is drained.
    pub async fn recv(&mut self) -> Option<SipEvent> {
        tokio::select! {
            biased;
            Some(ev) = self.existing.recv() => Some(ev),
            Some(ev) = self.in_dialog.recv() => Some(ev),
            Some(ev) = self.fresh.recv() => Some(ev),
            else => None,
        }
    }
}

/// Receive buffer asked for each SIP UDP socket (the kernel gives at most `net.core.rmem_max`).
pub const UDP_RECV_BUFFER: usize = 4 << 20;

/// Capacity of the in-dialog queue of [`SipEvents`].
pub const IN_DIALOG_QUEUE: usize = 4096;
/// Capacity of the new-request queue of [`SipEvents`].
pub const NEW_REQUEST_QUEUE: usize = 1024;

/// The driver's ends of [`SipEvents`].
struct EventQueues {
    existing: mpsc::UnboundedSender<SipEvent>,
    in_dialog: mpsc::Sender<SipEvent>,
    fresh: mpsc::Sender<SipEvent>,
}

impl EventQueues {
    fn new() -> (EventQueues, SipEvents) {
        let (existing_tx, existing) = mpsc::unbounded_channel();
        let (in_dialog_tx, in_dialog) = mpsc::channel(IN_DIALOG_QUEUE);
        let (fresh_tx, fresh) = mpsc::channel(NEW_REQUEST_QUEUE);
        (
            EventQueues {
                existing: existing_tx,
                in_dialog: in_dialog_tx,
                fresh: fresh_tx,
            },
            SipEvents {
                existing,
                in_dialog,
                fresh,
            },
        )
    }

    /// Whether the application stopped listening.
    fn is_closed(&self) -> bool {
        self.existing.is_closed()
    }
}

/// A running driver.
pub struct SipServer {
    /// Where we listen.
    pub local: BoundAddrs,
    /// Commands into the driver.
    pub handle: SipHandle,
    /// Events out of the driver.
    pub events: SipEvents,
    /// The driver task; it ends when the shutdown future completes.
    pub task: tokio::task::JoinHandle<()>,
}

enum Command {
    Respond(
        ServerTxId,
        Box<Response>,
        oneshot::Sender<Result<(), EndpointError>>,
    ),
    SendRequest(
        Box<Request>,
        Target,
        oneshot::Sender<Result<ClientTxId, EndpointError>>,
    ),
    SendAck(
        Box<Request>,
        Target,
        oneshot::Sender<Result<(), EndpointError>>,
    ),
    Cancel(ClientTxId, oneshot::Sender<Result<(), EndpointError>>),
    Lookup(String, oneshot::Sender<Vec<Binding>>),
    Stats(oneshot::Sender<EndpointStats>),
}

/// A final answer the sender does not wait for ([`SipHandle::reply`]).
struct Reply(ServerTxId, Box<Response>);

/// Sends commands to the driver. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SipHandle {
    tx: mpsc::Sender<Command>,
    /// Unbounded, yet bounded in practice: at most one reply per request event, and those come
    /// out of the bounded queues of [`SipEvents`].
    replies: mpsc::UnboundedSender<Reply>,
    resolver: Arc<resolve::Resolver>,
}

impl SipHandle {
    /// Where the next in-dialog request of a **trunk** dialog goes (RFC 3261 §12.2.1.1, §8.1.2):
    /// its first route, else its remote target — an IP address as is, a host name resolved per RFC
    /// 3263. When the hop cannot be used or resolved, the flow the dialog came in on, with a
    /// warning: a BYE that may arrive beats one that surely will not. Agent phones' dialogs do not
    /// come here; they stay on [`Dialog::peer`], the flow the phone registered from.
    pub async fn route(&self, dialog: &Dialog) -> Target {
        let flow = dialog.peer();
        let hop = match dialog.next_hop() {
            Ok(hop) => hop,
            Err(e) => {
                tracing::warn!(
                    ?flow,
                    "unusable next hop ({e}); sending to the dialog's source"
                );
                return flow;
            }
        };
        if let Some(target) = hop.literal_target(Some(flow)) {
            return target;
        }
        match self.resolver.resolve(&hop, flow.addr.ip()).await {
            Ok(target) => target,
            Err(e) => {
                tracing::warn!(
                    ?flow,
                    "cannot resolve the next hop ({e}); sending to the dialog's source"
                );
                flow
            }
        }
    }

    /// Answers server transaction `id` (provisional or final).
    pub async fn respond(&self, id: ServerTxId, response: Response) -> Result<(), DriverError> {
        self.call(|r| Command::Respond(id, Box::new(response), r))
            .await?
            .map_err(DriverError::from)
    }

    /// Answers server transaction `id` without waiting for the driver: for the stateless-like
    /// refusals (503, 404, 481, 403) of a loop that must not stall under a flood. Errors (the
    /// transaction is gone) are logged by the driver.
    pub fn reply(&self, id: ServerTxId, response: Response) {
        let _ = self.replies.send(Reply(id, Box::new(response)));
    }

    /// Sends a request (not ACK/CANCEL) to `target`; its responses arrive as events with the id.
    pub async fn send_request(
        &self,
        request: Request,
        target: Target,
    ) -> Result<ClientTxId, DriverError> {
        self.call(|r| Command::SendRequest(Box::new(request), target, r))
            .await?
            .map_err(DriverError::from)
    }

    /// Sends the ACK for a 2xx.
    pub async fn send_ack(&self, ack: Request, target: Target) -> Result<(), DriverError> {
        self.call(|r| Command::SendAck(Box::new(ack), target, r))
            .await?
            .map_err(DriverError::from)
    }

    /// Cancels an INVITE we sent.
    pub async fn cancel(&self, id: ClientTxId) -> Result<(), DriverError> {
        self.call(|r| Command::Cancel(id, r))
            .await?
            .map_err(DriverError::from)
    }

    /// The live registrations of agent `aor`, highest q first.
    pub async fn lookup(&self, aor: &str) -> Result<Vec<Binding>, DriverError> {
        self.call(|r| Command::Lookup(aor.to_string(), r)).await
    }

    /// What the endpoint dropped or answered on its own so far (forged responses included).
    pub async fn endpoint_stats(&self) -> Result<EndpointStats, DriverError> {
        self.call(Command::Stats).await
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, DriverError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| DriverError::Stopped)?;
        rx.await.map_err(|_| DriverError::Stopped)
    }
}

/// Binds the listeners, starts the driver task and returns at once. The task stops when
/// `shutdown` completes (dropping every socket and connection).
pub async fn run(
    config: SipConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<SipServer, DriverError> {
    let (in_tx, in_rx) = mpsc::channel(4096);
    let trunks = config
        .gate
        .as_ref()
        .map_or_else(Vec::new, |g| g.trunks.clone());
    let streams = Streams::new(config.streams, trunks, in_tx.clone());
    let mut tasks = JoinSet::new();
    let mut local = BoundAddrs::default();
    let mut udp = HashMap::new();
    let mut locals = Vec::new();

    for &addr in &config.udp {
        let sock = UdpSocket::bind(addr)
            .await
            .map_err(|source| DriverError::Bind {
                transport: Transport::Udp,
                addr,
                source,
            })?;
        let bound = sock.local_addr().map_err(|source| DriverError::Bind {
            transport: Transport::Udp,
            addr,
            source,
        })?;
        // Bursts of new calls wait here while the runtime is busy with media: the default
        // (~208 KiB, about 150 INVITEs) overflows within a few ms at 1,500 calls/s. The kernel
        // caps the size at `net.core.rmem_max`; failing to set it is not fatal.
        if let Err(e) =
            nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::RcvBuf, &UDP_RECV_BUFFER)
        {
            tracing::debug!(%bound, error = %e, "cannot size the SIP socket's receive buffer");
        }
        let sock = Arc::new(sock);
        tasks.spawn(transport::udp_reader(sock.clone(), bound, in_tx.clone()));
        udp.insert(bound, sock);
        local.udp.push(bound);
        locals.push((Transport::Udp, bound));
    }
    for &addr in &config.tcp {
        let listener = bind_tcp(addr, &local.udp).await?;
        let bound = listener.local_addr().map_err(|source| DriverError::Bind {
            transport: Transport::Tcp,
            addr,
            source,
        })?;
        tasks.spawn(transport::accept_loop(listener, None, streams.clone()));
        local.tcp.push(bound);
        locals.push((Transport::Tcp, bound));
    }
    if !config.tls.is_empty() {
        let files = config
            .tls_files
            .as_ref()
            .ok_or(DriverError::TlsWithoutFiles)?;
        let acceptor = tls::acceptor(files)?;
        for &addr in &config.tls {
            let listener = bind_tcp(addr, &[]).await?;
            let bound = listener.local_addr().map_err(|source| DriverError::Bind {
                transport: Transport::Tls,
                addr,
                source,
            })?;
            tasks.spawn(transport::accept_loop(
                listener,
                Some(acceptor.clone()),
                streams.clone(),
            ));
            local.tls.push(bound);
            locals.push((Transport::Tls, bound));
        }
    }

    let now = tokio::time::Instant::now().into_std();
    let mut endpoint = Endpoint::new(EndpointConfig {
        timers: config.timers,
        policy: POLICY,
        answer_options: true,
        // Per process from the OS-seeded CSPRNG: branches, tags and Call-IDs nobody can predict.
        key: RandomKey::from_bytes(rand::random::<[u8; 32]>()),
    });
    for (transport, addr) in locals {
        endpoint.add_local(Local {
            transport,
            addr,
            advertise: config.advertise.clone(),
        });
    }
    let mut digest = DigestConfig::new(config.realm.clone());
    digest.algorithms = config.digest_algorithms.clone();
    let tu = Tu::new(
        TuConfig {
            digest,
            limits: config.auth_limits,
            registrar: config.registrar,
            credentials: config.credentials.clone(),
        },
        rand::random::<[u8; 32]>(),
        now,
    );
    let (cmd_tx, cmd_rx) = mpsc::channel(1024);
    let (reply_tx, reply_rx) = mpsc::unbounded_channel();
    let (queues, events) = EventQueues::new();
    let driver = Driver {
        endpoint,
        tu,
        udp,
        conns: HashMap::new(),
        by_remote: HashMap::new(),
        pending: HashMap::new(),
        streams,
        tasks,
        events: queues,
        forward: config.forward_requests,
        gate: config.gate.clone(),
        // The HTTP side's per-client buckets: same keying (IPv4 address, IPv6 /64), bounded and
        // fair under floods of many addresses.
        rate: crate::http::rate_limit::RateLimiter::new(crate::http::rate_limit::RateLimit {
            burst: config.message_rate.burst,
            per_second: f64::from(config.message_rate.per_second),
            max_clients: config.message_rate.max_sources,
        }),
    };
    let task = tokio::spawn(driver.run(in_rx, cmd_rx, reply_rx, shutdown));
    tracing::info!(?local, "SIP listening");
    Ok(SipServer {
        local,
        handle: SipHandle {
            tx: cmd_tx,
            replies: reply_tx,
            resolver: Arc::default(),
        },
        events,
        task,
    })
}

/// Binds TCP; port 0 first tries the port a UDP socket on the same IP got.
async fn bind_tcp(addr: SocketAddr, udp: &[SocketAddr]) -> Result<TcpListener, DriverError> {
    if addr.port() == 0 {
        if let Some(u) = udp.iter().find(|u| u.ip() == addr.ip()) {
            if let Ok(l) = TcpListener::bind(*u).await {
                return Ok(l);
            }
        }
    }
    TcpListener::bind(addr)
        .await
        .map_err(|source| DriverError::Bind {
            transport: Transport::Tcp,
            addr,
            source,
        })
}

struct Conn {
    tx: mpsc::Sender<Bytes>,
    key: (Transport, SocketAddr),
}

struct Driver {
    endpoint: Endpoint,
    tu: Tu,
    udp: HashMap<SocketAddr, Arc<UdpSocket>>,
    conns: HashMap<ConnId, Conn>,
    by_remote: HashMap<(Transport, SocketAddr), ConnId>,
    /// Messages waiting for an outgoing TCP connection to open.
    pending: HashMap<SocketAddr, Vec<Bytes>>,
    streams: Streams,
    tasks: JoinSet<()>,
    events: EventQueues,
    forward: bool,
    gate: Option<TrunkGate>,
    rate: crate::http::rate_limit::RateLimiter,
}

impl Driver {
    async fn run(
        mut self,
        mut input: mpsc::Receiver<NetInput>,
        mut commands: mpsc::Receiver<Command>,
        mut replies: mpsc::UnboundedReceiver<Reply>,
        shutdown: impl Future<Output = ()> + Send,
    ) {
        tokio::pin!(shutdown);
        loop {
            let deadline = [self.endpoint.poll_timeout(), self.tu.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut shutdown => break,
                Some(inp) = input.recv() => {
                    let now = tokio::time::Instant::now().into_std();
                    self.on_input(now, inp);
                }
                Some(cmd) = commands.recv() => {
                    let now = tokio::time::Instant::now().into_std();
                    self.on_command(now, cmd);
                }
                Some(Reply(id, response)) = replies.recv() => {
                    let now = tokio::time::Instant::now().into_std();
                    if let Err(e) = self.endpoint.respond(now, id, *response) {
                        tracing::debug!(error = %e, "reply to a transaction that is gone");
                    }
                }
                _ = sleep => {
                    let now = tokio::time::Instant::now().into_std();
                    self.endpoint.handle_timeout(now);
                    self.tu.handle_timeout(now);
                }
                Some(_) = self.tasks.join_next(), if !self.tasks.is_empty() => {}
            }
            let now = tokio::time::Instant::now().into_std();
            self.pump(now);
        }
        tracing::info!("SIP driver stopped");
    }

    fn on_input(&mut self, now: Instant, inp: NetInput) {
        match inp {
            NetInput::Packet {
                transport,
                local,
                remote,
                bytes,
                framing_error,
                ..
            } => {
                if self.over_rate(now, remote) {
                    return;
                }
                if bytes.starts_with(b"REGISTER ") && self.tu.is_blocked(remote, now) {
                    return;
                }
                if self.turned_away(now, transport, local, remote, &bytes) {
                    return;
                }
                let foreign = self.endpoint.stats().foreign_responses;
                if transport.is_reliable() && !framing_error {
                    self.endpoint
                        .handle_stream_message(now, transport, local, remote, bytes);
                } else {
                    // UDP rules: a framing error is answered like a bad datagram.
                    self.endpoint
                        .handle_datagram(now, transport, local, remote, bytes);
                }
                let foreign_now = self.endpoint.stats().foreign_responses;
                if foreign_now > foreign {
                    crate::metrics::global()
                        .sip_foreign_responses
                        .inc_by(foreign_now - foreign);
                    tracing::warn!(%remote, %transport, "dropped a response from where its request did not go (forged or misrouted)");
                }
            }
            NetInput::KeepAlive { conn } => {
                if let Some(c) = self.conns.get(&conn) {
                    let _ = c.tx.try_send(Bytes::from_static(b"\r\n"));
                }
            }
            NetInput::Opened {
                conn,
                transport,
                remote,
                tx,
                ..
            } => {
                if let Some(queued) = self.pending.remove(&remote) {
                    for b in queued {
                        let _ = tx.try_send(b);
                    }
                }
                let key = (transport, remote);
                self.by_remote.insert(key, conn);
                self.conns.insert(conn, Conn { tx, key });
            }
            NetInput::ConnectFailed { remote } => {
                self.pending.remove(&remote);
                self.endpoint
                    .handle_transport_error(now, Transport::Tcp, remote);
            }
            NetInput::Closed { conn } => {
                if let Some(c) = self.conns.remove(&conn) {
                    if self.by_remote.get(&c.key) == Some(&conn) {
                        self.by_remote.remove(&c.key);
                    }
                }
            }
        }
    }

    fn on_command(&mut self, now: Instant, cmd: Command) {
        match cmd {
            Command::Respond(id, resp, reply) => {
                let _ = reply.send(self.endpoint.respond(now, id, *resp));
            }
            Command::SendRequest(req, target, reply) => {
                let _ = reply.send(self.endpoint.send_request(now, *req, target));
            }
            Command::SendAck(ack, target, reply) => {
                let _ = reply.send(self.endpoint.send_ack(now, *ack, target));
            }
            Command::Cancel(id, reply) => {
                let _ = reply.send(self.endpoint.cancel(now, id));
            }
            Command::Lookup(aor, reply) => {
                let _ = reply.send(self.tu.lookup(&aor, now));
            }
            Command::Stats(reply) => {
                let _ = reply.send(self.endpoint.stats());
            }
        }
    }

    /// Drains transmits and events until both are empty.
    fn pump(&mut self, now: Instant) {
        loop {
            while let Some(t) = self.endpoint.poll_transmit() {
                self.transmit(now, t);
            }
            let Some(ev) = self.endpoint.poll_event() else {
                break;
            };
            self.on_event(now, ev);
        }
        while let Some(ev) = self.tu.poll_event() {
            let _ = self.events.existing.send(SipEvent::Registration(ev));
        }
    }

    fn on_event(&mut self, now: Instant, ev: Event) {
        let Event::Request {
            id,
            request,
            source,
        } = ev
        else {
            self.emit(now, ev);
            return;
        };
        match self
            .tu
            .handle_request(now, &request, source.remote, source.transport)
        {
            TuOutcome::Respond(resp) => {
                if let Err(e) = self.endpoint.respond(now, id, *resp) {
                    tracing::warn!(error = %e, "could not send TU response");
                }
            }
            TuOutcome::Forward => {
                if self.forward && !self.events.is_closed() {
                    self.emit(
                        now,
                        Event::Request {
                            id,
                            request,
                            source,
                        },
                    );
                } else {
                    let (code, allow) = fallback(&request.method);
                    let mut resp = build::reply(&request, code, rand::random(), crate::PRODUCT);
                    if allow {
                        resp.headers.push(HeaderName::Allow, allow_value());
                    }
                    let _ = self.endpoint.respond(now, id, resp);
                }
            }
        }
    }

    /// Hands `ev` to the application, in the queue its kind belongs in ([`SipEvents`]); a request
    /// that finds its queue full is answered `503` with Retry-After, an ACK is dropped. Counted.
    fn emit(&mut self, now: Instant, ev: Event) {
        if !self.forward {
            return;
        }
        let (queue, label) = match &ev {
            Event::Request { request, .. } if has_to_tag(request) => {
                (&self.events.in_dialog, "in_dialog")
            }
            Event::Request { .. } => (&self.events.fresh, "new"),
            Event::Ack { .. } => (&self.events.in_dialog, "in_dialog"),
            _ => {
                let _ = self.events.existing.send(SipEvent::Endpoint(ev));
                return;
            }
        };
        let Err(mpsc::error::TrySendError::Full(SipEvent::Endpoint(ev))) =
            queue.try_send(SipEvent::Endpoint(ev))
        else {
            return;
        };
        crate::metrics::global().sip_event_shed(label);
        if let Event::Request { id, request, .. } = ev {
            tracing::warn!(queue = label, method = %request.method, "application event queue full; answering 503");
            let mut resp = build::reply(&request, 503, rand::random(), crate::PRODUCT);
            resp.headers.push(HeaderName::RetryAfter, "1".to_string());
            if let Err(e) = self.endpoint.respond(now, id, resp) {
                tracing::debug!(error = %e, "could not answer 503");
            }
        } else {
            tracing::warn!(queue = label, "application event queue full; ACK dropped");
        }
    }

    /// Whether a message from `remote`, outside the trunks, exceeds its address's rate: then it is
    /// dropped unparsed and counted. Trunks, and every source when no gate is set, pass.
    fn over_rate(&mut self, now: Instant, remote: SocketAddr) -> bool {
        let Some(gate) = &self.gate else {
            return false;
        };
        let now = tokio::time::Instant::from_std(now);
        if gate.admits(remote.ip()) || self.rate.check(remote.ip(), now).is_ok() {
            return false;
        }
        crate::metrics::global().sip_event_shed("source");
        tracing::debug!(%remote, "message over the per-address rate dropped");
        true
    }

    /// A request from outside the trunks that would start a dialog (no To tag), or an OPTIONS
    /// from an address without a live registration: dropped, or answered 403 statelessly, before
    /// the transaction layer sees it; counted. `true` when it was turned away.
    fn turned_away(
        &mut self,
        now: Instant,
        transport: Transport,
        local: SocketAddr,
        remote: SocketAddr,
        bytes: &Bytes,
    ) -> bool {
        let Some(gate) = &self.gate else {
            return false;
        };
        if gate.admits(remote.ip()) || !GATED_METHODS.iter().any(|m| bytes.starts_with(m)) {
            return false;
        }
        if bytes.starts_with(KEEPALIVE) && self.tu.has_registration_from(remote.ip(), now) {
            return false; // an agent phone's keep-alive
        }
        let Ok(request) = Request::parse(bytes.clone()) else {
            return false; // the endpoint answers or drops malformed input as always
        };
        if has_to_tag(&request) {
            return false; // in a dialog: an agent's phone, matched to its call (or 481)
        }
        let reject = gate.reject;
        let action = if reject { "rejected" } else { "dropped" };
        crate::metrics::global().unknown_source(request.method == Method::Invite, action);
        tracing::debug!(%remote, method = %request.method, reject, "request from outside the trunks turned away");
        if reject {
            let response = build::reply(&request, 403, rand::random(), crate::PRODUCT);
            self.transmit(
                now,
                Transmit {
                    transport,
                    from_local: local,
                    to: remote,
                    bytes: response.to_bytes(),
                },
            );
        }
        true
    }

    fn transmit(&mut self, now: Instant, t: Transmit) {
        match t.transport {
            Transport::Udp => {
                let sock = self.udp.get(&t.from_local).or_else(|| {
                    self.udp
                        .iter()
                        .find(|(a, _)| a.is_ipv4() == t.to.is_ipv4())
                        .map(|(_, s)| s)
                });
                let Some(sock) = sock else {
                    tracing::warn!(to = %t.to, "no UDP socket for this address family");
                    return;
                };
                if let Err(e) = sock.try_send_to(&t.bytes, t.to) {
                    tracing::debug!(to = %t.to, error = %e, "UDP send failed");
                }
            }
            transport => {
                let conn = self
                    .by_remote
                    .get(&(transport, t.to))
                    .and_then(|id| self.conns.get(id));
                match conn {
                    Some(c) => {
                        if c.tx.try_send(t.bytes).is_err() {
                            tracing::warn!(to = %t.to, "connection queue full or closed");
                            self.endpoint.handle_transport_error(now, transport, t.to);
                        }
                    }
                    None if transport == Transport::Tcp => {
                        if let Some(q) = self.pending.get_mut(&t.to) {
                            q.push(t.bytes);
                        } else {
                            self.pending.insert(t.to, Vec::new());
                            self.streams.connect(&mut self.tasks, t.to, t.bytes);
                        }
                    }
                    None => {
                        tracing::info!(to = %t.to, "no TLS connection to send on");
                        self.endpoint.handle_transport_error(now, transport, t.to);
                    }
                }
            }
        }
    }
}

/// The answer to a request nobody handles: 480 for INVITE, 481 for in-dialog methods, 405 (with
/// Allow) for methods we never serve out of dialog.
fn fallback(method: &Method) -> (u16, bool) {
    match method {
        Method::Invite => (480, false),
        Method::Bye
        | Method::Info
        | Method::Update
        | Method::Prack
        | Method::Notify
        | Method::Refer
        | Method::Options => (481, false),
        _ => (405, true),
    }
}

/// Whether `request` is inside a dialog (its To has a tag): the one test for the driver's queues
/// and gate and the call flow's routing.
pub(crate) fn has_to_tag(request: &Request) -> bool {
    request.headers.to().is_ok_and(|to| to.tag().is_some())
}

fn allow_value() -> String {
    POLICY
        .methods
        .iter()
        .map(|m| m.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
