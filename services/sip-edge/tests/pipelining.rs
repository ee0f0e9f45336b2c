//! A peer that pipelines many requests on one TCP connection and reads its answers slowly (a
//! gateway or a legacy PBX carrying a peak's transactions on a single connection) gets every
//! answer: the edge's reader stops taking requests while the connection's send queue is half
//! full, and TCP slows the peer down, instead of answers finding the queue full and being lost
//! (over TCP nothing retransmits them).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use sip_msg::{Frame, SipMessage, StreamFramer};
use support::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpSocket;
use tokio::time::{Instant, timeout};

/// Far more than the edge's per-connection send queue (256), and their answers far more than
/// the small receive buffer below holds.
const REQUESTS: usize = 5_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_pipelines_and_reads_slowly_loses_no_answer() {
    let (_etcd, store) = etcd().await;
    let mut config = edge_config("edge-pipelining");
    // What is tested is the connection's flow control, not flood protection.
    config.protection.trusted_networks = vec!["127.0.0.0/8".parse().unwrap()];
    let edge = start_edge(config, store, in_process_bus()).await;

    let socket = TcpSocket::new_v4().unwrap();
    // A small window: the edge's writes block soon after the peer stops reading.
    socket.set_recv_buffer_size(4_096).unwrap();
    let stream = socket.connect(tcp_addr(&edge)).await.unwrap();
    let local = stream.local_addr().unwrap();
    let (mut read, mut write) = stream.into_split();
    let burst: String = (0..REQUESTS)
        .map(|n| new_tcp_register(local, "pipe", n))
        .collect();
    let writer = tokio::spawn(async move {
        write.write_all(burst.as_bytes()).await.unwrap();
        write
    });

    // The peer reads nothing for a while: the edge's queue for it fills.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(20);
    let (mut statuses, mut branches) = (BTreeMap::<u16, usize>::new(), Vec::new());
    let (mut framer, mut buf) = (StreamFramer::new(), vec![0u8; 8_192]);
    while branches.len() < REQUESTS {
        match timeout(deadline - Instant::now(), read.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => framer.push(&buf[..n]),
            other => panic!(
                "connection ended or went quiet after {} answers ({statuses:?}): {other:?}",
                branches.len()
            ),
        }
        while let Some(frame) = framer.next() {
            let Ok(Frame::Message(SipMessage::Response(response))) = frame else {
                continue;
            };
            *statuses.entry(response.status.as_u16()).or_default() += 1;
            branches.push(header(&response, "Via").expect("a Via").to_owned());
        }
    }
    eprintln!(
        "{REQUESTS} pipelined REGISTERs answered {statuses:?}, read in {:?}",
        started.elapsed()
    );
    // The writer got everything through: TCP slowed it down, nothing refused it.
    let _write = timeout(Duration::from_secs(10), writer)
        .await
        .expect("the peer's requests all written")
        .unwrap();
    assert!(
        statuses.keys().all(|status| [401, 503].contains(status)),
        "challenged or refused: {statuses:?}"
    );
    // One answer per request, each request answered once.
    let mut answered: Vec<usize> = branches
        .iter()
        .map(|via| {
            let (_, n) = via.split_once("z9hG4bK-pipe-").expect("our branch");
            let digits: String = n.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().unwrap()
        })
        .collect();
    answered.sort_unstable();
    answered.dedup();
    assert_eq!(
        answered.len(),
        REQUESTS,
        "every request answered exactly once"
    );
    edge.drain().await;
}
