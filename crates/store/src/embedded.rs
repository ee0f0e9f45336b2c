//! The all-in-one store: one redb file on local disk (ADR 0005), with etcd's semantics.
//!
//! Owns the on-disk layout (keys, meta, leases, the lease→keys index and a bounded event
//! log), the single writer that commits and then fans events out in revision order, the
//! watch tasks that replay from the log and then follow live, and the lease-expiry task.
//!
//! Every redb call is blocking and runs under `spawn_blocking`; no lock is held across an
//! `.await`. Lease deadlines live in memory on tokio's clock: after a restart every lease
//! gets its full TTL again (etcd does the same when a new leader takes over).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use redb::{
    Database, MultimapTableDefinition, ReadableDatabase, ReadableTable, TableDefinition,
    WriteTransaction,
};
use tokio::sync::{Notify, broadcast, mpsc};
use tokio::time::Instant;

use crate::{
    Compare, KeyValue, LeaseId, Op, Revision, Store, StoreError, TxnOutcome, Watch, WatchEvent,
};

/// key → encoded [`KeyRecord`].
const KEYS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("keys");
/// Store-wide counters (see the `META_*` names).
const META: TableDefinition<'_, &str, i64> = TableDefinition::new("meta");
/// lease id → TTL in milliseconds.
const LEASES: TableDefinition<'_, i64, u64> = TableDefinition::new("leases");
/// lease id → the keys attached to it (deleted with it).
const LEASE_KEYS: MultimapTableDefinition<'_, i64, &str> =
    MultimapTableDefinition::new("lease_keys");
/// revision → the encoded events of the transaction that produced it.
const EVENTS: TableDefinition<'_, i64, &[u8]> = TableDefinition::new("events");

const META_REVISION: &str = "revision";
/// Oldest revision still in the event log: watches from before it get `Compacted`.
const META_OLDEST: &str = "oldest_event";
const META_NEXT_LEASE: &str = "next_lease";

/// How many revisions of events are kept for watch replay by default.
pub const DEFAULT_HISTORY: i64 = 10_000;
/// Buffered events per watch before the watch task waits for its reader.
const WATCH_BUFFER: usize = 1024;
/// Committed transactions buffered for live fan-out; a watch that falls further behind
/// catches up from the event log.
const FANOUT_BUFFER: usize = 1024;
/// Revisions read from the event log per blocking call while a watch catches up.
const REPLAY_CHUNK: i64 = 256;
/// Longest sleep of the lease-expiry task when no lease is due sooner.
const EXPIRY_IDLE: Duration = Duration::from_secs(1);
/// Pause before retrying a lease expiry that failed to commit.
const EXPIRY_RETRY: Duration = Duration::from_millis(500);

/// Options for [`EmbeddedStore::open_with`].
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// Revisions of events kept for watch replay (at least 1); older `from_revision`s get
    /// [`StoreError::Compacted`].
    pub history: i64,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            history: DEFAULT_HISTORY,
        }
    }
}

/// The store of the all-in-one mode: a redb database file, fsynced on every commit.
#[derive(Debug)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    db: Database,
    /// Serialises write transactions together with their fan-out, so that live events leave
    /// in revision order. Only ever taken inside `spawn_blocking`.
    writer: Mutex<()>,
    fanout: broadcast::Sender<Arc<Batch>>,
    leases: Arc<LeaseClock>,
    history: i64,
    watches: Arc<AtomicUsize>,
}

/// The events of one committed transaction.
#[derive(Debug)]
struct Batch {
    revision: Revision,
    events: Vec<WatchEvent>,
}

/// In-memory lease deadlines (tokio clock), shared with the expiry task without keeping the
/// database open.
#[derive(Debug, Default)]
struct LeaseClock {
    deadlines: Mutex<HashMap<i64, (Duration, Instant)>>,
    changed: Notify,
}

impl LeaseClock {
    fn lock(&self) -> MutexGuard<'_, HashMap<i64, (Duration, Instant)>> {
        // A panic while holding this lock cannot leave the map half-updated (single
        // insert/remove calls), so a poisoned lock is still consistent.
        self.deadlines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn insert(&self, id: i64, ttl: Duration) {
        self.insert_until(id, ttl, Instant::now() + ttl);
    }

