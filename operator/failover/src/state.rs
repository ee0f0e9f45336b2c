//! The stored failover state (`calanque/v1/failover/state`, a `calanque.v1.FailoverState`):
//! the domain type checked out of the protobuf at the boundary, and the pure transition from
//! one state to the next for each planner action. No I/O: the controller reads and writes the
//! bytes.

use prost::Message as _;
use proto::v1;

use crate::planner::{Action, FailbackTrigger};

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
/// Events kept in the state's history (the PbxCluster status keeps as many).
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

/// What an entry of the history records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Initialized,
    DatacenterFailed,
    DatacenterRecovered,
    MoveStarted,
    MoveCompleted,
    FailbackRequestDismissed,
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
        };
        state.record(EventKind::Initialized, stamp, |_| {});
        state
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
