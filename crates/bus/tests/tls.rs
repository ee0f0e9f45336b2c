//! `NatsBus` over TLS to a real nats-server that verifies client certificates: publish,
//! subscribe and request/reply work; trusting the wrong CA or presenting no certificate fails
//! the connection within its timeout (ADR 0019).

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bus::nats::{ClientIdentity, NatsTls};
use bus::{Bus, BusError, BusHeaders, NatsBus, NatsOptions};
use bytes::Bytes;
use testkit::nats::NatsServer;
use testkit::tls::TestPki;
use tokio::time::{Instant, timeout};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

fn options(server: &NatsServer, tls: NatsTls) -> NatsOptions {
    let mut options = NatsOptions::new("tls-test", vec![server.url()]).with_tls(tls);
    options.connection_timeout = CONNECT_TIMEOUT;
    options
}

fn mutual(pki: &TestPki) -> NatsTls {
    NatsTls {
        ca_file: Some(pki.ca_file()),
        identity: Some(ClientIdentity {
            cert_file: pki.client_cert_file(),
            key_file: pki.client_key_file(),
        }),
    }
}

/// Blocks the test's thread while the server starts (a few milliseconds; nothing else runs
/// on it yet).
fn start(pki: &TestPki) -> NatsServer {
    NatsServer::start_tls(pki).unwrap()
}

/// Connecting must fail, and within the connection timeout (not retry forever).
async fn refused(options: NatsOptions) -> BusError {
    let started = Instant::now();
    let result = timeout(CONNECT_TIMEOUT * 3, NatsBus::connect(options))
        .await
        .expect("the failure is bounded, not a hang");
    let error = result.expect_err("the misconfigured client is refused");
    assert!(
        started.elapsed() <= CONNECT_TIMEOUT + Duration::from_millis(500),
        "failed after {:?}",
        started.elapsed()
    );
    error
}

#[tokio::test]
async fn publish_subscribe_and_request_over_mutual_tls() {
    let pki = TestPki::generate().unwrap();
    let server = start(&pki);
    assert!(server.url().starts_with("tls://"));
    let bus = NatsBus::connect(options(&server, mutual(&pki)))
        .await
        .unwrap();
    assert!(bus.is_connected());

    let mut events = bus.subscribe("tls.events.>").await.unwrap();
    bus.publish(
        "tls.events.one",
        BusHeaders::new(),
        Bytes::from_static(b"hello"),
    )
    .await
    .unwrap();
    let event = timeout(Duration::from_secs(5), events.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event.subject, "tls.events.one");
    assert_eq!(event.payload, Bytes::from_static(b"hello"));

    let mut service = bus.subscribe("tls.echo").await.unwrap();
    let responder = bus.clone();
    tokio::spawn(async move {
        while let Some(request) = service.next().await {
            let payload = request.payload.clone();
            responder
                .reply(&request, BusHeaders::new(), payload)
                .await
                .unwrap();
        }
    });
    bus.flush().await.unwrap();
    let reply = bus
        .request(
            "tls.echo",
            BusHeaders::new(),
            Bytes::from_static(b"ping"),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(reply.payload, Bytes::from_static(b"ping"));
}

#[tokio::test]
async fn a_client_trusting_another_ca_is_refused_clearly() {
    let pki = TestPki::generate().unwrap();
    let server = start(&pki);
    let mut tls = mutual(&pki);
    tls.ca_file = Some(pki.other_ca_file());
    let error = refused(options(&server, tls)).await.to_string();
    assert!(error.contains("UnknownIssuer"), "{error}");
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused() {
    let pki = TestPki::generate().unwrap();
    let server = start(&pki);
    let tls = NatsTls {
        ca_file: Some(pki.ca_file()),
        identity: None,
    };
    let error = refused(options(&server, tls)).await.to_string();
    assert!(error.contains("CertificateRequired"), "{error}");
}

#[tokio::test]
async fn a_missing_file_is_named_before_connecting() {
    let pki = TestPki::generate().unwrap();
    let server = start(&pki);
    let mut tls = mutual(&pki);
    tls.ca_file = Some(pki.dir().join("absent-ca.crt"));
    let error = refused(options(&server, tls)).await;
    assert!(matches!(error, BusError::Config(_)), "{error}");
    assert!(error.to_string().contains("absent-ca.crt"), "{error}");
}
