//! Store metrics, and a [`Store`] decorator that records them.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use store::{Compare, KeyValue, LeaseId, Op, Revision, Store, StoreError, TxnOutcome, Watch};

use crate::health::Readiness;
use crate::registry::Metrics;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Operation {
    operation: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationKind {
    operation: &'static str,
    kind: &'static str,
}

fn latency_histogram() -> Histogram {
    // 250 µs … 5 s: an etcd write is a few ms (one fsync on a quorum); seconds mean trouble.
    Histogram::new([
        0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    ])
}

/// Store latency and errors.
#[derive(Debug, Clone)]
pub struct StoreMetrics {
    seconds: Family<Operation, Histogram, fn() -> Histogram>,
    errors: Family<OperationKind, Counter>,
}

impl StoreMetrics {
    /// Registers the store metrics in `metrics`.
    pub fn register(metrics: &Metrics) -> StoreMetrics {
        let store = StoreMetrics {
            seconds: Family::new_with_constructor(latency_histogram),
            errors: Family::default(),
        };
        metrics.register(
            "calanque_store_operation_seconds",
            "Store operation latency",
            store.seconds.clone(),
        );
        metrics.register(
            "calanque_store_errors",
            "Store operations that failed",
            store.errors.clone(),
        );
        store
    }

    fn record<T>(
        &self,
        operation: &'static str,
        start: std::time::Instant,
        result: &Result<T, StoreError>,
    ) {
        self.seconds
            .get_or_create(&Operation { operation })
            .observe(start.elapsed().as_secs_f64());
        if let Err(error) = result {
            let kind = match error {
                StoreError::Unavailable(_) => "unavailable",
                StoreError::LeaseNotFound(_) => "lease_not_found",
                StoreError::Compacted { .. } => "compacted",
                StoreError::TooLarge(_) => "too_large",
                _ => "other",
            };
            self.errors
                .get_or_create(&OperationKind { operation, kind })
                .inc();
        }
    }
}

/// A [`Store`] that times every operation and counts failures.
#[derive(Debug, Clone)]
pub struct InstrumentedStore {
    inner: Arc<dyn Store>,
    metrics: StoreMetrics,
    readiness: Option<Readiness>,
}

impl InstrumentedStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Store>, metrics: StoreMetrics) -> InstrumentedStore {
        InstrumentedStore {
            inner,
            metrics,
            readiness: None,
        }
    }

    /// Also keeps readiness condition `store` true while operations succeed and false after
    /// one failed because the store is unreachable.
    pub fn with_readiness(mut self, readiness: Readiness) -> InstrumentedStore {
        self.readiness = Some(readiness);
        self
    }

    fn record<T>(
        &self,
        operation: &'static str,
        start: std::time::Instant,
        result: &Result<T, StoreError>,
    ) {
        self.metrics.record(operation, start, result);
        if let Some(readiness) = &self.readiness {
            match result {
                Ok(_) => readiness.set("store", true),
                Err(StoreError::Unavailable(_)) => readiness.set("store", false),
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
impl Store for InstrumentedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let start = started();
        let result = self.inner.get(key).await;
        self.record("get", start, &result);
        result
    }

    async fn list_prefix(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision), StoreError> {
        let start = started();
        let result = self.inner.list_prefix(prefix).await;
        self.record("list", start, &result);
        result
    }

    async fn put(
        &self,
        key: &str,
        value: Bytes,
        lease: Option<LeaseId>,
    ) -> Result<Revision, StoreError> {
        let start = started();
        let result = self.inner.put(key, value, lease).await;
        self.record("put", start, &result);
        result
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let start = started();
        let result = self.inner.delete(key).await;
        self.record("delete", start, &result);
        result
    }

    async fn txn(&self, compares: Vec<Compare>, ops: Vec<Op>) -> Result<TxnOutcome, StoreError> {
        let start = started();
        let result = self.inner.txn(compares, ops).await;
        self.record("txn", start, &result);
        result
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        let start = started();
        let result = self.inner.grant_lease(ttl).await;
        self.record("lease", start, &result);
        result
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
        let start = started();
        let result = self.inner.keep_alive(lease).await;
        self.record("lease", start, &result);
        result
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError> {
        let start = started();
        let result = self.inner.revoke_lease(lease).await;
        self.record("lease", start, &result);
        result
    }

    async fn watch(&self, prefix: &str, from_revision: Revision) -> Result<Watch, StoreError> {
        let start = started();
        let result = self.inner.watch(prefix, from_revision).await;
        self.record("watch", start, &result);
        result
    }
}
