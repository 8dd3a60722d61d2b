//! Tests of SDP negotiation against `fixtures/sdp/` (see its README for where each sample came from).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use proptest::prelude::*;

use super::*;

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fixtures/sdp/",
            $name
        ))
        .as_slice()
    };
}

fn local() -> LocalMedia {
    LocalMedia {
        addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 99)),
        rtp_port: 40000,
    }
}

fn answer(offer: &[u8]) -> Answer {
    LocalSdp::new(7, MediaPreferences::default())
        .answer(offer, local())
        .expect("fixture offer must be answerable")
}

fn text(a: &Answer) -> String {
    String::from_utf8(a.body.clone()).expect("we write ASCII")
}

fn addr(s: &str) -> Option<SocketAddr> {
    Some(s.parse().expect("test address"))
}

#[test]
fn asterisk_offer_gets_pcma_and_its_telephone_event_pt() {
    let a = answer(fixture!("asterisk_offer_pcma_pcmu_te101.sdp"));
    assert_eq!(
        a.media,
        MediaSession {
            remote_addr: addr("192.0.2.10:10000"),
            codec: Codec::Pcma { pt: 8 },
            telephone_event_pt: Some(101),
            ptime_ms: 20,
            direction: Direction::SendRecv,
            on_hold: false,
            srtp: None,
        }
    );
    let t = text(&a);
    assert!(t.contains("m=audio 40000 RTP/AVP 8 101\r\n"), "{t}");
    assert!(t.contains("a=rtpmap:8 PCMA/8000\r\n"), "{t}");
    assert!(t.contains("a=rtpmap:101 telephone-event/8000\r\n"), "{t}");
    assert!(t.contains("a=fmtp:101 0-16\r\n"), "{t}");
    assert!(t.contains("a=ptime:20\r\n"), "{t}");
    assert!(t.contains("a=sendrecv\r\n"), "{t}");
    assert!(t.contains("c=IN IP4 192.0.2.99\r\n"), "{t}");
    assert!(
        t.starts_with("v=0\r\no=- 7 1 IN IP4 192.0.2.99\r\ns=-\r\n"),
        "{t}"
    );
}

#[test]
fn freeswitch_offer_listing_pcmu_first_still_gets_our_pcma() {
    let a = answer(fixture!("freeswitch_offer_pcmu_first_cn.sdp"));
    assert_eq!(a.media.codec, Codec::Pcma { pt: 8 });
    assert_eq!(a.media.telephone_event_pt, Some(101));
    assert_eq!(a.media.remote_addr, addr("198.51.100.5:24618"));
    // Comfort noise (13) and G.722 are not echoed: exactly one codec plus telephone-event.
    assert!(text(&a).contains("m=audio 40000 RTP/AVP 8 101\r\n"));
}

#[test]
fn kpn_style_trunk_without_rtpmap_for_static_types_is_understood() {
    let a = answer(fixture!("kpn_trunk_offer_static_pts_no_rtpmap.sdp"));
    assert_eq!(a.media.codec, Codec::Pcma { pt: 8 });
    assert_eq!(a.media.telephone_event_pt, Some(101));
    assert_eq!(a.media.ptime_ms, 20);
    assert_eq!(a.media.remote_addr, addr("203.0.113.20:40012"));
    assert!(text(&a).contains("a=rtpmap:8 PCMA/8000\r\n"));
}

#[test]
fn vodafone_style_ipv6_offer_with_te96_and_ptime30() {
    let a = answer(fixture!("vodafone_trunk_offer_ipv6_te96.sdp"));
    assert_eq!(
        a.media.remote_addr,
        Some(SocketAddr::new(
            IpAddr::V6("2001:db8:0:1::20".parse::<Ipv6Addr>().expect("v6")),
            30262
        ))
    );
    assert_eq!(a.media.telephone_event_pt, Some(96));
    assert_eq!(a.media.ptime_ms, 30);
    let t = text(&a);
    assert!(t.contains("m=audio 40000 RTP/AVP 8 96\r\n"), "{t}");
    assert!(t.contains("a=fmtp:96 0-16\r\n"), "{t}");
    assert!(t.contains("a=ptime:30\r\n"), "{t}");
}

