//! Test support: a real agent softphone — baresip (Debian `baresip-core`) registering as the demo
//! agent `agent` with digest auth, controlled and watched over its `ctrl_tcp` socket (netstring JSON:
//! events such as `REGISTER_OK`, `CALL_INCOMING`, `CALL_ESTABLISHED`, `CALL_CLOSED`; commands such
//! as `hangup`, `accept`).
//!
//! The phone "talks" a continuous 440 Hz sine (`ausine`), so it never runs out of audio, and the
//! `sndfile` filter dumps what it hears into `*-dec.wav` in its config directory: that file is the
//! proof that RTP reached the agent. Every baresip runs at most [`BARESIP_LIMIT`] (`-t`).

use super::server::{TestServer, API_TOKEN};
use serde_json::Value;
use sip::auth::Algorithm;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use veilig_bellen::server::ServerConfig;
use veilig_bellen::sip_driver::Credentials;

/// Longest a baresip may live in a test.
pub const BARESIP_LIMIT: Duration = Duration::from_secs(40);
/// The SIP password of the demo agent in these tests.
pub const AGENT_PASSWORD: &str = "agent-pw-h9";

/// A test server whose demo agent `agent` has the password [`AGENT_PASSWORD`], changed by `tweak`.
pub async fn server_with_agent(tweak: impl FnOnce(&mut ServerConfig)) -> TestServer {
    super::server::start(4, |c| {
        c.sip.credentials = vec![Credentials {
            username: "agent".to_owned(),
            password: AGENT_PASSWORD.to_owned(),
        }];
        // baresip 1.0 (Debian's) gives up on any SHA-256 challenge, as the demo's phones would.
        c.sip.digest_algorithms = vec![Algorithm::Md5];
        tweak(c);
    })
    .await
}

/// `POST /api/v1/calls/{id}/answer` as agent `agent`: status and JSON body.
pub async fn answer(srv: &TestServer, id: &Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/calls/{id}/answer", srv.http_base))
        .bearer_auth(API_TOKEN)
        .json(&serde_json::json!({"agent": "agent"}))
        .send()
        .await
        .expect("POST answer");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A verified caller `caller` (code in SIP INFO) whose RTP goes to a test socket, the returned `ear`,
/// and who waits for the agent's hang-up (BYE); the agent answers. `None`: sipp is missing.
pub async fn answered_caller_with_ear(
    srv: &TestServer,
    caller: &str,
) -> Option<(tokio::net::UdpSocket, super::sipp::Sipp, Value)> {
    let ear = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let mut call = super::sipp::TrunkCall::new(caller);
    call.info_digits = srv.new_code().await;
    call.media_port = Some(ear.local_addr().expect("addr").port());
    call.await_bye = true;
    let (sipp, waiting) = srv
        .call_until_waiting(&call, Duration::from_secs(8))
        .await?;
    let id = waiting["id"].clone();
    assert_eq!(answer(srv, &id).await.0, 202);
    Some((ear, sipp, id))
}

/// A verified caller (the code in SIP INFO) who stays until [`Sipp::hang_up`]; waits until the list
/// shows the call `waiting` (verified, no `agent_leg` yet). Returns sipp, the call id and the link
/// code. `None`: sipp is missing.
///
/// [`Sipp::hang_up`]: super::sipp::Sipp::hang_up
pub async fn waiting_call(
    srv: &TestServer,
    caller: &str,
) -> Option<(super::sipp::Sipp, Value, String)> {
    let code = srv.new_code().await;
    let mut call = super::sipp::TrunkCall::new(caller);
    call.info_digits = code.clone();
    let (sipp, waiting) = srv
        .call_until_waiting(&call, Duration::from_secs(8))
        .await?;
    assert_eq!(waiting["verified"], true, "{waiting:#}");
    assert_eq!(waiting["agent_leg"], Value::Null, "{waiting:#}");
    Some((sipp, waiting["id"].clone(), code))
}

/// Waits (bounded) until call `id` is `waiting` again with this `agent_leg`; failing, `more` is
/// appended to the message.
pub async fn back_waiting_with(
    srv: &TestServer,
    id: &Value,
    agent_leg: &Value,
    limit: Duration,
    more: impl FnOnce() -> String,
) -> Value {
    srv.wait_for_call(limit, |c| {
        &c["id"] == id && c["state"] == "waiting" && &c["agent_leg"] == agent_leg
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "the call never went back to waiting with {agent_leg}: {e}{}",
            more()
        )
    })
}

