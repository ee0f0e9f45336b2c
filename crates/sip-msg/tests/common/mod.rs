//! The RFC 4475 verdict table shared by `rfc4475.rs` and `rsip_comparison.rs`: every message
//! of the shared corpus, keyed by the RFC section that says what a receiver does with it.
#![allow(dead_code)]

use sip_msg::{ParseError, StatusCode, Verdict, parse_datagram};

/// What RFC 4475 says a receiver does with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    /// Valid (§3.1.1), or valid syntax with an application-layer verdict (§3.3, §3.4).
    Parse,
    /// Answered with a 400 whose reason phrase contains the given words.
    Reject400(&'static str),
    /// §3.1.2.18: "respond with a 501 … A 400 Bad Request is also acceptable"; a parser can
    /// only give the 400 (naming the fault).
    Reject400Or501(&'static str),
    /// §3.1.2.16: 505 Version Not Supported.
    Reject505,
    /// Rejecting with a 400 (naming the fault) or being liberal and parsing are both allowed.
    ParseOr400(&'static str),
    /// A broken response, or a request no response can be formed for: dropped silently.
    Drop,
}

pub(crate) use Expect::*;

/// (RFC 4475 section, title, file, expected verdict).
pub(crate) const TABLE: &[(&str, &str, &str, Expect)] = &[
    ("3.1.1.1", "A Short Tortuous INVITE", "wsinv.dat", Parse),
    (
        "3.1.1.2",
        "Wide Range of Valid Characters",
        "intmeth.dat",
        Parse,
    ),
    (
        "3.1.1.3",
        "Valid Use of the % Escaping Mechanism",
        "esc01.dat",
        Parse,
    ),
    ("3.1.1.4", "Escaped Nulls in URIs", "escnull.dat", Parse),
    (
        "3.1.1.5",
        "Use of % When It Is Not an Escape",
        "esc02.dat",
        Parse,
    ),
    (
        "3.1.1.6",
        "Message with No LWS between Display Name and <",
        "lwsdisp.dat",
        Parse,
    ),
    (
        "3.1.1.7",
        "Long Values in Header Fields",
        "longreq.dat",
        Parse,
    ),
    (
        "3.1.1.8",
        "Extra Trailing Octets in a UDP Datagram",
        "dblreq.dat",
        Parse,
    ),
    (
        "3.1.1.9",
        "Semicolon-Separated Parameters in URI User Part",
        "semiuri.dat",
        Parse,
    ),
    (
        "3.1.1.10",
        "Varied and Unknown Transport Types",
        "transports.dat",
        Parse,
    ),
    ("3.1.1.11", "Multipart MIME Message", "mpart01.dat", Parse),
    ("3.1.1.12", "Unusual Reason Phrase", "unreason.dat", Parse),
    ("3.1.1.13", "Empty Reason Phrase", "noreason.dat", Parse),
    (
        "3.1.2.1",
        "Extraneous Header Field Separators",
        "badinv01.dat",
        Reject400("Via"),
    ),
    (
        "3.1.2.2",
        "Content Length Larger Than Message",
        "clerr.dat",
        Reject400("Content-Length"),
    ),
    (
        "3.1.2.3",
        "Negative Content-Length",
        "ncl.dat",
        Reject400("Content-Length"),
    ),
    (
        "3.1.2.4",
        "Request Scalar Fields with Overlarge Values",
        "scalar02.dat",
        Reject400("CSeq"),
    ),
    (
        "3.1.2.5",
        "Response Scalar Fields with Overlarge Values",
        "scalarlg.dat",
        Drop,
    ),
    (
        "3.1.2.6",
        "Unterminated Quoted String in Display Name",
        "quotbal.dat",
        Reject400("To"),
    ),
    (
        "3.1.2.7",
        "<> Enclosing Request-URI",
        "ltgtruri.dat",
        ParseOr400("Request-URI"),
    ),
    (
        "3.1.2.8",
        "Malformed SIP Request-URI (embedded LWS)",
        "lwsruri.dat",
        ParseOr400("single spaces"),
    ),
    (
        "3.1.2.9",
        "Multiple SP Separating Request-Line Elements",
        "lwsstart.dat",
        ParseOr400("single spaces"),
    ),
    (
        "3.1.2.10",
        "SP Characters at End of Request-Line",
        "trws.dat",
        ParseOr400("single spaces"),
    ),
    (
        "3.1.2.11",
        "Escaped Headers in SIP Request-URI",
        "escruri.dat",
        ParseOr400("Request-URI"),
    ),
    (
        "3.1.2.12",
        "Invalid Time Zone in Date Header Field",
        "baddate.dat",
        ParseOr400("Date"),
    ),
    (
        "3.1.2.13",
        "Failure to Enclose name-addr URI in <>",
        "regbadct.dat",
        ParseOr400("Contact"),
    ),
    (
        "3.1.2.14",
        "Spaces within addr-spec",
        "badaspec.dat",
        ParseOr400("To"),
    ),
    (
        "3.1.2.15",
        "Non-token Characters in Display Name",
        "baddn.dat",
        ParseOr400("From"),
    ),
    (
        "3.1.2.16",
        "Unknown Protocol Version",
        "badvers.dat",
        Reject505,
    ),
    (
        "3.1.2.17",
        "Start Line and CSeq Method Mismatch",
        "mismatch01.dat",
        Reject400("CSeq"),
    ),
    (
        "3.1.2.18",
        "Unknown Method with CSeq Method Mismatch",
        "mismatch02.dat",
        Reject400Or501("CSeq"),
    ),
    ("3.1.2.19", "Overlarge Response Code", "bigcode.dat", Drop),
    (
        "3.2.1",
        "Missing Transaction Identifier",
        "badbranch.dat",
        ParseOr400("Via"),
    ),
    (
        "3.3.1",
        "Missing Required Header Fields",
        "insuf.dat",
        Reject400("missing"),
    ),
    (
        "3.3.2",
        "Request-URI with Unknown Scheme",
        "unkscm.dat",
        Parse,
    ),
    (
        "3.3.3",
        "Request-URI with Known but Atypical Scheme",
        "novelsc.dat",
        Parse,
    ),
    (
        "3.3.4",
        "Unknown URI Schemes in Header Fields",
        "unksm2.dat",
        Parse,
    ),
    ("3.3.5", "Proxy-Require and Require", "bext01.dat", Parse),
    ("3.3.6", "Unknown Content-Type", "invut.dat", Parse),
    (
        "3.3.7",
        "Unknown Authorization Scheme",
        "regaut01.dat",
        Parse,
    ),
    (
        "3.3.8",
        "Multiple Values in Single Value Required Fields",
        "multi01.dat",
        Reject400("multiple"),
    ),
    (
        "3.3.9",
        "Multiple Content-Length Values",
        "mcl01.dat",
        Reject400("Content-Length"),
    ),
    (
        "3.3.10",
        "200 OK Response with Broadcast Via Header Field Value",
        "bcast.dat",
        Parse,
    ),
    ("3.3.11", "Max-Forwards of Zero", "zeromf.dat", Parse),
    (
        "3.3.12",
        "REGISTER with a Contact Header Parameter",
        "cparam01.dat",
        Parse,
    ),
    (
        "3.3.13",
        "REGISTER with a url-parameter",
        "cparam02.dat",
        Parse,
    ),
    (
        "3.3.14",
        "REGISTER with a URL Escaped Header",
        "regescrt.dat",
        Parse,
    ),
    ("3.3.15", "Unacceptable Accept Offering", "sdp01.dat", Parse),
    ("3.4.1", "INVITE with RFC 2543 Syntax", "inv2543.dat", Parse),
    // Not from RFC 4475 (see the corpus' PROVENANCE.txt): a Request-Line without a version,
    // a line without a colon, no Via and no CSeq. Nothing to answer to.
    (
        "-",
        "test.dat (not in RFC 4475): no SIP-Version, no Via",
        "test.dat",
        Drop,
    ),
];

pub(crate) fn load(file: &str) -> Vec<u8> {
    testdata::rfc4475_file(file).unwrap_or_else(|e| panic!("{e}"))
}

/// The 400/505 a failed parse must produce, or the reason it does not.
fn response_of(err: &ParseError) -> Option<(StatusCode, String)> {
    match err.verdict() {
        Verdict::Respond(resp) => Some((resp.status, resp.reason.clone())),
        Verdict::Drop => None,
    }
}

/// Checks one message against its expectation; returns a description of the mismatch.
pub(crate) fn check(expect: Expect, bytes: &[u8]) -> Result<String, String> {
    let parsed = parse_datagram(bytes);
    let rejected = |fault: &str, allowed: &[u16]| match &parsed {
        Ok(_) => Err("parsed, but the RFC asks for a rejection".to_owned()),
        Err(e) => match response_of(e) {
            Some((status, reason))
                if allowed.contains(&status.as_u16()) && reason.contains(fault) =>
            {
                Ok(format!("{} {reason}", status.as_u16()))
            }
            Some((status, reason)) => Err(format!(
                "answered {} {reason:?}, expected {allowed:?} naming {fault:?}",
                status.as_u16()
            )),
            None => Err(format!("dropped ({e}), expected an answer")),
        },
    };
    match expect {
        Parse => match &parsed {
            Ok(_) => Ok("parsed".to_owned()),
            Err(e) => Err(format!("rejected ({e}), must parse")),
        },
        Reject400(fault) => rejected(fault, &[400]),
        Reject400Or501(fault) => rejected(fault, &[400, 501]),
        Reject505 => rejected("Version", &[505]),
        ParseOr400(fault) => match &parsed {
            Ok(_) => Ok("parsed (liberal)".to_owned()),
            Err(_) => rejected(fault, &[400]),
        },
        Drop => match &parsed {
            Ok(_) => Err("parsed, but must be dropped".to_owned()),
            Err(e) => match response_of(e) {
                None => Ok(format!("dropped ({e})")),
                Some((s, r)) => Err(format!("answered {} {r}, must be dropped", s.as_u16())),
            },
        },
    }
}
