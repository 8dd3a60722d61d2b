//! Two endpoints with dialogs on top, over the in-memory network with a virtual clock: a whole
//! call with a lost 200 OK, re-INVITE glare (491 and retry), session timers (refresh and expiry),
//! REFER with sipfrag NOTIFYs.

mod support;

use std::time::{Duration, Instant};

use sip::dialog::refer::SipFragStatus;
use sip::dialog::session_timer::{answer_request, SessionTimerConfig, UasSessionTimer};
use sip::dialog::{Dialog, DialogEvent, DialogState};
use sip::endpoint::{Endpoint, Event, ServerTxId, Target};
use sip::message::{HeaderName, Method, NameAddr, Request, Response, StatusCode};
use sip::testnet::{Agent, LinkConfig, Pair};
use sip::transaction::{TimerConfig, Transport};
use support::request;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A user agent: answers INVITEs, keeps one dialog, reacts to dialog events.
struct Phone {
    name: &'static str,
    /// The INVITE we sent (UAC).
    invite: Option<Request>,
    /// The server transaction of the last INVITE we answered with 2xx (UAS), for retransmissions.
    invite_tx: Option<ServerTxId>,
    dialog: Option<Dialog>,
    /// UAS session timer policy; `None`: no session timer.
    session: Option<SessionTimerConfig>,
    /// React to SessionRefreshDue with an UPDATE.
    refreshes: bool,
    /// Random input for the glare back-off.
    random: u32,
    /// Human-readable log: (time, what).
    log: Vec<(Instant, String)>,
    notifies: Vec<(SipFragStatus, bool)>,
    /// The transport the call runs over (the UAC's dialog peer).
    transport: Transport,
}

impl Phone {
    fn new(name: &'static str) -> Self {
        Phone {
            name,
            invite: None,
            invite_tx: None,
            dialog: None,
            session: None,
            refreshes: true,
            random: 0,
            log: Vec::new(),
            notifies: Vec::new(),
            transport: Transport::Udp,
        }
    }

    fn note(&mut self, now: Instant, what: impl Into<String>) {
        self.log.push((now, what.into()));
    }

    fn logged(&self, what: &str) -> Vec<Instant> {
        self.log
            .iter()
            .filter(|(_, w)| w == what)
            .map(|(t, _)| *t)
            .collect()
    }

    fn contact(&self, ep: &Endpoint) -> NameAddr {
        let _ = ep;
        let port = if self.name == "alice" { 5061 } else { 5062 };
        NameAddr::parse(format!("<sip:{}@127.0.0.1:{port}>", self.name)).unwrap()
    }

    fn send(&mut self, now: Instant, ep: &mut Endpoint, req: Request) {
        let peer = self.dialog.as_ref().map(Dialog::peer).unwrap();
        self.note(now, format!("sent {}", req.method));
        ep.send_request(now, req, peer).unwrap();
    }

    fn respond(&mut self, now: Instant, ep: &mut Endpoint, id: ServerTxId, resp: Response) {
        if let Some(d) = &mut self.dialog {
            d.handle_sent_response(now, &resp);
        }
        self.note(now, format!("answered {}", resp.status.as_u16()));
        ep.respond(now, id, resp).unwrap();
    }

    fn start_call(&mut self, pair: &mut Pair) {
        let mut invite = request(Method::Invite, pair.a_addr, pair.b_addr, "dlg-call", 1);
        invite.headers.push(HeaderName::Supported, "timer");
        self.invite = Some(invite.clone());
        let now = pair.now();
        pair.a.send_request(now, invite, pair.target_b()).unwrap();
    }

    fn reinvite(&mut self, now: Instant, ep: &mut Endpoint) {
        let req = self.dialog.as_mut().unwrap().reinvite(None).unwrap();
        self.send(now, ep, req);
    }

