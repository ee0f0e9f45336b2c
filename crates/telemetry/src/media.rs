//! The media relay's metrics (`docs/metrics.md`, media rows).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use crate::registry::Metrics;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Packets {
    kind: &'static str,
    outcome: &'static str,
}

/// Counters, gauges and RTCP quality histograms of a media relay.
#[derive(Debug, Clone)]
pub struct MediaMetrics {
    sessions: Gauge,
    packets: Family<Packets, Counter>,
    idle: Counter,
    fraction_lost: Histogram,
    jitter: Histogram,
}

impl MediaMetrics {
    /// Registers the relay's metrics in `metrics`.
    pub fn register(metrics: &Metrics) -> MediaMetrics {
        let media = MediaMetrics {
            sessions: Gauge::default(),
            packets: Family::default(),
            idle: Counter::default(),
            fraction_lost: Histogram::new([0.0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5]),
            jitter: Histogram::new([0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2]),
        };
        metrics.register(
            "calanque_media_sessions",
            "Relay sessions open",
            media.sessions.clone(),
        );
        metrics.register(
            "calanque_media_packets",
            "Packets handled by the relay",
            media.packets.clone(),
        );
        metrics.register(
            "calanque_media_idle_sessions",
            "Sessions reported dead (no media for the idle timeout)",
            media.idle.clone(),
        );
        metrics.register(
            "calanque_media_rtcp_fraction_lost",
            "Fraction lost in RTCP receiver reports crossing the relay",
            media.fraction_lost.clone(),
        );
        metrics.register(
            "calanque_media_rtcp_jitter_seconds",
            "Interarrival jitter in RTCP receiver reports crossing the relay",
            media.jitter.clone(),
        );
        media
    }

    /// Sessions open now.
    pub fn set_sessions(&self, count: usize) {
        self.sessions.set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// `count` packets of `kind` (`rtp`, `rtcp`) relayed or dropped.
    pub fn packets(&self, kind: &'static str, relayed: bool, count: u64) {
        let outcome = if relayed { "relayed" } else { "dropped" };
        self.packets
            .get_or_create(&Packets { kind, outcome })
            .inc_by(count);
    }

    /// A session reported dead.
    pub fn idle_session(&self) {
        self.idle.inc();
    }

    /// One RTCP report block: fraction lost (0–1) and jitter in seconds.
    pub fn rtcp_report(&self, fraction_lost: f64, jitter_seconds: f64) {
        self.fraction_lost.observe(fraction_lost);
        self.jitter.observe(jitter_seconds);
    }
}
