//! The failover controller's stored state as the reconciler's [`FailoverView`]: [`StateFeed`]
//! follows `calanque/v1/failover/state` ([`failover::watch_state`]), turns each state into a
//! [`FailoverSnapshot`] ([`snapshot_from_state`], pure) and signals a change, on which the
//! controller reconciles every `PbxCluster` (`Controller::reconcile_all_on`).
//!
//! One failover controller serves one installation (one etcd), so the snapshot is handed to
//! every cluster this operator reconciles; the reconciler ignores it for a cluster whose serving
//! datacenters do not include the snapshot's active datacenter (another installation's state).

use std::sync::{Arc, Mutex, PoisonError};

use failover::FailoverState;
use failover::state::{MoveReason, Phase};
use futures::{Stream, StreamExt as _};
use k8s_openapi::jiff::Timestamp;
use store::Store;
use tokio::sync::watch;

use crate::failover_view::{
    CompletedFailover, DatacenterState, FailoverSnapshot, FailoverView, Outage, RunningFailover,
    change_stream,
};

/// The snapshot a stored failover state stands for:
///
/// - the active datacenter (the destination while a move runs);
/// - `datacenters`: the leader's health view (healthy or not since its streak began), plus any
///   datacenter marked failed that the view does not know (yet), as unhealthy since the mark —
///   so a state written before the view existed, or a new leader's first detection period,
///   does not make a failed datacenter look healthy;
/// - `running`: the move in progress (from, to the active datacenter, why, since its start);
/// - `history`: the completed moves; `outages`: the outages, open ones without an end.
///
/// Reasons are the `FailoverReason` names: `DatacenterLost`, `FailbackRequested`,
/// `FailbackAutomatic`. Times are the state's wall-clock milliseconds.
pub fn snapshot_from_state(state: &FailoverState) -> FailoverSnapshot {
    let mut datacenters: Vec<DatacenterState> = state
        .health
        .iter()
        .map(|h| DatacenterState {
            name: h.datacenter.clone(),
            healthy: h.healthy,
            since: time(h.since_unix_ms),
        })
        .collect();
    for failed in &state.failed {
        if !datacenters.iter().any(|dc| dc.name == failed.datacenter) {
            datacenters.push(DatacenterState {
                name: failed.datacenter.clone(),
                healthy: false,
                since: time(failed.since_unix_ms),
            });
        }
    }
    let running = match &state.phase {
        Phase::Stable => None,
        Phase::Moving {
            from,
            reason,
            since_unix_ms,
        } => Some(RunningFailover {
            from: from.clone(),
            to: state.active.clone(),
            reason: reason_name(*reason).to_owned(),
            started_at: time(*since_unix_ms),
        }),
    };
    FailoverSnapshot {
        active_datacenter: state.active.clone(),
        datacenters,
        history: state
            .moves
            .iter()
            .map(|m| CompletedFailover {
                from: m.from.clone(),
                to: m.to.clone(),
                reason: reason_name(m.reason).to_owned(),
                started_at: time(m.started_unix_ms),
                completed_at: time(m.completed_unix_ms),
            })
            .collect(),
        running,
        outages: state
            .outages
            .iter()
            .map(|o| Outage {
                datacenter: o.datacenter.clone(),
                started_at: time(o.started_unix_ms),
                ended_at: o.ended_unix_ms.map(time),
            })
            .collect(),
    }
}

/// The status's name of a move's reason.
pub fn reason_name(reason: MoveReason) -> &'static str {
    match reason {
        MoveReason::DatacenterLost => "DatacenterLost",
        MoveReason::FailbackRequested => "FailbackRequested",
        MoveReason::FailbackAutomatic => "FailbackAutomatic",
    }
}

/// Milliseconds since the Unix epoch; the epoch itself for a value out of jiff's range (only
/// garbage is).
fn time(unix_ms: i64) -> Timestamp {
    Timestamp::from_millisecond(unix_ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// The latest failover state's snapshot, for every cluster, with a change signal for
/// `Controller::reconcile_all_on`.
#[derive(Debug, Clone)]
pub struct StateFeed {
    latest: Arc<Mutex<Option<FailoverSnapshot>>>,
    changes: Arc<watch::Sender<u64>>,
}

impl Default for StateFeed {
    fn default() -> StateFeed {
        StateFeed {
            latest: Arc::default(),
            changes: Arc::new(watch::Sender::new(0)),
        }
    }
}

impl StateFeed {
    /// A feed that has seen no state yet (the reconciler carries the recorded status over).
    pub fn new() -> StateFeed {
        StateFeed::default()
    }

    /// Takes `state` as the latest and signals the change.
    pub fn publish(&self, state: &FailoverState) {
        let snapshot = snapshot_from_state(state);
        *self.latest.lock().unwrap_or_else(PoisonError::into_inner) = Some(snapshot);
        self.changes.send_modify(|version| *version += 1);
    }

    /// One item after each new state (states in a burst may yield one item).
    pub fn changes(&self) -> impl Stream<Item = ()> + Send + 'static {
        change_stream(&self.changes)
    }

    /// Follows the failover state in `store` and publishes each one; runs until dropped
    /// (spawn it). Reconnects by itself ([`failover::watch_state`]).
    pub async fn follow(self, store: Arc<dyn Store>) {
        let mut states = std::pin::pin!(failover::watch_state(store));
        while let Some(state) = states.next().await {
            tracing::info!(
                epoch = state.epoch,
                active = %state.active,
                moving = state.is_moving(),
                writes = state.writes,
                "failover state received"
            );
            self.publish(&state);
        }
    }
}

impl FailoverView for StateFeed {
    fn snapshot(&self, _namespace: &str, _name: &str) -> Option<FailoverSnapshot> {
        self.latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests;
