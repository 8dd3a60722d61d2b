//! [`BrowserMedia`]: one browser call's WebRTC media, sans-IO, on `str0m`'s [`Rtc`].
//!
//! We are an ICE-lite agent (RFC 8445 §2.5) with host candidates only — the gateway's UDP socket
//! and, behind a 1:1 NAT, the configured public address — so the browser does all connectivity
//! checks and we answer them. DTLS-SRTP (RFC 5763/5764), RTCP and the SCTP data channel
//! (RFC 8831) are `str0m`'s. Audio only: one audio m-line is answered, video m-lines are refused
//! (port 0), a data channel (`m=application`) is accepted.
//!
//! Codecs, in our order of preference (the answer lists them so; browsers send with the first):
//! Opus (RFC 7587: 48 kHz RTP clock; encoded and decoded by libopus at 8 kHz, so no resampler;
//! only with the `opus` cargo feature), PCMA, PCMU. Whatever codec the browser sends with, it
//! comes out as [`BrowserEvent::Audio`]: 20 ms ([`FRAME_SAMPLES`]) of 8 kHz linear PCM.
//!
//! # The four verbs
//! `handle_datagram(now, …)` / `handle_timeout(now)` / `send_audio` / `send_data` / `close` →
//! drain [`BrowserMedia::poll_transmit`] → drain [`BrowserMedia::poll_event`] → sleep until
//! [`BrowserMedia::poll_timeout`] or the next datagram. Every call drains `str0m` completely (its
//! single-mutation rule) into bounded queues, so the order of draining is free.
//!
//! # When it ends
//! [`BrowserEvent::Closed`] comes exactly once, with a [`CloseReason`]: the browser closed DTLS,
//! it never connected within [`MediaTimeouts::connect`], it went quiet for
//! [`MediaTimeouts::idle`] (nothing authenticated from it: no consent check, no RTP/RTCP — or
//! `str0m`'s own ICE-lite verdict, 15 s without a binding request), `close()` was called, or
//! `str0m` failed. After it every input is ignored and `poll_timeout` is `None`.
//!
//! # Hostile input
//! Datagrams reach `str0m` only when it claims them ([`Rtc::accepts`]: a STUN request with our
//! ICE credentials, or traffic from the nominated or a validated address); STUN integrity, DTLS
//! and SRTP authenticate the rest. Garbage is dropped silently. Nothing here panics on input;
//! queues and buffers are bounded. `str0m` draws its own randomness (ICE credentials, DTLS
//! certificate, SSRCs).

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::SdpOffer;
use str0m::channel::ChannelId;
use str0m::format::Codec;
use str0m::media::{Frequency, MediaData, MediaKind, MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};

/// Samples in one 20 ms frame at 8 kHz: what [`BrowserEvent::Audio`] carries and what
/// [`BrowserMedia::send_audio`] sends per packet.
pub const FRAME_SAMPLES: usize = 160;

/// Longest SDP offer we parse (browsers' offers are 2–6 KiB).
const MAX_OFFER_BYTES: usize = 64 * 1024;
/// Largest data-channel message we accept from the browser (advertised as `a=max-message-size`).
const MAX_MESSAGE_BYTES: u32 = 64 * 1024;
/// Bound of the transmit queue (a drain produces a handful; the driver empties it every turn).
const MAX_TRANSMITS: usize = 1024;
/// Bound of the event queue.
const MAX_EVENTS: usize = 256;
/// Audio waiting to make a full frame, either way (1 s); older samples are dropped past it.
const MAX_PENDING_SAMPLES: usize = 50 * FRAME_SAMPLES;
/// How long `close()` waits for the browser to acknowledge the last data-channel messages.
const LINGER: Duration = Duration::from_secs(1);
/// Upper bound of one `str0m` drain (it always ends with a timeout long before).
const MAX_OUTPUTS_PER_DRAIN: usize = 10_000;
/// The longest Opus packet is 120 ms: 960 samples at 8 kHz.
#[cfg(feature = "opus")]
const MAX_OPUS_SAMPLES: usize = 960;
/// The longest G.711 packet we decode (120 ms); longer payloads are cut.
const MAX_G711_BYTES: usize = 960;

