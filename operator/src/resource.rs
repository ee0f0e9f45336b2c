//! The `PbxCluster` custom resource (`docs/pbxcluster.md` is the contract): its spec and status
//! types, from which the CRD is generated, and [`validate`], the checks the schema cannot say.
//!
//! The schema says what OpenAPI and CEL can say, so that the API server rejects a bad resource
//! before the operator sees it: port ranges, non-negative replicas, DNS-label names (pattern),
//! unique datacenter names (a list-map keyed by name), exactly two serving datacenters and at
//! most one witness, an even `rtp.portFirst` below `rtp.portLast`, the objective's format.
//! [`validate`] repeats every one of these (a resource stored before the CRD was updated, or a
//! test fixture, never went through the schema) and adds what needs parsing or the object's
//! name: IP addresses, TLS settings that go together, object-name lengths.

// kube's `KubeSchema` derive copies each struct it derives for, `pub` included, into a function
// body (to derive the plain schema before adding the CEL rules); that copy is unreachable.
#![allow(
    unreachable_pub,
    reason = "the copies KubeSchema makes inside functions"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of every calanque resource.
pub const GROUP: &str = "calanque.io";
/// The annotation asking for a failback to the named datacenter (removed once done).
pub const FAILBACK_ANNOTATION: &str = "calanque.io/failback";

/// A DNS label (RFC 1123): what datacenter names must be, since they appear in object names and
/// label values.
pub const DNS_LABEL_PATTERN: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// The SLO objective: a percentage below 100 with at most six decimals, as an exact string.
pub const OBJECTIVE_PATTERN: &str = r"^[0-9]{1,2}(\.[0-9]{1,6})?$";

/// One calanque installation across two serving datacenters and an optional witness.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "calanque.io",
    version = "v1alpha1",
    kind = "PbxCluster",
    plural = "pbxclusters",
    shortname = "pbx",
    namespaced,
    status = "PbxClusterStatus",
    doc = "A calanque IP-PBX across two serving datacenters and a witness (docs/pbxcluster.md)",
    printcolumn = r#"{"name":"Active","type":"string","description":"the datacenter holding the singleton roles","jsonPath":".status.activeDatacenter"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Budget","type":"string","description":"the share of this year's error budget left","jsonPath":".status.errorBudget.remainingRatio"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct PbxClusterSpec {
    /// Exactly two serving datacenters, plus optionally one witness (names unique).
    #[schemars(length(min = 2, max = 3))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    #[x_kube(
        validation = Rule::new("self.filter(d, d.role == 'serving').size() == 2")
            .message("exactly two datacenters must have role serving"),
        validation = Rule::new("self.filter(d, d.role == 'witness').size() <= 1")
            .message("at most one datacenter may have role witness")
    )]
    pub datacenters: Vec<Datacenter>,
    /// Replicas of each service in each serving datacenter.
    #[serde(default)]
    pub replicas: Replicas,
    /// The image holding every calanque binary.
    pub image: Image,
    /// The NATS cluster (members in both datacenters and the witness).
    pub nats: Nats,
    /// The etcd cluster (members in both datacenters and the witness).
    pub etcd: Etcd,
    /// SIP listeners of the edges.
    #[serde(default)]
    pub sip: Sip,
    /// The media relays' RTP/RTCP port range.
    #[serde(default)]
    pub rtp: Rtp,
    /// The availability objective the error budget is counted against.
    #[serde(default)]
    pub slo: Slo,
    /// When datacenters are failed over and back.
    #[serde(default)]
    pub failover: Failover,
}

