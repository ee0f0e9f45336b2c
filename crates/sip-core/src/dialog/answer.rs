//! Reliability of a 2xx to INVITE (§13.3.1.4, RFC 6026): the UAS core, not the transaction,
//! resends the 2xx at T1, 2·T1, … capped at T2, whatever the transport, until the ACK
//! arrives; after 64·T1 without an ACK it gives up and the TU must end the session (BYE).

use std::time::{Duration, Instant};

use sip_msg::{HeaderName, Method, Request, Response};

use super::{DialogError, call_id, required};
use crate::TimerConfig;

/// What the retransmitter tells the TU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerEvent {
    /// The ACK arrived: retransmissions stopped.
    Acknowledged,
    /// No ACK within 64·T1: the dialog is confirmed but the session should be ended by BYE.
    NoAck,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Waiting,
    Done,
}

/// Resends one 2xx until its ACK. Shape of every sans-IO machine here: feed
/// [`handle_timeout`](Self::handle_timeout) at [`next_timeout`](Self::next_timeout) and
/// [`handle_ack`](Self::handle_ack) on ACKs, then drain [`poll_transmit`](Self::poll_transmit)
/// and [`poll_event`](Self::poll_event).
#[derive(Debug, Clone)]
pub struct AnswerRetransmitter {
    response: Response,
    call_id: String,
    seq: u32,
    t2: Duration,
    interval: Duration,
    next_retransmit: Instant,
    give_up_at: Instant,
    phase: Phase,
    transmit_pending: bool,
    event: Option<AnswerEvent>,
}

impl AnswerRetransmitter {
    /// Starts after the first transmission of `response` (a 2xx to INVITE) at `now`; that
    /// first send is the server transaction's, the retransmissions are ours.
    pub fn new(
        response: Response,
        now: Instant,
        timers: TimerConfig,
    ) -> Result<AnswerRetransmitter, DialogError> {
        let cseq = required(response.headers.cseq(), HeaderName::CSeq)?;
        if !response.status.is_success() || cseq.method != Method::Invite {
            return Err(DialogError::NotInvite2xx);
        }
        Ok(AnswerRetransmitter {
            call_id: call_id(&response.headers)?,
            seq: cseq.seq,
            response,
            t2: timers.t2,
            interval: timers.t1,
            next_retransmit: now + timers.t1,
            give_up_at: now + timers.t1_x64(),
            phase: Phase::Waiting,
            transmit_pending: false,
            event: None,
        })
    }

    /// Advances the clock: queues a retransmission when due (several overdue ones collapse
    /// into one), or gives up at 64·T1.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.phase != Phase::Waiting {
            return;
        }
        if now >= self.give_up_at {
            self.phase = Phase::Done;
            self.transmit_pending = false;
            self.event = Some(AnswerEvent::NoAck);
            return;
        }
        while self.next_retransmit <= now {
            self.transmit_pending = true;
            self.interval = (self.interval * 2).min(self.t2);
            self.next_retransmit += self.interval;
        }
    }

    /// Offers an ACK; returns true when it acknowledges this 2xx (same Call-ID and CSeq
    /// number), which stops the retransmissions.
    pub fn handle_ack(&mut self, ack: &Request) -> bool {
        let matches = ack.method == Method::Ack
            && ack.headers.call_id() == Some(self.call_id.as_str())
            && ack
                .headers
                .cseq()
                .ok()
                .flatten()
                .is_some_and(|c| c.seq == self.seq);
        if matches && self.phase == Phase::Waiting {
            self.phase = Phase::Done;
            self.transmit_pending = false;
            self.event = Some(AnswerEvent::Acknowledged);
        }
        matches
    }

    /// The 2xx to send again, when a retransmission is due.
    pub fn poll_transmit(&mut self) -> Option<Response> {
        std::mem::take(&mut self.transmit_pending).then(|| self.response.clone())
    }

    pub fn poll_event(&mut self) -> Option<AnswerEvent> {
        self.event.take()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next; `None` once finished.
    pub fn next_timeout(&self) -> Option<Instant> {
        (self.phase == Phase::Waiting).then(|| self.next_retransmit.min(self.give_up_at))
    }

    /// True once acknowledged or given up.
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Done
    }
}
