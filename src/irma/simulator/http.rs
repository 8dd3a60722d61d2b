//! HTTP face of the IRMA simulator: irmago's requestor endpoints (`server/requestorserver/server.go`),
//! the client-API status endpoints yivi-frontend polls (`server/irmaserver/api.go`: `/irma/session/
//! {clientToken}/status|statusevents`, `/frontend/status|statusevents|options`), the app stand-in
//! `POST /session/{clientToken}/disclose` and the demo page. Errors use irmago's `RemoteError` body.
//! The three status streams behave as irmago's (`subscribeServerSentEvents`,
//! `serverSentEventsHandler`): status changes only, a data-less `open` event 200 ms after
//! subscribing, closed after the terminal status; a finished session refuses the subscription.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::header::{ACCEPT, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast;
use tower_http::cors::{Any, CorsLayer};

use super::{page, valid_attribute_id, Disclosure, Key, SimError, Simulator, SIMULATOR_HEADER};
use crate::irma::{ProofStatus, RemoteError, SessionStatus, DISCLOSURE_CONTEXT, SIGNATURE_CONTEXT};
use crate::tenant::Condiscon;

/// Largest request body the simulator reads.
const MAX_BODY: usize = 64 * 1024;
/// Oldest signed request accepted, seconds (irmago `max_request_age` default).
const MAX_REQUEST_AGE: u64 = 300;

/// The simulator as a router, meant to be nested at `/irma-sim` (its `public_url` must match):
/// `Router::new().nest("/irma-sim", simulator_router(sim))`. The demo page is then at `/irma-sim`
/// (axum's `nest` does not route `/irma-sim/` with a trailing slash).
pub fn simulator_router(sim: Simulator) -> Router {
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([ACCEPT, AUTHORIZATION, CONTENT_TYPE, CACHE_CONTROL]);
    Router::new()
        .route("/", get(demo_page))
        .route("/session", post(start_session))
        .route("/session/{token}", axum::routing::delete(requestor_cancel))
        .route("/session/{token}/status", get(requestor_status))
        .route("/session/{token}/statusevents", get(requestor_events))
        .route("/session/{token}/result", get(requestor_result))
        .route("/session/{token}/disclose", post(app_disclose))
        .route(
            "/session/{token}/call",
            post(app_call).get(app_call_progress).delete(app_hang_up),
        )
        .route(
            "/irma/session/{client}",
            get(client_info).delete(client_cancel),
        )
        .route("/irma/session/{client}/status", get(client_status))
        .route("/irma/session/{client}/statusevents", get(client_events))
        .route(
            "/irma/session/{client}/frontend/status",
            get(frontend_status),
        )
        .route(
            "/irma/session/{client}/frontend/statusevents",
            get(frontend_events),
        )
        .route(
            "/irma/session/{client}/frontend/options",
            post(frontend_options),
        )
        .route(
            "/irma/session/{client}/frontend/pairingcompleted",
            post(frontend_pairing_completed),
        )
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(cors)
        .layer(axum::middleware::map_response(label))
        .with_state(sim)
}

async fn label(mut response: Response) -> Response {
    response.headers_mut().insert(
        HeaderName::from_static(SIMULATOR_HEADER.0),
        HeaderValue::from_static(SIMULATOR_HEADER.1),
    );
    response
}

/// An irmago `RemoteError` response.
struct IrmaErr {
    status: u16,
    error: &'static str,
    description: &'static str,
    message: String,
}

impl IrmaErr {
    fn new(
        status: u16,
        error: &'static str,
        description: &'static str,
        message: impl Into<String>,
    ) -> Self {
        IrmaErr {
            status,
            error,
            description,
            message: message.into(),
        }
    }
}

impl IntoResponse for IrmaErr {
    fn into_response(self) -> Response {
        let body = RemoteError {
            status: self.status,
            error: self.error.to_owned(),
            description: self.description.to_owned(),
            message: self.message,
            stacktrace: String::new(),
        };
        let code = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (code, Json(body)).into_response()
    }
}

