//! Matching received messages to transactions: §17.1.3 (client), §17.2.3 (server) with
//! RFC 3261 branches, and the RFC 2543 fallback for requests without the magic cookie.

mod common;

use common::{Fixture, UAC, UAS, addr, invite, parse_response, request, respond};
use sip_core::transaction::{Event, TransactionConfig, TransactionKey, TransactionState};
use sip_msg::{HeaderName, Method, Request, Transport};

fn new_requests(f: &Fixture) -> Vec<TransactionKey> {
    f.events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Request { key, .. } => Some(*key),
            _ => None,
        })
        .collect()
}

fn response_keys(f: &Fixture) -> Vec<TransactionKey> {
    f.events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Response { key, .. } => Some(*key),
            _ => None,
        })
        .collect()
}

fn strays(f: &Fixture) -> usize {
    f.events
        .iter()
        .filter(|(_, e)| matches!(e, Event::StrayResponse { .. }))
        .count()
}

fn acks_passed_up(f: &Fixture) -> usize {
    f.events
        .iter()
        .filter(|(_, e)| matches!(e, Event::Ack { .. }))
        .count()
}

fn ack_for(req: &Request, to: &str) -> Request {
    let mut ack = req.clone();
    ack.method = Method::Ack;
    let seq = req.headers.cseq().ok().flatten().expect("CSeq").seq;
    ack.headers.set(HeaderName::CSeq, format!("{seq} ACK"));
    ack.headers.set(HeaderName::To, to);
    ack
}

fn server() -> Fixture {
    Fixture::new(TransactionConfig::default())
}

// ----- client side (§17.1.3) -----

#[test]
fn a_response_matches_by_branch_and_cseq_method() {
    let mut f = server();
    let now = f.now;
    let inv = invite("z9hG4bKm1", "m1");
    let reg = request(
        "REGISTER",
        "z9hG4bKm2",
        addr(UAC),
        addr(UAS),
        "UDP",
        "m2",
        1,
    );
    let inv_key = f
        .layer
        .send_request(now, inv.clone(), addr(UAS), Transport::Udp)
        .unwrap();
    let reg_key = f
        .layer
        .send_request(now, reg.clone(), addr(UAS), Transport::Udp)
        .unwrap();
    f.receive(respond(&reg, 200, "x").to_bytes(), UAS, Transport::Udp);
    f.receive(respond(&inv, 180, "x").to_bytes(), UAS, Transport::Udp);
    assert_eq!(response_keys(&f), vec![reg_key, inv_key]);

    // Same branch, other CSeq method: not ours.
    let mut wrong_method = respond(&inv, 200, "x");
    wrong_method.headers.set(HeaderName::CSeq, "1 BYE");
    f.receive(wrong_method.to_bytes(), UAS, Transport::Udp);
    // Other branch: not ours either.
    let mut wrong_branch = respond(&inv, 200, "x");
    wrong_branch.headers.set(
        HeaderName::Via,
        "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKother",
    );
    f.receive(wrong_branch.to_bytes(), UAS, Transport::Udp);
    assert_eq!(strays(&f), 2);
    assert_eq!(response_keys(&f).len(), 2);
}

#[test]
fn a_response_is_not_matched_on_sent_by_or_source() {
    // §17.1.3 names only the branch and the CSeq method: a response arriving from another
    // address (a fork, a NAT) still belongs to the transaction.
    let mut f = server();
    let now = f.now;
    let inv = invite("z9hG4bKm3", "m3");
    let key = f
        .layer
        .send_request(now, inv.clone(), addr(UAS), Transport::Udp)
        .unwrap();
    f.receive(
        respond(&inv, 183, "x").to_bytes(),
        "198.51.100.1:5999",
        Transport::Udp,
    );
    assert_eq!(response_keys(&f), vec![key]);
}

// ----- server side, RFC 3261 (§17.2.3) -----

#[test]
fn retransmissions_match_by_branch_and_sent_by_with_case_insensitive_host() {
    let mut f = server();
    let mut req = invite("z9hG4bKm4", "m4");
    req.headers.set(
        HeaderName::Via,
        "SIP/2.0/UDP Phone.Example.COM:5060;branch=z9hG4bKm4",
    );
    f.receive(req.to_bytes(), UAC, Transport::Udp);
    req.headers.set(
        HeaderName::Via,
        "SIP/2.0/UDP phone.example.com:5060;branch=z9hG4bKm4",
    );
    f.receive(req.to_bytes(), UAC, Transport::Udp);
    assert_eq!(new_requests(&f).len(), 1);
}

