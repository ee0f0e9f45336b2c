//! `Refer-To` and `Referred-By` (RFC 3515, RFC 3892) and `Replaces` (RFC 3891): the
//! headers of attended and blind transfer.

use std::fmt;

use crate::header_name::HeaderName;
use crate::headers::Headers;
use crate::params::Params;
use crate::split::parse_params;
use crate::typed::{HeaderError, NameAddr};

/// `Replaces: call-id;to-tag=…;from-tag=…[;early-only]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replaces {
    pub call_id: String,
    pub to_tag: String,
    pub from_tag: String,
    /// `early-only`: replace only a dialog that is still early.
    pub early_only: bool,
    /// Other (extension) parameters, in order.
    pub params: Params,
}

impl Replaces {
    /// Parses a Replaces value; both tags are mandatory and may appear only once (RFC 3891 §6.1).
    pub fn parse(s: &str) -> Option<Replaces> {
        let (call_id, rest) = match s.split_once(';') {
            Some((c, r)) => (c.trim(), r),
            None => (s.trim(), ""),
        };
        if call_id.is_empty() || call_id.contains([' ', '\t', '<', '>']) {
            return None;
        }
        let all = parse_params(rest)?;
        let (mut to_tag, mut from_tag, mut early_only) = (None, None, false);
        let mut params = Params::new();
        for (name, value) in all.iter() {
            let slot = if name.eq_ignore_ascii_case("to-tag") {
                &mut to_tag
            } else if name.eq_ignore_ascii_case("from-tag") {
                &mut from_tag
            } else {
                if name.eq_ignore_ascii_case("early-only") && value.is_none() {
                    early_only = true;
                } else {
                    params.push_raw(name.to_owned(), value.map(str::to_owned));
                }
                continue;
            };
            if slot.is_some() {
                return None;
            }
            *slot = Some(value?.to_owned());
        }
        Some(Replaces {
            call_id: call_id.to_owned(),
            to_tag: to_tag?,
            from_tag: from_tag?,
            early_only,
            params,
        })
    }
}

impl fmt::Display for Replaces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{};to-tag={};from-tag={}",
            self.call_id, self.to_tag, self.from_tag
        )?;
        if self.early_only {
            f.write_str(";early-only")?;
        }
        write!(f, "{}", self.params)
    }
}

impl Headers {
    /// `Refer-To` (compact `r`): the target of a transfer, which may carry an escaped
    /// `?Replaces=` header in its URI for an attended transfer.
    pub fn refer_to(&self) -> Result<Option<NameAddr>, HeaderError> {
        self.single(HeaderName::ReferTo, NameAddr::parse)
    }

    /// `Referred-By` (compact `b`).
    pub fn referred_by(&self) -> Result<Option<NameAddr>, HeaderError> {
        self.single(HeaderName::ReferredBy, NameAddr::parse)
    }

    /// `Replaces`.
    pub fn replaces(&self) -> Result<Option<Replaces>, HeaderError> {
        self.single(HeaderName::Replaces, Replaces::parse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_needs_both_tags() {
        let r =
            Replaces::parse("98732@sip.example.com;from-tag=r33th4x0r;to-tag=ff87ff;early-only")
                .unwrap();
        assert_eq!(r.call_id, "98732@sip.example.com");
        assert_eq!(
            (r.to_tag.as_str(), r.from_tag.as_str()),
            ("ff87ff", "r33th4x0r")
        );
        assert!(r.early_only);
        assert_eq!(Replaces::parse(&r.to_string()), Some(r));
        assert_eq!(Replaces::parse("abc;to-tag=1"), None);
        assert_eq!(Replaces::parse("abc;to-tag=1;from-tag=2;to-tag=3"), None);
    }

    #[test]
    fn refer_to_with_embedded_replaces() {
        let mut h = Headers::new();
        h.push(
            HeaderName::ReferTo,
            "<sip:bob@example.com?Replaces=12345%40192.0.2.1%3Bto-tag%3D1%3Bfrom-tag%3D2>",
        );
        h.push(HeaderName::ReferredBy, "<sip:alice@example.com>");
        let to = h.refer_to().unwrap().unwrap();
        assert_eq!(to.uri.headers[0].0, "Replaces");
        assert!(h.referred_by().unwrap().is_some());
    }
}
