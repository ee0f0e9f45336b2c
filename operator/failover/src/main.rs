//! `calanque-failover`: the failover controller binary (flags → telemetry → store and bus →
//! probe, plan and act under the lease until SIGTERM/SIGINT → resign).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use bus::{NatsBus, NatsOptions};
use clap::Parser;
use failover::probe::{DatacenterTargets, Prober};
use failover::{Controller, ControllerConfig, PlannerConfig};
use store::Store;
use store::embedded::EmbeddedStore;
use store::etcd::{EtcdConfig, EtcdStore};
use telemetry::{OperatorMetrics, ServiceTelemetry, TelemetryArgs};

/// The calanque failover controller: one leader (an etcd lease) moves the singleton roles and
/// call-control/media ownership to the other datacenter when one is lost.
#[derive(Debug, Parser)]
#[command(name = "calanque-failover", version)]
struct Args {
    /// This instance's unique name (the pod name in Kubernetes).
    #[arg(long, env = "CALANQUE_FAILOVER_INSTANCE")]
    instance: String,
    /// etcd endpoints (cluster mode), comma-separated.
    #[arg(long, env = "CALANQUE_ETCD", conflicts_with = "data_dir")]
    etcd: Option<String>,
    /// Client TLS towards etcd (`https://` endpoints).
    #[command(flatten)]
    etcd_tls: store::cli::EtcdTlsArgs,
    /// Directory of the embedded store (all-in-one mode).
    #[arg(long, env = "CALANQUE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// NATS servers, comma-separated; without it the state is announced only in the store.
    #[arg(long, env = "CALANQUE_NATS")]
    nats: Option<String>,
    /// Client TLS towards NATS (`tls://` URLs, or any file given).
    #[command(flatten)]
    nats_tls: bus::cli::NatsTlsArgs,
    /// A serving datacenter: `NAME=sip:IP:PORT[,sip:IP:PORT…][,readyz:URL…]`. Exactly two;
    /// the first is the primary (the roles start there; automatic failback returns there).
    #[arg(long = "datacenter", required = true)]
    datacenters: Vec<DatacenterTargets>,
    /// The witness's URL (e.g. its etcd member's /health): any 2xx answer means reachable.
    #[arg(long, env = "CALANQUE_WITNESS")]
    witness: Option<String>,
    /// Seconds a datacenter must be unhealthy before it is failed over.
    #[arg(long, default_value_t = 10)]
    detection_seconds: u64,
    /// Seconds the primary must be healthy before an automatic failback.
    #[arg(long, default_value_t = 600)]
    failback_after_seconds: u64,
    /// Fail back to the primary by itself after the stable period (otherwise only when asked
    /// through `calanque/v1/failover/failback`).
    #[arg(long)]
    automatic_failback: bool,
    /// Milliseconds between probe rounds.
    #[arg(long, default_value_t = 500)]
    probe_interval_ms: u64,
    /// Bound on each probe, in milliseconds (the probe interval by default).
    #[arg(long)]
    probe_timeout_ms: Option<u64>,
    /// TTL of the leadership lease: how long after a leader dies another takes over.
    #[arg(long, default_value_t = 5)]
    lease_ttl_seconds: u64,
    #[command(flatten)]
    telemetry: TelemetryArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let conditions: &[&'static str] = if args.nats.is_some() {
        &["store", "bus", "started"]
    } else {
        &["store", "started"]
    };
    let telemetry = ServiceTelemetry::start("operator", &args.telemetry, conditions)
        .await
        .context("starting telemetry")?;
    let config = config_from(&args)?;
    let store: Arc<dyn Store> = match (&args.etcd, &args.data_dir) {
        (Some(endpoints), _) => {
            let config =
                EtcdConfig::new(endpoints.split(',').map(str::trim)).with_tls(args.etcd_tls.tls());
            Arc::new(
                EtcdStore::connect(&config)
                    .await
                    .context("connecting to etcd")?,
            )
        }
        (None, Some(dir)) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            Arc::new(
                EmbeddedStore::open(dir.join("calanque.redb"))
                    .await
                    .context("opening the embedded store")?,
            )
        }
        (None, None) => bail!("give --etcd (cluster) or --data-dir (all-in-one)"),
    };
    let store = telemetry.store(store);
    let bus = match &args.nats {
        Some(servers) => {
            let servers = servers.split(',').map(|s| s.trim().to_owned()).collect();
            let bus = NatsBus::connect(
                NatsOptions::new(format!("calanque-failover-{}", args.instance), servers)
                    .with_tls(args.nats_tls.tls()),
            )
            .await
            .context("connecting to NATS")?;
            Some(telemetry.bus(Arc::new(bus)))
        }
        None => None,
    };
    let probe_timeout =
        Duration::from_millis(args.probe_timeout_ms.unwrap_or(args.probe_interval_ms));
    let prober = Prober::new(
        args.datacenters.clone(),
        args.witness.clone(),
        probe_timeout,
    );
    let metrics = OperatorMetrics::register(&telemetry.metrics);
    let controller = Controller::new(config.clone(), store, bus, Arc::new(prober), Some(metrics));
    let signal = shutdown_signal()?;
    telemetry.readiness.set("started", true);
    tracing::info!(
        instance = %config.instance,
        datacenters = ?config.planner.datacenters(),
        detection_seconds = args.detection_seconds,
        lease_ttl_seconds = args.lease_ttl_seconds,
        "failover controller ready"
    );
    controller.run(signal).await;
    tracing::info!("stopped");
    Ok(())
}

