//! What the reconciler knows of failover: the [`FailoverSnapshot`] the failover controller
//! (`operator/failover`) hands over, and where the reconciler reads it from ([`FailoverView`]:
//! [`SnapshotBoard`] in process, [`crate::failover_feed::StateFeed`] from the controller's
//! stored state).
//!
//! The reconciler never decides a failover: it reflects the snapshot into the status (active
//! datacenter, health, history, error budget) and into the objects that follow it (which edge
//! Service answers a lost datacenter's SIP addresses, the shared settings). Without a snapshot
//! it carries the status it recorded last ([`FailoverSnapshot::carried_over`]).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use futures::Stream;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use tokio::sync::watch;

use crate::budget::{Move, Period};
use crate::resource::{
    DatacenterHealth, FailoverRecord, HISTORY_LIMIT, OutageRecord, PbxClusterSpec,
    PbxClusterStatus, serving_datacenters,
};

/// The failover controller's state for one `PbxCluster`, as input to the status and the
/// objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailoverSnapshot {
    /// The datacenter holding the singleton roles (the destination while a failover runs).
    pub active_datacenter: String,
    /// Each datacenter's health, as last judged. A datacenter missing here is not known to be
    /// unhealthy.
    pub datacenters: Vec<DatacenterState>,
    /// Completed failovers, oldest first.
    pub history: Vec<CompletedFailover>,
    /// The failover in progress, if one is.
    pub running: Option<RunningFailover>,
    /// Periods a datacenter was unhealthy, oldest first (the last one open while it lasts).
    pub outages: Vec<Outage>,
}

/// One datacenter's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatacenterState {
    /// The datacenter's name.
    pub name: String,
    /// Whether it serves.
    pub healthy: bool,
    /// Since when it has been in this state.
    pub since: Timestamp,
}

/// A failover that completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedFailover {
    /// Where the singleton roles were.
    pub from: String,
    /// Where they went.
    pub to: String,
    /// Why (`DatacenterLost`, `Failback`, …).
    pub reason: String,
    /// When it began.
    pub started_at: Timestamp,
    /// When the roles were serving again.
    pub completed_at: Timestamp,
}

/// A failover in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningFailover {
    /// Where the singleton roles were.
    pub from: String,
    /// Where they are going.
    pub to: String,
    /// Why.
    pub reason: String,
    /// When it began.
    pub started_at: Timestamp,
}

/// A period a datacenter was unhealthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outage {
    /// The datacenter.
    pub datacenter: String,
    /// When it became unhealthy.
    pub started_at: Timestamp,
    /// When it was healthy again, if it is.
    pub ended_at: Option<Timestamp>,
}

impl FailoverSnapshot {
    /// A cluster the failover controller has said nothing about: the first serving datacenter
    /// holds the roles, no health is known, nothing happened.
    pub fn initial(spec: &PbxClusterSpec) -> FailoverSnapshot {
        FailoverSnapshot {
            active_datacenter: serving_datacenters(spec)
                .next()
                .map(|dc| dc.name.clone())
                .unwrap_or_default(),
            datacenters: Vec::new(),
            history: Vec::new(),
            running: None,
            outages: Vec::new(),
        }
    }

    /// What the status recorded last, read back (used when no failover controller reports):
    /// nothing recorded is lost when the operator restarts without one.
    pub fn carried_over(
        spec: &PbxClusterSpec,
        status: Option<&PbxClusterStatus>,
    ) -> FailoverSnapshot {
        let mut snapshot = FailoverSnapshot::initial(spec);
        let Some(status) = status else {
            return snapshot;
        };
        if let Some(active) = &status.active_datacenter
            && serving_datacenters(spec).any(|dc| &dc.name == active)
        {
            snapshot.active_datacenter = active.clone();
        }
        snapshot.datacenters = status
            .datacenters
            .iter()
            .filter_map(|dc| {
                Some(DatacenterState {
                    name: dc.name.clone(),
                    healthy: dc.healthy,
                    since: dc.since.as_ref()?.0,
                })
            })
            .collect();
        for record in &status.failovers {
            match &record.completed_at {
                Some(completed) => snapshot.history.push(CompletedFailover {
                    from: record.from.clone(),
                    to: record.to.clone(),
                    reason: record.reason.clone(),
                    started_at: record.started_at.0,
                    completed_at: completed.0,
                }),
                None => {
                    snapshot.running = Some(RunningFailover {
                        from: record.from.clone(),
                        to: record.to.clone(),
                        reason: record.reason.clone(),
                        started_at: record.started_at.0,
                    });
                }
            }
        }
        snapshot.outages = status
            .outages
            .iter()
            .map(|outage| Outage {
                datacenter: outage.datacenter.clone(),
                started_at: outage.started_at.0,
                ended_at: outage.ended_at.as_ref().map(|t| t.0),
            })
            .collect();
        snapshot
    }

    /// Whether `datacenter` is reported unhealthy (unknown is not unhealthy).
    pub fn is_unhealthy(&self, datacenter: &str) -> bool {
        self.datacenters
            .iter()
            .any(|dc| dc.name == datacenter && !dc.healthy)
    }

