//! Benchmarks of the call path (issues 4 and 13), loopback only, bounded; the Rust load generator
//! or SIPp as the trunk. Not run in CI: every test here is `#[ignore]`; `benches/call_rate.sh` runs
//! them in a release build and prints figures. They live beside the integration tests to reuse the
//! in-process server, pcap writer and SIPp helpers.
//!
//! - `call_rate`: calls from the Rust trunk in `support::loadgen` (`Plan::Script`) at `VB_RATE`
//!   calls/s (default 1000; a comma-separated list runs each on a fresh server) for `VB_CALLS`
//!   calls (default 10,000): each answers, plays 8 RFC 4733 digits (60 ms per digit, 40 ms between,
//!   PCMA around them) and hangs up 100 ms after the last; every call must be answered and end in
//!   our list classified from its 8 digits (`unknown_code`: the code is random, the 8 digits still
//!   arrived and were looked up). Prints server CPU per call (the process's CPU minus the
//!   generator's threads'), the generator's, answer times and socket-buffer drops per socket.
//! - `call_rate_sipp`: the same calls from SIPp (the peer), `VB_SIPP_RATE` calls/s (500) for
//!   `VB_SIPP_CALLS` (3000), each from its own number; SIPp's own CPU beside ours.
//! - `concurrency`: `VB_CONCURRENT` calls (default 2000) up at once from the Rust trunk
//!   (`Plan::Hold`: one SIP socket, one RTP socket for every call's media, PCMA speech-like noise
//!   every 20 ms per call, calls spread over the 20 ms), ramped at `VB_RAMP_RATE` calls/s (400).
//!   Phase 1, `VB_HOLD_S` s (10): all collecting, the in-band detector on every packet, silence
//!   going back. Then every call keys its own code as in-band DTMF tones: `VB_REAL_CODES` (all)
//!   real link codes must end `verified`, the rest random (`unknown_code`: 8 digits read). Phase 2,
//!   `VB_WAIT_S` s (5): all waiting, ringback out, noise still coming in. Server and generator share
//!   the process; CPU is split per thread (`/proc/self/task/*/stat`, generator threads are named
//!   `loadgen-*`), RSS per call from VmRSS, drops per socket from `/proc/net/udp`.
//!   `VB_MEDIA_IO=tokio` puts the calls' media on the runtime instead of the io_uring media
//!   threads (`VB_MEDIA_THREADS`, default one per core), for a back-to-back comparison.
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

/// A trunk call that plays `pcap` and hangs up `hold` after the answer, for `sipp -m N`; each call
/// from its own number (one number's wrong codes would soon be blocked: `too_many_wrong_codes`).
fn scenario(pcap: &std::path::Path, hold: Duration) -> String {
    let mut call = TrunkCall::new("+3161[call_number]");
    call.hangup_after = Some(hold);
    call.scenario(Some(pcap))
}

/// Runs sipp with `args` until it exits (bounded by `limit`); returns whether every call succeeded,
/// how long it ran and its CPU seconds (user + system, last seen before it exited).
fn run_sipp(
    dir: &std::path::Path,
    target: std::net::SocketAddr,
    args: &[String],
    limit: Duration,
) -> (bool, Duration, f64) {
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
    let stat = format!("/proc/{}/stat", child.id());
    let mut sipp_cpu = 0.0;
    let status = loop {
        if let Some(cpu) = std::fs::read_to_string(&stat)
            .ok()
            .map(|s| stat_cpu_seconds(&s))
        {
            sipp_cpu = f64::max(sipp_cpu, cpu);
        }
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if started.elapsed() > limit + Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("sipp ran past {limit:?}");
        }
        // The back-off of this bounded wait for sipp's exit.
        std::thread::sleep(Duration::from_millis(20));
    };
    let errors = std::fs::read_to_string(dir.join("errors.log")).unwrap_or_default();
    if !status.success() {
        eprintln!(
            "sipp errors (first 3000 chars):\n{}",
            errors.chars().take(3000).collect::<String>()
        );
    }
    (status.success(), started.elapsed(), sipp_cpu)
}

/// CPU seconds (user + system) this process has used.
fn cpu_seconds() -> f64 {
    stat_cpu_seconds(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default())
}

