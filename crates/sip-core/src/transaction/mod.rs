//! The RFC 3261 §17 transaction layer with the RFC 6026 corrections, sans-IO.
//!
//! [`TransactionLayer`] owns every client and server transaction of one SIP endpoint: it
//! parses what the transport received ([`Input`]), matches it to a transaction (§17.1.3,
//! §17.2.3 and the RFC 2543 fallback), runs the four state machines with their timers on the
//! time it is given, and queues what to send and what to tell the transaction user
//! ([`Output`], [`Event`]). It also plays the receiving transport's part of §18: `received`
//! and `rport` on requests, response routing, answers to unparseable requests.
//!
//! ```text
//! handle_input(now, Datagram | Message | TransportError | Timeout) ─┐
//! send_request / send_response / cancel / send_stateless (TU)  ─────┼─▶ poll_output():
//!                                                                   └─  Transmit | Event | Timeout(t)
//! ```
//!
//! Files: `key` (identity and matching), `client_invite`, `client_non_invite`,
//! `server_invite`, `server_non_invite` (the state machines), `timer_queue`, `routing`
//! (§18.2), `messages` (ACK, CANCEL, Via, 100 Trying), `io` (inputs, outputs, events),
//! `context` (what a state machine may do), `error`.

mod client_invite;
mod client_non_invite;
mod context;
mod error;
mod io;
mod key;
mod messages;
mod own_responses;
mod routing;
mod server_invite;
mod server_non_invite;
mod timer_queue;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sip_msg::{
    HeaderName, Method, Request, Response, SipMessage, StatusCode, Transport, Verdict, Via,
};

pub use error::TransactionError;
pub use io::{Event, Input, Output, TransactionState};
pub use key::{Role, TransactionKey};
pub use messages::{build_cancel, push_via};
pub use own_responses::OwnResponse;

use client_invite::ClientInvite;
use client_non_invite::ClientNonInvite;
use context::{Ctx, Step};
use key::{MatchKey, MethodClass};
use server_invite::{AckOutcome, ServerInvite};
use server_non_invite::ServerNonInvite;
use timer_queue::{Deadlines, TimerQueue, TimerSlot};

use crate::{IdGenerator, TimerConfig, Transmit};

/// How long `poll_output` tells an idle layer to sleep.
const IDLE_WAKEUP: Duration = Duration::from_secs(3600);

/// Settings of a [`TransactionLayer`].
#[derive(Debug, Clone)]
pub struct TransactionConfig {
    /// T1, T2, T4 and Timer D.
    pub timers: TimerConfig,
    /// How long an INVITE server transaction waits for the TU's first response before it
    /// sends 100 Trying itself (§17.2.1: 200 ms). Zero sends it on arrival.
    pub trying_delay: Duration,
    /// Live transactions beyond which new requests are answered 503 statelessly and
    /// `send_request` fails: bounds memory under a flood.
    pub max_transactions: usize,
    /// Seed of the To tags the layer puts on its own responses (CANCEL, 481, 503).
    pub id_seed: u64,
}

impl Default for TransactionConfig {
    fn default() -> TransactionConfig {
        TransactionConfig {
            timers: TimerConfig::default(),
            trying_delay: Duration::from_millis(200),
            max_transactions: 500_000,
            id_seed: 0x5eed,
        }
    }
}

/// Counters of what the layer dropped or answered on its own, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransactionStats {
    /// Datagrams that did not parse and were dropped (responses, hopeless requests).
    pub unparseable_dropped: u64,
    /// Unparseable requests answered per their verdict (400, 505, 513).
    pub unparseable_answered: u64,
    /// Parsed messages without what matching needs (top Via, CSeq …), dropped.
    pub unmatchable_dropped: u64,
    /// Requests whose branch matched a transaction of another method (§17.2.3), dropped.
    pub method_mismatch_dropped: u64,
    /// Requests refused with 503 because the table was full.
    pub overload_rejected: u64,
    /// Responses the layer sent on its own while the TU left 4,096 of them untaken
    /// ([`TransactionLayer::take_own_responses`]).
    pub own_responses_unreported: u64,
}

/// The four machines of §17 (the names are the RFC's).
#[allow(clippy::enum_variant_names)]
#[derive(Debug)]
enum Machine {
    ClientInvite(ClientInvite),
    ClientNonInvite(ClientNonInvite),
    ServerInvite(ServerInvite),
    ServerNonInvite(ServerNonInvite),
}

