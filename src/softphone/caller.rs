//! The caller behind `veilig-bellen call` and the demo's **Bel nu**: one outgoing call over UDP
//! that keys in a link code, listens, and hangs up (RFC 3261 §13 UAC; §9 CANCEL; §22.2 digest).
//!
//! [`Caller`] is a sans-IO [`UserAgent`]: an INVITE with an SDP offer (PCMA/PCMU +
//! telephone-event, RFC 3264) to a resolved address; 1xx are reported as ringing; a 2xx is
//! ACKed (again for each retransmission) and starts the media ([`super::media`]); a 401/407 is
//! answered once with credentials when it has them. `code_delay` after the answer the code goes
//! out as RFC 4733 events, SIP INFO `application/dtmf-relay` (one request per digit, each after
//! the previous one's 200), or in-band tones. Then the caller holds the line for
//! [`HangUp::After`] or until the far end's BYE. [`Caller::hang_up`] cancels an unanswered call
//! (CANCEL, then the 487) or ends an answered one (BYE).
//!
//! The code is personal data: it is kept in a [`Pii`] and events and logs carry only its length and
//! the method.
//!
//! Polling order (as [`UserAgent`]): after every `handle_*` or [`Caller::hang_up`], drain
//! `poll_transmit`, then `poll_event`, then sleep until `poll_timeout`. The async wrapper that binds
//! the sockets and runs the driver is [`place_call`].

mod place;

pub use place::{place_call, CallError, CallOptions, DEFAULT_FROM};

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sip::auth::{authorize, Challenge};
use sip::dialog::{Dialog, DialogEvent};
use sip::endpoint::{ClientTxId, Endpoint, EndpointConfig, Event, Local, ServerTxId, Target, TxId};
use sip::message::{CSeq, HeaderName, Method, Request, Response, StatusCode, Uri};
use sip::random::RandomKey;
use sip::rfc4733::Digit;
use sip::sdp::{LocalMedia, LocalSdp, MediaPreferences};
use sip::transaction::{TimerConfig, Transport};

use super::media::{AudioSource, DtmfMethod, MediaConfig, MediaEvent, MediaStream};
use super::{Datagram, Socket, UserAgent};
use crate::pii::Pii;

/// How long a BYE or a CANCEL may wait for its answer before the caller gives up on it.
const LEAVE_WITHIN: Duration = Duration::from_secs(4);
/// How many times a challenge is answered before giving up.
const MAX_AUTH_TRIES: u32 = 2;
const USER_AGENT: &str = concat!("veilig-bellen-call/", env!("CARGO_PKG_VERSION"));

/// How the code is keyed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CodeMethod {
    /// RFC 4733 telephone-events in the RTP stream.
    #[default]
    Rfc4733,
    /// SIP INFO requests, `application/dtmf-relay` (`Signal=`, `Duration=`).
    Info,
    /// DTMF tones in the G.711 audio.
    InBand,
}

impl CodeMethod {
    /// Short name for people: `RFC 4733`, `SIP INFO`, `in-band tones`.
    pub fn label(self) -> &'static str {
        match self {
            CodeMethod::Rfc4733 => "RFC 4733",
            CodeMethod::Info => "SIP INFO",
            CodeMethod::InBand => "in-band tones",
        }
    }
}

/// When the caller hangs up on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HangUp {
    /// This long after the code went out (after the answer when there is no code).
    After(Duration),
    /// Only when the far end hangs up (or [`Caller::hang_up`]).
    WhenFarEndDoes,
}

/// A SIP account for a 401/407 challenge.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub username: String,
    pub password: Pii<String>,
}

/// Everything a [`Caller`] needs; addresses already resolved and sockets already bound.
#[derive(Debug, Clone)]
pub struct CallerConfig {
    /// Where the INVITE goes.
    pub target: SocketAddr,
    /// The Request-URI and To, `sip:NUMBER@HOST[:PORT]`.
    pub request_uri: Uri,
    /// Our SIP socket's address (a concrete IP: it goes into Via and Contact).
    pub local_sip: SocketAddr,
    /// Our RTP socket's address (goes into the SDP offer).
    pub local_rtp: SocketAddr,
    /// The calling number (user part of From and Contact).
    pub from: String,
    /// The link code; may be empty (just call).
    pub code: Pii<Vec<Digit>>,
    pub method: CodeMethod,
    /// What to play (8 kHz samples, once); silence when absent.
    pub audio: Option<Arc<[i16]>>,
    pub hang_up: HangUp,
    /// No answer within this time: CANCEL.
    pub answer_timeout: Duration,
    /// Not even a 100 Trying within this time: give up (nothing listens there; over UDP the
    /// ICMP "port unreachable" does not reach an unconnected socket).
    pub response_timeout: Duration,
    /// Pause between the answer and the first digit.
    pub code_delay: Duration,
    pub credentials: Option<Credentials>,
    /// Keys branches, tags and the Call-ID; draw it from the OS.
    pub key: RandomKey,
    /// RTP identifiers (draw SSRC, sequence and timestamp at random), digit timing, thresholds.
    pub media: MediaConfig,
    /// SDP `o=` session id (random).
    pub sdp_session_id: u64,
    pub timers: TimerConfig,
}

