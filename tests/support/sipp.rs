//! Test support: real SIPp as the municipality's SIP trunk, bounded in time.
//!
//! [`TrunkCall`] describes one call (calling number, RTP pcap to play, SIP INFO digits, whether the
//! INVITE is expected to be refused, whether a record-routing proxy stands between) and renders it as
//! a SIPp UAC scenario. [`Sipp::start`] runs `sipp -m 1` against our server (or the proxy) on
//! loopback; an answered call then waits in the dialog until the test says [`Sipp::hang_up`] (an
//! out-of-dialog-looking OPTIONS with the call's Call-ID that the scenario receives, then sends BYE),
//! so a test can look at the call while it lasts without guessing pauses.
//!
//! Needs `sipp` (Debian `sip-tester`) and, for `play_pcap_audio`, raw-socket permission (root or
//! CAP_NET_RAW). Missing: [`find_sipp`] returns `None` and the test is skipped locally, failed under `CI`.

use super::sipp_xml::{sdp, OK_LAST};
use std::fmt::Write as _;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Longest a sipp process may run in any test.
pub const SIPP_LIMIT: Duration = Duration::from_secs(14);

/// The sipp binary (Debian sip-tester), or `None` (after a note, or a failure under `CI`).
pub fn find_sipp() -> Option<PathBuf> {
    super::tool("sipp")
}

/// Skips locally, fails under `CI`.
pub fn skip_or_fail(why: &str) {
    assert!(std::env::var_os("CI").is_none(), "{why}");
    eprintln!("skipping: {why}");
}

/// One trunk call.
#[derive(Clone, Debug)]
pub struct TrunkCall {
    /// Calling number in the From URI.
    pub caller: String,
    /// Number dialled (Request-URI user part).
    pub called: String,
    /// A pcap image of the RTP to play once the call is up (RFC 4733 events and/or PCMA audio).
    pub pcap: Option<Vec<u8>>,
    /// Digits sent as SIP INFO `application/dtmf-relay`, one request each.
    pub info_digits: String,
    /// The INVITE is refused with this status instead of answered.
    pub expect_refusal: Option<u16>,
    /// Echo every RTP packet received back to its sender (`sipp -rtp_echo`): what the agent says
    /// comes back to the agent, proving media flows both ways through us.
    pub rtp_echo: bool,
    /// The far end (the agent) hangs up: the scenario waits for our BYE instead of sending one.
    pub await_bye: bool,
    /// RTP port on 127.0.0.1 written into the SDP offer instead of sipp's media port (a test socket
    /// that listens to what the caller hears). Not with `pcap`.
    pub media_port: Option<u16>,
    /// Hang up (BYE) by itself this long after the ACK instead of waiting for [`Sipp::hang_up`]: for
    /// runs of many calls (`sipp -m N` with the scenario from [`TrunkCall::scenario`]).
    pub hangup_after: Option<Duration>,
    /// re-INVITEs the trunk sends while the call lasts (hold, resume, session refresh, a new RTP
    /// port), each one when the test calls [`Sipp::proceed`].
    pub reinvites: Vec<TrunkReinvite>,
    /// Extra header lines on the INVITE (e.g. `Session-Expires: 90;refresher=uas`), one per line.
    pub invite_headers: Vec<String>,
    /// Scenario steps (SIPp XML) run once the call is up, after the INFO digits: what the trunk does
    /// with our in-dialog requests (REFER, re-INVITE). `[$peer_tag]` is our To tag.
    pub after_answer: String,
    /// How many requests (with CSeq) `after_answer` sends; later requests number after them.
    pub after_answer_requests: u32,
    /// Longest this sipp may run, instead of [`SIPP_LIMIT`].
    pub limit: Option<Duration>,
    /// The trunk reaches us through a record-routing proxy (an SBC): it keeps the `Record-Route` of
    /// our 200 OK as its route set and sends every in-dialog request (ACK, INFO, re-INVITE, BYE) to
    /// our Contact (`[next_url]`) with that route set as `Route` (`[routes]`), RFC 3261 §12.1.2 and
    /// §12.2.1.1. Without a `Record-Route` in our 200 OK the route set is empty and no `Route` goes
    /// out, which a strict proxy refuses.
    pub via_proxy: bool,
    /// Longest the scenario waits in the call for the test's go-ahead ([`Sipp::proceed`],
    /// [`Sipp::hang_up`]) or for our BYE, instead of [`SIPP_LIMIT`]; raise [`TrunkCall::limit`]
    /// with it.
    pub wait_limit: Option<Duration>,
}

