//! The control API over the bus (`proto/calanque/v1/media.proto`).
//!
//! Relay side, [`serve`]: a replica named by its media id answers `MediaRequest{allocate}` on
//! [`subjects::MEDIA_ALLOCATE`] as a member of the queue group [`subjects::MEDIA_QUEUE_GROUP`]
//! (any replica may take a new call), every request for its own sessions on
//! [`subjects::media_control`]`(media_id)`, and publishes its [`MediaEvent`]s on
//! [`subjects::MEDIA_EVENTS`].
//!
//! Call-control's side, [`MediaClient`]: [`MediaControl`] over the bus. An allocation's reply
//! names the replica that owns the session; the client remembers it per session (replicas
//! start their session ids at random offsets, so ids do not collide across replicas in
//! practice, and a collision is detected at allocation) and sends the later requests to that
//! replica's control subject. A replica that does not answer within the client's timeout is
//! [`MediaError::Unavailable`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bus::{Bus, BusError, BusHeaders, BusMessage, Subscription};
use bytes::Bytes;
use proto::Message as _;
use proto::subjects::{self, types};
use proto::v1;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use crate::relay::{Leg, LegCounters, LegOptions, PortsExhausted, SessionId};
use crate::service::{
    AllocateRequest, Allocation, MediaControl, MediaError, MediaEvent, SessionStats,
};
use crate::tone::{G711, Playback, ToneSpec};

/// How many times [`MediaClient`] asks the queue group again when the replica that took an
/// allocation had no free ports (another one may have).
pub const ALLOCATE_ATTEMPTS: usize = 3;

/// Whether `media_id` can name a replica: one subject token (no dot, no wildcard, no space).
pub fn is_valid_media_id(media_id: &str) -> bool {
    !media_id.contains('.') && subjects::is_valid_subject(media_id, false)
}

// ---------------------------------------------------------------------------------------
// Conversions between the domain types and the wire messages.
// ---------------------------------------------------------------------------------------

fn addr_to_wire(addr: Option<SocketAddr>) -> String {
    addr.map(|a| a.to_string()).unwrap_or_default()
}

fn addr_from_wire(field: &str, value: &str) -> Result<Option<SocketAddr>, MediaError> {
    if value.is_empty() {
        return Ok(None);
    }
    value
        .parse()
        .map(Some)
        .map_err(|_| MediaError::Invalid(format!("{field}: {value:?} is not ip:port")))
}

fn options_to_wire(options: LegOptions) -> v1::MediaLegOptions {
    v1::MediaLegOptions {
        remote: addr_to_wire(options.remote),
        behind_nat: options.behind_nat,
        rtcp_mux: options.rtcp_mux,
    }
}

fn options_from_wire(
    field: &str,
    options: Option<&v1::MediaLegOptions>,
) -> Result<LegOptions, MediaError> {
    let Some(options) = options else {
        return Ok(LegOptions::default());
    };
    Ok(LegOptions {
        remote: addr_from_wire(field, &options.remote)?,
        behind_nat: options.behind_nat,
        rtcp_mux: options.rtcp_mux,
    })
}

fn leg_to_wire(leg: Leg) -> i32 {
    match leg {
        Leg::A => v1::MediaLeg::A as i32,
        Leg::B => v1::MediaLeg::B as i32,
    }
}

fn leg_from_wire(leg: i32) -> Result<Leg, MediaError> {
    match v1::MediaLeg::try_from(leg) {
        Ok(v1::MediaLeg::A) => Ok(Leg::A),
        Ok(v1::MediaLeg::B) => Ok(Leg::B),
        _ => Err(MediaError::Invalid(format!("no such leg: {leg}"))),
    }
}

fn counters_to_wire(c: LegCounters) -> v1::MediaLegCounters {
    v1::MediaLegCounters {
        packets_in: c.packets_in,
        bytes_in: c.bytes_in,
        packets_out: c.packets_out,
        bytes_out: c.bytes_out,
        drops: c.drops,
    }
}

fn counters_from_wire(c: Option<v1::MediaLegCounters>) -> LegCounters {
    let c = c.unwrap_or_default();
    LegCounters {
        packets_in: c.packets_in,
        bytes_in: c.bytes_in,
        packets_out: c.packets_out,
        bytes_out: c.bytes_out,
        drops: c.drops,
    }
}

