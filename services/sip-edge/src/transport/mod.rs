//! The edge's sockets: UDP listeners, TCP and TLS listeners with one task per connection, and
//! the table of open connections that outgoing messages use (a response or a request to a
//! phone registered over TCP/TLS goes back over the connection it opened, RFC 5626 flows).
//!
//! Everything received goes to the engine as a [`TransportEvent`], unparsed: the transaction
//! layer parses (and answers unparseable requests) the same way for every transport.

mod connection;
mod inbound;
mod listen;
mod send_queue;
mod tls;
mod udp;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use sip_core::Transmit;
use sip_msg::Transport;
use tokio::task::JoinHandle;

pub use connection::ConnectionLimits;
pub(crate) use inbound::PROBE_BATCH;
pub use inbound::{InboundReceiver, InboundSender, inbound};
pub use listen::{ListenSpec, ListenSpecError};
pub use tls::{TlsError, certificate_not_after, load_tls_acceptor};

/// Something the transports tell the engine.
#[derive(Debug)]
pub enum TransportEvent {
    /// One datagram, or one message framed off a connection.
    Received(Received),
    /// Sending to `destination` failed (no connection and none could be opened, or the
    /// connection's queue is full): the transaction layer reports it to the transaction.
    SendFailed {
        transport: Transport,
        destination: SocketAddr,
    },
}

/// One received message, unparsed.
#[derive(Debug, Clone)]
pub struct Received {
    pub transport: Transport,
    /// The peer's address as seen (after NAT).
    pub source: SocketAddr,
    /// Our address it arrived on.
    pub local: SocketAddr,
    pub data: Bytes,
    /// When the transport read it (monotonic): how long it then waits for the engine tells
    /// whether the edge is behind (`overload`).
    pub received_at: std::time::Instant,
}

/// Why the transports could not start.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot bind {spec}: {source}")]
    Bind {
        spec: ListenSpec,
        source: std::io::Error,
    },
    #[error("a tls: listener needs --tls-cert and --tls-key")]
    NoTlsConfig,
}

/// The send side of one open connection.
#[derive(Debug, Clone)]
struct ConnectionHandle {
    id: u64,
    local: SocketAddr,
    outgoing: send_queue::SendQueue,
}

type ConnectionKey = (TransportKind, SocketAddr);

/// Transports hashed in the connection table (sip_msg's `Transport` carries strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum TransportKind {
    Tcp,
    Tls,
}

#[derive(Debug, Default)]
struct Shared {
    connections: Mutex<HashMap<ConnectionKey, ConnectionHandle>>,
    /// The UDP socket each recent peer wrote to, so replies leave from the address the phone
    /// sent to (NAT bindings are per 5-tuple). Only consulted with several UDP listeners.
    udp_peers: Mutex<HashMap<SocketAddr, usize>>,
}

/// The running transports: the handle the engine sends through. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Transports {
    udp: Arc<Vec<(SocketAddr, Arc<tokio::net::UdpSocket>)>>,
    shared: Arc<Shared>,
    events: InboundSender,
    limits: ConnectionLimits,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    listeners: Arc<Mutex<Vec<JoinHandle<()>>>>,
    bound: Arc<Vec<ListenSpec>>,
}

/// Peers remembered for choosing the UDP socket to answer from, before the map is reset.
const MAX_REMEMBERED_UDP_PEERS: usize = 200_000;

