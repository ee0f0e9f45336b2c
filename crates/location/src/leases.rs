//! Shared bucket leases: every binding expiring within one bucket of time rides the same lease,
//! so a registration costs no lease RPC of its own (one grant per bucket and process, instead of
//! one per REGISTER — etcd would spend more on leases than on the bindings at thousands of
//! registrations per second).
//!
//! A binding expiring at `t` goes under the lease of the bucket ending at
//! `ceil(t / bucket) * bucket`, granted with a TTL reaching `slack` past that end. So the store
//! deletes a binding by itself at most one bucket (plus slack) after it expires; until then
//! lookups filter on `expires_at`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use store::{LeaseId, Store, StoreError};
use tokio::sync::OnceCell;

#[derive(Debug, Default)]
struct Buckets {
    /// Bucket end (unix seconds) → its lease, granted at most once (the cell serialises
    /// concurrent first uses of a bucket).
    cells: HashMap<u64, Arc<OnceCell<LeaseId>>>,
    /// When past buckets were last dropped.
    pruned_at: u64,
}

#[derive(Debug)]
pub(crate) struct Leases {
    bucket: u64,
    slack: u64,
    buckets: Mutex<Buckets>,
}

impl Leases {
    pub(crate) fn new(bucket: Duration, slack: Duration) -> Leases {
        Leases {
            bucket: bucket.as_secs().max(1),
            slack: slack.as_secs(),
            buckets: Mutex::new(Buckets::default()),
        }
    }

    /// The end of the bucket holding a binding that expires at `expires_at`.
    pub(crate) fn bucket_end(&self, expires_at: u64) -> u64 {
        expires_at.div_ceil(self.bucket).saturating_mul(self.bucket)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buckets> {
        // The map is only ever inserted into or pruned whole; a panic elsewhere cannot leave it
        // inconsistent, so a poisoned lock is still used.
        self.buckets.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The lease for bindings expiring at `expires_at`, granting it on first use.
    pub(crate) async fn lease_for(
        &self,
        store: &dyn Store,
        expires_at: u64,
        now_unix: u64,
    ) -> Result<(u64, LeaseId), StoreError> {
        let end = self.bucket_end(expires_at);
        let cell = {
            let mut buckets = self.lock();
            if buckets.pruned_at < now_unix {
                // A lease whose bucket has ended is about to expire in the store; nothing
                // expiring later may use it.
                buckets.cells.retain(|&end, _| end > now_unix);
                buckets.pruned_at = now_unix;
            }
            buckets.cells.entry(end).or_default().clone()
        };
        let ttl = end
            .saturating_sub(now_unix)
            .saturating_add(self.slack)
            .max(1);
        let lease = cell
            .get_or_try_init(|| async {
                let lease = store.grant_lease(Duration::from_secs(ttl)).await?;
                tracing::debug!(
                    bucket_end = end,
                    ttl,
                    lease = lease.0,
                    "location lease granted"
                );
                Ok::<_, StoreError>(lease)
            })
            .await?;
        Ok((end, *lease))
    }

    /// Forgets a bucket's lease after the store said it no longer exists (expired early,
    /// revoked, or the store lost it in a restart); the next use grants a new one. A cell
    /// already holding a newer lease is left alone.
    pub(crate) fn forget(&self, end: u64, lease: LeaseId) {
        let mut buckets = self.lock();
        if buckets
            .cells
            .get(&end)
            .is_some_and(|cell| cell.get() == Some(&lease))
        {
            buckets.cells.remove(&end);
        }
    }

    /// Leases currently cached (for tests and metrics).
    pub(crate) fn cached(&self) -> usize {
        self.lock().cells.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_round_up() {
        let leases = Leases::new(Duration::from_secs(30), Duration::from_secs(5));
        assert_eq!(leases.bucket_end(1), 30);
        assert_eq!(leases.bucket_end(30), 30);
        assert_eq!(leases.bucket_end(31), 60);
        assert_eq!(leases.bucket_end(0), 0);
    }
}
