//! Prometheus metrics (`GET /metrics`, text format 0.0.4 via `prometheus-client`) and the health
//! probes `GET /healthz` (the process answers) and `GET /readyz` (store open, SIP bound, IRMA
//! server reachable).
//!
//! One process-wide [`Metrics`] ([`global`]): counters are bumped where things happen (call end,
//! code lookup, digit, IRMA request, registration, HTTP request) and read only when scraped. No
//! label ever holds personal data: reasons, methods, routes and status codes only — never a
//! number, code, attribute or call id.

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    /// Calls answered (`veilig_bellen_calls_started_total`).
    pub calls_started: Counter,
    /// Calls ended, by outcome: `verified` or the unverified reason (`no_code`, `unknown_code`, …).
    calls_ended: Family<Labels, Counter>,
    /// Calls up right now.
    pub calls_active: Gauge,
    /// Link-code digits received, by method (`rfc4733`, `info`, `inband`).
    digits: Family<Labels, Counter>,
    /// Code lookups, by result (`verified`, `unknown_code`, `used_code`, `expired_code`, …).
    code_lookups: Family<Labels, Counter>,
    /// Wrong link codes (unknown, used, expired, caller mismatch), all numbers together: the
    /// guessing rate (`veilig_bellen_wrong_codes_total`).
    pub wrong_codes: Counter,
    /// Calling numbers blocked for giving too many wrong codes.
    pub calling_numbers_blocked: Counter,
    /// Requests from sources that are not trunks that would start something (dialog-creating
    /// methods, and OPTIONS from an address with no registered phone), by method (`INVITE` or
    /// `other`) and what we did (`dropped`, `rejected`).
    unknown_sources: Family<Labels, Counter>,
    /// Requests to the IRMA server, by outcome (`ok`, `error`), in seconds.
    irma_requests: Family<Labels, Histogram>,
    /// RTP packets received from callers and agents, and those lost on the way.
    pub rtp_packets_received: Counter,
    pub rtp_packets_lost: Counter,
    /// SIP responses dropped because they came from elsewhere than their request went (forged or
    /// misrouted).
    pub sip_foreign_responses: Counter,
    /// TCP/TLS connections refused (at accept, or not opened), by the `limit` they ran into:
    /// `total` (`sip.max_connections`) or `per_address` (`sip.max_connections_per_address`).
    sip_connections_refused: Family<Labels, Counter>,
    /// Accepted TCP/TLS connections closed for sending no complete SIP message within
    /// `sip.first_message_timeout` (or no TLS handshake within 10 s).
    pub sip_connections_closed_silent: Counter,
    /// SIP work shed under load, by `queue`: `new` and `in_dialog` (requests answered 503 or
    /// ACKs dropped because the application's queue was full), `call` (an event for a call
    /// whose own queue was full), `source` (messages from one non-trunk address over its rate).
    sip_shed: Family<Labels, Counter>,
    /// SRTP packets from agents' phones that failed authentication or replayed one (dropped).
    srtp_rejected: Counter,
    /// Datagrams the media plane could not send, by `reason`: `kernel` (the send failed: socket
    /// buffer full, no route, …) or `queue` (a media thread's queue of sends in flight was full).
    rtp_send_failures: Family<Labels, Counter>,
    /// REGISTER results, by `ok` / `failed`.
    registrations: Family<Labels, Counter>,
    /// HTTP requests by route template and status code.
    http_requests: Family<Labels, Counter>,
    /// Calls the municipality's own exchange reported by API, by `outcome`: `verified` or the
    /// unverified reason.
    exchange_calls: Family<Labels, Counter>,
    /// Exchange calls ended, by `reason` (`exchange`, `hangup`, `max_duration`).
    exchange_calls_ended: Family<Labels, Counter>,
    /// Requests to the exchange API with a missing or wrong key.
    pub exchange_auth_failures: Counter,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn global() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("veilig_bellen");
        let calls_started = Counter::default();
        registry.register(
            "calls_started",
            "Calls answered from a trunk",
            calls_started.clone(),
        );
        let calls_ended = Family::<Labels, Counter>::default();
        registry.register(
            "calls_ended",
            "Calls ended, by outcome (verified or the unverified reason)",
            calls_ended.clone(),
        );
        let calls_active = Gauge::default();
        registry.register("calls_active", "Calls up now", calls_active.clone());
        let digits = Family::<Labels, Counter>::default();
        registry.register(
            "dtmf_digits",
            "Link-code digits received, by method",
            digits.clone(),
        );
        let code_lookups = Family::<Labels, Counter>::default();
        registry.register(
            "code_lookups",
            "Link-code lookups, by result; wrong codes are result=unknown_code",
            code_lookups.clone(),
        );
        let wrong_codes = Counter::default();
        registry.register(
            "wrong_codes",
            "Wrong link codes (unknown, used, expired, caller mismatch), all calling numbers",
            wrong_codes.clone(),
        );
        let calling_numbers_blocked = Counter::default();
        registry.register(
            "calling_numbers_blocked",
            "Calling numbers whose calls are no longer looked up after too many wrong codes",
            calling_numbers_blocked.clone(),
        );
        let unknown_sources = Family::<Labels, Counter>::default();
        registry.register(
            "sip_unknown_source_requests",
            "SIP requests that would start something, from addresses that are not trunks, by method and action",
            unknown_sources.clone(),
        );
        let irma_requests = Family::<Labels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 12))
        });
        registry.register(
            "irma_request_duration_seconds",
            "Requests to the IRMA server, by outcome",
            irma_requests.clone(),
        );
        let rtp_send_failures = Family::<Labels, Counter>::default();
        registry.register(
            "rtp_send_failures",
            "RTP datagrams the media plane could not send, by reason (kernel, queue)",
            rtp_send_failures.clone(),
        );
        let rtp_packets_received = Counter::default();
        registry.register(
            "rtp_packets_received",
            "RTP packets received on call legs",
            rtp_packets_received.clone(),
        );
        let rtp_packets_lost = Counter::default();
        registry.register(
            "rtp_packets_lost",
            "RTP packets lost on call legs (from sequence numbers)",
            rtp_packets_lost.clone(),
        );
        let sip_foreign_responses = Counter::default();
        registry.register(
            "sip_foreign_responses",
            "SIP responses dropped: they came from elsewhere than their request went",
            sip_foreign_responses.clone(),
        );
        let sip_connections_refused = Family::<Labels, Counter>::default();
        registry.register(
            "sip_connections_refused",
            "TCP/TLS connections refused, by the limit they ran into (total, per_address)",
            sip_connections_refused.clone(),
        );
        let sip_connections_closed_silent = Counter::default();
        registry.register(
            "sip_connections_closed_silent",
            "Accepted TCP/TLS connections closed for sending no SIP message in time",
            sip_connections_closed_silent.clone(),
        );
        let srtp_rejected = Counter::default();
        registry.register(
            "srtp_rejected_packets",
            "SRTP packets dropped: failed authentication, a replay, or not SRTP at all",
            srtp_rejected.clone(),
        );
        let sip_shed = Family::<Labels, Counter>::default();
        registry.register(
            "sip_events_shed",
            "SIP messages and events shed under load, by queue",
            sip_shed.clone(),
        );
        let registrations = Family::<Labels, Counter>::default();
        registry.register(
            "sip_registrations",
            "REGISTER requests of agents' phones, by result",
            registrations.clone(),
        );
        let http_requests = Family::<Labels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests, by route and status",
            http_requests.clone(),
        );
        let exchange_calls = Family::<Labels, Counter>::default();
        registry.register(
            "exchange_calls",
            "Calls the municipality's exchange reported by API, by outcome (verified or the unverified reason)",
            exchange_calls.clone(),
        );
        let exchange_calls_ended = Family::<Labels, Counter>::default();
        registry.register(
            "exchange_calls_ended",
            "Exchange calls ended, by reason (exchange, hangup, max_duration)",
            exchange_calls_ended.clone(),
        );
        let exchange_auth_failures = Counter::default();
        registry.register(
            "exchange_auth_failures",
            "Requests to the exchange API with a missing or wrong key",
            exchange_auth_failures.clone(),
        );
        Metrics {
            registry,
            calls_started,
            calls_ended,
            calls_active,
            digits,
            code_lookups,
            wrong_codes,
            calling_numbers_blocked,
            unknown_sources,
            irma_requests,
            rtp_packets_received,
            rtp_packets_lost,
            sip_foreign_responses,
            sip_connections_refused,
            sip_connections_closed_silent,
            sip_shed,
            srtp_rejected,
            rtp_send_failures,
            registrations,
            http_requests,
            exchange_calls,
            exchange_calls_ended,
            exchange_auth_failures,
        }
    }

    /// The exchange reported a call, classified `outcome` (`verified` or an unverified reason).
    pub fn exchange_call(&self, outcome: &str) {
        self.exchange_calls
            .get_or_create(&vec![("outcome", outcome.to_owned())])
            .inc();
    }

    /// An exchange call ended for `reason`.
    pub fn exchange_call_ended(&self, reason: &str) {
        self.exchange_calls_ended
            .get_or_create(&vec![("reason", reason.to_owned())])
            .inc();
    }

    /// A call ended with `outcome` (`verified` or an unverified reason's name).
    pub fn call_ended(&self, outcome: &str) {
        self.calls_ended
            .get_or_create(&vec![("outcome", outcome.to_owned())])
            .inc();
    }

    /// A digit arrived by `method` (`rfc4733`, `info`, `inband`).
    pub fn digit(&self, method: &'static str) {
        self.digits
            .get_or_create(&vec![("method", method.to_owned())])
            .inc();
    }

    /// A code lookup ended with `result`.
    pub fn code_lookup(&self, result: &str) {
        self.code_lookups
            .get_or_create(&vec![("result", result.to_owned())])
            .inc();
    }

    /// A dialog-creating request from a source that is not a trunk was `dropped` or `rejected`
    /// (403). `invite`: the method was INVITE (else `other`: the label never holds what a
    /// stranger wrote).
    pub fn unknown_source(&self, invite: bool, action: &'static str) {
        let method = if invite { "INVITE" } else { "other" };
        self.unknown_sources
            .get_or_create(&vec![
                ("method", method.to_owned()),
                ("action", action.to_owned()),
            ])
            .inc();
    }

    /// An SRTP packet was dropped (failed authentication or a replay).
    pub fn srtp_rejected(&self) {
        self.srtp_rejected.inc();
    }

    /// `n` RTP datagrams could not be sent, for `reason` (see the field's doc).
    pub fn rtp_send_failed(&self, reason: &'static str, n: u64) {
        self.rtp_send_failures
            .get_or_create(&vec![("reason", reason.to_owned())])
            .inc_by(n);
    }

    /// SIP work was shed from `queue` (see the field's doc).
    pub fn sip_event_shed(&self, queue: &'static str) {
        self.sip_shed
            .get_or_create(&vec![("queue", queue.to_owned())])
            .inc();
    }

    /// A TCP/TLS connection was refused at `limit` (`total` or `per_address`).
    pub fn sip_connection_refused(&self, limit: &'static str) {
        self.sip_connections_refused
            .get_or_create(&vec![("limit", limit.to_owned())])
            .inc();
    }

    /// An IRMA request took `took`.
    pub fn irma_request(&self, ok: bool, took: Duration) {
        let outcome = if ok { "ok" } else { "error" };
        self.irma_requests
            .get_or_create(&vec![("outcome", outcome.to_owned())])
            .observe(took.as_secs_f64());
    }

    /// A REGISTER was accepted (`ok`) or refused.
    pub fn registration(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.registrations
            .get_or_create(&vec![("result", result.to_owned())])
            .inc();
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// What `/readyz` checks. Each probe answers whether its part works right now.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Vec<(&'static str, Arc<dyn ReadyCheck>)>,
}

