//! A municipality runs `serve` behind its reverse proxy (`http.trusted_proxies = ["127.0.0.1"]`):
//! citizens coming through the proxy are limited each on the address the proxy forwarded for
//! (`X-Forwarded-For`, or `Forwarded: for=`), so one of them flooding the session start gets 429
//! while another still gets a session, and portal logins are counted per citizen in the same way. A
//! peer that is not the proxy (127.0.0.2) is limited on its own address, whatever
//! `X-Forwarded-For` it forges.
//!
//! The IRMA server is the simulator, served by this test process on loopback.

use crate::support::serve_cli;

use std::net::IpAddr;
use std::time::Duration;

use axum::Router;
use reqwest::StatusCode;
use serde_json::{json, Value};
use serve_cli::{Serve, Setup, IRMA_TOKEN};
use tokio::net::TcpListener;
use veilig_bellen::irma::simulator::{simulator_router, Simulator, SimulatorConfig};

/// The default burst of the public API: requests one client may make at once.
const BURST: usize = 20;

/// The IRMA simulator on loopback, wanting `serve`'s requestor token; its base URL.
async fn irma_simulator() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/irma-sim", listener.local_addr().unwrap());
    let mut config = SimulatorConfig::new(&base);
    config.requestor_token = Some(IRMA_TOKEN.to_owned());
    let router = Router::new().nest("/irma-sim", simulator_router(Simulator::new(config)));
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    base
}

/// An HTTP client whose connections come from `ip` (any 127.0.0.0/8 address is loopback).
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

struct Site {
    base: String,
}

impl Site {
    /// `POST /api/v1/sessions` with `headers`: the status, and the body as JSON.
    async fn start_session(
        &self,
        client: &reqwest::Client,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let mut request = client
            .post(format!("{}/api/v1/sessions", self.base))
            .json(&json!({"tenant": "arnhem"}));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("POST /api/v1/sessions");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Starts sessions until refused (at most `limit` tries); how many were granted, and whether a
    /// 429 `rate_limited` ended it. `headers` gets the try's number.
    async fn flood(
        &self,
        client: &reqwest::Client,
        limit: usize,
        headers: impl Fn(usize) -> Vec<(&'static str, String)>,
    ) -> (usize, bool) {
        for i in 0..limit {
            let pairs = headers(i);
            let pairs: Vec<(&str, &str)> = pairs.iter().map(|(n, v)| (*n, v.as_str())).collect();
            let (status, body) = self.start_session(client, &pairs).await;
            match status {
                StatusCode::OK => {}
                StatusCode::TOO_MANY_REQUESTS => {
                    assert_eq!(body["error"], "rate_limited", "{body}");
                    return (i, true);
                }
                other => panic!("session start answered {other}: {body}"),
            }
        }
        (limit, false)
    }

    /// `POST /api/v1/login` with a wrong password for `username`: the status.
    async fn wrong_login(&self, client: &reqwest::Client, username: &str, xff: &str) -> u16 {
        client
            .post(format!("{}/api/v1/login", self.base))
            .header("x-forwarded-for", xff)
            .json(&json!({"username": username, "password": "not the password"}))
            .send()
            .await
            .expect("POST /api/v1/login")
            .status()
            .as_u16()
    }
}

fn granted_a_session(status: StatusCode, body: &Value, irma: &str) -> bool {
    status == StatusCode::OK
        && body["sessionPtr"]["u"]
            .as_str()
            .is_some_and(|u| u.starts_with(irma))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_each_citizen_has_its_own_limit_and_forgers_do_not() {
    let irma = irma_simulator().await;
    let setup = Setup::new();
    let path = setup.config(r#"trusted_proxies = ["127.0.0.1"]"#);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(r#"url = "http://127.0.0.1:9""#));
    std::fs::write(
        &path,
        text.replace(
            r#"url = "http://127.0.0.1:9""#,
            &format!(r#"url = "{irma}""#),
        ),
    )
    .unwrap();
    let serve = tokio::task::spawn_blocking(move || Serve::start(&path))
        .await
        .unwrap();
    let site = Site {
        base: format!("http://127.0.0.1:{}", setup.http),
    };
    let proxy = client_from("127.0.0.1");
    let stranger = client_from("127.0.0.2");

    // A citizen behind the proxy floods the session start. What the citizen wrote into
    // X-Forwarded-For itself (left of what the proxy appended) changes every time and counts for
    // nothing: the key is the address the proxy saw.
    let (granted, refused) = site
        .flood(&proxy, 3 * BURST, |i| {
            vec![(
                "x-forwarded-for",
                format!("203.0.113.{}, 198.51.100.7", i % 250),
            )]
        })
        .await;
    assert!(refused, "the flooding citizen was never refused");
    assert!(
        (BURST..BURST + 10).contains(&granted),
        "{granted} sessions before the 429"
    );

    // Another citizen behind the same proxy still gets a session, by X-Forwarded-For or by
    // RFC 7239 Forwarded (IPv6, quoted, with a port) …
    let (status, body) = site
        .start_session(&proxy, &[("x-forwarded-for", "192.0.2.44")])
        .await;
    assert!(granted_a_session(status, &body, &irma), "{status} {body}");
    let (status, body) = site
        .start_session(
            &proxy,
            &[("forwarded", r#"for="[2001:db8:cafe::17]:4711""#)],
        )
        .await;
    assert!(granted_a_session(status, &body, &irma), "{status} {body}");
    // … while the flooder stays refused.
    let (status, _) = site
        .start_session(&proxy, &[("x-forwarded-for", "198.51.100.7")])
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);

    // A peer that is not the proxy forges a new X-Forwarded-For for every request: it is limited
    // on its own address all the same.
    let (granted, refused) = site
        .flood(&stranger, 3 * BURST, |i| {
            vec![("x-forwarded-for", format!("192.0.2.{}", 100 + i))]
        })
        .await;
    assert!(
        refused,
        "forging X-Forwarded-For escaped the limit ({granted} sessions)"
    );
    assert!((BURST..BURST + 10).contains(&granted), "{granted} sessions");
    // The proxy itself (no forwarding header) is yet another client, and served.
    let (status, body) = site.start_session(&proxy, &[]).await;
    assert!(granted_a_session(status, &body, &irma), "{status} {body}");

    // Portal logins are counted per citizen too: 20 failures (each with another username, so only
    // the address count grows) lock out the address the proxy forwarded for, and only that one.
    for i in 0..20 {
        let status = site
            .wrong_login(&proxy, &format!("guess{i}"), "198.51.100.99")
            .await;
        assert_eq!(status, 401, "failure {i}");
    }
    assert_eq!(
        site.wrong_login(&proxy, "guess20", "198.51.100.99").await,
        429,
        "the guessing citizen is locked out"
    );
    assert_eq!(
        site.wrong_login(&proxy, "guess21", "192.0.2.44").await,
        401,
        "another citizen behind the same proxy may still try"
    );

    let status = tokio::task::spawn_blocking(move || serve.terminate())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
}
