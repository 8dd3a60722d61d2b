//! Direct media between caller and agent (`media = "direct"`): after the agent leg is connected
//! through our relay, re-INVITE both legs (RFC 3261 §14) so RTP flows end to end — third-party call
//! control in the order of RFC 3725 §4.1 flow I: first the trunk gets an offer carrying the agent's
//! RTP address and codec (+ telephone-event); the trunk's answer is then offered to the agent.
//!
//! Sans-IO, like the call machine: inputs are `handle_*(now, …)`, outputs [`DirectAction`]s from
//! [`DirectMedia::poll_action`], and [`DirectMedia::poll_timeout`] bounds each step. Polling order
//! after any input: drain `poll_action()`, then read `poll_timeout()`.
//!
//! Fallbacks, so the call always keeps working:
//! - the agent has no usable RTP address, or its codec is not one the trunk offered → stay relayed;
//! - the trunk refuses the re-INVITE (non-2xx, e.g. 488) or never answers → stay relayed (after a
//!   silent trunk we re-offer our relay address, in case it moved after all);
//! - the agent refuses (or never answers) after the trunk moved → re-INVITE the trunk back to our
//!   relay address.
//!
//! Once direct, offers either leg makes (hold, resume, refresh, a new port) go through
//! [`DirectMedia::handle_offer`]: answered with the other endpoint's media and mirrored to the other
//! leg by [`Synced`] (`direct/sync.rs`, RFC 3264 §8); an offer the other endpoint cannot take (its
//! codec missing), or the other leg refusing or never answering the change, moves both legs back to
//! the relay and the view shows `relay` again.
//!
//! A 491 (glare, §14.1) is not an answer: the dialog's back-off ends in `DialogEvent::RetryOffer`,
//! and [`DirectMedia::handle_retry`] says what to send again.

mod sync;

use serde::Serialize;
use sip::sdp::{Codec, Direction};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
pub use sync::Offered;
use sync::Synced;

/// How media flows between caller and agent (`media = "relay" | "direct"`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum AgentMedia {
    /// Through our RTP relay (B2BUA, transcoding when the legs differ).
    #[default]
    Relay,
    /// Re-INVITE both legs so RTP flows end to end; the relay is the fallback.
    Direct,
}

/// Where media flows right now, as the call view shows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaPath {
    #[default]
    Relay,
    Direct,
}

/// One side of the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leg {
    Trunk,
    Agent,
}

impl Leg {
    pub fn other(self) -> Leg {
        match self {
            Leg::Trunk => Leg::Agent,
            Leg::Agent => Leg::Trunk,
        }
    }
}

/// One endpoint's media as negotiated: where it receives RTP and with what.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerMedia {
    pub addr: SocketAddr,
    pub codec: Codec,
    pub telephone_event_pt: Option<u8>,
    /// The endpoint's own direction, as SDP describing it says (`sendonly`: it only sends).
    pub direction: Direction,
}

/// What an offer (or our answer) on a leg points the peer at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offer {
    /// Our relay socket of that leg (our normal SDP).
    Relay,
    /// The other endpoint's media.
    Peer(PeerMedia),
}

/// An offer a leg sent us in a re-INVITE or UPDATE, as the driver read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncomingOffer {
    /// No SDP: we offer in the 2xx, the answer comes in the ACK.
    Late,
    /// SDP read against the other leg's codec ([`DirectMedia::peer_of`]); `None` when it lacks that
    /// codec or holds more than the one audio stream we can mirror.
    Sdp(Option<Offered>),
}

/// What the driver must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirectAction {
    /// Send a re-INVITE on this leg with this offer; report its final answer with
    /// [`DirectMedia::handle_answer`].
    Offer(Leg, Offer),
    /// The media path changed: publish the call view.
    Path(MediaPath),
}

/// Why direct media was not even tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotTried {
    /// The agent's SDP gave no address we can hand to the trunk.
    NoAgentAddress,
    /// The trunk's offer did not contain the agent's codec.
    CodecNotAcceptedByTrunk,
}

