//! The agent phone's registration (RFC 3261 §10.2): REGISTER with digest credentials (§22.2, the
//! client side of RFC 7616 through [`sip::auth::authorize`]), a refresh before the binding lapses,
//! back-off while the registrar cannot be reached or refuses, and the unREGISTER (`Expires: 0`) on
//! shutdown.
//!
//! Sans-IO and without an endpoint of its own: it builds the REGISTERs, the phone sends them and
//! hands back what came of each one — a response ([`Registration::handle_response`]) or none
//! ([`Registration::handle_no_response`]). Its one timer is when to send the next REGISTER.
//! Polling order: after each `handle_*` send the request it returned, drain
//! [`Registration::poll_event`], then read [`Registration::poll_timeout`].
//!
//! All REGISTERs share one Call-ID and count CSeq up (§10.2.4). After the first challenge every
//! REGISTER carries credentials for the last nonce with the next nonce-count, so a refresh usually
//! takes one round trip; a `stale=true` challenge is answered at once, a second challenge right
//! after fresh credentials means the password is wrong and the phone backs off.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use sip::auth::{authorize, Challenge};
use sip::message::{HeaderName, Method, Request, Response, StatusCode, Uri};

use super::AgentPhoneEvent;

/// First retry after a failure; doubled per failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Wait after the registrar refused our credentials: retrying sooner only feeds its failed-login
/// limiter, which would then block every phone on this address.
const REFUSED_BACKOFF: Duration = Duration::from_secs(60);
/// Refresh this long before the binding lapses (at most half the interval).
const REFRESH_MARGIN: Duration = Duration::from_secs(30);

/// What a registration needs to know.
#[derive(Clone)]
pub(super) struct RegistrationConfig {
    /// Request-URI: the registrar, `sip:HOST:PORT`.
    pub registrar: Uri,
    /// From and To: `sip:USER@HOST:PORT`.
    pub aor: Uri,
    /// Our Contact URI.
    pub contact: Uri,
    pub username: String,
    pub password: String,
    /// The interval we ask for, in seconds.
    pub expires: u32,
    /// Call-ID of every REGISTER (fresh per phone).
    pub call_id: String,
    /// From tag of every REGISTER.
    pub from_tag: String,
    /// Client nonce for digest responses.
    pub cnonce: String,
}

impl fmt::Debug for RegistrationConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistrationConfig")
            .field("registrar", &self.registrar)
            .field("aor", &self.aor)
            .field("contact", &self.contact)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// Where the registration stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The next REGISTER (first, refresh or retry) goes out at `at`.
    Waiting { at: Instant },
    /// A REGISTER asking for `expires` seconds (0: the unREGISTER) awaits its final response.
    /// `fresh_credentials`: it answered a challenge that came in reply to the one before it.
    Sent {
        expires: u32,
        fresh_credentials: bool,
    },
    /// Shut down: the unREGISTER was answered (or never would be), or nothing was registered.
    Done,
}

/// One phone's registration with its registrar. See the module docs.
#[derive(Debug)]
pub(super) struct Registration {
    config: RegistrationConfig,
    state: State,
    /// When the binding the registrar last confirmed lapses.
    registered_until: Option<Instant>,
    cseq: u32,
    /// The last digest challenge, answered by every later REGISTER; `proxy`: it came in a 407.
    challenge: Option<(Challenge, bool)>,
    nonce_count: u32,
    /// Failures in a row, for the back-off.
    failures: u32,
    events: VecDeque<AgentPhoneEvent>,
}

impl Registration {
    /// A registration whose first REGISTER goes out at `now` (on the next `handle_timeout`).
    pub fn new(config: RegistrationConfig, now: Instant) -> Self {
        Registration {
            config,
            state: State::Waiting { at: now },
            registered_until: None,
            cseq: 0,
            challenge: None,
            nonce_count: 0,
            failures: 0,
            events: VecDeque::new(),
        }
    }

    /// Whether the registrar holds our binding at `now`.
    pub fn is_registered(&self, now: Instant) -> bool {
        self.registered_until.is_some_and(|until| now < until)
    }

