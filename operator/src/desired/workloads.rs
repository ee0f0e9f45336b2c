//! Deployments and PodDisruptionBudgets: one per component and serving datacenter.
//!
//! Nothing in a pod template depends on the failover placement: a failover never restarts
//! pods. Every quantity is written in Kubernetes' canonical form, so that re-applying an
//! unchanged object is a no-op on the server (a non-canonical `1000m` would be rewritten to `1`
//! and look changed on every apply).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction,
    ObjectFieldSelector, PodAffinityTerm, PodAntiAffinity, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, SecretKeySelector,
    SecretVolumeSource, SecurityContext, Volume, VolumeMount, WeightedPodAffinityTerm,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Component, Owner, TELEMETRY_PORT, object_name};
use crate::resource::{Datacenter, PbxClusterSpec, nats_urls_for};

/// The unprivileged user and group every container runs as.
pub const RUN_AS: i64 = 65532;
/// Where the NATS client TLS Secret is mounted.
pub const NATS_TLS_DIR: &str = "/etc/calanque/tls/nats";
/// Where the etcd client TLS Secret is mounted.
pub const ETCD_TLS_DIR: &str = "/etc/calanque/tls/etcd";
/// Where the SIP TLS Secret is mounted (edge).
pub const SIP_TLS_DIR: &str = "/etc/calanque/tls/sip";
/// The directory's REST port.
pub const DIRECTORY_REST_PORT: u16 = 8080;
/// The directory's gRPC port.
pub const DIRECTORY_GRPC_PORT: u16 = 50051;

/// The Secret (in the cluster's namespace) holding the edges' shared nonce key under
/// `nonce-key`, optional: without it each edge signs nonces with its own random key.
pub fn nonce_key_secret(cluster: &str) -> String {
    format!("{cluster}-edge-nonce-key")
}

/// The Secret holding the directory's admin token under `token` (required by the directory).
pub fn directory_token_secret(cluster: &str) -> String {
    format!("{cluster}-directory-token")
}

/// Requests and limits per component: CPU requested, memory requested, memory limit. No CPU
/// limit: CFS throttling would add jitter to relayed RTP and to SIP timers (ADR 0017).
fn resources(component: Component) -> ResourceRequirements {
    let (cpu, memory, memory_limit) = match component {
        Component::Edge => ("250m", "256Mi", "1Gi"),
        Component::CallControl => ("250m", "256Mi", "1Gi"),
        Component::Media => ("500m", "128Mi", "512Mi"),
        Component::Directory => ("100m", "128Mi", "512Mi"),
    };
    let quantity = |q: &str| Quantity(q.to_owned());
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), quantity(cpu)),
            ("memory".to_owned(), quantity(memory)),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_owned(),
            quantity(memory_limit),
        )])),
        ..ResourceRequirements::default()
    }
}

/// The container's flags, from the spec (the binaries' own flag names).
fn args(spec: &PbxClusterSpec, dc: &Datacenter, component: Component) -> Vec<String> {
    // The datacenter's own NATS servers first (ADR 0022).
    let nats = nats_urls_for(spec, dc).join(",");
    let etcd = spec.etcd.endpoints.join(",");
    let mut args = match component {
        Component::Edge => {
            let mut args = vec![
                "--edge-id=$(POD_NAME)".to_owned(),
                format!("--datacenter={}", dc.name),
                format!("--listen=udp:0.0.0.0:{}", spec.sip.udp_port),
                format!("--listen=tcp:0.0.0.0:{}", spec.sip.tcp_port),
            ];
            if let (Some(port), Some(_)) = (spec.sip.tls_port, &spec.sip.tls_secret) {
                args.push(format!("--listen=tls:0.0.0.0:{port}"));
                args.push(format!("--tls-cert={SIP_TLS_DIR}/tls.crt"));
                args.push(format!("--tls-key={SIP_TLS_DIR}/tls.key"));
            }
            args.push(format!("--etcd={etcd}"));
            args.push(format!("--nats={nats}"));
            args
        }
        Component::CallControl => {
            let mut args = vec![
                "--instance=$(POD_NAME)".to_owned(),
                // Calls move between datacenters by these names (ADR 0020).
                format!("--datacenter={}", dc.name),
                format!("--etcd={etcd}"),
                format!("--nats={nats}"),
            ];
            if spec.replicas.media > 0 {
                args.push("--media-relay".to_owned());
            }
            args
        }
        Component::Media => {
            let mut args = vec![
                "--media-id=$(POD_NAME)".to_owned(),
                format!("--datacenter={}", dc.name),
                format!("--nats={nats}"),
                "--listen-ip=$(HOST_IP)".to_owned(),
            ];
            if let Some(address) = &dc.media_address {
                args.push(format!("--advertised-ip={address}"));
            }
            args.push(format!(
                "--ports={}-{}",
                spec.rtp.port_first, spec.rtp.port_last
            ));
            args
        }
        Component::Directory => vec![
            format!("--store=etcd:{etcd}"),
            format!("--bus={nats}"),
            format!("--rest=0.0.0.0:{DIRECTORY_REST_PORT}"),
            format!("--grpc=0.0.0.0:{DIRECTORY_GRPC_PORT}"),
        ],
    };
    args.extend(client_tls_args(spec, component));
    args.push(format!("--telemetry-listen=0.0.0.0:{TELEMETRY_PORT}"));
    args.push("--log-format=json".to_owned());
    args
}

