//! The stored failover state (`calanque/v1/failover/state`, a `calanque.v1.FailoverState`):
//! the domain type checked out of the protobuf at the boundary, and the pure transitions from
//! one state to the next: for each planner action ([`FailoverState::next`]), and for a round's
//! action together with the leader's health view ([`judge_health`],
//! [`FailoverState::after_round`]). No I/O: the controller reads and writes the bytes.

use std::time::Duration;

use prost::Message as _;
use proto::v1;

use crate::planner::{Action, FailbackTrigger, Health};

/// Prefix of every key the failover controller owns.
pub const PREFIX: &str = "calanque/v1/failover/";
/// The leader key: the instance name, under the leader's lease. Its revision is the fence.
pub const LEADER_KEY: &str = "calanque/v1/failover/leader";
/// The state key: one `calanque.v1.FailoverState`.
pub const STATE_KEY: &str = "calanque/v1/failover/state";
/// A failback request: the datacenter's name. Written by an operator (the PbxCluster
/// reconciler from its `calanque.io/failback` annotation, or by hand); the controller deletes
/// it in the transaction that acts on it.
pub const FAILBACK_KEY: &str = "calanque/v1/failover/failback";
/// Events kept in the state's history, and completed moves and outages kept in their lists
/// (the PbxCluster status keeps as many).
pub const HISTORY_LIMIT: usize = 50;

/// Why the roles moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveReason {
    /// The active datacenter was unhealthy for the whole detection period.
    DatacenterLost,
    /// An operator asked for a failback.
    FailbackRequested,
    /// The primary was healthy for the failback period and automatic failback is on.
    FailbackAutomatic,
}

/// Where the roles stand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// The active datacenter holds the roles.
    Stable,
    /// The roles were given to the active datacenter; the move completes once announced.
    Moving {
        from: String,
        reason: MoveReason,
        since_unix_ms: i64,
    },
}

/// A datacenter marked failed, and since when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedDatacenter {
    pub datacenter: String,
    pub since_unix_ms: i64,
}

/// A serving datacenter's health as the leader judged it when planning (see [`judge_health`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatacenterHealth {
    pub datacenter: String,
    pub healthy: bool,
    /// The first observation of the streak that led to this judgment (wall clock, ms).
    pub since_unix_ms: i64,
}

/// A move of the roles that completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedMove {
    pub from: String,
    pub to: String,
    pub reason: MoveReason,
    /// The epoch the move gave the roles.
    pub epoch: u64,
    /// The writes that started and completed it (wall clock, ms).
    pub started_unix_ms: i64,
    pub completed_unix_ms: i64,
}

/// A period a datacenter was judged unhealthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outage {
    pub datacenter: String,
    /// The first unhealthy observation of the streak (wall clock, ms).
    pub started_unix_ms: i64,
    /// The first healthy observation of the streak that ended it; `None` while it lasts.
    pub ended_unix_ms: Option<i64>,
}

/// What an entry of the history records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Initialized,
    DatacenterFailed,
    DatacenterRecovered,
    MoveStarted,
    MoveCompleted,
    FailbackRequestDismissed,
    /// The health view judged the datacenter healthy.
    DatacenterHealthy,
    /// The health view judged the datacenter unhealthy.
    DatacenterUnhealthy,
    /// The health view no longer knows the datacenter (no recent observation).
    DatacenterUnknown,
}

/// One entry of the history: every write appends one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// The epoch after the event.
    pub epoch: u64,
    /// The datacenter failed, recovered or named by a dismissed request ("" otherwise).
    pub datacenter: String,
    /// For moves: from where to where ("" otherwise).
    pub from: String,
    pub to: String,
    pub reason: Option<MoveReason>,
    pub at_unix_ms: i64,
    pub writer: String,
    pub fencing_revision: i64,
}

/// Who writes a new state, under which fence, when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteStamp {
    /// The controller instance.
    pub writer: String,
    /// The revision of the leader key the writer holds (its fence).
    pub fencing_revision: i64,
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub at_unix_ms: i64,
}

/// The failover state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailoverState {
    /// The datacenter holding the singleton roles and call-control/media ownership.
    pub active: String,
    /// Increases by one with every move.
    pub epoch: u64,
    pub phase: Phase,
    pub failed: Vec<FailedDatacenter>,
    /// Oldest first, at most [`HISTORY_LIMIT`].
    pub history: Vec<Event>,
    /// The last write's writer, fence and time, and the number of writes so far.
    pub writer: String,
    pub fencing_revision: i64,
    pub written_at_unix_ms: i64,
    pub writes: u64,
    /// The leader's health view, primary first; only the datacenters it knows.
    pub health: Vec<DatacenterHealth>,
    /// Completed moves, oldest first, at most [`HISTORY_LIMIT`].
    pub moves: Vec<CompletedMove>,
    /// Outages, oldest first, at most [`HISTORY_LIMIT`].
    pub outages: Vec<Outage>,
}

