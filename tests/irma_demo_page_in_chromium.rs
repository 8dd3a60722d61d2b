//! The IRMA simulator's demo page in headless Chromium: a person edits a value and clicks **Scan en
//! deel**, the page says which number the Yivi app would call but never shows the link code, and
//! the requestor gets exactly those values. The
//! browser part is `tests/irma_demo_page.mjs` (playwright-core from `tests/browser/node_modules`,
//! Debian's /usr/bin/chromium). Without node, Chromium or playwright-core the test prints why and
//! passes, unless `CI` is set, where it fails.

use std::time::Duration;

use axum::Router;
use tokio::time::Instant;
use veilig_bellen::irma::simulator::{simulator_router, Simulator, SimulatorConfig};
use veilig_bellen::irma::{accept_result, IrmaAuth, IrmaClient, IrmaServerConfig, SessionStatus};
use veilig_bellen::tenant::Tenant;

use crate::support;

const RETURN_URL: &str = "tel:+31850000000,12345678";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_scans_on_the_demo_page_and_the_requestor_gets_those_values() {
    if !support::browser::ready("demo-page test") {
        return;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/irma-sim", listener.local_addr().unwrap());
    let mut config = SimulatorConfig::new(&base);
    config.demo_page = true;
    let app = Router::new().nest("/irma-sim", simulator_router(Simulator::new(config)));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let client = IrmaClient::new(IrmaServerConfig {
        url: base.clone(),
        auth: IrmaAuth::None,
        request_timeout: Duration::from_secs(5),
        retries: 1,
        result_jwt: None,
    })
    .unwrap();
    let tenant = Tenant::demo();
    let started = client
        .start_disclosure(&tenant.disclosure, RETURN_URL)
        .await
        .unwrap();

    let (ok, stdout, stderr) = support::browser::run_node(
        "tests/irma_demo_page.mjs",
        &[&base, started.client_token().unwrap(), RETURN_URL],
    )
    .await;
    assert!(
        ok && stdout.contains("ok"),
        "demo page scenario failed:\n{stdout}\n{stderr}"
    );

    let deadline = Instant::now() + Duration::from_secs(10);
    assert_eq!(
        client
            .wait_terminal(&started.token, deadline)
            .await
            .unwrap(),
        SessionStatus::Done
    );
    let verified = accept_result(&tenant, &client.result(&started.token).await.unwrap()).unwrap();
    assert_eq!(
        verified[0].value.expose().as_deref(),
        Some("Piet Puk"),
        "the value typed on the page"
    );
    assert_eq!(verified[1].value.expose().as_deref(), Some("999993653"));
}
