//! Load shedding end to end (`sip_edge::overload`): a burst of new REGISTERs larger than the
//! engine takes in time makes the edge answer part of it 503 with a spread Retry-After, while
//! a registration already under way (its authenticated REGISTER) and an OPTIONS probe sent in
//! the middle of the burst are served; every request of the burst gets an answer, and once
//! the burst is absorbed a new REGISTER is challenged again.
//!
//! The sources are trusted so that flood protection stays out of the way: what is measured is
//! the engine's backlog, not a source's rate.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sip_core::digest::Algorithm;
use sip_edge::overload::OverloadConfig;
use sip_msg::SipMessage;
use support::*;
use tokio::net::UdpSocket;
use tokio::time::{Instant, timeout};

/// The burst: this many sockets, each sending this many new REGISTERs (one socket per phone
/// keeps each socket's answers well within its receive buffer).
const SOCKETS: usize = 40;
const PER_SOCKET: usize = 75;

fn register_text(local: std::net::SocketAddr, n: usize) -> String {
    format!(
        "REGISTER sip:{REALM} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-burst-{n}-{:x}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:burst{n}@{REALM}>;tag=b{n}\r\n\
         To: <sip:burst{n}@{REALM}>\r\n\
         Call-ID: burst-{n}-{local}\r\n\
         CSeq: 1 REGISTER\r\n\
         Contact: <sip:burst{n}@{local}>\r\n\
         Content-Length: 0\r\n\r\n",
        rand::random::<u32>()
    )
}

/// Reads `expected` answers on `socket` (or until `wait` passes): status → count, and the
/// Retry-After values of the 503s.
async fn answers(
    socket: Arc<UdpSocket>,
    expected: usize,
    wait: Duration,
) -> (BTreeMap<u16, usize>, Vec<u32>) {
    let deadline = Instant::now() + wait;
    let mut statuses = BTreeMap::new();
    let mut retry_afters = Vec::new();
    let mut buf = vec![0u8; 65_535];
    let mut got = 0;
    while got < expected {
        let Ok(Ok((n, _))) = timeout(deadline - Instant::now(), socket.recv_from(&mut buf)).await
        else {
            break;
        };
        let Ok(SipMessage::Response(response)) = sip_msg::parse_datagram(&buf[..n]) else {
            continue;
        };
        got += 1;
        *statuses.entry(response.status.as_u16()).or_default() += 1;
        if response.status.as_u16() == 503 {
            let after = header(&response, "Retry-After").expect("a 503 says when to retry");
            retry_afters.push(after.trim().parse().expect("Retry-After in seconds"));
        }
    }
    (statuses, retry_afters)
}

