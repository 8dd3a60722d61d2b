//! A lossy in-memory network with a virtual clock, for driving two [`Endpoint`]s in tests.
//!
//! No sockets and no clock reads: [`Pair::run`] jumps the virtual clock from one deadline (packet
//! delivery, transaction timer, agent timer) to the next, so 64·T1 of retransmissions runs in
//! microseconds. Unreliable transports (UDP) suffer seeded loss, duplication and jitter
//! (reordering); reliable ones (TCP/TLS) deliver every message once, in order. A drop rule lets a
//! test lose exactly the message it cares about ("the first 200 OK").
//!
//! Each side's transaction user is an [`Agent`]: it sees the endpoint's events and may call
//! `respond`/`send_request`/`cancel`/`send_ack`, and may ask to be woken (dialog timers).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::endpoint::{Endpoint, EndpointConfig, Event, Local, Target, Transmit};
use crate::random::RandomKey;
use crate::transaction::Transport;

/// Impairments applied to unreliable (UDP) packets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkConfig {
    /// Probability a packet is lost, 0.0..=1.0.
    pub loss: f64,
    /// Probability a packet is delivered twice.
    pub duplicate: f64,
    /// One-way delay.
    pub delay: Duration,
    /// Extra random delay in 0..jitter; jitter larger than the packet spacing reorders packets.
    pub jitter: Duration,
}

impl LinkConfig {
    /// No loss, no duplication, 10 ms delay.
    pub fn perfect() -> Self {
        LinkConfig {
            loss: 0.0,
            duplicate: 0.0,
            delay: Duration::from_millis(10),
            jitter: Duration::ZERO,
        }
    }
}

/// One packet in flight, as a drop rule sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub transport: Transport,
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub bytes: Bytes,
}

impl Packet {
    /// The start line (`INVITE sip:..`, `SIP/2.0 200 OK`), lossily decoded.
    pub fn first_line(&self) -> String {
        let end = self
            .bytes
            .iter()
            .position(|b| *b == b'\r' || *b == b'\n')
            .unwrap_or(self.bytes.len());
        String::from_utf8_lossy(&self.bytes[..end]).into_owned()
    }

    /// The CSeq header value, if any (e.g. `1 INVITE`).
    pub fn cseq(&self) -> Option<String> {
        let text = String::from_utf8_lossy(&self.bytes);
        text.lines().find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("cseq")
                .then(|| value.trim().to_owned())
        })
    }
}

/// What happened to a packet sent into the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Delivered,
    /// Lost by the random loss rate.
    Lost,
    /// Dropped by the test's drop rule.
    Dropped,
    Duplicated,
}

/// One line of the network trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceEntry {
    /// Virtual time since the start of the run when the packet was sent.
    pub at: Duration,
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub first_line: String,
    pub cseq: Option<String>,
    pub fate: Fate,
    pub transport: Transport,
    pub bytes: Bytes,
}

type DropRule = Box<dyn FnMut(&Packet) -> bool>;

/// The network: packets in flight, impairments, trace.
pub struct Network {
    start: Instant,
    now: Instant,
    rng: u64,
    pub link: LinkConfig,
    in_flight: Vec<(Instant, u64, Packet)>,
    seq: u64,
    drop_rule: Option<DropRule>,
    pub trace: Vec<TraceEntry>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("elapsed", &(self.now - self.start))
            .field("in_flight", &self.in_flight.len())
            .field("trace", &self.trace)
            .finish()
    }
}

impl Network {
    pub fn new(start: Instant, seed: u64, link: LinkConfig) -> Self {
        Network {
            start,
            now: start,
            rng: seed,
            link,
            in_flight: Vec::new(),
            seq: 0,
            drop_rule: None,
            trace: Vec::new(),
        }
    }

    /// Drops every packet for which `rule` returns true (checked before random loss).
    pub fn drop_if(&mut self, rule: impl FnMut(&Packet) -> bool + 'static) {
        self.drop_rule = Some(Box::new(rule));
    }

