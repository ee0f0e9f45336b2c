//! The store layout of the location service: `<prefix><escaped AOR>/<contact key>`.
//!
//! The AOR is percent-escaped so that a `/` in a user part cannot shift the split between AOR
//! and contact, and the contact key is a fixed-width hash of the Contact URI as printed, so a key
//! stays short whatever the URI (some phones put 200-byte parameters in their Contact).

use sha2::{Digest, Sha256};

/// Bytes of SHA-256 kept for a contact key: 128 bits make a collision between the few contacts
/// of one AOR practically impossible, and the key stays 32 hex characters.
pub(crate) const CONTACT_KEY_BYTES: usize = 16;

/// The hash naming one contact of an AOR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ContactKey(pub(crate) [u8; CONTACT_KEY_BYTES]);

impl ContactKey {
    /// The key of a Contact URI as printed (`Uri`'s `Display`, the form `RegisterPlan::removals`
    /// uses).
    pub(crate) fn of(contact: &str) -> ContactKey {
        let digest = Sha256::digest(contact.as_bytes());
        let mut key = [0u8; CONTACT_KEY_BYTES];
        key.copy_from_slice(&digest[..CONTACT_KEY_BYTES]);
        ContactKey(key)
    }

    fn parse(hex_text: &str) -> Option<ContactKey> {
        let mut key = [0u8; CONTACT_KEY_BYTES];
        hex::decode_to_slice(hex_text, &mut key).ok()?;
        Some(ContactKey(key))
    }
}

/// Escapes an AOR into one key segment: `%`, `/`, controls, space and non-ASCII bytes become
/// `%XX`, so the segment never contains `/` and decoding is unambiguous.
pub(crate) fn escape_aor(aor: &str) -> String {
    let mut out = String::with_capacity(aor.len());
    for byte in aor.bytes() {
        if byte == b'%' || byte == b'/' || byte <= b' ' || byte >= 0x7f {
            out.push('%');
            out.push_str(&format!("{byte:02X}"));
        } else {
            out.push(char::from(byte));
        }
    }
    out
}

/// Builds and splits the keys under one prefix.
#[derive(Debug, Clone)]
pub(crate) struct KeyLayout {
    prefix: String,
}

impl KeyLayout {
    pub(crate) fn new(prefix: &str) -> KeyLayout {
        KeyLayout {
            prefix: prefix.to_owned(),
        }
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The key of one binding, from the escaped AOR segment.
    pub(crate) fn key(&self, aor_segment: &str, contact: ContactKey) -> String {
        let mut key = String::with_capacity(
            self.prefix.len() + aor_segment.len() + 1 + 2 * CONTACT_KEY_BYTES,
        );
        key.push_str(&self.prefix);
        key.push_str(aor_segment);
        key.push('/');
        key.push_str(&hex::encode(contact.0));
        key
    }

    /// The prefix of every binding of an AOR (the trailing `/` keeps `sip:a@x` from listing
    /// `sip:a@xy`).
    pub(crate) fn aor_prefix(&self, aor_segment: &str) -> String {
        format!("{}{aor_segment}/", self.prefix)
    }

    /// Splits a stored key into (escaped AOR segment, contact key); `None` for a key this
    /// layout did not write.
    pub(crate) fn split<'k>(&self, key: &'k str) -> Option<(&'k str, ContactKey)> {
        let rest = key.strip_prefix(&self.prefix)?;
        let (segment, contact) = rest.split_once('/')?;
        if segment.is_empty() {
            return None;
        }
        Some((segment, ContactKey::parse(contact)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_removes_slashes_and_is_injective_on_percent() {
        assert_eq!(escape_aor("sip:alice@example.com"), "sip:alice@example.com");
        assert_eq!(escape_aor("sip:a/b@x"), "sip:a%2Fb@x");
        // A literal "%2F" must not collide with an escaped "/".
        assert_eq!(escape_aor("sip:a%2Fb@x"), "sip:a%252Fb@x");
        assert_ne!(escape_aor("sip:a/b@x"), escape_aor("sip:a%2Fb@x"));
    }

    #[test]
    fn keys_round_trip() {
        let layout = KeyLayout::new("calanque/v1/location/");
        let segment = escape_aor("sip:a/b@x");
        let contact = ContactKey::of("sip:a@10.0.0.1:5062;transport=tcp");
        let key = layout.key(&segment, contact);
        assert_eq!(
            key.len(),
            "calanque/v1/location/".len() + segment.len() + 1 + 32
        );
        assert!(key.starts_with(&layout.aor_prefix(&segment)));
        assert_eq!(layout.split(&key), Some((segment.as_str(), contact)));
        assert_eq!(layout.split("calanque/v1/location/x/nothex"), None);
        assert_eq!(layout.split("other/x/00"), None);
    }
}
