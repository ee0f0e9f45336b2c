//! The failover planner, sans-IO: health observations, leadership, the stored state and the
//! witness in, one [`Decision`] out. It never reads a clock, sleeps or does I/O — `now` and
//! each observation's time are inputs — so its rules are tested as tables on a virtual clock
//! (`tests/planner.rs`, and the unit tests here).
//!
//! The rules (ADR 0018):
//!
//! - Nothing is written without the lease: a controller that does not lead plans nothing.
//! - A datacenter is *failed* only once it has been unhealthy for the whole detection period
//!   (every observation since the first unhealthy one unhealthy); one healthy observation
//!   restarts the count, so one lost probe, or a datacenter flapping faster than the period,
//!   never fails it. Observations stop counting when they are older than the period (a stuck
//!   prober knows nothing) and a gap that long restarts the count.
//! - The roles move away from the active datacenter when it is failed and the other one has
//!   been healthy for the whole detection period; if the other is not, both are lost: nothing
//!   moves, the report says so.
//! - No ping-pong: after a move, the roles go back only when asked (a failback request) with
//!   the target healthy for the detection period, or automatically (when configured) to the
//!   primary after `failback_after` of continuous health — and never while either side is
//!   unhealthy.
//! - A second opinion before a forced change: a datacenter is failed over (or marked failed)
//!   only when more than half of the controllers that judge it — the leader and the peers
//!   whose views are stored ([`PeerView`]) — judge it failed. In a partition between the
//!   datacenters the leader, on one side, sees the other dead, but the other side's controller
//!   (and one at the witness, when there is one) still sees it alive: nothing moves. A lost
//!   datacenter's controller is lost with it; its view goes with its lease.
//! - Witness lost: only changes forced by a failed datacenter are made (the lease proves the
//!   controller is on etcd's quorum side); no voluntary change (failback, recovery marks,
//!   dismissals) until the witness is back. The report says degraded.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use crate::state::FailoverState;

/// Default detection period (the PbxCluster's `failover.detectionSeconds`).
pub const DEFAULT_DETECTION: Duration = Duration::from_secs(10);
/// Default stable period before an automatic failback (`failover.failbackAfterSeconds`).
pub const DEFAULT_FAILBACK_AFTER: Duration = Duration::from_secs(600);

/// What the planner is configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannerConfig {
    datacenters: [String; 2],
    /// How long a datacenter must be unhealthy before it is failed (and healthy before it is a
    /// failover target or recovered).
    pub detection: Duration,
    /// How long the primary must be healthy before an automatic failback.
    pub failback_after: Duration,
    /// Fail back to the primary by itself after `failback_after`; otherwise only when asked.
    pub automatic_failback: bool,
}

/// Why a planner configuration is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A datacenter name is empty.
    #[error("a datacenter name is empty")]
    EmptyName,
    /// Both serving datacenters have the same name.
    #[error("the two serving datacenters are both named {0:?}")]
    SameName(String),
}

impl PlannerConfig {
    /// The two serving datacenters, the primary (where the roles go first, and where an
    /// automatic failback returns) first; default periods, failback only when asked.
    pub fn new(datacenters: [String; 2]) -> Result<PlannerConfig, ConfigError> {
        if datacenters.iter().any(String::is_empty) {
            return Err(ConfigError::EmptyName);
        }
        if datacenters[0] == datacenters[1] {
            return Err(ConfigError::SameName(datacenters[0].clone()));
        }
        Ok(PlannerConfig {
            datacenters,
            detection: DEFAULT_DETECTION,
            failback_after: DEFAULT_FAILBACK_AFTER,
            automatic_failback: false,
        })
    }

    /// The serving datacenters, primary first.
    pub fn datacenters(&self) -> &[String; 2] {
        &self.datacenters
    }

    /// The primary datacenter.
    pub fn primary(&self) -> &str {
        &self.datacenters[0]
    }

    /// The other serving datacenter, if `datacenter` is one.
    pub fn other(&self, datacenter: &str) -> Option<&str> {
        match self.datacenters.iter().position(|d| d == datacenter)? {
            0 => Some(&self.datacenters[1]),
            _ => Some(&self.datacenters[0]),
        }
    }
}

/// One probe round of a datacenter: how many of its edges answered SIP OPTIONS and how many
/// of its services' `/readyz` said ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthObservation {
    pub datacenter: String,
    pub observed_at: Instant,
    pub edges_answering: u32,
    pub edges: u32,
    pub services_ready: u32,
    pub services: u32,
}

impl HealthObservation {
    /// Healthy: at least one edge answers (phones reach the datacenter) and every service
    /// endpoint is ready (each `/readyz` URL stands for a service, behind its load balancer).
    pub fn is_healthy(&self) -> bool {
        self.edges_answering > 0 && self.services_ready >= self.services
    }
}

