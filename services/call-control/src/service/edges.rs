//! Requests to phones behind a dead edge (ADR 0020). Call-control sends to a phone through the
//! edge holding its flow (ADR 0011); when that edge stopped beating, the request would go
//! nowhere — a BYE relayed to a phone whose edge died leaves that phone in a call nobody
//! ends. Such a request goes instead through the phone's binding on a live edge (the phone
//! registered again through its secondary proxy), and the call's leg follows; when the phone
//! has not come back yet, the request waits (tried again each second) for at most
//! [`PARK_PATIENCE`], as long as a client transaction would have tried (RFC 3261 Timer F).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use proto::v1::Flow;
use sip_msg::Request;

use super::{Service, now, unix_secs};

/// How long a request waits for its phone to come back through a live edge.
pub(super) const PARK_PATIENCE: Duration = Duration::from_secs(32);

/// How long a sent request stays in the journal: longer than an edge takes to be declared
/// dead (three heartbeats).
const JOURNAL_SPAN: Duration = Duration::from_secs(5);

/// Requests sent in the last [`JOURNAL_SPAN`] that no result answered: those sent to an edge
/// that turns out dead go again around it. Bytes, not parsed requests: recording is on the
/// call path, replaying is rare.
#[derive(Debug, Default)]
pub(super) struct Journal {
    sent: HashMap<String, (Bytes, Flow)>,
    order: VecDeque<(Instant, String)>,
}

impl Journal {
    pub(super) fn record(&mut self, now: Instant, call_ref: &str, message: Bytes, flow: Flow) {
        while let Some((at, _)) = self.order.front()
            && now.saturating_duration_since(*at) > JOURNAL_SPAN
        {
            if let Some((_, old)) = self.order.pop_front() {
                self.sent.remove(&old);
            }
        }
        self.sent.insert(call_ref.to_owned(), (message, flow));
        self.order.push_back((now, call_ref.to_owned()));
    }

    /// A result came for `call_ref`: its edge is alive and handling it.
    pub(super) fn answered(&mut self, call_ref: &str) {
        self.sent.remove(call_ref);
    }

    /// The unanswered requests sent through `edge_id`, taken out of the journal.
    pub(super) fn take_sent_through(&mut self, edge_id: &str) -> Vec<(String, Bytes, Flow)> {
        let refs: Vec<String> = self
            .sent
            .iter()
            .filter(|(_, (_, flow))| flow.edge_id == edge_id)
            .map(|(call_ref, _)| call_ref.clone())
            .collect();
        refs.into_iter()
            .filter_map(|call_ref| {
                let (message, flow) = self.sent.remove(&call_ref)?;
                Some((call_ref, message, flow))
            })
            .collect()
    }
}

/// A request waiting for its phone.
#[derive(Debug)]
pub(super) struct Parked {
    pub(super) call_ref: String,
    pub(super) request: Request,
    pub(super) flow: Flow,
    pub(super) give_up: tokio::time::Instant,
}

/// The user part of a URI (`sip:user@host…`).
fn user_of(uri: &str) -> Option<&str> {
    let rest = uri.split_once(':')?.1;
    let (user, _) = rest.split_once('@')?;
    Some(user.split(';').next().unwrap_or(user))
}

impl Service {
    /// Where `request` must go instead of `flow`'s dead edge: the phone's binding with the
    /// request's target as Contact on a live edge (or, failing that, any of the AOR's on a live
    /// edge). None: the phone has not registered through a live edge yet.
    pub(super) fn live_flow_for(&self, request: &Request, flow: &Flow) -> Option<Flow> {
        let target = request.uri.to_string();
        // The AOR is the device's username at our domain: the target's user part is it for
        // the phones we know, the To header's for requests towards a caller.
        let to = request
            .headers
            .to_header()
            .ok()
            .flatten()
            .map(|t| t.uri.to_string())
            .unwrap_or_default();
        let mut fallback = None;
        for user in [user_of(&target), user_of(&to)].into_iter().flatten() {
            let aor = format!("sip:{user}@{}", self.config.domain);
            for binding in self.location.lookup(&aor, unix_secs()) {
                if binding.flow.edge_id == flow.edge_id
                    || self.edges_alive.is_dead(&binding.flow.edge_id)
                    || self.follower.failed().contains(&binding.flow.datacenter)
                {
                    continue;
                }
                if binding.binding.contact.to_string() == target {
                    return Some(binding.flow);
                }
                fallback.get_or_insert(binding.flow);
            }
        }
        fallback
    }