#[test]
fn the_same_branch_from_another_sent_by_is_another_transaction() {
    let mut f = server();
    let mut req = invite("z9hG4bKm5", "m5");
    f.receive(req.to_bytes(), UAC, Transport::Udp);
    req.headers.set(
        HeaderName::Via,
        "SIP/2.0/UDP 192.0.2.77:5060;branch=z9hG4bKm5",
    );
    f.receive(req.to_bytes(), "192.0.2.77:5060", Transport::Udp);
    let keys = new_requests(&f);
    assert_eq!(keys.len(), 2);
    assert_ne!(keys[0], keys[1]);
}

#[test]
fn ack_matches_the_invite_transaction_and_cancel_gets_its_own() {
    let mut f = server();
    let req = invite("z9hG4bKm6", "m6");
    f.receive(req.to_bytes(), UAC, Transport::Udp);
    let key = new_requests(&f)[0];
    let busy = respond(&req, 486, "b");
    f.layer.send_response(f.now, &key, busy.clone()).unwrap();
    // A CANCEL with the same branch is not a retransmission of the INVITE.
    f.receive(
        sip_core::transaction::build_cancel(&req)
            .unwrap()
            .to_bytes(),
        UAC,
        Transport::Udp,
    );
    assert_eq!(f.layer.state(&key), Some(TransactionState::Completed));
    let statuses: Vec<u16> = f
        .transmits
        .iter()
        .map(|(_, t)| parse_response(&t.contents).status.as_u16())
        .collect();
    assert_eq!(statuses, vec![486, 200]);
    f.receive(
        ack_for(&req, busy.headers.get(&HeaderName::To).unwrap()).to_bytes(),
        UAC,
        Transport::Udp,
    );
    assert_eq!(f.layer.state(&key), Some(TransactionState::Confirmed));
    assert_eq!(acks_passed_up(&f), 0);
}

#[test]
fn an_ack_with_an_unknown_branch_goes_to_the_tu() {
    let mut f = server();
    let req = invite("z9hG4bKm7", "m7");
    f.receive(req.to_bytes(), UAC, Transport::Udp);
    let key = new_requests(&f)[0];
    f.layer
        .send_response(f.now, &key, respond(&req, 486, "b"))
        .unwrap();
    let mut ack = ack_for(&req, "<sip:bob@example.com>;tag=b");
    ack.headers.set(
        HeaderName::Via,
        "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKnot-the-invite",
    );
    f.receive(ack.to_bytes(), UAC, Transport::Udp);
    assert_eq!(acks_passed_up(&f), 1);
    assert_eq!(f.layer.state(&key), Some(TransactionState::Completed));
}

#[test]
fn a_non_invite_request_reusing_a_branch_for_another_method_is_dropped() {
    let mut f = server();
    f.receive(
        request("OPTIONS", "z9hG4bKm8", addr(UAC), addr(UAS), "UDP", "m8", 1).to_bytes(),
        UAC,
        Transport::Udp,
    );
    f.receive(
        request("INFO", "z9hG4bKm8", addr(UAC), addr(UAS), "UDP", "m8", 2).to_bytes(),
        UAC,
        Transport::Udp,
    );
    assert_eq!(new_requests(&f).len(), 1);
    assert_eq!(f.layer.stats().method_mismatch_dropped, 1);
}

#[test]
fn cancel_finds_a_non_invite_transaction_too() {
    let mut f = server();
    let req = request(
        "SUBSCRIBE",
        "z9hG4bKm9",
        addr(UAC),
        addr(UAS),
        "UDP",
        "m9",
        1,
    );
    f.receive(req.to_bytes(), UAC, Transport::Udp);
    f.receive(
        sip_core::transaction::build_cancel(&req)
            .unwrap()
            .to_bytes(),
        UAC,
        Transport::Udp,
    );
    let statuses: Vec<u16> = f
        .transmits
        .iter()
        .map(|(_, t)| parse_response(&t.contents).status.as_u16())
        .collect();
    assert_eq!(
        statuses,
        vec![200],
        "§9.2: matched, so 200; non-INVITE requests are not cancelled"
    );
    assert!(
        !f.events
            .iter()
            .any(|(_, e)| matches!(e, Event::Cancel { .. }))
    );
}

