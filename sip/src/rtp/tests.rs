//! RtpSession tests with simulated time.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use rtp_rs::{RtpPacketBuilder, RtpReader, Seq};

use super::*;
use crate::rfc4733::{packets_for_digit, Digit, SenderConfig};
use crate::sdp::{Codec, Direction};

const PEER_SSRC: u32 = 0xC0FF_EE00;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

fn media(te: Option<u8>) -> MediaSession {
    MediaSession {
        remote_addr: Some(addr("10.0.0.5:4000")),
        codec: Codec::Pcma { pt: 8 },
        telephone_event_pt: te,
        ptime_ms: 20,
        direction: Direction::SendRecv,
        on_hold: false,
        srtp: None,
    }
}

/// The IP the peer's SIP comes from in these tests (its NAT's public address).
const SIGNALLING_IP: &str = "203.0.113.7";

/// The default configuration, with [`SIGNALLING_IP`] as the peer's signalling IP.
fn cfg() -> RtpConfig {
    RtpConfig {
        signalling_ip: Some(SIGNALLING_IP.parse().expect("test IP")),
        ..RtpConfig::default()
    }
}

fn packet(pt: u8, ssrc: u32, seq: u16, ts: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
    RtpPacketBuilder::new()
        .payload_type(pt)
        .ssrc(ssrc)
        .sequence(Seq::from(seq))
        .timestamp(ts)
        .marked(marker)
        .payload(payload)
        .build()
        .expect("valid test packet")
}

fn audio(seq: u16) -> Vec<u8> {
    packet(8, PEER_SSRC, seq, u32::from(seq) * 160, false, &[0xD5; 160])
}

fn events(s: &mut RtpSession) -> Vec<RtpEvent> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

fn digits(evs: &[RtpEvent]) -> String {
    evs.iter()
        .filter_map(|e| match e {
            RtpEvent::Digit(DigitEvent::DigitEnd { digit, .. }) => Some(digit.as_char()),
            _ => None,
        })
        .collect()
}

#[test]
fn telephone_events_are_recognised_by_the_negotiated_pt_96_101_126() {
    let nat = addr("203.0.113.7:30000");
    for te in [96u8, 101, 126] {
        let t0 = Instant::now();
        let mut s = RtpSession::new(t0, media(Some(te)), cfg());
        let plan = packets_for_digit(
            Digit::from_char('4').expect("digit"),
            Duration::from_millis(100),
            &SenderConfig::default(),
        );
        let mut seq = 100u16;
        for p in &plan {
            // No marker on any packet: recognition must not depend on it.
            let bytes = packet(te, PEER_SSRC, seq, 8000, false, &p.payload.to_bytes());
            let got = s.handle_packet(t0 + p.at, nat, &bytes).expect("valid");
            assert!(
                matches!(got, Received::TelephoneEvent(_)),
                "pt {te}: {got:?}"
            );
            seq += 1;
        }
        assert_eq!(digits(&events(&mut s)), "4", "pt {te}");
        // The same bytes under another PT are not events, whatever they look like.
        let other = if te == 101 { 96 } else { 101 };
        let fake = packet(
            other,
            PEER_SSRC,
            seq,
            9000,
            true,
            &plan[0].payload.to_bytes(),
        );
        assert_eq!(
            s.handle_packet(t0, nat, &fake).expect("valid"),
            Received::Unknown {
                payload_type: other
            }
        );
        assert_eq!(digits(&events(&mut s)), "");
    }
}

#[test]
fn audio_is_classified_by_codec_pt_and_payload_returned() {
    let t0 = Instant::now();
    let mut s = RtpSession::new(t0, media(Some(101)), RtpConfig::default());
    let bytes = audio(7);
    match s
        .handle_packet(t0, addr("10.0.0.5:4000"), &bytes)
        .expect("valid")
    {
        Received::Audio(info) => {
            assert_eq!(info.payload, &[0xD5; 160][..]);
            assert_eq!(
                (info.ssrc, info.sequence, info.timestamp),
                (PEER_SSRC, 7, 1120)
            );
        }
        other => panic!("expected audio, got {other:?}"),
    }
    let cn = packet(13, PEER_SSRC, 8, 1280, false, &[40]);
    assert_eq!(
        s.handle_packet(t0, addr("10.0.0.5:4000"), &cn)
            .expect("valid"),
        Received::Unknown { payload_type: 13 }
    );
}

