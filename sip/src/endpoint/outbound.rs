//! Sending (RFC 3261 §17.1, §9.1, §17.1.1.3, §18.1): client transactions, CANCEL, the ACK for a
//! non-2xx final response, flushing transactions' output, Via and branch generation.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use super::*;

impl Endpoint {
    pub(super) fn start_client(
        &mut self,
        now: Instant,
        request: Request,
        target: Target,
        local: SocketAddr,
        branch: String,
    ) -> ClientTxId {
        let reliable = target.transport.is_reliable();
        let bytes = request.to_bytes();
        let machine = if request.method == Method::Invite {
            ClientMachine::Invite(ClientInvite::new(now, self.config.timers, reliable, bytes))
        } else {
            ClientMachine::NonInvite(ClientNonInvite::new(
                now,
                self.config.timers,
                reliable,
                bytes,
            ))
        };
        let id = ClientTxId(self.next_id());
        let key = (branch, request.method.clone());
        self.client_keys.insert(key.clone(), id);
        self.client.insert(
            id,
            ClientEntry {
                key,
                request,
                target,
                local,
                machine,
                cancel: CancelState::None,
            },
        );
        self.flush_client(id);
        id
    }

    /// §9.1: CANCEL with the INVITE's Request-URI, Call-ID, From, To, CSeq number, Route and its
    /// top Via (same branch), to the same target.
    pub(super) fn send_cancel(&mut self, now: Instant, invite_id: ClientTxId) {
        let Some(entry) = self.client.get_mut(&invite_id) else {
            return;
        };
        entry.cancel = CancelState::Sent;
        if let ClientMachine::Invite(m) = &mut entry.machine {
            m.handle_cancel_sent(now);
        }
        let invite = &entry.request;
        let mut cancel = Request::new(Method::Cancel, invite.uri.clone());
        if let Some(via) = invite.headers.values(&HeaderName::Via).next() {
            cancel.headers.push(HeaderName::Via, via);
        }
        cancel.headers.push(HeaderName::MaxForwards, "70");
        for name in [HeaderName::From, HeaderName::To, HeaderName::CallId] {
            if let Some(v) = invite.headers.get(&name) {
                cancel.headers.push(name, v.clone());
            }
        }
        let seq = invite.headers.cseq().map(|c| c.seq).unwrap_or(1);
        cancel.headers.push(
            HeaderName::CSeq,
            CSeq {
                seq,
                method: Method::Cancel,
            }
            .to_string(),
        );
        for route in invite.headers.get_all(&HeaderName::Route) {
            cancel.headers.push(HeaderName::Route, route.clone());
        }
        let (target, local, branch) = (entry.target, entry.local, entry.key.0.clone());
        self.start_client(now, cancel, target, local, branch);
    }

    pub(super) fn flush_server(&mut self, id: ServerTxId) {
        let Some(entry) = self.server.get_mut(&id) else {
            return;
        };
        let src = entry.source;
        loop {
            let bytes = match &mut entry.machine {
                ServerMachine::Invite(m) => m.poll_transmit(),
                ServerMachine::NonInvite(m) => m.poll_transmit(),
            };
            let Some(bytes) = bytes else { break };
            self.transmits.push_back(Transmit {
                transport: src.transport,
                from_local: src.local,
                to: src.remote,
                bytes,
            });
        }
        loop {
            let ev = match &mut entry.machine {
                ServerMachine::Invite(m) => m.poll_event(),
                ServerMachine::NonInvite(m) => m.poll_event(),
            };
            let Some(ev) = ev else { break };
            let id = TxId::Server(id);
            self.events.push_back(match ev {
                TxEvent::Timeout(_) => Event::Timeout { id },
                TxEvent::TransportError => Event::TransportError { id },
            });
        }
        if entry.machine.is_terminated() {
            let key = entry.key.clone();
            let merge_key = entry.merge_key.clone();
            self.server.remove(&id);
            if self.server_keys.get(&key) == Some(&id) {
                self.server_keys.remove(&key);
            }
            if let Some(mk) = merge_key {
                if self.merge_keys.get(&mk) == Some(&id) {
                    self.merge_keys.remove(&mk);
                }
            }
        }
    }

