//! The failover controller: every probe interval, one round of observations into the planner,
//! the stored state and the leadership read, one decision, and — when leading — that decision
//! carried out as a fenced write of the state followed by its announcement on the bus. The
//! leader's health view ([`crate::state::judge_health`]) goes into the state with the
//! decision's write, or in a write of its own when a judgment changed and the decision writes
//! nothing: a datacenter's health is written when it changes, not every round.
//!
//! Every round the controller also stores its own judgments (`view.rs`) under a lease of its
//! own, and reads the others': the planner fails a datacenter only when they agree.
//!
//! Works on any [`Store`] (etcd in a cluster, the embedded store all-in-one). The controller
//! keeps probing and planning as a follower, so that a new leader starts with warm health
//! streaks instead of waiting a whole detection period after it takes over.

use std::sync::Arc;
use std::time::Duration;

use bus::{Bus, BusHeaders};
use bytes::Bytes;
use proto::subjects;
use store::{Compare, KeyValue, LeaseId, Op, Revision, Store, StoreError};
use telemetry::OperatorMetrics;
use tokio::time::Instant;

use crate::leader::{Fence, FencedOutcome, Leadership, LeadershipConfig, fenced_txn};
use crate::planner::{
    Action, Decision, Degradation, HeldBack, Leadership as PlannerLeadership, PeerView, PlanInput,
    Planner, PlannerConfig,
};
use crate::probe::HealthSource;
use crate::state::{
    FAILBACK_KEY, FailoverState, LEADER_KEY, PREFIX, STATE_KEY, StateError, WriteStamp,
    judge_health,
};
use crate::view::{self, VIEWS_PREFIX, view_key};

/// The `role` label of the leadership gauge.
pub const LEADER_ROLE: &str = "failover-controller";

/// How the controller runs.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// This instance's name: the leader key's value and every state write's writer.
    pub instance: String,
    pub planner: PlannerConfig,
    /// The leadership lease's TTL.
    pub lease_ttl: Duration,
    /// Time between probe rounds (and decisions).
    pub interval: Duration,
    /// A leader re-publishes the state this often (NATS delivers at most once).
    pub announce_every: Duration,
}

impl ControllerConfig {
    /// Defaults: 5 s lease, a round every 500 ms, the state re-announced every 5 s.
    pub fn new(instance: impl Into<String>, planner: PlannerConfig) -> ControllerConfig {
        ControllerConfig {
            instance: instance.into(),
            planner,
            lease_ttl: Duration::from_secs(5),
            interval: Duration::from_millis(500),
            announce_every: Duration::from_secs(5),
        }
    }
}

/// What the controller read from the store in one round.
#[derive(Debug, Default)]
struct Stored {
    state: Option<(FailoverState, Revision)>,
    failback: Option<(String, Revision)>,
    /// The other controllers' views.
    peers: Vec<PeerView>,
}

/// The running controller's parts.
#[derive(Debug)]
pub struct Controller {
    config: ControllerConfig,
    store: Arc<dyn Store>,
    bus: Option<Arc<dyn Bus>>,
    source: Arc<dyn HealthSource>,
    metrics: Option<OperatorMetrics>,
}

/// What the loop remembers between rounds (to log changes, not every round).
#[derive(Debug, Default)]
struct Memory {
    announced: Option<u64>,
    last_announce: Option<Instant>,
    held_back: Option<HeldBack>,
    degraded: Vec<Degradation>,
    healthy: Vec<(String, bool)>,
    leading: bool,
    /// The lease this controller's view is stored under, and when it was last renewed.
    view_lease: Option<(LeaseId, Instant)>,
    /// The view last stored under it.
    published: Option<PeerView>,
}

impl Controller {
    pub fn new(
        config: ControllerConfig,
        store: Arc<dyn Store>,
        bus: Option<Arc<dyn Bus>>,
        source: Arc<dyn HealthSource>,
        metrics: Option<OperatorMetrics>,
    ) -> Controller {
        Controller {
            config,
            store,
            bus,
            source,
            metrics,
        }
    }

