//! One conformance suite for every `Store`: each case is written once over `&dyn Store` and
//! run against the embedded store (a temporary redb file) and against `EtcdStore` on a real
//! etcd started by the harness (a failure to start etcd fails the test). Backend-specific
//! cases follow: etcd outages, embedded reopen and bounded history.

// The cases are shared functions, not `#[test]`s, so clippy's test allowance does not reach
// them; a failed unwrap is a failed test here.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use store::embedded::{EmbeddedOptions, EmbeddedStore};
use store::etcd::{EtcdConfig, EtcdStore};
use store::{Compare, LeaseId, Op, Revision, Store, StoreError, Watch, WatchEvent};
use testkit::etcd::EtcdServer;
use tokio::time::{Instant, sleep, timeout};

/// Bound on waiting for one watch event.
const EVENT_WAIT: Duration = Duration::from_secs(5);

/// A store under test, with what the generic cases need beyond the trait.
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

    fn store(&self) -> &dyn Store {
        match self {
            Backend::Embedded { store, .. } => store.as_ref(),
            Backend::Etcd { store, .. } => store.as_ref(),
        }
    }

    fn shared(&self) -> Arc<dyn Store> {
        match self {
            Backend::Embedded { store, .. } => store.clone(),
            Backend::Etcd { store, .. } => store.clone(),
        }
    }

    async fn compact(&self, revision: Revision) {
        match self {
            Backend::Embedded { store, .. } => store.compact(revision).await,
            Backend::Etcd { store, .. } => store.compact(revision).await,
        }
        .expect("compact");
    }

    /// Watches the backend is serving right now (etcd: its own gauge).
    fn active_watches(&self) -> usize {
        match self {
            Backend::Embedded { store, .. } => store.active_watches(),
            Backend::Etcd { server, .. } => server
                .metric("etcd_debugging_mvcc_watcher_total")
                .expect("etcd exports etcd_debugging_mvcc_watcher_total")
                as usize,
        }
    }
}

fn etcd_config(server: &EtcdServer) -> EtcdConfig {
    let mut config = EtcdConfig::new([server.endpoint()]);
    config.connect_timeout = Duration::from_millis(500);
    config.request_timeout = Duration::from_secs(2);
    config
}

fn value(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

fn put(key: &str, text: &str) -> Op {
    Op::Put {
        key: key.to_owned(),
        value: value(text),
        lease: None,
    }
}

async fn current_revision(store: &dyn Store) -> Revision {
    store.list_prefix("").await.expect("list").1
}

async fn next_event(watch: &mut Watch) -> WatchEvent {
    timeout(EVENT_WAIT, watch.next())
        .await
        .expect("watch event within 5 s")
        .expect("watch still open")
        .expect("watch event, not an error")
}

/// (kind, key, revision) of an event, for comparisons.
fn summary(event: &WatchEvent) -> (&'static str, String, Revision) {
    match event {
        WatchEvent::Put(kv) => ("put", kv.key.clone(), kv.mod_revision),
        WatchEvent::Delete { key, revision } => ("delete", key.clone(), *revision),
    }
}

/// Polls `condition` every 50 ms until it holds or `limit` passes.
async fn eventually<F: Future<Output = bool>>(limit: Duration, mut condition: impl FnMut() -> F) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if condition().await {
            return;
        }
        sleep(Duration::from_millis(50)).await;
    }
    panic!("condition not met within {limit:?}");
}

mod cases {
    use super::*;