fn config_from(args: &Args) -> anyhow::Result<ControllerConfig> {
    // TLS files that would go unused look like a secured connection that is not (ADR 0019).
    if args.etcd.is_none() && !args.etcd_tls.tls().is_empty() {
        bail!("--etcd-ca-file/--etcd-cert-file/--etcd-key-file need --etcd");
    }
    if args.nats.is_none() && !args.nats_tls.tls().is_empty() {
        bail!("--nats-ca-file/--nats-cert-file/--nats-key-file need --nats");
    }
    let [primary, secondary] = args.datacenters.as_slice() else {
        bail!(
            "give exactly two serving datacenters (--datacenter), not {}",
            args.datacenters.len()
        );
    };
    let mut planner = PlannerConfig::new([primary.name.clone(), secondary.name.clone()])
        .context("the datacenters")?;
    if args.detection_seconds == 0 || args.probe_interval_ms == 0 || args.lease_ttl_seconds == 0 {
        bail!("--detection-seconds, --probe-interval-ms and --lease-ttl-seconds must be positive");
    }
    planner.detection = Duration::from_secs(args.detection_seconds);
    planner.failback_after = Duration::from_secs(args.failback_after_seconds);
    planner.automatic_failback = args.automatic_failback;
    let interval = Duration::from_millis(args.probe_interval_ms);
    if interval * 2 > planner.detection {
        bail!("--probe-interval-ms must be at most half the detection period");
    }
    let mut config = ControllerConfig::new(args.instance.clone(), planner);
    config.interval = interval;
    config.lease_ttl = Duration::from_secs(args.lease_ttl_seconds);
    Ok(config)
}

/// Completes on SIGTERM or SIGINT; the handlers are installed when this returns.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    const DATACENTERS: [&str; 4] = [
        "--datacenter",
        "dc-a=sip:192.0.2.10:5060",
        "--datacenter",
        "dc-b=sip:198.51.100.10:5060",
    ];

    fn parse(extra: &[&str]) -> Args {
        let mut argv = vec!["calanque-failover", "--instance", "f1"];
        argv.extend(DATACENTERS);
        argv.extend(extra);
        Args::try_parse_from(argv).unwrap()
    }

    #[test]
    fn the_command_line_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn client_tls_flags_reach_the_settings() {
        let args = parse(&[
            "--etcd",
            "https://etcd-a:2379",
            "--etcd-ca-file",
            "/etc/calanque/tls/etcd/ca.crt",
            "--etcd-cert-file",
            "/etc/calanque/tls/etcd/tls.crt",
            "--etcd-key-file",
            "/etc/calanque/tls/etcd/tls.key",
            "--nats",
            "nats://nats-a:4222",
            "--nats-ca-file",
            "/etc/calanque/tls/nats/ca.crt",
        ]);
        assert!(config_from(&args).is_ok());
        let etcd = args.etcd_tls.tls();
        assert!(etcd.ca_file.is_some() && etcd.identity.is_some());
        let nats = args.nats_tls.tls();
        assert!(nats.ca_file.is_some() && nats.identity.is_none());
        assert!(
            parse(&["--etcd", "http://etcd-a:2379"])
                .etcd_tls
                .tls()
                .is_empty()
        );
    }

    #[test]
    fn tls_files_without_their_client_are_refused() {
        let etcd_files_alone = parse(&["--data-dir", "/tmp/x", "--etcd-ca-file", "/ca.crt"]);
        assert!(config_from(&etcd_files_alone).is_err());
        let nats_files_alone = parse(&["--etcd", "http://e:2379", "--nats-ca-file", "/ca.crt"]);
        assert!(config_from(&nats_files_alone).is_err());
    }
}
