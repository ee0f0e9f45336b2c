//! The B2BUA core, sans-IO: calls as two (or more, while forking) SIP dialogs glued together.
//!
//! The caller's leg (A) lives at an edge: its INVITE arrived as an `EdgeRequest` and is answered
//! through the edge's server transaction (named by its handle). Each callee leg (B) is a request
//! call-control asks an edge to send through the callee's flow (`EdgeSend`, ADR 0011); its
//! responses come back as `EdgeSendResult`. Nothing here does I/O or reads a clock:
//!
//! ```text
//! handle(now, Input::Invite | InvitePlan | InDialog | Result)
//!     ─▶ Vec<Action::Respond | Send | Ended>
//! poll_timeout() → next ring, stage or session deadline; handle(now, Input::Timeout)
//! ```
//!
//! A new call rings a plan of [`Stage`]s (hunt groups, ADR 0016): the contacts of a stage ring
//! in parallel until one answers, all fail, or the stage's timeout passes (its ringing legs are
//! cancelled); then the next stage starts. The first 2xx from any leg wins; the call's ring
//! timeout bounds the whole plan. `Input::Invite` is a plan of one stage. Which members ring in
//! which stage is the [`hunt`] module's pure function.
//!
//! In-dialog re-INVITEs, UPDATEs (RFC 3311) and INFOs are relayed to the other leg. Session
//! timers (RFC 4028) are watched like a proxy on the path would (ADR 0014): the endpoints
//! refresh, the core passes their headers between the legs and ends a call whose session was
//! not refreshed in time. Media is passed through (SDP unchanged); anchoring on the media relay
//! is the service's (`anchor`).

mod call;
pub mod hunt;
mod messages;
mod reanchor;
mod session_timer;
mod snapshot;

pub use reanchor::{CAUSE_REANCHOR_FAILED, ReofferError};
pub use snapshot::{EstablishedCall, call_key};

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use proto::v1::Flow;
use sip_core::IdGenerator;
use sip_msg::{HeaderName, Method, Request, Response, StatusCode};

use call::{Call, LegState, Phase};
use session_timer::{MIN_SE_FLOOR, Refusal, SessionTimer, TimerOffer, TimerPolicy};

/// The `cause` of a call the core ended because its session was not refreshed in time.
pub const CAUSE_SESSION_TIMER_EXPIRED: &str = "session-timer-expired";
/// [`CallRecord::cause`] of a call ended because its relayed media stopped (no RTP for the
/// relay's idle timeout: a phone lost power or network without hanging up).
pub const CAUSE_MEDIA_TIMEOUT: &str = "media-timeout";

/// 422 Session Interval Too Small (RFC 4028 §6).
const SESSION_INTERVAL_TOO_SMALL: StatusCode = match StatusCode::new(422) {
    Some(status) => status,
    None => StatusCode::BAD_REQUEST,
};

/// 491 Request Pending (RFC 3261 §14.2 glare).
const REQUEST_PENDING: StatusCode = match StatusCode::new(491) {
    Some(status) => status,
    None => StatusCode::BUSY_HERE,
};

/// How long a session whose timer ran out waits for a refresh already on its way: the edge
/// answers a relayed request itself within Timer B/F (64·T1 = 32 s) if the far end does not.
const REFRESH_GRACE: Duration = Duration::from_secs(32);

/// The header of an INFO naming its package (RFC 6086), passed on with the body.
const INFO_PACKAGE: &str = "Info-Package";

/// Where a callee leg goes: one registered contact of the callee.
#[derive(Debug, Clone, PartialEq)]
pub struct LegTarget {
    /// The callee's AOR (`sip:user@domain`), the To of the B-leg INVITE.
    pub aor: String,
    /// The registered Contact URI, the B-leg INVITE's Request-URI.
    pub contact: String,
    /// The flow to send through (its edge sends).
    pub flow: Flow,
}

/// One stage of a call's plan: contacts rung in parallel (a hunt group's member, or all of
/// them), for at most `timeout`.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    /// The contacts to ring together (a stage without any is skipped).
    pub targets: Vec<LegTarget>,
    /// How long the stage rings before its ringing legs are cancelled and the next stage
    /// starts (or, after the last one, the caller gets 480). None: until the call's ring
    /// timeout, which bounds every stage anyway.
    pub timeout: Option<Duration>,
}

impl Stage {
    /// A stage ringing `targets` until the call's ring timeout: the whole plan of a call to
    /// an extension.
    pub fn parallel(targets: Vec<LegTarget>) -> Stage {
        Stage {
            targets,
            timeout: None,
        }
    }
}

/// What the service tells the core.
#[derive(Debug, Clone)]
pub enum Input {
    /// A new INVITE from a phone, and where the dial plan sent it: the contacts to ring (all at
    /// once, a plan of one [`Stage::parallel`]), or the status to refuse it with.
    Invite {
        edge_id: String,
        handle: String,
        request: Box<Request>,
        flow: Flow,
        targets: Result<Vec<LegTarget>, (StatusCode, String)>,
    },
    /// A new INVITE and its plan: the stages to ring one after the other (a hunt group), or
    /// the status to refuse it with. No stage with a contact: 480.
    InvitePlan {
        edge_id: String,
        handle: String,
        request: Box<Request>,
        flow: Flow,
        plan: Result<Vec<Stage>, (StatusCode, String)>,
    },
    /// A request inside a call (BYE, ACK, re-INVITE) or a CANCEL notification, from an edge;
    /// `handle` is empty for notifications (ACK, CANCEL) that need no answer.
    InDialog {
        edge_id: String,
        handle: String,
        request: Box<Request>,
        flow: Flow,
    },
    /// A response to a request sent through an edge.
    Result {
        call_ref: String,
        response: Box<Response>,
    },
    /// Time passed: ring timeouts, session timers.
    Timeout,
    /// End an answered call from within calanque (BYE to both phones): the media relay saw
    /// no packet for its idle timeout, say. `call_id` is any leg's Call-ID; `cause` goes into
    /// the record. Ignored for calls that are not answered (or unknown).
    Hangup {
        call_id: String,
        cause: &'static str,
    },
}

