//! The verifying side: challenges with stateless HMAC nonces, and verification of
//! Authorization / Proxy-Authorization credentials against a stored HA1.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use sip_msg::typed::{AuthParams, AuthScheme, Challenge, Credentials};
use sip_msg::{Method, Uri};
use subtle::ConstantTimeEq;

use super::{Algorithm, DigestError, Ha1, ResponseInput, compute_response};

type HmacSha256 = Hmac<Sha256>;

/// Bytes of a decoded nonce: an 8-byte big-endian timestamp, an 8-byte salt and a 32-byte
/// HMAC of both. The salt makes every challenge's nonce unique: without it, every
/// client challenged in the same second would share a nonce, and the nonce-count replay check
/// (keyed by nonce) would refuse all but the first of them.
const NONCE_LEN: usize = 8 + 8 + 32;

/// Nonces dated this far in the future are still accepted: replicas' clocks differ a little.
const MAX_CLOCK_SKEW_SECS: u64 = 30;

/// Issues challenges and verifies credentials for one realm. Holds no per-client state:
/// every replica configured with the same realm and key accepts the others' nonces.
#[derive(Clone)]
pub struct DigestServer {
    realm: String,
    key: [u8; 32],
    nonce_lifetime: Duration,
    allowed: Vec<Algorithm>,
    /// Makes nonces unique: `salt_seed + n` for the n-th nonce of this server (and its clones).
    salt_seed: u64,
    issued: Arc<AtomicU64>,
}

/// A successful verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedUser {
    pub username: String,
    pub algorithm: Algorithm,
    /// When the nonce was issued (unix seconds).
    pub nonce_issued_at: u64,
    /// The nonce count, when qop was used (feed it to a [`NonceCountTracker`]).
    pub nonce_count: Option<u32>,
}

impl fmt::Debug for DigestServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigestServer")
            .field("realm", &self.realm)
            .field("key", &"<redacted>")
            .field("nonce_lifetime", &self.nonce_lifetime)
            .field("allowed", &self.allowed)
            .finish()
    }
}

