//! The RTP side of our user agents, shared by the caller and the agent phone: one G.711 audio
//! stream out and one in, sans-IO (RFC 3550 over [`sip::rtp::RtpSession`], RFC 3551 PCMA/PCMU).
//!
//! **Out.** Every `ptime` (20 ms) a frame of the current [`AudioSource`] — silence, a tone, or WAV
//! samples — is encoded with the negotiated codec and sent. [`MediaStream::send_digits`] queues a
//! code either as RFC 4733 telephone-events (the packet plan of [`sip::rfc4733::packets_for_digit`];
//! audio frames are suppressed while an event runs, RFC 4733 §2.5.1.2, so the event timestamps stay
//! on the media clock) or as in-band DTMF tones in the audio (ITU-T Q.23 frequency pairs; the
//! source is replaced by tones and silent gaps until the code is sent).
//!
//! **In.** Received packets are checked by the RTP session (latching, duplicates, RTCP), audio is
//! decoded and its RMS level measured ([`dsp::level`]): the first frame above
//! [`MediaConfig::heard_threshold_dbfs`] is reported as [`MediaEvent::AudioHeard`], and
//! [`MediaStats`] keeps how much was heard and how loud. Optionally in-band tones are detected
//! ([`dsp::dtmf`]); RFC 4733 digits from the peer are always reported.
//!
//! Plain RTP only (no SRTP): the softphones talk UDP to our own server.
//!
//! Polling order, as for every sans-IO object here: after [`MediaStream::handle_packet`],
//! [`MediaStream::handle_timeout`] or [`MediaStream::send_digits`], drain
//! [`MediaStream::poll_transmit`], then [`MediaStream::poll_event`], then sleep until
//! [`MediaStream::poll_timeout`]. Nothing here reads a clock; the first frame goes out at the `now`
//! given to [`MediaStream::new`].

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dsp::dtmf::{DtmfDetector, DtmfEvent};
use dsp::tone::{Cadence, SignalSource, ToneError, ToneGenerator};
use sip::rfc4733::{packets_for_digit, Digit, DigitEvent, PlannedPacket, SenderConfig};
use sip::rtp::{Received, RtpConfig, RtpEvent, RtpSession, RtpStats};
use sip::sdp::{CodecKind, MediaSession};

use super::{Datagram, Socket};

/// Why digits could not be queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// RFC 4733 was asked for but the peer's SDP has no `telephone-event`.
    #[error("the far end did not negotiate telephone-event (RFC 4733); use tones or SIP INFO")]
    NoTelephoneEvent,
    /// Digits are still being sent.
    #[error("digits are still being sent")]
    Busy,
}

/// How digits travel in the media stream (SIP INFO is signalling, not media: see the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtmfMethod {
    /// RFC 4733 telephone-event packets.
    Rfc4733,
    /// Dual tones in the G.711 audio.
    InBand,
}

/// Settings of a [`MediaStream`]. The RTP identifiers (SSRC, first sequence number and
/// timestamp) in [`MediaConfig::rtp`] should be random; the caller draws them.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaConfig {
    /// SSRC, initial sequence/timestamp, media timeout, the peer's signalling address.
    pub rtp: RtpConfig,
    /// A received frame louder than this (dBFS) counts as heard. G.711 "silence" decodes to about
    /// −70 dBFS; the server's ringback and prompts are around −16 dBFS.
    pub heard_threshold_dbfs: f64,
    /// Run an in-band DTMF detector on what is received.
    pub detect_tones: bool,
    /// How long each digit lasts (tone or RFC 4733 event).
    pub digit_duration: Duration,
    /// Pause between digits.
    pub digit_gap: Duration,
    /// Level of each of the two in-band tones, dBm0 (phones send about −7 to −10).
    pub tone_level_dbm0: f64,
    /// RFC 4733 update interval and volume.
    pub events: SenderConfig,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            rtp: RtpConfig::default(),
            heard_threshold_dbfs: -50.0,
            detect_tones: false,
            digit_duration: Duration::from_millis(120),
            digit_gap: Duration::from_millis(120),
            tone_level_dbm0: -8.0,
            events: SenderConfig::default(),
        }
    }
}

