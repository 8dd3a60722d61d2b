//! Who is asking: the holder of the API's bearer token, or an agent logged in to the portal (session
//! cookie). Shared by the portal's own routes and the agents' call API ([`crate::agent_api`]).
//!
//! Order of checks for a request that changes state (`state_changing`):
//! 1. an `Authorization` header decides alone: the right bearer token, or 401;
//! 2. with the session cookie but without `X-CSRF-Token`: 403, before the session or anything the
//!    request names is looked up;
//! 3. an unknown or expired session: 401;
//! 4. an `X-CSRF-Token` other than the session's: 403.

use std::net::IpAddr;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Instant;

use axum::http::{header, HeaderMap};
use subtle::ConstantTimeEq;

use crate::audit::AuditLog;
use crate::http::login::{
    random_csrf, LoginLimiter, LoginPolicy, Session, SessionId, SessionPolicy, SessionTable,
};
use crate::pii::Pii;
use crate::tenant::{AgentId, PasswordHash, TenantId, Tenants};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "vb_session";
/// The header that carries the session's CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The caller of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// The bearer token: every tenant.
    Token,
    /// A logged-in agent: their own tenant only.
    Agent(AgentSession),
}

impl Caller {
    /// Whether this caller may see and act on calls of `tenant`.
    pub fn sees(&self, tenant: &TenantId) -> bool {
        match self {
            Caller::Token => true,
            Caller::Agent(s) => &s.tenant == tenant,
        }
    }
}

/// A logged-in agent's request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentSession {
    pub id: SessionId,
    pub agent: AgentId,
    pub tenant: TenantId,
    pub csrf: String,
}

/// Why a request is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthError {
    /// No valid bearer token or session: 401.
    Unauthorized,
    /// A session cookie without the right `X-CSRF-Token` on a state-changing request: 403.
    Forbidden,
}

/// What a login attempt came to.
#[derive(Debug, PartialEq, Eq)]
pub enum LoginOutcome {
    /// A new session: its cookie value, and the session.
    LoggedIn(AgentSession),
    /// Wrong username or password; `known` names the tenant and agent when the username exists.
    Failed { known: Option<(TenantId, AgentId)> },
    /// Too many failures: try again after this many seconds (at least 1).
    Locked { retry_after_secs: u64 },
}

/// Sessions, the login limiter, and the bearer token.
pub struct AgentAuth {
    tenants: Arc<Tenants>,
    token: Arc<Pii<String>>,
    sessions: Mutex<SessionTable>,
    limiter: Mutex<LoginLimiter>,
    pub audit: Arc<dyn AuditLog>,
    /// Set `Secure` on the session cookie (HTTPS served by us).
    pub secure_cookies: bool,
}

/// Checked against when the username is unknown, so a wrong username costs as long as a wrong
/// password (no hint which part was wrong, not even in the timing).
static DUMMY_HASH: LazyLock<Option<PasswordHash>> =
    LazyLock::new(|| PasswordHash::hash(&random_csrf()).ok());

use crate::sync::lock;

impl AgentAuth {
    pub fn new(
        tenants: Arc<Tenants>,
        token: Arc<Pii<String>>,
        audit: Arc<dyn AuditLog>,
        sessions: SessionPolicy,
        logins: LoginPolicy,
    ) -> AgentAuth {
        AgentAuth {
            tenants,
            token,
            sessions: Mutex::new(SessionTable::new(sessions)),
            limiter: Mutex::new(LoginLimiter::new(logins)),
            audit,
            secure_cookies: false,
        }
    }

    pub fn tenants(&self) -> &Tenants {
        &self.tenants
    }

