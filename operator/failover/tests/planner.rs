//! The planner's rules as tables, on a virtual clock: each row scripts the two datacenters'
//! health, the witness, the lease and the failback requests over time, drives one planner
//! with a probe round every 500 ms (as the controller does), applies every write it plans to
//! the state (announcing right after, as the controller does), and compares the writes, with
//! their times, with the expected ones. Detection period 10 s, failback-after 60 s.

// Helpers outside the `#[test]`s unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use failover::planner::{
    Degradation, HealthObservation, HeldBack, Leadership, PeerView, PlanInput, Planner,
    PlannerConfig, Witness,
};
use failover::state::{FailoverState, WriteStamp};
use failover::{Action, Decision};

const TICK: f64 = 0.5;
const A: &str = "dc-a";
const B: &str = "dc-b";

/// What the world looks like at one instant.
#[derive(Debug, Clone, Copy)]
struct World {
    /// dc-a's probe round: healthy, unhealthy, or no observation at all.
    a: Option<bool>,
    b: Option<bool>,
    witness: Witness,
    leader: bool,
}

fn all_well() -> World {
    World {
        a: Some(true),
        b: Some(true),
        witness: Witness::Reachable,
        leader: true,
    }
}

/// Where a row starts.
#[derive(Debug, Clone, Copy)]
enum Start {
    /// No state yet (first leader).
    Empty,
    /// dc-a active, stable, epoch 1.
    OnA,
    /// After a failover: dc-b active (epoch 2), dc-a marked failed.
    FailedOverToB,
}

struct Row {
    name: &'static str,
    start: Start,
    automatic_failback: bool,
    world: fn(f64) -> World,
    /// A failback request written at this time, naming this datacenter.
    request: Option<(f64, &'static str)>,
    until: f64,
    /// Every write, with its time: nothing else is written.
    writes: &'static [(f64, &'static str)],
}

#[allow(clippy::disallowed_methods)] // one reading, then a virtual clock
fn origin() -> Instant {
    Instant::now()
}

fn stamp(writer: &str, t: f64) -> WriteStamp {
    WriteStamp {
        writer: writer.to_owned(),
        fencing_revision: 7,
        at_unix_ms: (t * 1000.0) as i64,
    }
}

fn start_state(start: Start) -> Option<FailoverState> {
    let on_a = FailoverState::initial(A, &stamp("before", -100.0));
    match start {
        Start::Empty => None,
        Start::OnA => Some(on_a),
        Start::FailedOverToB => {
            let moved = FailoverState::next(
                Some(&on_a),
                &Action::StartFailover {
                    from: A.into(),
                    to: B.into(),
                },
                &stamp("before", -50.0),
            )?;
            FailoverState::next(
                Some(&moved),
                &Action::CompleteMove { epoch: 2 },
                &stamp("before", -49.0),
            )
        }
    }
}

fn config(automatic_failback: bool) -> PlannerConfig {
    let mut config = PlannerConfig::new([A.to_owned(), B.to_owned()]).unwrap();
    config.detection = Duration::from_secs(10);
    config.failback_after = Duration::from_secs(60);
    config.automatic_failback = automatic_failback;
    config
}

fn observation(datacenter: &str, at: Instant, healthy: bool) -> HealthObservation {
    HealthObservation {
        datacenter: datacenter.to_owned(),
        observed_at: at,
        edges_answering: u32::from(healthy),
        edges: 1,
        services_ready: 2,
        services: 2,
    }
}

/// One controller's loop on a virtual clock: what it writes, and every decision.
struct Run {
    writes: Vec<(f64, String)>,
    decisions: Vec<(f64, Decision)>,
    state: Option<FailoverState>,
}