/// One leg's way back to the relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Back {
    /// At the relay (or nothing more we can do).
    Done,
    /// Our re-INVITE to the relay is out.
    Sent,
    /// Another re-INVITE of ours is still out on this leg: offer the relay once it is answered.
    AfterPending,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Trunk re-INVITE with the agent's media is out.
    TrunkOffered { agent: PeerMedia, until: Instant },
    /// The trunk moved to the agent; agent re-INVITE with the trunk's media is out.
    AgentOffered {
        agent: PeerMedia,
        trunk: PeerMedia,
        until: Instant,
    },
    /// End to end; later offers are mirrored to the other leg.
    Direct(Synced),
    /// Re-INVITEs back to our relay are out.
    Reverting {
        trunk: Back,
        agent: Back,
        until: Instant,
    },
    /// Relayed for good (never tried, refused, or reverted).
    Relay,
}

/// The direct-media switch of one call. See the module docs.
#[derive(Debug)]
pub struct DirectMedia {
    step: Step,
    actions: VecDeque<DirectAction>,
}

impl DirectMedia {
    /// Longest we wait for a re-INVITE's final answer before treating it as refused (longer than
    /// Timer B, 64·T1, so the transaction's own timeout normally reports first).
    pub const STEP_TIMEOUT: Duration = Duration::from_secs(40);

    /// The agent leg just connected through the relay. `agent` is the agent's media from its 2xx;
    /// `trunk_accepts` whether the trunk's own offer listed the agent's codec.
    pub fn start(
        now: Instant,
        agent: Option<PeerMedia>,
        trunk_accepts: bool,
    ) -> Result<DirectMedia, NotTried> {
        let agent = agent.ok_or(NotTried::NoAgentAddress)?;
        if !trunk_accepts {
            return Err(NotTried::CodecNotAcceptedByTrunk);
        }
        let mut d = DirectMedia {
            step: Step::TrunkOffered {
                agent,
                until: now + Self::STEP_TIMEOUT,
            },
            actions: VecDeque::new(),
        };
        d.actions
            .push_back(DirectAction::Offer(Leg::Trunk, Offer::Peer(agent)));
        Ok(d)
    }

    pub fn path(&self) -> MediaPath {
        match self.step {
            Step::Direct(_) => MediaPath::Direct,
            _ => MediaPath::Relay,
        }
    }

    /// Whether the trunk may be sending its RTP elsewhere than to us (no media timeout on our relay
    /// socket then).
    pub fn trunk_media_elsewhere(&self) -> bool {
        match self.step {
            Step::AgentOffered { .. } | Step::Direct(_) => true,
            Step::Reverting { trunk, .. } => trunk != Back::Done,
            Step::TrunkOffered { .. } | Step::Relay => false,
        }
    }

    /// What a session refresh on `leg` must offer to change nothing.
    pub fn current_offer(&self, leg: Leg) -> Offer {
        match (self.step, leg) {
            (Step::AgentOffered { agent, .. }, Leg::Trunk) => Offer::Peer(agent),
            (Step::Direct(s), leg) => Offer::Peer(s.current_offer(leg)),
            _ => Offer::Relay,
        }
    }

    /// While direct: the other endpoint's media, to read `leg`'s offer against its codec.
    pub fn peer_of(&self, leg: Leg) -> Option<PeerMedia> {
        match self.step {
            Step::Direct(s) => Some(s.peer_of(leg)),
            _ => None,
        }
    }

    pub fn poll_action(&mut self) -> Option<DirectAction> {
        self.actions.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.step {
            Step::TrunkOffered { until, .. }
            | Step::AgentOffered { until, .. }
            | Step::Reverting { until, .. } => Some(until),
            Step::Direct(s) => s.poll_timeout(),
            Step::Relay => None,
        }
    }

    /// `leg` sent us an offer (re-INVITE or UPDATE): how to answer it. While direct the answer
    /// points at the other endpoint and a change goes on to the other leg; an offer the other
    /// endpoint cannot take is answered from the relay, and the other leg is moved back to it too.
    /// Outside direct media every offer is answered from the relay, as before.
    pub fn handle_offer(&mut self, now: Instant, leg: Leg, offer: IncomingOffer) -> Offer {
        let mut s = match self.step {
            Step::Direct(s) => s,
            // Mid-switch (the other leg's dialog is busy with our re-INVITE, or this one's would
            // have answered 491): give up direct media. This leg is answered from the relay, the
            // other one is moved back once it answered ours.
            Step::TrunkOffered { .. } | Step::AgentOffered { .. } => {
                self.fallback(now, Some(leg.other()), Some(leg));
                return Offer::Relay;
            }
            Step::Reverting { .. } | Step::Relay => return Offer::Relay,
        };
        let answer = match offer {
            IncomingOffer::Late => Some(s.late_offer(leg)),
            IncomingOffer::Sdp(Some(o)) => s.handle_offer(now, leg, o, &mut self.actions),
            IncomingOffer::Sdp(None) => None,
        };
        match answer {
            Some(a) => {
                self.step = Step::Direct(s);
                Offer::Peer(a)
            }
            None => {
                // `leg` is answered from the relay; only the other leg needs moving back.
                self.fallback(now, s.outstanding(), Some(leg));
                Offer::Relay
            }
        }
    }

