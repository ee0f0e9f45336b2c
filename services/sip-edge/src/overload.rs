//! Load shedding by queueing delay (RFC 7339's motivation, decided locally): when the
//! datagrams the engine takes have waited longer than a target *and* many more are waiting,
//! the edge is behind, and every request it admits waits behind the backlog, the failover
//! controllers' OPTIONS probes among them (a registration storm of 6,000 phones after a
//! datacenter came back left them unanswered for ~6 s, over half the detection period).
//!
//! While shedding, the engine answers a REGISTER that starts an exchange (no credentials yet)
//! 503 with a spread Retry-After instead of challenging it: no new registration work is taken
//! in, and the exchanges already under way (their authenticated REGISTERs), calls and OPTIONS
//! go on. Shedding stops as soon as the backlog is short, or once the datagrams taken have
//! stayed fresh for a hold time; a single slow moment (a short CPU stall with little queued)
//! never refuses anyone, and a datagram that came in a gap of the burst (fresh, with thousands
//! still queued behind it) does not stop shedding for a few milliseconds.
//!
//! Sans-IO: the engine passes the time, each datagram's wait and the backlog behind it.

use std::time::{Duration, Instant};

/// When the edge sheds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverloadConfig {
    /// A datagram that waited longer than this before the engine took it means the edge is
    /// behind; keep it under the failover controller's probe timeout. Zero: never shed.
    pub target_delay: Duration,
    /// ...if at least this many datagrams are still waiting behind it.
    pub min_backlog: usize,
    /// The Retry-After of a shed REGISTER is spread over `[retry_after, 2 × retry_after]`
    /// seconds, so the phones refused together do not come back together.
    pub retry_after_secs: u32,
    /// While shedding with a long backlog, how long the datagrams taken must stay fresh before
    /// shedding stops (hysteresis: the storm of `make e2e-ha` stopped it for 27 ms with 4,657
    /// still queued, on one datagram that had come in a gap of the burst).
    pub hold: Duration,
}

impl Default for OverloadConfig {
    fn default() -> Self {
        OverloadConfig {
            // The failover controller's probe timeout is its probe interval: 250 ms in the
            // e2e, 500 ms in the chart.
            target_delay: Duration::from_millis(150),
            min_backlog: 64,
            retry_after_secs: 5,
            hold: Duration::from_millis(200),
        }
    }
}

/// Whether the edge is shedding now, from the last datagram taken.
#[derive(Debug, Clone)]
pub struct Overload {
    config: OverloadConfig,
    shedding: bool,
    /// While shedding: since when every datagram taken has been fresh.
    fresh_since: Option<Instant>,
    /// Requests shed since shedding last started (for the log line when it stops).
    shed_this_episode: u64,
}

/// A change of state the engine logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Started { waited: Duration, backlog: usize },
    Stopped { shed: u64 },
}

impl Overload {
    pub fn new(config: OverloadConfig) -> Overload {
        Overload {
            config,
            shedding: false,
            fresh_since: None,
            shed_this_episode: 0,
        }
    }

    /// A datagram taken at `now` after waiting `waited`, with `backlog` more still queued.
    pub fn observe(
        &mut self,
        now: Instant,
        waited: Duration,
        backlog: usize,
    ) -> Option<Transition> {
        let late = !self.config.target_delay.is_zero() && waited > self.config.target_delay;
        let backed_up = backlog >= self.config.min_backlog;
        if !self.shedding {
            if late && backed_up {
                self.shedding = true;
                self.fresh_since = None;
                self.shed_this_episode = 0;
                return Some(Transition::Started { waited, backlog });
            }
            return None;
        }
        let caught_up = if !backed_up || self.config.target_delay.is_zero() {
            true
        } else if late {
            self.fresh_since = None;
            false
        } else {
            let since = *self.fresh_since.get_or_insert(now);
            now.saturating_duration_since(since) >= self.config.hold
        };
        if !caught_up {
            return None;
        }
        self.shedding = false;
        Some(Transition::Stopped {
            shed: self.shed_this_episode,
        })
    }

