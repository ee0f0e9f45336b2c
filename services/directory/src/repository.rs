//! The directory's state in the store: an in-memory [`Snapshot`] (the whole validated
//! [`Directory`], the store revision it reflects and every key's mod revision) loaded with one
//! `list_prefix`, kept current by a store watch, and the write path.
//!
//! A write is validated against the snapshot (`Directory::with_changes`: every cross-entry
//! check), then committed in ONE store transaction fenced on the mod revision of every touched
//! key and of the directory's fence key (which every write bumps, so two replicas validating
//! against different snapshots cannot both commit: no lost update, no write skew). On a fence
//! failure the snapshot is reloaded and the write re-validated, a bounded number of times.
//! After the commit the `DirectoryChange` events are published on the bus (at most once, as
//! every core bus event: caches that must not miss a change watch the store).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bus::trace::TraceContext;
use bus::{Bus, BusHeaders};
use prost::Message;
use store::{Compare, Op, Store, StoreError, WatchEvent};
use tokio::sync::{Mutex, watch};
use tracing::{debug, info, warn};

use crate::error::ServiceError;
use crate::model::{ChangeSet, Directory, Entry, EntryKey};
use crate::storage::{self, DIRECTORY_PREFIX};

/// The key every directory write puts, so that every write fences every other (see module doc).
/// Outside [`DIRECTORY_PREFIX`] so that caches watching the entries never see it.
pub const FENCE_KEY: &str = "calanque/v1/directory-fence";

/// What the repository lists and watches: the entries and the fence key.
const WATCH_PREFIX: &str = "calanque/v1/directory";

/// Tunables of the write path.
#[derive(Debug, Clone)]
pub struct RepositoryOptions {
    /// Largest change set written (puts + deletes); past it a write is refused as too large.
    /// etcd must run with `--max-txn-ops` above it (one transaction holds every op).
    pub max_changes: usize,
    /// Attempts of a write whose fence failed (a concurrent write) before answering a conflict.
    pub write_attempts: u32,
    /// Bound on a readiness probe of the store.
    pub probe_timeout: Duration,
}

impl Default for RepositoryOptions {
    fn default() -> RepositoryOptions {
        RepositoryOptions {
            max_changes: 50_000,
            write_attempts: 3,
            probe_timeout: Duration::from_secs(1),
        }
    }
}

/// The directory as of one store revision.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Every entry, valid as a whole.
    pub directory: Directory,
    /// The store revision of the last directory change seen.
    pub revision: i64,
    /// Mod revision of each entry's store key.
    mod_revisions: HashMap<String, i64>,
    /// Mod revision of [`FENCE_KEY`], when it exists.
    fence_revision: Option<i64>,
}

impl Snapshot {
    /// The compares that fence a transaction touching `keys` on this snapshot.
    fn fence(&self, keys: impl Iterator<Item = String>) -> Vec<Compare> {
        let mut compares: Vec<Compare> = keys
            .map(|key| match self.mod_revisions.get(&key) {
                Some(revision) => Compare::ModRevision(key, *revision),
                None => Compare::Absent(key),
            })
            .collect();
        compares.push(match self.fence_revision {
            Some(revision) => Compare::ModRevision(FENCE_KEY.to_owned(), revision),
            None => Compare::Absent(FENCE_KEY.to_owned()),
        });
        compares
    }
}

/// The outcome of a committed (or empty) write.
#[derive(Debug, Clone)]
pub struct Committed {
    /// The changes written (empty when there was nothing to do).
    pub changes: ChangeSet,
    /// The store revision of the commit (the snapshot's for an empty change set).
    pub revision: i64,
}

/// The directory's state and write path. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Repository {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    options: RepositoryOptions,
    state: watch::Sender<Option<Arc<Snapshot>>>,
    /// One write at a time per replica (replicas are fenced against each other by the store).
    writes: Mutex<()>,
}

