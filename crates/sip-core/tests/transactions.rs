//! The four RFC 3261 §17 state machines (with RFC 6026) driven by hand on a virtual clock:
//! retransmission schedules, timeouts, ACK handling, CANCEL, transport errors, §18 routing.

mod common;

use std::time::Duration;

use common::{Fixture, UAC, UAS, addr, invite, parse_request, parse_response, request, respond};
use sip_core::Transmit;
use sip_core::transaction::{
    Event, Input, OwnResponse, Role, TransactionConfig, TransactionError, TransactionKey,
    TransactionState,
};
use sip_msg::{HeaderName, Method, Transport};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn send_times(transmits: &[(Duration, Transmit)]) -> Vec<Duration> {
    transmits.iter().map(|(t, _)| *t).collect()
}

fn statuses(transmits: &[(Duration, Transmit)]) -> Vec<u16> {
    transmits
        .iter()
        .map(|(_, t)| parse_response(&t.contents).status.as_u16())
        .collect()
}

fn timeouts(events: &[(Duration, Event)]) -> Vec<Duration> {
    events
        .iter()
        .filter(|(_, e)| matches!(e, Event::Timeout { .. }))
        .map(|(t, _)| *t)
        .collect()
}

fn terminated_at(events: &[(Duration, Event)], key: TransactionKey) -> Option<Duration> {
    events
        .iter()
        .find(|(_, e)| matches!(e, Event::Terminated { key: k } if *k == key))
        .map(|(t, _)| *t)
}

fn response_statuses(events: &[(Duration, Event)]) -> Vec<u16> {
    events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Response { response, .. } => Some(response.status.as_u16()),
            _ => None,
        })
        .collect()
}

/// A UAC fixture that sent `req` over `transport` to the UAS.
fn client(req: sip_msg::Request, transport: Transport) -> (Fixture, TransactionKey) {
    let mut f = Fixture::new(TransactionConfig::default());
    let key = f
        .layer
        .send_request(f.now, req, addr(UAS), transport)
        .expect("send_request");
    f.drain();
    (f, key)
}

/// A UAS fixture that received `req`; returns the new server transaction's key.
fn server(req: &sip_msg::Request, transport: Transport) -> (Fixture, TransactionKey) {
    let mut f = Fixture::new(TransactionConfig::default());
    f.receive(req.to_bytes(), UAC, transport);
    let key = match f.events.as_slice() {
        [(_, Event::Request { key, .. })] => *key,
        other => panic!("expected one request event, got {other:?}"),
    };
    (f, key)
}

// ----- INVITE client (§17.1.1, RFC 6026) -----

#[test]
fn invite_client_retransmits_on_timer_a_doubling_until_timer_b_over_udp() {
    let (mut f, key) = client(invite("z9hG4bKa1", "c1"), Transport::Udp);
    f.advance(Duration::from_secs(40));
    let expected: Vec<Duration> = [0, 500, 1500, 3500, 7500, 15500, 31500]
        .into_iter()
        .map(ms)
        .collect();
    assert_eq!(send_times(&f.transmits), expected);
    assert!(
        f.transmits
            .iter()
            .all(|(_, t)| t.destination == addr(UAS) && t.contents == f.transmits[0].1.contents)
    );
    assert_eq!(timeouts(&f.events), vec![ms(32_000)]);
    assert_eq!(terminated_at(&f.events, key), Some(ms(32_000)));
    assert_eq!(f.layer.transaction_count(), 0);
}

#[test]
fn invite_client_over_tcp_never_retransmits_but_still_times_out() {
    let (mut f, key) = client(invite("z9hG4bKa2", "c2"), Transport::Tcp);
    f.advance(Duration::from_secs(40));
    assert_eq!(send_times(&f.transmits), vec![ms(0)]);
    assert_eq!(f.transmits[0].1.transport, Transport::Tcp);
    assert_eq!(timeouts(&f.events), vec![ms(32_000)]);
    assert_eq!(terminated_at(&f.events, key), Some(ms(32_000)));
}

#[test]
fn invite_client_provisional_stops_retransmissions_and_timer_b() {
    let req = invite("z9hG4bKa3", "c3");
    let (mut f, key) = client(req.clone(), Transport::Udp);
    f.advance(ms(700)); // one retransmission at 500 ms
    f.receive(respond(&req, 180, "t1").to_bytes(), UAS, Transport::Udp);
    f.advance(Duration::from_secs(60));
    assert_eq!(send_times(&f.transmits), vec![ms(0), ms(500)]);
    assert_eq!(response_statuses(&f.events), vec![180]);
    assert!(
        timeouts(&f.events).is_empty(),
        "Timer B only runs in Calling"
    );
    assert_eq!(f.layer.state(&key), Some(TransactionState::Proceeding));
}

