//! The directory service: the source of truth for sites, users, extensions, devices and their
//! credentials (HA1 only), hunt and pickup groups, classes of service, trunks and routes.
//!
//! - [`model`]: the validated domain types, the [`model::Directory`] aggregate and its checks,
//!   conversions to and from the `calanque.v1` protobuf messages.
//! - [`import`]: bulk import and export (YAML, CSV), planning an import against the directory,
//!   and a generator of a city-sized directory for tests and benchmarks.
//! - [`storage`]: the store key layout of entries (shared with `directory-client`).
//! - [`repository`]: the snapshot kept current from the store, and the fenced write path.
//! - [`api`]: REST (axum), gRPC (tonic) and the bus responder.
//! - [`config`], [`service`]: configuration, [`service::start`] and the [`run`] entry point.

pub mod api;
pub mod config;
pub mod error;
pub mod import;
pub mod model;
pub mod repository;
pub mod service;
pub mod storage;

use std::future::Future;
use std::sync::Arc;

use bus::{Bus, InProcessBus, NatsBus, NatsOptions};
use store::Store;
use store::embedded::EmbeddedStore;
use store::etcd::{EtcdConfig, EtcdStore};

pub use config::{BusSpec, ClientTls, Config, StoreSpec};
pub use error::ServiceError;
pub use service::{Handle, StartError};

/// Why the store or bus could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The store could not be opened or reached.
    #[error("store: {0}")]
    Store(#[from] store::StoreError),
    /// The bus could not be reached.
    #[error("bus: {0}")]
    Bus(#[from] bus::BusError),
}

/// Opens the store and the bus named by the specs, with `tls` towards etcd and NATS (unused
/// by the embedded store and the in-process bus).
pub async fn build(
    store: &StoreSpec,
    bus: &BusSpec,
    tls: &ClientTls,
) -> Result<(Arc<dyn Store>, Arc<dyn Bus>), BuildError> {
    let store: Arc<dyn Store> = match store {
        StoreSpec::Embedded(path) => Arc::new(EmbeddedStore::open(path).await?),
        StoreSpec::Etcd(endpoints) => {
            let mut config = EtcdConfig::new(endpoints.clone()).with_tls(tls.etcd.clone());
            config.request_timeout = std::time::Duration::from_secs(3);
            Arc::new(EtcdStore::connect(&config).await?)
        }
    };
    let bus: Arc<dyn Bus> = match bus {
        BusSpec::InProcess => Arc::new(InProcessBus::new(Default::default())),
        BusSpec::Nats(servers) => Arc::new(
            NatsBus::connect(
                NatsOptions::new("calanque-directory", servers.clone()).with_tls(tls.nats.clone()),
            )
            .await?,
        ),
    };
    Ok((store, bus))
}

/// Runs the service until `shutdown` completes, then shuts it down gracefully.
pub async fn run(
    config: Config,
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let handle = service::start(config, store, bus).await?;
    shutdown.await;
    handle.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use store::etcd::{ClientIdentity, EtcdTls};
    use testkit::etcd::EtcdServer;
    use testkit::nats::NatsServer;
    use testkit::tls::TestPki;

    use super::*;

    /// What the cluster binaries do with their TLS flags: `build` reaches an etcd and a
    /// nats-server that both require client certificates.
    #[tokio::test]
    async fn build_reaches_etcd_and_nats_over_mutual_tls() {
        let pki = TestPki::generate().expect("PKI");
        let etcd = EtcdServer::start_tls(&pki).expect("etcd");
        let nats = NatsServer::start_tls(&pki).expect("nats-server");
        let tls = ClientTls {
            etcd: EtcdTls {
                ca_file: Some(pki.ca_file()),
                identity: Some(ClientIdentity {
                    cert_file: pki.client_cert_file(),
                    key_file: pki.client_key_file(),
                }),
            },
            nats: bus::nats::NatsTls {
                ca_file: Some(pki.ca_file()),
                identity: Some(bus::nats::ClientIdentity {
                    cert_file: pki.client_cert_file(),
                    key_file: pki.client_key_file(),
                }),
            },
        };
        let store_spec: StoreSpec = format!("etcd:{}", etcd.endpoint()).parse().expect("spec");
        let bus_spec: BusSpec = nats.url().parse().expect("spec");
        let (store, bus) = build(&store_spec, &bus_spec, &tls).await.expect("build");
        store
            .put("tls-probe", Bytes::from_static(b"1"), None)
            .await
            .expect("put over TLS");
        bus.flush().await.expect("flush over TLS");

        let refused = build(&store_spec, &bus_spec, &ClientTls::default()).await;
        assert!(
            refused.is_err(),
            "NATS without a client certificate is refused"
        );
    }
}
