//! The failover controller's stored state reaches the reconciler: a `FailoverState` written at
//! `calanque/v1/failover/state` — on the embedded store, and on a real etcd — is followed by a
//! `StateFeed`, which signals a change (what reconciles every cluster) and hands the expected
//! snapshot to the reconciler's `FailoverView`, each within a second.

// Helpers outside the `#[test]`s unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use failover::state::{DatacenterHealth, STATE_KEY, WriteStamp};
use failover::{Action, FailoverState};
use futures::{Stream, StreamExt as _};
use k8s_openapi::jiff::Timestamp;
use operator::failover_view::{DatacenterState, Outage, RunningFailover};
use operator::{FailoverSnapshot, FailoverView as _, StateFeed};
use store::Store;
use store::embedded::EmbeddedStore;
use store::etcd::{EtcdConfig, EtcdStore};
use testkit::etcd::EtcdServer;
use tokio::time::Instant;

fn t(rfc3339: &str) -> Timestamp {
    rfc3339.parse().unwrap()
}

fn ms(rfc3339: &str) -> i64 {
    t(rfc3339).as_millisecond()
}

fn stamp(at: &str) -> WriteStamp {
    WriteStamp {
        writer: "c1".to_owned(),
        fencing_revision: 7,
        at_unix_ms: ms(at),
    }
}

fn judged(datacenter: &str, healthy: bool, since: &str) -> DatacenterHealth {
    DatacenterHealth {
        datacenter: datacenter.to_owned(),
        healthy,
        since_unix_ms: ms(since),
    }
}

/// The states a leader writes: dc-a active with both judged healthy, then dc-a lost and the
/// roles moving to dc-b (the transitions the failover controller uses).
fn states() -> (FailoverState, FailoverState) {
    let initial = FailoverState::initial("dc-a", &stamp("2026-11-29T09:00:00Z"));
    let healthy = FailoverState::after_round(
        Some(&initial),
        &Action::Nothing,
        &[
            judged("dc-a", true, "2026-11-29T09:00:00Z"),
            judged("dc-b", true, "2026-11-29T09:00:00Z"),
        ],
        &stamp("2026-11-29T09:00:10Z"),
    )
    .unwrap();
    let moving = FailoverState::after_round(
        Some(&healthy),
        &Action::StartFailover {
            from: "dc-a".into(),
            to: "dc-b".into(),
        },
        &[
            judged("dc-a", false, "2026-11-29T11:00:00Z"),
            judged("dc-b", true, "2026-11-29T09:00:00Z"),
        ],
        &stamp("2026-11-29T11:00:10Z"),
    )
    .unwrap();
    (healthy, moving)
}

fn expected_healthy() -> FailoverSnapshot {
    FailoverSnapshot {
        active_datacenter: "dc-a".into(),
        datacenters: vec![
            DatacenterState {
                name: "dc-a".into(),
                healthy: true,
                since: t("2026-11-29T09:00:00Z"),
            },
            DatacenterState {
                name: "dc-b".into(),
                healthy: true,
                since: t("2026-11-29T09:00:00Z"),
            },
        ],
        history: Vec::new(),
        running: None,
        outages: Vec::new(),
    }
}

fn expected_moving() -> FailoverSnapshot {
    FailoverSnapshot {
        active_datacenter: "dc-b".into(),
        datacenters: vec![
            DatacenterState {
                name: "dc-a".into(),
                healthy: false,
                since: t("2026-11-29T11:00:00Z"),
            },
            DatacenterState {
                name: "dc-b".into(),
                healthy: true,
                since: t("2026-11-29T09:00:00Z"),
            },
        ],
        history: Vec::new(),
        running: Some(RunningFailover {
            from: "dc-a".into(),
            to: "dc-b".into(),
            reason: "DatacenterLost".into(),
            started_at: t("2026-11-29T11:00:10Z"),
        }),
        outages: vec![Outage {
            datacenter: "dc-a".into(),
            started_at: t("2026-11-29T11:00:00Z"),
            ended_at: None,
        }],
    }
}

/// Writes `state` and waits for the feed's change signal; the snapshot the reconciler then
/// reads. Both within a second of the write.
async fn written_and_seen(
    store: &dyn Store,
    feed: &StateFeed,
    changes: &mut (impl Stream<Item = ()> + Unpin),
    state: &FailoverState,
) -> FailoverSnapshot {
    let written = Instant::now();
    store
        .put(STATE_KEY, Bytes::from(state.encode()), None)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(1), changes.next())
        .await
        .expect("a change signalled within a second of the write")
        .expect("the change stream lives as long as the feed");
    let snapshot = feed
        .snapshot("calanque", "city")
        .expect("a snapshot after the change");
    let took = written.elapsed();
    println!("state seen by the view {took:?} after its write");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    snapshot
}

async fn the_written_state_reaches_the_view(store: Arc<dyn Store>) {
    let feed = StateFeed::new();
    let mut changes = Box::pin(feed.changes());
    let follower = tokio::spawn(feed.clone().follow(store.clone()));
    assert_eq!(feed.snapshot("calanque", "city"), None, "no state yet");

    let (healthy, moving) = states();
    assert_eq!(
        written_and_seen(store.as_ref(), &feed, &mut changes, &healthy).await,
        expected_healthy()
    );
    assert_eq!(
        written_and_seen(store.as_ref(), &feed, &mut changes, &moving).await,
        expected_moving()
    );
    // Every cluster this operator reconciles gets it.
    assert_eq!(feed.snapshot("other", "town"), Some(expected_moving()));
    follower.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path().join("store.redb"))
        .await
        .unwrap();
    the_written_state_reaches_the_view(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_real_etcd() {
    let etcd = tokio::task::spawn_blocking(EtcdServer::start)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("etcd did not start: {e}"));
    let store = EtcdStore::connect(&EtcdConfig::new([etcd.endpoint()]))
        .await
        .unwrap();
    the_written_state_reaches_the_view(Arc::new(store)).await;
}

/// A state already stored when the operator starts is its first snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_stored_before_the_operator_starts_is_its_first_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        EmbeddedStore::open(dir.path().join("store.redb"))
            .await
            .unwrap(),
    );
    let (_, moving) = states();
    store
        .put(STATE_KEY, Bytes::from(moving.encode()), None)
        .await
        .unwrap();
    let feed = StateFeed::new();
    let mut changes = Box::pin(feed.changes());
    let follower = tokio::spawn(feed.clone().follow(store));
    tokio::time::timeout(Duration::from_secs(1), changes.next())
        .await
        .expect("the stored state within a second");
    assert_eq!(feed.snapshot("calanque", "city"), Some(expected_moving()));
    follower.abort();
}
