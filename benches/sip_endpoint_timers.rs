//! Cost of the SIP endpoint's timer queries (sip::endpoint, RFC 3261 §17 timers) against the
//! number of finished transactions lingering for Timer J (64·T1 = 32 s after their final
//! response): at 500 calls/s that is tens of thousands. The driver asks `poll_timeout` on every
//! pass of its loop and calls `handle_timeout` when a deadline passes.
//!
//! - `poll_timeout/index/N`: the endpoint's timer index (should stay flat as N grows).
//! - `poll_timeout/scan/N`: the old scan of every transaction (`poll_timeout_by_scan`, kept as the
//!   reference), for the ratio in the same run.
//! - `driver_pass/one_in_one_out/N`: one pass of the driver in steady state: a BYE arrives and is
//!   answered, the one answered 32 s earlier reaches Timer J and is fired, `poll_timeout` before
//!   and after; N stays constant. (Before the index, both timer calls scanned all N.)

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use sip::endpoint::{Endpoint, EndpointConfig, Event, Local};
use sip::message::{Response, StatusCode};
use sip::random::RandomKey;
use sip::transaction::Transport;

const LOCAL: &str = "127.0.0.1:5060";
const PEER: &str = "127.0.0.1:40000";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("constant address")
}

fn bye(i: usize) -> Bytes {
    Bytes::from(format!(
        "BYE sip:uas@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {PEER};branch=z9hG4bKbye{i}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:uac@127.0.0.1>;tag=f{i}\r\n\
         To: <sip:uas@127.0.0.1>;tag=t{i}\r\n\
         Call-ID: bench-{i}\r\n\
         CSeq: 2 BYE\r\n\
         Content-Length: 0\r\n\r\n"
    ))
}

/// Feeds BYE number `i` at `now` and answers it with 200.
fn answer_bye(ep: &mut Endpoint, now: Instant, i: usize) {
    ep.handle_datagram(now, Transport::Udp, addr(LOCAL), addr(PEER), bye(i));
    while let Some(ev) = ep.poll_event() {
        if let Event::Request { id, request, .. } = ev {
            let ok = Response::for_request(&request, StatusCode::OK, None);
            ep.respond(now, id, ok).expect("answer the BYE");
        }
    }
    while ep.poll_transmit().is_some() {}
}

/// An endpoint holding `n` answered BYEs (server transactions in Completed, waiting for Timer J),
/// received `step` apart from `t0`.
fn lingering(t0: Instant, n: usize, step: Duration) -> Endpoint {
    let mut ep = Endpoint::new(EndpointConfig::new(RandomKey::from_bytes([5; 32])));
    ep.add_local(Local {
        transport: Transport::Udp,
        addr: addr(LOCAL),
        advertise: None,
    });
    for i in 0..n {
        answer_bye(&mut ep, t0 + step * i as u32, i);
    }
    assert_eq!(ep.transaction_count(), (n, 0));
    ep
}

fn timers(c: &mut Criterion) {
    let t0 = Instant::now();
    let mut poll = c.benchmark_group("poll_timeout");
    for n in [100, 1_000, 10_000, 30_000] {
        let ep = lingering(t0, n, Duration::from_micros(10));
        assert_eq!(ep.poll_timeout(), ep.poll_timeout_by_scan());
        poll.bench_function(format!("index/{n}"), |b| {
            b.iter(|| black_box(&ep).poll_timeout())
        });
        poll.bench_function(format!("scan/{n}"), |b| {
            b.iter(|| black_box(&ep).poll_timeout_by_scan())
        });
    }
    poll.finish();

    // Steady state at a call rate: n BYEs spread over Timer J's 32 s; each pass receives and
    // answers one new BYE and fires the one answered 32 s earlier, so n stays constant.
    let mut pass = c.benchmark_group("driver_pass");
    for n in [100, 1_000, 10_000, 30_000] {
        let step = Duration::from_nanos(32_000_000_000 / n as u64);
        let mut ep = lingering(t0, n, step);
        let mut k = 0usize;
        pass.bench_function(format!("one_in_one_out/{n}"), |b| {
            b.iter(|| {
                let now = t0 + step * (n + k) as u32;
                let _ = ep.poll_timeout();
                answer_bye(&mut ep, now, n + k);
                ep.handle_timeout(now);
                k += 1;
                black_box(ep.poll_timeout())
            })
        });
        assert_eq!(ep.transaction_count(), (n, 0), "one in, one out per pass");
    }
    pass.finish();
}

criterion_group!(benches, timers);
criterion_main!(benches);