impl DigestServer {
    /// A server for `realm` whose nonces are signed with `key` and go stale after
    /// `nonce_lifetime`. Every algorithm is accepted until [`Self::with_allowed_algorithms`].
    pub fn new(realm: impl Into<String>, key: [u8; 32], nonce_lifetime: Duration) -> DigestServer {
        DigestServer {
            realm: realm.into(),
            key,
            nonce_lifetime,
            allowed: Algorithm::ALL.to_vec(),
            salt_seed: 0,
            issued: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Seeds the salt that makes each nonce unique. Replicas sharing a key should use
    /// different (e.g. random) seeds so that their nonces differ too; the core itself draws no
    /// randomness.
    pub fn with_salt_seed(mut self, seed: u64) -> DigestServer {
        self.salt_seed = seed;
        self
    }

    /// Restricts the algorithms accepted in credentials (e.g. to refuse MD5 on a site).
    pub fn with_allowed_algorithms(mut self, algorithms: &[Algorithm]) -> DigestServer {
        self.allowed = algorithms.to_vec();
        self
    }

    pub fn realm(&self) -> &str {
        &self.realm
    }

    fn mac(&self, timestamp: u64, salt: &[u8]) -> HmacSha256 {
        // new_from_slice only fails for key lengths HMAC cannot take; 32 bytes is always valid.
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(&timestamp.to_be_bytes());
        mac.update(salt);
        mac.update(self.realm.as_bytes());
        mac
    }

    /// A fresh nonce dated `now_unix_secs` (unique: it carries a per-nonce salt).
    pub fn nonce(&self, now_unix_secs: u64) -> String {
        let n = self.issued.fetch_add(1, Ordering::Relaxed);
        let salt = self.salt_seed.wrapping_add(n).to_be_bytes();
        let mut raw = Vec::with_capacity(NONCE_LEN);
        raw.extend_from_slice(&now_unix_secs.to_be_bytes());
        raw.extend_from_slice(&salt);
        raw.extend_from_slice(&self.mac(now_unix_secs, &salt).finalize().into_bytes());
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Checks the nonce's signature; returns its timestamp and whether it has expired.
    fn check_nonce(&self, nonce: &str, now: u64) -> Result<(u64, bool), DigestError> {
        let raw = URL_SAFE_NO_PAD
            .decode(nonce)
            .map_err(|_| DigestError::ForgedNonce)?;
        if raw.len() != NONCE_LEN {
            return Err(DigestError::ForgedNonce);
        }
        let (ts_bytes, rest) = raw.split_at(8);
        let (salt, tag) = rest.split_at(8);
        let mut ts = [0u8; 8];
        ts.copy_from_slice(ts_bytes);
        let timestamp = u64::from_be_bytes(ts);
        // verify_slice compares in constant time.
        self.mac(timestamp, salt)
            .verify_slice(tag)
            .map_err(|_| DigestError::ForgedNonce)?;
        if timestamp > now.saturating_add(MAX_CLOCK_SKEW_SECS) {
            return Err(DigestError::ForgedNonce);
        }
        let expired = now.saturating_sub(timestamp) > self.nonce_lifetime.as_secs();
        Ok((timestamp, expired))
    }

    /// One challenge per algorithm, strongest first (RFC 8760 §2.4: a client picks the first
    /// it supports), all with the same fresh nonce and `qop="auth"`.
    pub fn challenge(
        &self,
        now_unix_secs: u64,
        algorithms: &[Algorithm],
        stale: bool,
    ) -> Vec<Challenge> {
        let mut algorithms = algorithms.to_vec();
        algorithms.sort_by_key(|a| std::cmp::Reverse(a.strength()));
        algorithms.dedup();
        let nonce = self.nonce(now_unix_secs);
        algorithms
            .into_iter()
            .map(|a| {
                let mut params = AuthParams::new();
                params.set("realm", self.realm.as_str());
                params.set("nonce", nonce.as_str());
                params.set("algorithm", a.as_str());
                params.set("qop", "auth");
                if stale {
                    params.set("stale", "true");
                }
                Challenge {
                    scheme: AuthScheme::Digest,
                    params,
                }
            })
            .collect()
    }

    /// Of the credentials in a request (one per realm a client answers), the ones for us.
    pub fn find_credentials<'a>(&self, credentials: &'a [Credentials]) -> Option<&'a Credentials> {
        credentials
            .iter()
            .find(|c| c.scheme == AuthScheme::Digest && c.realm() == Some(&self.realm))
    }

    /// Verifies `credentials` sent with a request of `method` to `request_uri`.
    /// `ha1_lookup(username, algorithm)` returns the stored HA1 for that user and the
    /// algorithm's hash function, or `None` when the user is unknown.
    pub fn verify(
        &self,
        now_unix_secs: u64,
        credentials: &Credentials,
        method: &Method,
        request_uri: &Uri,
        ha1_lookup: impl FnOnce(&str, Algorithm) -> Option<Ha1>,
    ) -> Result<VerifiedUser, DigestError> {
        if credentials.scheme != AuthScheme::Digest {
            return Err(DigestError::UnsupportedScheme);
        }
        let p = &credentials.params;
        let required = |name: &'static str| {
            p.get(name)
                .filter(|v| !v.is_empty())
                .ok_or(DigestError::MissingParameter(name))
        };
        let username = required("username")?;
        let realm = required("realm")?;
        let nonce = required("nonce")?;
        let uri = required("uri")?;
        let response = required("response")?;
        if realm != self.realm {
            return Err(DigestError::RealmMismatch);
        }
        let algorithm = match p.get("algorithm") {
            None => Algorithm::Md5,
            Some(a) => Algorithm::from_token(a).ok_or(DigestError::UnsupportedAlgorithm)?,
        };
        if !self.allowed.contains(&algorithm) {
            return Err(DigestError::UnsupportedAlgorithm);
        }
        let (qop, nonce_count) = match p.get("qop") {
            Some(q) if q.eq_ignore_ascii_case("auth") => {
                let nc = required("nc")?;
                let cnonce = required("cnonce")?;
                if nc.len() != 8 || !nc.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(DigestError::MalformedParameter("nc"));
                }
                let count = u32::from_str_radix(nc, 16)
                    .map_err(|_| DigestError::MalformedParameter("nc"))?;
                (Some((nc, cnonce, q)), Some(count))
            }
            Some(_) => return Err(DigestError::UnsupportedQop),
            // RFC 2069 form: only for plain MD5 (old handsets); RFC 7616 requires qop otherwise.
            None if algorithm == Algorithm::Md5 => (None, None),
            None => return Err(DigestError::UnsupportedQop),
        };
        if !uri_matches(uri, request_uri) {
            return Err(DigestError::UriMismatch);
        }
        let (issued_at, expired) = self.check_nonce(nonce, now_unix_secs)?;

        let input = ResponseInput {
            algorithm,
            nonce,
            qop,
            method: method.as_str(),
            uri,
        };
        let stored = ha1_lookup(username, algorithm).filter(|h| h.hash() == algorithm.hash());
        let known = stored.is_some();
        // Unknown users cost the same work as known ones: a stand-in HA1 derived from the
        // key keeps the timing of both answers alike (no account enumeration).
        let ha1 = stored.unwrap_or_else(|| self.stand_in_ha1(algorithm, username));
        let expected = compute_response(&ha1, &input);
        let given = response.to_ascii_lowercase();
        let equal: bool = expected.as_bytes().ct_eq(given.as_bytes()).into();
        if !known {
            return Err(DigestError::UnknownUser);
        }
        if !equal {
            return Err(DigestError::WrongResponse);
        }
        if expired {
            return Err(DigestError::StaleNonce);
        }
        Ok(VerifiedUser {
            username: username.to_owned(),
            algorithm,
            nonce_issued_at: issued_at,
            nonce_count,
        })
    }

    fn stand_in_ha1(&self, algorithm: Algorithm, username: &str) -> Ha1 {
        let mut mac = self.mac(0, b"stand-in");
        mac.update(username.as_bytes());
        let secret = hex::encode(mac.finalize().into_bytes());
        super::ha1(algorithm, username, &self.realm, &secret)
    }
}

