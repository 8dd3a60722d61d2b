//! The WebRTC gateway on real loopback sockets: a `str0m` peer in a task plays the browser, a
//! plain UDP socket plays the call task. The browser's 1 kHz tone reaches the call side as PCMA
//! RTP, the call side's 440 Hz tone reaches the browser (checked by frequency, Goertzel), RTP
//! from a stranger and RFC 4733 events are not heard, and `close()`, a vanished browser and a
//! browser that never connects each end the gateway.

use super::support::ports;
use super::support::tone::frame_share;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use str0m::change::SdpAnswer;
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use veilig_bellen::rtp_ports::SharedPortPool;
use veilig_bellen::webrtc::{Gateway, GatewayConfig, GatewayEvent, MediaTimeouts};

const BROWSER_TONE: f64 = 1000.0;
const CALL_TONE: f64 = 440.0;
const STRANGER_TONE: f64 = 1800.0;

fn config() -> GatewayConfig {
    let range = ports::range(8);
    let key = sip::random::RandomKey::from_bytes(rand::random());
    GatewayConfig {
        bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        public_ip: None,
        ports: SharedPortPool::new(*range.start(), *range.end(), &key).expect("port range"),
    }
}

/// `n` samples of a sine at `freq`, -10 dBFS, from sample `start` of a `rate` stream.
fn tone(freq: f64, rate: u32, start: u64, n: usize) -> Vec<i16> {
    (0..n as u64)
        .map(|i| {
            let t = (start + i) as f64 / f64::from(rate);
            (10_000.0 * (2.0 * std::f64::consts::PI * freq * t).sin()) as i16
        })
        .collect()
}

/// What the browser task saw.
#[derive(Default)]
struct Heard {
    /// Decoded audio from the gateway, at `rate`.
    pcm: Vec<i16>,
    rate: u32,
    connected: bool,
    /// The gateway closed DTLS.
    closed: bool,
    /// Data-channel text from the gateway.
    texts: Vec<String>,
}

/// The test's browser: a full-ICE `str0m` peer with its own socket, sending a 1 kHz tone every
/// 20 ms in `codec` once connected. Dropping `stop` (or sending on it) makes it vanish: its
/// socket closes without a word.
struct BrowserPeer {
    heard: Arc<Mutex<Heard>>,
    stop: Option<oneshot::Sender<()>>,
    /// Text for the browser to send on its data channel.
    say: mpsc::Sender<String>,
    task: tokio::task::JoinHandle<()>,
}

impl BrowserPeer {
    /// Makes the browser's offer, starts the gateway with it and runs the browser.
    async fn call(codec: Codec, timeouts: MediaTimeouts) -> (BrowserPeer, Gateway) {
        let socket = UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("browser socket");
        let local = socket.local_addr().expect("address");
        let codecs = RtcConfig::new().clear_codecs();
        let codecs = match codec {
            Codec::PCMA => codecs.enable_pcma(true, false),
            Codec::Opus => codecs
                .enable_opus(true, false)
                .enable_pcmu(true, false)
                .enable_pcma(true, false),
            other => panic!("no test browser for {other:?}"),
        };
        let mut rtc = codecs.build(Instant::now());
        rtc.add_local_candidate(Candidate::host(local, "udp").expect("candidate"));
        let mut api = rtc.sdp_api();
        let mid = api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        api.add_channel("veilig-bellen".into());
        let (offer, pending) = api.apply().expect("offer");
        let (gateway, answer) = Gateway::start_with(&offer.to_sdp_string(), &config(), timeouts)
            .await
            .expect("gateway starts");
        let answer = SdpAnswer::from_sdp_string(&answer).expect("answer parses");
        rtc.sdp_api()
            .accept_answer(pending, answer)
            .expect("answer accepted");
        let heard = Arc::new(Mutex::new(Heard::default()));
        let (stop, stopped) = oneshot::channel();
        let (say, said) = mpsc::channel(4);
        let task = tokio::spawn(run_browser(
            rtc,
            socket,
            mid,
            codec,
            heard.clone(),
            (stopped, said),
        ));
        let peer = BrowserPeer {
            heard,
            stop: Some(stop),
            say,
            task,
        };
        (peer, gateway)
    }

