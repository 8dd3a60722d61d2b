//! Session timers (RFC 4028): negotiating Session-Expires/Min-SE and watching a running session.
//!
//! The UAS side answers a request's `Session-Expires`/`Min-SE` ([`negotiate_uas`]): 422 when the
//! interval is below our minimum (§8.1), otherwise the interval and refresher to put in the 2xx. The UAC
//! side reads the 2xx ([`negotiate_uac`]). A running [`SessionTimer`] says when the refresher must send
//! its re-INVITE/UPDATE (half the interval, §10) and when the session is dead (the interval minus
//! min(32 s, interval/3), §10) so the caller sends a BYE.

use std::fmt;
use std::time::{Duration, Instant};

use crate::message::{HeaderName, Request, Response, SessionExpires, StatusCode};

/// The smallest Session-Expires any party may use (RFC 4028 §4, §5).
pub const ABSOLUTE_MIN_SE: u32 = 90;

pub use crate::message::Refresher;

/// The interval and refresher we put in (or read from) a `Session-Expires` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionInterval {
    pub interval: u32,
    pub refresher: Option<Refresher>,
}

impl SessionInterval {
    /// From the message layer's typed `Session-Expires`.
    pub fn from_header(se: &SessionExpires) -> Self {
        SessionInterval {
            interval: se.delta,
            refresher: se.refresher,
        }
    }
}

impl fmt::Display for SessionInterval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.interval)?;
        match self.refresher {
            Some(Refresher::Uac) => f.write_str(";refresher=uac"),
            Some(Refresher::Uas) => f.write_str(";refresher=uas"),
            None => Ok(()),
        }
    }
}

/// Parses a `Min-SE` value (`delta-seconds *(;param)`); `None` when malformed.
pub fn parse_min_se(value: &str) -> Option<u32> {
    let s = value.split(';').next().unwrap_or("").trim();
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Our session timer preferences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTimerConfig {
    /// The interval we ask for or grant, seconds (default 1800).
    pub session_expires: u32,
    /// The smallest interval we accept, seconds (default and floor 90).
    pub min_se: u32,
    /// Who refreshes when the UAC supports timers and left the choice to us.
    pub preferred_refresher: Refresher,
}

impl Default for SessionTimerConfig {
    fn default() -> Self {
        SessionTimerConfig {
            session_expires: 1800,
            min_se: ABSOLUTE_MIN_SE,
            preferred_refresher: Refresher::Uac,
        }
    }
}

/// The UAS's answer to a request's session timer headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UasSessionTimer {
    /// Reject with 422 Session Interval Too Small and this `Min-SE` (§8.1).
    TooSmall { min_se: u32 },
    /// Put this `Session-Expires` in the 2xx; add `Require: timer` when `require_timer`.
    Use {
        session_expires: SessionInterval,
        require_timer: bool,
    },
}

impl UasSessionTimer {
    /// Whether *we* (the UAS) refresh, for a `Use` answer.
    pub fn we_refresh(&self) -> bool {
        matches!(
            self,
            UasSessionTimer::Use {
                session_expires: SessionInterval {
                    refresher: Some(Refresher::Uas),
                    ..
                },
                ..
            }
        )
    }
}

/// RFC 4028 §9: what a UAS answers to a session-refresh-capable request (INVITE or UPDATE).
///
/// `request_se`/`request_min_se` are the request's headers, `uac_supports_timer` whether it listed
/// `timer` in Supported. Without a Session-Expires in the request we still insert one (we want dead
/// calls detected), with ourselves as refresher unless the UAC supports timers.
pub fn negotiate_uas(
    config: &SessionTimerConfig,
    request_se: Option<SessionInterval>,
    request_min_se: Option<u32>,
    uac_supports_timer: bool,
) -> UasSessionTimer {
    let our_min = config.min_se.max(ABSOLUTE_MIN_SE);
    let floor = our_min.max(request_min_se.unwrap_or(0));
    let (interval, requested_refresher) = match request_se {
        Some(se) if se.interval < our_min => return UasSessionTimer::TooSmall { min_se: our_min },
        Some(se) => (
            se.interval.min(config.session_expires).max(floor),
            se.refresher,
        ),
        None => (config.session_expires.max(floor), None),
    };
    let refresher = if !uac_supports_timer {
        Refresher::Uas
    } else {
        requested_refresher.unwrap_or(config.preferred_refresher)
    };
    UasSessionTimer::Use {
        session_expires: SessionInterval {
            interval,
            refresher: Some(refresher),
        },
        require_timer: refresher == Refresher::Uac,
    }
}

/// RFC 4028 §7.2: the UAC reads the 2xx. Returns the interval and whether we (the UAC) refresh, or
/// `None` when the 2xx carries no Session-Expires (no session timer).
pub fn negotiate_uac(response_se: Option<SessionInterval>) -> Option<(u32, bool)> {
    let se = response_se?;
    Some((se.interval, se.refresher != Some(Refresher::Uas)))
}