#[test]
fn cisco_cube_media_level_connection_overrides_session_level() {
    let a = answer(fixture!("cisco_cube_offer_pcmu_cn.sdp"));
    assert_eq!(a.media.codec, Codec::Pcmu { pt: 0 });
    assert_eq!(a.media.remote_addr, addr("10.20.30.41:16384"));
    assert_eq!(a.media.telephone_event_pt, Some(101));
    assert!(text(&a).contains("m=audio 40000 RTP/AVP 0 101\r\n"));
}

#[test]
fn baresip_offer_with_opus_first_gets_pcma() {
    let a = answer(fixture!("baresip_offer_opus_first_te101.sdp"));
    assert_eq!(a.media.codec, Codec::Pcma { pt: 8 });
    assert_eq!(a.media.telephone_event_pt, Some(101));
    assert_eq!(a.media.remote_addr, addr("192.168.1.50:10010"));
}

#[test]
fn linphone_video_is_rejected_in_place_and_8khz_telephone_event_chosen() {
    let a = answer(fixture!("linphone_offer_audio_video_multi_te.sdp"));
    assert_eq!(a.media.codec, Codec::Pcma { pt: 8 });
    assert_eq!(
        a.media.telephone_event_pt,
        Some(101),
        "not 99 (48k) or 100 (16k)"
    );
    let t = text(&a);
    let audio = t
        .find("m=audio 40000 RTP/AVP 8 101\r\n")
        .expect("audio line");
    let video = t
        .find("m=video 0 RTP/AVP 96 97\r\n")
        .expect("rejected video line");
    assert!(audio < video, "m-line order kept: {t}");
}

#[test]
fn sipp_default_pcmu_only_offer_gets_pcmu_without_telephone_event() {
    let a = answer(fixture!("sipp_default_uac_pcmu_only_lf.sdp"));
    assert_eq!(a.media.codec, Codec::Pcmu { pt: 0 });
    assert_eq!(a.media.telephone_event_pt, None);
    assert_eq!(a.media.remote_addr, addr("127.0.0.1:6000"));
    let t = text(&a);
    assert!(t.contains("m=audio 40000 RTP/AVP 0\r\n"), "{t}");
    assert!(!t.contains("telephone-event"), "{t}");
}

#[test]
fn sipp_pcap_offer_gets_pcma_and_te101() {
    let a = answer(fixture!("sipp_uac_pcap_offer_pcma_te101.sdp"));
    assert_eq!(a.media.codec, Codec::Pcma { pt: 8 });
    assert_eq!(a.media.telephone_event_pt, Some(101));
}

#[test]
fn rfc2543_hold_with_zero_connection_is_hold_without_remote_address() {
    let a = answer(fixture!("hold_rfc2543_c_zero.sdp"));
    assert!(a.media.on_hold);
    assert_eq!(a.media.remote_addr, None);
    assert_eq!(a.media.direction, Direction::RecvOnly);
    assert!(text(&a).contains("a=recvonly\r\n"));
}

#[test]
fn sendonly_reinvite_is_hold_answered_recvonly() {
    let a = answer(fixture!("hold_sendonly_reinvite.sdp"));
    assert!(a.media.on_hold);
    assert_eq!(a.media.direction, Direction::RecvOnly);
    assert_eq!(a.media.remote_addr, addr("192.0.2.10:10000"));
    assert!(text(&a).contains("a=recvonly\r\n"));
}

#[test]
fn inactive_offer_is_answered_inactive_with_te126() {
    let a = answer(fixture!("inactive_te126.sdp"));
    assert!(a.media.on_hold);
    assert_eq!(a.media.direction, Direction::Inactive);
    assert_eq!(a.media.telephone_event_pt, Some(126));
    assert!(text(&a).contains("a=inactive\r\n"));
}

