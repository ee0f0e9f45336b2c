//! Hunt groups without sockets: the core ringing a plan of stages on a virtual clock (a stage's
//! timeout or its members' refusals start the next one, the first answer wins, the caller's
//! CANCEL and the call's ring timeout stop the hunt, one 180 per call), and the pure function
//! turning a group's strategy and the replica's hunt state into those stages.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use call_control::b2bua::hunt::{self, HuntState, MemberContacts, TrackedCall};
use call_control::b2bua::{Action, B2bua, Input, LegTarget, Stage};
use directory::model::HuntStrategy;
use sip_msg::{HeaderName, Method, Request, Response, SipMessage, StatusCode, build_response};
use support::{core, ended, ended_record, flow, responses};

const SDP: &str = "v=0\r\no=a 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";

fn caller_invite() -> Request {
    let text = format!(
        "INVITE sip:2000@city.test SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-a1;received=127.0.0.1;rport=5060\r\n\
         Max-Forwards: 70\r\nFrom: \"Alice\" <sip:1001@city.test>;tag=alice\r\n\
         To: <sip:2000@city.test>\r\nCall-ID: hunt-call@192.0.2.10\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:1001@192.0.2.10:5060>\r\nContent-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    );
    match sip_msg::parse_datagram(text.as_bytes()).unwrap() {
        SipMessage::Request(r) => r,
        SipMessage::Response(_) => panic!("not a request"),
    }
}

/// Member `n`'s phone: AOR `sip:user20n@city.test`, contact on 192.0.2.2n.
fn phone(n: u16) -> LegTarget {
    LegTarget {
        aor: format!("sip:user20{n}@city.test"),
        contact: format!("sip:user20{n}@192.0.2.2{n}:5060"),
        flow: flow("edge-b", &format!("198.51.100.2{n}:40000")),
    }
}

fn member(n: u16) -> MemberContacts {
    MemberContacts {
        number: format!("20{n}"),
        targets: vec![phone(n)],
    }
}

fn unregistered(n: u16) -> MemberContacts {
    MemberContacts {
        number: format!("20{n}"),
        targets: Vec::new(),
    }
}

/// One member per stage, `seconds` each (a linear group of `phones`).
fn linear(phones: &[u16], seconds: u64) -> Vec<Stage> {
    phones
        .iter()
        .map(|&n| Stage {
            targets: vec![phone(n)],
            timeout: Some(Duration::from_secs(seconds)),
        })
        .collect()
}

fn start_hunt(b2bua: &mut B2bua, now: Instant, stages: Vec<Stage>) -> Vec<Action> {
    b2bua.handle(
        now,
        Input::InvitePlan {
            edge_id: "edge-a".into(),
            handle: "h1".into(),
            request: Box::new(caller_invite()),
            flow: flow("edge-a", "203.0.113.5:5060"),
            plan: Ok(stages),
        },
    )
}

/// The requests sent to callee legs: (call_ref, request).
fn sends(actions: &[Action]) -> Vec<(String, Request)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send {
                call_ref, request, ..
            } => Some((call_ref.clone(), (**request).clone())),
            _ => None,
        })
        .collect()
}

fn sent(actions: &[Action], method: Method) -> Vec<(String, Request)> {
    sends(actions)
        .into_iter()
        .filter(|(_, r)| r.method == method)
        .collect()
}

/// The contacts (Request-URIs) of the INVITEs among the actions.
fn invited(actions: &[Action]) -> Vec<String> {
    sent(actions, Method::Invite)
        .iter()
        .map(|(_, r)| r.uri.to_string())
        .collect()
}

fn answer(invite: &Request, status: StatusCode, tag: &str, with_sdp: bool) -> Response {
    let mut r = build_response(invite, status, Some(tag));
    if status == StatusCode::OK {
        r.headers
            .push(HeaderName::Contact, format!("<{}>", invite.uri));
    }
    if with_sdp {
        r.headers.push(HeaderName::ContentType, "application/sdp");
        r.headers
            .set(HeaderName::ContentLength, SDP.len().to_string());
        r.body = bytes::Bytes::from_static(SDP.as_bytes());
    }
    r
}

