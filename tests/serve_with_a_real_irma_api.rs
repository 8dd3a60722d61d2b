//! `veilig-bellen serve --config FILE` as a municipality runs it, against irmago's requestor API
//! (a stand-in that answers as irmago does, `support/irmago_standin.rs`: the real server is not
//! installable here) with token authentication and signed results (`result_public_key_file`), two
//! municipalities in one install, JSON logs at `RUST_LOG=trace`, and SIPp as the trunk:
//!
//! - a website session for Arnhem reaches the IRMA server with the requestor token and a `tel:`
//!   return URL on Arnhem's number; once the citizen discloses, a call to that number keying the
//!   code shows up verified with the disclosed name and BSN, and ends without them;
//! - Arnhem's code dialled to Nijmegen's number (national form `0243290000`) is `unknown_code`
//!   there, and still verifies a call to Arnhem afterwards;
//! - a tampered or wrongly issued signed result makes the call `irma_error` (an expired one fails
//!   the session too);
//! - `/metrics` is Prometheus text counting those calls; every stderr line is JSON and holds no
//!   code, attribute value, calling number or secret;
//! - SIGTERM with a call up: a new call gets 503, the live one a BYE after `calls.shutdown_grace`,
//!   and the process exits 0.

use crate::support;

use crate::support::irmago_standin;
use crate::support::serve_child;
use crate::support::serve_cli;
use support::ports;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use axum::http::Method;
use irmago_standin::{IrmagoStandin, ResultJwt};
use serde_json::{json, Value};
use serve_child::{Serving, Site};
use serve_cli::{name_and_bsn_tenant, Setup, API_TOKEN, BSN, IRMA_TOKEN, NAME, SIP_PASSWORD};
use support::pcap::{dtmf_call_pcap, DtmfPcapConfig};
use support::sipp::{Sipp, TrunkCall};
use tokio::time::Instant;

const ARNHEM: &str = "+31263770000";
const NIJMEGEN: &str = "+31243290000";
const ARNHEM_SITE: &str = "https://www.arnhem.nl";

/// Two municipalities, each asking name and BSN, one agent each; the IRMA server at `irma_url`
/// with token authentication and signed results; `calls` is the `[calls]` table's body.
fn write_config(setup: &Setup, irma_url: &str, calls: &str) -> PathBuf {
    let tenant = |id: &str, name: &str, number: &str, site: &str, agent: &str| {
        let sip_password = format!("{SIP_PASSWORD}-{agent}");
        let agent_name = format!("Agent {agent}");
        format!(
            "\n{}",
            name_and_bsn_tenant(id, name, number, site, (agent, &agent_name, &sip_password))
        )
    };
    let text = format!(
        r#"data_dir = "{data}"
api_token = "{API_TOKEN}"
[http]
listen = "127.0.0.1:{http}"
[sip]
listen = "127.0.0.1:{sip}"
trunks = ["127.0.0.0/8"]
rtp_ports = "{low}-{high}"
[irma]
url = "{irma_url}"
token = "{IRMA_TOKEN}"
result_public_key_file = "{public_key}"
request_timeout = "3s"
[calls]
{calls}
{arnhem}{nijmegen}"#,
        data = setup.dir.path().join("data").display(),
        http = setup.http,
        sip = setup.sip,
        low = setup.rtp.start(),
        high = setup.rtp.end(),
        public_key = irmago_standin::public_key_file().display(),
        arnhem = tenant("arnhem", "Gemeente Arnhem", ARNHEM, ARNHEM_SITE, "jan"),
        nijmegen = tenant(
            "nijmegen",
            "Gemeente Nijmegen",
            NIJMEGEN,
            "https://www.nijmegen.nl",
            "fatima"
        ),
    );
    setup.write_config(&text)
}

/// What this test reads on the [`Site`] besides the calls.
impl Site {
    /// The trunk hangs up; the call shows `ended`, without attributes, links or calling number.
    async fn hang_up_clean(&self, sipp: Sipp, id: &Value) {
        let ended = self.hang_up(sipp, id).await;
        assert_eq!(ended["links"], json!([]), "{ended:#}");
        assert_eq!(ended["caller"], "", "{ended:#}");
    }

