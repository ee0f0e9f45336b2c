//! Digest authentication for SIP (RFC 3261 §22.4) with the algorithms of RFC 7616 and
//! RFC 8760: MD5, SHA-256 and SHA-512/256, their `-sess` variants, `qop=auth`, and the
//! RFC 2069/2617 no-qop form that old MD5 handsets still send.
//!
//! Secrets: the server side never sees a password. Credentials are provisioned as
//! `HA1 = H(username ":" realm ":" password)` ([`ha1`]), stored by the directory, and
//! looked up per request. Nonces are stateless (any edge replica can verify any nonce):
//! `nonce = base64url(timestamp || HMAC-SHA256(key, timestamp || realm))`, so a forged or
//! altered nonce fails the MAC and an old one is recognised as stale without a table.
//!
//! Time is an argument (`now_unix_secs`), never read here.

mod client;
mod server;

pub use client::{ClientSecret, answer};
pub use server::{DigestServer, NonceCountTracker, VerifiedUser};

use std::fmt;

use md5::Md5;
use sha2::{Digest as _, Sha256, Sha512_256};

/// A digest hash function; the `-sess` variants of [`Algorithm`] share their base's HA1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HashFunction {
    Md5,
    Sha256,
    Sha512_256,
}

impl HashFunction {
    /// Lower-case hex of `H(data)`.
    pub fn hex(self, data: &[u8]) -> String {
        match self {
            HashFunction::Md5 => hex::encode(Md5::digest(data)),
            HashFunction::Sha256 => hex::encode(Sha256::digest(data)),
            HashFunction::Sha512_256 => hex::encode(Sha512_256::digest(data)),
        }
    }

    /// Length of the hex digest.
    pub fn hex_len(self) -> usize {
        match self {
            HashFunction::Md5 => 32,
            HashFunction::Sha256 | HashFunction::Sha512_256 => 64,
        }
    }
}

/// A digest `algorithm` value (RFC 7616 §3.3, RFC 8760 §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Md5,
    Md5Sess,
    Sha256,
    Sha256Sess,
    Sha512_256,
    Sha512_256Sess,
}

impl Algorithm {
    /// Every algorithm, strongest first.
    pub const ALL: [Algorithm; 6] = [
        Algorithm::Sha512_256,
        Algorithm::Sha512_256Sess,
        Algorithm::Sha256,
        Algorithm::Sha256Sess,
        Algorithm::Md5,
        Algorithm::Md5Sess,
    ];

    /// Parses an `algorithm` token, case-insensitively.
    pub fn from_token(s: &str) -> Option<Algorithm> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
            Algorithm::Sha512_256 => "SHA-512-256",
            Algorithm::Sha512_256Sess => "SHA-512-256-sess",
        }
    }

    pub fn hash(self) -> HashFunction {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => HashFunction::Md5,
            Algorithm::Sha256 | Algorithm::Sha256Sess => HashFunction::Sha256,
            Algorithm::Sha512_256 | Algorithm::Sha512_256Sess => HashFunction::Sha512_256,
        }
    }

    /// True for the `-sess` variants, whose HA1 is bound to the nonce and cnonce.
    pub fn is_session(self) -> bool {
        matches!(
            self,
            Algorithm::Md5Sess | Algorithm::Sha256Sess | Algorithm::Sha512_256Sess
        )
    }

    /// Preference rank: higher is stronger; a plain variant is preferred to its `-sess` twin
    /// because more handsets implement it.
    pub fn strength(self) -> u8 {
        let base = match self.hash() {
            HashFunction::Md5 => 0,
            HashFunction::Sha256 => 2,
            HashFunction::Sha512_256 => 4,
        };
        base + u8::from(!self.is_session())
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `H(username ":" realm ":" password)` as lower-case hex, tagged with its hash function.
/// Password-equivalent for its realm: Debug does not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct Ha1 {
    hash: HashFunction,
    hex: String,
}

impl Ha1 {
    /// Wraps a stored HA1. `None` unless `hex` is lower- or upper-case hex of the right length.
    pub fn from_hex(hash: HashFunction, hex: &str) -> Option<Ha1> {
        (hex.len() == hash.hex_len() && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| Ha1 {
            hash,
            hex: hex.to_ascii_lowercase(),
        })
    }

    pub fn hash(&self) -> HashFunction {
        self.hash
    }

    pub fn as_hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Debug for Ha1 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ha1({:?}, <redacted>)", self.hash)
    }
}

/// Computes HA1 once, when credentials are provisioned. `-sess` variants use their base
/// algorithm's HA1 (the session key is derived per nonce at verification time).
pub fn ha1(algorithm: Algorithm, username: &str, realm: &str, password: &str) -> Ha1 {
    let hash = algorithm.hash();
    Ha1 {
        hash,
        hex: hash.hex(format!("{username}:{realm}:{password}").as_bytes()),
    }
}

/// The inputs of one response computation (RFC 7616 §3.4.1).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ResponseInput<'a> {
    pub algorithm: Algorithm,
    pub nonce: &'a str,
    /// `Some((nc, cnonce, qop))` with qop; `None` for the RFC 2069 form.
    pub qop: Option<(&'a str, &'a str, &'a str)>,
    pub method: &'a str,
    pub uri: &'a str,
}

