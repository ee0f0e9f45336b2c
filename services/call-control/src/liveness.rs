//! Which replicas (media relays, SIP edges) are alive, from their heartbeats (ADR 0020),
//! sans-IO: the service feeds each heartbeat and the time, and asks which replicas died since
//! it last asked. A replica is dead once three of its intervals pass without a heartbeat (NATS
//! delivers at most once: one lost heartbeat is not a death). A dead replica that beats again
//! is alive again; its sessions were moved meanwhile.
//!
//! A replica never heard of is not dead: after a restart this replica knows nothing until
//! the first heartbeats, and a call stored with an unheard-of relay is left alone.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Heartbeats missed before a replica is declared dead.
pub const MISSED_BEATS: u32 = 3;

#[derive(Debug, Clone)]
struct Replica {
    datacenter: String,
    last_seen: Instant,
    interval: Duration,
    dead: bool,
}

impl Replica {
    fn deadline(&self) -> Instant {
        self.last_seen + self.interval * MISSED_BEATS
    }
}

/// The replicas of one kind this call-control replica has heard of.
#[derive(Debug, Default)]
pub struct Liveness {
    replicas: HashMap<String, Replica>,
}

impl Liveness {
    /// A heartbeat from `instance` (a relay or an edge, in `datacenter`, beating every
    /// `interval`) at `now`.
    pub fn observe(&mut self, now: Instant, instance: &str, datacenter: &str, interval: Duration) {
        let replica = self
            .replicas
            .entry(instance.to_owned())
            .or_insert_with(|| Replica {
                datacenter: datacenter.to_owned(),
                last_seen: now,
                interval,
                dead: false,
            });
        if replica.dead {
            tracing::info!(%instance, "replica beats again");
        }
        replica.datacenter = datacenter.to_owned();
        replica.last_seen = now;
        replica.interval = interval;
        replica.dead = false;
    }

    /// The replicas that died since the last call (silent for [`MISSED_BEATS`] intervals by
    /// `now`), each reported once.
    pub fn newly_dead(&mut self, now: Instant) -> Vec<String> {
        let mut dead: Vec<String> = self
            .replicas
            .iter_mut()
            .filter(|(_, r)| !r.dead && r.deadline() <= now)
            .map(|(id, r)| {
                r.dead = true;
                id.clone()
            })
            .collect();
        dead.sort();
        dead
    }

    /// When the next live replica would be dead if it stays silent.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.replicas
            .values()
            .filter(|r| !r.dead)
            .map(Replica::deadline)
            .min()
    }

    /// Whether `media_id` was heard of and then fell silent.
    pub fn is_dead(&self, media_id: &str) -> bool {
        self.replicas.get(media_id).is_some_and(|r| r.dead)
    }

    /// The datacenter `media_id` said it is in (None: never heard of, or it did not say).
    pub fn datacenter_of(&self, media_id: &str) -> Option<&str> {
        self.replicas
            .get(media_id)
            .map(|r| r.datacenter.as_str())
            .filter(|dc| !dc.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEAT: Duration = Duration::from_secs(1);

    #[allow(clippy::disallowed_methods)] // the origin of the virtual clock
    fn origin() -> Instant {
        Instant::now()
    }

    #[test]
    fn a_replica_is_dead_after_three_silent_intervals_and_reported_once() {
        let t0 = origin();
        let mut live = Liveness::default();
        live.observe(t0, "m-a", "dc-a", BEAT);
        live.observe(t0, "m-b", "dc-b", BEAT);
        assert_eq!(live.next_deadline(), Some(t0 + 3 * BEAT));
        // One and two lost heartbeats are not a death.
        live.observe(t0 + 2 * BEAT, "m-b", "dc-b", BEAT);
        assert!(live.newly_dead(t0 + 2 * BEAT).is_empty());
        assert_eq!(live.newly_dead(t0 + 3 * BEAT), vec!["m-a".to_owned()]);
        assert!(live.is_dead("m-a") && !live.is_dead("m-b"));
        assert!(live.newly_dead(t0 + 4 * BEAT).is_empty(), "reported once");
        assert_eq!(live.newly_dead(t0 + 5 * BEAT), vec!["m-b".to_owned()]);
        assert_eq!(live.next_deadline(), None);
    }

    #[test]
    fn a_dead_replica_that_beats_again_is_alive_and_can_die_again() {
        let t0 = origin();
        let mut live = Liveness::default();
        live.observe(t0, "m-a", "dc-a", BEAT);
        assert_eq!(live.newly_dead(t0 + 3 * BEAT).len(), 1);
        live.observe(t0 + 10 * BEAT, "m-a", "dc-a", BEAT);
        assert!(!live.is_dead("m-a"));
        assert_eq!(live.newly_dead(t0 + 13 * BEAT), vec!["m-a".to_owned()]);
    }

    #[test]
    fn an_unknown_replica_is_not_dead_and_has_no_datacenter() {
        let mut live = Liveness::default();
        assert!(!live.is_dead("m-x"));
        assert_eq!(live.datacenter_of("m-x"), None);
        live.observe(origin(), "m-y", "", BEAT);
        assert_eq!(
            live.datacenter_of("m-y"),
            None,
            "an empty datacenter is none"
        );
    }
}
