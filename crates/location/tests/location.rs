//! The location service against both store backends: the embedded store in a temporary
//! directory and a real etcd started by the harness (a failure to start etcd fails the test).
//! Each case is written once over a `Backend` and run on both; REGISTERs are real messages
//! planned by the registrar core, so the keys of upserts and removals are those production
//! computes. Time is a virtual unix clock (`NOW`): the store's leases only see TTL differences.

// The cases are shared functions, not `#[test]`s, so clippy's test allowance does not reach
// them; a failed unwrap is a failed test here, and the printed figures are the measurements.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use location::{
    LocationConfig, LocationError, LocationService, RegistrationContext, StoredBinding,
};
use prost::Message;
use proto::v1::{Flow, LocationBinding, SipTransport};
use sip_core::registrar::{RegisterPlan, RegistrarPolicy, process_register};
use sip_msg::{Request, SipMessage, parse_datagram};
use store::embedded::EmbeddedStore;
use store::etcd::{EtcdConfig, EtcdStore};
use store::{Compare, Op, Store};
use testkit::etcd::EtcdServer;
use tokio::time::{Instant, sleep};

const NOW: u64 = 1_800_000_000;
const PREFIX: &str = "calanque/v1/location/";
const ALICE: &str = "sip:alice@example.com";

/// A store under test.
enum Backend {
    Embedded {
        store: Arc<EmbeddedStore>,
        _dir: tempfile::TempDir,
    },
    Etcd {
        store: Arc<EtcdStore>,
        server: EtcdServer,
    },
}

impl Backend {
    async fn embedded() -> Backend {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = EmbeddedStore::open(dir.path().join("store.redb"))
            .await
            .expect("open embedded store");
        Backend::Embedded {
            store: Arc::new(store),
            _dir: dir,
        }
    }

    async fn etcd() -> Backend {
        let server = tokio::task::spawn_blocking(EtcdServer::start)
            .await
            .expect("harness task")
            .unwrap_or_else(|e| panic!("etcd did not start: {e}"));
        let store = EtcdStore::connect(&etcd_config(&server))
            .await
            .expect("connect to etcd");
        Backend::Etcd {
            store: Arc::new(store),
            server,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Backend::Embedded { .. } => "embedded",
            Backend::Etcd { .. } => "etcd",
        }
    }

    fn store(&self) -> Arc<dyn Store> {
        match self {
            Backend::Embedded { store, .. } => store.clone(),
            Backend::Etcd { store, .. } => store.clone(),
        }
    }

    /// A second client of the same store, as another edge replica would have (the embedded
    /// store is one process's, so it is shared).
    async fn second_client(&self) -> Arc<dyn Store> {
        match self {
            Backend::Embedded { store, .. } => store.clone(),
            Backend::Etcd { server, .. } => Arc::new(
                EtcdStore::connect(&etcd_config(server))
                    .await
                    .expect("connect to etcd"),
            ),
        }
    }
}

fn etcd_config(server: &EtcdServer) -> EtcdConfig {
    let mut config = EtcdConfig::new([server.endpoint()]);
    config.connect_timeout = Duration::from_millis(500);
    config.request_timeout = Duration::from_secs(2);
    config
}

fn source() -> SocketAddr {
    "192.0.2.10:40000".parse().unwrap()
}

fn policy() -> RegistrarPolicy {
    RegistrarPolicy {
        min_expires: 1,
        max_expires: 3600,
        default_expires: 3600,
    }
}

fn context(edge: &str) -> RegistrationContext {
    RegistrationContext {
        flow: Flow {
            transport: SipTransport::Udp as i32,
            remote: String::new(),
            local: "198.51.100.1:5070".to_owned(),
            edge_id: edge.to_owned(),
            datacenter: String::new(),
        },
        device_id: "dev-alice".to_owned(),
        user_agent: "TestPhone/1.0".to_owned(),
    }
}