/// One re-INVITE from the trunk (RFC 3261 §14, hold per RFC 3264 §8.4).
#[derive(Clone, Debug)]
pub struct TrunkReinvite {
    /// The offer: `None` sends no SDP (we must offer in the 200 OK; the trunk answers in the ACK);
    /// `Some("")` repeats the first INVITE's SDP unchanged (a pure session refresh); otherwise this
    /// direction attribute (`sendonly`, `sendrecv`, …) in a new version of the SDP.
    pub sdp: Option<&'static str>,
    /// RTP port in the offer instead of the first one (a trunk moving its media).
    pub port: Option<u16>,
    /// A regular expression our 200 OK's SDP must match (`a=recvonly` for hold), or "".
    pub expect: &'static str,
}

impl TrunkReinvite {
    /// A re-INVITE on the first RTP port with this offer ([`TrunkReinvite::sdp`]); our 200 OK must
    /// match `expect`.
    pub fn offer(sdp: Option<&'static str>, expect: &'static str) -> Self {
        TrunkReinvite {
            sdp,
            port: None,
            expect,
        }
    }

    /// Hold (`a=sendonly`, answered `a=recvonly`), then resume (`a=sendrecv` both ways): RFC 3264
    /// §8.4.
    pub fn hold_and_resume() -> Vec<Self> {
        vec![
            Self::offer(Some("sendonly"), "a=recvonly"),
            Self::offer(Some("sendrecv"), "a=sendrecv"),
        ]
    }
}

impl TrunkCall {
    pub fn new(caller: &str) -> Self {
        TrunkCall {
            caller: caller.to_owned(),
            called: super::server::TENANT_NUMBER.to_owned(),
            pcap: None,
            info_digits: String::new(),
            expect_refusal: None,
            rtp_echo: false,
            await_bye: false,
            media_port: None,
            hangup_after: None,
            reinvites: Vec::new(),
            invite_headers: Vec::new(),
            after_answer: String::new(),
            after_answer_requests: 0,
            limit: None,
            via_proxy: false,
            wait_limit: None,
        }
    }

