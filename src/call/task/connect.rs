//! The call task's side of the connect modes and of our own in-dialog requests: it sends what
//! [`DirectMedia`] and the call machine decided and feeds the answers back. No decisions here.
//!
//! - Re-INVITEs (RFC 3261 §14) on either leg: direct media (RFC 3725 §4.1 flow I, offers built by
//!   [`LocalSdp::offer_for`](sip::sdp::LocalSdp::offer_for)), moving back to the relay, and RFC 4028
//!   session refreshes when we are the refresher (the offer then changes nothing). Every 2xx is
//!   ACKed; a 491 leaves the dialog to schedule `DialogEvent::RetryOffer` (§14.1); a 408/481 ends
//!   that leg (§14.1, RFC 4028 §10).
//! - REFER (RFC 3515 §2.4) to the trunk: Refer-To the agent's newest registered contact, or the
//!   overflow target; the REFER's final response and the NOTIFY sipfrags go to the machine, which
//!   hands over (RFC 5589 §6.1: we BYE our leg) or falls back.

use super::{Call, MediaLeg};
use crate::call::direct::{
    DirectAction, DirectMedia, IncomingOffer, Leg, Offer, Offered, PeerMedia,
};
use crate::tenant::AgentId;
use bytes::Bytes;
use sip::dialog::Dialog;
use sip::endpoint::ClientTxId;
use sip::message::{HeaderName, Method, Request, Response, StatusCode};
use sip::sdp::{Direction, LocalMedia, MediaPreferences, MediaSession};
use std::time::Instant;

/// What one of our in-dialog requests was for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Purpose {
    /// A step of the direct-media switch.
    Direct,
    /// An RFC 4028 session refresh.
    Refresh,
    /// A REFER (to the agent or the overflow target).
    Refer,
}

/// An in-dialog request of ours awaiting its final response.
pub(super) struct Pending {
    tx: ClientTxId,
    leg: Leg,
    purpose: Purpose,
    offer: Offer,
    request: Request,
}

impl Call {
    /// Where `leg`'s next in-dialog request goes: the trunk's route set or remote target (RFC
    /// 3261 §12.2.1.1, through an SBC when it record-routes); the agent's phone on the flow it
    /// registered from.
    pub(super) async fn leg_target(&mut self, leg: Leg) -> Option<sip::endpoint::Target> {
        match leg {
            Leg::Trunk => match &self.caller_leg {
                super::CallerLeg::Sip { dialog, .. } => Some(self.ctx.sip.route(dialog).await),
                super::CallerLeg::Browser(_) => None,
            },
            Leg::Agent => match &self.agent {
                Some(super::AgentLeg::Connected { dialog, .. }) => Some(dialog.peer()),
                _ => None,
            },
        }
    }

    fn leg_mut(&mut self, leg: Leg) -> Option<(&mut Dialog, &mut MediaLeg)> {
        match leg {
            Leg::Trunk => match &mut self.caller_leg {
                super::CallerLeg::Sip { dialog, .. } => Some((dialog, &mut self.trunk_media)),
                super::CallerLeg::Browser(_) => None,
            },
            Leg::Agent => match &mut self.agent {
                Some(super::AgentLeg::Connected { dialog, media }) => Some((dialog, media)),
                _ => None,
            },
        }
    }

    /// `media = "direct"`: the agent leg just connected through the relay; try moving the media.
    pub(super) fn start_direct_media(&mut self, now: Instant) {
        let super::CallerLeg::Sip {
            remote_sdp: trunk_sdp,
            ..
        } = &self.caller_leg
        else {
            tracing::info!(call = %self.id, "a browser call's media stays relayed");
            return;
        };
        let agent = match &self.agent {
            Some(super::AgentLeg::Connected { .. }) => crate::sync::lock(&self.media)
                .agent
                .as_ref()
                .and_then(|a| a.rtp.as_ref())
                .and_then(|r| peer_media(r.media())),
            _ => None,
        };
        // The trunk accepts the agent's codec if its own SDP (offer, or answer in the ACK) listed it.
        let trunk_accepts = agent.is_some_and(|a| {
            let prefs = MediaPreferences {
                codecs: vec![a.codec.kind()],
                ..self.ctx.flow.media.clone()
            };
            sip::sdp::describe(trunk_sdp, &prefs).is_ok()
        });
        match DirectMedia::start(now, agent, trunk_accepts) {
            Ok(direct) => self.direct = Some(direct),
            Err(why) => {
                tracing::info!(call = %self.id, ?why, "direct media not possible; the call stays relayed")
            }
        }
    }

