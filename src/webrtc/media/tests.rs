//! [`BrowserMedia`] against a second `str0m` [`Rtc`] playing the browser, in-process on a shared
//! simulated clock (as `str0m`'s own tests do): offer/answer, ICE + DTLS, audio both ways checked
//! by frequency, the data channel, refusals, garbage, and every way the media ends.

use super::*;
use proptest::prelude::*;
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::media::Direction;

const STEP: Duration = Duration::from_millis(5);
const FRAME: Duration = Duration::from_millis(20);

fn browser_addr() -> SocketAddr {
    "127.0.0.1:50000".parse().expect("literal")
}

fn server_addr() -> SocketAddr {
    "127.0.0.1:40000".parse().expect("literal")
}

/// Which codecs the test browser offers (in its order of preference).
#[derive(Clone, Copy)]
enum Offer {
    /// Like Chrome: Opus, G722, PCMU, PCMA.
    Chrome,
    Pcma,
    Pcmu,
    /// G722 only: nothing of ours.
    G722,
}

fn browser_config(offer: Offer) -> RtcConfig {
    let config = RtcConfig::new().clear_codecs();
    match offer {
        Offer::Chrome => config
            .enable_opus(true, false)
            .enable_g722(true, false)
            .enable_pcmu(true, false)
            .enable_pcma(true, false),
        Offer::Pcma => config.enable_pcma(true, false),
        Offer::Pcmu => config.enable_pcmu(true, false),
        Offer::G722 => config.enable_g722(true, false),
    }
}

/// The test's browser: an ordinary (full ICE, controlling) `str0m` peer.
struct Browser {
    rtc: Rtc,
    audio: Option<Mid>,
    timeout: Instant,
    out: Vec<Transmit>,
    events: Vec<Event>,
    /// Decoded audio from us, with its sample rate.
    heard: Vec<i16>,
    heard_rate: u32,
    texts: Vec<String>,
    channel: Option<ChannelId>,
    sent_samples: u64,
    #[cfg(feature = "opus")]
    opus: (opus2::Encoder, opus2::Decoder),
}

impl Browser {
    fn new(now: Instant, offer: Offer) -> Browser {
        let mut rtc = browser_config(offer).build(now);
        rtc.add_local_candidate(Candidate::host(browser_addr(), "udp").expect("host"));
        Browser {
            rtc,
            audio: None,
            timeout: now,
            out: Vec::new(),
            events: Vec::new(),
            heard: Vec::new(),
            heard_rate: 8000,
            texts: Vec::new(),
            channel: None,
            sent_samples: 0,
            #[cfg(feature = "opus")]
            opus: (
                opus2::Encoder::new(48000, opus2::Channels::Mono, opus2::Application::Voip)
                    .expect("encoder"),
                opus2::Decoder::new(48000, opus2::Channels::Mono).expect("decoder"),
            ),
        }
    }

