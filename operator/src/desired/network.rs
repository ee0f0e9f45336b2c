//! Services: one ClusterIP Service per component and datacenter (metrics, and the directory's
//! REST and gRPC APIs), and the edge's SIP Service, which phones reach.
//!
//! The SIP Service is a ClusterIP Service with the datacenter's `sipAddresses` as
//! `externalIPs` and `externalTrafficPolicy: Local` (ADR 0017): the exact addresses of the
//! contract through a core field, no load-balancer implementation needed, and the phone's own
//! source address reaches the edge (no SNAT), which NAT handling, flows, rate limits and bans
//! depend on. Metrics are never on it: `externalIPs` would expose every port of the Service.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::workloads::{DIRECTORY_GRPC_PORT, DIRECTORY_REST_PORT};
use super::{Component, Owner, Placement, TELEMETRY_PORT, object_name};
use crate::resource::{Datacenter, PbxClusterSpec};

/// `<cluster>-<dc>-edge-sip`: the Service phones reach `datacenter`'s edges through.
pub fn edge_sip_service_name(cluster: &str, datacenter: &str) -> String {
    format!("{}-sip", object_name(cluster, datacenter, Component::Edge))
}

fn port(name: &str, number: u16, protocol: &str) -> ServicePort {
    ServicePort {
        name: Some(name.to_owned()),
        port: i32::from(number),
        target_port: Some(IntOrString::Int(i32::from(number))),
        protocol: Some(protocol.to_owned()),
        ..ServicePort::default()
    }
}

/// `component`'s in-cluster Service in `dc`: `metrics` (and the directory's `rest`, `grpc`).
pub(super) fn component_service(
    owner: &Owner<'_>,
    dc: &Datacenter,
    component: Component,
) -> Service {
    let mut ports = vec![port("metrics", TELEMETRY_PORT, "TCP")];
    if component == Component::Directory {
        ports.push(port("rest", DIRECTORY_REST_PORT, "TCP"));
        ports.push(port("grpc", DIRECTORY_GRPC_PORT, "TCP"));
    }
    Service {
        metadata: owner.metadata(
            object_name(owner.cluster, &dc.name, component),
            Some(&dc.name),
            Some(component),
        ),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(owner.selector(&dc.name, component)),
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// `dc`'s SIP Service: the addresses the placement gives it (none while it is lost: its
/// addresses are then on the other datacenter's Service). `externalTrafficPolicy` is only
/// allowed with external addresses, so it goes with them.
pub(super) fn edge_sip_service(
    owner: &Owner<'_>,
    spec: &PbxClusterSpec,
    dc: &Datacenter,
    placement: &Placement,
) -> Service {
    let addresses = placement.addresses_of(&dc.name).to_vec();
    let mut ports = vec![
        port("sip-udp", spec.sip.udp_port, "UDP"),
        port("sip-tcp", spec.sip.tcp_port, "TCP"),
    ];
    if let (Some(tls), Some(_)) = (spec.sip.tls_port, &spec.sip.tls_secret) {
        ports.push(port("sips", tls, "TCP"));
    }
    let external = !addresses.is_empty();
    Service {
        metadata: owner.metadata(
            edge_sip_service_name(owner.cluster, &dc.name),
            Some(&dc.name),
            Some(Component::Edge),
        ),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(owner.selector(&dc.name, Component::Edge)),
            ports: Some(ports),
            external_ips: external.then_some(addresses),
            external_traffic_policy: external.then(|| "Local".to_owned()),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}
