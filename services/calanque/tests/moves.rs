//! Established calls survive the loss of what carries them (ADR 0020), with every service as
//! its own process over a real etcd and nats-server:
//!
//! - **a datacenter lost**: a relayed call set up in dc-a (edge, call-control, media there);
//!   dc-b's edge, media and call-control start; the real failover controller probes both
//!   edges. dc-a's three processes are killed (SIGKILL) and the phones register again through
//!   dc-b's edge, as phones with a secondary proxy do. The controller marks dc-a failed; dc-b's
//!   call-control claims the call, allocates a relay session on dc-b's media and re-INVITEs
//!   both phones through dc-b's edge. RTP flows again through the new relay, and the hang-up
//!   goes through dc-b.
//! - **a media relay lost**: the relay of a call dies (SIGKILL); its heartbeats stop, and the
//!   call's own call-control moves the call to another relay replica by re-INVITE.
//!
//! Rerun with `cargo build --bins && cargo test -p calanque --test moves -- --nocapture`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use common::{Cluster, ClusterOptions, REALM, free_local, rtp, sdp_for, sdp_port, wait_for_edge};
use prost::Message as _;
use sip_msg::{HeaderName, Method, Request, StatusCode};
use test_phone::Phone;
use tokio::net::UdpSocket;
use tokio::process::Child;

/// One cluster at a time: each test runs a dozen processes that must notice deaths within
/// heartbeat and detection periods of a second or two; three clusters at once on two cores
/// (cargo runs a file's tests in parallel) starved them, and moves came late or not at all.
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
use tokio::sync::watch;
use tokio::time::Instant;

/// One phone's media: it sends a packet every 20 ms to the relay port it was last given, and
/// records when packets arrive and from which relay port.
struct Talker {
    socket: Arc<UdpSocket>,
    destination: watch::Sender<u16>,
    arrivals: Arc<std::sync::Mutex<Vec<(Instant, u16)>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Talker {
    async fn new() -> Talker {
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let (destination, _) = watch::channel(0);
        Talker {
            socket,
            destination,
            arrivals: Arc::default(),
            tasks: Vec::new(),
        }
    }

    fn port(&self) -> u16 {
        self.socket.local_addr().unwrap().port()
    }

    /// Starts talking to `relay_port` (bounded: 3,000 packets, one minute).
    fn start(&mut self, relay_port: u16, ssrc: u32) {
        self.destination.send_replace(relay_port);
        let (socket, destination) = (self.socket.clone(), self.destination.subscribe());
        self.tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            for seq in 0..3_000u16 {
                tick.tick().await;
                let port = *destination.borrow();
                let _ = socket.send_to(&rtp(seq, ssrc), ("127.0.0.1", port)).await;
            }
        }));
        let (socket, arrivals) = (self.socket.clone(), self.arrivals.clone());
        self.tasks.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok((172, from)) = socket.recv_from(&mut buf).await {
                arrivals.lock().unwrap().push((Instant::now(), from.port()));
            }
        }));
    }

    fn talk_to(&self, relay_port: u16) {
        self.destination.send_replace(relay_port);
    }

    fn arrivals(&self) -> Vec<(Instant, u16)> {
        self.arrivals.lock().unwrap().clone()
    }

    /// The longest silence after `since`, and how many packets arrived from `ports` after it.
    fn since(&self, since: Instant, ports: &RangeInclusive<u16>) -> (Duration, usize) {
        let arrivals: Vec<_> = self
            .arrivals()
            .into_iter()
            .filter(|(at, _)| *at >= since)
            .collect();
        let mut last = since;
        let mut gap = Duration::ZERO;
        for (at, _) in &arrivals {
            gap = gap.max(*at - last);
            last = *at;
        }
        let from = arrivals.iter().filter(|(_, p)| ports.contains(p)).count();
        (gap, from)
    }
}

