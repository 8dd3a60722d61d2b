//! One tokio task per call: the thin driver around the sans-IO pieces of a call.
//!
//! It owns the call's [`CallMachine`], the trunk leg (SIP [`Dialog`], [`RtpSession`], RTP socket,
//! [`LocalSdp`]), the in-band [`DtmfDetector`], the comfort signal, and — once an agent takes the call
//! — the agent leg (parallel INVITE forks, then a UAC dialog and its own RTP socket). Media between the
//! legs is relayed here (B2BUA): audio transcoded PCMA↔PCMU by `dsp` when the legs differ, RFC 4733
//! events re-sent with the agent leg's payload type.
//!
//! Loop: wait for the first of {SIP input routed by the manager, agent command, RTP on either socket,
//! the code lookup, the earliest timer}; feed it to the owning state machine; then apply the machine's
//! actions and publish the call view. Nothing here decides *what* happens to the call; the machine does.
//!
//! The connect modes (`media = "direct"` re-INVITEs, `transfer = "refer"`), RFC 4028 session refreshes
//! and every other in-dialog request *we* send are driven from `task_connect.rs`, a child module.
//!
//! When the call ends every socket and port lease is dropped, the link code's attributes are purged from
//! the store and from memory, and the manager forgets the call's routes.

#[path = "task_connect.rs"]
mod connect;

use super::collect::DigitSource;
use super::direct::{AgentMedia, DirectMedia, Leg, MediaPath, Offer};
use super::machine::{Action, AgentLegFailure, CallMachine, Classification};
use super::manager::{CallFlowConfig, Comfort, Routes, AGENT_CALL_ID_PREFIX};
use super::registry::{CallCommand, CallView, Registry, ShownAttribute};
use super::{CallId, CallState, UnverifiedReason};
use crate::links::{LinkService, Unverified};
use crate::pii::Pii;
use crate::sip_driver::{tu, SipHandle};
use crate::tenant::{AgentId, Tenant, Tenants};
use dsp::dtmf::{DtmfDetector, DtmfEvent};
use dsp::tone::{LoopedPrompt, SignalSource, Silence, ToneGenerator};
use sip::dialog::{Dialog, DialogEvent};
use sip::endpoint::{ClientTxId, Event, ServerTxId, Source, Target};
use sip::message::{HeaderName, Method, NameAddr, Request, Response, StatusCode, Uri};
use sip::ports::{PortLease, SharedPortPool};
use sip::rfc4733::{DigitEvent, EventPayload};
use sip::rtp::{Received, RtpConfig, RtpEvent, RtpSession, RTP_HEADER_LEN};
use sip::sdp::{CodecKind, Direction, LocalMedia, LocalSdp};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

/// 20 ms of 8 kHz audio.
const FRAME: usize = 160;
const FRAME_TIME: Duration = Duration::from_millis(20);
/// How long the goodbye signal plays before we hang up.
const GOODBYE_TIME: Duration = Duration::from_secs(3);
/// Attempts at binding an RTP port before refusing the call.
const BIND_ATTEMPTS: usize = 8;

/// What the manager gives every call task.
pub struct CallTaskContext {
    pub flow: CallFlowConfig,
    pub registry: Arc<Registry>,
    pub links: LinkService,
    pub tenants: Arc<Tenants>,
    pub sip: SipHandle,
    pub ports: SharedPortPool,
    pub routes: Arc<Mutex<Routes>>,
    /// Tell the manager the call is gone.
    pub ended: mpsc::UnboundedSender<CallId>,
    /// Packets the relay forwarded between legs, all calls ([`super::manager::CallsProbe`]).
    pub relayed: Arc<AtomicU64>,
}

/// Input routed to a call by the manager.
#[derive(Debug)]
pub enum CallInput {
    Sip(Event),
}

/// One RTP leg: socket, port lease, SDP state and RTP session.
struct MediaLeg {
    socket: UdpSocket,
    _lease: PortLease,
    local: LocalMedia,
    sdp: LocalSdp,
    rtp: Option<RtpSession>,
    /// Timestamp of the RFC 4733 event being relayed from this leg, to spot new events.
    relayed_event: Option<u32>,
    /// The event being received from this leg began while the legs were bridged. An event that was
    /// already running when the agent answered (the tail of the link code's last digit) is not
    /// relayed: the code is the caller's secret, not the agent's.
    relay_this_event: bool,
}

/// An INVITE sent to one of the agent's registered phones.
struct Fork {
    tx: ClientTxId,
    request: Request,
    target: Target,
    done: bool,
}

// One agent leg per call, moved rarely: the size difference costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
enum AgentLeg {
    Ringing { forks: Vec<Fork>, media: MediaLeg },
    Connected { dialog: Dialog, media: MediaLeg },
}

struct Call {
    id: CallId,
    ctx: Arc<CallTaskContext>,
    tenant: Tenant,
    caller: Pii<String>,
    since: SystemTime,
    machine: CallMachine,
    /// The trunk's latest INVITE (the first, or a re-INVITE): our 2xx is resent through it.
    trunk_tx: ServerTxId,
    /// The agent phone's latest re-INVITE: our 2xx is resent through it.
    agent_invite_tx: Option<ServerTxId>,
    trunk: Dialog,
    trunk_media: MediaLeg,
    detector: Option<(DtmfDetector, Option<Instant>)>,
    comfort: Option<Box<dyn SignalSource + Send>>,
    next_frame: Instant,
    /// Hang up after the goodbye signal, at this time.
    goodbye_at: Option<Instant>,
    agent: Option<AgentLeg>,
    agent_legs_made: u32,
    lookup: Option<oneshot::Receiver<Result<crate::links::Verified, Unverified>>>,
    /// A synchronous handler decided to BYE the caller; [`Call::apply_actions`] sends it.
    bye_caller_pending: bool,
    /// The machine said Release; we stop once the goodbye signal (if any) has played.
    releasing: bool,
    /// Forks that lost or were cancelled: a late 2xx from them is ACKed and hung up.
    stale_forks: Vec<Fork>,
    /// We sent BYE to the trunk (or it sent one).
    caller_gone: bool,
    /// Our SIP address the trunk reached (Contact, agent-leg From/Call-ID host).
    sip_local: SocketAddr,
    /// Unique key of this call in the link-session store (call ids restart with the process).
    store_key: String,
    /// The trunk's SDP (its offer, or its answer in the ACK): which codecs it accepts.
    trunk_remote_sdp: Vec<u8>,
    /// The direct-media switch, once a connected call tries it (`media = "direct"`).
    direct: Option<DirectMedia>,
    /// Our in-dialog requests awaiting their final response.
    pending: Vec<connect::Pending>,
    finished: bool,
}