/// The `response` value for `input`, computed from the stored HA1.
pub(crate) fn compute_response(ha1: &Ha1, input: &ResponseInput<'_>) -> String {
    let h = input.algorithm.hash();
    let session_ha1;
    let ha1_hex = if input.algorithm.is_session() {
        let cnonce = input.qop.map_or("", |(_, cnonce, _)| cnonce);
        session_ha1 = h.hex(format!("{}:{}:{cnonce}", ha1.hex, input.nonce).as_bytes());
        session_ha1.as_str()
    } else {
        ha1.hex.as_str()
    };
    let ha2 = h.hex(format!("{}:{}", input.method, input.uri).as_bytes());
    match input.qop {
        Some((nc, cnonce, qop)) => {
            h.hex(format!("{ha1_hex}:{}:{nc}:{cnonce}:{qop}:{ha2}", input.nonce).as_bytes())
        }
        None => h.hex(format!("{ha1_hex}:{}:{ha2}", input.nonce).as_bytes()),
    }
}

/// Why credentials were not accepted. Several kinds deliberately lead to the same answer on
/// the wire (see [`DigestError::reply`]); the kind itself is for logs and metric labels.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// The credentials use a scheme other than Digest (RFC 4475 §3.3.7).
    #[error("unsupported authentication scheme")]
    UnsupportedScheme,
    /// A parameter the computation needs is absent or empty.
    #[error("missing digest parameter {0}")]
    MissingParameter(&'static str),
    /// A parameter is present but malformed (e.g. `nc` not 8 hex digits).
    #[error("malformed digest parameter {0}")]
    MalformedParameter(&'static str),
    /// The algorithm is unknown or not allowed by this server.
    #[error("unsupported digest algorithm")]
    UnsupportedAlgorithm,
    /// A qop other than `auth`, or no qop with an algorithm that requires one.
    #[error("unsupported qop")]
    UnsupportedQop,
    /// The credentials answer a challenge of another realm.
    #[error("realm mismatch")]
    RealmMismatch,
    /// The `uri` parameter does not designate the Request-URI.
    #[error("digest uri does not match the Request-URI")]
    UriMismatch,
    /// The nonce was not issued by a server holding our key (bad MAC, bad encoding, or a
    /// timestamp in the future).
    #[error("nonce not issued by this realm")]
    ForgedNonce,
    /// The response is right but the nonce has expired: challenge again with `stale=true`
    /// so the client retries without asking its user.
    #[error("stale nonce")]
    StaleNonce,
    /// No HA1 for this user (answered exactly like [`DigestError::WrongResponse`]).
    #[error("unknown user")]
    UnknownUser,
    /// The response does not match: wrong password (or wrong HA1).
    #[error("wrong digest response")]
    WrongResponse,
    /// This nonce count was already used with this nonce (replay).
    #[error("nonce count replayed")]
    NonceCountReplay,
    /// The client could not answer: no Digest challenge with an algorithm and qop it supports.
    #[error("no usable challenge")]
    NoUsableChallenge,
}

/// What a server answers after a failed verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestReply {
    /// 401/407 with a fresh challenge; `stale` says whether to set `stale=true`.
    Challenge { stale: bool },
    /// 400: the credentials are malformed, not merely wrong.
    BadRequest,
}

impl DigestError {
    /// The answer on the wire. Unknown user and wrong password map to the same reply so
    /// that the answer does not reveal which accounts exist. After repeated failures a
    /// registrar may answer 403 instead of challenging again; that policy lives above.
    pub fn reply(&self) -> DigestReply {
        match self {
            DigestError::StaleNonce => DigestReply::Challenge { stale: true },
            DigestError::MissingParameter(_)
            | DigestError::MalformedParameter(_)
            | DigestError::UriMismatch => DigestReply::BadRequest,
            DigestError::UnsupportedScheme
            | DigestError::UnsupportedAlgorithm
            | DigestError::UnsupportedQop
            | DigestError::RealmMismatch
            | DigestError::ForgedNonce
            | DigestError::UnknownUser
            | DigestError::WrongResponse
            | DigestError::NonceCountReplay
            | DigestError::NoUsableChallenge => DigestReply::Challenge { stale: false },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_tokens_round_trip_case_insensitively() {
        for a in Algorithm::ALL {
            assert_eq!(
                Algorithm::from_token(&a.as_str().to_ascii_lowercase()),
                Some(a)
            );
        }
        assert_eq!(Algorithm::from_token("SHA-1"), None);
    }

    #[test]
    fn strength_orders_sha512_256_then_sha256_then_md5() {
        let mut v = vec![Algorithm::Md5, Algorithm::Sha512_256, Algorithm::Sha256Sess];
        v.sort_by_key(|a| std::cmp::Reverse(a.strength()));
        assert_eq!(
            v,
            [Algorithm::Sha512_256, Algorithm::Sha256Sess, Algorithm::Md5]
        );
        assert!(Algorithm::Sha256.strength() > Algorithm::Sha256Sess.strength());
    }

    #[test]
    fn ha1_debug_hides_the_secret() {
        let h = ha1(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
        );
        assert_eq!(h.as_hex(), "939e7578ed9e3c518a452acee763bce9");
        assert!(!format!("{h:?}").contains("939e"));
        assert_eq!(
            Ha1::from_hex(HashFunction::Md5, "939E7578ED9E3C518A452ACEE763BCE9"),
            Some(h)
        );
        assert_eq!(
            Ha1::from_hex(HashFunction::Sha256, "939e7578ed9e3c518a452acee763bce9"),
            None
        );
    }
}
