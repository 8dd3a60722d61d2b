//! Sans-IO RTP session for one call leg (RFC 3550), with symmetric RTP (RFC 4961) and the leg's
//! RFC 4733 digit receiver.
//!
//! Owns: packet classification by the NEGOTIATED payload types (audio PT vs telephone-event PT, never
//! by payload shape), remote-address latching, per-SSRC sequence tracking (extended sequence, loss,
//! duplicates, late packets, jitter — see `seq.rs`), our outgoing SSRC/sequence/timestamp/marker, and
//! the media timeout. Packets are parsed and built with `rtp-rs`.
//!
//! # Symmetric RTP: where a stream may come from, and learning it once
//! Only two kinds of source may ever feed the session (rtpengine's "strict source" idea): the
//! address in the peer's SDP, and — for phones behind NAT, whose SDP names a private address — the
//! IP their SIP comes from ([`RtpConfig::signalling_ip`]). Anything else is dropped
//! ([`DropReason::UnknownSource`]), before it can latch, be heard or inject a digit.
//!
//! Among those, the session *learns* one source at the start of the stream (rtpengine's learning
//! mode) and then keeps it:
//! - Until the first packet arrives we send to the address from SDP.
//! - The first packet from an allowed source latches at once: we send to where it came from (what
//!   makes calls through NAT work) and a [learning window](RtpConfig::learning_window) starts.
//! - Within the window a *better* source may take over, best first: the exact SDP address, then
//!   another port on the SDP's IP, then the signalling IP. So a packet spoofed from an allowed IP
//!   cannot keep the stream from a phone that sends from the address its SDP names.
//! - After the window the latch is fixed for the rest of the stream: packets from any other source,
//!   allowed or not, are dropped ([`DropReason::UnlatchedSource`]); no number of them moves it.
//!   A NAT rebinding mid-call therefore loses the caller's audio — the price of not letting a
//!   spoofer take it over.
//! - [`RtpSession::update_media`] with new media (a re-INVITE moving the address, or changing
//!   direction or hold) starts learning again: the next allowed packet latches and opens a new
//!   window. Until it comes we keep sending to the old latch if the SDP address did not change.
//! - A new SSRC from the LATCHED source is a new stream (sender restart): its state is reset and
//!   [`RtpEvent::SsrcChanged`] reported.
//!
//! # Polling order
//! `handle_packet` / `handle_timeout` → drain `poll_event` → `poll_timeout` for the next wake-up.
//! `send_audio` / `send_event` return the datagram directly (media is paced by the caller's clock).

mod seq;
pub mod srtp;

/// Re-exported so the driver and tests parse/build RTP with the same crate version.
pub use rtp_rs;

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rtp_rs::{RtpPacketBuilder, RtpReader, Seq};

use crate::rfc4733::{DigitEvent, EventPayload, Rfc4733Receiver};
use crate::sdp::MediaSession;
use seq::{SeqOutcome, SeqTracker};

/// RTP errors: only malformed input (everything else is a [`Received::Dropped`]).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RtpError {
    /// Not an RTP version 2 packet, or its headers are truncated.
    #[error("malformed RTP packet: {0}")]
    Malformed(String),
}

/// Settings that are ours, not negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpConfig {
    /// Our SSRC (pick at random per leg).
    pub local_ssrc: u32,
    /// First sequence number we send (random, RFC 3550 §5.1).
    pub initial_seq: u16,
    /// First RTP timestamp we send (random, RFC 3550 §5.1).
    pub initial_timestamp: u32,
    /// RTP clock rate of the audio codec and telephone-event (8000 for G.711).
    pub clock_rate: u32,
    /// No RTP for this long while we expect to receive (our direction receives and the peer has not
    /// put us on hold) → [`RtpEvent::MediaTimeout`].
    pub media_timeout: Duration,
    /// How long after the first packet of a stream a better source may still take the latch over;
    /// after that the latch is fixed (see the module docs).
    pub learning_window: Duration,
    /// The IP the peer's SIP comes from (the INVITE's source, the phone's registered flow): RTP
    /// from any port there is accepted besides the SDP address, for phones behind NAT. `None`: the
    /// SDP address only.
    pub signalling_ip: Option<IpAddr>,
}

