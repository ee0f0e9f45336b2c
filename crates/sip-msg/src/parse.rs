//! Parsing a whole message from bytes (a datagram, or one frame cut from a stream by
//! [`StreamFramer`](crate::stream::StreamFramer)), and classifying every failure into what the
//! receiver must do (RFC 3261 §7, §8.2, §18.3, §21.4; RFC 4475 verdicts).
//!
//! The parser reads the whole header section even after a fault, so that a broken request
//! can still be answered with a 400 that names the first fault; only then is the message
//! checked against the header rules every SIP element relies on (Via, From, To, Call-ID,
//! CSeq, Max-Forwards, Content-Length, Contact).

use std::borrow::Cow;

use bytes::Bytes;

use crate::header_name::HeaderName;
use crate::headers::Headers;
use crate::message::{Request, Response, SipMessage};
use crate::method::Method;
use crate::response::build_response;
use crate::status::StatusCode;
use crate::typed::{CSeq, NameAddr, Via};
use crate::uri::{Host, Uri};

/// Largest message accepted; a request above it is refused with 513 when it can be answered.
pub const MAX_MESSAGE_SIZE: usize = 65_535;

/// What went wrong, precise enough to name the fault in a 400 reason phrase.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    /// Nothing but whitespace.
    #[error("empty message")]
    Incomplete,
    /// No empty line ends the header section (§7: it is mandatory even without a body).
    #[error("no empty line after the header section")]
    MissingHeaderEnd,
    /// The first line is neither a Request-Line nor a Status-Line.
    #[error("malformed start line")]
    BadStartLine,
    /// Request-Line elements not separated by exactly one SP, or trailing whitespace
    /// (RFC 4475 §3.1.2.8-3.1.2.10).
    #[error("Request-Line elements must be separated by single spaces")]
    StartLineWhitespace,
    /// The method is not a token.
    #[error("invalid method")]
    BadMethod,
    /// The Request-URI does not parse.
    #[error("malformed Request-URI")]
    BadRequestUri,
    /// The Request-URI carries `?headers`, which §19.1.1 forbids there (RFC 4475 §3.1.2.11).
    #[error("headers not allowed in Request-URI")]
    RequestUriHeaders,
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
    /// A header is present but malformed.
    #[error("malformed {0} header")]
    BadHeader(HeaderName),
    /// A header that must appear once appears several times (RFC 4475 §3.3.8, §3.3.9).
    #[error("multiple {0} headers")]
    DuplicateHeader(HeaderName),
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

/// A failed parse: the fault and, when the message is a request whose start line could be
/// read, the partial request so that an answer can be formed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct ParseError {
    pub kind: ParseErrorKind,
    /// Present only for requests (not ACK) with a readable method and at least one Via line.
    partial_request: Option<Box<Request>>,
}

/// What a receiver does with an unparseable message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Send this response (400 naming the fault, 505, 513) back per the top Via (or, when
    /// the top Via itself is the fault, to the source address of the request).
    Respond(Box<Response>),
    /// No response can be formed (a broken response, an ACK, or a request without a
    /// readable method or any Via): drop it silently.
    Drop,
}

impl ParseError {
    pub(crate) fn new(kind: ParseErrorKind) -> ParseError {
        ParseError {
            kind,
            partial_request: None,
        }
    }

    /// Decides between answering and dropping.
    pub fn verdict(&self) -> Verdict {
        let Some(req) = &self.partial_request else {
            return Verdict::Drop;
        };
        let status = match self.kind {
            ParseErrorKind::UnsupportedVersion => StatusCode::VERSION_NOT_SUPPORTED,
            ParseErrorKind::TooLarge => StatusCode::MESSAGE_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        let mut resp = build_response(req, status, None);
        if status == StatusCode::BAD_REQUEST {
            resp.reason = format!("Bad Request ({})", self.kind);
        }
        Verdict::Respond(Box::new(resp))
    }

    /// The request as far as it could be read, when it can be answered.
    pub fn partial_request(&self) -> Option<&Request> {
        self.partial_request.as_deref()
    }
}

/// How the body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// UDP: Content-Length cuts the body, extra octets are ignored, a missing Content-Length
    /// means "to the end of the datagram" (§18.3).
    Datagram,
    /// A frame cut by the stream framer: the body is exactly the rest of the frame.
    StreamFrame,
}

