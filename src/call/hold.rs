//! The caller hears the comfort signal while the agent has them on hold.
//!
//! When the agent's phone puts a relayed call on hold (its offer says `a=sendonly` or `a=inactive`,
//! RFC 3264 §8.4, or old-style `c=0.0.0.0`, RFC 2543 — both read into
//! [`MediaSession::on_hold`](sip::sdp::MediaSession::on_hold) by `sip::sdp`), the caller would hear
//! silence and think the line dropped. While the hold lasts, the call task sends the comfort signal
//! the caller heard while waiting (ringback or the configured prompt, from the start of its loop) to
//! the trunk, in 20 ms frames, until the agent resumes (`sendrecv`/`recvonly` and a real address).
//!
//! A holding phone may send its own music on hold (`sendonly` means it may send): then the caller
//! hears that, not us. A comfort frame is sent only when no agent audio was relayed in the last
//! [`AGENT_AUDIO_GRACE`]; frames are never mixed with the phone's audio, nor sent both.
//!
//! Only the agent's hold counts. A hold by the trunk changes nothing here (we send the holder
//! nothing, as the trunk's own RTP session direction already says), and while media flows end to
//! end (`media = "direct"`) the agent's hold is between the two phones and out of our hands: the
//! driver feeds this only with media negotiated through the relay.
//!
//! Sans-IO: inputs are `handle_*(now, …)`; [`AgentHold::poll_event`] says when the hold starts or
//! ends (start: make a fresh signal source and publish the call view; end: drop it and publish);
//! [`AgentHold::poll_timeout`] is when the next frame is due and [`AgentHold::handle_timeout`]
//! says whether to send it. Polling order after any input: drain `poll_event()`, then read
//! `poll_timeout()`.

use super::pacing::FrameClock;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How recently the agent's phone must have sent audio (that we relayed to the caller) for our
/// comfort frame to stay silent: five 20 ms packets. Long enough to ride over RTP jitter and a lost
/// packet or two of a phone's music on hold, short enough that the comfort signal is back within
/// a tenth of a second once the phone goes quiet.
pub const AGENT_AUDIO_GRACE: Duration = Duration::from_millis(100);

/// The hold started or ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldEvent {
    /// The agent put the caller on hold: start the comfort signal from the beginning of its loop.
    Started,
    /// The agent resumed (or left): stop the comfort signal at once.
    Ended,
}

/// Whether the agent holds the caller, and the pacing of the comfort frames meanwhile.
#[derive(Debug, Default)]
pub struct AgentHold {
    /// The comfort frames' grid while the agent holds the caller; `None` while not held.
    frames: Option<FrameClock>,
    last_agent_audio: Option<Instant>,
    events: VecDeque<HoldEvent>,
}

impl AgentHold {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the agent's phone holds the caller now.
    pub fn is_held(&self) -> bool {
        self.frames.is_some()
    }

    /// The agent's phone's media was (re)negotiated through the relay: its offer in a re-INVITE or
    /// UPDATE, or its answer (in an ACK, or to our re-INVITE). `on_hold` is what that SDP said
    /// ([`sip::sdp::MediaSession::on_hold`]).
    pub fn handle_media(&mut self, now: Instant, on_hold: bool) {
        match (self.is_held(), on_hold) {
            (false, true) => {
                self.frames = Some(FrameClock::starting(now));
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

    /// Audio from the agent's phone was relayed to the caller at `now`.
    pub fn handle_agent_audio(&mut self, now: Instant) {
        self.last_agent_audio = Some(now);
    }

    pub fn poll_event(&mut self) -> Option<HoldEvent> {
        self.events.pop_front()
    }

    /// When the next comfort frame is due; `None` when not on hold.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.frames.map(|f| f.due())
    }

    /// Time passed: whether a comfort frame goes to the caller now. A due frame is skipped (not
    /// sent late) while the phone's own audio reaches the caller.
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        if !self.frames.as_mut().is_some_and(|f| f.tick(now)) {
            return false;
        }
        self.last_agent_audio
            .is_none_or(|t| now.saturating_duration_since(t) >= AGENT_AUDIO_GRACE)
    }

    fn end(&mut self) {
        self.frames = None;
        self.events.push_back(HoldEvent::Ended);
    }
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
    fn the_phones_own_music_on_hold_silences_ours_until_it_stops() {
        let t0 = Instant::now();
        let mut hold = AgentHold::new();
        hold.handle_media(t0, true);
        assert!(hold.handle_timeout(t0));
        // The phone plays music on hold from 40 ms on, one packet every 20 ms for a second.
        let mut now = t0 + 20 * MS;
        let mut ours = 0;
        for i in 0..50u32 {
            let music = t0 + 40 * MS + i * 20 * MS;
            while hold.poll_timeout().is_some_and(|t| t < music) {
                now = hold.poll_timeout().unwrap_or(now);
                ours += u32::from(hold.handle_timeout(now));
            }
            hold.handle_agent_audio(music);
        }
        // Only the frame at 20 ms, before the music began.
        assert_eq!(ours, 1, "our frames went out while the phone's music did");
        // The music stops after its last packet at 1020 ms: ours are back 100 ms later.
        let last = t0 + 1020 * MS;
        assert!(!hold.handle_timeout(last + 20 * MS));
        assert!(!hold.handle_timeout(last + 80 * MS));
        assert!(hold.handle_timeout(last + AGENT_AUDIO_GRACE));
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
