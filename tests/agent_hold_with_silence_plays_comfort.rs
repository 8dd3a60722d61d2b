//! A caller whom the agent puts on hold hears our waiting signal even when the agent's phone keeps
//! streaming silence while it holds (voice activity detection off, issue 17): what the phone sends
//! decides, not that it sends. The SIPp agent phone re-INVITEs `a=sendonly` and, right after the
//! ACK, plays a pcap of PCMA:
//!
//! - A-law silence (0xD5) for the whole hold: the caller hears the Dutch ringback (425 Hz, its 1 s
//!   burst whole), one stream of 50 packets a second — the phone's silence is not relayed on top.
//! - Silence, a loud 600 Hz tone (−20 dBFS, the phone's own music on hold), then silence again: the
//!   caller hears the phone's tone and none of ours while it plays, then the phone's quiet for
//!   `MUSIC_RELEASE` (a pause in music is not its end, so no ringback flaps in), then our ringback
//!   again while the phone still streams its silence.
//!
//! Listening as in `agent_hold_plays_comfort_to_the_caller.rs` (`support/hold.rs`): the caller's
//! ear records everything it is sent; the phone's echo of the caller's marked packets is told
//! apart, and whatever else comes is ours or what the phone plays, told apart by frequency, level
//! and packet count.

use crate::support;

use std::time::Duration;
use support::agent::{server_with_agent, tone_share};
use support::hold::{alaw_sine, hold_and_listen, longest_tone, play_after_hold_ack, BLOCK};
use support::pcap::PCMA_SILENCE;
use support::sipp_phone::answer_hold_resume_hang_up;
use veilig_bellen::call::hold::MUSIC_RELEASE;

/// How long the SIPp agent phone waits before each of its steps (hold, resume, hang up).
const PAUSE: Duration = Duration::from_millis(3000);
/// The phone stops playing this long before it resumes: after the resume anything but its echo
/// would count as our signal going on.
const QUIET_BEFORE_RESUME: Duration = Duration::from_millis(300);
/// The phone's tone while holding: 600 Hz at −20 dBFS (peak 32768 · 10^(−20/20)).
const TONE_HZ: f64 = 600.0;
const TONE_PEAK: f64 = 3277.0;

/// `time` of A-law silence.
fn silence(time: Duration) -> Vec<u8> {
    vec![PCMA_SILENCE; (time.as_secs_f64() * 8000.0) as usize]
}

/// 20 ms packets in `pcm` (every packet the caller got is 160 samples).
fn packets(pcm: &[i16]) -> usize {
    pcm.len() / 160
}

