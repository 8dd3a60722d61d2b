//! The IRMA requestor client (irmago `server/requestorserver`: `POST /session`,
//! `GET /session/{token}/status|statusevents|result`, `DELETE /session/{token}`), with requestor
//! authentication (none, token, HS256/RS256 signed JWT), per-request timeouts and bounded retries.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{StatusCode, Url};
use serde::Serialize;
use tokio::time::Instant;

use super::types::{DisclosureRequest, SessionPackage, SignatureRequest};
use super::{
    IrmaError, RemoteError, RequestorToken, SessionResult, SessionStatus, SseParser,
    StartedSession, DISCLOSURE_CONTEXT, SIGNATURE_CONTEXT,
};
use crate::tenant::Condiscon;

/// Largest response body accepted from an IRMA server.
const MAX_BODY: usize = 1024 * 1024;
/// Polling interval when server-sent events are unavailable.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Where the municipality's IRMA server is and how we authenticate to it.
#[derive(Clone, Debug)]
pub struct IrmaServerConfig {
    /// Base URL of the requestor API, e.g. `https://irma.gemeente.nl` (we append `/session`).
    pub url: String,
    pub auth: IrmaAuth,
    /// Limit for each HTTP request (connect, headers and body), and for connecting the event stream.
    pub request_timeout: Duration,
    /// Extra attempts after a connection failure, timeout or 5xx answer. 4xx answers are final.
    pub retries: u32,
    /// Trust the session result only as irmago's signed JWT, checked with this key. `None`: the
    /// plain JSON result, trusted on the strength of the transport (TLS) alone.
    pub result_jwt: Option<ResultJwtKey>,
}

/// irmago's signed session result (`GET /session/{token}/result-jwt`): RS256 with the server's
/// `jwt_privkey`, claims `iss` (the server's `jwt_issuer`, irmago's default `irmaserver`), `sub`
/// `disclosing_result`, `iat`, `exp`, and the session result's own fields. We check the
/// signature, the issuer, the subject and the expiry before anything in it is believed.
#[derive(Clone)]
pub struct ResultJwtKey {
    /// The IRMA server's public key (PEM: `PUBLIC KEY` or `RSA PUBLIC KEY`), what irmago serves at
    /// `/publickey`.
    pub public_key_pem: Vec<u8>,
    /// The `iss` the results must carry.
    pub issuer: String,
}

impl std::fmt::Debug for ResultJwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ResultJwtKey {{ issuer: {:?} }}", self.issuer)
    }
}

impl IrmaServerConfig {
    /// `url` with no authentication, 10 s per request, 2 retries.
    pub fn new(url: impl Into<String>) -> Self {
        IrmaServerConfig {
            url: url.into(),
            auth: IrmaAuth::None,
            request_timeout: Duration::from_secs(10),
            retries: 2,
            result_jwt: None,
        }
    }
}

/// Requestor authentication at `POST /session` (irmago `requestors` config, docs "api-irma-server").
#[derive(Clone)]
pub enum IrmaAuth {
    /// The server runs with `no_auth`.
    None,
    /// Pre-shared token, sent as the raw `Authorization: <token>` header (no "Bearer").
    Token(String),
    /// Session request signed as an HS256 JWT (`sub: "verification_request"`, `iss`, `iat`,
    /// `sprequest`), posted as `text/plain`. `key` is the raw HMAC key.
    Hs256 { issuer: String, key: Vec<u8> },
    /// As `Hs256`, signed RS256 with a PEM (PKCS#1 or PKCS#8) RSA private key.
    Rs256 { issuer: String, pem: Vec<u8> },
}

impl std::fmt::Debug for IrmaAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IrmaAuth::None => f.write_str("None"),
            IrmaAuth::Token(_) => f.write_str("Token([redacted])"),
            IrmaAuth::Hs256 { issuer, .. } => {
                write!(f, "Hs256 {{ issuer: {issuer:?}, key: [redacted] }}")
            }
            IrmaAuth::Rs256 { issuer, .. } => {
                write!(f, "Rs256 {{ issuer: {issuer:?}, pem: [redacted] }}")
            }
        }
    }
}

