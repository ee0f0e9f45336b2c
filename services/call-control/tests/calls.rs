//! A call end to end through real processes' code paths: two phones (UDP sockets) register
//! through a real edge (etcd-backed location, digest against the directory), the caller's
//! INVITE is challenged (407), handed to call-control over the bus, routed by the dial plan to
//! the callee's extension, sent through the callee's flow, rung, answered, ACKed, and hung up
//! from either side; a busy callee, a barred number and an unknown one get their answers, and
//! call-control keeps no state afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bus::Bus;
use bus::in_process::InProcessBus;
use call_control::service::{CallControlConfig, start};
use sip_msg::{Method, StatusCode};
use store::Store;
use store::etcd::{EtcdConfig, EtcdStore};
use test_phone::{Phone, SDP_ANSWER, SDP_OFFER};
use testkit::etcd::EtcdServer;

const REALM: &str = "calanque.test";

struct Setup {
    _etcd: EtcdServer,
    edge: sip_edge::EdgeHandle,
    cc: Option<call_control::service::CallControlHandle>,
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
}

async fn call_control(
    instance: &str,
    store: &Arc<dyn Store>,
    bus: &Arc<dyn Bus>,
) -> call_control::service::CallControlHandle {
    start(
        CallControlConfig {
            instance: instance.into(),
            domain: REALM.into(),
            ring_timeout: Duration::from_secs(30),
            cdr_file: None,
        },
        store.clone(),
        bus.clone(),
    )
    .await
    .unwrap()
}

async fn setup() -> Setup {
    let etcd = tokio::task::spawn_blocking(EtcdServer::start)
        .await
        .unwrap()
        .unwrap();
    let store: Arc<dyn Store> = Arc::new(
        EtcdStore::connect(&EtcdConfig::new([etcd.endpoint()]))
            .await
            .unwrap(),
    );
    test_phone::directory::seed_small_city(&store, REALM).await;
    let bus: Arc<dyn Bus> = Arc::new(InProcessBus::new(Default::default()));
    let mut config = sip_edge::EdgeConfig::new("edge-1", REALM, [9; 32]);
    config.listen = vec!["udp:127.0.0.1:0".parse().unwrap()];
    let edge = sip_edge::start(config, store.clone(), bus.clone())
        .await
        .unwrap();
    let cc = call_control("cc-1", &store, &bus).await;
    Setup {
        _etcd: etcd,
        edge,
        cc: Some(cc),
        store,
        bus,
    }
}

