//! `serve` with `http.tls_cert`/`http.tls_key` speaks HTTPS itself (rustls): a client that trusts
//! the certificate gets the widget and the agents' API over TLS, plain HTTP gets no answer, and the
//! startup summary shows `https://` without the "not TLS" warning.

use crate::support::serve_cli;

use std::time::Duration;

use serve_cli::{Serve, Setup, API_TOKEN};

#[test]
fn serve_answers_https_with_the_configured_certificate() {
    let setup = Setup::new();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(setup.dir.path().join("cert.pem"), ck.cert.pem()).unwrap();
    std::fs::write(
        setup.dir.path().join("key.pem"),
        ck.signing_key.serialize_pem(),
    )
    .unwrap();
    // Relative paths: next to the config file.
    let serve = Serve::start(&setup.config("tls_cert = \"cert.pem\"\ntls_key = \"key.pem\""));
    assert!(
        serve
            .summary
            .contains(&format!("https://127.0.0.1:{}", setup.http)),
        "{}",
        serve.summary
    );
    assert!(!serve.summary.contains("not TLS"), "{}", serve.summary);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let base = format!("https://localhost:{}", setup.http);
    runtime.block_on(async {
        let cert = reqwest::Certificate::from_pem(ck.cert.pem().as_bytes()).unwrap();
        let client = reqwest::Client::builder()
            .tls_certs_only([cert])
            .resolve(
                "localhost",
                std::net::SocketAddr::from(([127, 0, 0, 1], setup.http)),
            )
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let widget = client
            .get(format!("{base}/widget.js"))
            .send()
            .await
            .unwrap();
        assert_eq!(widget.status(), 200);
        let calls = client
            .get(format!("{base}/api/v1/calls"))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(calls.status(), 200);
        let sim = client
            .get(format!("{base}/irma-sim/session/x/status"))
            .send()
            .await
            .unwrap();
        assert_eq!(sim.status(), 404);

        let plain = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        assert!(
            plain
                .get(format!("http://127.0.0.1:{}/widget.js", setup.http))
                .send()
                .await
                .is_err(),
            "no plain HTTP on the TLS port"
        );
    });

    assert!(serve.terminate().success());
}