fn simulate(row: &Row) -> Run {
    let origin = origin();
    let mut planner = Planner::new(config(row.automatic_failback));
    let mut state = start_state(row.start);
    let mut announced = state.as_ref().map(|s| s.epoch);
    let mut pending: Option<&str> = None;
    let mut request = row.request;
    let mut run = Run {
        writes: Vec::new(),
        decisions: Vec::new(),
        state: None,
    };
    let steps = (row.until / TICK) as u32;
    for step in 0..=steps {
        let t = f64::from(step) * TICK;
        let now = origin + Duration::from_secs_f64(t);
        let world = (row.world)(t);
        if let Some((at, datacenter)) = request
            && t >= at
        {
            pending = Some(datacenter);
            request = None;
        }
        for (datacenter, healthy) in [(A, world.a), (B, world.b)] {
            if let Some(healthy) = healthy {
                planner.observe(&observation(datacenter, now, healthy));
            }
        }
        let decision = planner.plan(&PlanInput {
            now,
            leadership: world.leader.then_some(Leadership {
                fencing_revision: 7,
            }),
            state: state.as_ref(),
            witness: world.witness,
            failback_request: pending,
            announced_epoch: announced,
            peers: &[],
        });
        match &decision.action {
            Action::Nothing => {}
            Action::Announce { epoch } => announced = Some(*epoch),
            action => {
                let next = FailoverState::next(state.as_ref(), action, &stamp("c1", t))
                    .unwrap_or_else(|| panic!("{}: {action} at {t} writes nothing", row.name));
                announced = Some(next.epoch);
                state = Some(next);
                run.writes.push((t, action.to_string()));
                if matches!(
                    action,
                    Action::StartFailback { .. } | Action::DismissFailbackRequest { .. }
                ) {
                    pending = None;
                }
            }
        }
        run.decisions.push((t, decision));
    }
    run.state = state;
    run
}

fn decision_at(run: &Run, t: f64) -> &Decision {
    &run.decisions
        .iter()
        .find(|(at, _)| (*at - t).abs() < 1e-9)
        .unwrap()
        .1
}

