//! With every log at TRACE, a whole link journey (start, disclose, bind to a call, a second call
//! trying the same code, the call ending, maintenance) writes neither the link code, nor the
//! attribute values, nor the IRMA requestor token to the log.

use crate::links_common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use links_common::{code_from_return_url, start_memory_app};
use serde_json::json;
use veilig_bellen::irma::simulator::Simulator;
use veilig_bellen::pii::Pii;
use veilig_bellen::store::{FrontendToken, SessionStore};
use veilig_bellen::tenant::TenantId;
use veilig_bellen::time::unix_now;

/// A log sink the test can read back.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn trace_logs_of_a_whole_journey_hold_no_code_values_or_tokens() {
    let log = Captured::default();
    let sink = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    // One thread: every task of the journey runs under this subscriber.
    let _guard = tracing::subscriber::set_default(subscriber);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let secrets = runtime.block_on(async {
        let (store, app) = start_memory_app().await;
        let session = app.start_session().await;
        let answer = app.app_disclose(&session, json!({"attributes": {}})).await;
        let code = code_from_return_url(answer["clientReturnUrl"].as_str().unwrap());
        app.status(session["token"].as_str().unwrap(), 10).await;
        let verified = app
            .links
            .bind_code(
                &TenantId("demo".into()),
                &Pii::new(code.clone()),
                "call-1",
                unix_now(),
            )
            .await
            .unwrap();
        tracing::info!(?verified, "the call path may log what it got, redacted");
        let _ = app
            .links
            .bind_code(
                &TenantId("demo".into()),
                &Pii::new(code.clone()),
                "call-2",
                unix_now(),
            )
            .await;
        app.links.release_call("call-1", unix_now()).await;
        app.links.purge(unix_now() + 24 * 3600).await.unwrap();
        let token = FrontendToken::parse(session["token"].as_str().unwrap()).unwrap();
        let irma_token = store.get(token).await.unwrap().unwrap().irma_token;
        vec![
            code,
            irma_token,
            Simulator::demo_value("irma-demo.gemeente.personalData.bsn").to_owned(),
            Simulator::demo_value("irma-demo.gemeente.personalData.fullname").to_owned(),
        ]
    });
    drop(runtime);

    let text = String::from_utf8_lossy(&log.0.lock().unwrap()).into_owned();
    assert!(
        text.contains("link session started"),
        "the journey was not logged at all"
    );
    for (i, secret) in secrets.iter().enumerate() {
        assert!(
            !text.contains(secret.as_str()),
            "secret #{i} (0 code, 1 requestor token, 2-3 values) in the log"
        );
    }
}
