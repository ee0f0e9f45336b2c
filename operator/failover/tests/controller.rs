//! Two controllers in one process on the embedded store and the in-process bus (the all-in-one
//! set-up), fed by a scripted health source: the state is created on the primary, a lost
//! primary is failed over after the detection period and announced on the bus, only the
//! leader writes, and a failback request is carried out and consumed. The leader's health view
//! is in the state (written when a judgment changes, not every round), with the outage and the
//! completed moves.

// Helpers outside the `#[test]`s unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bus::{Bus, InProcessBus};
use bytes::Bytes;
use failover::planner::{HealthObservation, Witness};
use failover::probe::{HealthSource, Observations};
use failover::state::{
    CompletedMove, DatacenterHealth, FAILBACK_KEY, LEADER_KEY, MoveReason, STATE_KEY,
};
use failover::{Controller, ControllerConfig, FailoverState, PlannerConfig};
use prost::Message as _;
use proto::subjects;
use store::Store;
use store::embedded::EmbeddedStore;
use tokio::time::{Instant, sleep};

const DETECTION: Duration = Duration::from_secs(1);

/// Health as the test says it is.
#[derive(Debug, Default)]
struct Scripted {
    /// dc-a and dc-b down?
    down: Mutex<[bool; 2]>,
}

impl Scripted {
    fn set(&self, index: usize, down: bool) {
        self.down.lock().unwrap()[index] = down;
    }
}

#[async_trait]
impl HealthSource for Scripted {
    async fn observe(&self) -> Observations {
        let down = *self.down.lock().unwrap();
        let now = Instant::now().into_std();
        let observation = |datacenter: &str, down: bool| HealthObservation {
            datacenter: datacenter.to_owned(),
            observed_at: now,
            edges_answering: u32::from(!down),
            edges: 1,
            services_ready: 0,
            services: 0,
        };
        Observations {
            datacenters: vec![observation("dc-a", down[0]), observation("dc-b", down[1])],
            witness: Witness::NotConfigured,
        }
    }
}

/// Wall-clock milliseconds since the Unix epoch (what the state's times are in).
#[allow(clippy::disallowed_methods)]
fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// `at` within a round (100 ms) and some scheduling slack of `around`.
fn assert_near(at: i64, around: i64, what: &str) {
    assert!(
        (at - around).abs() <= 400,
        "{what}: {at} is {} ms from {around}",
        at - around
    );
}

async fn state(store: &dyn Store) -> Option<FailoverState> {
    let kv = store.get(STATE_KEY).await.unwrap()?;
    Some(FailoverState::decode(&kv.value).unwrap())
}

