//! The call manager: takes the SIP driver's events, starts one [`task`](super::task) per trunk call
//! and routes every later message to the call it belongs to.
//!
//! Routing, without races:
//! - a new INVITE (no To tag) becomes a call here, and its Call-ID and INVITE server transaction are
//!   registered before anything else is read, so a fast BYE or CANCEL finds the call;
//! - requests and responses of the agent legs carry Call-IDs we made (`vb-<call>-<n>@…`), so they find
//!   their call from the Call-ID alone, even a 200 OK that overtakes the task's bookkeeping;
//! - transaction timeouts carry only a transaction id: call tasks record their client transactions in
//!   [`Routes::client_txs`] before such a timeout can fire (Timer B/F is 32 s).
//!
//! Who may call: only the trunks ([`CallFlowConfig::trunks`]). An INVITE, or any other request that
//! would start a dialog (no To tag), from another address is dropped unanswered — or answered 403
//! with [`UnknownSources::Reject`] — before anything else is looked at: no call, no RTP port, no
//! hint that a SIP server lives here. OPTIONS are answered from anywhere (keep-alives of phones and
//! SBCs); REGISTER never gets here (the SIP driver's registrar), nor do requests within a known
//! call.
//!
//! Capacity: more than [`CallFlowConfig::max_calls`] live calls → `503 Service Unavailable` with
//! `Retry-After`.
//!
//! The manager also tells the link service which call a store key names, so a call whose code is
//! presented again is flagged `code_reused` ([`crate::links::LinkService::on_code_reused`]).

use super::registry::Registry;
use super::task::{self, CallTaskContext};
use super::{CallId, CallWarning};

/// The call flow's settings and the routing table live in [`super::config`], shared with the call
/// tasks; re-exported here for the paths the rest of the server uses.
pub use super::config::{
    store_key, CallFlowConfig, CallInput, Comfort, Routes, UnknownSources, AGENT_CALL_ID_PREFIX,
};
use crate::links::LinkService;
use crate::rtp_ports::SharedPortPool;
use crate::sip_driver::{has_to_tag, BoundAddrs, SipEvent, SipEvents, SipHandle};
use crate::tenant::Tenants;
use crate::PRODUCT;
use sip::endpoint::{Event, ServerTxId, TxId};
use sip::message::{build, HeaderName, Method, Request};
use sip::random::RandomKey;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// What the manager needs from the rest of the server.
#[derive(Clone)]
pub struct CallContext {
    pub config: CallFlowConfig,
    pub registry: Arc<Registry>,
    pub links: LinkService,
    pub tenants: Arc<Tenants>,
    pub sip: SipHandle,
    pub sip_local: BoundAddrs,
}

/// Capacity of each call task's input queue: far more than a well-behaved dialog ever has in
/// flight (a handful of requests and responses).
const CALL_QUEUE: usize = 256;

/// The call a store key names, if this instance made it (keys of an earlier run name no call).
pub fn call_of_store_key(key: &str, instance: &str) -> Option<CallId> {
    let (id, of) = key.split_once('-')?;
    if of != instance {
        return None;
    }
    id.parse().ok().map(CallId)
}

/// Which call an agent-leg Call-ID belongs to.
pub fn call_of_agent_call_id(call_id: &str) -> Option<CallId> {
    let rest = call_id.strip_prefix(AGENT_CALL_ID_PREFIX)?;
    let (id, _) = rest.split_once('-')?;
    id.parse().ok().map(CallId)
}

/// What the calls hold right now: live call tasks, routing entries and RTP ports. For health checks,
/// and for tests that prove calls leave nothing behind.
#[derive(Clone)]
pub struct CallsProbe {
    routes: Arc<Mutex<Routes>>,
    ports: Option<SharedPortPool>,
    relayed: Arc<AtomicU64>,
}

impl CallsProbe {
    /// RTP packets (audio and RFC 4733) our relay has forwarded between caller and agent legs, all
    /// calls together, since start. Stays flat while connected calls run on direct media.
    pub fn relayed_packets(&self) -> u64 {
        self.relayed.load(Ordering::Relaxed)
    }

