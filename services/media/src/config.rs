//! The media service's settings.

use std::net::{IpAddr, Ipv4Addr};

use crate::relay::SessionConfig;

/// Settings of one media relay instance.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// Where the relay's sockets are bound.
    pub bind_ip: IpAddr,
    /// The address written into SDP, when phones reach the relay through a public address
    /// other than `bind_ip` (a Kubernetes node's external IP); `None` advertises `bind_ip`.
    pub advertised_ip: Option<IpAddr>,
    /// First port of the RTP/RTCP range (inclusive).
    pub port_first: u16,
    /// Last port of the range (inclusive).
    pub port_last: u16,
    /// Idle timeout and re-latching.
    pub session: SessionConfig,
    /// Receive and send buffer asked for per socket.
    pub socket_buffer: usize,
    /// Where the relay's metrics go (`docs/metrics.md`, media rows); none in most tests.
    pub metrics: Option<telemetry::MediaMetrics>,
}

impl MediaConfig {
    pub fn advertised_ip(&self) -> IpAddr {
        self.advertised_ip.unwrap_or(self.bind_ip)
    }
}

impl Default for MediaConfig {
    /// Loopback and the common RTP range 16384–32767 (RFC 3551 suggests nothing; this is
    /// what Asterisk-era firewalls are opened for).
    fn default() -> Self {
        MediaConfig {
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            advertised_ip: None,
            port_first: 16_384,
            port_last: 32_767,
            session: SessionConfig::default(),
            socket_buffer: 256 * 1024,
            metrics: None,
        }
    }
}
