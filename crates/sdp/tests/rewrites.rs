//! The B2BUA and relay rewrites: anchoring at the relay, hold and resume (RFC 6337 §5 and the
//! RFC 4317 hold example), hold detection including RFC 2543 `0.0.0.0`, and the `o=` version
//! increase on every change and only on change.

#![allow(clippy::unwrap_used)]

use std::net::IpAddr;

use sdp::{Direction, RewriteError, bump_version, hold, is_hold, parse, resume, with_connection};

const PHONE: &str = "v=0\r
o=bob 2808844564 2808844564 IN IP4 203.0.113.7\r
s=-\r
c=IN IP4 203.0.113.7\r
t=0 0\r
a=ice-lite\r
m=audio 16384 RTP/AVP 0 101\r
c=IN IP4 10.0.0.7\r
a=rtpmap:101 telephone-event/8000\r
a=rtcp:16385 IN IP4 10.0.0.7\r
a=candidate:1 1 UDP 2130706431 10.0.0.7 16384 typ host\r
a=ice-ufrag:8hhY\r
m=video 0 RTP/AVP 31\r
m=audio 16390 RTP/AVP 8\r
a=rtcp-mux\r
a=rtcp:16390\r
a=sendonly\r
";

fn relay() -> IpAddr {
    "198.51.100.20".parse().unwrap()
}

#[test]
fn anchoring_at_the_relay() {
    let mut sdp = parse(PHONE.as_bytes()).unwrap();
    assert!(with_connection(&mut sdp, relay(), &[40000, 40002, 40004]).unwrap());
    assert_eq!(sdp.origin.session_version, 2808844565);
    let printed = sdp.to_string();
    assert_eq!(
        printed,
        "v=0\r
o=bob 2808844564 2808844565 IN IP4 203.0.113.7\r
s=-\r
c=IN IP4 198.51.100.20\r
t=0 0\r
m=audio 40000 RTP/AVP 0 101\r
a=rtpmap:101 telephone-event/8000\r
a=rtcp:40001 IN IP4 198.51.100.20\r
m=video 0 RTP/AVP 31\r
m=audio 40004 RTP/AVP 8\r
a=rtcp-mux\r
a=rtcp:40004 IN IP4 198.51.100.20\r
a=sendonly\r
"
    );
    assert_eq!(parse(printed.as_bytes()).unwrap(), sdp);
    // The same rewrite again changes nothing and leaves the version alone.
    assert!(!with_connection(&mut sdp, relay(), &[40000, 40002, 40004]).unwrap());
    assert_eq!(sdp.origin.session_version, 2808844565);
}

#[test]
fn anchoring_ipv6() {
    let mut sdp = parse(PHONE.as_bytes()).unwrap();
    with_connection(&mut sdp, "2001:db8::20".parse().unwrap(), &[1, 2, 3]).unwrap();
    let c = sdp.connection.unwrap();
    assert_eq!(
        (c.addrtype.as_str(), c.address.as_str()),
        ("IP6", "2001:db8::20")
    );
}

#[test]
fn anchoring_needs_one_port_per_media_section() {
    let mut sdp = parse(PHONE.as_bytes()).unwrap();
    let before = sdp.clone();
    assert_eq!(
        with_connection(&mut sdp, relay(), &[40000]),
        Err(RewriteError::PortCountMismatch { media: 3, ports: 1 })
    );
    assert_eq!(sdp, before, "a refused rewrite changes nothing");
}

