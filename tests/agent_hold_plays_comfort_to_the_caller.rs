//! A caller whom the agent puts on hold hears the comfort signal, not silence (relayed calls): the
//! agent's phone re-INVITEs with `a=sendonly` (RFC 3264 §8.4) and the caller hears the Dutch
//! ringback (425 Hz, 1 s on, 4 s off) from the start of its cadence, and the agents' list shows the
//! call `on_hold`; when the phone resumes (`a=sendrecv`) the ringback stops and the caller hears
//! the agent again. With a configured prompt, the caller hears the prompt; a phone that holds with
//! `a=inactive` gets the same. A phone that plays its own music while holding (`sendonly` lets it
//! send; the SIPp phone plays a pcap) is heard instead of our signal, never both, and ours is back
//! once the music stops. baresip (`hold`, which stops its sending) gets ringback too. After each
//! call every RTP port is free again and the ended call is not `on_hold`.
//!
//! How we listen: the trunk's RTP goes to a test socket (the caller's ear), which talks marked PCMA
//! packets the whole time and records everything it is sent. The SIPp agent phone echoes what it
//! receives, so a marked packet coming back is the agent's audio; anything else is ours (or, with
//! baresip, the agent's 440 Hz voice, told apart by frequency).

mod support;

use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::agent::{answered_caller_with_ear, server_with_agent, tone_share, AgentPhone, Answer};
use support::pcap::{pcma_call_rtp, to_pcap, DtmfPcapConfig};
use support::server::TestServer;
use support::sipp::Sipp;
use support::sipp_phone::{
    answer_hold_resume_hang_up, answer_reinvite_hang_up, caller_packet, trunk_rtp_port,
    PhoneReinvite, SippPhone,
};
use veilig_bellen::call::manager::Comfort;

const CALLER: &str = "+31622223333";
/// The caller's marked payload: an echo of it is the agent's audio.
const MARK: u8 = 0x2a;
/// 100 ms of 8 kHz audio: the blocks the audio is judged in.
const BLOCK: usize = 800;
/// The prompt of the prompt test: 1.5 s of 700 Hz, then 0.5 s of silence.
const PROMPT_HZ: f64 = 700.0;
/// The SIPp agent phone's music on hold: 600 Hz.
const MUSIC_HZ: f64 = 600.0;

/// One RTP packet the caller received.
struct Heard {
    at: Instant,
    /// An echo of the caller's own marked packet: the agent's audio, relayed.
    agent: bool,
    pcm: Vec<i16>,
}

