//! `watch_state` on the embedded store: the stored state first, then every write once, an
//! unreadable write skipped, and a lost watch followed by a new listing that yields no
//! duplicate.

// Helpers outside the `#[test]`s unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use failover::state::{STATE_KEY, WriteStamp};
use failover::{Action, FailoverState, watch_state};
use futures::{Stream, StreamExt as _};
use store::embedded::EmbeddedStore;
use store::{Compare, KeyValue, LeaseId, Op, Revision, Store, StoreError, TxnOutcome, Watch};

fn stamp(at: i64) -> WriteStamp {
    WriteStamp {
        writer: "c1".to_owned(),
        fencing_revision: 7,
        at_unix_ms: at,
    }
}

fn states() -> [FailoverState; 3] {
    let first = FailoverState::initial("dc-a", &stamp(1));
    let moved = FailoverState::next(
        Some(&first),
        &Action::StartFailover {
            from: "dc-a".into(),
            to: "dc-b".into(),
        },
        &stamp(2),
    )
    .unwrap();
    let completed =
        FailoverState::next(Some(&moved), &Action::CompleteMove { epoch: 2 }, &stamp(3)).unwrap();
    [first, moved, completed]
}

async fn next(stream: &mut (impl Stream<Item = FailoverState> + Unpin)) -> FailoverState {
    tokio::time::timeout(Duration::from_secs(1), stream.next())
        .await
        .expect("a state within a second")
        .expect("the stream never ends")
}

async fn nothing_more(stream: &mut (impl Stream<Item = FailoverState> + Unpin)) {
    nothing_for(stream, Duration::from_millis(300)).await;
}

/// Polls `stream` for `period` (it makes progress only while polled): nothing comes.
async fn nothing_for(stream: &mut (impl Stream<Item = FailoverState> + Unpin), period: Duration) {
    let more = tokio::time::timeout(period, stream.next()).await;
    assert!(more.is_err(), "unexpected {more:?}");
}

async fn embedded() -> (tempfile::TempDir, Arc<EmbeddedStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path().join("store.redb"))
        .await
        .unwrap();
    (dir, Arc::new(store))
}

#[tokio::test]
async fn the_stored_state_then_every_write_once() {
    let (_dir, store) = embedded().await;
    let [first, moved, completed] = states();
    store
        .put(STATE_KEY, Bytes::from(first.encode()), None)
        .await
        .unwrap();
    let mut stream = Box::pin(watch_state(store.clone()));
    assert_eq!(next(&mut stream).await, first);
    nothing_more(&mut stream).await;

    store
        .put(STATE_KEY, Bytes::from(moved.encode()), None)
        .await
        .unwrap();
    assert_eq!(next(&mut stream).await, moved);
    // Unreadable bytes are skipped; the next readable write comes through.
    store
        .put(STATE_KEY, Bytes::from_static(b"\xff\xff"), None)
        .await
        .unwrap();
    store
        .put(
            "calanque/v1/failover/failback",
            Bytes::from_static(b"dc-a"),
            None,
        )
        .await
        .unwrap();
    store
        .put(STATE_KEY, Bytes::from(completed.encode()), None)
        .await
        .unwrap();
    assert_eq!(next(&mut stream).await, completed);
    nothing_more(&mut stream).await;
}

#[tokio::test]
async fn without_a_state_the_stream_waits_for_the_first_one() {
    // No state yet: the stream waits, then yields the first one written.
    let (_dir, store) = embedded().await;
    let mut stream = Box::pin(watch_state(store.clone()));
    nothing_more(&mut stream).await;
    let [first, ..] = states();
    store
        .put(STATE_KEY, Bytes::from(first.encode()), None)
        .await
        .unwrap();
    assert_eq!(next(&mut stream).await, first);
}

/// The embedded store, whose first `lose` watches end at once (a lost connection).
#[derive(Debug)]
struct LosingWatches {
    inner: Arc<EmbeddedStore>,
    lose: usize,
    watches: AtomicUsize,
    listings: AtomicUsize,
}

#[async_trait]
impl Store for LosingWatches {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.inner.get(key).await
    }

    async fn list_prefix(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision), StoreError> {
        self.listings.fetch_add(1, Ordering::SeqCst);
        self.inner.list_prefix(prefix).await
    }

    async fn put(
        &self,
        key: &str,
        value: Bytes,
        lease: Option<LeaseId>,
    ) -> Result<Revision, StoreError> {
        self.inner.put(key, value, lease).await
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        self.inner.delete(key).await
    }

    async fn txn(&self, compares: Vec<Compare>, ops: Vec<Op>) -> Result<TxnOutcome, StoreError> {
        self.inner.txn(compares, ops).await
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        self.inner.grant_lease(ttl).await
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.inner.keep_alive(lease).await
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.inner.revoke_lease(lease).await
    }

    async fn watch(&self, prefix: &str, from_revision: Revision) -> Result<Watch, StoreError> {
        if self.watches.fetch_add(1, Ordering::SeqCst) < self.lose {
            let (_, receiver) = tokio::sync::mpsc::channel(1);
            return Ok(Watch::new(receiver));
        }
        self.inner.watch(prefix, from_revision).await
    }
}

#[tokio::test]
async fn a_lost_watch_is_listed_again_without_a_duplicate() {
    let (_dir, inner) = embedded().await;
    let [first, moved, _] = states();
    inner
        .put(STATE_KEY, Bytes::from(first.encode()), None)
        .await
        .unwrap();
    let store = Arc::new(LosingWatches {
        inner,
        lose: 2,
        watches: AtomicUsize::new(0),
        listings: AtomicUsize::new(0),
    });
    let mut stream = Box::pin(watch_state(store.clone()));
    assert_eq!(next(&mut stream).await, first);
    // The two lost watches are each followed (after 100 ms, then 200 ms) by a listing of the
    // same state: not yielded again.
    nothing_for(&mut stream, Duration::from_millis(800)).await;
    assert_eq!(store.watches.load(Ordering::SeqCst), 3);
    assert_eq!(store.listings.load(Ordering::SeqCst), 3);
    store
        .put(STATE_KEY, Bytes::from(moved.encode()), None)
        .await
        .unwrap();
    assert_eq!(next(&mut stream).await, moved);
    nothing_more(&mut stream).await;
}
