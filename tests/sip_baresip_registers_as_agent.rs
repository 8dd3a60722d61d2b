//! An agent's softphone (baresip, a real SIP user agent) registers as `agent` with digest
//! authentication, and the registrar then lists its contact, reachable at the address it
//! registered from.

use crate::support;

use std::time::Duration;

use support::agent::{AgentPhone, Answer};
use support::sip_alone::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_registers_and_shows_up_in_the_registrar() {
    let server = start(config()).await;
    let Some(phone) = AgentPhone::register(server.udp(), Answer::Auto).await else {
        return;
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut bindings = Vec::new();
    while tokio::time::Instant::now() < deadline {
        bindings = server.sip.handle.lookup(AGENT).await.unwrap();
        if !bindings.is_empty() {
            break;
        }
        // The back-off of this bounded wait.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = phone.log();
    phone.stop().await;
    assert_eq!(bindings.len(), 1, "baresip did not register:\n{log}");
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