fn result(
    b2bua: &mut B2bua,
    now: Instant,
    leg: &(String, Request),
    response: Response,
) -> Vec<Action> {
    b2bua.handle(
        now,
        Input::Result {
            call_ref: leg.0.clone(),
            response: Box::new(response),
        },
    )
}

fn caller_cancel(b2bua: &mut B2bua, now: Instant) -> Vec<Action> {
    let mut cancel = caller_invite();
    cancel.method = Method::Cancel;
    b2bua.handle(
        now,
        Input::InDialog {
            edge_id: "edge-a".into(),
            handle: String::new(),
            request: Box::new(cancel),
            flow: flow("edge-a", "203.0.113.5:5060"),
        },
    )
}

/// The caller hangs up an answered call (`ok` is the 200 it got).
fn caller_bye(b2bua: &mut B2bua, now: Instant, ok: &Response) -> Vec<Action> {
    let to = ok.headers.get(&HeaderName::To).unwrap().to_owned();
    let text = format!(
        "BYE sip:cc@127.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-a9\r\n\
         Max-Forwards: 70\r\nFrom: <sip:1001@city.test>;tag=alice\r\nTo: {to}\r\n\
         Call-ID: hunt-call@192.0.2.10\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    );
    let SipMessage::Request(bye) = sip_msg::parse_datagram(text.as_bytes()).unwrap() else {
        panic!("not a request")
    };
    b2bua.handle(
        now,
        Input::InDialog {
            edge_id: "edge-a".into(),
            handle: "h9".into(),
            request: Box::new(bye),
            flow: flow("edge-a", "203.0.113.5:5060"),
        },
    )
}

const S: Duration = Duration::from_secs(1);

#[test]
fn linear_rings_the_second_member_when_the_first_members_ring_time_passes() {
    let (mut b2bua, t0) = core();
    let out = start_hunt(&mut b2bua, t0, linear(&[1, 2, 3], 10));
    assert_eq!(
        invited(&out),
        ["sip:user201@192.0.2.21:5060"],
        "only the first member rings"
    );
    let first = sent(&out, Method::Invite).remove(0);
    let out = result(
        &mut b2bua,
        t0 + S,
        &first,
        answer(&first.1, StatusCode::RINGING, "m1", false),
    );
    assert_eq!(responses(&out)[0].status, StatusCode::RINGING);
    assert_eq!(
        b2bua.poll_timeout(),
        Some(t0 + 10 * S),
        "the stage's ring time, not the call's"
    );
    assert!(b2bua.handle(t0 + 9 * S, Input::Timeout).is_empty());

    let out = b2bua.handle(t0 + 10 * S, Input::Timeout);
    let cancels = sent(&out, Method::Cancel);
    assert_eq!(cancels.len(), 1, "{out:?}");
    assert_eq!(cancels[0].0, first.0, "the first member's leg is cancelled");
    assert_eq!(invited(&out), ["sip:user202@192.0.2.22:5060"]);
    assert!(
        responses(&out).is_empty(),
        "the caller keeps ringing: {out:?}"
    );
    assert_eq!(ended(&out), None);
    let second = sent(&out, Method::Invite).remove(0);
    // The first member's 487 (the answer to our CANCEL) does not end the hunt.
    let out = result(
        &mut b2bua,
        t0 + 10 * S,
        &first,
        answer(&first.1, StatusCode::REQUEST_TERMINATED, "m1", false),
    );
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(b2bua.poll_timeout(), Some(t0 + 20 * S));
    assert!(b2bua.handle(t0 + 19 * S, Input::Timeout).is_empty());

    // The second member answers: the caller gets the 200, the callee the ACK.
    let out = result(
        &mut b2bua,
        t0 + 12 * S,
        &second,
        answer(&second.1, StatusCode::OK, "m2", true),
    );
    let ok = &responses(&out)[0];
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.body.as_ref(), SDP.as_bytes());
    assert_eq!(sent(&out, Method::Ack).len(), 1);
    assert!(
        sent(&out, Method::Cancel).is_empty(),
        "the first member was cancelled already"
    );
    assert_eq!(
        b2bua.poll_timeout(),
        None,
        "answered: no stage or ring timeout left"
    );
    assert!(
        b2bua.handle(t0 + 20 * S, Input::Timeout).is_empty(),
        "no third stage"
    );
    let out = caller_bye(&mut b2bua, t0 + 60 * S, ok);
    assert_eq!(ended(&out), Some(("answered", 200)));
    // The record names the group as dialled and the member who answered.
    let record = ended_record(&out).expect("a record");
    assert_eq!(record.callee, "sip:2000@city.test");
    assert_eq!(record.answered_by.as_deref(), Some("sip:user202@city.test"));
    assert_eq!(b2bua.live_calls(), 0);
}

