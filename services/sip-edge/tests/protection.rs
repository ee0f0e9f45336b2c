//! Ban sharing between edges on a real nats-server and a store: a ban decided on one edge is
//! applied on another within a second, and an edge started later loads it from the store.
//!
//! Every wait is bounded by a deadline; nats-server is started by testkit on a free port.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bus::{Bus, NatsBus, NatsOptions};
use sip_edge::protection::sync::{BAN_KEY_PREFIX, ban_key, unix_now_ms};
use sip_edge::protection::{
    Admission, BanSync, BanSyncOptions, DropReason, Protection, ProtectionConfig,
};
use store::Store;
use store::embedded::EmbeddedStore;
use testkit::nats::NatsServer;
use tokio::time::{Instant, sleep};

const FLOODER: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
const GUESSER: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 66));
const PHONE: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 20));

/// What the ban must beat.
const PROPAGATION_LIMIT: Duration = Duration::from_secs(1);
/// Upper bound for waits that are not under test.
const WAIT: Duration = Duration::from_secs(5);

const OPTIONS: &[u8] = b"OPTIONS sip:100@192.0.2.1 SIP/2.0\r\n\
    Via: SIP/2.0/UDP 203.0.113.7:5070;branch=z9hG4bK-flood\r\n\
    From: <sip:flood@203.0.113.7>;tag=1\r\n\
    To: <sip:100@192.0.2.1>\r\n\
    Call-ID: flood@203.0.113.7\r\n\
    CSeq: 1 OPTIONS\r\n\
    User-Agent: SIPp\r\n\
    Content-Length: 0\r\n\r\n";

struct Cluster {
    server: NatsServer,
    store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Cluster {
        let server = tokio::task::spawn_blocking(NatsServer::start)
            .await
            .expect("harness thread")
            .unwrap_or_else(|e| panic!("nats-server did not start: {e}"));
        let dir = tempfile::tempdir().expect("temp dir");
        let store = EmbeddedStore::open(dir.path().join("store.redb"))
            .await
            .expect("embedded store");
        Cluster {
            server,
            store: Arc::new(store),
            _dir: dir,
        }
    }

    /// One edge: its own NATS connection and protection state, the shared store.
    async fn edge(&self, edge_id: &str) -> (Arc<Mutex<Protection>>, BanSync) {
        let bus: Arc<dyn Bus> = Arc::new(
            NatsBus::connect(NatsOptions::new(edge_id, vec![self.server.url()]))
                .await
                .unwrap_or_else(|e| panic!("connecting to {}: {e}", self.server.url())),
        );
        let protection = Arc::new(Mutex::new(Protection::new(ProtectionConfig::default())));
        let sync = BanSync::start(
            BanSyncOptions::new(edge_id),
            protection.clone(),
            bus,
            self.store.clone(),
        )
        .await
        .unwrap_or_else(|e| panic!("{edge_id} ban sync: {e}"));
        (protection, sync)
    }
}

fn is_banned(protection: &Mutex<Protection>, source: IpAddr) -> bool {
    protection
        .lock()
        .expect("protection lock")
        .is_banned(unix_now_ms(), source)
}

/// Polls until `source` is banned on `protection`; the time since `since` when it was, or
/// None after `limit`.
async fn time_until_banned(
    protection: &Mutex<Protection>,
    source: IpAddr,
    since: Instant,
    limit: Duration,
) -> Option<Duration> {
    while since.elapsed() < limit {
        if is_banned(protection, source) {
            return Some(since.elapsed());
        }
        sleep(Duration::from_millis(2)).await;
    }
    None
}

// Named so that `cargo test -p sip-edge protection` selects these too.
mod protection_sync {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_ban_reaches_the_other_edge_within_a_second_and_a_later_edge_loads_it() {
        let cluster = Cluster::start().await;
        let (edge1, sync1) = cluster.edge("edge-1").await;
        let (edge2, _sync2) = cluster.edge("edge-2").await;
        assert_eq!(sync1.loaded_at_start(), 0);

