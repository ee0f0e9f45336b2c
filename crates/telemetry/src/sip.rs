//! The SIP edge's metrics (`docs/metrics.md`, SIP and registration rows).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::registry::Metrics;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodTransport {
    method: &'static str,
    transport: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodClass {
    method: &'static str,
    class: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultReason {
    result: &'static str,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

/// How a REGISTER's final answer counts for the SLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationResult {
    /// 200 OK.
    Success,
    /// The phone's fault: wrong credentials, a forbidden AOR, an interval too brief, bad input.
    UserFailure,
    /// calanque's fault: the store unavailable, draining.
    SystemFailure,
}

impl RegistrationResult {
    fn label(self) -> &'static str {
        match self {
            RegistrationResult::Success => "success",
            RegistrationResult::UserFailure => "user_failure",
            RegistrationResult::SystemFailure => "system_failure",
        }
    }
}

/// Methods outside this list are counted as `other` (a label per arbitrary token would let a
/// scanner grow the series without bound).
const KNOWN_METHODS: [&str; 14] = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "REGISTER",
    "OPTIONS",
    "PRACK",
    "SUBSCRIBE",
    "NOTIFY",
    "PUBLISH",
    "INFO",
    "REFER",
    "MESSAGE",
    "UPDATE",
];

/// The label of `method`: a static string (no allocation on the request path).
fn method_label(method: &str) -> &'static str {
    KNOWN_METHODS
        .iter()
        .find(|known| **known == method)
        .copied()
        .unwrap_or("other")
}

fn class_label(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        5 => "5xx",
        _ => "6xx",
    }
}

/// Counters and gauges of a SIP edge.
#[derive(Debug, Clone)]
pub struct SipMetrics {
    requests: Family<MethodTransport, Counter>,
    responses: Family<MethodClass, Counter>,
    transactions: Family<Kind, Gauge>,
    bindings: Gauge,
    registrations: Family<ResultReason, Counter>,
    drops: Family<Reason, Counter>,
    bans: Family<Reason, Counter>,
    certificate_expiry: Gauge,
    /// Registered on the first `set_certificate_expiry`: an edge without TLS exports no
    /// expiry at all (a 0 would fire every expiry alert).
    registry: Metrics,
    certificate_registered: std::sync::Arc<std::sync::Once>,
}

impl SipMetrics {
    /// Registers the edge's metrics in `metrics`.
    pub fn register(metrics: &Metrics) -> SipMetrics {
        let sip = SipMetrics {
            requests: Family::default(),
            responses: Family::default(),
            transactions: Family::default(),
            bindings: Gauge::default(),
            registrations: Family::default(),
            drops: Family::default(),
            bans: Family::default(),
            certificate_expiry: Gauge::default(),
            registry: metrics.clone(),
            certificate_registered: std::sync::Arc::new(std::sync::Once::new()),
        };
        metrics.register(
            "calanque_sip_requests",
            "SIP requests received (retransmissions absorbed by the transaction layer excluded)",
            sip.requests.clone(),
        );
        metrics.register(
            "calanque_sip_responses",
            "SIP responses sent",
            sip.responses.clone(),
        );
        metrics.register(
            "calanque_sip_transactions",
            "SIP transactions in flight",
            sip.transactions.clone(),
        );
        metrics.register(
            "calanque_registration_bindings",
            "Registration bindings in the location cache",
            sip.bindings.clone(),
        );
        metrics.register(
            "calanque_registrations",
            "Final answers to REGISTER, by SLI result and reason",
            sip.registrations.clone(),
        );
        metrics.register(
            "calanque_protection_drops",
            "Requests dropped unanswered by flood and scanner protection",
            sip.drops.clone(),
        );
        metrics.register(
            "calanque_protection_bans",
            "Sources banned by this edge",
            sip.bans.clone(),
        );
        sip
    }

    /// A request arrived (`transport`: `udp`, `tcp`, `tls`).
    pub fn request(&self, method: &str, transport: &'static str) {
        self.requests
            .get_or_create(&MethodTransport {
                method: method_label(method),
                transport,
            })
            .inc();
    }

    /// A response was sent to a request of `method`.
    pub fn response(&self, method: &str, status: u16) {
        self.responses
            .get_or_create(&MethodClass {
                method: method_label(method),
                class: class_label(status),
            })
            .inc();
    }

    /// Transactions in flight now (`server`, `client`).
    pub fn set_transactions(&self, kind: &'static str, count: usize) {
        self.transactions
            .get_or_create(&Kind { kind })
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Bindings in the location cache now.
    pub fn set_bindings(&self, count: usize) {
        self.bindings.set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// A final answer to a REGISTER.
    pub fn registration(&self, result: RegistrationResult, reason: &'static str) {
        self.registrations
            .get_or_create(&ResultReason {
                result: result.label(),
                reason,
            })
            .inc();
    }

    /// A request dropped by protection (`rate`, `banned`, `scanner`).
    pub fn dropped(&self, reason: &'static str) {
        self.drops.get_or_create(&Reason { reason }).inc();
    }

    /// A source banned (`flood`, `auth_failures`).
    pub fn banned(&self, reason: &'static str) {
        self.bans.get_or_create(&Reason { reason }).inc();
    }

    /// The TLS certificate's expiry (Unix seconds).
    pub fn set_certificate_expiry(&self, not_after_unix: i64) {
        self.certificate_registered.call_once(|| {
            self.registry.register(
                "calanque_tls_certificate_expiry_timestamp_seconds",
                "The TLS certificate's notAfter, Unix time",
                self.certificate_expiry.clone(),
            );
        });
        self.certificate_expiry.set(not_after_unix);
    }
}
