//! Shared setup of the link-session tests: our public router and the IRMA simulator on one loopback
//! listener, the demo tenant allowing the test's own origin, and helpers that act as the browser
//! and as the Yivi app.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::net::TcpListener;
use veilig_bellen::http::{public_router, PublicState, RateLimit};
use veilig_bellen::irma::simulator::{simulator_router, Simulator, SimulatorConfig};
use veilig_bellen::irma::{IrmaClient, IrmaServerConfig};
use veilig_bellen::links::{LinkConfig, LinkService};
use veilig_bellen::store::{AttributeKey, MemoryStore, SessionStore};
use veilig_bellen::tenant::{Tenant, Tenants};

/// An origin the demo tenant allows besides the server's own.
pub const SITE: &str = "https://www.demodam.example";

pub struct App {
    pub base: String,
    pub links: LinkService,
    pub sim: Simulator,
    pub http: reqwest::Client,
    /// Every response body the helpers received, for the no-leak checks.
    pub bodies: std::sync::Mutex<Vec<String>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for App {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub fn demo_tenant(base: &str) -> Tenant {
    let mut tenant = Tenant::demo();
    tenant.website_origins = vec![base.to_owned(), SITE.to_owned()];
    tenant
}

/// Start our public router with the simulator nested at `/irma-sim` on 127.0.0.1:0.
pub async fn start_app(store: Arc<dyn SessionStore>, key: AttributeKey, config: LinkConfig) -> App {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let base = format!("http://{addr}");
    let sim = Simulator::new(SimulatorConfig::new(format!("{base}/irma-sim")));
    let links = service(&base, store, key, config);
    let mut state = PublicState::new(links.clone(), RateLimit::default());
    state.demo_page = true;
    let router = public_router(state).nest("/irma-sim", simulator_router(sim.clone()));
    let server = tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    App {
        base,
        links,
        sim,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("client"),
        bodies: Default::default(),
        server,
    }
}

/// [`start_app`] on a fresh in-memory store with a new key and the default link settings.
pub async fn start_memory_app() -> (Arc<MemoryStore>, App) {
    let store = Arc::new(MemoryStore::new());
    let app = start_app(
        store.clone(),
        AttributeKey::generate(),
        LinkConfig::default(),
    )
    .await;
    (store, app)
}

/// A link service talking to the simulator under `base`.
pub fn service(
    base: &str,
    store: Arc<dyn SessionStore>,
    key: AttributeKey,
    config: LinkConfig,
) -> LinkService {
    let irma =
        IrmaClient::new(IrmaServerConfig::new(format!("{base}/irma-sim"))).expect("irma client");
    LinkService::new(
        store,
        irma,
        Tenants::new(vec![demo_tenant(base)]),
        key,
        config,
    )
}

impl App {
    fn keep(&self, body: &str) {
        self.bodies.lock().unwrap().push(body.to_owned());
    }

    /// What the widget does on a click: `POST /api/v1/sessions` from the tenant's website.
    pub async fn start_session(&self) -> Value {
        let response = self
            .http
            .post(format!("{}/api/v1/sessions", self.base))
            .header("origin", SITE)
            .json(&serde_json::json!({"tenant": "demo"}))
            .send()
            .await
            .expect("start session");
        assert_eq!(response.status(), 200);
        let body = response.text().await.unwrap();
        self.keep(&body);
        serde_json::from_str(&body).unwrap()
    }

    /// `GET /api/v1/sessions/{token}/status?wait=N`.
    pub async fn status(&self, token: &str, wait: u64) -> Value {
        let response = self
            .http
            .get(format!(
                "{}/api/v1/sessions/{token}/status?wait={wait}",
                self.base
            ))
            .header("origin", SITE)
            .send()
            .await
            .expect("status");
        assert_eq!(response.status(), 200);
        let body = response.text().await.unwrap();
        self.keep(&body);
        serde_json::from_str(&body).unwrap()
    }

    /// What the Yivi app does after scanning: disclose (empty = the simulator's demo values) or
    /// cancel at `POST /irma-sim/session/{clientToken}/disclose`. Returns the simulator's answer.
    pub async fn app_disclose(&self, session: &Value, body: Value) -> Value {
        let u = session["sessionPtr"]["u"].as_str().expect("sessionPtr.u");
        let client_token = u.rsplit('/').next().unwrap();
        let response = self
            .http
            .post(format!(
                "{}/irma-sim/session/{client_token}/disclose",
                self.base
            ))
            .json(&body)
            .send()
            .await
            .expect("disclose");
        assert_eq!(response.status(), 200, "simulator refused the disclosure");
        response.json().await.unwrap()
    }
}

/// The code in a `tel:<number>,<code>` return URL, checking the number is the demo tenant's.
pub fn code_from_return_url(url: &str) -> String {
    let rest = url
        .strip_prefix("tel:+31850000000,")
        .unwrap_or_else(|| panic!("unexpected return URL shape"));
    assert!(
        rest.len() == 8 && rest.bytes().all(|b| b.is_ascii_digit()),
        "code is not 8 digits"
    );
    rest.to_owned()
}
