//! Keeping a direct-media call direct (RFC 3725 §4.1 applied to later offers, RFC 3264 §8): once
//! both legs send RTP to each other, every offer one endpoint makes (hold, resume, a new RTP port, a
//! session refresh) is answered with the *other* endpoint's media, and a change is offered on to the
//! other leg, so media never silently falls back through our relay.
//!
//! Directions follow RFC 3264 §8.4: what we tell one endpoint about the other carries the other's
//! chosen direction intersected with the reverse of its own — the trunk's `sendonly` hold is answered
//! `recvonly` and offered to the agent as `sendonly`; a resume (`sendrecv`) undoes both. A refresh with
//! unchanged SDP changes nothing on the other leg.
//!
//! Sans-IO and owned by [`DirectMedia`](super::DirectMedia), which turns a `None` from
//! [`Synced::handle_offer`] (no common codec, an offer we cannot mirror) or a refused re-INVITE into
//! the fallback to the relay.

use super::{DirectAction, DirectMedia, Leg, Offer, PeerMedia};
use sip::sdp::{Codec, Direction};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

/// An endpoint's SDP offer, read against the other leg's codec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offered {
    /// Where it wants RTP; `None` for `c=0.0.0.0` or port 0 (RFC 2543 hold): keep the old address.
    pub addr: Option<SocketAddr>,
    /// The other leg's codec as this offer lists it.
    pub codec: Codec,
    pub telephone_event_pt: Option<u8>,
    /// The endpoint's own direction in the offer (`sendonly` = it holds the other side).
    pub direction: Direction,
}

/// Both endpoints' media while direct, and what each was last told about the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Synced {
    /// Each endpoint's RTP address and codec, with the direction it chose in its last offer.
    trunk: PeerMedia,
    agent: PeerMedia,
    /// What the trunk's (agent's) session describes as the far end: our last offer or answer to it.
    told_trunk: PeerMedia,
    told_agent: PeerMedia,
    /// Our re-INVITE carrying a change to this leg, awaiting its answer, and until when.
    out: Option<(Leg, Instant)>,
}

impl Synced {
    /// Both legs just moved: the trunk was told `agent`, the agent `trunk`.
    pub fn new(trunk: PeerMedia, agent: PeerMedia) -> Self {
        Synced {
            trunk,
            agent,
            told_trunk: agent,
            told_agent: trunk,
            out: None,
        }
    }

    /// The offer that changes nothing on `leg` (a session refresh): the other endpoint as `leg`
    /// knows it.
    pub fn current_offer(&self, leg: Leg) -> PeerMedia {
        self.describe(leg.other())
    }

    /// The other endpoint's media, to read `leg`'s offer against its codec.
    pub fn peer_of(&self, leg: Leg) -> PeerMedia {
        *self.media(leg.other())
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.out.map(|(_, until)| until)
    }

    /// The leg on which our re-INVITE is out.
    pub fn outstanding(&self) -> Option<Leg> {
        self.out.map(|(leg, _)| leg)
    }

    /// `leg` sent an offer: the answer to give it (the other endpoint's media), or `None` when the
    /// other endpoint cannot take it (its codec is missing). A change is offered on to the other
    /// leg (now, or when our re-INVITE already out there is answered).
    pub fn handle_offer(
        &mut self,
        now: Instant,
        leg: Leg,
        offer: Offered,
        actions: &mut VecDeque<DirectAction>,
    ) -> Option<PeerMedia> {
        let other = *self.media(leg.other());
        if offer.codec.kind() != other.codec.kind() {
            return None;
        }
        let m = self.media_mut(leg);
        m.addr = offer.addr.unwrap_or(m.addr);
        m.codec = offer.codec;
        m.telephone_event_pt = offer.telephone_event_pt;
        m.direction = offer.direction;
        let mut answer = self.describe(leg.other());
        // An answer carries telephone-event under the offer's payload type, if both ends have it.
        answer.telephone_event_pt = other.telephone_event_pt.and(offer.telephone_event_pt);
        *self.told_mut(leg) = answer;
        self.propagate(now, leg, actions);
        Some(answer)
    }

    /// `leg` re-INVITEd without SDP: what we offer it (its answer comes in the ACK).
    pub fn late_offer(&mut self, leg: Leg) -> PeerMedia {
        let offer = self.describe(leg.other());
        *self.told_mut(leg) = offer;
        offer
    }

