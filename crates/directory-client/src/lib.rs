//! The directory cache other services use: it loads every directory entry from the store,
//! follows the store's watch, and answers lookups from memory — also while the directory
//! service or the store itself is down (it keeps the last good state and catches up when the
//! store is back).
//!
//! It reads the layout the directory service writes (`directory::storage`: one protobuf
//! `calanque.v1.Entry` per key under `calanque/v1/directory/`), so it needs neither the
//! service nor the bus to work.
//!
//! A stored value that does not decode into a valid entry (a foreign writer, or a newer service
//! version writing what this one cannot read) is logged, counted ([`DirectoryCache::skipped_values`])
//! and skipped: the key keeps its last good value, so that version skew never makes a phone
//! unknown. A watch that reports compaction, fails or ends makes the cache re-list everything
//! and watch again from the listing's revision, with a backoff of 100 ms doubling to 2 s.
//!
//! Reads take a `std::sync::RwLock` for the time of one hash lookup and an `Arc` clone; the
//! background task takes the write lock once per batch of watch events, never across an
//! `.await`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use directory::model::{
    ClassOfService, Device, Entry, EntryKey, Extension, HuntGroup, PickupGroup, Route, Site, Trunk,
    User,
};
use directory::storage::{self, DIRECTORY_PREFIX};
use store::mirror::{self, Mirror};
use store::{KeyValue, Revision, Store, StoreError, WatchEvent};
use tokio::task::JoinHandle;

/// Why the cache could not start.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The initial listing of the directory failed (store unreachable): without a first state
    /// there is nothing to answer from, so the caller decides whether to retry or exit.
    #[error("initial load of the directory failed: {0}")]
    InitialLoad(#[source] StoreError),
}

/// Every entry, indexed the ways the other services look them up.
#[derive(Debug, Default)]
struct Indexes {
    sites: HashMap<String, Arc<Site>>,
    users: HashMap<String, Arc<User>>,
    extensions: HashMap<String, Arc<Extension>>,
    devices: HashMap<String, Arc<Device>>,
    devices_by_sip_username: HashMap<String, Arc<Device>>,
    hunt_groups: HashMap<String, Arc<HuntGroup>>,
    pickup_groups: HashMap<String, Arc<PickupGroup>>,
    classes_of_service: HashMap<String, Arc<ClassOfService>>,
    trunks: HashMap<String, Arc<Trunk>>,
    routes: HashMap<String, Arc<Route>>,
    /// Device id → numbers of the extensions that ring it (a caller's identities).
    extensions_by_device: HashMap<String, std::collections::BTreeSet<String>>,
}

impl Indexes {
    fn insert(&mut self, entry: Entry) {
        let id = entry.key().id().to_owned();
        match entry {
            Entry::Site(e) => drop(self.sites.insert(id, Arc::new(e))),
            Entry::User(e) => drop(self.users.insert(id, Arc::new(e))),
            Entry::Extension(e) => {
                let extension = Arc::new(e);
                for device in &extension.device_ids {
                    self.extensions_by_device
                        .entry(device.as_str().to_owned())
                        .or_default()
                        .insert(id.clone());
                }
                if let Some(old) = self.extensions.insert(id, extension.clone()) {
                    self.unindex_extension(&old, Some(&extension));
                }
            }
            Entry::Device(e) => {
                let device = Arc::new(e);
                if let Some(old) = self.devices.insert(id, device.clone()) {
                    self.unindex_device(&old);
                }
                self.devices_by_sip_username
                    .insert(device.sip_username.as_str().to_owned(), device);
            }
            Entry::HuntGroup(e) => drop(self.hunt_groups.insert(id, Arc::new(e))),
            Entry::PickupGroup(e) => drop(self.pickup_groups.insert(id, Arc::new(e))),
            Entry::ClassOfService(e) => drop(self.classes_of_service.insert(id, Arc::new(e))),
            Entry::Trunk(e) => drop(self.trunks.insert(id, Arc::new(e))),
            Entry::Route(e) => drop(self.routes.insert(id, Arc::new(e))),
        }
    }

    /// Removes a device's SIP username from the index if it still points at this device.
    fn unindex_device(&mut self, device: &Arc<Device>) {
        let username = device.sip_username.as_str();
        if self
            .devices_by_sip_username
            .get(username)
            .is_some_and(|indexed| indexed.id == device.id)
        {
            self.devices_by_sip_username.remove(username);
        }
    }

    /// Drops the device links of an extension that was replaced (by `new`) or removed.
    fn unindex_extension(&mut self, old: &Arc<Extension>, new: Option<&Arc<Extension>>) {
        let number = old.number.as_str();
        for device in &old.device_ids {
            if new.is_some_and(|n| n.device_ids.contains(device)) {
                continue;
            }
            if let Some(numbers) = self.extensions_by_device.get_mut(device.as_str()) {
                numbers.remove(number);
                if numbers.is_empty() {
                    self.extensions_by_device.remove(device.as_str());
                }
            }
        }
    }

