//! SIP dialogs (RFC 3261 §12–§15): state, route set, CSeq, remote target, in-dialog requests,
//! re-INVITE glare (§14), 2xx retransmission until ACK (§13.3.1.4), session timers (RFC 4028),
//! REFER/NOTIFY (RFC 3515).
//!
//! A [`Dialog`] is one side's view. It never talks to the network: it builds requests the caller
//! sends with [`crate::endpoint::Endpoint::send_request`] (or `send_ack`) to [`Dialog::peer`], and it
//! reads the requests and responses the endpoint hands up. Its own timers (2xx retransmission,
//! glare retry, session refresh/expiry) follow the usual verbs:
//!
//! * `handle_request(now, &req)` / `handle_ack(now, &ack)` / `handle_response(now, &resp, random)` /
//!   `handle_sent_response(now, &resp)` / `handle_timeout(now)`;
//! * `poll_event()` → [`DialogEvent`] (retransmit this 2xx, ACK never came, retry the re-INVITE,
//!   refresh the session, session expired);
//! * `poll_timeout()`.
//!
//! Polling order: after each `handle_*` call drain `poll_event()`, then read `poll_timeout()`.
//!
//! Where in-dialog requests go is [`Dialog::next_hop`]: the first entry of the route set, else the
//! remote target (§12.2.1.1, §8.1.2), read by [`crate::routing::NextHop`]. [`Dialog::peer`] is the
//! transport address the dialog was set up with (the flow): the owner sends there when it does not
//! route (an agent's phone stays on the flow it registered from), and [`NextHop::literal_target`]
//! reuses it only for a hop at that very address.
//!
//! A complete user agent built from [`crate::endpoint::Endpoint`] and [`Dialog`] — answering an
//! INVITE, ACKing 2xx, retransmitting 2xx, glare retry, session refresh, REFER/NOTIFY — is the
//! `Phone` in `sip/tests/dialogs.rs`; the call flow follows the same pattern:
//!
//! * UAS: on `Event::Request` (INVITE) build the 2xx (with
//!   [`session_timer::answer_request`] applied, or its 422), `Dialog::uas`, `Endpoint::respond`,
//!   then `handle_sent_response`; on `Event::Ack` call `handle_ack`; on
//!   [`DialogEvent::Retransmit2xx`] respond again on the same server transaction.
//! * UAC: on a 2xx `Event::Response`, `Dialog::uac` (or `handle_response` when it exists), then
//!   `Endpoint::send_ack(dialog.ack(cseq))` — for every 2xx, retransmissions included.
//! * In-dialog requests: `handle_request` → `Err(response)` to send as is, or `Ok` and answer with
//!   `dialog.response(..)` + `handle_sent_response`.

pub mod ack_wait;
pub mod glare;
pub mod refer;
pub mod session_timer;

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

use crate::endpoint::Target;
use crate::message::{
    CSeq, DialogId, HeaderError, HeaderName, Method, NameAddr, Request, Response, StatusCode, Uri,
};
use crate::routing::{NextHop, RouteError};
use crate::transaction::TimerConfig;
use ack_wait::{AckWait, AckWaitEvent};
use refer::{SipFragStatus, SubscriptionState, SIPFRAG_CONTENT_TYPE};
use session_timer::{negotiate_uac, Refresher, SessionInterval, SessionTimer, SessionTimerEvent};

/// Dialog states (§12). Terminated is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogState {
    Early,
    Confirmed,
    Terminated,
}

/// Which side of the dialog-creating INVITE we were.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Uac,
    Uas,
}

/// What the dialog asks of its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialogEvent {
    /// Send this 2xx again on its INVITE server transaction (§13.3.1.4).
    Retransmit2xx(Response),
    /// No ACK for our 2xx within 64·T1: send BYE (§13.3.1.4).
    AckTimeout,
    /// The glare back-off after a 491 ran out: send the re-INVITE (or UPDATE) again (§14.1).
    RetryOffer,
    /// We are the session refresher and half the interval passed: send a re-INVITE or UPDATE.
    SessionRefreshDue,
    /// The session interval passed without a refresh: send BYE (RFC 4028 §10).
    SessionExpired,
}

/// Why a dialog could not be created or a request built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialogError {
    #[error(transparent)]
    Header(#[from] HeaderError),
    #[error("the message has no Contact to use as remote target")]
    NoContact,
    #[error("the response has no To tag")]
    NoTag,
    #[error("an INVITE or UPDATE is already in progress on this dialog")]
    OfferPending,
    #[error("the dialog is terminated")]
    Terminated,
}

