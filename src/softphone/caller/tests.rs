//! The [`Caller`] against a scripted UAS (a `sip` endpoint, a dialog and a [`MediaStream`]) on
//! simulated time: datagrams are delivered at once, the clock jumps from deadline to deadline, so
//! a ten-second call runs in milliseconds.

use super::*;
use crate::softphone::media::MediaConfig;
use sip::auth::{Authenticator, DigestConfig, DigestResponse, Secret};
use sip::endpoint::Source;
use sip::message::NameAddr;
use sip::rtp::RtpConfig;

const CODE: &str = "31415926";
const UAS_SIP: &str = "127.0.0.1:5060";
const UAS_RTP: &str = "127.0.0.1:30000";
const CALLER_SIP: &str = "127.0.0.1:40000";
const CALLER_RTP: &str = "127.0.0.1:40002";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

fn config(method: CodeMethod) -> CallerConfig {
    CallerConfig {
        target: addr(UAS_SIP),
        request_uri: Uri::parse("sip:+31850000000@127.0.0.1:5060").expect("test URI"),
        local_sip: addr(CALLER_SIP),
        local_rtp: addr(CALLER_RTP),
        from: "+31612345678".into(),
        code: Pii::new(parse_code(CODE).expect("test code")),
        method,
        audio: None,
        hang_up: HangUp::After(Duration::from_secs(2)),
        answer_timeout: Duration::from_secs(30),
        response_timeout: Duration::from_secs(5),
        code_delay: Duration::from_millis(500),
        credentials: None,
        key: RandomKey::from_bytes([1; 32]),
        media: MediaConfig::default(),
        sdp_session_id: 1,
        timers: TimerConfig::default(),
    }
}

/// What the scripted far end does.
#[derive(Clone)]
struct Plan {
    /// Send 180 first.
    ring: bool,
    /// Answer this long after the INVITE; `None`: never.
    answer_after: Option<Duration>,
    /// Refuse with this status instead.
    refuse: Option<u16>,
    /// Drop every SIP datagram from the caller.
    silent: bool,
    /// Send BYE this long after the answer.
    bye_after: Option<Duration>,
    /// Offer telephone-event in the answer.
    telephone_event: bool,
    /// Ask for this password (407) first.
    password: Option<&'static str>,
    /// Drop the caller's first ACK.
    lose_first_ack: bool,
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            ring: true,
            answer_after: Some(Duration::from_millis(800)),
            refuse: None,
            silent: false,
            bye_after: None,
            telephone_event: true,
            password: None,
            lose_first_ack: false,
        }
    }
}

/// The far end: answers (or not), plays a tone, collects digits from RTP, INFO and tones.
struct Uas {
    plan: Plan,
    ep: Endpoint,
    auth: Authenticator,
    invite: Option<(ServerTxId, Request, Target)>,
    answer_at: Option<Instant>,
    bye_at: Option<Instant>,
    dialog: Option<Dialog>,
    media: Option<MediaStream>,
    /// Methods (and INFO bodies) received, in order.
    log: Vec<String>,
    /// Digits received, by any method.
    digits: String,
    acks_dropped: usize,
}

impl Uas {
    fn new(plan: Plan, now: Instant) -> Uas {
        let mut ep = Endpoint::new(EndpointConfig::new(RandomKey::from_bytes([2; 32])));
        ep.add_local(Local {
            transport: Transport::Udp,
            addr: addr(UAS_SIP),
            advertise: None,
        });
        Uas {
            plan,
            ep,
            auth: Authenticator::new(DigestConfig::new("test"), [3; 32], now),
            invite: None,
            answer_at: None,
            bye_at: None,
            dialog: None,
            media: None,
            log: Vec::new(),
            digits: String::new(),
            acks_dropped: 0,
        }
    }

    fn logged(&self, what: &str) -> usize {
        self.log.iter().filter(|l| l.starts_with(what)).count()
    }

    fn sip_in(&mut self, now: Instant, bytes: Bytes) {
        if self.plan.silent {
            return;
        }
        if self.plan.lose_first_ack && bytes.starts_with(b"ACK") && self.acks_dropped == 0 {
            self.acks_dropped += 1;
            return;
        }
        self.ep
            .handle_datagram(now, Transport::Udp, addr(UAS_SIP), addr(CALLER_SIP), bytes);
        self.pump(now);
    }