    fn remove(&mut self, key: &EntryKey) {
        let id = key.id();
        match key {
            EntryKey::Site(_) => drop(self.sites.remove(id)),
            EntryKey::User(_) => drop(self.users.remove(id)),
            EntryKey::Extension(_) => {
                if let Some(old) = self.extensions.remove(id) {
                    self.unindex_extension(&old, None);
                }
            }
            EntryKey::Device(_) => {
                if let Some(old) = self.devices.remove(id) {
                    self.unindex_device(&old);
                }
            }
            EntryKey::HuntGroup(_) => drop(self.hunt_groups.remove(id)),
            EntryKey::PickupGroup(_) => drop(self.pickup_groups.remove(id)),
            EntryKey::ClassOfService(_) => drop(self.classes_of_service.remove(id)),
            EntryKey::Trunk(_) => drop(self.trunks.remove(id)),
            EntryKey::Route(_) => drop(self.routes.remove(id)),
        }
    }

    fn get(&self, key: &EntryKey) -> Option<Entry> {
        let id = key.id();
        Some(match key {
            EntryKey::Site(_) => Entry::Site(cloned(self.sites.get(id)?)),
            EntryKey::User(_) => Entry::User(cloned(self.users.get(id)?)),
            EntryKey::Extension(_) => Entry::Extension(cloned(self.extensions.get(id)?)),
            EntryKey::Device(_) => Entry::Device(cloned(self.devices.get(id)?)),
            EntryKey::HuntGroup(_) => Entry::HuntGroup(cloned(self.hunt_groups.get(id)?)),
            EntryKey::PickupGroup(_) => Entry::PickupGroup(cloned(self.pickup_groups.get(id)?)),
            EntryKey::ClassOfService(_) => {
                Entry::ClassOfService(cloned(self.classes_of_service.get(id)?))
            }
            EntryKey::Trunk(_) => Entry::Trunk(cloned(self.trunks.get(id)?)),
            EntryKey::Route(_) => Entry::Route(cloned(self.routes.get(id)?)),
        })
    }

    fn len(&self) -> usize {
        self.sites.len()
            + self.users.len()
            + self.extensions.len()
            + self.devices.len()
            + self.hunt_groups.len()
            + self.pickup_groups.len()
            + self.classes_of_service.len()
            + self.trunks.len()
            + self.routes.len()
    }
}

fn cloned<T: Clone>(value: &Arc<T>) -> T {
    T::clone(value)
}

/// State shared between the handle(s) and the background task.
#[derive(Debug)]
struct Shared {
    indexes: RwLock<Indexes>,
    revision: tokio::sync::watch::Sender<Revision>,
    skipped: AtomicU64,
    reloads: AtomicU64,
}

impl Shared {
    fn read(&self) -> RwLockReadGuard<'_, Indexes> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // breaks reads (each insert/remove is whole), so a poisoned lock is still served.
        self.indexes.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Indexes> {
        self.indexes.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Decodes one stored entry; a key or value that does not decode is logged, counted and
    /// left out (the previous value of that key, if any, stays).
    fn decode(&self, kv: &KeyValue) -> Option<Entry> {
        match storage::decode(&kv.key, &kv.value) {
            Ok(entry) if storage::entry_key(&entry.key()) == kv.key => Some(entry),
            Ok(entry) => {
                self.skip(&format!(
                    "entry {} stored under the wrong key {}",
                    entry.key(),
                    kv.key
                ));
                None
            }
            Err(e) => {
                self.skip(&e.to_string());
                None
            }
        }
    }

    fn skip(&self, reason: &str) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%reason, "directory cache skipped a stored value");
    }

    /// Replaces the whole state with a listing.
    fn replace(&self, listing: &[KeyValue], revision: Revision) {
        let mut fresh = Indexes::default();
        for kv in listing {
            if let Some(entry) = self.decode(kv) {
                fresh.insert(entry);
            }
        }
        let entries = fresh.len();
        *self.write() = fresh;
        self.publish(revision);
        tracing::debug!(entries, revision, "directory cache loaded");
    }

    fn publish(&self, revision: Revision) {
        self.revision.send_if_modified(|current| {
            if revision > *current {
                *current = revision;
                true
            } else {
                false
            }
        });
    }

    fn revision(&self) -> Revision {
        *self.revision.borrow()
    }
}

/// The follower task (`store::mirror::follow`) keeps the indexes in step with the store.
impl Mirror for Shared {
    fn reload(&self, listing: &[KeyValue], revision: Revision) {
        // Counted before the new revision is published, so that a caller who saw the
        // revision also sees the reload.
        self.reloads.fetch_add(1, Ordering::Relaxed);
        self.replace(listing, revision);
    }

    /// Applies watch events in order under one write lock.
    fn apply(&self, events: Vec<WatchEvent>) {
        let mut last = None;
        {
            let mut indexes = self.write();
            for event in events {
                match event {
                    WatchEvent::Put(kv) => {
                        last = Some(kv.mod_revision);
                        if let Some(entry) = self.decode(&kv) {
                            indexes.insert(entry);
                        }
                    }
                    WatchEvent::Delete { key, revision } => {
                        last = Some(revision);
                        match storage::parse_entry_key(&key) {
                            Ok(entry_key) => indexes.remove(&entry_key),
                            Err(e) => self.skip(&e.to_string()),
                        }
                    }
                }
            }
        }
        if let Some(revision) = last {
            self.publish(revision);
        }
    }