/// A linear hunt of three members, the first having rung out at t0 + 10 s: the core, t0, the
/// first member's leg and the second's.
fn second_stage_ringing() -> (B2bua, Instant, (String, Request), (String, Request)) {
    let (mut b2bua, t0) = core();
    let out = start_hunt(&mut b2bua, t0, linear(&[1, 2, 3], 10));
    let first = sent(&out, Method::Invite).remove(0);
    let out = b2bua.handle(t0 + 10 * S, Input::Timeout);
    let second = sent(&out, Method::Invite).remove(0);
    assert_eq!(second.1.uri.to_string(), "sip:user202@192.0.2.22:5060");
    (b2bua, t0, first, second)
}

#[test]
fn linear_moves_on_at_once_when_the_first_member_is_busy() {
    let (mut b2bua, t0) = core();
    let out = start_hunt(&mut b2bua, t0, linear(&[1, 2], 10));
    let first = sent(&out, Method::Invite).remove(0);
    let out = result(
        &mut b2bua,
        t0 + S,
        &first,
        answer(&first.1, StatusCode::BUSY_HERE, "m1", false),
    );
    assert_eq!(
        invited(&out),
        ["sip:user202@192.0.2.22:5060"],
        "no waiting for the ring time"
    );
    assert!(
        responses(&out).is_empty(),
        "the caller gets no 486: {out:?}"
    );
    assert!(sent(&out, Method::Cancel).is_empty(), "nothing to cancel");
    assert_eq!(
        b2bua.poll_timeout(),
        Some(t0 + 11 * S),
        "the second stage's own ring time"
    );
    let second = sent(&out, Method::Invite).remove(0);
    let out = result(
        &mut b2bua,
        t0 + 2 * S,
        &second,
        answer(&second.1, StatusCode::OK, "m2", true),
    );
    assert_eq!(responses(&out)[0].status, StatusCode::OK);
    assert!(ended(&out).is_none());
    assert_eq!(b2bua.live_calls(), 1);
}

#[test]
fn every_member_busy_gives_the_caller_486() {
    let (mut b2bua, t0) = core();
    let out = start_hunt(&mut b2bua, t0, linear(&[1, 2, 3], 10));
    let mut leg = sent(&out, Method::Invite).remove(0);
    let mut finals = Vec::new();
    for n in 1..=3 {
        let out = result(
            &mut b2bua,
            t0 + n * S,
            &leg,
            answer(&leg.1, StatusCode::BUSY_HERE, "m", false),
        );
        finals.extend(responses(&out).into_iter().map(|r| r.status));
        match sent(&out, Method::Invite).pop() {
            Some(next) => leg = next,
            None => {
                assert_eq!(n, 3, "a stage per member");
                assert_eq!(ended(&out), Some(("busy", 486)));
            }
        }
    }
    assert_eq!(
        finals,
        [StatusCode::BUSY_HERE],
        "one final answer, after the last member"
    );
    assert_eq!(b2bua.live_calls(), 0);
}

