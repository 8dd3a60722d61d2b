//! Benchmarks of the call path (issue 4), loopback only, bounded; SIPp or the Rust load generator as
//! the trunk. Not run in CI: every test here is `#[ignore]`; `benches/call_rate.sh` runs them in a
//! release build and prints figures.
//! They live among the integration tests to reuse the in-process server, pcap writer and SIPp helpers.
//!
//! - `call_rate`: calls that answer, receive 8 RFC 4733 digits and hang up, at `VB_RATE` calls/s
//!   (default 300) for `VB_CALLS` calls (default 3000); every call must succeed in SIPp and end in our
//!   list classified from 8 digits (`unknown_code`: the code is random, the 8 digits still arrived).
//! - `concurrency`: `VB_CONCURRENT` calls (default 2000) up at once from the light Rust trunk in
//!   `support::loadgen` (one SIP socket, one RTP socket for every call's media, PCMA speech-like noise
//!   every 20 ms per call), ramped at `VB_RAMP_RATE` calls/s (400). Phase 1, `VB_HOLD_S` s (10): all
//!   collecting, the in-band detector on every packet, silence going back. Then every call keys its
//!   own code as in-band DTMF tones: `VB_REAL_CODES` (all) real link codes must end `verified`, the
//!   rest random (`unknown_code`: 8 digits read). Phase 2, `VB_WAIT_S` s (5): all waiting, ringback
//!   out, noise still coming in. Server and generator share the process; CPU is split per thread
//!   (`/proc/self/task/*/stat`, generator threads are named `loadgen-*`), RSS per call from VmRSS.
//! - `verified_latency`: `VB_LATENCY_CALLS` calls (default 50) with real link codes; time from the
//!   last digit's end packet (its offset in the pcap, from our 200 OK) to the `verified` event.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::loadgen::{self, LoadConfig, LoadGen};
use support::pcap::{dtmf_call_rtp, to_pcap, DtmfPcapConfig};
use support::server::{self, TestServer};
use support::sipp::{find_sipp, Sipp, TrunkCall};
use veilig_bellen::call::registry::CallEvent;
use veilig_bellen::call::CallState;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A trunk call that plays `pcap` and hangs up `hold` after the answer, for `sipp -m N`.
fn scenario(pcap: &std::path::Path, hold: Duration) -> String {
    let mut call = TrunkCall::new("+31611111111");
    call.hangup_after = Some(hold);
    call.scenario(Some(pcap))
}

/// Runs sipp with `args` until it exits (bounded by `limit`); returns whether every call succeeded
/// and sipp's final statistics line.
fn run_sipp(
    dir: &std::path::Path,
    target: std::net::SocketAddr,
    args: &[String],
    limit: Duration,
) -> (bool, Duration) {
    let sipp = find_sipp().expect("sipp (Debian sip-tester)");
    let started = Instant::now();
    let mut child = Command::new(sipp)
        .arg(target.to_string())
        .args(args)
        .args([
            "-i",
            "127.0.0.1",
            "-nostdin",
            "-p",
            &support::ports::port().to_string(),
        ])
        .args(["-mp", &support::ports::port().to_string()])
        .args([
            "-timeout",
            &format!("{}s", limit.as_secs()),
            "-timeout_error",
        ])
        .args(["-trace_err", "-error_file"])
        .arg(dir.join("errors.log"))
        .args(["-trace_stat", "-stf"])
        .arg(dir.join("stat.csv"))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sipp");
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if started.elapsed() > limit + Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("sipp ran past {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let errors = std::fs::read_to_string(dir.join("errors.log")).unwrap_or_default();
    if !status.success() {
        eprintln!(
            "sipp errors (first 3000 chars):\n{}",
            errors.chars().take(3000).collect::<String>()
        );
    }
    (status.success(), started.elapsed())
}

/// CPU seconds (user + system) this process has used.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields after the command name: state is 0, utime is 11, stime is 12.
    (ticks(11) + ticks(12)) / 100.0
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .unwrap_or(0.0)
        / 1024.0
}

/// Fast key presses: 60 ms per digit, 40 ms between.
fn fast_digits() -> DtmfPcapConfig {
    DtmfPcapConfig {
        lead_in: Duration::from_millis(40),
        digit_duration: Duration::from_millis(60),
        gap: Duration::from_millis(40),
        tail: Duration::from_millis(40),
        ..DtmfPcapConfig::default()
    }
}

