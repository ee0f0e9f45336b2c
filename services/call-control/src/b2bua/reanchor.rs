//! Moving an answered call (ADR 0020): when a datacenter is lost, the replica taking its calls
//! over points each leg at a flow through a surviving edge ([`B2bua::rehome`]) and, when the
//! call's media relay died, sends both phones a new offer naming a new relay session
//! ([`B2bua::reoffer`]). The new offers are our own re-INVITEs: their answers go to nobody
//! (the relay learns each phone's address from the offer the service rewrote and from the
//! phone's first packet), and a phone that no longer knows the dialog (481, or no answer at all:
//! 408) ends the call, since half a call nobody can reach is worse than none.

use std::time::Instant;

use bytes::Bytes;
use proto::v1::Flow;
use sip_msg::{HeaderName, Method};

use super::call::Call;
use super::messages;
use super::{Action, B2bua, EstablishedCall, Relayed};

/// The cause in the record of a call ended because a phone refused (481) or never answered
/// (408) the offer moving its media.
pub const CAUSE_REANCHOR_FAILED: &str = "reanchor-failed";

/// Why [`B2bua::reoffer`] sent nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReofferError {
    #[error("no such call here")]
    Unknown,
    #[error("the call is not answered")]
    NotAnswered,
    /// An offer (a phone's re-INVITE or UPDATE, or ours) is in progress: try again later
    /// (RFC 3261 §14.2: one offer at a time).
    #[error("an offer is in progress on the call")]
    OfferPending,
}

impl B2bua {
    /// The stored form of an answered call held here (any leg's Call-ID).
    pub fn snapshot_of(&self, call_id: &str) -> Option<EstablishedCall> {
        let id = self.by_call_id.get(call_id)?;
        self.calls.get(id)?.snapshot()
    }

    /// Points the caller's side and/or the answered callee's side of a call at new flows (the
    /// phone registered again through another edge). Later requests to that phone go through
    /// the new flow's edge, and our Contact in them names that edge. False for an unknown or
    /// unanswered call.
    pub fn rehome(
        &mut self,
        call_id: &str,
        caller_flow: Option<Flow>,
        callee_flow: Option<Flow>,
    ) -> bool {
        let Some(call) = self
            .by_call_id
            .get(call_id)
            .and_then(|id| self.calls.get_mut(id))
        else {
            return false;
        };
        let Some(winner) = call.winner else {
            return false;
        };
        if let Some(flow) = caller_flow {
            call.a_edge = flow.edge_id.clone();
            call.a_flow = flow;
        }
        if let Some(flow) = callee_flow {
            call.legs[winner].target.flow = flow;
        }
        true
    }

    /// Sends each phone of an answered call a re-INVITE carrying a new offer: `to_caller`
    /// describes the callee's side as the caller must now reach it, `to_callee` the caller's
    /// side (an empty body skips that phone). The answers are ACKed and go nowhere else.
    pub fn reoffer(
        &mut self,
        call_id: &str,
        to_caller: Bytes,
        to_callee: Bytes,
    ) -> Result<Vec<Action>, ReofferError> {
        let id = *self.by_call_id.get(call_id).ok_or(ReofferError::Unknown)?;
        let winner = self
            .calls
            .get(&id)
            .ok_or(ReofferError::Unknown)?
            .winner
            .ok_or(ReofferError::NotAnswered)?;
        if self.relays.values().any(|r| r.call == id && r.is_offer()) {
            return Err(ReofferError::OfferPending);
        }
        let mut out = Vec::new();
        for (towards, body) in [(None, to_caller), (Some(winner), to_callee)] {
            if body.is_empty() {
                continue;
            }
            let call_ref = self.new_ref(id, towards);
            let branch = self.ids.branch();
            let instance = self.config.instance.clone();
            let Some(call) = self.calls.get_mut(&id) else {
                break;
            };
            let (mut invite, cseq, flow) = own_invite(call, towards, &instance, &branch);
            invite
                .headers
                .push(HeaderName::Contact, messages::edge_contact(&flow));
            messages::set_body(&mut invite, "application/sdp", body);
            self.relays.insert(
                call_ref.clone(),
                Relayed {
                    call: id,
                    request: invite.clone(),
                    // No edge transaction to answer: the offer is ours.
                    edge_id: String::new(),
                    handle: String::new(),
                    towards,
                    cseq,
                    timer: None,
                },
            );
            out.push(Action::Send {
                call_ref,
                request: Box::new(invite),
                flow,
            });
        }
        Ok(out)
    }

    /// The final answer to one of our own offers (`relay.handle` empty): 481 or 408 end the
    /// call (the phone lost the dialog, or cannot be reached); other failures leave it as it
    /// was. Returns false when the relay was a phone's request (the caller answers it).
    pub(super) fn own_offer_failed(
        &mut self,
        now: Instant,
        relay: &Relayed,
        status: u16,
        out: &mut Vec<Action>,
    ) -> bool {
        if !relay.handle.is_empty() {
            return false;
        }
        if matches!(status, 408 | 481) {
            tracing::warn!(
                status,
                "a phone refused the offer moving its media: ending the call"
            );
            let reason = format!("SIP;cause={status};text=\"media could not be moved\"");
            self.end_answered(now, relay.call, &reason, CAUSE_REANCHOR_FAILED, out);
        } else if status >= 300 {
            tracing::warn!(status, "a phone refused the offer moving its media");
        }
        true
    }

    /// A phone's in-dialog request came through another edge than its stored flow's (it
    /// registered again elsewhere after its edge was lost): send to it that way from now on.
    pub(super) fn follow_flow(&mut self, id: u64, from_caller: bool, flow: Flow) {
        if flow.edge_id.is_empty() {
            return; // an in-process caller without a flow: nothing learnt
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(winner) = call.winner else {
            return;
        };
        if from_caller {
            if call.a_flow.edge_id != flow.edge_id {
                call.a_edge = flow.edge_id.clone();
                call.a_flow = flow;
            }
        } else if call.legs[winner].target.flow.edge_id != flow.edge_id {
            call.legs[winner].target.flow = flow;
        }
    }
}

/// Our re-INVITE towards the caller (`towards` None) or a callee leg: the request, its CSeq
/// and the flow it goes through.
fn own_invite(
    call: &mut Call,
    towards: Option<usize>,
    instance: &str,
    branch: &str,
) -> (sip_msg::Request, u32, Flow) {
    match towards {
        Some(index) => {
            let leg = &mut call.legs[index];
            let cseq = leg.next_cseq();
            let invite = messages::in_dialog_b(leg, Method::Invite, cseq, instance, branch);
            (invite, cseq, leg.target.flow.clone())
        }
        None => {
            let cseq = call.next_a_cseq();
            let invite = messages::to_caller(call, Method::Invite, cseq, instance, branch);
            (invite, cseq, call.a_flow.clone())
        }
    }
}
