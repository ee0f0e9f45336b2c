//! The service's side of moving calls (ADR 0020): following the failover announcement and the
//! media heartbeats, and for each stored call that `failover::plan_repair` says is this
//! replica's to move: claim it (compare-and-swap on both of its keys, so that exactly one
//! surviving replica does), point its legs at the phones' bindings through surviving edges,
//! and, when its relay is gone, allocate a new relay session and send both phones new offers.
//!
//! A call whose phones have not registered through a surviving edge yet cannot be offered
//! anything (a request through a lost edge goes nowhere): it waits in `pending` and is tried
//! again every second until its phones come back, for at most [`REHOME_PATIENCE`].

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use bus::BusMessage;
use bytes::Bytes;
use prost::Message as _;
use proto::v1::{FailoverState, Flow};
use sip_msg::SipMessage;
use store::{Compare, KeyValue, Op};

use super::{Service, now, unix_secs};
use crate::b2bua::{EstablishedCall, ReofferError};
use crate::failover::{Me, Repair, plan_repair};

/// The store key of the failover controller's state (operator/failover, ADR 0018).
pub(crate) const FAILOVER_STATE_KEY: &str = "calanque/v1/failover/state";

/// The prefix of the stored calls (ADR 0012).
pub(super) const CALLS_PREFIX: &str = "calanque/v1/calls/";

/// How often waiting calls are tried again.
pub(super) const RETRY_EVERY: Duration = Duration::from_secs(1);

/// How long a call waits for its phones to register through a surviving edge (phones retry
/// their registration against their secondary proxy within a minute or two).
pub(super) const REHOME_PATIENCE: Duration = Duration::from_secs(180);

/// One stored call: its snapshot and each of its keys with the revision read.
struct Stored {
    snapshot: EstablishedCall,
    keys: Vec<(String, i64)>,
}

/// The caller's Call-ID of a stored call.
fn caller_call_id(snapshot: &EstablishedCall) -> Option<String> {
    match sip_msg::parse_datagram(&snapshot.caller_invite).ok()? {
        SipMessage::Request(invite) => invite.headers.call_id().map(str::to_owned),
        SipMessage::Response(_) => None,
    }
}

/// The caller's user part and Contact, from its INVITE.
fn caller_identity(snapshot: &EstablishedCall) -> Option<(String, String)> {
    let SipMessage::Request(invite) = sip_msg::parse_datagram(&snapshot.caller_invite).ok()? else {
        return None;
    };
    let user = invite.headers.from_header().ok()??.uri.user?;
    let contact = match invite.headers.contacts().ok()? {
        Some(sip_msg::Contacts::List(list)) => list.first()?.uri.to_string(),
        _ => String::new(),
    };
    Some((user, contact))
}

/// A heartbeat (media relay or edge) for `liveness`.
fn observe_beat(liveness: &mut crate::liveness::Liveness, arrived: Instant, message: &BusMessage) {
    match telemetry::heartbeat::decode_heartbeat(message) {
        Ok(beat) => liveness.observe(
            arrived,
            &beat.id,
            &beat.datacenter,
            Duration::from_millis(u64::from(beat.interval_ms)),
        ),
        Err(e) => tracing::debug!(error = %e, "heartbeat dropped"),
    }
}