/// What a readiness probe returns: `Err` with a one-line reason.
pub type ReadyFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + 'a>>;

/// One readiness probe.
pub trait ReadyCheck: Send + Sync + 'static {
    fn check(&self) -> ReadyFuture<'_>;
}

impl Readiness {
    /// Adds the probe `name`.
    pub fn with(mut self, name: &'static str, check: Arc<dyn ReadyCheck>) -> Self {
        self.checks.push((name, check));
        self
    }
}

/// `/readyz`'s store probe: a lookup of a token nobody has.
pub struct StoreReady(pub Arc<dyn crate::store::SessionStore>);

impl ReadyCheck for StoreReady {
    fn check(&self) -> ReadyFuture<'_> {
        Box::pin(async move {
            self.0
                .get(crate::store::FrontendToken::generate())
                .await
                .map(|_| ())
                .map_err(|e| format!("session store: {e}"))
        })
    }
}

/// `/readyz`'s SIP probe: the SIP driver loop answers.
pub struct SipReady(pub crate::sip_driver::SipHandle);

impl ReadyCheck for SipReady {
    fn check(&self) -> ReadyFuture<'_> {
        Box::pin(async move {
            self.0
                .lookup("")
                .await
                .map(|_| ())
                .map_err(|e| format!("SIP driver: {e}"))
        })
    }
}

