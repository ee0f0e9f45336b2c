//! The hand-offs already taken (ADR 0020): an edge sends a hand-off again when its
//! acknowledgement does not come in time (a replica across a partition swallowed it), and
//! the queue group may give the copy to the replica that got the first one after all. A
//! request is handled once: by edge and transaction handle, remembered for the life of a
//! server transaction (64 × T1).

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

/// How long a hand-off is remembered.
const REMEMBERED: Duration = Duration::from_secs(32);

#[derive(Debug, Default)]
pub(super) struct RecentHandOffs {
    seen: HashSet<(String, String)>,
    order: VecDeque<(Instant, (String, String))>,
}

impl RecentHandOffs {
    /// Whether the hand-off of transaction `handle` from `edge_id` is new (and remembers it).
    pub(super) fn first_time(&mut self, now: Instant, edge_id: &str, handle: &str) -> bool {
        while let Some((at, _)) = self.order.front()
            && now.saturating_duration_since(*at) > REMEMBERED
        {
            if let Some((_, key)) = self.order.pop_front() {
                self.seen.remove(&key);
            }
        }
        let key = (edge_id.to_owned(), handle.to_owned());
        if self.seen.contains(&key) {
            return false;
        }
        self.seen.insert(key.clone());
        self.order.push_back((now, key));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::disallowed_methods)] // the origin of the virtual clock
    fn origin() -> Instant {
        Instant::now()
    }

    #[test]
    fn a_copy_is_refused_until_the_transaction_is_long_over() {
        let t0 = origin();
        let mut recent = RecentHandOffs::default();
        assert!(recent.first_time(t0, "edge-a", "t1"));
        assert!(!recent.first_time(t0 + Duration::from_secs(1), "edge-a", "t1"));
        assert!(
            recent.first_time(t0, "edge-b", "t1"),
            "another edge's handle"
        );
        assert!(recent.first_time(t0, "edge-a", "t2"));
        assert!(recent.first_time(t0 + Duration::from_secs(40), "edge-a", "t1"));
    }
}
