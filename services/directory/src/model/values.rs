//! Validated value types (newtypes) that keep a wrong kind of string from reaching the wrong
//! place: an [`ExtensionNumber`] is never a [`SiteId`], a [`SipUsername`] never a display name.
//! Each parses from text with [`FromStr`]-like `parse` functions returning a [`FieldFault`], and
//! (de)serialises with serde as its text, validated on the way in.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::error::FieldFault;

/// Declares a string newtype validated by `$check`, with `parse`, `as_str`, `Display`,
/// `TryFrom<String>` and serde as a validated string.
macro_rules! text_newtype {
    ($(#[$meta:meta])* $name:ident, $check:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates `text`.
            pub fn parse(text: &str) -> Result<$name, FieldFault> {
                let check: fn(&str) -> Result<String, FieldFault> = $check;
                check(text).map($name)
            }

            /// The value as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
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

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

/// Identifiers: 1–64 of `A-Z a-z 0-9 . _ -`, starting with a letter or digit.
fn identifier(text: &str) -> Result<String, FieldFault> {
    if text.is_empty() {
        return Err(FieldFault::Empty);
    }
    if text.chars().count() > 64 {
        return Err(FieldFault::TooLong { max: 64 });
    }
    if let Some(ch) = text
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(FieldFault::InvalidCharacter { ch });
    }
    if !text.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(FieldFault::MustStartAlphanumeric);
    }
    Ok(text.to_owned())
}

/// Dialled numbers: 1–15 decimal digits (the E.164 maximum).
fn digits(text: &str) -> Result<String, FieldFault> {
    if text.is_empty() {
        return Err(FieldFault::Empty);
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FieldFault::NotDigits {
            value: text.to_owned(),
        });
    }
    if text.len() > 15 {
        return Err(FieldFault::TooLong { max: 15 });
    }
    Ok(text.to_owned())
}

/// Human text: 1–128 characters, no control characters, no leading or trailing spaces.
fn human_text(text: &str) -> Result<String, FieldFault> {
    if text.trim().is_empty() {
        return Err(FieldFault::Empty);
    }
    if text.chars().count() > 128 {
        return Err(FieldFault::TooLong { max: 128 });
    }
    if let Some(ch) = text.chars().find(|c| c.is_control()) {
        return Err(FieldFault::InvalidCharacter { ch });
    }
    if text.trim() != text {
        return Err(FieldFault::InvalidCharacter { ch: ' ' });
    }
    Ok(text.to_owned())
}

/// SIP user part (RFC 3261 §25.1 `user`, without escapes): 1–64 of alphanumerics and
/// `- _ . ! ~ * ' ( ) & = + $ , ; ? /`.
fn sip_user(text: &str) -> Result<String, FieldFault> {
    if text.is_empty() {
        return Err(FieldFault::Empty);
    }
    if text.len() > 64 {
        return Err(FieldFault::TooLong { max: 64 });
    }
    if let Some(ch) = text
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-_.!~*'()&=+$,;?/".contains(*c)))
    {
        return Err(FieldFault::InvalidCharacter { ch });
    }
    Ok(text.to_owned())
}

/// Digest realm: 1–128 printable ASCII characters other than `"` and `\` (it is a quoted string
/// in the challenge).
fn realm(text: &str) -> Result<String, FieldFault> {
    if text.is_empty() {
        return Err(FieldFault::Empty);
    }
    if text.len() > 128 {
        return Err(FieldFault::TooLong { max: 128 });
    }
    if let Some(ch) = text
        .chars()
        .find(|c| !(c.is_ascii_graphic() || *c == ' ') || matches!(c, '"' | '\\'))
    {
        return Err(FieldFault::InvalidCharacter { ch });
    }
    Ok(text.to_owned())
}

/// E-mail address: `local@domain` with a dot in the domain, no spaces, at most 254 characters.
fn email(text: &str) -> Result<String, FieldFault> {
    let invalid = || FieldFault::InvalidEmail {
        value: text.to_owned(),
    };
    if text.is_empty() {
        return Err(FieldFault::Empty);
    }
    if text.len() > 254 {
        return Err(FieldFault::TooLong { max: 254 });
    }
    let (local, domain) = text.split_once('@').ok_or_else(invalid)?;
    let well_formed = !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && !text.chars().any(|c| c.is_whitespace() || c.is_control());
    if well_formed {
        Ok(text.to_owned())
    } else {
        Err(invalid())
    }
}