/// `/readyz`'s IRMA probe: the IRMA server answers HTTP.
pub struct IrmaReady(pub crate::irma::IrmaClient);

impl ReadyCheck for IrmaReady {
    fn check(&self) -> ReadyFuture<'_> {
        Box::pin(async move { self.0.reachable().await.map_err(|e| e.to_string()) })
    }
}

/// `/metrics`, `/healthz`, `/readyz`.
pub fn router(readiness: Readiness) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(Arc::new(readiness))
}

async fn metrics() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        global().render(),
    )
        .into_response()
}

/// 200 with one `name ok` line per probe, or 503 naming what is not ready (no internals beyond
/// the probe's one-line reason).
async fn ready(State(readiness): State<Arc<Readiness>>) -> Response {
    let mut body = String::new();
    let mut all = true;
    for (name, check) in &readiness.checks {
        match tokio::time::timeout(Duration::from_secs(3), check.check()).await {
            Ok(Ok(())) => body.push_str(&format!("{name} ok\n")),
            Ok(Err(why)) => {
                all = false;
                body.push_str(&format!("{name} not ready: {why}\n"));
            }
            Err(_) => {
                all = false;
                body.push_str(&format!("{name} not ready: no answer within 3 s\n"));
            }
        }
    }
    let status = if all {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body).into_response()
}

