//! Sending (RFC 3261 §17.1, §9.1, §17.1.1.3, §18.1): client transactions, CANCEL, the ACK for a
//! non-2xx final response, flushing transactions' output, Via and branch generation.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use super::*;
use crate::message::Text;

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
        // Sending CANCEL re-arms the INVITE's Timer B.
        let deadline = entry.machine.tx().poll_timeout();
        self.timers.set(TxId::Client(invite_id), deadline);
        let invite = &entry.request;
        let cancel = copy_of_invite(Method::Cancel, invite, invite.headers.get(&HeaderName::To));
        let (target, local, branch) = (entry.target, entry.local, entry.key.0.clone());
        self.start_client(now, cancel, target, local, branch);
    }

    /// Ids of the server transactions whose entry satisfies `pick`.
    pub(super) fn server_ids(&self, pick: impl Fn(&ServerEntry) -> bool) -> Vec<ServerTxId> {
        let picked = self.server.iter().filter(|(_, e)| pick(e));
        picked.map(|(id, _)| *id).collect()
    }

    /// Ids of the client transactions whose entry satisfies `pick`.
    pub(super) fn client_ids(&self, pick: impl Fn(&ClientEntry) -> bool) -> Vec<ClientTxId> {
        let picked = self.client.iter().filter(|(_, e)| pick(e));
        picked.map(|(id, _)| *id).collect()
    }

    /// Re-reads server transaction `id`'s next deadline into the timer index (for inputs that are
    /// not followed by [`flush_server`](Self::flush_server), which does this itself).
    pub(super) fn schedule_server(&mut self, id: ServerTxId) {
        let deadline = self
            .server
            .get(&id)
            .and_then(|e| e.machine.tx().poll_timeout());
        self.timers.set(TxId::Server(id), deadline);
    }

    /// Gives server transaction `id` an input, then flushes its output.
    pub(super) fn with_server(&mut self, id: ServerTxId, input: impl FnOnce(&mut dyn Transaction)) {
        if let Some(e) = self.server.get_mut(&id) {
            input(e.machine.tx_mut());
        }
        self.flush_server(id);
    }

    /// Gives client transaction `id` an input, then flushes its output.
    pub(super) fn with_client(&mut self, id: ClientTxId, input: impl FnOnce(&mut dyn Transaction)) {
        if let Some(e) = self.client.get_mut(&id) {
            input(e.machine.tx_mut());
        }
        self.flush_client(id);
    }

    /// Moves server transaction `id`'s output into the endpoint's queues (responses go to the
    /// request's source) and forgets the transaction once it terminated.
    pub(super) fn flush_server(&mut self, id: ServerTxId) {
        let Some(entry) = self.server.get_mut(&id) else {
            return;
        };
        let src = entry.source;
        let out = (&mut self.transmits, &mut self.events);
        let route = (src.transport, src.local, src.remote);
        if !drain(entry.machine.tx_mut(), TxId::Server(id), route, out) {
            let deadline = entry.machine.tx().poll_timeout();
            self.timers.set(TxId::Server(id), deadline);
            return;
        }
        let key = entry.key.clone();
        let merge_key = entry.merge_key.clone();
        self.server.remove(&id);
        self.timers.remove(TxId::Server(id));
        if self.server_keys.get(&key) == Some(&id) {
            self.server_keys.remove(&key);
        }
        if let Some(mk) = merge_key {
            if self.merge_keys.get(&mk) == Some(&id) {
                self.merge_keys.remove(&mk);
            }
        }
    }

    /// Moves client transaction `id`'s output into the endpoint's queues (requests go to its
    /// target) and forgets the transaction once it terminated.
    pub(super) fn flush_client(&mut self, id: ClientTxId) {
        let Some(entry) = self.client.get_mut(&id) else {
            return;
        };
        let out = (&mut self.transmits, &mut self.events);
        let route = (entry.target.transport, entry.local, entry.target.addr);
        if !drain(entry.machine.tx_mut(), TxId::Client(id), route, out) {
            let deadline = entry.machine.tx().poll_timeout();
            self.timers.set(TxId::Client(id), deadline);
            return;
        }
        let key = entry.key.clone();
        self.client.remove(&id);
        self.timers.remove(TxId::Client(id));
        if self.client_keys.get(&key) == Some(&id) {
            self.client_keys.remove(&key);
        }
    }

    pub(super) fn pick_local(&self, target: Target) -> Result<Local, EndpointError> {
        self.locals
            .iter()
            .find(|l| l.transport == target.transport && l.addr.is_ipv4() == target.addr.is_ipv4())
            .cloned()
            .ok_or(EndpointError::NoLocal(target.transport, target.addr))
    }

    /// Adds our top Via (fresh branch, `rport`) for a request to `target`, and Max-Forwards: 70 if
    /// missing; returns the local address it leaves from and the branch.
    pub(super) fn add_top_via(
        &mut self,
        request: &mut Request,
        target: Target,
    ) -> Result<(SocketAddr, String), EndpointError> {
        let local = self.pick_local(target)?;
        let branch = self.new_branch();
        let via = self.via_for(&local, &branch);
        request.headers.push_front(HeaderName::Via, via.to_string());
        if request.headers.get(&HeaderName::MaxForwards).is_none() {
            request.headers.push(HeaderName::MaxForwards, "70");
        }
        Ok((local.addr, branch))
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

    /// A fresh branch (§8.1.1.7): the magic cookie and 128 unpredictable bits, so nobody who has
    /// not seen the request can answer it.
    pub(super) fn new_branch(&mut self) -> String {
        format!("{MAGIC_COOKIE}{}", self.ids.hex128())
    }

    pub(super) fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }
}

