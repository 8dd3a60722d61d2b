//! What the call manager and the call tasks share, so neither imports the other: the call flow's
//! settings ([`CallFlowConfig`], [`Comfort`], [`UnknownSources`]), the routing table
//! ([`Routes`]) and what it routes ([`CallInput`]), and the names calls give their agent legs'
//! Call-IDs and their store keys.

use super::direct::AgentMedia;
use super::machine::CallConfig;
use super::CallId;
use crate::sip_driver;
use sip::endpoint::{ClientTxId, Event, ServerTxId};
use sip::sdp::MediaPreferences;
use sip::transaction::TimerConfig;
use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::sync::Arc;
use tokio::sync::mpsc;

/// What the caller hears while waiting for an agent.
#[derive(Clone, Debug)]
pub enum Comfort {
    /// Dutch ringback: 425 Hz, 1 s on, 4 s off.
    Ringback,
    /// A looped 8 kHz mono prompt (linear samples).
    Prompt(Arc<[i16]>),
}

/// What happens to a dialog-creating request from an address that is not a trunk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UnknownSources {
    /// No answer at all (`sip.unknown_sources = "drop"`, the default): a scanner learns nothing.
    #[default]
    Drop,
    /// `403 Forbidden` (`"reject"`): a misconfigured trunk sees why its calls fail.
    Reject,
}

/// Settings of the call flow.
#[derive(Clone, Debug)]
pub struct CallFlowConfig {
    /// Addresses (CIDRs) that may start calls: the trunks and SBCs (`sip.trunks`). Identity
    /// headers (P-Asserted-Identity, Remote-Party-ID) are believed only from them. Empty: no
    /// calls at all.
    pub trunks: Vec<ipnet::IpNet>,
    /// What requests from other addresses get.
    pub unknown_sources: UnknownSources,
    pub call: CallConfig,
    pub rtp_ports: RangeInclusive<u16>,
    /// Address written into our SDP; defaults to the IP of the SIP listener the INVITE came in on.
    pub media_ip: Option<IpAddr>,
    /// Host written into our Contact towards trunks (the SIP config's `advertise`); defaults to the
    /// IP of the SIP listener the INVITE came in on.
    pub contact_host: Option<String>,
    pub max_calls: usize,
    /// Seconds in the `Retry-After` of a 503 when we are full.
    pub retry_after: u32,
    pub media: MediaPreferences,
    pub comfort: Comfort,
    /// No RTP from the caller for this long ends the call (dead trunk, lost BYE).
    pub media_timeout: std::time::Duration,
    /// Whether a connected call's RTP stays on our relay or is moved end to end by re-INVITEs.
    /// (How the agent is reached — bridge or REFER — is [`CallConfig::transfer`] in `call`.)
    pub agent_media: AgentMedia,
    /// At shutdown (SIGTERM), how long calls that are up may go on before they are hung up.
    pub shutdown_grace: std::time::Duration,
    /// RFC 3261 timers of the calls' dialogs (2xx retransmission and ACK wait, §13.3.1.4): the
    /// server sets the SIP driver's, so both follow the configured T1.
    pub sip_timers: TimerConfig,
    /// Answer a trunk's SRTP offer (`RTP/SAVP` with SDES `a=crypto`, an SBC interconnect) with
    /// SRTP (`sip.trunk_srtp = "accept"`); otherwise such an offer is refused (488) and the trunk
    /// leg is plain RTP.
    pub trunk_srtp: bool,
    /// Where browsers' WebRTC media is received (`sip.webrtc_ip`): bound, and offered as the ICE
    /// host candidate. Defaults to `media_ip`, else the SIP listener's address.
    pub webrtc_ip: Option<IpAddr>,
    /// A further host candidate for browsers (`sip.webrtc_public_ip`): the public address of a
    /// server behind 1:1 NAT. There is no TURN.
    pub webrtc_public_ip: Option<IpAddr>,
    /// What reads and writes the calls' RTP (`calls.media_io`, `calls.media_threads`): media
    /// threads on io_uring by default, the tokio runtime where that is refused.
    pub media_io: crate::media_plane::MediaIo,
}