impl Default for RtpConfig {
    /// G.711 clock, 30 s media timeout, 3 s learning window (rtpengine's), no signalling IP.
    fn default() -> Self {
        RtpConfig {
            local_ssrc: 0x5eed_0001,
            initial_seq: 1,
            initial_timestamp: 0,
            clock_rate: 8000,
            media_timeout: Duration::from_secs(30),
            learning_window: Duration::from_secs(3),
            signalling_ip: None,
        }
    }
}

/// Length of the RTP header we write (no CSRCs, no extension).
pub const RTP_HEADER_LEN: usize = 12;

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Destination (latched address, else the SDP address).
    pub to: SocketAddr,
    /// The RTP packet.
    pub bytes: Vec<u8>,
}

/// Fields of an accepted packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketInfo<'a> {
    /// Payload bytes (after CSRCs, extension and padding are removed).
    pub payload: &'a [u8],
    /// Sender's SSRC.
    pub ssrc: u32,
    /// Extended sequence number (RFC 3550 A.1: cycles * 65536 + seq).
    pub sequence: u64,
    /// RTP timestamp.
    pub timestamp: u32,
    /// Marker bit.
    pub marker: bool,
    /// Arrived out of order (older than the highest sequence seen).
    pub late: bool,
}

/// Why a valid RTP packet was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Same sequence number seen before.
    Duplicate,
    /// From an allowed source other than the latched one (see the latching rule).
    UnlatchedSource,
    /// From neither the SDP address nor the signalling IP: never accepted.
    UnknownSource,
    /// RTCP on the RTP port (RFC 5761 payload-type range 72–76).
    Rtcp,
    /// A sequence jump we have not confirmed yet (RFC 3550 A.1).
    SequenceJump,
}

/// Classification of one received datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received<'a> {
    /// Audio in the negotiated codec.
    Audio(PacketInfo<'a>),
    /// RFC 4733 telephone-event (the negotiated PT); already fed to the digit receiver.
    TelephoneEvent(PacketInfo<'a>),
    /// Some other payload type (comfort noise, a codec we did not agree to).
    Unknown {
        /// Its payload type.
        payload_type: u8,
    },
    /// Valid RTP we did not use.
    Dropped(DropReason),
}

/// Things the call task should know about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtpEvent {
    /// A digit from RFC 4733.
    Digit(DigitEvent),
    /// We now send to this address (first packet of a stream, or a better source within the
    /// learning window).
    Latched(SocketAddr),
    /// The latched source started a new SSRC.
    SsrcChanged {
        /// Previous SSRC.
        old: u32,
        /// New SSRC.
        new: u32,
    },
    /// No RTP for `media_timeout` while we expected some. Reported once per silence.
    MediaTimeout,
}

/// Receive and send counters.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RtpStats {
    /// Accepted packets of the current remote SSRC (not counting duplicates).
    pub packets_received: u64,
    /// Accepted payload octets over the whole leg.
    pub octets_received: u64,
    /// RFC 3550 A.3 cumulative loss of the current remote SSRC.
    pub packets_lost: i64,
    /// Duplicates of the current remote SSRC.
    pub duplicates: u64,
    /// Reordered (late) packets of the current remote SSRC.
    pub late: u64,
    /// Highest extended sequence number of the current remote SSRC.
    pub highest_sequence: u64,
    /// RFC 3550 A.8 interarrival jitter in timestamp units.
    pub jitter: f64,
    /// Valid packets dropped because they came from an allowed source other than the latched one.
    pub dropped_unlatched: u64,
    /// Valid packets dropped because they came from neither the SDP address nor the signalling IP.
    pub dropped_unknown_source: u64,
    /// Packets we sent.
    pub packets_sent: u64,
    /// Payload octets we sent.
    pub octets_sent: u64,
}

#[derive(Debug)]
struct Rx {
    ssrc: u32,
    seq: SeqTracker,
}

