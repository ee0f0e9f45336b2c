//! The in-memory copy of the location bindings: per AOR, a few compact slots holding the stored
//! protobuf bytes, decoded only when looked up.
//!
//! Two writers race: the watch (events in revision order, possibly late) and the edge's own
//! commits (applied as soon as the transaction returns, usually before the watch delivers them).
//! Every slot carries the `mod_revision` it reflects and nothing older replaces it; a binding
//! this edge deleted leaves a tombstone (a slot without value) until the watch has passed the
//! deletion, so that the watch's late `Put` of the old version cannot resurrect it. A commit
//! whose revision the watch has already delivered in full is ignored outright: the watch state
//! is at least as new. "In full" matters: one transaction (a group commit of many REGISTERs)
//! writes many keys at one revision, and the watch hands them over one by one; a revision is
//! complete only once an event of a later revision arrives.

use std::collections::{BTreeMap, HashMap};

use store::Revision;

use super::keys::ContactKey;

/// One stored binding (or the tombstone of one this edge deleted).
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) contact: ContactKey,
    pub(crate) mod_revision: Revision,
    pub(crate) expires_at: u64,
    /// The stored `LocationBinding` bytes, copied out of the store's buffers (so a large listing
    /// response is not kept alive by a slice of it); `None` for a tombstone.
    pub(crate) value: Option<Box<[u8]>>,
}

impl Slot {
    fn is_live(&self) -> bool {
        self.value.is_some()
    }
}

/// The slots of one AOR.
#[derive(Debug, Default)]
struct AorSlots {
    /// A listing of this AOR taken at this revision was applied: watch events at or below it are
    /// already reflected (or superseded) and are ignored.
    floor: Revision,
    slots: Vec<Slot>,
}

/// A binding as read from the store, ready to be cached.
#[derive(Debug)]
pub(crate) struct Row {
    pub(crate) segment: Box<str>,
    pub(crate) slot: Slot,
}

/// Housekeeping due once the watch passes a revision: a tombstone to drop, or an AOR entry kept
/// only for its floor.
#[derive(Debug)]
struct Pending {
    segment: Box<str>,
    contact: Option<ContactKey>,
}

#[derive(Debug, Default)]
pub(crate) struct Cache {
    aors: HashMap<Box<str>, AorSlots>,
    /// Bindings held (tombstones excluded).
    live: usize,
    /// Every event at or below this revision has been delivered by the watch (or the last full
    /// listing was taken at it).
    watched: Revision,
    /// The highest revision of any event delivered (its events may still be arriving).
    seen: Revision,
    pending: BTreeMap<Revision, Vec<Pending>>,
}

impl Cache {
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    pub(crate) fn watched(&self) -> Revision {
        self.watched
    }

    /// Replaces everything with a full listing taken at `snapshot`, keeping what this edge
    /// committed after the snapshot.
    pub(crate) fn replace_all(&mut self, rows: Vec<Row>, snapshot: Revision) {
        let mut old = std::mem::take(&mut self.aors);
        for row in rows {
            self.aors
                .entry(row.segment)
                .or_default()
                .slots
                .push(row.slot);
        }
        for (segment, aor) in old.drain() {
            for slot in aor.slots.into_iter().filter(|s| s.mod_revision > snapshot) {
                let entry = self.aors.entry(segment.clone()).or_default();
                upsert_slot(&mut entry.slots, slot);
            }
        }
        self.pending = self.pending.split_off(&(snapshot + 1));
        self.watched = snapshot;
        self.seen = self.seen.max(snapshot);
        self.live = self
            .aors
            .values()
            .map(|a| a.slots.iter().filter(|s| s.is_live()).count())
            .sum();
    }

    /// Replaces one AOR with a listing of it taken at `snapshot` (a fresh read).
    pub(crate) fn replace_aor(&mut self, segment: &str, slots: Vec<Slot>, snapshot: Revision) {
        if snapshot <= self.watched {
            // The watch has delivered everything up to the snapshot already.
            return;
        }
        let entry = self.aors.entry(segment.into()).or_default();
        let before = entry.slots.iter().filter(|s| s.is_live()).count();
        let newer: Vec<Slot> = std::mem::take(&mut entry.slots)
            .into_iter()
            .filter(|s| s.mod_revision > snapshot)
            .collect();
        entry.slots = slots;
        for slot in newer {
            upsert_slot(&mut entry.slots, slot);
        }
        entry.floor = entry.floor.max(snapshot);
        let after = entry.slots.iter().filter(|s| s.is_live()).count();
        self.live = self.live + after - before;
        self.pending.entry(snapshot).or_default().push(Pending {
            segment: segment.into(),
            contact: None,
        });
    }

    /// A watch event that changed nothing here (a value that did not decode).
    pub(crate) fn saw(&mut self, revision: Revision) {
        self.delivered(revision);
    }

