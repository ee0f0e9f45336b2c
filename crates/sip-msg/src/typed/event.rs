//! `Event` and `Subscription-State` (RFC 6665 §8.2.1, §8.2.3), for BLF, presence and MWI.

use std::fmt;

use crate::grammar::is_token;
use crate::header_name::HeaderName;
use crate::headers::Headers;
use crate::params::Params;
use crate::split::parse_params;
use crate::typed::{HeaderError, parse_delta_seconds};

/// `Event: dialog;id=7` — the event type (package with optional `.template`s) and parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The event type as received, e.g. `dialog`, `presence`, `presence.winfo`
    /// (compare case-insensitively: tokens in Event are case-insensitive per RFC 6665 §8.2.1).
    pub package: String,
    /// All parameters, `id` included.
    pub params: Params,
}

impl Event {
    pub fn parse(s: &str) -> Option<Event> {
        let (package, params) = match s.split_once(';') {
            Some((p, rest)) => (p.trim(), parse_params(rest)?),
            None => (s.trim(), Params::new()),
        };
        // event-type = event-package *( "." event-template ), both token-nodot.
        if !is_token(package) || package.split('.').any(str::is_empty) {
            return None;
        }
        Some(Event {
            package: package.to_owned(),
            params,
        })
    }

    /// The `id` parameter that tells subscriptions of one dialog apart.
    pub fn id(&self) -> Option<&str> {
        self.params.value("id")
    }

    /// True for this package, case-insensitively (`"dialog"`, `"message-summary"` …).
    pub fn is(&self, package: &str) -> bool {
        self.package.eq_ignore_ascii_case(package)
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.package, self.params)
    }
}

/// The `substate-value` of a Subscription-State.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubState {
    Active,
    Pending,
    Terminated,
    /// An extension state, as received.
    Other(String),
}

impl SubState {
    fn parse(s: &str) -> Option<SubState> {
        Some(if s.eq_ignore_ascii_case("active") {
            SubState::Active
        } else if s.eq_ignore_ascii_case("pending") {
            SubState::Pending
        } else if s.eq_ignore_ascii_case("terminated") {
            SubState::Terminated
        } else if is_token(s) {
            SubState::Other(s.to_owned())
        } else {
            return None;
        })
    }

    pub fn as_str(&self) -> &str {
        match self {
            SubState::Active => "active",
            SubState::Pending => "pending",
            SubState::Terminated => "terminated",
            SubState::Other(s) => s,
        }
    }
}

/// `Subscription-State: active;expires=600` or `terminated;reason=timeout;retry-after=30`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionState {
    pub state: SubState,
    /// All parameters (`expires`, `reason`, `retry-after` and extensions), as received.
    pub params: Params,
}

impl SubscriptionState {
    pub fn parse(s: &str) -> Option<SubscriptionState> {
        let (state, params) = match s.split_once(';') {
            Some((st, rest)) => (st.trim(), parse_params(rest)?),
            None => (s.trim(), Params::new()),
        };
        let parsed = SubscriptionState {
            state: SubState::parse(state)?,
            params,
        };
        let number_ok = |name| {
            parsed
                .params
                .value(name)
                .is_none_or(|v| parse_delta_seconds(v).is_some())
        };
        (number_ok("expires") && number_ok("retry-after")).then_some(parsed)
    }

    /// `expires` in seconds.
    pub fn expires(&self) -> Option<u32> {
        self.params.value("expires").and_then(parse_delta_seconds)
    }

    /// `reason` (`deactivated`, `probation`, `rejected`, `timeout`, `giveup`, `noresource`,
    /// `invariant` or an extension).
    pub fn reason(&self) -> Option<&str> {
        self.params.value("reason")
    }

    /// `retry-after` in seconds.
    pub fn retry_after(&self) -> Option<u32> {
        self.params
            .value("retry-after")
            .and_then(parse_delta_seconds)
    }
}

impl fmt::Display for SubscriptionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.state.as_str(), self.params)
    }
}

impl Headers {
    /// `Event` (compact form `o`).
    pub fn event(&self) -> Result<Option<Event>, HeaderError> {
        self.single(HeaderName::Event, Event::parse)
    }

    /// `Subscription-State`.
    pub fn subscription_state(&self) -> Result<Option<SubscriptionState>, HeaderError> {
        self.single(HeaderName::SubscriptionState, SubscriptionState::parse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_with_id() {
        let e = Event::parse("dialog ; id=7;sla").unwrap();
        assert!(e.is("Dialog"));
        assert_eq!(e.id(), Some("7"));
        assert_eq!(e.to_string(), "dialog;id=7;sla");
        assert_eq!(
            Event::parse("presence.winfo").unwrap().package,
            "presence.winfo"
        );
        assert_eq!(Event::parse("a..b"), None);
        assert_eq!(Event::parse(""), None);
    }

    #[test]
    fn subscription_state_parameters() {
        let s = SubscriptionState::parse("terminated;reason=timeout;retry-after=30").unwrap();
        assert_eq!(s.state, SubState::Terminated);
        assert_eq!(s.reason(), Some("timeout"));
        assert_eq!(s.retry_after(), Some(30));
        assert_eq!(s.expires(), None);
        assert_eq!(SubscriptionState::parse(&s.to_string()), Some(s));
        assert_eq!(SubscriptionState::parse("active;expires=soon"), None);
    }
}
