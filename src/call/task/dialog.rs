//! The call task's SIP input: every request, ACK and response the manager routes to the call.
//!
//! - In-dialog requests on either leg (RFC 3261 §12.2.2): BYE (§15.1.2), re-INVITE and UPDATE
//!   (§14.2, RFC 3311 §5.2; answered with the other endpoint's media while direct, RFC 4028 §9
//!   refreshes without an offer get no answer), INFO digits (RFC 6086; `application/dtmf-relay` and
//!   `application/dtmf`), NOTIFY for our REFER (RFC 3515 §2.4.4), OPTIONS; REFER from the peer is
//!   refused (403), anything else gets 501. Requests outside both dialogs get 481.
//! - ACKs (RFC 3261 §13.3.1.4): to our 2xx to the trunk's INVITE (with the trunk's SDP
//!   answer after a late offer, RFC 3264 §4) and to our 2xx to either leg's re-INVITE.
//! - Responses to our requests: to our in-dialog requests (handed to `connect.rs`), to the
//!   agent forks (handed to `agent.rs`), retransmitted 2xx re-ACKed (RFC 3261 §13.2.2.4).

use super::connect;
use super::media::rtp_config;
use super::{AgentLeg, Call, CallerLeg, MediaLeg};
use crate::call::collect::DigitSource;
use crate::call::direct::{Leg, Offer};
use sip::dialog::Dialog;
use sip::endpoint::{ClientTxId, Event, ServerTxId};
use sip::message::{build, HeaderName, Method, Request, Response, StatusCode};
use sip::rtp::RtpSession;
use sip::sdp::Direction;
use std::time::Instant;

impl Call {
    pub(super) async fn handle_sip(&mut self, now: Instant, event: Event) {
        match event {
            Event::Request { id, request, .. } => {
                if self.trunk().is_some_and(|d| d.matches_request(&request)) {
                    self.handle_in_dialog(now, id, request, Leg::Trunk).await;
                } else if matches!(&self.agent, Some(AgentLeg::Connected { dialog, .. }) if dialog.matches_request(&request))
                {
                    self.handle_in_dialog(now, id, request, Leg::Agent).await;
                } else {
                    let _ = self
                        .ctx
                        .sip
                        .respond(
                            id,
                            build::reply(&request, 481, rand::random(), crate::PRODUCT),
                        )
                        .await;
                }
            }
            Event::Ack { request, .. } => {
                let trunk = match &mut self.caller_leg {
                    CallerLeg::Sip {
                        dialog, remote_sdp, ..
                    } if dialog.matches_request(&request) => Some((dialog, remote_sdp)),
                    _ => None,
                };
                if let Some((trunk, remote_sdp)) = trunk {
                    trunk.handle_ack(now, &request);
                    let no_rtp = crate::sync::lock(&self.media).trunk.rtp.is_none();
                    if no_rtp && !request.body.is_empty() {
                        *remote_sdp = request.body.to_vec();
                        match self.trunk_media.sdp.handle_answer(&request.body) {
                            Ok(media) => {
                                let config = rtp_config(&self.ctx.flow, trunk.peer().addr.ip());
                                crate::sync::lock(&self.media).trunk.rtp =
                                    Some(RtpSession::new(now, media, config))
                            }
                            Err(e) => {
                                tracing::info!(call = %self.id, "trunk's SDP answer in ACK unusable: {e}");
                                self.teardown.hangup_caller(now);
                                self.machine.handle_caller_gone(now);
                            }
                        }
                    } else if !connect::direct_ack(
                        &mut self.direct,
                        now,
                        Leg::Trunk,
                        &self.trunk_media,
                        &request.body,
                    ) {
                        let mut state = crate::sync::lock(&self.media);
                        ack_answer(now, &self.trunk_media, &mut state.trunk.rtp, &request.body);
                    }
                } else if let Some(AgentLeg::Connected { dialog, media }) = &mut self.agent {
                    // The agent's phone ACKs our 2xx to its re-INVITE (hold/resume): without this
                    // the dialog gives up after 64·T1 and the call loses its agent.
                    if dialog.matches_request(&request) {
                        dialog.handle_ack(now, &request);
                        if !connect::direct_ack(
                            &mut self.direct,
                            now,
                            Leg::Agent,
                            media,
                            &request.body,
                        ) {
                            let on_hold = {
                                let mut state = crate::sync::lock(&self.media);
                                match state.agent.as_mut() {
                                    Some(agent) => {
                                        ack_answer(now, media, &mut agent.rtp, &request.body)
                                    }
                                    None => None,
                                }
                            };
                            if let Some(on_hold) = on_hold {
                                self.agent_hold_media(now, on_hold);
                            }
                        }
                    }
                }
            }
            Event::Cancelled { .. } => {
                self.teardown.handle_caller_bye(now);
                self.machine.handle_caller_gone(now)
            }
            Event::Response { id, response } => self.handle_response(now, id, response).await,
            Event::Timeout { id } | Event::TransportError { id } => {
                if let sip::endpoint::TxId::Client(tx) = id {
                    if !self.handle_dialog_timeout(now, tx).await {
                        // No final response from that phone at all (AgentForks decides).
                        self.forks.handle_failure(tx);
                    }
                }
            }
        }
    }