/// Where the stream may come from and where it is latched. A state machine of its own: see the
/// module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Latch {
    /// No packet of this stream yet: send to the SDP address, or to `previous` (the last stream's
    /// latch, when a re-INVITE kept the SDP address).
    Waiting { previous: Option<SocketAddr> },
    /// Latched to `addr`, a source of rank `rank`; a better-ranked source may take over until
    /// `until`.
    Learning {
        addr: SocketAddr,
        rank: Rank,
        until: Instant,
    },
    /// Latched for the rest of the stream.
    Fixed(SocketAddr),
}

/// How well a source matches what signalling told us, worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    /// Any port at the IP the peer's SIP comes from.
    SignallingIp,
    /// Another port at the SDP address's IP.
    SdpIp,
    /// The SDP address itself.
    SdpAddress,
}

#[derive(Debug, Clone, Copy)]
struct LastAudio {
    at: Instant,
    timestamp: u32,
    samples: u32,
}

/// One call leg's RTP. See the module docs for the latching rule and polling order.
#[derive(Debug)]
pub struct RtpSession {
    config: RtpConfig,
    media: MediaSession,
    latch: Latch,
    rx: Option<Rx>,
    dtmf: Rfc4733Receiver,
    /// Reference instant for jitter arrival times.
    epoch: Instant,
    last_rx: Instant,
    timeout_reported: bool,
    next_seq: u16,
    last_audio: Option<LastAudio>,
    event_timestamp: Option<u32>,
    stats: RtpStats,
    events: VecDeque<RtpEvent>,
}

impl RtpSession {
    /// A session for a negotiated [`MediaSession`], created at `now`.
    pub fn new(now: Instant, media: MediaSession, config: RtpConfig) -> Self {
        RtpSession {
            dtmf: Rfc4733Receiver::new(config.clock_rate),
            config,
            media,
            latch: Latch::Waiting { previous: None },
            rx: None,
            epoch: now,
            last_rx: now,
            timeout_reported: false,
            next_seq: config.initial_seq,
            last_audio: None,
            event_timestamp: None,
            stats: RtpStats::default(),
            events: VecDeque::new(),
        }
    }

    /// A re-INVITE changed the media; the media timeout restarts from `now`. New media — another
    /// remote address, direction or hold state — starts learning the source again (a new window
    /// opens with the next allowed packet); until a packet comes we send to the new SDP address, or
    /// to the old latch when the address stayed. The same media again (a session refresh) changes
    /// nothing.
    pub fn update_media(&mut self, now: Instant, media: MediaSession) {
        let moved = media.remote_addr != self.media.remote_addr;
        let new_media =
            moved || media.direction != self.media.direction || media.on_hold != self.media.on_hold;
        if new_media {
            let previous = match self.latch {
                _ if moved => None,
                Latch::Waiting { previous } => previous,
                Latch::Learning { addr, .. } | Latch::Fixed(addr) => Some(addr),
            };
            self.latch = Latch::Waiting { previous };
        }
        self.media = media;
        self.last_rx = now;
        self.timeout_reported = false;
    }

    /// The negotiated media in use.
    pub fn media(&self) -> &MediaSession {
        &self.media
    }

