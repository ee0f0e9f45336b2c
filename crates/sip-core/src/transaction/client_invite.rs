//! The INVITE client transaction (RFC 3261 §17.1.1 as amended by RFC 6026 §7.2):
//! Calling → Proceeding → Accepted | Completed → Terminated, with Timers A, B, D and M.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use sip_msg::{Request, Response};

use super::context::{Ctx, Step};
use super::io::Event;
use super::io::TransactionState;
use super::messages::build_ack_for_non_2xx;
use super::timer_queue::TimerSlot;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Calling,
    Proceeding,
    /// A 2xx arrived: further 2xx (retransmissions, other forks) go to the TU until Timer M.
    Accepted,
    /// A non-2xx final arrived and was ACKed: its retransmissions are ACKed again until D.
    Completed,
}

impl State {
    pub(crate) fn public(self) -> TransactionState {
        match self {
            State::Calling => TransactionState::Calling,
            State::Proceeding => TransactionState::Proceeding,
            State::Accepted => TransactionState::Accepted,
            State::Completed => TransactionState::Completed,
        }
    }
}

#[derive(Debug)]
pub(crate) struct ClientInvite {
    pub(crate) state: State,
    /// The INVITE, kept to build the ACK for a non-2xx (§17.1.1.3) and the CANCEL (§9.1).
    pub(crate) request: Request,
    wire: Bytes,
    /// Timer A's current interval.
    interval: Duration,
    ack: Option<Bytes>,
}

impl ClientInvite {
    /// Sends the INVITE and arms A (unreliable only) and B (§17.1.1.2).
    pub(crate) fn start(request: Request, wire: Bytes, ctx: &mut Ctx<'_>) -> ClientInvite {
        ctx.send(wire.clone());
        let interval = ctx.t1();
        if !ctx.reliable() {
            ctx.arm(TimerSlot::Retransmit, interval);
        }
        ctx.arm(TimerSlot::Timeout, ctx.t1_x64());
        ClientInvite {
            state: State::Calling,
            request,
            wire,
            interval,
            ack: None,
        }
    }

    pub(crate) fn on_timer(&mut self, slot: TimerSlot, ctx: &mut Ctx<'_>) -> Step {
        match (slot, self.state) {
            // Timer A: retransmit and double, without cap (B ends it).
            (TimerSlot::Retransmit, State::Calling) => {
                ctx.send(self.wire.clone());
                self.interval *= 2;
                ctx.arm(TimerSlot::Retransmit, self.interval);
                Step::Continue
            }
            // Timer B: no response at all.
            (TimerSlot::Timeout, State::Calling) => {
                ctx.event(Event::Timeout { key: ctx.key });
                Step::Terminate
            }
            // Timer D (Completed) or M (Accepted).
            (TimerSlot::Linger, State::Completed | State::Accepted) => Step::Terminate,
            _ => Step::Continue,
        }
    }

    pub(crate) fn on_response(
        &mut self,
        response: Response,
        source: SocketAddr,
        ctx: &mut Ctx<'_>,
    ) -> Step {
        let status = response.status;
        match self.state {
            State::Calling | State::Proceeding => {
                if status.is_provisional() {
                    self.state = State::Proceeding;
                    ctx.disarm(TimerSlot::Retransmit);
                    ctx.disarm(TimerSlot::Timeout);
                    self.pass_up(response, source, ctx);
                    Step::Continue
                } else if status.is_success() {
                    self.state = State::Accepted;
                    ctx.disarm(TimerSlot::Retransmit);
                    ctx.disarm(TimerSlot::Timeout);
                    ctx.arm(TimerSlot::Linger, ctx.t1_x64());
                    self.pass_up(response, source, ctx);
                    Step::Continue
                } else {
                    self.state = State::Completed;
                    ctx.disarm(TimerSlot::Retransmit);
                    ctx.disarm(TimerSlot::Timeout);
                    if let Some(ack) = build_ack_for_non_2xx(&self.request, &response) {
                        let wire = Bytes::from(ack.to_bytes());
                        ctx.send(wire.clone());
                        self.ack = Some(wire);
                    }
                    self.pass_up(response, source, ctx);
                    ctx.linger(ctx.config.timers.timer_d)
                }
            }
            State::Accepted => {
                if status.is_success() {
                    self.pass_up(response, source, ctx);
                }
                Step::Continue
            }
            State::Completed => {
                if status.is_final()
                    && !status.is_success()
                    && let Some(ack) = &self.ack
                {
                    ctx.send(ack.clone());
                }
                Step::Continue
            }
        }
    }

    fn pass_up(&self, response: Response, source: SocketAddr, ctx: &mut Ctx<'_>) {
        ctx.event(Event::Response {
            key: ctx.key,
            response: Box::new(response),
            source,
        });
    }

    /// §17.1.1.2: a transport failure while we still send ends the transaction.
    pub(crate) fn on_transport_error(&mut self, ctx: &mut Ctx<'_>) -> Step {
        match self.state {
            State::Calling | State::Proceeding | State::Completed => {
                ctx.event(Event::TransportError { key: ctx.key });
                Step::Terminate
            }
            State::Accepted => Step::Continue,
        }
    }
}