#[test]
fn invite_client_acks_a_non_2xx_itself_and_absorbs_its_retransmissions_until_timer_d() {
    let req = invite("z9hG4bKa4", "c4");
    let (mut f, key) = client(req.clone(), Transport::Udp);
    f.advance(ms(100));
    let busy = respond(&req, 486, "busy-tag");
    f.receive(busy.to_bytes(), UAS, Transport::Udp);
    let ack = parse_request(&f.transmits[1].1.contents);
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(ack.uri, req.uri);
    assert_eq!(
        ack.headers.top_via().unwrap().unwrap().branch(),
        Some("z9hG4bKa4")
    );
    assert_eq!(
        ack.headers.to_header().unwrap().unwrap().tag(),
        Some("busy-tag")
    );
    assert_eq!(ack.headers.cseq().unwrap().unwrap().seq, 1);
    assert_eq!(ack.headers.get(&HeaderName::CallId), Some("c4"));
    assert_eq!(f.layer.state(&key), Some(TransactionState::Completed));
    // The retransmitted 486 is ACKed again and not passed up.
    f.advance(ms(400));
    f.receive(busy.to_bytes(), UAS, Transport::Udp);
    assert_eq!(f.transmits.len(), 3);
    assert_eq!(f.transmits[2].1.contents, f.transmits[1].1.contents);
    assert_eq!(response_statuses(&f.events), vec![486]);
    f.advance(Duration::from_secs(40));
    assert_eq!(
        terminated_at(&f.events, key),
        Some(ms(100 + 32_000)),
        "Timer D = 32 s over UDP"
    );
    assert_eq!(
        f.transmits.len(),
        3,
        "no retransmission of the INVITE after the final"
    );
}

#[test]
fn invite_client_over_tcp_terminates_right_after_acking_a_non_2xx() {
    let req = invite("z9hG4bKa5", "c5");
    let (mut f, key) = client(req.clone(), Transport::Tcp);
    f.receive(respond(&req, 603, "x").to_bytes(), UAS, Transport::Tcp);
    assert_eq!(f.transmits.len(), 2);
    assert_eq!(
        terminated_at(&f.events, key),
        Some(ms(0)),
        "Timer D = 0 over TCP"
    );
}

#[test]
fn invite_client_in_accepted_passes_up_every_2xx_and_nothing_else_until_timer_m() {
    let req = invite("z9hG4bKa6", "c6");
    let (mut f, key) = client(req.clone(), Transport::Udp);
    f.advance(ms(50));
    let ok = respond(&req, 200, "fork-1");
    f.receive(ok.to_bytes(), UAS, Transport::Udp);
    assert_eq!(f.layer.state(&key), Some(TransactionState::Accepted));
    f.advance(ms(500));
    f.receive(ok.to_bytes(), UAS, Transport::Udp); // retransmission by the UAS core
    f.receive(
        respond(&req, 200, "fork-2").to_bytes(),
        "192.0.2.21:5060",
        Transport::Udp,
    );
    f.receive(respond(&req, 486, "fork-3").to_bytes(), UAS, Transport::Udp);
    f.receive(respond(&req, 180, "fork-4").to_bytes(), UAS, Transport::Udp);
    assert_eq!(response_statuses(&f.events), vec![200, 200, 200]);
    let tags: Vec<String> = f
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Response { response, .. } => response
                .headers
                .to_header()
                .unwrap()
                .unwrap()
                .tag()
                .map(str::to_owned),
            _ => None,
        })
        .collect();
    assert_eq!(tags, ["fork-1", "fork-1", "fork-2"]);
    assert_eq!(
        f.transmits.len(),
        1,
        "the 2xx ACK is the TU's, never the transaction's"
    );
    f.advance(Duration::from_secs(40));
    assert_eq!(
        terminated_at(&f.events, key),
        Some(ms(50 + 32_000)),
        "Timer M = 64·T1"
    );
    // After M, a late 2xx is a stray that still reaches the TU.
    f.take_events();
    f.receive(ok.to_bytes(), UAS, Transport::Udp);
    assert!(
        matches!(f.events.as_slice(), [(_, Event::StrayResponse { response, .. })] if response.status.as_u16() == 200)
    );
}

// ----- non-INVITE client (§17.1.2) -----

#[test]
fn non_invite_client_timer_e_doubles_up_to_t2_until_timer_f() {
    let (mut f, key) = client(
        request(
            "REGISTER",
            "z9hG4bKn1",
            addr(UAC),
            addr(UAS),
            "UDP",
            "n1",
            1,
        ),
        Transport::Udp,
    );
    f.advance(Duration::from_secs(40));
    let expected: Vec<Duration> = [
        0, 500, 1500, 3500, 7500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500,
    ]
    .into_iter()
    .map(ms)
    .collect();
    assert_eq!(send_times(&f.transmits), expected);
    assert_eq!(timeouts(&f.events), vec![ms(32_000)]);
    assert_eq!(terminated_at(&f.events, key), Some(ms(32_000)));
}

