//! A pcap written by `tests/support/pcap.rs`, played by real SIPp (`play_pcap_audio`) into a call,
//! arrives as the code: a minimal UAS on loopback answers SIPp's INVITE with SDP pointing at a UDP
//! socket, and the packets received there go through `sip::rtp::RtpSession`.
//!
//! Needs `sipp` (Debian `sip-tester`) and raw-socket permission (SIPp 3.6 sends pcap audio on a raw
//! socket: root or CAP_NET_RAW). Without them the test is skipped locally and fails under `CI`.

use crate::support;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use sip::rfc4733::DigitEvent;
use sip::rtp::{RtpConfig, RtpEvent, RtpSession};
use sip::sdp::{Codec, Direction, MediaSession};
use support::pcap::{write_dtmf_pcap, DtmfPcapConfig};

const CODE: &str = "40710358";

#[test]
fn sipp_plays_our_dtmf_pcap_and_the_rtp_session_reads_the_code() {
    let Some(sipp) = find_sipp() else {
        skip_or_fail("sipp not found (Debian package sip-tester)");
        return;
    };
    let dir = temp_dir();
    let pcap = dir.join("code.pcap");
    write_dtmf_pcap(&pcap, CODE, &DtmfPcapConfig::default()).expect("write pcap");
    let scenario = dir.join("uac_dtmf.xml");
    std::fs::write(&scenario, uac_scenario(&pcap)).expect("write scenario");

    let sip_sock = UdpSocket::bind("127.0.0.1:0").expect("bind SIP");
    let rtp_sock = UdpSocket::bind("127.0.0.1:0").expect("bind RTP");
    let sip_addr = sip_sock.local_addr().expect("addr");
    let rtp_port = rtp_sock.local_addr().expect("addr").port();
    let uas = thread::spawn(move || run_uas(sip_sock, rtp_port));

    let mut child = spawn_sipp(&sipp, &scenario, sip_addr, &dir);
    let digits = receive_digits(&rtp_sock, &mut child, Duration::from_secs(20));
    let status = child.wait().expect("sipp exit status");
    let _ = uas.join();
    let log = std::fs::read_to_string(dir.join("sipp.err")).unwrap_or_default();
    if log.contains("raw") && log.contains("socket") && digits.is_empty() {
        skip_or_fail(&format!(
            "sipp cannot open a raw socket for pcap play: {log}"
        ));
        return;
    }
    assert!(status.success(), "sipp failed: {status:?}\n{log}");
    assert_eq!(digits, CODE);
    let _ = std::fs::remove_dir_all(&dir);
}

fn skip_or_fail(why: &str) {
    assert!(std::env::var_os("CI").is_none(), "{why}");
    eprintln!("skipping: {why}");
}

fn find_sipp() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("sipp"))
            .find(|p| p.is_file())
    })
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("veilig-bellen-sipp-pcap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn spawn_sipp(sipp: &Path, scenario: &Path, uas: SocketAddr, dir: &Path) -> Child {
    let err = std::fs::File::create(dir.join("sipp.err")).expect("log file");
    Command::new(sipp)
        .arg(uas.to_string())
        .args(["-sf", &scenario.to_string_lossy()])
        .args(["-m", "1", "-i", "127.0.0.1", "-nostdin", "-timeout", "20s"])
        .args(["-p", &support::ports::port().to_string()])
        .args(["-mp", &support::ports::port().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .expect("spawn sipp")
}

fn receive_digits(sock: &UdpSocket, child: &mut Child, limit: Duration) -> String {
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    let start = Instant::now();
    let media = MediaSession {
        remote_addr: None,
        codec: Codec::Pcma { pt: 8 },
        telephone_event_pt: Some(101),
        ptime_ms: 20,
        direction: Direction::SendRecv,
        on_hold: false,
        srtp: None,
    };
    // sipp plays the pcap from loopback, where its SIP would come from (no SDP address here).
    let config = RtpConfig {
        signalling_ip: Some(Ipv4Addr::LOCALHOST.into()),
        ..RtpConfig::default()
    };
    let mut session = RtpSession::new(start, media, config);
    let mut code = String::new();
    let mut buf = [0u8; 1500];
    let mut exited_at: Option<Instant> = None;
    while start.elapsed() < limit {
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            let _ = session.handle_packet(Instant::now(), from, &buf[..n]);
        }
        session.handle_timeout(Instant::now());
        while let Some(ev) = session.poll_event() {
            if let RtpEvent::Digit(DigitEvent::DigitEnd { digit, .. }) = ev {
                code.push(digit.as_char());
            }
        }
        match exited_at {
            Some(t) if t.elapsed() > Duration::from_millis(300) => break,
            Some(_) => {}
            None => {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    exited_at = Some(Instant::now());
                }
            }
        }
    }
    code
}

/// Answers INVITE with 200 OK + SDP, BYE with 200 OK; ignores the rest. Stops after the BYE or 25 s.
fn run_uas(sock: UdpSocket, rtp_port: u16) {
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    while start.elapsed() < Duration::from_secs(25) {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        if msg.starts_with("INVITE ") {
            let sdp = format!(
                "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                 m=audio {rtp_port} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n\
                 a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n"
            );
            let _ = sock.send_to(response(&msg, "application/sdp", &sdp).as_bytes(), from);
        } else if msg.starts_with("BYE ") {
            let _ = sock.send_to(response(&msg, "", "").as_bytes(), from);
            return;
        }
    }
}

fn response(request: &str, content_type: &str, body: &str) -> String {
    let header = |name: &str| {
        request
            .split("\r\n")
            .filter(|l| {
                l.split(':')
                    .next()
                    .is_some_and(|n| n.trim().eq_ignore_ascii_case(name))
            })
            .collect::<Vec<_>>()
    };
    let mut out = String::from("SIP/2.0 200 OK\r\n");
    for name in ["Via", "From", "Call-ID", "CSeq"] {
        for line in header(name) {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    for line in header("To") {
        out.push_str(line);
        if !line.contains("tag=") {
            out.push_str(";tag=uas-h4");
        }
        out.push_str("\r\n");
    }
    out.push_str("Contact: <sip:uas@127.0.0.1>\r\n");
    if !content_type.is_empty() {
        out.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    out
}

fn uac_scenario(pcap: &Path) -> String {
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="veilig-bellen: send a code as RFC 4733 from a pcap">
  <send retrans="500">
    <![CDATA[
      INVITE sip:gemeente@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:gemeente@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8 101
      a=rtpmap:8 PCMA/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="200" rtd="true"/>
  <send>
    <![CDATA[
      ACK sip:gemeente@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:gemeente@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <nop>
    <action>
      <exec play_pcap_audio="{pcap}"/>
    </action>
  </nop>
  <pause milliseconds="3500"/>
  <send retrans="500">
    <![CDATA[
      BYE sip:gemeente@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:gemeente@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="200" crlf="true"/>
</scenario>
"#,
        pcap = pcap.display()
    )
}