const ROWS: &[Row] = &[
    Row {
        name: "healthy: the first leader creates the state on the primary, then nothing",
        start: Start::Empty,
        automatic_failback: false,
        world: |_| all_well(),
        request: None,
        until: 120.0,
        writes: &[(0.0, "initialize with dc-a active")],
    },
    Row {
        name: "one lost probe of the active datacenter: nothing",
        start: Start::OnA,
        automatic_failback: false,
        world: |t| World {
            a: Some(t != 20.0),
            ..all_well()
        },
        request: None,
        until: 60.0,
        writes: &[],
    },
    Row {
        name: "dc-a lost at 5 s: failover after exactly the detection period, not before",
        start: Start::OnA,
        automatic_failback: false,
        world: |t| World {
            a: Some(t < 5.0),
            ..all_well()
        },
        request: None,
        until: 60.0,
        writes: &[
            (15.0, "fail over from dc-a to dc-b"),
            (15.5, "complete the move of epoch 2"),
        ],
    },
    Row {
        name: "standby dc-b lost for 25 s: marked failed, then recovered; the roles stay",
        start: Start::OnA,
        automatic_failback: false,
        world: |t| World {
            b: Some(!(5.0..30.0).contains(&t)),
            ..all_well()
        },
        request: None,
        until: 60.0,
        writes: &[(15.0, "mark dc-b failed"), (40.0, "mark dc-b recovered")],
    },
    Row {
        name: "flapping 4 s down / 1 s up (faster than detection): never failed",
        start: Start::OnA,
        automatic_failback: false,
        world: |t| World {
            a: Some(t % 5.0 >= 4.0),
            ..all_well()
        },
        request: None,
        until: 120.0,
        writes: &[],
    },
    Row {
        name: "flapping 9.5 s down / one healthy probe: never failed",
        start: Start::OnA,
        automatic_failback: false,
        world: |t| World {
            a: Some(t % 10.0 == 9.5),
            ..all_well()
        },
        request: None,
        until: 120.0,
        writes: &[],
    },
    Row {
        name: "no observation of dc-a (prober stuck): unknown is not failed",
        start: Start::OnA,
        automatic_failback: false,
        world: |t| World {
            a: (t < 5.0).then_some(true),
            ..all_well()
        },
        request: None,
        until: 60.0,
        writes: &[],
    },
    Row {
        name: "dc-a recovers after a failover: automatic failback only after 60 s of health \
               (a lost probe at 50 s restarts the count)",
        start: Start::OnA,
        automatic_failback: true,
        world: |t| World {
            a: Some(!(5.0..20.0).contains(&t) && t != 50.0),
            ..all_well()
        },
        request: None,
        until: 150.0,
        writes: &[
            (15.0, "fail over from dc-a to dc-b"),
            (15.5, "complete the move of epoch 2"),
            (30.0, "mark dc-a recovered"),
            (110.5, "fail back from dc-b to dc-a (Automatic)"),
            (111.0, "complete the move of epoch 3"),
        ],
    },
    Row {
        name: "dc-a recovers after a failover, failback not automatic: the roles stay on dc-b",
        start: Start::OnA,
        automatic_failback: false,
        world: |t| World {
            a: Some(!(5.0..20.0).contains(&t)),
            ..all_well()
        },
        request: None,
        until: 300.0,
        writes: &[
            (15.0, "fail over from dc-a to dc-b"),
            (15.5, "complete the move of epoch 2"),
            (30.0, "mark dc-a recovered"),
        ],
    },
    Row {
        name: "automatic failback never while the active side is unhealthy",
        start: Start::FailedOverToB,
        automatic_failback: true,
        world: |t| World {
            b: Some(!(58.0..64.0).contains(&t)),
            ..all_well()
        },
        request: None,
        until: 90.0,
        writes: &[
            (10.0, "mark dc-a recovered"),
            (64.0, "fail back from dc-b to dc-a (Automatic)"),
            (64.5, "complete the move of epoch 3"),
        ],
    },
    Row {
        name: "witness lost, both datacenters healthy: nothing (degraded)",
        start: Start::OnA,
        automatic_failback: false,
        world: |_| World {
            witness: Witness::Unreachable,
            ..all_well()
        },
        request: None,
        until: 60.0,
        writes: &[],
    },
    Row {
        name: "witness lost and dc-a lost: the lease holder still fails over",
        start: Start::OnA,
        automatic_failback: false,
        world: |t| World {
            a: Some(t < 5.0),
            witness: Witness::Unreachable,
            ..all_well()
        },
        request: None,
        until: 60.0,
        writes: &[
            (15.0, "fail over from dc-a to dc-b"),
            (15.5, "complete the move of epoch 2"),
        ],
    },
    Row {
        name: "both datacenters lost: no failover",
        start: Start::OnA,
        automatic_failback: false,
        world: |t| World {
            a: Some(t < 5.0),
            b: Some(t < 5.0),
            ..all_well()
        },
        request: None,
        until: 60.0,
        writes: &[],
    },
    Row {
        name: "active lost while the other is flapping: both lost, no failover",
        start: Start::OnA,
        automatic_failback: false,
        world: |t| World {
            a: Some(t < 5.0),
            b: Some(t % 5.0 < 4.0),
            ..all_well()
        },
        request: None,
        until: 60.0,
        writes: &[],
    },
    Row {
        name: "failback on request",
        start: Start::FailedOverToB,
        automatic_failback: false,
        world: |_| all_well(),
        request: Some((30.0, A)),
        until: 60.0,
        writes: &[
            (10.0, "mark dc-a recovered"),
            (30.0, "fail back from dc-b to dc-a (Requested)"),
            (30.5, "complete the move of epoch 3"),
        ],
    },
    Row {
        name: "failback requested while dc-a is unhealthy: waits for its detection period",
        start: Start::FailedOverToB,
        automatic_failback: false,
        world: |t| World {
            a: Some(t >= 40.0),
            ..all_well()
        },
        request: Some((20.0, A)),
        until: 80.0,
        writes: &[
            (50.0, "mark dc-a recovered"),
            (50.5, "fail back from dc-b to dc-a (Requested)"),
            (51.0, "complete the move of epoch 3"),
        ],
    },
    Row {
        name: "failback requested while the witness is lost: waits for the witness",
        start: Start::FailedOverToB,
        automatic_failback: false,
        world: |t| World {
            witness: if t < 40.0 {
                Witness::Unreachable
            } else {
                Witness::Reachable
            },
            ..all_well()
        },
        request: Some((20.0, A)),
        until: 80.0,
        writes: &[
            (40.0, "mark dc-a recovered"),
            (40.5, "fail back from dc-b to dc-a (Requested)"),
            (41.0, "complete the move of epoch 3"),
        ],
    },
    Row {
        name: "failback requested to the active datacenter: dismissed",
        start: Start::FailedOverToB,
        automatic_failback: false,
        world: |_| all_well(),
        request: Some((20.0, B)),
        until: 60.0,
        writes: &[
            (10.0, "mark dc-a recovered"),
            (20.0, "dismiss the failback request to dc-b (AlreadyActive)"),
        ],
    },
    Row {
        name: "failback requested to an unknown datacenter: dismissed",
        start: Start::OnA,
        automatic_failback: false,
        world: |_| all_well(),
        request: Some((20.0, "dc-z")),
        until: 60.0,
        writes: &[(
            20.0,
            "dismiss the failback request to dc-z (UnknownDatacenter)",
        )],
    },
    Row {
        name: "never act without the lease",
        start: Start::Empty,
        automatic_failback: false,
        world: |t| World {
            a: Some(t < 5.0),
            leader: false,
            ..all_well()
        },
        request: Some((20.0, A)),
        until: 60.0,
        writes: &[],
    },
    Row {
        name: "lease lost before the detection period ends: nothing",
        start: Start::OnA,
        automatic_failback: false,
        world: |t| World {
            a: Some(t < 5.0),
            leader: t < 10.0,
            ..all_well()
        },
        request: None,
        until: 60.0,
        writes: &[],
    },
    Row {
        name: "lease gained after the detection period: the new leader acts at once \
               (its streaks were kept while following)",
        start: Start::OnA,
        automatic_failback: false,
        world: |t| World {
            a: Some(t < 5.0),
            leader: t >= 20.0,
            ..all_well()
        },
        request: None,
        until: 60.0,
        writes: &[
            (20.0, "fail over from dc-a to dc-b"),
            (20.5, "complete the move of epoch 2"),
        ],
    },
];

