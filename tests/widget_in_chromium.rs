//! The website button in headless Chromium: click → yivi-frontend popup with a QR code → the IRMA
//! simulator discloses as the Yivi app → the page says the phone will now call; and on a phone the
//! popup offers "Open Yivi app". The browser part is `tests/browser/widget.test.mjs`
//! (playwright-core driving Debian's /usr/bin/chromium); this test serves our public router and the
//! simulator on 127.0.0.1:0 and runs it.
//!
//! Needs node, /usr/bin/chromium and `npm ci --prefix tests/browser`. Without them the test prints
//! why and passes, unless `CI` is set, where it fails.

use crate::links_common;
use crate::support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn widget_button_shows_qr_then_tells_the_citizen_the_phone_will_call() {
    if !support::browser::ready("widget test") {
        return;
    }
    let (_, app) = links_common::start_memory_app().await;
    let (ok, stdout, stderr) =
        support::browser::run_node("tests/browser/widget.test.mjs", &[&app.base]).await;
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(ok, "browser scenarios failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("2 passed, 0 failed"));
}