/// The health view after a round: each serving datacenter of `report` (the planner's health
/// as of the round, primary first) keeps its `previous` judgment until the planner's streak of
/// the opposite status is as long as `detection` — the thresholds at which the planner fails a
/// datacenter over or marks it recovered — and is then judged that status since the streak's
/// first observation (`at_unix_ms` minus the streak's length). A datacenter the planner does
/// not know (no observation within the detection period) is left out. One lost probe, or a
/// datacenter flapping faster than the detection period, therefore changes nothing, and the
/// view is written only when a judgment changes.
pub fn judge_health(
    previous: &[DatacenterHealth],
    report: &[(String, Health)],
    detection: Duration,
    at_unix_ms: i64,
) -> Vec<DatacenterHealth> {
    let since = |length: Duration| {
        at_unix_ms.saturating_sub(i64::try_from(length.as_millis()).unwrap_or(i64::MAX))
    };
    report
        .iter()
        .filter_map(|(datacenter, health)| {
            let before = previous.iter().find(|h| h.datacenter == *datacenter);
            let (healthy, length) = match *health {
                Health::Unknown => return None,
                Health::Healthy(length) => (true, length),
                Health::Unhealthy(length) => (false, length),
            };
            match before {
                Some(before) if before.healthy == healthy => Some(before.clone()),
                _ if length >= detection => Some(DatacenterHealth {
                    datacenter: datacenter.clone(),
                    healthy,
                    since_unix_ms: since(length),
                }),
                _ => before.cloned(),
            }
        })
        .collect()
}

/// Why stored bytes are not a failover state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The bytes are not a `calanque.v1.FailoverState`.
    #[error("decoding the failover state: {0}")]
    Decode(#[from] prost::DecodeError),
    /// `active_datacenter` is empty.
    #[error("the failover state names no active datacenter")]
    NoActiveDatacenter,
    /// The phase is unspecified or unknown to this version.
    #[error("the failover state's phase {0} is unknown")]
    UnknownPhase(i32),
    /// A moving state without its source datacenter or reason.
    #[error("the failover state is moving without a source datacenter or a known reason")]
    IncompleteMove,
}

impl FailoverState {
    /// The first state of an installation: `active` holds the roles, epoch 1.
    pub fn initial(active: &str, stamp: &WriteStamp) -> FailoverState {
        let mut state = FailoverState {
            active: active.to_owned(),
            epoch: 1,
            phase: Phase::Stable,
            failed: Vec::new(),
            history: Vec::new(),
            writer: String::new(),
            fencing_revision: 0,
            written_at_unix_ms: 0,
            writes: 0,
            health: Vec::new(),
            moves: Vec::new(),
            outages: Vec::new(),
        };
        state.record(EventKind::Initialized, stamp, |_| {});
        state
    }

    /// The state after a round of the leader: `action`'s transition ([`FailoverState::next`])
    /// with the health view `health` ([`judge_health`]) in the same write, or a write of the
    /// health view alone when it changed and the action writes nothing. `None` when nothing
    /// changes (the health view as stored and nothing to do): most rounds write nothing.
    pub fn after_round(
        current: Option<&FailoverState>,
        action: &Action,
        health: &[DatacenterHealth],
        stamp: &WriteStamp,
    ) -> Option<FailoverState> {
        let Some(current) = current else {
            let mut next = FailoverState::next(None, action, stamp)?;
            next.set_health(health, stamp);
            return Some(next);
        };
        // The health events come first: the judgments are what the action follows from.
        let mut base = current.clone();
        let changed = base.set_health(health, stamp);
        match FailoverState::next(Some(&base), action, stamp) {
            Some(next) => Some(next),
            None if changed => {
                base.stamp(stamp);
                Some(base)
            }
            None => None,
        }
    }

    /// Replaces the health view: one event per changed judgment, and the outages opened (a
    /// datacenter judged unhealthy) and closed (judged healthy again). A datacenter no longer
    /// known keeps its outage open. Returns whether anything changed; does not stamp a write.
    fn set_health(&mut self, health: &[DatacenterHealth], stamp: &WriteStamp) -> bool {
        if self.health == health {
            return false;
        }
        let removed: Vec<&DatacenterHealth> = self
            .health
            .iter()
            .filter(|before| !health.iter().any(|h| h.datacenter == before.datacenter))
            .collect();
        let mut events = Vec::new();
        let mut outages = self.outages.clone();
        for after in health {
            let before = self
                .health
                .iter()
                .find(|h| h.datacenter == after.datacenter);
            if before == Some(after) {
                continue;
            }
            let open = outages
                .iter_mut()
                .find(|o| o.datacenter == after.datacenter && o.ended_unix_ms.is_none());
            if after.healthy {
                events.push((EventKind::DatacenterHealthy, after.datacenter.clone()));
                if let Some(open) = open {
                    open.ended_unix_ms = Some(after.since_unix_ms.max(open.started_unix_ms));
                }
            } else {
                events.push((EventKind::DatacenterUnhealthy, after.datacenter.clone()));
                if open.is_none() {
                    outages.push(Outage {
                        datacenter: after.datacenter.clone(),
                        started_unix_ms: after.since_unix_ms,
                        ended_unix_ms: None,
                    });
                }
            }
        }
        for before in removed {
            events.push((EventKind::DatacenterUnknown, before.datacenter.clone()));
        }
        while outages.len() > HISTORY_LIMIT {
            // The oldest ended outage goes first; an open one only when all are open.
            let oldest = outages
                .iter()
                .position(|o| o.ended_unix_ms.is_some())
                .unwrap_or(0);
            outages.remove(oldest);
        }
        self.outages = outages;
        self.health = health.to_vec();
        for (kind, datacenter) in events {
            self.push_event(kind, stamp, |e| e.datacenter = datacenter);
        }
        true
    }

