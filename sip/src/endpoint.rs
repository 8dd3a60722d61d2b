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

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use bytes::Bytes;

use crate::message::validate::{self, Inbound, Policy};
use crate::message::{
    CSeq, HeaderName, Method, Request, Response, StatusCode, TransactionKey, Uri, Via, MAGIC_COOKIE,
};
use crate::transaction::{
    ClientInvite, ClientNonInvite, Delivery, ServerInvite, ServerNonInvite, TimerConfig,
    TransactionError, Transport, TxEvent,
};

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
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    pub timers: TimerConfig,
    /// What [`validate::check`] accepts; also the Allow/Accept/Supported of automatic OPTIONS answers.
    pub policy: Policy<'static>,
    /// Answer out-of-dialog OPTIONS with 200 ourselves instead of passing them to the TU.
    pub answer_options: bool,
    /// Seed for branch, tag and Call-ID generation; give each endpoint a random one.
    pub seed: u64,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            timers: TimerConfig::default(),
            policy: Policy::DEFAULT,
            answer_options: false,
            seed: 0x5eed,
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
    rng: u64,
    server: HashMap<ServerTxId, ServerEntry>,
    server_keys: HashMap<TransactionKey, ServerTxId>,
    client: HashMap<ClientTxId, ClientEntry>,
    client_keys: HashMap<(String, Method), ClientTxId>,
    /// Out-of-dialog requests by (From tag, Call-ID, CSeq) to detect merged requests (§8.2.2.2).
    merge_keys: HashMap<MergeKey, ServerTxId>,
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

#[derive(Debug)]
enum ServerMachine {
    Invite(ServerInvite),
    NonInvite(ServerNonInvite),
}

#[derive(Debug)]
struct ClientEntry {
    key: (String, Method),
    request: Request,
    target: Target,
    local: SocketAddr,
    machine: ClientMachine,
    cancel: CancelState,
}

