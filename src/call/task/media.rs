//! A call's media: RTP from either leg and what happens to it, as the media plane drives it.
//!
//! [`CallMedia`] is the call's [`MediaState`]: the media plane (`crate::media_plane`, on a media
//! thread) hands it every datagram of the call's sockets and its timeouts, and sends what it
//! queues. The call task owns it behind a mutex, changes it when signalling says so (a leg's RTP
//! session from an SDP answer, the detector off, a signal to play), and hears from it by
//! [`MediaEvent`]: digits, the caller's media timing out, the agent's hold. A packet never wakes
//! the call task.
//!
//! - Trunk RTP (RFC 3550) feeds the in-band [`DtmfDetector`] while the code comes in, and its
//!   RFC 4733 §2.5 events (digit start/end) and media timeout go to the call task.
//! - Once the agent leg is connected, audio is relayed between the legs (B2BUA), transcoded
//!   PCMA↔PCMU (ITU-T G.711) when they negotiated different laws; RFC 4733 events are re-sent with
//!   the other leg's payload type, but never an event that began before the bridge (the tail of
//!   the link code).
//! - The comfort signal (silence, ringback, prompt, busy tone) is sent to the trunk in 20 ms frames,
//!   and so is the one the caller hears while the agent holds them (`hold.rs`), unless the agent's
//!   phone sends its own music on hold meanwhile: while held, its audio and comfort noise go
//!   through `AgentHold`, which judges them by payload type and level and says whether to relay.
//!   A comfort frame goes with the caller's packet when its slot is near
//!   ([`FrameClock::tick_on_packet`](crate::call::pacing::FrameClock::tick_on_packet)), so a
//!   call costs one wake-up per 20 ms, not two. The tones are rendered once per process
//!   ([`ringback`], [`busy_tone`]) and silence is sent without encoding.
//! - Setting a leg up: binding an RTP port from the pool ([`bind_media`]) and the RTP session
//!   configuration.

use crate::call::config::{CallFlowConfig, Comfort};
use crate::call::hold::{AgentHold, AgentPacket, HoldEvent, CN_PAYLOAD_TYPE};
use crate::call::pacing::FrameClock;
use crate::call::CallId;
use crate::media_plane::{LegId, MediaState, Outbox};
use crate::rtp_ports::{PortLease, SharedPortPool};
use dsp::dtmf::{DtmfDetector, DtmfEvent};
use dsp::tone::{LoopedPrompt, SignalSource, Silence, ToneGenerator};
use sip::rfc4733::{DigitEvent, EventPayload};
use sip::rtp::{Received, RtpConfig, RtpEvent, RtpSession, RTP_HEADER_LEN};
use sip::sdp::CodecKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// 20 ms of 8 kHz audio.
const FRAME: usize = 160;
/// Attempts at binding an RTP port before refusing the call.
const BIND_ATTEMPTS: usize = 8;

/// What a call's media tells its call task.
#[derive(Debug)]
pub(super) enum MediaEvent {
    /// An RFC 4733 digit began at `at`.
    Digit { at: Instant, digit: char },
    /// The RFC 4733 event of `digit` ended.
    DigitEnd { digit: char },
    /// The in-band detector heard `digit` from `start` to `end`.
    InbandDigit {
        digit: char,
        start: Instant,
        end: Instant,
    },
    /// No RTP from the caller for the media timeout.
    CallerSilent,
    /// The agent's hold changed (relayed calls).
    Hold(HoldEvent),
}

/// One leg's RTP state: session, SRTP, the RFC 4733 event being relayed.
#[derive(Default)]
pub(super) struct LegMedia {
    pub(super) rtp: Option<RtpSession>,
    /// Timestamp of the RFC 4733 event being relayed from this leg, to spot new events.
    relayed_event: Option<u32>,
    /// The event being received from this leg began while the legs were bridged. An event that was
    /// already running when the agent answered (the tail of the link code's last digit) is not
    /// relayed: the code is the caller's secret, not the agent's.
    relay_this_event: bool,
    /// SRTP contexts when the leg negotiated `RTP/SAVP` (agents' phones on TLS); kept in step
    /// with the RTP session's media by [`LegMedia::srtp`].
    /// Boxed: a plain leg's state stays small (fewer cache lines per packet).
    srtp: Option<Box<sip::rtp::srtp::SrtpStreams>>,
    /// Where the leg's socket is connected ([`Outbox::connect`]): the session's fixed source.
    connected: Option<SocketAddr>,
}