    /// Who sent `headers`; see the module docs for the order of checks.
    pub fn caller(
        &self,
        headers: &HeaderMap,
        state_changing: bool,
        now: Instant,
    ) -> Result<Caller, AuthError> {
        if let Some(value) = headers.get(header::AUTHORIZATION) {
            let presented = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .ok_or(AuthError::Unauthorized)?;
            let matches: bool = presented
                .trim()
                .as_bytes()
                .ct_eq(self.token.expose().as_bytes())
                .into();
            return if matches {
                Ok(Caller::Token)
            } else {
                Err(AuthError::Unauthorized)
            };
        }
        let cookie = session_cookie(headers).ok_or(AuthError::Unauthorized)?;
        let csrf = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        if state_changing && csrf.is_none() {
            return Err(AuthError::Forbidden);
        }
        let id = SessionId::decode(cookie).ok_or(AuthError::Unauthorized)?;
        let session = self.session(now, &id).ok_or(AuthError::Unauthorized)?;
        if state_changing && !csrf.is_some_and(|c| session.csrf_matches(c)) {
            return Err(AuthError::Forbidden);
        }
        Ok(Caller::Agent(AgentSession {
            id,
            agent: session.agent,
            tenant: session.tenant,
            csrf: session.csrf,
        }))
    }

    /// The live session `id` (marked as used now).
    pub fn session(&self, now: Instant, id: &SessionId) -> Option<Session> {
        lock(&self.sessions).touch(now, id).cloned()
    }

    /// Checks `username` and `password` (argon2id on the blocking pool), limited per username and
    /// per `address`; on success a new session.
    pub async fn login(
        &self,
        now: Instant,
        username: &str,
        password: zeroize::Zeroizing<String>,
        address: IpAddr,
    ) -> LoginOutcome {
        if let Err(wait) = lock(&self.limiter).attempt(now, username, address) {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            return LoginOutcome::Locked {
                retry_after_secs: secs.max(1),
            };
        }
        let found = self
            .tenants
            .agent(username)
            .map(|(t, a)| (t.id.clone(), a.id.clone(), a.password_hash.clone()));
        let hash = found
            .as_ref()
            .and_then(|(_, _, h)| h.clone())
            .or_else(|| DUMMY_HASH.clone());
        let checked = match hash {
            Some(hash) => tokio::task::spawn_blocking(move || hash.verify(&password))
                .await
                .unwrap_or(false),
            None => false,
        };
        let (tenant, agent) = match found {
            Some((tenant, agent, Some(_))) if checked => (tenant, agent),
            Some((tenant, agent, _)) => {
                return LoginOutcome::Failed {
                    known: Some((tenant, agent)),
                }
            }
            None => return LoginOutcome::Failed { known: None },
        };
        lock(&self.limiter).succeeded(username, address);
        let id = SessionId::random();
        let session = Session {
            agent: agent.clone(),
            tenant: tenant.clone(),
            csrf: random_csrf(),
            last_seen: now,
        };
        let csrf = session.csrf.clone();
        lock(&self.sessions).insert(now, id, session);
        LoginOutcome::LoggedIn(AgentSession {
            id,
            agent,
            tenant,
            csrf,
        })
    }

    /// Whether session `id` still lives at `now`, without counting this as a use (an open event
    /// stream is no sign of a person at the screen).
    pub fn is_live(&self, now: Instant, id: &SessionId) -> bool {
        lock(&self.sessions).is_live(now, id)
    }

    /// Ends session `id` (logout): its cookie is dead from now on.
    pub fn logout(&self, id: &SessionId) {
        lock(&self.sessions).remove(id);
    }

    /// The `Set-Cookie` value that starts session `id`.
    pub fn session_cookie(&self, id: &SessionId, secure: bool) -> String {
        format!(
            "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict{}",
            id.encode(),
            if secure || self.secure_cookies {
                "; Secure"
            } else {
                ""
            }
        )
    }

    /// The `Set-Cookie` value that makes the browser forget the session cookie.
    pub fn clear_cookie(&self, secure: bool) -> String {
        format!(
            "{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
            if secure || self.secure_cookies {
                "; Secure"
            } else {
                ""
            }
        )
    }
}

