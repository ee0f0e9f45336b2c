//! Moving an answered call in the B2BUA core (ADR 0020), on a virtual clock: new offers to
//! both phones (our own re-INVITEs, ACKed, answered to nobody), one offer at a time, a phone
//! that lost the dialog ending the call, and legs pointed at flows through other edges —
//! by the service after a failover, or by a phone's own request arriving through another edge.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use bytes::Bytes;
use call_control::b2bua::{Action, B2buaConfig, CAUSE_REANCHOR_FAILED, Input, ReofferError};
use proto::v1::Flow;
use sip_msg::{HeaderName, Method, Request, StatusCode, build_response};
use support::answered::*;
use support::{flow, responses, sends};

const TO_CALLER: &str = "v=0\r\no=b 1 2 IN IP4 192.0.2.20\r\ns=-\r\nc=IN IP4 10.9.0.1\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\n";
const TO_CALLEE: &str = "v=0\r\no=a 1 2 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 10.9.0.1\r\nt=0 0\r\nm=audio 30002 RTP/AVP 0\r\n";

/// The flow each `Send` goes through, with its request.
fn sent(actions: &[Action]) -> Vec<(String, Request, Flow)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send {
                call_ref,
                request,
                flow,
            } => Some((call_ref.clone(), (**request).clone(), flow.clone())),
            _ => None,
        })
        .collect()
}

fn plain() -> Answered {
    answered(B2buaConfig::default(), "", &[])
}

fn reoffer(call: &mut Answered) -> Vec<Action> {
    call.b2bua
        .reoffer(
            CALLER_CALL_ID,
            Bytes::from_static(TO_CALLER.as_bytes()),
            Bytes::from_static(TO_CALLEE.as_bytes()),
        )
        .unwrap()
}

#[test]
fn new_offers_reach_both_phones_in_their_dialogs_and_their_answers_are_acked() {
    let mut call = plain();
    let out = reoffer(&mut call);
    let sent = sent(&out);
    assert_eq!(sent.len(), 2, "{out:?}");
    let (to_caller_ref, to_caller, caller_flow) = &sent[0];
    assert_eq!(to_caller.method, Method::Invite);
    assert_eq!(to_caller.headers.call_id(), Some(CALLER_CALL_ID));
    assert_eq!(
        to_caller.uri.to_string(),
        "sip:1001@192.0.2.10:5060",
        "the caller's Contact"
    );
    assert_eq!(to_caller.body.as_ref(), TO_CALLER.as_bytes());
    assert!(to_caller.headers.get(&HeaderName::Contact).is_some());
    assert_eq!(caller_flow.edge_id, "edge-a");
    let (to_callee_ref, to_callee, callee_flow) = &sent[1];
    assert_eq!(to_callee.method, Method::Invite);
    assert_eq!(to_callee.headers.call_id(), call.b_invite.headers.call_id());
    assert_eq!(to_callee.body.as_ref(), TO_CALLEE.as_bytes());
    assert_eq!(callee_flow.edge_id, "edge-b");
    // CSeqs go on from the dialog's: the callee leg's INVITE had 1.
    assert_eq!(to_callee.headers.cseq().unwrap().unwrap().seq, 2);

    for (call_ref, request, edge) in [
        (to_caller_ref, to_caller, "edge-a"),
        (to_callee_ref, to_callee, "edge-b"),
    ] {
        let ok = ok_to(request, None, &[]);
        let answer = result(&mut call.b2bua, call.t0, call_ref, ok);
        assert!(
            responses(&answer).is_empty(),
            "nobody to answer: {answer:?}"
        );
        let acks = self::sent(&answer);
        assert_eq!(acks.len(), 1, "{answer:?}");
        assert_eq!(acks[0].1.method, Method::Ack);
        assert_eq!(
            acks[0].1.headers.cseq().unwrap().unwrap().seq,
            request.headers.cseq().unwrap().unwrap().seq
        );
        assert_eq!(acks[0].2.edge_id, edge);
    }
    // Done: another offer may go.
    assert!(
        call.b2bua
            .reoffer(CALLER_CALL_ID, Bytes::new(), Bytes::new())
            .is_ok()
    );
}

#[test]
fn one_offer_at_a_time_ours_or_a_phones() {
    let mut call = plain();
    let out = reoffer(&mut call);
    assert_eq!(
        call.b2bua
            .reoffer(CALLER_CALL_ID, Bytes::from_static(b"x"), Bytes::new())
            .unwrap_err(),
        ReofferError::OfferPending
    );
    // A phone's re-INVITE meanwhile gets 491 (RFC 3261 §14.2).
    let hold = from_caller(&call.a_ok, "INVITE", 2, "", SDP);
    let glare = call
        .b2bua
        .handle(call.t0, in_dialog("edge-a", "h-glare", hold));
    assert_eq!(responses(&glare)[0].status.as_u16(), 491);
    // A provisional answer to ours goes nowhere.
    let (call_ref, request, _) = sent(&out).remove(0);
    let trying = build_response(&request, StatusCode::RINGING, Some("alice"));
    assert!(result(&mut call.b2bua, call.t0, &call_ref, trying).is_empty());
    // Unknown and unanswered calls.
    assert_eq!(
        call.b2bua
            .reoffer("nope", Bytes::new(), Bytes::new())
            .unwrap_err(),
        ReofferError::Unknown
    );
    let (mut ringing, t0) = core_with(B2buaConfig::default());
    invite(&mut ringing, t0, caller_invite(""));
    assert_eq!(
        ringing
            .reoffer(CALLER_CALL_ID, Bytes::new(), Bytes::new())
            .unwrap_err(),
        ReofferError::NotAnswered
    );
}

