//! The checks a SIP element runs on a well-formed request before acting on it, in the order
//! RFC 3261 gives them: for a user agent server §8.2.1 (method, 405), §8.2.2.1 (Request-URI
//! scheme, 416), §8.2.2.3 (Require, 420), §8.2.3 (content, 415) and the Accept check that
//! yields 406; for a proxy §16.3 (scheme 416, Max-Forwards 483, Proxy-Require 420).
//! Syntax faults are the parser's (`sip_msg::parse_datagram` answers 400); authentication,
//! loop detection and merged requests need state and live above.
//!
//! These checks turn the application-layer torture messages of RFC 4475 §3.3 into the
//! answers it expects (see `tests/screening.rs`).

use sha2::{Digest as _, Sha256};
use sip_msg::{HeaderName, Method, Request, Response, Scheme, StatusCode, Uri, build_response};

/// 406 Not Acceptable (sip-msg names no constant for it).
const NOT_ACCEPTABLE: StatusCode = match StatusCode::new(406) {
    Some(code) => code,
    None => panic!("406 is a status code"),
};

/// Which kind of element screens the request: the checks differ (§8.2 vs §16.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A user agent server (registrar, voicemail, a B2BUA leg that ends here): §8.2 checks;
    /// Max-Forwards 0 is processed as if positive (RFC 4475 §3.3.11).
    UserAgentServer,
    /// A B2BUA that forwards what it accepts: §8.2 checks, plus 483 on Max-Forwards 0
    /// except for OPTIONS, which it answers itself (§11, §16.3 item 3).
    B2bua,
    /// A proxy: §16.3 checks only (scheme, Max-Forwards, Proxy-Require).
    Proxy,
}

/// What this element supports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScreeningPolicy {
    pub role: Role,
    /// Methods answered with something else than 405 (listed in Allow).
    pub allowed_methods: Vec<Method>,
    /// Request-URI schemes handled; others get 416.
    pub uri_schemes: Vec<Scheme>,
    /// Option tags understood in Require (UAS) or Proxy-Require (proxy); compared
    /// case-insensitively.
    pub supported_extensions: Vec<String>,
    /// Body media types understood (`type/subtype`, lower case); listed in Accept with 415.
    pub accepted_content_types: Vec<String>,
    /// Content codings understood besides `identity`.
    pub accepted_encodings: Vec<String>,
    /// The media type of the body we answer an INVITE with (SDP); a request whose Accept
    /// excludes it gets 406.
    pub answer_content_type: Option<String>,
}

impl ScreeningPolicy {
    /// What calanque's user-agent services handle.
    pub fn user_agent_server() -> ScreeningPolicy {
        ScreeningPolicy {
            role: Role::UserAgentServer,
            allowed_methods: vec![
                Method::Invite,
                Method::Ack,
                Method::Bye,
                Method::Cancel,
                Method::Options,
                Method::Register,
                Method::Info,
                Method::Update,
                Method::Prack,
                Method::Subscribe,
                Method::Notify,
                Method::Refer,
                Method::Message,
            ],
            uri_schemes: vec![Scheme::Sip, Scheme::Sips, Scheme::Tel],
            supported_extensions: ["100rel", "timer", "replaces", "path", "outbound", "gruu"]
                .map(String::from)
                .to_vec(),
            accepted_content_types: [
                "application/sdp",
                "application/dtmf-relay",
                "message/sipfrag",
                "application/pidf+xml",
                "application/simple-message-summary",
                "text/plain",
                "multipart/mixed",
            ]
            .map(String::from)
            .to_vec(),
            accepted_encodings: Vec::new(),
            answer_content_type: Some("application/sdp".to_owned()),
        }
    }

    /// A proxy's policy: same schemes, the extensions it understands in Proxy-Require.
    pub fn proxy() -> ScreeningPolicy {
        ScreeningPolicy {
            role: Role::Proxy,
            supported_extensions: ["path", "outbound", "gruu"].map(String::from).to_vec(),
            ..ScreeningPolicy::user_agent_server()
        }
    }