    /// The watch delivered an event of `revision`: every earlier revision is complete.
    fn delivered(&mut self, revision: Revision) {
        if revision > self.seen {
            self.watched = self.watched.max(self.seen);
            self.seen = revision;
        }
    }

    /// A `Put` from the watch.
    pub(crate) fn watch_put(&mut self, row: Row) {
        self.delivered(row.slot.mod_revision);
        let entry = self.aors.entry(row.segment).or_default();
        if row.slot.mod_revision <= entry.floor {
            return;
        }
        let live = &mut self.live;
        match entry
            .slots
            .iter_mut()
            .find(|s| s.contact == row.slot.contact)
        {
            Some(slot) if slot.mod_revision >= row.slot.mod_revision => {}
            Some(slot) => {
                if !slot.is_live() {
                    *live += 1;
                }
                *slot = row.slot;
            }
            None => {
                *live += 1;
                entry.slots.push(row.slot);
            }
        }
    }

    /// A `Delete` from the watch (explicit or by lease expiry).
    pub(crate) fn watch_delete(&mut self, segment: &str, contact: ContactKey, revision: Revision) {
        self.delivered(revision);
        let Some(entry) = self.aors.get_mut(segment) else {
            return;
        };
        if revision <= entry.floor {
            return;
        }
        if let Some(i) = entry
            .slots
            .iter()
            .position(|s| s.contact == contact && s.mod_revision < revision)
            && entry.slots.swap_remove(i).is_live()
        {
            self.live -= 1;
        }
        if entry.slots.is_empty() && entry.floor <= self.watched {
            self.aors.remove(segment);
        }
    }

    /// Drops tombstones and floors the watch has passed. Called after each batch of events.
    pub(crate) fn prune(&mut self) {
        let keep = self.pending.split_off(&(self.watched + 1));
        let due = std::mem::replace(&mut self.pending, keep);
        for pending in due.into_values().flatten() {
            let Some(entry) = self.aors.get_mut(&pending.segment) else {
                continue;
            };
            if let Some(contact) = pending.contact {
                entry.slots.retain(|s| {
                    s.contact != contact || s.is_live() || s.mod_revision > self.watched
                });
            }
            if entry.slots.is_empty() && entry.floor <= self.watched {
                self.aors.remove(&pending.segment);
            }
        }
    }

    /// This edge's own commit at `revision`: `puts` written, `deletes` removed.
    pub(crate) fn commit(
        &mut self,
        segment: &str,
        revision: Revision,
        puts: Vec<Slot>,
        deletes: &[ContactKey],
    ) {
        if revision <= self.watched {
            // The watch already delivered this commit in full (and maybe later changes).
            return;
        }
        // Otherwise the watch may have delivered part of this revision's keys (and nothing
        // later): upsert_slot keeps whichever copy is at least as new.
        let entry = self.aors.entry(segment.into()).or_default();
        for slot in puts {
            let was_live = entry
                .slots
                .iter()
                .any(|s| s.contact == slot.contact && s.is_live());
            if upsert_slot(&mut entry.slots, slot) && !was_live {
                self.live += 1;
            }
        }
        for &contact in deletes {
            let tombstone = Slot {
                contact,
                mod_revision: revision,
                expires_at: 0,
                value: None,
            };
            let was_live = entry
                .slots
                .iter()
                .any(|s| s.contact == contact && s.is_live());
            if upsert_slot(&mut entry.slots, tombstone) {
                if was_live {
                    self.live -= 1;
                }
                self.pending.entry(revision).or_default().push(Pending {
                    segment: segment.into(),
                    contact: Some(contact),
                });
            }
        }
    }

    /// The live slots of an AOR.
    pub(crate) fn slots<'c>(&'c self, segment: &str) -> impl Iterator<Item = &'c Slot> + 'c {
        self.aors
            .get(segment)
            .into_iter()
            .flat_map(|a| a.slots.iter())
            .filter(|s| s.is_live())
    }

    /// Every live slot with its AOR segment.
    pub(crate) fn all_slots(&self) -> impl Iterator<Item = (&str, &Slot)> + '_ {
        self.aors.iter().flat_map(|(segment, aor)| {
            aor.slots
                .iter()
                .filter(|s| s.is_live())
                .map(move |s| (&**segment, s))
        })
    }

    /// The heap this cache uses, estimated from capacities and lengths (allocator overhead
    /// excluded): what [`super::LocationService::approx_bytes_per_binding`] divides.
    pub(crate) fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        let table = self.aors.capacity() * (size_of::<(Box<str>, AorSlots)>() + 1);
        let per_aor: usize = self
            .aors
            .iter()
            .map(|(segment, aor)| {
                segment.len()
                    + aor.slots.capacity() * size_of::<Slot>()
                    + aor
                        .slots
                        .iter()
                        .map(|s| s.value.as_ref().map_or(0, |v| v.len()))
                        .sum::<usize>()
            })
            .sum();
        let pending: usize = self
            .pending
            .values()
            .map(|v| v.capacity() * size_of::<Pending>() + 64)
            .sum();
        table + per_aor + pending
    }
}

