//! Deadlines of every transaction in one binary heap with lazy deletion: re-arming or
//! cancelling a timer only changes the transaction's slot; stale heap entries are skipped
//! when they surface, and the heap is rebuilt when stale entries outnumber live ones.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use super::key::TransactionKey;

/// The four timer slots a transaction can arm at once. Each RFC timer maps to one slot:
/// A/E/G retransmit, B/F/H give up, D/I/J/K/L/M linger before termination, and the
/// INVITE server's 200 ms 100-Trying delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum TimerSlot {
    Retransmit = 0,
    Timeout = 1,
    Linger = 2,
    Trying = 3,
}

pub(crate) const SLOTS: usize = 4;

/// The armed deadlines of one transaction, indexed by [`TimerSlot`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Deadlines([Option<Instant>; SLOTS]);

impl Deadlines {
    pub(crate) fn get(&self, slot: TimerSlot) -> Option<Instant> {
        self.0[slot as usize]
    }

    pub(crate) fn clear(&mut self, slot: TimerSlot) {
        self.0[slot as usize] = None;
    }
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    at: Instant,
    /// Insertion order: equal deadlines fire in the order they were armed (determinism).
    seq: u64,
    key: TransactionKey,
    slot: TimerSlot,
}

/// A min-heap of (deadline, transaction, slot).
#[derive(Debug, Default)]
pub(crate) struct TimerQueue {
    heap: BinaryHeap<Reverse<Entry>>,
    seq: u64,
}

impl TimerQueue {
    /// Arms `slot` of a transaction at `at`, replacing any earlier deadline of that slot.
    pub(crate) fn arm(
        &mut self,
        deadlines: &mut Deadlines,
        key: TransactionKey,
        slot: TimerSlot,
        at: Instant,
    ) {
        deadlines.0[slot as usize] = Some(at);
        self.seq += 1;
        self.heap.push(Reverse(Entry {
            at,
            seq: self.seq,
            key,
            slot,
        }));
    }

    /// The earliest entry due at or before `now`, removed from the heap. The caller checks
    /// it against the transaction's [`Deadlines`] (it may be stale).
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(TransactionKey, TimerSlot, Instant)> {
        let Reverse(top) = self.heap.peek()?;
        if top.at > now {
            return None;
        }
        let Reverse(e) = self.heap.pop()?;
        Some((e.key, e.slot, e.at))
    }

    /// The earliest deadline still live according to `is_live`; stale entries on top are
    /// discarded on the way.
    pub(crate) fn next_deadline(
        &mut self,
        is_live: impl Fn(TransactionKey, TimerSlot, Instant) -> bool,
    ) -> Option<Instant> {
        while let Some(Reverse(top)) = self.heap.peek() {
            if is_live(top.key, top.slot, top.at) {
                return Some(top.at);
            }
            self.heap.pop();
        }
        None
    }

    /// Drops stale entries when they are more than `4 × live_transactions + 1024`, so the heap
    /// stays proportional to the live timers however often they are re-armed (amortised O(1)).
    pub(crate) fn compact_if_bloated(
        &mut self,
        live_transactions: usize,
        is_live: impl Fn(TransactionKey, TimerSlot, Instant) -> bool,
    ) {
        if self.heap.len() <= live_transactions * SLOTS + 1024 {
            return;
        }
        let entries = std::mem::take(&mut self.heap).into_vec();
        self.heap = entries
            .into_iter()
            .filter(|Reverse(e)| is_live(e.key, e.slot, e.at))
            .collect();
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::transaction::key::Role;

    #[allow(clippy::disallowed_methods)] // one reading, then a virtual clock
    fn base() -> Instant {
        Instant::now()
    }

    fn live(d: &Deadlines) -> impl Fn(TransactionKey, TimerSlot, Instant) -> bool + '_ {
        move |_, s, at| d.get(s) == Some(at)
    }

    #[test]
    fn rearming_leaves_stale_entries_that_are_skipped_and_compacted_away() {
        let t0 = base();
        let key = TransactionKey::new(0, 0, Role::Client, true);
        let mut deadlines = Deadlines::default();
        let mut q = TimerQueue::default();
        for i in 1..=5000u64 {
            q.arm(
                &mut deadlines,
                key,
                TimerSlot::Retransmit,
                t0 + Duration::from_millis(i),
            );
        }
        assert_eq!(
            q.next_deadline(live(&deadlines)),
            Some(t0 + Duration::from_millis(5000))
        );
        q.compact_if_bloated(1, live(&deadlines));
        assert_eq!(q.len(), 1, "only the live deadline survives compaction");
        deadlines.clear(TimerSlot::Retransmit);
        assert_eq!(q.next_deadline(live(&deadlines)), None);
    }

    #[test]
    fn equal_deadlines_pop_in_arming_order() {
        let t0 = base();
        let (a, b) = (
            TransactionKey::new(1, 0, Role::Server, false),
            TransactionKey::new(0, 0, Role::Server, false),
        );
        let (mut da, mut db) = (Deadlines::default(), Deadlines::default());
        let mut q = TimerQueue::default();
        q.arm(&mut da, a, TimerSlot::Linger, t0);
        q.arm(&mut db, b, TimerSlot::Linger, t0);
        assert_eq!(q.pop_due(t0).map(|e| e.0), Some(a));
        assert_eq!(q.pop_due(t0).map(|e| e.0), Some(b));
        assert_eq!(q.pop_due(t0), None);
    }
}