async fn wait_for_state(
    store: &dyn Store,
    limit: Duration,
    what: &str,
    condition: impl Fn(&FailoverState) -> bool,
) -> FailoverState {
    let started = Instant::now();
    loop {
        if let Some(state) = state(store).await
            && condition(&state)
        {
            return state;
        }
        assert!(
            started.elapsed() < limit,
            "no state {what} within {limit:?}"
        );
        sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_controllers_on_the_embedded_store_fail_over_announce_and_fail_back() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        EmbeddedStore::open(dir.path().join("store.redb"))
            .await
            .unwrap(),
    );
    let bus: Arc<dyn Bus> = Arc::new(InProcessBus::default());
    let mut announcements = bus.subscribe(subjects::FAILOVER_STATE).await.unwrap();
    let health = Arc::new(Scripted::default());
    let mut stops = Vec::new();
    let mut tasks = Vec::new();
    for instance in ["c1", "c2"] {
        let mut planner = PlannerConfig::new(["dc-a".to_owned(), "dc-b".to_owned()]).unwrap();
        planner.detection = DETECTION;
        let mut config = ControllerConfig::new(instance, planner);
        config.interval = Duration::from_millis(100);
        config.lease_ttl = Duration::from_secs(1);
        let controller = Controller::new(
            config,
            store.clone(),
            Some(bus.clone()),
            health.clone(),
            None,
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        stops.push(stop);
        tasks.push(tokio::spawn(controller.run(async {
            let _ = stopped.await;
        })));
    }

    let initial = wait_for_state(store.as_ref(), Duration::from_secs(5), "created", |s| {
        !s.is_moving()
    })
    .await;
    assert_eq!((initial.active.as_str(), initial.epoch), ("dc-a", 1));
    let leader =
        String::from_utf8(store.get(LEADER_KEY).await.unwrap().unwrap().value.to_vec()).unwrap();
    assert_eq!(initial.writer, leader);

    // The health view: both judged healthy once healthy for the detection period, in one
    // write; then nothing is written while nothing changes (rounds every 100 ms).
    let judged = wait_for_state(store.as_ref(), Duration::from_secs(5), "judged", |s| {
        s.health.len() == 2
    })
    .await;
    assert!(
        judged.health.iter().all(|h| h.healthy),
        "{:?}",
        judged.health
    );
    assert_eq!(
        judged
            .health
            .iter()
            .map(|h| h.datacenter.as_str())
            .collect::<Vec<_>>(),
        ["dc-a", "dc-b"]
    );
    sleep(Duration::from_secs(1)).await;
    let quiet = state(store.as_ref()).await.unwrap();
    assert_eq!(
        quiet.writes, judged.writes,
        "written while nothing changed: {:?}",
        quiet.history
    );

    health.set(0, true);
    let lost_at = unix_ms();
    let lost = Instant::now();
    let moved = wait_for_state(store.as_ref(), Duration::from_secs(5), "on dc-b", |s| {
        s.active == "dc-b"
    })
    .await;
    let took = lost.elapsed();
    assert!(
        took >= DETECTION,
        "failed over after {took:?}, before the detection period"
    );
    assert!(
        took < DETECTION + Duration::from_millis(1500),
        "took {took:?}"
    );
    assert_eq!(moved.epoch, 2);
    let completed = wait_for_state(store.as_ref(), Duration::from_secs(2), "complete", |s| {
        s.active == "dc-b" && !s.is_moving()
    })
    .await;
    assert!(completed.is_failed("dc-a"));
    // dc-a is judged unhealthy since its first failed probe, and that is where its outage
    // starts; the move is recorded.
    let dc_a = completed
        .health
        .iter()
        .find(|h| h.datacenter == "dc-a")
        .unwrap();
    assert!(!dc_a.healthy);
    assert_near(dc_a.since_unix_ms, lost_at, "dc-a unhealthy since");
    assert_eq!(completed.outages.len(), 1);
    assert_eq!(completed.outages[0].datacenter, "dc-a");
    assert_eq!(completed.outages[0].started_unix_ms, dc_a.since_unix_ms);
    assert_eq!(completed.outages[0].ended_unix_ms, None);
    assert_eq!(completed.moves.len(), 1);
    let CompletedMove {
        from,
        to,
        reason,
        epoch,
        started_unix_ms,
        completed_unix_ms,
    } = &completed.moves[0];
    assert_eq!(
        (from.as_str(), to.as_str(), *reason, *epoch),
        ("dc-a", "dc-b", MoveReason::DatacenterLost, 2)
    );
    assert_near(
        *started_unix_ms,
        lost_at + DETECTION.as_millis() as i64,
        "move started",
    );
    assert!(completed_unix_ms >= started_unix_ms);
    // Every write so far came from the one leader, under its one fence.
    assert!(
        completed
            .history
            .iter()
            .all(|e| e.writer == leader && e.fencing_revision == completed.fencing_revision),
        "{:?}",
        completed.history
    );
    // The move was announced on the bus.
    let announced = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let message = announcements.next().await.unwrap();
            let state = proto::v1::FailoverState::decode(message.payload).unwrap();
            if state.epoch == 2 {
                return (state, message.headers);
            }
        }
    })
    .await
    .expect("the move is announced");
    assert_eq!(announced.0.active_datacenter, "dc-b");
    assert_eq!(
        announced.1.get(subjects::TYPE_HEADER),
        Some(subjects::types::FAILOVER_STATE)
    );

    // dc-a is back; an operator asks for the failback.
    health.set(0, false);
    let back_at = unix_ms();
    store
        .put(FAILBACK_KEY, Bytes::from_static(b"dc-a"), None)
        .await
        .unwrap();
    let back = wait_for_state(
        store.as_ref(),
        Duration::from_secs(5),
        "back on dc-a",
        |s| s.active == "dc-a" && !s.is_moving(),
    )
    .await;
    assert_eq!(back.epoch, 3);
    assert!(!back.is_failed("dc-a"));
    let DatacenterHealth {
        healthy,
        since_unix_ms,
        ..
    } = back.health.iter().find(|h| h.datacenter == "dc-a").unwrap();
    assert!(healthy);
    assert_near(*since_unix_ms, back_at, "dc-a healthy again since");
    assert_eq!(back.outages.len(), 1);
    assert_eq!(back.outages[0].ended_unix_ms, Some(*since_unix_ms));
    assert_eq!(
        back.moves
            .iter()
            .map(|m| (m.from.as_str(), m.to.as_str(), m.reason))
            .collect::<Vec<_>>(),
        [
            ("dc-a", "dc-b", MoveReason::DatacenterLost),
            ("dc-b", "dc-a", MoveReason::FailbackRequested)
        ]
    );
    assert_eq!(
        store.get(FAILBACK_KEY).await.unwrap(),
        None,
        "request consumed"
    );

    for stop in stops {
        let _ = stop.send(());
    }
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("controllers stop")
            .unwrap();
    }
    assert_eq!(
        store.get(LEADER_KEY).await.unwrap(),
        None,
        "the leader resigned"
    );
}