/// Runs a call from its INVITE to the end.
pub async fn run(
    ctx: Arc<CallTaskContext>,
    id: CallId,
    tenant: Tenant,
    invite_tx: ServerTxId,
    invite: Request,
    source: Source,
    mut inputs: mpsc::UnboundedReceiver<CallInput>,
) {
    let Some(mut call) = answer(&ctx, id, tenant, invite_tx, &invite, source).await else {
        let _ = ctx.ended.send(id);
        return;
    };
    let (cmd_tx, mut commands) = mpsc::channel(8);
    ctx.registry.insert(call.view(), cmd_tx);
    call.apply_actions().await;

    let mut trunk_buf = vec![0u8; 2048];
    let mut agent_buf = vec![0u8; 2048];
    // One timer for the task's life, moved only when the next deadline changes: most wake-ups are
    // RTP packets that leave it where it was (no timer-wheel insert and cancel per packet).
    let timer = tokio::time::sleep_until(call.next_deadline().into());
    tokio::pin!(timer);
    while !call.finished {
        let deadline = tokio::time::Instant::from_std(call.next_deadline());
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        tokio::select! {
            input = inputs.recv() => match input {
                Some(CallInput::Sip(event)) => call.handle_sip(event).await,
                None => break,
            },
            Some(command) = commands.recv() => call.handle_command(command),
            received = call.trunk_media.socket.recv_from(&mut trunk_buf) => {
                if let Ok((n, from)) = received {
                    call.handle_trunk_rtp(from, &trunk_buf[..n]);
                }
            }
            received = recv_agent(&call.agent, &mut agent_buf) => {
                if let Some((n, from)) = received {
                    call.handle_agent_rtp(from, &agent_buf[..n]);
                }
            }
            result = lookup_result(&mut call.lookup) => {
                call.lookup = None;
                call.handle_lookup(result);
            }
            _ = &mut timer => call.handle_timeout(),
        }
        call.apply_actions().await;
    }
    call.release().await;
}

async fn recv_agent(agent: &Option<AgentLeg>, buf: &mut [u8]) -> Option<(usize, SocketAddr)> {
    let socket = match agent {
        Some(AgentLeg::Ringing { media, .. }) | Some(AgentLeg::Connected { media, .. }) => {
            &media.socket
        }
        None => return std::future::pending().await,
    };
    socket.recv_from(buf).await.ok()
}

async fn lookup_result(
    lookup: &mut Option<oneshot::Receiver<Result<crate::links::Verified, Unverified>>>,
) -> Result<crate::links::Verified, Unverified> {
    match lookup {
        Some(rx) => rx.await.unwrap_or(Err(Unverified::IrmaError)),
        None => std::future::pending().await,
    }
}

/// Answers the trunk's INVITE at once with our SDP; `None` when the call could not be taken (the
/// INVITE was answered with an error).
async fn answer(
    ctx: &Arc<CallTaskContext>,
    id: CallId,
    tenant: Tenant,
    tx: ServerTxId,
    invite: &Request,
    source: Source,
) -> Option<Call> {
    let reject = |status: u16| tu::finish_response(invite, status, None);
    let now = Instant::now();
    let media_ip = media_ip(&ctx.flow, source.local);
    let media = match bind_media(&ctx.ports, media_ip).await {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(call = %id, "no RTP port for a new call: {e}; 503");
            let mut resp = reject(503);
            resp.headers
                .push(HeaderName::RetryAfter, ctx.flow.retry_after.to_string());
            let _ = ctx.sip.respond(tx, resp).await;
            return None;
        }
    };
    let (socket, lease) = media;
    let local = LocalMedia {
        addr: media_ip,
        rtp_port: lease.rtp_port(),
    };
    let mut sdp = LocalSdp::new(rand::random(), ctx.flow.media.clone());
    let (body, negotiated) = if invite.body.is_empty() {
        // Late offer: we offer in the 200, the trunk answers in the ACK.
        (sdp.offer(local, Direction::SendRecv), None)
    } else {
        match sdp.answer(&invite.body, local) {
            Ok(answer) => (answer.body, Some(answer.media)),
            Err(e) => {
                tracing::info!(call = %id, "cannot agree on media with the trunk: {e}");
                let mut resp = reject(e.sip_status());
                if e.sip_status() == 488 {
                    resp.headers.push(
                        HeaderName::parse("Warning"),
                        "304 veilig-bellen \"Media type not available\"",
                    );
                }
                let _ = ctx.sip.respond(tx, resp).await;
                return None;
            }
        }
    };
    let contact = match contact_for(source.local) {
        Some(c) => c,
        None => {
            let _ = ctx.sip.respond(tx, reject(500)).await;
            return None;
        }
    };
    // RFC 4028: honour the trunk's session timer; we refresh when it leaves that to us.
    let session_timer = sip::dialog::session_timer::answer_request(&Default::default(), invite);
    if let Some(too_small) = session_timer.reject(invite) {
        let _ = ctx.sip.respond(tx, too_small).await;
        return None;
    }
    let mut ok = tu::finish_response(invite, 200, None);
    session_timer.apply(&mut ok);
    ok.headers.push(HeaderName::Contact, contact.to_string());
    ok.headers.push(
        HeaderName::Allow,
        "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY",
    );
    ok.headers.push(HeaderName::Supported, "timer, replaces");
    ok.set_body(Some("application/sdp"), body);
    let peer = Target {
        transport: source.transport,
        addr: source.remote,
    };
    let mut dialog = match Dialog::uas(invite, &ok, contact, peer, ctx.flow.sip_timers) {
        Ok(d) => d,
        Err(e) => {
            tracing::info!(call = %id, "INVITE unusable for a dialog: {e}; 400");
            let _ = ctx.sip.respond(tx, reject(400)).await;
            return None;
        }
    };
    if ctx.sip.respond(tx, ok.clone()).await.is_err() {
        return None;
    }
    dialog.handle_sent_response(now, &ok);
    let rtp = negotiated.map(|m| RtpSession::new(now, m, rtp_config(&ctx.flow)));
    let caller = caller_of(invite);
    tracing::info!(call = %id, tenant = %tenant.id, "answered a call");
    Some(Call {
        id,
        ctx: ctx.clone(),
        tenant,
        caller,
        since: SystemTime::now(),
        machine: CallMachine::new(ctx.flow.call.clone(), now),
        trunk_tx: tx,
        agent_invite_tx: None,
        trunk: dialog,
        trunk_media: MediaLeg {
            socket,
            _lease: lease,
            local,
            sdp,
            rtp,
            relayed_event: None,
            relay_this_event: false,
        },
        detector: Some((DtmfDetector::new(), None)),
        // Silence while the code comes in: trunks hang up answered calls that send no RTP, and
        // the caller's NAT binding stays open.
        comfort: Some(Box::new(Silence)),
        next_frame: now,
        goodbye_at: None,
        agent: None,
        agent_legs_made: 0,
        lookup: None,
        bye_caller_pending: false,
        releasing: false,
        stale_forks: Vec::new(),
        caller_gone: false,
        sip_local: source.local,
        store_key: format!("{id}-{}", uuid::Uuid::new_v4()),
        trunk_remote_sdp: invite.body.to_vec(),
        direct: None,
        pending: Vec::new(),
        finished: false,
    })
}