#[test]
fn recvonly_offer_is_answered_sendonly_and_is_not_hold() {
    let a = answer(fixture!("recvonly_offer.sdp"));
    assert!(!a.media.on_hold);
    assert_eq!(a.media.direction, Direction::SendOnly);
    assert_eq!(a.media.codec, Codec::Pcma { pt: 8 });
    assert!(text(&a).contains("a=sendonly\r\n"));
}

#[test]
fn g729_only_offer_is_no_common_codec_488() {
    let err = LocalSdp::new(1, MediaPreferences::default())
        .answer(fixture!("g729_only_offer_no_common_codec.sdp"), local())
        .expect_err("no PCMA/PCMU offered");
    assert_eq!(err, SdpError::NoCommonCodec);
    assert_eq!(err.sip_status(), 488);
}

#[test]
fn quirky_offer_without_s_line_lf_trailing_whitespace_video_first() {
    let a = answer(fixture!("quirky_no_s_lf_trailing_ws_video_first_lf.sdp"));
    assert_eq!(a.media.codec, Codec::Pcma { pt: 8 });
    assert_eq!(a.media.telephone_event_pt, Some(101));
    assert_eq!(a.media.remote_addr, addr("203.0.113.41:12000"));
    let t = text(&a);
    let video = t
        .find("m=video 0 RTP/AVP 31\r\n")
        .expect("video kept, rejected");
    let audio = t.find("m=audio 40000 RTP/AVP 8 101\r\n").expect("audio");
    assert!(video < audio, "{t}");
}

#[test]
fn agent_answer_to_our_offer_is_read() {
    let mut ours = LocalSdp::new(9, MediaPreferences::default());
    let _offer = ours.offer(local(), Direction::SendRecv);
    let media = ours
        .handle_answer(fixture!("agent_answer_baresip_pcma_te101.sdp"))
        .expect("valid answer");
    assert_eq!(
        media,
        MediaSession {
            remote_addr: addr("127.0.0.1:10030"),
            codec: Codec::Pcma { pt: 8 },
            telephone_event_pt: Some(101),
            ptime_ms: 20,
            direction: Direction::SendRecv,
            on_hold: false,
            srtp: None,
        }
    );
}

#[test]
fn every_fixture_parses_and_every_offer_fixture_is_answered() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/sdp");
    let mut count = 0;
    for entry in std::fs::read_dir(dir).expect("fixtures/sdp exists") {
        let path = entry.expect("dir entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("sdp") {
            continue;
        }
        let body = std::fs::read(&path).expect("readable");
        parse(&body).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let result = LocalSdp::new(1, MediaPreferences::default()).answer(&body, local());
        if name.contains("no_common_codec") {
            assert!(result.is_err(), "{name}");
        } else {
            let a = result.unwrap_or_else(|e| panic!("{name}: {e}"));
            // Our answer is itself valid SDP that reads back to the same codec.
            let back = describe(&a.body, &MediaPreferences::default()).expect("answer parses");
            assert_eq!(back.codec, a.media.codec, "{name}");
            assert_eq!(
                back.telephone_event_pt, a.media.telephone_event_pt,
                "{name}"
            );
        }
        count += 1;
    }
    assert!(count >= 15, "expected the whole fixture set, found {count}");
}

#[test]
fn our_offer_lists_pcma_pcmu_te101_ptime20() {
    let mut ours = LocalSdp::new(42, MediaPreferences::default());
    let body = String::from_utf8(ours.offer(local(), Direction::SendRecv)).expect("ascii");
    assert!(body.contains("o=- 42 1 IN IP4 192.0.2.99\r\n"), "{body}");
    assert!(body.contains("m=audio 40000 RTP/AVP 8 0 101\r\n"), "{body}");
    assert!(body.contains("a=rtpmap:0 PCMU/8000\r\n"), "{body}");
    assert!(body.contains("a=fmtp:101 0-16\r\n"), "{body}");
    assert!(body.contains("a=ptime:20\r\n"), "{body}");
    assert!(body.contains("a=sendrecv\r\n"), "{body}");
}

