//! `StreamFramer` on arbitrary bytes cut into reads whose size the first byte picks: no
//! panic, bounded buffering, and the same checks as `parse_datagram` on every frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sip_msg::{Frame, StreamFramer};

mod common;

fuzz_target!(|data: &[u8]| {
    let Some((&first, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(first).max(1);
    let mut framer = StreamFramer::new();
    for piece in stream.chunks(chunk) {
        framer.push(piece);
        while let Some(frame) = framer.next() {
            match frame {
                Ok(Frame::Message(msg)) => common::check_parsed(&msg),
                Ok(Frame::Invalid(e)) => common::check_failed(&e),
                Ok(Frame::Ping | Frame::Pong) | Err(_) => {}
            }
        }
        assert!(framer.buffered() <= framer.buffer_limit());
    }
});
