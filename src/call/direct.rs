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
//! A 491 (glare, §14.1) is not an answer: the dialog's back-off ends in `DialogEvent::RetryOffer`,
//! and [`DirectMedia::handle_retry`] says what to send again.

use serde::Serialize;
use sip::sdp::Codec;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

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

/// One endpoint's media as negotiated: where it receives RTP and with what.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerMedia {
    pub addr: SocketAddr,
    pub codec: Codec,
    pub telephone_event_pt: Option<u8>,
}

/// What an offer on a leg points the peer at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offer {
    /// Our relay socket of that leg (our normal SDP).
    Relay,
    /// The other endpoint's media.
    Peer(PeerMedia),
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
    /// End to end.
    Direct { agent: PeerMedia, trunk: PeerMedia },
    /// Trunk re-INVITE back to our relay is out.
    Reverting { until: Instant },
    /// Relayed for good (never tried, refused, or reverted).
    Relay,
}

/// The direct-media switch of one call. See the module docs.
#[derive(Debug)]
pub struct DirectMedia {
    step: Step,
    step_timeout: Duration,
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
            step_timeout: Self::STEP_TIMEOUT,
            actions: VecDeque::new(),
        };
        d.actions
            .push_back(DirectAction::Offer(Leg::Trunk, Offer::Peer(agent)));
        Ok(d)
    }

    pub fn path(&self) -> MediaPath {
        match self.step {
            Step::Direct { .. } => MediaPath::Direct,
            _ => MediaPath::Relay,
        }
    }

    /// Whether the trunk may be sending its RTP elsewhere than to us (no media timeout on our relay
    /// socket then).
    pub fn trunk_media_elsewhere(&self) -> bool {
        matches!(
            self.step,
            Step::AgentOffered { .. } | Step::Direct { .. } | Step::Reverting { .. }
        )
    }

    /// What a session refresh on `leg` must offer to change nothing.
    pub fn current_offer(&self, leg: Leg) -> Offer {
        match (self.step, leg) {
            (Step::AgentOffered { agent, .. }, Leg::Trunk)
            | (Step::Direct { agent, .. }, Leg::Trunk) => Offer::Peer(agent),
            (Step::Direct { trunk, .. }, Leg::Agent) => Offer::Peer(trunk),
            _ => Offer::Relay,
        }
    }

    pub fn poll_action(&mut self) -> Option<DirectAction> {
        self.actions.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.step {
            Step::TrunkOffered { until, .. }
            | Step::AgentOffered { until, .. }
            | Step::Reverting { until } => Some(until),
            Step::Direct { .. } | Step::Relay => None,
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
                    until: now + self.step_timeout,
                };
                self.actions
                    .push_back(DirectAction::Offer(Leg::Agent, Offer::Peer(trunk)));
            }
            // Refused: the trunk still sends to our relay.
            (Step::TrunkOffered { .. }, Leg::Trunk, None) => self.step = Step::Relay,
            (Step::AgentOffered { agent, trunk, .. }, Leg::Agent, Some(_)) => {
                self.step = Step::Direct { agent, trunk };
                self.actions
                    .push_back(DirectAction::Path(MediaPath::Direct));
            }
            (Step::AgentOffered { .. }, Leg::Agent, None) => self.revert(now),
            (Step::Reverting { .. }, Leg::Trunk, _) => self.step = Step::Relay,
            _ => {}
        }
    }

    /// The dialog of `leg` says to send the offer again after a 491. Returns whether the pending
    /// offer on that leg is ours (queued again), so the driver knows not to look further.
    pub fn handle_retry(&mut self, leg: Leg) -> bool {
        let offer = match (self.step, leg) {
            (Step::TrunkOffered { agent, .. }, Leg::Trunk) => Offer::Peer(agent),
            (Step::AgentOffered { trunk, .. }, Leg::Agent) => Offer::Peer(trunk),
            (Step::Reverting { .. }, Leg::Trunk) => Offer::Relay,
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
            Step::TrunkOffered { .. } | Step::AgentOffered { .. } => self.revert(now),
            Step::Reverting { .. } => self.step = Step::Relay,
            Step::Direct { .. } | Step::Relay => {}
        }
    }

    fn revert(&mut self, now: Instant) {
        self.step = Step::Reverting {
            until: now + self.step_timeout,
        };
        self.actions
            .push_back(DirectAction::Offer(Leg::Trunk, Offer::Relay));
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
}
