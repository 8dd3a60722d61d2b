//! How an agent leg that did not connect ended: what the call view shows as `agent_leg` and the
//! INFO log records, so the agent learns why their phone did not ring or did not take the call.
//!
//! The reason comes from the phone's final response (RFC 3261 §21: 406/488/606 is no common codec
//! or security, 486/600 busy, 603 declined, 408/480 no answer, 404/410/604 no such phone) or from
//! what happened instead: our ring timeout, no response at all (no registered phone, a transport
//! error, the INVITE transaction timing out, or a ring timeout before any provisional response), a
//! 2xx we could not use, or a failure on our side. When the agent has several phones (forks), the
//! most telling failure is shown ([`AgentLegFailure::more_telling`]).
//!
//! A caller who hangs up while the phone rings is not a refusal: the machine records nothing then.

use crate::tenant::AgentId;
use serde::Serialize;
use std::fmt;

/// Why the agent's phone did not take the call, as the API names it (`reason` in `agent_leg`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentLegReason {
    /// 406, 488 or 606: the phone shares no codec (or no media security) with our offer.
    NotAcceptable,
    /// 486 or 600: the phone is in another call, or set to busy.
    Busy,
    /// 603: someone declined the call on the phone.
    Declined,
    /// The phone rang until our ring timeout, or answered 408/480.
    NoAnswer,
    /// No registered phone, a transport error, no response at all (the INVITE transaction or our
    /// ring timeout ran out before any provisional response), or 404/410/604.
    Unreachable,
    /// Any other final error response (3xx we do not follow, other 4xx–6xx).
    Refused,
    /// The phone answered with a 2xx we could not make a dialog of.
    BadAnswer,
    /// Our side failed (no free RTP port): the phone was never called.
    ServerError,
}

impl AgentLegReason {
    /// Every reason, in declaration order (the tests that check each has a name and words).
    #[cfg(test)]
    pub(crate) const ALL: [AgentLegReason; 8] = [
        AgentLegReason::NotAcceptable,
        AgentLegReason::Busy,
        AgentLegReason::Declined,
        AgentLegReason::NoAnswer,
        AgentLegReason::Unreachable,
        AgentLegReason::Refused,
        AgentLegReason::BadAnswer,
        AgentLegReason::ServerError,
    ];

    /// The snake_case name, as in the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentLegReason::NotAcceptable => "not_acceptable",
            AgentLegReason::Busy => "busy",
            AgentLegReason::Declined => "declined",
            AgentLegReason::NoAnswer => "no_answer",
            AgentLegReason::Unreachable => "unreachable",
            AgentLegReason::Refused => "refused",
            AgentLegReason::BadAnswer => "bad_answer",
            AgentLegReason::ServerError => "server_error",
        }
    }

    /// The reason a final non-2xx response `status` gives.
    pub fn for_status(status: u16) -> AgentLegReason {
        match status {
            406 | 488 | 606 => AgentLegReason::NotAcceptable,
            486 | 600 => AgentLegReason::Busy,
            603 => AgentLegReason::Declined,
            408 | 480 => AgentLegReason::NoAnswer,
            404 | 410 | 604 => AgentLegReason::Unreachable,
            _ => AgentLegReason::Refused,
        }
    }

    /// Order among the forks' failures: a person's decision over the phone's, over silence.
    fn weight(self) -> u8 {
        match self {
            AgentLegReason::Declined => 7,
            AgentLegReason::Busy => 6,
            AgentLegReason::NotAcceptable => 5,
            AgentLegReason::NoAnswer => 4,
            AgentLegReason::Refused => 3,
            AgentLegReason::BadAnswer => 2,
            AgentLegReason::Unreachable => 1,
            AgentLegReason::ServerError => 0,
        }
    }
}

/// How one INVITE to an agent's phone (or the whole agent leg) failed, as the call task saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AgentLegFailure {
    /// The phone's final response, if one came.
    pub status: Option<u16>,
    pub reason: AgentLegReason,
}

impl fmt::Display for AgentLegReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AgentLegFailure {
    /// The phone answered with final non-2xx `status`.
    pub fn response(status: u16) -> Self {
        AgentLegFailure {
            status: Some(status),
            reason: AgentLegReason::for_status(status),
        }
    }

    /// Our ring timeout ran out while the phone rang.
    pub fn no_answer() -> Self {
        Self::without_response(AgentLegReason::NoAnswer)
    }

    /// No phone answered at all: none registered, a transport error, or no response in time.
    pub fn unreachable() -> Self {
        Self::without_response(AgentLegReason::Unreachable)
    }

