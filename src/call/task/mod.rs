//! One tokio task per call: the thin driver around the sans-IO pieces of a call's signalling.
//!
//! It owns the call's [`CallMachine`], the trunk leg (SIP [`Dialog`], [`LocalSdp`]), and — once an
//! agent takes the call — the agent leg (parallel INVITE forks, then a UAC dialog). The call's media
//! ([`CallMedia`], `media.rs`: the RTP sessions, the in-band detector, the comfort signal, the
//! relay between the legs, the agent's hold) is driven by the media plane ([`crate::media_plane`],
//! on a media thread): the task sets it up and changes it under its mutex when signalling says so,
//! hands the plane the legs' sockets, and hears back by [`MediaEvent`] — a digit, the caller's
//! media timing out, the hold. A packet never wakes this task.
//!
//! Loop: wait for the first of {SIP input routed by the manager, agent command, a media event,
//! the code lookup, the earliest timer}; read `now` once (tokio's clock, so tests may pause it);
//! feed the input to the owning state machine; then apply what the machines ask for, publish the
//! call view and tell the media plane the state changed. Nothing here decides *what* happens to
//! the call: the [`CallMachine`] decides its course, [`AgentForks`] which of the agent's phones won
//! and which are CANCELled or ACKed and hung up, and [`Teardown`] when the caller gets our BYE,
//! when the loop ends and the release order. Before the caller's BYE is handled, the media plane
//! reads what the caller sent before it (the last digits count).
//!
//! While the agent's phone holds a relayed call, the caller hears the comfort signal again
//! (`AgentHold` in the media state decides when, `hold.rs`), and the view shows `on_hold`.
//!
//! The connect modes (`media = "direct"` re-INVITEs, `transfer = "refer"`), RFC 4028 session refreshes
//! and every other in-dialog request *we* send are driven from `connect.rs`, a child module.
//!
//! This file owns the [`Call`] and its run loop, deadlines, actions and release. The rest of the
//! call's `impl` lives in child modules: `answer.rs` (answering the trunk's INVITE),
//! `media.rs` (the call's media state), `dialog.rs` (SIP requests, ACKs and responses
//! on both legs), `agent.rs` (ringing the agent's phones) and `connect.rs`.
//!
//! When the call ends, in [`Teardown::release`]'s order: the agent's phone is hung up, every socket
//! is closed and its port back in the pool, the registry shows the call ended (attributes leave memory), the
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
use super::collect::DigitSource;
pub use super::config::CallInput;
use super::config::{CallFlowConfig, Comfort, Routes};
use super::direct::{AgentMedia, DirectMedia, Leg, MediaPath};
use super::hold::HoldEvent;
use super::machine::{Action, CallMachine, Classification};
use super::registry::{CallCommand, CallView, Registry, ShownAttribute};
use super::teardown::{AgentLegAt, Held, ReleaseStep, Teardown, TeardownAction};
use super::{CallId, CallState, UnverifiedReason};
use crate::links::{LinkService, Unverified};
use crate::media_plane::{LegId, MediaHandle, MediaPlane};
use crate::pii::Pii;
use crate::rtp_ports::{PortLease, SharedPortPool};
use crate::sip_driver::SipHandle;
use crate::tenant::{Tenant, Tenants};
use dsp::tone::LoopedPrompt;
use media::{CallMedia, MediaEvent};
use sip::dialog::{Dialog, DialogEvent};
use sip::endpoint::{ServerTxId, Source};
use sip::message::{Request, Uri};
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
    /// Where the calls' RTP sockets are read and written.
    pub media: MediaPlane,
}

/// One RTP leg's SDP state; its RTP (session, socket) is the media plane's ([`CallMedia`]).
struct MediaLeg {
    local: LocalMedia,
    sdp: LocalSdp,
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
    /// The call's media state, driven by the media plane; the call task changes it.
    media: Arc<Mutex<CallMedia>>,
    /// The call's link to the media plane: its sockets.
    media_io: MediaHandle,
    /// What the media state tells the call: digits, media timeout, hold.
    media_events: mpsc::UnboundedReceiver<MediaEvent>,
    /// Where the agent leg's RTP socket is bound (for a browser call not `trunk_media`'s loopback
    /// address: the agent's phone must reach it).
    agent_media_ip: std::net::IpAddr,
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

