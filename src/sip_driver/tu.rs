//! The driver's own transaction user: runs the registrar for REGISTER (RFC 3261 §10.3) behind
//! digest authentication (§22.4, RFC 8760) with failed-login limiting per source and per account
//! ([`sip::ratelimit`]), and says which
//! requests it leaves to the call flow. (Out-of-dialog OPTIONS are answered by the endpoint with
//! the driver's [`POLICY`](super::POLICY) — with a trunk gate only those from trunks and from
//! addresses [`Tu::has_registration_from`] knows.) No I/O: `now` is passed in.
//!
//! REGISTER processing order: syntax checks that need no secret first (To must be a sip/sips AOR
//! with a user — RFC 4475 unksm2 gets 400 —, Contact, Expires), then the failure limiter (the
//! driver drops a blocked source's REGISTERs before parsing; one that gets here anyway is answered
//! 403), then authentication (401 with SHA-256 and MD5 challenges; a source that already failed on
//! an account that is backing off gets 503 with Retry-After and its password is not checked), then
//! authorisation (the authenticated user must be the AOR's user, else 403), then the registrar
//! (200 listing every binding with its expiry, 423 with Min-Expires, 400). A success forgives only
//! that source's failures on that account.
//!
//! No user oracle (what svwar looks for): an unknown username is challenged and refused exactly
//! like a known one with a wrong password — 401, the same headers, a digest computed either way —
//! and counts against the source and the (hashed) account name alike.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use sip::auth::{Authenticator, DigestConfig, DigestResponse, Secret};
use sip::message::build::{self, status};
use sip::message::{Contact, HeaderName, Method, Request, Response};
use sip::ratelimit::{Attempt, FailureLimiter, LimitConfig};
use sip::registrar::{
    Binding, RegisterError, RegisterRequest, Registrar, RegistrarConfig, RegistrarEvent,
};
use sip::transaction::Transport;

use crate::PRODUCT;

/// One agent's SIP login.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The SIP username (the AOR user part the phone registers).
    pub username: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .finish()
    }
}

/// What the TU decided about a request.
#[derive(Debug)]
pub enum TuOutcome {
    /// Send this final response.
    Respond(Box<Response>),
    /// Not ours: the call flow handles it (or the driver's fallback answers it).
    Forward,
}

/// Settings of the TU.
#[derive(Debug, Clone)]
pub struct TuConfig {
    /// Digest realm and nonce settings.
    pub digest: DigestConfig,
    /// Failed-login limits.
    pub limits: LimitConfig,
    /// Registrar limits.
    pub registrar: RegistrarConfig,
    /// Agents allowed to register.
    pub credentials: Vec<Credentials>,
}

/// See the module docs.
pub struct Tu {
    auth: Authenticator,
    limiter: FailureLimiter,
    registrar: Registrar,
    secrets: HashMap<String, Secret>,
}

impl Tu {
    /// `secret` keys the digest nonces (draw it at random).
    pub fn new(config: TuConfig, secret: [u8; 32], now: Instant) -> Self {
        let secrets = config
            .credentials
            .into_iter()
            .map(|c| (c.username, Secret::Password(c.password)))
            .collect();
        Tu {
            auth: Authenticator::new(config.digest, secret, now),
            limiter: FailureLimiter::new(config.limits),
            registrar: Registrar::new(config.registrar),
            secrets,
        }
    }

    /// Decides about one request that reached the TU (not a retransmission).
    pub fn handle_request(
        &mut self,
        now: Instant,
        req: &Request,
        source: SocketAddr,
        transport: Transport,
    ) -> TuOutcome {
        match req.method {
            Method::Register => self.register(now, req, source, transport),
            _ => TuOutcome::Forward,
        }
    }

    /// Whether REGISTERs from `source` are to be dropped unread (too many failed logins).
    pub fn is_blocked(&self, source: SocketAddr, now: Instant) -> bool {
        self.limiter.is_blocked(source.ip(), now)
    }

    /// Whether an agent phone holds a live registration from `ip` (its OPTIONS keep-alives are
    /// answered even from outside the trunks). One hash lookup for an address without one.
    pub fn has_registration_from(&self, ip: IpAddr, now: Instant) -> bool {
        self.registrar.has_binding_from(ip, now)
    }

    /// The live bindings of an agent, highest q first.
    pub fn lookup(&self, aor: &str, now: Instant) -> Vec<Binding> {
        self.registrar.lookup(aor, now)
    }

