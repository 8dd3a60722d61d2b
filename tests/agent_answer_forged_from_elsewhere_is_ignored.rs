//! While the agent's phone rings, someone who saw our INVITE to it (its branch, Call-ID and tags)
//! answers it first with a forged 200 OK whose SDP points the citizen's audio at them — from another
//! host (127.0.0.2) and from another port of the phone's own host. We accept a response only from the
//! address its request went to (`sip::endpoint`), so the forgeries are dropped: the call keeps
//! ringing, and when the real phone answers it connects to the real phone and the forger gets no
//! audio at all.
//!
//! The phone is a SIPp phone that rings for a while before answering (and echoes RTP); the caller is
//! this test (SIPp for the SIP, a test socket for the RTP).

use crate::support;

use std::time::Duration;
use support::agent::{answer, server_with_agent};
use support::sipp::TrunkCall;
use support::sipp::{wait_messages, SIPP_LIMIT};
use support::sipp_phone::{ok_invite, scenario, talk, trunk_rtp_port, SippPhone, RECV_INVITE};
use support::sipp_xml::OK_LAST;
use tokio::net::UdpSocket;

const CALLER: &str = "+31633334444";
/// How long the real phone rings before it answers.
const RINGS: Duration = Duration::from_millis(3000);

/// Rings (180), answers after [`RINGS`], takes our ACK, and later our BYE.
fn ring_then_answer() -> String {
    let wait = SIPP_LIMIT.as_millis();
    let rings = RINGS.as_millis();
    scenario(
        "agent phone that answers after ringing",
        &format!(
            r#"{RECV_INVITE}  <send>
    <![CDATA[
      SIP/2.0 180 Ringing
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:agent@[local_ip]:[local_port]>
      Content-Length: 0
    ]]>
  </send>
  <pause milliseconds="{rings}"/>
{}  <recv request="ACK"/>
  <recv request="BYE" timeout="{wait}"/>
{OK_LAST}"#,
            ok_invite()
        ),
    )
}

/// The header lines of the first message in a sipp log that starts with `start`.
fn head_of(messages: &str, start: &str) -> Vec<String> {
    let at = messages.find(start).expect("the message is in the log");
    messages[at..]
        .lines()
        .map(|l| l.trim_end_matches('\r').to_owned())
        .take_while(|l| !l.is_empty())
        .collect()
}

/// A 200 OK to `invite` (its header lines) from a forger at `contact`, whose SDP asks for the audio
/// at 127.0.0.1:`rtp_port` — what a forged answer that took the call would make us send there.
fn forged_ok(invite: &[String], contact: std::net::SocketAddr, rtp_port: u16) -> Vec<u8> {
    let copy = |name: &str| {
        invite
            .iter()
            .filter(|l| {
                l.split(':')
                    .next()
                    .is_some_and(|n| n.trim().eq_ignore_ascii_case(name))
            })
            .map(|l| format!("{l}\r\n"))
            .collect::<String>()
    };
    let to = copy("To");
    let to = to.trim_end();
    let body = format!(
        "v=0\r\no=forger 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {rtp_port} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\n"
    );
    format!(
        "SIP/2.0 200 OK\r\n{}{}{to};tag=forged\r\n{}{}Contact: <sip:agent@{contact}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        copy("Via"),
        copy("From"),
        copy("Call-ID"),
        copy("CSeq"),
        body.len()
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_200_ok_from_another_address_is_ignored_and_the_real_phone_still_connects() {
    let srv = server_with_agent(|_| {}).await;
    let Some(phone) = SippPhone::register(srv.sip_udp, &ring_then_answer(), true).await else {
        return;
    };
    let ear = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let mut call = TrunkCall::new(CALLER);
    call.info_digits = srv.new_code().await;
    call.media_port = Some(ear.local_addr().expect("addr").port());
    let Some((sipp, waiting)) = srv.call_until_waiting(&call, Duration::from_secs(8)).await else {
        return;
    };
    let id = waiting["id"].clone();
    assert_eq!(answer(&srv, &id).await.0, 202);
    wait_messages(
        &phone,
        "our INVITE reaching the phone",
        Duration::from_secs(5),
        |m| m.contains("INVITE sip:agent@"),
    )
    .await;

    // The forgers: one on another host, one on another port of the phone's host; each listens for
    // the audio its SDP asks for.
    let invite = head_of(&phone.messages(), "INVITE sip:agent@");
    assert!(
        invite.iter().any(|l| l.contains("branch=z9hG4bK")),
        "{invite:?}"
    );
    let foreign_before = support::metric("veilig_bellen_sip_foreign_responses_total");
    let mut forgers = Vec::new();
    for host in ["127.0.0.2", "127.0.0.1"] {
        let sip = UdpSocket::bind((host, 0)).await.expect("bind a forger");
        let rtp = UdpSocket::bind("127.0.0.1:0").await.expect("bind its RTP");
        let ok = forged_ok(
            &invite,
            sip.local_addr().expect("addr"),
            rtp.local_addr().expect("addr").port(),
        );
        for _ in 0..3 {
            sip.send_to(&ok, srv.sip_udp)
                .await
                .expect("send the forgery");
        }
        forgers.push((sip, rtp));
    }
    // Every forgery reached our endpoint and was dropped there (each is counted): only then does
    // the call's state tell whether one of them connected it.
    let sent = 3.0 * forgers.len() as f64;
    support::wait_until(Duration::from_secs(2), || {
        support::metric("veilig_bellen_sip_foreign_responses_total") - foreign_before >= sent
    })
    .await;
    let ringing = srv
        .wait_for_call(Duration::from_secs(1), |c| c["id"] == id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ringing["state"], "ringing",
        "a forged 200 OK connected the call: {ringing:#}"
    );

    // The real phone answers: the call connects to it, and what the caller says comes back through
    // the phone's echo — none of it goes to a forger.
    srv.wait_for_call(RINGS + Duration::from_secs(3), |c| {
        c["id"] == id && c["state"] == "connected"
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let trunk_port = trunk_rtp_port(&sipp.messages()).expect("our SDP answer to the trunk");
    let echoed = talk(&ear, trunk_port, Duration::from_millis(1500)).await;
    assert!(
        echoed >= 50,
        "only {echoed} packets came back from the phone"
    );
    let mut buf = [0u8; 2048];
    for (sip, rtp) in &forgers {
        assert!(rtp.try_recv_from(&mut buf).is_err(), "a forger got RTP");
        while let Ok((n, _)) = sip.try_recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]);
            assert!(
                !text.starts_with("ACK") && !text.starts_with("BYE"),
                "a forger got our {text}"
            );
        }
    }

    srv.hang_up_and_check_ended(sipp, &id).await;
    let messages = phone
        .finish()
        .await
        .unwrap_or_else(|e| panic!("the real phone did not get our ACK and BYE: {e}"));
    assert!(messages.contains("ACK sip:"), "{messages}");
    // Operators see the forgeries: counted in /metrics.
    let metrics = reqwest::get(format!("{}/metrics", srv.http_base))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    let forged: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("veilig_bellen_sip_foreign_responses_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(
        forged >= forgers.len() as f64,
        "forged responses counted: {forged}"
    );
    srv.wait_rtp_ports_free(Duration::from_secs(3)).await;
    srv.shutdown().await;
}
