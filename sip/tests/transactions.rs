//! Two endpoints over the lossy in-memory network with a virtual clock: every transaction timer and
//! state of RFC 3261 §17 / RFC 6026 as seen from the wire.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sip::dialog::ack_wait::{AckWait, AckWaitEvent};
use sip::endpoint::{ClientTxId, Endpoint, EndpointConfig, Event, ServerTxId, TxId};
use sip::message::{HeaderName, Method, Request, Response};
use sip::testnet::{Agent, Fate, LinkConfig, Pair, Recorder};
use sip::transaction::{TimerConfig, Transport};
use support::{ack_for_2xx, answer, request};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Send times (ms since start) of packets whose start line begins with `prefix`.
fn send_times(pair: &Pair, prefix: &str) -> Vec<u64> {
    pair.net
        .sent(prefix)
        .iter()
        .map(|t| t.at.as_millis() as u64)
        .collect()
}

/// A UAS that answers INVITE with 200 and retransmits the 2xx until the ACK (§13.3.1.4).
#[derive(Default)]
struct AnsweringUas {
    invite: Option<(ServerTxId, Request)>,
    response: Option<Response>,
    wait: Option<AckWait>,
    acks: usize,
    gave_up_at: Option<Instant>,
    provisional_only: bool,
    cancelled: Vec<ServerTxId>,
    other: Vec<Event>,
}

impl Agent for AnsweringUas {
    fn handle_event(&mut self, now: Instant, ep: &mut Endpoint, event: Event) {
        match event {
            Event::Request {
                id,
                request,
                source,
            } if request.method == Method::Invite => {
                let ringing = answer(&request, 180, "uas-tag", source.local);
                ep.respond(now, id, ringing).unwrap();
                if !self.provisional_only {
                    let ok = answer(&request, 200, "uas-tag", source.local);
                    ep.respond(now, id, ok.clone()).unwrap();
                    self.response = Some(ok);
                    self.wait = Some(AckWait::new(now, TimerConfig::default()));
                }
                self.invite = Some((id, request));
            }
            Event::Request { id, request, .. } => {
                let ok = answer(&request, 200, "uas-tag", "127.0.0.1:5062".parse().unwrap());
                ep.respond(now, id, ok).unwrap();
            }
            Event::Ack { .. } => {
                self.acks += 1;
                if let Some(w) = &mut self.wait {
                    w.handle_ack();
                }
            }
            Event::Cancelled { id, .. } => self.cancelled.push(id),
            other => self.other.push(other),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.wait.as_ref().and_then(AckWait::poll_timeout)
    }

    fn handle_timeout(&mut self, now: Instant, ep: &mut Endpoint) {
        let Some(w) = &mut self.wait else { return };
        while let Some(ev) = w.handle_timeout(now) {
            match ev {
                AckWaitEvent::Retransmit => {
                    if let (Some((id, _)), Some(resp)) = (&self.invite, &self.response) {
                        ep.respond(now, *id, resp.clone()).unwrap();
                    }
                }
                AckWaitEvent::GaveUp => self.gave_up_at = Some(now),
            }
        }
    }
}

/// A UAC that ACKs every 2xx (again for each retransmission) and records events.
struct AckingUac {
    invite: Request,
    target: sip::endpoint::Target,
    events: Vec<(Instant, Event)>,
}

impl Agent for AckingUac {
    fn handle_event(&mut self, now: Instant, ep: &mut Endpoint, event: Event) {
        if let Event::Response { response, .. } = &event {
            if response.status.is_success()
                && response.headers.cseq().map(|c| c.method) == Ok(Method::Invite)
            {
                let ack = ack_for_2xx(&self.invite, response);
                ep.send_ack(now, ack, self.target).unwrap();
            }
        }
        self.events.push((now, event));
    }
}

fn start_invite(pair: &mut Pair) -> (ClientTxId, AckingUac) {
    let invite = request(Method::Invite, pair.a_addr, pair.b_addr, "call-1", 1);
    let now = pair.now();
    let target = pair.target_b();
    let id = pair.a.send_request(now, invite.clone(), target).unwrap();
    (
        id,
        AckingUac {
            invite,
            target,
            events: Vec::new(),
        },
    )
}

/// Sends a `method` request from A to B in a new client transaction.
fn send_from_a(pair: &mut Pair, method: Method, call_id: &str, cseq: u32) -> ClientTxId {
    let req = request(method, pair.a_addr, pair.b_addr, call_id, cseq);
    let now = pair.now();
    pair.a.send_request(now, req, pair.target_b()).unwrap()
}

/// A fresh endpoint on 127.0.0.1:5060 that received `raw` over UDP from `source`.
fn endpoint_fed(now: Instant, source: SocketAddr, raw: &str) -> Endpoint {
    let mut ep = Endpoint::new(sip::testnet::test_config(1));
    let raw = raw.as_bytes().to_vec().into();
    ep.handle_datagram(now, Transport::Udp, local_5060(), source, raw);
    ep
}

fn local_5060() -> SocketAddr {
    "127.0.0.1:5060".parse().unwrap()
}

fn statuses(events: &[(Instant, Event)]) -> Vec<u16> {
    events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Response { response, .. } => Some(response.status.as_u16()),
            _ => None,
        })
        .collect()
}