/// A REGISTER for `user` with the given Call-ID, CSeq and Contact lines.
fn register(user: &str, call_id: &str, cseq: u32, contacts: &[&str]) -> Request {
    let mut text = format!(
        "REGISTER sip:example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.10:40000;branch=z9hG4bK{call_id}{cseq}\r\n\
         Max-Forwards: 70\r\n\
         To: <sip:{user}@example.com>\r\n\
         From: <sip:{user}@example.com>;tag=f1\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} REGISTER\r\n"
    );
    for contact in contacts {
        text.push_str("Contact: ");
        text.push_str(contact);
        text.push_str("\r\n");
    }
    text.push_str("Content-Length: 0\r\n\r\n");
    match parse_datagram(text.as_bytes()).expect("a well-formed REGISTER") {
        SipMessage::Request(r) => r,
        SipMessage::Response(_) => panic!("not a request"),
    }
}

fn plan(req: &Request, expected: &[StoredBinding], now: u64) -> RegisterPlan {
    let existing: Vec<_> = expected.iter().map(|s| s.binding.clone()).collect();
    process_register(req, &existing, now, source(), &policy())
        .unwrap_or_else(|r| panic!("refused: {} {}", r.status, r.reason))
}

/// Plans a REGISTER against what `edge` has in memory and applies it.
async fn register_on(
    edge: &LocationService,
    req: &Request,
    now: u64,
) -> Result<Vec<StoredBinding>, LocationError> {
    let aor = format!("sip:{}@example.com", user_of(req));
    let expected = edge.lookup(&aor, now);
    let plan = plan(req, &expected, now);
    edge.apply(&plan, &context("edge-1"), &expected, now)
        .await
        .map(|a| a.bindings)
}

fn user_of(req: &Request) -> String {
    req.headers
        .to_header()
        .unwrap()
        .unwrap()
        .uri
        .user
        .clone()
        .unwrap()
}

async fn start(store: Arc<dyn Store>, config: LocationConfig) -> LocationService {
    LocationService::start(store, config)
        .await
        .expect("location service starts")
}

async fn stored_keys(store: &dyn Store) -> Vec<String> {
    let (kvs, _) = store.list_prefix(PREFIX).await.unwrap();
    kvs.into_iter().map(|kv| kv.key).collect()
}

/// Polls `condition` every 20 ms until it holds or `limit` passes.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if condition().await {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        sleep(Duration::from_millis(20)).await;
    }
}

fn contacts(bindings: &[StoredBinding]) -> Vec<String> {
    let mut out: Vec<_> = bindings
        .iter()
        .map(|b| b.binding.contact.to_string())
        .collect();
    out.sort();
    out
}

// ---------------------------------------------------------------- cases

async fn apply_then_lookup(backend: Backend) {
    let store = backend.store();
    let edge = start(store.clone(), LocationConfig::default()).await;
    let req = register(
        "alice",
        "c1",
        1,
        &[
            "<sip:alice@192.0.2.10:40000>;expires=600",
            "<sip:alice@192.0.2.11:40002;transport=tcp>;expires=300;q=0.5",
        ],
    );
    let written = register_on(&edge, &req, NOW).await.unwrap();
    assert_eq!(written.len(), 2);

    let found = edge.lookup(ALICE, NOW);
    assert_eq!(contacts(&found), contacts(&written));
    assert_eq!(edge.len(), 2);
    for b in &found {
        assert_eq!(b.device_id, "dev-alice");
        assert_eq!(b.user_agent, "TestPhone/1.0");
        assert_eq!(b.flow.edge_id, "edge-1");
        assert_eq!(b.flow.remote, "192.0.2.10:40000");
        assert_eq!(b.binding.received, source());
        assert!(
            b.key
                .starts_with("calanque/v1/location/sip:alice@example.com/")
        );
    }
    let tcp = found.iter().find(|b| b.binding.q.is_some()).unwrap();
    assert_eq!(tcp.binding.q, Some(500));
    assert_eq!(tcp.binding.expires_at, NOW + 300);

    // What is stored is the protobuf the cache answered from, at the same revision.
    let kv = store.get(&tcp.key).await.unwrap().expect("binding stored");
    assert_eq!(kv.mod_revision, tcp.mod_revision);
    assert!(kv.lease.is_some(), "stored under a lease");
    let record = LocationBinding::decode(kv.value).unwrap();
    assert_eq!(record.aor, ALICE);
    assert_eq!(record.contact, "sip:alice@192.0.2.11:40002;transport=tcp");
    assert_eq!(record.device_id, "dev-alice");

    // A fresh read agrees with memory.
    let fresh = edge.fresh(ALICE).await.unwrap();
    assert_eq!(contacts(&fresh), contacts(&found));

    // Expiry is filtered on lookup whatever the store still holds.
    assert_eq!(edge.lookup(ALICE, NOW + 300).len(), 1);
    assert!(edge.lookup(ALICE, NOW + 600).is_empty());
    assert!(edge.lookup("sip:bob@example.com", NOW).is_empty());

    // Both contacts used one bucket lease each at most (two buckets here: 300 s apart).
    assert!(edge.cached_leases() <= 2);
}