    /// An offer with the given m-lines.
    fn offer(&mut self, audio: bool, video: bool, channel: bool) -> (String, SdpPendingOffer) {
        let mut api = self.rtc.sdp_api();
        if audio {
            self.audio =
                Some(api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None));
        }
        if video {
            api.add_media(MediaKind::Video, Direction::SendRecv, None, None, None);
        }
        if channel {
            api.add_channel("veilig-bellen".into());
        }
        let (offer, pending) = api.apply().expect("changes");
        (offer.to_sdp_string(), pending)
    }

    fn drain(&mut self) {
        loop {
            match self.rtc.poll_output().expect("browser output") {
                Output::Timeout(t) => {
                    self.timeout = t;
                    break;
                }
                Output::Transmit(t) => self.out.push(Transmit {
                    to: t.destination,
                    from: t.source,
                    bytes: t.contents.into(),
                }),
                Output::Event(e) => self.on_event(e),
            }
        }
    }

    fn on_event(&mut self, event: Event) {
        match &event {
            Event::MediaData(data) => {
                let mut pcm = vec![0i16; 5760];
                let n = match data.params.spec().codec {
                    Codec::PCMA => dsp::g711::decode_alaw_into(&data.data, &mut pcm),
                    Codec::PCMU => dsp::g711::decode_ulaw_into(&data.data, &mut pcm),
                    #[cfg(feature = "opus")]
                    Codec::Opus => {
                        self.heard_rate = 48000;
                        self.opus
                            .1
                            .decode(&data.data, &mut pcm, false)
                            .expect("decode")
                    }
                    other => panic!("browser got {other:?}"),
                };
                self.heard.extend_from_slice(&pcm[..n]);
            }
            Event::ChannelOpen(id, _) => self.channel = Some(*id),
            Event::ChannelData(d) => {
                self.texts
                    .push(String::from_utf8(d.data.clone()).expect("text"));
            }
            _ => {}
        }
        self.events.push(event);
    }

    fn receive(&mut self, now: Instant, t: &Transmit) {
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source: t.from,
                destination: t.to,
                contents: t.bytes.as_slice().try_into().expect("str0m output parses"),
            },
        );
        self.rtc.handle_input(input).expect("browser input");
        self.drain();
    }

    /// Sends 20 ms of a tone in `codec`.
    fn send_tone(&mut self, now: Instant, codec: Codec, freq: f64) {
        let Some(mid) = self.audio else {
            return;
        };
        let (payload, rate) = match codec {
            Codec::PCMA | Codec::PCMU => {
                let pcm = tone(freq, 8000, self.sent_samples, FRAME_SAMPLES);
                let mut out = vec![0u8; FRAME_SAMPLES];
                if codec == Codec::PCMA {
                    dsp::g711::encode_alaw_into(&pcm, &mut out);
                } else {
                    dsp::g711::encode_ulaw_into(&pcm, &mut out);
                }
                (out, 8000)
            }
            #[cfg(feature = "opus")]
            Codec::Opus => {
                let pcm = tone(freq, 48000, self.sent_samples * 6, 960);
                let mut out = vec![0u8; 1500];
                let n = self.opus.0.encode(&pcm, &mut out).expect("encode");
                out.truncate(n);
                (out, 48000)
            }
            other => panic!("cannot send {other:?}"),
        };
        let frequency = Frequency::new(rate).expect("nonzero");
        let time = MediaTime::new(self.sent_samples * u64::from(rate) / 8000, frequency);
        self.sent_samples += FRAME_SAMPLES as u64;
        let writer = self.rtc.writer(mid).expect("audio writer");
        let pt = writer
            .payload_params()
            .find(|p| p.spec().codec == codec)
            .expect("negotiated")
            .pt();
        writer.write(pt, now, time, payload).expect("write");
        self.drain();
    }
}

/// The browser and us on one simulated clock.
struct Pair {
    now: Instant,
    browser: Browser,
    media: BrowserMedia,
    events: Vec<BrowserEvent>,
    /// Deliver the browser's datagrams to us (false: it vanished).
    browser_online: bool,
    tone_samples: u64,
}

impl Pair {
    fn new(offer: Offer) -> Pair {
        Self::with_channel(offer, false)
    }

    fn with_channel(offer: Offer, channel: bool) -> Pair {
        let now = Instant::now();
        let mut browser = Browser::new(now, offer);
        let (sdp, pending) = browser.offer(true, false, channel);
        let (media, answer) = BrowserMedia::accept(&sdp, &[server_addr()], now).expect("accepted");
        let answer = SdpAnswer::from_sdp_string(&answer).expect("answer parses");
        browser
            .rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .expect("answer accepted");
        browser.drain();
        Pair {
            now,
            browser,
            media,
            events: Vec::new(),
            browser_online: true,
            tone_samples: 0,
        }
    }

    /// Moves datagrams both ways until none is left, then fires due timers.
    fn exchange(&mut self) {
        for _ in 0..1000 {
            let mut moved = false;
            for t in std::mem::take(&mut self.browser.out) {
                moved = true;
                if self.browser_online {
                    self.media.handle_datagram(self.now, t.from, t.to, &t.bytes);
                }
            }
            while let Some(t) = self.media.poll_transmit() {
                moved = true;
                assert_eq!(t.to, browser_addr());
                if self.browser_online {
                    self.browser.receive(self.now, &t);
                }
            }
            while let Some(e) = self.media.poll_event() {
                self.events.push(e);
            }
            if !moved {
                break;
            }
        }
        if self.browser_online && self.browser.timeout <= self.now {
            self.browser
                .rtc
                .handle_input(Input::Timeout(self.now))
                .expect("browser timeout");
            self.browser.drain();
        }
        if self.media.poll_timeout().is_some_and(|t| t <= self.now) {
            self.media.handle_timeout(self.now);
        }
    }

