//! Calls another replica ended, forgotten here.
//!
//! The queue group spreads a call's in-dialog requests over the replicas (ADR 0012): the one
//! that set a call up often never sees its BYE, which another replica takes over and ends. The
//! first kept its copy of the call (and its record, and its relay anchor) for good: only a due
//! session timer looked at the store again. Replicas grew by every such call, and
//! `calanque_calls_active` counted them (the e2e runs ended with dozens of calls "active" and
//! none up). A watch on the stored calls now tells the loop each call whose snapshot was
//! deleted; a call still held here is dropped quietly (the replica that ended it sent the BYEs,
//! wrote the record and released the relay session).

use std::sync::Arc;

use store::mirror::{RETRY_FIRST, RETRY_MAX};
use store::{Revision, Store, StoreError, WatchEvent};
use tokio::sync::mpsc;

use super::relocate::CALLS_PREFIX;

/// Ended calls waiting for the loop; beyond this the watch waits (nothing is lost).
const WAITING: usize = 1024;

/// The Call-ID a stored call's key names (`call_key` escapes '/' and '%').
pub(super) fn call_id_of(key: &str) -> Option<String> {
    let escaped = key.strip_prefix(CALLS_PREFIX)?;
    let mut call_id = String::with_capacity(escaped.len());
    let mut rest = escaped;
    while let Some(at) = rest.find('%') {
        call_id.push_str(&rest[..at]);
        let (decoded, skip) = match rest.get(at..at + 3) {
            Some("%2F") => ('/', 3),
            Some("%25") => ('%', 3),
            _ => ('%', 1),
        };
        call_id.push(decoded);
        rest = &rest[at + skip..];
    }
    call_id.push_str(rest);
    Some(call_id)
}

/// Follows deletions under the calls prefix and sends each deleted call's Call-ID. The watch
/// resumes by itself after a store outage; one that ends is opened again after the last
/// revision seen (after a compaction, from now: what was deleted in between stays held here).
pub(super) fn follow(store: Arc<dyn Store>) -> mpsc::Receiver<String> {
    let (sender, receiver) = mpsc::channel(WAITING);
    tokio::spawn(async move {
        // 0: from now.
        let mut from: Revision = 0;
        let mut pause = RETRY_FIRST;
        loop {
            let mut watch = match store.watch(CALLS_PREFIX, from).await {
                Ok(watch) => watch,
                Err(StoreError::Compacted { .. }) => {
                    from = 0;
                    continue;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "watching the stored calls failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(RETRY_MAX);
                    continue;
                }
            };
            loop {
                match watch.next().await {
                    Some(Ok(WatchEvent::Delete { key, revision })) => {
                        pause = RETRY_FIRST;
                        from = from.max(revision + 1);
                        if let Some(call_id) = call_id_of(&key)
                            && sender.send(call_id).await.is_err()
                        {
                            return; // the service stopped
                        }
                    }
                    Some(Ok(WatchEvent::Put(kv))) => from = from.max(kv.mod_revision + 1),
                    Some(Err(StoreError::Compacted { .. })) => {
                        from = 0;
                        break;
                    }
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "the stored calls' watch was lost");
                        break;
                    }
                    None => break,
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(RETRY_MAX);
        }
    });
    receiver
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::b2bua::call_key;

    #[test]
    fn a_key_gives_back_its_call_id() {
        for call_id in ["abc@host", "a/b%c@h", "%2F", "x%", "%%25/"] {
            assert_eq!(call_id_of(&call_key(call_id)).as_deref(), Some(call_id));
        }
        assert_eq!(call_id_of("calanque/v1/other/x"), None);
    }
}
