//! Lexical helpers for header values: splitting comma lists and `;` parameters while
//! respecting quoted strings and `<…>` URIs (RFC 3261 §7.3.1, §25.1).

use crate::params::Params;

/// Splits a header value on top-level commas (not inside quotes or angle brackets).
/// Empty elements are dropped.
pub(crate) fn split_commas(value: &str) -> Vec<&str> {
    split_commas_iter(value).collect()
}

/// [`split_commas`] without the allocation: trimmed, non-empty elements.
pub(crate) fn split_commas_iter(value: &str) -> impl Iterator<Item = &str> {
    TopLevel {
        value,
        sep: b',',
        pos: 0,
        done: false,
    }
    .map(str::trim)
    .filter(|s| !s.is_empty())
}

/// Like [`split_commas`] but an empty element (`a,,b`, a trailing comma) is an error, as
/// every list grammar of RFC 3261 (`x *(COMMA x)`) requires.
pub(crate) fn split_list(value: &str) -> Option<Vec<&str>> {
    let items: Vec<&str> = TopLevel {
        value,
        sep: b',',
        pos: 0,
        done: false,
    }
    .map(str::trim)
    .collect();
    items.iter().all(|s| !s.is_empty()).then_some(items)
}

/// Index of the first comma outside quotes and `<…>`, when the value is a list of several.
pub(crate) fn first_top_level_comma(value: &str) -> Option<usize> {
    let mut items = TopLevel {
        value,
        sep: b',',
        pos: 0,
        done: false,
    };
    let first = items.next()?;
    (!items.done).then_some(first.len())
}

/// Iterator form of [`split_top_level`].
struct TopLevel<'a> {
    value: &'a str,
    sep: u8,
    pos: usize,
    done: bool,
}

impl<'a> Iterator for TopLevel<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.done {
            return None;
        }
        let bytes = self.value.as_bytes();
        let (mut in_quotes, mut in_angle, mut i) = (false, false, self.pos);
        while i < bytes.len() {
            match bytes[i] {
                b'\\' if in_quotes => i += 1,
                b'"' => in_quotes = !in_quotes,
                b'<' if !in_quotes => in_angle = true,
                b'>' if !in_quotes => in_angle = false,
                b if b == self.sep && !in_quotes && !in_angle => {
                    let item = &self.value[self.pos..i];
                    self.pos = i + 1;
                    return Some(item);
                }
                _ => {}
            }
            i += 1;
        }
        self.done = true;
        self.value.get(self.pos..)
    }
}

/// Splits on `sep` outside quoted strings and `<…>`.
#[cfg(test)]
pub(crate) fn split_top_level(value: &str, sep: u8) -> Vec<&str> {
    TopLevel {
        value,
        sep,
        pos: 0,
        done: false,
    }
    .collect()
}

/// Parses `;a=b;c` (text after the first `;`, without it). Whitespace around `=` and `;`
/// is allowed (SWS in the grammar); quoted values keep their quotes. A value must be a
/// `gen-value`: token, host (IPv6 reference included) or quoted-string.
pub(crate) fn parse_params(s: &str) -> Option<Params> {
    let mut params = Params::new();
    for p in (TopLevel {
        value: s,
        sep: b';',
        pos: 0,
        done: false,
    }) {
        let p = p.trim();
        if p.is_empty() {
            return None;
        }
        match p.split_once('=') {
            Some((n, v)) => {
                let (n, v) = (n.trim(), v.trim());
                if !crate::grammar::is_token(n) || !is_gen_value(v) {
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

/// `gen-value = token / host / quoted-string`.
pub(crate) fn is_gen_value(v: &str) -> bool {
    crate::grammar::is_token(v)
        || is_quoted_string(v)
        || v.strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok())
}

/// A whole `quoted-string`: DQUOTE *(qdtext / quoted-pair) DQUOTE.
pub(crate) fn is_quoted_string(v: &str) -> bool {
    let Some(inner) = v.strip_prefix('"') else {
        return false;
    };
    let b = inner.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return i + 1 == b.len(),
            _ => i += 1,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commas_inside_quotes_and_brackets_do_not_split() {
        let v = r#""Doe, John" <sip:j@a;x=1,2>;tag=1, <sip:b@c>"#;
        assert_eq!(split_commas(v).len(), 2);
        assert_eq!(split_top_level("a;b;", b';'), vec!["a", "b", ""]);
        assert_eq!(split_list("a, b"), Some(vec!["a", "b"]));
        assert_eq!(split_list("a,,b"), None);
    }

    #[test]
    fn parameter_values_follow_gen_value() {
        assert!(parse_params("tag=1; q = 0.5 ;lr;maddr=[::1];x=\"a;b\\\"\"").is_some());
        assert!(parse_params("x=a b").is_none());
        assert!(parse_params("x=").is_none());
        assert!(parse_params(";").is_none());
        assert!(parse_params("x=\"open").is_none());
    }
}