    pub fn shedding(&self) -> bool {
        self.shedding
    }

    /// Counts one shed request and returns its Retry-After in seconds: `spread` in [0, 1)
    /// places it within `[retry_after, 2 × retry_after]`.
    pub fn shed(&mut self, spread: f64) -> u32 {
        self.shed_this_episode += 1;
        let base = self.config.retry_after_secs;
        let extra = (f64::from(base) * spread.clamp(0.0, 1.0)).round();
        // `extra` is within [0, base]: the cast cannot truncate.
        base + extra as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn overload() -> Overload {
        Overload::new(OverloadConfig {
            target_delay: MS(150),
            min_backlog: 64,
            retry_after_secs: 5,
            hold: MS(200),
        })
    }

    #[test]
    fn sheds_only_when_late_and_backed_up() {
        let (mut o, t) = (overload(), crate::clock::monotonic());
        // Fresh datagrams, however many queued: a burst being taken in time.
        assert_eq!(o.observe(t, MS(10), 10_000), None);
        // Late, little queued: a short stall, nothing to shed for.
        assert_eq!(o.observe(t, MS(900), 3), None);
        assert!(!o.shedding());
        // Late and backed up: behind.
        assert_eq!(
            o.observe(t, MS(151), 64),
            Some(Transition::Started {
                waited: MS(151),
                backlog: 64
            })
        );
        assert!(o.shedding());
        assert_eq!(o.observe(t, MS(400), 500), None, "already shedding");
    }

    #[test]
    fn stops_at_once_when_the_backlog_is_short_and_reports_what_it_shed() {
        let (mut o, t) = (overload(), crate::clock::monotonic());
        o.observe(t, MS(300), 1_000);
        o.shed(0.0);
        o.shed(0.5);
        assert_eq!(
            o.observe(t, MS(300), 10),
            Some(Transition::Stopped { shed: 2 }),
            "late, but little left to take"
        );
        assert!(!o.shedding());
        o.observe(t, MS(300), 1_000);
        assert_eq!(
            o.observe(t, MS(5), 63),
            Some(Transition::Stopped { shed: 0 }),
            "the count starts again with each episode"
        );
    }

    #[test]
    fn with_a_long_backlog_stops_only_after_staying_fresh_for_the_hold() {
        let (mut o, t) = (overload(), crate::clock::monotonic());
        o.observe(t, MS(300), 5_000);
        // A datagram that came in a gap of the burst: fresh, thousands still behind it.
        assert_eq!(o.observe(t + MS(10), MS(20), 4_657), None);
        assert_eq!(o.observe(t + MS(40), MS(30), 4_600), None);
        // Late again: the hold starts over.
        assert_eq!(o.observe(t + MS(150), MS(400), 4_000), None);
        assert_eq!(o.observe(t + MS(160), MS(20), 3_000), None);
        assert_eq!(o.observe(t + MS(359), MS(20), 2_000), None);
        assert!(o.shedding());
        assert_eq!(
            o.observe(t + MS(360), MS(20), 1_000),
            Some(Transition::Stopped { shed: 0 }),
            "fresh for 200 ms"
        );
    }

    #[test]
    fn retry_after_is_spread_over_one_to_two_base_periods() {
        let mut o = overload();
        assert_eq!(o.shed(0.0), 5);
        assert_eq!(o.shed(0.5), 8);
        assert_eq!(o.shed(0.999), 10);
        assert_eq!(o.shed(7.0), 10, "clamped");
        assert_eq!(o.shed(-1.0), 5, "clamped");
    }

    #[test]
    fn a_zero_target_never_sheds() {
        let mut o = Overload::new(OverloadConfig {
            target_delay: Duration::ZERO,
            ..OverloadConfig::default()
        });
        assert_eq!(
            o.observe(
                crate::clock::monotonic(),
                Duration::from_secs(30),
                1_000_000
            ),
            None
        );
        assert!(!o.shedding());
    }
}