    fn handle_request(
        &mut self,
        now: Instant,
        ep: &mut Endpoint,
        id: ServerTxId,
        req: Request,
        peer: Target,
    ) {
        let in_dialog = req.headers.to().map(|t| t.tag().is_some()).unwrap_or(false);
        if req.method == Method::Invite && !in_dialog {
            let mut ok = Response::for_request(&req, StatusCode::OK, None).with_to_tag("bob-tag");
            ok.headers
                .push(HeaderName::Contact, self.contact(ep).to_string());
            if let Some(config) = self.session {
                let decision = answer_request(&config, &req);
                if let UasSessionTimer::TooSmall { .. } = decision {
                    let reject = decision.reject(&req).unwrap();
                    return self.respond(now, ep, id, reject);
                }
                decision.apply(&mut ok);
            }
            let dialog =
                Dialog::uas(&req, &ok, self.contact(ep), peer, TimerConfig::default()).unwrap();
            self.dialog = Some(dialog);
            self.invite_tx = Some(id);
            return self.respond(now, ep, id, ok);
        }
        let Some(dialog) = &mut self.dialog else {
            let resp =
                Response::for_request(&req, StatusCode::CALL_TRANSACTION_DOES_NOT_EXIST, None);
            return self.respond(now, ep, id, resp);
        };
        if let Err(reject) = dialog.handle_request(now, &req) {
            self.note(
                now,
                format!("rejected {} with {}", req.method, reject.status.as_u16()),
            );
            return self.respond(now, ep, id, reject);
        }
        let mut resp = dialog.response(&req, StatusCode::OK);
        match req.method {
            Method::Invite | Method::Update => {
                if req.method == Method::Invite {
                    self.invite_tx = Some(id);
                }
                if let Some(config) = self.session {
                    answer_request(&config, &req).apply(&mut resp);
                }
                self.note(now, format!("accepted {}", req.method));
            }
            Method::Refer => {
                resp = dialog.response(&req, StatusCode::ACCEPTED);
                self.respond(now, ep, id, resp);
                let dialog = self.dialog.as_mut().unwrap();
                let trying = SipFragStatus {
                    code: 100,
                    reason: "Trying".into(),
                };
                let n1 = dialog.notify_refer(&trying).unwrap();
                let done = SipFragStatus {
                    code: 200,
                    reason: "OK".into(),
                };
                let n2 = dialog.notify_refer(&done).unwrap();
                self.send(now, ep, n1);
                self.send(now, ep, n2);
                return;
            }
            Method::Notify => {
                if let Some(n) = Dialog::read_refer_notify(&req) {
                    self.notifies.push(n);
                }
            }
            _ => self.note(now, format!("accepted {}", req.method)),
        }
        self.respond(now, ep, id, resp);
    }

    fn handle_response(&mut self, now: Instant, ep: &mut Endpoint, resp: Response) {
        let Ok(cseq) = resp.headers.cseq() else {
            return;
        };
        self.note(now, format!("got {} {}", resp.status.as_u16(), cseq.method));
        if cseq.method == Method::Invite && resp.status.is_success() {
            let random = self.random;
            if let Some(d) = &mut self.dialog {
                d.handle_response(now, &resp, random);
            } else {
                let invite = self.invite.clone().unwrap();
                let peer = Target {
                    transport: self.transport,
                    addr: "127.0.0.1:5062".parse().unwrap(),
                };
                let d = Dialog::uac(now, &invite, &resp, peer, TimerConfig::default()).unwrap();
                self.dialog = Some(d);
            }
            let dialog = self.dialog.as_ref().unwrap();
            let (ack, peer) = (dialog.ack(cseq.seq), dialog.peer());
            self.note(now, "sent ACK");
            ep.send_ack(now, ack, peer).unwrap();
            return;
        }
        let random = self.random;
        if let Some(d) = &mut self.dialog {
            d.handle_response(now, &resp, random);
        }
    }
}