/// Parses one complete message. Over UDP, bytes after Content-Length are ignored and a
/// missing Content-Length means the body runs to the end of the datagram.
pub fn parse_datagram(data: &[u8]) -> Result<SipMessage, ParseError> {
    parse_message(data, Framing::Datagram)
}

/// Parses a frame whose length the stream framer has already checked against Content-Length.
pub(crate) fn parse_stream_frame(frame: &[u8]) -> Result<SipMessage, ParseError> {
    parse_message(frame, Framing::StreamFrame)
}

fn parse_message(data: &[u8], framing: Framing) -> Result<SipMessage, ParseError> {
    // Leading CRLFs before a start line are ignored (§7.5).
    let mut start = 0;
    while data.get(start..start + 2) == Some(b"\r\n") {
        start += 2;
    }
    let data = &data[start..];
    if data.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ParseError::new(ParseErrorKind::Incomplete));
    }
    let (head, rest, mut fault) = match find_head_end(data) {
        Some((head_end, body_start)) => (&data[..head_end], &data[body_start..], None),
        None => {
            let head = data.strip_suffix(b"\r\n").unwrap_or(data);
            (
                head,
                &data[data.len()..],
                Some(ParseErrorKind::MissingHeaderEnd),
            )
        }
    };
    let mut lines = LogicalLines::new(head);
    let start_line = lines.next().unwrap_or(Cow::Borrowed(&[]));
    let start_line = parse_start_line(&start_line);

    let mut headers = Headers::with_capacity(16);
    for line in lines {
        match parse_header_line(&line) {
            Ok((name, value)) => headers.push(name, value),
            Err(kind) => {
                fault.get_or_insert(kind);
            }
        }
    }
    let mut index = HeaderIndex::default();
    index.build(&headers);

    match start_line {
        StartLine::Response { status, reason } => {
            if let Some(kind) = fault {
                return Err(ParseError::new(kind));
            }
            let body = frame_body(&headers, &index, rest, framing).map_err(ParseError::new)?;
            validate_common(&headers, &index).map_err(ParseError::new)?;
            let mut headers = headers;
            normalize_content_length(&mut headers, &index, body.len());
            Ok(SipMessage::Response(Response {
                status,
                reason: reason.to_owned(),
                headers,
                body: Bytes::copy_from_slice(body),
            }))
        }
        StartLine::Invalid { kind, method } => {
            let partial = method.map(|m| Request::new(m, placeholder_uri()));
            Err(fail(kind, partial, headers))
        }
        StartLine::Request {
            method,
            uri,
            version_ok,
        } => {
            let mut req = Request {
                method,
                uri: placeholder_uri(),
                headers,
                body: Bytes::new(),
            };
            if !version_ok {
                return Err(fail(
                    ParseErrorKind::UnsupportedVersion,
                    Some(req),
                    Headers::new(),
                ));
            }
            if let Some(kind) = fault {
                return Err(fail(kind, Some(req), Headers::new()));
            }
            req.uri = match uri {
                Ok(u) => u,
                Err(kind) => return Err(fail(kind, Some(req), Headers::new())),
            };
            if framing == Framing::Datagram && data.len() > MAX_MESSAGE_SIZE {
                return Err(fail(ParseErrorKind::TooLarge, Some(req), Headers::new()));
            }
            let body = match frame_body(&req.headers, &index, rest, framing) {
                Ok(b) => b,
                Err(kind) => return Err(fail(kind, Some(req), Headers::new())),
            };
            if let Err(kind) = validate_request(&req, &index) {
                return Err(fail(kind, Some(req), Headers::new()));
            }
            normalize_content_length(&mut req.headers, &index, body.len());
            req.body = Bytes::copy_from_slice(body);
            Ok(SipMessage::Request(req))
        }
    }
}

/// Builds the error, keeping the partial request only when it can be answered: a request
/// other than ACK (§17.1.1.3: never answered) with at least one Via line to copy.
/// `headers` is used when `partial` has none yet (the start line was unreadable).
fn fail(kind: ParseErrorKind, partial: Option<Request>, headers: Headers) -> ParseError {
    let partial_request = partial.and_then(|mut req| {
        if req.headers.is_empty() {
            req.headers = headers;
        }
        let answerable = req.method != Method::Ack && req.headers.contains(&HeaderName::Via);
        answerable.then(|| Box::new(req))
    });
    ParseError {
        kind,
        partial_request,
    }
}