/// True when the digest `uri` designates the Request-URI: equal once parsed (so that
/// equivalent spellings match), or byte-for-byte equal to its printed form.
fn uri_matches(digest_uri: &str, request_uri: &Uri) -> bool {
    Uri::parse(digest_uri).is_ok_and(|u| &u == request_uri) || digest_uri == request_uri.to_string()
}

/// Remembers the highest nonce count seen per nonce, for a bounded number of nonces, and
/// refuses a count that does not increase (RFC 7616 §3.4: replay protection). Nonces stay
/// stateless; this is a per-replica best effort, oldest entries evicted first.
#[derive(Debug, Clone)]
pub struct NonceCountTracker {
    capacity: usize,
    highest: HashMap<String, u32>,
    order: VecDeque<String>,
}

impl NonceCountTracker {
    pub fn new(capacity: usize) -> NonceCountTracker {
        NonceCountTracker {
            capacity: capacity.max(1),
            highest: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Records `nc` for `nonce`; `Err(NonceCountReplay)` when it is not above the last one.
    pub fn observe(&mut self, nonce: &str, nc: u32) -> Result<(), DigestError> {
        if let Some(last) = self.highest.get_mut(nonce) {
            if nc <= *last {
                return Err(DigestError::NonceCountReplay);
            }
            *last = nc;
            return Ok(());
        }
        if self.order.len() >= self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.highest.remove(&oldest);
        }
        self.order.push_back(nonce.to_owned());
        self.highest.insert(nonce.to_owned(), nc);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.highest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.highest.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> DigestServer {
        DigestServer::new("calanque.test", [7; 32], Duration::from_secs(300))
    }

    #[test]
    fn nonce_round_trips_and_ages() {
        let s = server();
        let n = s.nonce(1_000);
        assert_eq!(s.check_nonce(&n, 1_100), Ok((1_000, false)));
        assert_eq!(s.check_nonce(&n, 1_301), Ok((1_000, true)));
        // Far in the future (another replica's clock is not that wrong).
        assert_eq!(
            s.check_nonce(&s.nonce(2_000), 1_000),
            Err(DigestError::ForgedNonce)
        );
        // Another realm's key or name does not verify.
        let other = DigestServer::new("other.test", [7; 32], Duration::from_secs(300));
        assert_eq!(other.check_nonce(&n, 1_000), Err(DigestError::ForgedNonce));
        assert_eq!(
            s.check_nonce("not base64!", 1_000),
            Err(DigestError::ForgedNonce)
        );
    }

    #[test]
    fn nonces_issued_in_the_same_second_differ_and_all_verify() {
        let s = DigestServer::new("r", [1; 32], Duration::from_secs(300)).with_salt_seed(42);
        let clone = s.clone();
        let nonces: std::collections::HashSet<String> = (0..100)
            .map(|i| {
                if i % 2 == 0 {
                    s.nonce(1_000)
                } else {
                    clone.nonce(1_000)
                }
            })
            .collect();
        assert_eq!(nonces.len(), 100, "a nonce was issued twice");
        for n in &nonces {
            assert_eq!(s.check_nonce(n, 1_000), Ok((1_000, false)));
        }
        let other_seed =
            DigestServer::new("r", [1; 32], Duration::from_secs(300)).with_salt_seed(7);
        assert!(!nonces.contains(&other_seed.nonce(1_000)));
    }

    #[test]
    fn nonce_count_tracker_refuses_replays_and_evicts_oldest() {
        let mut t = NonceCountTracker::new(2);
        assert_eq!(t.observe("a", 1), Ok(()));
        assert_eq!(t.observe("a", 1), Err(DigestError::NonceCountReplay));
        assert_eq!(t.observe("a", 2), Ok(()));
        assert_eq!(t.observe("b", 1), Ok(()));
        assert_eq!(t.observe("c", 1), Ok(()));
        assert_eq!(t.len(), 2);
        // "a" was evicted: its count is forgotten.
        assert_eq!(t.observe("a", 1), Ok(()));
        assert!(!t.is_empty());
    }

    #[test]
    fn debug_does_not_print_the_key() {
        assert!(!format!("{:?}", server()).contains("7, 7"));
    }
}
