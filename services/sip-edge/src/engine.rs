//! The one task that owns the transaction layer: it takes what the transports received
//! (after the protection check), runs the layer's timers, sends what the layer asks, and acts
//! as the transaction user: REGISTER to the registrar, OPTIONS answered here, everything else
//! handed to call-control. Work that waits (store writes, bus hand-offs) runs in tasks that
//! send their answer back as a [`Command`], so the layer never waits on I/O.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sip_core::Transmit;
use sip_core::transaction::{Event, Input, Output, TransactionKey, TransactionLayer};
use sip_msg::{
    HeaderName, Method, Request, Response, SipMessage, StatusCode, Transport, build_response,
};
use tokio::sync::mpsc;
use tracing::Instrument as _;

use crate::auth::{AuthOutcome, Authenticator, ChallengeKind, Refusal};
use crate::clock;
use crate::config::EdgeConfig;
use crate::core_routing::CoreRouter;
use crate::location::{LocationService, RegistrationContext};
use crate::metrics::EdgeMetrics;
use crate::overload::{Overload, Transition};
use crate::protection::sync::BanPublisher;
use crate::protection::{Admission, Protection};
use crate::registrar::RegistrationOutcome;
use crate::transport::{InboundReceiver, PROBE_BATCH, Received, TransportEvent, Transports};

/// What tasks and other parts of the edge ask of the engine.
#[derive(Debug)]
pub(crate) enum Command {
    /// The answer to a server transaction, computed by a task (the registrar's update), and
    /// how it counts as a registration.
    Respond {
        key: TransactionKey,
        response: Box<Response>,
        registration: Option<RegistrationOutcome>,
    },
    /// A response from call-control for the transaction it was handed as `handle`.
    CoreResponse { handle: u64, message: Bytes },
    /// Call-control did not take the request handed as `handle`: answer 503.
    CoreUnavailable { handle: u64 },
    /// Send this over a connection we hold (asked by another edge).
    Deliver(Transmit),
    /// Send a request for call-control through one of our flows (ADR 0011), in the span
    /// continuing call-control's trace.
    Send {
        send: Box<proto::v1::EdgeSend>,
        span: tracing::Span,
    },
    /// SIGTERM: stop taking new transactions, finish those in flight, then stop.
    Drain,
}

/// Methods the edge and call-control handle, for Allow in answers to OPTIONS.
const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO, UPDATE, PRACK, REFER, NOTIFY, SUBSCRIBE, MESSAGE";

/// Seconds a client is told to wait (Retry-After) when the edge drains or call-control is away.
const RETRY_AFTER_SECS: u32 = 5;

/// Events handled per wake-up before outputs are flushed and timers checked.
const EVENT_BATCH: usize = 64;

/// With metrics on, the engine wakes at least this often, so its gauges never lag more.
const GAUGE_INTERVAL: Duration = Duration::from_secs(1);

pub(crate) struct Engine {
    config: Arc<EdgeConfig>,
    layer: TransactionLayer,
    transports: Transports,
    auth: Authenticator,
    protection: Arc<Mutex<Protection>>,
    location: LocationService,
    core: CoreRouter,
    commands: mpsc::Receiver<Command>,
    command_tx: mpsc::Sender<Command>,
    events: InboundReceiver,
    /// Locally decided bans, to the ban-sharing task.
    bans: BanPublisher,
    metrics: EdgeMetrics,
    /// Server transactions not yet finally answered (what a drain waits for).
    unanswered: HashSet<TransactionKey>,
    /// The To tag of the provisional responses sent on a server transaction (call-control's
    /// 180/183): a 487 after a CANCEL must carry the same one (RFC 3261 §8.2.6.2, §9.2), or
    /// the caller sees a final answer from a dialog it never heard of.
    early_tags: HashMap<TransactionKey, String>,
    /// When the transaction and binding gauges are next refreshed.
    gauges_due: Option<Instant>,
    /// Requests handed to call-control, by handle (kept to answer them if call-control
    /// cannot: 503, or 487 after a CANCEL).
    core_pending: HashMap<u64, (TransactionKey, Request)>,
    core_handles: HashMap<TransactionKey, u64>,
    /// Client transactions run for call-control, and the INVITEs among them by call_ref (for
    /// CANCEL).
    outgoing: HashMap<TransactionKey, Outgoing>,
    outgoing_invites: HashMap<String, TransactionKey>,
    /// Results for call-control, to the task that publishes them in order.
    results: mpsc::UnboundedSender<SendResult>,
    /// The next hand-off's transaction handle. Call-control drops a hand-off it already had
    /// (by edge and handle, ADR 0020), and an edge keeps its name across restarts: numbering
    /// from 1 at every start made a restarted edge's requests look like copies of its previous
    /// run's to a replica that outlived it, acknowledged and dropped (INVITEs that rang
    /// forever after a datacenter came back, found by the registration storm scenario). Each
    /// start begins at a random point of a 2^62 range instead.
    next_handle: u64,
    draining: Option<Instant>,
    /// When the last unanswered transaction was answered during a drain.
    quiet_since: Option<Instant>,
    /// Whether the engine is behind: then new registration exchanges are refused.
    overload: Overload,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("edge_id", &self.config.edge_id)
            .field("transactions", &self.layer.transaction_count())
            .field("unanswered", &self.unanswered.len())
            .finish()
    }
}

