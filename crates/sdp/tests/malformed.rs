//! Malformed descriptions as call-control meets them: each gives the line, the field and the
//! answer (400 for garbage, 488 for well-formed SDP this PBX cannot use), in words fit for a
//! Warning header.

use sdp::{ParseErrorKind, parse};

const HEAD: &str = "v=0\r\no=- 7 7 IN IP4 192.0.2.1\r\ns=-\r\n";

#[test]
fn each_fault_is_named() {
    let cases: &[(&str, u16, &str)] = &[
        ("", 400, "SDP line 1: empty session description"),
        (
            "hello world\r\n",
            400,
            "SDP line 1: line is not of the form x=value",
        ),
        (
            "o=- 1 1 IN IP4 h\r\nv=0\r\n",
            400,
            "SDP line 1: the description does not start with v=",
        ),
        ("v=1\r\n", 488, "SDP line 1: unsupported SDP version \"1\""),
        (
            "v=0\r\ns=-\r\nt=0 0\r\n",
            400,
            "SDP line 4: missing o= line",
        ),
        (
            "v=0\r\no=- 1 1 IN IP4 h\r\nt=0 0\r\n",
            400,
            "SDP line 4: missing s= line",
        ),
        (
            "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 h\r\nm=audio 1 RTP/AVP 0\r\n",
            400,
            "SDP line 6: missing t= line",
        ),
        (
            "v=0\r\no=- 1 one IN IP4 h\r\ns=-\r\nt=0 0\r\n",
            400,
            "SDP line 2: o= line: invalid or missing sess-version",
        ),
        (
            &format!("{HEAD}t=0 0\r\nc=IN IP4 h\r\nm=audio 70000 RTP/AVP 0\r\n"),
            400,
            "SDP line 6: m= line: port 70000 out of range",
        ),
        (
            &format!("{HEAD}t=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"),
            488,
            "SDP line 5: media section 1 has no c= line and the session has none",
        ),
        (
            &format!("{HEAD}t=0 0\r\nc=IN IP4 h\r\nm=audio 4000\r\n"),
            400,
            "SDP line 6: m= line: invalid or missing proto",
        ),
        (
            &format!("{HEAD}t=0 0\r\nc=IN IP4 h\r\nm=audio 4000 RTP/AVP 0\r\nt=0 0\r\n"),
            400,
            "SDP line 7: t= line not allowed here",
        ),
        (
            &format!("{HEAD}t=0 0\r\nw=what\r\n"),
            400,
            "SDP line 5: unknown line type w=",
        ),
    ];
    for (text, code, message) in cases {
        let e = parse(text.as_bytes()).expect_err(text);
        assert_eq!(e.to_string(), *message, "{text:?}");
        assert_eq!(e.rejection().status_code(), *code, "{text:?}");
    }
}

#[test]
fn warning_codes() {
    let e = parse(b"v=2\r\n").expect_err("v=2");
    assert_eq!(e.kind, ParseErrorKind::UnsupportedVersion("2".into()));
    assert_eq!(e.warning_code(), 307);
    let e = parse(b"v=0\r\nx").expect_err("garbage");
    assert_eq!(e.warning_code(), 399);
}

#[test]
fn binary_garbage_is_a_400_not_a_panic() {
    let e = parse(b"v=0\r\n\x00\x01\x02\xff\xfe").expect_err("binary");
    assert_eq!((e.line, e.rejection().status_code()), (2, 400));
}
