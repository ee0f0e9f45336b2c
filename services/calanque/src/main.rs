//! `calanque`: parse, run, and turn an error into a message and exit code 1.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = calanque::Cli::parse();
    // `calanque run` sets up its own telemetry (metrics, traces, logs); the other commands
    // only log warnings.
    if !matches!(cli.command, calanque::Command::Run(_)) {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
            )
            .init();
    }
    let mut out = std::io::stdout().lock();
    match calanque::run(cli, &mut out).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("calanque: {error:#}");
            ExitCode::FAILURE
        }
    }
}
