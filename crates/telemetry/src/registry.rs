//! The Prometheus registry of a process. Metric handles are cheap clones sharing their values;
//! the registry only needs locking to register (at start) and to encode (`/metrics`).

use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Metric, Registry};

/// A process's metrics: register groups into it, encode it for `/metrics`.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    /// Every metric registered, as exposed (`_total` on counters) with its type: families
    /// without samples are left out of the exposition, so the catalogue test reads this.
    registered: Arc<Mutex<Vec<(String, String)>>>,
    ready: Gauge,
    ready_conditions: Family<Condition, Gauge>,
}

/// One readiness condition (`bus`, `store`, `started`…): a short, fixed set per service.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Condition {
    condition: &'static str,
}

impl Metrics {
    /// A registry for `service` (`edge`, `call-control`…), with `calanque_build_info` and
    /// `calanque_ready` in it.
    pub fn new(service: &str) -> Metrics {
        let metrics = Metrics {
            registry: Arc::new(Mutex::new(Registry::default())),
            registered: Arc::new(Mutex::new(Vec::new())),
            ready: Gauge::default(),
            ready_conditions: Family::default(),
        };
        let build_info = Family::<Vec<(String, String)>, Gauge>::default();
        build_info
            .get_or_create(&vec![
                ("version".to_owned(), env!("CARGO_PKG_VERSION").to_owned()),
                ("service".to_owned(), service.to_owned()),
            ])
            .set(1);
        metrics.register(
            "calanque_build_info",
            "The running build (always 1)",
            build_info,
        );
        metrics.register(
            "calanque_ready",
            "Whether the service is ready (what /readyz answers)",
            metrics.ready.clone(),
        );
        metrics.register(
            "calanque_ready_condition",
            "Whether each readiness condition holds (the one at 0 is why calanque_ready is 0)",
            metrics.ready_conditions.clone(),
        );
        metrics
    }

    /// Registers one metric under its catalogue name (counters get `_total` when encoded).
    pub(crate) fn register(&self, name: &str, help: &str, metric: impl Metric) {
        let kind = format!("{:?}", metric.metric_type()).to_lowercase();
        let exposed = if kind == "counter" {
            format!("{name}_total")
        } else {
            name.to_owned()
        };
        self.registered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((exposed, kind));
        self.registry
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .register(name, help, metric);
    }

    /// Every metric registered so far: its exposed name and type (`counter`, `gauge`,
    /// `histogram`).
    pub fn registered(&self) -> Vec<(String, String)> {
        self.registered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn ready_gauge(&self) -> &Gauge {
        &self.ready
    }

    pub(crate) fn ready_condition_gauge(&self, condition: &'static str) -> Gauge {
        self.ready_conditions
            .get_or_create(&Condition { condition })
            .clone()
    }

    /// The text exposition of every metric (OpenMetrics text, which Prometheus scrapes).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        let registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &registry);
        text
    }
}