    fn insert_until(&self, id: i64, ttl: Duration, deadline: Instant) {
        self.lock().insert(id, (ttl, deadline));
        self.changed.notify_one();
    }

    fn renew(&self, id: i64) -> bool {
        match self.lock().get_mut(&id) {
            Some((ttl, deadline)) => {
                *deadline = Instant::now() + *ttl;
                true
            }
            None => false,
        }
    }

    fn remove(&self, id: i64) -> Option<Duration> {
        self.lock().remove(&id).map(|(ttl, _)| ttl)
    }

    /// Removes and returns the leases whose deadline has passed.
    fn take_expired(&self, now: Instant) -> Vec<(i64, Duration)> {
        let mut map = self.lock();
        let expired: Vec<(i64, Duration)> = map
            .iter()
            .filter(|(_, (_, deadline))| *deadline <= now)
            .map(|(id, (ttl, _))| (*id, *ttl))
            .collect();
        for (id, _) in &expired {
            map.remove(id);
        }
        expired
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.lock().values().map(|(_, deadline)| *deadline).min()
    }
}

fn db_err(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Embedded(e.into().to_string())
}

fn blocking_err(e: tokio::task::JoinError) -> StoreError {
    StoreError::Embedded(format!("store task failed: {e}"))
}

impl EmbeddedStore {
    /// Opens (or creates) the store file at `path` with the default history.
    pub async fn open(path: impl AsRef<Path>) -> Result<EmbeddedStore, StoreError> {
        EmbeddedStore::open_with(path, EmbeddedOptions::default()).await
    }

    /// Opens (or creates) the store file at `path`. Must run inside a tokio runtime: it starts
    /// the lease-expiry task, which ends when the store is dropped.
    pub async fn open_with(
        path: impl AsRef<Path>,
        options: EmbeddedOptions,
    ) -> Result<EmbeddedStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        let history = options.history.max(1);
        let opened = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || open_database(&path))
                .await
                .map_err(blocking_err)??
        };
        let (db, leases_on_disk) = opened;
        let leases = Arc::new(LeaseClock::default());
        for (id, ttl) in leases_on_disk {
            leases.insert(id, ttl);
        }
        let (fanout, _) = broadcast::channel(FANOUT_BUFFER);
        let inner = Arc::new(Inner {
            path,
            db,
            writer: Mutex::new(()),
            fanout,
            leases: leases.clone(),
            history,
            watches: Arc::new(AtomicUsize::new(0)),
        });
        tokio::spawn(expire_leases(Arc::downgrade(&inner), leases));
        Ok(EmbeddedStore { inner })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Forgets the events before `revision` (at most the current revision): watches from
    /// earlier get [`StoreError::Compacted`]. Old events are also dropped automatically
    /// beyond the configured history.
    pub async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.compact(revision))
            .await
            .map_err(blocking_err)?
    }

    /// Watches currently running (dropped watches stop within one event or at once when
    /// idle); for tests and metrics.
    pub fn active_watches(&self) -> usize {
        self.inner.watches.load(Ordering::SeqCst)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(blocking_err)?
    }
}

type OpenedDatabase = (Database, Vec<(i64, Duration)>);

fn open_database(path: &Path) -> Result<OpenedDatabase, StoreError> {
    let db = Database::create(path).map_err(db_err)?;
    let txn = db.begin_write().map_err(db_err)?;
    let mut leases = Vec::new();
    {
        let mut meta = txn.open_table(META).map_err(db_err)?;
        for (name, initial) in [(META_REVISION, 1), (META_OLDEST, 1), (META_NEXT_LEASE, 1)] {
            if meta.get(name).map_err(db_err)?.is_none() {
                meta.insert(name, initial).map_err(db_err)?;
            }
        }
        txn.open_table(KEYS).map_err(db_err)?;
        txn.open_multimap_table(LEASE_KEYS).map_err(db_err)?;
        txn.open_table(EVENTS).map_err(db_err)?;
        let table = txn.open_table(LEASES).map_err(db_err)?;
        for entry in table.iter().map_err(db_err)? {
            let (id, ttl_ms) = entry.map_err(db_err)?;
            leases.push((id.value(), Duration::from_millis(ttl_ms.value())));
        }
    }
    txn.commit().map_err(db_err)?;
    Ok((db, leases))
}

