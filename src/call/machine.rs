//! The call, as a sans-IO state machine: from our 200 OK to the trunk until both legs are gone.
//!
//! ```text
//!  Collecting ──code/timeout──▶ Classifying ──result──▶ Waiting ──agent asks──▶ Ringing ──200──▶ Connected
//!      │                             │                    ▲  │                     │                 │
//!      │                             │                    └──┼──busy/reject/20 s───┘                 │
//!      └──────────────── caller BYE / hang-up command / max wait ─────────────────────────────────▶ Ended
//! ```
//!
//! An agent leg that goes back to waiting is an event: [`Action::AgentLegFailed`] says whose phone
//! and why ([`AgentLegOutcome`]), and the view keeps it ([`CallMachine::agent_leg`]) until the next
//! agent leg is tried. A ring timeout is `no_answer` when a phone sent a provisional response
//! ([`CallMachine::handle_agent_progress`]), else `unreachable`: nothing ever answered the INVITE.
//!
//! Handing the caller over by REFER (RFC 3515, transferor side of RFC 5589 §6.1) is a state of its
//! own, `Referring` (shown as `ringing`): with [`TransferMode::Refer`] an agent's answer sends REFER
//! to the trunk (Refer-To the agent's phone) instead of ringing the agent ourselves, and a max wait
//! with [`MaxWaitPolicy::Overflow`] sends REFER to the fallback. A final 2xx sipfrag in the trunk's
//! NOTIFY means the trunk has the new call: we BYE our leg and the call ends *transferred*. A refused
//! REFER, a final non-2xx sipfrag or no final NOTIFY within [`CallConfig::refer_timeout`] falls back:
//! to ringing the agent ourselves (then bridging), or, for overflow, to the goodbye signal and BYE.
//!
//! The machine decides; the call task (the thin tokio driver) does. Inputs are `handle_*(now, …)`
//! calls; outputs are [`Action`]s from [`CallMachine::poll_action`]; [`CallMachine::poll_timeout`] says
//! when to call [`CallMachine::handle_timeout`]. Polling order after any input: drain `poll_action()`,
//! then read `poll_timeout()`.
//!
//! What the machine never does: touch SIP, RTP or the store. Looking up the code is an action whose
//! answer comes back through [`CallMachine::handle_lookup`], so the lookup can take as long as the store
//! needs while the caller hears the comfort signal.

use super::agent_outcome::{AgentLegFailure, AgentLegOutcome};
use super::collect::{CollectConfig, DigitCollector, DigitSource, Outcome};
use super::registry::ShownAttribute;
use super::{CallState, UnverifiedReason};
use crate::pii::Pii;
use crate::tenant::AgentId;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// What happens when nobody answers within [`CallConfig::max_wait`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MaxWaitPolicy {
    /// Transfer the caller to a fallback SIP URI or number.
    Overflow(String),
    /// Play the goodbye prompt, then hang up.
    Goodbye,
}

/// How a call reaches the agent who takes it (`transfer = "bridge" | "refer"`).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum TransferMode {
    /// We INVITE the agent's phones and stay in the call as a B2BUA.
    #[default]
    Bridge,
    /// We REFER the trunk to the agent's phone and leave the call; bridging is the fallback.
    Refer,
}

/// Per-call timing; defaults follow issue 4.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallConfig {
    pub collect: CollectConfig,
    pub max_wait: Duration,
    pub on_max_wait: MaxWaitPolicy,
    /// An agent's phones ring this long before the call goes back to waiting.
    pub agent_ring_timeout: Duration,
    /// How an agent's answer connects the call.
    pub transfer: TransferMode,
    /// A REFER without a final NOTIFY after this long counts as failed (the fallback runs).
    pub refer_timeout: Duration,
}

impl Default for CallConfig {
    fn default() -> Self {
        CallConfig {
            collect: CollectConfig::default(),
            max_wait: Duration::from_secs(10 * 60),
            on_max_wait: MaxWaitPolicy::Goodbye,
            agent_ring_timeout: Duration::from_secs(20),
            transfer: TransferMode::Bridge,
            // 64·T1: a transferee that got our REFER has long tried its INVITE by then.
            refer_timeout: Duration::from_secs(32),
        }
    }
}

