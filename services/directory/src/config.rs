//! The service's configuration: where its store and bus are (and the client TLS towards
//! them), where it listens, its admin
//! tokens and limits. Parsed by `main.rs` from flags and environment; built directly by the
//! all-in-one binary and by tests.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use crate::api::BearerToken;
use crate::repository::RepositoryOptions;

/// Environment variable holding the admin bearer token (when no token file is given).
pub const ENV_TOKEN: &str = "CALANQUE_DIRECTORY_TOKEN";

/// Why a configuration value is refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--store` is neither `embedded:<path>` nor `etcd:<url>[,<url>…]`.
    #[error("store {0:?}: expected embedded:<path> or etcd:<url>[,<url>…]")]
    BadStore(String),
    /// `--bus` is neither `in-process` nor `nats://host:port[,…]` (or `tls://`).
    #[error("bus {0:?}: expected in-process or nats://host:port[,nats://…] (or tls://…)")]
    BadBus(String),
    /// No admin token is configured (the API would accept nobody).
    #[error("no admin token: give --token-file or set {ENV_TOKEN}")]
    NoToken,
}

/// Which store to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// An embedded redb file (all-in-one; single process).
    Embedded(PathBuf),
    /// An etcd cluster.
    Etcd(Vec<String>),
}

impl FromStr for StoreSpec {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<StoreSpec, ConfigError> {
        let bad = || ConfigError::BadStore(s.to_owned());
        if let Some(path) = s.strip_prefix("embedded:") {
            if path.is_empty() {
                return Err(bad());
            }
            return Ok(StoreSpec::Embedded(PathBuf::from(path)));
        }
        if let Some(urls) = s.strip_prefix("etcd:") {
            let urls: Vec<String> = urls
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_owned)
                .collect();
            if urls.is_empty() {
                return Err(bad());
            }
            return Ok(StoreSpec::Etcd(urls));
        }
        Err(bad())
    }
}

/// Which bus to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusSpec {
    /// The in-process bus (all-in-one).
    InProcess,
    /// NATS servers (`nats://`, or `tls://` for TLS).
    Nats(Vec<String>),
}

/// Client TLS towards etcd and NATS (ADR 0019). The default gives no file: `https://`
/// endpoints and `tls://` servers then trust the system's roots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    pub etcd: store::etcd::EtcdTls,
    pub nats: bus::nats::NatsTls,
}

impl FromStr for BusSpec {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<BusSpec, ConfigError> {
        if s == "in-process" {
            return Ok(BusSpec::InProcess);
        }
        let urls: Vec<String> = s
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect();
        let nats = |u: &String| u.starts_with("nats://") || u.starts_with("tls://");
        if urls.is_empty() || !urls.iter().all(nats) {
            return Err(ConfigError::BadBus(s.to_owned()));
        }
        Ok(BusSpec::Nats(urls))
    }
}

/// The service's configuration (tokens are redacted from `Debug`).
#[derive(Debug, Clone)]
pub struct Config {
    /// REST listen address; `None` serves no REST socket (tests use the router directly).
    pub rest: Option<SocketAddr>,
    /// gRPC listen address; `None` serves no gRPC socket.
    pub grpc: Option<SocketAddr>,
    /// Accepted admin bearer tokens (at least one).
    pub tokens: Vec<BearerToken>,
    /// The SIP realm of this PBX (logged at start; each device carries its own realm).
    pub realm: String,
    /// Largest request body (a bulk import file), in bytes.
    pub max_body_bytes: usize,
    /// Write path limits.
    pub repository: RepositoryOptions,
    /// Serve `calanque.v1.directory.get` on the bus.
    pub bus_responder: bool,
}

impl Config {
    /// Defaults with these tokens: no sockets, 64 MiB bodies, the bus responder on.
    pub fn new(tokens: Vec<BearerToken>) -> Config {
        Config {
            rest: None,
            grpc: None,
            tokens,
            realm: "calanque".to_owned(),
            max_body_bytes: 64 * 1024 * 1024,
            repository: RepositoryOptions::default(),
            bus_responder: true,
        }
    }

    /// Refuses a configuration that cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.tokens.is_empty() || self.tokens.iter().any(BearerToken::is_empty) {
            return Err(ConfigError::NoToken);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_and_bus_specs_parse() {
        assert_eq!(
            "embedded:/var/lib/calanque/dir.redb"
                .parse::<StoreSpec>()
                .unwrap(),
            StoreSpec::Embedded(PathBuf::from("/var/lib/calanque/dir.redb"))
        );
        assert_eq!(
            "etcd:http://a:2379,http://b:2379"
                .parse::<StoreSpec>()
                .unwrap(),
            StoreSpec::Etcd(vec!["http://a:2379".into(), "http://b:2379".into()])
        );
        assert!("etcd:".parse::<StoreSpec>().is_err());
        assert!("redis://x".parse::<StoreSpec>().is_err());
        assert_eq!("in-process".parse::<BusSpec>().unwrap(), BusSpec::InProcess);
        assert_eq!(
            "nats://127.0.0.1:4222".parse::<BusSpec>().unwrap(),
            BusSpec::Nats(vec!["nats://127.0.0.1:4222".into()])
        );
        assert_eq!(
            "tls://a:4222,tls://b:4222".parse::<BusSpec>().unwrap(),
            BusSpec::Nats(vec!["tls://a:4222".into(), "tls://b:4222".into()])
        );
        assert!("http://x".parse::<BusSpec>().is_err());
    }

    #[test]
    fn a_config_without_tokens_is_refused_and_tokens_are_not_printed() {
        assert!(Config::new(Vec::new()).validate().is_err());
        assert!(
            Config::new(vec![BearerToken::new("  ")])
                .validate()
                .is_err()
        );
        let config = Config::new(vec![BearerToken::new("hunter2")]);
        assert!(config.validate().is_ok());
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