#[test]
fn a_member_ringing_out_then_a_busy_one_gives_486_and_a_missing_one_480() {
    // The best failure over the whole hunt: busy wins over a member who did not answer.
    let (mut b2bua, t0) = core();
    start_hunt(&mut b2bua, t0, linear(&[1, 2], 10));
    let out = b2bua.handle(t0 + 10 * S, Input::Timeout);
    let second = sent(&out, Method::Invite).remove(0);
    let out = result(
        &mut b2bua,
        t0 + 11 * S,
        &second,
        answer(&second.1, StatusCode::BUSY_HERE, "m2", false),
    );
    assert_eq!(responses(&out)[0].status, StatusCode::BUSY_HERE);
    assert_eq!(b2bua.live_calls(), 0);

    // A member who rang out, then one whose phone is gone (404): 480, not 404.
    let (mut b2bua, t0) = core();
    let out = start_hunt(&mut b2bua, t0, linear(&[1, 2], 10));
    let first = sent(&out, Method::Invite).remove(0);
    let out = b2bua.handle(t0 + 10 * S, Input::Timeout);
    let second = sent(&out, Method::Invite).remove(0);
    // The first member's 487 answers our CANCEL: it stays a member who did not answer.
    result(
        &mut b2bua,
        t0 + 10 * S,
        &first,
        answer(&first.1, StatusCode::REQUEST_TERMINATED, "m1", false),
    );
    let out = result(
        &mut b2bua,
        t0 + 11 * S,
        &second,
        answer(&second.1, StatusCode::NOT_FOUND, "m2", false),
    );
    assert_eq!(
        responses(&out)[0].status,
        StatusCode::TEMPORARILY_UNAVAILABLE
    );
    assert_eq!(ended(&out), Some(("failed", 480)));
    assert_eq!(b2bua.live_calls(), 0);
}

#[test]
fn the_last_members_ring_time_ends_the_hunt_with_480() {
    let (mut b2bua, t0) = core();
    let out = start_hunt(&mut b2bua, t0, linear(&[1, 2], 10));
    let first = sent(&out, Method::Invite).remove(0);
    let out = b2bua.handle(t0 + 10 * S, Input::Timeout);
    let second = sent(&out, Method::Invite).remove(0);
    // The first member's 487 answers our CANCEL: it stays a member who did not answer.
    result(
        &mut b2bua,
        t0 + 10 * S,
        &first,
        answer(&first.1, StatusCode::REQUEST_TERMINATED, "m1", false),
    );
    assert_eq!(
        b2bua.poll_timeout(),
        Some(t0 + 20 * S),
        "before the call's 30 s"
    );
    let out = b2bua.handle(t0 + 20 * S, Input::Timeout);
    let cancels = sent(&out, Method::Cancel);
    assert_eq!(cancels.len(), 1);
    assert_eq!(cancels[0].0, second.0);
    assert!(invited(&out).is_empty());
    assert_eq!(
        responses(&out)[0].status,
        StatusCode::TEMPORARILY_UNAVAILABLE
    );
    assert_eq!(ended(&out), Some(("no-answer", 480)));
    let record = ended_record(&out).expect("a record");
    assert_eq!(record.callee, "sip:2000@city.test");
    assert_eq!(record.answered_by, None, "nobody answered");
    assert_eq!(b2bua.live_calls(), 0);
}

