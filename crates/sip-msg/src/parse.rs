//! Parsing a whole message from bytes (a datagram, or one frame cut from a stream),
//! and classifying every failure into what the receiver must do (RFC 3261 §16.3, §18.3, §21.4).

use bytes::Bytes;

use crate::header_name::HeaderName;
use crate::headers::Headers;
use crate::message::{Request, Response, SipMessage};
use crate::method::Method;
use crate::response::build_response;
use crate::status::StatusCode;
use crate::uri::Uri;

/// Largest message accepted; a request above it is refused with 513 when it can be answered.
pub const MAX_MESSAGE_SIZE: usize = 65_535;

/// What went wrong, precise enough to name the fault in a 400 reason phrase.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    /// Nothing but whitespace, or no end of the header section.
    #[error("incomplete message")]
    Incomplete,
    /// The first line is neither `METHOD URI SIP/2.0` nor `SIP/2.0 CODE REASON`.
    #[error("malformed start line")]
    BadStartLine,
    /// The method is not a token.
    #[error("invalid method")]
    BadMethod,
    /// The Request-URI does not parse.
    #[error("malformed Request-URI")]
    BadRequestUri,
    /// A version other than SIP/2.0 (answered with 505).
    #[error("unsupported SIP version")]
    UnsupportedVersion,
    /// Status code outside 100..=699 or not three digits.
    #[error("invalid status code")]
    BadStatusCode,
    /// A header line without a colon, with a non-token name, or not UTF-8.
    #[error("malformed header line")]
    BadHeaderLine,
    /// A required header is missing (its name given).
    #[error("missing {0} header")]
    MissingHeader(HeaderName),
    /// A header is present but malformed, or appears more times than allowed.
    #[error("malformed {0} header")]
    BadHeader(HeaderName),
    /// CSeq method differs from the request method.
    #[error("CSeq method does not match request method")]
    CSeqMethodMismatch,
    /// Content-Length larger than the bytes received (§18.3: reject, do not guess).
    #[error("Content-Length larger than message body")]
    BodyTruncated,
    /// Message larger than [`MAX_MESSAGE_SIZE`].
    #[error("message too large")]
    TooLarge,
}

/// A failed parse: the fault and, when the request's start line and the headers a response
/// needs could be read, the partial request so that an answer can be formed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct ParseError {
    pub kind: ParseErrorKind,
    /// Present only for requests whose Via, From, To, Call-ID and CSeq are usable.
    partial_request: Option<Box<Request>>,
}

/// What a receiver does with an unparseable message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Send this response (400 naming the fault, 505, 513) back per the top Via.
    Respond(Box<Response>),
    /// No response can be formed (a broken response, or a request without a usable
    /// Via/From/To/Call-ID/CSeq): drop it silently.
    Drop,
}

impl ParseError {
    fn new(kind: ParseErrorKind) -> ParseError {
        ParseError { kind, partial_request: None }
    }

    /// Decides between answering and dropping.
    pub fn verdict(&self) -> Verdict {
        let Some(req) = &self.partial_request else { return Verdict::Drop };
        if req.method == Method::Ack {
            // An ACK is never answered (§17.2.1).
            return Verdict::Drop;
        }
        let status = match self.kind {
            ParseErrorKind::UnsupportedVersion => StatusCode::VERSION_NOT_SUPPORTED,
            ParseErrorKind::TooLarge => StatusCode::new(513).unwrap_or(StatusCode::BAD_REQUEST),
            _ => StatusCode::BAD_REQUEST,
        };
        let mut resp = build_response(req, status, None);
        if status == StatusCode::BAD_REQUEST {
            resp.reason = format!("Bad Request ({})", self.kind);
        }
        Verdict::Respond(Box::new(resp))
    }
}