// ----- server side, RFC 2543 fallback (§17.2.3) -----

fn legacy_invite(call_id: &str, cseq: u32) -> Request {
    let mut req = request(
        "INVITE",
        "unused",
        addr(UAC),
        addr(UAS),
        "UDP",
        call_id,
        cseq,
    );
    req.headers
        .set(HeaderName::Via, "SIP/2.0/UDP 192.0.2.10:5060");
    req
}

#[test]
fn rfc2543_retransmission_matches_on_uri_tags_call_id_cseq_and_via() {
    let mut f = server();
    let req = legacy_invite("l1", 1);
    f.receive(req.to_bytes(), UAC, Transport::Udp);
    let key = new_requests(&f)[0];
    f.layer
        .send_response(f.now, &key, respond(&req, 180, "l"))
        .unwrap();
    f.receive(req.to_bytes(), UAC, Transport::Udp);
    assert_eq!(
        new_requests(&f).len(),
        1,
        "identical request = retransmission"
    );
    assert_eq!(f.transmits.len(), 2, "answered with the last provisional");

    // Each of these differs in one matched field: a new transaction.
    let mut other_cseq = req.clone();
    other_cseq.headers.set(HeaderName::CSeq, "2 INVITE");
    let mut other_call = req.clone();
    other_call.headers.set(HeaderName::CallId, "l1-other");
    let mut other_from_tag = req.clone();
    other_from_tag
        .headers
        .set(HeaderName::From, "<sip:alice@192.0.2.10:5060>;tag=zzz");
    let mut other_via = req.clone();
    other_via
        .headers
        .set(HeaderName::Via, "SIP/2.0/UDP 192.0.2.10:5062");
    let mut other_uri = req.clone();
    other_uri.uri = sip_msg::Uri::parse("sip:carol@192.0.2.20:5060").unwrap();
    for r in [other_cseq, other_call, other_from_tag, other_via, other_uri] {
        f.receive(r.to_bytes(), UAC, Transport::Udp);
    }
    assert_eq!(new_requests(&f).len(), 6);
}

#[test]
fn rfc2543_ack_matches_by_the_to_tag_of_our_response() {
    let mut f = server();
    let req = legacy_invite("l2", 1);
    f.receive(req.to_bytes(), UAC, Transport::Udp);
    let key = new_requests(&f)[0];
    let busy = respond(&req, 486, "our-tag");
    f.layer.send_response(f.now, &key, busy.clone()).unwrap();
    // An ACK with another To tag is not for this transaction.
    f.receive(
        ack_for(&req, "<sip:bob@192.0.2.20:5060>;tag=someone-else").to_bytes(),
        UAC,
        Transport::Udp,
    );
    assert_eq!(f.layer.state(&key), Some(TransactionState::Completed));
    assert_eq!(acks_passed_up(&f), 1);
    f.receive(
        ack_for(&req, busy.headers.get(&HeaderName::To).unwrap()).to_bytes(),
        UAC,
        Transport::Udp,
    );
    assert_eq!(f.layer.state(&key), Some(TransactionState::Confirmed));
    assert_eq!(acks_passed_up(&f), 1);
}

#[test]
fn rfc2543_cancel_matches_its_invite() {
    let mut f = server();
    let req = legacy_invite("l3", 7);
    f.receive(req.to_bytes(), UAC, Transport::Udp);
    let invite_key = new_requests(&f)[0];
    let mut cancel = sip_core::transaction::build_cancel(&req).unwrap();
    cancel
        .headers
        .set(HeaderName::Via, "SIP/2.0/UDP 192.0.2.10:5060");
    f.receive(cancel.to_bytes(), UAC, Transport::Udp);
    let reported = f.events.iter().find_map(|(_, e)| match e {
        Event::Cancel { invite_key, .. } => Some(*invite_key),
        _ => None,
    });
    assert_eq!(reported, Some(invite_key));
    let statuses: Vec<u16> = f
        .transmits
        .iter()
        .map(|(_, t)| parse_response(&t.contents).status.as_u16())
        .collect();
    assert_eq!(statuses, vec![200]);
}
