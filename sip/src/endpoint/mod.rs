//! The sans-IO SIP endpoint: transport layer (RFC 3261 §18, RFC 3581) and transaction layer
//! (§17) in one object the tokio driver feeds.
//!
//! It validates every received message ([`crate::message::validate`]: stateless 400/505/416/501/
//! 420/415 answers, malformed responses dropped), stamps `received`/`rport` on the top Via of
//! requests (§18.2.1, RFC 3581), matches requests and responses to transactions (§17.1.3, §17.2.3
//! with the RFC 2543 fallback), absorbs retransmissions, creates server transactions for new
//! requests, answers CANCEL itself (§9.2: 200 to the CANCEL, 487 to the INVITE), and passes the
//! rest up to the transaction user (TU) as [`Event`]s.
//!
//! Responses go to the address the request came from (§18.2.2 as amended by RFC 3581: the
//! packet's source IP and port); requests go to the [`Target`] the TU names. The endpoint never
//! resolves or sends to a host named inside a message.
//!
//! Forgery: a response is believed only when it comes from the address (UDP) or connection
//! (TCP/TLS) its request went to; others are counted in [`EndpointStats::foreign_responses`] and
//! dropped. Branches, tags and Call-IDs are 128-bit outputs of a keyed PRF ([`crate::random`]) under
//! [`EndpointConfig::key`], so seeing some of them predicts none of the others.
//!
//! # Driving it
//!
//! ```text
//! loop {
//!     wait for a datagram / stream frame, or until poll_timeout()
//!     handle_datagram(now, ..) / handle_stream_message(now, ..) / handle_timeout(now)
//!     while let Some(t) = poll_transmit() { send t.bytes from t.from_local to t.to over t.transport }
//!     while let Some(e) = poll_event()    { TU reacts: respond(), send_request(), cancel(), send_ack() }
//!     (drain poll_transmit() again after TU calls)
//! }
//! ```
//!
//! Polling order after any input or TU call: drain `poll_transmit()`, then drain `poll_event()`,
//! then read `poll_timeout()`.
//!
//! Files: this one holds the types and the public API; `inbound.rs` receives (validation,
//! matching, CANCEL, OPTIONS), `outbound.rs` sends (client transactions, CANCEL, ACK for non-2xx),
//! `timers.rs` indexes the transactions' deadlines so `poll_timeout` and `handle_timeout` cost
//! O(log n) per due timer instead of a scan of every live transaction.

mod inbound;
mod outbound;
mod timers;

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use bytes::Bytes;

use crate::message::validate::Policy;
use crate::message::{
    CSeq, HeaderName, Method, Request, Response, StatusCode, TransactionKey, Uri, Via, MAGIC_COOKIE,
};
use crate::random::{Prf, RandomKey};
use crate::transaction::{
    ClientInvite, ClientNonInvite, Delivery, ServerInvite, ServerNonInvite, TimerConfig,
    Transaction, TransactionError, Transport, TxEvent,
};
use timers::TimerIndex;

/// Identifies a server transaction (a request we received).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerTxId(u64);

/// Identifies a client transaction (a request we sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientTxId(u64);

/// Either kind of transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxId {
    Server(ServerTxId),
    Client(ClientTxId),
}

/// Where to send a request: transport and a socket address the TU chose (never one read from a
/// message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Target {
    pub transport: Transport,
    pub addr: SocketAddr,
}

/// Where a message came from: transport, our local socket, the peer's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source {
    pub transport: Transport,
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

/// A message to put on the wire. For TCP/TLS the driver uses (or opens) the connection between
/// `from_local` and `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub transport: Transport,
    pub from_local: SocketAddr,
    pub to: SocketAddr,
    pub bytes: Bytes,
}

/// A local listening address, and the host to write into Via sent-by for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Local {
    pub transport: Transport,
    pub addr: SocketAddr,
    /// Host (name or IP) for Via/Contact; `None` writes `addr`'s IP (so give a concrete address,
    /// not `0.0.0.0`, or set this).
    pub advertise: Option<String>,
}