#[derive(Debug)]
enum ClientMachine {
    Invite(ClientInvite),
    NonInvite(ClientNonInvite),
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
            rng: config.seed,
            config,
            locals: Vec::new(),
            next_id: 1,
            server: HashMap::new(),
            server_keys: HashMap::new(),
            client: HashMap::new(),
            client_keys: HashMap::new(),
            merge_keys: HashMap::new(),
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
        self.handle_inbound(
            now,
            Source {
                transport,
                local,
                remote,
            },
            bytes,
        );
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
        self.handle_inbound(
            now,
            Source {
                transport,
                local,
                remote,
            },
            bytes,
        );
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
        let servers: Vec<ServerTxId> = self
            .server
            .iter()
            .filter(|(_, e)| e.source.transport == transport && e.source.remote == remote)
            .map(|(id, _)| *id)
            .collect();
        for id in servers {
            if let Some(e) = self.server.get_mut(&id) {
                match &mut e.machine {
                    ServerMachine::Invite(m) => m.handle_transport_error(now),
                    ServerMachine::NonInvite(m) => m.handle_transport_error(now),
                }
            }
            self.flush_server(id);
        }
        let clients: Vec<ClientTxId> = self
            .client
            .iter()
            .filter(|(_, e)| e.target.transport == transport && e.target.addr == remote)
            .map(|(id, _)| *id)
            .collect();
        for id in clients {
            if let Some(e) = self.client.get_mut(&id) {
                match &mut e.machine {
                    ClientMachine::Invite(m) => m.handle_transport_error(now),
                    ClientMachine::NonInvite(m) => m.handle_transport_error(now),
                }
            }
            self.flush_client(id);
        }
    }

    /// Fires every transaction timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due_servers: Vec<ServerTxId> = self
            .server
            .iter()
            .filter(|(_, e)| e.machine.poll_timeout().is_some_and(|at| at <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in due_servers {
            if let Some(e) = self.server.get_mut(&id) {
                match &mut e.machine {
                    ServerMachine::Invite(m) => m.handle_timeout(now),
                    ServerMachine::NonInvite(m) => m.handle_timeout(now),
                }
            }
            self.flush_server(id);
        }
        let due_clients: Vec<ClientTxId> = self
            .client
            .iter()
            .filter(|(_, e)| e.machine.poll_timeout().is_some_and(|at| at <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in due_clients {
            if let Some(e) = self.client.get_mut(&id) {
                match &mut e.machine {
                    ClientMachine::Invite(m) => m.handle_timeout(now),
                    ClientMachine::NonInvite(m) => m.handle_timeout(now),
                }
            }
            self.flush_client(id);
        }
    }

    // ---- the four verbs' outputs -------------------------------------------------------------

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The earliest transaction deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let s = self
            .server
            .values()
            .filter_map(|e| e.machine.poll_timeout());
        let c = self
            .client
            .values()
            .filter_map(|e| e.machine.poll_timeout());
        s.chain(c).min()
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
        match &mut entry.machine {
            ServerMachine::Invite(m) => m.send_response(now, status, bytes)?,
            ServerMachine::NonInvite(m) => m.send_response(now, status, bytes)?,
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
        let local = self.pick_local(target)?;
        let branch = self.new_branch();
        let via = self.via_for(&local, &branch);
        request.headers.push_front(HeaderName::Via, via.to_string());
        if request.headers.get(&HeaderName::MaxForwards).is_none() {
            request.headers.push(HeaderName::MaxForwards, "70");
        }
        Ok(self.start_client(now, request, target, local.addr, branch))
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
        let local = self.pick_local(target)?;
        let branch = self.new_branch();
        let via = self.via_for(&local, &branch);
        ack.headers.push_front(HeaderName::Via, via.to_string());
        if ack.headers.get(&HeaderName::MaxForwards).is_none() {
            ack.headers.push(HeaderName::MaxForwards, "70");
        }
        self.transmits.push_back(Transmit {
            transport: target.transport,
            from_local: local.addr,
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

    /// A fresh tag for From/To (§19.3), unique per endpoint seed.
    pub fn new_tag(&mut self) -> String {
        format!("{:016x}", self.next_random())
    }

    /// A fresh Call-ID (§8.1.1.4) at `host`.
    pub fn new_call_id(&mut self, host: &str) -> String {
        format!(
            "{:016x}{:08x}@{host}",
            self.next_random(),
            self.next_random() as u32
        )
    }

    // ---- internals: receiving ----------------------------------------------------------------

    fn handle_inbound(&mut self, now: Instant, source: Source, bytes: Bytes) {
        match validate::check(bytes, &self.config.policy) {
            Inbound::Request(request) => self.handle_request(now, request, source),
            Inbound::Response(response) => self.handle_response(now, response, source),
            Inbound::Reject(response) => {
                self.stats.rejected += 1;
                self.transmits.push_back(Transmit {
                    transport: source.transport,
                    from_local: source.local,
                    to: source.remote,
                    bytes: response.to_bytes(),
                });
            }
            Inbound::Drop(_) => self.stats.dropped += 1,
        }
    }

    fn handle_request(&mut self, now: Instant, mut request: Request, source: Source) {
        stamp_received(&mut request, source.remote);
        let Ok(key) = TransactionKey::for_request(&request) else {
            self.stats.dropped += 1;
            return;
        };
        if request.method == Method::Ack {
            let delivery = match self.server_keys.get(&key).copied() {
                Some(id) => match self.server.get_mut(&id).map(|e| &mut e.machine) {
                    Some(ServerMachine::Invite(m)) => {
                        let d = m.handle_ack(now);
                        self.flush_server(id);
                        d
                    }
                    _ => Delivery::ToTu,
                },
                None => Delivery::ToTu,
            };
            if delivery == Delivery::ToTu {
                self.events.push_back(Event::Ack { request, source });
            }
            return;
        }
        if let Some(id) = self.server_keys.get(&key).copied() {
            self.stats.absorbed_requests += 1;
            if let Some(e) = self.server.get_mut(&id) {
                match &mut e.machine {
                    ServerMachine::Invite(m) => m.handle_request_retransmission(now),
                    ServerMachine::NonInvite(m) => m.handle_request_retransmission(now),
                }
            }
            self.flush_server(id);
            return;
        }
        let merge_key = merge_key(&request);
        if let Some(mk) = &merge_key {
            if self.merge_keys.contains_key(mk) {
                // §8.2.2.2: the same request reached us twice by different paths.
                let response = Response::for_request(&request, StatusCode::LOOP_DETECTED, None);
                self.stats.rejected += 1;
                self.transmits.push_back(Transmit {
                    transport: source.transport,
                    from_local: source.local,
                    to: source.remote,
                    bytes: response.to_bytes(),
                });
                return;
            }
        }
        let reliable = source.transport.is_reliable();
        let machine = if request.method == Method::Invite {
            ServerMachine::Invite(ServerInvite::new(self.config.timers, reliable))
        } else {
            ServerMachine::NonInvite(ServerNonInvite::new(self.config.timers, reliable))
        };
        let id = ServerTxId(self.next_id());
        self.server_keys.insert(key.clone(), id);
        if let Some(mk) = &merge_key {
            self.merge_keys.insert(mk.clone(), id);
        }
        self.server.insert(
            id,
            ServerEntry {
                key: key.clone(),
                merge_key,
                request: request.clone(),
                source,
                to_tag: None,
                machine,
            },
        );
        match request.method {
            Method::Invite => {
                // §17.2.1: we send 100 Trying at once rather than after 200 ms.
                let trying = Response::for_request(&request, StatusCode::TRYING, None);
                let _ = self.respond(now, id, trying);
                self.events.push_back(Event::Request {
                    id,
                    request,
                    source,
                });
            }
            Method::Cancel => self.handle_cancel(now, id, &key, request),
            Method::Options if self.config.answer_options && !has_to_tag(&request) => {
                let response = self.options_answer(&request);
                let _ = self.respond(now, id, response);
            }
            _ => self.events.push_back(Event::Request {
                id,
                request,
                source,
            }),
        }
    }

    /// §9.2: answer the CANCEL; if its INVITE is still unanswered, answer that with 487.
    fn handle_cancel(
        &mut self,
        now: Instant,
        cancel_id: ServerTxId,
        key: &TransactionKey,
        cancel: Request,
    ) {
        let invite_id = self
            .server_keys
            .get(&key.with_method(Method::Invite))
            .copied();
        let Some(invite_id) = invite_id else {
            let response =
                Response::for_request(&cancel, StatusCode::CALL_TRANSACTION_DOES_NOT_EXIST, None);
            let tag = self.new_tag();
            let _ = self.respond(now, cancel_id, response.with_to_tag(&tag));
            return;
        };
        let (pending, tag) = match self.server.get(&invite_id) {
            Some(e) => match &e.machine {
                ServerMachine::Invite(m) => (m.final_status().is_none(), e.to_tag.clone()),
                ServerMachine::NonInvite(_) => (false, e.to_tag.clone()),
            },
            None => (false, None),
        };
        let tag = tag.unwrap_or_else(|| self.new_tag());
        let ok = Response::for_request(&cancel, StatusCode::OK, None).with_to_tag(&tag);
        let _ = self.respond(now, cancel_id, ok);
        if pending {
            let terminated = self.server.get(&invite_id).map(|e| {
                Response::for_request(&e.request, StatusCode::REQUEST_TERMINATED, None)
                    .with_to_tag(&tag)
            });
            if let Some(response) = terminated {
                let _ = self.respond(now, invite_id, response);
            }
            self.events.push_back(Event::Cancelled {
                id: invite_id,
                cancel,
            });
        }
    }

    fn handle_response(&mut self, now: Instant, response: Response, _source: Source) {
        // §18.1.2: a response with more than one Via was not meant for us.
        let vias = response.headers.values(&HeaderName::Via).count();
        let key = response.headers.top_via().ok().and_then(|via| {
            let cseq = response.headers.cseq().ok()?;
            Some((via.branch()?.to_owned(), cseq.method))
        });
        let Some(id) = key
            .filter(|_| vias == 1)
            .and_then(|k| self.client_keys.get(&k).copied())
        else {
            self.stats.stray_responses += 1;
            return;
        };
        let status = response.status.as_u16();
        let Some(entry) = self.client.get_mut(&id) else {
            return;
        };
        let delivery = match &mut entry.machine {
            ClientMachine::Invite(m) => {
                let request = &entry.request;
                m.handle_response(now, status, || build_non_2xx_ack(request, &response))
            }
            ClientMachine::NonInvite(m) => m.handle_response(now, status),
        };
        let send_pending_cancel = entry.cancel == CancelState::Pending
            && matches!(&entry.machine, ClientMachine::Invite(m) if m.is_proceeding());
        self.flush_client(id);
        if delivery == Delivery::ToTu {
            self.events.push_back(Event::Response { id, response });
        }
        if send_pending_cancel {
            self.send_cancel(now, id);
        }
    }

    // ---- internals: sending ------------------------------------------------------------------

    fn start_client(
        &mut self,
        now: Instant,
        request: Request,
        target: Target,
        local: SocketAddr,
        branch: String,
    ) -> ClientTxId {
        let reliable = target.transport.is_reliable();
        let bytes = request.to_bytes();
        let machine = if request.method == Method::Invite {
            ClientMachine::Invite(ClientInvite::new(now, self.config.timers, reliable, bytes))
        } else {
            ClientMachine::NonInvite(ClientNonInvite::new(
                now,
                self.config.timers,
                reliable,
                bytes,
            ))
        };
        let id = ClientTxId(self.next_id());
        let key = (branch, request.method.clone());
        self.client_keys.insert(key.clone(), id);
        self.client.insert(
            id,
            ClientEntry {
                key,
                request,
                target,
                local,
                machine,
                cancel: CancelState::None,
            },
        );
        self.flush_client(id);
        id
    }

    /// §9.1: CANCEL with the INVITE's Request-URI, Call-ID, From, To, CSeq number, Route and its
    /// top Via (same branch), to the same target.
    fn send_cancel(&mut self, now: Instant, invite_id: ClientTxId) {
        let Some(entry) = self.client.get_mut(&invite_id) else {
            return;
        };
        entry.cancel = CancelState::Sent;
        if let ClientMachine::Invite(m) = &mut entry.machine {
            m.handle_cancel_sent(now);
        }
        let invite = &entry.request;
        let mut cancel = Request::new(Method::Cancel, invite.uri.clone());
        if let Some(via) = invite.headers.values(&HeaderName::Via).next() {
            cancel.headers.push(HeaderName::Via, via);
        }
        cancel.headers.push(HeaderName::MaxForwards, "70");
        for name in [HeaderName::From, HeaderName::To, HeaderName::CallId] {
            if let Some(v) = invite.headers.get(&name) {
                cancel.headers.push(name, v.clone());
            }
        }
        let seq = invite.headers.cseq().map(|c| c.seq).unwrap_or(1);
        cancel.headers.push(
            HeaderName::CSeq,
            CSeq {
                seq,
                method: Method::Cancel,
            }
            .to_string(),
        );
        for route in invite.headers.get_all(&HeaderName::Route) {
            cancel.headers.push(HeaderName::Route, route.clone());
        }
        let (target, local, branch) = (entry.target, entry.local, entry.key.0.clone());
        self.start_client(now, cancel, target, local, branch);
    }

    fn flush_server(&mut self, id: ServerTxId) {
        let Some(entry) = self.server.get_mut(&id) else {
            return;
        };
        let src = entry.source;
        loop {
            let bytes = match &mut entry.machine {
                ServerMachine::Invite(m) => m.poll_transmit(),
                ServerMachine::NonInvite(m) => m.poll_transmit(),
            };
            let Some(bytes) = bytes else { break };
            self.transmits.push_back(Transmit {
                transport: src.transport,
                from_local: src.local,
                to: src.remote,
                bytes,
            });
        }
        loop {
            let ev = match &mut entry.machine {
                ServerMachine::Invite(m) => m.poll_event(),
                ServerMachine::NonInvite(m) => m.poll_event(),
            };
            let Some(ev) = ev else { break };
            let id = TxId::Server(id);
            self.events.push_back(match ev {
                TxEvent::Timeout(_) => Event::Timeout { id },
                TxEvent::TransportError => Event::TransportError { id },
            });
        }
        if entry.machine.is_terminated() {
            let key = entry.key.clone();
            let merge_key = entry.merge_key.clone();
            self.server.remove(&id);
            if self.server_keys.get(&key) == Some(&id) {
                self.server_keys.remove(&key);
            }
            if let Some(mk) = merge_key {
                if self.merge_keys.get(&mk) == Some(&id) {
                    self.merge_keys.remove(&mk);
                }
            }
        }
    }

    fn flush_client(&mut self, id: ClientTxId) {
        let Some(entry) = self.client.get_mut(&id) else {
            return;
        };
        loop {
            let bytes = match &mut entry.machine {
                ClientMachine::Invite(m) => m.poll_transmit(),
                ClientMachine::NonInvite(m) => m.poll_transmit(),
            };
            let Some(bytes) = bytes else { break };
            self.transmits.push_back(Transmit {
                transport: entry.target.transport,
                from_local: entry.local,
                to: entry.target.addr,
                bytes,
            });
        }
        loop {
            let ev = match &mut entry.machine {
                ClientMachine::Invite(m) => m.poll_event(),
                ClientMachine::NonInvite(m) => m.poll_event(),
            };
            let Some(ev) = ev else { break };
            let id = TxId::Client(id);
            self.events.push_back(match ev {
                TxEvent::Timeout(_) => Event::Timeout { id },
                TxEvent::TransportError => Event::TransportError { id },
            });
        }
        if entry.machine.is_terminated() {
            let key = entry.key.clone();
            self.client.remove(&id);
            if self.client_keys.get(&key) == Some(&id) {
                self.client_keys.remove(&key);
            }
        }
    }

    fn pick_local(&self, target: Target) -> Result<Local, EndpointError> {
        self.locals
            .iter()
            .find(|l| l.transport == target.transport && l.addr.is_ipv4() == target.addr.is_ipv4())
            .cloned()
            .ok_or(EndpointError::NoLocal(target.transport, target.addr))
    }

    fn via_for(&self, local: &Local, branch: &str) -> Via {
        let host = match &local.advertise {
            Some(h) => h.clone(),
            None => host_text(local.addr.ip()),
        };
        let via = Via::new(
            local.transport.via_token(),
            &host,
            Some(local.addr.port()),
            branch,
        );
        Via {
            params: via.params.with("rport", None),
            ..via
        }
    }

    fn options_answer(&mut self, request: &Request) -> Response {
        let tag = self.new_tag();
        let mut response = Response::for_request(request, StatusCode::OK, None).with_to_tag(&tag);
        let policy = &self.config.policy;
        let join = |items: &mut dyn Iterator<Item = &str>| items.collect::<Vec<_>>().join(", ");
        response.headers.push(
            HeaderName::Allow,
            join(&mut policy.methods.iter().map(Method::as_str)),
        );
        response
            .headers
            .push(HeaderName::Accept, join(&mut policy.accept.iter().copied()));
        response.headers.push(
            HeaderName::Supported,
            join(&mut policy.supported.iter().copied()),
        );
        response
    }

    fn new_branch(&mut self) -> String {
        format!("{MAGIC_COOKIE}{:016x}", self.next_random())
    }

    fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// splitmix64: unique outputs for distinct counter values, unpredictable enough for tags once
    /// the seed is random.
    fn next_random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

impl ServerMachine {
    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            ServerMachine::Invite(m) => m.poll_timeout(),
            ServerMachine::NonInvite(m) => m.poll_timeout(),
        }
    }

    fn is_terminated(&self) -> bool {
        match self {
            ServerMachine::Invite(m) => m.is_terminated(),
            ServerMachine::NonInvite(m) => m.is_terminated(),
        }
    }
}

impl ClientMachine {
    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            ClientMachine::Invite(m) => m.poll_timeout(),
            ClientMachine::NonInvite(m) => m.poll_timeout(),
        }
    }

    fn is_terminated(&self) -> bool {
        match self {
            ClientMachine::Invite(m) => m.is_terminated(),
            ClientMachine::NonInvite(m) => m.is_terminated(),
        }
    }
}

/// §18.2.1 / RFC 3581: add `received` when the sent-by host differs from the packet's source IP
/// (always when `rport` is present) and fill in `rport` with the source port.
fn stamp_received(request: &mut Request, remote: SocketAddr) {
    let Ok(via) = request.headers.top_via() else {
        return;
    };
    let host = via.host.trim_start_matches('[').trim_end_matches(']');
    let same_ip = host.parse::<IpAddr>().is_ok_and(|ip| ip == remote.ip());
    let wants_rport = via.rport().is_some();
    if same_ip && !wants_rport {
        return;
    }
    let stamped = via.with_received(&remote.ip().to_string(), Some(remote.port()));
    request.headers.pop_first_value(&HeaderName::Via);
    if request.headers.get(&HeaderName::Via).is_some() {
        request
            .headers
            .insert_before(HeaderName::Via, stamped.to_string());
    } else {
        request
            .headers
            .push_front(HeaderName::Via, stamped.to_string());
    }
}

/// §17.1.1.3: the ACK for a non-2xx final response.
fn build_non_2xx_ack(invite: &Request, response: &Response) -> Bytes {
    let mut ack = Request::new(Method::Ack, invite.uri.clone());
    if let Some(via) = invite.headers.values(&HeaderName::Via).next() {
        ack.headers.push(HeaderName::Via, via);
    }
    ack.headers.push(HeaderName::MaxForwards, "70");
    for name in [HeaderName::From, HeaderName::CallId] {
        if let Some(v) = invite.headers.get(&name) {
            ack.headers.push(name, v.clone());
        }
    }
    if let Some(to) = response
        .headers
        .get(&HeaderName::To)
        .or_else(|| invite.headers.get(&HeaderName::To))
    {
        ack.headers.push(HeaderName::To, to.clone());
    }
    let seq = invite.headers.cseq().map(|c| c.seq).unwrap_or(1);
    ack.headers.push(
        HeaderName::CSeq,
        CSeq {
            seq,
            method: Method::Ack,
        }
        .to_string(),
    );
    for route in invite.headers.get_all(&HeaderName::Route) {
        ack.headers.push(HeaderName::Route, route.clone());
    }
    ack.to_bytes()
}

/// The §8.2.2.2 identity of an out-of-dialog request (no To tag); CANCEL is excluded because it
/// shares its INVITE's identity by design.
fn merge_key(request: &Request) -> Option<MergeKey> {
    if has_to_tag(request) || request.method == Method::Cancel {
        return None;
    }
    let from = request.headers.from().ok()?;
    let cseq = request.headers.cseq().ok()?;
    Some((
        from.tag()?.to_owned(),
        request.headers.call_id().ok()?.to_string(),
        cseq.seq,
        cseq.method,
    ))
}

fn has_to_tag(request: &Request) -> bool {
    request
        .headers
        .to()
        .map(|t| t.tag().is_some())
        .unwrap_or(false)
}

/// An IP as URI host text (IPv6 in brackets).
pub fn host_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const LOCAL: &str = "127.0.0.1:5060";
    const PEER: &str = "127.0.0.1:40000";

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn endpoint() -> Endpoint {
        let mut ep = Endpoint::new(EndpointConfig::default());
        ep.add_local(Local {
            transport: Transport::Udp,
            addr: addr(LOCAL),
            advertise: None,
        });
        ep
    }

    fn msg(method: &str, branch: &str, to_tag: &str, cseq: &str, via_host: &str) -> Bytes {
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

    fn feed(ep: &mut Endpoint, now: Instant, bytes: Bytes) {
        ep.handle_datagram(now, Transport::Udp, addr(LOCAL), addr(PEER), bytes);
    }

    fn transmits(ep: &mut Endpoint) -> Vec<String> {
        std::iter::from_fn(|| ep.poll_transmit())
            .map(|t| {
                assert_eq!(t.to, addr(PEER));
                String::from_utf8_lossy(&t.bytes).into_owned()
            })
            .collect()
    }

    fn request_event(ep: &mut Endpoint) -> (ServerTxId, Request) {
        match ep.poll_event() {
            Some(Event::Request { id, request, .. }) => (id, request),
            other => panic!("expected a request, got {other:?}"),
        }
    }

    #[test]
    fn invite_gets_100_trying_at_once_and_non_2xx_ack_is_absorbed() {
        let now = Instant::now();
        let mut ep = endpoint();
        feed(
            &mut ep,
            now,
            msg("INVITE", "z9hG4bKi1", "", "1 INVITE", "127.0.0.1:40000"),
        );
        let sent = transmits(&mut ep);
        assert_eq!(sent.len(), 1);
        assert!(sent[0].starts_with("SIP/2.0 100 Trying"));
        let (id, req) = request_event(&mut ep);
        let busy = Response::for_request(&req, StatusCode::BUSY_HERE, None).with_to_tag("t1");
        ep.respond(now, id, busy).unwrap();
        assert!(transmits(&mut ep)[0].starts_with("SIP/2.0 486"));
        feed(
            &mut ep,
            now,
            msg("ACK", "z9hG4bKi1", "t1", "1 ACK", "127.0.0.1:40000"),
        );
        assert_eq!(
            ep.poll_event(),
            None,
            "the ACK for a non-2xx never reaches the TU"
        );
        ep.handle_timeout(now + Duration::from_secs(5));
        assert_eq!(ep.transaction_count(), (0, 0), "Confirmed ended by Timer I");
    }

    #[test]
    fn ack_for_2xx_goes_to_the_tu() {
        let now = Instant::now();
        let mut ep = endpoint();
        feed(
            &mut ep,
            now,
            msg("INVITE", "z9hG4bKi2", "", "1 INVITE", "127.0.0.1:40000"),
        );
        transmits(&mut ep);
        let (id, req) = request_event(&mut ep);
        let ok = Response::for_request(&req, StatusCode::OK, None).with_to_tag("t2");
        ep.respond(now, id, ok).unwrap();
        transmits(&mut ep);
        feed(
            &mut ep,
            now,
            msg("ACK", "z9hG4bKnew", "t2", "1 ACK", "127.0.0.1:40000"),
        );
        assert!(matches!(ep.poll_event(), Some(Event::Ack { .. })));
    }

    #[test]
    fn cancel_without_invite_gets_481_and_after_final_gets_200_only() {
        let now = Instant::now();
        let mut ep = endpoint();
        feed(
            &mut ep,
            now,
            msg("CANCEL", "z9hG4bKnone", "", "1 CANCEL", "127.0.0.1:40000"),
        );
        assert!(transmits(&mut ep)[0].starts_with("SIP/2.0 481"));
        assert_eq!(ep.poll_event(), None);

        feed(
            &mut ep,
            now,
            msg("INVITE", "z9hG4bKi3", "", "1 INVITE", "127.0.0.1:40000"),
        );
        transmits(&mut ep);
        let (id, req) = request_event(&mut ep);
        let ok = Response::for_request(&req, StatusCode::OK, None).with_to_tag("t3");
        ep.respond(now, id, ok).unwrap();
        transmits(&mut ep);
        feed(
            &mut ep,
            now,
            msg("CANCEL", "z9hG4bKi3", "", "1 CANCEL", "127.0.0.1:40000"),
        );
        let sent = transmits(&mut ep);
        assert_eq!(sent.len(), 1, "no 487 after a 2xx: {sent:?}");
        assert!(sent[0].starts_with("SIP/2.0 200"));
        assert!(
            sent[0].contains("tag=t3"),
            "same To tag as the INVITE's answer"
        );
        assert_eq!(ep.poll_event(), None);
    }

    #[test]
    fn cancel_of_pending_invite_answers_487_with_the_same_tag() {
        let now = Instant::now();
        let mut ep = endpoint();
        feed(
            &mut ep,
            now,
            msg("INVITE", "z9hG4bKi4", "", "1 INVITE", "127.0.0.1:40000"),
        );
        transmits(&mut ep);
        let (id, req) = request_event(&mut ep);
        let ringing = Response::for_request(&req, StatusCode::RINGING, None).with_to_tag("t4");
        ep.respond(now, id, ringing).unwrap();
        transmits(&mut ep);
        feed(
            &mut ep,
            now,
            msg("CANCEL", "z9hG4bKi4", "", "1 CANCEL", "127.0.0.1:40000"),
        );
        let sent = transmits(&mut ep);
        assert!(sent[0].starts_with("SIP/2.0 200") && sent[0].contains("CSeq: 1 CANCEL"));
        assert!(sent[1].starts_with("SIP/2.0 487") && sent[1].contains("tag=t4"));
        assert!(matches!(ep.poll_event(), Some(Event::Cancelled { id: c, .. }) if c == id));
        let late = Response::for_request(&req, StatusCode::OK, None);
        assert!(
            ep.respond(now, id, late).is_err(),
            "the INVITE was already answered"
        );
    }

    #[test]
    fn received_is_added_only_when_needed() {
        let now = Instant::now();
        let mut ep = endpoint();
        feed(
            &mut ep,
            now,
            msg("OPTIONS", "z9hG4bKo1", "", "1 OPTIONS", "127.0.0.1:40000"),
        );
        let (_, req) = request_event(&mut ep);
        let via = req.headers.top_via().unwrap();
        assert_eq!(via.received(), None, "sent-by already is the source IP");
        feed(
            &mut ep,
            now,
            msg("OPTIONS", "z9hG4bKo2", "", "2 OPTIONS", "pc.example.com"),
        );
        let (_, req) = request_event(&mut ep);
        assert_eq!(req.headers.top_via().unwrap().received(), Some("127.0.0.1"));
        assert_eq!(req.headers.top_via().unwrap().rport(), None);
    }

    #[test]
    fn send_request_adds_via_with_rport_and_max_forwards() {
        let now = Instant::now();
        let mut ep = endpoint();
        let mut req = Request::new(Method::Options, "sip:x@127.0.0.1".parse().unwrap());
        req.headers.push(HeaderName::CSeq, "1 OPTIONS");
        let target = Target {
            transport: Transport::Udp,
            addr: addr(PEER),
        };
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
    fn non_2xx_ack_copies_the_invite_and_takes_the_response_to() {
        let invite =
            Request::parse(msg("INVITE", "z9hG4bKa1", "", "5 INVITE", "127.0.0.1")).unwrap();
        let mut resp =
            Response::for_request(&invite, StatusCode::NOT_FOUND, None).with_to_tag("x9");
        resp.headers
            .push(HeaderName::Contact, "<sip:ignored@127.0.0.1>");
        let ack = Request::parse(build_non_2xx_ack(&invite, &resp)).unwrap();
        assert_eq!(ack.method, Method::Ack);
        assert_eq!(ack.uri, invite.uri);
        assert_eq!(ack.headers.top_via().unwrap().branch(), Some("z9hG4bKa1"));
        assert_eq!(ack.headers.to().unwrap().tag(), Some("x9"));
        assert_eq!(ack.headers.cseq().unwrap().seq, 5);
        assert_eq!(ack.headers.cseq().unwrap().method, Method::Ack);
    }

    #[test]
    fn transport_error_ends_the_peer_s_transactions() {
        let now = Instant::now();
        let mut ep = endpoint();
        let mut req = Request::new(Method::Options, "sip:x@127.0.0.1".parse().unwrap());
        req.headers.push(HeaderName::CSeq, "1 OPTIONS");
        let target = Target {
            transport: Transport::Udp,
            addr: addr(PEER),
        };
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

    proptest::proptest! {
        /// Whatever arrives (valid messages with bytes overwritten, in any order, with the clock
        /// running), the endpoint neither panics nor keeps transactions past their timers.
        #[test]
        fn never_panics_on_mangled_traffic(
            edits in proptest::collection::vec((0usize..5, 0usize..400, proptest::num::u8::ANY), 0..40),
        ) {
            let now = Instant::now();
            let mut ep = endpoint();
            let base = [
                msg("INVITE", "z9hG4bKp1", "", "1 INVITE", "127.0.0.1:40000"),
                msg("ACK", "z9hG4bKp1", "t", "1 ACK", "127.0.0.1:40000"),
                msg("CANCEL", "z9hG4bKp1", "", "1 CANCEL", "pc.example"),
                msg("BYE", "z9hG4bKp2", "t", "2 BYE", "[::1]:5060"),
                Bytes::from_static(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"),
            ];
            for (step, (which, at, byte)) in edits.into_iter().enumerate() {
                let mut bytes = base[which].to_vec();
                if let Some(b) = bytes.get_mut(at) {
                    *b = byte;
                }
                let t = now + Duration::from_millis(step as u64 * 300);
                feed(&mut ep, t, Bytes::from(bytes));
                ep.handle_timeout(t);
                while ep.poll_transmit().is_some() {}
                while let Some(ev) = ep.poll_event() {
                    if let Event::Request { id, request, .. } = ev {
                        let r = Response::for_request(&request, StatusCode::OK, None).with_to_tag("p");
                        let _ = ep.respond(t, id, r);
                    }
                }
            }
            ep.handle_timeout(now + Duration::from_secs(3600));
            proptest::prop_assert_eq!(ep.transaction_count(), (0, 0));
        }
    }

    #[test]
    fn merged_request_gets_482() {
        let now = Instant::now();
        let mut ep = endpoint();
        feed(
            &mut ep,
            now,
            msg("INVITE", "z9hG4bKpath1", "", "1 INVITE", "127.0.0.1:40000"),
        );
        transmits(&mut ep);
        request_event(&mut ep);
        feed(
            &mut ep,
            now,
            msg("INVITE", "z9hG4bKpath2", "", "1 INVITE", "127.0.0.1:40000"),
        );
        assert!(transmits(&mut ep)[0].starts_with("SIP/2.0 482"));
        assert_eq!(ep.poll_event(), None);
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
        assert!(branch.starts_with(MAGIC_COOKIE) && branch.len() > MAGIC_COOKIE.len());
        assert!(ep.new_call_id("example.com").ends_with("@example.com"));
    }
}
