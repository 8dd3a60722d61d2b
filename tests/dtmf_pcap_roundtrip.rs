//! The DTMF pcap writer of `tests/support/pcap.rs` produces what a phone sends: read back and fed
//! through the real `RtpSession`, it yields the code, with one RTP timestamp per digit.

use crate::support;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use sip::rfc4733::{DigitEvent, EventPayload};
use sip::rtp::rtp_rs::RtpReader;
use sip::rtp::{RtpConfig, RtpEvent, RtpSession};
use sip::sdp::{Codec, Direction, MediaSession};
use support::pcap::{dtmf_call_pcap, read_pcap, DtmfPcapConfig, PcapPacket};

/// A session whose peer's SIP comes from `signalling` (there is no SDP address: RTP is accepted
/// from that IP, `sip::rtp`).
fn session(now: Instant, te: u8, signalling: Option<IpAddr>) -> RtpSession {
    let media = MediaSession {
        remote_addr: None,
        codec: Codec::Pcma { pt: 8 },
        telephone_event_pt: Some(te),
        ptime_ms: 20,
        direction: Direction::SendRecv,
        on_hold: false,
        srtp: None,
    };
    let config = RtpConfig {
        signalling_ip: signalling,
        ..RtpConfig::default()
    };
    RtpSession::new(now, media, config)
}

/// Plays captured datagrams into a session at their capture times; returns the digits.
fn play(packets: &[PcapPacket], te: u8) -> String {
    let t0 = Instant::now();
    let signalling = packets.first().map(|p| IpAddr::V4(*p.src.ip()));
    let mut s = session(t0, te, signalling);
    let mut code = String::new();
    let mut collect = |s: &mut RtpSession| {
        while let Some(ev) = s.poll_event() {
            if let RtpEvent::Digit(DigitEvent::DigitEnd { digit, .. }) = ev {
                code.push(digit.as_char());
            }
        }
    };
    let mut last = t0;
    for p in packets {
        last = t0 + p.at;
        s.handle_timeout(last);
        s.handle_packet(last, SocketAddr::V4(p.src), &p.payload)
            .expect("valid RTP");
        collect(&mut s);
    }
    s.handle_timeout(last + Duration::from_secs(1));
    collect(&mut s);
    code
}

fn temp_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("veilig-bellen-{}-{name}", std::process::id()))
}

#[test]
fn written_pcap_reads_back_as_the_code_with_one_timestamp_per_digit() {
    let cfg = DtmfPcapConfig::default();
    let path = temp_path("code.pcap");
    support::pcap::write_dtmf_pcap(&path, "12345678", &cfg).expect("write pcap");
    let packets = read_pcap(&std::fs::read(&path).expect("read back")).expect("valid pcap");
    let _ = std::fs::remove_file(&path);

    assert_eq!(play(&packets, 101), "12345678");

    let mut events: BTreeMap<u32, Vec<(bool, EventPayload)>> = BTreeMap::new();
    let mut audio = Vec::new();
    for p in &packets {
        assert_eq!((p.src, p.dst), (cfg.src, cfg.dst));
        let r = RtpReader::new(&p.payload).expect("RTP");
        match r.payload_type() {
            101 => events
                .entry(r.timestamp())
                .or_default()
                .push((r.mark(), EventPayload::parse(r.payload()).expect("event"))),
            8 => audio.push((p.at, r.payload().len())),
            other => panic!("unexpected payload type {other}"),
        }
    }
    assert_eq!(events.len(), 8, "one timestamp per digit");
    for (ts, pkts) in &events {
        assert!(pkts[0].0, "marker on the start of the event at ts {ts}");
        assert_eq!(pkts.iter().filter(|p| p.0).count(), 1);
        let ends: Vec<_> = pkts.iter().filter(|p| p.1.end).collect();
        assert_eq!(ends.len(), 3, "three end packets");
        assert!(ends.iter().all(|e| e.1.duration == 960), "120 ms at 8 kHz");
    }
    assert!(audio.iter().all(|&(_, len)| len == 160), "20 ms of PCMA");
    assert_eq!(audio[1].0 - audio[0].0, Duration::from_millis(20));
    let total = packets.last().expect("packets").at;
    // 400 ms lead-in, 8 digits of 120 ms, 7 gaps of 120 ms, 400 ms tail; the last packet starts
    // one ptime before the end.
    assert_eq!(
        total,
        Duration::from_millis(400 + 8 * 120 + 7 * 120 + 400 - 20)
    );
}

#[test]
fn repeated_digits_are_separate_digits() {
    let pcap = dtmf_call_pcap("1111", &DtmfPcapConfig::default()).expect("pcap");
    let packets = read_pcap(&pcap).expect("valid");
    assert_eq!(play(&packets, 101), "1111");
}

#[test]
fn payload_type_and_timing_are_configurable() {
    let cfg = DtmfPcapConfig {
        event_pt: 96,
        digit_duration: Duration::from_millis(250),
        gap: Duration::from_millis(60),
        update_interval: Duration::from_millis(20),
        ..DtmfPcapConfig::default()
    };
    let packets = read_pcap(&dtmf_call_pcap("*#0D", &cfg).expect("pcap")).expect("valid");
    assert_eq!(play(&packets, 96), "*#0D");
    assert_eq!(
        play(&packets, 101),
        "",
        "PT 96 events are not PT 101 events"
    );
    let longest = packets
        .iter()
        .filter_map(|p| RtpReader::new(&p.payload).ok())
        .filter(|r| r.payload_type() == 96)
        .filter_map(|r| EventPayload::parse(r.payload()).ok())
        .map(|e| e.duration)
        .max();
    assert_eq!(longest, Some(2000));
    assert!(dtmf_call_pcap("12x", &cfg).is_err(), "not a DTMF digit");
}

#[test]
fn sipps_own_dtmf_pcap_is_read_and_a_replay_of_it_is_one_digit() {
    let path = std::path::Path::new("/usr/share/sip-tester/dtmf_2833_1.pcap");
    let Ok(bytes) = std::fs::read(path) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "{} missing: install the Debian package sip-tester",
            path.display()
        );
        eprintln!(
            "skipping: {} not installed (Debian sip-tester)",
            path.display()
        );
        return;
    };
    let once = read_pcap(&bytes).expect("SIPp pcap parses");
    assert_eq!(play(&once, 101), "1");
    let mut twice = once.clone();
    let offset = once.last().expect("packets").at + Duration::from_millis(300);
    twice.extend(once.iter().map(|p| PcapPacket {
        at: p.at + offset,
        ..p.clone()
    }));
    assert_eq!(
        play(&twice, 101),
        "1",
        "same SSRC, timestamp and event: the same digit"
    );
}
