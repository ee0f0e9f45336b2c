//! calanque's SIP message layer: parse (datagram and stream), print, typed header access,
//! response building and the classification of parse failures.
//!
//! This is the only crate of the workspace that names the `rsip` parser (see
//! `docs/adr/0002-sip-msg-facade.md`); everything above it uses these types, so the parser
//! can be replaced without touching the rest.

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
pub use typed::{CSeq, HeaderError, NameAddr, Transport, Via};
pub use uri::{Host, Scheme, Uri, UriError};