impl CallFlowConfig {
    /// The WebRTC gateways' settings for this flow, with the SIP listener's addresses `sip` and
    /// the calls' port pool.
    pub fn webrtc_gateway(
        &self,
        sip: &sip_driver::BoundAddrs,
        ports: crate::rtp_ports::SharedPortPool,
    ) -> crate::webrtc::gateway::GatewayConfig {
        let listener = sip
            .udp
            .first()
            .map(|a| a.ip())
            .filter(|ip| !ip.is_unspecified());
        crate::webrtc::gateway::GatewayConfig {
            bind_ip: self
                .webrtc_ip
                .or(self.media_ip)
                .or(listener)
                .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)),
            public_ip: self.webrtc_public_ip,
            ports,
        }
    }
}

impl Default for CallFlowConfig {
    fn default() -> Self {
        CallFlowConfig {
            trunks: Vec::new(),
            unknown_sources: UnknownSources::Drop,
            call: CallConfig::default(),
            rtp_ports: 20000..=29999,
            media_ip: None,
            contact_host: None,
            max_calls: 2500,
            retry_after: 30,
            media: MediaPreferences::default(),
            comfort: Comfort::Ringback,
            media_timeout: std::time::Duration::from_secs(60),
            agent_media: AgentMedia::Relay,
            sip_timers: TimerConfig::default(),
            shutdown_grace: std::time::Duration::from_secs(30),
            trunk_srtp: false,
            webrtc_ip: None,
            webrtc_public_ip: None,
            media_io: crate::media_plane::MediaIo::default(),
        }
    }
}

impl CallFlowConfig {
    /// Whether `ip` is one of the trunks (an IPv4-mapped IPv6 address counts as its IPv4 address).
    pub fn is_trunk(&self, ip: IpAddr) -> bool {
        sip_driver::in_trunks(&self.trunks, ip)
    }

    /// Every loopback address (`127.0.0.0/8`, `::1`): the trunks of `demo` and the tests.
    pub fn loopback_trunks() -> Vec<ipnet::IpNet> {
        ["127.0.0.0/8", "::1/128"]
            .iter()
            .filter_map(|net| net.parse().ok())
            .collect()
    }
}

/// Where messages go. Shared with the call tasks (they add client transactions).
#[derive(Default)]
pub struct Routes {
    /// Trunk Call-ID → call.
    pub(super) trunk_calls: HashMap<String, CallId>,
    /// Trunk INVITE server transaction → call (CANCEL, timer H).
    pub(super) server_txs: HashMap<ServerTxId, CallId>,
    /// Client transactions of call tasks → call (timeouts, transport errors).
    pub client_txs: HashMap<ClientTxId, CallId>,
    pub(super) calls: HashMap<CallId, mpsc::Sender<CallInput>>,
    /// Shutting down: new calls get 503 with Retry-After; live ones may finish.
    pub(super) draining: bool,
}

/// Input routed to a call by the manager. The SIP event is boxed: a channel allocates its slots
/// 32 at a time, up front, and 32 unboxed events (328 bytes each) were a third of a call's memory;
/// a call gets a handful of SIP messages, each now one small allocation.
#[derive(Debug)]
pub enum CallInput {
    Sip(Box<Event>),
    /// The caller hung up outside SIP: a browser caller's `DELETE` of its call (WHIP).
    CallerHangup,
}

/// The prefix of Call-IDs we create for agent legs: `vb-<call id>-<n>@<host>`.
pub const AGENT_CALL_ID_PREFIX: &str = "vb-";

/// The key of call `id` in the link-session store: `<id>-<instance>`.
pub fn store_key(id: CallId, instance: &str) -> String {
    format!("{id}-{instance}")
}