#[derive(Debug)]
struct Transaction {
    transport: Transport,
    /// Where its messages go: the request's destination (client), the response route
    /// (server, §18.2.2).
    destination: SocketAddr,
    match_key: MatchKey,
    deadlines: Deadlines,
    machine: Machine,
}

#[derive(Debug, Default)]
struct Slot {
    generation: u32,
    tx: Option<Transaction>,
}

/// The transaction layer of one SIP endpoint. See the module documentation.
#[derive(Debug)]
pub struct TransactionLayer {
    config: TransactionConfig,
    now: Instant,
    slots: Vec<Slot>,
    free: Vec<u32>,
    live: usize,
    index: HashMap<MatchKey, TransactionKey>,
    timers: TimerQueue,
    out: VecDeque<Output>,
    ids: IdGenerator,
    stats: TransactionStats,
    own: own_responses::OwnResponses,
}

impl TransactionLayer {
    /// A layer whose clock starts at `start` (like str0m's `RtcConfig::build(start)`: the
    /// first `Timeout` it reports needs a point of reference).
    pub fn new(config: TransactionConfig, start: Instant) -> TransactionLayer {
        TransactionLayer {
            ids: IdGenerator::new(config.id_seed),
            config,
            now: start,
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            index: HashMap::new(),
            timers: TimerQueue::default(),
            out: VecDeque::new(),
            stats: TransactionStats::default(),
            own: own_responses::OwnResponses::default(),
        }
    }

    pub fn config(&self) -> &TransactionConfig {
        &self.config
    }

    /// Live transactions, client and server.
    pub fn transaction_count(&self) -> usize {
        self.live
    }

    pub fn stats(&self) -> TransactionStats {
        TransactionStats {
            own_responses_unreported: self.own.unreported,
            ..self.stats.clone()
        }
    }

    /// The responses the layer sent on its own since the last call (see [`OwnResponse`]),
    /// for a TU that counts every response it sends.
    pub fn take_own_responses(&mut self) -> Vec<OwnResponse> {
        self.own.take()
    }

    /// The state of a live transaction, `None` once it terminated.
    pub fn state(&self, key: &TransactionKey) -> Option<TransactionState> {
        Some(match &self.get(*key)?.machine {
            Machine::ClientInvite(m) => m.state.public(),
            Machine::ClientNonInvite(m) => m.state.public(),
            Machine::ServerInvite(m) => m.state.public(),
            Machine::ServerNonInvite(m) => m.state.public(),
        })
    }

    /// A fresh branch with the magic cookie, from the layer's generator.
    pub fn new_branch(&mut self) -> String {
        self.ids.branch()
    }

    /// The next thing to do: queued transmits and events in order, else when to wake up.
    pub fn poll_output(&mut self) -> Output {
        if let Some(o) = self.out.pop_front() {
            return o;
        }
        let slots = &self.slots;
        let next = self
            .timers
            .next_deadline(|k, s, at| is_live(slots, k, s, at));
        Output::Timeout(next.unwrap_or(self.now + IDLE_WAKEUP))
    }

    /// Fires due timers, then handles `input`.
    pub fn handle_input(&mut self, now: Instant, input: Input) {
        self.advance(now);
        match input {
            Input::Datagram {
                transport,
                source,
                data,
            } => self.on_datagram(transport, source, &data),
            Input::Message {
                transport,
                source,
                message,
            } => self.on_message(transport, source, *message),
            Input::TransportError {
                transport,
                destination,
                key,
            } => {
                self.on_transport_error(&transport, destination, key);
            }
            Input::Timeout => {}
        }
    }