#[test]
fn offer_for_another_endpoint_points_at_it_and_keeps_our_origin() {
    let mut ours = LocalSdp::new(42, MediaPreferences::default());
    ours.answer(fixture!("sipp_uac_pcap_offer_pcma_te101.sdp"), local())
        .expect("answerable");
    let agent = LocalMedia {
        addr: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)),
        rtp_port: 31000,
    };
    let prefs = MediaPreferences {
        codecs: vec![CodecKind::Pcmu],
        telephone_event_pt: 96,
        ..MediaPreferences::default()
    };
    let body = String::from_utf8(ours.offer_for(local(), agent, Direction::SendRecv, &prefs))
        .expect("ascii");
    assert!(body.contains("o=- 42 2 IN IP4 192.0.2.99\r\n"), "{body}");
    assert!(body.contains("c=IN IP4 198.51.100.7\r\n"), "{body}");
    assert!(body.contains("m=audio 31000 RTP/AVP 0 96\r\n"), "{body}");
    assert!(!body.contains("PCMA"), "only the agent's codec: {body}");
    // The peer's answer is read as usual.
    let answer = b"v=0\r\no=t 1 2 IN IP4 203.0.113.5\r\ns=-\r\nc=IN IP4 203.0.113.5\r\nt=0 0\r\n\
        m=audio 6000 RTP/AVP 0 96\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:96 telephone-event/8000\r\n";
    let media = ours.handle_answer(answer).expect("answer");
    assert_eq!(media.remote_addr, addr("203.0.113.5:6000"));
    assert_eq!(media.codec.kind(), CodecKind::Pcmu);
    assert_eq!(media.telephone_event_pt, Some(96));
}

#[test]
fn origin_version_increments_only_when_our_sdp_changes() {
    let mut ours = LocalSdp::new(42, MediaPreferences::default());
    ours.offer(local(), Direction::SendRecv);
    assert_eq!(ours.version(), 1);
    ours.offer(local(), Direction::SendRecv);
    assert_eq!(ours.version(), 1, "unchanged re-offer keeps the version");
    let hold = String::from_utf8(ours.offer(local(), Direction::SendOnly)).expect("ascii");
    assert_eq!(ours.version(), 2);
    assert!(hold.contains("o=- 42 2 IN IP4"), "{hold}");
    assert!(hold.contains("a=sendonly\r\n"), "{hold}");
    ours.offer(local(), Direction::SendRecv);
    assert_eq!(ours.version(), 3);
}

#[test]
fn answer_to_our_hold_offer_keeps_us_sendonly() {
    let mut ours = LocalSdp::new(1, MediaPreferences::default());
    ours.offer(local(), Direction::SendOnly);
    let their = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 5000 RTP/AVP 0\r\na=recvonly\r\n";
    let media = ours.handle_answer(their).expect("answer");
    assert_eq!(media.direction, Direction::SendOnly);
    assert_eq!(media.codec, Codec::Pcmu { pt: 0 });
    assert_eq!(media.telephone_event_pt, None);
}

#[test]
fn rejected_answer_is_an_error() {
    let ours = LocalSdp::new(1, MediaPreferences::default());
    let their = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 0 RTP/AVP 8\r\n";
    assert_eq!(ours.handle_answer(their), Err(SdpError::AudioRejected));
}

#[test]
fn garbage_body_is_400_and_srtp_only_is_488() {
    let mut ours = LocalSdp::new(1, MediaPreferences::default());
    let err = ours.answer(b"hello", local()).expect_err("not sdp");
    assert_eq!(err.sip_status(), 400);
    let srtp = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 5000 RTP/SAVP 8\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:abc\r\n";
    assert_eq!(ours.answer(srtp, local()), Err(SdpError::NoAudio));
    assert_eq!(
        ours.version(),
        1,
        "failed negotiations do not touch our origin"
    );
}

#[test]
fn ipv6_local_address_is_written_as_ip6() {
    let mut ours = LocalSdp::new(1, MediaPreferences::default());
    let v6 = LocalMedia {
        addr: IpAddr::V6(Ipv6Addr::LOCALHOST),
        rtp_port: 4000,
    };
    let body = String::from_utf8(ours.offer(v6, Direction::SendRecv)).expect("ascii");
    assert!(body.contains("c=IN IP6 ::1\r\n"), "{body}");
}