    /// Runs for `duration` of simulated time, calling `tick` every 20 ms.
    fn run(&mut self, duration: Duration, mut tick: impl FnMut(&mut Pair)) {
        let end = self.now + duration;
        let mut next_tick = self.now;
        while self.now < end {
            if self.now >= next_tick {
                tick(self);
                next_tick += FRAME;
            }
            self.exchange();
            self.exchange();
            self.now += STEP;
        }
    }

    fn connect(&mut self) {
        self.run(Duration::from_millis(500), |_| {});
        assert!(self.browser.rtc.is_connected(), "browser connected");
        assert!(self.media.is_connected(), "we are connected");
        assert_eq!(self.events.first(), Some(&BrowserEvent::Connected));
    }

    /// Our audio frames so far.
    fn audio(&self) -> Vec<&Vec<i16>> {
        self.events
            .iter()
            .filter_map(|e| match e {
                BrowserEvent::Audio(pcm) => Some(pcm),
                _ => None,
            })
            .collect()
    }

    fn closed(&self) -> Vec<CloseReason> {
        self.events
            .iter()
            .filter_map(|e| match e {
                BrowserEvent::Closed { reason } => Some(*reason),
                _ => None,
            })
            .collect()
    }

    /// We send 20 ms of a `freq` tone to the browser.
    fn send_tone(&mut self, freq: f64) {
        let pcm = tone(freq, 8000, self.tone_samples, FRAME_SAMPLES);
        self.tone_samples += FRAME_SAMPLES as u64;
        self.media.send_audio(self.now, &pcm);
    }
}

/// `n` samples of a sine at `freq` Hz, -10 dBFS, starting at sample `start` of a `rate` stream.
fn tone(freq: f64, rate: u32, start: u64, n: usize) -> Vec<i16> {
    (0..n as u64)
        .map(|i| {
            let t = (start + i) as f64 / f64::from(rate);
            (10_000.0 * (2.0 * std::f64::consts::PI * freq * t).sin()) as i16
        })
        .collect()
}

/// Checks that after a settling time audio arrived and is the tone, frame by frame.
fn assert_tone(frames: &[&Vec<i16>], freq: f64, min_frames: usize, min_share: f64) {
    assert!(
        frames.len() >= min_frames,
        "{} frames, wanted {min_frames}",
        frames.len()
    );
    for (i, frame) in frames.iter().enumerate().skip(5) {
        assert_eq!(frame.len(), FRAME_SAMPLES);
        let s = dsp::testsig::tone_share(frame, freq, 8000);
        assert!(s > min_share, "frame {i}: {freq} Hz share {s:.3}");
    }
}

/// Checks the browser's decoded audio in 20 ms windows.
fn assert_browser_heard(browser: &Browser, freq: f64, min_ms: usize, min_share: f64) {
    let window = browser.heard_rate as usize / 50;
    let windows: Vec<&[i16]> = browser.heard.chunks_exact(window).collect();
    assert!(
        windows.len() * 20 >= min_ms,
        "browser heard {} ms, wanted {min_ms}",
        windows.len() * 20
    );
    for (i, w) in windows.iter().enumerate().skip(5) {
        let s = dsp::testsig::tone_share(w, freq, browser.heard_rate);
        assert!(s > min_share, "browser window {i}: {freq} Hz share {s:.3}");
    }
}

#[test]
fn pcma_tone_goes_both_ways() {
    let mut pair = Pair::new(Offer::Pcma);
    assert_eq!(pair.media.codec(), AudioCodec::Pcma);
    pair.connect();
    pair.run(Duration::from_secs(1), |p| {
        p.browser.send_tone(p.now, Codec::PCMA, 1000.0);
        p.send_tone(440.0);
    });
    assert_tone(&pair.audio(), 1000.0, 45, 0.95);
    assert_browser_heard(&pair.browser, 440.0, 900, 0.95);
    assert!(pair.closed().is_empty());
}

#[test]
fn pcmu_only_offer_is_answered_in_pcmu() {
    let mut pair = Pair::new(Offer::Pcmu);
    assert_eq!(pair.media.codec(), AudioCodec::Pcmu);
    pair.connect();
    pair.run(Duration::from_secs(1), |p| {
        p.browser.send_tone(p.now, Codec::PCMU, 1000.0);
        p.send_tone(440.0);
    });
    assert_tone(&pair.audio(), 1000.0, 45, 0.95);
    assert_browser_heard(&pair.browser, 440.0, 900, 0.95);
}