async fn refresh_and_removal_use_the_same_key(backend: Backend) {
    let store = backend.store();
    let edge = start(store.clone(), LocationConfig::default()).await;
    let first = register(
        "alice",
        "c1",
        1,
        &[
            "<sip:alice@192.0.2.10:40000;transport=udp>;expires=600",
            "<sip:alice@192.0.2.12:40004>;expires=600",
        ],
    );
    register_on(&edge, &first, NOW).await.unwrap();
    let keys = stored_keys(store.as_ref()).await;
    assert_eq!(keys.len(), 2);
    let before = edge.lookup(ALICE, NOW);

    // A refresh printing the URI differently (RFC 3261 §19.1.4: transport compares
    // case-insensitively) rewrites the same key.
    let refresh = register(
        "alice",
        "c1",
        2,
        &["<sip:alice@192.0.2.10:40000;transport=UDP>;expires=900"],
    );
    register_on(&edge, &refresh, NOW + 10).await.unwrap();
    assert_eq!(stored_keys(store.as_ref()).await, keys, "no new key");
    let after = edge.lookup(ALICE, NOW + 10);
    assert_eq!(after.len(), 2);
    let refreshed = after
        .iter()
        .find(|b| b.binding.expires_at == NOW + 10 + 900)
        .expect("refreshed binding");
    let old = before.iter().find(|b| b.key == refreshed.key).unwrap();
    assert!(refreshed.mod_revision > old.mod_revision);

    // Removal by expires=0 with yet another printing deletes that key.
    let remove = register(
        "alice",
        "c1",
        3,
        &["<sip:alice@192.0.2.10:40000;transport=Udp>;expires=0"],
    );
    register_on(&edge, &remove, NOW + 20).await.unwrap();
    let left = stored_keys(store.as_ref()).await;
    assert_eq!(left.len(), 1);
    assert!(!left.contains(&refreshed.key));
    assert_eq!(edge.lookup(ALICE, NOW + 20).len(), 1);
    assert_eq!(edge.len(), 1);

    // `*` removes the rest.
    let mut star = register("alice", "c1", 4, &["*"]);
    star.headers
        .push(sip_msg::HeaderName::Expires, "0".to_owned());
    register_on(&edge, &star, NOW + 30).await.unwrap();
    assert!(stored_keys(store.as_ref()).await.is_empty());
    assert!(edge.lookup(ALICE, NOW + 30).is_empty());
    // The watch then delivers the deletions; the cache must not resurrect anything.
    sleep(Duration::from_millis(300)).await;
    assert!(edge.lookup(ALICE, NOW + 30).is_empty());
    assert_eq!(edge.len(), 0);
}

