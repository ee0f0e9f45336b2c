//! The relay on tokio sockets. Each session is one task owning its [`Session`] core and its
//! four sockets (leg A RTP/RTCP, leg B RTP/RTCP): no lock on the packet path, and sessions
//! spread over the runtime's worker threads. Control (allocate, update, release) goes through
//! [`MediaControl`]; dead media is reported on the event channel returned by [`start`].
//!
//! Batching: on each readiness a task drains the socket with non-blocking reads (up to
//! [`DRAIN_BATCH`] datagrams) and reads the clock once per batch. Measured, it changes
//! nothing (README: the kernel's two system calls per packet are the whole cost), and
//! recvmmsg/sendmmsg would batch per socket, where a real stream rarely queues two datagrams.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use crate::clock;
use crate::config::MediaConfig;
use crate::relay::{
    Leg, LegCounters, LegOptions, PacketKind, PortAllocator, PortPair, PortRangeError,
    PortsExhausted, Session, SessionId, Verdict,
};
use crate::tone::{Generator, PACKET_INTERVAL, Playback};

/// Datagrams read from one socket before the task looks at its other sockets.
pub const DRAIN_BATCH: usize = 64;

/// Largest datagram relayed (RTP over Ethernet stays far below).
const MAX_DATAGRAM: usize = 2_048;

/// Idle reports queued for call-control before further ones are dropped (and logged).
const EVENT_QUEUE: usize = 1_024;

/// What call-control asks for when a call starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocateRequest {
    /// The call's Call-ID (or call-control's call id): named in events and logs.
    pub call_id: String,
    /// The caller's side: usually its offer is known (`remote`), and whether it is behind NAT.
    pub leg_a: LegOptions,
    /// The callee's side: usually unknown until its answer (then [`MediaControl::update`]).
    pub leg_b: LegOptions,
}

/// The relay's addresses call-control writes into the SDP it forwards: `leg_a` goes into the
/// SDP sent to A (where A must send), `leg_b` into the SDP sent to B. RTCP is on port + 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocation {
    pub session: SessionId,
    pub leg_a: SocketAddr,
    pub leg_b: SocketAddr,
}

/// Counters and latched sources of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionStats {
    pub leg_a: LegCounters,
    pub leg_b: LegCounters,
    pub latched_a: Option<SocketAddr>,
    pub latched_b: Option<SocketAddr>,
}

/// Reported to call-control.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    /// No packet on either leg for the idle timeout: the call is probably dead (a phone lost
    /// power or network). Reported once per silence; the session stays until released.
    MediaIdle {
        session: SessionId,
        call_id: String,
        stats: SessionStats,
    },
}