fn stats_to_wire(session: SessionId, stats: SessionStats) -> v1::MediaSessionStats {
    v1::MediaSessionStats {
        session_id: session.0,
        leg_a: Some(counters_to_wire(stats.leg_a)),
        leg_b: Some(counters_to_wire(stats.leg_b)),
        latched_a: addr_to_wire(stats.latched_a),
        latched_b: addr_to_wire(stats.latched_b),
    }
}

fn stats_from_wire(stats: v1::MediaSessionStats) -> Result<SessionStats, MediaError> {
    Ok(SessionStats {
        latched_a: addr_from_wire("latched_a", &stats.latched_a)?,
        latched_b: addr_from_wire("latched_b", &stats.latched_b)?,
        leg_a: counters_from_wire(stats.leg_a),
        leg_b: counters_from_wire(stats.leg_b),
    })
}

fn codec_to_wire(codec: G711) -> i32 {
    match codec {
        G711::MuLaw => v1::MediaCodec::Pcmu as i32,
        G711::ALaw => v1::MediaCodec::Pcma as i32,
    }
}

fn codec_from_wire(codec: i32) -> Result<G711, MediaError> {
    match v1::MediaCodec::try_from(codec) {
        Ok(v1::MediaCodec::Pcmu) => Ok(G711::MuLaw),
        Ok(v1::MediaCodec::Pcma) => Ok(G711::ALaw),
        _ => Err(MediaError::Invalid(format!("no such codec: {codec}"))),
    }
}

fn play_to_wire(session: SessionId, leg: Leg, playback: Playback) -> v1::MediaPlay {
    let (codec, source) = match playback {
        Playback::Tone { spec, codec } => (
            codec,
            v1::media_play::Source::Tone(v1::MediaTone {
                frequencies_hz: spec.frequencies_hz,
                level_dbm0: spec.level_dbm0,
                cadence_ms: spec
                    .cadence
                    .iter()
                    .map(|d| u32::try_from(d.as_millis()).unwrap_or(u32::MAX))
                    .collect(),
            }),
        ),
        Playback::Audio { audio, codec } => (codec, v1::media_play::Source::Audio(audio.to_vec())),
    };
    v1::MediaPlay {
        session_id: session.0,
        leg: leg_to_wire(leg),
        codec: codec_to_wire(codec),
        source: Some(source),
    }
}

fn play_from_wire(play: v1::MediaPlay) -> Result<(SessionId, Leg, Playback), MediaError> {
    let leg = leg_from_wire(play.leg)?;
    let codec = codec_from_wire(play.codec)?;
    let playback = match play.source {
        Some(v1::media_play::Source::Tone(tone)) => {
            if tone
                .frequencies_hz
                .iter()
                .any(|f| !f.is_finite() || *f <= 0.0 || *f >= 4_000.0)
                || !tone.level_dbm0.is_finite()
            {
                return Err(MediaError::Invalid(
                    "a tone's frequencies must be in (0, 4000) Hz and its level finite".into(),
                ));
            }
            Playback::Tone {
                spec: ToneSpec {
                    frequencies_hz: tone.frequencies_hz,
                    level_dbm0: tone.level_dbm0,
                    cadence: tone
                        .cadence_ms
                        .into_iter()
                        .map(|ms| Duration::from_millis(ms.into()))
                        .collect(),
                },
                codec,
            }
        }
        Some(v1::media_play::Source::Audio(audio)) if !audio.is_empty() => Playback::Audio {
            audio: Bytes::from(audio),
            codec,
        },
        _ => return Err(MediaError::Invalid("nothing to play".into())),
    };
    Ok((SessionId(play.session_id), leg, playback))
}

fn error_to_wire(error: &MediaError) -> v1::MediaError {
    let (kind, capacity) = match error {
        MediaError::Exhausted(exhausted) => (
            v1::MediaErrorKind::Exhausted,
            u64::try_from(exhausted.capacity).unwrap_or(u64::MAX),
        ),
        MediaError::UnknownSession(_) => (v1::MediaErrorKind::UnknownSession, 0),
        MediaError::Stopped(_) | MediaError::Unavailable(_) => (v1::MediaErrorKind::Stopped, 0),
        MediaError::Invalid(_) => (v1::MediaErrorKind::Invalid, 0),
    };
    v1::MediaError {
        kind: kind as i32,
        detail: error.to_string(),
        capacity,
    }
}