/// The client TLS flags (ADR 0019) pointing at the mounted Secrets' files, for the clients
/// the component has: etcd (all but the media relay) and NATS. The Secrets hold `ca.crt`,
/// `tls.crt` and `tls.key` (`docs/pbxcluster.md`); all three are passed, so a Secret missing
/// one makes the pod fail at start naming the file, rather than connect without it.
fn client_tls_args(spec: &PbxClusterSpec, component: Component) -> Vec<String> {
    let files = |client: &str, dir: &str| {
        [
            format!("--{client}-ca-file={dir}/ca.crt"),
            format!("--{client}-cert-file={dir}/tls.crt"),
            format!("--{client}-key-file={dir}/tls.key"),
        ]
    };
    let mut args = Vec::new();
    if component != Component::Media && spec.etcd.tls_secret.is_some() {
        args.extend(files("etcd", ETCD_TLS_DIR));
    }
    if spec.nats.tls_secret.is_some() {
        args.extend(files("nats", NATS_TLS_DIR));
    }
    args
}

fn env(cluster: &str, component: Component) -> Vec<EnvVar> {
    let field = |name: &str, path: &str| EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_owned(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    };
    let secret = |name: &str, secret: String, key: &str, optional: bool| EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret,
                key: key.to_owned(),
                optional: Some(optional),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    };
    let mut env = vec![field("POD_NAME", "metadata.name")];
    match component {
        Component::Edge => env.push(secret(
            "CALANQUE_NONCE_KEY",
            nonce_key_secret(cluster),
            "nonce-key",
            true,
        )),
        Component::Media => env.push(field("HOST_IP", "status.hostIP")),
        Component::Directory => env.push(secret(
            "CALANQUE_DIRECTORY_TOKEN",
            directory_token_secret(cluster),
            "token",
            false,
        )),
        Component::CallControl => {}
    }
    env
}

fn ports(spec: &PbxClusterSpec, component: Component) -> Vec<ContainerPort> {
    let port = |name: &str, number: u16, protocol: &str| ContainerPort {
        name: Some(name.to_owned()),
        container_port: i32::from(number),
        protocol: Some(protocol.to_owned()),
        ..ContainerPort::default()
    };
    let mut ports = vec![port("metrics", TELEMETRY_PORT, "TCP")];
    match component {
        Component::Edge => {
            ports.push(port("sip-udp", spec.sip.udp_port, "UDP"));
            ports.push(port("sip-tcp", spec.sip.tcp_port, "TCP"));
            if let (Some(tls), Some(_)) = (spec.sip.tls_port, &spec.sip.tls_secret) {
                ports.push(port("sips", tls, "TCP"));
            }
        }
        Component::Directory => {
            ports.push(port("rest", DIRECTORY_REST_PORT, "TCP"));
            ports.push(port("grpc", DIRECTORY_GRPC_PORT, "TCP"));
        }
        Component::CallControl | Component::Media => {}
    }
    ports
}

/// The Secrets a component mounts: (volume name, Secret, mount path).
fn secret_mounts(
    spec: &PbxClusterSpec,
    component: Component,
) -> Vec<(&'static str, String, &'static str)> {
    let mut mounts = Vec::new();
    if let Some(secret) = &spec.nats.tls_secret {
        mounts.push(("nats-tls", secret.clone(), NATS_TLS_DIR));
    }
    if component != Component::Media
        && let Some(secret) = &spec.etcd.tls_secret
    {
        mounts.push(("etcd-tls", secret.clone(), ETCD_TLS_DIR));
    }
    if component == Component::Edge
        && spec.sip.tls_port.is_some()
        && let Some(secret) = &spec.sip.tls_secret
    {
        mounts.push(("sip-tls", secret.clone(), SIP_TLS_DIR));
    }
    mounts
}

