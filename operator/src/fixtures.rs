//! Test fixtures: the contract's example cluster, as the API server would hand it over.

use k8s_openapi::jiff::Timestamp;

use crate::failover_view::{DatacenterState, FailoverSnapshot, Outage, RunningFailover};
use crate::resource::PbxCluster;

/// The example of `docs/pbxcluster.md` (spec only), with the metadata the API server adds.
pub(crate) const EXAMPLE: &str = r#"
apiVersion: calanque.io/v1alpha1
kind: PbxCluster
metadata:
  name: city
  namespace: calanque
  uid: 6f2a3c1e-0000-4000-8000-000000000001
  generation: 3
  resourceVersion: "100"
spec:
  datacenters:
    - name: dc-a
      role: serving
      nodeSelector:
        topology.kubernetes.io/zone: dc-a
      sipAddresses: ["192.0.2.10"]
      mediaAddress: 192.0.2.20
      natsUrls: ["nats://nats-a.calanque:4222"]
    - name: dc-b
      role: serving
      nodeSelector: {topology.kubernetes.io/zone: dc-b}
      sipAddresses: ["198.51.100.10"]
      natsUrls: ["nats://nats-b.calanque:4222"]
    - name: witness
      role: witness
      nodeSelector: {topology.kubernetes.io/zone: witness}
      natsUrls: ["nats://nats-w.calanque:4222"]
  replicas:
    edge: 2
    callControl: 2
    media: 2
    directory: 1
  image:
    repository: ghcr.io/calanque/calanque
    tag: "0.1.0"
    pullPolicy: IfNotPresent
  nats:
    urls: ["nats://nats-a.calanque:4222", "nats://nats-b.calanque:4222", "nats://nats-w.calanque:4222"]
    tlsSecret: nats-client-tls
  etcd:
    endpoints: ["https://etcd-a.calanque:2379", "https://etcd-b.calanque:2379", "https://etcd-w.calanque:2379"]
    tlsSecret: etcd-client-tls
  sip:
    udpPort: 5060
    tcpPort: 5060
    tlsPort: 5061
    tlsSecret: sip-tls
  rtp:
    portFirst: 16384
    portLast: 32767
  slo:
    objective: "99.977"
  failover:
    detectionSeconds: 10
    failbackAfterSeconds: 600
    automaticFailback: false
"#;

/// The example cluster.
pub(crate) fn cluster() -> PbxCluster {
    serde_norway::from_str(EXAMPLE).expect("the example parses")
}

/// A timestamp from RFC 3339.
pub(crate) fn t(s: &str) -> Timestamp {
    s.parse().expect("a timestamp")
}

/// Both datacenters healthy since the start of 2026, dc-a active.
pub(crate) fn healthy_snapshot() -> FailoverSnapshot {
    FailoverSnapshot {
        active_datacenter: "dc-a".into(),
        datacenters: vec![
            DatacenterState {
                name: "dc-a".into(),
                healthy: true,
                since: t("2026-01-01T00:00:00Z"),
            },
            DatacenterState {
                name: "dc-b".into(),
                healthy: true,
                since: t("2026-01-01T00:00:00Z"),
            },
        ],
        history: Vec::new(),
        running: None,
        outages: Vec::new(),
    }
}

/// dc-a lost at 11:00:00 on 2026-11-29; the roles are moving to dc-b.
pub(crate) fn dc_a_lost_snapshot() -> FailoverSnapshot {
    FailoverSnapshot {
        active_datacenter: "dc-b".into(),
        datacenters: vec![
            DatacenterState {
                name: "dc-a".into(),
                healthy: false,
                since: t("2026-11-29T11:00:00Z"),
            },
            DatacenterState {
                name: "dc-b".into(),
                healthy: true,
                since: t("2026-01-01T00:00:00Z"),
            },
        ],
        history: Vec::new(),
        running: Some(RunningFailover {
            from: "dc-a".into(),
            to: "dc-b".into(),
            reason: "DatacenterLost".into(),
            started_at: t("2026-11-29T11:00:00Z"),
        }),
        outages: vec![Outage {
            datacenter: "dc-a".into(),
            started_at: t("2026-11-29T11:00:00Z"),
            ended_at: None,
        }],
    }
}
