//! The URI grammar of RFC 3261 §25.1 (`SIP-URI`, `SIPS-URI`, `absoluteURI`).

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::params::Params;
use crate::uri::{Host, Scheme, Uri, UriError};

pub(crate) fn parse_uri(s: &str) -> Result<Uri, UriError> {
    let colon = s.find(':').ok_or(UriError::MissingScheme)?;
    let scheme_str = &s[..colon];
    if scheme_str.is_empty()
        || !scheme_str.as_bytes()[0].is_ascii_alphabetic()
        || !scheme_str.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    {
        return Err(UriError::MissingScheme);
    }
    let rest = &s[colon + 1..];
    let scheme = if scheme_str.eq_ignore_ascii_case("sip") {
        Scheme::Sip
    } else if scheme_str.eq_ignore_ascii_case("sips") {
        Scheme::Sips
    } else if scheme_str.eq_ignore_ascii_case("tel") {
        Scheme::Tel
    } else {
        Scheme::Other(scheme_str.to_ascii_lowercase())
    };
    if !matches!(scheme, Scheme::Sip | Scheme::Sips) {
        if rest.is_empty() || rest.bytes().any(|b| b <= b' ' || b == 0x7f || b == b'<' || b == b'>' || b == b'"') {
            return Err(UriError::InvalidCharacter);
        }
        return Ok(Uri {
            scheme,
            user: None,
            password: None,
            host: Host::Domain(String::new()),
            port: None,
            params: Params::new(),
            headers: Vec::new(),
            opaque: Some(rest.to_owned()),
        });
    }
    if rest.bytes().any(|b| b <= b' ' || b >= 0x7f) {
        return Err(UriError::InvalidCharacter);
    }
    // userinfo ends at the last '@' before any '?' (a user part may hold ';' but not '@' unescaped).
    let (userinfo, hostpart) = match rest.find('?').map_or(rest, |q| &rest[..q]).rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let (user, password) = match userinfo {
        Some(ui) => {
            if ui.is_empty() || !ui.bytes().all(is_userinfo_byte) {
                return Err(UriError::InvalidCharacter);
            }
            match ui.find(':') {
                Some(c) => (Some(ui[..c].to_owned()), Some(ui[c + 1..].to_owned())),
                None => (Some(ui.to_owned()), None),
            }
        }
        None => (None, None),
    };
    let (before_headers, headers_str) = match hostpart.find('?') {
        Some(q) => (&hostpart[..q], Some(&hostpart[q + 1..])),
        None => (hostpart, None),
    };
    let (hostport, params_str) = match before_headers.find(';') {
        Some(p) => (&before_headers[..p], Some(&before_headers[p + 1..])),
        None => (before_headers, None),
    };
    let (host, port) = parse_hostport(hostport)?;
    let mut params = Params::new();
    if let Some(ps) = params_str {
        for p in ps.split(';') {
            let (n, v) = match p.find('=') {
                Some(e) => (&p[..e], Some(&p[e + 1..])),
                None => (p, None),
            };
            if n.is_empty() || !n.bytes().all(is_param_byte) || v.is_some_and(|v| !v.bytes().all(is_param_byte)) {
                return Err(UriError::InvalidCharacter);
            }
            params.set_raw(n, v);
        }
    }
    let mut headers = Vec::new();
    if let Some(hs) = headers_str {
        for h in hs.split('&') {
            let (n, v) = h.split_once('=').ok_or(UriError::InvalidCharacter)?;
            if n.is_empty() {
                return Err(UriError::InvalidCharacter);
            }
            headers.push((n.to_owned(), v.to_owned()));
        }
    }
    Ok(Uri { scheme, user, password, host, port, params, headers, opaque: None })
}

/// Parses `host[:port]` as found in a SIP URI or a Via sent-by.
pub(crate) fn parse_hostport(s: &str) -> Result<(Host, Option<u16>), UriError> {
    let (host_str, port_str) = if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']').ok_or(UriError::InvalidHost)?;
        let after = &rest[end + 1..];
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or(UriError::InvalidHost)?),
        };
        let addr: Ipv6Addr = rest[..end].parse().map_err(|_| UriError::InvalidHost)?;
        return Ok((Host::Ipv6(addr), port.map(parse_port).transpose()?));
    } else {
        match s.rfind(':') {
            Some(c) => (&s[..c], Some(&s[c + 1..])),
            None => (s, None),
        }
    };
    let port = port_str.map(parse_port).transpose()?;
    Ok((parse_host(host_str)?, port))
}

fn parse_port(p: &str) -> Result<u16, UriError> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UriError::InvalidPort);
    }
    p.parse().map_err(|_| UriError::InvalidPort)
}

fn parse_host(h: &str) -> Result<Host, UriError> {
    if h.is_empty() {
        return Err(UriError::InvalidHost);
    }
    if h.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        if let Ok(a) = h.parse::<Ipv4Addr>() {
            return Ok(Host::Ipv4(a));
        }
    }
    // hostname = *( domainlabel "." ) toplabel [ "." ]; labels of alphanum and inner '-'.
    let trimmed = h.strip_suffix('.').unwrap_or(h);
    let labels_ok = !trimmed.is_empty()
        && trimmed.split('.').all(|l| {
            !l.is_empty()
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    let top_ok = trimmed.rsplit('.').next().is_some_and(|t| t.as_bytes()[0].is_ascii_alphabetic());
    if labels_ok && top_ok {
        Ok(Host::Domain(h.to_owned()))
    } else {
        Err(UriError::InvalidHost)
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')')
}

fn is_userinfo_byte(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'%' | b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/' | b':')
}

fn is_param_byte(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'%' | b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$')
}

impl Params {
    /// Appends without replacing, keeping duplicates as received.
    pub(crate) fn set_raw(&mut self, name: &str, value: Option<&str>) {
        self.push_raw(name.to_owned(), value.map(str::to_owned));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_sip_uri() {
        let u = parse_uri("sip:alice:pw@atlanta.example.com:5070;transport=tcp;lr?subject=x&p=y").unwrap();
        assert_eq!(u.scheme, Scheme::Sip);
        assert_eq!(u.user.as_deref(), Some("alice"));
        assert_eq!(u.password.as_deref(), Some("pw"));
        assert_eq!(u.host, Host::Domain("atlanta.example.com".into()));
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.params.value("transport"), Some("tcp"));
        assert!(u.params.contains("lr"));
        assert_eq!(u.headers.len(), 2);
        assert_eq!(u.to_string(), "sip:alice:pw@atlanta.example.com:5070;transport=tcp;lr?subject=x&p=y");
    }

    #[test]
    fn parses_ipv6_and_tel() {
        let u = parse_uri("sip:[2001:db8::10]:5060").unwrap();
        assert!(matches!(u.host, Host::Ipv6(_)));
        assert_eq!(u.port, Some(5060));
        let t = parse_uri("tel:+33491000000").unwrap();
        assert_eq!(t.scheme, Scheme::Tel);
        assert_eq!(t.to_string(), "tel:+33491000000");
    }

    #[test]
    fn rejects_bad_hosts_and_ports() {
        assert_eq!(parse_uri("sip:alice@"), Err(UriError::InvalidHost));
        assert_eq!(parse_uri("sip:host:99999"), Err(UriError::InvalidPort));
        assert_eq!(parse_uri("alice@host"), Err(UriError::MissingScheme));
        assert!(parse_uri("sip:a b@host").is_err());
    }
}