#[test]
fn first_packet_latches_so_replies_go_through_the_nat() {
    let t0 = Instant::now();
    let mut s = RtpSession::new(t0, media(None), cfg());
    assert_eq!(
        s.remote_addr(),
        Some(addr("10.0.0.5:4000")),
        "SDP address before any packet"
    );
    let nat = addr("203.0.113.7:61000");
    s.handle_packet(t0, nat, &audio(1)).expect("valid");
    assert_eq!(events(&mut s), vec![RtpEvent::Latched(nat)]);
    let tx = s.send_audio(t0, &[0xD5; 160], 160).expect("sendrecv");
    assert_eq!(tx.to, nat);
}

#[test]
fn packets_from_neither_the_sdp_address_nor_the_signalling_ip_never_count() {
    let t0 = Instant::now();
    let mut s = RtpSession::new(t0, media(Some(101)), cfg());
    for (i, from) in ["192.0.2.66:4000", "10.0.0.6:4000", "203.0.113.8:61000"]
        .into_iter()
        .enumerate()
    {
        assert_eq!(
            s.handle_packet(t0, addr(from), &audio(i as u16))
                .expect("valid"),
            Received::Dropped(DropReason::UnknownSource),
            "{from}"
        );
    }
    assert_eq!(
        s.remote_addr(),
        Some(addr("10.0.0.5:4000")),
        "nothing latched"
    );
    assert_eq!(s.latched(), None);
    assert!(events(&mut s).is_empty());
    assert_eq!(s.stats().dropped_unknown_source, 3);
    // Without a signalling IP only the SDP address's IP is allowed.
    let mut strict = RtpSession::new(t0, media(None), RtpConfig::default());
    assert_eq!(
        strict
            .handle_packet(t0, addr("203.0.113.7:61000"), &audio(1))
            .expect("valid"),
        Received::Dropped(DropReason::UnknownSource)
    );
    assert!(matches!(
        strict
            .handle_packet(t0, addr("10.0.0.5:4002"), &audio(2))
            .expect("valid"),
        Received::Audio(_)
    ));
}

#[test]
fn within_the_learning_window_the_sdp_address_wins_then_the_latch_is_fixed() {
    let t0 = Instant::now();
    let mut s = RtpSession::new(t0, media(None), cfg());
    let nat = addr("203.0.113.7:61000");
    let sdp_other_port = addr("10.0.0.5:4002");
    let sdp = addr("10.0.0.5:4000");
    // The signalling IP's packet comes first and latches…
    s.handle_packet(t0, nat, &audio(1)).expect("valid");
    // …a packet from another port of the SDP's IP ranks better and takes over…
    let t1 = t0 + Duration::from_millis(500);
    assert!(matches!(
        s.handle_packet(t1, sdp_other_port, &audio(2))
            .expect("valid"),
        Received::Audio(_)
    ));
    // …and the SDP address itself ranks best.
    let t2 = t0 + Duration::from_secs(2);
    s.handle_packet(t2, sdp, &audio(3)).expect("valid");
    assert_eq!(
        events(&mut s),
        vec![
            RtpEvent::Latched(nat),
            RtpEvent::Latched(sdp_other_port),
            RtpEvent::Latched(sdp)
        ]
    );
    // Learning: nothing to connect a socket to yet.
    assert_eq!(s.fixed_source(), None);
    // Worse-ranked sources cannot take it back, in the window or after it.
    for (at, from) in [
        (t2, nat),
        (t2, sdp_other_port),
        (t0 + Duration::from_secs(4), nat),
    ] {
        assert_eq!(
            s.handle_packet(at, from, &audio(4)).expect("valid"),
            Received::Dropped(DropReason::UnlatchedSource)
        );
    }
    assert_eq!(s.remote_addr(), Some(sdp));
    // Past the window the latch is fixed: the only source from now on.
    assert_eq!(s.fixed_source(), Some(sdp));
    assert!(events(&mut s).is_empty());
    // New media (a re-INVITE moving the address) starts learning again: no fixed source until
    // the window is over.
    let moved = MediaSession {
        remote_addr: Some(addr("10.0.0.6:4000")),
        ..media(None)
    };
    s.update_media(t0 + Duration::from_secs(5), moved);
    assert_eq!(s.fixed_source(), None);
}