/// Why a control request failed.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// Every port pair of the range is in use (or could not be bound).
    #[error(transparent)]
    Exhausted(#[from] PortsExhausted),
    /// No such session (never allocated, or already released).
    #[error("no media session {0}")]
    UnknownSession(SessionId),
    /// The session's task is gone (the runtime is shutting down).
    #[error("media session {0} stopped")]
    Stopped(SessionId),
    /// Over the bus ([`crate::bus::MediaClient`]): no media replica answered within the
    /// timeout (none running, the owning replica gone, or the bus down).
    #[error("media relay unavailable: {0}")]
    Unavailable(String),
    /// Over the bus: the replica refused the request as malformed, or its reply made no
    /// sense (a bug or a version skew on one side).
    #[error("invalid media request or reply: {0}")]
    Invalid(String),
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configured port range holds no pair.
    #[error(transparent)]
    PortRange(#[from] PortRangeError),
}

/// The control API call-control drives (over the bus once the adapter lands; in-process now).
#[async_trait::async_trait]
pub trait MediaControl: Send + Sync + std::fmt::Debug {
    /// Two port pairs, their sockets bound, relaying from now on.
    async fn allocate(&self, request: AllocateRequest) -> Result<Allocation, MediaError>;
    /// A leg's SDP changed (the answer, a re-INVITE, hold/resume).
    async fn update(
        &self,
        session: SessionId,
        leg: Leg,
        options: LegOptions,
    ) -> Result<(), MediaError>;
    /// Stops relaying, closes the sockets and frees the ports; returns the final counters.
    async fn release(&self, session: SessionId) -> Result<SessionStats, MediaError>;
    /// Current counters.
    async fn stats(&self, session: SessionId) -> Result<SessionStats, MediaError>;
    /// Plays a generated stream to `leg` (ringback to the caller, music on hold to the held
    /// party) in place of the other leg's RTP, until [`MediaControl::stop_playback`]. It goes
    /// where the leg's media would (the latched source, else the SDP's address).
    async fn play(
        &self,
        session: SessionId,
        leg: Leg,
        playback: Playback,
    ) -> Result<(), MediaError>;
    /// Back to relaying the other leg's RTP to `leg`.
    async fn stop_playback(&self, session: SessionId, leg: Leg) -> Result<(), MediaError>;
    /// Which media replica owns `session`, for a call-control replica that stores the call so
    /// another one can take it over; `None` when there is only one (in-process).
    fn owner(&self, _session: SessionId) -> Option<String> {
        None
    }
    /// The datacenter of the replica owning `session`, when its allocation or adoption named
    /// it; `None` in-process.
    fn owner_datacenter(&self, _session: SessionId) -> Option<String> {
        None
    }
    /// Routes `session` to replica `owner` of `datacenter` (empty: unknown) from now on (taking
    /// over a call another call-control replica anchored). In-process there is nothing to
    /// route.
    fn adopt(&self, _session: SessionId, _owner: &str, _datacenter: &str) {}
}

enum Command {
    Update(Leg, LegOptions),
    Play(Leg, Box<Playback>),
    StopPlayback(Leg),
    Stats(oneshot::Sender<SessionStats>),
    Release(oneshot::Sender<SessionStats>),
}

#[derive(Debug)]
struct Shared {
    config: MediaConfig,
    ports: Mutex<PortAllocator>,
    sessions: Mutex<HashMap<SessionId, mpsc::Sender<Command>>>,
    next_id: AtomicU64,
    events: mpsc::Sender<MediaEvent>,
}

/// RTP clock rate assumed for jitter in seconds: 8 kHz, G.711's and (RFC 3551's quirk)
/// G.722's; the city's phones use those. A wideband codec with another clock would be off by
/// its ratio.
const JITTER_CLOCK_HZ: f64 = 8_000.0;

impl Shared {
    /// Refreshes the open-sessions gauge.
    fn count_sessions(&self) {
        if let Some(metrics) = &self.config.metrics {
            let open = self
                .sessions
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .len();
            metrics.set_sessions(open);
        }
    }

    fn release_ports(&self, pairs: &[PortPair]) {
        let mut ports = self.ports.lock().unwrap_or_else(PoisonError::into_inner);
        for &pair in pairs {
            ports.release(pair);
        }
    }
}

/// The running media service: a cheap handle; sessions run on their own tasks.
#[derive(Debug, Clone)]
pub struct MediaService {
    shared: Arc<Shared>,
}

/// Starts the service (no socket is bound until the first allocation).
pub fn start(
    config: MediaConfig,
) -> Result<(MediaService, mpsc::Receiver<MediaEvent>), StartError> {
    let ports = PortAllocator::new(config.port_first, config.port_last)?;
    let (events, receiver) = mpsc::channel(EVENT_QUEUE);
    let shared = Arc::new(Shared {
        config,
        ports: Mutex::new(ports),
        sessions: Mutex::new(HashMap::new()),
        // A random start (a multiple of 2^32 below 2^53) keeps the ids of different replicas
        // apart, so a bus client may route by session id alone (see `bus::MediaClient`).
        next_id: AtomicU64::new((rand::random_range(1..1u64 << 21) << 32) + 1),
        events,
    });
    Ok((MediaService { shared }, receiver))
}

impl MediaService {
    /// Port pairs free now.
    pub fn available_pairs(&self) -> usize {
        self.shared
            .ports
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .available()
    }

    pub fn session_count(&self) -> usize {
        self.shared
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    fn command(&self, session: SessionId) -> Result<mpsc::Sender<Command>, MediaError> {
        self.shared
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&session)
            .cloned()
            .ok_or(MediaError::UnknownSession(session))
    }

    /// A pair with both of its sockets bound; pairs another program holds are skipped (they
    /// go back to the end of the queue).
    fn bind_pair(&self) -> Result<(PortPair, [UdpSocket; 2]), MediaError> {
        let config = &self.shared.config;
        let mut refused = Vec::new();
        let result = loop {
            let pair = self
                .shared
                .ports
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .allocate();
            let pair = match pair {
                Ok(pair) => pair,
                Err(exhausted) => break Err(MediaError::Exhausted(exhausted)),
            };
            let bound = bind(config.bind_ip, pair.rtp, config.socket_buffer).and_then(|rtp| {
                Ok([
                    rtp,
                    bind(config.bind_ip, pair.rtcp(), config.socket_buffer)?,
                ])
            });
            match bound {
                Ok(sockets) => break Ok((pair, sockets)),
                Err(error) => {
                    tracing::warn!(port = pair.rtp, %error, "port pair unavailable, skipped");
                    refused.push(pair);
                }
            }
        };
        // Returned after the loop, so one allocation never retries the same pair.
        self.shared.release_ports(&refused);
        result
    }
}

fn bind(ip: IpAddr, port: u16, buffer: usize) -> io::Result<UdpSocket> {
    let addr = SocketAddr::new(ip, port);
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    // Best effort: the kernel caps these at net.core.{r,w}mem_max.
    let _ = socket.set_recv_buffer_size(buffer);
    let _ = socket.set_send_buffer_size(buffer);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

#[async_trait::async_trait]
impl MediaControl for MediaService {
    async fn allocate(&self, request: AllocateRequest) -> Result<Allocation, MediaError> {
        let (pair_a, sockets_a) = self.bind_pair()?;
        let (pair_b, sockets_b) = match self.bind_pair() {
            Ok(bound) => bound,
            Err(error) => {
                drop(sockets_a);
                self.shared.release_ports(&[pair_a]);
                return Err(error);
            }
        };
        let id = SessionId(self.shared.next_id.fetch_add(1, Ordering::Relaxed));
        let session = Session::new(
            id,
            self.shared.config.session,
            clock::monotonic(),
            (pair_a, request.leg_a),
            (pair_b, request.leg_b),
        );
        let (control, commands) = mpsc::channel(16);
        self.shared
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, control);
        self.shared.count_sessions();
        let [a_rtp, a_rtcp] = sockets_a;
        let [b_rtp, b_rtcp] = sockets_b;
        let task = SessionTask {
            session,
            call_id: request.call_id,
            sockets: [a_rtp, a_rtcp, b_rtp, b_rtcp],
            ports: [pair_a.rtp, pair_a.rtcp(), pair_b.rtp, pair_b.rtcp()],
            players: [None, None],
            shared: Arc::clone(&self.shared),
        };
        tracing::debug!(session = %id, call_id = %task.call_id, a = pair_a.rtp, b = pair_b.rtp, "allocated");
        tokio::spawn(task.run(commands));
        let advertised = self.shared.config.advertised_ip();
        Ok(Allocation {
            session: id,
            leg_a: SocketAddr::new(advertised, pair_a.rtp),
            leg_b: SocketAddr::new(advertised, pair_b.rtp),
        })
    }

    async fn update(
        &self,
        session: SessionId,
        leg: Leg,
        options: LegOptions,
    ) -> Result<(), MediaError> {
        self.command(session)?
            .send(Command::Update(leg, options))
            .await
            .map_err(|_| MediaError::Stopped(session))
    }

    async fn release(&self, session: SessionId) -> Result<SessionStats, MediaError> {
        let control = self
            .shared
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&session)
            .ok_or(MediaError::UnknownSession(session))?;
        let (reply, stats) = oneshot::channel();
        control
            .send(Command::Release(reply))
            .await
            .map_err(|_| MediaError::Stopped(session))?;
        stats.await.map_err(|_| MediaError::Stopped(session))
    }

    async fn play(
        &self,
        session: SessionId,
        leg: Leg,
        playback: Playback,
    ) -> Result<(), MediaError> {
        self.command(session)?
            .send(Command::Play(leg, Box::new(playback)))
            .await
            .map_err(|_| MediaError::Stopped(session))
    }

    async fn stop_playback(&self, session: SessionId, leg: Leg) -> Result<(), MediaError> {
        self.command(session)?
            .send(Command::StopPlayback(leg))
            .await
            .map_err(|_| MediaError::Stopped(session))
    }

    async fn stats(&self, session: SessionId) -> Result<SessionStats, MediaError> {
        let (reply, stats) = oneshot::channel();
        self.command(session)?
            .send(Command::Stats(reply))
            .await
            .map_err(|_| MediaError::Stopped(session))?;
        stats.await.map_err(|_| MediaError::Stopped(session))
    }
}