    /// Sends what the direct-media switch asked for; returns whether there was anything.
    pub(super) async fn drive_direct(&mut self, now: Instant) -> bool {
        let mut busy = false;
        while let Some(action) = self.direct.as_mut().and_then(DirectMedia::poll_action) {
            busy = true;
            match action {
                DirectAction::Offer(leg, offer) => {
                    self.send_offer(now, leg, offer, Purpose::Direct).await
                }
                DirectAction::Path(path) => {
                    tracing::info!(call = %self.id, ?path, "media path changed");
                    self.publish();
                }
            }
        }
        busy
    }

    /// RFC 4028: we are the refresher of `leg` and half the interval passed.
    pub(super) async fn refresh_session(&mut self, now: Instant, leg: Leg) {
        let offer = self
            .direct
            .as_ref()
            .map_or(Offer::Relay, |d| d.current_offer(leg));
        self.send_offer(now, leg, offer, Purpose::Refresh).await;
    }

    /// The dialog of `leg` ended its 491 back-off: send our offer again.
    pub(super) async fn retry_offer(&mut self, now: Instant, leg: Leg) {
        let ours = self.direct.as_mut().is_some_and(|d| d.handle_retry(leg));
        if !ours {
            // The only other offers we make are session refreshes.
            self.refresh_session(now, leg).await;
        }
    }

    async fn send_offer(&mut self, now: Instant, leg: Leg, offer: Offer, purpose: Purpose) {
        let prefs = self.ctx.flow.media.clone();
        let Some((dialog, media)) = self.leg_mut(leg) else {
            return;
        };
        let body = match offer {
            Offer::Relay => media.sdp.offer(media.local, Direction::SendRecv),
            Offer::Peer(p) => peer_sdp(media, p, &prefs),
        };
        let request = match dialog.reinvite(Some(("application/sdp", Bytes::from(body)))) {
            Ok(r) => r,
            Err(e) => {
                // A refresh while another offer is out needs nothing: that offer refreshes.
                tracing::debug!(call = %self.id, ?leg, ?purpose, "no re-INVITE now: {e}");
                if purpose == Purpose::Direct {
                    self.direct_answer(now, leg, None);
                }
                return;
            }
        };
        let Some(peer) = self.leg_target(leg).await else {
            return;
        };
        self.send_pending(now, leg, purpose, offer, request, peer)
            .await;
    }

    async fn send_pending(
        &mut self,
        now: Instant,
        leg: Leg,
        purpose: Purpose,
        offer: Offer,
        request: Request,
        peer: sip::endpoint::Target,
    ) {
        match self.ctx.sip.send_request(request.clone(), peer).await {
            Ok(tx) => {
                self.lock_routes().client_txs.insert(tx, self.id);
                self.pending.push(Pending {
                    tx,
                    leg,
                    purpose,
                    offer,
                    request,
                });
            }
            Err(e) => {
                tracing::warn!(call = %self.id, ?leg, ?purpose, "could not send: {e}");
                let failed = Response::for_request(&request, StatusCode::SERVICE_UNAVAILABLE, None);
                self.settle(now, leg, purpose, offer, &failed).await;
            }
        }
    }

    /// `Action::ReferToAgent`: REFER the trunk to the agent's newest registered phone.
    pub(super) async fn refer_to_agent(&mut self, now: Instant, agent: AgentId) {
        let bindings = self.agent_bindings(&agent).await;
        // The newest registration is the one whose expiry lies furthest ahead.
        let Some(binding) = bindings.into_iter().max_by_key(|b| b.expires_at) else {
            tracing::info!(call = %self.id, agent = %agent, "agent has no registered phone to refer to");
            self.machine.handle_refer_refused(now);
            return;
        };
        let target = format!("<{}>", binding.contact.uri.as_str());
        tracing::info!(call = %self.id, agent = %agent, "referring the caller to the agent's phone");
        self.send_refer(now, &target).await;
    }

    /// Sends REFER with `refer_to` on the trunk leg.
    pub(super) async fn send_refer(&mut self, now: Instant, refer_to: &str) {
        let super::CallerLeg::Sip { dialog, .. } = &mut self.caller_leg else {
            tracing::info!(call = %self.id, "a browser call cannot be referred: it is bridged");
            self.machine.handle_refer_refused(now);
            return;
        };
        match dialog.refer(refer_to) {
            Ok(refer) => {
                let peer = self.ctx.sip.route(dialog).await;
                self.send_pending(now, Leg::Trunk, Purpose::Refer, Offer::Relay, refer, peer)
                    .await;
            }
            Err(e) => {
                tracing::info!(call = %self.id, "cannot REFER the trunk: {e}");
                self.machine.handle_refer_refused(now);
            }
        }
    }

