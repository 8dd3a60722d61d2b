//! RFC 4028 session timers with us as the refresher: a trunk that asks for `Session-Expires: 90;
//! refresher=uas` tears the call down unless we refresh within the interval. We must send a
//! re-INVITE with our current SDP (our relay address, unchanged) at half the interval, ACK the 2xx,
//! and the call goes on. 90 s is the smallest interval RFC 4028 allows, so this test takes ~46 s.
//!
//! Real peer on loopback: SIPp as the trunk.

use crate::support;

use std::time::{Duration, Instant};
use support::server::start;
use support::sipp::{received, wait_messages, TrunkCall};
use support::sipp_xml::{ok_last_with_sdp, recv_request, trunk_sdp, RECV_ACK};

const CALLER: &str = "+31612340004";

/// The trunk waits (at most 60 s, when a 90 s session would be given up) for our refresh and
/// accepts it.
fn trunk_awaits_refresh() -> String {
    recv_request(
        "INVITE",
        60_000,
        &[("Session-Expires: *90", "msg", "refresh_se")],
    ) + &ok_last_with_sdp(
        "trunk",
        "      Session-Expires: 90;refresher=uac\n      Require: timer\n",
        &trunk_sdp(2353687637, None),
    ) + RECV_ACK
        + "  <Reference variables=\"refresh_se\"/>\n"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn we_refresh_the_session_when_the_trunk_leaves_it_to_us() {
    let srv = start(4, |c| {
        c.calls.call.collect.first_digit_timeout = Duration::from_millis(600);
    })
    .await;
    let mut call = TrunkCall::new(CALLER);
    // Our comfort signal comes back, so the call never looks dead for lack of RTP.
    call.rtp_echo = true;
    call.invite_headers = vec![
        "Session-Expires: 90;refresher=uas".to_owned(),
        "Supported: timer".to_owned(),
    ];
    call.after_answer = trunk_awaits_refresh();
    call.limit = Some(Duration::from_secs(75));
    let Some((sipp, waiting)) = srv.call_until_waiting(&call, Duration::from_secs(8)).await else {
        return;
    };
    let id = waiting["id"].clone();
    let started = Instant::now();
    let messages = sipp.messages();
    let ok = messages
        .split("SIP/2.0 200 OK")
        .nth(1)
        .and_then(|r| r.split("v=0").next())
        .unwrap_or_else(|| panic!("no 200 OK in the trunk's log:\n{messages}"));
    assert!(
        ok.contains("Session-Expires: 90;refresher=uas"),
        "our 200 OK does not take the refresher role:\n{ok}"
    );

    // The refresh is due 45 s after our 200 OK.
    let refresh = loop {
        let messages = sipp.messages();
        if let Some(at) = messages.find("INVITE sip:trunk@") {
            break messages[at..].to_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(55),
            "no session refresh within 55 s of a 90 s session:\n{}",
            sipp.logs()
        );
        // The back-off of this bounded wait (45 s, the time under test).
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let waited = started.elapsed();
    eprintln!("session refresh after {waited:?}");
    assert!(
        waited >= Duration::from_secs(40),
        "refreshed after {waited:?}, long before half the interval"
    );
    let port: u16 = refresh
        .split("m=audio ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("the refresh carries no SDP offer:\n{refresh}"));
    assert!(
        srv.rtp_ports.contains(&port),
        "the refresh moved the media to port {port}, away from our relay"
    );
    // The trunk's 200 was ACKed (its scenario waits for the ACK) and the call goes on.
    wait_messages(
        &sipp,
        "our ACK to the refresh",
        Duration::from_secs(3),
        |m| received(m, "ACK sip:trunk@") >= 1,
    )
    .await;
    let calls = srv.calls().await;
    let view = calls.iter().find(|c| c["id"] == id).expect("listed");
    assert_eq!(
        view["state"], "waiting",
        "the call did not survive the refresh"
    );
    srv.hang_up_and_check_ended(sipp, &id).await;
    srv.shutdown().await;
}