/// CPU seconds (user + system) in a `/proc/<pid>/stat` line.
fn stat_cpu_seconds(stat: &str) -> f64 {
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
        // No capacity limit below what the ports allow: the bench looks for the machine's.
        c.calls.max_calls = usize::from(pairs).max(5000);
        // `VB_MEDIA_IO=tokio` runs the calls' media on the runtime (the driver where io_uring is
        // refused) for a back-to-back comparison; `VB_MEDIA_THREADS` sets the io_uring threads.
        c.calls.media_io = match std::env::var("VB_MEDIA_IO").as_deref() {
            Ok("tokio") => veilig_bellen::media_plane::MediaIo::Tokio,
            _ => veilig_bellen::media_plane::MediaIo::Uring {
                threads: env("VB_MEDIA_THREADS", 0),
            },
        };
        tweak(c);
    })
    .await
}

/// How many of the listed calls ended classified from 8 digits (`unknown_code`: the code was
/// random, the 8 digits arrived and were looked up), and every call's end reason, for the report.
fn classified_from_8_digits(
    registry: &veilig_bellen::call::registry::Registry,
) -> (
    usize,
    usize,
    std::collections::BTreeMap<&'static str, usize>,
) {
    let list = registry.list(std::time::SystemTime::now());
    let ended = list.iter().filter(|c| c.state == CallState::Ended);
    let read_8 = ended
        .clone()
        .filter(|c| c.reason.map(|r| r.as_str()) == Some("unknown_code"))
        .count();
    let mut reasons = std::collections::BTreeMap::new();
    for c in &list {
        *reasons
            .entry(c.reason.map(|r| r.as_str()).unwrap_or("none"))
            .or_insert(0) += 1;
    }
    (ended.count(), read_8, reasons)
}

/// How many of the listed calls ended verified, and how many ended at all (an ended call's
/// number is forgotten: the counts are all there is).
fn ended_verified(registry: &veilig_bellen::call::registry::Registry) -> (usize, usize) {
    let list = registry.list(std::time::SystemTime::now());
    let ended = list.iter().filter(|c| c.state == CallState::Ended);
    (ended.clone().count(), ended.filter(|c| c.verified).count())
}

