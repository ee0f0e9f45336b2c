//! Wiring: builds the edge from its config, a store and a bus, starts its tasks, and drains
//! it on request.

use std::sync::{Arc, Mutex};

use bus::Bus;
use directory_client::DirectoryCache;
use sip_core::Transmit;
use sip_core::digest::DigestServer;
use sip_msg::Transport;
use store::Store;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::auth::Authenticator;
use crate::config::EdgeConfig;
use crate::core_routing::{self, CoreRouter};
use crate::engine::{Command, Engine, EngineParts};
use crate::location::LocationService;
use crate::metrics::EdgeMetrics;
use crate::protection::{BanSync, BanSyncOptions, Protection};
use crate::transport::{ListenSpec, Transports};

/// Why the edge could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("no listen address configured")]
    NoListener,
    #[error("loading the directory: {0}")]
    Directory(#[from] directory_client::CacheError),
    #[error("loading the location service: {0}")]
    Location(#[from] crate::location::LocationError),
    #[error("starting ban sharing: {0}")]
    Bans(#[from] crate::protection::BanSyncError),
    #[error("subscribing on the bus: {0}")]
    Bus(#[from] bus::BusError),
    #[error(transparent)]
    Transport(#[from] crate::transport::TransportError),
    #[error(transparent)]
    Tls(#[from] crate::transport::TlsError),
}

/// Inbound messages queued between the sockets and the engine.
const INBOUND_QUEUE: usize = 16_384;

/// A running edge.
#[derive(Debug)]
pub struct EdgeHandle {
    commands: mpsc::Sender<Command>,
    engine: JoinHandle<()>,
    transports: Transports,
    location: LocationService,
    protection: Arc<Mutex<Protection>>,
    _bans: BanSync,
    _tasks: AbortOnDrop,
}

/// Background tasks of an edge (bus subscriptions, NAT keep-alive), stopped with it.
#[derive(Debug)]
struct AbortOnDrop(Vec<JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

impl EdgeHandle {
    /// The addresses bound (port 0 resolved).
    pub fn bound(&self) -> &[ListenSpec] {
        self.transports.bound()
    }

    /// The first bound address of `transport`.
    pub fn local_addr(&self, transport: &Transport) -> Option<std::net::SocketAddr> {
        self.transports.local_addr(transport)
    }

    /// The location service (lookups for tests and call routing).
    pub fn location(&self) -> &LocationService {
        &self.location
    }

    /// Protection counters.
    pub fn protection_stats(&self) -> crate::protection::ProtectionStats {
        self.protection
            .lock()
            .map(|p| p.stats())
            .unwrap_or_default()
    }

    /// Starts a graceful drain (as on SIGTERM) and waits until the edge has stopped.
    pub async fn drain(self) {
        let _ = self.commands.send(Command::Drain).await;
        let _ = self.engine.await;
        self.transports.shutdown();
    }

    /// Stops at once, dropping transactions in flight (a crash, for tests).
    pub fn abort(self) {
        self.engine.abort();
        self.transports.shutdown();
    }
}

/// Starts an edge replica: directory cache, location service, ban sharing, sockets, engine.
pub async fn start(
    config: EdgeConfig,
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
) -> Result<EdgeHandle, StartError> {
    if config.listen.is_empty() {
        return Err(StartError::NoListener);
    }
    let config = Arc::new(config);
    let metrics = EdgeMetrics::new(config.metrics.as_ref());
    let directory = DirectoryCache::start(store.clone()).await?;
    let location = LocationService::start(store.clone(), config.location.clone()).await?;
    let protection = Arc::new(Mutex::new(Protection::new(config.protection.clone())));
    let bans = BanSync::start(
        BanSyncOptions::new(config.edge_id.clone()),
        protection.clone(),
        bus.clone(),
        store.clone(),
    )
    .await?;
    let (command_tx, commands) = mpsc::channel(INBOUND_QUEUE);
    let subscriptions = subscribe(&config.edge_id, &bus, &command_tx).await?;
    let (event_tx, events) = crate::transport::inbound(INBOUND_QUEUE);
    let tls = match &config.tls {
        Some(files) => {
            let acceptor = crate::transport::load_tls_acceptor(&files.certificate, &files.key)?;
            match crate::transport::certificate_not_after(&files.certificate) {
                Ok(not_after) => metrics.certificate_expiry(not_after),
                // rustls took the chain, so this is a parser disagreement: serve anyway.
                Err(e) => tracing::warn!(error = %e, "TLS certificate expiry unknown"),
            }
            Some(acceptor)
        }
        None => None,
    };
    let transports = Transports::start(&config.listen, tls, config.connections, event_tx).await?;
    start_with(
        config,
        directory,
        location,
        protection,
        bans,
        transports,
        bus,
        command_tx,
        commands,
        events,
        subscriptions,
        metrics,
    )
}

#[allow(clippy::too_many_arguments)]
fn start_with(
    config: Arc<EdgeConfig>,
    directory: DirectoryCache,
    location: LocationService,
    protection: Arc<Mutex<Protection>>,
    bans: BanSync,
    transports: Transports,
    bus: Arc<dyn Bus>,
    command_tx: mpsc::Sender<Command>,
    commands: mpsc::Receiver<Command>,
    events: crate::transport::InboundReceiver,
    subscriptions: Vec<JoinHandle<()>>,
    metrics: EdgeMetrics,
) -> Result<EdgeHandle, StartError> {
    let digest = DigestServer::new(
        config.realm.clone(),
        config.nonce_key,
        config.nonce_lifetime,
    );
    let auth = Authenticator::new(digest, config.digest_algorithms.clone(), directory);
    let engine = Engine::new(EngineParts {
        config: config.clone(),
        transports: transports.clone(),
        auth,
        protection: protection.clone(),
        location: location.clone(),
        core: CoreRouter::new(bus.clone(), config.core_timeout),
        commands,
        command_tx: command_tx.clone(),
        events,
        bans: bans.publisher(),
        metrics,
    });
    for spec in transports.bound() {
        tracing::info!(edge = %config.edge_id, listen = %spec, "listening");
    }
    let engine = tokio::spawn(engine.run());
    let mut subscriptions = subscriptions;
    // Call-control sends to phones through the edge holding their flow: it must know when an
    // edge is gone (ADR 0020).
    subscriptions.push(telemetry::heartbeat::publish_heartbeats(
        bus,
        proto::subjects::EDGE_HEARTBEATS,
        config.edge_id.clone(),
        config.datacenter.clone(),
        config.heartbeat,
        || 0,
    ));
    subscriptions.push(tokio::spawn(crate::nat_keepalive::run(
        location.clone(),
        transports.clone(),
        config.edge_id.clone(),
        config.nat_keepalive,
    )));
    Ok(EdgeHandle {
        commands: command_tx,
        engine,
        transports,
        location,
        protection,
        _bans: bans,
        _tasks: AbortOnDrop(subscriptions),
    })
}

/// Call-control's responses and other edges' deliveries for this edge.
async fn subscribe(
    edge_id: &str,
    bus: &Arc<dyn Bus>,
    commands: &mpsc::Sender<Command>,
) -> Result<Vec<JoinHandle<()>>, StartError> {
    let mut responses = bus
        .subscribe(&proto::subjects::edge_responses(edge_id))
        .await?;
    let mut deliveries = bus
        .subscribe(&proto::subjects::edge_deliver(edge_id))
        .await?;
    let to_engine = commands.clone();
    let responses = tokio::spawn(async move {
        while let Some(message) = responses.next().await {
            let Some(response) = core_routing::decode_response(&message.payload) else {
                tracing::warn!("undecodable EdgeResponse dropped");
                continue;
            };
            let Ok(handle) = response.transaction.parse::<u64>() else {
                continue;
            };
            let command = Command::CoreResponse {
                handle,
                message: response.message.into(),
            };
            if to_engine.send(command).await.is_err() {
                return;
            }
        }
    });
    let to_engine = commands.clone();
    let deliveries = tokio::spawn(async move {
        while let Some(message) = deliveries.next().await {
            let Some(delivery) = core_routing::decode_delivery(&message.payload) else {
                continue;
            };
            let Some(flow) = delivery.flow else { continue };
            let Ok(destination) = flow.remote.parse() else {
                continue;
            };
            let transport = match proto::v1::SipTransport::try_from(flow.transport) {
                Ok(proto::v1::SipTransport::Tcp) => Transport::Tcp,
                Ok(proto::v1::SipTransport::Tls) => Transport::Tls,
                _ => Transport::Udp,
            };
            let transmit = Transmit {
                transport,
                destination,
                contents: delivery.message.into(),
            };
            if to_engine.send(Command::Deliver(transmit)).await.is_err() {
                return;
            }
        }
    });
    let mut sends = bus.subscribe(&proto::subjects::edge_send(edge_id)).await?;
    let to_engine = commands.clone();
    let sends = tokio::spawn(async move {
        while let Some(message) = sends.next().await {
            let Some(send) = core_routing::decode_send(&message.payload) else {
                tracing::warn!("undecodable EdgeSend dropped");
                continue;
            };
            // A child of call-control's span that asked for the send: one call, one trace.
            let span = telemetry::propagation::child_span(&message.headers, || {
                tracing::info_span!(
                    "edge.send",
                    call_ref = %send.call_ref,
                    method = tracing::field::Empty,
                )
            });
            let command = Command::Send {
                send: Box::new(send),
                span,
            };
            if to_engine.send(command).await.is_err() {
                return;
            }
        }
    });
    Ok(vec![responses, deliveries, sends])
}
