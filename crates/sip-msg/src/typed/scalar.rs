//! Single-number and free-text headers: Max-Forwards, Expires, Min-Expires, Content-Length
//! (RFC 3261 §20.22, §20.19, §20.23, §20.14), User-Agent and Server (§20.41, §20.35).

use crate::header_name::HeaderName;
use crate::headers::Headers;
use crate::typed::HeaderError;

/// `1*DIGIT` that fits in 32 bits (Max-Forwards, CSeq numbers).
pub(crate) fn parse_u32(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = s.trim_start_matches('0');
    if digits.len() > 10 {
        return None;
    }
    if digits.is_empty() {
        Some(0)
    } else {
        digits.parse().ok()
    }
}

/// `delta-seconds = 1*DIGIT`; values beyond 2³²-1 saturate, as RFC 4475 §3.1.2.4 allows an
/// element to treat an overlarge expiry instead of rejecting the request.
pub(crate) fn parse_delta_seconds(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(parse_u32(s).unwrap_or(u32::MAX))
}

impl Headers {
    /// `Max-Forwards` (0..=2³²-1; senders use at most 255 but larger values are not an error).
    pub fn max_forwards(&self) -> Result<Option<u32>, HeaderError> {
        self.single(HeaderName::MaxForwards, parse_u32)
    }

    /// `Expires` in seconds (only the delta-seconds form of RFC 3261; the RFC 2543 date form
    /// is an error).
    pub fn expires(&self) -> Result<Option<u32>, HeaderError> {
        self.single(HeaderName::Expires, parse_delta_seconds)
    }

    /// `Min-Expires` in seconds.
    pub fn min_expires(&self) -> Result<Option<u32>, HeaderError> {
        self.single(HeaderName::MinExpires, parse_delta_seconds)
    }

    /// `Content-Length` as received (the parser has already checked it frames the body).
    pub fn content_length(&self) -> Result<Option<usize>, HeaderError> {
        self.single(
            HeaderName::ContentLength,
            crate::parse::parse_content_length,
        )
    }

    /// `User-Agent`, as text.
    pub fn user_agent(&self) -> Result<Option<&str>, HeaderError> {
        self.single_text(HeaderName::UserAgent)
    }

    /// `Server`, as text.
    pub fn server(&self) -> Result<Option<&str>, HeaderError> {
        self.single_text(HeaderName::Server)
    }

    fn single_text(&self, name: HeaderName) -> Result<Option<&str>, HeaderError> {
        let mut values = self
            .iter()
            .filter(|h| h.name == name)
            .map(|h| h.value.as_str());
        let first = values.next();
        match (first, values.next()) {
            (_, Some(_)) => Err(HeaderError::new(name)),
            (Some(""), None) => Err(HeaderError::new(name)),
            (v, None) => Ok(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_parse_with_leading_zeros_and_bounds() {
        assert_eq!(parse_u32("0068"), Some(68));
        assert_eq!(parse_u32("4294967295"), Some(u32::MAX));
        assert_eq!(parse_u32("4294967296"), None);
        assert_eq!(parse_u32("-1"), None);
        assert_eq!(parse_delta_seconds("280297596632815"), Some(u32::MAX));
        assert_eq!(parse_delta_seconds("Thu, 01 Dec 1994"), None);
    }

    #[test]
    fn accessors_read_and_refuse() {
        let mut h = Headers::new();
        h.push(HeaderName::MaxForwards, "70");
        h.push(HeaderName::Expires, "3600");
        h.push(HeaderName::UserAgent, "calanque/0.1");
        assert_eq!(h.max_forwards(), Ok(Some(70)));
        assert_eq!(h.expires(), Ok(Some(3600)));
        assert_eq!(h.min_expires(), Ok(None));
        assert_eq!(h.user_agent(), Ok(Some("calanque/0.1")));
        h.push(HeaderName::Expires, "60");
        assert!(h.expires().is_err());
    }
}