impl From<SimError> for IrmaErr {
    fn from(e: SimError) -> Self {
        // Types, statuses and descriptions from irmago server/errors.go.
        match e {
            SimError::SessionUnknown => {
                IrmaErr::new(400, "SESSION_UNKNOWN", "Unknown or expired session", "")
            }
            SimError::UnexpectedRequest => IrmaErr::new(
                403,
                "UNEXPECTED_REQUEST",
                "Unexpected request in this state",
                "",
            ),
            SimError::MalformedInput(m) => {
                IrmaErr::new(400, "MALFORMED_INPUT", "Input could not be parsed", m)
            }
            SimError::InvalidRequest(m) => {
                IrmaErr::new(400, "INVALID_REQUEST", "Invalid HTTP request", m)
            }
            SimError::TooManySessions => {
                IrmaErr::new(429, "TOO_MANY_REQUESTS", "Too many requests", "")
            }
            // irmago's client API answers ErrorUnknown with the subscription error's text.
            SimError::SessionFinished => IrmaErr::new(
                500,
                "EXCEPTION",
                "Encountered unexpected problem",
                "can't subscribe to server sent events of finished session",
            ),
            // The simulator's own errors (irmago has no calls).
            SimError::NoCall => IrmaErr::new(404, "NO_CALL", "No call for this session", ""),
            SimError::AlreadyCalled => IrmaErr::new(
                409,
                "ALREADY_CALLED",
                "This session already placed its call",
                "",
            ),
        }
    }
}

type Reply = Result<Response, IrmaErr>;

async fn not_found() -> IrmaErr {
    IrmaErr::new(404, "INVALID_REQUEST", "Invalid HTTP request", "")
}

#[derive(Deserialize)]
struct PageQuery {
    lang: Option<String>,
}

