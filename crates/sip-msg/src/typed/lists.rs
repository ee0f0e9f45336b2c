//! List-valued headers: Route, Record-Route, Path (RFC 3261 §20.34, §20.30; RFC 3327),
//! P-Asserted-Identity (RFC 3325), Allow (§20.5) and the option-tag lists Supported,
//! Require, Unsupported and Proxy-Require (§20.37, §20.32, §20.40, §20.29).
//!
//! A list may be spread over several lines or comma-joined on one: both read the same.

use std::fmt;

use crate::grammar::is_token;
use crate::header_name::HeaderName;
use crate::headers::Headers;
use crate::method::Method;
use crate::split::split_list;
use crate::typed::{HeaderError, NameAddr};

/// Prints a slice as `a, b, c` (the comma form of any list header).
#[derive(Debug, Clone, Copy)]
pub struct CommaList<'a, T>(pub &'a [T]);

impl<T: fmt::Display> fmt::Display for CommaList<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, item) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{item}")?;
        }
        Ok(())
    }
}

/// Option tags (`Supported: 100rel, timer`), in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OptionTags(pub Vec<String>);

impl OptionTags {
    /// True when `tag` is listed (option tags compare case-sensitively, §19.2).
    pub fn contains(&self, tag: &str) -> bool {
        self.0.iter().any(|t| t == tag)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

impl fmt::Display for OptionTags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", CommaList(&self.0))
    }
}

impl Headers {
    /// Every element of every line of `name`, parsed by `item`; `Ok(None)` when absent.
    /// With `allow_empty`, a line with an empty value is an empty list (Allow, Supported).
    fn list<T>(
        &self,
        name: HeaderName,
        allow_empty: bool,
        item: impl Fn(&str) -> Option<T>,
    ) -> Result<Option<Vec<T>>, HeaderError> {
        let mut out: Option<Vec<T>> = None;
        for line in self.get_all(&name) {
            let acc = out.get_or_insert_with(Vec::new);
            if line.is_empty() && allow_empty {
                continue;
            }
            for element in split_list(line).ok_or_else(|| HeaderError::new(name.clone()))? {
                acc.push(item(element).ok_or_else(|| HeaderError::new(name.clone()))?);
            }
        }
        Ok(out)
    }

    /// `Route` entries, topmost first (each must be a `<name-addr>`).
    pub fn routes(&self) -> Result<Option<Vec<NameAddr>>, HeaderError> {
        self.list(HeaderName::Route, false, parse_bracketed)
    }

    /// `Record-Route` entries, in order.
    pub fn record_routes(&self) -> Result<Option<Vec<NameAddr>>, HeaderError> {
        self.list(HeaderName::RecordRoute, false, parse_bracketed)
    }

    /// `Path` entries (RFC 3327), in order.
    pub fn paths(&self) -> Result<Option<Vec<NameAddr>>, HeaderError> {
        self.list(HeaderName::Path, false, parse_bracketed)
    }

    /// `P-Asserted-Identity` (RFC 3325): one or two identities (a SIP/SIPS URI and/or a tel URI).
    pub fn p_asserted_identity(&self) -> Result<Option<Vec<NameAddr>>, HeaderError> {
        self.list(HeaderName::PAssertedIdentity, false, NameAddr::parse)
    }

    /// `Allow`: the methods the sender supports (may be empty).
    pub fn allow(&self) -> Result<Option<Vec<Method>>, HeaderError> {
        self.list(HeaderName::Allow, true, Method::from_token)
    }

    /// `Supported` option tags (may be empty).
    pub fn supported(&self) -> Result<Option<OptionTags>, HeaderError> {
        self.option_tags(HeaderName::Supported, true)
    }

    /// `Require` option tags.
    pub fn require(&self) -> Result<Option<OptionTags>, HeaderError> {
        self.option_tags(HeaderName::Require, false)
    }

    /// `Unsupported` option tags.
    pub fn unsupported(&self) -> Result<Option<OptionTags>, HeaderError> {
        self.option_tags(HeaderName::Unsupported, false)
    }

    /// `Proxy-Require` option tags.
    pub fn proxy_require(&self) -> Result<Option<OptionTags>, HeaderError> {
        self.option_tags(HeaderName::ProxyRequire, false)
    }

    fn option_tags(
        &self,
        name: HeaderName,
        allow_empty: bool,
    ) -> Result<Option<OptionTags>, HeaderError> {
        let tag = |s: &str| is_token(s).then(|| s.to_owned());
        Ok(self.list(name, allow_empty, tag)?.map(OptionTags))
    }
}

/// `route-param = name-addr *( SEMI rr-param )`: the angle brackets are mandatory.
fn parse_bracketed(s: &str) -> Option<NameAddr> {
    if !s.contains('<') {
        return None;
    }
    NameAddr::parse(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(lines: &[(HeaderName, &str)]) -> Headers {
        let mut h = Headers::new();
        for (n, v) in lines {
            h.push(n.clone(), *v);
        }
        h
    }

    #[test]
    fn routes_keep_order_across_lines() {
        let h = headers(&[
            (
                HeaderName::Route,
                "<sip:p1.example.com;lr>, <sip:p2.example.com;lr>",
            ),
            (HeaderName::Route, "<sip:p3.example.com;lr>"),
        ]);
        let routes = h.routes().unwrap().unwrap();
        let hosts: Vec<String> = routes.iter().map(|r| r.uri.host.to_string()).collect();
        assert_eq!(
            hosts,
            ["p1.example.com", "p2.example.com", "p3.example.com"]
        );
        assert_eq!(
            CommaList(&routes).to_string(),
            "<sip:p1.example.com;lr>, <sip:p2.example.com;lr>, <sip:p3.example.com;lr>"
        );
        assert_eq!(h.record_routes(), Ok(None));
        let bare = headers(&[(HeaderName::Route, "sip:p1.example.com;lr")]);
        assert!(bare.routes().is_err());
    }

    #[test]
    fn allow_and_option_tags() {
        let h = headers(&[
            (HeaderName::Allow, "INVITE, ACK,BYE"),
            (HeaderName::Supported, ""),
            (HeaderName::Require, "100rel, timer"),
            (HeaderName::ProxyRequire, "a b"),
        ]);
        assert_eq!(
            h.allow().unwrap().unwrap(),
            [Method::Invite, Method::Ack, Method::Bye]
        );
        assert_eq!(h.supported().unwrap(), Some(OptionTags::default()));
        let req = h.require().unwrap().unwrap();
        assert!(req.contains("timer") && !req.contains("Timer"));
        assert_eq!(req.to_string(), "100rel, timer");
        assert!(h.proxy_require().is_err());
        assert_eq!(h.unsupported(), Ok(None));
    }

    #[test]
    fn p_asserted_identity_takes_both_forms() {
        let h = headers(&[(
            HeaderName::PAssertedIdentity,
            "\"Alice\" <sip:alice@example.com>, tel:+33491000000",
        )]);
        let ids = h.p_asserted_identity().unwrap().unwrap();
        assert_eq!(ids.len(), 2);
        assert_eq!(ids[1].uri.to_string(), "tel:+33491000000");
    }
}
