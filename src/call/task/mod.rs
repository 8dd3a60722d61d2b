//! One tokio task per call: the thin driver around the sans-IO pieces of a call.
//!
//! It owns the call's [`CallMachine`], the trunk leg (SIP [`Dialog`], [`RtpSession`], RTP socket,
//! [`LocalSdp`]), the in-band [`DtmfDetector`], the comfort signal, and — once an agent takes the call
//! — the agent leg (parallel INVITE forks, then a UAC dialog and its own RTP socket). Media between the
//! legs is relayed here (B2BUA): audio transcoded PCMA↔PCMU by `dsp` when the legs differ, RFC 4733
//! events re-sent with the agent leg's payload type.
//!
//! Loop: wait for the first of {SIP input routed by the manager, agent command, RTP on either socket,
//! the code lookup, the earliest timer}; read `now` once (tokio's clock, so tests may pause it);
//! feed the input to the owning state machine; then apply what the machines ask for and publish the
//! call view. Nothing here decides *what* happens to the call: the [`CallMachine`] decides its
//! course, [`AgentForks`] which of the agent's phones won and which are CANCELled or ACKed and hung
//! up, and [`Teardown`] when the caller gets our BYE, when the loop ends and the release order.
//!
//! While the agent's phone holds a relayed call, the caller hears the comfort signal again
//! ([`AgentHold`] decides when, `hold.rs`), and the view shows `on_hold`.
//!
//! The connect modes (`media = "direct"` re-INVITEs, `transfer = "refer"`), RFC 4028 session refreshes
//! and every other in-dialog request *we* send are driven from `connect.rs`, a child module.
//!
//! This file owns the [`Call`] and its run loop, deadlines, actions and release. The rest of the
//! call's `impl` lives in child modules: `answer.rs` (answering the trunk's INVITE),
//! `media.rs` (RTP, relay, comfort signal), `dialog.rs` (SIP requests, ACKs and responses
//! on both legs), `agent.rs` (ringing the agent's phones) and `connect.rs`.
//!
//! When the call ends, in [`Teardown::release`]'s order: the agent's phone is hung up, every socket
//! and port lease is dropped, the registry shows the call ended (attributes leave memory), the
//! manager forgets the call's routes, and the link code is released in the store.
mod agent;
mod answer;
mod browser;
mod connect;
mod dialog;
mod media;

/// The digit an INFO request carries (RFC 6086 `application/dtmf-relay` or `application/dtmf`);
/// public for the fuzz target.
pub use dialog::dtmf_from_info;

use super::agent_forks::AgentForks;
pub use super::config::CallInput;
use super::config::{CallFlowConfig, Comfort, Routes};
use super::direct::{AgentMedia, DirectMedia, Leg, MediaPath};
use super::hold::{AgentHold, HoldEvent};
use super::machine::{Action, CallMachine, Classification};
use super::pacing::FrameClock;
use super::registry::{CallCommand, CallView, Registry, ShownAttribute};
use super::teardown::{AgentLegAt, Held, ReleaseStep, Teardown, TeardownAction};
use super::{CallId, CallState, UnverifiedReason};
use crate::links::{LinkService, Unverified};
use crate::pii::Pii;
use crate::rtp_ports::{PortLease, SharedPortPool};
use crate::sip_driver::SipHandle;
use crate::tenant::{Tenant, Tenants};
use dsp::dtmf::DtmfDetector;
use dsp::tone::{LoopedPrompt, SignalSource};
use sip::dialog::{Dialog, DialogEvent};
use sip::endpoint::{ServerTxId, Source};
use sip::message::{Request, Uri};
use sip::rtp::RtpSession;
use sip::sdp::{LocalMedia, LocalSdp};
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{mpsc, oneshot};

/// How long the goodbye signal plays before we hang up.
const GOODBYE_TIME: Duration = Duration::from_secs(3);

pub use browser::run_browser;

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
    /// Packets the relay forwarded between legs, all calls (`CallsProbe` in the manager).
    pub relayed: Arc<AtomicU64>,
    /// This call flow's instance (random, per start): calls' store keys are
    /// `<call id>-<instance>` ([`super::config::store_key`]), unique across restarts.
    pub instance: String,
    /// Where the SIP driver listens: the agent leg's Contact names the TCP or TLS listener when
    /// the phone is reached over it.
    pub sip_bound: crate::sip_driver::BoundAddrs,
}

