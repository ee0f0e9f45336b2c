//! Durable state for what must not be lost (the directory, registrations, leadership).
//!
//! [`Store`] follows etcd's model — one global revision that every write increments, keys
//! carrying create/mod revisions, leases with a TTL that delete their keys when they expire,
//! watches that replay from a revision — and is implemented twice: over etcd for the cluster
//! and on local disk for the all-in-one mode. Both pass one test suite
//! (`tests/conformance.rs`).
//!
//! [`mirror`] keeps a key prefix mirrored in memory (list, then follow the watch, re-list
//! after compaction) for the caches built on the store.
//!
//! With the `cli` feature, [`cli::EtcdTlsArgs`] are the etcd client TLS flags the binaries
//! share.

#[cfg(feature = "cli")]
pub mod cli;
pub mod embedded;
pub mod etcd;
pub mod mirror;

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

/// The store-wide revision after a write (etcd's `header.revision`). Starts at 1 for an
/// empty store and increases by one for every write transaction.
pub type Revision = i64;

/// A lease id; 0 is never a valid lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseId(pub i64);

/// One key with its value and revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    /// Revision of the write that created the key (since its last deletion).
    pub create_revision: Revision,
    /// Revision of the last write to the key: what compare-and-swap checks.
    pub mod_revision: Revision,
    /// Number of writes since creation (1 after creation).
    pub version: i64,
    pub lease: Option<LeaseId>,
}

/// A condition of a transaction on one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// The key's `mod_revision` equals this (the key exists and was not written since).
    ModRevision(String, Revision),
    /// The key does not exist.
    Absent(String),
    /// The key exists.
    Present(String),
}

/// A write inside a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put {
        key: String,
        value: Bytes,
        lease: Option<LeaseId>,
    },
    Delete {
        key: String,
    },
    /// Deletes every key starting with the prefix.
    DeletePrefix {
        prefix: String,
    },
}

/// What a transaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnOutcome {
    /// True when every comparison held and the operations were applied atomically.
    pub succeeded: bool,
    /// The store revision after the transaction (unchanged when it failed).
    pub revision: Revision,
}

/// A change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    Put(KeyValue),
    /// A key deleted (explicitly or by lease expiry) at `revision`.
    Delete {
        key: String,
        revision: Revision,
    },
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot be reached (etcd down, partitioned, no quorum). Callers answer
    /// 503 and retry; nothing was written.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A watch asked for a revision the store has compacted away: reload, then watch anew.
    #[error("revision {requested} compacted (oldest kept: {oldest})")]
    Compacted {
        requested: Revision,
        oldest: Revision,
    },
    /// The lease does not exist (expired or revoked).
    #[error("lease {0:?} not found")]
    LeaseNotFound(LeaseId),
    /// The request exceeds a backend limit (value size, operations per transaction).
    #[error("request too large: {0}")]
    TooLarge(String),
    /// The on-disk store failed (I/O error, corruption).
    #[error("embedded store: {0}")]
    Embedded(String),
    /// The request is malformed whatever the backend's state, so retrying cannot help: one
    /// transaction writing the same key twice (etcd refuses it; the embedded store refuses it
    /// too so that code tested all-in-one behaves the same on a cluster).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The client configuration is refused before connecting (TLS files, endpoint schemes):
    /// retrying cannot help.
    #[error(transparent)]
    Config(#[from] etcd::EtcdConfigError),
}

/// A stream of watch events. Dropping it cancels the watch.
#[derive(Debug)]
pub struct Watch {
    receiver: tokio::sync::mpsc::Receiver<Result<WatchEvent, StoreError>>,
}

impl Watch {
    pub fn new(receiver: tokio::sync::mpsc::Receiver<Result<WatchEvent, StoreError>>) -> Watch {
        Watch { receiver }
    }

    /// The next event in revision order; `None` when the watch ended.
    pub async fn next(&mut self) -> Option<Result<WatchEvent, StoreError>> {
        self.receiver.recv().await
    }
}

/// The durable store.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    /// Every key starting with `prefix`, in key order, and the revision the list reflects
    /// (start a watch at `revision + 1` to miss nothing).
    async fn list_prefix(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision), StoreError>;

    /// Writes a key; returns the new store revision.
    async fn put(
        &self,
        key: &str,
        value: Bytes,
        lease: Option<LeaseId>,
    ) -> Result<Revision, StoreError>;

    /// Deletes a key; true when it existed.
    async fn delete(&self, key: &str) -> Result<bool, StoreError>;

    /// Applies `ops` atomically if every comparison holds (compare-and-swap, fencing).
    async fn txn(&self, compares: Vec<Compare>, ops: Vec<Op>) -> Result<TxnOutcome, StoreError>;

    /// Grants a lease that expires `ttl` after its last keep-alive.
    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError>;

    /// Renews a lease for its full TTL.
    async fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError>;

    /// Revokes a lease, deleting its keys now.
    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError>;

    /// Changes under `prefix` from `from_revision` on (inclusive), in revision order;
    /// `from_revision = 0` means "from now". Fails with `Unavailable` when the backend cannot
    /// be reached; a `from_revision` older than the kept history is reported as the watch's
    /// first item, `Err(Compacted)`, after which the watch ends. A watch outlives backend
    /// outages: it resumes from the revision after the last event it delivered.
    async fn watch(&self, prefix: &str, from_revision: Revision) -> Result<Watch, StoreError>;
}