    /// Where we send: the latched address, else the SDP address.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        match self.latch {
            Latch::Waiting { previous } => previous.or(self.media.remote_addr),
            Latch::Learning { addr, .. } | Latch::Fixed(addr) => Some(addr),
        }
    }

    /// The source the current stream is latched to, if any packet came yet.
    pub fn latched(&self) -> Option<SocketAddr> {
        match self.latch {
            Latch::Waiting { .. } => None,
            Latch::Learning { addr, .. } | Latch::Fixed(addr) => Some(addr),
        }
    }

    /// The source the stream is latched to for good (its learning window is over): until the
    /// media changes ([`RtpSession::update_media`]) no packet from anywhere else is accepted, so a
    /// driver may `connect()` the leg's socket to it (the kernel then filters other sources and
    /// keeps the route for our sends). `None` while waiting or learning.
    pub fn fixed_source(&self) -> Option<SocketAddr> {
        match self.latch {
            Latch::Fixed(addr) => Some(addr),
            Latch::Waiting { .. } | Latch::Learning { .. } => None,
        }
    }

    /// Counters.
    pub fn stats(&self) -> RtpStats {
        let mut s = self.stats;
        if let Some(rx) = &self.rx {
            s.packets_received = rx.seq.received();
            s.packets_lost = rx.seq.lost();
            s.duplicates = rx.seq.duplicates();
            s.late = rx.seq.late();
            s.highest_sequence = rx.seq.extended_max();
            s.jitter = rx.seq.jitter();
        }
        s
    }

    /// Handles one datagram received on our RTP socket.
    pub fn handle_packet<'a>(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &'a [u8],
    ) -> Result<Received<'a>, RtpError> {
        let packet = RtpReader::new(bytes).map_err(|e| RtpError::Malformed(format!("{e:?}")))?;
        let pt = packet.payload_type();
        if (72..=76).contains(&pt) {
            return Ok(Received::Dropped(DropReason::Rtcp));
        }
        if let Err(reason) = self.accept_source(now, from) {
            match reason {
                DropReason::UnknownSource => self.stats.dropped_unknown_source += 1,
                _ => self.stats.dropped_unlatched += 1,
            }
            return Ok(Received::Dropped(reason));
        }
        let ssrc = packet.ssrc();
        let seq = u16::from(packet.sequence_number());
        self.last_rx = now;
        self.timeout_reported = false;

        let (outcome, sequence) = match &mut self.rx {
            Some(rx) if rx.ssrc == ssrc => rx.seq.update(seq),
            _ => {
                if let Some(old) = self.rx.as_ref().map(|rx| rx.ssrc) {
                    self.events
                        .push_back(RtpEvent::SsrcChanged { old, new: ssrc });
                }
                self.rx = Some(Rx {
                    ssrc,
                    seq: SeqTracker::new(seq),
                });
                (SeqOutcome::InOrder, u64::from(seq))
            }
        };
        match outcome {
            SeqOutcome::Duplicate => return Ok(Received::Dropped(DropReason::Duplicate)),
            SeqOutcome::Jump => return Ok(Received::Dropped(DropReason::SequenceJump)),
            SeqOutcome::InOrder | SeqOutcome::Late => {}
        }
        let payload = packet.payload();
        self.stats.octets_received += payload.len() as u64;
        let info = PacketInfo {
            payload,
            ssrc,
            sequence,
            timestamp: packet.timestamp(),
            marker: packet.mark(),
            late: outcome == SeqOutcome::Late,
        };
        if Some(pt) == self.media.telephone_event_pt {
            // A malformed event payload is ignored; the packet is still the negotiated event type.
            let _ = self.dtmf.handle_event(now, ssrc, info.timestamp, payload);
            self.drain_digits();
            return Ok(Received::TelephoneEvent(info));
        }
        if pt == self.media.codec.payload_type() {
            if outcome == SeqOutcome::InOrder {
                let arrival = self.arrival_units(now);
                if let Some(rx) = &mut self.rx {
                    rx.seq.update_jitter(arrival, info.timestamp);
                }
            }
            return Ok(Received::Audio(info));
        }
        Ok(Received::Unknown { payload_type: pt })
    }

    /// Builds an audio packet of `samples` samples. `None` when we may not send (direction) or have
    /// nowhere to send. The marker is set on the first packet of a talkspurt: the first packet, and
    /// the first after a pause longer than two packet durations; the timestamp then jumps by the
    /// pause (RFC 3550 §5.1, RFC 3551 §4.1).
    pub fn send_audio(&mut self, now: Instant, payload: &[u8], samples: u32) -> Option<Transmit> {
        let mut bytes = vec![0u8; RTP_HEADER_LEN + payload.len()];
        let (to, len) = self.send_audio_into(now, payload, samples, &mut bytes)?;
        bytes.truncate(len);
        Some(Transmit { to, bytes })
    }

    /// [`RtpSession::send_audio`] into a caller's buffer (at least [`RTP_HEADER_LEN`] + payload
    /// bytes), for the per-packet relay path: no allocation. Returns the destination and the packet
    /// length; `None` also when `out` is too small (nothing is consumed then).
    pub fn send_audio_into(
        &mut self,
        now: Instant,
        payload: &[u8],
        samples: u32,
        out: &mut [u8],
    ) -> Option<(SocketAddr, usize)> {
        let to = self.sendable()?;
        let (timestamp, marker) = match self.last_audio {
            None => (self.config.initial_timestamp, true),
            Some(last) => {
                let elapsed = now.saturating_duration_since(last.at);
                let packet = self.samples_to_duration(last.samples);
                if elapsed > packet * 2 {
                    let gap = self.duration_to_samples(elapsed);
                    (last.timestamp.wrapping_add(gap), true)
                } else {
                    (last.timestamp.wrapping_add(last.samples), false)
                }
            }
        };
        let len = self.build_into(
            self.media.codec.payload_type(),
            timestamp,
            marker,
            payload,
            out,
        )?;
        self.last_audio = Some(LastAudio {
            at: now,
            timestamp,
            samples,
        });
        self.event_timestamp = None;
        Some((to, len))
    }

    /// Builds a telephone-event packet with OUR negotiated telephone-event PT (this is the PT mapping
    /// when relaying between legs). `new_event` starts an event: marker set and a fresh event
    /// timestamp (the current media time); later packets of the event reuse that timestamp
    /// (RFC 4733 §2.5.1.1). `None` without a negotiated telephone-event PT, direction or address.
    pub fn send_event(
        &mut self,
        now: Instant,
        event: EventPayload,
        new_event: bool,
    ) -> Option<Transmit> {
        self.send_event_segment(now, event, new_event, 0)
    }

    /// [`RtpSession::send_event`] for events longer than 0xFFFF samples: `timestamp_offset` is added
    /// to the event's start timestamp (RFC 4733 §2.5.1.3 segments; see
    /// [`crate::rfc4733::PlannedPacket::timestamp_offset`]).
    pub fn send_event_segment(
        &mut self,
        now: Instant,
        event: EventPayload,
        new_event: bool,
        timestamp_offset: u32,
    ) -> Option<Transmit> {
        let mut bytes = vec![0u8; RTP_HEADER_LEN + 4];
        let (to, len) =
            self.send_event_segment_into(now, event, new_event, timestamp_offset, &mut bytes)?;
        bytes.truncate(len);
        Some(Transmit { to, bytes })
    }

    /// [`RtpSession::send_event_segment`] into a caller's buffer (at least [`RTP_HEADER_LEN`] + 4
    /// bytes), for the per-packet relay path: no allocation. Returns the destination and the packet
    /// length; `None` also when `out` is too small (nothing is consumed then).
    pub fn send_event_segment_into(
        &mut self,
        now: Instant,
        event: EventPayload,
        new_event: bool,
        timestamp_offset: u32,
        out: &mut [u8],
    ) -> Option<(SocketAddr, usize)> {
        let pt = self.media.telephone_event_pt?;
        let to = self.sendable()?;
        let start = match (self.event_timestamp, new_event) {
            (Some(ts), false) => ts,
            _ => self.media_timestamp(now),
        };
        let timestamp = start.wrapping_add(timestamp_offset);
        let len = self.build_into(pt, timestamp, new_event, &event.to_bytes(), out)?;
        self.event_timestamp = Some(start);
        Some((to, len))
    }

    /// Runs timers due at `now`: the media timeout and the digit end timeout.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.dtmf.handle_timeout(now);
        self.drain_digits();
        if let Some(deadline) = self.media_deadline() {
            if now >= deadline {
                self.timeout_reported = true;
                self.events.push_back(RtpEvent::MediaTimeout);
            }
        }
    }

    /// Next event, oldest first.
    pub fn poll_event(&mut self) -> Option<RtpEvent> {
        self.events.pop_front()
    }

    /// The earliest instant `handle_timeout` has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.dtmf.poll_timeout(), self.media_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn media_deadline(&self) -> Option<Instant> {
        // On hold the peer may legitimately send nothing (RFC 3264 §8.4), so no timeout then.
        (self.media.direction.receives() && !self.media.on_hold && !self.timeout_reported)
            .then(|| self.last_rx + self.config.media_timeout)
    }

    /// The latching rule (module docs): whether a packet from `from` at `now` belongs to the
    /// stream, moving the latch as the rule allows.
    fn accept_source(&mut self, now: Instant, from: SocketAddr) -> Result<(), DropReason> {
        if let Latch::Learning { addr, until, .. } = self.latch {
            if now >= until {
                self.latch = Latch::Fixed(addr);
            }
        }
        if let Latch::Fixed(addr) = self.latch {
            return if same_source(addr, from) {
                Ok(())
            } else if self.rank(from).is_some() {
                Err(DropReason::UnlatchedSource)
            } else {
                Err(DropReason::UnknownSource)
            };
        }
        let rank = self.rank(from).ok_or(DropReason::UnknownSource)?;
        match self.latch {
            Latch::Learning { addr, .. } if same_source(addr, from) => Ok(()),
            Latch::Learning {
                rank: current,
                until,
                ..
            } if rank > current => {
                self.latch_to(from, rank, until);
                Ok(())
            }
            Latch::Learning { .. } | Latch::Fixed(_) => Err(DropReason::UnlatchedSource),
            Latch::Waiting { .. } => {
                self.latch_to(from, rank, now + self.config.learning_window);
                Ok(())
            }
        }
    }

    /// How well `from` matches signalling; `None`: not an allowed source at all.
    fn rank(&self, from: SocketAddr) -> Option<Rank> {
        let ip = from.ip().to_canonical();
        match self.media.remote_addr {
            Some(sdp) if same_source(sdp, from) => Some(Rank::SdpAddress),
            Some(sdp) if sdp.ip().to_canonical() == ip => Some(Rank::SdpIp),
            _ if self.config.signalling_ip.map(|s| s.to_canonical()) == Some(ip) => {
                Some(Rank::SignallingIp)
            }
            _ => None,
        }
    }

    fn latch_to(&mut self, from: SocketAddr, rank: Rank, until: Instant) {
        self.latch = Latch::Learning {
            addr: from,
            rank,
            until,
        };
        self.events.push_back(RtpEvent::Latched(from));
    }

    fn drain_digits(&mut self) {
        while let Some(d) = self.dtmf.poll_event() {
            self.events.push_back(RtpEvent::Digit(d));
        }
    }

    fn sendable(&self) -> Option<SocketAddr> {
        if self.media.direction.sends() {
            self.remote_addr()
        } else {
            None
        }
    }

    /// The RTP timestamp that corresponds to `now` on our send clock.
    fn media_timestamp(&self, now: Instant) -> u32 {
        match self.last_audio {
            None => self.config.initial_timestamp,
            Some(last) => last
                .timestamp
                .wrapping_add(self.duration_to_samples(now.saturating_duration_since(last.at))),
        }
    }

    fn build_into(
        &mut self,
        pt: u8,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
        out: &mut [u8],
    ) -> Option<usize> {
        let len = RtpPacketBuilder::new()
            .payload_type(pt)
            .ssrc(self.config.local_ssrc)
            .sequence(Seq::from(self.next_seq))
            .timestamp(timestamp)
            .marked(marker)
            .payload(payload)
            .build_into(out)
            .ok()?;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.stats.packets_sent += 1;
        self.stats.octets_sent += payload.len() as u64;
        Some(len)
    }

    fn arrival_units(&self, now: Instant) -> u32 {
        self.duration_to_samples(now.saturating_duration_since(self.epoch))
    }

    fn duration_to_samples(&self, d: Duration) -> u32 {
        (d.as_micros() * u128::from(self.config.clock_rate) / 1_000_000) as u32
    }

    fn samples_to_duration(&self, samples: u32) -> Duration {
        Duration::from_micros(
            u64::from(samples) * 1_000_000 / u64::from(self.config.clock_rate.max(1)),
        )
    }
}

/// Whether two socket addresses are the same RTP source: IP (IPv4-mapped IPv6 as IPv4) and port.
fn same_source(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && a.ip().to_canonical() == b.ip().to_canonical()
}

#[cfg(test)]
mod tests;
