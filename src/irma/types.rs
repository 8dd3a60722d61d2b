//! Wire types of the irmago requestor API (docs.yivi.app "api-irma-server"; irmago `server/api.go`,
//! `requests.go`, `verify.go`, `server/errors.go`): session package, status, session result, remote error.
//! Secrets (requestor token) and personal data (attribute values) never show in `Debug`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::pii::Pii;
use crate::tenant::Condiscon;

/// JSON-LD context of a disclosure session request.
pub const DISCLOSURE_CONTEXT: &str = "https://irma.app/ld/request/disclosure/v2";
/// JSON-LD context of a signature session request (irmago `SignatureRequest`).
pub const SIGNATURE_CONTEXT: &str = "https://irma.app/ld/request/signature/v2";
/// JSON-LD context of the signed message in a signature session's result (irmago `SignedMessage`).
pub const SIGNED_MESSAGE_CONTEXT: &str = "https://irma.app/ld/signature/v2";

/// The requestor token the IRMA server hands out at `POST /session`: whoever holds it can read the
/// session result, so it is a secret. `Debug` prints `[redacted]`; it is never sent to browsers.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RequestorToken(String);

impl RequestorToken {
    pub fn new(token: impl Into<String>) -> Self {
        RequestorToken(token.into())
    }

    /// The token itself, for storing it or building a request URL. Callers must not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RequestorToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RequestorToken([redacted])")
    }
}

/// Answer to `POST /session`: `{"sessionPtr":{"u":..,"irmaqr":"disclosing"},"token":..,"frontendRequest":{..}}`.
#[derive(Clone)]
pub struct StartedSession {
    /// Secret; keep it on the server.
    pub token: RequestorToken,
    /// What the QR / universal link encodes: `{"u": "<client API URL>", "irmaqr": "disclosing"}`.
    /// Safe to give to the browser.
    pub session_ptr: serde_json::Value,
    /// `{"authorization": .., "minProtocolVersion": "1.0", "maxProtocolVersion": "1.1"}` for
    /// yivi-frontend (absent on old servers). Safe to give to the browser that started the session.
    pub frontend_request: Option<serde_json::Value>,
}

impl fmt::Debug for StartedSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The session pointer and frontend authorization are not requestor secrets, but they let anyone
        // take over the citizen's session until it is scanned; keep them out of logs too.
        f.debug_struct("StartedSession")
            .field("token", &self.token)
            .field("session_ptr", &"[redacted]")
            .field(
                "frontend_request",
                &self.frontend_request.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

impl StartedSession {
    /// The client token: the last path segment of `sessionPtr.u`, the identifier the Yivi app uses.
    pub fn client_token(&self) -> Option<&str> {
        let u = self.session_ptr.get("u")?.as_str()?;
        let last = u.trim_end_matches('/').rsplit('/').next()?;
        (!last.is_empty()).then_some(last)
    }
}

/// The raw `POST /session` response body.
#[derive(Deserialize)]
pub(crate) struct SessionPackage {
    #[serde(rename = "sessionPtr")]
    pub session_ptr: serde_json::Value,
    pub token: String,
    #[serde(rename = "frontendRequest", default)]
    pub frontend_request: Option<serde_json::Value>,
}

/// Status of an IRMA session (irmago `server.Status`), serialized as `"INITIALIZED"` etc.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SessionStatus {
    /// Started, waiting for the app to scan.
    Initialized,
    /// The app scanned and the frontend must confirm a pairing code.
    Pairing,
    /// The app retrieved the request; the citizen is choosing.
    Connected,
    /// Cancelled by the citizen, the requestor or an error.
    Cancelled,
    /// Finished; the result (with its proofStatus) is available for 5 minutes.
    Done,
    /// Nobody scanned in time.
    Timeout,
}

