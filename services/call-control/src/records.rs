//! Call records (ADR 0013): what the core reports when a call ends, completed with what only
//! the service knows (sites, wall-clock times, the refusal's reason), then appended to the CDR
//! file as a JSON line and published on the bus as a `CallRecord`.
//!
//! The core measures times on its monotonic clock from its own start; the record needs wall
//! time. The service converts at hang-up (ended = now, the others by their distance to it),
//! except for a call taken over from another replica, whose set-up and answer times come from
//! the stored snapshot (the new replica's core only saw the call from the takeover on).

use std::collections::HashMap;

use proto::v1::CallRecord;

use crate::b2bua::EstablishedCall;

/// Calls whose context is kept at most (a call always ends, but a bug must not grow memory).
const MAX_CONTEXTS: usize = 200_000;

/// What the service knows about a call beyond the core's record.
#[derive(Debug, Clone, Default)]
pub(crate) struct CallContext {
    pub(crate) caller_site: String,
    pub(crate) callee_site: String,
    /// Why the call was refused (the dial plan's reason), if it was.
    pub(crate) cause: String,
    /// Wall-clock set-up time (the INVITE's arrival, or the snapshot's for a call taken over)
    /// and answer time (known only for calls taken over; others derive it from the core).
    pub(crate) started_unix_ms: Option<u64>,
    pub(crate) answered_unix_ms: Option<u64>,
    /// For the set-up metrics: when the INVITE arrived (monotonic), whether the caller got its
    /// first ringing/answer (post-dial delay measured) and its final answer, and whether the
    /// call is answered (counted in the active calls).
    pub(crate) invite_at: Option<std::time::Instant>,
    pub(crate) alerted: bool,
    pub(crate) setup_done: bool,
    pub(crate) answered: bool,
}

/// What a response to the caller's initial INVITE means for the set-up metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum SetupProgress {
    /// The first ringing or answer: the post-dial delay, in seconds.
    Alerted(f64),
    /// The final answer (its status).
    Final(u16),
}

/// The contexts of the calls in progress on this replica, by the caller's Call-ID.
#[derive(Debug, Default)]
pub(crate) struct CallContexts {
    calls: HashMap<String, CallContext>,
    /// How many of them are answered (the active-calls gauge).
    answered: usize,
}

impl CallContexts {
    /// A new call (its INVITE resolved by the dial plan).
    pub(crate) fn begin(&mut self, call_id: &str, context: CallContext) {
        if self.calls.len() >= MAX_CONTEXTS && !self.calls.contains_key(call_id) {
            tracing::warn!(
                calls = self.calls.len(),
                "too many call contexts: record without sites"
            );
            return;
        }
        if context.answered {
            self.answered += 1;
        }
        if let Some(previous) = self.calls.insert(call_id.to_owned(), context)
            && previous.answered
        {
            self.answered -= 1;
        }
    }

    /// Writes what a replica taking the call over needs for the record into its snapshot.
    /// The first snapshot of a call is written when it is answered: `now_unix_ms` is then its
    /// answer time, kept for the later ones (session refreshes rewrite the snapshot).
    pub(crate) fn describe(
        &mut self,
        call_id: &str,
        snapshot: &mut EstablishedCall,
        now_unix_ms: u64,
    ) {
        if let Some(context) = self.calls.get_mut(call_id) {
            snapshot.caller_site = context.caller_site.clone();
            snapshot.callee_site = context.callee_site.clone();
            snapshot.started_unix_ms = context.started_unix_ms.unwrap_or(0);
            snapshot.answered_unix_ms = *context.answered_unix_ms.get_or_insert(now_unix_ms);
        } else {
            snapshot.answered_unix_ms = now_unix_ms;
        }
    }

