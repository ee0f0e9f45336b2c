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
use directory::model::{ClassOfService, Device, Entry, Extension, Route, Site, Trunk};
use directory::storage::{encode, entry_key};
use proto::v1;
use sip_core::digest::{Algorithm, ha1};
use sip_msg::{Method, StatusCode};
use store::etcd::{EtcdConfig, EtcdStore};
use store::{Op, Store};
use test_phone::{Phone, SDP_ANSWER, SDP_OFFER};
use testkit::etcd::EtcdServer;

const REALM: &str = "calanque.test";

fn put(entry: Entry) -> Op {
    Op::Put {
        key: entry_key(&entry.key()),
        value: encode(&entry),
        lease: None,
    }
}

/// One site (1000–1999), extensions 1001–1003 on devices user1–user3, 1003 internal-only, and
/// a national route to a carrier trunk.
async fn seed(store: &Arc<dyn Store>) {
    let site = Site::try_from(v1::Site {
        id: "S-1".into(),
        name: "Town hall".into(),
        number_ranges: vec![v1::NumberRange {
            first: "1000".into(),
            last: "1999".into(),
        }],
        media_policy: v1::MediaPolicy::Direct as i32,
        ..Default::default()
    })
    .unwrap();
    let mut ops = vec![put(Entry::Site(site))];
    for (name, allowed) in [
        ("internal", vec![v1::CallCategory::Internal]),
        (
            "national",
            vec![v1::CallCategory::Internal, v1::CallCategory::National],
        ),
    ] {
        let cos = ClassOfService::try_from(v1::ClassOfService {
            name: name.into(),
            allowed: allowed.into_iter().map(|c| c as i32).collect(),
        })
        .unwrap();
        ops.push(put(Entry::ClassOfService(cos)));
    }
    for i in 1..=3 {
        let user = format!("user{i}");
        let pw = format!("pw{i}");
        let device = Device::try_from(v1::Device {
            id: format!("D-{i}"),
            sip_username: user.clone(),
            site_id: "S-1".into(),
            realm: REALM.into(),
            ha1_md5: ha1(Algorithm::Md5, &user, REALM, &pw).as_hex().into(),
            ha1_sha256: ha1(Algorithm::Sha256, &user, REALM, &pw).as_hex().into(),
            transport: 0,
        })
        .unwrap();
        ops.push(put(Entry::Device(device)));
        let extension = Extension::try_from(v1::Extension {
            number: format!("100{i}"),
            site_id: "S-1".into(),
            display_name: format!("Phone {i}"),
            class_of_service: if i == 3 { "internal" } else { "national" }.into(),
            user_id: String::new(),
            device_ids: vec![format!("D-{i}")],
        })
        .unwrap();
        ops.push(put(Entry::Extension(extension)));
    }
    // A carrier trunk and a national route (0 + 9 digits) to it.
    let trunk = Trunk::try_from(v1::Trunk {
        name: "carrier".into(),
        kind: v1::TrunkKind::Carrier as i32,
        address: "192.0.2.50:5060".into(),
        transport: v1::Transport::Udp as i32,
        ..Default::default()
    })
    .unwrap();
    ops.push(put(Entry::Trunk(trunk)));
    let route = Route::try_from(v1::Route {
        id: "national".into(),
        pattern: "0ZXXXXXXXX".into(),
        target: Some(v1::route::Target::Trunk("carrier".into())),
        priority: 10,
        category: v1::CallCategory::National as i32,
        ..Default::default()
    })
    .unwrap();
    ops.push(put(Entry::Route(route)));
    store.txn(vec![], ops).await.unwrap();
}

struct Setup {
    _etcd: EtcdServer,
    edge: sip_edge::EdgeHandle,
    _cc: call_control::service::CallControlHandle,
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
    seed(&store).await;
    let bus: Arc<dyn Bus> = Arc::new(InProcessBus::new(Default::default()));
    let mut config = sip_edge::EdgeConfig::new("edge-1", REALM, [9; 32]);
    config.listen = vec!["udp:127.0.0.1:0".parse().unwrap()];
    let edge = sip_edge::start(config, store.clone(), bus.clone())
        .await
        .unwrap();
    let cc = start(
        CallControlConfig {
            instance: "cc-1".into(),
            domain: REALM.into(),
            ring_timeout: Duration::from_secs(30),
        },
        store,
        bus,
    )
    .await
    .unwrap();
    Setup {
        _etcd: etcd,
        edge,
        _cc: cc,
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