#[test]
fn non_invite_client_in_proceeding_retransmits_every_t2() {
    let req = request("OPTIONS", "z9hG4bKn2", addr(UAC), addr(UAS), "UDP", "n2", 1);
    let (mut f, _) = client(req.clone(), Transport::Udp);
    f.advance(ms(100));
    f.receive(respond(&req, 100, "x").to_bytes(), UAS, Transport::Udp);
    f.advance(ms(10_000));
    assert_eq!(
        send_times(&f.transmits),
        vec![ms(0), ms(500), ms(4500), ms(8500)]
    );
    f.receive(respond(&req, 200, "x").to_bytes(), UAS, Transport::Udp);
    f.receive(respond(&req, 200, "x").to_bytes(), UAS, Transport::Udp);
    f.advance(ms(20_000));
    assert_eq!(f.transmits.len(), 4, "Completed stops Timer E");
    assert_eq!(
        response_statuses(&f.events),
        vec![100, 200],
        "the retransmitted 200 is absorbed"
    );
    assert!(timeouts(&f.events).is_empty());
}

#[test]
fn non_invite_client_over_tcp_sends_once_and_timer_k_is_zero() {
    let req = request(
        "REGISTER",
        "z9hG4bKn3",
        addr(UAC),
        addr(UAS),
        "TCP",
        "n3",
        1,
    );
    let (mut f, key) = client(req.clone(), Transport::Tcp);
    f.advance(ms(3000));
    assert_eq!(f.transmits.len(), 1);
    f.receive(respond(&req, 200, "x").to_bytes(), UAS, Transport::Tcp);
    assert_eq!(terminated_at(&f.events, key), Some(ms(3000)));
}

#[test]
fn non_invite_client_completed_lingers_for_timer_k_over_udp() {
    let req = request("BYE", "z9hG4bKn4", addr(UAC), addr(UAS), "UDP", "n4", 2);
    let (mut f, key) = client(req.clone(), Transport::Udp);
    f.receive(respond(&req, 200, "x").to_bytes(), UAS, Transport::Udp);
    f.advance(Duration::from_secs(10));
    assert_eq!(
        terminated_at(&f.events, key),
        Some(ms(5000)),
        "Timer K = T4"
    );
}

// ----- INVITE server (§17.2.1, RFC 6026) -----

#[test]
fn invite_server_sends_100_trying_after_200_ms_of_tu_silence() {
    let req = invite("z9hG4bKs1", "s1");
    let (mut f, _) = server(&req, Transport::Udp);
    f.advance(ms(199));
    assert!(f.transmits.is_empty());
    f.advance(ms(1));
    assert_eq!(statuses(&f.transmits), vec![100]);
    assert_eq!(f.transmits[0].0, ms(200));
    let trying = parse_response(&f.transmits[0].1.contents);
    assert_eq!(trying.headers.to_header().unwrap().unwrap().tag(), None);
    // A retransmitted INVITE gets the 100 again.
    f.receive(req.to_bytes(), UAC, Transport::Udp);
    assert_eq!(statuses(&f.transmits), vec![100, 100]);
}

#[test]
fn invite_server_sends_no_100_when_the_tu_answers_in_time() {
    let req = invite("z9hG4bKs2", "s2");
    let (mut f, key) = server(&req, Transport::Udp);
    f.advance(ms(50));
    f.layer
        .send_response(f.now, &key, respond(&req, 180, "t"))
        .unwrap();
    f.advance(ms(1000));
    assert_eq!(statuses(&f.transmits), vec![180]);
    f.receive(req.to_bytes(), UAC, Transport::Udp);
    assert_eq!(
        statuses(&f.transmits),
        vec![180, 180],
        "INVITE retransmission → last provisional"
    );
    assert_eq!(f.events.len(), 1, "retransmissions never reach the TU");
}

#[test]
fn invite_server_with_lost_ack_retransmits_final_on_timer_g_until_timer_h() {
    let req = invite("z9hG4bKs3", "s3");
    let (mut f, key) = server(&req, Transport::Udp);
    f.layer
        .send_response(f.now, &key, respond(&req, 486, "t"))
        .unwrap();
    f.advance(Duration::from_secs(40));
    let expected: Vec<Duration> = [
        0, 500, 1500, 3500, 7500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500,
    ]
    .into_iter()
    .map(ms)
    .collect();
    assert_eq!(send_times(&f.transmits), expected);
    assert!(statuses(&f.transmits).iter().all(|s| *s == 486));
    assert_eq!(timeouts(&f.events), vec![ms(32_000)], "Timer H: no ACK");
    assert_eq!(terminated_at(&f.events, key), Some(ms(32_000)));
}

