//! The calanque services of one datacenter, each a process in the datacenter's namespace:
//! directory, media relay, SIP edge, call-control, and the failover controller. Every service
//! is given all three etcd members and all three NATS servers, as in production, so it keeps
//! working through the loss of any one location.

use std::net::{Ipv4Addr, SocketAddrV4};

use anyhow::Result;

use crate::binaries::Binaries;
use crate::process::ProcessSpec;

/// The edge's SIP port (UDP) on the datacenter's address.
pub const SIP_PORT: u16 = 5070;
pub const DIRECTORY_REST_PORT: u16 = 8080;
pub const DIRECTORY_GRPC_PORT: u16 = 9090;
/// Telemetry (`/metrics`, `/healthz`, `/readyz`) of each service, on the datacenter's address.
pub const EDGE_TELEMETRY_PORT: u16 = 9101;
pub const CALL_CONTROL_TELEMETRY_PORT: u16 = 9102;
pub const MEDIA_TELEMETRY_PORT: u16 = 9103;
pub const DIRECTORY_TELEMETRY_PORT: u16 = 9104;
pub const FAILOVER_TELEMETRY_PORT: u16 = 9105;
/// The media relay's RTP/RTCP ports.
pub const MEDIA_PORTS: &str = "20000-20999";
/// The digest nonce key every edge shares (a nonce from one edge verifies at the other, as a
/// phone moving datacenters needs).
const NONCE_KEY_BYTE: &str = "22";
const DIRECTORY_TOKEN: &str = "e2e-admin-token-0123456789abcdef0123";

/// What every service of a run is configured with.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub realm: String,
    /// `--etcd`: all three members' client URLs, comma-separated.
    pub etcd: String,
    /// `--nats`: all three servers, comma-separated.
    pub nats: String,
}

/// The failover controllers' timing (ADR 0018), short so a test sees a failover in seconds.
#[derive(Debug, Clone, Copy)]
pub struct FailoverTiming {
    pub detection_seconds: u64,
    pub probe_interval_ms: u64,
    pub lease_ttl_seconds: u64,
}

impl Default for FailoverTiming {
    fn default() -> FailoverTiming {
        FailoverTiming {
            detection_seconds: 3,
            probe_interval_ms: 250,
            lease_ttl_seconds: 2,
        }
    }
}

/// One serving datacenter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datacenter {
    /// `dc-a`: the name the services and the failover state use.
    pub name: String,
    pub namespace: String,
    pub address: Ipv4Addr,
}

impl Datacenter {
    /// `a` for `dc-a`: the suffix of the process and instance names (`edge-a`, `cc-a`, …).
    pub fn suffix(&self) -> &str {
        self.name.strip_prefix("dc-").unwrap_or(&self.name)
    }

    /// `urls` (comma-separated) with this datacenter's own first: services use the first
    /// server they can reach, and one across a partition would cut them off.
    fn local_first(&self, urls: &str) -> String {
        local_first(urls, self.address)
    }