/// A phone that let its binding expire registers again while the expired row still waits for
/// its bucket lease: the lookup no longer shows the row, yet the commit overwrites it (fenced
/// on its revision) instead of conflicting forever on "absent".
async fn reregistering_after_expiry_overwrites_the_lingering_row(backend: Backend) {
    let store = backend.store();
    let edge = start(store.clone(), LocationConfig::default()).await;
    let first = register(
        "alice",
        "c1",
        1,
        &["<sip:alice@192.0.2.10:40000>;expires=60"],
    );
    let written = register_on(&edge, &first, NOW).await.unwrap();
    let later = NOW + 100;
    assert!(edge.lookup(ALICE, later).is_empty());
    let again = register(
        "alice",
        "c9",
        1,
        &["<sip:alice@192.0.2.10:40000>;expires=60"],
    );
    let rewritten = register_on(&edge, &again, later).await.unwrap();
    assert_eq!(rewritten.len(), 1);
    assert_eq!(rewritten[0].key, written[0].key);
    assert_eq!(
        stored_keys(store.as_ref()).await,
        vec![written[0].key.clone()]
    );
    assert_eq!(edge.lookup(ALICE, later)[0].binding.call_id, "c9");
}

async fn two_edges_share_bindings(backend: Backend) {
    let edge1 = start(backend.store(), LocationConfig::default()).await;
    let edge2 = start(backend.second_client().await, LocationConfig::default()).await;

    let req = register(
        "alice",
        "c1",
        1,
        &["<sip:alice@192.0.2.10:40000>;expires=600"],
    );
    let written = register_on(&edge1, &req, NOW).await.unwrap();
    let wait = Duration::from_secs(5);
    eventually("edge 2 sees edge 1's binding", wait, || async {
        edge2.lookup(ALICE, NOW) == written
    })
    .await;

    // Edge 2 refreshes it from what it learnt by the watch; edge 1 follows.
    let refresh = register(
        "alice",
        "c1",
        2,
        &["<sip:alice@192.0.2.10:40000>;expires=600"],
    );
    let refreshed = register_on(&edge2, &refresh, NOW + 5).await.unwrap();
    assert_eq!(refreshed.len(), 1);
    eventually("edge 1 sees the refresh", wait, || async {
        edge1.lookup(ALICE, NOW + 5) == refreshed
    })
    .await;

    // Edge 1 removes it; edge 2 forgets it.
    let remove = register(
        "alice",
        "c1",
        3,
        &["<sip:alice@192.0.2.10:40000>;expires=0"],
    );
    register_on(&edge1, &remove, NOW + 6).await.unwrap();
    eventually("edge 2 sees the removal", wait, || async {
        edge2.lookup(ALICE, NOW + 6).is_empty() && edge2.is_empty()
    })
    .await;
}

