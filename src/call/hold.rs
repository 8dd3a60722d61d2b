//! The caller hears the comfort signal while the agent has them on hold.
//!
//! When the agent's phone puts a relayed call on hold (its offer says `a=sendonly` or `a=inactive`,
//! RFC 3264 §8.4, or old-style `c=0.0.0.0`, RFC 2543 — both read into
//! [`MediaSession::on_hold`](sip::sdp::MediaSession::on_hold) by `sip::sdp`), the caller would hear
//! silence and think the line dropped. While the hold lasts, the call task sends the comfort signal
//! the caller heard while waiting (ringback or the configured prompt, from the start of its loop) to
//! the trunk, in 20 ms frames, until the agent resumes (`sendrecv`/`recvonly` and a real address).
//!
//! # The phone's own music on hold
//!
//! A holding phone may send its own music on hold (`sendonly` means it may send): then the caller
//! hears that, not us. But a phone may also keep streaming silence while it holds (voice activity
//! detection off), or send RFC 3389 comfort noise: that is no music, and the caller must hear our
//! signal. So what counts is what the phone sends, not that it sends. While held, each packet from
//! the phone is judged ([`AgentHold::handle_agent_packet`]):
//!
//! - G.711 audio (the negotiated PCMA or PCMU) is *loud* when the RMS of its decoded samples is
//!   above [`MUSIC_LEVEL_DBFS`] (−50 dBFS, [`dsp::level::rms_dbfs`]), else *quiet*.
//! - Comfort noise (static payload type 13, [`CN_PAYLOAD_TYPE`]) is quiet, whatever its level byte
//!   says: the phone tells us it is silent.
//! - RFC 4733 events are not judged at all (not fed in): they are relayed as ever, and are neither
//!   music nor silence.
//!
//! With hysteresis, so the signal neither starts on a click nor flaps in the pauses of real music:
//! the phone's music takes over after [`MUSIC_ONSET`] of loud audio in a row, and our signal comes
//! back, from the start of its loop, after [`MUSIC_RELEASE`] without a loud frame (quiet packets,
//! comfort noise or no packets at all alike). Exactly one of the two reaches the caller at a time:
//! while our signal plays, the phone's packets are not relayed (its silence, and the first
//! [`MUSIC_ONSET`] of its music); while its music plays, ours is not sent, and its quiet packets are
//! relayed (a pause in the music is part of it). Frames are never mixed, nor both sent.
//!
//! Only the agent's hold counts. A hold by the trunk changes nothing here (we send the holder
//! nothing, as the trunk's own RTP session direction already says), and while media flows end to
//! end (`media = "direct"`) the agent's hold is between the two phones and out of our hands: the
//! driver feeds this only with media negotiated through the relay.
//!
//! # Driving it
//!
//! Sans-IO: inputs are `handle_*(now, …)`; [`AgentHold::poll_event`] says when the hold starts or
//! ends (start: make a fresh signal source and publish the call view; end: drop it and publish)
//! and when the phone's music starts or stops (stop: a fresh signal source, so the caller hears it
//! from the start of its loop rather than from the middle of a 4 s ringback pause);
//! [`AgentHold::poll_timeout`] is when the next frame is due and [`AgentHold::handle_timeout`]
//! says whether to send it. Polling order after any input: drain `poll_event()` (after
//! `handle_timeout`, before sending the frame it asked for), then read `poll_timeout()`.

use super::pacing::FrameClock;
use sip::sdp::CodecKind;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The level above which the phone's audio counts as its music on hold: −50 dBFS (about
/// −47 dBm0). Music on hold is mastered around −20 dBFS and its quiet passages stay above −45;
/// what a holding phone streams as silence is far below: A-law's idle code decodes to −69 dBFS,
/// µ-law's to digital silence, and a muted handset's line noise sits around −60 to −70. The same
/// margin speech-detection thresholds keep from idle noise.
pub const MUSIC_LEVEL_DBFS: f64 = -50.0;

/// How much loud audio in a row it takes before the phone's music silences our signal: 100 ms
/// (five 20 ms frames). A click, a pop or one frame of noise is not music; real music takes over
/// within a tenth of a second, and the caller misses only that tenth of it (meanwhile our signal
/// goes on). A quiet frame or comfort noise starts the count again, and so does a gap in the
/// stream longer than [`MUSIC_RUN_GAP`].
pub const MUSIC_ONSET: Duration = Duration::from_millis(100);