    async fn handle_in_dialog(&mut self, now: Instant, id: ServerTxId, request: Request, leg: Leg) {
        let (dialog, media) = match leg {
            Leg::Trunk => match &mut self.caller_leg {
                CallerLeg::Sip { dialog, .. } => (dialog, &mut self.trunk_media),
                CallerLeg::Browser(_) => return,
            },
            Leg::Agent => match &mut self.agent {
                Some(AgentLeg::Connected { dialog, media }) => (dialog, media),
                _ => return,
            },
        };
        if let Err(response) = dialog.handle_request(now, &request) {
            let _ = self.ctx.sip.respond(id, response).await;
            return;
        }
        let ok = |d: &Dialog| d.response(&request, StatusCode::OK);
        match request.method {
            Method::Bye => {
                let _ = self.ctx.sip.respond(id, ok(dialog)).await;
                match leg {
                    Leg::Trunk => {
                        self.teardown.handle_caller_bye(now);
                        self.machine.handle_caller_gone(now)
                    }
                    Leg::Agent => {
                        // The agent's dialog is over: nothing to BYE or CANCEL on release.
                        self.agent = None;
                        {
                            let mut state = crate::sync::lock(&self.media);
                            state.hold.handle_agent_gone();
                            state.drive_hold();
                        }
                        self.machine.handle_agent_gone(now)
                    }
                }
            }
            Method::Update if request.body.is_empty() => {
                // A refresh without an offer gets no answer (RFC 3311 §5.2, RFC 4028 §9).
                let _ = self.ctx.sip.respond(id, ok(dialog)).await;
            }
            Method::Invite | Method::Update => {
                // Hold/unhold, session refresh, or a new media address. While direct, answered
                // with the other endpoint's media and mirrored to the other leg (direct_sync.rs).
                let mut response = ok(dialog);
                let reply = connect::direct_reply(&mut self.direct, now, leg, &request.body);
                let body = if let Offer::Peer(p) = reply {
                    connect::peer_sdp(media, p, &self.ctx.flow.media)
                } else if request.body.is_empty() {
                    media.sdp.offer(media.local, Direction::SendRecv)
                } else {
                    match media.sdp.answer(&request.body, media.local) {
                        Ok(answer) => {
                            let mut state = crate::sync::lock(&self.media);
                            if leg == Leg::Agent {
                                // Relayed: the agent's hold is ours to fill (hold.rs).
                                state.hold.handle_media(now, answer.media.on_hold);
                                state.drive_hold();
                            }
                            let rtp = match leg {
                                Leg::Trunk => Some(&mut state.trunk.rtp),
                                Leg::Agent => state.agent.as_mut().map(|a| &mut a.rtp),
                            };
                            match rtp {
                                Some(Some(rtp)) => rtp.update_media(now, answer.media),
                                Some(rtp) => {
                                    *rtp = Some(RtpSession::new(
                                        now,
                                        answer.media,
                                        rtp_config(&self.ctx.flow, dialog.peer().addr.ip()),
                                    ))
                                }
                                None => {}
                            }
                            answer.body
                        }
                        Err(e) => {
                            let status = build::status(e.sip_status());
                            let _ = self
                                .ctx
                                .sip
                                .respond(id, dialog.response(&request, status))
                                .await;
                            return;
                        }
                    }
                };
                response.set_body(Some("application/sdp"), body);
                if request.method == Method::Invite {
                    dialog.handle_sent_response(now, &response);
                    // The 2xx is resent through this INVITE's transaction until the ACK comes.
                    match leg {
                        Leg::Trunk => {
                            if let CallerLeg::Sip { invite_tx, .. } = &mut self.caller_leg {
                                *invite_tx = id;
                            }
                        }
                        Leg::Agent => self.agent_invite_tx = Some(id),
                    }
                }
                let _ = self.ctx.sip.respond(id, response).await;
            }
            Method::Info => {
                let digit = dtmf_from_info(&request);
                let status = if digit.is_some() || request.body.is_empty() {
                    StatusCode::OK
                } else {
                    build::status(415)
                };
                let _ = self
                    .ctx
                    .sip
                    .respond(id, dialog.response(&request, status))
                    .await;
                if let (Some(d), Leg::Trunk) = (digit, leg) {
                    crate::metrics::global().digit("info");
                    self.machine.handle_digit(now, DigitSource::Info, d);
                }
            }
            Method::Notify => {
                let _ = self.ctx.sip.respond(id, ok(dialog)).await;
                if leg == Leg::Trunk {
                    self.handle_refer_notify(now, &request);
                }
            }
            Method::Options => {
                let _ = self.ctx.sip.respond(id, ok(dialog)).await;
            }
            Method::Refer => {
                // Nobody transfers our calls but us.
                let _ = self
                    .ctx
                    .sip
                    .respond(id, dialog.response(&request, build::status(403)))
                    .await;
            }
            _ => {
                let _ = self
                    .ctx
                    .sip
                    .respond(id, dialog.response(&request, build::status(501)))
                    .await;
            }
        }
    }

