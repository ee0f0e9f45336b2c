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
use sip_msg::{Method, SipMessage, StatusCode};
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
    call_control_with(instance, store, bus, None).await
}

async fn call_control_with(
    instance: &str,
    store: &Arc<dyn Store>,
    bus: &Arc<dyn Bus>,
    media: Option<Arc<dyn media::MediaControl>>,
) -> call_control::service::CallControlHandle {
    start(
        CallControlConfig {
            instance: instance.into(),
            datacenter: String::new(),
            domain: REALM.into(),
            ring_timeout: Duration::from_secs(30),
            cdr_file: None,
            media,
        },
        store.clone(),
        bus.clone(),
    )
    .await
    .unwrap()
}

async fn setup() -> Setup {
    setup_with(None, false, false).await
}

/// etcd with the small city (site S-1 relayed when `relay`, and `groups`), the bus, and an edge
/// (127.0.0.0/8 trusted when `trust_loopback`): what every test here starts from.
async fn base(
    relay: bool,
    trust_loopback: bool,
    groups: &[GroupSeed<'_>],
) -> (
    EtcdServer,
    Arc<dyn Store>,
    Arc<dyn Bus>,
    sip_edge::EdgeHandle,
) {
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
    if relay {
        test_phone::directory::set_media_policy(&store, "S-1", true).await;
    }
    for (number, members, strategy, ring_seconds) in groups {
        test_phone::directory::add_hunt_group(&store, number, members, *strategy, *ring_seconds)
            .await;
    }
    let bus: Arc<dyn Bus> = Arc::new(InProcessBus::new(Default::default()));
    let mut config = sip_edge::EdgeConfig::new("edge-1", REALM, [9; 32]);
    config.listen = vec!["udp:127.0.0.1:0".parse().unwrap()];
    if trust_loopback {
        config.protection.trusted_networks = vec!["127.0.0.0/8".parse().unwrap()];
    }
    let edge = sip_edge::start(config, store.clone(), bus.clone())
        .await
        .unwrap();
    (etcd, store, bus, edge)
}

/// etcd with the small city (site S-1 relayed when `relay`), an edge, and cc-1 (with `media`).
async fn setup_with(
    media: Option<Arc<dyn media::MediaControl>>,
    relay: bool,
    trust_loopback: bool,
) -> Setup {
    let (etcd, store, bus, edge) = base(relay, trust_loopback, &[]).await;
    let cc = call_control_with("cc-1", &store, &bus, media).await;
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

/// The next call record published on the bus (at most 5 s away).
async fn next_record(records: &mut bus::Subscription) -> proto::v1::CallRecord {
    use prost::Message as _;
    let message = tokio::time::timeout(Duration::from_secs(5), records.next())
        .await
        .expect("a call record within 5 s")
        .expect("the subscription is open");
    assert_eq!(
        message.headers.get(proto::subjects::TYPE_HEADER),
        Some(proto::subjects::types::CALL_RECORD)
    );
    proto::v1::CallRecord::decode(message.payload).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_between_two_phones_rings_connects_and_hangs_up() {
    let setup = setup().await;
    let mut records = setup
        .bus
        .subscribe(proto::subjects::CALL_RECORDS)
        .await
        .unwrap();
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

    // The call record, on the bus.
    let record = next_record(&mut records).await;
    assert_eq!(record.call_id, "call-1@alice");
    assert_eq!((record.outcome.as_str(), record.status), ("answered", 200));
    assert_eq!(
        (record.caller_site.as_str(), record.callee_site.as_str()),
        ("S-1", "S-1")
    );
    assert_eq!(record.instance, "cc-1");
    assert_eq!(
        (record.callee.as_str(), record.answered_by.as_str()),
        (
            format!("sip:1002@{REALM}").as_str(),
            format!("sip:user2@{REALM}").as_str()
        ),
        "dialled extension 1002, answered by its device's AOR"
    );
    assert!(
        0 < record.started_unix_ms
            && record.started_unix_ms <= record.answered_unix_ms
            && record.answered_unix_ms <= record.ended_unix_ms,
        "{record:?}"
    );
    setup.edge.drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_barred_and_unknown_numbers_get_their_answers() {
    let setup = setup().await;
    let mut records = setup
        .bus
        .subscribe(proto::subjects::CALL_RECORDS)
        .await
        .unwrap();
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
    // Carol's extension is registered nowhere else; calling 1003 from Alice rings Carol.
    alice.call("1003", "call-carol@alice").await;
    let invite = carol.request().await;
    assert_eq!(invite.method, Method::Invite);
    carol.reply(&invite, StatusCode::DECLINE, "c").await;
    assert_eq!(alice.response(false).await.status, StatusCode::DECLINE);

    // One record per call, in order, each with its outcome and cause.
    let busy = next_record(&mut records).await;
    assert_eq!((busy.outcome.as_str(), busy.status), ("busy", 486));
    assert_eq!(busy.answered_unix_ms, 0);
    let unknown = next_record(&mut records).await;
    assert_eq!(unknown.status, 404, "{unknown:?}");
    let barred = next_record(&mut records).await;
    assert_eq!(barred.call_id, "call-barred@carol");
    assert_eq!(barred.status, 403);
    assert!(barred.cause.contains("internal"), "{barred:?}");
    let declined = next_record(&mut records).await;
    assert_eq!(declined.status, 603);
    setup.edge.drain().await;
}

/// Alice (user1) and Bob (user2) registered, in a call Alice made and Bob answered, stored.
struct AnsweredCall {
    alice: Phone,
    bob: Phone,
    /// The INVITE Bob got, and the 200 Alice got.
    invite: sip_msg::Request,
    answered: sip_msg::Response,
    /// The call's store keys (one per leg).
    keys: Vec<String>,
}

async fn answered_call(setup: &Setup, call_id: &str) -> AnsweredCall {
    let mut alice = Phone::new("user1", "pw1", REALM, edge_addr(setup)).await;
    let mut bob = Phone::new("user2", "pw2", REALM, edge_addr(setup)).await;
    alice.register().await;
    bob.register().await;
    alice.call("1002", call_id).await;
    let invite = bob.request().await;
    bob.reply(&invite, StatusCode::OK, "bob").await;
    let answered = alice.response(false).await;
    assert_eq!(answered.status, StatusCode::OK);
    assert_eq!(bob.request().await.method, Method::Ack);
    let ack = alice.in_dialog(&answered, "ACK", 2);
    alice.send(ack.as_bytes()).await;
    // The established call is in the store under both Call-IDs (written off the call path:
    // allow it a moment).
    let mut keys = Vec::new();
    for _ in 0..100 {
        keys = setup
            .store
            .list_prefix("calanque/v1/calls/")
            .await
            .unwrap()
            .0
            .into_iter()
            .map(|kv| kv.key)
            .collect();
        if keys.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(keys.len(), 2, "one key per leg");
    AnsweredCall {
        alice,
        bob,
        invite,
        answered,
        keys,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_replica_takes_over_an_established_call_when_the_first_dies() {
    let mut setup = setup().await;
    let AnsweredCall {
        mut alice,
        bob,
        invite,
        answered,
        ..
    } = answered_call(&setup, "takeover@alice").await;

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

/// A call another replica ended (its snapshot deleted from the store, as that replica does)
/// is forgotten by the replica that set it up: a late BYE for it is answered 481 and relayed to
/// nobody. Before, the first replica kept every such call (and counted it active) for good.
#[tokio::test]
async fn a_call_ended_by_another_replica_is_forgotten_here() {
    let setup = setup().await;
    let AnsweredCall {
        mut alice,
        bob,
        answered,
        keys,
        ..
    } = answered_call(&setup, "elsewhere@alice").await;

    // Another replica ended the call: its snapshot goes.
    for key in &keys {
        setup.store.delete(key).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let bye = alice.in_dialog(&answered, "BYE", 3);
    alice.send(bye.as_bytes()).await;
    assert_eq!(
        alice.response(false).await.status,
        StatusCode::CALL_DOES_NOT_EXIST,
        "cc-1 still held the call"
    );
    let relayed = bob.next(Duration::from_millis(500)).await;
    assert!(
        !matches!(relayed, Some(SipMessage::Request(ref r)) if r.method == Method::Bye),
        "a BYE reached Bob from a call that had ended: {relayed:?}"
    );
    setup.edge.drain().await;
}

/// An RTP packet (version 2, PCMU, 20 ms of silence) with this sequence number.
fn rtp(seq: u16) -> Vec<u8> {
    let mut packet = vec![0x80, 0x00];
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    packet.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    packet.extend(std::iter::repeat_n(0xFFu8, 160));
    packet
}

fn sdp_for(port: u16) -> String {
    format!(
        "v=0\r\no=p 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\n"
    )
}

fn sdp_port(body: &[u8]) -> u16 {
    let text = std::str::from_utf8(body).unwrap();
    let m = text.lines().find(|l| l.starts_with("m=audio ")).unwrap();
    m.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_site_call_goes_through_the_media_relay_both_ways() {
    let (relay, _events) = media::start(media::MediaConfig {
        bind_ip: "127.0.0.1".parse().unwrap(),
        port_first: 21000,
        port_last: 21999,
        ..Default::default()
    })
    .unwrap();
    let setup = setup_with(Some(Arc::new(relay)), true, false).await;
    let sip = edge_addr(&setup);

    let alice_rtp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let bob_rtp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (alice_port, bob_port) = (
        alice_rtp.local_addr().unwrap().port(),
        bob_rtp.local_addr().unwrap().port(),
    );
    let mut alice = Phone::new("user1", "pw1", REALM, sip).await;
    let mut bob = Phone::new("user2", "pw2", REALM, sip).await;
    alice.register().await;
    bob.register().await;
    alice
        .call_with_sdp("1002", "relay@alice", &sdp_for(alice_port))
        .await;
    let invite = bob.request().await;
    let relay_for_bob = sdp_port(&invite.body);
    assert!(
        (21000..=21999).contains(&relay_for_bob),
        "Bob is sent to the relay, not to Alice: {relay_for_bob}"
    );
    bob.reply_with_sdp(&invite, StatusCode::OK, "bob", &sdp_for(bob_port))
        .await;
    let answered = alice.response(false).await;
    assert_eq!(answered.status, StatusCode::OK);
    let relay_for_alice = sdp_port(&answered.body);
    assert!(
        (21000..=21999).contains(&relay_for_alice),
        "Alice is sent to the relay: {relay_for_alice}"
    );
    assert_ne!(relay_for_alice, relay_for_bob);

    // RTP both ways through the relay.
    let (mut buf_b, mut buf_a) = (vec![0u8; 2048], vec![0u8; 2048]);
    for seq in 0..20u16 {
        alice_rtp
            .send_to(&rtp(seq), ("127.0.0.1", relay_for_alice))
            .await
            .unwrap();
        bob_rtp
            .send_to(&rtp(1000 + seq), ("127.0.0.1", relay_for_bob))
            .await
            .unwrap();
    }
    let mut to_bob = 0;
    let mut to_alice = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while (to_bob < 20 || to_alice < 20) && tokio::time::Instant::now() < deadline {
        tokio::select! {
            Ok((n, _)) = bob_rtp.recv_from(&mut buf_b) => { if n == 172 { to_bob += 1; } }
            Ok((n, _)) = alice_rtp.recv_from(&mut buf_a) => { if n == 172 { to_alice += 1; } }
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    assert_eq!((to_bob, to_alice), (20, 20), "RTP relayed both ways");
    let bye = alice.in_dialog(&answered, "BYE", 3);
    alice.send(bye.as_bytes()).await;
    assert_eq!(alice.response(false).await.status, StatusCode::OK);
    setup.edge.drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn national_and_emergency_calls_leave_through_the_trunk_even_when_barred() {
    let setup = setup().await;
    // A fake carrier on loopback.
    let carrier = Phone::new("carrier", "-", REALM, edge_addr(&setup)).await;
    test_phone::directory::set_trunk_address(&setup.store, carrier.local).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // the directory cache follows
    let mut alice = Phone::new("user1", "pw1", REALM, edge_addr(&setup)).await;
    let mut carol = Phone::new("user3", "pw3", REALM, edge_addr(&setup)).await;
    alice.register().await;
    carol.register().await;

    // Alice (national class of service) calls a national number: it reaches the carrier.
    alice.call("0123456789", "national@alice").await;
    let invite = carrier.request().await;
    assert_eq!(invite.uri.user.as_deref(), Some("0123456789"));
    carrier
        .reply(&invite, StatusCode::BUSY_HERE, "carrier")
        .await;
    assert_eq!(alice.response(false).await.status, StatusCode::BUSY_HERE);

    // Carol is barred from national calls, but 112 always goes out, through her site's trunk.
    carol.call("112", "emergency@carol").await;
    let invite = loop {
        // (the edge's ACK of the carrier's 486 comes first)
        let request = carrier.request().await;
        if request.method == Method::Invite {
            break request;
        }
    };
    assert_eq!(invite.uri.user.as_deref(), Some("112"));
    carrier.reply(&invite, StatusCode::OK, "carrier").await;
    let answered = carol.response(false).await;
    assert_eq!(answered.status, StatusCode::OK);
    let bye = carol.in_dialog(&answered, "BYE", 3);
    carol.send(bye.as_bytes()).await;
    assert_eq!(carol.response(false).await.status, StatusCode::OK);
    setup.edge.drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_gateway_reaches_extensions_without_a_device() {
    let setup = setup_with(None, false, true).await;
    let mut bob = Phone::new("user2", "pw2", REALM, edge_addr(&setup)).await;
    bob.register().await;
    // The legacy PBX's gateway: trusted, unauthenticated, no device in the directory.
    let gateway = Phone::new("gateway", "-", REALM, edge_addr(&setup)).await;
    let invite = format!(
        "INVITE sip:1002@{REALM} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bK-gw1;rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:0612345678@legacy.pbx>;tag=gw\r\nTo: <sip:1002@{REALM}>\r\n\
         Call-ID: gw-1@legacy\r\nCSeq: 1 INVITE\r\nContact: <sip:gw@{}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP_OFFER}",
        gateway.local,
        gateway.local,
        SDP_OFFER.len()
    );
    gateway.send(invite.as_bytes()).await;
    let ringing = bob.request().await;
    assert_eq!(ringing.method, Method::Invite);
    bob.reply(&ringing, StatusCode::OK, "bob").await;
    assert_eq!(gateway.response(false).await.status, StatusCode::OK);
    // An unknown number from the gateway: 404.
    let unknown = invite
        .replace("sip:1002@", "sip:1999@")
        .replace("gw-1@legacy", "gw-2@legacy")
        .replace("z9hG4bK-gw1", "z9hG4bK-gw2");
    gateway.send(unknown.as_bytes()).await;
    assert_eq!(gateway.response(false).await.status, StatusCode::NOT_FOUND);
    setup.edge.drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relayed_call_whose_media_dies_is_hung_up_on_both_phones() {
    let (_etcd, store, bus, edge) = base(true, false, &[]).await;
    // The relay served on the bus, as in cluster mode: call-control reaches it through a
    // MediaClient and hears its dead-media events on the bus.
    let (relay, events) = media::start(media::MediaConfig {
        bind_ip: "127.0.0.1".parse().unwrap(),
        port_first: 22000,
        port_last: 22099,
        session: media::relay::SessionConfig {
            idle_timeout: Duration::from_millis(800),
            relatch_after: None,
        },
        ..Default::default()
    })
    .unwrap();
    // No heartbeats from this relay: its datacenter is known from its allocations only.
    let _served = media::bus::serve(
        Arc::new(relay),
        events,
        "media-idle",
        "dc-relay",
        bus.clone(),
    )
    .await
    .unwrap();
    let client: Arc<dyn media::MediaControl> =
        Arc::new(media::MediaClient::new(bus.clone(), Duration::from_secs(2)));
    let metrics = telemetry::Metrics::new("call-control");
    let _cc = call_control::service::start_instrumented(
        CallControlConfig {
            instance: "cc-1".into(),
            datacenter: String::new(),
            domain: REALM.into(),
            ring_timeout: Duration::from_secs(30),
            cdr_file: None,
            media: Some(client),
        },
        store.clone(),
        bus.clone(),
        Some(&metrics),
    )
    .await
    .unwrap();
    let mut records = bus.subscribe(proto::subjects::CALL_RECORDS).await.unwrap();
    let sip = edge.local_addr(&sip_msg::Transport::Udp).unwrap();

    let mut alice = Phone::new("user1", "pw1", REALM, sip).await;
    let mut bob = Phone::new("user2", "pw2", REALM, sip).await;
    alice.register().await;
    bob.register().await;
    alice
        .call_with_sdp("1002", "idle@alice", &sdp_for(40_000))
        .await;
    let invite = bob.request().await;
    assert!(
        (22000..=22099).contains(&sdp_port(&invite.body)),
        "anchored"
    );
    bob.reply_with_sdp(&invite, StatusCode::OK, "bob", &sdp_for(40_002))
        .await;
    let answered = alice.response(false).await;
    assert_eq!(answered.status, StatusCode::OK);
    let ack = alice.in_dialog(&answered, "ACK", 2);
    alice.send(ack.as_bytes()).await;
    assert_eq!(bob.request().await.method, Method::Ack);

    // The stored call names its relay and the relay's datacenter, from the allocation's reply
    // (no heartbeat was ever heard): a survivor can tell whether the relay went down with a
    // lost datacenter (ADR 0020).
    let stored = stored_call(&store, "idle@alice").await;
    assert_eq!(
        (
            stored.media_owner.as_str(),
            stored.media_datacenter.as_str()
        ),
        ("media-idle", "dc-relay")
    );

    // Nobody sends RTP: after the relay's idle timeout both phones get a BYE.
    let bye_bob = bob.request().await;
    assert_eq!(bye_bob.method, Method::Bye);
    assert!(
        bye_bob
            .headers
            .get(&sip_msg::HeaderName::Reason)
            .is_some_and(|r| r.contains("media-timeout")),
        "{bye_bob:?}"
    );
    let bye_alice = alice.request().await;
    assert_eq!(bye_alice.method, Method::Bye);
    assert_eq!(bye_alice.headers.call_id(), Some("idle@alice"));
    bob.reply(&bye_bob, StatusCode::OK, "bob").await;
    alice.reply(&bye_alice, StatusCode::OK, "alice").await;

    let record = next_record(&mut records).await;
    assert_eq!(record.call_id, "idle@alice");
    assert_eq!(record.cause, "media-timeout");
    // The metrics saw one answered call set up and ended by the media timeout.
    let text = metrics.encode();
    for expected in [
        "calanque_call_attempts_total 1",
        r#"calanque_call_setups_total{result="answered",status="200"} 1"#,
        r#"calanque_calls_ended_total{cause="media_timeout"} 1"#,
        "calanque_calls_active 0",
        "calanque_call_setup_seconds_count 1",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
    edge.drain().await;
}

/// The call stored under `call_id`, waited for (it is written when answered, as the 200 OK
/// goes out) for at most 500 ms.
async fn stored_call(
    store: &Arc<dyn Store>,
    call_id: &str,
) -> call_control::b2bua::EstablishedCall {
    use prost::Message as _;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
    loop {
        let kv = store
            .get(&call_control::b2bua::call_key(call_id))
            .await
            .unwrap();
        if let Some(kv) = kv {
            return call_control::b2bua::EstablishedCall::decode(kv.value).unwrap();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{call_id} not stored within 500 ms of its ACK"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A hunt group to seed: number, member extensions, strategy, ring seconds per member.
type GroupSeed<'a> = (&'a str, &'a [&'a str], directory::model::HuntStrategy, u32);

/// etcd with the small city and these hunt groups, an edge and cc-1 (which loads the groups
/// at start).
async fn setup_with_hunt_groups(groups: &[GroupSeed<'_>]) -> Setup {
    let (etcd, store, bus, edge) = base(false, false, groups).await;
    let cc = call_control("cc-1", &store, &bus).await;
    Setup {
        _etcd: etcd,
        edge,
        cc: Some(cc),
        store,
        bus,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linear_hunt_group_rings_its_second_member_when_the_first_declines() {
    let members: &[&str] = &["1002", "1003"];
    let setup =
        setup_with_hunt_groups(&[("1500", members, directory::model::HuntStrategy::Linear, 10)])
            .await;
    let mut records = setup
        .bus
        .subscribe(proto::subjects::CALL_RECORDS)
        .await
        .unwrap();
    let mut alice = Phone::new("user1", "pw1", REALM, edge_addr(&setup)).await;
    let mut bob = Phone::new("user2", "pw2", REALM, edge_addr(&setup)).await;
    let mut carol = Phone::new("user3", "pw3", REALM, edge_addr(&setup)).await;
    // Members before the caller (call-control also reads the store for a callee its location
    // cache has not seen yet: the order is no longer needed, only kept).
    bob.register().await;
    carol.register().await;
    alice.register().await;

    alice.call("1500", "hunt-1@alice").await;
    // The first member rings alone.
    let first = bob.request().await;
    assert_eq!(first.method, Method::Invite);
    assert!(
        carol.next(Duration::from_millis(300)).await.is_none(),
        "the second member waits its turn"
    );
    bob.reply(&first, StatusCode::RINGING, "bob").await;
    assert_eq!(alice.response(true).await.status, StatusCode::RINGING);
    // Bob declines: Carol rings at once, long before Bob's 10 s are up.
    bob.reply(&first, StatusCode::DECLINE, "bob").await;
    let second = carol.request().await;
    assert_eq!(second.method, Method::Invite);
    assert_eq!(
        second.body.as_ref(),
        SDP_OFFER.as_bytes(),
        "the caller's offer reaches the second member"
    );
    carol.reply(&second, StatusCode::RINGING, "carol").await;
    carol.reply(&second, StatusCode::OK, "carol").await;
    // Alice heard one 180 (Bob's), then gets Carol's answer.
    let answered = alice.response(true).await;
    assert_eq!(answered.status, StatusCode::OK, "{answered:?}");
    assert_eq!(answered.body.as_ref(), SDP_ANSWER.as_bytes());
    assert_eq!(carol.request().await.method, Method::Ack);
    let ack = alice.in_dialog(&answered, "ACK", 2);
    alice.send(ack.as_bytes()).await;
    let bye = alice.in_dialog(&answered, "BYE", 3);
    alice.send(bye.as_bytes()).await;
    assert_eq!(alice.response(false).await.status, StatusCode::OK);
    let bye = carol.request().await;
    assert_eq!(bye.method, Method::Bye);
    assert_eq!(bye.headers.call_id(), second.headers.call_id());
    carol.reply(&bye, StatusCode::OK, "carol").await;

    let record = next_record(&mut records).await;
    assert_eq!(record.call_id, "hunt-1@alice");
    assert_eq!((record.outcome.as_str(), record.status), ("answered", 200));
    // Bob heard nothing more than the ACK of his 603 (sent by the edge's transaction).
    while let Some(message) = bob.next(Duration::from_millis(200)).await {
        match message {
            sip_msg::SipMessage::Request(r) => {
                assert_eq!(r.method, Method::Ack, "{r:?}")
            }
            sip_msg::SipMessage::Response(r) => panic!("bob got {r:?}"),
        }
    }
    setup.edge.drain().await;
}

/// Alice calls `number`; the phone that rings first answers and Alice hangs up. Which phone
/// rang first (0 = `members[0]`).
async fn answer_first_ringing(
    alice: &mut Phone,
    members: [&Phone; 2],
    number: &str,
    call_id: &str,
) -> usize {
    alice.call(number, call_id).await;
    let (rang, invite) = tokio::select! {
        Some(m) = members[0].next(Duration::from_secs(5)) => (0, m),
        Some(m) = members[1].next(Duration::from_secs(5)) => (1, m),
    };
    let sip_msg::SipMessage::Request(invite) = invite else {
        panic!("{invite:?}")
    };
    assert_eq!(invite.method, Method::Invite);
    let phone = members[rang];
    phone.reply(&invite, StatusCode::OK, "member").await;
    let answered = alice.response(false).await;
    assert_eq!(answered.status, StatusCode::OK);
    assert_eq!(phone.request().await.method, Method::Ack);
    let ack = alice.in_dialog(&answered, "ACK", 2);
    alice.send(ack.as_bytes()).await;
    let bye = alice.in_dialog(&answered, "BYE", 3);
    alice.send(bye.as_bytes()).await;
    assert_eq!(alice.response(false).await.status, StatusCode::OK);
    let bye = phone.request().await;
    assert_eq!(bye.method, Method::Bye);
    phone.reply(&bye, StatusCode::OK, "member").await;
    rang
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_and_longest_idle_groups_remember_who_answered_and_who_hung_up() {
    use directory::model::HuntStrategy::{LongestIdle, RoundRobin};
    let members: &[&str] = &["1002", "1003"];
    let setup = setup_with_hunt_groups(&[
        ("1500", members, RoundRobin, 10),
        ("1501", members, LongestIdle, 10),
    ])
    .await;
    let mut alice = Phone::new("user1", "pw1", REALM, edge_addr(&setup)).await;
    let mut bob = Phone::new("user2", "pw2", REALM, edge_addr(&setup)).await;
    let mut carol = Phone::new("user3", "pw3", REALM, edge_addr(&setup)).await;
    // Members before the caller (call-control also reads the store for a callee its location
    // cache has not seen yet: the order is no longer needed, only kept).
    bob.register().await;
    carol.register().await;
    alice.register().await;
    let phones = [&bob, &carol];

    // Round-robin: the first call starts at the first member, the next after whoever answered.
    assert_eq!(
        answer_first_ringing(&mut alice, phones, "1500", "rr-1@alice").await,
        0
    );
    assert_eq!(
        answer_first_ringing(&mut alice, phones, "1500", "rr-2@alice").await,
        1
    );
    assert_eq!(
        answer_first_ringing(&mut alice, phones, "1500", "rr-3@alice").await,
        0
    );
    // Longest-idle: Bob (1002) finished the last call, Carol before him: Carol first.
    assert_eq!(
        answer_first_ringing(&mut alice, phones, "1501", "li-1@alice").await,
        1
    );
    // Now Carol just hung up: Bob first.
    assert_eq!(
        answer_first_ringing(&mut alice, phones, "1501", "li-2@alice").await,
        0
    );
    setup.edge.drain().await;
}