async fn stale_plans_conflict_and_write_nothing(backend: Backend) {
    let store = backend.store();
    let edge1 = start(store.clone(), LocationConfig::default()).await;
    let edge2 = start(backend.second_client().await, LocationConfig::default()).await;

    // Both edges plan the first REGISTER of the same contact from an empty AOR.
    let a = register(
        "alice",
        "call-a",
        1,
        &["<sip:alice@192.0.2.10:40000>;expires=600"],
    );
    let b = register(
        "alice",
        "call-b",
        1,
        &["<sip:alice@192.0.2.10:40000>;expires=600"],
    );
    let plan_a = plan(&a, &[], NOW);
    let plan_b = plan(&b, &[], NOW);
    edge1
        .apply(&plan_a, &context("edge-1"), &[], NOW)
        .await
        .unwrap();
    let snapshot = store.list_prefix(PREFIX).await.unwrap().0;
    let err = edge2
        .apply(&plan_b, &context("edge-2"), &[], NOW)
        .await
        .expect_err("second first-registration must conflict");
    assert!(matches!(err, LocationError::Conflict { .. }), "{err:?}");
    assert_eq!(store.list_prefix(PREFIX).await.unwrap().0, snapshot);

    // A plan from a snapshot that has since been rewritten conflicts too.
    let stale = edge1.fresh(ALICE).await.unwrap();
    let refresh = register(
        "alice",
        "call-a",
        2,
        &["<sip:alice@192.0.2.10:40000>;expires=600"],
    );
    let plan_refresh = plan(&refresh, &stale, NOW + 1);
    edge1
        .apply(&plan_refresh, &context("edge-1"), &stale, NOW + 1)
        .await
        .unwrap();
    let snapshot = store.list_prefix(PREFIX).await.unwrap().0;
    let other = register(
        "alice",
        "call-a",
        3,
        &[
            "<sip:alice@192.0.2.10:40000>;expires=600",
            "<sip:alice@192.0.2.99:40009>;expires=600",
        ],
    );
    let plan_other = plan(&other, &stale, NOW + 2);
    let err = edge2
        .apply(&plan_other, &context("edge-2"), &stale, NOW + 2)
        .await
        .expect_err("stale expected must conflict");
    assert!(matches!(err, LocationError::Conflict { .. }), "{err:?}");
    assert_eq!(
        store.list_prefix(PREFIX).await.unwrap().0,
        snapshot,
        "a conflict writes nothing (the new contact neither)"
    );

    // The caller's recovery: read fresh, plan again, apply.
    let current = edge2.fresh(ALICE).await.unwrap();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0].binding.cseq, 2);
    let replanned = plan(&other, &current, NOW + 2);
    let applied = edge2
        .apply(&replanned, &context("edge-2"), &current, NOW + 2)
        .await
        .unwrap();
    assert_eq!(applied.bindings.len(), 2);
    assert_eq!(edge2.lookup(ALICE, NOW + 2).len(), 2);
}

async fn short_bindings_leave_the_store_by_themselves(backend: Backend) {
    let store = backend.store();
    let config = LocationConfig {
        lease_bucket: Duration::from_secs(2),
        lease_slack: Duration::from_secs(1),
        ..LocationConfig::default()
    };
    let edge = start(store.clone(), config).await;
    let short = register(
        "alice",
        "c1",
        1,
        &["<sip:alice@192.0.2.10:40000>;expires=2"],
    );
    let long = register("bob", "c2", 1, &["<sip:bob@192.0.2.20:40000>;expires=3600"]);
    register_on(&edge, &short, NOW).await.unwrap();
    register_on(&edge, &long, NOW).await.unwrap();
    assert_eq!(stored_keys(store.as_ref()).await.len(), 2);
    // The lease ends at most one bucket plus the slack after the expiry: 2 + 2 + 1 s here.
    eventually(
        "the short binding leaves the store and the cache",
        Duration::from_secs(15),
        || async { stored_keys(store.as_ref()).await.len() == 1 && edge.len() == 1 },
    )
    .await;
    assert_eq!(edge.lookup("sip:bob@example.com", NOW).len(), 1);
    assert!(stored_keys(store.as_ref()).await[0].contains("bob"));
}

async fn a_lost_lease_is_granted_again(backend: Backend) {
    let store = backend.store();
    let edge = start(store.clone(), LocationConfig::default()).await;
    let first = register(
        "alice",
        "c1",
        1,
        &["<sip:alice@192.0.2.10:40000>;expires=600"],
    );
    let written = register_on(&edge, &first, NOW).await.unwrap();
    let lease = store
        .get(&written[0].key)
        .await
        .unwrap()
        .unwrap()
        .lease
        .unwrap();
    // The lease disappears behind the edge's back (as after an etcd disaster recovery).
    store.revoke_lease(lease).await.unwrap();
    assert!(stored_keys(store.as_ref()).await.is_empty());
    eventually(
        "the revocation reaches the cache",
        Duration::from_secs(5),
        || async { edge.is_empty() },
    )
    .await;
    // Same bucket: the cached lease is stale; apply grants a new one and succeeds.
    let again = register(
        "alice",
        "c1",
        2,
        &["<sip:alice@192.0.2.10:40000>;expires=600"],
    );
    let rewritten = register_on(&edge, &again, NOW).await.unwrap();
    let kv = store.get(&rewritten[0].key).await.unwrap().unwrap();
    assert!(kv.lease.is_some());
    assert_ne!(kv.lease, Some(lease));
}