fn edge_addr(setup: &Setup) -> SocketAddr {
    setup.edge.local_addr(&sip_msg::Transport::Udp).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_between_two_phones_rings_connects_and_hangs_up() {
    let setup = setup().await;
    let mut alice = Phone::new("user1", "pw1", REALM, edge_addr(&setup)).await;
    let mut bob = Phone::new("user2", "pw2", REALM, edge_addr(&setup)).await;
    alice.register().await;
    bob.register().await;

    alice.call("1002", "call-1@alice").await;
    // Bob's phone rings: the INVITE comes from the edge, to Bob's registered address.
    let invite = bob.request().await;
    assert_eq!(invite.method, Method::Invite);
    assert_eq!(
        invite.body.as_ref(),
        SDP_OFFER.as_bytes(),
        "the offer reaches the callee"
    );
    bob.reply(&invite, StatusCode::RINGING, "bob1").await;
    let r = alice.response(true).await;
    assert_eq!(r.status, StatusCode::RINGING);
    bob.reply(&invite, StatusCode::OK, "bob1").await;
    let answered = alice.response(false).await;
    assert_eq!(answered.status, StatusCode::OK);
    assert_eq!(
        answered.body.as_ref(),
        SDP_ANSWER.as_bytes(),
        "the answer reaches the caller"
    );
    // Bob gets the ACK of his 200.
    let ack = bob.request().await;
    assert_eq!(ack.method, Method::Ack);
    // Alice ACKs, then hangs up; Bob gets the BYE.
    let ack = alice.in_dialog(&answered, "ACK", 2);
    alice.send(ack.as_bytes()).await;
    let bye = alice.in_dialog(&answered, "BYE", 3);
    alice.send(bye.as_bytes()).await;
    let bye_ok = alice.response(false).await;
    assert_eq!(bye_ok.status, StatusCode::OK);
    let bye = bob.request().await;
    assert_eq!(bye.method, Method::Bye);
    assert_eq!(bye.headers.call_id(), invite.headers.call_id());
    bob.reply(&bye, StatusCode::OK, "bob1").await;
    setup.edge.drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_barred_and_unknown_numbers_get_their_answers() {
    let setup = setup().await;
    let mut alice = Phone::new("user1", "pw1", REALM, edge_addr(&setup)).await;
    let mut bob = Phone::new("user2", "pw2", REALM, edge_addr(&setup)).await;
    let mut carol = Phone::new("user3", "pw3", REALM, edge_addr(&setup)).await;
    alice.register().await;
    bob.register().await;
    carol.register().await;

    // Busy.
    alice.call("1002", "call-busy@alice").await;
    let invite = bob.request().await;
    bob.reply(&invite, StatusCode::BUSY_HERE, "b").await;
    assert_eq!(alice.response(false).await.status, StatusCode::BUSY_HERE);

    // Unknown number.
    alice.call("1999", "call-unknown@alice").await;
    assert_eq!(alice.response(false).await.status, StatusCode::NOT_FOUND);

    // Carol is internal-only: a national number is barred, with the reason.
    carol.call("0123456789", "call-barred@carol").await;
    let barred = carol.response(false).await;
    assert_eq!(barred.status, StatusCode::FORBIDDEN, "{barred:?}");
    assert!(
        barred.reason.contains("internal"),
        "the reason names the class of service: {}",
        barred.reason
    );
    // Alice may call nationally, but trunks are not connected yet: 503, said so.
    alice.call("0123456789", "call-national@alice").await;
    let national = alice.response(false).await;
    assert_eq!(
        national.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{national:?}"
    );

    // Carol's extension is registered nowhere else; calling 1003 from Alice rings Carol.
    alice.call("1003", "call-carol@alice").await;
    let invite = carol.request().await;
    assert_eq!(invite.method, Method::Invite);
    carol.reply(&invite, StatusCode::DECLINE, "c").await;
    assert_eq!(alice.response(false).await.status, StatusCode::DECLINE);
    setup.edge.drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_replica_takes_over_an_established_call_when_the_first_dies() {
    let mut setup = setup().await;
    let mut alice = Phone::new("user1", "pw1", REALM, edge_addr(&setup)).await;
    let mut bob = Phone::new("user2", "pw2", REALM, edge_addr(&setup)).await;
    alice.register().await;
    bob.register().await;
    alice.call("1002", "takeover@alice").await;
    let invite = bob.request().await;
    bob.reply(&invite, StatusCode::OK, "bob").await;
    let answered = alice.response(false).await;
    assert_eq!(answered.status, StatusCode::OK);
    assert_eq!(bob.request().await.method, Method::Ack);
    let ack = alice.in_dialog(&answered, "ACK", 2);
    alice.send(ack.as_bytes()).await;

    // The established call is in the store under both Call-IDs.
    let stored = setup
        .store
        .list_prefix("calanque/v1/calls/")
        .await
        .unwrap()
        .0;
    assert_eq!(stored.len(), 2, "one key per leg");

    // cc-1 dies; cc-2 starts. Alice hangs up: cc-2 takes the call over from the store.
    let _cc2 = call_control("cc-2", &setup.store, &setup.bus).await;
    drop(setup.cc.take());
    let bye = alice.in_dialog(&answered, "BYE", 3);
    alice.send(bye.as_bytes()).await;
    assert_eq!(alice.response(false).await.status, StatusCode::OK);
    let bye = bob.request().await;
    assert_eq!(bye.method, Method::Bye);
    assert_eq!(bye.headers.call_id(), invite.headers.call_id());
    let cseq = bye.headers.cseq().unwrap().unwrap().seq;
    assert!(cseq > 1, "the takeover's CSeq moves on: {cseq}");
    bob.reply(&bye, StatusCode::OK, "bob").await;
    // Hung up: nothing left in the store.
    let mut left = 2;
    for _ in 0..50 {
        left = setup
            .store
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
    setup.edge.drain().await;
}
