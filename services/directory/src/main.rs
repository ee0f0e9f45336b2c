//! `calanque-directory`: the directory service binary (config → logs → build → run until a
//! signal → drain).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use directory::api::BearerToken;
use directory::config::ENV_TOKEN;
use directory::{BusSpec, ClientTls, Config, StoreSpec};

/// The calanque directory service.
#[derive(Debug, Parser)]
#[command(name = "calanque-directory", version)]
struct Args {
    /// `embedded:<path>` or `etcd:<url>[,<url>…]`.
    #[arg(
        long,
        env = "CALANQUE_DIRECTORY_STORE",
        default_value = "embedded:directory.redb"
    )]
    store: StoreSpec,
    /// `in-process` or `nats://host:port[,…]` (`tls://` for TLS).
    #[arg(long, env = "CALANQUE_DIRECTORY_BUS", default_value = "in-process")]
    bus: BusSpec,
    #[command(flatten)]
    etcd_tls: store::cli::EtcdTlsArgs,
    #[command(flatten)]
    nats_tls: bus::cli::NatsTlsArgs,
    /// REST listen address.
    #[arg(
        long,
        env = "CALANQUE_DIRECTORY_REST",
        default_value = "127.0.0.1:8080"
    )]
    rest: SocketAddr,
    /// gRPC listen address.
    #[arg(
        long,
        env = "CALANQUE_DIRECTORY_GRPC",
        default_value = "127.0.0.1:50051"
    )]
    grpc: SocketAddr,
    /// File holding the admin bearer token(s), one per line (else `CALANQUE_DIRECTORY_TOKEN`).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// The PBX's SIP realm.
    #[arg(long, env = "CALANQUE_REALM", default_value = "calanque")]
    realm: String,
    #[command(flatten)]
    telemetry: telemetry::TelemetryArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let telemetry =
        telemetry::ServiceTelemetry::start("directory", &args.telemetry, &["bus", "store"])
            .await
            .context("starting telemetry")?;
    let tokens: Vec<BearerToken> = match &args.token_file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading the token file {}", path.display()))?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(BearerToken::new)
            .collect(),
        None => std::env::var(ENV_TOKEN)
            .map(|t| vec![BearerToken::new(t)])
            .unwrap_or_default(),
    };
    let mut config = Config::new(tokens);
    config.rest = Some(args.rest);
    config.grpc = Some(args.grpc);
    config.realm = args.realm;
    config.validate()?;
    let tls = ClientTls {
        etcd: args.etcd_tls.tls(),
        nats: args.nats_tls.tls(),
    };
    let (store, bus) = directory::build(&args.store, &args.bus, &tls)
        .await
        .context("opening the store and the bus")?;
    let (store, bus) = (telemetry.store(store), telemetry.bus(bus));
    directory::run(config, store, bus, async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    })
    .await?;
    Ok(())
}
