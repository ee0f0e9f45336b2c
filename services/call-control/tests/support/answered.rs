//! An answered call in the B2BUA core, on a virtual clock, and the requests and responses its
//! phones send: what the session timer and the re-anchoring tests start from.

use std::time::Instant;

use call_control::b2bua::{Action, B2bua, B2buaConfig, Input, LegTarget};
use sip_msg::{HeaderName, Method, Request, Response, StatusCode, build_response};

use super::{flow, parse_request, responses, sends};

pub(crate) const SDP: &str = "v=0\r\no=a 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
pub(crate) const CALLER_CALL_ID: &str = "st-call@192.0.2.10";

/// The caller's INVITE with extra header lines (`"Session-Expires: 1800\r\n"`…).
pub(crate) fn caller_invite(extra: &str) -> Request {
    parse_request(&format!(
        "INVITE sip:1002@city.test SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-st1;received=127.0.0.1;rport=5060\r\n\
         Max-Forwards: 70\r\nFrom: \"Alice\" <sip:1001@city.test>;tag=alice\r\n\
         To: <sip:1002@city.test>\r\nCall-ID: {CALLER_CALL_ID}\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:1001@192.0.2.10:5060>\r\nAllow: INVITE, ACK, BYE, CANCEL, UPDATE, INFO\r\n\
         {extra}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    ))
}

#[allow(clippy::disallowed_methods)] // the origin of the virtual clock the core is driven on
pub(crate) fn core_with(config: B2buaConfig) -> (B2bua, Instant) {
    let start = Instant::now();
    (B2bua::new(config, start, 11), start)
}

pub(crate) fn invite(b2bua: &mut B2bua, now: Instant, request: Request) -> Vec<Action> {
    b2bua.handle(
        now,
        Input::Invite {
            edge_id: "edge-a".into(),
            handle: "h-inv".into(),
            request: Box::new(request),
            flow: flow("edge-a", "203.0.113.5:5060"),
            targets: Ok(vec![LegTarget {
                aor: "sip:1002@city.test".into(),
                contact: "sip:1002@192.0.2.20:5060".into(),
                flow: flow("edge-b", "198.51.100.20:40000"),
            }]),
        },
    )
}

/// A 2xx (with SDP and Contact) to `request`, with extra headers.
pub(crate) fn ok_to(request: &Request, tag: Option<&str>, extra: &[(&str, &str)]) -> Response {
    let mut r = build_response(request, StatusCode::OK, tag);
    r.headers
        .push(HeaderName::Contact, "<sip:1002@192.0.2.20:5060>");
    for (name, value) in extra {
        r.headers.push(HeaderName::from_wire(name), *value);
    }
    if request.method == Method::Invite {
        r.headers.push(HeaderName::ContentType, "application/sdp");
        r.headers
            .set(HeaderName::ContentLength, SDP.len().to_string());
        r.body = bytes::Bytes::from_static(SDP.as_bytes());
    }
    r
}

pub(crate) fn result(
    b2bua: &mut B2bua,
    now: Instant,
    call_ref: &str,
    response: Response,
) -> Vec<Action> {
    b2bua.handle(
        now,
        Input::Result {
            call_ref: call_ref.to_owned(),
            response: Box::new(response),
        },
    )
}

/// An answered call: the core, t0, the callee leg's INVITE, the caller's 200, the actions of
/// the answer.
pub(crate) struct Answered {
    pub(crate) b2bua: B2bua,
    pub(crate) t0: Instant,
    pub(crate) b_invite: Request,
    pub(crate) a_ok: Response,
    pub(crate) actions: Vec<Action>,
}

pub(crate) fn answered(
    config: B2buaConfig,
    caller_extra: &str,
    callee_extra: &[(&str, &str)],
) -> Answered {
    let (mut b2bua, t0) = core_with(config);
    let out = invite(&mut b2bua, t0, caller_invite(caller_extra));
    let (call_ref, b_invite) = sends(&out).remove(0);
    let actions = result(
        &mut b2bua,
        t0,
        &call_ref,
        ok_to(&b_invite, Some("bob"), callee_extra),
    );
    let a_ok = responses(&actions).remove(0);
    assert_eq!(a_ok.status, StatusCode::OK);
    Answered {
        b2bua,
        t0,
        b_invite,
        a_ok,
        actions,
    }
}

/// An answered call where both ends do timers (1800 s, the caller refreshes).
pub(crate) fn answered_with_timers() -> Answered {
    answered(
        B2buaConfig::default(),
        "Session-Expires: 1800;refresher=uac\r\nSupported: timer\r\n",
        &[
            ("Session-Expires", "1800;refresher=uac"),
            ("Require", "timer"),
        ],
    )
}

/// An in-dialog request from the caller (towards us, in its dialog).
pub(crate) fn from_caller(
    a_ok: &Response,
    method: &str,
    cseq: u32,
    extra: &str,
    body: &str,
) -> Request {
    let to = a_ok.headers.get(&HeaderName::To).unwrap();
    let content_type = if body.is_empty() {
        String::new()
    } else if method == "INFO" {
        "Content-Type: application/dtmf-relay\r\n".to_owned()
    } else {
        "Content-Type: application/sdp\r\n".to_owned()
    };
    parse_request(&format!(
        "{method} sip:cc@127.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-a{cseq}\r\n\
         Max-Forwards: 70\r\nFrom: \"Alice\" <sip:1001@city.test>;tag=alice\r\nTo: {to}\r\n\
         Call-ID: {CALLER_CALL_ID}\r\nCSeq: {cseq} {method}\r\nContact: <sip:1001@192.0.2.10:5060>\r\n\
         {extra}{content_type}Content-Length: {}\r\n\r\n{body}",
        body.len()
    ))
}

/// An in-dialog request from the callee (towards us, in the callee leg's dialog).
pub(crate) fn from_callee(
    b_invite: &Request,
    method: &str,
    cseq: u32,
    extra: &str,
    body: &str,
) -> Request {
    let our_from = b_invite.headers.get(&HeaderName::From).unwrap();
    let content_type = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    parse_request(&format!(
        "{method} sip:cc@127.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bK-b{cseq}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:1002@city.test>;tag=bob\r\nTo: {our_from}\r\n\
         Call-ID: {}\r\nCSeq: {cseq} {method}\r\nContact: <sip:1002@192.0.2.20:5060>\r\n\
         {extra}{content_type}Content-Length: {}\r\n\r\n{body}",
        b_invite.headers.call_id().unwrap(),
        body.len()
    ))
}

pub(crate) fn in_dialog(edge: &str, handle: &str, request: Request) -> Input {
    Input::InDialog {
        edge_id: edge.into(),
        handle: handle.into(),
        request: Box::new(request),
        flow: flow(edge, "203.0.113.5:5060"),
    }
}
