//! PJSIP (2.15.1, through `pjsua2-python`) as the agent's phone, for SDES-SRTP (RFC 4568) on the
//! agent leg and for the ways a call to the agent fails:
//! - registered over TLS with `--srtp optional` (PJSIP's default `srtpSecureSignaling`, 1: SRTP
//!   only over TLS) and with `--srtp mandatory`: the agent answers a verified caller, PJSIP takes
//!   the call as `RTP/SAVP` with an active AES_CM_128_HMAC_SHA1_80 (or _32) suite, and audio goes
//!   both ways through our SRTP protect and unprotect, told apart by frequency: the caller's
//!   800 Hz reaches the phone's recording, the phone's 440 Hz reaches the caller;
//! - the agent is configured `srtp = "required"` and PJSIP registered over UDP: no phone of the
//!   agent may be rung, so the answer request gets 409 `agent_unavailable` at once (as for an agent
//!   without phones), PJSIP never hears an INVITE, and the call keeps waiting;
//! - PJSIP refuses the call with 488 (`--auto-answer 488`): the call view and the event stream
//!   show `agent_leg` `{"agent":"agent","status":488,"reason":"not_acceptable"}` and the call is
//!   `waiting` again.

use crate::support;

use std::time::Duration;

use serde_json::{json, Value};
use support::agent::answer;
use support::events::Events;
use support::pjsua::{
    phone_takes_verified_call, pjsip_server, talk_both_ways, tls_options, BothWays, PjsuaOptions,
    PjsuaPhone, Srtp, TakenCall,
};
use support::server::TestServer;
use support::sipp::Sipp;
use support::tls::{set_srtp, with_tls};
use veilig_bellen::tenant::SrtpPolicy;

const CALLER: &str = "+31687651234";
/// The caller's voice; the phone's is 440 Hz.
const CALLER_HZ: f64 = 800.0;