/// What the engine needs, built by the service.
pub(crate) struct EngineParts {
    pub config: Arc<EdgeConfig>,
    pub transports: Transports,
    pub auth: Authenticator,
    pub protection: Arc<Mutex<Protection>>,
    pub location: LocationService,
    pub core: CoreRouter,
    pub commands: mpsc::Receiver<Command>,
    pub command_tx: mpsc::Sender<Command>,
    pub events: InboundReceiver,
    pub bans: BanPublisher,
    pub metrics: EdgeMetrics,
}

impl Engine {
    pub(crate) fn new(parts: EngineParts) -> Engine {
        let mut tx_config = parts.config.transactions.clone();
        tx_config.id_seed = rand::random();
        let results = spawn_result_publisher(parts.core.clone());
        let overload = parts.config.overload;
        Engine {
            layer: TransactionLayer::new(tx_config, clock::monotonic()),
            config: parts.config,
            transports: parts.transports,
            auth: parts.auth,
            protection: parts.protection,
            location: parts.location,
            core: parts.core,
            commands: parts.commands,
            command_tx: parts.command_tx,
            events: parts.events,
            bans: parts.bans,
            metrics: parts.metrics,
            unanswered: HashSet::new(),
            early_tags: HashMap::new(),
            gauges_due: None,
            core_pending: HashMap::new(),
            core_handles: HashMap::new(),
            outgoing: HashMap::new(),
            outgoing_invites: HashMap::new(),
            results,
            next_handle: (rand::random::<u64>() >> 2) + 1,
            draining: None,
            quiet_since: None,
            overload: Overload::new(overload),
        }
    }

    /// Runs until drained (or until every transport and command sender is gone).
    pub(crate) async fn run(mut self) {
        loop {
            // OPTIONS first, a few (`transport::inbound`): a probe waits for one batch at most.
            // Before the flush, so their answers go out now and their timers count in `wake`
            // (taken after it, an answer waited for the next event: an idle edge left a probe
            // unanswered).
            for _ in 0..PROBE_BATCH {
                match self.events.probes.try_recv() {
                    Ok(event) => self.on_transport_event(event),
                    Err(_) => break,
                }
            }
            let mut wake = self.flush();
            if self.metrics.is_enabled() {
                // At most once per interval: the engine wakes per datagram under load, and
                // the gauges need seconds, not microseconds.
                let now = clock::monotonic();
                if self.gauges_due.is_none_or(|due| now >= due) {
                    self.update_gauges();
                    self.gauges_due = Some(now + GAUGE_INTERVAL);
                }
                wake = wake.min(self.gauges_due.unwrap_or(now));
            }
            if self.drained() {
                tracing::info!(edge = %self.config.edge_id, "drained; stopping");
                return;
            }
            let wake = match (self.draining, self.quiet_since) {
                (Some(_), Some(q)) => wake.min(q + self.config.drain_linger),
                (Some(d), None) => wake.min(d + self.config.drain_timeout),
                _ => wake,
            };
            tokio::select! {
                biased;
                command = self.commands.recv() => match command {
                    Some(c) => self.on_command(c),
                    None => return,
                },
                event = self.events.probes.recv() => {
                    let Some(event) = event else { return };
                    self.on_transport_event(event);
                }
                event = self.events.common.recv() => {
                    let Some(event) = event else { return };
                    self.on_common_event(event);
                    for _ in 1..EVENT_BATCH {
                        match self.events.common.try_recv() {
                            Ok(event) => self.on_common_event(event),
                            Err(_) => break,
                        }
                    }
                }
                _ = tokio::time::sleep_until(wake.into()) => {
                    self.layer.handle_timeout(clock::monotonic());
                }
            }
        }
    }