    /// `GET /metrics`: the text.
    async fn metrics(&self) -> String {
        let response = self
            .client
            .get(format!("{}/metrics", self.http))
            .send()
            .await
            .expect("GET /metrics");
        assert_eq!(response.status(), 200);
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(content_type.starts_with("text/plain"), "{content_type}");
        response.text().await.expect("metrics body")
    }
}

/// A citizen: the name and BSN their Yivi app discloses.
struct Citizen {
    name: &'static str,
    bsn: &'static str,
}

impl Citizen {
    /// A website session for `tenant` (checking what reaches the IRMA server), the disclosure in
    /// the (stand-in) Yivi app once `serve` follows the session, and the code read from the return
    /// URL the IRMA server hands the app. Returns the code and the website's frontend token.
    async fn get_code(
        &self,
        site: &Site,
        standin: &IrmagoStandin,
        tenant: &str,
    ) -> (String, String) {
        let posts_before = session_posts(standin).len();
        let (status, body) = site.start_session(tenant, ARNHEM_SITE).await;
        assert_eq!(status, 200, "{body}");
        let session: Value = serde_json::from_str(&body).expect("session JSON");
        let token = session["token"]
            .as_str()
            .expect("frontend token")
            .to_owned();

        // The IRMA server got one new session request, with the requestor token.
        let posts = session_posts(standin);
        assert_eq!(posts.len(), posts_before + 1, "{posts:#?}");
        let post = posts.last().expect("a POST /session");
        assert_eq!(
            post.authorization.as_deref(),
            Some(IRMA_TOKEN),
            "token authentication: the raw token in Authorization"
        );
        assert!(
            post.content_type
                .as_deref()
                .is_some_and(|c| c.starts_with("application/json")),
            "{post:?}"
        );
        let u = session["sessionPtr"]["u"].as_str().expect("sessionPtr.u");
        assert!(
            u.starts_with(&format!("{}/irma/session/", standin.url)),
            "{u}"
        );
        assert_eq!(session["sessionPtr"]["irmaqr"], "disclosing");
        assert_eq!(session["frontendRequest"]["maxProtocolVersion"], "1.1");
        let client_token = u.rsplit('/').next().unwrap();
        let request = standin
            .request_of(client_token)
            .expect("the session request");
        assert_eq!(
            request["@context"],
            "https://irma.app/ld/request/disclosure/v2"
        );
        assert_eq!(request["disclose"], json!([[[NAME]], [[BSN]]]));
        assert!(request.get("augmentReturnUrl").is_none(), "{request}");

        // The citizen takes a moment to scan: meanwhile `serve` follows the session's status
        // events (irmago's `statusevents`), so the outcome reaches it as an event.
        let irma_token = standin.requestor_token_of(client_token).expect("its token");
        let path = |what: &str| format!("/session/{irma_token}/{what}");
        let (events, status) = (path("statusevents"), path("status"));
        let count =
            |seen: &[irmago_standin::Seen], p: &str| seen.iter().filter(|s| s.path == p).count();
        irmago_standin::wait_seen(standin, Duration::from_secs(5), |seen| {
            count(seen, &events) == 1 && count(seen, &status) == 2
        })
        .await
        .unwrap_or_else(|seen| panic!("serve did not follow the session's events: {seen:#?}"));

        let return_url = standin
            .disclose(
                &session["sessionPtr"],
                &[(NAME, self.name), (BSN, self.bsn)],
            )
            .expect("the citizen discloses");
        let number = if tenant == "arnhem" { ARNHEM } else { NIJMEGEN };
        let code = return_url
            .strip_prefix(&format!("tel:{number},"))
            .unwrap_or_else(|| panic!("return URL {return_url:?} is not tel:{number},CODE"))
            .to_owned();
        assert!(
            code.len() == 8 && code.bytes().all(|b| b.is_ascii_digit()),
            "{return_url}"
        );
        // The result follows at once from the event, without polling the status.
        let result = path("result-jwt");
        irmago_standin::wait_seen(standin, Duration::from_secs(3), |seen| {
            count(seen, &result) == 1
        })
        .await
        .unwrap_or_else(|seen| panic!("serve did not fetch the signed result: {seen:#?}"));
        assert_eq!(count(&standin.seen(), &status), 2, "no polling");
        assert!(!body.contains(&code), "the browser saw the code: {body}");
        for secret in standin.requestor_tokens() {
            assert!(!body.contains(&secret), "the browser saw a requestor token");
        }
        (code, token)
    }
}