/// PJSIP registers over TLS (verifying our certificate) with `srtp`, a verified caller waits and
/// the agent answers; PJSIP must take the call with SRTP, and audio must cross both ways.
async fn srtp_call_both_ways(srtp: Srtp) {
    let certs = tempfile::tempdir().expect("dir");
    let srv = pjsip_server(|c| with_tls(c, certs.path())).await;
    let options = tls_options(&srv, certs.path().join("cert.pem"), srtp);
    let Some(mut phone) = PjsuaPhone::register(options).await else {
        return;
    };
    let Some((ear, sipp, id, taken)) = phone_takes_verified_call(
        &srv,
        &mut phone,
        CALLER,
        "our INVITE never reached the PJSIP phone over TLS",
        true,
        |phone, media, srtp_state| {
            let srtp_state = srtp_state.unwrap_or_default();
            assert!(
                media.ends_with(" RTP/SAVP"),
                "{srtp:?}: PJSIP's media is not SRTP: {media}\n{}",
                phone.log()
            );
            assert!(
                srtp_state == "srtp active AES_CM_128_HMAC_SHA1_80"
                    || srtp_state == "srtp active AES_CM_128_HMAC_SHA1_32",
                "{srtp:?}: {srtp_state}\n{}",
                phone.log()
            );
        },
    )
    .await
    else {
        return;
    };
    let TakenCall {
        media,
        srtp: srtp_state,
        connected,
    } = taken;
    let srtp_state = srtp_state.unwrap_or_default();
    assert_eq!(connected["agent"], "agent", "{connected:#}");
    assert_eq!(connected["agent_leg"], Value::Null, "{connected:#}");

    // The caller talks 800 Hz for 2 s and listens; the phone talks 440 Hz and records.
    let BothWays {
        caller_heard,
        rate,
        phone_heard,
        to_caller,
        to_phone,
    } = talk_both_ways(&phone, &ear, &sipp, CALLER_HZ).await;
    eprintln!(
        "{srtp:?}: {media}; {srtp_state}; the caller heard {to_caller:.1} s of the phone's \
         440 Hz, the phone heard {to_phone:.1} s of the caller's {CALLER_HZ} Hz (recorded at \
         {rate} Hz)"
    );
    assert!(
        to_phone >= 1.2,
        "{srtp:?}: of the caller's 2 s of {CALLER_HZ} Hz the PJSIP phone recorded {to_phone:.1} s \
         ({} samples at {rate} Hz)\n{}",
        phone_heard.len(),
        phone.log()
    );
    assert!(
        to_caller >= 1.2,
        "{srtp:?}: in 2 s the caller heard {to_caller:.1} s of the PJSIP phone's 440 Hz \
         ({} samples)\n{}",
        caller_heard.len(),
        phone.log()
    );
    // The SDES key went only over TLS: PJSIP logs every message it receives with the transport
    // it came on, and our INVITE (with `a=crypto`) came on TLS.
    let log = phone.log();
    assert!(
        log.contains("a=crypto:")
            && log
                .lines()
                .any(|l| l.contains("Request msg INVITE") && l.contains("from TLS")),
        "our SRTP offer did not reach PJSIP over TLS:\n{log}"
    );

    // The phone hangs up: the caller gets a BYE, the call ends, every RTP port is free again.
    phone.hang_up().await;
    if let Err(e) = sipp.finish().await {
        panic!("the caller did not get the agent's hang-up as a BYE: {e}");
    }
    srv.wait_for_call(Duration::from_secs(3), |c| {
        c["id"] == id && c["state"] == "ended"
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    srv.wait_rtp_ports_free(Duration::from_secs(3)).await;
    phone.stop().await;
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pjsip_on_tls_with_srtp_optional_talks_srtp_both_ways() {
    srtp_call_both_ways(Srtp::Optional).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pjsip_on_tls_with_srtp_mandatory_talks_srtp_both_ways() {
    srtp_call_both_ways(Srtp::Mandatory).await;
}

/// A verified caller waiting ([`support::agent::waiting_call`]): sipp and the call id.
async fn waiting_call(srv: &TestServer) -> Option<(Sipp, Value)> {
    let (sipp, id, _) = support::agent::waiting_call(srv, CALLER).await?;
    Some((sipp, id))
}

/// Waits (bounded) until call `id` is `waiting` again with this `agent_leg`.
async fn back_waiting_with(
    srv: &TestServer,
    id: &Value,
    agent_leg: &Value,
    limit: Duration,
    phone: &PjsuaPhone,
) -> Value {
    support::agent::back_waiting_with(srv, id, agent_leg, limit, || format!("\n{}", phone.log()))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srtp_required_and_pjsip_on_udp_is_never_rung() {
    let certs = tempfile::tempdir().expect("dir");
    let srv = pjsip_server(|c| {
        with_tls(c, certs.path());
        set_srtp(c, SrtpPolicy::Required);
        c.calls.call.agent_ring_timeout = Duration::from_secs(10);
    })
    .await;
    let Some(mut phone) = PjsuaPhone::register(PjsuaOptions::new(srv.sip_udp)).await else {
        return;
    };
    let Some((sipp, id)) = waiting_call(&srv).await else {
        return;
    };
    // No phone of the agent can be rung (none on TLS): the agent hears so at once, as for an
    // agent without phones, and the call keeps waiting for someone else.
    let (status, body) = answer(&srv, &id).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "agent_unavailable", "{body}");
    let still = srv
        .wait_for_call(Duration::from_secs(2), |c| {
            c["id"] == id && c["state"] == "waiting"
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(still["agent"], Value::Null, "{still:#}");
    assert!(
        phone
            .wait_for("incoming ", Duration::from_millis(1000))
            .await
            .is_err(),
        "a phone on UDP was rung although the agent's SRTP is required"
    );
    assert!(
        phone.log().contains("REGISTER sip:") && !phone.log().contains("INVITE sip:"),
        "PJSIP got an INVITE:\n{}",
        phone.log()
    );
    srv.hang_up_and_check_ended(sipp, &id).await;
    phone.stop().await;
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pjsip_refusing_with_488_is_shown_and_streamed_and_the_call_waits_again() {
    let srv = pjsip_server(|c| c.calls.call.agent_ring_timeout = Duration::from_secs(10)).await;
    let mut options = PjsuaOptions::new(srv.sip_udp);
    options.auto_answer = Some(488);
    let Some(mut phone) = PjsuaPhone::register(options).await else {
        return;
    };
    let mut events = Events::open(&srv.http_base).await;
    let Some((sipp, id)) = waiting_call(&srv).await else {
        return;
    };

    let asked = tokio::time::Instant::now();
    let (status, body) = answer(&srv, &id).await;
    assert_eq!(status, 202, "{body}");
    phone
        .expect(
            "incoming ",
            Duration::from_secs(5),
            "our INVITE never reached the PJSIP phone",
        )
        .await;
    phone
        .expect(
            "answered 488",
            Duration::from_secs(2),
            "PJSIP did not refuse",
        )
        .await;
    let expected = json!({"agent": "agent", "status": 488, "reason": "not_acceptable"});
    let back = back_waiting_with(&srv, &id, &expected, Duration::from_secs(5), &phone).await;
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "sent back by the ring timeout, not by the 488"
    );
    assert_eq!(back["agent"], Value::Null, "{back:#}");
    assert_eq!(back["verified"], true, "{back:#}");

    // The stream said it too: ringing (nothing to show yet), then waiting with the outcome.
    events.ringing_then_waiting_with(&id, &expected).await;
    assert!(
        !phone.events().iter().any(|e| e.starts_with("media active")),
        "{:?}",
        phone.events()
    );

    let ended = srv.hang_up_and_check_ended(sipp, &id).await;
    assert_eq!(ended["agent_leg"], expected, "{ended:#}");
    phone.stop().await;
    srv.shutdown().await;
}
