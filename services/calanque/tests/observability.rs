//! Telemetry across the cluster: a relayed call through separate processes (directory, edge,
//! call-control, media over real etcd and NATS), then every service's `/metrics` shows its
//! counters moved, `/readyz` says ready, and the spans the services exported over OTLP/HTTP
//! to a receiver in this test form one trace from the edge to call-control to media.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use common::{Cluster, ClusterOptions, REALM, rtp, sdp_for, sdp_port, wait_for_edge};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message as _;
use sip_msg::{Method, StatusCode};
use test_phone::Phone;

/// One exported span: its trace (hex), name and the service that sent it.
#[derive(Debug, Clone)]
struct ReceivedSpan {
    trace_id: String,
    name: String,
    service: String,
}

type Spans = Arc<Mutex<Vec<ReceivedSpan>>>;

/// An OTLP/HTTP (protobuf) trace receiver on a free port: what a collector would get.
async fn otlp_receiver() -> (String, Spans) {
    async fn export(State(spans): State<Spans>, body: Bytes) -> Vec<u8> {
        let request = ExportTraceServiceRequest::decode(body).unwrap();
        let mut received = spans.lock().unwrap();
        for resource_spans in request.resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref()?.value.clone())
                .map(|value| match value {
                    Value::StringValue(name) => name,
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    received.push(ReceivedSpan {
                        trace_id: hex::encode(&span.trace_id),
                        name: span.name,
                        service: service.clone(),
                    });
                }
            }
        }
        ExportTraceServiceResponse::default().encode_to_vec()
    }
    let spans: Spans = Arc::default();
    let app = axum::Router::new()
        .route("/v1/traces", axum::routing::post(export))
        .with_state(spans.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, spans)
}

