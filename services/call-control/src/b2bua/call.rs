//! One call: the caller's leg (A, answered through its edge's server transaction) and the
//! callee legs (B, one per registered contact; the contacts of one stage ring in parallel, the
//! stages one after the other; the first 2xx wins).

use std::collections::VecDeque;
use std::time::Instant;

use proto::v1::Flow;
use sip_msg::{HeaderName, Request, Response, StatusCode, build_response};

use super::session_timer::{SessionTimer, TimerOffer};
use super::snapshot::EstablishedCall;
use super::{Action, CallRecord, LegTarget, Stage};

/// Where the call is, seen from the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Callee legs are ringing; the caller has no final answer.
    Ringing,
    /// A callee answered; the caller got the 200.
    Answered,
}

/// Where one callee leg is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LegState {
    Trying,
    Ringing,
    Answered,
    Failed(u16),
}

/// One callee leg.
#[derive(Debug)]
pub(super) struct Leg {
    pub(super) target: LegTarget,
    /// The call_ref of its INVITE (CANCEL uses it).
    pub(super) call_ref: String,
    pub(super) call_id: String,
    pub(super) remote_tag: Option<String>,
    pub(super) remote_contact: Option<String>,
    pub(super) invite: Request,
    pub(super) state: LegState,
    /// The Min-SE of the callee's 422 (it wants a longer session interval).
    pub(super) failure_min_se: Option<u32>,
    /// The stage of the call's plan that rang this leg (0 for the first).
    pub(super) stage: usize,
    cseq: u32,
}

impl Leg {
    pub(super) fn new(
        target: LegTarget,
        call_ref: String,
        call_id: String,
        invite: Request,
    ) -> Leg {
        Leg {
            target,
            call_ref,
            call_id,
            remote_tag: None,
            remote_contact: None,
            invite,
            state: LegState::Trying,
            failure_min_se: None,
            stage: 0,
            cseq: 1,
        }
    }

    /// The CSeq of our next request on this leg (the INVITE had 1).
    pub(super) fn next_cseq(&mut self) -> u32 {
        self.cseq += 1;
        self.cseq
    }
}

/// CSeq headroom a replica taking over a call leaves for requests the previous one may have
/// sent after its last snapshot.
const TAKEOVER_CSEQ_JUMP: u32 = 100;

fn parse_request(bytes: &[u8]) -> Option<Request> {
    match sip_msg::parse_datagram(bytes).ok()? {
        sip_msg::SipMessage::Request(r) => Some(r),
        sip_msg::SipMessage::Response(_) => None,
    }
}

/// One call.
#[derive(Debug)]
pub(super) struct Call {
    pub(super) id: u64,
    pub(super) a_edge: String,
    pub(super) a_handle: String,
    pub(super) a_request: Request,
    pub(super) a_flow: Flow,
    pub(super) a_call_id: String,
    /// Our To tag towards the caller.
    pub(super) a_tag: String,
    a_cseq: u32,
    pub(super) legs: Vec<Leg>,
    pub(super) phase: Phase,
    pub(super) winner: Option<usize>,
    /// The callee's 2xx was ACKed (immediately, or after the caller's ACK for a late offer).
    pub(super) acked_b: bool,
    pub(super) ring_deadline: Option<Instant>,
    /// The stages of the plan not started yet, in order.
    pub(super) pending_stages: VecDeque<Stage>,
    /// How many stages have started (the ringing one is the last), and when the ringing one
    /// gives up (None: at the ring deadline).
    pub(super) stages_started: usize,
    pub(super) stage_deadline: Option<Instant>,
    /// The caller got a provisional response (above 100): a later stage's bodiless one is not
    /// passed again.
    pub(super) caller_alerted: bool,
    pub(super) started: Instant,
    pub(super) answered_at: Option<Instant>,
    pub(super) caller: String,
    pub(super) callee: String,
    /// What the caller's INVITE said about session timers, as screened (what the callee legs'
    /// INVITEs carry, and what completing the 2xx needs).
    pub(super) timer_offer: TimerOffer,
    /// The session timer of an answered call that negotiated one (RFC 4028).
    pub(super) session: Option<SessionTimer>,
    /// A token naming the last snapshot written with a session refresh (by this replica or,
    /// once reconciled, another): tells a stale copy that another replica refreshed the call.
    pub(super) session_stamp: String,
}

