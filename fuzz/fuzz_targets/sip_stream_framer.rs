//! Fuzz target: bytes pushed into `sip::message::StreamFramer` in chunks whose sizes come from
//! the input; every popped frame is parsed. Must never panic, never return more bytes than were
//! pushed, and every message frame must end exactly at its Content-Length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sip::message::framer::Frame;
use sip::message::{Message, StreamFramer};

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk % 64) + 1;
    let mut f = StreamFramer::with_limits(4096, 4096);
    let mut out = 0usize;
    for piece in rest.chunks(chunk) {
        f.push(piece);
        loop {
            match f.pop() {
                Ok(Some(Frame::Message(m))) => {
                    out += m.len();
                    let _ = Message::parse(m);
                }
                Ok(Some(Frame::KeepAlive)) => out += 4,
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    assert!(out + f.buffered() <= rest.len());
});
