//! The acceptance rule for a disclosure result — the one place that turns an IRMA session result into
//! verified attributes. Prior systems trusted any result; this one demands status DONE, proofStatus
//! VALID, every requested disjunction satisfied and every disclosed id on the tenant's allow-list.

use std::collections::BTreeMap;

use crate::pii::Pii;
use crate::tenant::{Condiscon, Tenant};

use super::{IrmaError, ProofStatus, SessionKind, SessionResult, SessionStatus};

/// An attribute that passed [`accept_result`], with the labels the agent sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedAttribute {
    /// Full IRMA attribute identifier, e.g. `pbdf.gemeente.personalData.bsn`.
    pub id: String,
    pub label_nl: String,
    pub label_en: String,
    /// The raw value; `None` when the credential has no value for it (`rawvalue: null`).
    pub value: Pii<Option<String>>,
}

/// What a session asked: the condiscon, and for a signature the message to be signed.
#[derive(Clone, Copy, Debug)]
pub enum Asked<'a> {
    /// A disclosure (`disclosing`).
    Disclosure(&'a Condiscon),
    /// A signature on `message` with the attributes of `disclose` (`signing`).
    Signature {
        disclose: &'a Condiscon,
        message: &'a str,
    },
}

impl Asked<'_> {
    fn condiscon(&self) -> &Condiscon {
        match self {
            Asked::Disclosure(d) | Asked::Signature { disclose: d, .. } => d,
        }
    }

    fn kind(&self) -> SessionKind {
        match self {
            Asked::Disclosure(_) => SessionKind::Disclosing,
            Asked::Signature { .. } => SessionKind::Signing,
        }
    }
}

/// Accept only status DONE, proofStatus VALID, a disclosure that satisfies every disjunction of the
/// tenant's request, and every disclosed id on the tenant's allow-list. Returns the attributes in
/// disclosure order, each id once.
pub fn accept_result(
    tenant: &Tenant,
    result: &SessionResult,
) -> Result<Vec<VerifiedAttribute>, IrmaError> {
    accept_session(tenant, Asked::Disclosure(&tenant.disclosure), result)
}