/// The demo page, Dutch by default, English with `?lang=en` or a browser preferring English.
async fn demo_page(
    State(sim): State<Simulator>,
    axum::extract::Query(query): axum::extract::Query<PageQuery>,
    headers: HeaderMap,
) -> Reply {
    if !sim.config().demo_page {
        return Err(not_found().await);
    }
    let lang = crate::http::portal::i18n::Lang::negotiate(
        query.lang.as_deref(),
        headers
            .get(axum::http::header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
    );
    Ok(Html(page::render(&sim, lang)).into_response())
}

/// `POST /session`, authenticated as irmago's token requestor authenticator does: a wrong
/// `Authorization` is 403 UNAUTHORIZED; a request no authenticator applies to (no header, or a
/// `text/plain` JWT, which the simulator does not verify) is 400 INVALID_REQUEST.
async fn start_session(State(sim): State<Simulator>, headers: HeaderMap, body: Bytes) -> Reply {
    let request = authenticate(&sim, &headers, &body)?;
    let parsed = parse_session_request(&request)?;
    let irmaqr = if parsed.message.is_some() {
        "signing"
    } else {
        "disclosing"
    };
    let new = match parsed.message {
        Some(message) => sim.start_signature(parsed.disclose, message)?,
        None => sim.start(parsed.disclose, parsed.client_return_url, parsed.augment)?,
    };
    let u = format!(
        "{}/irma/session/{}",
        sim.config().public_url,
        new.client_token
    );
    Ok(Json(json!({
        "sessionPtr": {"u": u, "irmaqr": irmaqr},
        "token": new.requestor_token,
        "frontendRequest": {
            "authorization": new.frontend_auth,
            "minProtocolVersion": "1.0",
            "maxProtocolVersion": "1.1",
        },
    }))
    .into_response())
}

/// Requestor authentication as irmago's authenticators do it (`server/requestorserver/auth.go`):
/// `application/json` with the pre-shared token in `Authorization` (wrong token: 403 UNAUTHORIZED),
/// or `application/json` without one under `no_auth`, or a `text/plain` HS256 JWT signed with the
/// configured requestor key. A request no authenticator applies to is 400 INVALID_REQUEST. Returns
/// the session request as JSON.
fn authenticate(
    sim: &Simulator,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<serde_json::Value, IrmaErr> {
    let header = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .unwrap_or("")
    };
    let (content_type, authorization) = (header(CONTENT_TYPE), header(AUTHORIZATION));
    let unauthenticated = || {
        IrmaErr::new(
            400,
            "INVALID_REQUEST",
            "Invalid HTTP request",
            "request could not be authenticated",
        )
    };
    let unauthorized = |m: &str| {
        IrmaErr::new(
            403,
            "UNAUTHORIZED",
            "You are not authorized to issue or verify this attribute",
            m,
        )
    };
    let config = sim.config();
    if content_type.starts_with("application/json") {
        match &config.requestor_token {
            Some(expected) if !authorization.is_empty() => {
                if authorization != expected {
                    return Err(unauthorized(""));
                }
            }
            None if config.requestor_hs256.is_none() => {}
            _ => return Err(unauthenticated()),
        }
        return serde_json::from_slice(body).map_err(|_| {
            IrmaErr::new(
                400,
                "INVALID_REQUEST",
                "Invalid HTTP request",
                "Failed to JSON unmarshal request bytes",
            )
        });
    }
    if !content_type.starts_with("text/plain") {
        return Err(IrmaErr::new(
            400,
            "INVALID_REQUEST",
            "Invalid HTTP request",
            format!("Unsupported Content-Type: {content_type}"),
        ));
    }
    let Some((issuer, key)) = &config.requestor_hs256 else {
        return Err(unauthenticated());
    };
    #[derive(Deserialize)]
    struct Claims {
        iss: String,
        sub: String,
        iat: u64,
        sprequest: Option<serde_json::Value>,
        absrequest: Option<serde_json::Value>,
    }
    let jwt = std::str::from_utf8(body)
        .map_err(|_| unauthenticated())?
        .trim();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    let key = jsonwebtoken::DecodingKey::from_secret(key).map_err(|_| unauthenticated())?;
    let claims = jsonwebtoken::decode::<Claims>(jwt, &key, &validation)
        .map_err(|e| {
            IrmaErr::new(
                400,
                "INVALID_REQUEST",
                "Invalid HTTP request",
                e.to_string(),
            )
        })?
        .claims;
    if &claims.iss != issuer {
        return Err(IrmaErr::new(
            400,
            "INVALID_REQUEST",
            "Invalid HTTP request",
            "Unknown requestor",
        ));
    }
    let now = crate::time::unix_now();
    if claims.iat > now + 60 {
        return Err(unauthorized("jwt not yet valid"));
    }
    if now.saturating_sub(claims.iat) > MAX_REQUEST_AGE {
        return Err(unauthorized("jwt too old"));
    }
    // irmago: a disclosure request under `sprequest`, a signature request under `absrequest`.
    let request = match claims.sub.as_str() {
        "verification_request" => claims.sprequest,
        "signature_request" => claims.absrequest,
        _ => None,
    };
    request.ok_or_else(|| {
        IrmaErr::new(
            400,
            "INVALID_REQUEST",
            "Invalid HTTP request",
            "the simulator only does disclosure and signature sessions",
        )
    })
}

/// A session request as the simulator reads it.
struct ParsedRequest {
    disclose: Condiscon,
    /// A signature request's message.
    message: Option<String>,
    client_return_url: Option<String>,
    augment: bool,
}

/// Parses a disclosure or signature request, bare or wrapped as `{"request": {...}}` (irmago
/// `ServiceProviderRequest`, `SignatureRequestorRequest`). Attribute requests may be strings or
/// `{"type": ...}` objects.
fn parse_session_request(value: &serde_json::Value) -> Result<ParsedRequest, SimError> {
    let bad = |m: &str| SimError::InvalidRequest(m.to_owned());
    let request = match value.get("request") {
        Some(inner) if value.get("@context").is_none() => inner,
        _ => value,
    };
    let message = match request.get("@context").and_then(|c| c.as_str()) {
        Some(DISCLOSURE_CONTEXT) => None,
        Some(SIGNATURE_CONTEXT) => match request.get("message") {
            Some(serde_json::Value::String(m)) if !m.is_empty() => Some(m.clone()),
            _ => return Err(bad("a signature request needs a message")),
        },
        _ => {
            return Err(bad(
                "the simulator only does disclosure and signature sessions (@context .../disclosure/v2 or .../signature/v2)",
            ))
        }
    };
    let outer = request
        .get("disclose")
        .and_then(|d| d.as_array())
        .ok_or_else(|| bad("disclose missing"))?;
    let mut disclose = Vec::with_capacity(outer.len());
    for discon in outer {
        let discon = discon
            .as_array()
            .ok_or_else(|| bad("disjunction is not a list"))?;
        let mut options = Vec::with_capacity(discon.len());
        for con in discon {
            let con = con
                .as_array()
                .ok_or_else(|| bad("conjunction is not a list"))?;
            let mut ids = Vec::with_capacity(con.len());
            for attr in con {
                let id = attr
                    .as_str()
                    .or_else(|| attr.get("type").and_then(|t| t.as_str()));
                match id {
                    Some(id) if valid_attribute_id(id) => ids.push(id.to_owned()),
                    _ => return Err(bad("attribute request is not an attribute identifier")),
                }
            }
            options.push(ids);
        }
        if options.is_empty() {
            return Err(bad("empty disjunction"));
        }
        disclose.push(options);
    }
    if disclose.is_empty() {
        return Err(bad("empty disclosure request"));
    }
    let client_return_url = match request.get("clientReturnUrl") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(bad("clientReturnUrl is not a string")),
    };
    let augment = request
        .get("augmentReturnUrl")
        .and_then(|a| a.as_bool())
        .unwrap_or(false);
    Ok(ParsedRequest {
        disclose,
        message,
        client_return_url,
        augment,
    })
}