    /// Our side could not call the phone.
    pub fn server_error() -> Self {
        Self::without_response(AgentLegReason::ServerError)
    }

    /// The phone's 2xx (`status`) could not become a dialog.
    pub fn bad_answer(status: u16) -> Self {
        AgentLegFailure {
            status: Some(status),
            reason: AgentLegReason::BadAnswer,
        }
    }

    fn without_response(reason: AgentLegReason) -> Self {
        AgentLegFailure {
            status: None,
            reason,
        }
    }

    /// Of two forks' failures, the one to show: a 6xx (the user declined everywhere, RFC 3261
    /// §16.7) first, then by reason: declined, busy, not_acceptable, no_answer, refused,
    /// bad_answer, unreachable. On a tie, `self` (the earlier one).
    pub fn more_telling(self, other: AgentLegFailure) -> AgentLegFailure {
        let rank = |f: &AgentLegFailure| {
            let global = f.status.is_some_and(|s| (600..700).contains(&s));
            (global, f.reason.weight())
        };
        if rank(&other) > rank(&self) {
            other
        } else {
            self
        }
    }

    /// The outcome of `agent`'s leg.
    pub fn of(self, agent: AgentId) -> AgentLegOutcome {
        AgentLegOutcome {
            agent,
            status: self.status,
            reason: self.reason,
        }
    }
}

/// The last agent leg of a call that did not connect: whose phone, its SIP status (`None` when no
/// final response came), and why. Shown until the next agent leg is tried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentLegOutcome {
    pub agent: AgentId,
    pub status: Option<u16>,
    pub reason: AgentLegReason,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_final_status_maps_to_the_reason_the_issue_names() {
        use AgentLegReason as R;
        let cases = [
            (406, R::NotAcceptable),
            (488, R::NotAcceptable),
            (606, R::NotAcceptable),
            (486, R::Busy),
            (600, R::Busy),
            (603, R::Declined),
            (408, R::NoAnswer),
            (480, R::NoAnswer),
            (404, R::Unreachable),
            (410, R::Unreachable),
            (604, R::Unreachable),
            (302, R::Refused),
            (403, R::Refused),
            (415, R::Refused),
            (487, R::Refused),
            (500, R::Refused),
            (503, R::Refused),
            (699, R::Refused),
        ];
        for (status, reason) in cases {
            assert_eq!(AgentLegReason::for_status(status), reason, "{status}");
            let f = AgentLegFailure::response(status);
            assert_eq!((f.status, f.reason), (Some(status), reason));
        }
        assert_eq!(AgentLegFailure::no_answer().status, None);
        assert_eq!(AgentLegFailure::unreachable().status, None);
        assert_eq!(AgentLegFailure::server_error().status, None);
        assert_eq!(
            AgentLegFailure::bad_answer(200),
            AgentLegFailure {
                status: Some(200),
                reason: R::BadAnswer
            }
        );
    }

    #[test]
    fn the_names_are_the_json_names() {
        use AgentLegReason as R;
        for r in R::ALL {
            assert_eq!(
                serde_json::to_value(r).unwrap(),
                serde_json::Value::from(r.as_str())
            );
        }
        assert_eq!(R::NotAcceptable.as_str(), "not_acceptable");
        assert_eq!(R::NoAnswer.as_str(), "no_answer");
    }

    #[test]
    fn of_several_phones_the_most_telling_failure_is_shown() {
        let r = AgentLegFailure::response;
        let busy_desk = r(486);
        let codec_soft = r(488);
        assert_eq!(busy_desk.more_telling(codec_soft), busy_desk);
        assert_eq!(codec_soft.more_telling(busy_desk), busy_desk);
        // A phone that answered says more than one that never did.
        let silent = AgentLegFailure::unreachable();
        assert_eq!(silent.more_telling(codec_soft), codec_soft);
        assert_eq!(codec_soft.more_telling(silent), codec_soft);
        assert_eq!(silent.more_telling(r(500)), r(500));
        // A 6xx is global: it wins even over a 486 elsewhere.
        assert_eq!(busy_desk.more_telling(r(606)), r(606));
        assert_eq!(r(603).more_telling(r(600)), r(603));
        // Ties keep the first.
        assert_eq!(r(406).more_telling(r(488)), r(406));
        let folded = [silent, codec_soft, r(480)]
            .into_iter()
            .reduce(AgentLegFailure::more_telling);
        assert_eq!(folded, Some(codec_soft));
    }
}
