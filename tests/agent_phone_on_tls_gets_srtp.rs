//! An agent's phone that registered over TLS gets encrypted media (SDES-SRTP, RFC 4568): we offer
//! `RTP/SAVP` with `a=crypto`, and the call's audio crosses the agent leg as SRTP.
//!
//! baresip (Debian's, with its `srtp` module) registers over TLS with `mediaenc=srtp-mand`: it
//! refuses any call without SRTP. The agent answers a verified caller, baresip takes the call, and
//! its 440 Hz voice makes the round trip agent → caller (`sipp -rtp_echo`) → agent: RTP went
//! through our SRTP protect and unprotect both ways. A packet written in clear to the agent leg's
//! port, from the phone's own address, is not accepted (counted as rejected).
//!
//! Control: the same phone against an agent configured `srtp = "off"` gets a plain offer, refuses
//! it, and the call goes back to waiting with the refusal visible — so the first test really
//! depends on SRTP being negotiated. And a phone on TLS that speaks no SRTP still talks under the
//! default `srtp = "offer"`.

use crate::support;

use std::time::Duration;

use serde_json::Value;
use support::agent::{answer, caller_hangs_up, server_with_agent, tone_share, AgentPhone, Answer};
use support::pcap::{dtmf_call_pcap, DtmfPcapConfig};
use support::server::TestServer;
use support::sipp::{Sipp, TrunkCall};
use support::tls::{rejected_srtp, set_srtp, with_tls};
use veilig_bellen::tenant::SrtpPolicy;

const CALLER: &str = "+31612345678";

/// A verified caller (RFC 4733 code; `sipp -rtp_echo` sends back what it hears) waits and the
/// agent answers through the API. `None`: sipp is missing.
async fn answered_call(srv: &TestServer) -> Option<(Sipp, Value)> {
    let code = srv.new_code().await;
    let mut call = TrunkCall::new(CALLER);
    call.pcap = Some(dtmf_call_pcap(&code, &DtmfPcapConfig::default()).expect("pcap"));
    call.rtp_echo = true;
    let (sipp, waiting) = srv
        .call_until_waiting(&call, Duration::from_secs(8))
        .await?;
    let id: Value = waiting["id"].clone();
    assert_eq!(answer(srv, &id).await.0, 202);
    Some((sipp, id))
}

/// A server with a TLS listener (a self-signed certificate in a temporary directory: keep the
/// returned one while the server runs) whose agent has `policy`, baresip registered over TLS with
/// account `params`, and a verified caller the agent answered ([`answered_call`]). `None`: baresip
/// or sipp is missing.
async fn answered_on_tls(
    policy: SrtpPolicy,
    params: &str,
) -> Option<(tempfile::TempDir, TestServer, AgentPhone, Sipp, Value)> {
    let certs = tempfile::tempdir().expect("dir");
    let srv = server_with_agent(|c| {
        with_tls(c, certs.path());
        set_srtp(c, policy);
    })
    .await;
    let tls = *srv.running.sip.tls.first().expect("a TLS listener");
    let phone = AgentPhone::register_over_tls(tls, Answer::Auto, params).await?;
    let (sipp, id) = answered_call(&srv).await?;
    Some((certs, srv, phone, sipp, id))
}

