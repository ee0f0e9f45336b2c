//! Session timers (RFC 4028) as a proxy that watches the session sees them (ADR 0014): reading
//! `Session-Expires`, `Min-SE` and the `timer` option tag, screening a request against our
//! Min-SE (422, or raising it for a sender that could not read a 422), and completing the 2xx
//! that goes back to the sender (passing the other side's Session-Expires on, or asking the
//! sender to refresh when the other side does not do timers). The B2BUA core keeps the
//! deadline; nothing here reads a clock.

use std::fmt;
use std::time::{Duration, Instant};

use sip_msg::{HeaderName, Headers, Response};

/// RFC 4028 §4: no session interval is shorter than 90 s (the floor of any Min-SE).
pub(super) const MIN_SE_FLOOR: u32 = 90;

/// The option tag of the extension (RFC 4028 §3).
const TIMER: &str = "timer";

/// Who refreshes (the `refresher` parameter of Session-Expires).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refresher {
    Uac,
    Uas,
}

/// A `Session-Expires` value: `delta-seconds *(SEMI se-params)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SessionExpires {
    pub(super) seconds: u32,
    pub(super) refresher: Option<Refresher>,
    /// The parameters other than `refresher`, as `;name` or `;name=value`, to print back.
    other_params: String,
}

impl fmt::Display for SessionExpires {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.seconds)?;
        match self.refresher {
            Some(Refresher::Uac) => f.write_str(";refresher=uac")?,
            Some(Refresher::Uas) => f.write_str(";refresher=uas")?,
            None => {}
        }
        f.write_str(&self.other_params)
    }
}

/// Why a request's session timer headers cannot be read (answered 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(super) enum TimerHeaderError {
    /// Session-Expires is not `delta-seconds *(;param)`, names a refresher other than `uac`
    /// or `uas`, or appears more than once.
    #[error("Session-Expires: expected delta-seconds, an optional refresher=uac|uas, once")]
    SessionExpires,
    /// Min-SE is not `delta-seconds *(;param)`, or appears more than once.
    #[error("Min-SE: expected delta-seconds, once")]
    MinSe,
}

impl TimerHeaderError {
    /// The reason phrase of the 400.
    pub(super) fn reason(self) -> &'static str {
        match self {
            TimerHeaderError::SessionExpires => "Malformed Session-Expires",
            TimerHeaderError::MinSe => "Malformed Min-SE",
        }
    }
}

/// Why a request is refused before it is relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// 400: a session timer header does not parse.
    Malformed(TimerHeaderError),
    /// 422 with `Min-SE: <min_se>`: the requested interval is below what we accept, and the
    /// sender supports timers (it can retry with a longer one).
    TooSmall { min_se: u32 },
}

/// Our side of the negotiation (from `B2buaConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TimerPolicy {
    /// The shortest interval we accept (our Min-SE), at least 90 s.
    pub(super) min_se: u32,
    /// The interval we insert when the sender supports timers but asked for none.
    pub(super) insert: u32,
}

/// What a relayed INVITE, re-INVITE or UPDATE carries about session timers once screened:
/// what the copy on the other leg says, and what completing its 2xx needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct TimerOffer {
    /// The sender listed `timer` in Supported (it can refresh, and read a 422).
    pub(super) supported: bool,
    /// The Session-Expires of the copy (the sender's, raised, or inserted by us).
    pub(super) expires: Option<SessionExpires>,
    /// The Min-SE of the copy.
    pub(super) min_se: Option<u32>,
}

/// A negotiated session timer: the interval and when the session expires without a refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SessionTimer {
    pub(super) interval: u32,
    pub(super) deadline: Instant,
}

impl SessionTimer {
    /// A timer running from `now`; None for no interval (or one too far to represent).
    pub(super) fn start(now: Instant, interval: u32) -> Option<SessionTimer> {
        if interval == 0 {
            return None;
        }
        let deadline = now.checked_add(Duration::from_secs(u64::from(interval)))?;
        Some(SessionTimer { interval, deadline })
    }
}