/// Whether the phone answers by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    Auto,
    Manual,
}

/// A running baresip registered (or registering) as `agent`.
pub struct AgentPhone {
    child: tokio::process::Child,
    ctrl: TcpStream,
    buf: Vec<u8>,
    dir: tempfile::TempDir,
    /// Every ctrl_tcp event seen so far (types), for failure messages.
    seen: Vec<String>,
}

/// The baresip binary (Debian baresip-core), or `None` (after a note, or a failure under `CI`).
pub fn find_baresip() -> Option<PathBuf> {
    super::tool("baresip")
}

impl AgentPhone {
    /// Starts baresip registering `agent` at `server` and waits (bounded) until it is registered.
    pub async fn register(server: SocketAddr, answer: Answer) -> Option<AgentPhone> {
        Self::register_with(server, answer, "").await
    }

    /// As [`register`](Self::register), with extra baresip account parameters (e.g.
    /// `;audio_codecs=PCMU/8000/1` for a phone that speaks only µ-law).
    pub async fn register_with(
        server: SocketAddr,
        answer: Answer,
        params: &str,
    ) -> Option<AgentPhone> {
        Self::start(
            &format!("{server};transport=udp"),
            answer,
            params,
            "",
            AGENT_PASSWORD,
        )
        .await
    }

    /// As [`register`](Self::register), with the SIP password `password` (e.g. a `demo` child's).
    pub async fn register_with_password(
        server: SocketAddr,
        answer: Answer,
        password: &str,
    ) -> Option<AgentPhone> {
        Self::start(&format!("{server};transport=udp"), answer, "", "", password).await
    }

    /// As [`register_with`](Self::register_with), over TLS to `tls_server` (the server's TLS
    /// listener, certificate not checked: the tests' is self-signed), with baresip's SRTP module
    /// loaded: `params` such as `;mediaenc=srtp` or `;mediaenc=srtp-mand` make it a phone that
    /// offers or insists on SRTP (RFC 4568 SDES).
    pub async fn register_over_tls(
        tls_server: SocketAddr,
        answer: Answer,
        params: &str,
    ) -> Option<AgentPhone> {
        Self::start(
            &format!("{tls_server};transport=tls"),
            answer,
            params,
            "module\t\t\tsrtp.so\nsip_verify_server\tno\n",
            AGENT_PASSWORD,
        )
        .await
    }