/// `VB_RATE` (comma-separated: one run per rate, each on a fresh server) calls/s from the Rust
/// load generator, `VB_CALLS` calls each: every call answers, plays 8 RFC 4733 digits (the same
/// packets the SIPp peer plays) and hangs up 100 ms after the last; every call must be answered and
/// end classified from its 8 digits. The first `VB_RATE_REAL_CODES` calls (default 0) key real
/// link codes and must end verified: each binds its code in the store, a durable write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: benches/call_rate.sh"]
async fn call_rate() {
    let rates = std::env::var("VB_RATE").unwrap_or_else(|_| "1000".into());
    let calls = env("VB_CALLS", 10_000);
    let real = env("VB_RATE_REAL_CODES", 0).min(calls);
    let script = |code: &str| -> Vec<(Duration, Vec<u8>)> {
        let packets = dtmf_call_rtp(code, &fast_digits()).expect("pcap");
        packets.into_iter().map(|p| (p.at, p.payload)).collect()
    };
    let random = script("31415926");
    let length = random.last().map(|p| p.0).unwrap_or_default();
    raise_open_files(20_000);
    for rate in rates
        .split(',')
        .filter_map(|r| r.trim().parse::<usize>().ok())
    {
        // Ports for the calls up at once (a call lasts about a second), with room for the rest.
        let pairs = (rate * 2).clamp(600, 5000) as u16;
        let srv = big_server(pairs, |_| {}).await;
        // One script per real code, then the random code's for every other call.
        let mut scripts: Vec<_> = link_codes(&srv, real, real)
            .await
            .iter()
            .map(|code| script(code))
            .collect();
        scripts.push(random.clone());
        let load_before = load_average();
        let (udp0, before, t0) = (udp_drops_by_socket(), thread_ticks(), Instant::now());
        let generator = LoadGen::start(LoadConfig {
            server: srv.sip_udp,
            codes: vec![String::new(); calls],
            rate: rate as u32,
            called: server::TENANT_NUMBER.to_owned(),
            limit: Duration::from_secs_f64(calls as f64 / rate as f64) + Duration::from_secs(60),
            plan: loadgen::Plan::Script {
                scripts,
                hang_up_after: length + Duration::from_millis(100),
            },
        })
        .expect("load generator starts");
        let media_port = generator.media_port();
        let report = tokio::task::spawn_blocking(move || generator.finish())
            .await
            .expect("load generator");
        let (after, secs) = (thread_ticks(), t0.elapsed().as_secs_f64());
        let drops = udp_drops_by_socket().since(&udp0, &srv, media_port);
        let mut cpu = cpu_split(&before, &after);
        // The generator's threads have ended: their CPU is in the report, not among live threads.
        cpu.server = (cpu.server - report.cpu).max(0.0);
        cpu.generator = report.cpu;
        // Every call the generator saw end has ended in our list too (bounded).
        let registry = srv.running.registry.clone();
        support::wait_until(Duration::from_secs(10), || {
            ended_verified(&registry).0 >= report.answered
        })
        .await;
        let (ended, unknown, reasons) = classified_from_8_digits(&registry);
        let verified = ended_verified(&registry).1;
        // Verified where the code was real, unknown_code where it was random.
        let read_8 = verified.min(real) + unknown.min(calls - real);
        let call_s = length.as_secs_f64() + 0.1;
        // Calls start at the offered rate; the last one then lasts one call length.
        let starting = (report.took.as_secs_f64() - call_s).max(0.001);
        println!(
            "BENCH call_rate: load average {load_before}; offered {rate}/s, {calls} calls in {:.2} s = {:.0} call starts/s \
             (each ~{call_s:.2} s long: answer, 8 RFC 4733 digits, lookup, BYE); answered {}, failed {}, \
             SIP retransmissions {}; answer time p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; ended {ended}, \
             classified from 8 digits {read_8} (verified {verified} of {real} real codes, the rest unknown_code), \
             reasons {reasons:?}; server CPU {:.2} s = {:.3} ms/call \
             ({:.0}% of a core); generator CPU {:.2} s = {:.3} ms/call (server/generator {:.2}); RTP sent {}, \
             received {} (lost {}); socket buffer drops {drops}; CPU per thread: {}",
            report.took.as_secs_f64(),
            calls as f64 / starting,
            report.answered,
            report.failed.len(),
            report.retransmissions,
            report.answer_ms(0.5),
            report.answer_ms(0.99),
            report.answer_ms(1.0),
            cpu.server,
            cpu.server * 1000.0 / calls as f64,
            cpu.server * 100.0 / secs,
            cpu.generator,
            cpu.generator * 1000.0 / calls as f64,
            cpu.server / cpu.generator.max(1e-9),
            report.rtp_sent,
            report.rtp_received,
            report.rtp_lost,
            cpu.threads(secs),
        );
        assert!(
            report.failed.is_empty(),
            "failed calls: {:?}",
            &report.failed[..report.failed.len().min(20)]
        );
        assert_eq!(read_8, calls, "calls not classified from 8 digits");
        srv.shutdown().await;
    }
}