    /// A response to a request we sent; `false` when it was not one of our in-dialog requests.
    pub(super) async fn handle_dialog_response(
        &mut self,
        now: Instant,
        id: ClientTxId,
        response: &Response,
    ) -> bool {
        let Some(i) = self.pending.iter().position(|p| p.tx == id) else {
            return false;
        };
        if response.status.is_provisional() {
            return true;
        }
        let p = self.pending.swap_remove(i);
        self.settle(now, p.leg, p.purpose, p.offer, response).await;
        true
    }

    /// Our in-dialog transaction `id` timed out (or its transport failed): as a 408.
    pub(super) async fn handle_dialog_timeout(&mut self, now: Instant, id: ClientTxId) -> bool {
        let Some(i) = self.pending.iter().position(|p| p.tx == id) else {
            return false;
        };
        let p = self.pending.swap_remove(i);
        let timeout = Response::for_request(&p.request, StatusCode::REQUEST_TIMEOUT, None);
        self.settle(now, p.leg, p.purpose, p.offer, &timeout).await;
        true
    }

    /// The final response to one of our in-dialog requests.
    async fn settle(
        &mut self,
        now: Instant,
        leg: Leg,
        purpose: Purpose,
        offer: Offer,
        response: &Response,
    ) {
        let status = response.status.as_u16();
        if purpose == Purpose::Refer {
            if status >= 300 {
                tracing::info!(call = %self.id, status, "the trunk refused the REFER");
                self.machine.handle_refer_refused(now);
            }
            return;
        }
        let Some((dialog, media)) = self.leg_mut(leg) else {
            return;
        };
        dialog.handle_response(now, response, rand::random());
        if status == 491 {
            // Glare: the dialog's back-off ends in RetryOffer.
            return;
        }
        let mut answer = None;
        let mut relayed_hold = None;
        let mut ack = None;
        if response.status.is_success() {
            let cseq = response.headers.cseq().map(|c| c.seq).unwrap_or(1);
            ack = Some(dialog.ack(cseq));
            answer = media.sdp.handle_answer(&response.body).ok();
            if let (Offer::Relay, Some(m)) = (offer, &answer) {
                let mut state = crate::sync::lock(&self.media);
                let rtp = match leg {
                    Leg::Trunk => state.trunk.rtp.as_mut(),
                    Leg::Agent => state.agent.as_mut().and_then(|a| a.rtp.as_mut()),
                };
                if let Some(rtp) = rtp {
                    // The peer sends to our relay socket (again): follow its answer.
                    rtp.update_media(now, m.clone());
                    if leg == Leg::Agent {
                        // A phone still holding answers our sendrecv offer sendonly or inactive.
                        relayed_hold = Some(m.on_hold);
                    }
                }
            }
        }
        if let Some(ack) = ack {
            if let Some(peer) = self.leg_target(leg).await {
                let _ = self.ctx.sip.send_ack(ack, peer).await;
            }
        }
        if let Some(on_hold) = relayed_hold {
            self.agent_hold_media(now, on_hold);
        }
        match purpose {
            Purpose::Direct => self.direct_answer(now, leg, answer.as_ref().and_then(peer_media)),
            // While direct, a refreshed leg may answer from a new address: the other leg follows.
            Purpose::Refresh => {
                if let Some(d) = self.direct.as_mut() {
                    d.handle_peer_answer(now, leg, answer.as_ref().and_then(peer_media));
                }
            }
            Purpose::Refer => {}
        }
        if matches!(status, 408 | 481) {
            tracing::info!(call = %self.id, ?leg, status, "re-INVITE answered {status}: that leg is gone");
            match leg {
                Leg::Trunk => {
                    self.teardown.hangup_caller(now);
                    self.machine.handle_caller_gone(now);
                }
                Leg::Agent => self.machine.handle_agent_gone(now),
            }
        } else if purpose == Purpose::Refresh && !response.status.is_success() {
            tracing::info!(call = %self.id, ?leg, status, "session refresh refused");
        }
    }

    fn direct_answer(&mut self, now: Instant, leg: Leg, answer: Option<PeerMedia>) {
        if let Some(d) = self.direct.as_mut() {
            d.handle_answer(now, leg, answer);
        }
    }