/// The verdict on the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Classification {
    Verified(Vec<ShownAttribute>),
    Unverified(UnverifiedReason),
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Look the collected code up and bind it to this call; answer with [`CallMachine::handle_lookup`].
    LookupCode(Pii<String>),
    /// In-band detection is no longer needed.
    StopDigitDetection,
    /// Play the comfort signal (ringback or prompt, looped) to the caller.
    StartComfort,
    StopComfort,
    /// INVITE every registered contact of this agent in parallel; first 200 wins, the rest are CANCELled.
    RingAgent(AgentId),
    /// Stop ringing the agent (CANCEL outstanding INVITEs, BYE a late 200).
    CancelAgent,
    /// The agent leg ended without connecting and the caller waits again: log it. The view shows it
    /// ([`CallMachine::agent_leg`]) from the `Publish` that follows.
    AgentLegFailed(AgentLegOutcome),
    /// Connect caller and agent (B2BUA relay, or direct media, per configuration).
    Bridge,
    /// REFER the trunk to this agent's newest registered phone; answer with
    /// [`CallMachine::handle_refer_refused`] / [`CallMachine::handle_refer_progress`].
    ReferToAgent(AgentId),
    /// REFER the trunk to this fallback URI or number (overflow); answered the same way.
    Transfer(String),
    /// Play the goodbye prompt, then BYE the caller.
    Goodbye,
    /// BYE the caller leg now.
    HangupCaller,
    /// BYE the agent leg now.
    HangupAgent,
    /// The view changed: publish it (state, verification, attributes).
    Publish,
    /// The call is over: release RTP ports, drop attributes, release the link code.
    Release,
}

#[derive(Debug)]
enum State {
    Collecting(DigitCollector),
    Classifying,
    Waiting,
    Ringing {
        agent: AgentId,
        until: Instant,
        /// A phone sent a provisional response: a ring timeout is `no_answer`, not `unreachable`.
        heard: bool,
    },
    /// A REFER is out: to the agent (`Some`) or to the overflow target (`None`).
    Referring {
        agent: Option<AgentId>,
        until: Instant,
    },
    Connected {
        agent: AgentId,
    },
    Ended,
}

/// One call. See the module docs for the polling order.
#[derive(Debug)]
pub struct CallMachine {
    config: CallConfig,
    state: State,
    classification: Option<Classification>,
    /// When the caller started waiting for an agent (after classification).
    waiting_since: Option<Instant>,
    /// The call was handed over by REFER (to the agent, or to the overflow target).
    transferred: bool,
    /// The agent who talked to the caller or got the call by REFER; kept after the end.
    agent_of_record: Option<AgentId>,
    /// How the last agent leg failed; cleared when the next one is tried.
    agent_leg: Option<AgentLegOutcome>,
    /// A [`Action::LookupCode`] went out and its answer has not come back.
    lookup_pending: bool,
    actions: VecDeque<Action>,
}

impl CallMachine {
    /// The call was just answered (our 200 OK went out at `now`); digit collection starts.
    pub fn new(config: CallConfig, now: Instant) -> Self {
        let collector = DigitCollector::new(config.collect.clone(), now);
        let mut m = CallMachine {
            config,
            state: State::Collecting(collector),
            classification: None,
            waiting_since: None,
            transferred: false,
            agent_of_record: None,
            agent_leg: None,
            lookup_pending: false,
            actions: VecDeque::new(),
        };
        m.actions.push_back(Action::Publish);
        m
    }

    /// A call whose caller is known before it starts — a browser call, bound to its disclosure
    /// session by the session's own token: no digits to collect, so the caller waits for an agent
    /// from `now`, hearing the comfort signal.
    pub fn classified(config: CallConfig, now: Instant, classification: Classification) -> Self {
        let mut m = CallMachine::new(config, now);
        m.actions.clear();
        m.actions.push_back(Action::StopDigitDetection);
        m.actions.push_back(Action::StartComfort);
        m.classify(now, classification);
        m
    }

    pub fn state(&self) -> CallState {
        match self.state {
            State::Collecting(_) | State::Classifying => CallState::Collecting,
            State::Waiting => CallState::Waiting,
            State::Ringing { .. } | State::Referring { .. } => CallState::Ringing,
            State::Connected { .. } => CallState::Connected,
            State::Ended => CallState::Ended,
        }
    }

    /// Whether the call ended handed over by REFER (the trunk connected it elsewhere).
    pub fn transferred(&self) -> bool {
        self.transferred
    }

    pub fn classification(&self) -> Option<&Classification> {
        self.classification.as_ref()
    }

    /// The agent ringing, being referred to, or talking; after the end, the agent who talked to the
    /// caller or got the call by REFER.
    pub fn agent(&self) -> Option<&AgentId> {
        match &self.state {
            State::Ringing { agent, .. } | State::Connected { agent } => Some(agent),
            State::Referring { agent, .. } => agent.as_ref(),
            State::Ended => self.agent_of_record.as_ref(),
            _ => None,
        }
    }

