//! IRMA server **simulator** for `veilig-bellen demo` and tests — NOT an IRMA server: it checks no
//! cryptography and trusts whatever the "app" claims. It speaks irmago's requestor API (`POST /session`,
//! `GET /session/{token}/status|statusevents|result`, `DELETE /session/{token}`) with irmago's JSON
//! shapes, status codes and error bodies (irmago `server/errors.go`), token authentication and session
//! lifetimes, the client-API status endpoints yivi-frontend follows, and a stand-in for the Yivi app:
//! `POST /session/{clientToken}/disclose`. Every response carries [`SIMULATOR_HEADER`].
//!
//! Time is the wall clock plus an offset that tests move with [`Simulator::advance_clock`]: a session
//! nobody scans for `session_lifetime` (5 min) becomes TIMEOUT; a finished session is forgotten
//! `result_lifetime` (5 min) after its end (SESSION_UNKNOWN), as irmago does.

pub mod dial;
mod http;
mod page;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rand::distr::{Alphanumeric, SampleString};
use tokio::sync::broadcast;

pub use http::simulator_router;

use super::{
    AttributeProofStatus, DisclosedAttribute, ProofStatus, RequestorToken, SessionResult,
    SessionStatus,
};
use crate::pii::Pii;
use crate::tenant::Condiscon;

/// Header on every simulator response, so nobody mistakes it for an IRMA server.
pub const SIMULATOR_HEADER: (&str, &str) = (
    "x-irma-simulator",
    "NOT an IRMA server: veilig-bellen simulator, verifies nothing",
);

/// Most sessions held at once; beyond that `POST /session` answers 429.
const MAX_SESSIONS: usize = 10_000;
/// Status changes buffered per subscriber; a session changes status at most three times.
const STATUS_CHANNEL: usize = 8;

/// How the simulator is reached and how strict it is.
#[derive(Clone)]
pub struct SimulatorConfig {
    /// Public base URL of the nested router, e.g. `http://127.0.0.1:8080/irma-sim`; session pointers
    /// (`u`) are built from it.
    pub public_url: String,
    /// Requestor token `POST /session` demands in `Authorization` (irmago "token" requestor auth);
    /// without it (and without `requestor_hs256`) it behaves like irmago's `no_auth`.
    pub requestor_token: Option<String>,
    /// `(issuer, key)` of a requestor allowed to post HS256-signed JWT session requests
    /// (irmago "hmac" requestor auth). With neither this nor a token, no authentication is asked.
    pub requestor_hs256: Option<(String, Vec<u8>)>,
    /// Serve the demo page at `GET /` where a person picks attributes and "scans".
    pub demo_page: bool,
    /// A session not finished within this time of its last activity becomes TIMEOUT (irmago 5 min).
    pub session_lifetime: Duration,
    /// A finished session is forgotten this long after its end (irmago 5 min).
    pub result_lifetime: Duration,
    /// Serve `statusevents`; `false` answers 500 SSE_DISABLED like irmago without `--sse` (its
    /// default), so clients must poll.
    pub sse: bool,
}

impl std::fmt::Debug for SimulatorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatorConfig")
            .field("public_url", &self.public_url)
            .field(
                "requestor_token",
                &self.requestor_token.as_ref().map(|_| "[redacted]"),
            )
            .field(
                "requestor_hs256",
                &self
                    .requestor_hs256
                    .as_ref()
                    .map(|(iss, _)| (iss, "[redacted]")),
            )
            .field("demo_page", &self.demo_page)
            .field("session_lifetime", &self.session_lifetime)
            .field("result_lifetime", &self.result_lifetime)
            .field("sse", &self.sse)
            .finish()
    }
}

impl SimulatorConfig {
    pub fn new(public_url: impl Into<String>) -> Self {
        SimulatorConfig {
            public_url: public_url.into().trim_end_matches('/').to_owned(),
            requestor_token: None,
            requestor_hs256: None,
            demo_page: false,
            session_lifetime: Duration::from_secs(5 * 60),
            result_lifetime: Duration::from_secs(5 * 60),
            sse: true,
        }
    }
}

