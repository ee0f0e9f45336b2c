//! The edge's metrics (docs/metrics.md, SIP, registration, protection and TLS rows) read from
//! its registry's text exposition after real traffic over UDP with a real etcd, and its trace
//! context crossing the bus both ways with call-control (a fake one on the in-process bus).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bus::{Bus, BusHeaders};
use bytes::Bytes;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use prost::Message as _;
use proto::v1::{EdgeRequest, EdgeSend, EdgeSendResult, Flow, SipTransport};
use sip_core::digest::Algorithm;
use sip_edge::config::TlsFiles;
use sip_msg::{SipMessage, StatusCode, build_response};
use support::*;
use telemetry::{BusMetrics, InstrumentedBus, Metrics};
use test_phone::Phone;
use tokio::net::UdpSocket;
use tracing_subscriber::layer::SubscriberExt as _;

/// The value of one series (`name{labels}` exactly as encoded), if it has a sample.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.split(' ').next()?.parse().ok()
    })
}

/// Polls `metrics` until `series` satisfies `holds` (the engine works asynchronously, and its
/// gauges are set when it wakes); panics with the exposition after 5 s.
async fn until(metrics: &Metrics, series: &str, holds: impl Fn(f64) -> bool) -> f64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = metrics.encode();
        if let Some(value) = sample(&text, series)
            && holds(value)
        {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{series} never held; exposition:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn options_to_the_edge(local: SocketAddr, call_id: &str, user_agent: &str) -> String {
    let branch = call_id.replace('@', "-");
    format!(
        "OPTIONS sip:{REALM} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-{branch}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:probe@{REALM}>;tag=p1\r\nTo: <sip:{REALM}>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nUser-Agent: {user_agent}\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_responses_registrations_and_bindings_are_counted() {
    let (_etcd, store) = etcd().await;
    seed_devices(&store, 0..3).await;
    let metrics = Metrics::new("edge");
    let mut config = edge_config("edge-metrics");
    config.metrics = Some(metrics.clone());
    let edge = start_edge(config, store, in_process_bus()).await;

    // A phone registers (401, then 200).
    let mut phone = Phone::new(&username(1), &password(1), REALM, udp_addr(&edge)).await;
    phone.register().await;
    // Another gives a wrong password (401, then 401 again: the final answer).
    let mut guesser = Client::udp(udp_addr(&edge)).await;
    let contact = format!("Contact: {}", guesser.contact());
    let refused = guesser
        .register(&username(2), "not-the-password", Algorithm::Md5, &[contact])
        .await;
    assert_eq!(refused.status.as_u16(), 401);
    // A keep-alive OPTIONS to the edge itself.
    let mut prober = Client::udp(udp_addr(&edge)).await;
    let options = options_to_the_edge(prober.local, "opt-1@test", "Phone/1.0");
    prober.send(&options).await;
    let ok = prober.final_response(Duration::from_secs(5)).await.unwrap();
    assert_eq!(ok.status.as_u16(), 200);
    // Answers the transaction layer gives by itself: 481 to a CANCEL matching nothing, 400 to
    // an INVITE that does not parse.
    let local = prober.local;
    let stray_cancel = format!(
        "CANCEL sip:{REALM} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-stray\r\n\
         Max-Forwards: 70\r\nFrom: <sip:a@{REALM}>;tag=s1\r\nTo: <sip:b@{REALM}>\r\n\
         Call-ID: stray@test\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n"
    );
    prober.send(&stray_cancel).await;
    let stray = prober.final_response(Duration::from_secs(5)).await.unwrap();
    assert_eq!(stray.status.as_u16(), 481);
    let broken_invite = format!(
        "INVITE sip:b@{REALM} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-broken\r\n\
         Max-Forwards: many\r\nFrom: <sip:a@{REALM}>;tag=s2\r\nTo: <sip:b@{REALM}>\r\n\
         Call-ID: broken@test\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    );
    prober.send(&broken_invite).await;
    let refused = prober.final_response(Duration::from_secs(5)).await.unwrap();
    assert_eq!(refused.status.as_u16(), 400);

    let requests = until(
        &metrics,
        r#"calanque_sip_requests_total{method="REGISTER",transport="udp"}"#,
        |v| v >= 3.0,
    )
    .await;
    assert_eq!(requests, 4.0, "two exchanges of two REGISTERs each");
    until(&metrics, "calanque_registration_bindings", |v| v == 1.0).await;
    let text = metrics.encode();
    let expected = [
        (
            r#"calanque_sip_requests_total{method="OPTIONS",transport="udp"}"#,
            1.0,
        ),
        (
            r#"calanque_sip_responses_total{method="REGISTER",class="2xx"}"#,
            1.0,
        ),
        (
            r#"calanque_sip_responses_total{method="REGISTER",class="4xx"}"#,
            3.0,
        ),
        (
            r#"calanque_sip_responses_total{method="OPTIONS",class="2xx"}"#,
            1.0,
        ),
        (
            r#"calanque_sip_responses_total{method="CANCEL",class="4xx"}"#,
            1.0,
        ),
        (
            r#"calanque_sip_responses_total{method="INVITE",class="4xx"}"#,
            1.0,
        ),
        (
            r#"calanque_registrations_total{result="success",reason="ok"}"#,
            1.0,
        ),
        (
            r#"calanque_registrations_total{result="user_failure",reason="wrong_credentials"}"#,
            1.0,
        ),
    ];
    for (series, value) in expected {
        assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
    }
    // The two first challenges are not final answers: nothing else was counted.
    let registrations = text
        .lines()
        .filter(|l| l.starts_with("calanque_registrations_total{"))
        .count();
    assert_eq!(registrations, 2, "{text}");
    assert!(
        sample(&text, r#"calanque_sip_transactions{kind="server"}"#).is_some(),
        "{text}"
    );
    assert_eq!(
        sample(&text, r#"calanque_sip_transactions{kind="client"}"#),
        Some(0.0)
    );
    edge.drain().await;
}

async fn bound(ip: Ipv4Addr) -> UdpSocket {
    UdpSocket::bind((ip, 0)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_scanner_and_guessing_drops_and_bans_are_counted() {
    let (_etcd, store) = etcd().await;
    seed_devices(&store, 0..2).await;
    let metrics = Metrics::new("edge");
    let mut config = edge_config("edge-protected");
    config.metrics = Some(metrics.clone());
    config.protection.rate_per_second = 1;
    config.protection.burst = 5;
    config.protection.auth_failures_before_ban = 2;
    let edge = start_edge(config, store, in_process_bus()).await;
    let edge_addr = udp_addr(&edge);

    // A scanner's User-Agent: dropped, never banned.
    let scanner = bound(Ipv4Addr::new(127, 0, 0, 3)).await;
    let text = options_to_the_edge(
        scanner.local_addr().unwrap(),
        "scan@test",
        "friendly-scanner",
    );
    scanner.send_to(text.as_bytes(), edge_addr).await.unwrap();
    until(
        &metrics,
        r#"calanque_protection_drops_total{reason="scanner"}"#,
        |v| v == 1.0,
    )
    .await;

    // 20 requests at once from one source: 5 pass (the burst), the 6th bans it, 14 hit the ban.
    let flooder = bound(Ipv4Addr::new(127, 0, 0, 2)).await;
    for i in 0..20 {
        let text = options_to_the_edge(
            flooder.local_addr().unwrap(),
            &format!("flood-{i}@test"),
            "Phone/1.0",
        );
        flooder.send_to(text.as_bytes(), edge_addr).await.unwrap();
    }
    until(
        &metrics,
        r#"calanque_protection_drops_total{reason="banned"}"#,
        |v| v == 14.0,
    )
    .await;
    let text = metrics.encode();
    assert_eq!(
        sample(&text, r#"calanque_protection_drops_total{reason="rate"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, r#"calanque_protection_bans_total{reason="flood"}"#),
        Some(1.0),
        "{text}"
    );

    // Two wrong passwords from one source ban it (auth_failures_before_ban = 2).
    let mut guesser = Client::udp(edge_addr).await;
    for _ in 0..2 {
        let contact = format!("Contact: {}", guesser.contact());
        let refused = guesser
            .register(&username(1), "guess", Algorithm::Md5, &[contact])
            .await;
        assert_eq!(refused.status.as_u16(), 401);
    }
    until(
        &metrics,
        r#"calanque_protection_bans_total{reason="auth_failures"}"#,
        |v| v == 1.0,
    )
    .await;
    assert_eq!(
        sample(
            &metrics.encode(),
            r#"calanque_registrations_total{result="user_failure",reason="wrong_credentials"}"#
        ),
        Some(2.0)
    );
    edge.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tls_certificate_expiry_is_its_not_after() {
    let (_etcd, store) = etcd().await;
    let dir = tempfile::tempdir().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["edge.calanque.test".into()]).unwrap();
    params.not_after = rcgen::date_time_ymd(2031, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let certificate = params.self_signed(&key).unwrap();
    let files = TlsFiles {
        certificate: dir.path().join("tls.crt"),
        key: dir.path().join("tls.key"),
    };
    std::fs::write(&files.certificate, certificate.pem()).unwrap();
    std::fs::write(&files.key, key.serialize_pem()).unwrap();

    let metrics = Metrics::new("edge");
    let mut config = edge_config("edge-tls");
    config.listen.push("tls:127.0.0.1:0".parse().unwrap());
    config.tls = Some(files);
    config.metrics = Some(metrics.clone());
    let edge = start_edge(config, store, in_process_bus()).await;

    // 2031-01-01T00:00:00Z.
    assert_eq!(
        sample(
            &metrics.encode(),
            "calanque_tls_certificate_expiry_timestamp_seconds"
        ),
        Some(1_924_992_000.0)
    );
    edge.abort();
}

/// One process-wide subscriber exporting spans to memory (tests of this file run in parallel
/// threads; the edge's tasks run on the runtime's workers, so it must be the global one).
fn spans() -> &'static InMemorySpanExporter {
    static EXPORTER: OnceLock<InMemorySpanExporter> = OnceLock::new();
    EXPORTER.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("sip-edge-test")));
        tracing::subscriber::set_global_default(subscriber).unwrap();
        exporter
    })
}

/// The trace id and span id of a `traceparent` (`00-<trace>-<span>-<flags>`).
fn trace_parts(traceparent: &str) -> (String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    (parts[1].to_owned(), parts[2].to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_off_carries_the_trace_to_call_control_and_a_send_continues_call_controls() {
    let exporter = spans();
    let (_etcd, store) = etcd().await;
    seed_devices(&store, 0..2).await;
    let inner = in_process_bus();
    let metrics = Metrics::new("edge");
    let bus: Arc<dyn Bus> = Arc::new(InstrumentedBus::new(
        inner.clone(),
        BusMetrics::register(&metrics),
    ));
    let mut call_control = inner
        .subscribe(proto::subjects::CALL_CONTROL_REQUESTS)
        .await
        .unwrap();
    let mut results = inner.subscribe("test.results").await.unwrap();
    let mut config = edge_config("edge-traced");
    // Trusted: the INVITE goes to call-control without a 407 first.
    config.protection.trusted_networks = vec!["127.0.0.0/8".parse().unwrap()];
    let edge = start_edge(config, store, bus).await;

    // A phone's INVITE: the edge hands it over inside `edge.handoff`.
    let phone = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = phone.local_addr().unwrap();
    let invite = format!(
        "INVITE sip:1001@{REALM} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-traced\r\n\
         Max-Forwards: 70\r\nFrom: <sip:user1@{REALM}>;tag=t1\r\nTo: <sip:1001@{REALM}>\r\n\
         Call-ID: traced@test\r\nCSeq: 1 INVITE\r\nContact: <sip:user1@{local}>\r\n\
         Content-Length: 0\r\n\r\n"
    );
    phone
        .send_to(invite.as_bytes(), udp_addr(&edge))
        .await
        .unwrap();
    let handed = tokio::time::timeout(Duration::from_secs(5), call_control.next())
        .await
        .expect("the hand-off in time")
        .unwrap();
    let request = EdgeRequest::decode(handed.payload.clone()).unwrap();
    assert!(String::from_utf8_lossy(&request.message).contains("traced@test"));
    let traceparent = handed
        .headers
        .get("traceparent")
        .expect("the hand-off carries the trace context")
        .to_owned();
    let (trace_id, parent_id) = trace_parts(&traceparent);
    // Call-control's acknowledgement ends the hand-off, and its span.
    inner
        .reply(&handed, BusHeaders::new(), Bytes::new())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let handoff = loop {
        let finished = exporter.get_finished_spans().unwrap();
        if let Some(span) = finished
            .into_iter()
            .find(|s| s.name == "edge.handoff" && s.span_context.trace_id().to_string() == trace_id)
        {
            break span;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no edge.handoff span"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(handoff.span_context.span_id().to_string(), parent_id);
    let attributes: Vec<String> = handoff
        .attributes
        .iter()
        .map(|kv| format!("{}={}", kv.key, kv.value))
        .collect();
    assert!(
        attributes.contains(&"method=INVITE".to_owned())
            && attributes.contains(&"call_id=traced@test".to_owned()),
        "{attributes:?}"
    );

    // Call-control asks the edge to send a request in its own trace: the edge's `edge.send`
    // is a child of it, and the phone's answer goes back in the same trace.
    let callee = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let remote_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let remote_span = "00f067aa0ba902b7";
    let mut headers = BusHeaders::new();
    headers.insert(
        "traceparent",
        &format!("00-{remote_trace}-{remote_span}-01"),
    );
    let message = format!(
        "MESSAGE sip:user1@{} SIP/2.0\r\nVia: SIP/2.0/UDP cc.invalid;branch=z9hG4bK-cc-msg\r\n\
         Max-Forwards: 70\r\nFrom: <sip:1000@{REALM}>;tag=cc1\r\nTo: <sip:user1@{REALM}>\r\n\
         Call-ID: msg@cc\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n",
        callee.local_addr().unwrap()
    );
    let send = EdgeSend {
        call_ref: "call-traced".into(),
        message: message.into_bytes(),
        flow: Some(Flow {
            transport: SipTransport::Udp as i32,
            remote: callee.local_addr().unwrap().to_string(),
            local: String::new(),
            edge_id: "edge-traced".into(),
            datacenter: String::new(),
        }),
        reply_subject: "test.results".into(),
    };
    inner
        .publish(
            &proto::subjects::edge_send("edge-traced"),
            headers,
            Bytes::from(send.encode_to_vec()),
        )
        .await
        .unwrap();
    let mut buf = vec![0u8; 65535];
    let (n, from) = tokio::time::timeout(Duration::from_secs(5), callee.recv_from(&mut buf))
        .await
        .expect("the MESSAGE at the callee")
        .unwrap();
    let SipMessage::Request(sent) = sip_msg::parse_datagram(&buf[..n]).unwrap() else {
        panic!("not a request");
    };
    let answer = build_response(&sent, StatusCode::OK, Some("callee"));
    callee.send_to(&answer.to_bytes(), from).await.unwrap();
    let result = tokio::time::timeout(Duration::from_secs(5), results.next())
        .await
        .expect("the result in time")
        .unwrap();
    assert_eq!(
        EdgeSendResult::decode(result.payload.clone())
            .unwrap()
            .call_ref,
        "call-traced"
    );
    let traceparent = result.headers.get("traceparent").expect("a trace context");
    let (result_trace, result_parent) = trace_parts(traceparent);
    assert_eq!(result_trace, remote_trace, "call-control's trace goes on");
    assert_ne!(
        result_parent, remote_span,
        "the result's parent is the edge's edge.send span"
    );
    edge.abort();
}
