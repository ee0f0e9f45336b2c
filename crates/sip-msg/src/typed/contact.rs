//! `Contact` (RFC 3261 §20.10): `*` or a list of addresses with `q` and `expires` parameters.

use std::fmt;

use crate::split::split_list;
use crate::typed::{CommaList, NameAddr, parse_delta_seconds};

/// The value of every Contact line of a message taken together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contacts {
    /// `Contact: *`, which asks a registrar to remove every binding (§10.2.2); it must be
    /// the only Contact value.
    Star,
    /// One or more addresses, in order.
    List(Vec<NameAddr>),
}

impl Contacts {
    /// Parses one Contact header value (a comma-separated list, or `*`).
    pub fn parse(s: &str) -> Option<Contacts> {
        if s.trim() == "*" {
            return Some(Contacts::Star);
        }
        let mut out = Vec::new();
        for item in split_list(s)? {
            let addr = NameAddr::parse(item)?;
            let q_ok = addr
                .params
                .get("q")
                .is_none_or(|q| q.and_then(parse_qvalue).is_some());
            let expires_ok = addr
                .params
                .get("expires")
                .is_none_or(|e| e.and_then(parse_delta_seconds).is_some());
            if !q_ok || !expires_ok {
                return None;
            }
            out.push(addr);
        }
        Some(Contacts::List(out))
    }

    /// The addresses (empty for `*`).
    pub fn addresses(&self) -> &[NameAddr] {
        match self {
            Contacts::Star => &[],
            Contacts::List(list) => list,
        }
    }
}

impl fmt::Display for Contacts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Contacts::Star => f.write_str("*"),
            Contacts::List(list) => write!(f, "{}", CommaList(list)),
        }
    }
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in thousandths.
pub fn parse_qvalue(s: &str) -> Option<u16> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut millis: u16 = 0;
    for (i, b) in frac.bytes().enumerate() {
        millis += u16::from(b - b'0') * [100, 10, 1][i];
    }
    match int {
        "0" => Some(millis),
        "1" if millis == 0 => Some(1000),
        _ => None,
    }
}

impl NameAddr {
    /// The `expires` contact parameter in seconds (values beyond 2³²-1 saturate), or `None`
    /// when absent or not a number.
    pub fn expires(&self) -> Option<u32> {
        self.params.value("expires").and_then(parse_delta_seconds)
    }

    /// The `q` contact parameter in thousandths (0..=1000), or `None` when absent or invalid.
    pub fn q_millis(&self) -> Option<u16> {
        self.params.value("q").and_then(parse_qvalue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_and_lists() {
        assert_eq!(Contacts::parse(" * "), Some(Contacts::Star));
        let c =
            Contacts::parse("<sip:a@h1>;expires=60;q=0.5, \"B\" <sip:b@h2>, sip:c@h3;unknownparam")
                .unwrap();
        let list = c.addresses();
        assert_eq!(list.len(), 3);
        assert_eq!(list[0].expires(), Some(60));
        assert_eq!(list[0].q_millis(), Some(500));
        assert_eq!(list[1].display_name.as_deref(), Some("B"));
        assert!(list[2].params.contains("unknownparam"));
        assert_eq!(Contacts::parse(&c.to_string()), Some(c));
    }

    #[test]
    fn bad_q_expires_and_empty_elements_are_refused() {
        assert_eq!(Contacts::parse("<sip:a@h>;q=2"), None);
        assert_eq!(Contacts::parse("<sip:a@h>;q=0.1234"), None);
        assert_eq!(Contacts::parse("<sip:a@h>;expires=soon"), None);
        assert_eq!(Contacts::parse("<sip:a@h>,,<sip:b@h>"), None);
        assert_eq!(parse_qvalue("1.000"), Some(1000));
        assert_eq!(parse_qvalue("0.33"), Some(330));
    }
}