/// One RTP leg: socket, port lease, SDP state and RTP session.
struct MediaLeg {
    socket: media::RtpSocket,
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
    /// SRTP contexts when the leg negotiated `RTP/SAVP` (agents' phones on TLS); kept in step
    /// with the RTP session's media by [`MediaLeg::srtp`].
    srtp: Option<sip::rtp::srtp::SrtpStreams>,
}

/// A datagram as received on a leg ([`MediaLeg::receive`]): as it came, or decrypted.
enum Datagram<'a> {
    Plain(&'a [u8]),
    Decrypted(bytes::BytesMut),
}

impl std::ops::Deref for Datagram<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Datagram::Plain(b) => b,
            Datagram::Decrypted(b) => b,
        }
    }
}

impl MediaLeg {
    /// The SRTP streams for what the leg negotiated last — built on first use and rebuilt when a
    /// re-INVITE changed the suite or a key — or `Ok(None)` for plain RTP. `Err` when the leg is
    /// secure but no context could be made: then nothing may be sent or accepted in clear.
    fn srtp(&mut self) -> Result<Option<&mut sip::rtp::srtp::SrtpStreams>, ()> {
        let Some(wanted) = self.rtp.as_ref().and_then(|r| r.media().srtp.as_ref()) else {
            self.srtp = None;
            return Ok(None);
        };
        if self.srtp.as_ref().map(|s| s.params()) != Some(wanted) {
            match sip::rtp::srtp::SrtpStreams::new(wanted) {
                Ok(streams) => self.srtp = Some(streams),
                Err(e) => {
                    tracing::error!("cannot set up SRTP for a call leg: {e}; its media stops");
                    self.srtp = None;
                    return Err(());
                }
            }
        }
        Ok(self.srtp.as_mut())
    }

    /// The RTP packet in datagram `bytes` received on this leg: as is on a plain leg; on an SRTP
    /// leg only if it authenticates and is no replay (`None` otherwise, counted), so a forged
    /// packet never latches, is never heard and never carries a digit.
    fn receive<'a>(&mut self, bytes: &'a [u8]) -> Option<Datagram<'a>> {
        match self.srtp() {
            Err(()) => None,
            Ok(None) => Some(Datagram::Plain(bytes)),
            Ok(Some(streams)) => match streams.unprotect(bytes) {
                Ok(plain) => Some(Datagram::Decrypted(plain)),
                Err(_) => {
                    crate::metrics::global().srtp_rejected();
                    None
                }
            },
        }
    }

    /// Sends the RTP packet `packet` to `dest`, as SRTP on a secure leg. Whether it went out.
    fn send_rtp(&mut self, packet: &[u8], dest: SocketAddr) -> bool {
        let protected;
        let bytes = match self.srtp() {
            Err(()) => return false,
            Ok(None) => packet,
            Ok(Some(streams)) => match streams.protect(packet) {
                Ok(p) => {
                    protected = p;
                    &protected[..]
                }
                Err(e) => {
                    tracing::debug!("SRTP protect failed: {e}");
                    return false;
                }
            },
        };
        self.socket.try_send_to(bytes, dest).is_ok()
    }
}

/// The agent leg's media and, once a phone answered, its dialog. Which phone rings, wins or is
/// cancelled is [`AgentForks`]'s to decide.
// One agent leg per call, moved rarely: the size difference costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
enum AgentLeg {
    Ringing { media: MediaLeg },
    Connected { dialog: Dialog, media: MediaLeg },
}

/// Who called, and how we reach them besides the RTP of [`Call::trunk_media`].
// One caller leg per call, never moved after the start: a Box would buy nothing.
#[allow(clippy::large_enum_variant)]
enum CallerLeg {
    /// A trunk's SIP call.
    Sip {
        dialog: Dialog,
        /// The trunk's latest INVITE (the first, or a re-INVITE): our 2xx is resent through it.
        invite_tx: ServerTxId,
        /// The trunk's SDP (its offer, or its answer in the ACK): which codecs it accepts.
        remote_sdp: Vec<u8>,
    },
    /// A citizen's browser (WebRTC): the gateway turns its media into plain RTP on loopback,
    /// towards `trunk_media`; hanging up closes it. No re-INVITEs, no REFER, no direct media.
    Browser(crate::webrtc::gateway::Gateway),
}

