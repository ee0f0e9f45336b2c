//! Typed views of header values, parsed on demand from [`Headers`](crate::Headers).
//! Each accessor returns `Ok(None)` when the header is absent and `Err` when it is malformed,
//! so callers can answer 400 with the header's name.

mod auth;
mod contact;
mod cseq;
mod event;
mod lists;
mod media;
mod name_addr;
mod refer;
mod scalar;
mod via;

pub use auth::{AuthParams, AuthScheme, Challenge, Credentials};
pub use contact::{Contacts, parse_qvalue};
pub use cseq::CSeq;
pub use event::{Event, SubState, SubscriptionState};
pub use lists::{CommaList, OptionTags};
pub use media::ContentType;
pub use name_addr::NameAddr;
pub use refer::Replaces;
pub(crate) use scalar::{parse_delta_seconds, parse_u32};
pub use via::{BRANCH_MAGIC_COOKIE, Transport, Via};

use crate::header_name::HeaderName;
use crate::headers::Headers;
use crate::split::{first_top_level_comma, split_commas};

/// A header value that does not match its grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {name} header")]
pub struct HeaderError {
    /// Which header was malformed (its canonical name, used in the 400 reason phrase).
    pub name: HeaderName,
}

impl HeaderError {
    pub(crate) fn new(name: HeaderName) -> HeaderError {
        HeaderError { name }
    }
}

impl Headers {
    /// Every Via value, topmost first, across all Via lines.
    pub fn vias(&self) -> Result<Vec<Via>, HeaderError> {
        let mut out = Vec::new();
        for line in self.get_all(&HeaderName::Via) {
            for v in split_commas(line) {
                out.push(Via::parse(v).ok_or(HeaderError::new(HeaderName::Via))?);
            }
        }
        Ok(out)
    }

    /// The topmost Via.
    pub fn top_via(&self) -> Result<Option<Via>, HeaderError> {
        let Some(line) = self.get(&HeaderName::Via) else {
            return Ok(None);
        };
        let first = line[..first_top_level_comma(line).unwrap_or(line.len())].trim();
        Via::parse(first)
            .map(Some)
            .ok_or(HeaderError::new(HeaderName::Via))
    }

    /// Replaces the topmost Via value by `via`, in place, keeping the other values of its
    /// line (what a server does when it stamps `received`/`rport`, RFC 3261 §18.2.1, RFC 3581).
    /// Returns false when there is no Via.
    pub fn replace_top_via(&mut self, via: &Via) -> bool {
        let Some(line) = self.first_value_mut(&HeaderName::Via) else {
            return false;
        };
        let rest = first_top_level_comma(line).map_or("", |i| &line[i..]);
        *line = format!("{via}{rest}");
        true
    }

    /// Removes the topmost Via value (a proxy's own, from a response, §16.7 step 3): only that
    /// value when the first Via line lists several (`Via: a, b`, §7.3.1), else the whole line.
    /// False when there is no Via.
    pub fn remove_top_via(&mut self) -> bool {
        let Some(line) = self.first_value_mut(&HeaderName::Via) else {
            return false;
        };
        if let Some(comma) = first_top_level_comma(line) {
            let rest = line[comma + 1..].trim_start().to_owned();
            *line = rest;
            return true;
        }
        self.remove_first(&HeaderName::Via);
        true
    }

    pub fn cseq(&self) -> Result<Option<CSeq>, HeaderError> {
        self.single(HeaderName::CSeq, CSeq::parse)
    }

    pub fn from_header(&self) -> Result<Option<NameAddr>, HeaderError> {
        self.single(HeaderName::From, NameAddr::parse)
    }

    pub fn to_header(&self) -> Result<Option<NameAddr>, HeaderError> {
        self.single(HeaderName::To, NameAddr::parse)
    }

    /// Every Contact line taken together: `*` or the list of addresses in order.
    pub fn contacts(&self) -> Result<Option<Contacts>, HeaderError> {
        let err = || HeaderError::new(HeaderName::Contact);
        let mut out: Option<Contacts> = None;
        for line in self.get_all(&HeaderName::Contact) {
            let parsed = Contacts::parse(line).ok_or_else(err)?;
            out = Some(match (out, parsed) {
                (None, first) => first,
                // `*` must be the only Contact value (§10.2.2).
                (Some(Contacts::Star), _) | (Some(_), Contacts::Star) => return Err(err()),
                (Some(Contacts::List(mut a)), Contacts::List(b)) => {
                    a.extend(b);
                    Contacts::List(a)
                }
            });
        }
        Ok(out)
    }

    /// The Call-ID, trimmed; `None` when absent.
    pub fn call_id(&self) -> Option<&str> {
        self.get(&HeaderName::CallId)
    }

    /// Parses a header that must appear at most once as a single value.
    pub(crate) fn single<T>(
        &self,
        name: HeaderName,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<Option<T>, HeaderError> {
        let (first, more) = {
            let mut values = self.get_all(&name);
            (values.next(), values.next().is_some())
        };
        let Some(first) = first else { return Ok(None) };
        if more {
            return Err(HeaderError::new(name));
        }
        parse(first).map(Some).ok_or(HeaderError::new(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacing_the_top_via_keeps_the_rest_of_its_line_and_quoted_commas() {
        let mut h = Headers::new();
        h.push(
            HeaderName::Via,
            r#"SIP/2.0/UDP a;branch=z9hG4bK1;x="1,2", SIP/2.0/UDP b;branch=z9hG4bK2"#,
        );
        h.push(HeaderName::Via, "SIP/2.0/UDP c;branch=z9hG4bK3");
        let mut top = h.top_via().unwrap().unwrap();
        assert_eq!(top.params.value("x"), Some("\"1,2\""));
        top.params.set("received", Some("192.0.2.7"));
        assert!(h.replace_top_via(&top));
        let vias = h.vias().unwrap();
        assert_eq!(vias.len(), 3);
        assert_eq!(vias[0], top);
        assert_eq!(vias[1].branch(), Some("z9hG4bK2"));
        assert_eq!(vias[2].branch(), Some("z9hG4bK3"));
        assert!(!Headers::new().replace_top_via(&top));
    }
}

#[cfg(test)]
mod remove_top_via_tests {
    use crate::{HeaderName, Headers};

    #[test]
    fn removes_one_value_of_a_comma_list_or_the_whole_line() {
        let mut h = Headers::new();
        h.push(
            HeaderName::Via,
            "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2",
        );
        h.push(HeaderName::Via, "SIP/2.0/UDP c;branch=z9hG4bK3");
        assert!(h.remove_top_via());
        assert_eq!(
            h.get(&HeaderName::Via),
            Some("SIP/2.0/UDP b;branch=z9hG4bK2")
        );
        assert!(h.remove_top_via());
        assert_eq!(
            h.get(&HeaderName::Via),
            Some("SIP/2.0/UDP c;branch=z9hG4bK3")
        );
        assert!(h.remove_top_via());
        assert!(!h.remove_top_via());
    }
}