    /// Whether the unREGISTER is through (or there was nothing to undo).
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Waiting { at } => Some(at),
            State::Sent { .. } | State::Done => None,
        }
    }

    pub fn poll_event(&mut self) -> Option<AgentPhoneEvent> {
        self.events.pop_front()
    }

    /// The REGISTER due at `now`, if one is.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Request> {
        match self.state {
            State::Waiting { at } if now >= at => Some(self.send(self.config.expires, false)),
            _ => None,
        }
    }

    /// The final (or provisional) response to the last REGISTER sent. Returns the REGISTER to
    /// send next right away (credentials for a challenge, a longer interval after 423).
    pub fn handle_response(&mut self, now: Instant, response: &Response) -> Option<Request> {
        let State::Sent {
            expires,
            fresh_credentials,
        } = self.state
        else {
            return None;
        };
        let status = response.status;
        match status.as_u16() {
            100..=199 => None,
            200..=299 if expires == 0 => {
                self.leave();
                None
            }
            200..=299 => {
                let granted = self.granted(response, expires);
                let was_registered = self.is_registered(now);
                self.registered_until = Some(now + Duration::from_secs(u64::from(granted)));
                self.failures = 0;
                let interval = Duration::from_secs(u64::from(granted));
                let margin = REFRESH_MARGIN.min(interval / 2);
                self.state = State::Waiting {
                    at: now + interval - margin,
                };
                if !was_registered {
                    self.events
                        .push_back(AgentPhoneEvent::Registered { expires: interval });
                }
                None
            }
            401 | 407 => {
                let proxy = status == StatusCode::PROXY_AUTHENTICATION_REQUIRED;
                let header = if proxy {
                    HeaderName::ProxyAuthenticate
                } else {
                    HeaderName::WwwAuthenticate
                };
                // The registrar lists its algorithms in order of preference; take the first one
                // `authorize` can answer (qop=auth).
                let challenge = response
                    .headers
                    .get_all(&header)
                    .filter_map(|v| Challenge::parse(v))
                    .find(|c| c.qop_auth);
                match challenge {
                    Some(c) if !fresh_credentials || c.stale => {
                        self.challenge = Some((c, proxy));
                        self.nonce_count = 0;
                        Some(self.send(expires, true))
                    }
                    _ => {
                        // Refused right after fresh credentials (a wrong password), or a
                        // challenge we cannot answer.
                        self.challenge = None;
                        self.fail(now, Some(status.as_u16()), REFUSED_BACKOFF);
                        None
                    }
                }
            }
            423 if expires != 0 => {
                let min = response.headers.min_expires().ok().flatten();
                match min {
                    Some(min) if min > expires => {
                        self.config.expires = min;
                        Some(self.send(min, false))
                    }
                    _ => {
                        self.fail(now, Some(423), Duration::ZERO);
                        None
                    }
                }
            }
            code => {
                let wait = match code {
                    403 => REFUSED_BACKOFF,
                    _ => response
                        .headers
                        .retry_after()
                        .and_then(Result::ok)
                        .map(|r| Duration::from_secs(u64::from(r.delta)).min(MAX_BACKOFF * 5))
                        .unwrap_or(Duration::ZERO),
                };
                self.fail(now, Some(code), wait);
                None
            }
        }
    }

    /// The last REGISTER got no final response (Timer F, or the transport failed).
    pub fn handle_no_response(&mut self, now: Instant) {
        if let State::Sent { .. } = self.state {
            self.fail(now, None, Duration::ZERO);
        }
    }

    /// Shutting down: the unREGISTER to send, or `None` when nothing is registered (then the
    /// registration is done at once).
    pub fn shutdown(&mut self, now: Instant) -> Option<Request> {
        match self.state {
            State::Done | State::Sent { expires: 0, .. } => None,
            State::Sent { .. } => Some(self.send(0, false)),
            State::Waiting { .. } if self.is_registered(now) => Some(self.send(0, false)),
            State::Waiting { .. } => {
                self.leave();
                None
            }
        }
    }

    fn leave(&mut self) {
        self.state = State::Done;
        if self.registered_until.take().is_some() {
            self.events.push_back(AgentPhoneEvent::Unregistered);
        }
    }

    /// A failed attempt: report it and wait `at_least` (or the back-off, whichever is longer).
    /// While leaving, a failure ends the registration: the binding will lapse by itself.
    fn fail(&mut self, now: Instant, status: Option<u16>, at_least: Duration) {
        if let State::Sent { expires: 0, .. } = self.state {
            self.leave();
            return;
        }
        self.events
            .push_back(AgentPhoneEvent::RegistrationFailed { status });
        let backoff = MIN_BACKOFF
            .saturating_mul(1u32 << self.failures.min(16))
            .min(MAX_BACKOFF);
        self.failures = self.failures.saturating_add(1);
        self.state = State::Waiting {
            at: now + backoff.max(at_least),
        };
    }

    /// The interval the registrar granted our contact: its `expires` in the 200's Contact list,
    /// else the `Expires` header, else what we asked for.
    fn granted(&self, response: &Response, asked: u32) -> u32 {
        let ours = response
            .headers
            .contacts()
            .filter_map(Result::ok)
            .find(|c| {
                c.addr()
                    .is_some_and(|a| a.uri.equivalent(&self.config.contact))
            })
            .and_then(|c| c.expires().and_then(Result::ok));
        let header = response.headers.expires().ok().flatten();
        ours.or(header).unwrap_or(asked).max(1)
    }

    /// Builds the next REGISTER asking for `expires` seconds, with credentials for the last
    /// challenge if there was one.
    fn send(&mut self, expires: u32, fresh_credentials: bool) -> Request {
        self.cseq = self.cseq.wrapping_add(1).max(1);
        let c = &self.config;
        let mut req = Request::new(Method::Register, c.registrar.clone());
        let h = &mut req.headers;
        h.push(
            HeaderName::From,
            format!("<{}>;tag={}", c.aor.as_str(), c.from_tag),
        );
        h.push(HeaderName::To, format!("<{}>", c.aor.as_str()));
        h.push(HeaderName::CallId, c.call_id.clone());
        h.push(HeaderName::CSeq, format!("{} REGISTER", self.cseq));
        h.push(HeaderName::Contact, format!("<{}>", c.contact.as_str()));
        h.push(HeaderName::Expires, expires.to_string());
        h.push(HeaderName::Allow, super::ALLOW);
        h.push(HeaderName::UserAgent, super::USER_AGENT);
        if let Some((challenge, proxy)) = &self.challenge {
            self.nonce_count = self.nonce_count.wrapping_add(1).max(1);
            let value = authorize(
                challenge,
                &c.username,
                &c.password,
                "REGISTER",
                req.uri.as_str(),
                &c.cnonce,
                self.nonce_count,
            );
            let name = if *proxy {
                HeaderName::ProxyAuthorization
            } else {
                HeaderName::Authorization
            };
            req.headers.push(name, value);
        }
        self.state = State::Sent {
            expires,
            fresh_credentials,
        };
        req
    }
}

