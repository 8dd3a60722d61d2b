//! A thousand short trunk calls, one after the other (SIPp `-l 1 -m 1000`: INVITE, 200, ACK, BYE),
//! leave nothing behind: no call task, no routing entry, every RTP port back in the pool (and
//! bindable again), and no memory growth beyond a generous bound.

use crate::support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::server;
use support::sipp::{find_sipp, TrunkCall};

const CALLS: usize = 1000;
/// Upper bound on the whole sipp run.
const SIPP_RUN_LIMIT: Duration = Duration::from_secs(45);

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Runs `count` sequential calls; panics with sipp's output when any failed.
fn run_calls(target: std::net::SocketAddr, dir: &std::path::Path, count: usize) {
    let sipp = find_sipp().expect("checked by the caller");
    let scenario = dir.join("short.xml");
    // INVITE, 200, ACK, BYE at once.
    let mut call = TrunkCall::new("+31611111111");
    call.hangup_after = Some(Duration::ZERO);
    std::fs::write(&scenario, call.scenario(None)).expect("scenario");
    let mut child = Command::new(sipp)
        .arg(target.to_string())
        .args(["-sf", &scenario.to_string_lossy()])
        .args([
            "-m",
            &count.to_string(),
            "-l",
            "1",
            "-r",
            "1000",
            "-i",
            "127.0.0.1",
            "-nostdin",
        ])
        .args([
            "-p",
            &support::ports::port().to_string(),
            "-mp",
            &support::ports::port().to_string(),
        ])
        .args([
            "-timeout",
            &format!("{}s", SIPP_RUN_LIMIT.as_secs()),
            "-timeout_error",
        ])
        .args(["-trace_err", "-error_file"])
        .arg(dir.join("errors.log"))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sipp");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait sipp") {
            break status;
        }
        if started.elapsed() > SIPP_RUN_LIMIT + Duration::from_secs(5) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("sipp still running after {SIPP_RUN_LIMIT:?}");
        }
        // The back-off of this bounded wait for sipp's exit.
        std::thread::sleep(Duration::from_millis(50));
    };
    let errors = std::fs::read_to_string(dir.join("errors.log")).unwrap_or_default();
    assert!(
        status.success(),
        "sipp: some of {count} calls failed ({status}):\n{}",
        errors.chars().take(4000).collect::<String>()
    );
    eprintln!("{count} sequential calls in {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_sequential_calls_leave_no_port_task_or_memory_behind() {
    if find_sipp().is_none() {
        return;
    }
    let srv = server::start(8, |_| {}).await;
    let probe = srv.running.calls.clone();
    let (_, pairs) = probe.rtp_pairs().expect("RTP pool");
    let dir = tempfile::Builder::new()
        .prefix("vb-seq-")
        .tempdir()
        .expect("dir");
    let target = srv.sip_udp;

    // Warm up allocator pools and lazily built state, then measure.
    let d = dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || run_calls(target, &d, 50))
        .await
        .expect("warm-up");
    wait_idle(&probe, pairs).await;
    let before = rss_kib();

    let d = dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || run_calls(target, &d, CALLS))
        .await
        .expect("calls");
    wait_idle(&probe, pairs).await;
    let after = rss_kib();
    eprintln!("RSS before {before} KiB, after {after} KiB");
    assert!(
        srv.rtp_ports_free(),
        "an RTP port is still bound after the calls ended"
    );
    assert!(
        after.saturating_sub(before) < 24 * 1024,
        "memory grew by {} KiB over {CALLS} calls",
        after.saturating_sub(before)
    );
    // Ended calls stay listed (without personal data) for 10 minutes, by design.
    let calls = srv.calls().await;
    assert_eq!(calls.len(), CALLS + 50);
    assert!(calls.iter().all(|c| c["state"] == "ended"));
    srv.shutdown().await;
}

/// Waits (bounded) until no call task runs, no route is left and every RTP pair is free.
async fn wait_idle(probe: &veilig_bellen::call::manager::CallsProbe, pairs: usize) {
    let started = Instant::now();
    loop {
        let live = probe.live_calls();
        let routes = probe.routing_entries();
        let free = probe.rtp_pairs().map(|(a, _)| a).unwrap_or(0);
        if live == 0 && routes == 0 && free == pairs {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "after the calls: {live} call tasks, {routes} routing entries, {free}/{pairs} RTP pairs free"
        );
        // The back-off of this bounded wait.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
