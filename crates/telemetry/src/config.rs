//! The telemetry flags every binary shares (`#[command(flatten)]`).

use std::net::SocketAddr;

fn parse_ratio(text: &str) -> Result<f64, String> {
    let ratio: f64 = text.parse().map_err(|e| format!("{text:?}: {e}"))?;
    if (0.0..=1.0).contains(&ratio) {
        Ok(ratio)
    } else {
        Err(format!("{ratio} is not between 0 and 1"))
    }
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (what log collectors want in Kubernetes).
    Json,
    /// Human-readable lines (a terminal, `make run`).
    Pretty,
}

/// Logs, traces and the metrics/health HTTP port.
#[derive(Debug, Clone, clap::Args)]
pub struct TelemetryArgs {
    /// Log format.
    #[arg(
        long,
        env = "CALANQUE_LOG_FORMAT",
        value_enum,
        default_value = "pretty"
    )]
    pub log_format: LogFormat,
    /// OTLP/HTTP collector base URL (e.g. `http://otel-collector:4318`): spans are exported to
    /// `<url>/v1/traces`. Without it no spans leave the process.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Share of calls traced (0–1): the edge, where a call's trace starts, keeps this ratio of
    /// traces (by trace id); the services downstream follow the edge's decision.
    #[arg(long, env = "CALANQUE_TRACE_SAMPLE_RATIO", default_value_t = 1.0,
          value_parser = parse_ratio)]
    pub trace_sample_ratio: f64,
    /// Address of `/metrics`, `/healthz` and `/readyz` (none when absent).
    #[arg(long, env = "CALANQUE_TELEMETRY_LISTEN")]
    pub telemetry_listen: Option<SocketAddr>,
    /// Interactive use (`calanque run`): logs go to stderr, at `warn` unless `RUST_LOG` says
    /// otherwise, so stdout stays the program's own output. Set by the program, not a flag.
    #[arg(skip)]
    pub interactive: bool,
}
