//! Keeping a key prefix mirrored in memory: the list-then-watch loop shared by every cache of
//! the store (the directory cache, the edge's location service).
//!
//! The caller lists the prefix once itself (so that it can fail when the store is unreachable
//! at startup) and loads its mirror from that listing; [`follow`] then watches from the
//! listing's revision + 1 and hands the events to the [`Mirror`] in batches. When the watch
//! reports compaction, fails or ends, `follow` lists the prefix again, gives the listing to
//! [`Mirror::reload`] and watches from its revision, with a backoff of 100 ms doubling to 2 s
//! while the store is unreachable. The mirror keeps serving its last state meanwhile.
//!
//! `follow` runs until its task is aborted. It holds no lock and leaves nothing half done
//! across an `.await`, so aborting it at any point is safe: the mirror keeps the last batch or
//! listing it was given.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;

use crate::{KeyValue, Revision, Store, StoreError, Watch, WatchEvent};

/// First pause before re-listing or re-watching after a failure.
pub const RETRY_FIRST: Duration = Duration::from_millis(100);
/// Longest pause between attempts while the store is unreachable.
pub const RETRY_MAX: Duration = Duration::from_secs(2);
/// Most watch events given to [`Mirror::apply`] at once (a bulk import is applied in a few
/// batches rather than under one long lock).
pub const MAX_BATCH: usize = 4_096;

/// What a mirror of a key prefix does with what the store says. The methods are called from
/// the [`follow`] task, one at a time, never across an `.await`.
pub trait Mirror: Send + Sync + 'static {
    /// A fresh listing of the whole prefix, taken at `revision`, replaces the mirror's
    /// content. Called only when [`follow`] re-lists after a compaction or a lost watch (the
    /// initial listing is the caller's), so this is where a mirror counts its reloads.
    fn reload(&self, listing: &[KeyValue], revision: Revision);

    /// Watch events, in revision order, in batches of at most [`MAX_BATCH`].
    fn apply(&self, events: Vec<WatchEvent>);

    /// The revision the mirror has reached, if it keeps one that [`follow`] should resume
    /// after: after each batch, `follow` resumes after the larger of its own revision and
    /// this. `None` (the default) resumes after the last event of the batch — what a mirror
    /// whose revision also moves with its own writes wants.
    fn reached(&self) -> Option<Revision> {
        None
    }
}

/// Follows `prefix` from `listed_at + 1` (the revision of the listing the mirror was loaded
/// from) until the task is aborted: applies events in batches, and on compaction or a lost
/// watch re-lists and watches again with a bounded backoff. `what` names the mirror in logs
/// ("directory cache", "location").
pub async fn follow<M: Mirror>(
    store: Arc<dyn Store>,
    prefix: String,
    mirror: Arc<M>,
    listed_at: Revision,
    what: &'static str,
) {
    let mut revision = listed_at;
    let mut pause = RETRY_FIRST;
    let mut stale = false;
    loop {
        if stale {
            match store.list_prefix(&prefix).await {
                Ok((listing, listed)) => {
                    mirror.reload(&listing, listed);
                    revision = listed;
                    stale = false;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "{what} reload failed; serving the last state");
                    backoff(&mut pause).await;
                    continue;
                }
            }
        }
        let watch = match store.watch(&prefix, revision + 1).await {
            Ok(watch) => watch,
            Err(StoreError::Compacted { .. }) => {
                stale = true;
                continue;
            }
            Err(e) => {
                tracing::debug!(error = %e, "{what} watch failed to open; retrying");
                backoff(&mut pause).await;
                continue;
            }
        };
        pause = RETRY_FIRST;
        match read(watch, mirror.as_ref(), &mut revision).await {
            Interrupted::Compacted => {
                tracing::info!(revision, "{what} history compacted; reloading");
            }
            Interrupted::Lost(reason) => {
                tracing::warn!(%reason, revision, "{what} watch lost; reloading");
                backoff(&mut pause).await;
            }
        }
        stale = true;
    }
}

/// Why following the watch stopped; [`follow`] reloads and watches again.
enum Interrupted {
    /// The watch asked for history the store has compacted away.
    Compacted,
    /// The watch failed or ended.
    Lost(String),
}

/// Applies a watch's events in batches until it breaks.
async fn read(mut watch: Watch, mirror: &impl Mirror, revision: &mut Revision) -> Interrupted {
    loop {
        let first = match watch.next().await {
            Some(Ok(event)) => event,
            Some(Err(StoreError::Compacted { .. })) => return Interrupted::Compacted,
            Some(Err(e)) => return Interrupted::Lost(e.to_string()),
            None => return Interrupted::Lost("the watch ended".to_owned()),
        };
        let mut batch = vec![first];
        let mut broken = None;
        // Whatever is already queued joins the batch (`recv` is cancel-safe, so polling once
        // and dropping the future loses nothing).
        while batch.len() < MAX_BATCH {
            match watch.next().now_or_never() {
                Some(Some(Ok(event))) => batch.push(event),
                Some(Some(Err(StoreError::Compacted { .. }))) => {
                    broken = Some(Interrupted::Compacted);
                    break;
                }
                Some(Some(Err(e))) => {
                    broken = Some(Interrupted::Lost(e.to_string()));
                    break;
                }
                Some(None) => {
                    broken = Some(Interrupted::Lost("the watch ended".to_owned()));
                    break;
                }
                None => break,
            }
        }
        let last = batch.last().map(event_revision);
        mirror.apply(batch);
        match (mirror.reached(), last) {
            (Some(reached), _) => *revision = (*revision).max(reached),
            (None, Some(last)) => *revision = last,
            (None, None) => {}
        }
        if let Some(broken) = broken {
            return broken;
        }
    }
}

