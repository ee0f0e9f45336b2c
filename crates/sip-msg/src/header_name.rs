//! Header field names: canonical spelling, case-insensitive matching, compact forms (RFC 3261 §7.3.3).

use std::fmt;

macro_rules! header_names {
    ($( $variant:ident => $canonical:literal $(, compact $compact:literal)? ; )*) => {
        /// A header field name. Known names compare by variant; others keep their spelling
        /// and compare case-insensitively.
        #[derive(Debug, Clone, Eq)]
        pub enum HeaderName {
            $( $variant, )*
            /// A header this crate has no variant for, spelled as received.
            Other(String),
        }

        impl HeaderName {
            /// Resolves a received name (any case, long or compact form).
            pub fn from_wire(name: &str) -> HeaderName {
                if name.len() == 1 {
                    let c = name.as_bytes()[0].to_ascii_lowercase();
                    $( $( if c == $compact { return HeaderName::$variant; } )? )*
                }
                $( if name.eq_ignore_ascii_case($canonical) { return HeaderName::$variant; } )*
                HeaderName::Other(name.to_owned())
            }

            /// The canonical long form, used when printing.
            pub fn as_str(&self) -> &str {
                match self {
                    $( HeaderName::$variant => $canonical, )*
                    HeaderName::Other(s) => s,
                }
            }
        }
    };
}

header_names! {
    Accept => "Accept";
    AcceptContact => "Accept-Contact", compact b'a';
    AcceptEncoding => "Accept-Encoding";
    AcceptLanguage => "Accept-Language";
    AlertInfo => "Alert-Info";
    Allow => "Allow";
    AllowEvents => "Allow-Events", compact b'u';
    AuthenticationInfo => "Authentication-Info";
    Authorization => "Authorization";
    CallId => "Call-ID", compact b'i';
    CallInfo => "Call-Info";
    Contact => "Contact", compact b'm';
    ContentDisposition => "Content-Disposition";
    ContentEncoding => "Content-Encoding", compact b'e';
    ContentLanguage => "Content-Language";
    ContentLength => "Content-Length", compact b'l';
    ContentType => "Content-Type", compact b'c';
    CSeq => "CSeq";
    Date => "Date";
    ErrorInfo => "Error-Info";
    Event => "Event", compact b'o';
    Expires => "Expires";
    From => "From", compact b'f';
    InReplyTo => "In-Reply-To";
    MaxForwards => "Max-Forwards";
    MimeVersion => "MIME-Version";
    MinExpires => "Min-Expires";
    MinSe => "Min-SE";
    Organization => "Organization";
    Path => "Path";
    PAssertedIdentity => "P-Asserted-Identity";
    PPreferredIdentity => "P-Preferred-Identity";
    Priority => "Priority";
    Privacy => "Privacy";
    ProxyAuthenticate => "Proxy-Authenticate";
    ProxyAuthorization => "Proxy-Authorization";
    ProxyRequire => "Proxy-Require";
    RAck => "RAck";
    Reason => "Reason";
    RecordRoute => "Record-Route";
    ReferTo => "Refer-To", compact b'r';
    ReferredBy => "Referred-By", compact b'b';
    RejectContact => "Reject-Contact", compact b'j';
    Replaces => "Replaces";
    ReplyTo => "Reply-To";
    RequestDisposition => "Request-Disposition", compact b'd';
    Require => "Require";
    RetryAfter => "Retry-After";
    Route => "Route";
    RSeq => "RSeq";
    Server => "Server";
    SessionExpires => "Session-Expires", compact b'x';
    Subject => "Subject", compact b's';
    SubscriptionState => "Subscription-State";
    Supported => "Supported", compact b'k';
    Timestamp => "Timestamp";
    To => "To", compact b't';
    Unsupported => "Unsupported";
    UserAgent => "User-Agent";
    Via => "Via", compact b'v';
    Warning => "Warning";
    WwwAuthenticate => "WWW-Authenticate";
}

impl PartialEq for HeaderName {
    fn eq(&self, other: &HeaderName) -> bool {
        match (self, other) {
            (HeaderName::Other(a), HeaderName::Other(b)) => a.eq_ignore_ascii_case(b),
            (HeaderName::Other(_), _) | (_, HeaderName::Other(_)) => false,
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
}

impl std::hash::Hash for HeaderName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        match self {
            HeaderName::Other(s) => {
                for b in s.bytes() {
                    state.write_u8(b.to_ascii_lowercase());
                }
            }
            known => std::mem::discriminant(known).hash(state),
        }
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_and_long_forms_resolve_to_the_same_name() {
        assert_eq!(HeaderName::from_wire("v"), HeaderName::Via);
        assert_eq!(HeaderName::from_wire("VIA"), HeaderName::Via);
        assert_eq!(HeaderName::from_wire("i"), HeaderName::CallId);
        assert_eq!(HeaderName::from_wire("call-id"), HeaderName::CallId);
        assert_eq!(
            HeaderName::from_wire("X-Foo"),
            HeaderName::from_wire("x-foo")
        );
        assert_ne!(HeaderName::from_wire("X-Foo"), HeaderName::Via);
    }
}