/// Who ended the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    /// We did (hold time over, hang-up asked, or a failure after the answer).
    Caller,
    /// The far end sent BYE.
    FarEnd,
}

impl fmt::Display for Party {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Party::Caller => "caller",
            Party::FarEnd => "far end",
        })
    }
}

/// Why a call did not go through (or ended badly).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// A final non-2xx answer to the INVITE.
    Refused { status: u16, reason: String },
    /// Challenged (401/407) without usable credentials, or the credentials were refused.
    AuthRequired { status: u16 },
    /// Nothing came back at all (RFC 3261 Timer B), or the network refused the datagrams.
    NoResponse,
    /// Ringing, but no answer within the answer timeout.
    NoAnswer,
    /// We hung up before the answer.
    Cancelled,
    /// The 2xx could not be used (no To tag or Contact, or an SDP answer we cannot use).
    BadAnswer(String),
    /// The code could not be sent (no telephone-event negotiated, INFO refused).
    CodeNotSent(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Refused { status, reason } => write!(f, "refused with {status} {reason}"),
            Failure::AuthRequired { status } => write!(
                f,
                "the far end asks for a SIP account ({status}); none given or it was refused"
            ),
            Failure::NoResponse => f.write_str("no response from the far end"),
            Failure::NoAnswer => f.write_str("no answer"),
            Failure::Cancelled => f.write_str("hung up before the answer"),
            Failure::BadAnswer(why) => write!(f, "unusable answer: {why}"),
            Failure::CodeNotSent(why) => write!(f, "code not sent: {why}"),
        }
    }
}

/// What the caller reports, as it happens. No event carries a digit.
#[derive(Debug, Clone, PartialEq)]
pub enum CallEvent {
    /// The INVITE went out.
    Dialling { to: SocketAddr },
    /// A challenge was answered with the credentials.
    Authenticating { status: u16 },
    /// 180/183 (reported once).
    Ringing { status: u16 },
    /// 2xx: the call is up.
    Answered {
        after: Duration,
        codec: &'static str,
    },
    /// All digits of the code went out.
    CodeSent { digits: usize, method: CodeMethod },
    /// The first received frame above the heard threshold (ringback, a prompt, an agent).
    AudioHeard { level_dbfs: f64 },
    /// The call was up and has ended.
    Ended { by: Party, after: Duration },
    /// The call did not go through, or broke after the answer (then [`CallEvent::Ended`] follows).
    Failed(Failure),
}

/// The audio heard during the call.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct AudioSummary {
    /// Any frame above the heard threshold.
    pub heard: bool,
    pub frames_received: u64,
    pub frames_heard: u64,
    /// Loudest frame, dBFS (`-inf` when nothing was received).
    pub loudest_dbfs: f64,
    /// Power mean of the heard frames, dBFS (`-inf` when none).
    pub mean_heard_dbfs: f64,
}

/// How a call went, when it is over.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CallReport {
    /// Final status of the INVITE (200, 486, …); `None` when none came.
    pub status: Option<u16>,
    /// A 180/183 came.
    pub ringing: bool,
    /// Time from the INVITE to the 2xx.
    pub answered_after: Option<Duration>,
    /// How many digits the code has.
    pub code_digits: usize,
    /// How many digits went out, and how.
    pub code_sent: Option<(usize, CodeMethod)>,
    pub audio: AudioSummary,
    /// Who ended an answered call.
    pub ended_by: Option<Party>,
    /// Time from the answer to the end.
    pub connected_for: Option<Duration>,
    pub failure: Option<Failure>,
}

impl CallReport {
    /// The call was answered and the whole code went out: what `veilig-bellen call` exits 0 for.
    /// Whether the server verified the code is its business (`GET /api/v1/calls`).
    pub fn went_through(&self) -> bool {
        self.answered_after.is_some()
            && (self.code_digits == 0 || self.code_sent.is_some_and(|(n, _)| n == self.code_digits))
    }
}