/// What the outgoing audio carries when no in-band digits are playing.
#[derive(Debug, Clone)]
pub struct AudioSource(Source);

#[derive(Debug, Clone)]
enum Source {
    Silence,
    Tone(ToneGenerator),
    Samples {
        samples: Arc<[i16]>,
        pos: usize,
        looped: bool,
    },
}

impl AudioSource {
    /// Digital silence (still sent: keeps the far end's media timers and NAT bindings alive).
    pub fn silence() -> AudioSource {
        AudioSource(Source::Silence)
    }

    /// A continuous tone of `freq_hz` at `level_dbm0`.
    pub fn tone(freq_hz: u32, level_dbm0: f64) -> Result<AudioSource, ToneError> {
        Self::cadenced_tone(freq_hz, level_dbm0, Cadence::CONTINUOUS)
    }

    /// A tone switched on and off by `cadence`.
    pub fn cadenced_tone(
        freq_hz: u32,
        level_dbm0: f64,
        cadence: Cadence,
    ) -> Result<AudioSource, ToneError> {
        ToneGenerator::new(freq_hz, level_dbm0, cadence).map(|t| AudioSource(Source::Tone(t)))
    }

    /// Recorded samples (8 kHz mono, e.g. from [`crate::audio_file::read_prompt`]), played once
    /// (then silence, and [`MediaEvent::SourceEnded`]) or over and over.
    pub fn samples(samples: Arc<[i16]>, looped: bool) -> AudioSource {
        AudioSource(Source::Samples {
            samples,
            pos: 0,
            looped,
        })
    }

    /// Fills `out`; returns whether a non-looped recording ran out during this frame.
    fn fill(&mut self, out: &mut [i16]) -> bool {
        match &mut self.0 {
            Source::Silence => {
                out.fill(0);
                false
            }
            Source::Tone(t) => {
                t.fill(out);
                false
            }
            Source::Samples {
                samples,
                pos,
                looped,
            } => {
                let mut written = 0;
                let mut ended = false;
                while written < out.len() {
                    if *pos >= samples.len() {
                        if *looped && !samples.is_empty() {
                            *pos = 0;
                        } else {
                            out[written..].fill(0);
                            ended = true;
                            break;
                        }
                    }
                    let n = (samples.len() - *pos).min(out.len() - written);
                    out[written..written + n].copy_from_slice(&samples[*pos..*pos + n]);
                    *pos += n;
                    written += n;
                }
                if ended {
                    self.0 = Source::Silence;
                }
                ended
            }
        }
    }
}

/// What a [`MediaStream`] reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MediaEvent {
    /// The first received frame above the threshold (reported once per stream).
    AudioHeard {
        /// Its RMS level in dBFS.
        level_dbfs: f64,
    },
    /// All digits of one [`MediaStream::send_digits`] have been sent.
    DigitsSent { count: usize, method: DtmfMethod },
    /// The peer sent a digit (`Debug` of [`Digit`] hides its value).
    DigitReceived { digit: Digit, method: DtmfMethod },
    /// A recording played once has ended; silence follows.
    SourceEnded,
    /// Nothing received for the RTP session's media timeout.
    MediaTimeout,
}

/// Counters of a [`MediaStream`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MediaStats {
    /// Audio frames received and decoded.
    pub frames_received: u64,
    /// Of those, frames above the heard threshold.
    pub frames_heard: u64,
    /// The loudest received frame, dBFS ([`f64::NEG_INFINITY`] when nothing was received).
    pub loudest_dbfs: f64,
    /// The power mean of the heard frames, dBFS ([`f64::NEG_INFINITY`] when none was heard).
    pub mean_heard_dbfs: f64,
    /// Audio frames sent.
    pub frames_sent: u64,
    /// RFC 4733 packets sent.
    pub events_sent: u64,
    /// The RTP session's own counters (loss, jitter, drops).
    pub rtp: RtpStats,
}