/// How long we wait for the browser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaTimeouts {
    /// From the answer to ICE + DTLS connected.
    pub connect: Duration,
    /// Nothing authenticated from the browser for this long: it is gone. Browsers send audio every
    /// 20 ms, even muted, and an ICE consent check every ~5 s (RFC 7675).
    pub idle: Duration,
}

impl Default for MediaTimeouts {
    /// 20 s to connect, 15 s of silence.
    fn default() -> Self {
        MediaTimeouts {
            connect: Duration::from_secs(20),
            idle: Duration::from_secs(15),
        }
    }
}

/// The audio codec we send to the browser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioCodec {
    /// Opus (RFC 7587), only with the `opus` feature.
    Opus,
    /// G.711 A-law.
    Pcma,
    /// G.711 µ-law.
    Pcmu,
}

impl AudioCodec {
    /// The encoding name as SDP writes it.
    pub fn name(self) -> &'static str {
        match self {
            AudioCodec::Opus => "opus",
            AudioCodec::Pcma => "PCMA",
            AudioCodec::Pcmu => "PCMU",
        }
    }

    fn from_str0m(codec: Codec) -> Option<AudioCodec> {
        match codec {
            #[cfg(feature = "opus")]
            Codec::Opus => Some(AudioCodec::Opus),
            Codec::PCMA => Some(AudioCodec::Pcma),
            Codec::PCMU => Some(AudioCodec::Pcmu),
            _ => None,
        }
    }

    /// RTP clock rate (RFC 7587 §4.1: always 48 kHz for Opus).
    fn clock(self) -> Frequency {
        match self {
            AudioCodec::Opus => Frequency::FORTY_EIGHT_KHZ,
            AudioCodec::Pcma | AudioCodec::Pcmu => Frequency::EIGHT_KHZ,
        }
    }
}

/// The codecs we accept, in our order of preference.
pub fn supported_codecs() -> &'static [AudioCodec] {
    #[cfg(feature = "opus")]
    {
        &[AudioCodec::Opus, AudioCodec::Pcma, AudioCodec::Pcmu]
    }
    #[cfg(not(feature = "opus"))]
    {
        &[AudioCodec::Pcma, AudioCodec::Pcmu]
    }
}

/// Why an offer was refused. The texts are safe to show the browser (WHIP answers 4xx).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OfferError {
    /// Longer than we parse.
    #[error("the SDP offer is too large")]
    TooLarge,
    /// Not SDP, or SDP `str0m` cannot read.
    #[error("the SDP offer is not valid: {0}")]
    Invalid(String),
    /// Valid SDP without an audio m-line.
    #[error("the SDP offer has no audio")]
    NoAudio,
    /// An audio m-line, but none of its codecs is one of ours.
    #[error("the offer's audio codecs share none with ours ({0})")]
    NoCommonCodec(String),
    /// None of the given candidate addresses can be a host candidate (unspecified, multicast…).
    #[error("no usable local address for an ICE candidate")]
    NoCandidate,
    /// The codec library failed to start.
    #[error("audio codec: {0}")]
    Codec(String),
}

/// Why the media ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// We hung up ([`BrowserMedia::close`]).
    Hangup,
    /// The browser closed the connection (DTLS close_notify).
    BrowserClosed,
    /// The browser went quiet (see [`MediaTimeouts::idle`]).
    BrowserGone,
    /// ICE + DTLS did not connect within [`MediaTimeouts::connect`].
    NoConnection,
    /// `str0m` reported an error (DTLS handshake failure, …).
    Failed,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CloseReason::Hangup => "hung up",
            CloseReason::BrowserClosed => "the browser closed the connection",
            CloseReason::BrowserGone => "the browser went away",
            CloseReason::NoConnection => "the browser never connected",
            CloseReason::Failed => "the WebRTC connection failed",
        })
    }
}

/// What [`BrowserMedia`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrowserEvent {
    /// ICE and DTLS are up: audio and data flow from now on.
    Connected,
    /// 20 ms ([`FRAME_SAMPLES`]) of the browser's audio as 8 kHz linear PCM.
    Audio(Vec<i16>),
    /// A text message on the data channel.
    Data(String),
    /// The media ended (once; nothing follows).
    Closed {
        /// Why.
        reason: CloseReason,
    },
}

/// A datagram to send from the browser socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to.
    pub to: SocketAddr,
    /// The local candidate address it leaves from (the driver has one socket; informational).
    pub from: SocketAddr,
    /// The datagram.
    pub bytes: Vec<u8>,
}

