//! The demo's built-in agent phone: registers as an agent, answers every call by itself and plays
//! a chime, so **Opnemen** in the portal ends in a connected call without a softphone.
//!
//! [`AgentPhone`] is a sans-IO [`UserAgent`]: one [`Endpoint`] for SIP over UDP, the registration
//! (`registration.rs`: REGISTER with digest auth, refresh, back-off, unREGISTER — RFC 3261 §10.2,
//! §22.2), and at most one call (a UAS [`Dialog`], RFC 3261 §12–§15, with SDP offer/answer per
//! RFC 3264 and one RTP stream, RFC 3550):
//! - an INVITE is answered with 200 and an SDP answer (PCMA/PCMU, telephone-event if offered), after
//!   [`AgentPhoneConfig::answer_after`] of 180 Ringing if that is not zero; a second INVITE while a
//!   call lasts gets 486 Busy Here; an INVITE without SDP gets our offer in the 200 and its answer
//!   is read from the ACK;
//! - re-INVITEs and UPDATEs are answered from the same [`LocalSdp`] (hold: `sendonly` is answered
//!   `recvonly` and the chime pauses; resume: `sendrecv`);
//! - while the call lasts a chime goes out as RTP every ptime (20 ms), through a
//!   [`MediaStream`];
//! - BYE or CANCEL from the softswitch ends the call; the phone hangs up by itself after
//!   [`AgentPhoneConfig::max_call`] (if set) and on [`AgentPhone::shutdown`].
//!
//! Polling order (the [`UserAgent`] contract): after every `handle_*` or [`AgentPhone::shutdown`]
//! drain `poll_transmit`, then `poll_event`, then sleep until `poll_timeout`. Time comes in as
//! `now`; randomness (tags, Call-IDs, SSRC) from the [`RandomKey`] given to [`AgentPhone::new`].
//!
//! [`run`] is the tokio side: it binds the two UDP sockets and hands the machine to the softphone
//! driver until shutdown.

mod registration;

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dsp::tone::{Cadence, SignalSource, ToneGenerator};
use sip::dialog::{Dialog, DialogEvent};
use sip::endpoint::{
    host_text, Endpoint, EndpointConfig, Event, Local, ServerTxId, Source, Target, TxId,
};
use sip::message::{HeaderName, Method, NameAddr, Request, Response, StatusCode, Uri, UriError};
use sip::random::{Prf, RandomKey};
use sip::rtp::RtpConfig;
use sip::sdp::{Direction, LocalMedia, LocalSdp, MediaPreferences, MediaSession};
use sip::transaction::{TimerConfig, Transport};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::driver::{Driver, Stopped};
use super::media::{AudioSource, MediaConfig, MediaStream};
use super::{Datagram, Socket, UserAgent};
use registration::{Registration, RegistrationConfig};

/// What the phone asks for and how it behaves.
#[derive(Clone)]
pub struct AgentPhoneConfig {
    /// The softswitch's SIP UDP address: where to register, and where calls come from.
    pub server: SocketAddr,
    /// SIP username (the agent's), also the user part of the address of record.
    pub username: String,
    /// Digest password. Never logged (`Debug` hides it).
    pub password: String,
    /// Registration interval to ask for (the registrar may grant less).
    pub expires: Duration,
    /// How long to ring (180) before answering; zero answers at once.
    pub answer_after: Duration,
    /// Hang up by ourselves after this long in a call; `None`: never (the caller or the portal
    /// ends the call).
    pub max_call: Option<Duration>,
}

impl AgentPhoneConfig {
    /// Registers for 300 s, answers at once, never hangs up by itself.
    pub fn new(server: SocketAddr, username: &str, password: &str) -> Self {
        AgentPhoneConfig {
            server,
            username: username.to_owned(),
            password: password.to_owned(),
            expires: Duration::from_secs(300),
            answer_after: Duration::ZERO,
            max_call: None,
        }
    }
}

impl fmt::Debug for AgentPhoneConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentPhoneConfig")
            .field("server", &self.server)
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .field("expires", &self.expires)
            .field("answer_after", &self.answer_after)
            .field("max_call", &self.max_call)
            .finish()
    }
}

/// What the phone reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentPhoneEvent {
    /// The registrar accepted the binding (reported when it starts, not on every refresh).
    Registered { expires: Duration },
    /// A REGISTER failed: the registrar's final status, or `None` when none came. The phone
    /// retries after a back-off.
    RegistrationFailed { status: Option<u16> },
    /// The unREGISTER went through.
    Unregistered,
    /// A call was answered (200 OK sent).
    CallAnswered,
    /// The call ended.
    CallEnded { by: EndedBy },
}

/// Who ended a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndedBy {
    /// The softswitch sent BYE: the caller or the agent in the portal hung up.
    Remote,
    /// The softswitch cancelled the INVITE before we answered.
    Cancelled,
    /// We hung up: [`AgentPhoneConfig::max_call`] passed, or [`AgentPhone::shutdown`].
    Phone,
    /// Our 200 OK was never acknowledged (RFC 3261 §13.3.1.4): we sent BYE.
    NoAck,
}

