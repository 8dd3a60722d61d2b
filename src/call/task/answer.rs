//! The call task's first step: answering the trunk's INVITE at once, before any code is read.
//!
//! Binds the trunk leg's RTP port, answers the trunk's SDP offer or makes our own when the INVITE
//! had none (late offer, RFC 3264 §5 / RFC 3261 §13.2.1), honours the trunk's session timer (RFC
//! 4028 §9, 422 when too small), sends the 200 OK (RFC 3261 §13.3.1.4) and builds the UAS dialog
//! (§12.1.1) and the [`Call`]. Errors answer the INVITE instead: 503 with Retry-After when no RTP
//! port is free, 488 (with a Warning) when no codec is shared, 400/500 for unusable INVITEs. Also
//! reads the caller's number (P-Asserted-Identity, RFC 3325 §9.1, else From) into a [`Pii`].

use super::media::Signal;
use super::media::{bind_media, media_ip, rtp_config};
use super::{uri_number, Call, CallTaskContext, CallerLeg, MediaLeg};
use crate::call::agent_forks::AgentForks;
use crate::call::machine::CallMachine;
use crate::call::teardown::Teardown;
use crate::call::CallId;
use crate::pii::Pii;
use crate::tenant::Tenant;
use sip::dialog::Dialog;
use sip::endpoint::{ServerTxId, Source, Target};
use sip::message::{build, HeaderName, NameAddr, Request, Uri};
use sip::rtp::RtpSession;
use sip::sdp::{Direction, LocalMedia, LocalSdp};
use sip::transaction::Transport;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// Answers the trunk's INVITE at once with our SDP; `None` when the call could not be taken (the
/// INVITE was answered with an error).
pub(super) async fn answer(
    ctx: &Arc<CallTaskContext>,
    now: Instant,
    id: CallId,
    tenant: Tenant,
    tx: ServerTxId,
    invite: &Request,
    source: Source,
) -> Option<Call> {
    let reject = |status: u16| build::reply(invite, status, rand::random(), crate::PRODUCT);
    let media_ip = media_ip(&ctx.flow, source.local);
    let media = match bind_media(&ctx.ports, media_ip).await {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(call = %id, "no RTP port for a new call: {e}; 503");
            let mut resp = reject(503);
            resp.headers
                .push(HeaderName::RetryAfter, ctx.flow.retry_after.to_string());
            let _ = ctx.sip.respond(tx, resp).await;
            return None;
        }
    };
    let (socket, lease) = media;
    let local = LocalMedia {
        addr: media_ip,
        rtp_port: lease.rtp_port(),
    };
    let mut sdp = LocalSdp::new(rand::random(), ctx.flow.media.clone());
    if ctx.flow.trunk_srtp && sip::sdp::offers_srtp(&invite.body) {
        // An SBC interconnect that encrypts: a fresh key for our direction, never logged.
        sdp = sdp.with_srtp(sip::sdp::SrtpKey::from_bytes(rand::random()));
    }
    let (body, negotiated) = if invite.body.is_empty() {
        // Late offer: we offer in the 200, the trunk answers in the ACK.
        (sdp.offer(local, Direction::SendRecv), None)
    } else {
        match sdp.answer(&invite.body, local) {
            Ok(answer) => (answer.body, Some(answer.media)),
            Err(e) => {
                tracing::info!(call = %id, "cannot agree on media with the trunk: {e}");
                let mut resp = reject(e.sip_status());
                if e.sip_status() == 488 {
                    resp.headers.push(
                        HeaderName::parse("Warning"),
                        "304 veilig-bellen \"Media type not available\"",
                    );
                }
                let _ = ctx.sip.respond(tx, resp).await;
                return None;
            }
        }
    };
    let contact = match contact_for(source, ctx.flow.contact_host.as_deref()) {
        Some(c) => c,
        None => {
            let _ = ctx.sip.respond(tx, reject(500)).await;
            return None;
        }
    };
    // RFC 4028: honour the trunk's session timer; we refresh when it leaves that to us.
    let session_timer = sip::dialog::session_timer::answer_request(&Default::default(), invite);
    if let Some(too_small) = session_timer.reject(invite) {
        let _ = ctx.sip.respond(tx, too_small).await;
        return None;
    }
    let mut ok = build::reply(invite, 200, rand::random(), crate::PRODUCT);
    session_timer.apply(&mut ok);
    ok.headers.push(HeaderName::Contact, contact.to_string());
    ok.headers.push(
        HeaderName::Allow,
        "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY",
    );
    ok.headers.push(HeaderName::Supported, "timer, replaces");
    ok.set_body(Some("application/sdp"), body);
    let peer = Target {
        transport: source.transport,
        addr: source.remote,
    };
    let mut dialog = match Dialog::uas(invite, &ok, contact, peer, ctx.flow.sip_timers) {
        Ok(d) => d,
        Err(e) => {
            tracing::info!(call = %id, "INVITE unusable for a dialog: {e}; 400");
            let _ = ctx.sip.respond(tx, reject(400)).await;
            return None;
        }
    };
    if ctx.sip.respond(tx, ok.clone()).await.is_err() {
        return None;
    }
    dialog.handle_sent_response(now, &ok);
    let rtp = negotiated.map(|m| RtpSession::new(now, m, rtp_config(&ctx.flow, peer.addr.ip())));
    let caller = caller_of(invite, ctx.flow.is_trunk(source.remote.ip()));
    tracing::info!(call = %id, tenant = %tenant.id, "answered a call");
    let machine = CallMachine::new(tenant.timeouts.apply(&ctx.flow.call), now);
    let greeting = greeting(&tenant);
    let (media, media_io, media_events) =
        super::start_media(ctx, id, &tenant, socket, lease, |m| {
            m.trunk.rtp = rtp;
            m.inband.start();
            // The tenant's greeting once, else silence, while the code comes in: trunks hang up
            // answered calls that send no RTP, and the caller's NAT binding stays open.
            m.play(now, greeting);
        });
    Some(Call {
        id,
        ctx: ctx.clone(),
        tenant,
        caller,
        since: SystemTime::now(),
        machine,
        agent_invite_tx: None,
        caller_leg: CallerLeg::Sip {
            dialog,
            invite_tx: tx,
            remote_sdp: invite.body.to_vec(),
        },
        agent_media_ip: local.addr,
        trunk_media: MediaLeg { local, sdp },
        media,
        media_io,
        media_events,
        agent: None,
        forks: AgentForks::new(ctx.flow.sip_timers),
        agent_legs_made: 0,
        lookup: None,
        teardown: Teardown::new(),
        sip_local: source.local,
        store_key: crate::call::config::store_key(id, &ctx.instance),
        direct: None,
        pending: Vec::new(),
    })
}

