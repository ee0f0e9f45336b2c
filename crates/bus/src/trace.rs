//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>) on the bus: the `traceparent`
//! header's wire format, injected into and extracted from [`BusHeaders`] so that one call is
//! one trace across services. Both buses carry headers unchanged, so the context crosses
//! either. (Exporting spans to OpenTelemetry is the telemetry crate's job; this is the format.)

use std::fmt;

use crate::BusHeaders;

/// The header carrying the trace and parent span ids.
pub const TRACEPARENT: &str = "traceparent";
/// The header carrying vendor-specific trace state, passed along untouched.
pub const TRACESTATE: &str = "tracestate";

/// A trace id, the id of the span that sent the message (its parent for the receiver), and the
/// trace flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceContext {
    /// 16 bytes, never all zero.
    pub trace_id: [u8; 16],
    /// 8 bytes, never all zero.
    pub span_id: [u8; 8],
    /// Trace flags; bit 0 is "sampled".
    pub flags: u8,
}

/// Why a `traceparent` value was rejected. Per the W3C spec a receiver then ignores it and
/// starts a new trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TraceparentError {
    /// Shorter than 55 characters, or longer for version `00`, or extra data not after a `-`.
    #[error("traceparent has the wrong length")]
    Length,
    /// A field is not separated by `-` where the format requires it.
    #[error("traceparent fields are not separated by '-'")]
    Separator,
    /// A field holds something other than lowercase hexadecimal digits.
    #[error("traceparent holds a character that is not a lowercase hex digit")]
    NotLowercaseHex,
    /// The version is `ff`, which the spec forbids.
    #[error("traceparent version ff is invalid")]
    ForbiddenVersion,
    /// The trace id is all zeros.
    #[error("traceparent trace-id is all zeros")]
    ZeroTraceId,
    /// The parent (span) id is all zeros.
    #[error("traceparent parent-id is all zeros")]
    ZeroSpanId,
}

impl TraceContext {
    /// The "sampled" trace flag.
    pub const FLAG_SAMPLED: u8 = 0x01;

    /// A new trace with a random trace id and span id.
    pub fn new_root(sampled: bool) -> TraceContext {
        TraceContext {
            trace_id: nonzero(rand::random()),
            span_id: nonzero(rand::random()),
            flags: if sampled { Self::FLAG_SAMPLED } else { 0 },
        }
    }

    /// The context for a new span in the same trace (fresh span id, same trace id and flags).
    pub fn child(&self) -> TraceContext {
        TraceContext {
            span_id: nonzero(rand::random()),
            ..*self
        }
    }

    /// True when the sampled flag is set.
    pub fn sampled(&self) -> bool {
        self.flags & Self::FLAG_SAMPLED != 0
    }

    /// Parses a `traceparent` value. Version `00` must be exactly
    /// `00-<32 hex>-<16 hex>-<2 hex>`; a later version is parsed by its version-00 prefix if
    /// what follows starts with `-` (the spec's forward-compatibility rule).
    pub fn parse(value: &str) -> Result<TraceContext, TraceparentError> {
        let value = value.trim_matches([' ', '\t']);
        let bytes = value.as_bytes();
        if bytes.len() < 55 {
            return Err(TraceparentError::Length);
        }
        let version = hex_field::<1>(&bytes[0..2])?;
        if version[0] == 0xff {
            return Err(TraceparentError::ForbiddenVersion);
        }
        if version[0] == 0 && bytes.len() != 55 {
            return Err(TraceparentError::Length);
        }
        if bytes.len() > 55 && bytes[55] != b'-' {
            return Err(TraceparentError::Length);
        }
        if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return Err(TraceparentError::Separator);
        }
        let trace_id = hex_field::<16>(&bytes[3..35])?;
        let span_id = hex_field::<8>(&bytes[36..52])?;
        let flags = hex_field::<1>(&bytes[53..55])?[0];
        if trace_id == [0; 16] {
            return Err(TraceparentError::ZeroTraceId);
        }
        if span_id == [0; 8] {
            return Err(TraceparentError::ZeroSpanId);
        }
        Ok(TraceContext {
            trace_id,
            span_id,
            flags,
        })
    }

    /// The `traceparent` value (always version `00`).
    pub fn traceparent(&self) -> String {
        self.to_string()
    }

    /// Writes `traceparent` into `headers`, replacing any previous one.
    pub fn inject(&self, headers: &mut BusHeaders) {
        headers.insert(TRACEPARENT, &self.traceparent());
    }

    /// The context carried by `headers`; `None` when absent or malformed (the receiver then
    /// starts a new trace, as the spec asks).
    pub fn extract(headers: &BusHeaders) -> Option<TraceContext> {
        headers
            .get(TRACEPARENT)
            .and_then(|v| TraceContext::parse(v).ok())
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("00-")?;
        self.trace_id
            .iter()
            .try_for_each(|b| write!(f, "{b:02x}"))?;
        f.write_str("-")?;
        self.span_id.iter().try_for_each(|b| write!(f, "{b:02x}"))?;
        write!(f, "-{:02x}", self.flags)
    }
}

