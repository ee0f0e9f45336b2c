//! `calanque-sip-edge`: the SIP edge binary (flags → telemetry → config → store and bus → run
//! until SIGTERM/SIGINT → not ready, graceful drain).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser;
use directory::{BusSpec, ClientTls, StoreSpec};
use sip_core::digest::Algorithm;
use sip_edge::EdgeConfig;
use sip_edge::config::TlsFiles;
use sip_edge::transport::ListenSpec;
use telemetry::{ServiceTelemetry, TelemetryArgs};

/// The calanque SIP edge.
#[derive(Debug, Parser)]
#[command(name = "calanque-sip-edge", version)]
struct Args {
    /// This replica's unique name (the pod name in Kubernetes).
    #[arg(long, env = "CALANQUE_EDGE_ID", default_value = "edge-1")]
    edge_id: String,
    /// This edge's datacenter (the PbxCluster's datacenter name), written into every flow it
    /// reports: call-control moves a call's legs off the edges of a datacenter the failover
    /// marks failed (ADR 0020).
    #[arg(long, env = "CALANQUE_DATACENTER", default_value = "")]
    datacenter: String,
    /// Milliseconds between heartbeats on `calanque.v1.edge.heartbeats`: call-control holds
    /// requests to phones behind an edge silent for three of them (ADR 0020).
    #[arg(long, env = "CALANQUE_EDGE_HEARTBEAT_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(50..=60_000))]
    heartbeat_ms: u64,
    /// `udp:IP:PORT`, `tcp:IP:PORT` or `tls:IP:PORT`; repeat for several.
    #[arg(
        long = "listen",
        env = "CALANQUE_SIP_LISTEN",
        value_delimiter = ',',
        required = true
    )]
    listen: Vec<ListenSpec>,
    /// PEM certificate chain for tls: listeners.
    #[arg(long, env = "CALANQUE_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for tls: listeners.
    #[arg(long, env = "CALANQUE_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// etcd endpoints (cluster mode), comma-separated.
    #[arg(long, env = "CALANQUE_ETCD", conflicts_with = "data_dir")]
    etcd: Option<String>,
    /// Directory of the embedded store (all-in-one mode).
    #[arg(long, env = "CALANQUE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// NATS servers, comma-separated; without it the bus is in-process (all-in-one).
    #[arg(long, env = "CALANQUE_NATS")]
    nats: Option<String>,
    #[command(flatten)]
    etcd_tls: store::cli::EtcdTlsArgs,
    #[command(flatten)]
    nats_tls: bus::cli::NatsTlsArgs,
    /// The digest realm the directory's HA1s were computed with.
    #[arg(long, env = "CALANQUE_REALM", default_value = "calanque")]
    realm: String,
    /// The SIP domain of every AOR (defaults to the realm).
    #[arg(long, env = "CALANQUE_DOMAIN")]
    domain: Option<String>,
    /// 64 hex characters signing nonces, the same on every replica (else random: nonces then
    /// only work on this replica).
    #[arg(long, env = "CALANQUE_NONCE_KEY", hide_env_values = true)]
    nonce_key: Option<String>,
    /// Digest algorithms offered, in order.
    #[arg(
        long,
        env = "CALANQUE_DIGEST_ALGORITHMS",
        value_delimiter = ',',
        default_value = "SHA-256,MD5"
    )]
    digest_algorithms: Vec<String>,
    #[arg(long, default_value_t = 60)]
    min_expires: u32,
    #[arg(long, default_value_t = 3600)]
    max_expires: u32,
    #[arg(long, default_value_t = 3600)]
    default_expires: u32,
    /// Networks exempt from rate-limit and authentication-failure bans (CIDR, repeatable).
    #[arg(
        long = "trusted-network",
        env = "CALANQUE_TRUSTED_NETWORKS",
        value_delimiter = ','
    )]
    trusted_networks: Vec<ipnet::IpNet>,
    /// Requests per second one source address may send (sustained).
    #[arg(long)]
    rate_limit: Option<u32>,
    /// Token-bucket depth of the per-source rate limit.
    #[arg(long)]
    rate_burst: Option<u32>,
    /// How long a ban lasts, in seconds.
    #[arg(long)]
    ban_seconds: Option<u64>,
    /// Shedding (ADR 0021): a datagram that waited longer than this many milliseconds before
    /// the engine took it, with a backlog behind it, means the edge is behind; new
    /// registrations then get 503. 0: never shed. Keep it under the failover probe timeout.
    #[arg(long, env = "CALANQUE_OVERLOAD_TARGET_MS")]
    overload_target_ms: Option<u64>,
    /// Shedding: the backlog (queued datagrams) that must be behind a late one.
    #[arg(long, env = "CALANQUE_OVERLOAD_MIN_BACKLOG")]
    overload_min_backlog: Option<usize>,
    /// Shedding: the Retry-After of a refused REGISTER, spread over [N, 2N] seconds.
    #[arg(long, env = "CALANQUE_OVERLOAD_RETRY_AFTER", value_parser = clap::value_parser!(u32).range(1..))]
    overload_retry_after: Option<u32>,
    /// Longest graceful drain after SIGTERM, in seconds.
    #[arg(long, default_value_t = 25)]
    drain_timeout: u64,
    #[command(flatten)]
    telemetry: TelemetryArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let telemetry = ServiceTelemetry::start("edge", &args.telemetry, &["bus", "store", "started"])
        .await
        .context("starting telemetry")?;
    let mut config = config_from(&args)?;
    config.metrics = Some(telemetry.metrics.clone());
    let store = match (&args.etcd, &args.data_dir) {
        (Some(endpoints), _) => format!("etcd:{endpoints}"),
        (None, Some(dir)) => format!("embedded:{}", dir.join("calanque.redb").display()),
        (None, None) => bail!("give --etcd (cluster) or --data-dir (all-in-one)"),
    };
    let store: StoreSpec = store.parse().context("the store")?;
    let bus: BusSpec = args
        .nats
        .clone()
        .unwrap_or_else(|| "in-process".into())
        .parse()
        .context("the bus")?;
    if let Some(dir) = &args.data_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tls = ClientTls {
        etcd: args.etcd_tls.tls(),
        nats: args.nats_tls.tls(),
    };
    let (store, bus) = directory::build(&store, &bus, &tls)
        .await
        .context("opening the store and the bus")?;
    let (store, bus) = (telemetry.store(store), telemetry.bus(bus));
    let edge = sip_edge::start(config, store, bus)
        .await
        .context("starting the edge")?;
    // Handlers first, then "ready": a SIGTERM right after the ready line must drain, not kill.
    let signal = shutdown_signal()?;
    telemetry.readiness.set("started", true);
    tracing::info!("sip-edge ready");
    signal.await;
    // Not ready first, so that Kubernetes takes the pod out of its endpoints while it drains.
    telemetry.readiness.set("started", false);
    tracing::info!("signal received: draining");
    edge.drain().await;
    Ok(())
}

