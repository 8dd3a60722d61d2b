//! Behind an SBC (issue 16): the municipality's trunk reaches us through a strict, stateful,
//! record-routing proxy — Debian's Kamailio with fixtures/kamailio/sbc.cfg — and every call still
//! works as it does without one. The trunk is SIPp keeping the proxy's route set
//! ([`TrunkCall::via_proxy`]); the proxy forwards an in-dialog request only when it carries the
//! proxy's `Route` (else 404, and an ACK is dropped), so each dialog must follow RFC 3261 §12 on
//! our side too.
//!
//! Our T1 is 100 ms here, so 64·T1 is 6.4 s: a call that must outlast it lasts 8 s.
//!
//! - A verified call (RFC 4733 digits) through the proxy, over UDP and over TCP between proxy and
//!   server: our 200 OK carries the proxy's Record-Route, the trunk's ACK gets to us, the call is
//!   still `waiting` after 8 s, and the caller's BYE through the proxy ends it.
//! - After 8 s the agent hangs up (the agents' API): our BYE reaches the trunk through the proxy.
//! - The trunk's re-INVITEs (hold, resume) through the proxy are answered.
//! - The proxy closed its idle TCP connection to us (`tcp_connection_lifetime` 2 s): our BYE still
//!   reaches the trunk, over a new connection to the proxy's Record-Route address.
//! - The first 200 OK is lost between the proxy and the trunk (a lossy UDP hop), with TCP towards us:
//!   we retransmit it (RFC 3261 §13.3.1.4, on every transport), the trunk ACKs and sends its code.
//! - The proxy names itself `localhost` in its Record-Route (`<sip:localhost:PORT;transport=tcp;lr>`,
//!   while it talks UDP to us): after 8 s the agent hangs up and our BYE goes where the route set
//!   says — `localhost` resolved (RFC 3263; `/etc/hosts`, no DNS server asked) to the flow's address
//!   family, over TCP to that port — not back to the UDP address the INVITE came from.
//! - The harness alone: the proxy relays a record-routed call between two SIPps, over UDP and TCP.
//!
//! Failures print SIPp's messages and Kamailio's log (every request and reply it handled, and why it
//! refused one: "without our Route: 404 Not here", "ACK without our Route … dropped").

use crate::support;

use serde_json::Value;
use sip::transaction::TimerConfig;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::kamailio::{established_tcp, Kamailio, KamailioOptions, ServerTransport};
use support::lossy_relay::{is_invite_ok, LossyRelay};
use support::pcap::{dtmf_call_pcap, DtmfPcapConfig};
use support::server::{self, TestServer, API_TOKEN};
use support::sipp::{Sipp, SippLog, SippProcess, TrunkCall, TrunkReinvite};

const CALLER: &str = "+31612345678";
/// Our T1 in these tests: 64·T1 is 6.4 s.
const T1: Duration = Duration::from_millis(100);
/// How long a call lasts to prove it is not cut at 64·T1.
const PAST_64_T1: Duration = Duration::from_secs(8);
/// Longest a trunk (sipp) runs in these tests.
const TRUNK_LIMIT: Duration = Duration::from_secs(40);
/// Longest a trunk waits in a call for the test's go-ahead or for our BYE.
const TRUNK_WAIT: Duration = Duration::from_secs(30);

/// A server (UDP and TCP on one port, as on 5060, T1 = [`T1`]) behind Kamailio, which talks to it
/// over `transport`. `None` when sipp or kamailio is missing (test skipped).
async fn server_behind_sbc(
    transport: ServerTransport,
    tcp_lifetime: Option<Duration>,
) -> Option<(TestServer, Kamailio)> {
    server_behind_sbc_with(transport, |options| {
        if let Some(lifetime) = tcp_lifetime {
            options.tcp_lifetime = lifetime;
        }
    })
    .await
}

/// As [`server_behind_sbc`], the proxy's options changed by `tweak`.
async fn server_behind_sbc_with(
    transport: ServerTransport,
    tweak: impl FnOnce(&mut KamailioOptions),
) -> Option<(TestServer, Kamailio)> {
    support::sipp::find_sipp()?;
    support::kamailio::find_kamailio()?;
    let sip = SocketAddr::from(([127, 0, 0, 1], support::ports::port()));
    let srv = server::start(4, |c| {
        c.sip.udp = vec![sip];
        c.sip.tcp = vec![sip];
        c.sip.timers = TimerConfig {
            t1: T1,
            ..TimerConfig::default()
        };
    })
    .await;
    let mut options = KamailioOptions::new(sip, transport);
    tweak(&mut options);
    let kamailio = Kamailio::start(options).await?;
    Some((srv, kamailio))
}