/// Moves what transaction `id` wants sent (over `route`: transport, local address, peer) and
/// reported into `out` (the endpoint's transmit and event queues); returns whether it terminated.
fn drain(
    tx: &mut dyn Transaction,
    id: TxId,
    route: (Transport, SocketAddr, SocketAddr),
    out: (&mut VecDeque<Transmit>, &mut VecDeque<Event>),
) -> bool {
    let (transport, from_local, to) = route;
    let (transmits, events) = out;
    while let Some(bytes) = tx.poll_transmit() {
        transmits.push_back(Transmit {
            transport,
            from_local,
            to,
            bytes,
        });
    }
    while let Some(ev) = tx.poll_event() {
        events.push_back(match ev {
            TxEvent::Timeout(_) => Event::Timeout { id },
            TxEvent::TransportError => Event::TransportError { id },
        });
    }
    tx.is_terminated()
}

/// §17.1.1.3: the ACK for a non-2xx final response.
pub(super) fn build_non_2xx_ack(invite: &Request, response: &Response) -> Bytes {
    let to = response
        .headers
        .get(&HeaderName::To)
        .or_else(|| invite.headers.get(&HeaderName::To));
    copy_of_invite(Method::Ack, invite, to).to_bytes()
}

/// A CANCEL (§9.1) or non-2xx ACK (§17.1.1.3) for `invite`: its Request-URI, top Via (same
/// branch), From, Call-ID, CSeq number and Route set, Max-Forwards: 70, and the given To.
fn copy_of_invite(method: Method, invite: &Request, to: Option<&Text>) -> Request {
    let mut copy = Request::new(method.clone(), invite.uri.clone());
    if let Some(via) = invite.headers.values(&HeaderName::Via).next() {
        copy.headers.push(HeaderName::Via, via);
    }
    copy.headers.push(HeaderName::MaxForwards, "70");
    let from = invite.headers.get(&HeaderName::From);
    let call_id = invite.headers.get(&HeaderName::CallId);
    for (name, value) in [
        (HeaderName::From, from),
        (HeaderName::To, to),
        (HeaderName::CallId, call_id),
    ] {
        if let Some(v) = value {
            copy.headers.push(name, v.clone());
        }
    }
    let seq = invite.headers.cseq().map(|c| c.seq).unwrap_or(1);
    let cseq = CSeq { seq, method };
    copy.headers.push(HeaderName::CSeq, cseq.to_string());
    for route in invite.headers.get_all(&HeaderName::Route) {
        copy.headers.push(HeaderName::Route, route.clone());
    }
    copy
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
