//! The location service: where the registrar keeps bindings and where the edge finds them.
//!
//! Bindings live in the store, one protobuf `calanque.v1.LocationBinding` per key at
//! `<prefix><escaped AOR>/<contact key>` (see `keys`), under shared bucket leases (see `leases`)
//! so the store deletes them by itself after they expire. Every edge keeps all of them in
//! memory: [`LocationService::start`] lists the prefix and follows its watch, so a lookup for an
//! incoming call never touches the store, and a binding written by another edge replica shows
//! up within the watch's latency.
//!
//! A REGISTER is committed with [`LocationService::apply`] in one store transaction fenced on the
//! bindings the plan was computed from (their `mod_revision`s) and on the absence of the new
//! keys: two REGISTERs for one AOR racing on two edges cannot both win, the loser gets
//! [`LocationError::Conflict`], reads the AOR again with [`LocationService::fresh`] and re-plans.
//!
//! Memory: the cache keeps the stored bytes (about 250–400 bytes for a typical phone) plus a
//! 48-byte slot per binding and a map entry per AOR, and decodes only on lookup; see
//! [`LocationService::approx_bytes_per_binding`] and the 10 000-binding test, which requires
//! under 2 KiB per binding.

mod cache;
mod codec;
mod committer;
mod keys;
mod leases;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use proto::v1::Flow;
use sip_core::registrar::{Binding, RegisterPlan, contact_uri_matches};
use sip_msg::Uri;
use store::mirror::{self, Mirror};
use store::{Compare, KeyValue, LeaseId, Op, Revision, Store, StoreError, WatchEvent};
use tokio::task::JoinHandle;

use cache::{Cache, Row, Slot};
pub use codec::CodecError;
use keys::{ContactKey, KeyLayout, escape_aor};
use leases::Leases;

/// The default key prefix of the location bindings.
pub const LOCATION_PREFIX: &str = "calanque/v1/location/";

/// Where and how bindings are stored.
#[derive(Debug, Clone)]
pub struct LocationConfig {
    /// Key prefix of every binding; ends with `/`.
    pub prefix: String,
    /// Width of a lease bucket: a binding outlives its expiry in the store by at most this
    /// (plus `lease_slack`), and the edge grants one lease per bucket.
    pub lease_bucket: Duration,
    /// How long a bucket's lease outlives the bucket, so that a binding is never deleted before
    /// it expires because of clock rounding or a slow grant.
    pub lease_slack: Duration,
}

impl Default for LocationConfig {
    fn default() -> LocationConfig {
        LocationConfig {
            prefix: LOCATION_PREFIX.to_owned(),
            lease_bucket: Duration::from_secs(30),
            lease_slack: Duration::from_secs(5),
        }
    }
}

/// What the edge knows about a REGISTER beyond the registrar core's plan.
#[derive(Debug, Clone, Default)]
pub struct RegistrationContext {
    /// The flow the REGISTER arrived on. Its `remote` is replaced by each binding's `received`
    /// address when stored (they are the same address).
    pub flow: Flow,
    /// The directory device that authenticated the REGISTER.
    pub device_id: String,
    /// The User-Agent header, for operators.
    pub user_agent: String,
}

/// A binding as stored, with what a conditional write needs.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredBinding {
    pub binding: Binding,
    pub flow: Flow,
    pub device_id: String,
    pub user_agent: String,
    /// The store key (stable for the binding's life, even when a refresh prints its Contact
    /// differently).
    pub key: String,
    /// The revision of the last write of the key: what [`LocationService::apply`] fences on.
    pub mod_revision: Revision,
}

/// What a committed plan produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// The store revision of the commit; `None` when the plan changed nothing and no
    /// transaction was sent.
    pub revision: Option<Revision>,
    /// The AOR's stored bindings after the commit (`expected` minus what was removed or
    /// rewritten, plus the upserts at the new revision): the next `expected` for this AOR.
    pub bindings: Vec<StoredBinding>,
}

/// Why a location operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LocationError {
    /// The store cannot be reached or refused the request: nothing was written. The registrar
    /// answers 500 with Retry-After (RFC 3261 §10.3 step 7) or 503.
    #[error("location store unavailable: {0}")]
    Unavailable(#[from] StoreError),
    /// The AOR changed since the bindings the plan was computed from were read (another
    /// REGISTER won the race): nothing was written. Read again with
    /// [`LocationService::fresh`], plan again, apply again.
    #[error("bindings of {aor} changed concurrently")]
    Conflict { aor: String },
    /// A stored binding the operation depends on does not decode.
    #[error("stored binding {key} does not decode: {source}")]
    Codec {
        key: String,
        #[source]
        source: CodecError,
    },
}

