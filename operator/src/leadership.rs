//! Who may write (ADR 0017): with `--etcd`, the operators of an installation (the chart runs
//! one per datacenter) elect one leader under an etcd lease at [`LEADER_KEY`], with the
//! failover controller's campaign, renewal and fence (`failover::leader`) on a key of their
//! own. Only the leader reconciles — applies, status patches, the finalizer, failback
//! requests; a follower keeps its watches and the failover feed warm and writes nothing, so
//! that it takes over with warm caches when the leader goes.
//!
//! The API server's writes cannot carry an etcd fence (it has its own store), so the
//! reconciler checks the leadership right before each write: a leader that lost its lease
//! mid-reconcile stops at the next write, and a leader paused between a check and its request
//! can send that one request late — an apply with the same content as the new leader's, so at
//! worst one stale status or object until the next reconcile repairs it. The failback request,
//! written in the failover controller's etcd, is fenced for real ([`failover::leader::fenced_txn`]).

use futures::Stream;
use tokio::sync::watch;
use tokio::time::Instant;

pub use failover::leader::{Fence, LeadershipHandle};

/// The reconciler's leader key (value: the instance name, under the leader's lease).
pub const LEADER_KEY: &str = "calanque/v1/operator/leader";

/// The `role` label of `calanque_instance_leader` for the reconciler.
pub const LEADER_ROLE: &str = "operator";

/// Whether this instance may write.
#[derive(Debug, Clone)]
pub enum WriteGate {
    /// Without `--etcd`: the only instance, always writing (nothing to elect on).
    Alone,
    /// Under the operator's lease: writes only while it leads.
    Elected(LeadershipHandle),
}

/// This instance does not lead (or its leadership lapsed): it must not write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this operator instance does not lead")]
pub struct NotLeading;

impl WriteGate {
    /// The permission to write at `now`: `Ok(None)` alone, `Ok(Some(fence))` while leading
    /// under a lease (for the writes that can carry it), `Err(NotLeading)` otherwise.
    pub fn check(&self, now: Instant) -> Result<Option<Fence>, NotLeading> {
        match self {
            WriteGate::Alone => Ok(None),
            WriteGate::Elected(handle) => handle.fence_at(now).map(Some).ok_or(NotLeading),
        }
    }

    /// Whether this instance leads now (always, alone).
    pub fn leads(&self) -> bool {
        self.check(Instant::now()).is_ok()
    }

    /// Reports that a fenced write found `fence` gone, so the leadership stops at once.
    pub fn deposed(&self, fence: Fence) {
        if let WriteGate::Elected(handle) = self {
            handle.deposed(fence);
        }
    }

    /// One item each time this instance becomes the leader — a new fence, so a leadership
    /// lost and regained between two looks counts (never, alone): the controller reconciles
    /// every cluster then, since a follower answered its triggers with nothing.
    pub fn acquisitions(&self) -> impl Stream<Item = ()> + Send + 'static {
        let receiver = match self {
            WriteGate::Alone => None,
            WriteGate::Elected(handle) => Some(handle.subscribe()),
        };
        // `None` as the last fence seen: a leadership already held when subscribing counts.
        futures::stream::unfold(
            (receiver, None::<Fence>, true),
            |(receiver, mut last, mut first)| async move {
                let mut receiver: watch::Receiver<_> = receiver?;
                loop {
                    if !first {
                        receiver.changed().await.ok()?;
                    }
                    first = false;
                    let fence = receiver.borrow_and_update().map(|held| held.fence);
                    let gained = fence.is_some() && fence != last;
                    last = fence;
                    if gained {
                        return Some(((), (Some(receiver), last, first)));
                    }
                }
            },
        )
    }
}