    call.sync_media();
    // One timer for the task's life, moved only when the next deadline changes: most wake-ups are
    // RTP packets that leave it where it was (no timer-wheel insert and cancel per packet).
    let timer = tokio::time::sleep_until(call.next_deadline(now).into());
    tokio::pin!(timer);
    let mut now = now;
    while !call.teardown.is_finished() {
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
                        // What the caller sent before the BYE counts (the last digits).
                        call.media_io.flush().await;
                        while let Ok(event) = call.media_events.try_recv() {
                            call.handle_media_event(now, event);
                        }
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
            Some(event) = call.media_events.recv() => {
                now = clock();
                call.handle_media_event(now, event);
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
        call.sync_media();
    }
    call.release().await;
}

/// Whether `event` is a BYE (the caller's, or the agent's: reading the caller's last packets first
/// costs nothing either way).
fn is_bye(event: &sip::endpoint::Event) -> bool {
    matches!(event, sip::endpoint::Event::Request { request, .. } if request.method == sip::message::Method::Bye)
}

/// The task's one time source ([`crate::time::runtime_now`]).
use crate::time::runtime_now as clock;

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
            on_hold: crate::sync::lock(&self.media).hold.is_held()
                && self.machine.state() == CallState::Connected,
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
        consider(self.teardown.poll_timeout());
        if let Some(AgentLeg::Connected { dialog, .. }) = &self.agent {
            consider(dialog.poll_timeout());
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
        if let Some(AgentLeg::Connected { dialog, .. }) = &mut self.agent {
            dialog.handle_timeout(now);
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
    /// What a waiting caller hears, from the start of its loop.
    fn waiting_signal(&self) -> media::Signal {
        crate::sync::lock(&self.media).waiting_signal()
    }

    /// What a caller nobody took hears before we hang up, and for how long: the tenant's goodbye
    /// prompt (once, to its end), else the busy tone for [`GOODBYE_TIME`].
    fn goodbye_signal(&self) -> (media::Signal, Duration) {
        if let Some(samples) = &self.tenant.prompts.goodbye {
            if let Ok(p) = LoopedPrompt::new(samples.clone()) {
                let lasts = Duration::from_millis(samples.len() as u64 / 8 + 200);
                return (media::Signal::Prompt(p.with_gap(usize::MAX / 4)), lasts);
            }
        }
        (media::busy_tone(), GOODBYE_TIME)
    }
}

/// What a waiting caller hears: the tenant's waiting prompt, else the install's comfort signal.
fn waiting_comfort(tenant: &Tenant, flow: &CallFlowConfig) -> Comfort {
    match &tenant.prompts.waiting {
        Some(samples) => Comfort::Prompt(samples.clone()),
        None => flow.comfort.clone(),
    }
}

/// A new call's media: its state (made by `setup` on top of the defaults), its link to the media
/// plane with the caller leg's `socket` on it, and the events it will send.
fn start_media(
    ctx: &CallTaskContext,
    id: CallId,
    tenant: &Tenant,
    socket: std::net::UdpSocket,
    lease: PortLease,
    setup: impl FnOnce(&mut CallMedia),
) -> (
    Arc<Mutex<CallMedia>>,
    MediaHandle,
    mpsc::UnboundedReceiver<MediaEvent>,
) {
    let (events, media_events) = mpsc::unbounded_channel();
    let mut state = CallMedia::new(
        id,
        waiting_comfort(tenant, &ctx.flow),
        events,
        ctx.relayed.clone(),
    );
    setup(&mut state);
    let media = Arc::new(Mutex::new(state));
    let media_io = ctx.media.attach(media.clone());
    media_io.add(LegId::Caller, socket, lease);
    (media, media_io, media_events)
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
            while let Some(action) = self.teardown.poll_action() {
                busy = true;
                match action {
                    TeardownAction::ByeCaller => self.bye_caller().await,
                    TeardownAction::StopGoodbye => crate::sync::lock(&self.media).comfort = None,
                }
            }
            if !busy {
                break;
            }
        }
    }