    fn drained(&mut self) -> bool {
        let Some(started) = self.draining else {
            return false;
        };
        let now = clock::monotonic();
        if now >= started + self.config.drain_timeout {
            tracing::warn!(
                unanswered = self.unanswered.len(),
                "drain timeout reached with transactions in flight"
            );
            return true;
        }
        if self.unanswered.is_empty() {
            let quiet = *self.quiet_since.get_or_insert(now);
            return now >= quiet + self.config.drain_linger;
        }
        self.quiet_since = None;
        false
    }

    /// Transactions in flight and bindings held, for the gauges. Every client transaction of
    /// the edge is one run for call-control (`outgoing`).
    fn update_gauges(&self) {
        let client = self.outgoing.len();
        let server = self.layer.transaction_count().saturating_sub(client);
        self.metrics.transactions(server, client);
        self.metrics.bindings(self.location.len());
    }

    /// Sends everything the layer queued and handles its events; returns when to wake up.
    fn flush(&mut self) -> Instant {
        let wake = loop {
            match self.layer.poll_output() {
                Output::Transmit(t) => self.transports.send(t),
                Output::Event(e) => self.on_layer_event(e),
                Output::Timeout(t) => break t,
            }
        };
        // What the layer answered by itself (100 Trying, 481 to a stray CANCEL, 503 with a
        // full table, 400 to garbage) is sent above: counted with what the TU sends.
        for own in self.layer.take_own_responses() {
            self.metrics.response(own.method.as_ref(), own.status);
        }
        wake
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Respond {
                key,
                response,
                registration,
            } => {
                let sent = self.respond(&key, *response);
                if sent && let Some(outcome) = registration {
                    self.metrics.registration(outcome);
                }
            }
            Command::CoreResponse { handle, message } => self.on_core_response(handle, &message),
            Command::CoreUnavailable { handle } => {
                if let Some((key, request)) = self.forget_core(handle) {
                    self.respond_status(&key, &request, StatusCode::SERVICE_UNAVAILABLE, true);
                }
            }
            Command::Deliver(transmit) => {
                if self
                    .transports
                    .has_connection(&transmit.transport, transmit.destination)
                {
                    self.transports.send(transmit);
                } else {
                    tracing::debug!(destination = %transmit.destination, "flow to deliver on is gone");
                }
            }
            Command::Send { send, span } => {
                let entered = span.clone().entered();
                self.on_send(*send, span);
                drop(entered);
            }
            Command::Drain => {
                if self.draining.is_none() {
                    tracing::info!(
                        unanswered = self.unanswered.len(),
                        "draining: refusing new transactions, finishing those in flight"
                    );
                    self.draining = Some(clock::monotonic());
                    self.transports.stop_accepting();
                }
            }
        }
    }

    fn on_transport_event(&mut self, event: TransportEvent) {
        match event {
            TransportEvent::Received(received) => self.on_received(received),
            TransportEvent::SendFailed {
                transport,
                destination,
            } => self.layer.handle_input(
                clock::monotonic(),
                Input::TransportError {
                    transport,
                    destination,
                    key: None,
                },
            ),
        }
    }

    /// An event from the common queue: its wait says whether the engine is behind (those
    /// from the OPTIONS lane skip the queue, so their wait says nothing).
    fn on_common_event(&mut self, event: TransportEvent) {
        if let TransportEvent::Received(received) = &event {
            self.note_wait(received.received_at);
        }
        self.on_transport_event(event);
    }

    fn on_received(&mut self, received: Received) {
        let admission = {
            let mut protection = self
                .protection
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let admission =
                protection.admit(clock::unix_ms(), received.source.ip(), &received.data);
            publish_bans(&self.bans, &self.metrics, &mut protection);
            admission
        };
        if let Admission::Drop(reason) = admission {
            tracing::trace!(source = %received.source, ?reason, "dropped by protection");
            self.metrics.dropped(reason);
            return;
        }
        self.layer.handle_input(
            clock::monotonic(),
            Input::Datagram {
                transport: received.transport,
                source: received.source,
                data: received.data,
            },
        );
    }

    /// How long the datagram just taken waited, and how many wait behind it: whether the
    /// engine is behind (`overload`).
    fn note_wait(&mut self, received_at: Instant) {
        let now = clock::monotonic();
        let waited = now.saturating_duration_since(received_at);
        match self.overload.observe(now, waited, self.events.common.len()) {
            Some(Transition::Started { waited, backlog }) => tracing::warn!(
                edge = %self.config.edge_id,
                waited_ms = waited.as_millis(),
                backlog,
                "behind: refusing new registrations (503) until caught up"
            ),
            Some(Transition::Stopped { shed }) => tracing::info!(
                edge = %self.config.edge_id,
                shed,
                "caught up: taking new registrations again"
            ),
            None => {}
        }
    }

    fn on_layer_event(&mut self, event: Event) {
        match event {
            Event::Request {
                key,
                request,
                source,
                transport,
            } => self.on_request(key, *request, source, transport),
            Event::Ack {
                request,
                source,
                transport,
            } => {
                self.metrics.request(&request.method, &transport);
                let edge_request =
                    self.edge_request(String::new(), &request, source, &transport, "");
                let core = self.core.clone();
                let span = handoff_span(&request);
                tokio::spawn(
                    async move {
                        let _ = core.notify(edge_request).await;
                    }
                    .instrument(span),
                );
            }
            Event::Cancel {
                invite_key,
                request,
                ..
            } => {
                // The layer answered the CANCEL; the INVITE ends with 487 (§9.2). Call-control
                // hears of it so it can stop ringing the callee. The layer does not say how the
                // CANCEL came: its top Via does.
                if self.metrics.is_enabled() {
                    let transport = request
                        .headers
                        .top_via()
                        .ok()
                        .flatten()
                        .map(|v| v.transport);
                    let transport = transport.unwrap_or(Transport::Udp);
                    self.metrics.request(&request.method, &transport);
                    self.metrics
                        .response(Some(&request.method), StatusCode::OK.as_u16());
                }
                if let Some(handle) = self.core_handles.get(&invite_key).copied()
                    && let Some((key, invite)) = self.forget_core(handle)
                {
                    // In the early dialog the caller knows (the 180's tag), if there was one.
                    let tag = self
                        .early_tags
                        .get(&key)
                        .cloned()
                        .unwrap_or_else(crate::tags::new_tag);
                    let terminated =
                        build_response(&invite, StatusCode::REQUEST_TERMINATED, Some(&tag));
                    self.respond(&key, terminated);
                    let source = self
                        .transports
                        .local_addr(&Transport::Udp)
                        .unwrap_or_else(unspecified);
                    let edge_request = self.edge_request(
                        handle.to_string(),
                        &request,
                        source,
                        &Transport::Udp,
                        "",
                    );
                    let core = self.core.clone();
                    let span = handoff_span(&request);
                    tokio::spawn(
                        async move {
                            let _ = core.notify(edge_request).await;
                        }
                        .instrument(span),
                    );
                }
            }
            Event::Terminated { key } => {
                self.unanswered.remove(&key);
                self.early_tags.remove(&key);
                if let Some(outgoing) = self.outgoing.remove(&key) {
                    self.outgoing_invites.remove(&outgoing.call_ref);
                }
                if let Some(handle) = self.core_handles.get(&key).copied() {
                    self.forget_core(handle);
                }
            }
            Event::Response { key, response, .. } => self.on_outgoing_response(&key, *response),
            Event::Timeout { key } => {
                self.outgoing_failed(&key, StatusCode::REQUEST_TIMEOUT, "Request Timeout");
            }
            Event::TransportError { key } => {
                self.outgoing_failed(&key, StatusCode::SERVICE_UNAVAILABLE, "Flow Failed");
            }
            Event::StrayResponse {
                response, source, ..
            } => {
                tracing::debug!(%source, status = response.status.as_u16(), "response matching no transaction dropped");
            }
        }
    }

    fn on_request(
        &mut self,
        key: TransactionKey,
        request: Request,
        source: SocketAddr,
        transport: Transport,
    ) {
        self.metrics.request(&request.method, &transport);
        self.unanswered.insert(key);
        if self.draining.is_some() {
            // A draining edge refuses new work so phones and the load balancer move on.
            let sent = self.respond_status(&key, &request, StatusCode::SERVICE_UNAVAILABLE, true);
            if sent && request.method == Method::Register {
                self.metrics.registration(RegistrationOutcome::Draining);
            }
            return;
        }
        match request.method {
            Method::Register if self.overload.shedding() && !has_credentials(&request) => {
                // Behind: a new exchange would wait behind the backlog and add to it. Those
                // under way (credentials given) go on.
                let retry_after = self.overload.shed(rand::random::<f64>());
                let mut response = build_response(
                    &request,
                    StatusCode::SERVICE_UNAVAILABLE,
                    Some(&crate::tags::new_tag()),
                );
                response
                    .headers
                    .push(HeaderName::RetryAfter, retry_after.to_string());
                self.respond_register(&key, response, RegistrationOutcome::Overloaded);
            }
            Method::Register => self.on_register(key, request, source, transport),
            Method::Options if is_for_the_edge(&request) => {
                let mut response =
                    build_response(&request, StatusCode::OK, Some(&crate::tags::new_tag()));
                response.headers.push(HeaderName::Allow, ALLOW);
                response.headers.push(HeaderName::Accept, "application/sdp");
                response.headers.push(HeaderName::Supported, "path");
                self.respond(&key, response);
            }
            _ => self.hand_to_core(key, request, source, transport),
        }
    }

    fn on_register(
        &mut self,
        key: TransactionKey,
        request: Request,
        source: SocketAddr,
        transport: Transport,
    ) {
        let now_unix = clock::unix_secs();
        let device = match self.authenticate(&request, ChallengeKind::Registrar, source) {
            AuthOutcome::Reply(response) => {
                // A challenge: the exchange goes on, nothing final to count.
                self.respond(&key, *response);
                return;
            }
            AuthOutcome::Refused(response, refusal) => {
                let outcome = match refusal {
                    Refusal::WrongCredentials => RegistrationOutcome::WrongCredentials,
                    Refusal::Malformed => RegistrationOutcome::BadRequest,
                };
                self.respond_register(&key, *response, outcome);
                return;
            }
            AuthOutcome::Authenticated(device) => device,
        };
        if let Err(response) = self.may_register(&request, &device) {
            self.respond_register(&key, *response, RegistrationOutcome::Forbidden);
            return;
        }
        let user_agent = request
            .headers
            .user_agent()
            .ok()
            .flatten()
            .unwrap_or_default()
            .to_owned();
        let context = RegistrationContext {
            flow: self.flow(source, &transport),
            device_id: device.id.as_str().to_owned(),
            user_agent,
        };
        let location = self.location.clone();
        let policy = self.config.registrar;
        let domain = self.config.domain.clone();
        let commands = self.command_tx.clone();
        tokio::spawn(async move {
            let (response, outcome) = crate::registrar::register(
                location, request, domain, source, context, policy, now_unix,
            )
            .await;
            let _ = commands
                .send(Command::Respond {
                    key,
                    response: Box::new(response),
                    registration: Some(outcome),
                })
                .await;
        });
    }

    /// Digest authentication with the protection's failure accounting; bans it decides go to
    /// the other replicas at once.
    fn authenticate(
        &mut self,
        request: &Request,
        kind: ChallengeKind,
        source: SocketAddr,
    ) -> AuthOutcome {
        // A poisoned lock only means a panic elsewhere mid-update; the counters stay usable.
        let mut protection = self
            .protection
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let outcome = self.auth.authenticate(
            request,
            kind,
            source.ip(),
            clock::unix_secs(),
            clock::unix_ms(),
            &mut protection,
        );
        publish_bans(&self.bans, &self.metrics, &mut protection);
        outcome
    }

    /// Checks the authenticated device may register the To AOR (§10.3 step 4): its own
    /// username, or an extension it rings for.
    fn may_register(
        &self,
        request: &Request,
        device: &directory::model::Device,
    ) -> Result<(), Box<Response>> {
        let Some(to) = request.headers.to_header().ok().flatten() else {
            // The registrar core answers the 400.
            return Ok(());
        };
        if !to.uri.is_sip_or_sips() {
            return Ok(());
        }
        let user = to.uri.user.as_deref().unwrap_or_default();
        let allowed = user == device.sip_username.as_str()
            || self
                .auth
                .directory()
                .extension(user)
                .is_some_and(|e| e.device_ids.iter().any(|d| d == &device.id));
        if allowed {
            Ok(())
        } else {
            Err(Box::new(build_response(
                request,
                StatusCode::FORBIDDEN,
                Some(&crate::tags::new_tag()),
            )))
        }
    }

    fn hand_to_core(
        &mut self,
        key: TransactionKey,
        request: Request,
        source: SocketAddr,
        transport: Transport,
    ) {
        let in_dialog = request
            .headers
            .to_header()
            .ok()
            .flatten()
            .is_some_and(|to| to.params.get("tag").is_some());
        let mut device_id = String::new();
        if !in_dialog && !self.is_trusted(source.ip()) {
            match self.authenticate(&request, ChallengeKind::Proxy, source) {
                AuthOutcome::Reply(response) | AuthOutcome::Refused(response, _) => {
                    self.respond(&key, *response);
                    return;
                }
                AuthOutcome::Authenticated(device) => device_id = device.id.as_str().to_owned(),
            }
        }
        let handle = self.next_handle;
        self.next_handle += 1;
        let edge_request =
            self.edge_request(handle.to_string(), &request, source, &transport, &device_id);
        let span = handoff_span(&request);
        self.core_pending.insert(handle, (key, request));
        self.core_handles.insert(key, handle);
        let core = self.core.clone();
        let commands = self.command_tx.clone();
        tokio::spawn(
            async move {
                if let Err(e) = core.hand_off(edge_request).await {
                    tracing::debug!(error = %e, "call-control did not take the request");
                    let _ = commands.send(Command::CoreUnavailable { handle }).await;
                }
            }
            .instrument(span),
        );
    }

    fn on_core_response(&mut self, handle: u64, message: &[u8]) {
        let Some(key) = self.core_pending.get(&handle).map(|(key, _)| *key) else {
            return;
        };
        let response = match sip_msg::parse_datagram(message) {
            Ok(SipMessage::Response(r)) => r,
            _ => {
                tracing::warn!(
                    handle,
                    "call-control sent something that is not a SIP response"
                );
                return;
            }
        };
        if response.status.as_u16() >= 200 {
            self.forget_core(handle);
        }
        self.respond(&key, response);
    }

    /// Sends a response on a server transaction; false when the transaction is gone.
    fn respond(&mut self, key: &TransactionKey, response: Response) -> bool {
        let status = response.status.as_u16();
        if (101..200).contains(&status)
            && let Some(tag) = to_tag(&response)
        {
            self.early_tags.insert(*key, tag);
        }
        // The layer takes the response: read what the counter needs first.
        let method = if self.metrics.is_enabled() {
            response
                .headers
                .cseq()
                .ok()
                .flatten()
                .map(|cseq| cseq.method)
        } else {
            None
        };
        let sent = match self.layer.send_response(clock::monotonic(), key, response) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(error = %e, "response not sent: transaction gone");
                false
            }
        };
        if sent {
            self.metrics.response(method.as_ref(), status);
        }
        if status >= 200 {
            self.early_tags.remove(key);
            self.unanswered.remove(key);
        }
        sent
    }

    /// Sends the final answer to a REGISTER and counts it as `outcome`.
    fn respond_register(
        &mut self,
        key: &TransactionKey,
        response: Response,
        outcome: RegistrationOutcome,
    ) {
        if self.respond(key, response) {
            self.metrics.registration(outcome);
        }
    }

    /// Sends a request for call-control: our Via on top, a client transaction, results to
    /// its reply subject. CANCEL cancels the INVITE of the same call_ref; ACK goes without a
    /// transaction.
    fn on_send(&mut self, send: proto::v1::EdgeSend, span: tracing::Span) {
        let proto::v1::EdgeSend {
            call_ref,
            message,
            flow,
            reply_subject,
        } = send;
        let Some((transport, destination)) = flow.as_ref().and_then(flow_target) else {
            tracing::warn!(%call_ref, "EdgeSend without a usable flow dropped");
            return;
        };
        let Some(local) = self
            .transports
            .connection_local(&transport, destination)
            .or_else(|| self.transports.local_addr(&transport))
        else {
            tracing::warn!(%call_ref, %destination, "no local address for the flow's transport");
            return;
        };
        // Call-control's request carries its own Via (a placeholder naming call-control, so
        // that responses stay well-formed once ours is removed); ours goes on top.
        let mut request = match sip_msg::parse_datagram(&message) {
            Ok(SipMessage::Request(request)) => request,
            Ok(SipMessage::Response(_)) | Err(_) => {
                tracing::warn!(%call_ref, "call-control sent something that is not a request");
                return;
            }
        };
        span.record("method", request.method.as_str());
        let branch = self.layer.new_branch();
        let host = match local.ip() {
            std::net::IpAddr::V4(ip) => sip_msg::Host::Ipv4(ip),
            std::net::IpAddr::V6(ip) => sip_msg::Host::Ipv6(ip),
        };
        let mut via = sip_msg::Via::new(transport.clone(), host, Some(local.port()), &branch);
        via.params.set("rport", None);
        request.headers.push_front(HeaderName::Via, via.to_string());
        let fail = |this: &mut Self, request: &Request, status, reason: &str| {
            let mut response = build_response(request, status, None);
            response.reason = reason.to_owned();
            response.headers.remove_top_via();
            this.publish_result(&call_ref, &reply_subject, &response, &span);
        };
        if request.method == Method::Cancel {
            let cancelled = self
                .outgoing_invites
                .get(&call_ref)
                .copied()
                .map(|invite| self.layer.cancel(clock::monotonic(), &invite));
            if !matches!(cancelled, Some(Ok(_))) {
                tracing::debug!(%call_ref, "nothing to cancel (no INVITE pending or no provisional yet)");
            }
            return;
        }
        if request.method == Method::Ack {
            self.layer.send_stateless(Transmit {
                transport,
                destination,
                contents: request.to_bytes().into(),
            });
            return;
        }
        let is_invite = request.method == Method::Invite;
        match self
            .layer
            .send_request(clock::monotonic(), request.clone(), destination, transport)
        {
            Ok(key) => {
                if is_invite {
                    self.outgoing_invites.insert(call_ref.clone(), key);
                }
                self.outgoing.insert(
                    key,
                    Outgoing {
                        call_ref,
                        reply_subject,
                        request,
                        span,
                    },
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not start a client transaction");
                fail(
                    self,
                    &request,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Edge Overloaded",
                );
            }
        }
    }

    fn on_outgoing_response(&mut self, key: &TransactionKey, mut response: Response) {
        let Some(outgoing) = self.outgoing.get(key) else {
            return;
        };
        // Our Via is ours alone: call-control's copy of the request never had it.
        response.headers.remove_top_via();
        self.publish_result(
            &outgoing.call_ref,
            &outgoing.reply_subject,
            &response,
            &outgoing.span,
        );
    }

    /// Tells call-control its request failed at the edge (Timer B/F, transport error).
    fn outgoing_failed(&mut self, key: &TransactionKey, status: StatusCode, reason: &str) {
        let Some(outgoing) = self.outgoing.get(key) else {
            return;
        };
        let mut response = build_response(&outgoing.request, status, None);
        response.reason = reason.to_owned();
        response.headers.remove_top_via();
        self.publish_result(
            &outgoing.call_ref,
            &outgoing.reply_subject,
            &response,
            &outgoing.span,
        );
    }

    /// Queues a result for call-control. One task publishes them in order: a 180 must not
    /// overtake the 200 that follows it.
    /// `span` is the send's: the result goes back in call-control's trace.
    fn publish_result(
        &self,
        call_ref: &str,
        subject: &str,
        response: &Response,
        span: &tracing::Span,
    ) {
        let result = proto::v1::EdgeSendResult {
            call_ref: call_ref.to_owned(),
            message: response.to_bytes(),
        };
        if self
            .results
            .send((subject.to_owned(), result, span.clone()))
            .is_err()
        {
            tracing::warn!("result publisher stopped; result for call-control dropped");
        }
    }

    fn forget_core(&mut self, handle: u64) -> Option<(TransactionKey, Request)> {
        let (key, request) = self.core_pending.remove(&handle)?;
        self.core_handles.remove(&key);
        Some((key, request))
    }

    /// Answers `request` with a bare status (and Retry-After when asked); false when the
    /// transaction is gone.
    fn respond_status(
        &mut self,
        key: &TransactionKey,
        request: &Request,
        status: StatusCode,
        retry_after: bool,
    ) -> bool {
        let mut response = build_response(request, status, Some(&crate::tags::new_tag()));
        if retry_after {
            response
                .headers
                .push(HeaderName::RetryAfter, RETRY_AFTER_SECS.to_string());
        }
        self.respond(key, response)
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.config
            .protection
            .trusted_networks
            .iter()
            .any(|net| net.contains(&ip))
    }

    fn flow(&self, source: SocketAddr, transport: &Transport) -> proto::v1::Flow {
        let local = match transport {
            Transport::Tcp | Transport::Tls => self.transports.connection_local(transport, source),
            _ => None,
        }
        .or_else(|| self.transports.local_addr(transport))
        .map(|a| a.to_string())
        .unwrap_or_default();
        proto::v1::Flow {
            transport: proto_transport(transport) as i32,
            remote: source.to_string(),
            local,
            edge_id: self.config.edge_id.clone(),
            datacenter: self.config.datacenter.clone(),
        }
    }

    fn edge_request(
        &self,
        transaction: String,
        request: &Request,
        source: SocketAddr,
        transport: &Transport,
        device_id: &str,
    ) -> proto::v1::EdgeRequest {
        proto::v1::EdgeRequest {
            edge_id: self.config.edge_id.clone(),
            transaction,
            message: request.to_bytes(),
            flow: Some(self.flow(source, transport)),
            device_id: device_id.to_owned(),
        }
    }
}