/// The longest gap between two loud packets that still counts as "in a row" towards
/// [`MUSIC_ONSET`]: 100 ms, a few lost packets at any usual packet time (20–60 ms).
pub const MUSIC_RUN_GAP: Duration = Duration::from_millis(100);

/// How long the phone's music must stay quiet (quiet packets, comfort noise, or nothing) before our
/// signal comes back: one second. Announcements in music on hold pause between words (0.1–0.3 s)
/// and sentences (up to ~0.8 s), and tracks fade in and out: shorter, and a caller would hear a
/// snatch of ringback in every such pause. Much longer, and a phone whose music ended but which
/// keeps streaming silence would leave the caller in dead air — the thing this module exists to
/// prevent; a second of quiet after music is still heard as part of it.
pub const MUSIC_RELEASE: Duration = Duration::from_secs(1);

/// RTP payload type of comfort noise (RFC 3389, static in RFC 3551 §6).
pub const CN_PAYLOAD_TYPE: u8 = 13;

/// The hold started or ended, or the phone's music on hold did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldEvent {
    /// The agent put the caller on hold: start the comfort signal from the beginning of its loop.
    Started,
    /// The phone's own music on hold reaches the caller now (ours is not sent meanwhile).
    PhoneMusicStarted,
    /// The phone's music stopped ([`MUSIC_RELEASE`] of quiet): start our signal afresh, from the
    /// beginning of its loop.
    PhoneMusicStopped,
    /// The agent resumed (or left): stop the comfort signal at once.
    Ended,
}

/// A packet from the agent's phone, by payload type (RFC 4733 events are not fed in).
#[derive(Clone, Copy, Debug)]
pub enum AgentPacket<'a> {
    /// Audio in the negotiated G.711 law: its payload.
    Audio { codec: CodecKind, payload: &'a [u8] },
    /// Comfort noise (payload type [`CN_PAYLOAD_TYPE`]).
    ComfortNoise,
}

/// Whether the agent's phone holds the caller, whose audio the caller hears meanwhile, and the
/// pacing of our comfort frames.
#[derive(Debug, Default)]
pub struct AgentHold {
    /// `None` while not held.
    held: Option<Held>,
    events: VecDeque<HoldEvent>,
}

/// One hold, from the phone's hold offer to its resume.
#[derive(Debug)]
struct Held {
    /// Our comfort frames' grid; it runs on (without sending) while the phone's music plays.
    frames: FrameClock,
    heard: Heard,
}

/// Whose audio the held caller hears.
#[derive(Clone, Copy, Debug)]
enum Heard {
    /// Our signal; the phone's packets are not relayed. `run` is how much loud audio the phone sent
    /// in a row so far, `last` when the latest of it came.
    Ours {
        run: Duration,
        last: Option<Instant>,
    },
    /// The phone's music; `last_loud` is when its latest loud frame came.
    Phone { last_loud: Instant },
}

impl Heard {
    const OURS: Heard = Heard::Ours {
        run: Duration::ZERO,
        last: None,
    };
}

impl AgentHold {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the agent's phone holds the caller now.
    pub fn is_held(&self) -> bool {
        self.held.is_some()
    }

    /// The agent's phone's media was (re)negotiated through the relay: its offer in a re-INVITE or
    /// UPDATE, or its answer (in an ACK, or to our re-INVITE). `on_hold` is what that SDP said
    /// ([`sip::sdp::MediaSession::on_hold`]).
    pub fn handle_media(&mut self, now: Instant, on_hold: bool) {
        match (self.is_held(), on_hold) {
            (false, true) => {
                self.held = Some(Held {
                    frames: FrameClock::starting(now),
                    heard: Heard::OURS,
                });
                self.events.push_back(HoldEvent::Started);
            }
            (true, false) => self.end(),
            _ => {}
        }
    }

    /// The agent leg is gone (BYE, or media no longer relayed): no more hold.
    pub fn handle_agent_gone(&mut self) {
        if self.is_held() {
            self.end();
        }
    }

