//! The agents' portal (issue 10): log in, see the tenant's callers live, take a call onto your
//! own softphone.
//!
//! | route | what |
//! | --- | --- |
//! | `GET /portal` | the page ([`page`]): the login form, or the live call list (`?lang=en`) |
//! | `GET /portal/portal.js`, `/portal/portal.css`, `/portal/favicon.svg` | its script, style and icon, embedded in the binary |
//! | `POST /api/v1/login` | `{"username","password"}` → 200 `{"agent","tenant","csrf","name"}` and the session cookie; 401 `invalid_credentials`; 429 `locked` |
//! | `POST /api/v1/logout` | ends the session (cookie and `X-CSRF-Token`) → 204 |
//! | `GET /api/v1/audit` | the audit log ([`crate::audit`]): a supervisor's own tenant; the bearer token sees all (`?tenant=`) |
//!
//! The call list itself comes from the agents' API ([`crate::agent_api`]), which takes the session
//! cookie as well as the bearer token ([`auth`]). Every response of the portal and that API carries
//! [`security_headers`]: a strict Content-Security-Policy (`default-src 'self'`, no inline script),
//! no framing, no caching, no referrer.

pub mod auth;
pub mod i18n;
pub mod page;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::extract::{DefaultBodyLimit, FromRequest, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::audit::{AuditAction, AuditEntry, AuditVia};
use crate::http::{ApiError, ClientAddr};
pub use auth::{AgentAuth, AgentSession, AuthError, Caller, CSRF_HEADER, SESSION_COOKIE};
use i18n::Lang;

/// The page's script.
pub const PORTAL_JS: &str = include_str!("../../assets/portal/portal.js");
/// The page's style.
pub const PORTAL_CSS: &str = include_str!("../../assets/portal/portal.css");
/// The tab's icon.
pub const FAVICON_SVG: &str = include_str!("../../assets/portal/favicon.svg");

/// The Content-Security-Policy of the portal and the agents' API.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// Largest login or logout body.
const MAX_BODY: usize = 2048;
/// Most audit entries one request gets.
const MAX_AUDIT: usize = 1000;

/// The portal's routes.
pub fn router(auth: Arc<AgentAuth>) -> Router {
    Router::new()
        .route("/portal", get(portal_page))
        .route("/portal/portal.js", get(portal_js))
        .route("/portal/portal.css", get(portal_css))
        .route("/portal/favicon.svg", get(favicon))
        .route("/api/v1/login", post(login))
        .route("/api/v1/logout", post(logout))
        .route("/api/v1/audit", get(audit_log))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(auth)
}

/// Adds the portal's protective headers to `response` (CSP, no framing, no sniffing, no caching,
/// no referrer). Also layered on the agents' API, whose answers hold personal data.
pub async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let set = |h: &mut HeaderMap, name: header::HeaderName, value: &'static str| {
        h.entry(name).or_insert(HeaderValue::from_static(value));
    };
    set(headers, header::CONTENT_SECURITY_POLICY, CSP);
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::REFERRER_POLICY, "no-referrer");
    set(headers, header::CACHE_CONTROL, "no-store");
    response
}

#[derive(Debug, Deserialize)]
struct LangQuery {
    lang: Option<String>,
}

fn lang_of(query: &LangQuery, headers: &HeaderMap) -> Lang {
    Lang::negotiate(
        query.lang.as_deref(),
        headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
    )
}