/// One browser call's media. See the module docs for the polling order and when it ends.
pub struct BrowserMedia {
    rtc: Rtc,
    timeouts: MediaTimeouts,
    audio: Mid,
    /// The codec and payload type we send with.
    send_codec: AudioCodec,
    send_pt: Pt,
    state: State,
    /// `str0m`'s next wake-up.
    rtc_timeout: Option<Instant>,
    /// Last time anything authenticated came from the browser.
    last_heard: Instant,
    /// The latest time given to any call (for calls that take none).
    last_now: Instant,
    /// `close()` is draining `str0m`'s goodbye: its events and end are ours, not the browser's.
    hanging_up: bool,
    channel: Option<ChannelId>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<BrowserEvent>,
    /// Decoded browser audio not yet a full frame.
    rx_pcm: Vec<i16>,
    /// Audio for the browser not yet a full frame.
    tx_pcm: Vec<i16>,
    tx_clock: Option<TxClock>,
    #[cfg(feature = "opus")]
    opus: Option<OpusCodec>,
    dropped_transmits: u64,
    dropped_events: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Answered; waiting for ICE + DTLS (until the deadline).
    Connecting {
        deadline: Instant,
    },
    Connected,
    /// `close()` was called while data-channel messages were not yet acknowledged: they get
    /// until the deadline, then we hang up.
    Lingering {
        deadline: Instant,
    },
    Closed,
}

/// Our outgoing media clock, in 8 kHz samples.
#[derive(Debug, Clone, Copy)]
struct TxClock {
    timestamp: u64,
    at: Instant,
}

#[cfg(feature = "opus")]
struct OpusCodec {
    encoder: opus2::Encoder,
    decoder: opus2::Decoder,
}

impl fmt::Debug for BrowserMedia {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrowserMedia")
            .field("codec", &self.send_codec)
            .field("state", &self.state)
            .field("channel", &self.channel.is_some())
            .finish_non_exhaustive()
    }
}

impl BrowserMedia {
    /// Answers the browser's SDP offer with default [`MediaTimeouts`]; see
    /// [`BrowserMedia::accept_with`].
    pub fn accept(
        offer_sdp: &str,
        candidates: &[SocketAddr],
        now: Instant,
    ) -> Result<(BrowserMedia, String), OfferError> {
        Self::accept_with(offer_sdp, candidates, now, MediaTimeouts::default())
    }

    /// Answers the browser's SDP offer: our `candidates` (UDP host candidates; the first is where
    /// datagrams arrive, see [`BrowserMedia::handle_datagram`]) go into the answer, which is
    /// returned as SDP text. Refuses offers without audio or without a codec of ours.
    pub fn accept_with(
        offer_sdp: &str,
        candidates: &[SocketAddr],
        now: Instant,
        timeouts: MediaTimeouts,
    ) -> Result<(BrowserMedia, String), OfferError> {
        if offer_sdp.len() > MAX_OFFER_BYTES {
            return Err(OfferError::TooLarge);
        }
        let offer = SdpOffer::from_sdp_string(offer_sdp)
            .map_err(|e| OfferError::Invalid(short(&e.to_string())))?;

        let mut config = RtcConfig::new()
            .set_ice_lite(true)
            .clear_codecs()
            .set_sctp_max_message_size(MAX_MESSAGE_BYTES);
        for codec in supported_codecs() {
            config = match codec {
                AudioCodec::Opus => config.enable_opus(true, false),
                AudioCodec::Pcma => config.enable_pcma(true, false),
                AudioCodec::Pcmu => config.enable_pcmu(true, false),
            };
        }
        let mut rtc = config.build(now);
        let mut added = 0;
        for &addr in candidates {
            if let Ok(c) = Candidate::host(addr, "udp") {
                if rtc.add_local_candidate(c).is_some() {
                    added += 1;
                }
            }
        }
        if added == 0 {
            return Err(OfferError::NoCandidate);
        }
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| OfferError::Invalid(short(&e.to_string())))?;

        let answer = answer.to_sdp_string();

