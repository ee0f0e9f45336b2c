//! Properties over generated and mutated input:
//! - a generated request or response prints to bytes that parse back to the same message;
//! - arbitrary bytes and mutations of real messages never panic, on the datagram path and
//!   through the stream framer, and whatever parses prints back to the same message.

use std::sync::OnceLock;

use bytes::Bytes;
use proptest::prelude::*;
use sip_msg::{
    HeaderName, Headers, Host, Method, NameAddr, Params, Request, Response, SipMessage, StatusCode,
    StreamFramer, Transport, Uri, Via, parse_datagram,
};

// ---- generators -----------------------------------------------------------------------

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9.!%*_+`'~-]{1,12}"
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::Invite),
        Just(Method::Register),
        Just(Method::Options),
        Just(Method::Bye),
        Just(Method::Subscribe),
        Just(Method::Notify),
        Just(Method::Refer),
        "[A-Z][A-Z0-9_.!%*+`'~-]{0,10}"
            .prop_filter_map("known or token", |s| Method::from_token(&s)),
    ]
}

fn host() -> impl Strategy<Value = Host> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,8}[a-z0-9](\\.[a-z][a-z0-9]{0,6}){0,3}".prop_map(Host::Domain),
        any::<[u8; 4]>().prop_map(|b| Host::Ipv4(b.into())),
        any::<[u16; 8]>().prop_map(|s| Host::Ipv6(s.into())),
    ]
}

/// User parts with the characters RFC 3261 allows there, escapes included.
fn user() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof!["[A-Za-z0-9_.!~*'()&=+$,;?/-]", "%[0-9A-F][0-9a-f]",],
        1..10,
    )
    .prop_map(|parts| parts.concat())
}

fn params(
    name_value: impl Strategy<Value = (String, Option<String>)>,
) -> impl Strategy<Value = Params> {
    prop::collection::vec(name_value, 0..3).prop_map(|list| {
        let mut p = Params::new();
        for (n, v) in list {
            p.push_raw(n, v);
        }
        p
    })
}

fn uri_params() -> impl Strategy<Value = Params> {
    params((
        "[a-z][a-z0-9-]{0,7}",
        proptest::option::of("[A-Za-z0-9_.:+$-]{1,8}"),
    ))
}

fn sip_uri() -> impl Strategy<Value = Uri> {
    (
        any::<bool>(),
        proptest::option::of(user()),
        host(),
        proptest::option::of(any::<u16>()),
        uri_params(),
    )
        .prop_map(|(sips, user, host, port, params)| {
            let mut u = Uri::sip(host);
            if sips {
                u.scheme = sip_msg::Scheme::Sips;
            }
            u.user = user;
            u.port = port;
            u.params = params;
            u
        })
}

fn any_uri() -> impl Strategy<Value = Uri> {
    prop_oneof![
        4 => sip_uri(),
        1 => "\\+[0-9]{4,12}".prop_map(|n| Uri::parse(&format!("tel:{n}")).expect("tel URI")),
    ]
}

/// A quoted display name with characters that need escaping.
fn display_name() -> impl Strategy<Value = Option<String>> {
    proptest::option::of("[A-Za-z0-9 \"\\\\,;:<>@é]{0,12}")
}

fn name_addr() -> impl Strategy<Value = NameAddr> {
    (
        display_name(),
        any_uri(),
        params((token(), proptest::option::of(token()))),
    )
        .prop_map(|(display_name, uri, params)| NameAddr {
            display_name,
            uri,
            params,
        })
}

fn via() -> impl Strategy<Value = Via> {
    (
        prop_oneof![
            Just(Transport::Udp),
            Just(Transport::Tcp),
            Just(Transport::Tls)
        ],
        host(),
        proptest::option::of(1u16..),
        "[A-Za-z0-9]{1,16}",
        any::<bool>(),
    )
        .prop_map(|(t, host, port, branch, rport)| {
            let mut v = Via::new(t, host, port, &format!("z9hG4bK{branch}"));
            if rport {
                v.params.set("rport", None);
            }
            v
        })
}