/// A datacenter: serving (runs every service) or witness (only etcd and NATS members).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.role == 'serving' || (!has(self.sipAddresses) || size(self.sipAddresses) == 0) && !has(self.mediaAddress)")
        .message("a witness has no sipAddresses and no mediaAddress"),
    validation = Rule::new("self.role == 'witness' || (has(self.sipAddresses) && size(self.sipAddresses) > 0)")
        .message("a serving datacenter needs at least one sipAddress")
)]
pub struct Datacenter {
    /// DNS label; used in object names and the `calanque.io/datacenter` label.
    #[schemars(length(min = 1, max = 63), pattern(DNS_LABEL_PATTERN))]
    pub name: String,
    /// `serving` or `witness`.
    pub role: DatacenterRole,
    /// Where this datacenter's pods go.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Addresses phones use for this datacenter's edges (IP addresses).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub sip_addresses: Vec<String>,
    /// Address the media relays advertise in SDP (an IP address); else each relay's node's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_address: Option<String>,
    /// This datacenter's own NATS servers, among `nats.urls`: its pods list them first, so that
    /// they stay on a server of their own datacenter and a cut between the datacenters does
    /// not take their bus (ADR 0022). Empty: `nats.urls` in the order given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub nats_urls: Vec<String>,
}

/// What a datacenter runs.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum DatacenterRole {
    /// Every service, and an etcd and a NATS member.
    Serving,
    /// Only an etcd and a NATS member, so that either serving datacenter keeps quorum alone.
    Witness,
}

/// Replicas per service, per serving datacenter.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Replicas {
    /// SIP edges.
    #[schemars(range(min = 0))]
    pub edge: i32,
    /// Call-control (B2BUA) instances.
    #[schemars(range(min = 0))]
    pub call_control: i32,
    /// Media relays (one per node: they use the host's network).
    #[schemars(range(min = 0))]
    pub media: i32,
    /// Directory service instances.
    #[schemars(range(min = 0))]
    pub directory: i32,
}

impl Default for Replicas {
    fn default() -> Replicas {
        Replicas {
            edge: 2,
            call_control: 2,
            media: 2,
            directory: 1,
        }
    }
}

/// The container image.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    /// e.g. `ghcr.io/calanque/calanque`.
    #[schemars(length(min = 1))]
    pub repository: String,
    /// e.g. `0.1.0`.
    #[schemars(length(min = 1))]
    pub tag: String,
    /// `Always`, `IfNotPresent` (the default) or `Never`.
    #[serde(default)]
    pub pull_policy: PullPolicy,
}

impl Image {
    /// `repository:tag`.
    pub fn reference(&self) -> String {
        format!("{}:{}", self.repository, self.tag)
    }
}

/// Kubernetes' image pull policies.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PullPolicy {
    /// Pull on every start.
    Always,
    /// Pull when the node lacks the image.
    #[default]
    IfNotPresent,
    /// Never pull.
    Never,
}

impl PullPolicy {
    /// The name Kubernetes uses.
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

/// The NATS cluster.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Nats {
    /// Server URLs, e.g. `nats://nats-a.calanque:4222`.
    #[schemars(length(min = 1))]
    pub urls: Vec<String>,
    /// Secret with `ca.crt`, `tls.crt`, `tls.key` for the clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret: Option<String>,
}

/// The etcd cluster.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Etcd {
    /// Endpoints, e.g. `https://etcd-a.calanque:2379`.
    #[schemars(length(min = 1))]
    pub endpoints: Vec<String>,
    /// Secret with `ca.crt`, `tls.crt`, `tls.key` for the clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret: Option<String>,
}

/// The edges' SIP listeners.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.tlsPort) == has(self.tlsSecret)")
        .message("tlsPort and tlsSecret go together")
)]
pub struct Sip {
    /// UDP port (5060 by default).
    #[serde(default = "default_sip_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub udp_port: u16,
    /// TCP port (5060 by default).
    #[serde(default = "default_sip_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub tcp_port: u16,
    /// TLS port (with `tlsSecret`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub tls_port: Option<u16>,
    /// Secret with `tls.crt` and `tls.key` (with `tlsPort`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret: Option<String>,
}