fn placeholder_uri() -> Uri {
    Uri::sip(Host::Domain(String::new()))
}

/// Returns `(end of the header section, start of the body)`. Lines end in CRLF; a bare LF is
/// tolerated (robustness, as most stacks do), so the blank line may be any mix of the two.
pub(crate) fn find_head_end(data: &[u8]) -> Option<(usize, usize)> {
    let mut from = 0;
    while let Some(off) = data[from..].iter().position(|&b| b == b'\n') {
        let lf = from + off;
        let line_end = if lf > 0 && data[lf - 1] == b'\r' {
            lf - 1
        } else {
            lf
        };
        match data.get(lf + 1) {
            Some(b'\n') => return Some((line_end, lf + 2)),
            Some(b'\r') if data.get(lf + 2) == Some(&b'\n') => return Some((line_end, lf + 3)),
            _ => from = lf + 1,
        }
    }
    None
}

/// Logical lines of a header section: physical lines with continuation lines (starting with
/// SP or HTAB) joined by a single SP (§7.3.1). Borrowed unless a fold had to be joined.
pub(crate) struct LogicalLines<'a> {
    head: &'a [u8],
    pos: usize,
}

impl<'a> LogicalLines<'a> {
    pub(crate) fn new(head: &'a [u8]) -> LogicalLines<'a> {
        LogicalLines { head, pos: 0 }
    }

    fn physical(&mut self) -> &'a [u8] {
        let rest = &self.head[self.pos..];
        let (line, used) = match rest.iter().position(|&b| b == b'\n') {
            Some(lf) => (&rest[..lf], lf + 1),
            None => (rest, rest.len()),
        };
        self.pos += used;
        line.strip_suffix(b"\r").unwrap_or(line)
    }

    fn continues(&self) -> bool {
        matches!(self.head.get(self.pos), Some(b' ' | b'\t'))
    }
}

impl<'a> Iterator for LogicalLines<'a> {
    type Item = Cow<'a, [u8]>;

    fn next(&mut self) -> Option<Cow<'a, [u8]>> {
        if self.pos >= self.head.len() {
            return None;
        }
        let first = self.physical();
        if !self.continues() {
            return Some(Cow::Borrowed(first));
        }
        let mut joined = first.to_vec();
        while self.continues() {
            let cont = self.physical();
            let cont = trim_ws_start(cont);
            // The line break and the leading whitespace count as one SP.
            while joined.last().is_some_and(|&b| b == b' ' || b == b'\t') {
                joined.pop();
            }
            joined.push(b' ');
            joined.extend_from_slice(cont);
        }
        Some(Cow::Owned(joined))
    }
}

fn trim_ws_start(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    &s[n..]
}

enum StartLine<'a> {
    Request {
        method: Method,
        uri: Result<Uri, ParseErrorKind>,
        version_ok: bool,
    },
    Response {
        status: StatusCode,
        reason: &'a str,
    },
    /// `method` is set when the line looks like a request whose method could be read, so
    /// that a 400 can still be sent.
    Invalid {
        kind: ParseErrorKind,
        method: Option<Method>,
    },
}

fn parse_start_line(line: &[u8]) -> StartLine<'_> {
    let invalid = |kind| StartLine::Invalid { kind, method: None };
    let Ok(line) = std::str::from_utf8(line) else {
        return invalid(ParseErrorKind::BadStartLine);
    };
    if line
        .as_bytes()
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"))
    {
        return parse_status_line(line);
    }
    // Request-Line = Method SP Request-URI SP SIP-Version CRLF: exactly single spaces.
    let Some((method_str, rest)) = line.split_once(' ') else {
        return invalid(ParseErrorKind::BadStartLine);
    };
    let Some(method) = Method::from_token(method_str) else {
        return invalid(ParseErrorKind::BadMethod);
    };
    let bad = |kind| StartLine::Invalid {
        kind,
        method: Some(method.clone()),
    };
    let Some((uri_str, version)) = rest.split_once(' ') else {
        return bad(ParseErrorKind::BadStartLine);
    };
    if uri_str.is_empty() || version.contains([' ', '\t']) || uri_str.contains('\t') {
        return bad(
            if looks_like_sip_version(version.trim()) || version.contains("SIP/") {
                ParseErrorKind::StartLineWhitespace
            } else {
                ParseErrorKind::BadStartLine
            },
        );
    }
    if !looks_like_sip_version(version) {
        return bad(ParseErrorKind::BadStartLine);
    }
    if has_ctl(uri_str) {
        return bad(ParseErrorKind::BadRequestUri);
    }
    let uri = match Uri::parse(uri_str) {
        Ok(u) if !u.headers.is_empty() => Err(ParseErrorKind::RequestUriHeaders),
        Ok(u) => Ok(u),
        Err(_) => Err(ParseErrorKind::BadRequestUri),
    };
    StartLine::Request {
        method,
        uri,
        version_ok: version.eq_ignore_ascii_case("SIP/2.0"),
    }
}