    /// The edge's SIP address (UDP).
    pub fn sip(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.address, SIP_PORT)
    }

    fn at(&self, port: u16) -> String {
        SocketAddrV4::new(self.address, port).to_string()
    }

    /// Process names of this datacenter's services, in start order.
    pub fn service_names(&self) -> [String; 4] {
        let s = self.suffix();
        [
            format!("directory-{s}"),
            format!("media-{s}"),
            format!("edge-{s}"),
            format!("cc-{s}"),
        ]
    }

    pub fn failover_name(&self) -> String {
        format!("failover-{}", self.suffix())
    }

    /// The specs of directory, media relay, SIP edge and call-control, in start order.
    pub fn service_specs(
        &self,
        bins: &Binaries,
        config: &ServiceConfig,
    ) -> Result<Vec<ProcessSpec>> {
        let [directory, media, edge, call_control] = self.service_names();
        let ns = &self.namespace;
        Ok(vec![
            ProcessSpec::new(&directory, ns, bins.calanque("calanque-directory")?)
                .args([
                    "--store".to_owned(),
                    format!("etcd:{}", config.etcd),
                    "--bus".to_owned(),
                    self.local_first(&config.nats),
                    "--rest".to_owned(),
                    self.at(DIRECTORY_REST_PORT),
                    "--grpc".to_owned(),
                    self.at(DIRECTORY_GRPC_PORT),
                    "--realm".to_owned(),
                    config.realm.clone(),
                    "--telemetry-listen".to_owned(),
                    self.at(DIRECTORY_TELEMETRY_PORT),
                ])
                .env("CALANQUE_DIRECTORY_TOKEN", DIRECTORY_TOKEN)
                .ready_line("REST API listening"),
            ProcessSpec::new(&media, ns, bins.calanque("calanque-media")?)
                .args([
                    "--nats".to_owned(),
                    self.local_first(&config.nats),
                    "--media-id".to_owned(),
                    media.clone(),
                    "--datacenter".to_owned(),
                    self.name.clone(),
                    "--listen-ip".to_owned(),
                    self.address.to_string(),
                    "--ports".to_owned(),
                    MEDIA_PORTS.to_owned(),
                    "--heartbeat-ms".to_owned(),
                    "200".to_owned(),
                    "--telemetry-listen".to_owned(),
                    self.at(MEDIA_TELEMETRY_PORT),
                ])
                .ready_line("media relay ready"),
            ProcessSpec::new(&edge, ns, bins.calanque("calanque-sip-edge")?)
                .args([
                    "--edge-id".to_owned(),
                    edge.clone(),
                    "--datacenter".to_owned(),
                    self.name.clone(),
                    "--listen".to_owned(),
                    format!("udp:{}", self.sip()),
                    "--etcd".to_owned(),
                    config.etcd.clone(),
                    "--nats".to_owned(),
                    self.local_first(&config.nats),
                    "--realm".to_owned(),
                    config.realm.clone(),
                    "--nonce-key".to_owned(),
                    NONCE_KEY_BYTE.repeat(32),
                    "--telemetry-listen".to_owned(),
                    self.at(EDGE_TELEMETRY_PORT),
                ])
                .ready_line("sip-edge ready"),
            ProcessSpec::new(&call_control, ns, bins.calanque("calanque-call-control")?)
                .args([
                    "--instance".to_owned(),
                    call_control.clone(),
                    "--datacenter".to_owned(),
                    self.name.clone(),
                    "--etcd".to_owned(),
                    config.etcd.clone(),
                    "--nats".to_owned(),
                    self.local_first(&config.nats),
                    "--domain".to_owned(),
                    config.realm.clone(),
                    "--media-relay".to_owned(),
                    "--telemetry-listen".to_owned(),
                    self.at(CALL_CONTROL_TELEMETRY_PORT),
                ])
                .ready_line("call-control ready"),
        ])
    }

    /// How a failover controller probes this datacenter: SIP OPTIONS to the edge and the edge's
    /// `/readyz` (the edge stands for the datacenter: phones reach it or not; a killed
    /// call-control replica is covered by the other datacenter's without a failover).
    pub fn failover_target(&self) -> String {
        format!(
            "{}=sip:{},readyz:http://{}/readyz",
            self.name,
            self.sip(),
            self.at(EDGE_TELEMETRY_PORT)
        )
    }

    /// Where this datacenter's failover controller runs.
    pub fn failover_place(&self, config: &ServiceConfig) -> FailoverPlace {
        FailoverPlace {
            instance: self.failover_name(),
            namespace: self.namespace.clone(),
            nats: self.local_first(&config.nats),
            telemetry: self.at(FAILOVER_TELEMETRY_PORT),
        }
    }
}

/// `urls` (comma-separated) with those at `address` first: each place talks to its own
/// member first.
fn local_first(urls: &str, address: Ipv4Addr) -> String {
    let own = format!("//{address}:");
    let (mut local, others): (Vec<&str>, Vec<&str>) =
        urls.split(',').partition(|url| url.contains(&own));
    local.extend(others);
    local.join(",")
}

/// Where a failover controller runs: its instance name, namespace, NATS servers (its own
/// first) and telemetry address.
#[derive(Debug, Clone)]
pub struct FailoverPlace {
    pub instance: String,
    pub namespace: String,
    pub nats: String,
    pub telemetry: String,
}

/// The failover controller at the witness (`failover-w`): it probes both datacenters from the
/// third site, so that in a partition between them its view breaks the tie (ADR 0018).
pub fn witness_failover_place(witness: Ipv4Addr, config: &ServiceConfig) -> FailoverPlace {
    FailoverPlace {
        instance: "failover-w".to_owned(),
        namespace: crate::netns::WITNESS.to_owned(),
        nats: local_first(&config.nats, witness),
        telemetry: SocketAddrV4::new(witness, FAILOVER_TELEMETRY_PORT).to_string(),
    }
}

/// A failover controller at `place`, probing `datacenters` (in order, the first the primary).
pub fn failover_spec(
    place: FailoverPlace,
    bins: &Binaries,
    config: &ServiceConfig,
    datacenters: &[Datacenter],
    witness_url: &str,
    timing: FailoverTiming,
) -> Result<ProcessSpec> {
    let mut args = vec![
        "--instance".to_owned(),
        place.instance.clone(),
        "--etcd".to_owned(),
        config.etcd.clone(),
        "--nats".to_owned(),
        place.nats,
    ];
    for datacenter in datacenters {
        args.extend(["--datacenter".to_owned(), datacenter.failover_target()]);
    }
    args.extend([
        "--witness".to_owned(),
        witness_url.to_owned(),
        "--detection-seconds".to_owned(),
        timing.detection_seconds.to_string(),
        "--probe-interval-ms".to_owned(),
        timing.probe_interval_ms.to_string(),
        "--lease-ttl-seconds".to_owned(),
        timing.lease_ttl_seconds.to_string(),
        "--telemetry-listen".to_owned(),
        place.telemetry,
    ]);
    Ok(ProcessSpec::new(
        &place.instance,
        &place.namespace,
        bins.calanque("calanque-failover")?,
    )
    .args(args)
    .ready_line("failover controller ready"))
}
