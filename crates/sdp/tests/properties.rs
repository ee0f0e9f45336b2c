//! Properties over generated and mutated input:
//! - a generated description prints to text that parses back to the same description, with
//!   CRLF line ends and `v=` first;
//! - arbitrary bytes and mutations of real descriptions never panic; whatever parses prints
//!   back to the same description, and can be answered and rewritten without a panic, the
//!   answer keeping the offer's `m=` line count.

use proptest::prelude::*;
use sdp::{
    Attribute, Bandwidth, Codec, Connection, Direction, LocalCapabilities, MediaCapability,
    MediaDescription, Origin, SessionDescription, Timing, answer, hold, is_hold, parse, resume,
    with_connection,
};

// ---- generators -----------------------------------------------------------------------

/// A field of a space-separated line.
fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9.!#$%&'*+^_`{|}~-]{1,10}"
}

/// Free text: anything but line ends, and no trailing whitespace (the parser trims it).
fn text() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[ -~é\u{263a}]{0,16}[!-~é]"]
}

fn connection() -> impl Strategy<Value = Connection> {
    (
        Just("IN".to_owned()),
        prop_oneof![Just("IP4".to_owned()), Just("IP6".to_owned())],
        prop_oneof![
            any::<[u8; 4]>().prop_map(|b| std::net::Ipv4Addr::from(b).to_string()),
            any::<[u16; 8]>().prop_map(|s| std::net::Ipv6Addr::from(s).to_string()),
            "[a-z]{1,8}\\.example\\.com",
        ],
    )
        .prop_map(|(nettype, addrtype, address)| Connection {
            nettype,
            addrtype,
            address,
        })
}

fn bandwidths() -> impl Strategy<Value = Vec<Bandwidth>> {
    prop::collection::vec(
        (
            prop_oneof![Just("AS"), Just("CT"), Just("TIAS")],
            any::<u64>(),
        )
            .prop_map(|(k, v)| Bandwidth {
                kind: k.to_owned(),
                value: v,
            }),
        0..3,
    )
}

fn attribute() -> impl Strategy<Value = Attribute> {
    (
        "[A-Za-z0-9.!#$%&'*+^_`{|}~-]{1,12}",
        prop::option::of(text()),
    )
        .prop_map(|(name, value)| Attribute { name, value })
}

fn attributes() -> impl Strategy<Value = Vec<Attribute>> {
    prop::collection::vec(attribute(), 0..5)
}

fn media() -> impl Strategy<Value = MediaDescription> {
    let rtp = (
        prop_oneof![Just("RTP/AVP"), Just("RTP/SAVP"), Just("UDP/TLS/RTP/SAVPF")],
        prop::collection::vec((0u8..128).prop_map(|p| p.to_string()), 1..6),
    );
    let other = (
        prop_oneof![Just("udptl"), Just("TCP/MSRP")],
        prop::collection::vec(token(), 1..3),
    );
    (
        "[a-z]{1,10}",
        any::<u16>(),
        prop::option::of(1u16..),
        prop_oneof![rtp, other],
        prop::option::of(text()),
        prop::option::of(connection()),
        bandwidths(),
        prop::option::of(text()),
        attributes(),
    )
        .prop_map(
            |(
                media,
                port,
                port_count,
                (proto, formats),
                information,
                connection,
                bw,
                key,
                attributes,
            )| {
                MediaDescription {
                    media,
                    port,
                    port_count,
                    proto: proto.to_owned(),
                    formats,
                    information,
                    connection,
                    bandwidths: bw,
                    encryption_key: key,
                    attributes,
                }
            },
        )
}

fn timing() -> impl Strategy<Value = Timing> {
    (
        any::<u64>(),
        any::<u64>(),
        prop::collection::vec("[0-9]{1,4}[dhm]? [0-9]{1,3}", 0..2),
    )
        .prop_map(|(start, stop, repeats)| Timing {
            start,
            stop,
            repeats,
        })
}

