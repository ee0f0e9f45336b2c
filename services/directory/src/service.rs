//! Starting and stopping the service: the snapshot follower, the bus responder, the REST and
//! gRPC servers, over a given store and bus (so that `calanque run` can embed it with the
//! in-process bus and the embedded store, and a deployment with etcd and NATS).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use bus::Bus;
use store::Store;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::api::{self, grpc, rest};
use crate::config::{Config, ConfigError};
use crate::repository::Repository;

/// How long a graceful shutdown waits for in-flight requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A listen address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The bus refused the responder's subscription.
    #[error("cannot subscribe on the bus: {0}")]
    Bus(#[from] bus::BusError),
}

/// The gRPC health service type.
pub type HealthService =
    tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService>;

/// A running directory service.
#[derive(Debug)]
pub struct Handle {
    repository: Repository,
    router: Router,
    grpc: grpc::DirectoryGrpcService,
    health: tonic_health::server::HealthReporter,
    health_service: HealthService,
    rest_addr: Option<SocketAddr>,
    grpc_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    servers: Vec<JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
}

impl Handle {
    /// The repository (snapshot and write path).
    pub fn repository(&self) -> &Repository {
        &self.repository
    }

    /// The REST application (for `oneshot` tests or to mount elsewhere).
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// The authenticated gRPC service (for in-memory transports in tests).
    pub fn grpc_service(&self) -> grpc::DirectoryGrpcService {
        self.grpc.clone()
    }

    /// The health reporter shared with the gRPC health service.
    pub fn health(&self) -> &tonic_health::server::HealthReporter {
        &self.health
    }

    /// The gRPC health service (for in-memory transports in tests).
    pub fn health_service(&self) -> HealthService {
        self.health_service.clone()
    }

    /// Where REST listens, when it does.
    pub fn rest_addr(&self) -> Option<SocketAddr> {
        self.rest_addr
    }

    /// Where gRPC listens, when it does.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc_addr
    }

    /// Waits until the snapshot is loaded, at most `timeout`.
    pub async fn wait_loaded(&self, timeout: Duration) -> bool {
        self.repository.wait_for_revision(0, timeout).await
    }

    /// Stops accepting requests, drains in-flight ones (bounded) and stops the tasks.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        for server in std::mem::take(&mut self.servers) {
            let abort = server.abort_handle();
            if tokio::time::timeout(DRAIN_TIMEOUT, server).await.is_err() {
                warn!("a server did not drain in time");
                abort.abort();
            }
        }
        for task in std::mem::take(&mut self.background) {
            task.abort();
        }
        info!("directory service stopped");
    }
}

/// A handle dropped without [`Handle::shutdown`] stops everything at once (no drain), so that
/// an embedding process never leaks the service's tasks.
impl Drop for Handle {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        for task in self.servers.iter().chain(&self.background) {
            task.abort();
        }
    }
}

/// Starts the service on `store` and `bus`. It answers 503 until the snapshot is loaded and
/// recovers by itself from store outages.
pub async fn start(
    config: Config,
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
) -> Result<Handle, StartError> {
    config.validate()?;
    info!(realm = %config.realm, tokens = config.tokens.len(), "directory service starting");
    // Everything that can fail comes first, so that a failed start leaves no task behind.
    let rest_listener = match config.rest {
        Some(address) => Some(bind(address).await?),
        None => None,
    };
    let grpc_listener = match config.grpc {
        Some(address) => Some(bind(address).await?),
        None => None,
    };
    let subscription = if config.bus_responder {
        Some(api::bus::subscribe(&bus).await?)
    } else {
        None
    };

    let repository = Repository::new(store, bus.clone(), config.repository.clone());
    let tokens = Arc::new(config.tokens.clone());
    let mut background = vec![tokio::spawn(repository.clone().follow())];
    if let Some(subscription) = subscription {
        background.push(tokio::spawn(api::bus::serve(
            repository.clone(),
            bus.clone(),
            subscription,
        )));
    }
    let router = rest::app(rest::RestState {
        repository: repository.clone(),
        tokens: tokens.clone(),
        max_body_bytes: config.max_body_bytes,
    });
    let grpc_service = grpc::service(repository.clone(), tokens);
    let health = tonic_health::server::HealthReporter::new();
    let health_service = tonic_health::pb::health_server::HealthServer::new(
        tonic_health::server::HealthService::from_health_reporter(health.clone()),
    );
    background.push(tokio::spawn(report_health(
        repository.clone(),
        health.clone(),
    )));
    let (shutdown, _) = watch::channel(false);
    let mut servers = Vec::new();
    let mut rest_addr = None;
    if let Some((listener, local)) = rest_listener {
        rest_addr = Some(local);
        let app = router.clone();
        let mut stop = shutdown.subscribe();
        servers.push(tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
            if let Err(error) = served {
                warn!(%error, "REST server failed");
            }
        }));
        info!(%local, "REST API listening");
    }
    let mut grpc_addr = None;
    if let Some((listener, local)) = grpc_listener {
        grpc_addr = Some(local);
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let service = grpc_service.clone();
        let health_service = health_service.clone();
        let mut stop = shutdown.subscribe();
        servers.push(tokio::spawn(async move {
            let served = tonic::transport::Server::builder()
                .add_service(health_service)
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
            if let Err(error) = served {
                warn!(%error, "gRPC server failed");
            }
        }));
        info!(%local, "gRPC API listening");
    }
    Ok(Handle {
        repository,
        router,
        grpc: grpc_service,
        health,
        health_service,
        rest_addr,
        grpc_addr,
        shutdown,
        servers,
        background,
    })
}

async fn bind(address: SocketAddr) -> Result<(tokio::net::TcpListener, SocketAddr), StartError> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| StartError::Bind { address, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| StartError::Bind { address, source })?;
    Ok((listener, local))
}

/// Mirrors readiness into the gRPC health service (checked every second).
async fn report_health(repository: Repository, health: tonic_health::server::HealthReporter) {
    use proto::v1::directory_service_server::DirectoryServiceServer;
    let mut serving = None;
    loop {
        let ready = repository.ready().await.is_ok();
        if serving != Some(ready) {
            if ready {
                health
                    .set_serving::<DirectoryServiceServer<grpc::GrpcApi>>()
                    .await;
            } else {
                health
                    .set_not_serving::<DirectoryServiceServer<grpc::GrpcApi>>()
                    .await;
            }
            serving = Some(ready);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
