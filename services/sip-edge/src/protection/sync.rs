//! Sharing bans between edge replicas: a ban decided on one edge reaches every edge within a
//! second over the bus, and replicas started later find it in the store.
//!
//! [`BanSync::start`] subscribes to [`proto::subjects::EDGE_BANS`] first, then loads the bans
//! in the store under [`BAN_KEY_PREFIX`] (subscribing first means no ban falls between the two),
//! applies them, and only then returns, so an edge never serves a moment without the
//! cluster's bans. It then runs two tasks:
//!
//! - the receiver applies every remote ban (skipping the ones carrying our own `edge_id`,
//!   already applied here) to the shared [`Protection`];
//! - the publisher sends bans decided here on the bus (payload `calanque.v1.Ban`, header
//!   `calanque-type`), then hands them to a store writer that puts each one under a lease as
//!   long as the ban's remaining time, so the store forgets it when it ends. The store write is
//!   off the bus path: a slow store must not delay the other replicas.
//!
//! Bans get from [`Protection`] to the publisher two ways: the engine, which holds the lock
//! anyway after `admit`, calls [`BanPublisher::drain`] (immediate); and the publisher itself
//! drains [`Protection::poll_new_ban`] every [`BanSyncOptions::drain_interval`] (100 ms by
//! default) so that a ban is published even if the engine never calls it. The same task calls
//! [`Protection::purge`] every [`BanSyncOptions::purge_interval`].
//!
//! Bus and store failures are logged here and otherwise ignored: a ban that misses the other
//! replicas still protects this one, and the source will be banned again there if it floods.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bus::{Bus, BusError, BusHeaders, BusMessage};
use bytes::Bytes;
use prost::Message as _;
use proto::subjects;
use proto::v1::Ban;
use store::{Store, StoreError};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{BanOutcome, Protection};

/// Store prefix of the bans: `calanque/v1/edge/bans/<address>`, value a protobuf `Ban`.
pub const BAN_KEY_PREFIX: &str = "calanque/v1/edge/bans/";

/// The store key of the ban on `address`.
pub fn ban_key(address: &str) -> String {
    format!("{BAN_KEY_PREFIX}{address}")
}

/// Wall-clock unix milliseconds. Bans end at an absolute time shared between machines, so
/// this reads the system clock (not a monotonic one).
pub type UnixClock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock in unix milliseconds, for [`BanSyncOptions::clock`].
// The one wall-clock read of the protection module: bans carry absolute end times that every
// replica compares with its own clock; the sans-IO core takes the result as an argument.
#[allow(clippy::disallowed_methods)]
pub fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// How a [`BanSync`] runs.
#[derive(Clone)]
pub struct BanSyncOptions {
    /// This replica's id, written into the bans it publishes.
    pub edge_id: String,
    /// The wall clock (default [`unix_now_ms`]).
    pub clock: UnixClock,
    /// How often the publisher drains [`Protection::poll_new_ban`] by itself (default 100 ms).
    pub drain_interval: Duration,
    /// Bans waiting to be published, and to be stored, at most (default 1024 each).
    pub queue_capacity: usize,
    /// How often the publisher calls [`Protection::purge`] (default 1 s), so that nobody else
    /// has to. Eviction keeps memory bounded without it; purging keeps the tables small.
    pub purge_interval: Duration,
}

impl std::fmt::Debug for BanSyncOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BanSyncOptions")
            .field("edge_id", &self.edge_id)
            .field("drain_interval", &self.drain_interval)
            .field("queue_capacity", &self.queue_capacity)
            .field("purge_interval", &self.purge_interval)
            .finish_non_exhaustive()
    }
}

impl BanSyncOptions {
    /// Defaults for replica `edge_id`.
    pub fn new(edge_id: impl Into<String>) -> BanSyncOptions {
        BanSyncOptions {
            edge_id: edge_id.into(),
            clock: Arc::new(unix_now_ms),
            drain_interval: Duration::from_millis(100),
            queue_capacity: 1024,
            purge_interval: Duration::from_secs(1),
        }
    }
}

