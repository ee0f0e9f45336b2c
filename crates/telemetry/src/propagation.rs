//! W3C trace context (`traceparent`, `tracestate`) in bus message headers, so that the spans
//! of one call in the edge, call-control and media share one trace. The propagator is the
//! global one [`crate::init`] installs; without it (tests, `init` not called) these are no-ops.

use bus::BusHeaders;
use opentelemetry::propagation::{Extractor, Injector};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

struct HeaderInjector<'a>(&'a mut BusHeaders);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, &value);
    }
}

struct HeaderExtractor<'a>(&'a BusHeaders);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.0.iter().map(|(name, _)| name.as_str()).collect()
    }
}

/// Writes the current span's context into `headers` (unless they already carry one).
pub fn inject_current(headers: &mut BusHeaders) {
    if headers.get("traceparent").is_some() {
        return;
    }
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut HeaderInjector(headers));
    });
}

/// The remote context carried by `headers` (empty if none).
pub fn extract(headers: &BusHeaders) -> opentelemetry::Context {
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(headers))
    })
}

/// Makes `span` a child of the context carried by `headers` (a message received from another
/// service). Does nothing when the headers carry none.
pub fn set_parent(span: &tracing::Span, headers: &BusHeaders) {
    if headers.get("traceparent").is_none() {
        return;
    }
    let _ = span.set_parent(extract(headers));
}
