//! Test-only: what the unit tests of the call's sans-IO types share — the agent's phones as forks
//! (their INVITEs and answers), a caller waiting on a simulated clock, and [`CallSim`], the call
//! machine, the forks and the teardown joined as the call task joins them.

use super::agent_forks::{AgentForks, Fork, ForkEvent, ForkTransmit};
use super::agent_outcome::AgentLegFailure;
use super::machine::{Action, CallConfig, CallMachine, Classification};
use super::teardown::{AgentLegAt, Held, ReleaseStep, Teardown, TeardownAction};
use super::{CallState, UnverifiedReason};
use crate::tenant::AgentId;
use sip::endpoint::Target;
use sip::message::{HeaderName, Method, Request, Response, StatusCode};
use sip::transaction::{TimerConfig, Transport};
use std::time::{Duration, Instant};

/// How long the goodbye signal plays in these tests.
pub const GOODBYE: Duration = Duration::from_secs(3);

/// The INVITE of fork `n` to phone 192.0.2.`n`: its own Call-ID, as the call task makes them.
pub fn invite(n: u32) -> Request {
    let raw = format!(
        "INVITE sip:agent@192.0.2.{n}:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKf{n}\r\n\
         From: \"Veilig bellen\" <sip:anonymous@127.0.0.1:5060>;tag=ours{n}\r\nTo: <sip:agent@192.0.2.{n}:5060>\r\n\
         Call-ID: vb-1-{n}-00000000@127.0.0.1:5060\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n\
         Contact: <sip:veilig-bellen@127.0.0.1:5060>\r\nContent-Length: 0\r\n\r\n"
    );
    Request::parse(raw.into_bytes()).unwrap()
}

/// Fork `n`: transaction `n`, [`invite`]`(n)`, to 192.0.2.`n`:5060 over UDP.
pub fn fork(n: u32) -> Fork<u32> {
    Fork {
        tx: n,
        request: invite(n),
        target: Target {
            transport: Transport::Udp,
            addr: format!("192.0.2.{n}:5060").parse().unwrap(),
        },
    }
}

/// Phone `n`'s response with `status` to its INVITE (To tag `phone<n>`); a 2xx carries a Contact
/// and an SDP answer.
pub fn response(n: u32, status: u16) -> Response {
    let mut r = Response::for_request(&invite(n), StatusCode::new(status).unwrap(), None)
        .with_to_tag(&format!("phone{n}"));
    if (200..300).contains(&status) {
        r.headers
            .push(HeaderName::Contact, format!("<sip:agent@192.0.2.{n}:5060>"));
        r.set_body(Some("application/sdp"), b"v=0\r\n".to_vec());
    }
    r
}

/// What the forks send now, in order: (what, to whom) — a CANCEL names its fork's transaction, an
/// ACK or BYE the phone's address.
pub fn sent(forks: &mut AgentForks<u32>) -> Vec<(&'static str, String)> {
    std::iter::from_fn(|| forks.poll_transmit())
        .map(|t| match t {
            ForkTransmit::Cancel(tx) => ("CANCEL", tx.to_string()),
            ForkTransmit::Ack { request, target } => {
                assert_eq!(request.method, Method::Ack);
                ("ACK", target.addr.to_string())
            }
            ForkTransmit::Bye { request, target } => {
                assert_eq!(request.method, Method::Bye);
                ("BYE", target.addr.to_string())
            }
        })
        .collect()
}

/// One entry of [`sent`] or [`CallSim::wire`].
pub fn s(what: &'static str, who: &str) -> (&'static str, String) {
    (what, who.to_owned())
}

/// A call machine with `config` whose caller keyed an 8-digit code that turned out unknown: it
/// waits for an agent. Returns it and the simulated time it got there.
pub fn waiting_machine(config: CallConfig) -> (CallMachine, Instant) {
    let mut now = Instant::now();
    let mut machine = CallMachine::new(config, now);
    for d in "12345678".chars() {
        now += Duration::from_millis(150);
        machine.handle_digit(now, super::collect::DigitSource::Rfc4733, d);
    }
    machine.handle_lookup(
        now,
        Classification::Unverified(UnverifiedReason::UnknownCode),
    );
    assert_eq!(machine.state(), CallState::Waiting);
    (machine, now)
}