async fn undecodable_values_are_skipped(backend: Backend) {
    let store = backend.store();
    let garbage_key = format!("{PREFIX}sip:mallory@example.com/{}", "ab".repeat(16));
    store
        .put(
            &garbage_key,
            Bytes::from_static(b"\xff\xff not protobuf"),
            None,
        )
        .await
        .unwrap();
    store
        .put(
            &format!("{PREFIX}no-contact-key"),
            Bytes::from_static(b""),
            None,
        )
        .await
        .unwrap();
    let edge = start(store.clone(), LocationConfig::default()).await;
    assert_eq!(edge.len(), 0);
    assert_eq!(edge.skipped_values(), 2);
    // Through the watch too, and the cache keeps working.
    store
        .put(&garbage_key, Bytes::from_static(b"\x08\x96\x01"), None)
        .await
        .unwrap();
    let req = register(
        "alice",
        "c1",
        1,
        &["<sip:alice@192.0.2.10:40000>;expires=600"],
    );
    register_on(&edge, &req, NOW).await.unwrap();
    eventually(
        "the watch skips the bad value",
        Duration::from_secs(5),
        || async { edge.skipped_values() == 3 },
    )
    .await;
    assert_eq!(edge.lookup(ALICE, NOW).len(), 1);
    assert!(edge.lookup("sip:mallory@example.com", NOW).is_empty());
}

/// 10,000 phones with realistic records (instance ids, a Path, a long User-Agent): the cache
/// must stay under 2 KiB per binding.
async fn ten_thousand_bindings_fit_the_memory_budget(backend: Backend) {
    let store = backend.store();
    let mut ops = Vec::new();
    for i in 0..10_000u32 {
        let aor = format!("sip:{:06}@pbx.example.com", 100_000 + i);
        let record = LocationBinding {
            aor: aor.clone(),
            contact: format!(
                "sip:{:06}@10.{}.{}.{}:40000;transport=tls;ob",
                100_000 + i,
                i % 200,
                i % 250,
                i % 240
            ),
            call_id: format!("{:032x}@10.0.0.1", u128::from(i) * 7919),
            cseq: 1234,
            expires_at: NOW + 3600,
            q: None,
            instance: format!("\"<urn:uuid:00000000-0000-4000-8000-{i:012}>\""),
            reg_id: Some(1),
            flow: Some(Flow {
                transport: SipTransport::Tls as i32,
                remote: format!("203.0.113.{}:{}", i % 250, 30_000 + i),
                local: "198.51.100.1:5071".to_owned(),
                edge_id: "edge-7f9c6d8b5-x2x7k".to_owned(),
                datacenter: "dc-a".to_owned(),
            }),
            path: vec!["<sip:edge-1.example.com;lr;ob>".to_owned()],
            device_id: format!("dev-{i:06}"),
            user_agent: "Yealink SIP-T54W 96.86.0.100".to_owned(),
        };
        let contact_key = format!("{:032x}", u128::from(i));
        ops.push(Op::Put {
            key: format!("{PREFIX}{aor}/{contact_key}"),
            value: Bytes::from(record.encode_to_vec()),
            lease: None,
        });
        if ops.len() == 1_000 {
            assert!(
                store
                    .txn(Vec::<Compare>::new(), std::mem::take(&mut ops))
                    .await
                    .unwrap()
                    .succeeded
            );
        }
    }
    let edge = start(store.clone(), LocationConfig::default()).await;
    assert_eq!(edge.len(), 10_000);
    assert_eq!(edge.skipped_values(), 0);
    let per_binding = edge.approx_bytes_per_binding();
    println!(
        "{}: location cache ~{per_binding} bytes per binding (10,000 bindings)",
        backend.name()
    );
    assert!(
        per_binding > 200,
        "the estimate counts the stored bytes: {per_binding}"
    );
    assert!(per_binding < 2048, "{per_binding} bytes per binding");
    assert_eq!(edge.lookup("sip:100042@pbx.example.com", NOW).len(), 1);
}