    /// How the last agent leg failed (whose phone, its status, why), until another one is tried.
    pub fn agent_leg(&self) -> Option<&AgentLegOutcome> {
        self.agent_leg.as_ref()
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::Collecting(c) => c.poll_timeout(),
            State::Classifying | State::Connected { .. } | State::Ended => None,
            State::Waiting => self.wait_deadline(),
            State::Ringing { until, .. } | State::Referring { until, .. } => Some(*until),
        }
    }

    /// An out-of-band digit (RFC 4733 start or SIP INFO).
    pub fn handle_digit(&mut self, now: Instant, source: DigitSource, digit: char) {
        if let State::Collecting(c) = &mut self.state {
            c.handle_out_of_band(now, source, digit);
        }
        self.after_collect_input(now);
    }

    /// An RFC 4733 event ended.
    pub fn handle_digit_end(&mut self, now: Instant, digit: char) {
        if let State::Collecting(c) = &mut self.state {
            c.handle_out_of_band_end(now, digit);
        }
        self.after_collect_input(now);
    }

    /// A digit found in the audio by the in-band detector.
    pub fn handle_inband_digit(&mut self, now: Instant, digit: char, start: Instant, end: Instant) {
        if let State::Collecting(c) = &mut self.state {
            c.handle_inband(now, digit, start, end);
        }
        self.after_collect_input(now);
    }

    /// The answer to [`Action::LookupCode`].
    ///
    /// A caller may hang up while the lookup runs: the answer that comes after the end is still
    /// the call's classification (the list, the exchange API and the metrics say what the code
    /// was), but nothing is done with it and a verified caller's attributes are not kept.
    pub fn handle_lookup(&mut self, now: Instant, result: Classification) {
        if !std::mem::take(&mut self.lookup_pending) {
            return;
        }
        match self.state {
            State::Classifying => self.classify(now, result),
            State::Ended if self.classification.is_none() => {
                self.classification = Some(match result {
                    Classification::Verified(_) => Classification::Verified(Vec::new()),
                    unverified => unverified,
                });
                self.actions.push_back(Action::Publish);
            }
            _ => {}
        }
    }

    /// An agent clicked "Opnemen". Ignored unless the call is waiting (the registry already answered
    /// the agent with 409 in that case).
    pub fn handle_answer_request(&mut self, now: Instant, agent: AgentId) {
        if !matches!(self.state, State::Waiting) {
            return;
        }
        match self.config.transfer {
            TransferMode::Bridge => self.ring(now, agent),
            TransferMode::Refer => {
                self.state = State::Referring {
                    agent: Some(agent.clone()),
                    until: now + self.config.refer_timeout,
                };
                self.actions.push_back(Action::ReferToAgent(agent));
                self.actions.push_back(Action::Publish);
            }
        }
    }

    /// The trunk answered our REFER with an error (or never answered it), or there was nothing to
    /// refer to: the fallback runs.
    pub fn handle_refer_refused(&mut self, now: Instant) {
        self.refer_failed(now);
    }

    /// A NOTIFY of the REFER's implicit subscription carried this sipfrag status (RFC 3515 §2.4.5):
    /// 1xx is progress, 2xx hands the call over, anything else makes the fallback run.
    pub fn handle_refer_progress(&mut self, now: Instant, status: u16) {
        let State::Referring { agent, .. } = &self.state else {
            return;
        };
        match status {
            100..=199 => {}
            200..=299 => {
                // RFC 5589 §6.1: the transferor ends its dialog with the transferee.
                self.transferred = true;
                self.agent_of_record = agent.clone();
                self.actions.push_back(Action::StopComfort);
                self.actions.push_back(Action::HangupCaller);
                self.end();
            }
            _ => self.refer_failed(now),
        }
    }

    /// One of the agent's phones answered.
    pub fn handle_agent_answered(&mut self, _now: Instant) {
        if let State::Ringing { agent, .. } = &self.state {
            self.agent_of_record = Some(agent.clone());
            self.state = State::Connected {
                agent: agent.clone(),
            };
            self.actions.push_back(Action::StopComfort);
            self.actions.push_back(Action::Bridge);
            self.actions.push_back(Action::Publish);
        }
    }

    /// One of the agent's phones sent a provisional response (it is there, and maybe ringing).
    pub fn handle_agent_progress(&mut self, _now: Instant) {
        if let State::Ringing { heard, .. } = &mut self.state {
            *heard = true;
        }
    }

    /// The agent leg failed before it connected (`why`: the most telling of its phones' failures):
    /// the caller goes back to waiting, and the view says why.
    pub fn handle_agent_failed(&mut self, _now: Instant, why: AgentLegFailure) {
        if let State::Ringing { agent, .. } = &self.state {
            self.agent_leg_failed(why.of(agent.clone()));
        }
    }

    fn ring(&mut self, now: Instant, agent: AgentId) {
        self.agent_leg = None;
        self.state = State::Ringing {
            agent: agent.clone(),
            until: now + self.config.agent_ring_timeout,
            heard: false,
        };
        self.actions.push_back(Action::RingAgent(agent));
        self.actions.push_back(Action::Publish);
    }

    fn refer_failed(&mut self, now: Instant) {
        let State::Referring { agent, .. } = &self.state else {
            return;
        };
        match agent.clone() {
            // Fall back to bridging: ring the agent ourselves.
            Some(agent) => self.ring(now, agent),
            None => self.goodbye(),
        }
    }

    fn goodbye(&mut self) {
        self.actions.push_back(Action::StopComfort);
        self.actions.push_back(Action::Goodbye);
        self.end();
    }

    /// The caller hung up (BYE or CANCEL from the trunk, or media timeout).
    pub fn handle_caller_gone(&mut self, _now: Instant) {
        match self.state {
            State::Ended => {}
            State::Ringing { .. } => {
                self.actions.push_back(Action::CancelAgent);
                self.end();
            }
            State::Connected { .. } => {
                self.actions.push_back(Action::HangupAgent);
                self.end();
            }
            _ => self.end(),
        }
    }

    /// The agent hung up a connected call: the call is over for the caller too.
    pub fn handle_agent_gone(&mut self, _now: Instant) {
        if matches!(self.state, State::Connected { .. }) {
            self.actions.push_back(Action::HangupCaller);
            self.end();
        }
    }

    /// Hang-up requested through the API: both legs go.
    pub fn handle_hangup_request(&mut self, now: Instant) {
        match self.state {
            State::Ended => {}
            State::Ringing { .. } => {
                self.actions.push_back(Action::CancelAgent);
                self.actions.push_back(Action::HangupCaller);
                self.end();
            }
            State::Connected { .. } => {
                self.actions.push_back(Action::HangupAgent);
                self.actions.push_back(Action::HangupCaller);
                self.end();
            }
            _ => {
                let _ = now;
                self.actions.push_back(Action::HangupCaller);
                self.end();
            }
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        match &mut self.state {
            State::Collecting(c) => {
                c.handle_timeout(now);
                self.after_collect_input(now);
            }
            State::Waiting => {
                if self.wait_deadline().is_some_and(|d| now >= d) {
                    match self.config.on_max_wait.clone() {
                        MaxWaitPolicy::Overflow(target) => {
                            // The caller keeps hearing the comfort signal while the trunk tries.
                            self.state = State::Referring {
                                agent: None,
                                until: now + self.config.refer_timeout,
                            };
                            self.actions.push_back(Action::Transfer(target));
                            self.actions.push_back(Action::Publish);
                        }
                        MaxWaitPolicy::Goodbye => self.goodbye(),
                    }
                }
            }
            State::Ringing {
                agent,
                until,
                heard,
            } => {
                if now >= *until {
                    let why = if *heard {
                        AgentLegFailure::no_answer()
                    } else {
                        AgentLegFailure::unreachable()
                    };
                    let outcome = why.of(agent.clone());
                    self.actions.push_back(Action::CancelAgent);
                    self.agent_leg_failed(outcome);
                }
            }
            State::Referring { until, .. } => {
                if now >= *until {
                    self.refer_failed(now);
                }
            }
            State::Classifying | State::Connected { .. } | State::Ended => {}
        }
    }

    fn after_collect_input(&mut self, now: Instant) {
        let State::Collecting(c) = &self.state else {
            return;
        };
        let Some(outcome) = c.outcome().cloned() else {
            return;
        };
        self.actions.push_back(Action::StopDigitDetection);
        // The caller hears the comfort signal from here on, also while we look the code up.
        self.actions.push_back(Action::StartComfort);
        match outcome {
            Outcome::Code(code) => {
                self.state = State::Classifying;
                self.lookup_pending = true;
                self.actions.push_back(Action::LookupCode(Pii::new(code)));
            }
            Outcome::NoCode => {
                self.classify(now, Classification::Unverified(UnverifiedReason::NoCode))
            }
            Outcome::Incomplete { .. } => self.classify(
                now,
                Classification::Unverified(UnverifiedReason::IncompleteCode),
            ),
        }
    }

    fn classify(&mut self, now: Instant, result: Classification) {
        self.classification = Some(result);
        self.waiting_since = Some(now);
        self.state = State::Waiting;
        self.actions.push_back(Action::Publish);
    }

    fn agent_leg_failed(&mut self, outcome: AgentLegOutcome) {
        self.agent_leg = Some(outcome.clone());
        self.actions.push_back(Action::AgentLegFailed(outcome));
        self.back_to_waiting();
    }

    fn back_to_waiting(&mut self) {
        self.state = State::Waiting;
        self.actions.push_back(Action::Publish);
    }

    fn wait_deadline(&self) -> Option<Instant> {
        self.waiting_since.map(|t| t + self.config.max_wait)
    }

    fn end(&mut self) {
        self.state = State::Ended;
        if let Some(Classification::Verified(attrs)) = &mut self.classification {
            attrs.clear();
        }
        self.actions.push_back(Action::Publish);
        self.actions.push_back(Action::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::agent_outcome::AgentLegReason;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn drain(m: &mut CallMachine) -> Vec<Action> {
        std::iter::from_fn(|| m.poll_action()).collect()
    }

    fn verified() -> Classification {
        Classification::Verified(vec![ShownAttribute {
            id: "irma-demo.gemeente.personalData.fullname".into(),
            label: "Naam".into(),
            value: Pii::new(Some("Jan de Vries".into())),
        }])
    }

    /// A call that got its 8 digits and was verified; returns the machine and the time it started waiting.
    fn waiting_call(config: CallConfig) -> (CallMachine, Instant) {
        let t0 = Instant::now();
        let mut m = CallMachine::new(config, t0);
        let mut t = t0 + ms(500);
        for d in "12345678".chars() {
            m.handle_digit(t, DigitSource::Rfc4733, d);
            t += ms(150);
        }
        let actions = drain(&mut m);
        assert!(
            actions.contains(&Action::LookupCode(Pii::new("12345678".into()))),
            "{actions:?}"
        );
        assert_eq!(
            m.state(),
            CallState::Collecting,
            "still collecting while the lookup runs"
        );
        m.handle_lookup(t, verified());
        assert_eq!(m.state(), CallState::Waiting);
        drain(&mut m);
        (m, t)
    }

    #[test]
    fn a_verified_caller_reaches_the_agent() {
        let (mut m, t) = waiting_call(CallConfig::default());
        assert_eq!(m.classification(), Some(&verified()));
        m.handle_answer_request(t + ms(10), AgentId("agent".into()));
        assert_eq!(
            drain(&mut m),
            vec![Action::RingAgent(AgentId("agent".into())), Action::Publish]
        );
        m.handle_agent_answered(t + ms(900));
        assert_eq!(
            drain(&mut m),
            vec![Action::StopComfort, Action::Bridge, Action::Publish]
        );
        assert_eq!(m.state(), CallState::Connected);
        m.handle_caller_gone(t + Duration::from_secs(60));
        assert_eq!(
            drain(&mut m),
            vec![Action::HangupAgent, Action::Publish, Action::Release]
        );
        assert_eq!(
            m.classification(),
            Some(&Classification::Verified(vec![])),
            "attributes dropped at the end"
        );
        assert_eq!(m.agent(), Some(&AgentId("agent".into())), "kept on record");
        assert!(!m.transferred());
    }

    #[test]
    fn no_digits_for_ten_seconds_waits_unverified_no_code() {
        let t0 = Instant::now();
        let mut m = CallMachine::new(CallConfig::default(), t0);
        assert_eq!(m.poll_timeout(), Some(t0 + Duration::from_secs(10)));
        m.handle_timeout(t0 + Duration::from_secs(10));
        let actions = drain(&mut m);
        assert!(actions.contains(&Action::StartComfort));
        assert!(!actions.iter().any(|a| matches!(a, Action::LookupCode(_))));
        assert_eq!(m.state(), CallState::Waiting);
        assert_eq!(
            m.classification(),
            Some(&Classification::Unverified(UnverifiedReason::NoCode))
        );
    }

    #[test]
    fn four_digits_then_three_seconds_is_incomplete_code() {
        let t0 = Instant::now();
        let mut m = CallMachine::new(CallConfig::default(), t0);
        for (i, d) in "1234".chars().enumerate() {
            m.handle_digit(t0 + ms(200 * i as u64), DigitSource::Info, d);
        }
        let deadline = m.poll_timeout().unwrap();
        assert_eq!(deadline, t0 + ms(600) + Duration::from_secs(3));
        m.handle_timeout(deadline);
        assert_eq!(
            m.classification(),
            Some(&Classification::Unverified(
                UnverifiedReason::IncompleteCode
            ))
        );
    }

    fn outcome(status: Option<u16>, reason: AgentLegReason) -> AgentLegOutcome {
        AgentLegOutcome {
            agent: agent(),
            status,
            reason,
        }
    }

    #[test]
    fn an_agent_who_does_not_answer_in_20_s_returns_the_call_to_waiting() {
        let (mut m, t) = waiting_call(CallConfig::default());
        m.handle_answer_request(t, AgentId("agent".into()));
        drain(&mut m);
        m.handle_agent_progress(t + ms(40));
        assert_eq!(m.poll_timeout(), Some(t + Duration::from_secs(20)));
        m.handle_timeout(t + Duration::from_secs(20) - ms(1));
        assert_eq!(m.state(), CallState::Ringing);
        m.handle_timeout(t + Duration::from_secs(20));
        let no_answer = outcome(None, AgentLegReason::NoAnswer);
        assert_eq!(
            drain(&mut m),
            vec![
                Action::CancelAgent,
                Action::AgentLegFailed(no_answer.clone()),
                Action::Publish
            ]
        );
        assert_eq!(m.state(), CallState::Waiting);
        assert_eq!(m.agent_leg(), Some(&no_answer), "shown while it waits");
        // Another agent can take it now; their try clears the old outcome.
        m.handle_answer_request(t + Duration::from_secs(21), AgentId("b".into()));
        assert_eq!(m.state(), CallState::Ringing);
        assert_eq!(m.agent_leg(), None);
    }

    #[test]
    fn a_ring_timeout_without_any_response_is_unreachable() {
        let (mut m, t) = waiting_call(CallConfig::default());
        m.handle_answer_request(t, agent());
        drain(&mut m);
        m.handle_timeout(t + Duration::from_secs(20));
        let unreachable = outcome(None, AgentLegReason::Unreachable);
        assert!(drain(&mut m).contains(&Action::AgentLegFailed(unreachable.clone())));
        assert_eq!(m.agent_leg(), Some(&unreachable));
        // The next try starts unheard again.
        m.handle_answer_request(t + Duration::from_secs(21), agent());
        m.handle_agent_progress(t + Duration::from_secs(22));
        m.handle_timeout(t + Duration::from_secs(41));
        assert_eq!(
            m.agent_leg(),
            Some(&outcome(None, AgentLegReason::NoAnswer))
        );
    }

    #[test]
    fn a_refusing_phone_returns_the_call_to_waiting_and_says_why() {
        let (mut m, t) = waiting_call(CallConfig::default());
        m.handle_answer_request(t, agent());
        drain(&mut m);
        m.handle_agent_failed(t + ms(300), AgentLegFailure::response(488));
        let refused = outcome(Some(488), AgentLegReason::NotAcceptable);
        assert_eq!(
            drain(&mut m),
            vec![Action::AgentLegFailed(refused.clone()), Action::Publish]
        );
        assert_eq!(m.state(), CallState::Waiting);
        assert_eq!(m.agent(), None);
        assert_eq!(m.agent_leg(), Some(&refused));
        // A second failure report for the same leg changes nothing.
        m.handle_agent_failed(t + ms(400), AgentLegFailure::response(486));
        assert!(drain(&mut m).is_empty());
        assert_eq!(m.agent_leg(), Some(&refused));
        // It stays through the end of the call.
        m.handle_caller_gone(t + ms(900));
        drain(&mut m);
        assert_eq!(m.agent_leg(), Some(&refused));
    }

    #[test]
    fn a_caller_who_hangs_up_while_it_rings_is_no_refusal() {
        let (mut m, t) = waiting_call(CallConfig::default());
        m.handle_answer_request(t, agent());
        drain(&mut m);
        m.handle_caller_gone(t + ms(500));
        // The cancelled INVITE's 487 comes later.
        m.handle_agent_failed(t + ms(600), AgentLegFailure::response(487));
        m.handle_timeout(t + Duration::from_secs(30));
        let actions = drain(&mut m);
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, Action::AgentLegFailed(_))),
            "{actions:?}"
        );
        assert_eq!(m.agent_leg(), None);
    }

    #[test]
    fn max_wait_says_goodbye_or_overflows() {
        let (mut m, t) = waiting_call(CallConfig {
            max_wait: Duration::from_secs(120),
            ..Default::default()
        });
        assert_eq!(m.poll_timeout(), Some(t + Duration::from_secs(120)));
        m.handle_timeout(t + Duration::from_secs(120));
        assert_eq!(
            drain(&mut m),
            vec![
                Action::StopComfort,
                Action::Goodbye,
                Action::Publish,
                Action::Release
            ]
        );
        assert_eq!(m.state(), CallState::Ended);

        let config = CallConfig {
            max_wait: Duration::from_secs(60),
            on_max_wait: MaxWaitPolicy::Overflow("sip:+31240000000@trunk".into()),
            ..Default::default()
        };
        let (mut m, t) = waiting_call(config);
        m.handle_timeout(t + Duration::from_secs(60));
        assert!(drain(&mut m).contains(&Action::Transfer("sip:+31240000000@trunk".into())));
    }

    #[test]
    fn caller_hanging_up_while_agent_rings_cancels_the_agent() {
        let (mut m, t) = waiting_call(CallConfig::default());
        m.handle_answer_request(t, AgentId("agent".into()));
        drain(&mut m);
        m.handle_caller_gone(t + ms(500));
        assert_eq!(
            drain(&mut m),
            vec![Action::CancelAgent, Action::Publish, Action::Release]
        );
        assert_eq!(m.poll_timeout(), None);
        // Late events after the end change nothing.
        m.handle_agent_answered(t + ms(600));
        m.handle_timeout(t + Duration::from_secs(100));
        assert!(drain(&mut m).is_empty());
    }

    #[test]
    fn agent_hanging_up_ends_the_caller_leg_too() {
        let (mut m, t) = waiting_call(CallConfig::default());
        m.handle_answer_request(t, AgentId("agent".into()));
        m.handle_agent_answered(t + ms(100));
        drain(&mut m);
        m.handle_agent_gone(t + ms(5000));
        assert_eq!(
            drain(&mut m),
            vec![Action::HangupCaller, Action::Publish, Action::Release]
        );
    }

    #[test]
    fn hangup_request_while_collecting_ends_the_call() {
        let t0 = Instant::now();
        let mut m = CallMachine::new(CallConfig::default(), t0);
        drain(&mut m);
        m.handle_hangup_request(t0 + ms(100));
        assert_eq!(
            drain(&mut m),
            vec![Action::HangupCaller, Action::Publish, Action::Release]
        );
        // A lookup answer arriving after the end is ignored.
        m.handle_lookup(t0 + ms(200), verified());
        assert_eq!(m.classification(), None);
    }

    #[test]
    fn a_caller_hanging_up_during_the_lookup_still_gets_its_classification() {
        for (answer, shown) in [
            (verified(), Classification::Verified(Vec::new())),
            (
                Classification::Unverified(UnverifiedReason::UsedCode),
                Classification::Unverified(UnverifiedReason::UsedCode),
            ),
        ] {
            let t0 = Instant::now();
            let mut m = CallMachine::new(CallConfig::default(), t0);
            for (i, d) in "12345678".chars().enumerate() {
                m.handle_digit(t0 + ms(500 + 150 * i as u64), DigitSource::Rfc4733, d);
            }
            drain(&mut m);
            m.handle_caller_gone(t0 + ms(2000));
            assert_eq!(drain(&mut m), vec![Action::Publish, Action::Release]);
            assert_eq!(m.classification(), None, "the lookup still runs");
            // Its answer comes after the end: shown (without attributes), nothing else happens.
            m.handle_lookup(t0 + ms(2100), answer.clone());
            assert_eq!(m.classification(), Some(&shown));
            assert_eq!(m.state(), CallState::Ended);
            assert_eq!(drain(&mut m), vec![Action::Publish]);
            // One lookup, one answer.
            m.handle_lookup(t0 + ms(2200), verified());
            assert_eq!(m.classification(), Some(&shown));
            assert!(drain(&mut m).is_empty());
        }
    }

    #[test]
    fn answer_request_before_classification_is_ignored() {
        let t0 = Instant::now();
        let mut m = CallMachine::new(CallConfig::default(), t0);
        drain(&mut m);
        m.handle_answer_request(t0, AgentId("agent".into()));
        assert!(drain(&mut m).is_empty());
        assert_eq!(m.state(), CallState::Collecting);
    }

    fn refer_config() -> CallConfig {
        CallConfig {
            transfer: TransferMode::Refer,
            ..Default::default()
        }
    }

    fn agent() -> AgentId {
        AgentId("agent".into())
    }

    #[test]
    fn refer_mode_hands_the_call_over_on_a_2xx_sipfrag() {
        let (mut m, t) = waiting_call(refer_config());
        m.handle_answer_request(t, agent());
        assert_eq!(
            drain(&mut m),
            vec![Action::ReferToAgent(agent()), Action::Publish]
        );
        assert_eq!(m.state(), CallState::Ringing);
        assert_eq!(m.agent(), Some(&agent()));
        m.handle_refer_progress(t + ms(50), 100);
        assert!(drain(&mut m).is_empty(), "1xx is progress only");
        m.handle_refer_progress(t + ms(900), 200);
        assert_eq!(
            drain(&mut m),
            vec![
                Action::StopComfort,
                Action::HangupCaller,
                Action::Publish,
                Action::Release
            ]
        );
        assert_eq!(m.state(), CallState::Ended);
        assert!(m.transferred());
        assert_eq!(m.agent(), Some(&agent()), "the agent who got the call");
        assert_eq!(m.classification(), Some(&Classification::Verified(vec![])));
    }

    #[test]
    fn refused_refer_falls_back_to_ringing_the_agent() {
        let (mut m, t) = waiting_call(refer_config());
        m.handle_answer_request(t, agent());
        drain(&mut m);
        m.handle_refer_refused(t + ms(20));
        assert_eq!(
            drain(&mut m),
            vec![Action::RingAgent(agent()), Action::Publish]
        );
        assert_eq!(m.poll_timeout(), Some(t + ms(20) + Duration::from_secs(20)));
        m.handle_agent_answered(t + ms(700));
        assert_eq!(
            drain(&mut m),
            vec![Action::StopComfort, Action::Bridge, Action::Publish]
        );
        assert!(!m.transferred());
        // A late NOTIFY of the failed REFER changes nothing.
        m.handle_refer_progress(t + ms(800), 200);
        assert!(drain(&mut m).is_empty());
        assert_eq!(m.state(), CallState::Connected);
    }

    #[test]
    fn a_final_error_sipfrag_falls_back_to_ringing_the_agent() {
        let (mut m, t) = waiting_call(refer_config());
        m.handle_answer_request(t, agent());
        drain(&mut m);
        m.handle_refer_progress(t + ms(100), 180);
        m.handle_refer_progress(t + ms(3000), 486);
        assert_eq!(
            drain(&mut m),
            vec![Action::RingAgent(agent()), Action::Publish]
        );
    }

    #[test]
    fn no_final_notify_within_the_refer_timeout_falls_back() {
        let config = CallConfig {
            refer_timeout: Duration::from_secs(8),
            ..refer_config()
        };
        let (mut m, t) = waiting_call(config);
        m.handle_answer_request(t, agent());
        drain(&mut m);
        assert_eq!(m.poll_timeout(), Some(t + Duration::from_secs(8)));
        m.handle_refer_progress(t + ms(100), 100);
        m.handle_timeout(t + Duration::from_secs(8) - ms(1));
        assert!(drain(&mut m).is_empty());
        m.handle_timeout(t + Duration::from_secs(8));
        assert_eq!(
            drain(&mut m),
            vec![Action::RingAgent(agent()), Action::Publish]
        );
        assert_eq!(m.state(), CallState::Ringing);
    }

    #[test]
    fn overflow_refer_hands_over_or_says_goodbye() {
        let config = CallConfig {
            max_wait: Duration::from_secs(60),
            on_max_wait: MaxWaitPolicy::Overflow("sip:+31240000000@trunk".into()),
            refer_timeout: Duration::from_secs(10),
            ..Default::default()
        };
        let (mut m, t) = waiting_call(config.clone());
        m.handle_timeout(t + Duration::from_secs(60));
        assert_eq!(
            drain(&mut m),
            vec![
                Action::Transfer("sip:+31240000000@trunk".into()),
                Action::Publish
            ]
        );
        m.handle_refer_progress(t + Duration::from_secs(61), 200);
        assert_eq!(
            drain(&mut m),
            vec![
                Action::StopComfort,
                Action::HangupCaller,
                Action::Publish,
                Action::Release
            ]
        );
        assert!(m.transferred());
        assert_eq!(m.agent(), None);

        // Refused, failed, or silent: the goodbye signal, then BYE.
        for fail in 0..3 {
            let (mut m, t) = waiting_call(config.clone());
            let t1 = t + Duration::from_secs(60);
            m.handle_timeout(t1);
            drain(&mut m);
            match fail {
                0 => m.handle_refer_refused(t1 + ms(10)),
                1 => m.handle_refer_progress(t1 + ms(10), 503),
                _ => m.handle_timeout(t1 + Duration::from_secs(10)),
            }
            assert_eq!(
                drain(&mut m),
                vec![
                    Action::StopComfort,
                    Action::Goodbye,
                    Action::Publish,
                    Action::Release
                ],
                "failure {fail}"
            );
            assert!(!m.transferred());
        }
    }

    #[test]
    fn caller_hanging_up_during_a_refer_ends_the_call() {
        let (mut m, t) = waiting_call(refer_config());
        m.handle_answer_request(t, agent());
        drain(&mut m);
        m.handle_caller_gone(t + ms(300));
        assert_eq!(drain(&mut m), vec![Action::Publish, Action::Release]);
        m.handle_refer_progress(t + ms(400), 200);
        assert!(drain(&mut m).is_empty());
        assert!(!m.transferred());
    }
    #[test]
    fn a_classified_call_waits_for_an_agent_at_once_without_collecting_digits() {
        let now = Instant::now();
        let verified = Classification::Verified(Vec::new());
        let mut m = CallMachine::classified(CallConfig::default(), now, verified.clone());
        assert_eq!(m.state(), CallState::Waiting);
        assert_eq!(m.classification(), Some(&verified));
        let actions: Vec<Action> = std::iter::from_fn(|| m.poll_action()).collect();
        assert!(matches!(
            actions.as_slice(),
            [
                Action::StopDigitDetection,
                Action::StartComfort,
                Action::Publish
            ]
        ));
        // Digits change nothing; an agent's answer rings the agent as for any waiting call.
        m.handle_digit(now, DigitSource::Rfc4733, '1');
        assert_eq!(m.state(), CallState::Waiting);
        m.handle_answer_request(now, AgentId("anna".into()));
        assert_eq!(m.state(), CallState::Ringing);
    }
}
