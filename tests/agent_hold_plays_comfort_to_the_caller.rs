//! A caller whom the agent puts on hold hears the comfort signal, not silence (relayed calls): the
//! agent's phone re-INVITEs with `a=sendonly` (RFC 3264 §8.4) and the caller hears the Dutch
//! ringback (425 Hz, 1 s on, 4 s off) from the start of its cadence, and the agents' list shows the
//! call `on_hold`; when the phone resumes (`a=sendrecv`) the ringback stops and the caller hears
//! the agent again. With a configured prompt, the caller hears the prompt; a phone that holds with
//! `a=inactive` gets the same. A phone that plays its own music while holding (`sendonly` lets it
//! send; the SIPp phone plays a pcap) is heard instead of our signal, never both, and ours is back
//! once the music has stopped for a while (`MUSIC_RELEASE`: a pause in it is not its end); a phone
//! that streams silence instead gets ours (`agent_hold_with_silence_plays_comfort.rs`). baresip
//! (`hold`, which stops its sending) gets ringback too. After each call every RTP port is free
//! again and the ended call is not `on_hold`.
//!
//! How we listen (`support/hold.rs`): the trunk's RTP goes to a test socket (the caller's ear),
//! which talks marked PCMA packets the whole time and records everything it is sent. The SIPp agent
//! phone echoes what it receives, so a marked packet coming back is the agent's audio; anything
//! else is ours (or, with baresip, the agent's 440 Hz voice, told apart by frequency).

use crate::support;

use std::time::{Duration, Instant};
use support::agent::{server_with_agent, tone_share, AgentPhone, Answer};
use support::hold::{
    alaw_sine, connected_caller, hold_and_listen, longest_tone, play_after_hold_ack, shows_on_hold,
    CallerEar,
};
use support::sipp_phone::{answer_hold_resume_hang_up, answer_reinvite_hang_up, PhoneReinvite};
use veilig_bellen::call::hold::MUSIC_RELEASE;
use veilig_bellen::call::manager::Comfort;

/// The prompt of the prompt test: 1.5 s of 700 Hz, then 0.5 s of silence.
const PROMPT_HZ: f64 = 700.0;
/// The SIPp agent phone's music on hold: 600 Hz.
const MUSIC_HZ: f64 = 600.0;

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
    // The phone plays 1.3 s of 600 Hz PCMA right after its hold's ACK (`sendonly`: it may send),
    // then nothing. It resumes 3 s after the ACK: time for ours to come back after the music.
    let music_time = Duration::from_millis(1300);
    let dir = tempfile::tempdir().expect("temp dir");
    let scenario = play_after_hold_ack(
        &answer_hold_resume_hang_up(Duration::from_millis(3000)),
        &alaw_sine(MUSIC_HZ, 6000.0, music_time.as_secs_f64()),
        dir.path(),
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
    // After the music (and the quiet that may be a pause in it), until the resume: our ringback
    // is back.
    let (_, after) = held.ear.between(
        held.hold_acked + music_time + MUSIC_RELEASE + Duration::from_millis(150),
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
    // Listening windows, judged below: a second before the hold, two held, one after the resume.
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
        // The back-off of this bounded wait for the hold.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shows_on_hold(&srv, &id, true).await;
    // The held window.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let resume = Instant::now();
    phone.command("resume").await;
    shows_on_hold(&srv, &id, false).await;
    // The window after the resume.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    phone.hang_up_on(sipp).await;
    ear.stop().await;
    let ended = srv.wait_ended(&id).await;
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
