//! The cluster's shared settings, one ConfigMap (`<cluster>-settings`): what tools and other
//! controllers read about the installation (the calanque CLI, the failover controller, chart
//! tests) without parsing the `PbxCluster`, including the current placement.
//!
//! Pods do not read it: their settings are flags in the pod template, so that a change rolls
//! them out, and a failover (which changes `active-datacenter` and `sip-addresses.*` here)
//! restarts nothing.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;

use super::{Owner, Placement};
use crate::resource::{DatacenterRole, PbxClusterSpec, serving_datacenters};

/// `<cluster>-settings`.
pub fn settings_name(cluster: &str) -> String {
    format!("{cluster}-settings")
}

pub(super) fn config_map(
    owner: &Owner<'_>,
    spec: &PbxClusterSpec,
    placement: &Placement,
) -> ConfigMap {
    let serving: Vec<&str> = serving_datacenters(spec)
        .map(|dc| dc.name.as_str())
        .collect();
    let witness = spec
        .datacenters
        .iter()
        .find(|dc| dc.role == DatacenterRole::Witness)
        .map(|dc| dc.name.clone())
        .unwrap_or_default();
    let mut data = BTreeMap::from([
        ("cluster".to_owned(), owner.cluster.to_owned()),
        ("datacenters".to_owned(), serving.join(",")),
        ("witness".to_owned(), witness),
        (
            "active-datacenter".to_owned(),
            placement.active_datacenter.clone(),
        ),
        ("nats-urls".to_owned(), spec.nats.urls.join(",")),
        ("etcd-endpoints".to_owned(), spec.etcd.endpoints.join(",")),
        ("sip-udp-port".to_owned(), spec.sip.udp_port.to_string()),
        ("sip-tcp-port".to_owned(), spec.sip.tcp_port.to_string()),
        (
            "sip-tls-port".to_owned(),
            spec.sip.tls_port.map(|p| p.to_string()).unwrap_or_default(),
        ),
        (
            "rtp-ports".to_owned(),
            format!("{}-{}", spec.rtp.port_first, spec.rtp.port_last),
        ),
        ("slo-objective".to_owned(), spec.slo.objective.clone()),
        (
            "failover-detection-seconds".to_owned(),
            spec.failover.detection_seconds.to_string(),
        ),
        (
            "failback-after-seconds".to_owned(),
            spec.failover.failback_after_seconds.to_string(),
        ),
        (
            "automatic-failback".to_owned(),
            spec.failover.automatic_failback.to_string(),
        ),
    ]);
    for dc in &serving {
        data.insert(
            format!("sip-addresses.{dc}"),
            placement.addresses_of(dc).join(","),
        );
    }
    ConfigMap {
        metadata: owner.metadata(settings_name(owner.cluster), None, None),
        data: Some(data),
        ..ConfigMap::default()
    }
}