impl Agent for Phone {
    fn handle_event(&mut self, now: Instant, ep: &mut Endpoint, event: Event) {
        match event {
            Event::Request {
                id,
                request,
                source,
            } => {
                let peer = Target {
                    transport: source.transport,
                    addr: source.remote,
                };
                self.handle_request(now, ep, id, request, peer);
            }
            Event::Ack { request, .. } => {
                if let Some(d) = &mut self.dialog {
                    if d.handle_ack(now, &request) {
                        self.note(now, "got ACK");
                    }
                }
            }
            Event::Response { response, .. } => self.handle_response(now, ep, response),
            other => self.note(now, format!("{other:?}")),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.dialog.as_ref().and_then(Dialog::poll_timeout)
    }

    fn handle_timeout(&mut self, now: Instant, ep: &mut Endpoint) {
        let Some(d) = &mut self.dialog else { return };
        d.handle_timeout(now);
        while let Some(ev) = self.dialog.as_mut().and_then(Dialog::poll_event) {
            self.note(
                now,
                format!("{ev:?}").split('(').next().unwrap_or("").to_owned(),
            );
            match ev {
                DialogEvent::Retransmit2xx(resp) => {
                    if let Some(id) = self.invite_tx {
                        ep.respond(now, id, resp).unwrap();
                    }
                }
                DialogEvent::AckTimeout | DialogEvent::SessionExpired => {
                    let bye = self.dialog.as_mut().unwrap().bye().unwrap();
                    self.send(now, ep, bye);
                }
                DialogEvent::RetryOffer => self.reinvite(now, ep),
                DialogEvent::SessionRefreshDue => {
                    if self.refreshes {
                        let update = self.dialog.as_mut().unwrap().update(None).unwrap();
                        self.send(now, ep, update);
                    }
                }
            }
        }
    }
}

fn call(seed: u64, link: LinkConfig) -> (Pair, Phone, Phone) {
    call_over(seed, link, Transport::Udp)
}

fn call_over(seed: u64, link: LinkConfig, transport: Transport) -> (Pair, Phone, Phone) {
    let mut pair = Pair::new(Instant::now(), seed, link, transport);
    let mut alice = Phone::new("alice");
    alice.transport = transport;
    let bob = Phone::new("bob");
    alice.start_call(&mut pair);
    (pair, alice, bob)
}

#[test]
fn call_with_lost_200_ok_is_confirmed_and_bye_ends_it() {
    let (mut pair, mut alice, mut bob) = call(1, LinkConfig::perfect());
    let mut lost = false;
    pair.net.drop_if(move |p| {
        let first = p.first_line().starts_with("SIP/2.0 200") && !lost;
        lost |= first;
        first
    });
    pair.run(secs(2), &mut alice, &mut bob);
    let start = pair.now() - secs(2);
    assert_eq!(
        bob.logged("Retransmit2xx").len(),
        1,
        "one retransmission at T1"
    );
    assert_eq!(bob.logged("got ACK").len(), 1);
    assert_eq!(bob.dialog.as_ref().unwrap().state(), DialogState::Confirmed);
    assert_eq!(
        alice.dialog.as_ref().unwrap().state(),
        DialogState::Confirmed
    );
    // 200 resent at 510 ms, arrives at 520 ms; the ACK arrives 10 ms later.
    assert_eq!(bob.logged("got ACK")[0] - start, Duration::from_millis(530));

    let now = pair.now();
    let bye = alice.dialog.as_mut().unwrap().bye().unwrap();
    alice.send(now, &mut pair.a, bye);
    pair.run(secs(1), &mut alice, &mut bob);
    assert_eq!(alice.logged("got 200 BYE").len(), 1);
    assert_eq!(
        alice.dialog.as_ref().unwrap().state(),
        DialogState::Terminated
    );
    assert_eq!(
        bob.dialog.as_ref().unwrap().state(),
        DialogState::Terminated
    );
}

/// RFC 3261 §13.3.1.4: the UAS resends its 2xx "even if the transport at the UAS is reliable". Our
/// hop is TCP, but behind a proxy a later hop may be UDP and lose the 200 OK; only our
/// retransmission (relayed by the proxy) gets the caller its 200 and us its ACK.
#[test]
fn over_tcp_a_200_ok_lost_beyond_a_proxy_is_resent_until_acked() {
    let (mut pair, mut alice, mut bob) = call_over(11, LinkConfig::perfect(), Transport::Tcp);
    let mut lost = false;
    pair.net.drop_if(move |p| {
        let first = p.first_line().starts_with("SIP/2.0 200") && !lost;
        lost |= first;
        first
    });
    pair.run(secs(2), &mut alice, &mut bob);
    assert_eq!(bob.logged("Retransmit2xx").len(), 1, "{:?}", bob.log);
    assert_eq!(bob.logged("got ACK").len(), 1);
    assert_eq!(bob.dialog.as_ref().unwrap().state(), DialogState::Confirmed);
    assert_eq!(
        alice.dialog.as_ref().unwrap().state(),
        DialogState::Confirmed
    );
    pair.run(secs(40), &mut alice, &mut bob);
    assert!(
        bob.logged("AckTimeout").is_empty(),
        "the ACK stopped the wait"
    );
    assert_eq!(
        bob.logged("Retransmit2xx").len(),
        1,
        "nothing resent after the ACK"
    );
}

#[test]
fn reinvite_glare_gets_491_on_both_sides_and_both_retries_succeed() {
    let (mut pair, mut alice, mut bob) = call(2, LinkConfig::perfect());
    pair.run(secs(1), &mut alice, &mut bob);
    alice.random = 50; // owns the Call-ID: 2.1 s + 50·10 ms = 2.6 s
    bob.random = 70; // 0.7 s
    let now = pair.now();
    alice.reinvite(now, &mut pair.a);
    bob.reinvite(now, &mut pair.b);
    pair.run(secs(10), &mut alice, &mut bob);
    assert_eq!(alice.logged("rejected INVITE with 491").len(), 1);
    assert_eq!(bob.logged("rejected INVITE with 491").len(), 1);
    assert_eq!(alice.logged("got 491 INVITE").len(), 1);
    assert_eq!(bob.logged("got 491 INVITE").len(), 1);
    let bob_retry = bob.logged("RetryOffer")[0];
    let alice_retry = alice.logged("RetryOffer")[0];
    // Each 491 arrives 20 ms after the re-INVITEs left.
    assert_eq!(bob_retry - now, Duration::from_millis(20 + 700));
    assert_eq!(alice_retry - now, Duration::from_millis(20 + 2600));
    assert_eq!(
        alice.logged("accepted INVITE").len(),
        1,
        "bob's retry succeeded"
    );
    assert_eq!(
        bob.logged("accepted INVITE").len(),
        1,
        "alice's retry succeeded"
    );
    assert_eq!(
        alice.logged("got 200 INVITE").len(),
        2,
        "initial INVITE and the retry"
    );
    assert_eq!(bob.logged("got 200 INVITE").len(), 1);
    assert_eq!(
        bob.logged("got ACK").len(),
        2,
        "initial 2xx and alice's re-INVITE"
    );
}

#[test]
fn session_expires_without_refresh_and_the_uas_sends_bye() {
    let (mut pair, mut alice, mut bob) = call(3, LinkConfig::perfect());
    bob.session = Some(SessionTimerConfig {
        session_expires: 90,
        ..SessionTimerConfig::default()
    });
    alice.refreshes = false; // a UAC that promised to refresh and never does
    let start = pair.now();
    pair.run(secs(120), &mut alice, &mut bob);
    assert_eq!(
        alice.logged("SessionRefreshDue")[0] - start,
        Duration::from_millis(45_020)
    );
    let expired = bob.logged("SessionExpired");
    // Bob's 2xx went out at 10 ms; 90 − min(32, 30) = 60 s later the session is dead.
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0] - start, Duration::from_millis(60_010));
    assert_eq!(bob.logged("sent BYE").len(), 1);
    assert_eq!(alice.logged("accepted BYE").len(), 1);
    assert_eq!(
        alice.dialog.as_ref().unwrap().state(),
        DialogState::Terminated
    );
}