#[test]
fn an_equally_ranked_source_cannot_take_over_even_while_learning() {
    let t0 = Instant::now();
    let mut s = RtpSession::new(t0, media(None), cfg());
    let phone = addr("203.0.113.7:61000");
    let spoof = addr("203.0.113.7:61002");
    s.handle_packet(t0, phone, &audio(1)).expect("valid");
    for seq in 500..520u16 {
        let p = packet(8, 0xBAD, seq, 0, false, &[0; 160]);
        assert_eq!(
            s.handle_packet(t0 + Duration::from_millis(100), spoof, &p)
                .expect("valid"),
            Received::Dropped(DropReason::UnlatchedSource)
        );
    }
    assert_eq!(s.remote_addr(), Some(phone));
}

#[test]
fn after_the_window_no_number_of_packets_moves_the_stream() {
    let t0 = Instant::now();
    let mut s = RtpSession::new(t0, media(None), cfg());
    let a = addr("203.0.113.7:61000");
    s.handle_packet(t0, a, &audio(1)).expect("valid");
    events(&mut s);
    // Even the SDP address itself, once the window is over: the stream stays where it was learnt.
    let later = t0 + Duration::from_secs(10);
    for (i, from) in ["10.0.0.5:4000", "10.0.0.5:4002", "203.0.113.7:62000"]
        .into_iter()
        .enumerate()
    {
        for seq in 0..1000u16 {
            let p = packet(
                8,
                0xBAD + i as u32,
                seq,
                u32::from(seq) * 160,
                false,
                &[0; 160],
            );
            assert_eq!(
                s.handle_packet(later, addr(from), &p).expect("valid"),
                Received::Dropped(DropReason::UnlatchedSource),
                "{from}"
            );
        }
    }
    assert_eq!(s.remote_addr(), Some(a));
    assert!(events(&mut s).is_empty(), "no re-latch, no SSRC change");
    assert_eq!(s.stats().dropped_unlatched, 3000);
    assert!(matches!(
        s.handle_packet(later, a, &audio(2)).expect("valid"),
        Received::Audio(_)
    ));
}

#[test]
fn spoofed_packets_with_new_ssrcs_do_not_steal_the_stream_or_inject_digits() {
    let t0 = Instant::now();
    let mut s = RtpSession::new(t0, media(Some(101)), cfg());
    let real = addr("203.0.113.7:61000");
    let spoof = addr("192.0.2.66:9999");
    let spoof_at_signalling_ip = addr("203.0.113.7:9999");
    s.handle_packet(t0, real, &audio(1)).expect("valid");
    let ev = crate::rfc4733::EventPayload {
        event: 5,
        end: true,
        volume: 10,
        duration: 800,
    };
    for i in 0..20u16 {
        // Each spoofed packet with a different SSRC and random-ish sequence.
        let p = packet(
            101,
            1000 + u32::from(i),
            i.wrapping_mul(7919),
            0,
            true,
            &ev.to_bytes(),
        );
        assert_eq!(
            s.handle_packet(t0, spoof, &p).expect("valid"),
            Received::Dropped(DropReason::UnknownSource)
        );
        assert_eq!(
            s.handle_packet(t0, spoof_at_signalling_ip, &p)
                .expect("valid"),
            Received::Dropped(DropReason::UnlatchedSource)
        );
    }
    assert_eq!(s.remote_addr(), Some(real));
    assert_eq!(digits(&events(&mut s)), "");
}

