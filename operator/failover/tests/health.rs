//! The leader's health view in the stored state, as a table on a virtual clock: each row
//! scripts the two datacenters' health and the lease, drives one planner with a probe round
//! every 500 ms, and carries out each round as the controller does — the judged health view
//! ([`judge_health`]) written with the planner's action, or alone when a judgment changed
//! ([`FailoverState::after_round`]) — then compares every write (time, action, view) and the
//! outages and moves left in the state. Detection period 10 s; times are seconds.

// Helpers outside the `#[test]`s unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use failover::Action;
use failover::planner::{
    HealthObservation, Leadership, PlanInput, Planner, PlannerConfig, Witness,
};
use failover::state::{FailoverState, WriteStamp, judge_health};

const TICK: f64 = 0.5;
const A: &str = "dc-a";
const B: &str = "dc-b";

/// One round's world: each datacenter healthy, unhealthy or not observed; the lease.
#[derive(Debug, Clone, Copy)]
struct World {
    a: Option<bool>,
    b: Option<bool>,
    leader: bool,
}

fn all_well() -> World {
    World {
        a: Some(true),
        b: Some(true),
        leader: true,
    }
}

struct Row {
    name: &'static str,
    world: fn(f64) -> World,
    until: f64,
    /// Every write: its time, and "action | view" ("health" when only the view changed).
    writes: &'static [(f64, &'static str)],
    /// The outages in the state at the end: datacenter, start, end.
    outages: &'static [(&'static str, f64, Option<f64>)],
    /// The completed moves at the end: from, to, started, completed.
    moves: &'static [(&'static str, &'static str, f64, f64)],
}

#[allow(clippy::disallowed_methods)] // one reading, then a virtual clock
fn origin() -> Instant {
    Instant::now()
}

fn ms(t: f64) -> i64 {
    (t * 1000.0).round() as i64
}

fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

fn describe(action: &Action, state: &FailoverState) -> String {
    let what = if action.writes() {
        action.to_string()
    } else {
        "health".to_owned()
    };
    let view: Vec<String> = state
        .health
        .iter()
        .map(|h| {
            format!(
                "{} {} since {}",
                h.datacenter,
                if h.healthy { "healthy" } else { "unhealthy" },
                secs(h.since_unix_ms)
            )
        })
        .collect();
    format!("{what} | {}", view.join(", "))
}

struct Run {
    writes: Vec<(f64, String)>,
    state: FailoverState,
}

fn simulate(row: &Row) -> Run {
    let origin = origin();
    let mut config = PlannerConfig::new([A.to_owned(), B.to_owned()]).unwrap();
    config.detection = Duration::from_secs(10);
    let detection = config.detection;
    let mut planner = Planner::new(config);
    let stamp = |t: f64| WriteStamp {
        writer: "c1".to_owned(),
        fencing_revision: 7,
        at_unix_ms: ms(t),
    };
    // dc-a active and stable, written before the controller started (no health view yet).
    let mut state = FailoverState::initial(A, &stamp(-100.0));
    let mut announced = Some(state.epoch);
    let mut writes = Vec::new();
    for step in 0..=(row.until / TICK) as u32 {
        let t = f64::from(step) * TICK;
        let now = origin + Duration::from_secs_f64(t);
        let world = (row.world)(t);
        for (datacenter, healthy) in [(A, world.a), (B, world.b)] {
            if let Some(healthy) = healthy {
                planner.observe(&HealthObservation {
                    datacenter: datacenter.to_owned(),
                    observed_at: now,
                    edges_answering: u32::from(healthy),
                    edges: 1,
                    services_ready: 0,
                    services: 0,
                });
            }
        }
        let decision = planner.plan(&PlanInput {
            now,
            leadership: world.leader.then_some(Leadership {
                fencing_revision: 7,
            }),
            state: Some(&state),
            witness: Witness::NotConfigured,
            failback_request: None,
            announced_epoch: announced,
            peers: &[],
        });
        if !world.leader {
            continue;
        }
        let view = judge_health(
            &state.health,
            &decision.report.datacenters,
            detection,
            ms(t),
        );
        match FailoverState::after_round(Some(&state), &decision.action, &view, &stamp(t)) {
            Some(next) => {
                writes.push((t, describe(&decision.action, &next)));
                announced = Some(next.epoch);
                state = next;
            }
            None => {
                if let Action::Announce { epoch } = decision.action {
                    announced = Some(epoch);
                }
            }
        }
    }
    Run { writes, state }
}

