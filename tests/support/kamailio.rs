//! Test support: Debian's Kamailio on loopback, in one of two roles:
//!
//! - the SBC in front of our server — a strict, stateful, record-routing, loose-routing proxy
//!   ([`fixtures/kamailio/sbc.cfg`](../../fixtures/kamailio/sbc.cfg)) between a SIPp trunk and the
//!   server ([`Role::Sbc`]); optionally naming itself `localhost` in its Record-Route
//!   ([`KamailioOptions::named_record_route`]);
//! - the agents' outbound proxy ([`fixtures/kamailio/outbound.cfg`](../../fixtures/kamailio/outbound.cfg),
//!   [`Role::OutboundProxy`]): phones register with our server through it and it adds a Path (RFC
//!   3327); our INVITEs to those phones must come back along that Path, and it record-routes them.
//!
//! [`Kamailio::start`] runs `kamailio` in the foreground (`-DD -E`) with that configuration, its
//! working and runtime directories in a fresh temp dir (no control socket, no database, nothing under
//! `/run` or `/var`), its stderr log kept in that temp dir for failure messages ([`Kamailio::logs`]),
//! and waits (bounded) until it answers an OPTIONS. The trunk (or the phones) talk to
//! [`Kamailio::trunk_addr`] over UDP; the proxy relays to the server over UDP or TCP
//! ([`ServerTransport`]; the outbound proxy over UDP only) from [`Kamailio::server_side_addr`].
//! Dropping it stops the whole process group.
//!
//! Needs `kamailio` (Debian `kamailio`, scripts/install-test-deps.sh); missing, the test is skipped
//! locally and failed under `CI`. The package's own service plays no part.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the proxy may take to answer its first OPTIONS.
const START_LIMIT: Duration = Duration::from_secs(5);

/// The transport between the proxy and our server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerTransport {
    Udp,
    Tcp,
}

impl ServerTransport {
    fn name(self) -> &'static str {
        match self {
            ServerTransport::Udp => "udp",
            ServerTransport::Tcp => "tcp",
        }
    }
}

/// Which configuration the proxy runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// fixtures/kamailio/sbc.cfg: between a trunk and the server.
    Sbc,
    /// fixtures/kamailio/outbound.cfg: between the agents' phones and the server, adding a Path to
    /// their REGISTERs (UDP towards the server only).
    OutboundProxy,
}

/// How to run the proxy.
#[derive(Clone, Debug)]
pub struct KamailioOptions {
    /// Our server's SIP address (UDP and TCP listen on it).
    pub server: SocketAddr,
    /// Transport from the proxy to the server.
    pub transport: ServerTransport,
    /// Kamailio's `tcp_connection_lifetime`: it closes a TCP connection idle this long (default
    /// 120 s, Kamailio's own default). Whole seconds, at least 1.
    pub tcp_lifetime: Duration,
    /// Which configuration.
    pub role: Role,
    /// [`Role::Sbc`] only: record-route as `<sip:localhost:PORT;transport=tcp;lr>` (one entry, on a
    /// TCP port of its own, [`Kamailio::named_route_port`]) instead of by IP address.
    pub named_record_route: bool,
}

impl KamailioOptions {
    /// The SBC towards `server` over `transport`, Kamailio's default TCP lifetime.
    pub fn new(server: SocketAddr, transport: ServerTransport) -> Self {
        KamailioOptions {
            server,
            transport,
            tcp_lifetime: Duration::from_secs(120),
            role: Role::Sbc,
            named_record_route: false,
        }
    }

    /// The agents' outbound proxy in front of `server` (UDP).
    pub fn outbound_proxy(server: SocketAddr) -> Self {
        KamailioOptions {
            role: Role::OutboundProxy,
            ..KamailioOptions::new(server, ServerTransport::Udp)
        }
    }
}

/// A running Kamailio SBC.
pub struct Kamailio {
    child: Child,
    dir: tempfile::TempDir,
    /// Where the trunk sends (UDP); for [`Role::OutboundProxy`], where the phones send.
    pub trunk_addr: SocketAddr,
    /// The proxy's socket towards the server (UDP and TCP; a TCP connection the proxy opens comes
    /// from an ephemeral port, the Record-Route names this address).
    pub server_side_addr: SocketAddr,
    /// With [`KamailioOptions::named_record_route`]: the TCP port its Record-Route names as
    /// `localhost`.
    pub named_route_port: Option<u16>,
    /// What it was started with.
    pub options: KamailioOptions,
}

/// The kamailio binary (Debian installs it in /usr/sbin, which a non-root PATH may lack), or `None`
/// after a note (a failure under `CI`).
pub fn find_kamailio() -> Option<PathBuf> {
    let sbin = Path::new("/usr/sbin/kamailio");
    if sbin.is_file() {
        return Some(sbin.to_path_buf());
    }
    super::tool("kamailio")
}

/// Where the Debian package keeps the modules (`/usr/lib/<multiarch>/kamailio/modules`).
fn module_dir() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("kamailio/modules"))
        .collect();
    candidates.push(PathBuf::from("/usr/lib/kamailio/modules"));
    candidates.push(PathBuf::from("/usr/local/lib64/kamailio/modules"));
    candidates.push(PathBuf::from("/usr/local/lib/kamailio/modules"));
    candidates.into_iter().find(|d| d.join("tm.so").is_file())
}

/// The configuration file of `role` (fixtures/kamailio/sbc.cfg or outbound.cfg).
pub fn config_path(role: Role) -> PathBuf {
    let name = match role {
        Role::Sbc => "sbc.cfg",
        Role::OutboundProxy => "outbound.cfg",
    };
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/kamailio")
        .join(name)
}