/// Where the call is.
#[derive(Debug)]
enum State {
    /// INVITE sent, no final answer yet; `silent_until` while no response at all came.
    Calling {
        tx: ClientTxId,
        deadline: Instant,
        silent_until: Option<Instant>,
    },
    /// CANCEL asked; waiting for the 487 (or a 2xx that crossed it).
    Cancelling {
        tx: ClientTxId,
        until: Instant,
    },
    /// Answered (boxed: a dialog is large).
    Up(Box<Up>),
    /// BYE sent; waiting for its answer.
    Leaving {
        tx: ClientTxId,
        until: Instant,
    },
    Done,
}

#[derive(Debug)]
struct Up {
    dialog: Dialog,
    code: Code,
    hang_up_at: Option<Instant>,
    /// A re-INVITE we answered with 2xx, for the dialog's retransmissions.
    reinvite: Option<ServerTxId>,
}

/// Sending the code.
#[derive(Debug)]
enum Code {
    Waiting {
        at: Instant,
    },
    /// RFC 4733 or tones: the media stream is sending.
    InMedia,
    /// INFO: digits still to send, the one in flight, when the next may go.
    Info {
        left: VecDeque<Digit>,
        pending: Option<ClientTxId>,
        next_at: Instant,
    },
    Sent,
}

/// One outgoing call. See the module docs. `Debug` shows where the call is, never the messages
/// (INFO bodies carry digits).
pub struct Caller {
    config: CallerConfig,
    target: Target,
    ep: Endpoint,
    sdp: LocalSdp,
    invite: Request,
    state: State,
    started: Instant,
    answered_at: Option<Instant>,
    media: Option<MediaStream>,
    auth_tries: u32,
    /// A failure to report when the call is over.
    failure: Option<Failure>,
    report: CallReport,
    events: VecDeque<CallEvent>,
}

impl Caller {
    /// Starts the call at `now`: the INVITE is the first datagram to send.
    pub fn new(now: Instant, config: CallerConfig) -> Result<Caller, CallerError> {
        let mut config = config;
        config.media.rtp.signalling_ip = Some(config.target.ip());
        let target = Target {
            transport: Transport::Udp,
            addr: config.target,
        };
        let mut ep_config = EndpointConfig::new(config.key.clone());
        ep_config.timers = config.timers;
        let mut ep = Endpoint::new(ep_config);
        ep.add_local(Local {
            transport: Transport::Udp,
            addr: config.local_sip,
            advertise: None,
        });
        let contact = ep
            .contact_uri(Some(&config.from), target)
            .map_err(|_| CallerError::BadFrom)?;
        let from_uri = Uri::sip(
            Some(&config.from),
            &sip::endpoint::host_text(config.local_sip.ip()),
            None,
        )
        .map_err(|_| CallerError::BadFrom)?;
        let mut sdp = LocalSdp::new(config.sdp_session_id, MediaPreferences::default());
        let offer = sdp.offer(
            LocalMedia {
                addr: config.local_rtp.ip(),
                rtp_port: config.local_rtp.port(),
            },
            sip::sdp::Direction::SendRecv,
        );
        let tag = ep.new_tag();
        let call_id = ep.new_call_id(&sip::endpoint::host_text(config.local_sip.ip()));
        let mut invite = Request::new(Method::Invite, config.request_uri.clone());
        invite
            .headers
            .push(HeaderName::From, format!("<{from_uri}>;tag={tag}"));
        invite
            .headers
            .push(HeaderName::To, format!("<{}>", config.request_uri));
        invite.headers.push(HeaderName::CallId, call_id);
        invite.headers.push(
            HeaderName::CSeq,
            CSeq {
                seq: 1,
                method: Method::Invite,
            }
            .to_string(),
        );
        invite
            .headers
            .push(HeaderName::Contact, format!("<{contact}>"));
        invite.headers.push(
            HeaderName::Allow,
            "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE",
        );
        invite.headers.push(HeaderName::UserAgent, USER_AGENT);
        invite.set_body(Some("application/sdp"), offer);
        let mut caller = Caller {
            target,
            ep,
            sdp,
            invite: invite.clone(),
            state: State::Done,
            started: now,
            answered_at: None,
            media: None,
            auth_tries: 0,
            failure: None,
            report: CallReport {
                code_digits: config.code.expose().len(),
                ..CallReport::default()
            },
            events: VecDeque::new(),
            config,
        };
        let tx = caller
            .ep
            .send_request(now, invite, target)
            .map_err(|e| CallerError::Sip(e.to_string()))?;
        caller.state = State::Calling {
            tx,
            deadline: now + caller.config.answer_timeout,
            silent_until: Some(now + caller.config.response_timeout),
        };
        caller.events.push_back(CallEvent::Dialling {
            to: caller.config.target,
        });
        tracing::info!(to = %caller.config.target, "calling");
        Ok(caller)
    }