    /// A packet came from the agent's phone at `now`; returns whether it goes on to the caller.
    /// Not held: every audio packet does, and nothing is measured. Held: see the module docs; the
    /// level is measured only here, only while held. Comfort noise is never relayed (the trunk did
    /// not negotiate it).
    pub fn handle_agent_packet(&mut self, now: Instant, packet: AgentPacket<'_>) -> bool {
        let Some(held) = &mut self.held else {
            return matches!(packet, AgentPacket::Audio { .. });
        };
        let (loud, length) = match packet {
            AgentPacket::Audio { codec, payload } => (is_loud(codec, payload), duration(payload)),
            AgentPacket::ComfortNoise => (false, Duration::ZERO),
        };
        match &mut held.heard {
            Heard::Ours { run, last } => {
                if !loud {
                    held.heard = Heard::OURS;
                    return false;
                }
                if last.is_some_and(|t| now.saturating_duration_since(t) > MUSIC_RUN_GAP) {
                    *run = Duration::ZERO;
                }
                *run += length;
                *last = Some(now);
                if *run < MUSIC_ONSET {
                    return false;
                }
                held.heard = Heard::Phone { last_loud: now };
                self.events.push_back(HoldEvent::PhoneMusicStarted);
                true
            }
            Heard::Phone { last_loud } => {
                if loud {
                    *last_loud = now;
                    return true;
                }
                if now.saturating_duration_since(*last_loud) >= MUSIC_RELEASE {
                    held.heard = Heard::OURS;
                    self.events.push_back(HoldEvent::PhoneMusicStopped);
                    return false;
                }
                // A pause in the music: part of it.
                matches!(packet, AgentPacket::Audio { .. })
            }
        }
    }

    pub fn poll_event(&mut self) -> Option<HoldEvent> {
        self.events.pop_front()
    }

    /// When the next comfort frame is due; `None` when not on hold.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.held.as_ref().map(|h| h.frames.due())
    }

    /// Time passed: whether a comfort frame goes to the caller now. A due frame is skipped (not
    /// sent late) while the phone's music reaches the caller; once that has been quiet for
    /// [`MUSIC_RELEASE`], ours is back (with [`HoldEvent::PhoneMusicStopped`] first: drain the
    /// events before sending this frame).
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        let Some(held) = &mut self.held else {
            return false;
        };
        if !held.frames.tick(now) {
            return false;
        }
        match held.heard {
            Heard::Ours { .. } => true,
            Heard::Phone { last_loud }
                if now.saturating_duration_since(last_loud) >= MUSIC_RELEASE =>
            {
                held.heard = Heard::OURS;
                self.events.push_back(HoldEvent::PhoneMusicStopped);
                true
            }
            Heard::Phone { .. } => false,
        }
    }

    fn end(&mut self) {
        self.held = None;
        self.events.push_back(HoldEvent::Ended);
    }
}

/// Whether a G.711 payload is above [`MUSIC_LEVEL_DBFS`]. At most 60 ms (480 samples) is
/// measured, enough to judge by; the whole payload counts towards [`MUSIC_ONSET`].
fn is_loud(codec: CodecKind, payload: &[u8]) -> bool {
    let mut pcm = [0i16; 480];
    let n = payload.len().min(pcm.len());
    match codec {
        CodecKind::Pcma => dsp::g711::decode_alaw_into(&payload[..n], &mut pcm[..n]),
        CodecKind::Pcmu => dsp::g711::decode_ulaw_into(&payload[..n], &mut pcm[..n]),
    };
    dsp::level::rms_dbfs(&pcm[..n]) > MUSIC_LEVEL_DBFS
}

