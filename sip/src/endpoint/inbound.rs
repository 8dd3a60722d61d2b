//! Receiving (RFC 3261 §18.2.1, §17.2.3, §8.2.2.2, §9.2, §17.1.3; RFC 3581): validation,
//! `received`/`rport`, matching requests and responses to transactions, merged requests, CANCEL,
//! automatic OPTIONS answers.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use bytes::Bytes;

use super::outbound::build_non_2xx_ack;
use super::*;
use crate::message::validate::{self, Inbound};

impl Endpoint {
    pub(super) fn handle_inbound(&mut self, now: Instant, source: Source, bytes: Bytes) {
        match validate::check(bytes, &self.config.policy) {
            Inbound::Request(request) => self.handle_request(now, request, source),
            Inbound::Response(response) => self.handle_response(now, response, source),
            Inbound::Reject(response) => self.reject(source, response),
            Inbound::Drop(_) => self.stats.dropped += 1,
        }
    }

    pub(super) fn handle_request(&mut self, now: Instant, mut request: Request, source: Source) {
        stamp_received(&mut request, source.remote);
        let Ok(key) = TransactionKey::for_request(&request) else {
            self.stats.dropped += 1;
            return;
        };
        if request.method == Method::Ack {
            let delivery = match self.server_keys.get(&key).copied() {
                Some(id) => match self.server.get_mut(&id).map(|e| &mut e.machine) {
                    Some(ServerMachine::Invite(m)) => {
                        let d = m.handle_ack(now);
                        self.flush_server(id);
                        d
                    }
                    _ => Delivery::ToTu,
                },
                None => Delivery::ToTu,
            };
            if delivery == Delivery::ToTu {
                self.events.push_back(Event::Ack { request, source });
            }
            return;
        }
        if let Some(id) = self.server_keys.get(&key).copied() {
            self.stats.absorbed_requests += 1;
            if let Some(e) = self.server.get_mut(&id) {
                match &mut e.machine {
                    ServerMachine::Invite(m) => m.handle_request_retransmission(now),
                    ServerMachine::NonInvite(m) => m.handle_request_retransmission(now),
                }
            }
            self.flush_server(id);
            return;
        }
        let merge_key = merge_key(&request);
        if let Some(mk) = &merge_key {
            if self.merge_keys.contains_key(mk) {
                // §8.2.2.2: the same request reached us twice by different paths.
                let response = Response::for_request(&request, StatusCode::LOOP_DETECTED, None);
                self.reject(source, response);
                return;
            }
        }
        let reliable = source.transport.is_reliable();
        let machine = if request.method == Method::Invite {
            ServerMachine::Invite(ServerInvite::new(self.config.timers, reliable))
        } else {
            ServerMachine::NonInvite(ServerNonInvite::new(self.config.timers, reliable))
        };
        let id = ServerTxId(self.next_id());
        self.server_keys.insert(key.clone(), id);
        if let Some(mk) = &merge_key {
            self.merge_keys.insert(mk.clone(), id);
        }
        self.server.insert(
            id,
            ServerEntry {
                key: key.clone(),
                merge_key,
                request: request.clone(),
                source,
                to_tag: None,
                machine,
            },
        );
        self.schedule_server(id);
        match request.method {
            Method::Invite => {
                // §17.2.1: we send 100 Trying at once rather than after 200 ms.
                let trying = Response::for_request(&request, StatusCode::TRYING, None);
                let _ = self.respond(now, id, trying);
                self.events.push_back(Event::Request {
                    id,
                    request,
                    source,
                });
            }
            Method::Cancel => self.handle_cancel(now, id, &key, request),
            Method::Options if self.config.answer_options && !has_to_tag(&request) => {
                let response = self.options_answer(&request);
                let _ = self.respond(now, id, response);
            }
            _ => self.events.push_back(Event::Request {
                id,
                request,
                source,
            }),
        }
    }

    /// Answers a request statelessly (no transaction), to the packet's source.
    fn reject(&mut self, source: Source, response: Response) {
        self.stats.rejected += 1;
        self.transmits.push_back(Transmit {
            transport: source.transport,
            from_local: source.local,
            to: source.remote,
            bytes: response.to_bytes(),
        });
    }

