//! The same call in cluster mode: the directory, the SIP edge and call-control as separate
//! processes (the release binaries an operator deploys) over a real nats-server and a real
//! etcd. Two phones register through the edge and call each other; the callee hangs up.
//! Binaries beside this package's: `cargo test --workspace` builds them.
//!
//! The takeover test runs every service as its own process (directory, edge, media, two
//! call-control replicas) and kills (SIGKILL) the call-control process that set up a relayed
//! call while RTP flows: the media keeps flowing and the hang-up completes through the other
//! replica, which also releases the relay session.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Cluster, ClusterOptions, REALM, rtp, sdp_for, sdp_port, wait_for_edge};
use sip_msg::{Method, StatusCode};
use test_phone::Phone;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_through_separate_edge_and_call_control_processes() {
    let mut cluster = Cluster::start(ClusterOptions::default()).await;
    let _call_control = cluster.call_control("cc-a").await;
    let sip = cluster.sip;
    wait_for_edge(sip).await;

    let mut alice = Phone::new("user1", "pw1", REALM, sip).await;
    let mut bob = Phone::new("user2", "pw2", REALM, sip).await;
    alice.register().await;
    bob.register().await;
    let (_, invite) = cluster
        .call_until_ringing(&mut alice, &mut bob, "cluster", test_phone::SDP_OFFER)
        .await;
    assert_eq!(invite.method, Method::Invite);
    bob.reply(&invite, StatusCode::RINGING, "b").await;
    assert_eq!(alice.response(true).await.status, StatusCode::RINGING);
    bob.reply(&invite, StatusCode::OK, "b").await;
    let answered = alice.response(false).await;
    assert_eq!(answered.status, StatusCode::OK);
    let ack = alice.in_dialog(&answered, "ACK", 2);
    alice.send(ack.as_bytes()).await;
    // Bob got call-control's ACK; Bob hangs up, Alice gets the BYE.
    assert_eq!(bob.request().await.method, Method::Ack);
    // Bob's BYE goes inside Bob's dialog: From is Bob (the To of the INVITE with our tag).
    let bye_text = {
        let from = format!(
            "{};tag=b",
            invite.headers.get(&sip_msg::HeaderName::To).unwrap()
        );
        let to = invite.headers.get(&sip_msg::HeaderName::From).unwrap();
        let contact = match invite.headers.contacts().unwrap() {
            Some(sip_msg::Contacts::List(list)) => list[0].uri.to_string(),
            _ => panic!("no Contact in the INVITE"),
        };
        format!(
            "BYE {contact} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bK-bobbye;rport\r\n\
             Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: 2 BYE\r\n\
             Content-Length: 0\r\n\r\n",
            bob.local,
            invite.headers.call_id().unwrap()
        )
    };
    bob.send(bye_text.as_bytes()).await;
    assert_eq!(bob.response(false).await.status, StatusCode::OK);
    let bye = alice.request().await;
    assert_eq!(bye.method, Method::Bye);
    assert_eq!(bye.headers.call_id(), answered.headers.call_id());
}