#[test]
fn chrome_like_offer_gets_our_preferred_codec() {
    let mut pair = Pair::new(Offer::Chrome);
    #[cfg(feature = "opus")]
    assert_eq!(pair.media.codec(), AudioCodec::Opus);
    #[cfg(not(feature = "opus"))]
    assert_eq!(pair.media.codec(), AudioCodec::Pcma);
    pair.connect();
    // The browser may send any negotiated codec; PCMA works with or without Opus.
    pair.run(Duration::from_secs(1), |p| {
        p.browser.send_tone(p.now, Codec::PCMA, 1000.0);
    });
    assert_tone(&pair.audio(), 1000.0, 45, 0.95);
}

#[cfg(feature = "opus")]
#[test]
fn opus_tone_goes_both_ways() {
    let mut pair = Pair::new(Offer::Chrome);
    assert_eq!(pair.media.codec(), AudioCodec::Opus);
    pair.connect();
    pair.run(Duration::from_secs(1), |p| {
        p.browser.send_tone(p.now, Codec::Opus, 1000.0);
        p.send_tone(440.0);
    });
    assert_tone(&pair.audio(), 1000.0, 45, 0.9);
    assert_eq!(pair.browser.heard_rate, 48000);
    assert_browser_heard(&pair.browser, 440.0, 900, 0.9);
}