/// One dialog.
#[derive(Debug, Clone)]
pub struct Dialog {
    id: DialogId,
    role: Role,
    state: DialogState,
    local: NameAddr,
    remote: NameAddr,
    remote_target: Uri,
    route_set: Vec<NameAddr>,
    local_contact: NameAddr,
    local_seq: u32,
    remote_seq: Option<u32>,
    peer: Target,
    timers: TimerConfig,
    /// Our re-INVITE or UPDATE awaiting its final response.
    outgoing_offer: Option<Method>,
    /// A re-INVITE we received and have not answered finally.
    incoming_invite: bool,
    ack_wait: Option<(u32, AckWait, Response)>,
    session: Option<SessionTimer>,
    offer_retry_at: Option<Instant>,
    events: VecDeque<DialogEvent>,
}

impl Dialog {
    /// The UAS side (§12.1.1), from the INVITE received from `peer` and the 1xx/2xx with our To
    /// tag we are sending. For a 2xx call [`handle_sent_response`](Self::handle_sent_response) too
    /// when it is sent, to start the retransmissions.
    pub fn uas(
        request: &Request,
        response: &Response,
        local_contact: NameAddr,
        peer: Target,
        timers: TimerConfig,
    ) -> Result<Dialog, DialogError> {
        let local = response.headers.to()?;
        let local_tag = local.tag().ok_or(DialogError::NoTag)?.to_owned();
        let remote = request.headers.from()?;
        let id = DialogId::new(
            request.headers.call_id()?,
            &local_tag,
            remote.tag().unwrap_or(""),
        );
        let remote_target = contact_uri(request)?;
        let route_set = request
            .headers
            .routes(&HeaderName::RecordRoute)
            .collect::<Result<Vec<_>, _>>()?;
        let remote_seq = request.headers.cseq()?.seq;
        Ok(Dialog {
            id,
            role: Role::Uas,
            state: state_for(response),
            local,
            remote,
            remote_target,
            route_set,
            local_contact,
            local_seq: 0,
            remote_seq: Some(remote_seq),
            peer,
            timers,
            outgoing_offer: None,
            incoming_invite: false,
            ack_wait: None,
            session: None,
            offer_retry_at: None,
            events: VecDeque::new(),
        })
    }

    /// The UAC side (§12.1.2), from the INVITE we sent to `peer` and a 1xx/2xx with a To tag. The
    /// route set is the response's Record-Route reversed.
    pub fn uac(
        now: Instant,
        request: &Request,
        response: &Response,
        peer: Target,
        timers: TimerConfig,
    ) -> Result<Dialog, DialogError> {
        let local = request.headers.from()?;
        let remote = response.headers.to()?;
        let remote_tag = remote.tag().ok_or(DialogError::NoTag)?.to_owned();
        let id = DialogId::new(
            request.headers.call_id()?,
            local.tag().unwrap_or(""),
            &remote_tag,
        );
        let remote_target = response_contact_uri(response)?;
        let mut route_set = response
            .headers
            .routes(&HeaderName::RecordRoute)
            .collect::<Result<Vec<_>, _>>()?;
        route_set.reverse();
        let local_contact = match request.headers.contact() {
            Ok(c) => c.addr().cloned().ok_or(DialogError::NoContact)?,
            Err(_) => return Err(DialogError::NoContact),
        };
        let mut dialog = Dialog {
            id,
            role: Role::Uac,
            state: state_for(response),
            local,
            remote,
            remote_target,
            route_set,
            local_contact,
            local_seq: request.headers.cseq()?.seq,
            remote_seq: None,
            peer,
            timers,
            outgoing_offer: None,
            incoming_invite: false,
            ack_wait: None,
            session: None,
            offer_retry_at: None,
            events: VecDeque::new(),
        };
        if response.status.is_success() {
            dialog.start_session_from_2xx(now, response, true);
        }
        Ok(dialog)
    }

