//! To tags for the edge's own responses (RFC 3261 §19.3: globally unique, cryptographically
//! random, at least 32 bits).

/// A fresh random To tag.
pub(crate) fn new_tag() -> String {
    format!("{:016x}", rand::random::<u64>())
}
