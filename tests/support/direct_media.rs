//! Test support for `media = "direct"` (RFC 3725 §4.1 re-INVITEs of both legs): the server, getting a
//! call answered by the agent, and reading what the legs were told from sipp's message logs.

use super::agent::{answer, server_with_agent, AgentPhone};
use super::server::TestServer;
use super::sipp::{Sipp, TrunkCall};
use serde_json::Value;
use std::time::Duration;
use veilig_bellen::call::direct::AgentMedia;

/// A server with the demo agent and direct media.
pub async fn server() -> TestServer {
    server_with_agent(|c| {
        c.calls.agent_media = AgentMedia::Direct;
        // No link code in these calls: they wait (unverified) after a short silence.
        c.calls.call.collect.first_digit_timeout = Duration::from_millis(600);
    })
    .await
}

/// Calls (SIPp trunk, no pcap), waits until the call waits for an agent and lets the agent answer
/// it (202); returns sipp and the call's id.
pub async fn answered(srv: &TestServer, call: &TrunkCall) -> (Sipp, Value) {
    let (sipp, waiting) = srv
        .call_until_waiting(call, Duration::from_secs(8))
        .await
        .expect("no pcap in this call, so no skip");
    let id = waiting["id"].clone();
    assert_eq!(answer(srv, &id).await.0, 202);
    (sipp, id)
}

/// [`answered`], then waits (at most `limit`) until the agent's baresip phone is in the call.
pub async fn connect(
    srv: &TestServer,
    phone: &mut AgentPhone,
    call: &TrunkCall,
    limit: Duration,
) -> (Sipp, Value) {
    let (sipp, id) = answered(srv, call).await;
    if let Err(e) = phone.wait_event("CALL_ESTABLISHED", limit).await {
        panic!(
            "the agent's phone never took the call: {e}\n{}\nsipp:\n{}",
            phone.log(),
            sipp.logs()
        );
    }
    (sipp, id)
}

/// Waits (at most `limit`) until call `id` shows `media: "direct"`; returns the agent's RTP port,
/// from our first re-INVITE to the trunk (not one of our relay's). `agent_logs` goes into a
/// failure message.
pub async fn wait_direct(
    srv: &TestServer,
    sipp: &Sipp,
    id: &Value,
    limit: Duration,
    agent_logs: impl Fn() -> String,
) -> u16 {
    srv.wait_for_call(limit, |c| c["id"] == *id && c["media"] == "direct")
        .await
        .unwrap_or_else(|e| panic!("{e}\ntrunk:\n{}\nagent:\n{}", sipp.logs(), agent_logs()));
    // Our ACK too: a test telling sipp to go on before it arrived would abort its scenario.
    super::sipp::wait_messages(
        sipp,
        "our ACK to the trunk's 200 for the re-INVITE",
        limit,
        |m| !trunk_reinvite_ports_acked(m).is_empty(),
    )
    .await;
    let agent_port = trunk_reinvite_ports(&sipp.messages())
        .first()
        .copied()
        .unwrap_or_else(|| panic!("no re-INVITE reached the trunk:\n{}", sipp.logs()));
    assert!(
        !srv.rtp_ports.contains(&agent_port),
        "our re-INVITE points the trunk at our relay port {agent_port}, not at the agent"
    );
    agent_port
}

/// Waits (at most `limit`) until our relay has forwarded nothing for 100 ms (five looks in a row):
/// the legs' RTP has left it. Whether it did; the caller asserts what it needs.
pub async fn relay_quiet(srv: &TestServer, limit: Duration) -> bool {
    let mut last = srv.running.calls.relayed_packets();
    let mut unchanged = 0;
    super::wait_until(limit, || {
        let now = srv.running.calls.relayed_packets();
        unchanged = if now == last { unchanged + 1 } else { 0 };
        last = now;
        unchanged >= 5
    })
    .await
}

/// How the calls list shows call `id` now.
pub async fn call_view(srv: &TestServer, id: &Value) -> Value {
    srv.calls()
        .await
        .into_iter()
        .find(|c| c["id"] == *id)
        .expect("the call is listed")
}

/// Our 200 OKs with SDP to a peer's re-INVITEs (our origin line is `o=- `): (m=audio port,
/// direction attribute).
pub fn our_answers(messages: &str) -> Vec<(u16, String)> {
    messages
        .split("SIP/2.0 200 OK")
        .skip(1)
        .filter_map(|rest| {
            let rest = rest.split("\n-----").next().unwrap_or(rest);
            // Answers to re-INVITEs only (the first INVITE is CSeq 1).
            let cseq = rest.split("CSeq:").nth(1)?.lines().next()?.trim();
            if !cseq.ends_with(" INVITE") || cseq.starts_with("1 ") || !rest.contains("o=- ") {
                return None;
            }
            let m = rest.find("m=audio ")?;
            let port = rest[m + 8..].split_whitespace().next()?.parse().ok()?;
            let dir = ["sendrecv", "sendonly", "recvonly", "inactive"]
                .into_iter()
                .find(|d| rest.contains(&format!("a={d}")))
                .unwrap_or("sendrecv");
            Some((port, dir.to_owned()))
        })
        .collect()
}

/// The `m=audio` ports of every re-INVITE the trunk received from us, in order (RFC 3725 §4.1:
/// the first points the trunk at the agent's phone).
pub fn trunk_reinvite_ports(messages: &str) -> Vec<u16> {
    super::sipp::audio_ports(messages, "INVITE sip:trunk@")
}

/// The `m=audio` ports of our re-INVITEs to the trunk whose transaction is over (our ACK reached
/// sipp), in order. A test that tells the trunk to go on (`Sipp::proceed`, the hang-up) before that
/// ACK arrived would abort sipp's scenario, which still waits for it.
pub fn trunk_reinvite_ports_acked(messages: &str) -> Vec<u16> {
    let mut ports = trunk_reinvite_ports(messages);
    ports.truncate(super::sipp::received(messages, "ACK sip:trunk@"));
    ports
}

/// Ends the test's call: the trunk hangs up (the call must show `ended`), the agent's SIPp phone's
/// scenario must pass (else a failure saying `why`), and the server shuts down.
pub async fn hang_up_with_sipp_agent(
    srv: TestServer,
    sipp: Sipp,
    id: &Value,
    agent: super::sipp_phone::SippPhone,
    why: &str,
) {
    srv.hang_up_and_check_ended(sipp, id).await;
    if let Err(e) = agent.finish().await {
        panic!("{why}: {e}");
    }
    srv.shutdown().await;
}
