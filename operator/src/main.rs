//! `calanque-operator`: `crd` prints the PbxCluster CRD; `run` runs the controller (flags →
//! telemetry → Kubernetes client → CRD check → with etcd: the failover state followed and the
//! campaign for the leadership → controller until SIGTERM/SIGINT → resign).

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser as _;
use failover::leader::{Leadership, LeadershipConfig};
use futures::StreamExt as _;
use futures::stream::BoxStream;
use kube::api::{Api, ListParams};
use operator::cli::{Cli, Command, RunArgs};
use operator::controller::{self, Context};
use operator::leadership::{self, WriteGate};
use operator::{FailoverView, PbxCluster, SnapshotBoard, StateFeed};
use store::etcd::{EtcdConfig, EtcdStore};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            let yaml = operator::crdgen::crd_yaml().context("serialising the CRD")?;
            std::io::stdout()
                .lock()
                .write_all(yaml.as_bytes())
                .context("writing the CRD")?;
            Ok(())
        }
        Command::Run(args) => run(*args).await,
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    // TLS files that would go unused look like a secured connection that is not (ADR 0019).
    if args.etcd.is_none() && !args.etcd_tls.tls().is_empty() {
        anyhow::bail!("--etcd-ca-file/--etcd-cert-file/--etcd-key-file need --etcd");
    }
    let conditions: &[&'static str] = if args.etcd.is_none() {
        &["kubernetes"]
    } else {
        &["kubernetes", "store"]
    };
    let telemetry = telemetry::ServiceTelemetry::start("operator", &args.telemetry, conditions)
        .await
        .context("starting telemetry")?;
    let metrics = telemetry::OperatorMetrics::register(&telemetry.metrics);
    let client = kube::Client::try_default()
        .await
        .context("creating the Kubernetes client (in-cluster or kubeconfig)")?;
    let clusters: Api<PbxCluster> = match &args.namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    clusters
        .list(&ListParams::default().limit(1))
        .await
        .context("listing PbxClusters: is the CRD installed (calanque-operator crd | kubectl apply -f -)?")?;
    telemetry.readiness.set("kubernetes", true);
    // With the failover controller's store: its state, followed, is every cluster's snapshot
    // (a new state reconciles them all) and failback requests are written there. Without it,
    // an empty board: each cluster's recorded failover state is carried over.
    let mut follower = None;
    let (view, failover_changes, store): (Arc<dyn FailoverView>, BoxStream<'static, ()>, _) =
        match &args.etcd {
            None => {
                let board = SnapshotBoard::new();
                (Arc::new(board.clone()), board.changes().boxed(), None)
            }
            Some(endpoints) => {
                let endpoints = endpoints
                    .split(',')
                    .map(str::trim)
                    .filter(|e| !e.is_empty());
                let config = EtcdConfig::new(endpoints).with_tls(args.etcd_tls.tls());
                let store = EtcdStore::connect(&config)
                    .await
                    .context("connecting to etcd")?;
                let store = telemetry.store(Arc::new(store));
                let feed = StateFeed::new();
                // Subscribed before the first state can arrive, so that it reconciles too.
                let changes = feed.changes().boxed();
                follower = Some(tokio::spawn(feed.clone().follow(store.clone())));
                (Arc::new(feed), changes, Some(store))
            }
        };
    // With etcd, the instances (one per datacenter) elect the one that writes; alone, this
    // one writes.
    let leadership = store.as_ref().map(|store| {
        Leadership::spawn(
            store.clone(),
            LeadershipConfig {
                key: leadership::LEADER_KEY,
                instance: instance_name(args.instance.as_deref()),
                ttl: Duration::from_secs(args.lease_ttl_seconds),
                // A quarter of the TTL: a follower takes a resigned or revoked leadership
                // within a renewal period (a third).
                campaign_every: Duration::from_secs(args.lease_ttl_seconds) / 4,
            },
        )
    });
    let gate = match &leadership {
        Some(leadership) => WriteGate::Elected(leadership.handle()),
        None => WriteGate::Alone,
    };
    let role_gauge = tokio::spawn(follow_role(gate.clone(), metrics.clone()));
    // A follower answers every trigger with nothing, so becoming the leader reconciles all.
    let changes = futures::stream::select(failover_changes, gate.acquisitions().boxed()).boxed();
    let mut context = Context::new(client.clone(), view)
        .with_metrics(metrics.clone())
        .with_gate(gate);
    if let Some(store) = store {
        context = context.with_store(store);
    }
    context.stable_requeue = Duration::from_secs(args.requeue_seconds);
    context.busy_requeue = Duration::from_secs(args.busy_requeue_seconds);
    tracing::info!(namespace = ?args.namespace, etcd = ?args.etcd, "calanque operator running");
    controller::run(
        client,
        args.namespace.as_deref(),
        Arc::new(context),
        changes,
        args.concurrency,
        shutdown_signal()?,
    )
    .await;
    // The reconciles have finished: resign, so that the other instance takes over now rather
    // than after the TTL.
    role_gauge.abort();
    if let Some(leadership) = leadership {
        leadership.stop().await;
    }
    metrics.set_leader(leadership::LEADER_ROLE, false);
    if let Some(follower) = follower {
        follower.abort();
    }
    tracing::info!("calanque operator stopped");
    Ok(())
}

/// The name campaigned under: `--instance`, else the host name (the pod's name in
/// Kubernetes), else one from the process id.
fn instance_name(instance: Option<&str>) -> String {
    instance
        .map(str::to_owned)
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| format!("calanque-operator-{}", std::process::id()))
}

/// Keeps `calanque_instance_leader{role="operator"}` on the leadership (1 alone).
async fn follow_role(gate: WriteGate, metrics: telemetry::OperatorMetrics) {
    let mut receiver = match gate {
        WriteGate::Alone => {
            metrics.set_leader(leadership::LEADER_ROLE, true);
            return;
        }
        WriteGate::Elected(handle) => handle.subscribe(),
    };
    loop {
        let leads = receiver.borrow_and_update().is_some();
        metrics.set_leader(leadership::LEADER_ROLE, leads);
        if receiver.changed().await.is_err() {
            return;
        }
    }
}

/// Completes on SIGTERM or SIGINT; the handlers are installed when this returns.
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()> + Send + Sync + 'static> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    })
}
