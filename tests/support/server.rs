//! Test support: the whole product in the test process via `server::start` on loopback (SIP, HTTP and
//! the embedded IRMA simulator on `127.0.0.1:0`, a fresh data directory), plus helpers that act as the
//! municipality's website (start a session), as the Yivi app (disclose, read the code from the
//! `tel:` return URL) and as an agent's portal (`GET /api/v1/calls`).

use std::net::{SocketAddr, UdpSocket};
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use super::sipp::{skip_or_fail, Sipp, TrunkCall};
use serde_json::{json, Value};
use veilig_bellen::call::manager::CallFlowConfig;
use veilig_bellen::links::LinkConfig;
use veilig_bellen::pii::Pii;
use veilig_bellen::server::{self, IrmaBackend, Running, ServerConfig};
use veilig_bellen::sip_driver::SipConfig;
use veilig_bellen::tenant::{Tenant, Tenants};

/// Bearer token of the agents' API in tests.
pub const API_TOKEN: &str = "test-api-token-h8";
/// The number the demo tenant's citizens dial (and what the Yivi app gets in `tel:`).
pub const TENANT_NUMBER: &str = "+31850000000";

/// A running server and what a test needs to reach it.
pub struct TestServer {
    pub running: Running,
    pub http_base: String,
    /// Where trunks send SIP over UDP.
    pub sip_udp: SocketAddr,
    pub rtp_ports: RangeInclusive<u16>,
    client: reqwest::Client,
    _data: tempfile::TempDir,
}

/// The configuration tests start from: demo tenant, embedded IRMA simulator, a private RTP range of
/// `rtp_pairs` even/odd pairs that no other test picks ([`super::ports`]), every loopback address a
/// trunk.
pub fn test_config(data_dir: std::path::PathBuf, rtp_pairs: u16) -> ServerConfig {
    let loopback: SocketAddr = "127.0.0.1:0".parse().expect("literal address");
    let calls = CallFlowConfig {
        trunks: CallFlowConfig::loopback_trunks(),
        rtp_ports: super::ports::range(2 * rtp_pairs),
        ..CallFlowConfig::default()
    };
    ServerConfig {
        sip: SipConfig::new(loopback, "veilig-bellen"),
        http: loopback,
        http_tls: None,
        trusted_proxies: Default::default(),
        api_token: Pii::new(API_TOKEN.to_owned()),
        tenants: Tenants::new(vec![Tenant::demo()]),
        data_dir,
        key_file: None,
        store: Default::default(),
        irma: IrmaBackend::Simulator,
        links: LinkConfig::default(),
        calls,
        demo_pages: false,
    }
}

/// Starts a server with [`test_config`] changed by `tweak`.
pub async fn start(rtp_pairs: u16, tweak: impl FnOnce(&mut ServerConfig)) -> TestServer {
    let data = tempfile::Builder::new()
        .prefix("vb-call-test-")
        .tempdir()
        .expect("temp data dir");
    let mut config = test_config(data.path().to_path_buf(), rtp_pairs);
    tweak(&mut config);
    let rtp_ports = config.calls.rtp_ports.clone();
    let running = server::start(config).await.expect("server starts");
    let sip_udp = *running.sip.udp.first().expect("a UDP SIP listener");
    TestServer {
        http_base: format!("http://{}", running.http),
        sip_udp,
        rtp_ports,
        running,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("HTTP client"),
        _data: data,
    }
}

impl TestServer {
    /// What the website widget does on a click: `POST /api/v1/sessions`.
    pub async fn start_session(&self) -> Value {
        let response = self
            .client
            .post(format!("{}/api/v1/sessions", self.http_base))
            .json(&json!({"tenant": "demo"}))
            .send()
            .await
            .expect("POST /api/v1/sessions");
        assert_eq!(response.status(), 200, "session start refused");
        response.json().await.expect("session JSON")
    }

