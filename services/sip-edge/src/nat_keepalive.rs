//! Keeps NAT pinholes open towards phones registered over UDP from behind NAT (the address
//! the edge saw differs from the one in their Contact): every interval the edge that holds the
//! binding sends each of them a CRLFCRLF keep-alive (RFC 5626 §3.5.1's ping; phones ignore it).
//! Without it a home router forgets the mapping after 30–120 s of silence and incoming calls
//! stop reaching a teleworker between two registrations. Phones on TCP/TLS keep their own
//! connection alive (their pings get our pongs); phones outside NAT need nothing.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use sip_core::Transmit;
use sip_msg::{Host, Transport};

use crate::clock;
use crate::location::{LocationService, StoredBinding};
use crate::transport::Transports;

const PING: &[u8] = b"\r\n\r\n";

/// Whether this edge should ping the binding: UDP, held by this edge, seen at another address
/// than its Contact names.
pub fn needs_ping(binding: &StoredBinding, edge_id: &str) -> bool {
    if binding.flow.edge_id != edge_id
        || binding.flow.transport != proto::v1::SipTransport::Udp as i32
    {
        return false;
    }
    let contact = &binding.binding.contact;
    let port = contact.port.unwrap_or(5060);
    let contact_addr = match &contact.host {
        Host::Ipv4(ip) => Some(SocketAddr::from((*ip, port))),
        Host::Ipv6(ip) => Some(SocketAddr::from((*ip, port))),
        Host::Domain(_) => None,
    };
    contact_addr != Some(binding.binding.received)
}

/// Runs until the transports stop: pings every NATed UDP binding of this edge each `interval`.
pub async fn run(
    location: LocationService,
    transports: Transports,
    edge_id: String,
    interval: Duration,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let targets = location.select(clock::unix_secs(), |b| needs_ping(b, &edge_id));
        for binding in &targets {
            transports.send(Transmit {
                transport: Transport::Udp,
                destination: binding.binding.received,
                contents: Bytes::from_static(PING),
            });
        }
        if !targets.is_empty() {
            tracing::debug!(pinged = targets.len(), "NAT keep-alives sent");
        }
    }
}