    /// Hang up: CANCEL before the answer, BYE after it; nothing once leaving.
    pub fn hang_up(&mut self, now: Instant) {
        match &self.state {
            State::Calling { tx, .. } => {
                let tx = *tx;
                self.cancel(now, tx, Failure::Cancelled);
            }
            State::Up(_) => self.leave(now),
            State::Cancelling { .. } | State::Leaving { .. } | State::Done => {}
        }
        self.pump(now);
    }

    /// Whether the call is up (answered and not yet leaving).
    pub fn is_up(&self) -> bool {
        matches!(self.state, State::Up(_))
    }

    /// How the call went so far (complete once [`UserAgent::is_finished`]).
    pub fn report(&self) -> CallReport {
        let mut report = self.report.clone();
        report.failure = self.failure.clone();
        if let Some(media) = &self.media {
            let s = media.stats();
            report.audio = AudioSummary {
                heard: s.frames_heard > 0,
                frames_received: s.frames_received,
                frames_heard: s.frames_heard,
                loudest_dbfs: s.loudest_dbfs,
                mean_heard_dbfs: s.mean_heard_dbfs,
            };
        } else {
            report.audio.loudest_dbfs = f64::NEG_INFINITY;
            report.audio.mean_heard_dbfs = f64::NEG_INFINITY;
        }
        report
    }

    // ---- SIP ------------------------------------------------------------------------------------

    /// Reacts to everything the endpoint, the dialog and the media have to say, until quiet.
    fn pump(&mut self, now: Instant) {
        loop {
            let mut busy = false;
            while let Some(event) = self.ep.poll_event() {
                busy = true;
                self.on_sip(now, event);
            }
            let dialog_events: Vec<DialogEvent> = match &mut self.state {
                State::Up(up) => std::iter::from_fn(|| up.dialog.poll_event()).collect(),
                _ => Vec::new(),
            };
            for event in dialog_events {
                busy = true;
                self.on_dialog(now, event);
            }
            while let Some(event) = self.media.as_mut().and_then(MediaStream::poll_event) {
                busy = true;
                self.on_media(now, event);
            }
            if !busy {
                break;
            }
        }
    }

    fn on_sip(&mut self, now: Instant, event: Event) {
        match event {
            Event::Response { id, response } => self.on_response(now, id, response),
            Event::Request { id, request, .. } => self.on_request(now, id, request),
            Event::Ack { request, .. } => {
                if let State::Up(up) = &mut self.state {
                    if up.dialog.handle_ack(now, &request) && !request.body.is_empty() {
                        self.apply_answer(now, &request.body);
                    }
                }
            }
            Event::Timeout { id } | Event::TransportError { id } => self.on_failed_tx(now, id),
            Event::Cancelled { .. } => {}
        }
    }

    fn on_failed_tx(&mut self, now: Instant, id: TxId) {
        let TxId::Client(id) = id else { return };
        match &mut self.state {
            State::Calling { tx, .. } if *tx == id => {
                self.fail(Failure::NoResponse);
                self.finish(now, None);
            }
            State::Cancelling { tx, .. } if *tx == id => self.finish(now, None),
            State::Leaving { tx, .. } if *tx == id => self.finish(now, None),
            State::Up(up) => {
                if matches!(up.code, Code::Info { pending: Some(p), .. } if p == id) {
                    self.fail(Failure::CodeNotSent("no answer to INFO".into()));
                    self.leave(now);
                }
            }
            _ => {}
        }
    }

    fn on_response(&mut self, now: Instant, id: ClientTxId, response: Response) {
        let Ok(cseq) = response.headers.cseq() else {
            return;
        };
        let status = response.status.as_u16();
        match (&self.state, cseq.method) {
            (State::Calling { tx, .. } | State::Cancelling { tx, .. }, Method::Invite)
                if *tx == id =>
            {
                self.on_invite_response(now, response)
            }
            // A retransmitted 2xx: our ACK was lost (§13.2.2.4).
            (State::Up(up), Method::Invite)
                if response.status.is_success() && up.dialog.matches_response(&response) =>
            {
                let ack = up.dialog.ack(cseq.seq);
                let peer = up.dialog.peer();
                let _ = self.ep.send_ack(now, ack, peer);
            }
            (State::Up(up), Method::Info) if status >= 200 => {
                if let Code::Info { pending, .. } = &up.code {
                    if *pending == Some(id) {
                        self.on_info_answered(now, status);
                    }
                }
            }
            (State::Leaving { tx, .. }, Method::Bye) if *tx == id && status >= 200 => {
                self.finish(now, None)
            }
            _ => {}
        }
    }