    fn pump(&mut self, now: Instant) {
        while let Some(event) = self.ep.poll_event() {
            match event {
                Event::Request {
                    id,
                    request,
                    source,
                } => self.on_request(now, id, request, source),
                Event::Ack { request, .. } => {
                    self.log.push("ACK".into());
                    if let Some(d) = &mut self.dialog {
                        d.handle_ack(now, &request);
                    }
                }
                Event::Cancelled { .. } => {
                    self.log.push("CANCEL".into());
                    self.answer_at = None;
                }
                Event::Response { response, .. } => {
                    self.log.push(format!("got {}", response.status.as_u16()))
                }
                Event::Timeout { .. } | Event::TransportError { .. } => {}
            }
        }
        let events: Vec<DialogEvent> = self
            .dialog
            .as_mut()
            .map(|d| std::iter::from_fn(|| d.poll_event()).collect())
            .unwrap_or_default();
        for event in events {
            if let (DialogEvent::Retransmit2xx(ok), Some((id, ..))) = (event, &self.invite) {
                self.log.push("retransmitted 200".into());
                let _ = self.ep.respond(now, *id, ok);
            }
        }
        while let Some(event) = self.media.as_mut().and_then(MediaStream::poll_event) {
            if let MediaEvent::DigitReceived { digit, .. } = event {
                self.digits.push(digit.as_char());
            }
        }
    }

    fn on_request(&mut self, now: Instant, id: ServerTxId, request: Request, source: Source) {
        let in_dialog = request.headers.to().is_ok_and(|t| t.tag().is_some());
        if request.method == Method::Invite && !in_dialog {
            self.log.push("INVITE".into());
            let peer = Target {
                transport: source.transport,
                addr: source.remote,
            };
            if let Some(password) = self.plan.password {
                let verified = request
                    .headers
                    .get(&HeaderName::ProxyAuthorization)
                    .and_then(|v| DigestResponse::parse(v).ok().flatten())
                    .is_some_and(|creds| {
                        self.auth
                            .verify(
                                now,
                                "INVITE",
                                request.uri.as_str(),
                                &creds,
                                Some(&Secret::Password(password.into())),
                            )
                            .is_ok()
                    });
                if !verified {
                    let mut challenge = Response::for_request(
                        &request,
                        StatusCode::PROXY_AUTHENTICATION_REQUIRED,
                        None,
                    )
                    .with_to_tag("uas-challenge");
                    for c in self.auth.challenges(now, false) {
                        challenge
                            .headers
                            .push(HeaderName::ProxyAuthenticate, c.to_string());
                    }
                    self.log.push("challenged".into());
                    let _ = self.ep.respond(now, id, challenge);
                    return;
                }
            }
            if let Some(status) = self.plan.refuse {
                let status = StatusCode::new(status).expect("test status");
                let refusal = Response::for_request(&request, status, None).with_to_tag("uas");
                let _ = self.ep.respond(now, id, refusal);
                return;
            }
            if self.plan.ring {
                let ringing =
                    Response::for_request(&request, StatusCode::RINGING, None).with_to_tag("uas");
                let _ = self.ep.respond(now, id, ringing);
            }
            self.answer_at = self.plan.answer_after.map(|d| now + d);
            self.invite = Some((id, request, peer));
            return;
        }
        let Some(dialog) = &mut self.dialog else {
            let status = StatusCode::CALL_TRANSACTION_DOES_NOT_EXIST;
            let _ = self
                .ep
                .respond(now, id, Response::for_request(&request, status, None));
            return;
        };
        if let Err(reject) = dialog.handle_request(now, &request) {
            let _ = self.ep.respond(now, id, reject);
            return;
        }
        let ok = dialog.response(&request, StatusCode::OK);
        match request.method {
            Method::Info => {
                let body = String::from_utf8_lossy(&request.body).into_owned();
                if let Some(d) = crate::call::task::dtmf_from_info(&request) {
                    self.digits.push(d);
                }
                self.log.push(format!("INFO {body}"));
            }
            Method::Bye => {
                self.log.push("BYE".into());
                if let Some(m) = &mut self.media {
                    m.stop();
                }
            }
            other => self.log.push(other.to_string()),
        }
        let _ = self.ep.respond(now, id, ok);
    }

