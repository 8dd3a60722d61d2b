//! Test support: a second real agent softphone beside baresip ([`super::agent`]) — PJSIP 2.15.1
//! through its Python binding (PyPI `pjsua2-python`), run as `tests/support/pjsua_phone.py`: a
//! phone driven by command-line options and line commands on stdin that prints line events on
//! stdout (the script's docstring lists them all). It registers with digest auth over UDP, TCP or
//! TLS (optionally `sips:`), answers or refuses calls by itself, uses SRTP as told, talks a WAV
//! file (looped; by default a 440 Hz sine, as the baresip phone does) and records what it hears
//! into a WAV file — on PJSIP's null audio device, there is no sound card.
//!
//! The interpreter: `$VB_PJSUA_PYTHON`, else the python of the venv `scripts/install-test-deps.sh`
//! makes (`$VB_PJSUA_VENV`, default `${XDG_CACHE_HOME:-$HOME/.cache}/veilig-bellen/pjsua-venv`,
//! `pjsua2-python` pinned to [`VERSION`]). Missing: the test skips after a note (a failure under
//! `CI`). Present but without a working `pjsua2`: the phone fails to start, and so does the test.
//!
//! PJSIP answers an INVITE it cannot take while setting up media (RTP/SAVP with SRTP disabled,
//! PJSIP's default; RTP/AVP with SRTP mandatory) with 488 before the script hears of it: no
//! `incoming` event; its log says "Error initializing media channel".
//!
//! Bounds: the phone exits by itself after [`PjsuaOptions::limit`] and when its stdin closes; it is
//! killed when dropped; every wait takes a limit. Its RTP ports come from [`super::ports`], its SIP
//! socket is bound by itself on 127.0.0.1 (nothing picked in advance).

use super::agent::{answered_caller_with_ear, AGENT_PASSWORD};
use super::server::TestServer;
use super::sipp::Sipp;
use serde_json::Value;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc;
use veilig_bellen::server::ServerConfig;
use veilig_bellen::sip_driver::Credentials;

/// The `pjsua2-python` version the phone was written against (and the install script pins).
pub const VERSION: &str = "2.15.1.post1";
/// How long the phone lives unless told otherwise.
pub const PJSUA_LIMIT: Duration = Duration::from_secs(40);

/// The SIP transport the phone registers (and takes calls) over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SipTransport {
    Udp,
    Tcp,
    Tls,
}

/// PJSIP's `srtpUse`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Srtp {
    Disabled,
    Optional,
    Mandatory,
}

/// What the phone talks into every call.
#[derive(Clone, Debug)]
pub enum Play {
    /// A sine of this frequency (Hz), 8 kHz mono, at about -12 dBFS.
    Tone(f64),
    /// This WAV file.
    File(PathBuf),
    /// Nothing: the phone sends silence (or, with VAD on, hardly anything).
    Nothing,
}

/// How to start the phone. [`PjsuaOptions::new`] gives the demo agent on UDP, answering 200 at
/// once, talking 440 Hz, recording, with PJSIP's defaults for the rest.
#[derive(Clone, Debug)]
pub struct PjsuaOptions {
    /// Registrar (and the domain of the phone's AOR).
    pub registrar: SocketAddr,
    pub user: String,
    pub password: String,
    pub transport: SipTransport,
    /// TLS: the CA (PEM) the registrar's certificate must chain to; `None`: no verification.
    pub tls_ca: Option<PathBuf>,
    /// `sips:` URIs for the AOR and the registrar (TLS only).
    pub sips: bool,
    /// `None`: PJSIP's default (disabled).
    pub srtp: Option<Srtp>,
    /// PJSIP's `srtpSecureSignaling`: 0 SRTP over any transport, 1 only over TLS, 2 only with
    /// `sips:` end to end. `None`: PJSIP's default, 1.
    pub srtp_secure_signaling: Option<u8>,
    /// Answer every call at once with this status (200; 486, 488, 603 refuse); `None`: the test
    /// answers with the `answer` command.
    pub auto_answer: Option<u16>,
    /// Voice activity detection (PJSIP's default: on, it stops sending in silence).
    pub vad: bool,
    pub play: Play,
    /// Record what the phone hears ([`PjsuaPhone::recorded_wav`]).
    pub record: bool,
    /// Codec ids in order of preference (`PCMU/8000`); every other codec is disabled. Empty:
    /// PJSIP's own list and order.
    pub codecs: Vec<String>,
    /// The Expires the phone registers with.
    pub expires: u32,
    /// The phone exits by itself after this.
    pub limit: Duration,
}