/// [`negotiate_uas`] on a received INVITE or UPDATE: reads Session-Expires, Min-SE and Supported.
/// A malformed Session-Expires or Min-SE counts as absent (validation already answered 400 where it
/// must).
pub fn answer_request(config: &SessionTimerConfig, request: &Request) -> UasSessionTimer {
    let se = request
        .headers
        .session_expires()
        .and_then(Result::ok)
        .map(|se| SessionInterval::from_header(&se));
    let min_se = request
        .headers
        .get(&HeaderName::MinSe)
        .and_then(|v| parse_min_se(v));
    let supports = request
        .headers
        .option_tags(&HeaderName::Supported)
        .any(|t| t.eq_ignore_ascii_case("timer"));
    negotiate_uas(config, se, min_se, supports)
}

impl UasSessionTimer {
    /// Adds `Session-Expires` (and `Require: timer`) to our 2xx for a `Use` answer.
    pub fn apply(&self, response: &mut Response) {
        if let UasSessionTimer::Use {
            session_expires,
            require_timer,
        } = self
        {
            response
                .headers
                .replace(HeaderName::SessionExpires, session_expires.to_string());
            if *require_timer {
                response.headers.push(HeaderName::Require, "timer");
            }
        }
    }

    /// The 422 Session Interval Too Small answer to `request` for a `TooSmall` decision.
    pub fn reject(&self, request: &Request) -> Option<Response> {
        let UasSessionTimer::TooSmall { min_se } = self else {
            return None;
        };
        let mut response =
            Response::for_request(request, StatusCode::SESSION_INTERVAL_TOO_SMALL, None);
        response.headers.push(HeaderName::MinSe, min_se.to_string());
        Some(response)
    }
}

/// What a running session timer asks of the dialog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionTimerEvent {
    /// We are the refresher and half the interval passed: send a re-INVITE or UPDATE.
    RefreshDue,
    /// No refresh arrived in time: end the session with a BYE (§10).
    Expired,
}

/// A running session timer.
///
/// Polling: call [`handle_timeout`](Self::handle_timeout) at [`poll_timeout`](Self::poll_timeout)
/// until it returns `None`; call [`handle_refresh`](Self::handle_refresh) on every successful refresh
/// (a 2xx to a re-INVITE/UPDATE carrying the session timer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionTimer {
    interval: Duration,
    we_refresh: bool,
    refreshed_at: Instant,
    refresh_asked: bool,
    expired: bool,
}

impl SessionTimer {
    pub fn new(now: Instant, interval_secs: u32, we_refresh: bool) -> Self {
        SessionTimer {
            interval: Duration::from_secs(u64::from(interval_secs)),
            we_refresh,
            refreshed_at: now,
            refresh_asked: false,
            expired: false,
        }
    }

    /// Restarts the timer after a successful refresh (interval and refresher may change).
    pub fn handle_refresh(&mut self, now: Instant, interval_secs: u32, we_refresh: bool) {
        *self = SessionTimer::new(now, interval_secs, we_refresh);
    }

    pub fn we_refresh(&self) -> bool {
        self.we_refresh
    }

    pub fn interval_secs(&self) -> u64 {
        self.interval.as_secs()
    }

    fn refresh_at(&self) -> Instant {
        self.refreshed_at + self.interval / 2
    }