/// Why [`BanSync::start`] failed.
#[derive(Debug, thiserror::Error)]
pub enum BanSyncError {
    /// Subscribing to the ban subject failed.
    #[error("subscribing to {subject}: {source}")]
    Subscribe {
        /// The subject.
        subject: &'static str,
        /// The bus's error.
        source: BusError,
    },
    /// Listing the stored bans failed (the store is unreachable); the caller may retry or
    /// start without them.
    #[error("loading bans from the store: {0}")]
    Load(#[source] StoreError),
}

/// Hands locally decided bans to the publisher. Cheap to clone; never blocks.
#[derive(Debug, Clone)]
pub struct BanPublisher {
    sender: mpsc::Sender<Ban>,
    dropped: Arc<AtomicU64>,
}

impl BanPublisher {
    /// Queues `ban` for publishing; false (and counted) when the queue is full or the sync
    /// has stopped.
    pub fn publish(&self, ban: Ban) -> bool {
        match self.sender.try_send(ban) {
            Ok(()) => true,
            Err(_) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Queues every ban waiting in `protection` (the engine calls it with the lock it already
    /// holds, right after an `admit` or `auth_failed` that may have banned). Returns how many
    /// were queued.
    pub fn drain(&self, protection: &mut Protection) -> usize {
        let mut queued = 0;
        while let Some(ban) = protection.poll_new_ban() {
            if self.publish(ban) {
                queued += 1;
            }
        }
        queued
    }

    /// Bans lost because the queue was full or the sync had stopped.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The running ban sharing of one replica. Dropping it stops its tasks.
#[derive(Debug)]
pub struct BanSync {
    edge_id: String,
    publisher: BanPublisher,
    loaded: usize,
    tasks: Vec<JoinHandle<()>>,
}

/// Locks the protection state. A panic while it was held cannot leave it inconsistent in a
/// way that matters more than losing protection altogether, so poisoning is ignored.
fn lock(protection: &Mutex<Protection>) -> MutexGuard<'_, Protection> {
    protection.lock().unwrap_or_else(PoisonError::into_inner)
}

impl BanSync {
    /// Subscribes, loads and applies the stored bans, and starts the tasks (see the module
    /// documentation). Must run inside a tokio runtime.
    pub async fn start(
        options: BanSyncOptions,
        protection: Arc<Mutex<Protection>>,
        bus: Arc<dyn Bus>,
        store: Arc<dyn Store>,
    ) -> Result<BanSync, BanSyncError> {
        let mut subscription =
            bus.subscribe(subjects::EDGE_BANS)
                .await
                .map_err(|source| BanSyncError::Subscribe {
                    subject: subjects::EDGE_BANS,
                    source,
                })?;
        // A round trip through the server (`Bus::flush`) makes the subscription effective
        // before we return, so a ban published right after start reaches us.
        bus.flush()
            .await
            .map_err(|source| BanSyncError::Subscribe {
                subject: subjects::EDGE_BANS,
                source,
            })?;
        let (stored, _) = store
            .list_prefix(BAN_KEY_PREFIX)
            .await
            .map_err(BanSyncError::Load)?;
        let loaded = {
            let now_ms = (options.clock)();
            let mut guard = lock(&protection);
            stored
                .iter()
                .filter_map(|kv| match Ban::decode(kv.value.clone()) {
                    Ok(ban) => Some(ban),
                    Err(error) => {
                        tracing::warn!(key = %kv.key, %error, "skipping an undecodable stored ban");
                        None
                    }
                })
                .filter(|ban| guard.apply_ban(now_ms, ban) == BanOutcome::Applied)
                .count()
        };
        tracing::info!(
            edge_id = %options.edge_id,
            loaded,
            stored = stored.len(),
            "ban sync started"
        );

        let capacity = options.queue_capacity.max(1);
        let (ban_tx, ban_rx) = mpsc::channel(capacity);
        let (store_tx, store_rx) = mpsc::channel(capacity);
        let publisher = BanPublisher {
            sender: ban_tx,
            dropped: Arc::new(AtomicU64::new(0)),
        };

        let receiver = {
            let (protection, options) = (protection.clone(), options.clone());
            tokio::spawn(async move {
                while let Some(message) = subscription.next().await {
                    apply_remote(&options, &protection, &message);
                }
                tracing::warn!("ban subscription ended; remote bans no longer arrive");
            })
        };
        let publishing = tokio::spawn(run_publisher(
            options.clone(),
            protection,
            bus,
            ban_rx,
            store_tx,
        ));
        let storing = tokio::spawn(run_store_writer(options.clone(), store, store_rx));

        Ok(BanSync {
            edge_id: options.edge_id,
            publisher,
            loaded,
            tasks: vec![receiver, publishing, storing],
        })
    }

    /// A handle to queue locally decided bans.
    pub fn publisher(&self) -> BanPublisher {
        self.publisher.clone()
    }

    pub fn edge_id(&self) -> &str {
        &self.edge_id
    }

    /// How many stored bans were applied at start.
    pub fn loaded_at_start(&self) -> usize {
        self.loaded
    }

    /// Stops the tasks. Bans still queued are not published.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for BanSync {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn apply_remote(options: &BanSyncOptions, protection: &Mutex<Protection>, message: &BusMessage) {
    if let Some(kind) = message.headers.get(subjects::TYPE_HEADER)
        && kind != subjects::types::BAN
    {
        tracing::debug!(%kind, "ignoring a non-Ban message on the ban subject");
        return;
    }
    let ban = match Ban::decode(message.payload.clone()) {
        Ok(ban) => ban,
        Err(error) => {
            tracing::warn!(%error, "ignoring an undecodable ban");
            return;
        }
    };
    if ban.edge_id == options.edge_id {
        return;
    }
    let outcome = lock(protection).apply_ban((options.clock)(), &ban);
    match outcome {
        BanOutcome::Applied => tracing::info!(
            address = %ban.address,
            reason = %ban.reason,
            from = %ban.edge_id,
            until_unix_ms = ban.until_unix_ms,
            "applied a remote ban"
        ),
        BanOutcome::InvalidAddress => {
            tracing::warn!(address = %ban.address, from = %ban.edge_id, "ignoring a ban on a non-address");
        }
        other => tracing::debug!(address = %ban.address, ?other, "remote ban not applied"),
    }
}

async fn run_publisher(
    options: BanSyncOptions,
    protection: Arc<Mutex<Protection>>,
    bus: Arc<dyn Bus>,
    mut queued: mpsc::Receiver<Ban>,
    to_store: mpsc::Sender<Ban>,
) {
    let mut tick = tokio::time::interval(options.drain_interval.max(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut purge = tokio::time::interval(options.purge_interval.max(Duration::from_millis(1)));
    purge.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let bans: Vec<Ban> = tokio::select! {
            ban = queued.recv() => match ban {
                Some(ban) => vec![ban],
                None => return,
            },
            _ = tick.tick() => {
                let mut guard = lock(&protection);
                std::iter::from_fn(|| guard.poll_new_ban()).collect()
            }
            _ = purge.tick() => {
                lock(&protection).purge((options.clock)());
                continue;
            }
        };
        for mut ban in bans {
            if ban.edge_id.is_empty() {
                ban.edge_id.clone_from(&options.edge_id);
            }
            let payload = Bytes::from(ban.encode_to_vec());
            let mut headers = BusHeaders::new();
            headers.insert(subjects::TYPE_HEADER, subjects::types::BAN);
            match bus.publish(subjects::EDGE_BANS, headers, payload).await {
                Ok(()) => tracing::info!(
                    address = %ban.address,
                    reason = %ban.reason,
                    until_unix_ms = ban.until_unix_ms,
                    "banned a source"
                ),
                Err(error) => tracing::warn!(
                    address = %ban.address,
                    %error,
                    "could not publish a ban; other edges will not apply it"
                ),
            }
            if to_store.try_send(ban).is_err() {
                tracing::warn!("ban store queue full; a ban will not be stored");
            }
        }
    }
}

async fn run_store_writer(
    options: BanSyncOptions,
    store: Arc<dyn Store>,
    mut bans: mpsc::Receiver<Ban>,
) {
    while let Some(ban) = bans.recv().await {
        let remaining_ms = ban.until_unix_ms.saturating_sub((options.clock)());
        if remaining_ms == 0 {
            continue;
        }
        // Whole seconds, rounded up (etcd leases count seconds); the loader ignores a ban
        // that outlives its end by the rounding.
        let ttl = Duration::from_secs(remaining_ms.div_ceil(1000));
        if let Err(error) = store_ban(store.as_ref(), &ban, ttl).await {
            tracing::warn!(
                address = %ban.address,
                %error,
                "could not store a ban; edges started later will not know it"
            );
        }
    }
}

async fn store_ban(store: &dyn Store, ban: &Ban, ttl: Duration) -> Result<(), StoreError> {
    let lease = store.grant_lease(ttl).await?;
    store
        .put(
            &ban_key(&ban.address),
            Bytes::from(ban.encode_to_vec()),
            Some(lease),
        )
        .await?;
    Ok(())
}
