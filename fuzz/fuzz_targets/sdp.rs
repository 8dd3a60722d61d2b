//! Fuzz target: arbitrary bytes as a remote SDP offer and as an answer to our offer
//! (`sip::sdp`). Must never panic; whatever is accepted must be answered with SDP that parses.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use libfuzzer_sys::fuzz_target;
use sip::sdp::{parse, Direction, LocalMedia, LocalSdp, MediaPreferences};

fuzz_target!(|data: &[u8]| {
    let local = LocalMedia {
        addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
        rtp_port: 40000,
    };
    let mut ours = LocalSdp::new(1, MediaPreferences::default());
    if let Ok(answer) = ours.answer(data, local) {
        assert!(parse(&answer.body).is_ok(), "our answer must be valid SDP");
    }
    ours.offer(local, Direction::SendRecv);
    let _ = ours.handle_answer(data);
});
