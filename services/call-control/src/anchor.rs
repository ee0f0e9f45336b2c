//! Media anchoring: when a call must go through the media relay (a site whose policy is
//! `Relay`: NAT, recording, strict security), call-control allocates a relay session at the
//! INVITE and rewrites every SDP body that crosses between the legs so each phone sends its
//! RTP to the relay; the relay learns each phone's real address from the SDP it replaced.
//! The B2BUA core stays unaware: rewriting happens on the way out of the service.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use media::relay::{Leg, LegOptions, SessionId};
use media::{AllocateRequest, MediaControl};

use crate::b2bua::EstablishedCall;

/// Why a call could not be moved to a new relay session.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReanchorError {
    #[error("the call is not anchored here")]
    NotAnchored,
    #[error("the phones' last descriptions are not known")]
    NoDescriptions,
    #[error("no relay session: {0}")]
    Allocate(String),
}

/// One anchored call.
#[derive(Debug, Clone)]
struct Anchor {
    session: SessionId,
    /// The relay's address facing the caller (written into SDP sent to the caller).
    leg_a: SocketAddr,
    /// The relay's address facing the callee.
    leg_b: SocketAddr,
    /// The last SDP each phone sent, as it sent it (its own address): what a new offer moving
    /// the call to another relay session repeats to the other phone (ADR 0020).
    from_a: Bytes,
    from_b: Bytes,
}

/// The anchored calls of one call-control replica.
#[derive(Debug)]
pub(crate) struct Anchoring {
    media: Arc<dyn MediaControl>,
    /// By the caller's Call-ID.
    anchors: HashMap<String, Anchor>,
    /// Any leg's Call-ID → (the caller's Call-ID, which side that leg is).
    sides: HashMap<String, (String, Leg)>,
}

/// The first audio stream's address in an SDP body, and the parsed description.
fn audio_address(body: &[u8]) -> Option<(sdp::SessionDescription, SocketAddr)> {
    let description = sdp::parse(body).ok()?;
    let media = description.media.iter().find(|m| m.port != 0)?;
    let ip = description.media_connection(media)?.ip()?;
    let address = SocketAddr::new(ip, media.port);
    Some((description, address))
}

impl Anchoring {
    pub(crate) fn new(media: Arc<dyn MediaControl>) -> Anchoring {
        Anchoring {
            media,
            anchors: HashMap::new(),
            sides: HashMap::new(),
        }
    }

    /// Allocates a relay session for a new call whose INVITE carries `offer`.
    pub(crate) async fn allocate(&mut self, call_id: &str, offer: &[u8]) {
        let Some((_, caller)) = audio_address(offer) else {
            return; // late offer or no audio: not anchored (direct media)
        };
        let request = AllocateRequest {
            call_id: call_id.to_owned(),
            leg_a: LegOptions {
                remote: Some(caller),
                behind_nat: true,
                rtcp_mux: false,
            },
            leg_b: LegOptions::default(),
        };
        match self.media.allocate(request).await {
            Ok(allocation) => {
                self.anchors.insert(
                    call_id.to_owned(),
                    Anchor {
                        session: allocation.session,
                        leg_a: allocation.leg_a,
                        leg_b: allocation.leg_b,
                        from_a: Bytes::copy_from_slice(offer),
                        from_b: Bytes::new(),
                    },
                );
                self.sides
                    .insert(call_id.to_owned(), (call_id.to_owned(), Leg::A));
            }
            Err(e) => {
                // The call still works with direct media where the network allows it.
                tracing::warn!(%call_id, error = %e, "no relay session: media goes direct");
            }
        }
    }

    /// Whether the call (by the caller's Call-ID) is anchored.
    pub(crate) fn is_anchored(&self, caller_call_id: &str) -> bool {
        self.anchors.contains_key(caller_call_id)
    }

