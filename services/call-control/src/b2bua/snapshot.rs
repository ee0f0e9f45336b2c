//! An established call as the store keeps it, so that any call-control replica can handle its
//! in-dialog requests: the bus queue group hands a BYE to whichever replica is free, and the
//! one that set the call up may be gone (takeover). Stored under `calanque/v1/calls/<Call-ID>`
//! for the Call-ID of each leg, written when the call is answered, deleted at hang-up.
//!
//! A protobuf message (prost derive): compact, and readable by a later version that adds
//! fields. It is call-control's private storage format, not a bus contract, so it lives here
//! rather than in `proto/`.

use proto::v1::Flow;

/// Both dialogs of an answered call, as call-control sees them.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EstablishedCall {
    /// The caller's INVITE as received (its dialog: Call-ID, From tag, Contact).
    #[prost(bytes = "vec", tag = "1")]
    pub caller_invite: Vec<u8>,
    #[prost(message, optional, tag = "2")]
    pub caller_flow: Option<Flow>,
    #[prost(string, tag = "3")]
    pub caller_edge: String,
    /// Our To tag towards the caller.
    #[prost(string, tag = "4")]
    pub caller_tag: String,
    /// Our last CSeq in the caller's dialog.
    #[prost(uint32, tag = "5")]
    pub caller_cseq: u32,
    #[prost(string, tag = "6")]
    pub callee_aor: String,
    /// The callee's registered Contact (the INVITE's Request-URI).
    #[prost(string, tag = "7")]
    pub callee_contact: String,
    #[prost(message, optional, tag = "8")]
    pub callee_flow: Option<Flow>,
    /// The callee leg's INVITE as we sent it (its dialog: Call-ID, our From tag).
    #[prost(bytes = "vec", tag = "9")]
    pub callee_invite: Vec<u8>,
    #[prost(string, tag = "10")]
    pub callee_tag: String,
    /// The Contact of the callee's 2xx (where in-dialog requests go).
    #[prost(string, tag = "11")]
    pub callee_remote_contact: String,
    /// Our last CSeq in the callee's dialog.
    #[prost(uint32, tag = "12")]
    pub callee_cseq: u32,
    /// The media relay session anchoring the call, or 0 for direct media. Written by the
    /// service (anchoring is outside the core) so that the replica taking the call over
    /// rewrites later SDP bodies and releases the session at hang-up.
    #[prost(uint64, tag = "13")]
    pub media_session: u64,
    /// The media replica owning the session (its control subject's id; empty in-process).
    #[prost(string, tag = "14")]
    pub media_owner: String,
    /// The relay's address facing the caller.
    #[prost(string, tag = "15")]
    pub media_leg_a: String,
    /// The relay's address facing the callee.
    #[prost(string, tag = "16")]
    pub media_leg_b: String,
    /// For the call record written at hang-up, possibly by another replica: the sites of the
    /// caller's device and of the extension called, and when the call was set up and answered
    /// (wall clock, ms since the Unix epoch). Written by the service.
    #[prost(string, tag = "17")]
    pub caller_site: String,
    #[prost(string, tag = "18")]
    pub callee_site: String,
    #[prost(uint64, tag = "19")]
    pub answered_unix_ms: u64,
    #[prost(uint64, tag = "40")]
    pub started_unix_ms: u64,
    /// The negotiated session interval (RFC 4028 Session-Expires) in seconds; 0 for a call
    /// without a session timer. A replica taking the call over restarts the timer at the
    /// takeover (the time of the last refresh is not stored: see ADR 0014).
    #[prost(uint32, tag = "20")]
    pub session_interval: u32,
    /// A token renewed each time a session refresh rewrites the snapshot: a replica whose
    /// timer ran out compares it with its own to learn that another replica relayed a
    /// refresh it did not see (`B2bua::reconcile_session`).
    #[prost(string, tag = "21")]
    pub session_stamp: String,
    /// The replica that wrote the snapshot last, and its datacenter: when the failover marks
    /// that datacenter failed, a replica of another claims the call (compare-and-swap on the
    /// keys) and moves it (ADR 0020).
    #[prost(string, tag = "22")]
    pub owner_instance: String,
    #[prost(string, tag = "23")]
    pub owner_datacenter: String,
    /// The datacenter of the media replica relaying the call (from its heartbeats; empty when
    /// unknown or direct media).
    #[prost(string, tag = "24")]
    pub media_datacenter: String,
    /// The last SDP each phone sent, unrewritten (relayed calls only): a replica moving the call
    /// to a new relay session offers each phone the other's again.
    #[prost(bytes = "vec", tag = "25")]
    pub caller_sdp: Vec<u8>,
    #[prost(bytes = "vec", tag = "26")]
    pub callee_sdp: Vec<u8>,
}

/// The store key of a call under one of its Call-IDs ('/' and '%' escaped).
pub fn call_key(call_id: &str) -> String {
    let mut key = String::from("calanque/v1/calls/");
    for c in call_id.chars() {
        match c {
            '/' => key.push_str("%2F"),
            '%' => key.push_str("%25"),
            c => key.push(c),
        }
    }
    key
}
