//! The media service's one place that reads the clock. The relay core takes `now` as an
//! argument (sans-IO, ADR 0001) so its tests run on a virtual clock.

use std::time::Instant;

/// Monotonic time for latching, idle detection and tone pacing.
#[allow(clippy::disallowed_methods)] // the service's clock source; the core receives it as input
pub fn monotonic() -> Instant {
    Instant::now()
}
