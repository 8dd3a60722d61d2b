//! The call task's agent leg: ringing the agent's phones and keeping the one that answers.
//!
//! One INVITE per registered contact of the agent, each with our SDP offer (RFC 3264 §5) on one
//! fresh RTP port; [`AgentForks`] (`agent_forks.rs`) decides which phone won, which forks are
//! CANCELled and which stray 2xx is ACKed and hung up, and here its decisions are sent and its
//! winner's dialog and SDP answer become the connected agent leg. When every fork failed the
//! machine hears the most telling reason (`agent_outcome.rs`), and the call task logs it at INFO
//! (call id, agent, status, reason; nothing about the caller). Hanging the agent leg up sends BYE
//! to a connected phone or CANCEL to forks still ringing.

use super::media::{bind_media, rtp_config, LegMedia};
use super::{AgentLeg, Call, MediaLeg};
use crate::call::agent_forks::{AgentForks, Fork, ForkEvent, ForkTransmit};
use crate::call::agent_outcome::{AgentLegFailure, AgentLegOutcome};
use crate::call::config::AGENT_CALL_ID_PREFIX;
use crate::call::machine::Classification;
use crate::sip_driver::SipHandle;
use crate::tenant::AgentId;
use sip::dialog::Dialog;
use sip::endpoint::Target;
use sip::message::{build, HeaderName, Method, Request, Response};
use sip::rtp::RtpSession;
use sip::sdp::{Direction, LocalMedia, LocalSdp, SrtpKey};
use std::net::SocketAddr;
use std::time::Instant;

impl Call {
    /// Sends what [`AgentForks`] decided (CANCELs, ACKs, a stray's BYE), then acts on what its
    /// forks' responses mean for the call. Returns whether there was anything.
    pub(super) async fn drive_forks(&mut self, now: Instant) -> bool {
        let mut busy = send_fork_transmits(&self.ctx.sip, &mut self.forks).await;
        while let Some(event) = self.forks.poll_event() {
            busy = true;
            match event {
                ForkEvent::Progress => self.machine.handle_agent_progress(now),
                ForkEvent::Answered { dialog, answer } => {
                    self.agent_answered(now, *dialog, &answer).await
                }
                ForkEvent::Failed(why) => {
                    self.agent = None;
                    self.machine.handle_agent_failed(now, why);
                }
                ForkEvent::RetryPlain => {
                    self.agent = None;
                    if let Some(agent) = self.machine.agent().cloned() {
                        tracing::info!(call = %self.id, agent = %agent, "the agent's phone refused SRTP; calling it again with plain RTP");
                        self.ring_agent_as(now, agent, true).await;
                    }
                }
            }
        }
        busy
    }

    /// A phone of the agent answered (its 2xx is ACKed, the other forks are being cancelled): its
    /// dialog and media become the connected agent leg.
    async fn agent_answered(&mut self, now: Instant, dialog: Dialog, answer: &Response) {
        let Some(AgentLeg::Ringing { media }) = self.agent.take() else {
            // The forks ring only while the agent leg does; should that ever differ, the phone
            // that answered is not left talking to nobody.
            let mut dialog = dialog;
            if let Ok(bye) = dialog.bye() {
                let _ = self.ctx.sip.send_request(bye, dialog.peer()).await;
            }
            return;
        };
        let config = rtp_config(&self.ctx.flow, dialog.peer().addr.ip());
        match media.sdp.handle_answer(&answer.body) {
            Ok(m) => {
                if let Some(agent) = &mut crate::sync::lock(&self.media).agent {
                    agent.rtp = Some(RtpSession::new(now, m, config));
                }
            }
            Err(e) => {
                tracing::warn!(call = %self.id, "agent's SDP answer unusable: {e}; no audio to the agent")
            }
        }
        self.agent = Some(AgentLeg::Connected { dialog, media });
        self.machine.handle_agent_answered(now);
    }

    /// The INFO line for an agent leg that went back to waiting: our call id, the agent, the
    /// phone's status and the reason. Never the caller's number or attributes.
    pub(super) fn log_agent_leg_failed(&self, outcome: &AgentLegOutcome) {
        tracing::info!(
            call = %self.id,
            agent = %outcome.agent,
            status = outcome.status,
            reason = %outcome.reason,
            "the agent's phone did not take the call; the caller waits again"
        );
    }

