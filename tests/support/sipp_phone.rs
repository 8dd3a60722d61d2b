//! Test support: SIPp as one more registered phone of the demo agent `agent` (RFC 3261 §10: an AOR
//! may have several bindings), for forking tests.
//!
//! The test registers the phone's address with digest auth (RFC 3261 §22) from a socket on the
//! phone's port — our registrar sends to the address a REGISTER came from — then frees the port and
//! starts `sipp` as a UAS there with one of the scenarios below. The scenario is the assertion: sipp
//! fails if what it expects (our CANCEL, our ACK and BYE, our answer's SDP direction) never comes.
//! Every sipp runs at most [`SIPP_LIMIT`].
//!
//! A phone may also register through an outbound proxy ([`SippPhone::register_through`]), which adds
//! a Path (RFC 3327); the `*_record_routed` scenarios are for a phone whose INVITEs come through a
//! record-routing proxy: its responses copy the Record-Route (RFC 3261 §12.1.1) and its in-dialog
//! requests carry the route set.

use super::sip_alone::{agent_register_auth, www_authenticate};
use super::sipp::{SippLog, SippProcess, SIPP_LIMIT};
use super::sipp_xml::{phone_sdp, sdp, OK_LAST};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

/// Reads the INVITE: the headers in-dialog requests from this side need, and its routes.
pub const RECV_INVITE: &str = r#"  <recv request="INVITE" rrs="true">
    <action>
      <ereg regexp=".*" search_in="hdr" header="From:" check_it="true" assign_to="their_from"/>
      <ereg regexp="^[^;]*" search_in="hdr" header="To:" check_it="true" assign_to="our_to"/>
      <ereg regexp="[0-9]+" search_in="hdr" header="CSeq:" check_it="true" assign_to="invite_cseq"/>
    </action>
  </recv>
"#;

/// Rings: 180 to the INVITE just received.
const RINGING: &str = r#"  <send>
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
"#;

/// The response that answers the INVITE.
pub fn ok_invite() -> String {
    format!(
        r#"  <send retrans="500">
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      CSeq: [$invite_cseq] INVITE
      Contact: <sip:agent@[local_ip]:[local_port]>
      Content-Type: application/sdp
      Content-Length: [len]

{}    ]]>
  </send>
"#,
        phone_sdp(1, None)
    )
}

/// A whole UAS scenario named `name` around `body` (which starts with [`RECV_INVITE`]).
pub fn scenario(name: &str, body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"ISO-8859-1\" ?>\n<!DOCTYPE scenario SYSTEM \"sipp.dtd\">\n\
         <scenario name=\"{name}\">\n{body}  <Reference variables=\"their_from,our_to,invite_cseq\"/>\n</scenario>\n"
    )
}

/// `response` (lines from this file: [`ok_invite`], …) for a phone behind a record-routing proxy:
/// each response copies the request's Record-Route, in order (RFC 3261 §12.1.1). Only for responses
/// to a request that carries one.
pub fn record_routed(response: &str) -> String {
    response.replace(
        "      [last_Via:]\n",
        "      [last_Via:]\n      [last_Record-Route:]\n",
    )
}

/// As [`answer_at_once`] behind a record-routing proxy: the 200 OK copies the INVITE's
/// Record-Route, so our ACK and BYE come back through the proxy.
pub fn answer_at_once_record_routed() -> String {
    let wait = SIPP_LIMIT.as_millis();
    scenario(
        "agent phone behind a record-routing proxy that answers at once",
        &format!(
            r#"{RECV_INVITE}{}  <recv request="ACK"/>
  <recv request="BYE" timeout="{wait}"/>
{OK_LAST}"#,
            record_routed(&ok_invite())
        ),
    )
}

/// Behind a record-routing proxy: rings, answers (both copying the INVITE's Record-Route), takes
/// our ACK and after `pause` hangs up with a BYE along the route set (`[routes]`), expecting 200.
pub fn answer_then_hang_up_record_routed(pause: Duration) -> String {
    let pause = pause.as_millis();
    scenario(
        "agent phone behind a record-routing proxy that hangs up",
        &format!(
            r#"{RECV_INVITE}{}{}  <recv request="ACK"/>
  <pause milliseconds="{pause}"/>
  <send retrans="500">
    <![CDATA[
{}      Content-Length: 0
    ]]>
  </send>
  <recv response="200"/>
"#,
            record_routed(RINGING),
            record_routed(&ok_invite()),
            in_dialog_head("BYE", 2),
        ),
    )
}