    /// Runs until `shutdown` completes, then resigns the leadership.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let leadership = Leadership::spawn(
            self.store.clone(),
            LeadershipConfig {
                key: LEADER_KEY,
                instance: self.config.instance.clone(),
                ttl: self.config.lease_ttl,
                campaign_every: (self.config.lease_ttl / 4).min(self.config.interval),
            },
        );
        let mut planner = Planner::new(self.config.planner.clone());
        let mut memory = Memory::default();
        let mut ticks = tokio::time::interval(self.config.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = ticks.tick() => {}
            }
            self.round(&mut planner, &leadership, &mut memory).await;
        }
        self.set_leader_metric(false);
        leadership.stop().await;
    }

    async fn round(&self, planner: &mut Planner, leadership: &Leadership, memory: &mut Memory) {
        let observations = self.source.observe().await;
        for observation in &observations.datacenters {
            planner.observe(observation);
        }
        self.publish_view(
            planner.view(&self.config.instance, Instant::now().into_std()),
            memory,
        )
        .await;
        let stored = match read_stored(self.store.as_ref(), &self.config.instance).await {
            Ok(stored) => stored,
            Err(ReadError::Store(e)) => {
                // Without the store nothing can be written anyway; keep probing.
                tracing::warn!(error = %e, "reading the failover state failed");
                return;
            }
            Err(ReadError::State(e)) => {
                // Acting on a state this version cannot read could undo a move: hold.
                tracing::error!(error = %e, "the stored failover state is unreadable: no action");
                return;
            }
        };
        let now = Instant::now();
        let fence = leadership.current().and_then(|held| held.fence_at(now));
        self.note_leadership(fence, memory);
        let state = stored.state.as_ref().map(|(state, _)| state);
        let decision = planner.plan(&PlanInput {
            now: now.into_std(),
            leadership: fence.map(|f| PlannerLeadership {
                fencing_revision: f.revision,
            }),
            state,
            witness: observations.witness,
            failback_request: stored.failback.as_ref().map(|(dc, _)| dc.as_str()),
            announced_epoch: memory.announced,
            peers: &stored.peers,
        });
        self.note_report(&decision, state, memory);
        let Some(fence) = fence else {
            return;
        };
        // The action and the health view go in one write; the health view alone is written
        // only when a judgment changed (never on every probe).
        let stamp = WriteStamp {
            writer: self.config.instance.clone(),
            fencing_revision: fence.revision,
            at_unix_ms: unix_ms(),
        };
        let health = judge_health(
            state.map_or(&[], |s| s.health.as_slice()),
            &decision.report.datacenters,
            planner.config().detection,
            stamp.at_unix_ms,
        );
        let next = FailoverState::after_round(state, &decision.action, &health, &stamp);
        match (&decision.action, next) {
            (action, Some(next)) => {
                self.write(action, next, fence, &stored, leadership, memory)
                    .await;
            }
            (Action::Nothing, None) => {
                if let Some(state) = state {
                    let due = memory
                        .last_announce
                        .is_none_or(|at| at.elapsed() >= self.config.announce_every);
                    if due {
                        self.announce(state, memory).await;
                    }
                }
            }
            (Action::Announce { epoch }, None) => {
                tracing::info!(
                    action = %decision.action,
                    fencing_revision = fence.revision,
                    epoch,
                    "failover decision"
                );
                if let Some(state) = state {
                    self.announce(state, memory).await;
                }
            }
            // A writing action with nothing to write (a stale completion).
            (_, None) => {}
        }
    }

    /// Writes `next`, the state after `action` (or after a health view change alone): one
    /// fenced transaction (with the failback request deleted when the action consumes it),
    /// then the announcement.
    async fn write(
        &self,
        action: &Action,
        next: FailoverState,
        fence: Fence,
        stored: &Stored,
        leadership: &Leadership,
        memory: &mut Memory,
    ) {
        let current = stored.state.as_ref();
        if action.writes() {
            tracing::info!(
                action = %action,
                fencing_revision = fence.revision,
                epoch = next.epoch,
                active = %next.active,
                "failover decision"
            );
        } else {
            tracing::info!(
                fencing_revision = fence.revision,
                health = ?next.health,
                "health view changed"
            );
        }
        let mut compares = vec![match current {
            Some((_, revision)) => Compare::ModRevision(STATE_KEY.to_owned(), *revision),
            None => Compare::Absent(STATE_KEY.to_owned()),
        }];
        let mut ops = vec![Op::Put {
            key: STATE_KEY.to_owned(),
            value: Bytes::from(next.encode()),
            lease: None,
        }];
        let consumes_request = matches!(
            action,
            Action::StartFailback { .. } | Action::DismissFailbackRequest { .. }
        );
        if consumes_request && let Some((_, revision)) = &stored.failback {
            compares.push(Compare::ModRevision(FAILBACK_KEY.to_owned(), *revision));
            ops.push(Op::Delete {
                key: FAILBACK_KEY.to_owned(),
            });
        }
        // The lease may have lapsed while this round probed: check again right before writing
        // (the fence in the transaction is what guarantees it; this avoids a doomed write).
        if leadership
            .current()
            .and_then(|held| held.fence_at(Instant::now()))
            != Some(fence)
        {
            tracing::warn!(
                action = %action,
                fencing_revision = fence.revision,
                "not written: the leadership lapsed"
            );
            return;
        }
        match fenced_txn(self.store.as_ref(), fence, compares, ops).await {
            Ok(FencedOutcome::Applied(revision)) => {
                tracing::info!(
                    action = %action,
                    fencing_revision = fence.revision,
                    revision,
                    epoch = next.epoch,
                    active = %next.active,
                    writes = next.writes,
                    "failover state written"
                );
                self.announce(&next, memory).await;
            }
            Ok(FencedOutcome::Deposed) => {
                tracing::warn!(
                    action = %action,
                    fencing_revision = fence.revision,
                    "write refused: this instance no longer holds the leader key (fenced)"
                );
                leadership.deposed(fence);
            }
            Ok(FencedOutcome::Conflict) => {
                tracing::info!(
                    action = %action,
                    fencing_revision = fence.revision,
                    "write refused: the state changed since it was read; planning again"
                );
            }
            Err(e) => tracing::warn!(
                action = %action,
                fencing_revision = fence.revision,
                error = %e,
                "writing the failover state failed"
            ),
        }
    }

    /// Stores `view` under this controller's lease when it changed (or the lease is new), and
    /// renews the lease every third of its TTL. A lost lease takes the stored view with it: a
    /// new one is granted and the view stored again.
    async fn publish_view(&self, view: PeerView, memory: &mut Memory) {
        let ttl = self.config.lease_ttl;
        let lease = match memory.view_lease {
            Some((lease, renewed)) if renewed.elapsed() < ttl / 3 => lease,
            Some((lease, _)) => match self.store.keep_alive(lease).await {
                Ok(()) => {
                    memory.view_lease = Some((lease, Instant::now()));
                    lease
                }
                Err(e) => {
                    tracing::warn!(error = %e, "renewing the view's lease failed");
                    memory.view_lease = None;
                    memory.published = None;
                    return;
                }
            },
            None => match self.store.grant_lease(ttl).await {
                Ok(lease) => {
                    memory.view_lease = Some((lease, Instant::now()));
                    memory.published = None;
                    lease
                }
                Err(e) => {
                    tracing::warn!(error = %e, "granting the view's lease failed");
                    return;
                }
            },
        };
        if memory.published.as_ref() == Some(&view) {
            return;
        }
        let stored = self
            .store
            .put(
                &view_key(&self.config.instance),
                Bytes::from(view::encode(&view)),
                Some(lease),
            )
            .await;
        match stored {
            Ok(_) => {
                tracing::info!(seen = ?view.seen, failed = ?view.failed, "view stored");
                memory.published = Some(view);
            }
            Err(e) => tracing::warn!(error = %e, "storing the view failed"),
        }
    }

    /// Publishes `state` on the bus (when there is one). Without a bus the stored state is the
    /// announcement.
    async fn announce(&self, state: &FailoverState, memory: &mut Memory) {
        memory.last_announce = Some(Instant::now());
        let Some(bus) = &self.bus else {
            memory.announced = Some(state.epoch);
            return;
        };
        let mut headers = BusHeaders::new();
        headers.insert(subjects::TYPE_HEADER, subjects::types::FAILOVER_STATE);
        let published = bus
            .publish(
                subjects::FAILOVER_STATE,
                headers,
                Bytes::from(state.encode()),
            )
            .await;
        match published {
            Ok(()) => memory.announced = Some(state.epoch),
            Err(e) => {
                tracing::warn!(error = %e, epoch = state.epoch, "announcing the state failed")
            }
        }
    }

    fn note_leadership(&self, fence: Option<Fence>, memory: &mut Memory) {
        let leading = fence.is_some();
        if leading != memory.leading {
            memory.leading = leading;
            // A new leader announces what it finds (and completes a move it finds unfinished).
            memory.announced = None;
            memory.last_announce = None;
        }
        self.set_leader_metric(leading);
    }

    fn set_leader_metric(&self, leading: bool) {
        if let Some(metrics) = &self.metrics {
            metrics.set_leader(LEADER_ROLE, leading);
        }
    }

    /// Metrics every round; logs only what changed.
    fn note_report(&self, decision: &Decision, state: Option<&FailoverState>, memory: &mut Memory) {
        let report = &decision.report;
        for (datacenter, health) in &report.datacenters {
            let healthy = health.is_healthy();
            if let Some(metrics) = &self.metrics {
                metrics.set_datacenter_healthy(datacenter, healthy);
            }
            let previous = memory.healthy.iter_mut().find(|(dc, _)| dc == datacenter);
            match previous {
                Some((_, was)) if *was == healthy => {}
                Some((_, was)) => {
                    *was = healthy;
                    tracing::info!(%datacenter, healthy, ?health, "datacenter health changed");
                }
                None => {
                    memory.healthy.push((datacenter.clone(), healthy));
                    tracing::info!(%datacenter, healthy, ?health, "datacenter health observed");
                }
            }
        }
        if let Some(metrics) = &self.metrics {
            metrics.set_failover_in_progress(state.is_some_and(FailoverState::is_moving));
        }
        if report.degraded != memory.degraded {
            if report.degraded.is_empty() {
                tracing::info!("no longer degraded");
            } else {
                tracing::warn!(degraded = ?report.degraded, "degraded");
            }
            memory.degraded = report.degraded.clone();
        }
        // By kind: a failback's remaining wait changes every round.
        let kind = |h: &Option<HeldBack>| h.as_ref().map(std::mem::discriminant);
        if kind(&decision.held_back) != kind(&memory.held_back) {
            if let Some(why) = &decision.held_back
                && *why != HeldBack::NotLeader
            {
                tracing::info!(
                    held_back = ?why,
                    fencing_revision = decision.fencing_revision,
                    "failover decision: nothing, held back"
                );
            }
            memory.held_back = decision.held_back.clone();
        }
    }
}