    /// `leg` answered an offer that was not a step of ours: the ACK to our late offer, or the 2xx
    /// to a session refresh. `None`: no usable answer (ignored).
    pub fn handle_peer_answer(&mut self, now: Instant, leg: Leg, answer: Option<PeerMedia>) {
        if let (Step::Direct(mut s), Some(a)) = (self.step, answer) {
            s.handle_answer(now, leg, a, &mut self.actions);
            self.step = Step::Direct(s);
        }
    }

    /// The final answer to our re-INVITE on `leg`: `Some(media)` for a 2xx with usable SDP (the
    /// peer's media from it), `None` for a refusal (non-2xx other than 491, unusable SDP, transaction
    /// timeout, or a re-INVITE that could not be sent).
    pub fn handle_answer(&mut self, now: Instant, leg: Leg, answer: Option<PeerMedia>) {
        match (self.step, leg, answer) {
            (Step::TrunkOffered { agent, .. }, Leg::Trunk, Some(trunk)) => {
                self.step = Step::AgentOffered {
                    agent,
                    trunk,
                    until: now + Self::STEP_TIMEOUT,
                };
                self.actions
                    .push_back(DirectAction::Offer(Leg::Agent, Offer::Peer(trunk)));
            }
            // Refused: the trunk still sends to our relay.
            (Step::TrunkOffered { .. }, Leg::Trunk, None) => self.step = Step::Relay,
            (Step::AgentOffered { agent, trunk, .. }, Leg::Agent, Some(answered)) => {
                self.step = Step::Direct(Synced::new(trunk, agent));
                self.actions
                    .push_back(DirectAction::Path(MediaPath::Direct));
                // An agent that moved while answering is offered on to the trunk.
                self.handle_peer_answer(now, Leg::Agent, Some(answered));
            }
            (Step::AgentOffered { .. }, Leg::Agent, None) => {
                self.step = Step::Reverting {
                    trunk: Back::Sent,
                    agent: Back::Done,
                    until: now + Self::STEP_TIMEOUT,
                };
                self.actions
                    .push_back(DirectAction::Offer(Leg::Trunk, Offer::Relay));
            }
            (Step::Direct(mut s), leg, answer) if s.outstanding() == Some(leg) => match answer {
                Some(a) => {
                    s.handle_answer(now, leg, a, &mut self.actions);
                    self.step = Step::Direct(s);
                }
                // The other end refused the change: both legs back to the relay.
                None => self.fallback(now, None, None),
            },
            (
                Step::Reverting {
                    mut trunk,
                    mut agent,
                    until,
                },
                leg,
                _,
            ) => {
                let back = match leg {
                    Leg::Trunk => &mut trunk,
                    Leg::Agent => &mut agent,
                };
                *back = match *back {
                    Back::AfterPending => {
                        self.actions
                            .push_back(DirectAction::Offer(leg, Offer::Relay));
                        Back::Sent
                    }
                    Back::Sent | Back::Done => Back::Done,
                };
                self.step = if trunk == Back::Done && agent == Back::Done {
                    Step::Relay
                } else {
                    Step::Reverting {
                        trunk,
                        agent,
                        until,
                    }
                };
            }
            _ => {}
        }
    }

