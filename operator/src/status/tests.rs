use super::*;
use crate::failover_view::{CompletedFailover, DatacenterState, Outage, RunningFailover};
use crate::fixtures::{cluster, dc_a_lost_snapshot, healthy_snapshot, t};
use crate::resource::{ErrorBudget, FailoverRecord};

/// Every Deployment of the example, `ready` of each (`None`: as many as desired).
fn workloads(short: &[(&str, i32)]) -> Vec<WorkloadObservation> {
    let mut all = Vec::new();
    for dc in ["dc-a", "dc-b"] {
        for component in Component::ALL {
            let name = format!("city-{dc}-{}", component.name());
            let desired = if component == Component::Directory {
                1
            } else {
                2
            };
            let ready = short
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(desired, |(_, r)| *r);
            all.push(WorkloadObservation {
                name,
                datacenter: dc.to_owned(),
                component,
                desired,
                ready,
            });
        }
    }
    all
}

fn health(a: Option<bool>, b: Option<bool>) -> Vec<DatacenterState> {
    [("dc-a", a), ("dc-b", b)]
        .into_iter()
        .filter_map(|(name, healthy)| {
            Some(DatacenterState {
                name: name.into(),
                healthy: healthy?,
                since: t("2026-11-29T11:00:00Z"),
            })
        })
        .collect()
}

fn running(to: &str) -> Option<RunningFailover> {
    Some(RunningFailover {
        from: if to == "dc-b" { "dc-a" } else { "dc-b" }.into(),
        to: to.into(),
        reason: "DatacenterLost".into(),
        started_at: t("2026-11-29T11:00:00Z"),
    })
}