/// The witness (the third location's etcd/NATS member) as this controller reaches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Witness {
    NotConfigured,
    Reachable,
    Unreachable,
}

/// This controller's leadership: it holds the leader key created at `fencing_revision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leadership {
    pub fencing_revision: i64,
}

/// Another failover controller's judgments, as stored under its lease (`view.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerView {
    pub instance: String,
    /// The datacenters it observed within the detection period.
    pub seen: Vec<String>,
    /// Those it has seen unhealthy for the whole detection period.
    pub failed: Vec<String>,
}

/// Everything but the observations, as of `now`.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    pub now: Instant,
    /// `None` when this controller does not hold the lease (or it may have expired).
    pub leadership: Option<Leadership>,
    /// The stored state; `None` before the first leader created it.
    pub state: Option<&'a FailoverState>,
    pub witness: Witness,
    /// A pending failback request (the datacenter it names).
    pub failback_request: Option<&'a str>,
    /// The latest epoch whose state this controller has announced.
    pub announced_epoch: Option<u64>,
    /// The other controllers' stored views (this controller's own left out).
    pub peers: &'a [PeerView],
}

/// Why a failback request is dropped without a move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DismissReason {
    /// It names the datacenter that already holds the roles.
    AlreadyActive,
    /// It names no serving datacenter.
    UnknownDatacenter,
}

/// What started a failback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailbackTrigger {
    Requested,
    Automatic,
}

/// What the controller should do now. Every variant but `Nothing` and `Announce` is a fenced
/// write of the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Nothing,
    /// Create the state with the roles on `active` (the primary).
    Initialize {
        active: String,
    },
    /// Record that `datacenter` (not holding the roles) is failed.
    MarkFailed {
        datacenter: String,
    },
    /// Record that a failed datacenter is healthy again.
    MarkRecovered {
        datacenter: String,
    },
    /// Move the roles from the failed active datacenter to the other one (a new epoch).
    StartFailover {
        from: String,
        to: String,
    },
    /// Move the roles back (a new epoch).
    StartFailback {
        from: String,
        to: String,
        trigger: FailbackTrigger,
    },
    /// Publish the state of `epoch` (a move is waiting for its announcement).
    Announce {
        epoch: u64,
    },
    /// The move of `epoch` was announced: mark it complete.
    CompleteMove {
        epoch: u64,
    },
    /// Drop a failback request that cannot be acted on.
    DismissFailbackRequest {
        datacenter: String,
        reason: DismissReason,
    },
}

impl Action {
    /// True for the actions that write the state.
    pub fn writes(&self) -> bool {
        !matches!(self, Action::Nothing | Action::Announce { .. })
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Nothing => write!(f, "nothing"),
            Action::Initialize { active } => write!(f, "initialize with {active} active"),
            Action::MarkFailed { datacenter } => write!(f, "mark {datacenter} failed"),
            Action::MarkRecovered { datacenter } => write!(f, "mark {datacenter} recovered"),
            Action::StartFailover { from, to } => write!(f, "fail over from {from} to {to}"),
            Action::StartFailback { from, to, trigger } => {
                write!(f, "fail back from {from} to {to} ({trigger:?})")
            }
            Action::Announce { epoch } => write!(f, "announce epoch {epoch}"),
            Action::CompleteMove { epoch } => write!(f, "complete the move of epoch {epoch}"),
            Action::DismissFailbackRequest { datacenter, reason } => {
                write!(
                    f,
                    "dismiss the failback request to {datacenter} ({reason:?})"
                )
            }
        }
    }
}

/// Why nothing was done although something would have been.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeldBack {
    /// This controller does not hold the lease.
    NotLeader,
    /// The active datacenter is failed and the other is not healthy: nothing to move to.
    BothDatacentersLost,
    /// A voluntary change waits for the witness.
    WitnessLost,
    /// The stored state names a datacenter this controller is not configured with.
    UnknownActiveDatacenter(String),
    /// A failback waits: the datacenter holding the roles is not healthy.
    ActiveUnhealthy,
    /// A failback waits: the target has not been healthy long enough (`remaining` more).
    FailbackTargetNotStable { remaining: Duration },
    /// This controller judges `datacenter` failed, but not more than half of the controllers
    /// judging it do (`agreeing` of `judging`, this one included): a partition, not a loss.
    NotConfirmed {
        datacenter: String,
        agreeing: usize,
        judging: usize,
    },
}

/// A datacenter's health as of `now`: healthy or unhealthy, and for how long (since the
/// first observation of the current streak); unknown without a recent observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Unknown,
    Healthy(Duration),
    Unhealthy(Duration),
}

impl Health {
    /// Healthy at the last observation.
    pub fn is_healthy(self) -> bool {
        matches!(self, Health::Healthy(_))
    }