impl Call {
    pub(super) fn new(
        id: u64,
        a_edge: String,
        a_handle: String,
        a_request: Request,
        a_flow: Flow,
        a_tag: String,
        now: Instant,
    ) -> Call {
        let a_call_id = a_request.headers.call_id().unwrap_or_default().to_owned();
        let caller = a_request
            .headers
            .from_header()
            .ok()
            .flatten()
            .map(|f| f.uri.to_string())
            .unwrap_or_default();
        // As dialled: the group's or the forwarded extension's number, not whoever rang.
        let callee = a_request.uri.to_string();
        Call {
            id,
            a_edge,
            a_handle,
            a_request,
            a_flow,
            a_call_id,
            a_tag,
            a_cseq: 0,
            legs: Vec::new(),
            phase: Phase::Ringing,
            winner: None,
            acked_b: false,
            ring_deadline: None,
            pending_stages: VecDeque::new(),
            stages_started: 0,
            stage_deadline: None,
            caller_alerted: false,
            started: now,
            answered_at: None,
            caller,
            callee,
            timer_offer: TimerOffer::default(),
            session: None,
            session_stamp: String::new(),
        }
    }

    /// Every Call-ID of the call (the caller's, then each callee leg's).
    pub(super) fn call_ids(&self) -> Vec<String> {
        let mut ids = vec![self.a_call_id.clone()];
        ids.extend(self.legs.iter().map(|l| l.call_id.clone()));
        ids
    }

    /// The stored form of an answered call (its winning leg only).
    pub(super) fn snapshot(&self) -> Option<EstablishedCall> {
        let leg = self.legs.get(self.winner?)?;
        Some(EstablishedCall {
            caller_invite: self.a_request.to_bytes(),
            caller_flow: Some(self.a_flow.clone()),
            caller_edge: self.a_edge.clone(),
            caller_tag: self.a_tag.clone(),
            caller_cseq: self.a_cseq,
            callee_aor: leg.target.aor.clone(),
            callee_contact: leg.target.contact.clone(),
            callee_flow: Some(leg.target.flow.clone()),
            callee_invite: leg.invite.to_bytes(),
            callee_tag: leg.remote_tag.clone().unwrap_or_default(),
            callee_remote_contact: leg.remote_contact.clone().unwrap_or_default(),
            callee_cseq: leg.cseq,
            session_interval: self.session.map_or(0, |s| s.interval),
            session_stamp: self.session_stamp.clone(),
            ..EstablishedCall::default()
        })
    }

    /// An answered call rebuilt from its snapshot (a takeover). Its session timer restarts at
    /// `now`: when the last refresh was is not in the snapshot, and restarting can only give
    /// a live call more time, never end it early (ADR 0014).
    pub(super) fn restore(id: u64, snapshot: &EstablishedCall, now: Instant) -> Option<Call> {
        let a_request = parse_request(&snapshot.caller_invite)?;
        let invite = parse_request(&snapshot.callee_invite)?;
        let target = LegTarget {
            aor: snapshot.callee_aor.clone(),
            contact: snapshot.callee_contact.clone(),
            flow: snapshot.callee_flow.clone()?,
        };
        let call_id = invite.headers.call_id()?.to_owned();
        let mut leg = Leg::new(target, String::new(), call_id, invite);
        leg.remote_tag = Some(snapshot.callee_tag.clone()).filter(|t| !t.is_empty());
        leg.remote_contact = Some(snapshot.callee_remote_contact.clone()).filter(|c| !c.is_empty());
        leg.state = LegState::Answered;
        leg.cseq = snapshot.callee_cseq.saturating_add(TAKEOVER_CSEQ_JUMP);
        let mut call = Call::new(
            id,
            snapshot.caller_edge.clone(),
            String::new(),
            a_request,
            snapshot.caller_flow.clone()?,
            snapshot.caller_tag.clone(),
            now,
        );
        call.a_cseq = snapshot.caller_cseq.saturating_add(TAKEOVER_CSEQ_JUMP);
        call.legs.push(leg);
        call.phase = Phase::Answered;
        call.winner = Some(0);
        call.acked_b = true;
        call.answered_at = Some(now);
        call.session = SessionTimer::start(now, snapshot.session_interval);
        call.session_stamp = snapshot.session_stamp.clone();
        Some(call)
    }

