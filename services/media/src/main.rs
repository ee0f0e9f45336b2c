//! `calanque-media`: the media relay binary (flags → config → start → log dead media → run
//! until SIGTERM/SIGINT). The bus adapter that lets call-control drive it remotely is the next
//! step; until then the control API is the in-process `MediaControl` trait.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser;
use media::MediaConfig;
use media::relay::SessionConfig;

/// The calanque media relay.
#[derive(Debug, Parser)]
#[command(name = "calanque-media", version)]
struct Args {
    /// Address the RTP/RTCP sockets are bound to.
    #[arg(long, env = "CALANQUE_MEDIA_BIND", default_value = "127.0.0.1")]
    bind_ip: IpAddr,
    /// Address written into SDP, if phones reach the relay through another one.
    #[arg(long, env = "CALANQUE_MEDIA_ADVERTISE")]
    advertised_ip: Option<IpAddr>,
    /// First port of the RTP range.
    #[arg(long, env = "CALANQUE_RTP_PORT_MIN", default_value_t = 16_384)]
    port_min: u16,
    /// Last port of the RTP range.
    #[arg(long, env = "CALANQUE_RTP_PORT_MAX", default_value_t = 32_767)]
    port_max: u16,
    /// Seconds without media on either leg before call-control is told the media is dead.
    #[arg(long, env = "CALANQUE_MEDIA_IDLE_TIMEOUT", default_value_t = 60)]
    idle_timeout: u64,
    /// Milliseconds a latched source must be silent before another may take its place
    /// (0: never re-latch).
    #[arg(long, default_value_t = 2_000)]
    relatch_after_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    if args.port_min > args.port_max {
        bail!("--port-min is above --port-max");
    }
    let config = MediaConfig {
        bind_ip: args.bind_ip,
        advertised_ip: args.advertised_ip,
        port_first: args.port_min,
        port_last: args.port_max,
        session: SessionConfig {
            idle_timeout: Duration::from_secs(args.idle_timeout),
            relatch_after: (args.relatch_after_ms > 0)
                .then(|| Duration::from_millis(args.relatch_after_ms)),
        },
        ..MediaConfig::default()
    };
    let mut shutdown = Shutdown::register().context("registering signal handlers")?;
    let (media, mut events) = media::start(config).context("starting the media relay")?;
    tracing::info!(pairs = media.available_pairs(), "media relay ready");
    tokio::select! {
        () = shutdown.wait() => tracing::info!("signal received: stopping"),
        () = async {
            while let Some(event) = events.recv().await {
                tracing::info!(?event, "media event");
            }
        } => {}
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