    pub fn id(&self) -> &DialogId {
        &self.id
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn state(&self) -> DialogState {
        self.state
    }

    /// The transport address the dialog was set up with: where its first request came from (UAS)
    /// or went to (UAC).
    pub fn peer(&self) -> Target {
        self.peer
    }

    /// Where the next in-dialog request goes (§12.2.1.1, §8.1.2): the first route of the route set,
    /// else the remote target. Resolve it with [`NextHop::literal_target`] (passing
    /// [`peer`](Self::peer) as the flow) or, for a host name, by RFC 3263.
    pub fn next_hop(&self) -> Result<NextHop, RouteError> {
        NextHop::for_route(&self.route_set, &self.remote_target)
    }

    pub fn remote_target(&self) -> &Uri {
        &self.remote_target
    }

    pub fn route_set(&self) -> &[NameAddr] {
        &self.route_set
    }

    pub fn local_seq(&self) -> u32 {
        self.local_seq
    }

    pub fn remote_seq(&self) -> Option<u32> {
        self.remote_seq
    }

    /// The running session timer, if one was negotiated.
    pub fn session_timer(&self) -> Option<&SessionTimer> {
        self.session.as_ref()
    }

    /// Whether `request` (received) belongs to this dialog (Call-ID, To tag = ours, From tag = theirs).
    pub fn matches_request(&self, request: &Request) -> bool {
        DialogId::for_uas(request).ok().flatten().as_ref() == Some(&self.id)
    }

    /// Whether `response` (received) belongs to this dialog.
    pub fn matches_response(&self, response: &Response) -> bool {
        DialogId::for_uac(response).ok().flatten().as_ref() == Some(&self.id)
    }

    /// Ends the dialog from outside its messages (the INVITE was cancelled — the endpoint sent the
    /// 487 — or the owner gave up). Stops every dialog timer.
    pub fn terminate(&mut self) {
        self.state = DialogState::Terminated;
        self.ack_wait = None;
        self.session = None;
        self.offer_retry_at = None;
    }

    // ---- received requests -------------------------------------------------------------------

    /// An in-dialog request arrived (§12.2.2). `Err` holds the response to send instead of
    /// processing it: 500 for a CSeq lower than the last one, 491 for a re-INVITE/UPDATE while ours
    /// is pending (glare, §14.2), 500 + Retry-After for a second re-INVITE while one is unanswered.
    /// ACK goes to [`handle_ack`](Self::handle_ack) instead.
    #[allow(clippy::result_large_err)]
    pub fn handle_request(&mut self, now: Instant, request: &Request) -> Result<(), Response> {
        if request.method == Method::Ack {
            self.handle_ack(now, request);
            return Ok(());
        }
        let seq = request.headers.cseq().map(|c| c.seq).unwrap_or(0);
        if request.method != Method::Cancel {
            if self.remote_seq.is_some_and(|last| seq < last) {
                return Err(reject(
                    request,
                    StatusCode::SERVER_INTERNAL_ERROR,
                    Some("CSeq out of order"),
                ));
            }
            self.remote_seq = Some(seq);
        }
        if self.state == DialogState::Terminated {
            return Err(reject(
                request,
                StatusCode::CALL_TRANSACTION_DOES_NOT_EXIST,
                None,
            ));
        }
        match request.method {
            Method::Invite | Method::Update => {
                if self.outgoing_offer.is_some() {
                    return Err(reject(request, StatusCode::REQUEST_PENDING, None));
                }
                if request.method == Method::Invite {
                    if self.incoming_invite {
                        let mut r = reject(request, StatusCode::SERVER_INTERNAL_ERROR, None);
                        r.headers.push(HeaderName::RetryAfter, "1");
                        return Err(r);
                    }
                    self.incoming_invite = true;
                }
                if let Ok(uri) = contact_uri(request) {
                    self.remote_target = uri;
                }
            }
            Method::Bye => self.state = DialogState::Terminated,
            _ => {}
        }
        Ok(())
    }

    /// An ACK arrived: if it acknowledges our pending 2xx, stop retransmitting. Returns whether it did.
    pub fn handle_ack(&mut self, _now: Instant, ack: &Request) -> bool {
        let seq = ack.headers.cseq().map(|c| c.seq).ok();
        match &mut self.ack_wait {
            Some((invite_seq, wait, _)) if Some(*invite_seq) == seq => {
                wait.handle_ack();
                self.ack_wait = None;
                if self.state == DialogState::Early {
                    self.state = DialogState::Confirmed;
                }
                true
            }
            _ => false,
        }
    }

    /// We sent `response` to an in-dialog (or the dialog-creating) request. A 2xx to INVITE starts
    /// its retransmission until ACK; a 2xx to INVITE/UPDATE carrying Session-Expires (re)starts the
    /// session timer (we refresh when `refresher=uas`); a 2xx to BYE ends the dialog.
    pub fn handle_sent_response(&mut self, now: Instant, response: &Response) {
        let Ok(cseq) = response.headers.cseq() else {
            return;
        };
        let status = response.status;
        match cseq.method {
            Method::Invite if status.is_final() => {
                self.incoming_invite = false;
                if status.is_success() {
                    if self.state == DialogState::Early {
                        self.state = DialogState::Confirmed;
                    }
                    let wait = AckWait::new(now, self.timers);
                    self.ack_wait = Some((cseq.seq, wait, response.clone()));
                    self.start_session_from_2xx(now, response, false);
                } else if self.state == DialogState::Early {
                    self.state = DialogState::Terminated;
                }
            }
            Method::Update if status.is_success() => {
                self.start_session_from_2xx(now, response, false);
            }
            Method::Bye if status.is_final() => self.state = DialogState::Terminated,
            _ => {}
        }
    }

    // ---- received responses ------------------------------------------------------------------

    /// A response to a request we sent on this dialog. `random` is any random number; it picks the
    /// glare back-off when the response is 491 (§14.1).
    pub fn handle_response(&mut self, now: Instant, response: &Response, random: u32) {
        let Ok(cseq) = response.headers.cseq() else {
            return;
        };
        let status = response.status.as_u16();
        match cseq.method {
            Method::Invite | Method::Update => {
                if (100..200).contains(&status) {
                    if self.state == DialogState::Early {
                        if let Ok(uri) = response_contact_uri(response) {
                            self.remote_target = uri;
                        }
                    }
                    return;
                }
                self.outgoing_offer = None;
                match status {
                    200..=299 => {
                        if self.state == DialogState::Early && self.role == Role::Uac {
                            let mut routes: Vec<NameAddr> = response
                                .headers
                                .routes(&HeaderName::RecordRoute)
                                .filter_map(Result::ok)
                                .collect();
                            routes.reverse();
                            self.route_set = routes;
                        }
                        if self.state == DialogState::Early {
                            self.state = DialogState::Confirmed;
                        }
                        if let Ok(uri) = response_contact_uri(response) {
                            self.remote_target = uri;
                        }
                        self.start_session_from_2xx(now, response, true);
                    }
                    491 => {
                        let delay = glare::retry_delay(self.role == Role::Uac, random);
                        self.offer_retry_at = Some(now + delay);
                    }
                    481 | 408 => self.state = DialogState::Terminated,
                    _ if self.state == DialogState::Early && cseq.method == Method::Invite => {
                        self.state = DialogState::Terminated;
                    }
                    _ => {}
                }
            }
            Method::Bye if status >= 200 => self.state = DialogState::Terminated,
            _ if status == 481 || status == 408 => self.state = DialogState::Terminated,
            _ => {}
        }
    }

    // ---- timers ------------------------------------------------------------------------------

    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.ack_wait
                .as_ref()
                .and_then(|(_, w, _)| w.poll_timeout()),
            self.session.as_ref().and_then(SessionTimer::poll_timeout),
            self.offer_retry_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some((_, wait, response)) = &mut self.ack_wait {
            while let Some(ev) = wait.handle_timeout(now) {
                match ev {
                    AckWaitEvent::Retransmit => self
                        .events
                        .push_back(DialogEvent::Retransmit2xx(response.clone())),
                    AckWaitEvent::GaveUp => self.events.push_back(DialogEvent::AckTimeout),
                }
            }
            if wait.is_done() {
                self.ack_wait = None;
            }
        }
        if let Some(session) = &mut self.session {
            while let Some(ev) = session.handle_timeout(now) {
                self.events.push_back(match ev {
                    SessionTimerEvent::RefreshDue => DialogEvent::SessionRefreshDue,
                    SessionTimerEvent::Expired => DialogEvent::SessionExpired,
                });
            }
        }
        if self.offer_retry_at.is_some_and(|at| at <= now) {
            self.offer_retry_at = None;
            self.events.push_back(DialogEvent::RetryOffer);
        }
    }

