//! The directory cache over both stores: each case is written once over a `Backend` and run
//! against the embedded store (a temporary redb file) and against a real etcd started by the
//! harness (a failure to start etcd fails the test). The etcd outage case follows.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use directory::import::{CityParams, generate_city};
use directory::model::{CallCategory, Entry, EntryKey, Kind, SipUsername, UserId};
use directory::storage::{encode, entry_key, kind_prefix};
use directory_client::DirectoryCache;
use store::embedded::EmbeddedStore;
use store::etcd::{EtcdConfig, EtcdStore};
use store::{Compare, KeyValue, LeaseId, Op, Revision, Store, StoreError, TxnOutcome, Watch};
use testkit::etcd::EtcdServer;
use tokio::sync::Notify;
use tokio::time::timeout;

/// Bound on a change reaching the cache.
const CHANGE_WAIT: Duration = Duration::from_secs(10);

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
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path().join("store.redb"))
            .await
            .unwrap();
        Backend::Embedded {
            store: Arc::new(store),
            _dir: dir,
        }
    }

    async fn etcd() -> Backend {
        let server = tokio::task::spawn_blocking(EtcdServer::start)
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("etcd did not start: {e}"));
        let store = EtcdStore::connect(&EtcdConfig::new([server.endpoint()]))
            .await
            .unwrap();
        Backend::Etcd {
            store: Arc::new(store),
            server,
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
            Backend::Embedded { store, .. } => store.compact(revision).await.unwrap(),
            Backend::Etcd { store, .. } => store.compact(revision).await.unwrap(),
        }
    }
}

/// A small city: 3 sites, 40 users, 20 devices with their extensions, a hunt group.
fn small_city() -> Vec<Entry> {
    generate_city(&CityParams {
        sites: 3,
        users: 40,
        devices: 20,
        hunt_groups: 1,
        seed: 11,
    })
    .unwrap()
}

async fn put_entries(store: &dyn Store, entries: &[Entry]) -> Revision {
    let ops = entries
        .iter()
        .map(|entry| Op::Put {
            key: entry_key(&entry.key()),
            value: encode(entry),
            lease: None,
        })
        .collect();
    let outcome = store.txn(Vec::new(), ops).await.unwrap();
    assert!(outcome.succeeded);
    outcome.revision
}

async fn wait_for_revision(cache: &DirectoryCache, revision: Revision) {
    let mut changes = cache.changes();
    timeout(CHANGE_WAIT, changes.wait_for(|r| *r >= revision))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "cache stuck at revision {} waiting for {revision}",
                cache.revision()
            )
        })
        .unwrap();
}

fn a_new_user(city: &[Entry], id: &str) -> Entry {
    let mut user = city
        .iter()
        .find_map(|e| match e {
            Entry::User(u) => Some(u.clone()),
            _ => None,
        })
        .unwrap();
    user.id = UserId::parse(id).unwrap();
    Entry::User(user)
}

fn a_changed_cos(city: &[Entry]) -> Entry {
    let mut cos = city
        .iter()
        .find_map(|e| match e {
            Entry::ClassOfService(c) => Some(c.clone()),
            _ => None,
        })
        .unwrap();
    if !cos.allowed.remove(&CallCategory::Premium) {
        cos.allowed.insert(CallCategory::Premium);
    }
    Entry::ClassOfService(cos)
}

async fn initial_load(backend: &Backend) {
    let store = backend.shared();
    let city = small_city();
    let written = put_entries(store.as_ref(), &city).await;
    let cache = DirectoryCache::start(store).await.unwrap();
    assert!(cache.revision() >= written);
    assert_eq!(cache.len(), city.len());
    let mut devices = 0;
    for entry in &city {
        assert_eq!(cache.entry(&entry.key()).as_ref(), Some(entry));
        match entry {
            Entry::Device(device) => {
                devices += 1;
                let found = cache
                    .device_by_sip_username(device.sip_username.as_str())
                    .unwrap();
                assert_eq!(&*found, device);
                assert_eq!(found.ha1, device.ha1);
            }
            Entry::Extension(extension) => {
                assert_eq!(
                    &*cache.extension(extension.number.as_str()).unwrap(),
                    extension
                );
            }
            _ => {}
        }
    }
    assert_eq!(devices, 20);
    assert!(cache.device_by_sip_username("nobody-here").is_none());
    assert_eq!(cache.skipped_values(), 0);
}