    async fn start(
        server: &str,
        answer: Answer,
        params: &str,
        extra_config: &str,
        password: &str,
    ) -> Option<AgentPhone> {
        let baresip = find_baresip()?;
        let dir = tempfile::Builder::new()
            .prefix("vb-baresip-")
            .tempdir()
            .expect("baresip dir");
        // Its control port and RTP ports come from our test ports: picked ahead of use, they must not
        // be handed to anybody else meanwhile (baresip's default RTP range spans most ports).
        let ctrl_port = super::ports::port();
        let rtp = super::ports::range(8);
        std::fs::write(
            dir.path().join("config"),
            format!(
                "poll_method\t\tepoll\n\
                 sip_listen\t\t127.0.0.1:0\n\
                 rtp_ports\t\t{}-{}\n\
                 audio_player\t\taubridge,vb\n\
                 audio_source\t\tausine,440\n\
                 ausrc_srate\t\t48000\n\
                 ausrc_channels\t\t2\n\
                 audio_alert\t\taubridge,vb\n\
                 module_path\t\t/usr/lib/baresip/modules\n\
                 module\t\t\tg711.so\n\
                 module\t\t\tausine.so\n\
                 module\t\t\taubridge.so\n\
                 module\t\t\tsndfile.so\n\
                 snd_path\t\t{}\n\
                 module_app\t\taccount.so\n\
                 module_app\t\tmenu.so\n\
                 module_app\t\tctrl_tcp.so\n\
                 ctrl_tcp_listen\t\t127.0.0.1:{ctrl_port}\n\
                 {extra_config}",
                rtp.start(),
                rtp.end(),
                dir.path().display()
            ),
        )
        .expect("baresip config");
        let mode = match answer {
            Answer::Auto => ";answermode=auto",
            Answer::Manual => ";answermode=manual",
        };
        std::fs::write(
            dir.path().join("accounts"),
            format!("<sip:agent@{server}>;auth_pass={password}{mode};regint=600{params}\n"),
        )
        .expect("baresip accounts");
        let log = std::fs::File::create(dir.path().join("baresip.log")).expect("log file");
        let child = tokio::process::Command::new(baresip)
            .arg("-f")
            .arg(dir.path())
            .args(["-t", &BARESIP_LIMIT.as_secs().to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("baresip starts");
        let started = Instant::now();
        let ctrl = loop {
            match TcpStream::connect(("127.0.0.1", ctrl_port)).await {
                Ok(s) => break s,
                Err(_) if started.elapsed() < Duration::from_secs(5) => {
                    // The back-off of this bounded wait for baresip's control port.
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Err(e) => panic!("baresip's ctrl_tcp never listened: {e}"),
            }
        };
        let phone = AgentPhone {
            child,
            ctrl,
            buf: Vec::new(),
            dir,
            seen: Vec::new(),
        };
        // REGISTER_OK may come before ctrl_tcp has a client: baresip's log says it too.
        while !phone.log().contains("200 OK") {
            assert!(
                started.elapsed() < Duration::from_secs(8),
                "the agent's phone did not register:\n{}",
                phone.log()
            );
            // The back-off of this bounded wait for the registration.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Some(phone)
    }

    /// Waits (bounded) for the next ctrl_tcp event of type `kind`, skipping others.
    pub async fn wait_event(&mut self, kind: &str, limit: Duration) -> Result<Value, String> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.next_message())
                .await
                .map_err(|_| {
                    format!("no {kind} within {limit:?}; events seen: {:?}", self.seen)
                })??;
            if msg["event"] == true {
                let t = msg["type"].as_str().unwrap_or("").to_owned();
                self.seen.push(t.clone());
                if t == kind {
                    return Ok(msg);
                }
            }
        }
    }

    /// [`AgentPhone::wait_event`], failing with `why`, the error and the phone's log when `kind`
    /// does not come within `limit`.
    pub async fn expect_event(&mut self, kind: &str, limit: Duration, why: &str) -> Value {
        match self.wait_event(kind, limit).await {
            Ok(event) => event,
            Err(e) => panic!("{why}: {e}\n{}", self.log()),
        }
    }

    /// The agent hangs up on this phone: its call must close within 5 s, and the caller's `sipp`
    /// (a [`super::sipp::TrunkCall::await_bye`] scenario) must get our BYE and pass.
    pub async fn hang_up_on(&mut self, sipp: super::sipp::Sipp) {
        self.command("hangup").await;
        self.expect_event(
            "CALL_CLOSED",
            Duration::from_secs(5),
            "the agent's phone did not hang up",
        )
        .await;
        if let Err(e) = sipp.finish().await {
            panic!("the caller did not get the agent's hang-up as a BYE: {e}");
        }
    }

    /// Sends a ctrl_tcp command (`hangup`, `accept`, …).
    pub async fn command(&mut self, command: &str) {
        let json = serde_json::json!({"command": command, "params": "", "token": "h9"}).to_string();
        let frame = format!("{}:{json},", json.len());
        self.ctrl
            .write_all(frame.as_bytes())
            .await
            .expect("ctrl_tcp write");
    }

    /// One netstring JSON message from ctrl_tcp.
    async fn next_message(&mut self) -> Result<Value, String> {
        loop {
            if let Some(colon) = self.buf.iter().position(|&b| b == b':') {
                let len: usize = std::str::from_utf8(&self.buf[..colon])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or("bad netstring length from ctrl_tcp")?;
                if self.buf.len() > colon + len + 1 {
                    let body = self.buf[colon + 1..colon + 1 + len].to_vec();
                    self.buf.drain(..colon + len + 2);
                    return serde_json::from_slice(&body)
                        .map_err(|e| format!("ctrl_tcp JSON: {e}"));
                }
            }
            let mut chunk = [0u8; 4096];
            let n = self
                .ctrl
                .read(&mut chunk)
                .await
                .map_err(|e| format!("ctrl_tcp read: {e}"))?;
            if n == 0 {
                return Err(format!(
                    "baresip closed ctrl_tcp; events seen: {:?}",
                    self.seen
                ));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// What the phone heard: sample rate and the first channel's samples of every `*-dec.wav` the
    /// `sndfile` filter wrote.
    pub fn heard(&self) -> (u32, Vec<i16>) {
        let mut rate = 8000;
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(self.dir.path()) else {
            return (rate, out);
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.to_string_lossy().ends_with("-dec.wav") {
                continue;
            }
            // The phone may still be writing (no final header yet): read the raw data after the header.
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let field = |at: usize, n: usize| {
                bytes
                    .get(at..at + n)
                    .map(|b| b.iter().rev().fold(0u32, |a, &x| a << 8 | u32::from(x)))
            };
            let channels = field(22, 2).unwrap_or(1).max(1) as usize;
            rate = field(24, 4).unwrap_or(8000);
            let data = bytes.get(44..).unwrap_or_default();
            out.extend(
                data.chunks_exact(2 * channels)
                    .map(|c| i16::from_le_bytes([c[0], c[1]])),
            );
        }
        (rate, out)
    }

    /// Waits (at most `limit`) until the phone has heard at least `at_least` of audio of which more
    /// than `share` is `freq` Hz (the agent's own voice come back through the caller's echo).
    /// Returns the sample rate and everything heard by then, enough or not: the caller asserts.
    pub async fn wait_heard(
        &self,
        at_least: Duration,
        freq: f64,
        share: f64,
        limit: Duration,
    ) -> (u32, Vec<i16>) {
        let enough = |rate: u32, heard: &[i16]| {
            heard.len() as f64 >= at_least.as_secs_f64() * f64::from(rate)
                && tone_share(heard, f64::from(rate), freq) > share
        };
        let mut last = self.heard();
        super::poll(limit, async || {
            last = self.heard();
            enough(last.0, &last.1).then_some(())
        })
        .await;
        last
    }

    /// Waits (at most `limit`) until the phone has heard `samples` samples in all; returns the
    /// sample rate and everything heard by then, enough or not.
    pub async fn wait_heard_more(&self, samples: usize, limit: Duration) -> (u32, Vec<i16>) {
        let mut last = self.heard();
        super::poll(limit, async || {
            last = self.heard();
            (last.1.len() >= samples).then_some(())
        })
        .await;
        last
    }

    /// baresip's own log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("baresip.log")).unwrap_or_default()
    }

    /// Stops the phone.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// The caller hangs up: the call must show `ended`, and the agent's phone must close its call
/// within `limit` (else a failure saying `why`); then the phone and the server stop. Returns the
/// ended call as the API shows it.
pub async fn caller_hangs_up(
    srv: TestServer,
    sipp: super::sipp::Sipp,
    id: &Value,
    mut phone: AgentPhone,
    limit: Duration,
    why: &str,
) -> Value {
    let ended = srv.hang_up_and_check_ended(sipp, id).await;
    phone.expect_event("CALL_CLOSED", limit, why).await;
    phone.stop().await;
    srv.shutdown().await;
    ended
}

/// Power of `freq` Hz in `samples` (sample rate `rate`) relative to the total power (0..=1): how much
/// of what was heard is that tone.
pub fn tone_share(samples: &[i16], rate: f64, freq: f64) -> f64 {
    let block = (rate / 10.0) as usize; // 100 ms blocks
    let (mut tone, mut total) = (0.0f64, 0.0f64);
    for chunk in samples.chunks_exact(block) {
        let w = 2.0 * std::f64::consts::PI * freq / rate;
        let coeff = 2.0 * w.cos();
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        let mut energy = 0.0;
        for &x in chunk {
            let x = f64::from(x);
            energy += x * x;
            let s0 = x + coeff * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
        // Goertzel power of a pure tone of amplitude A over N samples is (A N / 2)^2; energy is A^2 N / 2.
        tone += 2.0 * power / block as f64;
        total += energy;
    }
    if total == 0.0 {
        0.0
    } else {
        tone / total
    }
}
