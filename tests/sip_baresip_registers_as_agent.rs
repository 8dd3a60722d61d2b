//! An agent's softphone (baresip, a real SIP user agent) registers as `agent` with digest
//! authentication, and the registrar then lists its contact, reachable at the address it
//! registered from.

mod sip_support;

use std::process::Stdio;
use std::time::Duration;

use sip_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_registers_and_shows_up_in_the_registrar() {
    if tool("baresip").is_none() {
        return;
    }
    let server = start(config()).await;
    let dir = tempdir();
    std::fs::write(
        dir.join("config"),
        "poll_method\t\tepoll\n\
         sip_listen\t\t127.0.0.1:0\n\
         audio_player\t\taufile,/dev/null\n\
         audio_source\t\tausine,440\n\
         audio_alert\t\taufile,/dev/null\n\
         module_path\t\t/usr/lib/baresip/modules\n\
         module\t\t\tg711.so\n\
         module\t\t\taufile.so\n\
         module\t\t\tausine.so\n\
         module_app\t\taccount.so\n\
         module_app\t\tctrl_tcp.so\n\
         ctrl_tcp_listen\t\t127.0.0.1:0\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("accounts"),
        format!(
            "<sip:{AGENT}@{};transport=udp>;auth_pass={PASSWORD};answermode=auto;regint=600\n",
            server.udp()
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new("baresip")
        .arg("-f")
        .arg(&dir)
        .args(["-t", "15"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("baresip starts");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut bindings = Vec::new();
    while tokio::time::Instant::now() < deadline {
        bindings = server.sip.handle.lookup(AGENT).await.unwrap();
        if !bindings.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.start_kill();
    let out = child.wait_with_output().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        bindings.len(),
        1,
        "baresip did not register:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let b = &bindings[0];
    // baresip's Contact user is `agent-0x<instance>`; the AOR is what matters.
    assert!(
        b.contact.uri.user().is_some_and(|u| u.starts_with(AGENT)),
        "{b:?}"
    );
    assert_eq!(b.target.ip().to_string(), "127.0.0.1");
    assert_ne!(b.target, server.udp());
    assert!(b.remaining(std::time::Instant::now()) > 500, "{b:?}");
}
