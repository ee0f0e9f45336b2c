//! Branch, tag and Call-ID generation without an OS random source: the core stays
//! deterministic under test, and services seed it from the OS at start-up.

/// A splitmix64 sequence rendered as lowercase base-32 tokens. Not for secrets (digest
/// nonces use an HMAC key instead); only for identifiers that must be unique and unguessable
/// enough not to collide across replicas when seeded differently.
#[derive(Debug, Clone)]
pub struct IdGenerator {
    state: u64,
}

impl IdGenerator {
    pub fn new(seed: u64) -> IdGenerator {
        IdGenerator { state: seed }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A 13-character token from 64 random bits.
    pub fn token(&mut self) -> String {
        const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
        let mut v = self.next_u64();
        let mut out = String::with_capacity(13);
        for _ in 0..13 {
            out.push(ALPHABET[(v & 31) as usize] as char);
            v >>= 5;
        }
        out
    }

    /// A branch with the RFC 3261 magic cookie.
    pub fn branch(&mut self) -> String {
        format!("{}{}", sip_msg::typed::BRANCH_MAGIC_COOKIE, self.token())
    }

    /// A From/To tag.
    pub fn tag(&mut self) -> String {
        self.token()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_differ_and_branches_carry_the_cookie() {
        let mut g = IdGenerator::new(7);
        let (a, b) = (g.token(), g.token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 13);
        assert!(g.branch().starts_with("z9hG4bK"));
    }
}