impl PjsuaOptions {
    /// The demo agent `agent` ([`AGENT_PASSWORD`]) registering at `registrar` over UDP.
    pub fn new(registrar: SocketAddr) -> PjsuaOptions {
        PjsuaOptions {
            registrar,
            user: "agent".to_owned(),
            password: AGENT_PASSWORD.to_owned(),
            transport: SipTransport::Udp,
            tls_ca: None,
            sips: false,
            srtp: None,
            srtp_secure_signaling: None,
            auto_answer: Some(200),
            vad: true,
            play: Play::Tone(440.0),
            record: true,
            codecs: Vec::new(),
            expires: 600,
            limit: PJSUA_LIMIT,
        }
    }
}

/// The Python that has `pjsua2`, or `None` after a note (a failure under `CI`).
pub fn find_python() -> Option<PathBuf> {
    if let Some(python) = std::env::var_os("VB_PJSUA_PYTHON").filter(|v| !v.is_empty()) {
        let python = PathBuf::from(python);
        assert!(
            python.is_file(),
            "VB_PJSUA_PYTHON={} is not a file",
            python.display()
        );
        return Some(python);
    }
    let python = std::env::var_os("VB_PJSUA_VENV")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(default_venv)
        .map(|v| v.join("bin").join("python"));
    match python {
        Some(p) if p.is_file() => Some(p),
        _ => {
            super::sipp::skip_or_fail(&format!(
                "PJSIP (PyPI pjsua2-python {VERSION}) not found: no VB_PJSUA_PYTHON and no {} \
                 (see scripts/install-test-deps.sh)",
                python.map_or("default venv".into(), |p| p.display().to_string())
            ));
            None
        }
    }
}

/// `${XDG_CACHE_HOME:-$HOME/.cache}/veilig-bellen/pjsua-venv`, where the install script puts it.
fn default_venv() -> Option<PathBuf> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))?;
    Some(cache.join("veilig-bellen").join("pjsua-venv"))
}

/// A running PJSIP phone.
pub struct PjsuaPhone {
    child: Child,
    stdin: ChildStdin,
    events: mpsc::UnboundedReceiver<String>,
    /// Every event line seen so far, for failure messages.
    seen: Vec<String>,
    /// Events [`PjsuaPhone::command`] read past while waiting for its reply.
    backlog: VecDeque<String>,
    dir: tempfile::TempDir,
    record: Option<PathBuf>,
}

