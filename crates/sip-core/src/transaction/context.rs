//! What a state machine may do when it handles something: send on its transport, report to
//! the TU, arm or disarm its timers. The layer lends one [`Ctx`] per call.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sip_msg::Transport;

use super::TransactionConfig;
use super::io::{Event, Output};
use super::key::TransactionKey;
use super::own_responses::OwnResponses;
use super::timer_queue::{Deadlines, TimerQueue, TimerSlot};
use crate::Transmit;

/// Whether the transaction lives on after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Continue,
    /// Enter Terminated: the layer removes the transaction and reports it.
    Terminate,
}

pub(crate) struct Ctx<'a> {
    pub(crate) now: Instant,
    pub(crate) config: &'a TransactionConfig,
    pub(crate) key: TransactionKey,
    pub(crate) transport: &'a Transport,
    pub(crate) destination: SocketAddr,
    pub(crate) out: &'a mut VecDeque<Output>,
    /// Responses sent without the TU (the 100 Trying), for it to count.
    pub(crate) own: &'a mut OwnResponses,
    pub(crate) timers: &'a mut TimerQueue,
    pub(crate) deadlines: &'a mut Deadlines,
}

impl Ctx<'_> {
    /// TCP, TLS, SCTP, WebSocket: no retransmissions and zero linger timers (§17).
    pub(crate) fn reliable(&self) -> bool {
        self.transport.is_reliable()
    }

    pub(crate) fn send(&mut self, contents: Bytes) {
        self.out.push_back(Output::Transmit(Transmit {
            transport: self.transport.clone(),
            destination: self.destination,
            contents,
        }));
    }

    pub(crate) fn event(&mut self, event: Event) {
        self.out.push_back(Output::Event(event));
    }

    pub(crate) fn arm(&mut self, slot: TimerSlot, after: Duration) {
        self.timers
            .arm(self.deadlines, self.key, slot, self.now + after);
    }

    pub(crate) fn disarm(&mut self, slot: TimerSlot) {
        self.deadlines.clear(slot);
    }

    pub(crate) fn t1(&self) -> Duration {
        self.config.timers.t1
    }

    pub(crate) fn t2(&self) -> Duration {
        self.config.timers.t2
    }

    pub(crate) fn t4(&self) -> Duration {
        self.config.timers.t4
    }

    pub(crate) fn t1_x64(&self) -> Duration {
        self.config.timers.t1_x64()
    }

    /// Arms a linger timer (D, I, J, K) of `unreliable` length, or terminates at once on a
    /// reliable transport where the RFC sets it to zero.
    pub(crate) fn linger(&mut self, unreliable: Duration) -> Step {
        if self.reliable() {
            Step::Terminate
        } else {
            self.arm(TimerSlot::Linger, unreliable);
            Step::Continue
        }
    }
}
