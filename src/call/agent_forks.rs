//! The agent leg's forks, sans-IO: one INVITE per registered phone of the agent (parallel forking
//! done by us as a B2BUA, not by a proxy), and what happens to each.
//!
//! - The first 2xx wins: it is ACKed (RFC 3261 §13.2.2.4) and becomes the agent's UAC dialog
//!   (§12.1.2); every other fork still ringing is CANCELled (§9.1).
//! - A 2xx from a fork we no longer want — one that lost (two 200 OKs crossing), or one still
//!   ringing when the call moved on (ring timeout, the caller hung up) — is ACKed and hung up with
//!   BYE (§13.2.2.4 / §15).
//! - A provisional response says a phone is there ([`ForkEvent::Progress`]: a ring timeout is then
//!   `no_answer`, not `unreachable`).
//! - When every fork failed, the agent leg is over and the most telling failure is reported
//!   ([`AgentLegFailure::more_telling`]: busy over a codec mismatch over silence); under
//!   `srtp = "offer"` a leg that every phone refused as not acceptable (406/488/606) asks to be
//!   rung once more with plain RTP instead ([`ForkEvent::RetryPlain`]).
//!
//! How long the phones ring is the call machine's ring timeout: its `CancelAgent` becomes
//! [`AgentForks::cancel`] here.
//!
//! The four verbs: inputs are [`AgentForks::ring`], [`AgentForks::handle_response`],
//! [`AgentForks::handle_failure`] and [`AgentForks::cancel`]; after any of them drain
//! [`AgentForks::poll_transmit`] (what to send), then [`AgentForks::poll_event`] (what it means for
//! the call). There are no timers of its own.
//!
//! The transaction id is a type parameter (the call task uses the SIP endpoint's `ClientTxId`) so
//! the tests can name forks with plain numbers.

use super::agent_outcome::{AgentLegFailure, AgentLegReason};
use sip::dialog::Dialog;
use sip::endpoint::{ClientTxId, Target};
use sip::message::{Request, Response};
use sip::transaction::TimerConfig;
use std::collections::VecDeque;
use std::time::Instant;

/// An INVITE sent to one of the agent's registered phones.
#[derive(Clone, Debug)]
pub struct Fork<T = ClientTxId> {
    /// Its client transaction.
    pub tx: T,
    pub request: Request,
    /// Where it went: a stray 2xx's ACK and BYE go there too.
    pub target: Target,
}

/// What to send.
#[derive(Debug)]
pub enum ForkTransmit<T = ClientTxId> {
    /// CANCEL this INVITE (RFC 3261 §9.1).
    Cancel(T),
    /// ACK a 2xx (§13.2.2.4): to the winner, or to a stray before its BYE.
    Ack { request: Request, target: Target },
    /// Hang up a stray 2xx we just ACKed.
    Bye { request: Request, target: Target },
}

/// What the forks' responses mean for the call.
#[derive(Debug)]
pub enum ForkEvent {
    /// A phone sent a provisional response: it is there, maybe ringing.
    Progress,
    /// A phone answered: its dialog (already ACKed) and its 2xx, which carries the SDP answer.
    /// The other forks are being CANCELled.
    Answered {
        dialog: Box<Dialog>,
        answer: Response,
    },
    /// Every fork failed; the most telling failure. The caller waits again.
    Failed(AgentLegFailure),
    /// Every phone refused our SRTP offer as not acceptable, and the leg was rung with
    /// `srtp = "offer"`: ring the agent again with plain RTP.
    RetryPlain,
}

/// The forks of a call's agent legs. See the module docs for the polling order.
#[derive(Debug)]
pub struct AgentForks<T = ClientTxId> {
    timers: TimerConfig,
    state: State<T>,
    /// Forks that lost or were cancelled: a late 2xx from them is ACKed and hung up.
    stale: Vec<Fork<T>>,
    transmits: VecDeque<ForkTransmit<T>>,
    events: VecDeque<ForkEvent>,
}

#[derive(Debug)]
enum State<T> {
    /// No agent leg is ringing.
    Idle,
    Ringing {
        forks: Vec<Ringing<T>>,
        /// The offer was SRTP under `srtp = "offer"`: a plain-RTP retry is possible.
        srtp_fallback: bool,
    },
}