    /// A B2BUA's policy: a user agent server that forwards.
    pub fn b2bua() -> ScreeningPolicy {
        ScreeningPolicy {
            role: Role::B2bua,
            ..ScreeningPolicy::user_agent_server()
        }
    }
}

/// Runs the checks in RFC order; `Err` holds the response to send. An ACK is never
/// answered (§17), so it always passes.
pub fn screen_request(request: &Request, policy: &ScreeningPolicy) -> Result<(), Box<Response>> {
    if request.method == Method::Ack {
        return Ok(());
    }
    match policy.role {
        Role::Proxy => {
            check_scheme(request, policy)?;
            check_max_forwards(request)?;
            check_extensions(request, policy, HeaderName::ProxyRequire)?;
        }
        Role::UserAgentServer | Role::B2bua => {
            check_method(request, policy)?;
            check_scheme(request, policy)?;
            if policy.role == Role::B2bua && request.method != Method::Options {
                check_max_forwards(request)?;
            }
            check_extensions(request, policy, HeaderName::Require)?;
            check_content(request, policy)?;
            check_accept(request, policy)?;
        }
    }
    Ok(())
}

/// A response to `request` with a To tag derived from the request, so that retransmissions
/// of a rejected request get the same tag without any state (§8.2.6.2 requires a tag).
pub fn reject(request: &Request, status: StatusCode) -> Box<Response> {
    Box::new(build_response(
        request,
        status,
        Some(&stateless_tag(request)),
    ))
}

fn stateless_tag(request: &Request) -> String {
    let h = &request.headers;
    let mut hash = Sha256::new();
    for part in [
        h.call_id().unwrap_or_default(),
        h.get(&HeaderName::From).unwrap_or_default(),
        h.get(&HeaderName::Via).unwrap_or_default(),
        h.get(&HeaderName::CSeq).unwrap_or_default(),
    ] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hex::encode(&hash.finalize()[..8])
}

/// §8.2.1: 405 with Allow.
fn check_method(request: &Request, policy: &ScreeningPolicy) -> Result<(), Box<Response>> {
    if policy.allowed_methods.contains(&request.method) {
        return Ok(());
    }
    let mut response = reject(request, StatusCode::METHOD_NOT_ALLOWED);
    let allow: Vec<&str> = policy.allowed_methods.iter().map(Method::as_str).collect();
    response.headers.push(HeaderName::Allow, allow.join(", "));
    Err(response)
}

/// §8.2.2.1 / §16.3 item 2: 416 for a Request-URI scheme we do not handle.
fn check_scheme(request: &Request, policy: &ScreeningPolicy) -> Result<(), Box<Response>> {
    if policy.uri_schemes.contains(&request.uri.scheme) {
        Ok(())
    } else {
        Err(reject(request, StatusCode::UNSUPPORTED_URI_SCHEME))
    }
}

/// §16.3 item 3: a request that would be forwarded with Max-Forwards 0 gets 483.
fn check_max_forwards(request: &Request) -> Result<(), Box<Response>> {
    let zero = request
        .headers
        .get(&HeaderName::MaxForwards)
        .and_then(|v| v.trim().parse::<u32>().ok())
        .is_some_and(|mf| mf == 0);
    if zero {
        Err(reject(request, StatusCode::TOO_MANY_HOPS))
    } else {
        Ok(())
    }
}

/// §8.2.2.3 / §16.3 item 5: 420 with Unsupported listing every unknown option tag of
/// `header` (Require for a UAS, Proxy-Require for a proxy). Not applied to CANCEL (§9.1).
fn check_extensions(
    request: &Request,
    policy: &ScreeningPolicy,
    header: HeaderName,
) -> Result<(), Box<Response>> {
    if request.method == Method::Cancel {
        return Ok(());
    }
    let unknown: Vec<&str> = request
        .headers
        .get_all(&header)
        .flat_map(|line| line.split(','))
        .map(str::trim)
        .filter(|tag| !tag.is_empty())
        .filter(|tag| {
            !policy
                .supported_extensions
                .iter()
                .any(|s| s.eq_ignore_ascii_case(tag))
        })
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    let mut response = reject(request, StatusCode::BAD_EXTENSION);
    response
        .headers
        .push(HeaderName::Unsupported, unknown.join(", "));
    Err(response)
}