impl SessionStatus {
    /// DONE, CANCELLED and TIMEOUT end a session; nothing follows them.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            SessionStatus::Done | SessionStatus::Cancelled | SessionStatus::Timeout
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Initialized => "INITIALIZED",
            SessionStatus::Pairing => "PAIRING",
            SessionStatus::Connected => "CONNECTED",
            SessionStatus::Cancelled => "CANCELLED",
            SessionStatus::Done => "DONE",
            SessionStatus::Timeout => "TIMEOUT",
        }
    }
}

impl fmt::Display for SessionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Verdict of the IRMA server on the disclosure proofs (irmago `irma.ProofStatus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProofStatus {
    Valid,
    Invalid,
    InvalidTimestamp,
    UnmatchedRequest,
    MissingAttributes,
    Expired,
}

/// Per-attribute status in a result (irmago `irma.AttributeProofStatus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AttributeProofStatus {
    /// Disclosed and requested.
    Present,
    /// Disclosed but not asked for.
    Extra,
    /// Disclosed, but the credential has no value for it (`rawvalue: null`).
    Null,
    /// Older servers: requested but not disclosed.
    Missing,
    /// Older servers: disclosed with a value other than the requested one.
    InvalidValue,
}

/// One disclosed attribute: `{"rawvalue":..,"value":{"":..,"en":..,"nl":..},"id":..,"status":..,
/// "issuancetime":..}`. `rawvalue` is `null` for an attribute the credential leaves empty.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DisclosedAttribute {
    /// Full attribute type identifier, e.g. `pbdf.gemeente.personalData.bsn`.
    pub id: String,
    #[serde(rename = "rawvalue", default, with = "pii_serde")]
    pub raw_value: Pii<Option<String>>,
    /// Translated values by language (`""`, `"en"`, `"nl"`); personal data.
    #[serde(default, with = "pii_serde")]
    pub value: Pii<Option<serde_json::Map<String, serde_json::Value>>>,
    pub status: AttributeProofStatus,
    /// Unix seconds (irmago `Timestamp`).
    #[serde(
        rename = "issuancetime",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub issuance_time: Option<i64>,
    #[serde(
        rename = "notrevoked",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub not_revoked: Option<bool>,
}

/// `GET /session/{token}/result` (irmago `server.SessionResult`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionResult {
    /// The requestor token again; secret.
    pub token: RequestorToken,
    pub status: SessionStatus,
    /// `"disclosing"`, `"signing"` or `"issuing"`.
    #[serde(rename = "type")]
    pub session_type: String,
    #[serde(
        rename = "proofStatus",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub proof_status: Option<ProofStatus>,
    /// One inner list per disjunction of the request (extra attributes after those). Go marshals a
    /// nil list as `null`; those arrive here as empty lists.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "nullable_lists"
    )]
    pub disclosed: Vec<Vec<DisclosedAttribute>>,
    /// Set when the session failed at the server (irmago `irma.RemoteError`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RemoteError>,
    /// A signature session's signed message (irmago `irma.SignedMessage`: `@context`, `signature`,
    /// `indices`, `nonce`, `context`, `message`, `timestamp`); its proofs hold the attributes, so
    /// personal data.
    #[serde(default, skip_serializing_if = "signature_absent", with = "pii_serde")]
    pub signature: Pii<Option<serde_json::Value>>,
}

fn signature_absent(signature: &Pii<Option<serde_json::Value>>) -> bool {
    signature.expose().is_none()
}

/// Error body of every failed irmago request: `{"status":400,"error":"SESSION_UNKNOWN",
/// "description":"Unknown or expired session","message":"","stacktrace":""}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteError {
    #[serde(default)]
    pub status: u16,
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub stacktrace: String,
}

/// The disclosure session request we POST. `augmentReturnUrl` is deliberately not a field: irmago
/// would append the requestor token to the `tel:` URL the app dials.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct DisclosureRequest<'a> {
    #[serde(rename = "@context")]
    pub context: &'static str,
    pub disclose: &'a Condiscon,
    #[serde(rename = "clientReturnUrl", skip_serializing_if = "Option::is_none")]
    pub client_return_url: Option<&'a str>,
}

