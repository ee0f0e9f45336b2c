//! The edge's settings. Every replica of one deployment shares the realm and the nonce key
//! (a replica accepts the nonces another issued, so a phone moved by the load balancer does
//! not have to start over).

use std::path::PathBuf;
use std::time::Duration;

use sip_core::digest::Algorithm;
use sip_core::registrar::RegistrarPolicy;
use sip_core::transaction::TransactionConfig;

use crate::location::LocationConfig;
use crate::protection::ProtectionConfig;
use crate::transport::{ConnectionLimits, ListenSpec};

/// The TLS listener's certificate chain and key, as PEM files (a mounted Secret).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub certificate: PathBuf,
    pub key: PathBuf,
}

/// Settings of one edge replica.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// This replica's name, unique in the deployment (the pod name): bans and flows name it.
    pub edge_id: String,
    /// This edge's datacenter, written into every flow it reports (`Flow.datacenter`), so that
    /// call-control knows which legs to move when the failover marks a datacenter failed
    /// (ADR 0020). Empty: not said.
    pub datacenter: String,
    /// The period of this edge's heartbeats on `calanque.v1.edge.heartbeats`: call-control
    /// holds requests to phones behind an edge silent for three periods (ADR 0020).
    pub heartbeat: Duration,
    /// Where to listen.
    pub listen: Vec<ListenSpec>,
    /// PEM certificate chain and private key for `tls:` listeners.
    pub tls: Option<TlsFiles>,
    /// The digest realm (the directory's HA1s are computed with it).
    pub realm: String,
    /// The SIP domain the edge serves: every AOR is `sip:user@<domain>` whatever host a phone
    /// puts in its To (many phones register to the registrar's IP address).
    pub domain: String,
    /// Signs nonces; shared by every replica.
    pub nonce_key: [u8; 32],
    /// After this a nonce is stale (the client retries with `stale=true`, without its user).
    pub nonce_lifetime: Duration,
    /// Offered in this order (RFC 8760 §2.4: a client takes the first it supports).
    pub digest_algorithms: Vec<Algorithm>,
    pub registrar: RegistrarPolicy,
    pub protection: ProtectionConfig,
    pub location: LocationConfig,
    pub connections: ConnectionLimits,
    pub transactions: TransactionConfig,
    /// How often phones registered over UDP from behind NAT get a keep-alive from the edge
    /// (shorter than common NAT UDP timeouts, 30–120 s).
    pub nat_keepalive: Duration,
    /// How long call-control has to acknowledge a request before the edge answers 503.
    pub core_timeout: Duration,
    /// Graceful drain: the longest the edge waits for transactions in flight after SIGTERM.
    pub drain_timeout: Duration,
    /// After the last transaction in flight is answered, how long the edge keeps absorbing
    /// retransmissions before it exits.
    pub drain_linger: Duration,
    /// When new registrations are refused (503) because the engine is behind.
    pub overload: crate::overload::OverloadConfig,
    /// The registry the edge registers and feeds its metrics in (`telemetry::SipMetrics`);
    /// `None` records nothing.
    pub metrics: Option<telemetry::Metrics>,
}

impl EdgeConfig {
    /// Defaults for one realm, listening nowhere yet.
    pub fn new(edge_id: impl Into<String>, realm: impl Into<String>, nonce_key: [u8; 32]) -> Self {
        let realm = realm.into();
        EdgeConfig {
            edge_id: edge_id.into(),
            datacenter: String::new(),
            heartbeat: Duration::from_secs(1),
            listen: Vec::new(),
            tls: None,
            domain: realm.clone(),
            realm,
            nonce_key,
            nonce_lifetime: Duration::from_secs(300),
            digest_algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
            registrar: RegistrarPolicy::default(),
            protection: ProtectionConfig::default(),
            location: LocationConfig::default(),
            connections: ConnectionLimits::default(),
            transactions: TransactionConfig::default(),
            nat_keepalive: Duration::from_secs(25),
            core_timeout: Duration::from_secs(2),
            drain_timeout: Duration::from_secs(25),
            drain_linger: Duration::from_secs(1),
            overload: crate::overload::OverloadConfig::default(),
            metrics: None,
        }
    }
}
