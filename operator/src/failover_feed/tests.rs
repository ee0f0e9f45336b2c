//! `snapshot_from_state` as a table: each row a stored failover state and the snapshot the
//! reconciler must get from it.

use failover::state::{
    CompletedMove, DatacenterHealth, FailedDatacenter, MoveReason, Outage as StoredOutage, Phase,
};

use super::*;
use crate::fixtures::t;

fn ms(rfc3339: &str) -> i64 {
    t(rfc3339).as_millisecond()
}

/// dc-a active and stable, nothing known: what a first leader writes.
fn stable() -> FailoverState {
    FailoverState {
        active: "dc-a".into(),
        epoch: 1,
        phase: Phase::Stable,
        failed: Vec::new(),
        history: Vec::new(),
        writer: "c1".into(),
        fencing_revision: 7,
        written_at_unix_ms: ms("2026-11-29T10:00:00Z"),
        writes: 1,
        health: Vec::new(),
        moves: Vec::new(),
        outages: Vec::new(),
    }
}

fn nothing_known(active: &str) -> FailoverSnapshot {
    FailoverSnapshot {
        active_datacenter: active.into(),
        datacenters: Vec::new(),
        history: Vec::new(),
        running: None,
        outages: Vec::new(),
    }
}

fn health(datacenter: &str, healthy: bool, since: &str) -> DatacenterHealth {
    DatacenterHealth {
        datacenter: datacenter.into(),
        healthy,
        since_unix_ms: ms(since),
    }
}

fn dc(name: &str, healthy: bool, since: &str) -> DatacenterState {
    DatacenterState {
        name: name.into(),
        healthy,
        since: t(since),
    }
}

fn stored_move(
    from: &str,
    to: &str,
    reason: MoveReason,
    started: &str,
    done: &str,
) -> CompletedMove {
    CompletedMove {
        from: from.into(),
        to: to.into(),
        reason,
        epoch: 2,
        started_unix_ms: ms(started),
        completed_unix_ms: ms(done),
    }
}

fn completed(from: &str, to: &str, reason: &str, started: &str, done: &str) -> CompletedFailover {
    CompletedFailover {
        from: from.into(),
        to: to.into(),
        reason: reason.into(),
        started_at: t(started),
        completed_at: t(done),
    }
}

