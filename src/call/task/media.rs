//! The call task's media plane: RTP read from either leg's socket and what happens to it.
//!
//! - Trunk RTP (RFC 3550) feeds the in-band [`DtmfDetector`](dsp::dtmf::DtmfDetector) while the
//!   code comes in, and its RFC 4733 §2.5 events (digit start/end) and media timeout go to the
//!   call machine.
//! - Once the agent leg is connected, audio is relayed between the legs (B2BUA), transcoded
//!   PCMA↔PCMU (ITU-T G.711) when they negotiated different laws; RFC 4733 events are re-sent with
//!   the other leg's payload type, but never an event that began before the bridge (the tail of
//!   the link code).
//! - The comfort signal (silence, ringback, prompt, busy tone) is sent to the trunk in 20 ms frames,
//!   and so is the one the caller hears while the agent holds them (`hold.rs`), unless the agent's
//!   phone sends its own music on hold meanwhile: while held, its audio and comfort noise go
//!   through `AgentHold`, which judges them by payload type and level and says whether to relay.
//!   A comfort frame goes with the wake-up of the caller's packet when its slot is near
//!   ([`FrameClock::tick_on_packet`](crate::call::pacing::FrameClock::tick_on_packet)), so a
//!   call costs one wake-up per 20 ms, not two. The tones are rendered once per process
//!   ([`ringback`], [`busy_tone`]) and silence is sent without encoding.
//! - Setting a leg up: binding an RTP port from the pool ([`RtpSocket`]) and the RTP session
//!   configuration.

use super::{AgentLeg, Call, MediaLeg};
use crate::call::collect::DigitSource;
use crate::call::config::CallFlowConfig;
use crate::call::direct::DirectMedia;
use crate::call::hold::{AgentPacket, CN_PAYLOAD_TYPE};
use crate::rtp_ports::{PortLease, SharedPortPool};
use dsp::dtmf::DtmfEvent;
use dsp::tone::{LoopedPrompt, SignalSource, ToneGenerator};
use sip::rfc4733::{DigitEvent, EventPayload};
use sip::rtp::{Received, RtpConfig, RtpEvent, RTP_HEADER_LEN};
use sip::sdp::CodecKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// 20 ms of 8 kHz audio.
const FRAME: usize = 160;
/// Attempts at binding an RTP port before refusing the call.
const BIND_ATTEMPTS: usize = 8;

