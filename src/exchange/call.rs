//! One call the municipality's own exchange answered (the design note's option 1), as a sans-IO
//! state machine: what the exchange is told, what the agents see, and when the call ends.
//!
//! The exchange already read the code and we already classified the call when this type is
//! made, so it starts `Waiting` for an agent. From there:
//!
//! - an agent takes it ([`ExchangeCall::handle_answer`]) → it shows as taken by that agent, and
//!   the exchange is told `answered` with where to route the caller (`route_to`: the agent's
//!   extension, else the call's `forward_to`, else the agent's SIP username);
//! - the agent (or the API token holder, or a shutdown) hangs up ([`ExchangeCall::handle_hangup`])
//!   → the exchange is told `hangup`, and the call ends (`ended`, reason `hangup`);
//! - the exchange reports the end ([`ExchangeCall::handle_ended`]) → `ended`, reason `exchange`;
//! - the longest a call may last passes ([`ExchangeCall::handle_timeout`]) → `ended`, reason
//!   `max_duration`: personal data never outlives a call whose end nobody reports.
//!
//! Every end releases the call ([`Output::Release`]): its attributes and calling number leave
//! memory and the store. Nothing happens after the end.
//!
//! Polling order, after each `handle_*`: drain [`ExchangeCall::poll_output`] until `None`, then
//! sleep until [`ExchangeCall::poll_timeout`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::call::UnverifiedReason;
use crate::tenant::AgentId;

/// What the exchange is told, in order, on `GET /api/v1/pbx/calls/{id}/events` (the JSON of each
/// server-sent event, named by its `event` field).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ExchangeEvent {
    /// The call is listed for the agents; nobody took it yet.
    Waiting {
        verified: bool,
        reason: Option<UnverifiedReason>,
    },
    /// An agent took the call: route the caller to `route_to`.
    Answered { agent: String, route_to: String },
    /// Our side hung up (the agent in the portal): hang up the caller.
    Hangup,
    /// The call is over on our side; nothing follows.
    Ended { reason: EndReason },
}

/// Why an exchange call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The exchange reported it (`POST /api/v1/pbx/calls/{id}/ended`).
    Exchange,
    /// Hung up on our side: by the agent, the API token holder, or a shutdown.
    Hangup,
    /// Nobody reported the end within the longest a call may last.
    MaxDuration,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Exchange => "exchange",
            EndReason::Hangup => "hangup",
            EndReason::MaxDuration => "max_duration",
        }
    }
}

/// Where an agent is reached at the municipality's exchange.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentRoute {
    /// `tenants.agents[].extension`, if configured.
    pub extension: Option<String>,
    /// The agent's SIP username: the last resort.
    pub sip_username: String,
}

/// What the driver does for the machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Tell the exchange (append to the call's event stream).
    Tell(ExchangeEvent),
    /// Show the call as taken by this agent (state `connected`).
    ShowTaken(AgentId),
    /// The call is over: end it in the registry, release its code's binding, forget it.
    Release(EndReason),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    Waiting,
    Taken,
    Ended,
}

/// One exchange call; see the module docs.
#[derive(Debug)]
pub struct ExchangeCall {
    state: State,
    /// The exchange's own forwarding number for the call, if it gave one.
    forward_to: Option<String>,
    /// The call ends here at the latest.
    ends_at: Instant,
    outputs: VecDeque<Output>,
}

impl ExchangeCall {
    /// A call classified `verified` (or not, for `reason`) at `now`, lasting at most
    /// `max_duration`. Tells the exchange it waits.
    pub fn new(
        now: Instant,
        verified: bool,
        reason: Option<UnverifiedReason>,
        forward_to: Option<String>,
        max_duration: Duration,
    ) -> ExchangeCall {
        let mut outputs = VecDeque::new();
        outputs.push_back(Output::Tell(ExchangeEvent::Waiting { verified, reason }));
        ExchangeCall {
            state: State::Waiting,
            forward_to,
            ends_at: now + max_duration,
            outputs,
        }
    }

    /// `agent` took the call (the registry already decided among racing agents). Ignored unless
    /// the call waits.
    pub fn handle_answer(&mut self, _now: Instant, agent: AgentId, route: AgentRoute) {
        if self.state != State::Waiting {
            return;
        }
        self.state = State::Taken;
        let route_to = route
            .extension
            .or_else(|| self.forward_to.clone())
            .unwrap_or(route.sip_username);
        self.outputs.push_back(Output::ShowTaken(agent.clone()));
        self.outputs
            .push_back(Output::Tell(ExchangeEvent::Answered {
                agent: agent.0,
                route_to,
            }));
    }

    /// Our side hung up.
    pub fn handle_hangup(&mut self, _now: Instant) {
        if self.state == State::Ended {
            return;
        }
        self.outputs.push_back(Output::Tell(ExchangeEvent::Hangup));
        self.end(EndReason::Hangup);
    }

