//! A member that refuses connections among the endpoints: etcd-client's balanced channel
//! kept handing it requests (a third of them failed after a datacenter loss in the
//! two-datacenter e2e); the store asks the members one after another and avoids the one that
//! failed, so every request succeeds through the live member.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bytes::Bytes;
use store::etcd::{EtcdConfig, EtcdStore};
use store::{Compare, Op, Store};
use testkit::etcd::EtcdServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_succeeds_with_a_member_refusing_connections() {
    let server = tokio::task::spawn_blocking(EtcdServer::start)
        .await
        .unwrap()
        .unwrap();
    // Nothing listens there: connections are refused at once.
    let dead = format!("http://127.0.0.1:{}", testkit::process::free_port());
    let mut config = EtcdConfig::new([dead.clone(), server.endpoint(), dead]);
    config.request_timeout = Duration::from_secs(5);
    let store = EtcdStore::connect(&config).await.unwrap();
    for i in 0..60 {
        let key = format!("member-down/{i}");
        store
            .put(&key, Bytes::from_static(b"v"), None)
            .await
            .unwrap_or_else(|e| panic!("put {i}: {e}"));
        let kv = store.get(&key).await.unwrap().expect("written");
        let outcome = store
            .txn(
                vec![Compare::ModRevision(key.clone(), kv.mod_revision)],
                vec![Op::Delete { key: key.clone() }],
            )
            .await
            .unwrap_or_else(|e| panic!("txn {i}: {e}"));
        assert!(outcome.succeeded, "the transaction applied once");
    }
    let (left, _) = store.list_prefix("member-down/").await.unwrap();
    assert!(left.is_empty());
    let mut watch = store.watch("member-down/", 0).await.unwrap();
    store
        .put("member-down/w", Bytes::from_static(b"v"), None)
        .await
        .unwrap();
    let event = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .unwrap();
    assert!(event.is_some());
}