fn read_meta(table: &impl ReadableTable<&'static str, i64>, name: &str) -> Result<i64, StoreError> {
    Ok(table.get(name).map_err(db_err)?.map_or(1, |v| v.value()))
}

/// What a transaction changed: the events it produced and the revision it committed.
struct Applied {
    succeeded: bool,
    revision: Revision,
    changed: usize,
}

impl Inner {
    fn lock_writer(&self) -> MutexGuard<'_, ()> {
        // The guarded value is `()`: poisoning carries no broken invariant (redb rolls back
        // an uncommitted transaction on drop).
        self.writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let keys = txn.open_table(KEYS).map_err(db_err)?;
        let found = keys.get(key).map_err(db_err)?;
        found
            .map(|v| KeyRecord::decode(v.value()).map(|r| r.into_key_value(key)))
            .transpose()
    }

    fn list_prefix(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision), StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let meta = txn.open_table(META).map_err(db_err)?;
        let revision = read_meta(&meta, META_REVISION)?;
        let keys = txn.open_table(KEYS).map_err(db_err)?;
        let mut out = Vec::new();
        for entry in keys.range(prefix..).map_err(db_err)? {
            let (key, value) = entry.map_err(db_err)?;
            let key = key.value();
            if !key.starts_with(prefix) {
                break;
            }
            out.push(KeyRecord::decode(value.value())?.into_key_value(key));
        }
        Ok((out, revision))
    }

    /// One atomic write: checks `compares`, applies `ops` at the next revision, logs and
    /// fans out the events. A transaction that changes nothing keeps the revision (as etcd).
    fn apply(&self, compares: &[Compare], ops: &[Op]) -> Result<Applied, StoreError> {
        check_disjoint(ops)?;
        let _writer = self.lock_writer();
        let txn = self.db.begin_write().map_err(db_err)?;
        let (current, oldest) = {
            let meta = txn.open_table(META).map_err(db_err)?;
            (
                read_meta(&meta, META_REVISION)?,
                read_meta(&meta, META_OLDEST)?,
            )
        };
        if !compares_hold(&txn, compares)? {
            txn.abort().map_err(db_err)?;
            return Ok(Applied {
                succeeded: false,
                revision: current,
                changed: 0,
            });
        }
        let revision = current + 1;
        let events = apply_ops(&txn, ops, revision)?;
        let changed = events.len();
        if events.is_empty() {
            txn.abort().map_err(db_err)?;
            return Ok(Applied {
                succeeded: true,
                revision: current,
                changed,
            });
        }
        self.commit_events(txn, revision, oldest, events)?;
        Ok(Applied {
            succeeded: true,
            revision,
            changed,
        })
    }

    /// Logs `events` at `revision`, trims the log to the history, commits, then fans out.
    /// Called with the writer lock held.
    fn commit_events(
        &self,
        txn: WriteTransaction,
        revision: Revision,
        oldest: Revision,
        events: Vec<WatchEvent>,
    ) -> Result<(), StoreError> {
        {
            let mut log = txn.open_table(EVENTS).map_err(db_err)?;
            log.insert(revision, encode_events(&events).as_slice())
                .map_err(db_err)?;
            let new_oldest = (revision - self.history + 1).max(oldest);
            for old in oldest..new_oldest {
                log.remove(old).map_err(db_err)?;
            }
            let mut meta = txn.open_table(META).map_err(db_err)?;
            meta.insert(META_REVISION, revision).map_err(db_err)?;
            meta.insert(META_OLDEST, new_oldest).map_err(db_err)?;
        }
        txn.commit().map_err(db_err)?;
        // No receiver means no watch: nothing to deliver.
        let _ = self.fanout.send(Arc::new(Batch { revision, events }));
        Ok(())
    }

    fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let _writer = self.lock_writer();
        let txn = self.db.begin_write().map_err(db_err)?;
        {
            let mut meta = txn.open_table(META).map_err(db_err)?;
            let current = read_meta(&meta, META_REVISION)?;
            let oldest = read_meta(&meta, META_OLDEST)?;
            let new_oldest = revision.min(current).max(oldest);
            let mut log = txn.open_table(EVENTS).map_err(db_err)?;
            let doomed: Vec<i64> = log
                .range(..new_oldest)
                .map_err(db_err)?
                .map(|entry| entry.map(|(r, _)| r.value()).map_err(db_err))
                .collect::<Result<_, _>>()?;
            for old in doomed {
                log.remove(old).map_err(db_err)?;
            }
            meta.insert(META_OLDEST, new_oldest).map_err(db_err)?;
        }
        txn.commit().map_err(db_err)
    }

    fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        let ttl = ttl.max(Duration::from_millis(1));
        let _writer = self.lock_writer();
        let txn = self.db.begin_write().map_err(db_err)?;
        let id = {
            let mut meta = txn.open_table(META).map_err(db_err)?;
            let id = read_meta(&meta, META_NEXT_LEASE)?;
            meta.insert(META_NEXT_LEASE, id + 1).map_err(db_err)?;
            let mut leases = txn.open_table(LEASES).map_err(db_err)?;
            let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
            leases.insert(id, ttl_ms).map_err(db_err)?;
            id
        };
        txn.commit().map_err(db_err)?;
        self.leases.insert(id, ttl);
        Ok(LeaseId(id))
    }

    /// Deletes a lease and its keys in one revision. The caller has already taken the lease
    /// out of the clock (so no keep-alive can succeed meanwhile) and puts it back on failure.
    fn remove_lease(&self, lease: i64) -> Result<bool, StoreError> {
        let _writer = self.lock_writer();
        let txn = self.db.begin_write().map_err(db_err)?;
        let (current, oldest) = {
            let meta = txn.open_table(META).map_err(db_err)?;
            (
                read_meta(&meta, META_REVISION)?,
                read_meta(&meta, META_OLDEST)?,
            )
        };
        let revision = current + 1;
        let mut events = Vec::new();
        {
            let mut leases = txn.open_table(LEASES).map_err(db_err)?;
            if leases.remove(lease).map_err(db_err)?.is_none() {
                return Ok(false);
            }
            let mut index = txn.open_multimap_table(LEASE_KEYS).map_err(db_err)?;
            let attached: Vec<String> = index
                .remove_all(lease)
                .map_err(db_err)?
                .map(|k| k.map(|k| k.value().to_owned()).map_err(db_err))
                .collect::<Result<_, _>>()?;
            let mut keys = txn.open_table(KEYS).map_err(db_err)?;
            for key in attached {
                if keys.remove(key.as_str()).map_err(db_err)?.is_some() {
                    events.push(WatchEvent::Delete { key, revision });
                }
            }
        }
        if events.is_empty() {
            txn.commit().map_err(db_err)?;
        } else {
            self.commit_events(txn, revision, oldest, events)?;
        }
        Ok(true)
    }

    /// Reads the logged events from `from` on (one chunk), with the current and oldest
    /// kept revisions.
    fn read_log(&self, from: Revision) -> Result<LogChunk, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let meta = txn.open_table(META).map_err(db_err)?;
        let current = read_meta(&meta, META_REVISION)?;
        let oldest = read_meta(&meta, META_OLDEST)?;
        if from < oldest {
            return Err(StoreError::Compacted {
                requested: from,
                oldest,
            });
        }
        let log = txn.open_table(EVENTS).map_err(db_err)?;
        let mut batches = Vec::new();
        let until = current.min(from.saturating_add(REPLAY_CHUNK - 1));
        if from <= until {
            for entry in log.range(from..=until).map_err(db_err)? {
                let (revision, bytes) = entry.map_err(db_err)?;
                let revision = revision.value();
                batches.push(Batch {
                    revision,
                    events: decode_events(bytes.value(), revision)?,
                });
            }
        }
        Ok(LogChunk {
            batches,
            read_until: until,
            current,
        })
    }
}