impl PjsuaPhone {
    /// Starts the phone and waits (bounded) for its `ready`: transport up, REGISTER under way.
    /// `None`: PJSIP's Python is missing (test skipped).
    pub async fn start(options: PjsuaOptions) -> Option<PjsuaPhone> {
        let python = find_python()?;
        let dir = tempfile::Builder::new()
            .prefix("vb-pjsua-")
            .tempdir()
            .expect("pjsua dir");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/pjsua_phone.py");
        let rtp = super::ports::range(8);
        let o = &options;
        let mut args: Vec<String> = vec![
            "-u".into(),
            script.to_string_lossy().into_owned(),
            "--registrar".into(),
            o.registrar.to_string(),
            "--user".into(),
            o.user.clone(),
            "--password".into(),
            o.password.clone(),
            "--transport".into(),
            match o.transport {
                SipTransport::Udp => "udp",
                SipTransport::Tcp => "tcp",
                SipTransport::Tls => "tls",
            }
            .into(),
            "--vad".into(),
            if o.vad { "on" } else { "off" }.into(),
            "--rtp-port".into(),
            rtp.start().to_string(),
            "--rtp-port-range".into(),
            rtp.clone().count().to_string(),
            "--expires".into(),
            o.expires.to_string(),
            "--limit".into(),
            o.limit.as_secs_f64().to_string(),
        ];
        if o.transport == SipTransport::Tls {
            match &o.tls_ca {
                Some(ca) => args.extend(["--tls-ca".into(), ca.to_string_lossy().into_owned()]),
                None => args.push("--tls-no-verify".into()),
            }
        }
        if o.sips {
            args.push("--sips".into());
        }
        if let Some(srtp) = o.srtp {
            let mode = match srtp {
                Srtp::Disabled => "disabled",
                Srtp::Optional => "optional",
                Srtp::Mandatory => "mandatory",
            };
            args.extend(["--srtp".into(), mode.into()]);
        }
        if let Some(level) = o.srtp_secure_signaling {
            args.extend(["--srtp-secure-signaling".into(), level.to_string()]);
        }
        if let Some(status) = o.auto_answer {
            args.extend(["--auto-answer".into(), status.to_string()]);
        }
        let play = match &o.play {
            Play::Tone(hz) => {
                let path = dir.path().join("voice.wav");
                std::fs::write(&path, tone_wav(*hz)).expect("write the phone's voice");
                Some(path)
            }
            Play::File(path) => Some(path.clone()),
            Play::Nothing => None,
        };
        if let Some(path) = play {
            args.extend(["--play".into(), path.to_string_lossy().into_owned()]);
        }
        let record = o.record.then(|| dir.path().join("heard.wav"));
        if let Some(path) = &record {
            args.extend(["--record".into(), path.to_string_lossy().into_owned()]);
        }
        if !o.codecs.is_empty() {
            args.extend(["--codecs".into(), o.codecs.join(",")]);
        }
        let stderr = std::fs::File::create(dir.path().join("pjsip.log")).expect("log file");
        let mut child = tokio::process::Command::new(python)
            .args(&args)
            .current_dir(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .expect("PJSIP phone starts");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut phone = PjsuaPhone {
            child,
            stdin,
            events,
            seen: Vec::new(),
            backlog: VecDeque::new(),
            dir,
            record,
        };
        phone
            .expect(
                "ready",
                Duration::from_secs(10),
                "the PJSIP phone did not start",
            )
            .await;
        Some(phone)
    }

    /// [`start`](Self::start), then waits (bounded) until the phone says `registered`.
    pub async fn register(options: PjsuaOptions) -> Option<PjsuaPhone> {
        let mut phone = Self::start(options).await?;
        phone
            .expect(
                "registered ",
                Duration::from_secs(8),
                "the PJSIP phone did not register",
            )
            .await;
        Some(phone)
    }

    /// Waits (bounded) for the next event line starting with `prefix`, skipping (consuming) others;
    /// `Err` with every event seen when it does not come within `limit` or the phone exits.
    pub async fn wait_for(&mut self, prefix: &str, limit: Duration) -> Result<String, String> {
        while let Some(line) = self.backlog.pop_front() {
            if line.starts_with(prefix) {
                return Ok(line);
            }
        }
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let line = self
                .next_line(deadline)
                .await
                .map_err(|e| format!("no {prefix:?} within {limit:?}: {e}"))?;
            if line.starts_with(prefix) {
                return Ok(line);
            }
        }
    }

    /// The next line from the phone's stdout, by `deadline`.
    async fn next_line(&mut self, deadline: tokio::time::Instant) -> Result<String, String> {
        let line = tokio::time::timeout_at(deadline, self.events.recv())
            .await
            .map_err(|_| format!("events: {:?}", self.seen))?
            .ok_or_else(|| format!("the phone exited; events: {:?}", self.seen))?;
        self.seen.push(line.clone());
        Ok(line)
    }

    /// [`wait_for`](Self::wait_for), failing with `why`, the error and the phone's log.
    pub async fn expect(&mut self, prefix: &str, limit: Duration, why: &str) -> String {
        match self.wait_for(prefix, limit).await {
            Ok(line) => line,
            Err(e) => panic!("{why}: {e}\n{}", self.log()),
        }
    }

