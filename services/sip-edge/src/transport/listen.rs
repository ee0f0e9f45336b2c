//! What the edge listens on: `udp:`, `tcp:` or `tls:` followed by a socket address.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use sip_msg::Transport;

/// One listening address and its transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenSpec {
    pub transport: Transport,
    pub addr: SocketAddr,
}

/// Why a `--listen` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid listen address {value:?}: {reason} (expected udp:IP:PORT, tcp:IP:PORT or tls:IP:PORT)"
)]
pub struct ListenSpecError {
    value: String,
    reason: &'static str,
}

impl FromStr for ListenSpec {
    type Err = ListenSpecError;

    fn from_str(s: &str) -> Result<ListenSpec, ListenSpecError> {
        let err = |reason| ListenSpecError {
            value: s.to_owned(),
            reason,
        };
        let (scheme, addr) = s.split_once(':').ok_or_else(|| err("no transport"))?;
        let transport = match scheme.to_ascii_lowercase().as_str() {
            "udp" => Transport::Udp,
            "tcp" => Transport::Tcp,
            "tls" => Transport::Tls,
            _ => return Err(err("unknown transport")),
        };
        let addr = addr.parse().map_err(|_| err("not an IP:PORT address"))?;
        Ok(ListenSpec { transport, addr })
    }
}

impl fmt::Display for ListenSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.transport {
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            _ => "udp",
        };
        write!(f, "{scheme}:{}", self.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_transports_and_ipv6() {
        let u: ListenSpec = "udp:127.0.0.1:5070".parse().unwrap();
        assert_eq!(u.transport, Transport::Udp);
        let t: ListenSpec = "TCP:[::1]:5070".parse().unwrap();
        assert_eq!(t.transport, Transport::Tcp);
        assert_eq!(t.addr, "[::1]:5070".parse().unwrap());
        let s: ListenSpec = "tls:0.0.0.0:5061".parse().unwrap();
        assert_eq!(s.to_string(), "tls:0.0.0.0:5061");
    }

    #[test]
    fn refuses_what_is_not_a_listen_address() {
        for bad in [
            "",
            "udp",
            "sctp:127.0.0.1:5",
            "udp:localhost:5070",
            "udp:127.0.0.1",
        ] {
            assert!(bad.parse::<ListenSpec>().is_err(), "{bad}");
        }
    }
}