fn nonzero<const N: usize>(mut id: [u8; N]) -> [u8; N] {
    if id.iter().all(|b| *b == 0) {
        id[N - 1] = 1;
    }
    id
}

fn hex_field<const N: usize>(text: &[u8]) -> Result<[u8; N], TraceparentError> {
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        *byte = (lower_hex(pair[0])? << 4) | lower_hex(pair[1])?;
    }
    Ok(out)
}

fn lower_hex(c: u8) -> Result<u8, TraceparentError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        _ => Err(TraceparentError::NotLowercaseHex),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The examples of the W3C Trace Context recommendation, §3.2.2.
    const SAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const NOT_SAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";

    #[test]
    fn parses_the_spec_examples() {
        let ctx = TraceContext::parse(SAMPLED).unwrap();
        assert_eq!(
            ctx.trace_id,
            [
                0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e,
                0x47, 0x36
            ]
        );
        assert_eq!(
            ctx.span_id,
            [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
        assert!(ctx.sampled());
        let ctx = TraceContext::parse(NOT_SAMPLED).unwrap();
        assert_eq!(ctx.flags, 0);
        assert!(!ctx.sampled());
    }

    #[test]
    fn formats_back_to_the_same_text() {
        for text in [SAMPLED, NOT_SAMPLED] {
            assert_eq!(TraceContext::parse(text).unwrap().traceparent(), text);
        }
    }

    #[test]
    fn rejects_all_zero_ids() {
        assert_eq!(
            TraceContext::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            Err(TraceparentError::ZeroTraceId)
        );
        assert_eq!(
            TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"),
            Err(TraceparentError::ZeroSpanId)
        );
    }

    #[test]
    fn rejects_malformed_values() {
        let cases = [
            ("", TraceparentError::Length),
            (&SAMPLED[..54], TraceparentError::Length),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
                TraceparentError::Length,
            ),
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                TraceparentError::NotLowercaseHex,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
                TraceparentError::NotLowercaseHex,
            ),
            (
                "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                TraceparentError::Separator,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
                TraceparentError::Separator,
            ),
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                TraceparentError::ForbiddenVersion,
            ),
            (
                "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                TraceparentError::NotLowercaseHex,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
                TraceparentError::NotLowercaseHex,
            ),
            (
                "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
                TraceparentError::Length,
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(TraceContext::parse(text), Err(expected), "{text:?}");
        }
    }

    #[test]
    fn future_versions_are_read_by_their_version_00_prefix() {
        let ctx = TraceContext::parse(
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-will-be-like",
        )
        .unwrap();
        assert_eq!(ctx, TraceContext::parse(SAMPLED).unwrap());
        // Re-emitted as the version this code knows.
        assert_eq!(ctx.traceparent(), SAMPLED);
    }

    #[test]
    fn surrounding_optional_whitespace_is_ignored() {
        assert!(TraceContext::parse(&format!(" {SAMPLED}\t")).is_ok());
    }

    #[test]
    fn inject_then_extract_roundtrips_and_replaces() {
        let mut headers = BusHeaders::new();
        headers.insert("Traceparent", NOT_SAMPLED);
        let ctx = TraceContext::parse(SAMPLED).unwrap();
        ctx.inject(&mut headers);
        assert_eq!(headers.0.len(), 1);
        assert_eq!(TraceContext::extract(&headers), Some(ctx));
    }

    #[test]
    fn extract_ignores_absent_and_malformed() {
        assert_eq!(TraceContext::extract(&BusHeaders::new()), None);
        let mut headers = BusHeaders::new();
        headers.insert(TRACEPARENT, "00-nonsense");
        assert_eq!(TraceContext::extract(&headers), None);
    }

    #[test]
    fn root_and_child_ids_are_valid_and_distinct() {
        let root = TraceContext::new_root(true);
        assert!(root.sampled());
        assert_ne!(root.trace_id, [0; 16]);
        let child = root.child();
        assert_eq!(child.trace_id, root.trace_id);
        assert_eq!(child.flags, root.flags);
        assert_ne!(child.span_id, root.span_id);
        assert_eq!(TraceContext::parse(&child.traceparent()), Ok(child));
        assert!(!TraceContext::new_root(false).sampled());
    }
}