    /// Drops lapsed bindings.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.registrar.handle_timeout(now);
    }

    /// When [`handle_timeout`](Self::handle_timeout) wants to run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.registrar.poll_timeout()
    }

    /// Registrar news for the application.
    pub fn poll_event(&mut self) -> Option<RegistrarEvent> {
        self.registrar.poll_event()
    }

    fn register(
        &mut self,
        now: Instant,
        req: &Request,
        source: SocketAddr,
        transport: Transport,
    ) -> TuOutcome {
        let parsed = match read_register(req, source, transport) {
            Ok(r) => r,
            Err(reason) => return respond(req, 400, Some(&reason)),
        };
        if self.limiter.is_blocked(source.ip(), now) {
            return respond(req, 403, Some("Too Many Failed Attempts"));
        }
        let verified = match self.authenticate(now, req, source) {
            Ok(v) => v,
            Err(AuthFailure::Challenge { stale }) => {
                let mut resp = Response::for_request(req, status(401), None);
                for ch in self.auth.challenges(now, stale) {
                    resp.headers
                        .push(HeaderName::WwwAuthenticate, ch.to_string());
                }
                return finish(req, resp);
            }
            Err(AuthFailure::Refused(resp)) => return TuOutcome::Respond(resp),
        };
        self.limiter.record_success(source.ip(), &verified, now);
        if verified != parsed.aor {
            return respond(req, 403, Some("Not allowed to register this address"));
        }
        match self.registrar.handle_register(now, &parsed) {
            Ok(bindings) => {
                crate::metrics::global().registration(true);
                let mut resp = Response::for_request(req, status(200), None);
                for b in &bindings {
                    resp.headers.push(HeaderName::Contact, b.contact_value(now));
                }
                let path_supported = req
                    .headers
                    .option_tags(&HeaderName::Supported)
                    .any(|t| t.eq_ignore_ascii_case("path"));
                if path_supported {
                    for p in &parsed.path {
                        resp.headers.push(HeaderName::Path, p.as_str());
                    }
                }
                finish(req, resp)
            }
            Err(e) => {
                let reason = e.to_string();
                let mut resp = Response::for_request(req, status(e.status()), Some(&reason));
                if let RegisterError::IntervalTooBrief { min_expires } = e {
                    resp.headers
                        .push(HeaderName::MinExpires, min_expires.to_string());
                }
                finish(req, resp)
            }
        }
    }

    /// The authenticated username, or why not. Failed logins are recorded here; the credentials
    /// of a source the limiter holds back are not checked at all.
    fn authenticate(
        &mut self,
        now: Instant,
        req: &Request,
        source: SocketAddr,
    ) -> Result<String, AuthFailure> {
        let realm = self.auth.realm().to_string();
        let mut creds = None;
        for value in req.headers.get_all(&HeaderName::Authorization) {
            match DigestResponse::parse(value) {
                Ok(Some(c)) if c.realm == realm => {
                    creds = Some(c);
                    break;
                }
                // Another realm or scheme (RFC 4475 regaut01): not for us.
                Ok(_) => {}
                Err(_) => {
                    // Malformed: a failure on no account in particular.
                    self.record_failure(now, source, "");
                    return Err(AuthFailure::Challenge { stale: false });
                }
            }
        }
        let Some(creds) = creds else {
            return Err(AuthFailure::Challenge { stale: false });
        };
        match self.limiter.check(source.ip(), &creds.username, now) {
            Attempt::Allowed => {}
            Attempt::SourceBlocked => {
                return Err(AuthFailure::Refused(Box::new(finish_response(
                    req,
                    403,
                    Some("Too Many Failed Attempts"),
                ))))
            }
            Attempt::AccountBackoff { retry_after } => {
                tracing::info!(%source, user = %creds.username, "account backing off after failed logins; not checked");
                let mut resp = finish_response(req, 503, Some("Too Many Failed Logins"));
                let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                resp.headers.push(HeaderName::RetryAfter, secs.to_string());
                return Err(AuthFailure::Refused(Box::new(resp)));
            }
        }
        let secret = self.secrets.get(&creds.username);
        match self
            .auth
            .verify(now, req.method.as_str(), req.uri.as_str(), &creds, secret)
        {
            Ok(v) => Ok(v.username),
            Err(e) => {
                tracing::info!(user = %creds.username, error = %e, "digest verification failed");
                if e.counts_as_failure() {
                    self.record_failure(now, source, &creds.username);
                }
                Err(AuthFailure::Challenge { stale: e.stale() })
            }
        }
    }

    fn record_failure(&mut self, now: Instant, source: SocketAddr, account: &str) {
        crate::metrics::global().registration(false);
        if self.limiter.record_failure(source.ip(), account, now) {
            tracing::warn!(%source, "too many failed logins; source blocked");
        }
    }
}