/// A datagram as received on a leg ([`LegMedia::receive`]): as it came, or decrypted.
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

impl LegMedia {
    /// Once the session's source is fixed, the socket is connected to it (the kernel filters
    /// other senders, as the session would, and our sends skip a route lookup each); when new
    /// media starts learning again, it is disconnected.
    fn sync_connection(&mut self, leg: LegId, out: &mut Outbox) {
        let want = self.rtp.as_ref().and_then(RtpSession::fixed_source);
        if want != self.connected {
            self.connected = want;
            out.connect(leg, want);
        }
    }

    /// The SRTP streams for what the leg negotiated last — built on first use and rebuilt when a
    /// re-INVITE changed the suite or a key — or `Ok(None)` for plain RTP. `Err` when the leg is
    /// secure but no context could be made: then nothing may be sent or accepted in clear.
    fn srtp(&mut self) -> Result<Option<&mut sip::rtp::srtp::SrtpStreams>, ()> {
        let Some(wanted) = self.rtp.as_ref().and_then(|r| r.media().srtp.as_ref()) else {
            // Plain RTP (nearly every packet): no write to the leg's state unless it changed.
            if self.srtp.is_some() {
                self.srtp = None;
            }
            return Ok(None);
        };
        if self.srtp.as_ref().map(|s| s.params()) != Some(wanted) {
            match sip::rtp::srtp::SrtpStreams::new(wanted) {
                Ok(streams) => self.srtp = Some(Box::new(streams)),
                Err(e) => {
                    tracing::error!("cannot set up SRTP for a call leg: {e}; its media stops");
                    self.srtp = None;
                    return Err(());
                }
            }
        }
        Ok(self.srtp.as_deref_mut())
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

    /// Queues the RTP packet `packet` to `dest` from `leg`'s socket, as SRTP on a secure leg.
    /// Whether it went into the outbox.
    fn send_rtp(&mut self, leg: LegId, packet: &[u8], dest: SocketAddr, out: &mut Outbox) -> bool {
        match self.srtp() {
            Err(()) => false,
            Ok(None) => {
                out.push(leg, dest, packet);
                true
            }
            Ok(Some(streams)) => match streams.protect(packet) {
                Ok(p) => {
                    out.push(leg, dest, &p);
                    true
                }
                Err(e) => {
                    tracing::debug!("SRTP protect failed: {e}");
                    false
                }
            },
        }
    }
}

/// The in-band DTMF detector of the caller's audio, with the time its first sample came. Always
/// there (at a fixed place in the call's state, which [`MediaState::prefetch`] relies on), on
/// while the code may come in as tones.
pub(super) struct Inband {
    detector: DtmfDetector,
    /// When the first audio packet since [`Inband::start`] came: sample positions map to wall
    /// time from there.
    base: Option<Instant>,
    on: bool,
}

impl Inband {
    fn off() -> Inband {
        Inband {
            detector: DtmfDetector::new(),
            base: None,
            on: false,
        }
    }

    /// Detection starts afresh.
    pub(super) fn start(&mut self) {
        self.detector.reset();
        self.base = None;
        self.on = true;
    }