async fn get(address: SocketAddr, path: &str) -> (u16, String) {
    let response = reqwest::get(format!("http://{address}{path}"))
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// The value of the first sample whose line starts with `series` (name and labels as
/// exposed), or 0.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|line| line.starts_with(series))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_moves_every_services_counters_and_is_one_trace_across_them() {
    let (otlp, spans) = otlp_receiver().await;
    let mut cluster = Cluster::start(ClusterOptions {
        relay: true,
        otlp: Some(otlp),
        ..ClusterOptions::default()
    })
    .await;
    let _call_control = cluster.call_control("cc-o").await;
    let sip = cluster.sip;
    wait_for_edge(sip).await;

    // A relayed call: RTP both ways through the media process, then Alice hangs up.
    let alice_rtp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let bob_rtp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut alice = Phone::new("user1", "pw1", REALM, sip).await;
    let mut bob = Phone::new("user2", "pw2", REALM, sip).await;
    alice.register().await;
    bob.register().await;
    let offer = sdp_for(alice_rtp.local_addr().unwrap().port());
    let (call_id, invite) = cluster
        .call_until_ringing(&mut alice, &mut bob, "observed", &offer)
        .await;
    let bob_sdp = sdp_for(bob_rtp.local_addr().unwrap().port());
    bob.reply_with_sdp(&invite, StatusCode::OK, "b", &bob_sdp)
        .await;
    let answered = alice.response(false).await;
    assert_eq!(answered.status, StatusCode::OK);
    let ack = alice.in_dialog(&answered, "ACK", 2);
    alice.send(ack.as_bytes()).await;
    assert_eq!(bob.request().await.method, Method::Ack);
    let (relay_for_alice, relay_for_bob) = (sdp_port(&answered.body), sdp_port(&invite.body));
    let mut buf = vec![0u8; 2048];
    for seq in 0..10 {
        alice_rtp
            .send_to(&rtp(seq, 0xA), ("127.0.0.1", relay_for_alice))
            .await
            .unwrap();
        bob_rtp
            .send_to(&rtp(seq, 0xB), ("127.0.0.1", relay_for_bob))
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(2), bob_rtp.recv_from(&mut buf))
            .await
            .expect("RTP relayed to Bob")
            .unwrap();
        tokio::time::timeout(Duration::from_secs(2), alice_rtp.recv_from(&mut buf))
            .await
            .expect("RTP relayed to Alice")
            .unwrap();
    }
    let bye = alice.in_dialog(&answered, "BYE", 3);
    alice.send(bye.as_bytes()).await;
    assert_eq!(alice.response(false).await.status, StatusCode::OK);
    let bye = bob.request().await;
    bob.reply(&bye, StatusCode::OK, "b").await;

    // Every service is ready, and its counters moved.
    let expectations: [(&str, &[&str]); 4] = [
        (
            "edge-k",
            &[
                r#"calanque_sip_requests_total{method="INVITE",transport="udp"}"#,
                r#"calanque_sip_requests_total{method="REGISTER",transport="udp"}"#,
                r#"calanque_registrations_total{result="success",reason="ok"}"#,
                "calanque_bus_request_seconds_count",
            ],
        ),
        (
            "cc-o",
            &[
                "calanque_call_attempts_total",
                r#"calanque_call_setups_total{result="answered",status="200"}"#,
                r#"calanque_calls_ended_total{cause="caller_bye"}"#,
                "calanque_call_setup_seconds_count",
                r#"calanque_store_operation_seconds_count{operation="txn"}"#,
            ],
        ),
        (
            "media-k",
            &[
                r#"calanque_media_packets_total{kind="rtp",outcome="relayed"}"#,
                "calanque_bus_connected",
            ],
        ),
        (
            "directory",
            &[r#"calanque_store_operation_seconds_count{operation="list"}"#],
        ),
    ];
    for (service, series) in expectations {
        let endpoints = cluster.endpoints(service);
        assert_eq!(get(endpoints, "/healthz").await.0, 200, "{service} live");
        let (status, body) = get(endpoints, "/readyz").await;
        assert_eq!(status, 200, "{service} ready: {body}");
        // Metrics are read after the call; the last writes (CDR, store) may trail by ms.
        let mut text = String::new();
        for _ in 0..50 {
            text = get(endpoints, "/metrics").await.1;
            if series.iter().all(|s| sample(&text, s) > 0.0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for s in series {
            assert!(
                sample(&text, s) > 0.0,
                "{service}: {s} did not move:\n{text}"
            );
        }
        assert!(
            text.contains("calanque_ready 1"),
            "{service}: calanque_ready:\n{text}"
        );
    }
    let media = get(cluster.endpoints("media-k"), "/metrics").await.1;
    assert!(
        sample(
            &media,
            r#"calanque_media_packets_total{kind="rtp",outcome="relayed"}"#
        ) >= 20.0,
        "both directions relayed:\n{media}"
    );
    assert!(
        media.contains("calanque_media_sessions 0"),
        "released:\n{media}"
    );

    // One trace holds the call's spans from the edge, call-control and media.
    let mut services_by_trace: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for _ in 0..100 {
        services_by_trace.clear();
        for span in spans.lock().unwrap().iter() {
            services_by_trace
                .entry(span.trace_id.clone())
                .or_default()
                .insert(span.service.clone());
        }
        let whole = services_by_trace.values().any(|services| {
            ["edge", "call-control", "media"]
                .iter()
                .all(|s| services.contains(*s))
        });
        if whole {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let received = spans.lock().unwrap().clone();
    let whole = services_by_trace
        .iter()
        .find(|(_, services)| {
            ["edge", "call-control", "media"]
                .iter()
                .all(|s| services.contains(*s))
        })
        .map(|(trace, _)| trace.clone());
    let Some(trace) = whole else {
        panic!(
            "no trace spans edge, call-control and media ({call_id}); traces: \
             {services_by_trace:?}; spans: {received:?}"
        );
    };
    // The INVITE's trace: handed off by the edge, handled by call-control, which allocated
    // the relay session on media.
    let names: BTreeSet<&str> = received
        .iter()
        .filter(|span| span.trace_id == trace)
        .map(|span| span.name.as_str())
        .collect();
    for name in ["edge.handoff", "call_control.request", "media.request"] {
        assert!(
            names.contains(name),
            "{name} missing from the trace: {names:?}"
        );
    }
}