/// Rings (180) and never answers: expects our CANCEL, answers it 200 and the INVITE 487, takes the
/// ACK. Fails when no CANCEL comes.
pub fn ring_until_cancelled() -> String {
    let wait = SIPP_LIMIT.as_millis();
    scenario(
        "agent phone that only rings",
        &format!(
            r#"{RECV_INVITE}{RINGING}  <recv request="CANCEL" timeout="{wait}"/>
{OK_LAST}  <send>
    <![CDATA[
      SIP/2.0 487 Request Terminated
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      CSeq: [$invite_cseq] INVITE
      Content-Length: 0
    ]]>
  </send>
  <recv request="ACK"/>
"#
        ),
    )
}

/// Answers 200 OK at once, without ringing first: we may not CANCEL before a provisional response
/// (RFC 3261 §9.1), so when two such phones answer, the loser's 200 OK always crosses our decision.
/// Winner or loser, it then gets our ACK and later our BYE (a loser at once).
pub fn answer_at_once() -> String {
    let wait = SIPP_LIMIT.as_millis();
    scenario(
        "agent phone that answers at once",
        &format!(
            r#"{RECV_INVITE}{}  <recv request="ACK"/>
  <recv request="BYE" timeout="{wait}"/>
{OK_LAST}"#,
            ok_invite()
        ),
    )
}

/// Answers at once, then after `pause` puts the caller on hold (re-INVITE `a=sendonly`; our answer
/// must say `a=recvonly`), after another `pause` resumes (`a=sendrecv`, answered `a=sendrecv`), and
/// after a third hangs up (BYE).
pub fn answer_hold_resume_hang_up(pause: Duration) -> String {
    answer_reinvite_hang_up(
        "agent phone that holds and resumes",
        pause,
        &[
            PhoneReinvite::Offer("sendonly", "a=recvonly"),
            PhoneReinvite::Offer("sendrecv", "a=sendrecv"),
        ],
    )
}

/// Answers at once, then after `pause` sends a re-INVITE without SDP; our 200 OK must offer audio,
/// and the phone's answer in the ACK moves its RTP to `port` (RFC 3264 §4: offer in the 2xx,
/// answer in the ACK). Hangs up after another `pause`.
pub fn answer_move_rtp_in_ack_hang_up(pause: Duration, port: u16) -> String {
    answer_reinvite_hang_up(
        "agent phone that moves its RTP in an ACK",
        pause,
        &[PhoneReinvite::LateOffer("m=audio [0-9]+ RTP/AVP", port)],
    )
}