    pub(super) fn stop(&mut self) {
        self.on = false;
    }
}

/// A call's media state (see the module docs). Fields are the call task's to set; the media
/// plane only calls the [`MediaState`] methods.
pub(super) struct CallMedia {
    id: CallId,
    pub(super) trunk: LegMedia,
    /// The agent leg's media, from the moment its socket is bound (ringing) to its hangup.
    pub(super) agent: Option<LegMedia>,
    /// The agent leg is connected: audio is relayed between the legs.
    pub(super) bridged: bool,
    /// Direct media: the trunk's RTP goes to the agent's phone, not to us (no media timeout).
    pub(super) trunk_elsewhere: bool,
    /// The in-band DTMF detector, while the code may come in as tones.
    pub(super) inband: Inband,
    pub(super) comfort: Option<Signal>,
    pub(super) comfort_clock: FrameClock,
    /// Whether the agent's phone holds the caller (relayed media only) and the comfort frames'
    /// pacing meanwhile (`hold.rs`).
    pub(super) hold: AgentHold,
    /// The comfort signal the caller hears while the agent holds them.
    hold_signal: Option<Signal>,
    /// What a waiting (or held) caller hears.
    waiting: Comfort,
    events: mpsc::UnboundedSender<MediaEvent>,
    /// Packets the relay forwarded, all calls.
    relayed: Arc<AtomicU64>,
}

impl CallMedia {
    pub(super) fn new(
        id: CallId,
        waiting: Comfort,
        events: mpsc::UnboundedSender<MediaEvent>,
        relayed: Arc<AtomicU64>,
    ) -> CallMedia {
        CallMedia {
            id,
            trunk: LegMedia::default(),
            agent: None,
            bridged: false,
            trunk_elsewhere: false,
            inband: Inband::off(),
            comfort: None,
            comfort_clock: FrameClock::starting(Instant::now()),
            hold: AgentHold::new(),
            hold_signal: None,
            waiting,
            events,
            relayed,
        }
    }

    /// What a waiting caller hears, from the start of its loop.
    pub(super) fn waiting_signal(&self) -> Signal {
        comfort_signal(&self.waiting)
    }

    /// Plays `signal` to the caller from `now` on, in place of what played.
    pub(super) fn play(&mut self, now: Instant, signal: Signal) {
        self.comfort = Some(signal);
        self.comfort_clock = FrameClock::starting(now);
    }

    /// Every signal stops, the detector too (the call is being released).
    pub(super) fn stop_signals(&mut self) {
        self.inband.stop();
        self.comfort = None;
        self.hold_signal = None;
        self.agent = None;
        self.bridged = false;
    }

    fn emit(&self, event: MediaEvent) {
        // The call task gone: the call is over, nobody needs it.
        let _ = self.events.send(event);
    }

    fn count_relayed(&self) {
        self.relayed.fetch_add(1, Ordering::Relaxed);
    }