struct Call {
    id: CallId,
    ctx: Arc<CallTaskContext>,
    tenant: Tenant,
    caller: Pii<String>,
    since: SystemTime,
    machine: CallMachine,
    /// The agent phone's latest re-INVITE: our 2xx is resent through it.
    agent_invite_tx: Option<ServerTxId>,
    caller_leg: CallerLeg,
    /// The caller's media: the trunk's RTP, or the browser gateway's on loopback.
    trunk_media: MediaLeg,
    /// Where the agent leg's RTP socket is bound (for a browser call not `trunk_media`'s loopback
    /// address: the agent's phone must reach it).
    agent_media_ip: std::net::IpAddr,
    detector: Option<(DtmfDetector, Option<Instant>)>,
    comfort: Option<Box<dyn SignalSource + Send>>,
    comfort_clock: FrameClock,
    /// Whether the agent's phone holds the caller (relayed media only) and the comfort frames'
    /// pacing meanwhile (`hold.rs`).
    hold: AgentHold,
    /// The comfort signal the caller hears while the agent holds them.
    hold_signal: Option<Box<dyn SignalSource + Send>>,
    agent: Option<AgentLeg>,
    /// The INVITEs to the agent's phones: which one won, which are cancelled or hung up.
    forks: AgentForks,
    agent_legs_made: u32,
    lookup: Option<oneshot::Receiver<Result<crate::links::Verified, Unverified>>>,
    /// The caller's BYE, the goodbye signal, when the loop ends and the release order.
    teardown: Teardown,
    /// Our SIP address the trunk reached (Contact, agent-leg From/Call-ID host).
    sip_local: SocketAddr,
    /// Unique key of this call in the link-session store (call ids restart with the process; the
    /// key also names the call flow's instance).
    store_key: String,
    /// The direct-media switch, once a connected call tries it (`media = "direct"`).
    direct: Option<DirectMedia>,
    /// Our in-dialog requests awaiting their final response.
    pending: Vec<connect::Pending>,
}

/// Runs a call from its INVITE to the end.
pub async fn run(
    ctx: Arc<CallTaskContext>,
    id: CallId,
    tenant: Tenant,
    invite_tx: ServerTxId,
    invite: Request,
    source: Source,
    inputs: mpsc::Receiver<CallInput>,
) {
    let now = clock();
    let Some(call) = answer::answer(&ctx, now, id, tenant, invite_tx, &invite, source).await else {
        let _ = ctx.ended.send(id);
        return;
    };
    drive(call, now, inputs).await;
}

