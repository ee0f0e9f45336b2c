//! `name-addr` / `addr-spec` with parameters: From, To, Contact, Route, Record-Route,
//! Refer-To, Referred-By, P-Asserted-Identity (RFC 3261 §20.10, §25.1).

use std::fmt;

use crate::params::Params;
use crate::split::parse_params;
use crate::uri::Uri;

/// An address with optional display name and header parameters (e.g. `tag`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// The display name, without quotes, unescaped.
    pub display_name: Option<String>,
    pub uri: Uri,
    pub params: Params,
}

impl NameAddr {
    pub fn new(uri: Uri) -> NameAddr {
        NameAddr {
            display_name: None,
            uri,
            params: Params::new(),
        }
    }

    /// Parses one address (not a comma list).
    pub fn parse(s: &str) -> Option<NameAddr> {
        let s = s.trim();
        let (display_name, after_display) = if let Some(rest) = s.strip_prefix('"') {
            let (name, used) = unquote(rest)?;
            (Some(name), rest[used..].trim_start())
        } else if let Some(lt) = s.find('<') {
            let dn = s[..lt].trim();
            if !dn.is_empty() && !dn.split_ascii_whitespace().all(crate::grammar::is_token) {
                return None;
            }
            ((!dn.is_empty()).then(|| dn.to_owned()), &s[lt..])
        } else {
            (None, s)
        };
        if let Some(inner) = after_display.strip_prefix('<') {
            let gt = inner.find('>')?;
            // LAQUOT / RAQUOT allow no whitespace inside the brackets (RFC 4475 §3.1.2.14).
            let uri = Uri::parse(&inner[..gt]).ok()?;
            let after = inner[gt + 1..].trim_start();
            let params = match after {
                "" => Params::new(),
                p => parse_params(p.strip_prefix(';')?)?,
            };
            Some(NameAddr {
                display_name,
                uri,
                params,
            })
        } else {
            if display_name.is_some() {
                return None;
            }
            // addr-spec form: parameters after ';' belong to the header, not the URI (§20.10).
            let (uri_str, params) = match after_display.find(';') {
                Some(i) => (&after_display[..i], parse_params(&after_display[i + 1..])?),
                None => (after_display, Params::new()),
            };
            if uri_str.contains(['?', ',']) {
                return None;
            }
            Some(NameAddr {
                display_name: None,
                uri: Uri::parse(uri_str.trim()).ok()?,
                params,
            })
        }
    }

    pub fn tag(&self) -> Option<&str> {
        self.params.value("tag")
    }
}

/// Reads a quoted string body (after the opening quote); returns it unescaped and the
/// number of bytes consumed including the closing quote.
fn unquote(s: &str) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, i + 1)),
            '\\' => out.push(chars.next()?.1),
            c => out.push(c),
        }
    }
    None
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(dn) = &self.display_name {
            write!(f, "\"{}\" ", dn.replace('\\', "\\\\").replace('"', "\\\""))?;
        }
        write!(f, "<{}>{}", self.uri, self.params)
    }
}
