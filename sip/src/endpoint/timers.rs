//! The endpoint's timer index: every live transaction's next deadline (RFC 3261 §17 Timers A–K,
//! as each transaction machine reports it through `poll_timeout`) in a min-heap, so the endpoint
//! answers "earliest deadline" in O(1) and "which transactions are due" in O(k log n) for k due,
//! without visiting the transactions that are not due (finished transactions linger up to 32 s
//! for Timer D/J, so there are many of those at a high call rate).
//!
//! Lazy invalidation: a transaction whose deadline changes gets a new heap slot with a fresh
//! generation; `current` remembers each transaction's one valid slot, and older slots are skipped
//! when they reach the top. The top of the heap is kept valid after every change, so reading the
//! earliest deadline needs no `&mut`.
//!
//! The tests at the bottom drive whole endpoints too: thousands of lingering transactions, and
//! a CANCEL re-arming its INVITE's Timer B.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::time::Instant;

use super::TxId;

/// Deadlines of transactions, earliest first.
#[derive(Debug, Default)]
pub(super) struct TimerIndex {
    heap: BinaryHeap<Reverse<Slot>>,
    /// The valid slot (deadline, generation) of each transaction that has a deadline.
    current: HashMap<TxId, (Instant, u64)>,
    next_generation: u64,
}

/// One heap entry. Ordered by deadline, then generation (unique per slot), so two slots never
/// compare equal and `id` needs no order.
#[derive(Debug, Clone, Copy)]
struct Slot {
    at: Instant,
    generation: u64,
    id: TxId,
}

impl TimerIndex {
    /// Records `id`'s next deadline (`None`: no timer running). Does nothing when the deadline
    /// is unchanged and still in the heap.
    pub(super) fn set(&mut self, id: TxId, at: Option<Instant>) {
        let unchanged = match (self.current.get(&id), at) {
            (Some(&(was, _)), Some(at)) => was == at,
            (None, None) => true,
            _ => false,
        };
        if unchanged {
            return;
        }
        match at {
            Some(at) => {
                let generation = self.next_generation;
                self.next_generation += 1;
                self.current.insert(id, (at, generation));
                self.heap.push(Reverse(Slot { at, generation, id }));
            }
            None => {
                self.current.remove(&id);
            }
        }
        self.settle();
    }

    /// Forgets `id` (it terminated).
    pub(super) fn remove(&mut self, id: TxId) {
        if self.current.remove(&id).is_some() {
            self.settle();
        }
    }

    /// The earliest deadline of any transaction.
    pub(super) fn earliest(&self) -> Option<Instant> {
        // The top is always valid: `settle` runs after every change.
        self.heap.peek().map(|Reverse(slot)| slot.at)
    }

    /// Takes out every transaction whose deadline is at or before `now`, earliest first. Each
    /// loses its deadline here; the caller fires its timers and then [`set`](Self::set)s the next.
    pub(super) fn take_due(&mut self, now: Instant) -> Vec<TxId> {
        let mut due = Vec::new();
        while let Some(Reverse(slot)) = self.heap.peek().copied() {
            if slot.at > now {
                break;
            }
            self.heap.pop();
            if self.is_current(&slot) {
                self.current.remove(&slot.id);
                due.push(slot.id);
            }
        }
        self.settle();
        due
    }

    fn is_current(&self, slot: &Slot) -> bool {
        self.current.get(&slot.id) == Some(&(slot.at, slot.generation))
    }

    /// Drops stale slots from the top so [`earliest`](Self::earliest) is right, and rebuilds the
    /// heap when stale slots outnumber valid ones (deadlines that moved later leave their old slot
    /// below the top).
    fn settle(&mut self) {
        while let Some(Reverse(slot)) = self.heap.peek() {
            if self.is_current(slot) {
                break;
            }
            self.heap.pop();
        }
        if self.heap.len() > 2 * self.current.len() + 64 {
            self.heap = self
                .current
                .iter()
                .map(|(&id, &(at, generation))| Reverse(Slot { at, generation, id }))
                .collect();
        }
    }

