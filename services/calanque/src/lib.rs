//! The `calanque` command line: `calanque dir …` administers the directory over its REST API
//! (docs/directory-api.md) and load-tests its bus responder. The command tree leaves room for
//! `calanque run` (the all-in-one process) beside `dir`.
//!
//! A library so that argument parsing, output formatting and the client are tested without a
//! process; `main.rs` only parses, runs and maps the error to an exit code.

pub mod allinone;
pub mod cli;
pub mod client;
pub mod dir;
pub mod output;

pub use cli::{Cli, Command};

/// Runs a parsed command line; output goes to `out`.
pub async fn run(cli: Cli, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
    match cli.command {
        Command::Dir(dir) => dir::run(&cli.connection, dir, out).await,
        Command::Run(args) => {
            let listen = args
                .listen
                .iter()
                .map(|s| s.parse())
                .collect::<Result<Vec<_>, _>>()?;
            let trusted_networks = args
                .trusted_networks
                .iter()
                .map(|s| {
                    s.parse()
                        .map_err(|e| anyhow::anyhow!("--trusted-network {s}: {e}"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let digest_algorithms = args
                .digest_algorithms
                .iter()
                .map(|name| {
                    sip_core::digest::Algorithm::from_token(name.trim())
                        .ok_or_else(|| anyhow::anyhow!("unknown digest algorithm {name:?}"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let media_ports = match args.media_ports.split_once('-') {
                Some((first, last)) => (first.trim().parse()?, last.trim().parse()?),
                None => anyhow::bail!("--media-ports wants FIRST-LAST"),
            };
            let mut telemetry = args.telemetry.clone();
            telemetry.interactive = true;
            let options = allinone::RunOptions {
                telemetry,
                rate_limit: args.rate_limit,
                rate_burst: args.rate_burst,
                media_ip: args.media_ip,
                media_ports,
                ring_timeout: std::time::Duration::from_secs(args.ring_timeout),
                digest_algorithms,
                data_dir: args.data_dir,
                listen,
                rest: args.rest,
                realm: args.realm,
                trusted_networks,
            };
            allinone::run(options, out).await
        }
    }
}
