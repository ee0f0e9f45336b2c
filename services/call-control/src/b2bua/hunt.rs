//! Hunt groups: which members ring when (ADR 0016). [`stages`] is a pure function from a
//! group's strategy, its members (in directory order, with their registered contacts) and what
//! this replica remembers of the group's earlier calls ([`HuntState`]) to the [`Stage`]s the
//! core rings one after the other. The service keeps one `HuntState` and feeds it what the
//! core reports: an answer (`Action::Persist`) and an end (`Action::Ended`).
//!
//! # Per replica
//!
//! The state lives in one call-control replica's memory: it is not shared over the store or
//! the bus yet, and it starts empty when the replica starts. With two replicas the queue group
//! spreads a group's calls between them, and each hunts on what it saw itself:
//! - round-robin: each replica rotates on the calls it set up, so two calls in a row may start
//!   on the same member (one through each replica), and the spread is fair only over time;
//! - longest-idle: a member who has just finished a call through replica B still looks idle
//!   since its last call through replica A, and may be offered A's next call first.
//!
//! Linear and simultaneous groups need no state and behave the same on every replica.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use directory::model::HuntStrategy;

use super::{LegTarget, Stage};

/// Calls tracked at most (each ends and is forgotten, but a bug must not grow memory).
const MAX_TRACKED_CALLS: usize = 200_000;

/// A hunt group member as the hunt sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberContacts {
    /// The member's extension number.
    pub number: String,
    /// The registered contacts of the extension's devices, rung together when the member
    /// rings. Empty: the member is registered nowhere and is skipped.
    pub targets: Vec<LegTarget>,
}

/// The stages of a call to hunt group `group`: who rings when. Members without a contact are
/// skipped; no member with one gives no stage (the core answers 480).
///
/// - simultaneous: one stage with every member, for `ring_time`;
/// - linear: one member per stage, in directory order, `ring_time` each;
/// - round-robin: like linear, starting after the member who answered the group's previous
///   call through this replica (wrapping; from the first member when none has);
/// - longest-idle: one member per stage, the member whose last call through this replica
///   ended the longest ago first; members with no call yet come before any other (in
///   directory order, which also breaks ties).
///
/// The call's ring timeout still bounds the whole hunt: members whose stage would start after
/// it never ring.
pub fn stages(
    group: &str,
    strategy: HuntStrategy,
    members: &[MemberContacts],
    ring_time: Duration,
    state: &HuntState,
) -> Vec<Stage> {
    let stage = |targets: Vec<LegTarget>| Stage {
        targets,
        timeout: Some(ring_time),
    };
    let order: Vec<usize> = match strategy {
        HuntStrategy::Simultaneous => {
            let everyone: Vec<LegTarget> = members
                .iter()
                .flat_map(|m| m.targets.iter().cloned())
                .collect();
            return if everyone.is_empty() {
                Vec::new()
            } else {
                vec![stage(everyone)]
            };
        }
        HuntStrategy::Linear => (0..members.len()).collect(),
        HuntStrategy::RoundRobin => {
            let first = state.round_robin_start(group, members);
            (0..members.len())
                .map(|i| (first + i) % members.len())
                .collect()
        }
        HuntStrategy::LongestIdle => {
            let mut order: Vec<usize> = (0..members.len()).collect();
            // Stable: equal keys keep directory order; None (never called) sorts first.
            order.sort_by_key(|&i| state.last_call_end.get(&members[i].number).copied());
            order
        }
    };
    order
        .into_iter()
        .filter_map(|i| members.get(i))
        .filter(|m| !m.targets.is_empty())
        .map(|m| stage(m.targets.clone()))
        .collect()
}

/// The member who answered a group's last call.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answerer {
    /// Its position in the group then.
    index: usize,
    /// Its extension number.
    number: String,
}

/// A call in progress whose answer or end the state learns from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrackedCall {
    /// The hunt group called, if one was: its number and members, to find who answered.
    pub group: Option<(String, Vec<MemberContacts>)>,
    /// The extensions in the call from the start (the caller's, the extension called): their
    /// idle time restarts when an answered call ends.
    pub extensions: Vec<String>,
}

/// What one replica remembers for its hunt groups: the member who answered each group's last
/// call (round-robin) and when each extension's last answered call ended (longest-idle). Per
/// replica, in memory (see the module documentation). Times are the service's, passed in.
#[derive(Debug, Default)]
pub struct HuntState {
    last_answered: HashMap<String, Answerer>,
    last_call_end: HashMap<String, Instant>,
    /// Calls in progress, by the caller's Call-ID.
    calls: HashMap<String, TrackedCall>,
}

impl HuntState {
    /// Where a round-robin hunt of `group` starts: after the member who answered its last
    /// call; if that member left the group, at the position it had (now its successor's).
    fn round_robin_start(&self, group: &str, members: &[MemberContacts]) -> usize {
        if members.is_empty() {
            return 0;
        }
        match self.last_answered.get(group) {
            None => 0,
            Some(last) => match members.iter().position(|m| m.number == last.number) {
                Some(position) => (position + 1) % members.len(),
                None => last.index % members.len(),
            },
        }
    }

    /// Member `number`, at position `index` of `group`, answered a call of the group.
    pub fn answered(&mut self, group: &str, index: usize, number: &str) {
        self.last_answered.insert(
            group.to_owned(),
            Answerer {
                index,
                number: number.to_owned(),
            },
        );
    }

    /// An answered call of `extension` ended at `at`: its idle time starts.
    pub fn call_ended(&mut self, extension: &str, at: Instant) {
        self.last_call_end.insert(extension.to_owned(), at);
    }

    /// A new call (its caller's Call-ID) whose answer and end update the state.
    pub fn track(&mut self, call_id: &str, call: TrackedCall) {
        if call.group.is_none() && call.extensions.is_empty() {
            return;
        }
        if self.calls.len() >= MAX_TRACKED_CALLS && !self.calls.contains_key(call_id) {
            tracing::warn!(
                calls = self.calls.len(),
                "too many calls tracked for hunting"
            );
            return;
        }
        self.calls.insert(call_id.to_owned(), call);
    }

    /// A tracked call was answered by the contact registered for `callee_aor`: for a hunt
    /// group, the first member ringing that AOR answered (the group's next round-robin call
    /// starts after it) and is in the call from now on. Later answers (snapshots rewritten by
    /// session refreshes) change nothing.
    pub fn call_answered(&mut self, call_id: &str, callee_aor: &str) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        let Some((group, members)) = call.group.take() else {
            return;
        };
        let answerer = members
            .iter()
            .position(|m| m.targets.iter().any(|t| t.aor == callee_aor));
        if let Some(index) = answerer {
            let number = members[index].number.clone();
            if !call.extensions.contains(&number) {
                call.extensions.push(number.clone());
            }
            self.answered(&group, index, &number);
        }
    }

    /// A tracked call ended at `at`: if it was answered, the idle time of every extension in
    /// it starts now. The call is forgotten.
    pub fn call_finished(&mut self, call_id: &str, answered: bool, at: Instant) {
        let Some(call) = self.calls.remove(call_id) else {
            return;
        };
        if answered {
            for extension in &call.extensions {
                self.call_ended(extension, at);
            }
        }
    }

    /// Calls tracked now (for tests: none once every call ended).
    pub fn tracked_calls(&self) -> usize {
        self.calls.len()
    }
}