#[test]
fn invite_answered_on_a_clean_link_is_acked_once() {
    let mut pair = Pair::new(Instant::now(), 1, LinkConfig::perfect(), Transport::Udp);
    let (_, mut uac) = start_invite(&mut pair);
    let mut uas = AnsweringUas::default();
    pair.run(secs(40), &mut uac, &mut uas);
    assert_eq!(statuses(&uac.events), vec![100, 180, 200]);
    assert_eq!(uas.acks, 1);
    assert_eq!(send_times(&pair, "SIP/2.0 200"), vec![10]);
    assert_eq!(send_times(&pair, "INVITE"), vec![0]);
    assert_eq!(
        pair.a.transaction_count(),
        (0, 0),
        "Timer M ended the client transaction"
    );
    assert_eq!(
        pair.b.transaction_count(),
        (0, 0),
        "Timer L ended the server transaction"
    );
}

#[test]
fn lost_200_ok_is_retransmitted_until_ack() {
    let mut pair = Pair::new(Instant::now(), 2, LinkConfig::perfect(), Transport::Udp);
    let mut lost = 0;
    pair.net.drop_if(move |p| {
        if p.first_line().starts_with("SIP/2.0 200") && lost < 2 {
            lost += 1;
            return true;
        }
        false
    });
    let (_, mut uac) = start_invite(&mut pair);
    let mut uas = AnsweringUas::default();
    pair.run(secs(40), &mut uac, &mut uas);
    // Sent at 10 ms, resent after T1 and 2·T1; the third copy arrives and is ACKed.
    assert_eq!(send_times(&pair, "SIP/2.0 200"), vec![10, 510, 1510]);
    let fates: Vec<Fate> = pair
        .net
        .sent("SIP/2.0 200")
        .iter()
        .map(|t| t.fate)
        .collect();
    assert_eq!(fates, vec![Fate::Dropped, Fate::Dropped, Fate::Delivered]);
    assert_eq!(statuses(&uac.events), vec![100, 180, 200]);
    assert_eq!(uas.acks, 1);
    assert_eq!(uas.gave_up_at, None);
}

#[test]
fn lost_ack_times_out_at_64_t1() {
    let start = Instant::now();
    let mut pair = Pair::new(start, 3, LinkConfig::perfect(), Transport::Udp);
    pair.net.drop_if(|p| p.first_line().starts_with("ACK"));
    let (_, mut uac) = start_invite(&mut pair);
    let mut uas = AnsweringUas::default();
    pair.run(secs(60), &mut uac, &mut uas);
    assert_eq!(uas.acks, 0);
    assert_eq!(
        send_times(&pair, "SIP/2.0 200"),
        vec![10, 510, 1510, 3510, 7510, 11510, 15510, 19510, 23510, 27510, 31510]
    );
    assert_eq!(uas.gave_up_at.map(|t| t - start), Some(ms(32_010)));
    // The UAC re-ACKs every retransmitted 2xx it receives (RFC 6026 Accepted state).
    assert_eq!(pair.net.sent("ACK").len(), 11);
}