/// The call's loop, from its start (answered, or connected from the browser) to its release.
async fn drive(mut call: Call, now: Instant, mut inputs: mpsc::Receiver<CallInput>) {
    let ctx = call.ctx.clone();
    let (cmd_tx, mut commands) = mpsc::channel(8);
    ctx.registry.insert(call.view(), cmd_tx);
    call.apply_actions(now).await;

    let mut trunk_rx = media::RecvBatch::new();
    // Only a call with an agent leg reads into it (made when the leg appears).
    let mut agent_rx: Option<media::RecvBatch> = None;
    // One timer for the task's life, moved only when the next deadline changes: most wake-ups are
    // RTP packets that leave it where it was (no timer-wheel insert and cancel per packet).
    let timer = tokio::time::sleep_until(call.next_deadline(now).into());
    tokio::pin!(timer);
    let mut now = now;
    while !call.teardown.is_finished() {
        if call.agent.is_some() && agent_rx.is_none() {
            agent_rx = Some(media::RecvBatch::new());
        }
        let deadline = tokio::time::Instant::from_std(call.next_deadline(now));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        // Each branch reads the clock once, when its input is there: everything this turn
        // decides happens at that `now`.
        tokio::select! {
            input = inputs.recv() => match input {
                Some(CallInput::Sip(event)) => {
                    now = clock();
                    if is_bye(&event) {
                        call.drain_trunk_rtp(now, &mut trunk_rx);
                    }
                    call.handle_sip(now, *event).await
                }
                Some(CallInput::CallerHangup) => {
                    now = clock();
                    call.caller_hung_up(now)
                }
                None => break,
            },
            Some(command) = commands.recv() => {
                now = clock();
                call.handle_command(now, command)
            }
            received = call.trunk_media.socket.recv_batch(&mut trunk_rx) => {
                now = clock();
                if received.is_ok() {
                    for (from, bytes) in (0..trunk_rx.len()).filter_map(|i| trunk_rx.get(i)) {
                        call.handle_trunk_rtp(now, from, bytes);
                    }
                }
            }
            Some(batch) = recv_agent(&call.agent, &mut agent_rx) => {
                now = clock();
                for (from, bytes) in (0..batch.len()).filter_map(|i| batch.get(i)) {
                    call.handle_agent_rtp(now, from, bytes);
                }
            }
            event = browser_event(&mut call.caller_leg) => {
                now = clock();
                call.handle_browser(now, event);
            }
            result = lookup_result(&mut call.lookup) => {
                now = clock();
                call.lookup = None;
                call.handle_lookup(now, result);
            }
            _ = &mut timer => {
                now = clock();
                call.handle_timeout(now)
            }
        }
        call.apply_actions(now).await;
    }
    call.release().await;
}

/// Whether `event` is a BYE (the caller's, or the agent's: reading the caller's last packets first
/// costs nothing either way).
fn is_bye(event: &sip::endpoint::Event) -> bool {
    matches!(event, sip::endpoint::Event::Request { request, .. } if request.method == sip::message::Method::Bye)
}

/// The task's one time source: tokio's clock (so tests may pause it), as the `std` instant the
/// state machines take.
fn clock() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// The agent leg's next datagrams, into `batch`; never while there is no agent leg (or no batch).
async fn recv_agent<'a>(
    agent: &Option<AgentLeg>,
    batch: &'a mut Option<media::RecvBatch>,
) -> Option<&'a media::RecvBatch> {
    let (Some(AgentLeg::Ringing { media } | AgentLeg::Connected { media, .. }), Some(batch)) =
        (agent, batch)
    else {
        return std::future::pending().await;
    };
    media.socket.recv_batch(batch).await.ok()?;
    Some(batch)
}

/// The browser gateway's next event; never, for a SIP call. A gateway that is gone reads as closed.
async fn browser_event(leg: &mut CallerLeg) -> crate::webrtc::gateway::GatewayEvent {
    match leg {
        CallerLeg::Browser(gateway) => match gateway.events.recv().await {
            Some(event) => event,
            None => crate::webrtc::gateway::GatewayEvent::Closed {
                reason: "gateway stopped".into(),
            },
        },
        CallerLeg::Sip { .. } => std::future::pending().await,
    }
}

async fn lookup_result(
    lookup: &mut Option<oneshot::Receiver<Result<crate::links::Verified, Unverified>>>,
) -> Result<crate::links::Verified, Unverified> {
    match lookup {
        Some(rx) => rx.await.unwrap_or(Err(Unverified::IrmaError)),
        None => std::future::pending().await,
    }
}

impl Call {
    fn view(&self) -> CallView {
        let (verified, reason) = verdict(self.machine.classification());
        let attributes = match self.machine.classification() {
            Some(Classification::Verified(attrs)) => attrs.clone(),
            _ => Vec::new(),
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
            on_hold: self.hold.is_held() && self.machine.state() == CallState::Connected,
            // The registry keeps the warnings it was given ([`Registry::warn`]).
            warnings: Vec::new(),
            agent_leg: self.machine.agent_leg().cloned(),
            via: match self.caller_leg {
                CallerLeg::Sip { .. } => super::registry::CallVia::Sip,
                CallerLeg::Browser(_) => super::registry::CallVia::Browser,
            },
            forward_to: None,
            // The registry keeps the extra requests agents made ([`crate::extra_requests`]).
            requests: Vec::new(),
        }
    }

