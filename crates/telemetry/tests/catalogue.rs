//! The metric groups and `docs/metrics.md` name the same metrics with the same types: the
//! catalogue is what rules and dashboards are checked against, so it must be what the
//! services register (and the cluster test checks they export them).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use telemetry::{
    BusMetrics, CallMetrics, MediaMetrics, Metrics, OperatorMetrics, SipMetrics, StoreMetrics,
};

/// name → type, from the catalogue table's first two columns.
fn documented() -> BTreeMap<String, String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/metrics.md");
    let text = std::fs::read_to_string(path).unwrap();
    let mut metrics = BTreeMap::new();
    for line in text.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 || !cells[1].starts_with("`calanque_") {
            continue;
        }
        let name = cells[1].trim_matches('`').to_owned();
        let kind = cells[2].split_whitespace().next().unwrap().to_owned();
        metrics.insert(name, kind);
    }
    metrics
}

/// name → type of every group registered in one registry (counters as `<family>_total`, the
/// name the catalogue and PromQL use).
fn registered() -> BTreeMap<String, String> {
    let metrics = Metrics::new("test");
    // The certificate expiry appears once an edge with TLS sets it.
    SipMetrics::register(&metrics).set_certificate_expiry(1_924_992_000);
    CallMetrics::register(&metrics);
    MediaMetrics::register(&metrics);
    BusMetrics::register(&metrics);
    StoreMetrics::register(&metrics);
    OperatorMetrics::register(&metrics);
    metrics.registered().into_iter().collect()
}

#[test]
fn every_documented_metric_is_registered_with_its_type_and_nothing_else_is() {
    let documented = documented();
    let registered = registered();
    assert!(
        documented.len() >= 25,
        "the table was parsed: {documented:?}"
    );
    assert_eq!(
        documented, registered,
        "docs/metrics.md and the metric groups disagree"
    );
}

#[test]
fn counters_and_histograms_show_their_samples() {
    let metrics = Metrics::new("edge");
    let sip = SipMetrics::register(&metrics);
    let calls = CallMetrics::register(&metrics);
    sip.request("INVITE", "udp");
    sip.request("FOO", "tcp");
    sip.response("INVITE", 180);
    sip.registration(
        telemetry::RegistrationResult::UserFailure,
        "wrong_credentials",
    );
    calls.setup(486);
    calls.setup(503);
    calls.setup_latency(0.02);
    let text = metrics.encode();
    for expected in [
        r#"calanque_sip_requests_total{method="INVITE",transport="udp"} 1"#,
        // Unknown methods are folded so that a scanner cannot grow the series.
        r#"calanque_sip_requests_total{method="other",transport="tcp"} 1"#,
        r#"calanque_sip_responses_total{method="INVITE",class="1xx"} 1"#,
        r#"calanque_registrations_total{result="user_failure",reason="wrong_credentials"} 1"#,
        r#"calanque_call_setups_total{result="user_failure",status="486"} 1"#,
        r#"calanque_call_setups_total{result="system_failure",status="503"} 1"#,
        r#"calanque_call_setup_seconds_bucket{le="0.025"} 1"#,
        r#"calanque_build_info{version="#,
        "calanque_ready 0",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
}
