//! `veilig-bellen demo` brings its own agent phone: without any softphone installed, **Opnemen**
//! (`POST /api/v1/calls/{id}/answer`) ends in a connected call. The real binary runs as a child; its
//! built-in phone registers as `agent` (the registrations counter on `/metrics` shows it); a
//! verified caller (SIPp as the trunk, the code in SIP INFO, its RTP to a test socket — the caller's
//! ear) waits; the agent answers in the API; the call shows `connected` to `agent` and the caller
//! hears the phone's chime (C5 and E5) through our relay. The caller hangs up, the call ends, and
//! the phone is free for the next caller. With `--no-demo-phone` nothing registers and an answer is
//! refused as `agent_unavailable` until a real softphone registers.

use crate::support;

use std::time::Duration;

use serde_json::{json, Value};
use support::demo_child::{Demo, AGENT_PASSWORD, API_TOKEN, TENANT_NUMBER};
use support::sipp::{Sipp, TrunkCall};
use support::tone::frame_share;
use tokio::net::UdpSocket;
use tokio::time::Instant;
use veilig_bellen::softphone::agent_phone::CHIME_HZ;

/// `veilig_bellen_sip_registrations_total{result="ok"}` on `/metrics` (0 when absent).
async fn registrations(demo: &Demo) -> u64 {
    let text = demo
        .client
        .get(format!("{}/metrics", demo.http_base))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find_map(|l| l.strip_prefix("veilig_bellen_sip_registrations_total{result=\"ok\"} "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// `POST /api/v1/calls/{id}/answer` for agent `agent`: status and body.
async fn answer(demo: &Demo, id: &Value) -> (u16, Value) {
    let response = demo
        .client
        .post(format!("{}/api/v1/calls/{id}/answer", demo.http_base))
        .bearer_auth(API_TOKEN)
        .json(&json!({"agent": "agent"}))
        .send()
        .await
        .expect("POST answer");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A verified caller from `caller`, the code in SIP INFO and its RTP to `ear`, waiting in the
/// agents' list. `None`: sipp is missing (test skipped).
async fn verified_caller_waiting(
    demo: &Demo,
    caller: &str,
    ear: &UdpSocket,
) -> Option<(Sipp, Value)> {
    let mut call = TrunkCall::new(caller);
    call.called = TENANT_NUMBER.to_owned();
    call.info_digits = demo.new_code().await;
    call.media_port = Some(ear.local_addr().expect("ear address").port());
    let sipp = Sipp::start(demo.sip, &call)?;
    let waiting = demo
        .wait_for_call(Duration::from_secs(10), |c| {
            c["caller"] == caller && c["state"] == "waiting" && c["verified"] == true
        })
        .await;
    Some((sipp, waiting))
}

/// The G.711 frames `ear` receives for `listen`, decoded (after dropping what came before).
async fn hear(ear: &UdpSocket, listen: Duration) -> Vec<Vec<i16>> {
    let mut buf = [0u8; 2048];
    while ear.try_recv_from(&mut buf).is_ok() {}
    let deadline = Instant::now() + listen;
    let mut frames = Vec::new();
    while let Ok(Ok((n, _))) = tokio::time::timeout_at(deadline, ear.recv_from(&mut buf)).await {
        let header = 12 + 4 * usize::from(buf[0] & 0x0f);
        if n <= header {
            continue;
        }
        let payload = &buf[header..n];
        let mut pcm = vec![0i16; payload.len()];
        match buf[1] & 0x7f {
            8 => dsp::g711::decode_alaw_into(payload, &mut pcm),
            0 => dsp::g711::decode_ulaw_into(payload, &mut pcm),
            _ => continue, // telephone-event, comfort noise
        };
        frames.push(pcm);
    }
    frames
}

/// `text` without ANSI colour codes (the demo's log is coloured).
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ … m
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Frames that are (almost) all `hz`.
fn frames_of(frames: &[Vec<i16>], hz: u32) -> usize {
    frames
        .iter()
        .filter(|f| frame_share(f, f64::from(hz)) > 0.8)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opnemen_connects_the_caller_to_the_built_in_phone_which_plays_its_chime() {
    let demo = Demo::start(&[]).await;
    assert!(
        demo.stdout()
            .contains("agent phone                built in"),
        "the banner says the phone is built in:\n{}",
        demo.stdout()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while registrations(&demo).await == 0 {
        assert!(
            Instant::now() < deadline,
            "the built-in phone never registered:\n{}",
            demo.stderr()
        );
        // The back-off of this bounded wait.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(demo.stderr().contains("built-in agent phone registered"));

    // Two callers one after the other: after the first hangs up the phone is free again.
    for caller in ["+31611110001", "+31611110002"] {
        let ear = UdpSocket::bind("127.0.0.1:0").await.expect("bind the ear");
        let Some((sipp, waiting)) = verified_caller_waiting(&demo, caller, &ear).await else {
            return;
        };
        let id = waiting["id"].clone();
        let (status, body) = answer(&demo, &id).await;
        assert_eq!(
            status,
            202,
            "Opnemen was refused: {body}\n{}",
            demo.stderr()
        );
        let connected = demo
            .wait_for_call(Duration::from_secs(5), |c| {
                c["id"] == id && c["state"] == "connected"
            })
            .await;
        assert_eq!(connected["agent"], "agent", "{connected:#}");

        let heard = hear(&ear, Duration::from_secs(3)).await;
        let (low, high) = (
            frames_of(&heard, CHIME_HZ[0]),
            frames_of(&heard, CHIME_HZ[1]),
        );
        assert!(
            heard.len() >= 100 && low >= 10 && high >= 10,
            "in 3 s the caller heard {} frames, {low} of them the chime's C5 and {high} its E5",
            heard.len()
        );

        sipp.hang_up();
        if let Err(e) = sipp.finish().await {
            panic!("the trunk's call did not end cleanly: {e}");
        }
        demo.wait_for_call(Duration::from_secs(5), |c| {
            c["id"] == id && c["state"] == "ended"
        })
        .await;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while demo
        .stderr()
        .matches("built-in agent phone: call ended")
        .count()
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "the phone did not hear both calls end:\n{}",
            demo.stderr()
        );
        // The back-off of this bounded wait.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        plain(&demo.stderr()).matches("ended_by=Remote").count(),
        2,
        "the softswitch's BYE ended both calls"
    );

    assert!(
        !demo.stderr().contains(AGENT_PASSWORD),
        "the phone's password was logged"
    );
    // Ctrl-C: the phone hangs up and unREGISTERs, then the server stops.
    let status = demo.stop().await;
    assert!(status.success(), "the demo did not stop cleanly: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_demo_phone_nothing_registers_and_opnemen_finds_no_phone() {
    let demo = Demo::start(&["--no-demo-phone"]).await;
    assert!(
        demo.stdout().contains("none built in (--no-demo-phone)"),
        "{}",
        demo.stdout()
    );
    let ear = UdpSocket::bind("127.0.0.1:0").await.expect("bind the ear");
    let Some((sipp, waiting)) = verified_caller_waiting(&demo, "+31611110003", &ear).await else {
        return;
    };
    assert_eq!(registrations(&demo).await, 0, "nothing registered");
    assert!(!demo.stderr().contains("built-in agent phone"));
    let (status, body) = answer(&demo, &waiting["id"]).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "agent_unavailable", "{body}");
    sipp.hang_up();
    let _ = sipp.finish().await;
}
