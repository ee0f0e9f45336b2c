//! Digest credentials: HA1 values only (RFC 7616 §3.4.2, RFC 8760). A password is turned into
//! HA1s once, at provisioning ([`Ha1Pair::from_password`], for the CLI), and dropped: nothing in
//! the directory can hold it.

use std::fmt;

use md5::{Digest as _, Md5};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::error::FieldFault;
use super::values::{Realm, SipUsername};

/// Checks `text` as `len` hexadecimal characters, lower-casing it.
fn hex_digest(text: &str, len: usize) -> Result<String, FieldFault> {
    if text.is_empty() {
        return Err(FieldFault::Empty);
    }
    if text.len() != len {
        return Err(FieldFault::HexLength {
            expected: len,
            found: text.chars().count(),
        });
    }
    if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(FieldFault::NotHex);
    }
    Ok(text.to_ascii_lowercase())
}

/// Declares an HA1 newtype of `$len` hex characters (stored lower-case).
macro_rules! ha1_newtype {
    ($(#[$meta:meta])* $name:ident, $len:expr) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Number of hexadecimal characters.
            pub const HEX_LEN: usize = $len;

            /// Validates `text` as HA1 hex (either case; stored lower-case).
            pub fn parse(text: &str) -> Result<$name, FieldFault> {
                hex_digest(text, $len).map($name)
            }

            /// The lower-case hex text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        // An HA1 is as good as a password for this realm: keep it out of logs.
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}(…)", stringify!($name))
            }
        }

        impl TryFrom<String> for $name {
            type Error = FieldFault;
            fn try_from(text: String) -> Result<$name, FieldFault> {
                $name::parse(&text)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }
    };
}

ha1_newtype!(
    /// MD5(username:realm:password), 32 hex characters.
    Ha1Md5,
    32
);
ha1_newtype!(
    /// SHA-256(username:realm:password), 64 hex characters (RFC 8760).
    Ha1Sha256,
    64
);

/// The HA1s of one set of credentials. MD5 is required (every phone speaks it); SHA-256 is
/// optional because credentials migrated from a system that kept only MD5 HA1s cannot get one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ha1Pair {
    /// For `algorithm=MD5`.
    pub md5: Ha1Md5,
    /// For `algorithm=SHA-256`, when known.
    pub sha256: Option<Ha1Sha256>,
}

impl Ha1Pair {
    /// Computes both HA1s from a password (at provisioning time: the CLI, never the API). The
    /// password is only borrowed and nothing keeps it.
    pub fn from_password(username: &SipUsername, realm: &Realm, password: &str) -> Ha1Pair {
        let input = format!("{username}:{realm}:{password}");
        let md5 = hex::encode(Md5::digest(input.as_bytes()));
        let sha256 = hex::encode(Sha256::digest(input.as_bytes()));
        Ha1Pair {
            md5: Ha1Md5(md5),
            sha256: Some(Ha1Sha256(sha256)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ha1_from_password_matches_rfc_7616_and_8760() {
        // RFC 7616 §3.9.1: username "Mufasa", realm "http-auth@example.org", password "Circle of
        // Life"; HA1s computed independently (`printf … | md5sum` / `sha256sum`).
        let user = SipUsername::parse("Mufasa").unwrap();
        let realm = Realm::parse("http-auth@example.org").unwrap();
        let pair = Ha1Pair::from_password(&user, &realm, "Circle of Life");
        assert_eq!(pair.md5.as_str(), "3d78807defe7de2157e2b0b6573a855f");
        assert_eq!(
            pair.sha256.as_ref().unwrap().as_str(),
            "7987c64c30e25f1b74be53f966b49b90f2808aa92faf9a00262392d7b4794232"
        );
    }

    #[test]
    fn ha1_values_are_checked_and_lower_cased() {
        assert_eq!(
            Ha1Md5::parse(&"A".repeat(32)).unwrap().as_str(),
            "a".repeat(32)
        );
        assert_eq!(
            Ha1Md5::parse("abc"),
            Err(FieldFault::HexLength {
                expected: 32,
                found: 3
            })
        );
        assert_eq!(Ha1Md5::parse(&"g".repeat(32)), Err(FieldFault::NotHex));
        assert_eq!(Ha1Md5::parse(""), Err(FieldFault::Empty));
        assert!(Ha1Sha256::parse(&"0".repeat(64)).is_ok());
        assert!(matches!(
            Ha1Sha256::parse(&"0".repeat(32)),
            Err(FieldFault::HexLength { .. })
        ));
    }

    #[test]
    fn ha1_debug_output_hides_the_digest() {
        let ha1 = Ha1Md5::parse(&"ab".repeat(16)).unwrap();
        assert!(!format!("{ha1:?}").contains("abab"));
    }
}