impl Service {
    /// The failover state stored before this replica started (it may have missed the
    /// announcement).
    pub(super) async fn read_failover_state(&mut self) {
        match self.store.get(FAILOVER_STATE_KEY).await {
            Ok(Some(kv)) => match FailoverState::decode(kv.value) {
                Ok(state) => {
                    self.follower.observe(&state);
                }
                Err(e) => tracing::warn!(error = %e, "undecodable stored failover state"),
            },
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "failover state not read"),
        }
    }

    /// An announcement of the failover controller: a datacenter newly marked failed moves
    /// the calls this replica must take.
    pub(super) async fn on_failover_state(&mut self, message: &BusMessage) {
        let state = match FailoverState::decode(message.payload.as_ref()) {
            Ok(state) => state,
            Err(e) => {
                tracing::warn!(error = %e, "undecodable failover state dropped");
                return;
            }
        };
        let newly_failed = self.follower.observe(&state);
        if newly_failed.is_empty() {
            return;
        }
        tracing::info!(
            failed = ?newly_failed,
            epoch = state.epoch,
            active = %state.active_datacenter,
            "datacenter marked failed: moving its calls"
        );
        self.sweep(None).await;
    }

    /// A media relay's or an edge's heartbeat, at its arrival time.
    pub(super) fn on_heartbeat(&mut self, beat: &super::beats::Beat) {
        let liveness = match beat.kind {
            super::beats::BeatKind::Media => &mut self.media_alive,
            super::beats::BeatKind::Edge => &mut self.edges_alive,
        };
        observe_beat(liveness, beat.arrived, &beat.message);
    }

    /// When [`Self::on_tick`] must run next: a replica's heartbeat deadline, or the retry of
    /// waiting calls and requests.
    pub(super) fn next_tick(&self) -> Option<Instant> {
        let waiting = !self.pending.is_empty() || !self.parked.is_empty();
        let retry = waiting.then(|| self.last_retry + RETRY_EVERY);
        [
            self.media_alive.next_deadline(),
            self.edges_alive.next_deadline(),
            retry,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Media replicas that stopped beating move their calls; waiting calls are tried again.
    pub(super) async fn on_tick(&mut self) {
        let now = now();
        let dead_edges = self.edges_alive.newly_dead(now);
        if !dead_edges.is_empty() {
            tracing::warn!(edges = ?dead_edges, "SIP edges stopped beating: requests to their phones go around them");
        }
        for edge in &dead_edges {
            self.resend_around(edge).await;
        }
        if !self.parked.is_empty() && now >= self.last_retry + RETRY_EVERY {
            self.retry_parked().await;
        }
        let dead = self.media_alive.newly_dead(now);
        if !dead.is_empty() {
            tracing::warn!(media = ?dead, "media relay replicas stopped beating: moving their calls");
            self.sweep(None).await;
        } else if !self.pending.is_empty() && now >= self.last_retry + RETRY_EVERY {
            self.pending.retain(|call_id, give_up| {
                let keep = *give_up > now;
                if !keep {
                    tracing::warn!(%call_id, "the call's phones never came back through a surviving edge: left as it is");
                }
                keep
            });
            let waiting: HashSet<String> = self.pending.keys().cloned().collect();
            self.sweep(Some(&waiting)).await;
        }
        self.last_retry = now;
    }

    /// Reads every stored call (or only `only`, by caller's Call-ID) and moves those this
    /// replica must.
    async fn sweep(&mut self, only: Option<&HashSet<String>>) {
        let (listing, _) = match self.store.list_prefix(CALLS_PREFIX).await {
            Ok(listing) => listing,
            Err(e) => {
                tracing::warn!(error = %e, "stored calls not read: moving them later");
                return;
            }
        };
        let mut calls: BTreeMap<String, Stored> = BTreeMap::new();
        for KeyValue {
            key,
            value,
            mod_revision,
            ..
        } in listing
        {
            let Ok(snapshot) = EstablishedCall::decode(value) else {
                continue;
            };
            let Some(caller) = caller_call_id(&snapshot) else {
                continue;
            };
            if only.is_some_and(|only| !only.contains(&caller)) {
                continue;
            }
            calls
                .entry(caller)
                .or_insert_with(|| Stored {
                    snapshot,
                    keys: Vec::new(),
                })
                .keys
                .push((key, mod_revision));
        }
        if let Some(only) = only {
            // Ended meanwhile: nothing left to move.
            self.pending
                .retain(|call_id, _| !only.contains(call_id) || calls.contains_key(call_id));
        }
        for (caller, mut stored) in calls {
            // What this replica heard of the relay fills in a datacenter the owner did not know.
            self.fill_media_datacenter(&mut stored.snapshot);
            let me = Me {
                instance: &self.config.instance,
                datacenter: &self.config.datacenter,
            };
            let liveness = &self.media_alive;
            let plan = plan_repair(&stored.snapshot, &me, self.follower.failed(), |id| {
                liveness.is_dead(id)
            });
            match plan {
                Some(plan) => self.repair(&caller, stored, plan).await,
                None => {
                    self.pending.remove(&caller);
                }
            }
        }
        if let Some(metrics) = &self.metrics {
            metrics.set_waiting(self.pending.len());
        }
    }

    /// The relay's datacenter, for a call about to be stored: the allocation's reply named it
    /// (set by the anchoring); a relay that did not say is looked up in its heartbeats.
    pub(super) fn fill_media_datacenter(&self, call: &mut EstablishedCall) {
        if call.media_datacenter.is_empty()
            && let Some(datacenter) = self.media_alive.datacenter_of(&call.media_owner)
        {
            call.media_datacenter = datacenter.to_owned();
        }
    }

    fn count_move(&self, step: &'static str) {
        if let Some(metrics) = &self.metrics {
            metrics.moved(step);
        }
    }

    /// A binding of `aor` through an edge of a datacenter not marked failed, the one with
    /// `contact` if there is one.
    async fn surviving_flow(&self, aor: &str, contact: &str) -> Option<Flow> {
        if let Err(e) = self.location.fresh(aor).await {
            tracing::debug!(%aor, error = %e, "bindings not read from the store");
        }
        let failed = self.follower.failed();
        let bindings: Vec<_> = self
            .location
            .lookup(aor, unix_secs())
            .into_iter()
            .filter(|b| !failed.contains(&b.flow.datacenter))
            .collect();
        bindings
            .iter()
            .find(|b| b.binding.contact.to_string() == contact)
            .or(bindings.first())
            .map(|b| b.flow.clone())
    }

    async fn repair(&mut self, caller: &str, stored: Stored, plan: Repair) {
        let Stored { mut snapshot, keys } = stored;
        let give_up = now() + REHOME_PATIENCE;
        // Where the phones are now.
        let mut unreachable = false;
        let mut caller_flow = None;
        if plan.move_caller {
            match caller_identity(&snapshot) {
                Some((user, contact)) => {
                    let aor = format!("sip:{user}@{}", self.config.domain);
                    caller_flow = self.surviving_flow(&aor, &contact).await;
                }
                None => tracing::warn!(%caller, "the caller of a stored call is not readable"),
            }
            unreachable |= caller_flow.is_none();
        }
        let mut callee_flow = None;
        if plan.move_callee {
            let (aor, contact) = (snapshot.callee_aor.clone(), snapshot.callee_contact.clone());
            callee_flow = self.surviving_flow(&aor, &contact).await;
            unreachable |= callee_flow.is_none();
        }
        // Claim: the call is ours from this write on (one of the survivors wins).
        snapshot.owner_instance = self.config.instance.clone();
        snapshot.owner_datacenter = self.config.datacenter.clone();
        if let Some(flow) = &caller_flow {
            snapshot.caller_flow = Some(flow.clone());
            snapshot.caller_edge = flow.edge_id.clone();
        }
        if let Some(flow) = &callee_flow {
            snapshot.callee_flow = Some(flow.clone());
        }
        let value = Bytes::from(snapshot.encode_to_vec());
        let compares = keys
            .iter()
            .map(|(key, revision)| Compare::ModRevision(key.clone(), *revision))
            .collect();
        let ops = keys
            .iter()
            .map(|(key, _)| Op::Put {
                key: key.clone(),
                value: value.clone(),
                lease: None,
            })
            .collect();
        match self.store.txn(compares, ops).await {
            Ok(outcome) if outcome.succeeded => {}
            Ok(_) => {
                // Another replica claimed it, or a refresh rewrote it: look again next round.
                tracing::debug!(%caller, "stored call changed while claiming it");
                self.pending.entry(caller.to_owned()).or_insert(give_up);
                return;
            }
            Err(e) => {
                tracing::warn!(%caller, error = %e, "call not claimed: store unavailable");
                self.pending.entry(caller.to_owned()).or_insert(give_up);
                return;
            }
        }
        let legs_moved = caller_flow.is_some() || callee_flow.is_some();
        if self.core.knows(caller) {
            self.core.rehome(caller, caller_flow, callee_flow);
        } else if self.core.restore(now(), &snapshot) {
            self.records.adopt(caller, &snapshot);
            if let Some(anchoring) = self.anchoring.as_mut() {
                anchoring.adopt(&snapshot);
            }
        } else {
            tracing::warn!(%caller, "stored call not usable: not moved");
            self.pending.remove(caller);
            return;
        }
        if plan.take_over {
            tracing::info!(%caller, "took over a call of a failed datacenter");
            self.count_move("taken_over");
        }
        if legs_moved {
            self.count_move("legs_moved");
        }
        if unreachable {
            // No request can reach a phone through a lost edge: wait for it to register again.
            self.pending.entry(caller.to_owned()).or_insert(give_up);
            return;
        }
        if plan.reanchor && !self.reanchor(caller, &mut snapshot, &keys).await {
            self.pending.entry(caller.to_owned()).or_insert(give_up);
            return;
        }
        self.pending.remove(caller);
    }

    /// A new relay session and new offers to both phones; the snapshot rewritten with the
    /// session. False if it must be tried again.
    async fn reanchor(
        &mut self,
        caller: &str,
        snapshot: &mut EstablishedCall,
        keys: &[(String, i64)],
    ) -> bool {
        let Some(anchoring) = self.anchoring.as_mut() else {
            return true; // no relay here: nothing to move
        };
        let (to_caller, to_callee) = match anchoring.reallocate(caller).await {
            Ok(offers) => offers,
            Err(e) => {
                tracing::warn!(%caller, error = %e, "call's media not moved yet");
                return false;
            }
        };
        let actions = match self.core.reoffer(caller, to_caller, to_callee) {
            Ok(actions) => actions,
            Err(ReofferError::OfferPending) => return false,
            Err(e) => {
                tracing::warn!(%caller, error = %e, "no new offer sent");
                return true;
            }
        };
        tracing::info!(%caller, "media moved to a new relay session: new offers sent");
        self.count_move("reanchored");
        self.perform(actions).await;
        // The stored call names the new session (and the CSeqs of the offers).
        if let Some(current) = self.core.snapshot_of(caller) {
            snapshot.caller_cseq = current.caller_cseq;
            snapshot.callee_cseq = current.callee_cseq;
        }
        if let Some(anchoring) = self.anchoring.as_ref() {
            anchoring.describe(caller, snapshot);
        }
        self.fill_media_datacenter(snapshot);
        let value = Bytes::from(snapshot.encode_to_vec());
        for (key, _) in keys {
            self.state.put(key.clone(), value.clone());
        }
        true
    }
}
