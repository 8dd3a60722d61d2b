//! `POST /api/v1/sessions/{token}/call` (WHIP) refuses what it must, before any media is set up:
//! a session that has not disclosed, a token that called already, an unknown token, another
//! website's origin, a municipality that takes no browser calls, another content type and an
//! offer without audio. The one good call answers `201` with an SDP answer and a `Location` whose
//! `DELETE` hangs up; nothing in these answers carries the link code.

use crate::support;

use std::time::{Duration, Instant};
use str0m::media::{Direction, MediaKind};
use str0m::net::Protocol;
use str0m::{Candidate, RtcConfig};
use support::server::TestServer;
use veilig_bellen::tenant::{Tenant, Tenants};

/// A browser's offer: audio (Opus, G.722, PCMU, PCMA, as Chrome's) and a data channel, or video
/// only.
fn offer(audio: bool) -> String {
    let mut rtc = RtcConfig::new()
        .clear_codecs()
        .enable_opus(true, false)
        .enable_g722(true, false)
        .enable_pcmu(true, false)
        .enable_pcma(true, false)
        .enable_vp8(true)
        .build(Instant::now());
    let host = Candidate::host("127.0.0.1:45000".parse().unwrap(), Protocol::Udp).expect("host");
    rtc.add_local_candidate(host);
    let mut api = rtc.sdp_api();
    if audio {
        api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        api.add_channel("veilig-bellen".into());
    } else {
        api.add_media(MediaKind::Video, Direction::SendRecv, None, None, None);
    }
    let (offer, _) = api.apply().expect("an offer");
    offer.to_sdp_string()
}

async fn post_offer(
    srv: &TestServer,
    token: &str,
    body: String,
    content_type: &str,
    origin: Option<&str>,
) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(format!("{}/api/v1/sessions/{token}/call", srv.http_base))
        .header("content-type", content_type)
        .body(body);
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    request.send().await.expect("POST …/call")
}

async fn error_of(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.expect("a JSON error");
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_calls_once_from_its_own_site_and_only_when_disclosed() {
    let srv = support::server::start(8, |_| {}).await;
    let session = srv.start_session().await;
    let token = session["token"].as_str().expect("token").to_owned();

    // Not disclosed yet.
    let r = post_offer(&srv, &token, offer(true), "application/sdp", None).await;
    assert_eq!(error_of(r).await, (409, "not_disclosed".into()));

    let code = srv.disclose(&session).await;

    // Another content type, a foreign website, a garbage token, an offer without audio.
    let r = post_offer(&srv, &token, offer(true), "text/plain", None).await;
    assert_eq!(error_of(r).await, (415, "unsupported_media_type".into()));
    let r = post_offer(
        &srv,
        &token,
        offer(true),
        "application/sdp",
        Some("https://evil.example"),
    )
    .await;
    assert_eq!(error_of(r).await, (403, "forbidden_origin".into()));
    let r = post_offer(&srv, &"0".repeat(32), offer(true), "application/sdp", None).await;
    assert_eq!(error_of(r).await, (404, "unknown_session".into()));
    let r = post_offer(&srv, &token, offer(false), "application/sdp", None).await;
    assert_eq!(error_of(r).await, (400, "bad_request".into()));

    // The call: 201, an SDP answer, a Location to hang up.
    let r = post_offer(&srv, &token, offer(true), "application/sdp", None).await;
    assert_eq!(r.status().as_u16(), 201, "the call");
    let location = r
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .expect("a Location")
        .to_owned();
    assert_eq!(
        r.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/sdp")
    );
    let answer = r.text().await.expect("the answer");
    assert!(answer.starts_with("v=0"), "{answer}");
    assert!(answer.contains("m=audio"), "{answer}");
    assert!(!answer.contains(&code), "the link code is in the answer");
    assert_eq!(location, format!("/api/v1/sessions/{token}/call"));
    let call = srv
        .wait_for_call(Duration::from_secs(5), |c| {
            c["via"] == "browser" && c["state"] == "waiting"
        })
        .await
        .unwrap_or_else(|e| panic!("the browser call is listed: {e}"));
    assert_eq!(call["verified"], true, "{call}");

    // The token called; it cannot call again, and the phone cannot use the session's code.
    let r = post_offer(&srv, &token, offer(true), "application/sdp", None).await;
    assert_eq!(error_of(r).await, (409, "already_called".into()));

    // DELETE hangs up; a second DELETE finds no call.
    let r = reqwest::Client::new()
        .delete(format!("{}{location}", srv.http_base))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(r.status().as_u16(), 204);
    let ended = srv.wait_ended(&call["id"]).await;
    assert_eq!(ended["state"], "ended", "{ended}");
    assert_eq!(ended["attributes"], serde_json::json!([]), "{ended}");
    let r = reqwest::Client::new()
        .delete(format!("{}{location}", srv.http_base))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(error_of(r).await, (404, "call_not_found".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_municipality_without_browser_calls_refuses_them() {
    let srv = support::server::start(4, |c| {
        c.tenants = Tenants::new(vec![Tenant {
            webrtc: false,
            ..Tenant::demo()
        }]);
    })
    .await;
    let session = srv.start_session().await;
    let token = session["token"].as_str().expect("token").to_owned();
    srv.disclose(&session).await;
    let r = post_offer(&srv, &token, offer(true), "application/sdp", None).await;
    assert_eq!(error_of(r).await, (403, "webrtc_off".into()));
    let status: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/api/v1/sessions/{token}/status", srv.http_base))
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("status JSON");
    assert_eq!(status["webrtc"], false, "the page is told: {status}");
}
