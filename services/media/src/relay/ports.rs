//! Port pairs from the configured range: an even RTP port and the RTCP port above it
//! (RFC 3550 §11). Freed pairs go to the back of the queue, so a pair is reused as late as
//! possible and stray packets of the last call on it have long stopped.

use std::collections::{HashSet, VecDeque};

/// An even RTP port and its RTCP port, `rtp + 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortPair {
    pub rtp: u16,
}

impl PortPair {
    pub fn rtcp(self) -> u16 {
        self.rtp + 1
    }
}

/// The configured range holds no whole even/odd pair.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("port range {first}-{last} holds no even RTP port with its RTCP port")]
pub struct PortRangeError {
    pub first: u16,
    pub last: u16,
}

/// Every pair of the range is in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("all {capacity} RTP/RTCP port pairs are in use")]
pub struct PortsExhausted {
    pub capacity: usize,
}

/// Hands out the pairs of one range.
#[derive(Debug, Clone)]
pub struct PortAllocator {
    free: VecDeque<u16>,
    in_use: HashSet<u16>,
    capacity: usize,
}

impl PortAllocator {
    /// Every pair `(p, p + 1)` with `p` even and `first <= p`, `p + 1 <= last`.
    pub fn new(first: u16, last: u16) -> Result<PortAllocator, PortRangeError> {
        let start = u32::from(first).next_multiple_of(2);
        let free: VecDeque<u16> = (start..u32::from(last))
            .step_by(2)
            .filter_map(|p| u16::try_from(p).ok())
            .filter(|&p| p != 0)
            .collect();
        if free.is_empty() {
            return Err(PortRangeError { first, last });
        }
        let capacity = free.len();
        Ok(PortAllocator {
            free,
            in_use: HashSet::with_capacity(capacity),
            capacity,
        })
    }

    /// The least recently freed pair.
    pub fn allocate(&mut self) -> Result<PortPair, PortsExhausted> {
        let rtp = self.free.pop_front().ok_or(PortsExhausted {
            capacity: self.capacity,
        })?;
        self.in_use.insert(rtp);
        Ok(PortPair { rtp })
    }

    /// Returns a pair; a pair not handed out (or already returned) is ignored, so a double
    /// release cannot hand one pair to two sessions.
    pub fn release(&mut self, pair: PortPair) -> bool {
        if self.in_use.remove(&pair.rtp) {
            self.free.push_back(pair.rtp);
            true
        } else {
            false
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn available(&self) -> usize {
        self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_even_and_inside_the_range() {
        let mut ports = PortAllocator::new(20_001, 20_010).unwrap();
        // 20002, 20004, 20006, 20008 (20010 has no 20011 in range).
        assert_eq!(ports.capacity(), 4);
        let mut got = Vec::new();
        while let Ok(pair) = ports.allocate() {
            assert_eq!(pair.rtp % 2, 0);
            assert!(pair.rtp >= 20_001 && pair.rtcp() <= 20_010);
            got.push(pair.rtp);
        }
        assert_eq!(got, vec![20_002, 20_004, 20_006, 20_008]);
        assert_eq!(ports.allocate(), Err(PortsExhausted { capacity: 4 }));
    }

    #[test]
    fn released_pairs_are_reused_last() {
        let mut ports = PortAllocator::new(30_000, 30_005).unwrap();
        let a = ports.allocate().unwrap();
        let b = ports.allocate().unwrap();
        assert!(ports.release(a));
        assert!(!ports.release(a), "double release is ignored");
        let c = ports.allocate().unwrap();
        assert_eq!(
            c.rtp, 30_004,
            "the never-used pair comes before the freed one"
        );
        assert_eq!(ports.allocate().unwrap(), a);
        assert!(ports.allocate().is_err());
        assert!(ports.release(b));
        assert_eq!(ports.available(), 1);
    }

    #[test]
    fn empty_ranges_are_refused() {
        assert!(PortAllocator::new(40_001, 40_001).is_err());
        assert!(PortAllocator::new(40_001, 40_002).is_err());
        assert!(PortAllocator::new(40_000, 40_001).is_ok());
        assert!(PortAllocator::new(65_534, 65_535).is_ok());
        assert!(PortAllocator::new(0, 1).is_err(), "port 0 is not a port");
    }
}
