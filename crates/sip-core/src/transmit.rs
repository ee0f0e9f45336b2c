//! What the core asks its I/O layer to send.

use std::net::SocketAddr;

use bytes::Bytes;
use sip_msg::Transport;

/// One message to put on the wire. For reliable transports the I/O layer sends over the
/// connection it holds to `destination` (or opens one); for UDP it sends one datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub transport: Transport,
    pub destination: SocketAddr,
    pub contents: Bytes,
}
