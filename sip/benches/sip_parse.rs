//! SIP message parsing, ours beside two Rust peers in one run (issue 13).
//!
//! Four messages a trunk-facing softswitch receives all day — an INVITE with SDP, a 200 OK with
//! SDP, a REGISTER with digest credentials, an OPTIONS ping — are parsed by `sip::message`,
//! `rsip` 0.4 and `ezk-sip-types` 0.6, each once as "parse" and once as "parse + typed": the top
//! Via (branch), From (tag), To (URI), CSeq (number), Call-ID and the first Contact read as typed
//! values. Criterion reports each as elements/s (one element = one message); at the end a table
//! prints messages/s and our ratio to each peer, from the times measured in this run. The mix is
//! timed with the thread's CPU clock (not wall time), so other work on a shared machine skews the
//! ratios less; expect wall-clock figures on a busy machine to be lower.
//!
//! `cargo bench -p sip --bench sip_parse` (quick: append `-- --warm-up-time 1 --measurement-time 3`).
//! The goal is ≥ 1M messages/s for parse + typed on this mix.
//!
//! For instruction counts (repeatable on a busy machine, unlike time), set `SIP_PARSE_REPEAT` to
//! `<implementation>/<parse|parse_typed>:<rounds>` and run the bench binary under callgrind: it
//! then runs that routine over the mix `rounds` times and exits, without criterion. Run it with
//! two round counts and divide the difference by 4 × the difference in rounds for instructions
//! per message (start-up cancels out):
//! `SIP_PARSE_REPEAT=ours/parse_typed:20000 valgrind --tool=callgrind <bench binary>`.

use std::cell::RefCell;
use std::time::Duration;

use bytes::Bytes;
use criterion::{black_box, criterion_group, Bencher, Criterion, Throughput};
use sip::message::validate::{check, Inbound, Policy};
use sip::message::{Message, StreamFramer};

const INVITE_HEAD: &str = "INVITE sip:+31201234567@192.0.2.20:5060 SIP/2.0\r\n\
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
Content-Type: application/sdp\r\n";

const INVITE_SDP: &str = "v=0\r\n\
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

const OK_HEAD: &str = "SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bK-524287-1-a1b2c3d4e5f6;rport=5060;received=192.0.2.20\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-77ba429d3b1c8f5e;rport=5060\r\n\
Record-Route: <sip:192.0.2.20;lr>\r\n\
From: \"+31612345678\" <sip:+31612345678@192.0.2.10>;tag=as6f1e3b21\r\n\
To: <sip:+31201234567@192.0.2.20>;tag=vb-8c1d2e3f\r\n\
Call-ID: 4f8d1c2e7a9b3c5d6e7f@192.0.2.10\r\n\
CSeq: 102 INVITE\r\n\
Contact: <sip:+31201234567@192.0.2.30:5060;transport=udp>\r\n\
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, INFO, UPDATE\r\n\
Supported: replaces, timer\r\n\
Server: veilig-bellen\r\n\
Content-Type: application/sdp\r\n";

const OK_SDP: &str = "v=0\r\n\
o=- 3849201 3849201 IN IP4 192.0.2.30\r\n\
s=-\r\n\
c=IN IP4 192.0.2.30\r\n\
t=0 0\r\n\
m=audio 40002 RTP/AVP 8 101\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";

const REGISTER_HEAD: &str = "REGISTER sip:sip.example.nl SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bK.Xq3PzLhQv;rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:agent-17@sip.example.nl>;tag=Ghv1pTn4Q\r\n\
To: <sip:agent-17@sip.example.nl>\r\n\
Call-ID: 7mJdK2sWq0Lr8xYt@198.51.100.7\r\n\
CSeq: 21 REGISTER\r\n\
Contact: <sip:agent-17@198.51.100.7:5062;transport=udp>;expires=600\r\n\
Authorization: Digest username=\"agent-17\", realm=\"sip.example.nl\", \
nonce=\"4b3f1e8d9c2a7f60e5d4c3b2a1908f7e\", uri=\"sip:sip.example.nl\", \
response=\"6629fae49393a05397450978507c4ef1\", algorithm=MD5, \
cnonce=\"0a4f113b\", qop=auth, nc=00000002\r\n\
User-Agent: Linphone/5.2.0 (belle-sip/5.2.0)\r\n\
Expires: 600\r\n";