    /// `leg` answered one of our offers (our re-INVITE's 2xx, or the ACK to our late offer): where it
    /// receives now. Its direction stays the one it chose in its own offers.
    pub fn handle_answer(
        &mut self,
        now: Instant,
        leg: Leg,
        answer: PeerMedia,
        actions: &mut VecDeque<DirectAction>,
    ) {
        let m = self.media_mut(leg);
        m.addr = answer.addr;
        m.codec = answer.codec;
        m.telephone_event_pt = answer.telephone_event_pt;
        if self.outstanding() == Some(leg) {
            self.out = None;
        }
        self.propagate(now, leg, actions);
        self.propagate(now, leg.other(), actions);
    }

    /// After a 491 on `leg`: the offer to send again, if ours is the one out there.
    pub fn retry(&self, leg: Leg) -> Option<PeerMedia> {
        (self.outstanding() == Some(leg)).then(|| *self.told(leg))
    }

    /// Offers `from`'s media to the other leg if that leg was told something else.
    fn propagate(&mut self, now: Instant, from: Leg, actions: &mut VecDeque<DirectAction>) {
        if self.out.is_some() {
            // Looked at again when that re-INVITE is answered.
            return;
        }
        let to = from.other();
        let want = self.describe(from);
        if *self.told(to) == want {
            return;
        }
        *self.told_mut(to) = want;
        self.out = Some((to, now + DirectMedia::STEP_TIMEOUT));
        actions.push_back(DirectAction::Offer(to, Offer::Peer(want)));
    }

    /// `of`'s media as told to the other leg: RFC 3264 §8.4, `of` sends only if it chose to send
    /// and the other chose to receive.
    fn describe(&self, of: Leg) -> PeerMedia {
        let m = *self.media(of);
        let to = self.media(of.other());
        PeerMedia {
            direction: m.direction.intersect(to.direction.reverse()),
            ..m
        }
    }

    fn media(&self, leg: Leg) -> &PeerMedia {
        match leg {
            Leg::Trunk => &self.trunk,
            Leg::Agent => &self.agent,
        }
    }

    fn media_mut(&mut self, leg: Leg) -> &mut PeerMedia {
        match leg {
            Leg::Trunk => &mut self.trunk,
            Leg::Agent => &mut self.agent,
        }
    }

    fn told(&self, leg: Leg) -> &PeerMedia {
        match leg {
            Leg::Trunk => &self.told_trunk,
            Leg::Agent => &self.told_agent,
        }
    }