impl Drop for Talker {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A relayed call from Alice to Bob, answered and ACKed, with RTP flowing both ways.
struct RelayedCall {
    call_id: String,
    alice: Phone,
    bob: Phone,
    alice_media: Talker,
    bob_media: Talker,
    /// The callee leg's INVITE (Bob's dialog).
    invite: Request,
}

impl RelayedCall {
    /// Both phones answer the new offers moving the call to a relay port in `ports` (within
    /// `limit`) and talk to it; returns how long after `since` both were answered.
    async fn answer_new_offers(
        &self,
        ports: &RangeInclusive<u16>,
        limit: Duration,
        since: Instant,
    ) -> Duration {
        let alice_sdp = sdp_for(self.alice_media.port());
        let bob_sdp = sdp_for(self.bob_media.port());
        let bob_call_id = self.invite.headers.call_id().unwrap();
        let (to_alice, to_bob) = tokio::join!(
            answer_new_offer(&self.alice, &self.call_id, ports, &alice_sdp, limit),
            answer_new_offer(&self.bob, bob_call_id, ports, &bob_sdp, limit),
        );
        let moved_after = since.elapsed();
        self.alice_media.talk_to(to_alice);
        self.bob_media.talk_to(to_bob);
        moved_after
    }

    /// After a second of talking through the new relay, both phones hear each other through
    /// `ports` with no gap over 200 ms.
    async fn check_media_through(&self, ports: &RangeInclusive<u16>) {
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        let recovered = Instant::now() - Duration::from_millis(800);
        for (who, media) in [("Alice", &self.alice_media), ("Bob", &self.bob_media)] {
            let (gap, through) = media.since(recovered, ports);
            assert!(
                through >= 25,
                "{who} hears the other through the new relay: {through}"
            );
            assert!(
                gap < Duration::from_millis(200),
                "{who}: silence of {gap:?} after the move"
            );
        }
    }

    /// Bob hangs up through his current edge; Alice gets the BYE.
    async fn bob_hangs_up(&mut self) {
        let bye = callee_bye(&self.bob, &self.invite, &contact_of(&self.invite), 10);
        self.bob.send(bye.as_bytes()).await;
        assert_eq!(self.bob.response(false).await.status, StatusCode::OK);
        let bye = self.alice.request().await;
        assert_eq!(bye.method, Method::Bye);
        assert_eq!(bye.headers.call_id(), Some(self.call_id.as_str()));
        self.alice.reply(&bye, StatusCode::OK, "a").await;
    }
}

async fn relayed_call(cluster: &Cluster, prefix: &str) -> RelayedCall {
    let mut alice_media = Talker::new().await;
    let mut bob_media = Talker::new().await;
    let mut alice = Phone::new("user1", "pw1", REALM, cluster.sip).await;
    let mut bob = Phone::new("user2", "pw2", REALM, cluster.sip).await;
    alice.register().await;
    bob.register().await;
    let offer = sdp_for(alice_media.port());
    let (call_id, invite) = cluster
        .call_until_ringing(&mut alice, &mut bob, prefix, &offer)
        .await;
    let relay_for_bob = sdp_port(&invite.body);
    assert!(cluster.relay_ports.contains(&relay_for_bob));
    let bob_sdp = sdp_for(bob_media.port());
    bob.reply_with_sdp(&invite, StatusCode::OK, "b", &bob_sdp)
        .await;
    let answered = alice.response(false).await;
    assert_eq!(answered.status, StatusCode::OK);
    let relay_for_alice = sdp_port(&answered.body);
    let ack = alice.in_dialog(&answered, "ACK", 2);
    alice.send(ack.as_bytes()).await;
    assert_eq!(bob.request().await.method, Method::Ack);
    alice_media.start(relay_for_alice, 0xA);
    bob_media.start(relay_for_bob, 0xB);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let before = Instant::now() - Duration::from_millis(300);
    for (who, media) in [("Alice", &alice_media), ("Bob", &bob_media)] {
        let (_, relayed) = media.since(before, &cluster.relay_ports);
        assert!(
            relayed >= 5,
            "{who} hears the other through the relay: {relayed}"
        );
    }
    RelayedCall {
        call_id,
        alice,
        bob,
        alice_media,
        bob_media,
        invite,
    }
}

/// Waits (at most `limit`) for the new offer to `phone`: a re-INVITE in the call naming a relay
/// port in `ports`; answers it with `sdp` and returns the port. Skips anything else.
async fn answer_new_offer(
    phone: &Phone,
    call_id: &str,
    ports: &RangeInclusive<u16>,
    sdp: &str,
    limit: Duration,
) -> u16 {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "{} got no new offer within {limit:?}",
            phone.user
        );
        let Some(sip_msg::SipMessage::Request(request)) = phone.next(left).await else {
            continue;
        };
        if request.method != Method::Invite || request.headers.call_id() != Some(call_id) {
            continue;
        }
        let port = sdp_port(&request.body);
        assert!(ports.contains(&port), "the new offer names {port}");
        let tag = request
            .headers
            .to_header()
            .unwrap()
            .unwrap()
            .params
            .get("tag")
            .flatten()
            .map(str::to_owned)
            .unwrap_or_default();
        phone
            .reply_with_sdp(&request, StatusCode::OK, &tag, sdp)
            .await;
        // Our answer is ACKed.
        let ack = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Some(sip_msg::SipMessage::Request(r)) =
                    phone.next(Duration::from_secs(5)).await
                    && r.method == Method::Ack
                {
                    return r;
                }
            }
        })
        .await
        .expect("the answer to the new offer is ACKed");
        assert_eq!(ack.headers.call_id(), Some(call_id));
        return port;
    }
}