    /// What the Yivi app does after scanning: disclose the simulator's demo values. Returns the code
    /// from the `tel:<number>,<code>` return URL, once the website sees the session `done`.
    pub async fn disclose(&self, session: &Value) -> String {
        disclose_session(&self.client, &self.http_base, session, TENANT_NUMBER).await
    }

    /// A fresh link code, as a citizen gets it: session, disclosure.
    pub async fn new_code(&self) -> String {
        let session = self.start_session().await;
        self.disclose(&session).await
    }

    /// A citizen's phone call with `code` to the tenant's number by our own caller
    /// (`veilig-bellen call --stay`): it stays on the line until we hang up (or `timeout` passes).
    /// Killed when dropped.
    pub fn call_and_stay(&self, code: &str, timeout: Duration) -> tokio::process::Child {
        let uri = format!("sip:{TENANT_NUMBER}@{}", self.sip_udp);
        let timeout = timeout.as_secs().to_string();
        tokio::process::Command::new(env!("CARGO_BIN_EXE_veilig-bellen"))
            .args([
                "call",
                &uri,
                "--code",
                code,
                "--stay",
                "--timeout",
                &timeout,
            ])
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("veilig-bellen call starts")
    }

    /// `GET /api/v1/calls` with the agents' token.
    pub async fn calls(&self) -> Vec<Value> {
        get_calls(&self.client, &self.http_base, API_TOKEN).await
    }