    fn answer(&mut self, now: Instant) {
        let Some((id, request, peer)) = self.invite.clone() else {
            return;
        };
        let mut ok = Response::for_request(&request, StatusCode::OK, None).with_to_tag("uas");
        let contact = NameAddr::parse(format!("<sip:uas@{UAS_SIP}>")).expect("test contact");
        ok.headers.push(HeaderName::Contact, contact.to_string());
        let prefs = MediaPreferences {
            telephone_event: self.plan.telephone_event,
            ..MediaPreferences::default()
        };
        let rtp = addr(UAS_RTP);
        let answer = LocalSdp::new(9, prefs)
            .answer(
                &request.body,
                LocalMedia {
                    addr: rtp.ip(),
                    rtp_port: rtp.port(),
                },
            )
            .expect("the caller's offer is usable");
        ok.set_body(Some("application/sdp"), answer.body);
        let mut dialog = Dialog::uas(&request, &ok, contact, peer, TimerConfig::default())
            .expect("dialog from our 200");
        dialog.handle_sent_response(now, &ok);
        self.dialog = Some(dialog);
        let _ = self.ep.respond(now, id, ok);
        let mut media = MediaStream::new(
            now,
            answer.media,
            MediaConfig {
                detect_tones: true,
                rtp: RtpConfig {
                    local_ssrc: 99,
                    ..RtpConfig::default()
                },
                ..MediaConfig::default()
            },
        );
        media.set_source(AudioSource::tone(425, -13.0).expect("test tone"));
        self.media = Some(media);
        self.bye_at = self.plan.bye_after.map(|d| now + d);
        self.answer_at = None;
        self.log.push("answered".into());
    }

    fn poll_timeout(&self) -> Option<Instant> {
        [
            self.ep.poll_timeout(),
            self.dialog.as_ref().and_then(Dialog::poll_timeout),
            self.media.as_ref().and_then(MediaStream::poll_timeout),
            self.answer_at,
            self.bye_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.ep.handle_timeout(now);
        if let Some(d) = &mut self.dialog {
            d.handle_timeout(now);
        }
        if let Some(m) = &mut self.media {
            m.handle_timeout(now);
        }
        if self.answer_at.is_some_and(|t| t <= now) {
            self.answer(now);
        }
        if self.bye_at.is_some_and(|t| t <= now) {
            self.bye_at = None;
            if let Some(d) = &mut self.dialog {
                if let Ok(bye) = d.bye() {
                    let peer = d.peer();
                    self.log.push("sent BYE".into());
                    let _ = self.ep.send_request(now, bye, peer);
                }
            }
            if let Some(m) = &mut self.media {
                m.stop();
            }
        }
        self.pump(now);
    }
}

/// The caller and the far end on one simulated clock.
struct Net {
    now: Instant,
    caller: Caller,
    uas: Uas,
    events: Vec<CallEvent>,
}

impl Net {
    fn new(config: CallerConfig, plan: Plan) -> Net {
        let now = Instant::now();
        Net {
            now,
            caller: Caller::new(now, config).expect("caller starts"),
            uas: Uas::new(plan, now),
            events: Vec::new(),
        }
    }

    /// Moves datagrams until both sides are quiet.
    fn deliver(&mut self) {
        loop {
            let mut moved = false;
            while let Some(d) = self.caller.poll_transmit() {
                moved = true;
                match d.socket {
                    Socket::Sip => {
                        assert_eq!(d.to, addr(UAS_SIP));
                        self.uas.sip_in(self.now, d.bytes);
                    }
                    Socket::Rtp => {
                        assert_eq!(d.to, addr(UAS_RTP));
                        if let Some(m) = &mut self.uas.media {
                            m.handle_packet(self.now, addr(CALLER_RTP), &d.bytes);
                        }
                        self.uas.pump(self.now);
                    }
                }
            }
            while let Some(t) = self.uas.ep.poll_transmit() {
                moved = true;
                self.caller
                    .handle_datagram(self.now, Socket::Sip, addr(UAS_SIP), t.bytes);
            }
            while let Some(d) = self.uas.media.as_mut().and_then(MediaStream::poll_transmit) {
                moved = true;
                self.caller
                    .handle_datagram(self.now, Socket::Rtp, addr(UAS_RTP), d.bytes);
            }
            self.events
                .extend(std::iter::from_fn(|| self.caller.poll_event()));
            if !moved {
                break;
            }
        }
    }

