//! Fuzz target: a sequence of datagrams (length-prefixed in the input, each with a time step and a
//! source port) fed to `sip::rtp::RtpSession` with telephone-event negotiated, running its timers
//! and draining its events. Must never panic.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use sip::rfc4733::Rfc4733Receiver;
use sip::rtp::{RtpConfig, RtpSession};
use sip::sdp::{Codec, Direction, MediaSession};

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let media = MediaSession {
        remote_addr: Some(SocketAddr::from(([127, 0, 0, 1], 4000))),
        codec: Codec::Pcma { pt: 8 },
        telephone_event_pt: Some(101),
        ptime_ms: 20,
        direction: Direction::SendRecv,
        on_hold: false,
        srtp: None,
    };
    let mut session = RtpSession::new(t0, media, RtpConfig::default());
    let mut receiver = Rfc4733Receiver::new(8000);
    let mut now = t0;
    let mut rest = data;
    // Each record: [len, dt_ms, port, bytes[len]...]
    while let [len, dt, port, tail @ ..] = rest {
        let take = usize::from(*len).min(tail.len());
        let (datagram, next) = tail.split_at(take);
        rest = next;
        now += Duration::from_millis(u64::from(*dt) * 4);
        let from = SocketAddr::from(([127, 0, 0, 1], u16::from(*port % 4) + 1));
        let _ = session.handle_packet(now, from, datagram);
        if datagram.len() >= 8 {
            let ssrc = u32::from_be_bytes([datagram[0], datagram[1], datagram[2], datagram[3]]);
            let ts = u32::from_be_bytes([datagram[4], datagram[5], datagram[6], datagram[7]]);
            let _ = receiver.handle_event(now, ssrc % 3, ts % 5, &datagram[8..]);
        }
        session.handle_timeout(now);
        receiver.handle_timeout(now);
        while session.poll_event().is_some() {}
        while receiver.poll_event().is_some() {}
        let _ = session.send_audio(now, datagram, 160);
    }
});
