//! The website button in headless Chromium: click → yivi-frontend popup with a QR code → the IRMA
//! simulator discloses as the Yivi app → the page says the phone will now call; and on a phone the
//! popup offers "Open Yivi app". The browser part is `tests/browser/widget.test.mjs`
//! (playwright-core driving Debian's /usr/bin/chromium); this test serves our public router and the
//! simulator on 127.0.0.1:0 and runs it.
//!
//! Needs node, /usr/bin/chromium and `npm ci --prefix tests/browser`. Without them the test prints
//! why and passes, unless `CI` is set, where it fails.

mod links_common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use veilig_bellen::links::LinkConfig;
use veilig_bellen::store::{AttributeKey, MemoryStore};

fn missing_tool() -> Option<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if Command::new("node").arg("--version").output().is_err() {
        return Some("node is not installed".into());
    }
    if !Path::new(&chromium).exists() {
        return Some(format!("{chromium} is missing (apt-get install chromium)"));
    }
    if !root
        .join("tests/browser/node_modules/playwright-core")
        .exists()
    {
        return Some("playwright-core is missing (npm ci --prefix tests/browser)".into());
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn widget_button_shows_qr_then_tells_the_citizen_the_phone_will_call() {
    if let Some(why) = missing_tool() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the browser test: {why}"
        );
        eprintln!("skipping the Chromium widget test: {why}");
        return;
    }
    let app = links_common::start_app(
        Arc::new(MemoryStore::new()),
        AttributeKey::generate(),
        LinkConfig::default(),
    )
    .await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/widget.test.mjs");
    let mut node = tokio::process::Command::new("node");
    node.arg(&script).arg(&app.base).kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(120), node.output())
        .await
        .expect("browser test finished within 2 minutes")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        output.status.success(),
        "browser scenarios failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("2 passed, 0 failed"));
}
