//! The ban list: source keys and when their bans end, with an expiry index so that expired
//! bans are purged, and the bound enforced, without scanning the whole list.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

/// Bans by source key, bounded.
#[derive(Debug)]
pub(crate) struct BanList {
    until_by_source: HashMap<IpAddr, u64>,
    by_expiry: BTreeSet<(u64, IpAddr)>,
    max: usize,
}

impl BanList {
    pub(crate) fn new(max: usize) -> BanList {
        BanList {
            until_by_source: HashMap::new(),
            by_expiry: BTreeSet::new(),
            max: max.max(1),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.until_by_source.len()
    }

    pub(crate) fn is_banned(&self, now_ms: u64, key: IpAddr) -> bool {
        self.until_by_source
            .get(&key)
            .is_some_and(|until| *until > now_ms)
    }

    /// Bans `key` until `until_ms`. Returns false when that changes nothing: the ban has
    /// already ended, or an existing ban lasts at least as long (a shorter ban from another
    /// replica must not cut a longer one short).
    pub(crate) fn insert(&mut self, now_ms: u64, key: IpAddr, until_ms: u64) -> bool {
        if until_ms <= now_ms {
            return false;
        }
        if let Some(existing) = self.until_by_source.get(&key).copied() {
            if existing >= until_ms {
                return false;
            }
            self.by_expiry.remove(&(existing, key));
        } else if self.until_by_source.len() >= self.max {
            self.purge(now_ms);
            if self.until_by_source.len() >= self.max {
                // Full of live bans: the one ending soonest loses the least.
                if let Some((_, soonest)) = self.by_expiry.pop_first() {
                    self.until_by_source.remove(&soonest);
                }
            }
        }
        self.until_by_source.insert(key, until_ms);
        self.by_expiry.insert((until_ms, key));
        true
    }

    /// Removes every ban that has ended.
    pub(crate) fn purge(&mut self, now_ms: u64) {
        while let Some(&(until, key)) = self.by_expiry.first() {
            if until > now_ms {
                break;
            }
            self.by_expiry.pop_first();
            self.until_by_source.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(n))
    }

    #[test]
    fn bans_end_at_their_time_and_only_lengthen() {
        let mut bans = BanList::new(10);
        assert!(bans.insert(0, ip(1), 1_000));
        assert!(
            !bans.insert(0, ip(1), 500),
            "a shorter ban shortened a longer one"
        );
        assert!(bans.is_banned(999, ip(1)));
        assert!(!bans.is_banned(1_000, ip(1)));
        assert!(bans.insert(0, ip(1), 2_000));
        assert!(bans.is_banned(1_500, ip(1)));
        assert!(
            !bans.insert(5_000, ip(2), 5_000),
            "an expired ban was applied"
        );
        bans.purge(2_000);
        assert_eq!(bans.len(), 0);
    }

    #[test]
    fn a_full_list_drops_the_ban_ending_soonest() {
        let mut bans = BanList::new(3);
        for n in 1..=3 {
            assert!(bans.insert(0, ip(n), 1_000 * u64::from(n)));
        }
        assert!(bans.insert(0, ip(4), 10_000));
        assert_eq!(bans.len(), 3);
        assert!(!bans.is_banned(0, ip(1)));
        assert!(bans.is_banned(0, ip(2)) && bans.is_banned(0, ip(3)) && bans.is_banned(0, ip(4)));
    }
}
