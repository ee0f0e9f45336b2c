//! The answering side: builds credentials for the strongest challenge we support
//! (used by trunks registering to carriers and by tests playing a handset).

use sip_msg::Method;
use sip_msg::typed::{AuthParams, AuthScheme, Challenge, Credentials};

use super::{Algorithm, DigestError, Ha1, ResponseInput, compute_response, ha1};

/// What the client knows: a password, or stored HA1 values (one per hash function).
#[derive(Debug, Clone, Copy)]
pub enum ClientSecret<'a> {
    Password(&'a str),
    /// Only challenges whose algorithm uses one of these HA1s' hash functions are answerable.
    Ha1(&'a [Ha1]),
}

/// Answers the strongest Digest challenge among `challenges` that we can answer: a known
/// algorithm (absent means MD5), and either `qop` offering `auth` or, for MD5 only, no qop
/// at all (RFC 2069 form, for old servers). `cnonce` and `nc` are the caller's: the nonce
/// count must increase for each request sent with the same nonce.
pub fn answer(
    challenges: &[Challenge],
    username: &str,
    secret: ClientSecret<'_>,
    method: &Method,
    uri: &str,
    cnonce: &str,
    nc: u32,
) -> Result<Credentials, DigestError> {
    let mut best: Option<(&Challenge, Algorithm, bool, Ha1)> = None;
    for c in challenges.iter().filter(|c| c.scheme == AuthScheme::Digest) {
        let (Some(realm), Some(_nonce)) = (c.realm(), c.params.get("nonce")) else {
            continue;
        };
        let algorithm = match c.params.get("algorithm") {
            None => Algorithm::Md5,
            Some(a) => match Algorithm::from_token(a) {
                Some(a) => a,
                None => continue,
            },
        };
        let with_qop = match c.params.get("qop") {
            Some(q) if q.split(',').any(|o| o.trim().eq_ignore_ascii_case("auth")) => true,
            Some(_) => continue,
            None if algorithm == Algorithm::Md5 => false,
            None => continue,
        };
        let key = match secret {
            ClientSecret::Password(pw) => ha1(algorithm, username, realm, pw),
            ClientSecret::Ha1(list) => match list.iter().find(|h| h.hash() == algorithm.hash()) {
                Some(h) => h.clone(),
                None => continue,
            },
        };
        if best
            .as_ref()
            .is_none_or(|(_, a, _, _)| algorithm.strength() > a.strength())
        {
            best = Some((c, algorithm, with_qop, key));
        }
    }
    let (challenge, algorithm, with_qop, key) = best.ok_or(DigestError::NoUsableChallenge)?;
    let realm = challenge.realm().unwrap_or_default();
    let nonce = challenge.params.get("nonce").unwrap_or_default();
    let nc_hex = format!("{nc:08x}");
    let input = ResponseInput {
        algorithm,
        nonce,
        qop: with_qop.then_some((nc_hex.as_str(), cnonce, "auth")),
        method: method.as_str(),
        uri,
    };
    let response = compute_response(&key, &input);

    let mut params = AuthParams::new();
    params.set("username", username);
    params.set("realm", realm);
    params.set("nonce", nonce);
    params.set("uri", uri);
    params.set("response", response);
    // Echo the algorithm only if the server named it: RFC 2069 servers do not know the field.
    if challenge.params.get("algorithm").is_some() {
        params.set("algorithm", algorithm.as_str());
    }
    if with_qop {
        params.set("qop", "auth");
        params.set("nc", nc_hex);
        params.set("cnonce", cnonce);
    }
    if let Some(opaque) = challenge.params.get("opaque") {
        params.set("opaque", opaque);
    }
    Ok(Credentials {
        scheme: AuthScheme::Digest,
        params,
    })
}
