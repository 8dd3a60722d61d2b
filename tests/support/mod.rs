//! Shared helpers for the integration tests (`mod support;` in a test file): pcap writing, an
//! in-process server on loopback, SIPp as the trunk, Kamailio as an SBC in front of us (and a lossy
//! relay before it), baresip as the agent's phone, Chromium, and the SIP driver alone for the `sip_*`
//! tests.
#![allow(dead_code)] // each integration test uses a different part of these modules

pub mod agent;
pub mod browser;
pub mod call_cli;
pub mod demo_child;
pub mod direct_media;
pub mod events;
pub mod exchange;
pub mod hold;
pub mod irmago_standin;
pub mod kamailio;
pub mod loadgen;
pub mod log_capture;
pub mod lossy_relay;
pub mod pcap;
pub mod pjsua;
pub mod portal;
pub mod ports;
pub mod postgres;
pub mod raw_sip;
pub mod refer;
pub mod serve_child;
pub mod serve_cli;
pub mod server;
pub mod sip_alone;
pub mod sipp;
pub mod sipp_phone;
pub mod sipp_xml;
pub mod sipvicious;
pub mod store_contract;
pub mod store_writer;
pub mod tls;
pub mod tone;

/// Waits until `done()` holds, looking every 20 ms for `limit` at most; whether it held. A test
/// waits on the event or counter it needs next with this (bounded), then asserts what must hold.
pub async fn wait_until(limit: std::time::Duration, mut done: impl FnMut() -> bool) -> bool {
    poll(limit, async || done().then_some(())).await.is_some()
}

/// Polls `probe` until it yields `Some`, every 20 ms for `limit` at most: the value, or `None`
/// when the time ran out.
pub async fn poll<T>(
    limit: std::time::Duration,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(found) = probe().await {
            return Some(found);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        // The back-off between two looks of this bounded wait.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The sum of the samples of metric `name` (`veilig_bellen_…`, any labels) in this process.
pub fn metric(name: &str) -> f64 {
    veilig_bellen::metrics::global()
        .render()
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Finds an external program on `PATH`. Missing: a failure when `CI` is set (CI installs every
/// peer), else `None` after a note, and the test skips.
pub fn tool(name: &str) -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        sipp::skip_or_fail(&format!(
            "{name} not found on PATH (see scripts/install-test-deps.sh)"
        ));
    }
    found
}

/// The name libtest knows a test by (`file::test` in the one integration binary), for a test that
/// runs itself again in a child process with `--exact`. Pass `module_path!()`.
pub fn libtest_name(module_path: &str, test: &str) -> String {
    match module_path.split_once("::") {
        Some((_, within)) => format!("{within}::{test}"),
        None => test.to_string(),
    }
}
