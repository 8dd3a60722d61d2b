//! The whole product in one process: SIP (UDP/TCP/TLS), the call flow, the link-code backend, the
//! HTTP side (public session API + widget, agents' API, optionally the IRMA simulator).
//!
//! [`start`] binds every listener (port 0 picks a free port, which is what tests do), spawns the
//! tasks and returns the addresses it got. `main.rs` and the tests call the same function.
//! With [`ServerConfig::http_tls`] the HTTP side speaks HTTPS itself ([`crate::http::tls`]).

use crate::agent_api::{self, ApiState};
use crate::call::registry::Registry;
use crate::http::tls::TlsListener;
use crate::http::{public_router, PublicState, RateLimit, TrustedProxies};
#[cfg(feature = "demo")]
use crate::irma::simulator::{simulator_router, Simulator, SimulatorConfig};
use crate::irma::{IrmaClient, IrmaServerConfig};
use crate::links::{LinkConfig, LinkService};
use crate::pii::Pii;
use crate::sip_driver::{self, BoundAddrs, SipConfig};
use crate::store::{AttributeKey, PostgresStore, RedbStore, SessionStore, StoreBackend};
use crate::tenant::Tenants;
use axum::serve::ListenerExt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::watch;

/// Stands in for the simulator's type in a build without it (never constructed).
#[cfg(not(feature = "demo"))]
enum Simulator {}

/// Where the IRMA server is.
#[derive(Clone, Debug)]
pub enum IrmaBackend {
    /// Run the embedded IRMA simulator at `/irma-sim` on our own HTTP server (demo and tests only;
    /// not in a build without the `demo` feature).
    #[cfg(feature = "demo")]
    Simulator,
    /// A real IRMA server.
    Server(IrmaServerConfig),
}

/// Everything [`start`] needs.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub sip: SipConfig,
    pub http: SocketAddr,
    /// Certificate and key when HTTP serves TLS itself (`serve` with `http.tls_cert`/`tls_key`).
    pub http_tls: Option<crate::sip_driver::TlsConfig>,
    /// Reverse proxies whose `X-Forwarded-For`/`Forwarded` name the client (`http.trusted_proxies`);
    /// empty: the client is the TCP peer.
    pub trusted_proxies: TrustedProxies,
    /// Bearer token of the agents' API.
    pub api_token: Pii<String>,
    pub tenants: Tenants,
    /// Where the link-session database (and, without `key_file`, the attribute key) live.
    pub data_dir: PathBuf,
    /// The attribute key from this file (owner-only, base64 of 32 bytes) instead of
    /// `<data_dir>/attribute.key`: a copy of the data directory then holds no key.
    pub key_file: Option<PathBuf>,
    /// Where link sessions live: `<data_dir>/sessions.redb` (default) or a shared PostgreSQL
    /// database (then `key_file` is required, and calls are keyed with the instance's name).
    pub store: StoreBackend,
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
    /// The embedded IRMA simulator (`demo`), so the demo can let it place **Bel nu** calls.
    #[cfg(feature = "demo")]
    pub simulator: Option<Simulator>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Graceful shutdown (SIGTERM): new calls get 503 with Retry-After at once; calls that are up
    /// may finish for up to `grace`; then every call still up is hung up (BYE to caller and agent)
    /// and, after at most 5 s more for those BYEs, everything stops. Returns how many calls had to
    /// be hung up.
    pub async fn drain_and_shutdown(self, grace: std::time::Duration) -> usize {
        use std::time::Duration;
        self.calls.drain();
        let live = self.calls.live_calls();
        if live > 0 {
            tracing::info!(live, ?grace, "shutting down: waiting for calls to finish");
        }
        let deadline = tokio::time::Instant::now() + grace;
        while self.calls.live_calls() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut cut = 0;
        for view in self.registry.list(std::time::SystemTime::now()) {
            if view.state != crate::call::CallState::Ended && self.registry.hangup(view.id).is_ok()
            {
                cut += 1;
            }
        }
        if cut > 0 {
            tracing::warn!(
                cut,
                "shutting down: hanging up calls still up after the grace time"
            );
            let bye_deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while self.calls.live_calls() > 0 && tokio::time::Instant::now() < bye_deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        self.shutdown().await;
        cut
    }

    /// Stops every task and waits for them.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            task.abort();
            let _ = task.await;
        }
    }
}