    pub(super) async fn put_get_delete_track_revisions_and_versions(b: &Backend) {
        let s = b.store();
        let start = current_revision(s).await;
        let r1 = s.put("a", value("one"), None).await.unwrap();
        assert_eq!(r1, start + 1);
        let kv = s.get("a").await.unwrap().expect("a exists");
        assert_eq!(
            (
                kv.value.as_ref(),
                kv.create_revision,
                kv.mod_revision,
                kv.version,
                kv.lease
            ),
            (&b"one"[..], r1, r1, 1, None)
        );
        let r2 = s.put("a", value("two"), None).await.unwrap();
        assert_eq!(r2, r1 + 1);
        let kv = s.get("a").await.unwrap().expect("a exists");
        assert_eq!(
            (
                kv.value.as_ref(),
                kv.create_revision,
                kv.mod_revision,
                kv.version
            ),
            (&b"two"[..], r1, r2, 2)
        );
        assert!(s.get("missing").await.unwrap().is_none());
        assert!(s.delete("a").await.unwrap());
        assert!(s.get("a").await.unwrap().is_none());
        assert_eq!(current_revision(s).await, r2 + 1);
        // Deleting nothing is not a write.
        assert!(!s.delete("a").await.unwrap());
        assert_eq!(current_revision(s).await, r2 + 1);
        // Re-created: a new life with version 1.
        let r3 = s.put("a", value("three"), None).await.unwrap();
        let kv = s.get("a").await.unwrap().expect("a exists");
        assert_eq!((kv.create_revision, kv.version), (r3, 1));
    }

    pub(super) async fn list_prefix_is_ordered_and_reports_its_revision(b: &Backend) {
        let s = b.store();
        for key in ["p/b", "q/x", "p/a", "p", "p/c/1", "pz"] {
            s.put(key, value(key), None).await.unwrap();
        }
        let last = s.put("p/0", value("p/0"), None).await.unwrap();
        let (kvs, revision) = s.list_prefix("p/").await.unwrap();
        let keys: Vec<&str> = kvs.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(keys, ["p/0", "p/a", "p/b", "p/c/1"]);
        assert_eq!(revision, last);
        assert_eq!(kvs[0].value.as_ref(), b"p/0");
        let (all, _) = s.list_prefix("").await.unwrap();
        assert_eq!(all.len(), 7);
        let (none, revision) = s.list_prefix("nothing/").await.unwrap();
        assert!(none.is_empty());
        assert_eq!(revision, last);
    }

    pub(super) async fn txn_compares_guard_writes(b: &Backend) {
        let s = b.store();
        let r = s.put("cas", value("v1"), None).await.unwrap();
        // Compare-and-swap on the mod revision.
        let swapped = s
            .txn(
                vec![Compare::ModRevision("cas".into(), r)],
                vec![put("cas", "v2")],
            )
            .await
            .unwrap();
        assert!(swapped.succeeded);
        assert_eq!(swapped.revision, r + 1);
        let stale = s
            .txn(
                vec![Compare::ModRevision("cas".into(), r)],
                vec![put("cas", "v3")],
            )
            .await
            .unwrap();
        assert!(!stale.succeeded);
        assert_eq!(stale.revision, r + 1);
        assert_eq!(s.get("cas").await.unwrap().unwrap().value.as_ref(), b"v2");
        // ModRevision on a missing key never holds.
        let missing = s
            .txn(
                vec![Compare::ModRevision("nope".into(), r)],
                vec![put("x", "x")],
            )
            .await
            .unwrap();
        assert!(!missing.succeeded);
        // Create-if-absent.
        let created = s
            .txn(vec![Compare::Absent("new".into())], vec![put("new", "1")])
            .await
            .unwrap();
        assert!(created.succeeded);
        let again = s
            .txn(vec![Compare::Absent("new".into())], vec![put("new", "2")])
            .await
            .unwrap();
        assert!(!again.succeeded);
        assert_eq!(s.get("new").await.unwrap().unwrap().value.as_ref(), b"1");
        // Present guards a delete; several compares must all hold.
        let gone = s
            .txn(
                vec![Compare::Present("new".into()), Compare::Absent("x".into())],
                vec![Op::Delete { key: "new".into() }],
            )
            .await
            .unwrap();
        assert!(gone.succeeded);
        assert!(s.get("new").await.unwrap().is_none());
        let absent = s
            .txn(vec![Compare::Present("new".into())], vec![put("y", "y")])
            .await
            .unwrap();
        assert!(!absent.succeeded);
        assert!(s.get("y").await.unwrap().is_none());
        // Several writes in one transaction share one revision.
        let multi = s
            .txn(
                vec![],
                vec![
                    put("m/1", "1"),
                    put("m/2", "2"),
                    Op::DeletePrefix {
                        prefix: "cas".into(),
                    },
                ],
            )
            .await
            .unwrap();
        assert!(multi.succeeded);
        let (kvs, revision) = s.list_prefix("m/").await.unwrap();
        assert_eq!(revision, multi.revision);
        assert!(kvs.iter().all(|kv| kv.mod_revision == multi.revision));
        assert!(s.get("cas").await.unwrap().is_none());
        // Writing one key twice in a transaction is refused (as etcd does).
        let twice = s.txn(vec![], vec![put("d", "1"), put("d", "2")]).await;
        assert!(
            matches!(twice, Err(StoreError::InvalidRequest(_))),
            "{twice:?}"
        );
    }

