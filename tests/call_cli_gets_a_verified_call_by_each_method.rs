//! `veilig-bellen call` against `veilig-bellen demo`: a code disclosed through the demo's IRMA
//! simulator, keyed in by RFC 4733 events (the default), in-band tones and SIP INFO, each time
//! ends as a verified call in the agents' list, and the command exits 0 having said so line by line
//! — without printing or logging (at TRACE) the code.

use crate::support;
use crate::support::call_cli;

use std::time::Duration;

use call_cli::call_logging;
use support::demo_child::{Demo, TENANT_NUMBER};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_method_gives_a_verified_call() {
    let demo = Demo::start(&[]).await;
    let uri = format!("sip:{TENANT_NUMBER}@{}", demo.sip);
    for (n, method) in [(1, None), (2, Some("--inband")), (3, Some("--info"))] {
        let code = demo.new_code().await;
        let mut args = vec![uri.as_str(), "--code", code.as_str(), "--hold", "1"];
        args.extend(method);
        // At TRACE, so the check below covers every log line too.
        let run = call_logging(&args, "trace").await;
        assert_eq!(run.code, Some(0), "{method:?}: {run}");
        let label = match method {
            None => "RFC 4733",
            Some("--inband") => "in-band tones",
            _ => "SIP INFO",
        };
        for line in [
            "answered after ",
            &format!("code sent: 8 digits by {label}"),
            "audio heard (",
            "hung up by the caller after ",
            "result: the call went through",
        ] {
            assert!(
                run.stdout.contains(line),
                "{method:?} lacks {line:?}: {run}"
            );
        }
        assert!(
            !run.stdout.contains(&code) && !run.stderr.contains(&code),
            "the code is never printed nor logged: {run}"
        );
        let verified = demo
            .wait_for_call(Duration::from_secs(10), |c| {
                c["id"] == n && c["verified"] == true
            })
            .await;
        assert_eq!(verified["reason"], serde_json::Value::Null);
    }
    assert!(!demo.stderr().contains("panicked"), "{}", demo.stderr());
}