    /// The published revision: the follower resumes after it.
    fn reached(&self) -> Option<Revision> {
        Some(self.revision())
    }
}

/// Aborts the follower task when the last handle goes.
#[derive(Debug)]
struct TaskGuard(JoinHandle<()>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The directory, in memory, kept up to date from the store. Cheap to clone; the background
/// task stops when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct DirectoryCache {
    shared: Arc<Shared>,
    _task: Arc<TaskGuard>,
}

impl DirectoryCache {
    /// Loads the directory from `store` and starts following its changes (on the current
    /// tokio runtime). Fails only if the first listing fails; afterwards the cache serves its
    /// last good state through any outage.
    pub async fn start(store: Arc<dyn Store>) -> Result<DirectoryCache, CacheError> {
        let (listing, revision) = store
            .list_prefix(DIRECTORY_PREFIX)
            .await
            .map_err(CacheError::InitialLoad)?;
        let (sender, _) = tokio::sync::watch::channel(0);
        let shared = Arc::new(Shared {
            indexes: RwLock::new(Indexes::default()),
            revision: sender,
            skipped: AtomicU64::new(0),
            reloads: AtomicU64::new(0),
        });
        shared.replace(&listing, revision);
        let task = tokio::spawn(mirror::follow(
            store,
            DIRECTORY_PREFIX.to_owned(),
            shared.clone(),
            revision,
            "directory cache",
        ));
        Ok(DirectoryCache {
            shared,
            _task: Arc::new(TaskGuard(task)),
        })
    }

    /// The extensions that ring this device, in number order (the identities a caller on
    /// this device may present).
    pub fn extensions_of_device(&self, device_id: &str) -> Vec<Arc<Extension>> {
        let indexes = self.shared.read();
        indexes
            .extensions_by_device
            .get(device_id)
            .into_iter()
            .flatten()
            .filter_map(|number| indexes.extensions.get(number).cloned())
            .collect()
    }

    /// The device whose digest username this is (with its HA1s).
    pub fn device_by_sip_username(&self, username: &str) -> Option<Arc<Device>> {
        self.shared
            .read()
            .devices_by_sip_username
            .get(username)
            .cloned()
    }

    /// The extension with this number.
    pub fn extension(&self, number: &str) -> Option<Arc<Extension>> {
        self.shared.read().extensions.get(number).cloned()
    }

    /// The device with this id.
    pub fn device(&self, id: &str) -> Option<Arc<Device>> {
        self.shared.read().devices.get(id).cloned()
    }

    /// The user with this id.
    pub fn user(&self, id: &str) -> Option<Arc<User>> {
        self.shared.read().users.get(id).cloned()
    }

    /// The site with this id.
    pub fn site(&self, id: &str) -> Option<Arc<Site>> {
        self.shared.read().sites.get(id).cloned()
    }

    /// The hunt group with this number.
    pub fn hunt_group(&self, number: &str) -> Option<Arc<HuntGroup>> {
        self.shared.read().hunt_groups.get(number).cloned()
    }

    /// The pickup group with this number.
    pub fn pickup_group(&self, number: &str) -> Option<Arc<PickupGroup>> {
        self.shared.read().pickup_groups.get(number).cloned()
    }

    /// The class of service with this name.
    pub fn class_of_service(&self, name: &str) -> Option<Arc<ClassOfService>> {
        self.shared.read().classes_of_service.get(name).cloned()
    }

    /// The trunk with this name.
    pub fn trunk(&self, name: &str) -> Option<Arc<Trunk>> {
        self.shared.read().trunks.get(name).cloned()
    }

    /// The route with this id.
    pub fn route(&self, id: &str) -> Option<Arc<Route>> {
        self.shared.read().routes.get(id).cloned()
    }

    /// Every route (for the dial plan to order by priority).
    pub fn routes(&self) -> Vec<Arc<Route>> {
        self.shared.read().routes.values().cloned().collect()
    }

    /// Any entry by key (a copy).
    pub fn entry(&self, key: &EntryKey) -> Option<Entry> {
        self.shared.read().get(key)
    }

    /// How many entries the cache holds.
    pub fn len(&self) -> usize {
        self.shared.read().len()
    }

    /// Whether the cache holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The store revision the cache reflects: every change up to it has been applied.
    pub fn revision(&self) -> Revision {
        self.shared.revision()
    }

    /// Follows the revision: `wait_for(|r| *r >= target)` waits until a change is applied.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<Revision> {
        self.shared.revision.subscribe()
    }

    /// Stored values left out because they did not decode into a valid entry.
    pub fn skipped_values(&self) -> u64 {
        self.shared.skipped.load(Ordering::Relaxed)
    }

    /// Full reloads after the initial load (compaction, a watch that ended or failed).
    pub fn reloads(&self) -> u64 {
        self.shared.reloads.load(Ordering::Relaxed)
    }
}