    /// Sends one command line (`hold`, `unhold`, `hangup`, `answer 486`, `quit`, …).
    pub async fn send(&mut self, command: &str) {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .unwrap_or_else(|e| panic!("the PJSIP phone's stdin: {e}\n{}", self.log()));
        let _ = self.stdin.flush().await;
    }

    /// Sends `command` and waits (bounded) for its `ok`; `Err` with its `error` line (or the
    /// timeout). Other events meanwhile stay for [`wait_for`](Self::wait_for).
    pub async fn command(&mut self, command: &str, limit: Duration) -> Result<(), String> {
        self.send(command).await;
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let line = self
                .next_line(deadline)
                .await
                .map_err(|e| format!("no reply to {command:?} within {limit:?}: {e}"))?;
            if line == format!("ok {command}") {
                return Ok(());
            }
            if line.starts_with(&format!("error {command}:")) {
                return Err(line);
            }
            self.backlog.push_back(line);
        }
    }

    /// Hangs up (`hangup`, answered `ok` within 2 s) and waits (bounded) until our answer to its
    /// BYE ends the call (`call state DISCONNECTED`).
    pub async fn hang_up(&mut self) {
        self.command("hangup", Duration::from_secs(2))
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", self.log()));
        self.expect(
            "call state DISCONNECTED",
            Duration::from_secs(5),
            "PJSIP's BYE was not answered",
        )
        .await;
    }

    /// Every event line seen so far.
    pub fn events(&self) -> &[String] {
        &self.seen
    }

    /// What the phone heard: sample rate and samples of its recording (the first channel). Read
    /// while the call lasts too: PJSIP writes the final header only when the call ends (`recording
    /// closed`), so the data runs to the end of the file.
    pub fn recorded_wav(&self) -> (u32, Vec<i16>) {
        let bytes = self
            .record
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .unwrap_or_default();
        read_wav(&bytes)
    }

    /// The phone's stderr: PJSIP's log (every SIP message) and any Python error, then the events
    /// seen; for failure messages.
    pub fn log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("pjsip.log")).unwrap_or_default();
        format!(
            "--- PJSIP log\n{log}\n--- PJSIP events\n{}",
            self.seen.join("\n")
        )
    }

    /// Tells the phone to quit (it hangs up and unregisters) and waits up to 5 s; kills it after.
    pub async fn stop(mut self) {
        let _ = self.stdin.write_all(b"quit\n").await;
        let _ = self.stdin.flush().await;
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
    }
}

/// One second of a `hz` sine (8 kHz, 16-bit mono WAV): loops without a click when `hz` is whole.
pub fn tone_wav(hz: f64) -> Vec<u8> {
    let samples: Vec<i16> = (0..8000)
        .map(|i| (8000.0 * (2.0 * std::f64::consts::PI * hz * f64::from(i) / 8000.0).sin()) as i16)
        .collect();
    let data_len = 2 * samples.len() as u32;
    let mut wav = Vec::with_capacity(44 + data_len as usize);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data_len).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&8000u32.to_le_bytes());
    wav.extend_from_slice(&16_000u32.to_le_bytes()); // bytes per second
    wav.extend_from_slice(&2u16.to_le_bytes()); // block align
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        wav.extend_from_slice(&s.to_le_bytes());
    }
    wav
}

