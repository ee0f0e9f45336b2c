//! The non-INVITE client transaction (RFC 3261 §17.1.2): Trying → Proceeding → Completed →
//! Terminated, with Timers E, F and K.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use sip_msg::Response;

use super::context::{Ctx, Step};
use super::io::Event;
use super::io::TransactionState;
use super::timer_queue::TimerSlot;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Trying,
    Proceeding,
    Completed,
}

impl State {
    pub(crate) fn public(self) -> TransactionState {
        match self {
            State::Trying => TransactionState::Trying,
            State::Proceeding => TransactionState::Proceeding,
            State::Completed => TransactionState::Completed,
        }
    }
}

#[derive(Debug)]
pub(crate) struct ClientNonInvite {
    pub(crate) state: State,
    wire: Bytes,
    /// Timer E's current interval.
    interval: Duration,
}

impl ClientNonInvite {
    /// Sends the request and arms E (unreliable only) and F (§17.1.2.2).
    pub(crate) fn start(wire: Bytes, ctx: &mut Ctx<'_>) -> ClientNonInvite {
        ctx.send(wire.clone());
        let interval = ctx.t1();
        if !ctx.reliable() {
            ctx.arm(TimerSlot::Retransmit, interval);
        }
        ctx.arm(TimerSlot::Timeout, ctx.t1_x64());
        ClientNonInvite {
            state: State::Trying,
            wire,
            interval,
        }
    }

    pub(crate) fn on_timer(&mut self, slot: TimerSlot, ctx: &mut Ctx<'_>) -> Step {
        match (slot, self.state) {
            // Timer E: doubling capped at T2 in Trying, T2 flat in Proceeding.
            (TimerSlot::Retransmit, State::Trying | State::Proceeding) => {
                ctx.send(self.wire.clone());
                self.interval = match self.state {
                    State::Trying => (self.interval * 2).min(ctx.t2()),
                    _ => ctx.t2(),
                };
                ctx.arm(TimerSlot::Retransmit, self.interval);
                Step::Continue
            }
            // Timer F: no final response.
            (TimerSlot::Timeout, State::Trying | State::Proceeding) => {
                ctx.event(Event::Timeout { key: ctx.key });
                Step::Terminate
            }
            // Timer K.
            (TimerSlot::Linger, State::Completed) => Step::Terminate,
            _ => Step::Continue,
        }
    }

    pub(crate) fn on_response(
        &mut self,
        response: Response,
        source: SocketAddr,
        ctx: &mut Ctx<'_>,
    ) -> Step {
        if self.state == State::Completed {
            return Step::Continue;
        }
        let provisional = response.status.is_provisional();
        ctx.event(Event::Response {
            key: ctx.key,
            response: Box::new(response),
            source,
        });
        if provisional {
            self.state = State::Proceeding;
            return Step::Continue;
        }
        self.state = State::Completed;
        ctx.disarm(TimerSlot::Retransmit);
        ctx.disarm(TimerSlot::Timeout);
        ctx.linger(ctx.t4())
    }

    /// §17.1.2.2: a transport failure before the final response ends the transaction.
    pub(crate) fn on_transport_error(&mut self, ctx: &mut Ctx<'_>) -> Step {
        match self.state {
            State::Trying | State::Proceeding => {
                ctx.event(Event::TransportError { key: ctx.key });
                Step::Terminate
            }
            State::Completed => Step::Continue,
        }
    }
}