enum PreparedAuth {
    None,
    Token(HeaderValue),
    Jwt {
        issuer: String,
        key: EncodingKey,
        alg: Algorithm,
    },
}

/// Client for one IRMA server. Cheap to clone (shares one connection pool).
#[derive(Clone)]
pub struct IrmaClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    auth: PreparedAuth,
    timeout: Duration,
    retries: u32,
    /// Checks results as signed JWTs when set.
    result_key: Option<(DecodingKey, String)>,
}

impl std::fmt::Debug for IrmaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IrmaClient")
            .field("base", &self.inner.base.as_str())
            .finish_non_exhaustive()
    }
}

/// The JWT claims irmago expects for a signed session request (`irma.ServiceProviderJwt` with the
/// request under `sprequest`, `irma.SignatureRequestorJwt` under `absrequest`).
#[derive(Serialize)]
struct RequestorJwtClaims<'a, R: Serialize> {
    iat: u64,
    iss: &'a str,
    sub: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sprequest: Option<WrappedRequest<'a, R>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    absrequest: Option<WrappedRequest<'a, R>>,
}

#[derive(Serialize)]
struct WrappedRequest<'a, R: Serialize> {
    request: &'a R,
}

/// Which kind of session a request starts: what its JWT says, and what the result JWT's subject is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionKind {
    /// `disclosing`: the citizen shows attributes.
    Disclosing,
    /// `signing`: the citizen signs a message with attributes.
    Signing,
}

impl SessionKind {
    /// irmago's name of the session type (`type` in the result, `irmaqr` in the pointer).
    pub fn as_str(self) -> &'static str {
        match self {
            SessionKind::Disclosing => "disclosing",
            SessionKind::Signing => "signing",
        }
    }

    /// `sub` of the requestor JWT.
    fn request_subject(self) -> &'static str {
        match self {
            SessionKind::Disclosing => "verification_request",
            SessionKind::Signing => "signature_request",
        }
    }
}