/// The caller's ear: talks marked PCMA every 20 ms to our trunk-side port and records what comes
/// back, until dropped (at most `limit`).
struct CallerEar {
    heard: Arc<Mutex<Vec<Heard>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl CallerEar {
    fn start(ear: tokio::net::UdpSocket, our_port: u16, limit: Duration) -> CallerEar {
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
    fn between(&self, from: Instant, to: Instant) -> (u32, Vec<i16>) {
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
    async fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = (&mut self.task).await;
    }
}

/// The longest run of 100 ms blocks that are mostly `freq` Hz and loud enough to hear, in seconds.
fn longest_tone(samples: &[i16], freq: f64) -> f64 {
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
async fn connected_caller(srv: &TestServer) -> Option<(tokio::net::UdpSocket, u16, Sipp, Value)> {
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
async fn seen(needle: &str, read: impl Fn() -> String) -> Instant {
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
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The list shows call `id` with `on_hold` as given, within 3 s.
async fn shows_on_hold(srv: &TestServer, id: &Value, on_hold: bool) {
    srv.wait_for_call(Duration::from_secs(3), |c| {
        c["id"] == *id && c["state"] == "connected" && c["on_hold"] == on_hold
    })
    .await
    .unwrap_or_else(|e| panic!("on_hold never became {on_hold}: {e}"));
}

/// How long the SIPp agent phone waits before each of its steps: hold, resume, hang up.
const PAUSE: Duration = Duration::from_millis(2500);

/// The SIPp agent phone's scenario: holds with `direction` (our answer must match `answered`)
/// [`PAUSE`] after answering, resumes after another, hangs up after a third.
fn hold_resume(direction: &'static str, answered: &'static str) -> String {
    answer_reinvite_hang_up(
        "agent phone that holds and resumes",
        PAUSE,
        &[
            PhoneReinvite::Offer(direction, answered),
            PhoneReinvite::Offer("sendrecv", "a=sendrecv"),
        ],
    )
}

/// What the caller heard around one hold by the SIPp agent phone.
struct Held {
    ear: CallerEar,
    connected: Instant,
    /// When the phone's ACK to our answer to its hold, and its resume re-INVITE, showed in its
    /// message log.
    hold_acked: Instant,
    resume_sent: Instant,
}

impl Held {
    /// Our audio from the connect until the resume: before the hold the caller heard only the
    /// agent, so all of it is the hold's.
    fn ours_while_held(&self) -> Vec<i16> {
        self.ear.between(self.connected, self.resume_sent).1
    }
}

/// Runs the SIPp agent phone's `scenario` (answer, hold, resume, hang up, see [`hold_resume`])
/// against a verified caller and checks everything around the hold: the list shows `on_hold` while
/// it lasts, no agent audio reaches the caller while held, after the resume the agent's audio does
/// and ours stops, the call ends (not `on_hold`) and the ports are free. `None`: sipp is missing.
async fn hold_and_listen(srv: &TestServer, scenario: &str) -> Option<Held> {
    let phone = SippPhone::register(srv.sip_udp, scenario, true).await?;
    let (ear, our_port, sipp, id) = connected_caller(srv).await?;
    let connected = Instant::now();
    let mut ear = CallerEar::start(ear, our_port, Duration::from_secs(15));

    let hold_sent = seen("CSeq: 2 INVITE", || phone.messages()).await;
    let hold_acked = seen("CSeq: 2 ACK", || phone.messages()).await;
    shows_on_hold(srv, &id, true).await;
    let resume_sent = seen("CSeq: 3 INVITE", || phone.messages()).await;
    shows_on_hold(srv, &id, false).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let listened = Instant::now();

    phone
        .finish()
        .await
        .unwrap_or_else(|e| panic!("the agent's phone saw wrong answers to its re-INVITEs: {e}"));
    if let Err(e) = sipp.finish().await {
        panic!("the caller did not get the agent's hang-up as a BYE: {e}");
    }
    ear.stop().await;
    let ended = srv
        .wait_for_call(Duration::from_secs(3), |c| {
            c["id"] == id && c["state"] == "ended"
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_phone_holding_plays_ringback_to_the_caller_until_it_resumes() {
    let srv = server_with_agent(|_| {}).await;
    let Some(held) = hold_and_listen(&srv, &answer_hold_resume_hang_up(PAUSE)).await else {
        return;
    };
    let held = held.ours_while_held();
    let secs = held.len() as f64 / 8000.0;
    let share = tone_share(&held, 8000.0, 425.0);
    let burst = longest_tone(&held, 425.0);
    eprintln!("held {secs:.2} s: 425 Hz share {share:.2}, longest 425 Hz burst {burst:.1} s");
    assert!(
        secs > 1.5,
        "the caller got only {secs:.2} s of audio from us during a 2.5 s hold"
    );
    assert!(
        share > 0.5,
        "what the held caller heard is {share:.2} ringback (425 Hz)"
    );
    // The ringback's cadence from its start: one whole 1 s burst, not a continuous tone.
    assert!(
        (0.9..=1.1).contains(&burst),
        "the longest 425 Hz burst lasted {burst:.1} s, not the cadence's 1 s"
    );
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_phone_holding_inactive_plays_the_configured_prompt() {
    // 1.5 s of 700 Hz then 0.5 s of silence, looped.
    let prompt: Vec<i16> = (0..16_000)
        .map(|i| {
            if i < 12_000 {
                (6000.0 * (2.0 * std::f64::consts::PI * PROMPT_HZ * f64::from(i) / 8000.0).sin())
                    as i16
            } else {
                0
            }
        })
        .collect();
    let srv = server_with_agent(|c| c.calls.comfort = Comfort::Prompt(prompt.into())).await;
    let Some(held) = hold_and_listen(&srv, &hold_resume("inactive", "a=inactive")).await else {
        return;
    };
    let held = held.ours_while_held();
    let secs = held.len() as f64 / 8000.0;
    let share = tone_share(&held, 8000.0, PROMPT_HZ);
    let ringback = tone_share(&held, 8000.0, 425.0);
    let burst = longest_tone(&held, PROMPT_HZ);
    eprintln!("held {secs:.2} s: prompt share {share:.2}, 425 Hz {ringback:.2}, longest prompt tone {burst:.1} s");
    assert!(
        secs > 1.5,
        "the caller got only {secs:.2} s of audio from us during a 2.5 s hold"
    );
    assert!(
        share > 0.5,
        "what the held caller heard is {share:.2} the prompt"
    );
    assert!(
        ringback < 0.05,
        "the ringback played ({ringback:.2}), not the prompt"
    );
    // The prompt from the start of its loop: its 1.5 s tone whole.
    assert!(
        (1.3..=1.6).contains(&burst),
        "the prompt's tone lasted {burst:.1} s, not its 1.5 s"
    );
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_phone_playing_its_own_music_on_hold_is_heard_instead_of_our_ringback() {
    // The phone plays 1.6 s of 600 Hz PCMA right after its hold's ACK (`sendonly`: it may send).
    let pcm: Vec<i16> = (0..12_800)
        .map(|i| {
            (6000.0 * (2.0 * std::f64::consts::PI * MUSIC_HZ * f64::from(i) / 8000.0).sin()) as i16
        })
        .collect();
    let mut alaw = vec![0u8; pcm.len()];
    dsp::g711::encode_alaw_into(&pcm, &mut alaw);
    let dir = tempfile::tempdir().expect("temp dir");
    let pcap = dir.path().join("music-on-hold.pcap");
    std::fs::write(
        &pcap,
        to_pcap(&pcma_call_rtp(&alaw, &DtmfPcapConfig::default())),
    )
    .expect("write pcap");
    let mut scenario = answer_hold_resume_hang_up(PAUSE);
    let ack = scenario.find("CSeq: 2 ACK").expect("the hold's ACK");
    let after_ack = ack + scenario[ack..].find("</send>\n").expect("its end") + "</send>\n".len();
    scenario.insert_str(
        after_ack,
        &format!(
            "  <nop>\n    <action>\n      <exec play_pcap_audio=\"{}\"/>\n    </action>\n  </nop>\n",
            pcap.display()
        ),
    );

    let srv = server_with_agent(|_| {}).await;
    let Some(held) = hold_and_listen(&srv, &scenario).await else {
        return;
    };
    // The music's middle second (it starts at the ACK): the phone's audio, once (50 packets a
    // second, not ours as well).
    let music =
        held.hold_acked + Duration::from_millis(200)..held.hold_acked + Duration::from_millis(1200);
    let (_, heard) = held.ear.between(music.start, music.end);
    let packets = heard.len() / 160;
    let share = tone_share(&heard, 8000.0, MUSIC_HZ);
    let ringback = tone_share(&heard, 8000.0, 425.0);
    // After the music, until the resume: our ringback is back.
    let (_, after) = held.ear.between(
        held.hold_acked + Duration::from_millis(1900),
        held.resume_sent,
    );
    let back = tone_share(&after, 8000.0, 425.0);
    eprintln!(
        "music on hold: {packets} packets in 1 s, {share:.2} of it 600 Hz, {ringback:.2} 425 Hz; \
         after it {:.2} s heard, {back:.2} ringback",
        after.len() as f64 / 8000.0
    );
    assert!(
        share > 0.8 && ringback < 0.05,
        "while the phone played its music the caller heard {share:.2} music, {ringback:.2} ringback"
    );
    assert!(
        (35..=65).contains(&packets),
        "{packets} packets in one second of music on hold: both the music and our signal went out"
    );
    assert!(
        after.len() > 2000 && back > 0.5,
        "after the phone's music stopped the caller heard {:.2} s, {back:.2} ringback",
        after.len() as f64 / 8000.0
    );
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_agent_holding_plays_ringback_then_its_voice_again() {
    let srv = server_with_agent(|_| {}).await;
    let Some(mut phone) = AgentPhone::register(srv.sip_udp, Answer::Auto).await else {
        return;
    };
    let Some((ear, our_port, sipp, id)) = connected_caller(&srv).await else {
        return;
    };
    phone
        .expect_event(
            "CALL_ESTABLISHED",
            Duration::from_secs(8),
            "the agent's phone never took the call",
        )
        .await;
    let mut ear = CallerEar::start(ear, our_port, Duration::from_secs(15));
    tokio::time::sleep(Duration::from_millis(1000)).await;

    let updates = phone.log().matches("stream: update").count();
    let hold = Instant::now();
    phone.command("hold").await;
    let start = Instant::now();
    while !phone.log().contains("call: hold")
        || phone.log().matches("stream: update").count() == updates
    {
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "the agent's phone did not put the call on hold:\n{}",
            phone.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shows_on_hold(&srv, &id, true).await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let resume = Instant::now();
    phone.command("resume").await;
    shows_on_hold(&srv, &id, false).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    phone.hang_up_on(sipp).await;
    ear.stop().await;
    let ended = srv
        .wait_for_call(Duration::from_secs(3), |c| {
            c["id"] == id && c["state"] == "ended"
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ended["on_hold"], false);
    srv.wait_rtp_ports_free(Duration::from_secs(3)).await;
    phone.stop().await;

    let heard = |from: Instant, to: Instant| {
        let (_, pcm) = ear.between(from, to);
        (
            pcm.len() as f64 / 8000.0,
            tone_share(&pcm, 8000.0, 440.0),
            tone_share(&pcm, 8000.0, 425.0),
        )
    };
    let before = heard(hold - Duration::from_millis(900), hold);
    let held = heard(hold + Duration::from_millis(300), resume);
    let after = heard(
        resume + Duration::from_millis(300),
        resume + Duration::from_millis(1000),
    );
    eprintln!(
        "baresip (s, 440 Hz share, 425 Hz share): before {before:.2?}, held {held:.2?}, after {after:.2?}"
    );
    assert!(
        before.0 > 0.5 && before.1 > 0.3,
        "before the hold the caller heard {before:.2?} (s, agent's 440 Hz, ringback)"
    );
    // baresip stops sending while it holds: the caller hears our ringback, not silence.
    assert!(
        held.0 > 1.0 && held.2 > 0.5 && held.1 < 0.1,
        "while held the caller heard {held:.2?} (s, agent's 440 Hz, ringback)"
    );
    let (_, whole) = ear.between(hold, resume);
    let burst = longest_tone(&whole, 425.0);
    assert!(
        (0.9..=1.1).contains(&burst),
        "the ringback's first burst lasted {burst:.1} s, not 1 s"
    );
    assert!(
        after.0 > 0.4 && after.1 > 0.3 && after.2 < 0.1,
        "after the resume the caller heard {after:.2?} (s, agent's 440 Hz, ringback)"
    );
    srv.shutdown().await;
}
