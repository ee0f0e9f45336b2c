//! What the edge remembers about each untrusted source: its token bucket and its recent
//! authentication failures, in a table bounded against spoofed-source floods.
//!
//! An entry whose bucket has refilled and whose failure window has passed is
//! indistinguishable from no entry, so it is dropped first when the table is full. If every
//! entry is still live (a flood from more distinct addresses than the bound within a couple of
//! seconds), the least recently seen quarter is evicted at once, so that eviction costs O(1)
//! amortised per new source instead of a scan per packet. A real flooder is by definition
//! recently seen, so it keeps its entry.

use std::collections::HashMap;
use std::net::IpAddr;

use super::rate::{BucketShape, TokenBucket};

/// One source's state.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SourceState {
    pub(crate) bucket: TokenBucket,
    pub(crate) last_seen_ms: u64,
    /// Failures counted in the window that started at `auth_window_start_ms`.
    pub(crate) auth_failures: u32,
    pub(crate) auth_window_start_ms: u64,
}

/// The bounded table of source states.
#[derive(Debug)]
pub(crate) struct SourceTable {
    // std's SipHash with a random key: the keys are attacker-chosen addresses.
    states: HashMap<IpAddr, SourceState>,
    max: usize,
    shape: BucketShape,
    auth_window_ms: u64,
}

impl SourceTable {
    pub(crate) fn new(max: usize, shape: BucketShape, auth_window_ms: u64) -> SourceTable {
        SourceTable {
            states: HashMap::new(),
            max: max.max(1),
            shape,
            auth_window_ms,
        }
    }

    pub(crate) fn shape(&self) -> BucketShape {
        self.shape
    }

    pub(crate) fn auth_window_ms(&self) -> u64 {
        self.auth_window_ms
    }

    pub(crate) fn len(&self) -> usize {
        self.states.len()
    }

    /// The state of `key`, created with a full bucket (evicting others if the table is full).
    pub(crate) fn entry(&mut self, now_ms: u64, key: IpAddr) -> &mut SourceState {
        if !self.states.contains_key(&key) && self.states.len() >= self.max {
            self.make_room(now_ms);
        }
        let shape = self.shape;
        let state = self.states.entry(key).or_insert_with(|| SourceState {
            bucket: TokenBucket::full(now_ms, shape),
            last_seen_ms: now_ms,
            auth_failures: 0,
            auth_window_start_ms: now_ms,
        });
        state.last_seen_ms = state.last_seen_ms.max(now_ms);
        state
    }

    pub(crate) fn get_mut(&mut self, key: IpAddr) -> Option<&mut SourceState> {
        self.states.get_mut(&key)
    }

    pub(crate) fn remove(&mut self, key: IpAddr) {
        self.states.remove(&key);
    }

    /// Drops every entry that no longer affects a decision.
    pub(crate) fn purge(&mut self, now_ms: u64) {
        let (shape, window) = (self.shape, self.auth_window_ms);
        self.states
            .retain(|_, state| !is_forgettable(state, now_ms, shape, window));
    }

    fn make_room(&mut self, now_ms: u64) {
        self.purge(now_ms);
        if self.states.len() < self.max {
            return;
        }
        let keep = self.max - self.max / 4;
        let excess = self.states.len().saturating_sub(keep).max(1);
        let mut by_age: Vec<(u64, IpAddr)> = self
            .states
            .iter()
            .map(|(key, state)| (state.last_seen_ms, *key))
            .collect();
        if excess < by_age.len() {
            by_age.select_nth_unstable(excess);
        }
        for (_, key) in by_age.iter().take(excess) {
            self.states.remove(key);
        }
    }
}

fn is_forgettable(state: &SourceState, now_ms: u64, shape: BucketShape, window_ms: u64) -> bool {
    let failures_expired =
        state.auth_failures == 0 || now_ms.saturating_sub(state.auth_window_start_ms) >= window_ms;
    failures_expired && state.bucket.is_full_at(now_ms, shape)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(n))
    }

    #[test]
    fn a_full_table_of_live_sources_evicts_the_least_recently_seen() {
        let shape = BucketShape::new(1, 10);
        let mut table = SourceTable::new(100, shape, 60_000);
        for n in 0..100 {
            // Each takes a token so that its entry stays live.
            let state = table.entry(n.into(), ip(n));
            assert!(state.bucket.try_take(n.into(), shape));
        }
        assert_eq!(table.len(), 100);
        table.entry(100, ip(100));
        assert!(table.len() <= 100);
        assert!(table.get_mut(ip(0)).is_none(), "the oldest was kept");
        assert!(table.get_mut(ip(99)).is_some(), "the newest was evicted");
        assert!(table.get_mut(ip(100)).is_some());
    }

    #[test]
    fn idle_entries_are_purged_and_live_ones_kept() {
        let shape = BucketShape::new(10, 10);
        let mut table = SourceTable::new(10, shape, 1_000);
        table.entry(0, ip(1)).bucket.try_take(0, shape);
        let failing = table.entry(0, ip(2));
        failing.auth_failures = 1;
        table.purge(999);
        assert_eq!(
            table.len(),
            1,
            "the refilled source should go, the failing one stay"
        );
        table.purge(1_000);
        assert_eq!(table.len(), 0);
    }
}