    /// Stop taking calls (graceful shutdown): every new INVITE is answered 503 with Retry-After,
    /// so the trunk tries another instance or later; calls already up go on.
    pub fn drain(&self) {
        lock(&self.routes).draining = true;
    }

    /// Call tasks running (each one is in the routing table until its task has released everything).
    pub fn live_calls(&self) -> usize {
        lock(&self.routes).calls.len()
    }

    /// Entries in every routing map together (Call-IDs, transactions, tasks).
    pub fn routing_entries(&self) -> usize {
        let r = lock(&self.routes);
        r.calls.len() + r.trunk_calls.len() + r.server_txs.len() + r.client_txs.len()
    }

    /// RTP port pairs free and in the pool; `None` when the configured range was unusable.
    pub fn rtp_pairs(&self) -> Option<(usize, usize)> {
        self.ports.as_ref().map(|p| (p.available(), p.capacity()))
    }
}

/// Starts the manager task.
/// What [`spawn`] started: the manager's task, its probe, and the door for browser calls (`None`
/// when the RTP port range is unusable and every call is refused).
pub struct Spawned {
    pub task: tokio::task::JoinHandle<()>,
    pub probe: CallsProbe,
    pub browser_calls: Option<super::browser::BrowserCalls>,
}

pub fn spawn(ctx: CallContext, events: SipEvents) -> Spawned {
    // Ports in an order drawn from the OS-seeded CSPRNG: one call's port tells nothing of the next.
    let port_key = RandomKey::from_bytes(rand::random());
    let (low, high) = (*ctx.config.rtp_ports.start(), *ctx.config.rtp_ports.end());
    let ports = match SharedPortPool::new(low, high, &port_key) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::error!(
                "RTP port range {:?} is unusable: {e}; calls will be refused",
                ctx.config.rtp_ports
            );
            None
        }
    };
    let probe = CallsProbe {
        routes: Arc::new(Mutex::new(Routes::default())),
        ports: ports.clone(),
        relayed: Arc::new(AtomicU64::new(0)),
    };
    let routes = probe.routes.clone();
    let relayed = probe.relayed.clone();
    let Some(ports) = ports else {
        return Spawned {
            task: tokio::spawn(refuse_all(ctx, events)),
            probe,
            browser_calls: None,
        };
    };
    let (ended_tx, ended_rx) = mpsc::unbounded_channel::<CallId>();
    // Shared with the exchange API's calls (`crate::exchange`), which draw ids from the same
    // registry: their codes' reuse is flagged by the hook below too.
    let instance = ctx.registry.instance().to_owned();
    {
        let registry = ctx.registry.clone();
        let instance = instance.clone();
        ctx.links.on_code_reused(Arc::new(move |key: &str| {
            if let Some(id) = call_of_store_key(key, &instance) {
                tracing::info!(call = %id, "flagging the call whose link code was presented again");
                registry.warn(id, CallWarning::CodeReused);
            }
        }));
    }
    let gateway = ctx.config.webrtc_gateway(&ctx.sip_local, ports.clone());
    let task_ctx = Arc::new(CallTaskContext {
        instance,
        flow: ctx.config.clone(),
        registry: ctx.registry.clone(),
        links: ctx.links.clone(),
        tenants: ctx.tenants.clone(),
        sip: ctx.sip.clone(),
        ports,
        routes: routes.clone(),
        ended: ended_tx,
        relayed,
        sip_bound: ctx.sip_local.clone(),
        media: crate::media_plane::MediaPlane::start(ctx.config.media_io, ctx.config.max_calls),
    });
    let browser_calls =
        super::browser::BrowserCalls::new(task_ctx.clone(), routes.clone(), gateway);
    Spawned {
        task: tokio::spawn(run(events, task_ctx, routes, ended_rx)),
        probe,
        browser_calls: Some(browser_calls),
    }
}