struct LogChunk {
    batches: Vec<Batch>,
    /// Last revision this chunk covers (revisions without events have no log entry).
    read_until: Revision,
    current: Revision,
}

/// etcd refuses a transaction that writes one key twice; so does this store.
fn check_disjoint(ops: &[Op]) -> Result<(), StoreError> {
    let mut puts = BTreeSet::new();
    for op in ops {
        if let Op::Put { key, .. } = op
            && !puts.insert(key.as_str())
        {
            return Err(StoreError::InvalidRequest(format!(
                "key {key:?} written twice in one transaction"
            )));
        }
    }
    for op in ops {
        let clash = match op {
            Op::Put { .. } => None,
            Op::Delete { key } => puts.contains(key.as_str()).then_some(key),
            Op::DeletePrefix { prefix } => puts
                .range(prefix.as_str()..)
                .next()
                .filter(|k| k.starts_with(prefix.as_str()))
                .map(|_| prefix),
        };
        if let Some(key) = clash {
            return Err(StoreError::InvalidRequest(format!(
                "{key:?} both written and deleted in one transaction"
            )));
        }
    }
    Ok(())
}

fn compares_hold(txn: &WriteTransaction, compares: &[Compare]) -> Result<bool, StoreError> {
    let keys = txn.open_table(KEYS).map_err(db_err)?;
    for compare in compares {
        let key = match compare {
            Compare::ModRevision(key, _) | Compare::Absent(key) | Compare::Present(key) => key,
        };
        let record = match keys.get(key.as_str()).map_err(db_err)? {
            Some(v) => Some(KeyRecord::decode(v.value())?),
            None => None,
        };
        let holds = match compare {
            Compare::ModRevision(_, revision) => {
                record.is_some_and(|r| r.mod_revision == *revision)
            }
            Compare::Absent(_) => record.is_none(),
            Compare::Present(_) => record.is_some(),
        };
        if !holds {
            return Ok(false);
        }
    }
    Ok(true)
}

