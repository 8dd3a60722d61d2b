//! Variant B end to end: a citizen discloses on the municipality's page and calls from the browser
//! (WebRTC) with Chromium's fake microphone playing 1 kHz; the call shows up verified, via the
//! browser, in the agents' API; the waiting signal is heard in the page; the agent answers with a
//! real softphone (baresip, playing 440 Hz) — the agent hears the browser's 1 kHz and the page hears
//! 440 Hz; then one side hangs up and both ends are gone. Once hung up in the page (after muting:
//! the phone then hears no 1 kHz), once at the phone (after a hold, during which the page hears
//! the waiting signal, and a resume).
//!
//! The browser part is `tests/browser/browser_call.test.mjs`. Needs node, /usr/bin/chromium,
//! `npm ci --prefix tests/browser` and baresip; without them the test prints why and passes,
//! unless `CI` is set.

use crate::support;

use std::time::Duration;
use support::agent::{tone_share, AgentPhone, Answer};
use support::demo_child::{Demo, AGENT_PASSWORD, API_TOKEN};

/// 20 s of a 1 kHz sine at 48 kHz, as Chromium's fake microphone wants it (16-bit mono WAV).
fn write_tone(path: &std::path::Path) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut wav = hound::WavWriter::create(path, spec).expect("tone file");
    for n in 0..48_000 * 20 {
        let x = (2.0 * std::f64::consts::PI * 1000.0 * f64::from(n) / 48_000.0).sin();
        wav.write_sample((x * 12_000.0) as i16)
            .expect("tone sample");
    }
    wav.finalize().expect("tone file written");
}

async fn call_from_the_browser(hangup: &str) {
    if !support::browser::ready("browser call test") {
        return;
    }
    let demo = Demo::start(&["--no-demo-phone"]).await;
    if support::agent::find_baresip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let tone = dir.path().join("tone.wav");
    write_tone(&tone);
    let tone_arg = tone.display().to_string();
    let args = [
        demo.http_base.clone(),
        API_TOKEN.to_owned(),
        tone_arg.clone(),
        hangup.to_owned(),
    ];
    let script = tokio::spawn(async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        support::browser::run_node("tests/browser/browser_call.test.mjs", &args).await
    });
    // The phone registers once the browser's call waits (Chromium may take long to start; baresip
    // lives at most BARESIP_LIMIT), and the page learns it from `<tone>.agent`.
    demo.wait_for_call(Duration::from_secs(90), |c| {
        c["via"] == "browser" && c["state"] == "waiting"
    })
    .await;
    let Some(mut phone) =
        AgentPhone::register_with_password(demo.sip, Answer::Auto, AGENT_PASSWORD).await
    else {
        return;
    };
    std::fs::write(format!("{tone_arg}.agent"), b"").expect("agent marker");
    // While the page talks: once the phone is connected, it must hear the browser's tone.
    let established = phone
        .wait_event("CALL_ESTABLISHED", Duration::from_secs(20))
        .await;
    let heard = match &established {
        Ok(_) => Some(
            phone
                .wait_heard(Duration::from_secs(1), 1000.0, 0.3, Duration::from_secs(10))
                .await,
        ),
        Err(_) => None,
    };
    if hangup == "page" && heard.is_some() {
        // The page mutes: what the phone hears from half a second after that on has no 1 kHz.
        let muted = format!("{tone_arg}.muted");
        let _ = support::poll(Duration::from_secs(30), async || {
            std::path::Path::new(&muted).exists().then_some(())
        })
        .await;
        let (rate, before) = phone.heard();
        let from = before.len() + rate as usize / 2;
        let (rate, during) = phone
            .wait_heard_more(from + rate as usize, Duration::from_secs(10))
            .await;
        let quiet = during.get(from..).unwrap_or_default();
        let share = tone_share(quiet, f64::from(rate), 1000.0);
        assert!(
            quiet.len() >= rate as usize && share < 0.1,
            "muted, the phone still hears the browser's 1 kHz (share {share:.2} of {} samples)",
            quiet.len()
        );
        std::fs::write(format!("{tone_arg}.checked"), b"").expect("mute-checked marker");
    }
    if hangup == "agent" && established.is_ok() {
        // Hold and resume at the phone when the page asks (it listens in between).
        for (asked, command, done) in [("hold", "hold", "held"), ("resume", "resume", "resumed")] {
            let asked = format!("{tone_arg}.{asked}");
            let _ = support::poll(Duration::from_secs(30), async || {
                std::path::Path::new(&asked).exists().then_some(())
            })
            .await;
            phone.command(command).await;
            std::fs::write(format!("{tone_arg}.{done}"), b"").expect("hold marker");
        }
        // Once the page heard the agent, hang up at the phone.
        let ready = format!("{tone_arg}.ready");
        let _ = support::poll(Duration::from_secs(20), async || {
            std::path::Path::new(&ready).exists().then_some(())
        })
        .await;
        phone.command("hangup").await;
        std::fs::write(format!("{tone_arg}.hangup"), b"").expect("hang-up marker");
    }
    let (ok, stdout, stderr) = script.await.expect("the browser script ran");
    assert!(
        ok && stdout.lines().any(|l| l == "ok"),
        "browser call failed:\n{stdout}\n{stderr}\n--- demo ---\n{}\n--- phone ---\n{}",
        demo.stderr(),
        phone.log()
    );
    established.expect("the agent's phone took the call");
    let (rate, samples) = heard.expect("the phone heard the call");
    let share = tone_share(&samples, f64::from(rate), 1000.0);
    assert!(
        share > 0.3,
        "the agent hears the browser's 1 kHz (share {share:.2} of {} samples)",
        samples.len()
    );
    // Both ends are gone: the phone's call closed, and the API shows the call ended.
    phone
        .expect_event(
            "CALL_CLOSED",
            Duration::from_secs(10),
            "the phone's call ends",
        )
        .await;
    let call = demo
        .wait_for_call(Duration::from_secs(10), |c| {
            c["via"] == "browser" && c["state"] == "ended"
        })
        .await;
    assert_eq!(call["verified"], true, "{call}");
    assert_eq!(call["agent"], "agent", "{call}");
    assert_eq!(
        call["attributes"],
        serde_json::json!([]),
        "attributes are purged when the call ends: {call}"
    );
    phone.stop().await;
    let status = demo.stop().await;
    assert!(status.success(), "the demo stops cleanly: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_citizen_calls_from_the_browser_and_hangs_up_there() {
    call_from_the_browser("page").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_hangs_up_on_a_browser_call() {
    call_from_the_browser("agent").await;
}
