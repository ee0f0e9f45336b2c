//! `calanque-call-control`: the call-control binary (flags → store and bus → run until
//! SIGTERM/SIGINT).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use call_control::service::{CallControlConfig, start_instrumented};
use clap::Parser;
use directory::{BusSpec, ClientTls, StoreSpec};

/// The calanque call-control service.
#[derive(Debug, Parser)]
#[command(name = "calanque-call-control", version)]
struct Args {
    /// This replica's unique name (the pod name in Kubernetes).
    #[arg(long, env = "CALANQUE_CC_INSTANCE", default_value = "cc-1")]
    instance: String,
    /// This replica's datacenter (the PbxCluster's datacenter name): replicas of the other
    /// datacenter take its calls over when the failover marks it failed (ADR 0020).
    #[arg(long, env = "CALANQUE_DATACENTER", default_value = "")]
    datacenter: String,
    /// etcd endpoints (cluster mode), comma-separated.
    #[arg(long, env = "CALANQUE_ETCD", conflicts_with = "data_dir")]
    etcd: Option<String>,
    /// Directory of the embedded store (all-in-one mode).
    #[arg(long, env = "CALANQUE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// NATS servers, comma-separated.
    #[arg(long, env = "CALANQUE_NATS")]
    nats: String,
    #[command(flatten)]
    etcd_tls: store::cli::EtcdTlsArgs,
    #[command(flatten)]
    nats_tls: bus::cli::NatsTlsArgs,
    /// The SIP domain of every AOR (the edges' `--domain`, by default their realm).
    #[arg(long, env = "CALANQUE_DOMAIN", default_value = "calanque")]
    domain: String,
    /// Seconds a call rings before the caller gets 480.
    #[arg(long, default_value_t = 30)]
    ring_timeout: u64,
    /// Anchor the media of `Relay` sites' calls on the media relays (calanque-media over NATS).
    #[arg(long, env = "CALANQUE_MEDIA_RELAY")]
    media_relay: bool,
    /// Append call records (JSON lines) to this file.
    #[arg(long, env = "CALANQUE_CDR_FILE")]
    cdr_file: Option<PathBuf>,
    #[command(flatten)]
    telemetry: telemetry::TelemetryArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let telemetry = telemetry::ServiceTelemetry::start(
        "call-control",
        &args.telemetry,
        &["bus", "store", "started"],
    )
    .await
    .context("starting telemetry")?;
    let store = match (&args.etcd, &args.data_dir) {
        (Some(endpoints), _) => format!("etcd:{endpoints}"),
        (None, Some(dir)) => format!("embedded:{}", dir.join("calanque.redb").display()),
        (None, None) => bail!("give --etcd (cluster) or --data-dir (all-in-one)"),
    };
    let store: StoreSpec = store.parse().context("the store")?;
    let bus: BusSpec = args.nats.parse().context("the bus")?;
    let tls = ClientTls {
        etcd: args.etcd_tls.tls(),
        nats: args.nats_tls.tls(),
    };
    let (store, bus) = directory::build(&store, &bus, &tls)
        .await
        .context("opening the store and the bus")?;
    let (store, bus) = (telemetry.store(store), telemetry.bus(bus));
    let media: Option<std::sync::Arc<dyn media::MediaControl>> = if args.media_relay {
        Some(std::sync::Arc::new(media::MediaClient::new(
            bus.clone(),
            Duration::from_secs(2),
        )))
    } else {
        None
    };
    let _service = start_instrumented(
        CallControlConfig {
            instance: args.instance,
            datacenter: args.datacenter,
            domain: args.domain,
            ring_timeout: Duration::from_secs(args.ring_timeout),
            cdr_file: args.cdr_file,
            media,
        },
        store,
        bus,
        Some(&telemetry.metrics),
    )
    .await
    .context("starting call-control")?;
    telemetry.readiness.set("started", true);
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tracing::info!("call-control ready");
    #[cfg(unix)]
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    Ok(())
}