impl Repository {
    /// A repository with no snapshot yet; [`Repository::follow`] loads it and keeps it current.
    pub fn new(store: Arc<dyn Store>, bus: Arc<dyn Bus>, options: RepositoryOptions) -> Self {
        let (state, _) = watch::channel(None);
        Repository {
            inner: Arc::new(Inner {
                store,
                bus,
                options,
                state,
                writes: Mutex::new(()),
            }),
        }
    }

    /// The options in force.
    pub fn options(&self) -> &RepositoryOptions {
        &self.inner.options
    }

    /// The current snapshot, if loaded.
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.inner.state.borrow().clone()
    }

    /// The current snapshot, or `Unavailable` while it is not loaded.
    pub fn ready_snapshot(&self) -> Result<Arc<Snapshot>, ServiceError> {
        self.snapshot()
            .ok_or_else(|| ServiceError::Unavailable("the directory is not loaded yet".to_owned()))
    }

    /// Whether the snapshot is loaded and the store answers (within the probe timeout).
    pub async fn ready(&self) -> Result<(), ServiceError> {
        self.ready_snapshot()?;
        match tokio::time::timeout(
            self.inner.options.probe_timeout,
            self.inner.store.get(FENCE_KEY),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(error.into()),
            Err(_) => Err(ServiceError::Unavailable(
                "the store did not answer the readiness probe in time".to_owned(),
            )),
        }
    }

    /// Waits until a snapshot at `revision` or later is installed, at most `timeout`.
    pub async fn wait_for_revision(&self, revision: i64, timeout: Duration) -> bool {
        let mut receiver = self.inner.state.subscribe();
        tokio::time::timeout(
            timeout,
            receiver.wait_for(|s| s.as_ref().is_some_and(|s| s.revision >= revision)),
        )
        .await
        .is_ok_and(|r| r.is_ok())
    }

    /// Reads the whole directory from the store.
    async fn load(&self) -> Result<Snapshot, ServiceError> {
        let (kvs, revision) = self.inner.store.list_prefix(WATCH_PREFIX).await?;
        let mut entries = Vec::with_capacity(kvs.len());
        let mut mod_revisions = HashMap::with_capacity(kvs.len());
        let mut fence_revision = None;
        for kv in kvs {
            if kv.key == FENCE_KEY {
                fence_revision = Some(kv.mod_revision);
            } else if kv.key.starts_with(DIRECTORY_PREFIX) {
                match storage::decode(&kv.key, &kv.value) {
                    Ok(entry) => {
                        mod_revisions.insert(kv.key, kv.mod_revision);
                        entries.push(entry);
                    }
                    Err(error) => warn!(%error, "skipping an unreadable directory entry"),
                }
            }
        }
        let directory = tokio::task::spawn_blocking(move || Directory::from_entries(entries))
            .await
            .map_err(|e| ServiceError::Unavailable(format!("loading task failed: {e}")))?
            .map_err(|errors| {
                ServiceError::Unavailable(format!("the stored directory is not valid: {errors}"))
            })?;
        Ok(Snapshot {
            directory,
            revision,
            mod_revisions,
            fence_revision,
        })
    }

    /// Installs a complete snapshot (a load) unless a newer one is already installed; it
    /// replaces one of the same revision, which may hold only part of that revision's changes.
    fn install(&self, snapshot: Snapshot) -> bool {
        let revision = snapshot.revision;
        self.install_if(snapshot, |current| {
            current.is_none_or(|c| c.revision <= revision)
        })
    }

    /// Installs `snapshot` if `accept` says so of the current one (checked atomically).
    fn install_if(
        &self,
        snapshot: Snapshot,
        accept: impl FnOnce(Option<&Arc<Snapshot>>) -> bool,
    ) -> bool {
        self.inner.state.send_if_modified(|current| {
            if !accept(current.as_ref()) {
                return false;
            }
            *current = Some(Arc::new(snapshot));
            true
        })
    }

    /// Loads the snapshot and follows the store's changes, forever: reloads after a compaction,
    /// a broken watch or a change it cannot apply, retrying with a bounded backoff while the
    /// store is unavailable. Run it as a task and abort it to stop.
    pub async fn follow(self) {
        const BACKOFF_MIN: Duration = Duration::from_millis(100);
        const BACKOFF_MAX: Duration = Duration::from_secs(2);
        let mut backoff = BACKOFF_MIN;
        loop {
            let snapshot = match self.load().await {
                Ok(snapshot) => snapshot,
                Err(error) => {
                    warn!(%error, "cannot load the directory; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            };
            let from = snapshot.revision + 1;
            info!(
                revision = snapshot.revision,
                entries = snapshot.directory.len(),
                "directory loaded"
            );
            self.install(snapshot);
            let mut watch = match self.inner.store.watch(WATCH_PREFIX, from).await {
                Ok(watch) => watch,
                Err(error) => {
                    warn!(%error, "cannot watch the directory; reloading");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            };
            backoff = BACKOFF_MIN;
            self.follow_watch(&mut watch).await;
            tokio::time::sleep(BACKOFF_MIN).await;
        }
    }

    /// Applies the watch's events in batches until it breaks (then the caller reloads).
    async fn follow_watch(&self, watch: &mut store::Watch) {
        // Events of one transaction arrive together; a short quiet gap ends a batch.
        const QUIET: Duration = Duration::from_millis(2);
        const MAX_BATCH: usize = 200_000;
        loop {
            let first = match watch.next().await {
                Some(Ok(event)) => event,
                Some(Err(StoreError::Compacted { .. })) => {
                    info!("directory watch compacted; reloading");
                    return;
                }
                Some(Err(error)) => {
                    warn!(%error, "directory watch failed; reloading");
                    return;
                }
                None => {
                    warn!("directory watch ended; reloading");
                    return;
                }
            };
            let mut batch = vec![first];
            let mut broken = false;
            while batch.len() < MAX_BATCH {
                match tokio::time::timeout(QUIET, watch.next()).await {
                    Ok(Some(Ok(event))) => batch.push(event),
                    Ok(Some(Err(error))) => {
                        warn!(%error, "directory watch failed; reloading");
                        broken = true;
                        break;
                    }
                    Ok(None) => {
                        broken = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            if let Err(error) = self.apply_events(&batch) {
                info!(%error, "cannot apply watched changes incrementally; reloading");
                return;
            }
            if broken {
                return;
            }
        }
    }

    /// Applies watched events to the snapshot. Events of the snapshot's own revision are
    /// applied again (idempotently): the events of one large transaction may arrive in several
    /// batches, and a snapshot may hold only the first part. The snapshot is replaced only if it
    /// is still the one the change was computed from (else the change is computed again).
    fn apply_events(&self, events: &[WatchEvent]) -> Result<(), ServiceError> {
        const ATTEMPTS: usize = 8;
        for _ in 0..ATTEMPTS {
            let base = self.ready_snapshot()?;
            let Some(next) = next_snapshot(&base, events)? else {
                return Ok(());
            };
            let installed = self.install_if(next, |current| {
                current.is_some_and(|c| Arc::ptr_eq(c, &base))
            });
            if installed {
                return Ok(());
            }
        }
        Err(ServiceError::Conflict(
            "the snapshot kept changing while applying watched events".to_owned(),
        ))
    }

    /// Validates and commits the change set `build` computes from the current snapshot (see the
    /// module doc); re-runs `build` on a fresh snapshot after a fence failure. An empty change
    /// set commits nothing.
    pub async fn commit<F>(&self, mut build: F) -> Result<Committed, ServiceError>
    where
        F: FnMut(&Snapshot) -> Result<ChangeSet, ServiceError>,
    {
        let _one_writer = self.inner.writes.lock().await;
        let attempts = self.inner.options.write_attempts.max(1);
        for attempt in 1..=attempts {
            let snapshot = self.ready_snapshot()?;
            let changes = build(&snapshot)?;
            if changes.is_empty() {
                return Ok(Committed {
                    changes,
                    revision: snapshot.revision,
                });
            }
            let limit = self.inner.options.max_changes;
            if changes.len() > limit {
                return Err(ServiceError::TooLarge(format!(
                    "the change set has {} changes, more than the limit of {limit} for one \
                     transaction; split it (e.g. one file per kind) or raise the limit",
                    changes.len()
                )));
            }
            let next = {
                let snapshot = snapshot.clone();
                let changes = changes.clone();
                tokio::task::spawn_blocking(move || snapshot.directory.with_changes(&changes))
                    .await
                    .map_err(|e| ServiceError::Unavailable(format!("validation task: {e}")))?
            };
            let next = match next {
                Ok(next) => next,
                Err(errors) if changes.puts.is_empty() => {
                    return Err(ServiceError::StillReferenced {
                        message: "other entries still refer to what would be deleted".to_owned(),
                        details: errors.0.iter().map(ToString::to_string).collect(),
                    });
                }
                Err(errors) => return Err(ServiceError::invalid(&errors)),
            };
            let touched = changes
                .puts
                .iter()
                .map(|e| storage::entry_key(&e.key()))
                .chain(changes.deletes.iter().map(storage::entry_key));
            let compares = snapshot.fence(touched);
            let mut ops: Vec<Op> = changes
                .puts
                .iter()
                .map(|entry| Op::Put {
                    key: storage::entry_key(&entry.key()),
                    value: storage::encode(entry),
                    lease: None,
                })
                .chain(changes.deletes.iter().map(|key| Op::Delete {
                    key: storage::entry_key(key),
                }))
                .collect();
            ops.push(Op::Put {
                key: FENCE_KEY.to_owned(),
                value: bytes::Bytes::new(),
                lease: None,
            });
            let outcome = self.inner.store.txn(compares, ops).await?;
            if outcome.succeeded {
                let revision = outcome.revision;
                // The fence held: no other directory write happened since the snapshot, so
                // `next` is exactly the directory at `revision` (read-your-writes at once).
                let mut mod_revisions = snapshot.mod_revisions.clone();
                for entry in &changes.puts {
                    mod_revisions.insert(storage::entry_key(&entry.key()), revision);
                }
                for key in &changes.deletes {
                    mod_revisions.remove(&storage::entry_key(key));
                }
                // It replaces a snapshot of the same revision: the watcher may have installed
                // a first part of this transaction's events.
                self.install_if(
                    Snapshot {
                        directory: next,
                        revision,
                        mod_revisions,
                        fence_revision: Some(revision),
                    },
                    |current| current.is_none_or(|c| c.revision <= revision),
                );
                self.publish(&changes, revision).await;
                return Ok(Committed { changes, revision });
            }
            info!(
                attempt,
                "directory write fenced out by a concurrent write; reloading"
            );
            let fresh = self.load().await?;
            self.install(fresh);
        }
        Err(ServiceError::Conflict(format!(
            "the directory kept changing concurrently ({attempts} attempts); retry"
        )))
    }

    /// Publishes the change events of a commit (at most once; failures are logged).
    async fn publish(&self, changes: &ChangeSet, revision: i64) {
        let revision = u64::try_from(revision).unwrap_or_default();
        let trace = TraceContext::new_root(false);
        let mut failures = 0usize;
        for event in changes.events(revision) {
            let Some(subject) = proto::subjects::directory_changed(event.kind()) else {
                continue;
            };
            let mut headers = BusHeaders::new();
            headers.insert(
                proto::subjects::TYPE_HEADER,
                proto::subjects::types::DIRECTORY_CHANGE,
            );
            trace.child().inject(&mut headers);
            let payload = bytes::Bytes::from(event.encode_to_vec());
            if let Err(error) = self.inner.bus.publish(&subject, headers, payload).await {
                failures += 1;
                if failures == 1 {
                    warn!(%error, revision, "cannot publish a directory change event");
                }
            }
        }
        if failures > 0 {
            warn!(failures, revision, "directory change events not published");
        }
    }

    /// Creates `entry`; `AlreadyExists` when its key is taken.
    pub async fn create(&self, entry: Entry) -> Result<Committed, ServiceError> {
        self.commit(|snapshot| {
            let key = entry.key();
            if snapshot.directory.contains(&key) {
                return Err(ServiceError::AlreadyExists(key.to_string()));
            }
            Ok(ChangeSet {
                puts: vec![entry.clone()],
                deletes: Vec::new(),
            })
        })
        .await
    }

    /// Creates or replaces `entry`; returns whether it was created. With `must_exist`,
    /// `NotFound` when absent; with a non-zero `expected_revision`, `Conflict` unless the
    /// directory is still at that revision.
    pub async fn put(
        &self,
        entry: Entry,
        must_exist: bool,
        expected_revision: u64,
    ) -> Result<(Committed, bool), ServiceError> {
        let mut created = false;
        let committed = self
            .commit(|snapshot| {
                check_expected(snapshot, expected_revision)?;
                let key = entry.key();
                let existing = snapshot.directory.get(&key);
                if must_exist && existing.is_none() {
                    return Err(ServiceError::NotFound(key.to_string()));
                }
                created = existing.is_none();
                if existing.as_ref() == Some(&entry) {
                    return Ok(ChangeSet::default());
                }
                Ok(ChangeSet {
                    puts: vec![entry.clone()],
                    deletes: Vec::new(),
                })
            })
            .await?;
        Ok((committed, created))
    }

    /// Deletes the entry `key`; `NotFound` when absent, `StillReferenced` when others use it.
    pub async fn delete(
        &self,
        key: EntryKey,
        expected_revision: u64,
    ) -> Result<Committed, ServiceError> {
        self.commit(|snapshot| {
            check_expected(snapshot, expected_revision)?;
            if !snapshot.directory.contains(&key) {
                return Err(ServiceError::NotFound(key.to_string()));
            }
            Ok(ChangeSet {
                puts: Vec::new(),
                deletes: vec![key.clone()],
            })
        })
        .await
    }
}

/// The snapshot `events` make of `base`; `None` when they bring nothing newer.
fn next_snapshot(base: &Snapshot, events: &[WatchEvent]) -> Result<Option<Snapshot>, ServiceError> {
    let mut latest: BTreeMap<&str, Option<Entry>> = BTreeMap::new();
    let mut mod_revisions = base.mod_revisions.clone();
    let mut fence_revision = base.fence_revision;
    let mut revision = base.revision;
    let mut relevant = false;
    for event in events {
        let (key, event_revision, value) = match event {
            WatchEvent::Put(kv) => (kv.key.as_str(), kv.mod_revision, Some(&kv.value)),
            WatchEvent::Delete { key, revision } => (key.as_str(), *revision, None),
        };
        if event_revision < base.revision {
            continue;
        }
        relevant = true;
        revision = revision.max(event_revision);
        if key == FENCE_KEY {
            fence_revision = value.is_some().then_some(event_revision);
            continue;
        }
        if !key.starts_with(DIRECTORY_PREFIX) {
            continue;
        }
        let entry = match value {
            Some(value) => {
                mod_revisions.insert(key.to_owned(), event_revision);
                Some(
                    storage::decode(key, value)
                        .map_err(|e| ServiceError::Unavailable(e.to_string()))?,
                )
            }
            None => {
                mod_revisions.remove(key);
                None
            }
        };
        latest.insert(key, entry);
    }
    if !relevant {
        return Ok(None);
    }
    let mut changes = ChangeSet::default();
    for (key, entry) in latest {
        match entry {
            Some(entry) => {
                if base.directory.get(&entry.key()).as_ref() != Some(&entry) {
                    changes.puts.push(entry);
                }
            }
            None => {
                let key = storage::parse_entry_key(key)
                    .map_err(|e| ServiceError::Unavailable(e.to_string()))?;
                if base.directory.contains(&key) {
                    changes.deletes.push(key);
                }
            }
        }
    }
    let directory = if changes.is_empty() {
        base.directory.clone()
    } else {
        base.directory
            .with_changes(&changes)
            .map_err(|e| ServiceError::invalid(&e))?
    };
    debug!(revision, changes = changes.len(), "applied watched changes");
    Ok(Some(Snapshot {
        directory,
        revision,
        mod_revisions,
        fence_revision,
    }))
}

fn check_expected(snapshot: &Snapshot, expected_revision: u64) -> Result<(), ServiceError> {
    if expected_revision != 0 && i64::try_from(expected_revision).ok() != Some(snapshot.revision) {
        return Err(ServiceError::Conflict(format!(
            "the directory is at revision {}, not {expected_revision}",
            snapshot.revision
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::small_city;
    use store::KeyValue;

    fn put(entry: &Entry, revision: i64) -> WatchEvent {
        WatchEvent::Put(KeyValue {
            key: storage::entry_key(&entry.key()),
            value: storage::encode(entry),
            create_revision: revision,
            mod_revision: revision,
            version: 1,
            lease: None,
        })
    }

    fn empty(revision: i64) -> Snapshot {
        Snapshot {
            directory: Directory::new(),
            revision,
            mod_revisions: HashMap::new(),
            fence_revision: None,
        }
    }

    #[test]
    fn a_transaction_split_over_two_batches_converges_on_the_whole_revision() {
        let entries = small_city();
        let events: Vec<WatchEvent> = entries.iter().map(|e| put(e, 7)).collect();
        let whole = next_snapshot(&empty(6), &events)
            .expect("valid")
            .expect("newer");
        assert_eq!(whole.directory.len(), entries.len());
        // The first batch brings what others refer to, the second the rest of revision 7.
        let referenced = |e: &Entry| {
            matches!(
                e.kind(),
                crate::model::Kind::ClassOfService
                    | crate::model::Kind::Trunk
                    | crate::model::Kind::Site
            )
        };
        let (first, rest): (Vec<&Entry>, Vec<&Entry>) = entries.iter().partition(|e| referenced(e));
        assert!(!first.is_empty() && !rest.is_empty());
        let first: Vec<WatchEvent> = first.into_iter().map(|e| put(e, 7)).collect();
        let rest: Vec<WatchEvent> = rest.into_iter().map(|e| put(e, 7)).collect();
        let partial = next_snapshot(&empty(6), &first)
            .expect("valid")
            .expect("newer");
        assert_eq!(partial.revision, 7);
        assert!(partial.directory.len() < entries.len());
        let completed = next_snapshot(&partial, &rest)
            .expect("valid")
            .expect("same revision applied again");
        assert_eq!(completed.directory, whole.directory);
        // A batch of only older revisions changes nothing.
        assert!(
            next_snapshot(&whole, &[put(&entries[0], 3)])
                .expect("ok")
                .is_none()
        );
    }

    #[test]
    fn fences_name_every_touched_key_and_the_fence_key() {
        let mut snapshot = empty(9);
        snapshot.mod_revisions.insert("a".to_owned(), 4);
        snapshot.fence_revision = Some(9);
        let compares = snapshot.fence(["a".to_owned(), "b".to_owned()].into_iter());
        assert_eq!(
            compares,
            vec![
                Compare::ModRevision("a".to_owned(), 4),
                Compare::Absent("b".to_owned()),
                Compare::ModRevision(FENCE_KEY.to_owned(), 9),
            ]
        );
        assert!(!FENCE_KEY.starts_with(DIRECTORY_PREFIX));
    }
}
