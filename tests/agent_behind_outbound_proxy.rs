//! The agent's phone behind an outbound proxy (issue 16, RFC 3327 Path): the phone (SIPp) registers
//! with our server through Debian's Kamailio running fixtures/kamailio/outbound.cfg, which adds
//! `Path: <sip:PROXY;lr;received=…>` and `Supported: path`; our registrar keeps that Path with the
//! binding and says so in its 200 OK. A verified trunk call (SIPp, straight to us, code in SIP INFO)
//! is then answered by the agent through the API, and:
//!
//! - our INVITE to the phone carries the Path as its Route and goes to the proxy (the proxy refuses
//!   an initial request without it: 403 Not along the Path); the proxy record-routes it and relays
//!   it to the phone, which sees the proxy's Via on top; the call shows `connected`;
//! - the phone hangs up: its BYE goes along the route set through the proxy, we answer it and end
//!   the trunk's leg with our BYE;
//! - the agent hangs up through the API: our BYE to the phone goes through the proxy too (the route
//!   set from the phone's 200 OK), as did our ACK — the proxy forwards an in-dialog request only
//!   along its own Route (else 404, an ACK is dropped).
//!
//! Failures print both SIPps' messages and Kamailio's log (every request and reply it handled, and
//! why it refused one).

use crate::support;

use serde_json::Value;
use std::time::Duration;
use support::agent::{answer, server_with_agent};
use support::kamailio::{Kamailio, KamailioOptions};
use support::server::{TestServer, API_TOKEN};
use support::sipp::{wait_messages, Sipp, SippLog, TrunkCall};
use support::sipp_phone::{
    answer_at_once_record_routed, answer_then_hang_up_record_routed, SippPhone,
};

const CALLER: &str = "+31612345678";
/// How long the phone stays in the call before it hangs up by itself.
const PHONE_TALKS: Duration = Duration::from_secs(3);

/// Our server with the demo agent, Kamailio as the agents' outbound proxy in front of it, and the
/// agent's SIPp phone registered through the proxy running `scenario`. `None` when sipp or
/// kamailio is missing (test skipped).
async fn phone_behind_proxy(scenario: &str) -> Option<(TestServer, Kamailio, SippPhone)> {
    support::sipp::find_sipp()?;
    support::kamailio::find_kamailio()?;
    let srv = server_with_agent(|_| {}).await;
    let kamailio = Kamailio::start(KamailioOptions::outbound_proxy(srv.sip_udp)).await?;
    let phone =
        SippPhone::register_through(srv.sip_udp, kamailio.trunk_addr, scenario, false).await?;
    // Our registrar took the Path: the REGISTER said `Supported: path` (RFC 3327 §5.3).
    let path = format!("Path: <sip:{};", kamailio.server_side_addr);
    assert!(
        phone.registered.contains(&path),
        "our 200 OK to the REGISTER through the proxy did not list its Path ({path}…):\n{}\n{}",
        phone.registered,
        kamailio.logs()
    );
    Some((srv, kamailio, phone))
}

/// Everything the peers logged, for failure messages.
fn logs(trunk: &impl SippLog, phone: &impl SippLog, kamailio: &Kamailio) -> String {
    format!(
        "--- sipp (the trunk)\n{}\n--- sipp (the agent's phone)\n{}\n{}",
        trunk.logs(),
        phone.logs(),
        kamailio.logs()
    )
}

/// The first message of a sipp log that sipp received and whose start line begins with `start`,
/// or "".
fn received<'a>(messages: &'a str, start: &str) -> &'a str {
    messages
        .split("\n-----")
        .find(|m| m.contains("message received") && m.lines().any(|l| l.starts_with(start)))
        .unwrap_or_default()
}

/// The values of the `name` header lines of `message`, in order.
fn header_values<'a>(message: &'a str, name: &str) -> Vec<&'a str> {
    let prefix = format!("{}:", name.to_ascii_lowercase());
    message
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with(&prefix))
        .map(|l| l[prefix.len()..].trim())
        .collect()
}

/// `request` (as the phone received it) came through the proxy: two Vias, the proxy's on top.
fn assert_came_through_proxy(
    request: &str,
    what: &str,
    trunk: &impl SippLog,
    phone: &impl SippLog,
    kamailio: &Kamailio,
) {
    let vias = header_values(request, "Via");
    let proxy = format!("SIP/2.0/UDP {};", kamailio.trunk_addr);
    assert!(
        vias.len() == 2 && vias[0].starts_with(&proxy),
        "{what} did not reach the phone through the outbound proxy (Via {proxy}… on top of ours): \
         {vias:#?}\n{request}\n{}",
        logs(trunk, phone, kamailio)
    );
}

/// Kamailio's log has a line with every one of `parts`.
fn proxy_logged(kamailio: &Kamailio, parts: &[&str]) -> bool {
    kamailio
        .logs()
        .lines()
        .any(|l| parts.iter().all(|p| l.contains(p)))
}