    fn on_invite_response(&mut self, now: Instant, response: Response) {
        let status = response.status.as_u16();
        if let State::Calling { silent_until, .. } = &mut self.state {
            *silent_until = None;
        }
        match status {
            100 => {}
            101..=199 => {
                if !self.report.ringing && matches!(status, 180 | 183) {
                    self.report.ringing = true;
                    self.events.push_back(CallEvent::Ringing { status });
                }
                if !response.body.is_empty() && self.media.is_none() {
                    // Early media (RFC 3960): listen to the ringback.
                    let _ = self.apply_answer(now, &response.body);
                }
            }
            200..=299 => self.on_answered(now, response),
            401 | 407 if matches!(self.state, State::Calling { .. }) => {
                self.report.status = Some(status);
                if !self.retry_with_auth(now, &response) {
                    self.fail(Failure::AuthRequired { status });
                    self.finish(now, None);
                }
            }
            _ => {
                self.report.status = Some(status);
                if matches!(self.state, State::Calling { .. }) {
                    self.fail(Failure::Refused {
                        status,
                        reason: response.reason.to_string(),
                    });
                }
                self.finish(now, None);
            }
        }
    }

    fn on_answered(&mut self, now: Instant, response: Response) {
        self.report.status = Some(response.status.as_u16());
        let cancelling = matches!(self.state, State::Cancelling { .. });
        let dialog = match Dialog::uac(
            now,
            &self.invite,
            &response,
            self.target,
            self.config.timers,
        ) {
            Ok(d) => d,
            Err(e) => {
                // Without a dialog there is no way to ACK or BYE properly; give up on it.
                self.fail(Failure::BadAnswer(e.to_string()));
                self.finish(now, None);
                return;
            }
        };
        let invite_seq = self.invite.headers.cseq().map(|c| c.seq).unwrap_or(1);
        let _ = self.ep.send_ack(now, dialog.ack(invite_seq), dialog.peer());
        self.answered_at = Some(now);
        let after = now.saturating_duration_since(self.started);
        self.report.answered_after = Some(after);
        let media_ok = if response.body.is_empty() {
            self.media.is_some()
        } else {
            self.apply_answer(now, &response.body)
        };
        let codec = self
            .media
            .as_ref()
            .map(|m| m.media().codec.kind().encoding_name())
            .unwrap_or("none");
        self.events.push_back(CallEvent::Answered { after, codec });
        tracing::info!(after_ms = after.as_millis() as u64, codec, "answered");
        let code = if self.config.code.expose().is_empty() {
            Code::Sent
        } else {
            Code::Waiting {
                at: now + self.config.code_delay,
            }
        };
        let hang_up_at = match (&code, self.config.hang_up) {
            (Code::Sent, HangUp::After(d)) => Some(now + d),
            _ => None,
        };
        self.state = State::Up(Box::new(Up {
            dialog,
            code,
            hang_up_at,
            reinvite: None,
        }));
        if let Some(audio) = &self.config.audio {
            if let Some(media) = &mut self.media {
                media.set_source(AudioSource::samples(audio.clone(), false));
            }
        }
        if cancelling {
            // The 2xx crossed our CANCEL: the call is up, end it at once (§9.1).
            self.leave(now);
        } else if !media_ok && self.config.method != CodeMethod::Info {
            self.fail(Failure::BadAnswer("no usable SDP answer".into()));
            self.leave(now);
        }
    }

    /// Reads an SDP answer into the media stream (new or updated); whether it was usable.
    fn apply_answer(&mut self, now: Instant, body: &[u8]) -> bool {
        match self.sdp.handle_answer(body) {
            Ok(session) => {
                match &mut self.media {
                    Some(media) => media.update_media(now, session),
                    None => {
                        self.media = Some(MediaStream::new(now, session, self.config.media.clone()))
                    }
                }
                true
            }
            Err(e) => {
                tracing::info!("unusable SDP from the far end: {e}");
                false
            }
        }
    }