/// A session waiting for the "app", as the demo page lists it.
#[derive(Clone, Debug)]
pub struct PendingSession {
    /// Last path segment of the session pointer's `u`; public.
    pub client_token: String,
    pub status: SessionStatus,
    /// The requested condiscon.
    pub disclose: Condiscon,
    /// A signature session's message to sign; `None` for a disclosure.
    pub message: Option<String>,
    pub age: Duration,
}

/// What the "app" does with a session (`POST /session/{clientToken}/disclose`).
#[derive(Clone, Debug, Default)]
pub struct Disclosure {
    /// Attribute id → raw value (`None` = the credential has no value: `rawvalue: null`). Empty: the
    /// simulator's demo values for the first option of every requested disjunction.
    pub attributes: BTreeMap<String, Option<String>>,
    /// The citizen declines.
    pub cancel: bool,
    /// Simulator knob: report this proofStatus instead of the computed one (to test EXPIRED etc.).
    pub force_proof_status: Option<ProofStatus>,
}

/// What the app learns: the session's end and, after a disclosure, the URL it opens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DisclosureOutcome {
    pub status: SessionStatus,
    pub proof_status: Option<ProofStatus>,
    /// `clientReturnUrl` of the request (with `?token=` when the requestor set augmentReturnUrl).
    /// Personal data: it holds the link code.
    pub client_return_url: Option<Pii<String>>,
}

/// Why the simulator refuses a request; each maps to an irmago error (see `http.rs`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    #[error("unknown or expired session")]
    SessionUnknown,
    #[error("unexpected request in this state")]
    UnexpectedRequest,
    #[error("malformed input: {0}")]
    MalformedInput(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("too many sessions")]
    TooManySessions,
    /// A status-events subscription to a finished session (irmago refuses those).
    #[error("can't subscribe to server sent events of a finished session")]
    SessionFinished,
    /// **Bel nu** without a dialer (only `demo` places calls), or for a session that has none.
    #[error("no call for this session")]
    NoCall,
    /// **Bel nu** a second time: one call per disclosed session.
    #[error("this session already placed its call")]
    AlreadyCalled,
}

/// The simulator state; clone it freely (shared inside).
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
}

struct Inner {
    config: SimulatorConfig,
    state: Mutex<State>,
    offset: Mutex<Duration>,
    /// Places **Bel nu** calls; `None`: the button is not offered.
    dialer: Mutex<Option<Arc<dyn dial::Dialer>>>,
    /// **Bel nu** calls by client token. Apart from the sessions, so forgetting a finished session
    /// does not cut its call; an ended call is dropped when the next one is placed.
    calls: Mutex<HashMap<String, Arc<dial::PlacedCall>>>,
}

#[derive(Default)]
struct State {
    /// By requestor token.
    sessions: HashMap<String, Session>,
    /// Client token → requestor token.
    by_client: HashMap<String, String>,
}

struct Session {
    requestor_token: String,
    client_token: String,
    frontend_auth: String,
    disclose: Condiscon,
    /// A signature session's message; `None` for a disclosure.
    message: Option<String>,
    client_return_url: Option<String>,
    augment_return_url: bool,
    created: Instant,
    last_active: Instant,
    ended: Option<Instant>,
    result: SessionResult,
    /// Status changes, for the status-events streams (one receiver per subscriber).
    status_tx: broadcast::Sender<SessionStatus>,
    /// **Bel nu** was used (one call per session).
    called: bool,
}

impl Session {
    fn status(&self) -> SessionStatus {
        self.result.status
    }

    /// Records a new status and tells the subscribers about a change (irmago sends changes only).
    fn set_status(&mut self, status: SessionStatus, now: Instant) {
        self.last_active = now;
        if status == self.result.status {
            return;
        }
        self.result.status = status;
        if status.is_terminal() {
            self.ended = Some(now);
        }
        // No subscribers is fine: nobody is listening.
        let _ = self.status_tx.send(status);
    }
}