#[test]
fn invite_server_absorbs_the_ack_for_its_non_2xx_then_lingers_for_timer_i() {
    let req = invite("z9hG4bKs4", "s4");
    let (mut f, key) = server(&req, Transport::Udp);
    let busy = respond(&req, 486, "t");
    f.layer.send_response(f.now, &key, busy.clone()).unwrap();
    f.advance(ms(1000)); // the first Timer G retransmission went out at 500 ms
    let mut ack = req.clone();
    ack.method = Method::Ack;
    ack.headers.set(HeaderName::CSeq, "1 ACK");
    ack.headers
        .set(HeaderName::To, busy.headers.get(&HeaderName::To).unwrap());
    f.receive(ack.to_bytes(), UAC, Transport::Udp);
    assert_eq!(f.layer.state(&key), Some(TransactionState::Confirmed));
    f.receive(ack.to_bytes(), UAC, Transport::Udp);
    f.receive(req.to_bytes(), UAC, Transport::Udp);
    f.advance(Duration::from_secs(10));
    assert_eq!(
        send_times(&f.transmits),
        vec![ms(0), ms(500)],
        "no retransmission after the ACK"
    );
    assert!(
        !f.events.iter().any(|(_, e)| matches!(e, Event::Ack { .. })),
        "the ACK is absorbed"
    );
    assert_eq!(
        terminated_at(&f.events, key),
        Some(ms(1000 + 5000)),
        "Timer I = T4"
    );
    assert!(timeouts(&f.events).is_empty());
}

#[test]
fn invite_server_over_tcp_does_not_retransmit_and_confirms_to_terminated() {
    let req = request("INVITE", "z9hG4bKs5", addr(UAC), addr(UAS), "TCP", "s5", 1);
    let (mut f, key) = server(&req, Transport::Tcp);
    f.layer
        .send_response(f.now, &key, respond(&req, 480, "t"))
        .unwrap();
    f.advance(ms(5000));
    assert_eq!(f.transmits.len(), 1);
    let mut ack = req.clone();
    ack.method = Method::Ack;
    ack.headers.set(HeaderName::CSeq, "1 ACK");
    f.receive(ack.to_bytes(), UAC, Transport::Tcp);
    assert_eq!(
        terminated_at(&f.events, key),
        Some(ms(5000)),
        "Timer I = 0 over TCP"
    );
}

#[test]
fn invite_server_in_accepted_sends_tu_2xx_retransmissions_and_passes_acks_up() {
    let req = invite("z9hG4bKs6", "s6");
    let (mut f, key) = server(&req, Transport::Udp);
    let ok = respond(&req, 200, "t");
    f.layer.send_response(f.now, &key, ok.clone()).unwrap();
    assert_eq!(f.layer.state(&key), Some(TransactionState::Accepted));
    f.advance(ms(500));
    f.layer.send_response(f.now, &key, ok.clone()).unwrap(); // the TU core's 2xx retransmission
    f.receive(req.to_bytes(), UAC, Transport::Udp); // INVITE retransmission: absorbed (RFC 6026)
    f.drain();
    assert_eq!(statuses(&f.transmits), vec![200, 200]);
    assert_eq!(
        f.layer.send_response(f.now, &key, respond(&req, 486, "t")),
        Err(TransactionError::InvalidState {
            state: TransactionState::Accepted
        })
    );
    // The 2xx ACK (new branch, §13.2.2.4) and even one reusing the INVITE's branch go to the TU.
    for branch in ["z9hG4bKack-new", "z9hG4bKs6"] {
        let mut ack = request("ACK", branch, addr(UAC), addr(UAS), "UDP", "s6", 1);
        ack.headers
            .set(HeaderName::To, ok.headers.get(&HeaderName::To).unwrap());
        f.receive(ack.to_bytes(), UAC, Transport::Udp);
    }
    let acks = f
        .events
        .iter()
        .filter(|(_, e)| matches!(e, Event::Ack { .. }))
        .count();
    assert_eq!(acks, 2);
    f.advance(Duration::from_secs(40));
    assert_eq!(
        terminated_at(&f.events, key),
        Some(ms(32_000)),
        "Timer L = 64·T1"
    );
    assert_eq!(
        f.transmits.len(),
        2,
        "the transaction never retransmits a 2xx itself"
    );
}

// ----- non-INVITE server (§17.2.2) -----

#[test]
fn non_invite_server_absorbs_in_trying_and_repeats_the_last_response_after() {
    let req = request(
        "REGISTER",
        "z9hG4bKr1",
        addr(UAC),
        addr(UAS),
        "UDP",
        "r1",
        1,
    );
    let (mut f, key) = server(&req, Transport::Udp);
    f.receive(req.to_bytes(), UAC, Transport::Udp);
    assert!(f.transmits.is_empty(), "Trying absorbs retransmissions");
    f.layer
        .send_response(f.now, &key, respond(&req, 100, "t"))
        .unwrap();
    f.receive(req.to_bytes(), UAC, Transport::Udp);
    f.layer
        .send_response(f.now, &key, respond(&req, 200, "t"))
        .unwrap();
    f.receive(req.to_bytes(), UAC, Transport::Udp);
    f.drain();
    assert_eq!(statuses(&f.transmits), vec![100, 100, 200, 200]);
    assert_eq!(
        f.layer.send_response(f.now, &key, respond(&req, 500, "t")),
        Err(TransactionError::InvalidState {
            state: TransactionState::Completed
        })
    );
    assert_eq!(f.events.len(), 1);
    f.advance(Duration::from_secs(40));
    assert_eq!(
        terminated_at(&f.events, key),
        Some(ms(32_000)),
        "Timer J = 64·T1"
    );
}