        // `str0m` reports the media only once connected: the answer names the audio we took
        // (m=audio with a port, not 0) and its mid.
        let mut saw_audio = false;
        let mut chosen: Option<(Mid, AudioCodec, Pt)> = None;
        for mid in accepted_audio_mids(&answer) {
            let mid = Mid::from(mid);
            if rtc.media(mid).map(|m| m.kind()) != Some(MediaKind::Audio) {
                continue;
            }
            saw_audio = true;
            if let Some(writer) = rtc.writer(mid) {
                // `payload_params` keeps our configured order: our preference.
                chosen = writer
                    .payload_params()
                    .find_map(|p| AudioCodec::from_str0m(p.spec().codec).map(|c| (mid, c, p.pt())));
            }
            if chosen.is_some() {
                break;
            }
        }
        let Some((audio, send_codec, send_pt)) = chosen else {
            return Err(if saw_audio || offer_has_audio(offer_sdp) {
                OfferError::NoCommonCodec(
                    supported_codecs()
                        .iter()
                        .map(|c| c.name())
                        .collect::<Vec<_>>()
                        .join(", "),
                )
            } else {
                OfferError::NoAudio
            });
        };

        #[cfg(feature = "opus")]
        let opus = if supported_codecs().contains(&AudioCodec::Opus) {
            Some(OpusCodec::new().map_err(OfferError::Codec)?)
        } else {
            None
        };