    /// True while the roles are moving.
    pub fn is_moving(&self) -> bool {
        matches!(self.phase, Phase::Moving { .. })
    }

    /// True when `datacenter` is marked failed.
    pub fn is_failed(&self, datacenter: &str) -> bool {
        self.failed.iter().any(|f| f.datacenter == datacenter)
    }

    /// The state after `action`, or `None` for actions that write nothing (nothing to do, an
    /// announcement). `current` is `None` before the state exists (only `Initialize` writes
    /// then).
    pub fn next(
        current: Option<&FailoverState>,
        action: &Action,
        stamp: &WriteStamp,
    ) -> Option<FailoverState> {
        let Some(current) = current else {
            return match action {
                Action::Initialize { active } => Some(FailoverState::initial(active, stamp)),
                _ => None,
            };
        };
        let mut next = current.clone();
        match action {
            Action::Nothing | Action::Announce { .. } | Action::Initialize { .. } => return None,
            Action::MarkFailed { datacenter } => {
                next.mark_failed(datacenter, stamp.at_unix_ms);
                next.record(EventKind::DatacenterFailed, stamp, |e| {
                    e.datacenter = datacenter.clone();
                });
            }
            Action::MarkRecovered { datacenter } => {
                next.failed.retain(|f| f.datacenter != *datacenter);
                next.record(EventKind::DatacenterRecovered, stamp, |e| {
                    e.datacenter = datacenter.clone();
                });
            }
            Action::StartFailover { from, to } => {
                next.mark_failed(from, stamp.at_unix_ms);
                next.start_move(from, to, MoveReason::DatacenterLost, stamp);
            }
            Action::StartFailback { from, to, trigger } => {
                let reason = match trigger {
                    FailbackTrigger::Requested => MoveReason::FailbackRequested,
                    FailbackTrigger::Automatic => MoveReason::FailbackAutomatic,
                };
                next.start_move(from, to, reason, stamp);
            }
            Action::CompleteMove { epoch } => {
                let Phase::Moving { from, reason, .. } = &current.phase else {
                    return None;
                };
                if *epoch != current.epoch {
                    return None;
                }
                let (from, reason) = (from.clone(), *reason);
                if let Phase::Moving { since_unix_ms, .. } = &current.phase {
                    next.moves.push(CompletedMove {
                        from: from.clone(),
                        to: current.active.clone(),
                        reason,
                        epoch: current.epoch,
                        started_unix_ms: *since_unix_ms,
                        completed_unix_ms: stamp.at_unix_ms,
                    });
                    let excess = next.moves.len().saturating_sub(HISTORY_LIMIT);
                    next.moves.drain(..excess);
                }
                next.phase = Phase::Stable;
                next.record(EventKind::MoveCompleted, stamp, |e| {
                    e.from = from;
                    e.to = current.active.clone();
                    e.reason = Some(reason);
                });
            }
            Action::DismissFailbackRequest { datacenter, .. } => {
                next.record(EventKind::FailbackRequestDismissed, stamp, |e| {
                    e.datacenter = datacenter.clone();
                });
            }
        }
        Some(next)
    }

    fn mark_failed(&mut self, datacenter: &str, at_unix_ms: i64) {
        if !self.is_failed(datacenter) {
            self.failed.push(FailedDatacenter {
                datacenter: datacenter.to_owned(),
                since_unix_ms: at_unix_ms,
            });
        }
    }

    fn start_move(&mut self, from: &str, to: &str, reason: MoveReason, stamp: &WriteStamp) {
        // The planner moves roles only to a datacenter healthy for the detection period: the
        // recovery criterion, so a mark it still carries goes.
        self.failed.retain(|f| f.datacenter != to);
        self.active = to.to_owned();
        self.epoch += 1;
        self.phase = Phase::Moving {
            from: from.to_owned(),
            reason,
            since_unix_ms: stamp.at_unix_ms,
        };
        self.record(EventKind::MoveStarted, stamp, |e| {
            e.from = from.to_owned();
            e.to = to.to_owned();
            e.reason = Some(reason);
        });
    }

    /// Stamps the state with this write and appends the event `fill` completes.
    fn record(&mut self, kind: EventKind, stamp: &WriteStamp, fill: impl FnOnce(&mut Event)) {
        self.push_event(kind, stamp, fill);
        self.stamp(stamp);
    }