const OPTIONS_HEAD: &str = "OPTIONS sip:192.0.2.20:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-0c5e1a9f3d;rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:ping@192.0.2.10>;tag=a1b2c3d4\r\n\
To: <sip:192.0.2.20:5060>\r\n\
Call-ID: 0f3c9a7e2b1d@192.0.2.10\r\n\
CSeq: 1 OPTIONS\r\n\
Contact: <sip:ping@192.0.2.10:5060>\r\n\
Accept: application/sdp\r\n\
User-Agent: trunk-sbc\r\n";

/// `head` (ending in CRLF), Content-Length from `body`, the empty line, `body`.
fn message(head: &str, body: &str) -> Bytes {
    Bytes::from(format!(
        "{head}Content-Length: {}\r\n\r\n{body}",
        body.len()
    ))
}

/// The four messages, in the order INVITE, 200 OK, REGISTER, OPTIONS.
fn messages() -> [(&'static str, Bytes); 4] {
    [
        ("invite_sdp", message(INVITE_HEAD, INVITE_SDP)),
        ("ok_sdp", message(OK_HEAD, OK_SDP)),
        ("register_digest", message(REGISTER_HEAD, "")),
        ("options", message(OPTIONS_HEAD, "")),
    ]
}

// ---- ours ------------------------------------------------------------------------------------

fn ours_parse(buf: Bytes) -> usize {
    match Message::parse(buf) {
        Ok(m) => m.headers().len() + m.body().len(),
        Err(e) => panic!("ours: bench message must parse: {e}"),
    }
}

fn ours_typed(buf: Bytes) -> usize {
    let m = Message::parse(buf).expect("ours: bench message must parse");
    let h = m.headers();
    let via = h.top_via().expect("via");
    let from = h.from().expect("from");
    let to = h.to().expect("to");
    let cseq = h.cseq().expect("cseq");
    let call_id = h.call_id().expect("call-id");
    let contact = h.contact().expect("contact");
    via.branch().map_or(0, str::len)
        + from.tag().map_or(0, str::len)
        + to.uri.host().len()
        + cseq.seq as usize
        + call_id.len()
        + contact
            .addr()
            .and_then(|a| a.uri.port())
            .map_or(0, usize::from)
        + m.body().len()
}

// ---- rsip 0.4 ---------------------------------------------------------------------------------

fn rsip_parse(buf: Bytes) -> usize {
    use rsip::prelude::*;
    match rsip::SipMessage::try_from(buf) {
        Ok(m) => m.headers().iter().count() + m.body().len(),
        Err(e) => panic!("rsip: bench message must parse: {e}"),
    }
}

fn rsip_typed(buf: Bytes) -> usize {
    use rsip::prelude::*;
    let m = rsip::SipMessage::try_from(buf).expect("rsip: bench message must parse");
    let via = m.via_header().and_then(|v| v.typed()).expect("via");
    let from = m.from_header().and_then(|v| v.typed()).expect("from");
    let to = m.to_header().and_then(|v| v.typed()).expect("to");
    let cseq = m.cseq_header().and_then(|v| v.typed()).expect("cseq");
    let call_id = m.call_id_header().expect("call-id");
    let contact = m.contact_header().and_then(|v| v.typed()).expect("contact");
    via.branch().map_or(0, |b| b.value().len())
        + from.tag().map_or(0, |t| t.value().len())
        + usize::from(to.uri.host_with_port.port.is_some())
        + cseq.seq as usize
        + call_id.value().len()
        + usize::from(contact.uri.host_with_port.port.is_some())
        + m.body().len()
}

// ---- ezk-sip-types 0.6 --------------------------------------------------------------------------

/// ezk-sip-types has no one-call message parser (ezk-sip-core's transports do this): split lines
/// with its `PullParser`, parse the start line and each `name: value` line, frame the body by
/// Content-Length — the same work `Message::parse` does.
fn ezk_message(
    src: &Bytes,
) -> Option<(
    ezk_sip_types::msg::MessageLine,
    ezk_sip_types::Headers,
    Bytes,
)> {
    use ezk_sip_types::header::typed::ContentLength;
    use ezk_sip_types::msg::{Line, MessageLine, PullParser};
    use ezk_sip_types::parse::Parse;
    let mut lines = PullParser::new(src, 0);
    let first = std::str::from_utf8(lines.next()?.ok()?).ok()?;
    let (_, start) = MessageLine::parse(src)(first).ok()?;
    let mut headers = ezk_sip_types::Headers::with_capacity(16);
    for line in lines.by_ref() {
        let line = std::str::from_utf8(line.ok()?).ok()?;
        let (_, Line { name, value }) = Line::parse(src, line).ok()?;
        headers.insert(name, value);
    }
    let body_start = lines.head_end();
    let len = match headers.try_get_named::<ContentLength>() {
        Some(cl) => cl.ok()?.0,
        None => src.len() - body_start,
    };
    let body = src
        .get(body_start..body_start + len)
        .map(|_| src.slice(body_start..body_start + len))?;
    Some((start, headers, body))
}

fn ezk_parse(buf: Bytes) -> usize {
    let (_, headers, body) = ezk_message(&buf).expect("ezk: bench message must parse");
    headers.iter().count() + body.len()
}

fn ezk_typed(buf: Bytes) -> usize {
    use ezk_sip_types::header::typed::{CSeq, CallID, Contact, FromTo, Via};
    use ezk_sip_types::Name;
    let (_, h, body) = ezk_message(&buf).expect("ezk: bench message must parse");
    let via = h.get_named::<Via>().expect("via");
    let from = h.get::<FromTo>(Name::FROM).expect("from");
    let to = h.get::<FromTo>(Name::TO).expect("to");
    let cseq = h.get_named::<CSeq>().expect("cseq");
    let call_id = h.get_named::<CallID>().expect("call-id");
    let contact = h.get_named::<Contact>().expect("contact");
    via.params.get_val("branch").map_or(0, |b| b.len())
        + from.tag.as_ref().map_or(0, |t| t.len())
        + usize::from(to.uri.uri.host_port.port.is_some())
        + cseq.cseq as usize
        + call_id.0.len()
        + contact.uri.uri.host_port.port.map_or(0, usize::from)
        + body.len()
}

// ---- the comparison ---------------------------------------------------------------------------

type Routine = fn(Bytes) -> usize;

/// Implementations and what each one does per message.
const PEERS: [(&str, Routine, Routine); 3] = [
    ("ours", ours_parse, ours_typed),
    ("rsip 0.4", rsip_parse, rsip_typed),
    ("ezk-sip-types 0.6", ezk_parse, ezk_typed),
];

thread_local! {
    /// Timed (duration, messages) per benchmark id, for the closing table.
    static TIMES: RefCell<Vec<(String, Duration, u64)>> = const { RefCell::new(Vec::new()) };
}

/// Time `routine` over all four messages per iteration and remember the total under `id`.
fn run_mix(b: &mut Bencher<'_>, id: &str, msgs: &[(&str, Bytes); 4], routine: Routine) {
    b.iter_custom(|iters| {
        let start = cpu_now();
        for _ in 0..iters {
            for (_, m) in msgs {
                black_box(routine(black_box(m.clone())));
            }
        }
        let took = cpu_now().saturating_sub(start);
        TIMES.with(|t| {
            let mut t = t.borrow_mut();
            match t.iter_mut().find(|(n, _, _)| n == id) {
                Some(e) => {
                    e.1 += took;
                    e.2 += iters * msgs.len() as u64;
                }
                None => t.push((id.to_owned(), took, iters * msgs.len() as u64)),
            }
        });
        took
    });
}

/// CPU time used by this thread so far.
fn cpu_now() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn rate(id: &str) -> Option<f64> {
    TIMES.with(|t| {
        t.borrow()
            .iter()
            .find(|(n, _, _)| n == id)
            .map(|(_, d, n)| *n as f64 / d.as_secs_f64())
    })
}

fn print_table() {
    println!(
        "\nsip_parse: messages/s (CPU time) on the 4-message mix \
         (INVITE+SDP, 200 OK+SDP, REGISTER+digest, OPTIONS)"
    );
    println!(
        "{:<22}{:>16}{:>10}{:>18}{:>10}",
        "", "parse", "ours ×", "parse + typed", "ours ×"
    );
    let ours = (rate("ours/parse"), rate("ours/parse_typed"));
    for (name, _, _) in PEERS {
        let p = rate(&format!("{name}/parse"));
        let t = rate(&format!("{name}/parse_typed"));
        let fmt_rate = |r: Option<f64>| r.map_or("-".to_owned(), |r| format!("{:.0}k", r / 1e3));
        let ratio = |o: Option<f64>, r: Option<f64>| match (o, r) {
            (Some(o), Some(r)) => format!("{:.1}", o / r),
            _ => "-".to_owned(),
        };
        println!(
            "{:<22}{:>16}{:>10}{:>18}{:>10}",
            name,
            fmt_rate(p),
            ratio(ours.0, p),
            fmt_rate(t),
            ratio(ours.1, t)
        );
    }
    println!();
}

fn compare(c: &mut Criterion) {
    let msgs = messages();
    // Every implementation must accept every message, or the comparison is not like for like.
    for (name, parse, typed) in PEERS {
        for (what, m) in &msgs {
            assert!(parse(m.clone()) > 0, "{name} {what}");
            assert!(typed(m.clone()) > 0, "{name} {what}");
        }
    }
    let mut g = c.benchmark_group("sip_parse_mix");
    g.throughput(Throughput::Elements(msgs.len() as u64));
    for (name, parse, typed) in PEERS {
        let id = format!("{name}/parse");
        g.bench_function(&id, |b| run_mix(b, &id, &msgs, parse));
        let id = format!("{name}/parse_typed");
        g.bench_function(&id, |b| run_mix(b, &id, &msgs, typed));
    }
    g.finish();
    print_table();
}

/// Ours alone, per message and for the other receive-path steps.
fn ours(c: &mut Criterion) {
    let msgs = messages();
    let mut g = c.benchmark_group("sip_parse");
    g.throughput(Throughput::Elements(1));
    for (what, m) in &msgs {
        g.bench_function(format!("{what}_parse_typed"), |b| {
            b.iter(|| ours_typed(black_box(m.clone())))
        });
    }
    let invite = msgs[0].1.clone();
    g.bench_function("invite_validate", |b| {
        b.iter(|| {
            matches!(
                check(black_box(invite.clone()), &Policy::DEFAULT),
                Inbound::Request(_)
            )
        })
    });
    g.bench_function("invite_write", |b| {
        let m = Message::parse(invite.clone()).expect("parses");
        b.iter(|| black_box(&m).to_bytes().len())
    });
    g.bench_function("invite_stream_framer", |b| {
        let mut f = StreamFramer::new();
        b.iter(|| {
            f.push(black_box(&invite[..]));
            f.pop().ok().flatten().is_some()
        })
    });
    g.finish();
}

criterion_group!(benches, compare, ours);

fn main() {
    if let Ok(spec) = std::env::var("SIP_PARSE_REPEAT") {
        repeat(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}

/// `SIP_PARSE_REPEAT=<implementation>/<parse|parse_typed>:<rounds>`: run one routine over the mix
/// `rounds` times (for callgrind) and print the checksum.
fn repeat(spec: &str) {
    let (id, rounds) = spec
        .rsplit_once(':')
        .expect("SIP_PARSE_REPEAT=<implementation>/<parse|parse_typed>:<rounds>");
    let rounds: u64 = rounds.parse().expect("rounds is a number");
    let (name, what) = id.rsplit_once('/').expect("<implementation>/<routine>");
    let (_, parse, typed) = PEERS
        .iter()
        .find(|(n, _, _)| *n == name)
        .unwrap_or_else(|| panic!("implementation is one of ours, rsip 0.4, ezk-sip-types 0.6"));
    let routine = match what {
        "parse" => *parse,
        "parse_typed" => *typed,
        _ => panic!("routine is parse or parse_typed"),
    };
    let msgs = messages();
    let mut sum = 0usize;
    for _ in 0..rounds {
        for (_, m) in &msgs {
            sum = sum.wrapping_add(routine(black_box(m.clone())));
        }
    }
    println!(
        "{id}: {rounds} rounds of {} messages, checksum {sum}",
        msgs.len()
    );
}