/// Why a REGISTER was not authenticated.
enum AuthFailure {
    /// Answer 401 with fresh challenges (`stale` after an expired nonce).
    Challenge { stale: bool },
    /// Answer this instead, without checking the credentials (the limiter holds the source back).
    Refused(Box<Response>),
}

/// Reads what the registrar needs; the error is a 400 reason phrase.
fn read_register(
    req: &Request,
    source: SocketAddr,
    transport: Transport,
) -> Result<RegisterRequest, String> {
    let h = &req.headers;
    let to = h.to().map_err(|e| e.to_string())?;
    let aor = RegisterRequest::aor_of(&to.uri).map_err(|e| e.to_string())?;
    let contacts = h
        .contacts()
        .collect::<Result<Vec<Contact>, _>>()
        .map_err(|e| e.to_string())?;
    Ok(RegisterRequest {
        aor,
        call_id: h.call_id().map_err(|e| e.to_string())?.to_string(),
        cseq: h.cseq().map_err(|e| e.to_string())?.seq,
        contacts,
        expires: h.expires().map_err(|e| e.to_string())?,
        path: h.values(&HeaderName::Path).map(|v| v.to_string()).collect(),
        source,
        transport,
    })
}

/// A final response to `req` with an optional reason phrase, a fresh To tag and our Server header
/// ([`build::final_response`]).
fn finish_response(req: &Request, code: u16, reason: Option<&str>) -> Response {
    build::final_response(req, code, reason, &new_tag(), PRODUCT)
}

fn respond(req: &Request, code: u16, reason: Option<&str>) -> TuOutcome {
    TuOutcome::Respond(Box::new(finish_response(req, code, reason)))
}

fn finish(_req: &Request, resp: Response) -> TuOutcome {
    TuOutcome::Respond(Box::new(with_tag_and_server(resp)))
}

fn with_tag_and_server(resp: Response) -> Response {
    let mut resp = resp.with_to_tag(&new_tag());
    resp.headers.push(HeaderName::Server, PRODUCT);
    resp
}