    #[cfg(test)]
    pub(super) fn heap_len(&self) -> usize {
        self.heap.len()
    }
}

impl PartialEq for Slot {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Slot {}

impl PartialOrd for Slot {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Slot {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.generation).cmp(&(other.at, other.generation))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::{ClientTxId, Event, ServerTxId};
    use super::*;
    use crate::message::{HeaderName, Method, Request, Response, StatusCode};
    use bytes::Bytes;
    use std::time::Duration;

    fn server(n: u64) -> TxId {
        TxId::Server(ServerTxId(n))
    }

    #[test]
    fn many_lingering_transactions_fire_exactly_when_due() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut ep = endpoint();
        // 10,000 answered BYEs, one per ms: each server transaction lingers in Completed until
        // its Timer J, 64·T1 = 32 s after its 200 (§17.2.2).
        for i in 0..10_000u64 {
            let now = ms(i);
            let branch = format!("z9hG4bKbye{i}");
            feed_from_peer(&mut ep, now, "BYE", &branch, "t", &format!("{} BYE", i + 2));
            let (id, req) = request_event(&mut ep);
            let ok = Response::for_request(&req, StatusCode::OK, None);
            ep.respond(now, id, ok).unwrap();
        }
        assert_eq!(transmits(&mut ep).len(), 10_000);
        assert_eq!(ep.poll_timeout(), Some(ms(32_000)));

        // A request of our own: its Timer E (T1) is now the earliest deadline of all.
        let (mut req, target) = options_to_peer();
        req.headers
            .push(HeaderName::From, "<sip:vb@127.0.0.1>;tag=o1");
        req.headers.push(HeaderName::To, "<sip:x@127.0.0.1>");
        req.headers.push(HeaderName::CallId, "options-1");
        let client = ep.send_request(ms(10_000), req, target).unwrap();
        let sent = Request::parse(Bytes::from(transmits(&mut ep).remove(0))).unwrap();
        assert_eq!(ep.poll_timeout(), Some(ms(10_500)));
        ep.handle_timeout(ms(10_499));
        assert!(transmits(&mut ep).is_empty(), "nothing is due 1 ms early");
        ep.handle_timeout(ms(10_500));
        assert_eq!(
            transmits(&mut ep).len(),
            1,
            "Timer E retransmits our request once"
        );
        assert_eq!(
            ep.transaction_count(),
            (10_000, 1),
            "no lingering BYE fired"
        );
        assert_eq!(ep.poll_timeout(), Some(ms(11_500)), "E doubles to 2·T1");

        // Its 200 arrives: Completed, Timer K = T4 = 5 s.
        let ok = Response::for_request(&sent, StatusCode::OK, None);
        feed(&mut ep, ms(11_000), ok.to_bytes());
        assert!(matches!(ep.poll_event(), Some(Event::Response { id, .. }) if id == client));
        assert_eq!(ep.poll_timeout(), Some(ms(16_000)));

        // Half-way through the BYEs' Timer J: exactly the first 5,000 are gone, and K fired.
        ep.handle_timeout(ms(36_999));
        assert_eq!(ep.transaction_count(), (5_000, 0));
        assert_eq!(ep.poll_timeout(), Some(ms(37_000)));
        assert_eq!(
            ep.poll_event(),
            None,
            "Timers J and K end transactions silently"
        );
        assert!(transmits(&mut ep).is_empty());
        // A retransmitted BYE of a lingering transaction is still absorbed (its 200 is resent).
        feed_from_peer(
            &mut ep,
            ms(37_000),
            "BYE",
            "z9hG4bKbye9999",
            "t",
            "10001 BYE",
        );
        assert_eq!(transmits(&mut ep).len(), 1);
        assert_eq!(ep.poll_event(), None);
        ep.handle_timeout(ms(41_999));
        assert_eq!(ep.transaction_count(), (0, 0));
        assert_eq!(ep.poll_timeout(), None);
    }