/// Free-text header values: no control characters, no surrounding whitespace.
fn text_value() -> impl Strategy<Value = String> {
    "[!-~]([ !-~éü€]{0,30}[!-~])?"
}

/// Headers every message needs (in a random order), extension headers, and Content-Length
/// at a random place (the parser keeps it where it was).
fn headers(method: Method) -> impl Strategy<Value = (Headers, Bytes)> {
    (
        prop::collection::vec(via(), 1..4),
        name_addr(),
        name_addr(),
        proptest::option::of(token()),
        "[A-Za-z0-9.!%*_+`'~()<>:\\\\\"/\\[\\]?{}-]{1,24}(@[a-z0-9.]{1,12})?",
        0u32..=u32::MAX,
        proptest::option::of(0u32..=255),
        prop::collection::vec(("X-[A-Za-z0-9-]{1,10}", text_value()), 0..4),
        prop::collection::vec(any::<u8>(), 0..200),
        any::<prop::sample::Index>(),
    )
        .prop_map(
            move |(vias, from, mut to, to_tag, call_id, seq, mf, extra, body, cl_at)| {
                let mut h = Headers::new();
                for v in &vias {
                    h.push(HeaderName::Via, v.to_string());
                }
                h.push(HeaderName::From, from.to_string());
                if let Some(tag) = to_tag {
                    to.params.set("tag", Some(&tag));
                }
                h.push(HeaderName::To, to.to_string());
                h.push(HeaderName::CallId, call_id);
                h.push(HeaderName::CSeq, format!("{seq} {method}"));
                if let Some(mf) = mf {
                    h.push(HeaderName::MaxForwards, mf.to_string());
                }
                for (name, value) in extra {
                    h.push(HeaderName::from_wire(&name), value);
                }
                let mut lines: Vec<_> = h.iter().cloned().collect();
                let at = cl_at.index(lines.len() + 1);
                lines.insert(
                    at,
                    sip_msg::Header {
                        name: HeaderName::ContentLength,
                        value: body.len().to_string(),
                    },
                );
                (lines.into_iter().collect(), Bytes::from(body))
            },
        )
}

fn request() -> impl Strategy<Value = SipMessage> {
    (method(), sip_uri()).prop_flat_map(|(method, uri)| {
        headers(method.clone()).prop_map(move |(headers, body)| {
            SipMessage::Request(Request {
                method: method.clone(),
                uri: uri.clone(),
                headers,
                body,
            })
        })
    })
}

fn response() -> impl Strategy<Value = SipMessage> {
    (100u16..=699, "([ -~éü€]{0,20}[!-~])?", method()).prop_flat_map(|(code, reason, method)| {
        headers(method).prop_map(move |(headers, body)| {
            let status = StatusCode::new(code).expect("100..=699");
            SipMessage::Response(Response {
                status,
                reason: reason.clone(),
                headers,
                body,
            })
        })
    })
}

// ---- real messages to mutate --------------------------------------------------------

fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let corpus = testdata::rfc4475().unwrap_or_else(|e| panic!("{e}"));
        corpus.into_iter().map(|m| m.bytes).collect()
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(prop::sample::Index, u8),
    Insert(prop::sample::Index, Vec<u8>),
    Delete(prop::sample::Index, usize),
    Duplicate(prop::sample::Index, usize),
    Truncate(prop::sample::Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let interesting = prop_oneof![
        prop::collection::vec(any::<u8>(), 1..4),
        Just(b"\r\n".to_vec()),
        Just(b"\r\n\r\n".to_vec()),
        Just(b" ".to_vec()),
        Just(b";".to_vec()),
        Just(b",".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"<".to_vec()),
        Just(b"%".to_vec()),
        Just(b"\\".to_vec()),
        Just(b"\0".to_vec()),
        Just(b"\r\n ".to_vec()),
    ];
    prop_oneof![
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<prop::sample::Index>(), interesting).prop_map(|(i, v)| Mutation::Insert(i, v)),
        (any::<prop::sample::Index>(), 1usize..40).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<prop::sample::Index>(), 1usize..200).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
        any::<prop::sample::Index>().prop_map(Mutation::Truncate),
    ]
}