impl Transports {
    /// Binds every listener and starts receiving; what arrives goes to `events`.
    pub async fn start(
        specs: &[ListenSpec],
        tls: Option<tokio_rustls::TlsAcceptor>,
        limits: ConnectionLimits,
        events: InboundSender,
    ) -> Result<Transports, TransportError> {
        let shared = Arc::new(Shared::default());
        let mut udp = Vec::new();
        let mut bound = Vec::new();
        let mut listeners = Vec::new();
        let mut stream_listeners = Vec::new();
        for spec in specs {
            let bind_err = |source| TransportError::Bind {
                spec: spec.clone(),
                source,
            };
            match spec.transport {
                Transport::Tcp | Transport::Tls => {
                    if spec.transport == Transport::Tls && tls.is_none() {
                        return Err(TransportError::NoTlsConfig);
                    }
                    let listener = tokio::net::TcpListener::bind(spec.addr)
                        .await
                        .map_err(bind_err)?;
                    let addr = listener.local_addr().map_err(bind_err)?;
                    bound.push(ListenSpec {
                        transport: spec.transport.clone(),
                        addr,
                    });
                    stream_listeners.push((spec.transport.clone(), listener));
                }
                _ => {
                    let socket = udp::bind(spec.addr).map_err(bind_err)?;
                    let addr = socket.local_addr().map_err(bind_err)?;
                    bound.push(ListenSpec {
                        transport: Transport::Udp,
                        addr,
                    });
                    udp.push((addr, Arc::new(socket)));
                }
            }
        }
        let transports = Transports {
            udp: Arc::new(udp),
            shared,
            events,
            limits,
            tasks: Arc::new(Mutex::new(Vec::new())),
            listeners: Arc::new(Mutex::new(Vec::new())),
            bound: Arc::new(bound),
        };
        for (index, (addr, socket)) in transports.udp.iter().enumerate() {
            transports.track(tokio::spawn(udp::receive_loop(
                socket.clone(),
                *addr,
                index,
                transports.clone(),
            )));
        }
        for (transport, listener) in stream_listeners {
            let acceptor = if transport == Transport::Tls {
                tls.clone()
            } else {
                None
            };
            listeners.push(tokio::spawn(connection::accept_loop(
                listener,
                acceptor,
                transports.clone(),
            )));
        }
        if let Ok(mut l) = transports.listeners.lock() {
            l.extend(listeners);
        }
        Ok(transports)
    }

    /// The addresses actually bound (port 0 resolved).
    pub fn bound(&self) -> &[ListenSpec] {
        &self.bound
    }

    /// The first bound address of a transport.
    pub fn local_addr(&self, transport: &Transport) -> Option<SocketAddr> {
        self.bound
            .iter()
            .find(|s| &s.transport == transport)
            .map(|s| s.addr)
    }

