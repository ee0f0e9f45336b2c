//! The call-control service: the B2BUA core on the bus. Requests handed over by the edges
//! (queue group `call-control`, ADR 0008) are acknowledged at once, resolved with the dial
//! plan and the location service, and fed to the core; its actions go back to the edges
//! (`EdgeResponse` for the caller's transaction, `EdgeSend` through the callee's flow, ADR
//! 0011). Results of sent requests come back on this replica's own subject.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bus::{Bus, BusHeaders, BusMessage};
use bytes::Bytes;
use directory_client::DirectoryCache;
use location::{LocationConfig, LocationService};
use prost::Message as _;
use proto::subjects::{self, types};
use proto::v1::{EdgeRequest, EdgeResponse, EdgeSend, EdgeSendResult};
use sip_msg::{Method, Request, SipMessage, StatusCode};
use store::Store;
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use crate::b2bua::hunt::{self, HuntState, MemberContacts, TrackedCall};
use crate::b2bua::{
    Action, B2bua, B2buaConfig, EstablishedCall, Input, LegTarget, Stage, call_key,
};
use crate::dialplan::{self, HuntMember, Target};

mod beats;
mod edges;
mod ended_elsewhere;
mod handoffs;
mod intake;
mod relocate;

/// Settings of a call-control replica.
#[derive(Debug, Clone)]
pub struct CallControlConfig {
    /// This replica's name (its results subject and its Via placeholder).
    pub instance: String,
    /// This replica's datacenter (empty: not said). Its calls' snapshots name it, and when
    /// the failover controller marks a datacenter failed, replicas of the others take its
    /// calls over (ADR 0020).
    pub datacenter: String,
    /// The SIP domain of the AORs (the edges' `--domain`).
    pub domain: String,
    /// How long callees ring before the caller gets 480.
    pub ring_timeout: Duration,
    /// The media relay, to anchor calls of sites whose policy is `Relay`; `None` keeps all
    /// media direct.
    pub media: Option<Arc<dyn media::MediaControl>>,
    /// Where call records (CDRs) are appended, one JSON object per line, flushed to disk per
    /// call; `None` only logs them.
    pub cdr_file: Option<std::path::PathBuf>,
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("loading the directory: {0}")]
    Directory(#[from] directory_client::CacheError),
    #[error("loading the location service: {0}")]
    Location(#[from] location::LocationError),
    #[error("subscribing on the bus: {0}")]
    Bus(#[from] bus::BusError),
}

/// A running replica; dropping it stops it.
#[derive(Debug)]
pub struct CallControlHandle {
    task: JoinHandle<()>,
}

impl Drop for CallControlHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The subject this replica's `EdgeSendResult`s arrive on.
pub fn results_subject(instance: &str) -> String {
    format!("{}.callcontrol.{instance}.results", subjects::PREFIX)
}

/// Starts a replica on `store` (directory and location) and `bus`.
pub async fn start(
    config: CallControlConfig,
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
) -> Result<CallControlHandle, StartError> {
    start_instrumented(config, store, bus, None).await
}

/// [`start`], feeding the call metrics of `docs/metrics.md` into `metrics`.
pub async fn start_instrumented(
    config: CallControlConfig,
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    metrics: Option<&telemetry::Metrics>,
) -> Result<CallControlHandle, StartError> {
    let directory = DirectoryCache::start(store.clone()).await?;
    let location = LocationService::start(store.clone(), LocationConfig::default()).await?;
    let requests = bus
        .queue_subscribe(
            subjects::CALL_CONTROL_REQUESTS,
            subjects::CALL_CONTROL_QUEUE_GROUP,
        )
        .await?;
    let results = bus.subscribe(&results_subject(&config.instance)).await?;
    // Dead media reported by the relays: one replica of the group hangs the call up.
    let media_events = match &config.media {
        Some(_) => Some(
            media::MediaClient::subscribe_events(
                bus.as_ref(),
                Some(subjects::CALL_CONTROL_QUEUE_GROUP),
            )
            .await?,
        ),
        None => None,
    };
    // Every replica hears every announcement and heartbeat (no queue group): each decides
    // which calls are its own to move.
    let failover_states = bus.subscribe(subjects::FAILOVER_STATE).await?;
    let mut heartbeats = vec![(
        beats::BeatKind::Edge,
        bus.subscribe(subjects::EDGE_HEARTBEATS).await?,
    )];
    if config.media.is_some() {
        heartbeats.push((
            beats::BeatKind::Media,
            bus.subscribe(subjects::MEDIA_HEARTBEATS).await?,
        ));
    }
    let heartbeats = beats::stamp(heartbeats);
    let core = B2bua::new(
        B2buaConfig {
            instance: config.instance.clone(),
            ring_timeout: config.ring_timeout,
            ..B2buaConfig::default()
        },
        now(),
        rand::random(),
    );
    let anchoring = config.media.clone().map(crate::anchor::Anchoring::new);
    let state = crate::writers::StateWriter::start(store.clone());
    let cdr = config
        .cdr_file
        .clone()
        .map(crate::writers::CdrWriter::start);
    let mut service = Service {
        media_alive: crate::liveness::Liveness::default(),
        edges_alive: crate::liveness::Liveness::default(),
        parked: Vec::new(),
        journal: edges::Journal::default(),
        handoffs: handoffs::RecentHandOffs::default(),
        follower: crate::failover::FailoverFollower::default(),
        pending: std::collections::HashMap::new(),
        last_retry: now(),
        unregistered: std::sync::Mutex::default(),
        metrics: metrics.map(telemetry::CallMetrics::register),
        hangup_by: None,
        records: crate::records::CallContexts::default(),
        state,
        cdr,
        anchoring,
        config,
        directory,
        location,
        store,
        bus,
        core,
        hunt: HuntState::default(),
    };
    service.read_failover_state().await;
    // Acknowledging starts once the loop is about to run: a hand-off acknowledged earlier
    // would wait for the failover state's read.
    let requests = intake::acknowledge_on_arrival(service.bus.clone(), requests);
    let ended = ended_elsewhere::follow(service.store.clone());
    let task = tokio::spawn(service.run(Subscriptions {
        requests,
        results,
        media_events,
        failover_states,
        heartbeats,
        ended,
    }));
    Ok(CallControlHandle { task })
}

#[allow(clippy::disallowed_methods)] // the service's clock; the core gets it as input
fn now() -> Instant {
    Instant::now()
}

#[allow(clippy::disallowed_methods)] // wall time for call records
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[allow(clippy::disallowed_methods)] // wall time for binding expiry, shared between machines
fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Where a new call goes.
struct Resolved {
    /// The registered contacts to ring (or the trunk): one stage, or a hunt group's stages.
    stages: Vec<Stage>,
    /// Whether the call's media goes through the relay (the caller's or the callee's site
    /// wants it).
    relay: bool,
    /// The site of the extension called ("" for trunks and hunt groups).
    callee_site: String,
    /// What the hunt state learns from the call (the group called, the extensions in it).
    tracked: TrackedCall,
}

/// What a replica listens to.
struct Subscriptions {
    /// Requests from the edges, hand-offs already acknowledged (`intake.rs`).
    requests: tokio::sync::mpsc::Receiver<BusMessage>,
    results: bus::Subscription,
    media_events: Option<bus::Subscription>,
    failover_states: bus::Subscription,
    /// Media relays' and edges' heartbeats, stamped on arrival.
    heartbeats: tokio::sync::mpsc::Receiver<beats::Beat>,
    /// Calls whose snapshot was deleted (ended, here or by another replica).
    ended: tokio::sync::mpsc::Receiver<String>,
}

/// The next message of an optional subscription (never, without one).
async fn next_of(subscription: &mut Option<bus::Subscription>) -> Option<BusMessage> {
    match subscription.as_mut() {
        Some(subscription) => subscription.next().await,
        None => std::future::pending().await,
    }
}

struct Service {
    /// Media relay replicas and SIP edges alive, from their heartbeats (ADR 0020).
    media_alive: crate::liveness::Liveness,
    edges_alive: crate::liveness::Liveness,
    /// Requests to phones behind a dead edge, waiting for the phone to come back.
    parked: Vec<edges::Parked>,
    /// Requests sent in the last seconds that no result answered yet.
    journal: edges::Journal,
    /// Hand-offs already taken (an edge sends one again when its acknowledgement is late).
    handoffs: handoffs::RecentHandOffs,
    /// The datacenters the failover controller marked failed.
    follower: crate::failover::FailoverFollower,
    /// Calls to move that wait for their phones to register through a surviving edge (or for
    /// an offer in progress to end), by the caller's Call-ID, with when to give up.
    pending: std::collections::HashMap<String, Instant>,
    /// When the waiting calls were last tried.
    last_retry: Instant,
    /// The AORs `resolve` found no binding for in the cache (read from the store before
    /// answering 480).
    unregistered: std::sync::Mutex<Vec<String>>,
    metrics: Option<telemetry::CallMetrics>,
    /// Who sent the BYE being handled (`caller_bye`/`callee_bye`), for the ended-calls metric.
    hangup_by: Option<&'static str>,
    records: crate::records::CallContexts,
    state: crate::writers::StateWriter,
    cdr: Option<crate::writers::CdrWriter>,
    anchoring: Option<crate::anchor::Anchoring>,
    config: CallControlConfig,
    directory: DirectoryCache,
    location: LocationService,
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    core: B2bua,
    /// Round-robin and longest-idle memory of this replica (not shared: ADR 0016).
    hunt: HuntState,
}

impl Service {
    async fn run(mut self, subscriptions: Subscriptions) {
        let Subscriptions {
            mut requests,
            mut results,
            mut media_events,
            mut failover_states,
            mut heartbeats,
            mut ended,
        } = subscriptions;
        loop {
            let wake = self
                .core
                .poll_timeout()
                .unwrap_or_else(|| now() + Duration::from_secs(3600));
            let tick = self
                .next_tick()
                .unwrap_or_else(|| now() + Duration::from_secs(3600));
            // Each message is handled in a span whose parent is the sender's (trace context in
            // the bus headers), and what it causes is published inside it: one call, one trace.
            let (actions, span) = tokio::select! {
                message = requests.recv() => match message {
                    Some(message) => {
                        let span = telemetry::propagation::child_span(&message.headers, || {
                            tracing::info_span!(
                                "call_control.request",
                                method = tracing::field::Empty,
                                call_id = tracing::field::Empty,
                            )
                        });
                        (self.on_request(message).instrument(span.clone()).await, span)
                    }
                    None => return,
                },
                message = results.next() => match message {
                    Some(message) => {
                        let span = telemetry::propagation::child_span(&message.headers, || {
                            tracing::info_span!("call_control.result")
                        });
                        (span.in_scope(|| self.on_result(&message)), span)
                    }
                    None => return,
                },
                state = failover_states.next() => match state {
                    Some(message) => {
                        self.on_failover_state(&message).await;
                        continue;
                    }
                    None => return,
                },
                call_id = ended.recv() => match call_id {
                    Some(call_id) => {
                        self.on_ended_elsewhere(&call_id);
                        continue;
                    }
                    None => return,
                },
                beat = heartbeats.recv() => match beat {
                    Some(beat) => {
                        self.on_heartbeat(&beat);
                        continue;
                    }
                    None => return,
                },
                _ = tokio::time::sleep_until(tick.into()) => {
                    // Every heartbeat that arrived while the loop was busy counts first.
                    while let Ok(beat) = heartbeats.try_recv() {
                        self.on_heartbeat(&beat);
                    }
                    self.on_tick().await;
                    continue;
                },
                event = next_of(&mut media_events) => match event {
                    Some(message) => {
                        let span = telemetry::propagation::child_span(&message.headers, || {
                            tracing::info_span!("call_control.media_event")
                        });
                        (self.on_media_event(&message).instrument(span.clone()).await, span)
                    }
                    None => {
                        media_events = None;
                        continue;
                    }
                },
                _ = tokio::time::sleep_until(wake.into()) => {
                    self.reconcile_due_sessions().await;
                    (self.core.handle(now(), Input::Timeout), tracing::Span::none())
                }
            };
            self.perform(actions).instrument(span).await;
            self.hangup_by = None;
        }
    }

    /// A stored call was deleted: if this replica still holds it, another one ended it.
    fn on_ended_elsewhere(&mut self, call_id: &str) {
        let Some(caller_call_id) = self.core.forget_ended_elsewhere(call_id) else {
            return;
        };
        tracing::debug!(%caller_call_id, "call ended by another replica: forgotten here");
        self.records.end(&caller_call_id);
        if let Some(anchoring) = self.anchoring.as_mut() {
            anchoring.forget(&caller_call_id);
        }
        if let Some(metrics) = &self.metrics {
            metrics.set_active(self.records.answered());
        }
    }

    /// Session timers about to end calls: another replica may have relayed a refresh this one
    /// never saw (the queue group spreads in-dialog requests). The stored snapshot says.
    async fn reconcile_due_sessions(&mut self) {
        for call_id in self.core.session_timers_due(now()) {
            match self.store.get(&call_key(&call_id)).await {
                Ok(Some(kv)) => match EstablishedCall::decode(kv.value) {
                    Ok(snapshot) => self
                        .core
                        .reconcile_session(now(), &call_id, Some(&snapshot)),
                    Err(e) => tracing::warn!(%call_id, error = %e, "undecodable stored call"),
                },
                // Ended through another replica: dropped quietly.
                Ok(None) => self.core.reconcile_session(now(), &call_id, None),
                // Store away: the timer ends the call.
                Err(e) => tracing::warn!(%call_id, error = %e, "session timer not reconciled"),
            }
        }
    }

    /// A media relay's event: dead media (no RTP either way for its idle timeout) means the
    /// phones are gone or cut off; hang the call up so neither side stays in a silent call.
    async fn on_media_event(&mut self, message: &BusMessage) -> Vec<Action> {
        let event = match media::MediaClient::decode_event(message) {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(error = %e, "undecodable media event dropped");
                return Vec::new();
            }
        };
        let media::MediaEvent::MediaIdle {
            call_id, session, ..
        } = event.event;
        self.take_over_if_stored(&call_id).await;
        let current = self.anchoring.as_ref().and_then(|a| a.session_of(&call_id));
        if current.is_some_and(|current| current != session) {
            // The session the call was moved away from (ADR 0020) went idle, as it should.
            tracing::debug!(%call_id, %session, "idle event of a replaced relay session");
            return Vec::new();
        }
        tracing::info!(%call_id, media_id = %event.media_id, "dead media: hanging the call up");
        self.core.handle(
            now(),
            Input::Hangup {
                call_id,
                cause: crate::b2bua::CAUSE_MEDIA_TIMEOUT,
            },
        )
    }

    async fn on_request(&mut self, message: BusMessage) -> Vec<Action> {
        // The hand-off was acknowledged when it arrived (`intake.rs`).
        let Ok(edge_request) = EdgeRequest::decode(message.payload.clone()) else {
            tracing::warn!("undecodable EdgeRequest dropped");
            return Vec::new();
        };
        // Only hand-offs (requests awaiting our acknowledgement) are sent again; a CANCEL
        // notification carries its INVITE's handle and is not a copy of it.
        if message.reply_to.is_some()
            && !edge_request.transaction.is_empty()
            && !self
                .handoffs
                .first_time(now(), &edge_request.edge_id, &edge_request.transaction)
        {
            tracing::debug!("a hand-off sent again that this replica already has");
            return Vec::new();
        }
        let Ok(SipMessage::Request(request)) = sip_msg::parse_datagram(&edge_request.message)
        else {
            tracing::warn!("EdgeRequest without a SIP request dropped");
            return Vec::new();
        };
        let flow = edge_request.flow.clone().unwrap_or_default();
        let in_dialog = request
            .headers
            .to_header()
            .ok()
            .flatten()
            .is_some_and(|to| to.params.get("tag").is_some());
        let is_new_invite = request.method == Method::Invite && !in_dialog;
        if !is_new_invite {
            if !in_dialog
                && !edge_request.transaction.is_empty()
                && !matches!(request.method, Method::Ack | Method::Cancel)
            {
                // MESSAGE, SUBSCRIBE, OPTIONS to a user…: not served yet.
                let response = sip_msg::build_response(&request, StatusCode::NOT_IMPLEMENTED, None);
                return vec![Action::Respond {
                    edge_id: edge_request.edge_id,
                    handle: edge_request.transaction,
                    response: Box::new(response),
                }];
            }
            if let Some(call_id) = request.headers.call_id() {
                let call_id = call_id.to_owned();
                self.take_over_if_stored(&call_id).await;
                if request.method == Method::Bye {
                    self.hangup_by = Some(if self.records.contains(&call_id) {
                        "caller_bye"
                    } else {
                        "callee_bye"
                    });
                }
            }
            let input = Input::InDialog {
                edge_id: edge_request.edge_id,
                handle: edge_request.transaction,
                request: Box::new(request),
                flow,
            };
            return self.core.handle(now(), input);
        }
        let call_id = request.headers.call_id().unwrap_or_default().to_owned();
        tracing::Span::current().record("method", "INVITE");
        tracing::Span::current().record("call_id", call_id.as_str());
        if let Some(metrics) = &self.metrics {
            metrics.attempt();
        }
        let mut context = crate::records::CallContext {
            invite_at: Some(now()),
            caller_site: self
                .directory
                .device(&edge_request.device_id)
                .map(|d| d.site_id.as_str().to_owned())
                .unwrap_or_default(),
            started_unix_ms: Some(unix_ms()),
            ..Default::default()
        };
        self.unregistered_aors().clear();
        let mut resolved = self.resolve(&edge_request.device_id, &request, &flow);
        let nobody = resolved
            .as_ref()
            .is_ok_and(|r| r.stages.iter().all(|s| s.targets.is_empty()));
        if nobody && !self.unregistered_aors().is_empty() {
            // The location cache follows the store's watch: a phone that registered a few
            // milliseconds ago (through any edge) may not be in it yet. Before answering 480,
            // read the callee's bindings from the store itself (this refreshes the cache).
            let aors = std::mem::take(&mut *self.unregistered_aors());
            let mut found = false;
            for aor in &aors {
                match self.location.fresh(aor).await {
                    Ok(bindings) => found |= !bindings.is_empty(),
                    Err(e) => tracing::warn!(%aor, error = %e, "bindings not read from the store"),
                }
            }
            if found {
                resolved = self.resolve(&edge_request.device_id, &request, &flow);
            }
        }
        let (plan, relay) = match resolved {
            Ok(resolved) => {
                context.callee_site = resolved.callee_site;
                self.hunt.track(&call_id, resolved.tracked);
                (Ok(resolved.stages), resolved.relay)
            }
            Err(refusal) => {
                context.cause = refusal.1.clone();
                (Err(refusal), false)
            }
        };
        self.records.begin(&call_id, context);
        if relay
            && plan
                .as_ref()
                .is_ok_and(|stages| stages.iter().any(|s| !s.targets.is_empty()))
            && let Some(anchoring) = self.anchoring.as_mut()
        {
            anchoring.allocate(&call_id, &request.body).await;
        }
        let input = Input::InvitePlan {
            edge_id: edge_request.edge_id,
            handle: edge_request.transaction,
            request: Box::new(request),
            flow,
            plan,
        };
        self.core.handle(now(), input)
    }

    /// A callee leg's INVITE (any stage's: later ones go out on results and timeouts) joins
    /// its call's relay session, if the call is anchored.
    fn anchor_callee_leg(&mut self, action: &Action) {
        let Some(anchoring) = self.anchoring.as_mut() else {
            return;
        };
        let Action::Send { request, .. } = action else {
            return;
        };
        let initial = request
            .headers
            .to_header()
            .ok()
            .flatten()
            .is_some_and(|to| to.params.get("tag").is_none());
        if request.method != Method::Invite || !initial {
            return; // re-INVITEs are in a dialog the relay knows already
        }
        if let Some(leg_call_id) = request.headers.call_id()
            && let Some(caller_call_id) = self.core.caller_call_id(leg_call_id)
            && anchoring.is_anchored(caller_call_id)
        {
            anchoring.add_callee_leg(caller_call_id, leg_call_id);
        }
    }

    /// An in-dialog request for a call this replica does not hold: another replica answered
    /// it (the queue group spreads requests) or set it up and died. Load it from the store.
    async fn take_over_if_stored(&mut self, call_id: &str) {
        if self.core.knows(call_id) {
            return;
        }
        match self.store.get(&call_key(call_id)).await {
            Ok(Some(kv)) => match EstablishedCall::decode(kv.value) {
                Ok(snapshot) => {
                    if self.core.restore(now(), &snapshot) {
                        let caller_call_id = match sip_msg::parse_datagram(&snapshot.caller_invite)
                        {
                            Ok(SipMessage::Request(invite)) => {
                                invite.headers.call_id().unwrap_or_default().to_owned()
                            }
                            _ => String::new(),
                        };
                        self.records.adopt(&caller_call_id, &snapshot);
                        let relayed = self
                            .anchoring
                            .as_mut()
                            .is_some_and(|anchoring| anchoring.adopt(&snapshot));
                        tracing::info!(%call_id, relayed, "took over an established call from the store");
                    }
                }
                Err(e) => tracing::warn!(%call_id, error = %e, "undecodable stored call"),
            },
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(%call_id, error = %e, "store unavailable: call not taken over")
            }
        }
    }

    /// Where an INVITE goes: the registered contacts of the target's devices, or why not.
    fn resolve(
        &self,
        caller_device: &str,
        request: &Request,
        caller_flow: &proto::v1::Flow,
    ) -> Result<Resolved, (StatusCode, String)> {
        let dialed = request.uri.user.clone().unwrap_or_default();
        let target = if caller_device.is_empty() {
            // A trusted network (a gateway, the legacy PBX, a trunk): no device authenticated,
            // so no class of service applies; it reaches internal numbers only.
            self.route_trusted(&dialed)?
        } else {
            dialplan::route(&self.directory, caller_device, &dialed).map_err(|r| {
                let status = StatusCode::new(r.status_code()).unwrap_or(StatusCode::NOT_FOUND);
                (status, r.to_string())
            })?
        };
        let relay_site = |site_id: &str| {
            self.directory
                .site(site_id)
                .is_some_and(|s| s.media_policy == directory::model::MediaPolicy::Relay)
        };
        let caller_relay = self
            .directory
            .device(caller_device)
            .is_some_and(|d| relay_site(d.site_id.as_str()));
        // The caller's extensions are in the call too (their idle time, for longest-idle).
        let mut tracked = TrackedCall {
            group: None,
            extensions: self
                .directory
                .extensions_of_device(caller_device)
                .iter()
                .map(|e| e.number.as_str().to_owned())
                .collect(),
        };
        let now_unix = unix_secs();
        let (device_ids, callee_site): (Vec<String>, String) = match target {
            Target::Extension {
                number,
                device_ids,
                site_id,
            } => {
                tracked.extensions.push(number);
                (device_ids, site_id)
            }
            Target::HuntGroup {
                number,
                members,
                strategy,
                ring_timeout,
            } => {
                let members: Vec<MemberContacts> = members
                    .into_iter()
                    .map(|m| MemberContacts {
                        targets: self.contacts(&m.device_ids, now_unix),
                        number: m.number,
                    })
                    .collect();
                let stages = hunt::stages(&number, strategy, &members, ring_timeout, &self.hunt);
                tracked.group = Some((number, members));
                return Ok(Resolved {
                    stages,
                    relay: caller_relay,
                    callee_site: String::new(),
                    tracked,
                });
            }
            Target::Trunk { trunk, number, .. } | Target::Emergency { trunk, number, .. } => {
                let target = self.trunk_target(&trunk, &number, caller_flow)?;
                return Ok(Resolved {
                    stages: vec![Stage::parallel(vec![target])],
                    relay: caller_relay,
                    callee_site: String::new(),
                    tracked,
                });
            }
            other => {
                return Err((
                    StatusCode::NOT_IMPLEMENTED,
                    format!("{other:?} not served yet"),
                ));
            }
        };
        let targets = self.contacts(&device_ids, now_unix);
        let callee_relay = relay_site(&callee_site);
        Ok(Resolved {
            stages: vec![Stage::parallel(targets)],
            relay: caller_relay || callee_relay,
            callee_site,
            tracked,
        })
    }

    fn unregistered_aors(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.unregistered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The registered contacts of these devices (each device's AOR is its SIP username).
    fn contacts(&self, device_ids: &[String], now_unix: u64) -> Vec<LegTarget> {
        let mut targets = Vec::new();
        for device_id in device_ids {
            let Some(device) = self.directory.device(device_id) else {
                continue;
            };
            let aor = format!(
                "sip:{}@{}",
                device.sip_username.as_str(),
                self.config.domain
            );
            let bindings = self.location.lookup(&aor, now_unix);
            if bindings.is_empty() {
                self.unregistered_aors().push(aor.clone());
            }
            for binding in bindings {
                targets.push(LegTarget {
                    aor: aor.clone(),
                    contact: binding.binding.contact.to_string(),
                    flow: binding.flow,
                });
            }
        }
        targets
    }

    /// Where a call from a trusted network goes: an extension or a hunt group dialled in full.
    fn route_trusted(&self, dialed: &str) -> Result<Target, (StatusCode, String)> {
        if let Some(extension) = self.directory.extension(dialed) {
            return Ok(Target::Extension {
                number: dialed.to_owned(),
                device_ids: extension
                    .device_ids
                    .iter()
                    .map(|d| d.as_str().to_owned())
                    .collect(),
                site_id: extension.site_id.as_str().to_owned(),
            });
        }
        if let Some(group) = self.directory.hunt_group(dialed) {
            // Hunted like a phone's call to the group (the dial plan's members, in order).
            let members = group
                .members
                .iter()
                .filter_map(|number| self.directory.extension(number.as_str()))
                .map(|e| HuntMember {
                    number: e.number.as_str().to_owned(),
                    device_ids: e.device_ids.iter().map(|d| d.as_str().to_owned()).collect(),
                })
                .collect();
            return Ok(Target::HuntGroup {
                number: dialed.to_owned(),
                members,
                strategy: group.strategy,
                ring_timeout: Duration::from_secs(u64::from(group.ring_timeout.seconds())),
            });
        }
        Err((StatusCode::NOT_FOUND, "no such number".into()))
    }

    /// A call to a trunk (a carrier, the legacy PBX): the caller's edge sends it to the
    /// trunk's address (any edge can reach a trunk; the caller's is already in the call).
    fn trunk_target(
        &self,
        trunk: &str,
        number: &str,
        caller_flow: &proto::v1::Flow,
    ) -> Result<LegTarget, (StatusCode, String)> {
        let unavailable = |reason: String| (StatusCode::SERVICE_UNAVAILABLE, reason);
        let trunk = self
            .directory
            .trunk(trunk)
            .ok_or_else(|| unavailable(format!("trunk {trunk} missing from the directory")))?;
        let address = trunk.address.to_string();
        // RFC 3263 lookups (NAPTR/SRV/A) are not built: a trunk is configured by IP:port.
        let remote: std::net::SocketAddr = address
            .parse()
            .map_err(|_| unavailable(format!("trunk address {address} is not IP:port")))?;
        let transport = match trunk.transport {
            directory::model::Transport::Udp => proto::v1::SipTransport::Udp,
            directory::model::Transport::Tcp => proto::v1::SipTransport::Tcp,
            directory::model::Transport::Tls => proto::v1::SipTransport::Tls,
        };
        let host = remote.to_string();
        Ok(LegTarget {
            aor: format!("sip:{number}@{host}"),
            contact: format!("sip:{number}@{host}"),
            flow: proto::v1::Flow {
                transport: transport as i32,
                remote: host,
                local: caller_flow.local.clone(),
                edge_id: caller_flow.edge_id.clone(),
                datacenter: caller_flow.datacenter.clone(),
            },
        })
    }

    fn on_result(&mut self, message: &BusMessage) -> Vec<Action> {
        let Ok(result) = EdgeSendResult::decode(message.payload.clone()) else {
            return Vec::new();
        };
        self.journal.answered(&result.call_ref);
        let Ok(SipMessage::Response(response)) = sip_msg::parse_datagram(&result.message) else {
            return Vec::new();
        };
        self.core.handle(
            now(),
            Input::Result {
                call_ref: result.call_ref,
                response: Box::new(response),
            },
        )
    }

    async fn perform(&mut self, actions: Vec<Action>) {
        for mut action in actions {
            self.anchor_callee_leg(&action);
            self.anchor_body(&mut action).await;
            let outcome = match action {
                Action::Respond {
                    edge_id,
                    handle,
                    response,
                } => {
                    self.count_setup(&response);
                    let payload = EdgeResponse {
                        transaction: handle,
                        message: response.to_bytes(),
                    };
                    self.publish(
                        &subjects::edge_responses(&edge_id),
                        types::EDGE_RESPONSE,
                        payload.encode_to_vec(),
                    )
                    .await
                }
                Action::Send {
                    call_ref,
                    request,
                    flow,
                } => self.send_via_live_edge(call_ref, *request, flow).await,
                Action::Persist { call_ids, mut call } => {
                    if let Some(caller_call_id) = call_ids.first() {
                        // Answered (or refreshed): who answered a hunt group's call.
                        self.hunt.call_answered(caller_call_id, &call.callee_aor);
                        if let Some(anchoring) = self.anchoring.as_ref() {
                            anchoring.describe(caller_call_id, &mut call);
                        }
                        // Persisted when answered: now is the answer time.
                        self.records.describe(caller_call_id, &mut call, unix_ms());
                    }
                    // Who holds the call, and where its relay is: what a failover moves.
                    call.owner_instance = self.config.instance.clone();
                    call.owner_datacenter = self.config.datacenter.clone();
                    self.fill_media_datacenter(&mut call);
                    let value = Bytes::from(call.encode_to_vec());
                    for id in &call_ids {
                        self.state.put(call_key(id), value.clone());
                    }
                    Ok(())
                }
                Action::Forget { call_ids } => {
                    for id in &call_ids {
                        self.state.delete(call_key(id));
                    }
                    Ok(())
                }
                Action::Ended(record) => {
                    self.hunt
                        .call_finished(&record.call_id, record.answered.is_some(), now());
                    let context = self.records.end(&record.call_id);
                    if let Some(metrics) = &self.metrics {
                        if !context.setup_done {
                            // Ended without a final answer from us (the edge answered a
                            // CANCEL with 487 itself).
                            metrics.setup(record.status);
                        }
                        if context.answered {
                            metrics.ended(match record.cause {
                                Some(crate::b2bua::CAUSE_SESSION_TIMER_EXPIRED) => "session_timer",
                                Some(crate::b2bua::CAUSE_MEDIA_TIMEOUT) => "media_timeout",
                                Some(crate::b2bua::CAUSE_REANCHOR_FAILED) => "reanchor_failed",
                                _ => self.hangup_by.unwrap_or("caller_bye"),
                            });
                        }
                        metrics.set_active(self.records.answered());
                    }
                    let record = crate::records::complete(
                        &record,
                        context,
                        &self.config.instance,
                        unix_ms(),
                    );
                    if let Some(cdr) = &self.cdr {
                        cdr.append(crate::records::json_line(&record));
                    }
                    tracing::info!(
                        call_id = %record.call_id,
                        caller = %record.caller,
                        callee = %record.callee,
                        caller_site = %record.caller_site,
                        callee_site = %record.callee_site,
                        outcome = %record.outcome,
                        status = record.status,
                        cause = %record.cause,
                        "call ended"
                    );
                    self.publish(
                        subjects::CALL_RECORDS,
                        types::CALL_RECORD,
                        record.encode_to_vec(),
                    )
                    .await
                }
            };
            if let Err(e) = outcome {
                tracing::warn!(error = %e, "bus publish failed");
            }
        }
    }

    /// A response to a caller: the set-up metrics (post-dial delay, final status, active calls)
    /// when it answers the call's initial INVITE.
    fn count_setup(&mut self, response: &sip_msg::Response) {
        let Some(metrics) = &self.metrics else {
            return;
        };
        let is_invite = response
            .headers
            .cseq()
            .ok()
            .flatten()
            .is_some_and(|c| c.method == Method::Invite);
        let Some(call_id) = response.headers.call_id().filter(|_| is_invite) else {
            return;
        };
        for progress in self
            .records
            .on_response(call_id, response.status.as_u16(), now())
        {
            match progress {
                crate::records::SetupProgress::Alerted(seconds) => metrics.setup_latency(seconds),
                crate::records::SetupProgress::Final(status) => {
                    metrics.setup(status);
                    metrics.set_active(self.records.answered());
                }
            }
        }
    }

    /// Points an SDP body of an anchored call at the relay (see `anchor`), and releases the
    /// relay session when the call ends.
    async fn anchor_body(&mut self, action: &mut Action) {
        let Some(anchoring) = self.anchoring.as_mut() else {
            return;
        };
        match action {
            Action::Send { request, .. } if !request.body.is_empty() => {
                let call_id = request.headers.call_id().unwrap_or_default().to_owned();
                if let Some(body) = anchoring.rewrite(&call_id, &request.body).await {
                    request
                        .headers
                        .set(sip_msg::HeaderName::ContentLength, body.len().to_string());
                    request.body = body;
                }
            }
            Action::Respond { response, .. } if !response.body.is_empty() => {
                let call_id = response.headers.call_id().unwrap_or_default().to_owned();
                if let Some(body) = anchoring.rewrite(&call_id, &response.body).await {
                    response
                        .headers
                        .set(sip_msg::HeaderName::ContentLength, body.len().to_string());
                    response.body = body;
                }
            }
            Action::Ended(record) => anchoring.release(&record.call_id),
            _ => {}
        }
    }

    /// Asks `flow`'s edge to send `request` (ADR 0011), and keeps it a few seconds in the
    /// journal: if the edge turns out dead before answering, it goes again around it.
    async fn publish_send(
        &mut self,
        call_ref: String,
        request: &Request,
        flow: proto::v1::Flow,
    ) -> Result<(), bus::BusError> {
        let edge = flow.edge_id.clone();
        let message = Bytes::from(request.to_bytes());
        self.journal
            .record(now(), &call_ref, message.clone(), flow.clone());
        let payload = EdgeSend {
            call_ref,
            message: message.to_vec(),
            flow: Some(flow),
            reply_subject: results_subject(&self.config.instance),
        };
        self.publish(
            &subjects::edge_send(&edge),
            types::EDGE_SEND,
            payload.encode_to_vec(),
        )
        .await
    }

    async fn publish(
        &self,
        subject: &str,
        type_name: &str,
        payload: Vec<u8>,
    ) -> Result<(), bus::BusError> {
        let mut headers = BusHeaders::new();
        headers.insert(subjects::TYPE_HEADER, type_name);
        self.bus
            .publish(subject, headers, Bytes::from(payload))
            .await
    }
}
