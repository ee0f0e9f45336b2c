//! RFC 3264 §6 answers to offers shaped like the examples of RFC 4317 (audio and video, codec
//! choice, dynamic payload types, telephone-event, rejected streams, hold), each answer
//! checked line by line and printed back through the parser.

#![allow(clippy::unwrap_used)]

use sdp::{
    Codec, Connection, Direction, LocalCapabilities, MediaCapability, NegotiationError, Origin,
    SessionDescription, answer, parse,
};

fn local(media: Vec<MediaCapability>) -> LocalCapabilities {
    LocalCapabilities {
        origin: Origin {
            username: "calanque".into(),
            session_id: "4231".into(),
            session_version: 1,
            nettype: "IN".into(),
            addrtype: "IP4".into(),
            address: "198.51.100.10".into(),
        },
        connection: Connection::from_ip("198.51.100.10".parse().unwrap()),
        media,
        direction: Direction::SendRecv,
    }
}

fn audio(codecs: Vec<Codec>) -> MediaCapability {
    MediaCapability {
        media: "audio".into(),
        protos: vec!["RTP/AVP".into()],
        port: 30000,
        codecs,
        ptime: None,
    }
}

fn video(codecs: Vec<Codec>) -> MediaCapability {
    MediaCapability {
        media: "video".into(),
        protos: vec!["RTP/AVP".into()],
        port: 40000,
        codecs,
        ptime: None,
    }
}

fn pbx_audio() -> MediaCapability {
    audio(vec![
        Codec::pcma(),
        Codec::pcmu(),
        Codec::g722(),
        Codec::telephone_event(8000),
    ])
}

/// Parses the answer's printed form, so every answer is also a round-trip check.
fn answered(offer: &str, local: &LocalCapabilities) -> SessionDescription {
    let offer = parse(offer.as_bytes()).unwrap();
    let a = answer(&offer, local).unwrap();
    let again = parse(&a.to_bytes()).unwrap();
    assert_eq!(again, a);
    assert_eq!(
        a.media.len(),
        offer.media.len(),
        "one answer stream per offered one"
    );
    for (o, m) in offer.media.iter().zip(&a.media) {
        assert_eq!((&o.media, &o.proto), (&m.media, &m.proto), "same order");
    }
    a
}

fn attrs(m: &sdp::MediaDescription) -> Vec<String> {
    m.attributes.iter().map(ToString::to_string).collect()
}

/// Alice offers audio (PCMU, G.729, telephone-event) and video (H.261, MPEG); Bob takes
/// PCMU with telephone-event and H.261.
const AUDIO_VIDEO_OFFER: &str = "v=0\r
o=alice 2890844526 2890844526 IN IP4 host.atlanta.example.com\r
s=\r
c=IN IP4 host.atlanta.example.com\r
t=0 0\r
m=audio 49170 RTP/AVP 0 8 97\r
a=rtpmap:0 PCMU/8000\r
a=rtpmap:8 PCMA/8000\r
a=rtpmap:97 telephone-event/8000\r
a=fmtp:97 0-15\r
m=video 51372 RTP/AVP 31 32\r
a=rtpmap:31 H261/90000\r
a=rtpmap:32 MPV/90000\r
";

#[test]
fn audio_and_video_both_accepted() {
    let local = local(vec![
        audio(vec![Codec::pcmu(), Codec::telephone_event(8000)]),
        video(vec![Codec::new("H261", 90000)]),
    ]);
    let a = answered(AUDIO_VIDEO_OFFER, &local);
    assert_eq!(a.origin.username, "calanque");
    assert_eq!(a.connection.as_ref().unwrap().address, "198.51.100.10");
    assert_eq!(a.media[0].port, 30000);
    assert_eq!(a.media[0].formats, ["0", "97"]);
    assert_eq!(
        attrs(&a.media[0]),
        [
            "rtpmap:0 PCMU/8000",
            "rtpmap:97 telephone-event/8000",
            "fmtp:97 0-16",
            "sendrecv"
        ]
    );
    assert_eq!(a.media[0].telephone_event(), Some(97));
    assert_eq!(a.media[1].port, 40000);
    assert_eq!(a.media[1].formats, ["31"]);
}

#[test]
fn codecs_kept_in_the_offers_order_not_ours() {
    // We prefer PCMA; the offer lists PCMU first, and the answer keeps the offer's order.
    let a = answered(AUDIO_VIDEO_OFFER, &local(vec![pbx_audio()]));
    assert_eq!(a.media[0].formats, ["0", "8", "97"]);
}

#[test]
fn video_rejected_with_port_zero_when_not_supported() {
    let a = answered(AUDIO_VIDEO_OFFER, &local(vec![pbx_audio()]));
    let v = &a.media[1];
    assert_eq!(v.port, 0);
    assert_eq!(
        v.formats,
        ["31", "32"],
        "a rejected stream still lists a format"
    );
    assert!(v.attributes.is_empty());
    assert!(a.media[0].port != 0);
}