    /// Appends the event `fill` completes (the history keeps the last [`HISTORY_LIMIT`]).
    fn push_event(&mut self, kind: EventKind, stamp: &WriteStamp, fill: impl FnOnce(&mut Event)) {
        let mut event = Event {
            kind,
            epoch: self.epoch,
            datacenter: String::new(),
            from: String::new(),
            to: String::new(),
            reason: None,
            at_unix_ms: stamp.at_unix_ms,
            writer: stamp.writer.clone(),
            fencing_revision: stamp.fencing_revision,
        };
        fill(&mut event);
        self.history.push(event);
        if self.history.len() > HISTORY_LIMIT {
            let excess = self.history.len() - HISTORY_LIMIT;
            self.history.drain(..excess);
        }
    }

    /// Stamps the state with this write: its writer, fence and time, one more write.
    fn stamp(&mut self, stamp: &WriteStamp) {
        self.writer = stamp.writer.clone();
        self.fencing_revision = stamp.fencing_revision;
        self.written_at_unix_ms = stamp.at_unix_ms;
        self.writes += 1;
    }

    /// The stored bytes.
    pub fn encode(&self) -> Vec<u8> {
        v1::FailoverState::from(self).encode_to_vec()
    }

    /// Reads stored bytes.
    pub fn decode(bytes: &[u8]) -> Result<FailoverState, StateError> {
        FailoverState::try_from(v1::FailoverState::decode(bytes)?)
    }
}

impl MoveReason {
    fn to_proto(self) -> v1::FailoverReason {
        match self {
            MoveReason::DatacenterLost => v1::FailoverReason::DatacenterLost,
            MoveReason::FailbackRequested => v1::FailoverReason::FailbackRequested,
            MoveReason::FailbackAutomatic => v1::FailoverReason::FailbackAutomatic,
        }
    }

    fn from_proto(value: i32) -> Option<MoveReason> {
        match v1::FailoverReason::try_from(value).ok()? {
            v1::FailoverReason::Unspecified => None,
            v1::FailoverReason::DatacenterLost => Some(MoveReason::DatacenterLost),
            v1::FailoverReason::FailbackRequested => Some(MoveReason::FailbackRequested),
            v1::FailoverReason::FailbackAutomatic => Some(MoveReason::FailbackAutomatic),
        }
    }
}

impl EventKind {
    fn to_proto(self) -> v1::FailoverEventKind {
        match self {
            EventKind::Initialized => v1::FailoverEventKind::Initialized,
            EventKind::DatacenterFailed => v1::FailoverEventKind::DatacenterFailed,
            EventKind::DatacenterRecovered => v1::FailoverEventKind::DatacenterRecovered,
            EventKind::MoveStarted => v1::FailoverEventKind::MoveStarted,
            EventKind::MoveCompleted => v1::FailoverEventKind::MoveCompleted,
            EventKind::FailbackRequestDismissed => v1::FailoverEventKind::FailbackRequestDismissed,
            EventKind::DatacenterHealthy => v1::FailoverEventKind::DatacenterHealthy,
            EventKind::DatacenterUnhealthy => v1::FailoverEventKind::DatacenterUnhealthy,
            EventKind::DatacenterUnknown => v1::FailoverEventKind::DatacenterUnknown,
        }
    }

    fn from_proto(value: i32) -> Option<EventKind> {
        Some(match v1::FailoverEventKind::try_from(value).ok()? {
            v1::FailoverEventKind::Unspecified => return None,
            v1::FailoverEventKind::Initialized => EventKind::Initialized,
            v1::FailoverEventKind::DatacenterFailed => EventKind::DatacenterFailed,
            v1::FailoverEventKind::DatacenterRecovered => EventKind::DatacenterRecovered,
            v1::FailoverEventKind::MoveStarted => EventKind::MoveStarted,
            v1::FailoverEventKind::MoveCompleted => EventKind::MoveCompleted,
            v1::FailoverEventKind::FailbackRequestDismissed => EventKind::FailbackRequestDismissed,
            v1::FailoverEventKind::DatacenterHealthy => EventKind::DatacenterHealthy,
            v1::FailoverEventKind::DatacenterUnhealthy => EventKind::DatacenterUnhealthy,
            v1::FailoverEventKind::DatacenterUnknown => EventKind::DatacenterUnknown,
        })
    }
}