/// Why the phone cannot start.
#[derive(Debug, thiserror::Error)]
pub enum AgentPhoneError {
    /// The username does not fit in a SIP URI.
    #[error("SIP username {0:?} cannot be written in a SIP URI: {1}")]
    Username(String, UriError),
    /// Binding or reading the phone's UDP sockets failed.
    #[error("agent phone sockets: {0}")]
    Io(#[from] std::io::Error),
}

/// `Allow` of everything we send.
const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE";
const USER_AGENT: &str = concat!("veilig-bellen-demo-phone/", env!("CARGO_PKG_VERSION"));
/// G.711 samples per millisecond.
const SAMPLES_PER_MS: usize = 8;

/// The built-in agent phone. See the module docs for what it does and the polling order.
#[derive(Debug)]
pub struct AgentPhone {
    config: AgentPhoneConfig,
    sip_local: SocketAddr,
    rtp_local: SocketAddr,
    contact: NameAddr,
    endpoint: Endpoint,
    /// SSRCs, sequence numbers, SDP session ids.
    ids: Prf,
    /// What the phone plays in every call ([`chime`]).
    chime: Arc<[i16]>,
    registration: Registration,
    /// The REGISTER in flight.
    register_tx: Option<sip::endpoint::ClientTxId>,
    line: Line,
    timers: Timers,
    /// [`AgentPhone::shutdown`] was called: calls are refused, nothing new starts.
    leaving: bool,
    transmits: VecDeque<Datagram>,
    events: VecDeque<AgentPhoneEvent>,
}

/// The phone's one line.
#[derive(Debug)]
enum Line {
    Idle,
    /// An INVITE rang (180 sent); [`Timer::Answer`] answers it.
    Ringing(Box<Ringing>),
    InCall(Box<InCall>),
}

#[derive(Debug)]
struct Ringing {
    tx: ServerTxId,
    invite: Request,
    peer: Target,
    tag: String,
}

#[derive(Debug)]
struct InCall {
    dialog: Dialog,
    /// The server transaction of the last INVITE we answered with 2xx, for its retransmissions.
    invite_tx: ServerTxId,
    sdp: LocalSdp,
    /// `None` until media is agreed (an INVITE without SDP: until the ACK's answer).
    media: Option<MediaStream>,
    /// We offered in a 2xx and wait for the answer in the ACK.
    awaiting_answer: bool,
}

/// The phone's own timers (the endpoint, the registration and the dialog keep theirs).
#[derive(Debug, Clone, Copy)]
enum Timer {
    /// Answer the ringing call.
    Answer,
    /// [`AgentPhoneConfig::max_call`] passed.
    HangUp,
}

#[derive(Debug, Default)]
struct Timers([Option<Instant>; 2]);

impl Timers {
    fn set(&mut self, timer: Timer, at: Option<Instant>) {
        self.0[timer as usize] = at;
    }

    fn get(&self, timer: Timer) -> Option<Instant> {
        self.0[timer as usize]
    }

    fn due(&self, timer: Timer, now: Instant) -> bool {
        self.get(timer).is_some_and(|at| at <= now)
    }

    fn earliest(&self) -> Option<Instant> {
        self.0.iter().flatten().min().copied()
    }
}

impl AgentPhone {
    /// A phone whose SIP socket is `sip_local` and RTP socket `rtp_local` (both bound, concrete
    /// addresses: they go into Via, Contact and SDP). Its first REGISTER goes out on the first
    /// [`UserAgent::handle_timeout`] (`poll_timeout` is `now`). `key` must come from the OS.
    pub fn new(
        now: Instant,
        config: AgentPhoneConfig,
        sip_local: SocketAddr,
        rtp_local: SocketAddr,
        key: RandomKey,
    ) -> Result<AgentPhone, AgentPhoneError> {
        let ids = Prf::new(&key, b"agent phone media ids");
        let mut endpoint = Endpoint::new(EndpointConfig {
            answer_options: true,
            ..EndpointConfig::new(key)
        });
        endpoint.add_local(Local {
            transport: Transport::Udp,
            addr: sip_local,
            advertise: None,
        });
        let user = config.username.as_str();
        let bad_user = |e| AgentPhoneError::Username(config.username.clone(), e);
        let server_host = host_text(config.server.ip());
        let registrar =
            Uri::sip(None, &server_host, Some(config.server.port())).map_err(bad_user)?;
        let aor =
            Uri::sip(Some(user), &server_host, Some(config.server.port())).map_err(bad_user)?;
        let contact_uri = Uri::sip(
            Some(user),
            &host_text(sip_local.ip()),
            Some(sip_local.port()),
        )
        .map_err(bad_user)?;
        let registration = Registration::new(
            RegistrationConfig {
                registrar,
                aor,
                contact: contact_uri.clone(),
                username: config.username.clone(),
                password: config.password.clone(),
                expires: u32::try_from(config.expires.as_secs()).unwrap_or(u32::MAX),
                call_id: endpoint.new_call_id(&host_text(sip_local.ip())),
                from_tag: endpoint.new_tag(),
                cnonce: endpoint.new_tag(),
            },
            now,
        );
        Ok(AgentPhone {
            config,
            sip_local,
            rtp_local,
            contact: NameAddr::new(contact_uri),
            endpoint,
            ids,
            chime: chime(),
            registration,
            register_tx: None,
            line: Line::Idle,
            timers: Timers::default(),
            leaving: false,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        })
    }

    /// Hangs up a call (BYE, or 480 to one still ringing) and unREGISTERs; the phone is
    /// [finished](UserAgent::is_finished) when the registrar answered (or gave up answering).
    /// New calls are refused from now on.
    pub fn shutdown(&mut self, now: Instant) {
        self.leaving = true;
        self.hang_up(now, EndedBy::Phone);
        if let Some(req) = self.registration.shutdown(now) {
            self.send_register(now, req);
        }
        self.pump(now);
    }

    /// Whether the registrar holds our binding.
    pub fn is_registered(&self, now: Instant) -> bool {
        self.registration.is_registered(now)
    }

    /// Whether a call is up (answered and not ended).
    pub fn in_call(&self) -> bool {
        matches!(self.line, Line::InCall(_))
    }

    /// Our SIP Contact address.
    pub fn sip_local(&self) -> SocketAddr {
        self.sip_local
    }

    // ---- the endpoint's events -------------------------------------------------------------

    /// Moves the endpoint's output out and reacts to its events until it has nothing left.
    fn pump(&mut self, now: Instant) {
        loop {
            while let Some(t) = self.endpoint.poll_transmit() {
                self.transmits.push_back(Datagram {
                    socket: Socket::Sip,
                    to: t.to,
                    bytes: t.bytes,
                });
            }
            match self.endpoint.poll_event() {
                Some(event) => self.handle_event(now, event),
                None => break,
            }
        }
        while let Some(event) = self.registration.poll_event() {
            self.events.push_back(event);
        }
    }

    fn handle_event(&mut self, now: Instant, event: Event) {
        match event {
            Event::Request {
                id,
                request,
                source,
            } => self.handle_request(now, id, request, source),
            Event::Ack { request, .. } => self.handle_ack(now, &request),
            Event::Cancelled { id, .. } => {
                if matches!(&self.line, Line::Ringing(r) if r.tx == id) {
                    // The endpoint already answered the CANCEL with 200 and the INVITE with 487.
                    self.end(EndedBy::Cancelled);
                }
            }
            Event::Response { id, response } => {
                if self.register_tx == Some(id) {
                    if response.status.is_final() {
                        self.register_tx = None;
                    }
                    if let Some(next) = self.registration.handle_response(now, &response) {
                        self.send_register(now, next);
                    }
                } else if let Line::InCall(call) = &mut self.line {
                    // We never offer in a request: nothing here needs the glare back-off.
                    call.dialog.handle_response(now, &response, 0);
                }
            }
            Event::Timeout {
                id: TxId::Client(id),
            }
            | Event::TransportError {
                id: TxId::Client(id),
            } => {
                if self.register_tx == Some(id) {
                    self.register_tx = None;
                    self.registration.handle_no_response(now);
                }
            }
            Event::Timeout { .. } | Event::TransportError { .. } => {}
        }
    }