#[test]
fn the_calls_ring_timeout_bounds_the_whole_hunt() {
    // Three members of 20 s under a 30 s ring timeout: the third never rings.
    let (mut b2bua, t0) = core();
    start_hunt(&mut b2bua, t0, linear(&[1, 2, 3], 20));
    let out = b2bua.handle(t0 + 20 * S, Input::Timeout);
    let second = sent(&out, Method::Invite).remove(0);
    assert_eq!(
        b2bua.poll_timeout(),
        Some(t0 + 30 * S),
        "the call's ring timeout comes first"
    );
    let out = b2bua.handle(t0 + 30 * S, Input::Timeout);
    let cancels = sent(&out, Method::Cancel);
    assert_eq!(cancels.len(), 1, "{out:?}");
    assert_eq!(cancels[0].0, second.0);
    assert!(invited(&out).is_empty(), "no third stage: {out:?}");
    assert_eq!(
        responses(&out)[0].status,
        StatusCode::TEMPORARILY_UNAVAILABLE
    );
    assert_eq!(ended(&out), Some(("no-answer", 480)));
    assert_eq!(b2bua.live_calls(), 0);
    assert_eq!(b2bua.poll_timeout(), None);
}

#[test]
fn a_cancel_from_the_caller_during_the_second_stage_stops_the_hunt() {
    let (mut b2bua, t0, first, second) = second_stage_ringing();
    result(
        &mut b2bua,
        t0 + 11 * S,
        &second,
        answer(&second.1, StatusCode::RINGING, "m2", false),
    );
    let out = caller_cancel(&mut b2bua, t0 + 12 * S);
    let cancels = sent(&out, Method::Cancel);
    assert_eq!(
        cancels.len(),
        1,
        "only the ringing stage is cancelled: {out:?}"
    );
    assert_eq!(cancels[0].0, second.0);
    assert_ne!(cancels[0].0, first.0);
    assert!(invited(&out).is_empty());
    assert_eq!(ended(&out), Some(("cancelled", 487)));
    assert_eq!(b2bua.live_calls(), 0);
    assert_eq!(b2bua.poll_timeout(), None, "no stage timeout left behind");
    assert!(
        b2bua.handle(t0 + 20 * S, Input::Timeout).is_empty(),
        "no third stage"
    );
    // The second member's 487 finds no call.
    let out = result(
        &mut b2bua,
        t0 + 12 * S,
        &second,
        answer(&second.1, StatusCode::REQUEST_TERMINATED, "m2", false),
    );
    assert!(out.is_empty());
}

#[test]
fn the_caller_hears_180_once_but_a_later_stages_early_media_is_passed() {
    let (mut b2bua, t0) = core();
    let out = start_hunt(&mut b2bua, t0, linear(&[1, 2, 3], 10));
    let first = sent(&out, Method::Invite).remove(0);
    let out = result(
        &mut b2bua,
        t0 + S,
        &first,
        answer(&first.1, StatusCode::RINGING, "m1", false),
    );
    assert_eq!(responses(&out)[0].status, StatusCode::RINGING);
    let out = b2bua.handle(t0 + 10 * S, Input::Timeout);
    let second = sent(&out, Method::Invite).remove(0);
    let out = result(
        &mut b2bua,
        t0 + 11 * S,
        &second,
        answer(&second.1, StatusCode::RINGING, "m2", false),
    );
    assert!(responses(&out).is_empty(), "no second 180: {out:?}");
    // A late 180 from the cancelled first member is not passed either.
    let out = result(
        &mut b2bua,
        t0 + 11 * S,
        &first,
        answer(&first.1, StatusCode::RINGING, "m1", false),
    );
    assert!(out.is_empty(), "{out:?}");
    let out = b2bua.handle(t0 + 20 * S, Input::Timeout);
    let third = sent(&out, Method::Invite).remove(0);
    let out = result(
        &mut b2bua,
        t0 + 21 * S,
        &third,
        answer(&third.1, StatusCode::SESSION_PROGRESS, "m3", true),
    );
    let progress = responses(&out);
    assert_eq!(progress.len(), 1, "{out:?}");
    assert_eq!(progress[0].status, StatusCode::SESSION_PROGRESS);
    assert_eq!(
        progress[0].body.as_ref(),
        SDP.as_bytes(),
        "early media from the third member"
    );
}

