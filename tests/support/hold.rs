//! Test support: listening to a caller whom the agent puts on hold (relayed calls).
//!
//! The trunk's RTP goes to a test socket, the caller's ear ([`CallerEar`]), which talks marked PCMA
//! packets the whole time and records everything it is sent. The SIPp agent phone echoes what it
//! receives (`-rtp_echo`), so a marked packet coming back is the agent's audio; anything else is
//! ours, or what the holding phone plays itself ([`play_after_hold_ack`]). [`hold_and_listen`] runs
//! a SIPp agent phone's hold-and-resume scenario against a verified caller and checks everything
//! around the hold that does not depend on what the phone plays while it holds.

use super::agent::{answered_caller_with_ear, tone_share};
use super::pcap::{pcma_call_rtp, to_pcap, DtmfPcapConfig};
use super::server::TestServer;
use super::sipp::Sipp;
use super::sipp_phone::{caller_packet, trunk_rtp_port, SippPhone};
use serde_json::Value;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The verified caller's number.
pub const CALLER: &str = "+31622223333";
/// The caller's marked payload: an echo of it is the agent's audio.
pub const MARK: u8 = 0x2a;
/// 100 ms of 8 kHz audio: the blocks the audio is judged in.
pub const BLOCK: usize = 800;

/// One RTP packet the caller received.
struct Heard {
    at: Instant,
    /// An echo of the caller's own marked packet: the agent's audio, relayed.
    agent: bool,
    pcm: Vec<i16>,
}

/// The caller's ear: talks marked PCMA every 20 ms to our trunk-side port and records what comes
/// back, until dropped (at most `limit`).
pub struct CallerEar {
    heard: Arc<Mutex<Vec<Heard>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl CallerEar {
    pub fn start(ear: tokio::net::UdpSocket, our_port: u16, limit: Duration) -> CallerEar {
        let heard = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s) = (heard.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            while ear.try_recv_from(&mut buf).is_ok() {}
            let start = tokio::time::Instant::now();
            let mut next = start;
            while !s.load(Ordering::Relaxed) && start.elapsed() < limit {
                let _ = ear
                    .send_to(&caller_packet(MARK), ("127.0.0.1", our_port))
                    .await;
                next += Duration::from_millis(20);
                while let Ok(Ok((n, _))) =
                    tokio::time::timeout_at(next, ear.recv_from(&mut buf)).await
                {
                    if n <= 12 || buf[1] & 0x7f != 8 {
                        continue;
                    }
                    let payload = &buf[12..n];
                    let mut pcm = vec![0i16; payload.len()];
                    let k = dsp::g711::decode_alaw_into(payload, &mut pcm);
                    pcm.truncate(k);
                    let agent = payload.len() == 160 && payload.iter().all(|&b| b == MARK);
                    h.lock().unwrap_or_else(|e| e.into_inner()).push(Heard {
                        at: Instant::now(),
                        agent,
                        pcm,
                    });
                }
            }
        });
        CallerEar { heard, stop, task }
    }

    /// Packets received between `from` and `to`: (agent's packets, our audio in arrival order).
    pub fn between(&self, from: Instant, to: Instant) -> (u32, Vec<i16>) {
        let heard = self.heard.lock().unwrap_or_else(|e| e.into_inner());
        let mut agent = 0;
        let mut ours = Vec::new();
        for h in heard.iter().filter(|h| h.at >= from && h.at < to) {
            if h.agent {
                agent += 1;
            } else {
                ours.extend_from_slice(&h.pcm);
            }
        }
        (agent, ours)
    }

    /// Stops talking and listening; what was heard stays readable.
    pub async fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = (&mut self.task).await;
    }
}

/// The longest run of 100 ms blocks that are mostly `freq` Hz and loud enough to hear, in seconds.
pub fn longest_tone(samples: &[i16], freq: f64) -> f64 {
    let (mut run, mut best) = (0u32, 0u32);
    for block in samples.chunks_exact(BLOCK) {
        let rms = (block.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / BLOCK as f64).sqrt();
        if rms > 200.0 && tone_share(block, 8000.0, freq) > 0.6 {
            run += 1;
            best = best.max(run);
        } else {
            run = 0;
        }
    }
    f64::from(best) / 10.0
}