/// True when a `Supported`/`Require`-style list names `tag` (any case, any line, any
/// position in a comma list).
pub(super) fn has_option_tag(headers: &Headers, name: &HeaderName, tag: &str) -> bool {
    headers
        .get_all(name)
        .flat_map(|line| line.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(tag))
}

/// A header parameter: `name` or `name=value`.
type Param<'a> = (&'a str, Option<&'a str>);

/// `delta-seconds *(SEMI generic-param)`: the seconds (saturating at 2³²-1) and the
/// parameters.
fn delta_and_params(value: &str) -> Option<(u32, Vec<Param<'_>>)> {
    let mut parts = value.split(';');
    let delta = parts.next()?.trim();
    if delta.is_empty() || !delta.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let seconds = delta.parse::<u32>().unwrap_or(u32::MAX);
    let mut params = Vec::new();
    for param in parts {
        let (name, value) = match param.split_once('=') {
            Some((name, value)) => (name.trim(), Some(value.trim())),
            None => (param.trim(), None),
        };
        if !is_token(name) || value.is_some_and(|v| v.is_empty() || !is_param_value(v)) {
            return None;
        }
        params.push((name, value));
    }
    Some((seconds, params))
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
                )
        })
}

/// `gen-value = token / host / quoted-string`.
fn is_param_value(s: &str) -> bool {
    (s.len() >= 2 && s.starts_with('"') && s.ends_with('"'))
        || s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~:[]".contains(&b))
}

/// The single value of a header that must appear at most once.
fn single<'a>(headers: &'a Headers, name: &HeaderName) -> Result<Option<&'a str>, ()> {
    let mut values = headers
        .iter()
        .filter(|h| h.name == *name)
        .map(|h| h.value.as_str());
    match (values.next(), values.next()) {
        (first, None) => Ok(first),
        (Some(_), Some(_)) | (None, Some(_)) => Err(()),
    }
}

/// `Session-Expires` (or its compact form `x`), if present.
pub(super) fn session_expires(
    headers: &Headers,
) -> Result<Option<SessionExpires>, TimerHeaderError> {
    let Some(value) = single(headers, &HeaderName::SessionExpires)
        .map_err(|()| TimerHeaderError::SessionExpires)?
    else {
        return Ok(None);
    };
    let (seconds, params) = delta_and_params(value).ok_or(TimerHeaderError::SessionExpires)?;
    let mut refresher = None;
    let mut other_params = String::new();
    for (name, value) in params {
        if name.eq_ignore_ascii_case("refresher") {
            refresher = match value.map(str::to_ascii_lowercase).as_deref() {
                Some("uac") => Some(Refresher::Uac),
                Some("uas") => Some(Refresher::Uas),
                _ => return Err(TimerHeaderError::SessionExpires),
            };
        } else {
            other_params.push(';');
            other_params.push_str(name);
            if let Some(value) = value {
                other_params.push('=');
                other_params.push_str(value);
            }
        }
    }
    Ok(Some(SessionExpires {
        seconds,
        refresher,
        other_params,
    }))
}

/// `Min-SE`, if present.
pub(super) fn min_se(headers: &Headers) -> Result<Option<u32>, TimerHeaderError> {
    let Some(value) = single(headers, &HeaderName::MinSe).map_err(|()| TimerHeaderError::MinSe)?
    else {
        return Ok(None);
    };
    let (seconds, _) = delta_and_params(value).ok_or(TimerHeaderError::MinSe)?;
    Ok(Some(seconds))
}

