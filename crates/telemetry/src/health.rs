//! Readiness: named conditions a service sets as it starts and as its dependencies come and
//! go; `/readyz` is 200 only when all hold. Liveness (`/healthz`) is the HTTP server answering.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::registry::Metrics;

/// The readiness conditions of a process (cheap clone, shared).
#[derive(Debug, Clone)]
pub struct Readiness {
    conditions: Arc<Mutex<BTreeMap<&'static str, bool>>>,
    metrics: Option<Metrics>,
}

impl Readiness {
    /// Not ready until each of `conditions` is set true (e.g. `bus`, `store`, `directory`).
    pub fn new(conditions: &[&'static str], metrics: Option<&Metrics>) -> Readiness {
        let readiness = Readiness {
            conditions: Arc::new(Mutex::new(
                conditions.iter().map(|name| (*name, false)).collect(),
            )),
            metrics: metrics.cloned(),
        };
        readiness.publish();
        readiness
    }

    /// Sets one condition (adding it if new).
    /// The bus and store wrappers call this after every operation: when the condition is
    /// unchanged, readiness is not recomputed and the gauge not touched.
    pub fn set(&self, condition: &'static str, holds: bool) {
        if self.lock().insert(condition, holds) == Some(holds) {
            return;
        }
        self.publish();
    }

    /// Whether every condition holds.
    pub fn is_ready(&self) -> bool {
        self.lock().values().all(|holds| *holds)
    }

    /// The conditions that do not hold, for `/readyz`'s body.
    pub fn failing(&self) -> Vec<&'static str> {
        self.lock()
            .iter()
            .filter(|(_, holds)| !**holds)
            .map(|(name, _)| *name)
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, bool>> {
        self.conditions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn publish(&self) {
        if let Some(metrics) = &self.metrics {
            // Under the lock: two changes published at once cannot leave the older one last.
            let conditions = self.lock();
            for (condition, holds) in conditions.iter() {
                metrics
                    .ready_condition_gauge(condition)
                    .set(i64::from(*holds));
            }
            metrics
                .ready_gauge()
                .set(i64::from(conditions.values().all(|holds| *holds)));
        }
    }
}