async fn puts_and_deletes_are_applied(backend: &Backend) {
    let store = backend.shared();
    let city = small_city();
    put_entries(store.as_ref(), &city).await;
    let cache = DirectoryCache::start(store.clone()).await.unwrap();

    let user = a_new_user(&city, "U-NEW-1");
    let cos = a_changed_cos(&city);
    let revision = put_entries(store.as_ref(), &[user.clone(), cos.clone()]).await;
    wait_for_revision(&cache, revision).await;
    assert_eq!(cache.entry(&user.key()), Some(user.clone()));
    assert_eq!(cache.entry(&cos.key()), Some(cos.clone()));

    let device = city
        .iter()
        .find_map(|e| match e {
            Entry::Device(d) => Some(d.clone()),
            _ => None,
        })
        .unwrap();
    assert!(
        cache
            .device_by_sip_username(device.sip_username.as_str())
            .is_some()
    );
    assert!(
        store
            .delete(&entry_key(&EntryKey::Device(device.id.clone())))
            .await
            .unwrap()
    );
    assert!(store.delete(&entry_key(&user.key())).await.unwrap());
    let (_, now) = store.list_prefix("calanque/v1/directory/").await.unwrap();
    wait_for_revision(&cache, now).await;
    assert!(
        cache
            .device_by_sip_username(device.sip_username.as_str())
            .is_none()
    );
    assert!(cache.device(device.id.as_str()).is_none());
    assert!(cache.entry(&user.key()).is_none());
    assert_eq!(cache.len(), city.len() - 1);
}

async fn a_bad_value_is_skipped(backend: &Backend) {
    let store = backend.shared();
    let city = small_city();
    put_entries(store.as_ref(), &city).await;
    let cache = DirectoryCache::start(store.clone()).await.unwrap();

    let garbage_key = format!("{}U-GARBAGE", kind_prefix(Kind::User));
    store
        .put(
            &garbage_key,
            Bytes::from_static(b"\xff\xff not protobuf"),
            None,
        )
        .await
        .unwrap();
    // A valid entry stored under another entry's key is refused too.
    let user = a_new_user(&city, "U-REAL");
    let misplaced = format!("{}U-ELSEWHERE", kind_prefix(Kind::User));
    store.put(&misplaced, encode(&user), None).await.unwrap();
    // A bad value over a good one: the cache keeps serving the last good value (a newer
    // writer's value this version cannot read must not make a phone unknown).
    let overwritten = city.iter().find(|e| e.kind() == Kind::User).unwrap();
    store
        .put(
            &entry_key(&overwritten.key()),
            Bytes::from_static(b"\x08\x01garbage"),
            None,
        )
        .await
        .unwrap();
    let good = a_new_user(&city, "U-GOOD");
    let revision = put_entries(store.as_ref(), std::slice::from_ref(&good)).await;
    wait_for_revision(&cache, revision).await;

    assert_eq!(cache.skipped_values(), 3);
    assert_eq!(cache.entry(&overwritten.key()).as_ref(), Some(overwritten));
    assert!(cache.user("U-GARBAGE").is_none());
    assert!(cache.user("U-ELSEWHERE").is_none());
    assert!(cache.user("U-REAL").is_none());
    assert_eq!(cache.entry(&good.key()), Some(good));
    assert_eq!(cache.len(), city.len() + 1);

    // A cache started on a store holding bad values loads the rest.
    // (The overwritten user is unreadable there: it has no last good value.)
    let second = DirectoryCache::start(store).await.unwrap();
    assert_eq!(second.len(), city.len());
    assert_eq!(second.skipped_values(), 3);
}

async fn a_device_is_found_by_its_current_sip_username_only(backend: &Backend) {
    let store = backend.shared();
    let city = small_city();
    put_entries(store.as_ref(), &city).await;
    let cache = DirectoryCache::start(store.clone()).await.unwrap();
    let mut devices = city.iter().filter_map(|e| match e {
        Entry::Device(d) => Some(d.clone()),
        _ => None,
    });
    let (first, second) = (devices.next().unwrap(), devices.next().unwrap());
    let old_username = first.sip_username.clone();

    let mut renamed = first.clone();
    renamed.sip_username = SipUsername::parse("renamed.desk").unwrap();
    let revision = put_entries(store.as_ref(), &[Entry::Device(renamed.clone())]).await;
    wait_for_revision(&cache, revision).await;
    assert!(
        cache
            .device_by_sip_username(old_username.as_str())
            .is_none()
    );
    assert_eq!(
        cache.device_by_sip_username("renamed.desk").unwrap().id,
        renamed.id
    );

    // The freed username moves to another device; deleting the first device leaves it alone.
    let mut moved = second.clone();
    moved.sip_username = old_username.clone();
    put_entries(store.as_ref(), &[Entry::Device(moved.clone())]).await;
    store
        .delete(&entry_key(&EntryKey::Device(renamed.id.clone())))
        .await
        .unwrap();
    let (_, now) = store.list_prefix("calanque/v1/directory/").await.unwrap();
    wait_for_revision(&cache, now).await;
    assert!(cache.device_by_sip_username("renamed.desk").is_none());
    assert_eq!(
        cache
            .device_by_sip_username(old_username.as_str())
            .unwrap()
            .id,
        moved.id
    );
    assert!(
        cache
            .device_by_sip_username(second.sip_username.as_str())
            .is_none()
    );
}

/// Delegates to a store, but holds every `watch` call until released: the cache's first
/// watch opens only after the test has written and compacted past the cache's revision.
#[derive(Debug)]
struct GatedStore {
    inner: Arc<dyn Store>,
    open: AtomicBool,
    released: Notify,
}