fn error_from_wire(session: Option<SessionId>, error: v1::MediaError) -> MediaError {
    let unknown = SessionId(0);
    match v1::MediaErrorKind::try_from(error.kind) {
        Ok(v1::MediaErrorKind::Exhausted) => MediaError::Exhausted(PortsExhausted {
            capacity: usize::try_from(error.capacity).unwrap_or(usize::MAX),
        }),
        Ok(v1::MediaErrorKind::UnknownSession) => {
            MediaError::UnknownSession(session.unwrap_or(unknown))
        }
        Ok(v1::MediaErrorKind::Stopped) => MediaError::Stopped(session.unwrap_or(unknown)),
        Ok(v1::MediaErrorKind::Invalid) => MediaError::Invalid(error.detail),
        _ => MediaError::Invalid(format!("unexpected error reply: {}", error.detail)),
    }
}

fn typed(type_name: &str) -> BusHeaders {
    let mut headers = BusHeaders::new();
    headers.insert(subjects::TYPE_HEADER, type_name);
    headers
}

// ---------------------------------------------------------------------------------------
// The relay's side.
// ---------------------------------------------------------------------------------------

/// Why [`serve`] could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The media id is not a single subject token.
    #[error("invalid media id {0:?}: one subject token (no dot, space or wildcard)")]
    InvalidMediaId(String),
    /// Subscribing failed.
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// Serves `service` on the bus as replica `media_id` of `datacenter` (named in every
/// allocation it answers; empty: not configured): subscribes (before returning, so requests
/// sent after this returns are answered), then answers requests and publishes the events read
/// from `events` (the receiver [`crate::start`] returned) until the returned task is aborted or
/// the bus closes. Each request is handled on its own task.
pub async fn serve(
    service: Arc<dyn MediaControl>,
    events: mpsc::Receiver<MediaEvent>,
    media_id: &str,
    datacenter: &str,
    bus: Arc<dyn Bus>,
) -> Result<JoinHandle<()>, ServeError> {
    if !is_valid_media_id(media_id) {
        return Err(ServeError::InvalidMediaId(media_id.to_owned()));
    }
    let allocations = bus
        .queue_subscribe(subjects::MEDIA_ALLOCATE, subjects::MEDIA_QUEUE_GROUP)
        .await?;
    let control = bus.subscribe(&subjects::media_control(media_id)).await?;
    let server = Server {
        service,
        media_id: Arc::from(media_id),
        datacenter: Arc::from(datacenter),
        bus,
    };
    Ok(tokio::spawn(server.run(allocations, control, events)))
}

#[derive(Debug, Clone)]
struct Server {
    service: Arc<dyn MediaControl>,
    media_id: Arc<str>,
    datacenter: Arc<str>,
    bus: Arc<dyn Bus>,
}

impl Server {
    async fn run(
        self,
        mut allocations: Subscription,
        mut control: Subscription,
        mut events: mpsc::Receiver<MediaEvent>,
    ) {
        let mut events_open = true;
        loop {
            tokio::select! {
                message = allocations.next() => match message {
                    Some(message) => self.spawn_answer(message, true),
                    None => break,
                },
                message = control.next() => match message {
                    Some(message) => self.spawn_answer(message, false),
                    None => break,
                },
                event = events.recv(), if events_open => match event {
                    Some(event) => self.publish(event).await,
                    None => events_open = false,
                },
            }
        }
        tracing::debug!(media_id = %self.media_id, "media bus responder stopped");
    }

    fn spawn_answer(&self, message: BusMessage, allocate_only: bool) {
        if message.reply_to.is_none() {
            tracing::debug!(subject = %message.subject, "media request without a reply subject ignored");
            return;
        }
        let server = self.clone();
        tokio::spawn(async move { server.answer(message, allocate_only).await });
    }