/// `Status-Line = SIP-Version SP Status-Code SP Reason-Phrase` (the reason may be empty).
fn parse_status_line(line: &str) -> StartLine<'_> {
    let invalid = |kind| StartLine::Invalid { kind, method: None };
    let (version, rest) = line.split_once(' ').unwrap_or((line, ""));
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        return invalid(if looks_like_sip_version(version) {
            ParseErrorKind::UnsupportedVersion
        } else {
            ParseErrorKind::BadStartLine
        });
    }
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) || has_ctl(reason) {
        return invalid(ParseErrorKind::BadStatusCode);
    }
    match code.parse().ok().and_then(StatusCode::new) {
        Some(status) => StartLine::Response { status, reason },
        None => invalid(ParseErrorKind::BadStatusCode),
    }
}

/// `"SIP" "/" 1*DIGIT "." 1*DIGIT`.
fn looks_like_sip_version(s: &str) -> bool {
    let Some(v) = s
        .get(..4)
        .filter(|p| p.eq_ignore_ascii_case("SIP/"))
        .and(s.get(4..))
    else {
        return false;
    };
    let Some((major, minor)) = v.split_once('.') else {
        return false;
    };
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
    digits(major) && digits(minor)
}

/// Control characters other than HTAB, which no part of a start line or header may carry
/// unescaped.
fn has_ctl(s: &str) -> bool {
    s.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f)
}

/// `header = header-name HCOLON header-value`; the value is trimmed. Control characters are
/// allowed only as the escaped character of a quoted-pair (`\` + char, RFC 4475 §3.1.1.2).
fn parse_header_line(line: &[u8]) -> Result<(HeaderName, &str), ParseErrorKind> {
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or(ParseErrorKind::BadHeaderLine)?;
    let name = std::str::from_utf8(line[..colon].trim_ascii_end())
        .map_err(|_| ParseErrorKind::BadHeaderLine)?;
    if !crate::grammar::is_token(name) {
        return Err(ParseErrorKind::BadHeaderLine);
    }
    let name = HeaderName::from_wire(name);
    let Ok(value) = std::str::from_utf8(&line[colon + 1..]) else {
        return Err(ParseErrorKind::BadHeader(name));
    };
    let value = value.trim_matches([' ', '\t']);
    let bytes = value.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'\t' => {}
            b if b < 0x20 || b == 0x7f => return Err(ParseErrorKind::BadHeader(name)),
            _ => {}
        }
        i += 1;
    }
    Ok((name, value))
}

/// Positions of the headers the parser checks, found in one pass.
#[derive(Default)]
struct HeaderIndex {
    via: Count,
    from: Count,
    to: Count,
    call_id: Count,
    cseq: Count,
    max_forwards: Count,
    content_length: Count,
    has_contact: bool,
}

/// How many lines of one header, and the first one's position.
#[derive(Default, Clone, Copy)]
struct Count {
    first: usize,
    n: usize,
}

impl Count {
    fn see(&mut self, i: usize) {
        if self.n == 0 {
            self.first = i;
        }
        self.n += 1;
    }
}

impl HeaderIndex {
    fn build(&mut self, headers: &Headers) {
        for (i, h) in headers.iter().enumerate() {
            match h.name {
                HeaderName::Via => self.via.see(i),
                HeaderName::From => self.from.see(i),
                HeaderName::To => self.to.see(i),
                HeaderName::CallId => self.call_id.see(i),
                HeaderName::CSeq => self.cseq.see(i),
                HeaderName::MaxForwards => self.max_forwards.see(i),
                HeaderName::ContentLength => self.content_length.see(i),
                HeaderName::Contact => self.has_contact = true,
                _ => {}
            }
        }
    }
}

