//! The status as pure functions: the conditions `Ready`, `Degraded` and `FailoverInProgress`
//! (each with a reason and a message) from the owned Deployments' observed readiness and the
//! failover controller's [`FailoverSnapshot`], and the status assembled with the error budget.
//!
//! Conditions keep their `lastTransitionTime` while their status does not change (the
//! operator-rs builder's rule), so a reconcile that sees nothing new writes nothing new.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::budget::{BudgetInput, error_budget};
use crate::desired::Component;
use crate::failover_view::FailoverSnapshot;
use crate::resource::{PbxCluster, PbxClusterStatus, serving_datacenters};

/// `Ready`: the PBX serves calls.
pub const READY: &str = "Ready";
/// `Degraded`: it serves with less than it should (a datacenter lost, pods not ready).
pub const DEGRADED: &str = "Degraded";
/// `FailoverInProgress`: the singleton roles are moving between datacenters.
pub const FAILOVER_IN_PROGRESS: &str = "FailoverInProgress";

/// How long the status may lag the growing `spentSeconds` of a running failover or outage
/// before it is written again (see [`needs_write`]).
pub const SPENT_WRITE_GRANULARITY_SECONDS: i64 = 60;

/// The readiness of one owned Deployment, as the API server reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadObservation {
    /// The Deployment's name.
    pub name: String,
    /// Its datacenter.
    pub datacenter: String,
    /// Its component.
    pub component: Component,
    /// Replicas the spec asks for.
    pub desired: i32,
    /// Replicas ready (`status.readyReplicas`, 0 when absent).
    pub ready: i32,
}

/// A condition before timestamps: what [`conditions`] decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionState {
    /// `Ready`, `Degraded` or `FailoverInProgress`.
    pub type_: &'static str,
    /// `True` or `False`.
    pub status: bool,
    /// CamelCase reason.
    pub reason: &'static str,
    /// For people.
    pub message: String,
}

fn state(
    type_: &'static str,
    status: bool,
    reason: &'static str,
    message: String,
) -> ConditionState {
    ConditionState {
        type_,
        status,
        reason,
        message,
    }
}

/// The three conditions from what was observed.
///
/// - `FailoverInProgress`: `True`/`FailingOver` while the snapshot has a running failover,
///   else `False`/`Stable`.
/// - `Degraded`: `True`/`NoDatacenterServing` when every serving datacenter is reported
///   unhealthy, `True`/`DatacenterLost` when one is, `True`/`WorkloadsNotReady` when a
///   Deployment has fewer ready replicas than asked; else `False`/`AllDatacentersHealthy`.
/// - `Ready`: `False`/`FailoverInProgress` during a failover, `False`/`NoDatacenterServing`
///   when every serving datacenter is down, `False`/`ActiveDatacenterNotReady` when a component
///   asked for in the active datacenter has no ready replica (or the active datacenter is
///   reported unhealthy); otherwise `True`, `AllDatacentersHealthy` or, when degraded,
///   `ServingDegraded`.
pub fn conditions(
    cluster: &PbxCluster,
    workloads: &[WorkloadObservation],
    snapshot: &FailoverSnapshot,
) -> [ConditionState; 3] {
    let serving: Vec<&str> = serving_datacenters(&cluster.spec)
        .map(|dc| dc.name.as_str())
        .collect();
    let active = snapshot.active_datacenter.as_str();
    let lost: Vec<&str> = serving
        .iter()
        .copied()
        .filter(|dc| snapshot.is_unhealthy(dc))
        .collect();
    let none_serving = !serving.is_empty() && lost.len() == serving.len();
    let since = |dc: &str| {
        snapshot
            .health(dc)
            .map(|h| format!(" since {}", h.since))
            .unwrap_or_default()
    };
    let lost_text = lost
        .iter()
        .map(|dc| format!("{dc} unhealthy{}", since(dc)))
        .collect::<Vec<_>>()
        .join(", ");
    let short: Vec<String> = workloads
        .iter()
        .filter(|w| w.ready < w.desired)
        .map(|w| format!("{} {}/{} ready", w.name, w.ready, w.desired))
        .collect();
    let active_missing: Vec<&str> = workloads
        .iter()
        .filter(|w| w.datacenter == active && w.desired > 0 && w.ready == 0)
        .map(|w| w.component.name())
        .collect();

    let failover = match &snapshot.running {
        Some(running) => state(
            FAILOVER_IN_PROGRESS,
            true,
            "FailingOver",
            format!(
                "moving the singleton roles from {} to {} ({}) since {}",
                running.from, running.to, running.reason, running.started_at
            ),
        ),
        None => state(
            FAILOVER_IN_PROGRESS,
            false,
            "Stable",
            format!("{active} holds the singleton roles"),
        ),
    };

    let degraded = if none_serving {
        state(DEGRADED, true, "NoDatacenterServing", lost_text.clone())
    } else if !lost.is_empty() {
        let serving_alone: Vec<&str> = serving
            .iter()
            .copied()
            .filter(|dc| !lost.contains(dc))
            .collect();
        let mut message = format!("{lost_text}; {} serves alone", serving_alone.join(", "));
        if !short.is_empty() {
            message.push_str(&format!("; {}", short.join(", ")));
        }
        state(DEGRADED, true, "DatacenterLost", message)
    } else if !short.is_empty() {
        state(DEGRADED, true, "WorkloadsNotReady", short.join(", "))
    } else {
        state(
            DEGRADED,
            false,
            "AllDatacentersHealthy",
            "every datacenter and workload is healthy".to_owned(),
        )
    };

    let ready = if let Some(running) = &snapshot.running {
        state(
            READY,
            false,
            "FailoverInProgress",
            format!("the singleton roles are moving to {}", running.to),
        )
    } else if none_serving {
        state(READY, false, "NoDatacenterServing", lost_text)
    } else if snapshot.is_unhealthy(active) {
        state(
            READY,
            false,
            "ActiveDatacenterNotReady",
            format!(
                "{active} holds the singleton roles but is unhealthy{}",
                since(active)
            ),
        )
    } else if !active_missing.is_empty() {
        state(
            READY,
            false,
            "ActiveDatacenterNotReady",
            format!("{active} has no ready {}", active_missing.join(", ")),
        )
    } else if degraded.status {
        let serving_now: Vec<&str> = serving
            .iter()
            .copied()
            .filter(|dc| !lost.contains(dc))
            .collect();
        state(
            READY,
            true,
            "ServingDegraded",
            format!(
                "{} serve{}; {active} holds the singleton roles",
                serving_now.join(" and "),
                if serving_now.len() == 1 { "s" } else { "" }
            ),
        )
    } else {
        state(
            READY,
            true,
            "AllDatacentersHealthy",
            format!(
                "{} serve; {active} holds the singleton roles",
                serving.join(" and ")
            ),
        )
    };
    [ready, degraded, failover]
}