#[test]
fn invite_client_retransmits_with_timer_a_doubling_and_times_out_with_timer_b() {
    let start = Instant::now();
    let mut pair = Pair::new(start, 4, LinkConfig::perfect(), Transport::Udp);
    pair.net.drop_if(|p| p.first_line().starts_with("INVITE"));
    let (id, mut uac) = start_invite(&mut pair);
    let mut uas = Recorder::default();
    pair.run(secs(60), &mut uac, &mut uas);
    assert_eq!(
        send_times(&pair, "INVITE"),
        vec![0, 500, 1500, 3500, 7500, 15500, 31500]
    );
    let timeouts: Vec<_> = uac
        .events
        .iter()
        .filter(|(_, e)| {
            *e == Event::Timeout {
                id: TxId::Client(id),
            }
        })
        .map(|(t, _)| *t - start)
        .collect();
    assert_eq!(timeouts, vec![secs(32)]);
    assert!(uas.events.is_empty());
}

#[test]
fn non_invite_retransmits_per_timer_e_and_times_out_with_timer_f() {
    let start = Instant::now();
    let mut pair = Pair::new(start, 5, LinkConfig::perfect(), Transport::Udp);
    pair.net.drop_if(|p| p.first_line().starts_with("OPTIONS"));
    let id = send_from_a(&mut pair, Method::Options, "opt-1", 1);
    let (mut a, mut b) = (Recorder::default(), Recorder::default());
    pair.run(secs(60), &mut a, &mut b);
    assert_eq!(
        send_times(&pair, "OPTIONS"),
        vec![0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
    );
    assert_eq!(a.events.len(), 1);
    assert_eq!(a.events[0].0 - start, secs(32));
    assert_eq!(
        a.events[0].1,
        Event::Timeout {
            id: TxId::Client(id)
        }
    );
}

#[test]
fn non_invite_final_response_stops_timer_e_and_timer_k_ends_the_transaction() {
    let start = Instant::now();
    let mut pair = Pair::new(start, 6, LinkConfig::perfect(), Transport::Udp);
    send_from_a(&mut pair, Method::Options, "opt-2", 1);
    let mut a = Recorder::default();
    let mut uas = AnsweringUas::default();
    pair.run(ms(100), &mut a, &mut uas);
    assert_eq!(statuses(&a.events), vec![200]);
    assert_eq!(
        pair.a.transaction_count(),
        (0, 1),
        "Completed, waiting Timer K"
    );
    assert_eq!(
        pair.b.transaction_count(),
        (1, 0),
        "Completed, waiting Timer J"
    );
    pair.run(secs(5), &mut a, &mut uas);
    assert_eq!(pair.a.transaction_count(), (0, 0), "Timer K (T4) fired");
    assert_eq!(pair.b.transaction_count(), (1, 0));
    pair.run(secs(30), &mut a, &mut uas);
    assert_eq!(pair.b.transaction_count(), (0, 0), "Timer J (64·T1) fired");
    assert_eq!(send_times(&pair, "OPTIONS"), vec![0]);
}

#[test]
fn reliable_transport_never_retransmits() {
    let start = Instant::now();
    let mut pair = Pair::new(start, 7, LinkConfig::perfect(), Transport::Tcp);
    // A peer that never answers INVITE or OPTIONS.
    pair.net.drop_if(|p| !p.first_line().starts_with("SIP/2.0"));
    let (id, mut uac) = start_invite(&mut pair);
    let opt_id = send_from_a(&mut pair, Method::Options, "opt-3", 1);
    let mut b = Recorder::default();
    pair.run(secs(60), &mut uac, &mut b);
    assert_eq!(send_times(&pair, "INVITE"), vec![0]);
    assert_eq!(send_times(&pair, "OPTIONS"), vec![0]);
    let timeouts: Vec<_> = uac
        .events
        .iter()
        .map(|(t, e)| (*t - start, e.clone()))
        .collect();
    assert!(timeouts.contains(&(
        secs(32),
        Event::Timeout {
            id: TxId::Client(id)
        }
    )));
    assert!(timeouts.contains(&(
        secs(32),
        Event::Timeout {
            id: TxId::Client(opt_id)
        }
    )));
}

#[test]
fn reliable_transport_call_leaves_no_transaction_behind_after_ack() {
    let start = Instant::now();
    let mut pair = Pair::new(start, 8, LinkConfig::perfect(), Transport::Tcp);
    send_from_a(&mut pair, Method::Bye, "bye-1", 2);
    let mut a = Recorder::default();
    let mut uas = AnsweringUas::default();
    pair.run(ms(100), &mut a, &mut uas);
    assert_eq!(statuses(&a.events), vec![200]);
    assert_eq!(pair.a.transaction_count(), (0, 0), "Timer K is zero on TCP");
    assert_eq!(pair.b.transaction_count(), (0, 0), "Timer J is zero on TCP");
}

#[test]
fn cancel_gets_200_and_the_invite_487_which_is_acked() {
    let start = Instant::now();
    let mut pair = Pair::new(start, 9, LinkConfig::perfect(), Transport::Udp);
    let (id, mut uac) = start_invite(&mut pair);
    let mut uas = AnsweringUas {
        provisional_only: true,
        ..Default::default()
    };
    pair.run(ms(500), &mut uac, &mut uas);
    assert_eq!(statuses(&uac.events), vec![100, 180]);
    pair.a.cancel(pair.now(), id).unwrap();
    pair.run(secs(40), &mut uac, &mut uas);
    assert_eq!(statuses(&uac.events), vec![100, 180, 200, 487]);
    let cancel_ok = uac.events.iter().any(|(_, e)| {
        matches!(e,
        Event::Response { id: other, response } if *other != id
            && response.headers.cseq().map(|c| c.method) == Ok(Method::Cancel))
    });
    assert!(cancel_ok, "the 200 belongs to the CANCEL transaction");
    assert_eq!(uas.cancelled.len(), 1);
    let acks = pair.net.sent("ACK");
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].cseq.as_deref(), Some("1 ACK"));
    assert_eq!(
        send_times(&pair, "SIP/2.0 487").len(),
        1,
        "ACK stopped Timer G"
    );
    assert_eq!(pair.b.transaction_count(), (0, 0));
    assert_eq!(pair.a.transaction_count(), (0, 0));
}