/// [`accept_result`] for any session the tenant asked: `asked` instead of the tenant's own
/// disclosure. A signature must be a `signing` result whose signed message is the one asked for.
pub fn accept_session(
    tenant: &Tenant,
    asked: Asked<'_>,
    result: &SessionResult,
) -> Result<Vec<VerifiedAttribute>, IrmaError> {
    if result.status != SessionStatus::Done {
        return Err(IrmaError::NotDone(result.status));
    }
    if result.error.is_some() {
        return Err(IrmaError::Invalid);
    }
    match result.proof_status {
        Some(ProofStatus::Valid) => {}
        Some(ProofStatus::Invalid | ProofStatus::InvalidTimestamp) | None => {
            return Err(IrmaError::Invalid)
        }
        Some(ProofStatus::Expired) => return Err(IrmaError::Expired),
        Some(ProofStatus::UnmatchedRequest) => return Err(IrmaError::UnmatchedRequest),
        Some(ProofStatus::MissingAttributes) => return Err(IrmaError::MissingAttributes),
    }
    if result.session_type != asked.kind().as_str() {
        return Err(IrmaError::UnmatchedRequest);
    }
    if let Asked::Signature { message, .. } = asked {
        let signed = result
            .signature
            .expose()
            .as_ref()
            .and_then(|s| s.get("message"))
            .and_then(|m| m.as_str());
        if signed != Some(message) {
            // No signature, or one on another text: not what the citizen was asked to sign.
            return Err(IrmaError::UnmatchedRequest);
        }
    }

    let mut values: BTreeMap<&str, &Option<String>> = BTreeMap::new();
    let mut verified = Vec::new();
    for attr in result.disclosed.iter().flatten() {
        let Some(allowed) = tenant.allowed(&attr.id) else {
            return Err(IrmaError::NotAllowed {
                attribute: attr.id.clone(),
            });
        };
        let value = attr.raw_value.expose();
        if let Some(previous) = values.insert(&attr.id, value) {
            if previous != value {
                // The same attribute with two values: the result contradicts itself.
                return Err(IrmaError::Invalid);
            }
            continue;
        }
        verified.push(VerifiedAttribute {
            id: attr.id.clone(),
            label_nl: allowed.label_nl.clone(),
            label_en: allowed.label_en.clone(),
            value: Pii::new(value.clone()),
        });
    }

    // Defence in depth: the server said VALID, but did the citizen disclose what we asked for?
    // Each disjunction needs one inner conjunction fully disclosed (an empty conjunction means optional).
    let satisfied = asked.condiscon().iter().all(|discon| {
        discon
            .iter()
            .any(|con| con.iter().all(|id| values.contains_key(id.as_str())))
    });
    if !satisfied {
        return Err(IrmaError::MissingAttributes);
    }
    Ok(verified)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::irma::{AttributeProofStatus, DisclosedAttribute, RequestorToken};

    const NAME: &str = "irma-demo.gemeente.personalData.fullname";
    const BSN: &str = "irma-demo.gemeente.personalData.bsn";

    fn attr(id: &str, value: Option<&str>) -> DisclosedAttribute {
        DisclosedAttribute {
            id: id.to_owned(),
            raw_value: Pii::new(value.map(str::to_owned)),
            value: Pii::new(None),
            status: if value.is_some() {
                AttributeProofStatus::Present
            } else {
                AttributeProofStatus::Null
            },
            issuance_time: Some(1_700_000_000),
            not_revoked: None,
        }
    }

    fn result(
        proof: Option<ProofStatus>,
        disclosed: Vec<Vec<DisclosedAttribute>>,
    ) -> SessionResult {
        SessionResult {
            token: RequestorToken::new("tok"),
            status: SessionStatus::Done,
            session_type: "disclosing".to_owned(),
            proof_status: proof,
            disclosed,
            error: None,
            signature: Pii::new(None),
        }
    }

    fn good() -> Vec<Vec<DisclosedAttribute>> {
        vec![
            vec![attr(NAME, Some("Jan de Vries"))],
            vec![attr(BSN, Some("999993653"))],
        ]
    }

    #[test]
    fn valid_result_gives_labelled_values() {
        let got =
            accept_result(&Tenant::demo(), &result(Some(ProofStatus::Valid), good())).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].label_nl, "Naam");
        assert_eq!(got[1].value.expose().as_deref(), Some("999993653"));
    }

    #[test]
    fn every_bad_proof_status_is_refused() {
        let t = Tenant::demo();
        for (p, want) in [
            (Some(ProofStatus::Invalid), "Invalid"),
            (Some(ProofStatus::InvalidTimestamp), "Invalid"),
            (None, "Invalid"),
            (Some(ProofStatus::Expired), "Expired"),
            (Some(ProofStatus::UnmatchedRequest), "UnmatchedRequest"),
            (Some(ProofStatus::MissingAttributes), "MissingAttributes"),
        ] {
            let err = accept_result(&t, &result(p, good())).unwrap_err();
            assert!(format!("{err:?}").starts_with(want), "{p:?} gave {err:?}");
        }
    }

    #[test]
    fn valid_but_incomplete_or_foreign_is_refused() {
        let t = Tenant::demo();
        let only_name = vec![vec![attr(NAME, Some("Jan de Vries"))]];
        assert!(matches!(
            accept_result(&t, &result(Some(ProofStatus::Valid), only_name)),
            Err(IrmaError::MissingAttributes)
        ));
        let mut extra = good();
        extra.push(vec![attr("pbdf.pbdf.email.email", Some("jan@example.org"))]);
        let err = accept_result(&t, &result(Some(ProofStatus::Valid), extra)).unwrap_err();
        assert!(
            matches!(&err, IrmaError::NotAllowed { attribute } if attribute == "pbdf.pbdf.email.email")
        );
        assert!(!err.to_string().contains("jan@example.org"));
    }

    #[test]
    fn null_raw_value_is_kept_as_none() {
        let disclosed = vec![vec![attr(NAME, None)], vec![attr(BSN, Some("999993653"))]];
        let got = accept_result(
            &Tenant::demo(),
            &result(Some(ProofStatus::Valid), disclosed),
        )
        .unwrap();
        assert_eq!(got[0].value.expose(), &None);
    }

    #[test]
    fn not_done_is_refused_even_with_valid_proof() {
        let mut r = result(Some(ProofStatus::Valid), good());
        r.status = SessionStatus::Connected;
        assert!(matches!(
            accept_result(&Tenant::demo(), &r),
            Err(IrmaError::NotDone(SessionStatus::Connected))
        ));
    }

    #[test]
    fn an_extra_request_is_judged_by_what_it_asked() {
        let t = Tenant::demo();
        let bsn_only = vec![vec![vec![BSN.to_owned()]]];
        let asked = Asked::Disclosure(&bsn_only);
        let r = result(
            Some(ProofStatus::Valid),
            vec![vec![attr(BSN, Some("999993653"))]],
        );
        let got = accept_session(&t, asked, &r).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].label_nl, "BSN");
        // The tenant's own disclosure asks for the name too: not met by this result.
        assert!(matches!(
            accept_result(&t, &r),
            Err(IrmaError::MissingAttributes)
        ));
        // A signature result is not a disclosure.
        let mut signed = r.clone();
        signed.session_type = "signing".into();
        assert!(matches!(
            accept_session(&t, asked, &signed),
            Err(IrmaError::UnmatchedRequest)
        ));
    }

    #[test]
    fn a_signature_must_be_on_the_message_asked() {
        let t = Tenant::demo();
        let name = vec![vec![vec![NAME.to_owned()]]];
        let asked = Asked::Signature {
            disclose: &name,
            message: "Ik ga akkoord.",
        };
        let mut r = result(
            Some(ProofStatus::Valid),
            vec![vec![attr(NAME, Some("Jan de Vries"))]],
        );
        r.session_type = "signing".into();
        assert!(
            matches!(
                accept_session(&t, asked, &r),
                Err(IrmaError::UnmatchedRequest)
            ),
            "no signed message"
        );
        r.signature = Pii::new(Some(serde_json::json!({"message": "Iets anders."})));
        assert!(matches!(
            accept_session(&t, asked, &r),
            Err(IrmaError::UnmatchedRequest)
        ));
        r.signature = Pii::new(Some(serde_json::json!({"message": "Ik ga akkoord."})));
        let got = accept_session(&t, asked, &r).unwrap();
        assert_eq!(got[0].value.expose().as_deref(), Some("Jan de Vries"));
        // Signed with an attribute off the allow-list: refused like a disclosure.
        r.disclosed
            .push(vec![attr("pbdf.pbdf.email.email", Some("x@example.org"))]);
        assert!(matches!(
            accept_session(&t, asked, &r),
            Err(IrmaError::NotAllowed { .. })
        ));
    }
}
