//! Process-wide initialisation: the tracing subscriber (logs, and spans to OpenTelemetry when
//! an OTLP endpoint is set) and the W3C trace-context propagator.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::{LogFormat, TelemetryArgs};

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter could not be built (a malformed endpoint URL).
    #[error("OTLP exporter for {endpoint}: {reason}")]
    Exporter {
        /// The configured endpoint.
        endpoint: String,
        /// The exporter's message.
        reason: String,
    },
    /// A global subscriber was already installed (init called twice).
    #[error("a tracing subscriber is already installed: {0}")]
    AlreadyInitialised(String),
}

/// Keeps the trace pipeline alive; dropping it flushes the spans not yet exported.
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("telemetry: flushing spans failed: {e}");
        }
    }
}

/// Installs logging (filtered by `RUST_LOG`, default `info`) and, with an OTLP endpoint, span
/// export (filtered by `CALANQUE_TRACE_FILTER`, default `info`) for `service` (the `service.name` resource). Call once, first thing in `main`.
pub fn init(service: &'static str, args: &TelemetryArgs) -> Result<TelemetryGuard, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let default_level = if args.interactive { "warn" } else { "info" };
    // Logs and spans are filtered apart: RUST_LOG for the log lines, CALANQUE_TRACE_FILTER
    // (default `info`) for the spans exported, so quiet logs do not turn tracing off.
    let log_filter =
        || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let trace_filter =
        EnvFilter::try_from_env("CALANQUE_TRACE_FILTER").unwrap_or_else(|_| EnvFilter::new("info"));
    let writer = || {
        if args.interactive {
            BoxMakeWriter::new(std::io::stderr)
        } else {
            BoxMakeWriter::new(std::io::stdout)
        }
    };
    let provider = match &args.otlp_endpoint {
        Some(endpoint) => {
            crate::sampling::set_export_ratio(args.trace_sample_ratio);
            Some(tracer_provider(service, endpoint, args.trace_sample_ratio)?)
        }
        None => None,
    };
    let otel = provider.as_ref().map(|provider| {
        // Per-span bookkeeping is the cost of tracing a call: no busy/idle timing (a clock
        // read at every enter and exit), no thread, source-location or target attributes.
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer(service))
            .with_tracked_inactivity(false)
            .with_threads(false)
            .with_location(false)
            .with_target(false)
            .with_filter(trace_filter)
    });
    let (json, pretty) = match args.log_format {
        LogFormat::Json => (
            Some(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(writer())
                    .with_filter(log_filter()),
            ),
            None,
        ),
        LogFormat::Pretty => (
            None,
            Some(
                tracing_subscriber::fmt::layer()
                    .with_writer(writer())
                    .with_filter(log_filter()),
            ),
        ),
    };
    tracing_subscriber::registry()
        .with(json)
        .with(pretty)
        .with(otel)
        .try_init()
        .map_err(|e| TelemetryError::AlreadyInitialised(e.to_string()))?;
    Ok(TelemetryGuard { provider })
}

fn tracer_provider(
    service: &'static str,
    endpoint: &str,
    sample_ratio: f64,
) -> Result<SdkTracerProvider, TelemetryError> {
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(url)
        .build()
        .map_err(|e| TelemetryError::Exporter {
            endpoint: endpoint.to_owned(),
            reason: e.to_string(),
        })?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service)
        .build();
    // Parent-based: a span with a remote parent (a message from another service) follows the
    // parent's decision, so a call is traced whole or not at all.
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(sample_ratio)));
    Ok(SdkTracerProvider::builder()
        .with_sampler(sampler)
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}