/// A digit prefix added to a dialled number: optional `+`, then up to 16 digits (`+` alone
/// turns `00…` into E.164 once the `00` is stripped).
fn prefix(text: &str) -> Result<String, FieldFault> {
    if text.is_empty() {
        return Err(FieldFault::Empty);
    }
    let rest = text.strip_prefix('+').unwrap_or(text);
    if !rest.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FieldFault::NotDigits {
            value: text.to_owned(),
        });
    }
    if rest.len() > 16 {
        return Err(FieldFault::TooLong { max: 16 });
    }
    Ok(text.to_owned())
}

text_newtype!(
    /// A site's identifier, e.g. `S-042`.
    SiteId,
    identifier
);
text_newtype!(
    /// A user's identifier, e.g. `U-00042` or an HR number.
    UserId,
    identifier
);
text_newtype!(
    /// A device's identifier, e.g. `D-00042` or a MAC address.
    DeviceId,
    identifier
);
text_newtype!(
    /// A trunk's name, e.g. `carrier-a`.
    TrunkName,
    identifier
);
text_newtype!(
    /// A class of service's name, e.g. `national`.
    CosName,
    identifier
);
text_newtype!(
    /// A route's identifier, e.g. `R-intl`.
    RouteId,
    identifier
);
text_newtype!(
    /// A directory number dialled internally: an extension, a hunt group or a pickup group
    /// (they share one numbering plan). 1–15 decimal digits.
    ExtensionNumber,
    digits
);
text_newtype!(
    /// A number dialled for emergency services (`112`, `17`, `18`, `15`, …). 1–15 digits.
    EmergencyNumber,
    digits
);
text_newtype!(
    /// A digest username (SIP user part), unique among devices.
    SipUsername,
    sip_user
);
text_newtype!(
    /// A digest realm, part of what an HA1 was computed with.
    Realm,
    realm
);
text_newtype!(
    /// A human-readable name: 1–128 characters, no control characters, trimmed.
    Name,
    human_text
);
text_newtype!(
    /// An e-mail address (a light syntax check, not RFC 5322).
    Email,
    email
);
text_newtype!(
    /// Digits put in front of a number by a route (e.g. `+33`).
    DigitPrefix,
    prefix
);

/// An inclusive range of numbers of one length, e.g. `4500-4599` or `+33140000000-+33140009999`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NumberRange {
    first: String,
    last: String,
}

impl NumberRange {
    /// A range from its two ends: same length, same optional leading `+`, 1–16 digits,
    /// `first <= last`.
    pub fn new(first: &str, last: &str) -> Result<NumberRange, FieldFault> {
        let first_digits = first.strip_prefix('+').unwrap_or(first);
        let last_digits = last.strip_prefix('+').unwrap_or(last);
        for (text, d) in [(first, first_digits), (last, last_digits)] {
            if d.is_empty() {
                return Err(FieldFault::Empty);
            }
            if !d.bytes().all(|b| b.is_ascii_digit()) {
                return Err(FieldFault::NotDigits {
                    value: text.to_owned(),
                });
            }
            if d.len() > 16 {
                return Err(FieldFault::TooLong { max: 16 });
            }
        }
        if first.len() != last.len() || first.starts_with('+') != last.starts_with('+') {
            return Err(FieldFault::RangeEndsDiffer {
                first: first.to_owned(),
                last: last.to_owned(),
            });
        }
        if first > last {
            return Err(FieldFault::RangeReversed {
                first: first.to_owned(),
                last: last.to_owned(),
            });
        }
        Ok(NumberRange {
            first: first.to_owned(),
            last: last.to_owned(),
        })
    }

    /// Parses `first-last` (or a single number, a range of one).
    pub fn parse(text: &str) -> Result<NumberRange, FieldFault> {
        let text = text.trim();
        match text.split_once('-') {
            Some((first, last)) => NumberRange::new(first.trim(), last.trim()),
            None if text.is_empty() => Err(FieldFault::Empty),
            None => NumberRange::new(text, text),
        }
    }

    /// First number of the range.
    pub fn first(&self) -> &str {
        &self.first
    }

    /// Last number of the range.
    pub fn last(&self) -> &str {
        &self.last
    }

    /// Whether `number` (same format, e.g. digits only) lies in the range.
    pub fn contains(&self, number: &str) -> bool {
        number.len() == self.first.len()
            && number.starts_with('+') == self.first.starts_with('+')
            && self.first.as_str() <= number
            && number <= self.last.as_str()
    }

    /// Whether some number lies in both ranges (ranges of different lengths never overlap).
    pub fn overlaps(&self, other: &NumberRange) -> bool {
        self.first.len() == other.first.len()
            && self.first.starts_with('+') == other.first.starts_with('+')
            && self.first <= other.last
            && other.first <= self.last
    }
}

impl fmt::Display for NumberRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl TryFrom<String> for NumberRange {
    type Error = FieldFault;
    fn try_from(text: String) -> Result<NumberRange, FieldFault> {
        NumberRange::parse(&text)
    }
}