#[test]
fn a_later_stages_180_is_passed_when_the_caller_heard_nothing_yet() {
    let (mut b2bua, t0, _first, second) = second_stage_ringing();
    let out = result(
        &mut b2bua,
        t0 + 11 * S,
        &second,
        answer(&second.1, StatusCode::RINGING, "m2", false),
    );
    assert_eq!(responses(&out)[0].status, StatusCode::RINGING);
}

#[test]
fn a_2xx_crossing_the_cancel_of_an_earlier_stage_still_wins() {
    // The first member picked up as its ring time ran out: the call is theirs, the second
    // member's leg is cancelled.
    let (mut b2bua, t0, first, second) = second_stage_ringing();
    let out = result(
        &mut b2bua,
        t0 + 10 * S,
        &first,
        answer(&first.1, StatusCode::OK, "m1", true),
    );
    assert_eq!(responses(&out)[0].status, StatusCode::OK);
    let cancels = sent(&out, Method::Cancel);
    assert_eq!(cancels.len(), 1);
    assert_eq!(cancels[0].0, second.0);
    assert_eq!(sent(&out, Method::Ack).len(), 1);
    assert_eq!(b2bua.live_calls(), 1);
    assert_eq!(b2bua.poll_timeout(), None);
}

#[test]
fn a_simultaneous_plan_rings_everyone_for_the_groups_ring_time() {
    let (mut b2bua, t0) = core();
    let plan = hunt::stages(
        "2000",
        HuntStrategy::Simultaneous,
        &[member(1), member(2), member(3)],
        Duration::from_secs(15),
        &HuntState::default(),
    );
    let out = start_hunt(&mut b2bua, t0, plan);
    let legs = sent(&out, Method::Invite);
    assert_eq!(legs.len(), 3);
    assert_eq!(b2bua.poll_timeout(), Some(t0 + 15 * S));
    // The second answers: the others are cancelled, as for any forked call.
    let out = result(
        &mut b2bua,
        t0 + S,
        &legs[1],
        answer(&legs[1].1, StatusCode::OK, "m2", true),
    );
    assert_eq!(responses(&out)[0].status, StatusCode::OK);
    let cancelled: Vec<String> = sent(&out, Method::Cancel)
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    assert_eq!(cancelled, [legs[0].0.clone(), legs[2].0.clone()]);

    // Nobody answers: 480 at the group's ring time.
    let (mut b2bua, t0) = core();
    let plan = hunt::stages(
        "2000",
        HuntStrategy::Simultaneous,
        &[member(1), member(2)],
        Duration::from_secs(15),
        &HuntState::default(),
    );
    start_hunt(&mut b2bua, t0, plan);
    let out = b2bua.handle(t0 + 15 * S, Input::Timeout);
    assert_eq!(sent(&out, Method::Cancel).len(), 2);
    assert_eq!(ended(&out), Some(("no-answer", 480)));
    assert_eq!(b2bua.live_calls(), 0);
}

#[test]
fn a_plan_without_any_contact_gets_480_and_empty_stages_are_skipped() {
    let (mut b2bua, t0) = core();
    let out = start_hunt(
        &mut b2bua,
        t0,
        vec![Stage {
            targets: vec![],
            timeout: Some(10 * S),
        }],
    );
    assert_eq!(
        responses(&out)[0].status,
        StatusCode::TEMPORARILY_UNAVAILABLE
    );
    assert_eq!(ended(&out), Some(("failed", 480)));
    assert_eq!(b2bua.live_calls(), 0);

    let (mut b2bua, t0) = core();
    let mut plan = linear(&[1, 2], 10);
    plan.insert(
        1,
        Stage {
            targets: vec![],
            timeout: Some(10 * S),
        },
    );
    start_hunt(&mut b2bua, t0, plan);
    let out = b2bua.handle(t0 + 10 * S, Input::Timeout);
    assert_eq!(
        invited(&out),
        ["sip:user202@192.0.2.22:5060"],
        "straight to the next member"
    );
}