/// A verified caller (code in SIP INFO) whose RTP goes to a test socket, answered by the agent;
/// waits for the agent's hang-up. Returns the ear's socket, our trunk-side RTP port, sipp and the
/// call id once connected. `None`: sipp is missing.
pub async fn connected_caller(
    srv: &TestServer,
) -> Option<(tokio::net::UdpSocket, u16, Sipp, Value)> {
    let (ear, sipp, id) = answered_caller_with_ear(srv, CALLER).await?;
    let connected = srv
        .wait_for_call(Duration::from_secs(5), |c| {
            c["id"] == id && c["state"] == "connected"
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", sipp.logs()));
    assert_eq!(connected["on_hold"], false, "{connected:#}");
    let our_port = trunk_rtp_port(&sipp.messages()).expect("our SDP answer to the trunk");
    Some((ear, our_port, sipp, id))
}

/// Waits (bounded) until `read()` contains `needle`; the instant it was seen.
pub async fn seen(needle: &str, read: impl Fn() -> String) -> Instant {
    let start = Instant::now();
    loop {
        let text = read();
        if text.contains(needle) {
            return Instant::now();
        }
        assert!(
            start.elapsed() < Duration::from_secs(8),
            "no {needle:?} within 8 s:\n{text}"
        );
        // The back-off of this bounded wait.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The list shows call `id` with `on_hold` as given, within 3 s.
pub async fn shows_on_hold(srv: &TestServer, id: &Value, on_hold: bool) {
    srv.wait_for_call(Duration::from_secs(3), |c| {
        c["id"] == *id && c["state"] == "connected" && c["on_hold"] == on_hold
    })
    .await
    .unwrap_or_else(|e| panic!("on_hold never became {on_hold}: {e}"));
}

/// What the caller heard around one hold by the SIPp agent phone.
pub struct Held {
    pub ear: CallerEar,
    pub connected: Instant,
    /// When the phone's ACK to our answer to its hold, and its resume re-INVITE, showed in its
    /// message log.
    pub hold_acked: Instant,
    pub resume_sent: Instant,
}

impl Held {
    /// Our audio from the connect until the resume: before the hold the caller heard only the
    /// agent, so all of it is the hold's.
    pub fn ours_while_held(&self) -> Vec<i16> {
        self.ear.between(self.connected, self.resume_sent).1
    }
}

/// The agent's SIPp `phone` ends its scenario (its re-INVITEs answered as it expects), then the
/// caller's `sipp` (the agent's hang-up reached it as a BYE).
pub async fn phone_and_caller_finish(phone: SippPhone, sipp: Sipp) {
    phone
        .finish()
        .await
        .unwrap_or_else(|e| panic!("the agent's phone saw wrong answers to its re-INVITEs: {e}"));
    if let Err(e) = sipp.finish().await {
        panic!("the caller did not get the agent's hang-up as a BYE: {e}");
    }
}

/// Runs the SIPp agent phone's `scenario` (answer, hold, resume, hang up, see [`hold_resume`])
/// against a verified caller and checks everything around the hold: the list shows `on_hold` while
/// it lasts, no agent audio reaches the caller while held, after the resume the agent's audio does
/// and ours stops, the call ends (not `on_hold`) and the ports are free. `None`: sipp is missing.
pub async fn hold_and_listen(srv: &TestServer, scenario: &str) -> Option<Held> {
    let phone = SippPhone::register(srv.sip_udp, scenario, true).await?;
    let (ear, our_port, sipp, id) = connected_caller(srv).await?;
    let connected = Instant::now();
    let mut ear = CallerEar::start(ear, our_port, Duration::from_secs(15));

    let hold_sent = seen("CSeq: 2 INVITE", || phone.messages()).await;
    let hold_acked = seen("CSeq: 2 ACK", || phone.messages()).await;
    shows_on_hold(srv, &id, true).await;
    let resume_sent = seen("CSeq: 3 INVITE", || phone.messages()).await;
    shows_on_hold(srv, &id, false).await;
    // The window after the resume, judged below.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let listened = Instant::now();

    phone_and_caller_finish(phone, sipp).await;
    ear.stop().await;
    let ended = srv.wait_ended(&id).await;
    assert_eq!(ended["on_hold"], false, "an ended call is not on hold");
    srv.wait_rtp_ports_free(Duration::from_secs(3)).await;

    // While held (from the re-INVITE, minus packets in flight, to the resume): no echo of the
    // caller, because we send the holding phone nothing.
    let (agent, _) = ear.between(hold_sent + Duration::from_millis(200), resume_sent);
    assert!(
        agent <= 3,
        "the phone holds (and gets nothing from us to echo), yet {agent} echoes came"
    );
    // After the resume: the agent's audio again, and none of ours.
    let (agent, ours) = ear.between(resume_sent + Duration::from_millis(300), listened);
    assert!(
        agent >= 40,
        "after the resume the caller heard only {agent} packets of the agent's audio in 1.2 s"
    );
    assert!(
        ours.len() <= 3 * 160,
        "after the resume our signal went on: {} ms of it",
        ours.len() / 8
    );
    Some(Held {
        ear,
        connected,
        hold_acked,
        resume_sent,
    })
}

/// `peak` · sin(2π `freq` t) for `secs`, as 8 kHz A-law.
pub fn alaw_sine(freq: f64, peak: f64, secs: f64) -> Vec<u8> {
    let pcm: Vec<i16> = (0..(secs * 8000.0) as u32)
        .map(|i| (peak * (2.0 * std::f64::consts::PI * freq * f64::from(i) / 8000.0).sin()) as i16)
        .collect();
    let mut alaw = vec![0u8; pcm.len()];
    dsp::g711::encode_alaw_into(&pcm, &mut alaw);
    alaw
}

/// The SIPp agent phone's `scenario` (its hold re-INVITE is CSeq 2) with the phone playing `alaw`
/// as PCMA in 20 ms packets right after the hold's ACK (`sendonly` lets it send; `-rtp_echo` has
/// nothing to echo meanwhile, as we send the holding phone nothing). The pcap is written to `dir`.
pub fn play_after_hold_ack(scenario: &str, alaw: &[u8], dir: &Path) -> String {
    let pcap = dir.join("played-while-holding.pcap");
    std::fs::write(
        &pcap,
        to_pcap(&pcma_call_rtp(alaw, &DtmfPcapConfig::default())),
    )
    .expect("write pcap");
    let mut scenario = scenario.to_owned();
    let ack = scenario.find("CSeq: 2 ACK").expect("the hold's ACK");
    let after_ack = ack + scenario[ack..].find("</send>\n").expect("its end") + "</send>\n".len();
    scenario.insert_str(
        after_ack,
        &format!(
            "  <nop>\n    <action>\n      <exec play_pcap_audio=\"{}\"/>\n    </action>\n  </nop>\n",
            pcap.display()
        ),
    );
    scenario
}
