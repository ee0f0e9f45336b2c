//! Call-control's metrics (`docs/metrics.md`, call rows): what ASR, NER and the call part of
//! the SLI are computed from.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use crate::registry::Metrics;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Setup {
    result: &'static str,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Cause {
    cause: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Step {
    step: &'static str,
}

/// How a call set-up ended, for the SLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupResult {
    /// Answered (2xx).
    Answered,
    /// The user's doing: busy, declined, no answer, cancelled, unknown number, barred.
    UserFailure,
    /// calanque's or the network's doing: anything else.
    SystemFailure,
}

impl SetupResult {
    /// Classifies the final status the caller got (`docs/metrics.md`).
    pub fn of_status(status: u16) -> SetupResult {
        match status {
            200..=299 => SetupResult::Answered,
            // Busy, declined, not found, address incomplete, barred, no answer after the ring
            // timeout (480/408 from call-control), cancelled by the caller.
            486 | 600 | 603 | 404 | 484 | 403 | 480 | 487 => SetupResult::UserFailure,
            _ => SetupResult::SystemFailure,
        }
    }

    fn label(self) -> &'static str {
        match self {
            SetupResult::Answered => "answered",
            SetupResult::UserFailure => "user_failure",
            SetupResult::SystemFailure => "system_failure",
        }
    }
}

/// Counters, gauges and the set-up latency histogram of call-control.
#[derive(Debug, Clone)]
pub struct CallMetrics {
    attempts: Counter,
    setups: Family<Setup, Counter>,
    active: Gauge,
    setup_seconds: Histogram,
    ended: Family<Cause, Counter>,
    moved: Family<Step, Counter>,
    waiting: Gauge,
}

impl CallMetrics {
    /// Registers call-control's metrics in `metrics`.
    pub fn register(metrics: &Metrics) -> CallMetrics {
        let calls = CallMetrics {
            attempts: Counter::default(),
            setups: Family::default(),
            active: Gauge::default(),
            // 5 ms … ~10 s: post-dial delay on a LAN is tens of ms; seconds mean trouble.
            setup_seconds: Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            ended: Family::default(),
            moved: Family::default(),
            waiting: Gauge::default(),
        };
        metrics.register(
            "calanque_call_attempts",
            "New calls (initial INVITEs) handled",
            calls.attempts.clone(),
        );
        metrics.register(
            "calanque_call_setups",
            "Call set-ups by SLI result and the caller's final status",
            calls.setups.clone(),
        );
        metrics.register(
            "calanque_calls_active",
            "Answered calls in progress on this replica",
            calls.active.clone(),
        );
        metrics.register(
            "calanque_call_setup_seconds",
            "From the initial INVITE to the first ringing or answer sent to the caller",
            calls.setup_seconds.clone(),
        );
        metrics.register(
            "calanque_calls_ended",
            "Answered calls that ended, by cause",
            calls.ended.clone(),
        );
        metrics.register(
            "calanque_calls_moved",
            "Steps of moving established calls after a lost datacenter or relay (ADR 0020)",
            calls.moved.clone(),
        );
        metrics.register(
            "calanque_calls_waiting_to_move",
            "Calls this replica must move that wait for their phones to register again",
            calls.waiting.clone(),
        );
        calls
    }

    /// A new call arrived.
    pub fn attempt(&self) {
        self.attempts.inc();
    }

    /// A call's set-up ended with `status` sent to the caller.
    pub fn setup(&self, status: u16) {
        self.setups
            .get_or_create(&Setup {
                result: SetupResult::of_status(status).label(),
                status,
            })
            .inc();
    }

    /// Post-dial delay of one call.
    pub fn setup_latency(&self, seconds: f64) {
        self.setup_seconds.observe(seconds);
    }

    /// Answered calls in progress now.
    pub fn set_active(&self, count: usize) {
        self.active.set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// A step of moving a call: `taken_over` (claimed from a failed datacenter's replica),
    /// `legs_moved` (pointed at surviving edges), `reanchored` (new relay, new offers sent).
    pub fn moved(&self, step: &'static str) {
        self.moved.get_or_create(&Step { step }).inc();
    }

    /// Calls waiting for their phones to come back through a surviving edge.
    pub fn set_waiting(&self, count: usize) {
        self.waiting.set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// An answered call ended (`caller_bye`, `callee_bye`, `session_timer`, `media_timeout`,
    /// `reanchor_failed`).
    pub fn ended(&self, cause: &'static str) {
        self.ended.get_or_create(&Cause { cause }).inc();
    }
}