/// Parses one complete message. Over UDP, bytes after Content-Length are ignored and a
/// missing Content-Length means the body runs to the end of the datagram.
pub fn parse_datagram(data: &[u8]) -> Result<SipMessage, ParseError> {
    // Leading CRLFs before a start line are ignored (§7.5).
    let mut start = 0;
    while data.get(start..start + 2) == Some(b"\r\n") {
        start += 2;
    }
    let data = &data[start..];
    let head_end = find_head_end(data).ok_or(ParseError::new(ParseErrorKind::Incomplete))?;
    let (head, sep_len) = head_end;
    let head_bytes = &data[..head];
    let body_bytes = &data[head + sep_len..];
    let head_str =
        std::str::from_utf8(head_bytes).map_err(|_| ParseError::new(ParseErrorKind::BadHeaderLine))?;
    let mut lines = unfold(head_str);
    if lines.is_empty() {
        return Err(ParseError::new(ParseErrorKind::Incomplete));
    }
    let start_line = lines.remove(0);
    let headers = parse_header_lines(&lines);
    let start = parse_start_line(&start_line);
    match start {
        StartLine::Request { method, uri, version_ok } => {
            let headers = headers.map_err(ParseError::new)?;
            let mut req = Request { method, uri: Uri::sip(crate::uri::Host::Domain(String::new())), headers, body: Bytes::new() };
            let respondable = responder_headers_ok(&req.headers);
            let fail = |kind: ParseErrorKind, req: &Request| ParseError {
                kind,
                partial_request: respondable.then(|| Box::new(req.clone())),
            };
            if !version_ok {
                return Err(fail(ParseErrorKind::UnsupportedVersion, &req));
            }
            req.body = Bytes::copy_from_slice(frame_body(&req.headers, body_bytes).map_err(|k| fail(k, &req))?);
            if data.len() > MAX_MESSAGE_SIZE {
                return Err(fail(ParseErrorKind::TooLarge, &req));
            }
            req.uri = match uri {
                Some(u) => u,
                None => return Err(fail(ParseErrorKind::BadRequestUri, &req)),
            };
            validate_request(&req).map_err(|k| fail(k, &req))?;
            Ok(SipMessage::Request(req))
        }
        StartLine::Response { status, reason } => {
            let headers = headers.map_err(ParseError::new)?;
            let body = Bytes::copy_from_slice(frame_body(&headers, body_bytes).map_err(ParseError::new)?);
            let resp = Response { status, reason, headers, body };
            validate_response(&resp).map_err(ParseError::new)?;
            Ok(SipMessage::Response(resp))
        }
        StartLine::Invalid(kind) => Err(ParseError::new(kind)),
    }
}

/// Returns the end of the header section and the length of the blank-line separator.
pub(crate) fn find_head_end(data: &[u8]) -> Option<(usize, usize)> {
    let crlf = data.windows(4).position(|w| w == b"\r\n\r\n");
    let lf = data.windows(2).position(|w| w == b"\n\n");
    match (crlf, lf) {
        (Some(c), Some(l)) if l < c + 1 => Some((l, 2)),
        (Some(c), _) => Some((c, 4)),
        (None, Some(l)) => Some((l, 2)),
        (None, None) => None,
    }
}

/// Splits the header section into logical lines, joining folded continuation lines (§7.3.1).
fn unfold(head: &str) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for raw in head.split('\n') {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if raw.starts_with([' ', '\t']) && !lines.is_empty() {
            if let Some(last) = lines.last_mut() {
                last.push(' ');
                last.push_str(raw.trim_start());
            }
        } else {
            lines.push(raw.to_owned());
        }
    }
    lines
}

enum StartLine {
    Request { method: Method, uri: Option<Uri>, version_ok: bool },
    Response { status: StatusCode, reason: String },
    Invalid(ParseErrorKind),
}

fn parse_start_line(line: &str) -> StartLine {
    if let Some(rest) = line.strip_prefix("SIP/") {
        let mut it = rest.splitn(3, ' ');
        let version = it.next().unwrap_or("");
        let code = it.next().unwrap_or("");
        let reason = it.next().unwrap_or("");
        if version != "2.0" {
            return StartLine::Invalid(ParseErrorKind::UnsupportedVersion);
        }
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return StartLine::Invalid(ParseErrorKind::BadStatusCode);
        }
        let status = match code.parse().ok().and_then(StatusCode::new) {
            Some(s) => s,
            None => return StartLine::Invalid(ParseErrorKind::BadStatusCode),
        };
        return StartLine::Response { status, reason: reason.to_owned() };
    }
    // Request-Line = Method SP Request-URI SP SIP-Version: exactly single spaces.
    let parts: Vec<&str> = line.split(' ').collect();
    if parts.len() != 3 {
        return StartLine::Invalid(ParseErrorKind::BadStartLine);
    }
    let Some(method) = Method::from_token(parts[0]) else {
        return StartLine::Invalid(ParseErrorKind::BadMethod);
    };
    let version = parts[2];
    if !version.starts_with("SIP/") {
        return StartLine::Invalid(ParseErrorKind::BadStartLine);
    }
    StartLine::Request { method, uri: Uri::parse(parts[1]).ok(), version_ok: version == "SIP/2.0" }
}

