//! Writes that must not hold up call handling: established-call snapshots to the store and
//! call records to the CDR file. Each has its own task, fed through a channel in order; the
//! store writer merges what is waiting into one transaction (a Put then a Delete of the same
//! key in one batch is just the Delete), the CDR writer appends what is waiting and syncs once.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use store::{Op, Store};
use tokio::sync::mpsc;

/// etcd's default `--max-txn-ops` is 128: stay under it.
const MAX_OPS: usize = 120;

/// Queues store writes of call snapshots (key → value, or None to delete).
#[derive(Debug, Clone)]
pub(crate) struct StateWriter {
    queue: mpsc::UnboundedSender<(String, Option<Bytes>)>,
}

impl StateWriter {
    pub(crate) fn start(store: Arc<dyn Store>) -> StateWriter {
        let (queue, mut receiver) = mpsc::unbounded_channel::<(String, Option<Bytes>)>();
        tokio::spawn(async move {
            while let Some(first) = receiver.recv().await {
                let mut pending: BTreeMap<String, Option<Bytes>> = BTreeMap::new();
                pending.insert(first.0, first.1);
                while pending.len() < MAX_OPS {
                    match receiver.try_recv() {
                        Ok((key, value)) => {
                            pending.insert(key, value);
                        }
                        Err(_) => break,
                    }
                }
                let ops = pending
                    .into_iter()
                    .map(|(key, value)| match value {
                        Some(value) => Op::Put {
                            key,
                            value,
                            lease: None,
                        },
                        None => Op::Delete { key },
                    })
                    .collect();
                if let Err(e) = store.txn(vec![], ops).await {
                    // Calls go on; only a takeover of them would fail.
                    tracing::warn!(error = %e, "call snapshots not written to the store");
                }
            }
        });
        StateWriter { queue }
    }

    pub(crate) fn put(&self, key: String, value: Bytes) {
        let _ = self.queue.send((key, Some(value)));
    }

    pub(crate) fn delete(&self, key: String) {
        let _ = self.queue.send((key, None));
    }
}

/// Appends JSON lines to the CDR file on a thread of its own (file I/O and fsync block).
#[derive(Debug, Clone)]
pub(crate) struct CdrWriter {
    queue: std::sync::mpsc::Sender<String>,
}

impl CdrWriter {
    pub(crate) fn start(path: PathBuf) -> CdrWriter {
        let (queue, receiver) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            while let Ok(first) = receiver.recv() {
                let result = (|| -> std::io::Result<()> {
                    let mut file = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&path)?;
                    writeln!(file, "{first}")?;
                    while let Ok(line) = receiver.try_recv() {
                        writeln!(file, "{line}")?;
                    }
                    // A record written is on disk before the next batch.
                    file.sync_data()
                })();
                if let Err(e) = result {
                    tracing::warn!(error = %e, path = %path.display(), "CDR not written");
                }
            }
        });
        CdrWriter { queue }
    }

    pub(crate) fn append(&self, line: String) {
        let _ = self.queue.send(line);
    }
}
