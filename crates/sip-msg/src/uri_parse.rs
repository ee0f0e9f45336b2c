//! The URI grammar of RFC 3261 §25.1 (`SIP-URI`, `SIPS-URI`, `absoluteURI`).
//!
//! Escapes (`%HH`) are checked but kept as received, so that a URI prints back byte for byte
//! and compares as the sender wrote it; unescaping is the caller's business where it matters.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::params::Params;
use crate::uri::{Host, Scheme, Uri, UriError};

pub(crate) fn parse_uri(s: &str) -> Result<Uri, UriError> {
    let colon = s.find(':').ok_or(UriError::MissingScheme)?;
    let scheme_str = &s[..colon];
    if !scheme_str
        .as_bytes()
        .first()
        .is_some_and(u8::is_ascii_alphabetic)
        || !scheme_str
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
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
        // absoluteURI = scheme ":" ( hier-part / opaque-part ): uric characters only.
        if rest.is_empty() || !rest.bytes().all(is_uric_byte) || !escapes_ok(rest) {
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
    if !escapes_ok(rest) {
        return Err(UriError::InvalidCharacter);
    }
    // Neither host, parameters nor headers may hold an unescaped '@', so the first one ends
    // the userinfo (whose user part may hold ';', '?' and '/', RFC 4475 §3.1.1.2).
    let (userinfo, hostpart) = match rest.find('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let (user, password) = match userinfo {
        Some(ui) => {
            let (user, password) = match ui.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (ui, None),
            };
            if user.is_empty()
                || !user.bytes().all(is_user_byte)
                || password.is_some_and(|p| !p.bytes().all(is_password_byte))
            {
                return Err(UriError::InvalidCharacter);
            }
            (Some(user.to_owned()), password.map(str::to_owned))
        }
        None => (None, None),
    };
    let (before_headers, headers_str) = match hostpart.split_once('?') {
        Some((b, h)) => (b, Some(h)),
        None => (hostpart, None),
    };
    let (hostport, params_str) = match before_headers.split_once(';') {
        Some((h, p)) => (h, Some(p)),
        None => (before_headers, None),
    };
    let (host, port) = parse_hostport(hostport)?;
    let mut params = Params::new();
    if let Some(ps) = params_str {
        for p in ps.split(';') {
            let (n, v) = match p.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (p, None),
            };
            let v_ok = v.is_none_or(|v| !v.is_empty() && v.bytes().all(is_param_byte));
            if n.is_empty() || !n.bytes().all(is_param_byte) || !v_ok {
                return Err(UriError::InvalidCharacter);
            }
            params.set_raw(n, v);
        }
    }
    let mut headers = Vec::new();
    if let Some(hs) = headers_str {
        for h in hs.split('&') {
            let (n, v) = h.split_once('=').ok_or(UriError::InvalidCharacter)?;
            if n.is_empty() || !n.bytes().all(is_hnv_byte) || !v.bytes().all(is_hnv_byte) {
                return Err(UriError::InvalidCharacter);
            }
            headers.push((n.to_owned(), v.to_owned()));
        }
    }
    Ok(Uri {
        scheme,
        user,
        password,
        host,
        port,
        params,
        headers,
        opaque: None,
    })
}

/// Parses `host[:port]` as found in a SIP URI or a Via sent-by.
pub(crate) fn parse_hostport(s: &str) -> Result<(Host, Option<u16>), UriError> {
    if let Some(rest) = s.strip_prefix('[') {
        let (addr, after) = rest.split_once(']').ok_or(UriError::InvalidHost)?;
        let port = match after {
            "" => None,
            p => Some(parse_port(
                p.strip_prefix(':').ok_or(UriError::InvalidHost)?,
            )?),
        };
        let addr: Ipv6Addr = addr.parse().map_err(|_| UriError::InvalidHost)?;
        return Ok((Host::Ipv6(addr), port));
    }
    let (host_str, port) = match s.split_once(':') {
        Some((h, p)) => (h, Some(parse_port(p)?)),
        None => (s, None),
    };
    Ok((parse_host(host_str)?, port))
}

