//! The B2BUA core on a virtual clock, without sockets: basic call, busy, forking (first answer
//! wins, the others are cancelled), CANCEL from the caller, ring timeout, BYE from either side,
//! refusals, and every call's state released at the end (live calls back to zero).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use call_control::b2bua::{Action, B2bua, Input, LegTarget};
use sip_msg::{HeaderName, Method, Request, Response, StatusCode, build_response};
use support::{core, ended, flow, parse_request, responses, sends};

const SDP: &str = "v=0\r\no=a 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";

fn caller_invite() -> Request {
    parse_request(&format!(
        "INVITE sip:1002@city.test SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-a1;received=127.0.0.1;rport=5060\r\n\
         Max-Forwards: 70\r\nFrom: \"Alice\" <sip:1001@city.test>;tag=alice\r\n\
         To: <sip:1002@city.test>\r\nCall-ID: a-call@192.0.2.10\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:1001@192.0.2.10:5060>\r\nContent-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    ))
}

fn target(n: u16) -> LegTarget {
    LegTarget {
        aor: "sip:1002@city.test".into(),
        contact: format!("sip:1002@192.0.2.{n}:5060"),
        flow: flow("edge-b", &format!("198.51.100.{n}:40000")),
    }
}

fn start_call(b2bua: &mut B2bua, now: Instant, targets: Vec<LegTarget>) -> Vec<Action> {
    b2bua.handle(
        now,
        Input::Invite {
            edge_id: "edge-a".into(),
            handle: "h1".into(),
            request: Box::new(caller_invite()),
            flow: flow("edge-a", "203.0.113.5:5060"),
            targets: Ok(targets),
        },
    )
}

/// The callee's answer to a leg's INVITE.
fn answer(invite: &Request, status: StatusCode, tag: &str, with_sdp: bool) -> Response {
    let mut r = build_response(invite, status, Some(tag));
    if status == StatusCode::OK {
        r.headers
            .push(HeaderName::Contact, "<sip:1002@192.0.2.20:5060>");
    }
    if with_sdp {
        r.headers.push(HeaderName::ContentType, "application/sdp");
        r.headers
            .set(HeaderName::ContentLength, SDP.len().to_string());
        r.body = bytes::Bytes::from_static(SDP.as_bytes());
    }
    r
}

#[test]
fn a_basic_call_rings_answers_and_ends_with_a_bye_from_the_caller() {
    let (mut b2bua, t0) = core();
    let out = start_call(&mut b2bua, t0, vec![target(20)]);
    let legs = sends(&out);
    assert_eq!(legs.len(), 1);
    let (call_ref, invite) = &legs[0];
    assert_eq!(invite.uri.to_string(), "sip:1002@192.0.2.20:5060");
    assert_ne!(
        invite.headers.call_id(),
        Some("a-call@192.0.2.10"),
        "a new dialog"
    );
    assert_eq!(invite.body, caller_invite().body, "the offer is passed on");
    assert!(
        invite
            .headers
            .get(&HeaderName::Contact)
            .unwrap()
            .contains("127.0.0.1:5070")
    );

    let out = b2bua.handle(
        t0,
        Input::Result {
            call_ref: call_ref.clone(),
            response: Box::new(answer(invite, StatusCode::RINGING, "bob", false)),
        },
    );
    assert_eq!(responses(&out)[0].status, StatusCode::RINGING);
    let out = b2bua.handle(
        t0 + Duration::from_secs(2),
        Input::Result {
            call_ref: call_ref.clone(),
            response: Box::new(answer(invite, StatusCode::OK, "bob", true)),
        },
    );
    let ok = &responses(&out)[0];
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(
        ok.body.as_ref(),
        SDP.as_bytes(),
        "the answer goes to the caller"
    );
    let acks = sends(&out);
    assert_eq!(acks[0].1.method, Method::Ack);
    assert!(
        acks[0]
            .1
            .headers
            .get(&HeaderName::To)
            .unwrap()
            .contains("tag=bob")
    );
    assert_eq!(b2bua.live_calls(), 1);

    // The caller hangs up: 200 to the caller, BYE to the callee.
    let to_tag = ok
        .headers
        .to_header()
        .unwrap()
        .unwrap()
        .params
        .get("tag")
        .flatten()
        .unwrap()
        .to_owned();
    let bye = parse_request(&format!(
        "BYE sip:cc@127.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-a2\r\n\
         Max-Forwards: 70\r\nFrom: <sip:1001@city.test>;tag=alice\r\nTo: <sip:1002@city.test>;tag={to_tag}\r\n\
         Call-ID: a-call@192.0.2.10\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    ));
    let out = b2bua.handle(
        t0 + Duration::from_secs(60),
        Input::InDialog {
            edge_id: "edge-a".into(),
            handle: "h2".into(),
            request: Box::new(bye),
            flow: flow("edge-a", "203.0.113.5:5060"),
        },
    );
    assert_eq!(responses(&out)[0].status, StatusCode::OK);
    let byes = sends(&out);
    assert_eq!(byes[0].1.method, Method::Bye);
    assert_eq!(byes[0].1.uri.to_string(), "sip:1002@192.0.2.20:5060");
    assert_eq!(ended(&out), Some(("answered", 200)));
    assert_eq!(b2bua.live_calls(), 0);
}

#[test]
fn busy_callee_gives_486_and_frees_the_call() {
    let (mut b2bua, t0) = core();
    let out = start_call(&mut b2bua, t0, vec![target(20)]);
    let (call_ref, invite) = sends(&out).remove(0);
    let out = b2bua.handle(
        t0,
        Input::Result {
            call_ref,
            response: Box::new(answer(&invite, StatusCode::BUSY_HERE, "bob", false)),
        },
    );
    assert_eq!(responses(&out)[0].status, StatusCode::BUSY_HERE);
    assert_eq!(ended(&out), Some(("busy", 486)));
    assert_eq!(b2bua.live_calls(), 0);
}

#[test]
fn forked_legs_ring_in_parallel_and_the_first_answer_cancels_the_others() {
    let (mut b2bua, t0) = core();
    let out = start_call(&mut b2bua, t0, vec![target(20), target(21), target(22)]);
    let legs = sends(&out);
    assert_eq!(legs.len(), 3);
    let (winner_ref, winner) = &legs[1];
    let out = b2bua.handle(
        t0,
        Input::Result {
            call_ref: winner_ref.clone(),
            response: Box::new(answer(winner, StatusCode::OK, "desk", true)),
        },
    );
    let sent = sends(&out);
    let cancels: Vec<_> = sent
        .iter()
        .filter(|(_, r)| r.method == Method::Cancel)
        .collect();
    assert_eq!(cancels.len(), 2, "{sent:?}");
    let cancelled: Vec<&String> = cancels.iter().map(|(r, _)| r).collect();
    assert!(cancelled.contains(&&legs[0].0) && cancelled.contains(&&legs[2].0));
    assert_eq!(responses(&out)[0].status, StatusCode::OK);
}

#[test]
fn a_cancel_from_the_caller_cancels_every_leg() {
    let (mut b2bua, t0) = core();
    let out = start_call(&mut b2bua, t0, vec![target(20), target(21)]);
    assert_eq!(sends(&out).len(), 2);
    let mut cancel = caller_invite();
    cancel.method = Method::Cancel;
    let out = b2bua.handle(
        t0 + Duration::from_secs(3),
        Input::InDialog {
            edge_id: "edge-a".into(),
            handle: String::new(),
            request: Box::new(cancel),
            flow: flow("edge-a", "203.0.113.5:5060"),
        },
    );
    let sent = sends(&out);
    assert_eq!(sent.len(), 2);
    assert!(sent.iter().all(|(_, r)| r.method == Method::Cancel));
    assert!(responses(&out).is_empty(), "the edge already answered 487");
    assert_eq!(ended(&out), Some(("cancelled", 487)));
    assert_eq!(b2bua.live_calls(), 0);
}

#[test]
fn no_answer_within_the_ring_time_gives_480() {
    let (mut b2bua, t0) = core();
    start_call(&mut b2bua, t0, vec![target(20)]);
    assert_eq!(b2bua.poll_timeout(), Some(t0 + Duration::from_secs(30)));
    assert!(
        b2bua
            .handle(t0 + Duration::from_secs(29), Input::Timeout)
            .is_empty()
    );
    let out = b2bua.handle(t0 + Duration::from_secs(30), Input::Timeout);
    assert_eq!(sends(&out)[0].1.method, Method::Cancel);
    assert_eq!(
        responses(&out)[0].status,
        StatusCode::TEMPORARILY_UNAVAILABLE
    );
    assert_eq!(ended(&out), Some(("no-answer", 480)));
    assert_eq!(b2bua.live_calls(), 0);
}

#[test]
fn the_callee_hangs_up_and_the_caller_gets_a_bye_in_its_own_dialog() {
    let (mut b2bua, t0) = core();
    let out = start_call(&mut b2bua, t0, vec![target(20)]);
    let (call_ref, invite) = sends(&out).remove(0);
    b2bua.handle(
        t0,
        Input::Result {
            call_ref,
            response: Box::new(answer(&invite, StatusCode::OK, "bob", true)),
        },
    );
    let bye = parse_request(&format!(
        "BYE sip:cc@127.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bK-b2\r\n\
         Max-Forwards: 70\r\nFrom: <sip:1002@city.test>;tag=bob\r\n{}\r\n\
         Call-ID: {}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
        format_args!("To: {}", invite.headers.get(&HeaderName::From).unwrap()),
        invite.headers.call_id().unwrap()
    ));
    let out = b2bua.handle(
        t0 + Duration::from_secs(10),
        Input::InDialog {
            edge_id: "edge-b".into(),
            handle: "hb".into(),
            request: Box::new(bye),
            flow: flow("edge-b", "198.51.100.20:40000"),
        },
    );
    assert_eq!(responses(&out)[0].status, StatusCode::OK);
    let (_, to_caller) = sends(&out).remove(0);
    assert_eq!(to_caller.method, Method::Bye);
    assert_eq!(to_caller.uri.to_string(), "sip:1001@192.0.2.10:5060");
    assert_eq!(to_caller.headers.call_id(), Some("a-call@192.0.2.10"));
    assert!(
        to_caller
            .headers
            .get(&HeaderName::To)
            .unwrap()
            .contains("tag=alice")
    );
    assert_eq!(b2bua.live_calls(), 0);
}

#[test]
fn refusals_and_unregistered_callees_are_answered_at_once() {
    let (mut b2bua, t0) = core();
    let out = b2bua.handle(
        t0,
        Input::Invite {
            edge_id: "edge-a".into(),
            handle: "h1".into(),
            request: Box::new(caller_invite()),
            flow: flow("edge-a", "203.0.113.5:5060"),
            targets: Err((StatusCode::FORBIDDEN, "National calls barred".into())),
        },
    );
    let r = &responses(&out)[0];
    assert_eq!(
        (r.status, r.reason.as_str()),
        (StatusCode::FORBIDDEN, "National calls barred")
    );
    let out = start_call(&mut b2bua, t0, vec![]);
    assert_eq!(
        responses(&out)[0].status,
        StatusCode::TEMPORARILY_UNAVAILABLE
    );
    assert_eq!(b2bua.live_calls(), 0);
    // A BYE for no call: 481.
    let stray = parse_request(
        "BYE sip:cc@127.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bK-x\r\n\
         Max-Forwards: 70\r\nFrom: <sip:x@city.test>;tag=x\r\nTo: <sip:y@city.test>;tag=y\r\n\
         Call-ID: nothing\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
    );
    let out = b2bua.handle(
        t0,
        Input::InDialog {
            edge_id: "edge-a".into(),
            handle: "h9".into(),
            request: Box::new(stray),
            flow: flow("edge-a", "203.0.113.5:5060"),
        },
    );
    assert_eq!(responses(&out)[0].status, StatusCode::CALL_DOES_NOT_EXIST);
}

/// Sets up an answered call; returns the core, the callee leg's INVITE and the A-side 200.
fn answered_call() -> (B2bua, Instant, Request, Response) {
    let (mut b2bua, t0) = core();
    let out = start_call(&mut b2bua, t0, vec![target(20)]);
    let (call_ref, invite) = sends(&out).remove(0);
    let out = b2bua.handle(
        t0,
        Input::Result {
            call_ref,
            response: Box::new(answer(&invite, StatusCode::OK, "bob", true)),
        },
    );
    let ok = responses(&out).remove(0);
    (b2bua, t0, invite, ok)
}

fn reinvite_from_caller(ok: &Response, cseq: u32, sdp: &str) -> Request {
    let to = ok.headers.get(&HeaderName::To).unwrap();
    parse_request(&format!(
        "INVITE sip:cc@127.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-re{cseq}\r\n\
         Max-Forwards: 70\r\nFrom: \"Alice\" <sip:1001@city.test>;tag=alice\r\nTo: {to}\r\n\
         Call-ID: a-call@192.0.2.10\r\nCSeq: {cseq} INVITE\r\nContact: <sip:1001@192.0.2.10:5060>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    ))
}

fn in_dialog_from(edge: &str, handle: &str, request: Request) -> Input {
    Input::InDialog {
        edge_id: edge.into(),
        handle: handle.into(),
        request: Box::new(request),
        flow: flow(edge, "203.0.113.5:5060"),
    }
}

#[test]
fn hold_and_resume_are_relayed_to_the_other_leg_and_glare_gets_491() {
    let (mut b2bua, t0, _invite, ok) = answered_call();
    let hold_sdp = SDP.replace(
        "m=audio 4000 RTP/AVP 0\r\n",
        "m=audio 4000 RTP/AVP 0\r\na=sendonly\r\n",
    );
    let out = b2bua.handle(
        t0,
        in_dialog_from("edge-a", "h-re1", reinvite_from_caller(&ok, 2, &hold_sdp)),
    );
    let (relay_ref, relayed) = sends(&out).remove(0);
    assert_eq!(relayed.method, Method::Invite);
    assert!(
        relayed
            .headers
            .get(&HeaderName::To)
            .unwrap()
            .contains("tag=bob"),
        "inside the callee's dialog"
    );
    assert_eq!(
        relayed.body.as_ref(),
        hold_sdp.as_bytes(),
        "the hold offer reaches the callee"
    );

    // While it is pending, another re-INVITE (from either side) is refused: 491.
    let out = b2bua.handle(
        t0,
        in_dialog_from("edge-a", "h-re2", reinvite_from_caller(&ok, 3, &hold_sdp)),
    );
    assert_eq!(responses(&out)[0].status.as_u16(), 491);

    // The callee accepts (recvonly); the caller gets the answer on its transaction, the callee
    // its ACK.
    let recvonly = SDP.replace(
        "m=audio 4000 RTP/AVP 0\r\n",
        "m=audio 4000 RTP/AVP 0\r\na=recvonly\r\n",
    );
    let mut callee_ok = build_response(&relayed, StatusCode::OK, None);
    callee_ok
        .headers
        .push(HeaderName::ContentType, "application/sdp");
    callee_ok
        .headers
        .set(HeaderName::ContentLength, recvonly.len().to_string());
    callee_ok.body = bytes::Bytes::from(recvonly.clone());
    let out = b2bua.handle(
        t0,
        Input::Result {
            call_ref: relay_ref,
            response: Box::new(callee_ok),
        },
    );
    let to_caller = responses(&out).remove(0);
    assert_eq!(to_caller.status, StatusCode::OK);
    assert_eq!(to_caller.body.as_ref(), recvonly.as_bytes());
    assert_eq!(
        to_caller.headers.cseq().unwrap().unwrap().seq,
        2,
        "answers the caller's re-INVITE"
    );
    let ack = sends(&out).remove(0).1;
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(
        ack.headers.cseq().unwrap().unwrap().seq,
        relayed.headers.cseq().unwrap().unwrap().seq
    );

    // Resume goes through the same way now that nothing is pending.
    let out = b2bua.handle(
        t0,
        in_dialog_from("edge-a", "h-re3", reinvite_from_caller(&ok, 4, SDP)),
    );
    assert_eq!(sends(&out).remove(0).1.method, Method::Invite);
}

#[test]
fn bad_offers_are_refused_with_a_warning_and_leave_no_call_behind() {
    let (mut b2bua, t0) = core();
    let cases = [
        ("application/sdp", "v=0\r\nthis is not sdp\r\n", 400),
        ("text/plain", "hello", 415),
        (
            "application/sdp",
            "v=0\r\no=a 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\n",
            488,
        ),
    ];
    for (content_type, body, status) in cases {
        let mut invite = caller_invite();
        invite.headers.set(HeaderName::ContentType, content_type);
        invite
            .headers
            .set(HeaderName::ContentLength, body.len().to_string());
        invite.body = bytes::Bytes::from(body.to_owned());
        let out = b2bua.handle(
            t0,
            Input::Invite {
                edge_id: "edge-a".into(),
                handle: "h1".into(),
                request: Box::new(invite),
                flow: flow("edge-a", "203.0.113.5:5060"),
                targets: Ok(vec![target(20)]),
            },
        );
        let r = responses(&out).remove(0);
        assert_eq!(r.status.as_u16(), status, "{content_type} {body:?}");
        assert!(
            r.headers.get(&HeaderName::Warning).is_some(),
            "a Warning says why"
        );
        assert!(sends(&out).is_empty(), "nothing rings");
    }
    assert_eq!(b2bua.live_calls(), 0);
}

#[test]
fn a_late_offer_is_completed_by_the_callers_ack() {
    let (mut b2bua, t0) = core();
    let mut invite = caller_invite();
    invite.headers.remove(&HeaderName::ContentType);
    invite.headers.set(HeaderName::ContentLength, "0");
    invite.body = bytes::Bytes::new();
    let out = b2bua.handle(
        t0,
        Input::Invite {
            edge_id: "edge-a".into(),
            handle: "h1".into(),
            request: Box::new(invite),
            flow: flow("edge-a", "203.0.113.5:5060"),
            targets: Ok(vec![target(20)]),
        },
    );
    let (call_ref, b_invite) = sends(&out).remove(0);
    assert!(b_invite.body.is_empty(), "the callee gets no offer either");
    let out = b2bua.handle(
        t0,
        Input::Result {
            call_ref,
            response: Box::new(answer(&b_invite, StatusCode::OK, "bob", true)),
        },
    );
    assert_eq!(
        responses(&out)[0].body.as_ref(),
        SDP.as_bytes(),
        "the callee's offer reaches the caller"
    );
    assert!(
        sends(&out).is_empty(),
        "no ACK to the callee before the caller's answer"
    );
    let ok = responses(&out).remove(0);
    let to = ok.headers.get(&HeaderName::To).unwrap();
    let ack = parse_request(&format!(
        "ACK sip:cc@127.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-ack\r\n\
         Max-Forwards: 70\r\nFrom: <sip:1001@city.test>;tag=alice\r\nTo: {to}\r\n\
         Call-ID: a-call@192.0.2.10\r\nCSeq: 1 ACK\r\nContent-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    ));
    let out = b2bua.handle(t0, in_dialog_from("edge-a", "", ack));
    let (_, b_ack) = sends(&out).remove(0);
    assert_eq!(b_ack.method, Method::Ack);
    assert_eq!(
        b_ack.body.as_ref(),
        SDP.as_bytes(),
        "the caller's answer reaches the callee"
    );
}

/// Resident memory of this process, in bytes (Linux).
fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

#[test]
fn an_established_call_costs_well_under_32_kib() {
    let (mut b2bua, t0) = core();
    const CALLS: usize = 5_000;
    let before = rss_bytes();
    for i in 0..CALLS {
        let mut invite = caller_invite();
        let call_id = format!("mem-{i}@192.0.2.10");
        invite.headers.set(HeaderName::CallId, call_id);
        let out = b2bua.handle(
            t0,
            Input::Invite {
                edge_id: "edge-a".into(),
                handle: format!("h{i}"),
                request: Box::new(invite),
                flow: flow("edge-a", "203.0.113.5:5060"),
                targets: Ok(vec![target(20)]),
            },
        );
        let (call_ref, b_invite) = sends(&out).remove(0);
        b2bua.handle(
            t0,
            Input::Result {
                call_ref,
                response: Box::new(answer(&b_invite, StatusCode::OK, "bob", true)),
            },
        );
    }
    assert_eq!(b2bua.live_calls(), CALLS);
    let per_call = rss_bytes().saturating_sub(before) / CALLS;
    eprintln!("{CALLS} established calls: ~{per_call} bytes of RSS each");
    assert!(per_call < 32 * 1024, "{per_call} bytes per call");
}

#[test]
fn a_retransmitted_200_is_acked_again_and_never_hangs_the_call_up() {
    // The edge passes every 2xx retransmission up (RFC 6026): one arrives when our ACK was
    // lost or slow. It must be ACKed again, not taken for another fork answering late.
    let (mut b2bua, t0) = core();
    let out = start_call(&mut b2bua, t0, vec![target(20)]);
    let (call_ref, invite) = sends(&out).remove(0);
    let ok = answer(&invite, StatusCode::OK, "bob", true);
    let first = b2bua.handle(
        t0,
        Input::Result {
            call_ref: call_ref.clone(),
            response: Box::new(ok.clone()),
        },
    );
    let a_ok = responses(&first).remove(0);
    let again = b2bua.handle(
        t0 + Duration::from_millis(500),
        Input::Result {
            call_ref,
            response: Box::new(ok),
        },
    );
    let sent = sends(&again);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].1.method, Method::Ack);
    assert!(responses(&again).is_empty(), "the caller has its 200");
    assert_eq!(b2bua.live_calls(), 1);

    // The same for the 200 of a relayed re-INVITE.
    let out = b2bua.handle(
        t0,
        in_dialog_from("edge-a", "h-re", reinvite_from_caller(&a_ok, 2, SDP)),
    );
    let (relay_ref, relayed) = sends(&out).remove(0);
    let relayed_ok = answer(&relayed, StatusCode::OK, "bob", true);
    let first = b2bua.handle(
        t0,
        Input::Result {
            call_ref: relay_ref.clone(),
            response: Box::new(relayed_ok.clone()),
        },
    );
    let ack = sends(&first).remove(0).1;
    let again = b2bua.handle(
        t0 + Duration::from_millis(500),
        Input::Result {
            call_ref: relay_ref,
            response: Box::new(relayed_ok),
        },
    );
    let sent = sends(&again);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].1.method, Method::Ack);
    assert_eq!(
        sent[0].1.headers.cseq().unwrap().unwrap().seq,
        ack.headers.cseq().unwrap().unwrap().seq
    );
    assert!(responses(&again).is_empty());
    assert_eq!(b2bua.live_calls(), 1);
}

#[test]
fn a_hangup_from_calanque_byes_both_phones_and_records_the_cause() {
    let (mut b2bua, t0, invite, _ok) = answered_call();
    // Ringing or unknown calls are not hung up this way.
    let out = b2bua.handle(
        t0,
        Input::Hangup {
            call_id: "no-such-call".into(),
            cause: call_control::b2bua::CAUSE_MEDIA_TIMEOUT,
        },
    );
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(b2bua.live_calls(), 1);

    // By the callee leg's Call-ID (what any leg's event would name).
    let leg_call_id = invite.headers.call_id().unwrap().to_owned();
    let out = b2bua.handle(
        t0 + Duration::from_secs(60),
        Input::Hangup {
            call_id: leg_call_id.clone(),
            cause: call_control::b2bua::CAUSE_MEDIA_TIMEOUT,
        },
    );
    let byes = sends(&out);
    assert_eq!(byes.len(), 2, "a BYE to each phone: {out:?}");
    assert!(byes.iter().all(|(_, r)| r.method == Method::Bye));
    let call_ids: Vec<&str> = byes
        .iter()
        .map(|(_, r)| r.headers.call_id().unwrap())
        .collect();
    assert!(call_ids.contains(&leg_call_id.as_str()));
    assert!(call_ids.contains(&"a-call@192.0.2.10"));
    assert!(byes.iter().all(|(_, r)| {
        r.headers
            .get(&HeaderName::Reason)
            .is_some_and(|v| v.contains("media-timeout"))
    }));
    let record = out
        .iter()
        .find_map(|a| match a {
            Action::Ended(r) => Some(r.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!((record.outcome, record.status), ("answered", 200));
    assert_eq!(record.cause, Some(call_control::b2bua::CAUSE_MEDIA_TIMEOUT));
    assert!(out.iter().any(|a| matches!(a, Action::Forget { .. })));
    assert_eq!(b2bua.live_calls(), 0, "no call state left");
}
