//! The reconciler, in controller-rs' shape: [`reconcile`] and [`error_policy`] for kube's
//! `Controller`, a finalizer (`calanque.io/cleanup`), server-side apply of every desired object,
//! and the status written through the `/status` subresource (merge patch).
//!
//! Every reconcile applies every desired object (field manager `calanque-operator`, forced).
//! An apply whose content equals what the operator applied before is a no-op on the API server
//! (nothing written, `resourceVersion` unchanged) because the builders are deterministic and
//! write canonical values; applying everything each time repairs drift (an edited or deleted
//! object) with no cache of what was applied to lose on restart (ADR 0017). The apply
//! responses carry the Deployments' status, which is what the conditions are computed from.
//!
//! A `calanque.io/failback: <dc>` annotation is handed to the failover controller: the
//! reconciler writes its failback request key in the store, then removes the annotation
//! (merge patch, on the resource version it read). The failover leader validates the request
//! and deletes the key when it acts on it or dismisses it.
//!
//! Only the elected instance writes ([`WriteGate`], `crate::leadership`): a follower's
//! reconcile returns before the finalizer, and a leader checks its leadership again right
//! before each write, so that one deposed mid-reconcile stops at the next write.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt as _};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt as _};
use serde::Serialize;
use serde::de::DeserializeOwned;
use store::{Op, Store, StoreError};
use tokio::time::Instant;

use crate::desired::{
    Component, DesiredError, DesiredObject, FIELD_MANAGER, LABEL_COMPONENT, LABEL_DATACENTER,
    LABEL_MANAGED_BY, Placement, desired_objects, edge_sip_service_name,
};
use crate::failover_view::{FailoverSnapshot, FailoverView};
use crate::leadership::{Fence, WriteGate};
use crate::resource::{FAILBACK_ANNOTATION, PbxCluster, serving_datacenters, validate};
use crate::status::{WorkloadObservation, build_status, invalid_status, needs_write};

/// The finalizer the operator puts on every `PbxCluster`.
pub const FINALIZER: &str = "calanque.io/cleanup";

/// The wall clock, injectable so that tests fix `now`.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// What every reconcile shares.
pub struct Context {
    /// The Kubernetes client.
    pub client: Client,
    /// Where the failover controller's snapshots are read.
    pub failover: Arc<dyn FailoverView>,
    /// The failover controller's store, where failback requests are written; without it a
    /// `calanque.io/failback` annotation stays until there is one.
    pub store: Option<Arc<dyn Store>>,
    /// The operator's gauges (datacenter health, failover in progress), if registered.
    pub metrics: Option<telemetry::OperatorMetrics>,
    /// Whether this instance may write (alone, or while it leads).
    pub gate: WriteGate,
    /// The wall clock.
    pub clock: Clock,
    /// Requeue of a stable cluster (watches trigger the rest).
    pub stable_requeue: Duration,
    /// Requeue while a failover runs or a datacenter is unhealthy, so that the status (spent
    /// budget, conditions) follows.
    pub busy_requeue: Duration,
    failures: Mutex<HashMap<(String, String), u32>>,
}

impl Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("failover", &self.failover)
            .field("store", &self.store)
            .field("gate", &self.gate)
            .field("stable_requeue", &self.stable_requeue)
            .field("busy_requeue", &self.busy_requeue)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// A context on `client` reading snapshots from `failover`, with the system clock, no
    /// metrics, running alone (no election), and requeues of 5 minutes (stable) and 15 seconds
    /// (busy).
    pub fn new(client: Client, failover: Arc<dyn FailoverView>) -> Context {
        Context {
            client,
            failover,
            store: None,
            metrics: None,
            gate: WriteGate::Alone,
            clock: Arc::new(Timestamp::now),
            stable_requeue: Duration::from_secs(300),
            busy_requeue: Duration::from_secs(15),
            failures: Mutex::default(),
        }
    }

    /// With the operator's gauges.
    pub fn with_metrics(mut self, metrics: telemetry::OperatorMetrics) -> Context {
        self.metrics = Some(metrics);
        self
    }

    /// With the failover controller's store (failback requests are written there).
    pub fn with_store(mut self, store: Arc<dyn Store>) -> Context {
        self.store = Some(store);
        self
    }

    /// Writing only while `gate` allows it (the elected leader).
    pub fn with_gate(mut self, gate: WriteGate) -> Context {
        self.gate = gate;
        self
    }

    /// The permission to write now; `Err(NotLeader)` stops the reconcile (see
    /// [`error_policy`]).
    fn writable(&self) -> Result<Option<Fence>, Error> {
        self.gate
            .check(Instant::now())
            .map_err(|_| Error::NotLeader)
    }

    /// With another clock.
    pub fn with_clock(mut self, clock: Clock) -> Context {
        self.clock = clock;
        self
    }

    fn record_failure(&self, key: (String, String)) -> u32 {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let count = failures.entry(key).or_insert(0);
        *count = count.saturating_add(1);
        *count
    }

    fn clear_failures(&self, key: &(String, String)) {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }
}