    /// §9.2: answer the CANCEL; if its INVITE is still unanswered, answer that with 487.
    pub(super) fn handle_cancel(
        &mut self,
        now: Instant,
        cancel_id: ServerTxId,
        key: &TransactionKey,
        cancel: Request,
    ) {
        let invite_id = self
            .server_keys
            .get(&key.with_method(Method::Invite))
            .copied();
        let Some(invite_id) = invite_id else {
            let response =
                Response::for_request(&cancel, StatusCode::CALL_TRANSACTION_DOES_NOT_EXIST, None);
            let tag = self.new_tag();
            let _ = self.respond(now, cancel_id, response.with_to_tag(&tag));
            return;
        };
        let (pending, tag) = match self.server.get(&invite_id) {
            Some(e) => match &e.machine {
                ServerMachine::Invite(m) => (m.final_status().is_none(), e.to_tag.clone()),
                ServerMachine::NonInvite(_) => (false, e.to_tag.clone()),
            },
            None => (false, None),
        };
        let tag = tag.unwrap_or_else(|| self.new_tag());
        let ok = Response::for_request(&cancel, StatusCode::OK, None).with_to_tag(&tag);
        let _ = self.respond(now, cancel_id, ok);
        if pending {
            let terminated = self.server.get(&invite_id).map(|e| {
                Response::for_request(&e.request, StatusCode::REQUEST_TERMINATED, None)
                    .with_to_tag(&tag)
            });
            if let Some(response) = terminated {
                let _ = self.respond(now, invite_id, response);
            }
            self.events.push_back(Event::Cancelled {
                id: invite_id,
                cancel,
            });
        }
    }

    /// §17.1.3 matching, and one more rule: a response counts only when it comes from where its
    /// request went — the same address over UDP, the same connection (whose remote address TCP's
    /// handshake vouches for) over TCP/TLS. Anyone else who learned a branch, say a forged 200 OK
    /// to the agent's INVITE carrying the attacker's SDP, is counted in
    /// [`EndpointStats::foreign_responses`] and dropped.
    pub(super) fn handle_response(&mut self, now: Instant, response: Response, source: Source) {
        // §18.1.2: a response with more than one Via was not meant for us.
        let vias = response.headers.values(&HeaderName::Via).count();
        let key = response.headers.top_via().ok().and_then(|via| {
            let cseq = response.headers.cseq().ok()?;
            Some((via.branch()?.to_owned(), cseq.method))
        });
        let Some(id) = key
            .filter(|_| vias == 1)
            .and_then(|k| self.client_keys.get(&k).copied())
        else {
            self.stats.stray_responses += 1;
            return;
        };
        let status = response.status.as_u16();
        let Some(entry) = self.client.get_mut(&id) else {
            return;
        };
        if entry.target.transport != source.transport
            || !same_peer(entry.target.addr, source.remote)
        {
            self.stats.foreign_responses += 1;
            return;
        }
        let delivery = match &mut entry.machine {
            ClientMachine::Invite(m) => {
                let request = &entry.request;
                m.handle_response(now, status, || build_non_2xx_ack(request, &response))
            }
            ClientMachine::NonInvite(m) => m.handle_response(now, status),
        };
        let send_pending_cancel = entry.cancel == CancelState::Pending
            && matches!(&entry.machine, ClientMachine::Invite(m) if m.is_proceeding());
        self.flush_client(id);
        if delivery == Delivery::ToTu {
            self.events.push_back(Event::Response { id, response });
        }
        if send_pending_cancel {
            self.send_cancel(now, id);
        }
    }
}

/// Whether two socket addresses name the same peer: IP and port, with an IPv4-mapped IPv6 address
/// (a dual-stack socket's view) equal to its IPv4 form, and IPv6 flow labels ignored.
fn same_peer(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && a.ip().to_canonical() == b.ip().to_canonical()
}

/// §18.2.1 / RFC 3581: add `received` when the sent-by host differs from the packet's source IP
/// (always when `rport` is present) and fill in `rport` with the source port.
fn stamp_received(request: &mut Request, remote: SocketAddr) {
    let Ok(via) = request.headers.top_via() else {
        return;
    };
    let host = via.host.trim_start_matches('[').trim_end_matches(']');
    let same_ip = host.parse::<IpAddr>().is_ok_and(|ip| ip == remote.ip());
    let wants_rport = via.rport().is_some();
    if same_ip && !wants_rport {
        return;
    }
    let stamped = via.with_received(&remote.ip().to_string(), Some(remote.port()));
    request.headers.pop_first_value(&HeaderName::Via);
    if request.headers.count(&HeaderName::Via) > 0 {
        request
            .headers
            .insert_before(HeaderName::Via, stamped.to_string());
    } else {
        request
            .headers
            .push_front(HeaderName::Via, stamped.to_string());
    }
}