impl Kamailio {
    /// Starts the proxy and waits until it answers OPTIONS on its trunk side. `None` when kamailio
    /// is missing (test skipped); panics with its log when it does not come up.
    pub async fn start(options: KamailioOptions) -> Option<Kamailio> {
        let kamailio = find_kamailio()?;
        let Some(modules) = module_dir() else {
            super::sipp::skip_or_fail(
                "kamailio is installed but its modules (tm.so) are not found",
            );
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("vb-kamailio-")
            .tempdir()
            .expect("kamailio temp dir");
        let run_dir = dir.path().join("run");
        std::fs::create_dir(&run_dir).expect("kamailio runtime dir");
        let trunk_port = super::ports::port();
        let server_side_port = super::ports::port();
        let server = options.server;
        let transport = match options.role {
            Role::Sbc => options.transport.name(),
            Role::OutboundProxy => "udp",
        };
        let mut defines = vec![
            format!("SERVER_SIDE_PORT={server_side_port}"),
            format!(
                "SERVER_URI=\"sip:{}:{};transport={transport}\"",
                server.ip(),
                server.port()
            ),
            format!("SERVER_SOCKET=\"{transport}:127.0.0.1:{server_side_port}\""),
            format!("MODULES=\"{}/\"", modules.display()),
        ];
        match options.role {
            Role::Sbc => {
                defines.push(format!("TRUNK_PORT={trunk_port}"));
                defines.push(format!(
                    "TCP_LIFETIME={}",
                    options.tcp_lifetime.as_secs().max(1)
                ));
            }
            Role::OutboundProxy => {
                defines.push(format!("PHONE_PORT={trunk_port}"));
                defines.push(format!("PHONE_SOCKET=\"udp:127.0.0.1:{trunk_port}\""));
            }
        }
        let named_route_port =
            (options.role == Role::Sbc && options.named_record_route).then(super::ports::port);
        if let Some(port) = named_route_port {
            defines.push(format!("NAMED_RR_PORT={port}"));
        }
        let log = std::fs::File::create(dir.path().join("kamailio.log")).expect("log file");
        let mut command = Command::new(kamailio);
        command
            .args(["-DD", "-E", "-f"])
            .arg(config_path(options.role))
            .arg("-Y")
            .arg(&run_dir)
            .arg("-w")
            .arg(dir.path())
            .args(["-m", "32", "-M", "8"]);
        for define in &defines {
            command.args(["-A", define]);
        }
        let child = command
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            // Its own process group: its children go with it on drop.
            .process_group(0)
            .spawn()
            .expect("spawn kamailio");
        let mut proxy = Kamailio {
            child,
            dir,
            trunk_addr: SocketAddr::from(([127, 0, 0, 1], trunk_port)),
            server_side_addr: SocketAddr::from(([127, 0, 0, 1], server_side_port)),
            named_route_port,
            options,
        };
        proxy.wait_ready().await;
        Some(proxy)
    }

    /// Sends OPTIONS to the proxy itself until it answers 200 (bounded by [`START_LIMIT`]).
    async fn wait_ready(&mut self) {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let me = sock.local_addr().expect("addr");
        let started = Instant::now();
        let mut buf = vec![0u8; 4096];
        for n in 0u32.. {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("kamailio exited at start ({status}):\n{}", self.logs());
            }
            assert!(
                started.elapsed() < START_LIMIT,
                "kamailio did not answer OPTIONS on {} within {START_LIMIT:?}:\n{}",
                self.trunk_addr,
                self.logs()
            );
            let probe = format!(
                "OPTIONS sip:{trunk} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-vb-probe-{n}\r\n\
                 From: <sip:probe@{me}>;tag=probe\r\nTo: <sip:{trunk}>\r\nCall-ID: vb-probe-{port}\r\n\
                 CSeq: {seq} OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
                trunk = self.trunk_addr,
                port = me.port(),
                seq = n + 1,
            );
            let _ = sock.send_to(probe.as_bytes(), self.trunk_addr).await;
            let answer =
                tokio::time::timeout(Duration::from_millis(200), sock.recv_from(&mut buf)).await;
            if let Ok(Ok((len, _))) = answer {
                if buf[..len].starts_with(b"SIP/2.0 200") {
                    return;
                }
            }
        }
    }

    /// Kamailio's log so far (every request and reply it handled, its warnings).
    pub fn logs(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("kamailio.log")).unwrap_or_default();
        format!("--- kamailio ({:?})\n{log}", self.options)
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        // Its process group has the main process's id (`process_group(0)`).
        let group = rustix::process::Pid::from_child(&self.child);
        if matches!(self.child.try_wait(), Ok(None)) {
            // The main process stops its children on SIGTERM.
            let _ = rustix::process::kill_process(group, rustix::process::Signal::TERM);
            let deadline = Instant::now() + Duration::from_secs(1);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                // The back-off of this bounded wait for its exit.
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        // Whatever is left of the group (a child of a main process that died) goes hard.
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        let _ = self.child.wait();
    }
}

/// How many established TCP connections on loopback have `port` at one end (from
/// `/proc/net/tcp`): whether the proxy still holds its connection to the server.
pub fn established_tcp(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let port_hex = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // local, remote, state (01 = ESTABLISHED); count each connection once, from the side
            // listening on `port`.
            cols.len() > 3 && cols[3] == "01" && cols[1].ends_with(&port_hex)
        })
        .count()
}