    /// The exchange reported the end.
    pub fn handle_ended(&mut self, _now: Instant) {
        if self.state != State::Ended {
            self.end(EndReason::Exchange);
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state != State::Ended && now >= self.ends_at {
            self.end(EndReason::MaxDuration);
        }
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When to call [`Self::handle_timeout`]; `None` once ended.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (self.state != State::Ended).then_some(self.ends_at)
    }

    pub fn is_ended(&self) -> bool {
        self.state == State::Ended
    }

    fn end(&mut self, reason: EndReason) {
        self.state = State::Ended;
        self.outputs
            .push_back(Output::Tell(ExchangeEvent::Ended { reason }));
        self.outputs.push_back(Output::Release(reason));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn drain(call: &mut ExchangeCall) -> Vec<Output> {
        std::iter::from_fn(|| call.poll_output()).collect()
    }

    fn route(extension: Option<&str>) -> AgentRoute {
        AgentRoute {
            extension: extension.map(str::to_owned),
            sip_username: "jan".into(),
        }
    }

    fn answered(route_to: &str) -> Output {
        Output::Tell(ExchangeEvent::Answered {
            agent: "jan".into(),
            route_to: route_to.into(),
        })
    }

    #[test]
    fn a_new_call_tells_the_exchange_it_waits() {
        let t0 = Instant::now();
        let mut call =
            ExchangeCall::new(t0, false, Some(UnverifiedReason::UnknownCode), None, HOUR);
        assert_eq!(
            drain(&mut call),
            vec![Output::Tell(ExchangeEvent::Waiting {
                verified: false,
                reason: Some(UnverifiedReason::UnknownCode)
            })]
        );
        assert_eq!(call.poll_timeout(), Some(t0 + HOUR));
    }

    #[test]
    fn route_to_is_the_extension_then_forward_to_then_the_sip_username() {
        let t0 = Instant::now();
        let cases = [
            (Some("201"), Some("+31263770001"), "201"),
            (None, Some("+31263770001"), "+31263770001"),
            (None, None, "jan"),
            (Some("sip:jan@pbx.arnhem.nl"), None, "sip:jan@pbx.arnhem.nl"),
        ];
        for (extension, forward_to, expected) in cases {
            let mut call = ExchangeCall::new(t0, true, None, forward_to.map(str::to_owned), HOUR);
            drain(&mut call);
            call.handle_answer(t0, AgentId("jan".into()), route(extension));
            assert_eq!(
                drain(&mut call),
                vec![Output::ShowTaken(AgentId("jan".into())), answered(expected)],
                "{extension:?} {forward_to:?}"
            );
        }
    }

    #[test]
    fn a_taken_call_is_not_taken_again() {
        let t0 = Instant::now();
        let mut call = ExchangeCall::new(t0, true, None, None, HOUR);
        call.handle_answer(t0, AgentId("jan".into()), route(None));
        drain(&mut call);
        call.handle_answer(t0, AgentId("piet".into()), route(None));
        assert_eq!(drain(&mut call), vec![]);
    }

    #[test]
    fn an_agent_hangup_tells_the_exchange_then_ends_the_call() {
        let t0 = Instant::now();
        let mut call = ExchangeCall::new(t0, true, None, None, HOUR);
        call.handle_answer(t0, AgentId("jan".into()), route(Some("201")));
        drain(&mut call);
        call.handle_hangup(t0);
        assert_eq!(
            drain(&mut call),
            vec![
                Output::Tell(ExchangeEvent::Hangup),
                Output::Tell(ExchangeEvent::Ended {
                    reason: EndReason::Hangup
                }),
                Output::Release(EndReason::Hangup),
            ]
        );
        assert!(call.is_ended());
        assert_eq!(call.poll_timeout(), None);
    }

    #[test]
    fn the_end_comes_once_whoever_reports_it() {
        let t0 = Instant::now();
        let mut call = ExchangeCall::new(t0, false, Some(UnverifiedReason::NoCode), None, HOUR);
        drain(&mut call);
        call.handle_ended(t0);
        assert_eq!(
            drain(&mut call),
            vec![
                Output::Tell(ExchangeEvent::Ended {
                    reason: EndReason::Exchange
                }),
                Output::Release(EndReason::Exchange),
            ]
        );
        call.handle_ended(t0);
        call.handle_hangup(t0);
        call.handle_timeout(t0 + 2 * HOUR);
        call.handle_answer(t0, AgentId("jan".into()), route(None));
        assert_eq!(drain(&mut call), vec![], "nothing after the end");
    }

    #[test]
    fn a_call_nobody_ends_ends_at_its_longest() {
        let t0 = Instant::now();
        let mut call = ExchangeCall::new(t0, true, None, None, HOUR);
        call.handle_answer(t0, AgentId("jan".into()), route(None));
        drain(&mut call);
        call.handle_timeout(t0 + HOUR - Duration::from_millis(1));
        assert_eq!(drain(&mut call), vec![]);
        call.handle_timeout(t0 + HOUR);
        assert_eq!(
            drain(&mut call),
            vec![
                Output::Tell(ExchangeEvent::Ended {
                    reason: EndReason::MaxDuration
                }),
                Output::Release(EndReason::MaxDuration),
            ]
        );
    }

    #[test]
    fn events_have_the_documented_json() {
        let json = |e: ExchangeEvent| serde_json::to_value(e).unwrap();
        assert_eq!(
            json(ExchangeEvent::Waiting {
                verified: false,
                reason: Some(UnverifiedReason::UsedCode)
            }),
            serde_json::json!({"event": "waiting", "verified": false, "reason": "used_code"})
        );
        assert_eq!(
            json(ExchangeEvent::Answered {
                agent: "jan".into(),
                route_to: "201".into()
            }),
            serde_json::json!({"event": "answered", "agent": "jan", "route_to": "201"})
        );
        assert_eq!(
            json(ExchangeEvent::Hangup),
            serde_json::json!({"event": "hangup"})
        );
        assert_eq!(
            json(ExchangeEvent::Ended {
                reason: EndReason::MaxDuration
            }),
            serde_json::json!({"event": "ended", "reason": "max_duration"})
        );
    }
}