    pub(super) fn ring_deadline(&self) -> Option<Instant> {
        self.ring_deadline
    }

    /// When the ringing stage gives up: None once a callee answered, and for a stage that
    /// rings until the call's ring deadline.
    pub(super) fn stage_deadline(&self) -> Option<Instant> {
        self.stage_deadline.filter(|_| self.phase == Phase::Ringing)
    }

    /// The CSeq of our next request towards the caller.
    pub(super) fn next_a_cseq(&mut self) -> u32 {
        self.a_cseq += 1;
        self.a_cseq
    }

    /// A response to the caller's INVITE, with our tag, Contact (the caller's edge, so that
    /// in-dialog requests come back through it) and an optional SDP body.
    pub(super) fn a_response(
        &self,
        status: StatusCode,
        body: Option<(String, bytes::Bytes)>,
        reason: Option<&str>,
    ) -> Response {
        let mut response = build_response(&self.a_request, status, Some(&self.a_tag));
        if let Some(reason) = reason {
            response.reason = reason.to_owned();
        }
        if status.as_u16() < 300 && status.as_u16() > 100 {
            response.headers.push(
                HeaderName::Contact,
                super::messages::edge_contact(&self.a_flow),
            );
        }
        if let Some((content_type, body)) = body {
            response.headers.set(HeaderName::ContentType, content_type);
            response
                .headers
                .set(HeaderName::ContentLength, body.len().to_string());
            response.body = body;
        }
        response
    }

    pub(super) fn respond_a(&self, response: Response) -> Action {
        Action::Respond {
            edge_id: self.a_edge.clone(),
            handle: self.a_handle.clone(),
            response: Box::new(response),
        }
    }

    /// The status the caller gets when every leg failed (RFC 3261 §16.7 in spirit: busy if
    /// any callee was busy, else the first failure, with timeouts shown as 480).
    pub(super) fn best_failure(&self) -> StatusCode {
        let failures: Vec<u16> = self
            .legs
            .iter()
            .filter_map(|l| match l.state {
                LegState::Failed(s) => Some(s),
                _ => None,
            })
            .collect();
        if failures.contains(&486) {
            return StatusCode::BUSY_HERE;
        }
        if let Some(decline) = failures.iter().find(|s| **s >= 600) {
            return StatusCode::new(*decline).unwrap_or(StatusCode::DECLINE);
        }
        match failures.first() {
            Some(408) | Some(503) | None => StatusCode::TEMPORARILY_UNAVAILABLE,
            Some(s) => StatusCode::new(*s).unwrap_or(StatusCode::TEMPORARILY_UNAVAILABLE),
        }
    }

    pub(super) fn record(
        &self,
        start: Instant,
        now: Instant,
        outcome: &'static str,
        status: u16,
    ) -> CallRecord {
        let since = |t: Instant| t.saturating_duration_since(start);
        CallRecord {
            call_id: self.a_call_id.clone(),
            caller: self.caller.clone(),
            callee: self.callee.clone(),
            answered_by: self
                .winner
                .and_then(|winner| self.legs.get(winner))
                .map(|leg| leg.target.aor.clone()),
            started: since(self.started),
            answered: self.answered_at.map(since),
            ended: since(now),
            outcome,
            status,
            cause: None,
        }
    }
}
