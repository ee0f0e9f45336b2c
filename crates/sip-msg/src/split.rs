//! Lexical helpers for header values: splitting comma lists and `;` parameters while
//! respecting quoted strings and `<…>` URIs (RFC 3261 §7.3.1, §25.1).

use crate::params::Params;

/// Splits a header value on top-level commas (not inside quotes or angle brackets).
/// Empty elements are dropped.
pub(crate) fn split_commas(value: &str) -> Vec<&str> {
    split_top_level(value, b',')
        .into_iter()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// Splits on `sep` outside quoted strings and `<…>`.
pub(crate) fn split_top_level(value: &str, sep: u8) -> Vec<&str> {
    let bytes = value.as_bytes();
    let mut parts = Vec::new();
    let (mut start, mut in_quotes, mut in_angle, mut i) = (0, false, false, 0);
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_quotes => i += 1,
            b'"' => in_quotes = !in_quotes,
            b'<' if !in_quotes => in_angle = true,
            b'>' if !in_quotes => in_angle = false,
            b if b == sep && !in_quotes && !in_angle => {
                parts.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    parts.push(&value[start.min(value.len())..]);
    parts
}

/// Parses `;a=b;c` (text after the first `;`, without it). Whitespace around `=` and `;`
/// is allowed (SWS in the grammar); quoted values keep their quotes.
pub(crate) fn parse_params(s: &str) -> Option<Params> {
    let mut params = Params::new();
    for p in split_top_level(s, b';') {
        let p = p.trim();
        if p.is_empty() {
            return None;
        }
        match p.split_once('=') {
            Some((n, v)) => {
                let (n, v) = (n.trim(), v.trim());
                if !crate::grammar::is_token(n) || v.is_empty() {
                    return None;
                }
                params.push_raw(n.to_owned(), Some(v.to_owned()));
            }
            None => {
                if !crate::grammar::is_token(p) {
                    return None;
                }
                params.push_raw(p.to_owned(), None);
            }
        }
    }
    Some(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commas_inside_quotes_and_brackets_do_not_split() {
        let v = r#""Doe, John" <sip:j@a;x=1,2>;tag=1, <sip:b@c>"#;
        assert_eq!(split_commas(v).len(), 2);
    }
}