/// What the endpoint tells the TU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new request; answer it with [`Endpoint::respond`]. The top Via carries `received`/`rport`.
    Request {
        id: ServerTxId,
        request: Request,
        source: Source,
    },
    /// An ACK outside any transaction: the ACK for a 2xx (§13.3.1.4, RFC 6026), for the dialog.
    Ack { request: Request, source: Source },
    /// The INVITE of server transaction `id` was cancelled; the endpoint already answered the CANCEL
    /// with 200 and the INVITE with 487 (§9.2).
    Cancelled { id: ServerTxId, cancel: Request },
    /// A response to request `id`: provisional, final, or (INVITE only) a retransmitted 2xx the
    /// dialog must ACK again.
    Response { id: ClientTxId, response: Response },
    /// Transaction `id` timed out: Timer B/F (no final response) or H (no ACK for our non-2xx).
    Timeout { id: TxId },
    /// The transport could not deliver for transaction `id`.
    TransportError { id: TxId },
}

/// Endpoint settings.
///
/// There is deliberately no `Default`: the [`RandomKey`] that makes branches, tags and Call-IDs
/// unpredictable must be drawn by the driver, so no endpoint can run on a constant key by accident.
///
/// ```compile_fail
/// let config = sip::endpoint::EndpointConfig::default(); // no constant key to fall back on
/// ```
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    pub timers: TimerConfig,
    /// What [`validate::check`](crate::message::validate::check) accepts; also the
    /// Allow/Accept/Supported of automatic OPTIONS answers.
    pub policy: Policy<'static>,
    /// Answer out-of-dialog OPTIONS with 200 ourselves instead of passing them to the TU.
    pub answer_options: bool,
    /// Keys branch, tag and Call-ID generation ([`crate::random`]). Draw it from the OS once per
    /// process (the driver does); tests may pass fixed bytes to get the same identifiers each run.
    pub key: RandomKey,
}

impl EndpointConfig {
    /// RFC 3261 timer defaults, [`Policy::DEFAULT`], OPTIONS passed to the TU, and `key`.
    pub fn new(key: RandomKey) -> Self {
        EndpointConfig {
            timers: TimerConfig::default(),
            policy: Policy::DEFAULT,
            answer_options: false,
            key,
        }
    }
}

/// Counters of what the endpoint discarded or answered on its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointStats {
    /// Requests answered statelessly by validation (400, 505, 416, 501, 420, 415, 406).
    pub rejected: u64,
    /// Messages dropped by validation (unanswerable requests, malformed responses, bad ACKs).
    pub dropped: u64,
    /// Responses that matched no client transaction.
    pub stray_responses: u64,
    /// Request retransmissions absorbed by a server transaction.
    pub absorbed_requests: u64,
    /// Responses that matched a client transaction but came from another address (UDP) or
    /// connection (TCP/TLS) than the one its request went to: forged or misrouted, dropped.
    pub foreign_responses: u64,
}

/// A TU call the endpoint could not carry out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("no such transaction (it may have terminated)")]
    UnknownTransaction,
    #[error("no local address for {0} towards {1}")]
    NoLocal(Transport, SocketAddr),
    #[error("use send_ack for ACK and cancel for CANCEL")]
    WrongMethod,
    #[error("only an INVITE client transaction can be cancelled")]
    NotInvite,
    #[error("request has no valid {0} header")]
    BadRequest(HeaderName),
    #[error(transparent)]
    Transaction(#[from] TransactionError),
}

/// The SIP endpoint. See the module docs for the driving loop and polling order.
#[derive(Debug)]
pub struct Endpoint {
    config: EndpointConfig,
    locals: Vec<Local>,
    next_id: u64,
    /// Branches, tags and Call-IDs ([`crate::random`]).
    ids: Prf,
    server: HashMap<ServerTxId, ServerEntry>,
    server_keys: HashMap<TransactionKey, ServerTxId>,
    client: HashMap<ClientTxId, ClientEntry>,
    client_keys: HashMap<(String, Method), ClientTxId>,
    /// Out-of-dialog requests by (From tag, Call-ID, CSeq) to detect merged requests (§8.2.2.2).
    merge_keys: HashMap<MergeKey, ServerTxId>,
    /// Every live transaction's next deadline; updated wherever a machine gets an input (the
    /// `flush_*` calls that follow every input) or ends.
    timers: TimerIndex,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: EndpointStats,
}

