//! The call task's agent leg: ringing the agent's phones and keeping the one that answers.
//!
//! One INVITE per registered contact of the agent (parallel forking done by us as a B2BUA, not by
//! a proxy), each with our SDP offer (RFC 3264 §5) on one fresh RTP port. The first 2xx wins: it is
//! ACKed (RFC 3261 §13.2.2.4) and becomes the agent's UAC dialog (§12.1.2); the other forks are
//! CANCELled (§9.1). A 2xx arriving later from a losing fork is ACKed and hung up with BYE. When
//! every fork failed the machine hears the most telling reason (`agent_outcome.rs`: 488 is
//! `not_acceptable`, a transport error or transaction timeout `unreachable`, …), and the call task
//! logs it at INFO (call id, agent, status, reason; nothing about the caller). Hanging the agent leg
//! up sends BYE to a connected phone or CANCEL to forks still ringing.

use super::media::{bind_media, rtp_config};
use super::{AgentLeg, Call, Fork, MediaLeg};
use crate::call::agent_outcome::{AgentLegFailure, AgentLegOutcome, AgentLegReason};
use crate::call::machine::Classification;
use crate::call::manager::AGENT_CALL_ID_PREFIX;
use crate::sip_driver::tu;
use crate::tenant::AgentId;
use sip::dialog::Dialog;
use sip::endpoint::{ClientTxId, Target};
use sip::message::{HeaderName, Method, Request, Response};
use sip::rtp::RtpSession;
use sip::sdp::{Direction, LocalMedia, LocalSdp, SrtpKey};
use std::net::SocketAddr;
use std::time::Instant;

