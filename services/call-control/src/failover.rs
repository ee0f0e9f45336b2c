//! What call-control does when a datacenter is lost or a media relay dies (ADR 0020), as pure
//! functions: which datacenters the failover controller marked failed ([`FailoverFollower`]),
//! and for each stored call whether this replica must take it and what moving it involves
//! ([`plan_repair`]). The service does the I/O: it reads the calls from the store, claims each
//! call with a compare-and-swap on its keys, points its legs at flows through surviving edges,
//! and sends new offers when its relay is gone.

use std::collections::BTreeSet;

use proto::v1::{FailoverState, Flow};

use crate::b2bua::EstablishedCall;

/// The datacenters the failover controller marks failed, from the states it announces (on
/// the bus every few seconds, and in the store for a replica that starts late).
#[derive(Debug, Default)]
pub struct FailoverFollower {
    /// The writes counter of the newest state seen: an older one (a late bus message, or the
    /// store read racing the bus) is ignored.
    writes: u64,
    failed: BTreeSet<String>,
}

impl FailoverFollower {
    /// A state; returns the datacenters it newly marks failed (empty for a stale or unchanged
    /// state). A datacenter marked recovered is forgotten, so a second loss acts again.
    pub fn observe(&mut self, state: &FailoverState) -> Vec<String> {
        if state.writes < self.writes {
            return Vec::new();
        }
        self.writes = state.writes;
        let failed: BTreeSet<String> = state.failed.iter().map(|f| f.datacenter.clone()).collect();
        let newly = failed.difference(&self.failed).cloned().collect();
        self.failed = failed;
        newly
    }

    /// The datacenters marked failed now.
    pub fn failed(&self) -> &BTreeSet<String> {
        &self.failed
    }
}

/// Who this replica is.
#[derive(Debug, Clone)]
pub struct Me<'a> {
    pub instance: &'a str,
    /// Empty: not configured (single datacenter); such a replica moves only its own calls'
    /// media when a relay dies.
    pub datacenter: &'a str,
}

/// What moving one stored call takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repair {
    /// The call's owner is in a failed datacenter: take it over (compare-and-swap, so that one
    /// replica of the survivors does).
    pub take_over: bool,
    /// The caller's, the callee's flow goes through an edge of a failed datacenter: find the
    /// phone's binding through a surviving edge.
    pub move_caller: bool,
    pub move_callee: bool,
    /// The relay session died with its replica or its datacenter: new session, new offers.
    pub reanchor: bool,
}

/// Whether a flow goes through an edge of a failed datacenter.
fn lost(flow: Option<&Flow>, failed: &BTreeSet<String>) -> bool {
    flow.is_some_and(|f| !f.datacenter.is_empty() && failed.contains(&f.datacenter))
}

