//! The edge's hand-off to call-control over the bus (the transaction stays at the edge:
//! retransmissions never cross the bus; no call-control means 503 with Retry-After), and the
//! graceful drain of the real binary on SIGTERM: new requests get 503, the transaction in
//! flight is finished, then the process exits 0.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bus::{Bus, BusHeaders, NatsBus, NatsOptions};
use bytes::Bytes;
use prost::Message as _;
use proto::subjects;
use proto::v1::{EdgeRequest, EdgeResponse};
use sip_msg::{SipMessage, StatusCode, build_response};
use support::*;
use testkit::nats::NatsServer;
use tokio::net::UdpSocket;

/// A MESSAGE from a trusted source (no digest challenge), with a fixed branch so that sending
/// the same text again is a retransmission.
fn message_request(edge: SocketAddr, local: SocketAddr, branch: &str) -> String {
    format!(
        "MESSAGE sip:1001@{REALM} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-{branch}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:gw@{REALM}>;tag=g1\r\nTo: <sip:1001@{REALM}>\r\n\
         Call-ID: {branch}@test\r\nCSeq: 1 MESSAGE\r\nRoute: <sip:{edge};lr>\r\n\
         Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"
    )
}

fn options_request(local: SocketAddr, branch: &str) -> String {
    format!(
        "OPTIONS sip:{REALM} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-{branch}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:probe@{REALM}>;tag=p1\r\nTo: <sip:{REALM}>\r\n\
         Call-ID: {branch}@test\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}

async fn final_status(socket: &UdpSocket, wait: Duration) -> Option<(u16, sip_msg::Response)> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut buf = vec![0u8; 65535];
    loop {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let (n, _) = tokio::time::timeout(remaining, socket.recv_from(&mut buf))
            .await
            .ok()?
            .ok()?;
        if let Ok(SipMessage::Response(r)) = sip_msg::parse_datagram(&buf[..n])
            && r.status.as_u16() >= 200
        {
            return Some((r.status.as_u16(), r));
        }
    }
}

/// A stand-in for call-control: acknowledges each hand-off, counts them, and after `delay`
/// answers 200 on the edge's response subject.
async fn fake_call_control(bus: Arc<dyn Bus>, delay: Duration) -> Arc<AtomicUsize> {
    let seen = Arc::new(AtomicUsize::new(0));
    let mut requests = bus
        .queue_subscribe(
            subjects::CALL_CONTROL_REQUESTS,
            subjects::CALL_CONTROL_QUEUE_GROUP,
        )
        .await
        .unwrap();
    let counter = seen.clone();
    tokio::spawn(async move {
        while let Some(message) = requests.next().await {
            let request = EdgeRequest::decode(message.payload.clone()).unwrap();
            if message.reply_to.is_none() {
                continue; // a notification (ACK, CANCEL)
            }
            counter.fetch_add(1, Ordering::SeqCst);
            bus.reply(&message, BusHeaders::new(), Bytes::new())
                .await
                .unwrap();
            let bus = bus.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let SipMessage::Request(sip) = sip_msg::parse_datagram(&request.message).unwrap()
                else {
                    panic!("not a request")
                };
                let ok = build_response(&sip, StatusCode::OK, Some("cc1"));
                let response = EdgeResponse {
                    transaction: request.transaction.clone(),
                    message: ok.to_bytes(),
                };
                bus.publish(
                    &subjects::edge_responses(&request.edge_id),
                    BusHeaders::new(),
                    Bytes::from(response.encode_to_vec()),
                )
                .await
                .unwrap();
            });
        }
    });
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_reach_call_control_once_and_its_answer_comes_back() {
    let (_etcd, store) = etcd().await;
    let bus = in_process_bus();
    let mut config = edge_config("edge-core");
    config.protection.trusted_networks = vec!["127.0.0.0/8".parse().unwrap()];
    config.core_timeout = Duration::from_millis(300);
    let edge = start_edge(config, store, bus.clone()).await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = socket.local_addr().unwrap();

    // No call-control yet: 503 with Retry-After, after the hand-off timeout.
    socket
        .send_to(
            message_request(udp_addr(&edge), local, "none").as_bytes(),
            udp_addr(&edge),
        )
        .await
        .unwrap();
    let (status, response) = final_status(&socket, Duration::from_secs(3)).await.unwrap();
    assert_eq!(status, 503);
    assert!(header(&response, "Retry-After").is_some());

    // With call-control: the request crosses the bus once however often it is retransmitted.
    let seen = fake_call_control(bus.clone(), Duration::from_millis(700)).await;
    let text = message_request(udp_addr(&edge), local, "once");
    for _ in 0..4 {
        socket
            .send_to(text.as_bytes(), udp_addr(&edge))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _) = final_status(&socket, Duration::from_secs(3)).await.unwrap();
    assert_eq!(status, 200);
    // A retransmission after the answer gets the answer again, from the edge alone.
    socket
        .send_to(text.as_bytes(), udp_addr(&edge))
        .await
        .unwrap();
    let (status, _) = final_status(&socket, Duration::from_secs(2)).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        seen.load(Ordering::SeqCst),
        1,
        "retransmissions crossed the bus"
    );
    edge.drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_the_binary_finishing_transactions_in_flight() {
    let (etcd_server, store) = etcd().await;
    seed_devices(&store, 0..2).await;
    let nats = tokio::task::spawn_blocking(NatsServer::start)
        .await
        .unwrap()
        .unwrap();
    let bus: Arc<dyn Bus> = Arc::new(
        NatsBus::connect(NatsOptions::new("fake-call-control", vec![nats.url()]))
            .await
            .unwrap(),
    );
    let seen = fake_call_control(bus, Duration::from_millis(1500)).await;

    let port = testkit::process::free_port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_calanque-sip-edge"))
        .args([
            "--edge-id",
            "edge-drain",
            "--listen",
            &format!("udp:127.0.0.1:{port}"),
            "--etcd",
            &etcd_server.endpoint(),
            "--nats",
            &nats.url(),
            "--realm",
            REALM,
            "--trusted-network",
            "127.0.0.0/8",
            "--drain-timeout",
            "10",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let edge: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = socket.local_addr().unwrap();
    // Wait until it answers OPTIONS.
    let mut ready = false;
    for i in 0..100 {
        socket
            .send_to(
                options_request(local, &format!("ready{i}")).as_bytes(),
                edge,
            )
            .await
            .unwrap();
        if final_status(&socket, Duration::from_millis(100))
            .await
            .is_some()
        {
            ready = true;
            break;
        }
    }
    assert!(ready, "the edge binary never answered OPTIONS");

    // A transaction in flight (call-control answers after 1.5 s), then SIGTERM.
    let text = message_request(edge, local, "inflight");
    socket.send_to(text.as_bytes(), edge).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    let pid = child.id().unwrap();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    tokio::time::sleep(Duration::from_millis(200)).await;

    // New work is refused while draining.
    let probe = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    probe
        .send_to(
            options_request(probe.local_addr().unwrap(), "late").as_bytes(),
            edge,
        )
        .await
        .unwrap();
    let (late, response) = final_status(&probe, Duration::from_secs(2)).await.unwrap();
    assert_eq!(late, 503, "a new request during the drain");
    assert!(header(&response, "Retry-After").is_some());

    // The transaction in flight still gets call-control's answer.
    let (status, _) = final_status(&socket, Duration::from_secs(5)).await.unwrap();
    assert_eq!(status, 200, "the transaction in flight was not finished");

    // Then the process exits by itself, successfully, well before the drain timeout.
    let exit = tokio::time::timeout(Duration::from_secs(8), child.wait())
        .await
        .expect("the edge did not exit after draining")
        .unwrap();
    assert!(exit.success(), "exit status {exit:?}");
}