impl From<&FailoverState> for v1::FailoverState {
    fn from(state: &FailoverState) -> v1::FailoverState {
        let (phase, moving_from, moving_reason, moving_since) = match &state.phase {
            Phase::Stable => (
                v1::FailoverPhase::Stable,
                String::new(),
                v1::FailoverReason::Unspecified,
                0,
            ),
            Phase::Moving {
                from,
                reason,
                since_unix_ms,
            } => (
                v1::FailoverPhase::Moving,
                from.clone(),
                reason.to_proto(),
                *since_unix_ms,
            ),
        };
        v1::FailoverState {
            active_datacenter: state.active.clone(),
            epoch: state.epoch,
            phase: phase as i32,
            moving_from,
            moving_reason: moving_reason as i32,
            moving_since_unix_ms: moving_since,
            failed: state
                .failed
                .iter()
                .map(|f| v1::FailedDatacenter {
                    datacenter: f.datacenter.clone(),
                    since_unix_ms: f.since_unix_ms,
                })
                .collect(),
            history: state
                .history
                .iter()
                .map(|e| v1::FailoverEvent {
                    kind: e.kind.to_proto() as i32,
                    epoch: e.epoch,
                    datacenter: e.datacenter.clone(),
                    from: e.from.clone(),
                    to: e.to.clone(),
                    reason: e
                        .reason
                        .map_or(v1::FailoverReason::Unspecified, MoveReason::to_proto)
                        as i32,
                    at_unix_ms: e.at_unix_ms,
                    writer: e.writer.clone(),
                    fencing_revision: e.fencing_revision,
                })
                .collect(),
            writer: state.writer.clone(),
            fencing_revision: state.fencing_revision,
            written_at_unix_ms: state.written_at_unix_ms,
            writes: state.writes,
            health: state
                .health
                .iter()
                .map(|h| v1::FailoverDatacenterHealth {
                    datacenter: h.datacenter.clone(),
                    healthy: h.healthy,
                    since_unix_ms: h.since_unix_ms,
                })
                .collect(),
            moves: state
                .moves
                .iter()
                .map(|m| v1::FailoverMove {
                    from: m.from.clone(),
                    to: m.to.clone(),
                    reason: m.reason.to_proto() as i32,
                    epoch: m.epoch,
                    started_unix_ms: m.started_unix_ms,
                    completed_unix_ms: m.completed_unix_ms,
                })
                .collect(),
            outages: state
                .outages
                .iter()
                .map(|o| v1::FailoverOutage {
                    datacenter: o.datacenter.clone(),
                    started_unix_ms: o.started_unix_ms,
                    ended_unix_ms: o.ended_unix_ms,
                })
                .collect(),
        }
    }
}

impl TryFrom<v1::FailoverState> for FailoverState {
    type Error = StateError;