    /// Runs until the caller is finished (or `limit` of simulated time passed); the report.
    fn run(&mut self, limit: Duration) -> CallReport {
        let end = self.now + limit;
        self.deliver();
        while !self.caller.is_finished() {
            let next = [self.caller.poll_timeout(), self.uas.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            let Some(next) = next.filter(|&n| n <= end) else {
                break;
            };
            self.now = self.now.max(next);
            self.caller.handle_timeout(self.now);
            self.uas.handle_timeout(self.now);
            self.deliver();
        }
        // Let the far end take in the last datagrams.
        self.uas.handle_timeout(self.now);
        self.caller.report()
    }

    fn hang_up(&mut self) {
        self.caller.hang_up(self.now);
        self.deliver();
    }

    fn kinds(&self) -> Vec<&'static str> {
        self.events
            .iter()
            .map(|e| match e {
                CallEvent::Dialling { .. } => "dialling",
                CallEvent::Authenticating { .. } => "authenticating",
                CallEvent::Ringing { .. } => "ringing",
                CallEvent::Answered { .. } => "answered",
                CallEvent::CodeSent { .. } => "code sent",
                CallEvent::AudioHeard { .. } => "audio heard",
                CallEvent::Ended { .. } => "ended",
                CallEvent::Failed(_) => "failed",
            })
            .collect()
    }
}

#[test]
fn rfc4733_code_reaches_the_far_end_and_the_caller_hangs_up_after_the_hold() {
    let mut net = Net::new(config(CodeMethod::Rfc4733), Plan::default());
    let report = net.run(Duration::from_secs(60));
    assert_eq!(net.uas.digits, CODE);
    assert_eq!(
        net.kinds(),
        [
            "dialling",
            "ringing",
            "answered",
            "audio heard",
            "code sent",
            "ended"
        ]
    );
    assert!(report.went_through(), "{report:?}");
    assert_eq!(report.status, Some(200));
    assert_eq!(report.answered_after, Some(Duration::from_millis(800)));
    assert_eq!(report.code_sent, Some((8, CodeMethod::Rfc4733)));
    assert_eq!(report.ended_by, Some(Party::Caller));
    assert!(report.audio.heard);
    assert!((report.audio.loudest_dbfs + 16.1).abs() < 0.5);
    // 0.5 s delay, 7 × 240 ms + 120 ms of digits, 2 s hold.
    let up = report.connected_for.expect("connected");
    assert!(
        up >= Duration::from_millis(4250) && up < Duration::from_millis(4350),
        "{up:?}"
    );
    assert_eq!(net.uas.logged("BYE"), 1);
    assert_eq!(net.uas.logged("ACK"), 1);
    assert!(net.caller.is_finished());
}

#[test]
fn info_digits_go_one_request_at_a_time_as_the_server_reads_them() {
    let mut net = Net::new(config(CodeMethod::Info), Plan::default());
    let report = net.run(Duration::from_secs(60));
    assert!(report.went_through(), "{report:?}");
    assert_eq!(net.uas.digits, CODE);
    let infos: Vec<&String> = net
        .uas
        .log
        .iter()
        .filter(|l| l.starts_with("INFO"))
        .collect();
    assert_eq!(infos.len(), 8);
    assert_eq!(infos[0], "INFO Signal=3\r\nDuration=120\r\n");
    assert_eq!(report.code_sent, Some((8, CodeMethod::Info)));
}

#[test]
fn inband_tones_are_detected_by_the_far_end() {
    let mut net = Net::new(config(CodeMethod::InBand), Plan::default());
    let report = net.run(Duration::from_secs(60));
    assert!(report.went_through(), "{report:?}");
    assert_eq!(net.uas.digits, CODE);
    assert_eq!(report.code_sent, Some((8, CodeMethod::InBand)));
}

#[test]
fn a_far_end_bye_ends_a_call_that_stays() {
    let mut c = config(CodeMethod::Rfc4733);
    c.hang_up = HangUp::WhenFarEndDoes;
    let plan = Plan {
        bye_after: Some(Duration::from_secs(7)),
        ..Plan::default()
    };
    let mut net = Net::new(c, plan);
    let report = net.run(Duration::from_secs(60));
    assert!(report.went_through());
    assert_eq!(report.ended_by, Some(Party::FarEnd));
    assert_eq!(report.connected_for, Some(Duration::from_secs(7)));
    assert_eq!(net.uas.log.last().map(String::as_str), Some("got 200"));
    assert!(net.events.contains(&CallEvent::Ended {
        by: Party::FarEnd,
        after: Duration::from_secs(7)
    }));
}

#[test]
fn a_refusal_fails_with_its_status() {
    let plan = Plan {
        refuse: Some(486),
        ..Plan::default()
    };
    let mut net = Net::new(config(CodeMethod::Rfc4733), plan);
    let report = net.run(Duration::from_secs(60));
    assert!(!report.went_through());
    assert_eq!(report.status, Some(486));
    assert_eq!(
        report.failure,
        Some(Failure::Refused {
            status: 486,
            reason: "Busy Here".into()
        })
    );
    assert_eq!(net.kinds(), ["dialling", "failed"]);
    // The endpoint ACKs the non-2xx itself (§17.1.1.3).
    assert_eq!(net.uas.logged("INVITE"), 1);
}

#[test]
fn no_answer_is_cancelled_at_the_answer_timeout() {
    let mut c = config(CodeMethod::Rfc4733);
    c.answer_timeout = Duration::from_secs(3);
    let plan = Plan {
        answer_after: None,
        ..Plan::default()
    };
    let mut net = Net::new(c, plan);
    let report = net.run(Duration::from_secs(60));
    assert_eq!(report.failure, Some(Failure::NoAnswer));
    assert_eq!(report.status, Some(487));
    assert!(report.ringing);
    assert_eq!(net.uas.logged("CANCEL"), 1);
    assert_eq!(
        net.now.duration_since(net.caller.started),
        Duration::from_secs(3)
    );
}

#[test]
fn hanging_up_while_it_rings_cancels() {
    let plan = Plan {
        answer_after: None,
        ..Plan::default()
    };
    let mut net = Net::new(config(CodeMethod::Rfc4733), plan);
    net.run(Duration::from_secs(1));
    assert!(!net.caller.is_finished());
    net.hang_up();
    let report = net.run(Duration::from_secs(10));
    assert!(net.caller.is_finished());
    assert_eq!(report.failure, Some(Failure::Cancelled));
    assert_eq!(net.uas.logged("CANCEL"), 1);
    assert_eq!(net.kinds(), ["dialling", "ringing", "failed"]);
}

#[test]
fn hanging_up_while_the_code_goes_out_sends_bye() {
    let mut net = Net::new(config(CodeMethod::Rfc4733), Plan::default());
    net.run(Duration::from_millis(1500));
    assert!(net.caller.is_up());
    net.hang_up();
    let report = net.run(Duration::from_secs(10));
    assert!(!report.went_through(), "not the whole code");
    assert_eq!(report.ended_by, Some(Party::Caller));
    assert_eq!(net.uas.logged("BYE"), 1);
    assert!(net.uas.digits.len() < 8);
}

#[test]
fn a_challenge_is_answered_with_the_credentials() {
    let mut c = config(CodeMethod::Rfc4733);
    c.credentials = Some(Credentials {
        username: "trunk".into(),
        password: Pii::new("s3cret".into()),
    });
    let plan = Plan {
        password: Some("s3cret"),
        ..Plan::default()
    };
    let mut net = Net::new(c, plan);
    let report = net.run(Duration::from_secs(60));
    assert!(report.went_through(), "{report:?}");
    assert_eq!(net.uas.logged("challenged"), 1);
    assert_eq!(net.uas.logged("INVITE"), 2);
    assert_eq!(net.uas.digits, CODE);
    assert_eq!(net.kinds()[..3], ["dialling", "authenticating", "ringing"]);
}

#[test]
fn a_challenge_without_good_credentials_fails() {
    for credentials in [
        None,
        Some(Credentials {
            username: "trunk".into(),
            password: Pii::new("wrong".into()),
        }),
    ] {
        let mut c = config(CodeMethod::Rfc4733);
        let tries = if credentials.is_some() { 3 } else { 1 };
        c.credentials = credentials;
        let plan = Plan {
            password: Some("s3cret"),
            ..Plan::default()
        };
        let mut net = Net::new(c, plan);
        let report = net.run(Duration::from_secs(60));
        assert_eq!(report.failure, Some(Failure::AuthRequired { status: 407 }));
        assert_eq!(net.uas.logged("INVITE"), tries);
    }
}

#[test]
fn silence_fails_with_no_response() {
    let plan = Plan {
        silent: true,
        ..Plan::default()
    };
    let mut net = Net::new(config(CodeMethod::Rfc4733), plan);
    let report = net.run(Duration::from_secs(60));
    assert_eq!(report.failure, Some(Failure::NoResponse));
    assert_eq!(report.status, None);
    assert_eq!(
        net.now.duration_since(net.caller.started),
        Duration::from_secs(5)
    );
}

#[test]
fn a_retransmitted_200_is_acked_again() {
    let plan = Plan {
        lose_first_ack: true,
        ..Plan::default()
    };
    let mut net = Net::new(config(CodeMethod::Rfc4733), plan);
    let report = net.run(Duration::from_secs(60));
    assert!(report.went_through());
    assert_eq!(net.uas.logged("retransmitted 200"), 1);
    assert_eq!(net.uas.logged("ACK"), 1);
    assert_eq!(net.uas.digits, CODE);
}

#[test]
fn rfc4733_without_telephone_event_fails_and_hangs_up() {
    let plan = Plan {
        telephone_event: false,
        ..Plan::default()
    };
    let mut net = Net::new(config(CodeMethod::Rfc4733), plan);
    let report = net.run(Duration::from_secs(60));
    assert!(!report.went_through());
    assert!(matches!(report.failure, Some(Failure::CodeNotSent(_))));
    assert_eq!(net.uas.logged("BYE"), 1);
    // Tones still work on such a far end.
    let plan = Plan {
        telephone_event: false,
        ..Plan::default()
    };
    let mut net = Net::new(config(CodeMethod::InBand), plan);
    assert!(net.run(Duration::from_secs(60)).went_through());
    assert_eq!(net.uas.digits, CODE);
}

#[test]
fn no_event_or_debug_output_shows_the_code() {
    for method in [CodeMethod::Rfc4733, CodeMethod::Info, CodeMethod::InBand] {
        let mut net = Net::new(config(method), Plan::default());
        net.run(Duration::from_millis(1700));
        let shown = format!(
            "{:?} {:?} {:?}",
            net.events,
            net.caller,
            net.caller.report()
        );
        assert!(!shown.contains(CODE), "{method:?}");
        for digit in CODE.chars() {
            assert!(!shown.contains(&format!("Signal={digit}")));
        }
        net.run(Duration::from_secs(60));
        let shown = format!("{:?} {:?}", net.events, net.caller.report());
        assert!(!shown.contains(CODE));
    }
}

#[test]
fn an_empty_code_just_calls_and_holds() {
    let mut c = config(CodeMethod::Rfc4733);
    c.code = Pii::new(Vec::new());
    let mut net = Net::new(c, Plan::default());
    let report = net.run(Duration::from_secs(60));
    assert!(report.went_through());
    assert_eq!(report.code_sent, None);
    assert_eq!(report.connected_for, Some(Duration::from_secs(2)));
}

#[test]
fn codes_parse() {
    assert_eq!(parse_code("0123456789*#abcD").map(|d| d.len()), Some(16));
    assert!(parse_code("12 4").is_none());
    assert!(parse_code("１").is_none());
}