impl Call {
    fn view(&self) -> CallView {
        let (verified, reason, attributes) = match self.machine.classification() {
            Some(Classification::Verified(attrs)) => (true, None, attrs.clone()),
            Some(Classification::Unverified(r)) => (false, Some(*r), Vec::new()),
            None => (false, None, Vec::new()),
        };
        CallView {
            id: self.id,
            tenant: self.tenant.id.clone(),
            state: self.machine.state(),
            verified,
            reason,
            caller: self.caller.clone(),
            attributes,
            since: self.since,
            agent: self.machine.agent().cloned(),
            ended_at: None,
            media: self.direct.as_ref().map_or(MediaPath::Relay, |d| d.path()),
            transferred: self.machine.transferred(),
        }
    }

    /// The view changed: publish it (the registry drops personal data once it shows `ended`).
    fn publish(&self) {
        let view = self.view();
        let now = SystemTime::now();
        self.ctx.registry.update(self.id, |v| {
            let ended_at = match view.state {
                CallState::Ended => v.ended_at.or(Some(now)),
                _ => None,
            };
            *v = view;
            v.ended_at = ended_at;
        });
    }

    fn next_deadline(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        let mut t = far;
        let mut consider = |d: Option<Instant>| {
            if let Some(d) = d {
                t = t.min(d);
            }
        };
        consider(self.machine.poll_timeout());
        consider(self.direct.as_ref().and_then(DirectMedia::poll_timeout));
        consider(self.trunk.poll_timeout());
        consider(self.trunk_media.rtp.as_ref().and_then(|r| r.poll_timeout()));
        if self.comfort.is_some() {
            consider(Some(self.next_frame));
        }
        consider(self.goodbye_at);
        if let Some(AgentLeg::Connected { dialog, media }) = &self.agent {
            consider(dialog.poll_timeout());
            consider(media.rtp.as_ref().and_then(|r| r.poll_timeout()));
        }
        t
    }

    fn handle_timeout(&mut self) {
        let now = Instant::now();
        self.machine.handle_timeout(now);
        if let Some(direct) = &mut self.direct {
            direct.handle_timeout(now);
        }
        self.trunk.handle_timeout(now);
        if let Some(rtp) = &mut self.trunk_media.rtp {
            rtp.handle_timeout(now);
        }
        self.drain_trunk_rtp_events();
        if let Some(AgentLeg::Connected { dialog, media }) = &mut self.agent {
            dialog.handle_timeout(now);
            if let Some(rtp) = &mut media.rtp {
                rtp.handle_timeout(now);
                while rtp.poll_event().is_some() {}
            }
        }
        if self.comfort.is_some() && now >= self.next_frame {
            self.send_comfort_frame(now);
        }
        if self.goodbye_at.is_some_and(|t| now >= t) {
            self.goodbye_at = None;
            self.comfort = None;
            self.bye_caller_pending = true;
            if self.releasing {
                self.finished = true;
            }
        }
    }

    fn handle_command(&mut self, command: CallCommand) {
        let now = Instant::now();
        match command {
            CallCommand::Answer { agent } => self.machine.handle_answer_request(now, agent),
            CallCommand::Hangup => self.machine.handle_hangup_request(now),
        }
    }

    fn handle_lookup(&mut self, result: Result<crate::links::Verified, Unverified>) {
        let now = Instant::now();
        let classification = match result {
            Ok(verified) => Classification::Verified(
                verified
                    .attributes
                    .iter()
                    .map(|a| ShownAttribute {
                        id: a.id.clone(),
                        label: a.label_nl.clone(),
                        value: a.value.clone(),
                    })
                    .collect(),
            ),
            Err(reason) => Classification::Unverified(map_reason(reason)),
        };
        self.machine.handle_lookup(now, classification);
    }
}

fn map_reason(reason: Unverified) -> UnverifiedReason {
    match reason {
        Unverified::NoCode => UnverifiedReason::NoCode,
        Unverified::IncompleteCode => UnverifiedReason::IncompleteCode,
        Unverified::UnknownCode => UnverifiedReason::UnknownCode,
        Unverified::ExpiredCode => UnverifiedReason::ExpiredCode,
        Unverified::UsedCode => UnverifiedReason::UsedCode,
        Unverified::IrmaError => UnverifiedReason::IrmaError,
    }
}

fn rtp_config(flow: &CallFlowConfig) -> RtpConfig {
    RtpConfig {
        local_ssrc: rand::random(),
        initial_seq: rand::random(),
        initial_timestamp: rand::random(),
        media_timeout: flow.media_timeout,
        ..RtpConfig::default()
    }
}

fn media_ip(flow: &CallFlowConfig, local: SocketAddr) -> IpAddr {
    match flow.media_ip {
        Some(ip) => ip,
        None if local.ip().is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        None => local.ip(),
    }
}

async fn bind_media(ports: &SharedPortPool, ip: IpAddr) -> Result<(UdpSocket, PortLease), String> {
    let mut last = String::from("no attempt");
    for _ in 0..BIND_ATTEMPTS {
        let lease = ports.allocate().map_err(|e| e.to_string())?;
        match UdpSocket::bind(SocketAddr::new(ip, lease.rtp_port())).await {
            Ok(socket) => return Ok((socket, lease)),
            Err(e) => {
                last = format!("port {}: {e}", lease.rtp_port());
                lease.taken_elsewhere();
            }
        }
    }
    Err(last)
}

fn contact_for(local: SocketAddr) -> Option<NameAddr> {
    let host = sip::endpoint::host_text(local.ip());
    Uri::sip(Some("veilig-bellen"), &host, Some(local.port()))
        .ok()
        .map(NameAddr::new)
}

/// The calling number: P-Asserted-Identity when the trunk sends it, else the From URI's user part.
fn caller_of(invite: &Request) -> Pii<String> {
    let from_pai = invite
        .headers
        .p_asserted_identity()
        .filter_map(Result::ok)
        .find_map(|na| uri_number(&na.uri));
    let from_from = invite.headers.from().ok().and_then(|f| uri_number(&f.uri));
    Pii::new(
        from_pai
            .or(from_from)
            .unwrap_or_else(|| "anonymous".to_owned()),
    )
}

