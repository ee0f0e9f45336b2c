//! SIP, SIPS and other absolute URIs (RFC 3261 §19.1, RFC 3966 `tel:` kept opaque).

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::params::Params;

/// The URI scheme.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scheme {
    Sip,
    Sips,
    Tel,
    /// Any other absolute URI scheme, lower-cased.
    Other(String),
}

/// A host as written in a URI or Via sent-by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A domain name, as received (compare with `eq_ignore_ascii_case`).
    Domain(String),
    Ipv4(Ipv4Addr),
    /// Printed in brackets.
    Ipv6(Ipv6Addr),
}

/// A URI. For `sip:`/`sips:` the structured fields are filled; for other schemes
/// (`tel:`, `http:`, `urn:` …) `opaque` holds everything after the colon and `host` is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri {
    pub scheme: Scheme,
    pub user: Option<String>,
    pub password: Option<String>,
    pub host: Host,
    pub port: Option<u16>,
    pub params: Params,
    /// `?name=value` header parameters, kept escaped as received.
    pub headers: Vec<(String, String)>,
    /// The scheme-specific part for non-SIP schemes.
    pub opaque: Option<String>,
}

/// Why a URI did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    /// No `scheme:` prefix.
    #[error("URI has no scheme")]
    MissingScheme,
    /// The host part is empty or not a valid hostname / IP literal.
    #[error("invalid host in URI")]
    InvalidHost,
    /// The port is not a number in 0..=65535.
    #[error("invalid port in URI")]
    InvalidPort,
    /// A character not allowed by the RFC 3261 grammar at this place.
    #[error("invalid character in URI")]
    InvalidCharacter,
}

impl Uri {
    /// A `sip:` URI for `host` with no user, port or parameters.
    pub fn sip(host: Host) -> Uri {
        Uri {
            scheme: Scheme::Sip,
            user: None,
            password: None,
            host,
            port: None,
            params: Params::new(),
            headers: Vec::new(),
            opaque: None,
        }
    }

    /// Parses a URI as it appears in a Request-URI or inside `<>`.
    pub fn parse(s: &str) -> Result<Uri, UriError> {
        crate::uri_parse::parse_uri(s)
    }

    pub fn is_sip_or_sips(&self) -> bool {
        matches!(self.scheme, Scheme::Sip | Scheme::Sips)
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(d),
            Host::Ipv4(a) => write!(f, "{a}"),
            Host::Ipv6(a) => write!(f, "[{a}]"),
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scheme::Sip => "sip",
            Scheme::Sips => "sips",
            Scheme::Tel => "tel",
            Scheme::Other(s) => s,
        })
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.scheme)?;
        if let Some(opaque) = &self.opaque {
            return f.write_str(opaque);
        }
        if let Some(user) = &self.user {
            f.write_str(user)?;
            if let Some(pw) = &self.password {
                write!(f, ":{pw}")?;
            }
            f.write_str("@")?;
        }
        write!(f, "{}", self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        write!(f, "{}", self.params)?;
        for (i, (n, v)) in self.headers.iter().enumerate() {
            write!(f, "{}{n}={v}", if i == 0 { '?' } else { '&' })?;
        }
        Ok(())
    }
}
