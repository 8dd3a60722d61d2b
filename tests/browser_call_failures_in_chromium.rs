//! A browser call that cannot happen tells the citizen why, in their language: the microphone
//! refused (English page), no microphone (Dutch), and a connection that never comes up — then the
//! server's side of that call ends by itself with the attributes purged. The browser part is
//! `tests/browser/browser_call_failures.test.mjs`, against `veilig-bellen demo`.
//!
//! Needs node, /usr/bin/chromium and `npm ci --prefix tests/browser`; without them the test prints
//! why and passes, unless `CI` is set.

use crate::support;

use support::demo_child::{Demo, API_TOKEN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_call_that_cannot_happen_says_why() {
    if !support::browser::ready("browser call failures test") {
        return;
    }
    let demo = Demo::start(&["--no-demo-phone"]).await;
    let (ok, stdout, stderr) = support::browser::run_node(
        "tests/browser/browser_call_failures.test.mjs",
        &[&demo.http_base, API_TOKEN],
    )
    .await;
    assert!(
        ok && stdout.contains("3 passed, 0 failed"),
        "browser call failures:\n{stdout}\n{stderr}\n--- demo ---\n{}",
        demo.stderr()
    );
    let status = demo.stop().await;
    assert!(status.success(), "the demo stops cleanly: {status}");
}