fn apply(mut data: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        if data.is_empty() {
            break;
        }
        match m {
            Mutation::Flip(i, b) => {
                let at = i.index(data.len());
                data[at] = *b;
            }
            Mutation::Insert(i, bytes) => {
                let at = i.index(data.len() + 1);
                data.splice(at..at, bytes.iter().copied());
            }
            Mutation::Delete(i, n) => {
                let at = i.index(data.len());
                let end = (at + n).min(data.len());
                data.drain(at..end);
            }
            Mutation::Duplicate(i, n) => {
                let at = i.index(data.len());
                let end = (at + n).min(data.len());
                let copy = data[at..end].to_vec();
                data.splice(end..end, copy);
            }
            Mutation::Truncate(i) => data.truncate(i.index(data.len() + 1)),
        }
    }
    data
}

// ---- properties -------------------------------------------------------------------------

/// Parses, checks the verdict builds, and checks that a parsed message round-trips.
fn exercise_datagram(data: &[u8]) -> Result<(), TestCaseError> {
    match parse_datagram(data) {
        Ok(msg) => {
            let again = parse_datagram(&msg.to_bytes());
            prop_assert_eq!(
                again.as_ref().ok(),
                Some(&msg),
                "printed form must parse back"
            );
        }
        Err(e) => {
            if let sip_msg::Verdict::Respond(resp) = e.verdict() {
                // The answer copies the request's Via lines and prints as a Status-Line.
                let req = e.partial_request().expect("an answer implies a request");
                prop_assert_eq!(
                    resp.headers.count(&HeaderName::Via),
                    req.headers.count(&HeaderName::Via)
                );
                prop_assert!(resp.to_bytes().starts_with(b"SIP/2.0 "));
            }
        }
    }
    Ok(())
}

/// Feeds the bytes to a framer in the given read sizes; nothing may panic or overgrow.
fn exercise_stream(data: &[u8], chunk: usize) {
    let mut framer = StreamFramer::new();
    for piece in data.chunks(chunk.max(1)) {
        framer.push(piece);
        while let Some(frame) = framer.next() {
            if let Ok(sip_msg::Frame::Invalid(e)) = frame {
                let _ = e.verdict();
            }
        }
        assert!(framer.buffered() <= framer.buffer_limit());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn generated_requests_round_trip(msg in request()) {
        let printed = msg.to_bytes();
        let parsed = parse_datagram(&printed);
        prop_assert_eq!(parsed.as_ref(), Ok(&msg), "{}", String::from_utf8_lossy(&printed));
    }

    #[test]
    fn generated_responses_round_trip(msg in response()) {
        let printed = msg.to_bytes();
        let parsed = parse_datagram(&printed);
        prop_assert_eq!(parsed.as_ref(), Ok(&msg), "{}", String::from_utf8_lossy(&printed));
    }

    #[test]
    fn generated_messages_frame_on_a_stream(msgs in prop::collection::vec(prop_oneof![request(), response()], 1..4), chunk in 1usize..300) {
        let stream: Vec<u8> = msgs.iter().flat_map(|m| m.to_bytes()).collect();
        let mut framer = StreamFramer::new();
        let mut got = Vec::new();
        for piece in stream.chunks(chunk) {
            framer.push(piece);
            while let Some(frame) = framer.next() {
                match frame {
                    Ok(sip_msg::Frame::Message(m)) => got.push(m),
                    other => prop_assert!(false, "unexpected frame {:?}", other),
                }
            }
        }
        prop_assert_eq!(got, msgs);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..1500), chunk in 1usize..64) {
        exercise_datagram(&data)?;
        exercise_stream(&data, chunk);
    }

    #[test]
    fn mutated_real_messages_never_panic(
        seed in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 1..6),
        chunk in 1usize..200,
    ) {
        let original = &seeds()[seed.index(seeds().len())];
        let data = apply(original.clone(), &mutations);
        exercise_datagram(&data)?;
        exercise_stream(&data, chunk);
    }
}