/// Sample rate and first-channel samples of a 16-bit PCM WAV; the `data` chunk is read to the end
/// of the file whatever its header says (a recording still being written).
fn read_wav(bytes: &[u8]) -> (u32, Vec<i16>) {
    let u32_at = |at: usize| {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let (mut rate, mut channels) = (8000, 1usize);
    let mut at = 12;
    while let (Some(id), Some(len)) = (bytes.get(at..at + 4), u32_at(at + 4)) {
        let body = at + 8;
        if id == b"data" {
            let data = bytes.get(body..).unwrap_or_default();
            let samples = data
                .chunks_exact(2 * channels)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
            return (rate, samples);
        }
        if id == b"fmt " {
            channels = bytes
                .get(body + 2..body + 4)
                .map_or(1, |b| usize::from(u16::from_le_bytes([b[0], b[1]])).max(1));
            rate = u32_at(body + 4).unwrap_or(8000);
        }
        at = body + len as usize + (len as usize & 1);
    }
    (rate, Vec::new())
}

/// The caller talks: 20 ms PCMA packets of a `hz` sine from `ear` to our trunk-side RTP port
/// `our_port` for `time`. Returns what the caller heard meanwhile (PCMA packets sent to `ear`,
/// decoded, in arrival order).
pub async fn caller_talks(
    ear: &tokio::net::UdpSocket,
    our_port: u16,
    hz: f64,
    time: Duration,
) -> Vec<i16> {
    let mut buf = [0u8; 2048];
    while ear.try_recv_from(&mut buf).is_ok() {}
    let mut heard = Vec::new();
    let start = tokio::time::Instant::now();
    let mut next = start;
    let mut seq: u16 = 0;
    // Each talk starts at sequence 0, so it is a stream of its own: a new SSRC (RFC 3550 §8.2).
    // Under one SSRC the second talk's numbers would be duplicates of the first's (A.1), dropped.
    static TALKS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let ssrc =
        0x0ca1_1e25_u32.wrapping_add(TALKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    while start.elapsed() < time {
        let pcm: Vec<i16> = (0..160)
            .map(|i| {
                let n = f64::from(u32::from(seq) * 160 + i);
                (8000.0 * (2.0 * std::f64::consts::PI * hz * n / 8000.0).sin()) as i16
            })
            .collect();
        let mut packet = vec![0x80, 8];
        packet.extend_from_slice(&seq.to_be_bytes());
        packet.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        packet.extend_from_slice(&ssrc.to_be_bytes());
        let mut alaw = [0u8; 160];
        dsp::g711::encode_alaw_into(&pcm, &mut alaw);
        packet.extend_from_slice(&alaw);
        let _ = ear.send_to(&packet, ("127.0.0.1", our_port)).await;
        seq = seq.wrapping_add(1);
        next += Duration::from_millis(20);
        while let Ok(Ok((n, _))) = tokio::time::timeout_at(next, ear.recv_from(&mut buf)).await {
            if n <= 12 || buf[1] & 0x7f != 8 {
                continue;
            }
            let mut pcm = vec![0i16; n - 12];
            let k = dsp::g711::decode_alaw_into(&buf[12..n], &mut pcm);
            heard.extend_from_slice(&pcm[..k]);
        }
    }
    heard
}

/// Seconds of `samples` (at `rate`) that are audibly `hz`: 100 ms blocks louder than -44 dBFS
/// whose energy is mostly that tone.
pub fn seconds_of_tone(samples: &[i16], rate: u32, hz: f64) -> f64 {
    let block = (rate / 10) as usize;
    let blocks = samples
        .chunks_exact(block.max(1))
        .filter(|b| {
            let rms =
                (b.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / b.len() as f64).sqrt();
            rms > 200.0 && super::agent::tone_share(b, f64::from(rate), hz) > 0.6
        })
        .count();
    blocks as f64 / 10.0
}

/// A test server whose demo agent `agent` has the password [`AGENT_PASSWORD`] under our default
/// digest challenges (SHA-256 first, then MD5: PJSIP answers SHA-256), changed by `tweak`.
pub async fn pjsip_server(tweak: impl FnOnce(&mut ServerConfig)) -> TestServer {
    super::server::start(4, |c| {
        c.sip.credentials = vec![Credentials {
            username: "agent".to_owned(),
            password: AGENT_PASSWORD.to_owned(),
        }];
        tweak(c);
    })
    .await
}

/// Options for a PJSIP phone registering over TLS to `srv`'s (first) TLS listener, verifying our
/// certificate against the CA `ca`, with SRTP `srtp`.
pub fn tls_options(srv: &TestServer, ca: PathBuf, srtp: Srtp) -> PjsuaOptions {
    let tls = *srv.running.sip.tls.first().expect("a TLS listener");
    let mut options = PjsuaOptions::new(tls);
    options.transport = SipTransport::Tls;
    options.tls_ca = Some(ca);
    options.srtp = Some(srtp);
    options
}

/// What a PJSIP phone said while it took a call ([`phone_takes_verified_call`]).
pub struct TakenCall {
    /// Its `media active …` line.
    pub media: String,
    /// Its `srtp …` line, when waited for.
    pub srtp: Option<String>,
    /// The call as the list shows it, `connected`.
    pub connected: Value,
}

/// A verified caller ([`answered_caller_with_ear`]) whom the agent answered through the API, taken
/// by the PJSIP `phone`: our INVITE reaches it (else failing with `not_rung`), it answers 200 and
/// its audio becomes active; with `srtp_state` its `srtp …` line follows within 1 s; `check` sees
/// the phone, the media line and the SRTP line; PJSIP gets our ACK (`call state CONFIRMED`) and the
/// list shows the call `connected`. Returns the caller's ear, sipp, the call id and what the phone
/// said. `None`: sipp is missing.
pub async fn phone_takes_verified_call(
    srv: &TestServer,
    phone: &mut PjsuaPhone,
    caller: &str,
    not_rung: &str,
    srtp_state: bool,
    check: impl FnOnce(&PjsuaPhone, &str, Option<&str>),
) -> Option<(tokio::net::UdpSocket, Sipp, Value, TakenCall)> {
    let (ear, sipp, id) = answered_caller_with_ear(srv, caller).await?;
    phone
        .expect("incoming ", Duration::from_secs(5), not_rung)
        .await;
    phone
        .expect(
            "answered 200",
            Duration::from_secs(2),
            "PJSIP did not answer",
        )
        .await;
    let media = phone
        .expect(
            "media active ",
            Duration::from_secs(5),
            "PJSIP's audio never became active",
        )
        .await;
    let srtp = if srtp_state {
        Some(
            phone
                .expect("srtp ", Duration::from_secs(1), "no SRTP state")
                .await,
        )
    } else {
        None
    };
    check(phone, &media, srtp.as_deref());
    phone
        .expect(
            "call state CONFIRMED",
            Duration::from_secs(5),
            "PJSIP never got our ACK",
        )
        .await;
    let connected = srv
        .wait_for_call(Duration::from_secs(3), |c| {
            c["id"] == id && c["state"] == "connected"
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", phone.log()));
    let taken = TakenCall {
        media,
        srtp,
        connected,
    };
    Some((ear, sipp, id, taken))
}

/// What crossed a call both ways while the caller talked ([`talk_both_ways`]).
pub struct BothWays {
    /// What the caller heard (8 kHz).
    pub caller_heard: Vec<i16>,
    /// The sample rate of the phone's recording.
    pub rate: u32,
    /// What the phone recorded.
    pub phone_heard: Vec<i16>,
    /// Seconds of the phone's 440 Hz the caller heard.
    pub to_caller: f64,
    /// Seconds of the caller's `hz` the phone recorded.
    pub to_phone: f64,
}

/// The caller (`ear`, calling through `sipp`) talks `hz` for 2 s to our trunk-side RTP port and
/// listens; the PJSIP phone talks 440 Hz and records.
pub async fn talk_both_ways(
    phone: &PjsuaPhone,
    ear: &tokio::net::UdpSocket,
    sipp: &Sipp,
    hz: f64,
) -> BothWays {
    let our_port =
        super::sipp_phone::trunk_rtp_port(&sipp.messages()).expect("our SDP answer to the trunk");
    let caller_heard = caller_talks(ear, our_port, hz, Duration::from_secs(2)).await;
    let (rate, phone_heard) = phone.recorded_wav();
    let to_caller = seconds_of_tone(&caller_heard, 8000, 440.0);
    let to_phone = seconds_of_tone(&phone_heard, rate, hz);
    BothWays {
        caller_heard,
        rate,
        phone_heard,
        to_caller,
        to_phone,
    }
}
