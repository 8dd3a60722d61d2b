//! An extra request as the agent's card shows it ([`ExtraRequestView`], one per request in
//! [`CallView::requests`](crate::call::registry::CallView::requests)), and its life:
//! [`RequestState`] moves only forward, from `sent` through `shown` to one final state.

use std::time::SystemTime;

use serde::Serialize;

use crate::call::registry::ShownAttribute;
use crate::pii::Pii;
use crate::tenant::AgentId;

/// Where an extra request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    /// The Yivi session runs and was handed to the citizen's page; the page has not shown it yet.
    Sent,
    /// The citizen's page shows the Yivi QR code / app link.
    Shown,
    /// The citizen's page is gone (or there never was one): the request did not reach them.
    Unreachable,
    /// Disclosed (or signed) and accepted: the new attributes are on the card.
    Done,
    /// The citizen declined, the agent asked something else instead, or the call ended first.
    Cancelled,
    /// Nobody answered in time.
    Expired,
    /// Answered, but not acceptable (see the reason).
    Refused,
}

impl RequestState {
    /// Whether nothing follows this state.
    pub fn is_final(self) -> bool {
        !matches!(self, RequestState::Sent | RequestState::Shown)
    }

    /// `self` after `next`, when that is a step forward: a final state never changes, and a shown
    /// request is never "sent" again.
    pub fn advance(self, next: RequestState) -> Option<RequestState> {
        match (self, next) {
            (from, _) if from.is_final() => None,
            (RequestState::Shown, RequestState::Sent) => None,
            (from, to) if from == to => None,
            (_, to) => Some(to),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Sent => "sent",
            RequestState::Shown => "shown",
            RequestState::Unreachable => "unreachable",
            RequestState::Done => "done",
            RequestState::Cancelled => "cancelled",
            RequestState::Expired => "expired",
            RequestState::Refused => "refused",
        }
    }
}

/// Why a request ended as it did, when there is more to say than its state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestReason {
    /// `unreachable`: the citizen's page stopped asking for news.
    PageClosed,
    /// `unreachable`: the call has no page to reach (its code came from no page we know, or the
    /// browser's data channel closed).
    NoPage,
    /// `cancelled`: the citizen declined in the Yivi app.
    Declined,
    /// `cancelled`: the agent asked for something else before this was answered.
    Replaced,
    /// `cancelled`: the call ended before the answer.
    CallEnded,
    /// `refused`: the proof is invalid.
    InvalidProof,
    /// `refused`: a credential used has expired.
    CredentialExpired,
    /// `refused`: not all that was asked was disclosed.
    MissingAttributes,
    /// `refused`: the answer belongs to another request (or signs another message).
    UnmatchedRequest,
    /// `refused`: an attribute is not on the municipality's allow-list.
    NotAllowed,
    /// `refused`: the IRMA server's answer could not be read or checked.
    IrmaError,
}

impl RequestReason {
    /// Why a result was not accepted.
    pub fn of_refusal(e: &crate::irma::IrmaError) -> RequestReason {
        use crate::irma::IrmaError;
        match e {
            IrmaError::Invalid => RequestReason::InvalidProof,
            IrmaError::Expired => RequestReason::CredentialExpired,
            IrmaError::MissingAttributes => RequestReason::MissingAttributes,
            IrmaError::UnmatchedRequest => RequestReason::UnmatchedRequest,
            IrmaError::NotAllowed { .. } => RequestReason::NotAllowed,
            _ => RequestReason::IrmaError,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RequestReason::PageClosed => "page_closed",
            RequestReason::NoPage => "no_page",
            RequestReason::Declined => "declined",
            RequestReason::Replaced => "replaced",
            RequestReason::CallEnded => "call_ended",
            RequestReason::InvalidProof => "invalid_proof",
            RequestReason::CredentialExpired => "credential_expired",
            RequestReason::MissingAttributes => "missing_attributes",
            RequestReason::UnmatchedRequest => "unmatched_request",
            RequestReason::NotAllowed => "not_allowed",
            RequestReason::IrmaError => "irma_error",
        }
    }
}

