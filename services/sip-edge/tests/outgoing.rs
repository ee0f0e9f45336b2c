//! Requests call-control asks the edge to send (ADR 0011): an INVITE reaches a registered
//! phone through the flow of its binding (the address the edge saw; the TCP connection the
//! phone opened), with the edge's Via on top and retransmissions handled at the edge; the
//! phone's answers come back on call-control's subject without that Via; CANCEL, ACK, and a
//! 408 when the phone never answers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use bus::{Bus, BusHeaders, Subscription};
use bytes::Bytes;
use prost::Message as _;
use proto::v1::{EdgeSend, EdgeSendResult, Flow};
use sip_core::digest::Algorithm;
use sip_msg::{HeaderName, Request, SipMessage, StatusCode, build_response};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;

const RESULTS: &str = "test.callcontrol.results";

fn invite(target: &str, call_id: &str, cseq_method: &str) -> String {
    let branch = call_id.replace('@', "-");
    format!(
        "{cseq_method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP cc.invalid;branch=z9hG4bK-{branch}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:1000@{REALM}>;tag=cc1\r\nTo: <sip:user1@{REALM}>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 {cseq_method}\r\n\
         Contact: <sip:cc@{REALM}>\r\nContent-Length: 0\r\n\r\n"
    )
}

async fn send(bus: &Arc<dyn Bus>, edge_id: &str, call_ref: &str, message: String, flow: &Flow) {
    let send = EdgeSend {
        call_ref: call_ref.into(),
        message: message.into_bytes(),
        flow: Some(flow.clone()),
        reply_subject: RESULTS.into(),
    };
    bus.publish(
        &proto::subjects::edge_send(edge_id),
        BusHeaders::new(),
        Bytes::from(send.encode_to_vec()),
    )
    .await
    .unwrap();
}

async fn result(results: &mut Subscription, wait: Duration) -> (String, sip_msg::Response) {
    let message = tokio::time::timeout(wait, results.next())
        .await
        .expect("a result from the edge in time")
        .unwrap();
    let result = EdgeSendResult::decode(message.payload).unwrap();
    let SipMessage::Response(response) = sip_msg::parse_datagram(&result.message).unwrap() else {
        panic!("not a response")
    };
    (result.call_ref, response)
}

async fn request_on(socket: &UdpSocket) -> (Request, std::net::SocketAddr) {
    let mut buf = vec![0u8; 65535];
    loop {
        let (n, from) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
            .await
            .expect("a request at the phone")
            .unwrap();
        if let Ok(SipMessage::Request(r)) = sip_msg::parse_datagram(&buf[..n]) {
            return (r, from);
        }
    }
}