/// The number in a `tel:` URI, or the user part of a `sip:` URI, without parameters.
pub(super) fn uri_number(uri: &Uri) -> Option<String> {
    if uri.scheme_str().eq_ignore_ascii_case("tel") {
        let o = uri.opaque();
        return Some(o.split(';').next().unwrap_or(o).to_owned());
    }
    uri.user()
        .map(|u| u.split(';').next().unwrap_or(u).to_owned())
}

impl Call {
    // ---- media -------------------------------------------------------------------------------

    fn handle_trunk_rtp(&mut self, from: SocketAddr, bytes: &[u8]) {
        let now = Instant::now();
        let Some(rtp) = self.trunk_media.rtp.as_mut() else {
            return;
        };
        let codec = rtp.media().codec.kind();
        match rtp.handle_packet(now, from, bytes) {
            Ok(Received::Audio(info)) => {
                if let Some((detector, base)) = &mut self.detector {
                    let mut pcm = [0i16; 2 * FRAME * 4];
                    let n = info.payload.len().min(pcm.len());
                    decode(codec, &info.payload[..n], &mut pcm[..n]);
                    // Sample positions map to wall time from the first audio packet on.
                    let base = *base.get_or_insert(now);
                    detector.push(&pcm[..n]);
                    while let Some(event) = detector.poll_event() {
                        if let DtmfEvent::Ended { digit, start, end } = event {
                            self.machine.handle_inband_digit(
                                now,
                                digit,
                                base + samples(start),
                                base + samples(end),
                            );
                        }
                    }
                }
                if let Some(AgentLeg::Connected { media, .. }) = &mut self.agent {
                    if relay_audio(now, codec, info.payload, media) {
                        self.count_relayed();
                    }
                }
            }
            Ok(Received::TelephoneEvent(info)) => {
                let new_event = self.trunk_media.relayed_event != Some(info.timestamp);
                self.trunk_media.relayed_event = Some(info.timestamp);
                let bridged = matches!(self.agent, Some(AgentLeg::Connected { .. }));
                if new_event {
                    self.trunk_media.relay_this_event = bridged;
                }
                if let (true, Some(AgentLeg::Connected { media, .. }), Ok(event)) = (
                    self.trunk_media.relay_this_event,
                    &mut self.agent,
                    EventPayload::parse(info.payload),
                ) {
                    if relay_event(now, event, new_event, media) {
                        self.count_relayed();
                    }
                }
            }
            Ok(_) | Err(_) => {}
        }
        self.drain_trunk_rtp_events();
    }

    fn handle_agent_rtp(&mut self, from: SocketAddr, bytes: &[u8]) {
        let now = Instant::now();
        let Some(AgentLeg::Connected { media, .. }) = &mut self.agent else {
            return;
        };
        let Some(rtp) = media.rtp.as_mut() else {
            return;
        };
        let codec = rtp.media().codec.kind();
        let relayed = match rtp.handle_packet(now, from, bytes) {
            Ok(Received::Audio(info)) => {
                relay_audio(now, codec, info.payload, &mut self.trunk_media)
            }
            Ok(Received::TelephoneEvent(info)) => {
                let new_event = media.relayed_event != Some(info.timestamp);
                media.relayed_event = Some(info.timestamp);
                EventPayload::parse(info.payload)
                    .is_ok_and(|event| relay_event(now, event, new_event, &mut self.trunk_media))
            }
            Ok(_) | Err(_) => false,
        };
        while rtp.poll_event().is_some() {}
        if relayed {
            self.count_relayed();
        }
    }

    fn drain_trunk_rtp_events(&mut self) {
        let now = Instant::now();
        let Some(rtp) = self.trunk_media.rtp.as_mut() else {
            return;
        };
        while let Some(event) = rtp.poll_event() {
            match event {
                RtpEvent::Digit(DigitEvent::DigitStart { digit, at }) => {
                    self.machine
                        .handle_digit(at, DigitSource::Rfc4733, digit.as_char())
                }
                RtpEvent::Digit(DigitEvent::DigitEnd { digit, .. }) => {
                    self.machine.handle_digit_end(now, digit.as_char())
                }
                // On direct media the trunk's RTP goes to the agent, not to us.
                RtpEvent::MediaTimeout
                    if self
                        .direct
                        .as_ref()
                        .is_some_and(DirectMedia::trunk_media_elsewhere) => {}
                RtpEvent::MediaTimeout => {
                    tracing::info!(call = %self.id, "no RTP from the caller for too long; ending the call");
                    self.bye_caller_pending = true;
                    self.machine.handle_caller_gone(now);
                }
                RtpEvent::Latched(_) | RtpEvent::SsrcChanged { .. } => {}
            }
        }
    }

    fn send_comfort_frame(&mut self, now: Instant) {
        let Some(source) = self.comfort.as_mut() else {
            return;
        };
        let mut pcm = [0i16; FRAME];
        source.fill(&mut pcm);
        if let Some(rtp) = self.trunk_media.rtp.as_mut() {
            let mut payload = [0u8; FRAME];
            encode(rtp.media().codec.kind(), &pcm, &mut payload);
            let mut packet = [0u8; RTP_HEADER_LEN + FRAME];
            if let Some((dest, len)) = rtp.send_audio_into(now, &payload, FRAME as u32, &mut packet)
            {
                let _ = self.trunk_media.socket.try_send_to(&packet[..len], dest);
            }
        }
        self.next_frame += FRAME_TIME;
        if self.next_frame + 5 * FRAME_TIME < now {
            // We fell far behind (a stalled runtime); don't burst to catch up.
            self.next_frame = now + FRAME_TIME;
        }
    }

    // ---- SIP -----------------------------------------------------------------------------------