/// A result for call-control: its reply subject, the result, the span of its send.
type SendResult = (String, proto::v1::EdgeSendResult, tracing::Span);

/// The task that publishes results for call-control, in the order the engine produced them.
fn spawn_result_publisher(core: CoreRouter) -> mpsc::UnboundedSender<SendResult> {
    let (sender, mut receiver) = mpsc::unbounded_channel::<SendResult>();
    tokio::spawn(async move {
        while let Some((subject, result, span)) = receiver.recv().await {
            let published = core.send_result(&subject, result).instrument(span).await;
            if let Err(e) = published {
                tracing::debug!(error = %e, "result for call-control not published");
            }
        }
    });
    sender
}

/// The span of a request handed to call-control: the bus carries its context there
/// (`telemetry::InstrumentedBus`), so call-control's spans for the request are its children.
/// Only for the calls `telemetry::sampling` traces: a call not traced creates no span here, and
/// the bus tells call-control so.
fn handoff_span(request: &Request) -> tracing::Span {
    let call_id = request.headers.call_id().unwrap_or_default();
    if !telemetry::sampling::trace_call(call_id) {
        return tracing::Span::none();
    }
    tracing::info_span!(
        "edge.handoff",
        method = request.method.as_str(),
        call_id = call_id,
    )
}

