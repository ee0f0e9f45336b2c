//! Group commit: concurrent registrations on one edge share store transactions.
//!
//! Each `apply` is one fenced transaction (compares + ops). Under load (a power cut, 6,000
//! phones at once) most of etcd's work per transaction is fixed cost (gRPC, raft proposal, WAL
//! write), so the committer merges the transactions waiting at the same moment into one, up to
//! etcd's default `--max-txn-ops` (128 per branch), and keeps a few merged transactions in
//! flight. Merging is safe because the parts touch disjoint keys (a part that shares a key with
//! the batch waits for the next one) and every part's compares still hold or not: if the merged
//! transaction fails its compares, or fails at all, each part is retried alone so that only the
//! part that lost its race sees the conflict (or the error).

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use futures::future::join_all;
use store::{Compare, Op, Store, StoreError, TxnOutcome};
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Compares or ops in one merged transaction, under etcd's default `--max-txn-ops` of 128.
const MAX_TXN_PARTS: usize = 120;
/// Merged transactions in flight at once. Measured with `make bench-register` on 2 cores
/// (authenticated registrations/s): 1 → ~8.5k, 2 → ~9.2k, 4 → ~8.5k, 16 → ~6k. More in flight
/// makes smaller merges, and etcd's per-transaction cost wins again.
const IN_FLIGHT: usize = 2;
/// Transactions waiting to be merged.
const QUEUE: usize = 4_096;

type Reply = oneshot::Sender<Result<TxnOutcome, StoreError>>;

struct Part {
    compares: Vec<Compare>,
    ops: Vec<Op>,
    reply: Reply,
}

impl Part {
    fn keys(&self) -> impl Iterator<Item = &str> {
        let compared = self.compares.iter().map(|c| match c {
            Compare::ModRevision(k, _) | Compare::Absent(k) | Compare::Present(k) => k.as_str(),
        });
        let written = self.ops.iter().map(|o| match o {
            Op::Put { key, .. } | Op::Delete { key } => key.as_str(),
            Op::DeletePrefix { prefix } => prefix.as_str(),
        });
        compared.chain(written)
    }
}

/// The handle `apply` commits through.
#[derive(Debug, Clone)]
pub(super) struct Committer {
    parts: mpsc::Sender<Part>,
}

impl std::fmt::Debug for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Part")
            .field("compares", &self.compares.len())
            .field("ops", &self.ops.len())
            .finish()
    }
}

impl Committer {
    /// Starts the merging task; it ends when the last handle is dropped.
    pub(super) fn start(store: Arc<dyn Store>) -> Committer {
        let (parts, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(run(store, receiver));
        Committer { parts }
    }

    /// Commits one transaction, possibly merged with others; the outcome is this
    /// transaction's own (a merged success reports the merged revision, which is every key's
    /// `mod_revision`).
    pub(super) async fn txn(
        &self,
        compares: Vec<Compare>,
        ops: Vec<Op>,
    ) -> Result<TxnOutcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        let part = Part {
            compares,
            ops,
            reply,
        };
        self.parts
            .send(part)
            .await
            .map_err(|_| StoreError::Unavailable("location committer stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("location committer stopped".into()))?
    }
}

async fn run(store: Arc<dyn Store>, mut receiver: mpsc::Receiver<Part>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut held: VecDeque<Part> = VecDeque::new();
    loop {
        let first = match held.pop_front() {
            Some(part) => part,
            None => match receiver.recv().await {
                Some(part) => part,
                None => return,
            },
        };
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        // Gather what is waiting now: first the parts held back last time, then the queue.
        let mut batch = vec![first];
        let mut keys: HashSet<String> = batch[0].keys().map(str::to_owned).collect();
        let (mut compares, mut ops) = (batch[0].compares.len(), batch[0].ops.len());
        let mut deferred = VecDeque::new();
        loop {
            let next = match held.pop_front() {
                Some(part) => part,
                None => match receiver.try_recv() {
                    Ok(part) => part,
                    Err(_) => break,
                },
            };
            let fits = compares + next.compares.len() <= MAX_TXN_PARTS
                && ops + next.ops.len() <= MAX_TXN_PARTS;
            if !fits {
                deferred.push_back(next);
                break;
            }
            if next.keys().any(|k| keys.contains(k)) {
                deferred.push_back(next);
                continue;
            }
            keys.extend(next.keys().map(str::to_owned));
            compares += next.compares.len();
            ops += next.ops.len();
            batch.push(next);
        }
        deferred.extend(held.drain(..));
        held = deferred;
        let store = store.clone();
        tokio::spawn(async move {
            commit(store.as_ref(), batch).await;
            drop(permit);
        });
    }
}

async fn commit(store: &dyn Store, batch: Vec<Part>) {
    if batch.len() == 1 {
        for part in batch {
            let outcome = store.txn(part.compares, part.ops).await;
            let _ = part.reply.send(outcome);
        }
        return;
    }
    let compares: Vec<Compare> = batch.iter().flat_map(|p| p.compares.clone()).collect();
    let ops: Vec<Op> = batch.iter().flat_map(|p| p.ops.clone()).collect();
    match store.txn(compares, ops).await {
        Ok(outcome) if outcome.succeeded => {
            for part in batch {
                let _ = part.reply.send(Ok(outcome.clone()));
            }
        }
        // Some part lost a race, or the merged transaction failed (a lost lease, the store
        // away): each part alone, so each gets its own outcome.
        _ => {
            join_all(batch.into_iter().map(|part| async move {
                let outcome = store.txn(part.compares, part.ops).await;
                let _ = part.reply.send(outcome);
            }))
            .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use store::embedded::EmbeddedStore;

    fn put(key: &str) -> Op {
        Op::Put {
            key: key.into(),
            value: Bytes::from_static(b"v"),
            lease: None,
        }
    }

    #[tokio::test]
    async fn concurrent_parts_commit_and_a_conflicting_part_alone_fails() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            EmbeddedStore::open(dir.path().join("s.redb"))
                .await
                .unwrap(),
        );
        store
            .put("taken", Bytes::from_static(b"x"), None)
            .await
            .unwrap();
        let committer = Committer::start(store.clone());
        let mut tasks = Vec::new();
        for i in 0..200 {
            let committer = committer.clone();
            tasks.push(tokio::spawn(async move {
                let key = format!("k{i}");
                committer
                    .txn(vec![Compare::Absent(key.clone())], vec![put(&key)])
                    .await
            }));
        }
        // This one must fail: the key exists.
        let loser = committer
            .txn(vec![Compare::Absent("taken".into())], vec![put("taken")])
            .await
            .unwrap();
        assert!(!loser.succeeded);
        for task in tasks {
            assert!(task.await.unwrap().unwrap().succeeded);
        }
        let (listing, _) = store.list_prefix("k").await.unwrap();
        assert_eq!(listing.len(), 200);
    }

    #[tokio::test]
    async fn parts_on_the_same_key_are_not_merged() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            EmbeddedStore::open(dir.path().join("s.redb"))
                .await
                .unwrap(),
        );
        let committer = Committer::start(store.clone());
        let a = committer.txn(vec![Compare::Absent("same".into())], vec![put("same")]);
        let b = committer.txn(vec![Compare::Absent("same".into())], vec![put("same")]);
        let (a, b) = tokio::join!(a, b);
        let wins = [a.unwrap().succeeded, b.unwrap().succeeded];
        assert_eq!(wins.iter().filter(|w| **w).count(), 1, "{wins:?}");
    }
}