#[test]
fn non_invite_server_over_tcp_terminates_on_its_final_response() {
    let req = request("OPTIONS", "z9hG4bKr2", addr(UAC), addr(UAS), "TCP", "r2", 1);
    let (mut f, key) = server(&req, Transport::Tcp);
    f.layer
        .send_response(f.now, &key, respond(&req, 200, "t"))
        .unwrap();
    f.drain();
    assert_eq!(
        terminated_at(&f.events, key),
        Some(ms(0)),
        "Timer J = 0 over TCP"
    );
    assert_eq!(
        f.layer.send_response(f.now, &key, respond(&req, 200, "t")),
        Err(TransactionError::UnknownTransaction)
    );
}

// ----- CANCEL (§9) -----

fn cancel_of(req: &sip_msg::Request) -> sip_msg::Request {
    sip_core::transaction::build_cancel(req).expect("CANCEL")
}

#[test]
fn cancel_before_the_final_response_is_answered_200_and_reported_then_487_is_acked() {
    let req = invite("z9hG4bKc1", "cc1");
    let (mut f, invite_key) = server(&req, Transport::Udp);
    f.layer
        .send_response(f.now, &invite_key, respond(&req, 180, "uas-tag"))
        .unwrap();
    f.advance(ms(300));
    f.take_transmits();
    f.receive(cancel_of(&req).to_bytes(), UAC, Transport::Udp);
    let t = f.take_transmits();
    let ok = parse_response(&t[0].1.contents);
    assert_eq!(ok.status.as_u16(), 200);
    assert_eq!(ok.headers.cseq().unwrap().unwrap().method, Method::Cancel);
    assert_eq!(
        ok.headers.to_header().unwrap().unwrap().tag(),
        Some("uas-tag"),
        "§9.2: same To tag as the INVITE's responses"
    );
    let cancel_event = f.events.iter().find_map(|(_, e)| match e {
        Event::Cancel {
            cancel_key,
            invite_key,
            request,
        } => Some((*cancel_key, *invite_key, request.method.clone())),
        _ => None,
    });
    let (cancel_key, reported_invite, method) = cancel_event.expect("Event::Cancel");
    assert_eq!(reported_invite, invite_key);
    assert_eq!(method, Method::Cancel);
    assert_ne!(cancel_key, invite_key);
    // A retransmitted CANCEL gets the same 200, and no second event.
    f.receive(cancel_of(&req).to_bytes(), UAC, Transport::Udp);
    assert_eq!(statuses(&f.take_transmits()), vec![200]);
    assert_eq!(
        f.events
            .iter()
            .filter(|(_, e)| matches!(e, Event::Cancel { .. }))
            .count(),
        1
    );
    // The TU answers 487; the ACK for it is absorbed.
    let terminated = respond(&req, 487, "uas-tag");
    f.layer
        .send_response(f.now, &invite_key, terminated.clone())
        .unwrap();
    let mut ack = req.clone();
    ack.method = Method::Ack;
    ack.headers.set(HeaderName::CSeq, "1 ACK");
    ack.headers.set(
        HeaderName::To,
        terminated.headers.get(&HeaderName::To).unwrap(),
    );
    f.receive(ack.to_bytes(), UAC, Transport::Udp);
    assert_eq!(statuses(&f.take_transmits()), vec![487]);
    assert_eq!(
        f.layer.state(&invite_key),
        Some(TransactionState::Confirmed)
    );
    assert!(!f.events.iter().any(|(_, e)| matches!(e, Event::Ack { .. })));
}

#[test]
fn cancel_after_the_final_response_is_answered_200_but_does_nothing() {
    let req = invite("z9hG4bKc2", "cc2");
    let (mut f, invite_key) = server(&req, Transport::Udp);
    f.layer
        .send_response(f.now, &invite_key, respond(&req, 200, "t"))
        .unwrap();
    f.drain();
    assert_eq!(statuses(&f.take_transmits()), vec![200]);
    f.receive(cancel_of(&req).to_bytes(), UAC, Transport::Udp);
    assert_eq!(statuses(&f.take_transmits()), vec![200]);
    assert!(
        !f.events
            .iter()
            .any(|(_, e)| matches!(e, Event::Cancel { .. }))
    );
    assert_eq!(f.layer.state(&invite_key), Some(TransactionState::Accepted));
}