    pub fn poll_event(&mut self) -> Option<DialogEvent> {
        self.events.pop_front()
    }

    // ---- building requests -------------------------------------------------------------------

    /// A new in-dialog request (§12.2.1.1): Request-URI = remote target (or the first route when it
    /// is a strict router), To/From with tags, Call-ID, next local CSeq, Route = route set, and our
    /// Contact for target-refresh and subscription methods. The endpoint adds Via and Max-Forwards.
    pub fn request(&mut self, method: Method) -> Result<Request, DialogError> {
        if self.state == DialogState::Terminated {
            return Err(DialogError::Terminated);
        }
        self.local_seq = self.local_seq.wrapping_add(1).max(1);
        Ok(self.build(method, self.local_seq))
    }

    /// The ACK for a 2xx to the INVITE with CSeq `invite_seq` (§13.2.2.4); send with
    /// [`crate::endpoint::Endpoint::send_ack`], again for every retransmitted 2xx.
    pub fn ack(&self, invite_seq: u32) -> Request {
        self.build(Method::Ack, invite_seq)
    }

    /// BYE.
    pub fn bye(&mut self) -> Result<Request, DialogError> {
        self.request(Method::Bye)
    }

    /// A re-INVITE with an optional body (e.g. SDP). Refused while any INVITE or UPDATE is pending
    /// on the dialog (§14.1).
    pub fn reinvite(&mut self, body: Option<(&str, Bytes)>) -> Result<Request, DialogError> {
        self.offer(Method::Invite, body)
    }

    /// An UPDATE (RFC 3311) with an optional body; same pending rule as re-INVITE.
    pub fn update(&mut self, body: Option<(&str, Bytes)>) -> Result<Request, DialogError> {
        self.offer(Method::Update, body)
    }

    /// An INFO carrying `body` of `content_type` (e.g. `application/dtmf-relay`).
    pub fn info(&mut self, content_type: &str, body: Bytes) -> Result<Request, DialogError> {
        let mut req = self.request(Method::Info)?;
        req.set_body(Some(content_type), body);
        Ok(req)
    }

    /// A REFER (RFC 3515) asking the peer to call `refer_to` (a name-addr or URI).
    pub fn refer(&mut self, refer_to: &str) -> Result<Request, DialogError> {
        let mut req = self.request(Method::Refer)?;
        req.headers
            .push(HeaderName::ReferTo, refer_to.replace(['\r', '\n'], ""));
        Ok(req)
    }

