//! The dialog layer between two user agents, alice (UAC) and bob (UAS), with proxies that
//! record-route, on a virtual clock: setup, in-dialog requests, routing, forking, target
//! refresh, CSeq rules and the 2xx retransmission of §13.3.1.4.

use std::time::{Duration, Instant};

use sip_core::dialog::{
    AnswerEvent, AnswerRetransmitter, Dialog, DialogError, DialogId, DialogRole, DialogState,
    DialogStore, InDialogError, dialog_response,
};
use sip_core::{IdGenerator, TimerConfig};
use sip_msg::{HeaderName, Method, Request, Response, StatusCode, Uri};

const CALL_ID: &str = "a84b4c76e66710@pc33.atlanta.example.com";
const ALICE_TAG: &str = "1928301774";

fn uri(s: &str) -> Uri {
    Uri::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn status(code: u16) -> StatusCode {
    StatusCode::new(code).unwrap_or_else(|| panic!("{code} is a status code"))
}

/// Adds the top Via, as the transaction layer does for requests the dialog layer builds.
fn with_via(mut request: Request, ids: &mut IdGenerator) -> Request {
    let via = format!(
        "SIP/2.0/UDP pc33.atlanta.example.com;branch={}",
        ids.branch()
    );
    request.headers.push_front(HeaderName::Via, via);
    request
}

/// Alice's INVITE as it reaches bob: `record_routes` added by the proxies on the way (the
/// last proxy's on top).
fn invite(record_routes: &[&str]) -> Request {
    let mut r = Request::new(Method::Invite, uri("sip:bob@biloxi.example.com"));
    let h = &mut r.headers;
    h.push(
        HeaderName::Via,
        "SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds",
    );
    h.push(HeaderName::MaxForwards, "70");
    h.push(HeaderName::To, "Bob <sip:bob@biloxi.example.com>");
    h.push(
        HeaderName::From,
        format!("Alice <sip:alice@atlanta.example.com>;tag={ALICE_TAG}"),
    );
    h.push(HeaderName::CallId, CALL_ID);
    h.push(HeaderName::CSeq, "314159 INVITE");
    h.push(HeaderName::Contact, "<sip:alice@pc33.atlanta.example.com>");
    for rr in record_routes {
        h.push(HeaderName::RecordRoute, *rr);
    }
    r
}

/// Bob's answer from a given device (fork branch).
fn answer(invite: &Request, code: u16, tag: &str, contact: &str) -> Response {
    dialog_response(invite, status(code), tag, &uri(contact))
}

fn cseq(request: &Request) -> (u32, Method) {
    let c = request.headers.cseq().ok().flatten().expect("CSeq");
    (c.seq, c.method)
}

fn routes(request: &Request) -> Vec<String> {
    request
        .headers
        .get_all(&HeaderName::Route)
        .map(str::to_owned)
        .collect()
}

fn alice_id(remote_tag: &str) -> DialogId {
    DialogId {
        call_id: CALL_ID.into(),
        local_tag: ALICE_TAG.into(),
        remote_tag: remote_tag.into(),
    }
}

/// The base of the virtual clock; nothing else reads time.
#[allow(clippy::disallowed_methods)]
fn epoch() -> Instant {
    Instant::now()
}

#[test]
fn call_setup_and_teardown_through_loose_routing_proxies() {
    let mut ids = IdGenerator::new(1);
    // alice → p1 → p2 → bob; p2's Record-Route is on top.
    let inv = invite(&["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]);

    // Bob rings, then answers; both responses carry the Record-Route back.
    let ringing = answer(&inv, 180, "314159", "sip:bob@192.0.2.4");
    assert_eq!(ringing.headers.count(&HeaderName::RecordRoute), 2);
    let mut bob = DialogStore::new();
    let bob_dialog = Dialog::new_uas(&inv, &ringing).unwrap();
    assert_eq!(bob_dialog.state(), DialogState::Early);
    assert_eq!(bob_dialog.role(), DialogRole::Uas);
    let bob_id = bob_dialog.id().clone();
    bob.insert(bob_dialog);

    let mut alice = DialogStore::new();
    let id = alice
        .on_uac_response(&inv, &ringing)
        .unwrap()
        .expect("early dialog");
    assert_eq!(id, alice_id("314159"));
    assert_eq!(alice.get(&id).unwrap().state(), DialogState::Early);

    let ok = answer(&inv, 200, "314159", "sip:bob@192.0.2.4");
    bob.get_mut(&bob_id).unwrap().on_local_response(&ok);
    assert_eq!(bob.get(&bob_id).unwrap().state(), DialogState::Confirmed);
    assert_eq!(alice.on_uac_response(&inv, &ok).unwrap(), Some(id.clone()));

    let a = alice.get_mut(&id).unwrap();
    assert_eq!(a.state(), DialogState::Confirmed);
    assert_eq!(a.remote_target(), &uri("sip:bob@192.0.2.4"));
    // UAC route set: Record-Route reversed, so p1 (our first hop) comes first.
    let rs: Vec<String> = a.route_set().iter().map(ToString::to_string).collect();
    assert_eq!(rs, ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]);
    assert_eq!(a.local_seq(), Some(314159));
    assert_eq!(a.remote_seq(), None);
    assert!(!a.is_secure());

    // ACK: INVITE's CSeq number, loose routing (Request-URI = remote target).
    let ack = a.ack_for_2xx(&ok).unwrap();
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(ack.uri, uri("sip:bob@192.0.2.4"));
    assert_eq!(cseq(&ack), (314159, Method::Ack));
    assert_eq!(
        routes(&ack),
        ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    );
    assert_eq!(ack.headers.get(&HeaderName::MaxForwards), Some("70"));
    assert!(
        ack.headers.get(&HeaderName::Via).is_none(),
        "the caller adds the Via"
    );
    // A retransmitted 200 gets the same ACK.
    assert_eq!(a.ack_for_2xx(&ok).unwrap(), ack);
    let ack = with_via(ack, &mut ids);
    assert_eq!(bob.on_request(&ack), Ok(Some(bob_id.clone())));

    // Bob hangs up: UAS route set is the Record-Route as received (p2 first).
    let b = bob.get_mut(&bob_id).unwrap();
    let bye = b.build_request(Method::Bye).unwrap();
    assert_eq!(b.state(), DialogState::Terminated);
    assert_eq!(bye.uri, uri("sip:alice@pc33.atlanta.example.com"));
    assert_eq!(
        routes(&bye),
        ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
    );
    assert_eq!(
        cseq(&bye),
        (1, Method::Bye),
        "an empty local sequence starts at 1"
    );
    let from = bye.headers.from_header().unwrap().unwrap();
    let to = bye.headers.to_header().unwrap().unwrap();
    assert_eq!((from.tag(), to.tag()), (Some("314159"), Some(ALICE_TAG)));
    assert_eq!(bye.headers.call_id(), Some(CALL_ID));

    let bye = with_via(bye, &mut ids);
    assert_eq!(alice.on_request(&bye), Ok(Some(id.clone())));
    assert_eq!(alice.get(&id).unwrap().state(), DialogState::Terminated);
    assert_eq!(alice.remove_terminated(), 1);
    assert!(alice.is_empty());
    // Anything more in that dialog is unknown now.
    assert_eq!(alice.on_request(&bye), Err(InDialogError::UnknownDialog));
}

#[test]
fn strict_first_route_rewrites_the_request_uri() {
    // p1 (alice's first hop) is a strict router: its Record-Route has no ;lr.
    let inv = invite(&[
        "<sip:p2.example.com;lr>",
        "<sip:p1.example.com;transport=tcp>",
    ]);
    let ok = answer(&inv, 200, "b", "sip:bob@192.0.2.4");
    let mut alice = Dialog::new_uac(&inv, &ok).unwrap();
    let info = alice.build_request(Method::Info).unwrap();
    // Request-URI is the strict router; the remote target goes last in Route.
    assert_eq!(info.uri, uri("sip:p1.example.com;transport=tcp"));
    assert_eq!(
        routes(&info),
        ["<sip:p2.example.com;lr>", "<sip:bob@192.0.2.4>"]
    );
    assert_eq!(cseq(&info), (314160, Method::Info));
    // The ACK follows the same rule.
    let ack = alice.ack_for_2xx(&ok).unwrap();
    assert_eq!(ack.uri, uri("sip:p1.example.com;transport=tcp"));
    assert_eq!(
        routes(&ack),
        ["<sip:p2.example.com;lr>", "<sip:bob@192.0.2.4>"]
    );

    // Without any Record-Route there is no Route and the Request-URI is the remote target.
    let direct = invite(&[]);
    let ok = answer(&direct, 200, "c", "sip:bob@192.0.2.4");
    let mut alice = Dialog::new_uac(&direct, &ok).unwrap();
    let info = alice.build_request(Method::Info).unwrap();
    assert_eq!(info.uri, uri("sip:bob@192.0.2.4"));
    assert!(routes(&info).is_empty());
}

#[test]
fn forked_invite_makes_one_dialog_per_to_tag_and_each_2xx_is_acked() {
    let inv = invite(&["<sip:p1.example.com;lr>"]);
    let mut alice = DialogStore::new();

    let trying = build_trying(&inv);
    assert_eq!(alice.on_uac_response(&inv, &trying).unwrap(), None);

    let ring1 = answer(&inv, 180, "desk", "sip:bob@192.0.2.10");
    let ring2 = answer(&inv, 180, "mobile", "sip:bob@198.51.100.7");
    alice.on_uac_response(&inv, &ring1).unwrap();
    alice.on_uac_response(&inv, &ring2).unwrap();
    let early: Vec<_> = alice.dialogs_of(CALL_ID, ALICE_TAG).collect();
    assert_eq!(early.len(), 2);
    assert!(early.iter().all(|d| d.state() == DialogState::Early));

    // Both answer (a forking proxy passes every 2xx upstream).
    let ok1 = answer(&inv, 200, "desk", "sip:bob@192.0.2.10");
    let ok2 = answer(&inv, 200, "mobile", "sip:bob@198.51.100.7");
    let id1 = alice.on_uac_response(&inv, &ok1).unwrap().unwrap();
    let id2 = alice.on_uac_response(&inv, &ok2).unwrap().unwrap();
    assert_ne!(id1, id2);
    assert!(
        alice
            .dialogs_of(CALL_ID, ALICE_TAG)
            .all(|d| d.state() == DialogState::Confirmed)
    );

    let ack1 = alice.get_mut(&id1).unwrap().ack_for_2xx(&ok1).unwrap();
    let ack2 = alice.get_mut(&id2).unwrap().ack_for_2xx(&ok2).unwrap();
    assert_eq!(ack1.uri, uri("sip:bob@192.0.2.10"));
    assert_eq!(ack2.uri, uri("sip:bob@198.51.100.7"));
    assert_eq!(cseq(&ack1), (314159, Method::Ack));
    assert_eq!(cseq(&ack2), (314159, Method::Ack));
    assert_eq!(
        ack2.headers.to_header().unwrap().unwrap().tag(),
        Some("mobile")
    );
    // A dialog does not ACK another branch's 2xx.
    assert_eq!(
        alice.get_mut(&id1).unwrap().ack_for_2xx(&ok2),
        Err(DialogError::DialogMismatch)
    );

    // Keep the first, hang up the second.
    let bye = alice
        .get_mut(&id2)
        .unwrap()
        .build_request(Method::Bye)
        .unwrap();
    assert_eq!(bye.uri, uri("sip:bob@198.51.100.7"));
    assert_eq!(alice.remove_terminated(), 1);
    assert_eq!(alice.dialogs_of(CALL_ID, ALICE_TAG).count(), 1);
}

fn build_trying(inv: &Request) -> Response {
    sip_msg::build_response(inv, StatusCode::TRYING, None)
}

#[test]
fn final_failure_ends_every_early_dialog_of_the_invite() {
    let inv = invite(&[]);
    let mut alice = DialogStore::new();
    alice
        .on_uac_response(&inv, &answer(&inv, 183, "x", "sip:x@192.0.2.1"))
        .unwrap();
    alice
        .on_uac_response(&inv, &answer(&inv, 180, "y", "sip:y@192.0.2.2"))
        .unwrap();
    assert_eq!(alice.len(), 2);
    let busy = sip_msg::build_response(&inv, StatusCode::BUSY_HERE, Some("y"));
    assert_eq!(alice.on_uac_response(&inv, &busy).unwrap(), None);
    assert!(alice.is_empty());
}

#[test]
fn re_invite_refreshes_both_targets() {
    let mut ids = IdGenerator::new(2);
    let inv = invite(&[]);
    let ok = answer(&inv, 200, "b", "sip:bob@192.0.2.4");
    let mut alice = Dialog::new_uac(&inv, &ok).unwrap();
    let mut bob = DialogStore::new();
    let bob_id = {
        let d = Dialog::new_uas(&inv, &ok).unwrap();
        let id = d.id().clone();
        bob.insert(d);
        id
    };
    bob.on_request(&with_via(alice.ack_for_2xx(&ok).unwrap(), &mut ids))
        .unwrap();

    // Alice moved (new address): her re-INVITE carries the new Contact.
    alice.set_local_target(uri("sip:alice@203.0.113.9:5062"));
    let reinvite = alice.build_request(Method::Invite).unwrap();
    assert_eq!(cseq(&reinvite), (314160, Method::Invite));
    assert_eq!(
        reinvite.headers.get(&HeaderName::Contact),
        Some("<sip:alice@203.0.113.9:5062>")
    );
    let reinvite = with_via(reinvite, &mut ids);
    assert_eq!(bob.on_request(&reinvite), Ok(Some(bob_id.clone())));
    let b = bob.get_mut(&bob_id).unwrap();
    assert_eq!(b.remote_target(), &uri("sip:alice@203.0.113.9:5062"));
    assert_eq!(b.remote_seq(), Some(314160));

    // Bob's 200 names a new Contact of his own: alice's remote target follows.
    let ok2 = dialog_response(&reinvite, StatusCode::OK, "b", &uri("sip:bob@192.0.2.99"));
    alice.on_response(&ok2).unwrap();
    assert_eq!(alice.remote_target(), &uri("sip:bob@192.0.2.99"));
    let ack = alice.ack_for_2xx(&ok2).unwrap();
    assert_eq!(cseq(&ack), (314160, Method::Ack));
    assert_eq!(ack.uri, uri("sip:bob@192.0.2.99"));

    // A non-refresh request (INFO) with a Contact does not move the target.
    let mut info = alice.build_request(Method::Info).unwrap();
    info.headers
        .push(HeaderName::Contact, "<sip:elsewhere@192.0.2.200>");
    bob.on_request(&with_via(info, &mut ids)).unwrap();
    assert_eq!(
        bob.get(&bob_id).unwrap().remote_target(),
        &uri("sip:alice@203.0.113.9:5062")
    );
}

#[test]
fn cseq_rules_and_unknown_dialogs() {
    let mut ids = IdGenerator::new(3);
    let inv = invite(&[]);
    let ok = answer(&inv, 200, "b", "sip:bob@192.0.2.4");
    let mut alice = Dialog::new_uac(&inv, &ok).unwrap();
    let mut bob = DialogStore::new();
    bob.insert(Dialog::new_uas(&inv, &ok).unwrap());

    let first = with_via(alice.build_request(Method::Info).unwrap(), &mut ids);
    let second = with_via(alice.build_request(Method::Info).unwrap(), &mut ids);
    assert!(bob.on_request(&second).unwrap().is_some());
    // The older request arrives late: lower CSeq → 500.
    let err = bob.on_request(&first).unwrap_err();
    assert_eq!(
        err,
        InDialogError::CSeqOutOfOrder {
            received: 314160,
            last: 314161
        }
    );
    let resp = err.response(&first).expect("answered");
    assert_eq!(resp.status, StatusCode::SERVER_INTERNAL_ERROR);
    assert_eq!(resp.headers.cseq().unwrap().unwrap().seq, 314160);

    // Unknown remote tag → 481, answered with the request's headers.
    let mut stray = with_via(alice.build_request(Method::Info).unwrap(), &mut ids);
    let from = "Alice <sip:alice@atlanta.example.com>;tag=someone-else";
    stray.headers.set(HeaderName::From, from);
    let err = bob.on_request(&stray).unwrap_err();
    assert_eq!(err, InDialogError::UnknownDialog);
    assert_eq!(
        err.response(&stray).unwrap().status,
        StatusCode::CALL_DOES_NOT_EXIST
    );

    // An ACK is never answered, even for an unknown dialog.
    let mut stray_ack = stray.clone();
    stray_ack.method = Method::Ack;
    assert_eq!(
        bob.on_request(&stray_ack).unwrap_err().response(&stray_ack),
        None
    );

    // A request without To tag is not in a dialog at all: for the TU, not an error.
    assert_eq!(bob.on_request(&inv), Ok(None));
}

#[test]
fn uac_ends_dialog_on_481_and_refuses_to_send_after_bye() {
    let inv = invite(&[]);
    let ok = answer(&inv, 200, "b", "sip:bob@192.0.2.4");
    let mut alice = Dialog::new_uac(&inv, &ok).unwrap();
    let info = alice.build_request(Method::Info).unwrap();
    let gone = sip_msg::build_response(&info, StatusCode::CALL_DOES_NOT_EXIST, None);
    alice.on_response(&gone).unwrap();
    assert_eq!(alice.state(), DialogState::Terminated);
    assert_eq!(
        alice.build_request(Method::Bye),
        Err(DialogError::Terminated)
    );
    assert_eq!(
        alice.build_request(Method::Cancel),
        Err(DialogError::NotAnInDialogRequest(Method::Cancel))
    );
}

#[test]
fn dialog_creation_needs_tags_contact_and_a_creating_method() {
    let inv = invite(&[]);
    // 2xx without Contact.
    let mut ok = answer(&inv, 200, "b", "sip:bob@192.0.2.4");
    ok.headers.remove(&HeaderName::Contact);
    assert_eq!(
        Dialog::new_uac(&inv, &ok).unwrap_err(),
        DialogError::MissingContact
    );
    // 180 without To tag.
    let ringing = sip_msg::build_response(&inv, StatusCode::RINGING, None);
    assert_eq!(
        Dialog::new_uac(&inv, &ringing).unwrap_err(),
        DialogError::MissingTag(HeaderName::To)
    );
    // OPTIONS does not create dialogs.
    let mut options = inv.clone();
    options.method = Method::Options;
    let ok = answer(&inv, 200, "b", "sip:bob@192.0.2.4");
    assert!(matches!(
        Dialog::new_uas(&options, &ok),
        Err(DialogError::MethodNotDialogCreating(Method::Options))
    ));
    // 486 does not create a dialog.
    let busy = sip_msg::build_response(&inv, StatusCode::BUSY_HERE, Some("b"));
    assert_eq!(
        Dialog::new_uac(&inv, &busy).unwrap_err(),
        DialogError::StatusNotDialogCreating(StatusCode::BUSY_HERE)
    );
    // A SIPS Request-URI makes a secure dialog.
    let mut sips = inv.clone();
    sips.uri = uri("sips:bob@biloxi.example.com");
    assert!(
        Dialog::new_uac(&sips, &answer(&sips, 200, "b", "sips:bob@192.0.2.4"))
            .unwrap()
            .is_secure()
    );
}

#[test]
fn two_xx_is_retransmitted_on_t1_doubling_capped_at_t2_until_acked() {
    let timers = TimerConfig::default();
    let inv = invite(&[]);
    let ok = answer(&inv, 200, "b", "sip:bob@192.0.2.4");
    let start = epoch();
    let mut r = AnswerRetransmitter::new(ok.clone(), start, timers).unwrap();

    let mut sent_at = Vec::new();
    while let Some(t) = r.next_timeout() {
        if t - start >= Duration::from_secs(8) {
            break;
        }
        r.handle_timeout(t);
        if let Some(resp) = r.poll_transmit() {
            assert_eq!(resp, ok);
            sent_at.push((t - start).as_millis());
        }
    }
    assert_eq!(sent_at, [500, 1500, 3500, 7500]);

    // An ACK for another CSeq does not stop it; the right one does.
    let mut alice = Dialog::new_uac(&inv, &ok).unwrap();
    let ack = alice.ack_for_2xx(&ok).unwrap();
    let mut other = ack.clone();
    other.headers.set(HeaderName::CSeq, "1 ACK");
    assert!(!r.handle_ack(&other));
    assert!(r.handle_ack(&ack));
    assert_eq!(r.poll_event(), Some(AnswerEvent::Acknowledged));
    assert!(r.is_finished());
    assert_eq!(r.next_timeout(), None);
    r.handle_timeout(start + Duration::from_secs(60));
    assert_eq!(r.poll_transmit(), None);
    assert_eq!(r.poll_event(), None);
}

#[test]
fn two_xx_retransmission_gives_up_after_64_t1() {
    let timers = TimerConfig::default();
    let inv = invite(&[]);
    let ok = answer(&inv, 200, "b", "sip:bob@192.0.2.4");
    let start = epoch();
    let mut r = AnswerRetransmitter::new(ok, start, timers).unwrap();
    let mut sent_at = Vec::new();
    let mut gave_up_at = None;
    while let Some(t) = r.next_timeout() {
        r.handle_timeout(t);
        if r.poll_transmit().is_some() {
            sent_at.push((t - start).as_millis());
        }
        if let Some(e) = r.poll_event() {
            assert_eq!(e, AnswerEvent::NoAck);
            gave_up_at = Some(t - start);
        }
    }
    assert_eq!(
        sent_at,
        [
            500, 1500, 3500, 7500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500
        ]
    );
    assert_eq!(gave_up_at, Some(timers.t1_x64()));
    assert!(r.is_finished());

    // Late, overdue timers collapse into one retransmission.
    let mut late =
        AnswerRetransmitter::new(answer(&inv, 200, "b", "sip:bob@192.0.2.4"), start, timers)
            .unwrap();
    late.handle_timeout(start + Duration::from_secs(10));
    assert!(late.poll_transmit().is_some());
    assert!(late.poll_transmit().is_none());
    assert_eq!(
        late.next_timeout(),
        Some(start + Duration::from_millis(11_500))
    );

    // Only a 2xx to INVITE is retransmitted by the core.
    let ringing = answer(&inv, 180, "b", "sip:bob@192.0.2.4");
    assert_eq!(
        AnswerRetransmitter::new(ringing, start, timers).unwrap_err(),
        DialogError::NotInvite2xx
    );
}