#[test]
fn cancel_matching_no_transaction_is_answered_481() {
    let mut f = Fixture::new(TransactionConfig::default());
    f.receive(
        cancel_of(&invite("z9hG4bKc3", "cc3")).to_bytes(),
        UAC,
        Transport::Udp,
    );
    let t = f.take_transmits();
    let resp = parse_response(&t[0].1.contents);
    assert_eq!(resp.status.as_u16(), 481);
    assert!(
        resp.headers.to_header().unwrap().unwrap().tag().is_some(),
        "§8.2.6.2: a tag on every non-100 response"
    );
    assert!(
        f.events
            .iter()
            .all(|(_, e)| matches!(e, Event::Terminated { .. })),
        "the TU hears nothing"
    );
}

#[test]
fn client_cancel_waits_for_a_provisional_and_uses_the_invite_branch() {
    let req = invite("z9hG4bKc4", "cc4");
    let (mut f, key) = client(req.clone(), Transport::Udp);
    assert_eq!(
        f.layer.cancel(f.now, &key),
        Err(TransactionError::NoProvisionalResponse)
    );
    f.receive(respond(&req, 180, "t").to_bytes(), UAS, Transport::Udp);
    f.take_transmits();
    let cancel_key = f.layer.cancel(f.now, &key).unwrap();
    f.drain();
    assert_eq!(cancel_key.role(), Role::Client);
    assert!(!cancel_key.is_invite());
    let cancel = parse_request(&f.transmits[0].1.contents);
    assert_eq!(cancel.method, Method::Cancel);
    assert_eq!(
        cancel.headers.top_via().unwrap().unwrap().branch(),
        Some("z9hG4bKc4")
    );
    assert_eq!(f.transmits[0].1.destination, addr(UAS));
    // 200 (CANCEL) and 487 (INVITE) share the branch; the CSeq method tells them apart.
    let cancel_ok = respond(&cancel, 200, "t");
    f.receive(cancel_ok.to_bytes(), UAS, Transport::Udp);
    f.receive(respond(&req, 487, "t").to_bytes(), UAS, Transport::Udp);
    let by_key: Vec<(TransactionKey, u16)> = f
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Response { key, response, .. } => Some((*key, response.status.as_u16())),
            _ => None,
        })
        .collect();
    assert_eq!(by_key, vec![(key, 180), (cancel_key, 200), (key, 487)]);
    assert_eq!(
        f.layer.cancel(f.now, &key),
        Err(TransactionError::NotCancellable)
    );
}

// ----- transport errors -----

#[test]
fn a_transport_error_ends_the_transactions_sending_there() {
    let mut f = Fixture::new(TransactionConfig::default());
    let inv = f
        .layer
        .send_request(f.now, invite("z9hG4bKt1", "t1"), addr(UAS), Transport::Udp)
        .unwrap();
    let reg = request(
        "REGISTER",
        "z9hG4bKt2",
        addr(UAC),
        addr(UAS),
        "UDP",
        "t2",
        1,
    );
    let reg = f
        .layer
        .send_request(f.now, reg, addr(UAS), Transport::Udp)
        .unwrap();
    let other = request(
        "REGISTER",
        "z9hG4bKt3",
        addr(UAC),
        addr("192.0.2.99:5060"),
        "UDP",
        "t3",
        1,
    );
    let other = f
        .layer
        .send_request(f.now, other, addr("192.0.2.99:5060"), Transport::Udp)
        .unwrap();
    f.drain();
    f.input(Input::TransportError {
        transport: Transport::Udp,
        destination: addr(UAS),
        key: None,
    });
    let errors: Vec<TransactionKey> = f
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::TransportError { key } => Some(*key),
            _ => None,
        })
        .collect();
    assert_eq!(errors, vec![inv, reg]);
    assert_eq!(terminated_at(&f.events, inv), Some(ms(0)));
    assert_eq!(f.layer.state(&other), Some(TransactionState::Trying));
    f.input(Input::TransportError {
        transport: Transport::Udp,
        destination: addr(UAS),
        key: Some(other),
    });
    assert_eq!(f.layer.transaction_count(), 0);
}

#[test]
fn a_server_transaction_whose_response_cannot_be_sent_terminates() {
    let req = request("MESSAGE", "z9hG4bKt4", addr(UAC), addr(UAS), "TCP", "t4", 1);
    let (mut f, key) = server(&req, Transport::Tcp);
    f.layer
        .send_response(f.now, &key, respond(&req, 100, "t"))
        .unwrap();
    f.input(Input::TransportError {
        transport: Transport::Tcp,
        destination: addr(UAC),
        key: None,
    });
    assert!(
        f.events
            .iter()
            .any(|(_, e)| matches!(e, Event::TransportError { key: k } if *k == key))
    );
    assert_eq!(terminated_at(&f.events, key), Some(ms(0)));
}