async fn requestor_status(State(sim): State<Simulator>, Path(token): Path<String>) -> Reply {
    Ok(Json(sim.status(Key::Requestor(&token))?).into_response())
}

async fn requestor_result(State(sim): State<Simulator>, Path(token): Path<String>) -> Reply {
    Ok(Json(sim.result(Key::Requestor(&token))?).into_response())
}

async fn requestor_cancel(State(sim): State<Simulator>, Path(token): Path<String>) -> Reply {
    sim.cancel(Key::Requestor(&token))?;
    Ok(StatusCode::OK.into_response())
}

/// irmago's requestor server answers every failed subscription (unknown or finished session) with
/// 501 UNSUPPORTED and no message (`requestorserver` `handleStatusEvents`).
async fn requestor_events(State(sim): State<Simulator>, Path(token): Path<String>) -> Reply {
    events(sim, Key::Requestor(&token), Shape::String).map_err(|e| {
        if e.error == "SSE_DISABLED" {
            e
        } else {
            IrmaErr::new(501, "UNSUPPORTED", "Unsupported by this server", "")
        }
    })
}

async fn client_status(State(sim): State<Simulator>, Path(client): Path<String>) -> Reply {
    Ok(Json(sim.status(Key::Client(&client))?).into_response())
}

async fn client_events(State(sim): State<Simulator>, Path(client): Path<String>) -> Reply {
    events(sim, Key::Client(&client), Shape::String)
}

async fn client_cancel(State(sim): State<Simulator>, Path(client): Path<String>) -> Reply {
    sim.cancel(Key::Client(&client))?;
    Ok(StatusCode::OK.into_response())
}

/// What a browser or curl sees at the session pointer: what is asked, and how to answer as the app.
async fn client_info(State(sim): State<Simulator>, Path(client): Path<String>) -> Reply {
    let status = sim.status(Key::Client(&client))?;
    let disclose = sim
        .pending()
        .into_iter()
        .find(|p| p.client_token == client)
        .map(|p| p.disclose);
    Ok(Json(json!({
        "simulator": SIMULATOR_HEADER.1,
        "status": status,
        "disclose": disclose,
        "discloseEndpoint": format!("{}/session/{client}/disclose", sim.config().public_url),
    }))
    .into_response())
}

fn check_frontend(sim: &Simulator, client: &str, headers: &HeaderMap) -> Result<(), IrmaErr> {
    let auth = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    if sim.frontend_auth_ok(Key::Client(client), auth)? {
        Ok(())
    } else {
        Err(IrmaErr::new(
            403,
            "UNAUTHORIZED",
            "You are not authorized to access the session",
            "",
        ))
    }
}

async fn frontend_status(
    State(sim): State<Simulator>,
    Path(client): Path<String>,
    headers: HeaderMap,
) -> Reply {
    check_frontend(&sim, &client, &headers)?;
    let status = sim.status(Key::Client(&client))?;
    Ok(Json(json!({ "status": status })).into_response())
}

async fn frontend_events(
    State(sim): State<Simulator>,
    Path(client): Path<String>,
    headers: HeaderMap,
) -> Reply {
    check_frontend(&sim, &client, &headers)?;
    events(sim, Key::Client(&client), Shape::Object)
}

#[derive(Deserialize)]
struct OptionsRequest {
    #[serde(rename = "pairingMethod")]
    pairing_method: String,
}

