//! RFC 3261 timer base values (§17.1.1.1, Table 4) and the derived timers.

use std::time::Duration;

/// T1, T2 and T4. Every other timer derives from them:
/// A = T1 doubling, B = F = H = J(unreliable) = 64·T1, E/G = T1 doubling capped at T2,
/// I = K = T4 (unreliable), D ≥ 32 s (unreliable), and 0 for reliable transports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate, default 500 ms.
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE responses, default 4 s.
    pub t2: Duration,
    /// Maximum duration a message remains in the network, default 5 s.
    pub t4: Duration,
    /// Timer D for unreliable transports; RFC 3261 requires at least 32 s.
    pub timer_d: Duration,
}

impl Default for TimerConfig {
    fn default() -> TimerConfig {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            timer_d: Duration::from_secs(32),
        }
    }
}

impl TimerConfig {
    /// 64·T1: Timers B, F, H, J (unreliable), L and M.
    pub fn t1_x64(&self) -> Duration {
        self.t1 * 64
    }
}
