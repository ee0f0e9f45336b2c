//! Leadership and fencing on the [`Store`] (etcd's model; ADR 0018), for any leader key: the
//! failover controller's ([`crate::state::LEADER_KEY`]) and the PbxCluster reconciler's
//! (`calanque/v1/operator/leader`, ADR 0017) use the same campaign, renewal and fence, each
//! under its own key, so that the two elections are independent.
//!
//! - Campaign: grant a lease, then create the leader key under it in a transaction that
//!   compares the key absent (etcd's `create_revision == 0`). The revision of that write is the
//!   leader's *fence*.
//! - Keep-alive every third of the TTL. The holder believes it leads only until the last
//!   successful keep-alive's *send* time plus the TTL (the store counts from when it received
//!   it, later), and stops at once when a keep-alive says the lease is gone or the leader key
//!   no longer carries its fence.
//! - Every write of the controller goes through [`fenced_txn`], which adds the comparison
//!   "the leader key's mod revision is my fence": a deposed leader whose lease expired — or
//!   that was paused and still believes it leads — cannot write, because the key is gone or
//!   was re-created by the next leader at a later revision. etcd's lock alone does not give
//!   mutual exclusion (Jepsen); the fence on every write does.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use store::{Compare, LeaseId, Op, Revision, Store, StoreError};
use tokio::sync::watch;
use tokio::time::Instant;

/// What a leader holds: its lease and the revision at which it created the leader key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fence {
    /// The leader key the fence is a revision of (keys are constants: `'static` keeps the
    /// fence `Copy`).
    pub key: &'static str,
    pub lease: LeaseId,
    pub revision: Revision,
}

/// The leadership as the holder sees it: the fence, and until when it may act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub fence: Fence,
    /// Past this instant the lease may have expired in the store: stop acting.
    pub valid_until: Instant,
}

impl Held {
    /// The fence, if still valid at `now`.
    pub fn fence_at(&self, now: Instant) -> Option<Fence> {
        (now < self.valid_until).then_some(self.fence)
    }
}

/// Tries once to become the leader: grants a lease of `ttl` and creates the leader key `key`
/// (`instance` as value) under it if no one holds it. `Ok(None)` when another instance leads.
pub async fn campaign(
    store: &dyn Store,
    key: &'static str,
    instance: &str,
    ttl: Duration,
) -> Result<Option<Held>, StoreError> {
    let started = Instant::now();
    let lease = store.grant_lease(ttl).await?;
    let outcome = store
        .txn(
            vec![Compare::Absent(key.to_owned())],
            vec![Op::Put {
                key: key.to_owned(),
                value: Bytes::from(instance.to_owned()),
                lease: Some(lease),
            }],
        )
        .await;
    match outcome {
        Ok(outcome) if outcome.succeeded => Ok(Some(Held {
            fence: Fence {
                key,
                lease,
                revision: outcome.revision,
            },
            valid_until: started + ttl,
        })),
        other => {
            // Lost the race (or the store failed): the lease is useless; let it go.
            let _ = store.revoke_lease(lease).await;
            other.map(|_| None)
        }
    }
}

/// What a fenced transaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FencedOutcome {
    /// Applied at this store revision.
    Applied(Revision),
    /// Refused: the leader key no longer carries this fence (lease expired or revoked, or
    /// another leader since). The writer must stop acting.
    Deposed,
    /// Refused by the caller's own comparisons (what it read changed); the fence still holds.
    Conflict,
}

/// Applies `ops` if the caller's `compares` hold *and* the fence's leader key still carries
/// `fence`.
pub async fn fenced_txn(
    store: &dyn Store,
    fence: Fence,
    mut compares: Vec<Compare>,
    ops: Vec<Op>,
) -> Result<FencedOutcome, StoreError> {
    compares.push(Compare::ModRevision(fence.key.to_owned(), fence.revision));
    let outcome = store.txn(compares, ops).await?;
    if outcome.succeeded {
        return Ok(FencedOutcome::Applied(outcome.revision));
    }
    let leader = store.get(fence.key).await?;
    Ok(match leader {
        Some(kv) if kv.mod_revision == fence.revision => FencedOutcome::Conflict,
        _ => FencedOutcome::Deposed,
    })
}

