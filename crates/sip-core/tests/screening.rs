//! RFC 4475 §3.3 (application-layer semantics): each torture message gets the answer its
//! section asks for, from the parser (400s), from `screen_request` (405/416/420/415/483/406),
//! or from the digest server (an unknown scheme is challenged again).
//!
//! The messages are read at run time from the shared test data (never copied into the repo):
//! `../../../shared/testdata/rfc4475` from this crate, or `$CALANQUE_TESTDATA/rfc4475`.
//! Verdicts are keyed by RFC section, not by file name (see PROVENANCE.txt there).

use std::path::PathBuf;
use std::time::Duration;

use sip_core::digest::{Algorithm, DigestError, DigestReply, DigestServer};
use sip_core::screening::{ScreeningPolicy, handles_scheme, screen_request};
use sip_msg::{
    HeaderName, NameAddr, ParseErrorKind, Request, Response, SipMessage, StatusCode, Verdict,
    parse_datagram,
};

/// RFC 4475 §3.3 sections and the file holding each message.
const SECTIONS: &[(&str, &str)] = &[
    ("3.3.1", "insuf"),
    ("3.3.2", "unkscm"),
    ("3.3.3", "novelsc"),
    ("3.3.4", "unksm2"),
    ("3.3.5", "bext01"),
    ("3.3.6", "invut"),
    ("3.3.7", "regaut01"),
    ("3.3.8", "multi01"),
    ("3.3.9", "mcl01"),
    ("3.3.10", "bcast"),
    ("3.3.11", "zeromf"),
    ("3.3.12", "cparam01"),
    ("3.3.13", "cparam02"),
    ("3.3.14", "regescrt"),
    ("3.3.15", "sdp01"),
];

fn corpus_dir() -> PathBuf {
    match std::env::var_os("CALANQUE_TESTDATA") {
        Some(dir) => PathBuf::from(dir).join("rfc4475"),
        None => PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/testdata/rfc4475"
        )),
    }
}

/// The bytes of the message of an RFC 4475 section. Panics (fails the test) when the
/// corpus is missing: these verdicts must be checked, never skipped.
fn message_bytes(section: &str) -> Vec<u8> {
    let Some((_, name)) = SECTIONS.iter().find(|(s, _)| *s == section) else {
        panic!("RFC 4475 section {section} is not in the table");
    };
    let path = corpus_dir().join(format!("{name}.dat"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "RFC 4475 §{section} message missing at {}: {e}. Point CALANQUE_TESTDATA at the \
             shared testdata folder (the one holding rfc4475/).",
            path.display()
        )
    })
}

fn request(section: &str) -> Request {
    match parse_datagram(&message_bytes(section)) {
        Ok(SipMessage::Request(r)) => r,
        Ok(SipMessage::Response(_)) => panic!("§{section}: expected a request, got a response"),
        Err(e) => panic!("§{section}: the parser must accept this message, got {e}"),
    }
}

fn ua() -> ScreeningPolicy {
    ScreeningPolicy::user_agent_server()
}

fn rejected(section: &str, policy: &ScreeningPolicy) -> Response {
    let req = request(section);
    match screen_request(&req, policy) {
        Err(resp) => {
            // Every rejection is a well-formed final response to this very request.
            assert_eq!(resp.headers.call_id(), req.headers.call_id(), "§{section}");
            assert_eq!(
                resp.headers.get(&HeaderName::CSeq),
                req.headers.get(&HeaderName::CSeq)
            );
            let to = resp.headers.to_header().ok().flatten().expect("a valid To");
            assert!(
                to.tag().is_some(),
                "§{section}: a final response needs a To tag"
            );
            *resp
        }
        Ok(()) => panic!("§{section}: expected a rejection, the request was accepted"),
    }
}

/// A 400 from the parser, naming the fault.
fn parser_answers_400(section: &str) -> ParseErrorKind {
    let err = match parse_datagram(&message_bytes(section)) {
        Err(e) => e,
        Ok(_) => panic!("§{section}: the parser must refuse this message"),
    };
    match err.verdict() {
        Verdict::Respond(resp) => assert_eq!(resp.status, StatusCode::BAD_REQUEST, "§{section}"),
        Verdict::Drop => panic!("§{section}: RFC 4475 expects a 400, the parser drops ({err})"),
    }
    err.kind
}

#[test]
fn every_section_3_3_message_is_present() {
    assert_eq!(SECTIONS.len(), 15);
    for (section, _) in SECTIONS {
        assert!(!message_bytes(section).is_empty(), "§{section}");
    }
}