/// A trunk call through the proxy that sends a fresh link code as RFC 4733 events.
async fn verified_call(srv: &TestServer) -> TrunkCall {
    let code = srv.new_code().await;
    let mut call = TrunkCall::new(CALLER);
    call.pcap = Some(dtmf_call_pcap(&code, &DtmfPcapConfig::default()).expect("pcap"));
    call.via_proxy = true;
    call.limit = Some(TRUNK_LIMIT);
    call.wait_limit = Some(TRUNK_WAIT);
    call
}

/// Everything the peers logged, for failure messages.
fn logs(sipp: &impl SippLog, kamailio: &Kamailio, relay: Option<&LossyRelay>) -> String {
    format!(
        "--- sipp (the trunk)\n{}\n{}\n{}",
        sipp.logs(),
        kamailio.logs(),
        relay.map(LossyRelay::log).unwrap_or_default()
    )
}

/// Waits (bounded) until the call list shows the trunk's call `waiting` (classified); `None` when
/// sipp cannot play pcap audio here (test skipped).
async fn until_waiting(
    srv: &TestServer,
    sipp: &Sipp,
    kamailio: &Kamailio,
    relay: Option<&LossyRelay>,
) -> Option<Value> {
    let waiting = srv
        .wait_for_call(Duration::from_secs(10), |c| {
            (c["caller"] == CALLER && c["state"] == "waiting") || c["state"] == "ended"
        })
        .await;
    match waiting {
        Ok(view) if view["state"] == "ended" => panic!(
            "the call through the SBC ended before it showed up waiting: {view:#}\n{}",
            logs(sipp, kamailio, relay)
        ),
        Ok(view) => Some(view),
        Err(_) if sipp.pcap_play_failed() => {
            support::sipp::skip_or_fail(&format!("sipp cannot play pcap audio: {}", sipp.logs()));
            None
        }
        Err(e) => panic!(
            "the call through the SBC never showed up waiting: {e}\n{}",
            logs(sipp, kamailio, relay)
        ),
    }
}

/// The 200 OK to the INVITE (CSeq 1) as the trunk received it, or "".
fn answer_to_invite(messages: &str) -> String {
    messages
        .split("\n-----")
        .find(|m| {
            m.contains("message received")
                && m.contains("SIP/2.0 200")
                && m.contains("CSeq: 1 INVITE")
        })
        .unwrap_or_default()
        .to_owned()
}

/// Waits (bounded) until the trunk got a 200 OK to its INVITE; when it did. Fails saying `why` it
/// may not have.
async fn trunk_answered(
    sipp: &Sipp,
    kamailio: &Kamailio,
    relay: Option<&LossyRelay>,
    why: &str,
) -> Instant {
    let start = Instant::now();
    while answer_to_invite(&sipp.messages()).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the trunk never got a 200 OK to its INVITE through the SBC{why}\n{}",
            logs(sipp, kamailio, relay)
        );
        // The back-off of this bounded wait for the 200 OK.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Instant::now()
}

/// The trunk got our 200 OK with the proxy's Record-Route (both entries: the proxy changes sockets),
/// so it has a route set for its ACK, INFO, re-INVITE and BYE.
fn assert_record_routed(sipp: &Sipp, kamailio: &Kamailio, relay: Option<&LossyRelay>) {
    let ok = answer_to_invite(&sipp.messages());
    assert!(
        !ok.is_empty(),
        "the trunk never got a 200 OK to its INVITE\n{}",
        logs(sipp, kamailio, relay)
    );
    let record_route = ok
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("record-route:"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        record_route.contains(&kamailio.trunk_addr.to_string())
            && record_route.contains(&kamailio.server_side_addr.to_string()),
        "our 200 OK reached the trunk without the proxy's Record-Route (RFC 3261 §12.1.1: the UAS \
         copies every Record-Route of the request into the response, in order); without a route set \
         the trunk's ACK and BYE carry no Route and the strict proxy drops or refuses them.\n\
         Record-Route seen: {record_route:?}\n200 OK:\n{ok}\n{}",
        logs(sipp, kamailio, relay)
    );
}