fn default_sip_port() -> u16 {
    5060
}

impl Default for Sip {
    fn default() -> Sip {
        Sip {
            udp_port: 5060,
            tcp_port: 5060,
            tls_port: None,
            tls_secret: None,
        }
    }
}

/// The relays' RTP/RTCP port range: pairs of an even RTP port and the next odd RTCP port.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.portFirst < self.portLast")
        .message("portFirst must be below portLast"),
    validation = Rule::new("self.portFirst % 2 == 0")
        .message("portFirst must be even (RTP on even ports, RTCP on the next odd one)")
)]
pub struct Rtp {
    /// First port (even), 16384 by default.
    #[serde(default = "default_rtp_first")]
    #[schemars(range(min = 1024, max = 65534))]
    pub port_first: u16,
    /// Last port, 32767 by default.
    #[serde(default = "default_rtp_last")]
    #[schemars(range(min = 1025, max = 65535))]
    pub port_last: u16,
}

fn default_rtp_first() -> u16 {
    16384
}

fn default_rtp_last() -> u16 {
    32767
}

impl Default for Rtp {
    fn default() -> Rtp {
        Rtp {
            port_first: default_rtp_first(),
            port_last: default_rtp_last(),
        }
    }
}

/// The service level objective.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Slo {
    /// Percent of the year the PBX must serve, an exact decimal string below 100 (`"99.977"`).
    #[serde(default = "default_objective")]
    #[schemars(pattern(OBJECTIVE_PATTERN))]
    pub objective: String,
}

fn default_objective() -> String {
    "99.977".to_owned()
}

impl Default for Slo {
    fn default() -> Slo {
        Slo {
            objective: default_objective(),
        }
    }
}

/// Failover and failback timing.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Failover {
    /// A datacenter unhealthy this long is failed over (10 s by default).
    #[serde(default = "default_detection_seconds")]
    #[schemars(range(min = 1, max = 3600))]
    pub detection_seconds: u32,
    /// Stable period before an automatic failback (600 s by default).
    #[serde(default = "default_failback_after_seconds")]
    #[schemars(range(min = 0, max = 604800))]
    pub failback_after_seconds: u32,
    /// Whether to fail back automatically; otherwise only when asked (annotation).
    #[serde(default)]
    pub automatic_failback: bool,
}

fn default_detection_seconds() -> u32 {
    10
}

fn default_failback_after_seconds() -> u32 {
    600
}

impl Default for Failover {
    fn default() -> Failover {
        Failover {
            detection_seconds: default_detection_seconds(),
            failback_after_seconds: default_failback_after_seconds(),
            automatic_failback: false,
        }
    }
}

/// What the operator observed and decided, written through the `/status` subresource.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PbxClusterStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Where the singleton roles run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_datacenter: Option<String>,
    /// `Ready`, `Degraded` and `FailoverInProgress`.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The failover controller's latest view of each datacenter.
    #[serde(default)]
    pub datacenters: Vec<DatacenterHealth>,
    /// Failovers, newest last, at most 50 kept.
    #[serde(default)]
    pub failovers: Vec<FailoverRecord>,
    /// Periods a datacenter was unhealthy, newest last, at most 50 kept.
    #[serde(default)]
    pub outages: Vec<OutageRecord>,
    /// This calendar year's error budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_budget: Option<ErrorBudget>,
}

/// How many failovers and outages the status keeps.
pub const HISTORY_LIMIT: usize = 50;

/// One datacenter's health as the failover controller sees it.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DatacenterHealth {
    /// The datacenter.
    pub name: String,
    /// Whether it is healthy.
    pub healthy: bool,
    /// Since when it has been so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
}

/// One move of the singleton roles between datacenters.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FailoverRecord {
    /// The datacenter the roles left.
    pub from: String,
    /// The datacenter the roles went to.
    pub to: String,
    /// Why (`DatacenterLost`, `Failback`, …).
    pub reason: String,
    /// When it started.
    pub started_at: Time,
    /// When it completed (absent while it runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
}