fn session_posts(standin: &IrmagoStandin) -> Vec<irmago_standin::Seen> {
    standin
        .seen()
        .into_iter()
        .filter(|s| s.method == Method::POST && s.path.trim_end_matches('/') == "/session")
        .collect()
}

fn info_call(caller: &str, called: &str, code: &str) -> TrunkCall {
    let mut call = TrunkCall::new(caller);
    call.called = called.to_owned();
    call.info_digits = code.to_owned();
    call
}

/// One sample of the Prometheus text exposition.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// Parses the Prometheus text format (0.0.4; OpenMetrics' `# EOF` is a comment there): `# HELP` /
/// `# TYPE` lines, then samples `name{label="value",…} value [timestamp]`. Every sample must belong
/// to a family with a TYPE. Panics naming the first line that is not valid.
fn parse_prometheus(text: &str) -> Vec<Sample> {
    fn is_name(s: &str) -> bool {
        let mut chars = s.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }
    fn value(s: &str) -> Option<f64> {
        match s {
            "+Inf" | "Inf" => Some(f64::INFINITY),
            "-Inf" => Some(f64::NEG_INFINITY),
            "NaN" => Some(f64::NAN),
            _ => s.parse().ok(),
        }
    }
    let mut types: HashMap<String, String> = HashMap::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        let bad = || -> ! { panic!("not Prometheus text: {line:?}\nin:\n{text}") };
        if line.trim().is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.trim_start().splitn(3, ' ');
            match words.next() {
                Some("TYPE") => {
                    let name = words.next().unwrap_or_default();
                    let kind = words.next().unwrap_or_default();
                    let known = [
                        "counter",
                        "gauge",
                        "histogram",
                        "summary",
                        "untyped",
                        "unknown",
                        "info",
                        "stateset",
                        "gaugehistogram",
                    ];
                    if !is_name(name) || !known.contains(&kind) {
                        bad();
                    }
                    types.insert(name.to_owned(), kind.to_owned());
                }
                Some("HELP") if !is_name(words.next().unwrap_or_default()) => bad(),
                _ => {}
            }
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or_else(|| bad());
        let name = &line[..name_end];
        if !is_name(name) {
            bad();
        }
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(after) = rest.strip_prefix('{') {
            let mut chars = after.char_indices().peekable();
            let end = loop {
                // name="value" pairs separated by commas.
                while chars.peek().is_some_and(|(_, c)| *c == ',' || *c == ' ') {
                    chars.next();
                }
                match chars.peek().copied() {
                    Some((i, '}')) => break i,
                    None => bad(),
                    Some(_) => {}
                }
                let mut label = String::new();
                for (_, c) in chars.by_ref() {
                    if c == '=' {
                        break;
                    }
                    label.push(c);
                }
                if !is_name(&label) || chars.next().map(|(_, c)| c) != Some('"') {
                    bad();
                }
                let mut val = String::new();
                loop {
                    match chars.next() {
                        Some((_, '\\')) => match chars.next() {
                            Some((_, 'n')) => val.push('\n'),
                            Some((_, c @ ('\\' | '"'))) => val.push(c),
                            _ => bad(),
                        },
                        Some((_, '"')) => break,
                        Some((_, c)) => val.push(c),
                        None => bad(),
                    }
                }
                labels.push((label, val));
            };
            rest = &after[end + 1..];
        }
        let mut fields = rest.split_whitespace();
        let v = fields.next().and_then(value).unwrap_or_else(|| bad());
        if let Some(ts) = fields.next() {
            if ts.parse::<f64>().is_err() {
                bad();
            }
        }
        if fields.next().is_some() {
            bad();
        }
        let family = ["_total", "_bucket", "_sum", "_count", "_created", "_info"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|base| types.contains_key(*base))
            })
            .unwrap_or(name);
        assert!(
            types.contains_key(family),
            "sample {name} without a # TYPE of its family\n{text}"
        );
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value: v,
        });
    }
    samples
}