/// What this replica must do about a stored call, given the failed datacenters and which
/// media replicas are dead; None when the call is not this replica's to move (its owner is
/// alive elsewhere, or this replica is itself in a failed datacenter) or needs nothing.
pub fn plan_repair(
    call: &EstablishedCall,
    me: &Me<'_>,
    failed: &BTreeSet<String>,
    media_dead: impl Fn(&str) -> bool,
) -> Option<Repair> {
    if failed.contains(me.datacenter) {
        return None; // the survivors act; a replica cut off with its datacenter does not
    }
    let owner_lost = !call.owner_datacenter.is_empty() && failed.contains(&call.owner_datacenter);
    if !owner_lost && call.owner_instance != me.instance {
        return None; // its owner is alive: it moves the call itself
    }
    let relayed = call.media_session != 0;
    // A relay whose datacenter nobody knew (the owner wrote the snapshot before hearing its
    // first heartbeat, and this replica never heard it either) is taken for lost with an owner
    // lost: relays are allocated near their owner, and a new session costs a re-INVITE, while
    // a dead one leaves the call silent for good (the moves test caught it on a loaded machine).
    let relay_lost = if call.media_datacenter.is_empty() {
        owner_lost
    } else {
        failed.contains(&call.media_datacenter)
    };
    let repair = Repair {
        take_over: owner_lost,
        move_caller: lost(call.caller_flow.as_ref(), failed),
        move_callee: lost(call.callee_flow.as_ref(), failed),
        reanchor: relayed && (relay_lost || media_dead(&call.media_owner)),
    };
    (repair.take_over || repair.move_caller || repair.move_callee || repair.reanchor)
        .then_some(repair)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::v1::FailedDatacenter;

    fn state(writes: u64, failed: &[&str]) -> FailoverState {
        FailoverState {
            writes,
            failed: failed
                .iter()
                .map(|dc| FailedDatacenter {
                    datacenter: (*dc).to_owned(),
                    since_unix_ms: 1,
                })
                .collect(),
            ..FailoverState::default()
        }
    }

    #[test]
    fn the_follower_reports_each_loss_once_and_ignores_older_states() {
        let mut follower = FailoverFollower::default();
        assert!(follower.observe(&state(1, &[])).is_empty());
        assert_eq!(follower.observe(&state(2, &["dc-a"])), vec!["dc-a"]);
        assert!(follower.observe(&state(3, &["dc-a"])).is_empty(), "once");
        assert!(follower.observe(&state(2, &[])).is_empty(), "stale");
        assert!(
            follower.failed().contains("dc-a"),
            "a stale state changes nothing"
        );
        assert!(follower.observe(&state(4, &[])).is_empty(), "recovered");
        assert_eq!(
            follower.observe(&state(5, &["dc-a"])),
            vec!["dc-a"],
            "lost again"
        );
    }

    fn flow(dc: &str) -> Option<Flow> {
        Some(Flow {
            datacenter: dc.to_owned(),
            ..Flow::default()
        })
    }

    /// A relayed call owned by cc-a1 in dc-a, both phones on dc-a's edges, relayed by m-a1.
    fn call() -> EstablishedCall {
        EstablishedCall {
            owner_instance: "cc-a1".into(),
            owner_datacenter: "dc-a".into(),
            caller_flow: flow("dc-a"),
            callee_flow: flow("dc-a"),
            media_session: 7,
            media_owner: "m-a1".into(),
            media_datacenter: "dc-a".into(),
            ..EstablishedCall::default()
        }
    }

    const CC_B: Me<'static> = Me {
        instance: "cc-b1",
        datacenter: "dc-b",
    };
    const CC_A: Me<'static> = Me {
        instance: "cc-a1",
        datacenter: "dc-a",
    };

    fn failed(dcs: &[&str]) -> BTreeSet<String> {
        dcs.iter().map(|d| (*d).to_owned()).collect()
    }

    /// A row: name, the stored call, the replica judging, the failed datacenters, whether the
    /// call's relay replica is dead, the plan expected.
    type Row<'a> = (
        &'a str,
        &'a EstablishedCall,
        Me<'a>,
        BTreeSet<String>,
        bool,
        Option<Repair>,
    );

    #[test]
    fn the_table() {
        let all = Repair {
            take_over: true,
            move_caller: true,
            move_callee: true,
            reanchor: true,
        };
        let base = call();
        let mut direct = call();
        direct.media_session = 0;
        let mut callee_on_b = call();
        callee_on_b.callee_flow = flow("dc-b");
        let mut owned_by_b = call();
        owned_by_b.owner_instance = "cc-b1".into();
        owned_by_b.owner_datacenter = "dc-b".into();
        let mut owned_by_b2 = owned_by_b.clone();
        owned_by_b2.owner_instance = "cc-b2".into();
        let mut relay_unknown = call();
        relay_unknown.media_datacenter.clear();
        let mut mine_relay_unknown = owned_by_b.clone();
        mine_relay_unknown.media_datacenter.clear();
        let rows: Vec<Row<'_>> = vec![
            (
                "dc-a lost, the relay's datacenter never known: taken for lost with its owner",
                &relay_unknown,
                CC_B,
                failed(&["dc-a"]),
                false,
                Some(all),
            ),
            (
                "dc-a lost, my call's relay of unknown datacenter alive: legs move, it stays",
                &mine_relay_unknown,
                CC_B,
                failed(&["dc-a"]),
                false,
                Some(Repair {
                    take_over: false,
                    reanchor: false,
                    ..all
                }),
            ),
            ("all healthy", &base, CC_B, failed(&[]), false, None),
            (
                "dc-a lost: everything moves",
                &base,
                CC_B,
                failed(&["dc-a"]),
                false,
                Some(all),
            ),
            (
                "direct media: no new offers",
                &direct,
                CC_B,
                failed(&["dc-a"]),
                false,
                Some(Repair {
                    reanchor: false,
                    ..all
                }),
            ),
            (
                "the callee is on dc-b already",
                &callee_on_b,
                CC_B,
                failed(&["dc-a"]),
                false,
                Some(Repair {
                    move_callee: false,
                    ..all
                }),
            ),
            (
                "a replica in the failed datacenter does nothing",
                &base,
                CC_A,
                failed(&["dc-a"]),
                false,
                None,
            ),
            (
                "dc-b lost: nothing of this call is there",
                &base,
                CC_A,
                failed(&["dc-b"]),
                false,
                None,
            ),
            (
                "my call's relay died (no datacenter lost)",
                &owned_by_b,
                CC_B,
                failed(&[]),
                true,
                Some(Repair {
                    take_over: false,
                    move_caller: false,
                    move_callee: false,
                    reanchor: true,
                }),
            ),
            (
                "another live replica's call: it moves it",
                &owned_by_b2,
                CC_B,
                failed(&[]),
                true,
                None,
            ),
            (
                "my call, its relay in dc-a lost, phones on dc-a's edges",
                &owned_by_b,
                CC_B,
                failed(&["dc-a"]),
                false,
                Some(Repair {
                    take_over: false,
                    ..all
                }),
            ),
            (
                "an unconfigured datacenter moves its own calls' media",
                &owned_by_b,
                Me {
                    instance: "cc-b1",
                    datacenter: "",
                },
                failed(&[]),
                true,
                Some(Repair {
                    take_over: false,
                    move_caller: false,
                    move_callee: false,
                    reanchor: true,
                }),
            ),
        ];
        for (name, call, me, failed, media_dead, want) in rows {
            let got = plan_repair(call, &me, &failed, |id| {
                media_dead && id == call.media_owner
            });
            assert_eq!(got, want, "{name}");
        }
    }
}