    /// Answers a 401/407 with the credentials: the same INVITE with the next CSeq and an
    /// (Proxy-)Authorization (§22.2). `false` when there is nothing (more) to try.
    fn retry_with_auth(&mut self, now: Instant, response: &Response) -> bool {
        let Some(credentials) = &self.config.credentials else {
            return false;
        };
        if self.auth_tries >= MAX_AUTH_TRIES {
            return false;
        }
        let (challenge_header, answer_header) = if response.status.as_u16() == 407 {
            (
                HeaderName::ProxyAuthenticate,
                HeaderName::ProxyAuthorization,
            )
        } else {
            (HeaderName::WwwAuthenticate, HeaderName::Authorization)
        };
        let Some(challenge) = response
            .headers
            .get_all(&challenge_header)
            .find_map(|v| Challenge::parse(v))
        else {
            return false;
        };
        self.auth_tries += 1;
        let mut invite = self.invite.clone();
        let seq = invite.headers.cseq().map(|c| c.seq).unwrap_or(1) + 1;
        invite.headers.replace(
            HeaderName::CSeq,
            CSeq {
                seq,
                method: Method::Invite,
            }
            .to_string(),
        );
        invite.headers.remove(&HeaderName::Via);
        invite.headers.remove(&HeaderName::Authorization);
        invite.headers.remove(&HeaderName::ProxyAuthorization);
        let cnonce = self.ep.new_tag();
        let value = authorize(
            &challenge,
            &credentials.username,
            credentials.password.expose(),
            "INVITE",
            invite.uri.as_str(),
            &cnonce[..16.min(cnonce.len())],
            1,
        );
        invite.headers.push(answer_header, value);
        self.invite = invite.clone();
        match self.ep.send_request(now, invite, self.target) {
            Ok(tx) => {
                let deadline = match self.state {
                    State::Calling { deadline, .. } => deadline,
                    _ => now + self.config.answer_timeout,
                };
                self.state = State::Calling {
                    tx,
                    deadline,
                    silent_until: None,
                };
                self.events.push_back(CallEvent::Authenticating {
                    status: response.status.as_u16(),
                });
                true
            }
            Err(_) => false,
        }
    }

    fn on_request(&mut self, now: Instant, id: ServerTxId, request: Request) {
        let State::Up(up) = &mut self.state else {
            let status = StatusCode::CALL_TRANSACTION_DOES_NOT_EXIST;
            let _ = self
                .ep
                .respond(now, id, Response::for_request(&request, status, None));
            return;
        };
        if !up.dialog.matches_request(&request) {
            let status = StatusCode::CALL_TRANSACTION_DOES_NOT_EXIST;
            let _ = self
                .ep
                .respond(now, id, Response::for_request(&request, status, None));
            return;
        }
        if let Err(reject) = up.dialog.handle_request(now, &request) {
            let _ = self.ep.respond(now, id, reject);
            return;
        }
        let mut ok = up.dialog.response(&request, StatusCode::OK);
        match request.method {
            Method::Bye => {
                let _ = self.ep.respond(now, id, ok);
                tracing::info!("the far end hung up");
                self.finish(now, Some(Party::FarEnd));
            }
            Method::Invite | Method::Update => {
                let local = LocalMedia {
                    addr: self.config.local_rtp.ip(),
                    rtp_port: self.config.local_rtp.port(),
                };
                if request.body.is_empty() {
                    // An offerless re-INVITE: we offer in the 2xx, the answer comes in the ACK.
                    let offer = self.sdp.offer(local, sip::sdp::Direction::SendRecv);
                    ok.set_body(Some("application/sdp"), offer);
                } else {
                    match self.sdp.answer(&request.body, local) {
                        Ok(answer) => {
                            ok.set_body(Some("application/sdp"), answer.body);
                            if let Some(media) = &mut self.media {
                                media.update_media(now, answer.media);
                            }
                        }
                        Err(e) => {
                            let status =
                                StatusCode::new(e.sip_status()).unwrap_or(StatusCode::BAD_REQUEST);
                            let reject = up.dialog.response(&request, status);
                            let _ = self.ep.respond(now, id, reject);
                            return;
                        }
                    }
                }
                up.dialog.handle_sent_response(now, &ok);
                if request.method == Method::Invite {
                    up.reinvite = Some(id);
                }
                let _ = self.ep.respond(now, id, ok);
            }
            _ => {
                let _ = self.ep.respond(now, id, ok);
            }
        }
    }

    fn on_dialog(&mut self, now: Instant, event: DialogEvent) {
        let State::Up(up) = &mut self.state else {
            return;
        };
        match event {
            DialogEvent::Retransmit2xx(response) => {
                if let Some(id) = up.reinvite {
                    let _ = self.ep.respond(now, id, response);
                }
            }
            DialogEvent::SessionRefreshDue => {
                if let Ok(update) = up.dialog.update(None) {
                    let peer = up.dialog.peer();
                    let _ = self.ep.send_request(now, update, peer);
                }
            }
            DialogEvent::AckTimeout | DialogEvent::SessionExpired => self.leave(now),
            DialogEvent::RetryOffer => {}
        }
    }

    fn on_media(&mut self, now: Instant, event: MediaEvent) {
        match event {
            MediaEvent::AudioHeard { level_dbfs } => {
                self.events.push_back(CallEvent::AudioHeard { level_dbfs })
            }
            MediaEvent::DigitsSent { count, .. } => self.code_sent(now, count),
            MediaEvent::DigitReceived { .. }
            | MediaEvent::SourceEnded
            | MediaEvent::MediaTimeout => {}
        }
    }

    // ---- the code -------------------------------------------------------------------------------

