//! A call from a citizen's browser (WebRTC, issue 15): the same call as a trunk's, with another
//! caller leg.
//!
//! The browser's media reaches us through the WebRTC gateway ([`crate::webrtc::gateway`]), which
//! turns it into plain G.711 RTP on loopback; to the call it is an RTP peer like a trunk's media,
//! so the comfort signal, the agent leg, the relay, hold and teardown are the trunk call's own. What
//! differs is at the start and the end: the caller is classified before the call begins (the
//! session's token bound the disclosure, there is no code to read), and hanging up closes the
//! browser's connection instead of sending a BYE. A browser call is always bridged through our
//! relay: no REFER, no direct media.

use super::media::{bind_media, media_ip, rtp_config};
use super::{drive, Call, CallInput, CallTaskContext, CallerLeg, MediaLeg};
use crate::call::agent_forks::AgentForks;
use crate::call::machine::{CallMachine, Classification, TransferMode};
use crate::call::registry::ShownAttribute;
use crate::call::teardown::Teardown;
use crate::call::CallId;
use crate::links::Verified;
use crate::pii::Pii;
use crate::tenant::Tenant;
use crate::webrtc::gateway::{Gateway, GatewayEvent};
use sip::rtp::RtpSession;
use sip::sdp::LocalSdp;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use tokio::sync::mpsc;

/// Runs a browser call from its connection to the end. `verified` is what the session disclosed;
/// `gateway` carries the browser's media.
pub async fn run_browser(
    ctx: Arc<CallTaskContext>,
    id: CallId,
    tenant: Tenant,
    verified: Verified,
    gateway: Gateway,
    inputs: mpsc::Receiver<CallInput>,
) {
    let now = super::clock();
    let Some(call) = start(&ctx, now, id, tenant, verified, gateway).await else {
        let _ = ctx.ended.send(id);
        return;
    };
    drive(call, now, inputs).await;
}

/// The gateway's RTP as a trunk-like media leg on loopback, and the [`Call`] around it.
async fn start(
    ctx: &Arc<CallTaskContext>,
    now: Instant,
    id: CallId,
    tenant: Tenant,
    verified: Verified,
    gateway: Gateway,
) -> Option<Call> {
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let (socket, lease) = match bind_media(&ctx.ports, loopback).await {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(call = %id, "no RTP port for a browser call: {e}");
            gateway.close();
            return None;
        }
    };
    let local = sip::sdp::LocalMedia {
        addr: loopback,
        rtp_port: lease.rtp_port(),
    };
    // The gateway speaks G.711 at 8 kHz; its side described as the offer we answer, so the RTP
    // session is set up exactly as a trunk's.
    let gateway_rtp = gateway.rtp_addr();
    let offer = gateway_offer(gateway_rtp);
    let mut sdp = LocalSdp::new(rand::random(), ctx.flow.media.clone());
    let media = match sdp.answer(offer.as_bytes(), local) {
        Ok(answer) => answer.media,
        Err(e) => {
            tracing::warn!(call = %id, "cannot set up the browser call's RTP: {e}");
            gateway.close();
            return None;
        }
    };
    gateway.set_rtp_peer(SocketAddr::new(loopback, lease.rtp_port()));
    let rtp = RtpSession::new(now, media, rtp_config(&ctx.flow, loopback));
    let attributes = verified
        .attributes
        .iter()
        .map(ShownAttribute::from)
        .collect();
    let mut config = tenant.timeouts.apply(&ctx.flow.call);
    // There is no SIP dialog to REFER: the agent's phone is always bridged.
    config.transfer = TransferMode::Bridge;
    let machine = CallMachine::classified(config, now, Classification::Verified(attributes));
    let sip_local = ctx
        .sip_bound
        .udp
        .first()
        .copied()
        .unwrap_or_else(|| SocketAddr::new(loopback, 5060));
    tracing::info!(call = %id, tenant = %tenant.id, "a browser call connected");
    let (media, media_io, media_events) =
        super::start_media(ctx, id, &tenant, socket, lease, |m| m.trunk.rtp = Some(rtp));
    Some(Call {
        id,
        ctx: ctx.clone(),
        tenant,
        // A browser call has no calling number.
        caller: Pii::new(String::new()),
        since: SystemTime::now(),
        machine,
        agent_invite_tx: None,
        caller_leg: CallerLeg::Browser(gateway),
        agent_media_ip: media_ip(&ctx.flow, sip_local),
        trunk_media: MediaLeg { local, sdp },
        media,
        media_io,
        media_events,
        agent: None,
        forks: AgentForks::new(ctx.flow.sip_timers),
        agent_legs_made: 0,
        lookup: None,
        teardown: Teardown::new(),
        sip_local,
        store_key: crate::call::config::store_key(id, &ctx.instance),
        direct: None,
        pending: Vec::new(),
    })
}

/// The gateway's side of the loopback RTP as an SDP offer: PCMA and PCMU at 8 kHz.
fn gateway_offer(rtp: SocketAddr) -> String {
    let ip = rtp.ip();
    let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
    format!(
        "v=0\r\no=- 1 1 IN {family} {ip}\r\ns=-\r\nc=IN {family} {ip}\r\nt=0 0\r\n\
         m=audio {} RTP/AVP 8 0\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n",
        rtp.port()
    )
}

impl Call {
    /// What the browser's gateway reported.
    pub(super) fn handle_browser(&mut self, now: Instant, event: GatewayEvent) {
        match event {
            GatewayEvent::Connected => {
                tracing::info!(call = %self.id, "the browser's media is connected");
            }
            GatewayEvent::Data(_) => {
                // Messages from the citizen's page: nothing is asked of it yet.
            }
            GatewayEvent::Closed { reason } => {
                tracing::info!(call = %self.id, %reason, "the browser's connection ended");
                self.caller_hung_up(now);
            }
        }
    }

    /// The caller hung up (a browser's DELETE or closed connection): as a trunk caller's BYE.
    pub(super) fn caller_hung_up(&mut self, now: Instant) {
        if let CallerLeg::Browser(gateway) = &mut self.caller_leg {
            gateway.close();
        }
        self.teardown.handle_caller_bye(now);
        self.machine.handle_caller_gone(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_offer_is_g711_at_its_loopback_address() {
        let offer = gateway_offer("127.0.0.1:40002".parse().unwrap());
        assert!(offer.contains("c=IN IP4 127.0.0.1\r\n"));
        assert!(offer.contains("m=audio 40002 RTP/AVP 8 0\r\n"));
        let prefs = sip::sdp::MediaPreferences::default();
        assert!(sip::sdp::describe(offer.as_bytes(), &prefs).is_ok());
    }
}