    /// A callee leg of an anchored call got its Call-ID.
    pub(crate) fn add_callee_leg(&mut self, caller_call_id: &str, leg_call_id: &str) {
        if self.anchors.contains_key(caller_call_id) {
            self.sides
                .insert(leg_call_id.to_owned(), (caller_call_id.to_owned(), Leg::B));
        }
    }

    /// Rewrites an SDP body travelling in the dialog `call_id` (towards that leg's phone): it
    /// describes the other phone, so the relay learns that phone's address and the body gets
    /// the relay's address facing this leg.
    pub(crate) async fn rewrite(&mut self, call_id: &str, body: &Bytes) -> Option<Bytes> {
        let (caller_call_id, towards) = self.sides.get(call_id)?;
        let anchor = self.anchors.get_mut(caller_call_id)?;
        let (mut description, described) = audio_address(body)?;
        let from = match towards {
            Leg::A => Leg::B,
            Leg::B => Leg::A,
        };
        match from {
            Leg::A => anchor.from_a = body.clone(),
            Leg::B => anchor.from_b = body.clone(),
        }
        let anchor = anchor.clone();
        let options = LegOptions {
            remote: Some(described),
            behind_nat: true,
            rtcp_mux: false,
        };
        if let Err(e) = self.media.update(anchor.session, from, options).await {
            tracing::warn!(%call_id, error = %e, "relay leg not updated");
        }
        let relay = match towards {
            Leg::A => anchor.leg_a,
            Leg::B => anchor.leg_b,
        };
        let ports: Vec<u16> = description
            .media
            .iter()
            .map(|m| if m.port == 0 { 0 } else { relay.port() })
            .collect();
        let ip: IpAddr = relay.ip();
        sdp::with_connection(&mut description, ip, &ports).ok()?;
        Some(Bytes::from(description.to_bytes()))
    }

    /// Writes the call's relay session into its snapshot (by the caller's Call-ID), so that a
    /// replica taking the call over keeps rewriting its SDP and releases the session at the end.
    pub(crate) fn describe(&self, caller_call_id: &str, snapshot: &mut EstablishedCall) {
        let Some(anchor) = self.anchors.get(caller_call_id) else {
            return;
        };
        snapshot.media_session = anchor.session.0;
        snapshot.media_owner = self.media.owner(anchor.session).unwrap_or_default();
        // From the allocation's reply: known before the relay's first heartbeat arrives.
        snapshot.media_datacenter = self
            .media
            .owner_datacenter(anchor.session)
            .unwrap_or_default();
        snapshot.media_leg_a = anchor.leg_a.to_string();
        snapshot.media_leg_b = anchor.leg_b.to_string();
        snapshot.caller_sdp = anchor.from_a.to_vec();
        snapshot.callee_sdp = anchor.from_b.to_vec();
    }

    /// Takes over the relay session of a call restored from the store (see [`Self::describe`]).
    /// Returns whether the snapshot named one.
    pub(crate) fn adopt(&mut self, snapshot: &EstablishedCall) -> bool {
        if snapshot.media_session == 0 {
            return false;
        }
        let call_id_of = |invite: &[u8]| match sip_msg::parse_datagram(invite) {
            Ok(sip_msg::SipMessage::Request(r)) => r.headers.call_id().map(str::to_owned),
            _ => None,
        };
        let (Some(caller), Some(callee), Ok(leg_a), Ok(leg_b)) = (
            call_id_of(&snapshot.caller_invite),
            call_id_of(&snapshot.callee_invite),
            snapshot.media_leg_a.parse::<SocketAddr>(),
            snapshot.media_leg_b.parse::<SocketAddr>(),
        ) else {
            tracing::warn!("stored call names a relay session but not its legs: not adopted");
            return false;
        };
        let session = SessionId(snapshot.media_session);
        if !snapshot.media_owner.is_empty() {
            self.media
                .adopt(session, &snapshot.media_owner, &snapshot.media_datacenter);
        }
        self.anchors.insert(
            caller.clone(),
            Anchor {
                session,
                leg_a,
                leg_b,
                from_a: Bytes::from(snapshot.caller_sdp.clone()),
                from_b: Bytes::from(snapshot.callee_sdp.clone()),
            },
        );
        self.sides.insert(caller.clone(), (caller.clone(), Leg::A));
        self.sides.insert(callee, (caller, Leg::B));
        true
    }