    fn start_code(&mut self, now: Instant) {
        let digits = self.config.code.expose().clone();
        let method = self.config.method;
        let media_method = match method {
            CodeMethod::Rfc4733 => Some(DtmfMethod::Rfc4733),
            CodeMethod::InBand => Some(DtmfMethod::InBand),
            CodeMethod::Info => None,
        };
        let State::Up(up) = &mut self.state else {
            return;
        };
        match media_method {
            Some(m) => {
                let sent = match &mut self.media {
                    Some(media) => media
                        .send_digits(now, &digits, m)
                        .map_err(|e| e.to_string()),
                    None => Err("no media stream".to_owned()),
                };
                match sent {
                    Ok(()) => up.code = Code::InMedia,
                    Err(why) => {
                        self.fail(Failure::CodeNotSent(why));
                        self.leave(now);
                    }
                }
            }
            None => {
                up.code = Code::Info {
                    left: digits.into_iter().collect(),
                    pending: None,
                    next_at: now,
                };
                self.send_next_info(now);
            }
        }
        tracing::info!(
            digits = self.config.code.expose().len(),
            method = method.label(),
            "sending the code"
        );
    }

    fn send_next_info(&mut self, now: Instant) {
        let duration_ms = self.config.media.digit_duration.as_millis();
        let State::Up(up) = &mut self.state else {
            return;
        };
        let Code::Info {
            left,
            pending,
            next_at,
        } = &mut up.code
        else {
            return;
        };
        if pending.is_some() || now < *next_at {
            return;
        }
        let Some(digit) = left.pop_front() else {
            return;
        };
        let body = format!("Signal={}\r\nDuration={duration_ms}\r\n", digit.as_char());
        match up.dialog.info("application/dtmf-relay", Bytes::from(body)) {
            Ok(info) => match self.ep.send_request(now, info, up.dialog.peer()) {
                Ok(tx) => {
                    *pending = Some(tx);
                    *next_at = now + self.config.media.digit_duration + self.config.media.digit_gap;
                }
                Err(e) => {
                    self.fail(Failure::CodeNotSent(e.to_string()));
                    self.leave(now);
                }
            },
            Err(e) => {
                self.fail(Failure::CodeNotSent(e.to_string()));
                self.leave(now);
            }
        }
    }

    fn on_info_answered(&mut self, now: Instant, status: u16) {
        let State::Up(up) = &mut self.state else {
            return;
        };
        let Code::Info { left, pending, .. } = &mut up.code else {
            return;
        };
        *pending = None;
        if !(200..300).contains(&status) {
            self.fail(Failure::CodeNotSent(format!("INFO answered {status}")));
            self.leave(now);
            return;
        }
        if left.is_empty() {
            let count = self.config.code.expose().len();
            self.code_sent(now, count);
        } else {
            self.send_next_info(now);
        }
    }

    fn code_sent(&mut self, now: Instant, count: usize) {
        let method = self.config.method;
        let State::Up(up) = &mut self.state else {
            return;
        };
        up.code = Code::Sent;
        if let HangUp::After(d) = self.config.hang_up {
            up.hang_up_at = Some(now + d);
        }
        self.report.code_sent = Some((count, method));
        self.events.push_back(CallEvent::CodeSent {
            digits: count,
            method,
        });
        tracing::info!(digits = count, method = method.label(), "code sent");
    }

    // ---- ending ---------------------------------------------------------------------------------

    fn fail(&mut self, failure: Failure) {
        if self.failure.is_none() {
            tracing::info!("call failed: {failure}");
            self.events.push_back(CallEvent::Failed(failure.clone()));
            self.failure = Some(failure);
        }
    }

    fn cancel(&mut self, now: Instant, tx: ClientTxId, failure: Failure) {
        self.fail(failure);
        let _ = self.ep.cancel(now, tx);
        self.state = State::Cancelling {
            tx,
            until: now + LEAVE_WITHIN,
        };
    }

    /// Sends BYE on an answered call.
    fn leave(&mut self, now: Instant) {
        let State::Up(up) = &mut self.state else {
            return;
        };
        if let Some(media) = &mut self.media {
            media.stop();
        }
        let peer = up.dialog.peer();
        let sent = up
            .dialog
            .bye()
            .ok()
            .and_then(|bye| self.ep.send_request(now, bye, peer).ok());
        self.report.ended_by = Some(Party::Caller);
        self.record_end(now, Party::Caller);
        match sent {
            Some(tx) => {
                self.state = State::Leaving {
                    tx,
                    until: now + LEAVE_WITHIN,
                }
            }
            None => self.state = State::Done,
        }
    }

    /// The call is over; `by` when the far end ended an answered call.
    fn finish(&mut self, now: Instant, by: Option<Party>) {
        if let Some(media) = &mut self.media {
            media.stop();
        }
        if let Some(by) = by {
            self.record_end(now, by);
        }
        self.state = State::Done;
    }