/// A fresh To tag (RFC 3261 §19.3): 64 bits from the OS random source ([`build::tag`]).
fn new_tag() -> String {
    build::tag(rand::random())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sip::auth::{authorize, Challenge};
    use std::time::Duration;

    const SRC: &str = "192.0.2.10:5062";

    fn tu(now: Instant) -> Tu {
        Tu::new(
            TuConfig {
                digest: DigestConfig::new("vb"),
                limits: LimitConfig {
                    max_failures: 3,
                    ..LimitConfig::default()
                },
                registrar: RegistrarConfig::default(),
                credentials: vec![
                    Credentials {
                        username: "agent".into(),
                        password: "pw".into(),
                    },
                    Credentials {
                        username: "other".into(),
                        password: "pw2".into(),
                    },
                ],
            },
            [3u8; 32],
            now,
        )
    }

    fn register(user: &str, cseq: u32, auth: Option<String>) -> Request {
        let mut s = format!(
            "REGISTER sip:127.0.0.1 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK{cseq}\r\n\
             From: <sip:{user}@127.0.0.1>;tag=a1\r\n\
             To: <sip:{user}@127.0.0.1>\r\n\
             Call-ID: reg-1\r\n\
             CSeq: {cseq} REGISTER\r\n\
             Contact: <sip:{user}@10.0.0.9:5062>\r\n\
             Expires: 300\r\n"
        );
        if let Some(a) = auth {
            s.push_str(&format!("Authorization: {a}\r\n"));
        }
        s.push_str("Content-Length: 0\r\n\r\n");
        Request::parse(s.into_bytes()).unwrap()
    }

    fn outcome(t: &mut Tu, now: Instant, req: &Request) -> Option<Response> {
        outcome_from(t, now, req, SRC.parse().unwrap())
    }

    fn outcome_from(t: &mut Tu, now: Instant, req: &Request, src: SocketAddr) -> Option<Response> {
        match t.handle_request(now, req, src, Transport::Udp) {
            TuOutcome::Respond(r) => Some(*r),
            TuOutcome::Forward => None,
        }
    }

    /// `user` logs in from `src` with `password` (challenge, then answer): the final status.
    fn login(t: &mut Tu, now: Instant, src: &str, user: &str, password: &str) -> Response {
        // One registration Call-ID throughout: each login needs higher CSeqs than the last.
        static CSEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(100);
        let cseq = CSEQ.fetch_add(2, std::sync::atomic::Ordering::Relaxed);
        let src: SocketAddr = src.parse().unwrap();
        let r = outcome_from(t, now, &register(user, cseq, None), src).unwrap();
        assert_eq!(r.status.as_u16(), 401, "{r:?}");
        let a = authorize(
            &challenge(&r, 1),
            user,
            password,
            "REGISTER",
            "sip:127.0.0.1",
            "cn",
            1,
        );
        outcome_from(t, now, &register(user, cseq + 1, Some(a)), src).unwrap()
    }

    fn challenge(resp: &Response, idx: usize) -> Challenge {
        let v = resp
            .headers
            .get_all(&HeaderName::WwwAuthenticate)
            .nth(idx)
            .unwrap();
        Challenge::parse(v).unwrap()
    }

    #[test]
    fn register_is_challenged_then_accepted_and_bound_to_the_source() {
        let now = Instant::now();
        let mut t = tu(now);
        let r = outcome(&mut t, now, &register("agent", 1, None)).unwrap();
        assert_eq!(r.status.as_u16(), 401);
        assert_eq!(challenge(&r, 0).algorithm, sip::auth::Algorithm::Sha256);
        assert_eq!(challenge(&r, 1).algorithm, sip::auth::Algorithm::Md5);
        let a = authorize(
            &challenge(&r, 1),
            "agent",
            "pw",
            "REGISTER",
            "sip:127.0.0.1",
            "cn",
            1,
        );
        let r = outcome(&mut t, now, &register("agent", 2, Some(a))).unwrap();
        assert_eq!(r.status.as_u16(), 200, "{r:?}");
        let contact = r.headers.get(&HeaderName::Contact).unwrap();
        assert_eq!(contact, "<sip:agent@10.0.0.9:5062>;expires=300");
        let b = t.lookup("agent", now);
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].target, SRC.parse().unwrap());
    }

    #[test]
    fn wrong_passwords_block_the_source_until_the_block_ends() {
        let now = Instant::now();
        let mut t = tu(now);
        for i in 0..3 {
            let r = outcome(&mut t, now, &register("agent", 1, None)).unwrap();
            let a = authorize(
                &challenge(&r, 0),
                "agent",
                "bad",
                "REGISTER",
                "sip:127.0.0.1",
                "c",
                1,
            );
            let r = outcome(&mut t, now, &register("agent", 2 + i, Some(a))).unwrap();
            assert_eq!(r.status.as_u16(), 401);
        }
        let src: SocketAddr = SRC.parse().unwrap();
        assert!(t.is_blocked(src, now));
        let r = outcome(&mut t, now, &register("agent", 9, None)).unwrap();
        assert_eq!(r.status.as_u16(), 403);
        // After the block period the source may try again.
        let later = now + Duration::from_secs(901);
        assert!(!t.is_blocked(src, later));
        let r = outcome(&mut t, later, &register("agent", 10, None)).unwrap();
        assert_eq!(r.status.as_u16(), 401);
    }

    #[test]
    fn good_logins_in_between_do_not_save_a_guesser_from_the_block() {
        let now = Instant::now();
        let mut t = tu(now);
        for _ in 0..3 {
            let own = login(&mut t, now, SRC, "agent", "pw");
            assert_eq!(own.status.as_u16(), 200, "the agent's own login");
            let guess = login(&mut t, now, SRC, "other", "guess");
            assert_eq!(guess.status.as_u16(), 401);
        }
        assert!(t.is_blocked(SRC.parse().unwrap(), now));
        let r = outcome(&mut t, now, &register("agent", 9, None)).unwrap();
        assert_eq!(r.status.as_u16(), 403);
    }

    #[test]
    fn an_account_under_attack_backs_off_guessers_but_not_a_fresh_phone() {
        let now = Instant::now();
        let mut t = Tu::new(
            TuConfig {
                digest: DigestConfig::new("vb"),
                limits: LimitConfig {
                    account_free_failures: 3,
                    ..LimitConfig::default()
                },
                registrar: RegistrarConfig::default(),
                credentials: vec![Credentials {
                    username: "agent".into(),
                    password: "pw".into(),
                }],
            },
            [3u8; 32],
            now,
        );
        for n in 1..=4 {
            let r = login(
                &mut t,
                now,
                &format!("198.51.100.{n}:5060"),
                "agent",
                "guess",
            );
            assert_eq!(r.status.as_u16(), 401);
        }
        // A guesser that already failed waits, even with the right password (it is not checked).
        let r = login(&mut t, now, "198.51.100.1:5060", "agent", "pw");
        assert_eq!(r.status.as_u16(), 503, "{r:?}");
        assert_eq!(r.headers.get(&HeaderName::RetryAfter).unwrap(), "1");
        // The agent's phone at an address that has not failed registers at once.
        let r = login(&mut t, now, "203.0.113.20:5060", "agent", "pw");
        assert_eq!(r.status.as_u16(), 200, "{r:?}");
        assert_eq!(t.lookup("agent", now).len(), 1);
    }

    #[test]
    fn an_agent_cannot_register_another_agents_address() {
        let now = Instant::now();
        let mut t = tu(now);
        let r = outcome(&mut t, now, &register("agent", 1, None)).unwrap();
        let a = authorize(
            &challenge(&r, 0),
            "other",
            "pw2",
            "REGISTER",
            "sip:127.0.0.1",
            "c",
            1,
        );
        let r = outcome(&mut t, now, &register("agent", 2, Some(a))).unwrap();
        assert_eq!(r.status.as_u16(), 403);
        assert!(t.lookup("agent", now).is_empty());
    }

    /// Status line and header names, in order: what a scanner (svwar) compares between names.
    fn shape(r: &Response) -> (u16, String, Vec<String>) {
        let text = String::from_utf8_lossy(&r.to_bytes()).into_owned();
        let mut lines = text.split("\r\n");
        let status = lines.next().unwrap_or_default().to_string();
        let names = lines
            .take_while(|l| !l.is_empty())
            .filter_map(|l| l.split(':').next())
            .map(str::to_ascii_lowercase)
            .collect();
        (r.status.as_u16(), status, names)
    }

    #[test]
    fn an_unknown_user_is_answered_like_a_known_one() {
        let now = Instant::now();
        let mut t = tu(now);
        // Without credentials: the same challenge.
        let known = outcome(&mut t, now, &register("agent", 1, None)).unwrap();
        let unknown = outcome(&mut t, now, &register("nobody", 1, None)).unwrap();
        assert_eq!(shape(&known).0, 401);
        assert_eq!(shape(&known), shape(&unknown));
        // With credentials (a wrong password; a user we do not have): the same refusal.
        let guess = |user: &str, ch: &Response| {
            authorize(
                &challenge(ch, 1),
                user,
                "guess",
                "REGISTER",
                "sip:127.0.0.1",
                "cn",
                1,
            )
        };
        let known = outcome(
            &mut t,
            now,
            &register("agent", 2, Some(guess("agent", &known))),
        )
        .unwrap();
        let unknown = outcome(
            &mut t,
            now,
            &register("nobody", 2, Some(guess("nobody", &unknown))),
        )
        .unwrap();
        assert_eq!(shape(&known).0, 401);
        assert_eq!(shape(&known), shape(&unknown));
        // Both counted: the third failure from this source blocks it, whichever names it tried.
        let r = outcome(&mut t, now, &register("nobody", 3, None)).unwrap();
        let a = authorize(
            &challenge(&r, 1),
            "nobody",
            "again",
            "REGISTER",
            "sip:127.0.0.1",
            "cn",
            1,
        );
        outcome(&mut t, now, &register("nobody", 4, Some(a))).unwrap();
        assert!(t.is_blocked(SRC.parse().unwrap(), now));
    }

    #[test]
    fn a_registered_phones_address_is_known_until_its_binding_lapses() {
        let now = Instant::now();
        let mut t = tu(now);
        let phone: IpAddr = "192.0.2.10".parse().unwrap();
        assert!(!t.has_registration_from(phone, now));
        assert_eq!(login(&mut t, now, SRC, "agent", "pw").status.as_u16(), 200);
        assert!(t.has_registration_from(phone, now));
        assert!(!t.has_registration_from("192.0.2.11".parse().unwrap(), now));
        // `register` asks for 300 s.
        assert!(!t.has_registration_from(phone, now + Duration::from_secs(301)));
    }

    #[test]
    fn non_sip_aor_gets_400_before_any_challenge() {
        // RFC 4475 unksm2.
        let now = Instant::now();
        let mut t = tu(now);
        let req = Request::parse(
            &b"REGISTER sip:example.com SIP/2.0\r\nTo: isbn:2983792873\r\n\
               From: <http://www.example.com>;tag=3234233\r\nCall-ID: unksm2\r\n\
               CSeq: 234902 REGISTER\r\nMax-Forwards: 70\r\n\
               Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKkdjuw\r\n\
               Contact: <name:John_Smith>\r\nl: 0\r\n\r\n"[..],
        )
        .unwrap();
        assert_eq!(outcome(&mut t, now, &req).unwrap().status.as_u16(), 400);
    }
}