/// Why a reconcile failed (the controller retries with [`backoff`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The objects could not be built (the resource lacks metadata).
    #[error(transparent)]
    Desired(#[from] DesiredError),
    /// The API server refused or failed an apply.
    #[error("applying {kind} {name}: {source}")]
    Apply {
        /// The object's kind.
        kind: &'static str,
        /// The object's name.
        name: String,
        /// Why.
        #[source]
        source: kube::Error,
    },
    /// Deleting an edge SIP Service during cleanup failed.
    #[error("deleting Service {name}: {source}")]
    Delete {
        /// The Service.
        name: String,
        /// Why.
        #[source]
        source: kube::Error,
    },
    /// Writing the status failed.
    #[error("writing the status: {0}")]
    Status(#[source] kube::Error),
    /// Writing the failback request for the failover controller failed.
    #[error("writing the failback request to {datacenter}: {source}")]
    Failback {
        /// The datacenter asked for.
        datacenter: String,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// Removing the `calanque.io/failback` annotation failed (the request is written).
    #[error("removing the calanque.io/failback annotation: {0}")]
    Annotation(#[source] kube::Error),
    /// This instance lost the leadership during the reconcile: it stopped before the next
    /// write; the new leader reconciles.
    #[error("not the leader any more: stopped writing")]
    NotLeader,
    /// Adding or removing the finalizer failed (or the work it wraps).
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

impl Error {
    /// A short label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Desired(_) => "desired",
            Error::Apply { .. } => "apply",
            Error::Delete { .. } => "delete",
            Error::Status(_) => "status",
            Error::Failback { .. } => "failback",
            Error::Annotation(_) => "annotation",
            Error::NotLeader => "not_leader",
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.kind(),
                _ => "finalizer",
            },
        }
    }
}

fn key_of(cluster: &PbxCluster) -> (String, String) {
    (cluster.namespace().unwrap_or_default(), cluster.name_any())
}

/// Reconciles one `PbxCluster`: adds the finalizer to a new one (and waits for the change),
/// applies and writes the status of a live one, cleans up and releases a deleted one. A
/// follower does nothing (and waits: becoming the leader reconciles every cluster).
pub async fn reconcile(cluster: Arc<PbxCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    if ctx.writable().is_err() {
        tracing::debug!(cluster = %cluster.name_any(), "not the leader: nothing done");
        return Ok(Action::await_change());
    }
    let key = key_of(&cluster);
    let namespace = cluster
        .namespace()
        .ok_or(Error::Desired(DesiredError::Metadata("namespace")))?;
    let api: Api<PbxCluster> = Api::namespaced(ctx.client.clone(), &namespace);
    let result = finalizer(&api, FINALIZER, cluster, |event| async {
        match event {
            FinalizerEvent::Apply(cluster) => apply(&cluster, &ctx).await,
            FinalizerEvent::Cleanup(cluster) => cleanup(&cluster, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    if result.is_ok() {
        ctx.clear_failures(&key);
    }
    result
}

/// The requeue after a failure: 5 s, doubling per consecutive failure of the same cluster, at
/// most 5 minutes.
pub fn backoff(consecutive_failures: u32) -> Duration {
    let exponent = consecutive_failures.saturating_sub(1).min(6);
    Duration::from_secs((5u64 << exponent).min(300))
}

/// Requeues a failed reconcile with [`backoff`]; a reconcile stopped by a lost leadership
/// is not a failure and waits (the new leader reconciles; regaining the lead reconciles all).
pub fn error_policy(cluster: Arc<PbxCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    if error.kind() == "not_leader" {
        tracing::info!(
            cluster = %cluster.name_any(),
            namespace = %cluster.namespace().unwrap_or_default(),
            "leadership lost during the reconcile: stopped writing"
        );
        return Action::await_change();
    }
    let failures = ctx.record_failure(key_of(&cluster));
    let delay = backoff(failures);
    tracing::warn!(
        cluster = %cluster.name_any(),
        namespace = %cluster.namespace().unwrap_or_default(),
        kind = error.kind(),
        failures,
        retry_in_s = delay.as_secs(),
        "reconcile failed: {error}"
    );
    Action::requeue(delay)
}

async fn apply(cluster: &PbxCluster, ctx: &Context) -> Result<Action, Error> {
    let now = (ctx.clock)();
    let namespace = cluster.namespace().unwrap_or_default();
    let name = cluster.name_any();
    if let Err(invalid) = validate(cluster) {
        tracing::warn!(cluster = %name, %namespace, "invalid PbxCluster: {invalid}");
        let status = invalid_status(cluster, &invalid.to_string(), now);
        write_status(cluster, ctx, &status).await?;
        return Ok(Action::await_change());
    }
    if let Some(requested) = cluster.annotations().get(FAILBACK_ANNOTATION) {
        request_failback(cluster, requested, ctx).await?;
    }
    let snapshot = match ctx.failover.snapshot(&namespace, &name) {
        Some(snapshot)
            if serving_datacenters(&cluster.spec)
                .any(|dc| dc.name == snapshot.active_datacenter) =>
        {
            snapshot
        }
        other => {
            if let Some(foreign) = other {
                tracing::warn!(
                    cluster = %name,
                    %namespace,
                    active = %foreign.active_datacenter,
                    "the failover state names an active datacenter this cluster does not \
                     serve from: ignored (another installation's failover controller?)"
                );
            }
            FailoverSnapshot::carried_over(&cluster.spec, cluster.status.as_ref())
        }
    };
    let placement = Placement::new(&cluster.spec, &snapshot);
    let mut workloads = Vec::new();
    for object in desired_objects(cluster, &placement)? {
        match &object {
            DesiredObject::ConfigMap(o) => {
                server_side_apply(ctx, &namespace, o).await?;
            }
            DesiredObject::Deployment(o) => {
                let live = server_side_apply(ctx, &namespace, o.as_ref()).await?;
                workloads.extend(observe(o, &live));
            }
            DesiredObject::Service(o) => {
                server_side_apply(ctx, &namespace, o.as_ref()).await?;
            }
            DesiredObject::PodDisruptionBudget(o) => {
                server_side_apply(ctx, &namespace, o).await?;
            }
        }
    }
    let status = build_status(cluster, &workloads, &snapshot, now);
    if needs_write(cluster.status.as_ref(), &status) {
        write_status(cluster, ctx, &status).await?;
    }
    if let Some(metrics) = &ctx.metrics {
        for dc in &snapshot.datacenters {
            metrics.set_datacenter_healthy(&dc.name, dc.healthy);
        }
        metrics.set_failover_in_progress(snapshot.running.is_some());
    }
    let busy = snapshot.running.is_some()
        || serving_datacenters(&cluster.spec).any(|dc| snapshot.is_unhealthy(&dc.name))
        || workloads.iter().any(|w| w.ready < w.desired);
    Ok(Action::requeue(if busy {
        ctx.busy_requeue
    } else {
        ctx.stable_requeue
    }))
}

/// Hands a `calanque.io/failback` annotation to the failover controller: writes its failback
/// request key (a plain put; the leader validates the datacenter and deletes the key when it
/// acts on it), then removes the annotation with a merge patch that carries the resource
/// version read, so that an annotation changed meanwhile is not removed unseen (the patch is
/// refused, and the next reconcile hands the new one over). An empty annotation is removed
/// without a request. Without a store nothing is written and the annotation stays.
async fn request_failback(
    cluster: &PbxCluster,
    requested: &str,
    ctx: &Context,
) -> Result<(), Error> {
    let namespace = cluster.namespace().unwrap_or_default();
    let name = cluster.name_any();
    let Some(store) = &ctx.store else {
        tracing::warn!(
            cluster = %name,
            %namespace,
            requested,
            "calanque.io/failback is set but the operator has no failover store (--etcd): \
             the annotation stays"
        );
        return Ok(());
    };
    let datacenter = requested.trim();
    if !datacenter.is_empty() {
        write_failback(store.as_ref(), datacenter, ctx).await?;
        tracing::info!(
            cluster = %name,
            %namespace,
            datacenter,
            "failback requested from the failover controller"
        );
    }
    let mut metadata = serde_json::json!({ "annotations": { FAILBACK_ANNOTATION: null } });
    if let Some(version) = cluster.resource_version() {
        metadata["resourceVersion"] = serde_json::Value::String(version);
    }
    ctx.writable()?;
    let api: Api<PbxCluster> = Api::namespaced(ctx.client.clone(), &namespace);
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    api.patch(
        &name,
        &params,
        &Patch::Merge(serde_json::json!({ "metadata": metadata })),
    )
    .await
    .map_err(Error::Annotation)?;
    Ok(())
}

/// Puts the failback request: alone, a plain put; elected, a transaction fenced by the
/// operator's leader key, so that a deposed leader's request is refused by etcd itself.
async fn write_failback(store: &dyn Store, datacenter: &str, ctx: &Context) -> Result<(), Error> {
    let failed = |source| Error::Failback {
        datacenter: datacenter.to_owned(),
        source,
    };
    let value = Bytes::from(datacenter.to_owned());
    let Some(fence) = ctx.writable()? else {
        return store
            .put(failover::state::FAILBACK_KEY, value, None)
            .await
            .map(|_| ())
            .map_err(failed);
    };
    let put = Op::Put {
        key: failover::state::FAILBACK_KEY.to_owned(),
        value,
        lease: None,
    };
    match failover::leader::fenced_txn(store, fence, Vec::new(), vec![put])
        .await
        .map_err(failed)?
    {
        failover::leader::FencedOutcome::Applied(_) => Ok(()),
        // No comparison of ours: any refusal is the fence's.
        failover::leader::FencedOutcome::Deposed | failover::leader::FencedOutcome::Conflict => {
            ctx.gate.deposed(fence);
            Err(Error::NotLeader)
        }
    }
}

/// What the apply response says of a Deployment's readiness.
fn observe(desired: &Deployment, live: &Deployment) -> Option<WorkloadObservation> {
    let labels = desired.labels();
    Some(WorkloadObservation {
        name: desired.name_any(),
        datacenter: labels.get(LABEL_DATACENTER)?.clone(),
        component: Component::from_name(labels.get(LABEL_COMPONENT)?)?,
        desired: desired.spec.as_ref()?.replicas.unwrap_or(1),
        ready: live
            .status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0),
    })
}

/// Applies `object` if this instance may still write.
async fn server_side_apply<K>(ctx: &Context, namespace: &str, object: &K) -> Result<K, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + k8s_openapi::Resource
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    ctx.writable()?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    api.patch(
        &object.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .map_err(|source| Error::Apply {
        kind: <K as k8s_openapi::Resource>::KIND,
        name: object.name_any(),
        source,
    })
}

async fn write_status(
    cluster: &PbxCluster,
    ctx: &Context,
    status: &crate::resource::PbxClusterStatus,
) -> Result<(), Error> {
    ctx.writable()?;
    let api: Api<PbxCluster> =
        Api::namespaced(ctx.client.clone(), &cluster.namespace().unwrap_or_default());
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    api.patch_status(
        &cluster.name_any(),
        &params,
        &Patch::Merge(serde_json::json!({ "status": status })),
    )
    .await
    .map_err(Error::Status)?;
    Ok(())
}

/// Before the finalizer goes: the edge SIP Services are deleted, so that the datacenters'
/// public SIP addresses are released when the `PbxCluster` is gone, not whenever the garbage
/// collector reaches them; everything else goes with the owner references.
async fn cleanup(cluster: &PbxCluster, ctx: &Context) -> Result<Action, Error> {
    let namespace = cluster.namespace().unwrap_or_default();
    let name = cluster.name_any();
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &namespace);
    for dc in serving_datacenters(&cluster.spec) {
        let service = edge_sip_service_name(&name, &dc.name);
        ctx.writable()?;
        match services.delete(&service, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.is_not_found() => {}
            Err(source) => {
                return Err(Error::Delete {
                    name: service,
                    source,
                });
            }
        }
    }
    tracing::info!(cluster = %name, %namespace, "PbxCluster deleted: SIP Services released");
    // The finalizer helper removes the finalizer when this returns: check once more.
    ctx.writable()?;
    Ok(Action::await_change())
}

/// Runs the controller until `shutdown` completes: watches `PbxCluster`s (in `namespace`, or
/// everywhere) and the objects it owns (by the `managed-by` label), and reconciles every
/// cluster on each item of `failover_changes` (a new failover state: `StateFeed::changes`, or
/// `SnapshotBoard::changes`).
pub async fn run(
    client: Client,
    namespace: Option<&str>,
    ctx: Arc<Context>,
    failover_changes: impl Stream<Item = ()> + Send + 'static,
    concurrency: u16,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
    {
        match namespace {
            Some(namespace) => Api::namespaced(client.clone(), namespace),
            None => Api::all(client.clone()),
        }
    }
    let owned = watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={FIELD_MANAGER}"));
    Controller::new(
        api::<PbxCluster>(&client, namespace),
        watcher::Config::default(),
    )
    .owns(api::<Deployment>(&client, namespace), owned.clone())
    .owns(api::<Service>(&client, namespace), owned.clone())
    .owns(
        api::<PodDisruptionBudget>(&client, namespace),
        owned.clone(),
    )
    .owns(api::<ConfigMap>(&client, namespace), owned)
    .reconcile_all_on(failover_changes)
    .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
    .graceful_shutdown_on(shutdown)
    .run(reconcile, error_policy, ctx)
    .for_each(|result| async move {
        match result {
            Ok((object, _)) => tracing::debug!(cluster = %object.name, "reconciled"),
            Err(error) => tracing::debug!("controller: {error}"),
        }
    })
    .await;
}

#[cfg(test)]
mod tests;
