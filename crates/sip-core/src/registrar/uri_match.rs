//! Contact URI equality for binding lookup (RFC 3261 §19.1.4, without URI headers).

use sip_msg::{Host, Uri};

use super::aor::unescape;

/// URI parameters that make two URIs differ when only one of them has it (§19.1.4).
const SIGNIFICANT: [&str; 5] = ["transport", "user", "ttl", "method", "maddr"];

/// True when `a` and `b` designate the same contact: same scheme, user and password
/// (case-sensitive, after unescaping), host (case-insensitive), port (an absent port differs
/// from an explicit 5060), `transport`/`user`/`ttl`/`method`/`maddr` equal or absent in both,
/// and any other parameter present in both equal (case-insensitive). Non-SIP URIs compare by
/// scheme and scheme-specific part.
pub fn contact_uri_matches(a: &Uri, b: &Uri) -> bool {
    if a.scheme != b.scheme {
        return false;
    }
    if !a.is_sip_or_sips() {
        return a.opaque == b.opaque;
    }
    let same_text = |x: &Option<String>, y: &Option<String>| match (x, y) {
        (Some(x), Some(y)) => unescape(x) == unescape(y),
        (None, None) => true,
        _ => false,
    };
    let same_host = match (&a.host, &b.host) {
        (Host::Domain(x), Host::Domain(y)) => x.eq_ignore_ascii_case(y),
        (x, y) => x == y,
    };
    if !same_text(&a.user, &b.user) || !same_text(&a.password, &b.password) || !same_host {
        return false;
    }
    if a.port != b.port {
        return false;
    }
    let same_value = |x: Option<&str>, y: Option<&str>| match (x, y) {
        (Some(x), Some(y)) => x.eq_ignore_ascii_case(y),
        (None, None) => true,
        _ => false,
    };
    let significant_equal =
        SIGNIFICANT
            .iter()
            .all(|name| match (a.params.get(name), b.params.get(name)) {
                (Some(x), Some(y)) => same_value(x, y),
                (None, None) => true,
                _ => false,
            });
    let common_equal = a.params.iter().all(|(name, x)| match b.params.get(name) {
        Some(y) => same_value(x, y),
        None => true,
    });
    significant_equal && common_equal
}