#[derive(Debug)]
struct Ringing<T> {
    fork: Fork<T>,
    /// How this fork failed; `None` while it may still answer.
    failed: Option<AgentLegFailure>,
}

impl<T: Copy + PartialEq> AgentForks<T> {
    /// `timers`: the RFC 3261 timers of the dialogs a 2xx makes.
    pub fn new(timers: TimerConfig) -> Self {
        AgentForks {
            timers,
            state: State::Idle,
            stale: Vec::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The INVITEs of a new agent leg went out. `srtp_fallback`: they offered SRTP under
    /// `srtp = "offer"`, so a leg every phone refuses as not acceptable is rung again with plain
    /// RTP. No fork at all (none could be sent) fails the leg at once as `unreachable`.
    pub fn ring(&mut self, forks: Vec<Fork<T>>, srtp_fallback: bool) {
        // One agent leg at a time: a leg still ringing is given up first.
        self.cancel();
        if forks.is_empty() {
            self.events
                .push_back(ForkEvent::Failed(AgentLegFailure::unreachable()));
            return;
        }
        self.state = State::Ringing {
            forks: forks
                .into_iter()
                .map(|fork| Ringing { fork, failed: None })
                .collect(),
            srtp_fallback,
        };
    }

    /// Whether an agent leg is ringing.
    pub fn is_ringing(&self) -> bool {
        matches!(self.state, State::Ringing { .. })
    }

    /// A response to client transaction `tx`; `false` when it is none of our forks (ringing or
    /// stale).
    pub fn handle_response(&mut self, now: Instant, tx: T, response: &Response) -> bool {
        if let Some(i) = self.ringing_index(tx) {
            if response.status.is_provisional() {
                self.events.push_back(ForkEvent::Progress);
            } else if response.status.is_success() {
                self.answered(now, i, response);
            } else {
                self.fail(tx, AgentLegFailure::response(response.status.as_u16()));
            }
            return true;
        }
        let Some(fork) = self.stale.iter().find(|f| f.tx == tx) else {
            return false;
        };
        if response.status.is_success() {
            if let Ok(mut dialog) =
                Dialog::uac(now, &fork.request, response, fork.target, self.timers)
            {
                self.transmits.push_back(ForkTransmit::Ack {
                    request: dialog.ack(invite_seq(&fork.request)),
                    target: dialog.peer(),
                });
                if let Ok(bye) = dialog.bye() {
                    self.transmits.push_back(ForkTransmit::Bye {
                        request: bye,
                        target: dialog.peer(),
                    });
                }
            }
        }
        true
    }

    /// Client transaction `tx` timed out or its transport failed: no final response from that
    /// phone at all. `false` when it is no fork still ringing.
    pub fn handle_failure(&mut self, tx: T) -> bool {
        if self.ringing_index(tx).is_none() {
            return false;
        }
        self.fail(tx, AgentLegFailure::unreachable());
        true
    }

    /// Stop ringing (ring timeout, the caller hung up, the call ends): CANCEL every fork that may
    /// still answer; a 2xx that crosses the CANCEL is ACKed and hung up.
    pub fn cancel(&mut self) {
        let State::Ringing { forks, .. } = std::mem::replace(&mut self.state, State::Idle) else {
            return;
        };
        for f in forks {
            if f.failed.is_none() {
                self.transmits.push_back(ForkTransmit::Cancel(f.fork.tx));
            }
            self.stale.push(f.fork);
        }
    }

    pub fn poll_transmit(&mut self) -> Option<ForkTransmit<T>> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<ForkEvent> {
        self.events.pop_front()
    }

    fn ringing_index(&self, tx: T) -> Option<usize> {
        match &self.state {
            State::Ringing { forks, .. } => forks.iter().position(|f| f.fork.tx == tx),
            State::Idle => None,
        }
    }

    /// Fork `i` sent a 2xx while ringing: it wins unless no dialog can be made of it.
    fn answered(&mut self, now: Instant, i: usize, response: &Response) {
        let State::Ringing { forks, .. } = &mut self.state else {
            return;
        };
        let winner = &forks[i].fork;
        let dialog = match Dialog::uac(now, &winner.request, response, winner.target, self.timers) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!("agent's 200 OK unusable for a dialog: {e}");
                let tx = winner.tx;
                self.fail(tx, AgentLegFailure::bad_answer(response.status.as_u16()));
                return;
            }
        };
        self.transmits.push_back(ForkTransmit::Ack {
            request: dialog.ack(invite_seq(&winner.request)),
            target: dialog.peer(),
        });
        let State::Ringing { forks, .. } = std::mem::replace(&mut self.state, State::Idle) else {
            return;
        };
        for (j, f) in forks.into_iter().enumerate() {
            if j == i {
                continue;
            }
            if f.failed.is_none() {
                self.transmits.push_back(ForkTransmit::Cancel(f.fork.tx));
            }
            self.stale.push(f.fork);
        }
        self.events.push_back(ForkEvent::Answered {
            dialog: Box::new(dialog),
            answer: response.clone(),
        });
    }