/// The peer of [`call_rate`]: SIPp as the trunk, `VB_SIPP_RATE` calls/s (default 500) for
/// `VB_SIPP_CALLS` calls (default 3000), each playing the same packets as a pcap, from its own
/// calling number. SIPp is another process: the server's CPU is this process's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: benches/call_rate.sh"]
async fn call_rate_sipp() {
    let rate = env("VB_SIPP_RATE", 500);
    let calls = env("VB_SIPP_CALLS", 3000);
    let srv = big_server(((rate * 2).clamp(600, 5000)) as u16, |_| {}).await;
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
    let load_before = load_average();
    let cpu0 = cpu_seconds();
    let target = srv.sip_udp;
    let d = dir.path().to_path_buf();
    let (ok, took, sipp_cpu) =
        tokio::task::spawn_blocking(move || run_sipp(&d, target, &args, Duration::from_secs(120)))
            .await
            .expect("sipp");
    let cpu = cpu_seconds() - cpu0;
    // Every call sipp made has ended here too (bounded; the assertion below counts them).
    let registry = srv.running.registry.clone();
    support::wait_until(Duration::from_secs(10), || {
        classified_from_8_digits(&registry).0 >= calls
    })
    .await;
    let (ended, read_8, reasons) = classified_from_8_digits(&registry);
    let call_s = length.as_secs_f64() + 0.1;
    let starting = (took.as_secs_f64() - call_s).max(0.001);
    println!(
        "BENCH call_rate_sipp: load average {load_before}; offered {rate}/s, {calls} calls in {:.2} s = {:.0} call starts/s \
         (each ~{call_s:.2} s long); sipp all ok: {ok}; ended {ended}, classified from 8 digits {read_8}, reasons {reasons:?}; \
         server CPU {:.2} s = {:.3} ms/call; sipp CPU {:.2} s = {:.3} ms/call (server/sipp {:.2})",
        took.as_secs_f64(),
        calls as f64 / starting,
        cpu,
        cpu * 1000.0 / calls as f64,
        sipp_cpu,
        sipp_cpu * 1000.0 / calls as f64,
        cpu / sipp_cpu.max(1e-9),
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
        plan: loadgen::Plan::Hold,
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
        // The back-off of this bounded wait for the ramp.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let up = generator.answered();
    let ramp_took = start.elapsed();

    // Phase 1, hold: all collecting, the in-band detector on every caller packet, silence back.
    // (A second left out of the measurement: the ramp's last set-ups are not the steady state.)
    tokio::time::sleep(Duration::from_secs(1)).await;
    let collect = measure(
        &srv,
        &generator,
        hold.saturating_sub(Duration::from_secs(1)),
    )
    .await;
    let collecting_rss = rss_mib();
    let collecting = count(&|c| c.state == CallState::Collecting);

    // The codes: every call keys its own 8 digits as tones.
    let code_audio = generator.send_codes();
    let sent_codes = Instant::now();
    while count(&|c| c.state == CallState::Collecting) > 0
        && sent_codes.elapsed() < code_audio + Duration::from_secs(15)
    {
        // The back-off of this bounded wait for the classifications.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let classify_took = sent_codes.elapsed();

    // Phase 2, waiting: ringback out, the caller's audio still coming in. (A second left out of
    // the measurement: the lookups' burst is not the steady state.)
    tokio::time::sleep(Duration::from_secs(1)).await;
    let waiting_cpu = measure(&srv, &generator, wait).await;
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
             (nominal 50), {:.2} µs per packet in or out (load-independent: a busy machine delivers fewer), \
             socket buffer drops {}; generator {:.0}% (server/generator {:.2})",
            w.server_cpu * 100.0,
            per_call(w, calls),
            w.rtp_in_rate,
            w.rtp_out_rate,
            per_call(w, calls) / (w.rtp_in_rate + w.rtp_out_rate).max(1e-9),
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
    assert_eq!(
        up,
        n,
        "calls not answered (call, status): {:?}",
        &report.failed[..report.failed.len().min(20)]
    );
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
    /// Datagrams the kernel dropped for full receive buffers, by socket.
    udp_drops: Drops,
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// A snapshot of this process's CPU: in all (threads that ended included), and per live thread.
struct CpuSnapshot {
    process: f64,
    threads: std::collections::HashMap<u64, (String, f64)>,
}

fn thread_ticks() -> CpuSnapshot {
    CpuSnapshot {
        process: cpu_seconds(),
        threads: thread_cpu_ticks(),
    }
}

/// CPU seconds between two snapshots: the generator's threads (`loadgen-*`), the server (all the
/// rest of the process, threads that ended meanwhile included), and per thread name.
struct CpuSplit {
    server: f64,
    generator: f64,
    by_name: std::collections::BTreeMap<String, f64>,
}

impl CpuSplit {
    /// Thread names with their share of a core over `secs`, the busy ones.
    fn threads(&self, secs: f64) -> String {
        self.by_name
            .iter()
            .map(|(name, cpu)| (name, cpu * 100.0 / secs))
            .filter(|(_, pct)| *pct >= 0.5)
            .map(|(name, pct)| format!("{name} {pct:.0}%"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn cpu_split(before: &CpuSnapshot, after: &CpuSnapshot) -> CpuSplit {
    let mut by_name: std::collections::BTreeMap<String, f64> = Default::default();
    let mut generator = 0.0;
    for (tid, (name, ticks)) in &after.threads {
        let used = (ticks - before.threads.get(tid).map_or(0.0, |(_, t)| *t)) / 100.0;
        if name.starts_with(loadgen::THREAD_PREFIX) {
            generator += used;
        }
        *by_name.entry(name.clone()).or_default() += used;
    }
    CpuSplit {
        server: (after.process - before.process - generator).max(0.0),
        generator,
        by_name,
    }
}

/// Measures the threads' CPU and the RTP rates over `length`.
async fn measure(srv: &TestServer, generator: &LoadGen, length: Duration) -> Window {
    let load_before = load_average();
    let (udp0, rtp0) = (udp_drops_by_socket(), generator.rtp_counts());
    let (before, t0) = (thread_ticks(), Instant::now());
    // For a profiler attached from outside (`perf record -t` on the media threads for this long).
    eprintln!("measuring window: {} s from now", length.as_secs_f64());
    // The measuring window itself.
    tokio::time::sleep(length).await;
    let (after, secs) = (thread_ticks(), t0.elapsed().as_secs_f64());
    let rtp1 = generator.rtp_counts();
    let calls = generator.answered().max(1) as f64;
    let cpu = cpu_split(&before, &after);
    Window {
        server_cpu: cpu.server / secs,
        generator_cpu: cpu.generator / secs,
        threads: cpu.threads(secs),
        load_before,
        rtp_in_rate: (rtp1.0 - rtp0.0) as f64 / secs / calls,
        rtp_out_rate: (rtp1.1 - rtp0.1) as f64 / secs / calls,
        udp_drops: udp_drops_by_socket().since(&udp0, srv, generator.media_port()),
    }
}

/// Per thread of this process: name and CPU ticks (user + system, 1/100 s).
fn thread_cpu_ticks() -> std::collections::HashMap<u64, (String, f64)> {
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

/// Per UDP socket (by inode) of the network namespace: its local port and the datagrams the kernel
/// dropped for it (`drops` of `/proc/net/udp`, mostly a full receive buffer).
struct UdpDrops(std::collections::HashMap<u64, (u16, u64)>);

fn udp_drops_by_socket() -> UdpDrops {
    let mut out = std::collections::HashMap::new();
    for file in ["/proc/net/udp", "/proc/net/udp6"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local rem st queues tr retrnsmt uid timeout inode ref pointer drops
            let port = f
                .get(1)
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            let inode = f.get(9).and_then(|i| i.parse::<u64>().ok());
            let drops = f.get(12).and_then(|d| d.parse::<u64>().ok());
            if let (Some(port), Some(inode), Some(drops)) = (port, inode, drops) {
                out.insert(inode, (port, drops));
            }
        }
    }
    UdpDrops(out)
}

/// Datagrams dropped by socket buffers over a window: the server's RTP sockets, its SIP socket,
/// the generator's media socket, and any other socket of the machine.
#[derive(Default)]
struct Drops {
    server_rtp: u64,
    server_sip: u64,
    generator: u64,
    other: u64,
}

impl std::fmt::Display for Drops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (server RTP {}, server SIP {}, generator {}, elsewhere {})",
            self.server_rtp + self.server_sip + self.generator,
            self.server_rtp,
            self.server_sip,
            self.generator,
            self.other
        )
    }
}

impl UdpDrops {
    /// What sockets dropped since `before` (a socket opened meanwhile counts from 0).
    fn since(&self, before: &UdpDrops, srv: &TestServer, generator_port: u16) -> Drops {
        let mut d = Drops::default();
        for (inode, (port, drops)) in &self.0 {
            let new = drops - before.0.get(inode).map_or(0, |(_, b)| (*b).min(*drops));
            if srv.rtp_ports.contains(port) {
                d.server_rtp += new;
            } else if *port == srv.sip_udp.port() {
                d.server_sip += new;
            } else if *port == generator_port {
                d.generator += new;
            } else {
                d.other += new;
            }
        }
        d
    }
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
