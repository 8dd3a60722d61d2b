//! Benchmarks of the call path (issue 4), SIPp-driven, loopback only, bounded. Not run in CI: every
//! test here is `#[ignore]`; `benches/call_rate.sh` runs them in a release build and prints figures.
//! They live among the integration tests to reuse the in-process server, pcap writer and SIPp helpers.
//!
//! - `call_rate`: calls that answer, receive 8 RFC 4733 digits and hang up, at `VB_RATE` calls/s
//!   (default 300) for `VB_CALLS` calls (default 3000); every call must succeed in SIPp and end in our
//!   list classified from 8 digits (`unknown_code`: the code is random, the 8 digits still arrived).
//! - `concurrency`: `VB_CONCURRENT` calls (default 2000) up at once, each playing PCMA; phase 1 all
//!   collecting with the in-band detector on every packet; phase 2 all waiting with the comfort signal
//!   going out while the caller's audio keeps coming in (RTP both ways). CPU and memory per call.
//!   Caveat: SIPp plays every pcap in its own thread; on a 2-core machine it overloads (watchdog
//!   trips) far below 2,000 streams, so the figure is bounded by the generator, not by us. A lighter
//!   RTP generator (one socket loop for all calls) is needed to measure the real ceiling.
//! - `verified_latency`: `VB_LATENCY_CALLS` calls (default 50) with real link codes; time from the
//!   last digit's end packet (its offset in the pcap, from our 200 OK) to the `verified` event.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::pcap::{dtmf_call_rtp, pcma_call_rtp, to_pcap, DtmfPcapConfig, PCMA_SILENCE};
use support::server::{self, TestServer};
use support::sipp::{find_sipp, free_udp_port, Sipp, TrunkCall};
use veilig_bellen::call::registry::CallEvent;
use veilig_bellen::call::CallState;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A UAC scenario: INVITE, 200, ACK, play `pcap`, hold `hold_ms`, BYE.
fn scenario(pcap: &std::path::Path, hold_ms: u128) -> String {
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="bench call">
  <send retrans="500">
    <![CDATA[
      INVITE sip:+31850000000@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:+31611111111@[local_ip]:[local_port]>;tag=[pid]T[call_number]
      To: <sip:+31850000000@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:trunk@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=trunk 1 1 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8 101
      a=rtpmap:8 PCMA/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="200">
    <action>
      <ereg regexp=";tag=([^;> ]+)" search_in="hdr" header="To:" check_it="true" assign_to="m,peer_tag"/>
    </action>
  </recv>
  <send>
    <![CDATA[
      ACK sip:veilig-bellen@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:+31611111111@[local_ip]:[local_port]>;tag=[pid]T[call_number]
      To: <sip:+31850000000@[remote_ip]:[remote_port]>;tag=[$peer_tag]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <nop><action><exec play_pcap_audio="{}"/></action></nop>
  <pause milliseconds="{hold_ms}"/>
  <send retrans="500">
    <![CDATA[
      BYE sip:veilig-bellen@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:+31611111111@[local_ip]:[local_port]>;tag=[pid]T[call_number]
      To: <sip:+31850000000@[remote_ip]:[remote_port]>;tag=[$peer_tag]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="200" crlf="true"/>
  <Reference variables="m"/>
</scenario>
"#,
        pcap.display()
    )
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
            &free_udp_port().to_string(),
        ])
        .args(["-mp", &free_udp_port().to_string()])
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
        scenario(&pcap, length.as_millis() + 100),
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
    let ramp = env("VB_RAMP_RATE", 250);
    let collect_s = env("VB_COLLECT_S", 20) as u64;
    let srv = big_server((n + 50) as u16, |c| {
        c.calls.call.collect.first_digit_timeout = Duration::from_secs(collect_s);
    })
    .await;
    let dir = tempfile::tempdir().expect("dir");
    // Audio long enough for ramp-up, both phases, and a margin.
    let ramp_s = n as u64 / ramp as u64 + 1;
    let audio_s = collect_s + ramp_s + 12;
    let alaw = vec![PCMA_SILENCE ^ 0x55; (audio_s * 8000) as usize];
    let pcap = dir.path().join("audio.pcap");
    std::fs::write(
        &pcap,
        to_pcap(&pcma_call_rtp(&alaw, &DtmfPcapConfig::default())),
    )
    .expect("pcap");
    std::fs::write(
        dir.path().join("bench.xml"),
        scenario(&pcap, u128::from(audio_s) * 1000),
    )
    .expect("xml");
    let args: Vec<String> = [
        "-sf",
        "bench.xml",
        "-r",
        &ramp.to_string(),
        "-m",
        &n.to_string(),
        "-l",
        &n.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let rss0 = rss_mib();
    let target = srv.sip_udp;
    let d = dir.path().to_path_buf();
    let sipp = tokio::task::spawn_blocking(move || {
        run_sipp(&d, target, &args, Duration::from_secs(audio_s + 60))
    });
    let registry = srv.running.registry.clone();
    let count = |s: CallState| {
        registry
            .list(std::time::SystemTime::now())
            .iter()
            .filter(|c| c.state == s)
            .count()
    };
    // Phase 1: all up and collecting.
    let start = Instant::now();
    while count(CallState::Collecting) < n && start.elapsed() < Duration::from_secs(ramp_s + 10) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let up = count(CallState::Collecting);
    let (c0, t0) = (cpu_seconds(), Instant::now());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let collecting_cpu = (cpu_seconds() - c0) / t0.elapsed().as_secs_f64();
    let collecting_rss = rss_mib();
    let still_collecting = count(CallState::Collecting);
    // Phase 2: the first-digit timeout classifies them; comfort goes out, audio keeps coming in.
    while count(CallState::Waiting) < up
        && start.elapsed() < Duration::from_secs(ramp_s + collect_s + 10)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let waiting = count(CallState::Waiting);
    let (c1, t1) = (cpu_seconds(), Instant::now());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let both_cpu = (cpu_seconds() - c1) / t1.elapsed().as_secs_f64();
    let both_rss = rss_mib();
    let (ok, _) = sipp.await.expect("sipp");
    println!(
        "BENCH concurrency: {up}/{n} calls up; phase collecting ({still_collecting} calls, in-band detector on): \
         {:.0}% of a core = {:.1} µs CPU per call-second, RSS {collecting_rss:.0} MiB ({:.1} KiB/call over {rss0:.0} MiB); \
         phase waiting ({waiting} calls, RTP both ways): {:.0}% of a core = {:.1} µs CPU per call-second, RSS {both_rss:.0} MiB; sipp all ok: {ok}",
        collecting_cpu * 100.0,
        collecting_cpu * 1e6 / still_collecting.max(1) as f64,
        (collecting_rss - rss0) * 1024.0 / still_collecting.max(1) as f64,
        both_cpu * 100.0,
        both_cpu * 1e6 / waiting.max(1) as f64,
    );
    srv.shutdown().await;
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