/// One call leg's audio, out and in. See the module docs for the polling order.
#[derive(Debug)]
pub struct MediaStream {
    config: MediaConfig,
    rtp: RtpSession,
    source: AudioSource,
    frame: Duration,
    /// When the next audio frame is due; `None` once stopped.
    next_frame: Option<Instant>,
    /// In-band digits still to play (tone and gap samples), replacing the source.
    tones: VecDeque<i16>,
    /// RFC 4733 packets still to send, with their send times.
    events: VecDeque<ScheduledEvent>,
    /// An RFC 4733 event is running: audio frames are suppressed.
    in_event: bool,
    /// Digits of the current `send_digits` still to report when done.
    sending: Option<(usize, DtmfMethod)>,
    detector: Option<Detector>,
    heard_reported: bool,
    heard_energy: f64,
    stats: MediaStats,
    pcm: Vec<i16>,
    transmits: VecDeque<Datagram>,
    out_events: VecDeque<MediaEvent>,
}

/// The payload names the digit: not shown.
impl std::fmt::Debug for ScheduledEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScheduledEvent")
            .field("at", &self.at)
            .field("last_of_digit", &self.last_of_digit)
            .finish_non_exhaustive()
    }
}

/// The in-band detector (which has no `Debug` of its own).
struct Detector(DtmfDetector);

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DtmfDetector")
    }
}

#[derive(Clone, Copy)]
struct ScheduledEvent {
    at: Instant,
    packet: PlannedPacket,
    /// The last packet of its digit: audio may resume after it.
    last_of_digit: bool,
}

impl MediaStream {
    /// A stream to the peer described by `media` (the negotiated SDP), starting to send silence
    /// at `now`.
    pub fn new(now: Instant, media: MediaSession, config: MediaConfig) -> MediaStream {
        let frame = Duration::from_millis(u64::from(media.ptime_ms.clamp(10, 60)));
        MediaStream {
            rtp: RtpSession::new(now, media, config.rtp),
            detector: config.detect_tones.then(|| Detector(DtmfDetector::new())),
            config,
            source: AudioSource::silence(),
            frame,
            next_frame: Some(now),
            tones: VecDeque::new(),
            events: VecDeque::new(),
            in_event: false,
            sending: None,
            heard_reported: false,
            heard_energy: 0.0,
            stats: MediaStats {
                frames_received: 0,
                frames_heard: 0,
                loudest_dbfs: f64::NEG_INFINITY,
                mean_heard_dbfs: f64::NEG_INFINITY,
                frames_sent: 0,
                events_sent: 0,
                rtp: RtpStats::default(),
            },
            pcm: Vec::new(),
            transmits: VecDeque::new(),
            out_events: VecDeque::new(),
        }
    }

    /// What to play from the next frame on.
    pub fn set_source(&mut self, source: AudioSource) {
        self.source = source;
    }

    /// The peer's new SDP (re-INVITE: hold, moved port). Sending follows its direction.
    pub fn update_media(&mut self, now: Instant, media: MediaSession) {
        self.frame = Duration::from_millis(u64::from(media.ptime_ms.clamp(10, 60)));
        self.rtp.update_media(now, media);
    }

    /// The negotiated media.
    pub fn media(&self) -> &MediaSession {
        self.rtp.media()
    }

