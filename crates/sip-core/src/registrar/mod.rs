//! The sans-IO core of a registrar (RFC 3261 §10.3, steps 5–8): it turns an authenticated
//! REGISTER and the bindings currently stored for its address-of-record into a plan (bindings
//! to write, bindings to remove, the AOR's bindings afterwards) or the error response to send.
//!
//! Authentication (step 3), the domain check of step 5 (is the AOR ours? else 404) and the
//! storage itself live above: the caller reads the AOR's bindings, calls [`process_register`]
//! with the current time as unix seconds, commits the plan atomically (all or nothing, step 7)
//! and answers with [`ok_response`]. Expired bindings are ignored and left to the store's TTL
//! leases; nothing here reads a clock.
//!
//! Status codes chosen:
//! - 400 for a malformed or missing To, Call-ID, CSeq, Expires or Contact, and for `Contact: *`
//!   without `Expires: 0` or beside other Contact values (step 6);
//! - 404 when the To URI is not a `sip:`/`sips:` URI, so it cannot be an AOR here (step 5);
//! - 423 Interval Too Brief with Min-Expires (step 7);
//! - 500 Server Internal Error when a binding with the request's Call-ID holds a CSeq equal to
//!   or higher than the request's: the RFC says the update "MUST be aborted and the request
//!   fails" (steps 6 and 7) without naming a code, and names 500 for a failed commit in the
//!   same step; a 500 also tells a UA that retrying later may work. Nothing is changed.

mod aor;
mod plan;
mod response;
mod uri_match;

use std::net::SocketAddr;

use sip_msg::Uri;

pub use aor::canonical_aor;
pub use plan::process_register;
pub use response::ok_response;
pub use uri_match::contact_uri_matches;

/// One registered contact of an address-of-record (a row of the location service).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The canonical AOR ([`canonical_aor`]): `sip:user@host`, host lower-cased.
    pub aor: String,
    /// The Contact URI, with its URI parameters (header parameters such as `expires` are not
    /// part of it).
    pub contact: Uri,
    /// The Call-ID of the REGISTER that last wrote this binding.
    pub call_id: String,
    /// The CSeq number of the REGISTER that last wrote this binding.
    pub cseq: u32,
    /// When the binding expires, in unix seconds.
    pub expires_at: u64,
    /// The `q` Contact parameter in thousandths (0..=1000).
    pub q: Option<u16>,
    /// The `+sip.instance` Contact parameter as received (RFC 5626), quotes included.
    pub instance: Option<String>,
    /// The `reg-id` Contact parameter (RFC 5626).
    pub reg_id: Option<u32>,
    /// Where the REGISTER came from (after NAT), to reach the phone back through its flow.
    pub received: SocketAddr,
    /// The Path header values of the REGISTER (RFC 3327), topmost first, as printed addresses.
    pub path: Vec<String>,
}

impl Binding {
    /// Seconds left at `now_unix` (0 once expired).
    pub fn remaining(&self, now_unix: u64) -> u64 {
        self.expires_at.saturating_sub(now_unix)
    }
}

/// The registrar's limits on registration intervals, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistrarPolicy {
    /// Shorter non-zero intervals get 423 with this value in Min-Expires. RFC 3261 allows the
    /// 423 only for intervals under one hour, so a minimum above 3600 acts as 3600.
    pub min_expires: u32,
    /// Longer intervals are shortened to this.
    pub max_expires: u32,
    /// The interval when neither the Contact's `expires` nor an Expires header gives one.
    pub default_expires: u32,
}

impl Default for RegistrarPolicy {
    fn default() -> RegistrarPolicy {
        RegistrarPolicy {
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
        }
    }
}

/// What a REGISTER changes. Committing it must be all or nothing (§10.3 step 7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterPlan {
    /// The canonical AOR the request is about.
    pub aor: String,
    /// Bindings added or refreshed, in their new state.
    pub upserts: Vec<Binding>,
    /// Bindings removed, as (AOR, Contact URI as printed) of the stored binding.
    pub removals: Vec<(String, String)>,
    /// Every unexpired binding of the AOR once the plan is applied (what the 200 lists).
    pub bindings_after: Vec<Binding>,
}

impl RegisterPlan {
    /// True when the plan writes nothing (a query REGISTER, or removals of absent bindings).
    pub fn is_unchanged(&self) -> bool {
        self.upserts.is_empty() && self.removals.is_empty()
    }
}