async fn run(
    mut events: SipEvents,
    task_ctx: Arc<CallTaskContext>,
    routes: Arc<Mutex<Routes>>,
    mut ended_rx: mpsc::UnboundedReceiver<CallId>,
) {
    loop {
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else { break };
                let SipEvent::Endpoint(event) = event else { continue };
                dispatch(&task_ctx, &routes, event);
            }
            Some(id) = ended_rx.recv() => {
                let mut r = lock(&routes);
                r.calls.remove(&id);
                r.trunk_calls.retain(|_, c| *c != id);
                r.server_txs.retain(|_, c| *c != id);
                r.client_txs.retain(|_, c| *c != id);
            }
        }
    }
}

fn dispatch(ctx: &Arc<CallTaskContext>, routes: &Arc<Mutex<Routes>>, event: Event) {
    let target = {
        let r = lock(routes);
        match &event {
            Event::Request { request, .. } | Event::Ack { request, .. } => {
                route_by_call_id(&r, call_id_of(&request.headers))
            }
            Event::Response { response, .. } => route_by_call_id(&r, call_id_of(&response.headers)),
            Event::Cancelled { id, .. } => r.server_txs.get(id).copied(),
            Event::Timeout { id } | Event::TransportError { id } => match id {
                TxId::Server(s) => r.server_txs.get(s).copied(),
                TxId::Client(c) => r.client_txs.get(c).copied(),
            },
        }
        .and_then(|id| r.calls.get(&id).cloned())
    };
    if let Some(call) = target {
        to_call(ctx, &call, event);
        return;
    }
    if let Event::Request {
        id,
        request,
        source,
    } = &event
    {
        if from_stranger(&ctx.flow, request, source) {
            turn_away(ctx, *id, request, source);
            return;
        }
    }
    match event {
        Event::Request {
            id,
            request,
            source,
        } if request.method == Method::Invite && !has_to_tag(&request) => {
            new_call(ctx, routes, id, request, source);
        }
        Event::Request { id, request, .. } if request.method != Method::Ack => {
            // No call knows this dialog (it ended, or never existed): RFC 3261 §12.2.2.
            let status = if request.method == Method::Options {
                200
            } else {
                481
            };
            ctx.sip
                .reply(id, build::reply(&request, status, rand::random(), PRODUCT));
        }
        _ => {}
    }
}

/// Hands `event` to its call's task without waiting. A call whose queue is full (a peer flooding
/// one dialog) sheds: a request gets `503` with Retry-After, anything else is dropped (responses
/// and ACKs are retransmitted); counted either way. A closed queue is a call that just ended.
fn to_call(ctx: &CallTaskContext, call: &mpsc::Sender<CallInput>, event: Event) {
    let Err(mpsc::error::TrySendError::Full(CallInput::Sip(event))) =
        call.try_send(CallInput::Sip(Box::new(event)))
    else {
        return;
    };
    crate::metrics::global().sip_event_shed("call");
    tracing::warn!("a call's event queue is full; shedding");
    if let Event::Request { id, request, .. } = *event {
        if request.method != Method::Ack {
            let mut resp = build::reply(&request, 503, rand::random(), PRODUCT);
            resp.headers.push(HeaderName::RetryAfter, "1".to_string());
            ctx.sip.reply(id, resp);
        }
    }
}

/// Whether `request` would start a dialog (no To tag; not an ACK, not an OPTIONS ping) and comes
/// from an address that is not a trunk.
fn from_stranger(flow: &CallFlowConfig, request: &Request, source: &sip::endpoint::Source) -> bool {
    !matches!(request.method, Method::Ack | Method::Options)
        && !has_to_tag(request)
        && !flow.is_trunk(source.remote.ip())
}

/// A dialog-creating request from a stranger: dropped, or 403 with [`UnknownSources::Reject`].
/// Counted; logged at debug level only (a scan must not flood the log).
fn turn_away(
    ctx: &CallTaskContext,
    tx: ServerTxId,
    request: &Request,
    source: &sip::endpoint::Source,
) {
    let invite = request.method == Method::Invite;
    let metrics = crate::metrics::global();
    match ctx.flow.unknown_sources {
        UnknownSources::Drop => {
            metrics.unknown_source(invite, "dropped");
            tracing::debug!(from = %source.remote, method = %request.method.as_str(), "request from an address that is not a trunk dropped");
        }
        UnknownSources::Reject => {
            metrics.unknown_source(invite, "rejected");
            tracing::debug!(from = %source.remote, method = %request.method.as_str(), "request from an address that is not a trunk refused with 403");
            ctx.sip
                .reply(tx, build::reply(request, 403, rand::random(), PRODUCT));
        }
    }
}

