//! `veilig-bellen demo`: the whole product on embedded defaults, for a first look and for tests.
//!
//! One tenant ("Gemeente Demodam") answers every called number; one agent `agent` registers a
//! softphone with digest auth (by default the built-in one of [`crate::softphone::agent_phone`],
//! which answers by itself; `--no-demo-phone` leaves it to a real softphone); the embedded IRMA
//! simulator (not an IRMA server!) stands in for the municipality's IRMA server and the citizen's
//! Yivi app. Secrets not given on the command line are generated and printed, because a person has
//! to type them into a softphone.

use crate::call::direct::AgentMedia;
use crate::call::machine::{CallConfig, TransferMode};
use crate::call::manager::CallFlowConfig;
use crate::links::LinkConfig;
use crate::pii::Pii;
use crate::server::{self, IrmaBackend, RunError, ServerConfig};
use crate::sip_driver::{Credentials, SipConfig};
use crate::softphone::agent_phone::{self, AgentPhoneConfig};
use crate::tenant::{PasswordHash, Tenant, Tenants};
use clap::Args;
use rand::RngExt;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// SIP address (UDP and TCP).
    #[arg(long, default_value = "127.0.0.1:5060")]
    pub sip: SocketAddr,
    /// HTTP address (agents' API, public session API, widget, IRMA simulator).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub http: SocketAddr,
    /// Bearer token of the agents' API; random and printed when absent.
    #[arg(long)]
    pub api_token: Option<String>,
    /// Password of SIP user `agent`; random and printed when absent.
    #[arg(long)]
    pub agent_password: Option<String>,
    /// RTP port range, e.g. 20000-20999.
    #[arg(long, value_parser = crate::cli::parse_port_range, default_value = "20000-29999")]
    pub rtp_ports: RangeInclusive<u16>,
    /// Where the session database and key live; a fresh temporary directory when absent.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Media of answered calls: through our relay, or end to end after re-INVITEs (relay fallback).
    #[arg(long, value_enum, default_value = "relay")]
    pub media: AgentMedia,
    /// How an agent gets the call: we bridge it, or REFER the trunk to the agent's phone (bridge
    /// fallback).
    #[arg(long, value_enum, default_value = "bridge")]
    pub transfer: TransferMode,
    /// Allow `--http`/`--sip` addresses other machines can reach (see [`check_exposure`]).
    #[arg(long)]
    pub public: bool,
    /// Do not register the built-in agent phone for `agent` (it auto-answers and plays a chime);
    /// register a real softphone instead.
    #[arg(long)]
    pub no_demo_phone: bool,
}

/// The demo runs the IRMA simulator and prints its secrets: on an address other machines reach,
/// anyone there could make a call look verified with any name and BSN. Refused unless `--public`.
pub fn check_exposure(args: &DemoArgs) -> Result<(), String> {
    if args.public {
        return Ok(());
    }
    let exposed: Vec<String> = [("--http", args.http), ("--sip", args.sip)]
        .iter()
        .filter(|(_, addr)| !addr.ip().is_loopback())
        .map(|(flag, addr)| format!("{flag} {addr}"))
        .collect();
    if exposed.is_empty() {
        return Ok(());
    }
    Err(format!(
        "refusing {}: that address is reachable from other machines, and the demo's IRMA simulator \
         lets anyone who reaches it make a call look verified with any name and BSN. Use a loopback \
         address (127.0.0.1), add --public if only you can reach this network, or run the product \
         for real with `veilig-bellen serve --config FILE`.",
        exposed.join(" and ")
    ))
}

/// The origins a browser shows for pages served on `http`: `http://ADDR`, and for loopback also
/// `http://localhost:PORT` (what people type).
fn demo_origins(http: SocketAddr) -> Vec<String> {
    let mut origins = vec![format!("http://{http}")];
    if http.ip().is_loopback() {
        origins.push(format!("http://localhost:{}", http.port()));
    }
    origins
}

/// Who may call the demo: any loopback address; with `--public`, anyone (the demo's callers are
/// softphones on the same network, and `--public` says only you can reach it).
fn demo_trunks(public: bool) -> Vec<ipnet::IpNet> {
    if public {
        ["0.0.0.0/0", "::/0"]
            .iter()
            .filter_map(|net| net.parse().ok())
            .collect()
    } else {
        CallFlowConfig::loopback_trunks()
    }
}

