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

/// How the final answer to a REGISTER counts: the `reason` of
/// `calanque_registrations_total` (docs/metrics.md), and through it the SLI's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationOutcome {
    /// 200 to a REGISTER that added or refreshed a binding, or only asked for the list.
    Registered,
    /// 200 to a REGISTER that only removed bindings (Expires 0, `Contact: *`).
    Unregistered,
    /// The credentials were refused: a fresh challenge answering a wrong response, an unknown
    /// user or a locked account (a first challenge, or one for a stale nonce, is not final).
    WrongCredentials,
    /// 403: the device may not register this AOR.
    Forbidden,
    /// 423 Interval Too Brief.
    IntervalTooBrief,
    /// 400, 404 or an out-of-order REGISTER's 500: the phone's request was wrong.
    BadRequest,
    /// 503 or 500: the store was unreachable, or kept refusing the commit.
    StoreError,
    /// 503: the edge is draining.
    Draining,
    /// 503: the edge is behind and refuses new registration exchanges for a while
    /// (`overload`).
    Overloaded,
}

impl RegistrationOutcome {
    /// The catalogue's `result` label, as the SLI reads it.
    pub fn result(self) -> telemetry::RegistrationResult {
        use telemetry::RegistrationResult::{Success, SystemFailure, UserFailure};
        match self {
            RegistrationOutcome::Registered | RegistrationOutcome::Unregistered => Success,
            RegistrationOutcome::WrongCredentials
            | RegistrationOutcome::Forbidden
            | RegistrationOutcome::IntervalTooBrief
            | RegistrationOutcome::BadRequest => UserFailure,
            RegistrationOutcome::StoreError
            | RegistrationOutcome::Draining
            | RegistrationOutcome::Overloaded => SystemFailure,
        }
    }

    /// The catalogue's `reason` label.
    pub fn reason(self) -> &'static str {
        match self {
            RegistrationOutcome::Registered => "ok",
            RegistrationOutcome::Unregistered => "unregister",
            RegistrationOutcome::WrongCredentials => "wrong_credentials",
            RegistrationOutcome::Forbidden => "forbidden",
            RegistrationOutcome::IntervalTooBrief => "interval_too_brief",
            RegistrationOutcome::BadRequest => "bad_request",
            RegistrationOutcome::StoreError => "store_error",
            RegistrationOutcome::Draining => "draining",
            RegistrationOutcome::Overloaded => "overloaded",
        }
    }
}

/// Applies an authenticated REGISTER and returns the response to send, and how it counts.
/// The AOR is the To URI's user in `domain` (phones often put the registrar's address in To).
pub async fn register(
    location: LocationService,
    original: Request,
    domain: String,
    source: SocketAddr,
    context: RegistrationContext,
    policy: RegistrarPolicy,
    now_unix: u64,
) -> (Response, RegistrationOutcome) {
    let request = in_domain(&original, &domain);
    let Some(aor) = request
        .headers
        .to_header()
        .ok()
        .flatten()
        .and_then(|to| canonical_aor(&to.uri))
    else {
        // The core answers 400/404 for a To it cannot use; let it build that answer.
        let response = match process_register(&original, &[], now_unix, source, &policy) {
            Err(response) => *response,
            Ok(_) => error_response(&original, StatusCode::BAD_REQUEST, None),
        };
        return (response, RegistrationOutcome::BadRequest);
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
            Err(response) => {
                let outcome = refusal_outcome(response.status);
                return (as_answer_to(*response, &original, &tag), outcome);
            }
        };
        let outcome = if plan.upserts.is_empty() && !plan.removals.is_empty() {
            RegistrationOutcome::Unregistered
        } else {
            RegistrationOutcome::Registered
        };
        if plan.is_unchanged() {
            return (ok_response(&original, &plan, now_unix, Some(&tag)), outcome);
        }
        match location.apply(&plan, &context, &current, now_unix).await {
            Ok(_) => return (ok_response(&original, &plan, now_unix, Some(&tag)), outcome),
            Err(LocationError::Conflict { .. }) => {
                tracing::debug!(%aor, attempt, "binding changed meanwhile; planning again");
            }
            Err(e) => return store_failure(&original, &e),
        }
    }
    (
        error_response(&original, StatusCode::SERVER_INTERNAL_ERROR, None),
        RegistrationOutcome::StoreError,
    )
}

/// How the registrar core's refusal counts: 423 is its own reason; 400, 404 and the 500 of
/// an out-of-order REGISTER (§10.3 step 7: a stale or reordered request) are the phone's.
fn refusal_outcome(status: StatusCode) -> RegistrationOutcome {
    if status == StatusCode::INTERVAL_TOO_BRIEF {
        RegistrationOutcome::IntervalTooBrief
    } else {
        RegistrationOutcome::BadRequest
    }
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

fn store_failure(request: &Request, e: &LocationError) -> (Response, RegistrationOutcome) {
    tracing::warn!(error = %e, "location store unavailable; answering 503");
    (
        error_response(
            request,
            StatusCode::SERVICE_UNAVAILABLE,
            Some(RETRY_AFTER_SECS),
        ),
        RegistrationOutcome::StoreError,
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
