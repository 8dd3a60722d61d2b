//! The agents' live event stream (`GET /api/v1/calls/events`, server-sent events) follows a call from
//! start to end: a verified caller shows up `waiting` with the attributes, the agent's phone rings
//! (`ringing`), answers (`connected`), and when the agent hangs up (BYE from the agent's phone, which
//! the caller gets as a BYE) the stream says `ended` — with no attributes and no calling number left —
//! and every RTP port is free again.

use crate::support;

use std::time::Duration;
use support::agent::{answer, server_with_agent, AgentPhone, Answer};
use support::events::Events;
use support::pcap::{dtmf_call_pcap, DtmfPcapConfig};
use support::sipp::TrunkCall;

const CALLER: &str = "+31644445555";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_shows_a_connected_call_ended_by_the_agent() {
    let srv = server_with_agent(|_| {}).await;
    let Some(mut phone) = AgentPhone::register(srv.sip_udp, Answer::Auto).await else {
        return;
    };
    let mut events = Events::open(&srv.http_base).await;
    let content_type = events.content_type();
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    let code = srv.new_code().await;
    let mut call = TrunkCall::new(CALLER);
    call.pcap = Some(dtmf_call_pcap(&code, &DtmfPcapConfig::default()).expect("pcap"));
    call.rtp_echo = true;
    call.await_bye = true;
    let Some((sipp, waiting)) = srv.call_until_waiting(&call, Duration::from_secs(8)).await else {
        return;
    };
    let id = waiting["id"].clone();
    assert_eq!(answer(&srv, &id).await.0, 202);
    phone
        .expect_event(
            "CALL_ESTABLISHED",
            Duration::from_secs(8),
            "the agent's phone never took the call",
        )
        .await;
    srv.wait_for_call(Duration::from_secs(3), |c| {
        c["id"] == id && c["state"] == "connected"
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    phone.hang_up_on(sipp).await;

    // Everything the stream said about this call, in order, up to its end.
    let mut states: Vec<String> = Vec::new();
    let ended = loop {
        let event = events
            .next_call(Duration::from_secs(3))
            .await
            .unwrap_or_else(|e| panic!("{e}; states so far: {states:?}"));
        if event["id"] != id {
            continue;
        }
        let state = event["state"].as_str().unwrap_or("").to_owned();
        if state == "connected" {
            assert_eq!(event["agent"], "agent", "{event:#}");
            assert_eq!(event["verified"], true, "{event:#}");
            assert!(
                event["attributes"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty()),
                "the agent sees the verified attributes while connected: {event:#}"
            );
            assert_eq!(event["caller"], CALLER);
        }
        if states.last() != Some(&state) {
            states.push(state.clone());
        }
        if state == "ended" {
            break event;
        }
    };
    for expected in ["waiting", "ringing", "connected", "ended"] {
        assert!(
            states.iter().any(|s| s == expected),
            "no {expected} event: {states:?}"
        );
    }
    let order: Vec<usize> = ["waiting", "ringing", "connected", "ended"]
        .iter()
        .filter_map(|e| states.iter().position(|s| s == e))
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "events out of order: {states:?}"
    );
    assert_eq!(ended["attributes"], serde_json::json!([]), "{ended:#}");
    assert_eq!(ended["caller"], "", "calling number gone after the call");
    assert_eq!(
        ended["verified"], true,
        "the ended call still says it was verified"
    );
    srv.wait_rtp_ports_free(Duration::from_secs(3)).await;
    phone.stop().await;
    srv.shutdown().await;
}