type MergeKey = (String, String, u32, Method);

#[derive(Debug)]
struct ServerEntry {
    key: TransactionKey,
    merge_key: Option<MergeKey>,
    request: Request,
    source: Source,
    /// The To tag of our responses, so a 487 after CANCEL carries the same tag.
    to_tag: Option<String>,
    machine: ServerMachine,
}

/// A transaction of either kind: `I` is the INVITE machine, `N` the non-INVITE one.
#[derive(Debug)]
enum Machine<I, N> {
    Invite(I),
    NonInvite(N),
}

type ServerMachine = Machine<ServerInvite, ServerNonInvite>;
type ClientMachine = Machine<ClientInvite, ClientNonInvite>;

#[derive(Debug)]
struct ClientEntry {
    key: (String, Method),
    request: Request,
    target: Target,
    local: SocketAddr,
    machine: ClientMachine,
    cancel: CancelState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CancelState {
    None,
    /// The TU asked to cancel before any provisional response; send on the first one (§9.1).
    Pending,
    Sent,
}

impl Endpoint {
    pub fn new(config: EndpointConfig) -> Self {
        Endpoint {
            ids: Prf::new(&config.key, b"sip endpoint identifiers"),
            config,
            locals: Vec::new(),
            next_id: 1,
            server: HashMap::new(),
            server_keys: HashMap::new(),
            client: HashMap::new(),
            client_keys: HashMap::new(),
            merge_keys: HashMap::new(),
            timers: TimerIndex::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: EndpointStats::default(),
        }
    }

    /// Registers a local listening address; requests to a [`Target`] are sent from the first local
    /// address with the same transport and IP family.
    pub fn add_local(&mut self, local: Local) {
        self.locals.push(local);
    }

    pub fn config(&self) -> &EndpointConfig {
        &self.config
    }

    pub fn stats(&self) -> EndpointStats {
        self.stats
    }

    /// Number of live transactions (server, client).
    pub fn transaction_count(&self) -> (usize, usize) {
        (self.server.len(), self.client.len())
    }

    // ---- inputs from the network -------------------------------------------------------------

    /// A UDP datagram arrived on `local` from `remote`.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        transport: Transport,
        local: SocketAddr,
        remote: SocketAddr,
        bytes: Bytes,
    ) {
        let source = Source {
            transport,
            local,
            remote,
        };
        self.handle_inbound(now, source, bytes);
    }

    /// One complete message framed by [`crate::message::StreamFramer`] arrived on a TCP/TLS
    /// connection between `local` and `remote`.
    pub fn handle_stream_message(
        &mut self,
        now: Instant,
        transport: Transport,
        local: SocketAddr,
        remote: SocketAddr,
        bytes: Bytes,
    ) {
        // Framing already happened; from here a stream message is handled like a datagram.
        self.handle_datagram(now, transport, local, remote, bytes);
    }

    /// The transport failed towards `remote` (TCP connect refused, connection reset, ICMP
    /// unreachable): every transaction with that peer ends with [`Event::TransportError`]
    /// (§17.1.4, §17.2.4).
    pub fn handle_transport_error(
        &mut self,
        now: Instant,
        transport: Transport,
        remote: SocketAddr,
    ) {
        let servers =
            self.server_ids(|e| e.source.transport == transport && e.source.remote == remote);
        for id in servers {
            self.with_server(id, |m| m.handle_transport_error(now));
        }
        let clients =
            self.client_ids(|e| e.target.transport == transport && e.target.addr == remote);
        for id in clients {
            self.with_client(id, |m| m.handle_transport_error(now));
        }
    }