/// Which token names a session: the secret requestor token, or the public client token.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Key<'a> {
    Requestor(&'a str),
    Client(&'a str),
}

/// The parts of a new session the HTTP layer returns.
pub(crate) struct NewSession {
    pub requestor_token: String,
    pub client_token: String,
    pub frontend_auth: String,
}

impl Simulator {
    pub fn new(config: SimulatorConfig) -> Self {
        Simulator {
            inner: Arc::new(Inner {
                config,
                state: Mutex::default(),
                offset: Mutex::new(Duration::ZERO),
                dialer: Mutex::new(None),
                calls: Mutex::default(),
            }),
        }
    }

    pub fn config(&self) -> &SimulatorConfig {
        &self.inner.config
    }

    /// Moves the simulator's clock forward (tests of TIMEOUT and forgotten results) and applies the
    /// lifetimes at once, so status watchers see the change.
    pub fn advance_clock(&self, by: Duration) {
        *lock(&self.inner.offset) += by;
        // Taking the state applies the lifetimes (TIMEOUT goes out to the subscribers); nothing
        // else is needed from it, so the lock is released at once.
        drop(self.state());
    }

    /// Sessions not yet finished, oldest first.
    pub fn pending(&self) -> Vec<PendingSession> {
        let now = self.now();
        let state = self.state();
        let mut out: Vec<PendingSession> = state
            .sessions
            .values()
            .filter(|s| !s.status().is_terminal())
            .map(|s| PendingSession {
                client_token: s.client_token.clone(),
                status: s.status(),
                disclose: s.disclose.clone(),
                message: s.message.clone(),
                age: now.saturating_duration_since(s.created),
            })
            .collect();
        out.sort_by_key(|p| std::cmp::Reverse(p.age));
        out
    }

    /// The fake value the simulator discloses for an attribute when the "app" names none.
    pub fn demo_value(attribute_id: &str) -> &'static str {
        let name = attribute_id
            .rsplit('.')
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        match name.as_str() {
            "fullname" => "Jan de Vries",
            "firstnames" | "firstname" | "givenname" => "Jan",
            "familyname" | "surname" | "lastname" => "de Vries",
            "prefix" => "de",
            "initials" => "J.",
            "bsn" => "999993653",
            "dateofbirth" => "01-01-1980",
            "email" => "jan.devries@example.org",
            "mobilenumber" | "phone" | "phonenumber" => "+31612345678",
            "street" => "Voorbeeldstraat",
            "housenumber" => "1",
            "zipcode" | "postalcode" => "1234 AB",
            "city" | "municipality" => "Demodam",
            "gender" => "M",
            "over18" | "over12" | "over16" | "over21" => "yes",
            _ => "demo",
        }
    }

    /// Makes a disclosure session (`POST /session` after authentication and parsing).
    pub(crate) fn start(
        &self,
        disclose: Condiscon,
        client_return_url: Option<String>,
        augment_return_url: bool,
    ) -> Result<NewSession, SimError> {
        self.open(disclose, None, client_return_url, augment_return_url)
    }

    /// Makes a signature session: the "app" signs `message` with the attributes of `disclose`.
    pub(crate) fn start_signature(
        &self,
        disclose: Condiscon,
        message: String,
    ) -> Result<NewSession, SimError> {
        self.open(disclose, Some(message), None, false)
    }

    fn open(
        &self,
        disclose: Condiscon,
        message: Option<String>,
        client_return_url: Option<String>,
        augment_return_url: bool,
    ) -> Result<NewSession, SimError> {
        let now = self.now();
        let mut state = self.state();
        if state.sessions.len() >= MAX_SESSIONS {
            return Err(SimError::TooManySessions);
        }
        let mut rng = rand::rng();
        let requestor_token = Alphanumeric.sample_string(&mut rng, 20);
        let client_token = Alphanumeric.sample_string(&mut rng, 20);
        let frontend_auth = Alphanumeric.sample_string(&mut rng, 20);
        let session_type = if message.is_some() {
            "signing"
        } else {
            "disclosing"
        };
        let result = SessionResult {
            token: RequestorToken::new(requestor_token.clone()),
            status: SessionStatus::Initialized,
            session_type: session_type.to_owned(),
            proof_status: None,
            disclosed: Vec::new(),
            error: None,
            signature: Pii::new(None),
        };
        let (status_tx, _) = broadcast::channel(STATUS_CHANNEL);
        state
            .by_client
            .insert(client_token.clone(), requestor_token.clone());
        state.sessions.insert(
            requestor_token.clone(),
            Session {
                requestor_token: requestor_token.clone(),
                client_token: client_token.clone(),
                frontend_auth: frontend_auth.clone(),
                disclose,
                message,
                client_return_url,
                augment_return_url,
                created: now,
                last_active: now,
                ended: None,
                result,
                status_tx,
                called: false,
            },
        );
        Ok(NewSession {
            requestor_token,
            client_token,
            frontend_auth,
        })
    }

    pub(crate) fn status(&self, key: Key<'_>) -> Result<SessionStatus, SimError> {
        self.with_session(key, |s, _| Ok(s.status()))
    }

    pub(crate) fn result(&self, key: Key<'_>) -> Result<SessionResult, SimError> {
        self.with_session(key, |s, _| Ok(s.result.clone()))
    }

    /// Subscribes to a session's status changes from now on; a finished session refuses, as in
    /// irmago (`subscribeServerSentEvents`).
    pub(crate) fn subscribe(
        &self,
        key: Key<'_>,
    ) -> Result<broadcast::Receiver<SessionStatus>, SimError> {
        self.with_session(key, |s, _| {
            if s.status().is_terminal() {
                return Err(SimError::SessionFinished);
            }
            Ok(s.status_tx.subscribe())
        })
    }

    pub(crate) fn frontend_auth_ok(
        &self,
        key: Key<'_>,
        authorization: Option<&str>,
    ) -> Result<bool, SimError> {
        self.with_session(key, |s, _| {
            Ok(authorization == Some(s.frontend_auth.as_str()))
        })
    }

    /// `DELETE`: cancels a running session; a finished one stays as it is (irmago `handleDelete`).
    pub(crate) fn cancel(&self, key: Key<'_>) -> Result<(), SimError> {
        self.with_session(key, |s, now| {
            if !s.status().is_terminal() {
                s.set_status(SessionStatus::Cancelled, now);
            }
            Ok(())
        })
    }

    /// Lets the demo page offer **Bel nu**: `dialer` places the call a disclosed session's return
    /// URL names.
    pub fn set_dialer(&self, dialer: Arc<dyn dial::Dialer>) {
        *lock(&self.inner.dialer) = Some(dialer);
    }

    /// Whether **Bel nu** is offered.
    pub fn can_dial(&self) -> bool {
        lock(&self.inner.dialer).is_some()
    }

    /// **Bel nu**: calls the number of the session's `tel:` return URL and keys in its code, as the
    /// Yivi app would after the disclosure. Only for a session disclosed with a valid proof, once.
    pub fn place_call(&self, client_token: &str, tones: bool) -> Result<(), SimError> {
        let dialer = lock(&self.inner.dialer).clone().ok_or(SimError::NoCall)?;
        let request = self.with_session(Key::Client(client_token), |s, _| {
            if s.status() != SessionStatus::Done
                || s.result.proof_status != Some(ProofStatus::Valid)
            {
                return Err(SimError::UnexpectedRequest);
            }
            if s.called {
                return Err(SimError::AlreadyCalled);
            }
            let (number, code) = s
                .client_return_url
                .as_deref()
                .and_then(dial::parse_tel)
                .ok_or(SimError::NoCall)?;
            s.called = true;
            Ok(dial::DialRequest {
                number,
                code,
                tones,
            })
        })?;
        let mut calls = lock(&self.inner.calls);
        calls.retain(|_, call| !call.progress().done);
        calls.insert(
            client_token.to_owned(),
            dial::PlacedCall::start(dialer, request),
        );
        Ok(())
    }

    fn placed_call(&self, client_token: &str) -> Result<Arc<dial::PlacedCall>, SimError> {
        lock(&self.inner.calls)
            .get(client_token)
            .cloned()
            .ok_or(SimError::NoCall)
    }

    /// What the session's **Bel nu** call did so far.
    pub fn call_progress(&self, client_token: &str) -> Result<dial::CallProgress, SimError> {
        Ok(self.placed_call(client_token)?.progress())
    }

    /// Hangs up the session's **Bel nu** call; `false` when it was already over.
    pub fn hang_up(&self, client_token: &str) -> Result<bool, SimError> {
        Ok(self.placed_call(client_token)?.hang_up())
    }

    /// The Yivi app stand-in: connects, then discloses or declines.
    pub fn disclose(
        &self,
        client_token: &str,
        disclosure: Disclosure,
    ) -> Result<DisclosureOutcome, SimError> {
        if let Some(bad) = disclosure
            .attributes
            .keys()
            .find(|id| !valid_attribute_id(id))
        {
            return Err(SimError::MalformedInput(format!(
                "not an attribute identifier: {bad:?}"
            )));
        }
        self.with_session(Key::Client(client_token), |s, now| {
            if s.status().is_terminal() {
                return Err(SimError::UnexpectedRequest);
            }
            s.set_status(SessionStatus::Connected, now);
            if disclosure.cancel {
                s.set_status(SessionStatus::Cancelled, now);
                return Ok(DisclosureOutcome {
                    status: SessionStatus::Cancelled,
                    proof_status: None,
                    client_return_url: None,
                });
            }
            let (disclosed, computed) = match_request(&s.disclose, &disclosure.attributes);
            let proof_status = disclosure.force_proof_status.unwrap_or(computed);
            if let Some(message) = &s.message {
                s.result.signature = Pii::new(Some(signed_message(message, &disclosed)));
            }
            s.result.disclosed = disclosed;
            s.result.proof_status = Some(proof_status);
            s.set_status(SessionStatus::Done, now);
            let client_return_url = s.client_return_url.as_ref().map(|url| {
                if s.augment_return_url {
                    let sep = if url.contains('?') { '&' } else { '?' };
                    Pii::new(format!("{url}{sep}token={}", s.requestor_token))
                } else {
                    Pii::new(url.clone())
                }
            });
            Ok(DisclosureOutcome {
                status: SessionStatus::Done,
                proof_status: Some(proof_status),
                client_return_url,
            })
        })
    }

    fn now(&self) -> Instant {
        Instant::now() + *lock(&self.inner.offset)
    }

    /// The state with lifetimes applied: idle sessions time out, old results are forgotten.
    fn state(&self) -> MutexGuard<'_, State> {
        let now = self.now();
        let mut state = lock(&self.inner.state);
        let config = &self.inner.config;
        let mut forget = Vec::new();
        for session in state.sessions.values_mut() {
            match session.ended {
                Some(ended) if now.saturating_duration_since(ended) >= config.result_lifetime => {
                    forget.push((
                        session.requestor_token.clone(),
                        session.client_token.clone(),
                    ));
                }
                Some(_) => {}
                None if now.saturating_duration_since(session.last_active)
                    >= config.session_lifetime =>
                {
                    session.set_status(SessionStatus::Timeout, now);
                }
                None => {}
            }
        }
        for (requestor, client) in forget {
            state.sessions.remove(&requestor);
            state.by_client.remove(&client);
        }
        state
    }

    fn with_session<T>(
        &self,
        key: Key<'_>,
        f: impl FnOnce(&mut Session, Instant) -> Result<T, SimError>,
    ) -> Result<T, SimError> {
        let now = self.now();
        let mut state = self.state();
        let requestor = match key {
            Key::Requestor(t) => t.to_owned(),
            Key::Client(c) => state
                .by_client
                .get(c)
                .cloned()
                .ok_or(SimError::SessionUnknown)?,
        };
        let session = state
            .sessions
            .get_mut(&requestor)
            .ok_or(SimError::SessionUnknown)?;
        f(session, now)
    }
}

