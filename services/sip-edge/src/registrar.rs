//! The registrar's update of the location service (RFC 3261 §10.3 steps 5–8) for a REGISTER
//! that was already authenticated: plan with the sans-IO core against the AOR's current
//! bindings, commit atomically, answer. Runs as its own task so the engine keeps serving while
//! the store writes; concurrent REGISTERs for one AOR (two edges, two phones) are serialised by
//! the store's compare-and-swap: a lost race re-reads and plans again.

use std::net::SocketAddr;

use sip_core::registrar::{RegistrarPolicy, canonical_aor, ok_response, process_register};
use sip_msg::{HeaderName, Request, Response, StatusCode, Uri, build_response};

use crate::location::{LocationError, LocationService, RegistrationContext};

/// Attempts before a REGISTER that keeps losing compare-and-swap races gets 500.
const MAX_ATTEMPTS: usize = 4;

/// Seconds a phone is told to wait when the store is unreachable (503 Retry-After).
const RETRY_AFTER_SECS: u32 = 5;

/// Applies an authenticated REGISTER and returns the response to send. The AOR is the To
/// URI's user in `domain` (phones often put the registrar's address in To).
pub async fn register(
    location: LocationService,
    original: Request,
    domain: String,
    source: SocketAddr,
    context: RegistrationContext,
    policy: RegistrarPolicy,
    now_unix: u64,
) -> Response {
    let request = in_domain(&original, &domain);
    let Some(aor) = request
        .headers
        .to_header()
        .ok()
        .flatten()
        .and_then(|to| canonical_aor(&to.uri))
    else {
        // The core answers 400/404 for a To it cannot use; let it build that answer.
        return match process_register(&original, &[], now_unix, source, &policy) {
            Err(response) => *response,
            Ok(_) => error_response(&original, StatusCode::BAD_REQUEST, None),
        };
    };
    let tag = crate::tags::new_tag();
    for attempt in 0..MAX_ATTEMPTS {
        let current = if attempt == 0 {
            location.lookup(&aor, now_unix)
        } else {
            match location.fresh(&aor).await {
                Ok(current) => current,
                Err(e) => return store_failure(&original, &e),
            }
        };
        let existing: Vec<_> = current.iter().map(|b| b.binding.clone()).collect();
        let plan = match process_register(&request, &existing, now_unix, source, &policy) {
            Ok(plan) => plan,
            Err(response) => return as_answer_to(*response, &original, &tag),
        };
        if plan.is_unchanged() {
            return ok_response(&original, &plan, now_unix, Some(&tag));
        }
        match location.apply(&plan, &context, &current, now_unix).await {
            Ok(_) => return ok_response(&original, &plan, now_unix, Some(&tag)),
            Err(LocationError::Conflict { .. }) => {
                tracing::debug!(%aor, attempt, "binding changed meanwhile; planning again");
            }
            Err(e) => return store_failure(&original, &e),
        }
    }
    error_response(&original, StatusCode::SERVER_INTERNAL_ERROR, None)
}

/// The request with its To URI moved into `domain` (host and port), for planning only: every
/// answer is built from the original, whose To it must echo (§8.2.6.2).
fn in_domain(original: &Request, domain: &str) -> Request {
    let mut request = original.clone();
    if let Some(mut to) = request.headers.to_header().ok().flatten()
        && to.uri.is_sip_or_sips()
        && let Ok(target) = Uri::parse(&format!("sip:{domain}"))
    {
        to.uri.host = target.host;
        to.uri.port = target.port;
        request.headers.set(HeaderName::To, to.to_string());
    }
    request
}

/// An error response the core built from the planning copy, made to echo the original To
/// with our tag (§8.2.6.2).
fn as_answer_to(mut response: Response, original: &Request, tag: &str) -> Response {
    if let Some(mut to) = original.headers.to_header().ok().flatten() {
        if to.params.get("tag").is_none() {
            to.params.set("tag", Some(tag));
        }
        response.headers.set(HeaderName::To, to.to_string());
    }
    response
}

fn store_failure(request: &Request, e: &LocationError) -> Response {
    tracing::warn!(error = %e, "location store unavailable; answering 503");
    error_response(
        request,
        StatusCode::SERVICE_UNAVAILABLE,
        Some(RETRY_AFTER_SECS),
    )
}

fn error_response(request: &Request, status: StatusCode, retry_after: Option<u32>) -> Response {
    let mut response = build_response(request, status, Some(&crate::tags::new_tag()));
    if let Some(secs) = retry_after {
        response
            .headers
            .push(HeaderName::RetryAfter, secs.to_string());
    }
    response
}