/// State shared by the handles and the watch task.
#[derive(Debug)]
struct Shared {
    store: Arc<dyn Store>,
    layout: KeyLayout,
    cache: RwLock<Cache>,
    leases: Leases,
    committer: committer::Committer,
    skipped: AtomicU64,
    reloads: AtomicU64,
}

impl Shared {
    fn read(&self) -> RwLockReadGuard<'_, Cache> {
        // Every cache method leaves the maps whole between statements that can panic, so a
        // poisoned lock still holds a usable state.
        self.cache.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Cache> {
        self.cache.write().unwrap_or_else(|e| e.into_inner())
    }

    fn skip(&self, key: &str, reason: &str) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(key, reason, "location service skipped a stored value");
    }

    /// A stored key and value as a cache row; `None` (counted) when either does not decode.
    fn row(&self, kv: &KeyValue) -> Option<Row> {
        let Some((segment, contact)) = self.layout.split(&kv.key) else {
            self.skip(&kv.key, "not a location key");
            return None;
        };
        match codec::validated_expiry(&kv.value) {
            Ok(expires_at) => Some(Row {
                segment: segment.into(),
                slot: Slot {
                    contact,
                    mod_revision: kv.mod_revision,
                    expires_at,
                    value: Some(kv.value.to_vec().into_boxed_slice()),
                },
            }),
            Err(e) => {
                self.skip(&kv.key, &e.to_string());
                None
            }
        }
    }

    fn stored(&self, segment: &str, slot: &Slot) -> Option<StoredBinding> {
        let value = slot.value.as_deref()?;
        let key = self.layout.key(segment, slot.contact);
        // Values are validated before they enter the cache, so this only fails if the codec
        // changed underneath; skip rather than fail a lookup.
        let decoded = codec::decode(value)
            .inspect_err(|e| self.skip(&key, &e.to_string()))
            .ok()?;
        Some(StoredBinding {
            binding: decoded.binding,
            flow: decoded.flow,
            device_id: decoded.device_id,
            user_agent: decoded.user_agent,
            key,
            mod_revision: slot.mod_revision,
        })
    }

    fn replace_all(&self, listing: &[KeyValue], revision: Revision) {
        let rows = listing.iter().filter_map(|kv| self.row(kv)).collect();
        let mut cache = self.write();
        cache.replace_all(rows, revision);
        tracing::debug!(bindings = cache.len(), revision, "location cache loaded");
    }
}

/// The watch task (`store::mirror::follow`) keeps the cache in step with the store.
impl Mirror for Shared {
    fn reload(&self, listing: &[KeyValue], revision: Revision) {
        self.reloads.fetch_add(1, Ordering::Relaxed);
        self.replace_all(listing, revision);
    }

    fn apply(&self, events: Vec<WatchEvent>) {
        let mut cache = self.write();
        for event in events {
            match event {
                WatchEvent::Put(kv) => match self.row(&kv) {
                    Some(row) => cache.watch_put(row),
                    // The key keeps its last good value; the revision still counts as seen.
                    None => cache.saw(kv.mod_revision),
                },
                WatchEvent::Delete { key, revision } => match self.layout.split(&key) {
                    Some((segment, contact)) => cache.watch_delete(segment, contact, revision),
                    None => self.skip(&key, "not a location key"),
                },
            }
        }
        cache.prune();
    }
}