#[test]
fn cancel_before_any_provisional_waits_for_one() {
    let start = Instant::now();
    let mut pair = Pair::new(start, 10, LinkConfig::perfect(), Transport::Udp);
    // The UAS is slow: lose its 100 Trying so the UAC has seen nothing when it cancels.
    pair.net
        .drop_if(|p| p.first_line().starts_with("SIP/2.0 100"));
    let (id, mut uac) = start_invite(&mut pair);
    let mut uas = Recorder::default();
    pair.run(ms(5), &mut uac, &mut Recorder::default());
    pair.a.cancel(pair.now(), id).unwrap();
    pair.run(ms(400), &mut uac, &mut uas);
    assert!(
        pair.net.sent("CANCEL").is_empty(),
        "§9.1: no CANCEL before a provisional"
    );
    pair.net.clear_drop_rule();
    pair.run(secs(40), &mut uac, &mut uas);
    assert_eq!(
        send_times(&pair, "CANCEL"),
        vec![520],
        "sent on the 100 to the retransmission"
    );
    assert!(statuses(&uac.events).ends_with(&[200, 487]));
}

#[test]
fn duplicated_requests_and_responses_are_absorbed() {
    let start = Instant::now();
    let link = LinkConfig {
        duplicate: 1.0,
        ..LinkConfig::perfect()
    };
    let mut pair = Pair::new(start, 11, link, Transport::Udp);
    send_from_a(&mut pair, Method::Options, "dup-1", 1);
    let mut a = Recorder::default();
    let mut uas = AnsweringUas::default();
    pair.run(secs(1), &mut a, &mut uas);
    assert_eq!(
        statuses(&a.events),
        vec![200],
        "the duplicate 200 is absorbed"
    );
    assert_eq!(
        pair.b.stats().absorbed_requests,
        1,
        "the duplicate OPTIONS is absorbed"
    );
    assert_eq!(
        pair.net.sent("SIP/2.0 200").len(),
        1,
        "in Trying nothing is resent"
    );
    // A late copy of the OPTIONS, after the answer: the transaction resends its 200.
    pair.net.link = LinkConfig::perfect();
    pair.net.replay(0);
    pair.run(secs(1), &mut a, &mut uas);
    assert_eq!(pair.net.sent("SIP/2.0 200").len(), 2);
    assert_eq!(
        statuses(&a.events),
        vec![200],
        "the client absorbs it in Completed"
    );
    assert_eq!(pair.b.stats().absorbed_requests, 2);
}