/// One session's task: its core, its sockets (A RTP, A RTCP, B RTP, B RTCP) and their ports.
struct SessionTask {
    session: Session,
    call_id: String,
    sockets: [UdpSocket; 4],
    ports: [u16; 4],
    /// Generated streams playing to leg A, leg B.
    players: [Option<Generator>; 2],
    shared: Arc<Shared>,
}

fn leg_index(leg: Leg) -> usize {
    match leg {
        Leg::A => 0,
        Leg::B => 1,
    }
}

impl SessionTask {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        // Paces playback; a late tick is caught up (Burst), so the generated timestamps keep
        // to the wall clock.
        let mut ticker = tokio::time::interval(PACKET_INTERVAL);
        let release = loop {
            let playing = self.players.iter().any(Option::is_some);
            let wake = self
                .session
                .poll_timeout()
                .map(tokio::time::Instant::from_std);
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Update(leg, options)) => {
                        self.session.update(clock::monotonic(), leg, options);
                    }
                    Some(Command::Play(leg, playback)) => {
                        self.players[leg_index(leg)] = Some(playback.generator());
                        self.session.set_playing(leg, true);
                        ticker.reset_immediately();
                    }
                    Some(Command::StopPlayback(leg)) => {
                        self.players[leg_index(leg)] = None;
                        self.session.set_playing(leg, false);
                    }
                    Some(Command::Stats(reply)) => {
                        let _ = reply.send(self.stats());
                    }
                    Some(Command::Release(reply)) => break Some(reply),
                    None => break None,
                },
                ready = self.sockets[0].readable() => self.drain(0, ready, &mut buf),
                ready = self.sockets[1].readable() => self.drain(1, ready, &mut buf),
                ready = self.sockets[2].readable() => self.drain(2, ready, &mut buf),
                ready = self.sockets[3].readable() => self.drain(3, ready, &mut buf),
                () = sleep_until(wake) => self.check_idle(),
                _ = ticker.tick(), if playing => self.play_tick(),
            }
        };
        let stats = self.stats();
        let id = self.session.id();
        let pairs = [self.session.ports(Leg::A), self.session.ports(Leg::B)];
        // Sockets closed before their ports go back to the allocator.
        drop(self.sockets);
        self.shared.release_ports(&pairs);
        self.shared.count_sessions();
        tracing::debug!(session = %id, call_id = %self.call_id, ?stats, "released");
        if let Some(reply) = release {
            let _ = reply.send(stats);
        }
    }

    fn stats(&self) -> SessionStats {
        SessionStats {
            leg_a: self.session.counters(Leg::A),
            leg_b: self.session.counters(Leg::B),
            latched_a: self.session.latched(Leg::A, PacketKind::Rtp),
            latched_b: self.session.latched(Leg::B, PacketKind::Rtp),
        }
    }

    /// One packet of each playing generator.
    fn play_tick(&mut self) {
        for leg in [Leg::A, Leg::B] {
            let Some(generator) = self.players[leg_index(leg)].as_mut() else {
                continue;
            };
            // Generated even when there is nowhere to send yet, so the stream keeps time.
            let packet = generator.next_packet();
            let Some(route) = self.session.playback_route(leg) else {
                continue;
            };
            let Some(out) = self.ports.iter().position(|&p| p == route.from_port) else {
                continue;
            };
            if let Err(error) = self.sockets[out].try_send_to(&packet, route.to) {
                tracing::trace!(to = %route.to, %error, "playback send failed");
            }
        }
    }

    fn check_idle(&mut self) {
        if !self.session.poll_idle(clock::monotonic()) {
            return;
        }
        let event = MediaEvent::MediaIdle {
            session: self.session.id(),
            call_id: self.call_id.clone(),
            stats: self.stats(),
        };
        tracing::info!(session = %self.session.id(), call_id = %self.call_id, "media idle");
        if let Some(metrics) = &self.shared.config.metrics {
            metrics.idle_session();
        }
        if self.shared.events.try_send(event).is_err() {
            tracing::warn!(session = %self.session.id(), "idle report dropped: event queue full or closed");
        }
    }

    /// Reads what socket `index` holds, up to a batch, forwarding each datagram.
    fn drain(&mut self, index: usize, ready: io::Result<()>, buf: &mut [u8]) {
        if let Err(error) = ready {
            tracing::warn!(port = self.ports[index], %error, "socket readiness failed");
            return;
        }
        let now = clock::monotonic();
        // Counted per batch, published once: no metric work per packet.
        let (mut relayed, mut dropped) = (0u64, 0u64);
        let kind = if index.is_multiple_of(2) {
            "rtp"
        } else {
            "rtcp"
        };
        for _ in 0..DRAIN_BATCH {
            let (len, source) = match self.sockets[index].try_recv_from(buf) {
                Ok(received) => received,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                // ICMP errors surfacing from earlier sends (port unreachable): keep reading.
                Err(error) => {
                    tracing::trace!(port = self.ports[index], %error, "receive error");
                    continue;
                }
            };
            let packet = &buf[..len];
            match self
                .session
                .on_packet(now, self.ports[index], source, packet)
            {
                Verdict::Forward(forward) => {
                    let Some(out) = self.ports.iter().position(|&p| p == forward.from_port) else {
                        continue;
                    };
                    // A full send buffer drops the packet: late media is useless media.
                    if let Err(error) = self.sockets[out].try_send_to(packet, forward.to) {
                        tracing::trace!(to = %forward.to, %error, "send failed");
                        dropped += 1;
                    } else {
                        relayed += 1;
                    }
                    if kind == "rtcp"
                        && let Some(metrics) = &self.shared.config.metrics
                    {
                        for report in crate::relay::reception_reports(packet) {
                            metrics.rtcp_report(
                                report.fraction_lost,
                                f64::from(report.jitter) / JITTER_CLOCK_HZ,
                            );
                        }
                    }
                }
                Verdict::Drop(reason) => {
                    tracing::trace!(port = self.ports[index], %source, reason = reason.as_str(), "dropped");
                    dropped += 1;
                }
            }
        }
        if let Some(metrics) = &self.shared.config.metrics {
            if relayed > 0 {
                metrics.packets(kind, true, relayed);
            }
            if dropped > 0 {
                metrics.packets(kind, false, dropped);
            }
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
