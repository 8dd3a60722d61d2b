//! `veilig-bellen serve --config FILE` as a municipality runs it: it starts from the file, says
//! where it listens (without secrets) and that HTTP is not TLS, serves the public and agents' APIs
//! — but the IRMA simulator's paths and the button demo answer 404, and the agents' API wants its
//! token — and stops cleanly on SIGTERM. A broken file stops it before anything starts.

use crate::support::serve_cli;

use serve_cli::{http_request, run_to_end, Serve, Setup, API_TOKEN, IRMA_TOKEN, SIP_PASSWORD};

#[test]
fn serve_has_no_simulator_no_demo_page_and_stops_on_sigterm() {
    let setup = Setup::new();
    let serve = Serve::start(&setup.config(""));
    let (http, summary) = (setup.http, serve.summary.clone());
    assert!(
        summary.contains(&format!("http://127.0.0.1:{http}")),
        "{summary}"
    );
    assert!(
        summary.contains(&format!("sip:127.0.0.1:{}", setup.sip)),
        "{summary}"
    );
    assert!(
        summary.contains("http://127.0.0.1:9 (token)"),
        "the IRMA server: {summary}"
    );
    assert!(
        summary.contains("tenant arnhem") && summary.contains("+31263770000"),
        "{summary}"
    );
    assert!(summary.contains("WARNING: HTTP is not TLS"), "{summary}");
    for secret in [API_TOKEN, SIP_PASSWORD, IRMA_TOKEN] {
        assert!(
            !summary.contains(secret),
            "a secret in the summary: {summary}"
        );
    }

    // The server answers: the widget is there …
    assert_eq!(http_request(http, "GET", "/widget.js", "").0, 200);
    // … the simulator and the button demo are not.
    for (method, path) in [
        ("GET", "/irma-sim"),
        ("GET", "/irma-sim/"),
        ("POST", "/irma-sim/session"),
        ("GET", "/irma-sim/session/abcdef/status"),
        ("POST", "/irma-sim/session/abcdef/disclose"),
        ("GET", "/button-demo"),
    ] {
        assert_eq!(
            http_request(http, method, path, "").0,
            404,
            "{method} {path}"
        );
    }
    // The agents' API needs the configured token.
    assert_eq!(http_request(http, "GET", "/api/v1/calls", "").0, 401);
    let wrong = "Authorization: Bearer wrong-token-0000000\r\n";
    assert_eq!(http_request(http, "GET", "/api/v1/calls", wrong).0, 401);
    let right = format!("Authorization: Bearer {API_TOKEN}\r\n");
    let (status, body) = http_request(http, "GET", "/api/v1/calls", &right);
    assert_eq!(status, 200, "{body}");

    let status = serve.terminate();
    assert!(status.success(), "SIGTERM is a clean stop: {status:?}");
}

#[test]
fn serve_refuses_a_broken_config_before_starting() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.toml");
    std::fs::write(&path, "[irma]\nurl = \"http://irma.example.nl\"\n").unwrap();
    let (status, stdout, stderr) = run_to_end(&["serve", "--config", path.to_str().unwrap()]);
    assert_eq!(status.code(), Some(2));
    assert!(
        stderr.contains("`irma.url`") && stderr.contains("plain http is refused"),
        "{stderr}"
    );
    assert!(stderr.contains("`api_token` is required"), "{stderr}");
    assert!(stdout.is_empty(), "nothing started: {stdout}");
}
