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

/// Writes the current span's context into `headers` (unless they already carry one). Sent
/// from outside any span while spans are exported (an unsampled call), the message says "not
/// sampled" so the receiver creates no spans either.
pub fn inject_current(headers: &mut BusHeaders) {
    if headers.get("traceparent").is_some() {
        return;
    }
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut HeaderInjector(headers));
    });
    if headers.get("traceparent").is_none() && crate::sampling::exporting() {
        let trace_id: u128 = rand::random::<u128>() | 1;
        let span_id: u64 = rand::random::<u64>() | 1;
        headers.insert(
            "traceparent",
            &format!("00-{trace_id:032x}-{span_id:016x}-00"),
        );
    }
}

/// Whether `headers` carry a context whose sampled flag is off.
pub fn is_unsampled(headers: &BusHeaders) -> bool {
    headers
        .get("traceparent")
        .and_then(|value| value.trim().rsplit('-').next())
        .and_then(|flags| u8::from_str_radix(flags, 16).ok())
        .is_some_and(|flags| flags & 1 == 0)
}

/// The span for handling a message received from another service: `make`'s span as a child
/// of the sender's, or none at all when the sender's call is not sampled (spans cost CPU even
/// when nobody exports them).
pub fn child_span(headers: &BusHeaders, make: impl FnOnce() -> tracing::Span) -> tracing::Span {
    if is_unsampled(headers) {
        return tracing::Span::none();
    }
    let span = make();
    set_parent(&span, headers);
    span
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