/// The phone took the call, and (within 5 s) its 440 Hz voice has come back through the caller's
/// echo: RTP crossed the agent leg both ways.
async fn assert_round_trip(phone: &mut AgentPhone, what: &str) {
    if let Err(e) = phone
        .wait_event("CALL_ESTABLISHED", Duration::from_secs(8))
        .await
    {
        panic!(
            "{what}: the phone never took the call: {e}\n{}",
            phone.log()
        );
    }
    let (rate, heard) = phone
        .wait_heard(
            Duration::from_millis(500),
            440.0,
            0.3,
            Duration::from_secs(5),
        )
        .await;
    let share = tone_share(&heard, f64::from(rate), 440.0);
    assert!(
        heard.len() >= rate as usize / 2 && share > 0.3,
        "{what}: no audio round trip ({} samples, 440 Hz share {share:.2})\n{}",
        heard.len(),
        phone.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_on_tls_talks_srtp_both_ways() {
    let logs = support::log_capture::capture_at_trace();
    let Some((_certs, srv, mut phone, sipp, id)) =
        answered_on_tls(SrtpPolicy::Offer, ";mediaenc=srtp-mand").await
    else {
        return;
    };
    assert_round_trip(&mut phone, "SRTP-only phone").await;
    srv.wait_for_call(Duration::from_secs(3), |c| {
        c["id"] == id && c["state"] == "connected"
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    // Clear RTP thrown at the agent leg's port is not audio: it is rejected and counted. (Which
    // port is ours? The phone's log names the remote RTP address of its call.)
    let before = rejected_srtp();
    let port = phone
        .log()
        .lines()
        .filter_map(|l| l.split("127.0.0.1:").nth(1))
        .filter_map(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse::<u16>()
                .ok()
        })
        .find(|p| srv.rtp_ports.contains(p))
        .unwrap_or_else(|| {
            panic!(
                "the phone's log names no RTP port of ours:\n{}",
                phone.log()
            )
        });
    {
        let spoof = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let mut packet = vec![0x80, 0, 0, 1, 0, 0, 0, 160, 9, 9, 9, 9];
        packet.extend_from_slice(&[0xff; 160]);
        for seq in 0..5u8 {
            packet[3] = seq;
            spoof
                .send_to(&packet, ("127.0.0.1", port))
                .await
                .expect("send");
        }
        // Each is rejected and counted as it comes.
        support::wait_until(Duration::from_secs(3), || rejected_srtp() >= before + 5.0).await;
        assert!(
            rejected_srtp() >= before + 5.0,
            "clear RTP on the SRTP leg was not rejected"
        );
    }

    caller_hangs_up(
        srv,
        sipp,
        &id,
        phone,
        Duration::from_secs(5),
        "the caller's BYE did not end the agent's SRTP call",
    )
    .await;
    // Keys never reach the log, at any level.
    let text = logs.text();
    assert!(text.contains("SIP listening"), "the capture saw the run");
    assert!(
        !text.contains("inline:") && !text.contains("crypto:"),
        "an SRTP key was logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_srtp_off_the_srtp_only_phone_refuses_and_the_call_waits_again() {
    let Some((_certs, srv, mut phone, _sipp, id)) =
        answered_on_tls(SrtpPolicy::Off, ";mediaenc=srtp-mand").await
    else {
        return;
    };
    let again = srv
        .wait_for_call(Duration::from_secs(8), |c| {
            c["id"] == id && c["state"] == "waiting" && !c["agent_leg"].is_null()
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", phone.log()));
    assert_ne!(again["agent_leg"]["status"], 200, "{again:#}");
    assert!(
        phone
            .wait_event("CALL_ESTABLISHED", Duration::from_millis(500))
            .await
            .is_err(),
        "the SRTP-only phone took a plain call"
    );
    phone.stop().await;
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_on_tls_without_srtp_still_talks_under_offer() {
    let logs = support::log_capture::capture_at_trace();
    // No `mediaenc`: this phone speaks plain RTP only.
    let Some((_certs, srv, mut phone, sipp, id)) = answered_on_tls(SrtpPolicy::Offer, "").await
    else {
        return;
    };
    assert_round_trip(&mut phone, "plain phone on TLS").await;
    assert!(
        logs.text()
            .contains("the agent's phone refused SRTP; calling it again with plain RTP"),
        "the plain phone was not offered SRTP first:\n{}",
        phone.log()
    );
    caller_hangs_up(
        srv,
        sipp,
        &id,
        phone,
        Duration::from_secs(5),
        "the caller's BYE did not end the agent's call",
    )
    .await;
}