    /// Sends `request` through its edge, or around it when that edge is dead (see the module
    /// comment); the call's leg is pointed at the new flow.
    pub(super) async fn send_via_live_edge(
        &mut self,
        call_ref: String,
        request: Request,
        flow: Flow,
    ) -> Result<(), bus::BusError> {
        if !self.edges_alive.is_dead(&flow.edge_id) {
            return self.publish_send(call_ref, &request, flow).await;
        }
        match self.live_flow_for(&request, &flow) {
            Some(live) => {
                self.follow_phone(&request, &live);
                self.publish_send(call_ref, &request, live).await
            }
            None => {
                tracing::info!(
                    method = %request.method,
                    edge = %flow.edge_id,
                    "the phone's edge is dead: the request waits for the phone to come back"
                );
                self.parked.push(Parked {
                    call_ref,
                    request,
                    flow,
                    give_up: tokio::time::Instant::from_std(now()) + PARK_PATIENCE,
                });
                Ok(())
            }
        }
    }

    /// Points the call's leg the request goes to at `flow`.
    fn follow_phone(&mut self, request: &Request, flow: &Flow) {
        let Some(call_id) = request.headers.call_id() else {
            return;
        };
        let to_caller = self.core.caller_call_id(call_id) == Some(call_id);
        if to_caller {
            self.core.rehome(call_id, Some(flow.clone()), None);
        } else {
            self.core.rehome(call_id, None, Some(flow.clone()));
        }
    }

    /// `edge_id` was declared dead: what was sent through it lately and never answered goes
    /// again around it (a BYE sent just before an edge died would otherwise be lost).
    pub(super) async fn resend_around(&mut self, edge_id: &str) {
        for (call_ref, message, flow) in self.journal.take_sent_through(edge_id) {
            let Ok(sip_msg::SipMessage::Request(request)) = sip_msg::parse_datagram(&message)
            else {
                continue;
            };
            tracing::info!(method = %request.method, edge = %edge_id, "sent through an edge that died: sending again around it");
            if let Err(e) = self.send_via_live_edge(call_ref, request, flow).await {
                tracing::warn!(error = %e, "bus publish failed");
            }
        }
    }

    /// Parked requests whose phone came back (or whose edge beats again) go out; those waiting
    /// too long are dropped.
    pub(super) async fn retry_parked(&mut self) {
        let now = tokio::time::Instant::from_std(now());
        for parked in std::mem::take(&mut self.parked) {
            // The edge is back (it was cut off, not dead: a partition): through it, then.
            let live = if self.edges_alive.is_dead(&parked.flow.edge_id) {
                self.live_flow_for(&parked.request, &parked.flow)
            } else {
                Some(parked.flow.clone())
            };
            if let Some(live) = live {
                self.follow_phone(&parked.request, &live);
                if let Err(e) = self
                    .publish_send(parked.call_ref, &parked.request, live)
                    .await
                {
                    tracing::warn!(error = %e, "bus publish failed");
                }
            } else if now >= parked.give_up {
                tracing::warn!(
                    method = %parked.request.method,
                    "the phone never came back through a live edge: request dropped"
                );
            } else {
                self.parked.push(parked);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::user_of;

    #[test]
    fn the_user_of_a_uri() {
        assert_eq!(user_of("sip:p1101@127.0.0.1:5060"), Some("p1101"));
        assert_eq!(user_of("sip:alice;x=1@host"), Some("alice"));
        assert_eq!(user_of("sips:bob@example.com;transport=tls"), Some("bob"));
        assert_eq!(user_of("sip:example.com"), None);
    }
}