/// The call machine, the agent's forks and the teardown on one simulated clock, joined as the
/// call task joins them ([`CallSim::turn`]).
pub struct CallSim {
    pub now: Instant,
    pub machine: CallMachine,
    pub forks: AgentForks<u32>,
    pub teardown: Teardown,
    /// Where the agent leg is, as the call task knows it.
    pub agent: AgentLegAt,
    /// The phones a `RingAgent` rings (their fork numbers).
    phones: Vec<u32>,
    /// Everything sent, in order: the forks' CANCEL/ACK/BYE ([`sent`]), our BYE on the agent's
    /// connected leg (`("BYE", "agent")`) and on the caller's (`("BYE", "caller")`).
    pub wire: Vec<(&'static str, String)>,
    /// The agent legs that failed, as the machine reported them.
    pub failed: Vec<AgentLegFailure>,
}

impl CallSim {
    /// A caller waiting ([`waiting_machine`]) under `config`; a `RingAgent` rings `phones`.
    pub fn waiting(config: CallConfig, phones: &[u32]) -> CallSim {
        let (machine, now) = waiting_machine(config);
        let mut sim = CallSim {
            now,
            machine,
            forks: AgentForks::new(TimerConfig::default()),
            teardown: Teardown::new(),
            agent: AgentLegAt::None,
            phones: phones.to_vec(),
            wire: Vec::new(),
            failed: Vec::new(),
        };
        sim.turn();
        assert_eq!(sim.machine.state(), CallState::Waiting);
        sim
    }

    /// Agent `agent` clicks "Opnemen".
    pub fn answer(&mut self, agent: &str) {
        self.machine
            .handle_answer_request(self.now, AgentId(agent.into()));
        self.turn();
    }

    /// Moves the clock on by `by` and lets whatever is due happen.
    pub fn advance(&mut self, by: Duration) {
        self.now += by;
        if self.machine.poll_timeout().is_some_and(|t| t <= self.now) {
            self.machine.handle_timeout(self.now);
        }
        self.teardown.handle_timeout(self.now);
        self.turn();
    }

    /// Phone `tx` responds with `status` ([`response`]).
    pub fn respond(&mut self, tx: u32, status: u16) {
        self.forks
            .handle_response(self.now, tx, &response(tx, status));
        self.turn();
    }

    /// What the call task does after any input: the machine's actions, the forks' transmissions
    /// and events, the teardown's actions, until nothing is left.
    pub fn turn(&mut self) {
        loop {
            let mut busy = false;
            while let Some(action) = self.machine.poll_action() {
                busy = true;
                match action {
                    Action::RingAgent(_) => {
                        self.forks
                            .ring(self.phones.iter().map(|&n| fork(n)).collect(), false);
                        self.agent = AgentLegAt::Ringing;
                    }
                    Action::CancelAgent | Action::HangupAgent => self.hangup_agent(),
                    Action::AgentLegFailed(o) => self.failed.push(AgentLegFailure {
                        status: o.status,
                        reason: o.reason,
                    }),
                    Action::Goodbye => self.teardown.handle_goodbye(self.now, GOODBYE),
                    Action::HangupCaller => self.teardown.hangup_caller(self.now),
                    Action::Release => self.teardown.handle_release(self.now),
                    _ => {}
                }
            }
            self.wire.extend(sent(&mut self.forks));
            while let Some(event) = self.forks.poll_event() {
                busy = true;
                match event {
                    ForkEvent::Progress => self.machine.handle_agent_progress(self.now),
                    ForkEvent::Answered { .. } => {
                        self.agent = AgentLegAt::Connected;
                        self.machine.handle_agent_answered(self.now)
                    }
                    ForkEvent::Failed(why) => {
                        self.agent = AgentLegAt::None;
                        self.machine.handle_agent_failed(self.now, why)
                    }
                    ForkEvent::RetryPlain => {}
                }
            }
            while let Some(action) = self.teardown.poll_action() {
                busy = true;
                if action == TeardownAction::ByeCaller {
                    self.wire.push(s("BYE", "caller"));
                }
            }
            if !busy {
                break;
            }
        }
    }

    /// The call task hangs the agent leg up: BYE when connected, CANCEL while ringing.
    pub fn hangup_agent(&mut self) {
        match std::mem::replace(&mut self.agent, AgentLegAt::None) {
            AgentLegAt::Connected => self.wire.push(s("BYE", "agent")),
            AgentLegAt::Ringing => self.forks.cancel(),
            AgentLegAt::None => {}
        }
    }

    /// The release order for what the call holds now.
    pub fn release(self) -> Vec<ReleaseStep> {
        let held = Held {
            agent: self.agent,
            lookup_in_flight: false,
            classification: self.machine.classification(),
        };
        self.teardown.release(held)
    }
}