    fn expire_at(&self) -> Instant {
        let margin = Duration::from_secs(32).min(self.interval / 3);
        self.refreshed_at + (self.interval - margin)
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.expired {
            None
        } else if self.we_refresh && !self.refresh_asked {
            Some(self.refresh_at())
        } else {
            Some(self.expire_at())
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Option<SessionTimerEvent> {
        if self.expired {
            return None;
        }
        if self.we_refresh && !self.refresh_asked && now >= self.refresh_at() {
            self.refresh_asked = true;
            return Some(SessionTimerEvent::RefreshDue);
        }
        if now >= self.expire_at() {
            self.expired = true;
            return Some(SessionTimerEvent::Expired);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn se(interval: u32, refresher: Option<Refresher>) -> SessionInterval {
        SessionInterval {
            interval,
            refresher,
        }
    }

    #[test]
    fn writes_session_expires_and_parses_min_se() {
        assert_eq!(
            se(600, Some(Refresher::Uas)).to_string(),
            "600;refresher=uas"
        );
        assert_eq!(se(90, None).to_string(), "90");
        assert_eq!(parse_min_se("120;x=y"), Some(120));
        assert_eq!(parse_min_se("-1"), None);
        assert_eq!(parse_min_se("99999999999"), None);
    }

    #[test]
    fn answers_a_request_from_its_headers() {
        let raw = "INVITE sip:a@127.0.0.1 SIP/2.0\r\n\
            Via: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK1\r\n\
            From: <sip:b@127.0.0.1>;tag=1\r\nTo: <sip:a@127.0.0.1>\r\nCall-ID: st\r\n\
            CSeq: 1 INVITE\r\nSupported: timer\r\nSession-Expires: 60\r\n\
            Min-SE: 60\r\nContent-Length: 0\r\n\r\n";
        let req = Request::parse(raw).unwrap();
        let d = answer_request(&SessionTimerConfig::default(), &req);
        assert_eq!(d, UasSessionTimer::TooSmall { min_se: 90 });
        let resp = d.reject(&req).unwrap();
        assert_eq!(resp.status.as_u16(), 422);
        assert_eq!(resp.headers.get(&HeaderName::MinSe).unwrap(), "90");
        let ok = UasSessionTimer::Use {
            session_expires: se(1800, Some(Refresher::Uac)),
            require_timer: true,
        };
        let mut resp = Response::for_request(&req, StatusCode::OK, None);
        ok.apply(&mut resp);
        assert_eq!(resp.headers.session_expires().unwrap().unwrap().delta, 1800);
        assert_eq!(resp.headers.get(&HeaderName::Require).unwrap(), "timer");
    }

    #[test]
    fn uas_rejects_interval_below_min_se_with_422() {
        let c = SessionTimerConfig {
            min_se: 300,
            ..Default::default()
        };
        assert_eq!(
            negotiate_uas(&c, Some(se(120, None)), None, true),
            UasSessionTimer::TooSmall { min_se: 300 }
        );
    }

    #[test]
    fn uas_keeps_requested_refresher_and_shortens_to_its_preference() {
        let c = SessionTimerConfig::default();
        let d = negotiate_uas(&c, Some(se(3600, Some(Refresher::Uas))), Some(90), true);
        assert_eq!(
            d,
            UasSessionTimer::Use {
                session_expires: se(1800, Some(Refresher::Uas)),
                require_timer: false
            }
        );
        assert!(d.we_refresh());
    }

    #[test]
    fn uas_never_goes_below_the_requests_min_se() {
        let c = SessionTimerConfig {
            session_expires: 600,
            ..Default::default()
        };
        let d = negotiate_uas(&c, Some(se(1800, None)), Some(900), true);
        assert_eq!(
            d,
            UasSessionTimer::Use {
                session_expires: se(900, Some(Refresher::Uac)),
                require_timer: true
            }
        );
    }

    #[test]
    fn uas_refreshes_itself_when_uac_lacks_timer_support() {
        let c = SessionTimerConfig::default();
        let d = negotiate_uas(&c, None, None, false);
        assert_eq!(
            d,
            UasSessionTimer::Use {
                session_expires: se(1800, Some(Refresher::Uas)),
                require_timer: false
            }
        );
    }

    #[test]
    fn uac_reads_refresher_from_2xx() {
        assert_eq!(
            negotiate_uac(Some(se(900, Some(Refresher::Uac)))),
            Some((900, true))
        );
        assert_eq!(
            negotiate_uac(Some(se(900, Some(Refresher::Uas)))),
            Some((900, false))
        );
        assert_eq!(negotiate_uac(None), None);
    }

    #[test]
    fn refresher_is_asked_at_half_interval_and_expiry_follows_without_refresh() {
        let t0 = Instant::now();
        let mut t = SessionTimer::new(t0, 90, true);
        assert_eq!(t.poll_timeout(), Some(t0 + Duration::from_secs(45)));
        assert_eq!(
            t.handle_timeout(t0 + Duration::from_secs(45)),
            Some(SessionTimerEvent::RefreshDue)
        );
        // 90 - min(32, 30) = 60 s.
        assert_eq!(t.poll_timeout(), Some(t0 + Duration::from_secs(60)));
        assert_eq!(t.handle_timeout(t0 + Duration::from_secs(59)), None);
        assert_eq!(
            t.handle_timeout(t0 + Duration::from_secs(60)),
            Some(SessionTimerEvent::Expired)
        );
        assert_eq!(t.poll_timeout(), None);
    }

    #[test]
    fn refresh_restarts_the_clock_for_the_non_refresher() {
        let t0 = Instant::now();
        let mut t = SessionTimer::new(t0, 1800, false);
        assert_eq!(t.poll_timeout(), Some(t0 + Duration::from_secs(1768)));
        t.handle_refresh(t0 + Duration::from_secs(900), 1800, false);
        assert_eq!(t.handle_timeout(t0 + Duration::from_secs(1768)), None);
        assert_eq!(
            t.handle_timeout(t0 + Duration::from_secs(2668)),
            Some(SessionTimerEvent::Expired)
        );
    }
}