    /// A NOTIFY of our REFER's subscription (RFC 3515 §2.4.4).
    pub(super) fn handle_refer_notify(&mut self, now: Instant, request: &Request) {
        if request
            .headers
            .get(&HeaderName::Event)
            .is_some_and(|e| !e.trim().to_ascii_lowercase().starts_with("refer"))
        {
            return;
        }
        if let Some((status, _)) = Dialog::read_refer_notify(request) {
            tracing::info!(call = %self.id, code = status.code, "transfer progress");
            self.machine.handle_refer_progress(now, status.code);
        }
    }

    /// Whether `response` is a retransmitted 2xx to one of our re-INVITEs on the trunk leg: ACK
    /// it again (§13.2.2.4).
    pub(super) async fn reack_trunk(&mut self, response: &Response) -> bool {
        let is_invite = response
            .headers
            .cseq()
            .map(|c| c.method == Method::Invite)
            .unwrap_or(false);
        let Some(trunk) = self.trunk() else {
            return false;
        };
        if !(is_invite && response.status.is_success() && trunk.matches_response(response)) {
            return false;
        }
        let cseq = response.headers.cseq().map(|c| c.seq).unwrap_or(1);
        let ack = trunk.ack(cseq);
        let target = self.ctx.sip.route(trunk).await;
        let _ = self.ctx.sip.send_ack(ack, target).await;
        true
    }
}

/// The endpoint behind a negotiated session: where it receives RTP and with what. `None` without a
/// usable address (hold, port 0, a host name).
fn peer_media(m: &MediaSession) -> Option<PeerMedia> {
    Some(PeerMedia {
        addr: m.remote_addr?,
        codec: m.codec,
        telephone_event_pt: m.telephone_event_pt,
        // `m.direction` is ours; the endpoint's is its reverse.
        direction: m.direction.reverse(),
    })
}

/// SDP on `media`'s leg describing another endpoint `p` (RFC 3725 §4.1): its address, its one codec
/// and telephone-event, its direction; our origin line. For offers and, mirrored, for answers.
pub(super) fn peer_sdp(media: &mut MediaLeg, p: PeerMedia, prefs: &MediaPreferences) -> Vec<u8> {
    let their = LocalMedia {
        addr: p.addr.ip(),
        rtp_port: p.addr.port(),
    };
    let prefs = MediaPreferences {
        codecs: vec![p.codec.kind()],
        telephone_event: p.telephone_event_pt.is_some(),
        telephone_event_pt: p.telephone_event_pt.unwrap_or(prefs.telephone_event_pt),
        ..prefs.clone()
    };
    media.sdp.offer_for(media.local, their, p.direction, &prefs)
}

/// An offer `leg` sent in a re-INVITE or UPDATE (`body` empty: none): how [`DirectMedia`] wants it
/// answered — from the relay (as outside direct media), or with the other endpoint's media (an
/// answer body from [`answer_body`]).
pub(super) fn direct_reply(
    direct: &mut Option<DirectMedia>,
    now: Instant,
    leg: Leg,
    body: &[u8],
) -> Offer {
    let Some(d) = direct.as_mut() else {
        return Offer::Relay;
    };
    let offer = if body.is_empty() {
        IncomingOffer::Late
    } else {
        match d.peer_of(leg) {
            Some(peer) => IncomingOffer::Sdp(read_offer(body, peer)),
            None => return Offer::Relay,
        }
    };
    d.handle_offer(now, leg, offer)
}

/// While direct, an SDP answer in an ACK (to the offer we made in our 2xx) says where that leg
/// receives now; returns whether it was taken here (else the relay session follows it as before).
pub(super) fn direct_ack(
    direct: &mut Option<DirectMedia>,
    now: Instant,
    leg: Leg,
    media: &MediaLeg,
    body: &[u8],
) -> bool {
    let Some(d) = direct.as_mut() else {
        return false;
    };
    if d.path() != crate::call::direct::MediaPath::Direct || body.is_empty() {
        return false;
    }
    let answer = media.sdp.handle_answer(body).ok();
    d.handle_peer_answer(now, leg, answer.as_ref().and_then(peer_media));
    true
}

/// Reads an offer against the other endpoint's codec; `None` if it lacks that codec or has more
/// than one media stream (an answer pointing elsewhere could not reject the others in place).
fn read_offer(body: &[u8], peer: PeerMedia) -> Option<Offered> {
    let session = sip::sdp::parse(body).ok()?;
    if session.medias.len() != 1 {
        return None;
    }
    let prefs = MediaPreferences {
        codecs: vec![peer.codec.kind()],
        ..MediaPreferences::default()
    };
    let m = sip::sdp::describe(body, &prefs).ok()?;
    Some(Offered {
        addr: m.remote_addr,
        codec: m.codec,
        telephone_event_pt: m.telephone_event_pt,
        direction: m.direction.reverse(),
    })
}