    fn heard(&self) -> std::sync::MutexGuard<'_, Heard> {
        self.heard.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn vanish(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.task.await;
    }
}

async fn run_browser(
    mut rtc: Rtc,
    socket: UdpSocket,
    mid: Mid,
    codec: Codec,
    heard: Arc<Mutex<Heard>>,
    (mut stop, mut said): (oneshot::Receiver<()>, mpsc::Receiver<String>),
) {
    let mut channel = None;
    let local = socket.local_addr().expect("address");
    let mut buf = vec![0u8; 2048];
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut sent: u64 = 0;
    #[cfg(feature = "opus")]
    let mut opus = (
        opus2::Encoder::new(48000, opus2::Channels::Mono, opus2::Application::Voip)
            .expect("encoder"),
        opus2::Decoder::new(48000, opus2::Channels::Mono).expect("decoder"),
    );
    // Bounded: the test ends the browser within seconds.
    for _ in 0..100_000 {
        let timeout = loop {
            let output = match rtc.poll_output() {
                Ok(output) => output,
                // str0m's own stack gives up on what the gateway sent while closing (e.g. an SCTP
                // shutdown before the association was up): this browser was told, and is done.
                Err(_) => {
                    heard.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
                    return;
                }
            };
            match output {
                Output::Timeout(t) => break t,
                Output::Transmit(t) => {
                    let _ = socket.send_to(&t.contents, t.destination).await;
                }
                Output::Event(e) => {
                    let mut h = heard.lock().unwrap_or_else(|e| e.into_inner());
                    match e {
                        Event::Connected => h.connected = true,
                        Event::Closed => h.closed = true,
                        Event::ChannelOpen(id, _) => channel = Some(id),
                        Event::ChannelData(d) => {
                            h.texts.push(String::from_utf8_lossy(&d.data).into_owned());
                        }
                        Event::MediaData(data) => {
                            let mut pcm = vec![0i16; 5760];
                            let n = match data.params.spec().codec {
                                Codec::PCMA => {
                                    h.rate = 8000;
                                    dsp::g711::decode_alaw_into(&data.data, &mut pcm)
                                }
                                Codec::PCMU => {
                                    h.rate = 8000;
                                    dsp::g711::decode_ulaw_into(&data.data, &mut pcm)
                                }
                                #[cfg(feature = "opus")]
                                Codec::Opus => {
                                    h.rate = 48000;
                                    opus.1.decode(&data.data, &mut pcm, false).expect("decode")
                                }
                                other => panic!("browser got {other:?}"),
                            };
                            h.pcm.extend_from_slice(&pcm[..n]);
                        }
                        _ => {}
                    }
                }
            }
        };
        if !rtc.is_alive() {
            return;
        }
        tokio::select! {
            _ = &mut stop => return,
            Some(text) = said.recv() => {
                if let Some(mut ch) = channel.and_then(|id| rtc.channel(id)) {
                    assert!(ch.write(false, text.as_bytes()).expect("write"), "accepted");
                }
            }
            received = socket.recv_from(&mut buf) => {
                let Ok((n, source)) = received else { continue };
                let Ok(contents) = buf[..n].try_into() else { continue };
                let input = Input::Receive(
                    Instant::now(),
                    Receive { proto: Protocol::Udp, source, destination: local, contents },
                );
                let _ = rtc.handle_input(input);
            }
            () = tokio::time::sleep_until(timeout.into()) => {
                let _ = rtc.handle_input(Input::Timeout(Instant::now()));
            }
            _ = tick.tick() => {
                if !rtc.is_connected() {
                    let _ = rtc.handle_input(Input::Timeout(Instant::now()));
                    continue;
                }
                let (payload, rate) = match codec {
                    #[cfg(feature = "opus")]
                    Codec::Opus => {
                        let pcm = tone(BROWSER_TONE, 48000, sent * 6, 960);
                        let mut out = vec![0u8; 1500];
                        let n = opus.0.encode(&pcm, &mut out).expect("encode");
                        out.truncate(n);
                        (out, 48000)
                    }
                    _ => {
                        let pcm = tone(BROWSER_TONE, 8000, sent, 160);
                        let mut out = vec![0u8; 160];
                        dsp::g711::encode_alaw_into(&pcm, &mut out);
                        (out, 8000)
                    }
                };
                let time = MediaTime::new(
                    sent * u64::from(rate) / 8000,
                    Frequency::new(rate).expect("nonzero"),
                );
                sent += 160;
                let Some(writer) = rtc.writer(mid) else { continue };
                let Some(pt) = writer
                    .payload_params()
                    .find(|p| p.spec().codec == codec)
                    .map(|p| p.pt())
                else {
                    continue;
                };
                let _ = writer.write(pt, Instant::now(), time, payload);
            }
        }
    }
}