/// The callee hangs up: a BYE in the dialog of the INVITE it got (`dialog`), to the Contact
/// call-control gave it last, through the callee's current edge.
fn callee_bye(phone: &Phone, dialog: &Request, target: &str, cseq: u32) -> String {
    let from = format!("{};tag=b", dialog.headers.get(&HeaderName::To).unwrap());
    let to = dialog.headers.get(&HeaderName::From).unwrap();
    format!(
        "BYE {target} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bK-bye{cseq}{};rport\r\n\
         Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {cseq} BYE\r\n\
         Content-Length: 0\r\n\r\n",
        phone.local,
        phone.user,
        dialog.headers.call_id().unwrap()
    )
}

fn kill(mut child: Child, what: &str) {
    child
        .start_kill()
        .unwrap_or_else(|e| panic!("killing {what}: {e}"));
}

/// The Request-URI a phone uses in its dialog: the Contact of the last request it got from us.
fn contact_of(request: &Request) -> String {
    match request.headers.contacts().unwrap() {
        Some(sip_msg::Contacts::List(list)) => list[0].uri.to_string(),
        _ => panic!("no Contact in {request:?}"),
    }
}

/// A second relay replica's ports, beside the cluster's.
fn ports_after(ports: &RangeInclusive<u16>) -> RangeInclusive<u16> {
    let first = ports.end() + 2;
    first..=first + 99
}

/// dc-b beside a cluster in dc-a: its relay (on ports after dc-a's), edge and call-control,
/// its edge answering. Its processes live as long as this.
struct DcB {
    sip: SocketAddr,
    relay_ports: RangeInclusive<u16>,
    _processes: [Child; 3],
}

impl DcB {
    async fn start(cluster: &mut Cluster) -> DcB {
        let (sip, relay_ports) = (free_local(), ports_after(&cluster.relay_ports));
        let media = cluster.media("media-b", "dc-b", relay_ports.clone()).await;
        let edge = cluster.edge("edge-b", "dc-b", sip).await;
        let cc = cluster.call_control_in("cc-b", "dc-b").await;
        wait_for_edge(sip).await;
        DcB {
            sip,
            relay_ports,
            _processes: [media, edge, cc],
        }
    }
}

