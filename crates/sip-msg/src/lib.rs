//! calanque's SIP message layer: parse (datagram and stream), print, typed header access,
//! response building and the classification of parse failures.
//!
//! The grammar is this crate's own (RFC 3261 §25, checked against RFC 4475; see
//! `docs/adr/0002-sip-msg-own-grammar.md`). Everything above it uses only these types, so
//! the parser behind them can be replaced without touching the rest.

#![forbid(unsafe_code)]

mod grammar;
pub mod header_name;
pub mod headers;
pub mod message;
pub mod method;
pub mod params;
pub mod parse;
pub mod response;
mod split;
pub mod status;
pub mod stream;
pub mod typed;
pub mod uri;
mod uri_parse;

pub use header_name::HeaderName;
pub use headers::{Header, Headers};
pub use message::{Request, Response, SipMessage};
pub use method::Method;
pub use params::Params;
pub use parse::{ParseError, ParseErrorKind, Verdict, parse_datagram};
pub use response::build_response;
pub use status::StatusCode;
pub use stream::{Frame, RawFrame, StreamError, StreamFramer, StreamLimits};
pub use typed::{
    CSeq, Contacts, ContentType, Event, HeaderError, NameAddr, Replaces, SubscriptionState,
    Transport, Via,
};
pub use uri::{Host, Scheme, Uri, UriError};