fn random_secret(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Builds the demo configuration from the arguments.
pub fn config(args: &DemoArgs, data_dir: PathBuf) -> (ServerConfig, String, String) {
    let api_token = args.api_token.clone().unwrap_or_else(|| random_secret(24));
    let agent_password = args
        .agent_password
        .clone()
        .unwrap_or_else(|| random_secret(12));
    let mut tenant = Tenant::demo();
    // What the agent may ask during a call: the address, a signed agreement.
    crate::extra_requests::add_demo_requests(&mut tenant);
    // The button demo is served by us: its page's origin must be allowed to start sessions, also when
    // `--http` is not the default address.
    for origin in demo_origins(args.http) {
        if !tenant.website_origins.contains(&origin) {
            tenant.website_origins.push(origin);
        }
    }
    // The portal login of agent `agent` is the same secret as its softphone's (only in the demo).
    match PasswordHash::hash(&agent_password) {
        Ok(hash) => {
            for agent in tenant.agents.values_mut() {
                agent.password_hash = Some(hash.clone());
            }
        }
        Err(e) => tracing::warn!("the demo agent cannot log in to the portal: {e}"),
    }
    let mut sip = SipConfig::new(args.sip, "veilig-bellen");
    // Common softphones (baresip 1.0, sipp 3.6, many desk phones) give up on a 401 that carries any
    // SHA-256 challenge, even next to an MD5 one; the demo must work with them. Production configs
    // choose their own list (SHA-256 first by default).
    sip.digest_algorithms = vec![sip::auth::Algorithm::Md5];
    sip.credentials = tenant
        .agents
        .values()
        .map(|a| Credentials {
            username: a.sip_username.clone(),
            password: agent_password.clone(),
        })
        .collect();
    let calls = CallFlowConfig {
        trunks: demo_trunks(args.public),
        rtp_ports: args.rtp_ports.clone(),
        agent_media: args.media,
        call: CallConfig {
            transfer: args.transfer,
            ..CallConfig::default()
        },
        ..CallFlowConfig::default()
    };
    let config = ServerConfig {
        sip,
        http: args.http,
        http_tls: None,
        trusted_proxies: Default::default(),
        api_token: Pii::new(api_token.clone()),
        tenants: Tenants::new(vec![tenant]),
        data_dir,
        key_file: None,
        store: Default::default(),
        irma: IrmaBackend::Simulator,
        links: LinkConfig::default(),
        calls,
        demo_pages: true,
    };
    (config, api_token, agent_password)
}

/// Runs the demo until Ctrl-C.
pub async fn run(args: DemoArgs) -> Result<(), RunError> {
    let (data_dir, _temp) = match &args.data {
        Some(dir) => (dir.clone(), None),
        None => {
            let temp = tempfile::Builder::new()
                .prefix("veilig-bellen-demo-")
                .tempdir()
                .map_err(RunError::io("creating a temporary data directory"))?;
            (temp.path().to_path_buf(), Some(temp))
        }
    };
    let (config, api_token, agent_password) = config(&args, data_dir.clone());
    let number = config
        .tenants
        .iter()
        .next()
        .map(|t| t.phone_number.clone())
        .unwrap_or_default();
    let running = server::start(config).await?;
    let http = running.http;
    let sip_udp = running.sip.udp.first().copied().unwrap_or(args.sip);
    // **Bel nu** on the simulator's page calls the demo itself, with our own caller.
    if let Some(sim) = &running.simulator {
        // Listening on every address (`--public --sip 0.0.0.0:5060`): call it over loopback.
        let mut to = sip_udp;
        if to.ip().is_unspecified() {
            to.set_ip(match to {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        sim.set_dialer(std::sync::Arc::new(
            crate::softphone::bel_nu::SoftphoneDialer::new(to),
        ));
    }
    let phone = (!args.no_demo_phone).then(|| start_agent_phone(sip_udp, &agent_password));
    println!("veilig-bellen demo is running (IRMA simulator: NOT a real IRMA server)");
    println!();
    println!("  Start here, in your browser:   http://{http}/");
    println!("  (the walk-through: the municipality's website, the Yivi app, the agents' portal)");
    println!();
    println!("  agents' portal             http://{http}/portal  (user agent, password {agent_password})");
    println!("  website button demo        http://{http}/button-demo");
    println!("  Yivi app (simulated)       {}", running.irma_url);
    let callers = if args.public {
        "calls from anywhere"
    } else {
        "calls from loopback only"
    };
    println!("  SIP trunk and softphones   sip:{sip_udp} (UDP and TCP; {callers})");
    if phone.is_some() {
        println!("  agent phone                built in (auto-answers, plays a chime); --no-demo-phone to use your own softphone");
    } else {
        println!("  agent phone                none built in (--no-demo-phone): register a softphone as below");
    }
    println!(
        "  agent softphone            user agent, password {agent_password}, realm veilig-bellen"
    );
    println!("                             e.g. baresip: <sip:agent@{sip_udp}>;auth_pass={agent_password};answermode=auto");
    println!("  a call without a softphone veilig-bellen call sip:{number}@{sip_udp} --code CODE");
    println!("  agents' API                http://{http}/api/v1/calls  (Authorization: Bearer {api_token})");
    println!(
        "  agent connect              transfer {}, media {} (--transfer bridge|refer, --media relay|direct)",
        flag_value(&args.transfer),
        flag_value(&args.media)
    );
    println!("  data directory             {}", data_dir.display());
    println!();
    println!("Press Ctrl-C to stop.");
    tokio::signal::ctrl_c()
        .await
        .map_err(RunError::io("waiting for Ctrl-C"))?;
    println!("stopping");
    if let Some((stop, phone)) = phone {
        // Hang up and unREGISTER while the server still answers.
        let _ = stop.send(());
        let _ = phone.await;
    }
    running.shutdown().await;
    Ok(())
}

/// Starts the built-in agent phone for SIP user `agent`, registering at the demo's own `sip`
/// address; it runs until the returned sender is used (or dropped).
fn start_agent_phone(
    sip: SocketAddr,
    password: &str,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let config = AgentPhoneConfig::new(sip, "agent", password);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let stopped = async {
            let _ = stopped.await;
        };
        if let Err(e) = agent_phone::run(config, stopped).await {
            tracing::warn!("the built-in agent phone stopped: {e}");
        }
    });
    (stop, task)
}

/// How a flag value is spelled on the command line (`refer`, not `Refer`).
fn flag_value(value: &impl clap::ValueEnum) -> String {
    value
        .to_possible_value()
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_banner_names_connect_modes_as_the_flags_spell_them() {
        assert_eq!(flag_value(&TransferMode::Refer), "refer");
        assert_eq!(flag_value(&AgentMedia::Direct), "direct");
    }

    #[test]
    fn the_button_demo_may_start_sessions_on_any_http_address() {
        let args = DemoArgs {
            sip: "127.0.0.1:25060".parse().unwrap(),
            http: "127.0.0.1:28080".parse().unwrap(),
            api_token: Some("t".into()),
            agent_password: Some("p".into()),
            rtp_ports: 20000..=20099,
            data: None,
            media: AgentMedia::Relay,
            transfer: TransferMode::Bridge,
            public: false,
            no_demo_phone: false,
        };
        let (config, _, _) = config(&args, PathBuf::from("/nonexistent"));
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        assert!(config.calls.is_trunk(ip("127.0.0.1")), "loopback may call");
        assert!(!config.calls.is_trunk(ip("192.0.2.1")), "nobody else");
        assert!(CallFlowConfig {
            trunks: demo_trunks(true),
            ..CallFlowConfig::default()
        }
        .is_trunk(ip("192.0.2.1")));
        let demo = config
            .tenants
            .by_id(&crate::tenant::TenantId("demo".into()))
            .unwrap();
        assert!(demo
            .website_origins
            .iter()
            .any(|o| o == "http://127.0.0.1:28080"));
        assert!(demo
            .website_origins
            .iter()
            .any(|o| o == "http://localhost:28080"));
        assert!(
            demo.website_origins
                .iter()
                .any(|o| o == "http://127.0.0.1:8080"),
            "defaults kept"
        );
        let agent = demo
            .agents
            .get(&crate::tenant::AgentId("agent".into()))
            .unwrap();
        let hash = agent.password_hash.as_ref().expect("a portal password");
        assert!(hash.verify("p"), "the portal takes --agent-password");
        assert!(!hash.verify("q"));
    }

    #[test]
    fn a_public_address_needs_the_public_flag() {
        use clap::Parser;
        let args = |extra: &[&str]| {
            let cli = crate::cli::Cli::try_parse_from(
                ["veilig-bellen", "demo"].iter().chain(extra).copied(),
            )
            .unwrap();
            match cli.command {
                crate::cli::Command::Demo(args) => args,
                _ => panic!("not the demo command"),
            }
        };
        assert!(
            check_exposure(&args(&[])).is_ok(),
            "the defaults are loopback"
        );
        let why = check_exposure(&args(&["--http", "0.0.0.0:8080"])).unwrap_err();
        assert!(
            why.contains("--http 0.0.0.0:8080") && why.contains("--public"),
            "{why}"
        );
        assert!(check_exposure(&args(&["--sip", "192.0.2.1:5060"])).is_err());
        assert!(check_exposure(&args(&["--sip", "192.0.2.1:5060", "--public"])).is_ok());
    }

    #[test]
    fn connect_mode_flags_reach_the_call_flow() {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from([
            "veilig-bellen",
            "demo",
            "--media",
            "direct",
            "--transfer",
            "refer",
        ])
        .unwrap();
        let crate::cli::Command::Demo(args) = cli.command else {
            panic!("not the demo command");
        };
        let (built, _, _) = config(&args, PathBuf::from("/nonexistent"));
        assert_eq!(built.calls.agent_media, AgentMedia::Direct);
        assert_eq!(built.calls.call.transfer, TransferMode::Refer);

        let cli = crate::cli::Cli::try_parse_from(["veilig-bellen", "demo"]).unwrap();
        let crate::cli::Command::Demo(args) = cli.command else {
            panic!("not the demo command");
        };
        let (built, _, _) = config(&args, PathBuf::from("/nonexistent"));
        assert_eq!(built.calls.agent_media, AgentMedia::Relay, "default");
        assert_eq!(built.calls.call.transfer, TransferMode::Bridge, "default");
        assert!(
            crate::cli::Cli::try_parse_from(["veilig-bellen", "demo", "--media", "p2p"]).is_err()
        );
    }
}
