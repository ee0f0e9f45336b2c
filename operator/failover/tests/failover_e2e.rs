//! Failover between processes, without Kubernetes: a real etcd (also the witness: its
//! `/health`) and nats-server, one real `calanque-sip-edge` per datacenter standing for dc-a
//! and dc-b (probed with SIP OPTIONS and on `/readyz`), and two `calanque-failover`
//! controllers, c1 and c2.
//!
//! Exactly one holds the lease; kill -9 of dc-a's edge → the leader moves the roles to dc-b
//! within 10 s (printed), announces it on NATS, and the stored state says dc-b with a higher
//! epoch; kill -9 of the leading controller → the other takes the lease after the TTL and acts
//! from then on (dc-a's edge restarted, a failback request → back on dc-a, written by the new
//! leader). Finally every revision of the state key is replayed from etcd's history: each
//! write was made by the instance holding the leader key at that revision, under that key's
//! revision as its fence — the non-leader never wrote.

// Helpers outside the `#[test]`s unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bus::{Bus, NatsBus, NatsOptions};
use failover::FailoverState;
use failover::state::{FAILBACK_KEY, LEADER_KEY, PREFIX, STATE_KEY};
use prost::Message as _;
use store::etcd::{EtcdConfig, EtcdStore};
use store::{Store, WatchEvent};
use testkit::etcd::EtcdServer;
use testkit::nats::NatsServer;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::{Instant, sleep, timeout};

const REALM: &str = "calanque.test";
const DETECTION_SECONDS: u64 = 3;
const LEASE_TTL_SECONDS: u64 = 2;
/// The whole scenario's bound.
const SCENARIO_LIMIT: Duration = Duration::from_secs(150);

/// A binary beside this package's (built by `cargo build`, or by `cargo test --workspace`).
fn sibling(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_calanque-failover")).with_file_name(name);
    assert!(
        path.is_file(),
        "{} is missing: build it first (`cargo build -p sip-edge --bin {name}`, or \
         `cargo test --workspace` builds every binary)",
        path.display()
    );
    path
}

fn free_local() -> SocketAddr {
    format!("127.0.0.1:{}", testkit::process::free_port())
        .parse()
        .unwrap()
}

/// A child process whose stdout lines are kept (and echoed on stderr with its name).
struct Process {
    name: String,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Process {
    /// Starts `binary` and waits (at most 30 s) for `ready_line` on its stdout.
    async fn start(name: &str, binary: &Path, args: &[String], ready_line: &str) -> Process {
        let mut child = Command::new(binary)
            .args(args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let mut reader = BufReader::new(child.stdout.take().unwrap()).lines();
        let kept = lines.clone();
        let prefix = name.to_owned();
        tokio::spawn(async move {
            while let Ok(Some(line)) = reader.next_line().await {
                eprintln!("[{prefix}] {line}");
                kept.lock().unwrap().push(line);
            }
        });
        let process = Process {
            name: name.to_owned(),
            child,
            lines,
        };
        let started = Instant::now();
        while !process.logged(ready_line) {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{name} did not log {ready_line:?} within 30 s"
            );
            sleep(Duration::from_millis(20)).await;
        }
        process
    }

    fn logged(&self, text: &str) -> bool {
        self.lines.lock().unwrap().iter().any(|l| l.contains(text))
    }

    /// kill -9, and reap.
    async fn kill(&mut self) {
        self.child.start_kill().unwrap();
        let _ = timeout(Duration::from_secs(5), self.child.wait()).await;
        eprintln!("[test] killed {} (SIGKILL)", self.name);
    }
}

/// One datacenter's SIP edge, and how the controllers probe it.
struct Edge {
    id: String,
    sip: SocketAddr,
    telemetry: SocketAddr,
}

impl Edge {
    fn new(id: &str) -> Edge {
        Edge {
            id: id.to_owned(),
            sip: free_local(),
            telemetry: free_local(),
        }
    }