/// Screens an INVITE, re-INVITE or UPDATE as an RFC 4028 §8.1 proxy: a malformed header is
/// refused (400); an interval below our Min-SE is refused with 422 when the sender supports
/// timers, and raised to our Min-SE when it does not (it could not read a 422, and refusing
/// would only fail the call); a sender supporting timers that asked for none gets `insert`
/// seconds asked on its behalf. Our interval is never raised otherwise (§8.1: a proxy does
/// not increase Session-Expires); the copy's Min-SE is at least ours, so that the far end does
/// not lower the interval below what we accept.
pub(super) fn screen(
    headers: &Headers,
    policy: TimerPolicy,
    insert: u32,
) -> Result<TimerOffer, Refusal> {
    let supported = has_option_tag(headers, &HeaderName::Supported, TIMER);
    let mut expires = session_expires(headers).map_err(Refusal::Malformed)?;
    let requested_min = min_se(headers).map_err(Refusal::Malformed)?;
    let floor = policy.min_se.max(requested_min.unwrap_or(0));
    let min_se = match expires.as_mut() {
        Some(se) if se.seconds < policy.min_se => {
            if supported {
                return Err(Refusal::TooSmall {
                    min_se: policy.min_se,
                });
            }
            se.seconds = floor;
            Some(floor)
        }
        Some(_) => Some(floor),
        None if supported => {
            expires = Some(SessionExpires {
                seconds: insert.max(floor),
                refresher: None,
                other_params: String::new(),
            });
            Some(floor)
        }
        None => requested_min.map(|_| floor),
    };
    Ok(TimerOffer {
        supported,
        expires,
        min_se,
    })
}

/// Writes the screened headers on the copy going to the other leg.
pub(super) fn write_request(offer: &TimerOffer, headers: &mut Headers) {
    if let Some(expires) = &offer.expires {
        headers.set(HeaderName::SessionExpires, expires.to_string());
    }
    if let Some(min_se) = offer.min_se {
        headers.set(HeaderName::MinSe, min_se.to_string());
    }
    if offer.supported {
        headers.push(HeaderName::Supported, TIMER);
    }
}

/// Completes the 2xx going back to the sender of `offer` from the other leg's 2xx
/// (`response`), and returns the negotiated interval (None: no session timer from now on,
/// RFC 4028 §7.2/§8.2). The other side's Session-Expires, and `timer` in its Require and
/// Supported, are passed on; when it does not do timers but the sender does and an interval
/// was asked, the sender is told to refresh (`refresher=uac`, `Require: timer`, §8.2).
pub(super) fn write_answer(
    offer: &TimerOffer,
    response: &Response,
    answer: &mut Response,
) -> Option<u32> {
    // A malformed Session-Expires in a 2xx cannot be refused: read as none.
    if let Ok(Some(expires)) = session_expires(&response.headers) {
        answer
            .headers
            .set(HeaderName::SessionExpires, expires.to_string());
        if has_option_tag(&response.headers, &HeaderName::Require, TIMER) {
            answer.headers.push(HeaderName::Require, TIMER);
        }
        if has_option_tag(&response.headers, &HeaderName::Supported, TIMER) {
            answer.headers.push(HeaderName::Supported, TIMER);
        }
        return Some(expires.seconds);
    }
    let requested = offer.expires.as_ref().filter(|_| offer.supported)?;
    answer.headers.set(
        HeaderName::SessionExpires,
        format!("{};refresher=uac", requested.seconds),
    );
    answer.headers.push(HeaderName::Require, TIMER);
    Some(requested.seconds)
}