/// A re-INVITE an agent phone sends (RFC 3261 §14).
pub enum PhoneReinvite {
    /// An offer with this direction; our answer must match the regular expression.
    Offer(&'static str, &'static str),
    /// No offer; our offer in the 200 must match the regular expression, and the phone's answer in
    /// the ACK (RFC 3264 §4) moves its RTP to this port.
    LateOffer(&'static str, u16),
}

/// The start lines and headers of an in-dialog request from the phone (after [`RECV_INVITE`]).
pub fn in_dialog_head(method: &str, cseq: u32) -> String {
    format!(
        "      {method} [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: [$our_to];tag=[pid]SIPpTag01[call_number]
      To: [$their_from]
      [routes]
      Call-ID: [call_id]
      CSeq: {cseq} {method}
      Contact: <sip:agent@[local_ip]:[local_port]>
      Max-Forwards: 70
"
    )
}

/// After `pause_ms`, the phone sends `step` as CSeq `cseq` (its SDP with origin version
/// `version`), checks our 200 into the variable `answer_{cseq}` and ACKs it.
pub fn send_reinvite(step: &PhoneReinvite, cseq: u32, version: u64, pause_ms: u128) -> String {
    let with_sdp = |sdp: String| {
        format!("      Content-Type: application/sdp\n      Content-Length: [len]\n\n{sdp}")
    };
    let (offer, expect, ack) = match *step {
        PhoneReinvite::Offer(direction, expect) => (
            with_sdp(phone_sdp(version, Some(direction))),
            expect,
            "      Content-Length: 0\n".to_owned(),
        ),
        PhoneReinvite::LateOffer(expect, port) => (
            "      Content-Length: 0\n".to_owned(),
            expect,
            with_sdp(sdp("phone 1", version, &port.to_string(), None)),
        ),
    };
    format!(
        r#"  <pause milliseconds="{pause_ms}"/>
  <send retrans="500">
    <![CDATA[
{}{offer}    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="200">
    <action>
      <ereg regexp="{expect}" search_in="body" check_it="true" assign_to="answer_{cseq}"/>
    </action>
  </recv>
  <send>
    <![CDATA[
{}{ack}    ]]>
  </send>
"#,
        in_dialog_head("INVITE", cseq),
        in_dialog_head("ACK", cseq)
    )
}

/// Answers at once, then after each `pause` sends the next of `steps` (its answer checked), and after
/// a last `pause` hangs up (BYE).
pub fn answer_reinvite_hang_up(name: &str, pause: Duration, steps: &[PhoneReinvite]) -> String {
    let pause = pause.as_millis();
    let mut body = String::new();
    let mut checks = Vec::new();
    for (i, step) in (2..).zip(steps) {
        checks.push(format!("answer_{i}"));
        body.push_str(&send_reinvite(step, i, u64::from(i), pause));
    }
    let bye_cseq = steps.len() as u32 + 2;
    scenario(
        name,
        &format!(
            r#"{RECV_INVITE}{RINGING}{}  <recv request="ACK"/>
{body}  <pause milliseconds="{pause}"/>
  <send retrans="500">
    <![CDATA[
{}      Content-Length: 0
    ]]>
  </send>
  <recv response="200"/>
  <Reference variables="{}"/>
"#,
            ok_invite(),
            in_dialog_head("BYE", bye_cseq),
            checks.join(","),
        ),
    )
}

/// A running sipp phone.
pub struct SippPhone {
    process: SippProcess,
    /// Its SIP port on 127.0.0.1 (the registered contact).
    pub port: u16,
    /// The 200 OK to its REGISTER, as it got it.
    pub registered: String,
}

impl SippPhone {
    /// Registers a new contact of `agent` at `server` and starts sipp there with `scenario`
    /// (`rtp_echo`: sipp echoes RTP back). `None` when sipp is missing (test skipped).
    pub async fn register(server: SocketAddr, scenario: &str, rtp_echo: bool) -> Option<SippPhone> {
        Self::register_through(server, server, scenario, rtp_echo).await
    }

    /// As [`register`](Self::register), sending the REGISTERs to `proxy` (an outbound proxy that
    /// relays them to `server`, the Request-URI) instead of to `server` itself.
    pub async fn register_through(
        server: SocketAddr,
        proxy: SocketAddr,
        scenario: &str,
        rtp_echo: bool,
    ) -> Option<SippPhone> {
        let sipp = super::tool("sipp")?;
        // A port no other test picks meanwhile: sipp binds it again after we register from it.
        let sock = UdpSocket::bind(("127.0.0.1", super::ports::port()))
            .await
            .expect("bind");
        let me = sock.local_addr().expect("addr");
        let registered = register_via(&sock, server, proxy).await;
        drop(sock);
        let dir = tempfile::Builder::new()
            .prefix("vb-sipp-phone-")
            .tempdir()
            .expect("temp dir");
        let leading: &[String] = if rtp_echo {
            &["-rtp_echo".to_owned()]
        } else {
            &[]
        };
        let mut process = SippProcess::spawn(
            &sipp,
            "sipp phone",
            dir,
            scenario,
            leading,
            me.port(),
            SIPP_LIMIT,
        );
        // Nobody INVITEs it before it listens.
        process.until_listening(false).await;
        Some(SippPhone {
            process,
            port: me.port(),
            registered,
        })
    }

    /// Waits (bounded) for the scenario to end: `Ok` with its SIP messages, `Err` with its logs.
    pub async fn finish(self) -> Result<String, String> {
        self.process.finish().await
    }

    /// Whether the scenario has ended (passed or failed).
    pub fn ended(&mut self) -> bool {
        self.process.ended()
    }

    /// SIP messages sipp sent and received so far.
    pub fn messages(&self) -> String {
        self.process.messages()
    }

    /// Everything sipp logged, for failure messages.
    pub fn logs(&self) -> String {
        self.process.logs()
    }
}

impl SippLog for SippPhone {
    fn messages(&self) -> String {
        self.process.messages()
    }
    fn logs(&self) -> String {
        self.process.logs()
    }
}

/// REGISTER `agent` with the contact `sock` is bound to, answering the digest challenge.
pub async fn register(sock: &UdpSocket, server: SocketAddr) {
    register_via(sock, server, server).await;
}

/// REGISTER `agent` at `server` (the Request-URI) with the contact `sock` is bound to, sending to
/// `next_hop` (`server`, or an outbound proxy) and answering the digest challenge; the 200 OK.
pub async fn register_via(sock: &UdpSocket, server: SocketAddr, next_hop: SocketAddr) -> String {
    let me = sock.local_addr().expect("addr");
    let uri = format!("sip:{server}");
    let request = |cseq: u32, auth: &str| {
        format!(
            "REGISTER {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-phone-{}-{cseq};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:agent@{server}>;tag=phone{}\r\nTo: <sip:agent@{server}>\r\n\
             Call-ID: phone-reg-{}@127.0.0.1\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:agent@{me}>\r\n\
             Expires: 300\r\n{auth}Content-Length: 0\r\n\r\n",
            me.port(),
            me.port(),
            me.port()
        )
    };
    let final_response = |sent: String| async move {
        sock.send_to(sent.as_bytes(), next_hop)
            .await
            .expect("send REGISTER");
        let mut buf = vec![0u8; 4096];
        loop {
            let (n, _) = tokio::time::timeout(Duration::from_secs(3), sock.recv_from(&mut buf))
                .await
                .expect("an answer to REGISTER within 3 s")
                .expect("recv");
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if !text.starts_with("SIP/2.0 1") {
                return text;
            }
        }
    };
    let challenge = final_response(request(1, "")).await;
    assert!(challenge.starts_with("SIP/2.0 401"), "{challenge}");
    let ch = www_authenticate(&challenge).expect("digest challenge");
    let auth = agent_register_auth(&ch, &uri, "phonecnonce");
    let ok = final_response(request(2, &format!("Authorization: {auth}\r\n"))).await;
    assert!(
        ok.starts_with("SIP/2.0 200"),
        "second phone's REGISTER: {ok}"
    );
    ok
}

// ---- the caller's side, when a test socket is the trunk's RTP endpoint (`TrunkCall::media_port`) --

/// The RTP port in our 200 OK to the trunk's INVITE.
pub fn trunk_rtp_port(messages: &str) -> Option<u16> {
    let ok = messages.find("SIP/2.0 200 OK")?;
    let m = messages[ok..].find("m=audio ")? + ok + "m=audio ".len();
    messages[m..].split(' ').next()?.parse().ok()
}

/// Sends 20 ms PCMA packets of a marked payload from `ear` to our port for `time`; counts the packets
/// with that payload that come back (what the caller heard before, e.g. ringback, is skipped).
pub async fn talk(ear: &UdpSocket, our_port: u16, time: Duration) -> u32 {
    const MARK: u8 = 0x2a;
    let mut buf = [0u8; 2048];
    while ear.try_recv_from(&mut buf).is_ok() {}
    let start = Instant::now();
    let mut received = 0;
    let mut next = tokio::time::Instant::now();
    while start.elapsed() < time {
        ear.send_to(&caller_packet(MARK), ("127.0.0.1", our_port))
            .await
            .expect("send RTP");
        next += Duration::from_millis(20);
        while let Ok(Ok((n, _))) = tokio::time::timeout_at(next, ear.recv_from(&mut buf)).await {
            if n == 12 + 160 && buf[1] & 0x7f == 8 && buf[12..n].iter().all(|&b| b == MARK) {
                received += 1;
            }
        }
    }
    received
}

/// The caller's next RTP packet (PCMA, 20 ms of `byte`): one stream for the whole test process, so
/// sequence numbers never repeat between talk spells (a repeat is a duplicate and is dropped).
pub fn caller_packet(byte: u8) -> Vec<u8> {
    static SEQ: AtomicU16 = AtomicU16::new(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let mut packet = vec![0x80, 8];
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    packet.extend_from_slice(&0x5eed_u32.to_be_bytes());
    packet.extend(std::iter::repeat_n(byte, 160));
    packet
}