/// A verified caller (code in SIP INFO, straight to us) waiting for our BYE; the agent answers
/// through the API. Returns the trunk and the call's id once the phone got our INVITE (checked: it
/// came along the Path through the proxy) and the call shows `connected`. `None`: test skipped.
async fn agent_answers(
    srv: &TestServer,
    kamailio: &Kamailio,
    phone: &SippPhone,
) -> Option<(Sipp, Value)> {
    let mut call = TrunkCall::new(CALLER);
    call.info_digits = srv.new_code().await;
    call.await_bye = true;
    let (trunk, waiting) = srv
        .call_until_waiting(&call, Duration::from_secs(8))
        .await?;
    assert_eq!(
        waiting["verified"],
        true,
        "{waiting:#}\n{}",
        logs(&trunk, phone, kamailio)
    );
    let id = waiting["id"].clone();
    let (status, body) = answer(srv, &id).await;
    assert_eq!(status, 202, "answer refused: {body}");

    wait_messages(
        phone,
        "our INVITE reaching the agent's phone through the outbound proxy",
        Duration::from_secs(5),
        |m| !received(m, "INVITE sip:agent@").is_empty(),
    )
    .await;
    // Our INVITE carried the phone's Path as its Route, to the proxy's server-side socket.
    let route = format!("Route: <sip:{};", kamailio.server_side_addr);
    assert!(
        proxy_logged(kamailio, &["request INVITE sip:agent@", &route]),
        "our INVITE to the agent's phone did not reach the outbound proxy with the registered Path \
         as its Route ({route}…; RFC 3327 §5.3: requests to the contact carry the Path as a \
         preloaded route set)\n{}",
        logs(&trunk, phone, kamailio)
    );
    let messages = phone.messages();
    let invite = received(&messages, "INVITE sip:agent@");
    assert_came_through_proxy(invite, "our INVITE", &trunk, phone, kamailio);
    assert!(
        !header_values(invite, "Record-Route").is_empty(),
        "the proxy did not record-route our INVITE: the rest of this test needs it\n{invite}"
    );
    // Our ACK to the phone's 200 OK: along the route set, through the proxy.
    wait_messages(
        phone,
        "our ACK reaching the agent's phone",
        Duration::from_secs(3),
        |m| !received(m, "ACK sip:agent@").is_empty(),
    )
    .await;
    let messages = phone.messages();
    let ack = received(&messages, "ACK sip:agent@");
    assert_came_through_proxy(ack, "our ACK", &trunk, phone, kamailio);

    let connected = srv
        .wait_for_call(Duration::from_secs(5), |c| {
            c["id"] == id && c["state"] == "connected"
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(&trunk, phone, kamailio)));
    assert_eq!(connected["agent"], "agent");
    Some((trunk, id))
}

/// The call `id` shows `ended` (bounded).
async fn assert_ended(srv: &TestServer, id: &Value, kamailio: &Kamailio) {
    srv.wait_for_call(Duration::from_secs(3), |c| {
        &c["id"] == id && c["state"] == "ended"
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", kamailio.logs()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_phone_behind_an_outbound_proxy_answers_and_hangs_up() {
    let Some((srv, kamailio, phone)) =
        phone_behind_proxy(&answer_then_hang_up_record_routed(PHONE_TALKS)).await
    else {
        return;
    };
    let Some((trunk, id)) = agent_answers(&srv, &kamailio, &phone).await else {
        return;
    };
    // The phone ends the call by itself: its BYE along the route set, our 200 back through the
    // proxy; then the caller gets our BYE.
    let phone_messages = match phone.finish().await {
        Ok(messages) => messages,
        Err(e) => panic!(
            "the agent's phone behind the proxy did not get through its call (our 200 to its BYE \
             missing?): {e}\n--- trunk\n{}\n{}",
            trunk.logs(),
            kamailio.logs()
        ),
    };
    assert!(
        proxy_logged(
            &kamailio,
            &["in-dialog BYE loose-routed to sip:veilig-bellen@"]
        ),
        "the phone's BYE did not pass the proxy:\n{phone_messages}\n{}",
        kamailio.logs()
    );
    if let Err(e) = trunk.finish().await {
        panic!(
            "the caller did not get our BYE after the agent's phone hung up: {e}\n{}",
            kamailio.logs()
        );
    }
    assert_ended(&srv, &id, &kamailio).await;
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_hangs_up_and_our_bye_reaches_the_phone_through_the_outbound_proxy() {
    let Some((srv, kamailio, phone)) = phone_behind_proxy(&answer_at_once_record_routed()).await
    else {
        return;
    };
    let Some((trunk, id)) = agent_answers(&srv, &kamailio, &phone).await else {
        return;
    };
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/calls/{id}/hangup", srv.http_base))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .expect("POST hangup");
    assert_eq!(response.status(), 202, "hangup refused");

    wait_messages(
        &phone,
        "our BYE reaching the agent's phone",
        Duration::from_secs(5),
        |m| !received(m, "BYE sip:agent@").is_empty(),
    )
    .await;
    let messages = phone.messages();
    assert_came_through_proxy(
        received(&messages, "BYE sip:agent@"),
        "our BYE",
        &trunk,
        &phone,
        &kamailio,
    );
    assert!(
        proxy_logged(&kamailio, &["in-dialog BYE loose-routed to sip:agent@"]),
        "our BYE to the phone was not loose-routed by the proxy:\n{}",
        logs(&trunk, &phone, &kamailio)
    );
    if let Err(e) = phone.finish().await {
        panic!(
            "the agent's phone did not end its call cleanly: {e}\n{}",
            kamailio.logs()
        );
    }
    if let Err(e) = trunk.finish().await {
        panic!(
            "the caller did not get our BYE after the agent hung up: {e}\n{}",
            kamailio.logs()
        );
    }
    assert_ended(&srv, &id, &kamailio).await;
    srv.shutdown().await;
}