/// RFC 4317's hold: Alice holds with sendonly, Bob answers recvonly; Alice resumes with
/// sendrecv.
#[test]
fn hold_and_resume() {
    let offer = "v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r
m=audio 49170 RTP/AVP 0\r\nm=audio 49172 RTP/AVP 0\r\na=recvonly\r\nm=video 0 RTP/AVP 31\r\n";
    let mut sdp = parse(offer.as_bytes()).unwrap();
    assert!(!is_hold(&sdp));
    assert!(hold(&mut sdp));
    assert_eq!(sdp.origin.session_version, 2890844527);
    assert_eq!(sdp.media[0].direction(), Some(Direction::SendOnly));
    assert_eq!(sdp.media[1].direction(), Some(Direction::Inactive));
    assert_eq!(
        sdp.media[2].direction(),
        None,
        "a rejected stream is left alone"
    );
    assert!(is_hold(&sdp));
    // Holding again changes nothing.
    assert!(!hold(&mut sdp));
    assert_eq!(sdp.origin.session_version, 2890844527);
    // Printed and read back, still on hold.
    assert!(is_hold(&parse(&sdp.to_bytes()).unwrap()));

    assert!(resume(&mut sdp));
    assert_eq!(sdp.origin.session_version, 2890844528);
    assert_eq!(sdp.media[0].direction(), Some(Direction::SendRecv));
    assert_eq!(sdp.media[1].direction(), Some(Direction::RecvOnly));
    assert!(!is_hold(&sdp));
    assert!(!resume(&mut sdp));
}

#[test]
fn hold_overrides_a_session_level_direction_at_media_level() {
    let text = "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 h\r\nt=0 0\r\na=sendrecv\r\nm=audio 4000 RTP/AVP 0\r\n";
    let mut sdp = parse(text.as_bytes()).unwrap();
    hold(&mut sdp);
    assert_eq!(sdp.direction(), Direction::SendRecv);
    assert_eq!(sdp.media_direction(&sdp.media[0]), Direction::SendOnly);
}

#[test]
fn set_direction_replaces_in_place() {
    let text = "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 h\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=ptime:20\r\na=sendrecv\r\na=rtpmap:0 PCMU/8000\r\na=recvonly\r\n";
    let mut sdp = parse(text.as_bytes()).unwrap();
    sdp.media[0].set_direction(Direction::Inactive);
    let names: Vec<&str> = sdp.media[0]
        .attributes
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(names, ["ptime", "inactive", "rtpmap"]);
}

#[test]
fn hold_detection() {
    let base = "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\n";
    let held = |rest: &str| is_hold(&parse(format!("{base}{rest}").as_bytes()).unwrap());
    assert!(held(
        "c=IN IP4 h\r\na=sendonly\r\nm=audio 4000 RTP/AVP 0\r\n"
    ));
    assert!(held(
        "c=IN IP4 h\r\nm=audio 4000 RTP/AVP 0\r\na=inactive\r\n"
    ));
    assert!(!held(
        "c=IN IP4 h\r\nm=audio 4000 RTP/AVP 0\r\na=recvonly\r\n"
    ));
    assert!(
        held("c=IN IP4 0.0.0.0\r\nm=audio 4000 RTP/AVP 0\r\n"),
        "RFC 2543 hold"
    );
    assert!(!held(
        "c=IN IP4 h\r\nm=audio 4000 RTP/AVP 0\r\na=sendonly\r\nm=video 4002 RTP/AVP 31\r\n"
    ));
    assert!(!held("m=audio 0 RTP/AVP 0\r\n"), "no active stream");
    assert!(!held(""));
}

#[test]
fn bump_version_increases_by_one_and_wraps() {
    let mut sdp = parse(b"v=0\r\no=- 1 18446744073709551615 IN IP4 h\r\ns=-\r\nt=0 0\r\n").unwrap();
    bump_version(&mut sdp);
    assert_eq!(sdp.origin.session_version, 0);
    bump_version(&mut sdp);
    assert_eq!(sdp.origin.session_version, 1);
}

#[test]
fn typed_accessors() {
    let sdp = parse(PHONE.as_bytes()).unwrap();
    let m = &sdp.media[0];
    assert_eq!(m.rtcp().unwrap().port, 16385);
    assert_eq!(m.rtcp().unwrap().connection.unwrap().address, "10.0.0.7");
    assert_eq!(m.telephone_event(), Some(101));
    assert_eq!(m.rtpmap("0").unwrap().encoding, "PCMU");
    assert_eq!(m.rtpmap("8"), None, "not listed on this m= line");
    assert_eq!(m.codecs().count(), 2);
    assert!(sdp.media[2].rtcp_mux());
    assert_eq!(
        sdp.media_connection(&sdp.media[1]).unwrap().address,
        "203.0.113.7"
    );
    assert!(m.is_rtp());
}
