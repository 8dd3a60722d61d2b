//! A second real agent phone, PJSIP (2.15.1, through `pjsua2-python`), takes a verified call. It
//! registers over UDP with digest auth (our default challenges: SHA-256 and MD5); a citizen calls
//! with a valid code (SIPp as the trunk, the code in SIP INFO) and shows up `waiting` and verified;
//! the agent answers through the API as the portal's "Opnemen" does; PJSIP answers by itself and
//! the call shows `connected`. Audio goes both ways through us, told apart by frequency: the
//! caller's 800 Hz reaches the phone's recording, the phone's 440 Hz reaches the caller — and the
//! digits of the code never reach the phone. The phone hangs up: the caller gets a BYE, the call
//! shows `ended`, every RTP port is free again.
//!
//! And over TLS (RFC 3261 §26.2): PJSIP verifies our self-signed test certificate and registers;
//! with a CA our certificate does not chain to, it refuses the connection and never registers.

use crate::support;

use std::time::Duration;

use sip::transaction::Transport;
use support::pjsua::{
    phone_takes_verified_call, pjsip_server, talk_both_ways, BothWays, PjsuaOptions, PjsuaPhone,
    SipTransport, TakenCall,
};
use support::sip_alone::{self, AGENT};
use veilig_bellen::sip_driver::TlsConfig;

const CALLER: &str = "+31687654321";
/// The caller's voice; the phone's is 440 Hz.
const CALLER_HZ: f64 = 800.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pjsip_agent_answers_a_verified_call_and_hangs_up() {
    // Our default digest challenges (SHA-256 first, then MD5): PJSIP answers SHA-256.
    let srv = pjsip_server(|_| {}).await;
    let Some(mut phone) = PjsuaPhone::register(PjsuaOptions::new(srv.sip_udp)).await else {
        return;
    };
    assert!(
        phone.log().contains("algorithm=SHA-256"),
        "PJSIP did not answer the SHA-256 challenge:\n{}",
        phone.log()
    );

    let Some((ear, sipp, id, taken)) = phone_takes_verified_call(
        &srv,
        &mut phone,
        CALLER,
        "our INVITE never reached the PJSIP phone",
        true,
        |_, media, srtp| {
            assert!(media.ends_with(" RTP/AVP"), "{media}");
            assert_eq!(srtp, Some("srtp inactive"));
        },
    )
    .await
    else {
        return;
    };
    let TakenCall {
        media, connected, ..
    } = taken;
    assert_eq!(connected["agent"], "agent");
    assert_eq!(connected["verified"], true, "{connected:#}");

    // The caller talks 800 Hz for 2 s and listens; the phone talks 440 Hz and records.
    let BothWays {
        caller_heard,
        rate,
        phone_heard,
        to_caller,
        to_phone,
    } = talk_both_ways(&phone, &ear, &sipp, CALLER_HZ).await;
    eprintln!(
        "{media}; the caller heard {to_caller:.1} s of the phone's 440 Hz, the phone heard \
         {to_phone:.1} s of the caller's {CALLER_HZ} Hz (recorded at {rate} Hz)"
    );
    assert!(
        to_phone >= 1.2,
        "of the caller's 2 s of {CALLER_HZ} Hz the PJSIP phone recorded {to_phone:.1} s \
         ({} samples at {rate} Hz)\n{}",
        phone_heard.len(),
        phone.log()
    );
    assert!(
        to_caller >= 1.2,
        "in 2 s the caller heard {to_caller:.1} s of the PJSIP phone's 440 Hz ({} samples)\n{}",
        caller_heard.len(),
        phone.log()
    );

    // The phone hangs up.
    phone.hang_up().await;
    phone
        .expect(
            "recording closed",
            Duration::from_secs(1),
            "the recording was not closed",
        )
        .await;
    if let Err(e) = sipp.finish().await {
        panic!("the caller did not get the agent's hang-up as a BYE: {e}");
    }
    let ended = srv
        .wait_for_call(Duration::from_secs(3), |c| {
            c["id"] == id && c["state"] == "ended"
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ended["attributes"], serde_json::json!([]));
    srv.wait_rtp_ports_free(Duration::from_secs(3)).await;
    // The caller's code went as SIP INFO to us; nothing of it may reach the agent's phone.
    let digits: Vec<_> = phone
        .events()
        .iter()
        .filter(|e| e.starts_with("dtmf "))
        .collect();
    assert!(
        digits.is_empty(),
        "the agent's phone got digits: {digits:?}"
    );
    phone.stop().await;
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pjsip_registers_over_tls() {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = |name: &str| dir.path().join(name);
    std::fs::write(path("cert.pem"), ck.cert.pem()).unwrap();
    std::fs::write(path("key.pem"), ck.signing_key.serialize_pem()).unwrap();
    std::fs::write(path("other-ca.pem"), other.cert.pem()).unwrap();
    let mut cfg = sip_alone::config();
    cfg.tls = vec!["127.0.0.1:0".parse().unwrap()];
    cfg.tls_files = Some(TlsConfig {
        cert_chain: path("cert.pem"),
        private_key: path("key.pem"),
    });
    let server = sip_alone::start(cfg).await;
    let tls_addr = server.sip.local.tls[0];

    // A CA our certificate does not chain to: PJSIP must not register.
    let mut options = PjsuaOptions::new(tls_addr);
    options.transport = SipTransport::Tls;
    options.tls_ca = Some(path("other-ca.pem"));
    let Some(mut stranger) = PjsuaPhone::start(options.clone()).await else {
        return;
    };
    let failed = stranger
        .expect(
            "registration failed",
            Duration::from_secs(8),
            "PJSIP did not give up on a certificate it cannot verify",
        )
        .await;
    assert!(
        !stranger
            .events()
            .iter()
            .any(|e| e.starts_with("registered")),
        "{:?}",
        stranger.events()
    );
    assert!(server.sip.handle.lookup(AGENT).await.unwrap().is_empty());
    stranger.stop().await;

    // Our certificate as the CA.
    options.tls_ca = Some(path("cert.pem"));
    let Some(phone) = PjsuaPhone::register(options).await else {
        return;
    };
    let bindings = server.sip.handle.lookup(AGENT).await.unwrap();
    let log = phone.log();
    phone.stop().await;
    eprintln!("with the wrong CA: {failed}");
    assert_eq!(bindings.len(), 1, "{bindings:?}\n{log}");
    assert_eq!(bindings[0].transport, Transport::Tls, "{bindings:?}");
    assert!(
        log.contains("REGISTER sip:") && log.contains(";transport=tls"),
        "PJSIP did not register over TLS:\n{log}"
    );
}
