//! §10.3 steps 5–7: from a REGISTER and the stored bindings to a [`RegisterPlan`].

use std::net::SocketAddr;

use sip_msg::{Contacts, HeaderName, NameAddr, Request, Response, StatusCode};

use super::{Binding, RegisterPlan, RegistrarPolicy, canonical_aor, contact_uri_matches};
use crate::screening::reject;

/// RFC 3261 §10.3 step 7 allows a 423 only for intervals "smaller than one hour".
const ONE_HOUR: u32 = 3600;

/// Processes an authenticated REGISTER against `existing` (the stored bindings; those of other
/// AORs and those expired at `now_unix` are ignored). `source` is the address the request came
/// from, recorded in new and refreshed bindings. `Err` holds the response to send; in that
/// case nothing may be changed. See the module documentation for the status codes.
pub fn process_register(
    req: &Request,
    existing: &[Binding],
    now_unix: u64,
    source: SocketAddr,
    policy: &RegistrarPolicy,
) -> Result<RegisterPlan, Box<Response>> {
    let h = &req.headers;
    let to = h
        .to_header()
        .map_err(|_| bad(req, "Malformed To header"))?
        .ok_or_else(|| bad(req, "Missing To header"))?;
    let aor = canonical_aor(&to.uri).ok_or_else(|| reject(req, StatusCode::NOT_FOUND))?;
    let call_id = h
        .call_id()
        .ok_or_else(|| bad(req, "Missing Call-ID header"))?;
    let cseq = h
        .cseq()
        .map_err(|_| bad(req, "Malformed CSeq header"))?
        .ok_or_else(|| bad(req, "Missing CSeq header"))?
        .seq;
    let header_expires = h
        .expires()
        .map_err(|_| bad(req, "Malformed Expires header"))?;
    let contacts = h
        .contacts()
        .map_err(|_| bad(req, "Malformed Contact header"))?;
    let path: Vec<String> = h
        .paths()
        .map_err(|_| bad(req, "Malformed Path header"))?
        .unwrap_or_default()
        .iter()
        .map(ToString::to_string)
        .collect();

    let current: Vec<Binding> = existing
        .iter()
        .filter(|b| b.aor == aor && b.expires_at > now_unix)
        .cloned()
        .collect();
    // Step 7: a binding written by this Call-ID with a CSeq not lower than ours means this
    // request is a stale or reordered one.
    let out_of_order = |b: &Binding| b.call_id == call_id && b.cseq >= cseq;

    let list = match contacts {
        // Step 5 ends here for a query: nothing changes, the 200 lists the bindings.
        None => {
            return Ok(RegisterPlan {
                aor,
                upserts: Vec::new(),
                removals: Vec::new(),
                bindings_after: current,
            });
        }
        // Step 6: `*` removes every binding, and only with Expires: 0 (the accessor already
        // refuses `*` beside other Contact values).
        Some(Contacts::Star) => {
            if header_expires != Some(0) {
                return Err(bad(req, "Contact * requires Expires: 0"));
            }
            if current.iter().any(out_of_order) {
                return Err(out_of_order_error(req));
            }
            let removals = current
                .iter()
                .map(|b| (b.aor.clone(), b.contact.to_string()))
                .collect();
            return Ok(RegisterPlan {
                aor,
                upserts: Vec::new(),
                removals,
                bindings_after: Vec::new(),
            });
        }
        Some(Contacts::List(list)) => list,
    };

    // Step 7, first the intervals of every Contact, so that a 423 changes nothing.
    let mut wanted: Vec<(&NameAddr, u32)> = Vec::with_capacity(list.len());
    for contact in &list {
        let requested = contact
            .expires()
            .or(header_expires)
            .unwrap_or(policy.default_expires);
        if requested > 0 && requested < policy.min_expires.min(ONE_HOUR) {
            let mut response = reject(req, StatusCode::INTERVAL_TOO_BRIEF);
            response
                .headers
                .push(HeaderName::MinExpires, policy.min_expires.to_string());
            return Err(response);
        }
        wanted.push((contact, requested.min(policy.max_expires)));
    }

    // Then each Contact against the bindings, tentatively.
    let mut slots: Vec<Slot> = current
        .into_iter()
        .map(|binding| Slot {
            binding,
            stored: true,
            written: false,
        })
        .collect();
    let mut removals = Vec::new();
    for (contact, expires) in wanted {
        let found = slots
            .iter()
            .position(|s| contact_uri_matches(&s.binding.contact, &contact.uri));
        if let Some(i) = found
            && !slots[i].written
            && out_of_order(&slots[i].binding)
        {
            return Err(out_of_order_error(req));
        }
        if expires == 0 {
            if let Some(i) = found {
                let slot = slots.remove(i);
                if slot.stored {
                    removals.push((slot.binding.aor, slot.binding.contact.to_string()));
                }
            }
            continue;
        }
        let binding = Binding {
            aor: aor.clone(),
            contact: contact.uri.clone(),
            call_id: call_id.to_owned(),
            cseq,
            expires_at: now_unix.saturating_add(u64::from(expires)),
            q: contact.q_millis(),
            instance: contact.params.value("+sip.instance").map(str::to_owned),
            reg_id: contact.params.value("reg-id").and_then(|r| r.parse().ok()),
            received: source,
            path: path.clone(),
        };
        match found {
            Some(i) => {
                slots[i].binding = binding;
                slots[i].written = true;
            }
            None => slots.push(Slot {
                binding,
                stored: false,
                written: true,
            }),
        }
    }

    let upserts = slots
        .iter()
        .filter(|s| s.written)
        .map(|s| s.binding.clone())
        .collect();
    Ok(RegisterPlan {
        aor,
        upserts,
        removals,
        bindings_after: slots.into_iter().map(|s| s.binding).collect(),
    })
}

/// A binding being worked on: whether it was stored before this request and whether this
/// request wrote it (a Contact listed twice must not trip the CSeq check on itself).
struct Slot {
    binding: Binding,
    stored: bool,
    written: bool,
}

/// 400 with a reason phrase naming the fault.
fn bad(req: &Request, reason: &str) -> Box<Response> {
    let mut response = reject(req, StatusCode::BAD_REQUEST);
    response.reason = reason.to_owned();
    response
}

fn out_of_order_error(req: &Request) -> Box<Response> {
    let mut response = reject(req, StatusCode::SERVER_INTERNAL_ERROR);
    response.reason = "Out of order REGISTER".to_owned();
    response
}
