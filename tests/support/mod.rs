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
pub mod refer;
pub mod serve_child;
pub mod serve_cli;
pub mod server;
pub mod sip_alone;
pub mod sipp;
pub mod sipp_phone;
pub mod sipp_xml;
pub mod sipvicious;
pub mod store_writer;
pub mod tls;
pub mod tone;

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