#[test]
fn video_rejected_when_no_common_video_codec() {
    let local = local(vec![pbx_audio(), video(vec![Codec::new("H264", 90000)])]);
    let a = answered(AUDIO_VIDEO_OFFER, &local);
    assert_eq!(a.media[1].port, 0);
}

#[test]
fn static_payload_types_without_rtpmap() {
    let offer = "v=0\r\no=- 1 1 IN IP4 192.0.2.5\r\ns=-\r\nc=IN IP4 192.0.2.5\r\nt=0 0\r\nm=audio 5004 RTP/AVP 18 9 0\r\n";
    let a = answered(offer, &local(vec![pbx_audio()]));
    assert_eq!(a.media[0].formats, ["9", "0"]);
    assert_eq!(
        a.media[0].rtpmap("9").unwrap().encoding,
        "G722",
        "the answer names static types too"
    );
    let with_g729 = local(vec![audio(vec![Codec::g729()])]);
    assert_eq!(answered(offer, &with_g729).media[0].formats, ["18"]);
}

#[test]
fn dynamic_payload_types_matched_by_name_clock_and_channels() {
    let offer = "v=0\r\no=- 1 1 IN IP4 192.0.2.5\r\ns=-\r\nc=IN IP4 192.0.2.5\r\nt=0 0\r
m=audio 5004 RTP/AVP 111 112 113 101\r
a=rtpmap:111 opus/48000/2\r
a=fmtp:111 useinbandfec=1\r
a=rtpmap:112 L16/16000\r
a=rtpmap:113 pcma/8000\r
a=rtpmap:101 TELEPHONE-EVENT/8000\r
";
    let mut opus = Codec::new("OPUS", 48000);
    opus.channels = Some(2);
    let a = answered(
        offer,
        &local(vec![audio(vec![
            opus,
            Codec::new("L16", 8000),
            Codec::pcma(),
            Codec::telephone_event(8000),
        ])]),
    );
    let m = &a.media[0];
    assert_eq!(
        m.formats,
        ["111", "113", "101"],
        "L16 at another clock rate is not ours"
    );
    assert_eq!(
        m.fmtp("111"),
        Some("useinbandfec=1"),
        "the offer's fmtp echoed"
    );
    assert_eq!(m.rtpmap("113").unwrap().encoding, "pcma");
    // Opus mono does not match a stereo rtpmap.
    let mono = local(vec![audio(vec![Codec::new("opus", 48000), Codec::pcma()])]);
    assert_eq!(answered(offer, &mono).media[0].formats, ["113"]);
}

#[test]
fn telephone_event_only_at_a_kept_codecs_clock_and_only_when_supported() {
    let offer = "v=0\r\no=- 1 1 IN IP4 192.0.2.5\r\ns=-\r\nc=IN IP4 192.0.2.5\r\nt=0 0\r
m=audio 5004 RTP/AVP 0 101 102\r
a=rtpmap:101 telephone-event/48000\r
a=rtpmap:102 telephone-event/8000\r
a=fmtp:102 0-15\r
";
    let both = local(vec![audio(vec![
        Codec::pcmu(),
        Codec::telephone_event(8000),
        Codec::telephone_event(48000),
    ])]);
    assert_eq!(answered(offer, &both).media[0].formats, ["0", "102"]);
    let no_dtmf = local(vec![audio(vec![Codec::pcmu()])]);
    let a = answered(offer, &no_dtmf);
    assert_eq!(a.media[0].formats, ["0"]);
    assert_eq!(a.media[0].telephone_event(), None);
}

#[test]
fn telephone_event_alone_is_not_a_common_codec() {
    let offer = "v=0\r\no=- 1 1 IN IP4 192.0.2.5\r\ns=-\r\nc=IN IP4 192.0.2.5\r\nt=0 0\r
m=audio 5004 RTP/AVP 4 101\r
a=rtpmap:101 telephone-event/8000\r
";
    let offer = parse(offer.as_bytes()).unwrap();
    let err = answer(&offer, &local(vec![pbx_audio()])).unwrap_err();
    assert_eq!(err, NegotiationError::NoCommonCodec);
    assert_eq!(err.warning_code(), 305);
}

#[test]
fn nothing_in_common_is_refused_for_488() {
    let offer = parse(AUDIO_VIDEO_OFFER.as_bytes()).unwrap();
    let g729_only = local(vec![audio(vec![Codec::g729()])]);
    assert_eq!(
        answer(&offer, &g729_only),
        Err(NegotiationError::NoCommonCodec)
    );
    let image_only = local(vec![MediaCapability {
        media: "image".into(),
        protos: vec!["udptl".into()],
        port: 6000,
        codecs: vec![Codec::new("t38", 0)],
        ptime: None,
    }]);
    let err = answer(&offer, &image_only).unwrap_err();
    assert_eq!(err, NegotiationError::NoSupportedMedia);
    assert_eq!(err.warning_code(), 304);
}

