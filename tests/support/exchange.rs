//! Test support: the municipality's own exchange talking to `/api/v1/pbx/…` (the existing-exchange
//! API) — tenants with exchange keys, reporting a call, reading its event stream, ending it — and a
//! second tenant whose citizens get their own codes.

use std::time::Duration;

use serde_json::{json, Value};
use veilig_bellen::exchange::{ExchangeKey, KeyHash};
use veilig_bellen::server::ServerConfig;
use veilig_bellen::tenant::{AgentId, Tenant, TenantId, Tenants};

/// The demo tenant's exchange key (the demo tenant answers every number, `*`).
pub const DEMO_KEY: &str = "vbx_demo-exchange-key-for-tests-0000000000000";
/// Tenant `arnhem`'s exchange key.
pub const ARNHEM_KEY: &str = "vbx_arnhem-exchange-key-for-tests-00000000000";
/// Arnhem's own number.
pub const ARNHEM_NUMBER: &str = "+31263770000";
/// The demo agent's extension at the demo municipality's exchange.
pub const AGENT_EXTENSION: &str = "201";

/// `tenant` with one exchange key `key` named `name`.
pub fn with_key(mut tenant: Tenant, name: &str, key: &str) -> Tenant {
    tenant.exchange.keys.push(ExchangeKey {
        name: name.to_owned(),
        hash: KeyHash::of(key),
    });
    tenant
}

/// A config tweak: the demo tenant with [`DEMO_KEY`] and the agent's extension
/// [`AGENT_EXTENSION`], and tenant `arnhem` (number [`ARNHEM_NUMBER`], agent `jan`) with
/// [`ARNHEM_KEY`].
pub fn two_tenants(config: &mut ServerConfig) {
    let mut demo = with_key(Tenant::demo(), "demo-pbx", DEMO_KEY);
    demo.exchange
        .extensions
        .insert(AgentId("agent".into()), AGENT_EXTENSION.to_owned());
    let mut arnhem = with_key(Tenant::demo(), "arnhem-pbx", ARNHEM_KEY);
    arnhem.id = TenantId("arnhem".into());
    arnhem.phone_number = ARNHEM_NUMBER.to_owned();
    arnhem.called_numbers = vec![ARNHEM_NUMBER.to_owned()];
    let mut jan = arnhem
        .agents
        .remove(&AgentId("agent".into()))
        .expect("the demo agent");
    jan.id = AgentId("jan".into());
    jan.sip_username = "jan".into();
    arnhem.agents.insert(jan.id.clone(), jan);
    config.tenants = Tenants::new(vec![demo, arnhem]);
}

/// The exchange's side of the API.
pub struct Pbx {
    pub base: String,
    client: reqwest::Client,
}

impl Pbx {
    pub fn new(http_base: &str) -> Pbx {
        Pbx {
            base: http_base.to_owned(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("HTTP client"),
        }
    }

    /// `POST /api/v1/pbx/calls` with `body` as JSON and `key` (none: no Authorization header):
    /// the status and the JSON answer.
    pub async fn report(&self, key: Option<&str>, body: &Value) -> (u16, Value) {
        let mut request = self
            .client
            .post(format!("{}/api/v1/pbx/calls", self.base))
            .json(body);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.expect("POST /api/v1/pbx/calls");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Reports a call from `caller` with `code` (none: the field left out) with `key`; it was
    /// accepted (201): the answer.
    pub async fn call(&self, key: &str, caller: &str, code: Option<&str>) -> Value {
        let mut body = json!({
            "time": "2025-01-31T09:30:00+01:00",
            "caller": caller,
            "called": "+31850000000",
            "forward_to": "+31850000099",
        });
        if let Some(code) = code {
            body["code"] = json!(code);
        }
        let (status, answer) = self.report(Some(key), &body).await;
        assert_eq!(status, 201, "the call was refused: {answer:#}");
        answer
    }

    /// `POST /api/v1/pbx/calls/{id}/ended` with `key`: the status.
    pub async fn end(&self, key: &str, id: &Value) -> u16 {
        self.client
            .post(format!("{}/api/v1/pbx/calls/{id}/ended", self.base))
            .bearer_auth(key)
            .send()
            .await
            .expect("POST …/ended")
            .status()
            .as_u16()
    }

    /// `GET /api/v1/pbx/calls/{id}/events` with `key`: the status, and the stream when 200.
    pub async fn events(&self, key: &str, id: &Value) -> (u16, Option<PbxEvents>) {
        let response = reqwest::Client::new()
            .get(format!("{}/api/v1/pbx/calls/{id}/events", self.base))
            .bearer_auth(key)
            .send()
            .await
            .expect("GET …/events");
        let status = response.status().as_u16();
        let events = (status == 200).then(|| PbxEvents {
            response,
            buf: String::new(),
        });
        (status, events)
    }
}

/// A call's event stream as the exchange reads it.
pub struct PbxEvents {
    response: reqwest::Response,
    buf: String,
}

impl PbxEvents {
    /// The next event's `(name, data)` within `limit`; `None` when the stream ended or nothing
    /// came in time.
    pub async fn next(&mut self, limit: Duration) -> Option<(String, Value)> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let frame: String = self.buf.drain(..end + 2).collect();
                let mut name = None;
                let mut data = String::new();
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if let Some(name) = name {
                    let data = serde_json::from_str(&data).expect("event data is JSON");
                    return Some((name, data));
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .ok()?
                .ok()??;
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

/// Eight digits that are not `code`.
pub fn other_code(code: &str) -> String {
    let n: u32 = code.parse().expect("digits");
    format!("{:08}", (n + 1) % 100_000_000)
}