fn apply_ops(
    txn: &WriteTransaction,
    ops: &[Op],
    revision: Revision,
) -> Result<Vec<WatchEvent>, StoreError> {
    let mut keys = txn.open_table(KEYS).map_err(db_err)?;
    let mut index = txn.open_multimap_table(LEASE_KEYS).map_err(db_err)?;
    let leases = txn.open_table(LEASES).map_err(db_err)?;
    let mut events = Vec::with_capacity(ops.len());
    for op in ops {
        match op {
            Op::Put { key, value, lease } => {
                if let Some(lease) = lease
                    && leases.get(lease.0).map_err(db_err)?.is_none()
                {
                    return Err(StoreError::LeaseNotFound(*lease));
                }
                let previous = match keys.get(key.as_str()).map_err(db_err)? {
                    Some(v) => Some(KeyRecord::decode(v.value())?),
                    None => None,
                };
                if let Some(old) = previous.as_ref().and_then(|p| p.lease) {
                    index.remove(old.0, key.as_str()).map_err(db_err)?;
                }
                if let Some(lease) = lease {
                    index.insert(lease.0, key.as_str()).map_err(db_err)?;
                }
                let record = KeyRecord {
                    create_revision: previous.as_ref().map_or(revision, |p| p.create_revision),
                    mod_revision: revision,
                    version: previous.as_ref().map_or(1, |p| p.version + 1),
                    lease: *lease,
                    value: value.clone(),
                };
                keys.insert(key.as_str(), record.encode().as_slice())
                    .map_err(db_err)?;
                events.push(WatchEvent::Put(record.into_key_value(key)));
            }
            Op::Delete { key } => {
                delete_key(&mut keys, &mut index, key, revision, &mut events)?;
            }
            Op::DeletePrefix { prefix } => {
                let doomed: Vec<String> = keys
                    .range(prefix.as_str()..)
                    .map_err(db_err)?
                    .map(|entry| entry.map(|(k, _)| k.value().to_owned()).map_err(db_err))
                    .take_while(|k| k.as_ref().map_or(true, |k| k.starts_with(prefix.as_str())))
                    .collect::<Result<_, _>>()?;
                for key in doomed {
                    delete_key(&mut keys, &mut index, &key, revision, &mut events)?;
                }
            }
        }
    }
    Ok(events)
}