    /// The SIPp scenario XML; `pcap` is where [`TrunkCall::pcap`] was written.
    pub fn scenario(&self, pcap: Option<&Path>) -> String {
        let mut s = String::from(
            r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="veilig-bellen trunk call">
"#,
        );
        let from = format!(
            "From: <sip:{}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]",
            self.caller
        );
        let ruri = format!("sip:{}@[remote_ip]:[remote_port]", self.called);
        let to = format!("To: <{ruri}>");
        let common = |method: &str, cseq: u32, uri: &str, to: &str| {
            // In a dialog through a proxy: to the remote target, by the route set.
            let (uri, routes) = if self.via_proxy && to.contains(";tag=") {
                ("[next_url]", "      [routes]\n")
            } else {
                (uri, "")
            };
            format!(
                "      {method} {uri} SIP/2.0\n      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n{routes}      {from}\n      {to}\n      Call-ID: [call_id]\n      CSeq: {cseq} {method}\n      Contact: <sip:trunk@[local_ip]:[local_port]>\n      Max-Forwards: 70\n"
            )
        };
        let _ = write!(
            s,
            r#"  <send retrans="500">
    <![CDATA[
{}      Content-Type: application/sdp
      Content-Length: [len]

{}    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
"#,
            common("INVITE", 1, &ruri, &to)
                + &self
                    .invite_headers
                    .iter()
                    .map(|h| format!("      {h}\n"))
                    .collect::<String>(),
            sdp(
                "trunk 53655765",
                2353687637,
                &self
                    .media_port
                    .map_or_else(|| "[media_port]".to_owned(), |p| p.to_string()),
                None
            )
        );
        if let Some(status) = self.expect_refusal {
            let _ = write!(
                s,
                r#"  <recv response="{status}">
    <action>
      <ereg regexp="[0-9]+" search_in="hdr" header="Retry-After:" check_it="true" assign_to="retry_after"/>
    </action>
  </recv>
  <send>
    <![CDATA[
      ACK {ruri} SIP/2.0
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <Reference variables="retry_after"/>
</scenario>
"#
            );
            return s;
        }
        let in_dialog_to = format!("{to};tag=[$peer_tag]");
        let wait = self.wait_limit.unwrap_or(SIPP_LIMIT);
        let target = "sip:veilig-bellen@[remote_ip]:[remote_port]";
        let rrs = if self.via_proxy { " rrs=\"true\"" } else { "" };
        let _ = write!(
            s,
            r#"  <recv response="200" rtd="true"{rrs}>
    <action>
      <ereg regexp=";tag=([^;> ]+)" search_in="hdr" header="To:" check_it="true" assign_to="to_tag_match,peer_tag"/>
    </action>
  </recv>
  <send>
    <![CDATA[
{}      Content-Length: 0
    ]]>
  </send>
"#,
            common("ACK", 1, &ruri, &in_dialog_to)
        );
        if let Some(pcap) = pcap {
            let _ = write!(
                s,
                r#"  <nop>
    <action>
      <exec play_pcap_audio="{}"/>
    </action>
  </nop>
"#,
                pcap.display()
            );
        }
        let mut cseq = 2;
        for (i, digit) in self.info_digits.chars().enumerate() {
            if i > 0 {
                s.push_str("  <pause milliseconds=\"120\"/>\n");
            }
            let _ = write!(
                s,
                r#"  <send retrans="500">
    <![CDATA[
{}      Content-Type: application/dtmf-relay
      Content-Length: [len]

      Signal={digit}
      Duration=160
    ]]>
  </send>
  <recv response="200"/>
"#,
                common("INFO", cseq, target, &in_dialog_to)
            );
            cseq += 1;
        }
        s.push_str(&self.after_answer);
        cseq += self.after_answer_requests;
        let mut checks = Vec::new();
        for (i, re) in self.reinvites.iter().enumerate() {
            let port = re
                .port
                .or(self.media_port)
                .map_or_else(|| "[media_port]".to_owned(), |p| p.to_string());
            let first_sdp = re.sdp == Some("") && re.port.is_none();
            let version = 2353687637u64 + if first_sdp { 0 } else { i as u64 + 1 };
            let body = sdp(
                "trunk 53655765",
                version,
                &port,
                re.sdp.filter(|d| !d.is_empty()),
            );
            let (offer, answer) = match re.sdp {
                Some(_) => (
                    format!("      Content-Type: application/sdp\n      Content-Length: [len]\n\n{body}"),
                    "      Content-Length: 0\n".to_owned(),
                ),
                None => (
                    "      Content-Length: 0\n".to_owned(),
                    format!("      Content-Type: application/sdp\n      Content-Length: [len]\n\n{body}"),
                ),
            };
            let check = if re.expect.is_empty() {
                String::new()
            } else {
                checks.push(format!("reinvite_{i}"));
                format!(
                    "\n    <action>\n      <ereg regexp=\"{}\" search_in=\"body\" check_it=\"true\" assign_to=\"reinvite_{i}\"/>\n    </action>\n  ",
                    re.expect
                )
            };
            let _ = write!(
                s,
                r#"  <recv request="OPTIONS" timeout="{}"/>
{OK_LAST}  <send retrans="500">
    <![CDATA[
{}{offer}    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="200">{check}</recv>
  <send>
    <![CDATA[
{}{answer}    ]]>
  </send>
"#,
                wait.as_millis(),
                common("INVITE", cseq, target, &in_dialog_to),
                common("ACK", cseq, target, &in_dialog_to)
            );
            cseq += 1;
        }
        for check in checks {
            let _ = writeln!(s, "  <Reference variables=\"{check}\"/>");
        }
        if self.await_bye {
            let _ = write!(
                s,
                r#"  <recv request="BYE" timeout="{}"/>
{OK_LAST}  <Reference variables="to_tag_match"/>
</scenario>
"#,
                wait.as_millis()
            );
            return s;
        }
        match self.hangup_after {
            Some(after) if after.is_zero() => {}
            Some(after) => {
                let _ = writeln!(s, "  <pause milliseconds=\"{}\"/>", after.as_millis());
            }
            None => {
                let _ = write!(
                    s,
                    r#"  <recv request="OPTIONS" timeout="{}"/>
{OK_LAST}"#,
                    wait.as_millis()
                );
            }
        }
        let _ = write!(
            s,
            r#"  <send retrans="500">
    <![CDATA[
{}      Content-Length: 0
    ]]>
  </send>
  <recv response="200" crlf="true"/>
  <Reference variables="to_tag_match"/>
</scenario>
"#,
            common("BYE", cseq, target, &in_dialog_to)
        );
        s
    }
}

/// A sipp process (`-m 1`, on 127.0.0.1, bounded by `-timeout`) with its working directory: the
/// scenario file and its logs.
pub struct SippProcess {
    child: Child,
    dir: tempfile::TempDir,
    started: Instant,
    limit: Duration,
    /// What it is, for failure messages (`sipp`, `sipp phone`).
    what: &'static str,
    /// Its SIP port.
    port: u16,
}

impl SippProcess {
    /// Writes `scenario` into `dir` and starts `sipp` on SIP port `port` with it, after `leading`
    /// arguments (the remote host first; `-rtp_echo`, …), for at most `limit`.
    pub fn spawn(
        sipp: &Path,
        what: &'static str,
        dir: tempfile::TempDir,
        scenario: &str,
        leading: &[String],
        port: u16,
        limit: Duration,
    ) -> SippProcess {
        let path = dir.path().join("scenario.xml");
        std::fs::write(&path, scenario).expect("write scenario");
        let stderr = std::fs::File::create(dir.path().join("sipp.stderr")).expect("log file");
        let child = Command::new(sipp)
            .args(leading)
            .args(["-sf", &path.to_string_lossy()])
            .args(["-m", "1", "-i", "127.0.0.1", "-nostdin"])
            .args(["-timeout", &format!("{}s", limit.as_secs())])
            .arg("-timeout_error")
            .args(["-p", &port.to_string()])
            .args(["-mp", &super::ports::port().to_string()])
            .args(["-trace_msg", "-message_file"])
            .arg(dir.path().join("messages.log"))
            .args(["-trace_err", "-error_file"])
            .arg(dir.path().join("errors.log"))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn sipp");
        SippProcess {
            child,
            dir,
            started: Instant::now(),
            limit,
            what,
            port,
        }
    }

    /// Waits (at most 5 s) until sipp listens on its SIP port (`tcp`: over TCP, else UDP), so that
    /// what is sent to it next finds it; fails when sipp ended first.
    pub async fn until_listening(&mut self, tcp: bool) {
        let port = self.port;
        let listening = super::wait_until(Duration::from_secs(5), || {
            super::ports::listening(port, tcp) || !matches!(self.child.try_wait(), Ok(None))
        })
        .await;
        assert!(
            !listening || matches!(self.child.try_wait(), Ok(None)),
            "{} ended before it listened:\n{}",
            self.what,
            self.logs()
        );
    }

    /// When it started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Waits (bounded) for sipp to end; `Ok` with the SIP messages it sent and received, `Err` with
    /// its logs when the scenario failed.
    pub async fn finish(mut self) -> Result<String, String> {
        let limit = self.limit + Duration::from_secs(2);
        let what = self.what;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(self.messages()),
                Ok(Some(status)) => {
                    return Err(format!("{what} failed ({status}):\n{}", self.logs()))
                }
                Ok(None) if self.started.elapsed() > limit => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return Err(format!(
                        "{what} still running after {limit:?}:\n{}",
                        self.logs()
                    ));
                }
                // The back-off of this bounded wait for sipp's end.
                Ok(None) => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(e) => return Err(format!("waiting for sipp: {e}")),
            }
        }
    }

    /// Whether the scenario has ended (passed or failed).
    pub fn ended(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// A file in its directory, "" when missing.
    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }
}

impl Drop for SippProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl SippLog for SippProcess {
    fn messages(&self) -> String {
        self.read("messages.log")
    }
    fn logs(&self) -> String {
        format!(
            "--- stderr\n{}\n--- errors\n{}\n--- messages\n{}",
            self.read("sipp.stderr"),
            self.read("errors.log"),
            self.read("messages.log")
        )
    }
}

/// A running sipp as the trunk, with its files.
pub struct Sipp {
    process: SippProcess,
    call_id: String,
    sip_port: u16,
}

impl Sipp {
    /// Starts sipp for `call` against `server`; `None` when sipp is missing (test skipped).
    pub fn start(server: SocketAddr, call: &TrunkCall) -> Option<Sipp> {
        let sipp = find_sipp()?;
        let dir = tempfile::Builder::new()
            .prefix("vb-sipp-")
            .tempdir()
            .expect("sipp temp dir");
        let pcap = call.pcap.as_ref().map(|bytes| {
            let path = dir.path().join("caller.pcap");
            std::fs::write(&path, bytes).expect("write pcap");
            path
        });
        let scenario = call.scenario(pcap.as_deref());
        let sip_port = super::ports::port();
        let tag = format!("h8-{}-{sip_port}", std::process::id());
        let mut leading = vec![
            server.to_string(),
            "-l".to_owned(),
            "1".to_owned(),
            "-cid_str".to_owned(),
            format!("{tag}-%u@%s"),
        ];
        if call.rtp_echo {
            leading.push("-rtp_echo".to_owned());
        }
        let process = SippProcess::spawn(
            &sipp,
            "sipp",
            dir,
            &scenario,
            &leading,
            sip_port,
            call.limit.unwrap_or(SIPP_LIMIT),
        );
        Some(Sipp {
            process,
            call_id: format!("{tag}-1@127.0.0.1"),
            sip_port,
        })
    }

    /// Tells the scenario to hang up (BYE) now.
    pub fn hang_up(&self) {
        self.proceed();
    }

    /// Tells the scenario to go on (its next step waits for this: a re-INVITE, or the BYE).
    pub fn proceed(&self) {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let me = sock.local_addr().expect("addr");
        let msg = format!(
            "OPTIONS sip:trunk@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-h8-{n}\r\n\
             From: <sip:test@{me}>;tag=h8test\r\nTo: <sip:trunk@127.0.0.1:{port}>\r\nCall-ID: {cid}\r\n\
             CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            port = self.sip_port,
            n = self.process.started().elapsed().as_nanos(),
            cid = self.call_id,
        );
        sock.send_to(msg.as_bytes(), ("127.0.0.1", self.sip_port))
            .expect("send OPTIONS to sipp");
    }

    /// Waits (bounded) for sipp to end; `Ok` with the SIP messages it sent and received, `Err` with
    /// its logs when the scenario failed.
    pub async fn finish(self) -> Result<String, String> {
        self.process.finish().await
    }

    /// SIP messages sipp sent and received.
    pub fn messages(&self) -> String {
        self.process.messages()
    }

    /// Whether its scenario has ended already (passed or failed).
    pub fn ended(&mut self) -> bool {
        self.process.ended()
    }

    /// Whether sipp could not send pcap audio (no raw socket permission).
    pub fn pcap_play_failed(&self) -> bool {
        let logs = self.logs();
        logs.contains("raw") && logs.contains("socket")
    }

    /// Everything sipp logged, for failure messages.
    pub fn logs(&self) -> String {
        self.process.logs()
    }
}

/// A running SIPp (trunk or phone) whose message log a test can read.
pub trait SippLog {
    /// SIP messages sipp sent and received so far.
    fn messages(&self) -> String;
    /// Everything sipp logged, for failure messages.
    fn logs(&self) -> String;
}

impl SippLog for Sipp {
    fn messages(&self) -> String {
        self.process.messages()
    }
    fn logs(&self) -> String {
        self.process.logs()
    }
}

/// Waits (at most `limit`, looking every 25 ms) until `sipp`'s message log satisfies `pred`; fails
/// saying `what` never happened, with sipp's logs.
pub async fn wait_messages(
    sipp: &impl SippLog,
    what: &str,
    limit: Duration,
    pred: impl Fn(&str) -> bool,
) {
    let start = Instant::now();
    while !pred(&sipp.messages()) {
        assert!(
            start.elapsed() < limit,
            "{what} never happened:\n{}",
            sipp.logs()
        );
        // The back-off of this bounded wait.
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// How many messages in a sipp log sipp received whose start line begins with `start`
/// (`ACK sip:`).
pub fn received(messages: &str, start: &str) -> usize {
    messages
        .split("\n-----")
        .filter(|m| m.contains("message received") && m.lines().any(|l| l.starts_with(start)))
        .count()
}

/// The `m=audio` ports of the messages in a sipp log that start with `start` (`INVITE sip:trunk@`,
/// `SIP/2.0 200 OK`), in order; a message without SDP has none.
pub fn audio_ports(messages: &str, start: &str) -> Vec<u16> {
    messages
        .split(start)
        .skip(1)
        .filter_map(|rest| {
            // Only this message: up to sipp's next log separator.
            let rest = rest.split("\n-----").next().unwrap_or(rest);
            let m = rest.find("m=audio ")?;
            rest[m + 8..]
                .split_whitespace()
                .next()
                .and_then(|p| p.parse().ok())
        })
        .collect()
}