/// The call `id` is up now: not `ended`, and the trunk still in its dialog (the trunk answered
/// at `answered`).
async fn assert_up(
    srv: &TestServer,
    sipp: &mut Sipp,
    kamailio: &Kamailio,
    id: &Value,
    answered: Instant,
) {
    let calls = srv.calls().await;
    let call = calls.iter().find(|c| &c["id"] == id);
    let ended = call.is_none_or(|c| c["state"] == "ended");
    assert!(
        !ended && !sipp.ended(),
        "the call through the SBC was cut {:.1} s after the answer (64·T1 = {:.1} s: was our 200 \
         OK never ACKed?): {call:#?}\n{}",
        answered.elapsed().as_secs_f64(),
        T1.as_secs_f64() * 64.0,
        logs(sipp, kamailio, None)
    );
}

/// The call `id` stays up (see [`assert_up`]) until `until`.
async fn assert_still_up(
    srv: &TestServer,
    sipp: &mut Sipp,
    kamailio: &Kamailio,
    id: &Value,
    until: Instant,
    answered: Instant,
) {
    loop {
        assert_up(srv, sipp, kamailio, id, answered).await;
        if Instant::now() >= until {
            return;
        }
        // How often the call is looked at while it must stay up (the time under test).
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The caller hangs up through the proxy: sipp's BYE gets 200 and the call shows `ended`.
async fn caller_hangs_up(srv: &TestServer, sipp: Sipp, kamailio: &Kamailio, id: &Value) {
    sipp.hang_up();
    if let Err(e) = sipp.finish().await {
        panic!(
            "the caller's BYE through the SBC did not end the call cleanly: {e}\n{}",
            kamailio.logs()
        );
    }
    srv.wait_for_call(Duration::from_secs(3), |c| {
        &c["id"] == id && c["state"] == "ended"
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", kamailio.logs()));
}

/// `POST /api/v1/calls/{id}/hangup`: the agent hangs up from the portal.
async fn agent_hangs_up(srv: &TestServer, id: &Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/calls/{id}/hangup", srv.http_base))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .expect("POST hangup");
    assert_eq!(response.status(), 202, "hangup refused");
}

/// After our hang-up: the trunk (waiting for it) gets our BYE through the proxy and answers it, and
/// the call shows `ended`.
async fn trunk_gets_our_bye(
    srv: &TestServer,
    sipp: Sipp,
    kamailio: &Kamailio,
    id: &Value,
    why_it_may_fail: &str,
) {
    let start = Instant::now();
    while !sipp.messages().contains("BYE sip:") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "our BYE never reached the trunk through the SBC ({why_it_may_fail})\n{}",
            logs(&sipp, kamailio, None)
        );
        // The back-off of this bounded wait for our BYE.
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    if let Err(e) = sipp.finish().await {
        panic!(
            "the trunk's side of our hang-up failed: {e}\n{}",
            kamailio.logs()
        );
    }
    srv.wait_for_call(Duration::from_secs(3), |c| {
        &c["id"] == id && c["state"] == "ended"
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", kamailio.logs()));
}

/// The whole verified call through the SBC, lasting past 64·T1, ended by the caller.
async fn whole_call_through_sbc(transport: ServerTransport) {
    let Some((srv, kamailio)) = server_behind_sbc(transport, None).await else {
        return;
    };
    let call = verified_call(&srv).await;
    let mut sipp = Sipp::start(kamailio.trunk_addr, &call).expect("sipp found before");
    let answered = trunk_answered(&sipp, &kamailio, None, "").await;
    let Some(waiting) = until_waiting(&srv, &sipp, &kamailio, None).await else {
        return;
    };
    assert_eq!(
        waiting["verified"],
        true,
        "the caller's code did not get through: {waiting:#}\n{}",
        logs(&sipp, &kamailio, None)
    );
    assert_record_routed(&sipp, &kamailio, None);
    let id = waiting["id"].clone();
    assert_still_up(
        &srv,
        &mut sipp,
        &kamailio,
        &id,
        answered + PAST_64_T1,
        answered,
    )
    .await;
    caller_hangs_up(&srv, sipp, &kamailio, &id).await;
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_call_through_the_sbc_over_udp_lasts_and_the_caller_hangs_up() {
    whole_call_through_sbc(ServerTransport::Udp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_call_through_the_sbc_over_tcp_lasts_and_the_caller_hangs_up() {
    whole_call_through_sbc(ServerTransport::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_hangs_up_and_our_bye_reaches_the_trunk_through_the_sbc() {
    let Some((srv, kamailio)) = server_behind_sbc(ServerTransport::Udp, None).await else {
        return;
    };
    let mut call = verified_call(&srv).await;
    call.await_bye = true;
    let mut sipp = Sipp::start(kamailio.trunk_addr, &call).expect("sipp found before");
    let answered = trunk_answered(&sipp, &kamailio, None, "").await;
    let Some(waiting) = until_waiting(&srv, &sipp, &kamailio, None).await else {
        return;
    };
    assert_eq!(waiting["verified"], true, "{waiting:#}");
    let id = waiting["id"].clone();
    // A real conversation: the agent hangs up well after 64·T1.
    assert_still_up(
        &srv,
        &mut sipp,
        &kamailio,
        &id,
        answered + PAST_64_T1,
        answered,
    )
    .await;
    agent_hangs_up(&srv, &id).await;
    trunk_gets_our_bye(
        &srv,
        sipp,
        &kamailio,
        &id,
        "an in-dialog request from us must carry the route set (RFC 3261 §12.2.1.1): the strict \
         proxy answers one without its Route with 404 Not here",
    )
    .await;
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_bye_finds_the_sbc_by_the_host_name_in_its_record_route() {
    let Some((srv, kamailio)) = server_behind_sbc_with(ServerTransport::Udp, |options| {
        options.named_record_route = true;
    })
    .await
    else {
        return;
    };
    let named_port = kamailio
        .named_route_port
        .expect("a named Record-Route port");
    let named_route = format!("<sip:localhost:{named_port};transport=tcp");
    let mut call = verified_call(&srv).await;
    call.await_bye = true;
    let mut sipp = Sipp::start(kamailio.trunk_addr, &call).expect("sipp found before");
    let answered = trunk_answered(&sipp, &kamailio, None, "").await;
    let Some(waiting) = until_waiting(&srv, &sipp, &kamailio, None).await else {
        return;
    };
    assert_eq!(
        waiting["verified"],
        true,
        "the caller's code did not get through: {waiting:#}\n{}",
        logs(&sipp, &kamailio, None)
    );
    let ok = answer_to_invite(&sipp.messages());
    assert!(
        ok.lines()
            .any(|l| l.starts_with("Record-Route:") && l.contains(&named_route)),
        "our 200 OK did not carry the proxy's named Record-Route {named_route}…>:\n{ok}\n{}",
        logs(&sipp, &kamailio, None)
    );
    let id = waiting["id"].clone();
    assert_still_up(
        &srv,
        &mut sipp,
        &kamailio,
        &id,
        answered + PAST_64_T1,
        answered,
    )
    .await;
    agent_hangs_up(&srv, &id).await;
    trunk_gets_our_bye(
        &srv,
        sipp,
        &kamailio,
        &id,
        "the route set's first hop is sip:localhost:PORT;transport=tcp: a host name to resolve (RFC \
         3263, /etc/hosts) and a TCP connection to open",
    )
    .await;
    // Where it arrived: on the named TCP port, not on the UDP socket the INVITE came from (where a
    // BYE sent to the dialog's flow, with the name not resolved, would have gone).
    let log = kamailio.logs();
    let arrival = format!("to 127.0.0.1:{named_port};");
    assert!(
        log.lines().any(|l| l.contains("request BYE ")
            && l.contains("from tcp:127.0.0.1:")
            && l.contains(&arrival)),
        "our BYE did not reach the proxy over TCP at localhost:{named_port}, the address its \
         Record-Route names (RFC 3261 §12.2.1.1; RFC 3263 §4.1: transport from the URI)\n{log}"
    );
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trunk_holds_and_resumes_through_the_sbc() {
    let Some((srv, kamailio)) = server_behind_sbc(ServerTransport::Udp, None).await else {
        return;
    };
    let mut call = TrunkCall::new(CALLER);
    // The code as SIP INFO: in-dialog requests through the proxy from the start.
    call.info_digits = srv.new_code().await;
    call.via_proxy = true;
    call.limit = Some(TRUNK_LIMIT);
    call.wait_limit = Some(TRUNK_WAIT);
    call.reinvites = TrunkReinvite::hold_and_resume();
    let sipp = Sipp::start(kamailio.trunk_addr, &call).expect("sipp found before");
    let Some(waiting) = until_waiting(&srv, &sipp, &kamailio, None).await else {
        return;
    };
    assert_eq!(
        waiting["verified"],
        true,
        "the caller's code (SIP INFO through the SBC) did not get through: {waiting:#}\n{}",
        logs(&sipp, &kamailio, None)
    );
    assert_record_routed(&sipp, &kamailio, None);
    let id = waiting["id"].clone();
    // CSeq: 1 INVITE, 2–9 INFO, then the re-INVITEs.
    let first = 2 + call.info_digits.len() as u32;
    for (n, what) in [(first, "hold"), (first + 1, "resume")] {
        sipp.proceed();
        let ack = format!("CSeq: {n} ACK");
        let start = Instant::now();
        while !sipp.messages().contains(&ack) {
            assert!(
                start.elapsed() < Duration::from_secs(8),
                "the trunk's re-INVITE ({what}, CSeq {n}) through the SBC was not answered within 8 s\n{}",
                logs(&sipp, &kamailio, None)
            );
            // The back-off of this bounded wait for the ACK.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    caller_hangs_up(&srv, sipp, &kamailio, &id).await;
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_bye_reaches_the_trunk_after_the_sbc_closed_the_idle_tcp_connection() {
    let lifetime = Duration::from_secs(2);
    let Some((srv, kamailio)) = server_behind_sbc(ServerTransport::Tcp, Some(lifetime)).await
    else {
        return;
    };
    let server_port = kamailio.options.server.port();
    let mut call = verified_call(&srv).await;
    call.await_bye = true;
    let mut sipp = Sipp::start(kamailio.trunk_addr, &call).expect("sipp found before");
    let answered = trunk_answered(&sipp, &kamailio, None, "").await;
    let Some(waiting) = until_waiting(&srv, &sipp, &kamailio, None).await else {
        return;
    };
    assert_eq!(waiting["verified"], true, "{waiting:#}");
    let id = waiting["id"].clone();
    assert!(
        established_tcp(server_port) > 0,
        "the SBC has no TCP connection to us, yet it relayed the INVITE over TCP\n{}",
        logs(&sipp, &kamailio, None)
    );
    // The proxy closes the connection it opened to us once it idled for `lifetime`; Kamailio looks
    // at idle connections only every 5 s, after a reader process held it for 5 s more, so that
    // takes some 10–12 s.
    let start = Instant::now();
    while established_tcp(server_port) > 0 {
        assert_up(&srv, &mut sipp, &kamailio, &id, answered).await;
        assert!(
            start.elapsed() < lifetime + Duration::from_secs(20),
            "the SBC kept its idle TCP connection to us open for {:?} (tcp_connection_lifetime \
             {lifetime:?}): was it busy?\n{}",
            start.elapsed(),
            logs(&sipp, &kamailio, None)
        );
        // The back-off of this bounded wait for the proxy to close (the call checked each time).
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Still in the call (and past 64·T1 by now).
    assert_up(&srv, &mut sipp, &kamailio, &id, answered).await;
    agent_hangs_up(&srv, &id).await;
    trunk_gets_our_bye(
        &srv,
        sipp,
        &kamailio,
        &id,
        "the connection the INVITE came on is closed: a BYE goes to the route set's first hop, the \
         proxy's Record-Route address with ;transport=tcp, over a new connection (RFC 3261 §12.2.1.1, \
         §8.1.2)",
    )
    .await;
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_on_the_trunk_hop_is_resent_when_we_talk_tcp_to_the_sbc() {
    let Some((srv, kamailio)) = server_behind_sbc(ServerTransport::Tcp, None).await else {
        return;
    };
    let relay = LossyRelay::start(kamailio.trunk_addr).await;
    let call = verified_call(&srv).await;
    let mut sipp = Sipp::start(relay.addr, &call).expect("sipp found before");
    // The trunk gets a 200 OK only if we send it again: the first one is lost on the way.
    let answered = trunk_answered(
        &sipp,
        &kamailio,
        Some(&relay),
        ": the relay lost the first one and we did not send it again over TCP to the proxy (RFC 3261 \
         §13.3.1.4: the UAS retransmits its 2xx until the ACK comes, even over a reliable transport, \
         since a later hop may be UDP)",
    )
    .await;
    assert_eq!(relay.dropped(), 1, "{}", relay.log());
    let Some(waiting) = until_waiting(&srv, &sipp, &kamailio, Some(&relay)).await else {
        return;
    };
    assert_eq!(
        waiting["verified"],
        true,
        "the caller's code did not get through: {waiting:#}\n{}",
        logs(&sipp, &kamailio, Some(&relay))
    );
    assert_record_routed(&sipp, &kamailio, Some(&relay));
    let id = waiting["id"].clone();
    assert_still_up(
        &srv,
        &mut sipp,
        &kamailio,
        &id,
        answered + Duration::from_secs(2),
        answered,
    )
    .await;
    caller_hangs_up(&srv, sipp, &kamailio, &id).await;
    srv.shutdown().await;
}

/// A UAS standing in for our server: answers with the request's Record-Route copied, takes the ACK
/// and the BYE.
const UAS: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="record-routed UAS">
  <recv request="INVITE"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_Record-Route:]
      [last_From:]
      [last_To:];tag=[pid]SIPpUas[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:veilig-bellen@[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0
    ]]>
  </send>
  <recv request="ACK"/>
  <recv request="BYE"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]>
  </send>
</scenario>
"#;

/// The harness alone: a `via_proxy` trunk call through Kamailio to a SIPp UAS that record-routes
/// correctly; its ACK and BYE carry the proxy's Route and get through.
async fn sbc_relays_a_record_routed_call(transport: ServerTransport) {
    let Some(sipp) = support::sipp::find_sipp() else {
        return;
    };
    let uas_port = support::ports::port();
    let uas_addr = SocketAddr::from(([127, 0, 0, 1], uas_port));
    let Some(kamailio) = Kamailio::start(KamailioOptions::new(uas_addr, transport)).await else {
        return;
    };
    let dir = tempfile::Builder::new()
        .prefix("vb-sipp-uas-")
        .tempdir()
        .expect("temp dir");
    let leading = match transport {
        ServerTransport::Udp => vec!["-t".to_owned(), "u1".to_owned()],
        ServerTransport::Tcp => vec!["-t".to_owned(), "t1".to_owned()],
    };
    let mut uas = SippProcess::spawn(
        &sipp,
        "sipp uas",
        dir,
        UAS,
        &leading,
        uas_port,
        Duration::from_secs(10),
    );
    // The UAS listens before the INVITE comes.
    uas.until_listening(transport == ServerTransport::Tcp).await;
    let mut call = TrunkCall::new(CALLER);
    call.via_proxy = true;
    call.hangup_after = Some(Duration::from_millis(300));
    call.limit = Some(Duration::from_secs(10));
    let uac = Sipp::start(kamailio.trunk_addr, &call).expect("sipp found before");
    let uac_messages = uac.finish().await;
    let uas_messages = uas.finish().await;
    let (uac_messages, uas_messages) = match (uac_messages, uas_messages) {
        (Ok(uac), Ok(uas)) => (uac, uas),
        (uac, uas) => panic!(
            "a call through the SBC alone failed: the harness is broken\n--- trunk: {}\n--- UAS: {}\n{}",
            uac.err().unwrap_or_default(),
            uas.err().unwrap_or_default(),
            kamailio.logs()
        ),
    };
    let route = format!("Route: <sip:{};", kamailio.trunk_addr);
    assert!(
        uac_messages.contains(&route),
        "the trunk's in-dialog requests carried no Route to the SBC ({route}):\n{uac_messages}"
    );
    assert!(
        uas_messages.contains("Record-Route: <sip:127.0.0.1"),
        "the SBC did not record-route:\n{uas_messages}"
    );
    if transport == ServerTransport::Tcp {
        assert!(
            uas_messages.contains(";transport=tcp;"),
            "no ;transport=tcp in the SBC's Record-Route towards a TCP hop:\n{uas_messages}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sbc_harness_relays_a_record_routed_call_over_udp() {
    sbc_relays_a_record_routed_call(ServerTransport::Udp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sbc_harness_relays_a_record_routed_call_over_tcp() {
    sbc_relays_a_record_routed_call(ServerTransport::Tcp).await;
}

#[test]
fn the_lossy_relay_loses_only_a_200_to_an_invite() {
    assert!(is_invite_ok(
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP x\r\nCSeq: 1 INVITE\r\n\r\n"
    ));
    assert!(!is_invite_ok(b"SIP/2.0 200 OK\r\nCSeq: 2 BYE\r\n\r\n"));
    assert!(!is_invite_ok(
        b"SIP/2.0 100 Trying\r\nCSeq: 1 INVITE\r\n\r\n"
    ));
    assert!(!is_invite_ok(
        b"INVITE sip:x SIP/2.0\r\nCSeq: 1 INVITE\r\n\r\n"
    ));
}