    async fn answer(&self, message: BusMessage, allocate_only: bool) {
        // The trace context of the reply is the bus's to add (telemetry's instrumented bus).
        let mut headers = BusHeaders::new();
        let payload = match self.decode(&message, allocate_only) {
            Ok(request) => {
                // The call's trace continues here (call-control's span is the parent).
                let span = telemetry::propagation::child_span(
                    &message.headers,
                    || tracing::info_span!("media.request", media_id = %self.media_id),
                );
                let reply = self.handle(request).instrument(span).await;
                headers.insert(subjects::TYPE_HEADER, types::MEDIA_REPLY);
                reply.encode_to_vec()
            }
            Err(error) => {
                headers.insert(subjects::TYPE_HEADER, types::BUS_ERROR);
                error.encode_to_vec()
            }
        };
        if let Err(error) = self
            .bus
            .reply(&message, headers, Bytes::from(payload))
            .await
        {
            tracing::warn!(%error, "cannot answer a media request");
        }
    }

    /// The request, or the `BusError` that answers it.
    fn decode(
        &self,
        message: &BusMessage,
        allocate_only: bool,
    ) -> Result<v1::MediaRequest, v1::BusError> {
        let invalid = |message: String| v1::BusError {
            code: v1::BusErrorCode::InvalidArgument as i32,
            message,
        };
        if let Some(kind) = message.headers.get(subjects::TYPE_HEADER)
            && kind != types::MEDIA_REQUEST
        {
            return Err(invalid(format!(
                "expected a {}, got a {kind}",
                types::MEDIA_REQUEST
            )));
        }
        let request = v1::MediaRequest::decode(message.payload.as_ref())
            .map_err(|error| invalid(format!("not a {}: {error}", types::MEDIA_REQUEST)))?;
        let is_allocate = matches!(
            request.request,
            Some(v1::media_request::Request::Allocate(_))
        );
        if allocate_only && !is_allocate {
            return Err(invalid(format!(
                "only allocations go to {}; the others go to the owner's control subject",
                subjects::MEDIA_ALLOCATE
            )));
        }
        Ok(request)
    }

    async fn handle(&self, request: v1::MediaRequest) -> v1::MediaReply {
        use v1::media_reply::Reply;
        use v1::media_request::Request;
        let service = self.service.as_ref();
        let result = match request.request {
            Some(Request::Allocate(allocate)) => match allocate_from_wire(allocate) {
                Ok(request) => service.allocate(request).await.map(|allocation| {
                    Reply::Allocation(v1::MediaAllocation {
                        media_id: self.media_id.to_string(),
                        session_id: allocation.session.0,
                        leg_a: allocation.leg_a.to_string(),
                        leg_b: allocation.leg_b.to_string(),
                        datacenter: self.datacenter.to_string(),
                    })
                }),
                Err(error) => Err(error),
            },
            Some(Request::Update(update)) => {
                let session = SessionId(update.session_id);
                let checked = leg_from_wire(update.leg).and_then(|leg| {
                    Ok((leg, options_from_wire("options", update.options.as_ref())?))
                });
                match checked {
                    Ok((leg, options)) => match service.update(session, leg, options).await {
                        Ok(()) => stats_reply(service, session).await,
                        Err(error) => Err(error),
                    },
                    Err(error) => Err(error),
                }
            }
            Some(Request::Release(release)) => {
                let session = SessionId(release.session_id);
                service
                    .release(session)
                    .await
                    .map(|stats| Reply::Stats(stats_to_wire(session, stats)))
            }
            Some(Request::Stats(stats)) => stats_reply(service, SessionId(stats.session_id)).await,
            Some(Request::Play(play)) => match play_from_wire(play) {
                Ok((session, leg, playback)) => match service.play(session, leg, playback).await {
                    Ok(()) => stats_reply(service, session).await,
                    Err(error) => Err(error),
                },
                Err(error) => Err(error),
            },
            Some(Request::StopPlayback(stop)) => {
                let session = SessionId(stop.session_id);
                match leg_from_wire(stop.leg) {
                    Ok(leg) => match service.stop_playback(session, leg).await {
                        Ok(()) => stats_reply(service, session).await,
                        Err(error) => Err(error),
                    },
                    Err(error) => Err(error),
                }
            }
            None => Err(MediaError::Invalid("an empty MediaRequest".into())),
        };
        let reply = result.unwrap_or_else(|error| {
            tracing::debug!(media_id = %self.media_id, %error, "media request refused");
            Reply::Error(error_to_wire(&error))
        });
        v1::MediaReply { reply: Some(reply) }
    }