    /// The dialog of `leg` says to send the offer again after a 491. Returns whether the pending
    /// offer on that leg is ours (queued again), so the driver knows not to look further.
    pub fn handle_retry(&mut self, leg: Leg) -> bool {
        let offer = match (self.step, leg) {
            (Step::TrunkOffered { agent, .. }, Leg::Trunk) => Offer::Peer(agent),
            (Step::AgentOffered { trunk, .. }, Leg::Agent) => Offer::Peer(trunk),
            (Step::Direct(s), leg) => match s.retry(leg) {
                Some(p) => Offer::Peer(p),
                None => return false,
            },
            (
                Step::Reverting {
                    trunk: Back::Sent, ..
                },
                Leg::Trunk,
            ) => Offer::Relay,
            (
                Step::Reverting {
                    agent: Back::Sent, ..
                },
                Leg::Agent,
            ) => Offer::Relay,
            _ => return false,
        };
        self.actions.push_back(DirectAction::Offer(leg, offer));
        true
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.poll_timeout().is_none_or(|t| now < t) {
            return;
        }
        match self.step {
            // Unknown whether the trunk moved: point it back at us to be sure.
            Step::TrunkOffered { .. } | Step::AgentOffered { .. } => {
                self.step = Step::Reverting {
                    trunk: Back::Sent,
                    agent: Back::Done,
                    until: now + Self::STEP_TIMEOUT,
                };
                self.actions
                    .push_back(DirectAction::Offer(Leg::Trunk, Offer::Relay));
            }
            // The other end never answered our change: both back to the relay.
            Step::Direct(_) => self.fallback(now, None, None),
            Step::Reverting { .. } => self.step = Step::Relay,
            Step::Relay => {}
        }
    }