    /// Fires every transaction timer due at `now` (server transactions first, then client ones).
    /// A timer a firing re-arms at or before `now` fires on the next call, not in this one.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due = self.timers.take_due(now);
        for id in &due {
            if let TxId::Server(id) = *id {
                self.with_server(id, |m| m.handle_timeout(now));
            }
        }
        for id in due {
            if let TxId::Client(id) = id {
                self.with_client(id, |m| m.handle_timeout(now));
            }
        }
    }

    // ---- the four verbs' outputs -------------------------------------------------------------

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The earliest transaction deadline. O(1): read from the timer index, not the transactions.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let earliest = self.timers.earliest();
        // Every sip unit test (the lossy-network ones included) checks the index against a scan.
        #[cfg(test)]
        assert_eq!(
            earliest,
            self.poll_timeout_by_scan(),
            "timer index out of date"
        );
        earliest
    }

    /// The earliest transaction deadline found by visiting every live transaction: what
    /// [`poll_timeout`](Self::poll_timeout) did before the timer index, O(n). Kept as the reference
    /// the unit tests and the `sip_endpoint_timers` bench compare against; not for drivers.
    #[doc(hidden)]
    pub fn poll_timeout_by_scan(&self) -> Option<Instant> {
        let servers = self.server.values().map(|e| e.machine.tx());
        let clients = self.client.values().map(|e| e.machine.tx());
        servers
            .chain(clients)
            .filter_map(|tx| tx.poll_timeout())
            .min()
    }

    // ---- TU actions --------------------------------------------------------------------------

    /// Sends `response` on server transaction `id` (to the request's source address). A 2xx to an
    /// INVITE may be sent again (the UAS core's retransmissions) while the transaction is Accepted.
    pub fn respond(
        &mut self,
        now: Instant,
        id: ServerTxId,
        response: Response,
    ) -> Result<(), EndpointError> {
        let entry = self
            .server
            .get_mut(&id)
            .ok_or(EndpointError::UnknownTransaction)?;
        let status = response.status.as_u16();
        if status > 100 {
            if let Some(tag) = response
                .headers
                .to()
                .ok()
                .and_then(|t| t.tag().map(str::to_owned))
            {
                entry.to_tag.get_or_insert(tag);
            }
        }
        let bytes = response.to_bytes();
        let sent = match &mut entry.machine {
            ServerMachine::Invite(m) => m.send_response(now, status, bytes),
            ServerMachine::NonInvite(m) => m.send_response(now, status, bytes),
        };
        if let Err(e) = sent {
            // A refused response changes no timer today; re-reading the deadline keeps the index
            // right even if a machine ever does.
            self.schedule_server(id);
            return Err(e.into());
        }
        self.flush_server(id);
        Ok(())
    }

    /// Sends `request` to `target` in a new client transaction. The endpoint adds the top Via
    /// (fresh branch, `rport`) and Max-Forwards: 70 if missing; everything else (From/To/Call-ID/
    /// CSeq/Contact/body) is the TU's.
    pub fn send_request(
        &mut self,
        now: Instant,
        mut request: Request,
        target: Target,
    ) -> Result<ClientTxId, EndpointError> {
        if matches!(request.method, Method::Ack | Method::Cancel) {
            return Err(EndpointError::WrongMethod);
        }
        let (local, branch) = self.add_top_via(&mut request, target)?;
        Ok(self.start_client(now, request, target, local, branch))
    }

    /// Sends the ACK for a 2xx (§13.2.2.4): outside any transaction, with a fresh branch. The dialog
    /// builds it; call again for every retransmitted 2xx.
    pub fn send_ack(
        &mut self,
        _now: Instant,
        mut ack: Request,
        target: Target,
    ) -> Result<(), EndpointError> {
        if ack.method != Method::Ack {
            return Err(EndpointError::WrongMethod);
        }
        let (local, _) = self.add_top_via(&mut ack, target)?;
        self.transmits.push_back(Transmit {
            transport: target.transport,
            from_local: local,
            to: target.addr,
            bytes: ack.to_bytes(),
        });
        Ok(())
    }

    /// Cancels INVITE client transaction `id` (§9.1). Before any provisional response the CANCEL
    /// waits for one; after a final response this does nothing. The CANCEL's own response arrives as
    /// an [`Event::Response`] with a new id; the INVITE's 487 arrives on `id`.
    pub fn cancel(&mut self, now: Instant, id: ClientTxId) -> Result<(), EndpointError> {
        let entry = self
            .client
            .get_mut(&id)
            .ok_or(EndpointError::UnknownTransaction)?;
        let ClientMachine::Invite(m) = &entry.machine else {
            return Err(EndpointError::NotInvite);
        };
        if entry.cancel != CancelState::None || m.final_status().is_some() {
            return Ok(());
        }
        if m.is_proceeding() {
            self.send_cancel(now, id);
        } else {
            entry.cancel = CancelState::Pending;
        }
        Ok(())
    }

    /// Our Contact URI for requests to (or dialogs with) `target`: `sip:user@host:port`, with
    /// `;transport=tcp|tls` for reliable transports, from the local address a request to `target`
    /// would leave from.
    pub fn contact_uri(&self, user: Option<&str>, target: Target) -> Result<Uri, EndpointError> {
        let local = self.pick_local(target)?;
        let host = local
            .advertise
            .clone()
            .unwrap_or_else(|| host_text(local.addr.ip()));
        let uri = Uri::sip(user, &host, Some(local.addr.port()))
            .map_err(|_| EndpointError::BadRequest(HeaderName::Contact))?;
        match local.transport {
            Transport::Udp => Ok(uri),
            Transport::Tcp => uri
                .with_param("transport", Some("tcp"))
                .map_err(|_| EndpointError::BadRequest(HeaderName::Contact)),
            Transport::Tls => uri
                .with_param("transport", Some("tls"))
                .map_err(|_| EndpointError::BadRequest(HeaderName::Contact)),
        }
    }

    /// A fresh tag for From/To (§19.3): 128 bits no earlier output predicts.
    pub fn new_tag(&mut self) -> String {
        self.ids.hex128()
    }

    /// A fresh Call-ID (§8.1.1.4) at `host`: 128 unpredictable bits.
    pub fn new_call_id(&mut self, host: &str) -> String {
        format!("{}@{host}", self.ids.hex128())
    }
}

