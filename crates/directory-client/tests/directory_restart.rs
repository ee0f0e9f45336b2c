//! Issue: "Directory restart: caches keep answering from memory while it is down."
//! A cache follows the store, not the directory process, so stopping the directory service
//! must not stop lookups; a directory started again writes, and the cache follows.

use std::sync::Arc;
use std::time::Duration;

use bus::{Bus, InProcessBus};
use directory::api::BearerToken;
use directory::import::{CityParams, generate_city};
use directory::model::{ChangeSet, Entry, Name};
use directory::{Config, service};
use directory_client::DirectoryCache;
use store::Store;
use store::embedded::EmbeddedStore;

async fn wait_for_revision(cache: &DirectoryCache, revision: i64) {
    let mut changes = cache.changes();
    let reached = tokio::time::timeout(Duration::from_secs(5), async {
        while *changes.borrow_and_update() < revision {
            if changes.changed().await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(reached.is_ok(), "cache did not reach revision {revision}");
}

#[tokio::test]
async fn the_cache_answers_while_the_directory_is_down_and_follows_it_after() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn Store> = Arc::new(
        EmbeddedStore::open(dir.path().join("directory.redb"))
            .await
            .expect("embedded store"),
    );
    let bus: Arc<dyn Bus> = Arc::new(InProcessBus::new(Default::default()));
    let config = || Config::new(vec![BearerToken::new("restart-test-token")]);

    // A small city written through a running directory service.
    let first = service::start(config(), store.clone(), bus.clone())
        .await
        .expect("start");
    assert!(first.wait_loaded(Duration::from_secs(5)).await);
    let params = CityParams {
        sites: 3,
        users: 30,
        devices: 12,
        hunt_groups: 2,
        seed: 11,
    };
    let entries = generate_city(&params).expect("city");
    let committed = first
        .repository()
        .commit(|_| {
            Ok(ChangeSet {
                puts: entries.clone(),
                deletes: Vec::new(),
            })
        })
        .await
        .expect("import");
    let cache = DirectoryCache::start(store.clone()).await.expect("cache");
    wait_for_revision(&cache, committed.revision).await;

    let device = entries
        .iter()
        .find_map(|e| match e {
            Entry::Device(d) => Some(d.clone()),
            _ => None,
        })
        .expect("a device");
    let mut user = entries
        .iter()
        .find_map(|e| match e {
            Entry::User(u) => Some(u.clone()),
            _ => None,
        })
        .expect("a user");

    // The directory goes away: lookups keep answering from memory.
    first.shutdown().await;
    for _ in 0..100 {
        let found = cache
            .device_by_sip_username(device.sip_username.as_str())
            .expect("device");
        assert_eq!(found.id, device.id);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // A directory started again changes a user; the cache follows without being restarted.
    let second = service::start(config(), store.clone(), bus.clone())
        .await
        .expect("restart");
    assert!(second.wait_loaded(Duration::from_secs(5)).await);
    user.display_name = Name::parse("Renamed After Restart").expect("name");
    let (committed, created) = second
        .repository()
        .put(Entry::User(user.clone()), true, 0)
        .await
        .expect("put");
    assert!(!created);
    wait_for_revision(&cache, committed.revision).await;
    let seen = cache.user(user.id.as_str()).expect("user");
    assert_eq!(seen.display_name.as_str(), "Renamed After Restart");
    second.shutdown().await;
}