fn origin() -> impl Strategy<Value = Origin> {
    (token(), "[0-9]{1,25}", any::<u64>(), connection()).prop_map(
        |(username, session_id, session_version, c)| Origin {
            username,
            session_id,
            session_version,
            nettype: c.nettype,
            addrtype: c.addrtype,
            address: c.address,
        },
    )
}

prop_compose! {
    fn description()(
        origin in origin(),
        session_name in text(),
        information in prop::option::of(text()),
        uri in prop::option::of(text()),
        emails in prop::collection::vec(text(), 0..2),
        phones in prop::collection::vec(text(), 0..2),
        connection in prop::option::of(connection()),
        bandwidths in bandwidths(),
        timing in prop::collection::vec(timing(), 1..3),
        time_zones in prop::option::of(text()),
        encryption_key in prop::option::of(text()),
        attributes in attributes(),
        media in prop::collection::vec(media(), 0..4),
        fallback in connection(),
    ) -> SessionDescription {
        let mut media = media;
        // An active stream needs a c= somewhere.
        if connection.is_none() {
            for m in media.iter_mut().filter(|m| m.port != 0) {
                m.connection.get_or_insert_with(|| fallback.clone());
            }
        }
        SessionDescription {
            origin, session_name, information, uri, emails, phones, connection, bandwidths,
            timing, time_zones, encryption_key, attributes, media,
        }
    }
}

// ---- corpus for mutation ----------------------------------------------------------------

const SEEDS: &[&str] = &[
    "v=0\r\no=alice 2890844526 2890844526 IN IP4 host.atlanta.example.com\r\ns=\r\nc=IN IP4 host.atlanta.example.com\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0 8 97\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:97 telephone-event/8000\r\na=fmtp:97 0-15\r\na=sendonly\r\nm=video 51372 RTP/AVP 31 32\r\na=rtpmap:31 H261/90000\r\na=rtpmap:32 MPV/90000\r\n",
    "v=0\no=- 1 2 IN IP6 2001:db8::1\ns=-\nt=0 0\na=inactive\nm=audio 5004/2 RTP/SAVP 111 101\nc=IN IP6 2001:db8::2\nb=AS:64\na=rtpmap:111 opus/48000/2\na=rtpmap:101 telephone-event/48000\na=rtcp:5005 IN IP6 2001:db8::2\na=rtcp-mux\na=candidate:1 1 UDP 1 10.0.0.1 5004 typ host\nm=image 0 udptl t38\n",
    "v=0\r\no=bob 1 1 IN IP4 0.0.0.0\r\ns=x\r\ni=y\r\nu=http://a\r\ne=a@b\r\np=+1\r\nc=IN IP4 0.0.0.0\r\nb=CT:1\r\nt=1 2\r\nr=7d 1h 0 25h\r\nz=1 -1h\r\nk=prompt\r\na=recvonly\r\nm=audio 1 RTP/AVP 0 18\r\ni=z\r\nk=clear:q\r\na=ptime:20\r\n",
];

fn capabilities() -> LocalCapabilities {
    LocalCapabilities {
        origin: Origin {
            username: "calanque".into(),
            session_id: "1".into(),
            session_version: 1,
            nettype: "IN".into(),
            addrtype: "IP4".into(),
            address: "198.51.100.1".into(),
        },
        connection: Connection::from_ip(
            "198.51.100.1"
                .parse()
                .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into()),
        ),
        media: vec![MediaCapability {
            media: "audio".into(),
            protos: vec!["RTP/AVP".into(), "RTP/SAVP".into()],
            port: 65534,
            codecs: vec![
                Codec::pcmu(),
                Codec::pcma(),
                Codec::new("opus", 48000),
                Codec::telephone_event(8000),
                Codec::telephone_event(48000),
            ],
            ptime: Some(20),
        }],
        direction: Direction::SendRecv,
    }
}