        let mut media = BrowserMedia {
            rtc,
            timeouts,
            audio,
            send_codec,
            send_pt,
            state: State::Connecting {
                deadline: now + timeouts.connect,
            },
            rtc_timeout: None,
            last_heard: now,
            last_now: now,
            hanging_up: false,
            channel: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            rx_pcm: Vec::with_capacity(2 * FRAME_SAMPLES),
            tx_pcm: Vec::with_capacity(2 * FRAME_SAMPLES),
            tx_clock: None,
            #[cfg(feature = "opus")]
            opus,
            dropped_transmits: 0,
            dropped_events: 0,
        };
        media.drain(now);
        Ok((media, answer))
    }

    /// The codec we send to the browser with (the first of ours the offer has).
    pub fn codec(&self) -> AudioCodec {
        self.send_codec
    }

    /// Whether ICE and DTLS are up.
    pub fn is_connected(&self) -> bool {
        self.state == State::Connected
    }

    /// Whether the media ended ([`BrowserEvent::Closed`] was queued).
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// A datagram arrived on the browser socket from `source`. `destination` is the local
    /// candidate address it was sent to: the socket's address, or — when the socket is bound to
    /// an unspecified address — the first candidate given to [`BrowserMedia::accept`].
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        bytes: &[u8],
    ) {
        if self.state == State::Closed {
            return;
        }
        self.tick(now);
        let Ok(contents) = bytes.try_into() else {
            // Neither STUN, DTLS nor (S)RTP(C): not for us.
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination,
                contents,
            },
        );
        if !self.rtc.accepts(&input) {
            return;
        }
        match self.rtc.handle_input(input) {
            Ok(()) => self.last_heard = now,
            Err(e) => tracing::debug!(error = %e, "webrtc: datagram refused"),
        }
        self.drain(now);
        self.check_timers(now);
    }

    /// The deadline from [`BrowserMedia::poll_timeout`] passed (calling early is harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == State::Closed {
            return;
        }
        self.tick(now);
        if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
            tracing::debug!(error = %e, "webrtc: timeout handling failed");
        }
        self.drain(now);
        self.check_timers(now);
    }

    /// The next datagram to send on the browser socket.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<BrowserEvent> {
        self.events.pop_front()
    }

    /// When to call [`BrowserMedia::handle_timeout`]; `None` once closed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let own = match self.state {
            State::Closed => return None,
            State::Connecting { deadline } => deadline,
            State::Connected => self.last_heard + self.timeouts.idle,
            State::Lingering { deadline } => deadline,
        };
        Some(self.rtc_timeout.map_or(own, |t| t.min(own)))
    }

    /// Sends audio to the browser: 8 kHz linear PCM, normally one 20 ms frame per call (any
    /// length is accepted and sent in 20 ms packets). Dropped until connected.
    pub fn send_audio(&mut self, now: Instant, pcm: &[i16]) {
        if self.state != State::Connected {
            return;
        }
        self.tick(now);
        self.tx_pcm.extend_from_slice(pcm);
        trim_front(&mut self.tx_pcm);
        let mut frame = [0i16; FRAME_SAMPLES];
        while self.tx_pcm.len() >= FRAME_SAMPLES && self.state == State::Connected {
            frame.copy_from_slice(&self.tx_pcm[..FRAME_SAMPLES]);
            self.tx_pcm.drain(..FRAME_SAMPLES);
            self.send_frame(now, &frame);
        }
    }

    /// Sends a text message on the browser's data channel. `false` when there is none (yet), it
    /// is closed, or its send buffer is full.
    pub fn send_data(&mut self, text: &str) -> bool {
        if self.state != State::Connected {
            return false;
        }
        let Some(id) = self.channel else {
            return false;
        };
        let Some(mut channel) = self.rtc.channel(id) else {
            return false;
        };
        let sent = match channel.write(false, text.as_bytes()) {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::debug!(error = %e, "webrtc: data channel write failed");
                false
            }
        };
        self.drain_untimed();
        sent
    }

    /// Hangs up: queues DTLS close_notify (and RTCP BYE) for the browser, then
    /// [`BrowserEvent::Closed`] with [`CloseReason::Hangup`]. Send what
    /// [`BrowserMedia::poll_transmit`] gives before dropping the socket. Data-channel messages
    /// the browser has not acknowledged yet (a last "call ended" just sent) get up to a second
    /// first (counted from the latest `now` given; a driver calls `handle_timeout(now)` first):
    /// keep driving the media until `Closed` comes.
    pub fn close(&mut self) {
        match self.state {
            State::Closed | State::Lingering { .. } => {}
            State::Connected => {
                if self.unacknowledged_data() == 0 {
                    self.hang_up();
                    return;
                }
                self.state = State::Lingering {
                    deadline: self.last_now + LINGER,
                };
                self.audio_stops();
            }
            _ => self.hang_up(),
        }
    }

    fn hang_up(&mut self) {
        if self.state == State::Closed {
            return;
        }
        self.hanging_up = true;
        if let Err(e) = self.rtc.close() {
            tracing::debug!(error = %e, "webrtc: close failed");
        }
        // `str0m` emits the close_notify on its next turns; a few are enough (it stops being
        // alive once drained).
        for _ in 0..8 {
            self.drain_untimed();
            if !self.rtc.is_alive() || self.state == State::Closed {
                break;
            }
            if self
                .rtc
                .handle_input(Input::Timeout(self.last_now))
                .is_err()
            {
                break;
            }
        }
        self.finish(CloseReason::Hangup);
    }

    fn send_frame(&mut self, now: Instant, frame: &[i16; FRAME_SAMPLES]) {
        let mut payload = [0u8; 2 * FRAME_SAMPLES];
        let len = match self.send_codec {
            AudioCodec::Pcma => dsp::g711::encode_alaw_into(frame, &mut payload),
            AudioCodec::Pcmu => dsp::g711::encode_ulaw_into(frame, &mut payload),
            AudioCodec::Opus => {
                #[cfg(feature = "opus")]
                match self
                    .opus
                    .as_mut()
                    .map(|o| o.encoder.encode(frame, &mut payload))
                {
                    Some(Ok(n)) => n,
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "webrtc: opus encode failed");
                        return;
                    }
                    None => return,
                }
                #[cfg(not(feature = "opus"))]
                return;
            }
        };
        let (timestamp, talkspurt) = self.next_timestamp(now);
        let clock = self.send_codec.clock();
        let rtp_time = MediaTime::new(timestamp * u64::from(clock.get()) / 8000, clock);
        let Some(writer) = self.rtc.writer(self.audio) else {
            return;
        };
        let writer = if talkspurt {
            writer.start_of_talkspurt(true)
        } else {
            writer
        };
        if let Err(e) = writer.write(self.send_pt, now, rtp_time, payload[..len].to_vec()) {
            tracing::debug!(error = %e, "webrtc: audio write failed");
        }
        self.drain(now);
    }

    /// The 8 kHz timestamp of the next frame and whether it starts a talkspurt: consecutive
    /// frames are 160 apart; after a pause of more than two frames the timestamp follows the
    /// clock (RFC 3550 §5.1, RFC 3551 §4.1), so the browser's jitter buffer sees the gap.
    fn next_timestamp(&mut self, now: Instant) -> (u64, bool) {
        let frame = FRAME_SAMPLES as u64;
        let (timestamp, talkspurt) = match self.tx_clock {
            None => (0, true),
            Some(last) => {
                let elapsed = now.saturating_duration_since(last.at);
                if elapsed > Duration::from_millis(60) {
                    let samples = elapsed.as_micros() as u64 / 125;
                    (last.timestamp + (samples / frame).max(1) * frame, true)
                } else {
                    (last.timestamp + frame, false)
                }
            }
        };
        self.tx_clock = Some(TxClock { timestamp, at: now });
        (timestamp, talkspurt)
    }

    /// Drains `str0m` after a mutation (its single-mutation rule).
    fn drain(&mut self, now: Instant) {
        for _ in 0..MAX_OUTPUTS_PER_DRAIN {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.rtc_timeout = Some(t);
                    break;
                }
                Ok(Output::Transmit(t)) => self.push_transmit(t),
                Ok(Output::Event(e)) => self.on_rtc_event(now, e),
                Err(e) if self.hanging_up => {
                    tracing::debug!(error = %e, "webrtc: error while closing");
                    return;
                }
                Err(e) => {
                    tracing::info!(error = %e, "webrtc: connection failed");
                    self.finish(CloseReason::Failed);
                    return;
                }
            }
        }
        if !self.rtc.is_alive() && self.state != State::Closed && !self.hanging_up {
            self.finish(CloseReason::BrowserClosed);
        }
    }

    /// [`BrowserMedia::drain`] where no clock reading is at hand: the latest one stands in.
    fn drain_untimed(&mut self) {
        self.drain(self.last_now);
    }

    fn tick(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
    }

    /// Bytes written to the data channel that the browser has not acknowledged.
    fn unacknowledged_data(&mut self) -> usize {
        match self.channel.and_then(|id| self.rtc.channel(id)) {
            Some(mut channel) => channel.buffered_amount(),
            None => 0,
        }
    }

    fn audio_stops(&mut self) {
        self.rx_pcm.clear();
        self.tx_pcm.clear();
    }

    fn check_timers(&mut self, now: Instant) {
        if let State::Lingering { deadline } = self.state {
            if now >= deadline || self.unacknowledged_data() == 0 {
                self.hang_up();
            }
            return;
        }
        match self.state {
            State::Connecting { deadline } if now >= deadline => {
                self.finish(CloseReason::NoConnection)
            }
            State::Connected if now >= self.last_heard + self.timeouts.idle => {
                self.finish(CloseReason::BrowserGone)
            }
            _ => {}
        }
    }

    fn on_rtc_event(&mut self, now: Instant, event: Event) {
        if self.state == State::Closed || self.hanging_up {
            return;
        }
        match event {
            Event::Connected if matches!(self.state, State::Connecting { .. }) => {
                self.state = State::Connected;
                self.last_heard = self.last_heard.max(now);
                self.push_event(BrowserEvent::Connected);
            }
            // ICE-lite: every pair went 15 s without a binding request.
            Event::IceConnectionStateChange(IceConnectionState::Disconnected)
                if self.state == State::Connected =>
            {
                self.finish(CloseReason::BrowserGone);
            }
            Event::MediaData(data) => self.on_audio(data),
            Event::ChannelOpen(id, _label) if self.channel.is_none() => self.channel = Some(id),
            Event::ChannelData(data) if Some(data.id) == self.channel && !data.binary => {
                match String::from_utf8(data.data) {
                    Ok(text) => self.push_event(BrowserEvent::Data(text)),
                    Err(_) => tracing::debug!("webrtc: data channel message is not UTF-8"),
                }
            }
            Event::ChannelClose(id) if Some(id) == self.channel => self.channel = None,
            Event::Closed => self.finish(CloseReason::BrowserClosed),
            _ => {}
        }
    }

    fn on_audio(&mut self, data: MediaData) {
        if data.mid != self.audio || self.state != State::Connected {
            return;
        }
        let mut pcm = [0i16; MAX_G711_BYTES];
        let payload = &data.data[..data.data.len().min(MAX_G711_BYTES)];
        let n = match AudioCodec::from_str0m(data.params.spec().codec) {
            Some(AudioCodec::Pcma) => dsp::g711::decode_alaw_into(payload, &mut pcm),
            Some(AudioCodec::Pcmu) => dsp::g711::decode_ulaw_into(payload, &mut pcm),
            Some(AudioCodec::Opus) => {
                #[cfg(feature = "opus")]
                match self.opus.as_mut().map(|o| {
                    o.decoder
                        .decode(&data.data, &mut pcm[..MAX_OPUS_SAMPLES], false)
                }) {
                    Some(Ok(n)) => n.min(MAX_OPUS_SAMPLES),
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "webrtc: opus decode failed");
                        return;
                    }
                    None => return,
                }
                #[cfg(not(feature = "opus"))]
                return;
            }
            None => return,
        };
        self.rx_pcm.extend_from_slice(&pcm[..n]);
        trim_front(&mut self.rx_pcm);
        while self.rx_pcm.len() >= FRAME_SAMPLES {
            let frame: Vec<i16> = self.rx_pcm.drain(..FRAME_SAMPLES).collect();
            self.push_event(BrowserEvent::Audio(frame));
        }
    }

    fn finish(&mut self, reason: CloseReason) {
        if self.state == State::Closed {
            return;
        }
        // Whatever ends a lingering close, we hung up.
        let reason = match self.state {
            State::Lingering { .. } => CloseReason::Hangup,
            _ => reason,
        };
        self.state = State::Closed;
        self.audio_stops();
        if reason != CloseReason::Hangup {
            // Nothing more to say to a browser that left; after `close()` the DTLS
            // close_notify queued before this must still go out.
            self.rtc.disconnect();
        }
        tracing::debug!(%reason, "webrtc: media ended");
        // Room is always made for the last event.
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_back();
        }
        self.events.push_back(BrowserEvent::Closed { reason });
    }

    fn push_transmit(&mut self, t: str0m::net::Transmit) {
        if self.transmits.len() >= MAX_TRANSMITS {
            self.dropped_transmits += 1;
            if self.dropped_transmits.is_power_of_two() {
                tracing::warn!(
                    dropped = self.dropped_transmits,
                    "webrtc: transmit queue full"
                );
            }
            return;
        }
        self.transmits.push_back(Transmit {
            to: t.destination,
            from: t.source,
            bytes: t.contents.into(),
        });
    }

    fn push_event(&mut self, event: BrowserEvent) {
        if self.events.len() >= MAX_EVENTS {
            self.dropped_events += 1;
            if self.dropped_events.is_power_of_two() {
                tracing::warn!(dropped = self.dropped_events, "webrtc: event queue full");
            }
            return;
        }
        self.events.push_back(event);
    }
}