fn delete_key(
    keys: &mut redb::Table<'_, &'static str, &'static [u8]>,
    index: &mut redb::MultimapTable<'_, i64, &'static str>,
    key: &str,
    revision: Revision,
    events: &mut Vec<WatchEvent>,
) -> Result<(), StoreError> {
    let removed = match keys.remove(key).map_err(db_err)? {
        Some(v) => Some(KeyRecord::decode(v.value())?),
        None => None,
    };
    if let Some(record) = removed {
        if let Some(lease) = record.lease {
            index.remove(lease.0, key).map_err(db_err)?;
        }
        events.push(WatchEvent::Delete {
            key: key.to_owned(),
            revision,
        });
    }
    Ok(())
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let key = key.to_owned();
        self.blocking(move |inner| inner.get(&key)).await
    }

    async fn list_prefix(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision), StoreError> {
        let prefix = prefix.to_owned();
        self.blocking(move |inner| inner.list_prefix(&prefix)).await
    }

    async fn put(
        &self,
        key: &str,
        value: Bytes,
        lease: Option<LeaseId>,
    ) -> Result<Revision, StoreError> {
        let ops = vec![Op::Put {
            key: key.to_owned(),
            value,
            lease,
        }];
        let applied = self.blocking(move |inner| inner.apply(&[], &ops)).await?;
        Ok(applied.revision)
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let ops = vec![Op::Delete {
            key: key.to_owned(),
        }];
        let applied = self.blocking(move |inner| inner.apply(&[], &ops)).await?;
        Ok(applied.changed > 0)
    }

    async fn txn(&self, compares: Vec<Compare>, ops: Vec<Op>) -> Result<TxnOutcome, StoreError> {
        let applied = self
            .blocking(move |inner| inner.apply(&compares, &ops))
            .await?;
        Ok(TxnOutcome {
            succeeded: applied.succeeded,
            revision: applied.revision,
        })
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        self.blocking(move |inner| inner.grant_lease(ttl)).await
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
        if self.inner.leases.renew(lease.0) {
            Ok(())
        } else {
            Err(StoreError::LeaseNotFound(lease))
        }
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError> {
        let Some(ttl) = self.inner.leases.remove(lease.0) else {
            return Err(StoreError::LeaseNotFound(lease));
        };
        match self
            .blocking(move |inner| inner.remove_lease(lease.0))
            .await
        {
            Ok(true) => Ok(()),
            Ok(false) => Err(StoreError::LeaseNotFound(lease)),
            Err(e) => {
                self.inner.leases.insert(lease.0, ttl);
                Err(e)
            }
        }
    }

    async fn watch(&self, prefix: &str, from_revision: Revision) -> Result<Watch, StoreError> {
        // Subscribe before reading the current revision: every transaction committed after
        // that read is then both in the log and on the fan-out, and the task drops repeats
        // by revision — no gap, no duplicate.
        let live = self.inner.fanout.subscribe();
        let current = self
            .blocking(|inner| {
                let txn = inner.db.begin_read().map_err(db_err)?;
                let meta = txn.open_table(META).map_err(db_err)?;
                read_meta(&meta, META_REVISION)
            })
            .await?;
        let next = if from_revision <= 0 {
            current + 1
        } else {
            from_revision
        };
        let (sender, receiver) = mpsc::channel(WATCH_BUFFER);
        let task = WatchTask {
            store: Arc::downgrade(&self.inner),
            prefix: prefix.to_owned(),
            next,
            sender,
            _count: WatchCount::new(self.inner.watches.clone()),
        };
        tokio::spawn(task.run(live));
        Ok(Watch::new(receiver))
    }
}

/// Counts a running watch task for [`EmbeddedStore::active_watches`].
#[derive(Debug)]
struct WatchCount(Arc<AtomicUsize>);

impl WatchCount {
    fn new(count: Arc<AtomicUsize>) -> WatchCount {
        count.fetch_add(1, Ordering::SeqCst);
        WatchCount(count)
    }
}

