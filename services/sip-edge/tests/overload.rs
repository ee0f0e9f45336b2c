//! Load shedding end to end (`sip_edge::overload`, ADR 0021): a burst of new REGISTERs larger
//! than the engine takes in time makes the edge answer part of it 503 with a spread
//! Retry-After, while a registration already under way (its authenticated REGISTER) and an
//! OPTIONS probe sent in the middle of the burst are served; every request of the burst gets
//! an answer, and once the burst is absorbed a new REGISTER is challenged again. And the
//! OPTIONS lane (`transport::inbound`): with shedding off, an OPTIONS sent after a burst is
//! answered long before the burst is.
//!
//! The bursts go over TCP, a hundred connections: flow control loses nothing, and the many
//! connection readers fill the engine's queue faster than it empties, so the backlog is at
//! the engine (one UDP socket's reader can be the slower side, leaving the backlog in the
//! kernel where the edge does not see it). The sources are trusted so that flood protection
//! stays out of the way: what is measured is the engine's backlog, not a source's rate. The
//! tests run one at a time: each measures how fast one edge gets through a burst.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use sip_core::digest::Algorithm;
use sip_edge::overload::OverloadConfig;
use sip_msg::{Frame, SipMessage, StreamFramer};
use support::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};

/// One test at a time (see the module's comment).
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// The bursts' connections: many readers, so that the backlog builds at the engine.
const CONNECTIONS: usize = 100;

/// The answers to a burst: status → count, and the Retry-After of each 503.
#[derive(Debug, Default)]
struct Tally {
    statuses: BTreeMap<u16, usize>,
    retry_afters: Vec<u32>,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        for (status, count) in other.statuses {
            *self.statuses.entry(status).or_default() += count;
        }
        self.retry_afters.extend(other.retry_afters);
    }

    fn answered(&self) -> usize {
        self.statuses.values().sum()
    }
}

/// Opens [`CONNECTIONS`] connections to `tcp` and writes `per_connection` new REGISTERs on
/// each at once; each task reads its connection's answers until all came (or 30 s passed).
async fn tcp_burst(tcp: SocketAddr, per_connection: usize) -> Vec<JoinHandle<Tally>> {
    let mut streams = Vec::new();
    for _ in 0..CONNECTIONS {
        streams.push(TcpStream::connect(tcp).await.unwrap());
    }
    let mut readers = Vec::new();
    for (c, stream) in streams.into_iter().enumerate() {
        let local = stream.local_addr().unwrap();
        let (mut read, mut write) = stream.into_split();
        let burst: String = (0..per_connection)
            .map(|n| new_tcp_register(local, "burst", c * per_connection + n))
            .collect();
        tokio::spawn(async move { write.write_all(burst.as_bytes()).await.unwrap() });
        readers.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            let (mut tally, mut framer, mut buf) =
                (Tally::default(), StreamFramer::new(), vec![0u8; 65_536]);
            while tally.answered() < per_connection {
                match timeout(deadline - Instant::now(), read.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => framer.push(&buf[..n]),
                    _ => break,
                }
                while let Some(frame) = framer.next() {
                    let Ok(Frame::Message(SipMessage::Response(response))) = frame else {
                        continue;
                    };
                    let status = response.status.as_u16();
                    *tally.statuses.entry(status).or_default() += 1;
                    if status == 503 {
                        let after = header(&response, "Retry-After").expect("a 503 says when");
                        tally
                            .retry_afters
                            .push(after.trim().parse().expect("seconds"));
                    }
                }
            }
            tally
        }));
    }
    readers
}

async fn tally(readers: Vec<JoinHandle<Tally>>) -> Tally {
    let mut total = Tally::default();
    for reader in readers {
        total.add(reader.await.unwrap());
    }
    total
}