    fn try_from(message: v1::FailoverState) -> Result<FailoverState, StateError> {
        if message.active_datacenter.is_empty() {
            return Err(StateError::NoActiveDatacenter);
        }
        let phase = match v1::FailoverPhase::try_from(message.phase) {
            Ok(v1::FailoverPhase::Stable) => Phase::Stable,
            Ok(v1::FailoverPhase::Moving) => {
                let reason = MoveReason::from_proto(message.moving_reason)
                    .ok_or(StateError::IncompleteMove)?;
                if message.moving_from.is_empty() {
                    return Err(StateError::IncompleteMove);
                }
                Phase::Moving {
                    from: message.moving_from,
                    reason,
                    since_unix_ms: message.moving_since_unix_ms,
                }
            }
            Ok(v1::FailoverPhase::Unspecified) | Err(_) => {
                return Err(StateError::UnknownPhase(message.phase));
            }
        };
        Ok(FailoverState {
            active: message.active_datacenter,
            epoch: message.epoch,
            phase,
            failed: message
                .failed
                .into_iter()
                .map(|f| FailedDatacenter {
                    datacenter: f.datacenter,
                    since_unix_ms: f.since_unix_ms,
                })
                .collect(),
            // Events of kinds a newer version added are informational: skipped, not fatal.
            history: message
                .history
                .into_iter()
                .filter_map(|e| {
                    Some(Event {
                        kind: EventKind::from_proto(e.kind)?,
                        epoch: e.epoch,
                        datacenter: e.datacenter,
                        from: e.from,
                        to: e.to,
                        reason: MoveReason::from_proto(e.reason),
                        at_unix_ms: e.at_unix_ms,
                        writer: e.writer,
                        fencing_revision: e.fencing_revision,
                    })
                })
                .collect(),
            writer: message.writer,
            fencing_revision: message.fencing_revision,
            written_at_unix_ms: message.written_at_unix_ms,
            writes: message.writes,
            health: message
                .health
                .into_iter()
                .map(|h| DatacenterHealth {
                    datacenter: h.datacenter,
                    healthy: h.healthy,
                    since_unix_ms: h.since_unix_ms,
                })
                .collect(),
            // Moves for a reason a newer version added are skipped, as such events are.
            moves: message
                .moves
                .into_iter()
                .filter_map(|m| {
                    Some(CompletedMove {
                        reason: MoveReason::from_proto(m.reason)?,
                        from: m.from,
                        to: m.to,
                        epoch: m.epoch,
                        started_unix_ms: m.started_unix_ms,
                        completed_unix_ms: m.completed_unix_ms,
                    })
                })
                .collect(),
            outages: message
                .outages
                .into_iter()
                .map(|o| Outage {
                    datacenter: o.datacenter,
                    started_unix_ms: o.started_unix_ms,
                    ended_unix_ms: o.ended_unix_ms,
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::DismissReason;

    fn stamp(writer: &str, revision: i64, at: i64) -> WriteStamp {
        WriteStamp {
            writer: writer.to_owned(),
            fencing_revision: revision,
            at_unix_ms: at,
        }
    }

    #[test]
    fn a_failover_moves_the_roles_then_completes_and_everything_round_trips() {
        let s1 = FailoverState::initial("dc-a", &stamp("c1", 7, 1_000));
        assert_eq!((s1.active.as_str(), s1.epoch, s1.writes), ("dc-a", 1, 1));
        let start = Action::StartFailover {
            from: "dc-a".into(),
            to: "dc-b".into(),
        };
        let s2 = FailoverState::next(Some(&s1), &start, &stamp("c1", 7, 2_000)).unwrap();
        assert_eq!((s2.active.as_str(), s2.epoch), ("dc-b", 2));
        assert!(s2.is_moving() && s2.is_failed("dc-a") && !s2.is_failed("dc-b"));
        let complete = Action::CompleteMove { epoch: 2 };
        let s3 = FailoverState::next(Some(&s2), &complete, &stamp("c2", 9, 3_000)).unwrap();
        assert_eq!(s3.phase, Phase::Stable);
        assert_eq!(
            (s3.writer.as_str(), s3.fencing_revision, s3.writes),
            ("c2", 9, 3)
        );
        let kinds: Vec<EventKind> = s3.history.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                EventKind::Initialized,
                EventKind::MoveStarted,
                EventKind::MoveCompleted
            ]
        );
        for state in [&s1, &s2, &s3] {
            assert_eq!(&FailoverState::decode(&state.encode()).unwrap(), state);
        }
    }

    #[test]
    fn completing_another_epoch_or_a_stable_state_writes_nothing() {
        let s1 = FailoverState::initial("dc-a", &stamp("c1", 7, 1_000));
        let complete = Action::CompleteMove { epoch: 1 };
        assert_eq!(
            FailoverState::next(Some(&s1), &complete, &stamp("c1", 7, 2)),
            None
        );
        let start = Action::StartFailback {
            from: "dc-a".into(),
            to: "dc-b".into(),
            trigger: FailbackTrigger::Requested,
        };
        let s2 = FailoverState::next(Some(&s1), &start, &stamp("c1", 7, 2_000)).unwrap();
        let stale = Action::CompleteMove { epoch: 1 };
        assert_eq!(
            FailoverState::next(Some(&s2), &stale, &stamp("c1", 7, 3)),
            None
        );
        assert_eq!(FailoverState::next(None, &stale, &stamp("c1", 7, 3)), None);
        assert_eq!(
            FailoverState::next(Some(&s2), &Action::Nothing, &stamp("c1", 7, 3)),
            None
        );
    }

    #[test]
    fn marks_come_and_go_and_the_history_is_bounded() {
        let mut state = FailoverState::initial("dc-a", &stamp("c1", 7, 0));
        for i in 0..40 {
            let fail = Action::MarkFailed {
                datacenter: "dc-b".into(),
            };
            state = FailoverState::next(Some(&state), &fail, &stamp("c1", 7, i)).unwrap();
            assert!(state.is_failed("dc-b"));
            let recover = Action::MarkRecovered {
                datacenter: "dc-b".into(),
            };
            state = FailoverState::next(Some(&state), &recover, &stamp("c1", 7, i)).unwrap();
            assert!(!state.is_failed("dc-b"));
        }
        let dismiss = Action::DismissFailbackRequest {
            datacenter: "dc-z".into(),
            reason: DismissReason::UnknownDatacenter,
        };
        state = FailoverState::next(Some(&state), &dismiss, &stamp("c1", 7, 99)).unwrap();
        assert_eq!(state.history.len(), HISTORY_LIMIT);
        assert_eq!(state.writes, 82);
        assert_eq!(
            state.history.last().unwrap().kind,
            EventKind::FailbackRequestDismissed
        );
        assert_eq!(state.epoch, 1, "marks do not move the roles");
    }

    fn judged(datacenter: &str, healthy: bool, since_unix_ms: i64) -> DatacenterHealth {
        DatacenterHealth {
            datacenter: datacenter.to_owned(),
            healthy,
            since_unix_ms,
        }
    }

    #[test]
    fn the_health_view_changes_only_after_a_streak_of_the_detection_period() {
        let detection = Duration::from_secs(10);
        let s = Duration::from_secs;
        let healthy_a = judged("dc-a", true, 1_000);
        let unhealthy_a = judged("dc-a", false, 50_000);
        // (previous, dc-a's health at 60 s, the view's dc-a)
        let cases: [(
            &str,
            Option<&DatacenterHealth>,
            Health,
            Option<DatacenterHealth>,
        ); 9] = [
            (
                "unknown, healthy for less",
                None,
                Health::Healthy(s(9)),
                None,
            ),
            (
                "unknown, healthy for the period: judged since the streak's start",
                None,
                Health::Healthy(s(10)),
                Some(judged("dc-a", true, 50_000)),
            ),
            (
                "healthy, still healthy (a newer streak): kept as it was",
                Some(&healthy_a),
                Health::Healthy(s(2)),
                Some(healthy_a.clone()),
            ),
            (
                "healthy, one lost probe: kept",
                Some(&healthy_a),
                Health::Unhealthy(s(0)),
                Some(healthy_a.clone()),
            ),
            (
                "healthy, unhealthy for 9.999 s: kept",
                Some(&healthy_a),
                Health::Unhealthy(Duration::from_millis(9_999)),
                Some(healthy_a.clone()),
            ),
            (
                "healthy, unhealthy for the period: unhealthy since its start",
                Some(&healthy_a),
                Health::Unhealthy(s(10)),
                Some(judged("dc-a", false, 50_000)),
            ),
            (
                "unhealthy, healthy for less: kept",
                Some(&unhealthy_a),
                Health::Healthy(s(5)),
                Some(unhealthy_a.clone()),
            ),
            (
                "unhealthy, healthy for longer than the period: healthy since its start",
                Some(&unhealthy_a),
                Health::Healthy(s(12)),
                Some(judged("dc-a", true, 48_000)),
            ),
            (
                "no recent observation: no longer known",
                Some(&healthy_a),
                Health::Unknown,
                None,
            ),
        ];
        for (name, previous, health, expected) in cases {
            let previous: Vec<DatacenterHealth> = previous.into_iter().cloned().collect();
            let report = [
                ("dc-a".to_owned(), health),
                ("dc-b".to_owned(), Health::Healthy(s(30))),
            ];
            let view = judge_health(&previous, &report, detection, 60_000);
            let mut want: Vec<DatacenterHealth> = expected.into_iter().collect();
            want.push(judged("dc-b", true, 30_000));
            assert_eq!(view, want, "{name}");
        }
    }

    #[test]
    fn health_changes_are_written_alone_or_with_the_action_and_keep_the_outages() {
        let s1 = FailoverState::initial("dc-a", &stamp("c1", 7, 0));
        let view = [judged("dc-a", true, 0), judged("dc-b", true, 0)];
        // Unchanged view, nothing to do: no write.
        let s2 =
            FailoverState::after_round(Some(&s1), &Action::Nothing, &view, &stamp("c1", 7, 10))
                .expect("the first view is a change");
        assert_eq!((s2.health.as_slice(), s2.writes), (&view[..], 2));
        assert_eq!(
            FailoverState::after_round(Some(&s2), &Action::Nothing, &view, &stamp("c1", 7, 11)),
            None
        );
        // dc-a judged unhealthy (since 5 s) in the write that fails it over.
        let lost = [judged("dc-a", false, 5_000), judged("dc-b", true, 0)];
        let start = Action::StartFailover {
            from: "dc-a".into(),
            to: "dc-b".into(),
        };
        let s3 =
            FailoverState::after_round(Some(&s2), &start, &lost, &stamp("c1", 7, 15_000)).unwrap();
        assert_eq!(
            (s3.writes, s3.epoch, s3.health.as_slice()),
            (3, 2, &lost[..])
        );
        let kinds: Vec<EventKind> = s3.history.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds[kinds.len() - 2..],
            [EventKind::DatacenterUnhealthy, EventKind::MoveStarted]
        );
        assert_eq!(
            s3.outages,
            [Outage {
                datacenter: "dc-a".into(),
                started_unix_ms: 5_000,
                ended_unix_ms: None
            }]
        );
        let complete = Action::CompleteMove { epoch: 2 };
        let s4 = FailoverState::after_round(Some(&s3), &complete, &lost, &stamp("c1", 7, 15_500))
            .unwrap();
        assert_eq!(
            s4.moves,
            [CompletedMove {
                from: "dc-a".into(),
                to: "dc-b".into(),
                reason: MoveReason::DatacenterLost,
                epoch: 2,
                started_unix_ms: 15_000,
                completed_unix_ms: 15_500,
            }]
        );
        // No longer known: the outage stays open; then healthy again: it ends where the
        // healthy streak began.
        let unknown = [judged("dc-b", true, 0)];
        let s5 = FailoverState::after_round(
            Some(&s4),
            &Action::Nothing,
            &unknown,
            &stamp("c1", 7, 30_000),
        )
        .unwrap();
        assert_eq!(
            s5.history.last().unwrap().kind,
            EventKind::DatacenterUnknown
        );
        assert_eq!(s5.outages[0].ended_unix_ms, None);
        let back = [judged("dc-a", true, 40_000), judged("dc-b", true, 0)];
        let s6 =
            FailoverState::after_round(Some(&s5), &Action::Nothing, &back, &stamp("c2", 9, 50_000))
                .unwrap();
        assert_eq!(s6.outages[0].ended_unix_ms, Some(40_000));
        assert_eq!(
            s6.history.last().unwrap().kind,
            EventKind::DatacenterHealthy
        );
        assert_eq!(
            (s6.writer.as_str(), s6.fencing_revision, s6.writes),
            ("c2", 9, 6),
            "a health write is stamped like any other"
        );
        assert_eq!(s6.epoch, 2, "health does not move the roles");
        for state in [&s2, &s3, &s4, &s5, &s6] {
            assert_eq!(&FailoverState::decode(&state.encode()).unwrap(), state);
        }
        // Before the state exists, the view goes into the first write.
        let init = Action::Initialize {
            active: "dc-a".into(),
        };
        let first = FailoverState::after_round(None, &init, &view, &stamp("c1", 7, 1)).unwrap();
        assert_eq!((first.health.as_slice(), first.writes), (&view[..], 1));
        assert_eq!(
            FailoverState::after_round(None, &Action::Nothing, &view, &stamp("c1", 7, 1)),
            None
        );
    }

    #[test]
    fn outages_and_moves_are_bounded_and_an_open_outage_is_kept() {
        let mut state = FailoverState::initial("dc-a", &stamp("c1", 7, 0));
        let down = [judged("dc-a", false, 0)];
        state =
            FailoverState::after_round(Some(&state), &Action::Nothing, &down, &stamp("c1", 7, 0))
                .unwrap();
        for i in 1..=60 {
            let t = i * 1_000;
            for view in [
                [judged("dc-a", false, 0), judged("dc-b", false, t)],
                [judged("dc-a", false, 0), judged("dc-b", true, t + 500)],
            ] {
                state = FailoverState::after_round(
                    Some(&state),
                    &Action::Nothing,
                    &view,
                    &stamp("c1", 7, t),
                )
                .unwrap();
            }
        }
        assert_eq!(state.outages.len(), HISTORY_LIMIT);
        assert_eq!(
            state.outages[0],
            Outage {
                datacenter: "dc-a".into(),
                started_unix_ms: 0,
                ended_unix_ms: None
            },
            "the open outage outlives the ended ones"
        );
        assert_eq!(state.outages[HISTORY_LIMIT - 1].started_unix_ms, 60_000);
        assert_eq!(state.history.len(), HISTORY_LIMIT);

        let mut state = FailoverState::initial("dc-a", &stamp("c1", 7, 0));
        for i in 0..60 {
            let (from, to) = if i % 2 == 0 {
                ("dc-a", "dc-b")
            } else {
                ("dc-b", "dc-a")
            };
            let start = Action::StartFailback {
                from: from.into(),
                to: to.into(),
                trigger: FailbackTrigger::Requested,
            };
            state = FailoverState::next(Some(&state), &start, &stamp("c1", 7, i)).unwrap();
            let complete = Action::CompleteMove { epoch: state.epoch };
            state = FailoverState::next(Some(&state), &complete, &stamp("c1", 7, i)).unwrap();
        }
        assert_eq!(state.moves.len(), HISTORY_LIMIT);
        assert_eq!(state.moves.last().unwrap().epoch, 61);
        assert_eq!(state.moves[0].epoch, 12);
    }

    #[test]
    fn a_state_written_before_the_health_view_existed_still_reads() {
        // What an older controller wrote: fields 1–12 only.
        let old = v1::FailoverState {
            active_datacenter: "dc-b".into(),
            epoch: 2,
            phase: v1::FailoverPhase::Stable as i32,
            failed: vec![v1::FailedDatacenter {
                datacenter: "dc-a".into(),
                since_unix_ms: 5,
            }],
            writer: "c1".into(),
            fencing_revision: 7,
            written_at_unix_ms: 9,
            writes: 3,
            ..v1::FailoverState::default()
        };
        let state = FailoverState::decode(&old.encode_to_vec()).unwrap();
        assert_eq!((state.active.as_str(), state.epoch), ("dc-b", 2));
        assert!(state.is_failed("dc-a"));
        assert!(state.health.is_empty() && state.moves.is_empty() && state.outages.is_empty());
        // A move for a reason this version does not know is skipped, not fatal.
        let mut newer = v1::FailoverState::from(&state);
        newer.moves.push(v1::FailoverMove {
            from: "dc-a".into(),
            to: "dc-b".into(),
            reason: 99,
            epoch: 2,
            started_unix_ms: 1,
            completed_unix_ms: 2,
        });
        assert!(FailoverState::try_from(newer).unwrap().moves.is_empty());
    }

    #[test]
    fn malformed_states_are_refused() {
        assert!(matches!(
            FailoverState::decode(b"\xff\xff"),
            Err(StateError::Decode(_))
        ));
        let mut message =
            v1::FailoverState::from(&FailoverState::initial("dc-a", &stamp("c1", 1, 1)));
        message.phase = v1::FailoverPhase::Unspecified as i32;
        assert!(matches!(
            FailoverState::try_from(message.clone()),
            Err(StateError::UnknownPhase(0))
        ));
        message.phase = v1::FailoverPhase::Moving as i32;
        assert!(matches!(
            FailoverState::try_from(message.clone()),
            Err(StateError::IncompleteMove)
        ));
        message.active_datacenter.clear();
        assert!(matches!(
            FailoverState::try_from(message),
            Err(StateError::NoActiveDatacenter)
        ));
    }
}
