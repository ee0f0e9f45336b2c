//! `calanque-media`: the media relay binary (flags → config → start → connect to NATS → serve
//! the control API and publish dead media on the bus → run until SIGTERM/SIGINT).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use bus::{NatsBus, NatsOptions};
use clap::Parser;
use media::MediaConfig;
use media::relay::SessionConfig;

/// An inclusive port range, `first-last`.
#[derive(Debug, Clone, Copy)]
struct PortRange {
    first: u16,
    last: u16,
}

impl std::str::FromStr for PortRange {
    type Err = String;

    fn from_str(s: &str) -> Result<PortRange, String> {
        let (first, last) = s
            .split_once('-')
            .ok_or_else(|| format!("{s:?} is not first-last"))?;
        let port = |p: &str| {
            p.trim()
                .parse::<u16>()
                .map_err(|e| format!("{p:?} is not a port: {e}"))
        };
        let (first, last) = (port(first)?, port(last)?);
        if first > last {
            return Err(format!("{first} is above {last}"));
        }
        Ok(PortRange { first, last })
    }
}

/// The calanque media relay.
#[derive(Debug, Parser)]
#[command(name = "calanque-media", version)]
struct Args {
    /// NATS servers, comma-separated.
    #[arg(long, env = "CALANQUE_NATS")]
    nats: String,
    #[command(flatten)]
    nats_tls: bus::cli::NatsTlsArgs,
    /// This replica's unique name, one subject token (the pod name in Kubernetes): its
    /// control subject is `calanque.v1.media.<id>.control`.
    #[arg(long, env = "CALANQUE_MEDIA_ID", default_value = "media-1")]
    media_id: String,
    /// This replica's datacenter (the PbxCluster's datacenter name), announced in its
    /// heartbeats: call-control moves the calls it relays when it or its datacenter is lost.
    #[arg(long, env = "CALANQUE_DATACENTER", default_value = "")]
    datacenter: String,
    /// Milliseconds between heartbeats; call-control declares the replica dead after three
    /// silent intervals and moves its calls to another (ADR 0020).
    #[arg(long, env = "CALANQUE_MEDIA_HEARTBEAT_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(50..=60_000))]
    heartbeat_ms: u64,
    /// Address the RTP/RTCP sockets are bound to.
    #[arg(
        long,
        alias = "bind-ip",
        env = "CALANQUE_MEDIA_LISTEN",
        default_value = "127.0.0.1"
    )]
    listen_ip: IpAddr,
    /// Address written into SDP, if phones reach the relay through another one.
    #[arg(long, env = "CALANQUE_MEDIA_ADVERTISE")]
    advertised_ip: Option<IpAddr>,
    /// The RTP/RTCP port range, `first-last` (inclusive; pairs of an even RTP port and the
    /// next odd one for RTCP).
    #[arg(long, env = "CALANQUE_RTP_PORTS", default_value = "16384-32767")]
    ports: PortRange,
    /// Seconds without media on either leg before call-control is told the media is dead.
    #[arg(long, env = "CALANQUE_MEDIA_IDLE_TIMEOUT", default_value_t = 60)]
    idle_timeout: u64,
    /// Milliseconds a latched source must be silent before another may take its place
    /// (0: never re-latch).
    #[arg(long, default_value_t = 2_000)]
    relatch_after_ms: u64,
    #[command(flatten)]
    telemetry: telemetry::TelemetryArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let telemetry =
        telemetry::ServiceTelemetry::start("media", &args.telemetry, &["bus", "started"])
            .await
            .context("starting telemetry")?;
    if !media::bus::is_valid_media_id(&args.media_id) {
        bail!(
            "--media-id {:?} must be one subject token (no dot, space or wildcard)",
            args.media_id
        );
    }
    let config = MediaConfig {
        bind_ip: args.listen_ip,
        advertised_ip: args.advertised_ip,
        port_first: args.ports.first,
        port_last: args.ports.last,
        session: SessionConfig {
            idle_timeout: Duration::from_secs(args.idle_timeout),
            relatch_after: (args.relatch_after_ms > 0)
                .then(|| Duration::from_millis(args.relatch_after_ms)),
        },
        metrics: Some(telemetry::MediaMetrics::register(&telemetry.metrics)),
        ..MediaConfig::default()
    };
    let mut shutdown = Shutdown::register().context("registering signal handlers")?;
    let (media, events) = media::start(config).context("starting the media relay")?;
    let servers = args
        .nats
        .split(',')
        .map(str::trim)
        .map(str::to_owned)
        .collect();
    let bus = NatsBus::connect(
        NatsOptions::new(format!("calanque-media-{}", args.media_id), servers)
            .with_tls(args.nats_tls.tls()),
    )
    .await
    .context("connecting to NATS")?;
    let pairs = media.available_pairs();
    let bus = telemetry.bus(Arc::new(bus));
    let media = Arc::new(media);
    let server = media::bus::serve(
        media.clone(),
        events,
        &args.media_id,
        &args.datacenter,
        bus.clone(),
    )
    .await
    .context("serving the media control API on the bus")?;
    let _heartbeats = telemetry::heartbeat::publish_heartbeats(
        bus,
        proto::subjects::MEDIA_HEARTBEATS,
        args.media_id.clone(),
        args.datacenter.clone(),
        Duration::from_millis(args.heartbeat_ms),
        move || media.session_count(),
    );
    telemetry.readiness.set("started", true);
    tracing::info!(media_id = %args.media_id, pairs, "media relay ready");
    tokio::select! {
        () = shutdown.wait() => tracing::info!("signal received: stopping"),
        _ = server => tracing::warn!("the bus closed: stopping"),
    }
    Ok(())
}

/// SIGTERM or SIGINT, registered when created (before the service says it is ready, so a
/// supervisor's SIGTERM right after the ready line is not lost).
struct Shutdown {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Shutdown {
    fn register() -> std::io::Result<Shutdown> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Shutdown {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Shutdown {})
    }

    async fn wait(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