#[test]
fn a_phone_that_lost_the_dialog_ends_the_call_with_a_bye_to_the_other() {
    let mut call = plain();
    let out = reoffer(&mut call);
    let (to_callee_ref, to_callee, _) = sent(&out).remove(1);
    let gone = build_response(&to_callee, StatusCode::CALL_DOES_NOT_EXIST, Some("bob"));
    let end = result(&mut call.b2bua, call.t0, &to_callee_ref, gone);
    let byes: Vec<_> = sent(&end)
        .into_iter()
        .filter(|(_, r, _)| r.method == Method::Bye)
        .collect();
    assert_eq!(byes.len(), 2, "both legs get a BYE: {end:?}");
    let record = end
        .iter()
        .find_map(|a| match a {
            Action::Ended(r) => Some(r.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(record.cause, Some(CAUSE_REANCHOR_FAILED));
    assert!(end.iter().any(|a| matches!(a, Action::Forget { .. })));
    assert!(!call.b2bua.knows(CALLER_CALL_ID));
}

#[test]
fn a_refused_offer_other_than_481_or_408_leaves_the_call() {
    let mut call = plain();
    let out = reoffer(&mut call);
    let (call_ref, request, _) = sent(&out).remove(0);
    let refused = build_response(&request, StatusCode::new(488).unwrap(), Some("alice"));
    assert!(result(&mut call.b2bua, call.t0, &call_ref, refused).is_empty());
    assert!(call.b2bua.knows(CALLER_CALL_ID));
}

#[test]
fn rehomed_legs_are_reached_through_their_new_edges_and_stored_so() {
    let mut call = plain();
    let mut caller_flow = flow("edge-c", "203.0.113.5:5060");
    caller_flow.datacenter = "dc-b".into();
    let callee_flow = flow("edge-d", "198.51.100.20:40000");
    assert!(call.b2bua.rehome(
        CALLER_CALL_ID,
        Some(caller_flow.clone()),
        Some(callee_flow.clone())
    ));
    let snapshot = call.b2bua.snapshot_of(CALLER_CALL_ID).unwrap();
    assert_eq!(snapshot.caller_flow, Some(caller_flow));
    assert_eq!(snapshot.caller_edge, "edge-c");
    assert_eq!(snapshot.callee_flow, Some(callee_flow));
    let out = reoffer(&mut call);
    let edges: Vec<String> = sent(&out).into_iter().map(|(_, _, f)| f.edge_id).collect();
    assert_eq!(edges, ["edge-c", "edge-d"]);
    assert!(!call.b2bua.rehome("nope", None, None));
}

#[test]
fn a_phones_request_through_another_edge_moves_its_leg_there() {
    let mut call = plain();
    // Bob registered again through edge-e and hangs up through it; Alice is reached as before.
    let bye = from_callee(&call.b_invite, "BYE", 2, "", "");
    let out = call.b2bua.handle(
        call.t0,
        Input::InDialog {
            edge_id: "edge-e".into(),
            handle: "h-bye".into(),
            request: Box::new(bye),
            flow: flow("edge-e", "198.51.100.20:40000"),
        },
    );
    let to_alice = sent(&out);
    assert_eq!(to_alice[0].1.method, Method::Bye);
    assert_eq!(to_alice[0].2.edge_id, "edge-a");

    // Alice re-INVITEs through edge-f: the relay goes to Bob, and Bob's BYE later reaches
    // Alice through edge-f.
    let mut call = plain();
    let hold = from_caller(&call.a_ok, "INFO", 2, "", "");
    call.b2bua.handle(
        call.t0,
        Input::InDialog {
            edge_id: "edge-f".into(),
            handle: "h-info".into(),
            request: Box::new(hold),
            flow: flow("edge-f", "203.0.113.5:5060"),
        },
    );
    let bye = from_callee(&call.b_invite, "BYE", 2, "", "");
    let out = call
        .b2bua
        .handle(call.t0, in_dialog("edge-b", "h-bye", bye));
    let to_alice = sent(&out);
    assert_eq!(to_alice[0].1.method, Method::Bye);
    assert_eq!(to_alice[0].2.edge_id, "edge-f");
    assert_eq!(sends(&out).len(), 1);
}