#[test]
fn ssrc_change_from_the_latched_source_starts_a_new_stream() {
    let t0 = Instant::now();
    let mut s = RtpSession::new(t0, media(None), cfg());
    let a = addr("203.0.113.7:61000");
    for seq in 1..=5 {
        s.handle_packet(t0, a, &audio(seq)).expect("valid");
    }
    let p = packet(8, 0x1111, 40_000, 0, true, &[0; 160]);
    assert!(matches!(
        s.handle_packet(t0, a, &p).expect("valid"),
        Received::Audio(_)
    ));
    assert!(events(&mut s).contains(&RtpEvent::SsrcChanged {
        old: PEER_SSRC,
        new: 0x1111
    }));
    let st = s.stats();
    assert_eq!(
        (st.packets_received, st.packets_lost, st.highest_sequence),
        (1, 0, 40_000)
    );
}

#[test]
fn sequence_wrap_extends_and_loss_is_counted() {
    let t0 = Instant::now();
    let mut s = RtpSession::new(t0, media(None), cfg());
    let a = addr("203.0.113.7:61000");
    let seqs: Vec<u16> = (65_530..=65_535)
        .chain(0..=5)
        .filter(|&q| q != 1 && q != 65_533)
        .collect();
    let mut last = 0;
    for q in seqs {
        if let Received::Audio(info) = s.handle_packet(t0, a, &audio(q)).expect("valid") {
            last = info.sequence;
        }
    }
    assert_eq!(last, 65_536 + 5);
    let st = s.stats();
    assert_eq!(st.highest_sequence, 65_541);
    assert_eq!(st.packets_lost, 2);
    assert_eq!(st.packets_received, 10);
}

#[test]
fn duplicates_are_dropped_and_late_packets_flagged() {
    let t0 = Instant::now();
    let mut s = RtpSession::new(t0, media(None), cfg());
    let a = addr("203.0.113.7:61000");
    s.handle_packet(t0, a, &audio(10)).expect("valid");
    s.handle_packet(t0, a, &audio(12)).expect("valid");
    assert_eq!(
        s.handle_packet(t0, a, &audio(12)).expect("valid"),
        Received::Dropped(DropReason::Duplicate)
    );
    match s.handle_packet(t0, a, &audio(11)).expect("valid") {
        Received::Audio(info) => assert!(info.late),
        other => panic!("{other:?}"),
    }
    let st = s.stats();
    assert_eq!((st.duplicates, st.late, st.packets_lost), (1, 1, 0));
}

#[test]
fn rtcp_on_the_rtp_port_is_ignored() {
    let t0 = Instant::now();
    let mut s = RtpSession::new(t0, media(None), RtpConfig::default());
    // RTCP receiver report header: V=2, PT=201 (as RTP: marker set, PT 73).
    let rr = [0x80, 201, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0];
    assert_eq!(
        s.handle_packet(t0, addr("1.2.3.4:5"), &rr)
            .expect("parses as RTP"),
        Received::Dropped(DropReason::Rtcp)
    );
    assert_eq!(
        s.remote_addr(),
        Some(addr("10.0.0.5:4000")),
        "RTCP does not latch"
    );
}

#[test]
fn send_audio_advances_seq_and_timestamp_and_marks_talkspurts() {
    let t0 = Instant::now();
    let cfg = RtpConfig {
        local_ssrc: 0xABCD,
        initial_seq: 65_535,
        initial_timestamp: 1000,
        ..RtpConfig::default()
    };
    let mut s = RtpSession::new(t0, media(None), cfg);
    let read = |tx: &Transmit| {
        let r = RtpReader::new(&tx.bytes).expect("we build valid RTP");
        (
            u16::from(r.sequence_number()),
            r.timestamp(),
            r.mark(),
            r.ssrc(),
            r.payload_type(),
        )
    };
    let p = [0xD5; 160];
    let a = s.send_audio(t0, &p, 160).expect("send");
    assert_eq!(a.to, addr("10.0.0.5:4000"));
    assert_eq!(read(&a), (65_535, 1000, true, 0xABCD, 8));
    let b = s
        .send_audio(t0 + Duration::from_millis(20), &p, 160)
        .expect("send");
    assert_eq!(
        read(&b),
        (0, 1160, false, 0xABCD, 8),
        "seq wraps, ts += 160"
    );
    let c = s
        .send_audio(t0 + Duration::from_millis(300), &p, 160)
        .expect("send");
    assert_eq!(
        read(&c),
        (1, 1160 + 2240, true, 0xABCD, 8),
        "new talkspurt after 280 ms pause"
    );
    assert_eq!(s.stats().packets_sent, 3);
}