    /// Polls the call list until a call satisfies `pred` (bounded by `limit`); `Err` with the last
    /// list otherwise.
    pub async fn wait_for_call(
        &self,
        limit: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Value, String> {
        poll_for_call(|| self.calls(), limit, pred).await
    }

    /// Waits (3 s at most) until call `id` shows `ended`; the ended call.
    pub async fn wait_ended(&self, id: &Value) -> Value {
        self.wait_for_call(Duration::from_secs(3), |c| {
            &c["id"] == id && c["state"] == "ended"
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Places `call` with sipp and waits (bounded by `limit`) until the agents' list shows it
    /// `waiting`. `None` when sipp is missing or cannot play pcap audio here (test skipped).
    pub async fn call_until_waiting(
        &self,
        call: &TrunkCall,
        limit: Duration,
    ) -> Option<(Sipp, Value)> {
        let sipp = Sipp::start(self.sip_udp, call)?;
        let caller = call.caller.clone();
        let waiting = self
            .wait_for_call(limit, |c| {
                c["state"] == "waiting" && c["caller"] == caller.as_str()
            })
            .await;
        match waiting {
            Ok(view) => Some((sipp, view)),
            Err(_) if call.pcap.is_some() && sipp.pcap_play_failed() => {
                skip_or_fail(&format!("sipp cannot play pcap audio: {}", sipp.logs()));
                None
            }
            Err(e) => panic!("{e}\nsipp:\n{}", sipp.logs()),
        }
    }

    /// The trunk hangs up call `id` (BYE from sipp); checks sipp's scenario passed, the list shows
    /// the call `ended` without attributes or calling number, and — when no other call lasts — every
    /// RTP port is free again.
    pub async fn hang_up_and_check_ended(&self, sipp: Sipp, id: &Value) -> Value {
        sipp.hang_up();
        if let Err(e) = sipp.finish().await {
            panic!("the trunk's call did not end cleanly: {e}");
        }
        let ended = self.wait_ended(id).await;
        assert_eq!(
            ended["attributes"],
            json!([]),
            "attributes gone after the call"
        );
        assert_eq!(ended["caller"], "", "calling number gone after the call");
        if self.calls().await.iter().all(|c| c["state"] == "ended") {
            self.wait_rtp_ports_free(Duration::from_secs(3)).await;
        }
        ended
    }

    /// Waits (bounded) until no call holds an RTP port of our range.
    pub async fn wait_rtp_ports_free(&self, limit: Duration) {
        let start = Instant::now();
        while !self.rtp_ports_free() {
            assert!(
                start.elapsed() < limit,
                "RTP ports still held {limit:?} after the calls ended"
            );
            // The back-off of this bounded wait.
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Whether every RTP port of the range can be bound again (no call holds one).
    pub fn rtp_ports_free(&self) -> bool {
        self.rtp_ports
            .clone()
            .step_by(2)
            .all(|p| UdpSocket::bind(("127.0.0.1", p)).is_ok())
    }

    pub async fn shutdown(self) {
        self.running.shutdown().await;
    }
}

/// The demo tenant's attributes with the values the simulator discloses, as `(id, label, value)`.
pub fn expected_attributes() -> Vec<(String, String, String)> {
    Tenant::demo()
        .allowed_attributes
        .iter()
        .map(|a| {
            (
                a.id.clone(),
                a.label_nl.clone(),
                veilig_bellen::irma::simulator::Simulator::demo_value(&a.id).to_owned(),
            )
        })
        .collect()
}

/// `GET {http_base}/api/v1/calls` with the agents' bearer `token`: the list.
pub async fn get_calls(client: &reqwest::Client, http_base: &str, token: &str) -> Vec<Value> {
    let response = client
        .get(format!("{http_base}/api/v1/calls"))
        .bearer_auth(token)
        .send()
        .await
        .expect("GET /api/v1/calls");
    assert_eq!(response.status(), 200);
    response.json().await.expect("calls JSON")
}

/// Polls `calls` until a call satisfies `pred` (bounded by `limit`); `Err` with the last list
/// otherwise.
pub async fn poll_for_call<F, Fut>(
    calls: F,
    limit: Duration,
    pred: impl Fn(&Value) -> bool,
) -> Result<Value, String>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Vec<Value>>,
{
    let start = Instant::now();
    loop {
        let calls = calls().await;
        if let Some(call) = calls.iter().find(|c| pred(c)) {
            return Ok(call.clone());
        }
        if start.elapsed() > limit {
            return Err(format!(
                "no call as expected within {limit:?}; calls: {calls:#?}"
            ));
        }
        // The back-off of this bounded wait.
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// What the Yivi app does after scanning `session` (started at the server at `http_base`): disclose
/// the simulator's demo values. Returns the code from the `tel:<number>,<code>` return URL, once the
/// website sees the session `done`.
pub async fn disclose_session(
    client: &reqwest::Client,
    http_base: &str,
    session: &Value,
    number: &str,
) -> String {
    let u = session["sessionPtr"]["u"].as_str().expect("sessionPtr.u");
    let client_token = u.rsplit('/').next().expect("client token");
    let response = client
        .post(format!(
            "{http_base}/irma-sim/session/{client_token}/disclose"
        ))
        .json(&json!({"attributes": {}}))
        .send()
        .await
        .expect("disclose");
    assert_eq!(response.status(), 200, "simulator refused the disclosure");
    let answer: Value = response.json().await.expect("disclose JSON");
    let url = answer["clientReturnUrl"].as_str().expect("clientReturnUrl");
    let code = url
        .strip_prefix(&format!("tel:{number},"))
        .expect("tel:<tenant number>,<code>")
        .to_owned();
    assert!(code.len() == 8 && code.bytes().all(|b| b.is_ascii_digit()));
    let token = session["token"].as_str().expect("token");
    let status: Value = client
        .get(format!("{http_base}/api/v1/sessions/{token}/status?wait=5"))
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("status JSON");
    assert_eq!(status["status"], "done", "the website sees the disclosure");
    code
}

/// A link code of tenant `tenant` (number `number`) at the server at `http_base`, as its citizen
/// gets it: a session on its website, a disclosure in the Yivi app (the simulator).
pub async fn code_of(http_base: &str, tenant: &str, number: &str) -> String {
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{http_base}/api/v1/sessions"))
        .json(&json!({ "tenant": tenant }))
        .send()
        .await
        .expect("POST /api/v1/sessions");
    assert_eq!(response.status(), 200, "session start refused");
    let session: Value = response.json().await.expect("session JSON");
    disclose_session(&client, http_base, &session, number).await
}
