//! Which calls are traced. Spans cost CPU whether or not they are exported (the `tracing` →
//! OpenTelemetry layer builds one for each), so a call that is not sampled creates none: the
//! edge decides when a call's message arrives (`trace_call`, by a hash of the Call-ID, so every
//! message of a call agrees), and says so downstream in `traceparent`'s sampled flag, which the
//! other services follow (`propagation::child_span`).

use std::hash::{Hash as _, Hasher as _};
use std::sync::atomic::{AtomicU64, Ordering};

/// The share of calls whose spans are exported, as f64 bits; `NOT_EXPORTING` without OTLP.
static EXPORT_RATIO: AtomicU64 = AtomicU64::new(NOT_EXPORTING);
const NOT_EXPORTING: u64 = u64::MAX;

pub(crate) fn set_export_ratio(ratio: f64) {
    EXPORT_RATIO.store(ratio.clamp(0.0, 1.0).to_bits(), Ordering::Relaxed);
}

/// Whether spans leave this process (an OTLP endpoint is configured).
pub fn exporting() -> bool {
    EXPORT_RATIO.load(Ordering::Relaxed) != NOT_EXPORTING
}

/// Whether to create the spans of the call `call_id`: always when nothing is exported (the
/// log filter alone decides what they cost), otherwise for the configured share of calls.
pub fn trace_call(call_id: &str) -> bool {
    let bits = EXPORT_RATIO.load(Ordering::Relaxed);
    if bits == NOT_EXPORTING {
        return true;
    }
    let ratio = f64::from_bits(bits);
    if ratio >= 1.0 {
        return true;
    }
    // SipHash with fixed keys: the same decision in every process for one Call-ID.
    let mut hasher = std::hash::DefaultHasher::new();
    call_id.hash(&mut hasher);
    (hasher.finish() as f64 / u64::MAX as f64) < ratio
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_of_calls_is_traced_and_a_call_is_decided_the_same_way_every_time() {
        set_export_ratio(0.1);
        let traced = (0..10_000)
            .filter(|i| trace_call(&format!("call-{i}@host")))
            .count();
        assert!((800..1_200).contains(&traced), "{traced} of 10,000");
        assert_eq!(trace_call("same@host"), trace_call("same@host"));

        // Sent outside any span (an unsampled call) while exporting: the message says so, and
        // the receiver creates no span for it.
        let mut headers = bus::BusHeaders::new();
        crate::propagation::inject_current(&mut headers);
        let traceparent = headers
            .get("traceparent")
            .expect("a context is sent")
            .to_owned();
        assert!(traceparent.ends_with("-00"), "{traceparent}");
        assert!(crate::propagation::is_unsampled(&headers));
        // A subscriber, so that a span created is a real one (without one every span is none).
        let _subscriber = tracing::subscriber::set_default(tracing_subscriber::registry());
        let span = crate::propagation::child_span(&headers, || tracing::info_span!("x"));
        assert!(span.is_none(), "no span for an unsampled call");
        let mut sampled = bus::BusHeaders::new();
        sampled.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        );
        assert!(!crate::propagation::is_unsampled(&sampled));
        let span = crate::propagation::child_span(&sampled, || tracing::info_span!("x"));
        assert!(!span.is_none(), "a sampled call's message gets its span");
        assert!(!crate::propagation::is_unsampled(&bus::BusHeaders::new()));
        set_export_ratio(1.0);
        assert!(trace_call("any@host"));
        EXPORT_RATIO.store(NOT_EXPORTING, Ordering::Relaxed);
        assert!(trace_call("any@host") && !exporting());
    }
}