    async fn publish(&self, event: MediaEvent) {
        let MediaEvent::MediaIdle {
            session,
            call_id,
            stats,
        } = event;
        let message = v1::MediaEvent {
            event: Some(v1::media_event::Event::Idle(v1::MediaIdle {
                media_id: self.media_id.to_string(),
                session_id: session.0,
                call_id,
                stats: Some(stats_to_wire(session, stats)),
            })),
        };
        if let Err(error) = self
            .bus
            .publish(
                subjects::MEDIA_EVENTS,
                typed(types::MEDIA_EVENT),
                Bytes::from(message.encode_to_vec()),
            )
            .await
        {
            tracing::warn!(%session, %error, "cannot publish a media event");
        }
    }
}

fn allocate_from_wire(allocate: v1::MediaAllocate) -> Result<AllocateRequest, MediaError> {
    Ok(AllocateRequest {
        leg_a: options_from_wire("leg_a", allocate.leg_a.as_ref())?,
        leg_b: options_from_wire("leg_b", allocate.leg_b.as_ref())?,
        call_id: allocate.call_id,
    })
}

async fn stats_reply(
    service: &dyn MediaControl,
    session: SessionId,
) -> Result<v1::media_reply::Reply, MediaError> {
    service
        .stats(session)
        .await
        .map(|stats| v1::media_reply::Reply::Stats(stats_to_wire(session, stats)))
}

// ---------------------------------------------------------------------------------------
// Call-control's side.
// ---------------------------------------------------------------------------------------

/// An allocation and the replica that owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteAllocation {
    /// The owning replica's media id (its control subject).
    pub media_id: String,
    /// The owning replica's datacenter (empty: it did not say).
    pub datacenter: String,
    pub allocation: Allocation,
}

/// A media event as received from the bus: the replica that sent it and the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteMediaEvent {
    pub media_id: String,
    pub event: MediaEvent,
}

/// [`MediaControl`] over the bus: a cheap handle (clones share the session routes).
#[derive(Debug, Clone)]
pub struct MediaClient {
    bus: Arc<dyn Bus>,
    timeout: Duration,
    /// Which replica owns each session allocated (or adopted) through this client.
    routes: Arc<Mutex<HashMap<SessionId, Route>>>,
}

/// Where a session lives: its owner's media id and datacenter (empty: unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Route {
    media_id: String,
    datacenter: String,
}