impl Drop for WatchCount {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

struct WatchTask {
    /// Weak, so that a forgotten watch does not keep the database file open.
    store: Weak<Inner>,
    prefix: String,
    /// The first revision not delivered yet.
    next: Revision,
    sender: mpsc::Sender<Result<WatchEvent, StoreError>>,
    _count: WatchCount,
}

/// Why a watch task stops.
enum Stop {
    /// The reader dropped the watch, or the store is gone.
    Quietly,
    /// The error is the watch's last item.
    With(StoreError),
}

impl WatchTask {
    async fn run(mut self, mut live: broadcast::Receiver<Arc<Batch>>) {
        let stop = self.follow(&mut live).await;
        if let Stop::With(error) = stop {
            let _ = self.sender.send(Err(error)).await;
        }
    }

    async fn follow(&mut self, live: &mut broadcast::Receiver<Arc<Batch>>) -> Stop {
        if let Err(stop) = self.catch_up().await {
            return stop;
        }
        loop {
            let received = tokio::select! {
                () = self.sender.closed() => return Stop::Quietly,
                received = live.recv() => received,
            };
            match received {
                Ok(batch) if batch.revision < self.next => {}
                Ok(batch) if batch.revision == self.next => {
                    if let Err(stop) = self.deliver(&batch).await {
                        return stop;
                    }
                }
                // A revision missing on the fan-out (a gap, or this task fell behind and
                // the channel dropped batches): the log has them.
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                    if let Err(stop) = self.catch_up().await {
                        return stop;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return Stop::Quietly,
            }
        }
    }

    /// Delivers every logged revision from `next` up to the current one.
    async fn catch_up(&mut self) -> Result<(), Stop> {
        // Bounded: each round advances `next` by a chunk or ends at the current revision.
        loop {
            let Some(store) = self.store.upgrade() else {
                return Err(Stop::Quietly);
            };
            let from = self.next;
            let chunk = tokio::task::spawn_blocking(move || store.read_log(from))
                .await
                .map_err(|e| Stop::With(blocking_err(e)))?
                .map_err(Stop::With)?;
            for batch in &chunk.batches {
                self.deliver(batch).await?;
            }
            self.next = self.next.max(chunk.read_until + 1);
            if chunk.read_until >= chunk.current {
                return Ok(());
            }
        }
    }

    async fn deliver(&mut self, batch: &Batch) -> Result<(), Stop> {
        for event in &batch.events {
            let key = match event {
                WatchEvent::Put(kv) => &kv.key,
                WatchEvent::Delete { key, .. } => key,
            };
            if key.starts_with(&self.prefix) && self.sender.send(Ok(event.clone())).await.is_err() {
                return Err(Stop::Quietly);
            }
        }
        self.next = batch.revision + 1;
        Ok(())
    }
}

/// Deletes expired leases and their keys. Holds the store weakly and ends when it is gone.
async fn expire_leases(store: Weak<Inner>, clock: Arc<LeaseClock>) {
    loop {
        let now = Instant::now();
        let wake = clock
            .next_deadline()
            .map_or(now + EXPIRY_IDLE, |d| d.min(now + EXPIRY_IDLE));
        tokio::select! {
            () = tokio::time::sleep_until(wake) => {}
            () = clock.changed.notified() => {}
        }
        if store.strong_count() == 0 {
            return;
        }
        for (id, ttl) in clock.take_expired(Instant::now()) {
            let Some(inner) = store.upgrade() else {
                return;
            };
            let result = tokio::task::spawn_blocking(move || inner.remove_lease(id)).await;
            let error = match result {
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
            };
            // Still expired: retried shortly, with its TTL unchanged for keep-alives.
            tracing::warn!(lease = id, %error, "expiring a lease failed; retrying");
            clock.insert_until(id, ttl, Instant::now() + EXPIRY_RETRY);
        }
    }
}

/// A key's stored form: revisions, lease and value.
#[derive(Debug)]
struct KeyRecord {
    create_revision: Revision,
    mod_revision: Revision,
    version: i64,
    lease: Option<LeaseId>,
    value: Bytes,
}

const RECORD_HEADER: usize = 32;

impl KeyRecord {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(RECORD_HEADER + self.value.len());
        out.extend_from_slice(&self.create_revision.to_le_bytes());
        out.extend_from_slice(&self.mod_revision.to_le_bytes());
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.lease.map_or(0, |l| l.0).to_le_bytes());
        out.extend_from_slice(&self.value);
        out
    }

