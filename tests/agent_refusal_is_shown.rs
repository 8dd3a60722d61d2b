//! When the agent's phone does not take the call, the call goes back to `waiting` and everyone can
//! see why — the agent's answer request already got 202, so this is how they learn it:
//! - the phone refuses with 488 Not Acceptable Here (a SIPp phone, registered as `agent`): the call
//!   view and the event stream show `agent_leg` `{"agent":"agent","status":488,"reason":
//!   "not_acceptable"}` at once, the call waits again, and one INFO log line records call id,
//!   agent, status and reason — while the whole log (at TRACE) holds no calling number, code or
//!   attribute value;
//! - the phone only rings (180) until our ring timeout (2 s here): `no_answer`, status `null`, and
//!   the phone got our CANCEL;
//! - the agent has no registered phone: the answer is refused up front (409 `agent_unavailable`,
//!   nothing recorded); a phone that registered and then vanished answers nothing at all:
//!   `unreachable` after the ring timeout;
//! - in the portal (headless Chromium, `tests/browser/portal.test.mjs refused`) the card says
//!   "Uw telefoon weigerde het gesprek (geen gedeelde codec of versleuteling)" to the agent who
//!   clicked Opnemen, and the call can be answered again.

use crate::support;

use serde_json::{json, Value};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use support::agent::{answer, server_with_agent};
use support::events::Events;
use support::log_capture::{capture_at_trace, Buffer};
use support::portal::{portal_call, portal_server, BrowserRun};
use support::server::{expected_attributes, TestServer};
use support::sipp::{Sipp, TrunkCall};
use support::sipp_phone::{register, ring_until_cancelled, scenario, SippPhone, RECV_INVITE};
use tokio::net::UdpSocket;

const CALLER: &str = "+31655556666";

/// Every log line of this test process, at TRACE (one subscriber per process, whichever test
/// runs first installs it).
fn log() -> &'static Buffer {
    static LOG: OnceLock<Buffer> = OnceLock::new();
    LOG.get_or_init(capture_at_trace)
}

/// A phone that refuses every INVITE with 488 Not Acceptable Here (RFC 3261 §21.4.26) and takes
/// our ACK; fails when no INVITE or no ACK comes.
fn refuse_with_488() -> String {
    scenario(
        "agent phone that shares no codec with us",
        &format!(
            r#"{RECV_INVITE}  <send>
    <![CDATA[
      SIP/2.0 488 Not Acceptable Here
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      CSeq: [$invite_cseq] INVITE
      Warning: 304 sipp "Media type not available"
      Content-Length: 0
    ]]>
  </send>
  <recv request="ACK"/>
"#
        ),
    )
}

/// A verified caller waiting ([`support::agent::waiting_call`]).
async fn waiting_call(srv: &TestServer) -> Option<(Sipp, Value, String)> {
    support::agent::waiting_call(srv, CALLER).await
}

/// Waits (bounded) until call `id` is `waiting` again with this `agent_leg`.
async fn back_waiting_with(
    srv: &TestServer,
    id: &Value,
    agent_leg: &Value,
    limit: Duration,
) -> Value {
    support::agent::back_waiting_with(srv, id, agent_leg, limit, String::new).await
}