/// Frontend options: only `pairingMethod: "none"`; the simulator has no pairing.
async fn frontend_options(
    State(sim): State<Simulator>,
    Path(client): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    check_frontend(&sim, &client, &headers)?;
    let request: OptionsRequest = serde_json::from_slice(&body)
        .map_err(|_| SimError::MalformedInput("options request".into()))?;
    if request.pairing_method != "none" {
        return Err(IrmaErr::new(
            501,
            "UNSUPPORTED",
            "Unsupported by this server",
            "the simulator has no pairing",
        ));
    }
    Ok(
        Json(json!({"@context": "https://irma.app/ld/options/v1", "pairingMethod": "none"}))
            .into_response(),
    )
}

async fn frontend_pairing_completed(
    State(sim): State<Simulator>,
    Path(client): Path<String>,
    headers: HeaderMap,
) -> Reply {
    check_frontend(&sim, &client, &headers)?;
    Err(SimError::UnexpectedRequest.into())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DiscloseBody {
    #[serde(default)]
    attributes: Option<BTreeMap<String, Option<String>>>,
    #[serde(default)]
    cancel: bool,
    #[serde(default, rename = "proofStatus")]
    proof_status: Option<ProofStatus>,
    /// The demo page's scan: answer the number to call instead of the return URL, so the link code
    /// never reaches the browser (**Bel nu** dials it server-side).
    #[serde(default, rename = "hideCode")]
    hide_code: bool,
}

/// The Yivi app stand-in. `{"attributes": {id: value|null, ...}}` discloses (an empty object: demo
/// values), `{"cancel": true}` declines; `"proofStatus"` forces a verdict. Answers what the app
/// learns: `{"status":"DONE","proofStatus":..,"clientReturnUrl":"tel:..."}`.
async fn app_disclose(
    State(sim): State<Simulator>,
    Path(client): Path<String>,
    body: Bytes,
) -> Reply {
    let body: DiscloseBody = serde_json::from_slice(&body).map_err(|e| {
        SimError::MalformedInput(format!(
            "expected {{\"attributes\": {{..}}}} or {{\"cancel\": true}} (error at column {})",
            e.column()
        ))
    })?;
    if !body.cancel && body.attributes.is_none() {
        return Err(
            SimError::MalformedInput("give \"attributes\" or \"cancel\": true".into()).into(),
        );
    }
    let outcome = sim.disclose(
        &client,
        Disclosure {
            attributes: body.attributes.unwrap_or_default(),
            cancel: body.cancel,
            force_proof_status: body.proof_status,
        },
    )?;
    let mut answer = json!({ "status": outcome.status });
    if let Some(p) = outcome.proof_status {
        answer["proofStatus"] = json!(p);
    }
    if let Some(url) = outcome.client_return_url {
        if body.hide_code {
            if let Some((number, _code)) = super::dial::parse_tel(url.expose()) {
                answer["number"] = json!(number);
            }
        } else {
            answer["clientReturnUrl"] = json!(url.into_inner());
        }
    }
    Ok(Json(answer).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CallBody {
    /// The code as tones in the audio instead of RFC 4733 events.
    #[serde(default)]
    tones: bool,
}

/// `POST /session/{clientToken}/call` (**Bel nu**): the app stand-in dials the session's `tel:`
/// return URL and keys in the code. `202`; the page follows with `GET` on the same path.
async fn app_call(State(sim): State<Simulator>, Path(client): Path<String>, body: Bytes) -> Reply {
    let body: CallBody = if body.is_empty() {
        CallBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            SimError::MalformedInput(format!(
                "expected {{\"tones\": false}} (error at column {})",
                e.column()
            ))
        })?
    };
    sim.place_call(&client, body.tones)?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "placed": true }))).into_response())
}

/// `GET /session/{clientToken}/call`: the steps of the session's call so far.
async fn app_call_progress(State(sim): State<Simulator>, Path(client): Path<String>) -> Reply {
    Ok(Json(sim.call_progress(&client)?).into_response())
}

/// `DELETE /session/{clientToken}/call`: the citizen hangs up.
async fn app_hang_up(State(sim): State<Simulator>, Path(client): Path<String>) -> Reply {
    let hung_up = sim.hang_up(&client)?;
    Ok(Json(json!({ "hungUp": hung_up })).into_response())
}

/// How a status event's data is written: irmago's requestor and client streams send a JSON string
/// (`"DONE"`), the frontend stream an `irma.FrontendSessionStatus` object (`{"status":"DONE"}`;
/// `nextSession` is omitted, the simulator chains no sessions).
#[derive(Clone, Copy)]
enum Shape {
    String,
    Object,
}