    fn decode(bytes: &[u8]) -> Result<KeyRecord, StoreError> {
        let mut reader = Reader(bytes);
        let create_revision = reader.i64()?;
        let mod_revision = reader.i64()?;
        let version = reader.i64()?;
        let lease = reader.i64()?;
        Ok(KeyRecord {
            create_revision,
            mod_revision,
            version,
            lease: (lease != 0).then_some(LeaseId(lease)),
            value: Bytes::copy_from_slice(reader.0),
        })
    }

    fn into_key_value(self, key: &str) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: self.value,
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
            lease: self.lease,
        }
    }
}

const TAG_PUT: u8 = 0;
const TAG_DELETE: u8 = 1;

fn encode_events(events: &[WatchEvent]) -> Vec<u8> {
    let mut out = Vec::new();
    for event in events {
        match event {
            WatchEvent::Put(kv) => {
                out.push(TAG_PUT);
                push_bytes(&mut out, kv.key.as_bytes());
                let record = KeyRecord {
                    create_revision: kv.create_revision,
                    mod_revision: kv.mod_revision,
                    version: kv.version,
                    lease: kv.lease,
                    value: kv.value.clone(),
                };
                push_bytes(&mut out, &record.encode());
            }
            WatchEvent::Delete { key, .. } => {
                out.push(TAG_DELETE);
                push_bytes(&mut out, key.as_bytes());
            }
        }
    }
    out
}

fn push_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    // Keys and values are far below 4 GiB (etcd caps requests at a few MiB).
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
}

fn decode_events(bytes: &[u8], revision: Revision) -> Result<Vec<WatchEvent>, StoreError> {
    let mut reader = Reader(bytes);
    let mut events = Vec::new();
    while !reader.0.is_empty() {
        let tag = reader.take(1)?[0];
        let key = String::from_utf8(reader.chunk()?.to_vec())
            .map_err(|_| corrupt("event key is not UTF-8"))?;
        match tag {
            TAG_PUT => {
                let record = KeyRecord::decode(reader.chunk()?)?;
                events.push(WatchEvent::Put(record.into_key_value(&key)));
            }
            TAG_DELETE => events.push(WatchEvent::Delete { key, revision }),
            _ => return Err(corrupt("unknown event tag")),
        }
    }
    Ok(events)
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Embedded(format!("corrupt record: {what}"))
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        if self.0.len() < n {
            return Err(corrupt("truncated"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn i64(&mut self) -> Result<i64, StoreError> {
        let mut buf = [0u8; 8];
        buf.copy_from_slice(self.take(8)?);
        Ok(i64::from_le_bytes(buf))
    }

    fn chunk(&mut self) -> Result<&'a [u8], StoreError> {
        let mut buf = [0u8; 4];
        buf.copy_from_slice(self.take(4)?);
        let len = usize::try_from(u32::from_le_bytes(buf)).map_err(|_| corrupt("length"))?;
        self.take(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_the_log_encoding() {
        let events = vec![
            WatchEvent::Put(KeyValue {
                key: "a/é".into(),
                value: Bytes::from_static(b"\x00value"),
                create_revision: 3,
                mod_revision: 7,
                version: 2,
                lease: Some(LeaseId(9)),
            }),
            WatchEvent::Delete {
                key: "b".into(),
                revision: 7,
            },
        ];
        assert_eq!(decode_events(&encode_events(&events), 7).unwrap(), events);
        assert!(decode_events(&[TAG_PUT, 9, 0], 1).is_err());
    }

    #[test]
    fn one_transaction_cannot_write_a_key_twice() {
        let put = |k: &str| Op::Put {
            key: k.into(),
            value: Bytes::new(),
            lease: None,
        };
        assert!(check_disjoint(&[put("a"), put("b")]).is_ok());
        assert!(check_disjoint(&[put("a"), put("a")]).is_err());
        assert!(check_disjoint(&[put("a/1"), Op::Delete { key: "a/1".into() }]).is_err());
        let prefix = Op::DeletePrefix {
            prefix: "a/".into(),
        };
        assert!(check_disjoint(&[put("a/1"), prefix.clone()]).is_err());
        assert!(check_disjoint(&[put("b/1"), prefix]).is_ok());
    }
}
