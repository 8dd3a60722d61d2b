//! A newcomer tries `veilig-bellen demo` with only a browser: the walk-through page at `/` leads to
//! the municipality's website (the button opens the Yivi QR code), the simulated Yivi app (**Scan en
//! deel**, then **Bel nu**: the demo calls itself over SIP and RTP on loopback and keys in the code,
//! which no page shows) and the agents' portal, where the call is verified and **Opnemen** connects
//! it to the demo's built-in agent phone. Hanging up in the app ends it everywhere. Once with the
//! code as RFC 4733 events, once as tones in the audio.
//!
//! The browser part is `tests/browser/walkthrough.test.mjs`. Needs node, /usr/bin/chromium and
//! `npm ci --prefix tests/browser`; without them the test prints why and passes, unless `CI` is set.

use crate::support;

use std::time::Duration;
use support::demo_child::{Demo, AGENT_PASSWORD};

async fn walk_through(method: &str) {
    if !support::browser::ready("walk-through test") {
        return;
    }
    let demo = Demo::start(&[]).await;
    // The built-in agent phone registers by itself.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let metrics = demo
            .client
            .get(format!("{}/metrics", demo.http_base))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        if metrics
            .lines()
            .any(|l| l.contains("sip_registrations_total{result=\"ok\"}"))
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the built-in agent phone did not register:\n{}",
            demo.stderr()
        );
        // The back-off of this bounded wait.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut args = vec![demo.http_base.as_str(), AGENT_PASSWORD];
    if method == "tones" {
        args.push("tones");
    }
    let (ok, stdout, stderr) =
        support::browser::run_node("tests/browser/walkthrough.test.mjs", &args).await;
    assert!(
        ok && stdout.contains("ok"),
        "walk-through failed:\n{stdout}\n{stderr}\n--- demo ---\n{}",
        demo.stderr()
    );

    // What the agents' API kept of it: a verified call, taken by `agent`, ended.
    let call = demo
        .wait_for_call(Duration::from_secs(10), |c| c["state"] == "ended")
        .await;
    assert_eq!(call["verified"], true, "{call}");
    assert_eq!(call["agent"], "agent", "{call}");
    let status = demo.stop().await;
    assert!(
        status.success(),
        "the demo stops cleanly on Ctrl-C: {status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_sees_a_verified_call_with_only_a_browser() {
    walk_through("rfc4733").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bel_nu_can_key_in_the_code_as_tones() {
    walk_through("tones").await;
}