/// The value of a header that must appear exactly once (or at most once when not required).
fn single(
    headers: &Headers,
    count: Count,
    name: HeaderName,
    required: bool,
) -> Result<Option<&str>, ParseErrorKind> {
    match count.n {
        0 if required => Err(ParseErrorKind::MissingHeader(name)),
        0 => Ok(None),
        1 => Ok(headers.get_index(count.first).map(|h| h.value.as_str())),
        _ => Err(ParseErrorKind::DuplicateHeader(name)),
    }
}

/// Cuts the body per Content-Length (§18.3).
fn frame_body<'a>(
    headers: &Headers,
    index: &HeaderIndex,
    rest: &'a [u8],
    framing: Framing,
) -> Result<&'a [u8], ParseErrorKind> {
    let value = single(
        headers,
        index.content_length,
        HeaderName::ContentLength,
        false,
    )?;
    let Some(value) = value else { return Ok(rest) };
    let n =
        parse_content_length(value).ok_or(ParseErrorKind::BadHeader(HeaderName::ContentLength))?;
    match rest.get(..n) {
        Some(body) if framing == Framing::Datagram || body.len() == rest.len() => Ok(body),
        _ => Err(ParseErrorKind::BodyTruncated),
    }
}

/// Makes the stored Content-Length say exactly the body length (`0150` becomes `150`; a
/// datagram without one gets one at the end), so that a parsed message prints back to bytes
/// that parse to the same message.
fn normalize_content_length(headers: &mut Headers, index: &HeaderIndex, body_len: usize) {
    if index.content_length.n == 0 {
        headers.push(HeaderName::ContentLength, body_len.to_string());
    } else if let Some(h) = headers.get_mut(index.content_length.first)
        && (parse_content_length(&h.value) != Some(body_len)
            || (h.value.starts_with('0') && h.value.len() > 1))
    {
        h.value = body_len.to_string();
    }
}