#[cfg(feature = "opus")]
impl OpusCodec {
    fn new() -> Result<OpusCodec, String> {
        let encoder = opus2::Encoder::new(8000, opus2::Channels::Mono, opus2::Application::Voip)
            .map_err(|e| e.to_string())?;
        let decoder =
            opus2::Decoder::new(8000, opus2::Channels::Mono).map_err(|e| e.to_string())?;
        Ok(OpusCodec { encoder, decoder })
    }
}

/// Keeps at most [`MAX_PENDING_SAMPLES`], dropping the oldest.
fn trim_front(pcm: &mut Vec<i16>) {
    if pcm.len() > MAX_PENDING_SAMPLES {
        let excess = pcm.len() - MAX_PENDING_SAMPLES;
        pcm.drain(..excess);
    }
}

/// The mids of the answer's audio m-lines that were accepted (port not 0).
fn accepted_audio_mids(answer: &str) -> Vec<&str> {
    let mut mids = Vec::new();
    let mut in_accepted_audio = false;
    for line in answer.lines() {
        if let Some(m) = line.strip_prefix("m=") {
            let mut words = m.split(' ');
            in_accepted_audio = words.next() == Some("audio") && words.next() != Some("0");
        } else if let Some(mid) = line.strip_prefix("a=mid:") {
            if in_accepted_audio {
                mids.push(mid.trim());
            }
        }
    }
    mids
}

/// Whether the SDP text has an audio m-line (to tell "no audio" from "no common codec" when
/// `str0m` left the audio media out of its answer).
fn offer_has_audio(sdp: &str) -> bool {
    sdp.lines().any(|l| l.starts_with("m=audio "))
}

/// An error text cut to a length fit for a response or a log line.
fn short(text: &str) -> String {
    const MAX: usize = 160;
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match clean.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &clean[..i]),
        None => clean,
    }
}

#[cfg(test)]
mod tests;