/// A period one datacenter was unhealthy.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OutageRecord {
    /// The datacenter.
    pub datacenter: String,
    /// When it became unhealthy.
    pub started_at: Time,
    /// When it was healthy again (absent while the outage lasts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Time>,
}

/// The calendar year's error budget.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBudget {
    /// The objective, as in the spec.
    pub objective: String,
    /// January 1st, 00:00 UTC, of the current year.
    pub period_start: Time,
    /// (1 − objective) × the year's seconds, rounded down.
    pub allowed_seconds: i64,
    /// Unavailability counted this year, rounded up to the second.
    pub spent_seconds: i64,
    /// 1 − spent/allowed, four decimals (negative once overspent).
    pub remaining_ratio: String,
}

/// Why a `PbxCluster` cannot be reconciled as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// The resource has no `metadata.name`.
    #[error("the PbxCluster has no name")]
    Unnamed,
    /// The cluster's name must be a DNS-1035 label: it starts every object name, and Services
    /// need one.
    #[error(
        "metadata.name {0:?} must be a DNS-1035 label (lower-case letters, digits and '-', starting with a letter)"
    )]
    ClusterName(String),
    /// Names built from the cluster's and a datacenter's would exceed 63 characters.
    #[error(
        "object name {name:?} is {length} characters, above Kubernetes' 63: shorten the cluster's or the datacenter's name"
    )]
    NameTooLong {
        /// The longest name the operator would create.
        name: String,
        /// Its length.
        length: usize,
    },
    /// A datacenter's name is not a DNS label.
    #[error("datacenter name {0:?} must be a DNS label (lower-case letters, digits and '-')")]
    DatacenterName(String),
    /// Two datacenters share a name.
    #[error("datacenter name {0:?} appears more than once")]
    DuplicateDatacenter(String),
    /// Not exactly two serving datacenters.
    #[error("exactly two datacenters must have role serving, found {0}")]
    ServingCount(usize),
    /// More than one witness.
    #[error("at most one datacenter may have role witness, found {0}")]
    WitnessCount(usize),
    /// A serving datacenter without SIP addresses.
    #[error("serving datacenter {0:?} needs at least one sipAddress")]
    NoSipAddress(String),
    /// A witness with SIP or media addresses (it runs no edge and no relay).
    #[error(
        "witness datacenter {0:?} has sipAddresses or a mediaAddress, but runs no edge or relay"
    )]
    WitnessAddresses(String),
    /// An address that does not parse as an IP address.
    #[error("datacenter {datacenter:?}: {field} {value:?} is not an IP address")]
    Address {
        /// The datacenter.
        datacenter: String,
        /// `sipAddresses` or `mediaAddress`.
        field: &'static str,
        /// What was written.
        value: String,
    },
    /// The same SIP address in two datacenters (phones would not know which they reach).
    #[error("sipAddress {0} is listed by more than one datacenter")]
    SharedSipAddress(IpAddr),
    /// A negative replica count.
    #[error("replicas.{service} is {value}, below 0")]
    NegativeReplicas {
        /// The service.
        service: &'static str,
        /// The count.
        value: i32,
    },
    /// An empty image repository or tag.
    #[error("image.repository and image.tag must not be empty")]
    Image,
    /// No NATS URL or no etcd endpoint.
    #[error("{0} must list at least one address")]
    NoEndpoints(&'static str),
    /// A port of 0.
    #[error("{0} must be between 1 and 65535")]
    Port(&'static str),
    /// `sip.tlsPort` without `sip.tlsSecret` or the reverse.
    #[error("sip.tlsPort and sip.tlsSecret go together")]
    SipTls,
    /// An RTP range that is empty, below 1024, or starts on an odd port.
    #[error("rtp.portFirst ({first}) must be even, at least 1024, and below rtp.portLast ({last})")]
    RtpRange {
        /// `portFirst`.
        first: u16,
        /// `portLast`.
        last: u16,
    },
    /// An objective that is not a percentage below 100 with at most six decimals.
    #[error(
        "slo.objective {0:?} must be a percentage below 100 with at most six decimals, e.g. \"99.977\""
    )]
    Objective(String),
    /// A detection time of 0.
    #[error("failover.detectionSeconds must be at least 1")]
    DetectionSeconds,
    /// A datacenter's own NATS server that `nats.urls` does not list.
    #[error("datacenter {datacenter:?}: natsUrls lists {url:?}, which nats.urls does not")]
    UnknownNatsUrl {
        /// The datacenter.
        datacenter: String,
        /// The URL.
        url: String,
    },
    /// One NATS server claimed by two datacenters.
    #[error("NATS server {0:?} is in the natsUrls of more than one datacenter")]
    SharedNatsUrl(String),
}