#[test]
fn direction_mapping_follows_rfc3264() {
    assert_eq!(Direction::SendRecv.reverse(), Direction::SendRecv);
    assert_eq!(Direction::SendOnly.reverse(), Direction::RecvOnly);
    assert_eq!(Direction::RecvOnly.reverse(), Direction::SendOnly);
    assert_eq!(Direction::Inactive.reverse(), Direction::Inactive);
    assert_eq!(
        Direction::SendRecv.intersect(Direction::SendOnly),
        Direction::SendOnly
    );
    assert_eq!(
        Direction::RecvOnly.intersect(Direction::SendOnly),
        Direction::Inactive
    );
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_the_sdp_parser(body in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut ours = LocalSdp::new(1, MediaPreferences::default());
        let _ = ours.answer(&body, local());
        let _ = ours.handle_answer(&body);
    }

    #[test]
    fn sdp_shaped_lines_never_panic(lines in proptest::collection::vec(
        prop_oneof![
            Just("v=0".to_string()),
            Just("o=- 1 1 IN IP4 1.2.3.4".to_string()),
            Just("s=-".to_string()),
            Just("t=0 0".to_string()),
            "c=IN IP[46] [0-9a-f.:/]{0,20}",
            "m=(audio|video) [0-9]{1,6} RTP/AVPF? [0-9 ]{0,12}",
            "a=(rtpmap|fmtp|ptime|sendonly|inactive):[0-9a-zA-Z/ -]{0,20}",
            "b=AS:[0-9]{0,4}",
        ],
        0..14,
    ), crlf in any::<bool>()) {
        let sep = if crlf { "\r\n" } else { "\n" };
        let body = lines.join(sep);
        let mut ours = LocalSdp::new(1, MediaPreferences::default());
        if let Ok(a) = ours.answer(body.as_bytes(), local()) {
            // Whatever we accept, we answer with valid SDP.
            prop_assert!(parse(&a.body).is_ok());
        }
    }
}

// ---- SRTP (RFC 4568 SDES) ----

fn key(fill: u8) -> SrtpKey {
    SrtpKey::from_bytes([fill; crypto::MASTER_LEN])
}

fn secure_leg(fill: u8) -> LocalSdp {
    LocalSdp::new(9, MediaPreferences::default()).with_srtp(key(fill))
}

/// A phone's answer to our secure offer: `RTP/SAVP`, one crypto line with `tag` and `suite`.
fn phone_answer(proto: &str, crypto: Option<(u32, &str)>, phone_key: &SrtpKey) -> Vec<u8> {
    let mut sdp = format!(
        "v=0\r\no=phone 1 1 IN IP4 192.0.2.50\r\ns=-\r\nc=IN IP4 192.0.2.50\r\nt=0 0\r\n\
         m=audio 4000 {proto} 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
         a=sendrecv\r\n"
    );
    if let Some((tag, suite)) = crypto {
        let line = crypto::CryptoAttribute {
            tag,
            suite: SrtpSuite::parse(suite).expect("suite"),
            key: phone_key.clone(),
        };
        sdp.push_str(&format!("a=crypto:{}\r\n", line.value()));
    }
    sdp.into_bytes()
}

#[test]
fn a_secure_leg_offers_savp_with_both_suites_under_our_key() {
    let mut leg = secure_leg(1);
    let offer = String::from_utf8(leg.offer(local(), Direction::SendRecv)).expect("ASCII");
    assert!(
        offer.contains("m=audio 40000 RTP/SAVP 8 0 101\r\n"),
        "{offer}"
    );
    let lines: Vec<_> = offer
        .lines()
        .filter_map(|l| l.strip_prefix("a=crypto:"))
        .map(|v| crypto::CryptoAttribute::parse(v).expect("our own line parses"))
        .collect();
    assert_eq!(lines.len(), 2, "{offer}");
    assert_eq!(
        (lines[0].tag, lines[0].suite),
        (1, SrtpSuite::AesCm128HmacSha1_80)
    );
    assert_eq!(
        (lines[1].tag, lines[1].suite),
        (2, SrtpSuite::AesCm128HmacSha1_32)
    );
    assert!(lines.iter().all(|l| l.key == key(1)));
    // A plain leg still offers plain RTP, without keys.
    let plain = String::from_utf8(
        LocalSdp::new(9, MediaPreferences::default()).offer(local(), Direction::SendRecv),
    )
    .expect("ASCII");
    assert!(
        plain.contains("RTP/AVP ") && !plain.contains("crypto"),
        "{plain}"
    );
}