/// The status of the first response on `socket`, and how long it took to come.
async fn answer_time(socket: Arc<UdpSocket>) -> (u16, Duration) {
    let sent = Instant::now();
    let mut buf = vec![0u8; 65_535];
    let (n, _) = timeout(Duration::from_secs(10), socket.recv_from(&mut buf))
        .await
        .expect("an answer within 10 s")
        .unwrap();
    let took = sent.elapsed();
    match sip_msg::parse_datagram(&buf[..n]) {
        Ok(SipMessage::Response(response)) => (response.status.as_u16(), took),
        other => panic!("not a response: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_new_registrations_is_partly_refused_while_exchanges_under_way_go_on() {
    let (_etcd, store) = etcd().await;
    seed_devices(&store, 0..2).await;
    let mut config = edge_config("edge-overload");
    config.listen = vec!["udp:127.0.0.1:0".parse().unwrap()];
    config.protection.trusted_networks = vec!["127.0.0.0/8".parse().unwrap()];
    config.overload = OverloadConfig {
        target_delay: Duration::from_millis(5),
        min_backlog: 32,
        retry_after_secs: 5,
    };
    let edge = start_edge(config, store.clone(), in_process_bus()).await;
    let server = udp_addr(&edge);

    // A phone challenged before the burst: its authenticated REGISTER goes in the middle.
    let mut phone = Client::udp(server).await;
    let contact = format!("Contact: {}", phone.contact());
    let first = phone.register_text(&username(1), std::slice::from_ref(&contact));
    phone.send(&first).await;
    let challenge = phone.final_response(Duration::from_secs(5)).await.unwrap();
    assert_eq!(challenge.status.as_u16(), 401);
    // And a prober, as the failover controller: its answer is awaited as soon as it is sent.
    let probe_socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let probe_local = probe_socket.local_addr().unwrap();

    let mut sockets = Vec::new();
    for _ in 0..SOCKETS {
        sockets.push(Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap()));
    }
    let readers: Vec<_> = sockets
        .iter()
        .map(|s| tokio::spawn(answers(s.clone(), PER_SOCKET, Duration::from_secs(20))))
        .collect();
    let mut probe = None;
    let started = Instant::now();
    for round in 0..PER_SOCKET {
        for (i, socket) in sockets.iter().enumerate() {
            let text = register_text(socket.local_addr().unwrap(), round * SOCKETS + i);
            socket.send_to(text.as_bytes(), server).await.unwrap();
        }
        if round == PER_SOCKET / 2 {
            let options = format!(
                "OPTIONS sip:{server} SIP/2.0\r\n\
                 Via: SIP/2.0/UDP {probe_local};branch=z9hG4bK-probe\r\n\
                 Max-Forwards: 70\r\n\
                 From: <sip:probe@{REALM}>;tag=p\r\n\
                 To: <sip:{server}>\r\n\
                 Call-ID: probe@test\r\n\
                 CSeq: 1 OPTIONS\r\n\
                 Content-Length: 0\r\n\r\n"
            );
            probe_socket
                .send_to(options.as_bytes(), server)
                .await
                .unwrap();
            probe = Some(tokio::spawn(answer_time(probe_socket.clone())));
            let credentials =
                credentials_for(&challenge, &username(1), &password(1), Algorithm::Sha256);
            let second = phone.register_text(
                &username(1),
                &[contact.clone(), format!("Authorization: {credentials}")],
            );
            phone.send(&second).await;
        }
    }
    let sent_in = started.elapsed();

    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    let mut retry_afters = Vec::new();
    for reader in readers {
        let (s, r) = reader.await.unwrap();
        for (status, count) in s {
            *statuses.entry(status).or_default() += count;
        }
        retry_afters.extend(r);
    }
    eprintln!(
        "burst of {} new REGISTERs sent in {sent_in:?}: answers {statuses:?}",
        SOCKETS * PER_SOCKET
    );
    // Every request of the burst was answered: challenged or refused, none dropped.
    assert_eq!(
        statuses.values().sum::<usize>(),
        SOCKETS * PER_SOCKET,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.keys().copied().collect::<Vec<_>>(),
        vec![401, 503],
        "some challenged, some refused: {statuses:?}"
    );
    assert!(
        retry_afters.iter().all(|after| (5..=10).contains(after)),
        "Retry-After spread over 5-10 s: {retry_afters:?}"
    );
    assert!(
        retry_afters.iter().min() != retry_afters.iter().max(),
        "the refused are not all told the same moment: {retry_afters:?}"
    );

    // The exchange under way went on, and the probe was answered.
    let registered = phone.final_response(Duration::from_secs(10)).await.unwrap();
    assert_eq!(registered.status.as_u16(), 200, "{registered:?}");
    let (status, probe_took) = probe.unwrap().await.unwrap();
    assert_eq!(status, 200);
    // It skipped the backlog (`transport::inbound`): answered within a batch, not behind
    // thousands of REGISTERs.
    eprintln!("OPTIONS sent mid-burst answered in {probe_took:?}");
    assert!(
        probe_took < Duration::from_millis(250),
        "OPTIONS answered after {probe_took:?}"
    );

    // Caught up: a new exchange is challenged again.
    let mut late = Client::udp(server).await;
    let text = late.register_text(&username(0), &[format!("Contact: {}", late.contact())]);
    late.send(&text).await;
    let answer = late.final_response(Duration::from_secs(5)).await.unwrap();
    assert_eq!(answer.status.as_u16(), 401, "{answer:?}");
    edge.drain().await;
}

/// Without shedding, a burst of 10,000 new REGISTERs over TCP (flow-controlled: nothing is
/// lost on the way, all of it queues at the engine) builds a backlog of several hundred
/// milliseconds; an OPTIONS sent over UDP after the whole burst is still answered long before
/// the burst is (`transport::inbound`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_options_probe_skips_the_backlog() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    // Under 256 messages per connection: the edge's per-connection send queue.
    const CONNECTIONS: usize = 100;
    const PER_CONNECTION: usize = 100;

    let (_etcd, store) = etcd().await;
    seed_devices(&store, 0..1).await;
    let mut config = edge_config("edge-probe-lane");
    config.protection.trusted_networks = vec!["127.0.0.0/8".parse().unwrap()];
    config.overload.target_delay = Duration::ZERO;
    let edge = start_edge(config, store.clone(), in_process_bus()).await;
    let (udp, tcp) = (udp_addr(&edge), tcp_addr(&edge));

    let mut streams = Vec::new();
    for _ in 0..CONNECTIONS {
        streams.push(tokio::net::TcpStream::connect(tcp).await.unwrap());
    }
    let started = Instant::now();
    let mut readers = Vec::new();
    for (c, stream) in streams.into_iter().enumerate() {
        let local = stream.local_addr().unwrap();
        let (mut read, mut write) = stream.into_split();
        let burst: String = (0..PER_CONNECTION)
            .map(|n| {
                register_text(local, c * PER_CONNECTION + n).replace("SIP/2.0/UDP", "SIP/2.0/TCP")
            })
            .collect();
        tokio::spawn(async move { write.write_all(burst.as_bytes()).await.unwrap() });
        readers.push(tokio::spawn(async move {
            // Counts the 401s' status lines until all came (or 30 s passed), scanning each
            // read once (with the previous read's last bytes, for a line split across reads).
            const STATUS: &[u8] = b"SIP/2.0 401 ";
            let deadline = Instant::now() + Duration::from_secs(30);
            let (mut challenged, mut tail, mut buf) = (0, Vec::new(), vec![0u8; 65_536]);
            while challenged < PER_CONNECTION {
                match timeout(deadline - Instant::now(), read.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => {
                        tail.extend_from_slice(&buf[..n]);
                        challenged += tail.windows(STATUS.len()).filter(|w| *w == STATUS).count();
                        let keep = tail.len().min(STATUS.len() - 1);
                        tail.drain(..tail.len() - keep);
                    }
                    _ => break,
                }
            }
            challenged
        }));
    }
    // The whole burst is written (or queued in the kernel): now the probe.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let probe_socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let probe_local = probe_socket.local_addr().unwrap();
    let options = format!(
        "OPTIONS sip:{udp} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {probe_local};branch=z9hG4bK-probe\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@{REALM}>;tag=p\r\n\
         To: <sip:{udp}>\r\n\
         Call-ID: probe-lane@test\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let probe = tokio::spawn(answer_time(probe_socket.clone()));
    probe_socket.send_to(options.as_bytes(), udp).await.unwrap();
    let mut challenged = 0;
    for reader in readers {
        challenged += reader.await.unwrap();
    }
    let burst_took = started.elapsed();
    let (status, probe_took) = probe.await.unwrap();
    eprintln!(
        "burst of {} over TCP: {challenged} challenged in {burst_took:?}; OPTIONS sent 20 ms \
         after it answered in {probe_took:?}",
        CONNECTIONS * PER_CONNECTION
    );
    assert_eq!(status, 200);
    assert_eq!(challenged, CONNECTIONS * PER_CONNECTION);
    assert!(
        probe_took * 3 < burst_took,
        "the OPTIONS waited behind the burst: {probe_took:?} of {burst_took:?}"
    );
    edge.drain().await;
}
