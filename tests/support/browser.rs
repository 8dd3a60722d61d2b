//! Test support: headless Chromium driven by playwright-core scripts under node (`tests/browser/`,
//! Debian's /usr/bin/chromium, or `$CHROMIUM`). A test asks [`ready`] first, then [`run_node`].

use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Longest a browser script may run.
pub const NODE_LIMIT: Duration = Duration::from_secs(120);

/// Why the browser tests cannot run here, or `None` when node, Chromium and playwright-core are in
/// place.
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

/// Whether the browser test `what` can run; if not, a note (locally) or a failure (under `CI`).
pub fn ready(what: &str) -> bool {
    match missing_tool() {
        None => true,
        Some(why) => {
            super::sipp::skip_or_fail(&format!("the {what} needs a browser: {why}"));
            false
        }
    }
}

/// Runs `node <script> <args>` from the repository root's `rel_script` (bounded by [`NODE_LIMIT`]):
/// whether it exited 0, its stdout and its stderr.
pub async fn run_node(rel_script: &str, args: &[&str]) -> (bool, String, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel_script);
    let mut node = tokio::process::Command::new("node");
    node.arg(&script).args(args).kill_on_drop(true);
    let output = tokio::time::timeout(NODE_LIMIT, node.output())
        .await
        .expect("the browser script finished within its limit")
        .expect("node runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