    /// A response sent to the caller of `call_id` (its Call-ID): what it means for the set-up
    /// metrics, in order (a 200 can be both the first alert and the final answer).
    pub(crate) fn on_response(
        &mut self,
        call_id: &str,
        status: u16,
        now: std::time::Instant,
    ) -> Vec<SetupProgress> {
        let Some(context) = self.calls.get_mut(call_id) else {
            return Vec::new();
        };
        let mut progress = Vec::new();
        if context.setup_done || status < 180 {
            return progress;
        }
        if !context.alerted && (status < 300) {
            context.alerted = true;
            if let Some(at) = context.invite_at {
                progress.push(SetupProgress::Alerted(
                    now.saturating_duration_since(at).as_secs_f64(),
                ));
            }
        }
        if status >= 200 {
            context.setup_done = true;
            context.answered = status < 300;
            if context.answered {
                self.answered += 1;
            }
            progress.push(SetupProgress::Final(status));
        }
        progress
    }

    /// Whether `call_id` is a caller's Call-ID of a call in progress here.
    pub(crate) fn contains(&self, call_id: &str) -> bool {
        self.calls.contains_key(call_id)
    }

    /// Answered calls this replica holds.
    pub(crate) fn answered(&self) -> usize {
        self.answered
    }

    /// A call taken over from the store.
    pub(crate) fn adopt(&mut self, call_id: &str, snapshot: &EstablishedCall) {
        let known = |ms: u64| (ms != 0).then_some(ms);
        self.begin(
            call_id,
            CallContext {
                caller_site: snapshot.caller_site.clone(),
                callee_site: snapshot.callee_site.clone(),
                cause: String::new(),
                started_unix_ms: known(snapshot.started_unix_ms),
                answered_unix_ms: known(snapshot.answered_unix_ms),
                // Set up (and counted) by the replica that answered it.
                setup_done: true,
                alerted: true,
                answered: true,
                ..CallContext::default()
            },
        );
    }

    /// The call ended: its context, forgotten.
    pub(crate) fn end(&mut self, call_id: &str) -> CallContext {
        let context = self.calls.remove(call_id).unwrap_or_default();
        if context.answered {
            self.answered -= 1;
        }
        context
    }
}

/// The full record of a call the core reported ended at wall time `now_unix_ms`.
pub(crate) fn complete(
    record: &crate::b2bua::CallRecord,
    context: CallContext,
    instance: &str,
    now_unix_ms: u64,
) -> CallRecord {
    let before_end = |at: std::time::Duration| {
        let ago = record.ended.saturating_sub(at).as_millis() as u64;
        now_unix_ms.saturating_sub(ago)
    };
    let started = context
        .started_unix_ms
        .unwrap_or_else(|| before_end(record.started));
    let answered = match (record.answered, context.answered_unix_ms) {
        (_, Some(at)) => at,
        (Some(at), None) => before_end(at),
        (None, None) => 0,
    };
    // The core's cause (a call it ended itself) over the service's (a refusal's reason).
    let cause = match record.cause {
        Some(cause) => cause.to_owned(),
        None => context.cause,
    };
    CallRecord {
        call_id: record.call_id.clone(),
        caller: record.caller.clone(),
        callee: record.callee.clone(),
        answered_by: record.answered_by.clone().unwrap_or_default(),
        caller_site: context.caller_site,
        callee_site: context.callee_site,
        started_unix_ms: started,
        answered_unix_ms: answered,
        ended_unix_ms: now_unix_ms,
        outcome: record.outcome.to_owned(),
        status: u32::from(record.status),
        cause,
        instance: instance.to_owned(),
    }
}

/// A record as one JSON line of the CDR file (ADR 0013 lists the fields).
pub(crate) fn json_line(record: &CallRecord) -> String {
    let duration_ms = if record.answered_unix_ms == 0 {
        0
    } else {
        record.ended_unix_ms.saturating_sub(record.answered_unix_ms)
    };
    serde_json::json!({
        "ended_unix": record.ended_unix_ms / 1000,
        "call_id": record.call_id,
        "caller": record.caller,
        "callee": record.callee,
        "answered_by": record.answered_by,
        "caller_site": record.caller_site,
        "callee_site": record.callee_site,
        "started_unix_ms": record.started_unix_ms,
        "answered_unix_ms": record.answered_unix_ms,
        "ended_unix_ms": record.ended_unix_ms,
        "outcome": record.outcome,
        "status": record.status,
        "cause": record.cause,
        "answered": record.answered_unix_ms != 0,
        "duration_s": duration_ms as f64 / 1000.0,
        "instance": record.instance,
    })
    .to_string()
}