    fn send_register(&mut self, now: Instant, request: Request) {
        let target = Target {
            transport: Transport::Udp,
            addr: self.config.server,
        };
        match self.endpoint.send_request(now, request, target) {
            Ok(tx) => self.register_tx = Some(tx),
            Err(_) => {
                self.register_tx = None;
                self.registration.handle_no_response(now);
            }
        }
    }

    fn respond(&mut self, now: Instant, id: ServerTxId, response: Response) {
        // The transaction may be gone (cancelled, timed out): then there is nobody to answer.
        let _ = self.endpoint.respond(now, id, response);
    }

    fn handle_request(&mut self, now: Instant, id: ServerTxId, req: Request, source: Source) {
        let in_dialog = req
            .headers
            .to()
            .map(|to| to.tag().is_some())
            .unwrap_or(false);
        if in_dialog {
            return self.in_dialog_request(now, id, req);
        }
        let peer = Target {
            transport: source.transport,
            addr: source.remote,
        };
        match req.method {
            Method::Invite => self.incoming_invite(now, id, req, peer),
            Method::Options => {
                let ok = Response::for_request(&req, StatusCode::OK, None);
                self.respond(now, id, ok);
            }
            Method::Bye => {
                let gone =
                    Response::for_request(&req, StatusCode::CALL_TRANSACTION_DOES_NOT_EXIST, None);
                self.respond(now, id, gone);
            }
            _ => {
                let mut no = Response::for_request(&req, StatusCode::METHOD_NOT_ALLOWED, None);
                no.headers.push(HeaderName::Allow, ALLOW);
                self.respond(now, id, no);
            }
        }
    }

    // ---- calls -----------------------------------------------------------------------------

    fn incoming_invite(&mut self, now: Instant, id: ServerTxId, invite: Request, peer: Target) {
        let tag = self.endpoint.new_tag();
        let refuse = if self.leaving {
            Some(StatusCode::TEMPORARILY_UNAVAILABLE)
        } else if !matches!(self.line, Line::Idle) {
            Some(StatusCode::BUSY_HERE)
        } else {
            None
        };
        if let Some(status) = refuse {
            let no = Response::for_request(&invite, status, None).with_to_tag(&tag);
            return self.respond(now, id, no);
        }
        let ringing = Ringing {
            tx: id,
            invite,
            peer,
            tag,
        };
        if self.config.answer_after.is_zero() {
            return self.answer(now, ringing);
        }
        let mut rings = Response::for_request(&ringing.invite, StatusCode::RINGING, None)
            .with_to_tag(&ringing.tag);
        rings
            .headers
            .push(HeaderName::Contact, self.contact.to_string());
        self.respond(now, id, rings);
        self.line = Line::Ringing(Box::new(ringing));
        self.timers
            .set(Timer::Answer, Some(now + self.config.answer_after));
    }

    /// Answers with 200 and our SDP (an answer to the INVITE's offer, or our offer).
    fn answer(&mut self, now: Instant, ringing: Ringing) {
        self.timers.set(Timer::Answer, None);
        self.line = Line::Idle;
        let Ringing {
            tx,
            invite,
            peer,
            tag,
        } = ringing;
        let mut sdp = LocalSdp::new(self.ids.next_u64() >> 1, MediaPreferences::default());
        let local = self.local_media();
        let (body, media) = if invite.body.is_empty() {
            (sdp.offer(local, Direction::SendRecv), None)
        } else {
            match sdp.answer(&invite.body, local) {
                Ok(answer) => (answer.body, Some(answer.media)),
                Err(e) => {
                    let status =
                        StatusCode::new(e.sip_status()).unwrap_or(StatusCode::NOT_ACCEPTABLE_HERE);
                    let no = Response::for_request(&invite, status, None).with_to_tag(&tag);
                    return self.respond(now, tx, no);
                }
            }
        };
        let mut ok = Response::for_request(&invite, StatusCode::OK, None).with_to_tag(&tag);
        ok.headers
            .push(HeaderName::Contact, self.contact.to_string());
        ok.headers.push(HeaderName::Allow, ALLOW);
        ok.headers.push(HeaderName::UserAgent, USER_AGENT);
        ok.set_body(Some("application/sdp"), body);
        let mut dialog = match Dialog::uas(
            &invite,
            &ok,
            self.contact.clone(),
            peer,
            TimerConfig::default(),
        ) {
            Ok(d) => d,
            Err(_) => {
                let bad =
                    Response::for_request(&invite, StatusCode::BAD_REQUEST, None).with_to_tag(&tag);
                return self.respond(now, tx, bad);
            }
        };
        if self.endpoint.respond(now, tx, ok.clone()).is_err() {
            return; // the INVITE is gone (cancelled meanwhile)
        }
        dialog.handle_sent_response(now, &ok);
        let awaiting_answer = media.is_none();
        let media = media.map(|m| self.media_stream(now, m, peer.addr.ip()));
        self.line = Line::InCall(Box::new(InCall {
            dialog,
            invite_tx: tx,
            sdp,
            media,
            awaiting_answer,
        }));
        self.timers
            .set(Timer::HangUp, self.config.max_call.map(|d| now + d));
        self.events.push_back(AgentPhoneEvent::CallAnswered);
    }