/// Turns decided states into conditions, keeping `lastTransitionTime` from `previous` when the
/// status is unchanged.
pub fn to_conditions(
    states: &[ConditionState],
    previous: &[Condition],
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    states
        .iter()
        .map(|s| {
            let status = if s.status { "True" } else { "False" };
            let last_transition_time = previous
                .iter()
                .find(|c| c.type_ == s.type_ && c.status == status)
                .map_or(Time(now), |c| c.last_transition_time.clone());
            Condition {
                type_: s.type_.to_owned(),
                status: status.to_owned(),
                reason: s.reason.to_owned(),
                message: s.message.clone(),
                last_transition_time,
                observed_generation: generation,
            }
        })
        .collect()
}

/// The whole status: conditions, the snapshot's view and history, the error budget.
pub fn build_status(
    cluster: &PbxCluster,
    workloads: &[WorkloadObservation],
    snapshot: &FailoverSnapshot,
    now: Timestamp,
) -> PbxClusterStatus {
    let generation = cluster.metadata.generation;
    let previous = cluster
        .status
        .as_ref()
        .map_or(&[][..], |s| s.conditions.as_slice());
    let states = conditions(cluster, workloads, snapshot);
    let budget_input = BudgetInput {
        objective: &cluster.spec.slo.objective,
        active: &snapshot.active_datacenter,
        moves: snapshot.moves(),
        serving_outages: serving_datacenters(&cluster.spec)
            .map(|dc| (dc.name.clone(), snapshot.outage_periods(&dc.name)))
            .collect(),
    };
    PbxClusterStatus {
        observed_generation: generation,
        active_datacenter: Some(snapshot.active_datacenter.clone()),
        conditions: to_conditions(&states, previous, generation, now),
        datacenters: snapshot.health_records(),
        failovers: snapshot.failover_records(),
        outages: snapshot.outage_records(),
        error_budget: error_budget(&budget_input, now),
    }
}

/// The status of a resource that failed validation: `Ready` `False` with reason `InvalidSpec`
/// and the error; the rest of the recorded status (history, budget) is kept.
pub fn invalid_status(cluster: &PbxCluster, error: &str, now: Timestamp) -> PbxClusterStatus {
    let mut status = cluster.status.clone().unwrap_or_default();
    let generation = cluster.metadata.generation;
    let ready = state(READY, false, "InvalidSpec", error.to_owned());
    let mut conditions = to_conditions(&[ready], &status.conditions, generation, now);
    conditions.extend(
        status
            .conditions
            .iter()
            .filter(|c| c.type_ != READY)
            .cloned(),
    );
    status.conditions = conditions;
    status.observed_generation = generation;
    status
}

/// Whether `new` must be written over `old`: anything but the error budget's running figures
/// changed, or the spent seconds moved by at least [`SPENT_WRITE_GRANULARITY_SECONDS`]. Every
/// status write triggers a reconcile; without the granularity a running failover (whose spent
/// time grows every second) would make the operator write its status in a loop.
pub fn needs_write(old: Option<&PbxClusterStatus>, new: &PbxClusterStatus) -> bool {
    let Some(old) = old else {
        return true;
    };
    let strip = |s: &PbxClusterStatus| {
        let mut s = s.clone();
        if let Some(budget) = &mut s.error_budget {
            budget.spent_seconds = 0;
            budget.remaining_ratio.clear();
        }
        s
    };
    if strip(old) != strip(new) {
        return true;
    }
    match (&old.error_budget, &new.error_budget) {
        (Some(old), Some(new)) => {
            (new.spent_seconds - old.spent_seconds).abs() >= SPENT_WRITE_GRANULARITY_SECONDS
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests;