const ROWS: &[Row] = &[
    Row {
        name: "healthy: one write once both streaks are the detection period long, then nothing",
        world: |_| all_well(),
        until: 120.0,
        writes: &[(10.0, "health | dc-a healthy since 0, dc-b healthy since 0")],
        outages: &[],
        moves: &[],
    },
    Row {
        name: "one lost probe of dc-a at 20 s: nothing written",
        world: |t| World {
            a: Some(t != 20.0),
            ..all_well()
        },
        until: 60.0,
        writes: &[(10.0, "health | dc-a healthy since 0, dc-b healthy since 0")],
        outages: &[],
        moves: &[],
    },
    Row {
        name: "dc-b flapping 4 s down / 1 s up from 20 s: nothing written",
        world: |t| World {
            b: Some(t < 20.0 || t % 5.0 >= 4.0),
            ..all_well()
        },
        until: 120.0,
        writes: &[(10.0, "health | dc-a healthy since 0, dc-b healthy since 0")],
        outages: &[],
        moves: &[],
    },
    Row {
        name: "dc-a lost at 15 s: judged unhealthy since 15 s in the failover's write",
        world: |t| World {
            a: Some(t < 15.0),
            ..all_well()
        },
        until: 60.0,
        writes: &[
            (10.0, "health | dc-a healthy since 0, dc-b healthy since 0"),
            (
                25.0,
                "fail over from dc-a to dc-b | dc-a unhealthy since 15, dc-b healthy since 0",
            ),
            (
                25.5,
                "complete the move of epoch 2 | dc-a unhealthy since 15, dc-b healthy since 0",
            ),
        ],
        outages: &[(A, 15.0, None)],
        moves: &[(A, B, 25.0, 25.5)],
    },
    Row {
        name: "dc-a lost from 15 s to 40 s: recovered with its healthy streak's start, the \
               outage ends there",
        world: |t| World {
            a: Some(!(15.0..40.0).contains(&t)),
            ..all_well()
        },
        until: 90.0,
        writes: &[
            (10.0, "health | dc-a healthy since 0, dc-b healthy since 0"),
            (
                25.0,
                "fail over from dc-a to dc-b | dc-a unhealthy since 15, dc-b healthy since 0",
            ),
            (
                25.5,
                "complete the move of epoch 2 | dc-a unhealthy since 15, dc-b healthy since 0",
            ),
            (
                50.0,
                "mark dc-a recovered | dc-a healthy since 40, dc-b healthy since 0",
            ),
        ],
        outages: &[(A, 15.0, Some(40.0))],
        moves: &[(A, B, 25.0, 25.5)],
    },
    Row {
        name: "standby dc-b lost at 15 s: marked failed and judged unhealthy in one write",
        world: |t| World {
            b: Some(t < 15.0),
            ..all_well()
        },
        until: 60.0,
        writes: &[
            (10.0, "health | dc-a healthy since 0, dc-b healthy since 0"),
            (
                25.0,
                "mark dc-b failed | dc-a healthy since 0, dc-b unhealthy since 15",
            ),
        ],
        outages: &[(B, 15.0, None)],
        moves: &[],
    },
    Row {
        name: "both lost at 15 s: no failover, but the view says so (the planner writes nothing)",
        world: |t| World {
            a: Some(t < 15.0),
            b: Some(t < 15.0),
            ..all_well()
        },
        until: 60.0,
        writes: &[
            (10.0, "health | dc-a healthy since 0, dc-b healthy since 0"),
            (
                25.0,
                "health | dc-a unhealthy since 15, dc-b unhealthy since 15",
            ),
        ],
        outages: &[(A, 15.0, None), (B, 15.0, None)],
        moves: &[],
    },
    Row {
        name: "no observation of dc-a after 19.5 s (prober stuck): no longer known at 30 s",
        world: |t| World {
            a: (t < 20.0).then_some(true),
            ..all_well()
        },
        until: 60.0,
        writes: &[
            (10.0, "health | dc-a healthy since 0, dc-b healthy since 0"),
            (30.0, "health | dc-b healthy since 0"),
        ],
        outages: &[],
        moves: &[],
    },
    Row {
        name: "lease gained at 30 s after dc-a was lost at 15 s: the streak's start, not the \
               write's time",
        world: |t| World {
            a: Some(t < 15.0),
            leader: t >= 30.0,
            ..all_well()
        },
        until: 60.0,
        writes: &[
            (
                30.0,
                "fail over from dc-a to dc-b | dc-a unhealthy since 15, dc-b healthy since 0",
            ),
            (
                30.5,
                "complete the move of epoch 2 | dc-a unhealthy since 15, dc-b healthy since 0",
            ),
        ],
        outages: &[(A, 15.0, None)],
        moves: &[(A, B, 30.0, 30.5)],
    },
];

#[test]
fn the_health_view_table() {
    let mut failures = Vec::new();
    for row in ROWS {
        let run = simulate(row);
        let expected: Vec<(f64, String)> = row
            .writes
            .iter()
            .map(|(t, w)| (*t, (*w).to_owned()))
            .collect();
        let outages: Vec<(&str, f64, Option<f64>)> = run
            .state
            .outages
            .iter()
            .map(|o| {
                (
                    o.datacenter.as_str(),
                    secs(o.started_unix_ms),
                    o.ended_unix_ms.map(secs),
                )
            })
            .collect();
        let moves: Vec<(&str, &str, f64, f64)> = run
            .state
            .moves
            .iter()
            .map(|m| {
                (
                    m.from.as_str(),
                    m.to.as_str(),
                    secs(m.started_unix_ms),
                    secs(m.completed_unix_ms),
                )
            })
            .collect();
        if run.writes != expected || outages != row.outages || moves != row.moves {
            failures.push(format!(
                "{}:\n  expected {expected:?}\n  got      {:?}\n  outages  {outages:?} \
                 (expected {:?})\n  moves    {moves:?} (expected {:?})",
                row.name, run.writes, row.outages, row.moves
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