/// The loudest 100 ms block's RMS (16-bit scale).
fn loudest_block(pcm: &[i16]) -> f64 {
    pcm.chunks_exact(BLOCK)
        .map(|b| (b.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / BLOCK as f64).sqrt())
        .fold(0.0, f64::max)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phone_streaming_silence_while_holding_still_plays_ringback() {
    let dir = tempfile::tempdir().expect("temp dir");
    let scenario = play_after_hold_ack(
        &answer_hold_resume_hang_up(PAUSE),
        &silence(PAUSE - QUIET_BEFORE_RESUME),
        dir.path(),
    );
    let srv = server_with_agent(|_| {}).await;
    let Some(held) = hold_and_listen(&srv, &scenario).await else {
        return;
    };
    let ms = Duration::from_millis;
    // While the phone streams its silence (from its ACK on).
    let (_, streaming) = held
        .ear
        .between(held.hold_acked + ms(200), held.hold_acked + ms(2600));
    let count = packets(&streaming);
    let whole = held.ours_while_held();
    let share = tone_share(&whole, 8000.0, 425.0);
    let burst = longest_tone(&whole, 425.0);
    eprintln!(
        "phone streaming silence: {count} packets in 2.4 s; the hold: {:.2} s heard, 425 Hz share \
         {share:.2}, longest 425 Hz burst {burst:.1} s",
        whole.len() as f64 / 8000.0
    );
    assert!(
        share > 0.5,
        "the phone streamed silence and the held caller heard {share:.2} ringback (425 Hz)"
    );
    assert!(
        (0.9..=1.1).contains(&burst),
        "the ringback's first burst lasted {burst:.1} s, not the cadence's 1 s"
    );
    // 120 packets in 2.4 s is one stream: ours. Ours and the phone's silence both would be 240.
    assert!(
        (90..=150).contains(&count),
        "{count} packets in 2.4 s while the phone streamed silence: not one stream of 20 ms packets"
    );
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phone_playing_a_loud_tone_while_holding_is_heard_instead_and_ringback_returns_over_its_silence(
) {
    let ms = Duration::from_millis;
    // From the ACK: 0.3 s of silence, 0.8 s of the tone, silence until shortly before the resume.
    let (lead, tone) = (ms(300), ms(800));
    let mut played = silence(lead);
    played.extend(alaw_sine(TONE_HZ, TONE_PEAK, tone.as_secs_f64()));
    played.extend(silence(PAUSE - QUIET_BEFORE_RESUME - lead - tone));
    let dir = tempfile::tempdir().expect("temp dir");
    let scenario = play_after_hold_ack(&answer_hold_resume_hang_up(PAUSE), &played, dir.path());
    let srv = server_with_agent(|_| {}).await;
    let Some(held) = hold_and_listen(&srv, &scenario).await else {
        return;
    };
    let at = |t: Duration| held.hold_acked + t;
    let tone_end = lead + tone;

    // The tone (after the hold's first 100 ms of it, which count it as music).
    let (_, during) = held.ear.between(at(lead + ms(200)), at(tone_end - ms(50)));
    let (heard_tone, ringback) = (
        tone_share(&during, 8000.0, TONE_HZ),
        tone_share(&during, 8000.0, 425.0),
    );
    // The phone's quiet after the tone, shorter than MUSIC_RELEASE: still the phone's.
    let (_, pause) = held.ear.between(
        at(tone_end + ms(150)),
        at(tone_end + MUSIC_RELEASE - ms(150)),
    );
    // Then ours again, while the phone still streams silence.
    let (_, back) = held.ear.between(
        at(tone_end + MUSIC_RELEASE + ms(150)),
        at(PAUSE - QUIET_BEFORE_RESUME - ms(50)),
    );
    let back_share = tone_share(&back, 8000.0, 425.0);
    eprintln!(
        "the phone's tone: {} packets in {:.2} s, {heard_tone:.2} 600 Hz, {ringback:.2} 425 Hz; \
         its pause: {} packets in {:.2} s, loudest 100 ms RMS {:.0}; after it {} packets in \
         {:.2} s, {back_share:.2} 425 Hz",
        packets(&during),
        (tone - ms(250)).as_secs_f64(),
        packets(&pause),
        (MUSIC_RELEASE - ms(300)).as_secs_f64(),
        loudest_block(&pause),
        packets(&back),
        (PAUSE - QUIET_BEFORE_RESUME - tone_end - MUSIC_RELEASE - ms(200)).as_secs_f64(),
    );
    assert!(
        heard_tone > 0.8 && ringback < 0.05,
        "while the phone played its tone the caller heard {heard_tone:.2} of it and \
         {ringback:.2} ringback"
    );
    // 0.55 s: 27 packets of one stream, 55 if ours went out too.
    assert!(
        (20..=35).contains(&packets(&during)),
        "{} packets in 0.55 s of the phone's tone: both its tone and our signal went out",
        packets(&during)
    );
    // 0.7 s of the phone's pause: its quiet packets (35), no ringback flapping in.
    assert!(
        loudest_block(&pause) < 100.0 && longest_tone(&pause, 425.0) == 0.0,
        "in the pause after the phone's tone the caller heard a block of RMS {:.0}",
        loudest_block(&pause)
    );
    assert!(
        (25..=45).contains(&packets(&pause)),
        "{} packets in 0.7 s of the phone's pause: not its one stream",
        packets(&pause)
    );
    // 0.4 s of ours (20 packets; 40 if the phone's silence went out too), from the start of the
    // ringback's loop: its tone.
    assert!(
        back_share > 0.5,
        "after the phone's tone, while it streamed silence, the caller heard {back_share:.2} \
         ringback"
    );
    assert!(
        (12..=24).contains(&packets(&back)),
        "{} packets in 0.4 s after the phone's tone: not one stream",
        packets(&back)
    );
    srv.shutdown().await;
}