/// A registrar for the phone's tests: 401 with an MD5 challenge (as `demo` sends) unless the
/// credentials verify, then 200 granting at most 120 s.
#[cfg(test)]
pub(super) mod testutil {
    use super::*;
    use sip::auth::{Algorithm, Authenticator, DigestConfig, DigestResponse, Secret};

    /// A registrar's answers: 401 with an MD5 challenge unless the credentials verify.
    pub(in crate::softphone) struct Registrar {
        auth: Authenticator,
        password: &'static str,
    }

    impl Registrar {
        pub fn new(now: Instant, password: &'static str) -> Self {
            let mut digest = DigestConfig::new("veilig-bellen");
            digest.algorithms = vec![Algorithm::Md5];
            Registrar {
                auth: Authenticator::new(digest, [9; 32], now),
                password,
            }
        }

        pub fn answer(&mut self, now: Instant, req: &Request) -> Response {
            let creds = req
                .headers
                .get(&HeaderName::Authorization)
                .and_then(|v| DigestResponse::parse(v).ok().flatten());
            let stale = match creds {
                Some(creds) => {
                    let secret = Secret::Password(self.password.into());
                    match self
                        .auth
                        .verify(now, "REGISTER", req.uri.as_str(), &creds, Some(&secret))
                    {
                        Ok(_) => {
                            let mut ok = Response::for_request(req, StatusCode::OK, None);
                            let expires = req.headers.expires().unwrap().unwrap();
                            ok.headers.push(
                                HeaderName::Contact,
                                format!("<sip:agent@127.0.0.1:40000>;expires={}", expires.min(120)),
                            );
                            return ok;
                        }
                        Err(e) => e.stale(),
                    }
                }
                None => false,
            };
            let mut challenge = Response::for_request(req, StatusCode::UNAUTHORIZED, None);
            for c in self.auth.challenges(now, stale) {
                challenge
                    .headers
                    .push(HeaderName::WwwAuthenticate, c.to_string());
            }
            challenge
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::Registrar;
    use super::*;

    fn config() -> RegistrationConfig {
        RegistrationConfig {
            registrar: "sip:127.0.0.1:5060".parse().unwrap(),
            aor: "sip:agent@127.0.0.1:5060".parse().unwrap(),
            contact: "sip:agent@127.0.0.1:40000".parse().unwrap(),
            username: "agent".into(),
            password: "geheim".into(),
            expires: 300,
            call_id: "reg-1@127.0.0.1".into(),
            from_tag: "t1".into(),
            cnonce: "c1".into(),
        }
    }

    fn events(reg: &mut Registration) -> Vec<AgentPhoneEvent> {
        std::iter::from_fn(|| reg.poll_event()).collect()
    }

    #[test]
    fn a_challenge_is_answered_and_the_binding_refreshed_before_it_lapses() {
        let t0 = Instant::now();
        let mut registrar = Registrar::new(t0, "geheim");
        let mut reg = Registration::new(config(), t0);
        let first = reg.handle_timeout(t0).expect("the first REGISTER");
        assert!(first.headers.get(&HeaderName::Authorization).is_none());
        assert_eq!(first.headers.get(&HeaderName::Expires).unwrap(), "300");
        let challenge = registrar.answer(t0, &first);
        assert_eq!(challenge.status, StatusCode::UNAUTHORIZED);
        let second = reg
            .handle_response(t0, &challenge)
            .expect("with credentials");
        assert_eq!(second.headers.cseq().unwrap().seq, 2);
        let ok = registrar.answer(t0, &second);
        assert_eq!(ok.status, StatusCode::OK);
        assert!(reg.handle_response(t0, &ok).is_none());
        assert_eq!(
            events(&mut reg),
            vec![AgentPhoneEvent::Registered {
                expires: Duration::from_secs(120)
            }],
            "the registrar granted 120 s of the 300 asked"
        );
        // Refreshed 30 s before the 120 s lapse, with the same nonce (nc 2): no new challenge.
        let refresh_at = reg.poll_timeout().unwrap();
        assert_eq!(refresh_at - t0, Duration::from_secs(90));
        assert!(reg
            .handle_timeout(refresh_at - Duration::from_millis(1))
            .is_none());
        let refresh = reg.handle_timeout(refresh_at).expect("the refresh");
        assert!(refresh
            .headers
            .get(&HeaderName::Authorization)
            .unwrap()
            .contains("nc=00000002"));
        let ok = registrar.answer(refresh_at, &refresh);
        assert_eq!(ok.status, StatusCode::OK);
        reg.handle_response(refresh_at, &ok);
        assert!(events(&mut reg).is_empty(), "a refresh is no news");
        assert!(reg.is_registered(refresh_at + Duration::from_secs(119)));

        // Shutdown: Expires 0, then done.
        let now = refresh_at + Duration::from_secs(1);
        let bye = reg.shutdown(now).expect("the unREGISTER");
        assert_eq!(bye.headers.get(&HeaderName::Expires).unwrap(), "0");
        let ok = Response::for_request(&bye, StatusCode::OK, None);
        reg.handle_response(now, &ok);
        assert!(reg.is_done());
        assert_eq!(events(&mut reg), vec![AgentPhoneEvent::Unregistered]);
    }

    #[test]
    fn a_wrong_password_is_reported_once_and_retried_after_a_minute() {
        let t0 = Instant::now();
        let mut registrar = Registrar::new(t0, "anders");
        let mut reg = Registration::new(config(), t0);
        let first = reg.handle_timeout(t0).unwrap();
        let with_creds = reg
            .handle_response(t0, &registrar.answer(t0, &first))
            .unwrap();
        let refused = registrar.answer(t0, &with_creds);
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
        assert!(reg.handle_response(t0, &refused).is_none(), "no loop");
        assert_eq!(
            events(&mut reg),
            vec![AgentPhoneEvent::RegistrationFailed { status: Some(401) }]
        );
        assert_eq!(reg.poll_timeout().unwrap() - t0, REFUSED_BACKOFF);
    }

    #[test]
    fn an_unreachable_registrar_is_retried_with_growing_back_off() {
        let t0 = Instant::now();
        let mut reg = Registration::new(config(), t0);
        let mut now = t0;
        let mut waits = Vec::new();
        for _ in 0..8 {
            assert!(reg.handle_timeout(now).is_some());
            reg.handle_no_response(now);
            let next = reg.poll_timeout().unwrap();
            waits.push((next - now).as_secs());
            now = next;
        }
        assert_eq!(waits, vec![1, 2, 4, 8, 16, 32, 60, 60]);
        assert!(events(&mut reg)
            .iter()
            .all(|e| *e == AgentPhoneEvent::RegistrationFailed { status: None }));
        // Shut down while nothing is registered: done at once, nothing sent.
        assert!(reg.shutdown(now).is_none());
        assert!(reg.is_done());
    }

    #[test]
    fn interval_too_brief_is_retried_with_min_expires() {
        let t0 = Instant::now();
        let mut reg = Registration::new(config(), t0);
        let first = reg.handle_timeout(t0).unwrap();
        let mut brief = Response::for_request(&first, StatusCode::INTERVAL_TOO_BRIEF, None);
        brief.headers.push(HeaderName::MinExpires, "600");
        let again = reg.handle_response(t0, &brief).unwrap();
        assert_eq!(again.headers.get(&HeaderName::Expires).unwrap(), "600");
    }
}