    fn record_end(&mut self, now: Instant, by: Party) {
        if self.report.ended_by.is_some() && self.report.connected_for.is_some() {
            return;
        }
        let Some(answered) = self.answered_at else {
            return;
        };
        let after = now.saturating_duration_since(answered);
        self.report.ended_by = Some(by);
        self.report.connected_for = Some(after);
        self.events.push_back(CallEvent::Ended { by, after });
    }

    fn own_deadline(&self) -> Option<Instant> {
        match &self.state {
            State::Calling {
                deadline,
                silent_until,
                ..
            } => Some(silent_until.map_or(*deadline, |s| s.min(*deadline))),
            State::Cancelling { until, .. } | State::Leaving { until, .. } => Some(*until),
            State::Up(up) => {
                let code = match &up.code {
                    Code::Waiting { at } => Some(*at),
                    Code::Info {
                        pending: None,
                        next_at,
                        ..
                    } => Some(*next_at),
                    _ => None,
                };
                [code, up.hang_up_at].into_iter().flatten().min()
            }
            State::Done => None,
        }
    }

    fn fire_own(&mut self, now: Instant) {
        match &mut self.state {
            State::Calling {
                silent_until: Some(silent),
                ..
            } if *silent <= now => {
                self.fail(Failure::NoResponse);
                self.finish(now, None);
            }
            State::Calling { tx, deadline, .. } if *deadline <= now => {
                let tx = *tx;
                self.cancel(now, tx, Failure::NoAnswer);
            }
            State::Cancelling { until, .. } | State::Leaving { until, .. } if *until <= now => {
                self.finish(now, None)
            }
            State::Up(up) => {
                if up.hang_up_at.is_some_and(|t| t <= now) {
                    self.leave(now);
                    return;
                }
                match &up.code {
                    Code::Waiting { at } if *at <= now => self.start_code(now),
                    Code::Info { .. } => self.send_next_info(now),
                    _ => {}
                }
            }
            _ => {}
        }
    }
}

impl fmt::Debug for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Calling { .. } => "calling",
            State::Cancelling { .. } => "cancelling",
            State::Up(_) => "up",
            State::Leaving { .. } => "leaving",
            State::Done => "done",
        };
        f.debug_struct("Caller")
            .field("target", &self.config.target)
            .field("method", &self.config.method)
            .field("state", &state)
            .field("failure", &self.failure)
            .finish_non_exhaustive()
    }
}

impl UserAgent for Caller {
    type Event = CallEvent;

    fn handle_datagram(&mut self, now: Instant, socket: Socket, from: SocketAddr, bytes: Bytes) {
        match socket {
            Socket::Sip => {
                self.ep
                    .handle_datagram(now, Transport::Udp, self.config.local_sip, from, bytes)
            }
            Socket::Rtp => {
                if let Some(media) = &mut self.media {
                    media.handle_packet(now, from, &bytes);
                }
            }
        }
        self.pump(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.ep.handle_timeout(now);
        if let State::Up(up) = &mut self.state {
            up.dialog.handle_timeout(now);
        }
        if let Some(media) = &mut self.media {
            media.handle_timeout(now);
        }
        self.pump(now);
        self.fire_own(now);
        self.pump(now);
    }

    fn poll_transmit(&mut self) -> Option<Datagram> {
        if let Some(t) = self.ep.poll_transmit() {
            return Some(Datagram {
                socket: Socket::Sip,
                to: t.to,
                bytes: t.bytes,
            });
        }
        self.media.as_mut().and_then(MediaStream::poll_transmit)
    }

    fn poll_event(&mut self) -> Option<CallEvent> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if matches!(self.state, State::Done) {
            return None;
        }
        let dialog = match &self.state {
            State::Up(up) => up.dialog.poll_timeout(),
            _ => None,
        };
        [
            self.ep.poll_timeout(),
            dialog,
            self.media.as_ref().and_then(MediaStream::poll_timeout),
            self.own_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn is_finished(&self) -> bool {
        matches!(self.state, State::Done)
    }
}

/// Why a [`Caller`] could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallerError {
    /// The calling number does not fit a SIP URI user part.
    #[error("the calling number cannot go into a SIP URI")]
    BadFrom,
    /// The endpoint refused to send the INVITE.
    #[error("cannot send the INVITE: {0}")]
    Sip(String),
}

/// The digits of a code (`0-9 * # A-D`); `None` when any character is something else.
pub fn parse_code(code: &str) -> Option<Vec<Digit>> {
    code.chars().map(Digit::from_char).collect()
}

#[cfg(test)]
mod tests;
