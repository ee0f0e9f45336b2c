//! What the edge counts, in the catalogue's terms (`docs/metrics.md`: the SIP, registration,
//! protection and TLS rows), through [`telemetry::SipMetrics`]. Without a registry
//! ([`crate::EdgeConfig::metrics`] unset: tests, tools) every call does nothing. With one, a
//! call is a label lookup under a read lock and an atomic add, so the engine calls it inline.
//!
//! Where each metric is fed (all in `engine` unless said):
//!
//! - `calanque_sip_requests_total`: each request the transaction layer reports as new (so its
//!   retransmissions, absorbed by the layer, are not counted), the ACKs of 2xx it passes up,
//!   and the CANCELs it reports (those that found an INVITE still ringing).
//! - `calanque_sip_responses_total`: each response the edge's transaction user sends
//!   (`Engine::respond`: the registrar's, challenges, OPTIONS, call-control's, and the 503 and
//!   487 the edge makes), plus the 200 the layer gives a CANCEL it reports, plus what the
//!   layer answers without the TU (`TransactionLayer::take_own_responses`, after each flush:
//!   its 100 Trying, a CANCEL matching nothing or a ringing INVITE no more, 503 when its table
//!   is full, 400/505/513 to an unparseable request). Retransmissions are not counted.
//! - `calanque_sip_transactions`: the layer's live transactions, `client` being those run for
//!   call-control; set on every engine wake-up (at least once a second).
//! - `calanque_registration_bindings`: the location cache's bindings, set with the above.
//! - `calanque_registrations_total`: the final answer to each REGISTER, when it is sent (see
//!   [`RegistrationOutcome`]).
//! - `calanque_protection_drops_total`, `calanque_protection_bans_total`: each message
//!   [`crate::protection::Protection::admit`] drops, each ban this replica decides (bans from
//!   other replicas are theirs).
//! - `calanque_tls_certificate_expiry_timestamp_seconds`: the leaf certificate's notAfter,
//!   read when the edge starts (`service`).

use sip_msg::{Method, Transport};
use telemetry::SipMetrics;

use crate::protection::{DropReason, ban_metric_label};
use crate::registrar::RegistrationOutcome;

/// The edge's metric handles (cheap clone).
#[derive(Debug, Clone, Default)]
pub(crate) struct EdgeMetrics {
    sip: Option<SipMetrics>,
}

impl EdgeMetrics {
    /// Registers the edge's metrics in `registry`, or records nothing without one.
    pub(crate) fn new(registry: Option<&telemetry::Metrics>) -> EdgeMetrics {
        EdgeMetrics {
            sip: registry.map(SipMetrics::register),
        }
    }

    pub(crate) fn is_enabled(&self) -> bool {
        self.sip.is_some()
    }

    /// A request the transaction layer reported (not a retransmission).
    pub(crate) fn request(&self, method: &Method, transport: &Transport) {
        if let Some(sip) = &self.sip {
            sip.request(method.as_str(), transport_label(transport));
        }
    }

    /// A response sent to a request of `method` (`None`: a response without a readable
    /// CSeq, counted as `other`).
    pub(crate) fn response(&self, method: Option<&Method>, status: u16) {
        if let Some(sip) = &self.sip {
            sip.response(method.map_or("", Method::as_str), status);
        }
    }

    /// Transactions in flight now.
    pub(crate) fn transactions(&self, server: usize, client: usize) {
        if let Some(sip) = &self.sip {
            sip.set_transactions("server", server);
            sip.set_transactions("client", client);
        }
    }

    /// Bindings in the location cache now.
    pub(crate) fn bindings(&self, count: usize) {
        if let Some(sip) = &self.sip {
            sip.set_bindings(count);
        }
    }

    /// The final answer to a REGISTER was sent.
    pub(crate) fn registration(&self, outcome: RegistrationOutcome) {
        if let Some(sip) = &self.sip {
            sip.registration(outcome.result(), outcome.reason());
        }
    }

    /// Protection dropped a message.
    pub(crate) fn dropped(&self, reason: DropReason) {
        if let Some(sip) = &self.sip {
            sip.dropped(reason.as_str());
        }
    }

    /// This replica banned a source; `reason` is `Ban::reason` as it goes on the wire.
    pub(crate) fn banned(&self, reason: &str) {
        if let Some(sip) = &self.sip
            && let Some(label) = ban_metric_label(reason)
        {
            sip.banned(label);
        }
    }

    /// The TLS certificate's notAfter, Unix seconds.
    pub(crate) fn certificate_expiry(&self, not_after_unix: i64) {
        if let Some(sip) = &self.sip {
            sip.set_certificate_expiry(not_after_unix);
        }
    }
}

/// The catalogue's `transport` label.
fn transport_label(transport: &Transport) -> &'static str {
    match transport {
        Transport::Udp => "udp",
        Transport::Tcp => "tcp",
        Transport::Tls => "tls",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ban_reasons_map_to_the_catalogue_labels() {
        assert_eq!(ban_metric_label("rate"), Some("flood"));
        assert_eq!(ban_metric_label("auth-failures"), Some("auth_failures"));
        assert_eq!(ban_metric_label("something else"), None);
    }

    #[test]
    fn without_a_registry_nothing_is_recorded_and_nothing_fails() {
        let metrics = EdgeMetrics::new(None);
        assert!(!metrics.is_enabled());
        metrics.request(&Method::Register, &Transport::Udp);
        metrics.registration(RegistrationOutcome::Registered);
        metrics.banned("rate");
    }

    #[test]
    fn labels_follow_the_catalogue() {
        let registry = telemetry::Metrics::new("edge");
        let metrics = EdgeMetrics::new(Some(&registry));
        metrics.request(&Method::Register, &Transport::Tls);
        metrics.registration(RegistrationOutcome::StoreError);
        metrics.registration(RegistrationOutcome::Unregistered);
        metrics.dropped(DropReason::RateLimited);
        metrics.banned("auth-failures");
        metrics.transactions(3, 1);
        let text = registry.encode();
        for line in [
            r#"calanque_sip_requests_total{method="REGISTER",transport="tls"} 1"#,
            r#"calanque_registrations_total{result="system_failure",reason="store_error"} 1"#,
            r#"calanque_registrations_total{result="success",reason="unregister"} 1"#,
            r#"calanque_protection_drops_total{reason="rate"} 1"#,
            r#"calanque_protection_bans_total{reason="auth_failures"} 1"#,
            r#"calanque_sip_transactions{kind="server"} 3"#,
            r#"calanque_sip_transactions{kind="client"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