/// Delay of the `open` event after subscribing (irmago `subscribeServerSentEvents`: 200 ms, so a
/// client that just connected does not miss it).
const OPEN_EVENT_DELAY: Duration = Duration::from_millis(200);

fn events(sim: Simulator, key: Key<'_>, shape: Shape) -> Reply {
    if !sim.config().sse {
        // What irmago answers when started without --sse (its default).
        return Err(IrmaErr::new(
            500,
            "SSE_DISABLED",
            "Server sent events disabled",
            "",
        ));
    }
    let rx = sim.subscribe(key)?;
    let owned = match key {
        Key::Requestor(t) => OwnedKey::Requestor(t.to_owned()),
        Key::Client(c) => OwnedKey::Client(c.to_owned()),
    };
    let open_at = tokio::time::Instant::now() + OPEN_EVENT_DELAY;
    Ok(Sse::new(status_stream(sim, owned, rx, open_at, shape)).into_response())
}

enum OwnedKey {
    Requestor(String),
    Client(String),
}

impl OwnedKey {
    fn key(&self) -> Key<'_> {
        match self {
            OwnedKey::Requestor(t) => Key::Requestor(t),
            OwnedKey::Client(c) => Key::Client(c),
        }
    }
}

/// irmago's status stream: nothing about the current status (the subscriber asks `/status` for
/// that), an `open` event with no data at `open_at` (irmago's signal that the stream works; a
/// data-less event, so `EventSource` `message` listeners never see it), then one event per status
/// change, ending after a terminal status or when the session is forgotten. Wakes every second so
/// an idle session's TIMEOUT is applied and sent even when nothing else touches the simulator.
fn status_stream(
    sim: Simulator,
    key: OwnedKey,
    rx: broadcast::Receiver<SessionStatus>,
    open_at: tokio::time::Instant,
    shape: Shape,
) -> impl Stream<Item = Result<Event, Infallible>> {
    struct St {
        sim: Simulator,
        key: OwnedKey,
        rx: broadcast::Receiver<SessionStatus>,
        open_at: Option<tokio::time::Instant>,
        done: bool,
    }
    let start = St {
        sim,
        key,
        rx,
        open_at: Some(open_at),
        done: false,
    };
    futures_util::stream::unfold(start, move |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            let open_at = st.open_at;
            let open = async move {
                match open_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                received = st.rx.recv() => match received {
                    Ok(status) => {
                        st.done = status.is_terminal();
                        return Some((Ok(status_event(status, shape)), st));
                    }
                    // Fell behind (cannot happen with a handful of changes): go on with the
                    // oldest change still buffered.
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    // The session was forgotten.
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                () = open => {
                    st.open_at = None;
                    return Some((Ok(Event::default().event("open")), st));
                }
                () = tokio::time::sleep(Duration::from_secs(1)) => {
                    // Applies the lifetimes; a TIMEOUT arrives through `rx`.
                    if st.sim.status(st.key.key()).is_err() {
                        return None;
                    }
                }
            }
        }
    })
}