#[test]
fn s3_3_1_missing_required_headers_get_400() {
    let kind = parser_answers_400("3.3.1");
    assert!(matches!(kind, ParseErrorKind::MissingHeader(_)), "{kind:?}");
}

#[test]
fn s3_3_2_unknown_request_uri_scheme_gets_416() {
    assert_eq!(
        rejected("3.3.2", &ua()).status,
        StatusCode::UNSUPPORTED_URI_SCHEME
    );
    assert_eq!(
        rejected("3.3.2", &ScreeningPolicy::proxy()).status.as_u16(),
        416
    );
}

#[test]
fn s3_3_3_known_but_atypical_scheme_gets_416() {
    assert_eq!(
        rejected("3.3.3", &ua()).status,
        StatusCode::UNSUPPORTED_URI_SCHEME
    );
}

#[test]
fn s3_3_4_unknown_schemes_in_headers_are_accepted() {
    let req = request("3.3.4");
    assert_eq!(screen_request(&req, &ua()), Ok(()));
    assert_eq!(screen_request(&req, &ScreeningPolicy::proxy()), Ok(()));
    // A registrar then refuses it with 400 (To must be a SIP or SIPS AOR), not 416.
    let to = req.headers.to_header().unwrap().unwrap();
    assert!(!to.uri.is_sip_or_sips());
    assert!(!handles_scheme(&ua(), &to.uri));
}

#[test]
fn s3_3_5_unknown_require_gets_420_with_unsupported() {
    let resp = rejected("3.3.5", &ua());
    assert_eq!(resp.status, StatusCode::BAD_EXTENSION);
    assert_eq!(
        resp.headers.get(&HeaderName::Unsupported),
        Some("nothingSupportsThis, nothingSupportsThisEither")
    );
    // A proxy lists the Proxy-Require tags instead.
    let resp = rejected("3.3.5", &ScreeningPolicy::proxy());
    assert_eq!(resp.status, StatusCode::BAD_EXTENSION);
    assert_eq!(
        resp.headers.get(&HeaderName::Unsupported),
        Some("noProxiesSupportThis, norDoAnyProxiesSupportThis")
    );
}