    async fn start(&self, etcd: &str, nats: &str) -> Process {
        let args: Vec<String> = [
            "--edge-id",
            &self.id,
            "--listen",
            &format!("udp:{}", self.sip),
            "--etcd",
            etcd,
            "--nats",
            nats,
            "--realm",
            REALM,
            "--nonce-key",
            &"22".repeat(32),
            "--telemetry-listen",
            &self.telemetry.to_string(),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        Process::start(
            &self.id,
            &sibling("calanque-sip-edge"),
            &args,
            "sip-edge ready",
        )
        .await
    }

    fn targets(&self, datacenter: &str) -> String {
        format!(
            "{datacenter}=sip:{},readyz:http://{}/readyz",
            self.sip, self.telemetry
        )
    }
}

async fn start_controller(
    instance: &str,
    etcd: &str,
    nats: &str,
    datacenters: [String; 2],
    telemetry: SocketAddr,
) -> Process {
    let args: Vec<String> = [
        "--instance",
        instance,
        "--etcd",
        etcd,
        "--nats",
        nats,
        "--datacenter",
        &datacenters[0],
        "--datacenter",
        &datacenters[1],
        "--witness",
        &format!("{etcd}/health"),
        "--detection-seconds",
        &DETECTION_SECONDS.to_string(),
        "--probe-interval-ms",
        "250",
        "--lease-ttl-seconds",
        &LEASE_TTL_SECONDS.to_string(),
        "--telemetry-listen",
        &telemetry.to_string(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    Process::start(
        instance,
        Path::new(env!("CARGO_BIN_EXE_calanque-failover")),
        &args,
        "failover controller ready",
    )
    .await
}

async fn stored_state(store: &dyn Store) -> Option<FailoverState> {
    let kv = store.get(STATE_KEY).await.ok()??;
    Some(FailoverState::decode(&kv.value).unwrap())
}

async fn leader(store: &dyn Store) -> Option<(String, i64)> {
    let kv = store.get(LEADER_KEY).await.ok()??;
    Some((
        String::from_utf8(kv.value.to_vec()).unwrap(),
        kv.mod_revision,
    ))
}

/// Polls until `condition` holds on the stored state; returns it and how long it took.
async fn wait_for_state(
    store: &dyn Store,
    limit: Duration,
    what: &str,
    condition: impl Fn(&FailoverState) -> bool,
) -> (FailoverState, Duration) {
    let started = Instant::now();
    loop {
        if let Some(state) = stored_state(store).await
            && condition(&state)
        {
            return (state, started.elapsed());
        }
        assert!(
            started.elapsed() < limit,
            "the state was not {what} within {limit:?}: {:?}",
            stored_state(store).await
        );
        sleep(Duration::from_millis(25)).await;
    }
}

/// `calanque_instance_leader{role="failover-controller"}` on a controller's /metrics.
async fn leader_gauge(telemetry: SocketAddr) -> Option<i64> {
    let body = reqwest::get(format!("http://{telemetry}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    body.lines()
        .find_map(|l| l.strip_prefix("calanque_instance_leader{role=\"failover-controller\"} "))
        .and_then(|v| v.trim().parse().ok())
}

/// Replays every change under the failover prefix from etcd's first revision and checks each
/// state write against the leader key current at its revision. Returns the writes per writer.
async fn audit_state_writes(store: &dyn Store) -> Vec<(String, u64)> {
    let (_, last) = store.list_prefix(PREFIX).await.unwrap();
    let mut watch = store.watch(PREFIX, 1).await.unwrap();
    let mut holder: Option<(String, i64)> = None;
    let mut writes: Vec<(String, u64)> = Vec::new();
    loop {
        let event = timeout(Duration::from_secs(5), watch.next())
            .await
            .expect("history replay")
            .unwrap()
            .unwrap();
        let revision = match &event {
            WatchEvent::Put(kv) => kv.mod_revision,
            WatchEvent::Delete { revision, .. } => *revision,
        };
        match event {
            WatchEvent::Put(kv) if kv.key == LEADER_KEY => {
                holder = Some((
                    String::from_utf8(kv.value.to_vec()).unwrap(),
                    kv.mod_revision,
                ));
            }
            WatchEvent::Delete { key, .. } if key == LEADER_KEY => holder = None,
            WatchEvent::Put(kv) if kv.key == STATE_KEY => {
                let state = FailoverState::decode(&kv.value).unwrap();
                let (leader, fence) = holder
                    .clone()
                    .unwrap_or_else(|| panic!("state written at {revision} with no leader"));
                assert_eq!(
                    (state.writer.as_str(), state.fencing_revision),
                    (leader.as_str(), fence),
                    "state written at revision {revision} by a non-leader"
                );
                match writes.iter_mut().find(|(w, _)| *w == leader) {
                    Some((_, n)) => *n += 1,
                    None => writes.push((leader, 1)),
                }
            }
            _ => {}
        }
        if revision >= last {
            return writes;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_fails_over_a_lost_datacenter_and_the_other_takes_over_when_it_dies() {
    timeout(SCENARIO_LIMIT, scenario())
        .await
        .expect("the scenario did not finish in time");
}

async fn scenario() {
    let edge_binary = sibling("calanque-sip-edge");
    eprintln!("[test] edge binary: {}", edge_binary.display());
    let etcd = tokio::task::spawn_blocking(EtcdServer::start)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("etcd did not start: {e}"));
    let nats = tokio::task::spawn_blocking(NatsServer::start)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("nats-server did not start: {e}"));
    let (etcd_url, nats_url) = (etcd.endpoint(), nats.url());
    let store: Arc<dyn Store> = Arc::new(
        EtcdStore::connect(&EtcdConfig::new([etcd_url.clone()]))
            .await
            .unwrap(),
    );
    test_phone::directory::seed_small_city(&store, REALM).await;
    let bus = NatsBus::connect(NatsOptions::new("failover-e2e", vec![nats_url.clone()]))
        .await
        .unwrap();
    let mut announcements = bus
        .subscribe(proto::subjects::FAILOVER_STATE)
        .await
        .unwrap();

    let (edge_a, edge_b) = (Edge::new("edge-a"), Edge::new("edge-b"));
    let mut edge_a_process = edge_a.start(&etcd_url, &nats_url).await;
    let _edge_b_process = edge_b.start(&etcd_url, &nats_url).await;
    let datacenters = [edge_a.targets("dc-a"), edge_b.targets("dc-b")];
    let telemetry = [free_local(), free_local()];
    let mut controllers = Vec::new();
    for (instance, endpoints) in ["c1", "c2"].into_iter().zip(telemetry) {
        controllers.push(
            start_controller(
                instance,
                &etcd_url,
                &nats_url,
                datacenters.clone(),
                endpoints,
            )
            .await,
        );
    }

    // The first leader creates the state on the primary.
    let (initial, _) = wait_for_state(store.as_ref(), Duration::from_secs(20), "created", |s| {
        s.active == "dc-a" && !s.is_moving()
    })
    .await;
    assert_eq!(initial.epoch, 1);
    let (first_leader, first_fence) = leader(store.as_ref()).await.expect("a leader");
    let leading = controllers
        .iter()
        .position(|c| c.name == first_leader)
        .unwrap();
    let following = 1 - leading;
    eprintln!("[test] {first_leader} leads (fence {first_fence})");
    // Exactly one holds the lease, as each reports it.
    let started = Instant::now();
    loop {
        let gauges = [
            leader_gauge(telemetry[0]).await,
            leader_gauge(telemetry[1]).await,
        ];
        let mut expected = [Some(0), Some(0)];
        expected[leading] = Some(1);
        if gauges == expected {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "leader gauges {gauges:?}"
        );
        sleep(Duration::from_millis(100)).await;
    }
    assert!(controllers[leading].logged("leadership acquired"));
    assert!(!controllers[following].logged("leadership acquired"));

    // dc-a is lost (times are measured from just before the signal).
    let lost = Instant::now();
    edge_a_process.kill().await;
    let (moved, _) = wait_for_state(store.as_ref(), Duration::from_secs(15), "on dc-b", |s| {
        s.active == "dc-b"
    })
    .await;
    let took = lost.elapsed();
    let (completed, took_complete) =
        wait_for_state(store.as_ref(), Duration::from_secs(5), "completed", |s| {
            s.active == "dc-b" && !s.is_moving()
        })
        .await;
    println!(
        "failover dc-a → dc-b: state written {:.2} s after kill -9 of dc-a's edge \
         (detection {} s), move completed {:.2} s after",
        took.as_secs_f64(),
        DETECTION_SECONDS,
        (took + took_complete).as_secs_f64()
    );
    assert!(took < Duration::from_secs(10), "failover took {took:?}");
    assert!(
        took >= Duration::from_secs(DETECTION_SECONDS),
        "failed over after {took:?}, before the detection period"
    );
    assert!(moved.epoch > initial.epoch);
    assert_eq!(completed.epoch, 2);
    assert!(completed.is_failed("dc-a"));
    // The leader's health view went into the same writes: dc-a judged unhealthy, an outage open.
    assert!(
        completed
            .health
            .iter()
            .any(|h| h.datacenter == "dc-a" && !h.healthy),
        "{:?}",
        completed.health
    );
    assert!(
        completed
            .outages
            .iter()
            .any(|o| o.datacenter == "dc-a" && o.ended_unix_ms.is_none())
    );
    assert_eq!(
        (completed.writer.as_str(), completed.fencing_revision),
        (first_leader.as_str(), first_fence)
    );
    assert!(!controllers[following].logged("failover state written"));
    let announced = timeout(Duration::from_secs(10), async {
        loop {
            let message = announcements.next().await.unwrap();
            let state = proto::v1::FailoverState::decode(message.payload).unwrap();
            if state.epoch == 2 {
                return state;
            }
        }
    })
    .await
    .expect("the failover was announced on NATS");
    assert_eq!(announced.active_datacenter, "dc-b");

    // The leading controller dies; the other takes the lease after the TTL.
    let killed = Instant::now();
    controllers[leading].kill().await;
    let (second_leader, second_fence) = loop {
        if let Some((name, fence)) = leader(store.as_ref()).await
            && name != first_leader
        {
            break (name, fence);
        }
        assert!(
            killed.elapsed() < Duration::from_secs(LEASE_TTL_SECONDS + 8),
            "no new leader"
        );
        sleep(Duration::from_millis(25)).await;
    };
    let takeover = killed.elapsed();
    println!(
        "leadership: {second_leader} took over {:.2} s after kill -9 of {first_leader} \
         (lease TTL {} s)",
        takeover.as_secs_f64(),
        LEASE_TTL_SECONDS
    );
    assert_eq!(second_leader, controllers[following].name);
    assert!(second_fence > first_fence);

    // The new leader acts: dc-a comes back, an operator asks for the failback.
    let _edge_a_again = edge_a.start(&etcd_url, &nats_url).await;
    store
        .put(FAILBACK_KEY, bytes::Bytes::from_static(b"dc-a"), None)
        .await
        .unwrap();
    let (back, took_back) = wait_for_state(
        store.as_ref(),
        Duration::from_secs(30),
        "back on dc-a",
        |s| s.active == "dc-a" && !s.is_moving(),
    )
    .await;
    println!(
        "failback dc-b → dc-a by {second_leader}: {:.2} s after the request (dc-a healthy again \
         for the detection period first)",
        took_back.as_secs_f64()
    );
    assert_eq!(back.epoch, 3);
    assert_eq!(
        (back.writer.as_str(), back.fencing_revision),
        (second_leader.as_str(), second_fence)
    );
    assert!(!back.is_failed("dc-a"));
    assert!(
        back.health
            .iter()
            .any(|h| h.datacenter == "dc-a" && h.healthy),
        "{:?}",
        back.health
    );
    assert_eq!(
        store.get(FAILBACK_KEY).await.unwrap(),
        None,
        "request consumed"
    );

    // Every write, replayed from etcd's history, came from the leader of its revision.
    let writes = audit_state_writes(store.as_ref()).await;
    println!("state writes per writer (each checked against its revision's leader): {writes:?}");
    assert_eq!(writes.len(), 2, "{writes:?}");
    assert_eq!(writes[0].0, first_leader);
    assert_eq!(writes[1].0, second_leader);
}