/// The names of the two serving datacenters (in spec order) and of the witness, if any.
pub fn serving_datacenters(spec: &PbxClusterSpec) -> impl Iterator<Item = &Datacenter> {
    spec.datacenters
        .iter()
        .filter(|dc| dc.role == DatacenterRole::Serving)
}

/// `nats.urls` in the order `dc`'s pods use them: the datacenter's own servers first, then the
/// others as given (ADR 0022).
pub fn nats_urls_for(spec: &PbxClusterSpec, dc: &Datacenter) -> Vec<String> {
    let own = spec
        .nats
        .urls
        .iter()
        .filter(|url| dc.nats_urls.contains(url));
    let others = spec
        .nats
        .urls
        .iter()
        .filter(|url| !dc.nats_urls.contains(url));
    own.chain(others).cloned().collect()
}

/// The longest per-datacenter object name suffix the operator builds (`-call-control`).
const LONGEST_SUFFIX: &str = "call-control";

/// Checks what the schema cannot (and, again, what it can): `Ok` means every object the
/// operator builds from `cluster` is well-formed.
pub fn validate(cluster: &PbxCluster) -> Result<(), ValidationError> {
    let name = cluster
        .metadata
        .name
        .as_deref()
        .ok_or(ValidationError::Unnamed)?;
    if !is_dns_1035_label(name) {
        return Err(ValidationError::ClusterName(name.to_owned()));
    }
    validate_spec(name, &cluster.spec)
}

