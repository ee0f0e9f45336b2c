//! What every service binary does with telemetry, in one place: init logging and tracing,
//! create the registry and the readiness conditions, serve the endpoints, and wrap the store
//! and the bus so they are measured and carry trace context.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::bus::{BusMetrics, InstrumentedBus};
use crate::config::TelemetryArgs;
use crate::health::Readiness;
use crate::init::{TelemetryError, TelemetryGuard, init};
use crate::registry::Metrics;
use crate::store::{InstrumentedStore, StoreMetrics};

/// A service's telemetry: keep it alive for the process's lifetime (dropping it flushes spans
/// and stops the endpoints).
#[derive(Debug)]
pub struct ServiceTelemetry {
    /// The registry the service registers its metric groups in.
    pub metrics: Metrics,
    /// Conditions `/readyz` reports: `bus`, `store` (kept by the decorators) and `started`
    /// (set by the service once its caches are loaded and it serves).
    pub readiness: Readiness,
    /// Where the endpoints listen, if they do.
    pub endpoints: Option<SocketAddr>,
    server: Option<JoinHandle<()>>,
    _guard: TelemetryGuard,
}

impl Drop for ServiceTelemetry {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// Why a service's telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceTelemetryError {
    /// Logging or tracing.
    #[error(transparent)]
    Init(#[from] TelemetryError),
    /// The endpoints' address could not be bound.
    #[error("binding the telemetry endpoints on {address}: {source}")]
    Bind {
        /// The configured address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

impl ServiceTelemetry {
    /// Starts telemetry for `service` (`edge`, `call-control`, `media`, `directory`,
    /// `operator`): the `service.name` of its spans and the `service` label of its build info.
    pub async fn start(
        service: &'static str,
        args: &TelemetryArgs,
        conditions: &[&'static str],
    ) -> Result<ServiceTelemetry, ServiceTelemetryError> {
        let guard = init(service, args)?;
        let metrics = Metrics::new(service);
        let readiness = Readiness::new(conditions, Some(&metrics));
        let (endpoints, server) = match args.telemetry_listen {
            Some(address) => {
                let (local, task) = crate::http::serve(address, metrics.clone(), readiness.clone())
                    .await
                    .map_err(|source| ServiceTelemetryError::Bind { address, source })?;
                tracing::info!(%local, "telemetry endpoints listening");
                (Some(local), Some(task))
            }
            None => (None, None),
        };
        Ok(ServiceTelemetry {
            metrics,
            readiness,
            endpoints,
            server,
            _guard: guard,
        })
    }

    /// The store, measured and feeding the `store` readiness condition.
    pub fn store(&self, store: Arc<dyn store::Store>) -> Arc<dyn store::Store> {
        Arc::new(
            InstrumentedStore::new(store, StoreMetrics::register(&self.metrics))
                .with_readiness(self.readiness.clone()),
        )
    }

    /// The bus, measured, carrying trace context, and feeding the `bus` readiness condition.
    pub fn bus(&self, bus: Arc<dyn bus::Bus>) -> Arc<dyn bus::Bus> {
        Arc::new(
            InstrumentedBus::new(bus, BusMetrics::register(&self.metrics))
                .with_readiness(self.readiness.clone()),
        )
    }
}