#[test]
fn session_refreshed_by_update_stays_up() {
    let (mut pair, mut alice, mut bob) = call(4, LinkConfig::perfect());
    bob.session = Some(SessionTimerConfig {
        session_expires: 90,
        ..SessionTimerConfig::default()
    });
    pair.run(secs(300), &mut alice, &mut bob);
    assert!(bob.logged("SessionExpired").is_empty());
    assert!(bob.logged("sent BYE").is_empty());
    let updates = alice.logged("sent UPDATE").len();
    assert!(
        (6..=7).contains(&updates),
        "every 45 s for 300 s: {updates}"
    );
    assert_eq!(bob.logged("accepted UPDATE").len(), updates);
    assert_eq!(alice.logged("got 200 UPDATE").len(), updates);
}

#[test]
fn session_interval_below_min_se_is_rejected_with_422() {
    let mut pair = Pair::new(Instant::now(), 5, LinkConfig::perfect(), Transport::Udp);
    let mut alice = Phone::new("alice");
    let mut bob = Phone::new("bob");
    bob.session = Some(SessionTimerConfig::default());
    let mut invite = request(Method::Invite, pair.a_addr, pair.b_addr, "dlg-422", 1);
    invite.headers.push(HeaderName::Supported, "timer");
    invite.headers.push(HeaderName::SessionExpires, "30");
    alice.invite = Some(invite.clone());
    pair.a
        .send_request(pair.now(), invite, pair.target_b())
        .unwrap();
    pair.run(secs(1), &mut alice, &mut bob);
    assert_eq!(alice.logged("got 422 INVITE").len(), 1);
    assert!(
        pair.net.sent("ACK").len() == 1,
        "the transaction ACKs the 422"
    );
}