fn validate_spec(cluster: &str, spec: &PbxClusterSpec) -> Result<(), ValidationError> {
    let mut names = BTreeSet::new();
    for dc in &spec.datacenters {
        if !is_dns_label(&dc.name) {
            return Err(ValidationError::DatacenterName(dc.name.clone()));
        }
        if !names.insert(dc.name.as_str()) {
            return Err(ValidationError::DuplicateDatacenter(dc.name.clone()));
        }
        let longest = format!("{cluster}-{}-{LONGEST_SUFFIX}", dc.name);
        if longest.len() > 63 {
            return Err(ValidationError::NameTooLong {
                length: longest.len(),
                name: longest,
            });
        }
    }
    let serving = serving_datacenters(spec).count();
    if serving != 2 {
        return Err(ValidationError::ServingCount(serving));
    }
    let witnesses = spec.datacenters.len() - serving;
    if witnesses > 1 {
        return Err(ValidationError::WitnessCount(witnesses));
    }
    let mut sip_addresses = BTreeSet::new();
    for dc in &spec.datacenters {
        match dc.role {
            DatacenterRole::Witness => {
                if !dc.sip_addresses.is_empty() || dc.media_address.is_some() {
                    return Err(ValidationError::WitnessAddresses(dc.name.clone()));
                }
            }
            DatacenterRole::Serving => {
                if dc.sip_addresses.is_empty() {
                    return Err(ValidationError::NoSipAddress(dc.name.clone()));
                }
                for address in &dc.sip_addresses {
                    let ip = parse_ip(&dc.name, "sipAddresses", address)?;
                    if !sip_addresses.insert(ip) {
                        return Err(ValidationError::SharedSipAddress(ip));
                    }
                }
                if let Some(address) = &dc.media_address {
                    parse_ip(&dc.name, "mediaAddress", address)?;
                }
            }
        }
    }
    let replicas = &spec.replicas;
    for (service, value) in [
        ("edge", replicas.edge),
        ("callControl", replicas.call_control),
        ("media", replicas.media),
        ("directory", replicas.directory),
    ] {
        if value < 0 {
            return Err(ValidationError::NegativeReplicas { service, value });
        }
    }
    if spec.image.repository.trim().is_empty() || spec.image.tag.trim().is_empty() {
        return Err(ValidationError::Image);
    }
    if spec.nats.urls.is_empty() {
        return Err(ValidationError::NoEndpoints("nats.urls"));
    }
    if spec.etcd.endpoints.is_empty() {
        return Err(ValidationError::NoEndpoints("etcd.endpoints"));
    }
    let mut claimed = BTreeSet::new();
    for dc in &spec.datacenters {
        for url in &dc.nats_urls {
            if !spec.nats.urls.contains(url) {
                return Err(ValidationError::UnknownNatsUrl {
                    datacenter: dc.name.clone(),
                    url: url.clone(),
                });
            }
            if !claimed.insert(url.as_str()) {
                return Err(ValidationError::SharedNatsUrl(url.clone()));
            }
        }
    }
    for (field, port) in [
        ("sip.udpPort", Some(spec.sip.udp_port)),
        ("sip.tcpPort", Some(spec.sip.tcp_port)),
        ("sip.tlsPort", spec.sip.tls_port),
    ] {
        if port == Some(0) {
            return Err(ValidationError::Port(field));
        }
    }
    if spec.sip.tls_port.is_some() != spec.sip.tls_secret.is_some() {
        return Err(ValidationError::SipTls);
    }
    let Rtp {
        port_first: first,
        port_last: last,
    } = spec.rtp;
    if first % 2 != 0 || first < 1024 || first >= last {
        return Err(ValidationError::RtpRange { first, last });
    }
    if parse_objective(&spec.slo.objective).is_none() {
        return Err(ValidationError::Objective(spec.slo.objective.clone()));
    }
    if spec.failover.detection_seconds == 0 {
        return Err(ValidationError::DetectionSeconds);
    }
    Ok(())
}

fn parse_ip(datacenter: &str, field: &'static str, value: &str) -> Result<IpAddr, ValidationError> {
    value.parse().map_err(|_| ValidationError::Address {
        datacenter: datacenter.to_owned(),
        field,
        value: value.to_owned(),
    })
}

/// An objective as an exact fraction of unavailability: `(numerator, denominator)` with
/// `1 − objective/100 = numerator/denominator`, e.g. `"99.977"` → `(23, 100_000)`. `None` unless
/// it matches [`OBJECTIVE_PATTERN`].
pub fn parse_objective(objective: &str) -> Option<(u64, u64)> {
    let (whole, fraction) = match objective.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (objective, ""),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty()
        || whole.len() > 2
        || !digits(whole)
        || fraction.len() > 6
        || !digits(fraction)
        || (objective.contains('.') && fraction.is_empty())
    {
        return None;
    }
    // objective/100 = (whole.fraction) / 100 = scaled / (100 × 10^decimals)
    let scale = 10u64.pow(u32::try_from(fraction.len()).ok()?);
    let scaled: u64 = format!("{whole}{fraction}").parse().ok()?;
    let denominator = 100 * scale;
    Some((denominator - scaled, denominator))
}

/// RFC 1123 label: what datacenter names must be.
pub fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && bytes.first() != Some(&b'-')
        && bytes.last() != Some(&b'-')
}

