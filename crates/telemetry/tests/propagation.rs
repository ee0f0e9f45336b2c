//! Trace context crosses the bus: a span in one service, the message it publishes through the
//! instrumented bus, and the span the receiver opens are one trace, parent and child.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use bus::{Bus, BusHeaders};
use bytes::Bytes;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use telemetry::{BusMetrics, InstrumentedBus, Metrics};
use tracing::Instrument as _;
use tracing_subscriber::layer::SubscriberExt as _;

#[tokio::test]
async fn a_span_published_with_a_message_is_the_parent_of_the_receivers_span() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let _default = tracing::subscriber::set_default(subscriber);

    let metrics = Metrics::new("test");
    let inner: Arc<dyn Bus> = Arc::new(bus::in_process::InProcessBus::new(Default::default()));
    let bus = InstrumentedBus::new(inner, BusMetrics::register(&metrics));
    let mut subscription = bus.subscribe("calanque.v1.test").await.unwrap();

    bus.publish(
        "calanque.v1.test",
        BusHeaders::new(),
        Bytes::from_static(b"x"),
    )
    .instrument(tracing::info_span!("edge.handoff"))
    .await
    .unwrap();
    let message = tokio::time::timeout(Duration::from_secs(2), subscription.next())
        .await
        .unwrap()
        .unwrap();
    let traceparent = message
        .headers
        .get("traceparent")
        .expect("traceparent sent");
    assert!(traceparent.starts_with("00-"), "{traceparent}");

    let receiver = tracing::info_span!("call_control.invite");
    telemetry::propagation::set_parent(&receiver, &message.headers);
    drop(receiver);
    provider.force_flush().unwrap();

    let spans = exporter.get_finished_spans().unwrap();
    let sender = spans.iter().find(|s| s.name == "edge.handoff").unwrap();
    let child = spans
        .iter()
        .find(|s| s.name == "call_control.invite")
        .unwrap();
    assert_eq!(
        child.span_context.trace_id(),
        sender.span_context.trace_id(),
        "one trace"
    );
    assert_eq!(child.parent_span_id, sender.span_context.span_id());
    assert!(
        traceparent.contains(&sender.span_context.trace_id().to_string()),
        "{traceparent}"
    );
}

#[tokio::test]
async fn without_a_remote_context_the_receiver_starts_its_own_trace() {
    let headers = BusHeaders::new();
    let span = tracing::info_span!("orphan");
    // No traceparent: nothing happens (and nothing panics without a subscriber).
    telemetry::propagation::set_parent(&span, &headers);
    let mut out = BusHeaders::new();
    telemetry::propagation::inject_current(&mut out);
    assert!(out.get("traceparent").is_none(), "no span, no context");
}