/// The signature session request we POST (irmago `SignatureRequest`): sign `message` with the
/// attributes of `disclose`.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct SignatureRequest<'a> {
    #[serde(rename = "@context")]
    pub context: &'static str,
    pub message: &'a str,
    pub disclose: &'a Condiscon,
}

/// `disclosed` as Go writes it: `null`, or lists that may be `null` or hold `null` entries.
fn nullable_lists<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<Vec<DisclosedAttribute>>, D::Error> {
    let lists: Option<Vec<Option<Vec<Option<DisclosedAttribute>>>>> = Option::deserialize(d)?;
    Ok(lists
        .unwrap_or_default()
        .into_iter()
        .map(|list| list.unwrap_or_default().into_iter().flatten().collect())
        .collect())
}

/// Serde for [`Pii`] fields: the wire carries the plain value.
mod pii_serde {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::pii::Pii;

    pub fn serialize<S: Serializer, T: Serialize>(value: &Pii<T>, s: S) -> Result<S::Ok, S::Error> {
        value.expose().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Pii<T>, D::Error> {
        T::deserialize(d).map(Pii::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_strings_round_trip_as_irmago_spells_them() {
        for s in [
            SessionStatus::Initialized,
            SessionStatus::Pairing,
            SessionStatus::Connected,
            SessionStatus::Cancelled,
            SessionStatus::Done,
            SessionStatus::Timeout,
        ] {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
            assert_eq!(serde_json::from_str::<SessionStatus>(&json).unwrap(), s);
        }
        assert_eq!(
            serde_json::from_str::<ProofStatus>("\"MISSING_ATTRIBUTES\"").unwrap(),
            ProofStatus::MissingAttributes
        );
        assert_eq!(
            serde_json::from_str::<ProofStatus>("\"INVALID_TIMESTAMP\"").unwrap(),
            ProofStatus::InvalidTimestamp
        );
    }

    #[test]
    fn debug_hides_token_and_values() {
        let result: SessionResult = serde_json::from_str(
            r#"{"token":"KzxuWKwL5KGLKr4uerws","status":"DONE","type":"disclosing","proofStatus":"VALID",
            "disclosed":[[{"rawvalue":"999993653","value":{"":"999993653","en":"999993653","nl":"999993653"},
            "id":"irma-demo.gemeente.personalData.bsn","status":"PRESENT","issuancetime":1700000000}]]}"#,
        )
        .unwrap();
        let dbg = format!("{result:?}");
        assert!(!dbg.contains("999993653"), "{dbg}");
        assert!(!dbg.contains("KzxuWKwL5KGLKr4uerws"), "{dbg}");
        assert!(dbg.contains("irma-demo.gemeente.personalData.bsn"));
    }

    #[test]
    fn go_nil_lists_in_disclosed_read_as_empty() {
        let r: SessionResult = serde_json::from_str(
            r#"{"token":"t","status":"DONE","type":"disclosing","proofStatus":"MISSING_ATTRIBUTES",
            "disclosed":[null,[null,{"rawvalue":null,"id":"a.b.c.d","status":"NULL"}]]}"#,
        )
        .unwrap();
        assert_eq!(r.disclosed.len(), 2);
        assert!(r.disclosed[0].is_empty());
        assert_eq!(r.disclosed[1].len(), 1);
        let r: SessionResult = serde_json::from_str(
            r#"{"token":"t","status":"CANCELLED","type":"disclosing","disclosed":null}"#,
        )
        .unwrap();
        assert!(r.disclosed.is_empty());
    }

    #[test]
    fn client_token_is_last_segment_of_u() {
        let s = StartedSession {
            token: RequestorToken::new("t"),
            session_ptr: serde_json::json!({"u": "https://irma.example/irma/session/ysDohpoySavbHAUDjmpz", "irmaqr": "disclosing"}),
            frontend_request: None,
        };
        assert_eq!(s.client_token(), Some("ysDohpoySavbHAUDjmpz"));
    }
}