    /// The view changed: publish it (the registry drops personal data once it shows `ended`).
    fn publish(&self) {
        // A call that ended while its code lookup runs is listed ended by the release, once the
        // lookup has said what the code was: the first "ended" (the event, the metrics) carries it.
        if self.machine.state() == CallState::Ended && self.lookup.is_some() {
            return;
        }
        self.ctx.registry.publish(self.view(), SystemTime::now());
    }

    fn next_deadline(&self, now: Instant) -> Instant {
        let far = now + Duration::from_secs(3600);
        let mut t = far;
        let mut consider = |d: Option<Instant>| {
            if let Some(d) = d {
                t = t.min(d);
            }
        };
        consider(self.machine.poll_timeout());
        consider(self.direct.as_ref().and_then(DirectMedia::poll_timeout));
        consider(self.trunk().and_then(Dialog::poll_timeout));
        consider(self.trunk_media.rtp.as_ref().and_then(|r| r.poll_timeout()));
        if self.comfort.is_some() {
            // The frame rides on the caller's next packet if one comes by then (media.rs).
            consider(Some(self.comfort_clock.deadline()));
        }
        consider(self.hold.poll_timeout());
        consider(self.teardown.poll_timeout());
        if let Some(AgentLeg::Connected { dialog, media }) = &self.agent {
            consider(dialog.poll_timeout());
            consider(media.rtp.as_ref().and_then(|r| r.poll_timeout()));
        }
        t
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.machine.handle_timeout(now);
        if let Some(direct) = &mut self.direct {
            direct.handle_timeout(now);
        }
        if let Some(trunk) = self.trunk_mut() {
            trunk.handle_timeout(now);
        }
        if let Some(rtp) = &mut self.trunk_media.rtp {
            rtp.handle_timeout(now);
        }
        self.drain_trunk_rtp_events(now);
        if let Some(AgentLeg::Connected { dialog, media }) = &mut self.agent {
            dialog.handle_timeout(now);
            if let Some(rtp) = &mut media.rtp {
                rtp.handle_timeout(now);
                while rtp.poll_event().is_some() {}
            }
        }
        if self.comfort.is_some() && self.comfort_clock.tick(now) {
            self.send_comfort_frame(now);
        }
        if self.hold.handle_timeout(now) {
            // The phone's music may have just stopped: ours starts afresh before this frame.
            self.drive_hold();
            self.send_hold_frame(now);
        }
        self.teardown.handle_timeout(now);
    }

    fn handle_command(&mut self, now: Instant, command: CallCommand) {
        match command {
            CallCommand::Answer { agent } => self.machine.handle_answer_request(now, agent),
            CallCommand::Hangup => self.machine.handle_hangup_request(now),
        }
    }

    fn handle_lookup(&mut self, now: Instant, result: Result<crate::links::Verified, Unverified>) {
        self.machine
            .handle_lookup(now, lookup_classification(result));
    }
}

/// A classification as the call's view shows it: verified, or the reason it is not (none yet:
/// `(false, None)`).
fn verdict(classification: Option<&Classification>) -> (bool, Option<UnverifiedReason>) {
    match classification {
        Some(Classification::Verified(_)) => (true, None),
        Some(Classification::Unverified(r)) => (false, Some(*r)),
        None => (false, None),
    }
}

/// A code lookup's answer as the call machine takes it.
fn lookup_classification(result: Result<crate::links::Verified, Unverified>) -> Classification {
    match result {
        Ok(verified) => Classification::Verified(
            verified
                .attributes
                .iter()
                .map(ShownAttribute::from)
                .collect(),
        ),
        Err(reason) => Classification::Unverified(map_reason(reason)),
    }
}

impl Call {
    /// What a waiting caller hears: the tenant's waiting prompt, else the install's comfort signal.
    fn waiting_signal(&self) -> Box<dyn SignalSource + Send> {
        match &self.tenant.prompts.waiting {
            Some(samples) => comfort_signal(&Comfort::Prompt(samples.clone())),
            None => comfort_signal(&self.ctx.flow.comfort),
        }
    }