#[test]
fn relayed_events_get_our_pt_and_one_timestamp_per_event() {
    let t0 = Instant::now();
    let mut leg_b = RtpSession::new(t0, media(Some(101)), RtpConfig::default());
    leg_b.send_audio(t0, &[0xD5; 160], 160).expect("audio");
    let plan = packets_for_digit(
        Digit::from_char('9').expect("digit"),
        Duration::from_millis(100),
        &SenderConfig::default(),
    );
    let t1 = t0 + Duration::from_millis(40);
    let sent: Vec<_> = plan
        .iter()
        .map(|p| {
            leg_b
                .send_event(t1 + p.at, p.payload, p.marker)
                .expect("te negotiated")
        })
        .collect();
    let read: Vec<_> = sent
        .iter()
        .map(|t| {
            let r = RtpReader::new(&t.bytes).expect("valid");
            (r.payload_type(), r.timestamp(), r.mark())
        })
        .collect();
    assert!(read.iter().all(|&(pt, ts, _)| pt == 101 && ts == read[0].1));
    assert_eq!(
        read[0].1, 320,
        "event starts at the current media time (40 ms)"
    );
    assert_eq!(
        read.iter().filter(|r| r.2).count(),
        1,
        "marker only on the first"
    );
    // A leg without telephone-event cannot relay it.
    let mut leg_c = RtpSession::new(t0, media(None), RtpConfig::default());
    assert!(leg_c.send_event(t0, plan[0].payload, true).is_none());
}

#[test]
fn a_relayed_20_second_event_in_segments_arrives_as_one_digit() {
    let t0 = Instant::now();
    let mut sender = RtpSession::new(t0, media(Some(96)), RtpConfig::default());
    let mut receiver = RtpSession::new(t0, media(Some(101)), RtpConfig::default());
    let mut receiver_te = receiver.media().clone();
    receiver_te.telephone_event_pt = Some(96);
    receiver.update_media(t0, receiver_te);
    let plan = packets_for_digit(
        Digit::from_char('#').expect("digit"),
        Duration::from_secs(20),
        &SenderConfig::default(),
    );
    for p in &plan {
        let tx = sender
            .send_event_segment(t0 + p.at, p.payload, p.marker, p.timestamp_offset)
            .expect("te negotiated");
        receiver
            .handle_packet(t0 + p.at, addr("10.0.0.5:4000"), &tx.bytes)
            .expect("valid");
    }
    let evs = events(&mut receiver);
    assert_eq!(digits(&evs), "#");
    assert!(evs.contains(&RtpEvent::Digit(DigitEvent::DigitEnd {
        digit: Digit::from_char('#').expect("digit"),
        duration: Duration::from_secs(20),
    })));
}

#[test]
fn nothing_is_sent_when_direction_forbids_it() {
    let t0 = Instant::now();
    let mut m = media(None);
    m.direction = Direction::RecvOnly;
    let mut s = RtpSession::new(t0, m, RtpConfig::default());
    assert!(s.send_audio(t0, &[0; 160], 160).is_none());
}