/// Writes `slot` unless the slot of that contact already reflects the same or a later revision;
/// true when written.
fn upsert_slot(slots: &mut Vec<Slot>, slot: Slot) -> bool {
    match slots.iter_mut().find(|s| s.contact == slot.contact) {
        Some(existing) if existing.mod_revision >= slot.mod_revision => false,
        Some(existing) => {
            *existing = slot;
            true
        }
        None => {
            slots.push(slot);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(contact: u8, revision: Revision) -> Slot {
        Slot {
            contact: ContactKey([contact; 16]),
            mod_revision: revision,
            expires_at: 100,
            value: Some(vec![contact].into_boxed_slice()),
        }
    }

    fn row(segment: &str, contact: u8, revision: Revision) -> Row {
        Row {
            segment: segment.into(),
            slot: slot(contact, revision),
        }
    }

    fn revisions(cache: &Cache, segment: &str) -> Vec<(u8, Revision)> {
        let mut out: Vec<_> = cache
            .slots(segment)
            .map(|s| (s.contact.0[0], s.mod_revision))
            .collect();
        out.sort();
        out
    }

    #[test]
    fn a_late_watch_put_does_not_regress_a_commit() {
        let mut cache = Cache::default();
        cache.commit("a", 5, vec![slot(1, 5)], &[]);
        cache.watch_put(row("a", 1, 3));
        assert_eq!(revisions(&cache, "a"), vec![(1, 5)]);
        cache.watch_put(row("a", 1, 5));
        assert_eq!(revisions(&cache, "a"), vec![(1, 5)]);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_tombstone_stops_a_late_put_until_the_watch_passes_it() {
        let mut cache = Cache::default();
        cache.watch_put(row("a", 1, 2));
        cache.commit("a", 4, vec![], &[ContactKey([1; 16])]);
        assert_eq!(cache.len(), 0);
        // The watch delivers the put of revision 3, then our delete of 4.
        cache.watch_put(row("a", 1, 3));
        cache.prune();
        assert_eq!(cache.len(), 0);
        cache.watch_delete("a", ContactKey([1; 16]), 4);
        cache.prune();
        assert_eq!(cache.len(), 0);
        // Revision 4 is complete once the watch moves past it (another AOR's put at 5).
        cache.watch_put(row("b", 2, 5));
        cache.prune();
        assert_eq!(cache.len(), 1);
        assert!(
            !cache.aors.contains_key("a"),
            "tombstone and AOR entry pruned"
        );
        assert!(cache.pending.is_empty());
    }

    #[test]
    fn a_commit_the_watch_already_passed_is_ignored() {
        let mut cache = Cache::default();
        cache.watch_put(row("a", 1, 4));
        cache.watch_delete("a", ContactKey([1; 16]), 6);
        cache.commit("a", 4, vec![slot(1, 4)], &[]);
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn a_commit_of_a_revision_the_watch_delivered_in_part_still_lands() {
        // One group commit wrote keys of AORs a and b at revision 7; the watch has handed over
        // a's key only when b's apply updates the cache.
        let mut cache = Cache::default();
        cache.watch_put(row("a", 1, 7));
        cache.commit("b", 7, vec![slot(2, 7)], &[]);
        assert_eq!(
            cache.len(),
            2,
            "b's binding must be visible as soon as apply returns"
        );
        cache.watch_put(row("b", 2, 7));
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn a_fresh_read_sets_a_floor() {
        let mut cache = Cache::default();
        cache.watch_put(row("a", 1, 2));
        // The store at 9: contact 1 gone (deleted at 7), contact 2 written at 8.
        cache.replace_aor("a", vec![slot(2, 8)], 9);
        assert_eq!(revisions(&cache, "a"), vec![(2, 8)]);
        // The watch catches up: put 2@8 of contact 1? No: put 1@5 then delete 1@7, put 2@8.
        cache.watch_put(row("a", 1, 5));
        assert_eq!(revisions(&cache, "a"), vec![(2, 8)]);
        cache.watch_delete("a", ContactKey([1; 16]), 7);
        cache.watch_put(row("a", 2, 8));
        cache.watch_put(row("a", 2, 10));
        assert_eq!(revisions(&cache, "a"), vec![(2, 10)]);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_full_reload_keeps_newer_commits() {
        let mut cache = Cache::default();
        cache.watch_put(row("a", 1, 2));
        cache.commit("b", 12, vec![slot(3, 12)], &[]);
        cache.replace_all(vec![row("a", 2, 9)], 10);
        assert_eq!(revisions(&cache, "a"), vec![(2, 9)]);
        assert_eq!(revisions(&cache, "b"), vec![(3, 12)]);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.watched(), 10);
    }
}