/// Why [`start`] failed. Each case names the step; the cause is its [`source`](std::error::Error::source)
/// (print the chain with `{:#}` through anyhow, as the CLI does).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error("{step} data directory {}", dir.display())]
    DataDir {
        step: &'static str,
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("binding HTTP on {addr}")]
    BindHttp {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the HTTP address")]
    HttpAddr(#[source] std::io::Error),
    #[error("loading the HTTP TLS certificate")]
    HttpTls(#[source] sip_driver::tls::TlsError),
    #[error("starting HTTPS")]
    Https(#[source] std::io::Error),
    #[error("setting up the IRMA client")]
    Irma(#[source] crate::irma::IrmaError),
    #[error("{step}")]
    Store {
        step: &'static str,
        #[source]
        source: crate::store::StoreError,
    },
    #[error("loading the attribute key")]
    Key(#[source] crate::store::KeyError),
    #[error("a session store shared by several instances (PostgreSQL) needs the same attribute key on every instance: set key_file")]
    SharedStoreNeedsKeyFile,
    #[error("starting SIP")]
    Sip(#[source] sip_driver::DriverError),
    #[error("opening the audit log")]
    Audit(#[source] crate::audit::AuditError),
}

/// Why `serve` or `demo` stopped on an error: it did not start, or it could not wait for its stop
/// signal. Printed as a chain (`{:#}`) like [`StartError`].
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("{step}")]
    Io {
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl RunError {
    /// The I/O error of `step` (what the user reads first: "waiting for Ctrl-C").
    pub fn io(step: &'static str) -> impl FnOnce(std::io::Error) -> RunError {
        move |source| RunError::Io { step, source }
    }
}

/// Binds and starts everything.
pub async fn start(config: ServerConfig) -> Result<Running, StartError> {
    private_dir(&config.data_dir)?;
    crate::fd_limit::raise_for(config.calls.max_calls);
    let (stop, stopped) = watch::channel(false);

    let http_listener = tokio::net::TcpListener::bind(config.http)
        .await
        .map_err(|source| StartError::BindHttp {
            addr: config.http,
            source,
        })?;
    let http_addr = http_listener.local_addr().map_err(StartError::HttpAddr)?;
    let http_tls = match &config.http_tls {
        Some(files) => Some(crate::sip_driver::tls::acceptor(files).map_err(StartError::HttpTls)?),
        None => None,
    };
    let scheme = if http_tls.is_some() { "https" } else { "http" };
    #[cfg_attr(not(feature = "demo"), allow(unused_variables))]
    let base_url = format!("{scheme}://{http_addr}");

    let (irma_config, simulator) = match &config.irma {
        #[cfg(feature = "demo")]
        IrmaBackend::Simulator => {
            let mut sim = SimulatorConfig::new(format!("{base_url}/irma-sim"));
            sim.demo_page = config.demo_pages;
            (
                IrmaServerConfig::new(format!("{base_url}/irma-sim")),
                Some(Simulator::new(sim)),
            )
        }
        IrmaBackend::Server(server) => (server.clone(), None::<Simulator>),
    };
    let irma_url = irma_config.url.clone();
    let irma = IrmaClient::new(irma_config).map_err(StartError::Irma)?;
    let irma_probe = irma.clone();
    let irma_requests = irma.clone();

    let key = match (&config.key_file, &config.store) {
        (Some(path), _) => AttributeKey::load_file(path),
        (None, StoreBackend::Redb) => AttributeKey::load_or_create(&config.data_dir),
        // Every instance must open what any instance sealed: a key made up here would not do.
        (None, StoreBackend::Postgres(_)) => return Err(StartError::SharedStoreNeedsKeyFile),
    }
    .map_err(StartError::Key)?;
    let store: Arc<dyn SessionStore> = match &config.store {
        StoreBackend::Redb => Arc::new(
            RedbStore::open(&config.data_dir.join("sessions.redb")).map_err(|source| {
                StartError::Store {
                    step: "opening the session store",
                    source,
                }
            })?,
        ),
        StoreBackend::Postgres(settings) => {
            Arc::new(PostgresStore::connect(settings).await.map_err(|source| {
                StartError::Store {
                    step: "opening the PostgreSQL session store",
                    source,
                }
            })?)
        }
    };
    let store_probe = store.clone();
    let links = LinkService::new(
        store,
        irma,
        config.tenants.clone(),
        key,
        config.links.clone(),
    );
    // Before any call: calls an unclean stop cut off keep their codes used, lose their attributes.
    links
        .end_cut_off_calls(crate::time::unix_now())
        .await
        .map_err(|source| StartError::Store {
            step: "ending the calls the last stop cut off",
            source,
        })?;
    let resumed = links.resume().await.map_err(|source| StartError::Store {
        step: "resuming link sessions",
        source,
    })?;
    if resumed > 0 {
        tracing::info!(
            resumed,
            "resumed watching link sessions from before the restart"
        );
    }
    let mut tasks = vec![links.spawn_maintenance()];

    let registry = Arc::new(Registry::named(config.store.instance()));
    let tenants = Arc::new(config.tenants.clone());

    let mut sip_config = config.sip.clone();
    sip_config.forward_requests = true;
    sip_config.gate = Some(sip_driver::TrunkGate {
        trunks: config.calls.trunks.clone(),
        reject: config.calls.unknown_sources == crate::call::manager::UnknownSources::Reject,
    });
    let sip = sip_driver::run(sip_config, until_stopped(stopped.clone()))
        .await
        .map_err(StartError::Sip)?;
    let sip_addrs = sip.local.clone();
    tasks.push(sip.task);
    let spawned = crate::call::manager::spawn(
        crate::call::manager::CallContext {
            config: crate::call::manager::CallFlowConfig {
                sip_timers: config.sip.timers,
                contact_host: config
                    .calls
                    .contact_host
                    .clone()
                    .or_else(|| config.sip.advertise.clone()),
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
    let calls = spawned.probe;
    tasks.push(spawned.task);

    let mut public = PublicState::new(links.clone(), RateLimit::default());
    public.demo_page = config.demo_pages;
    public.sip_address = sip_addrs.udp.first().copied();
    public.browser_calls = spawned.browser_calls;
    // The agents' portal (issue 10): sessions in memory, the audit table in its own redb file.
    let audit: Arc<dyn crate::audit::AuditLog> = Arc::new(
        crate::audit::RedbAudit::open(&config.data_dir.join(crate::audit::AUDIT_FILE))
            .map_err(StartError::Audit)?,
    );
    // Agents' extra requests during calls: pushed to phone callers' pages through their status.
    let extra_requests = crate::extra_requests::ExtraRequests::new(
        registry.clone(),
        tenants.clone(),
        links.clone(),
        irma_requests,
        public.pages.clone(),
        audit.clone(),
        config.links.requests.clone(),
    );
    if let Some(calls) = &public.browser_calls {
        calls.set_extra_requests(extra_requests.clone());
    }
    let mut auth = crate::http::portal::AgentAuth::new(
        tenants.clone(),
        Arc::new(config.api_token.clone()),
        audit,
        Default::default(),
        Default::default(),
    );
    auth.secure_cookies = http_tls.is_some();
    let auth = Arc::new(auth);
    // The municipality's own exchange reporting calls it answered (`/api/v1/pbx/…`).
    let exchange = crate::exchange::ExchangeCalls::new(
        registry.clone(),
        links.clone(),
        tenants.clone(),
        config.calls.max_calls,
    );
    #[cfg_attr(not(feature = "demo"), allow(unused_mut))]
    let mut app = public_router(public)
        .merge(crate::exchange::router(exchange))
        .merge(agent_api::router(ApiState {
            registry: registry.clone(),
            tenants,
            auth: auth.clone(),
            phones: Some(sip.handle.clone()),
        }))
        .merge(crate::extra_requests::router(extra_requests, auth.clone()))
        .merge(crate::http::portal::router(auth))
        .merge(crate::metrics::router(
            crate::metrics::Readiness::default()
                .with("store", Arc::new(crate::metrics::StoreReady(store_probe)))
                .with(
                    "sip",
                    Arc::new(crate::metrics::SipReady(sip.handle.clone())),
                )
                .with("irma", Arc::new(crate::metrics::IrmaReady(irma_probe))),
        ));
    #[cfg(feature = "demo")]
    if let Some(sim) = &simulator {
        app = app.nest("/irma-sim", simulator_router(sim.clone()));
    }
    #[cfg(not(feature = "demo"))]
    let _: Option<Simulator> = simulator;
    // Every per-client limit keys on the address found here (the peer, or whom a trusted proxy
    // forwarded for).
    let app = app
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(config.trusted_proxies.clone()),
            crate::http::client_addr::identify,
        ))
        .layer(axum::middleware::from_fn(crate::metrics::count_http));
    let http_stopped = stopped.clone();
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    let http_task = match http_tls {
        None => tokio::spawn(async move {
            let serve = axum::serve(http_listener, service)
                .with_graceful_shutdown(until_stopped(http_stopped));
            if let Err(e) = serve.await {
                tracing::error!("HTTP server stopped: {e}");
            }
        }),
        Some(acceptor) => {
            // `tap_io` gives the listener axum's `ConnectInfo<SocketAddr>` (the client's peer address).
            let listener = TlsListener::new(http_listener, acceptor)
                .map_err(StartError::Https)?
                .tap_io(|_| {});
            tokio::spawn(async move {
                let serve = axum::serve(listener, service)
                    .with_graceful_shutdown(until_stopped(http_stopped));
                if let Err(e) = serve.await {
                    tracing::error!("HTTPS server stopped: {e}");
                }
            })
        }
    };
    tasks.push(http_task);

    Ok(Running {
        http: http_addr,
        sip: sip_addrs,
        irma_url,
        registry,
        links,
        calls,
        #[cfg(feature = "demo")]
        simulator,
        stop,
        tasks,
    })
}

/// Resolves once [`Running::shutdown`] was called (or the server was dropped).
async fn until_stopped(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

/// The data directory, created `0700` (owner only); an existing one that others may read is
/// tightened to `0700`, with a warning. Files in it are created `0600`.
fn private_dir(dir: &Path) -> Result<(), StartError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(dir_error("creating", dir))?;
    let mode = std::fs::metadata(dir)
        .map_err(dir_error("reading", dir))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        tracing::warn!(
            dir = %dir.display(),
            mode = format!("{:o}", mode & 0o777),
            "data directory was open to others; setting it to 0700"
        );
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(dir_error("restricting", dir))?;
    }
    Ok(())
}

fn dir_error<'a>(
    step: &'static str,
    dir: &'a Path,
) -> impl FnOnce(std::io::Error) -> StartError + 'a {
    move |source| StartError::DataDir {
        step,
        dir: dir.to_owned(),
        source,
    }
}