    /// The call's relay session (by any leg's Call-ID).
    pub(crate) fn session_of(&self, call_id: &str) -> Option<SessionId> {
        let (caller_call_id, _) = self.sides.get(call_id)?;
        self.anchors.get(caller_call_id).map(|a| a.session)
    }

    /// Moves a call to a new relay session (its relay died): allocates one on a live replica,
    /// gives the old one back in the background (its replica may be gone), and returns the
    /// new offers for the caller and the callee: the other phone's last SDP with its version
    /// raised (RFC 3264 §8: a changed description has a higher version). The service sends
    /// them as re-INVITEs; rewriting them on the way out points each phone at the new session.
    pub(crate) async fn reallocate(
        &mut self,
        caller_call_id: &str,
    ) -> Result<(Bytes, Bytes), ReanchorError> {
        let anchor = self
            .anchors
            .get(caller_call_id)
            .cloned()
            .ok_or(ReanchorError::NotAnchored)?;
        let (Some((mut to_callee, caller)), Some((mut to_caller, callee))) =
            (audio_address(&anchor.from_a), audio_address(&anchor.from_b))
        else {
            return Err(ReanchorError::NoDescriptions);
        };
        let request = AllocateRequest {
            call_id: caller_call_id.to_owned(),
            leg_a: LegOptions {
                remote: Some(caller),
                behind_nat: true,
                rtcp_mux: false,
            },
            leg_b: LegOptions {
                remote: Some(callee),
                behind_nat: true,
                rtcp_mux: false,
            },
        };
        let allocation = self
            .media
            .allocate(request)
            .await
            .map_err(|e| ReanchorError::Allocate(e.to_string()))?;
        let media = self.media.clone();
        let old = anchor.session;
        tokio::spawn(async move {
            if let Err(e) = media.release(old).await {
                tracing::debug!(session = %old, error = %e, "old relay session not released");
            }
        });
        sdp::bump_version(&mut to_callee);
        sdp::bump_version(&mut to_caller);
        self.anchors.insert(
            caller_call_id.to_owned(),
            Anchor {
                session: allocation.session,
                leg_a: allocation.leg_a,
                leg_b: allocation.leg_b,
                ..anchor
            },
        );
        Ok((
            Bytes::from(to_caller.to_bytes()),
            Bytes::from(to_callee.to_bytes()),
        ))
    }

    /// Forgets a call another replica ended (and whose relay session it released).
    pub(crate) fn forget(&mut self, caller_call_id: &str) {
        self.sides.retain(|_, (caller, _)| caller != caller_call_id);
        self.anchors.remove(caller_call_id);
    }

    /// The call ended: release its relay session, on a task of its own. The release is a
    /// round trip to the relay, which may be in the other datacenter; awaited here it held the
    /// service loop, and every request behind it, for that long per ended call (ten hang-ups
    /// at once across a 150 ms link: the last BYE answered after 3 s, and its phone moved to
    /// its backup). Nothing waits for its answer: the final counters are only logged.
    pub(crate) fn release(&mut self, caller_call_id: &str) {
        self.sides.retain(|_, (caller, _)| caller != caller_call_id);
        if let Some(anchor) = self.anchors.remove(caller_call_id) {
            let media = self.media.clone();
            let caller_call_id = caller_call_id.to_owned();
            tokio::spawn(async move {
                match media.release(anchor.session).await {
                    Ok(stats) => {
                        tracing::debug!(%caller_call_id, ?stats, "relay session released");
                    }
                    Err(e) => {
                        tracing::warn!(%caller_call_id, error = %e, "relay session not released");
                    }
                }
            });
        }
    }
}