    /// What a caller nobody took hears before we hang up, and for how long: the tenant's goodbye
    /// prompt (once, to its end), else the busy tone for [`GOODBYE_TIME`].
    fn goodbye_signal(&self) -> (Box<dyn SignalSource + Send>, Duration) {
        if let Some(samples) = &self.tenant.prompts.goodbye {
            if let Ok(p) = LoopedPrompt::new(samples.clone()) {
                let lasts = Duration::from_millis(samples.len() as u64 / 8 + 200);
                return (Box::new(p.with_gap(usize::MAX / 4)), lasts);
            }
        }
        (media::busy_tone(), GOODBYE_TIME)
    }
}

/// The configured comfort signal, from the start of its loop.
fn comfort_signal(comfort: &Comfort) -> Box<dyn SignalSource + Send> {
    match comfort {
        Comfort::Ringback => media::ringback(),
        Comfort::Prompt(samples) => match LoopedPrompt::new(samples.clone()) {
            Ok(p) => Box::new(p),
            Err(_) => media::ringback(),
        },
    }
}

/// The call flow's name for the link service's verdict (the exchange API's calls use it too).
pub(crate) fn map_reason(reason: Unverified) -> UnverifiedReason {
    match reason {
        Unverified::NoCode => UnverifiedReason::NoCode,
        Unverified::IncompleteCode => UnverifiedReason::IncompleteCode,
        Unverified::UnknownCode => UnverifiedReason::UnknownCode,
        Unverified::ExpiredCode => UnverifiedReason::ExpiredCode,
        Unverified::UsedCode => UnverifiedReason::UsedCode,
        Unverified::IrmaError => UnverifiedReason::IrmaError,
        Unverified::TooManyWrongCodes => UnverifiedReason::TooManyWrongCodes,
        Unverified::CallerMismatch => UnverifiedReason::CallerMismatch,
    }
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
    fn lock_routes(&self) -> std::sync::MutexGuard<'_, Routes> {
        // Critical sections only insert/remove map entries; a poisoned lock still holds consistent maps.
        crate::sync::lock(&self.ctx.routes)
    }

    /// The trunk's dialog; `None` for a browser call.
    fn trunk(&self) -> Option<&Dialog> {
        match &self.caller_leg {
            CallerLeg::Sip { dialog, .. } => Some(dialog),
            CallerLeg::Browser(_) => None,
        }
    }

    fn trunk_mut(&mut self) -> Option<&mut Dialog> {
        match &mut self.caller_leg {
            CallerLeg::Sip { dialog, .. } => Some(dialog),
            CallerLeg::Browser(_) => None,
        }
    }

    /// Hangs up on the caller as [`Teardown`] decided (once per call): BYE to the trunk, or the
    /// browser's connection closed.
    async fn bye_caller(&mut self) {
        match &mut self.caller_leg {
            CallerLeg::Sip { dialog, .. } => {
                if let Ok(bye) = dialog.bye() {
                    let target = self.ctx.sip.route(dialog).await;
                    let _ = self.ctx.sip.send_request(bye, target).await;
                }
            }
            CallerLeg::Browser(gateway) => {
                // The page shows the end at once, without waiting for the connection to time out.
                gateway.send_data(r#"{"type":"ended"}"#.to_owned());
                gateway.close();
            }
        }
    }

    /// Applies everything the state machines asked for, until they are quiet.
    async fn apply_actions(&mut self, now: Instant) {
        // Re-INVITEs the dialogs ask for: (leg, glare retry rather than session refresh).
        let mut offers: Vec<(Leg, bool)> = Vec::new();
        loop {
            let mut busy = false;
            while let Some(action) = self.machine.poll_action() {
                busy = true;
                self.apply(now, action).await;
            }
            let mut trunk_events = Vec::new();
            if let CallerLeg::Sip { dialog, .. } = &mut self.caller_leg {
                trunk_events.extend(std::iter::from_fn(|| dialog.poll_event()));
            }
            for event in trunk_events {
                busy = true;
                match event {
                    DialogEvent::Retransmit2xx(response) => {
                        if let CallerLeg::Sip { invite_tx, .. } = &self.caller_leg {
                            let _ = self.ctx.sip.respond(*invite_tx, response).await;
                        }
                    }
                    DialogEvent::AckTimeout | DialogEvent::SessionExpired => {
                        tracing::info!(call = %self.id, "trunk dialog lost (no ACK or session expired)");
                        self.teardown.hangup_caller(now);
                        self.machine.handle_caller_gone(now);
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
                    self.machine.handle_agent_gone(now);
                }
            }
            for (leg, retry) in offers.drain(..) {
                busy = true;
                if retry {
                    self.retry_offer(now, leg).await;
                } else {
                    self.refresh_session(now, leg).await;
                }
            }
            busy |= self.drive_forks(now).await;
            busy |= self.drive_direct(now).await;
            busy |= self.drive_hold();
            while let Some(action) = self.teardown.poll_action() {
                busy = true;
                match action {
                    TeardownAction::ByeCaller => self.bye_caller().await,
                    TeardownAction::StopGoodbye => self.comfort = None,
                }
            }
            if !busy {
                break;
            }
        }
    }

    /// The agent's hold started or ended: start the comfort signal afresh or stop it, and show it.
    /// The phone's own music on hold started or stopped: after it, our signal starts afresh.
    /// Returns whether there was anything.
    fn drive_hold(&mut self) -> bool {
        let mut busy = false;
        while let Some(event) = self.hold.poll_event() {
            busy = true;
            match event {
                HoldEvent::Started => {
                    tracing::info!(call = %self.id, "the agent put the caller on hold");
                    self.hold_signal = Some(self.waiting_signal());
                    self.publish();
                }
                HoldEvent::PhoneMusicStarted => {
                    tracing::debug!(call = %self.id, "the agent's phone plays its own music on hold");
                }
                HoldEvent::PhoneMusicStopped => {
                    tracing::debug!(call = %self.id, "the agent's phone's music on hold stopped");
                    self.hold_signal = Some(self.waiting_signal());
                }
                HoldEvent::Ended => {
                    tracing::info!(call = %self.id, "the caller is off hold");
                    self.hold_signal = None;
                    self.publish();
                }
            }
        }
        busy
    }

    async fn apply(&mut self, now: Instant, action: Action) {
        match action {
            Action::LookupCode(code) => {
                let links = self.ctx.links.clone();
                let key = self.store_key.clone();
                let tenant = self.tenant.id.clone();
                let caller = self.caller.clone();
                let (tx, rx) = oneshot::channel();
                tokio::spawn(async move {
                    let call = crate::links::CallCode {
                        tenant: &tenant,
                        caller: &caller,
                        code: &code,
                        call_key: &key,
                    };
                    let result = links.verify_call(call, crate::time::unix_now()).await;
                    let _ = tx.send(result);
                });
                self.lookup = Some(rx);
            }
            Action::StopDigitDetection => self.detector = None,
            Action::StartComfort => {
                self.comfort = Some(self.waiting_signal());
                self.comfort_clock = FrameClock::starting(now);
            }
            Action::StopComfort => self.comfort = None,
            Action::RingAgent(agent) => self.ring_agent(now, agent).await,
            Action::CancelAgent => self.hangup_agent().await,
            Action::AgentLegFailed(outcome) => self.log_agent_leg_failed(&outcome),
            Action::Bridge => {
                // Direct media would put one leg's RTP end to end with the other's, keys and all:
                // the legs would have to agree on SRTP and share keys, so a call with any SRTP
                // leg stays relayed.
                let secure_leg = matches!(
                    &self.agent,
                    Some(AgentLeg::Connected { media, .. }) if media.sdp.is_secure()
                ) || self.trunk_media.sdp.is_secure();
                if self.ctx.flow.agent_media == AgentMedia::Direct && !secure_leg {
                    self.start_direct_media(now);
                } else if secure_leg && self.ctx.flow.agent_media == AgentMedia::Direct {
                    tracing::info!(call = %self.id, "a leg is SRTP: media stays relayed (end to end would need both legs to share keys)");
                }
            }
            Action::ReferToAgent(agent) => self.refer_to_agent(now, agent).await,
            Action::Transfer(target) => {
                tracing::info!(call = %self.id, "nobody answered in time: transferring the caller to the fallback");
                self.send_refer(now, &target).await;
            }
            Action::Goodbye => {
                let (signal, lasts) = self.goodbye_signal();
                self.comfort = Some(signal);
                self.comfort_clock = FrameClock::starting(now);
                self.teardown.handle_goodbye(now, lasts);
            }
            Action::HangupCaller => self.teardown.hangup_caller(now),
            Action::HangupAgent => self.hangup_agent().await,
            Action::Publish => self.publish(),
            Action::Release => self.teardown.handle_release(now),
        }
    }

    /// Everything the call held goes, in [`Teardown::release`]'s order: the agent's phone, the
    /// signals, the trunk leg's socket and ports, the registry's view (attributes in memory), the
    /// routes, and last the link code in the store.
    async fn release(mut self) {
        let held = Held {
            agent: match &self.agent {
                None => AgentLegAt::None,
                Some(AgentLeg::Ringing { .. }) => AgentLegAt::Ringing,
                Some(AgentLeg::Connected { .. }) => AgentLegAt::Connected,
            },
            lookup_in_flight: self.lookup.is_some(),
            classification: self.machine.classification(),
        };
        let steps = std::mem::take(&mut self.teardown).release(held);
        let Call {
            id,
            ctx,
            mut agent,
            mut forks,
            trunk_media,
            mut lookup,
            mut machine,
            store_key,
            mut detector,
            mut comfort,
            mut hold_signal,
            ..
        } = self;
        let mut trunk_media = Some(trunk_media);
        let mut stats = None;
        let mut released = false;
        for step in steps {
            match step {
                ReleaseStep::ByeAgent | ReleaseStep::CancelAgent => {
                    agent::hangup_agent(&ctx.sip, &mut agent, &mut forks).await
                }
                ReleaseStep::StopSignals => {
                    detector = None;
                    comfort = None;
                    hold_signal = None;
                    agent = None;
                    forks = AgentForks::new(ctx.flow.sip_timers);
                }
                ReleaseStep::FreePorts => {
                    stats = trunk_media
                        .as_ref()
                        .and_then(|m| m.rtp.as_ref())
                        .map(|r| r.stats());
                    if let Some(s) = &stats {
                        let metrics = crate::metrics::global();
                        metrics.rtp_packets_received.inc_by(s.packets_received);
                        metrics
                            .rtp_packets_lost
                            .inc_by(u64::try_from(s.packets_lost).unwrap_or(0));
                    }
                    // The socket closes and the port pair goes back to the pool.
                    trunk_media = None;
                }
                ReleaseStep::PublishEnded => {
                    let now = SystemTime::now();
                    // With what a lookup that answered during the release said.
                    let (verified, reason) = verdict(machine.classification());
                    ctx.registry.update(id, |v| {
                        v.verified = verified;
                        v.reason = reason;
                        v.state = CallState::Ended;
                        v.ended_at.get_or_insert(now);
                    });
                }
                ReleaseStep::ForgetRoutes => {
                    let _ = ctx.ended.send(id);
                }
                ReleaseStep::AwaitLookup => {
                    if let Some(in_flight) = lookup.as_mut() {
                        // Listed ended with what the code was: the answer (or its reason) goes
                        // into the view before the end is published.
                        if let Ok(answer) =
                            tokio::time::timeout(super::teardown::LOOKUP_GRACE, in_flight).await
                        {
                            lookup = None;
                            let answer = answer.unwrap_or(Err(Unverified::IrmaError));
                            machine.handle_lookup(clock(), lookup_classification(answer));
                        }
                    }
                }
                ReleaseStep::ReleaseCode => {
                    if let Some(in_flight) = lookup.take() {
                        // A bind still running (past the grace above) would bind the code after
                        // we released it.
                        let _ = in_flight.await;
                    }
                    released = ctx
                        .links
                        .release_call(&store_key, crate::time::unix_now())
                        .await;
                }
            }
        }
        // Dropped by the steps above; named so the order stays theirs.
        drop((detector, comfort, hold_signal, agent, forks, trunk_media));
        tracing::info!(
            call = %id,
            outcome = match verdict(machine.classification()) {
                (true, _) => "verified",
                (false, Some(r)) => r.as_str(),
                (false, None) => "unclassified",
            },
            held_code = released,
            packets = stats.map(|s| s.packets_received).unwrap_or(0),
            "call ended"
        );
    }
}