#[test]
fn stray_response_is_dropped() {
    let start = Instant::now();
    let mut pair = Pair::new(start, 12, LinkConfig::perfect(), Transport::Udp);
    let stray = "SIP/2.0 200 OK\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bKnobodysent\r\n\
        From: <sip:uac@127.0.0.1>;tag=1\r\n\
        To: <sip:uas@127.0.0.1>;tag=2\r\n\
        Call-ID: stray\r\n\
        CSeq: 1 OPTIONS\r\n\
        Content-Length: 0\r\n\r\n";
    pair.a.handle_datagram(
        start,
        Transport::Udp,
        pair.a_addr,
        pair.b_addr,
        stray.as_bytes().to_vec().into(),
    );
    assert_eq!(pair.a.poll_event(), None);
    assert_eq!(pair.a.poll_transmit(), None);
    assert_eq!(pair.a.stats().stray_responses, 1);
}

#[test]
fn forged_responses_from_elsewhere_are_dropped_and_the_real_answer_still_counts() {
    for transport in [Transport::Udp, Transport::Tcp] {
        let start = Instant::now();
        let mut pair = Pair::new(start, 21, LinkConfig::perfect(), transport);
        let (id, mut uac) = start_invite(&mut pair);
        let mut uas = AnsweringUas {
            provisional_only: true,
            ..AnsweringUas::default()
        };
        pair.run(ms(100), &mut uac, &mut uas);
        // Someone who saw the INVITE (its branch) answers it 200 — from another host, from another
        // port of B's host (another connection, for TCP), and from B's address over the other
        // transport.
        let invite = Request::parse(pair.net.sent("INVITE")[0].bytes.clone()).unwrap();
        let forger: SocketAddr = "127.0.0.9:5062".parse().unwrap();
        let forged = answer(&invite, 200, "forged", forger).to_bytes();
        let other = match transport {
            Transport::Udp => Transport::Tcp,
            _ => Transport::Udp,
        };
        let next_port = SocketAddr::new(pair.b_addr.ip(), pair.b_addr.port() + 1);
        for (transport, from) in [
            (transport, forger),
            (transport, next_port),
            (other, pair.b_addr),
        ] {
            pair.net.send(sip::endpoint::Transmit {
                transport,
                from_local: from,
                to: pair.a_addr,
                bytes: forged.clone(),
            });
        }
        pair.run(ms(100), &mut uac, &mut uas);
        let finals = |uac: &AckingUac| {
            uac.events
                .iter()
                .filter_map(|(_, e)| match e {
                    Event::Response { id: got, response } if *got == id => Some(response.clone()),
                    _ => None,
                })
                .filter(|r| r.status.as_u16() >= 200)
                .collect::<Vec<_>>()
        };
        assert!(
            finals(&uac).is_empty(),
            "{transport}: a forged 200 OK got through"
        );
        assert_eq!(pair.a.stats().foreign_responses, 3, "{transport}");
        assert!(
            pair.net.sent("ACK").is_empty(),
            "{transport}: nobody ACKs a forgery"
        );

        // The real phone answers: that 200 OK is the one the UAC sees.
        let (server_id, request) = uas.invite.clone().unwrap();
        let ok = answer(&request, 200, "uas-tag", pair.b_addr);
        let now = pair.now();
        pair.b.respond(now, server_id, ok).unwrap();
        pair.run(ms(100), &mut uac, &mut uas);
        let answered = finals(&uac);
        assert_eq!(answered.len(), 1, "{transport}: {answered:?}");
        assert_eq!(answered[0].headers.to().unwrap().tag(), Some("uas-tag"));
        assert_eq!(pair.a.stats().foreign_responses, 3, "{transport}");
    }
}

#[test]
fn options_answered_by_the_endpoint_when_configured() {
    let start = Instant::now();
    let config = EndpointConfig {
        answer_options: true,
        ..sip::testnet::test_config(13)
    };
    let mut pair = Pair::with_config(start, 13, LinkConfig::perfect(), Transport::Udp, config);
    send_from_a(&mut pair, Method::Options, "opt-4", 1);
    let (mut a, mut b) = (Recorder::default(), Recorder::default());
    pair.run(secs(1), &mut a, &mut b);
    assert!(b.events.is_empty(), "the TU never saw the OPTIONS");
    let Some((_, Event::Response { response, .. })) = a.events.first() else {
        panic!("no response: {:?}", a.events);
    };
    assert_eq!(response.status.as_u16(), 200);
    let allow = response.headers.get(&HeaderName::Allow).unwrap();
    assert!(allow.contains("INVITE") && allow.contains("OPTIONS"));
    assert!(response.headers.to().unwrap().tag().is_some());
}