#[test]
fn the_phones_answer_gives_the_suite_and_its_key() {
    let mut leg = secure_leg(1);
    leg.offer(local(), Direction::SendRecv);
    let media = leg
        .handle_answer(&phone_answer(
            "RTP/SAVP",
            Some((2, "AES_CM_128_HMAC_SHA1_32")),
            &key(7),
        ))
        .expect("a good answer");
    let srtp = media.srtp.expect("the leg is SRTP");
    assert_eq!(srtp.suite, SrtpSuite::AesCm128HmacSha1_32);
    assert_eq!(srtp.ours, key(1));
    assert_eq!(srtp.theirs, key(7));
    assert_eq!(media.codec, Codec::Pcmu { pt: 0 });
}

#[test]
fn a_plain_or_mismatched_answer_to_a_secure_offer_is_refused() {
    let mut leg = secure_leg(1);
    leg.offer(local(), Direction::SendRecv);
    for (proto, crypto) in [
        ("RTP/AVP", None),
        ("RTP/AVP", Some((1, "AES_CM_128_HMAC_SHA1_80"))),
        ("RTP/SAVP", None),
        // A tag we never offered for that suite.
        ("RTP/SAVP", Some((2, "AES_CM_128_HMAC_SHA1_80"))),
    ] {
        assert_eq!(
            leg.handle_answer(&phone_answer(proto, crypto, &key(7))),
            Err(SdpError::NoCommonCrypto),
            "{proto} {crypto:?}"
        );
    }
}

#[test]
fn a_secure_leg_answers_a_phones_savp_reoffer_with_its_tag_and_our_key() {
    let mut leg = secure_leg(1);
    let offer = phone_answer("RTP/SAVP", Some((5, "AES_CM_128_HMAC_SHA1_80")), &key(9));
    let answer = leg.answer(&offer, local()).expect("answerable");
    let srtp = answer.media.srtp.clone().expect("SRTP");
    assert_eq!(srtp.theirs, key(9));
    assert_eq!(srtp.suite, SrtpSuite::AesCm128HmacSha1_80);
    let body = String::from_utf8(answer.body).expect("ASCII");
    assert!(body.contains("m=audio 40000 RTP/SAVP 0 101\r\n"), "{body}");
    let line = body
        .lines()
        .find_map(|l| l.strip_prefix("a=crypto:"))
        .and_then(crypto::CryptoAttribute::parse)
        .expect("one crypto line");
    assert_eq!(
        (line.tag, line.suite, line.key),
        (5, SrtpSuite::AesCm128HmacSha1_80, key(1))
    );
    // A plain re-offer on a secure leg is refused: the leg does not silently drop to clear RTP.
    let plain = phone_answer("RTP/AVP", None, &key(9));
    assert_eq!(
        leg.answer(&plain, local()).map(|a| a.media),
        Err(SdpError::NoCommonCrypto)
    );
    assert_eq!(SdpError::NoCommonCrypto.sip_status(), 488);
}

#[test]
fn a_plain_leg_still_refuses_savp_offers() {
    let mut leg = LocalSdp::new(9, MediaPreferences::default());
    let offer = phone_answer("RTP/SAVP", Some((1, "AES_CM_128_HMAC_SHA1_80")), &key(9));
    assert_eq!(
        leg.answer(&offer, local()).map(|a| a.media),
        Err(SdpError::NoAudio)
    );
}
