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
//! - Reading: `recvmmsg`, one system call per wake-up ([`RtpSocket::recv_batch`]); before the
//!   caller's BYE is handled, what they sent before it is read ([`Call::drain_trunk_rtp`]).
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
/// Reads of the trunk socket before a caller's BYE is handled ([`Call::drain_trunk_rtp`]): up to
/// 64 datagrams, over a second of 20 ms RTP.
const DRAIN_BEFORE_BYE: usize = 32;
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

    /// The caller hung up: what they sent before the BYE and still waits in the trunk socket is
    /// read first (a busy runtime may take the BYE first), so the last digits count. Bounded by
    /// [`DRAIN_BEFORE_BYE`] reads.
    pub(super) fn drain_trunk_rtp(&mut self, now: Instant, batch: &mut RecvBatch) {
        for _ in 0..DRAIN_BEFORE_BYE {
            if self.trunk_media.socket.try_recv_batch(batch).is_err() {
                return;
            }
            for (from, bytes) in (0..batch.len()).filter_map(|i| batch.get(i)) {
                self.handle_trunk_rtp(now, from, bytes);
            }
            if batch.len() < RECV_BATCH {
                return;
            }
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
///
/// Read with `recvmmsg` ([`RtpSocket::recv_batch`]): one system call per wake-up. A plain
/// `recvfrom` per datagram needs a second one that fails with `EAGAIN` before the runtime may wait
/// again (edge-triggered readiness), i.e. two per packet; a batch that comes back short of
/// [`RECV_BATCH`] says the queue was empty, and the readiness is cleared without asking again.
pub(super) struct RtpSocket {
    fd: AsyncFd<std::net::UdpSocket>,
    /// Bound to an IPv6 address: sources come as `sockaddr_in6` (see [`recv_mmsg`]).
    v6: bool,
}

/// Datagrams one wake-up reads at most. Two are enough to tell "drained" (fewer came back) from
/// "more may wait"; RTP every 20 ms rarely queues more.
pub(super) const RECV_BATCH: usize = 2;
/// Room for one datagram: larger ones arrive cut short (RTP at 1500-byte MTUs fits).
const DATAGRAM: usize = 2048;

/// The datagrams of one [`RtpSocket::recv_batch`], in arrival order.
pub(super) struct RecvBatch {
    buf: Vec<u8>,
    /// Per datagram: its length and source (`None`: no IP source, skipped).
    got: [Option<(usize, SocketAddr)>; RECV_BATCH],
    len: usize,
}

impl RecvBatch {
    pub(super) fn new() -> RecvBatch {
        RecvBatch {
            buf: vec![0; RECV_BATCH * DATAGRAM],
            got: [None; RECV_BATCH],
            len: 0,
        }
    }

    /// How many datagrams the last read brought.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Datagram `i` of the last read and where it came from.
    pub(super) fn get(&self, i: usize) -> Option<(SocketAddr, &[u8])> {
        let (n, from) = (*self.got.get(i).filter(|_| i < self.len)?)?;
        let bytes = self.buf.get(i * DATAGRAM..i * DATAGRAM + n)?;
        Some((from, bytes))
    }
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
        Ok(RtpSocket {
            fd,
            v6: addr.is_ipv6(),
        })
    }

    /// The next datagrams (at least one, at most [`RECV_BATCH`]) into `batch`.
    pub(super) async fn recv_batch(&self, batch: &mut RecvBatch) -> std::io::Result<()> {
        loop {
            let mut ready = self.fd.readable().await?;
            // `WouldBlock` clears the readiness and we wait again; anything else is the answer.
            match ready.try_io(|socket| recv_mmsg(socket.get_ref(), self.v6, batch)) {
                Ok(Ok(n)) if n < RECV_BATCH => {
                    // The queue was empty when the call returned. A datagram arriving since has
                    // raised a new readiness event, which this does not clear (tokio compares the
                    // event's tick).
                    ready.clear_ready();
                    return Ok(());
                }
                Ok(result) => return result.map(|_| ()),
                Err(_would_block) => {}
            }
        }
    }

    /// The datagrams waiting now, without waiting for any: how many the kernel gave
    /// (`WouldBlock` for none).
    fn try_recv_batch(&self, batch: &mut RecvBatch) -> std::io::Result<usize> {
        recv_mmsg(self.fd.get_ref(), self.v6, batch)
    }

    /// Sends `buf` to `dest` now, or fails (`WouldBlock` when the send buffer is full).
    pub(super) fn try_send_to(&self, buf: &[u8], dest: SocketAddr) -> std::io::Result<usize> {
        self.fd.get_ref().send_to(buf, dest)
    }
}

/// One `recvmmsg` without waiting into `batch`: how many datagrams the kernel gave
/// (`WouldBlock` for none). `v6`: the socket is bound to an IPv6 address.
fn recv_mmsg(
    socket: &std::net::UdpSocket,
    v6: bool,
    batch: &mut RecvBatch,
) -> std::io::Result<usize> {
    use nix::sys::socket::{recvmmsg, MsgFlags, MultiHeaders, SockaddrStorage};
    use std::cell::RefCell;
    use std::io::IoSliceMut;
    use std::os::fd::AsRawFd;
    thread_local! {
        // The kernel's message headers, reused: they hold pointers, so they may not live in the
        // call's future (not `Send`), and nothing awaits while they are borrowed. One set per
        // address family: the kernel shortens a header's address length to the source it wrote
        // and `nix` does not restore it, so an IPv4 socket's headers would cut an IPv6 source
        // short. A socket's sources are all of its own family (IPv4 on an IPv6 socket comes
        // mapped), so each set keeps the length it needs.
        static HEADERS_V4: RefCell<MultiHeaders<SockaddrStorage>> =
            RefCell::new(MultiHeaders::preallocate(RECV_BATCH, None));
        static HEADERS_V6: RefCell<MultiHeaders<SockaddrStorage>> =
            RefCell::new(MultiHeaders::preallocate(RECV_BATCH, None));
    }
    let RecvBatch { buf, got, len } = batch;
    *len = 0;
    let headers = if v6 { &HEADERS_V6 } else { &HEADERS_V4 };
    headers.with_borrow_mut(|headers| {
        let (first, second) = buf.split_at_mut(DATAGRAM);
        let mut iovs = [[IoSliceMut::new(first)], [IoSliceMut::new(second)]];
        let results = recvmmsg(
            socket.as_raw_fd(),
            headers,
            iovs.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        )
        .map_err(std::io::Error::from)?;
        for (msg, slot) in results.zip(got.iter_mut()) {
            *len += 1;
            let from = msg.address.as_ref().and_then(|a| {
                a.as_sockaddr_in()
                    .map(|v4| SocketAddr::V4((*v4).into()))
                    .or_else(|| a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into())))
            });
            // A datagram without an IP source (none on a UDP socket) is skipped.
            *slot = from.map(|from| (msg.bytes.min(DATAGRAM), from));
        }
        Ok(*len)
    })
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

    #[tokio::test(flavor = "current_thread")]
    async fn a_batch_reads_what_is_queued_and_then_waits_for_more() {
        let quiet = Duration::from_millis(50);
        for (ours, theirs) in [("127.0.0.1:0", "127.0.0.1:0"), ("[::1]:0", "[::1]:0")] {
            let Ok(socket) = RtpSocket::bind(ours.parse().unwrap()) else {
                continue; // no IPv6 loopback here
            };
            let addr = socket.fd.get_ref().local_addr().unwrap();
            let peer = std::net::UdpSocket::bind(theirs).unwrap();
            let from = peer.local_addr().unwrap();
            for datagram in [&b"one"[..], b"two", b"three"] {
                peer.send_to(datagram, addr).unwrap();
            }
            let mut batch = RecvBatch::new();
            let mut read = Vec::new();
            while read.len() < 3 {
                tokio::time::timeout(quiet, socket.recv_batch(&mut batch))
                    .await
                    .expect("queued datagrams are read at once")
                    .unwrap();
                assert!((1..=RECV_BATCH).contains(&batch.len()));
                read.extend((0..batch.len()).filter_map(|i| batch.get(i)).map(|(f, b)| {
                    assert_eq!(f, from);
                    b.to_vec()
                }));
            }
            assert_eq!(read, [&b"one"[..], b"two", b"three"]);
            // Drained: the next read waits, and a datagram sent meanwhile wakes it.
            {
                let next = socket.recv_batch(&mut batch);
                tokio::pin!(next);
                assert!(tokio::time::timeout(quiet, &mut next).await.is_err());
                peer.send_to(b"four", addr).unwrap();
                tokio::time::timeout(quiet, next)
                    .await
                    .expect("woken")
                    .unwrap();
            }
            assert_eq!(batch.get(0), Some((from, &b"four"[..])));
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