/// The log lines that record call `id`'s agent leg, and that none of the captured log holds the
/// caller's number, link code or attribute values.
fn agent_leg_log_lines(id: &Value, code: &str) -> Vec<String> {
    let text = log().text();
    let mut secrets = vec![
        CALLER.to_owned(),
        CALLER.trim_start_matches('+').to_owned(),
        code.to_owned(),
    ];
    secrets.extend(expected_attributes().into_iter().map(|(_, _, v)| v));
    let leaks: Vec<&str> = text
        .lines()
        .filter(|l| secrets.iter().any(|s| l.contains(s.as_str())))
        .collect();
    assert!(
        leaks.is_empty(),
        "personal data in the log:\n{}",
        leaks.join("\n")
    );
    text.lines()
        .filter(|l| l.contains("did not take the call") && l.contains(&format!("call={id}")))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_refusing_with_488_is_shown_streamed_and_logged_and_the_call_waits_again() {
    log();
    let srv =
        server_with_agent(|c| c.calls.call.agent_ring_timeout = Duration::from_secs(10)).await;
    let Some(phone) = SippPhone::register(srv.sip_udp, &refuse_with_488(), false).await else {
        return;
    };
    let mut events = Events::open(&srv.http_base).await;
    let Some((sipp, id, code)) = waiting_call(&srv).await else {
        return;
    };

    let asked = Instant::now();
    assert_eq!(answer(&srv, &id).await.0, 202);
    let expected = json!({"agent": "agent", "status": 488, "reason": "not_acceptable"});
    let back = back_waiting_with(&srv, &id, &expected, Duration::from_secs(5)).await;
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "sent back by the ring timeout, not by the 488"
    );
    assert_eq!(back["agent"], Value::Null, "{back:#}");
    assert_eq!(back["verified"], true, "{back:#}");
    let messages = phone
        .finish()
        .await
        .unwrap_or_else(|e| panic!("the phone did not get our INVITE and ACK: {e}"));
    assert!(messages.contains("INVITE sip:agent@"), "{messages}");

    // The stream said it too: ringing (nothing to show yet), then waiting with the outcome.
    events.ringing_then_waiting_with(&id, &expected).await;

    let lines = agent_leg_log_lines(&id, &code);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let line = &lines[0];
    for part in [
        " INFO ",
        "agent=agent",
        "status=488",
        "reason=not_acceptable",
    ] {
        assert!(line.contains(part), "{part} missing in: {line}");
    }

    // It stays after the call ends.
    let ended = srv.hang_up_and_check_ended(sipp, &id).await;
    assert_eq!(ended["agent_leg"], expected, "{ended:#}");
    agent_leg_log_lines(&id, &code);
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_that_rings_until_the_ring_timeout_is_no_answer() {
    log();
    let srv = server_with_agent(|c| c.calls.call.agent_ring_timeout = Duration::from_secs(2)).await;
    let Some(phone) = SippPhone::register(srv.sip_udp, &ring_until_cancelled(), false).await else {
        return;
    };
    let Some((sipp, id, code)) = waiting_call(&srv).await else {
        return;
    };

    let asked = Instant::now();
    assert_eq!(answer(&srv, &id).await.0, 202);
    let expected = json!({"agent": "agent", "status": null, "reason": "no_answer"});
    back_waiting_with(&srv, &id, &expected, Duration::from_secs(5)).await;
    assert!(
        asked.elapsed() >= Duration::from_millis(1500),
        "back to waiting after {:?}, before the ring timeout",
        asked.elapsed()
    );
    phone
        .finish()
        .await
        .unwrap_or_else(|e| panic!("the ringing phone was not cancelled: {e}"));

    let lines = agent_leg_log_lines(&id, &code);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].contains("reason=no_answer") && !lines[0].contains("status="),
        "{}",
        lines[0]
    );
    srv.hang_up_and_check_ended(sipp, &id).await;
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unregistered_or_vanished_phone_is_unreachable() {
    log();
    let srv = server_with_agent(|c| c.calls.call.agent_ring_timeout = Duration::from_secs(2)).await;
    let Some((sipp, id, code)) = waiting_call(&srv).await else {
        return;
    };

    // No registration at all: refused before anything is tried, so nothing to record.
    let (status, body) = answer(&srv, &id).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("agent_unavailable"))
    );
    // The 409 is decided before anything reaches the call task, and a call that is taken shows
    // `ringing` at once (`Registry::answer`): the list already tells.
    let still = back_waiting_with(&srv, &id, &Value::Null, Duration::from_secs(1)).await;
    assert_eq!(still["agent"], Value::Null);

    // A phone that registered and then went away (a closed laptop): nothing answers our INVITE.
    let sock = UdpSocket::bind(("127.0.0.1", support::ports::port()))
        .await
        .expect("bind");
    register(&sock, srv.sip_udp).await;
    drop(sock);
    let asked = Instant::now();
    assert_eq!(answer(&srv, &id).await.0, 202);
    let expected = json!({"agent": "agent", "status": null, "reason": "unreachable"});
    back_waiting_with(&srv, &id, &expected, Duration::from_secs(5)).await;
    assert!(asked.elapsed() >= Duration::from_millis(1500));

    let lines = agent_leg_log_lines(&id, &code);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("reason=unreachable"), "{}", lines[0]);
    srv.hang_up_and_check_ended(sipp, &id).await;
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portal_card_tells_the_agent_in_dutch_why_their_phone_refused() {
    if !support::browser::ready("portal test") {
        return;
    }
    let srv = portal_server(|c| c.calls.call.agent_ring_timeout = Duration::from_secs(10)).await;
    let mut run = BrowserRun::start("refused", &srv.http_base);
    let mut caller = None;
    let mut phone = None;
    while let Some((step, data)) = run.next_step().await {
        match step.as_str() {
            "refused-call" => {
                // Registered only now: a sipp phone lives a limited time.
                let Some(p) = SippPhone::register(srv.sip_udp, &refuse_with_488(), false).await
                else {
                    return;
                };
                phone = Some(p);
                let mut call = TrunkCall::new(CALLER);
                call.info_digits = srv.new_code().await;
                let Some(sipp) = portal_call(&srv, call) else {
                    return;
                };
                caller = Some(sipp);
                run.reply(&json!({ "caller": CALLER })).await;
            }
            "refused" => {
                let id = data["id"].clone();
                let shown = srv
                    .wait_for_call(Duration::from_secs(3), |c| c["id"] == id)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(
                    shown["agent_leg"],
                    json!({"agent": "agent", "status": 488, "reason": "not_acceptable"})
                );
                let p = phone.take().expect("the phone was registered");
                p.finish()
                    .await
                    .unwrap_or_else(|e| panic!("the phone did not refuse our INVITE: {e}"));
                run.reply(&Value::Null).await;
            }
            "ended" => {
                run.caller_hung_up(&mut caller, "Ophangen").await;
            }
            other => panic!("unknown step {other}:\n{}", run.output()),
        }
    }
    run.expect_passed(1).await;
    srv.shutdown().await;
}