async fn start_controller(cluster: &Cluster, dc_a: SocketAddr, dc_b: SocketAddr) -> Child {
    let etcd = cluster.etcd.endpoint();
    let args: Vec<String> = [
        "--instance",
        "failover-1",
        "--etcd",
        &etcd,
        "--nats",
        &cluster.nats.url(),
        "--datacenter",
        &format!("dc-a=sip:{dc_a}"),
        "--datacenter",
        &format!("dc-b=sip:{dc_b}"),
        "--witness",
        &format!("{etcd}/health"),
        "--detection-seconds",
        "2",
        "--probe-interval-ms",
        "200",
        "--lease-ttl-seconds",
        "2",
        "--telemetry-listen",
        &free_local().to_string(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    common::spawn_ready("calanque-failover", &args, "failover controller ready").await
}

async fn failover_state(cluster: &Cluster) -> Option<proto::v1::FailoverState> {
    let kv = cluster
        .store
        .get("calanque/v1/failover/state")
        .await
        .ok()??;
    Some(proto::v1::FailoverState::decode(kv.value).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_a_datacenter_moves_its_relayed_call_to_the_other_by_re_invite() {
    let _alone = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(ClusterOptions {
        relay: true,
        datacenter: Some("dc-a".into()),
        ..ClusterOptions::default()
    })
    .await;
    let cc_a = cluster.call_control("cc-a").await;
    wait_for_edge(cluster.sip).await;
    let mut call = relayed_call(&cluster, "dc-loss").await;

    // dc-b comes up beside it, and the failover controller watches both.
    let dc_b = DcB::start(&mut cluster).await;
    let (sip_b, ports_b) = (dc_b.sip, dc_b.relay_ports.clone());
    let _controller = start_controller(&cluster, cluster.sip, sip_b).await;
    let started = Instant::now();
    while failover_state(&cluster)
        .await
        .is_none_or(|s| s.active_datacenter != "dc-a")
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no failover state"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // dc-a is lost: its edge, media and call-control die at once.
    let lost_at = Instant::now();
    kill(cluster.take("edge"), "dc-a's edge");
    kill(cluster.take("media"), "dc-a's media");
    kill(cc_a, "dc-a's call-control");
    // The phones register again through their secondary proxy, dc-b's edge.
    for phone in [&mut call.alice, &mut call.bob] {
        phone.server = sip_b;
        phone.register().await;
    }

    // dc-b's call-control moves the call: new offers through dc-b's edge, on dc-b's relay,
    // and media flows again through it, both ways.
    let moved_after = call
        .answer_new_offers(&ports_b, Duration::from_secs(30), lost_at)
        .await;
    call.check_media_through(&ports_b).await;
    let state = failover_state(&cluster).await.unwrap();
    assert_eq!(state.active_datacenter, "dc-b", "{state:?}");
    assert!(state.failed.iter().any(|f| f.datacenter == "dc-a"));
    let (silence_a, _) = call.alice_media.since(lost_at, &ports_b);
    let (silence_b, _) = call.bob_media.since(lost_at, &ports_b);
    eprintln!(
        "dc-a lost: new offers answered after {moved_after:?}; longest silence Alice {silence_a:?}, Bob {silence_b:?}"
    );

    // The stored call belongs to dc-b now.
    let kv = cluster
        .store
        .get(&call_control::b2bua::call_key(&call.call_id))
        .await
        .unwrap()
        .expect("the call is still stored");
    let snapshot = call_control::b2bua::EstablishedCall::decode(kv.value).unwrap();
    assert_eq!(
        (
            snapshot.owner_instance.as_str(),
            snapshot.owner_datacenter.as_str(),
            snapshot.media_owner.as_str(),
            snapshot.media_datacenter.as_str(),
        ),
        ("cc-b", "dc-b", "media-b", "dc-b")
    );

    // Bob hangs up through dc-b's edge; Alice gets the BYE there.
    call.bob_hangs_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_media_relay_has_its_calls_moved_to_another_by_re_invite() {
    let _alone = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(ClusterOptions {
        relay: true,
        ..ClusterOptions::default()
    })
    .await;
    let _cc = cluster.call_control("cc-1").await;
    wait_for_edge(cluster.sip).await;
    let mut call = relayed_call(&cluster, "media-loss").await;
    let ports_2 = ports_after(&cluster.relay_ports);
    let _media_2 = cluster.media("media-2", "", ports_2.clone()).await;

    let lost_at = Instant::now();
    kill(cluster.take("media"), "the call's relay");
    let moved_after = call
        .answer_new_offers(&ports_2, Duration::from_secs(10), lost_at)
        .await;
    call.check_media_through(&ports_2).await;
    let (silence, _) = call.alice_media.since(lost_at, &ports_2);
    eprintln!("relay lost: new offers answered after {moved_after:?}; longest silence {silence:?}");
    // Heartbeats every 200 ms, dead after three: the move starts within a second.
    assert!(moved_after < Duration::from_secs(3), "{moved_after:?}");

    call.bob_hangs_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_calling_through_a_datacenter_loss_loses_no_established_call() {
    let _alone = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(ClusterOptions {
        relay: true,
        datacenter: Some("dc-a".into()),
        ..ClusterOptions::default()
    })
    .await;
    let phones = test_phone::directory::add_phones(&cluster.store, REALM, 12).await;
    let cc_a = cluster.call_control("cc-a").await;
    let dc_b = DcB::start(&mut cluster).await;
    let sip_b = dc_b.sip;
    wait_for_edge(cluster.sip).await;
    let _controller = start_controller(&cluster, cluster.sip, sip_b).await;

    let (events_tx, mut events_rx) = tokio::sync::mpsc::unbounded_channel();
    let config = test_phone::fleet::FleetConfig {
        servers: vec![cluster.sip, sip_b],
        realm: REALM.into(),
        bind_ip: "127.0.0.1".parse().unwrap(),
        phones,
        register_expires: 120,
        keepalive: Duration::from_millis(500),
        misses: 2,
        hold: Duration::from_secs(6),
        pause: Duration::from_millis(300),
        duration: Duration::from_secs(14),
    };
    let started = Instant::now();
    let fleet = tokio::spawn(test_phone::fleet::run(config, events_tx));
    // Calls in progress on dc-a when it is lost: the first calls are up about a second after
    // the start and held 6 s, so at 4 s they are in the middle (lost at 5 s with 4 s calls,
    // they were hanging up just then on a loaded machine, and none was left to move).
    tokio::time::sleep(Duration::from_secs(4)).await;
    let fault_ms = started.elapsed().as_millis() as u64;
    kill(cluster.take("edge"), "dc-a's edge");
    kill(cluster.take("media"), "dc-a's media");
    kill(cc_a, "dc-a's call-control");
    fleet.await.unwrap();
    let mut events = Vec::new();
    while let Ok(event) = events_rx.try_recv() {
        events.push(event);
    }
    let report = test_phone::fleet::Summary::of(&events);
    let recovery = report.recovery_ms(fault_ms);
    eprintln!(
        "fleet: {} attempts, {} answered, {} ended, {} failed, {} dropped, {} new offers; \
         calls set up again {recovery:?} ms after the loss",
        report.attempts,
        report.answered,
        report.ended,
        report.failed.len(),
        report.dropped.len(),
        report.reoffered
    );
    for failure in &report.failed {
        eprintln!("  failed: {failure:?}");
    }
    assert!(
        report.dropped.is_empty(),
        "established calls dropped: {:?}",
        report.dropped
    );
    assert!(
        report.reoffered > 0,
        "calls in progress were moved by new offers"
    );
    assert!(report.answered >= 6, "calls were set up: {report:?}");
    let recovery = recovery.expect("calls set up again after the loss");
    assert!(
        recovery < 30_000,
        "calls set up again within 30 s: {recovery} ms"
    );
    // No registration lost: every phone is registered, through dc-b.
    assert_eq!(report.registered_at.len(), 12);
    for (phone, server) in &report.registered_at {
        assert_eq!(*server, sip_b, "{phone} ended registered through dc-b");
    }
}