#[test]
fn unsupported_profile_is_rejected_per_stream() {
    let offer = "v=0\r\no=- 1 1 IN IP4 192.0.2.5\r\ns=-\r\nc=IN IP4 192.0.2.5\r\nt=0 0\r
m=audio 5004 RTP/SAVP 0\r
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r
m=audio 5006 RTP/AVP 0\r
";
    let a = answered(offer, &local(vec![pbx_audio()]));
    assert_eq!((a.media[0].port, a.media[1].port), (0, 30000));
    assert!(a.media[1].attribute("crypto").is_none());
}

#[test]
fn offered_disabled_streams_stay_rejected_and_ports_are_spread() {
    let offer = "v=0\r\no=- 1 1 IN IP4 192.0.2.5\r\ns=-\r\nc=IN IP4 192.0.2.5\r\nt=0 0\r
m=audio 0 RTP/AVP 0\r
m=audio 5004 RTP/AVP 0\r
m=audio 5006 RTP/AVP 8\r
";
    let a = answered(offer, &local(vec![pbx_audio()]));
    let ports: Vec<u16> = a.media.iter().map(|m| m.port).collect();
    assert_eq!(ports, [0, 30000, 30002]);
    // An offer whose streams are all disabled is answered, not refused.
    let all_off = "v=0\r\no=- 1 1 IN IP4 192.0.2.5\r\ns=-\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\n";
    assert_eq!(
        answered(all_off, &local(vec![pbx_audio()])).media[0].port,
        0
    );
}

fn offer_with_direction(direction: &str, level_session: bool) -> String {
    let (s, m) = if level_session {
        (format!("a={direction}\r\n"), String::new())
    } else {
        (String::new(), format!("a={direction}\r\n"))
    };
    format!(
        "v=0\r\no=- 1 2 IN IP4 192.0.2.5\r\ns=-\r\nc=IN IP4 192.0.2.5\r\nt=0 0\r\n{s}m=audio 5004 RTP/AVP 0\r\n{m}"
    )
}

#[test]
fn answer_direction_mirrors_the_offer() {
    let caps = local(vec![pbx_audio()]);
    for session_level in [false, true] {
        for (offered, expected) in [
            ("sendrecv", Direction::SendRecv),
            ("sendonly", Direction::RecvOnly),
            ("recvonly", Direction::SendOnly),
            ("inactive", Direction::Inactive),
        ] {
            let a = answered(&offer_with_direction(offered, session_level), &caps);
            assert_eq!(a.media[0].direction(), Some(expected), "{offered}");
        }
    }
}

#[test]
fn answer_direction_narrowed_by_ours() {
    let mut caps = local(vec![pbx_audio()]);
    caps.direction = Direction::SendOnly;
    let dir = |offered| answered(&offer_with_direction(offered, false), &caps).media[0].direction();
    assert_eq!(dir("sendrecv"), Some(Direction::SendOnly));
    assert_eq!(dir("sendonly"), Some(Direction::Inactive));
    caps.direction = Direction::Inactive;
    let dir = |offered| answered(&offer_with_direction(offered, false), &caps).media[0].direction();
    assert_eq!(dir("sendrecv"), Some(Direction::Inactive));
}

#[test]
fn media_level_direction_overrides_session_level() {
    let offer =
        "v=0\r\no=- 1 2 IN IP4 192.0.2.5\r\ns=-\r\nc=IN IP4 192.0.2.5\r\nt=0 0\r\na=inactive\r
m=audio 5004 RTP/AVP 0\r\na=sendonly\r\nm=audio 5006 RTP/AVP 0\r\n";
    let sdp = parse(offer.as_bytes()).unwrap();
    assert_eq!(sdp.media_direction(&sdp.media[0]), Direction::SendOnly);
    assert_eq!(sdp.media_direction(&sdp.media[1]), Direction::Inactive);
    let a = answered(offer, &local(vec![pbx_audio()]));
    assert_eq!(a.media[0].direction(), Some(Direction::RecvOnly));
    assert_eq!(a.media[1].direction(), Some(Direction::Inactive));
}

#[test]
fn ptime_and_local_fmtp_in_the_answer() {
    let mut cap = pbx_audio();
    cap.ptime = Some(20);
    let a = answered(AUDIO_VIDEO_OFFER, &local(vec![cap]));
    assert_eq!(a.media[0].ptime(), Some(20));
    // Our telephone-event fmtp (0-16) replaces the offer's 0-15.
    assert_eq!(a.media[0].fmtp("97"), Some("0-16"));
}