#[test]
fn media_timeout_fires_once_and_rearms_when_rtp_resumes() {
    let t0 = Instant::now();
    let cfg = RtpConfig {
        media_timeout: Duration::from_secs(10),
        ..cfg()
    };
    let mut s = RtpSession::new(t0, media(None), cfg);
    let a = addr("203.0.113.7:61000");
    s.handle_packet(t0 + Duration::from_secs(1), a, &audio(1))
        .expect("valid");
    events(&mut s);
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(11)));
    s.handle_timeout(t0 + Duration::from_secs(10));
    assert!(events(&mut s).is_empty());
    s.handle_timeout(t0 + Duration::from_secs(11));
    assert_eq!(events(&mut s), vec![RtpEvent::MediaTimeout]);
    assert_eq!(s.poll_timeout(), None, "reported once");
    s.handle_packet(t0 + Duration::from_secs(20), a, &audio(2))
        .expect("valid");
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(30)));
}

#[test]
fn no_media_timeout_while_the_peer_holds_us() {
    let t0 = Instant::now();
    let mut m = media(None);
    m.direction = Direction::SendOnly; // peer sent recvonly/ we only send (e.g. we hold them)
    let s = RtpSession::new(t0, m, RtpConfig::default());
    assert_eq!(s.poll_timeout(), None);
    // RFC 2543 hold (c=0.0.0.0): we would receive, but the holder need not send anything.
    let mut m = media(None);
    m.direction = Direction::RecvOnly;
    m.on_hold = true;
    let mut s = RtpSession::new(t0, m, RtpConfig::default());
    assert_eq!(s.poll_timeout(), None);
    s.update_media(t0, media(None));
    assert_eq!(
        s.poll_timeout(),
        Some(t0 + Duration::from_secs(30)),
        "resumed"
    );
}

#[test]
fn digit_end_timeout_runs_through_the_session() {
    let t0 = Instant::now();
    let mut s = RtpSession::new(t0, media(Some(101)), cfg());
    let a = addr("203.0.113.7:61000");
    let ev = crate::rfc4733::EventPayload {
        event: 0,
        end: false,
        volume: 10,
        duration: 160,
    };
    s.handle_packet(t0, a, &packet(101, PEER_SSRC, 1, 0, true, &ev.to_bytes()))
        .expect("valid");
    let due = s.poll_timeout().expect("digit running");
    assert_eq!(due, t0 + Duration::from_millis(200));
    s.handle_timeout(due);
    assert_eq!(digits(&events(&mut s)), "0");
}

#[test]
fn a_re_invite_with_new_media_opens_a_new_window_and_a_refresh_does_not() {
    let t0 = Instant::now();
    let mut s = RtpSession::new(t0, media(None), cfg());
    let first = addr("203.0.113.7:61000");
    s.handle_packet(t0, first, &audio(1)).expect("valid");
    let t1 = t0 + Duration::from_secs(60);
    // A session refresh repeats the media: the latch stays fixed.
    s.update_media(t1, media(None));
    let rebound = addr("203.0.113.7:62000");
    assert_eq!(
        s.handle_packet(t1, rebound, &audio(2)).expect("valid"),
        Received::Dropped(DropReason::UnlatchedSource)
    );
    // Hold and resume: new media, so the source is learnt again (a NAT may have rebound meanwhile).
    // Until the first packet we keep sending to the old latch, not to the private SDP address.
    let mut held = media(None);
    held.direction = Direction::SendOnly;
    s.update_media(t1, held);
    s.update_media(t1, media(None));
    assert_eq!(s.remote_addr(), Some(first));
    assert_eq!(s.latched(), None);
    assert!(matches!(
        s.handle_packet(t1, rebound, &audio(3)).expect("valid"),
        Received::Audio(_)
    ));
    assert_eq!(s.remote_addr(), Some(rebound));
    // A new address in SDP: we send there until a packet comes, and learn afresh.
    let mut moved = media(None);
    moved.remote_addr = Some(addr("10.9.9.9:5000"));
    let t2 = t1 + Duration::from_secs(60);
    s.update_media(t2, moved);
    assert_eq!(s.remote_addr(), Some(addr("10.9.9.9:5000")));
    assert_eq!(
        s.handle_packet(t2, addr("10.0.0.5:4000"), &audio(4))
            .expect("valid"),
        Received::Dropped(DropReason::UnknownSource),
        "the old SDP address is no longer allowed"
    );
    s.handle_packet(t2, addr("10.9.9.9:5000"), &audio(5))
        .expect("valid");
    assert_eq!(s.remote_addr(), Some(addr("10.9.9.9:5000")));
    assert!(events(&mut s).contains(&RtpEvent::Latched(addr("10.9.9.9:5000"))));
}