fn status_event(status: SessionStatus, shape: Shape) -> Event {
    let data = match shape {
        Shape::String => json!(status),
        Shape::Object => json!({ "status": status }),
    };
    Event::default().data(data.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::irma::simulator::SimulatorConfig;
    use axum::body::{Body, BodyDataStream};
    use axum::http::Request;
    use futures_util::StreamExt;
    use tower::ServiceExt;

    const NAME: &str = "irma-demo.gemeente.personalData.fullname";

    fn sim() -> Simulator {
        Simulator::new(SimulatorConfig::new("http://127.0.0.1:9/irma-sim"))
    }

    fn start(sim: &Simulator) -> super::super::NewSession {
        sim.start(vec![vec![vec![NAME.to_owned()]]], None, false)
            .unwrap()
    }

    async fn get(sim: &Simulator, path: &str, auth: Option<&str>) -> Response {
        let mut request = Request::get(path);
        if let Some(auth) = auth {
            request = request.header(AUTHORIZATION, auth);
        }
        simulator_router(sim.clone())
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    /// The next event of a stream as sent on the wire; `None` when the server ends the stream.
    async fn next(body: &mut BodyDataStream) -> Option<String> {
        let frame = tokio::time::timeout(Duration::from_secs(30), body.next())
            .await
            .expect("no event within 30 s")?;
        Some(String::from_utf8(frame.unwrap().to_vec()).unwrap())
    }

    async fn error(response: Response) -> (u16, serde_json::Value) {
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), MAX_BODY)
            .await
            .unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn frontend_stream_sends_open_then_only_changes_as_objects() {
        let s = sim();
        let new = start(&s);
        let subscribed = tokio::time::Instant::now();
        let response = get(
            &s,
            &format!("/irma/session/{}/frontend/statusevents", new.client_token),
            Some(&new.frontend_auth),
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[CONTENT_TYPE], "text/event-stream");
        let mut body = response.into_body().into_data_stream();
        // Not the current INITIALIZED (yivi-client 0.1.3 fails on it): irmago's data-less `open`.
        assert_eq!(next(&mut body).await.as_deref(), Some("event: open\n\n"));
        assert!(subscribed.elapsed() >= OPEN_EVENT_DELAY);
        s.disclose(&new.client_token, Disclosure::default())
            .unwrap();
        assert_eq!(
            next(&mut body).await.as_deref(),
            Some("data: {\"status\":\"CONNECTED\"}\n\n")
        );
        assert_eq!(
            next(&mut body).await.as_deref(),
            Some("data: {\"status\":\"DONE\"}\n\n")
        );
        assert_eq!(next(&mut body).await, None, "the stream ends at DONE");
    }

    #[tokio::test]
    async fn requestor_and_client_streams_send_quoted_changes() {
        let s = sim();
        let new = start(&s);
        let requestor = get(
            &s,
            &format!("/session/{}/statusevents", new.requestor_token),
            None,
        )
        .await;
        let client = get(
            &s,
            &format!("/irma/session/{}/statusevents", new.client_token),
            None,
        )
        .await;
        let mut requestor = requestor.into_body().into_data_stream();
        let mut client = client.into_body().into_data_stream();
        // The app answers before the `open` event is due: the changes come first.
        s.disclose(
            &new.client_token,
            Disclosure {
                cancel: true,
                ..Default::default()
            },
        )
        .unwrap();
        for body in [&mut requestor, &mut client] {
            assert_eq!(next(body).await.as_deref(), Some("data: \"CONNECTED\"\n\n"));
            assert_eq!(next(body).await.as_deref(), Some("data: \"CANCELLED\"\n\n"));
            assert_eq!(next(body).await, None);
        }
    }

    #[tokio::test]
    async fn an_idle_session_streams_its_timeout() {
        let s = sim();
        let new = start(&s);
        let response = get(
            &s,
            &format!("/session/{}/statusevents", new.requestor_token),
            None,
        )
        .await;
        let mut body = response.into_body().into_data_stream();
        assert_eq!(next(&mut body).await.as_deref(), Some("event: open\n\n"));
        s.advance_clock(s.config().session_lifetime);
        assert_eq!(
            next(&mut body).await.as_deref(),
            Some("data: \"TIMEOUT\"\n\n")
        );
        assert_eq!(next(&mut body).await, None);
    }

    #[tokio::test]
    async fn finished_and_unknown_sessions_refuse_subscriptions_as_irmago_does() {
        let s = sim();
        let new = start(&s);
        s.disclose(&new.client_token, Disclosure::default())
            .unwrap();
        let ct = &new.client_token;
        for (path, auth) in [
            (format!("/irma/session/{ct}/statusevents"), None),
            (
                format!("/irma/session/{ct}/frontend/statusevents"),
                Some(new.frontend_auth.as_str()),
            ),
        ] {
            let (status, body) = error(get(&s, &path, auth).await).await;
            assert_eq!(
                (status, &body["error"]),
                (500, &json!("EXCEPTION")),
                "{path}"
            );
        }
        let (status, body) = error(
            get(
                &s,
                &format!("/session/{}/statusevents", new.requestor_token),
                None,
            )
            .await,
        )
        .await;
        assert_eq!((status, &body["error"]), (501, &json!("UNSUPPORTED")));

        let (status, body) = error(get(&s, "/session/nosuchtoken/statusevents", None).await).await;
        assert_eq!((status, &body["error"]), (501, &json!("UNSUPPORTED")));
        let (status, body) = error(
            get(
                &s,
                "/irma/session/nosuchtoken/frontend/statusevents",
                Some("x"),
            )
            .await,
        )
        .await;
        assert_eq!((status, &body["error"]), (400, &json!("SESSION_UNKNOWN")));
    }
}