#[test]
fn the_conversion_table() {
    type Row = (&'static str, FailoverState, FailoverSnapshot);
    let rows: Vec<Row> = vec![
        (
            "stable, no health view yet",
            stable(),
            nothing_known("dc-a"),
        ),
        (
            "the health view, each datacenter with its state and since when",
            FailoverState {
                health: vec![
                    health("dc-a", true, "2026-11-29T09:00:00Z"),
                    health("dc-b", false, "2026-11-29T10:59:58.250Z"),
                ],
                ..stable()
            },
            FailoverSnapshot {
                datacenters: vec![
                    dc("dc-a", true, "2026-11-29T09:00:00Z"),
                    dc("dc-b", false, "2026-11-29T10:59:58.250Z"),
                ],
                ..nothing_known("dc-a")
            },
        ),
        (
            "a failover running: from the old active to the new one, since its start",
            FailoverState {
                active: "dc-b".into(),
                epoch: 2,
                phase: Phase::Moving {
                    from: "dc-a".into(),
                    reason: MoveReason::DatacenterLost,
                    since_unix_ms: ms("2026-11-29T11:00:10Z"),
                },
                failed: vec![FailedDatacenter {
                    datacenter: "dc-a".into(),
                    since_unix_ms: ms("2026-11-29T11:00:10Z"),
                }],
                health: vec![
                    health("dc-a", false, "2026-11-29T11:00:00Z"),
                    health("dc-b", true, "2026-11-29T09:00:00Z"),
                ],
                outages: vec![StoredOutage {
                    datacenter: "dc-a".into(),
                    started_unix_ms: ms("2026-11-29T11:00:00Z"),
                    ended_unix_ms: None,
                }],
                ..stable()
            },
            FailoverSnapshot {
                active_datacenter: "dc-b".into(),
                datacenters: vec![
                    dc("dc-a", false, "2026-11-29T11:00:00Z"),
                    dc("dc-b", true, "2026-11-29T09:00:00Z"),
                ],
                history: Vec::new(),
                running: Some(RunningFailover {
                    from: "dc-a".into(),
                    to: "dc-b".into(),
                    reason: "DatacenterLost".into(),
                    started_at: t("2026-11-29T11:00:10Z"),
                }),
                outages: vec![Outage {
                    datacenter: "dc-a".into(),
                    started_at: t("2026-11-29T11:00:00Z"),
                    ended_at: None,
                }],
            },
        ),
        (
            "a failback running, on request",
            FailoverState {
                phase: Phase::Moving {
                    from: "dc-b".into(),
                    reason: MoveReason::FailbackRequested,
                    since_unix_ms: ms("2026-11-29T12:00:00Z"),
                },
                ..stable()
            },
            FailoverSnapshot {
                running: Some(RunningFailover {
                    from: "dc-b".into(),
                    to: "dc-a".into(),
                    reason: "FailbackRequested".into(),
                    started_at: t("2026-11-29T12:00:00Z"),
                }),
                ..nothing_known("dc-a")
            },
        ),
        (
            "completed moves, oldest first, each reason by its name",
            FailoverState {
                moves: vec![
                    stored_move(
                        "dc-a",
                        "dc-b",
                        MoveReason::DatacenterLost,
                        "2026-11-29T11:00:10Z",
                        "2026-11-29T11:00:10.500Z",
                    ),
                    stored_move(
                        "dc-b",
                        "dc-a",
                        MoveReason::FailbackRequested,
                        "2026-11-29T12:00:00Z",
                        "2026-11-29T12:00:00.500Z",
                    ),
                    stored_move(
                        "dc-a",
                        "dc-b",
                        MoveReason::FailbackAutomatic,
                        "2026-11-29T13:00:00Z",
                        "2026-11-29T13:00:01Z",
                    ),
                ],
                ..stable()
            },
            FailoverSnapshot {
                history: vec![
                    completed(
                        "dc-a",
                        "dc-b",
                        "DatacenterLost",
                        "2026-11-29T11:00:10Z",
                        "2026-11-29T11:00:10.500Z",
                    ),
                    completed(
                        "dc-b",
                        "dc-a",
                        "FailbackRequested",
                        "2026-11-29T12:00:00Z",
                        "2026-11-29T12:00:00.500Z",
                    ),
                    completed(
                        "dc-a",
                        "dc-b",
                        "FailbackAutomatic",
                        "2026-11-29T13:00:00Z",
                        "2026-11-29T13:00:01Z",
                    ),
                ],
                ..nothing_known("dc-a")
            },
        ),
        (
            "outages: an ended one and an open one",
            FailoverState {
                outages: vec![
                    StoredOutage {
                        datacenter: "dc-b".into(),
                        started_unix_ms: ms("2026-11-29T08:00:00Z"),
                        ended_unix_ms: Some(ms("2026-11-29T08:20:00Z")),
                    },
                    StoredOutage {
                        datacenter: "dc-a".into(),
                        started_unix_ms: ms("2026-11-29T11:00:00Z"),
                        ended_unix_ms: None,
                    },
                ],
                ..stable()
            },
            FailoverSnapshot {
                outages: vec![
                    Outage {
                        datacenter: "dc-b".into(),
                        started_at: t("2026-11-29T08:00:00Z"),
                        ended_at: Some(t("2026-11-29T08:20:00Z")),
                    },
                    Outage {
                        datacenter: "dc-a".into(),
                        started_at: t("2026-11-29T11:00:00Z"),
                        ended_at: None,
                    },
                ],
                ..nothing_known("dc-a")
            },
        ),
        (
            "a datacenter marked failed that the view does not know: unhealthy since the mark; \
             one the view knows: the view's",
            FailoverState {
                failed: vec![
                    FailedDatacenter {
                        datacenter: "dc-b".into(),
                        since_unix_ms: ms("2026-11-29T11:00:10Z"),
                    },
                    FailedDatacenter {
                        datacenter: "dc-c".into(),
                        since_unix_ms: ms("2026-11-29T11:00:20Z"),
                    },
                ],
                health: vec![health("dc-c", true, "2026-11-29T11:00:15Z")],
                ..stable()
            },
            FailoverSnapshot {
                datacenters: vec![
                    dc("dc-c", true, "2026-11-29T11:00:15Z"),
                    dc("dc-b", false, "2026-11-29T11:00:10Z"),
                ],
                ..nothing_known("dc-a")
            },
        ),
        (
            "a time out of range reads as the epoch",
            FailoverState {
                health: vec![DatacenterHealth {
                    datacenter: "dc-a".into(),
                    healthy: true,
                    since_unix_ms: i64::MAX,
                }],
                ..stable()
            },
            FailoverSnapshot {
                datacenters: vec![DatacenterState {
                    name: "dc-a".into(),
                    healthy: true,
                    since: Timestamp::UNIX_EPOCH,
                }],
                ..nothing_known("dc-a")
            },
        ),
    ];
    let mut failures = Vec::new();
    for (name, state, expected) in rows {
        let got = snapshot_from_state(&state);
        if got != expected {
            failures.push(format!(
                "{name}:\n  expected {expected:#?}\n  got      {got:#?}"
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn the_feed_hands_the_latest_snapshot_to_every_cluster_and_signals_each_state() {
    use futures::FutureExt as _;

    let feed = StateFeed::new();
    assert_eq!(feed.snapshot("calanque", "city"), None);
    let mut changes = Box::pin(feed.changes());
    assert!(changes.next().now_or_never().is_none(), "no change yet");
    let state = FailoverState {
        active: "dc-b".into(),
        ..stable()
    };
    feed.publish(&state);
    assert_eq!(changes.next().now_or_never(), Some(Some(())));
    let expected = snapshot_from_state(&state);
    assert_eq!(feed.snapshot("calanque", "city"), Some(expected.clone()));
    assert_eq!(feed.snapshot("other", "town"), Some(expected));
}
