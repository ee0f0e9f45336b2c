//! UDP listeners: one receive loop per socket.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use sip_msg::Transport;
use tokio::net::UdpSocket;

use super::{Received, Transports};

/// Largest datagram read (the IPv4 maximum; SIP over UDP stays far below).
const MAX_DATAGRAM: usize = 65_535;

/// Receive buffer asked for (the kernel caps it at net.core.rmem_max).
const RECEIVE_BUFFER: usize = 4 * 1024 * 1024;

/// Binds a UDP socket with a large receive buffer: a burst of registrations (6,000 phones
/// after a power cut) must queue in the kernel, not be dropped, while the engine catches up.
pub(super) fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    // Best effort: a smaller buffer only means earlier drops under a burst.
    let _ = socket.set_recv_buffer_size(RECEIVE_BUFFER);
    let _ = socket.set_send_buffer_size(RECEIVE_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

pub(super) async fn receive_loop(
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    index: usize,
    transports: Transports,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (len, source) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            // ICMP errors surface as receive errors on some systems; the socket stays usable.
            Err(e) => {
                tracing::debug!(%local, error = %e, "udp receive error");
                continue;
            }
        };
        // A lone CRLF (or CRLFCRLF) is a NAT keep-alive (RFC 5626 §3.5.1 allows STUN on UDP;
        // phones commonly send CRLF): it only had to reach us.
        let data = &buf[..len];
        if data.iter().all(|b| *b == b'\r' || *b == b'\n' || *b == 0) {
            continue;
        }
        transports.remember_udp_peer(source, index);
        let received = Received {
            transport: Transport::Udp,
            source,
            local,
            data: Bytes::copy_from_slice(data),
            received_at: crate::clock::monotonic(),
        };
        if transports.events.received(received).await.is_err() {
            return;
        }
    }
}
