//! `calanque-operator`: `crd` prints the PbxCluster CRD; `run` runs the controller (flags →
//! telemetry → Kubernetes client → CRD check → the failover state followed in etcd, when
//! given → controller until SIGTERM/SIGINT).

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser as _;
use futures::StreamExt as _;
use futures::stream::BoxStream;
use kube::api::{Api, ListParams};
use operator::cli::{Cli, Command, RunArgs};
use operator::controller::{self, Context};
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
        Command::Run(args) => run(args).await,
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
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
    let (view, changes, store): (Arc<dyn FailoverView>, BoxStream<'static, ()>, _) =
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
                let store = EtcdStore::connect(&EtcdConfig::new(endpoints))
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
    let mut context = Context::new(client.clone(), view).with_metrics(metrics);
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
    if let Some(follower) = follower {
        follower.abort();
    }
    tracing::info!("calanque operator stopped");
    Ok(())
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
