//! calanque's SDP layer (RFC 8866, formerly RFC 4566): parse a message body into a
//! [`SessionDescription`], print it back (CRLF, the RFC's line order, round-trip exact), read
//! the attributes a PBX needs (rtpmap, fmtp, direction, ptime, rtcp, telephone-event), answer
//! an offer (RFC 3264 §6), and the rewrites a B2BUA and media relay make (anchoring at the
//! relay, hold and resume, the `o=` version).
//!
//! Sans-IO like `sip-msg`: no sockets, clocks or async; any byte string gives a value or an
//! error naming the line and field, never a panic.

#![forbid(unsafe_code)]

pub mod model;
pub mod negotiate;
pub mod parse;
mod print;
pub mod rewrite;

pub use model::{
    Attribute, Bandwidth, Connection, Direction, MediaDescription, Origin, Rtcp, RtpMap,
    SessionDescription, Timing, static_payload_type,
};
pub use negotiate::{Codec, LocalCapabilities, MediaCapability, NegotiationError, answer};
pub use parse::{ParseError, ParseErrorKind, Rejection, parse};
pub use rewrite::{RewriteError, bump_version, hold, is_hold, resume, with_connection};

impl std::str::FromStr for SessionDescription {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<SessionDescription, ParseError> {
        parse(s.as_bytes())
    }
}