    fn in_dialog_request(&mut self, now: Instant, id: ServerTxId, req: Request) {
        let local = self.local_media();
        let fresh = self.fresh_media();
        let Line::InCall(call) = &mut self.line else {
            let gone =
                Response::for_request(&req, StatusCode::CALL_TRANSACTION_DOES_NOT_EXIST, None);
            return self.respond(now, id, gone);
        };
        if !call.dialog.matches_request(&req) {
            let gone =
                Response::for_request(&req, StatusCode::CALL_TRANSACTION_DOES_NOT_EXIST, None);
            return self.respond(now, id, gone);
        }
        if let Err(reject) = call.dialog.handle_request(now, &req) {
            call.dialog.handle_sent_response(now, &reject);
            return self.respond(now, id, reject);
        }
        let response = match req.method {
            Method::Invite | Method::Update => {
                let status = if req.body.is_empty() {
                    if req.method == Method::Invite {
                        // No offer: ours goes in the 200, the answer comes in the ACK.
                        let offer = call.sdp.offer(local, Direction::SendRecv);
                        call.awaiting_answer = true;
                        Ok(Some(offer))
                    } else {
                        Ok(None)
                    }
                } else {
                    call.sdp.answer(&req.body, local).map(|answer| {
                        call.apply_media(now, answer.media, fresh);
                        Some(answer.body)
                    })
                };
                if req.method == Method::Invite {
                    call.invite_tx = id;
                }
                match status {
                    Ok(body) => {
                        let mut ok = call.dialog.response(&req, StatusCode::OK);
                        if let Some(body) = body {
                            ok.set_body(Some("application/sdp"), body);
                        }
                        ok
                    }
                    Err(e) => {
                        let status = StatusCode::new(e.sip_status())
                            .unwrap_or(StatusCode::NOT_ACCEPTABLE_HERE);
                        call.dialog.response(&req, status)
                    }
                }
            }
            Method::Bye | Method::Info | Method::Options | Method::Notify | Method::Message => {
                call.dialog.response(&req, StatusCode::OK)
            }
            _ => {
                let mut no = call.dialog.response(&req, StatusCode::METHOD_NOT_ALLOWED);
                no.headers.push(HeaderName::Allow, ALLOW);
                no
            }
        };
        call.dialog.handle_sent_response(now, &response);
        self.respond(now, id, response);
        if req.method == Method::Bye {
            self.end(EndedBy::Remote);
        }
    }

    fn handle_ack(&mut self, now: Instant, ack: &Request) {
        let fresh = self.fresh_media();
        let Line::InCall(call) = &mut self.line else {
            return;
        };
        if !call.dialog.matches_request(ack) || !call.dialog.handle_ack(now, ack) {
            return;
        }
        if call.awaiting_answer && !ack.body.is_empty() {
            call.awaiting_answer = false;
            if let Ok(media) = call.sdp.handle_answer(&ack.body) {
                call.apply_media(now, media, fresh);
            }
        }
    }

    /// Sends BYE (or 480 to a ringing INVITE) and ends the call; nothing when the line is idle.
    fn hang_up(&mut self, now: Instant, by: EndedBy) {
        match &mut self.line {
            Line::Idle => return,
            Line::Ringing(r) => {
                let no =
                    Response::for_request(&r.invite, StatusCode::TEMPORARILY_UNAVAILABLE, None)
                        .with_to_tag(&r.tag);
                let tx = r.tx;
                self.respond(now, tx, no);
            }
            Line::InCall(call) => {
                if let Ok(bye) = call.dialog.bye() {
                    let peer = call.dialog.peer();
                    // The BYE's own transaction retransmits it; its answer changes nothing here.
                    let _ = self.endpoint.send_request(now, bye, peer);
                }
            }
        }
        self.end(by);
    }

    /// The line is idle again: no more RTP, no call timers.
    fn end(&mut self, by: EndedBy) {
        self.line = Line::Idle;
        for timer in [Timer::Answer, Timer::HangUp] {
            self.timers.set(timer, None);
        }
        self.events.push_back(AgentPhoneEvent::CallEnded { by });
    }

    fn handle_dialog_timeout(&mut self, now: Instant) {
        let Line::InCall(call) = &mut self.line else {
            return;
        };
        call.dialog.handle_timeout(now);
        let mut give_up = None;
        while let Some(event) = call.dialog.poll_event() {
            match event {
                DialogEvent::Retransmit2xx(ok) => {
                    let _ = self.endpoint.respond(now, call.invite_tx, ok);
                }
                DialogEvent::AckTimeout => give_up = Some(EndedBy::NoAck),
                DialogEvent::SessionExpired => give_up = Some(EndedBy::Phone),
                // We never offer in a request nor refresh sessions.
                DialogEvent::RetryOffer | DialogEvent::SessionRefreshDue => {}
            }
        }
        if let Some(by) = give_up {
            self.hang_up(now, by);
        }
    }

    // ---- media -----------------------------------------------------------------------------

    /// Sends the chime frames due by `now` and drains the stream's output.
    fn run_media(&mut self, now: Instant) {
        let Line::InCall(call) = &mut self.line else {
            return;
        };
        let Some(media) = &mut call.media else {
            return;
        };
        media.handle_timeout(now);
        while let Some(d) = media.poll_transmit() {
            self.transmits.push_back(d);
        }
        // What the caller's side sends is not listened to.
        while media.poll_event().is_some() {}
    }

    fn local_media(&self) -> LocalMedia {
        LocalMedia {
            addr: self.rtp_local.ip(),
            rtp_port: self.rtp_local.port(),
        }
    }

    /// A stream playing the chime to the peer of `media`, whose SIP comes from `signalling_ip`.
    fn media_stream(
        &mut self,
        now: Instant,
        media: MediaSession,
        signalling_ip: IpAddr,
    ) -> MediaStream {
        self.fresh_media()(now, media, signalling_ip)
    }

    /// What starts a call's media stream (random RTP identifiers drawn now), for code that holds
    /// the line borrowed.
    fn fresh_media(&mut self) -> impl FnOnce(Instant, MediaSession, IpAddr) -> MediaStream {
        let (bits, timestamp) = (self.ids.next_u64(), self.ids.next_u64());
        let chime = self.chime.clone();
        move |now, media, signalling_ip| {
            let rtp = RtpConfig {
                // Truncations on purpose: any bits of a random word are random.
                local_ssrc: bits as u32,
                initial_seq: (bits >> 32) as u16,
                initial_timestamp: timestamp as u32,
                signalling_ip: Some(signalling_ip),
                ..RtpConfig::default()
            };
            let config = MediaConfig {
                rtp,
                ..MediaConfig::default()
            };
            let mut stream = MediaStream::new(now, media, config);
            stream.set_source(AudioSource::samples(chime, true));
            stream
        }
    }
}

impl InCall {
    /// New media from an offer we answered or an answer to our offer; `fresh` starts the stream
    /// when there is none yet.
    fn apply_media(
        &mut self,
        now: Instant,
        session: MediaSession,
        fresh: impl FnOnce(Instant, MediaSession, IpAddr) -> MediaStream,
    ) {
        match &mut self.media {
            Some(stream) => stream.update_media(now, session),
            None => self.media = Some(fresh(now, session, self.dialog.peer().addr.ip())),
        }
    }
}

impl UserAgent for AgentPhone {
    type Event = AgentPhoneEvent;