    /// Unhealthy for at least `period`.
    pub fn failed_for(self, period: Duration) -> bool {
        matches!(self, Health::Unhealthy(d) if d >= period)
    }

    /// Healthy for at least `period`.
    pub fn healthy_for(self, period: Duration) -> bool {
        matches!(self, Health::Healthy(d) if d >= period)
    }
}

/// Something an operator should know even when nothing is done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Degradation {
    /// The witness does not answer.
    WitnessLost,
    /// This datacenter was unhealthy at its last observation.
    DatacenterUnhealthy(String),
    /// No recent observation of this datacenter.
    DatacenterUnknown(String),
    /// Both serving datacenters are unhealthy.
    BothDatacentersLost,
}

/// The planner's view, logged and turned into metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub leader: bool,
    /// Each serving datacenter's health, primary first.
    pub datacenters: Vec<(String, Health)>,
    pub witness: Witness,
    pub degraded: Vec<Degradation>,
}

/// The planner's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    /// Set when a change was wanted but a rule held it back.
    pub held_back: Option<HeldBack>,
    /// The fence the action is taken under (the leader key's revision), when leading.
    pub fencing_revision: Option<i64>,
    pub report: Report,
}

/// The current streak of one datacenter's observations.
#[derive(Debug, Clone, Copy)]
struct Streak {
    healthy: bool,
    since: Instant,
    last: Instant,
}

/// The planner: the configuration and each datacenter's health streak.
#[derive(Debug, Clone)]
pub struct Planner {
    config: PlannerConfig,
    streaks: BTreeMap<String, Streak>,
}

impl Planner {
    pub fn new(config: PlannerConfig) -> Planner {
        Planner {
            config,
            streaks: BTreeMap::new(),
        }
    }

    pub fn config(&self) -> &PlannerConfig {
        &self.config
    }

    /// Takes one observation into its datacenter's streak. Observations of unknown
    /// datacenters, and ones older than the latest already taken, are ignored.
    pub fn observe(&mut self, observation: &HealthObservation) {
        if !self.config.datacenters.contains(&observation.datacenter) {
            return;
        }
        let healthy = observation.is_healthy();
        let at = observation.observed_at;
        let stale_after = self.config.detection;
        match self.streaks.get_mut(&observation.datacenter) {
            Some(streak) if at < streak.last => {}
            Some(streak) => {
                // A gap longer than the detection period says nothing about the time in
                // between: the streak starts again.
                if streak.healthy != healthy || at.duration_since(streak.last) > stale_after {
                    streak.since = at;
                }
                streak.healthy = healthy;
                streak.last = at;
            }
            None => {
                self.streaks.insert(
                    observation.datacenter.clone(),
                    Streak {
                        healthy,
                        since: at,
                        last: at,
                    },
                );
            }
        }
    }

    /// `datacenter`'s health as of `now`.
    pub fn health(&self, datacenter: &str, now: Instant) -> Health {
        let Some(streak) = self.streaks.get(datacenter) else {
            return Health::Unknown;
        };
        if now.saturating_duration_since(streak.last) > self.config.detection {
            return Health::Unknown;
        }
        let length = now.saturating_duration_since(streak.since);
        if streak.healthy {
            Health::Healthy(length)
        } else {
            Health::Unhealthy(length)
        }
    }

    /// This controller's own judgments as of `now`, to be stored for the others.
    pub fn view(&self, instance: &str, now: Instant) -> PeerView {
        let mut view = PeerView {
            instance: instance.to_owned(),
            ..PeerView::default()
        };
        for datacenter in &self.config.datacenters {
            let health = self.health(datacenter, now);
            if health != Health::Unknown {
                view.seen.push(datacenter.clone());
            }
            if health.failed_for(self.config.detection) {
                view.failed.push(datacenter.clone());
            }
        }
        view
    }

    /// Whether more than half of the controllers judging `datacenter` — this one, which
    /// judges it failed, and the peers that saw it — judge it failed. Ties do not fail it:
    /// with two controllers, one on each side of a partition, neither can.
    fn confirmed(datacenter: &str, peers: &[PeerView]) -> Result<(), HeldBack> {
        let has = |list: &[String]| list.iter().any(|d| d == datacenter);
        let judging = 1 + peers.iter().filter(|p| has(&p.seen)).count();
        let agreeing = 1 + peers.iter().filter(|p| has(&p.failed)).count();
        if 2 * agreeing > judging {
            Ok(())
        } else {
            Err(HeldBack::NotConfirmed {
                datacenter: datacenter.to_owned(),
                agreeing,
                judging,
            })
        }
    }