/// Holds (or campaigns for) the leadership in a task: publishes the current [`Held`] (or
/// `None`) on a watch channel, renews the lease, and resigns (revokes it) when stopped.
#[derive(Debug)]
pub struct Leadership {
    receiver: watch::Receiver<Option<Held>>,
    deposed: watch::Sender<Revision>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// How the leadership task runs.
#[derive(Debug, Clone)]
pub struct LeadershipConfig {
    /// The leader key campaigned for: one election per key.
    pub key: &'static str,
    pub instance: String,
    /// The lease's TTL: how long after a leader dies another can take over.
    pub ttl: Duration,
    /// How often a follower looks whether the leader key is free.
    pub campaign_every: Duration,
}

impl Leadership {
    /// Starts campaigning.
    pub fn spawn(store: Arc<dyn Store>, config: LeadershipConfig) -> Leadership {
        let (sender, receiver) = watch::channel(None);
        let (deposed, deposed_fences) = watch::channel(0);
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(hold(store, config, sender, deposed_fences, stopped));
        Leadership {
            receiver,
            deposed,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// The leadership now (the holder's view; check [`Held::fence_at`] before acting).
    pub fn current(&self) -> Option<Held> {
        *self.receiver.borrow()
    }

    /// A receiver of leadership changes.
    pub fn subscribe(&self) -> watch::Receiver<Option<Held>> {
        self.receiver.clone()
    }

    /// Tells the task that a fenced write found `fence` gone: if it still leads with that
    /// fence, it stops at once.
    pub fn deposed(&self, fence: Fence) {
        self.deposed.send_replace(fence.revision);
    }

    /// A clonable view of this leadership for the code that writes under it; resigning stays
    /// with the owner of the [`Leadership`].
    pub fn handle(&self) -> LeadershipHandle {
        LeadershipHandle {
            receiver: self.receiver.clone(),
            deposed: self.deposed.clone(),
        }
    }

    /// Resigns (revokes the lease, so another instance takes over now) and stops.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// What the writers under a [`Leadership`] need (from [`Leadership::handle`]): the fence valid
/// now, changes of the leadership, and the way to report a fence that a fenced write found gone.
#[derive(Debug, Clone)]
pub struct LeadershipHandle {
    receiver: watch::Receiver<Option<Held>>,
    deposed: watch::Sender<Revision>,
}

impl LeadershipHandle {
    /// The fence, if this instance leads and its leadership is still valid at `now`.
    pub fn fence_at(&self, now: Instant) -> Option<Fence> {
        self.receiver.borrow().and_then(|held| held.fence_at(now))
    }

    /// A receiver of leadership changes.
    pub fn subscribe(&self) -> watch::Receiver<Option<Held>> {
        self.receiver.clone()
    }

    /// As [`Leadership::deposed`].
    pub fn deposed(&self, fence: Fence) {
        self.deposed.send_replace(fence.revision);
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn hold(
    store: Arc<dyn Store>,
    config: LeadershipConfig,
    sender: watch::Sender<Option<Held>>,
    mut deposed: watch::Receiver<Revision>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let renew_every = config.ttl / 3;
    loop {
        // Follower: campaign whenever the leader key is free.
        let held = loop {
            match free_leader_key(store.as_ref(), config.key).await {
                Ok(true) => {
                    match campaign(store.as_ref(), config.key, &config.instance, config.ttl).await {
                        Ok(Some(held)) => break held,
                        Ok(None) => {}
                        Err(e) => tracing::warn!(error = %e, "campaign failed"),
                    }
                }
                Ok(false) => {}
                Err(e) => tracing::debug!(error = %e, "reading the leader key failed"),
            }
            tokio::select! {
                () = tokio::time::sleep(config.campaign_every) => {}
                _ = &mut stopped => return,
            }
        };
        tracing::info!(
            key = config.key,
            instance = %config.instance,
            fencing_revision = held.fence.revision,
            lease = held.fence.lease.0,
            "leadership acquired"
        );
        sender.send_replace(Some(held));
        let mut held = held;
        // Leader: renew until the lease is lost, the fence is found gone, or stopped.
        let reason = loop {
            let next = (Instant::now() + renew_every).min(held.valid_until);
            tokio::select! {
                () = tokio::time::sleep_until(next) => {}
                Ok(()) = deposed.changed() => {
                    if *deposed.borrow_and_update() == held.fence.revision {
                        break "a fenced write found the leader key changed";
                    }
                    continue;
                }
                _ = &mut stopped => {
                    sender.send_replace(None);
                    let _ = store.revoke_lease(held.fence.lease).await;
                    tracing::info!(
                        key = config.key,
                        instance = %config.instance,
                        "resigned the leadership"
                    );
                    return;
                }
            }
            if Instant::now() >= held.valid_until {
                break "the lease was not renewed in time";
            }
            match renew(store.as_ref(), held, config.ttl).await {
                Renewal::Renewed(valid_until) => {
                    held.valid_until = valid_until;
                    sender.send_replace(Some(held));
                }
                Renewal::Lost(reason) => break reason,
                Renewal::Failed => {}
            }
        };
        sender.send_replace(None);
        tracing::warn!(
            key = config.key,
            instance = %config.instance,
            fencing_revision = held.fence.revision,
            reason,
            "leadership lost"
        );
        // Best effort: if the store still has the lease, free the key for the next leader.
        let _ = tokio::time::timeout(renew_every, store.revoke_lease(held.fence.lease)).await;
    }
}

async fn free_leader_key(store: &dyn Store, key: &str) -> Result<bool, StoreError> {
    Ok(store.get(key).await?.is_none())
}

enum Renewal {
    Renewed(Instant),
    Lost(&'static str),
    /// The store did not answer; the lease may still be valid until `valid_until`.
    Failed,
}

async fn renew(store: &dyn Store, held: Held, ttl: Duration) -> Renewal {
    let started = Instant::now();
    let remaining = held.valid_until.saturating_duration_since(started);
    let renewed = tokio::time::timeout(remaining, async {
        store.keep_alive(held.fence.lease).await?;
        store.get(held.fence.key).await
    })
    .await;
    match renewed {
        Ok(Ok(Some(kv))) if kv.mod_revision == held.fence.revision => {
            Renewal::Renewed(started + ttl)
        }
        Ok(Ok(_)) => Renewal::Lost("the leader key no longer carries this fence"),
        Ok(Err(StoreError::LeaseNotFound(_))) => Renewal::Lost("the lease expired or was revoked"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "renewing the lease failed");
            Renewal::Failed
        }
        Err(_) => Renewal::Failed,
    }
}
