//! A callee who registered a moment ago is rung even when call-control's location cache has
//! not caught up with the store yet: the cache follows the store's watch, so before answering
//! 480 call-control reads the callee's bindings from the store itself. The watch is delayed
//! here by a store wrapper so the lag is certain, not a race.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bus::Bus;
use bus::in_process::InProcessBus;
use bytes::Bytes;
use call_control::service::{CallControlConfig, start};
use sip_msg::{Method, StatusCode};
use store::etcd::{EtcdConfig, EtcdStore};
use store::{Compare, KeyValue, LeaseId, Op, Revision, Store, StoreError, TxnOutcome, Watch};
use test_phone::Phone;
use testkit::etcd::EtcdServer;

const REALM: &str = "calanque.test";
/// How late call-control's watches deliver.
const WATCH_DELAY: Duration = Duration::from_secs(3);

/// The store, with every watch event delivered `WATCH_DELAY` late.
#[derive(Debug)]
struct LaggingWatches(Arc<dyn Store>);

#[async_trait]
impl Store for LaggingWatches {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.0.get(key).await
    }
    async fn list_prefix(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision), StoreError> {
        self.0.list_prefix(prefix).await
    }
    async fn put(
        &self,
        key: &str,
        value: Bytes,
        lease: Option<LeaseId>,
    ) -> Result<Revision, StoreError> {
        self.0.put(key, value, lease).await
    }
    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        self.0.delete(key).await
    }
    async fn txn(&self, compares: Vec<Compare>, ops: Vec<Op>) -> Result<TxnOutcome, StoreError> {
        self.0.txn(compares, ops).await
    }
    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        self.0.grant_lease(ttl).await
    }
    async fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.0.keep_alive(lease).await
    }
    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.0.revoke_lease(lease).await
    }
    async fn watch(&self, prefix: &str, from_revision: Revision) -> Result<Watch, StoreError> {
        let mut inner = self.0.watch(prefix, from_revision).await?;
        let (sender, receiver) = tokio::sync::mpsc::channel(1024);
        tokio::spawn(async move {
            while let Some(event) = inner.next().await {
                tokio::time::sleep(WATCH_DELAY).await;
                if sender.send(event).await.is_err() {
                    return;
                }
            }
        });
        Ok(Watch::new(receiver))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callee_registered_a_moment_ago_is_rung_though_the_cache_lags() {
    let etcd = tokio::task::spawn_blocking(EtcdServer::start)
        .await
        .unwrap()
        .unwrap();
    let store: Arc<dyn Store> = Arc::new(
        EtcdStore::connect(&EtcdConfig::new([etcd.endpoint()]))
            .await
            .unwrap(),
    );
    test_phone::directory::seed_small_city(&store, REALM).await;
    let bus: Arc<dyn Bus> = Arc::new(InProcessBus::new(Default::default()));
    let mut config = sip_edge::EdgeConfig::new("edge-1", REALM, [9; 32]);
    config.listen = vec!["udp:127.0.0.1:0".parse().unwrap()];
    let edge = sip_edge::start(config, store.clone(), bus.clone())
        .await
        .unwrap();
    // Call-control's view of the store lags: its watches deliver 3 s late.
    let lagging: Arc<dyn Store> = Arc::new(LaggingWatches(store.clone()));
    let _cc = start(
        CallControlConfig {
            instance: "cc-lag".into(),
            datacenter: String::new(),
            domain: REALM.into(),
            ring_timeout: Duration::from_secs(30),
            cdr_file: None,
            media: None,
        },
        lagging,
        bus.clone(),
    )
    .await
    .unwrap();
    let sip = edge.local_addr(&sip_msg::Transport::Udp).unwrap();

    let mut alice = Phone::new("user1", "pw1", REALM, sip).await;
    let mut bob = Phone::new("user2", "pw2", REALM, sip).await;
    alice.register().await;
    bob.register().await;
    // At once, well within the watch delay.
    alice.call("1002", "lag@alice").await;
    let invite = tokio::time::timeout(Duration::from_secs(2), bob.request())
        .await
        .expect("Bob rang though call-control's cache had not seen his REGISTER");
    assert_eq!(invite.method, Method::Invite);
    bob.reply(&invite, StatusCode::BUSY_HERE, "bob").await;
    assert_eq!(alice.response(false).await.status, StatusCode::BUSY_HERE);

    // Someone who never registered still gets 480, after one store read.
    alice.call("1003", "lag2@alice").await;
    let unregistered = tokio::time::timeout(Duration::from_secs(2), alice.response(false))
        .await
        .expect("an answer for an unregistered callee");
    assert_eq!(unregistered.status, StatusCode::TEMPORARILY_UNAVAILABLE);
    edge.drain().await;
}
