//! The edge's one place that reads clocks. Everything below the I/O loop takes time as an
//! argument (the sans-IO cores, ADR 0001), so tests can drive them on a virtual clock; the
//! service reads the real clocks here and nowhere else.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Monotonic time for the transaction layer's timers.
#[allow(clippy::disallowed_methods)] // the service's clock source; cores receive it as input
pub fn monotonic() -> Instant {
    Instant::now()
}

/// Wall-clock time since the Unix epoch: binding expiries, nonces and bans are shared between
/// machines, so they are dated in wall time.
#[allow(clippy::disallowed_methods)] // the service's clock source; cores receive it as input
pub fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
}

/// Wall-clock seconds since the epoch.
pub fn unix_secs() -> u64 {
    since_epoch().as_secs()
}

/// Wall-clock milliseconds since the epoch.
pub fn unix_ms() -> u64 {
    u64::try_from(since_epoch().as_millis()).unwrap_or(u64::MAX)
}