    async fn handle_sip(&mut self, event: Event) {
        let now = Instant::now();
        match event {
            Event::Request { id, request, .. } => {
                if self.trunk.matches_request(&request) {
                    self.handle_in_dialog(now, id, request, Leg::Trunk).await;
                } else if matches!(&self.agent, Some(AgentLeg::Connected { dialog, .. }) if dialog.matches_request(&request))
                {
                    self.handle_in_dialog(now, id, request, Leg::Agent).await;
                } else {
                    let _ = self
                        .ctx
                        .sip
                        .respond(id, tu::finish_response(&request, 481, None))
                        .await;
                }
            }
            Event::Ack { request, .. } => {
                if self.trunk.matches_request(&request) {
                    self.trunk.handle_ack(now, &request);
                    if self.trunk_media.rtp.is_none() && !request.body.is_empty() {
                        self.trunk_remote_sdp = request.body.to_vec();
                        match self.trunk_media.sdp.handle_answer(&request.body) {
                            Ok(media) => {
                                self.trunk_media.rtp =
                                    Some(RtpSession::new(now, media, rtp_config(&self.ctx.flow)))
                            }
                            Err(e) => {
                                tracing::info!(call = %self.id, "trunk's SDP answer in ACK unusable: {e}");
                                self.bye_caller_pending = true;
                                self.machine.handle_caller_gone(now);
                            }
                        }
                    } else if !connect::direct_ack(
                        &mut self.direct,
                        now,
                        Leg::Trunk,
                        &self.trunk_media,
                        &request.body,
                    ) {
                        ack_answer(now, &mut self.trunk_media, &request.body);
                    }
                } else if let Some(AgentLeg::Connected { dialog, media }) = &mut self.agent {
                    // The agent's phone ACKs our 2xx to its re-INVITE (hold/resume): without this
                    // the dialog gives up after 64·T1 and the call loses its agent.
                    if dialog.matches_request(&request) {
                        dialog.handle_ack(now, &request);
                        if !connect::direct_ack(
                            &mut self.direct,
                            now,
                            Leg::Agent,
                            media,
                            &request.body,
                        ) {
                            ack_answer(now, media, &request.body);
                        }
                    }
                }
            }
            Event::Cancelled { .. } => self.machine.handle_caller_gone(now),
            Event::Response { id, response } => self.handle_response(now, id, response).await,
            Event::Timeout { id } | Event::TransportError { id } => {
                if let sip::endpoint::TxId::Client(tx) = id {
                    if !self.handle_dialog_timeout(now, tx).await {
                        self.fork_failed(now, tx, 408);
                    }
                }
            }
        }
    }

    async fn handle_in_dialog(&mut self, now: Instant, id: ServerTxId, request: Request, leg: Leg) {
        let (dialog, media) = match leg {
            Leg::Trunk => (&mut self.trunk, &mut self.trunk_media),
            Leg::Agent => match &mut self.agent {
                Some(AgentLeg::Connected { dialog, media }) => (dialog, media),
                _ => return,
            },
        };
        if let Err(response) = dialog.handle_request(now, &request) {
            let _ = self.ctx.sip.respond(id, response).await;
            return;
        }
        let ok = |d: &Dialog| d.response(&request, StatusCode::OK);
        match request.method {
            Method::Bye => {
                let _ = self.ctx.sip.respond(id, ok(dialog)).await;
                match leg {
                    Leg::Trunk => {
                        self.caller_gone = true;
                        self.machine.handle_caller_gone(now)
                    }
                    Leg::Agent => {
                        // The agent's dialog is over: nothing to BYE or CANCEL on release.
                        self.agent = None;
                        self.machine.handle_agent_gone(now)
                    }
                }
            }
            Method::Update if request.body.is_empty() => {
                // A refresh without an offer gets no answer (RFC 3311 §5.2, RFC 4028 §9).
                let _ = self.ctx.sip.respond(id, ok(dialog)).await;
            }
            Method::Invite | Method::Update => {
                // Hold/unhold, session refresh, or a new media address. While direct, answered
                // with the other endpoint's media and mirrored to the other leg (direct_sync.rs).
                let mut response = ok(dialog);
                let reply = connect::direct_reply(&mut self.direct, now, leg, &request.body);
                let body = if let Offer::Peer(p) = reply {
                    connect::peer_sdp(media, p, &self.ctx.flow.media)
                } else if request.body.is_empty() {
                    media.sdp.offer(media.local, Direction::SendRecv)
                } else {
                    match media.sdp.answer(&request.body, media.local) {
                        Ok(answer) => {
                            match media.rtp.as_mut() {
                                Some(rtp) => rtp.update_media(now, answer.media),
                                None => {
                                    media.rtp = Some(RtpSession::new(
                                        now,
                                        answer.media,
                                        rtp_config(&self.ctx.flow),
                                    ))
                                }
                            }
                            answer.body
                        }
                        Err(e) => {
                            let status = StatusCode::new(e.sip_status())
                                .unwrap_or(StatusCode::SERVER_INTERNAL_ERROR);
                            let _ = self
                                .ctx
                                .sip
                                .respond(id, dialog.response(&request, status))
                                .await;
                            return;
                        }
                    }
                };
                response.set_body(Some("application/sdp"), body);
                if request.method == Method::Invite {
                    dialog.handle_sent_response(now, &response);
                    // The 2xx is resent through this INVITE's transaction until the ACK comes.
                    match leg {
                        Leg::Trunk => self.trunk_tx = id,
                        Leg::Agent => self.agent_invite_tx = Some(id),
                    }
                }
                let _ = self.ctx.sip.respond(id, response).await;
            }
            Method::Info => {
                let digit = dtmf_from_info(&request);
                let status = if digit.is_some() || request.body.is_empty() {
                    StatusCode::OK
                } else {
                    StatusCode::new(415).unwrap_or(StatusCode::OK)
                };
                let _ = self
                    .ctx
                    .sip
                    .respond(id, dialog.response(&request, status))
                    .await;
                if let (Some(d), Leg::Trunk) = (digit, leg) {
                    self.machine.handle_digit(now, DigitSource::Info, d);
                }
            }
            Method::Notify => {
                let _ = self.ctx.sip.respond(id, ok(dialog)).await;
                if leg == Leg::Trunk {
                    self.handle_refer_notify(now, &request);
                }
            }
            Method::Options => {
                let _ = self.ctx.sip.respond(id, ok(dialog)).await;
            }
            Method::Refer => {
                // Nobody transfers our calls but us.
                let _ = self
                    .ctx
                    .sip
                    .respond(
                        id,
                        dialog.response(&request, StatusCode::new(403).unwrap_or(StatusCode::OK)),
                    )
                    .await;
            }
            _ => {
                let _ = self
                    .ctx
                    .sip
                    .respond(
                        id,
                        dialog.response(&request, StatusCode::new(501).unwrap_or(StatusCode::OK)),
                    )
                    .await;
            }
        }
    }