fn new_call(
    ctx: &Arc<CallTaskContext>,
    routes: &Arc<Mutex<Routes>>,
    tx: ServerTxId,
    request: Request,
    source: sip::endpoint::Source,
) {
    let (live, draining) = {
        let r = lock(routes);
        (r.calls.len(), r.draining)
    };
    if live >= ctx.flow.max_calls || draining {
        if draining {
            tracing::info!("shutting down: refusing a new call with 503");
        } else {
            tracing::warn!(live, "at capacity: refusing a call with 503");
        }
        let mut resp = build::reply(&request, 503, rand::random(), PRODUCT);
        resp.headers
            .push(HeaderName::RetryAfter, ctx.flow.retry_after.to_string());
        ctx.sip.reply(tx, resp);
        return;
    }
    let called = called_number(&request);
    let Some(tenant) = ctx.tenants.for_called(&called).cloned() else {
        tracing::info!("no municipality answers the called number; 404");
        ctx.sip
            .reply(tx, build::reply(&request, 404, rand::random(), PRODUCT));
        return;
    };
    let id = ctx.registry.next_id();
    let (input_tx, input_rx) = mpsc::channel(CALL_QUEUE);
    {
        let mut r = lock(routes);
        if let Some(call_id) = call_id_of(&request.headers) {
            r.trunk_calls.insert(call_id.to_owned(), id);
        }
        r.server_txs.insert(tx, id);
        r.calls.insert(id, input_tx);
    }
    tokio::spawn(task::run(
        ctx.clone(),
        id,
        tenant,
        tx,
        request,
        source,
        input_rx,
    ));
}

/// The user part of the Request-URI (`sip:+31…@host`) or the number of a `tel:` URI.
fn called_number(request: &Request) -> String {
    task::uri_number(&request.uri).unwrap_or_default()
}

fn call_id_of(headers: &sip::message::Headers) -> Option<&str> {
    headers.get(&HeaderName::CallId).map(|t| t.as_ref())
}

fn route_by_call_id(routes: &Routes, call_id: Option<&str>) -> Option<CallId> {
    let call_id = call_id?;
    routes
        .trunk_calls
        .get(call_id)
        .copied()
        .or_else(|| call_of_agent_call_id(call_id))
}

fn lock(routes: &Mutex<Routes>) -> std::sync::MutexGuard<'_, Routes> {
    // Critical sections only insert/remove map entries (see `crate::sync`).
    crate::sync::lock(routes)
}