impl<I: Transaction, N: Transaction> Machine<I, N> {
    fn tx(&self) -> &dyn Transaction {
        match self {
            Machine::Invite(m) => m,
            Machine::NonInvite(m) => m,
        }
    }

    fn tx_mut(&mut self) -> &mut dyn Transaction {
        match self {
            Machine::Invite(m) => m,
            Machine::NonInvite(m) => m,
        }
    }
}

/// An IP as URI host text (IPv6 in brackets).
pub fn host_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

#[cfg(test)]
mod testutil {
    use super::*;

    pub(super) const LOCAL: &str = "127.0.0.1:5060";
    pub(super) const PEER: &str = "127.0.0.1:40000";

    pub(super) fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    pub(super) fn endpoint() -> Endpoint {
        let mut ep = Endpoint::new(EndpointConfig::new(RandomKey::from_bytes([7; 32])));
        ep.add_local(Local {
            transport: Transport::Udp,
            addr: addr(LOCAL),
            advertise: None,
        });
        ep
    }

    pub(super) fn msg(
        method: &str,
        branch: &str,
        to_tag: &str,
        cseq: &str,
        via_host: &str,
    ) -> Bytes {
        let to_tag = if to_tag.is_empty() {
            String::new()
        } else {
            format!(";tag={to_tag}")
        };
        Bytes::from(format!(
            "{method} sip:uas@127.0.0.1 SIP/2.0\r\n\
             Via: SIP/2.0/UDP {via_host};branch={branch}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:uac@127.0.0.1>;tag=f1\r\n\
             To: <sip:uas@127.0.0.1>{to_tag}\r\n\
             Call-ID: ep-1\r\n\
             CSeq: {cseq}\r\n\
             Contact: <sip:uac@127.0.0.1:40000>\r\n\
             Content-Length: 0\r\n\r\n"
        ))
    }

