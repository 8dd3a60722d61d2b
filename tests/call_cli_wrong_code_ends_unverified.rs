//! `veilig-bellen call` with a code nobody disclosed: the call goes through (exit 0 — the caller
//! cannot know the verdict, it only knows it was answered and the code went out) and the agents'
//! list shows it unverified with reason `unknown_code`.

use crate::support;
use crate::support::call_cli;

use std::time::Duration;

use call_cli::call;
use support::demo_child::{Demo, TENANT_NUMBER};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_code_is_a_call_that_went_through_unverified() {
    let demo = Demo::start(&[]).await;
    let uri = format!("sip:{TENANT_NUMBER}@{}", demo.sip);
    let run = call(&[&uri, "--code", "90817263", "--hold", "1"]).await;
    assert_eq!(run.code, Some(0), "{run}");
    assert!(
        run.stdout.contains("code sent: 8 digits by RFC 4733"),
        "{run}"
    );
    assert!(
        run.stdout
            .contains("Whether the code was verified shows in the server's call list"),
        "{run}"
    );
    let call = demo
        .wait_for_call(Duration::from_secs(10), |c| {
            c["verified"] == false && !c["reason"].is_null()
        })
        .await;
    assert_eq!(call["reason"], "unknown_code");
}