    async fn handle_response(&mut self, now: Instant, id: ClientTxId, response: Response) {
        if self.handle_dialog_response(now, id, &response).await
            || self.reack_trunk(&response).await
        {
            return;
        }
        let status = response.status.as_u16();
        let is_invite = response
            .headers
            .cseq()
            .map(|c| c.method == Method::Invite)
            .unwrap_or(false);
        if let Some(AgentLeg::Ringing { forks, .. }) = &mut self.agent {
            if let Some(i) = forks.iter().position(|f| f.tx == id) {
                if response.status.is_provisional() {
                    return;
                }
                if response.status.is_success() {
                    self.connect_agent(now, i, response).await;
                } else {
                    self.fork_failed(now, id, status);
                }
                return;
            }
        }
        if is_invite && response.status.is_success() {
            match &mut self.agent {
                Some(AgentLeg::Connected { dialog, .. }) if dialog.matches_response(&response) => {
                    // A retransmitted 2xx: our ACK was lost. ACK again.
                    let cseq = response.headers.cseq().map(|c| c.seq).unwrap_or(1);
                    let ack = dialog.ack(cseq);
                    let _ = self.ctx.sip.send_ack(ack, dialog.peer()).await;
                }
                _ => self.ack_and_bye_stray(now, id, &response).await,
            }
        }
    }