async fn portal_page(
    State(auth): State<Arc<AgentAuth>>,
    Query(query): Query<LangQuery>,
    headers: HeaderMap,
) -> Response {
    let lang = lang_of(&query, &headers);
    let session = auth::session_cookie(&headers)
        .and_then(login_id)
        .and_then(|id| auth.session(Instant::now(), &id));
    let found = session.as_ref().and_then(|s| {
        let tenant = auth.tenants().by_id(&s.tenant)?;
        Some((s, tenant, tenant.agents.get(&s.agent)?))
    });
    let markup = match found {
        Some((session, tenant, agent)) => page::calls(
            lang,
            &page::PageAgent {
                username: &agent.id.0,
                name: &agent.display_name,
                tenant_name: &tenant.display_name,
                csrf: &session.csrf,
                supervisor: agent.supervisor,
                extra_requests: &tenant.extra_requests,
            },
        ),
        None => page::login(lang),
    };
    let mut response = Html(markup.into_string()).into_response();
    response.headers_mut().insert(
        header::VARY,
        HeaderValue::from_static("Accept-Language, Cookie"),
    );
    response
}

fn login_id(cookie: &str) -> Option<crate::http::login::SessionId> {
    crate::http::login::SessionId::decode(cookie)
}

async fn portal_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PORTAL_JS,
    )
}

async fn portal_css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PORTAL_CSS,
    )
}

async fn favicon() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        FAVICON_SVG,
    )
}

#[derive(Deserialize)]
struct LoginBody {
    username: String,
    password: String,
}

#[derive(Debug, Serialize)]
struct LoginJson {
    agent: String,
    tenant: String,
    csrf: String,
    name: String,
}

/// Whether a browser's request comes from our own pages: an `Origin` header, when present, must
/// name the host it was sent to — `Host`, or `X-Forwarded-Host` from a reverse proxy that rewrites
/// `Host`. Non-browser clients send no `Origin`. (Defence in depth: the JSON body already keeps
/// other sites' forms out, and the session cookie is `SameSite=Strict`.)
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let authority = origin.to_str().ok().and_then(|o| {
        o.strip_prefix("https://")
            .or_else(|| o.strip_prefix("http://"))
    });
    let Some(authority) = authority else {
        return false;
    };
    [header::HOST.as_str(), "x-forwarded-host"]
        .into_iter()
        .filter_map(|name| headers.get(name).and_then(|v| v.to_str().ok()))
        .flat_map(|v| v.split(','))
        .any(|host| host.trim().eq_ignore_ascii_case(authority))
}