#[test]
fn response_goes_to_packet_source_with_received_and_rport() {
    let start = Instant::now();
    let source: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    // The Via names a host we must never contact.
    let raw = "OPTIONS sip:uas@127.0.0.1 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 192.0.2.7:5999;branch=z9hG4bKnat1;rport\r\n\
        Max-Forwards: 70\r\n\
        From: <sip:uac@example.com>;tag=9\r\n\
        To: <sip:uas@127.0.0.1>\r\n\
        Call-ID: nat-1\r\n\
        CSeq: 7 OPTIONS\r\n\
        Content-Length: 0\r\n\r\n";
    let mut ep = endpoint_fed(start, source, raw);
    let Some(Event::Request { id, request, .. }) = ep.poll_event() else {
        panic!("expected the request");
    };
    let via = request.headers.top_via().unwrap();
    assert_eq!(via.received(), Some("127.0.0.1"));
    assert_eq!(via.rport(), Some(Some(40000)));
    let local = local_5060();
    let resp = answer(&request, 200, "t", local);
    ep.respond(start, id, resp).unwrap();
    let t = ep.poll_transmit().unwrap();
    assert_eq!(t.to, source);
    assert_eq!(t.from_local, local);
    let text = String::from_utf8_lossy(&t.bytes);
    assert!(text.contains("received=127.0.0.1"), "{text}");
    assert!(text.contains("rport=40000"), "{text}");
}

#[test]
fn malformed_request_is_answered_400_statelessly_to_its_source() {
    let start = Instant::now();
    let source: SocketAddr = "127.0.0.1:40001".parse().unwrap();
    let raw = "OPTIONS sip:uas@127.0.0.1 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 192.0.2.7;branch=z9hG4bKbad1\r\n\
        Max-Forwards: 70\r\n\
        From: <sip:uac@example.com>;tag=9\r\n\
        To: <sip:uas@127.0.0.1>\r\n\
        CSeq: 7 OPTIONS\r\n\
        Content-Length: 0\r\n\r\n";
    let mut ep = endpoint_fed(start, source, raw);
    let t = ep.poll_transmit().expect("a 400");
    assert_eq!(t.to, source);
    assert!(t.bytes.starts_with(b"SIP/2.0 400"));
    assert_eq!(ep.poll_event(), None);
    assert_eq!(ep.stats().rejected, 1);
}

#[test]
fn calls_and_options_complete_over_a_lossy_reordering_link() {
    let start = Instant::now();
    let link = LinkConfig {
        loss: 0.2,
        duplicate: 0.1,
        delay: ms(20),
        jitter: ms(60),
    };
    for seed in 0..20u64 {
        let mut pair = Pair::new(start, 100 + seed, link, Transport::Udp);
        let (_, mut uac) = start_invite(&mut pair);
        for n in 0..5 {
            let req = request(
                Method::Options,
                pair.a_addr,
                pair.b_addr,
                &format!("lossy-{n}"),
                1,
            );
            pair.a
                .send_request(pair.now(), req, pair.target_b())
                .unwrap();
        }
        let mut uas = AnsweringUas::default();
        pair.run(secs(40), &mut uac, &mut uas);
        let finals: Vec<u16> = statuses(&uac.events)
            .into_iter()
            .filter(|s| *s >= 200)
            .collect();
        // One 200 per OPTIONS, at least one for the INVITE (2xx retransmissions reach the TU).
        assert!(finals.len() >= 6, "seed {seed}: {finals:?}");
        assert!(finals.iter().all(|s| *s == 200), "seed {seed}: {finals:?}");
        assert_eq!(uas.acks.min(1), 1, "seed {seed}: the 2xx was ACKed");
        assert_eq!(uas.gave_up_at, None, "seed {seed}");
        let requests_seen = uas.other.len();
        assert_eq!(
            requests_seen, 0,
            "seed {seed}: no timeouts or errors at the UAS"
        );
    }
}