    /// A phone of the agent answered: it wins, the other forks are cancelled.
    async fn connect_agent(&mut self, now: Instant, index: usize, response: Response) {
        let Some(AgentLeg::Ringing { forks, media }) = self.agent.take() else {
            return;
        };
        // `index` came from `position()` on these very forks.
        let fork = &forks[index];
        let tx = fork.tx;
        let dialog = match Dialog::uac(
            now,
            &fork.request,
            &response,
            fork.target,
            self.ctx.flow.sip_timers,
        ) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(call = %self.id, "agent's 200 OK unusable for a dialog: {e}");
                self.agent = Some(AgentLeg::Ringing { forks, media });
                self.fork_failed(now, tx, 500);
                return;
            }
        };
        let cseq = fork.request.headers.cseq().map(|c| c.seq).unwrap_or(1);
        let _ = self.ctx.sip.send_ack(dialog.ack(cseq), dialog.peer()).await;
        for (i, other) in forks.iter().enumerate() {
            if i != index && !other.done {
                let _ = self.ctx.sip.cancel(other.tx).await;
            }
        }
        let mut media = media;
        match media.sdp.handle_answer(&response.body) {
            Ok(m) => media.rtp = Some(RtpSession::new(now, m, rtp_config(&self.ctx.flow))),
            Err(e) => {
                tracing::warn!(call = %self.id, "agent's SDP answer unusable: {e}; no audio to the agent")
            }
        }
        self.stale_forks.extend(
            forks
                .into_iter()
                .enumerate()
                .filter(|(i, _)| *i != index)
                .map(|(_, f)| f),
        );
        self.agent = Some(AgentLeg::Connected { dialog, media });
        self.machine.handle_agent_answered(now);
    }

    fn fork_failed(&mut self, now: Instant, tx: ClientTxId, status: u16) {
        let Some(AgentLeg::Ringing { forks, .. }) = &mut self.agent else {
            return;
        };
        let Some(fork) = forks.iter_mut().find(|f| f.tx == tx) else {
            return;
        };
        fork.done = true;
        if forks.iter().all(|f| f.done) {
            let why = if matches!(status, 486 | 600 | 603) {
                AgentLegFailure::Busy
            } else {
                AgentLegFailure::Rejected
            };
            self.agent = None;
            self.machine.handle_agent_failed(now, why);
        }
    }

    /// A 2xx we no longer want (a losing fork, or after the call moved on): ACK it, then BYE it.
    async fn ack_and_bye_stray(&mut self, now: Instant, id: ClientTxId, response: &Response) {
        let Some(fork) = self.stale_forks.iter().find(|f| f.tx == id) else {
            return;
        };
        if let Ok(mut dialog) = Dialog::uac(
            now,
            &fork.request,
            response,
            fork.target,
            self.ctx.flow.sip_timers,
        ) {
            let cseq = fork.request.headers.cseq().map(|c| c.seq).unwrap_or(1);
            let _ = self.ctx.sip.send_ack(dialog.ack(cseq), dialog.peer()).await;
            if let Ok(bye) = dialog.bye() {
                let _ = self.ctx.sip.send_request(bye, dialog.peer()).await;
            }
        }
    }

    async fn ring_agent(&mut self, now: Instant, agent: AgentId) {
        let username = self
            .tenant
            .agents
            .get(&agent)
            .map(|a| a.sip_username.clone());
        let bindings = match username {
            Some(u) => self.ctx.sip.lookup(&u).await.unwrap_or_default(),
            None => Vec::new(),
        };
        if bindings.is_empty() {
            tracing::info!(call = %self.id, agent = %agent, "agent has no registered phone");
            self.machine
                .handle_agent_failed(now, AgentLegFailure::NoContacts);
            return;
        }
        let ip = self.trunk_media.local.addr;
        let (socket, lease) = match bind_media(&self.ctx.ports, ip).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(call = %self.id, "no RTP port for the agent leg: {e}");
                self.machine
                    .handle_agent_failed(now, AgentLegFailure::Rejected);
                return;
            }
        };
        let local = LocalMedia {
            addr: ip,
            rtp_port: lease.rtp_port(),
        };
        let mut sdp = LocalSdp::new(rand::random(), self.ctx.flow.media.clone());
        let offer = sdp.offer(local, Direction::SendRecv);
        let mut forks = Vec::new();
        for binding in bindings {
            self.agent_legs_made += 1;
            let request = match self.agent_invite(&binding, &offer) {
                Some(r) => r,
                None => continue,
            };
            let target = Target {
                transport: binding.transport,
                addr: binding.target,
            };
            match self.ctx.sip.send_request(request.clone(), target).await {
                Ok(tx) => {
                    self.lock_routes().client_txs.insert(tx, self.id);
                    forks.push(Fork {
                        tx,
                        request,
                        target,
                        done: false,
                    });
                }
                Err(e) => tracing::warn!(call = %self.id, "could not INVITE an agent phone: {e}"),
            }
        }
        if forks.is_empty() {
            self.machine
                .handle_agent_failed(now, AgentLegFailure::Rejected);
            return;
        }
        let media = MediaLeg {
            socket,
            _lease: lease,
            local,
            sdp,
            rtp: None,
            relayed_event: None,
            relay_this_event: false,
        };
        self.agent = Some(AgentLeg::Ringing { forks, media });
    }

    fn agent_invite(&self, binding: &sip::registrar::Binding, offer: &[u8]) -> Option<Request> {
        let uri = binding.contact.uri.clone();
        let mut req = Request::new(Method::Invite, uri.clone());
        let host = self.local_host();
        let caller = self.caller.expose();
        let from_user: String = caller
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '+')
            .collect();
        let from_user = if from_user.is_empty() {
            "anonymous".to_owned()
        } else {
            from_user
        };
        let display = match self.machine.classification() {
            Some(Classification::Verified(_)) => "Veilig bellen (geverifieerd)",
            _ => "Veilig bellen (niet geverifieerd)",
        };
        req.headers.push(
            HeaderName::From,
            format!(
                "\"{display}\" <sip:{from_user}@{host}>;tag={}",
                tu::new_tag()
            ),
        );
        req.headers
            .push(HeaderName::To, format!("<{}>", uri.as_str()));
        req.headers.push(
            HeaderName::CallId,
            format!(
                "{AGENT_CALL_ID_PREFIX}{}-{}-{:08x}@{host}",
                self.id,
                self.agent_legs_made,
                rand::random::<u32>()
            ),
        );
        req.headers.push(HeaderName::CSeq, "1 INVITE");
        req.headers
            .push(HeaderName::Contact, format!("<sip:veilig-bellen@{host}>"));
        for path in &binding.path {
            req.headers.push(HeaderName::Route, path.clone());
        }
        req.headers.push(
            HeaderName::Allow,
            "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE",
        );
        req.headers
            .push(HeaderName::parse("User-Agent"), tu::PRODUCT);
        req.set_body(Some("application/sdp"), offer.to_vec());
        Some(req)
    }

    /// `host:port` of our SIP address (IPv6 in brackets, as `SocketAddr` writes it).
    fn local_host(&self) -> String {
        self.sip_local.to_string()
    }

    fn lock_routes(&self) -> std::sync::MutexGuard<'_, Routes> {
        // Critical sections only insert/remove map entries; a poisoned lock still holds consistent maps.
        self.ctx.routes.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn bye_caller(&mut self) {
        if self.caller_gone {
            return;
        }
        self.caller_gone = true;
        if let Ok(bye) = self.trunk.bye() {
            let _ = self.ctx.sip.send_request(bye, self.trunk.peer()).await;
        }
    }

    async fn hangup_agent(&mut self) {
        match self.agent.take() {
            Some(AgentLeg::Connected { mut dialog, .. }) => {
                if let Ok(bye) = dialog.bye() {
                    let _ = self.ctx.sip.send_request(bye, dialog.peer()).await;
                }
            }
            Some(AgentLeg::Ringing { forks, .. }) => {
                for fork in forks.iter().filter(|f| !f.done) {
                    let _ = self.ctx.sip.cancel(fork.tx).await;
                }
                self.stale_forks.extend(forks);
            }
            None => {}
        }
    }

    /// Applies everything the state machines asked for, until they are quiet.
    async fn apply_actions(&mut self) {
        // Re-INVITEs the dialogs ask for: (leg, glare retry rather than session refresh).
        let mut offers: Vec<(Leg, bool)> = Vec::new();
        loop {
            let mut busy = false;
            while let Some(action) = self.machine.poll_action() {
                busy = true;
                self.apply(action).await;
            }
            while let Some(event) = self.trunk.poll_event() {
                busy = true;
                match event {
                    DialogEvent::Retransmit2xx(response) => {
                        let _ = self.ctx.sip.respond(self.trunk_tx, response).await;
                    }
                    DialogEvent::AckTimeout | DialogEvent::SessionExpired => {
                        tracing::info!(call = %self.id, "trunk dialog lost (no ACK or session expired)");
                        self.bye_caller_pending = true;
                        self.machine.handle_caller_gone(Instant::now());
                    }
                    DialogEvent::RetryOffer => offers.push((Leg::Trunk, true)),
                    DialogEvent::SessionRefreshDue => offers.push((Leg::Trunk, false)),
                }
            }
            if let Some(AgentLeg::Connected { dialog, .. }) = &mut self.agent {
                let mut gone = false;
                let mut resend = Vec::new();
                while let Some(event) = dialog.poll_event() {
                    match event {
                        DialogEvent::SessionExpired | DialogEvent::AckTimeout => gone = true,
                        DialogEvent::RetryOffer => offers.push((Leg::Agent, true)),
                        DialogEvent::SessionRefreshDue => offers.push((Leg::Agent, false)),
                        DialogEvent::Retransmit2xx(response) => resend.push(response),
                    }
                }
                for response in resend {
                    if let Some(tx) = self.agent_invite_tx {
                        let _ = self.ctx.sip.respond(tx, response).await;
                    }
                }
                if gone {
                    busy = true;
                    self.machine.handle_agent_gone(Instant::now());
                }
            }
            for (leg, retry) in offers.drain(..) {
                busy = true;
                if retry {
                    self.retry_offer(leg).await;
                } else {
                    self.refresh_session(leg).await;
                }
            }
            busy |= self.drive_direct().await;
            if std::mem::take(&mut self.bye_caller_pending) {
                busy = true;
                self.bye_caller().await;
            }
            if !busy {
                break;
            }
        }
    }

    async fn apply(&mut self, action: Action) {
        let now = Instant::now();
        match action {
            Action::LookupCode(code) => {
                let links = self.ctx.links.clone();
                let key = self.store_key.clone();
                let (tx, rx) = oneshot::channel();
                tokio::spawn(async move {
                    let result = links.bind_code(&code, &key, crate::store::unix_now()).await;
                    let _ = tx.send(result);
                });
                self.lookup = Some(rx);
            }
            Action::StopDigitDetection => self.detector = None,
            Action::StartComfort => {
                self.comfort = Some(match &self.ctx.flow.comfort {
                    Comfort::Ringback => Box::new(ToneGenerator::dutch_ringback()),
                    Comfort::Prompt(samples) => match LoopedPrompt::new(samples.clone()) {
                        Ok(p) => Box::new(p),
                        Err(_) => Box::new(ToneGenerator::dutch_ringback()),
                    },
                });
                self.next_frame = now;
            }
            Action::StopComfort => self.comfort = None,
            Action::RingAgent(agent) => self.ring_agent(now, agent).await,
            Action::CancelAgent => self.hangup_agent().await,
            Action::Bridge => {
                if self.ctx.flow.agent_media == AgentMedia::Direct {
                    self.start_direct_media(now);
                }
            }
            Action::ReferToAgent(agent) => self.refer_to_agent(now, agent).await,
            Action::Transfer(target) => {
                tracing::info!(call = %self.id, "nobody answered in time: transferring the caller to the fallback");
                self.send_refer(now, &target).await;
            }
            Action::Goodbye => {
                self.comfort = Some(Box::new(ToneGenerator::dutch_busy()));
                self.next_frame = now;
                self.goodbye_at = Some(now + GOODBYE_TIME);
            }
            Action::HangupCaller => self.bye_caller_pending = true,
            Action::HangupAgent => self.hangup_agent().await,
            Action::Publish => self.publish(),
            Action::Release => {
                self.releasing = true;
                if self.goodbye_at.is_none() {
                    self.finished = true;
                }
            }
        }
    }

    /// Everything the call held goes: legs, ports, attributes in memory and in the store.
    ///
    /// Sockets and RTP ports go first, and the call leaves the routes, before the (possibly slow,
    /// serialised) store write: the next call must not find the port pool empty because of it.
    async fn release(mut self) {
        self.hangup_agent().await;
        self.detector = None;
        self.comfort = None;
        self.stale_forks.clear();
        let stats = self.trunk_media.rtp.as_ref().map(|r| r.stats());
        let reason = self.view().reason;
        // Only a call that got as far as looking a code up can hold one in the store.
        let code_looked_up = self.lookup.is_some()
            || !matches!(
                self.machine.classification(),
                None | Some(Classification::Unverified(
                    UnverifiedReason::NoCode | UnverifiedReason::IncompleteCode
                ))
            );
        let Call {
            id,
            ctx,
            trunk_media,
            lookup,
            store_key,
            ..
        } = self;
        drop(trunk_media);
        ctx.registry.end(id, SystemTime::now());
        let _ = ctx.ended.send(id);
        let mut released = false;
        if code_looked_up {
            if let Some(in_flight) = lookup {
                // A bind still running would bind the code after we released it: let it finish.
                let _ = in_flight.await;
            }
            released = ctx
                .links
                .release_call(&store_key, crate::store::unix_now())
                .await;
        }
        tracing::info!(
            call = %id,
            reason = reason.map(|r| r.as_str()).unwrap_or("verified_or_unclassified"),
            held_code = released,
            packets = stats.map(|s| s.packets_received).unwrap_or(0),
            "call ended"
        );
    }
}