    /// The health entry of `datacenter`, if reported.
    pub fn health(&self, datacenter: &str) -> Option<&DatacenterState> {
        self.datacenters.iter().find(|dc| dc.name == datacenter)
    }

    /// `status.datacenters`.
    pub fn health_records(&self) -> Vec<DatacenterHealth> {
        self.datacenters
            .iter()
            .map(|dc| DatacenterHealth {
                name: dc.name.clone(),
                healthy: dc.healthy,
                since: Some(Time(dc.since)),
            })
            .collect()
    }

    /// `status.failovers`: the newest [`HISTORY_LIMIT`], the running one last.
    pub fn failover_records(&self) -> Vec<FailoverRecord> {
        let mut records: Vec<FailoverRecord> = self
            .history
            .iter()
            .map(|f| FailoverRecord {
                from: f.from.clone(),
                to: f.to.clone(),
                reason: f.reason.clone(),
                started_at: Time(f.started_at),
                completed_at: Some(Time(f.completed_at)),
            })
            .collect();
        records.extend(self.running.iter().map(|f| FailoverRecord {
            from: f.from.clone(),
            to: f.to.clone(),
            reason: f.reason.clone(),
            started_at: Time(f.started_at),
            completed_at: None,
        }));
        newest(records)
    }

    /// `status.outages`: the newest [`HISTORY_LIMIT`].
    pub fn outage_records(&self) -> Vec<OutageRecord> {
        newest(
            self.outages
                .iter()
                .map(|o| OutageRecord {
                    datacenter: o.datacenter.clone(),
                    started_at: Time(o.started_at),
                    ended_at: o.ended_at.map(Time),
                })
                .collect(),
        )
    }

    /// The moves for the error budget, completed and running (all of them, not only the
    /// newest kept).
    pub fn moves(&self) -> Vec<Move> {
        self.history
            .iter()
            .map(|f| Move {
                from: f.from.clone(),
                to: f.to.clone(),
                period: Period {
                    start: f.started_at,
                    end: Some(f.completed_at),
                },
            })
            .chain(self.running.iter().map(|f| Move {
                from: f.from.clone(),
                to: f.to.clone(),
                period: Period {
                    start: f.started_at,
                    end: None,
                },
            }))
            .collect()
    }

    /// `datacenter`'s outage periods for the error budget.
    pub fn outage_periods(&self, datacenter: &str) -> Vec<Period> {
        self.outages
            .iter()
            .filter(|o| o.datacenter == datacenter)
            .map(|o| Period {
                start: o.started_at,
                end: o.ended_at,
            })
            .collect()
    }
}

fn newest<T>(mut records: Vec<T>) -> Vec<T> {
    let excess = records.len().saturating_sub(HISTORY_LIMIT);
    records.drain(..excess);
    records
}

/// Where the reconciler reads the failover controller's snapshot of a cluster.
pub trait FailoverView: Send + Sync + fmt::Debug {
    /// The latest snapshot of the cluster `namespace/name`, if the controller has one.
    fn snapshot(&self, namespace: &str, name: &str) -> Option<FailoverSnapshot>;
}

/// Snapshots published in-process by the failover controller, keyed by cluster, with a change
/// signal the controller's runtime can reconcile on (`Controller::reconcile_all_on`).
#[derive(Debug, Clone)]
pub struct SnapshotBoard {
    snapshots: Arc<Mutex<HashMap<(String, String), FailoverSnapshot>>>,
    changes: Arc<watch::Sender<u64>>,
}

impl Default for SnapshotBoard {
    fn default() -> SnapshotBoard {
        SnapshotBoard {
            snapshots: Arc::default(),
            changes: Arc::new(watch::Sender::new(0)),
        }
    }
}

impl SnapshotBoard {
    /// An empty board.
    pub fn new() -> SnapshotBoard {
        SnapshotBoard::default()
    }

    /// Replaces the snapshot of `namespace/name`.
    pub fn publish(&self, namespace: &str, name: &str, snapshot: FailoverSnapshot) {
        self.snapshots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((namespace.to_owned(), name.to_owned()), snapshot);
        self.changes.send_modify(|version| *version += 1);
    }

    /// Drops the snapshot of a deleted cluster.
    pub fn forget(&self, namespace: &str, name: &str) {
        self.snapshots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(namespace.to_owned(), name.to_owned()));
    }

    /// One item after each publication (publications in a burst may yield one item).
    pub fn changes(&self) -> impl Stream<Item = ()> + Send + 'static {
        change_stream(&self.changes)
    }
}

/// One item after each change `sender` signals (changes in a burst may yield one item).
pub(crate) fn change_stream(
    sender: &watch::Sender<u64>,
) -> impl Stream<Item = ()> + Send + 'static {
    let receiver = sender.subscribe();
    futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.changed().await.ok()?;
        Some(((), receiver))
    })
}

impl FailoverView for SnapshotBoard {
    fn snapshot(&self, namespace: &str, name: &str) -> Option<FailoverSnapshot> {
        self.snapshots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }
}