    /// Where RTP goes (the SDP address, or the latched source).
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.rtp.remote_addr()
    }

    /// Queues `digits`, starting at `now`: each lasts [`MediaConfig::digit_duration`], with
    /// [`MediaConfig::digit_gap`] between them. [`MediaEvent::DigitsSent`] follows when all are out.
    pub fn send_digits(
        &mut self,
        now: Instant,
        digits: &[Digit],
        method: DtmfMethod,
    ) -> Result<(), MediaError> {
        if self.sending.is_some() {
            return Err(MediaError::Busy);
        }
        let step = self.config.digit_duration + self.config.digit_gap;
        match method {
            DtmfMethod::Rfc4733 => {
                if self.rtp.media().telephone_event_pt.is_none() {
                    return Err(MediaError::NoTelephoneEvent);
                }
                let sender = SenderConfig {
                    clock_rate: self.config.rtp.clock_rate,
                    ..self.config.events
                };
                for (i, digit) in digits.iter().enumerate() {
                    let start = now + step * i as u32;
                    let plan = packets_for_digit(*digit, self.config.digit_duration, &sender);
                    let last = plan.len().saturating_sub(1);
                    self.events
                        .extend(
                            plan.into_iter()
                                .enumerate()
                                .map(|(k, packet)| ScheduledEvent {
                                    at: start + packet.at,
                                    packet,
                                    last_of_digit: k == last,
                                }),
                        );
                }
            }
            DtmfMethod::InBand => {
                let on = samples_of(self.config.digit_duration);
                let gap = samples_of(self.config.digit_gap);
                let mut buf = vec![0i16; on];
                for digit in digits {
                    self.fill_digit(*digit, &mut buf);
                    self.tones.extend(buf.iter().copied());
                    self.tones.extend(std::iter::repeat_n(0, gap));
                }
            }
        }
        self.sending = Some((digits.len(), method));
        if digits.is_empty() {
            self.finish_sending();
        }
        Ok(())
    }

    /// Whether digits are still being sent.
    pub fn is_sending_digits(&self) -> bool {
        self.sending.is_some()
    }

    /// Stops sending (hang-up); received packets are still counted.
    pub fn stop(&mut self) {
        self.next_frame = None;
        self.events.clear();
        self.tones.clear();
        self.in_event = false;
    }

    /// A datagram arrived on the RTP socket. Malformed packets and packets from elsewhere are
    /// dropped (counted in the RTP stats).
    pub fn handle_packet(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        let codec = self.rtp.media().codec.kind();
        let audio = match self.rtp.handle_packet(now, from, bytes) {
            Ok(Received::Audio(info)) => Some(info.payload),
            Ok(_) | Err(_) => None,
        };
        if let Some(payload) = audio {
            self.pcm.resize(payload.len(), 0);
            let n = match codec {
                CodecKind::Pcma => dsp::g711::decode_alaw_into(payload, &mut self.pcm),
                CodecKind::Pcmu => dsp::g711::decode_ulaw_into(payload, &mut self.pcm),
            };
            let pcm = &self.pcm[..n.min(self.pcm.len())];
            let level = dsp::level::rms_dbfs(pcm);
            self.stats.frames_received += 1;
            if level > self.stats.loudest_dbfs {
                self.stats.loudest_dbfs = level;
            }
            if level > self.config.heard_threshold_dbfs {
                self.stats.frames_heard += 1;
                self.heard_energy += 10f64.powf(level / 10.0);
                self.stats.mean_heard_dbfs =
                    10.0 * (self.heard_energy / self.stats.frames_heard as f64).log10();
                if !self.heard_reported {
                    self.heard_reported = true;
                    self.out_events
                        .push_back(MediaEvent::AudioHeard { level_dbfs: level });
                }
            }
            if let Some(Detector(detector)) = &mut self.detector {
                detector.push(pcm);
                while let Some(e) = detector.poll_event() {
                    if let DtmfEvent::Started { digit, .. } = e {
                        if let Some(digit) = Digit::from_char(digit) {
                            self.out_events.push_back(MediaEvent::DigitReceived {
                                digit,
                                method: DtmfMethod::InBand,
                            });
                        }
                    }
                }
            }
        }
        self.drain_rtp_events();
    }

    /// Sends what is due at `now` (audio frames, RFC 4733 packets) and runs the RTP session's
    /// timers. Calling early is harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.rtp.handle_timeout(now);
        self.drain_rtp_events();
        let Some(mut due) = self.next_frame else {
            return;
        };
        // Interleave frames and event packets in time order.
        loop {
            let event_due = self.events.front().map(|e| e.at).filter(|&at| at <= now);
            let frame_due = (due <= now).then_some(due);
            match (frame_due, event_due) {
                (None, None) => break,
                (Some(f), Some(e)) if e <= f => self.send_event(now),
                (None, Some(_)) => self.send_event(now),
                (Some(_), _) => {
                    self.send_frame(now);
                    due += self.frame;
                    // A driver that fell far behind resynchronises instead of bursting.
                    if now.saturating_duration_since(due) > self.frame * 3 {
                        due = now + self.frame;
                    }
                }
            }
        }
        self.next_frame = Some(due);
    }

    /// The next datagram to send on the RTP socket.
    pub fn poll_transmit(&mut self) -> Option<Datagram> {
        self.transmits.pop_front()
    }

    /// What happened, oldest first.
    pub fn poll_event(&mut self) -> Option<MediaEvent> {
        self.out_events.pop_front()
    }

    /// When [`MediaStream::handle_timeout`] wants to be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.next_frame,
            self.next_frame.and(self.events.front().map(|e| e.at)),
            self.rtp.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Counters so far.
    pub fn stats(&self) -> MediaStats {
        MediaStats {
            rtp: self.rtp.stats(),
            ..self.stats
        }
    }

    fn send_frame(&mut self, now: Instant) {
        let samples = samples_of(self.frame);
        let mut pcm = std::mem::take(&mut self.pcm);
        pcm.clear();
        pcm.resize(samples, 0);
        let mut ended = false;
        if self.tones.is_empty() {
            ended = self.source.fill(&mut pcm);
        } else {
            for s in pcm.iter_mut() {
                *s = self.tones.pop_front().unwrap_or(0);
            }
            if self.tones.is_empty() && self.sending_method() == Some(DtmfMethod::InBand) {
                self.finish_sending();
            }
        }
        if ended {
            self.out_events.push_back(MediaEvent::SourceEnded);
        }
        if !self.in_event {
            let mut payload = vec![0u8; samples];
            match self.rtp.media().codec.kind() {
                CodecKind::Pcma => dsp::g711::encode_alaw_into(&pcm, &mut payload),
                CodecKind::Pcmu => dsp::g711::encode_ulaw_into(&pcm, &mut payload),
            };
            if let Some(t) = self.rtp.send_audio(now, &payload, samples as u32) {
                self.stats.frames_sent += 1;
                self.transmits.push_back(Datagram {
                    socket: Socket::Rtp,
                    to: t.to,
                    bytes: Bytes::from(t.bytes),
                });
            }
        }
        self.pcm = pcm;
    }

    fn send_event(&mut self, now: Instant) {
        let Some(e) = self.events.pop_front() else {
            return;
        };
        self.in_event = !e.last_of_digit;
        if let Some(t) = self.rtp.send_event_segment(
            now,
            e.packet.payload,
            e.packet.marker,
            e.packet.timestamp_offset,
        ) {
            self.stats.events_sent += 1;
            self.transmits.push_back(Datagram {
                socket: Socket::Rtp,
                to: t.to,
                bytes: Bytes::from(t.bytes),
            });
        }
        if self.events.is_empty() && self.sending_method() == Some(DtmfMethod::Rfc4733) {
            self.finish_sending();
        }
    }

    fn sending_method(&self) -> Option<DtmfMethod> {
        self.sending.map(|(_, m)| m)
    }

    fn finish_sending(&mut self) {
        if let Some((count, method)) = self.sending.take() {
            self.out_events
                .push_back(MediaEvent::DigitsSent { count, method });
        }
    }

    fn drain_rtp_events(&mut self) {
        while let Some(e) = self.rtp.poll_event() {
            match e {
                RtpEvent::Digit(DigitEvent::DigitStart { digit, .. }) => {
                    self.out_events.push_back(MediaEvent::DigitReceived {
                        digit,
                        method: DtmfMethod::Rfc4733,
                    })
                }
                RtpEvent::MediaTimeout => self.out_events.push_back(MediaEvent::MediaTimeout),
                _ => {}
            }
        }
    }

    /// The dual tone of `digit` (Q.23) into `out`, each tone at the configured level.
    fn fill_digit(&self, digit: Digit, out: &mut [i16]) {
        out.fill(0);
        let Some((row, col)) = dsp::dtmf::digit_freqs(digit.as_char()) else {
            return;
        };
        let mut part = vec![0i16; out.len()];
        for freq in [row, col] {
            // DTMF frequencies are whole hertz well inside 1..4000 Hz; a level above full scale is
            // a configuration error and leaves that tone out rather than panicking.
            if let Ok(mut tone) = ToneGenerator::new(
                freq as u32,
                self.config.tone_level_dbm0,
                Cadence::CONTINUOUS,
            ) {
                tone.fill(&mut part);
                for (o, p) in out.iter_mut().zip(&part) {
                    *o = o.saturating_add(*p);
                }
            }
        }
    }
}