impl MediaClient {
    /// A client whose every request waits at most `timeout` for its reply.
    pub fn new(bus: Arc<dyn Bus>, timeout: Duration) -> MediaClient {
        MediaClient {
            bus,
            timeout,
            routes: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn routes(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, Route>> {
        self.routes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The replica owning `session`, if this client allocated or adopted it (and has not
    /// released it).
    pub fn owner(&self, session: SessionId) -> Option<String> {
        self.routes()
            .get(&session)
            .map(|route| route.media_id.clone())
    }

    /// The datacenter of the replica owning `session`, when the allocation (or the adoption)
    /// named it.
    pub fn owner_datacenter(&self, session: SessionId) -> Option<String> {
        self.routes()
            .get(&session)
            .map(|route| route.datacenter.clone())
            .filter(|datacenter| !datacenter.is_empty())
    }

    /// Routes `session` to replica `media_id` of `datacenter` (empty: unknown) from now on (a
    /// call-control replica taking over calls another one allocated; the pair is in
    /// [`RemoteAllocation`]).
    pub fn adopt(&self, session: SessionId, media_id: impl Into<String>, datacenter: &str) {
        let route = Route {
            media_id: media_id.into(),
            datacenter: datacenter.to_owned(),
        };
        self.routes().insert(session, route);
    }

    /// Allocates a session on any replica, returning the owner's media id with it. The
    /// session is routed to it for the other methods. A replica without free ports makes the
    /// client ask the queue group again, up to [`ALLOCATE_ATTEMPTS`] times in all.
    pub async fn allocate_remote(
        &self,
        request: AllocateRequest,
    ) -> Result<RemoteAllocation, MediaError> {
        let wire = v1::MediaRequest {
            request: Some(v1::media_request::Request::Allocate(v1::MediaAllocate {
                call_id: request.call_id.clone(),
                leg_a: Some(options_to_wire(request.leg_a)),
                leg_b: Some(options_to_wire(request.leg_b)),
            })),
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.send(subjects::MEDIA_ALLOCATE, &wire, None).await {
                Ok(v1::media_reply::Reply::Allocation(allocation)) => {
                    let remote = allocation_from_wire(allocation)?;
                    let session = remote.allocation.session;
                    let clash = {
                        let mut routes = self.routes();
                        match routes.get(&session) {
                            Some(owner) if owner.media_id != remote.media_id => true,
                            _ => {
                                let route = Route {
                                    media_id: remote.media_id.clone(),
                                    datacenter: remote.datacenter.clone(),
                                };
                                routes.insert(session, route);
                                false
                            }
                        }
                    };
                    if !clash {
                        return Ok(remote);
                    }
                    // Two replicas issued the same id (their random starts met): give this
                    // one back and ask again (the replica's next id differs).
                    tracing::warn!(%session, media_id = %remote.media_id, "session id clash across media replicas; allocating again");
                    let control = subjects::media_control(&remote.media_id);
                    let _ = self
                        .send(&control, &release_request(session), Some(session))
                        .await;
                    if attempt >= ALLOCATE_ATTEMPTS {
                        return Err(MediaError::Invalid(format!(
                            "session id {session} clashes across media replicas"
                        )));
                    }
                }
                Ok(_) => {
                    return Err(MediaError::Invalid(
                        "allocate answered without an allocation".into(),
                    ));
                }
                Err(MediaError::Exhausted(exhausted)) if attempt < ALLOCATE_ATTEMPTS => {
                    tracing::debug!(
                        capacity = exhausted.capacity,
                        attempt,
                        "media replica exhausted; asking again"
                    );
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Subscribes to the replicas' events: every subscriber gets each event, or one member of
    /// `queue_group` (call-control's replicas) does.
    pub async fn subscribe_events(
        bus: &dyn Bus,
        queue_group: Option<&str>,
    ) -> Result<Subscription, BusError> {
        match queue_group {
            Some(group) => bus.queue_subscribe(subjects::MEDIA_EVENTS, group).await,
            None => bus.subscribe(subjects::MEDIA_EVENTS).await,
        }
    }

    /// Decodes a message received on [`subjects::MEDIA_EVENTS`].
    pub fn decode_event(message: &BusMessage) -> Result<RemoteMediaEvent, MediaError> {
        if let Some(kind) = message.headers.get(subjects::TYPE_HEADER)
            && kind != types::MEDIA_EVENT
        {
            return Err(MediaError::Invalid(format!(
                "expected a {}, got a {kind}",
                types::MEDIA_EVENT
            )));
        }
        let event = v1::MediaEvent::decode(message.payload.as_ref())
            .map_err(|error| MediaError::Invalid(format!("not a MediaEvent: {error}")))?;
        match event.event {
            Some(v1::media_event::Event::Idle(idle)) => Ok(RemoteMediaEvent {
                media_id: idle.media_id,
                event: MediaEvent::MediaIdle {
                    session: SessionId(idle.session_id),
                    call_id: idle.call_id,
                    stats: stats_from_wire(idle.stats.unwrap_or_default())?,
                },
            }),
            None => Err(MediaError::Invalid("an empty MediaEvent".into())),
        }
    }

    /// Sends a request for `session` to its owner.
    async fn control(
        &self,
        session: SessionId,
        request: v1::MediaRequest,
    ) -> Result<v1::media_reply::Reply, MediaError> {
        let owner = self
            .owner(session)
            .ok_or(MediaError::UnknownSession(session))?;
        self.send(&subjects::media_control(&owner), &request, Some(session))
            .await
    }

    async fn control_stats(
        &self,
        session: SessionId,
        request: v1::MediaRequest,
    ) -> Result<SessionStats, MediaError> {
        match self.control(session, request).await? {
            v1::media_reply::Reply::Stats(stats) => stats_from_wire(stats),
            _ => Err(MediaError::Invalid("expected counters in the reply".into())),
        }
    }

    /// One request/reply; errors in the reply become `Err`.
    async fn send(
        &self,
        subject: &str,
        request: &v1::MediaRequest,
        session: Option<SessionId>,
    ) -> Result<v1::media_reply::Reply, MediaError> {
        // The caller's span travels in the headers when the bus is telemetry's instrumented
        // one (it injects the current context): the relay's span becomes its child.
        let headers = typed(types::MEDIA_REQUEST);
        let reply = self
            .bus
            .request(
                subject,
                headers,
                Bytes::from(request.encode_to_vec()),
                self.timeout,
            )
            .await
            .map_err(|error| match error {
                BusError::Timeout { .. }
                | BusError::NoResponders(_)
                | BusError::Disconnected(_)
                | BusError::Connect { .. } => MediaError::Unavailable(error.to_string()),
                other => MediaError::Invalid(other.to_string()),
            })?;
        match reply.headers.get(subjects::TYPE_HEADER) {
            Some(types::BUS_ERROR) => {
                let error = v1::BusError::decode(reply.payload.as_ref()).unwrap_or_default();
                return Err(match v1::BusErrorCode::try_from(error.code) {
                    Ok(v1::BusErrorCode::Unavailable) => MediaError::Unavailable(error.message),
                    _ => MediaError::Invalid(error.message),
                });
            }
            Some(types::MEDIA_REPLY) | None => {}
            Some(other) => {
                return Err(MediaError::Invalid(format!(
                    "expected a {}, got a {other}",
                    types::MEDIA_REPLY
                )));
            }
        }
        let reply = v1::MediaReply::decode(reply.payload.as_ref())
            .map_err(|error| MediaError::Invalid(format!("not a MediaReply: {error}")))?;
        match reply.reply {
            Some(v1::media_reply::Reply::Error(error)) => Err(error_from_wire(session, error)),
            Some(reply) => Ok(reply),
            None => Err(MediaError::Invalid("an empty MediaReply".into())),
        }
    }
}

fn release_request(session: SessionId) -> v1::MediaRequest {
    v1::MediaRequest {
        request: Some(v1::media_request::Request::Release(v1::MediaRelease {
            session_id: session.0,
        })),
    }
}

fn allocation_from_wire(allocation: v1::MediaAllocation) -> Result<RemoteAllocation, MediaError> {
    if !is_valid_media_id(&allocation.media_id) {
        return Err(MediaError::Invalid(format!(
            "allocation from an invalid media id {:?}",
            allocation.media_id
        )));
    }
    let leg_a = addr_from_wire("leg_a", &allocation.leg_a)?
        .ok_or_else(|| MediaError::Invalid("allocation without leg_a".into()))?;
    let leg_b = addr_from_wire("leg_b", &allocation.leg_b)?
        .ok_or_else(|| MediaError::Invalid("allocation without leg_b".into()))?;
    Ok(RemoteAllocation {
        media_id: allocation.media_id,
        datacenter: allocation.datacenter,
        allocation: Allocation {
            session: SessionId(allocation.session_id),
            leg_a,
            leg_b,
        },
    })
}

#[async_trait::async_trait]
impl MediaControl for MediaClient {
    async fn allocate(&self, request: AllocateRequest) -> Result<Allocation, MediaError> {
        Ok(self.allocate_remote(request).await?.allocation)
    }

    fn owner(&self, session: SessionId) -> Option<String> {
        MediaClient::owner(self, session)
    }

    fn owner_datacenter(&self, session: SessionId) -> Option<String> {
        MediaClient::owner_datacenter(self, session)
    }

    fn adopt(&self, session: SessionId, owner: &str, datacenter: &str) {
        MediaClient::adopt(self, session, owner, datacenter);
    }

    async fn update(
        &self,
        session: SessionId,
        leg: Leg,
        options: LegOptions,
    ) -> Result<(), MediaError> {
        let request = v1::MediaRequest {
            request: Some(v1::media_request::Request::Update(v1::MediaUpdate {
                session_id: session.0,
                leg: leg_to_wire(leg),
                options: Some(options_to_wire(options)),
            })),
        };
        self.control_stats(session, request).await.map(drop)
    }

    /// Releases the session; its route is forgotten once its owner answered (released, or
    /// did not know it), and kept when no replica answered, so that a retry goes to it.
    async fn release(&self, session: SessionId) -> Result<SessionStats, MediaError> {
        let result = self.control_stats(session, release_request(session)).await;
        if !matches!(result, Err(MediaError::Unavailable(_))) {
            self.routes().remove(&session);
        }
        result
    }

    async fn stats(&self, session: SessionId) -> Result<SessionStats, MediaError> {
        let request = v1::MediaRequest {
            request: Some(v1::media_request::Request::Stats(v1::MediaStatsRequest {
                session_id: session.0,
            })),
        };
        self.control_stats(session, request).await
    }

    async fn play(
        &self,
        session: SessionId,
        leg: Leg,
        playback: Playback,
    ) -> Result<(), MediaError> {
        let request = v1::MediaRequest {
            request: Some(v1::media_request::Request::Play(play_to_wire(
                session, leg, playback,
            ))),
        };
        self.control_stats(session, request).await.map(drop)
    }

    async fn stop_playback(&self, session: SessionId, leg: Leg) -> Result<(), MediaError> {
        let request = v1::MediaRequest {
            request: Some(v1::media_request::Request::StopPlayback(
                v1::MediaStopPlayback {
                    session_id: session.0,
                    leg: leg_to_wire(leg),
                },
            )),
        };
        self.control_stats(session, request).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_ids_are_single_tokens() {
        assert!(is_valid_media_id("media-1"));
        for bad in ["", "a.b", "a b", "*", ">"] {
            assert!(!is_valid_media_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn stats_and_options_round_trip() {
        let stats = SessionStats {
            leg_a: LegCounters {
                packets_in: 1,
                bytes_in: 2,
                packets_out: 3,
                bytes_out: 4,
                drops: 5,
            },
            leg_b: LegCounters::default(),
            latched_a: Some("[::1]:4000".parse().unwrap()),
            latched_b: None,
        };
        let wire = stats_to_wire(SessionId(9), stats);
        assert_eq!(wire.session_id, 9);
        assert_eq!(stats_from_wire(wire).unwrap(), stats);
        let options = LegOptions {
            remote: Some("10.0.0.1:4000".parse().unwrap()),
            behind_nat: true,
            rtcp_mux: true,
        };
        let wire = options_to_wire(options);
        assert_eq!(options_from_wire("x", Some(&wire)).unwrap(), options);
        assert!(matches!(
            options_from_wire(
                "x",
                Some(&v1::MediaLegOptions {
                    remote: "nope".into(),
                    ..Default::default()
                })
            ),
            Err(MediaError::Invalid(_))
        ));
    }

    #[test]
    fn errors_keep_their_kind_across_the_wire() {
        let session = Some(SessionId(4));
        let cases = [
            MediaError::Exhausted(PortsExhausted { capacity: 7 }),
            MediaError::UnknownSession(SessionId(4)),
            MediaError::Stopped(SessionId(4)),
            MediaError::Invalid("x".into()),
        ];
        for error in cases {
            let back = error_from_wire(session, error_to_wire(&error));
            assert_eq!(
                std::mem::discriminant(&back),
                std::mem::discriminant(&error),
                "{error}"
            );
        }
        assert!(matches!(
            error_from_wire(
                session,
                error_to_wire(&MediaError::Exhausted(PortsExhausted { capacity: 7 }))
            ),
            MediaError::Exhausted(PortsExhausted { capacity: 7 })
        ));
    }

    #[test]
    fn playback_round_trips() {
        let tone = Playback::Tone {
            spec: ToneSpec::ringback_europe(),
            codec: G711::ALaw,
        };
        let (session, leg, back) =
            play_from_wire(play_to_wire(SessionId(3), Leg::B, tone.clone())).unwrap();
        assert_eq!((session, leg), (SessionId(3), Leg::B));
        assert_eq!(back, tone);
        let mut bad = play_to_wire(SessionId(3), Leg::A, tone);
        bad.codec = 0;
        assert!(matches!(play_from_wire(bad), Err(MediaError::Invalid(_))));
    }
}
