//! `parse_datagram` on arbitrary bytes: no panic, and round-trip of whatever parses.
#![no_main]

use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    match sip_msg::parse_datagram(data) {
        Ok(msg) => common::check_parsed(&msg),
        Err(e) => common::check_failed(&e),
    }
});