/// Sends an OPTIONS to the edge at `server` from a socket of its own, as a failover controller
/// probes; the task returns the answer's status and how long it took to come.
async fn probe(server: SocketAddr, call_id: &str) -> JoinHandle<(u16, Duration)> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = socket.local_addr().unwrap();
    let options = format!(
        "OPTIONS sip:{server} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-probe\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@{REALM}>;tag=p\r\n\
         To: <sip:{server}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let sent = Instant::now();
    socket.send_to(options.as_bytes(), server).await.unwrap();
    tokio::spawn(async move {
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
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_new_registrations_is_partly_refused_while_exchanges_under_way_go_on() {
    const PER_CONNECTION: usize = 30;
    let _alone = ONE_AT_A_TIME.lock().await;
    let (_etcd, store) = etcd().await;
    seed_devices(&store, 0..2).await;
    let mut config = edge_config("edge-overload");
    config.protection.trusted_networks = vec!["127.0.0.0/8".parse().unwrap()];
    config.overload = OverloadConfig {
        target_delay: Duration::from_millis(5),
        min_backlog: 32,
        retry_after_secs: 5,
        ..OverloadConfig::default()
    };
    let edge = start_edge(config, store.clone(), in_process_bus()).await;
    let (udp, tcp) = (udp_addr(&edge), tcp_addr(&edge));

    // A phone challenged before the burst: its authenticated REGISTER goes in with it.
    let mut phone = Client::udp(udp).await;
    let contact = format!("Contact: {}", phone.contact());
    let first = phone.register_text(&username(1), std::slice::from_ref(&contact));
    phone.send(&first).await;
    let challenge = phone.final_response(Duration::from_secs(5)).await.unwrap();
    assert_eq!(challenge.status.as_u16(), 401);

    let started = Instant::now();
    let readers = tcp_burst(tcp, PER_CONNECTION).await;
    // The burst is on its way: a probe, and the phone's authenticated REGISTER.
    let probed = probe(udp, "probe@test").await;
    let credentials = credentials_for(&challenge, &username(1), &password(1), Algorithm::Sha256);
    let second = phone.register_text(
        &username(1),
        &[contact.clone(), format!("Authorization: {credentials}")],
    );
    phone.send(&second).await;
    let burst = tally(readers).await;
    eprintln!(
        "burst of {} new REGISTERs: answers {:?} in {:?}",
        CONNECTIONS * PER_CONNECTION,
        burst.statuses,
        started.elapsed()
    );
    // Every request of the burst was answered: challenged or refused, none dropped.
    assert_eq!(burst.answered(), CONNECTIONS * PER_CONNECTION, "{burst:?}");
    assert_eq!(
        burst.statuses.keys().copied().collect::<Vec<_>>(),
        vec![401, 503],
        "some challenged, some refused: {:?}",
        burst.statuses
    );
    let retry_afters = &burst.retry_afters;
    assert!(
        retry_afters.iter().all(|after| (5..=10).contains(after)),
        "Retry-After spread over 5-10 s: {retry_afters:?}"
    );
    assert!(
        retry_afters.iter().min() != retry_afters.iter().max(),
        "the refused are not all told the same moment: {retry_afters:?}"
    );

    // The exchange under way went on, and the probe was answered at once.
    let registered = phone.final_response(Duration::from_secs(10)).await.unwrap();
    assert_eq!(registered.status.as_u16(), 200, "{registered:?}");
    let (status, probe_took) = probed.await.unwrap();
    assert_eq!(status, 200);
    eprintln!("OPTIONS sent with the burst answered in {probe_took:?}");
    assert!(
        probe_took < Duration::from_millis(250),
        "OPTIONS answered after {probe_took:?}"
    );

    // Caught up: a new exchange is challenged again.
    let mut late = Client::udp(udp).await;
    let text = late.register_text(&username(0), &[format!("Contact: {}", late.contact())]);
    late.send(&text).await;
    let answer = late.final_response(Duration::from_secs(5)).await.unwrap();
    assert_eq!(answer.status.as_u16(), 401, "{answer:?}");
    edge.drain().await;
}

/// With shedding off, a burst of 10,000 new REGISTERs builds a backlog of several hundred
/// milliseconds at the engine; an OPTIONS sent after the whole burst is still answered long
/// before the burst is (`transport::inbound`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_options_probe_skips_the_backlog() {
    const PER_CONNECTION: usize = 100;
    let _alone = ONE_AT_A_TIME.lock().await;
    let (_etcd, store) = etcd().await;
    seed_devices(&store, 0..1).await;
    let mut config = edge_config("edge-probe-lane");
    config.protection.trusted_networks = vec!["127.0.0.0/8".parse().unwrap()];
    config.overload.target_delay = Duration::ZERO;
    let edge = start_edge(config, store.clone(), in_process_bus()).await;
    let (udp, tcp) = (udp_addr(&edge), tcp_addr(&edge));

    let started = Instant::now();
    let readers = tcp_burst(tcp, PER_CONNECTION).await;
    // The whole burst is written (or queued in the kernel): now the probe.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let probed = probe(udp, "probe-lane@test").await;
    let burst = tally(readers).await;
    let burst_took = started.elapsed();
    let (status, probe_took) = probed.await.unwrap();
    eprintln!(
        "burst of {} over TCP: {:?} in {burst_took:?}; OPTIONS sent 20 ms after it answered in \
         {probe_took:?}",
        CONNECTIONS * PER_CONNECTION,
        burst.statuses
    );
    assert_eq!(status, 200);
    assert_eq!(
        burst.statuses,
        BTreeMap::from([(401, CONNECTIONS * PER_CONNECTION)])
    );
    assert!(
        probe_took * 3 < burst_took,
        "the OPTIONS waited behind the burst: {probe_took:?} of {burst_took:?}"
    );
    edge.drain().await;
}