impl IrmaClient {
    pub fn new(config: IrmaServerConfig) -> Result<Self, IrmaError> {
        let mut base = Url::parse(config.url.trim())
            .map_err(|e| IrmaError::Config(format!("IRMA server URL: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(IrmaError::Config("IRMA server URL must be http(s)".into()));
        }
        base.set_query(None);
        base.set_fragment(None);
        let auth = match config.auth {
            IrmaAuth::None => PreparedAuth::None,
            IrmaAuth::Token(t) => {
                PreparedAuth::Token(HeaderValue::from_str(t.trim()).map_err(|_| {
                    IrmaError::Config("requestor token is not a valid header value".into())
                })?)
            }
            IrmaAuth::Hs256 { issuer, key } => {
                if key.is_empty() {
                    return Err(IrmaError::Config("empty HS256 key".into()));
                }
                PreparedAuth::Jwt {
                    issuer,
                    key: EncodingKey::from_secret(&key)
                        .map_err(|e| IrmaError::Config(format!("HS256 key: {e}")))?,
                    alg: Algorithm::HS256,
                }
            }
            IrmaAuth::Rs256 { issuer, pem } => PreparedAuth::Jwt {
                issuer,
                key: EncodingKey::from_rsa_pem(&pem)
                    .map_err(|e| IrmaError::Config(format!("RS256 private key: {e}")))?,
                alg: Algorithm::RS256,
            },
        };
        let http = reqwest::Client::builder()
            .connect_timeout(config.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("veilig-bellen/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                IrmaError::Config(format!("HTTP client: {}", error_chain(&e.without_url())))
            })?;
        let result_key = match config.result_jwt {
            None => None,
            Some(k) => Some((
                DecodingKey::from_rsa_pem(&k.public_key_pem).map_err(|e| {
                    IrmaError::Config(format!("IRMA server public key (result JWT): {e}"))
                })?,
                k.issuer,
            )),
        };
        Ok(IrmaClient {
            inner: Arc::new(Inner {
                http,
                base,
                auth,
                result_key,
                timeout: config.request_timeout,
                retries: config.retries,
            }),
        })
    }

    /// Starts a disclosure session asking the tenant's condiscon, returning to `client_return_url`
    /// (`tel:<number>,<code>`) when done. Never sets `augmentReturnUrl`.
    pub async fn start_disclosure(
        &self,
        disclosure: &Condiscon,
        client_return_url: &str,
    ) -> Result<StartedSession, IrmaError> {
        let request = DisclosureRequest {
            context: DISCLOSURE_CONTEXT,
            disclose: disclosure,
            client_return_url: Some(client_return_url),
        };
        self.start_session(&request, SessionKind::Disclosing).await
    }

    /// Starts a disclosure session with no return URL: the app shows its own "done" (an agent's
    /// extra request during a call, [`crate::extra_requests`]).
    pub async fn start_plain_disclosure(
        &self,
        disclosure: &Condiscon,
    ) -> Result<StartedSession, IrmaError> {
        let request = DisclosureRequest {
            context: DISCLOSURE_CONTEXT,
            disclose: disclosure,
            client_return_url: None,
        };
        self.start_session(&request, SessionKind::Disclosing).await
    }

    /// Starts a signature session (`"@context": ".../signature/v2"`): the citizen signs `message`
    /// with the attributes of `disclosure`.
    pub async fn start_signature(
        &self,
        disclosure: &Condiscon,
        message: &str,
    ) -> Result<StartedSession, IrmaError> {
        let request = SignatureRequest {
            context: SIGNATURE_CONTEXT,
            message,
            disclose: disclosure,
        };
        self.start_session(&request, SessionKind::Signing).await
    }

    /// `POST /session` with `request`, authenticated as configured.
    async fn start_session<R: Serialize>(
        &self,
        request: &R,
        kind: SessionKind,
    ) -> Result<StartedSession, IrmaError> {
        let url = self.url(&["session"]);
        let (status, body) = self
            .send(|| {
                let rb = self.inner.http.post(url.clone());
                Ok(match &self.inner.auth {
                    PreparedAuth::None => rb
                        .header(CONTENT_TYPE, "application/json")
                        .body(to_json(request)?),
                    PreparedAuth::Token(t) => rb
                        .header(CONTENT_TYPE, "application/json")
                        .header(AUTHORIZATION, t.clone())
                        .body(to_json(request)?),
                    PreparedAuth::Jwt { issuer, key, alg } => {
                        let wrapped = Some(WrappedRequest { request });
                        let (sprequest, absrequest) = match kind {
                            SessionKind::Disclosing => (wrapped, None),
                            SessionKind::Signing => (None, wrapped),
                        };
                        let claims = RequestorJwtClaims {
                            iat: crate::time::unix_now(),
                            iss: issuer,
                            sub: kind.request_subject(),
                            sprequest,
                            absrequest,
                        };
                        let jwt = jsonwebtoken::encode(&Header::new(*alg), &claims, key).map_err(
                            |e| IrmaError::Config(format!("signing the session request: {e}")),
                        )?;
                        rb.header(CONTENT_TYPE, "text/plain").body(jwt)
                    }
                })
            })
            .await?;
        let package: SessionPackage = parse_ok(status, &body, "session package")?;
        if package.token.is_empty() {
            return Err(IrmaError::BadResponse("empty requestor token".into()));
        }
        let started = StartedSession {
            token: RequestorToken::new(package.token),
            session_ptr: package.session_ptr,
            frontend_request: package.frontend_request,
        };
        if started.client_token().is_none() || started.session_ptr.get("irmaqr").is_none() {
            return Err(IrmaError::BadResponse(
                "sessionPtr without u or irmaqr".into(),
            ));
        }
        Ok(started)
    }

    /// `GET /session/{token}/status`.
    pub async fn status(&self, token: &RequestorToken) -> Result<SessionStatus, IrmaError> {
        let url = self.url(&["session", token.expose(), "status"]);
        let (status, body) = self.send(|| Ok(self.inner.http.get(url.clone()))).await?;
        parse_ok(status, &body, "status")
    }

    /// `GET /session/{token}/result`, or with a [`ResultJwtKey`] `/result-jwt`, checked. Fetch it
    /// as soon as the status is DONE: irmago forgets it 5 minutes after the session ends.
    pub async fn result(&self, token: &RequestorToken) -> Result<SessionResult, IrmaError> {
        self.result_of(token, SessionKind::Disclosing).await
    }

    /// [`result`](Self::result) of a session of `kind`: a signed result's subject is
    /// `<kind>_result` (irmago), so a signature's result is not taken for a disclosure's.
    pub async fn result_of(
        &self,
        token: &RequestorToken,
        kind: SessionKind,
    ) -> Result<SessionResult, IrmaError> {
        let Some((key, issuer)) = &self.inner.result_key else {
            let url = self.url(&["session", token.expose(), "result"]);
            let (status, body) = self.send(|| Ok(self.inner.http.get(url.clone()))).await?;
            return parse_ok(status, &body, "session result");
        };
        let url = self.url(&["session", token.expose(), "result-jwt"]);
        let (status, body) = self.send(|| Ok(self.inner.http.get(url.clone()))).await?;
        if !status.is_success() {
            return Err(remote_error(status, &body));
        }
        verify_result_jwt(&body, key, issuer, kind)
    }

    /// Whether the IRMA server answers HTTP at all (any status will do), for `/readyz`. One try,
    /// within the request timeout.
    pub async fn reachable(&self) -> Result<(), IrmaError> {
        let timer = crate::metrics::IrmaTimer::start();
        let outcome = self
            .inner
            .http
            .get(self.inner.base.clone())
            .timeout(self.inner.timeout)
            .send()
            .await
            .map(|_| ())
            .map_err(map_reqwest);
        timer.finish(outcome.is_ok());
        outcome
    }

    /// `DELETE /session/{token}`: cancels a running session (a finished one is left as it is).
    pub async fn cancel(&self, token: &RequestorToken) -> Result<(), IrmaError> {
        let url = self.url(&["session", token.expose()]);
        let (status, body) = self
            .send(|| Ok(self.inner.http.delete(url.clone())))
            .await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(remote_error(status, &body))
        }
    }

    /// Follows `GET /session/{token}/statusevents` (SSE; each `data` is a JSON-quoted status), falls
    /// back to polling `/status` every second. irmago's stream carries status changes only (plus a
    /// data-less `open` event, which the parser drops) and refuses finished sessions, so the current
    /// status comes from `/status` before and after subscribing, never from the stream. Returns at a
    /// terminal status (DONE, CANCELLED, TIMEOUT) or, at `deadline`, with the last status seen
    /// (check [`SessionStatus::is_terminal`]).
    /// SESSION_UNKNOWN ends the wait with that error; other failures are retried until the deadline,
    /// and returned only if no status was ever obtained.
    pub async fn wait_terminal(
        &self,
        token: &RequestorToken,
        deadline: Instant,
    ) -> Result<SessionStatus, IrmaError> {
        let mut last: Option<SessionStatus> = None;
        let mut last_err: Option<IrmaError> = None;
        let at_deadline = |last: Option<SessionStatus>, last_err: Option<IrmaError>| match last {
            Some(s) => Ok(s),
            None => Err(last_err.unwrap_or(IrmaError::Timeout)),
        };

        match tokio::time::timeout_at(deadline, self.status(token)).await {
            Err(_) => return at_deadline(last, last_err),
            Ok(Ok(s)) if s.is_terminal() => return Ok(s),
            Ok(Ok(s)) => last = Some(s),
            Ok(Err(IrmaError::SessionUnknown)) => return Err(IrmaError::SessionUnknown),
            Ok(Err(e)) => last_err = Some(e),
        }

        match tokio::time::timeout_at(deadline, self.follow_events(token, &mut last)).await {
            Err(_) => return at_deadline(last, last_err),
            Ok(Ok(Some(terminal))) => return Ok(terminal),
            Ok(Err(IrmaError::SessionUnknown)) => return Err(IrmaError::SessionUnknown),
            Ok(Ok(None)) => tracing::debug!("IRMA status events ended; polling"),
            Ok(Err(e)) => tracing::debug!("IRMA status events unavailable ({e}); polling"),
        }

        loop {
            let next = (Instant::now() + POLL_INTERVAL).min(deadline);
            tokio::time::sleep_until(next).await;
            if Instant::now() >= deadline {
                return at_deadline(last, last_err);
            }
            match tokio::time::timeout_at(deadline, self.status(token)).await {
                Err(_) => return at_deadline(last, last_err),
                Ok(Ok(s)) if s.is_terminal() => return Ok(s),
                Ok(Ok(s)) => last = Some(s),
                Ok(Err(IrmaError::SessionUnknown)) => return Err(IrmaError::SessionUnknown),
                Ok(Err(e)) => {
                    tracing::debug!("IRMA status poll failed: {e}");
                    last_err = Some(e);
                }
            }
        }
    }

    /// Reads the status event stream. `Ok(Some)` at a terminal status, `Ok(None)` when the stream is
    /// unavailable or ends, so the caller polls instead.
    async fn follow_events(
        &self,
        token: &RequestorToken,
        last: &mut Option<SessionStatus>,
    ) -> Result<Option<SessionStatus>, IrmaError> {
        let url = self.url(&["session", token.expose(), "statusevents"]);
        let request = self
            .inner
            .http
            .get(url)
            .header(ACCEPT, "text/event-stream")
            .send();
        let mut response = match tokio::time::timeout(self.inner.timeout, request).await {
            Err(_) => return Err(IrmaError::Timeout),
            Ok(Err(e)) => return Err(map_reqwest(e)),
            Ok(Ok(r)) => r,
        };
        let is_stream = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !response.status().is_success() || !is_stream {
            let status = response.status();
            let body = read_limited(&mut response, self.inner.timeout)
                .await
                .unwrap_or_default();
            return match remote_error(status, &body) {
                IrmaError::SessionUnknown => Err(IrmaError::SessionUnknown),
                _ => Ok(None),
            };
        }
        // Subscribed: a change from now on arrives as an event; one made before, a poll shows.
        match self.status(token).await {
            Ok(s) if s.is_terminal() => return Ok(Some(s)),
            Ok(s) => *last = Some(s),
            Err(IrmaError::SessionUnknown) => return Err(IrmaError::SessionUnknown),
            Err(_) => {}
        }
        let mut parser = SseParser::new();
        // A stream can die silently (a proxy keeps the socket, the server restarted): check the
        // status whenever the stream has been quiet for three request timeouts.
        let quiet = (self.inner.timeout * 3).clamp(Duration::from_secs(1), Duration::from_secs(30));
        loop {
            let chunk = tokio::select! {
                chunk = response.chunk() => match chunk {
                    Ok(Some(c)) => c,
                    Ok(None) => return Ok(None),
                    Err(e) => return Err(map_reqwest(e)),
                },
                _ = tokio::time::sleep(quiet) => {
                    match self.status(token).await {
                        Ok(s) if s.is_terminal() => return Ok(Some(s)),
                        Ok(s) => *last = Some(s),
                        Err(IrmaError::SessionUnknown) => return Err(IrmaError::SessionUnknown),
                        Err(e) => tracing::debug!("IRMA status check beside the event stream failed: {e}"),
                    }
                    continue;
                }
            };
            let events = parser
                .push(&chunk)
                .map_err(|e| IrmaError::BadResponse(e.to_string()))?;
            for data in events {
                let Some(status) = parse_status_event(&data) else {
                    return Err(IrmaError::BadResponse("unreadable status event".into()));
                };
                *last = Some(status);
                if status.is_terminal() {
                    return Ok(Some(status));
                }
            }
        }
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.inner.base.clone();
        // cannot_be_a_base was refused in `new`, so path_segments_mut succeeds.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// Sends with the per-request timeout, retrying connection failures, timeouts and 5xx answers
    /// up to `retries` times with a short backoff. Returns the final status and body.
    async fn send(
        &self,
        build: impl Fn() -> Result<reqwest::RequestBuilder, IrmaError>,
    ) -> Result<(StatusCode, Bytes), IrmaError> {
        let mut attempt = 0u32;
        loop {
            let timer = crate::metrics::IrmaTimer::start();
            let outcome = async {
                let mut response = build()?
                    .timeout(self.inner.timeout)
                    .send()
                    .await
                    .map_err(map_reqwest)?;
                let status = response.status();
                let body = read_limited(&mut response, self.inner.timeout).await?;
                Ok::<_, IrmaError>((status, body))
            }
            .await;
            timer.finish(matches!(&outcome, Ok((status, _)) if !status.is_server_error()));
            let retryable = match &outcome {
                Ok((status, _)) => status.is_server_error(),
                Err(IrmaError::Timeout | IrmaError::Unreachable(_)) => true,
                Err(_) => false,
            };
            if !retryable || attempt >= self.inner.retries {
                return outcome;
            }
            match &outcome {
                Ok((status, _)) => {
                    tracing::debug!(attempt, "IRMA server answered {status}; retrying")
                }
                Err(e) => tracing::debug!(attempt, "IRMA request failed: {e}; retrying"),
            }
            attempt += 1;
            tokio::time::sleep(Duration::from_millis(100u64 << attempt.min(4))).await;
        }
    }
}

/// Checks a result JWT (signature RS256, `iss`, `sub: <kind>_result` — `disclosing_result` for a
/// disclosure —, `exp` required and not passed) and reads the session result from its claims.
/// Failures say which check failed, never what the token held.
fn verify_result_jwt(
    body: &[u8],
    key: &DecodingKey,
    issuer: &str,
    kind: SessionKind,
) -> Result<SessionResult, IrmaError> {
    let jwt = std::str::from_utf8(body)
        .map_err(|_| IrmaError::BadResponse("result JWT is not text".into()))?
        .trim();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[issuer]);
    validation.sub = Some(format!("{}_result", kind.as_str()));
    validation.set_required_spec_claims(&["exp", "iss", "sub"]);
    validation.leeway = 30;
    let data = jsonwebtoken::decode::<SessionResult>(jwt, key, &validation).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind;
        let why = match e.kind() {
            ErrorKind::InvalidSignature => "bad signature".to_owned(),
            ErrorKind::InvalidIssuer => "wrong issuer".to_owned(),
            ErrorKind::InvalidSubject => format!("not a {} result", kind.as_str()),
            ErrorKind::ExpiredSignature => "expired".to_owned(),
            ErrorKind::MissingRequiredClaim(c) => format!("no {c} claim"),
            ErrorKind::InvalidAlgorithm => "not RS256".to_owned(),
            ErrorKind::Json(_) => "claims are not a session result".to_owned(),
            _ => "malformed".to_owned(),
        };
        IrmaError::UntrustedResult(why)
    })?;
    Ok(data.claims)
}

fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, IrmaError> {
    serde_json::to_vec(value)
        .map_err(|e| IrmaError::Config(format!("encoding the session request: {e}")))
}

/// A status event's data: irmago's requestor stream sends a JSON string (`"DONE"`), its frontend
/// stream an object (`{"status":"DONE"}`).
pub(crate) fn parse_status_event(data: &str) -> Option<SessionStatus> {
    #[derive(serde::Deserialize)]
    struct Obj {
        status: SessionStatus,
    }
    serde_json::from_str::<SessionStatus>(data)
        .ok()
        .or_else(|| serde_json::from_str::<Obj>(data).ok().map(|o| o.status))
}

async fn read_limited(
    response: &mut reqwest::Response,
    timeout: Duration,
) -> Result<Bytes, IrmaError> {
    let read = async {
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(map_reqwest)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(IrmaError::BadResponse(format!(
                    "body larger than {MAX_BODY} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(body))
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| IrmaError::Timeout)?
}

/// Parses a 2xx body as `T`, or turns a non-2xx answer into the matching error. Parse errors name
/// only the position: serde messages can quote the input, and the input holds attribute values.
fn parse_ok<T: serde::de::DeserializeOwned>(
    status: StatusCode,
    body: &[u8],
    what: &str,
) -> Result<T, IrmaError> {
    if !status.is_success() {
        return Err(remote_error(status, body));
    }
    serde_json::from_slice(body).map_err(|e| {
        IrmaError::BadResponse(format!(
            "{what}: {:?} error at line {} column {}",
            e.classify(),
            e.line(),
            e.column()
        ))
    })
}

fn remote_error(status: StatusCode, body: &[u8]) -> IrmaError {
    match serde_json::from_slice::<RemoteError>(body) {
        Ok(e) if e.error == "SESSION_UNKNOWN" => IrmaError::SessionUnknown,
        Ok(e) => IrmaError::Server {
            status: status.as_u16(),
            error: e.error,
            description: e.description,
        },
        Err(_) => IrmaError::Server {
            status: status.as_u16(),
            error: String::new(),
            description: "answer without an irmago error body".into(),
        },
    }
}

fn map_reqwest(e: reqwest::Error) -> IrmaError {
    // `without_url`: the URL holds the requestor token.
    let e = e.without_url();
    if is_tls(&e) {
        IrmaError::Tls(error_chain(&e))
    } else if e.is_timeout() {
        IrmaError::Timeout
    } else if e.is_body() || e.is_decode() {
        IrmaError::BadResponse(error_chain(&e))
    } else {
        IrmaError::Unreachable(error_chain(&e))
    }
}

/// Whether a rustls error sits anywhere in the chain. `io::Error` hides its inner error from
/// `source()`, so look inside those explicitly.
fn is_tls(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<rustls::Error>() {
            return true;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            // hyper-rustls nests io::Error(Other, io::Error(InvalidData, rustls::Error)).
            if let Some(inner) = io.get_ref() {
                return is_tls(inner);
            }
        }
        cur = err.source();
    }
    false
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        let s = err.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = err.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_escape_the_token_and_keep_a_base_path() {
        let c = IrmaClient::new(IrmaServerConfig::new("http://127.0.0.1:1/irma-sim/")).unwrap();
        assert_eq!(
            c.url(&["session", "a/b?c", "status"]).as_str(),
            "http://127.0.0.1:1/irma-sim/session/a%2Fb%3Fc/status"
        );
        let c = IrmaClient::new(IrmaServerConfig::new("https://irma.example")).unwrap();
        assert_eq!(c.url(&["session"]).as_str(), "https://irma.example/session");
    }

    #[test]
    fn bad_configs_are_refused() {
        assert!(matches!(
            IrmaClient::new(IrmaServerConfig::new("tel:+31")),
            Err(IrmaError::Config(_))
        ));
        let mut cfg = IrmaServerConfig::new("http://127.0.0.1:1");
        cfg.auth = IrmaAuth::Rs256 {
            issuer: "x".into(),
            pem: b"not a key".to_vec(),
        };
        assert!(matches!(IrmaClient::new(cfg), Err(IrmaError::Config(_))));
        let dbg = format!("{:?}", IrmaAuth::Token("s3cret".into()));
        assert!(!dbg.contains("s3cret"));
    }

    #[test]
    fn status_events_in_both_irmago_shapes() {
        assert_eq!(parse_status_event("\"DONE\""), Some(SessionStatus::Done));
        assert_eq!(
            parse_status_event("{\"status\":\"CONNECTED\"}"),
            Some(SessionStatus::Connected)
        );
        assert_eq!(parse_status_event("\"BOGUS\""), None);
    }

    #[test]
    fn session_unknown_body_maps_to_its_own_error() {
        let body = br#"{"status":400,"error":"SESSION_UNKNOWN","description":"Unknown or expired session","message":"","stacktrace":""}"#;
        assert!(matches!(
            remote_error(StatusCode::BAD_REQUEST, body),
            IrmaError::SessionUnknown
        ));
        assert!(matches!(
            remote_error(
                StatusCode::FORBIDDEN,
                br#"{"status":403,"error":"UNAUTHORIZED","description":"x"}"#
            ),
            IrmaError::Server { status: 403, .. }
        ));
    }
}