    fn handle_datagram(&mut self, now: Instant, socket: Socket, from: SocketAddr, bytes: Bytes) {
        match socket {
            Socket::Sip => {
                self.endpoint
                    .handle_datagram(now, Transport::Udp, self.sip_local, from, bytes);
                self.pump(now);
            }
            Socket::Rtp => {
                // Only to latch onto the relay's real source (symmetric RTP); what the caller
                // says is not played anywhere.
                if let Line::InCall(call) = &mut self.line {
                    if let Some(media) = &mut call.media {
                        media.handle_packet(now, from, &bytes);
                        while media.poll_event().is_some() {}
                    }
                }
            }
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.endpoint.handle_timeout(now);
        self.pump(now);
        if let Some(req) = self.registration.handle_timeout(now) {
            self.send_register(now, req);
        }
        self.handle_dialog_timeout(now);
        if self.timers.due(Timer::Answer, now) && matches!(self.line, Line::Ringing(_)) {
            if let Line::Ringing(ringing) = std::mem::replace(&mut self.line, Line::Idle) {
                self.answer(now, *ringing);
            }
        }
        if self.timers.due(Timer::HangUp, now) {
            self.hang_up(now, EndedBy::Phone);
        }
        self.run_media(now);
        self.pump(now);
    }

    fn poll_transmit(&mut self) -> Option<Datagram> {
        self.transmits.pop_front()
    }

    fn poll_event(&mut self) -> Option<AgentPhoneEvent> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let (dialog, media) = match &self.line {
            Line::InCall(call) => (
                call.dialog.poll_timeout(),
                call.media.as_ref().and_then(MediaStream::poll_timeout),
            ),
            _ => (None, None),
        };
        [
            self.endpoint.poll_timeout(),
            self.registration.poll_timeout(),
            self.timers.earliest(),
            dialog,
            media,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn is_finished(&self) -> bool {
        self.leaving && self.registration.is_done() && matches!(self.line, Line::Idle)
    }
}

/// Longest the phone may take to hang up and unREGISTER once asked to stop.
const STOP_LIMIT: Duration = Duration::from_secs(5);

/// Runs a phone for `config` until `shutdown` completes, then hangs up, unREGISTERs and returns
/// (within 5 s even when the registrar is gone). Binds its SIP and RTP sockets on the
/// loopback address when the server is on loopback (or unspecified, as `0.0.0.0`), else on the
/// address the system routes to the server from; both on port 0. Registration success and failure
/// are logged (the password never is), and so are calls answered and ended.
pub async fn run(
    mut config: AgentPhoneConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentPhoneError> {
    if config.server.ip().is_unspecified() {
        let loopback = match config.server {
            SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        };
        config.server.set_ip(loopback);
    }
    let ip = local_ip_towards(config.server).await?;
    let sip = UdpSocket::bind((ip, 0)).await?;
    let rtp = UdpSocket::bind((ip, 0)).await?;
    let (user, server) = (config.username.clone(), config.server);
    let now = tokio::time::Instant::now().into_std();
    let phone = AgentPhone::new(
        now,
        config,
        sip.local_addr()?,
        rtp.local_addr()?,
        RandomKey::from_bytes(rand::random()),
    )?;
    let (stop_tx, stop_rx) = mpsc::channel::<()>(1);
    // First a graceful stop (the control message), then the hard one if that takes too long.
    let stop = async move {
        shutdown.await;
        let _ = stop_tx.send(()).await;
        tokio::time::sleep(STOP_LIMIT).await;
    };
    let log = |event: AgentPhoneEvent| match event {
        AgentPhoneEvent::Registered { expires } => tracing::info!(
            %user, %server, expires_s = expires.as_secs(), "built-in agent phone registered"
        ),
        AgentPhoneEvent::RegistrationFailed {
            status: Some(status),
        } => tracing::warn!(
            %user, %server, status, "built-in agent phone: registration refused; retrying"
        ),
        AgentPhoneEvent::RegistrationFailed { status: None } => tracing::warn!(
            %user, %server, "built-in agent phone: no answer to REGISTER; retrying"
        ),
        AgentPhoneEvent::Unregistered => {
            tracing::info!(%user, "built-in agent phone unregistered")
        }
        AgentPhoneEvent::CallAnswered => tracing::info!(%user, "built-in agent phone answered"),
        AgentPhoneEvent::CallEnded { by } => {
            tracing::info!(%user, ended_by = ?by, "built-in agent phone: call ended")
        }
    };
    let (_, stopped) = Driver::new(phone, sip, rtp)
        .run(stop_rx, |phone, now, ()| phone.shutdown(now), log, stop)
        .await?;
    if stopped == Stopped::Shutdown {
        tracing::warn!("built-in agent phone: the registrar did not confirm the unREGISTER");
    }
    Ok(())
}

/// The local IP the system sends to `server` from: `server`'s own on loopback, else the one a
/// connected probe socket gets (no packet is sent).
async fn local_ip_towards(server: SocketAddr) -> std::io::Result<IpAddr> {
    if server.ip().is_loopback() {
        return Ok(server.ip());
    }
    let any: IpAddr = match server {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let probe = UdpSocket::bind((any, 0)).await?;
    probe.connect(server).await?;
    Ok(probe.local_addr()?.ip())
}

/// Note frequencies of the chime (C5, E5), for tests that listen for it.
pub const CHIME_HZ: [u32; 2] = [523, 659];
const CHIME_LEVEL_DBM0: f64 = -16.0;
const NOTE_SAMPLES: usize = 400 * SAMPLES_PER_MS;
const CYCLE_SAMPLES: usize = 2000 * SAMPLES_PER_MS;

/// What the phone says, 2 s to loop: C5 then E5, 400 ms each at −16 dBm0 (a soft "ding-dong",
/// nothing like the 425 Hz of Dutch call-progress tones), then 1.2 s of silence.
fn chime() -> Arc<[i16]> {
    let mut samples = vec![0i16; CYCLE_SAMPLES];
    for (note, hz) in samples.chunks_mut(NOTE_SAMPLES).zip(CHIME_HZ) {
        // Invariant: both frequencies are below 4000 Hz and the level below full scale, which
        // is all `ToneGenerator::new` checks.
        ToneGenerator::new(hz, CHIME_LEVEL_DBM0, Cadence::CONTINUOUS)
            .expect("constant, valid tone parameters")
            .fill(note);
    }
    samples.into()
}

#[cfg(test)]
mod tests {
    use super::registration::testutil::Registrar;
    use super::*;
    use sip::rtp::rtp_rs::RtpReader;
    use sip::sdp::{describe, CodecKind};
    use std::collections::HashMap;

    const SERVER: &str = "127.0.0.1:5060";
    const PHONE_SIP: &str = "127.0.0.1:40000";
    const PHONE_RTP: &str = "127.0.0.1:40002";
    /// The softswitch's RTP relay port in its offers.
    const RELAY_PORT: u16 = 30000;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// The phone and a softswitch (an endpoint with a registrar) on a loss-free network with no
    /// delay, on a virtual clock.
    struct Net {
        start: Instant,
        now: Instant,
        phone: AgentPhone,
        server: Endpoint,
        registrar: Registrar,
        /// The softswitch is unreachable: the phone's SIP is dropped.
        down: bool,
        registers: Vec<(Instant, Request)>,
        /// Responses the softswitch got to its INVITEs, BYEs, re-INVITEs.
        responses: Vec<Response>,
        /// Requests the phone sent other than REGISTER (BYE).
        requests: Vec<Request>,
        /// RTP from the phone: when, where to, the packet.
        rtp: Vec<(Instant, SocketAddr, Vec<u8>)>,
        events: Vec<(Instant, AgentPhoneEvent)>,
        invites: HashMap<String, (Request, sip::endpoint::ClientTxId)>,
        dialogs: HashMap<String, Dialog>,
        server_sdp: LocalSdp,
    }

    impl Net {
        fn new(config: impl FnOnce(&mut AgentPhoneConfig)) -> Net {
            let start = Instant::now();
            let mut c = AgentPhoneConfig::new(addr(SERVER), "agent", "geheim");
            config(&mut c);
            let phone = AgentPhone::new(
                start,
                c,
                addr(PHONE_SIP),
                addr(PHONE_RTP),
                RandomKey::from_bytes([6; 32]),
            )
            .unwrap();
            let mut server = Endpoint::new(EndpointConfig::new(RandomKey::from_bytes([5; 32])));
            server.add_local(Local {
                transport: Transport::Udp,
                addr: addr(SERVER),
                advertise: None,
            });
            Net {
                start,
                now: start,
                phone,
                server,
                registrar: Registrar::new(start, "geheim"),
                down: false,
                registers: Vec::new(),
                responses: Vec::new(),
                requests: Vec::new(),
                rtp: Vec::new(),
                events: Vec::new(),
                invites: HashMap::new(),
                dialogs: HashMap::new(),
                server_sdp: LocalSdp::new(7, MediaPreferences::default()),
            }
        }

        fn target_phone() -> Target {
            Target {
                transport: Transport::Udp,
                addr: addr(PHONE_SIP),
            }
        }

        fn relay() -> LocalMedia {
            LocalMedia {
                addr: "127.0.0.1".parse().unwrap(),
                rtp_port: RELAY_PORT,
            }
        }

        /// Runs the clock for `duration`.
        fn run(&mut self, duration: Duration) {
            let until = self.now + duration;
            for _ in 0..1_000_000 {
                self.exchange();
                let next = [self.phone.poll_timeout(), self.server.poll_timeout()]
                    .into_iter()
                    .chain(self.dialogs.values().map(Dialog::poll_timeout))
                    .flatten()
                    .min();
                match next {
                    Some(at) if at <= until => {
                        self.now = at.max(self.now);
                        self.phone.handle_timeout(self.now);
                        self.server.handle_timeout(self.now);
                        let now = self.now;
                        for d in self.dialogs.values_mut() {
                            d.handle_timeout(now);
                            while d.poll_event().is_some() {}
                        }
                    }
                    _ => {
                        self.now = until;
                        return;
                    }
                }
            }
            panic!("the phone never went quiet");
        }

        /// Moves datagrams both ways until both sides are quiet.
        fn exchange(&mut self) {
            let now = self.now;
            loop {
                let mut moved = false;
                while let Some(d) = self.phone.poll_transmit() {
                    match d.socket {
                        Socket::Sip if !self.down => {
                            assert_eq!(d.to, addr(SERVER));
                            self.server.handle_datagram(
                                now,
                                Transport::Udp,
                                addr(SERVER),
                                addr(PHONE_SIP),
                                d.bytes,
                            );
                        }
                        Socket::Sip => {}
                        Socket::Rtp => self.rtp.push((now, d.to, d.bytes.to_vec())),
                    }
                }
                while let Some(e) = self.phone.poll_event() {
                    self.events.push((now, e));
                }
                while let Some(t) = self.server.poll_transmit() {
                    moved = true;
                    self.phone
                        .handle_datagram(now, Socket::Sip, addr(SERVER), t.bytes);
                }
                while let Some(e) = self.server.poll_event() {
                    moved = true;
                    self.server_event(e);
                }
                if !moved {
                    return;
                }
            }
        }

        fn server_event(&mut self, event: Event) {
            let now = self.now;
            match event {
                Event::Request { id, request, .. } => {
                    let response = if request.method == Method::Register {
                        self.registers.push((now, request.clone()));
                        self.registrar.answer(now, &request)
                    } else {
                        self.requests.push(request.clone());
                        Response::for_request(&request, StatusCode::OK, None)
                    };
                    self.server.respond(now, id, response).unwrap();
                }
                Event::Response { response, .. } => {
                    let call_id = response.headers.call_id().unwrap().to_string();
                    let cseq = response.headers.cseq().unwrap();
                    if cseq.method == Method::Invite && response.status.is_success() {
                        let dialog = match self.dialogs.get_mut(&call_id) {
                            Some(d) => {
                                d.handle_response(now, &response, 0);
                                d
                            }
                            None => {
                                let (invite, _) = &self.invites[&call_id];
                                let d = Dialog::uac(
                                    now,
                                    invite,
                                    &response,
                                    Self::target_phone(),
                                    TimerConfig::default(),
                                )
                                .unwrap();
                                self.dialogs.entry(call_id.clone()).or_insert(d)
                            }
                        };
                        let (ack, peer) = (dialog.ack(cseq.seq), dialog.peer());
                        self.server.send_ack(now, ack, peer).unwrap();
                    } else if let Some(d) = self.dialogs.get_mut(&call_id) {
                        d.handle_response(now, &response, 0);
                    }
                    self.responses.push(response);
                }
                _ => {}
            }
        }

        /// The softswitch INVITEs the phone (offering PCMA, PCMU, telephone-event from the relay).
        fn invite(&mut self, call_id: &str) {
            let mut req = Request::new(
                Method::Invite,
                format!("sip:agent@{PHONE_SIP}").parse().unwrap(),
            );
            req.headers.push(
                HeaderName::From,
                format!("\"Veilig bellen\" <sip:+31612345678@{SERVER}>;tag=vb-{call_id}"),
            );
            req.headers
                .push(HeaderName::To, format!("<sip:agent@{PHONE_SIP}>"));
            req.headers.push(HeaderName::CallId, call_id);
            req.headers.push(HeaderName::CSeq, "1 INVITE");
            req.headers
                .push(HeaderName::Contact, format!("<sip:vb@{SERVER}>"));
            let offer = self.server_sdp.offer(Self::relay(), Direction::SendRecv);
            req.set_body(Some("application/sdp"), offer);
            let tx = self
                .server
                .send_request(self.now, req.clone(), Self::target_phone())
                .unwrap();
            self.invites.insert(call_id.to_owned(), (req, tx));
        }

        /// An in-dialog request from the softswitch on call `call_id`.
        fn in_dialog(&mut self, call_id: &str, build: impl FnOnce(&mut Dialog) -> Request) {
            let dialog = self.dialogs.get_mut(call_id).expect("an answered call");
            let req = build(dialog);
            let peer = dialog.peer();
            self.server.send_request(self.now, req, peer).unwrap();
        }

        fn registered(&mut self) {
            self.run(secs(1));
            assert!(self.phone.is_registered(self.now), "{:?}", self.events);
        }

        fn events_since(&self, t: Instant) -> Vec<AgentPhoneEvent> {
            self.events
                .iter()
                .filter(|(at, _)| *at >= t)
                .map(|(_, e)| e.clone())
                .collect()
        }

        fn responses_to(&self, call_id: &str, method: Method) -> Vec<u16> {
            self.responses
                .iter()
                .filter(|r| {
                    r.headers.call_id().is_ok_and(|c| c == call_id)
                        && r.headers.cseq().is_ok_and(|c| c.method == method)
                })
                .map(|r| r.status.as_u16())
                .filter(|status| *status > 100) // the endpoint's own 100 Trying
                .collect()
        }

        fn rtp_between(&self, from: Instant, to: Instant) -> Vec<&(Instant, SocketAddr, Vec<u8>)> {
            self.rtp
                .iter()
                .filter(|(at, _, _)| *at >= from && *at < to)
                .collect()
        }
    }

    #[test]
    fn registers_through_the_challenge_and_refreshes_before_the_binding_lapses() {
        let mut net = Net::new(|_| {});
        net.registered();
        assert_eq!(
            net.registers.len(),
            2,
            "one challenged, one with credentials"
        );
        assert!(net.registers[0]
            .1
            .headers
            .get(&HeaderName::Authorization)
            .is_none());
        let contact = net.registers[1]
            .1
            .headers
            .get(&HeaderName::Contact)
            .unwrap();
        assert_eq!(contact, &format!("<sip:agent@{PHONE_SIP}>"));
        assert_eq!(
            net.events_since(net.start),
            vec![AgentPhoneEvent::Registered { expires: secs(120) }]
        );
        // The registrar grants 120 s; over 10 minutes the binding never lapses.
        net.run(secs(600));
        let times: Vec<Duration> = net.registers.iter().map(|(t, _)| *t - net.start).collect();
        for pair in times.windows(2).skip(1) {
            assert!(pair[1] - pair[0] < secs(120), "refreshes at {times:?}");
        }
        assert!(times.len() >= 7, "refreshes at {times:?}");
        assert!(net.phone.is_registered(net.now));
        assert_eq!(
            net.events.len(),
            1,
            "refreshes are no news: {:?}",
            net.events
        );
    }

    #[test]
    fn an_unreachable_softswitch_is_retried_until_it_answers() {
        let mut net = Net::new(|_| {});
        net.down = true;
        net.run(secs(40));
        assert_eq!(
            net.events_since(net.start),
            vec![AgentPhoneEvent::RegistrationFailed { status: None }],
            "Timer F (32 s) ended the first REGISTER"
        );
        net.down = false;
        net.run(secs(40));
        assert!(net.phone.is_registered(net.now), "{:?}", net.events);
    }

    #[test]
    fn an_invite_is_answered_with_sdp_and_the_chime_goes_to_the_offered_address() {
        let mut net = Net::new(|_| {});
        net.registered();
        let t = net.now;
        net.invite("call-1");
        net.run(secs(1));
        assert_eq!(net.responses_to("call-1", Method::Invite), vec![200]);
        let ok = net
            .responses
            .iter()
            .find(|r| r.status == StatusCode::OK)
            .unwrap();
        let answer = describe(&ok.body, &MediaPreferences::default()).unwrap();
        assert_eq!(answer.remote_addr, Some(addr(PHONE_RTP)));
        assert_eq!(answer.codec.kind(), CodecKind::Pcma, "our first choice");
        assert_eq!(answer.telephone_event_pt, Some(101), "offered, so accepted");
        assert_eq!(answer.direction, Direction::SendRecv);
        assert_eq!(net.events_since(t), vec![AgentPhoneEvent::CallAnswered]);
        assert!(net.phone.in_call());

        let sent = net.rtp_between(t, net.now);
        assert!(
            (49..=51).contains(&sent.len()),
            "{} packets in 1 s",
            sent.len()
        );
        assert!(sent.iter().all(|(_, to, _)| to.port() == RELAY_PORT));
        let packets: Vec<RtpReader> = sent
            .iter()
            .map(|(_, _, b)| RtpReader::new(b).unwrap())
            .collect();
        assert!(packets
            .iter()
            .all(|p| p.payload_type() == 8 && p.payload().len() == 160));
        assert!(packets[0].mark() && !packets[1].mark());
        assert_eq!(
            packets[1].timestamp().wrapping_sub(packets[0].timestamp()),
            160
        );
        // The first 400 ms are C5, loud enough to hear.
        let mut pcm = [0i16; 160];
        dsp::g711::decode_alaw_into(packets[5].payload(), &mut pcm);
        assert!(dsp::level::rms_dbfs(&pcm) > -25.0);
    }

    #[test]
    fn bye_is_answered_and_the_chime_stops() {
        let mut net = Net::new(|_| {});
        net.registered();
        net.invite("call-1");
        net.run(secs(1));
        let bye_at = net.now;
        net.in_dialog("call-1", |d| d.bye().unwrap());
        net.run(secs(1));
        assert_eq!(net.responses_to("call-1", Method::Bye), vec![200]);
        assert_eq!(
            net.events_since(bye_at),
            vec![AgentPhoneEvent::CallEnded {
                by: EndedBy::Remote
            }]
        );
        assert!(net
            .rtp_between(bye_at + Duration::from_millis(1), net.now)
            .is_empty());
        assert!(!net.phone.in_call());
        // The line is free for the next call.
        net.invite("call-2");
        net.run(secs(1));
        assert_eq!(net.responses_to("call-2", Method::Invite), vec![200]);
    }

    #[test]
    fn a_second_invite_while_in_a_call_gets_busy_here() {
        let mut net = Net::new(|_| {});
        net.registered();
        net.invite("call-1");
        net.run(secs(1));
        let t = net.now;
        net.invite("call-2");
        net.run(secs(1));
        assert_eq!(net.responses_to("call-2", Method::Invite), vec![486]);
        assert_eq!(
            net.rtp_between(t, net.now).len(),
            50,
            "the first call goes on"
        );
        assert!(net.events_since(t).is_empty());
    }

    #[test]
    fn hold_is_answered_recvonly_and_pauses_the_chime_until_resumed() {
        let mut net = Net::new(|_| {});
        net.registered();
        net.invite("call-1");
        net.run(secs(1));
        let relay = Net::relay();
        let hold = net.server_sdp.offer(relay, Direction::SendOnly);
        net.in_dialog("call-1", |d| {
            d.reinvite(Some(("application/sdp", Bytes::from(hold))))
                .unwrap()
        });
        net.run(Duration::from_millis(100));
        let held = net.now;
        net.run(secs(1));
        let ok = net.responses.last().unwrap();
        assert_eq!(ok.status, StatusCode::OK);
        assert!(String::from_utf8_lossy(&ok.body).contains("a=recvonly"));
        assert!(
            net.rtp_between(held, net.now).is_empty(),
            "nothing sent on hold"
        );

        let resume = net.server_sdp.offer(relay, Direction::SendRecv);
        net.in_dialog("call-1", |d| {
            d.reinvite(Some(("application/sdp", Bytes::from(resume))))
                .unwrap()
        });
        let resumed = net.now;
        net.run(secs(1));
        let ok = net.responses.last().unwrap();
        assert!(String::from_utf8_lossy(&ok.body).contains("a=sendrecv"));
        let sent = net.rtp_between(resumed, net.now);
        assert!(sent.len() >= 49, "{}", sent.len());
        assert!(
            RtpReader::new(&sent[0].2).unwrap().mark(),
            "a new talkspurt"
        );
    }

    #[test]
    fn a_call_cancelled_while_ringing_ends_without_media() {
        let mut net = Net::new(|c| c.answer_after = secs(2));
        net.registered();
        let t = net.now;
        net.invite("call-1");
        net.run(secs(1));
        assert_eq!(net.responses_to("call-1", Method::Invite), vec![180]);
        let tx = net.invites["call-1"].1;
        net.server.cancel(net.now, tx).unwrap();
        net.run(secs(3));
        assert_eq!(net.responses_to("call-1", Method::Invite), vec![180, 487]);
        assert_eq!(
            net.events_since(t),
            vec![AgentPhoneEvent::CallEnded {
                by: EndedBy::Cancelled
            }]
        );
        assert!(net.rtp.is_empty());
    }

    #[test]
    fn max_call_length_hangs_up() {
        let mut net = Net::new(|c| c.max_call = Some(secs(5)));
        net.registered();
        net.invite("call-1");
        net.run(secs(6));
        assert_eq!(
            net.requests
                .iter()
                .filter(|r| r.method == Method::Bye)
                .count(),
            1
        );
        assert!(net
            .events
            .iter()
            .any(|(_, e)| *e == AgentPhoneEvent::CallEnded { by: EndedBy::Phone }));
    }

    #[test]
    fn shutdown_hangs_up_and_unregisters() {
        let mut net = Net::new(|_| {});
        net.registered();
        net.invite("call-1");
        net.run(secs(1));
        let t = net.now;
        net.phone.shutdown(t);
        net.run(secs(1));
        assert_eq!(
            net.requests
                .iter()
                .filter(|r| r.method == Method::Bye)
                .count(),
            1
        );
        let last = &net.registers.last().unwrap().1;
        assert_eq!(last.headers.get(&HeaderName::Expires).unwrap(), "0");
        assert_eq!(
            net.events_since(t),
            vec![
                AgentPhoneEvent::CallEnded { by: EndedBy::Phone },
                AgentPhoneEvent::Unregistered
            ]
        );
        assert!(net.phone.is_finished());
        // Calls are refused from now on.
        net.invite("call-2");
        net.run(secs(1));
        assert_eq!(net.responses_to("call-2", Method::Invite), vec![480]);
    }

    #[test]
    fn the_chime_is_two_notes_and_a_pause() {
        let levels: Vec<f64> = chime().chunks(160).map(dsp::level::rms_dbfs).collect();
        assert_eq!(levels.len(), 100, "2 s");
        // 20 frames of each note at −16 dBm0 (−19.1 dBFS), then 60 of silence.
        assert!(
            levels[..40].iter().all(|l| (-20.5..-18.5).contains(l)),
            "{levels:?}"
        );
        assert!(levels[40..].iter().all(|l| *l < -90.0), "{levels:?}");
    }
}