    /// Open connections (TCP and TLS).
    pub fn connection_count(&self) -> usize {
        self.shared.connections.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// Stops accepting connections and closes the listening sockets (graceful drain: the
    /// load balancer and phones move to another edge). UDP keeps receiving, because
    /// retransmissions and ACKs of transactions in flight arrive there.
    pub fn stop_accepting(&self) {
        if let Ok(listeners) = self.listeners.lock() {
            for task in listeners.iter() {
                task.abort();
            }
        }
    }

    /// Stops everything: listeners, UDP receivers and connections.
    pub fn shutdown(&self) {
        for tasks in [&self.listeners, &self.tasks] {
            if let Ok(tasks) = tasks.lock() {
                for task in tasks.iter() {
                    task.abort();
                }
            }
        }
    }

    /// Sends one message. Never waits: a full connection queue or a failed send is reported
    /// back as [`TransportEvent::SendFailed`] so the transaction layer can act on it.
    pub fn send(&self, transmit: Transmit) {
        match transmit.transport {
            Transport::Tcp | Transport::Tls => self.send_stream(transmit),
            _ => self.send_udp(transmit),
        }
    }

    fn send_udp(&self, transmit: Transmit) {
        let Some(socket) = self.udp_socket_for(transmit.destination) else {
            self.report_failure(transmit.transport, transmit.destination);
            return;
        };
        match socket.try_send_to(&transmit.contents, transmit.destination) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // The socket buffer is full: wait for room off the engine's task.
                let this = self.clone();
                tokio::spawn(async move {
                    if socket
                        .send_to(&transmit.contents, transmit.destination)
                        .await
                        .is_err()
                    {
                        this.report_failure(transmit.transport, transmit.destination);
                    }
                });
            }
            Err(e) => {
                tracing::debug!(destination = %transmit.destination, error = %e, "udp send failed");
                self.report_failure(transmit.transport, transmit.destination);
            }
        }
    }

    fn udp_socket_for(&self, destination: SocketAddr) -> Option<Arc<tokio::net::UdpSocket>> {
        if self.udp.len() > 1
            && let Some(index) = self
                .shared
                .udp_peers
                .lock()
                .ok()
                .and_then(|p| p.get(&destination).copied())
            && let Some((_, socket)) = self.udp.get(index)
        {
            return Some(socket.clone());
        }
        self.udp
            .iter()
            .find(|(addr, _)| addr.is_ipv4() == destination.is_ipv4())
            .or_else(|| self.udp.first())
            .map(|(_, socket)| socket.clone())
    }

    fn remember_udp_peer(&self, peer: SocketAddr, index: usize) {
        if self.udp.len() < 2 {
            return;
        }
        if let Ok(mut peers) = self.shared.udp_peers.lock() {
            if peers.len() >= MAX_REMEMBERED_UDP_PEERS {
                peers.clear();
            }
            peers.insert(peer, index);
        }
    }

    fn send_stream(&self, transmit: Transmit) {
        let Some(kind) = kind_of(&transmit.transport) else {
            return;
        };
        let handle = self
            .shared
            .connections
            .lock()
            .ok()
            .and_then(|c| c.get(&(kind, transmit.destination)).cloned());
        match handle {
            Some(handle) => {
                if handle.outgoing.push(transmit.contents).is_err() {
                    self.report_failure(transmit.transport, transmit.destination);
                }
            }
            // §18.2.2: with the connection gone, open a new one to the same address. Only
            // over TCP: a phone's TLS port is rarely reachable, and we hold no client
            // certificate policy yet.
            None if kind == TransportKind::Tcp => {
                connection::connect_and_send(self.clone(), transmit);
            }
            None => self.report_failure(transmit.transport, transmit.destination),
        }
    }

    fn report_failure(&self, transport: Transport, destination: SocketAddr) {
        self.events.try_send(TransportEvent::SendFailed {
            transport,
            destination,
        });
    }

    fn register_connection(&self, key: ConnectionKey, handle: ConnectionHandle) -> bool {
        let Ok(mut connections) = self.shared.connections.lock() else {
            return false;
        };
        if connections.len() >= self.limits.max_connections {
            return false;
        }
        connections.insert(key, handle);
        true
    }

    fn unregister_connection(&self, key: ConnectionKey, id: u64) {
        if let Ok(mut connections) = self.shared.connections.lock()
            && connections.get(&key).is_some_and(|h| h.id == id)
        {
            connections.remove(&key);
        }
    }

    fn track(&self, task: JoinHandle<()>) {
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.retain(|t| !t.is_finished());
            tasks.push(task);
        }
    }

    /// Whether a connection to `remote` over `transport` is open on this edge.
    pub fn has_connection(&self, transport: &Transport, remote: SocketAddr) -> bool {
        let Some(kind) = kind_of(transport) else {
            return false;
        };
        self.shared
            .connections
            .lock()
            .map(|c| c.contains_key(&(kind, remote)))
            .unwrap_or(false)
    }

    /// The local address of the connection to `remote`, if open.
    pub fn connection_local(
        &self,
        transport: &Transport,
        remote: SocketAddr,
    ) -> Option<SocketAddr> {
        let kind = kind_of(transport)?;
        self.shared
            .connections
            .lock()
            .ok()?
            .get(&(kind, remote))
            .map(|h| h.local)
    }
}

fn kind_of(transport: &Transport) -> Option<TransportKind> {
    match transport {
        Transport::Tcp => Some(TransportKind::Tcp),
        Transport::Tls => Some(TransportKind::Tls),
        _ => None,
    }
}
