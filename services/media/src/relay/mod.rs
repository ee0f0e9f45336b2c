//! The relay core: sans-IO (ADR 0001). It owns the forwarding decision for every datagram,
//! symmetric-RTP latching, per-leg counters, idle detection and port allocation; it never
//! touches a socket or reads a clock (`now` is an argument), so its tests run on a virtual
//! clock without a runtime.
//!
//! A [`Session`] joins two legs, A (the caller's side) and B (the callee's side). Each leg has
//! a local RTP port (even) and RTCP port (RTP + 1) on the relay; what arrives on leg A's ports
//! leaves from leg B's matching port towards B's remote, and the other way round.
//!
//! RFC 4733 telephone-events (DTMF) are ordinary RTP packets with their own payload type:
//! the relay forwards them unchanged like any other RTP (it never looks past the fixed
//! header), so the end-to-end sequence numbers, timestamps and redundant end packets survive.

mod ports;
mod rtcp;
mod rtp;
mod session;

pub use ports::{PortAllocator, PortPair, PortRangeError, PortsExhausted};
pub use rtcp::{ReceptionReport, reception_reports};
pub use rtp::{PacketKind, RTP_HEADER_LEN, RtpHeader, check_rtcp, check_rtp};
pub use session::{
    DropReason, Forward, Leg, LegCounters, LegOptions, LegPorts, Session, SessionConfig, SessionId,
    Verdict,
};