/// Our Contact for the trunk dialog: the address the INVITE reached, with `;transport=tcp|tls`
/// when the dialog runs over it (RFC 3261 §8.1.1.8, §19.1.4): without it the trunk or its SBC would
/// send its BYE to us over UDP.
fn contact_for(source: Source, advertise: Option<&str>) -> Option<NameAddr> {
    let local: SocketAddr = source.local;
    let host = advertise.map_or_else(|| sip::endpoint::host_text(local.ip()), str::to_owned);
    let uri = Uri::sip(Some("veilig-bellen"), &host, Some(local.port())).ok()?;
    let uri = match source.transport {
        Transport::Udp => uri,
        Transport::Tcp => uri.with_param("transport", Some("tcp")).ok()?,
        Transport::Tls => uri.with_param("transport", Some("tls")).ok()?,
    };
    Some(NameAddr::new(uri))
}

/// The calling number: from a trunk, P-Asserted-Identity (RFC 3325 §9.1) or else Remote-Party-ID
/// (`party=calling`, the draft many SBCs still send) when present; else, and always from any other
/// source, the From URI's user part. Identity headers are only believed from the trunks that
/// assert them (RFC 3325 §2.3: a trust domain).
fn caller_of(invite: &Request, from_trunk: bool) -> Pii<String> {
    let asserted = from_trunk.then(|| asserted_identity(invite)).flatten();
    let from_from = invite.headers.from().ok().and_then(|f| uri_number(&f.uri));
    Pii::new(
        asserted
            .or(from_from)
            .unwrap_or_else(|| "anonymous".to_owned()),
    )
}

/// The number in P-Asserted-Identity, else in a calling-party Remote-Party-ID.
fn asserted_identity(invite: &Request) -> Option<String> {
    let pai = invite
        .headers
        .p_asserted_identity()
        .filter_map(Result::ok)
        .find_map(|na| uri_number(&na.uri));
    if pai.is_some() {
        return pai;
    }
    let rpid = HeaderName::parse("Remote-Party-ID");
    let calling = invite
        .headers
        .routes(&rpid)
        .filter_map(Result::ok)
        .filter(|na| {
            na.params
                .value("party")
                .is_none_or(|v| v.eq_ignore_ascii_case("calling"))
        })
        .find_map(|na| uri_number(&na.uri));
    calling
}

/// What the caller hears while the code comes in: the tenant's greeting once (then silence), or
/// silence.
fn greeting(tenant: &Tenant) -> Signal {
    match &tenant.prompts.greeting {
        Some(samples) => match dsp::tone::LoopedPrompt::new(samples.clone()) {
            // Once, then a gap longer than any code entry may take.
            Ok(p) => Signal::Prompt(p.with_gap(GREETING_GAP)),
            Err(_) => Signal::Silence,
        },
        None => Signal::Silence,
    }
}

/// Silence after the greeting: 30 minutes of samples, longer than collecting a code may last.
const GREETING_GAP: usize = 30 * 60 * 8000;

#[cfg(test)]
mod tests {
    use super::*;

    fn invite(extra: &str) -> Request {
        let raw = format!(
            "INVITE sip:+31850000000@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\n\
             From: <sip:+31600000001@192.0.2.1>;tag=1\r\nTo: <sip:+31850000000@127.0.0.1>\r\n\
             Call-ID: c1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        Request::parse(raw.into_bytes()).unwrap()
    }

    #[test]
    fn identity_headers_count_only_from_trunks() {
        let pai = invite("P-Asserted-Identity: <tel:+31612345678>\r\n");
        assert_eq!(caller_of(&pai, true).expose(), "+31612345678");
        assert_eq!(
            caller_of(&pai, false).expose(),
            "+31600000001",
            "a stranger's P-Asserted-Identity is not believed"
        );
        let rpid = invite(
            "Remote-Party-ID: \"Jan\" <sip:+31612345679@192.0.2.1>;party=calling;screen=yes\r\n",
        );
        assert_eq!(caller_of(&rpid, true).expose(), "+31612345679");
        assert_eq!(caller_of(&rpid, false).expose(), "+31600000001");
        let called = invite("Remote-Party-ID: <sip:+31612345670@192.0.2.1>;party=called\r\n");
        assert_eq!(caller_of(&called, true).expose(), "+31600000001");
        let both = invite(
            "Remote-Party-ID: <sip:+31612345679@h>\r\nP-Asserted-Identity: <sip:+31612345678@h>\r\n",
        );
        assert_eq!(caller_of(&both, true).expose(), "+31612345678", "PAI first");
        assert_eq!(caller_of(&invite(""), true).expose(), "+31600000001");
    }
}