/// What the core asks the service to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Answer an edge's server transaction.
    Respond {
        edge_id: String,
        handle: String,
        response: Box<Response>,
    },
    /// Ask the flow's edge to send a request.
    Send {
        call_ref: String,
        request: Box<Request>,
        flow: Flow,
    },
    /// A call was answered: keep it in the store under each of its Call-IDs, so that any
    /// replica can handle its in-dialog requests.
    Persist {
        call_ids: Vec<String>,
        call: Box<EstablishedCall>,
    },
    /// An answered call ended: remove what `Persist` stored.
    Forget { call_ids: Vec<String> },
    /// A call ended: its record (CDR).
    Ended(CallRecord),
}

/// The record of one call (what the CDR carries).
#[derive(Debug, Clone, PartialEq)]
pub struct CallRecord {
    pub call_id: String,
    /// The caller (the From URI) and the callee as dialled (the INVITE's Request-URI).
    pub caller: String,
    pub callee: String,
    /// The AOR of the extension that answered: the callee, a hunt group's member, a forward's
    /// target. None when nobody answered.
    pub answered_by: Option<String>,
    /// When the INVITE arrived, answered (if it was), ended, relative to the core's start.
    pub started: Duration,
    pub answered: Option<Duration>,
    pub ended: Duration,
    /// `answered`, `busy`, `no-answer`, `cancelled`, `failed`, `refused`.
    pub outcome: &'static str,
    /// The final status the caller got, or that ended the call (BYE = 200; also 200 for a
    /// call the core ended itself, see `cause`).
    pub status: u16,
    /// Why the core itself ended an answered call when neither party did:
    /// [`CAUSE_SESSION_TIMER_EXPIRED`] (no session refresh succeeded within the negotiated
    /// interval, RFC 4028). None when a party ended the call (BYE, CANCEL, a failure).
    pub cause: Option<&'static str>,
}

/// An in-dialog request relayed to the other leg: a re-INVITE (hold, resume, codec change,
/// session refresh), an UPDATE (RFC 3311) or an INFO (DTMF). Where its answer goes.
#[derive(Debug, Clone)]
struct Relayed {
    call: u64,
    /// The request as the sender sent it, to answer it.
    request: Request,
    edge_id: String,
    handle: String,
    /// The leg the copy went to: a callee leg, or None for the caller.
    towards: Option<usize>,
    /// CSeq of the copy (the ACK of a re-INVITE's 2xx reuses it).
    cseq: u32,
    /// What an INVITE or UPDATE said about session timers, to complete its 2xx; None for INFO.
    timer: Option<TimerOffer>,
}

impl Relayed {
    /// An offer or a session refresh (re-INVITE, UPDATE): one at a time per call.
    fn is_offer(&self) -> bool {
        matches!(self.request.method, Method::Invite | Method::Update)
    }
}

/// Settings of the core.
#[derive(Debug, Clone)]
pub struct B2buaConfig {
    /// Name used in call-control's own Via and Contact placeholders (`<name>.invalid`).
    pub instance: String,
    /// How long callee legs ring before the caller gets 480.
    pub ring_timeout: Duration,
    /// The shortest session interval we carry a call on (our RFC 4028 Min-SE): an INVITE or
    /// refresh asking for less gets 422. Whole seconds; raised to 90 s (the RFC's floor).
    pub min_session_expires: Duration,
    /// The session interval asked on behalf of a caller that supports session timers but asked
    /// for none (RFC 4028 recommends 1800 s). Whole seconds; at least the Min-SE.
    pub session_expires: Duration,
}

impl Default for B2buaConfig {
    fn default() -> B2buaConfig {
        B2buaConfig {
            instance: "cc-1".to_owned(),
            ring_timeout: Duration::from_secs(30),
            min_session_expires: Duration::from_secs(90),
            session_expires: Duration::from_secs(1800),
        }
    }
}

impl B2buaConfig {
    fn timer_policy(&self) -> TimerPolicy {
        let seconds = |d: Duration| u32::try_from(d.as_secs()).unwrap_or(u32::MAX);
        let min_se = seconds(self.min_session_expires).max(MIN_SE_FLOOR);
        TimerPolicy {
            min_se,
            insert: seconds(self.session_expires).max(min_se),
        }
    }
}

/// Every call of one call-control replica.
#[derive(Debug)]
pub struct B2bua {
    config: B2buaConfig,
    timer_policy: TimerPolicy,
    start: Instant,
    ids: IdGenerator,
    calls: HashMap<u64, Call>,
    /// Call-ID of either leg → call.
    by_call_id: HashMap<String, u64>,
    /// call_ref of a sent request → call and leg (None: the A leg).
    by_ref: HashMap<String, (u64, Option<usize>)>,
    /// In-dialog requests relayed from one leg to the other, by the call_ref of the copy.
    relays: HashMap<String, Relayed>,
    /// The ACK of each call's last relayed re-INVITE 2xx, by the call_ref of that re-INVITE:
    /// sent again when the 2xx is retransmitted (our ACK was lost). One per call.
    relay_acks: HashMap<String, (u64, Action)>,
    next_call: u64,
    next_ref: u64,
}

impl B2bua {
    pub fn new(config: B2buaConfig, start: Instant, seed: u64) -> B2bua {
        B2bua {
            timer_policy: config.timer_policy(),
            config,
            start,
            ids: IdGenerator::new(seed),
            calls: HashMap::new(),
            by_call_id: HashMap::new(),
            by_ref: HashMap::new(),
            relays: HashMap::new(),
            relay_acks: HashMap::new(),
            next_call: 1,
            next_ref: 1,
        }
    }

    /// Calls in progress (set up, ringing or established).
    pub fn live_calls(&self) -> usize {
        self.calls.len()
    }