    pub(super) fn feed(ep: &mut Endpoint, now: Instant, bytes: Bytes) {
        ep.handle_datagram(now, Transport::Udp, addr(LOCAL), addr(PEER), bytes);
    }

    /// Feeds `method` as sent from [`PEER`] (Via sent-by is its address).
    pub(super) fn feed_from_peer(
        ep: &mut Endpoint,
        now: Instant,
        method: &str,
        branch: &str,
        to_tag: &str,
        cseq: &str,
    ) {
        feed(ep, now, msg(method, branch, to_tag, cseq, PEER));
    }

    /// Feeds an INVITE from [`PEER`] and answers it with `status` and To tag `tag`; returns the
    /// server transaction and the request, with all output drained.
    pub(super) fn answered_invite(
        ep: &mut Endpoint,
        now: Instant,
        branch: &str,
        status: StatusCode,
        tag: &str,
    ) -> (ServerTxId, Request) {
        feed_from_peer(ep, now, "INVITE", branch, "", "1 INVITE");
        transmits(ep);
        let (id, req) = request_event(ep);
        let response = Response::for_request(&req, status, None).with_to_tag(tag);
        ep.respond(now, id, response).unwrap();
        transmits(ep);
        (id, req)
    }

    pub(super) fn transmits(ep: &mut Endpoint) -> Vec<String> {
        std::iter::from_fn(|| ep.poll_transmit())
            .map(|t| {
                assert_eq!(t.to, addr(PEER));
                String::from_utf8_lossy(&t.bytes).into_owned()
            })
            .collect()
    }

    /// An OPTIONS request (no Via yet) and the UDP target [`PEER`].
    pub(super) fn options_to_peer() -> (Request, Target) {
        let mut req = Request::new(Method::Options, "sip:x@127.0.0.1".parse().unwrap());
        req.headers.push(HeaderName::CSeq, "1 OPTIONS");
        let target = Target {
            transport: Transport::Udp,
            addr: addr(PEER),
        };
        (req, target)
    }