    #[test]
    fn cancelled_invite_waits_64_t1_from_the_cancel_for_its_final_response() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let mut ep = endpoint();
        let (_, target) = options_to_peer();
        let mut invite = Request::new(Method::Invite, "sip:x@127.0.0.1".parse().unwrap());
        for (name, value) in [
            (HeaderName::From, "<sip:vb@127.0.0.1>;tag=c1"),
            (HeaderName::To, "<sip:x@127.0.0.1>"),
            (HeaderName::CallId, "cancel-1"),
            (HeaderName::CSeq, "1 INVITE"),
        ] {
            invite.headers.push(name, value);
        }
        let id = ep.send_request(t0, invite, target).unwrap();
        let sent = Request::parse(Bytes::from(transmits(&mut ep).remove(0))).unwrap();
        let ringing = Response::for_request(&sent, StatusCode::RINGING, None).with_to_tag("r1");
        feed(&mut ep, s(1), ringing.to_bytes());
        assert!(matches!(ep.poll_event(), Some(Event::Response { .. })));
        assert_eq!(ep.poll_timeout(), None, "Proceeding: no timer runs");

        ep.cancel(s(10), id).unwrap();
        let cancel = Request::parse(Bytes::from(transmits(&mut ep).remove(0))).unwrap();
        let ok = Response::for_request(&cancel, StatusCode::OK, None).with_to_tag("r1");
        feed(&mut ep, s(11), ok.to_bytes());
        assert!(matches!(ep.poll_event(), Some(Event::Response { .. })));
        ep.handle_timeout(s(16));
        assert_eq!(
            ep.transaction_count(),
            (0, 1),
            "the CANCEL's Timer K ended it"
        );
        // §9.1: after the CANCEL the INVITE gets 64·T1 more for its 487.
        assert_eq!(ep.poll_timeout(), Some(s(42)));
        ep.handle_timeout(s(41));
        assert_eq!(ep.poll_event(), None);
        ep.handle_timeout(s(42));
        assert_eq!(
            ep.poll_event(),
            Some(Event::Timeout {
                id: TxId::Client(id)
            })
        );
        assert_eq!(ep.transaction_count(), (0, 0));
    }

    #[test]
    fn moved_and_removed_deadlines_are_never_reported() {
        let t0 = Instant::now();
        let s = |ms| t0 + Duration::from_millis(ms);
        let mut index = TimerIndex::default();
        index.set(server(1), Some(s(500)));
        index.set(TxId::Client(ClientTxId(2)), Some(s(100)));
        index.set(server(3), Some(s(300)));
        assert_eq!(index.earliest(), Some(s(100)));
        index.remove(TxId::Client(ClientTxId(2)));
        assert_eq!(index.earliest(), Some(s(300)), "a removed deadline is gone");
        index.set(server(3), Some(s(900)));
        assert_eq!(index.earliest(), Some(s(500)), "a deadline moved later");
        index.set(server(1), None);
        assert_eq!(index.earliest(), Some(s(900)), "a stopped timer");
        index.set(server(1), Some(s(50)));
        assert_eq!(index.take_due(s(40)), vec![]);
        assert_eq!(index.take_due(s(1000)), vec![server(1), server(3)]);
        assert_eq!(index.earliest(), None);
        assert_eq!(index.take_due(s(5000)), vec![], "each deadline is due once");
    }

    #[test]
    fn stale_slots_do_not_pile_up() {
        let t0 = Instant::now();
        let mut index = TimerIndex::default();
        for n in 0..100 {
            index.set(server(n), Some(t0 + Duration::from_secs(32)));
        }
        // A deadline pushed later on every input leaves its old slots below the top.
        for step in 1..10_000u64 {
            index.set(server(7), Some(t0 + Duration::from_secs(32 + step)));
        }
        assert!(index.heap_len() <= 2 * 100 + 64, "{}", index.heap_len());
        assert_eq!(index.earliest(), Some(t0 + Duration::from_secs(32)));
        assert_eq!(index.take_due(t0 + Duration::from_secs(32)).len(), 99);
        assert_eq!(
            index.take_due(t0 + Duration::from_secs(20_000)),
            vec![server(7)]
        );
    }
}
