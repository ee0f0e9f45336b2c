//! The per-source token bucket.
//!
//! Counted in thousandths of a token so that a rate in tokens per second refills exactly
//! `rate` millitokens per millisecond: integer arithmetic, no drift, no floats.

/// Millitokens per token.
const MILLI: u64 = 1000;

/// A token bucket refilled lazily from the time of its last use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TokenBucket {
    millitokens: u64,
    updated_ms: u64,
}

/// The bucket's shape: sustained rate and depth, both at least 1 (a zero would ban every
/// source on its first request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BucketShape {
    pub(crate) rate_per_second: u64,
    pub(crate) burst: u64,
}

impl BucketShape {
    pub(crate) fn new(rate_per_second: u32, burst: u32) -> BucketShape {
        BucketShape {
            rate_per_second: u64::from(rate_per_second.max(1)),
            burst: u64::from(burst.max(1)),
        }
    }

    fn capacity(self) -> u64 {
        self.burst * MILLI
    }
}

impl TokenBucket {
    /// A bucket holding its whole burst: what a source never seen before gets.
    pub(crate) fn full(now_ms: u64, shape: BucketShape) -> TokenBucket {
        TokenBucket {
            millitokens: shape.capacity(),
            updated_ms: now_ms,
        }
    }

    fn refill(&mut self, now_ms: u64, shape: BucketShape) {
        // A clock that steps back (NTP) refills nothing rather than underflowing.
        let elapsed = now_ms.saturating_sub(self.updated_ms);
        let added = elapsed.saturating_mul(shape.rate_per_second);
        self.millitokens = self.millitokens.saturating_add(added).min(shape.capacity());
        self.updated_ms = self.updated_ms.max(now_ms);
    }

    /// Takes one token; false when the bucket is empty (the source exceeds its rate).
    pub(crate) fn try_take(&mut self, now_ms: u64, shape: BucketShape) -> bool {
        self.refill(now_ms, shape);
        if self.millitokens >= MILLI {
            self.millitokens -= MILLI;
            true
        } else {
            false
        }
    }

    /// True when the bucket would be full at `now_ms`, i.e. indistinguishable from a fresh
    /// one: its entry can be forgotten without changing any future decision.
    pub(crate) fn is_full_at(&self, now_ms: u64, shape: BucketShape) -> bool {
        let mut probe = *self;
        probe.refill(now_ms, shape);
        probe.millitokens >= shape.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let shape = BucketShape::new(10, 5);
        let mut bucket = TokenBucket::full(0, shape);
        for _ in 0..5 {
            assert!(bucket.try_take(0, shape));
        }
        assert!(!bucket.try_take(0, shape));
        // 10/s is one token per 100 ms.
        assert!(!bucket.try_take(99, shape));
        assert!(bucket.try_take(100, shape));
        assert!(!bucket.try_take(100, shape));
        assert!(!bucket.is_full_at(100, shape));
        assert!(bucket.is_full_at(600, shape));
    }

    #[test]
    fn a_clock_stepping_back_neither_panics_nor_refills() {
        let shape = BucketShape::new(10, 1);
        let mut bucket = TokenBucket::full(1_000, shape);
        assert!(bucket.try_take(1_000, shape));
        assert!(!bucket.try_take(500, shape));
        assert!(bucket.try_take(1_100, shape));
    }

    #[test]
    fn zero_rate_and_burst_are_raised_to_one() {
        let shape = BucketShape::new(0, 0);
        let mut bucket = TokenBucket::full(0, shape);
        assert!(bucket.try_take(0, shape));
        assert!(!bucket.try_take(0, shape));
        assert!(bucket.try_take(1_000, shape));
    }
}