fn samples(n: u64) -> Duration {
    Duration::from_micros(n.saturating_mul(125))
}

fn decode(codec: CodecKind, input: &[u8], out: &mut [i16]) {
    match codec {
        CodecKind::Pcma => {
            dsp::g711::decode_alaw_into(input, out);
        }
        CodecKind::Pcmu => {
            dsp::g711::decode_ulaw_into(input, out);
        }
    }
}

fn encode(codec: CodecKind, input: &[i16], out: &mut [u8]) {
    match codec {
        CodecKind::Pcma => {
            dsp::g711::encode_alaw_into(input, out);
        }
        CodecKind::Pcmu => {
            dsp::g711::encode_ulaw_into(input, out);
        }
    }
}

/// An SDP body in the ACK of a re-INVITE that had none is the answer to the offer we made in our 2xx
/// (RFC 3264 §4, RFC 3261 §13.2.1): the peer may have moved its RTP. Other ACKs carry no body.
fn ack_answer(now: Instant, leg: &mut MediaLeg, body: &[u8]) {
    if body.is_empty() {
        return;
    }
    if let (Some(rtp), Ok(media)) = (leg.rtp.as_mut(), leg.sdp.handle_answer(body)) {
        rtp.update_media(now, media);
    }
}

/// Sends audio received on one leg out of the other, transcoding G.711 law when the legs differ.
/// Returns whether a packet went out.
fn relay_audio(now: Instant, from: CodecKind, payload: &[u8], to: &mut MediaLeg) -> bool {
    let Some(rtp) = to.rtp.as_mut() else {
        return false;
    };
    let target = rtp.media().codec.kind();
    let mut buf = [0u8; 2048];
    let n = payload.len().min(buf.len());
    for (o, &i) in buf[..n].iter_mut().zip(payload) {
        *o = match (from, target) {
            (CodecKind::Pcma, CodecKind::Pcmu) => dsp::g711::alaw_to_ulaw(i),
            (CodecKind::Pcmu, CodecKind::Pcma) => dsp::g711::ulaw_to_alaw(i),
            _ => i,
        };
    }
    let mut packet = [0u8; RTP_HEADER_LEN + 2048];
    match rtp.send_audio_into(now, &buf[..n], n as u32, &mut packet) {
        Some((dest, len)) => to.socket.try_send_to(&packet[..len], dest).is_ok(),
        None => false,
    }
}

/// Re-sends an RFC 4733 event with the other leg's payload type. Returns whether a packet went out.
fn relay_event(now: Instant, event: EventPayload, new_event: bool, to: &mut MediaLeg) -> bool {
    let Some(rtp) = to.rtp.as_mut() else {
        return false;
    };
    match rtp.send_event(now, event, new_event) {
        Some(t) => to.socket.try_send_to(&t.bytes, t.to).is_ok(),
        None => false,
    }
}

/// The digit of an INFO: `application/dtmf-relay` (`Signal=5`) or `application/dtmf` (`5`).
fn dtmf_from_info(request: &Request) -> Option<char> {
    let content_type = request
        .headers
        .get(&HeaderName::ContentType)?
        .to_ascii_lowercase();
    let body = std::str::from_utf8(&request.body).ok()?;
    let value = if content_type.starts_with("application/dtmf-relay") {
        body.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("signal")
                .then(|| v.trim().to_owned())
        })?
    } else if content_type.starts_with("application/dtmf") {
        body.trim().to_owned()
    } else {
        return None;
    };
    let mut chars = value.chars();
    let c = chars.next()?.to_ascii_uppercase();
    if chars.next().is_some() {
        // "10" and "11" are RFC 2833 codes for * and # in some trunks' dtmf-relay bodies.
        return match value.as_str() {
            "10" => Some('*'),
            "11" => Some('#'),
            _ => None,
        };
    }
    matches!(c, '0'..='9' | '*' | '#' | 'A'..='D').then_some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(content_type: &str, body: &str) -> Request {
        let raw = format!(
            "INFO sip:vb@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n\
             From: <sip:a@b>;tag=1\r\nTo: <sip:x@y>;tag=2\r\nCall-ID: c1\r\nCSeq: 2 INFO\r\n\
             Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        Request::parse(raw.into_bytes()).unwrap()
    }

    #[test]
    fn info_digits_in_both_trunk_formats() {
        assert_eq!(
            dtmf_from_info(&info(
                "application/dtmf-relay",
                "Signal=5\r\nDuration=160\r\n"
            )),
            Some('5')
        );
        assert_eq!(
            dtmf_from_info(&info(
                "application/dtmf-relay",
                "Signal= #\r\nDuration=100\r\n"
            )),
            Some('#')
        );
        assert_eq!(
            dtmf_from_info(&info("application/dtmf-relay", "Signal=11\r\n")),
            Some('#')
        );
        assert_eq!(dtmf_from_info(&info("application/dtmf", "7")), Some('7'));
        assert_eq!(dtmf_from_info(&info("application/dtmf", "x")), None);
        assert_eq!(dtmf_from_info(&info("text/plain", "5")), None);
    }
}
