//! Bus metrics, and a [`Bus`] decorator that records them and carries the trace context.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bus::{Bus, BusError, BusHeaders, BusMessage, Subscription};
use bytes::Bytes;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use crate::health::Readiness;
use crate::registry::Metrics;

/// The header naming a message's protobuf type (`proto::subjects::TYPE_HEADER`; not imported
/// to keep this crate below `proto`).
const TYPE_HEADER: &str = "calanque-type";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Operation {
    operation: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationKind {
    operation: &'static str,
    kind: &'static str,
}

fn latency_histogram() -> Histogram {
    // 100 µs … ~2.5 s: a bus round trip on a LAN is well under a millisecond.
    Histogram::new([
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    ])
}

/// Bus latency, errors and connection state.
#[derive(Debug, Clone)]
pub struct BusMetrics {
    request_seconds: Family<Operation, Histogram, fn() -> Histogram>,
    errors: Family<OperationKind, Counter>,
    connected: Gauge,
}

impl BusMetrics {
    /// Registers the bus metrics in `metrics`.
    pub fn register(metrics: &Metrics) -> BusMetrics {
        let bus = BusMetrics {
            request_seconds: Family::new_with_constructor(latency_histogram),
            errors: Family::default(),
            connected: Gauge::default(),
        };
        metrics.register(
            "calanque_bus_request_seconds",
            "Bus request/reply latency seen by the requester",
            bus.request_seconds.clone(),
        );
        metrics.register(
            "calanque_bus_errors",
            "Bus operations that failed",
            bus.errors.clone(),
        );
        metrics.register(
            "calanque_bus_connected",
            "Whether the bus connection is up",
            bus.connected.clone(),
        );
        bus.connected.set(1);
        bus
    }

    fn outcome<T>(&self, operation: &'static str, result: &Result<T, BusError>) {
        match result {
            Ok(_) => {
                self.connected.set(1);
            }
            Err(error) => {
                let kind = match error {
                    BusError::Timeout { .. } => "timeout",
                    BusError::NoResponders(_) => "no_responders",
                    BusError::Disconnected(_) | BusError::Connect { .. } => {
                        self.connected.set(0);
                        "disconnected"
                    }
                    _ => "other",
                };
                self.errors
                    .get_or_create(&OperationKind { operation, kind })
                    .inc();
            }
        }
    }
}

/// A [`Bus`] that times requests, counts failures, and puts the current trace context into
/// the headers of every message it sends.
#[derive(Debug, Clone)]
pub struct InstrumentedBus {
    inner: Arc<dyn Bus>,
    metrics: BusMetrics,
    readiness: Option<Readiness>,
}

impl InstrumentedBus {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Bus>, metrics: BusMetrics) -> InstrumentedBus {
        InstrumentedBus {
            inner,
            metrics,
            readiness: None,
        }
    }

    /// Also keeps readiness condition `bus` true while operations succeed and false after one
    /// failed because the connection is down.
    pub fn with_readiness(mut self, readiness: Readiness) -> InstrumentedBus {
        self.readiness = Some(readiness);
        self
    }

    fn outcome<T>(&self, operation: &'static str, result: &Result<T, BusError>) {
        self.metrics.outcome(operation, result);
        if let Some(readiness) = &self.readiness {
            match result {
                Ok(_) => readiness.set("bus", true),
                Err(BusError::Disconnected(_) | BusError::Connect { .. }) => {
                    readiness.set("bus", false)
                }
                Err(_) => {}
            }
        }
    }
}

#[allow(clippy::disallowed_methods)] // a latency measurement at the I/O boundary
fn started() -> std::time::Instant {
    std::time::Instant::now()
}

#[async_trait]
impl Bus for InstrumentedBus {
    async fn publish(
        &self,
        subject: &str,
        mut headers: BusHeaders,
        payload: Bytes,
    ) -> Result<(), BusError> {
        crate::propagation::inject_current(&mut headers);
        let result = self.inner.publish(subject, headers, payload).await;
        self.outcome("publish", &result);
        result
    }

    async fn subscribe(&self, subject: &str) -> Result<Subscription, BusError> {
        let result = self.inner.subscribe(subject).await;
        self.outcome("subscribe", &result);
        result
    }

    async fn queue_subscribe(&self, subject: &str, group: &str) -> Result<Subscription, BusError> {
        let result = self.inner.queue_subscribe(subject, group).await;
        self.outcome("subscribe", &result);
        result
    }

    async fn request(
        &self,
        subject: &str,
        mut headers: BusHeaders,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<BusMessage, BusError> {
        crate::propagation::inject_current(&mut headers);
        let operation = headers.get(TYPE_HEADER).unwrap_or("untyped").to_owned();
        let start = started();
        let result = self.inner.request(subject, headers, payload, timeout).await;
        if result.is_ok() {
            self.metrics
                .request_seconds
                .get_or_create(&Operation { operation })
                .observe(start.elapsed().as_secs_f64());
        }
        self.outcome("request", &result);
        result
    }

    async fn reply(
        &self,
        request: &BusMessage,
        mut headers: BusHeaders,
        payload: Bytes,
    ) -> Result<(), BusError> {
        crate::propagation::inject_current(&mut headers);
        let result = self.inner.reply(request, headers, payload).await;
        self.outcome("reply", &result);
        result
    }

    async fn flush(&self) -> Result<(), BusError> {
        let result = self.inner.flush().await;
        self.outcome("flush", &result);
        result
    }
}
