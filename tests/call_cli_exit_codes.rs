//! `veilig-bellen call`'s exit codes without a server: nothing listening is a call that did not go
//! through (1, "no response"), a bad URI or code is bad input (2), and so are bad arguments (2,
//! clap's usage error).

use crate::support::call_cli;

use call_cli::call;

#[tokio::test]
async fn failures_and_bad_input_have_their_own_exit_codes() {
    let nobody = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = nobody.local_addr().unwrap().port();
    drop(nobody);
    let uri = format!("sip:+31850000000@127.0.0.1:{port}");

    let run = call(&[&uri, "--code", "12345678"]).await;
    assert_eq!(run.code, Some(1), "{run}");
    assert!(
        run.stdout.contains("failed: no response from the far end"),
        "{run}"
    );
    assert!(
        run.stdout.contains("result: the call did not go through"),
        "{run}"
    );

    for (args, says) in [
        (vec!["sip:+31850000000", "--code", "1"], "bad SIP URI"),
        (vec!["tel:+31850000000", "--code", "1"], "bad SIP URI"),
        (
            vec![uri.as_str(), "--code", "1", "--from", "a b"],
            "calling number",
        ),
        (vec![uri.as_str(), "--code", "12x"], "digits 0-9"),
        (vec![uri.as_str()], "--code"),
        (
            vec![uri.as_str(), "--code", "1", "--info", "--inband"],
            "cannot be used",
        ),
        (
            vec![uri.as_str(), "--code", "1", "--wav", "/nonexistent.wav"],
            "nonexistent",
        ),
    ] {
        let run = call(&args).await;
        assert_eq!(run.code, Some(2), "{args:?}: {run}");
        assert!(
            run.stderr.contains(says),
            "{args:?} should say {says:?}: {run}"
        );
        assert!(!run.stdout.contains("INVITE sent"), "{args:?}: {run}");
    }
}
