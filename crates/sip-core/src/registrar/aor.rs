//! The canonical address-of-record (§10.3 step 5).

use sip_msg::{Host, Uri};

/// The AOR of a To URI in canonical form: parameters and port removed, the user part
/// unescaped, the host lower-cased, the scheme `sip` (a `sips:` AOR is the same AOR).
/// `None` for a URI that is not `sip:`/`sips:`.
///
/// The port is dropped because phones differ in writing `:5060` in To; the location service
/// indexes users by user and domain.
pub fn canonical_aor(uri: &Uri) -> Option<String> {
    if !uri.is_sip_or_sips() {
        return None;
    }
    let host = match &uri.host {
        Host::Domain(d) => d.to_ascii_lowercase(),
        other => other.to_string(),
    };
    Some(match &uri.user {
        Some(user) => format!("sip:{}@{host}", unescape(user)),
        None => format!("sip:{host}"),
    })
}

/// Decodes `%HH` escapes; a string with a broken escape or that does not decode to UTF-8 is
/// returned as received.
pub(super) fn unescape(s: &str) -> String {
    if !s.contains('%') {
        return s.to_owned();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(b) => {
                    out.push(b);
                    i += 3;
                }
                None => return s.to_owned(),
            }
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| s.to_owned())
}
