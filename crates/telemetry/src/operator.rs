//! The operator's metrics (`docs/metrics.md`, failover rows): leadership (the failover
//! controller's and the reconciler's, by `role`), each datacenter's
//! health as the failover controller sees it, and whether a failover is in progress.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::registry::Metrics;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Role {
    role: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Datacenter {
    datacenter: String,
}

/// Gauges of the operator's failover controller.
#[derive(Debug, Clone)]
pub struct OperatorMetrics {
    leader: Family<Role, Gauge>,
    datacenter_healthy: Family<Datacenter, Gauge>,
    failover_in_progress: Gauge,
}

impl OperatorMetrics {
    /// Registers the operator's metrics in `metrics`.
    pub fn register(metrics: &Metrics) -> OperatorMetrics {
        let operator = OperatorMetrics {
            leader: Family::default(),
            datacenter_healthy: Family::default(),
            failover_in_progress: Gauge::default(),
        };
        metrics.register(
            "calanque_instance_leader",
            "Whether this instance holds a singleton role",
            operator.leader.clone(),
        );
        metrics.register(
            "calanque_datacenter_healthy",
            "The failover controller's view of each datacenter",
            operator.datacenter_healthy.clone(),
        );
        metrics.register(
            "calanque_failover_in_progress",
            "Whether roles are being moved between datacenters",
            operator.failover_in_progress.clone(),
        );
        operator
    }

    /// Whether this instance holds `role` (`failover-controller`, or `operator` for the
    /// PbxCluster reconciler's leadership).
    pub fn set_leader(&self, role: &'static str, holds: bool) {
        self.leader
            .get_or_create(&Role { role })
            .set(i64::from(holds));
    }

    /// The controller's view of `datacenter`.
    pub fn set_datacenter_healthy(&self, datacenter: &str, healthy: bool) {
        self.datacenter_healthy
            .get_or_create(&Datacenter {
                datacenter: datacenter.to_owned(),
            })
            .set(i64::from(healthy));
    }

    /// Whether a failover is in progress.
    pub fn set_failover_in_progress(&self, in_progress: bool) {
        self.failover_in_progress.set(i64::from(in_progress));
    }
}