// ----- receiving: §18.2 routing, bad input, TU errors -----

#[test]
fn responses_follow_received_and_rport_of_the_request() {
    let mut req = invite("z9hG4bKv1", "v1");
    req.headers.set(
        HeaderName::Via,
        "SIP/2.0/UDP 10.1.1.1:5060;rport;branch=z9hG4bKv1",
    );
    let mut f = Fixture::new(TransactionConfig::default());
    f.receive(req.to_bytes(), "203.0.113.5:40123", Transport::Udp);
    let Some((
        _,
        Event::Request {
            key,
            request,
            source,
            ..
        },
    )) = f.events.first().cloned()
    else {
        panic!("no request")
    };
    assert_eq!(source, addr("203.0.113.5:40123"));
    let via = request.headers.top_via().unwrap().unwrap();
    assert_eq!(via.received(), Some("203.0.113.5".parse().unwrap()));
    assert_eq!(via.rport(), Some(Some(40123)));
    f.layer
        .send_response(f.now, &key, respond(&request, 180, "t"))
        .unwrap();
    f.drain();
    assert_eq!(f.transmits[0].1.destination, addr("203.0.113.5:40123"));
    let sent = parse_response(&f.transmits[0].1.contents);
    assert_eq!(
        sent.headers.top_via().unwrap().unwrap().rport(),
        Some(Some(40123))
    );

    // Without rport: received + sent-by port.
    let mut req = invite("z9hG4bKv2", "v2");
    req.headers.set(
        HeaderName::Via,
        "SIP/2.0/UDP phone.example.com:5070;branch=z9hG4bKv2",
    );
    let mut f = Fixture::new(TransactionConfig::default());
    f.receive(req.to_bytes(), "198.51.100.8:61000", Transport::Udp);
    let Some((_, Event::Request { key, request, .. })) = f.events.first().cloned() else {
        panic!("no request")
    };
    f.layer
        .send_response(f.now, &key, respond(&request, 486, "t"))
        .unwrap();
    f.drain();
    assert_eq!(f.transmits[0].1.destination, addr("198.51.100.8:5070"));
}

#[test]
fn unparseable_requests_are_answered_400_and_never_reach_the_tu() {
    let mut f = Fixture::new(TransactionConfig::default());
    let bad = "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bKbad\r\n\
               From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\nCall-ID: bad1\r\n\
               CSeq: 1 INVITE\r\nMax-Forwards: many\r\nContent-Length: 0\r\n\r\n";
    f.receive(bad.as_bytes().to_vec(), "192.0.2.10:5062", Transport::Udp);
    f.receive(
        b"SIP/2.0 200 OK\r\nVia: broken\r\n\r\n".to_vec(),
        "192.0.2.10:5062",
        Transport::Udp,
    );
    f.receive(
        b"\x00\x01garbage".to_vec(),
        "192.0.2.10:5062",
        Transport::Udp,
    );
    assert!(f.events.is_empty());
    assert_eq!(f.transmits.len(), 1);
    let resp = parse_response(&f.transmits[0].1.contents);
    assert_eq!(resp.status.as_u16(), 400);
    assert_eq!(f.transmits[0].1.destination, addr("192.0.2.10:5062"));
    assert_eq!(f.layer.stats().unparseable_answered, 1);
    assert_eq!(f.layer.stats().unparseable_dropped, 2);
    assert_eq!(f.layer.transaction_count(), 0);
}

#[test]
fn an_answer_copying_a_broken_header_is_still_sent_to_the_source() {
    // The fault is in the To header, which a 400 must copy (§8.2.6); RFC 4475 §3.1.2.14 still
    // asks for the 400, and the sender matches it with its own (laxer) parser.
    let mut f = Fixture::new(TransactionConfig::default());
    let bad = "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bKbad2\r\n\
               From: <sip:a@example.com>;tag=1\r\nTo: \"Watson, Thomas\" < sip:t.watson@example.org >\r\n\
               Call-ID: bad2\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    f.receive(bad.as_bytes().to_vec(), "192.0.2.10:5062", Transport::Udp);
    assert!(f.events.is_empty());
    assert_eq!(f.transmits.len(), 1);
    let wire = String::from_utf8_lossy(&f.transmits[0].1.contents).into_owned();
    assert!(wire.starts_with("SIP/2.0 400 "), "{wire}");
    assert!(wire.contains("branch=z9hG4bKbad2"), "{wire}");
    assert_eq!(f.transmits[0].1.destination, addr("192.0.2.10:5062"));
    assert_eq!(f.layer.stats().unparseable_answered, 1);
}