type Expect = (bool, &'static str);

/// (what, health of dc-a/dc-b, active, running failover, short workloads,
///  Ready, Degraded, FailoverInProgress).
#[test]
fn conditions_table() {
    #[allow(clippy::type_complexity)]
    let cases: Vec<(
        &str,
        (Option<bool>, Option<bool>),
        &str,
        Option<RunningFailover>,
        Vec<(&str, i32)>,
        Expect,
        Expect,
        Expect,
    )> = vec![
        (
            "all healthy",
            (Some(true), Some(true)),
            "dc-a",
            None,
            vec![],
            (true, "AllDatacentersHealthy"),
            (false, "AllDatacentersHealthy"),
            (false, "Stable"),
        ),
        (
            "health unknown, pods ready",
            (None, None),
            "dc-a",
            None,
            vec![],
            (true, "AllDatacentersHealthy"),
            (false, "AllDatacentersHealthy"),
            (false, "Stable"),
        ),
        (
            "one edge of two not ready",
            (Some(true), Some(true)),
            "dc-a",
            None,
            vec![("city-dc-b-edge", 1)],
            (true, "ServingDegraded"),
            (true, "WorkloadsNotReady"),
            (false, "Stable"),
        ),
        (
            "no directory ready in the active datacenter",
            (Some(true), Some(true)),
            "dc-a",
            None,
            vec![("city-dc-a-directory", 0)],
            (false, "ActiveDatacenterNotReady"),
            (true, "WorkloadsNotReady"),
            (false, "Stable"),
        ),
        (
            "no directory ready in the other datacenter",
            (Some(true), Some(true)),
            "dc-a",
            None,
            vec![("city-dc-b-directory", 0)],
            (true, "ServingDegraded"),
            (true, "WorkloadsNotReady"),
            (false, "Stable"),
        ),
        (
            "dc-a lost, failover to dc-b running",
            (Some(false), Some(true)),
            "dc-b",
            running("dc-b"),
            vec![("city-dc-a-edge", 0)],
            (false, "FailoverInProgress"),
            (true, "DatacenterLost"),
            (true, "FailingOver"),
        ),
        (
            "dc-a lost, failover done",
            (Some(false), Some(true)),
            "dc-b",
            None,
            vec![("city-dc-a-edge", 0), ("city-dc-a-media", 0)],
            (true, "ServingDegraded"),
            (true, "DatacenterLost"),
            (false, "Stable"),
        ),
        (
            "the active datacenter lost, no failover yet",
            (Some(false), Some(true)),
            "dc-a",
            None,
            vec![],
            (false, "ActiveDatacenterNotReady"),
            (true, "DatacenterLost"),
            (false, "Stable"),
        ),
        (
            "both lost",
            (Some(false), Some(false)),
            "dc-b",
            None,
            vec![],
            (false, "NoDatacenterServing"),
            (true, "NoDatacenterServing"),
            (false, "Stable"),
        ),
        (
            "failback running with both healthy",
            (Some(true), Some(true)),
            "dc-a",
            running("dc-a"),
            vec![],
            (false, "FailoverInProgress"),
            (false, "AllDatacentersHealthy"),
            (true, "FailingOver"),
        ),
    ];
    let cluster = cluster();
    for (what, (a, b), active, running, short, ready, degraded, failover) in cases {
        let snapshot = FailoverSnapshot {
            active_datacenter: active.into(),
            datacenters: health(a, b),
            history: vec![],
            running,
            outages: vec![],
        };
        let [r, d, f] = conditions(&cluster, &workloads(&short), &snapshot);
        assert_eq!(
            (r.type_, d.type_, f.type_),
            (READY, DEGRADED, FAILOVER_IN_PROGRESS)
        );
        assert_eq!((r.status, r.reason), ready, "{what}: Ready ({})", r.message);
        assert_eq!(
            (d.status, d.reason),
            degraded,
            "{what}: Degraded ({})",
            d.message
        );
        assert_eq!(
            (f.status, f.reason),
            failover,
            "{what}: FailoverInProgress ({})",
            f.message
        );
        for c in [&r, &d, &f] {
            assert!(!c.message.is_empty(), "{what}: {} has a message", c.type_);
        }
    }
}

#[test]
fn messages_name_what_is_wrong() {
    let cluster = cluster();
    let [ready, degraded, failover] = conditions(&cluster, &workloads(&[]), &healthy_snapshot());
    assert_eq!(
        ready.message,
        "dc-a and dc-b serve; dc-a holds the singleton roles"
    );
    assert_eq!(failover.message, "dc-a holds the singleton roles");
    assert_eq!(degraded.message, "every datacenter and workload is healthy");

    let [ready, degraded, failover] = conditions(
        &cluster,
        &workloads(&[("city-dc-a-edge", 0), ("city-dc-b-media", 1)]),
        &dc_a_lost_snapshot(),
    );
    assert_eq!(ready.message, "the singleton roles are moving to dc-b");
    assert_eq!(
        degraded.message,
        "dc-a unhealthy since 2026-11-29T11:00:00Z; dc-b serves alone; \
         city-dc-a-edge 0/2 ready, city-dc-b-media 1/2 ready"
    );
    assert_eq!(
        failover.message,
        "moving the singleton roles from dc-a to dc-b (DatacenterLost) since 2026-11-29T11:00:00Z"
    );
}

#[test]
fn transition_times_move_only_when_a_status_changes() {
    let mut cluster = cluster();
    let first = build_status(
        &cluster,
        &workloads(&[]),
        &healthy_snapshot(),
        t("2026-11-29T10:00:00Z"),
    );
    cluster.status = Some(first.clone());
    let again = build_status(
        &cluster,
        &workloads(&[]),
        &healthy_snapshot(),
        t("2026-11-29T10:05:00Z"),
    );
    assert_eq!(
        first.conditions, again.conditions,
        "nothing changed, nothing moves"
    );
    assert!(!needs_write(Some(&first), &again));

    let lost = build_status(
        &cluster,
        &workloads(&[]),
        &dc_a_lost_snapshot(),
        t("2026-11-29T11:00:05Z"),
    );
    let time_of = |status: &PbxClusterStatus, type_: &str| {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .map(|c| c.last_transition_time.clone())
            .unwrap()
    };
    for type_ in [READY, DEGRADED, FAILOVER_IN_PROGRESS] {
        assert_eq!(
            time_of(&lost, type_),
            Time(t("2026-11-29T11:00:05Z")),
            "{type_} flipped"
        );
    }
    for c in &lost.conditions {
        assert_eq!(c.observed_generation, Some(3));
    }
}

#[test]
fn the_status_reflects_the_snapshot_and_the_budget() {
    let cluster = cluster();
    let mut snapshot = dc_a_lost_snapshot();
    snapshot.history.push(CompletedFailover {
        from: "dc-b".into(),
        to: "dc-a".into(),
        reason: "Failback".into(),
        started_at: t("2026-06-01T10:00:00Z"),
        completed_at: t("2026-06-01T10:00:04Z"),
    });
    let status = build_status(
        &cluster,
        &workloads(&[]),
        &snapshot,
        t("2026-11-29T11:00:07Z"),
    );
    assert_eq!(status.observed_generation, Some(3));
    assert_eq!(status.active_datacenter.as_deref(), Some("dc-b"));
    assert_eq!(status.datacenters.len(), 2);
    assert!(!status.datacenters[0].healthy);
    assert_eq!(
        status.failovers,
        [
            FailoverRecord {
                from: "dc-b".into(),
                to: "dc-a".into(),
                reason: "Failback".into(),
                started_at: Time(t("2026-06-01T10:00:00Z")),
                completed_at: Some(Time(t("2026-06-01T10:00:04Z"))),
            },
            FailoverRecord {
                from: "dc-a".into(),
                to: "dc-b".into(),
                reason: "DatacenterLost".into(),
                started_at: Time(t("2026-11-29T11:00:00Z")),
                completed_at: None,
            },
        ]
    );
    assert_eq!(status.outages.len(), 1);
    assert_eq!(
        status.error_budget,
        Some(ErrorBudget {
            objective: "99.977".into(),
            period_start: Time(t("2026-01-01T00:00:00Z")),
            allowed_seconds: 7253,
            spent_seconds: 11, // 4 s of failback + 7 s of the running failover
            remaining_ratio: "0.9985".into(),
        })
    );
}

#[test]
fn history_keeps_the_newest_fifty() {
    let cluster = cluster();
    let mut snapshot = healthy_snapshot();
    for i in 0..60 {
        let start = t("2026-01-01T00:00:00Z").as_second() + i * 3600;
        snapshot.history.push(CompletedFailover {
            from: "dc-a".into(),
            to: "dc-b".into(),
            reason: format!("n{i}"),
            started_at: k8s_openapi::jiff::Timestamp::from_second(start).unwrap(),
            completed_at: k8s_openapi::jiff::Timestamp::from_second(start + 1).unwrap(),
        });
        snapshot.outages.push(Outage {
            datacenter: "dc-a".into(),
            started_at: k8s_openapi::jiff::Timestamp::from_second(start).unwrap(),
            ended_at: None,
        });
    }
    let status = build_status(
        &cluster,
        &workloads(&[]),
        &snapshot,
        t("2026-06-01T00:00:00Z"),
    );
    assert_eq!(status.failovers.len(), 50);
    assert_eq!(status.failovers[0].reason, "n10");
    assert_eq!(status.failovers[49].reason, "n59");
    assert_eq!(status.outages.len(), 50);
    // The budget counts every failover, not only the kept ones.
    assert_eq!(status.error_budget.unwrap().spent_seconds, 60);
}

#[test]
fn an_invalid_spec_says_why_and_keeps_the_history() {
    let mut cluster = cluster();
    let recorded = build_status(
        &cluster,
        &workloads(&[]),
        &dc_a_lost_snapshot(),
        t("2026-11-29T11:00:05Z"),
    );
    cluster.status = Some(recorded.clone());
    let status = invalid_status(
        &cluster,
        "exactly two datacenters must have role serving, found 1",
        t("2026-11-29T12:00:00Z"),
    );
    let ready = &status.conditions[0];
    assert_eq!(
        (
            ready.type_.as_str(),
            ready.status.as_str(),
            ready.reason.as_str()
        ),
        (READY, "False", "InvalidSpec")
    );
    assert_eq!(
        ready.message,
        "exactly two datacenters must have role serving, found 1"
    );
    assert_eq!(
        ready.last_transition_time, recorded.conditions[0].last_transition_time,
        "Ready was already False"
    );
    assert_eq!(status.conditions.len(), 3);
    assert_eq!(status.failovers, recorded.failovers);
    assert_eq!(status.error_budget, recorded.error_budget);
}

/// (what, change, must write).
#[test]
fn status_writes_are_coalesced_while_only_spent_time_grows() {
    let mut cluster = cluster();
    let base = build_status(
        &cluster,
        &workloads(&[]),
        &dc_a_lost_snapshot(),
        t("2026-11-29T11:00:05Z"),
    );
    cluster.status = Some(base.clone());
    let at = |now: &str| build_status(&cluster, &workloads(&[]), &dc_a_lost_snapshot(), t(now));
    assert!(needs_write(None, &base), "first write");
    assert!(
        !needs_write(Some(&base), &at("2026-11-29T11:00:30Z")),
        "25 s more spent"
    );
    assert!(
        needs_write(Some(&base), &at("2026-11-29T11:01:05Z")),
        "60 s more spent"
    );
    let mut done = dc_a_lost_snapshot();
    let running = done.running.take().unwrap();
    done.history.push(CompletedFailover {
        from: running.from,
        to: running.to,
        reason: running.reason,
        started_at: running.started_at,
        completed_at: t("2026-11-29T11:00:07Z"),
    });
    let completed = build_status(&cluster, &workloads(&[]), &done, t("2026-11-29T11:00:08Z"));
    assert!(
        needs_write(Some(&base), &completed),
        "the failover completed"
    );
    cluster.status = None;
    let this_year = build_status(
        &cluster,
        &workloads(&[]),
        &healthy_snapshot(),
        t("2026-12-31T23:59:59Z"),
    );
    cluster.status = Some(this_year.clone());
    let next_year = build_status(
        &cluster,
        &workloads(&[]),
        &healthy_snapshot(),
        t("2027-01-01T00:00:01Z"),
    );
    assert_eq!(this_year.conditions, next_year.conditions);
    assert!(needs_write(Some(&this_year), &next_year), "a new period");
}