    fn handle_trunk_rtp(&mut self, now: Instant, from: SocketAddr, bytes: &[u8], out: &mut Outbox) {
        let Some(bytes) = self.trunk.receive(bytes) else {
            return;
        };
        let bytes = &bytes[..];
        let Some(rtp) = self.trunk.rtp.as_mut() else {
            return;
        };
        let codec = rtp.media().codec.kind();
        let received = rtp.handle_packet(now, from, bytes);
        let from_peer = matches!(
            received,
            Ok(Received::Audio(_) | Received::TelephoneEvent(_) | Received::Unknown { .. })
        );
        match received {
            Ok(Received::Audio(info)) => {
                if self.inband.on {
                    let Inband { detector, base, .. } = &mut self.inband;
                    let mut pcm = [0i16; 2 * FRAME * 4];
                    let n = info.payload.len().min(pcm.len());
                    decode(codec, &info.payload[..n], &mut pcm[..n]);
                    // Sample positions map to wall time from the first audio packet on.
                    let base = *base.get_or_insert(now);
                    detector.push(&pcm[..n]);
                    while let Some(event) = detector.poll_event() {
                        if let DtmfEvent::Ended { digit, start, end } = event {
                            crate::metrics::global().digit("inband");
                            let _ = self.events.send(MediaEvent::InbandDigit {
                                digit,
                                start: base + samples(start),
                                end: base + samples(end),
                            });
                        }
                    }
                }
                if let (true, Some(agent)) = (self.bridged, &mut self.agent) {
                    if relay_audio(now, codec, info.payload, agent, LegId::Agent, out) {
                        self.relayed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Ok(Received::TelephoneEvent(info)) => {
                let new_event = self.trunk.relayed_event != Some(info.timestamp);
                self.trunk.relayed_event = Some(info.timestamp);
                if new_event {
                    self.trunk.relay_this_event = self.bridged;
                }
                if let (true, true, Some(agent), Ok(event)) = (
                    self.trunk.relay_this_event,
                    self.bridged,
                    &mut self.agent,
                    EventPayload::parse(info.payload),
                ) {
                    if relay_event(now, event, new_event, agent, LegId::Agent, out) {
                        self.relayed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Ok(_) | Err(_) => {}
        }
        self.drain_trunk_rtp_events();
        // Awake anyway: the comfort frame whose slot is near goes now, not on a timer of its own.
        if from_peer && self.comfort.is_some() && self.comfort_clock.tick_on_packet(now) {
            self.send_comfort_frame(now, out);
        }
    }

    fn handle_agent_rtp(&mut self, now: Instant, from: SocketAddr, bytes: &[u8], out: &mut Outbox) {
        let (true, Some(agent)) = (self.bridged, &mut self.agent) else {
            return;
        };
        let Some(bytes) = agent.receive(bytes) else {
            return;
        };
        let bytes = &bytes[..];
        let Some(rtp) = agent.rtp.as_mut() else {
            return;
        };
        let codec = rtp.media().codec.kind();
        let relayed = match rtp.handle_packet(now, from, bytes) {
            Ok(Received::Audio(info)) => {
                // While it holds, the phone's audio reaches the caller only as its music on hold:
                // its silence gets our comfort signal instead (hold.rs).
                let packet = AgentPacket::Audio {
                    codec,
                    payload: info.payload,
                };
                self.hold.handle_agent_packet(now, packet)
                    && relay_audio(
                        now,
                        codec,
                        info.payload,
                        &mut self.trunk,
                        LegId::Caller,
                        out,
                    )
            }
            Ok(Received::Unknown {
                payload_type: CN_PAYLOAD_TYPE,
            }) => self
                .hold
                .handle_agent_packet(now, AgentPacket::ComfortNoise),
            Ok(Received::TelephoneEvent(info)) => {
                let new_event = agent.relayed_event != Some(info.timestamp);
                agent.relayed_event = Some(info.timestamp);
                EventPayload::parse(info.payload).is_ok_and(|event| {
                    relay_event(now, event, new_event, &mut self.trunk, LegId::Caller, out)
                })
            }
            Ok(_) | Err(_) => false,
        };
        while rtp.poll_event().is_some() {}
        if relayed {
            self.count_relayed();
        }
        self.drive_hold();
    }

    fn drain_trunk_rtp_events(&mut self) {
        let Some(rtp) = self.trunk.rtp.as_mut() else {
            return;
        };
        while let Some(event) = rtp.poll_event() {
            match event {
                RtpEvent::Digit(DigitEvent::DigitStart { digit, at }) => {
                    crate::metrics::global().digit("rfc4733");
                    let _ = self.events.send(MediaEvent::Digit {
                        at,
                        digit: digit.as_char(),
                    });
                }
                RtpEvent::Digit(DigitEvent::DigitEnd { digit, .. }) => {
                    let _ = self.events.send(MediaEvent::DigitEnd {
                        digit: digit.as_char(),
                    });
                }
                // On direct media the trunk's RTP goes to the agent, not to us.
                RtpEvent::MediaTimeout if self.trunk_elsewhere => {}
                RtpEvent::MediaTimeout => {
                    tracing::info!(call = %self.id, "no RTP from the caller for too long; ending the call");
                    let _ = self.events.send(MediaEvent::CallerSilent);
                }
                RtpEvent::Latched(_) | RtpEvent::SsrcChanged { .. } => {}
            }
        }
    }

    fn send_comfort_frame(&mut self, now: Instant, out: &mut Outbox) {
        let Some(source) = self.comfort.as_mut() else {
            return;
        };
        send_frame(now, source, &mut self.trunk, out);
    }

    /// A comfort frame is due while the agent holds the caller ([`AgentHold`] paces them and
    /// leaves them out while the phone's own music on hold plays). Only while the trunk's RTP
    /// comes to our relay, the agent leg is connected and no other signal (a goodbye) plays.
    fn send_hold_frame(&mut self, now: Instant, out: &mut Outbox) {
        if let (false, true, None, Some(source)) = (
            self.trunk_elsewhere,
            self.bridged,
            &self.comfort,
            self.hold_signal.as_mut(),
        ) {
            send_frame(now, source, &mut self.trunk, out);
        }
    }

    /// The agent's hold started or ended: start the comfort signal afresh or stop it, and tell
    /// the call task. The phone's own music on hold started or stopped: after it, our signal
    /// starts afresh.
    pub(super) fn drive_hold(&mut self) {
        while let Some(event) = self.hold.poll_event() {
            match event {
                HoldEvent::Started | HoldEvent::PhoneMusicStopped => {
                    self.hold_signal = Some(self.waiting_signal())
                }
                HoldEvent::PhoneMusicStarted => {}
                HoldEvent::Ended => self.hold_signal = None,
            }
            self.emit(MediaEvent::Hold(event));
        }
    }
}

impl MediaState for CallMedia {
    fn prefetch(&self) {
        // The trunk leg whole: nearly all of it is the RTP session a packet goes through.
        dsp::prefetch(&self.trunk);
        self.inband.detector.prefetch_head();
        dsp::prefetch(&self.inband.base);
        dsp::prefetch(&self.inband.on);
        dsp::prefetch(&self.bridged);
        dsp::prefetch(&self.trunk_elsewhere);
        dsp::prefetch(&self.agent);
        dsp::prefetch(&self.comfort);
        dsp::prefetch(&self.comfort_clock);
        dsp::prefetch(&self.hold);
    }

    fn prefetch_more(&self) {
        if self.inband.on {
            self.inband.detector.prefetch(FRAME);
        }
    }

    fn handle_datagram(
        &mut self,
        now: Instant,
        leg: LegId,
        from: SocketAddr,
        bytes: &[u8],
        out: &mut Outbox,
    ) {
        match leg {
            LegId::Caller => {
                self.handle_trunk_rtp(now, from, bytes, out);
                self.trunk.sync_connection(LegId::Caller, out);
            }
            LegId::Agent => {
                self.handle_agent_rtp(now, from, bytes, out);
                if let Some(agent) = &mut self.agent {
                    agent.sync_connection(LegId::Agent, out);
                }
            }
        }
    }

    fn handle_changed(&mut self, out: &mut Outbox) {
        self.trunk.sync_connection(LegId::Caller, out);
        if let Some(agent) = &mut self.agent {
            agent.sync_connection(LegId::Agent, out);
        }
    }

    fn handle_timeout(&mut self, now: Instant, out: &mut Outbox) {
        if let Some(rtp) = &mut self.trunk.rtp {
            rtp.handle_timeout(now);
        }
        self.drain_trunk_rtp_events();
        if let (true, Some(agent)) = (self.bridged, &mut self.agent) {
            if let Some(rtp) = &mut agent.rtp {
                rtp.handle_timeout(now);
                while rtp.poll_event().is_some() {}
            }
        }
        if self.comfort.is_some() && self.comfort_clock.tick(now) {
            self.send_comfort_frame(now, out);
        }
        if self.hold.handle_timeout(now) {
            // The phone's music may have just stopped: ours starts afresh before this frame.
            self.drive_hold();
            self.send_hold_frame(now, out);
        }
        self.drive_hold();
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let agent = match (self.bridged, &self.agent) {
            (true, Some(agent)) => agent.rtp.as_ref().and_then(|r| r.poll_timeout()),
            _ => None,
        };
        [
            self.trunk.rtp.as_ref().and_then(|r| r.poll_timeout()),
            agent,
            // The frame rides on the caller's next packet if one comes by then.
            self.comfort.as_ref().map(|_| self.comfort_clock.deadline()),
            self.hold.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// Sends the next 20 ms of `source` to the trunk leg's peer (nothing if its direction forbids
/// sending).
fn send_frame(now: Instant, source: &mut Signal, leg: &mut LegMedia, out: &mut Outbox) {
    let mut pcm = [0i16; FRAME];
    source.fill(&mut pcm);
    if let Some(rtp) = leg.rtp.as_mut() {
        let mut payload = [0u8; FRAME];
        let codec = rtp.media().codec.kind();
        if pcm.iter().all(|&s| s == 0) {
            // Silence (most frames of a waiting call): one byte, nothing to encode.
            payload.fill(silence_byte(codec));
        } else {
            encode(codec, &pcm, &mut payload);
        }
        let mut packet = [0u8; RTP_HEADER_LEN + FRAME];
        if let Some((dest, len)) = rtp.send_audio_into(now, &payload, FRAME as u32, &mut packet) {
            leg.send_rtp(LegId::Caller, &packet[..len], dest, out);
        }
    }
}

/// A signal the caller hears (silence, a prompt, a tone), kept inline in the call's media state:
/// no allocation per signal, and no pointer to follow — a cache miss at thousands of calls — for
/// each 20 ms frame.
pub(super) enum Signal {
    Silence,
    Prompt(LoopedPrompt<Arc<[i16]>>),
    Tone(ToneGenerator),
}

impl SignalSource for Signal {
    fn fill(&mut self, out: &mut [i16]) {
        match self {
            Signal::Silence => Silence.fill(out),
            Signal::Prompt(p) => p.fill(out),
            Signal::Tone(t) => t.fill(out),
        }
    }
}

/// The configured comfort signal, from the start of its loop.
pub(super) fn comfort_signal(comfort: &Comfort) -> Signal {
    match comfort {
        Comfort::Ringback => ringback(),
        Comfort::Prompt(samples) => match LoopedPrompt::new(samples.clone()) {
            Ok(p) => Signal::Prompt(p),
            Err(_) => ringback(),
        },
    }
}

/// A leg's RTP settings; `signalling_ip` is where the leg's SIP comes from, the one address besides
/// its SDP's that may send its RTP (phones behind NAT), see [`sip::rtp`].
pub(super) fn rtp_config(flow: &CallFlowConfig, signalling_ip: IpAddr) -> RtpConfig {
    RtpConfig {
        local_ssrc: rand::random(),
        initial_seq: rand::random(),
        initial_timestamp: rand::random(),
        media_timeout: flow.media_timeout,
        signalling_ip: Some(signalling_ip),
        ..RtpConfig::default()
    }
}

pub(super) fn media_ip(flow: &CallFlowConfig, local: SocketAddr) -> IpAddr {
    match flow.media_ip {
        Some(ip) => ip,
        None if local.ip().is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        None => local.ip(),
    }
}

/// A UDP socket on a port pair from the pool, at `ip`: the leg's RTP socket and its lease.
pub(super) async fn bind_media(
    ports: &SharedPortPool,
    ip: IpAddr,
) -> Result<(std::net::UdpSocket, PortLease), String> {
    let mut last = String::from("no attempt");
    for _ in 0..BIND_ATTEMPTS {
        let lease = ports.allocate().map_err(|e| e.to_string())?;
        match std::net::UdpSocket::bind(SocketAddr::new(ip, lease.rtp_port())) {
            Ok(socket) => return Ok((socket, lease)),
            Err(e) => {
                last = format!("port {}: {e}", lease.rtp_port());
                lease.taken_elsewhere();
            }
        }
    }
    Err(last)
}

/// The Dutch ringback (425 Hz, 1 s on, 4 s off, −13 dBm0) from the start of its cadence. Its
/// burst is rendered once per process and shared: a call copies samples instead of computing a
/// sine per sample.
pub(super) fn ringback() -> Signal {
    static BURST: OnceLock<Arc<[i16]>> = OnceLock::new();
    rendered(&BURST, ToneGenerator::dutch_ringback, 8000, 32_000)
}

/// The Dutch busy tone (425 Hz, 0.5 s on, 0.5 s off), rendered once like [`ringback`].
pub(super) fn busy_tone() -> Signal {
    static BURST: OnceLock<Arc<[i16]>> = OnceLock::new();
    rendered(&BURST, ToneGenerator::dutch_busy, 4000, 4000)
}

/// A tone's first `on` samples from `tone`, rendered into `burst` the first time, then looped with
/// `off` samples of silence: the same samples as `tone` (each burst starts at phase 0).
fn rendered(
    burst: &OnceLock<Arc<[i16]>>,
    tone: fn() -> ToneGenerator,
    on: usize,
    off: usize,
) -> Signal {
    let samples = burst.get_or_init(|| {
        let mut samples = vec![0i16; on];
        tone().fill(&mut samples);
        samples.into()
    });
    match LoopedPrompt::new(samples.clone()) {
        Ok(prompt) => Signal::Prompt(prompt.with_gap(off)),
        // Never empty (`on` is a constant above zero); the tone itself if it were.
        Err(_) => Signal::Tone(tone()),
    }
}

/// The G.711 code of a zero sample.
fn silence_byte(codec: CodecKind) -> u8 {
    match codec {
        CodecKind::Pcma => 0xD5,
        CodecKind::Pcmu => 0xFF,
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

/// Sends audio received on one leg out of the other, transcoding G.711 law when the legs differ.
/// Returns whether a packet went out.
fn relay_audio(
    now: Instant,
    from: CodecKind,
    payload: &[u8],
    to: &mut LegMedia,
    leg: LegId,
    out: &mut Outbox,
) -> bool {
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
        Some((dest, len)) => to.send_rtp(leg, &packet[..len], dest, out),
        None => false,
    }
}

/// Re-sends an RFC 4733 event with the other leg's payload type. Returns whether a packet went out.
fn relay_event(
    now: Instant,
    event: EventPayload,
    new_event: bool,
    to: &mut LegMedia,
    leg: LegId,
    out: &mut Outbox,
) -> bool {
    let Some(rtp) = to.rtp.as_mut() else {
        return false;
    };
    let mut packet = [0u8; RTP_HEADER_LEN + 4];
    match rtp.send_event_segment_into(now, event, new_event, 0, &mut packet) {
        Some((dest, len)) => to.send_rtp(leg, &packet[..len], dest, out),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dsp::tone::Cadence;
    use sip::sdp::{Codec, Direction, MediaSession};

    const TRUNK: &str = "192.0.2.10:4000";

    /// A call's media on simulated time, with the trunk leg's RTP session set up (PCMA, RFC 4733
    /// at 101) and the detector on, as `answer.rs` makes it.
    fn collecting(start: Instant) -> (CallMedia, mpsc::UnboundedReceiver<MediaEvent>) {
        let (events, rx) = mpsc::unbounded_channel();
        let mut media = CallMedia::new(
            CallId(1),
            Comfort::Ringback,
            events,
            Arc::new(AtomicU64::new(0)),
        );
        let session = MediaSession {
            remote_addr: Some(TRUNK.parse().expect("address")),
            codec: Codec::Pcma { pt: 8 },
            telephone_event_pt: Some(101),
            ptime_ms: 20,
            direction: Direction::SendRecv,
            on_hold: false,
            srtp: None,
        };
        let config = RtpConfig {
            media_timeout: Duration::from_secs(5),
            signalling_ip: Some("192.0.2.10".parse().expect("ip")),
            ..RtpConfig::default()
        };
        media.trunk.rtp = Some(RtpSession::new(start, session, config));
        media.inband.start();
        media.play(start, Signal::Silence);
        (media, rx)
    }

    /// RTP packet `seq` of the trunk (PCMA, 20 ms) carrying `pcm`.
    fn packet(seq: u16, pcm: &[i16]) -> Vec<u8> {
        let ts = u32::from(seq) * 160;
        let mut p = vec![0x80, 8];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        let mut payload = [0u8; FRAME];
        encode(CodecKind::Pcma, pcm, &mut payload);
        p.extend_from_slice(&payload);
        p
    }

    /// 20 ms of DTMF `5` (770 + 1336 Hz, −10 dBm0 each), from sample `at` on.
    fn five(tone: &mut [ToneGenerator; 2]) -> [i16; FRAME] {
        let (mut low, mut high) = ([0i16; FRAME], [0i16; FRAME]);
        tone[0].fill(&mut low);
        tone[1].fill(&mut high);
        let mut pcm = [0i16; FRAME];
        for ((o, a), b) in pcm.iter_mut().zip(low).zip(high) {
            *o = a.saturating_add(b);
        }
        pcm
    }

    fn events(rx: &mut mpsc::UnboundedReceiver<MediaEvent>) -> Vec<MediaEvent> {
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    #[test]
    fn a_tone_in_the_callers_audio_becomes_one_digit_for_the_call_task() {
        let start = Instant::now();
        let (mut media, mut rx) = collecting(start);
        let from: SocketAddr = TRUNK.parse().expect("address");
        let mut out = Outbox::default();
        let mut tone = [
            ToneGenerator::new(770, -10.0, Cadence::CONTINUOUS).expect("tone"),
            ToneGenerator::new(1336, -10.0, Cadence::CONTINUOUS).expect("tone"),
        ];
        // 200 ms of silence, 100 ms of `5`, 300 ms of silence.
        for seq in 0..30u16 {
            let pcm = if (10..15).contains(&seq) {
                five(&mut tone)
            } else {
                [0; FRAME]
            };
            let now = start + Duration::from_millis(20 * u64::from(seq));
            media.handle_datagram(now, LegId::Caller, from, &packet(seq, &pcm), &mut out);
        }
        let digits: Vec<_> = events(&mut rx)
            .into_iter()
            .filter_map(|e| match e {
                MediaEvent::InbandDigit {
                    digit,
                    start: s,
                    end,
                } => Some((digit, s, end)),
                _ => None,
            })
            .collect();
        assert_eq!(digits.len(), 1, "{digits:?}");
        let (digit, s, end) = digits[0];
        assert_eq!(digit, '5');
        // Placed on the packets' time line: the tone ran from 200 to 300 ms.
        let at = |t: Instant| t.duration_since(start).as_millis();
        assert!((180..=240).contains(&at(s)), "began at {} ms", at(s));
        assert!((270..=340).contains(&at(end)), "ended at {} ms", at(end));
        // Silence went back on the caller's packets, one frame per packet, to its address.
        assert!(!out.is_empty());
        let mut frames = 0;
        out.drain(|leg, dest, bytes| {
            assert_eq!((leg, dest), (LegId::Caller, from));
            assert!(bytes[RTP_HEADER_LEN..].iter().all(|&b| b == 0xD5));
            frames += 1;
        });
        assert!(
            (28..=30).contains(&frames),
            "{frames} frames for 30 packets"
        );
    }

    #[test]
    fn comfort_frames_keep_their_20_ms_on_timeouts_alone_and_silence_ends_the_call() {
        let start = Instant::now();
        let (mut media, mut rx) = collecting(start);
        let mut out = Outbox::default();
        // No packet from the caller: the frames go on the media plane's timeouts, every 20 ms.
        let mut now = start;
        let mut sent = Vec::new();
        while now < start + Duration::from_secs(6) {
            let Some(next) = media.poll_timeout() else {
                panic!("a call with a signal to play always wants a wake-up");
            };
            assert!(next > now || next == start, "the deadline moves on");
            now = next.max(now);
            media.handle_timeout(now, &mut out);
            out.drain(|_, _, _| sent.push(now));
            now += Duration::from_micros(1);
        }
        let in_first_second = sent
            .iter()
            .filter(|t| t.duration_since(start) < Duration::from_secs(1))
            .count();
        assert!(
            (49..=51).contains(&in_first_second),
            "{in_first_second} frames in 1 s"
        );
        // Five seconds without RTP (the media timeout): the call task hears it, once.
        let silent = events(&mut rx)
            .iter()
            .filter(|e| matches!(e, MediaEvent::CallerSilent))
            .count();
        assert_eq!(silent, 1);
    }

    #[test]
    fn on_direct_media_no_rtp_from_the_caller_is_no_reason_to_end() {
        let start = Instant::now();
        let (mut media, mut rx) = collecting(start);
        media.trunk_elsewhere = true;
        media.comfort = None;
        let mut out = Outbox::default();
        let mut now = start;
        for _ in 0..100 {
            let Some(next) = media.poll_timeout() else {
                break;
            };
            now = next.max(now) + Duration::from_millis(1);
            media.handle_timeout(now, &mut out);
        }
        assert!(
            now >= start + Duration::from_secs(5),
            "past the media timeout"
        );
        assert!(!events(&mut rx)
            .iter()
            .any(|e| matches!(e, MediaEvent::CallerSilent)));
    }

    #[test]
    fn rendered_tones_are_the_generators_samples() {
        for (mut rendered, mut tone, period) in [
            (ringback(), ToneGenerator::dutch_ringback(), 40_000),
            (busy_tone(), ToneGenerator::dutch_busy(), 8000),
        ] {
            // Two whole cadences and a bit, in frames, as the call task reads them.
            let mut a = vec![0i16; 2 * period + 4 * FRAME];
            let mut b = a.clone();
            for (x, y) in a.chunks_mut(FRAME).zip(b.chunks_mut(FRAME)) {
                rendered.fill(x);
                tone.fill(y);
            }
            assert_eq!(a, b);
        }
    }

    #[test]
    fn silence_is_sent_as_the_laws_zero() {
        let mut a = [0u8; 1];
        encode(CodecKind::Pcma, &[0], &mut a);
        assert_eq!(a[0], silence_byte(CodecKind::Pcma));
        encode(CodecKind::Pcmu, &[0], &mut a);
        assert_eq!(a[0], silence_byte(CodecKind::Pcmu));
    }
}