    pub fn clear_drop_rule(&mut self) {
        self.drop_rule = None;
    }

    pub fn now(&self) -> Instant {
        self.now
    }

    /// Puts a transmit on the wire at the current virtual time.
    pub fn send(&mut self, t: Transmit) {
        let packet = Packet {
            transport: t.transport,
            from: t.from_local,
            to: t.to,
            bytes: t.bytes,
        };
        let reliable = packet.transport.is_reliable();
        let dropped = self.drop_rule.as_mut().is_some_and(|rule| rule(&packet));
        let fate = if dropped {
            Fate::Dropped
        } else if !reliable && self.chance(self.link.loss) {
            Fate::Lost
        } else if !reliable && self.chance(self.link.duplicate) {
            Fate::Duplicated
        } else {
            Fate::Delivered
        };
        self.trace.push(TraceEntry {
            at: self.now - self.start,
            from: packet.from,
            to: packet.to,
            first_line: packet.first_line(),
            cseq: packet.cseq(),
            fate,
            transport: packet.transport,
            bytes: packet.bytes.clone(),
        });
        let copies = match fate {
            Fate::Lost | Fate::Dropped => 0,
            Fate::Delivered => 1,
            Fate::Duplicated => 2,
        };
        for _ in 0..copies {
            let mut at = self.now + self.link.delay;
            if reliable {
                // In order per path: never before the last packet queued on the same path.
                if let Some(last) = self
                    .in_flight
                    .iter()
                    .filter(|(_, _, p)| p.from == packet.from && p.to == packet.to)
                    .map(|(at, _, _)| *at)
                    .max()
                {
                    at = at.max(last);
                }
            } else if !self.link.jitter.is_zero() {
                let nanos = self.link.jitter.as_nanos().min(u128::from(u64::MAX)) as u64;
                at += Duration::from_nanos(self.next_random() % nanos.max(1));
            }
            self.seq += 1;
            self.in_flight.push((at, self.seq, packet.clone()));
        }
    }

    /// Sends the packet of trace entry `index` again, as the network duplicating it late would.
    pub fn replay(&mut self, index: usize) {
        if let Some(t) = self.trace.get(index).cloned() {
            self.send(Transmit {
                transport: t.transport,
                from_local: t.from,
                to: t.to,
                bytes: t.bytes,
            });
        }
    }

    /// The next delivery time.
    pub fn next_delivery(&self) -> Option<Instant> {
        self.in_flight.iter().map(|(at, _, _)| *at).min()
    }