/// Whatever parses prints back to itself, and survives every helper.
fn check_parsed(sdp: &SessionDescription) -> Result<(), TestCaseError> {
    let printed = sdp.to_string();
    prop_assert_eq!(parse(printed.as_bytes()), Ok(sdp.clone()));
    if let Ok(a) = answer(sdp, &capabilities()) {
        prop_assert_eq!(a.media.len(), sdp.media.len());
        prop_assert_eq!(parse(&a.to_bytes()), Ok(a.clone()));
    }
    let mut copy = sdp.clone();
    let ports: Vec<u16> = (0..copy.media.len()).map(|i| i as u16).collect();
    prop_assert!(with_connection(&mut copy, std::net::Ipv4Addr::LOCALHOST.into(), &ports).is_ok());
    hold(&mut copy);
    let _ = is_hold(&copy);
    resume(&mut copy);
    prop_assert_eq!(parse(&copy.to_bytes()), Ok(copy.clone()));
    Ok(())
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
    Duplicate(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let interesting = prop_oneof![
        any::<u8>(),
        Just(b'\r'),
        Just(b'\n'),
        Just(b' '),
        Just(b'='),
        Just(b':'),
        Just(b'/'),
        Just(b'0'),
        Just(b'9'),
        Just(0xff),
    ];
    prop_oneof![
        (any::<usize>(), interesting.clone()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), interesting).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 1usize..40).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
    ]
}

fn mutate(bytes: &mut Vec<u8>, m: &Mutation) {
    let len = bytes.len().max(1);
    match *m {
        Mutation::Flip(i, b) => {
            if let Some(x) = bytes.get_mut(i % len) {
                *x = b;
            }
        }
        Mutation::Insert(i, b) => bytes.insert(i % (bytes.len() + 1), b),
        Mutation::Delete(i) => {
            if !bytes.is_empty() {
                bytes.remove(i % len);
            }
        }
        Mutation::Truncate(i) => bytes.truncate(i % len),
        Mutation::Duplicate(i, n) => {
            let start = i % len;
            let end = (start + n).min(bytes.len());
            if start < end {
                let piece = bytes[start..end].to_vec();
                bytes.splice(start..start, piece);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn generated_descriptions_round_trip(sdp in description()) {
        let printed = sdp.to_string();
        prop_assert!(printed.starts_with("v=0\r\no="));
        prop_assert!(printed.ends_with("\r\n"));
        prop_assert!(!printed.replace("\r\n", "").contains('\n'));
        prop_assert_eq!(parse(printed.as_bytes()), Ok(sdp.clone()));
        check_parsed(&sdp)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(sdp) = parse(&bytes) {
            check_parsed(&sdp)?;
        }
    }

    #[test]
    fn sdp_shaped_lines_never_panic(lines in prop::collection::vec("[vosiuepcbtrzkam]=[ -~]{0,30}", 0..20)) {
        let text = lines.join("\r\n");
        if let Ok(sdp) = parse(text.as_bytes()) {
            check_parsed(&sdp)?;
        }
    }

    #[test]
    fn mutated_descriptions_never_panic(
        seed in 0..SEEDS.len(),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        let mut bytes = SEEDS[seed].as_bytes().to_vec();
        for m in &mutations {
            mutate(&mut bytes, m);
        }
        match parse(&bytes) {
            Ok(sdp) => check_parsed(&sdp)?,
            Err(e) => {
                // The line named is one of the input's lines (or the one after the last).
                let lines = bytes.split(|&b| b == b'\n').count();
                prop_assert!(e.line >= 1 && e.line <= lines + 1, "{e}");
                prop_assert!(matches!(e.rejection().status_code(), 400 | 488));
            }
        }
    }
}

#[test]
fn seeds_parse() {
    for seed in SEEDS {
        let sdp = parse(seed.as_bytes());
        assert!(sdp.is_ok(), "{seed}: {sdp:?}");
    }
}
