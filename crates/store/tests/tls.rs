//! `EtcdStore` over client TLS to a real etcd running with `--client-cert-auth`: the store's
//! operations and a watch work over mutual TLS; a client trusting the wrong CA, or presenting
//! no certificate, gets an error within its bounds instead of hanging (ADR 0019).

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use store::etcd::{ClientIdentity, EtcdConfig, EtcdStore, EtcdTls};
use store::{Store, StoreError, WatchEvent};
use testkit::etcd::EtcdServer;
use testkit::tls::TestPki;
use tokio::time::{Instant, timeout};

const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

fn config(server: &EtcdServer, tls: EtcdTls) -> EtcdConfig {
    let mut config = EtcdConfig::new([server.endpoint()]).with_tls(tls);
    config.connect_timeout = CONNECT_TIMEOUT;
    config.request_timeout = REQUEST_TIMEOUT;
    config
}

fn mutual(pki: &TestPki) -> EtcdTls {
    EtcdTls {
        ca_file: Some(pki.ca_file()),
        identity: Some(ClientIdentity {
            cert_file: pki.client_cert_file(),
            key_file: pki.client_key_file(),
        }),
    }
}

/// The first request of a misconfigured client: it must fail, and within the bounds.
async fn first_request_fails(config: &EtcdConfig) -> StoreError {
    let started = Instant::now();
    let outcome = async {
        let store = EtcdStore::connect(config).await?;
        store.get("probe").await
    };
    let result = timeout(CONNECT_TIMEOUT + REQUEST_TIMEOUT * 2, outcome)
        .await
        .expect("the failure is bounded, not a hang");
    let error = result.expect_err("the misconfigured client is refused");
    assert!(
        started.elapsed() <= CONNECT_TIMEOUT + REQUEST_TIMEOUT + Duration::from_millis(500),
        "failed after {:?}",
        started.elapsed()
    );
    error
}

#[tokio::test]
async fn put_get_and_watch_over_mutual_tls() {
    let pki = TestPki::generate().unwrap();
    let server = EtcdServer::start_tls(&pki).unwrap();
    assert!(server.endpoint().starts_with("https://"));
    let store = EtcdStore::connect(&config(&server, mutual(&pki)))
        .await
        .unwrap();

    let mut watch = store.watch("tls/", 0).await.unwrap();
    let revision = store
        .put("tls/a", Bytes::from_static(b"one"), None)
        .await
        .unwrap();
    let got = store.get("tls/a").await.unwrap().unwrap();
    assert_eq!(got.value, Bytes::from_static(b"one"));
    assert_eq!(got.mod_revision, revision);
    match timeout(Duration::from_secs(5), watch.next()).await.unwrap() {
        Some(Ok(WatchEvent::Put(kv))) => {
            assert_eq!(kv.key, "tls/a");
            assert_eq!(kv.mod_revision, revision);
        }
        other => panic!("expected the put, got {other:?}"),
    }
}

#[tokio::test]
async fn a_client_trusting_another_ca_fails_clearly() {
    let pki = TestPki::generate().unwrap();
    let server = EtcdServer::start_tls(&pki).unwrap();
    let mut tls = mutual(&pki);
    tls.ca_file = Some(pki.other_ca_file());
    let error = first_request_fails(&config(&server, tls)).await.to_string();
    assert!(error.contains("UnknownIssuer"), "{error}");
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused() {
    let pki = TestPki::generate().unwrap();
    let server = EtcdServer::start_tls(&pki).unwrap();
    let tls = EtcdTls {
        ca_file: Some(pki.ca_file()),
        identity: None,
    };
    first_request_fails(&config(&server, tls)).await;
}

#[tokio::test]
async fn a_plain_client_is_refused_by_a_tls_member() {
    let pki = TestPki::generate().unwrap();
    let server = EtcdServer::start_tls(&pki).unwrap();
    let plain = server.endpoint().replacen("https://", "http://", 1);
    let mut config = EtcdConfig::new([plain]);
    config.connect_timeout = CONNECT_TIMEOUT;
    config.request_timeout = REQUEST_TIMEOUT;
    first_request_fails(&config).await;
}

#[tokio::test]
async fn tls_files_for_http_endpoints_are_refused_before_connecting() {
    let pki = TestPki::generate().unwrap();
    let config = EtcdConfig::new(["http://127.0.0.1:1"]).with_tls(mutual(&pki));
    let error = EtcdStore::connect(&config).await.unwrap_err();
    assert!(matches!(error, StoreError::Config(_)), "{error}");
}