/// Without RTP ports we cannot take calls: answer every INVITE 503 and keep the SIP side polite
/// (to trunks; strangers are turned away as always).
async fn refuse_all(ctx: CallContext, mut events: SipEvents) {
    while let Some(event) = events.recv().await {
        if let SipEvent::Endpoint(Event::Request {
            id,
            request,
            source,
        }) = event
        {
            if request.method == Method::Ack {
                continue;
            }
            if from_stranger(&ctx.config, &request, &source) {
                if ctx.config.unknown_sources == UnknownSources::Reject {
                    ctx.sip
                        .reply(id, build::reply(&request, 403, rand::random(), PRODUCT));
                }
                continue;
            }
            let status = if request.method == Method::Invite {
                503
            } else {
                481
            };
            ctx.sip
                .reply(id, build::reply(&request, status, rand::random(), PRODUCT));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    #[test]
    fn agent_call_ids_lead_back_to_their_call() {
        assert_eq!(call_of_agent_call_id("vb-42-3@127.0.0.1"), Some(CallId(42)));
        assert_eq!(call_of_agent_call_id("vb-x-3@h"), None);
        assert_eq!(call_of_agent_call_id("a84b4c76e66710@pc33"), None);
        assert_eq!(call_of_agent_call_id("vb-42"), None);
    }

    #[test]
    fn store_keys_name_calls_of_this_instance_only() {
        let key = store_key(CallId(7), "abc123");
        assert_eq!(key, "7-abc123");
        assert_eq!(call_of_store_key(&key, "abc123"), Some(CallId(7)));
        assert_eq!(call_of_store_key(&key, "def456"), None, "an earlier run");
        assert_eq!(call_of_store_key("x-abc123", "abc123"), None);
        assert_eq!(call_of_store_key("7", "abc123"), None);
    }

    #[test]
    fn a_named_instance_keys_its_calls_with_its_name_and_a_new_run_each_start() {
        let first = Registry::named(Some("vb-a.1"));
        let again = Registry::named(Some("vb-a.1"));
        let (run, name) = first.instance().split_once('@').expect("run@name");
        assert_eq!((run.len(), name), (32, "vb-a.1"));
        assert_ne!(
            first.instance(),
            again.instance(),
            "each start is a run of its own"
        );
        let key = store_key(CallId(7), first.instance());
        assert!(
            key.ends_with("@vb-a.1"),
            "a shared store finds the instance's calls"
        );
        assert_eq!(call_of_store_key(&key, first.instance()), Some(CallId(7)));
        assert_eq!(
            call_of_store_key(&key, again.instance()),
            None,
            "an earlier run"
        );
        assert!(!Registry::new().instance().contains('@'));
    }

    #[test]
    fn only_trunk_addresses_may_start_dialogs() {
        let flow = CallFlowConfig {
            trunks: vec![
                "192.0.2.0/28".parse().unwrap(),
                "2001:db8::1/128".parse().unwrap(),
            ],
            ..CallFlowConfig::default()
        };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(flow.is_trunk(ip("192.0.2.10")));
        assert!(flow.is_trunk(ip("::ffff:192.0.2.10")), "IPv4-mapped");
        assert!(!flow.is_trunk(ip("192.0.2.16")));
        assert!(flow.is_trunk(ip("2001:db8::1")));
        assert!(!flow.is_trunk(ip("127.0.0.1")));
        assert!(
            !CallFlowConfig::default().is_trunk(ip("127.0.0.1")),
            "none by default"
        );
        let demo = CallFlowConfig {
            trunks: CallFlowConfig::loopback_trunks(),
            ..CallFlowConfig::default()
        };
        assert!(demo.is_trunk(ip("127.0.0.2")) && demo.is_trunk(ip("::1")));
        assert!(!demo.is_trunk(ip("10.0.0.1")));

        let source = |remote: &str| sip::endpoint::Source {
            remote: remote.parse().unwrap(),
            local: "127.0.0.1:5060".parse().unwrap(),
            transport: sip::transaction::Transport::Udp,
        };
        let req = |method: &str, to_tag: &str| {
            let raw = format!(
                "{method} sip:+31850000000@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n\
                 To: <sip:x@y>{to_tag}\r\nCall-ID: c1\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            );
            Request::parse(raw.into_bytes()).unwrap()
        };
        let stranger = source("10.0.0.1:5070");
        let trunk = source("192.0.2.1:5060");
        for method in ["INVITE", "SUBSCRIBE", "REFER", "MESSAGE", "NOTIFY"] {
            assert!(
                from_stranger(&flow, &req(method, ""), &stranger),
                "{method}"
            );
            assert!(!from_stranger(&flow, &req(method, ""), &trunk), "{method}");
        }
        assert!(!from_stranger(&flow, &req("OPTIONS", ""), &stranger));
        assert!(
            !from_stranger(&flow, &req("BYE", ";tag=9"), &stranger),
            "in dialog: 481 as before"
        );
    }

    #[test]
    fn the_called_number_comes_from_the_request_uri() {
        let req = |uri: &str| {
            let raw = format!(
                "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n\
                 To: <sip:x@y>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            );
            Request::parse(raw.into_bytes()).unwrap()
        };
        assert_eq!(
            called_number(&req("sip:+31850000000@127.0.0.1")),
            "+31850000000"
        );
        assert_eq!(
            called_number(&req("tel:+31850000000;phone-context=example.com")),
            "+31850000000"
        );
    }
}