    /// Same as `handle_input(now, Input::Timeout)`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
    }

    /// Starts a client transaction for `request` (not ACK) and sends it. The request must
    /// carry its top Via with a branch (see [`push_via`]) and a CSeq of its own method; the
    /// layer adds nothing.
    pub fn send_request(
        &mut self,
        now: Instant,
        request: Request,
        destination: SocketAddr,
        transport: Transport,
    ) -> Result<TransactionKey, TransactionError> {
        self.advance(now);
        if request.method == Method::Ack {
            return Err(TransactionError::AckIsNotATransaction);
        }
        let via = request
            .headers
            .top_via()
            .ok()
            .flatten()
            .ok_or(TransactionError::MissingVia)?;
        let branch = via.branch().ok_or(TransactionError::MissingBranch)?;
        let cseq = request
            .headers
            .cseq()
            .ok()
            .flatten()
            .ok_or(TransactionError::BadCSeq)?;
        if cseq.method != request.method {
            return Err(TransactionError::BadCSeq);
        }
        let match_key = MatchKey::Client {
            branch: branch.into(),
            method: request.method.clone(),
        };
        if self.index.contains_key(&match_key) {
            return Err(TransactionError::DuplicateTransaction);
        }
        if self.live >= self.config.max_transactions {
            return Err(TransactionError::TableFull);
        }
        let invite = request.method == Method::Invite;
        let wire = Bytes::from(request.to_bytes());
        let key = self.insert(
            Role::Client,
            invite,
            transport,
            destination,
            match_key,
            |ctx| {
                if invite {
                    Machine::ClientInvite(ClientInvite::start(request, wire, ctx))
                } else {
                    Machine::ClientNonInvite(ClientNonInvite::start(wire, ctx))
                }
            },
        );
        Ok(key)
    }

    /// Sends the TU's response on a server transaction, along its response route.
    pub fn send_response(
        &mut self,
        now: Instant,
        key: &TransactionKey,
        response: Response,
    ) -> Result<(), TransactionError> {
        self.advance(now);
        if key.role() != Role::Server {
            return Err(TransactionError::WrongRole);
        }
        let step = self
            .with_tx(*key, |machine, ctx| match machine {
                Machine::ServerInvite(m) => m.send_response(&response, ctx),
                Machine::ServerNonInvite(m) => m.send_response(&response, ctx),
                Machine::ClientInvite(_) | Machine::ClientNonInvite(_) => {
                    Err(TransactionError::WrongRole)
                }
            })
            .ok_or(TransactionError::UnknownTransaction)??;
        self.apply(*key, step);
        Ok(())
    }

    /// Sends a CANCEL for the INVITE client transaction `invite` (§9.1) as a new non-INVITE
    /// client transaction to the same destination, and returns its key. Refused before a
    /// provisional response (the RFC says wait) and after a final one.
    pub fn cancel(
        &mut self,
        now: Instant,
        invite: &TransactionKey,
    ) -> Result<TransactionKey, TransactionError> {
        self.advance(now);
        let tx = self
            .get(*invite)
            .ok_or(TransactionError::UnknownTransaction)?;
        let Machine::ClientInvite(m) = &tx.machine else {
            return Err(if invite.role() == Role::Server {
                TransactionError::WrongRole
            } else {
                TransactionError::NotCancellable
            });
        };
        match m.state {
            client_invite::State::Proceeding => {}
            client_invite::State::Calling => return Err(TransactionError::NoProvisionalResponse),
            client_invite::State::Accepted | client_invite::State::Completed => {
                return Err(TransactionError::NotCancellable);
            }
        }
        let cancel = build_cancel(&m.request)?;
        let (destination, transport) = (tx.destination, tx.transport.clone());
        self.send_request(now, cancel, destination, transport)
    }

    /// Queues a message that belongs to no transaction: the ACK for a 2xx, the TU core's 2xx
    /// retransmissions, a stateless proxy's forwards.
    pub fn send_stateless(&mut self, transmit: Transmit) {
        self.out.push_back(Output::Transmit(transmit));
    }

    // ----- time -----

    fn advance(&mut self, now: Instant) {
        if now > self.now {
            self.now = now;
        }
        while let Some((key, slot, at)) = self.timers.pop_due(self.now) {
            if !is_live(&self.slots, key, slot, at) {
                continue;
            }
            let step = self.with_tx(key, |machine, ctx| {
                ctx.deadlines.clear(slot);
                match machine {
                    Machine::ClientInvite(m) => m.on_timer(slot, ctx),
                    Machine::ClientNonInvite(m) => m.on_timer(slot, ctx),
                    Machine::ServerInvite(m) => m.on_timer(slot, ctx),
                    Machine::ServerNonInvite(m) => m.on_timer(),
                }
            });
            if let Some(step) = step {
                self.apply(key, step);
            }
        }
        let slots = &self.slots;
        self.timers
            .compact_if_bloated(self.live, |k, s, at| is_live(slots, k, s, at));
    }

    // ----- the transaction table -----

    fn get(&self, key: TransactionKey) -> Option<&Transaction> {
        let slot = self.slots.get(key.slot as usize)?;
        if slot.generation != key.generation {
            return None;
        }
        slot.tx.as_ref()
    }

    fn with_tx<R>(
        &mut self,
        key: TransactionKey,
        f: impl FnOnce(&mut Machine, &mut Ctx<'_>) -> R,
    ) -> Option<R> {
        let slot = self.slots.get_mut(key.slot as usize)?;
        if slot.generation != key.generation {
            return None;
        }
        let tx = slot.tx.as_mut()?;
        let mut ctx = Ctx {
            now: self.now,
            config: &self.config,
            key,
            transport: &tx.transport,
            destination: tx.destination,
            out: &mut self.out,
            own: &mut self.own,
            timers: &mut self.timers,
            deadlines: &mut tx.deadlines,
        };
        Some(f(&mut tx.machine, &mut ctx))
    }

    /// Allocates a slot, lets `start` build the machine (it may send and arm timers), and
    /// indexes it.
    fn insert(
        &mut self,
        role: Role,
        invite: bool,
        transport: Transport,
        destination: SocketAddr,
        match_key: MatchKey,
        start: impl FnOnce(&mut Ctx<'_>) -> Machine,
    ) -> TransactionKey {
        let slot_index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot::default());
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        };
        let generation = self.slots[slot_index as usize].generation;
        let key = TransactionKey::new(slot_index, generation, role, invite);
        let mut deadlines = Deadlines::default();
        let machine = {
            let mut ctx = Ctx {
                now: self.now,
                config: &self.config,
                key,
                transport: &transport,
                destination,
                out: &mut self.out,
                own: &mut self.own,
                timers: &mut self.timers,
                deadlines: &mut deadlines,
            };
            start(&mut ctx)
        };
        self.index.insert(match_key.clone(), key);
        self.slots[slot_index as usize].tx = Some(Transaction {
            transport,
            destination,
            match_key,
            deadlines,
            machine,
        });
        self.live += 1;
        key
    }

    fn apply(&mut self, key: TransactionKey, step: Step) {
        if step == Step::Terminate {
            self.terminate(key);
        }
    }

    fn terminate(&mut self, key: TransactionKey) {
        let Some(slot) = self.slots.get_mut(key.slot as usize) else {
            return;
        };
        if slot.generation != key.generation {
            return;
        }
        let Some(tx) = slot.tx.take() else { return };
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(key.slot);
        self.live -= 1;
        if self.index.get(&tx.match_key) == Some(&key) {
            self.index.remove(&tx.match_key);
        }
        self.out.push_back(Output::Event(Event::Terminated { key }));
    }

    // ----- receiving -----

    fn on_datagram(&mut self, transport: Transport, source: SocketAddr, data: &[u8]) {
        match sip_msg::parse_datagram(data) {
            Ok(message) => self.on_message(transport, source, message),
            Err(e) => match e.verdict() {
                Verdict::Respond(response) => {
                    self.respond_statelessly(&response, &transport, source);
                }
                Verdict::Drop => self.stats.unparseable_dropped += 1,
            },
        }
    }

    fn on_message(&mut self, transport: Transport, source: SocketAddr, message: SipMessage) {
        match message {
            SipMessage::Request(request) => self.on_request(transport, source, request),
            SipMessage::Response(response) => self.on_response(transport, source, response),
        }
    }

    fn on_response(&mut self, transport: Transport, source: SocketAddr, response: Response) {
        let target =
            key::client_key_of_response(&response).and_then(|mk| self.index.get(&mk).copied());
        let Some(key) = target else {
            self.out.push_back(Output::Event(Event::StrayResponse {
                response: Box::new(response),
                source,
                transport,
            }));
            return;
        };
        let step = self.with_tx(key, |machine, ctx| match machine {
            Machine::ClientInvite(m) => m.on_response(response, source, ctx),
            Machine::ClientNonInvite(m) => m.on_response(response, source, ctx),
            Machine::ServerInvite(_) | Machine::ServerNonInvite(_) => Step::Continue,
        });
        if let Some(step) = step {
            self.apply(key, step);
        }
    }

    fn on_request(&mut self, transport: Transport, source: SocketAddr, mut request: Request) {
        let Some(via) = request.headers.top_via().ok().flatten() else {
            self.stats.unmatchable_dropped += 1;
            return;
        };
        if request
            .headers
            .cseq()
            .ok()
            .flatten()
            .is_none_or(|c| c.method != request.method)
        {
            self.stats.unmatchable_dropped += 1;
            return;
        }
        let class = MethodClass::of_request(&request.method);
        let Some(match_key) = key::server_key(&request, &via, class) else {
            self.stats.unmatchable_dropped += 1;
            return;
        };
        let legacy = matches!(match_key, MatchKey::Legacy { .. });
        let request_to_tag = key::to_tag(&request.headers);
        // §18.2.1 / RFC 3581, after the key (the RFC 2543 key holds the Via as sent).
        let via = routing::stamp_received(&mut request.headers, via, source);
        match request.method {
            Method::Ack => self.on_ack(
                transport,
                source,
                request,
                &match_key,
                legacy,
                &request_to_tag,
            ),
            Method::Cancel => {
                self.on_cancel(transport, source, request, &via, match_key, &request_to_tag)
            }
            _ => {
                if let Some(&key) = self.index.get(&match_key) {
                    self.on_retransmission(key, &request.method, legacy, &request_to_tag);
                    return;
                }
                self.new_server_transaction(
                    transport,
                    source,
                    request,
                    &via,
                    match_key,
                    request_to_tag,
                );
            }
        }
    }

    fn on_retransmission(
        &mut self,
        key: TransactionKey,
        method: &Method,
        legacy: bool,
        to_tag: &str,
    ) {
        let Some(tx) = self.get(key) else { return };
        let (same_method, same_to_tag) = match &tx.machine {
            Machine::ServerInvite(m) => (*method == Method::Invite, *m.request_to_tag == *to_tag),
            Machine::ServerNonInvite(m) => (m.method == *method, *m.request_to_tag == *to_tag),
            Machine::ClientInvite(_) | Machine::ClientNonInvite(_) => (false, false),
        };
        if !same_method || (legacy && !same_to_tag) {
            self.stats.method_mismatch_dropped += 1;
            return;
        }
        self.with_tx(key, |machine, ctx| match machine {
            Machine::ServerInvite(m) => m.on_retransmission(ctx),
            Machine::ServerNonInvite(m) => m.on_retransmission(ctx),
            Machine::ClientInvite(_) | Machine::ClientNonInvite(_) => {}
        });
    }

    fn new_server_transaction(
        &mut self,
        transport: Transport,
        source: SocketAddr,
        request: Request,
        via: &Via,
        match_key: MatchKey,
        request_to_tag: Box<str>,
    ) {
        if self.live >= self.config.max_transactions {
            self.reject_overload(&request, &transport, source, via);
            return;
        }
        let destination = routing::response_destination(via, source, &transport);
        let invite = request.method == Method::Invite;
        let key = if invite {
            let skeleton = skeleton_of(&request);
            self.insert(
                Role::Server,
                true,
                transport.clone(),
                destination,
                match_key,
                |ctx| Machine::ServerInvite(ServerInvite::start(skeleton, ctx)),
            )
        } else {
            let method = request.method.clone();
            self.insert(
                Role::Server,
                false,
                transport.clone(),
                destination,
                match_key,
                |_| Machine::ServerNonInvite(ServerNonInvite::new(method, request_to_tag)),
            )
        };
        self.out.push_back(Output::Event(Event::Request {
            key,
            request: Box::new(request),
            source,
            transport,
        }));
    }

    fn on_ack(
        &mut self,
        transport: Transport,
        source: SocketAddr,
        request: Request,
        match_key: &MatchKey,
        legacy: bool,
        to_tag: &str,
    ) {
        let target =
            self.index
                .get(match_key)
                .copied()
                .filter(|&k| match self.get(k).map(|t| &t.machine) {
                    // RFC 2543: the ACK's To tag is the one of the response it acknowledges.
                    Some(Machine::ServerInvite(m)) => !legacy || *m.response_to_tag == *to_tag,
                    _ => false,
                });
        let outcome = target.and_then(|key| {
            self.with_tx(key, |machine, ctx| match machine {
                Machine::ServerInvite(m) => m.on_ack(ctx),
                _ => AckOutcome::PassUp,
            })
            .map(|o| (key, o))
        });
        match outcome {
            Some((key, AckOutcome::Absorbed(step))) => self.apply(key, step),
            Some((_, AckOutcome::PassUp)) | None => {
                self.out.push_back(Output::Event(Event::Ack {
                    request: Box::new(request),
                    source,
                    transport,
                }));
            }
        }
    }

    /// §9.2: the CANCEL gets its own server transaction, answered here: 200 when it matches
    /// a transaction (the TU hears of it if that INVITE is still unanswered), 481 otherwise.
    fn on_cancel(
        &mut self,
        transport: Transport,
        source: SocketAddr,
        request: Request,
        via: &Via,
        match_key: MatchKey,
        to_tag: &str,
    ) {
        if let Some(&key) = self.index.get(&match_key) {
            self.on_retransmission(
                key,
                &Method::Cancel,
                matches!(match_key, MatchKey::Legacy { .. }),
                to_tag,
            );
            return;
        }
        if self.live >= self.config.max_transactions {
            self.reject_overload(&request, &transport, source, via);
            return;
        }
        let target = self.cancel_target(&match_key, to_tag);
        let destination = routing::response_destination(via, source, &transport);
        let cancel_key = self.insert(
            Role::Server,
            false,
            transport,
            destination,
            match_key,
            |_| Machine::ServerNonInvite(ServerNonInvite::new(Method::Cancel, Box::from(to_tag))),
        );
        let (status, tag, pending_invite) = match target.and_then(|k| self.get(k).map(|t| (k, t))) {
            Some((k, t)) => match &t.machine {
                Machine::ServerInvite(m) => (
                    StatusCode::OK,
                    (!m.response_to_tag.is_empty()).then(|| m.response_to_tag.to_string()),
                    (m.state == server_invite::State::Proceeding).then_some(k),
                ),
                _ => (StatusCode::OK, None, None),
            },
            None => (StatusCode::CALL_DOES_NOT_EXIST, None, None),
        };
        let tag = tag.unwrap_or_else(|| self.ids.tag());
        let response = sip_msg::build_response(&request, status, Some(&tag));
        let step = self.with_tx(cancel_key, |machine, ctx| match machine {
            Machine::ServerNonInvite(m) => {
                m.send_response(&response, ctx).unwrap_or(Step::Continue)
            }
            _ => Step::Continue,
        });
        if let Some(step) = step {
            self.apply(cancel_key, step);
        }
        if pending_invite.is_none() {
            // Nothing reports this answer to the TU (a matched CANCEL's 200 comes with
            // `Event::Cancel`).
            self.own.record(Some(Method::Cancel), status.as_u16());
        }
        if let Some(invite_key) = pending_invite {
            self.out.push_back(Output::Event(Event::Cancel {
                cancel_key,
                invite_key,
                request: Box::new(request),
            }));
        }
    }

    /// The transaction a CANCEL targets: same key with any method but CANCEL and ACK.
    fn cancel_target(&self, cancel_key: &MatchKey, to_tag: &str) -> Option<TransactionKey> {
        let with_class = |method: MethodClass| -> MatchKey {
            let mut k = cancel_key.clone();
            match &mut k {
                MatchKey::Server { method: m, .. } | MatchKey::Legacy { method: m, .. } => {
                    *m = method
                }
                MatchKey::Client { .. } => {}
            }
            k
        };
        let legacy = matches!(cancel_key, MatchKey::Legacy { .. });
        [MethodClass::Invite, MethodClass::Other]
            .into_iter()
            .find_map(|class| {
                let key = *self.index.get(&with_class(class))?;
                let tx = self.get(key)?;
                let tag_ok = match &tx.machine {
                    Machine::ServerInvite(m) => *m.request_to_tag == *to_tag,
                    Machine::ServerNonInvite(m) => *m.request_to_tag == *to_tag,
                    _ => false,
                };
                (!legacy || tag_ok).then_some(key)
            })
    }

    fn on_transport_error(
        &mut self,
        transport: &Transport,
        destination: SocketAddr,
        key: Option<TransactionKey>,
    ) {
        let affected: Vec<TransactionKey> = match key {
            Some(k) => vec![k],
            None => self
                .slots
                .iter()
                .enumerate()
                .filter_map(|(i, s)| {
                    let tx = s.tx.as_ref()?;
                    (tx.destination == destination && tx.transport == *transport).then(|| {
                        let (role, invite) = match tx.machine {
                            Machine::ClientInvite(_) => (Role::Client, true),
                            Machine::ClientNonInvite(_) => (Role::Client, false),
                            Machine::ServerInvite(_) => (Role::Server, true),
                            Machine::ServerNonInvite(_) => (Role::Server, false),
                        };
                        TransactionKey::new(
                            u32::try_from(i).unwrap_or(u32::MAX),
                            s.generation,
                            role,
                            invite,
                        )
                    })
                })
                .collect(),
        };
        for key in affected {
            let step = self.with_tx(key, |machine, ctx| match machine {
                Machine::ClientInvite(m) => m.on_transport_error(ctx),
                Machine::ClientNonInvite(m) => m.on_transport_error(ctx),
                Machine::ServerInvite(m) => m.on_transport_error(ctx),
                Machine::ServerNonInvite(m) => m.on_transport_error(ctx),
            });
            if let Some(step) = step {
                self.apply(key, step);
            }
        }
    }

    // ----- stateless answers -----

    fn reject_overload(
        &mut self,
        request: &Request,
        transport: &Transport,
        source: SocketAddr,
        via: &Via,
    ) {
        self.stats.overload_rejected += 1;
        self.own.record(
            Some(request.method.clone()),
            StatusCode::SERVICE_UNAVAILABLE.as_u16(),
        );
        let tag = self.ids.tag();
        let mut response =
            sip_msg::build_response(request, StatusCode::SERVICE_UNAVAILABLE, Some(&tag));
        response.headers.push(HeaderName::RetryAfter, "5");
        let destination = routing::response_destination(via, source, transport);
        self.out.push_back(Output::Transmit(Transmit {
            transport: transport.clone(),
            destination,
            contents: Bytes::from(response.to_bytes()),
        }));
    }

    /// Answers an unparseable request along its top Via when it reads, else to the source
    /// address (§18.2.2 has nothing better when the Via itself is the fault). The parser's
    /// verdict alone decides whether to answer: the answer copies the request's Via, From, To,
    /// Call-ID and CSeq (§8.2.6) even when one of those is what was broken, since RFC 4475
    /// asks for a 400 in those cases too and the sender matches it with its own parser.
    fn respond_statelessly(
        &mut self,
        response: &Response,
        transport: &Transport,
        source: SocketAddr,
    ) {
        let wire = response.to_bytes();
        self.stats.unparseable_answered += 1;
        let method = response
            .headers
            .cseq()
            .ok()
            .flatten()
            .map(|cseq| cseq.method);
        self.own.record(method, response.status.as_u16());
        let destination = match response.headers.top_via() {
            Ok(Some(via)) => routing::response_destination(
                &routing::with_received(via, source).0,
                source,
                transport,
            ),
            _ => source,
        };
        self.out.push_back(Output::Transmit(Transmit {
            transport: transport.clone(),
            destination,
            contents: Bytes::from(wire),
        }));
    }
}

/// Whether a popped heap entry is still the transaction's armed deadline.
fn is_live(slots: &[Slot], key: TransactionKey, slot: TimerSlot, at: Instant) -> bool {
    slots
        .get(key.slot as usize)
        .filter(|s| s.generation == key.generation)
        .and_then(|s| s.tx.as_ref())
        .is_some_and(|tx| tx.deadlines.get(slot) == Some(at))
}

/// The headers a 100 Trying copies (§8.2.6): all an INVITE server transaction keeps.
fn skeleton_of(request: &Request) -> Request {
    let mut skeleton = Request::new(request.method.clone(), request.uri.clone());
    skeleton.headers = request
        .headers
        .iter()
        .filter(|h| {
            matches!(
                h.name,
                HeaderName::Via
                    | HeaderName::From
                    | HeaderName::To
                    | HeaderName::CallId
                    | HeaderName::CSeq
                    | HeaderName::Timestamp
            )
        })
        .cloned()
        .collect();
    skeleton
}