    fn told_mut(&mut self, leg: Leg) -> &mut PeerMedia {
        match leg {
            Leg::Trunk => &mut self.told_trunk,
            Leg::Agent => &mut self.told_agent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const STEP: Duration = DirectMedia::STEP_TIMEOUT;

    fn media(port: u16, direction: Direction) -> PeerMedia {
        PeerMedia {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            codec: Codec::Pcma { pt: 8 },
            telephone_event_pt: Some(101),
            direction,
        }
    }

    fn offered(port: u16, direction: Direction) -> Offered {
        Offered {
            addr: Some(SocketAddr::from(([127, 0, 0, 1], port))),
            codec: Codec::Pcma { pt: 8 },
            telephone_event_pt: Some(101),
            direction,
        }
    }

    fn synced() -> Synced {
        Synced::new(
            media(TRUNK, Direction::SendRecv),
            media(AGENT, Direction::SendRecv),
        )
    }

    const AGENT: u16 = 30000;
    const TRUNK: u16 = 6000;

    #[test]
    fn trunk_hold_is_answered_recvonly_from_the_agent_and_offered_on_as_sendonly() {
        let t = Instant::now();
        let mut s = synced();
        let mut actions = VecDeque::new();
        let answer = s
            .handle_offer(
                t,
                Leg::Trunk,
                offered(TRUNK, Direction::SendOnly),
                &mut actions,
            )
            .unwrap();
        assert_eq!(answer, media(AGENT, Direction::RecvOnly));
        assert_eq!(
            Vec::from(actions.clone()),
            vec![DirectAction::Offer(
                Leg::Agent,
                Offer::Peer(media(TRUNK, Direction::SendOnly))
            )]
        );
        assert_eq!(s.poll_timeout(), Some(t + STEP));
        // The agent answers recvonly: nothing more to tell the trunk.
        actions.clear();
        s.handle_answer(
            t,
            Leg::Agent,
            media(AGENT, Direction::RecvOnly),
            &mut actions,
        );
        assert!(actions.is_empty(), "{actions:?}");
        assert_eq!(s.poll_timeout(), None);

        // Resume: sendrecv both ways again.
        let answer = s
            .handle_offer(
                t,
                Leg::Trunk,
                offered(TRUNK, Direction::SendRecv),
                &mut actions,
            )
            .unwrap();
        assert_eq!(answer, media(AGENT, Direction::SendRecv));
        assert_eq!(
            Vec::from(actions),
            vec![DirectAction::Offer(
                Leg::Agent,
                Offer::Peer(media(TRUNK, Direction::SendRecv))
            )]
        );
    }

    #[test]
    fn an_unchanged_refresh_changes_nothing_on_the_other_leg() {
        let t = Instant::now();
        let mut s = synced();
        let mut actions = VecDeque::new();
        for leg in [Leg::Trunk, Leg::Agent] {
            let port = if leg == Leg::Trunk { TRUNK } else { AGENT };
            let answer = s
                .handle_offer(t, leg, offered(port, Direction::SendRecv), &mut actions)
                .unwrap();
            assert_eq!(answer, s.current_offer(leg));
        }
        // Late offers (re-INVITE without SDP) and their unchanged answers neither.
        assert_eq!(s.late_offer(Leg::Agent), media(TRUNK, Direction::SendRecv));
        s.handle_answer(
            t,
            Leg::Agent,
            media(AGENT, Direction::SendRecv),
            &mut actions,
        );
        assert!(actions.is_empty(), "{actions:?}");
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn a_leg_moving_its_port_is_offered_to_the_other_leg() {
        let t = Instant::now();
        let mut s = synced();
        let mut actions = VecDeque::new();
        s.handle_offer(
            t,
            Leg::Trunk,
            offered(TRUNK + 2, Direction::SendRecv),
            &mut actions,
        );
        assert_eq!(
            Vec::from(actions.clone()),
            vec![DirectAction::Offer(
                Leg::Agent,
                Offer::Peer(media(TRUNK + 2, Direction::SendRecv))
            )]
        );
        // An agent moving in its answer to a late offer: the trunk is told.
        actions.clear();
        s.handle_answer(
            t,
            Leg::Agent,
            media(AGENT, Direction::SendRecv),
            &mut actions,
        );
        s.late_offer(Leg::Agent);
        s.handle_answer(
            t,
            Leg::Agent,
            media(AGENT + 2, Direction::SendRecv),
            &mut actions,
        );
        assert_eq!(
            Vec::from(actions),
            vec![DirectAction::Offer(
                Leg::Trunk,
                Offer::Peer(media(AGENT + 2, Direction::SendRecv))
            )]
        );
        // RFC 2543 hold (c=0.0.0.0) keeps the address it had.
        let mut s = synced();
        let mut actions = VecDeque::new();
        let hold = Offered {
            addr: None,
            ..offered(0, Direction::SendOnly)
        };
        s.handle_offer(t, Leg::Trunk, hold, &mut actions);
        assert_eq!(
            Vec::from(actions),
            vec![DirectAction::Offer(
                Leg::Agent,
                Offer::Peer(media(TRUNK, Direction::SendOnly))
            )]
        );
    }

    #[test]
    fn changes_while_a_reinvite_is_out_follow_its_answer() {
        let t = Instant::now();
        let mut s = synced();
        let mut actions = VecDeque::new();
        s.handle_offer(
            t,
            Leg::Trunk,
            offered(TRUNK, Direction::SendOnly),
            &mut actions,
        );
        actions.clear();
        // Resume before the agent answered the hold.
        let answer = s
            .handle_offer(
                t,
                Leg::Trunk,
                offered(TRUNK, Direction::SendRecv),
                &mut actions,
            )
            .unwrap();
        assert_eq!(answer.direction, Direction::SendRecv);
        assert!(actions.is_empty(), "one re-INVITE at a time per leg");
        assert_eq!(s.retry(Leg::Agent), Some(media(TRUNK, Direction::SendOnly)));
        assert_eq!(s.retry(Leg::Trunk), None);
        s.handle_answer(
            t,
            Leg::Agent,
            media(AGENT, Direction::RecvOnly),
            &mut actions,
        );
        assert_eq!(
            Vec::from(actions),
            vec![DirectAction::Offer(
                Leg::Agent,
                Offer::Peer(media(TRUNK, Direction::SendRecv))
            )]
        );
    }

    #[test]
    fn an_offer_without_the_other_legs_codec_cannot_stay_direct() {
        let t = Instant::now();
        let mut s = synced();
        let mut actions = VecDeque::new();
        let pcmu = Offered {
            codec: Codec::Pcmu { pt: 0 },
            ..offered(TRUNK, Direction::SendRecv)
        };
        assert_eq!(s.handle_offer(t, Leg::Trunk, pcmu, &mut actions), None);
        assert!(actions.is_empty());
    }
}