    pub(super) fn flush_client(&mut self, id: ClientTxId) {
        let Some(entry) = self.client.get_mut(&id) else {
            return;
        };
        loop {
            let bytes = match &mut entry.machine {
                ClientMachine::Invite(m) => m.poll_transmit(),
                ClientMachine::NonInvite(m) => m.poll_transmit(),
            };
            let Some(bytes) = bytes else { break };
            self.transmits.push_back(Transmit {
                transport: entry.target.transport,
                from_local: entry.local,
                to: entry.target.addr,
                bytes,
            });
        }
        loop {
            let ev = match &mut entry.machine {
                ClientMachine::Invite(m) => m.poll_event(),
                ClientMachine::NonInvite(m) => m.poll_event(),
            };
            let Some(ev) = ev else { break };
            let id = TxId::Client(id);
            self.events.push_back(match ev {
                TxEvent::Timeout(_) => Event::Timeout { id },
                TxEvent::TransportError => Event::TransportError { id },
            });
        }
        if entry.machine.is_terminated() {
            let key = entry.key.clone();
            self.client.remove(&id);
            if self.client_keys.get(&key) == Some(&id) {
                self.client_keys.remove(&key);
            }
        }
    }

    pub(super) fn pick_local(&self, target: Target) -> Result<Local, EndpointError> {
        self.locals
            .iter()
            .find(|l| l.transport == target.transport && l.addr.is_ipv4() == target.addr.is_ipv4())
            .cloned()
            .ok_or(EndpointError::NoLocal(target.transport, target.addr))
    }

    pub(super) fn via_for(&self, local: &Local, branch: &str) -> Via {
        let host = match &local.advertise {
            Some(h) => h.clone(),
            None => host_text(local.addr.ip()),
        };
        let via = Via::new(
            local.transport.via_token(),
            &host,
            Some(local.addr.port()),
            branch,
        );
        Via {
            params: via.params.with("rport", None),
            ..via
        }
    }

    pub(super) fn options_answer(&mut self, request: &Request) -> Response {
        let tag = self.new_tag();
        let mut response = Response::for_request(request, StatusCode::OK, None).with_to_tag(&tag);
        let policy = &self.config.policy;
        let join = |items: &mut dyn Iterator<Item = &str>| items.collect::<Vec<_>>().join(", ");
        response.headers.push(
            HeaderName::Allow,
            join(&mut policy.methods.iter().map(Method::as_str)),
        );
        response
            .headers
            .push(HeaderName::Accept, join(&mut policy.accept.iter().copied()));
        response.headers.push(
            HeaderName::Supported,
            join(&mut policy.supported.iter().copied()),
        );
        response
    }

    pub(super) fn new_branch(&mut self) -> String {
        format!("{MAGIC_COOKIE}{:016x}", self.next_random())
    }

    pub(super) fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// splitmix64: unique outputs for distinct counter values, unpredictable enough for tags once
    /// the seed is random.
    pub(super) fn next_random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// §17.1.1.3: the ACK for a non-2xx final response.
pub(super) fn build_non_2xx_ack(invite: &Request, response: &Response) -> Bytes {
    let mut ack = Request::new(Method::Ack, invite.uri.clone());
    if let Some(via) = invite.headers.values(&HeaderName::Via).next() {
        ack.headers.push(HeaderName::Via, via);
    }
    ack.headers.push(HeaderName::MaxForwards, "70");
    for name in [HeaderName::From, HeaderName::CallId] {
        if let Some(v) = invite.headers.get(&name) {
            ack.headers.push(name, v.clone());
        }
    }
    if let Some(to) = response
        .headers
        .get(&HeaderName::To)
        .or_else(|| invite.headers.get(&HeaderName::To))
    {
        ack.headers.push(HeaderName::To, to.clone());
    }
    let seq = invite.headers.cseq().map(|c| c.seq).unwrap_or(1);
    ack.headers.push(
        HeaderName::CSeq,
        CSeq {
            seq,
            method: Method::Ack,
        }
        .to_string(),
    );
    for route in invite.headers.get_all(&HeaderName::Route) {
        ack.headers.push(HeaderName::Route, route.clone());
    }
    ack.to_bytes()
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn non_2xx_ack_copies_the_invite_and_takes_the_response_to() {
        let invite =
            Request::parse(msg("INVITE", "z9hG4bKa1", "", "5 INVITE", "127.0.0.1")).unwrap();
        let mut resp =
            Response::for_request(&invite, StatusCode::NOT_FOUND, None).with_to_tag("x9");
        resp.headers
            .push(HeaderName::Contact, "<sip:ignored@127.0.0.1>");
        let ack = Request::parse(build_non_2xx_ack(&invite, &resp)).unwrap();
        assert_eq!(ack.method, Method::Ack);
        assert_eq!(ack.uri, invite.uri);
        assert_eq!(ack.headers.top_via().unwrap().branch(), Some("z9hG4bKa1"));
        assert_eq!(ack.headers.to().unwrap().tag(), Some("x9"));
        assert_eq!(ack.headers.cseq().unwrap().seq, 5);
        assert_eq!(ack.headers.cseq().unwrap().method, Method::Ack);
    }
}
