//! Operations: `/healthz` says the process lives, `/readyz` says store, SIP and IRMA server are
//! there (and 503 names the IRMA server once it is gone), and `/metrics` is Prometheus text that
//! counts what operators watch: a call with a wrong code shows up as a call ended `unknown_code`,
//! as RFC 4733 digits and as a code lookup `unknown_code`; HTTP requests are counted by route
//! template, never by a path holding a token.

use crate::support;

use std::collections::HashMap;
use std::time::Duration;
use support::pcap::{dtmf_call_pcap, DtmfPcapConfig};
use support::server;
use support::sipp::TrunkCall;

/// Parses the text exposition: every sample line is `name{labels} value`; returns the samples.
fn samples(text: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (name, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not a sample line: {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not a number in {line:?}"));
        let bare = name.split('{').next().unwrap_or_default();
        assert!(
            !bare.is_empty()
                && bare
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        out.insert(name.to_owned(), value);
    }
    out
}

async fn scrape(base: &str) -> (HashMap<String, f64>, String) {
    let response = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("GET /metrics");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = response.text().await.expect("body");
    (samples(&text), text)
}

fn value(s: &HashMap<String, f64>, name: &str) -> f64 {
    s.get(name).copied().unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics_count_a_call() {
    let srv = server::start(4, |c| {
        c.calls.call.collect.first_digit_timeout = Duration::from_millis(1500);
        c.calls.call.collect.inter_digit_timeout = Duration::from_millis(1000);
    })
    .await;
    let base = srv.http_base.clone();
    let healthz = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(healthz.status(), 200);
    let readyz = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(readyz.status(), 200);
    let ready_text = readyz.text().await.unwrap();
    for part in ["store ok", "sip ok", "irma ok"] {
        assert!(ready_text.contains(part), "{ready_text}");
    }

    let (before, _) = scrape(&base).await;
    let code = srv.new_code().await;
    let wrong = if code == "55500011" {
        "55500022"
    } else {
        "55500011"
    };
    let mut call = TrunkCall::new("+31600000077");
    call.pcap = Some(dtmf_call_pcap(wrong, &DtmfPcapConfig::default()).expect("pcap"));
    let Some((sipp, waiting)) = srv.call_until_waiting(&call, Duration::from_secs(8)).await else {
        return;
    };
    assert_eq!(waiting["reason"], "unknown_code", "{waiting:#}");
    srv.hang_up_and_check_ended(sipp, &waiting["id"]).await;

    let (after, text) = scrape(&base).await;
    let delta = |name: &str| value(&after, name) - value(&before, name);
    assert!(
        delta("veilig_bellen_calls_ended_total{outcome=\"unknown_code\"}") >= 1.0,
        "{text}"
    );
    assert!(delta("veilig_bellen_calls_started_total") >= 1.0, "{text}");
    assert!(
        delta("veilig_bellen_dtmf_digits_total{method=\"rfc4733\"}") >= 8.0,
        "{text}"
    );
    assert!(
        delta("veilig_bellen_code_lookups_total{result=\"unknown_code\"}") >= 1.0,
        "{text}"
    );
    assert!(
        value(
            &after,
            "veilig_bellen_irma_request_duration_seconds_count{outcome=\"ok\"}"
        ) >= 1.0,
        "{text}"
    );
    assert!(
        value(
            &after,
            "veilig_bellen_http_requests_total{route=\"/api/v1/sessions/{token}/status\",status=\"200\"}"
        ) >= 1.0,
        "requests are counted by route template: {text}"
    );
    assert!(!text.contains(wrong), "no code in the metrics");
    assert!(
        !text.contains("+31600000077"),
        "no caller number in the metrics"
    );
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_names_an_unreachable_irma_server() {
    use veilig_bellen::irma::IrmaServerConfig;
    use veilig_bellen::server::IrmaBackend;
    let srv = server::start(2, |c| {
        let mut irma = IrmaServerConfig::new("http://127.0.0.1:9");
        irma.request_timeout = Duration::from_millis(500);
        c.irma = IrmaBackend::Server(irma);
    })
    .await;
    let readyz = reqwest::get(format!("{}/readyz", srv.http_base))
        .await
        .unwrap();
    assert_eq!(readyz.status(), 503);
    let text = readyz.text().await.unwrap();
    assert!(
        text.contains("store ok") && text.contains("sip ok"),
        "{text}"
    );
    assert!(text.contains("irma not ready"), "{text}");
    let healthz = reqwest::get(format!("{}/healthz", srv.http_base))
        .await
        .unwrap();
    assert_eq!(healthz.status(), 200, "alive, just not ready");
    srv.shutdown().await;
}