pub(crate) fn parse_port(p: &str) -> Result<u16, UriError> {
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
        return h
            .parse::<Ipv4Addr>()
            .map(Host::Ipv4)
            .map_err(|_| UriError::InvalidHost);
    }
    // hostname = *( domainlabel "." ) toplabel [ "." ]; labels of alphanum and inner '-',
    // the top label starting with a letter.
    let trimmed = h.strip_suffix('.').unwrap_or(h);
    let labels_ok = !trimmed.is_empty()
        && trimmed.split('.').all(|l| {
            !l.is_empty()
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    let top_ok = trimmed
        .rsplit('.')
        .next()
        .is_some_and(|t| t.as_bytes().first().is_some_and(u8::is_ascii_alphabetic));
    if labels_ok && top_ok {
        Ok(Host::Domain(h.to_owned()))
    } else {
        Err(UriError::InvalidHost)
    }
}

/// Every `%` starts a `%HH` escape.
fn escapes_ok(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = |j: usize| b.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !hex(i + 1) || !hex(i + 2) {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        )
}

/// `user = 1*( unreserved / escaped / user-unreserved )`.
fn is_user_byte(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'%' | b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/'
        )
}

/// `password = *( unreserved / escaped / "&" / "=" / "+" / "$" / "," )`.
fn is_password_byte(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'%' | b'&' | b'=' | b'+' | b'$' | b',')
}

/// `paramchar = param-unreserved / unreserved / escaped`.
fn is_param_byte(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'%' | b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$')
}

/// `hname` / `hvalue` characters: `hnv-unreserved / unreserved / escaped`.
fn is_hnv_byte(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'%' | b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$')
}

/// `uric = reserved / unreserved / escaped`, plus the brackets of IPv6 references.
fn is_uric_byte(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'%' | b';'
                | b'/'
                | b'?'
                | b':'
                | b'@'
                | b'&'
                | b'='
                | b'+'
                | b'$'
                | b','
                | b'['
                | b']'
        )
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
        let u = parse_uri("sip:alice:pw@atlanta.example.com:5070;transport=tcp;lr?subject=x&p=y")
            .unwrap();
        assert_eq!(u.scheme, Scheme::Sip);
        assert_eq!(u.user.as_deref(), Some("alice"));
        assert_eq!(u.password.as_deref(), Some("pw"));
        assert_eq!(u.host, Host::Domain("atlanta.example.com".into()));
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.params.value("transport"), Some("tcp"));
        assert!(u.params.contains("lr"));
        assert_eq!(u.headers.len(), 2);
        assert_eq!(
            u.to_string(),
            "sip:alice:pw@atlanta.example.com:5070;transport=tcp;lr?subject=x&p=y"
        );
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
    fn user_part_may_hold_semicolons_and_question_marks() {
        let u = parse_uri("sip:user;par=u%40example.net@example.com").unwrap();
        assert_eq!(u.user.as_deref(), Some("user;par=u%40example.net"));
        assert_eq!(u.host, Host::Domain("example.com".into()));
        let u = parse_uri("sip:a?,/;;*:&p=1@example.com").unwrap();
        assert_eq!(u.user.as_deref(), Some("a?,/;;*"));
        assert_eq!(u.password.as_deref(), Some("&p=1"));
    }

    #[test]
    fn rejects_bad_hosts_ports_and_escapes() {
        assert_eq!(parse_uri("sip:alice@"), Err(UriError::InvalidHost));
        assert_eq!(parse_uri("sip:host:99999"), Err(UriError::InvalidPort));
        assert_eq!(parse_uri("alice@host"), Err(UriError::MissingScheme));
        assert!(parse_uri("sip:a b@host").is_err());
        assert!(parse_uri("sip:a%zz@host").is_err());
        assert!(parse_uri("sip:host;;lr").is_err());
        assert!(parse_uri("sip:1.2.3.4.5").is_err());
        assert!(parse_uri("http:<x>").is_err());
    }
}