    pub(super) async fn bulk_txn_of_12000_puts_is_all_or_nothing(b: &Backend) {
        let s = b.store();
        s.put("bulk-guard", value("present"), None).await.unwrap();
        let ops: Vec<Op> = (0..12_000)
            .map(|i| put(&format!("bulk/{i:05}"), &format!("user {i}")))
            .collect();
        let refused = s
            .txn(vec![Compare::Absent("bulk-guard".into())], ops.clone())
            .await
            .unwrap();
        assert!(!refused.succeeded);
        assert!(s.list_prefix("bulk/").await.unwrap().0.is_empty());
        let applied = s
            .txn(vec![Compare::Present("bulk-guard".into())], ops)
            .await
            .unwrap();
        assert!(applied.succeeded);
        let (kvs, revision) = s.list_prefix("bulk/").await.unwrap();
        assert_eq!(kvs.len(), 12_000);
        assert_eq!(revision, applied.revision);
        assert!(kvs.iter().all(|kv| kv.mod_revision == applied.revision));
        assert_eq!(kvs[11_999].value.as_ref(), b"user 11999");
    }

    pub(super) async fn lease_expiry_deletes_keys_with_events(b: &Backend) {
        let s = b.store();
        let lease = s.grant_lease(Duration::from_secs(1)).await.unwrap();
        let mut watch = s.watch("l/", 0).await.unwrap();
        s.put("l/bound", value("x"), Some(lease)).await.unwrap();
        s.put("l/free", value("y"), None).await.unwrap();
        assert_eq!(s.get("l/bound").await.unwrap().unwrap().lease, Some(lease));
        let started = Instant::now();
        assert_eq!(summary(&next_event(&mut watch).await).0, "put");
        assert_eq!(summary(&next_event(&mut watch).await).0, "put");
        let expired = next_event(&mut watch).await;
        let waited = started.elapsed();
        assert!(
            matches!(&expired, WatchEvent::Delete { key, .. } if key == "l/bound"),
            "{expired:?}"
        );
        assert!(
            waited >= Duration::from_millis(500),
            "expired after {waited:?}"
        );
        assert!(s.get("l/bound").await.unwrap().is_none());
        assert!(s.get("l/free").await.unwrap().is_some());
        let renewed = s.keep_alive(lease).await;
        assert!(
            matches!(renewed, Err(StoreError::LeaseNotFound(_))),
            "{renewed:?}"
        );
    }

