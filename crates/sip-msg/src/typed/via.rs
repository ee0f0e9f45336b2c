//! `Via: SIP/2.0/UDP host:port;branch=z9hG4bK…;rport;received=…` (RFC 3261 §20.42, RFC 3581).

use std::fmt;
use std::net::IpAddr;

use crate::params::Params;
use crate::split::parse_params;
use crate::uri::Host;
use crate::uri_parse::{parse_hostport, parse_port};

/// The RFC 3261 magic cookie that marks a branch as globally unique (§8.1.1.7).
pub const BRANCH_MAGIC_COOKIE: &str = "z9hG4bK";

/// Transport named in a Via.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
    Sctp,
    Ws,
    Wss,
    Other(String),
}

impl Transport {
    pub fn parse(s: &str) -> Transport {
        match s.to_ascii_uppercase().as_str() {
            "UDP" => Transport::Udp,
            "TCP" => Transport::Tcp,
            "TLS" => Transport::Tls,
            "SCTP" => Transport::Sctp,
            "WS" => Transport::Ws,
            "WSS" => Transport::Wss,
            _ => Transport::Other(s.to_owned()),
        }
    }

    /// TCP, TLS, SCTP and WebSockets are reliable: no retransmissions (§17).
    pub fn is_reliable(&self) -> bool {
        !matches!(self, Transport::Udp)
    }

    pub fn as_str(&self) -> &str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Sctp => "SCTP",
            Transport::Ws => "WS",
            Transport::Wss => "WSS",
            Transport::Other(s) => s,
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One Via value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    pub transport: Transport,
    pub host: Host,
    pub port: Option<u16>,
    /// All parameters, including branch, received and rport.
    pub params: Params,
}

impl Via {
    /// A Via for sending a request: `SIP/2.0/<transport> host:port;branch=<branch>[;rport]`.
    pub fn new(transport: Transport, host: Host, port: Option<u16>, branch: &str) -> Via {
        let mut params = Params::new();
        params.set("branch", Some(branch));
        Via {
            transport,
            host,
            port,
            params,
        }
    }

    /// Parses one Via value (not a comma list):
    /// `SIP / 2.0 / transport sent-by *( SEMI via-params )`, LWS allowed around `/`, `:`
    /// and `;` (§25.1). Only SIP/2.0 is accepted: a Via of another version cannot be matched
    /// by an RFC 3261 transaction layer.
    pub fn parse(s: &str) -> Option<Via> {
        let s = s.trim();
        let mut parts = s.splitn(3, '/');
        let name = parts.next()?.trim();
        let version = parts.next()?.trim();
        let rest = parts.next()?.trim_start();
        if !name.eq_ignore_ascii_case("SIP") || version != "2.0" {
            return None;
        }
        let t_end = rest.find([' ', '\t'])?;
        let transport = &rest[..t_end];
        if !crate::grammar::is_token(transport) {
            return None;
        }
        let rest = rest[t_end..].trim_start();
        let (sent_by, params) = match rest.split_once(';') {
            Some((sent_by, params)) => (sent_by.trim_end(), parse_params(params)?),
            None => (rest.trim_end(), Params::new()),
        };
        // sent-by = host [ COLON port ], where COLON = SWS ":" SWS: whitespace only there.
        let (host_str, port_str) = match sent_by.strip_prefix('[') {
            Some(v6) => {
                let close = v6.find(']')? + 2;
                let after = sent_by[close..].trim_start();
                let port = match after {
                    "" => None,
                    a => Some(a.strip_prefix(':')?.trim_start()),
                };
                (&sent_by[..close], port)
            }
            None => match sent_by.split_once(':') {
                Some((h, p)) => (h.trim_end(), Some(p.trim_start())),
                None => (sent_by, None),
            },
        };
        if host_str.contains([' ', '\t']) || port_str.is_some_and(|p| p.contains([' ', '\t'])) {
            return None;
        }
        let (host, _) = parse_hostport(host_str).ok()?;
        let port = match port_str {
            Some(p) => Some(parse_port(p).ok()?),
            None => None,
        };
        Some(Via {
            transport: Transport::parse(transport),
            host,
            port,
            params,
        })
    }

    pub fn branch(&self) -> Option<&str> {
        self.params.value("branch")
    }

    /// True when the branch carries the RFC 3261 magic cookie (else use RFC 2543 matching).
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch()
            .is_some_and(|b| b.starts_with(BRANCH_MAGIC_COOKIE))
    }

    pub fn received(&self) -> Option<IpAddr> {
        self.params.value("received")?.parse().ok()
    }

    /// `Some(None)`: `;rport` asked for; `Some(Some(p))`: filled in by a server.
    pub fn rport(&self) -> Option<Option<u16>> {
        match self.params.get("rport")? {
            None => Some(None),
            Some(v) => Some(v.parse().ok()),
        }
    }

    /// `host[:port]` as written.
    pub fn sent_by(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.to_string(),
        }
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SIP/2.0/{} {}{}",
            self.transport,
            self.sent_by(),
            self.params
        )
    }
}
