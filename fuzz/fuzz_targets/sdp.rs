//! Fuzz target: arbitrary bytes as a remote SDP offer and as an answer to our offer
//! (`sip::sdp`), on a plain leg and on an SRTP leg (RFC 4568 `a=crypto` lines from a hostile
//! phone). Must never panic; whatever is accepted must be answered with SDP that parses, and a
//! secure leg never agrees to media without keys.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use libfuzzer_sys::fuzz_target;
use sip::sdp::crypto::CryptoAttribute;
use sip::sdp::{parse, Direction, LocalMedia, LocalSdp, MediaPreferences, SrtpKey};

fuzz_target!(|data: &[u8]| {
    let local = LocalMedia {
        addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
        rtp_port: 40000,
    };
    let mut ours = LocalSdp::new(1, MediaPreferences::default());
    if let Ok(answer) = ours.answer(data, local) {
        assert!(parse(&answer.body).is_ok(), "our answer must be valid SDP");
        assert!(answer.media.srtp.is_none());
    }
    ours.offer(local, Direction::SendRecv);
    let _ = ours.handle_answer(data);

    let mut secure =
        LocalSdp::new(2, MediaPreferences::default()).with_srtp(SrtpKey::from_bytes([7; 30]));
    if let Ok(answer) = secure.answer(data, local) {
        assert!(parse(&answer.body).is_ok(), "our answer must be valid SDP");
        assert!(
            answer.media.srtp.is_some(),
            "a secure leg agreed to plain RTP"
        );
    }
    secure.offer(local, Direction::SendRecv);
    if let Ok(media) = secure.handle_answer(data) {
        assert!(media.srtp.is_some(), "a secure leg accepted a plain answer");
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = CryptoAttribute::parse(text);
    }
});