#[test]
fn refer_is_accepted_and_notifies_carry_sipfrag_progress() {
    let (mut pair, mut alice, mut bob) = call(6, LinkConfig::perfect());
    pair.run(secs(1), &mut alice, &mut bob);
    let now = pair.now();
    let refer = bob
        .dialog
        .as_mut()
        .unwrap()
        .refer("<sip:agent@127.0.0.1:5070>")
        .unwrap();
    bob.send(now, &mut pair.b, refer);
    pair.run(secs(1), &mut alice, &mut bob);
    assert_eq!(bob.logged("got 202 REFER").len(), 1);
    let codes: Vec<(u16, bool)> = bob.notifies.iter().map(|(s, t)| (s.code, *t)).collect();
    assert_eq!(codes, vec![(100, false), (200, true)]);
    assert_eq!(alice.logged("got 200 NOTIFY").len(), 2);
}

#[test]
fn a_call_survives_a_lossy_link() {
    let link = LinkConfig {
        loss: 0.25,
        duplicate: 0.1,
        delay: Duration::from_millis(15),
        jitter: Duration::from_millis(40),
    };
    for seed in 0..10 {
        let (mut pair, mut alice, mut bob) = call(200 + seed, link);
        pair.run(secs(20), &mut alice, &mut bob);
        let a = alice.dialog.as_ref().map(Dialog::state);
        let b = bob.dialog.as_ref().map(Dialog::state);
        assert_eq!(
            a,
            Some(DialogState::Confirmed),
            "seed {seed}: {:?}",
            alice.log
        );
        assert_eq!(
            b,
            Some(DialogState::Confirmed),
            "seed {seed}: {:?}",
            bob.log
        );
        assert_eq!(bob.logged("got ACK").len(), 1, "seed {seed}");
        let now = pair.now();
        let bye = alice.dialog.as_mut().unwrap().bye().unwrap();
        alice.send(now, &mut pair.a, bye);
        pair.run(secs(40), &mut alice, &mut bob);
        assert_eq!(
            bob.dialog.as_ref().unwrap().state(),
            DialogState::Terminated,
            "seed {seed}"
        );
        assert_eq!(
            alice.dialog.as_ref().unwrap().state(),
            DialogState::Terminated,
            "seed {seed}"
        );
    }
}
