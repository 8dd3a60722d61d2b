//! The call path: one state machine per call, from the trunk's INVITE to the agent's softphone.
//!
//! - [`agent_forks`]: the agent leg's parallel INVITEs: which phone won, CANCEL, ACK+BYE of strays.
//! - [`agent_outcome`]: why an agent leg did not connect (`agent_leg` in the call view).
//! - [`collect`]: merging RFC 4733, SIP INFO and in-band digits into the link code, with timeouts.
//! - [`config`]: the call flow's settings and routing table, shared by the manager and the tasks.
//! - [`registry`]: the calls the portal and the API see, and the event bus of state changes.
//! - [`direct`]: re-INVITEs that move a connected call's media end to end (`media = "direct"`).
//!   `direct/sync.rs` keeps it end to end when either leg re-INVITEs (hold, resume, a new port).
//! - [`hold`]: the comfort signal for a caller the agent put on hold (relayed calls).
//! - [`teardown`]: how a call ends: the caller's one BYE, the goodbye, the release order.
//! - [`pacing`]: when the next 20 ms frame of a signal we play is due.

pub mod agent_forks;
pub mod agent_outcome;
pub mod browser;
pub mod collect;
pub mod config;
pub mod direct;
pub mod hold;
pub mod machine;
pub mod manager;
pub mod pacing;
pub mod registry;
pub mod task;
pub mod teardown;
#[cfg(test)]
mod test_sim;

use serde::Serialize;
use std::fmt;

/// Our identifier of a call (not the SIP Call-ID, which the trunk chose). Safe to show and log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct CallId(pub u64);

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Where a call is, as the portal and the API show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallState {
    /// Answered; reading the link code.
    Collecting,
    /// Classified; the caller hears the comfort signal until an agent takes the call.
    Waiting,
    /// An agent asked for the call; their softphones are ringing.
    Ringing,
    /// Caller and agent are talking.
    Connected,
    /// Over. Listed for a while without attributes.
    Ended,
}

/// Why a call is not verified. Exactly one per unverified call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnverifiedReason {
    /// No digit arrived in time.
    NoCode,
    /// Fewer digits than a code has.
    IncompleteCode,
    /// The digits match no live link code.
    UnknownCode,
    /// The code existed but expired before the call.
    ExpiredCode,
    /// The code was already used by another call.
    UsedCode,
    /// The IRMA server failed, or its result was not acceptable.
    IrmaError,
    /// The calling number gave too many wrong codes lately; its code was not looked up (and, if
    /// valid, stays usable).
    TooManyWrongCodes,
    /// The code belongs to a disclosure of another mobile number than the calling one (caller-ID
    /// binding).
    CallerMismatch,
}

impl UnverifiedReason {
    pub fn as_str(self) -> &'static str {
        match self {
            UnverifiedReason::NoCode => "no_code",
            UnverifiedReason::IncompleteCode => "incomplete_code",
            UnverifiedReason::UnknownCode => "unknown_code",
            UnverifiedReason::ExpiredCode => "expired_code",
            UnverifiedReason::UsedCode => "used_code",
            UnverifiedReason::IrmaError => "irma_error",
            UnverifiedReason::TooManyWrongCodes => "too_many_wrong_codes",
            UnverifiedReason::CallerMismatch => "caller_mismatch",
        }
    }
}

/// Something an agent should know about a call besides its verification, shown next to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallWarning {
    /// Another call later presented this call's link code: someone else learned the citizen's
    /// code (a relayed Yivi session can leak it).
    CodeReused,
}

impl CallWarning {
    pub fn as_str(self) -> &'static str {
        match self {
            CallWarning::CodeReused => "code_reused",
        }
    }
}

impl fmt::Display for UnverifiedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