    /// What the call's media reported.
    fn handle_media_event(&mut self, now: Instant, event: MediaEvent) {
        match event {
            MediaEvent::Digit { at, digit } => {
                self.machine.handle_digit(at, DigitSource::Rfc4733, digit)
            }
            MediaEvent::DigitEnd { digit } => self.machine.handle_digit_end(now, digit),
            MediaEvent::InbandDigit { digit, start, end } => {
                self.machine.handle_inband_digit(now, digit, start, end)
            }
            MediaEvent::CallerSilent => {
                self.teardown.hangup_caller(now);
                self.machine.handle_caller_gone(now);
            }
            MediaEvent::Hold(HoldEvent::Started) => {
                tracing::info!(call = %self.id, "the agent put the caller on hold");
                self.publish();
            }
            MediaEvent::Hold(HoldEvent::Ended) => {
                tracing::info!(call = %self.id, "the caller is off hold");
                self.publish();
            }
            MediaEvent::Hold(HoldEvent::PhoneMusicStarted) => {
                tracing::debug!(call = %self.id, "the agent's phone plays its own music on hold");
            }
            MediaEvent::Hold(HoldEvent::PhoneMusicStopped) => {
                tracing::debug!(call = %self.id, "the agent's phone's music on hold stopped");
            }
        }
    }

    /// After a turn: the media state learns what signalling changed that it reads (the agent
    /// leg bridged or gone, direct media), and the media plane asks it again when to wake it.
    fn sync_media(&mut self) {
        let bridged = matches!(self.agent, Some(AgentLeg::Connected { .. }));
        let elsewhere = self
            .direct
            .as_ref()
            .is_some_and(DirectMedia::trunk_media_elsewhere);
        let agent_gone = {
            let mut m = crate::sync::lock(&self.media);
            m.bridged = bridged;
            m.trunk_elsewhere = elsewhere;
            let gone = self.agent.is_none() && m.agent.is_some();
            if gone {
                m.agent = None;
            }
            gone
        };
        if agent_gone {
            self.media_io.remove(LegId::Agent);
        }
        self.media_io.touch();
    }

    /// The agent's hold as the agent leg's SDP says (relayed calls).
    fn agent_hold_media(&self, now: Instant, on_hold: bool) {
        let mut m = crate::sync::lock(&self.media);
        m.hold.handle_media(now, on_hold);
        m.drive_hold();
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
            Action::StopDigitDetection => crate::sync::lock(&self.media).inband.stop(),
            Action::StartComfort => {
                let signal = self.waiting_signal();
                crate::sync::lock(&self.media).play(now, signal);
            }
            Action::StopComfort => crate::sync::lock(&self.media).comfort = None,
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
                crate::sync::lock(&self.media).play(now, signal);
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
            media,
            mut media_io,
            mut lookup,
            mut machine,
            store_key,
            ..
        } = self;
        let mut stats = None;
        let mut released = false;
        for step in steps {
            match step {
                ReleaseStep::ByeAgent | ReleaseStep::CancelAgent => {
                    agent::hangup_agent(&ctx.sip, &mut agent, &mut forks).await
                }
                ReleaseStep::StopSignals => {
                    crate::sync::lock(&media).stop_signals();
                    agent = None;
                    forks = AgentForks::new(ctx.flow.sip_timers);
                }
                ReleaseStep::FreePorts => {
                    stats = crate::sync::lock(&media)
                        .trunk
                        .rtp
                        .as_ref()
                        .map(|r| r.stats());
                    if let Some(s) = &stats {
                        let metrics = crate::metrics::global();
                        metrics.rtp_packets_received.inc_by(s.packets_received);
                        metrics
                            .rtp_packets_lost
                            .inc_by(u64::try_from(s.packets_lost).unwrap_or(0));
                    }
                    // The sockets close and the port pairs go back to the pool.
                    media_io.close().await;
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
        drop((agent, forks));
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