    pub(super) fn request_event(ep: &mut Endpoint) -> (ServerTxId, Request) {
        match ep.poll_event() {
            Some(Event::Request { id, request, .. }) => (id, request),
            other => panic!("expected a request, got {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;

    #[test]
    fn send_request_adds_via_with_rport_and_max_forwards() {
        let now = Instant::now();
        let mut ep = endpoint();
        let (req, target) = options_to_peer();
        ep.send_request(now, req.clone(), target).unwrap();
        let sent = transmits(&mut ep);
        assert!(
            sent[0].contains("Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK"),
            "{}",
            sent[0]
        );
        assert!(sent[0].contains(";rport") && sent[0].contains("Max-Forwards: 70"));
        let v6 = Target {
            transport: Transport::Udp,
            addr: addr("[::1]:5060"),
        };
        assert_eq!(
            ep.send_request(now, req.clone(), v6),
            Err(EndpointError::NoLocal(Transport::Udp, addr("[::1]:5060")))
        );
        let ack = Request::new(Method::Ack, "sip:x@127.0.0.1".parse().unwrap());
        assert_eq!(
            ep.send_request(now, ack, target),
            Err(EndpointError::WrongMethod)
        );
    }

    #[test]
    fn transport_error_ends_the_peer_s_transactions() {
        let now = Instant::now();
        let mut ep = endpoint();
        let (req, target) = options_to_peer();
        let id = ep.send_request(now, req, target).unwrap();
        transmits(&mut ep);
        ep.handle_transport_error(now, Transport::Udp, addr(PEER));
        assert_eq!(
            ep.poll_event(),
            Some(Event::TransportError {
                id: TxId::Client(id)
            })
        );
        assert_eq!(ep.transaction_count(), (0, 0));
    }

    #[test]
    fn contact_uri_follows_the_local_address_and_transport() {
        let mut ep = endpoint();
        ep.add_local(Local {
            transport: Transport::Tcp,
            addr: addr("[::1]:5070"),
            advertise: None,
        });
        let udp = Target {
            transport: Transport::Udp,
            addr: addr(PEER),
        };
        let tcp6 = Target {
            transport: Transport::Tcp,
            addr: addr("[::1]:40000"),
        };
        assert_eq!(
            ep.contact_uri(Some("vb"), udp).unwrap().as_str(),
            "sip:vb@127.0.0.1:5060"
        );
        assert_eq!(
            ep.contact_uri(None, tcp6).unwrap().as_str(),
            "sip:[::1]:5070;transport=tcp"
        );
    }

    #[test]
    fn tags_and_branches_are_unique() {
        let mut ep = endpoint();
        let tags: std::collections::HashSet<String> = (0..1000).map(|_| ep.new_tag()).collect();
        assert_eq!(tags.len(), 1000);
        let branch = ep.new_branch();
        assert!(branch.starts_with(MAGIC_COOKIE) && branch.len() == MAGIC_COOKIE.len() + 32);
        assert!(ep.new_call_id("example.com").ends_with("@example.com"));
    }

    fn keyed(byte: u8) -> Endpoint {
        Endpoint::new(EndpointConfig::new(RandomKey::from_bytes([byte; 32])))
    }

    /// 64 bits of an identifier's hex text.
    fn word(hex: &str, at: usize) -> u64 {
        u64::from_str_radix(&hex[at..at + 16], 16).unwrap()
    }

    #[test]
    fn identifiers_depend_on_the_key_and_repeat_only_under_the_same_key() {
        let draw = |ep: &mut Endpoint| {
            let mut ids = vec![ep.new_tag(), ep.new_branch(), ep.new_call_id("h")];
            ids.extend((0..20).map(|_| ep.new_tag()));
            ids
        };
        let (a, again, b) = (
            draw(&mut keyed(1)),
            draw(&mut keyed(1)),
            draw(&mut keyed(2)),
        );
        assert_eq!(
            a, again,
            "a fixed key in tests gives the same identifiers every run"
        );
        assert!(a.iter().all(|id| !b.contains(id)), "{a:?}\n{b:?}");
        // Not a shifted copy of one another either: no constant difference between the streams.
        let diffs: std::collections::HashSet<u64> = a[3..]
            .iter()
            .zip(&b[3..])
            .map(|(x, y)| word(x, 0).wrapping_sub(word(y, 0)))
            .collect();
        assert_eq!(diffs.len(), 20);
    }

    /// The attack the old generator allowed: splitmix64's output function is a bijection, so one
    /// observed tag gave its state and thereby every later branch. Against a keyed PRF the same
    /// inversion predicts nothing.
    #[test]
    fn an_observed_tag_does_not_predict_the_next_branch() {
        const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;
        fn mix(mut z: u64) -> u64 {
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn unmix(mut z: u64) -> u64 {
            z = z ^ (z >> 31) ^ (z >> 62);
            z = z.wrapping_mul(0x3196_42b2_d24d_8ec3);
            z = z ^ (z >> 27) ^ (z >> 54);
            z = z.wrapping_mul(0x96de_1b17_3f11_9089);
            z ^ (z >> 30) ^ (z >> 60)
        }
        // The inversion itself works (on a splitmix64 output it recovers the state)…
        let state = 0x5eed_u64.wrapping_add(GAMMA);
        assert_eq!(unmix(mix(state)), state);
        // …but applied to our identifiers it predicts neither the next 64 bits nor any later ones.
        let mut ep = endpoint();
        let tag = ep.new_tag();
        let later: Vec<u64> = (0..100)
            .map(|_| word(&ep.new_branch()[MAGIC_COOKIE.len()..], 0))
            .collect();
        for half in [0, 16] {
            let guessed = unmix(word(&tag, half));
            let predictions: Vec<u64> = (1..=200)
                .map(|k| mix(guessed.wrapping_add(GAMMA.wrapping_mul(k))))
                .collect();
            assert!(later.iter().all(|v| !predictions.contains(v)));
        }
    }
}