#[derive(Debug)]
enum ReadError {
    Store(StoreError),
    State(StateError),
}

/// The state, the failback request and the other controllers' views (`instance`'s own left
/// out), in one listing of the prefix. An unreadable view is left out too: it cannot confirm a
/// failure, nor hold one back.
async fn read_stored(store: &dyn Store, instance: &str) -> Result<Stored, ReadError> {
    let (keys, _) = store.list_prefix(PREFIX).await.map_err(ReadError::Store)?;
    let mut stored = Stored::default();
    for KeyValue {
        key,
        value,
        mod_revision,
        ..
    } in keys
    {
        if key == STATE_KEY {
            let state = FailoverState::decode(&value).map_err(ReadError::State)?;
            stored.state = Some((state, mod_revision));
        } else if key == FAILBACK_KEY {
            let datacenter = String::from_utf8_lossy(&value).trim().to_owned();
            stored.failback = Some((datacenter, mod_revision));
        } else if let Some(peer) = key.strip_prefix(VIEWS_PREFIX)
            && peer != instance
        {
            match view::decode(&value) {
                Ok(view) => stored.peers.push(view),
                Err(e) => tracing::warn!(%key, error = %e, "a peer's view is unreadable"),
            }
        }
    }
    Ok(stored)
}

/// Wall-clock milliseconds since the Unix epoch, for the history (never for decisions).
#[allow(clippy::disallowed_methods)] // wall time stamps the records; decisions use `now`
fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