/// Queues the bans `protection` decided for the other replicas, and counts them. The engine
/// calls it with the lock it holds right after `admit` or an authentication, the only calls
/// that ban, so every ban this replica decides is counted here.
fn publish_bans(bans: &BanPublisher, metrics: &EdgeMetrics, protection: &mut Protection) {
    while let Some(ban) = protection.poll_new_ban() {
        metrics.banned(&ban.reason);
        bans.publish(ban);
    }
}

/// A client transaction run for call-control.
#[derive(Debug)]
struct Outgoing {
    call_ref: String,
    reply_subject: String,
    request: Request,
    /// `edge.send`, open until the transaction ends.
    span: tracing::Span,
}

/// Transport and address a flow designates.
fn flow_target(flow: &proto::v1::Flow) -> Option<(Transport, SocketAddr)> {
    let destination = flow.remote.parse().ok()?;
    let transport = match proto::v1::SipTransport::try_from(flow.transport).ok()? {
        proto::v1::SipTransport::Tcp => Transport::Tcp,
        proto::v1::SipTransport::Tls => Transport::Tls,
        proto::v1::SipTransport::Udp => Transport::Udp,
        proto::v1::SipTransport::Unspecified => return None,
    };
    Some((transport, destination))
}

fn unspecified() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 0))
}

