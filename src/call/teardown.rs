//! How a call ends, sans-IO: whether and when the caller gets our BYE, when the call task may
//! stop, and the order in which everything the call held is let go.
//!
//! - The caller leg ends once: a BYE from the trunk (or its CANCEL) means no BYE from us; a
//!   hang-up decided anywhere (the machine's `HangupCaller`, a lost trunk dialog, no RTP for too
//!   long, a 408/481 to our re-INVITE, an unusable SDP answer) sends one BYE, however many times
//!   it is decided (RFC 3261 §15).
//! - The goodbye signal (the tenant's prompt, or the busy tone) plays to its end before that BYE;
//!   a `Release` that arrives meanwhile waits for it ([`Teardown::poll_timeout`]).
//! - Then [`Teardown::release`] gives the release order ([`ReleaseStep`]): the agent's phone is
//!   hung up (BYE when connected, CANCEL while ringing); signals stop; the trunk leg's socket and
//!   RTP ports go back *before* the (possibly slow, serialised) store write, so the next call never
//!   finds the pool empty because of it; the registry shows the call ended (and drops its personal
//!   data) — after a code lookup still running has answered (for up to [`LOOKUP_GRACE`]), so a
//!   caller who hangs up during it is listed with what the code was; the manager forgets its
//!   routes; last, a link code the call may hold is released in the store, after that lookup
//!   whatever it took (it would bind the code after we released it).
//!
//! Inputs are `handle_*(now, …)`; [`Teardown::poll_action`] says what to do now,
//! [`Teardown::poll_timeout`] when to call [`Teardown::handle_timeout`], and
//! [`Teardown::is_finished`] when the task leaves its loop. Polling order after any input: drain
//! `poll_action()`, then read `is_finished()` and `poll_timeout()`.

use super::machine::Classification;
use super::UnverifiedReason;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long the release waits for a code lookup still running before it lists the call ended
/// without its classification (a store that hangs must not keep an ended call listed as live).
pub const LOOKUP_GRACE: Duration = Duration::from_secs(2);

/// What the call task must do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TeardownAction {
    /// Send BYE on the trunk leg.
    ByeCaller,
    /// The goodbye signal has played: stop it.
    StopGoodbye,
}

/// One step of letting go of a call, in [`Teardown::release`]'s order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReleaseStep {
    /// BYE the agent's phone: its leg is connected.
    ByeAgent,
    /// CANCEL the agent's phones still ringing.
    CancelAgent,
    /// Stop digit detection and every signal; forget the agent's forks.
    StopSignals,
    /// Count the trunk leg's RTP, close its socket, give its ports back.
    FreePorts,
    /// The registry shows the call ended and drops its personal data.
    PublishEnded,
    /// The manager forgets the call's routes.
    ForgetRoutes,
    /// Let a code lookup still running finish (for a while: [`LOOKUP_GRACE`]), so the ended call
    /// is listed with what its code was; a lookup that takes longer is still awaited before
    /// [`ReleaseStep::ReleaseCode`].
    AwaitLookup,
    /// Release the link code's rows in the store.
    ReleaseCode,
}

/// Where the agent leg is when the call ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentLegAt {
    /// No agent leg, or the agent hung up.
    None,
    Ringing,
    Connected,
}

/// What the call is holding when it ends.
#[derive(Clone, Copy, Debug)]
pub struct Held<'a> {
    pub agent: AgentLegAt,
    /// A code lookup is still running.
    pub lookup_in_flight: bool,
    pub classification: Option<&'a Classification>,
}

impl Held<'_> {
    /// Only a call that got as far as looking a code up can hold one in the store.
    pub fn code_looked_up(&self) -> bool {
        self.lookup_in_flight
            || !matches!(
                self.classification,
                None | Some(Classification::Unverified(
                    UnverifiedReason::NoCode | UnverifiedReason::IncompleteCode
                ))
            )
    }
}