proptest! {
    #[test]
    fn arbitrary_datagrams_never_panic(
        datagrams in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..40),
        port in 1u16..4,
    ) {
        let t0 = Instant::now();
        let loopback = RtpConfig { signalling_ip: Some([127, 0, 0, 1].into()), ..RtpConfig::default() };
        let mut s = RtpSession::new(t0, media(Some(101)), loopback);
        for (i, d) in datagrams.iter().enumerate() {
            let now = t0 + Duration::from_millis(i as u64 * 30);
            let _ = s.handle_packet(now, SocketAddr::from(([127, 0, 0, 1], port)), d);
            s.handle_timeout(now);
            while s.poll_event().is_some() {}
        }
    }

    #[test]
    fn rtp_shaped_event_streams_never_panic(
        pkts in proptest::collection::vec((any::<u16>(), any::<u32>(), any::<bool>(), any::<[u8; 4]>(), 0u64..300), 0..60),
    ) {
        let t0 = Instant::now();
        let loopback = RtpConfig { signalling_ip: Some([127, 0, 0, 1].into()), ..RtpConfig::default() };
        let mut s = RtpSession::new(t0, media(Some(101)), loopback);
        let mut now = t0;
        for (seq, ts, m, payload, dt) in pkts {
            now += Duration::from_millis(dt);
            let p = packet(101, PEER_SSRC, seq, ts, m, &payload);
            let _ = s.handle_packet(now, SocketAddr::from(([127, 0, 0, 1], 9)), &p);
            s.handle_timeout(now);
            while s.poll_event().is_some() {}
        }
    }
}

#[test]
fn send_audio_into_a_buffer_writes_the_same_packets_and_a_short_buffer_consumes_nothing() {
    let t0 = Instant::now();
    let cfg = RtpConfig {
        local_ssrc: 0xABCD,
        initial_seq: 7,
        initial_timestamp: 1000,
        ..RtpConfig::default()
    };
    let mut allocating = RtpSession::new(t0, media(None), cfg);
    let mut into = RtpSession::new(t0, media(None), cfg);
    let p = [0xD5; 160];
    let mut small = [0u8; RTP_HEADER_LEN + 100];
    assert_eq!(into.send_audio_into(t0, &p, 160, &mut small), None);
    assert_eq!(into.stats().packets_sent, 0);
    for i in 0..3u64 {
        let now = t0 + Duration::from_millis(20 * i);
        let expected = allocating.send_audio(now, &p, 160).expect("send");
        let mut buf = [0u8; RTP_HEADER_LEN + 160];
        let (to, len) = into.send_audio_into(now, &p, 160, &mut buf).expect("send");
        assert_eq!((to, &buf[..len]), (expected.to, &expected.bytes[..]));
    }
}

#[test]
fn send_event_into_a_buffer_writes_the_same_packets_and_a_short_buffer_consumes_nothing() {
    let t0 = Instant::now();
    let mut allocating = RtpSession::new(t0, media(Some(101)), RtpConfig::default());
    let mut into = RtpSession::new(t0, media(Some(101)), RtpConfig::default());
    let plan = packets_for_digit(
        Digit::from_char('4').expect("digit"),
        Duration::from_millis(100),
        &SenderConfig::default(),
    );
    let mut small = [0u8; RTP_HEADER_LEN + 3];
    assert_eq!(
        into.send_event_segment_into(t0, plan[0].payload, true, 0, &mut small),
        None
    );
    let mut buf = [0u8; RTP_HEADER_LEN + 4];
    for p in &plan {
        let now = t0 + Duration::from_millis(40) + p.at;
        let expected = allocating
            .send_event(now, p.payload, p.marker)
            .expect("te negotiated");
        let (to, len) = into
            .send_event_segment_into(now, p.payload, p.marker, 0, &mut buf)
            .expect("te negotiated");
        assert_eq!((to, &buf[..len]), (expected.to, &expected.bytes[..]));
    }
}