/// Arrival times of the RTP packets one phone receives, collected until `stop`.
async fn receive_rtp(
    socket: Arc<tokio::net::UdpSocket>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::time::Instant> {
    let mut arrivals = Vec::new();
    let mut buf = vec![0u8; 2048];
    while !*stop.borrow() {
        if let Ok(Ok((172, _))) =
            tokio::time::timeout(Duration::from_millis(50), socket.recv_from(&mut buf)).await
        {
            arrivals.push(tokio::time::Instant::now());
        }
    }
    arrivals
}

/// The longest silence between consecutive arrivals.
fn longest_gap(arrivals: &[tokio::time::Instant]) -> Duration {
    arrivals
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or(Duration::MAX)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_call_control_process_of_a_relayed_call_keeps_media_and_the_hang_up_works() {
    use call_control::b2bua::{EstablishedCall, call_key};
    use media::MediaControl as _;
    use prost::Message as _;

    let mut cluster = Cluster::start(ClusterOptions {
        relay: true,
        ..ClusterOptions::default()
    })
    .await;
    let (sip, store, relay_ports) = (
        cluster.sip,
        cluster.store.clone(),
        cluster.relay_ports.clone(),
    );
    let nats_url = cluster.nats.url();
    let mut cc_1 = cluster.call_control("cc-1").await;
    wait_for_edge(sip).await;

    // A call anchored on the relay, set up by cc-1 (the only replica so far).
    let alice_rtp = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let bob_rtp = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let mut alice = Phone::new("user1", "pw1", REALM, sip).await;
    let mut bob = Phone::new("user2", "pw2", REALM, sip).await;
    alice.register().await;
    bob.register().await;
    let offer = sdp_for(alice_rtp.local_addr().unwrap().port());
    let (call_id, invite) = cluster
        .call_until_ringing(&mut alice, &mut bob, "takeover", &offer)
        .await;
    let relay_for_bob = sdp_port(&invite.body);
    assert!(relay_ports.contains(&relay_for_bob), "{relay_for_bob}");
    let bob_sdp = sdp_for(bob_rtp.local_addr().unwrap().port());
    bob.reply_with_sdp(&invite, StatusCode::OK, "b", &bob_sdp)
        .await;
    let answered = alice.response(false).await;
    assert_eq!(answered.status, StatusCode::OK);
    let relay_for_alice = sdp_port(&answered.body);
    assert!(relay_ports.contains(&relay_for_alice), "{relay_for_alice}");
    let ack = alice.in_dialog(&answered, "ACK", 2);
    alice.send(ack.as_bytes()).await;
    assert_eq!(bob.request().await.method, Method::Ack);

    // The stored call names its relay session and the media replica owning it.
    let mut snapshot = None;
    for _ in 0..100 {
        if let Some(kv) = store.get(&call_key(&call_id)).await.unwrap() {
            snapshot = Some(EstablishedCall::decode(kv.value).unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let snapshot = snapshot.expect("the established call is stored");
    assert_ne!(
        snapshot.media_session, 0,
        "the relay session is in the snapshot"
    );
    assert_eq!(snapshot.media_owner, "media-k");
    let session = media::relay::SessionId(snapshot.media_session);

    // Both phones talk, 20 ms packets, through the relay.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let to_alice = tokio::spawn(receive_rtp(alice_rtp.clone(), stop_rx.clone()));
    let to_bob = tokio::spawn(receive_rtp(bob_rtp.clone(), stop_rx.clone()));
    let talk = {
        let (alice_rtp, bob_rtp) = (alice_rtp.clone(), bob_rtp.clone());
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let mut sent = 0u16;
            while !*stop.borrow() && sent < 1_000 {
                tick.tick().await;
                let (packet_a, packet_b) = (rtp(sent, 0xA), rtp(sent, 0xB));
                let a = alice_rtp.send_to(&packet_a, ("127.0.0.1", relay_for_alice));
                let b = bob_rtp.send_to(&packet_b, ("127.0.0.1", relay_for_bob));
                let (a, b) = tokio::join!(a, b);
                a.unwrap();
                b.unwrap();
                sent += 1;
            }
            sent
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;

    // A second replica joins; then cc-1 is killed outright (no drain, no goodbye).
    let _cc_2 = cluster.call_control("cc-2").await;
    cc_1.start_kill().unwrap();
    let status = cc_1.wait().await.unwrap();
    assert!(!status.success(), "cc-1 was killed: {status}");
    tokio::time::sleep(Duration::from_millis(1_000)).await;

    let bus: Arc<dyn bus::Bus> = Arc::new(
        bus::nats::NatsBus::connect(bus::nats::NatsOptions::new(
            "takeover-test",
            vec![nats_url.clone()],
        ))
        .await
        .unwrap(),
    );
    let mut records = bus.subscribe(proto::subjects::CALL_RECORDS).await.unwrap();

    // Alice hangs up: cc-2 takes the call over from the store, Bob gets the BYE.
    let bye = alice.in_dialog(&answered, "BYE", 3);
    alice.send(bye.as_bytes()).await;
    let ok = alice.response(false).await;
    assert_eq!(ok.status, StatusCode::OK, "{ok:?}");
    let bye = bob.request().await;
    assert_eq!(bye.method, Method::Bye);
    assert_eq!(bye.headers.call_id(), invite.headers.call_id());
    bob.reply(&bye, StatusCode::OK, "b").await;
    stop_tx.send(true).unwrap();
    let sent = talk.await.unwrap();
    let (to_alice, to_bob) = (to_alice.await.unwrap(), to_bob.await.unwrap());

    // Media never stopped while cc-1 died and cc-2 took over.
    let (gap_a, gap_b) = (longest_gap(&to_alice), longest_gap(&to_bob));
    eprintln!(
        "sent {sent} each way; received {} by Alice, {} by Bob; longest silence {gap_a:?} / {gap_b:?}",
        to_alice.len(),
        to_bob.len()
    );
    assert!(sent >= 50, "the phones talked through the takeover: {sent}");
    for (who, got, gap) in [("Alice", &to_alice, gap_a), ("Bob", &to_bob, gap_b)] {
        assert!(
            got.len() as u64 + 5 >= u64::from(sent),
            "{who} received {} of {sent}",
            got.len()
        );
        assert!(
            gap < Duration::from_millis(250),
            "{who}: media stopped for {gap:?}"
        );
    }

    // cc-2 released the relay session it adopted, and removed the stored call.
    let client = media::MediaClient::new(bus.clone(), Duration::from_secs(2));
    client.adopt(session, "media-k", "");
    let mut released = false;
    for _ in 0..50 {
        if client.stats(session).await.is_err() {
            released = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(released, "the relay session was released at hang-up");
    let mut left = usize::MAX;
    for _ in 0..50 {
        left = store
            .list_prefix("calanque/v1/calls/")
            .await
            .unwrap()
            .0
            .len();
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(left, 0, "the ended call was removed from the store");

    // cc-2 published the call's record, with what cc-1 knew (sites, set-up and answer times).
    let message = tokio::time::timeout(Duration::from_secs(5), records.next())
        .await
        .expect("a call record")
        .unwrap();
    let record = proto::v1::CallRecord::decode(message.payload).unwrap();
    assert_eq!(record.call_id, call_id);
    assert_eq!(record.instance, "cc-2");
    assert_eq!((record.outcome.as_str(), record.status), ("answered", 200));
    assert_eq!(record.caller_site, "S-1");
    assert!(
        0 < record.started_unix_ms
            && record.started_unix_ms <= record.answered_unix_ms
            && record.answered_unix_ms + 1_000 < record.ended_unix_ms,
        "times carried over from cc-1: {record:?}"
    );
}