    /// A NOTIFY reporting REFER progress (RFC 3515 §2.4.4): `status` in a message/sipfrag body;
    /// the subscription ends with a final status.
    pub fn notify_refer(&mut self, status: &SipFragStatus) -> Result<Request, DialogError> {
        let mut req = self.request(Method::Notify)?;
        req.headers.push(HeaderName::Event, "refer");
        let state = if status.is_final() {
            SubscriptionState::Terminated {
                reason: Some("noresource".into()),
            }
        } else {
            SubscriptionState::Active { expires: Some(60) }
        };
        req.headers
            .push(HeaderName::SubscriptionState, state.to_string());
        req.set_body(Some(SIPFRAG_CONTENT_TYPE), Bytes::from(status.to_body()));
        Ok(req)
    }

    /// Reads a REFER progress NOTIFY: the sipfrag status and whether the subscription ended.
    pub fn read_refer_notify(request: &Request) -> Option<(SipFragStatus, bool)> {
        let status = SipFragStatus::parse(&request.body)?;
        let terminated = request
            .headers
            .get(&HeaderName::SubscriptionState)
            .and_then(|v| SubscriptionState::parse(v))
            .is_some_and(|s| matches!(s, SubscriptionState::Terminated { .. }));
        Some((status, terminated))
    }

    /// A response to an in-dialog `request` (To already carries our tag).
    pub fn response(&self, request: &Request, status: StatusCode) -> Response {
        let mut r = Response::for_request(request, status, None);
        if status.is_success() && matches!(request.method, Method::Invite | Method::Update) {
            r.headers
                .push(HeaderName::Contact, self.local_contact.to_string());
        }
        r
    }

    fn offer(
        &mut self,
        method: Method,
        body: Option<(&str, Bytes)>,
    ) -> Result<Request, DialogError> {
        if self.outgoing_offer.is_some() || self.incoming_invite {
            return Err(DialogError::OfferPending);
        }
        let mut req = self.request(method.clone())?;
        if let Some((content_type, body)) = body {
            req.set_body(Some(content_type), body);
        }
        if let Some(session) = &self.session {
            // Refreshing the session: ask to stay refresher (RFC 4028 §7.4).
            let interval = SessionInterval {
                interval: u32::try_from(session.interval_secs()).unwrap_or(u32::MAX),
                refresher: Some(if session.we_refresh() {
                    Refresher::Uac
                } else {
                    Refresher::Uas
                }),
            };
            req.headers
                .push(HeaderName::SessionExpires, interval.to_string());
            req.headers.push(HeaderName::Supported, "timer");
        }
        self.outgoing_offer = Some(method);
        Ok(req)
    }

    fn build(&self, method: Method, seq: u32) -> Request {
        // §12.2.1.1: loose routing unless the first route lacks `lr` (strict router).
        let strict = self
            .route_set
            .first()
            .is_some_and(|r| !r.uri.params().has("lr"));
        let (uri, routes): (Uri, Vec<String>) = if strict {
            // Indexing is safe: `strict` implies the route set has a first element.
            let mut routes: Vec<String> =
                self.route_set[1..].iter().map(|r| r.to_string()).collect();
            routes.push(format!("<{}>", self.remote_target));
            (self.route_set[0].uri.clone(), routes)
        } else {
            (
                self.remote_target.clone(),
                self.route_set.iter().map(|r| r.to_string()).collect(),
            )
        };
        let mut req = Request::new(method.clone(), uri);
        req.headers.push(HeaderName::From, self.local.to_string());
        req.headers.push(HeaderName::To, self.remote.to_string());
        req.headers
            .push(HeaderName::CallId, self.id.call_id.clone());
        req.headers.push(
            HeaderName::CSeq,
            CSeq {
                seq,
                method: method.clone(),
            }
            .to_string(),
        );
        for route in routes {
            req.headers.push(HeaderName::Route, route);
        }
        if matches!(
            method,
            Method::Invite | Method::Update | Method::Refer | Method::Notify | Method::Subscribe
        ) {
            req.headers
                .push(HeaderName::Contact, self.local_contact.to_string());
        }
        req
    }

    /// (Re)starts the session timer from a 2xx's Session-Expires. `we_sent_request`: the refresher
    /// `uac` means us when we sent the request. No Session-Expires: no session timer.
    fn start_session_from_2xx(&mut self, now: Instant, response: &Response, we_sent_request: bool) {
        let se = response
            .headers
            .session_expires()
            .and_then(Result::ok)
            .map(|se| SessionInterval::from_header(&se));
        let Some((interval, uac_refreshes)) = negotiate_uac(se) else {
            self.session = None;
            return;
        };
        let we_refresh = uac_refreshes == we_sent_request;
        match &mut self.session {
            Some(s) => s.handle_refresh(now, interval, we_refresh),
            None => self.session = Some(SessionTimer::new(now, interval, we_refresh)),
        }
    }
}

fn state_for(response: &Response) -> DialogState {
    if response.status.is_success() {
        DialogState::Confirmed
    } else {
        DialogState::Early
    }
}