    /// Removes and returns the earliest packet due at or before `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Packet> {
        let idx = self
            .in_flight
            .iter()
            .enumerate()
            .filter(|(_, (at, _, _))| *at <= now)
            .min_by_key(|(_, (at, seq, _))| (*at, *seq))
            .map(|(i, _)| i)?;
        Some(self.in_flight.remove(idx).2)
    }

    /// Packets sent whose start line starts with `prefix` (e.g. `"INVITE"`, `"SIP/2.0 200"`).
    pub fn sent(&self, prefix: &str) -> Vec<&TraceEntry> {
        self.trace
            .iter()
            .filter(|t| t.first_line.starts_with(prefix))
            .collect()
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.next_random() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    fn next_random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// A transaction user in a test: reacts to events, may own timers.
pub trait Agent {
    /// An event from this side's endpoint.
    fn handle_event(&mut self, now: Instant, endpoint: &mut Endpoint, event: Event);

    /// When this agent wants [`handle_timeout`](Self::handle_timeout).
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    fn handle_timeout(&mut self, _now: Instant, _endpoint: &mut Endpoint) {}
}

/// Records every event and does nothing else.
#[derive(Debug, Default)]
pub struct Recorder {
    pub events: Vec<(Instant, Event)>,
}

impl Agent for Recorder {
    fn handle_event(&mut self, now: Instant, _endpoint: &mut Endpoint, event: Event) {
        self.events.push((now, event));
    }
}

impl<F: FnMut(Instant, &mut Endpoint, Event)> Agent for F {
    fn handle_event(&mut self, now: Instant, endpoint: &mut Endpoint, event: Event) {
        self(now, endpoint, event)
    }
}

/// An endpoint configuration for tests: [`EndpointConfig::new`] with a key made from `seed`, so
/// a test's branches and tags repeat from run to run. Never for a real endpoint: anyone who knows
/// the seed predicts every identifier.
pub fn test_config(seed: u64) -> EndpointConfig {
    EndpointConfig::new(test_key(seed, 0))
}

/// A fixed key for tests, different for each (`seed`, `side`).
fn test_key(seed: u64, side: u8) -> RandomKey {
    let mut bytes = [side; 32];
    bytes[..8].copy_from_slice(&seed.to_be_bytes());
    RandomKey::from_bytes(bytes)
}

/// Two endpoints, `a` (usually the UAC) and `b` (usually the UAS), on one network.
#[derive(Debug)]
pub struct Pair {
    pub net: Network,
    pub a: Endpoint,
    pub b: Endpoint,
    pub a_addr: SocketAddr,
    pub b_addr: SocketAddr,
    pub transport: Transport,
}

impl Pair {
    /// Endpoints at 127.0.0.1:5061 (a) and 127.0.0.1:5062 (b) on `transport`. `start` is the
    /// virtual time origin (any `Instant`); `seed` drives the network's impairments and the
    /// endpoints' branches and tags (through [`test_config`]).
    pub fn new(start: Instant, seed: u64, link: LinkConfig, transport: Transport) -> Pair {
        Self::with_config(start, seed, link, transport, test_config(seed))
    }

    pub fn with_config(
        start: Instant,
        seed: u64,
        link: LinkConfig,
        transport: Transport,
        config: EndpointConfig,
    ) -> Pair {
        let a_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 5061));
        let b_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 5062));
        let mut a = Endpoint::new(EndpointConfig {
            key: test_key(seed, 0xa),
            ..config.clone()
        });
        a.add_local(Local {
            transport,
            addr: a_addr,
            advertise: None,
        });
        let mut b = Endpoint::new(EndpointConfig {
            key: test_key(seed, 0xb),
            ..config
        });
        b.add_local(Local {
            transport,
            addr: b_addr,
            advertise: None,
        });
        Pair {
            net: Network::new(start, seed, link),
            a,
            b,
            a_addr,
            b_addr,
            transport,
        }
    }

    pub fn now(&self) -> Instant {
        self.net.now
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.net.now - self.net.start
    }

    /// Where `a` sends to reach `b`.
    pub fn target_b(&self) -> Target {
        Target {
            transport: self.transport,
            addr: self.b_addr,
        }
    }

    /// Where `b` sends to reach `a`.
    pub fn target_a(&self) -> Target {
        Target {
            transport: self.transport,
            addr: self.a_addr,
        }
    }

    /// Runs the virtual clock for `duration` (or until nothing is left to do), feeding events to the
    /// agents. Returns the number of steps taken (bounded at one million).
    pub fn run(
        &mut self,
        duration: Duration,
        agent_a: &mut impl Agent,
        agent_b: &mut impl Agent,
    ) -> usize {
        let until = self.net.now + duration;
        let mut steps = 0;
        while steps < 1_000_000 {
            steps += 1;
            self.pump(agent_a, agent_b);
            let next = [
                self.net.next_delivery(),
                self.a.poll_timeout(),
                self.b.poll_timeout(),
                agent_a.poll_timeout(),
                agent_b.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next.filter(|at| *at <= until) else {
                self.net.now = until;
                break;
            };
            let now = next.max(self.net.now);
            self.net.now = now;
            while let Some(p) = self.net.pop_due(now) {
                let ep = if p.to == self.a_addr {
                    &mut self.a
                } else if p.to == self.b_addr {
                    &mut self.b
                } else {
                    continue; // nobody listens there
                };
                if p.transport.is_reliable() {
                    ep.handle_stream_message(now, p.transport, p.to, p.from, p.bytes);
                } else {
                    ep.handle_datagram(now, p.transport, p.to, p.from, p.bytes);
                }
            }
            if self.a.poll_timeout().is_some_and(|at| at <= now) {
                self.a.handle_timeout(now);
            }
            if self.b.poll_timeout().is_some_and(|at| at <= now) {
                self.b.handle_timeout(now);
            }
            if agent_a.poll_timeout().is_some_and(|at| at <= now) {
                agent_a.handle_timeout(now, &mut self.a);
            }
            if agent_b.poll_timeout().is_some_and(|at| at <= now) {
                agent_b.handle_timeout(now, &mut self.b);
            }
        }
        self.pump(agent_a, agent_b);
        steps
    }

    /// Moves transmits to the network and events to the agents until both endpoints are quiet.
    fn pump(&mut self, agent_a: &mut impl Agent, agent_b: &mut impl Agent) {
        let now = self.net.now;
        loop {
            let mut busy = false;
            while let Some(t) = self.a.poll_transmit() {
                busy = true;
                self.net.send(t);
            }
            while let Some(t) = self.b.poll_transmit() {
                busy = true;
                self.net.send(t);
            }
            while let Some(e) = self.a.poll_event() {
                busy = true;
                agent_a.handle_event(now, &mut self.a, e);
            }
            while let Some(e) = self.b.poll_event() {
                busy = true;
                agent_b.handle_event(now, &mut self.b, e);
            }
            if !busy {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transmit(transport: Transport, n: u8) -> Transmit {
        Transmit {
            transport,
            from_local: SocketAddr::from((Ipv4Addr::LOCALHOST, 1)),
            to: SocketAddr::from((Ipv4Addr::LOCALHOST, 2)),
            bytes: Bytes::from(vec![b'0' + n]),
        }
    }

    fn deliver_all(net: &mut Network) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(at) = net.next_delivery() {
            while let Some(p) = net.pop_due(at) {
                out.push(p.bytes[0] - b'0');
            }
        }
        out
    }

    #[test]
    fn same_seed_same_fate() {
        let link = LinkConfig {
            loss: 0.3,
            duplicate: 0.2,
            delay: Duration::from_millis(5),
            jitter: Duration::from_millis(50),
        };
        let run = |seed| {
            let mut net = Network::new(Instant::now(), seed, link);
            for n in 0..40 {
                net.send(transmit(Transport::Udp, n % 10));
            }
            let fates: Vec<Fate> = net.trace.iter().map(|t| t.fate).collect();
            (fates, deliver_all(&mut net))
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        let (fates, _) = run(7);
        assert!(fates.contains(&Fate::Lost) && fates.contains(&Fate::Duplicated));
    }

    #[test]
    fn jitter_reorders_udp_but_never_tcp() {
        let link = LinkConfig {
            loss: 1.0,
            duplicate: 0.0,
            delay: Duration::from_millis(5),
            jitter: Duration::from_millis(50),
        };
        let mut net = Network::new(Instant::now(), 3, link);
        for n in 0..10 {
            net.send(transmit(Transport::Tcp, n));
        }
        assert_eq!(
            deliver_all(&mut net),
            (0..10).collect::<Vec<u8>>(),
            "no loss, in order"
        );
        net.link.loss = 0.0;
        for n in 0..10 {
            net.send(transmit(Transport::Udp, n));
        }
        let got = deliver_all(&mut net);
        assert_eq!(got.len(), 10);
        assert_ne!(got, (0..10).collect::<Vec<u8>>(), "jitter reordered UDP");
    }

    #[test]
    fn drop_rule_drops_only_what_it_matches() {
        let mut net = Network::new(Instant::now(), 1, LinkConfig::perfect());
        net.drop_if(|p| p.bytes[0] == b'3');
        for n in 0..5 {
            net.send(transmit(Transport::Udp, n));
        }
        assert_eq!(deliver_all(&mut net), vec![0, 1, 2, 4]);
        assert_eq!(net.trace[3].fate, Fate::Dropped);
    }
}