        // Edge 1 sees a flood and bans it, as its engine does: admit, then drain to the publisher.
        let banned_at = {
            let mut protection = edge1.lock().unwrap();
            let now_ms = unix_now_ms();
            let verdicts: Vec<Admission> = (0..300)
                .map(|_| protection.admit(now_ms, FLOODER, OPTIONS))
                .collect();
            assert!(
                verdicts.contains(&Admission::Drop(DropReason::RateLimited)),
                "300 requests in one millisecond were not rate-limited"
            );
            assert_eq!(sync1.publisher().drain(&mut protection), 1);
            Instant::now()
        };
        let took = time_until_banned(&edge2, FLOODER, banned_at, PROPAGATION_LIMIT * 2)
            .await
            .expect("edge 2 never applied edge 1's ban");
        println!("ban propagated to edge 2 in {took:?}");
        assert!(
            took < PROPAGATION_LIMIT,
            "edge 2 applied the ban after {took:?}"
        );
        {
            let mut protection = edge2.lock().unwrap();
            let now_ms = unix_now_ms();
            assert_eq!(
                protection.admit(now_ms, FLOODER, OPTIONS),
                Admission::Drop(DropReason::Banned)
            );
            assert_eq!(protection.admit(now_ms, PHONE, OPTIONS), Admission::Admit);
            assert_eq!(protection.stats().bans_applied, 1);
            assert_eq!(
                protection.poll_new_ban(),
                None,
                "a remote ban was queued to republish"
            );
        }
        // Edge 1 ignores its own ban coming back from the bus.
        sleep(Duration::from_millis(100)).await;
        assert_eq!(edge1.lock().unwrap().stats().bans_applied, 0);

        // The ban is in the store with a lease as long as the ban.
        let key = ban_key("203.0.113.7");
        let deadline = Instant::now() + WAIT;
        let stored = loop {
            if let Some(kv) = cluster.store.get(&key).await.expect("store get") {
                break kv;
            }
            assert!(Instant::now() < deadline, "the ban never reached the store");
            sleep(Duration::from_millis(10)).await;
        };
        assert!(stored.lease.is_some(), "the stored ban has no lease");
        let (listed, _) = cluster.store.list_prefix(BAN_KEY_PREFIX).await.unwrap();
        assert_eq!(listed.len(), 1);

        // An edge started later knows the ban as soon as it has started.
        let (edge3, sync3) = cluster.edge("edge-3").await;
        assert_eq!(sync3.loaded_at_start(), 1);
        assert!(
            is_banned(&edge3, FLOODER),
            "edge 3 did not load the stored ban"
        );
        assert!(!is_banned(&edge3, PHONE));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_undrained_auth_failure_ban_is_still_published_within_a_second() {
        let cluster = Cluster::start().await;
        let (edge1, _sync1) = cluster.edge("edge-1").await;
        let (edge2, _sync2) = cluster.edge("edge-2").await;

        // Ten wrong passwords from one source on edge 2; nobody calls drain, so the publisher's
        // own periodic drain has to find the ban.
        let banned_at = {
            let mut protection = edge2.lock().unwrap();
            let now_ms = unix_now_ms();
            for _ in 0..10 {
                protection.auth_failed(now_ms, GUESSER, "100");
            }
            assert!(protection.is_banned(now_ms, GUESSER));
            Instant::now()
        };
        let took = time_until_banned(&edge1, GUESSER, banned_at, PROPAGATION_LIMIT * 2)
            .await
            .expect("edge 1 never applied edge 2's ban");
        println!("undrained ban propagated to edge 1 in {took:?}");
        assert!(
            took < PROPAGATION_LIMIT,
            "edge 1 applied the ban after {took:?}"
        );
        assert!(!is_banned(&edge1, PHONE));
    }
}