    pub(super) async fn keep_alive_extends_a_lease(b: &Backend) {
        let s = b.store();
        let lease = s.grant_lease(Duration::from_secs(2)).await.unwrap();
        s.put("k/alive", value("x"), Some(lease)).await.unwrap();
        // Renewed every 500 ms for 3.5 s, well past the 2 s TTL.
        for _ in 0..7 {
            sleep(Duration::from_millis(500)).await;
            s.keep_alive(lease).await.unwrap();
        }
        assert!(s.get("k/alive").await.unwrap().is_some());
        // Left alone, it expires.
        eventually(Duration::from_secs(6), || async {
            s.get("k/alive").await.unwrap().is_none()
        })
        .await;
    }

    pub(super) async fn revoke_deletes_keys_now(b: &Backend) {
        let s = b.store();
        let lease = s.grant_lease(Duration::from_secs(60)).await.unwrap();
        let r1 = s.put("r/1", value("1"), Some(lease)).await.unwrap();
        s.put("r/2", value("2"), Some(lease)).await.unwrap();
        let mut watch = s.watch("r/", r1).await.unwrap();
        s.revoke_lease(lease).await.unwrap();
        assert!(s.list_prefix("r/").await.unwrap().0.is_empty());
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(summary(&next_event(&mut watch).await));
        }
        let deletes: BTreeSet<String> = seen
            .iter()
            .filter(|(kind, _, _)| *kind == "delete")
            .map(|(_, key, _)| key.clone())
            .collect();
        assert_eq!(
            deletes,
            BTreeSet::from(["r/1".to_owned(), "r/2".to_owned()])
        );
        let again = s.revoke_lease(lease).await;
        assert!(
            matches!(again, Err(StoreError::LeaseNotFound(_))),
            "{again:?}"
        );
        let orphan = s.put("r/3", value("3"), Some(lease)).await;
        assert!(
            matches!(orphan, Err(StoreError::LeaseNotFound(_))),
            "{orphan:?}"
        );
        let unknown = s.keep_alive(LeaseId(0x7eadbeef)).await;
        assert!(
            matches!(unknown, Err(StoreError::LeaseNotFound(_))),
            "{unknown:?}"
        );
    }

    pub(super) async fn watch_delivers_live_events_in_order_under_its_prefix(b: &Backend) {
        let s = b.store();
        let mut watch = s.watch("w/", 0).await.unwrap();
        let r1 = s.put("w/a", value("1"), None).await.unwrap();
        s.put("other/x", value("1"), None).await.unwrap();
        let r3 = s.put("w/b", value("1"), None).await.unwrap();
        s.delete("w/a").await.unwrap();
        let r5 = s
            .txn(
                vec![],
                vec![put("w/c", "1"), put("w/d", "1"), put("x/e", "1")],
            )
            .await
            .unwrap()
            .revision;
        let r6 = s.put("w/b", value("2"), None).await.unwrap();
        let mut seen = Vec::new();
        for _ in 0..6 {
            seen.push(summary(&next_event(&mut watch).await));
        }
        let expected = vec![
            ("put", "w/a".to_owned(), r1),
            ("put", "w/b".to_owned(), r3),
            ("delete", "w/a".to_owned(), r3 + 1),
            ("put", "w/c".to_owned(), r5),
            ("put", "w/d".to_owned(), r5),
            ("put", "w/b".to_owned(), r6),
        ];
        assert_eq!(seen, expected);
        // The value and the version travel with the event.
        s.put("w/b", value("3"), None).await.unwrap();
        match next_event(&mut watch).await {
            WatchEvent::Put(kv) => assert_eq!((kv.value.as_ref(), kv.version), (&b"3"[..], 3)),
            other => panic!("expected a put, got {other:?}"),
        }
    }

    pub(super) async fn watch_replays_from_a_past_revision(b: &Backend) {
        let s = b.store();
        let mut revisions = Vec::new();
        for i in 0..5 {
            revisions.push(s.put(&format!("h/{i}"), value("v"), None).await.unwrap());
        }
        s.delete("h/0").await.unwrap();
        let mut watch = s.watch("h/", revisions[2]).await.unwrap();
        let live = s.put("h/5", value("v"), None).await.unwrap();
        let mut seen = Vec::new();
        for _ in 0..5 {
            seen.push(summary(&next_event(&mut watch).await));
        }
        let expected = vec![
            ("put", "h/2".to_owned(), revisions[2]),
            ("put", "h/3".to_owned(), revisions[3]),
            ("put", "h/4".to_owned(), revisions[4]),
            ("delete", "h/0".to_owned(), revisions[4] + 1),
            ("put", "h/5".to_owned(), live),
        ];
        assert_eq!(seen, expected);
    }

    pub(super) async fn watch_from_list_revision_misses_nothing_under_concurrent_writes(
        b: &Backend,
    ) {
        const WRITES: usize = 300;
        let shared = b.shared();
        let writer = tokio::spawn(async move {
            for i in 0..WRITES {
                shared.put(&format!("c/{i:04}"), value("v"), None).await?;
            }
            Ok::<_, StoreError>(())
        });
        // List and watch while the writer runs.
        let s = b.store();
        eventually(Duration::from_secs(10), || async {
            s.list_prefix("c/").await.unwrap().0.len() >= 20
        })
        .await;
        let (listed, revision) = s.list_prefix("c/").await.unwrap();
        assert!(
            listed.len() < WRITES,
            "the writer finished before the watch"
        );
        let mut watch = s.watch("c/", revision + 1).await.unwrap();
        let mut seen: Vec<String> = listed.iter().map(|kv| kv.key.clone()).collect();
        let deadline = Instant::now() + Duration::from_secs(20);
        while seen.len() < WRITES && Instant::now() < deadline {
            let (_, key, at) = summary(&next_event(&mut watch).await);
            assert!(
                at > revision,
                "event at {at} already in the list at {revision}"
            );
            seen.push(key);
        }
        timeout(Duration::from_secs(20), writer)
            .await
            .expect("writer done")
            .expect("writer task")
            .expect("writes");
        let distinct: BTreeSet<&String> = seen.iter().collect();
        assert_eq!(seen.len(), WRITES, "duplicates or losses");
        assert_eq!(distinct.len(), WRITES);
    }

    pub(super) async fn watch_from_compacted_revision_fails(b: &Backend) {
        let s = b.store();
        let first = s.put("z/0", value("v"), None).await.unwrap();
        for i in 1..10 {
            s.put(&format!("z/{i}"), value("v"), None).await.unwrap();
        }
        let kept = s.put("z/10", value("v"), None).await.unwrap();
        b.compact(kept - 2).await;
        let mut old = s.watch("z/", first).await.unwrap();
        let item = timeout(EVENT_WAIT, old.next())
            .await
            .expect("an answer within 5 s")
            .expect("an item");
        match item {
            Err(StoreError::Compacted { requested, oldest }) => {
                assert_eq!(requested, first);
                assert!(oldest > first && oldest <= kept, "oldest {oldest}");
            }
            other => panic!("expected Compacted, got {other:?}"),
        }
        let ended = timeout(EVENT_WAIT, old.next()).await.expect("ends");
        assert!(ended.is_none(), "{ended:?}");
        // Since the compaction point, replay still works.
        let mut recent = s.watch("z/", kept).await.unwrap();
        assert_eq!(summary(&next_event(&mut recent).await).2, kept);
    }

    pub(super) async fn dropping_a_watch_cancels_it(b: &Backend) {
        let s = b.store();
        let before = b.active_watches();
        let mut watch = s.watch("d/", 0).await.unwrap();
        s.put("d/1", value("v"), None).await.unwrap();
        next_event(&mut watch).await;
        assert_eq!(b.active_watches(), before + 1);
        drop(watch);
        eventually(Duration::from_secs(5), || async {
            b.active_watches() == before
        })
        .await;
        // The store is fine without it.
        s.put("d/2", value("v"), None).await.unwrap();
    }
}

