//! The transport-layer duties the transaction layer performs on receipt, since it is the
//! one that parses datagrams: recording where a request really came from in its top Via
//! (RFC 3261 §18.2.1, RFC 3581 §4) and choosing where its responses go (§18.2.2).

use std::net::{IpAddr, SocketAddr};

use sip_msg::{Headers, Host, Transport, Via};

/// The port a sent-by without one implies (§18.2.2, §19.1.2).
pub(crate) fn default_port(transport: &Transport) -> u16 {
    match transport {
        Transport::Tls | Transport::Wss => 5061,
        _ => 5060,
    }
}

/// Adds `received` when the sent-by host is not the packet's source address, and fills an
/// empty `rport` with the source port (which also requires `received`, RFC 3581 §4).
/// Rewrites only the first value of the first Via line, and only when something changes.
/// Returns the (possibly updated) top Via.
pub(crate) fn stamp_received(headers: &mut Headers, via: Via, source: SocketAddr) -> Via {
    let (via, changed) = with_received(via, source);
    if changed {
        headers.replace_top_via(&via);
    }
    via
}

/// The top Via as §18.2.1 and RFC 3581 want it after receipt, and whether it changed.
pub(crate) fn with_received(mut via: Via, source: SocketAddr) -> (Via, bool) {
    let host_is_source = match via.host {
        Host::Ipv4(a) => IpAddr::V4(a) == source.ip(),
        Host::Ipv6(a) => IpAddr::V6(a) == source.ip(),
        Host::Domain(_) => false,
    };
    let wants_rport = matches!(via.rport(), Some(None));
    if host_is_source && !wants_rport {
        return (via, false);
    }
    via.params.set("received", Some(&source.ip().to_string()));
    if wants_rport {
        via.params.set("rport", Some(&source.port().to_string()));
    }
    (via, true)
}

/// Where responses to a request go (§18.2.2 with RFC 3581), from its stamped top Via:
/// - reliable transport: back over the connection it came on, i.e. to the source;
/// - `rport` present: to the source address and port;
/// - otherwise to `received` (else the sent-by IP, else the source IP) at the sent-by port.
///
/// `maddr` (multicast) is not supported: such responses go back to the source as well.
pub(crate) fn response_destination(
    via: &Via,
    source: SocketAddr,
    transport: &Transport,
) -> SocketAddr {
    if transport.is_reliable() || via.rport().is_some() || via.params.contains("maddr") {
        return source;
    }
    let ip = via.received().unwrap_or(match via.host {
        Host::Ipv4(a) => IpAddr::V4(a),
        Host::Ipv6(a) => IpAddr::V6(a),
        Host::Domain(_) => source.ip(),
    });
    SocketAddr::new(ip, via.port.unwrap_or_else(|| default_port(transport)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sip_msg::HeaderName;

    fn headers_with(via_line: &str) -> Headers {
        let mut h = Headers::new();
        h.push(HeaderName::From, "<sip:a@b>;tag=1");
        h.push(HeaderName::Via, via_line);
        h.push(HeaderName::Via, "SIP/2.0/UDP second.example");
        h
    }

    fn src(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn matching_source_leaves_the_message_untouched() {
        let mut h = headers_with("SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bKa");
        let before = h.clone();
        let top = h.top_via().unwrap().unwrap();
        let via = stamp_received(&mut h, top, src("192.0.2.1:5062"));
        assert_eq!(h, before);
        assert_eq!(
            response_destination(&via, src("192.0.2.1:5062"), &Transport::Udp),
            src("192.0.2.1:5062")
        );
    }

    #[test]
    fn domain_sent_by_gets_received_and_responses_go_to_it_at_the_sent_by_port() {
        let mut h =
            headers_with("SIP/2.0/UDP pc.example.com;branch=z9hG4bKa, SIP/2.0/UDP p.example");
        let top = h.top_via().unwrap().unwrap();
        let via = stamp_received(&mut h, top, src("198.51.100.7:40000"));
        let line = h.get(&HeaderName::Via).unwrap();
        assert_eq!(
            line,
            "SIP/2.0/UDP pc.example.com;branch=z9hG4bKa;received=198.51.100.7, SIP/2.0/UDP p.example"
        );
        assert_eq!(h.vias().unwrap().len(), 3);
        assert_eq!(
            response_destination(&via, src("198.51.100.7:40000"), &Transport::Udp),
            src("198.51.100.7:5060")
        );
    }

    #[test]
    fn rport_is_filled_and_responses_follow_the_nat_binding() {
        let mut h = headers_with("SIP/2.0/UDP 10.0.0.2:5060;rport;branch=z9hG4bKa");
        let top = h.top_via().unwrap().unwrap();
        let via = stamp_received(&mut h, top, src("203.0.113.9:61000"));
        assert_eq!(via.rport(), Some(Some(61000)));
        assert_eq!(via.received(), Some("203.0.113.9".parse().unwrap()));
        let reparsed = h.top_via().unwrap().unwrap();
        assert_eq!(reparsed, via);
        assert_eq!(
            response_destination(&via, src("203.0.113.9:61000"), &Transport::Udp),
            src("203.0.113.9:61000")
        );
    }

    #[test]
    fn reliable_transports_answer_on_the_connection() {
        let via = Via::parse("SIP/2.0/TLS 10.0.0.2;branch=z9hG4bKa").unwrap();
        assert_eq!(
            response_destination(&via, src("203.0.113.9:40001"), &Transport::Tls),
            src("203.0.113.9:40001")
        );
        assert_eq!(default_port(&Transport::Tls), 5061);
    }
}