// ---- the strategies (pure) ----

/// The members each stage rings, by extension number (from the contacts).
fn order(stages: &[Stage]) -> Vec<Vec<String>> {
    stages
        .iter()
        .map(|s| {
            s.targets
                .iter()
                .map(|t| {
                    t.aor
                        .trim_start_matches("sip:user")
                        .trim_end_matches("@city.test")
                        .to_owned()
                })
                .collect()
        })
        .collect()
}

fn strs(list: &[&[&str]]) -> Vec<Vec<String>> {
    list.iter()
        .map(|s| s.iter().map(|x| (*x).to_owned()).collect())
        .collect()
}

#[test]
fn simultaneous_is_one_stage_and_linear_one_member_per_stage_skipping_the_unregistered() {
    let members = [member(1), unregistered(2), member(3), member(4)];
    let state = HuntState::default();
    let ring = Duration::from_secs(12);
    let simultaneous = hunt::stages("2000", HuntStrategy::Simultaneous, &members, ring, &state);
    assert_eq!(order(&simultaneous), strs(&[&["201", "203", "204"]]));
    assert_eq!(simultaneous[0].timeout, Some(ring));
    let linear = hunt::stages("2000", HuntStrategy::Linear, &members, ring, &state);
    assert_eq!(order(&linear), strs(&[&["201"], &["203"], &["204"]]));
    assert!(linear.iter().all(|s| s.timeout == Some(ring)));
    // A member with two phones rings both in its stage.
    let mut two_phones = member(1);
    two_phones.targets.push(LegTarget {
        contact: "sip:user201@192.0.2.99:5060".into(),
        ..phone(1)
    });
    let linear = hunt::stages(
        "2000",
        HuntStrategy::Linear,
        &[two_phones, member(2)],
        ring,
        &state,
    );
    assert_eq!(linear[0].targets.len(), 2);
    assert_eq!(linear[1].targets.len(), 1);
    // Nobody registered: no stage.
    for strategy in [
        HuntStrategy::Simultaneous,
        HuntStrategy::Linear,
        HuntStrategy::RoundRobin,
        HuntStrategy::LongestIdle,
    ] {
        assert!(hunt::stages("2000", strategy, &[unregistered(1)], ring, &state).is_empty());
        assert!(hunt::stages("2000", strategy, &[], ring, &state).is_empty());
    }
}

#[test]
fn round_robin_starts_after_the_last_answerer_and_wraps() {
    let members = [member(1), member(2), member(3), member(4)];
    let ring = Duration::from_secs(10);
    let mut state = HuntState::default();
    let rr = |state: &HuntState, members: &[MemberContacts]| {
        order(&hunt::stages(
            "2000",
            HuntStrategy::RoundRobin,
            members,
            ring,
            state,
        ))
    };
    assert_eq!(
        rr(&state, &members),
        strs(&[&["201"], &["202"], &["203"], &["204"]]),
        "no call yet: from the first"
    );
    state.answered("2000", 1, "202");
    assert_eq!(
        rr(&state, &members),
        strs(&[&["203"], &["204"], &["201"], &["202"]])
    );
    state.answered("2000", 3, "204");
    assert_eq!(
        rr(&state, &members),
        strs(&[&["201"], &["202"], &["203"], &["204"]]),
        "wraps"
    );
    // Another group's answers do not move this one.
    state.answered("3000", 0, "201");
    assert_eq!(rr(&state, &members)[0], ["201"]);
    // An unregistered successor is skipped, not waited for.
    state.answered("2000", 0, "201");
    let with_gap = [member(1), unregistered(2), member(3), member(4)];
    assert_eq!(rr(&state, &with_gap), strs(&[&["203"], &["204"], &["201"]]));
    // The last answerer left the group: the hunt starts where it stood (its successor).
    state.answered("2000", 1, "202");
    let without = [member(1), member(3), member(4)];
    assert_eq!(rr(&state, &without), strs(&[&["203"], &["204"], &["201"]]));
}