    /// The registered phones of `agent` (none for an agent this tenant does not know). `&mut self`
    /// because `Call` is `Send` but not `Sync`: the future must not hold a shared borrow.
    pub(super) async fn agent_bindings(&mut self, agent: &AgentId) -> Vec<sip::registrar::Binding> {
        match self.tenant.agents.get(agent) {
            Some(a) => self
                .ctx
                .sip
                .lookup(&a.sip_username)
                .await
                .unwrap_or_default(),
            None => Vec::new(),
        }
    }

    pub(super) async fn ring_agent(&mut self, now: Instant, agent: AgentId) {
        self.ring_agent_as(now, agent, false).await;
    }

    /// `plain`: the second try after every phone refused our SRTP offer (policy `offer` only).
    async fn ring_agent_as(&mut self, now: Instant, agent: AgentId, plain: bool) {
        let bindings = self.agent_bindings(&agent).await;
        let registered = bindings.len();
        let policy = self
            .tenant
            .agents
            .get(&agent)
            .map(|a| a.srtp)
            .unwrap_or_default();
        let (bindings, secure) = policy.plan(bindings);
        let secure = secure && !plain;
        // Under `srtp = "offer"`, a leg every phone refuses as not acceptable is rung again plain.
        let srtp_fallback = secure && policy == crate::tenant::SrtpPolicy::Offer;
        if bindings.is_empty() && registered > 0 {
            tracing::info!(call = %self.id, agent = %agent, "the agent's SRTP is required, but no phone of theirs registered over TLS");
        }
        if bindings.is_empty() {
            tracing::info!(call = %self.id, agent = %agent, "agent has no registered phone");
            self.machine
                .handle_agent_failed(now, AgentLegFailure::unreachable());
            return;
        }
        let ip = self.agent_media_ip;
        let (socket, lease) = match bind_media(&self.ctx.ports, ip).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(call = %self.id, "no RTP port for the agent leg: {e}");
                self.machine
                    .handle_agent_failed(now, AgentLegFailure::server_error());
                return;
            }
        };
        let local = LocalMedia {
            addr: ip,
            rtp_port: lease.rtp_port(),
        };
        let mut sdp = LocalSdp::new(rand::random(), self.ctx.flow.media.clone());
        if secure {
            // A fresh master key per agent leg, from the OS-seeded CSPRNG; never logged.
            sdp = sdp.with_srtp(SrtpKey::from_bytes(rand::random()));
        }
        let offer = sdp.offer(local, Direction::SendRecv);
        let mut forks = Vec::new();
        for binding in bindings {
            self.agent_legs_made += 1;
            let request = match self.agent_invite(&binding, &offer) {
                Some(r) => r,
                None => continue,
            };
            let target = Target {
                transport: binding.transport,
                addr: binding.target,
            };
            match self.ctx.sip.send_request(request.clone(), target).await {
                Ok(tx) => {
                    self.lock_routes().client_txs.insert(tx, self.id);
                    forks.push(Fork {
                        tx,
                        request,
                        target,
                    });
                }
                Err(e) => tracing::warn!(call = %self.id, "could not INVITE an agent phone: {e}"),
            }
        }
        // No INVITE sent to any phone (e.g. its connection is gone) fails the leg as unreachable.
        self.forks.ring(forks, srtp_fallback);
        if !self.forks.is_ringing() {
            return;
        }
        crate::sync::lock(&self.media).agent = Some(LegMedia::default());
        self.media_io
            .add(crate::media_plane::LegId::Agent, socket, lease);
        self.agent = Some(AgentLeg::Ringing {
            media: MediaLeg { local, sdp },
        });
    }

    fn agent_invite(&self, binding: &sip::registrar::Binding, offer: &[u8]) -> Option<Request> {
        let uri = binding.contact.uri.clone();
        let mut req = Request::new(Method::Invite, uri.clone());
        let host = self.local_host();
        let caller = self.caller.expose();
        let from_user: String = caller
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '+')
            .collect();
        let from_user = if from_user.is_empty() {
            "anonymous".to_owned()
        } else {
            from_user
        };
        let display = match self.machine.classification() {
            Some(Classification::Verified(_)) => "Veilig bellen (geverifieerd)",
            _ => "Veilig bellen (niet geverifieerd)",
        };
        req.headers.push(
            HeaderName::From,
            format!(
                "\"{display}\" <sip:{from_user}@{host}>;tag={}",
                build::tag(rand::random())
            ),
        );
        req.headers
            .push(HeaderName::To, format!("<{}>", uri.as_str()));
        req.headers.push(
            HeaderName::CallId,
            format!(
                "{AGENT_CALL_ID_PREFIX}{}-{}-{:08x}@{host}",
                self.id,
                self.agent_legs_made,
                rand::random::<u32>()
            ),
        );
        req.headers.push(HeaderName::CSeq, "1 INVITE");
        req.headers.push(
            HeaderName::Contact,
            self.agent_contact(binding.transport, &uri),
        );
        for path in &binding.path {
            req.headers.push(HeaderName::Route, path.clone());
        }
        req.headers.push(
            HeaderName::Allow,
            "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE",
        );
        req.headers
            .push(HeaderName::parse("User-Agent"), crate::PRODUCT);
        req.set_body(Some("application/sdp"), offer.to_vec());
        Some(req)
    }

    /// `host:port` of our SIP address (IPv6 in brackets, as `SocketAddr` writes it).
    /// Our Contact for an agent leg over `transport`: the listener of that transport, with
    /// `;transport=tcp|tls` (RFC 3261 §19.1.4). Without it a phone on TLS would send its BYE and
    /// re-INVITEs — SDP with SRTP keys included — in clear over UDP.
    /// A phone that registered a `sips:` contact is called at it, and then our Contact is `sips:`
    /// too (RFC 5630 §3.1.3: a dialog begun with a SIPS Request-URI stays TLS both ways).
    fn agent_contact(
        &self,
        transport: sip::transaction::Transport,
        target: &sip::message::Uri,
    ) -> String {
        use sip::transaction::Transport;
        let bound = &self.ctx.sip_bound;
        let port_in = |list: &[SocketAddr]| {
            list.iter()
                .find(|a| a.is_ipv4() == self.sip_local.is_ipv4())
                .or(list.first())
                .map(|a| a.port())
        };
        let (port, param) = match transport {
            Transport::Udp => (Some(self.sip_local.port()), ""),
            Transport::Tcp => (port_in(&bound.tcp), ";transport=tcp"),
            Transport::Tls => (port_in(&bound.tls), ";transport=tls"),
        };
        let port = port.unwrap_or(self.sip_local.port());
        let host = self
            .ctx
            .flow
            .contact_host
            .clone()
            .unwrap_or_else(|| sip::endpoint::host_text(self.sip_local.ip()));
        if target
            .as_str()
            .get(..5)
            .is_some_and(|s| s.eq_ignore_ascii_case("sips:"))
            && transport == Transport::Tls
        {
            return format!("<sips:veilig-bellen@{host}:{port}>");
        }
        format!("<sip:veilig-bellen@{host}:{port}{param}>")
    }

    fn local_host(&self) -> String {
        self.sip_local.to_string()
    }

    /// Hangs the agent leg up: BYE to a connected phone, CANCEL to the forks still ringing.
    pub(super) async fn hangup_agent(&mut self) {
        hangup_agent(&self.ctx.sip, &mut self.agent, &mut self.forks).await;
    }
}

/// Hangs `agent` up: BYE to a connected phone, CANCEL (through `forks`) to phones still ringing.
pub(super) async fn hangup_agent(
    sip: &SipHandle,
    agent: &mut Option<AgentLeg>,
    forks: &mut AgentForks,
) {
    match agent.take() {
        Some(AgentLeg::Connected { mut dialog, .. }) => {
            if let Ok(bye) = dialog.bye() {
                let _ = sip.send_request(bye, dialog.peer()).await;
            }
        }
        Some(AgentLeg::Ringing { .. }) => {
            forks.cancel();
            send_fork_transmits(sip, forks).await;
        }
        None => {}
    }
}

/// Sends what `forks` asked for; returns whether there was anything.
async fn send_fork_transmits(sip: &SipHandle, forks: &mut AgentForks) -> bool {
    let mut busy = false;
    while let Some(t) = forks.poll_transmit() {
        busy = true;
        match t {
            ForkTransmit::Cancel(tx) => {
                let _ = sip.cancel(tx).await;
            }
            ForkTransmit::Ack { request, target } => {
                let _ = sip.send_ack(request, target).await;
            }
            ForkTransmit::Bye { request, target } => {
                let _ = sip.send_request(request, target).await;
            }
        }
    }
    busy
}