#[test]
fn the_tu_cannot_misuse_the_layer() {
    let mut f = Fixture::new(TransactionConfig::default());
    let now = f.now;
    let mut ack = invite("z9hG4bKe1", "e1");
    ack.method = Method::Ack;
    ack.headers.set(HeaderName::CSeq, "1 ACK");
    assert_eq!(
        f.layer.send_request(now, ack, addr(UAS), Transport::Udp),
        Err(TransactionError::AckIsNotATransaction)
    );
    let mut no_branch = invite("z9hG4bKe2", "e2");
    no_branch
        .headers
        .set(HeaderName::Via, "SIP/2.0/UDP 192.0.2.10:5060");
    assert_eq!(
        f.layer
            .send_request(now, no_branch, addr(UAS), Transport::Udp),
        Err(TransactionError::MissingBranch)
    );
    let mut mismatched = invite("z9hG4bKe3", "e3");
    mismatched.headers.set(HeaderName::CSeq, "1 BYE");
    assert_eq!(
        f.layer
            .send_request(now, mismatched, addr(UAS), Transport::Udp),
        Err(TransactionError::BadCSeq)
    );
    let key = f
        .layer
        .send_request(now, invite("z9hG4bKe4", "e4"), addr(UAS), Transport::Udp)
        .unwrap();
    assert_eq!(
        f.layer
            .send_request(now, invite("z9hG4bKe4", "e4"), addr(UAS), Transport::Udp),
        Err(TransactionError::DuplicateTransaction)
    );
    let req = invite("z9hG4bKe4", "e4");
    assert_eq!(
        f.layer.send_response(now, &key, respond(&req, 200, "t")),
        Err(TransactionError::WrongRole)
    );
}

#[test]
fn a_full_table_answers_503_statelessly() {
    let config = TransactionConfig {
        max_transactions: 2,
        ..TransactionConfig::default()
    };
    let mut f = Fixture::new(config);
    for i in 0..3 {
        f.receive(
            invite(&format!("z9hG4bKf{i}"), &format!("f{i}")).to_bytes(),
            UAC,
            Transport::Udp,
        );
    }
    let requests = f
        .events
        .iter()
        .filter(|(_, e)| matches!(e, Event::Request { .. }))
        .count();
    assert_eq!(requests, 2);
    assert_eq!(statuses(&f.transmits), vec![503]);
    assert_eq!(f.layer.stats().overload_rejected, 1);
    assert_eq!(
        f.layer.take_own_responses(),
        vec![OwnResponse {
            method: Some(Method::Invite),
            status: 503
        }],
        "the TU never saw the request: the layer reports its answer"
    );
    let now = f.now;
    let r = f
        .layer
        .send_request(now, invite("z9hG4bKf9", "f9"), addr(UAS), Transport::Udp);
    assert_eq!(r, Err(TransactionError::TableFull));
}

/// Each answer the layer sends without the TU is reported once for the TU's counts; its
/// retransmissions and the answers the TU hears of through an event are not.
#[test]
fn what_the_layer_answers_on_its_own_is_reported_once() {
    let own = |status, method| OwnResponse {
        method: Some(method),
        status,
    };
    let mut f = Fixture::new(TransactionConfig::default());
    let req = invite("z9hG4bKo1", "o1");
    f.receive(req.to_bytes(), UAC, Transport::Udp);
    assert!(f.layer.take_own_responses().is_empty(), "100 not due yet");
    f.advance(Duration::from_millis(250));
    assert_eq!(statuses(&f.take_transmits()), vec![100]);
    assert_eq!(f.layer.take_own_responses(), vec![own(100, Method::Invite)]);
    // A retransmitted INVITE gets the 100 again: not a new answer.
    f.receive(req.to_bytes(), UAC, Transport::Udp);
    assert_eq!(statuses(&f.take_transmits()), vec![100]);
    assert!(f.layer.take_own_responses().is_empty());
    // A CANCEL of the ringing INVITE: its 200 comes with Event::Cancel, the TU counts it.
    f.receive(cancel_of(&req).to_bytes(), UAC, Transport::Udp);
    assert_eq!(statuses(&f.take_transmits()), vec![200]);
    assert!(f.layer.take_own_responses().is_empty());
    // A CANCEL matching nothing: 481, which only the layer knows of.
    f.receive(
        cancel_of(&invite("z9hG4bKo2", "o2")).to_bytes(),
        UAC,
        Transport::Udp,
    );
    assert_eq!(statuses(&f.take_transmits()), vec![481]);
    assert_eq!(f.layer.take_own_responses(), vec![own(481, Method::Cancel)]);
    // An unparseable request answered by its verdict.
    let bad = "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bKo3\r\n\
               From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\nCall-ID: o3\r\n\
               CSeq: 1 INVITE\r\nMax-Forwards: many\r\nContent-Length: 0\r\n\r\n";
    f.receive(bad.as_bytes().to_vec(), "192.0.2.10:5062", Transport::Udp);
    assert_eq!(statuses(&f.take_transmits()), vec![400]);
    assert_eq!(f.layer.take_own_responses(), vec![own(400, Method::Invite)]);
    assert_eq!(f.layer.stats().own_responses_unreported, 0);
}