#[test]
#[allow(clippy::disallowed_methods)] // the origin of the virtual clock
fn longest_idle_rings_the_never_called_first_then_the_earliest_ended() {
    let t0 = Instant::now();
    let members = [member(1), member(2), member(3), member(4)];
    let ring = Duration::from_secs(10);
    let mut state = HuntState::default();
    let idle = |state: &HuntState| {
        order(&hunt::stages(
            "2000",
            HuntStrategy::LongestIdle,
            &members,
            ring,
            state,
        ))
    };
    assert_eq!(
        idle(&state),
        strs(&[&["201"], &["202"], &["203"], &["204"]]),
        "all idle alike: directory order"
    );
    state.call_ended("201", t0 + 50 * S);
    state.call_ended("203", t0 + 20 * S);
    assert_eq!(
        idle(&state),
        strs(&[&["202"], &["204"], &["203"], &["201"]])
    );
    state.call_ended("202", t0 + 10 * S);
    state.call_ended("204", t0 + 60 * S);
    assert_eq!(
        idle(&state),
        strs(&[&["202"], &["203"], &["201"], &["204"]])
    );
    // A new call of 202 ends: it goes to the back.
    state.call_ended("202", t0 + 70 * S);
    assert_eq!(
        idle(&state),
        strs(&[&["203"], &["201"], &["204"], &["202"]])
    );
}

#[test]
#[allow(clippy::disallowed_methods)] // the origin of the virtual clock
fn the_state_learns_the_answerer_from_its_aor_and_the_idle_time_from_the_end() {
    let t0 = Instant::now();
    let members = vec![member(1), member(2), member(3)];
    let ring = Duration::from_secs(10);
    let mut state = HuntState::default();
    state.track(
        "c1",
        TrackedCall {
            group: Some(("2000".into(), members.clone())),
            extensions: vec!["1001".into()],
        },
    );
    state.call_answered("c1", "sip:user202@city.test");
    // A session refresh rewrites the snapshot: a second "answer" changes nothing.
    state.call_answered("c1", "sip:user203@city.test");
    let rr = order(&hunt::stages(
        "2000",
        HuntStrategy::RoundRobin,
        &members,
        ring,
        &state,
    ));
    assert_eq!(rr[0], ["203"], "after 202, who answered");
    state.call_finished("c1", true, t0 + 40 * S);
    assert_eq!(state.tracked_calls(), 0);
    let idle = order(&hunt::stages(
        "2000",
        HuntStrategy::LongestIdle,
        &members,
        ring,
        &state,
    ));
    assert_eq!(
        idle,
        strs(&[&["201"], &["203"], &["202"]]),
        "202 just finished a call"
    );

    // A call to a member's extension (not through the group) counts for its idle time too;
    // an unanswered one does not.
    state.track(
        "c2",
        TrackedCall {
            group: None,
            extensions: vec!["1001".into(), "201".into()],
        },
    );
    state.call_finished("c2", true, t0 + 50 * S);
    state.track(
        "c3",
        TrackedCall {
            group: None,
            extensions: vec!["203".into()],
        },
    );
    state.call_finished("c3", false, t0 + 60 * S);
    let idle = order(&hunt::stages(
        "2000",
        HuntStrategy::LongestIdle,
        &members,
        ring,
        &state,
    ));
    assert_eq!(idle, strs(&[&["203"], &["202"], &["201"]]));
    assert_eq!(state.tracked_calls(), 0);
}