/// Middleware counting every HTTP request by its route template (`/api/v1/calls/{id}/answer`,
/// never the concrete path, which may hold a token) and status.
pub async fn count_http(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let response = next.run(request).await;
    global()
        .http_requests
        .get_or_create(&vec![
            ("route", route),
            ("status", response.status().as_u16().to_string()),
        ])
        .inc();
    response
}

/// Times one IRMA request for [`Metrics::irma_request`].
pub struct IrmaTimer(Instant);

impl IrmaTimer {
    pub fn start() -> IrmaTimer {
        IrmaTimer(Instant::now())
    }

    pub fn finish(self, ok: bool) {
        global().irma_request(ok, self.0.elapsed());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_every_family_and_counts() {
        let m = Metrics::new();
        m.calls_started.inc();
        m.call_ended("verified");
        m.call_ended("no_code");
        m.call_ended("no_code");
        m.digit("rfc4733");
        m.code_lookup("unknown_code");
        m.irma_request(true, Duration::from_millis(30));
        m.registration(false);
        m.sip_connection_refused("per_address");
        let text = m.render();
        assert!(
            text.contains("veilig_bellen_calls_started_total 1"),
            "{text}"
        );
        assert!(
            text.contains("veilig_bellen_calls_ended_total{outcome=\"no_code\"} 2"),
            "{text}"
        );
        assert!(text.contains("veilig_bellen_dtmf_digits_total{method=\"rfc4733\"} 1"));
        assert!(text.contains("veilig_bellen_code_lookups_total{result=\"unknown_code\"} 1"));
        assert!(
            text.contains("veilig_bellen_irma_request_duration_seconds_count{outcome=\"ok\"} 1")
        );
        assert!(text.contains("veilig_bellen_sip_registrations_total{result=\"failed\"} 1"));
        assert!(
            text.contains("veilig_bellen_sip_connections_refused_total{limit=\"per_address\"} 1"),
            "{text}"
        );
        assert!(text.contains("veilig_bellen_sip_connections_closed_silent_total 0"));
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