/// The session cookie's value, if the request has one.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::MemoryAudit;
    use crate::tenant::Tenant;
    use axum::http::HeaderValue;

    fn auth() -> AgentAuth {
        let mut demo = Tenant::demo();
        if let Some(agent) = demo.agents.values_mut().next() {
            agent.password_hash = Some(PasswordHash::hash("pw-demo").unwrap());
        }
        AgentAuth::new(
            Arc::new(Tenants::new(vec![demo])),
            Arc::new(Pii::new("tok".into())),
            Arc::new(MemoryAudit::new()),
            SessionPolicy::default(),
            LoginPolicy::default(),
        )
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    async fn logged_in(auth: &AgentAuth, now: Instant) -> AgentSession {
        let outcome = auth
            .login(
                now,
                "agent",
                zeroize::Zeroizing::new("pw-demo".into()),
                "127.0.0.1".parse().unwrap(),
            )
            .await;
        match outcome {
            LoginOutcome::LoggedIn(s) => s,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn the_cookie_needs_the_csrf_header_on_changes_only() {
        let auth = auth();
        let now = Instant::now();
        let s = logged_in(&auth, now).await;
        let cookie = format!("other=1; {SESSION_COOKIE}={}", s.id.encode());
        let plain = headers(&[("cookie", &cookie)]);
        assert!(matches!(
            auth.caller(&plain, false, now),
            Ok(Caller::Agent(_))
        ));
        assert_eq!(auth.caller(&plain, true, now), Err(AuthError::Forbidden));
        let wrong = headers(&[("cookie", &cookie), ("x-csrf-token", "nope")]);
        assert_eq!(auth.caller(&wrong, true, now), Err(AuthError::Forbidden));
        let right = headers(&[("cookie", &cookie), ("x-csrf-token", &s.csrf)]);
        assert_eq!(auth.caller(&right, true, now), Ok(Caller::Agent(s.clone())));
        // A dead or made-up session without the header: still 403 first.
        let made_up = headers(&[("cookie", "vb_session=AAAA")]);
        assert_eq!(auth.caller(&made_up, true, now), Err(AuthError::Forbidden));
        assert_eq!(
            auth.caller(&made_up, false, now),
            Err(AuthError::Unauthorized)
        );
        auth.logout(&s.id);
        assert_eq!(auth.caller(&right, true, now), Err(AuthError::Unauthorized));
        assert_eq!(
            auth.caller(&plain, false, now),
            Err(AuthError::Unauthorized)
        );
    }

    #[tokio::test]
    async fn the_bearer_token_decides_alone() {
        let auth = auth();
        let now = Instant::now();
        let s = logged_in(&auth, now).await;
        let cookie = format!("{SESSION_COOKIE}={}", s.id.encode());
        let good = headers(&[("authorization", "Bearer tok"), ("cookie", &cookie)]);
        assert_eq!(auth.caller(&good, true, now), Ok(Caller::Token));
        let bad = headers(&[("authorization", "Bearer nope"), ("cookie", &cookie)]);
        assert_eq!(auth.caller(&bad, false, now), Err(AuthError::Unauthorized));
        assert_eq!(
            auth.caller(&HeaderMap::new(), false, now),
            Err(AuthError::Unauthorized)
        );
    }

    #[tokio::test]
    async fn wrong_username_and_wrong_password_look_alike() {
        let auth = auth();
        let now = Instant::now();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let wrong_pw = auth
            .login(now, "agent", zeroize::Zeroizing::new("nope".into()), ip)
            .await;
        assert_eq!(
            wrong_pw,
            LoginOutcome::Failed {
                known: Some((TenantId("demo".into()), AgentId("agent".into())))
            }
        );
        let unknown = auth
            .login(
                now,
                "mallory",
                zeroize::Zeroizing::new("pw-demo".into()),
                ip,
            )
            .await;
        assert_eq!(unknown, LoginOutcome::Failed { known: None });
        for _ in 0..4 {
            auth.login(now, "agent", zeroize::Zeroizing::new("x".into()), ip)
                .await;
        }
        assert_eq!(
            auth.login(now, "agent", zeroize::Zeroizing::new("pw-demo".into()), ip)
                .await,
            LoginOutcome::Locked {
                retry_after_secs: 1
            },
            "locked even with the right password"
        );
    }

    #[test]
    fn cookies_are_http_only_strict_and_secure_over_tls() {
        let mut auth = auth();
        let id = SessionId::from_bytes([7; 32]);
        let plain = auth.session_cookie(&id, false);
        assert_eq!(
            plain,
            format!(
                "vb_session={}; Path=/; HttpOnly; SameSite=Strict",
                id.encode()
            )
        );
        assert!(auth.session_cookie(&id, true).ends_with("; Secure"));
        auth.secure_cookies = true;
        assert!(auth.session_cookie(&id, false).ends_with("; Secure"));
        assert!(auth.clear_cookie(false).contains("Max-Age=0"));
    }
}
