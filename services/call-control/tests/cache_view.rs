//! The dial plan over the live directory cache (embedded store) decides like it does over the
//! in-memory view, for a generated city (the cache's device → extensions index against the
//! in-memory one).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use call_control::dialplan::{MemoryDirectory, Refusal, Target, route};
use directory::import::{CityParams, generate_city};
use directory::model::{Directory, Entry};
use directory::storage::{encode, entry_key};
use directory_client::DirectoryCache;
use store::embedded::EmbeddedStore;
use store::{Op, Store};

/// A generated city.
fn city() -> Vec<Entry> {
    generate_city(&CityParams {
        sites: 4,
        users: 60,
        devices: 40,
        hunt_groups: 2,
        seed: 3,
    })
    .unwrap()
}

#[tokio::test]
async fn the_cache_and_the_memory_view_route_alike() {
    let entries = city();
    Directory::from_entries(entries.clone()).expect("valid city");
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        EmbeddedStore::open(dir.path().join("store.redb"))
            .await
            .unwrap(),
    );
    let ops = entries
        .iter()
        .map(|entry| Op::Put {
            key: entry_key(&entry.key()),
            value: encode(entry),
            lease: None,
        })
        .collect();
    assert!(store.txn(Vec::new(), ops).await.unwrap().succeeded);
    let cache = DirectoryCache::start(store).await.unwrap();
    let memory = MemoryDirectory::from_entries(entries.clone());

    let devices: Vec<String> = entries
        .iter()
        .filter_map(|e| match e {
            Entry::Device(d) => Some(d.id.to_string()),
            _ => None,
        })
        .collect();
    let dialed = [
        "1000005",
        "1003010",
        "005",
        "010",
        "8000000",
        "8500001",
        "112",
        "17",
        "0491000000",
        "0612345678",
        "0014155550100",
        "0899000000",
        "7123",
        "049",
        "9",
        "alice",
    ];
    let mut placed = 0;
    for device in &devices {
        for number in dialed {
            let from_cache = route(&cache, device, number);
            assert_eq!(
                from_cache,
                route(&memory, device, number),
                "{number} from {device}"
            );
            if from_cache.is_ok() {
                placed += 1;
            }
        }
    }
    // Internal calls from cache-known callers are placed (not barred for want of an extension).
    assert!(matches!(
        route(&cache, &devices[0], "1001000"),
        Ok(Target::Extension { .. })
    ));
    assert_ne!(route(&cache, &devices[0], "9"), Err(Refusal::NotFound));
    assert!(placed > devices.len() * 4, "{placed}");
}