/// Aborts the watch task when the last handle goes.
#[derive(Debug)]
struct TaskGuard(JoinHandle<()>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The location service of one edge process. Cheap to clone; the watch task stops when the
/// last clone is dropped.
#[derive(Debug, Clone)]
pub struct LocationService {
    shared: Arc<Shared>,
    _task: Arc<TaskGuard>,
}

impl LocationService {
    /// Loads every binding under `config.prefix` and follows the store's changes (on the
    /// current tokio runtime). Fails only if the first listing fails; afterwards lookups serve
    /// the last known state through store outages, and the cache re-lists after a compaction or
    /// a lost watch (backoff 100 ms doubling to 2 s).
    pub async fn start(
        store: Arc<dyn Store>,
        config: LocationConfig,
    ) -> Result<LocationService, LocationError> {
        let layout = KeyLayout::new(&config.prefix);
        let (listing, revision) = store.list_prefix(layout.prefix()).await?;
        let prefix = layout.prefix().to_owned();
        let shared = Arc::new(Shared {
            committer: committer::Committer::start(store.clone()),
            store,
            layout,
            cache: RwLock::new(Cache::default()),
            leases: Leases::new(config.lease_bucket, config.lease_slack),
            skipped: AtomicU64::new(0),
            reloads: AtomicU64::new(0),
        });
        shared.replace_all(&listing, revision);
        let task = tokio::spawn(mirror::follow(
            shared.store.clone(),
            prefix,
            shared.clone(),
            revision,
            "location",
        ));
        Ok(LocationService {
            shared,
            _task: Arc::new(TaskGuard(task)),
        })
    }

    /// The bindings of `aor` (canonical, as `canonical_aor` prints it) unexpired at
    /// `now_unix`, from memory.
    pub fn lookup(&self, aor: &str, now_unix: u64) -> Vec<StoredBinding> {
        let segment = escape_aor(aor);
        let cache = self.shared.read();
        cache
            .slots(&segment)
            .filter(|s| s.expires_at > now_unix)
            .filter_map(|s| self.shared.stored(&segment, s))
            .collect()
    }

    /// Every binding unexpired at `now_unix` that `keep` selects (decoded one by one: the
    /// edge's NAT keep-alive walks them every few tens of seconds).
    pub fn select(
        &self,
        now_unix: u64,
        mut keep: impl FnMut(&StoredBinding) -> bool,
    ) -> Vec<StoredBinding> {
        let cache = self.shared.read();
        cache
            .all_slots()
            .filter(|(_, s)| s.expires_at > now_unix)
            .filter_map(|(segment, s)| self.shared.stored(segment, s))
            .filter(|b| keep(b))
            .collect()
    }

    /// Reads the bindings of `aor` from the store (what to plan from after a
    /// [`LocationError::Conflict`], or when the cache may lag) and refreshes the cache with
    /// them. Includes bindings that have expired but that their lease has not removed yet (the
    /// registrar core ignores them; fencing on them keeps the commit exact).
    pub async fn fresh(&self, aor: &str) -> Result<Vec<StoredBinding>, LocationError> {
        let segment = escape_aor(aor);
        let (listing, revision) = self
            .shared
            .store
            .list_prefix(&self.shared.layout.aor_prefix(&segment))
            .await?;
        let mut slots = Vec::with_capacity(listing.len());
        let mut out = Vec::with_capacity(listing.len());
        for kv in &listing {
            let Some(row) = self.shared.row(kv) else {
                continue;
            };
            if let Some(stored) = self.shared.stored(&segment, &row.slot) {
                out.push(stored);
            }
            slots.push(row.slot);
        }
        self.shared.write().replace_aor(&segment, slots, revision);
        Ok(out)
    }

    /// Commits a plan computed from `expected` (the AOR's stored bindings given to
    /// `process_register`) in one transaction: it succeeds only if every binding of `expected`
    /// is unchanged and every new key is absent, and then writes the upserts under their bucket
    /// leases and deletes the removals. Otherwise [`LocationError::Conflict`] and nothing is
    /// written. The cache reflects the commit when this returns.
    pub async fn apply(
        &self,
        plan: &RegisterPlan,
        ctx: &RegistrationContext,
        expected: &[StoredBinding],
        now_unix: u64,
    ) -> Result<Applied, LocationError> {
        if plan.is_unchanged() {
            return Ok(Applied {
                revision: None,
                bindings: expected.to_vec(),
            });
        }
        let segment = escape_aor(&plan.aor);
        let layout = &self.shared.layout;
        let mut compares: Vec<Compare> = expected
            .iter()
            .map(|e| Compare::ModRevision(e.key.clone(), e.mod_revision))
            .collect();

        // Upserts: the key of the expected binding the Contact matches (a refresh may print
        // the URI differently), else the hash of the URI as printed.
        let mut puts: Vec<(String, &Binding)> = Vec::with_capacity(plan.upserts.len());
        for upsert in &plan.upserts {
            let key = match expected.iter().find(|e| {
                e.binding.aor == upsert.aor
                    && contact_uri_matches(&e.binding.contact, &upsert.contact)
            }) {
                Some(e) => e.key.clone(),
                None => {
                    let contact = ContactKey::of(&upsert.contact.to_string());
                    let key = layout.key(&segment, contact);
                    // A row the plan did not see because it expired (its lease has not removed
                    // it yet) is overwritten, fenced on its revision; anything else must be
                    // absent.
                    let expired = self
                        .shared
                        .read()
                        .slots(&segment)
                        .find(|s| s.contact == contact && s.expires_at <= now_unix)
                        .map(|s| s.mod_revision);
                    compares.push(match expired {
                        Some(revision) => Compare::ModRevision(key.clone(), revision),
                        None => Compare::Absent(key.clone()),
                    });
                    key
                }
            };
            puts.retain(|(k, _)| *k != key);
            puts.push((key, upsert));
        }

        // Removals, named (AOR, Contact as printed) by the plan.
        let mut deletes: Vec<String> = Vec::with_capacity(plan.removals.len());
        for (aor, contact) in &plan.removals {
            let parsed = Uri::parse(contact).ok();
            let key = expected
                .iter()
                .find(|e| e.binding.aor == *aor && e.binding.contact.to_string() == *contact)
                .or_else(|| {
                    let parsed = parsed.as_ref()?;
                    expected.iter().find(|e| {
                        e.binding.aor == *aor && contact_uri_matches(&e.binding.contact, parsed)
                    })
                })
                .map(|e| e.key.clone())
                .unwrap_or_else(|| layout.key(&escape_aor(aor), ContactKey::of(contact)));
            if !puts.iter().any(|(k, _)| *k == key) && !deletes.contains(&key) {
                deletes.push(key);
            }
        }

        let values: Vec<_> = puts
            .iter()
            .map(|(_, binding)| codec::encode(binding, ctx))
            .collect();
        let mut retried = false;
        let revision = loop {
            let mut used: Vec<(u64, LeaseId)> = Vec::new();
            let mut ops = Vec::with_capacity(puts.len() + deletes.len());
            for ((key, binding), value) in puts.iter().zip(&values) {
                let (end, lease) = self
                    .shared
                    .leases
                    .lease_for(self.shared.store.as_ref(), binding.expires_at, now_unix)
                    .await?;
                if !used.contains(&(end, lease)) {
                    used.push((end, lease));
                }
                ops.push(Op::Put {
                    key: key.clone(),
                    value: value.clone(),
                    lease: Some(lease),
                });
            }
            ops.extend(deletes.iter().map(|key| Op::Delete { key: key.clone() }));
            match self.shared.committer.txn(compares.clone(), ops).await {
                Ok(outcome) if outcome.succeeded => break outcome.revision,
                Ok(_) => {
                    return Err(LocationError::Conflict {
                        aor: plan.aor.clone(),
                    });
                }
                Err(StoreError::LeaseNotFound(lost)) if !retried => {
                    // etcd does not always say which lease; forget every lease this commit
                    // used (a cell holding a newer one is kept) and grant again, once.
                    tracing::info!(lease = lost.0, "location lease gone; granting a new one");
                    for (end, lease) in used {
                        self.shared.leases.forget(end, lease);
                    }
                    retried = true;
                }
                Err(e) => return Err(e.into()),
            }
        };

        // The cache, now (the watch will deliver the same revision later and be ignored).
        let mut written = Vec::with_capacity(puts.len());
        let mut put_slots = Vec::with_capacity(puts.len());
        for ((key, binding), value) in puts.iter().zip(&values) {
            if let Some((_, contact)) = layout.split(key) {
                put_slots.push(Slot {
                    contact,
                    mod_revision: revision,
                    expires_at: binding.expires_at,
                    value: Some(value.to_vec().into_boxed_slice()),
                });
            }
            let mut flow = ctx.flow.clone();
            flow.remote = binding.received.to_string();
            written.push(StoredBinding {
                binding: (*binding).clone(),
                flow,
                device_id: ctx.device_id.clone(),
                user_agent: ctx.user_agent.clone(),
                key: key.clone(),
                mod_revision: revision,
            });
        }
        let deleted: Vec<ContactKey> = deletes
            .iter()
            .filter_map(|key| layout.split(key))
            .filter(|(s, _)| *s == segment)
            .map(|(_, contact)| contact)
            .collect();
        self.shared
            .write()
            .commit(&segment, revision, put_slots, &deleted);

        let mut bindings: Vec<StoredBinding> = expected
            .iter()
            .filter(|e| !deletes.contains(&e.key) && !written.iter().any(|w| w.key == e.key))
            .cloned()
            .collect();
        bindings.extend(written);
        Ok(Applied {
            revision: Some(revision),
            bindings,
        })
    }

    /// Bindings in memory (expired ones included until their lease removes them).
    pub fn len(&self) -> usize {
        self.shared.read().len()
    }

    /// Whether no binding is in memory.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The estimated heap the cache uses per binding (capacities and lengths, without the
    /// allocator's rounding): what the < 2 KiB per binding budget is checked against. 0 when
    /// empty.
    pub fn approx_bytes_per_binding(&self) -> usize {
        let cache = self.shared.read();
        cache.heap_bytes().checked_div(cache.len()).unwrap_or(0)
    }

    /// The last store revision the watch (or a full listing) delivered.
    pub fn revision(&self) -> Revision {
        self.shared.read().watched()
    }

    /// Stored values left out because they did not decode.
    pub fn skipped_values(&self) -> u64 {
        self.shared.skipped.load(Ordering::Relaxed)
    }

    /// Full reloads after the initial load (compaction, a lost watch).
    pub fn reloads(&self) -> u64 {
        self.shared.reloads.load(Ordering::Relaxed)
    }

    /// Bucket leases cached by this process.
    pub fn cached_leases(&self) -> usize {
        self.shared.leases.cached()
    }
}