/// Passes the Min-SE of a 422 on to the sender (it retries with a longer interval).
pub(super) fn copy_min_se(response: &Response, answer: &mut Response) {
    if let Some(min_se) = response.headers.get(&HeaderName::MinSe) {
        answer.headers.set(HeaderName::MinSe, min_se);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(lines: &[(&str, &str)]) -> Headers {
        let mut h = Headers::new();
        for (name, value) in lines {
            h.push(HeaderName::from_wire(name), *value);
        }
        h
    }

    const POLICY: TimerPolicy = TimerPolicy {
        min_se: 90,
        insert: 1800,
    };

    #[test]
    fn session_expires_reads_the_long_and_compact_forms_with_parameters() {
        let se = session_expires(&headers(&[("Session-Expires", "1800;refresher=uac")]))
            .unwrap()
            .unwrap();
        assert_eq!((se.seconds, se.refresher), (1800, Some(Refresher::Uac)));
        let se = session_expires(&headers(&[("x", " 600 ; Refresher = UAS ;foo=bar")]))
            .unwrap()
            .unwrap();
        assert_eq!((se.seconds, se.refresher), (600, Some(Refresher::Uas)));
        assert_eq!(se.to_string(), "600;refresher=uas;foo=bar");
        assert_eq!(session_expires(&headers(&[])), Ok(None));
        let huge = session_expires(&headers(&[("x", "99999999999999")]))
            .unwrap()
            .unwrap();
        assert_eq!(huge.seconds, u32::MAX);
    }

    #[test]
    fn malformed_session_timer_headers_are_errors() {
        for bad in [
            "",
            "abc",
            "-5",
            "1800;refresher=both",
            "1800;refresher",
            "1800;",
            "1800, 900",
            "18 00",
        ] {
            assert_eq!(
                session_expires(&headers(&[("Session-Expires", bad)])),
                Err(TimerHeaderError::SessionExpires),
                "{bad:?}"
            );
        }
        let twice = headers(&[("Session-Expires", "1800"), ("x", "900")]);
        assert_eq!(
            session_expires(&twice),
            Err(TimerHeaderError::SessionExpires)
        );
        assert_eq!(
            min_se(&headers(&[("Min-SE", "ninety")])),
            Err(TimerHeaderError::MinSe)
        );
        assert_eq!(min_se(&headers(&[("min-se", "120;x=1")])), Ok(Some(120)));
    }

    #[test]
    fn the_timer_option_tag_is_found_in_any_case_and_position() {
        let h = headers(&[("Supported", "100rel"), ("k", "replaces, TIMER")]);
        assert!(has_option_tag(&h, &HeaderName::Supported, "timer"));
        assert!(!has_option_tag(&h, &HeaderName::Require, "timer"));
        let h = headers(&[("Supported", "timers, 100rel")]);
        assert!(!has_option_tag(&h, &HeaderName::Supported, "timer"));
    }

    #[test]
    fn screening_refuses_raises_inserts_or_passes() {
        // Below our Min-SE, the sender can read a 422.
        let h = headers(&[("Session-Expires", "60"), ("Supported", "timer")]);
        assert_eq!(
            screen(&h, POLICY, 1800),
            Err(Refusal::TooSmall { min_se: 90 })
        );
        // It cannot: raised, Min-SE says why.
        let offer = screen(&headers(&[("x", "60;refresher=uac")]), POLICY, 1800).unwrap();
        assert_eq!(
            offer.expires.unwrap().to_string(),
            "90;refresher=uac",
            "raised, refresher kept"
        );
        assert_eq!(offer.min_se, Some(90));
        // Supported but nothing asked: ours inserted, no refresher chosen.
        let offer = screen(&headers(&[("Supported", "timer")]), POLICY, 1800).unwrap();
        assert_eq!(offer.expires.unwrap().to_string(), "1800");
        // Nothing: no timer.
        assert_eq!(
            screen(&headers(&[]), POLICY, 1800),
            Ok(TimerOffer::default())
        );
        // Within bounds: passed unchanged, Min-SE at least ours.
        let h = headers(&[("Session-Expires", "300"), ("Min-SE", "120")]);
        let offer = screen(&h, POLICY, 1800).unwrap();
        assert_eq!(offer.expires.unwrap().seconds, 300);
        assert_eq!(offer.min_se, Some(120));
        let offer = screen(&headers(&[("Session-Expires", "300")]), POLICY, 1800).unwrap();
        assert_eq!(offer.min_se, Some(90));
        assert_eq!(
            screen(&headers(&[("Min-SE", "x")]), POLICY, 1800),
            Err(Refusal::Malformed(TimerHeaderError::MinSe))
        );
    }
}