/// A signature the citizen made during the call.
#[derive(Clone, Debug, PartialEq)]
pub struct SignedView {
    /// The message signed (the tenant's configured text; the result was checked to sign it).
    pub message: String,
    /// irmago's signed message (`@context`, `signature`, `indices`, `nonce`, `context`, `message`,
    /// `timestamp`), for the municipality to keep and verify later. Its proofs hold the
    /// attributes: personal data.
    pub signed: Pii<serde_json::Value>,
}

/// One extra request of a call, as the agent sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct ExtraRequestView {
    /// The request's number within its call, from 1.
    pub seq: u32,
    /// Its id in the tenant's configuration (`[[tenants.extra_requests]]`).
    pub request: String,
    /// Its Dutch label (the API gives the English one with `?lang=en`).
    pub label: String,
    /// A signature rather than a disclosure.
    pub sign: bool,
    pub state: RequestState,
    pub reason: Option<RequestReason>,
    /// Who asked (`None`: the API's bearer token).
    pub agent: Option<AgentId>,
    pub asked_at: SystemTime,
    /// When it reached its final state.
    pub ended_at: Option<SystemTime>,
    /// What the citizen disclosed (or signed with), once accepted; only while the call lasts.
    pub attributes: Vec<ShownAttribute>,
    /// A signature's result, once accepted; only while the call lasts.
    pub signature: Option<SignedView>,
}

impl ExtraRequestView {
    /// Drops what the citizen disclosed or signed (the call ended). The request's own facts stay.
    pub fn forget_personal_data(&mut self) {
        self.attributes.clear();
        self.signature = None;
    }

    /// Moves to `state` (with `reason`) at `now` when that is a step forward; whether it was.
    pub fn advance(
        &mut self,
        state: RequestState,
        reason: Option<RequestReason>,
        now: SystemTime,
    ) -> bool {
        let Some(next) = self.state.advance(state) else {
            return false;
        };
        self.state = next;
        self.reason = reason;
        if next.is_final() {
            self.ended_at = Some(now);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_only_move_forward() {
        use RequestState::*;
        assert_eq!(Sent.advance(Shown), Some(Shown));
        assert_eq!(Sent.advance(Done), Some(Done));
        assert_eq!(Shown.advance(Sent), None);
        assert_eq!(Shown.advance(Shown), None);
        for last in [Unreachable, Done, Cancelled, Expired, Refused] {
            assert!(last.is_final());
            for next in [Sent, Shown, Done, Cancelled, Refused] {
                assert_eq!(last.advance(next), None, "{last:?} → {next:?}");
            }
        }
    }

    #[test]
    fn the_end_drops_what_was_disclosed_and_keeps_the_facts() {
        let mut view = ExtraRequestView {
            seq: 1,
            request: "adres".into(),
            label: "Adres".into(),
            sign: true,
            state: RequestState::Sent,
            reason: None,
            agent: Some(AgentId("jan".into())),
            asked_at: SystemTime::UNIX_EPOCH,
            ended_at: None,
            attributes: Vec::new(),
            signature: None,
        };
        assert!(view.advance(RequestState::Done, None, SystemTime::UNIX_EPOCH));
        view.attributes.push(ShownAttribute {
            id: "a.b.c.d".into(),
            label: "Straat".into(),
            value: Pii::new(Some("Voorbeeldstraat".into())),
        });
        view.signature = Some(SignedView {
            message: "Akkoord".into(),
            signed: Pii::new(serde_json::json!({"message": "Akkoord"})),
        });
        assert!(!view.advance(RequestState::Cancelled, None, SystemTime::UNIX_EPOCH));
        view.forget_personal_data();
        assert!(view.attributes.is_empty() && view.signature.is_none());
        assert_eq!((view.state, view.seq), (RequestState::Done, 1));
        assert_eq!(view.ended_at, Some(SystemTime::UNIX_EPOCH));
    }
}