fn contact_uri(request: &Request) -> Result<Uri, DialogError> {
    match request.headers.contact() {
        Ok(c) => c
            .addr()
            .map(|a| a.uri.clone())
            .ok_or(DialogError::NoContact),
        Err(_) => Err(DialogError::NoContact),
    }
}

fn response_contact_uri(response: &Response) -> Result<Uri, DialogError> {
    match response.headers.contact() {
        Ok(c) => c
            .addr()
            .map(|a| a.uri.clone())
            .ok_or(DialogError::NoContact),
        Err(_) => Err(DialogError::NoContact),
    }
}

fn reject(request: &Request, status: StatusCode, reason: Option<&str>) -> Response {
    Response::for_request(request, status, reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transaction::Transport;
    use std::time::Duration;

    const INVITE: &str = "INVITE sip:bob@127.0.0.1:5062 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bKd1\r\n\
        Record-Route: <sip:p1.example;lr>, <sip:p2.example;lr>\r\n\
        From: \"Alice\" <sip:alice@127.0.0.1>;tag=a1\r\n\
        To: <sip:bob@127.0.0.1>\r\n\
        Call-ID: dlg-1\r\n\
        CSeq: 10 INVITE\r\n\
        Contact: <sip:alice@127.0.0.1:5061>\r\n\
        Content-Length: 0\r\n\r\n";

    fn peer() -> Target {
        Target {
            transport: Transport::Udp,
            addr: "127.0.0.1:5061".parse().unwrap(),
        }
    }

    fn ok_for(invite: &Request, extra: &str) -> Response {
        let mut r = Response::for_request(invite, StatusCode::OK, None).with_to_tag("b1");
        r.headers
            .push(HeaderName::Contact, "<sip:bob@127.0.0.1:5062>");
        // Record-Route comes from the INVITE (§12.1.1, copied by `for_request`).
        for line in extra.split("\r\n").filter(|l| !l.is_empty()) {
            let (n, v) = line.split_once(':').unwrap();
            r.headers.push(HeaderName::parse(n), v.trim().to_owned());
        }
        Response::parse(r.to_bytes()).unwrap()
    }

    fn uas_dialog() -> (Dialog, Request, Response) {
        let invite = Request::parse(INVITE).unwrap();
        let ok = ok_for(&invite, "");
        let contact = NameAddr::parse("<sip:bob@127.0.0.1:5062>").unwrap();
        let d = Dialog::uas(&invite, &ok, contact, peer(), TimerConfig::default()).unwrap();
        (d, invite, ok)
    }

    fn uac_dialog(extra: &str) -> Dialog {
        let invite = Request::parse(INVITE).unwrap();
        let ok = ok_for(&invite, extra);
        Dialog::uac(Instant::now(), &invite, &ok, peer(), TimerConfig::default()).unwrap()
    }

    fn in_dialog(method: &str, seq: u32, extra: &str) -> Request {
        let raw = format!(
            "{method} sip:bob@127.0.0.1:5062 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bKx{seq}\r\n\
             From: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:bob@127.0.0.1>;tag=b1\r\n\
             Call-ID: dlg-1\r\nCSeq: {seq} {method}\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        Request::parse(raw).unwrap()
    }

    #[test]
    fn uac_reverses_record_route_and_targets_the_contact() {
        let mut d = uac_dialog("");
        assert_eq!(d.state(), DialogState::Confirmed);
        assert_eq!(d.id().remote_tag, "b1");
        let bye = d.bye().unwrap();
        assert_eq!(bye.uri.as_str(), "sip:bob@127.0.0.1:5062");
        let routes: Vec<String> = bye
            .headers
            .values(&HeaderName::Route)
            .map(|r| r.to_string())
            .collect();
        assert_eq!(routes, vec!["<sip:p2.example;lr>", "<sip:p1.example;lr>"]);
        assert_eq!(bye.headers.cseq().unwrap().seq, 11);
        assert_eq!(bye.headers.to().unwrap().tag(), Some("b1"));
        assert_eq!(bye.headers.from().unwrap().tag(), Some("a1"));
        let ack = d.ack(10);
        assert_eq!(
            ack.headers.cseq().unwrap(),
            CSeq {
                seq: 10,
                method: Method::Ack
            }
        );
        assert_eq!(d.peer(), peer());
    }

    #[test]
    fn uas_keeps_record_route_order_and_rejects_a_lower_cseq() {
        let (mut d, _, _) = uas_dialog();
        assert!(d.matches_request(&in_dialog("INFO", 11, "")));
        let routes: Vec<String> = d.route_set().iter().map(|r| r.to_string()).collect();
        assert_eq!(routes, vec!["<sip:p1.example;lr>", "<sip:p2.example;lr>"]);
        let bye = d.bye().unwrap();
        assert_eq!(bye.uri.as_str(), "sip:alice@127.0.0.1:5061");
        assert_eq!(bye.headers.to().unwrap().tag(), Some("a1"));
        let now = Instant::now();
        assert!(d.handle_request(now, &in_dialog("INFO", 11, "")).is_ok());
        let err = d
            .handle_request(now, &in_dialog("INFO", 9, ""))
            .unwrap_err();
        assert_eq!(err.status.as_u16(), 500);
    }

    /// §12.2.1.1: in-dialog requests go to the first route (the proxy), not to where the INVITE
    /// came from nor straight to the remote target; without a route set, to the remote target.
    #[test]
    fn next_hop_is_the_first_route_else_the_remote_target() {
        use crate::routing::HopHost;
        let (d, _, _) = uas_dialog();
        let hop = d.next_hop().unwrap();
        assert_eq!(hop.host, HopHost::Name("p1.example".into()));
        let invite = Request::parse(INVITE.replace(
            "Record-Route: <sip:p1.example;lr>, <sip:p2.example;lr>\r\n",
            "",
        ))
        .unwrap();
        let ok = Response::for_request(&invite, StatusCode::OK, None).with_to_tag("b1");
        let contact = NameAddr::parse("<sip:bob@127.0.0.1:5062>").unwrap();
        let d = Dialog::uas(&invite, &ok, contact, peer(), TimerConfig::default()).unwrap();
        let hop = d.next_hop().unwrap();
        assert_eq!(hop.host, HopHost::Ip("127.0.0.1".parse().unwrap()));
        assert_eq!(hop.port, Some(5061));
    }

    #[test]
    fn strict_router_becomes_the_request_uri() {
        let invite = Request::parse(INVITE.replace(
            "<sip:p1.example;lr>, <sip:p2.example;lr>",
            "<sip:strict.example>",
        ))
        .unwrap();
        let mut ok = Response::for_request(&invite, StatusCode::OK, None).with_to_tag("b1");
        ok.headers
            .push(HeaderName::Contact, "<sip:bob@127.0.0.1:5062>");
        let mut d =
            Dialog::uac(Instant::now(), &invite, &ok, peer(), TimerConfig::default()).unwrap();
        let bye = d.bye().unwrap();
        assert_eq!(bye.uri.as_str(), "sip:strict.example");
        let routes: Vec<String> = bye
            .headers
            .values(&HeaderName::Route)
            .map(|r| r.to_string())
            .collect();
        assert_eq!(routes, vec!["<sip:bob@127.0.0.1:5062>"]);
    }

    #[test]
    fn reinvite_glare_answers_491_and_schedules_the_retry() {
        let mut d = uac_dialog("");
        let now = Instant::now();
        let ours = d.reinvite(None).unwrap();
        assert_eq!(d.reinvite(None).unwrap_err(), DialogError::OfferPending);
        let theirs = in_dialog("INVITE", 1, "Contact: <sip:bob@127.0.0.1:5062>\r\n");
        let answer = d.handle_request(now, &theirs).unwrap_err();
        assert_eq!(answer.status.as_u16(), 491);
        let mut r491 = Response::for_request(&ours, StatusCode::REQUEST_PENDING, None);
        r491.headers
            .replace(HeaderName::To, "<sip:bob@127.0.0.1>;tag=b1");
        d.handle_response(now, &r491, 0);
        // We own the Call-ID (we were the UAC): 2.1 s with random 0.
        assert_eq!(d.poll_timeout(), Some(now + Duration::from_millis(2100)));
        d.handle_timeout(now + Duration::from_millis(2100));
        assert_eq!(d.poll_event(), Some(DialogEvent::RetryOffer));
        assert!(d.reinvite(None).is_ok(), "the retry may go out now");
    }

    #[test]
    fn second_reinvite_while_one_is_unanswered_gets_500_retry_after() {
        let (mut d, _, _) = uas_dialog();
        let now = Instant::now();
        d.handle_request(now, &in_dialog("INVITE", 11, "")).unwrap();
        let err = d
            .handle_request(now, &in_dialog("INVITE", 12, ""))
            .unwrap_err();
        assert_eq!(err.status.as_u16(), 500);
        assert!(err.headers.get(&HeaderName::RetryAfter).is_some());
        assert_eq!(d.reinvite(None).unwrap_err(), DialogError::OfferPending);
    }

    #[test]
    fn uas_retransmits_2xx_until_ack_then_stops() {
        let (mut d, _, ok) = uas_dialog();
        let now = Instant::now();
        d.handle_sent_response(now, &ok);
        assert_eq!(d.poll_timeout(), Some(now + Duration::from_millis(500)));
        d.handle_timeout(now + Duration::from_millis(500));
        assert_eq!(d.poll_event(), Some(DialogEvent::Retransmit2xx(ok.clone())));
        assert!(!d.handle_ack(now, &in_dialog("ACK", 9, "")), "wrong CSeq");
        assert!(d.handle_ack(now, &in_dialog("ACK", 10, "")));
        assert_eq!(d.poll_timeout(), None);
    }

    #[test]
    fn uas_gives_up_without_ack_after_64_t1() {
        let (mut d, _, ok) = uas_dialog();
        let now = Instant::now();
        d.handle_sent_response(now, &ok);
        let mut retransmits = 0;
        while let Some(at) = d.poll_timeout() {
            d.handle_timeout(at);
            while let Some(ev) = d.poll_event() {
                match ev {
                    DialogEvent::Retransmit2xx(_) => retransmits += 1,
                    DialogEvent::AckTimeout => assert_eq!(at - now, Duration::from_secs(32)),
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        assert_eq!(retransmits, 10);
    }

    #[test]
    fn session_timer_from_2xx_makes_the_uac_refresh_and_the_refresh_carries_session_expires() {
        let now = Instant::now();
        let invite = Request::parse(INVITE).unwrap();
        let ok = ok_for(
            &invite,
            "Session-Expires: 90;refresher=uac\r\nRequire: timer\r\n",
        );
        let mut d = Dialog::uac(now, &invite, &ok, peer(), TimerConfig::default()).unwrap();
        assert!(d.session_timer().unwrap().we_refresh());
        assert_eq!(d.poll_timeout(), Some(now + Duration::from_secs(45)));
        d.handle_timeout(now + Duration::from_secs(45));
        assert_eq!(d.poll_event(), Some(DialogEvent::SessionRefreshDue));
        let update = d.update(None).unwrap();
        assert_eq!(
            update.headers.get(&HeaderName::SessionExpires).unwrap(),
            "90;refresher=uac"
        );
    }

    #[test]
    fn uas_non_refresher_sees_the_session_expire() {
        let (mut d, invite, _) = uas_dialog();
        let now = Instant::now();
        let mut ok = ok_for(&invite, "");
        ok.headers
            .push(HeaderName::SessionExpires, "120;refresher=uac");
        d.handle_sent_response(now, &ok);
        d.handle_ack(now, &in_dialog("ACK", 10, ""));
        assert!(!d.session_timer().unwrap().we_refresh());
        // 120 - min(32, 40) = 88 s.
        assert_eq!(d.poll_timeout(), Some(now + Duration::from_secs(88)));
        d.handle_timeout(now + Duration::from_secs(88));
        assert_eq!(d.poll_event(), Some(DialogEvent::SessionExpired));
    }

    #[test]
    fn refer_notify_carries_sipfrag() {
        let (mut d, _, _) = uas_dialog();
        let refer = d.refer("<sip:agent@127.0.0.1>").unwrap();
        assert_eq!(
            refer.headers.get(&HeaderName::ReferTo).unwrap(),
            "<sip:agent@127.0.0.1>"
        );
        assert!(refer.headers.get(&HeaderName::Contact).is_some());
        let trying = SipFragStatus {
            code: 100,
            reason: "Trying".into(),
        };
        let n1 = d.notify_refer(&trying).unwrap();
        let n1 = Request::parse(n1.to_bytes()).unwrap();
        assert_eq!(Dialog::read_refer_notify(&n1), Some((trying, false)));
        let ok = SipFragStatus {
            code: 200,
            reason: "OK".into(),
        };
        let n2 = Request::parse(d.notify_refer(&ok).unwrap().to_bytes()).unwrap();
        assert_eq!(n2.headers.get(&HeaderName::Event).unwrap(), "refer");
        assert_eq!(Dialog::read_refer_notify(&n2), Some((ok, true)));
        assert!(n2.headers.cseq().unwrap().seq > n1.headers.cseq().unwrap().seq);
    }

    #[test]
    fn bye_terminates_and_later_requests_get_481() {
        let (mut d, _, _) = uas_dialog();
        let now = Instant::now();
        d.handle_request(now, &in_dialog("BYE", 11, "")).unwrap();
        assert_eq!(d.state(), DialogState::Terminated);
        let err = d
            .handle_request(now, &in_dialog("INFO", 12, ""))
            .unwrap_err();
        assert_eq!(err.status.as_u16(), 481);
        assert_eq!(d.bye().unwrap_err(), DialogError::Terminated);
    }

    #[test]
    fn terminate_stops_all_timers() {
        let (mut d, _, ok) = uas_dialog();
        let now = Instant::now();
        d.handle_sent_response(now, &ok);
        assert!(d.poll_timeout().is_some());
        d.terminate();
        assert_eq!(d.poll_timeout(), None);
        assert_eq!(d.state(), DialogState::Terminated);
    }

    #[test]
    fn update_refreshes_the_remote_target() {
        let (mut d, _, _) = uas_dialog();
        let now = Instant::now();
        let upd = in_dialog("UPDATE", 11, "Contact: <sip:alice@127.0.0.1:7000>\r\n");
        d.handle_request(now, &upd).unwrap();
        assert_eq!(d.remote_target().as_str(), "sip:alice@127.0.0.1:7000");
        let resp = d.response(&upd, StatusCode::OK);
        assert_eq!(resp.status.as_u16(), 200);
        assert!(resp.headers.get(&HeaderName::Contact).is_some());
    }
}
