//! Test support: a stand-in for irmago's requestor API (`irma server`; the real one is not
//! installable here), answering as irmago does so that `veilig-bellen serve` works against it
//! unchanged:
//!
//! - `POST /session` with requestor authentication `token`: the `Authorization` header must be the
//!   configured token and the body `application/json` (irmago `PresharedKeyAuthenticator`). A wrong
//!   token is `403 UNAUTHORIZED`, no token `400 INVALID_REQUEST` (no authenticator applies), each
//!   with irmago's error body (`server/errors.go`). Otherwise a session package: a fresh 20-character
//!   requestor token, `sessionPtr` `{u: "<url>/irma/session/<client token>", irmaqr: "disclosing"}`
//!   and `frontendRequest`;
//! - `GET /session/{token}/status` (a JSON string), `/statusevents` (server-sent events as with
//!   irmago's `--sse`: one `data: "STATUS"` per change; a finished session is refused with `501
//!   UNSUPPORTED`), `/result` (the session result, also before DONE), `/result-jwt` (RS256 over the
//!   result with `iss`, `sub` `disclosing_result`, `iat`, `exp` = `iat` + 120 s, as irmago's
//!   `server.ResultJwt`), `DELETE /session/{token}`, `GET /publickey`; an unknown token is `400
//!   SESSION_UNKNOWN`, a malformed one `400 INVALID_REQUEST`.
//!
//! The test plays the citizen's Yivi app with [`IrmagoStandin::disclose`]: the session goes DONE with
//! the given attribute values and the hook returns the `clientReturnUrl` the session request carried
//! (`tel:<number>,<code>`): the code comes from there, as in the app. [`IrmagoStandin::set_result_jwt`]
//! makes `/result-jwt` serve a tampered, wrongly issued or expired token instead.
//!
//! Signing key: `fixtures/irma/test-requestor-rs256.key.pem` (its public half is what `serve` gets as
//! `irma.result_public_key_file`). Include with `#[path = "support/irmago_standin.rs"] mod
//! irmago_standin;` (not part of `support/mod.rs`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::distr::{Alphanumeric, SampleString};
use serde_json::{json, Value};
use tokio::sync::watch;

/// irmago's default `ResultJwtValidity` (seconds).
const RESULT_JWT_VALIDITY: u64 = 120;
/// irmago's default `jwt_issuer`.
pub const ISSUER: &str = "irmaserver";

/// What `GET /session/{token}/result-jwt` serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResultJwt {
    /// As irmago: signed with the server key, `iss` irmaserver, valid for 120 s.
    Genuine,
    /// A genuine token whose payload was changed afterwards (another BSN), signature kept.
    Tampered,
    /// Signed with the right key, but by another issuer (`iss` "evil-irma-server").
    WrongIssuer,
    /// Signed right, expired ten minutes ago.
    Expired,
}

/// One request the stand-in received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Initialized,
    Connected,
    Cancelled,
    Done,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Initialized => "INITIALIZED",
            Status::Connected => "CONNECTED",
            Status::Cancelled => "CANCELLED",
            Status::Done => "DONE",
        }
    }

    fn finished(self) -> bool {
        matches!(self, Status::Cancelled | Status::Done)
    }
}

struct Session {
    requestor_token: String,
    client_token: String,
    /// The session request as posted (the disclosure request, `clientReturnUrl` included).
    request: Value,
    status: watch::Sender<Status>,
    disclosed: Vec<Vec<Value>>,
}

struct Inner {
    token: String,
    base: String,
    key: EncodingKey,
    result_jwt: Mutex<ResultJwt>,
    sessions: Mutex<HashMap<String, Session>>,
    seen: Mutex<Vec<Seen>>,
}

