//! Reading the failover state from outside the controller (the PbxCluster operator, tools):
//! [`watch_state`] follows the state key — one listing, then a watch from the listing's
//! revision + 1; after a compaction, a lost watch or an unreachable store it lists and watches
//! again, with a backoff of 100 ms doubling to 2 s while the store fails — and yields every
//! state written, once each, in revision order.
//!
//! The stored key is the source of truth, so a reader that starts late, or was cut off, gets
//! the current state first and then the writes that follow; a relisting never yields the state
//! it already yielded (it compares the key's mod revision). Bytes this version cannot read (a
//! newer phase, garbage) are logged and skipped, as a deletion of the key is: the reader keeps
//! the last state it had.

use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use store::mirror::{RETRY_FIRST, RETRY_MAX};
use store::{KeyValue, Revision, Store, StoreError, Watch, WatchEvent};

use crate::state::{FailoverState, STATE_KEY};

/// Every state written at `calanque/v1/failover/state`, starting with the one stored now (if
/// any). The stream never ends; dropping it stops the watch. Nothing runs until it is polled.
pub fn watch_state(store: Arc<dyn Store>) -> impl Stream<Item = FailoverState> + Send + 'static {
    let follower = Follower {
        store,
        watch: None,
        delivered: 0,
        pause: RETRY_FIRST,
    };
    futures::stream::unfold(follower, |mut follower| async move {
        let state = follower.next().await;
        Some((state, follower))
    })
}

/// The list-then-watch loop of [`watch_state`].
struct Follower {
    store: Arc<dyn Store>,
    watch: Option<Watch>,
    /// The mod revision of the last state yielded (or skipped as unreadable).
    delivered: Revision,
    pause: Duration,
}

impl Follower {
    /// The next state written after the last one yielded.
    async fn next(&mut self) -> FailoverState {
        loop {
            let Some(watch) = self.watch.as_mut() else {
                if let Some(state) = self.list_and_watch().await {
                    return state;
                }
                continue;
            };
            match watch.next().await {
                Some(Ok(WatchEvent::Put(kv))) if kv.key == STATE_KEY => {
                    self.pause = RETRY_FIRST;
                    if let Some(state) = self.accept(&kv) {
                        return state;
                    }
                }
                Some(Ok(WatchEvent::Delete { key, revision })) if key == STATE_KEY => {
                    tracing::warn!(revision, "the failover state was deleted; keeping the last");
                }
                Some(Ok(_)) => {}
                Some(Err(StoreError::Compacted { .. })) => {
                    tracing::info!("failover state watch compacted; listing again");
                    self.watch = None;
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "failover state watch lost; listing again");
                    self.watch = None;
                    self.backoff().await;
                }
                None => {
                    tracing::warn!("failover state watch ended; listing again");
                    self.watch = None;
                    self.backoff().await;
                }
            }
        }
    }

    /// Lists the key and opens the watch after it; the listed state if it was not yielded yet.
    async fn list_and_watch(&mut self) -> Option<FailoverState> {
        let (listing, revision) = match self.store.list_prefix(STATE_KEY).await {
            Ok(listed) => listed,
            Err(e) => {
                tracing::debug!(error = %e, "reading the failover state failed; retrying");
                self.backoff().await;
                return None;
            }
        };
        match self.store.watch(STATE_KEY, revision + 1).await {
            Ok(watch) => self.watch = Some(watch),
            Err(e) => {
                tracing::debug!(error = %e, "watching the failover state failed; retrying");
                self.backoff().await;
                return None;
            }
        }
        let kv = listing.into_iter().find(|kv| kv.key == STATE_KEY)?;
        self.accept(&kv)
    }

    /// The state `kv` holds, unless it was already yielded or cannot be read.
    fn accept(&mut self, kv: &KeyValue) -> Option<FailoverState> {
        if kv.mod_revision <= self.delivered {
            return None;
        }
        self.delivered = kv.mod_revision;
        match FailoverState::decode(&kv.value) {
            Ok(state) => Some(state),
            Err(e) => {
                tracing::warn!(
                    revision = kv.mod_revision,
                    error = %e,
                    "the stored failover state is unreadable; keeping the last"
                );
                None
            }
        }
    }

    async fn backoff(&mut self) {
        tokio::time::sleep(self.pause).await;
        self.pause = (self.pause * 2).min(RETRY_MAX);
    }
}
