//! The non-INVITE server transaction (RFC 3261 §17.2.2): Trying → Proceeding → Completed →
//! Terminated, with Timer J. CANCEL transactions, answered by the layer itself, use it too.

use bytes::Bytes;
use sip_msg::{Method, Response};

use super::context::{Ctx, Step};
use super::error::TransactionError;
use super::io::Event;
use super::io::TransactionState;

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
pub(crate) struct ServerNonInvite {
    pub(crate) state: State,
    /// The request's method: §17.2.3 compares it (the match index only knows "non-INVITE").
    pub(crate) method: Method,
    /// To tag of the request (RFC 2543 matching).
    pub(crate) request_to_tag: Box<str>,
    last_response: Option<Bytes>,
}

impl ServerNonInvite {
    pub(crate) fn new(method: Method, request_to_tag: Box<str>) -> ServerNonInvite {
        ServerNonInvite {
            state: State::Trying,
            method,
            request_to_tag,
            last_response: None,
        }
    }

    /// A retransmitted request: absorbed in Trying, answered with the last response after.
    pub(crate) fn on_retransmission(&mut self, ctx: &mut Ctx<'_>) {
        if let Some(wire) = &self.last_response {
            ctx.send(wire.clone());
        }
    }

    /// Timer J is the only timer.
    pub(crate) fn on_timer(&mut self) -> Step {
        match self.state {
            State::Completed => Step::Terminate,
            _ => Step::Continue,
        }
    }

    pub(crate) fn send_response(
        &mut self,
        response: &Response,
        ctx: &mut Ctx<'_>,
    ) -> Result<Step, TransactionError> {
        if self.state == State::Completed {
            return Err(TransactionError::InvalidState {
                state: self.state.public(),
            });
        }
        let wire = Bytes::from(response.to_bytes());
        ctx.send(wire.clone());
        self.last_response = Some(wire);
        if response.status.is_provisional() {
            self.state = State::Proceeding;
            return Ok(Step::Continue);
        }
        self.state = State::Completed;
        Ok(ctx.linger(ctx.t1_x64()))
    }

    /// §17.2.2: a failure to send a response ends the transaction.
    pub(crate) fn on_transport_error(&mut self, ctx: &mut Ctx<'_>) -> Step {
        ctx.event(Event::TransportError { key: ctx.key });
        Step::Terminate
    }
}