    /// From direct media back to the relay on both legs: `pending` is a leg whose re-INVITE of ours
    /// is still out (the relay offer waits for its answer), `answered` a leg already answered from
    /// the relay.
    fn fallback(&mut self, now: Instant, pending: Option<Leg>, answered: Option<Leg>) {
        let mut back = |leg: Leg| {
            if answered == Some(leg) {
                Back::Done
            } else if pending == Some(leg) {
                Back::AfterPending
            } else {
                self.actions
                    .push_back(DirectAction::Offer(leg, Offer::Relay));
                Back::Sent
            }
        };
        let trunk = back(Leg::Trunk);
        let agent = back(Leg::Agent);
        self.step = Step::Reverting {
            trunk,
            agent,
            until: now + Self::STEP_TIMEOUT,
        };
        self.actions.push_back(DirectAction::Path(MediaPath::Relay));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn media(port: u16, codec: Codec) -> PeerMedia {
        PeerMedia {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            codec,
            telephone_event_pt: Some(101),
            direction: Direction::SendRecv,
        }
    }

    fn drain(d: &mut DirectMedia) -> Vec<DirectAction> {
        std::iter::from_fn(|| d.poll_action()).collect()
    }

    const AGENT: u16 = 30000;
    const TRUNK: u16 = 6000;

    #[test]
    fn both_legs_move_trunk_first() {
        let t = Instant::now();
        let agent = media(AGENT, Codec::Pcma { pt: 8 });
        let trunk = media(TRUNK, Codec::Pcma { pt: 8 });
        let mut d = DirectMedia::start(t, Some(agent), true).unwrap();
        assert_eq!(
            drain(&mut d),
            vec![DirectAction::Offer(Leg::Trunk, Offer::Peer(agent))]
        );
        assert_eq!(d.current_offer(Leg::Trunk), Offer::Relay);
        d.handle_answer(t, Leg::Trunk, Some(trunk));
        assert_eq!(
            drain(&mut d),
            vec![DirectAction::Offer(Leg::Agent, Offer::Peer(trunk))]
        );
        assert!(d.trunk_media_elsewhere());
        assert_eq!(d.path(), MediaPath::Relay);
        d.handle_answer(t, Leg::Agent, Some(agent));
        assert_eq!(drain(&mut d), vec![DirectAction::Path(MediaPath::Direct)]);
        assert_eq!(d.path(), MediaPath::Direct);
        assert_eq!(d.poll_timeout(), None);
        // Session refreshes re-offer the same media on each leg.
        assert_eq!(d.current_offer(Leg::Trunk), Offer::Peer(agent));
        assert_eq!(d.current_offer(Leg::Agent), Offer::Peer(trunk));
    }

    #[test]
    fn not_tried_without_agent_address_or_common_codec() {
        let t = Instant::now();
        assert_eq!(
            DirectMedia::start(t, None, true).unwrap_err(),
            NotTried::NoAgentAddress
        );
        assert_eq!(
            DirectMedia::start(t, Some(media(AGENT, Codec::Pcmu { pt: 0 })), false).unwrap_err(),
            NotTried::CodecNotAcceptedByTrunk
        );
    }

    #[test]
    fn trunk_refusing_leaves_the_call_relayed() {
        let t = Instant::now();
        let mut d = DirectMedia::start(t, Some(media(AGENT, Codec::Pcma { pt: 8 })), true).unwrap();
        drain(&mut d);
        d.handle_answer(t, Leg::Trunk, None);
        assert!(drain(&mut d).is_empty(), "nothing to undo");
        assert_eq!(d.path(), MediaPath::Relay);
        assert_eq!(d.poll_timeout(), None);
        assert!(!d.trunk_media_elsewhere());
        assert_eq!(d.current_offer(Leg::Trunk), Offer::Relay);
    }

    #[test]
    fn agent_refusing_moves_the_trunk_back_to_the_relay() {
        let t = Instant::now();
        let mut d = DirectMedia::start(t, Some(media(AGENT, Codec::Pcma { pt: 8 })), true).unwrap();
        drain(&mut d);
        d.handle_answer(t, Leg::Trunk, Some(media(TRUNK, Codec::Pcma { pt: 8 })));
        drain(&mut d);
        d.handle_answer(t, Leg::Agent, None);
        assert_eq!(
            drain(&mut d),
            vec![DirectAction::Offer(Leg::Trunk, Offer::Relay)]
        );
        d.handle_answer(t, Leg::Trunk, Some(media(TRUNK, Codec::Pcma { pt: 8 })));
        assert_eq!(d.path(), MediaPath::Relay);
        assert!(!d.trunk_media_elsewhere());
    }

    #[test]
    fn glare_retries_the_pending_offer_only() {
        let t = Instant::now();
        let agent = media(AGENT, Codec::Pcma { pt: 8 });
        let mut d = DirectMedia::start(t, Some(agent), true).unwrap();
        drain(&mut d);
        assert!(
            !d.handle_retry(Leg::Agent),
            "nothing of ours on the agent leg"
        );
        assert!(d.handle_retry(Leg::Trunk));
        assert_eq!(
            drain(&mut d),
            vec![DirectAction::Offer(Leg::Trunk, Offer::Peer(agent))]
        );
    }

    #[test]
    fn silent_peers_time_out_into_the_relay() {
        let t = Instant::now();
        let step = DirectMedia::STEP_TIMEOUT;
        // Silent trunk: re-offer the relay, then give up.
        let mut d = DirectMedia::start(t, Some(media(AGENT, Codec::Pcma { pt: 8 })), true).unwrap();
        drain(&mut d);
        assert_eq!(d.poll_timeout(), Some(t + step));
        d.handle_timeout(t + step - Duration::from_millis(1));
        assert!(drain(&mut d).is_empty());
        d.handle_timeout(t + step);
        assert_eq!(
            drain(&mut d),
            vec![DirectAction::Offer(Leg::Trunk, Offer::Relay)]
        );
        d.handle_timeout(t + 2 * step);
        assert_eq!(d.poll_timeout(), None);
        assert_eq!(d.path(), MediaPath::Relay);

        // Silent agent after the trunk moved: the trunk comes back to us.
        let mut d = DirectMedia::start(t, Some(media(AGENT, Codec::Pcma { pt: 8 })), true).unwrap();
        let t1 = t + Duration::from_millis(100);
        d.handle_answer(t1, Leg::Trunk, Some(media(TRUNK, Codec::Pcma { pt: 8 })));
        drain(&mut d);
        assert_eq!(d.poll_timeout(), Some(t1 + step));
        d.handle_timeout(t1 + step);
        assert_eq!(
            drain(&mut d),
            vec![DirectAction::Offer(Leg::Trunk, Offer::Relay)]
        );
    }

    fn direct_call(t: Instant) -> (DirectMedia, PeerMedia, PeerMedia) {
        let agent = media(AGENT, Codec::Pcma { pt: 8 });
        let trunk = media(TRUNK, Codec::Pcma { pt: 8 });
        let mut d = DirectMedia::start(t, Some(agent), true).unwrap();
        d.handle_answer(t, Leg::Trunk, Some(trunk));
        d.handle_answer(t, Leg::Agent, Some(agent));
        drain(&mut d);
        assert_eq!(d.path(), MediaPath::Direct);
        (d, trunk, agent)
    }

    fn offered(port: u16, codec: Codec, direction: Direction) -> IncomingOffer {
        IncomingOffer::Sdp(Some(Offered {
            addr: Some(SocketAddr::from(([127, 0, 0, 1], port))),
            codec,
            telephone_event_pt: Some(101),
            direction,
        }))
    }

    #[test]
    fn an_offer_mid_switch_gives_up_direct_media() {
        let t = Instant::now();
        let agent = media(AGENT, Codec::Pcma { pt: 8 });
        let trunk = media(TRUNK, Codec::Pcma { pt: 8 });
        let mut d = DirectMedia::start(t, Some(agent), true).unwrap();
        d.handle_answer(t, Leg::Trunk, Some(trunk));
        drain(&mut d);
        // The trunk re-INVITEs while our re-INVITE to the agent is out.
        let hold = offered(TRUNK, Codec::Pcma { pt: 8 }, Direction::SendOnly);
        assert_eq!(d.handle_offer(t, Leg::Trunk, hold), Offer::Relay);
        assert_eq!(drain(&mut d), vec![DirectAction::Path(MediaPath::Relay)]);
        assert!(!d.trunk_media_elsewhere(), "answered from the relay");
        // The agent answers ours (pointing it at the trunk): it is moved back to the relay.
        d.handle_answer(t, Leg::Agent, Some(agent));
        assert_eq!(
            drain(&mut d),
            vec![DirectAction::Offer(Leg::Agent, Offer::Relay)]
        );
        d.handle_answer(t, Leg::Agent, Some(agent));
        assert_eq!(d.poll_timeout(), None);
        assert_eq!(d.path(), MediaPath::Relay);
        // Offers after that are answered from the relay.
        let again = offered(TRUNK, Codec::Pcma { pt: 8 }, Direction::SendRecv);
        assert_eq!(d.handle_offer(t, Leg::Trunk, again), Offer::Relay);
        assert!(drain(&mut d).is_empty());
    }

    #[test]
    fn a_hold_while_direct_stays_direct() {
        let t = Instant::now();
        let (mut d, _, agent) = direct_call(t);
        let answer = d.handle_offer(
            t,
            Leg::Trunk,
            offered(TRUNK, Codec::Pcma { pt: 8 }, Direction::SendOnly),
        );
        assert_eq!(
            answer,
            Offer::Peer(PeerMedia {
                direction: Direction::RecvOnly,
                ..agent
            })
        );
        assert!(matches!(
            drain(&mut d).as_slice(),
            [DirectAction::Offer(Leg::Agent, Offer::Peer(p))] if p.direction == Direction::SendOnly
        ));
        // A 491 from the agent: the same hold again.
        assert!(d.handle_retry(Leg::Agent));
        assert!(matches!(
            drain(&mut d).as_slice(),
            [DirectAction::Offer(Leg::Agent, Offer::Peer(p))] if p.direction == Direction::SendOnly
        ));
        d.handle_answer(
            t,
            Leg::Agent,
            Some(PeerMedia {
                direction: Direction::RecvOnly,
                ..agent
            }),
        );
        assert!(drain(&mut d).is_empty());
        assert_eq!(d.path(), MediaPath::Direct);
        assert!(d.trunk_media_elsewhere());
    }

    #[test]
    fn a_codec_the_other_leg_lacks_moves_both_legs_back_to_the_relay() {
        let t = Instant::now();
        let (mut d, _, _) = direct_call(t);
        let pcmu = offered(TRUNK, Codec::Pcmu { pt: 0 }, Direction::SendRecv);
        assert_eq!(d.handle_offer(t, Leg::Trunk, pcmu), Offer::Relay);
        // The trunk is answered from the relay; the agent is moved back to it.
        assert_eq!(
            drain(&mut d),
            vec![
                DirectAction::Offer(Leg::Agent, Offer::Relay),
                DirectAction::Path(MediaPath::Relay)
            ]
        );
        assert_eq!(d.path(), MediaPath::Relay);
        assert!(!d.trunk_media_elsewhere());
        d.handle_answer(t, Leg::Agent, Some(media(AGENT, Codec::Pcma { pt: 8 })));
        assert_eq!(d.poll_timeout(), None);
        assert_eq!(d.current_offer(Leg::Agent), Offer::Relay);
        // Later offers are answered from the relay.
        let again = offered(TRUNK, Codec::Pcma { pt: 8 }, Direction::SendRecv);
        assert_eq!(d.handle_offer(t, Leg::Trunk, again), Offer::Relay);
        assert!(drain(&mut d).is_empty());
    }

    #[test]
    fn the_other_leg_refusing_a_change_moves_both_back_to_the_relay() {
        let t = Instant::now();
        let (mut d, _, _) = direct_call(t);
        d.handle_offer(
            t,
            Leg::Agent,
            offered(AGENT + 2, Codec::Pcma { pt: 8 }, Direction::SendRecv),
        );
        assert!(matches!(
            drain(&mut d).as_slice(),
            [DirectAction::Offer(Leg::Trunk, Offer::Peer(_))]
        ));
        d.handle_answer(t, Leg::Trunk, None);
        assert_eq!(
            drain(&mut d),
            vec![
                DirectAction::Offer(Leg::Trunk, Offer::Relay),
                DirectAction::Offer(Leg::Agent, Offer::Relay),
                DirectAction::Path(MediaPath::Relay)
            ]
        );
        d.handle_answer(t, Leg::Trunk, Some(media(TRUNK, Codec::Pcma { pt: 8 })));
        assert!(d.poll_timeout().is_some(), "the agent has not answered yet");
        d.handle_answer(t, Leg::Agent, Some(media(AGENT, Codec::Pcma { pt: 8 })));
        assert_eq!(d.poll_timeout(), None);
    }

    #[test]
    fn a_fallback_while_our_reinvite_is_out_waits_for_its_answer() {
        let t = Instant::now();
        let (mut d, _, _) = direct_call(t);
        // Agent hold goes to the trunk; before the trunk answers, the agent offers PCMU only.
        d.handle_offer(
            t,
            Leg::Agent,
            offered(AGENT, Codec::Pcma { pt: 8 }, Direction::SendOnly),
        );
        drain(&mut d);
        let pcmu = offered(AGENT, Codec::Pcmu { pt: 0 }, Direction::SendRecv);
        assert_eq!(d.handle_offer(t, Leg::Agent, pcmu), Offer::Relay);
        assert_eq!(drain(&mut d), vec![DirectAction::Path(MediaPath::Relay)]);
        // The trunk answers the hold; only then is it offered the relay.
        d.handle_answer(t, Leg::Trunk, Some(media(TRUNK, Codec::Pcma { pt: 8 })));
        assert_eq!(
            drain(&mut d),
            vec![DirectAction::Offer(Leg::Trunk, Offer::Relay)]
        );
        assert!(d.trunk_media_elsewhere());
        d.handle_answer(t, Leg::Trunk, Some(media(TRUNK, Codec::Pcma { pt: 8 })));
        assert!(!d.trunk_media_elsewhere());
        assert_eq!(d.poll_timeout(), None);
    }

    #[test]
    fn a_silent_other_leg_times_out_into_the_relay() {
        let t = Instant::now();
        let (mut d, _, _) = direct_call(t);
        d.handle_offer(
            t,
            Leg::Trunk,
            offered(TRUNK + 2, Codec::Pcma { pt: 8 }, Direction::SendRecv),
        );
        drain(&mut d);
        let step = DirectMedia::STEP_TIMEOUT;
        assert_eq!(d.poll_timeout(), Some(t + step));
        d.handle_timeout(t + step);
        assert_eq!(
            drain(&mut d),
            vec![
                DirectAction::Offer(Leg::Trunk, Offer::Relay),
                DirectAction::Offer(Leg::Agent, Offer::Relay),
                DirectAction::Path(MediaPath::Relay)
            ]
        );
        d.handle_timeout(t + 2 * step);
        assert_eq!(d.poll_timeout(), None);
        assert_eq!(d.path(), MediaPath::Relay);
    }

    #[test]
    fn a_refresh_answer_from_a_new_address_is_offered_on() {
        let t = Instant::now();
        let (mut d, trunk, _) = direct_call(t);
        let moved = PeerMedia {
            addr: SocketAddr::from(([127, 0, 0, 1], TRUNK + 4)),
            ..trunk
        };
        d.handle_peer_answer(t, Leg::Trunk, Some(trunk));
        assert!(drain(&mut d).is_empty());
        d.handle_peer_answer(t, Leg::Trunk, Some(moved));
        assert_eq!(
            drain(&mut d),
            vec![DirectAction::Offer(Leg::Agent, Offer::Peer(moved))]
        );
    }
}