fn probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::Int(i32::from(TELEMETRY_PORT)),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

/// Media relays bind RTP ports on the host: two on one node would collide, so they must not
/// share one; the other components only prefer to spread.
fn affinity(selector: &BTreeMap<String, String>, component: Component) -> Affinity {
    let term = PodAffinityTerm {
        label_selector: Some(LabelSelector {
            match_labels: Some(selector.clone()),
            ..LabelSelector::default()
        }),
        topology_key: "kubernetes.io/hostname".to_owned(),
        ..PodAffinityTerm::default()
    };
    let anti_affinity = if component == Component::Media {
        PodAntiAffinity {
            required_during_scheduling_ignored_during_execution: Some(vec![term]),
            ..PodAntiAffinity::default()
        }
    } else {
        PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: term,
                },
            ]),
            ..PodAntiAffinity::default()
        }
    };
    Affinity {
        pod_anti_affinity: Some(anti_affinity),
        ..Affinity::default()
    }
}

/// `component`'s Deployment in `dc`.
pub(super) fn deployment(
    owner: &Owner<'_>,
    spec: &PbxClusterSpec,
    dc: &Datacenter,
    component: Component,
) -> Deployment {
    let name = object_name(owner.cluster, &dc.name, component);
    let selector = owner.selector(&dc.name, component);
    let mounts = secret_mounts(spec, component);
    let host_network = component == Component::Media;
    let container = Container {
        name: component.name().to_owned(),
        image: Some(spec.image.reference()),
        image_pull_policy: Some(spec.image.pull_policy.as_str().to_owned()),
        command: Some(vec![component.binary().to_owned()]),
        args: Some(args(spec, dc, component)),
        env: Some(env(owner.cluster, component)),
        ports: Some(ports(spec, component)),
        liveness_probe: Some(probe("/healthz", 10, 3)),
        readiness_probe: Some(probe("/readyz", 5, 2)),
        resources: Some(resources(component)),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: (!mounts.is_empty()).then(|| {
            mounts
                .iter()
                .map(|(volume, _, path)| VolumeMount {
                    name: (*volume).to_owned(),
                    mount_path: (*path).to_owned(),
                    read_only: Some(true),
                    ..VolumeMount::default()
                })
                .collect()
        }),
        ..Container::default()
    };
    let pod = PodSpec {
        containers: vec![container],
        node_selector: (!dc.node_selector.is_empty()).then(|| dc.node_selector.clone()),
        affinity: Some(affinity(&selector, component)),
        host_network: host_network.then_some(true),
        dns_policy: host_network.then(|| "ClusterFirstWithHostNet".to_owned()),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        termination_grace_period_seconds: Some(30),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS),
            run_as_group: Some(RUN_AS),
            fs_group: Some(RUN_AS),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                ..SeccompProfile::default()
            }),
            ..PodSecurityContext::default()
        }),
        volumes: (!mounts.is_empty()).then(|| {
            mounts
                .iter()
                .map(|(volume, secret, _)| Volume {
                    name: (*volume).to_owned(),
                    secret: Some(SecretVolumeSource {
                        secret_name: Some(secret.clone()),
                        default_mode: Some(0o440),
                        ..SecretVolumeSource::default()
                    }),
                    ..Volume::default()
                })
                .collect()
        }),
        ..PodSpec::default()
    };
    // A media relay holds host ports: a surge pod could not start beside the one it replaces.
    let (max_surge, max_unavailable) = if host_network { (0, 1) } else { (1, 0) };
    Deployment {
        metadata: owner.metadata(name, Some(&dc.name), Some(component)),
        spec: Some(DeploymentSpec {
            replicas: Some(component.replicas(spec)),
            revision_history_limit: Some(5),
            selector: LabelSelector {
                match_labels: Some(selector),
                ..LabelSelector::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_owned()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(max_surge)),
                    max_unavailable: Some(IntOrString::Int(max_unavailable)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(owner.labels(Some(&dc.name), Some(component))),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

/// `component`'s PodDisruptionBudget in `dc`: one pod at a time; a pod that is not ready may
/// always be evicted (a crash-looping pod must not block a node drain).
pub(super) fn disruption_budget(
    owner: &Owner<'_>,
    dc: &Datacenter,
    component: Component,
) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: owner.metadata(
            object_name(owner.cluster, &dc.name, component),
            Some(&dc.name),
            Some(component),
        ),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(owner.selector(&dc.name, component)),
                ..LabelSelector::default()
            }),
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".to_owned()),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    }
}