/// A phone holds (`sendonly`, we answer `recvonly`) and resumes, and PJSIP builds a new stream with
/// a new SSRC from the same address at each re-INVITE: after the resume we send to it again at once
/// and take its new stream. The other leg's caller, meanwhile, talks on in ONE stream: its sequence
/// runs on, so nothing of it is lost by the hold.
#[test]
fn hold_and_resume_with_a_new_ssrc_from_the_same_address_sends_and_receives_again() {
    let t0 = Instant::now();
    let phone = addr("10.0.0.5:4000");
    let mut s = RtpSession::new(t0, media(None), cfg());
    s.handle_packet(t0, phone, &audio(1)).expect("valid");
    assert!(s.send_audio(t0, &[0xD5; 160], 160).is_some());

    let mut held = media(None);
    held.direction = Direction::RecvOnly;
    held.on_hold = true;
    let t1 = t0 + Duration::from_millis(500);
    s.update_media(t1, held);
    assert!(
        s.send_audio(t1, &[0xD5; 160], 160).is_none(),
        "nothing to a holder"
    );
    let hold_stream = packet(8, 0x1111, 7, 0, true, &[0xD5; 160]);
    assert!(matches!(
        s.handle_packet(t1, phone, &hold_stream).expect("valid"),
        Received::Audio(_)
    ));

    let t2 = t1 + Duration::from_millis(1500);
    s.update_media(t2, media(None));
    let sent = s
        .send_audio(t2, &[0xD5; 160], 160)
        .expect("sends after resume");
    assert_eq!(sent.to, phone);
    let resumed_stream = packet(8, 0x2222, 9000, 0, true, &[0xD5; 160]);
    assert!(matches!(
        s.handle_packet(t2, phone, &resumed_stream).expect("valid"),
        Received::Audio(_)
    ));
    assert!(events(&mut s).contains(&RtpEvent::SsrcChanged {
        old: 0x1111,
        new: 0x2222
    }));
    assert_eq!(
        s.send_audio(t2, &[0xD5; 160], 160).map(|t| t.to),
        Some(phone)
    );
}

/// What the reported "caller's audio stops after hold/resume" was: a test caller that starts each
/// talk again at sequence 0 under the SAME SSRC. RFC 3550 A.1 reads packets less than
/// MAX_MISORDER behind the highest as reordered, and numbers seen before as duplicates: all
/// dropped, whatever the other leg did. A sender that restarts must take a new SSRC (RFC 3550
/// §8.2); then its new stream is heard from its first packet.
#[test]
fn a_sender_restarting_its_sequence_under_the_same_ssrc_is_duplicates_a_new_ssrc_is_heard() {
    let t0 = Instant::now();
    let caller = addr("10.0.0.5:4000");
    let mut s = RtpSession::new(t0, media(None), cfg());
    // 2 s of talk: sequence 0..=99.
    for seq in 0..100 {
        s.handle_packet(t0, caller, &audio(seq)).expect("valid");
    }
    // The same SSRC from 0 again: every packet of the next 2 s is a duplicate.
    let t1 = t0 + Duration::from_secs(4);
    for seq in 0..100 {
        assert_eq!(
            s.handle_packet(t1, caller, &audio(seq)).expect("valid"),
            Received::Dropped(DropReason::Duplicate),
            "seq {seq}"
        );
    }
    // A new SSRC from 0: a new stream, heard at once.
    for seq in 0..100 {
        let p = packet(
            8,
            PEER_SSRC + 1,
            seq,
            u32::from(seq) * 160,
            false,
            &[0xD5; 160],
        );
        assert!(
            matches!(
                s.handle_packet(t1, caller, &p).expect("valid"),
                Received::Audio(_)
            ),
            "seq {seq}"
        );
    }
}