/// Runs each case against both backends, one test per (backend, case).
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let backend = super::Backend::embedded().await;
                    super::cases::$case(&backend).await;
                }
            )*
        }
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let backend = super::Backend::etcd().await;
                    super::cases::$case(&backend).await;
                }
            )*
        }
    };
}

conformance!(
    put_get_delete_track_revisions_and_versions,
    list_prefix_is_ordered_and_reports_its_revision,
    txn_compares_guard_writes,
    bulk_txn_of_12000_puts_is_all_or_nothing,
    lease_expiry_deletes_keys_with_events,
    keep_alive_extends_a_lease,
    revoke_deletes_keys_now,
    watch_delivers_live_events_in_order_under_its_prefix,
    watch_replays_from_a_past_revision,
    watch_from_list_revision_misses_nothing_under_concurrent_writes,
    watch_from_compacted_revision_fails,
    dropping_a_watch_cancels_it,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_outage_answers_unavailable_then_recovers_without_losing_events() {
    let Backend::Etcd { store, mut server } = Backend::etcd().await else {
        unreachable!("Backend::etcd builds an etcd backend")
    };
    let s: &dyn Store = store.as_ref();
    let kept = s.put("o/1", value("before"), None).await.unwrap();
    let mut watch = s.watch("o/", 0).await.unwrap();
    s.put("o/2", value("before"), None).await.unwrap();
    assert_eq!(summary(&next_event(&mut watch).await).1, "o/2");

    server.kill();
    for attempt in 0..2 {
        let started = Instant::now();
        let read = s.get("o/1").await;
        let write = s.put("o/3", value("during"), None).await;
        let elapsed = started.elapsed();
        assert!(
            matches!(read, Err(StoreError::Unavailable(_))),
            "attempt {attempt}: {read:?}"
        );
        assert!(
            matches!(write, Err(StoreError::Unavailable(_))),
            "attempt {attempt}: {write:?}"
        );
        assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    }
    let refused = s.watch("o/", 0).await;
    assert!(
        matches!(refused, Err(StoreError::Unavailable(_))),
        "{refused:?}"
    );

    // Long enough an outage for the watch's retry pause to grow past a second: the writes
    // below then land before it is back, and only a resume from the last delivered revision
    // (not "from now") sees them.
    let quiet = timeout(Duration::from_millis(1500), watch.next()).await;
    assert!(quiet.is_err(), "the watch reported the outage: {quiet:?}");
    let server = tokio::task::spawn_blocking(move || server.restart().map(|()| server))
        .await
        .expect("harness task")
        .unwrap_or_else(|e| panic!("etcd did not restart: {e}"));
    let writer = EtcdStore::connect(&etcd_config(&server)).await.unwrap();
    let r3 = writer.put("o/3", value("after"), None).await.unwrap();
    let r4 = writer.put("o/4", value("after"), None).await.unwrap();
    // The first client reconnects on its own.
    eventually(Duration::from_secs(10), || async {
        s.get("o/1").await.is_ok()
    })
    .await;
    let kv = s
        .get("o/1")
        .await
        .unwrap()
        .expect("data survived the restart");
    assert_eq!((kv.value.as_ref(), kv.mod_revision), (&b"before"[..], kept));
    // Created by the write after the restart: the one refused during the outage left nothing.
    let o3 = s.get("o/3").await.unwrap().expect("o/3 written");
    assert_eq!((o3.create_revision, o3.version), (r3, 1));
    // Delivered once, in order, and nothing from before the outage again.
    assert_eq!(
        summary(&next_event(&mut watch).await),
        ("put", "o/3".into(), r3)
    );
    assert_eq!(
        summary(&next_event(&mut watch).await),
        ("put", "o/4".into(), r4)
    );
    let extra = timeout(Duration::from_millis(300), watch.next()).await;
    assert!(extra.is_err(), "unexpected event {extra:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_reopen_keeps_data_revision_leases_and_history() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let (revision, lease, first) = {
        let s = EmbeddedStore::open(&path).await.unwrap();
        let first = s.put("e/a", value("1"), None).await.unwrap();
        s.txn(vec![], vec![put("e/b", "2"), put("e/c", "3")])
            .await
            .unwrap();
        let lease = s.grant_lease(Duration::from_secs(60)).await.unwrap();
        s.put("e/leased", value("4"), Some(lease)).await.unwrap();
        s.delete("e/c").await.unwrap();
        (current_revision(&s).await, lease, first)
    };
    let s = EmbeddedStore::open(&path).await.unwrap();
    let (kvs, reopened_revision) = s.list_prefix("e/").await.unwrap();
    assert_eq!(reopened_revision, revision);
    let keys: Vec<&str> = kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["e/a", "e/b", "e/leased"]);
    assert_eq!(kvs[2].lease, Some(lease));
    assert_eq!(s.put("e/d", value("5"), None).await.unwrap(), revision + 1);
    s.keep_alive(lease).await.unwrap();
    let fresh = s.grant_lease(Duration::from_secs(60)).await.unwrap();
    assert_ne!(fresh, lease, "lease ids are not reused");
    // The event log survived too: replay from the first write.
    let mut watch = s.watch("e/", first).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(summary(&next_event(&mut watch).await).1);
    }
    assert_eq!(seen, ["e/a", "e/b", "e/c", "e/leased", "e/c", "e/d"]);
    drop(watch);
    s.revoke_lease(lease).await.unwrap();
    assert!(s.get("e/leased").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_history_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions { history: 20 };
    let s = EmbeddedStore::open_with(dir.path().join("store.redb"), options)
        .await
        .unwrap();
    let mut revisions = Vec::new();
    for i in 0..50 {
        revisions.push(s.put(&format!("b/{i}"), value("v"), None).await.unwrap());
    }
    let last = revisions[49];
    let old = s.watch("b/", revisions[0]).await.unwrap();
    let mut old = old;
    match timeout(EVENT_WAIT, old.next()).await.expect("answer") {
        Some(Err(StoreError::Compacted { requested, oldest })) => {
            assert_eq!((requested, oldest), (revisions[0], last - 19));
        }
        other => panic!("expected Compacted, got {other:?}"),
    }
    let mut kept = s.watch("b/", last - 19).await.unwrap();
    for expected in (last - 19)..=last {
        assert_eq!(summary(&next_event(&mut kept).await).2, expected);
    }
}