impl Call {
    /// A phone of the agent answered: it wins, the other forks are cancelled.
    pub(super) async fn connect_agent(&mut self, now: Instant, index: usize, response: Response) {
        let Some(AgentLeg::Ringing { forks, media }) = self.agent.take() else {
            return;
        };
        // `index` came from `position()` on these very forks.
        let fork = &forks[index];
        let tx = fork.tx;
        let dialog = match Dialog::uac(
            now,
            &fork.request,
            &response,
            fork.target,
            self.ctx.flow.sip_timers,
        ) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(call = %self.id, "agent's 200 OK unusable for a dialog: {e}");
                self.agent = Some(AgentLeg::Ringing { forks, media });
                self.fork_failed(
                    now,
                    tx,
                    AgentLegFailure::bad_answer(response.status.as_u16()),
                );
                return;
            }
        };
        let cseq = fork.request.headers.cseq().map(|c| c.seq).unwrap_or(1);
        let _ = self.ctx.sip.send_ack(dialog.ack(cseq), dialog.peer()).await;
        for (i, other) in forks.iter().enumerate() {
            if i != index && other.failed.is_none() {
                let _ = self.ctx.sip.cancel(other.tx).await;
            }
        }
        let mut media = media;
        let config = rtp_config(&self.ctx.flow, dialog.peer().addr.ip());
        match media.sdp.handle_answer(&response.body) {
            Ok(m) => media.rtp = Some(RtpSession::new(now, m, config)),
            Err(e) => {
                tracing::warn!(call = %self.id, "agent's SDP answer unusable: {e}; no audio to the agent")
            }
        }
        self.stale_forks.extend(
            forks
                .into_iter()
                .enumerate()
                .filter(|(i, _)| *i != index)
                .map(|(_, f)| f),
        );
        self.agent = Some(AgentLeg::Connected { dialog, media });
        self.machine.handle_agent_answered(now);
    }

    /// A ringing fork sent a provisional response: the phone is there.
    pub(super) fn fork_progress(&mut self, now: Instant, tx: ClientTxId) {
        if let Some(AgentLeg::Ringing { forks, .. }) = &self.agent {
            if forks.iter().any(|f| f.tx == tx) {
                self.machine.handle_agent_progress(now);
            }
        }
    }

    /// Fork `tx` failed (`why`: its final response, or none). When it was the last one still
    /// ringing, the agent leg is over and the machine hears the most telling of the forks' failures.
    pub(super) fn fork_failed(&mut self, now: Instant, tx: ClientTxId, why: AgentLegFailure) {
        let Some(AgentLeg::Ringing { forks, .. }) = &mut self.agent else {
            return;
        };
        let Some(fork) = forks.iter_mut().find(|f| f.tx == tx) else {
            return;
        };
        fork.failed.get_or_insert(why);
        let all: Option<Vec<AgentLegFailure>> = forks.iter().map(|f| f.failed).collect();
        if let Some(why) = all.and_then(|a| a.into_iter().reduce(AgentLegFailure::more_telling)) {
            self.agent = None;
            match self.srtp_fallback.take() {
                // Every phone refused our SRTP offer: under `srtp = "offer"` they get plain RTP.
                Some(agent) if why.reason == AgentLegReason::NotAcceptable => {
                    tracing::info!(call = %self.id, agent = %agent, "the agent's phone refused SRTP; calling it again with plain RTP");
                    self.ring_plain_due = Some(agent);
                }
                _ => self.machine.handle_agent_failed(now, why),
            }
        }
    }

    /// Rings the agent again with a plain-RTP offer when [`Call::fork_failed`] said so.
    pub(super) async fn ring_plain_now(&mut self, now: Instant) {
        if let Some(agent) = self.ring_plain_due.take() {
            self.ring_agent_as(now, agent, true).await;
        }
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

    /// A 2xx we no longer want (a losing fork, or after the call moved on): ACK it, then BYE it.
    pub(super) async fn ack_and_bye_stray(
        &mut self,
        now: Instant,
        id: ClientTxId,
        response: &Response,
    ) {
        let Some(fork) = self.stale_forks.iter().find(|f| f.tx == id) else {
            return;
        };
        if let Ok(mut dialog) = Dialog::uac(
            now,
            &fork.request,
            response,
            fork.target,
            self.ctx.flow.sip_timers,
        ) {
            let cseq = fork.request.headers.cseq().map(|c| c.seq).unwrap_or(1);
            let _ = self.ctx.sip.send_ack(dialog.ack(cseq), dialog.peer()).await;
            if let Ok(bye) = dialog.bye() {
                let _ = self.ctx.sip.send_request(bye, dialog.peer()).await;
            }
        }
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
        self.srtp_fallback = None;
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
        if secure && policy == crate::tenant::SrtpPolicy::Offer {
            self.srtp_fallback = Some(agent.clone());
        }
        if bindings.is_empty() && registered > 0 {
            tracing::info!(call = %self.id, agent = %agent, "the agent's SRTP is required, but no phone of theirs registered over TLS");
        }
        if bindings.is_empty() {
            tracing::info!(call = %self.id, agent = %agent, "agent has no registered phone");
            self.machine
                .handle_agent_failed(now, AgentLegFailure::unreachable());
            return;
        }
        let ip = self.trunk_media.local.addr;
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
                        failed: None,
                    });
                }
                Err(e) => tracing::warn!(call = %self.id, "could not INVITE an agent phone: {e}"),
            }
        }
        if forks.is_empty() {
            // No INVITE could be sent to any phone (e.g. its connection is gone).
            self.machine
                .handle_agent_failed(now, AgentLegFailure::unreachable());
            return;
        }
        let media = MediaLeg {
            socket,
            _lease: lease,
            local,
            sdp,
            rtp: None,
            relayed_event: None,
            relay_this_event: false,
            srtp: None,
        };
        self.agent = Some(AgentLeg::Ringing { forks, media });
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
                tu::new_tag()
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
            .push(HeaderName::parse("User-Agent"), tu::PRODUCT);
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

    pub(super) async fn hangup_agent(&mut self) {
        match self.agent.take() {
            Some(AgentLeg::Connected { mut dialog, .. }) => {
                if let Ok(bye) = dialog.bye() {
                    let _ = self.ctx.sip.send_request(bye, dialog.peer()).await;
                }
            }
            Some(AgentLeg::Ringing { forks, .. }) => {
                for fork in forks.iter().filter(|f| f.failed.is_none()) {
                    let _ = self.ctx.sip.cancel(fork.tx).await;
                }
                self.stale_forks.extend(forks);
            }
            None => {}
        }
    }
}