use crate::sync::lock;

/// `scheme.issuer.credential.attribute`, each part non-empty and plain.
pub(crate) fn valid_attribute_id(id: &str) -> bool {
    let parts: Vec<&str> = id.split('.').collect();
    parts.len() == 4
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// A stand-in for irmago's `SignedMessage`: its shape (`@context`, `signature`, `indices`, `nonce`,
/// `context`, `message`, `timestamp`), no cryptography. The "proofs" list the attribute ids signed
/// with, so a reader sees what it covers.
fn signed_message(message: &str, disclosed: &[Vec<DisclosedAttribute>]) -> serde_json::Value {
    let ids: Vec<&str> = disclosed.iter().flatten().map(|a| a.id.as_str()).collect();
    serde_json::json!({
        "@context": super::SIGNED_MESSAGE_CONTEXT,
        "signature": [{"simulated": true, "attributes": ids}],
        "indices": [],
        "nonce": "0",
        "context": "0",
        "message": message,
        "timestamp": null,
    })
}

/// Matches what the app discloses against the request as irmago reports it: one inner list per
/// disjunction (the first option whose attributes are all present), MISSING_ATTRIBUTES when a
/// disjunction has none, then every attribute nobody asked for as its own list with status EXTRA.
/// An empty `given` discloses the demo values of each disjunction's first option.
fn match_request(
    request: &Condiscon,
    given: &BTreeMap<String, Option<String>>,
) -> (Vec<Vec<DisclosedAttribute>>, ProofStatus) {
    let demo: BTreeMap<String, Option<String>>;
    let given = if given.is_empty() {
        demo = request
            .iter()
            .filter_map(|discon| discon.first())
            .flatten()
            .map(|id| (id.clone(), Some(Simulator::demo_value(id).to_owned())))
            .collect();
        &demo
    } else {
        given
    };
    let attribute = |id: &str, value: &Option<String>, status| DisclosedAttribute {
        id: id.to_owned(),
        raw_value: Pii::new(value.clone()),
        value: Pii::new(value.as_ref().map(|v| {
            let mut m = serde_json::Map::new();
            for lang in ["", "en", "nl"] {
                m.insert(lang.to_owned(), serde_json::Value::String(v.clone()));
            }
            m
        })),
        status: if value.is_none() {
            AttributeProofStatus::Null
        } else {
            status
        },
        issuance_time: Some(1_700_000_000),
        not_revoked: None,
    };
    let mut used = std::collections::BTreeSet::new();
    let mut disclosed = Vec::new();
    let mut proof_status = ProofStatus::Valid;
    for discon in request {
        let chosen = discon
            .iter()
            .find(|con| con.iter().all(|id| given.contains_key(id)));
        match chosen {
            Some(con) => {
                disclosed.push(
                    con.iter()
                        .filter_map(|id| {
                            given
                                .get(id)
                                .map(|v| attribute(id, v, AttributeProofStatus::Present))
                        })
                        .collect(),
                );
                used.extend(con.iter().cloned());
            }
            None => {
                proof_status = ProofStatus::MissingAttributes;
                disclosed.push(Vec::new());
            }
        }
    }
    for (id, value) in given {
        if !used.contains(id) {
            disclosed.push(vec![attribute(id, value, AttributeProofStatus::Extra)]);
        }
    }
    (disclosed, proof_status)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: &str = "irma-demo.gemeente.personalData.fullname";
    const BSN: &str = "irma-demo.gemeente.personalData.bsn";

    fn sim() -> Simulator {
        Simulator::new(SimulatorConfig::new("http://127.0.0.1:9/irma-sim"))
    }

    fn request() -> Condiscon {
        vec![vec![vec![NAME.to_owned()]], vec![vec![BSN.to_owned()]]]
    }

    #[test]
    fn demo_bsn_passes_the_elfproef() {
        let digits: Vec<u32> = Simulator::demo_value(BSN)
            .chars()
            .filter_map(|c| c.to_digit(10))
            .collect();
        assert_eq!(digits.len(), 9);
        let sum: i64 = digits
            .iter()
            .enumerate()
            .map(|(i, &d)| {
                if i == 8 {
                    -(d as i64)
                } else {
                    (9 - i as i64) * d as i64
                }
            })
            .sum();
        assert_eq!(sum % 11, 0);
    }

    #[test]
    fn empty_disclosure_gives_demo_values_and_valid() {
        let s = sim();
        let new = s
            .start(request(), Some("tel:+31850000000,12345678".into()), false)
            .unwrap();
        let out = s
            .disclose(&new.client_token, Disclosure::default())
            .unwrap();
        assert_eq!(out.proof_status, Some(ProofStatus::Valid));
        assert_eq!(
            out.client_return_url.unwrap().expose(),
            "tel:+31850000000,12345678"
        );
        let result = s.result(Key::Requestor(&new.requestor_token)).unwrap();
        assert_eq!(result.status, SessionStatus::Done);
        assert_eq!(
            result.disclosed[0][0].raw_value.expose().as_deref(),
            Some("Jan de Vries")
        );
        // A second scan of a finished session is refused.
        assert_eq!(
            s.disclose(&new.client_token, Disclosure::default()),
            Err(SimError::UnexpectedRequest)
        );
    }

    #[test]
    fn missing_and_extra_attributes_are_reported_as_irmago_does() {
        let s = sim();
        let new = s.start(request(), None, false).unwrap();
        let attributes = BTreeMap::from([
            (NAME.to_owned(), Some("Piet".to_owned())),
            (
                "pbdf.pbdf.email.email".to_owned(),
                Some("p@example.org".to_owned()),
            ),
        ]);
        let out = s
            .disclose(
                &new.client_token,
                Disclosure {
                    attributes,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(out.proof_status, Some(ProofStatus::MissingAttributes));
        let result = s.result(Key::Requestor(&new.requestor_token)).unwrap();
        assert!(result.disclosed[1].is_empty());
        assert_eq!(result.disclosed[2][0].status, AttributeProofStatus::Extra);
    }

    #[test]
    fn idle_sessions_time_out_and_results_are_forgotten() {
        let s = sim();
        let idle = s.start(request(), None, false).unwrap();
        let done = s.start(request(), None, false).unwrap();
        s.disclose(&done.client_token, Disclosure::default())
            .unwrap();
        s.advance_clock(Duration::from_secs(299));
        assert_eq!(
            s.status(Key::Requestor(&idle.requestor_token)),
            Ok(SessionStatus::Initialized)
        );
        s.advance_clock(Duration::from_secs(1));
        assert_eq!(
            s.status(Key::Requestor(&idle.requestor_token)),
            Ok(SessionStatus::Timeout)
        );
        assert_eq!(
            s.status(Key::Requestor(&done.requestor_token)),
            Err(SimError::SessionUnknown)
        );
        s.advance_clock(Duration::from_secs(300));
        assert_eq!(
            s.status(Key::Requestor(&idle.requestor_token)),
            Err(SimError::SessionUnknown)
        );
        assert!(s.pending().is_empty());
    }

    #[test]
    fn subscribers_get_each_change_once_and_finished_sessions_refuse() {
        let s = sim();
        let new = s.start(request(), None, false).unwrap();
        let mut rx = s.subscribe(Key::Client(&new.client_token)).unwrap();
        assert!(rx.try_recv().is_err(), "no current status on subscribing");
        s.cancel(Key::Requestor(&new.requestor_token)).unwrap();
        s.cancel(Key::Requestor(&new.requestor_token)).unwrap();
        assert_eq!(rx.try_recv(), Ok(SessionStatus::Cancelled));
        assert!(rx.try_recv().is_err(), "a repeated cancel is no change");
        assert_eq!(
            s.subscribe(Key::Requestor(&new.requestor_token)).err(),
            Some(SimError::SessionFinished)
        );
        assert_eq!(
            s.subscribe(Key::Client("nosuchtoken")).err(),
            Some(SimError::SessionUnknown)
        );
    }

    #[test]
    fn augment_return_url_would_leak_the_token() {
        let s = sim();
        let new = s
            .start(request(), Some("tel:+31850000000,12345678".into()), true)
            .unwrap();
        let out = s
            .disclose(&new.client_token, Disclosure::default())
            .unwrap();
        let url = out.client_return_url.unwrap().into_inner();
        assert_eq!(
            url,
            format!("tel:+31850000000,12345678?token={}", new.requestor_token)
        );
    }

    #[test]
    fn a_signature_session_signs_the_message_with_the_attributes() {
        let s = sim();
        let new = s
            .start_signature(request(), "Ik ga akkoord.".to_owned())
            .unwrap();
        assert_eq!(s.pending()[0].message.as_deref(), Some("Ik ga akkoord."));
        let out = s
            .disclose(&new.client_token, Disclosure::default())
            .unwrap();
        assert_eq!(out.proof_status, Some(ProofStatus::Valid));
        assert_eq!(out.client_return_url, None);
        let result = s.result(Key::Requestor(&new.requestor_token)).unwrap();
        assert_eq!(result.session_type, "signing");
        let signature = result.signature.expose().clone().unwrap();
        assert_eq!(signature["message"], "Ik ga akkoord.");
        assert_eq!(signature["@context"], crate::irma::SIGNED_MESSAGE_CONTEXT);
        assert_eq!(result.disclosed.len(), 2);
    }
}