#[test]
fn data_channel_carries_text_both_ways() {
    let mut pair = Pair::with_channel(Offer::Pcma, true);
    pair.connect();
    pair.run(Duration::from_millis(300), |_| {});
    let id = pair.browser.channel.expect("browser's channel open");
    assert!(pair.media.send_data(r#"{"type":"extra-request","id":1}"#));
    let mut channel = pair.browser.rtc.channel(id).expect("channel");
    assert!(channel.write(false, "antwoord".as_bytes()).expect("write"));
    // Binary messages are not ours to read.
    assert!(channel.write(true, &[1, 2, 3]).expect("write"));
    pair.browser.drain();
    pair.run(Duration::from_millis(300), |_| {});
    assert_eq!(pair.browser.texts, [r#"{"type":"extra-request","id":1}"#]);
    let data: Vec<&BrowserEvent> = pair
        .events
        .iter()
        .filter(|e| matches!(e, BrowserEvent::Data(_)))
        .collect();
    assert_eq!(data, [&BrowserEvent::Data("antwoord".into())]);
}

#[test]
fn close_right_after_a_message_delivers_it_first() {
    let mut pair = Pair::with_channel(Offer::Pcma, true);
    pair.connect();
    pair.run(Duration::from_millis(300), |_| {});
    assert!(pair.media.send_data(r#"{"type":"ended"}"#));
    pair.media.close();
    assert!(!pair.media.is_closed(), "waits for the acknowledgement");
    assert!(
        !pair.media.send_data("after close"),
        "nothing new once closing"
    );
    pair.run(Duration::from_millis(300), |_| {});
    assert_eq!(pair.browser.texts, [r#"{"type":"ended"}"#]);
    assert_eq!(pair.closed(), [CloseReason::Hangup]);
    assert!(
        pair.browser
            .events
            .iter()
            .any(|e| matches!(e, Event::Closed)),
        "then the browser hears the close_notify"
    );
}

#[test]
fn an_unacknowledged_message_does_not_hold_the_close_up() {
    let mut pair = Pair::with_channel(Offer::Pcma, true);
    pair.connect();
    pair.run(Duration::from_millis(300), |_| {});
    pair.browser_online = false;
    assert!(pair.media.send_data("lost"));
    // The linger runs from the latest time the media was given.
    pair.media.handle_timeout(pair.now);
    pair.media.close();
    pair.run(Duration::from_millis(900), |_| {});
    assert!(pair.closed().is_empty());
    pair.run(Duration::from_millis(200), |_| {});
    assert_eq!(pair.closed(), [CloseReason::Hangup]);
}

#[test]
fn send_data_without_a_channel_is_refused() {
    let mut pair = Pair::new(Offer::Pcma);
    assert!(!pair.media.send_data("too early"));
    pair.connect();
    assert!(!pair.media.send_data("no channel offered"));
}

#[test]
fn close_hangs_up_and_tells_the_browser() {
    let mut pair = Pair::new(Offer::Pcma);
    pair.connect();
    pair.media.close();
    pair.run(Duration::from_millis(200), |_| {});
    assert_eq!(pair.closed(), [CloseReason::Hangup]);
    assert_eq!(pair.media.poll_timeout(), None);
    assert!(
        pair.browser
            .events
            .iter()
            .any(|e| matches!(e, Event::Closed)),
        "the browser hears the close_notify"
    );
    // Everything after is ignored.
    pair.media.send_audio(pair.now, &[0; FRAME_SAMPLES]);
    pair.media.close();
    assert!(!pair.media.send_data("x"));
    pair.run(Duration::from_millis(100), |_| {});
    assert_eq!(pair.closed(), [CloseReason::Hangup]);
}

#[test]
fn browser_closing_ends_the_media() {
    let mut pair = Pair::new(Offer::Pcma);
    pair.connect();
    pair.browser.rtc.close().expect("close");
    pair.browser.drain();
    pair.run(Duration::from_millis(200), |_| {});
    assert_eq!(pair.closed(), [CloseReason::BrowserClosed]);
}

#[test]
fn vanished_browser_ends_the_media() {
    let mut pair = Pair::new(Offer::Pcma);
    pair.connect();
    pair.browser_online = false;
    pair.run(Duration::from_secs(14), |_| {});
    assert!(pair.closed().is_empty(), "not before the idle timeout");
    pair.run(Duration::from_secs(3), |_| {});
    assert_eq!(pair.closed(), [CloseReason::BrowserGone]);
}

#[test]
fn browser_that_never_connects_times_out() {
    let mut pair = Pair::new(Offer::Pcma);
    pair.browser_online = false;
    pair.run(Duration::from_secs(19), |_| {});
    assert!(pair.closed().is_empty());
    pair.run(Duration::from_secs(2), |_| {});
    assert_eq!(pair.closed(), [CloseReason::NoConnection]);
    assert!(!pair.events.contains(&BrowserEvent::Connected));
}

#[test]
fn garbage_datagrams_do_nothing() {
    let mut pair = Pair::new(Offer::Pcma);
    let stranger: SocketAddr = "127.0.0.1:6666".parse().expect("literal");
    let mut junk: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        vec![0xff; 1500],
        // Looks like STUN (first byte 0..3), DTLS (20..63), RTP (128..191).
        vec![
            0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
        ],
        vec![22, 254, 253, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10, 1, 2],
        vec![0x80, 8, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4, 0xd5, 0xd5],
        vec![0x80, 200, 0, 6, 1, 2, 3, 4],
    ];
    let mut seed = 0x1234_5678_u64;
    for len in [12, 40, 100, 200, 1200] {
        junk.push(
            (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (seed >> 56) as u8
                })
                .collect(),
        );
    }
    let feed = |pair: &mut Pair| {
        for bytes in &junk {
            for from in [stranger, browser_addr()] {
                pair.media
                    .handle_datagram(pair.now, from, server_addr(), bytes);
            }
        }
    };
    feed(&mut pair);
    assert_eq!(pair.media.poll_transmit(), None, "nothing answered");
    assert_eq!(pair.media.poll_event(), None);
    pair.connect();
    feed(&mut pair);
    assert_eq!(pair.media.poll_event(), None);
    pair.run(Duration::from_millis(500), |p| {
        p.browser.send_tone(p.now, Codec::PCMA, 1000.0);
    });
    assert_tone(&pair.audio(), 1000.0, 20, 0.95);
    assert!(pair.closed().is_empty());
}

#[test]
fn offers_without_our_audio_are_refused() {
    let now = Instant::now();
    let candidates = [server_addr()];

    let mut browser = Browser::new(now, Offer::Chrome);
    let (video_only, _) = browser.offer(false, true, false);
    assert_eq!(
        BrowserMedia::accept(&video_only, &candidates, now).map(|_| ()),
        Err(OfferError::NoAudio)
    );

    let mut browser = Browser::new(now, Offer::Chrome);
    let (channel_only, _) = browser.offer(false, false, true);
    assert_eq!(
        BrowserMedia::accept(&channel_only, &candidates, now).map(|_| ()),
        Err(OfferError::NoAudio)
    );

    let mut browser = Browser::new(now, Offer::G722);
    let (g722, _) = browser.offer(true, false, false);
    let err = BrowserMedia::accept(&g722, &candidates, now)
        .map(|_| ())
        .expect_err("refused");
    assert!(matches!(err, OfferError::NoCommonCodec(_)), "{err}");
    assert!(err.to_string().contains("PCMA"), "{err}");

    for text in ["", "hello", "v=0\r\n", "v=0\r\nm=audio 9 RTP/AVP 8\r\n"] {
        let err = BrowserMedia::accept(text, &candidates, now)
            .map(|_| ())
            .expect_err("refused");
        assert!(
            matches!(err, OfferError::Invalid(_) | OfferError::NoAudio),
            "{text:?}: {err}"
        );
    }
    let huge = "a".repeat(MAX_OFFER_BYTES + 1);
    assert_eq!(
        BrowserMedia::accept(&huge, &candidates, now).map(|_| ()),
        Err(OfferError::TooLarge)
    );
}

#[test]
fn audio_with_video_answers_the_audio_and_refuses_the_video() {
    let now = Instant::now();
    let mut browser = Browser::new(now, Offer::Chrome);
    let (sdp, _) = browser.offer(true, true, false);
    let (media, answer) = BrowserMedia::accept(&sdp, &[server_addr()], now).expect("accepted");
    assert!(answer.contains("m=audio 9 "), "{answer}");
    assert!(answer.contains("m=video 0 "), "{answer}");
    assert!(answer.contains("a=ice-lite"), "{answer}");
    assert!(answer.contains("127.0.0.1 40000 typ host"), "{answer}");
    assert!(!media.is_connected());
}

#[test]
fn candidates_must_be_usable() {
    let now = Instant::now();
    let mut browser = Browser::new(now, Offer::Pcma);
    let (sdp, _) = browser.offer(true, false, false);
    let unspecified: SocketAddr = "0.0.0.0:4000".parse().expect("literal");
    assert_eq!(
        BrowserMedia::accept(&sdp, &[], now).map(|_| ()),
        Err(OfferError::NoCandidate)
    );
    assert_eq!(
        BrowserMedia::accept(&sdp, &[unspecified], now).map(|_| ()),
        Err(OfferError::NoCandidate)
    );
    // A public address behind 1:1 NAT next to the socket's: both in the answer.
    let public: SocketAddr = "192.0.2.7:40000".parse().expect("literal");
    let (_, answer) = BrowserMedia::accept(&sdp, &[server_addr(), public], now).expect("accepted");
    assert!(answer.contains("192.0.2.7 40000 typ host"), "{answer}");
    assert!(answer.contains("127.0.0.1 40000 typ host"), "{answer}");
}

/// What Chrome sends a WHIP endpoint after gathering: mDNS host candidate, srflx, RED, CN,
/// telephone-event, and a data channel. (Written from a Chrome 12x offer; addresses from the
/// documentation ranges, keys made up.)
const CHROME_OFFER: &str = "v=0\r\n\
o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0 1\r\n\
a=extmap-allow-mixed\r\n\
a=msid-semantic: WMS 3f1e0d2c-aaaa-bbbb-cccc-0123456789ab\r\n\
m=audio 54321 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\n\
c=IN IP4 203.0.113.9\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\n\
a=candidate:1467250027 1 udp 2122260223 4b3c8a52-2f2e-4c0e-9d0a-6f3c2b1a0e9d.local 54321 typ host generation 0 network-cost 999\r\n\
a=candidate:842163049 1 udp 1686052607 203.0.113.9 54321 typ srflx raddr 0.0.0.0 rport 0 generation 0 network-cost 999\r\n\
a=ice-ufrag:Gh7k\r\n\
a=ice-pwd:Qm4bS9kF0zV/Yu3y8aDzbHgq\r\n\
a=ice-options:trickle\r\n\
a=fingerprint:sha-256 8C:64:ED:03:76:D0:3D:B4:88:08:91:64:08:80:A8:C6:5A:BF:8B:4E:38:27:96:CA:08:49:25:73:46:60:20:DC\r\n\
a=setup:actpass\r\n\
a=mid:0\r\n\
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\n\
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
a=sendrecv\r\n\
a=msid:3f1e0d2c-aaaa-bbbb-cccc-0123456789ab 9a8b7c6d-1111-2222-3333-444455556666\r\n\
a=rtcp-mux\r\n\
a=rtcp-rsize\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=rtcp-fb:111 transport-cc\r\n\
a=fmtp:111 minptime=10;useinbandfec=1\r\n\
a=rtpmap:63 red/48000/2\r\n\
a=fmtp:63 111/111\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:13 CN/8000\r\n\
a=rtpmap:110 telephone-event/48000\r\n\
a=rtpmap:126 telephone-event/8000\r\n\
a=ssrc:3948621874 cname:xeXs3aE9AOBn00yJ\r\n\
a=ssrc:3948621874 msid:3f1e0d2c-aaaa-bbbb-cccc-0123456789ab 9a8b7c6d-1111-2222-3333-444455556666\r\n\
m=application 54321 UDP/DTLS/SCTP webrtc-datachannel\r\n\
c=IN IP4 203.0.113.9\r\n\
a=candidate:1467250027 1 udp 2122260223 4b3c8a52-2f2e-4c0e-9d0a-6f3c2b1a0e9d.local 54321 typ host generation 0 network-cost 999\r\n\
a=ice-ufrag:Gh7k\r\n\
a=ice-pwd:Qm4bS9kF0zV/Yu3y8aDzbHgq\r\n\
a=ice-options:trickle\r\n\
a=fingerprint:sha-256 8C:64:ED:03:76:D0:3D:B4:88:08:91:64:08:80:A8:C6:5A:BF:8B:4E:38:27:96:CA:08:49:25:73:46:60:20:DC\r\n\
a=setup:actpass\r\n\
a=mid:1\r\n\
a=sctp-port:5000\r\n\
a=max-message-size:262144\r\n";

#[test]
fn chrome_offer_with_mdns_candidate_and_data_channel_is_answered() {
    let now = Instant::now();
    let (media, answer) =
        BrowserMedia::accept(CHROME_OFFER, &[server_addr()], now).expect("accepted");
    #[cfg(feature = "opus")]
    assert_eq!(media.codec(), AudioCodec::Opus);
    #[cfg(not(feature = "opus"))]
    assert_eq!(media.codec(), AudioCodec::Pcma);
    assert!(answer.contains("m=application 9 UDP/DTLS/SCTP"), "{answer}");
    assert!(answer.contains("a=setup:"), "{answer}");
    // Our order: Opus (with the feature), PCMA, PCMU; nothing else.
    let m_audio = answer
        .lines()
        .find(|l| l.starts_with("m=audio"))
        .expect("audio line");
    #[cfg(feature = "opus")]
    assert!(m_audio.ends_with(" 111 8 0"), "{m_audio}");
    #[cfg(not(feature = "opus"))]
    assert!(m_audio.ends_with(" 8 0"), "{m_audio}");
}

#[test]
fn send_audio_before_connecting_and_odd_lengths_are_harmless() {
    let mut pair = Pair::new(Offer::Pcma);
    pair.media.send_audio(pair.now, &[1000; 10_000]);
    assert_eq!(pair.media.poll_transmit(), None);
    pair.connect();
    // 30 ms packets from the call side come out as 20 ms frames, in time order.
    let mut sent = 0u64;
    pair.run(Duration::from_millis(600), |p| {
        if sent % 3 != 2 {
            let pcm = tone(440.0, 8000, sent * 80, 240);
            p.media.send_audio(p.now, &pcm);
        }
        sent += 1;
    });
    pair.media.send_audio(pair.now, &[]);
    pair.media.send_audio(pair.now, &[7; 100_000]);
    pair.run(Duration::from_millis(100), |_| {});
    assert!(pair.closed().is_empty());
    assert!(!pair.browser.heard.is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any edit of a real offer — lines dropped, duplicated, cut, or replaced by junk — is
    /// answered or refused, never a panic.
    #[test]
    fn mangled_offers_never_panic(
        edits in proptest::collection::vec((0usize..60, 0u8..4, any::<u16>(), ".{0,40}"), 1..6)
    ) {
        let mut lines: Vec<String> = CHROME_OFFER.split("\r\n").map(str::to_owned).collect();
        for (at, kind, n, junk) in edits {
            if lines.is_empty() {
                break;
            }
            let i = at % lines.len();
            match kind {
                0 => { lines.remove(i); }
                1 => { let l = lines[i].clone(); lines.insert(i, l); }
                2 => { let l = &lines[i]; let cut = usize::from(n) % (l.len() + 1); let cut = (0..=cut).rev().find(|&c| l.is_char_boundary(c)).unwrap_or(0); lines[i].truncate(cut); }
                _ => lines[i] = junk,
            }
        }
        let sdp = lines.join("\r\n");
        let _ = BrowserMedia::accept(&sdp, &[server_addr()], Instant::now());
    }
}