#[test]
fn the_planner_table() {
    let mut failures = Vec::new();
    for row in ROWS {
        let run = simulate(row);
        let expected: Vec<(f64, String)> = row
            .writes
            .iter()
            .map(|(t, action)| (*t, (*action).to_owned()))
            .collect();
        if run.writes != expected {
            failures.push(format!(
                "{}:\n  expected {expected:?}\n  got      {:?}",
                row.name, run.writes
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

fn row(name_starts: &str) -> &'static Row {
    ROWS.iter()
        .find(|r| r.name.starts_with(name_starts))
        .unwrap()
}

#[test]
fn before_the_detection_period_the_lost_datacenter_is_reported_but_not_failed() {
    let run = simulate(row("dc-a lost at 5 s"));
    let before = decision_at(&run, 14.5);
    assert_eq!(before.action, Action::Nothing);
    assert!(
        before
            .report
            .degraded
            .contains(&Degradation::DatacenterUnhealthy(A.into()))
    );
    let state = run.state.as_ref().unwrap();
    assert_eq!((state.active.as_str(), state.epoch), (B, 2));
    assert!(!state.is_moving() && state.is_failed(A));
    assert_eq!(decision_at(&run, 15.0).fencing_revision, Some(7));
}

#[test]
fn witness_lost_is_reported_as_degraded_at_every_round() {
    let run = simulate(row("witness lost, both"));
    for (t, decision) in &run.decisions {
        assert!(
            decision.report.degraded == [Degradation::WitnessLost],
            "at {t}: {:?}",
            decision.report.degraded
        );
    }
}

#[test]
fn both_lost_is_reported_and_holds_the_failover_back() {
    let run = simulate(row("both datacenters lost"));
    for (t, decision) in run.decisions.iter().filter(|(t, _)| *t >= 15.0) {
        assert_eq!(
            decision.held_back,
            Some(HeldBack::BothDatacentersLost),
            "at {t}"
        );
        assert!(
            decision
                .report
                .degraded
                .contains(&Degradation::BothDatacentersLost)
        );
    }
}

#[test]
fn without_the_lease_every_decision_is_held_back() {
    let run = simulate(row("never act without the lease"));
    for (t, decision) in &run.decisions {
        assert_eq!(decision.held_back, Some(HeldBack::NotLeader), "at {t}");
        assert_eq!(decision.fencing_revision, None);
        assert!(!decision.report.leader);
    }
}

#[test]
fn an_automatic_failback_held_back_by_the_unhealthy_active_side_says_so() {
    let run = simulate(row("automatic failback never while"));
    assert_eq!(
        decision_at(&run, 60.0).held_back,
        Some(HeldBack::ActiveUnhealthy)
    );
    assert_eq!(
        decision_at(&run, 30.0).held_back,
        Some(HeldBack::FailbackTargetNotStable {
            remaining: Duration::from_secs(30)
        })
    );
}

#[test]
fn a_stuck_prober_makes_the_datacenter_unknown() {
    let run = simulate(row("no observation of dc-a"));
    assert!(
        decision_at(&run, 16.0)
            .report
            .degraded
            .contains(&Degradation::DatacenterUnknown(A.into()))
    );
}

/// How each controller in [`partition`] is placed: the planners with their own views, and
/// whether each one's view is stored (its controller alive and on etcd's quorum side).
struct Placement {
    /// Which controller holds the lease at `t`.
    holder: fn(f64) -> &'static str,
    /// Whether the controller in dc-a stores its view at `t`.
    a_view_stored: fn(f64) -> bool,
    /// A third controller at the witness, which reaches both datacenters.
    witness_controller: bool,
}

/// A partition between the datacenters from 5 s: each side's controller sees the other dead.
/// The planners share one stored state and each other's views; only the lease holder writes.
/// Returns the writes.
fn partition(placement: &Placement) -> (Vec<(f64, &'static str, String)>, FailoverState) {
    let origin = origin();
    let mut in_a = Planner::new(config(false));
    let mut in_b = Planner::new(config(false));
    let mut at_witness = Planner::new(config(false));
    let mut state = start_state(Start::OnA).unwrap();
    let mut writes = Vec::new();
    let mut announced = Some(state.epoch);
    for step in 0..=120 {
        let t = f64::from(step) * TICK;
        let now = origin + Duration::from_secs_f64(t);
        let partitioned = t >= 5.0;
        in_a.observe(&observation(A, now, true));
        in_a.observe(&observation(B, now, !partitioned));
        in_b.observe(&observation(A, now, !partitioned));
        in_b.observe(&observation(B, now, true));
        at_witness.observe(&observation(A, now, true));
        at_witness.observe(&observation(B, now, true));
        let mut stored = vec![in_b.view("in-b", now)];
        if (placement.a_view_stored)(t) {
            stored.push(in_a.view("in-a", now));
        }
        if placement.witness_controller {
            stored.push(at_witness.view("at-witness", now));
        }
        let mut writers = 0;
        for (name, planner) in [("in-a", &in_a), ("in-b", &in_b)] {
            let peers: Vec<PeerView> = stored
                .iter()
                .filter(|v| v.instance != name)
                .cloned()
                .collect();
            let decision = planner.plan(&PlanInput {
                now,
                leadership: ((placement.holder)(t) == name).then_some(Leadership {
                    fencing_revision: 7,
                }),
                state: Some(&state),
                witness: Witness::Reachable,
                failback_request: None,
                announced_epoch: announced,
                peers: &peers,
            });
            if decision.action.writes() {
                writers += 1;
                assert_eq!(
                    name,
                    (placement.holder)(t),
                    "{name} wrote without the lease at {t}"
                );
                state =
                    FailoverState::next(Some(&state), &decision.action, &stamp(name, t)).unwrap();
                announced = Some(state.epoch);
                writes.push((t, name, decision.action.to_string()));
            } else if name != (placement.holder)(t) {
                assert_eq!(decision.held_back, Some(HeldBack::NotLeader));
            }
        }
        assert!(writers <= 1, "two writers at {t}");
    }
    (writes, state)
}

/// Both controllers alive on etcd's quorum side (with the witness): the leader in dc-b sees
/// dc-a dead, dc-a's controller sees it alive — one against one is no majority, nothing moves,
/// and the standby is not marked failed by the other side either.
#[test]
fn partition_with_both_controllers_reaching_etcd_moves_nothing() {
    for holder in [
        (|_| "in-a") as fn(f64) -> &'static str,
        |_| "in-b",
        |t| if t < 30.0 { "in-a" } else { "in-b" },
    ] {
        let (writes, state) = partition(&Placement {
            holder,
            a_view_stored: |_| true,
            witness_controller: false,
        });
        assert_eq!(writes, vec![]);
        assert_eq!(state.active, A);
    }
}

/// With a controller at the witness (which reaches both): two against one.
#[test]
fn partition_with_a_witness_controller_moves_nothing() {
    let (writes, _) = partition(&Placement {
        holder: |_| "in-b",
        a_view_stored: |_| true,
        witness_controller: true,
    });
    assert_eq!(writes, vec![]);
}

/// dc-a's controller loses etcd (its view's lease expires at 20 s): the leader in dc-b is
/// then the only judge of dc-a, and fails it over — as when dc-a is lost with its controller.
#[test]
fn a_lost_datacenters_view_goes_and_the_failover_happens() {
    let (writes, state) = partition(&Placement {
        holder: |_| "in-b",
        a_view_stored: |t| t < 20.0,
        witness_controller: false,
    });
    assert_eq!(
        writes,
        vec![
            (20.0, "in-b", "fail over from dc-a to dc-b".to_owned()),
            (20.5, "in-b", "complete the move of epoch 2".to_owned()),
        ]
    );
    assert_eq!(state.active, B);
}

/// The held-back reason names the disagreement.
#[test]
fn an_unconfirmed_failure_is_held_back_with_the_count() {
    let origin = origin();
    let mut planner = Planner::new(config(false));
    for step in 0..=30 {
        let now = origin + Duration::from_secs_f64(f64::from(step) * TICK);
        planner.observe(&observation(A, now, false));
        planner.observe(&observation(B, now, true));
    }
    let now = origin + Duration::from_secs(15);
    let state = start_state(Start::OnA).unwrap();
    // The leader's plan, stable on dc-a, with one peer's view.
    let plan_with = |peer: PeerView| {
        planner.plan(&PlanInput {
            now,
            leadership: Some(Leadership {
                fencing_revision: 7,
            }),
            state: Some(&state),
            witness: Witness::Reachable,
            failback_request: None,
            announced_epoch: Some(1),
            peers: std::slice::from_ref(&peer),
        })
    };
    let decision = plan_with(PeerView {
        instance: "in-a".into(),
        seen: vec![A.into(), B.into()],
        failed: vec![],
    });
    assert_eq!(decision.action, Action::Nothing);
    assert_eq!(
        decision.held_back,
        Some(HeldBack::NotConfirmed {
            datacenter: A.into(),
            agreeing: 1,
            judging: 2,
        })
    );
    // A peer that has not seen dc-a within the period does not judge it.
    let decision = plan_with(PeerView {
        instance: "in-a".into(),
        seen: vec![B.into()],
        failed: vec![],
    });
    assert!(matches!(decision.action, Action::StartFailover { .. }));
    assert_eq!(planner.view("me", now).failed, vec![A.to_owned()]);
}