/// The end of one call. See the module docs for the polling order.
#[derive(Debug)]
pub struct Teardown {
    caller: CallerLeg,
    phase: Phase,
    actions: VecDeque<TeardownAction>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CallerLeg {
    Up,
    /// The trunk sent BYE or CANCEL, or we sent BYE.
    Gone,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The call goes on.
    Live,
    /// The goodbye signal plays until `until`; `release`: the call ends after it.
    Goodbye { until: Instant, release: bool },
    /// The task leaves its loop and releases the call.
    Finished,
}

impl Default for Teardown {
    fn default() -> Self {
        Self::new()
    }
}

impl Teardown {
    pub fn new() -> Self {
        Teardown {
            caller: CallerLeg::Up,
            phase: Phase::Live,
            actions: VecDeque::new(),
        }
    }

    /// The trunk hung up (BYE, or CANCEL before our 200): nothing to BYE.
    pub fn handle_caller_bye(&mut self, _now: Instant) {
        self.caller = CallerLeg::Gone;
    }

    /// We hang the caller up: one BYE, unless the caller is gone already.
    pub fn hangup_caller(&mut self, _now: Instant) {
        if self.caller == CallerLeg::Up {
            self.caller = CallerLeg::Gone;
            self.actions.push_back(TeardownAction::ByeCaller);
        }
    }

    /// The goodbye signal starts now and lasts `lasts`; the BYE follows it.
    pub fn handle_goodbye(&mut self, now: Instant, lasts: Duration) {
        let release = matches!(self.phase, Phase::Goodbye { release: true, .. });
        if self.phase != Phase::Finished {
            self.phase = Phase::Goodbye {
                until: now + lasts,
                release,
            };
        }
    }

    /// The call machine says the call is over: finished now, or once the goodbye has played.
    pub fn handle_release(&mut self, _now: Instant) {
        self.phase = match self.phase {
            Phase::Goodbye { until, .. } => Phase::Goodbye {
                until,
                release: true,
            },
            _ => Phase::Finished,
        };
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let Phase::Goodbye { until, release } = self.phase else {
            return;
        };
        if now < until {
            return;
        }
        self.actions.push_back(TeardownAction::StopGoodbye);
        self.hangup_caller(now);
        self.phase = if release {
            Phase::Finished
        } else {
            Phase::Live
        };
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Goodbye { until, .. } => Some(until),
            Phase::Live | Phase::Finished => None,
        }
    }

    pub fn poll_action(&mut self) -> Option<TeardownAction> {
        self.actions.pop_front()
    }

    /// Whether the goodbye signal is playing.
    pub fn saying_goodbye(&self) -> bool {
        matches!(self.phase, Phase::Goodbye { .. })
    }