async fn big_server(
    pairs: u16,
    tweak: impl FnOnce(&mut veilig_bellen::server::ServerConfig),
) -> TestServer {
    server::start(pairs, |c| {
        c.calls.max_calls = 5000;
        tweak(c);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: benches/call_rate.sh"]
async fn call_rate() {
    let rate = env("VB_RATE", 300);
    let calls = env("VB_CALLS", 3000);
    let srv = big_server(900, |_| {}).await;
    let dir = tempfile::tempdir().expect("dir");
    let packets = dtmf_call_rtp("31415926", &fast_digits()).expect("pcap");
    let length = packets.last().map(|p| p.at).unwrap_or_default();
    let pcap = dir.path().join("digits.pcap");
    std::fs::write(&pcap, to_pcap(&packets)).expect("pcap");
    std::fs::write(
        dir.path().join("bench.xml"),
        scenario(&pcap, length + Duration::from_millis(100)),
    )
    .expect("xml");
    let args: Vec<String> = [
        "-sf",
        "bench.xml",
        "-r",
        &rate.to_string(),
        "-m",
        &calls.to_string(),
        "-l",
        "2000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let cpu0 = cpu_seconds();
    let target = srv.sip_udp;
    let d = dir.path().to_path_buf();
    let (ok, took) =
        tokio::task::spawn_blocking(move || run_sipp(&d, target, &args, Duration::from_secs(120)))
            .await
            .expect("sipp");
    let cpu = cpu_seconds() - cpu0;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let list = srv.running.registry.list(std::time::SystemTime::now());
    let read_8 = list
        .iter()
        .filter(|c| {
            c.state == CallState::Ended && c.reason.map(|r| r.as_str()) == Some("unknown_code")
        })
        .count();
    let ended = list.iter().filter(|c| c.state == CallState::Ended).count();
    let mut reasons = std::collections::BTreeMap::new();
    for c in &list {
        *reasons
            .entry(c.reason.map(|r| r.as_str()).unwrap_or("none"))
            .or_insert(0) += 1;
    }
    let pcap_s = length.as_secs_f64() + 0.1;
    // Calls start at the offered rate; the last one then lasts one call length.
    let starting = (took.as_secs_f64() - pcap_s).max(0.001);
    println!(
        "BENCH call_rate: offered {rate}/s, {calls} calls in {:.2} s = {:.0} call starts/s (each ~{pcap_s:.2} s long); \
         sipp all ok: {ok}; ended {ended}, classified from 8 digits {read_8}, reasons {reasons:?}; server CPU {:.2} s = {:.2} ms/call",
        took.as_secs_f64(),
        calls as f64 / starting,
        cpu,
        cpu * 1000.0 / calls as f64
    );
    assert!(ok, "sipp reported failed calls");
    assert_eq!(read_8, calls, "calls not classified from 8 digits");
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: benches/call_rate.sh"]
async fn concurrency() {
    let n = env("VB_CONCURRENT", 2000);
    let rate = env("VB_RAMP_RATE", 400);
    let hold = Duration::from_secs(env("VB_HOLD_S", 10) as u64);
    let wait = Duration::from_secs(env("VB_WAIT_S", 5) as u64);
    let real_codes = env("VB_REAL_CODES", n).min(n);
    let fds = raise_open_files(2 * n as u64 + 256);
    assert!(
        fds >= 2 * n as u64 + 256,
        "{n} calls need ~{} open files, the hard limit allows {fds}: raise `ulimit -Hn`",
        2 * n + 256
    );
    let ramp = Duration::from_secs_f64(n as f64 / rate as f64 + 1.0);
    let srv = big_server((n + 50) as u16, |c| {
        // Everybody keeps collecting (detector on) until the codes come at the end of the hold.
        c.calls.call.collect.first_digit_timeout = ramp + hold + Duration::from_secs(30);
    })
    .await;
    let made = Instant::now();
    let codes = link_codes(&srv, real_codes, n).await;
    let codes_took = made.elapsed();
    let rss0 = rss_mib();
    let generator = LoadGen::start(LoadConfig {
        server: srv.sip_udp,
        codes: codes.clone(),
        rate: rate as u32,
        called: server::TENANT_NUMBER.to_owned(),
        limit: ramp + hold + wait + Duration::from_secs(60),
    })
    .expect("load generator starts");
    let registry = srv.running.registry.clone();
    let count = |pred: &dyn Fn(&veilig_bellen::call::registry::CallView) -> bool| {
        registry
            .list(std::time::SystemTime::now())
            .iter()
            .filter(|c| pred(c))
            .count()
    };

    // Ramp: every call answered (or refused) and collecting.
    let start = Instant::now();
    while (generator.answered() + generator.failed() < n
        || count(&|c| c.state == CallState::Collecting) < generator.answered())
        && start.elapsed() < ramp + Duration::from_secs(15)
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let up = generator.answered();
    let ramp_took = start.elapsed();

    // Phase 1, hold: all collecting, the in-band detector on every caller packet, silence back.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let collect = measure(&generator, hold.saturating_sub(Duration::from_secs(1))).await;
    let collecting_rss = rss_mib();
    let collecting = count(&|c| c.state == CallState::Collecting);

    // The codes: every call keys its own 8 digits as tones.
    let code_audio = generator.send_codes();
    let sent_codes = Instant::now();
    while count(&|c| c.state == CallState::Collecting) > 0
        && sent_codes.elapsed() < code_audio + Duration::from_secs(15)
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let classify_took = sent_codes.elapsed();

    // Phase 2, waiting: ringback out, the caller's audio still coming in.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let waiting_cpu = measure(&generator, wait).await;
    let waiting = count(&|c| c.state == CallState::Waiting);
    let list = registry.list(std::time::SystemTime::now());
    let report = tokio::task::spawn_blocking(move || generator.finish())
        .await
        .expect("load generator");

    // Each call's classification against the code it keyed.
    let mut correct = 0;
    let mut wrong = std::collections::BTreeMap::new();
    for i in 0..n {
        let caller = loadgen::caller(i);
        let Some(view) = list.iter().find(|v| v.caller.expose() == &caller) else {
            continue;
        };
        let expected_verified = i < real_codes;
        let ok = if expected_verified {
            view.verified
        } else {
            view.reason.map(|r| r.as_str()) == Some("unknown_code")
        };
        if ok {
            correct += 1;
        } else {
            let got = view.reason.map(|r| r.as_str()).unwrap_or(if view.verified {
                "verified"
            } else {
                "unclassified"
            });
            *wrong.entry(got).or_insert(0) += 1;
        }
    }
    let per_call = |w: &Window, calls: usize| w.server_cpu * 1e6 / calls.max(1) as f64;
    let phase = |w: &Window, calls: usize| {
        format!(
            "server {:.0}% of a core = {:.0} µs CPU per call-second, RTP {:.1} in / {:.1} out per call-second \
             (nominal 50), kernel UDP buffer drops {}; generator {:.0}% (server/generator {:.2})",
            w.server_cpu * 100.0,
            per_call(w, calls),
            w.rtp_in_rate,
            w.rtp_out_rate,
            w.udp_drops,
            w.generator_cpu * 100.0,
            w.server_cpu / w.generator_cpu.max(1e-9),
        )
    };
    println!(
        "BENCH concurrency: load average {}; {up}/{n} calls up ({rate}/s ramp in {:.1} s, {} failed); \
         codes read from in-band tones correctly on {correct}/{up} calls ({real_codes} real link codes, the rest \
         random → unknown_code; wrong {wrong:?}; all classified {:.1} s after the first tone); \
         collecting ({collecting} calls, detector on, noise in, silence out): {}; \
         waiting ({waiting} calls, ringback out, noise in): {}; \
         RSS {:.1} KiB per call ({rss0:.0} → {collecting_rss:.0} MiB); \
         RTP sent {} (errors {}), received {}, lost {} by sequence gaps ({} calls got none); SIP retransmissions {}; \
         hung up {}, ended by the server {}, BYE unanswered {}; server in this process, CPU per thread from /proc/self/task \
         (collecting: {}; waiting: {})",
        collect.load_before,
        ramp_took.as_secs_f64(),
        report.failed.len(),
        classify_took.as_secs_f64(),
        phase(&collect, collecting),
        phase(&waiting_cpu, waiting),
        (collecting_rss - rss0) * 1024.0 / collecting.max(1) as f64,
        report.rtp_sent,
        report.rtp_send_errors,
        report.rtp_received,
        report.rtp_lost,
        report.calls_without_rtp_back,
        report.retransmissions,
        report.hung_up,
        report.ended_by_server,
        report.bye_unanswered,
        collect.threads,
        waiting_cpu.threads,
    );
    eprintln!("link codes made in {:.1} s", codes_took.as_secs_f64());
    assert_eq!(up, n, "calls not answered: {:?}", report.failed);
    assert_eq!(
        correct, n,
        "calls whose code was not read correctly: {wrong:?}"
    );
    srv.shutdown().await;
}

/// `real` link codes as citizens get them (session started in-process, disclosed at the embedded
/// IRMA simulator), then random 8-digit codes up to `n` (no session: `unknown_code`, still 8 digits).
async fn link_codes(srv: &TestServer, real: usize, n: usize) -> Vec<String> {
    use futures_util::StreamExt;
    let client = reqwest::Client::new();
    let links = srv.running.links.clone();
    let tenant = veilig_bellen::tenant::Tenant::demo();
    let mut codes: Vec<String> = futures_util::stream::iter(0..real)
        .map(|_| {
            let (client, links, tenant) = (client.clone(), links.clone(), tenant.clone());
            let base = srv.http_base.clone();
            async move {
                let session = links
                    .start(&tenant, veilig_bellen::time::unix_now())
                    .await
                    .expect("link session");
                let u = session.session_ptr["u"].as_str().expect("sessionPtr.u");
                let client_token = u.rsplit('/').next().expect("client token");
                let answer: serde_json::Value = client
                    .post(format!("{base}/irma-sim/session/{client_token}/disclose"))
                    .json(&serde_json::json!({"attributes": {}}))
                    .send()
                    .await
                    .expect("disclose")
                    .json()
                    .await
                    .expect("disclose JSON");
                let url = answer["clientReturnUrl"].as_str().expect("clientReturnUrl");
                let code = url
                    .rsplit(',')
                    .next()
                    .expect("tel:<number>,<code>")
                    .to_owned();
                // The session's watcher records the disclosure; the call must find it done.
                let status = links
                    .wait_status(&session.token, Duration::from_secs(10))
                    .await
                    .expect("status");
                assert!(
                    matches!(status, Some((veilig_bellen::links::PublicStatus::Done, _))),
                    "disclosed session not done"
                );
                code
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    while codes.len() < n {
        codes.push(format!("{:08}", rand::random::<u32>() % 100_000_000));
    }
    codes
}

/// CPU use over one measuring window.
struct Window {
    /// Cores' worth of CPU the server's threads used (everything but the generator's).
    server_cpu: f64,
    generator_cpu: f64,
    /// CPU per thread name, in % of a core.
    threads: String,
    load_before: String,
    /// RTP packets per call per second the generator sent (nominal 50).
    rtp_in_rate: f64,
    /// RTP packets per call per second the server sent back (nominal 50).
    rtp_out_rate: f64,
    /// Datagrams the kernel dropped for full receive buffers (whole network namespace).
    udp_drops: u64,
}

/// Measures the threads' CPU and the RTP rates over `length`.
async fn measure(generator: &LoadGen, length: Duration) -> Window {
    let load_before = std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    let (udp0, rtp0) = (udp_receive_buffer_drops(), generator.rtp_counts());
    let (before, t0) = (thread_ticks(), Instant::now());
    tokio::time::sleep(length).await;
    let (after, secs) = (thread_ticks(), t0.elapsed().as_secs_f64());
    let rtp1 = generator.rtp_counts();
    let calls = generator.answered().max(1) as f64;
    let mut by_name: std::collections::BTreeMap<String, f64> = Default::default();
    let (mut server, mut generator_cpu) = (0.0, 0.0);
    for (tid, (name, ticks)) in &after {
        let used = ticks - before.get(tid).map_or(0.0, |(_, t)| *t);
        let cores = used / 100.0 / secs;
        if name.starts_with(loadgen::THREAD_PREFIX) {
            generator_cpu += cores;
        } else {
            server += cores;
        }
        *by_name.entry(name.clone()).or_default() += cores * 100.0;
    }
    let threads = by_name
        .iter()
        .filter(|(_, pct)| **pct >= 0.5)
        .map(|(name, pct)| format!("{name} {pct:.0}%"))
        .collect::<Vec<_>>()
        .join(", ");
    Window {
        server_cpu: server,
        generator_cpu,
        threads,
        load_before,
        rtp_in_rate: (rtp1.0 - rtp0.0) as f64 / secs / calls,
        rtp_out_rate: (rtp1.1 - rtp0.1) as f64 / secs / calls,
        udp_drops: udp_receive_buffer_drops().saturating_sub(udp0),
    }
}

/// Per thread of this process: name and CPU ticks (user + system, 1/100 s).
fn thread_ticks() -> std::collections::HashMap<u64, (String, f64)> {
    let mut out = std::collections::HashMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_owned();
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        // After the name: state is field 0, utime 11, stime 12.
        out.insert(tid, (name, ticks(11) + ticks(12)));
    }
    out
}

/// `RcvbufErrors` of `/proc/net/snmp`: UDP datagrams dropped for a full socket buffer.
fn udp_receive_buffer_drops() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// Raises this process's soft limit on open files to `want` (at most the hard limit); returns the
/// soft limit now.
fn raise_open_files(want: u64) -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current.is_some_and(|soft| soft < want) {
        let soft = limit.maximum.map_or(want, |hard| hard.min(want));
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(soft),
                maximum: limit.maximum,
            },
        );
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: benches/call_rate.sh"]
async fn verified_latency() {
    let calls = env("VB_LATENCY_CALLS", 50);
    // The public session API is rate limited (20 at once, then one per 2 s): real codes for the first
    // few calls, random 8-digit codes (classified `unknown_code`, same store lookup) for the rest.
    let verified_calls = env("VB_LATENCY_VERIFIED", 5);
    let srv = big_server(16, |_| {}).await;
    let mut events = srv.running.registry.subscribe();
    let mut latencies = Vec::new();
    let mut verified_latencies = Vec::new();
    let mut end_offsets: Vec<f64> = Vec::new();
    for i in 0..calls {
        let code = if i < verified_calls {
            srv.new_code().await
        } else {
            format!("{:08}", rand::random::<u32>() % 100_000_000)
        };
        let packets = dtmf_call_rtp(&code, &fast_digits()).expect("pcap");
        // The last packet of the last digit's three end packets.
        let event_pt = fast_digits().event_pt;
        let last_end = packets
            .iter()
            .rev()
            .find(|p| p.payload.get(1).is_some_and(|b| b & 0x7f == event_pt))
            .map(|p| p.at)
            .expect("end packet");
        // The first packet of the last digit (the 8th digit's start: the code is complete there).
        let is_event =
            |p: &support::pcap::PcapPacket| p.payload.get(1).is_some_and(|b| b & 0x7f == event_pt);
        let ts = |p: &support::pcap::PcapPacket| p.payload.get(4..8).map(|b| b.to_vec());
        let last_event = packets.iter().rev().find(|p| is_event(p)).and_then(ts);
        let last_start = packets
            .iter()
            .find(|p| is_event(p) && ts(p) == last_event)
            .map(|p| p.at)
            .expect("start packet");
        let mut call = TrunkCall::new(&format!("+3161000{i:04}"));
        call.pcap = Some(to_pcap(&packets));
        while events.try_recv().is_ok() {}
        let Some(sipp) = Sipp::start(srv.sip_udp, &call) else {
            return;
        };
        let mut first: Option<(u64, Instant)> = None;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
        let (verified_at, verified) = loop {
            let ev = tokio::time::timeout_at(deadline, events.recv()).await;
            let Ok(Ok(CallEvent::Updated(view))) = ev else {
                panic!("no verified event for call {i}: {ev:?}\n{}", sipp.logs())
            };
            let now = Instant::now();
            match first {
                None => first = Some((view.id.0, now)),
                Some((id, _)) if id != view.id.0 => continue,
                Some(_) => {}
            }
            if view.verified || view.reason.is_some() {
                break (now, view.verified);
            }
        };
        let answered = first.map(|(_, t)| t).expect("first event");
        let since_answer = verified_at.saturating_duration_since(answered);
        let latency = since_answer.saturating_sub(last_start);
        end_offsets.push((since_answer.as_secs_f64() - last_end.as_secs_f64()) * 1000.0);
        latencies.push(latency);
        if verified {
            verified_latencies.push(latency);
        }
        let id = serde_json::json!(first.map(|(id, _)| id));
        srv.hang_up_and_check_ended(sipp, &id).await;
    }
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "BENCH verified_latency: {} calls; last digit's first packet → classification event: p50 {:?}, p90 {:?}, p99 {:?}, max {:?}; \
         verified calls only ({}): {:?}; event minus last end packet: max {:.1} ms (negative: before the end packet)",
        latencies.len(),
        pct(0.5),
        pct(0.9),
        pct(0.99),
        latencies.last().copied().unwrap_or_default(),
        verified_latencies.len(),
        verified_latencies,
        end_offsets.iter().cloned().fold(f64::MIN, f64::max)
    );
    srv.shutdown().await;
}
