//! `calanque-operator`: `crd` prints the PbxCluster CRD; `run` runs the controller (flags →
//! telemetry → Kubernetes client → CRD check → controller until SIGTERM/SIGINT).

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser as _;
use kube::api::{Api, ListParams};
use operator::PbxCluster;
use operator::SnapshotBoard;
use operator::cli::{Cli, Command, RunArgs};
use operator::controller::{self, Context};

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
    let telemetry =
        telemetry::ServiceTelemetry::start("operator", &args.telemetry, &["kubernetes"])
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
    // The failover controller publishes here once it is wired in; until then each cluster's
    // recorded failover state is carried over.
    let board = SnapshotBoard::new();
    let mut context = Context::new(client.clone(), Arc::new(board.clone())).with_metrics(metrics);
    context.stable_requeue = Duration::from_secs(args.requeue_seconds);
    context.busy_requeue = Duration::from_secs(args.busy_requeue_seconds);
    tracing::info!(namespace = ?args.namespace, "calanque operator running");
    controller::run(
        client,
        args.namespace.as_deref(),
        Arc::new(context),
        &board,
        args.concurrency,
        shutdown_signal()?,
    )
    .await;
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
