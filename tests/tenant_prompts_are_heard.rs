//! A municipality's own recordings and timing: the caller hears the tenant's greeting when we
//! answer, its waiting prompt once the (tenant's, shorter) first-digit timeout classified the call,
//! and its goodbye prompt after the tenant's maximum wait, then our BYE. Each prompt here is a tone
//! of its own frequency, so the RTP the caller receives tells which one played when.

use crate::support;

use std::sync::Arc;
use std::time::{Duration, Instant};
use support::server;
use support::sipp::TrunkCall;
use tokio::net::UdpSocket;
use veilig_bellen::call::machine::MaxWaitPolicy;
use veilig_bellen::tenant::{Prompts, Tenant, Tenants, TimeoutOverrides};

fn tone(freq: f64, secs: f64) -> Arc<[i16]> {
    (0..(secs * 8000.0) as usize)
        .map(|i| {
            let t = i as f64 / 8000.0;
            (8000.0 * (2.0 * std::f64::consts::PI * freq * t).sin()) as i16
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caller_hears_the_tenants_greeting_waiting_and_goodbye_prompts() {
    const GREETING: f64 = 1000.0;
    const WAITING: f64 = 700.0;
    const GOODBYE: f64 = 1300.0;
    let srv = server::start(4, |c| {
        // The install's timing would keep the caller far longer: the tenant's own wins.
        c.calls.call.collect.first_digit_timeout = Duration::from_secs(30);
        c.calls.call.max_wait = Duration::from_secs(600);
        c.calls.call.on_max_wait = MaxWaitPolicy::Goodbye;
        let mut tenant = Tenant::demo();
        tenant.prompts = Prompts {
            greeting: Some(tone(GREETING, 1.0)),
            waiting: Some(tone(WAITING, 0.5)),
            goodbye: Some(tone(GOODBYE, 0.6)),
        };
        tenant.timeouts = TimeoutOverrides {
            first_digit: Some(Duration::from_millis(1500)),
            max_wait: Some(Duration::from_millis(1500)),
            ..TimeoutOverrides::default()
        };
        c.tenants = Tenants::new(vec![tenant]);
    })
    .await;
    let ear = UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind caller media");
    let mut call = TrunkCall::new("+31655558888");
    call.await_bye = true;
    call.media_port = Some(ear.local_addr().expect("addr").port());
    let Some(sipp) = support::sipp::Sipp::start(srv.sip_udp, &call) else {
        return;
    };
    // Which prompt each received 20 ms frame carried, in order (runs collapsed).
    let mut heard: Vec<&str> = Vec::new();
    let mut frames = [0u32; 3];
    let started = Instant::now();
    let mut buf = [0u8; 2048];
    let mut pcm = [0i16; 2048];
    while started.elapsed() < Duration::from_secs(10) {
        match tokio::time::timeout(Duration::from_millis(700), ear.recv(&mut buf)).await {
            Ok(Ok(n)) if n > 12 && buf[1] & 0x7f == 8 => {
                let payload = &buf[12..n];
                let k = dsp::g711::decode_alaw_into(payload, &mut pcm[..payload.len()]);
                for (i, (name, f)) in [
                    ("greeting", GREETING),
                    ("waiting", WAITING),
                    ("goodbye", GOODBYE),
                ]
                .into_iter()
                .enumerate()
                {
                    if support::tone::frame_share(&pcm[..k], f) > 0.8 {
                        frames[i] += 1;
                        if heard.last() != Some(&name) {
                            heard.push(name);
                        }
                    }
                }
            }
            Ok(_) => {}
            Err(_) if frames.iter().sum::<u32>() > 0 => break,
            Err(_) => {}
        }
    }
    let messages = sipp
        .finish()
        .await
        .unwrap_or_else(|e| panic!("the caller was not hung up after the goodbye: {e}"));
    assert!(messages.contains("BYE sip:"));
    eprintln!(
        "heard {heard:?}, frames {frames:?} in {:?}",
        started.elapsed()
    );
    assert_eq!(
        heard,
        ["greeting", "waiting", "goodbye"],
        "frames {frames:?}"
    );
    assert!(frames[0] >= 40, "about 1 s of greeting: {frames:?}");
    assert!(
        frames[2] >= 20,
        "the goodbye prompt played to its end: {frames:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "the tenant's timeouts, not the install's 30 s / 10 min"
    );
    srv.shutdown().await;
}