/// The §8.2.2.2 identity of an out-of-dialog request (no To tag); CANCEL is excluded because it
/// shares its INVITE's identity by design.
fn merge_key(request: &Request) -> Option<MergeKey> {
    if has_to_tag(request) || request.method == Method::Cancel {
        return None;
    }
    let from = request.headers.from().ok()?;
    let cseq = request.headers.cseq().ok()?;
    Some((
        from.tag()?.to_owned(),
        request.headers.call_id().ok()?.to_string(),
        cseq.seq,
        cseq.method,
    ))
}

fn has_to_tag(request: &Request) -> bool {
    request
        .headers
        .to()
        .map(|t| t.tag().is_some())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use std::time::Duration;

    #[test]
    fn invite_gets_100_trying_at_once_and_non_2xx_ack_is_absorbed() {
        let now = Instant::now();
        let mut ep = endpoint();
        feed_from_peer(&mut ep, now, "INVITE", "z9hG4bKi1", "", "1 INVITE");
        let sent = transmits(&mut ep);
        assert_eq!(sent.len(), 1);
        assert!(sent[0].starts_with("SIP/2.0 100 Trying"));
        let (id, req) = request_event(&mut ep);
        let busy = Response::for_request(&req, StatusCode::BUSY_HERE, None).with_to_tag("t1");
        ep.respond(now, id, busy).unwrap();
        assert!(transmits(&mut ep)[0].starts_with("SIP/2.0 486"));
        feed_from_peer(&mut ep, now, "ACK", "z9hG4bKi1", "t1", "1 ACK");
        assert_eq!(
            ep.poll_event(),
            None,
            "the ACK for a non-2xx never reaches the TU"
        );
        ep.handle_timeout(now + Duration::from_secs(5));
        assert_eq!(ep.transaction_count(), (0, 0), "Confirmed ended by Timer I");
    }

    #[test]
    fn ack_for_2xx_goes_to_the_tu() {
        let now = Instant::now();
        let mut ep = endpoint();
        answered_invite(&mut ep, now, "z9hG4bKi2", StatusCode::OK, "t2");
        feed_from_peer(&mut ep, now, "ACK", "z9hG4bKnew", "t2", "1 ACK");
        assert!(matches!(ep.poll_event(), Some(Event::Ack { .. })));
    }

    #[test]
    fn cancel_without_invite_gets_481_and_after_final_gets_200_only() {
        let now = Instant::now();
        let mut ep = endpoint();
        feed_from_peer(&mut ep, now, "CANCEL", "z9hG4bKnone", "", "1 CANCEL");
        assert!(transmits(&mut ep)[0].starts_with("SIP/2.0 481"));
        assert_eq!(ep.poll_event(), None);

        answered_invite(&mut ep, now, "z9hG4bKi3", StatusCode::OK, "t3");
        feed_from_peer(&mut ep, now, "CANCEL", "z9hG4bKi3", "", "1 CANCEL");
        let sent = transmits(&mut ep);
        assert_eq!(sent.len(), 1, "no 487 after a 2xx: {sent:?}");
        assert!(sent[0].starts_with("SIP/2.0 200"));
        assert!(
            sent[0].contains("tag=t3"),
            "same To tag as the INVITE's answer"
        );
        assert_eq!(ep.poll_event(), None);
    }

    #[test]
    fn cancel_of_pending_invite_answers_487_with_the_same_tag() {
        let now = Instant::now();
        let mut ep = endpoint();
        let (id, req) = answered_invite(&mut ep, now, "z9hG4bKi4", StatusCode::RINGING, "t4");
        feed_from_peer(&mut ep, now, "CANCEL", "z9hG4bKi4", "", "1 CANCEL");
        let sent = transmits(&mut ep);
        assert!(sent[0].starts_with("SIP/2.0 200") && sent[0].contains("CSeq: 1 CANCEL"));
        assert!(sent[1].starts_with("SIP/2.0 487") && sent[1].contains("tag=t4"));
        assert!(matches!(ep.poll_event(), Some(Event::Cancelled { id: c, .. }) if c == id));
        let late = Response::for_request(&req, StatusCode::OK, None);
        assert!(
            ep.respond(now, id, late).is_err(),
            "the INVITE was already answered"
        );
    }

    #[test]
    fn received_is_added_only_when_needed() {
        let now = Instant::now();
        let mut ep = endpoint();
        feed_from_peer(&mut ep, now, "OPTIONS", "z9hG4bKo1", "", "1 OPTIONS");
        let (_, req) = request_event(&mut ep);
        let via = req.headers.top_via().unwrap();
        assert_eq!(via.received(), None, "sent-by already is the source IP");
        feed(
            &mut ep,
            now,
            msg("OPTIONS", "z9hG4bKo2", "", "2 OPTIONS", "pc.example.com"),
        );
        let (_, req) = request_event(&mut ep);
        assert_eq!(req.headers.top_via().unwrap().received(), Some("127.0.0.1"));
        assert_eq!(req.headers.top_via().unwrap().rport(), None);
    }

    proptest::proptest! {
        /// Whatever arrives (valid messages with bytes overwritten, in any order, with the clock
        /// running), the endpoint neither panics nor keeps transactions past their timers.
        #[test]
        fn never_panics_on_mangled_traffic(
            edits in proptest::collection::vec((0usize..5, 0usize..400, proptest::num::u8::ANY), 0..40),
        ) {
            let now = Instant::now();
            let mut ep = endpoint();
            let base = [
                msg("INVITE", "z9hG4bKp1", "", "1 INVITE", "127.0.0.1:40000"),
                msg("ACK", "z9hG4bKp1", "t", "1 ACK", "127.0.0.1:40000"),
                msg("CANCEL", "z9hG4bKp1", "", "1 CANCEL", "pc.example"),
                msg("BYE", "z9hG4bKp2", "t", "2 BYE", "[::1]:5060"),
                Bytes::from_static(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"),
            ];
            for (step, (which, at, byte)) in edits.into_iter().enumerate() {
                let mut bytes = base[which].to_vec();
                if let Some(b) = bytes.get_mut(at) {
                    *b = byte;
                }
                let t = now + Duration::from_millis(step as u64 * 300);
                feed(&mut ep, t, Bytes::from(bytes));
                ep.handle_timeout(t);
                while ep.poll_transmit().is_some() {}
                while let Some(ev) = ep.poll_event() {
                    if let Event::Request { id, request, .. } = ev {
                        let r = Response::for_request(&request, StatusCode::OK, None).with_to_tag("p");
                        let _ = ep.respond(t, id, r);
                    }
                }
            }
            ep.handle_timeout(now + Duration::from_secs(3600));
            proptest::prop_assert_eq!(ep.transaction_count(), (0, 0));
        }
    }

    #[test]
    fn a_response_counts_only_from_where_its_request_went() {
        let now = Instant::now();
        let mut ep = endpoint();
        let (mut req, target) = options_to_peer();
        req.headers
            .push(HeaderName::From, "<sip:uas@127.0.0.1>;tag=u1");
        req.headers.push(HeaderName::To, "<sip:x@127.0.0.1>");
        req.headers.push(HeaderName::CallId, "ep-foreign");
        let id = ep.send_request(now, req, target).unwrap();
        let sent = Request::parse(ep.poll_transmit().unwrap().bytes).unwrap();
        let ok = Response::for_request(&sent, StatusCode::OK, None)
            .with_to_tag("t")
            .to_bytes();
        let elsewhere = [
            (Transport::Udp, addr("127.0.0.2:40000")),
            (Transport::Udp, addr("127.0.0.1:40001")),
            (Transport::Tcp, addr(PEER)),
        ];
        for (transport, from) in elsewhere {
            ep.handle_datagram(now, transport, addr(LOCAL), from, ok.clone());
        }
        assert_eq!(ep.poll_event(), None, "forged answers are dropped");
        assert_eq!(ep.stats().foreign_responses, 3);
        assert_eq!(ep.stats().stray_responses, 0);
        // The same response from the peer (as a dual-stack socket shows it) is the answer.
        let mapped = addr("[::ffff:127.0.0.1]:40000");
        ep.handle_datagram(now, Transport::Udp, addr(LOCAL), mapped, ok);
        assert!(matches!(
            ep.poll_event(),
            Some(Event::Response { id: got, response }) if got == id && response.status == StatusCode::OK
        ));
    }

    #[test]
    fn merged_request_gets_482() {
        let now = Instant::now();
        let mut ep = endpoint();
        feed_from_peer(&mut ep, now, "INVITE", "z9hG4bKpath1", "", "1 INVITE");
        transmits(&mut ep);
        request_event(&mut ep);
        feed_from_peer(&mut ep, now, "INVITE", "z9hG4bKpath2", "", "1 INVITE");
        assert!(transmits(&mut ep)[0].starts_with("SIP/2.0 482"));
        assert_eq!(ep.poll_event(), None);
    }
}