/// `Content-Length = 1*DIGIT`, bounded so that it fits any message size we accept.
pub(crate) fn parse_content_length(v: &str) -> Option<usize> {
    if v.is_empty() || v.len() > 9 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

fn validate_common(h: &Headers, index: &HeaderIndex) -> Result<Option<CSeq>, ParseErrorKind> {
    use ParseErrorKind::{BadHeader, MissingHeader};
    if index.via.n == 0 {
        return Err(MissingHeader(HeaderName::Via));
    }
    for line in h.get_all(&HeaderName::Via) {
        let values = crate::split::split_list(line).ok_or(BadHeader(HeaderName::Via))?;
        if values.into_iter().any(|v| Via::parse(v).is_none()) {
            return Err(BadHeader(HeaderName::Via));
        }
    }
    let from = single(h, index.from, HeaderName::From, true)?.unwrap_or_default();
    if NameAddr::parse(from).is_none() {
        return Err(BadHeader(HeaderName::From));
    }
    let to = single(h, index.to, HeaderName::To, true)?.unwrap_or_default();
    if NameAddr::parse(to).is_none() {
        return Err(BadHeader(HeaderName::To));
    }
    let call_id = single(h, index.call_id, HeaderName::CallId, true)?.unwrap_or_default();
    if call_id.is_empty() || call_id.contains([' ', '\t']) {
        return Err(BadHeader(HeaderName::CallId));
    }
    let cseq = single(h, index.cseq, HeaderName::CSeq, true)?.unwrap_or_default();
    let cseq = CSeq::parse(cseq).ok_or(BadHeader(HeaderName::CSeq))?;
    if let Some(mf) = single(h, index.max_forwards, HeaderName::MaxForwards, false)?
        && crate::typed::parse_u32(mf).is_none()
    {
        return Err(BadHeader(HeaderName::MaxForwards));
    }
    if index.has_contact && h.contacts().is_err() {
        return Err(BadHeader(HeaderName::Contact));
    }
    Ok(Some(cseq))
}

fn validate_request(req: &Request, index: &HeaderIndex) -> Result<(), ParseErrorKind> {
    let cseq = validate_common(&req.headers, index)?;
    if cseq.is_some_and(|c| c.method != req.method) {
        return Err(ParseErrorKind::CSeqMethodMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: &str = "OPTIONS sip:bob@example.com SIP/2.0\r\n\
        Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
        From: <sip:alice@example.com>;tag=1\r\n\
        To: <sip:bob@example.com>\r\n\
        Call-ID: abc@192.0.2.1\r\n\
        CSeq: 1 OPTIONS\r\n\
        Max-Forwards: 70\r\n\
        Content-Length: 0\r\n\r\n";

    fn kind(data: &str) -> ParseErrorKind {
        parse_datagram(data.as_bytes()).expect_err("must fail").kind
    }

    #[test]
    fn head_end_accepts_crlf_and_bare_lf() {
        assert_eq!(find_head_end(b"A\r\nB\r\n\r\nbody"), Some((4, 8)));
        assert_eq!(find_head_end(b"A\nB\n\nbody"), Some((3, 5)));
        assert_eq!(find_head_end(b"A\r\nB\r\n\nbody"), Some((4, 7)));
        assert_eq!(find_head_end(b"A\r\nB\r\n"), None);
    }

    #[test]
    fn folded_lines_join_with_one_space() {
        let lines: Vec<_> = LogicalLines::new(b"A: 1\r\n  2 \r\n\t3\r\nB: 4").collect();
        assert_eq!(
            lines,
            vec![Cow::Borrowed(&b"A: 1 2 3"[..]), Cow::Borrowed(&b"B: 4"[..])]
        );
    }

    #[test]
    fn a_plain_request_parses() {
        let SipMessage::Request(req) = parse_datagram(OPTIONS.as_bytes()).unwrap() else {
            panic!("not a request")
        };
        assert_eq!(req.method, Method::Options);
        assert_eq!(req.headers.len(), 7);
    }

    #[test]
    fn request_line_whitespace_is_a_fault() {
        let double = OPTIONS.replacen("OPTIONS sip", "OPTIONS  sip", 1);
        assert_eq!(kind(&double), ParseErrorKind::StartLineWhitespace);
        let trailing = OPTIONS.replacen("SIP/2.0\r\n", "SIP/2.0 \r\n", 1);
        assert_eq!(kind(&trailing), ParseErrorKind::StartLineWhitespace);
    }

    #[test]
    fn duplicate_single_headers_are_named() {
        let dup = OPTIONS.replacen(
            "CSeq: 1 OPTIONS\r\n",
            "CSeq: 1 OPTIONS\r\nCSeq: 2 OPTIONS\r\n",
            1,
        );
        assert_eq!(
            kind(&dup),
            ParseErrorKind::DuplicateHeader(HeaderName::CSeq)
        );
        let dup = OPTIONS.replacen("Content-Length: 0", "Content-Length: 0\r\nl: 0", 1);
        assert_eq!(
            kind(&dup),
            ParseErrorKind::DuplicateHeader(HeaderName::ContentLength)
        );
    }

    #[test]
    fn ack_and_responses_are_never_answered() {
        let ack = OPTIONS
            .replace("OPTIONS", "ACK")
            .replacen("Call-ID", "X-Broken", 1);
        assert_eq!(
            parse_datagram(ack.as_bytes()).unwrap_err().verdict(),
            Verdict::Drop
        );
        let resp = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n";
        assert_eq!(
            parse_datagram(resp.as_bytes()).unwrap_err().verdict(),
            Verdict::Drop
        );
    }

    #[test]
    fn a_broken_request_is_answered_with_its_fault() {
        let bad = OPTIONS.replacen("Call-ID: abc@192.0.2.1\r\n", "", 1);
        let Verdict::Respond(resp) = parse_datagram(bad.as_bytes()).unwrap_err().verdict() else {
            panic!("expected a response")
        };
        assert_eq!(resp.status, StatusCode::BAD_REQUEST);
        assert_eq!(resp.reason, "Bad Request (missing Call-ID header)");
        assert_eq!(resp.headers.count(&HeaderName::Via), 1);
    }

    #[test]
    fn a_multibyte_character_after_sip_is_not_sliced() {
        // Found by the parse_datagram fuzz target: "SIP" followed by a 2-byte character.
        let data = "SIPно 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n";
        assert_eq!(kind(data), ParseErrorKind::BadMethod);
    }

    #[test]
    fn raw_control_characters_are_refused_but_quoted_pairs_allowed() {
        let nul = OPTIONS.replacen("To: <sip", "To: \"a\0b\" <sip", 1);
        assert_eq!(kind(&nul), ParseErrorKind::BadHeader(HeaderName::To));
        let escaped = OPTIONS.replacen("To: <sip", "To: \"a\\\0b\" <sip", 1);
        assert!(parse_datagram(escaped.as_bytes()).is_ok());
    }
}
