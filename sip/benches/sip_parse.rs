//! Parse + typed access of a realistic ~700-byte trunk INVITE with SDP (sip::message). The
//! figure to watch is messages/s (criterion "thrpt" in elements/s); the target is ≥ 500k/s.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use sip::message::validate::{check, Inbound, Policy};
use sip::message::{Message, StreamFramer};

const INVITE: &str = "INVITE sip:+31201234567@192.0.2.20:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-77ba429d3b1c8f5e;rport\r\n\
Max-Forwards: 69\r\n\
From: \"+31612345678\" <sip:+31612345678@192.0.2.10>;tag=as6f1e3b21\r\n\
To: <sip:+31201234567@192.0.2.20>\r\n\
Call-ID: 4f8d1c2e7a9b3c5d6e7f@192.0.2.10\r\n\
CSeq: 102 INVITE\r\n\
Contact: <sip:+31612345678@192.0.2.10:5060>\r\n\
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, INFO, UPDATE\r\n\
Supported: replaces, timer\r\n\
P-Asserted-Identity: <sip:+31612345678@192.0.2.10>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 234\r\n\
\r\n\
v=0\r\n\
o=- 1712345678 1712345678 IN IP4 192.0.2.10\r\n\
s=-\r\n\
c=IN IP4 192.0.2.10\r\n\
t=0 0\r\n\
m=audio 16384 RTP/AVP 8 0 101\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";

fn parse_and_access(buf: bytes::Bytes) -> usize {
    let Ok(Message::Request(req)) = Message::parse(buf) else {
        panic!("bench message must parse")
    };
    let h = &req.headers;
    let via = h.top_via().expect("via");
    let from = h.from().expect("from");
    let to = h.to().expect("to");
    let cseq = h.cseq().expect("cseq");
    let call_id = h.call_id().expect("call-id");
    let contact = h.contact().expect("contact");
    via.branch().map_or(0, str::len)
        + from.tag().map_or(0, str::len)
        + to.uri.as_str().len()
        + cseq.seq as usize
        + call_id.len()
        + contact.addr().map_or(0, |a| a.uri.host().len())
        + req.body.len()
}

fn bench(c: &mut Criterion) {
    let buf = bytes::Bytes::from_static(INVITE.as_bytes());
    assert!(
        (650..=800).contains(&buf.len()),
        "INVITE is {} bytes",
        buf.len()
    );
    let mut g = c.benchmark_group("sip_parse");
    g.throughput(Throughput::Elements(1));
    g.bench_function("invite_parse_typed_access", |b| {
        b.iter(|| parse_and_access(black_box(buf.clone())))
    });
    g.bench_function("invite_parse_only", |b| {
        b.iter(|| Message::parse(black_box(buf.clone())).is_ok())
    });
    g.bench_function("invite_validate", |b| {
        b.iter(|| {
            matches!(
                check(black_box(buf.clone()), &Policy::DEFAULT),
                Inbound::Request(_)
            )
        })
    });
    g.bench_function("invite_write", |b| {
        let m = Message::parse(buf.clone()).expect("parses");
        b.iter(|| black_box(&m).to_bytes().len())
    });
    g.bench_function("invite_stream_framer", |b| {
        let mut f = StreamFramer::new();
        b.iter(|| {
            f.push(black_box(INVITE.as_bytes()));
            f.pop().ok().flatten().is_some()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