/// `type/subtype` of a Content-Type or media-range, lower-cased, parameters dropped.
fn media_type(value: &str) -> String {
    value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// §8.2.3: 415 for a body of a type or coding we do not understand, with Accept and
/// Accept-Encoding saying what we do understand. A body marked `handling=optional` may be
/// ignored instead. Not applied to CANCEL (which carries no body of consequence).
fn check_content(request: &Request, policy: &ScreeningPolicy) -> Result<(), Box<Response>> {
    if request.method == Method::Cancel || request.body.is_empty() {
        return Ok(());
    }
    let optional = request
        .headers
        .get(&HeaderName::ContentDisposition)
        .is_some_and(|d| {
            d.split(';')
                .skip(1)
                .any(|p| p.trim().eq_ignore_ascii_case("handling=optional"))
        });
    if optional {
        return Ok(());
    }
    let type_ok = request
        .headers
        .get(&HeaderName::ContentType)
        .is_none_or(|ct| {
            let ct = media_type(ct);
            policy
                .accepted_content_types
                .iter()
                .any(|a| a.eq_ignore_ascii_case(&ct))
        });
    let coding_ok = request
        .headers
        .get_all(&HeaderName::ContentEncoding)
        .flat_map(|line| line.split(','))
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .all(|c| {
            c.eq_ignore_ascii_case("identity")
                || policy
                    .accepted_encodings
                    .iter()
                    .any(|a| a.eq_ignore_ascii_case(c))
        });
    if type_ok && coding_ok {
        return Ok(());
    }
    let mut response = reject(request, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    response
        .headers
        .push(HeaderName::Accept, policy.accepted_content_types.join(", "));
    let mut encodings = vec!["identity".to_owned()];
    encodings.extend(policy.accepted_encodings.iter().cloned());
    response
        .headers
        .push(HeaderName::AcceptEncoding, encodings.join(", "));
    Err(response)
}

/// §21.4.7 with §20.1: an INVITE whose Accept excludes the only body type we could answer
/// with (SDP) gets 406 (RFC 4475 §3.3.15). An empty Accept accepts nothing; a media range
/// with `q=0` is excluded.
fn check_accept(request: &Request, policy: &ScreeningPolicy) -> Result<(), Box<Response>> {
    let Some(answer_type) = &policy.answer_content_type else {
        return Ok(());
    };
    if request.method != Method::Invite || !request.headers.contains(&HeaderName::Accept) {
        return Ok(());
    }
    let answer_type = answer_type.to_ascii_lowercase();
    let (main, _) = answer_type
        .split_once('/')
        .unwrap_or((answer_type.as_str(), ""));
    let acceptable = request
        .headers
        .get_all(&HeaderName::Accept)
        .flat_map(|line| line.split(','))
        .filter(|range| !range.trim().is_empty())
        .filter(|range| {
            !range.split(';').skip(1).any(|p| {
                p.split_once('=').is_some_and(|(n, v)| {
                    n.trim().eq_ignore_ascii_case("q") && v.trim().parse::<f32>() == Ok(0.0)
                })
            })
        })
        .map(media_type)
        .any(|range| range == "*/*" || range == answer_type || range == format!("{main}/*"));
    if acceptable {
        Ok(())
    } else {
        Err(reject(request, NOT_ACCEPTABLE))
    }
}

/// True when `uri` is a scheme this policy handles (for the callers that check other URIs,
/// e.g. a registrar checking To, which RFC 4475 §3.3.4 wants answered with 400, not 416).
pub fn handles_scheme(policy: &ScreeningPolicy, uri: &Uri) -> bool {
    policy.uri_schemes.contains(&uri.scheme)
}