/// The revision of the write an event reports.
fn event_revision(event: &WatchEvent) -> Revision {
    match event {
        WatchEvent::Put(kv) => kv.mod_revision,
        WatchEvent::Delete { revision, .. } => *revision,
    }
}

async fn backoff(pause: &mut Duration) {
    tokio::time::sleep(*pause).await;
    *pause = (*pause * 2).min(RETRY_MAX);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};

    use bytes::Bytes;
    use tokio::task::JoinHandle;

    use super::*;
    use crate::embedded::EmbeddedStore;

    /// Key → value, plus what the driver did.
    #[derive(Default)]
    struct Map {
        entries: Mutex<BTreeMap<String, Bytes>>,
        reloads: AtomicU64,
        batches: AtomicU64,
    }

    impl Map {
        fn load(&self, listing: &[KeyValue]) {
            *self.entries.lock().unwrap() = listing
                .iter()
                .map(|kv| (kv.key.clone(), kv.value.clone()))
                .collect();
        }

        fn snapshot(&self) -> BTreeMap<String, Bytes> {
            self.entries.lock().unwrap().clone()
        }
    }

    impl Mirror for Map {
        fn reload(&self, listing: &[KeyValue], _revision: Revision) {
            self.reloads.fetch_add(1, Ordering::SeqCst);
            self.load(listing);
        }

        fn apply(&self, events: Vec<WatchEvent>) {
            assert!(events.len() <= MAX_BATCH);
            self.batches.fetch_add(1, Ordering::SeqCst);
            let mut entries = self.entries.lock().unwrap();
            for event in events {
                match event {
                    WatchEvent::Put(kv) => drop(entries.insert(kv.key, kv.value)),
                    WatchEvent::Delete { key, .. } => drop(entries.remove(&key)),
                }
            }
        }
    }

    async fn eventually(mut condition: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !condition() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "condition not met in time"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until `map` holds what the store holds under `m/`; returns its reload count.
    async fn caught_up(store: &dyn Store, map: &Map) -> u64 {
        let (listing, _) = store.list_prefix("m/").await.unwrap();
        let want: BTreeMap<String, Bytes> =
            listing.into_iter().map(|kv| (kv.key, kv.value)).collect();
        eventually(|| map.snapshot() == want).await;
        map.reloads.load(Ordering::SeqCst)
    }

    fn spawn(store: &Arc<dyn Store>, map: &Arc<Map>, from: Revision) -> JoinHandle<()> {
        tokio::spawn(follow(
            store.clone(),
            "m/".to_owned(),
            map.clone(),
            from,
            "test mirror",
        ))
    }

    async fn open() -> (tempfile::TempDir, Arc<EmbeddedStore>) {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path().join("store.redb"))
            .await
            .unwrap();
        (dir, Arc::new(store))
    }

    #[tokio::test]
    async fn follows_writes_and_reloads_after_compaction() {
        let (_dir, embedded) = open().await;
        let store: Arc<dyn Store> = embedded.clone();
        store.put("m/a", Bytes::from("1"), None).await.unwrap();
        store.put("other/x", Bytes::from("x"), None).await.unwrap();

        let map = Arc::new(Map::default());
        let (listing, revision) = store.list_prefix("m/").await.unwrap();
        map.load(&listing);
        let task = spawn(&store, &map, revision);

        store.put("m/b", Bytes::from("2"), None).await.unwrap();
        store.delete("m/a").await.unwrap();
        store.put("other/y", Bytes::from("y"), None).await.unwrap();
        assert_eq!(caught_up(store.as_ref(), &map).await, 0);

        // Stopped, then restarted from a revision whose history is gone: the first watch
        // reports compaction and the driver re-lists.
        task.abort();
        let _ = task.await;
        for i in 0..20 {
            store
                .put(&format!("m/k{i}"), Bytes::from("v"), None)
                .await
                .unwrap();
        }
        let now = store.put("m/last", Bytes::from("z"), None).await.unwrap();
        embedded.compact(now).await.unwrap();
        let task = spawn(&store, &map, revision);
        assert_eq!(caught_up(store.as_ref(), &map).await, 1);

        // And it keeps following afterwards.
        store.delete("m/last").await.unwrap();
        assert_eq!(caught_up(store.as_ref(), &map).await, 1);
        task.abort();
    }

    #[tokio::test]
    async fn a_bulk_write_is_applied_in_bounded_batches() {
        let (_dir, embedded) = open().await;
        let store: Arc<dyn Store> = embedded;
        let map = Arc::new(Map::default());
        let (_, revision) = store.list_prefix("m/").await.unwrap();
        let task = spawn(&store, &map, revision);

        let ops = (0..MAX_BATCH + 100)
            .map(|i| crate::Op::Put {
                key: format!("m/{i:05}"),
                value: Bytes::from("v"),
                lease: None,
            })
            .collect();
        assert!(store.txn(Vec::new(), ops).await.unwrap().succeeded);
        assert_eq!(caught_up(store.as_ref(), &map).await, 0);
        // `apply` asserts the bound; more events than one batch holds took at least two.
        assert!(map.batches.load(Ordering::SeqCst) >= 2);
        task.abort();
    }
}