impl Call {
    pub(super) fn handle_trunk_rtp(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        let Some(bytes) = self.trunk_media.receive(bytes) else {
            return;
        };
        let bytes = &bytes[..];
        let Some(rtp) = self.trunk_media.rtp.as_mut() else {
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
                if let Some((detector, base)) = &mut self.detector {
                    let mut pcm = [0i16; 2 * FRAME * 4];
                    let n = info.payload.len().min(pcm.len());
                    decode(codec, &info.payload[..n], &mut pcm[..n]);
                    // Sample positions map to wall time from the first audio packet on.
                    let base = *base.get_or_insert(now);
                    detector.push(&pcm[..n]);
                    while let Some(event) = detector.poll_event() {
                        if let DtmfEvent::Ended { digit, start, end } = event {
                            crate::metrics::global().digit("inband");
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
        self.drain_trunk_rtp_events(now);
        // Awake anyway: the comfort frame whose slot is near goes now, not on a timer of its own.
        if from_peer && self.comfort.is_some() && self.comfort_clock.tick_on_packet(now) {
            self.send_comfort_frame(now);
        }
    }

    pub(super) fn handle_agent_rtp(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        let Some(AgentLeg::Connected { media, .. }) = &mut self.agent else {
            return;
        };
        let Some(bytes) = media.receive(bytes) else {
            return;
        };
        let bytes = &bytes[..];
        let Some(rtp) = media.rtp.as_mut() else {
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
                    && relay_audio(now, codec, info.payload, &mut self.trunk_media)
            }
            Ok(Received::Unknown {
                payload_type: CN_PAYLOAD_TYPE,
            }) => self
                .hold
                .handle_agent_packet(now, AgentPacket::ComfortNoise),
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

    pub(super) fn drain_trunk_rtp_events(&mut self, now: Instant) {
        let Some(rtp) = self.trunk_media.rtp.as_mut() else {
            return;
        };
        while let Some(event) = rtp.poll_event() {
            match event {
                RtpEvent::Digit(DigitEvent::DigitStart { digit, at }) => {
                    crate::metrics::global().digit("rfc4733");
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
                    self.teardown.hangup_caller(now);
                    self.machine.handle_caller_gone(now);
                }
                RtpEvent::Latched(_) | RtpEvent::SsrcChanged { .. } => {}
            }
        }
    }

    pub(super) fn send_comfort_frame(&mut self, now: Instant) {
        let Some(source) = self.comfort.as_mut() else {
            return;
        };
        send_frame(now, source.as_mut(), &mut self.trunk_media);
    }
}

impl Call {
    /// A comfort frame is due while the agent holds the caller ([`AgentHold`](crate::call::hold)
    /// paces them and leaves them out while the phone's own music on hold plays). Only while the trunk's
    /// RTP comes to our relay, the agent leg is connected and no other signal (a goodbye) plays.
    pub(super) fn send_hold_frame(&mut self, now: Instant) {
        let relayed = !self
            .direct
            .as_ref()
            .is_some_and(DirectMedia::trunk_media_elsewhere);
        let connected = matches!(self.agent, Some(AgentLeg::Connected { .. }));
        if let (true, true, None, Some(source)) =
            (relayed, connected, &self.comfort, self.hold_signal.as_mut())
        {
            send_frame(now, source.as_mut(), &mut self.trunk_media);
        }
    }
}

/// Sends the next 20 ms of `source` to `leg`'s peer (nothing if its direction forbids sending).
fn send_frame(now: Instant, source: &mut (dyn SignalSource + Send), leg: &mut MediaLeg) {
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
            leg.send_rtp(&packet[..len], dest);
        }
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

/// A leg's RTP socket. Registered with the runtime for reading only: we send without waiting
/// (a frame that finds the send buffer full is dropped, as a late one would be), so a send never
/// raises a "writable" event. A socket registered for both would get one from the kernel for
/// every datagram it sent (the loopback or NIC frees it at once), each an epoll wake-up for
/// nothing — as many as the packets a call sends.
pub(super) struct RtpSocket {
    fd: AsyncFd<std::net::UdpSocket>,
}

impl RtpSocket {
    fn bind(addr: SocketAddr) -> std::io::Result<RtpSocket> {
        let socket = std::net::UdpSocket::bind(addr)?;
        socket.set_nonblocking(true)?;
        // Deprecated in favour of an `unsafe` constructor whose condition — the descriptor stays
        // open and the same while registered — an owned `std` socket meets by itself: it closes
        // only when the `AsyncFd` (deregistering first) drops it.
        #[allow(deprecated)]
        let fd = AsyncFd::with_interest(socket, Interest::READABLE)?;
        Ok(RtpSocket { fd })
    }

    /// The next datagram and where it came from.
    pub(super) async fn recv_from(&self, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
        loop {
            let mut ready = self.fd.readable().await?;
            // `WouldBlock` clears the readiness and we wait again; anything else is the answer.
            if let Ok(result) = ready.try_io(|socket| socket.get_ref().recv_from(buf)) {
                return result;
            }
        }
    }

    /// Sends `buf` to `dest` now, or fails (`WouldBlock` when the send buffer is full).
    pub(super) fn try_send_to(&self, buf: &[u8], dest: SocketAddr) -> std::io::Result<usize> {
        self.fd.get_ref().send_to(buf, dest)
    }
}

pub(super) async fn bind_media(
    ports: &SharedPortPool,
    ip: IpAddr,
) -> Result<(RtpSocket, PortLease), String> {
    let mut last = String::from("no attempt");
    for _ in 0..BIND_ATTEMPTS {
        let lease = ports.allocate().map_err(|e| e.to_string())?;
        match RtpSocket::bind(SocketAddr::new(ip, lease.rtp_port())) {
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
pub(super) fn ringback() -> Box<dyn SignalSource + Send> {
    static BURST: OnceLock<Arc<[i16]>> = OnceLock::new();
    rendered(&BURST, ToneGenerator::dutch_ringback, 8000, 32_000)
}

/// The Dutch busy tone (425 Hz, 0.5 s on, 0.5 s off), rendered once like [`ringback`].
pub(super) fn busy_tone() -> Box<dyn SignalSource + Send> {
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
) -> Box<dyn SignalSource + Send> {
    let samples = burst.get_or_init(|| {
        let mut samples = vec![0i16; on];
        tone().fill(&mut samples);
        samples.into()
    });
    match LoopedPrompt::new(samples.clone()) {
        Ok(prompt) => Box::new(prompt.with_gap(off)),
        // Never empty (`on` is a constant above zero); the tone itself if it were.
        Err(_) => Box::new(tone()),
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
        Some((dest, len)) => to.send_rtp(&packet[..len], dest),
        None => false,
    }
}

/// Re-sends an RFC 4733 event with the other leg's payload type. Returns whether a packet went out.
fn relay_event(now: Instant, event: EventPayload, new_event: bool, to: &mut MediaLeg) -> bool {
    let Some(rtp) = to.rtp.as_mut() else {
        return false;
    };
    let mut packet = [0u8; RTP_HEADER_LEN + 4];
    match rtp.send_event_segment_into(now, event, new_event, 0, &mut packet) {
        Some((dest, len)) => to.send_rtp(&packet[..len], dest),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