fn parse_header_lines(lines: &[String]) -> Result<Headers, ParseErrorKind> {
    let mut headers = Headers::with_capacity(lines.len());
    for line in lines {
        let colon = line.find(':').ok_or(ParseErrorKind::BadHeaderLine)?;
        let name = line[..colon].trim_end_matches([' ', '\t']);
        if !crate::grammar::is_token(name) {
            return Err(ParseErrorKind::BadHeaderLine);
        }
        headers.push(HeaderName::from_wire(name), line[colon + 1..].trim());
    }
    Ok(headers)
}

/// Cuts the body per Content-Length (§18.3).
fn frame_body<'a>(headers: &Headers, rest: &'a [u8]) -> Result<&'a [u8], ParseErrorKind> {
    match content_length(headers)? {
        None => Ok(rest),
        Some(n) if n <= rest.len() => Ok(&rest[..n]),
        Some(_) => Err(ParseErrorKind::BodyTruncated),
    }
}

/// The Content-Length value, if present and well-formed.
pub(crate) fn content_length(headers: &Headers) -> Result<Option<usize>, ParseErrorKind> {
    let bad = || ParseErrorKind::BadHeader(HeaderName::ContentLength);
    let mut values = headers.get_all(&HeaderName::ContentLength);
    let Some(v) = values.next() else { return Ok(None) };
    if values.next().is_some_and(|other| other != v) {
        return Err(bad());
    }
    if v.is_empty() || v.len() > 9 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    v.parse().map(Some).map_err(|_| bad())
}

/// True when the headers needed to form a response (§8.2.6) are present and well-formed.
fn responder_headers_ok(h: &Headers) -> bool {
    matches!(h.top_via(), Ok(Some(_)))
        && matches!(h.from_header(), Ok(Some(_)))
        && matches!(h.to_header(), Ok(Some(_)))
        && h.call_id().is_some_and(|c| !c.is_empty())
        && h.count(&HeaderName::CallId) == 1
        && matches!(h.cseq(), Ok(Some(_)))
}

fn validate_common(h: &Headers) -> Result<(), ParseErrorKind> {
    use ParseErrorKind::{BadHeader, MissingHeader};
    let checks: [(HeaderName, bool, bool); 4] = [
        (HeaderName::Via, h.contains(&HeaderName::Via), h.vias().is_ok()),
        (HeaderName::From, h.contains(&HeaderName::From), h.from_header().is_ok()),
        (HeaderName::To, h.contains(&HeaderName::To), h.to_header().is_ok()),
        (HeaderName::CSeq, h.contains(&HeaderName::CSeq), h.cseq().is_ok()),
    ];
    for (name, present, ok) in checks {
        if !present {
            return Err(MissingHeader(name));
        }
        if !ok {
            return Err(BadHeader(name));
        }
    }
    match h.count(&HeaderName::CallId) {
        0 => return Err(MissingHeader(HeaderName::CallId)),
        1 if h.call_id().is_some_and(|c| !c.is_empty() && !c.contains(char::is_whitespace)) => {}
        _ => return Err(BadHeader(HeaderName::CallId)),
    }
    if let Some(mf) = h.get(&HeaderName::MaxForwards) {
        if mf.is_empty() || mf.len() > 3 || !mf.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BadHeader(HeaderName::MaxForwards));
        }
    }
    Ok(())
}

fn validate_request(req: &Request) -> Result<(), ParseErrorKind> {
    validate_common(&req.headers)?;
    let cseq = req.headers.cseq().ok().flatten().ok_or(ParseErrorKind::MissingHeader(HeaderName::CSeq))?;
    if cseq.method != req.method {
        return Err(ParseErrorKind::CSeqMethodMismatch);
    }
    Ok(())
}

fn validate_response(resp: &Response) -> Result<(), ParseErrorKind> {
    validate_common(&resp.headers)
}
