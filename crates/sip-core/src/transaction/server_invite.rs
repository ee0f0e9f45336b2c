//! The INVITE server transaction (RFC 3261 §17.2.1 as amended by RFC 6026 §7.1):
//! Proceeding → Completed → Confirmed, or Proceeding → Accepted, then Terminated; Timers G,
//! H, I, L and the 200 ms 100-Trying delay.

use std::time::Duration;

use bytes::Bytes;
use sip_msg::{Method, Request, Response, StatusCode};

use super::context::{Ctx, Step};
use super::error::TransactionError;
use super::io::Event;
use super::io::TransactionState;
use super::key::to_tag;
use super::messages::build_trying;
use super::timer_queue::TimerSlot;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Proceeding,
    /// A non-2xx final was sent; retransmitted until the ACK (Timer G) or Timer H.
    Completed,
    /// The ACK arrived; later ones are absorbed until Timer I.
    Confirmed,
    /// A 2xx was sent: the TU retransmits it through us; ACKs go to the TU (until Timer L).
    Accepted,
}

impl State {
    pub(crate) fn public(self) -> TransactionState {
        match self {
            State::Proceeding => TransactionState::Proceeding,
            State::Completed => TransactionState::Completed,
            State::Confirmed => TransactionState::Confirmed,
            State::Accepted => TransactionState::Accepted,
        }
    }
}

/// What an ACK matching this transaction amounts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckOutcome {
    /// Consumed by the transaction (retransmission, or the ACK for our non-2xx).
    Absorbed(Step),
    /// An ACK for the 2xx: the dialog's business.
    PassUp,
}

#[derive(Debug)]
pub(crate) struct ServerInvite {
    pub(crate) state: State,
    /// Via, From, To, Call-ID, CSeq and Timestamp of the INVITE: enough to build the 100.
    skeleton: Request,
    /// To tag of the INVITE (RFC 2543 retransmission matching).
    pub(crate) request_to_tag: Box<str>,
    /// To tag of our last response (RFC 2543 ACK matching, and the 200 to a CANCEL, §9.2).
    pub(crate) response_to_tag: Box<str>,
    /// The last provisional (Proceeding) or the final (Completed) response, for
    /// retransmission.
    last_response: Option<Bytes>,
    /// Timer G's current interval.
    interval: Duration,
}

impl ServerInvite {
    /// Arms the 100-Trying delay (§17.2.1), or sends the 100 at once when it is zero.
    pub(crate) fn start(skeleton: Request, ctx: &mut Ctx<'_>) -> ServerInvite {
        let mut tx = ServerInvite {
            state: State::Proceeding,
            request_to_tag: to_tag(&skeleton.headers),
            response_to_tag: Box::default(),
            skeleton,
            last_response: None,
            interval: ctx.t1(),
        };
        if ctx.config.trying_delay.is_zero() {
            tx.send_trying(ctx);
        } else {
            ctx.arm(TimerSlot::Trying, ctx.config.trying_delay);
        }
        tx
    }

    fn send_trying(&mut self, ctx: &mut Ctx<'_>) {
        let wire = Bytes::from(build_trying(&self.skeleton).to_bytes());
        ctx.send(wire.clone());
        ctx.own
            .record(Some(Method::Invite), StatusCode::TRYING.as_u16());
        self.last_response = Some(wire);
    }

    pub(crate) fn on_timer(&mut self, slot: TimerSlot, ctx: &mut Ctx<'_>) -> Step {
        match (slot, self.state) {
            (TimerSlot::Trying, State::Proceeding) if self.last_response.is_none() => {
                self.send_trying(ctx);
                Step::Continue
            }
            // Timer G: retransmit the non-2xx final, doubling capped at T2.
            (TimerSlot::Retransmit, State::Completed) => {
                if let Some(wire) = &self.last_response {
                    ctx.send(wire.clone());
                }
                self.interval = (self.interval * 2).min(ctx.t2());
                ctx.arm(TimerSlot::Retransmit, self.interval);
                Step::Continue
            }
            // Timer H: the ACK never came.
            (TimerSlot::Timeout, State::Completed) => {
                ctx.event(Event::Timeout { key: ctx.key });
                Step::Terminate
            }
            // Timer I (Confirmed) or L (Accepted).
            (TimerSlot::Linger, State::Confirmed | State::Accepted) => Step::Terminate,
            _ => Step::Continue,
        }
    }

    /// A retransmission of the INVITE: repeat the last response we sent (§17.2.1); absorbed
    /// in Confirmed and Accepted (RFC 6026 §8.6).
    pub(crate) fn on_retransmission(&mut self, ctx: &mut Ctx<'_>) {
        if matches!(self.state, State::Proceeding | State::Completed)
            && let Some(wire) = &self.last_response
        {
            ctx.send(wire.clone());
        }
    }

    pub(crate) fn on_ack(&mut self, ctx: &mut Ctx<'_>) -> AckOutcome {
        match self.state {
            State::Completed => {
                self.state = State::Confirmed;
                ctx.disarm(TimerSlot::Retransmit);
                ctx.disarm(TimerSlot::Timeout);
                AckOutcome::Absorbed(ctx.linger(ctx.t4()))
            }
            State::Accepted => AckOutcome::PassUp,
            State::Proceeding | State::Confirmed => AckOutcome::Absorbed(Step::Continue),
        }
    }

    /// A response from the TU.
    pub(crate) fn send_response(
        &mut self,
        response: &Response,
        ctx: &mut Ctx<'_>,
    ) -> Result<Step, TransactionError> {
        let status = response.status;
        let allowed = match self.state {
            State::Proceeding => true,
            State::Accepted => status.is_success(),
            State::Completed | State::Confirmed => false,
        };
        if !allowed {
            return Err(TransactionError::InvalidState {
                state: self.state.public(),
            });
        }
        let wire = Bytes::from(response.to_bytes());
        ctx.send(wire.clone());
        ctx.disarm(TimerSlot::Trying);
        let tag = to_tag(&response.headers);
        if !tag.is_empty() {
            self.response_to_tag = tag;
        }
        if self.state == State::Accepted || status.is_provisional() {
            if status.is_provisional() {
                self.last_response = Some(wire);
            }
            return Ok(Step::Continue);
        }
        if status.is_success() {
            self.state = State::Accepted;
            self.last_response = None;
            ctx.arm(TimerSlot::Linger, ctx.t1_x64());
        } else {
            self.state = State::Completed;
            self.last_response = Some(wire);
            if !ctx.reliable() {
                ctx.arm(TimerSlot::Retransmit, self.interval);
            }
            ctx.arm(TimerSlot::Timeout, ctx.t1_x64());
        }
        Ok(Step::Continue)
    }

    /// §17.2.1: a failure to send a response ends the transaction; in Accepted the failed
    /// send was the TU's 2xx, which the TU handles, so the transaction stays.
    pub(crate) fn on_transport_error(&mut self, ctx: &mut Ctx<'_>) -> Step {
        ctx.event(Event::TransportError { key: ctx.key });
        match self.state {
            State::Accepted => Step::Continue,
            _ => Step::Terminate,
        }
    }
}
