//! The two 3-member clusters the datacenters share: etcd and NATS, one member in each of dc-a,
//! dc-b and the witness, so that either datacenter with the witness keeps quorum. This module
//! says how each member is started; the harness starts them and waits for health.

use std::net::Ipv4Addr;
use std::path::Path;

use crate::process::ProcessSpec;

pub const ETCD_CLIENT_PORT: u16 = 2379;
pub const ETCD_PEER_PORT: u16 = 2380;
pub const NATS_CLIENT_PORT: u16 = 4222;
pub const NATS_CLUSTER_PORT: u16 = 6222;
/// nats-server's HTTP monitoring (`/routez`, `/varz`).
pub const NATS_MONITOR_PORT: u16 = 8222;
/// The `--max-txn-ops` every calanque etcd member runs with (ADR 0005).
const ETCD_MAX_TXN_OPS: &str = "50000";

/// One location hosting a member of each cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// `dc-a`, `dc-b`, `witness`: the member's name in both clusters.
    pub name: String,
    pub namespace: String,
    pub address: Ipv4Addr,
}

impl Member {
    pub fn etcd_client_url(&self) -> String {
        format!("http://{}:{ETCD_CLIENT_PORT}", self.address)
    }

    pub fn etcd_peer_url(&self) -> String {
        format!("http://{}:{ETCD_PEER_PORT}", self.address)
    }

    pub fn nats_url(&self) -> String {
        format!("nats://{}:{NATS_CLIENT_PORT}", self.address)
    }

    pub fn nats_route_url(&self) -> String {
        format!("nats://{}:{NATS_CLUSTER_PORT}", self.address)
    }

    pub fn nats_monitor_url(&self, path: &str) -> String {
        format!("http://{}:{NATS_MONITOR_PORT}{path}", self.address)
    }

    /// The harness's process name of this member's etcd.
    pub fn etcd_process(&self) -> String {
        format!("etcd-{}", self.name)
    }

    pub fn nats_process(&self) -> String {
        format!("nats-{}", self.name)
    }

    /// etcd in this member's namespace, data in `data_dir` (kept across a restart of the
    /// process: a restarted member rejoins with its data, as after a crash).
    ///
    /// The heartbeat (100 ms) and election timeout (1 s) are shorter than etcd's defaults so a
    /// lost leader is replaced within about a second, and longer than the testkit's
    /// single-member 50/500 because three members on two shared cores must not hold elections
    /// on a busy scheduler.
    ///
    /// Pre-vote is on (etcd 3.4's default is off): a member cut off from the leader would
    /// otherwise raise its term at every election timeout and, when the cut heals, force the
    /// healthy leader to step down — two seconds without a leader, store writes refused, calls
    /// lost, just as the partition was over (the partition scenario showed it).
    pub fn etcd_spec(&self, program: &Path, members: &[Member], data_dir: &Path) -> ProcessSpec {
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.etcd_peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        let data = data_dir.to_string_lossy().into_owned();
        ProcessSpec::new(&self.etcd_process(), &self.namespace, program).args([
            "--name".to_owned(),
            self.name.clone(),
            "--data-dir".to_owned(),
            data,
            "--listen-client-urls".to_owned(),
            self.etcd_client_url(),
            "--advertise-client-urls".to_owned(),
            self.etcd_client_url(),
            "--listen-peer-urls".to_owned(),
            self.etcd_peer_url(),
            "--initial-advertise-peer-urls".to_owned(),
            self.etcd_peer_url(),
            "--initial-cluster".to_owned(),
            initial_cluster,
            "--initial-cluster-state".to_owned(),
            "new".to_owned(),
            "--initial-cluster-token".to_owned(),
            "calanque-e2e".to_owned(),
            "--max-txn-ops".to_owned(),
            ETCD_MAX_TXN_OPS.to_owned(),
            "--max-request-bytes".to_owned(),
            "33554432".to_owned(),
            "--heartbeat-interval".to_owned(),
            "100".to_owned(),
            "--election-timeout".to_owned(),
            "1000".to_owned(),
            // A boolean flag: etcd takes `--pre-vote=true`, not `--pre-vote true`.
            "--pre-vote=true".to_owned(),
            "--logger".to_owned(),
            "zap".to_owned(),
            "--log-level".to_owned(),
            "info".to_owned(),
        ])
    }

    /// nats-server in this member's namespace, routed to the two others (no JetStream: the
    /// product uses the bus for messages only; the store is etcd).
    pub fn nats_spec(&self, program: &Path, members: &[Member]) -> ProcessSpec {
        let routes = members
            .iter()
            .filter(|m| *m != self)
            .map(Member::nats_route_url)
            .collect::<Vec<_>>()
            .join(",");
        // Pings every second, dropped after two unanswered, towards clients and between the
        // routes: a route cut without a reset (a partition) is noticed in about 3 s instead
        // of minutes, and the servers stop sending across it what the other side's
        // subscribers (a queue group's members there) would never get. Production NATS needs
        // the same (docs/adr/0020).
        let config = std::env::temp_dir().join(format!("cq-e2e-{}.conf", self.nats_process()));
        let _ = std::fs::write(
            &config,
            "ping_interval: \"1s\"\nping_max: 2\ncluster {\n  ping_interval: \"1s\"\n  ping_max: 2\n}\n",
        );
        ProcessSpec::new(&self.nats_process(), &self.namespace, program)
            .args([
                "-c".to_owned(),
                config.display().to_string(),
                "--name".to_owned(),
                self.nats_process(),
                "-a".to_owned(),
                self.address.to_string(),
                "-p".to_owned(),
                NATS_CLIENT_PORT.to_string(),
                "--http_port".to_owned(),
                NATS_MONITOR_PORT.to_string(),
                "--cluster_name".to_owned(),
                "calanque-e2e".to_owned(),
                "--cluster".to_owned(),
                self.nats_route_url(),
                "--routes".to_owned(),
                routes,
            ])
            .ready_line("Server is ready")
    }
}

/// The etcd client URLs of `members`, comma-separated (the services' `--etcd`).
pub fn etcd_endpoints(members: &[Member]) -> String {
    members
        .iter()
        .map(Member::etcd_client_url)
        .collect::<Vec<_>>()
        .join(",")
}

/// The NATS URLs of `members`, comma-separated (the services' `--nats`).
pub fn nats_urls(members: &[Member]) -> String {
    members
        .iter()
        .map(Member::nats_url)
        .collect::<Vec<_>>()
        .join(",")
}