    /// What to do now.
    pub fn plan(&self, input: &PlanInput<'_>) -> Decision {
        let report = self.report(input);
        let decide = |action: Action, held_back: Option<HeldBack>| Decision {
            action,
            held_back,
            fencing_revision: input.leadership.map(|l| l.fencing_revision),
            report: report.clone(),
        };
        let act = |action| decide(action, None);
        let hold = |why| decide(Action::Nothing, Some(why));
        if input.leadership.is_none() {
            return hold(HeldBack::NotLeader);
        }
        let Some(state) = input.state else {
            return act(Action::Initialize {
                active: self.config.primary().to_owned(),
            });
        };
        if state.is_moving() {
            // The roles are already given to the new datacenter: finish announcing them.
            return act(if input.announced_epoch == Some(state.epoch) {
                Action::CompleteMove { epoch: state.epoch }
            } else {
                Action::Announce { epoch: state.epoch }
            });
        }
        let active = state.active.as_str();
        let Some(other) = self.config.other(active) else {
            return hold(HeldBack::UnknownActiveDatacenter(active.to_owned()));
        };
        let detection = self.config.detection;
        let (active_health, other_health) = (
            self.health(active, input.now),
            self.health(other, input.now),
        );

        // Forced changes: a failed datacenter, confirmed by the other controllers' views.
        let mut unconfirmed = None;
        if active_health.failed_for(detection) {
            if let Err(why) = Self::confirmed(active, input.peers) {
                return hold(why);
            }
            if other_health.healthy_for(detection) {
                return act(Action::StartFailover {
                    from: active.to_owned(),
                    to: other.to_owned(),
                });
            }
            return hold(HeldBack::BothDatacentersLost);
        }
        if other_health.failed_for(detection) && !state.is_failed(other) {
            match Self::confirmed(other, input.peers) {
                Ok(()) => {
                    return act(Action::MarkFailed {
                        datacenter: other.to_owned(),
                    });
                }
                // Voluntary changes can still be made; the standby stays unmarked.
                Err(why) => unconfirmed = Some(why),
            }
        }

        // Voluntary changes, none while the witness is lost.
        let witness_lost = input.witness == Witness::Unreachable;
        let recovered = [active, other]
            .into_iter()
            .find(|dc| state.is_failed(dc) && self.health(dc, input.now).healthy_for(detection));
        if let Some(datacenter) = recovered {
            if witness_lost {
                return hold(HeldBack::WitnessLost);
            }
            return act(Action::MarkRecovered {
                datacenter: datacenter.to_owned(),
            });
        }
        let (target, trigger, required) = match input.failback_request {
            Some(requested) => {
                let reason = if requested == active {
                    Some(DismissReason::AlreadyActive)
                } else if self.config.other(requested).is_none() {
                    Some(DismissReason::UnknownDatacenter)
                } else {
                    None
                };
                if let Some(reason) = reason {
                    if witness_lost {
                        return hold(HeldBack::WitnessLost);
                    }
                    return act(Action::DismissFailbackRequest {
                        datacenter: requested.to_owned(),
                        reason,
                    });
                }
                (other, FailbackTrigger::Requested, detection)
            }
            None if self.config.automatic_failback && active != self.config.primary() => (
                other,
                FailbackTrigger::Automatic,
                self.config.failback_after,
            ),
            None => {
                return match unconfirmed {
                    Some(why) => hold(why),
                    None => act(Action::Nothing),
                };
            }
        };
        if witness_lost {
            return hold(HeldBack::WitnessLost);
        }
        if !active_health.is_healthy() {
            return hold(HeldBack::ActiveUnhealthy);
        }
        let target_health = other_health;
        if state.is_failed(target) || !target_health.healthy_for(required) {
            let healthy = match target_health {
                Health::Healthy(d) => d,
                _ => Duration::ZERO,
            };
            return hold(HeldBack::FailbackTargetNotStable {
                remaining: required.saturating_sub(healthy),
            });
        }
        act(Action::StartFailback {
            from: active.to_owned(),
            to: target.to_owned(),
            trigger,
        })
    }

    fn report(&self, input: &PlanInput<'_>) -> Report {
        let datacenters: Vec<(String, Health)> = self
            .config
            .datacenters
            .iter()
            .map(|dc| (dc.clone(), self.health(dc, input.now)))
            .collect();
        let mut degraded = Vec::new();
        if input.witness == Witness::Unreachable {
            degraded.push(Degradation::WitnessLost);
        }
        for (dc, health) in &datacenters {
            match health {
                Health::Healthy(_) => {}
                Health::Unhealthy(_) => degraded.push(Degradation::DatacenterUnhealthy(dc.clone())),
                Health::Unknown => degraded.push(Degradation::DatacenterUnknown(dc.clone())),
            }
        }
        if datacenters
            .iter()
            .all(|(_, h)| matches!(h, Health::Unhealthy(_)))
        {
            degraded.push(Degradation::BothDatacentersLost);
        }
        Report {
            leader: input.leadership.is_some(),
            datacenters,
            witness: input.witness,
            degraded,
        }
    }
}