/// Samples at 8 kHz in `d`.
fn samples_of(d: Duration) -> usize {
    (d.as_micros() * 8 / 1000) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use sip::sdp::{Codec, Direction};

    const A: &str = "127.0.0.1:4000";
    const B: &str = "127.0.0.1:4002";

    fn session(remote: &str, codec: Codec) -> MediaSession {
        MediaSession {
            remote_addr: Some(remote.parse().unwrap()),
            codec,
            telephone_event_pt: Some(101),
            ptime_ms: 20,
            direction: Direction::SendRecv,
            on_hold: false,
            srtp: None,
        }
    }

    fn pair(codec: Codec, detect: bool) -> (MediaStream, MediaStream, Instant) {
        let now = Instant::now();
        let a = MediaStream::new(now, session(B, codec), MediaConfig::default());
        let b = MediaStream::new(
            now,
            session(A, codec),
            MediaConfig {
                detect_tones: detect,
                rtp: RtpConfig {
                    local_ssrc: 77,
                    ..RtpConfig::default()
                },
                ..MediaConfig::default()
            },
        );
        (a, b, now)
    }

    /// Runs `a` → `b` on simulated time for `len`, in 1 ms steps; returns both sides' events.
    fn run(
        a: &mut MediaStream,
        b: &mut MediaStream,
        start: Instant,
        len: Duration,
    ) -> (Vec<MediaEvent>, Vec<MediaEvent>) {
        let from: SocketAddr = A.parse().unwrap();
        let (mut ea, mut eb) = (Vec::new(), Vec::new());
        let mut now = start;
        while now < start + len {
            a.handle_timeout(now);
            while let Some(d) = a.poll_transmit() {
                assert_eq!(d.socket, Socket::Rtp);
                b.handle_packet(now, from, &d.bytes);
            }
            ea.extend(std::iter::from_fn(|| a.poll_event()));
            eb.extend(std::iter::from_fn(|| b.poll_event()));
            now += Duration::from_millis(1);
        }
        (ea, eb)
    }

    fn digits(s: &str) -> Vec<Digit> {
        s.chars().filter_map(Digit::from_char).collect()
    }

    fn received(events: &[MediaEvent], method: DtmfMethod) -> String {
        events
            .iter()
            .filter_map(|e| match e {
                MediaEvent::DigitReceived { digit, method: m } if *m == method => {
                    Some(digit.as_char())
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn silence_goes_out_every_frame_and_is_not_heard() {
        let (mut a, mut b, now) = pair(Codec::Pcma { pt: 8 }, false);
        let (_, eb) = run(&mut a, &mut b, now, Duration::from_millis(1000));
        assert_eq!(a.stats().frames_sent, 50);
        assert_eq!(b.stats().frames_received, 50);
        assert_eq!(b.stats().frames_heard, 0);
        assert!(eb.is_empty(), "{eb:?}");
        assert_eq!(a.poll_timeout(), Some(now + Duration::from_millis(1000)));
    }

    #[test]
    fn a_tone_is_heard_at_its_level() {
        let (mut a, mut b, now) = pair(Codec::Pcmu { pt: 0 }, false);
        a.set_source(AudioSource::tone(425, -13.0).unwrap());
        let (_, eb) = run(&mut a, &mut b, now, Duration::from_millis(200));
        let [MediaEvent::AudioHeard { level_dbfs }] = eb[..] else {
            panic!("{eb:?}")
        };
        // −13 dBm0 is −16.14 dBFS.
        assert!((level_dbfs + 16.1).abs() < 0.5, "{level_dbfs}");
        assert_eq!(b.stats().frames_heard, 10);
        assert!((b.stats().mean_heard_dbfs + 16.1).abs() < 0.5);
    }

    #[test]
    fn rfc4733_digits_arrive_in_order_with_audio_suppressed_during_events() {
        let (mut a, mut b, now) = pair(Codec::Pcma { pt: 8 }, false);
        a.send_digits(now, &digits("31415926"), DtmfMethod::Rfc4733)
            .unwrap();
        assert_eq!(
            a.send_digits(now, &digits("1"), DtmfMethod::Rfc4733),
            Err(MediaError::Busy)
        );
        let (ea, eb) = run(&mut a, &mut b, now, Duration::from_secs(3));
        assert_eq!(received(&eb, DtmfMethod::Rfc4733), "31415926");
        assert_eq!(
            ea,
            [MediaEvent::DigitsSent {
                count: 8,
                method: DtmfMethod::Rfc4733
            }]
        );
        // 8 digits × 240 ms ≈ 1.92 s; about half of those frames carry events instead.
        let frames = a.stats().frames_sent;
        assert!((100..145).contains(&frames), "{frames}");
        assert!(!a.is_sending_digits());
    }

    #[test]
    fn inband_digits_are_detected_in_both_codecs() {
        for codec in [Codec::Pcma { pt: 8 }, Codec::Pcmu { pt: 0 }] {
            let (mut a, mut b, now) = pair(codec, true);
            a.send_digits(now, &digits("0123456789*#"), DtmfMethod::InBand)
                .unwrap();
            let (ea, eb) = run(&mut a, &mut b, now, Duration::from_secs(4));
            assert_eq!(received(&eb, DtmfMethod::InBand), "0123456789*#");
            assert_eq!(
                ea,
                [MediaEvent::DigitsSent {
                    count: 12,
                    method: DtmfMethod::InBand
                }]
            );
            assert_eq!(a.stats().events_sent, 0);
        }
    }

    #[test]
    fn rfc4733_needs_telephone_event() {
        let now = Instant::now();
        let mut media = session(B, Codec::Pcma { pt: 8 });
        media.telephone_event_pt = None;
        let mut a = MediaStream::new(now, media, MediaConfig::default());
        assert_eq!(
            a.send_digits(now, &digits("1"), DtmfMethod::Rfc4733),
            Err(MediaError::NoTelephoneEvent)
        );
        // In-band works without it.
        a.send_digits(now, &digits("1"), DtmfMethod::InBand)
            .unwrap();
    }

    #[test]
    fn a_recording_played_once_ends_then_silence() {
        let (mut a, mut b, now) = pair(Codec::Pcma { pt: 8 }, false);
        let samples: Arc<[i16]> = (0..400)
            .map(|i| if i % 2 == 0 { 8000 } else { -8000 })
            .collect();
        a.set_source(AudioSource::samples(samples, false));
        let (ea, _) = run(&mut a, &mut b, now, Duration::from_millis(200));
        assert_eq!(ea, [MediaEvent::SourceEnded]);
        // 400 samples cover 2.5 frames: three frames heard, then silence.
        assert_eq!(b.stats().frames_heard, 3);
    }

    #[test]
    fn garbage_and_strangers_are_dropped() {
        let (mut a, _, now) = pair(Codec::Pcma { pt: 8 }, true);
        let stranger: SocketAddr = "192.0.2.1:9".parse().unwrap();
        for bytes in [&b""[..], b"\x80", &[0x80; 200], &[0xff; 12]] {
            a.handle_packet(now, B.parse().unwrap(), bytes);
            a.handle_packet(now, stranger, bytes);
        }
        assert!(a.stats().frames_received <= 1);
    }

    #[test]
    fn stop_sends_nothing_more() {
        let (mut a, mut b, now) = pair(Codec::Pcma { pt: 8 }, false);
        a.stop();
        run(&mut a, &mut b, now, Duration::from_millis(100));
        assert_eq!(a.stats().frames_sent, 0);
    }
}