    pub(super) async fn handle_response(
        &mut self,
        now: Instant,
        id: ClientTxId,
        response: Response,
    ) {
        if self.handle_dialog_response(now, id, &response).await
            || self.reack_trunk(&response).await
        {
            return;
        }
        // A fork's response (ringing, or one that lost or was cancelled): AgentForks decides,
        // `drive_forks` sends and acts.
        if self.forks.handle_response(now, id, &response) {
            return;
        }
        let is_invite = response
            .headers
            .cseq()
            .map(|c| c.method == Method::Invite)
            .unwrap_or(false);
        if is_invite && response.status.is_success() {
            if let Some(AgentLeg::Connected { dialog, .. }) = &mut self.agent {
                if dialog.matches_response(&response) {
                    // A retransmitted 2xx: our ACK was lost. ACK again.
                    let cseq = response.headers.cseq().map(|c| c.seq).unwrap_or(1);
                    let ack = dialog.ack(cseq);
                    let _ = self.ctx.sip.send_ack(ack, dialog.peer()).await;
                }
            }
        }
    }
}

/// An SDP body in the ACK of a re-INVITE that had none is the answer to the offer we made in our 2xx
/// (RFC 3264 §4, RFC 3261 §13.2.1): the peer may have moved its RTP, or put the call on hold.
/// Other ACKs carry no body. Returns whether the answer holds (`None`: no usable answer).
fn ack_answer(
    now: Instant,
    leg: &MediaLeg,
    rtp: &mut Option<RtpSession>,
    body: &[u8],
) -> Option<bool> {
    if body.is_empty() {
        return None;
    }
    let media = leg.sdp.handle_answer(body).ok()?;
    let on_hold = media.on_hold;
    rtp.as_mut()?.update_media(now, media);
    Some(on_hold)
}

/// The digit of an INFO: `application/dtmf-relay` (`Signal=5`) or `application/dtmf` (`5`).
pub fn dtmf_from_info(request: &Request) -> Option<char> {
    let content_type = request
        .headers
        .get(&HeaderName::ContentType)?
        .to_ascii_lowercase();
    let body = std::str::from_utf8(&request.body).ok()?;
    let value = if content_type.starts_with("application/dtmf-relay") {
        body.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("signal")
                .then(|| v.trim().to_owned())
        })?
    } else if content_type.starts_with("application/dtmf") {
        body.trim().to_owned()
    } else {
        return None;
    };
    let mut chars = value.chars();
    let c = chars.next()?.to_ascii_uppercase();
    if chars.next().is_some() {
        // "10" and "11" are RFC 2833 codes for * and # in some trunks' dtmf-relay bodies.
        return match value.as_str() {
            "10" => Some('*'),
            "11" => Some('#'),
            _ => None,
        };
    }
    matches!(c, '0'..='9' | '*' | '#' | 'A'..='D').then_some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(content_type: &str, body: &str) -> Request {
        let raw = format!(
            "INFO sip:vb@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n\
             From: <sip:a@b>;tag=1\r\nTo: <sip:x@y>;tag=2\r\nCall-ID: c1\r\nCSeq: 2 INFO\r\n\
             Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        Request::parse(raw.into_bytes()).unwrap()
    }

    #[test]
    fn info_digits_in_both_trunk_formats() {
        assert_eq!(
            dtmf_from_info(&info(
                "application/dtmf-relay",
                "Signal=5\r\nDuration=160\r\n"
            )),
            Some('5')
        );
        assert_eq!(
            dtmf_from_info(&info(
                "application/dtmf-relay",
                "Signal= #\r\nDuration=100\r\n"
            )),
            Some('#')
        );
        assert_eq!(
            dtmf_from_info(&info("application/dtmf-relay", "Signal=11\r\n")),
            Some('#')
        );
        assert_eq!(dtmf_from_info(&info("application/dtmf", "7")), Some('7'));
        assert_eq!(dtmf_from_info(&info("application/dtmf", "x")), None);
        assert_eq!(dtmf_from_info(&info("text/plain", "5")), None);
    }
}