/// The value of the sample `name` with exactly the label `label` = `value` (0 when absent).
fn sample(samples: &[Sample], name: &str, label: (&str, &str)) -> f64 {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && s.labels.len() == 1
                && s.labels[0].0 == label.0
                && s.labels[0].1 == label.1
        })
        .map_or(0.0, |s| s.value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_municipalities_against_irmago_verify_only_their_own_codes_and_log_no_personal_data() {
    let standin = IrmagoStandin::start(ports::port(), IRMA_TOKEN).await;
    let setup = Setup::new();
    let config = write_config(&setup, &standin.url, "");
    let mut serve = Serving::start(
        &config,
        true,
        "trace",
        config.with_file_name("serve.stderr"),
        "serve",
    )
    .await;
    let site = Site::new(&setup);
    let summary = serve.stdout();
    assert!(
        summary.contains(&format!("{} (token)", standin.url)),
        "{summary}"
    );
    assert!(
        summary.contains("tenant arnhem") && summary.contains(ARNHEM),
        "{summary}"
    );
    assert!(
        summary.contains("tenant nijmegen") && summary.contains(NIJMEGEN),
        "{summary}"
    );
    assert!(
        !summary.contains("result_public_key_file is not set"),
        "signed results are configured: {summary}"
    );

    // Ready: store, SIP and the IRMA server.
    let ready = site
        .client
        .get(format!("{}/readyz", site.http))
        .send()
        .await
        .expect("GET /readyz");
    assert_eq!(ready.status(), 200);
    let ready = ready.text().await.unwrap();
    assert!(ready.contains("irma ok"), "{ready}");

    // The stand-in really checks the requestor token, as irmago does.
    let wrong = site
        .client
        .post(format!("{}/session", standin.url))
        .header("authorization", "not-the-token")
        .json(&json!({"@context": "https://irma.app/ld/request/disclosure/v2", "disclose": [[[BSN]]]}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);
    let body: Value = wrong.json().await.unwrap();
    assert_eq!(body["error"], "UNAUTHORIZED");

    // A website may start sessions only for its own municipality.
    let posts_before = session_posts(&standin).len();
    let (status, body) = site.start_session("nijmegen", ARNHEM_SITE).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        session_posts(&standin).len(),
        posts_before,
        "no IRMA session for it"
    );

    let mut codes = Vec::new();
    let mut callers = Vec::new();
    let citizens = [
        Citizen {
            name: "Fenna Oudeman-Kralingen",
            bsn: "999993653",
        },
        Citizen {
            name: "Sem Bakhuizen",
            bsn: "999990019",
        },
        Citizen {
            name: "Noor Tielemans",
            bsn: "999991772",
        },
        Citizen {
            name: "Daan Verhoeckx",
            bsn: "999992351",
        },
    ];

    // a. A verified call to Arnhem, the code as RFC 4733 events.
    let (code, token) = citizens[0].get_code(&site, &standin, "arnhem").await;
    codes.push(code.clone());
    assert_eq!(
        site.session_status(&token, ARNHEM_SITE).await["status"],
        "done"
    );
    let caller = "+31612340001";
    callers.push(caller);
    let mut call = TrunkCall::new(caller);
    call.called = ARNHEM.to_owned();
    call.pcap = Some(dtmf_call_pcap(&code, &DtmfPcapConfig::default()).expect("pcap"));
    let Some((sipp, waiting)) = site.call_until_waiting(&call).await else {
        return;
    };
    assert_eq!(waiting["verified"], true, "{waiting:#}");
    assert_eq!(waiting["reason"], Value::Null, "{waiting:#}");
    assert_eq!(waiting["tenant"], "arnhem", "{waiting:#}");
    assert_eq!(
        waiting["attributes"],
        json!([
            {"id": NAME, "label": "Naam", "value": citizens[0].name},
            {"id": BSN, "label": "BSN", "value": citizens[0].bsn},
        ]),
        "{waiting:#}"
    );
    site.hang_up_clean(sipp, &waiting["id"]).await;
    // With the IRMA server's public key configured, only the signed result was fetched.
    let results: Vec<String> = standin
        .seen()
        .into_iter()
        .filter(|s| s.path.contains("/result"))
        .map(|s| s.path)
        .collect();
    assert!(!results.is_empty(), "the result was fetched");
    assert!(
        results.iter().all(|p| p.ends_with("/result-jwt")),
        "the unsigned result was asked for: {results:?}"
    );

    // b. Arnhem's code dialled to Nijmegen (national form): unknown there, and still good for
    // Arnhem afterwards.
    let (code, _) = citizens[1].get_code(&site, &standin, "arnhem").await;
    codes.push(code.clone());
    let caller = "+31612340002";
    callers.push(caller);
    let Some((sipp, waiting)) = site
        .call_until_waiting(&info_call(caller, "0243290000", &code))
        .await
    else {
        return;
    };
    assert_eq!(
        waiting["tenant"], "nijmegen",
        "routed by number: {waiting:#}"
    );
    assert_eq!(waiting["verified"], false, "{waiting:#}");
    assert_eq!(waiting["reason"], "unknown_code", "{waiting:#}");
    assert_eq!(waiting["attributes"], json!([]), "{waiting:#}");
    site.hang_up_clean(sipp, &waiting["id"]).await;

    let caller = "+31612340003";
    callers.push(caller);
    let Some((sipp, waiting)) = site
        .call_until_waiting(&info_call(caller, ARNHEM, &code))
        .await
    else {
        return;
    };
    assert_eq!(waiting["tenant"], "arnhem", "{waiting:#}");
    assert_eq!(
        waiting["verified"], true,
        "the code stayed usable: {waiting:#}"
    );
    assert_eq!(
        waiting["attributes"][1]["value"], citizens[1].bsn,
        "{waiting:#}"
    );
    site.hang_up_clean(sipp, &waiting["id"]).await;

    // c. A signed result that does not check out: tampered, then from another issuer.
    for (mode, citizen, caller) in [
        (ResultJwt::Tampered, &citizens[2], "+31612340004"),
        (ResultJwt::WrongIssuer, &citizens[3], "+31612340005"),
    ] {
        standin.set_result_jwt(mode);
        let (code, token) = citizen.get_code(&site, &standin, "arnhem").await;
        codes.push(code.clone());
        callers.push(caller);
        assert_eq!(
            site.session_status(&token, ARNHEM_SITE).await["status"],
            "cancelled",
            "{mode:?}: the website learns the disclosure failed"
        );
        let Some((sipp, waiting)) = site
            .call_until_waiting(&info_call(caller, ARNHEM, &code))
            .await
        else {
            return;
        };
        assert_eq!(waiting["verified"], false, "{mode:?}: {waiting:#}");
        assert_eq!(waiting["reason"], "irma_error", "{mode:?}: {waiting:#}");
        assert_eq!(waiting["attributes"], json!([]), "{mode:?}: {waiting:#}");
        site.hang_up_clean(sipp, &waiting["id"]).await;
    }
    // Signed right but expired: refused as well (the website hears it failed).
    standin.set_result_jwt(ResultJwt::Expired);
    let (code, token) = citizens[0].get_code(&site, &standin, "arnhem").await;
    codes.push(code);
    assert_eq!(
        site.session_status(&token, ARNHEM_SITE).await["status"],
        "cancelled"
    );
    standin.set_result_jwt(ResultJwt::Genuine);

    // d. The calls in /metrics.
    let text = site.metrics().await;
    let samples = parse_prometheus(&text);
    let ended = "veilig_bellen_calls_ended_total";
    assert!(
        sample(&samples, ended, ("outcome", "verified")) >= 2.0,
        "{text}"
    );
    assert!(
        sample(&samples, ended, ("outcome", "unknown_code")) >= 1.0,
        "{text}"
    );
    assert!(
        sample(&samples, ended, ("outcome", "irma_error")) >= 2.0,
        "{text}"
    );
    let lookups = "veilig_bellen_code_lookups_total";
    assert!(
        sample(&samples, lookups, ("result", "unknown_code")) >= 1.0,
        "{text}"
    );
    let digits = "veilig_bellen_dtmf_digits_total";
    assert!(
        sample(&samples, digits, ("method", "rfc4733")) >= 8.0,
        "{text}"
    );
    assert!(
        sample(&samples, digits, ("method", "info")) >= 32.0,
        "{text}"
    );

    // e. Stopped, its whole stderr: JSON lines, no personal data, no secret.
    let status = serve.terminate().await;
    assert!(status.success(), "SIGTERM is a clean stop: {status:?}");
    let stderr = serve.stderr();
    let mut levels: HashMap<String, usize> = HashMap::new();
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        let parsed: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a stderr line is not JSON ({e}): {line}"));
        let level = parsed["level"]
            .as_str()
            .unwrap_or_else(|| panic!("no level: {line}"));
        *levels.entry(level.to_owned()).or_default() += 1;
    }
    assert!(
        levels.get("TRACE").copied().unwrap_or(0) > 0,
        "RUST_LOG=trace took effect: {levels:?}"
    );
    let mut secrets: Vec<(String, String)> = Vec::new();
    for code in &codes {
        secrets.push(("a link code".into(), code.clone()));
    }
    for c in &citizens {
        secrets.push(("a name".into(), c.name.to_owned()));
        secrets.push(("a BSN".into(), c.bsn.to_owned()));
    }
    for caller in &callers {
        secrets.push(("a calling number".into(), (*caller).to_owned()));
        // Also without the country code, as 06… or bare.
        secrets.push(("a calling number".into(), caller[3..].to_owned()));
    }
    for token in standin.requestor_tokens() {
        secrets.push(("an IRMA requestor token".into(), token));
    }
    secrets.push(("the IRMA requestor token".into(), IRMA_TOKEN.to_owned()));
    secrets.push(("the agents' API token".into(), API_TOKEN.to_owned()));
    let stdout = serve.stdout();
    let outputs = [
        ("stderr", stderr.as_str()),
        ("stdout", stdout.as_str()),
        ("/metrics", text.as_str()),
    ];
    for (what, secret) in &secrets {
        for (output, content) in outputs {
            if let Some(line) = content.lines().find(|l| l.contains(secret.as_str())) {
                panic!("{what} ({secret}) in {output}: {line}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_refuses_new_calls_hangs_up_live_ones_after_the_grace_time_and_exits_0() {
    let standin = IrmagoStandin::start(ports::port(), IRMA_TOKEN).await;
    let setup = Setup::new();
    let grace = Duration::from_secs(2);
    let config = write_config(
        &setup,
        &standin.url,
        "shutdown_grace = \"2s\"\nfirst_digit_timeout = \"1s\"",
    );
    let mut serve = Serving::start(
        &config,
        false,
        "info",
        config.with_file_name("serve.stderr"),
        "serve",
    )
    .await;
    let site = Site::new(&setup);

    let mut live = TrunkCall::new("+31612340021");
    live.called = ARNHEM.to_owned();
    live.await_bye = true;
    live.wait_limit = Some(Duration::from_secs(20));
    live.limit = Some(Duration::from_secs(25));
    let Some((live_sipp, waiting)) = site.call_until_waiting(&live).await else {
        return;
    };
    assert_eq!(waiting["reason"], "no_code", "{waiting:#}");

    serve.sigterm();
    let stopped_at = Instant::now();
    // It logs that it waits for the live call once new calls are refused.
    assert!(
        serve
            .wait_stderr(
                "shutting down: waiting for calls to finish",
                Duration::from_secs(5)
            )
            .await,
        "serve did not begin its shutdown:\n{}",
        serve.stderr_tail()
    );
    let mut late = TrunkCall::new("+31612340022");
    late.called = ARNHEM.to_owned();
    late.expect_refusal = Some(503);
    let Some(refused) = Sipp::start(site.sip, &late) else {
        return;
    };
    let messages = refused
        .finish()
        .await
        .unwrap_or_else(|e| panic!("a call during shutdown was not refused with 503: {e}"));
    assert!(messages.contains("Retry-After:"), "{messages}");

    let messages = live_sipp
        .finish()
        .await
        .unwrap_or_else(|e| panic!("the live call got no BYE at shutdown: {e}"));
    let cut_after = stopped_at.elapsed();
    assert!(messages.contains("BYE sip:"), "{messages}");
    assert!(
        cut_after >= grace,
        "the live call was cut after {cut_after:?}, before the grace time {grace:?}"
    );
    assert!(
        cut_after <= grace + Duration::from_secs(4),
        "the live call got its BYE only {cut_after:?} after SIGTERM (grace {grace:?})"
    );

    let status = serve.exit_within(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "stderr:\n{}", serve.stderr_tail());
    let stdout = serve.stdout();
    assert!(stdout.contains("stopping: new calls get 503"), "{stdout}");
    assert!(stdout.contains("hung up 1 call(s)"), "{stdout}");
}