impl From<NumberRange> for String {
    fn from(range: NumberRange) -> String {
        range.to_string()
    }
}

/// A SIP peer's address: `host:port`, where host is a DNS name, an IPv4 address or a bracketed
/// IPv6 address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HostPort {
    host: String,
    port: u16,
}

impl HostPort {
    /// Parses `host:port`.
    pub fn parse(text: &str) -> Result<HostPort, FieldFault> {
        if text.is_empty() {
            return Err(FieldFault::Empty);
        }
        let missing_port = || FieldFault::MissingPort {
            value: text.to_owned(),
        };
        let (host, port) = text.rsplit_once(':').ok_or_else(missing_port)?;
        let invalid_host = || FieldFault::InvalidHost {
            value: host.to_owned(),
        };
        if let Some(inner) = host.strip_prefix('[') {
            let inner = inner.strip_suffix(']').ok_or_else(invalid_host)?;
            inner
                .parse::<std::net::Ipv6Addr>()
                .map_err(|_| invalid_host())?;
        } else if host.contains(':') {
            // An IPv6 address without brackets: the port is ambiguous.
            return Err(invalid_host());
        } else if !is_dns_name_or_ipv4(host) {
            return Err(invalid_host());
        }
        let port = match port.parse::<u16>() {
            Ok(p) if p != 0 && !port.starts_with('+') => p,
            _ if port.is_empty() => return Err(missing_port()),
            _ => {
                return Err(FieldFault::InvalidPort {
                    value: port.to_owned(),
                });
            }
        };
        Ok(HostPort {
            host: host.to_owned(),
            port,
        })
    }