/// A phone registered over UDP; returns its socket (answers come to it) and the binding's flow.
async fn registered_udp_phone(edge: &sip_edge::EdgeHandle) -> (Client, Flow) {
    let mut phone = Client::udp(udp_addr(edge)).await;
    let contact = format!("Contact: {}", phone.contact());
    let ok = phone
        .register("user1", "pw1", Algorithm::Md5, &[contact])
        .await;
    assert_eq!(ok.status.as_u16(), 200);
    let binding = edge
        .location()
        .lookup(&format!("sip:user1@{REALM}"), sip_edge::clock::unix_secs());
    (phone, binding[0].flow.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invite_reaches_the_phone_through_its_flow_and_the_answers_come_back() {
    let (_etcd, store) = etcd().await;
    seed_devices(&store, 0..2).await;
    let bus = in_process_bus();
    let mut results = bus.subscribe(RESULTS).await.unwrap();
    let edge = start_edge(edge_config("edge-out"), store, bus.clone()).await;
    let (phone, flow) = registered_udp_phone(&edge).await;
    let phone_socket = phone.udp_socket();

    send(
        &bus,
        "edge-out",
        "call-1",
        invite(&format!("sip:phone@{}", phone.local), "c1@cc", "INVITE"),
        &flow,
    )
    .await;
    let (request, from) = request_on(phone_socket).await;
    assert_eq!(from, udp_addr(&edge));
    let via = request.headers.get(&HeaderName::Via).unwrap().to_owned();
    assert!(
        via.contains(&udp_addr(&edge).to_string()),
        "the edge's Via on top: {via}"
    );
    // The phone rings, then answers.
    for status in [StatusCode::RINGING, StatusCode::OK] {
        let response = build_response(&request, status, Some("ph1"));
        phone_socket
            .send_to(&response.to_bytes(), from)
            .await
            .unwrap();
    }
    let (call_ref, ringing) = result(&mut results, Duration::from_secs(3)).await;
    assert_eq!(
        (call_ref.as_str(), ringing.status.as_u16()),
        ("call-1", 180)
    );
    let (_, ok) = result(&mut results, Duration::from_secs(3)).await;
    assert_eq!(ok.status.as_u16(), 200);
    let vias: Vec<&str> = ok.headers.get_all(&HeaderName::Via).collect();
    assert_eq!(
        vias.len(),
        1,
        "only call-control's Via comes back: {vias:?}"
    );
    assert!(vias[0].contains("cc.invalid"), "{vias:?}");

    // call-control's ACK for the 2xx goes out without a transaction.
    let ack = invite(&format!("sip:phone@{}", phone.local), "c1@cc", "ACK");
    send(&bus, "edge-out", "call-1", ack, &flow).await;
    let (ack, _) = request_on(phone_socket).await;
    assert_eq!(ack.method, sip_msg::Method::Ack);
    edge.drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_timeout_are_reported_to_call_control() {
    let (_etcd, store) = etcd().await;
    seed_devices(&store, 0..2).await;
    let bus = in_process_bus();
    let mut results = bus.subscribe(RESULTS).await.unwrap();
    let mut config = edge_config("edge-out");
    config.transactions.timers.t1 = Duration::from_millis(50); // Timer B = 3.2 s
    let edge = start_edge(config, store, bus.clone()).await;
    let (phone, flow) = registered_udp_phone(&edge).await;
    let phone_socket = phone.udp_socket();
    let target = format!("sip:phone@{}", phone.local);

    // CANCEL after 180: the phone gets the CANCEL, answers 200 and 487; the edge ACKs the 487.
    send(
        &bus,
        "edge-out",
        "call-2",
        invite(&target, "c2@cc", "INVITE"),
        &flow,
    )
    .await;
    let (request, from) = request_on(phone_socket).await;
    let ringing = build_response(&request, StatusCode::RINGING, Some("ph2"));
    phone_socket
        .send_to(&ringing.to_bytes(), from)
        .await
        .unwrap();
    let (_, r) = result(&mut results, Duration::from_secs(3)).await;
    assert_eq!(r.status.as_u16(), 180);
    send(
        &bus,
        "edge-out",
        "call-2",
        invite(&target, "c2@cc", "CANCEL"),
        &flow,
    )
    .await;
    let (cancel, _) = loop {
        let (r, f) = request_on(phone_socket).await;
        if r.method == sip_msg::Method::Cancel {
            break (r, f);
        }
    };
    let cancel_ok = build_response(&cancel, StatusCode::OK, Some("ph2"));
    phone_socket
        .send_to(&cancel_ok.to_bytes(), from)
        .await
        .unwrap();
    let terminated = build_response(&request, StatusCode::REQUEST_TERMINATED, Some("ph2"));
    phone_socket
        .send_to(&terminated.to_bytes(), from)
        .await
        .unwrap();
    let (_, r) = result(&mut results, Duration::from_secs(3)).await;
    assert_eq!(r.status.as_u16(), 487);
    let (ack, _) = loop {
        let (r, f) = request_on(phone_socket).await;
        if r.method == sip_msg::Method::Ack {
            break (r, f);
        }
    };
    assert_eq!(ack.headers.call_id(), Some("c2@cc"));

    // A phone that never answers: the edge retransmits, then reports 408 (Timer B).
    send(
        &bus,
        "edge-out",
        "call-3",
        invite(&target, "c3@cc", "INVITE"),
        &flow,
    )
    .await;
    let mut copies = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(800);
    while tokio::time::Instant::now() < deadline {
        let mut buf = vec![0u8; 4096];
        if let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_millis(100), phone_socket.recv_from(&mut buf)).await
            && String::from_utf8_lossy(&buf[..n]).starts_with("INVITE")
        {
            copies += 1;
        }
    }
    assert!(
        copies >= 3,
        "the edge retransmits the INVITE over UDP (saw {copies})"
    );
    let (call_ref, r) = result(&mut results, Duration::from_secs(6)).await;
    assert_eq!((call_ref.as_str(), r.status.as_u16()), ("call-3", 408));
    edge.drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invite_to_a_tcp_phone_reuses_the_connection_it_opened() {
    let (_etcd, store) = etcd().await;
    seed_devices(&store, 0..2).await;
    let bus = in_process_bus();
    let mut results = bus.subscribe(RESULTS).await.unwrap();
    let edge = start_edge(edge_config("edge-out"), store, bus.clone()).await;
    let mut phone = Client::tcp(tcp_addr(&edge)).await;
    let contact = format!("Contact: {}", phone.contact());
    let ok = phone
        .register("user1", "pw1", Algorithm::Md5, &[contact])
        .await;
    assert_eq!(ok.status.as_u16(), 200);
    let flow = edge
        .location()
        .lookup(&format!("sip:user1@{REALM}"), sip_edge::clock::unix_secs())[0]
        .flow
        .clone();
    let target = format!("sip:phone@{};transport=tcp", phone.local);
    send(
        &bus,
        "edge-out",
        "call-4",
        invite(&target, "c4@cc", "INVITE"),
        &flow,
    )
    .await;
    let stream = phone.tcp_stream();
    let mut buf = vec![0u8; 8192];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("the INVITE on the phone's own connection")
        .unwrap();
    let SipMessage::Request(request) = sip_msg::parse_datagram(&buf[..n]).unwrap() else {
        panic!("not a request")
    };
    assert_eq!(request.method, sip_msg::Method::Invite);
    let busy = build_response(&request, StatusCode::BUSY_HERE, Some("ph4"));
    stream.write_all(&busy.to_bytes()).await.unwrap();
    let (_, r) = result(&mut results, Duration::from_secs(3)).await;
    assert_eq!(r.status.as_u16(), 486);
    edge.drain().await;
}