    /// Whether a call with this Call-ID (either leg) is held here.
    pub fn knows(&self, call_id: &str) -> bool {
        self.by_call_id.contains_key(call_id)
    }

    /// Takes over an established call another replica stored; false if the snapshot is
    /// unusable. Our CSeqs jump ahead so that nothing we send repeats one the previous
    /// replica may have used after its last snapshot.
    pub fn restore(&mut self, now: Instant, snapshot: &EstablishedCall) -> bool {
        let Some(call) = call::Call::restore(self.next_call, snapshot, now) else {
            return false;
        };
        let id = self.next_call;
        self.next_call += 1;
        for call_id in call.call_ids() {
            self.by_call_id.insert(call_id, id);
        }
        self.calls.insert(id, call);
        true
    }

    /// The Call-ID of the caller's leg of the call a leg's Call-ID belongs to (itself for the
    /// caller's): which call a callee leg's INVITE is part of.
    pub fn caller_call_id(&self, call_id: &str) -> Option<&str> {
        let id = self.by_call_id.get(call_id)?;
        self.calls.get(id).map(|c| c.a_call_id.as_str())
    }

    /// The next ring timeout, stage timeout or session expiry, if a call has one.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.calls
            .values()
            .flat_map(|c| {
                [
                    c.ring_deadline(),
                    c.stage_deadline(),
                    c.session.map(|s| s.deadline),
                ]
            })
            .flatten()
            .min()
    }

    /// The Call-IDs (the caller's, the store key) of the calls whose session timer has run
    /// out by `now`, which the next `Input::Timeout` ends. With several replicas, a refresh
    /// may have gone through another one (the queue group spreads in-dialog requests): the
    /// service passes each call's stored snapshot to [`B2bua::reconcile_session`] first.
    pub fn session_timers_due(&self, now: Instant) -> Vec<String> {
        self.calls
            .values()
            .filter(|c| c.session.is_some_and(|s| s.deadline <= now))
            .map(|c| c.a_call_id.clone())
            .collect()
    }

    /// Reconciles a call whose session timer ran out here with its stored snapshot. A snapshot
    /// another replica wrote since ours (a refresh it relayed; its stamp differs) restarts the
    /// timer at `now` + the stored interval, as a takeover does. No snapshot: another replica
    /// ended the call (and wrote its record); our copy is dropped without a BYE or a record.
    /// Our own snapshot changes nothing: the next `Input::Timeout` ends the call.
    pub fn reconcile_session(
        &mut self,
        now: Instant,
        call_id: &str,
        stored: Option<&EstablishedCall>,
    ) {
        let Some(&id) = self.by_call_id.get(call_id) else {
            return;
        };
        let Some(stored) = stored else {
            self.forget(id);
            return;
        };
        if let Some(call) = self.calls.get_mut(&id)
            && call.session_stamp != stored.session_stamp
        {
            call.session_stamp = stored.session_stamp.clone();
            call.session = SessionTimer::start(now, stored.session_interval);
        }
    }

    /// Handles one input at `now`.
    pub fn handle(&mut self, now: Instant, input: Input) -> Vec<Action> {
        let mut out = Vec::new();
        match input {
            Input::Invite {
                edge_id,
                handle,
                request,
                flow,
                targets,
            } => {
                let plan = targets.map(|targets| vec![Stage::parallel(targets)]);
                self.on_invite(now, edge_id, handle, *request, flow, plan, &mut out);
            }
            Input::InvitePlan {
                edge_id,
                handle,
                request,
                flow,
                plan,
            } => self.on_invite(now, edge_id, handle, *request, flow, plan, &mut out),
            Input::InDialog {
                edge_id,
                handle,
                request,
                flow,
            } => self.on_in_dialog(now, edge_id, handle, *request, flow, &mut out),
            Input::Result { call_ref, response } => {
                self.on_result(now, &call_ref, *response, &mut out);
            }
            Input::Timeout => self.on_timeout(now, &mut out),
            Input::Hangup { call_id, cause } => {
                let answered = self
                    .by_call_id
                    .get(&call_id)
                    .copied()
                    .filter(|id| self.calls.get(id).is_some_and(|c| c.winner.is_some()));
                if let Some(id) = answered {
                    let reason = format!("SIP;cause=408;text=\"{cause}\"");
                    self.end_answered(now, id, &reason, cause, &mut out);
                }
            }
        }
        out
    }

    fn new_ref(&mut self, call: u64, leg: Option<usize>) -> String {
        let call_ref = format!("{}-{}-{}", self.config.instance, call, self.next_ref);
        self.next_ref += 1;
        self.by_ref.insert(call_ref.clone(), (call, leg));
        call_ref
    }

    /// A call_ref for a request that gets no answer (an ACK): not kept in `by_ref`.
    fn unanswered_ref(&mut self, call: u64) -> String {
        let call_ref = format!("{}-{}-{}", self.config.instance, call, self.next_ref);
        self.next_ref += 1;
        call_ref
    }

    #[allow(clippy::too_many_arguments)]
    fn on_invite(
        &mut self,
        now: Instant,
        edge_id: String,
        handle: String,
        request: Request,
        flow: Flow,
        plan: Result<Vec<Stage>, (StatusCode, String)>,
        out: &mut Vec<Action>,
    ) {
        let id = self.next_call;
        self.next_call += 1;
        let a_tag = self.ids.tag();
        let offer_error = sdp_error(&request);
        let mut call = Call::new(id, edge_id, handle, request, flow, a_tag, now);
        if let Some((status, warning)) = offer_error {
            // A malformed or unusable offer: refused before anything rings (RFC 3261 §21.4.26).
            let mut response = call.a_response(status, None, None);
            response.headers.push(HeaderName::Warning, warning);
            out.push(call.respond_a(response));
            out.push(Action::Ended(call.record(
                self.start,
                now,
                "refused",
                status.as_u16(),
            )));
            return;
        }
        match session_timer::screen(
            &call.a_request.headers,
            self.timer_policy,
            self.timer_policy.insert,
        ) {
            Ok(offer) => call.timer_offer = offer,
            Err(refusal) => {
                // Refused before anything rings: 400 (unreadable) or 422 (too short).
                let response = timer_refusal(refusal, |status| call.a_response(status, None, None));
                let status = response.status.as_u16();
                out.push(call.respond_a(response));
                out.push(Action::Ended(
                    call.record(self.start, now, "refused", status),
                ));
                return;
            }
        }
        let stages: VecDeque<Stage> = match plan {
            Ok(stages) if stages.iter().any(|s| !s.targets.is_empty()) => stages
                .into_iter()
                .filter(|s| !s.targets.is_empty())
                .collect(),
            Ok(_) => {
                // Known but not registered anywhere.
                let response = call.a_response(StatusCode::TEMPORARILY_UNAVAILABLE, None, None);
                out.push(call.respond_a(response));
                out.push(Action::Ended(call.record(self.start, now, "failed", 480)));
                return;
            }
            Err((status, reason)) => {
                let mut response = call.a_response(status, None, None);
                response.reason = reason;
                out.push(call.respond_a(response));
                let outcome = if status == StatusCode::NOT_FOUND {
                    "failed"
                } else {
                    "refused"
                };
                out.push(Action::Ended(call.record(
                    self.start,
                    now,
                    outcome,
                    status.as_u16(),
                )));
                return;
            }
        };
        call.ring_deadline = Some(now + self.config.ring_timeout);
        call.pending_stages = stages;
        self.by_call_id.insert(call.a_call_id.clone(), id);
        self.calls.insert(id, call);
        self.next_stage(now, id, out);
    }

    /// Starts the call's next stage: its legs' INVITEs, its deadline. False when no stage is
    /// left (the caller is to get its final answer).
    fn next_stage(&mut self, now: Instant, id: u64, out: &mut Vec<Action>) -> bool {
        let Some(call) = self.calls.get_mut(&id) else {
            return false;
        };
        let Some(stage) = call.pending_stages.pop_front() else {
            call.stage_deadline = None;
            return false;
        };
        let (number, first) = (call.stages_started, call.legs.len());
        call.stages_started += 1;
        call.stage_deadline = stage.timeout.map(|timeout| now + timeout);
        for (offset, target) in stage.targets.into_iter().enumerate() {
            let index = first + offset;
            let call_ref = self.new_ref(id, Some(index));
            let b_tag = self.ids.tag();
            let call_id = format!("{}@{}", self.ids.branch(), self.config.instance);
            let branch = self.ids.branch();
            let Some(call) = self.calls.get_mut(&id) else {
                return false;
            };
            let mut invite = messages::b_leg_invite(
                &call.a_request,
                &target,
                &call_id,
                &b_tag,
                &self.config.instance,
                &branch,
            );
            session_timer::write_request(&call.timer_offer, &mut invite.headers);
            self.by_call_id.insert(call_id.clone(), id);
            let mut leg = call::Leg::new(target, call_ref.clone(), call_id, invite.clone());
            leg.stage = number;
            out.push(Action::Send {
                call_ref,
                flow: leg.target.flow.clone(),
                request: Box::new(invite),
            });
            call.legs.push(leg);
        }
        true
    }

    fn on_result(
        &mut self,
        now: Instant,
        call_ref: &str,
        response: Response,
        out: &mut Vec<Action>,
    ) {
        if self.relays.contains_key(call_ref) {
            self.on_relay_result(now, call_ref, response, out);
            return;
        }
        if let Some((_, ack)) = self.relay_acks.get(call_ref) {
            if response.status.is_success() {
                out.push(ack.clone()); // a retransmitted 2xx: our ACK was lost
            }
            return;
        }
        let Some(&(id, Some(index))) = self.by_ref.get(call_ref) else {
            return; // a result for the A side (BYE to the caller) or a forgotten call
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let is_invite = response
            .headers
            .cseq()
            .ok()
            .flatten()
            .is_some_and(|c| c.method == Method::Invite);
        if !is_invite {
            return; // answers to our BYE/CANCEL: nothing more to do
        }
        let status = response.status.as_u16();
        match status {
            100 => {}
            101..=199 => {
                let leg = &mut call.legs[index];
                if matches!(leg.state, LegState::Failed(_)) {
                    return; // a leg of an earlier stage, cancelled: it no longer rings
                }
                leg.state = LegState::Ringing;
                let later_stage = leg.stage > 0;
                if call.phase == Phase::Ringing {
                    let body = messages::body_of(&response);
                    if later_stage && body.is_none() && call.caller_alerted {
                        return; // the caller hears ringing already: one 180 per call
                    }
                    let a = call.a_response(response.status, body, Some(&response.reason));
                    call.caller_alerted = true;
                    out.push(call.respond_a(a));
                }
            }
            200..=299 => {
                call.legs[index].remote_tag = messages::to_tag(&response);
                call.legs[index].remote_contact = messages::contact_of(&response);
                if call.winner == Some(index) {
                    // A retransmission of the answer we took (RFC 6026: the edge passes each
                    // one up): our ACK was lost or, for a late offer, is still to come.
                    if call.acked_b {
                        out.extend(self.leg_request(id, index, Method::Ack));
                    }
                    return;
                }
                if call.phase != Phase::Ringing {
                    // Another fork answered first: ACK and hang this one up.
                    call.legs[index].state = LegState::Answered;
                    let ack = self.leg_request(id, index, Method::Ack);
                    let bye = self.leg_request(id, index, Method::Bye);
                    out.extend(ack);
                    out.extend(bye);
                    return;
                }
                call.legs[index].state = LegState::Answered;
                call.phase = Phase::Answered;
                call.answered_at = Some(now);
                call.ring_deadline = None;
                call.stage_deadline = None;
                call.pending_stages.clear();
                call.winner = Some(index);
                let body = messages::body_of(&response);
                let mut a = call.a_response(StatusCode::OK, body, None);
                if let Some(allow) = response.headers.get(&HeaderName::Allow) {
                    // The caller learns whether it may refresh with UPDATE (RFC 4028 §7.4).
                    a.headers.push(HeaderName::Allow, allow);
                }
                let interval = session_timer::write_answer(&call.timer_offer, &response, &mut a);
                call.session = interval.and_then(|i| SessionTimer::start(now, i.max(MIN_SE_FLOOR)));
                call.session_stamp = self.ids.tag();
                out.push(call.respond_a(a));
                let late_offer = call.a_request.body.is_empty();
                call.acked_b = !late_offer;
                if let Some(snapshot) = call.snapshot() {
                    out.push(Action::Persist {
                        call_ids: call.call_ids(),
                        call: Box::new(snapshot),
                    });
                }
                if !late_offer {
                    // The B leg is ACKed now: the caller's ACK carries nothing the callee needs
                    // (the offer was in the INVITE).
                    out.extend(self.leg_request(id, index, Method::Ack));
                }
                // Late offer: the callee's 200 carried the offer, the caller's ACK carries the
                // answer; the callee is ACKed when that ACK arrives.
                out.extend(self.cancel_others(id, Some(index)));
            }
            _ => {
                if matches!(call.legs[index].state, LegState::Failed(_)) {
                    // The answer to our CANCEL (487) or one crossing it: the leg's failure
                    // was counted when it was cancelled.
                    return;
                }
                call.legs[index].state = LegState::Failed(status);
                if status == SESSION_INTERVAL_TOO_SMALL.as_u16() {
                    call.legs[index].failure_min_se =
                        session_timer::min_se(&response.headers).ok().flatten();
                }
                // Earlier stages' legs all failed (or were cancelled) before this stage began.
                let all_failed = call
                    .legs
                    .iter()
                    .all(|l| matches!(l.state, LegState::Failed(_)));
                if call.phase == Phase::Ringing && all_failed {
                    // Every contact of the stage refused (busy, declined, unreachable…): the
                    // next stage rings at once.
                    if self.next_stage(now, id, out) {
                        return;
                    }
                    let Some(call) = self.calls.get(&id) else {
                        return;
                    };
                    let status = call.best_failure();
                    let mut a = call.a_response(status, None, None);
                    if status == SESSION_INTERVAL_TOO_SMALL
                        && let Some(min_se) =
                            call.legs.iter().filter_map(|l| l.failure_min_se).max()
                    {
                        // The callee wants a longer interval: the caller retries with it.
                        a.headers.set(HeaderName::MinSe, min_se.to_string());
                    }
                    out.push(call.respond_a(a));
                    let outcome = if status == StatusCode::BUSY_HERE {
                        "busy"
                    } else {
                        "failed"
                    };
                    let record = call.record(self.start, now, outcome, status.as_u16());
                    out.push(Action::Ended(record));
                    self.forget(id);
                }
            }
        }
    }

    fn on_in_dialog(
        &mut self,
        now: Instant,
        edge_id: String,
        handle: String,
        request: Request,
        flow: Flow,
        out: &mut Vec<Action>,
    ) {
        let call_id = request.headers.call_id().unwrap_or_default().to_owned();
        if let Some(&id) = self.by_call_id.get(&call_id) {
            let from_caller = self.calls.get(&id).is_some_and(|c| c.a_call_id == call_id);
            self.follow_flow(id, from_caller, flow);
        }
        let Some(&id) = self.by_call_id.get(&call_id) else {
            if !handle.is_empty() {
                let response = sip_msg::build_response(
                    &request,
                    StatusCode::CALL_DOES_NOT_EXIST,
                    Some(&self.ids.tag()),
                );
                out.push(Action::Respond {
                    edge_id,
                    handle,
                    response: Box::new(response),
                });
            }
            return;
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let from_caller = call_id == call.a_call_id;
        match request.method {
            Method::Cancel if from_caller => {
                // The edge already answered 487 to the caller.
                out.extend(self.cancel_others(id, None));
                if let Some(call) = self.calls.get(&id) {
                    out.push(Action::Ended(call.record(
                        self.start,
                        now,
                        "cancelled",
                        487,
                    )));
                }
                self.forget(id);
            }
            Method::Ack if from_caller => {
                // Late offer: the caller's ACK carries the answer the callee waits for.
                let waiting = call.a_request.body.is_empty() && !call.acked_b;
                if let (true, Some(winner)) = (waiting, call.winner) {
                    call.acked_b = true;
                    let body = (!request.body.is_empty()).then(|| {
                        let content_type = request
                            .headers
                            .get(&HeaderName::ContentType)
                            .unwrap_or("application/sdp")
                            .to_owned();
                        (content_type, request.body.clone())
                    });
                    if let Some(mut ack) = self.leg_request(id, winner, Method::Ack) {
                        if let (Action::Send { request, .. }, Some((content_type, body))) =
                            (&mut ack, body)
                        {
                            messages::set_body(request, &content_type, body);
                        }
                        out.push(ack);
                    }
                }
            }
            Method::Ack => {} // an ACK for a relayed re-INVITE was sent when its 2xx came
            Method::Invite | Method::Update | Method::Info => {
                self.relay_in_dialog(id, from_caller, edge_id, handle, request, out);
            }
            Method::Bye => {
                if !handle.is_empty() {
                    let ok = sip_msg::build_response(&request, StatusCode::OK, None);
                    out.push(Action::Respond {
                        edge_id,
                        handle,
                        response: Box::new(ok),
                    });
                }
                if from_caller {
                    if let Some(winner) = call.winner {
                        out.extend(self.leg_request(id, winner, Method::Bye));
                    }
                } else if let Some(bye) = self.a_bye(id) {
                    out.push(bye);
                }
                if let Some(call) = self.calls.get(&id) {
                    out.push(Action::Forget {
                        call_ids: call.call_ids(),
                    });
                    out.push(Action::Ended(call.record(self.start, now, "answered", 200)));
                }
                self.forget(id);
            }
            _ => {
                if !handle.is_empty() {
                    // REFER, MESSAGE, NOTIFY, PRACK…: not relayed between the legs.
                    let response =
                        sip_msg::build_response(&request, StatusCode::NOT_IMPLEMENTED, None);
                    out.push(Action::Respond {
                        edge_id,
                        handle,
                        response: Box::new(response),
                    });
                }
            }
        }
    }

    /// Relays a re-INVITE, UPDATE or INFO to the other leg. An offer or refresh (re-INVITE,
    /// UPDATE) gets 491 while another is in progress on the call (RFC 3261 §14.2, RFC 3311
    /// §5.2), 400/415/488 for an unusable offer, 400/422 for unusable session timer headers
    /// (screened as the initial INVITE is). INFOs carry no offer: several may be in flight.
    fn relay_in_dialog(
        &mut self,
        id: u64,
        from_caller: bool,
        edge_id: String,
        handle: String,
        request: Request,
        out: &mut Vec<Action>,
    ) {
        let respond = |response: Response| Action::Respond {
            edge_id: edge_id.clone(),
            handle: handle.clone(),
            response: Box::new(response),
        };
        let refuse = |status: StatusCode, warning: Option<String>| {
            let mut response = sip_msg::build_response(&request, status, None);
            if let Some(warning) = warning {
                response.headers.push(HeaderName::Warning, warning);
            }
            respond(response)
        };
        let is_offer = request.method != Method::Info;
        let pending = is_offer && self.relays.values().any(|r| r.call == id && r.is_offer());
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let Some(winner) = call.winner else {
            // Early dialogs: nothing is relayed before a callee answers.
            out.push(if is_offer {
                refuse(REQUEST_PENDING, None)
            } else {
                refuse(StatusCode::NOT_IMPLEMENTED, None)
            });
            return;
        };
        if pending {
            out.push(refuse(REQUEST_PENDING, None));
            return;
        }
        let timer = if is_offer {
            if let Some((status, warning)) = sdp_error(&request) {
                out.push(refuse(status, Some(warning)));
                return;
            }
            // A refresh that asks for no interval keeps the current one.
            let insert = call
                .session
                .map_or(self.timer_policy.insert, |s| s.interval);
            match session_timer::screen(&request.headers, self.timer_policy, insert) {
                Ok(offer) => Some(offer),
                Err(refusal) => {
                    let response = timer_refusal(refusal, |status| {
                        sip_msg::build_response(&request, status, None)
                    });
                    out.push(respond(response));
                    return;
                }
            }
        } else {
            None
        };
        let towards = if from_caller { Some(winner) } else { None };
        let call_ref = self.new_ref(id, towards);
        let branch = self.ids.branch();
        let instance = self.config.instance.clone();
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let method = request.method.clone();
        let (mut copy, cseq, flow) = match towards {
            Some(index) => {
                let leg = &mut call.legs[index];
                let cseq = leg.next_cseq();
                let copy = messages::in_dialog_b(leg, method, cseq, &instance, &branch);
                (copy, cseq, leg.target.flow.clone())
            }
            None => {
                let cseq = call.next_a_cseq();
                let copy = messages::to_caller(call, method, cseq, &instance, &branch);
                (copy, cseq, call.a_flow.clone())
            }
        };
        if is_offer {
            // re-INVITE and UPDATE carry a Contact (RFC 3261 §14.1, RFC 3311 §5.1).
            let contact_flow = if from_caller {
                call.legs[winner].target.flow.clone()
            } else {
                call.a_flow.clone()
            };
            copy.headers
                .push(HeaderName::Contact, messages::edge_contact(&contact_flow));
        }
        if let Some(offer) = &timer {
            session_timer::write_request(offer, &mut copy.headers);
        }
        let info_package = HeaderName::Other(INFO_PACKAGE.to_owned());
        if let Some(package) = request.headers.get(&info_package) {
            copy.headers.push(info_package.clone(), package);
        }
        if !request.body.is_empty() {
            let content_type = request
                .headers
                .get(&HeaderName::ContentType)
                .unwrap_or("application/sdp")
                .to_owned();
            messages::set_body(&mut copy, &content_type, request.body.clone());
        }
        self.relays.insert(
            call_ref.clone(),
            Relayed {
                call: id,
                request,
                edge_id,
                handle,
                towards,
                cseq,
                timer,
            },
        );
        out.push(Action::Send {
            call_ref,
            request: Box::new(copy),
            flow,
        });
    }

    /// The other leg answered a relayed request: pass the answer back (with the session timer
    /// headers of a 2xx, the Min-SE of a 422); ACK a re-INVITE's 2xx. A 2xx to a re-INVITE or
    /// UPDATE is a session refresh: the timer restarts with the interval it carries (or stops
    /// if it carries none) and the snapshot is rewritten.
    fn on_relay_result(
        &mut self,
        now: Instant,
        call_ref: &str,
        response: Response,
        out: &mut Vec<Action>,
    ) {
        let status = response.status.as_u16();
        if status < 101 {
            return;
        }
        let relay = if status < 200 {
            match self.relays.get(call_ref) {
                Some(relay) if relay.handle.is_empty() => return, // our own offer: no one to tell
                Some(relay) => relay.clone(),
                None => return,
            }
        } else {
            self.by_ref.remove(call_ref);
            match self.relays.remove(call_ref) {
                Some(relay) => relay,
                None => return,
            }
        };
        if status >= 300 && self.own_offer_failed(now, &relay, status, out) {
            return;
        }
        let mut answer = sip_msg::build_response(&relay.request, response.status, None);
        answer.reason = response.reason.clone();
        if let Some(call) = self.calls.get(&relay.call) {
            let flow = match relay.towards {
                // The answer goes to the caller if the callee sent the request, and vice versa.
                Some(_) => &call.a_flow,
                None => call
                    .winner
                    .and_then(|w| call.legs.get(w))
                    .map(|l| &l.target.flow)
                    .unwrap_or(&call.a_flow),
            };
            if (200..300).contains(&status) && relay.is_offer() {
                answer
                    .headers
                    .push(HeaderName::Contact, messages::edge_contact(flow));
            }
        }
        if let Some((content_type, body)) = messages::body_of(&response) {
            messages::set_response_body(&mut answer, &content_type, body);
        }
        let refreshed = match &relay.timer {
            Some(offer) if (200..300).contains(&status) => {
                Some(session_timer::write_answer(offer, &response, &mut answer))
            }
            _ => None,
        };
        if status == SESSION_INTERVAL_TOO_SMALL.as_u16() {
            session_timer::copy_min_se(&response, &mut answer);
        }
        if !relay.handle.is_empty() {
            out.push(Action::Respond {
                edge_id: relay.edge_id.clone(),
                handle: relay.handle.clone(),
                response: Box::new(answer),
            });
        }
        if let Some(interval) = refreshed {
            self.refreshed(now, relay.call, interval, out);
        }
        if !(200..300).contains(&status) || relay.request.method != Method::Invite {
            return; // the edge's transaction ACKs a non-2xx itself; UPDATE and INFO have none
        }
        // ACK the 2xx on the leg we re-INVITEd (no answer comes back: no call_ref to keep).
        let branch = self.ids.branch();
        let instance = self.config.instance.clone();
        let ack_ref = self.unanswered_ref(relay.call);
        let Some(call) = self.calls.get_mut(&relay.call) else {
            return;
        };
        let (ack, flow) = match relay.towards {
            Some(index) => {
                let leg = &call.legs[index];
                (
                    messages::in_dialog_b(leg, Method::Ack, relay.cseq, &instance, &branch),
                    leg.target.flow.clone(),
                )
            }
            None => (
                messages::to_caller(call, Method::Ack, relay.cseq, &instance, &branch),
                call.a_flow.clone(),
            ),
        };
        let ack = Action::Send {
            call_ref: ack_ref,
            request: Box::new(ack),
            flow,
        };
        self.relay_acks.retain(|_, (c, _)| *c != relay.call);
        self.relay_acks
            .insert(call_ref.to_owned(), (relay.call, ack.clone()));
        out.push(ack);
    }

    /// A session refresh succeeded: the timer restarts with the interval its 2xx carried
    /// (None: no session timer from now on), and the snapshot is rewritten with it.
    fn refreshed(&mut self, now: Instant, id: u64, interval: Option<u32>, out: &mut Vec<Action>) {
        let stamp = self.ids.tag();
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let had_timer = call.session.is_some();
        call.session = interval.and_then(|i| SessionTimer::start(now, i.max(MIN_SE_FLOOR)));
        if !had_timer && call.session.is_none() {
            return; // no timer before or after: nothing the store needs
        }
        call.session_stamp = stamp;
        if let Some(snapshot) = call.snapshot() {
            out.push(Action::Persist {
                call_ids: call.call_ids(),
                call: Box::new(snapshot),
            });
        }
    }

    /// Ends a call whose session was not refreshed in time (RFC 4028 §10): BYE to both legs,
    /// the snapshot forgotten, a record saying why.
    fn end_expired_session(&mut self, now: Instant, id: u64, out: &mut Vec<Action>) {
        self.end_answered(
            now,
            id,
            "SIP;cause=408;text=\"Session timer expired\"",
            CAUSE_SESSION_TIMER_EXPIRED,
            out,
        );
    }

    /// Ends an answered call ourselves: BYE (with `reason` as its Reason header) to both legs,
    /// the snapshot forgotten, the record with `cause`.
    fn end_answered(
        &mut self,
        now: Instant,
        id: u64,
        reason: &str,
        cause: &'static str,
        out: &mut Vec<Action>,
    ) {
        let winner = self.calls.get(&id).and_then(|c| c.winner);
        let byes = [
            winner.and_then(|w| self.leg_request(id, w, Method::Bye)),
            self.a_bye(id),
        ];
        for mut bye in byes.into_iter().flatten() {
            if let Action::Send { request, .. } = &mut bye {
                request.headers.push(HeaderName::Reason, reason);
            }
            out.push(bye);
        }
        if let Some(call) = self.calls.get(&id) {
            out.push(Action::Forget {
                call_ids: call.call_ids(),
            });
            let mut record = call.record(self.start, now, "answered", 200);
            record.cause = Some(cause);
            out.push(Action::Ended(record));
        }
        self.forget(id);
    }

    fn on_timeout(&mut self, now: Instant, out: &mut Vec<Action>) {
        let due: Vec<u64> = self
            .calls
            .values()
            .filter(|c| c.ring_deadline.is_some_and(|d| d <= now))
            .map(|c| c.id)
            .collect();
        for id in due {
            self.end_unanswered(now, id, out);
        }
        let stages_due: Vec<u64> = self
            .calls
            .values()
            .filter(|c| c.stage_deadline().is_some_and(|d| d <= now))
            .map(|c| c.id)
            .collect();
        for id in stages_due {
            // The stage rang long enough: its legs are cancelled (counted as no answer) and
            // the next stage rings; after the last one, the caller gets 480.
            out.extend(self.cancel_ringing(id, None, 408));
            if !self.next_stage(now, id, out) {
                self.end_unanswered(now, id, out);
            }
        }
        let expired: Vec<u64> = self
            .calls
            .values()
            .filter(|c| c.session.is_some_and(|s| s.deadline <= now))
            .map(|c| c.id)
            .collect();
        for id in expired {
            let refreshing = self.relays.values().any(|r| r.call == id && r.is_offer());
            if refreshing {
                // A refresh is on its way: its answer decides, within the edge's timeout.
                if let Some(session) = self.calls.get_mut(&id).and_then(|c| c.session.as_mut()) {
                    session.deadline = now + REFRESH_GRACE;
                }
                continue;
            }
            self.end_expired_session(now, id, out);
        }
    }

    /// Nobody answered in time: CANCEL what rings, 480 to the caller, the record.
    fn end_unanswered(&mut self, now: Instant, id: u64, out: &mut Vec<Action>) {
        out.extend(self.cancel_others(id, None));
        if let Some(call) = self.calls.get(&id) {
            let a = call.a_response(StatusCode::TEMPORARILY_UNAVAILABLE, None, None);
            out.push(call.respond_a(a));
            out.push(Action::Ended(call.record(
                self.start,
                now,
                "no-answer",
                480,
            )));
        }
        self.forget(id);
    }

    /// CANCELs every ringing leg but `except`.
    fn cancel_others(&mut self, id: u64, except: Option<usize>) -> Vec<Action> {
        self.cancel_ringing(id, except, 487)
    }

    /// CANCELs every ringing leg but `except`, each counted as failed with `status` (what the
    /// caller's final answer is chosen from, should the call go on).
    fn cancel_ringing(&mut self, id: u64, except: Option<usize>, status: u16) -> Vec<Action> {
        let Some(call) = self.calls.get_mut(&id) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (index, leg) in call.legs.iter_mut().enumerate() {
            if Some(index) == except || !matches!(leg.state, LegState::Trying | LegState::Ringing) {
                continue;
            }
            leg.state = LegState::Failed(status);
            out.push(Action::Send {
                call_ref: leg.call_ref.clone(),
                request: Box::new(messages::cancel_for(&leg.invite)),
                flow: leg.target.flow.clone(),
            });
        }
        out
    }

    /// An ACK or BYE on callee leg `index`.
    fn leg_request(&mut self, id: u64, index: usize, method: Method) -> Option<Action> {
        let call_ref = if method == Method::Ack {
            self.unanswered_ref(id)
        } else {
            self.new_ref(id, Some(index))
        };
        let branch = self.ids.branch();
        let call = self.calls.get_mut(&id)?;
        let leg = call.legs.get_mut(index)?;
        let cseq = if method == Method::Ack {
            1
        } else {
            leg.next_cseq()
        };
        let request = messages::in_dialog_b(leg, method, cseq, &self.config.instance, &branch);
        Some(Action::Send {
            call_ref,
            request: Box::new(request),
            flow: leg.target.flow.clone(),
        })
    }

    /// A BYE to the caller (the callee hung up).
    fn a_bye(&mut self, id: u64) -> Option<Action> {
        let call_ref = self.new_ref(id, None);
        let branch = self.ids.branch();
        let call = self.calls.get_mut(&id)?;
        let cseq = call.next_a_cseq();
        let request = messages::to_caller(call, Method::Bye, cseq, &self.config.instance, &branch);
        Some(Action::Send {
            call_ref,
            request: Box::new(request),
            flow: call.a_flow.clone(),
        })
    }

    /// A call (by any of its legs' Call-IDs) whose stored snapshot another replica deleted:
    /// it ended there, with its BYEs and record. Dropped quietly; the caller's Call-ID if it
    /// was held here. A call this replica ended itself is already gone.
    pub fn forget_ended_elsewhere(&mut self, call_id: &str) -> Option<String> {
        let id = *self.by_call_id.get(call_id)?;
        let caller_call_id = self.calls.get(&id)?.a_call_id.clone();
        self.forget(id);
        Some(caller_call_id)
    }

    fn forget(&mut self, id: u64) {
        if let Some(call) = self.calls.remove(&id) {
            self.by_call_id.remove(&call.a_call_id);
            for leg in &call.legs {
                self.by_call_id.remove(&leg.call_id);
            }
            self.by_ref.retain(|_, (c, _)| *c != id);
            self.relays.retain(|_, r| r.call != id);
            self.relay_acks.retain(|_, (c, _)| *c != id);
        }
    }
}

/// The answer to a request refused for its session timer headers: 400 naming the header, or
/// 422 with our Min-SE. `build` makes the response for a status.
fn timer_refusal(refusal: Refusal, build: impl FnOnce(StatusCode) -> Response) -> Response {
    match refusal {
        Refusal::Malformed(error) => {
            let mut response = build(StatusCode::BAD_REQUEST);
            response.reason = error.reason().to_owned();
            response
                .headers
                .push(HeaderName::Warning, format!("399 calanque \"{error}\""));
            response
        }
        Refusal::TooSmall { min_se } => {
            let mut response = build(SESSION_INTERVAL_TOO_SMALL);
            response.headers.push(HeaderName::MinSe, min_se.to_string());
            response
        }
    }
}

/// Why a request's SDP offer cannot be used: 400 for what does not parse, 488 for what we
/// cannot take (RFC 3261 §21.4.26), with a Warning (§20.43). No body is no offer (late offer).
fn sdp_error(request: &Request) -> Option<(StatusCode, String)> {
    if request.body.is_empty() {
        return None;
    }
    let content_type = request
        .headers
        .get(&HeaderName::ContentType)
        .unwrap_or("application/sdp");
    if !content_type
        .to_ascii_lowercase()
        .starts_with("application/sdp")
    {
        return Some((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "399 calanque \"only application/sdp bodies\"".to_owned(),
        ));
    }
    match sdp::parse(&request.body) {
        Ok(description) if description.media.iter().any(|m| m.port != 0) => None,
        Ok(_) => Some((
            StatusCode::NOT_ACCEPTABLE_HERE,
            "304 calanque \"no usable media stream\"".to_owned(),
        )),
        Err(e) => {
            let status =
                StatusCode::new(e.rejection().status_code()).unwrap_or(StatusCode::BAD_REQUEST);
            let text = e.to_string().replace('"', "'");
            Some((status, format!("{} calanque \"{text}\"", e.warning_code())))
        }
    }
}