/// A watch that falls behind the live fan-out catches up from the log, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_slow_watch_catches_up_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let s = EmbeddedStore::open(dir.path().join("store.redb"))
        .await
        .unwrap();
    let mut watch = s.watch("s/", 0).await.unwrap();
    // More transactions than the fan-out buffers (1024) plus the watch's own buffer (1024),
    // while nobody reads.
    let mut last = 0;
    for round in 0..2200 {
        last = s
            .txn(vec![], vec![put(&format!("s/{round}"), "v")])
            .await
            .unwrap()
            .revision;
    }
    let first = last - 2199;
    for expected in first..=last {
        assert_eq!(summary(&next_event(&mut watch).await).2, expected);
    }
}

/// Past the server's limits (`--max-txn-ops`, testkit's `MAX_TXN_OPS`) a transaction is
/// refused as a whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_txn_over_the_server_limit_is_too_large_and_applies_nothing() {
    let backend = Backend::etcd().await;
    let s = backend.store();
    let ops: Vec<Op> = (0..=testkit::etcd::MAX_TXN_OPS)
        .map(|i| put(&format!("big/{i:06}"), "v"))
        .collect();
    let refused = s.txn(vec![], ops).await;
    assert!(
        matches!(refused, Err(StoreError::TooLarge(_))),
        "{refused:?}"
    );
    assert!(s.list_prefix("big/").await.unwrap().0.is_empty());
}