/// Concurrent REGISTERs of distinct phones through one edge: all commit, one lease per bucket.
async fn concurrent_registrations(backend: Backend) {
    let edge = start(backend.store(), LocationConfig::default()).await;
    let count = 400u32;
    let started = Instant::now();
    let tasks: Vec<_> = (0..count)
        .map(|i| {
            let edge = edge.clone();
            tokio::spawn(async move {
                let user = format!("u{i}");
                let contact = format!("<sip:{user}@192.0.2.10:{}>;expires=3600", 20_000 + i);
                let req = register(&user, "c", 1, &[contact.as_str()]);
                register_on(&edge, &req, NOW).await.unwrap();
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed();
    println!(
        "{}: {count} concurrent applies in {elapsed:?} ({:.0}/s)",
        backend.name(),
        f64::from(count) / elapsed.as_secs_f64()
    );
    assert_eq!(edge.len(), count as usize);
    assert_eq!(
        edge.cached_leases(),
        1,
        "one bucket, one lease, whatever the concurrency"
    );
}

// ---------------------------------------------------------------- both backends

macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    super::$case(super::Backend::embedded().await).await;
                }
            )*
        }
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    super::$case(super::Backend::etcd().await).await;
                }
            )*
        }
    };
}

on_both_backends!(
    apply_then_lookup,
    refresh_and_removal_use_the_same_key,
    reregistering_after_expiry_overwrites_the_lingering_row,
    two_edges_share_bindings,
    stale_plans_conflict_and_write_nothing,
    short_bindings_leave_the_store_by_themselves,
    a_lost_lease_is_granted_again,
    undecodable_values_are_skipped,
    ten_thousand_bindings_fit_the_memory_budget,
    concurrent_registrations,
);

/// etcd goes down and comes back on the same data: the edge serves from memory meanwhile, its
/// watch resumes, and a binding another edge writes after the restart reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_restart_keeps_the_cache_and_resumes() {
    let mut backend = Backend::etcd().await;
    let edge1 = start(backend.store(), LocationConfig::default()).await;
    let req = register(
        "alice",
        "c1",
        1,
        &["<sip:alice@192.0.2.10:40000>;expires=600"],
    );
    register_on(&edge1, &req, NOW).await.unwrap();
    let Backend::Etcd { server, .. } = &mut backend else {
        unreachable!()
    };
    server.kill();
    assert_eq!(
        edge1.lookup(ALICE, NOW).len(),
        1,
        "served from memory while etcd is down"
    );
    let bob = register("bob", "c2", 1, &["<sip:bob@192.0.2.20:40000>;expires=600"]);
    let err = register_on(&edge1, &bob, NOW)
        .await
        .expect_err("etcd is down");
    assert!(matches!(err, LocationError::Unavailable(_)), "{err:?}");
    let Backend::Etcd { server, .. } = &mut backend else {
        unreachable!()
    };
    // The harness blocks while etcd starts; this runtime has other workers meanwhile.
    tokio::task::block_in_place(|| server.restart()).expect("etcd restarts");
    let edge2 = start(backend.second_client().await, LocationConfig::default()).await;
    assert_eq!(
        edge2.lookup(ALICE, NOW).len(),
        1,
        "the binding survived the restart"
    );
    register_on(&edge2, &bob, NOW).await.unwrap();
    eventually(
        "edge 1 sees a binding written after the restart",
        Duration::from_secs(10),
        || async { edge1.lookup("sip:bob@example.com", NOW).len() == 1 },
    )
    .await;
}