    /// Fork `tx` failed (`why`). When it was the last one still ringing, the leg is over.
    fn fail(&mut self, tx: T, why: AgentLegFailure) {
        let State::Ringing {
            forks,
            srtp_fallback,
        } = &mut self.state
        else {
            return;
        };
        let Some(fork) = forks.iter_mut().find(|f| f.fork.tx == tx) else {
            return;
        };
        fork.failed.get_or_insert(why);
        let all: Option<Vec<AgentLegFailure>> = forks.iter().map(|f| f.failed).collect();
        let Some(why) = all.and_then(|a| a.into_iter().reduce(AgentLegFailure::more_telling))
        else {
            return;
        };
        let retry_plain = *srtp_fallback && why.reason == AgentLegReason::NotAcceptable;
        // Every fork has its final answer: none can send a 2xx any more.
        self.state = State::Idle;
        self.events.push_back(if retry_plain {
            ForkEvent::RetryPlain
        } else {
            ForkEvent::Failed(why)
        });
    }
}

/// The CSeq number of an INVITE we built (always present; 1 otherwise).
fn invite_seq(invite: &Request) -> u32 {
    invite.headers.cseq().map(|c| c.seq).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::agent_outcome::AgentLegFailure;
    use crate::call::machine::CallConfig;
    use crate::call::test_sim::{fork, invite, response, s, sent, CallSim};
    use crate::call::CallState;
    use crate::tenant::AgentId;
    use sip::message::StatusCode;
    use std::time::Duration;

    fn events(forks: &mut AgentForks<u32>) -> Vec<ForkEvent> {
        std::iter::from_fn(|| forks.poll_event()).collect()
    }

    #[test]
    fn the_first_phone_to_answer_wins_and_the_others_are_cancelled() {
        let now = Instant::now();
        let mut forks = AgentForks::new(TimerConfig::default());
        forks.ring(vec![fork(1), fork(2), fork(3)], false);
        assert!(forks.is_ringing());
        assert!(forks.handle_response(now, 1, &response(1, 180)));
        assert!(matches!(events(&mut forks)[..], [ForkEvent::Progress]));
        // Phone 3 is busy; phone 2 answers.
        forks.handle_response(now, 3, &response(3, 486));
        assert!(events(&mut forks).is_empty(), "two phones may still answer");
        forks.handle_response(now, 2, &response(2, 200));
        assert_eq!(
            sent(&mut forks),
            [s("ACK", "192.0.2.2:5060"), s("CANCEL", "1")],
            "the busy phone is not cancelled"
        );
        let ev = events(&mut forks);
        let [ForkEvent::Answered { dialog, answer }] = &ev[..] else {
            panic!("{ev:?}")
        };
        assert_eq!(dialog.peer().addr, "192.0.2.2:5060".parse().unwrap());
        assert_eq!(&answer.body[..], b"v=0\r\n");
        assert!(!forks.is_ringing());
        // The winner's 2xx retransmitted is the dialog's to re-ACK, not ours.
        assert!(!forks.handle_response(now, 2, &response(2, 200)));
        // The cancelled phone's 487 changes nothing.
        assert!(forks.handle_response(now, 1, &response(1, 487)));
        assert!(sent(&mut forks).is_empty() && events(&mut forks).is_empty());
    }

    #[test]
    fn crossing_200_oks_the_loser_is_acked_and_hung_up() {
        let now = Instant::now();
        let mut forks = AgentForks::new(TimerConfig::default());
        forks.ring(vec![fork(1), fork(2)], false);
        forks.handle_response(now, 1, &response(1, 200));
        // The CANCEL to phone 2 crosses its 200 OK.
        assert_eq!(
            sent(&mut forks),
            [s("ACK", "192.0.2.1:5060"), s("CANCEL", "2")]
        );
        assert_eq!(events(&mut forks).len(), 1);
        assert!(forks.handle_response(now, 2, &response(2, 200)));
        assert_eq!(
            sent(&mut forks),
            [s("ACK", "192.0.2.2:5060"), s("BYE", "192.0.2.2:5060")]
        );
        assert!(events(&mut forks).is_empty(), "one winner only");
    }

    #[test]
    fn all_phones_busy_reports_the_most_telling_failure() {
        let now = Instant::now();
        let mut forks = AgentForks::new(TimerConfig::default());
        forks.ring(vec![fork(1), fork(2), fork(3)], false);
        forks.handle_response(now, 1, &response(1, 488));
        assert!(forks.handle_failure(2));
        assert!(events(&mut forks).is_empty());
        forks.handle_response(now, 3, &response(3, 486));
        let ev = events(&mut forks);
        assert!(
            matches!(ev[..], [ForkEvent::Failed(f)] if f == AgentLegFailure::response(486)),
            "{ev:?}"
        );
        assert!(sent(&mut forks).is_empty(), "nothing left to cancel");
        assert!(!forks.is_ringing());
        assert!(!forks.handle_failure(1), "the leg is over");
    }

    #[test]
    fn no_fork_sent_is_unreachable_at_once() {
        let mut forks = AgentForks::<u32>::new(TimerConfig::default());
        forks.ring(Vec::new(), true);
        let ev = events(&mut forks);
        assert!(matches!(ev[..], [ForkEvent::Failed(f)] if f == AgentLegFailure::unreachable()));
    }

    #[test]
    fn srtp_refused_everywhere_asks_for_a_plain_retry_only_under_offer() {
        let now = Instant::now();
        for (fallback, retry) in [(true, true), (false, false)] {
            let mut forks = AgentForks::new(TimerConfig::default());
            forks.ring(vec![fork(1), fork(2)], fallback);
            forks.handle_response(now, 1, &response(1, 488));
            forks.handle_response(now, 2, &response(2, 606));
            let ev = events(&mut forks);
            assert_eq!(matches!(ev[..], [ForkEvent::RetryPlain]), retry, "{ev:?}");
        }
        // Busy somewhere is a person's answer: no retry.
        let mut forks = AgentForks::new(TimerConfig::default());
        forks.ring(vec![fork(1), fork(2)], true);
        forks.handle_response(now, 1, &response(1, 488));
        forks.handle_response(now, 2, &response(2, 486));
        assert!(matches!(events(&mut forks)[..], [ForkEvent::Failed(_)]));
    }

    #[test]
    fn a_2xx_without_a_to_tag_is_a_bad_answer() {
        let now = Instant::now();
        let mut forks = AgentForks::new(TimerConfig::default());
        forks.ring(vec![fork(1)], false);
        let tagless = Response::for_request(&invite(1), StatusCode::OK, None);
        forks.handle_response(now, 1, &tagless);
        assert!(sent(&mut forks).is_empty());
        let ev = events(&mut forks);
        assert!(matches!(ev[..], [ForkEvent::Failed(f)] if f == AgentLegFailure::bad_answer(200)));
    }

    /// A verified caller waiting; agent `a` clicked "Opnemen"; phones 1 and 2 ring (for 20 s at
    /// most).
    fn ringing() -> CallSim {
        let config = CallConfig {
            agent_ring_timeout: Duration::from_secs(20),
            ..CallConfig::default()
        };
        let mut sim = CallSim::waiting(config, &[1, 2]);
        sim.answer("a");
        assert_eq!(sim.machine.state(), CallState::Ringing);
        sim
    }

    #[test]
    fn winner_connects_the_call() {
        let mut sim = ringing();
        sim.respond(2, 180);
        sim.advance(Duration::from_secs(5));
        sim.respond(2, 200);
        assert_eq!(sim.machine.state(), CallState::Connected);
        assert_eq!(sim.wire, [s("ACK", "192.0.2.2:5060"), s("CANCEL", "1")]);
        // Past the ring timeout nothing happens to a connected call.
        sim.advance(Duration::from_secs(30));
        assert_eq!(sim.machine.state(), CallState::Connected);
        assert!(sim.failed.is_empty());
    }

    #[test]
    fn ring_timeout_cancels_every_phone_and_the_caller_waits_again() {
        let mut sim = ringing();
        sim.respond(1, 180);
        sim.advance(Duration::from_secs(19));
        assert_eq!(sim.machine.state(), CallState::Ringing);
        assert!(sim.wire.is_empty());
        sim.advance(Duration::from_secs(1));
        assert_eq!(sim.machine.state(), CallState::Waiting);
        assert_eq!(sim.wire, [s("CANCEL", "1"), s("CANCEL", "2")]);
        assert_eq!(sim.failed, [AgentLegFailure::no_answer()]);
        // A phone picked up as the CANCEL went out: its 200 is ACKed and hung up.
        sim.wire.clear();
        sim.respond(2, 200);
        assert_eq!(
            sim.wire,
            [s("ACK", "192.0.2.2:5060"), s("BYE", "192.0.2.2:5060")]
        );
        assert_eq!(sim.machine.state(), CallState::Waiting);
    }

    #[test]
    fn ring_timeout_without_any_answer_is_unreachable() {
        let mut sim = ringing();
        sim.advance(Duration::from_secs(20));
        assert_eq!(sim.failed, [AgentLegFailure::unreachable()]);
        assert_eq!(sim.machine.state(), CallState::Waiting);
    }

    #[test]
    fn every_phone_busy_puts_the_caller_back_to_waiting() {
        let mut sim = ringing();
        sim.respond(1, 486);
        assert_eq!(sim.machine.state(), CallState::Ringing);
        sim.respond(2, 486);
        assert_eq!(sim.machine.state(), CallState::Waiting);
        assert_eq!(sim.failed, [AgentLegFailure::response(486)]);
        assert!(sim.wire.is_empty(), "nothing to cancel");
        // The agent may try again: a new leg rings.
        sim.machine
            .handle_answer_request(sim.now, AgentId("a".into()));
        sim.turn();
        assert_eq!(sim.machine.state(), CallState::Ringing);
        assert!(sim.forks.is_ringing());
    }

    #[test]
    fn crossing_200_oks_connect_once() {
        let mut sim = ringing();
        sim.respond(1, 200);
        sim.respond(2, 200);
        assert_eq!(sim.machine.state(), CallState::Connected);
        assert_eq!(
            sim.wire,
            [
                s("ACK", "192.0.2.1:5060"),
                s("CANCEL", "2"),
                s("ACK", "192.0.2.2:5060"),
                s("BYE", "192.0.2.2:5060"),
            ]
        );
    }

    #[test]
    fn caller_gone_while_ringing_cancels_the_phones_and_a_late_answer_is_hung_up() {
        let mut sim = ringing();
        sim.respond(1, 180);
        sim.advance(Duration::from_secs(3));
        sim.machine.handle_caller_gone(sim.now);
        sim.turn();
        assert_eq!(sim.machine.state(), CallState::Ended);
        assert_eq!(sim.wire, [s("CANCEL", "1"), s("CANCEL", "2")]);
        assert!(
            sim.failed.is_empty(),
            "a caller hanging up is not the agent's refusal"
        );
        sim.wire.clear();
        sim.respond(1, 200);
        assert_eq!(
            sim.wire,
            [s("ACK", "192.0.2.1:5060"), s("BYE", "192.0.2.1:5060")]
        );
        assert_eq!(sim.machine.state(), CallState::Ended);
    }
}