    /// The host (brackets kept for IPv6).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// A DNS name of letter-digit-hyphen labels (1–63 each, 253 in all), which includes dotted IPv4.
fn is_dns_name_or_ipv4(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl TryFrom<String> for HostPort {
    type Error = FieldFault;
    fn try_from(text: String) -> Result<HostPort, FieldFault> {
        HostPort::parse(&text)
    }
}

impl From<HostPort> for String {
    fn from(value: HostPort) -> String {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_accept_the_documented_alphabet_only() {
        assert!(SiteId::parse("S-042").is_ok());
        assert!(SiteId::parse("a.b_c-9").is_ok());
        assert_eq!(SiteId::parse(""), Err(FieldFault::Empty));
        assert_eq!(
            SiteId::parse("S 1"),
            Err(FieldFault::InvalidCharacter { ch: ' ' })
        );
        assert_eq!(SiteId::parse("-S1"), Err(FieldFault::MustStartAlphanumeric));
        assert_eq!(
            SiteId::parse(&"x".repeat(65)),
            Err(FieldFault::TooLong { max: 64 })
        );
        assert!(SiteId::parse(&"x".repeat(64)).is_ok());
    }

    #[test]
    fn extension_numbers_are_one_to_fifteen_digits() {
        assert_eq!(
            ExtensionNumber::parse("4512").map(|n| n.to_string()),
            Ok("4512".into())
        );
        assert!(ExtensionNumber::parse("0").is_ok());
        assert!(matches!(
            ExtensionNumber::parse("45a2"),
            Err(FieldFault::NotDigits { .. })
        ));
        assert!(matches!(
            ExtensionNumber::parse("+4512"),
            Err(FieldFault::NotDigits { .. })
        ));
        assert_eq!(ExtensionNumber::parse(""), Err(FieldFault::Empty));
        assert_eq!(
            ExtensionNumber::parse(&"1".repeat(16)),
            Err(FieldFault::TooLong { max: 15 })
        );
    }

    #[test]
    fn sip_usernames_follow_the_rfc3261_user_alphabet() {
        assert!(SipUsername::parse("alice.martin+desk").is_ok());
        assert!(SipUsername::parse("4512").is_ok());
        assert_eq!(
            SipUsername::parse("a@b"),
            Err(FieldFault::InvalidCharacter { ch: '@' })
        );
        assert_eq!(
            SipUsername::parse("a b"),
            Err(FieldFault::InvalidCharacter { ch: ' ' })
        );
        assert_eq!(
            SipUsername::parse("a:b"),
            Err(FieldFault::InvalidCharacter { ch: ':' })
        );
    }

    #[test]
    fn names_are_trimmed_printable_text() {
        assert!(Name::parse("Élodie Martin").is_ok());
        assert_eq!(Name::parse("  "), Err(FieldFault::Empty));
        assert_eq!(
            Name::parse(" x"),
            Err(FieldFault::InvalidCharacter { ch: ' ' })
        );
        assert_eq!(
            Name::parse("a\nb"),
            Err(FieldFault::InvalidCharacter { ch: '\n' })
        );
    }

    #[test]
    fn realms_cannot_break_the_quoted_challenge() {
        assert!(Realm::parse("pbx.city.example").is_ok());
        assert_eq!(
            Realm::parse("a\"b"),
            Err(FieldFault::InvalidCharacter { ch: '"' })
        );
    }

    #[test]
    fn emails_need_a_local_part_and_a_dotted_domain() {
        assert!(Email::parse("a.b@city.example").is_ok());
        for bad in [
            "a",
            "@city.example",
            "a@city",
            "a@.x",
            "a@x.",
            "a b@x.y",
            "a@b@c.d",
        ] {
            assert!(
                matches!(Email::parse(bad), Err(FieldFault::InvalidEmail { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn digit_prefixes_allow_a_leading_plus() {
        assert!(DigitPrefix::parse("+33").is_ok());
        assert!(DigitPrefix::parse("0").is_ok());
        assert!(DigitPrefix::parse("+").is_ok());
        assert_eq!(DigitPrefix::parse(""), Err(FieldFault::Empty));
        assert!(matches!(
            DigitPrefix::parse("3a"),
            Err(FieldFault::NotDigits { .. })
        ));
    }

    #[test]
    fn number_ranges_check_their_ends_and_contain_numbers_of_their_length() {
        let r = NumberRange::parse("4500-4599").unwrap();
        assert!(r.contains("4500") && r.contains("4599") && r.contains("4512"));
        assert!(!r.contains("4600") && !r.contains("450") && !r.contains("45000"));
        assert_eq!(r.to_string(), "4500-4599");
        assert_eq!(NumberRange::parse("4512").unwrap().to_string(), "4512-4512");
        assert!(matches!(
            NumberRange::parse("4599-4500"),
            Err(FieldFault::RangeReversed { .. })
        ));
        assert!(matches!(
            NumberRange::parse("450-4599"),
            Err(FieldFault::RangeEndsDiffer { .. })
        ));
        assert!(matches!(
            NumberRange::parse("+3314-33149"),
            Err(FieldFault::RangeEndsDiffer { .. })
        ));
        assert!(matches!(
            NumberRange::parse("45x0-4599"),
            Err(FieldFault::NotDigits { .. })
        ));
        assert!(
            NumberRange::parse("+33140000000-+33140009999")
                .unwrap()
                .contains("+33140001234")
        );
    }

    #[test]
    fn number_ranges_overlap_only_when_sharing_a_number() {
        let a = NumberRange::parse("4500-4599").unwrap();
        assert!(a.overlaps(&NumberRange::parse("4599-4700").unwrap()));
        assert!(a.overlaps(&NumberRange::parse("4510-4520").unwrap()));
        assert!(!a.overlaps(&NumberRange::parse("4600-4699").unwrap()));
        assert!(!a.overlaps(&NumberRange::parse("45000-45999").unwrap()));
    }

    #[test]
    fn host_port_accepts_names_ipv4_and_bracketed_ipv6() {
        let hp = HostPort::parse("sbc.carrier.example:5060").unwrap();
        assert_eq!((hp.host(), hp.port()), ("sbc.carrier.example", 5060));
        assert!(HostPort::parse("192.0.2.10:5061").is_ok());
        assert_eq!(
            HostPort::parse("[2001:db8::1]:5060").unwrap().host(),
            "[2001:db8::1]"
        );
        assert!(matches!(
            HostPort::parse("sbc.example"),
            Err(FieldFault::MissingPort { .. })
        ));
        assert!(matches!(
            HostPort::parse("sbc.example:"),
            Err(FieldFault::MissingPort { .. })
        ));
        assert!(matches!(
            HostPort::parse("sbc.example:0"),
            Err(FieldFault::InvalidPort { .. })
        ));
        assert!(matches!(
            HostPort::parse("sbc.example:70000"),
            Err(FieldFault::InvalidPort { .. })
        ));
        assert!(matches!(
            HostPort::parse("2001:db8::1:5060"),
            Err(FieldFault::InvalidHost { .. })
        ));
        assert!(matches!(
            HostPort::parse("bad_host:5060"),
            Err(FieldFault::InvalidHost { .. })
        ));
        assert!(matches!(
            HostPort::parse("[zz]:5060"),
            Err(FieldFault::InvalidHost { .. })
        ));
    }

    #[test]
    fn newtypes_deserialize_through_their_checks() {
        let ok: Result<SiteId, _> = serde_norway::from_str("S-1");
        assert!(ok.is_ok());
        let bad: Result<SiteId, _> = serde_norway::from_str("'S 1'");
        assert!(bad.is_err());
    }
}