/// RFC 1035 label: an RFC 1123 label starting with a letter (what Service names must be).
pub fn is_dns_1035_label(name: &str) -> bool {
    is_dns_label(name) && name.as_bytes()[0].is_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::cluster;

    #[test]
    fn the_example_is_valid() {
        assert_eq!(validate(&cluster()), Ok(()));
    }

    /// (what, change, error).
    #[test]
    fn invalid_clusters_are_refused_with_the_reason() {
        type Change = fn(&mut PbxCluster);
        let cases: Vec<(&str, Change, ValidationError)> = vec![
            (
                "no name",
                |c| c.metadata.name = None,
                ValidationError::Unnamed,
            ),
            (
                "a name starting with a digit",
                |c| c.metadata.name = Some("1city".into()),
                ValidationError::ClusterName("1city".into()),
            ),
            (
                "an upper-case datacenter",
                |c| c.spec.datacenters[0].name = "DC-A".into(),
                ValidationError::DatacenterName("DC-A".into()),
            ),
            (
                "a duplicate datacenter",
                |c| c.spec.datacenters[1].name = "dc-a".into(),
                ValidationError::DuplicateDatacenter("dc-a".into()),
            ),
            (
                "names too long together",
                |c| c.spec.datacenters[0].name = "a".repeat(46),
                ValidationError::NameTooLong {
                    name: format!("city-{}-call-control", "a".repeat(46)),
                    length: 64,
                },
            ),
            (
                "one serving datacenter",
                |c| {
                    c.spec.datacenters.remove(1);
                },
                ValidationError::ServingCount(1),
            ),
            (
                "three serving datacenters",
                |c| {
                    let third = c.spec.datacenters[2].clone();
                    c.spec.datacenters[2] = Datacenter {
                        role: DatacenterRole::Serving,
                        sip_addresses: vec!["203.0.113.1".into()],
                        ..third
                    };
                },
                ValidationError::ServingCount(3),
            ),
            (
                "two witnesses",
                |c| {
                    let mut second = c.spec.datacenters[2].clone();
                    second.name = "witness-2".into();
                    c.spec.datacenters.push(second);
                },
                ValidationError::WitnessCount(2),
            ),
            (
                "a serving datacenter without SIP address",
                |c| c.spec.datacenters[1].sip_addresses.clear(),
                ValidationError::NoSipAddress("dc-b".into()),
            ),
            (
                "a witness with a SIP address",
                |c| c.spec.datacenters[2].sip_addresses = vec!["203.0.113.1".into()],
                ValidationError::WitnessAddresses("witness".into()),
            ),
            (
                "a SIP address that is a name",
                |c| c.spec.datacenters[0].sip_addresses = vec!["sip.example".into()],
                ValidationError::Address {
                    datacenter: "dc-a".into(),
                    field: "sipAddresses",
                    value: "sip.example".into(),
                },
            ),
            (
                "a bad media address",
                |c| c.spec.datacenters[0].media_address = Some("192.0.2".into()),
                ValidationError::Address {
                    datacenter: "dc-a".into(),
                    field: "mediaAddress",
                    value: "192.0.2".into(),
                },
            ),
            (
                "one address in both datacenters",
                |c| c.spec.datacenters[1].sip_addresses = vec!["192.0.2.10".into()],
                ValidationError::SharedSipAddress("192.0.2.10".parse().unwrap()),
            ),
            (
                "negative replicas",
                |c| c.spec.replicas.call_control = -1,
                ValidationError::NegativeReplicas {
                    service: "callControl",
                    value: -1,
                },
            ),
            (
                "no tag",
                |c| c.spec.image.tag = " ".into(),
                ValidationError::Image,
            ),
            (
                "no NATS",
                |c| c.spec.nats.urls.clear(),
                ValidationError::NoEndpoints("nats.urls"),
            ),
            (
                "a datacenter's NATS server not among nats.urls",
                |c| c.spec.datacenters[0].nats_urls = vec!["nats://elsewhere:4222".into()],
                ValidationError::UnknownNatsUrl {
                    datacenter: "dc-a".into(),
                    url: "nats://elsewhere:4222".into(),
                },
            ),
            (
                "one NATS server in two datacenters",
                |c| {
                    let url = c.spec.nats.urls[0].clone();
                    c.spec.datacenters[0].nats_urls = vec![url.clone()];
                    c.spec.datacenters[1].nats_urls = vec![url];
                },
                ValidationError::SharedNatsUrl("nats://nats-a.calanque:4222".into()),
            ),
            (
                "no etcd",
                |c| c.spec.etcd.endpoints.clear(),
                ValidationError::NoEndpoints("etcd.endpoints"),
            ),
            (
                "port 0",
                |c| c.spec.sip.udp_port = 0,
                ValidationError::Port("sip.udpPort"),
            ),
            (
                "TLS port without secret",
                |c| c.spec.sip.tls_secret = None,
                ValidationError::SipTls,
            ),
            (
                "TLS secret without port",
                |c| c.spec.sip.tls_port = None,
                ValidationError::SipTls,
            ),
            (
                "odd first RTP port",
                |c| c.spec.rtp.port_first = 16385,
                ValidationError::RtpRange {
                    first: 16385,
                    last: 32767,
                },
            ),
            (
                "an empty RTP range",
                |c| c.spec.rtp.port_last = c.spec.rtp.port_first,
                ValidationError::RtpRange {
                    first: 16384,
                    last: 16384,
                },
            ),
            (
                "RTP below 1024",
                |c| c.spec.rtp.port_first = 1000,
                ValidationError::RtpRange {
                    first: 1000,
                    last: 32767,
                },
            ),
            (
                "an objective of 100",
                |c| c.spec.slo.objective = "100".into(),
                ValidationError::Objective("100".into()),
            ),
            (
                "an objective as a fraction",
                |c| c.spec.slo.objective = "0,99977".into(),
                ValidationError::Objective("0,99977".into()),
            ),
            (
                "no detection time",
                |c| c.spec.failover.detection_seconds = 0,
                ValidationError::DetectionSeconds,
            ),
        ];
        for (what, change, error) in cases {
            let mut c = cluster();
            change(&mut c);
            assert_eq!(validate(&c), Err(error), "{what}");
        }
    }

    #[test]
    fn errors_read_well() {
        assert_eq!(
            ValidationError::ServingCount(1).to_string(),
            "exactly two datacenters must have role serving, found 1"
        );
        assert_eq!(
            ValidationError::RtpRange { first: 3, last: 2 }.to_string(),
            "rtp.portFirst (3) must be even, at least 1024, and below rtp.portLast (2)"
        );
    }

    /// (objective, unavailability as numerator/denominator).
    #[test]
    fn objectives_parse_exactly() {
        let cases = [
            ("99.977", Some((23, 100_000))),
            ("99.9", Some((1, 1_000))),
            ("99", Some((1, 100))),
            ("0", Some((100, 100))),
            ("99.999999", Some((1, 100_000_000))),
            ("100", None),
            ("99.", None),
            ("99.9999999", None),
            ("9a", None),
            ("", None),
        ];
        for (objective, expected) in cases {
            let parsed = parse_objective(objective);
            // Compare as reduced fractions.
            let reduce = |(n, d): (u64, u64)| {
                let g = gcd(n, d);
                (n / g, d / g)
            };
            assert_eq!(parsed.map(reduce), expected.map(reduce), "{objective}");
        }
    }

    fn gcd(a: u64, b: u64) -> u64 {
        if b == 0 { a } else { gcd(b, a % b) }
    }

    #[test]
    fn history_limit_matches_the_documented_fifty() {
        assert_eq!(HISTORY_LIMIT, 50);
    }
}