/// The request came over TLS as the browser sees it: our own HTTPS, or a proxy in front saying so.
fn secure_request(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

async fn login(
    State(auth): State<Arc<AgentAuth>>,
    ClientAddr(address): ClientAddr,
    request: Request,
) -> Response {
    match login_inner(&auth, address, request).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn login_inner(
    auth: &Arc<AgentAuth>,
    address: IpAddr,
    request: Request,
) -> Result<Response, ApiError> {
    let headers = request.headers().clone();
    if !same_origin(&headers) {
        return Err(ApiError::CsrfOrSiteRefused);
    }
    let Json(body) = Json::<LoginBody>::from_request(request, &())
        .await
        .map_err(|_| ApiError::BadRequest(None))?;
    let password = zeroize::Zeroizing::new(body.password);
    let username = body.username.trim().to_owned();
    if username.is_empty() || username.len() > 128 || password.len() > 1024 {
        return Err(ApiError::InvalidCredentials);
    }
    let now = Instant::now();
    match auth.login(now, &username, password, address).await {
        auth::LoginOutcome::Locked { retry_after_secs } => {
            tracing::warn!(target: "audit", "portal login refused: too many failures");
            Err(ApiError::Locked { retry_after_secs })
        }
        auth::LoginOutcome::Failed { known } => {
            match known {
                Some((tenant, agent)) => {
                    let entry = AuditEntry::new(
                        SystemTime::now(),
                        &tenant,
                        Some(&agent.0),
                        AuditAction::LoginFailed,
                        AuditVia::Portal,
                    );
                    crate::audit::record(auth.audit.clone(), entry).await;
                }
                None => tracing::info!(target: "audit", "portal login with an unknown username"),
            }
            Err(ApiError::InvalidCredentials)
        }
        auth::LoginOutcome::LoggedIn(session) => {
            let entry = AuditEntry::new(
                SystemTime::now(),
                &session.tenant,
                Some(&session.agent.0),
                AuditAction::Login,
                AuditVia::Portal,
            );
            crate::audit::record(auth.audit.clone(), entry).await;
            let name = auth
                .tenants()
                .by_id(&session.tenant)
                .and_then(|t| t.agents.get(&session.agent))
                .map(|a| a.display_name.clone())
                .unwrap_or_default();
            let cookie = auth.session_cookie(&session.id, secure_request(&headers));
            let body = LoginJson {
                agent: session.agent.0,
                tenant: session.tenant.0,
                csrf: session.csrf,
                name,
            };
            let mut response = Json(body).into_response();
            let cookie = HeaderValue::from_str(&cookie).map_err(ApiError::internal)?;
            response.headers_mut().insert(header::SET_COOKIE, cookie);
            Ok(response)
        }
    }
}

async fn logout(State(auth): State<Arc<AgentAuth>>, headers: HeaderMap) -> Response {
    let caller = match auth.caller(&headers, true, Instant::now()) {
        Ok(c) => c,
        Err(e) => return ApiError::portal_auth(e).into_response(),
    };
    let Caller::Agent(session) = caller else {
        return ApiError::BadRequest(None).into_response();
    };
    auth.logout(&session.id);
    let entry = AuditEntry::new(
        SystemTime::now(),
        &session.tenant,
        Some(&session.agent.0),
        AuditAction::Logout,
        AuditVia::Portal,
    );
    crate::audit::record(auth.audit.clone(), entry).await;
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = HeaderValue::from_str(&auth.clear_cookie(secure_request(&headers))) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

#[derive(Debug, Deserialize)]
struct AuditQuery {
    tenant: Option<String>,
    limit: Option<usize>,
}

/// One audit row as the API shows it.
#[derive(Debug, Serialize)]
struct AuditJson {
    /// RFC 3339, UTC, milliseconds.
    at: String,
    tenant: String,
    agent: Option<String>,
    action: AuditAction,
    via: AuditVia,
    call: Option<u64>,
    verified: Option<bool>,
    /// The extra request's id (request actions).
    #[serde(skip_serializing_if = "Option::is_none")]
    request: Option<String>,
}

async fn audit_log(
    State(auth): State<Arc<AgentAuth>>,
    Query(query): Query<AuditQuery>,
    headers: HeaderMap,
) -> Result<Json<Vec<AuditJson>>, ApiError> {
    let caller = auth
        .caller(&headers, false, Instant::now())
        .map_err(ApiError::portal_auth)?;
    let tenant = match caller {
        Caller::Token => query.tenant,
        Caller::Agent(session) => {
            let supervisor = auth
                .tenants()
                .by_id(&session.tenant)
                .and_then(|t| t.agents.get(&session.agent))
                .is_some_and(|a| a.supervisor);
            if !supervisor {
                return Err(ApiError::NotSupervisor);
            }
            Some(session.tenant.0)
        }
    };
    let limit = query.limit.unwrap_or(200).clamp(1, MAX_AUDIT);
    let rows = crate::audit::recent(auth.audit.clone(), tenant, limit)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(
        rows.into_iter()
            .map(|e| AuditJson {
                at: crate::time::rfc3339_millis(e.at()),
                tenant: e.tenant,
                agent: e.agent,
                action: e.action,
                via: e.via,
                call: e.call,
                verified: e.verified,
                request: e.request,
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::MemoryAudit;
    use crate::http::login::{LoginPolicy, SessionPolicy};
    use crate::pii::Pii;
    use crate::tenant::{Agent, AgentId, PasswordHash, Tenant, TenantId, Tenants};
    use axum::body::Body;
    use tower::ServiceExt;

    fn app() -> (Router, Arc<AgentAuth>) {
        let hash = PasswordHash::hash("pw-demo").unwrap();
        let mut demo = Tenant::demo();
        for a in demo.agents.values_mut() {
            a.password_hash = Some(hash.clone());
            a.supervisor = true;
        }
        demo.agents.insert(
            AgentId("clerk".into()),
            Agent {
                id: AgentId("clerk".into()),
                display_name: "Clerk".into(),
                sip_username: "clerk".into(),
                password_hash: Some(hash),
                supervisor: false,
                srtp: crate::tenant::SrtpPolicy::default(),
            },
        );
        let auth = Arc::new(AgentAuth::new(
            Arc::new(Tenants::new(vec![demo])),
            Arc::new(Pii::new("tok".into())),
            Arc::new(MemoryAudit::new()),
            SessionPolicy::default(),
            LoginPolicy::default(),
        ));
        (router(auth.clone()), auth)
    }

    async fn send(app: &Router, req: axum::http::Request<Body>) -> (StatusCode, HeaderMap, String) {
        let response = app.clone().oneshot(req).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            headers,
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }

    fn login_req(user: &str, pw: &str) -> axum::http::Request<Body> {
        axum::http::Request::post("/api/v1/login")
            .header("content-type", "application/json")
            .body(Body::from(
                serde_json::json!({"username": user, "password": pw}).to_string(),
            ))
            .unwrap()
    }

    /// Logs in; the cookie pair (`vb_session=…`) and the CSRF token.
    async fn log_in(app: &Router, user: &str) -> (String, String) {
        let (status, headers, body) = send(app, login_req(user, "pw-demo")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let cookie = headers[header::SET_COOKIE].to_str().unwrap();
        assert!(cookie.contains("; HttpOnly") && cookie.contains("; SameSite=Strict"));
        assert!(cookie.contains("; Path=/") && !cookie.contains("Secure"));
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["agent"], user);
        assert_eq!(json["tenant"], "demo");
        let pair = cookie.split(';').next().unwrap().to_owned();
        (pair, json["csrf"].as_str().unwrap().to_owned())
    }

    #[tokio::test]
    async fn the_page_is_the_login_form_then_the_call_list_with_the_csrf_token() {
        let (app, _) = app();
        let get = |cookie: Option<&str>, uri: &str| {
            let mut b = axum::http::Request::get(uri);
            if let Some(c) = cookie {
                b = b.header("cookie", c);
            }
            b.body(Body::empty()).unwrap()
        };
        let (status, headers, html) = send(&app, get(None, "/portal")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(html.contains(">Gebruikersnaam</label>"));
        assert!(headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("default-src 'self'"));
        assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
        let (cookie, csrf) = log_in(&app, "agent").await;
        let (_, _, html) = send(&app, get(Some(&cookie), "/portal?lang=en")).await;
        assert!(html.contains(&format!(r#"<meta name="csrf-token" content="{csrf}">"#)));
        assert!(html.contains("Logged in as Demo agent (Gemeente Demodam)"));
        let (_, headers, js) = send(&app, get(None, "/portal/portal.js")).await;
        assert!(headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/javascript"));
        assert!(js.contains("X-CSRF-Token"));
    }

    #[tokio::test]
    async fn wrong_credentials_get_one_generic_answer_and_then_a_lockout() {
        let (app, _) = app();
        let (s1, _, b1) = send(&app, login_req("agent", "wrong")).await;
        let (s2, _, b2) = send(&app, login_req("nobody", "pw-demo")).await;
        assert_eq!(
            (s1, s2),
            (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED)
        );
        assert_eq!(b1, b2, "no hint which part was wrong");
        for _ in 0..4 {
            send(&app, login_req("agent", "wrong")).await;
        }
        let (status, headers, body) = send(&app, login_req("agent", "pw-demo")).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert_eq!(headers[header::RETRY_AFTER], "1");
        assert!(body.contains(r#""error":"locked""#));
        let (status, _, _) = send(&app, login_req("clerk", "pw-demo")).await;
        assert_eq!(status, StatusCode::OK, "another username is not locked");
    }

    #[tokio::test]
    async fn a_login_from_another_site_is_refused() {
        let (app, _) = app();
        let mut req = login_req("agent", "pw-demo");
        req.headers_mut()
            .insert("origin", HeaderValue::from_static("https://evil.example"));
        req.headers_mut()
            .insert("host", HeaderValue::from_static("portal.example"));
        assert_eq!(send(&app, req).await.0, StatusCode::FORBIDDEN);
        let mut req = login_req("agent", "pw-demo");
        req.headers_mut()
            .insert("origin", HeaderValue::from_static("https://portal.example"));
        req.headers_mut()
            .insert("host", HeaderValue::from_static("portal.example"));
        assert_eq!(send(&app, req).await.0, StatusCode::OK);
        // Behind a proxy that rewrites Host but says where the browser went.
        let mut req = login_req("agent", "pw-demo");
        let h = req.headers_mut();
        h.insert("origin", HeaderValue::from_static("https://portal.example"));
        h.insert("host", HeaderValue::from_static("127.0.0.1:8080"));
        h.insert(
            "x-forwarded-host",
            HeaderValue::from_static("portal.example"),
        );
        assert_eq!(send(&app, req).await.0, StatusCode::OK);
        let mut req = login_req("agent", "pw-demo");
        req.headers_mut()
            .insert("origin", HeaderValue::from_static("null"));
        assert_eq!(send(&app, req).await.0, StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn logout_needs_the_csrf_token_and_kills_the_cookie() {
        let (app, _) = app();
        let (cookie, csrf) = log_in(&app, "agent").await;
        let logout = |csrf: Option<&str>| {
            let mut b = axum::http::Request::post("/api/v1/logout").header("cookie", &cookie);
            if let Some(c) = csrf {
                b = b.header("x-csrf-token", c);
            }
            b.body(Body::empty()).unwrap()
        };
        assert_eq!(send(&app, logout(None)).await.0, StatusCode::FORBIDDEN);
        let (status, headers, _) = send(&app, logout(Some(&csrf))).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert!(headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0"));
        assert_eq!(
            send(&app, logout(Some(&csrf))).await.0,
            StatusCode::UNAUTHORIZED
        );
        let page = axum::http::Request::get("/portal")
            .header("cookie", &cookie)
            .body(Body::empty())
            .unwrap();
        assert!(send(&app, page).await.2.contains(">Wachtwoord</label>"));
    }

    #[tokio::test]
    async fn supervisors_read_their_tenants_audit_log_and_clerks_do_not() {
        let (app, auth) = app();
        let (boss, _) = log_in(&app, "agent").await;
        let (clerk, _) = log_in(&app, "clerk").await;
        send(&app, login_req("clerk", "typo")).await;
        auth.audit
            .append(&AuditEntry::new(
                SystemTime::now(),
                &TenantId("elsewhere".into()),
                Some("x"),
                AuditAction::Login,
                AuditVia::Portal,
            ))
            .unwrap();
        let audit = |cookie: &str| {
            axum::http::Request::get("/api/v1/audit")
                .header("cookie", cookie)
                .body(Body::empty())
                .unwrap()
        };
        let (status, _, body) = send(&app, audit(&boss)).await;
        assert_eq!(status, StatusCode::OK);
        let rows: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
        let actions: Vec<&str> = rows.iter().filter_map(|r| r["action"].as_str()).collect();
        assert_eq!(actions, ["login_failed", "login", "login"]);
        assert!(rows.iter().all(|r| r["tenant"] == "demo"));
        assert_eq!(rows[0]["agent"], "clerk");
        assert!(!body.contains("typo"));
        let (status, _, body) = send(&app, audit(&clerk)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        let all = axum::http::Request::get("/api/v1/audit")
            .header("authorization", "Bearer tok")
            .body(Body::empty())
            .unwrap();
        let rows: Vec<serde_json::Value> = serde_json::from_str(&send(&app, all).await.2).unwrap();
        assert_eq!(rows.len(), 4);
    }
}