/// The call task's side: sends a 440 Hz PCMA stream (and RFC 4733 events) to the gateway and
/// keeps what the gateway sends; a stranger sends an 1800 Hz stream to the same port.
struct CallSide {
    heard: Arc<Mutex<Vec<Vec<i16>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl CallSide {
    async fn start(gateway: &Gateway) -> CallSide {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("call socket");
        let stranger = UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("stranger socket");
        gateway.set_rtp_peer(socket.local_addr().expect("address"));
        let to = gateway.rtp_addr();
        assert!(to.ip().is_loopback());
        let heard = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(run_call_side(socket, stranger, to, heard.clone()));
        CallSide { heard, task }
    }

    fn frames(&self) -> Vec<Vec<i16>> {
        self.heard.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 12 + payload.len()];
    let len = sip::rtp::rtp_rs::RtpPacketBuilder::new()
        .payload_type(pt)
        .ssrc(ssrc)
        .sequence(sip::rtp::rtp_rs::Seq::from(seq))
        .timestamp(ts)
        .payload(payload)
        .build_into(&mut out)
        .expect("fits");
    out.truncate(len);
    out
}

async fn run_call_side(
    socket: UdpSocket,
    stranger: UdpSocket,
    to: SocketAddr,
    heard: Arc<Mutex<Vec<Vec<i16>>>>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut buf = vec![0u8; 2048];
    let mut n = 0u32;
    // Bounded: aborted by the test long before.
    for _ in 0..6000 {
        tokio::select! {
            _ = tick.tick() => {
                n += 1;
                let seq = n as u16;
                let ts = n * 160;
                let mut payload = [0u8; 160];
                dsp::g711::encode_alaw_into(&tone(CALL_TONE, 8000, u64::from(ts), 160), &mut payload);
                let _ = socket.send_to(&rtp(8, seq, ts, 0xca11, &payload), to).await;
                dsp::g711::encode_alaw_into(&tone(STRANGER_TONE, 8000, u64::from(ts), 160), &mut payload);
                let _ = stranger.send_to(&rtp(8, seq, ts, 0xbad, &payload), to).await;
                // An RFC 4733 event ('5', volume 10) on PT 101 is not audio.
                let _ = socket.send_to(&rtp(101, seq, ts, 0xca11, &[5, 10, 0, 160]), to).await;
            }
            received = socket.recv_from(&mut buf) => {
                let Ok((len, _)) = received else { continue };
                let Ok(packet) = sip::rtp::rtp_rs::RtpReader::new(&buf[..len]) else { continue };
                assert_eq!(packet.payload_type(), 8, "the gateway sends PCMA");
                let mut pcm = vec![0i16; packet.payload().len()];
                dsp::g711::decode_alaw_into(packet.payload(), &mut pcm);
                heard.lock().unwrap_or_else(|e| e.into_inner()).push(pcm);
            }
        }
    }
}

async fn next_event(gateway: &mut Gateway, limit: Duration) -> Option<GatewayEvent> {
    tokio::time::timeout(limit, gateway.events.recv())
        .await
        .ok()
        .flatten()
}

/// Connects, lets audio flow for a second and a half, and checks both directions by frequency.
async fn audio_flows_both_ways(codec: Codec, min_share: f64) -> (BrowserPeer, Gateway, CallSide) {
    let (browser, mut gateway) = BrowserPeer::call(codec, MediaTimeouts::default()).await;
    let call = CallSide::start(&gateway).await;
    assert_eq!(
        next_event(&mut gateway, Duration::from_secs(5)).await,
        Some(GatewayEvent::Connected)
    );
    let enough = |browser: &BrowserPeer| {
        let heard = browser.heard();
        heard.pcm.len() >= 60 * heard.rate.max(8000) as usize / 50
    };
    assert!(
        super::support::wait_until(Duration::from_secs(5), || call.frames().len() >= 60
            && enough(&browser))
        .await,
        "audio both ways: call side {} frames, browser {} samples",
        call.frames().len(),
        browser.heard().pcm.len()
    );

    let frames = call.frames();
    for (i, frame) in frames.iter().enumerate().skip(10) {
        assert_eq!(frame.len(), 160, "20 ms PCMA frames");
        let share = frame_share(frame, BROWSER_TONE);
        assert!(
            share > min_share,
            "call side frame {i}: 1 kHz share {share:.3}"
        );
    }

    let heard = browser.heard();
    let window = heard.rate as usize / 50;
    for (i, w) in heard.pcm.chunks_exact(window).enumerate().skip(10) {
        let share = dsp::testsig::tone_share(w, CALL_TONE, heard.rate);
        assert!(
            share > min_share,
            "browser window {i}: 440 Hz share {share:.3}"
        );
        let stranger = dsp::testsig::tone_share(w, STRANGER_TONE, heard.rate);
        assert!(
            stranger < 0.01,
            "browser window {i} hears the stranger: {stranger:.3}"
        );
    }
    drop(heard);
    (browser, gateway, call)
}

#[tokio::test]
async fn pcma_browser_call_is_heard_both_ways_and_close_ends_it() {
    let (browser, mut gateway, call) = audio_flows_both_ways(Codec::PCMA, 0.95).await;

    // The data channel, both ways (the "extra requests" will ride on it).
    assert!(gateway.send_data(r#"{"type":"request"}"#.into()));
    assert!(
        super::support::wait_until(Duration::from_secs(3), || browser.heard().texts
            == [r#"{"type":"request"}"#])
        .await,
        "the browser got the message: {:?}",
        browser.heard().texts
    );
    browser
        .say
        .send("antwoord".into())
        .await
        .expect("browser runs");
    assert_eq!(
        next_event(&mut gateway, Duration::from_secs(3)).await,
        Some(GatewayEvent::Data("antwoord".into()))
    );

    // A last message right before hanging up still arrives.
    assert!(gateway.send_data(r#"{"type":"ended"}"#.into()));
    gateway.close();
    let mut closed = None;
    while let Some(event) = next_event(&mut gateway, Duration::from_secs(5)).await {
        if let GatewayEvent::Closed { reason } = event {
            closed = Some(reason);
        }
    }
    assert_eq!(closed.as_deref(), Some("hung up"));
    assert!(
        super::support::wait_until(Duration::from_secs(2), || gateway.is_finished()).await,
        "the task ended"
    );
    assert!(
        super::support::wait_until(Duration::from_secs(2), || browser.heard().closed).await,
        "the browser got DTLS close_notify"
    );
    assert!(!gateway.send_data("late".into()));
    assert_eq!(
        browser.heard().texts,
        [r#"{"type":"request"}"#, r#"{"type":"ended"}"#]
    );
    call.task.abort();
    browser.vanish().await;
}

/// An agent may ask for more before the browser's connection is up: what the call sends then
/// waits for the data channel instead of being lost, and arrives in order.
#[tokio::test]
async fn a_message_sent_before_the_channel_opens_arrives_once_it_does() {
    let (browser, gateway) = BrowserPeer::call(Codec::PCMA, MediaTimeouts::default()).await;
    let sender = gateway.data_sender();
    assert!(sender.send(r#"{"type":"request","request":{"id":1}}"#.into()));
    assert!(gateway.send_data(r#"{"type":"request","request":{"id":2}}"#.into()));
    assert!(
        super::support::wait_until(Duration::from_secs(5), || browser.heard().texts.len() == 2)
            .await,
        "the browser got the early messages: {:?}",
        browser.heard().texts
    );
    assert_eq!(
        browser.heard().texts,
        [
            r#"{"type":"request","request":{"id":1}}"#,
            r#"{"type":"request","request":{"id":2}}"#
        ]
    );
    gateway.close();
    tokio::time::timeout(Duration::from_secs(5), sender.closed())
        .await
        .expect("the sender learns the gateway ended");
    assert!(!sender.send("late".into()));
    browser.vanish().await;
}

#[cfg(feature = "opus")]
#[tokio::test]
async fn opus_browser_call_is_transcoded_to_pcma_and_back() {
    let (browser, gateway, call) = audio_flows_both_ways(Codec::Opus, 0.9).await;
    assert_eq!(gateway.codec(), veilig_bellen::webrtc::AudioCodec::Opus);
    assert_eq!(browser.heard().rate, 48000);
    call.task.abort();
    browser.vanish().await;
}

#[tokio::test]
async fn vanished_browser_ends_the_gateway() {
    let timeouts = MediaTimeouts {
        connect: Duration::from_secs(10),
        idle: Duration::from_secs(1),
    };
    let (browser, mut gateway) = BrowserPeer::call(Codec::PCMA, timeouts).await;
    let call = CallSide::start(&gateway).await;
    assert_eq!(
        next_event(&mut gateway, Duration::from_secs(5)).await,
        Some(GatewayEvent::Connected)
    );
    browser.vanish().await;
    let event = next_event(&mut gateway, Duration::from_secs(5)).await;
    assert_eq!(
        event,
        Some(GatewayEvent::Closed {
            reason: "the browser went away".into()
        })
    );
    assert_eq!(next_event(&mut gateway, Duration::from_secs(1)).await, None);
    assert!(super::support::wait_until(Duration::from_secs(2), || gateway.is_finished()).await);
    call.task.abort();
}

#[tokio::test]
async fn browser_that_never_connects_is_given_up() {
    let mut rtc = RtcConfig::new()
        .clear_codecs()
        .enable_pcma(true, false)
        .build(Instant::now());
    let addr: SocketAddr = "127.0.0.1:9".parse().expect("literal");
    rtc.add_local_candidate(Candidate::host(addr, "udp").expect("candidate"));
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    let (offer, _) = api.apply().expect("offer");
    let timeouts = MediaTimeouts {
        connect: Duration::from_millis(500),
        idle: Duration::from_secs(1),
    };
    let (mut gateway, _answer) = Gateway::start_with(&offer.to_sdp_string(), &config(), timeouts)
        .await
        .expect("gateway starts");
    // Garbage on its browser socket changes nothing.
    let junk = UdpSocket::bind("127.0.0.1:0").await.expect("socket");
    for bytes in [
        &[0u8, 1, 0, 0][..],
        &[22, 254, 253, 0][..],
        &[0x80, 0, 0, 0][..],
    ] {
        let _ = junk.send_to(bytes, gateway.browser_addr()).await;
    }
    let event = next_event(&mut gateway, Duration::from_secs(5)).await;
    assert_eq!(
        event,
        Some(GatewayEvent::Closed {
            reason: "the browser never connected".into()
        })
    );
    assert!(super::support::wait_until(Duration::from_secs(2), || gateway.is_finished()).await);
}

#[tokio::test]
async fn dropping_the_handle_ends_the_task() {
    let (browser, gateway) = BrowserPeer::call(Codec::PCMA, MediaTimeouts::default()).await;
    assert!(super::support::wait_until(Duration::from_secs(5), || browser.heard().connected).await);
    drop(gateway);
    assert!(
        super::support::wait_until(Duration::from_secs(3), || browser.heard().closed).await,
        "the browser is told"
    );
    browser.vanish().await;
}