/// The running stand-in; stops when dropped.
pub struct IrmagoStandin {
    /// `http://127.0.0.1:PORT`: what goes into `irma.url`.
    pub url: String,
    inner: Arc<Inner>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for IrmagoStandin {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn fixture(name: &str) -> String {
    let path = format!("{}/fixtures/irma/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Where the public half of the signing key lives (for `irma.result_public_key_file`).
pub fn public_key_file() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/irma/test-requestor-rs256.pub.pem")
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn token() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 20)
}

/// irmago's error body (`irma.RemoteError`) with the HTTP status it carries.
fn irma_error(status: u16, error: &str, description: &str, message: &str) -> Response {
    let body = json!({
        "status": status,
        "error": error,
        "description": description,
        "message": message,
        "stacktrace": "",
    });
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn session_unknown() -> Response {
    irma_error(400, "SESSION_UNKNOWN", "Unknown or expired session", "")
}

fn json_ok(body: String) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// irmago's `ParseRequestorToken`: 20 characters `[a-zA-Z0-9]`.
fn well_formed(token: &str) -> bool {
    token.len() == 20 && token.bytes().all(|b| b.is_ascii_alphanumeric())
}

impl IrmagoStandin {
    /// Listens on 127.0.0.1:`port`, accepting requestor token `token`.
    pub async fn start(port: u16, token: &str) -> IrmagoStandin {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap_or_else(|e| panic!("the IRMA stand-in binds 127.0.0.1:{port}: {e}"));
        let url = format!("http://127.0.0.1:{port}");
        let key = EncodingKey::from_rsa_pem(fixture("test-requestor-rs256.key.pem").as_bytes())
            .expect("the fixture RSA key");
        let inner = Arc::new(Inner {
            token: token.to_owned(),
            base: url.clone(),
            key,
            result_jwt: Mutex::new(ResultJwt::Genuine),
            sessions: Mutex::new(HashMap::new()),
            seen: Mutex::new(Vec::new()),
        });
        let router = Router::new()
            .route("/session", axum::routing::post(create_session))
            .route("/session/", axum::routing::post(create_session))
            .route("/session/{token}", axum::routing::delete(delete_session))
            .route("/session/{token}/status", get(status))
            .route("/session/{token}/statusevents", get(status_events))
            .route("/session/{token}/result", get(result))
            .route("/session/{token}/result-jwt", get(result_jwt))
            .route(
                "/publickey",
                get(|| async { fixture("test-requestor-rs256.pub.pem") }),
            )
            .layer(axum::middleware::from_fn_with_state(inner.clone(), record))
            .with_state(inner.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        IrmagoStandin { url, inner, server }
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        lock(&self.inner.seen).clone()
    }

    /// Every requestor token handed out so far (secrets: they must never show in logs).
    pub fn requestor_tokens(&self) -> Vec<String> {
        lock(&self.inner.sessions).keys().cloned().collect()
    }

    /// The session request posted for the session whose `sessionPtr.u` ends in `client_token`.
    pub fn request_of(&self, client_token: &str) -> Option<Value> {
        lock(&self.inner.sessions)
            .values()
            .find(|s| s.client_token == client_token)
            .map(|s| s.request.clone())
    }

    /// The requestor token of the session whose `sessionPtr.u` ends in `client_token`.
    pub fn requestor_token_of(&self, client_token: &str) -> Option<String> {
        lock(&self.inner.sessions)
            .values()
            .find(|s| s.client_token == client_token)
            .map(|s| s.requestor_token.clone())
    }

    /// What `/result-jwt` serves from now on.
    pub fn set_result_jwt(&self, mode: ResultJwt) {
        *lock(&self.inner.result_jwt) = mode;
    }

    /// The Yivi app scanned the QR of `session_ptr` (the website's `sessionPtr`) and the citizen
    /// disclosed: for each disjunction of the request its first attribute set, each attribute with
    /// the value from `values` (by attribute id). The session goes CONNECTED, then DONE. Returns
    /// the request's `clientReturnUrl`, what the app opens next.
    pub fn disclose(&self, session_ptr: &Value, values: &[(&str, &str)]) -> Result<String, String> {
        let u = session_ptr["u"].as_str().ok_or("sessionPtr without u")?;
        let client_token = u
            .strip_prefix(&format!("{}/irma/session/", self.inner.base))
            .ok_or_else(|| format!("sessionPtr.u {u:?} is not one of ours"))?;
        let mut sessions = lock(&self.inner.sessions);
        let session = sessions
            .values_mut()
            .find(|s| s.client_token == client_token)
            .ok_or("no session with this client token")?;
        if session.status.borrow().finished() {
            return Err("the session has finished already".into());
        }
        let issued = (unix_now() / 604_800) * 604_800; // irmago rounds issuance to the week
        let mut disclosed = Vec::new();
        for discon in session.request["disclose"]
            .as_array()
            .ok_or("request without disclose")?
        {
            let con = discon
                .as_array()
                .and_then(|d| d.first())
                .and_then(Value::as_array)
                .ok_or("disjunction without an attribute set")?;
            let mut set = Vec::new();
            for id in con {
                let id = id.as_str().ok_or("attribute id is not a string")?;
                let value = values
                    .iter()
                    .find(|(i, _)| *i == id)
                    .map(|(_, v)| *v)
                    .ok_or_else(|| format!("no value for {id}"))?;
                set.push(json!({
                    "rawvalue": value,
                    "value": {"": value, "en": value, "nl": value},
                    "id": id,
                    "status": "PRESENT",
                    "issuancetime": issued,
                }));
            }
            disclosed.push(set);
        }
        session.disclosed = disclosed;
        session.status.send_replace(Status::Connected);
        session.status.send_replace(Status::Done);
        session.request["clientReturnUrl"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| "the session request had no clientReturnUrl".into())
    }
}

/// Notes every request (method, path, auth header) before handling it.
async fn record(
    State(inner): State<Arc<Inner>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let seen = {
        let header = |name| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Seen {
            method: request.method().clone(),
            path: request.uri().path().to_owned(),
            authorization: header(header::AUTHORIZATION),
            content_type: header(header::CONTENT_TYPE),
        }
    };
    lock(&inner.seen).push(seen);
    next.run(request).await
}

async fn create_session(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // irmago: the token authenticator applies to an Authorization header on a JSON body; with
    // no authenticator applying the request "could not be authenticated".
    if auth.is_empty() || !content_type.starts_with("application/json") {
        return irma_error(
            400,
            "INVALID_REQUEST",
            "Invalid HTTP request",
            "request could not be authenticated",
        );
    }
    if auth != inner.token {
        return irma_error(
            403,
            "UNAUTHORIZED",
            "You are not authorized to issue or verify this attribute",
            "",
        );
    }
    let Ok(mut request) = serde_json::from_slice::<Value>(&body) else {
        return irma_error(
            400,
            "INVALID_REQUEST",
            "Invalid HTTP request",
            "malformed JSON",
        );
    };
    // A RequestorRequest wraps the session request in `request`.
    if request.get("request").is_some() {
        request = request["request"].take();
    }
    let disclosure = request["@context"] == "https://irma.app/ld/request/disclosure/v2"
        && request["disclose"]
            .as_array()
            .is_some_and(|d| !d.is_empty());
    if !disclosure {
        return irma_error(
            400,
            "INVALID_REQUEST",
            "Invalid HTTP request",
            "not a disclosure request",
        );
    }
    let requestor_token = token();
    let client_token = token();
    let (status, _) = watch::channel(Status::Initialized);
    lock(&inner.sessions).insert(
        requestor_token.clone(),
        Session {
            requestor_token: requestor_token.clone(),
            client_token: client_token.clone(),
            request,
            status,
            disclosed: Vec::new(),
        },
    );
    let package = json!({
        "sessionPtr": {
            "u": format!("{}/irma/session/{client_token}", inner.base),
            "irmaqr": "disclosing",
        },
        "token": requestor_token,
        "frontendRequest": {
            "authorization": token(),
            "minProtocolVersion": "1.0",
            "maxProtocolVersion": "1.1",
        },
    });
    json_ok(package.to_string())
}

/// Why a request naming a session was refused.
enum Refused {
    /// irmago's `tokenMiddleware`: not a requestor token at all.
    Malformed,
    Unknown,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::Malformed => irma_error(
                400,
                "INVALID_REQUEST",
                "Invalid HTTP request",
                "invalid requestor token",
            ),
            Refused::Unknown => session_unknown(),
        }
    }
}

/// Runs `f` on the session of requestor token `token`.
fn with_session<T>(
    inner: &Inner,
    token: &str,
    f: impl FnOnce(&mut Session) -> T,
) -> Result<T, Refused> {
    if !well_formed(token) {
        return Err(Refused::Malformed);
    }
    let mut sessions = lock(&inner.sessions);
    sessions.get_mut(token).map(f).ok_or(Refused::Unknown)
}

async fn status(State(inner): State<Arc<Inner>>, Path(token): Path<String>) -> Response {
    match with_session(&inner, &token, |s| *s.status.borrow()) {
        Ok(status) => json_ok(format!("\"{}\"", status.as_str())),
        Err(e) => e.into_response(),
    }
}

async fn delete_session(State(inner): State<Arc<Inner>>, Path(token): Path<String>) -> Response {
    let cancelled = with_session(&inner, &token, |s| {
        if !s.status.borrow().finished() {
            s.status.send_replace(Status::Cancelled);
        }
    });
    match cancelled {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn status_events(State(inner): State<Arc<Inner>>, Path(token): Path<String>) -> Response {
    let subscribed = with_session(&inner, &token, |s| {
        let rx = s.status.subscribe();
        let finished = rx.borrow().finished();
        (!finished).then_some(rx)
    });
    let rx = match subscribed {
        Err(e) => return e.into_response(),
        // irmago refuses to stream a finished session (SubscribeServerSentEvents errs).
        Ok(None) => return irma_error(501, "UNSUPPORTED", "Unsupported by this server", ""),
        Ok(Some(rx)) => rx,
    };
    // Changes only, from the subscription on; the stream ends after a final status.
    let stream = futures_util::stream::unfold((rx, false), |(mut rx, done)| async move {
        if done || rx.changed().await.is_err() {
            return None;
        }
        let status = *rx.borrow_and_update();
        let event = Event::default().data(format!("\"{}\"", status.as_str()));
        Some((Ok::<_, Infallible>(event), (rx, status.finished())))
    });
    Sse::new(stream).into_response()
}

/// irmago's `SessionResult` as JSON.
fn result_json(s: &Session) -> Value {
    let status = *s.status.borrow();
    let mut result = json!({
        "token": s.requestor_token,
        "status": status.as_str(),
        "type": "disclosing",
    });
    if status == Status::Done {
        result["proofStatus"] = "VALID".into();
        result["disclosed"] = Value::Array(s.disclosed.iter().cloned().map(Value::Array).collect());
    }
    result
}

async fn result(State(inner): State<Arc<Inner>>, Path(token): Path<String>) -> Response {
    match with_session(&inner, &token, |s| result_json(s)) {
        Ok(result) => json_ok(result.to_string()),
        Err(e) => e.into_response(),
    }
}

async fn result_jwt(State(inner): State<Arc<Inner>>, Path(token): Path<String>) -> Response {
    let result = match with_session(&inner, &token, |s| result_json(s)) {
        Ok(result) => result,
        Err(e) => return e.into_response(),
    };
    let mode = *lock(&inner.result_jwt);
    let now = unix_now();
    let mut claims = result;
    claims["iss"] = if mode == ResultJwt::WrongIssuer {
        "evil-irma-server"
    } else {
        ISSUER
    }
    .into();
    claims["sub"] = "disclosing_result".into();
    let iat = if mode == ResultJwt::Expired {
        now - 600 - RESULT_JWT_VALIDITY
    } else {
        now
    };
    claims["iat"] = iat.into();
    claims["exp"] = (iat + RESULT_JWT_VALIDITY).into();
    let signed = match jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &inner.key) {
        Ok(j) => j,
        Err(e) => {
            return irma_error(
                500,
                "EXCEPTION",
                "Encountered unexpected problem",
                &e.to_string(),
            )
        }
    };
    let jwt = if mode == ResultJwt::Tampered {
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut parts: Vec<String> = signed.split('.').map(str::to_owned).collect();
        let mut payload: Value = engine
            .decode(&parts[1])
            .ok()
            .and_then(|p| serde_json::from_slice(&p).ok())
            .unwrap_or_default();
        // Another citizen's BSN in every disclosed attribute, the signature left as it was.
        if let Some(sets) = payload["disclosed"].as_array_mut() {
            for attr in sets.iter_mut().filter_map(Value::as_array_mut).flatten() {
                if attr["id"].as_str().is_some_and(|id| id.ends_with(".bsn")) {
                    attr["rawvalue"] = "123456782".into();
                }
            }
        }
        parts[1] = engine.encode(payload.to_string());
        parts.join(".")
    } else {
        signed
    };
    // irmago's server.WriteString: text/plain.
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        jwt,
    )
        .into_response()
}

/// Waits (bounded) until `pred` holds for the requests seen; the requests otherwise.
pub async fn wait_seen(
    standin: &IrmagoStandin,
    limit: Duration,
    pred: impl Fn(&[Seen]) -> bool,
) -> Result<(), Vec<Seen>> {
    let start = tokio::time::Instant::now();
    loop {
        let seen = standin.seen();
        if pred(&seen) {
            return Ok(());
        }
        if start.elapsed() > limit {
            return Err(seen);
        }
        // The back-off of this bounded wait.
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The citizen's Yivi app discloses name and BSN (the Arnhem tenant of
/// [`super::serve_cli::Setup::arnhem_tables`]) to `session`; the code from the return URL.
pub fn disclose_arnhem(standin: &IrmagoStandin, session: &serde_json::Value) -> String {
    use super::serve_cli::{ARNHEM, BSN, CITIZEN_BSN, CITIZEN_NAME, NAME};
    let url = standin
        .disclose(
            &session["sessionPtr"],
            &[(NAME, CITIZEN_NAME), (BSN, CITIZEN_BSN)],
        )
        .expect("the citizen discloses");
    let code = url
        .strip_prefix(&format!("tel:{ARNHEM},"))
        .unwrap_or_else(|| panic!("return URL {url:?} is not tel:{ARNHEM},CODE"))
        .to_owned();
    assert!(code.len() == 8 && code.bytes().all(|b| b.is_ascii_digit()));
    code
}