#[test]
fn s3_3_6_unknown_content_type_gets_415_with_accept() {
    let resp = rejected("3.3.6", &ua());
    assert_eq!(resp.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let accept = resp.headers.get(&HeaderName::Accept).expect("Accept");
    assert!(accept.contains("application/sdp"), "{accept}");
    // A proxy does not look at bodies.
    assert_eq!(
        screen_request(&request("3.3.6"), &ScreeningPolicy::proxy()),
        Ok(())
    );
}

#[test]
fn s3_3_7_unknown_authorization_scheme_is_challenged_again() {
    let req = request("3.3.7");
    assert_eq!(screen_request(&req, &ua()), Ok(()));
    let credentials = req.headers.authorization().unwrap();
    assert_eq!(credentials.len(), 1);
    assert_eq!(credentials[0].params.get("opaque-data"), Some("here"));
    // A registrar that authenticates answers 401 with a Digest challenge it understands.
    let server = DigestServer::new("example.com", [1; 32], Duration::from_secs(300));
    let err = server
        .verify(1_000, &credentials[0], &req.method, &req.uri, |_, _| None)
        .unwrap_err();
    assert_eq!(err, DigestError::UnsupportedScheme);
    assert_eq!(err.reply(), DigestReply::Challenge { stale: false });
    assert!(
        !server
            .challenge(1_000, &[Algorithm::Sha256, Algorithm::Md5], false)
            .is_empty()
    );
}

#[test]
fn s3_3_8_multiple_single_value_headers_get_400() {
    parser_answers_400("3.3.8");
}

#[test]
fn s3_3_9_multiple_content_lengths_get_400() {
    parser_answers_400("3.3.9");
}

#[test]
fn s3_3_10_response_with_broadcast_via_is_never_answered() {
    let resp = match parse_datagram(&message_bytes("3.3.10")) {
        Ok(SipMessage::Response(r)) => r,
        other => panic!("§3.3.10 is a valid response, got {other:?}"),
    };
    // Only requests are screened or answered; a proxy forwarding this response upstream
    // finds a broadcast address in the next Via and must not send there.
    let vias = resp.headers.vias().unwrap();
    assert_eq!(vias.len(), 2);
    assert_eq!(vias[1].host.to_string(), "255.255.255.255");
}

#[test]
fn s3_3_11_zero_max_forwards_is_483_for_a_proxy_and_processed_by_a_uas() {
    let resp = rejected("3.3.11", &ScreeningPolicy::proxy());
    assert_eq!(resp.status, StatusCode::TOO_MANY_HOPS);
    let req = request("3.3.11");
    assert_eq!(screen_request(&req, &ua()), Ok(()));
    // A B2BUA answers OPTIONS itself (§11) rather than forwarding it.
    assert_eq!(screen_request(&req, &ScreeningPolicy::b2bua()), Ok(()));
    let mut info = req.clone();
    info.method = sip_msg::Method::Info;
    info.headers.set(HeaderName::CSeq, "39234321 INFO");
    let resp = screen_request(&info, &ScreeningPolicy::b2bua()).unwrap_err();
    assert_eq!(resp.status, StatusCode::TOO_MANY_HOPS);
}

fn contact(req: &Request) -> NameAddr {
    let value = req.headers.get(&HeaderName::Contact).expect("Contact");
    NameAddr::parse(value).unwrap_or_else(|| panic!("Contact {value:?} parses"))
}

#[test]
fn s3_3_12_unknownparam_is_a_contact_param() {
    let req = request("3.3.12");
    assert_eq!(screen_request(&req, &ua()), Ok(()));
    let c = contact(&req);
    assert!(c.params.contains("unknownparam"));
    assert!(!c.uri.params.contains("unknownparam"));
    assert_eq!(c.uri.to_string(), "sip:+19725552222@gw1.example.net");
}

#[test]
fn s3_3_13_unknownparam_is_a_uri_param() {
    let req = request("3.3.13");
    assert_eq!(screen_request(&req, &ua()), Ok(()));
    let c = contact(&req);
    assert!(c.uri.params.contains("unknownparam"));
    assert!(!c.params.contains("unknownparam"));
}

#[test]
fn s3_3_14_escaped_uri_header_is_kept() {
    let req = request("3.3.14");
    assert_eq!(screen_request(&req, &ua()), Ok(()));
    let c = contact(&req);
    assert_eq!(
        c.uri.headers,
        [("Route".to_owned(), "%3Csip:sip.example.com%3E".to_owned())]
    );
    // The registrar returns it as received, escaped.
    assert_eq!(
        c.uri.to_string(),
        "sip:user@example.com?Route=%3Csip:sip.example.com%3E"
    );
}

#[test]
fn s3_3_15_accept_without_sdp_gets_406() {
    let resp = rejected("3.3.15", &ua());
    assert_eq!(resp.status.as_u16(), 406);
    // With SDP acceptable, the same INVITE passes.
    let mut ok = request("3.3.15");
    ok.headers
        .set(HeaderName::Accept, "text/nobodyKnowsThis, application/*");
    assert_eq!(screen_request(&ok, &ua()), Ok(()));
    ok.headers.set(HeaderName::Accept, "application/sdp;q=0");
    assert_eq!(screen_request(&ok, &ua()).unwrap_err().status.as_u16(), 406);
}

#[test]
fn method_not_allowed_gets_405_with_allow_and_ack_is_never_answered() {
    let mut req = request("3.3.11");
    req.method = sip_msg::Method::Publish;
    req.headers.set(HeaderName::CSeq, "39234321 PUBLISH");
    let resp = screen_request(&req, &ua()).unwrap_err();
    assert_eq!(resp.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(
        resp.headers
            .get(&HeaderName::Allow)
            .is_some_and(|a| a.contains("INVITE"))
    );
    // The To tag is derived from the request: a retransmission gets the same one.
    let again = screen_request(&req, &ua()).unwrap_err();
    assert_eq!(
        again.headers.get(&HeaderName::To),
        resp.headers.get(&HeaderName::To)
    );

    // Even an ACK with an unknown scheme and Require is silently accepted here.
    let mut ack = request("3.3.2");
    ack.method = sip_msg::Method::Ack;
    ack.headers.set(HeaderName::Require, "nothingSupportsThis");
    assert_eq!(screen_request(&ack, &ua()), Ok(()));
}

#[test]
fn content_encoding_and_optional_bodies() {
    // An SDP body in an unknown coding: 415, saying which codings we take.
    let mut req = request("3.3.15");
    req.headers.remove(&HeaderName::Accept);
    assert_eq!(screen_request(&req, &ua()), Ok(()));
    req.headers.push(HeaderName::ContentEncoding, "x-snappy");
    let resp = screen_request(&req, &ua()).unwrap_err();
    assert_eq!(resp.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        resp.headers.get(&HeaderName::AcceptEncoding),
        Some("identity")
    );

    // An unknown body marked optional may be ignored (§8.2.3): not refused.
    let mut invut = request("3.3.6");
    invut
        .headers
        .push(HeaderName::ContentDisposition, "session;handling=optional");
    assert_eq!(screen_request(&invut, &ua()), Ok(()));
}
