//! `Content-Type` (RFC 3261 §20.15): `type/subtype *(;param)`.

use std::fmt;

use crate::grammar::is_token;
use crate::header_name::HeaderName;
use crate::headers::Headers;
use crate::params::Params;
use crate::split::parse_params;
use crate::typed::HeaderError;

/// A media type with its parameters, e.g. `application/sdp` or
/// `multipart/mixed;boundary=unique-boundary-1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentType {
    /// The top-level type as received (compare with `eq_ignore_ascii_case`).
    pub media_type: String,
    /// The subtype as received.
    pub subtype: String,
    pub params: Params,
}

impl ContentType {
    /// Parses `m-type SLASH m-subtype *(SEMI m-parameter)`; LWS is allowed around `/`.
    pub fn parse(s: &str) -> Option<ContentType> {
        let (essence, params) = match s.split_once(';') {
            Some((e, p)) => (e, parse_params(p)?),
            None => (s, Params::new()),
        };
        let (t, sub) = essence.split_once('/')?;
        let (t, sub) = (t.trim(), sub.trim());
        if !is_token(t) || !is_token(sub) {
            return None;
        }
        Some(ContentType {
            media_type: t.to_owned(),
            subtype: sub.to_owned(),
            params,
        })
    }

    /// True for `media_type/subtype`, case-insensitively.
    pub fn is(&self, media_type: &str, subtype: &str) -> bool {
        self.media_type.eq_ignore_ascii_case(media_type)
            && self.subtype.eq_ignore_ascii_case(subtype)
    }
}

impl fmt::Display for ContentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}{}", self.media_type, self.subtype, self.params)
    }
}

impl Headers {
    /// `Content-Type` (at most one).
    pub fn content_type(&self) -> Result<Option<ContentType>, HeaderError> {
        self.single(HeaderName::ContentType, ContentType::parse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let c = ContentType::parse("multipart/mixed ; boundary=\"b 1\"").unwrap();
        assert!(c.is("Multipart", "MIXED"));
        assert_eq!(c.params.value("boundary"), Some("\"b 1\""));
        assert_eq!(ContentType::parse(&c.to_string()), Some(c));
        assert_eq!(
            ContentType::parse("application / sdp").map(|c| c.to_string()),
            Some("application/sdp".into())
        );
        assert_eq!(ContentType::parse("sdp"), None);
        assert_eq!(ContentType::parse("text/"), None);
    }
}