/// An OPTIONS for the edge itself (keep-alive, load-balancer health): no user in the
/// Request-URI and not inside a dialog.
/// The To tag of a response, if it has one.
fn to_tag(response: &Response) -> Option<String> {
    response
        .headers
        .to_header()
        .ok()
        .flatten()
        .and_then(|to| to.params.get("tag").flatten().map(str::to_owned))
}

/// Whether a request carries credentials (an exchange under way, not a new one).
fn has_credentials(request: &Request) -> bool {
    request.headers.get(&HeaderName::Authorization).is_some()
        || request
            .headers
            .get(&HeaderName::ProxyAuthorization)
            .is_some()
}

fn is_for_the_edge(request: &Request) -> bool {
    let in_dialog = request
        .headers
        .to_header()
        .ok()
        .flatten()
        .is_some_and(|to| to.params.get("tag").is_some());
    request.uri.user.as_deref().is_none_or(str::is_empty) && !in_dialog
}

pub(crate) fn proto_transport(transport: &Transport) -> proto::v1::SipTransport {
    match transport {
        Transport::Udp => proto::v1::SipTransport::Udp,
        Transport::Tcp => proto::v1::SipTransport::Tcp,
        Transport::Tls => proto::v1::SipTransport::Tls,
        _ => proto::v1::SipTransport::Unspecified,
    }
}