    /// Whether the call task should leave its loop and release the call.
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Finished
    }

    /// The release order for a call holding `held` (see the module docs). Consumes the teardown:
    /// a call is released once.
    pub fn release(self, held: Held<'_>) -> Vec<ReleaseStep> {
        let mut steps = Vec::with_capacity(8);
        match held.agent {
            AgentLegAt::Connected => steps.push(ReleaseStep::ByeAgent),
            AgentLegAt::Ringing => steps.push(ReleaseStep::CancelAgent),
            AgentLegAt::None => {}
        }
        steps.extend([ReleaseStep::StopSignals, ReleaseStep::FreePorts]);
        if held.lookup_in_flight {
            steps.push(ReleaseStep::AwaitLookup);
        }
        steps.extend([ReleaseStep::PublishEnded, ReleaseStep::ForgetRoutes]);
        if held.code_looked_up() {
            steps.push(ReleaseStep::ReleaseCode);
        }
        steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::machine::CallConfig;
    use crate::call::registry::ShownAttribute;
    use crate::call::test_sim::{s, CallSim, GOODBYE};
    use crate::call::CallState;
    use crate::pii::Pii;
    use ReleaseStep as R;

    fn drain(t: &mut Teardown) -> Vec<TeardownAction> {
        std::iter::from_fn(|| t.poll_action()).collect()
    }

    fn held(agent: AgentLegAt, classification: Option<&Classification>) -> Held<'_> {
        Held {
            agent,
            lookup_in_flight: false,
            classification,
        }
    }

    #[test]
    fn the_caller_gets_one_bye_and_none_after_hanging_up() {
        let now = Instant::now();
        let mut t = Teardown::new();
        t.hangup_caller(now);
        t.hangup_caller(now);
        assert_eq!(drain(&mut t), [TeardownAction::ByeCaller]);
        let mut t = Teardown::new();
        t.handle_caller_bye(now);
        t.hangup_caller(now);
        assert!(drain(&mut t).is_empty(), "the trunk hung up first");
        t.handle_release(now);
        assert!(t.is_finished());
    }

    #[test]
    fn the_goodbye_plays_to_its_end_before_the_bye_and_the_release() {
        let t0 = Instant::now();
        let mut t = Teardown::new();
        t.handle_goodbye(t0, Duration::from_secs(3));
        t.handle_release(t0);
        assert!(!t.is_finished() && t.saying_goodbye());
        assert_eq!(t.poll_timeout(), Some(t0 + Duration::from_secs(3)));
        t.handle_timeout(t0 + Duration::from_millis(2999));
        assert!(drain(&mut t).is_empty() && !t.is_finished());
        t.handle_timeout(t0 + Duration::from_secs(3));
        assert_eq!(
            drain(&mut t),
            [TeardownAction::StopGoodbye, TeardownAction::ByeCaller]
        );
        assert!(t.is_finished());
        assert_eq!(t.poll_timeout(), None);
    }

    #[test]
    fn a_caller_hanging_up_during_the_goodbye_gets_no_bye() {
        let t0 = Instant::now();
        let mut t = Teardown::new();
        t.handle_goodbye(t0, Duration::from_secs(3));
        t.handle_release(t0);
        t.handle_caller_bye(t0 + Duration::from_secs(1));
        t.handle_timeout(t0 + Duration::from_secs(3));
        assert_eq!(drain(&mut t), [TeardownAction::StopGoodbye]);
        assert!(t.is_finished());
    }

    #[test]
    fn release_frees_ports_and_publishes_before_the_store_write() {
        let verified = Classification::Verified(vec![ShownAttribute {
            id: "irma-demo.gemeente.personalData.fullname".into(),
            label: "Naam".into(),
            value: Pii::new(Some("Jan de Vries".into())),
        }]);
        assert_eq!(
            Teardown::new().release(held(AgentLegAt::Connected, Some(&verified))),
            [
                R::ByeAgent,
                R::StopSignals,
                R::FreePorts,
                R::PublishEnded,
                R::ForgetRoutes,
                R::ReleaseCode
            ]
        );
        // A lookup still running is awaited before the call is listed ended (so the list says what
        // its code was) and before the code is released.
        let running = Held {
            lookup_in_flight: true,
            ..held(AgentLegAt::None, None)
        };
        assert_eq!(
            Teardown::new().release(running),
            [
                R::StopSignals,
                R::FreePorts,
                R::AwaitLookup,
                R::PublishEnded,
                R::ForgetRoutes,
                R::ReleaseCode
            ]
        );
        // No code, no store write; an unknown code was looked up and may hold a row.
        for (reason, store) in [
            (UnverifiedReason::NoCode, false),
            (UnverifiedReason::IncompleteCode, false),
            (UnverifiedReason::UnknownCode, true),
            (UnverifiedReason::UsedCode, true),
        ] {
            let c = Classification::Unverified(reason);
            let steps = Teardown::new().release(held(AgentLegAt::Ringing, Some(&c)));
            assert_eq!(steps[0], R::CancelAgent);
            assert_eq!(steps.contains(&R::ReleaseCode), store, "{reason}");
        }
        assert!(!Teardown::new()
            .release(held(AgentLegAt::None, None))
            .contains(&R::ReleaseCode));
    }

    /// A caller waiting for an agent, `max_wait` from now; the agent has one phone.
    fn waiting(max_wait: Duration) -> CallSim {
        let config = CallConfig {
            max_wait,
            ..CallConfig::default()
        };
        CallSim::waiting(config, &[1])
    }

    #[test]
    fn a_connected_call_the_agent_ends_byes_the_caller_and_releases() {
        let mut call = waiting(Duration::from_secs(600));
        call.answer("a");
        call.respond(1, 200);
        assert_eq!(call.machine.state(), CallState::Connected);
        call.machine.handle_agent_gone(call.now);
        call.agent = AgentLegAt::None; // the agent's BYE ended its dialog
        call.turn();
        assert_eq!(call.wire, [s("ACK", "192.0.2.1:5060"), s("BYE", "caller")]);
        assert!(call.teardown.is_finished());
        let steps = call.release();
        assert_eq!(steps[0], R::StopSignals, "the agent's leg is gone already");
        assert!(steps.contains(&R::ReleaseCode));
    }

    #[test]
    fn the_caller_hanging_up_a_connected_call_byes_the_agent_only() {
        let mut call = waiting(Duration::from_secs(600));
        call.answer("a");
        call.respond(1, 200);
        call.teardown.handle_caller_bye(call.now);
        call.machine.handle_caller_gone(call.now);
        call.turn();
        assert_eq!(call.wire, [s("ACK", "192.0.2.1:5060"), s("BYE", "agent")]);
        assert!(call.teardown.is_finished());
        assert_eq!(call.release()[0], R::StopSignals);
    }

    #[test]
    fn caller_gone_while_ringing_cancels_the_agent_and_ends_at_once() {
        let mut call = waiting(Duration::from_secs(600));
        call.answer("a");
        call.advance(Duration::from_secs(2));
        call.teardown.handle_caller_bye(call.now);
        call.machine.handle_caller_gone(call.now);
        call.turn();
        assert_eq!(call.wire, [s("CANCEL", "1")]);
        assert!(call.teardown.is_finished());
        assert_eq!(call.machine.state(), CallState::Ended);
    }

    #[test]
    fn nobody_answering_in_time_plays_the_goodbye_then_byes_the_caller() {
        let mut call = waiting(Duration::from_secs(60));
        call.answer("a");
        call.respond(1, 486);
        assert_eq!(
            call.machine.state(),
            CallState::Waiting,
            "busy: waiting again"
        );
        call.answer("a");
        call.advance(Duration::from_secs(20));
        assert_eq!(call.machine.state(), CallState::Waiting, "ring timeout");
        assert_eq!(call.wire, [s("CANCEL", "1")]);
        call.advance(Duration::from_secs(40));
        assert_eq!(call.machine.state(), CallState::Ended);
        assert!(!call.teardown.is_finished(), "the goodbye plays first");
        call.advance(GOODBYE - Duration::from_millis(1));
        assert_eq!(call.wire, [s("CANCEL", "1")]);
        call.advance(Duration::from_millis(1));
        assert_eq!(call.wire, [s("CANCEL", "1"), s("BYE", "caller")]);
        assert!(call.teardown.is_finished());
        assert_eq!(
            call.release(),
            [
                R::StopSignals,
                R::FreePorts,
                R::PublishEnded,
                R::ForgetRoutes,
                R::ReleaseCode
            ]
        );
    }

    #[test]
    fn hanging_up_through_the_api_while_ringing_cancels_and_byes_the_caller() {
        let mut call = waiting(Duration::from_secs(600));
        call.answer("a");
        call.machine.handle_hangup_request(call.now);
        call.turn();
        assert_eq!(call.wire, [s("CANCEL", "1"), s("BYE", "caller")]);
        assert!(call.teardown.is_finished());
    }
}