#[async_trait]
impl Store for GatedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.inner.get(key).await
    }
    async fn list_prefix(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision), StoreError> {
        self.inner.list_prefix(prefix).await
    }
    async fn put(
        &self,
        key: &str,
        value: Bytes,
        lease: Option<LeaseId>,
    ) -> Result<Revision, StoreError> {
        self.inner.put(key, value, lease).await
    }
    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        self.inner.delete(key).await
    }
    async fn txn(&self, compares: Vec<Compare>, ops: Vec<Op>) -> Result<TxnOutcome, StoreError> {
        self.inner.txn(compares, ops).await
    }
    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        self.inner.grant_lease(ttl).await
    }
    async fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.inner.keep_alive(lease).await
    }
    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.inner.revoke_lease(lease).await
    }
    async fn watch(&self, prefix: &str, from_revision: Revision) -> Result<Watch, StoreError> {
        let released = self.released.notified();
        if !self.open.load(Ordering::SeqCst) {
            released.await;
        }
        self.inner.watch(prefix, from_revision).await
    }
}

async fn compaction_makes_it_reload(backend: &Backend) {
    let store = backend.shared();
    let city = small_city();
    put_entries(store.as_ref(), &city).await;
    let gated = Arc::new(GatedStore {
        inner: store.clone(),
        open: AtomicBool::new(false),
        released: Notify::new(),
    });
    let cache = DirectoryCache::start(gated.clone()).await.unwrap();
    let loaded = cache.revision();

    // Changes the cache's watch would have to replay, then the history they are in is gone.
    let user = a_new_user(&city, "U-AFTER-COMPACT");
    let cos = a_changed_cos(&city);
    put_entries(store.as_ref(), &[user.clone(), cos.clone()]).await;
    let route = city.iter().find(|e| e.kind() == Kind::Route).unwrap();
    assert!(store.delete(&entry_key(&route.key())).await.unwrap());
    let (_, now) = store.list_prefix("calanque/v1/directory/").await.unwrap();
    assert!(now > loaded + 1);
    backend.compact(now).await;

    gated.open.store(true, Ordering::SeqCst);
    gated.released.notify_waiters();
    wait_for_revision(&cache, now).await;
    assert!(cache.reloads() >= 1, "the cache caught up without a reload");
    assert_eq!(cache.entry(&user.key()), Some(user));
    assert_eq!(cache.entry(&cos.key()), Some(cos));
    assert!(cache.entry(&route.key()).is_none());

    // And it follows the store again after the reload.
    let later = a_new_user(&city, "U-LATER");
    let revision = put_entries(store.as_ref(), std::slice::from_ref(&later)).await;
    wait_for_revision(&cache, revision).await;
    assert_eq!(cache.entry(&later.key()), Some(later));
}

macro_rules! both_backends {
    ($($case:ident),+ $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(&super::Backend::embedded().await).await;
                }
            )+
        }
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(&super::Backend::etcd().await).await;
                }
            )+
        }
    };
}

both_backends!(
    initial_load,
    puts_and_deletes_are_applied,
    a_bad_value_is_skipped,
    a_device_is_found_by_its_current_sip_username_only,
    compaction_makes_it_reload,
);

/// etcd killed: the cache answers from memory; etcd back: later writes reach it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_outage_is_served_from_memory_and_followed_after() {
    let mut backend = Backend::etcd().await;
    let store = backend.shared();
    let city = small_city();
    put_entries(store.as_ref(), &city).await;
    let cache = DirectoryCache::start(store.clone()).await.unwrap();
    let device = city
        .iter()
        .find_map(|e| match e {
            Entry::Device(d) => Some(d.clone()),
            _ => None,
        })
        .unwrap();

    let Backend::Etcd { server, .. } = &mut backend else {
        unreachable!()
    };
    server.kill();
    // Long enough for the watch stream to notice and start retrying.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let found = cache
        .device_by_sip_username(device.sip_username.as_str())
        .unwrap();
    assert_eq!(found.ha1, device.ha1);
    assert_eq!(cache.len(), city.len());
    assert!(store.list_prefix("calanque/").await.is_err());

    let mut server = tokio::task::spawn_blocking({
        let Backend::Etcd { server, .. } = backend else {
            unreachable!()
        };
        move || {
            let mut server = server;
            server.restart().map(|()| server)
        }
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("etcd did not restart: {e}"));

    let user = a_new_user(&city, "U-AFTER-OUTAGE");
    let mut written = None;
    for _ in 0..40 {
        let key = entry_key(&user.key());
        match store.put(&key, encode(&user), None).await {
            Ok(revision) => {
                written = Some(revision);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
    let revision = written.expect("etcd accepted no write after its restart");
    wait_for_revision(&cache, revision).await;
    assert_eq!(cache.entry(&user.key()), Some(user));
    let cos = city
        .iter()
        .find(|e| e.kind() == Kind::ClassOfService)
        .unwrap();
    assert!(cache.class_of_service(cos.key().id()).is_some());
    server.kill();
}