/// How long a G.711 payload plays: one byte per 8 kHz sample.
fn duration(payload: &[u8]) -> Duration {
    Duration::from_micros(125 * payload.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::pacing::FRAME_TIME;
    use sip::sdp::{describe, LocalMedia, LocalSdp, MediaPreferences};
    use std::net::{IpAddr, Ipv4Addr};

    const MS: Duration = Duration::from_millis(1);

    /// Frames sent between `from` and `until`, driving the hold by its own timeouts.
    fn frames(hold: &mut AgentHold, mut now: Instant, until: Instant) -> u32 {
        let mut sent = 0;
        while let Some(t) = hold.poll_timeout() {
            now = now.max(t);
            if now >= until {
                break;
            }
            sent += u32::from(hold.handle_timeout(now));
        }
        sent
    }

    fn offer(direction: &str, addr: &str) -> Vec<u8> {
        format!(
            "v=0\r\no=phone 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 {addr}\r\nt=0 0\r\n\
             m=audio 40000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\n{direction}"
        )
        .into_bytes()
    }

    /// What the agent's phone's offer means for the hold, as the driver reads it: the relay's
    /// answer to it.
    fn holds(offer: &[u8]) -> bool {
        let local = LocalMedia {
            addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            rtp_port: 30000,
        };
        let mut sdp = LocalSdp::new(1, MediaPreferences::default());
        sdp.answer(offer, local).expect("answerable").media.on_hold
    }

    /// 20 ms of a 400 Hz sine at `dbfs` (AES17: the sine's peak is `32768 · 10^(dbfs/20)`), in
    /// `codec`.
    fn tone(codec: CodecKind, dbfs: f64) -> Vec<u8> {
        let peak = 32768.0 * 10f64.powf(dbfs / 20.0);
        let pcm: Vec<i16> = (0..160)
            .map(|i| {
                (peak * (2.0 * std::f64::consts::PI * 400.0 * f64::from(i) / 8000.0).sin()) as i16
            })
            .collect();
        let mut out = vec![0u8; 160];
        match codec {
            CodecKind::Pcma => dsp::g711::encode_alaw_into(&pcm, &mut out),
            CodecKind::Pcmu => dsp::g711::encode_ulaw_into(&pcm, &mut out),
        };
        out
    }

    /// 20 ms of what a phone without voice activity detection sends while silent: the law's idle
    /// code (A-law 0xD5, µ-law 0xFF).
    fn silence(codec: CodecKind) -> Vec<u8> {
        match codec {
            CodecKind::Pcma => vec![0xD5; 160],
            CodecKind::Pcmu => vec![0xFF; 160],
        }
    }

    /// What the phone streams: one packet every 20 ms.
    #[derive(Clone, Copy)]
    enum Phone<'a> {
        Audio(CodecKind, &'a [u8]),
        ComfortNoise,
        Nothing,
    }

    /// A hold on simulated time: our frames on their grid, the phone's packets 10 ms off it, in
    /// time order; what reached the caller, and when.
    struct Sim {
        hold: AgentHold,
        now: Instant,
        /// Our comfort frames sent.
        ours: Vec<Instant>,
        /// The phone's packets relayed to the caller.
        relayed: Vec<Instant>,
        events: Vec<(Instant, HoldEvent)>,
    }

    impl Sim {
        /// Held from `t0` on (its `Started` event drained).
        fn held(t0: Instant) -> Sim {
            let mut hold = AgentHold::new();
            hold.handle_media(t0, true);
            assert_eq!(hold.poll_event(), Some(HoldEvent::Started));
            Sim {
                hold,
                now: t0,
                ours: Vec::new(),
                relayed: Vec::new(),
                events: Vec::new(),
            }
        }

        /// The phone sends `phone` for `time`.
        fn run(&mut self, time: Duration, phone: Phone<'_>) -> &mut Sim {
            let end = self.now + time;
            let mut packet = self.now + 10 * MS;
            loop {
                let frame = self.hold.poll_timeout().filter(|&t| t < end);
                let sends = !matches!(phone, Phone::Nothing) && packet < end;
                let at = match frame {
                    Some(t) if !sends || t <= packet => {
                        if self.hold.handle_timeout(t) {
                            self.ours.push(t);
                        }
                        t
                    }
                    _ if sends => {
                        let p = match phone {
                            Phone::Audio(codec, payload) => AgentPacket::Audio { codec, payload },
                            _ => AgentPacket::ComfortNoise,
                        };
                        if self.hold.handle_agent_packet(packet, p) {
                            self.relayed.push(packet);
                        }
                        packet += FRAME_TIME;
                        packet - FRAME_TIME
                    }
                    _ => break,
                };
                while let Some(e) = self.hold.poll_event() {
                    self.events.push((at, e));
                }
            }
            self.now = end;
            self
        }

        /// (our frames, the phone's relayed packets) in `from..to` after the hold began.
        fn heard(&self, t0: Instant, from: u32, to: u32) -> (usize, usize) {
            let range = t0 + from * MS..t0 + to * MS;
            (
                self.ours.iter().filter(|&&t| range.contains(&t)).count(),
                self.relayed.iter().filter(|&&t| range.contains(&t)).count(),
            )
        }

        fn events(&self) -> Vec<HoldEvent> {
            self.events.iter().map(|&(_, e)| e).collect()
        }
    }

    #[test]
    fn hold_and_resume_offers_as_phones_send_them() {
        assert!(holds(&offer("a=sendonly\r\n", "127.0.0.1")));
        assert!(holds(&offer("a=inactive\r\n", "127.0.0.1")));
        assert!(holds(&offer("a=sendrecv\r\n", "0.0.0.0")), "RFC 2543 hold");
        assert!(holds(&offer("", "0.0.0.0")), "RFC 2543 hold, no attribute");
        assert!(!holds(&offer("a=sendrecv\r\n", "127.0.0.1")));
        assert!(!holds(&offer("", "127.0.0.1")), "sendrecv by default");
        assert!(!holds(&offer("a=recvonly\r\n", "127.0.0.1")));
        // An answer in an ACK (to our offer in the 2xx) reads the same way.
        let prefs = MediaPreferences::default();
        let answer = |d, a| describe(&offer(d, a), &prefs).expect("sdp").on_hold;
        assert!(answer("a=sendonly\r\n", "127.0.0.1"));
        assert!(!answer("a=sendrecv\r\n", "127.0.0.1"));
    }

    #[test]
    fn hold_starts_frames_at_once_every_20_ms_until_resume() {
        let t0 = Instant::now();
        let mut hold = AgentHold::new();
        assert_eq!(hold.poll_timeout(), None);
        assert!(!hold.handle_timeout(t0));

        hold.handle_media(t0, true);
        assert!(hold.is_held());
        assert_eq!(hold.poll_event(), Some(HoldEvent::Started));
        assert_eq!(hold.poll_event(), None);
        assert_eq!(hold.poll_timeout(), Some(t0));
        // One second of hold: 50 frames.
        assert_eq!(frames(&mut hold, t0, t0 + 1000 * MS), 50);

        // A refresh that still holds changes nothing; a resume stops at once.
        hold.handle_media(t0 + 1000 * MS, true);
        assert_eq!(hold.poll_event(), None);
        hold.handle_media(t0 + 1000 * MS, false);
        assert!(!hold.is_held());
        assert_eq!(hold.poll_event(), Some(HoldEvent::Ended));
        assert_eq!(hold.poll_timeout(), None);
        assert!(!hold.handle_timeout(t0 + 1020 * MS));
        assert_eq!(frames(&mut hold, t0, t0 + 2000 * MS), 0);
    }

    #[test]
    fn a_new_hold_starts_again_after_a_resume() {
        let t0 = Instant::now();
        let mut hold = AgentHold::new();
        hold.handle_media(t0, true);
        hold.handle_media(t0 + 100 * MS, false);
        hold.handle_media(t0 + 500 * MS, true);
        let events: Vec<_> = std::iter::from_fn(|| hold.poll_event()).collect();
        assert_eq!(
            events,
            [HoldEvent::Started, HoldEvent::Ended, HoldEvent::Started]
        );
        assert_eq!(hold.poll_timeout(), Some(t0 + 500 * MS));
    }

    #[test]
    fn not_held_every_audio_packet_is_relayed_and_nothing_judged() {
        let t0 = Instant::now();
        let mut hold = AgentHold::new();
        for codec in [CodecKind::Pcma, CodecKind::Pcmu] {
            for payload in [silence(codec), tone(codec, -30.0)] {
                let packet = AgentPacket::Audio {
                    codec,
                    payload: &payload,
                };
                assert!(hold.handle_agent_packet(t0, packet));
            }
        }
        assert!(!hold.handle_agent_packet(t0, AgentPacket::ComfortNoise));
        assert_eq!(hold.poll_event(), None);
        assert_eq!(hold.poll_timeout(), None);
    }

    #[test]
    fn a_phone_streaming_silence_while_holding_gets_our_signal() {
        for codec in [CodecKind::Pcma, CodecKind::Pcmu] {
            let t0 = Instant::now();
            let quiet = silence(codec);
            let mut sim = Sim::held(t0);
            sim.run(3000 * MS, Phone::Audio(codec, &quiet));
            // Every one of our 150 frames in 3 s, and none of the phone's silence on top.
            assert_eq!(sim.heard(t0, 0, 3000), (150, 0), "{codec:?}");
            assert_eq!(sim.events(), [], "{codec:?}");
        }
    }

    #[test]
    fn comfort_noise_while_holding_gets_our_signal() {
        let t0 = Instant::now();
        let mut sim = Sim::held(t0);
        sim.run(2000 * MS, Phone::ComfortNoise);
        assert_eq!(sim.heard(t0, 0, 2000), (100, 0));
        assert_eq!(sim.events(), []);
    }

    #[test]
    fn a_minus_30_dbfs_tone_is_music_and_silences_ours_until_a_second_of_silence() {
        for codec in [CodecKind::Pcma, CodecKind::Pcmu] {
            let t0 = Instant::now();
            let (music, quiet) = (tone(codec, -30.0), silence(codec));
            let mut sim = Sim::held(t0);
            // 200 ms of silence from the phone, 2 s of music, then silence again.
            sim.run(200 * MS, Phone::Audio(codec, &quiet))
                .run(2000 * MS, Phone::Audio(codec, &music))
                .run(2000 * MS, Phone::Audio(codec, &quiet));
            // Ours until the music has lasted MUSIC_ONSET (five packets: 210..290 ms, the fifth
            // relayed), then only the music: one stream at a time, 50 packets a second.
            assert_eq!(sim.heard(t0, 0, 300), (15, 1), "{codec:?}");
            assert_eq!(sim.heard(t0, 300, 2200), (0, 95), "{codec:?}");
            // The first second of silence after it is the music's, relayed; then ours is back.
            assert_eq!(sim.heard(t0, 2200, 3180), (0, 49), "{codec:?}");
            assert_eq!(sim.heard(t0, 3200, 4200), (50, 0), "{codec:?}");
            assert_eq!(
                sim.events(),
                [HoldEvent::PhoneMusicStarted, HoldEvent::PhoneMusicStopped],
                "{codec:?}"
            );
        }
    }

    #[test]
    fn the_level_threshold_is_minus_50_dbfs() {
        for (dbfs, music) in [(-45.0, true), (-55.0, false)] {
            let t0 = Instant::now();
            let payload = tone(CodecKind::Pcma, dbfs);
            let mut sim = Sim::held(t0);
            sim.run(1000 * MS, Phone::Audio(CodecKind::Pcma, &payload));
            let (ours, relayed) = sim.heard(t0, 0, 1000);
            assert_eq!((ours < 10, relayed > 40), (music, music), "{dbfs} dBFS");
        }
    }

    #[test]
    fn comfort_noise_or_a_quiet_frame_restarts_the_count_towards_music() {
        let t0 = Instant::now();
        let loud = tone(CodecKind::Pcma, -20.0);
        let mut sim = Sim::held(t0);
        // Four loud packets (80 ms, one short of MUSIC_ONSET), then comfort noise, for a second.
        for _ in 0..10 {
            sim.run(80 * MS, Phone::Audio(CodecKind::Pcma, &loud))
                .run(20 * MS, Phone::ComfortNoise);
        }
        assert_eq!(sim.heard(t0, 0, 1000), (50, 0));
        assert_eq!(sim.events(), []);
        // The same with a quiet packet instead, and with clicks: one loud packet in silence.
        let quiet = silence(CodecKind::Pcma);
        for _ in 0..10 {
            sim.run(80 * MS, Phone::Audio(CodecKind::Pcma, &loud))
                .run(20 * MS, Phone::Audio(CodecKind::Pcma, &quiet));
        }
        for _ in 0..10 {
            sim.run(20 * MS, Phone::Audio(CodecKind::Pcma, &loud))
                .run(80 * MS, Phone::Audio(CodecKind::Pcma, &quiet));
        }
        assert_eq!(sim.heard(t0, 1000, 3000), (100, 0));
        assert_eq!(sim.events(), []);
    }

    #[test]
    fn a_lost_packet_does_not_restart_the_count_but_a_pause_does() {
        let t0 = Instant::now();
        let loud = tone(CodecKind::Pcma, -20.0);
        let mut sim = Sim::held(t0);
        // 60 ms of music, 40 ms lost, 40 ms more: 100 ms in a row.
        sim.run(60 * MS, Phone::Audio(CodecKind::Pcma, &loud))
            .run(40 * MS, Phone::Nothing)
            .run(40 * MS, Phone::Audio(CodecKind::Pcma, &loud));
        assert_eq!(sim.events(), [HoldEvent::PhoneMusicStarted]);

        let mut sim = Sim::held(t0);
        // 60 ms, then 200 ms of nothing, then 20 ms: no five in a row yet.
        sim.run(60 * MS, Phone::Audio(CodecKind::Pcma, &loud))
            .run(200 * MS, Phone::Nothing)
            .run(60 * MS, Phone::Audio(CodecKind::Pcma, &loud));
        assert_eq!(sim.events(), []);
        assert_eq!(sim.heard(t0, 0, 320).1, 0);
    }

    #[test]
    fn a_pause_in_the_music_does_not_flap_our_signal() {
        let t0 = Instant::now();
        let (music, quiet) = (tone(CodecKind::Pcma, -30.0), silence(CodecKind::Pcma));
        let mut sim = Sim::held(t0);
        // Music with pauses: 800 ms of quiet packets, 800 ms of nothing, 900 ms of comfort noise.
        sim.run(1000 * MS, Phone::Audio(CodecKind::Pcma, &music))
            .run(800 * MS, Phone::Audio(CodecKind::Pcma, &quiet))
            .run(500 * MS, Phone::Audio(CodecKind::Pcma, &music))
            .run(800 * MS, Phone::Nothing)
            .run(500 * MS, Phone::Audio(CodecKind::Pcma, &music))
            .run(900 * MS, Phone::ComfortNoise)
            .run(500 * MS, Phone::Audio(CodecKind::Pcma, &music));
        assert_eq!(sim.events(), [HoldEvent::PhoneMusicStarted]);
        // Not one frame of ours after the music began; the quiet packets of the pause were relayed.
        assert_eq!(sim.heard(t0, 100, 5000).0, 0);
        assert_eq!(sim.heard(t0, 1000, 1800), (0, 40));
        assert_eq!(sim.heard(t0, 2300, 3100), (0, 0));
        assert_eq!(sim.heard(t0, 3600, 4500), (0, 0));
    }

    #[test]
    fn our_signal_is_back_a_second_after_the_phone_stops_sending() {
        let t0 = Instant::now();
        let music = tone(CodecKind::Pcmu, -20.0);
        let mut sim = Sim::held(t0);
        sim.run(1000 * MS, Phone::Audio(CodecKind::Pcmu, &music));
        // The last packet came at 990 ms: ours is back with the first frame of its grid a second
        // after that.
        sim.run(2000 * MS, Phone::Nothing);
        let back = t0 + 2000 * MS;
        assert_eq!(
            sim.events,
            [
                (t0 + 90 * MS, HoldEvent::PhoneMusicStarted),
                (back, HoldEvent::PhoneMusicStopped)
            ]
        );
        assert_eq!(sim.ours.iter().find(|&&t| t > t0 + 100 * MS), Some(&back));
        assert_eq!(sim.heard(t0, 2000, 3000), (50, 0));
    }

    #[test]
    fn a_new_hold_judges_afresh() {
        let t0 = Instant::now();
        let (music, quiet) = (tone(CodecKind::Pcma, -20.0), silence(CodecKind::Pcma));
        let mut sim = Sim::held(t0);
        sim.run(500 * MS, Phone::Audio(CodecKind::Pcma, &music));
        // Resumed while the phone's music played, held again: its silence gets ours at once.
        sim.hold.handle_media(t0 + 500 * MS, false);
        sim.hold.handle_media(t0 + 600 * MS, true);
        sim.now = t0 + 600 * MS;
        sim.run(400 * MS, Phone::Audio(CodecKind::Pcma, &quiet));
        assert_eq!(sim.heard(t0, 600, 1000), (20, 0));
        assert_eq!(
            sim.events(),
            [
                HoldEvent::PhoneMusicStarted,
                HoldEvent::Ended,
                HoldEvent::Started
            ]
        );
    }

    #[test]
    fn a_stalled_runtime_does_not_burst() {
        let t0 = Instant::now();
        let mut hold = AgentHold::new();
        hold.handle_media(t0, true);
        assert!(hold.handle_timeout(t0));
        // Woken 2 s late: one frame, then the next one 20 ms on, not 99 at once.
        let late = t0 + 2000 * MS;
        assert!(hold.handle_timeout(late));
        assert_eq!(hold.poll_timeout(), Some(late + FRAME_TIME));
        assert!(!hold.handle_timeout(late + 10 * MS));
    }

    #[test]
    fn the_agent_leaving_ends_the_hold() {
        let t0 = Instant::now();
        let mut hold = AgentHold::new();
        hold.handle_agent_gone();
        assert_eq!(hold.poll_event(), None);
        hold.handle_media(t0, true);
        hold.handle_agent_gone();
        assert!(!hold.is_held());
        let events: Vec<_> = std::iter::from_fn(|| hold.poll_event()).collect();
        assert_eq!(events, [HoldEvent::Started, HoldEvent::Ended]);
    }
}
