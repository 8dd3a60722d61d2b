//! The whole product in one process: SIP (UDP/TCP/TLS), the call flow, the link-code backend, the
//! HTTP side (public session API + widget, agents' API, optionally the IRMA simulator).
//!
//! [`start`] binds every listener (port 0 picks a free port, which is what tests do), spawns the
//! tasks and returns the addresses it got. `main.rs` and the tests call the same function.

use crate::agent_api::{self, ApiState};
use crate::call::registry::Registry;
use crate::http::{public_router, PublicState, RateLimit};
use crate::irma::simulator::{simulator_router, Simulator, SimulatorConfig};
use crate::irma::{IrmaClient, IrmaServerConfig};
use crate::links::{LinkConfig, LinkService};
use crate::pii::Pii;
use crate::sip_driver::{self, BoundAddrs, SipConfig};
use crate::store::{AttributeKey, RedbStore, SessionStore};
use crate::tenant::Tenants;
use anyhow::Context;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::watch;

/// Where the IRMA server is.
#[derive(Clone, Debug)]
pub enum IrmaBackend {
    /// Run the embedded IRMA simulator at `/irma-sim` on our own HTTP server (demo and tests only).
    Simulator,
    /// A real IRMA server.
    Server(IrmaServerConfig),
}

/// Everything [`start`] needs.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub sip: SipConfig,
    pub http: SocketAddr,
    /// Bearer token of the agents' API.
    pub api_token: Pii<String>,
    pub tenants: Tenants,
    /// Where the link-session database and the attribute key live.
    pub data_dir: PathBuf,
    pub irma: IrmaBackend,
    pub links: LinkConfig,
    pub calls: crate::call::manager::CallFlowConfig,
    /// Serve the demo pages (button demo, simulator "scan" page).
    pub demo_pages: bool,
}

/// A started server: where it listens, and how to stop it.
pub struct Running {
    pub http: SocketAddr,
    pub sip: BoundAddrs,
    /// Base URL of the IRMA server in use (the simulator's when embedded).
    pub irma_url: String,
    pub registry: Arc<Registry>,
    pub links: LinkService,
    /// What the calls hold right now (live tasks, routes, RTP ports).
    pub calls: crate::call::manager::CallsProbe,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops every task and waits for them.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            task.abort();
            let _ = task.await;
        }
    }
}

/// Binds and starts everything.
pub async fn start(config: ServerConfig) -> anyhow::Result<Running> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let (stop, stopped) = watch::channel(false);

    let http_listener = tokio::net::TcpListener::bind(config.http)
        .await
        .with_context(|| format!("binding HTTP on {}", config.http))?;
    let http_addr = http_listener
        .local_addr()
        .context("reading the HTTP address")?;
    let base_url = format!("http://{http_addr}");

    let (irma_config, simulator) = match &config.irma {
        IrmaBackend::Simulator => {
            let mut sim = SimulatorConfig::new(format!("{base_url}/irma-sim"));
            sim.demo_page = config.demo_pages;
            (
                IrmaServerConfig::new(format!("{base_url}/irma-sim")),
                Some(Simulator::new(sim)),
            )
        }
        IrmaBackend::Server(server) => (server.clone(), None),
    };
    let irma_url = irma_config.url.clone();
    let irma = IrmaClient::new(irma_config).context("setting up the IRMA client")?;

    let store: Arc<dyn SessionStore> = Arc::new(
        RedbStore::open(&config.data_dir.join("sessions.redb"))
            .context("opening the session store")?,
    );
    let key =
        AttributeKey::load_or_create(&config.data_dir).context("loading the attribute key")?;
    let links = LinkService::new(
        store,
        irma,
        config.tenants.clone(),
        key,
        config.links.clone(),
    );
    let resumed = links.resume().await.context("resuming link sessions")?;
    if resumed > 0 {
        tracing::info!(
            resumed,
            "resumed watching link sessions from before the restart"
        );
    }
    let mut tasks = vec![links.spawn_maintenance()];

    let registry = Arc::new(Registry::new());
    let tenants = Arc::new(config.tenants.clone());

    let mut sip_config = config.sip.clone();
    sip_config.forward_requests = true;
    let sip = sip_driver::run(sip_config, until_stopped(stopped.clone()))
        .await
        .context("starting SIP")?;
    let sip_addrs = sip.local.clone();
    tasks.push(sip.task);
    let (manager, calls) = crate::call::manager::spawn(
        crate::call::manager::CallContext {
            config: crate::call::manager::CallFlowConfig {
                sip_timers: config.sip.timers,
                ..config.calls.clone()
            },
            registry: registry.clone(),
            links: links.clone(),
            tenants: tenants.clone(),
            sip: sip.handle.clone(),
            sip_local: sip_addrs.clone(),
        },
        sip.events,
    );
    tasks.push(manager);

    let mut public = PublicState::new(links.clone(), RateLimit::default());
    public.demo_page = config.demo_pages;
    let mut app = public_router(public).merge(agent_api::router(ApiState {
        registry: registry.clone(),
        tenants,
        token: Arc::new(config.api_token.clone()),
        phones: Some(sip.handle.clone()),
    }));
    if let Some(sim) = simulator {
        app = app.nest("/irma-sim", simulator_router(sim));
    }
    let http_stopped = stopped.clone();
    tasks.push(tokio::spawn(async move {
        let serve = axum::serve(
            http_listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(until_stopped(http_stopped));
        if let Err(e) = serve.await {
            tracing::error!("HTTP server stopped: {e}");
        }
    }));

    Ok(Running {
        http: http_addr,
        sip: sip_addrs,
        irma_url,
        registry,
        links,
        calls,
        stop,
        tasks,
    })
}

/// Resolves once [`Running::shutdown`] was called (or the server was dropped).
async fn until_stopped(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}
