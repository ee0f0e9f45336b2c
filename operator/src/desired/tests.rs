use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;
use crate::failover_view::FailoverSnapshot;
use crate::fixtures::{cluster, dc_a_lost_snapshot, healthy_snapshot};

fn objects_for(cluster: &PbxCluster, snapshot: &FailoverSnapshot) -> Vec<DesiredObject> {
    desired_objects(cluster, &Placement::new(&cluster.spec, snapshot)).expect("objects")
}

fn objects() -> Vec<DesiredObject> {
    objects_for(&cluster(), &healthy_snapshot())
}

fn deployment(objects: &[DesiredObject], name: &str) -> Deployment {
    objects
        .iter()
        .find_map(|o| match o {
            DesiredObject::Deployment(d) if d.name_any() == name => Some(d.as_ref().clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no Deployment {name}"))
}

fn service(objects: &[DesiredObject], name: &str) -> Service {
    objects
        .iter()
        .find_map(|o| match o {
            DesiredObject::Service(s) if s.name_any() == name => Some(s.as_ref().clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no Service {name}"))
}

fn config_map(objects: &[DesiredObject]) -> ConfigMap {
    objects
        .iter()
        .find_map(|o| match o {
            DesiredObject::ConfigMap(c) => Some(c.clone()),
            _ => None,
        })
        .expect("a ConfigMap")
}

fn container(d: &Deployment) -> Container {
    let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(pod.containers.len(), 1);
    pod.containers[0].clone()
}

#[test]
fn every_object_in_apply_order() {
    let names: Vec<(&str, String)> = objects().iter().map(|o| (o.kind(), o.name())).collect();
    let mut expected = vec![("ConfigMap", "city-settings".to_owned())];
    for dc in ["dc-a", "dc-b"] {
        for component in ["edge", "call-control", "media", "directory"] {
            expected.push(("Deployment", format!("city-{dc}-{component}")));
            expected.push(("Service", format!("city-{dc}-{component}")));
            if component == "edge" {
                expected.push(("Service", format!("city-{dc}-edge-sip")));
            }
            expected.push(("PodDisruptionBudget", format!("city-{dc}-{component}")));
        }
    }
    assert_eq!(names, expected);
    assert_eq!(names.len(), 27, "nothing for the witness");
}

#[test]
fn every_object_is_owned_labelled_and_namespaced() {
    for object in objects() {
        let value = object.to_json();
        let what = format!("{} {}", object.kind(), object.name());
        let metadata = &value["metadata"];
        assert_eq!(metadata["namespace"], "calanque", "{what}");
        let owners = metadata["ownerReferences"].as_array().expect("owners");
        assert_eq!(owners.len(), 1, "{what}");
        assert_eq!(owners[0]["apiVersion"], "calanque.io/v1alpha1", "{what}");
        assert_eq!(owners[0]["kind"], "PbxCluster", "{what}");
        assert_eq!(owners[0]["name"], "city", "{what}");
        assert_eq!(
            owners[0]["uid"], "6f2a3c1e-0000-4000-8000-000000000001",
            "{what}"
        );
        assert_eq!(owners[0]["controller"], true, "{what}");
        let labels = &metadata["labels"];
        assert_eq!(labels[LABEL_NAME], "calanque", "{what}");
        assert_eq!(labels[LABEL_INSTANCE], "city", "{what}");
        assert_eq!(labels[LABEL_MANAGED_BY], "calanque-operator", "{what}");
        if object.kind() != "ConfigMap" {
            let name = object.name();
            let dc = if name.starts_with("city-dc-a-") {
                "dc-a"
            } else {
                "dc-b"
            };
            assert_eq!(labels[LABEL_DATACENTER], dc, "{what}");
            let component = labels[LABEL_COMPONENT].as_str().expect("component");
            assert!(
                name.starts_with(&format!("city-{dc}-{component}")),
                "{what}"
            );
        }
        // Every body names its kind and apiVersion (server-side apply needs both).
        assert_eq!(value["kind"], object.kind(), "{what}");
        assert!(value["apiVersion"].is_string(), "{what}");
    }
}

/// (deployment, binary, replicas, args).
#[test]
fn deployments_run_each_binary_with_the_flags_from_the_spec() {
    let etcd = "--etcd=https://etcd-a.calanque:2379,https://etcd-b.calanque:2379,https://etcd-w.calanque:2379";
    // Each datacenter's own NATS server first (its `natsUrls`), then the others as listed.
    let nats =
        "nats://nats-a.calanque:4222,nats://nats-b.calanque:4222,nats://nats-w.calanque:4222";
    let nats_b =
        "nats://nats-b.calanque:4222,nats://nats-a.calanque:4222,nats://nats-w.calanque:4222";
    let etcd_tls = [
        "--etcd-ca-file=/etc/calanque/tls/etcd/ca.crt",
        "--etcd-cert-file=/etc/calanque/tls/etcd/tls.crt",
        "--etcd-key-file=/etc/calanque/tls/etcd/tls.key",
    ]
    .map(String::from);
    let nats_tls = [
        "--nats-ca-file=/etc/calanque/tls/nats/ca.crt",
        "--nats-cert-file=/etc/calanque/tls/nats/tls.crt",
        "--nats-key-file=/etc/calanque/tls/nats/tls.key",
    ]
    .map(String::from);
    let with = |mut args: Vec<String>, tls: &[&[String]]| {
        let tail = args.split_off(args.len() - 2);
        args.extend(tls.iter().flat_map(|files| files.iter().cloned()));
        args.extend(tail);
        args
    };
    let cases: [(&str, &str, i32, Vec<String>); 5] = [
        (
            "city-dc-a-edge",
            "calanque-sip-edge",
            2,
            vec![
                "--edge-id=$(POD_NAME)".into(),
                "--datacenter=dc-a".into(),
                "--listen=udp:0.0.0.0:5060".into(),
                "--listen=tcp:0.0.0.0:5060".into(),
                "--listen=tls:0.0.0.0:5061".into(),
                "--tls-cert=/etc/calanque/tls/sip/tls.crt".into(),
                "--tls-key=/etc/calanque/tls/sip/tls.key".into(),
                etcd.into(),
                format!("--nats={nats}"),
                "--telemetry-listen=0.0.0.0:9090".into(),
                "--log-format=json".into(),
            ],
        ),
        (
            "city-dc-b-call-control",
            "calanque-call-control",
            2,
            vec![
                "--instance=$(POD_NAME)".into(),
                "--datacenter=dc-b".into(),
                etcd.into(),
                format!("--nats={nats_b}"),
                "--media-relay".into(),
                "--telemetry-listen=0.0.0.0:9090".into(),
                "--log-format=json".into(),
            ],
        ),
        (
            "city-dc-a-media",
            "calanque-media",
            2,
            vec![
                "--media-id=$(POD_NAME)".into(),
                "--datacenter=dc-a".into(),
                format!("--nats={nats}"),
                "--listen-ip=$(HOST_IP)".into(),
                "--advertised-ip=192.0.2.20".into(),
                "--ports=16384-32767".into(),
                "--telemetry-listen=0.0.0.0:9090".into(),
                "--log-format=json".into(),
            ],
        ),
        (
            // dc-b has no mediaAddress: its relays advertise their node's address.
            "city-dc-b-media",
            "calanque-media",
            2,
            vec![
                "--media-id=$(POD_NAME)".into(),
                "--datacenter=dc-b".into(),
                format!("--nats={nats_b}"),
                "--listen-ip=$(HOST_IP)".into(),
                "--ports=16384-32767".into(),
                "--telemetry-listen=0.0.0.0:9090".into(),
                "--log-format=json".into(),
            ],
        ),
        (
            "city-dc-a-directory",
            "calanque-directory",
            1,
            vec![
                "--store=etcd:https://etcd-a.calanque:2379,https://etcd-b.calanque:2379,https://etcd-w.calanque:2379".into(),
                format!("--bus={nats}"),
                "--rest=0.0.0.0:8080".into(),
                "--grpc=0.0.0.0:50051".into(),
                "--telemetry-listen=0.0.0.0:9090".into(),
                "--log-format=json".into(),
            ],
        ),
    ];
    let objects = objects();
    for (name, binary, replicas, args) in cases {
        let d = deployment(&objects, name);
        assert_eq!(d.spec.as_ref().unwrap().replicas, Some(replicas), "{name}");
        let c = container(&d);
        assert_eq!(c.command, Some(vec![binary.to_owned()]), "{name}");
        // The example names etcd and NATS client TLS Secrets: their files come before the
        // telemetry flags; the relay has no etcd client.
        let tls: &[&[String]] = if binary == "calanque-media" {
            &[&nats_tls]
        } else {
            &[&etcd_tls, &nats_tls]
        };
        assert_eq!(c.args, Some(with(args, tls)), "{name}");
        assert_eq!(
            c.image.as_deref(),
            Some("ghcr.io/calanque/calanque:0.1.0"),
            "{name}"
        );
        assert_eq!(
            c.image_pull_policy.as_deref(),
            Some("IfNotPresent"),
            "{name}"
        );
    }
}

#[test]
fn pods_are_probed_unprivileged_bounded_and_placed_in_their_datacenter() {
    let objects = objects();
    for dc in ["dc-a", "dc-b"] {
        for component in Component::ALL {
            let name = object_name("city", dc, component);
            let d = deployment(&objects, &name);
            let spec = d.spec.as_ref().unwrap();
            let selector = spec.selector.match_labels.as_ref().unwrap();
            let template_labels = spec
                .template
                .metadata
                .as_ref()
                .unwrap()
                .labels
                .as_ref()
                .unwrap();
            for (k, v) in selector {
                assert_eq!(
                    template_labels.get(k),
                    Some(v),
                    "{name}: selector ⊂ pod labels"
                );
            }
            assert_eq!(
                selector.len(),
                4,
                "{name}: name, instance, component, datacenter"
            );
            let pod = spec.template.spec.as_ref().unwrap();
            assert_eq!(
                pod.node_selector
                    .as_ref()
                    .unwrap()
                    .get("topology.kubernetes.io/zone"),
                Some(&dc.to_owned()),
                "{name}"
            );
            let pod_security = pod.security_context.as_ref().unwrap();
            assert_eq!(pod_security.run_as_non_root, Some(true), "{name}");
            assert_eq!(pod_security.run_as_user, Some(65532), "{name}");
            assert_eq!(pod.automount_service_account_token, Some(false), "{name}");
            let c = container(&d);
            let security = c.security_context.as_ref().unwrap();
            assert_eq!(security.read_only_root_filesystem, Some(true), "{name}");
            assert_eq!(security.allow_privilege_escalation, Some(false), "{name}");
            assert_eq!(security.run_as_non_root, Some(true), "{name}");
            assert_eq!(
                security.capabilities.as_ref().unwrap().drop,
                Some(vec!["ALL".to_owned()]),
                "{name}"
            );
            for (probe, path) in [
                (&c.liveness_probe, "/healthz"),
                (&c.readiness_probe, "/readyz"),
            ] {
                let get = probe.as_ref().unwrap().http_get.as_ref().unwrap();
                assert_eq!(get.path.as_deref(), Some(path), "{name}");
                assert_eq!(get.port, IntOrString::Int(9090), "{name}");
            }
            let resources = c.resources.as_ref().unwrap();
            let requests = resources.requests.as_ref().unwrap();
            assert!(
                requests.contains_key("cpu") && requests.contains_key("memory"),
                "{name}"
            );
            let limits = resources.limits.as_ref().unwrap();
            assert!(limits.contains_key("memory"), "{name}");
            assert!(
                !limits.contains_key("cpu"),
                "{name}: no CPU limit (throttling)"
            );
            let ports = c.ports.as_ref().unwrap();
            assert!(
                ports
                    .iter()
                    .any(|p| p.name.as_deref() == Some("metrics") && p.container_port == 9090),
                "{name}"
            );
            let media = component == Component::Media;
            assert_eq!(pod.host_network, media.then_some(true), "{name}");
            let anti = pod
                .affinity
                .as_ref()
                .unwrap()
                .pod_anti_affinity
                .as_ref()
                .unwrap();
            assert_eq!(
                anti.required_during_scheduling_ignored_during_execution
                    .is_some(),
                media,
                "{name}: relays never share a node"
            );
        }
    }
}

#[test]
fn tls_secrets_are_mounted_where_the_flags_point() {
    let objects = objects();
    // (deployment, mounts expected).
    let cases = [
        (
            "city-dc-a-edge",
            vec![
                ("nats-tls", "nats-client-tls", "/etc/calanque/tls/nats"),
                ("etcd-tls", "etcd-client-tls", "/etc/calanque/tls/etcd"),
                ("sip-tls", "sip-tls", "/etc/calanque/tls/sip"),
            ],
        ),
        (
            "city-dc-a-call-control",
            vec![
                ("nats-tls", "nats-client-tls", "/etc/calanque/tls/nats"),
                ("etcd-tls", "etcd-client-tls", "/etc/calanque/tls/etcd"),
            ],
        ),
        (
            "city-dc-a-media",
            vec![("nats-tls", "nats-client-tls", "/etc/calanque/tls/nats")],
        ),
        (
            "city-dc-a-directory",
            vec![
                ("nats-tls", "nats-client-tls", "/etc/calanque/tls/nats"),
                ("etcd-tls", "etcd-client-tls", "/etc/calanque/tls/etcd"),
            ],
        ),
    ];
    for (name, expected) in cases {
        let d = deployment(&objects, name);
        let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let volumes: Vec<(String, String)> = pod
            .volumes
            .iter()
            .flatten()
            .map(|v| {
                (
                    v.name.clone(),
                    v.secret.as_ref().unwrap().secret_name.clone().unwrap(),
                )
            })
            .collect();
        let mounts: Vec<(String, String)> = container(&d)
            .volume_mounts
            .iter()
            .flatten()
            .inspect(|m| assert_eq!(m.read_only, Some(true)))
            .map(|m| (m.name.clone(), m.mount_path.clone()))
            .collect();
        let want_volumes: Vec<(String, String)> = expected
            .iter()
            .map(|(v, s, _)| (v.to_string(), s.to_string()))
            .collect();
        let want_mounts: Vec<(String, String)> = expected
            .iter()
            .map(|(v, _, p)| (v.to_string(), p.to_string()))
            .collect();
        assert_eq!(volumes, want_volumes, "{name}");
        assert_eq!(mounts, want_mounts, "{name}");
        // Every file flag points into a mounted Secret, at one of its three keys.
        for arg in container(&d).args.iter().flatten() {
            let Some((flag, file)) = arg.split_once('=') else {
                continue;
            };
            if !(flag.ends_with("-file") || flag.starts_with("--tls-")) {
                continue;
            }
            let (dir, key) = file.rsplit_once('/').unwrap();
            assert!(
                want_mounts.iter().any(|(_, path)| path == dir),
                "{name}: {arg} outside the mounts"
            );
            assert!(
                ["ca.crt", "tls.crt", "tls.key"].contains(&key),
                "{name}: {arg}"
            );
        }
    }

    // Without TLS: no volumes, no TLS listener.
    let mut plain = cluster();
    plain.spec.nats.tls_secret = None;
    plain.spec.etcd.tls_secret = None;
    plain.spec.sip.tls_port = None;
    plain.spec.sip.tls_secret = None;
    let objects = objects_for(&plain, &healthy_snapshot());
    let edge = deployment(&objects, "city-dc-a-edge");
    assert!(
        edge.spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .volumes
            .is_none()
    );
    let c = container(&edge);
    assert!(c.volume_mounts.is_none());
    assert!(!c.args.unwrap().iter().any(|a| a.contains("tls")));
    let sip = service(&objects, "city-dc-a-edge-sip");
    let ports: Vec<_> = sip
        .spec
        .unwrap()
        .ports
        .unwrap()
        .into_iter()
        .map(|p| p.name.unwrap())
        .collect();
    assert_eq!(ports, ["sip-udp", "sip-tcp"]);
}

#[test]
fn secrets_the_services_need_come_from_conventional_names() {
    let objects = objects();
    let env = |name: &str| container(&deployment(&objects, name)).env.unwrap();
    let secret_of = |env: &[k8s_openapi::api::core::v1::EnvVar], var: &str| {
        let e = env.iter().find(|e| e.name == var).expect(var);
        e.value_from.clone().unwrap().secret_key_ref.unwrap()
    };
    let nonce = secret_of(&env("city-dc-a-edge"), "CALANQUE_NONCE_KEY");
    assert_eq!(
        (nonce.name.as_str(), nonce.key.as_str(), nonce.optional),
        ("city-edge-nonce-key", "nonce-key", Some(true))
    );
    let token = secret_of(&env("city-dc-b-directory"), "CALANQUE_DIRECTORY_TOKEN");
    assert_eq!(
        (token.name.as_str(), token.key.as_str(), token.optional),
        ("city-directory-token", "token", Some(false))
    );
}

#[test]
fn call_control_anchors_media_only_with_relays() {
    let mut no_relays = cluster();
    no_relays.spec.replicas.media = 0;
    let objects = objects_for(&no_relays, &healthy_snapshot());
    let args = container(&deployment(&objects, "city-dc-a-call-control"))
        .args
        .unwrap();
    assert!(!args.contains(&"--media-relay".to_owned()));
    assert_eq!(
        deployment(&objects, "city-dc-a-media")
            .spec
            .unwrap()
            .replicas,
        Some(0)
    );
}

#[test]
fn services_expose_sip_on_the_datacenter_addresses_and_metrics_inside() {
    let objects = objects();
    for (dc, address) in [("dc-a", "192.0.2.10"), ("dc-b", "198.51.100.10")] {
        let sip = service(&objects, &format!("city-{dc}-edge-sip"))
            .spec
            .unwrap();
        assert_eq!(sip.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(sip.external_ips, Some(vec![address.to_owned()]), "{dc}");
        assert_eq!(
            sip.external_traffic_policy.as_deref(),
            Some("Local"),
            "{dc}"
        );
        let ports: Vec<(String, i32, String)> = sip
            .ports
            .unwrap()
            .into_iter()
            .map(|p| (p.name.unwrap(), p.port, p.protocol.unwrap()))
            .collect();
        assert_eq!(
            ports,
            [
                ("sip-udp".to_owned(), 5060, "UDP".to_owned()),
                ("sip-tcp".to_owned(), 5060, "TCP".to_owned()),
                ("sips".to_owned(), 5061, "TCP".to_owned()),
            ],
            "{dc}"
        );
        assert_eq!(
            sip.selector
                .unwrap()
                .get(LABEL_COMPONENT)
                .map(String::as_str),
            Some("edge")
        );
        for component in Component::ALL {
            let name = object_name("city", dc, component);
            let spec = service(&objects, &name).spec.unwrap();
            assert!(
                spec.external_ips.is_none(),
                "{name}: metrics never on public addresses"
            );
            let mut ports: Vec<(String, i32)> = spec
                .ports
                .unwrap()
                .into_iter()
                .map(|p| (p.name.unwrap(), p.port))
                .collect();
            ports.sort();
            let mut expected = vec![("metrics".to_owned(), 9090)];
            if component == Component::Directory {
                expected.extend([("grpc".to_owned(), 50051), ("rest".to_owned(), 8080)]);
                expected.sort();
            }
            assert_eq!(ports, expected, "{name}");
        }
    }
}

#[test]
fn disruption_budgets_allow_one_pod_at_a_time() {
    for object in objects() {
        if let DesiredObject::PodDisruptionBudget(PodDisruptionBudget { spec, metadata, .. }) =
            object
        {
            let spec = spec.unwrap();
            assert_eq!(
                spec.max_unavailable,
                Some(IntOrString::Int(1)),
                "{:?}",
                metadata.name
            );
            assert!(spec.min_available.is_none());
            assert_eq!(
                spec.unhealthy_pod_eviction_policy.as_deref(),
                Some("AlwaysAllow")
            );
            assert_eq!(spec.selector.unwrap().match_labels.unwrap().len(), 4);
        }
    }
}

#[test]
fn the_settings_hold_the_shared_configuration_and_the_placement() {
    let data = config_map(&objects()).data.unwrap();
    let get = |k: &str| {
        data.get(k)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("{k}"))
    };
    assert_eq!(get("cluster"), "city");
    assert_eq!(get("datacenters"), "dc-a,dc-b");
    assert_eq!(get("witness"), "witness");
    assert_eq!(get("active-datacenter"), "dc-a");
    assert_eq!(
        get("nats-urls"),
        "nats://nats-a.calanque:4222,nats://nats-b.calanque:4222,nats://nats-w.calanque:4222"
    );
    assert_eq!(get("sip-tls-port"), "5061");
    assert_eq!(get("rtp-ports"), "16384-32767");
    assert_eq!(get("slo-objective"), "99.977");
    assert_eq!(get("sip-addresses.dc-a"), "192.0.2.10");
    assert_eq!(get("sip-addresses.dc-b"), "198.51.100.10");
}

/// (what, dc-a healthy?, dc-b healthy?, dc-a's addresses, dc-b's addresses).
type PlacementCase = (
    &'static str,
    Option<bool>,
    Option<bool>,
    &'static [&'static str],
    &'static [&'static str],
);

#[test]
fn a_lost_datacenter_addresses_move_to_the_other_one() {
    let cases: [PlacementCase; 6] = [
        (
            "both healthy",
            Some(true),
            Some(true),
            &["192.0.2.10"],
            &["198.51.100.10"],
        ),
        (
            "health unknown",
            None,
            None,
            &["192.0.2.10"],
            &["198.51.100.10"],
        ),
        (
            "dc-a lost",
            Some(false),
            Some(true),
            &[],
            &["198.51.100.10", "192.0.2.10"],
        ),
        (
            "dc-b lost",
            Some(true),
            Some(false),
            &["192.0.2.10", "198.51.100.10"],
            &[],
        ),
        (
            "dc-a lost, dc-b unknown",
            Some(false),
            None,
            &[],
            &["198.51.100.10", "192.0.2.10"],
        ),
        (
            "both lost: nowhere better",
            Some(false),
            Some(false),
            &["192.0.2.10"],
            &["198.51.100.10"],
        ),
    ];
    let cluster = cluster();
    for (what, a, b, want_a, want_b) in cases {
        let mut snapshot = healthy_snapshot();
        snapshot.datacenters.clear();
        for (name, healthy) in [("dc-a", a), ("dc-b", b)] {
            if let Some(healthy) = healthy {
                snapshot
                    .datacenters
                    .push(crate::failover_view::DatacenterState {
                        name: name.into(),
                        healthy,
                        since: crate::fixtures::t("2026-11-29T11:00:00Z"),
                    });
            }
        }
        let placement = Placement::new(&cluster.spec, &snapshot);
        assert_eq!(placement.addresses_of("dc-a"), want_a, "{what}");
        assert_eq!(placement.addresses_of("dc-b"), want_b, "{what}");
        let objects = objects_for(&cluster, &snapshot);
        for (dc, want) in [("dc-a", want_a), ("dc-b", want_b)] {
            let spec = service(&objects, &format!("city-{dc}-edge-sip"))
                .spec
                .unwrap();
            if want.is_empty() {
                assert!(spec.external_ips.is_none(), "{what}: {dc}");
                assert!(
                    spec.external_traffic_policy.is_none(),
                    "{what}: {dc} (only with externalIPs)"
                );
            } else {
                let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
                assert_eq!(spec.external_ips, Some(want), "{what}: {dc}");
                assert_eq!(spec.external_traffic_policy.as_deref(), Some("Local"));
            }
        }
    }
}

#[test]
fn a_failover_changes_no_pod_template() {
    let cluster = cluster();
    let before = objects_for(&cluster, &healthy_snapshot());
    let after = objects_for(&cluster, &dc_a_lost_snapshot());
    let changed: Vec<String> = before
        .iter()
        .zip(&after)
        .filter(|(b, a)| b != a)
        .map(|(b, _)| format!("{} {}", b.kind(), b.name()))
        .collect();
    assert_eq!(
        changed,
        [
            "ConfigMap city-settings",
            "Service city-dc-a-edge-sip",
            "Service city-dc-b-edge-sip"
        ]
    );
    assert_eq!(
        config_map(&after).data.unwrap()["active-datacenter"],
        "dc-b"
    );
}

#[test]
fn the_builders_are_deterministic() {
    assert_eq!(
        objects()
            .iter()
            .map(DesiredObject::to_json)
            .collect::<Vec<_>>(),
        objects()
            .iter()
            .map(DesiredObject::to_json)
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_cluster_not_read_from_the_api_server_has_no_owner() {
    let mut orphan = cluster();
    orphan.metadata.uid = None;
    let placement = Placement::new(&orphan.spec, &healthy_snapshot());
    assert_eq!(
        desired_objects(&orphan, &placement),
        Err(DesiredError::Metadata("uid"))
    );
    orphan.metadata.namespace = None;
    assert_eq!(
        desired_objects(&orphan, &placement),
        Err(DesiredError::Metadata("namespace"))
    );
}

/// Without `natsUrls`, every datacenter's pods get `nats.urls` in the order given.
#[test]
fn without_own_nats_servers_the_order_given_is_kept() {
    let mut cluster = cluster();
    for dc in &mut cluster.spec.datacenters {
        dc.nats_urls.clear();
    }
    let given = cluster.spec.nats.urls.join(",");
    let objects = objects_for(&cluster, &healthy_snapshot());
    for name in ["city-dc-a-call-control", "city-dc-b-call-control"] {
        let args = container(&deployment(&objects, name)).args.clone().unwrap();
        assert!(
            args.contains(&format!("--nats={given}")),
            "{name}: {args:?}"
        );
    }
}