fn config_from(args: &Args) -> anyhow::Result<EdgeConfig> {
    let nonce_key = match &args.nonce_key {
        Some(hex_key) => {
            let bytes = hex::decode(hex_key.trim()).context("--nonce-key is not hex")?;
            <[u8; 32]>::try_from(bytes.as_slice())
                .map_err(|_| anyhow::anyhow!("--nonce-key must be 32 bytes (64 hex characters)"))?
        }
        None => {
            tracing::warn!("no --nonce-key: nonces are valid on this replica only");
            rand::random()
        }
    };
    let mut config = EdgeConfig::new(args.edge_id.clone(), args.realm.clone(), nonce_key);
    config.datacenter = args.datacenter.clone();
    config.heartbeat = std::time::Duration::from_millis(args.heartbeat_ms);
    config.listen = args.listen.clone();
    if let Some(domain) = &args.domain {
        config.domain = domain.clone();
    }
    config.tls = match (&args.tls_cert, &args.tls_key) {
        (Some(certificate), Some(key)) => Some(TlsFiles {
            certificate: certificate.clone(),
            key: key.clone(),
        }),
        (None, None) => None,
        _ => bail!("--tls-cert and --tls-key go together"),
    };
    config.digest_algorithms = args
        .digest_algorithms
        .iter()
        .map(|name| {
            Algorithm::from_token(name.trim())
                .with_context(|| format!("unknown digest algorithm {name:?}"))
        })
        .collect::<anyhow::Result<_>>()?;
    if config.digest_algorithms.is_empty() {
        bail!("--digest-algorithms needs at least one algorithm");
    }
    config.registrar.min_expires = args.min_expires;
    config.registrar.max_expires = args.max_expires;
    config.registrar.default_expires = args.default_expires;
    if config.registrar.min_expires > config.registrar.max_expires {
        bail!("--min-expires is above --max-expires");
    }
    config.protection.trusted_networks = args.trusted_networks.clone();
    if let Some(rate) = args.rate_limit {
        config.protection.rate_per_second = rate;
    }
    if let Some(burst) = args.rate_burst {
        config.protection.burst = burst;
    }
    if let Some(secs) = args.ban_seconds {
        config.protection.ban_duration = Duration::from_secs(secs);
    }
    if let Some(ms) = args.overload_target_ms {
        config.overload.target_delay = Duration::from_millis(ms);
    }
    if let Some(backlog) = args.overload_min_backlog {
        config.overload.min_backlog = backlog;
    }
    if let Some(secs) = args.overload_retry_after {
        config.overload.retry_after_secs = secs;
    }
    config.drain_timeout = Duration::from_secs(args.drain_timeout);
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
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn config(flags: &[&str]) -> anyhow::Result<EdgeConfig> {
        let args = Args::try_parse_from(
            ["calanque-sip-edge", "--listen=udp:127.0.0.1:0"]
                .into_iter()
                .chain(flags.iter().copied()),
        )?;
        config_from(&args)
    }

    #[test]
    fn overload_flags_set_the_shedding_thresholds_and_default_to_adr_0021s() {
        let defaults = config(&[]).unwrap().overload;
        assert_eq!(defaults, sip_edge::overload::OverloadConfig::default());
        let tuned = config(&[
            "--overload-target-ms=0",
            "--overload-min-backlog=500",
            "--overload-retry-after=30",
        ])
        .unwrap()
        .overload;
        assert_eq!(tuned.target_delay, Duration::ZERO, "0: never shed");
        assert_eq!(tuned.min_backlog, 500);
        assert_eq!(tuned.retry_after_secs, 30);
        assert_eq!(tuned.hold, defaults.hold);
        assert!(
            config(&["--overload-retry-after=0"]).is_err(),
            "a Retry-After of 0 asks the phones to come straight back"
        );
    }
}
