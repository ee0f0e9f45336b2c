//! NAT handling: a phone behind NAT (its Via names a private address; RFC 3581 `rport`) gets
//! its answers at the address the edge saw, and its binding records that address as the flow
//! to reach it; CRLF keep-alive pings on TCP get their pong (RFC 5626 §3.5.1).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use sip_core::digest::Algorithm;
use sip_msg::SipMessage;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// A REGISTER as a phone behind NAT writes it: its own private address in Via and Contact.
fn natted_register(cseq: u32, authorization: Option<&str>) -> String {
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    format!(
        "REGISTER sip:{REALM} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.168.1.34:5062;rport;branch=z9hG4bK-nat{cseq}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:user1@{REALM}>;tag=n1\r\nTo: <sip:user1@{REALM}>\r\n\
         Call-ID: nat-1@192.168.1.34\r\nCSeq: {cseq} REGISTER\r\n\
         Contact: <sip:user1@192.168.1.34:5062>\r\n{auth}Expires: 600\r\nContent-Length: 0\r\n\r\n"
    )
}

async fn response(socket: &UdpSocket) -> sip_msg::Response {
    let mut buf = vec![0u8; 65535];
    loop {
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
            .await
            .expect("an answer at the address the edge saw")
            .unwrap();
        if let Ok(SipMessage::Response(r)) = sip_msg::parse_datagram(&buf[..n])
            && r.status.as_u16() >= 200
        {
            return r;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_behind_nat_is_answered_and_reached_at_its_observed_address() {
    let (_etcd, store) = etcd().await;
    seed_devices(&store, 0..2).await;
    let edge = start_edge(edge_config("edge-nat"), store, in_process_bus()).await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let observed = socket.local_addr().unwrap();

    socket
        .send_to(natted_register(1, None).as_bytes(), udp_addr(&edge))
        .await
        .unwrap();
    let challenge = response(&socket).await;
    assert_eq!(challenge.status.as_u16(), 401);
    // The edge stamped what it saw on our Via (RFC 3581).
    let via = header(&challenge, "Via").unwrap();
    assert!(via.contains(&format!("rport={}", observed.port())), "{via}");
    assert!(via.contains("received=127.0.0.1"), "{via}");

    let credentials = credentials_for(&challenge, "user1", "pw1", Algorithm::Md5);
    socket
        .send_to(
            natted_register(2, Some(&credentials)).as_bytes(),
            udp_addr(&edge),
        )
        .await
        .unwrap();
    let ok = response(&socket).await;
    assert_eq!(ok.status.as_u16(), 200, "{ok:?}");
    // The 200 lists the Contact as the phone registered it …
    assert_eq!(contacts(&ok), ["sip:user1@192.168.1.34:5062"]);
    // … and the binding keeps the address to reach it through its NAT.
    let bindings = edge
        .location()
        .lookup(&format!("sip:user1@{REALM}"), sip_edge::clock::unix_secs());
    assert_eq!(bindings.len(), 1);
    assert_eq!(bindings[0].flow.remote, observed.to_string());
    assert_eq!(bindings[0].binding.received, observed);
    edge.drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crlf_keepalive_pings_on_tcp_get_a_pong() {
    let (_etcd, store) = etcd().await;
    let edge = start_edge(edge_config("edge-ka"), store, in_process_bus()).await;
    let mut stream = TcpStream::connect(tcp_addr(&edge)).await.unwrap();
    for _ in 0..3 {
        stream.write_all(b"\r\n\r\n").await.unwrap();
        let mut pong = [0u8; 2];
        tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut pong))
            .await
            .expect("a pong in time")
            .unwrap();
        assert_eq!(&pong, b"\r\n");
    }
    edge.drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_pings_phones_behind_nat_to_keep_their_pinhole_open() {
    let (_etcd, store) = etcd().await;
    seed_devices(&store, 0..3).await;
    let mut config = edge_config("edge-ping");
    config.nat_keepalive = Duration::from_millis(300);
    let edge = start_edge(config, store, in_process_bus()).await;

    // user1 behind NAT (Contact names a private address); user2 not (Contact = its socket).
    let natted = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    natted
        .send_to(natted_register(1, None).as_bytes(), udp_addr(&edge))
        .await
        .unwrap();
    let challenge = response(&natted).await;
    let credentials = credentials_for(&challenge, "user1", "pw1", Algorithm::Md5);
    natted
        .send_to(
            natted_register(2, Some(&credentials)).as_bytes(),
            udp_addr(&edge),
        )
        .await
        .unwrap();
    assert_eq!(response(&natted).await.status.as_u16(), 200);
    let mut direct = Client::udp(udp_addr(&edge)).await;
    let contact = format!("Contact: {}", direct.contact());
    let ok = direct
        .register("user2", "pw2", Algorithm::Md5, &[contact])
        .await;
    assert_eq!(ok.status.as_u16(), 200);

    // The NATed phone gets CRLFCRLF pings at its observed address, repeatedly.
    let mut buf = [0u8; 64];
    for _ in 0..2 {
        let (n, from) = tokio::time::timeout(Duration::from_secs(3), natted.recv_from(&mut buf))
            .await
            .expect("a keep-alive for the phone behind NAT")
            .unwrap();
        assert_eq!(&buf[..n], b"\r\n\r\n");
        assert_eq!(from, udp_addr(&edge));
    }
    // The phone outside NAT gets none.
    let stray = direct.raw_datagram(Duration::from_millis(900)).await;
    assert!(
        stray.is_none(),
        "a phone outside NAT got {:?}",
        stray.map(|d| String::from_utf8_lossy(&d).into_owned())
    );
    edge.drain().await;
}
