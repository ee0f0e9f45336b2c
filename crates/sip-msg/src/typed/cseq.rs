//! `CSeq: 1 INVITE` (RFC 3261 §20.16).

use std::fmt;

use crate::method::Method;

/// Sequence number (32 bits, < 2**31 per §8.1.1.5) and method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

impl CSeq {
    pub fn parse(s: &str) -> Option<CSeq> {
        let mut it = s.split_ascii_whitespace();
        let num = it.next()?;
        let method = it.next()?;
        if it.next().is_some() || num.len() > 10 || !num.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let seq: u64 = num.parse().ok()?;
        Some(CSeq {
            seq: u32::try_from(seq).ok()?,
            method: Method::from_token(method)?,
        })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}
