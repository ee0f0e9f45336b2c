//! Cutting SIP messages out of a byte stream (TCP, TLS): Content-Length framing (RFC 3261
//! §18.3, mandatory on streams), CRLF keep-alives (RFC 5626 §3.5.1, §4.4.1) and bounds on
//! what a peer can make the receiver buffer.
//!
//! The framer owns framing only. A well-framed message that does not parse comes out as
//! [`Frame::Invalid`]: the caller answers it per [`ParseError::verdict`] and keeps the
//! connection. A framing fault ([`StreamError`]) is fatal: nothing after it can be trusted to
//! start on a message boundary, so the connection must be closed.

use crate::message::SipMessage;
use crate::parse::{LogicalLines, ParseError, parse_content_length, parse_stream_frame};

/// Bounds on what one connection may make the framer hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    /// Longest header section (start line to blank line) accepted.
    pub max_header_bytes: usize,
    /// Longest message (header section plus Content-Length) accepted.
    pub max_message_bytes: usize,
}

impl Default for StreamLimits {
    /// 16 KiB of headers (RFC 4475's longest message has 3.5 KiB), 64 KiB per message (what a
    /// UDP datagram could carry; SIP over a stream has no reason to be larger for a PBX).
    fn default() -> StreamLimits {
        StreamLimits {
            max_header_bytes: 16 * 1024,
            max_message_bytes: crate::parse::MAX_MESSAGE_SIZE,
        }
    }
}

/// One unit read off the stream.
// A frame is moved once, to the caller; boxing the message would cost an allocation per
// message for no gain.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete message that parsed.
    Message(SipMessage),
    /// A well-framed message that does not parse; answer per its verdict and carry on.
    Invalid(ParseError),
    /// A CRLFCRLF keep-alive ping (RFC 5626 §3.5.1): answer with a single CRLF pong.
    Ping,
    /// A single CRLF: the pong answering one of our pings (or a stray CRLF between messages,
    /// which RFC 3261 §7.5 says to ignore).
    Pong,
}

/// One unit read off the stream by [`StreamFramer::next_raw`]: framed but not parsed, for a
/// receiver that parses elsewhere (the edge parses in its transaction layer, which answers
/// unparseable requests the same way for every transport).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawFrame {
    /// The bytes of one message (header section and Content-Length bytes of body).
    Message(Vec<u8>),
    /// A CRLFCRLF keep-alive ping: answer with a single CRLF pong.
    Ping,
    /// A single CRLF (a pong, or a stray CRLF to ignore).
    Pong,
}

/// A framing fault: the connection must be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// A message without Content-Length, which §18.3 makes mandatory on stream transports.
    #[error("message without Content-Length on a stream transport")]
    MissingContentLength,
    /// Content-Length not a number, negative, or given more than once (RFC 4475 §3.1.2.3, §3.3.9).
    #[error("malformed or repeated Content-Length on a stream transport")]
    BadContentLength,
    /// No blank line within [`StreamLimits::max_header_bytes`].
    #[error("header section longer than {limit} bytes")]
    HeaderTooLarge {
        /// The limit exceeded.
        limit: usize,
    },
    /// Header section plus Content-Length longer than [`StreamLimits::max_message_bytes`].
    #[error("message longer than {limit} bytes")]
    MessageTooLarge {
        /// The limit exceeded.
        limit: usize,
    },
    /// Bytes where a start line must begin (e.g. the rest of a body whose Content-Length was
    /// too short): the stream has lost its framing.
    #[error("stream lost its framing: no start line where a message must begin")]
    NotAStartLine,
    /// More bytes pushed than the buffer bound without draining frames with `next`.
    #[error("more than {limit} bytes buffered")]
    BufferFull {
        /// The buffer bound.
        limit: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Open,
    /// Failed; the error has not been returned yet.
    Failed(StreamError),
    /// Failed and reported: nothing more comes out.
    Closed,
}

/// Frames messages out of a stream. Feed it with [`push`](StreamFramer::push) after each
/// read, then call [`next`](StreamFramer::next) until it returns `None`.
#[derive(Debug, Clone)]
pub struct StreamFramer {
    limits: StreamLimits,
    buf: Vec<u8>,
    /// Bytes of `buf` already handed out as frames.
    start: usize,
    /// Bytes after `start` already searched for the end of the header section.
    scanned: usize,
    /// Length of the current frame once its header section has been read.
    frame_len: Option<usize>,
    report_lone_crlf: bool,
    state: State,
}

impl Default for StreamFramer {
    fn default() -> StreamFramer {
        StreamFramer::new()
    }
}

impl StreamFramer {
    /// A framer with [`StreamLimits::default`], for a connection a peer opened to us: a CRLF
    /// at the end of the buffered bytes is held until the next byte says whether it is a pong
    /// or the first half of a ping.
    pub fn new() -> StreamFramer {
        StreamFramer::with_limits(StreamLimits::default())
    }

    pub fn with_limits(limits: StreamLimits) -> StreamFramer {
        StreamFramer {
            limits,
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            frame_len: None,
            report_lone_crlf: false,
            state: State::Open,
        }
    }

    /// For a connection we opened (we send the pings, RFC 5626 §4.4.1): report a trailing
    /// single CRLF as a [`Frame::Pong`] at once instead of waiting for more bytes.
    pub fn outbound(mut self) -> StreamFramer {
        self.report_lone_crlf = true;
        self
    }

    /// The buffer bound: one maximal message plus one maximal read.
    pub fn buffer_limit(&self) -> usize {
        self.limits.max_message_bytes.saturating_mul(2)
    }

    /// Bytes held, not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// True once a framing fault was found: close the connection.
    pub fn is_failed(&self) -> bool {
        self.state != State::Open
    }

    /// Appends bytes read from the connection. Beyond [`buffer_limit`](Self::buffer_limit)
    /// the framer fails (reported by the next call to `next`) rather than grow.
    pub fn push(&mut self, data: &[u8]) {
        if self.state != State::Open {
            return;
        }
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let limit = self.buffer_limit();
        if self.buf.len().saturating_add(data.len()) > limit {
            self.fail(StreamError::BufferFull { limit });
            return;
        }
        self.buf.extend_from_slice(data);
    }

    /// The next frame, `None` when more bytes are needed (or after a fault was returned).
    /// A `Some(Err(_))` is returned once; the connection must then be closed.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Result<Frame, StreamError>> {
        let raw = self.next_raw()?;
        Some(raw.map(|frame| match frame {
            RawFrame::Message(bytes) => match parse_stream_frame(&bytes) {
                Ok(msg) => Frame::Message(msg),
                Err(e) => Frame::Invalid(e),
            },
            RawFrame::Ping => Frame::Ping,
            RawFrame::Pong => Frame::Pong,
        }))
    }

    /// Like [`next`](Self::next) but hands out each message's bytes unparsed.
    pub fn next_raw(&mut self) -> Option<Result<RawFrame, StreamError>> {
        match std::mem::replace(&mut self.state, State::Open) {
            State::Open => {}
            State::Failed(e) => {
                self.state = State::Closed;
                return Some(Err(e));
            }
            State::Closed => {
                self.state = State::Closed;
                return None;
            }
        }
        match self.next_frame() {
            Ok(frame) => frame.map(Ok),
            Err(e) => {
                self.state = State::Closed;
                self.buf = Vec::new();
                self.start = 0;
                Some(Err(e))
            }
        }
    }

    fn fail(&mut self, e: StreamError) {
        self.state = State::Failed(e);
        self.buf = Vec::new();
        self.start = 0;
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        self.scanned = 0;
        self.frame_len = None;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }

    fn next_frame(&mut self) -> Result<Option<RawFrame>, StreamError> {
        let data = &self.buf[self.start..];
        if data.is_empty() {
            return Ok(None);
        }
        if self.frame_len.is_none() {
            match data {
                [b'\r', b'\n', b'\r', b'\n', ..] => {
                    self.consume(4);
                    return Ok(Some(RawFrame::Ping));
                }
                // Not enough bytes to tell a pong from the first half of a ping.
                [b'\r'] | [b'\r', b'\n', b'\r'] => return Ok(None),
                [b'\r', b'\n'] if !self.report_lone_crlf => return Ok(None),
                [b'\r', b'\n', ..] => {
                    self.consume(2);
                    return Ok(Some(RawFrame::Pong));
                }
                // Anything else must be a start line; read_head checks it.
                _ => {}
            }
        }
        let frame_len = match self.frame_len {
            Some(n) => n,
            None => match self.read_head()? {
                Some(n) => n,
                None => return Ok(None),
            },
        };
        let data = &self.buf[self.start..];
        let Some(frame) = data.get(..frame_len) else {
            return Ok(None);
        };
        let frame = RawFrame::Message(frame.to_vec());
        self.consume(frame_len);
        Ok(Some(frame))
    }

    /// Reads the header section once complete: checks the start line and Content-Length and
    /// returns the frame length. `None` while incomplete.
    fn read_head(&mut self) -> Result<Option<usize>, StreamError> {
        let data = &self.buf[self.start..];
        let first_line_end = data.iter().position(|&b| b == b'\n');
        match first_line_end {
            Some(lf) => {
                if !looks_like_start_line(&data[..lf]) {
                    return Err(StreamError::NotAStartLine);
                }
            }
            None if data.len() > self.limits.max_header_bytes => {
                return Err(StreamError::HeaderTooLarge {
                    limit: self.limits.max_header_bytes,
                });
            }
            None => return Ok(None),
        }
        // Resume the search where the last call stopped (minus a separator's length), so a
        // peer trickling bytes costs linear, not quadratic, time.
        let from = self.scanned.saturating_sub(3);
        let Some((head_end, body_start)) =
            crate::parse::find_head_end(&data[from..]).map(|(h, b)| (h + from, b + from))
        else {
            if data.len() > self.limits.max_header_bytes {
                return Err(StreamError::HeaderTooLarge {
                    limit: self.limits.max_header_bytes,
                });
            }
            self.scanned = data.len();
            return Ok(None);
        };
        if head_end > self.limits.max_header_bytes {
            return Err(StreamError::HeaderTooLarge {
                limit: self.limits.max_header_bytes,
            });
        }
        let length = content_length_of(&data[..head_end])?;
        let frame_len = body_start.saturating_add(length);
        if frame_len > self.limits.max_message_bytes {
            return Err(StreamError::MessageTooLarge {
                limit: self.limits.max_message_bytes,
            });
        }
        self.frame_len = Some(frame_len);
        Ok(Some(frame_len))
    }
}

/// A Status-Line (`SIP/…`) or something shaped like a Request-Line (a token, a space, and a
/// SIP version somewhere after it). Malformed but recognisable request lines pass, so that
/// the parser can answer them with a 400; body bytes (`v=0`, `a=rtpmap:…`) do not.
fn looks_like_start_line(line: &[u8]) -> bool {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let is_sip = |s: &[u8]| s.len() >= 4 && s[..4].eq_ignore_ascii_case(b"SIP/");
    if is_sip(line) {
        return true;
    }
    let Some(sp) = line.iter().position(|&b| b == b' ') else {
        return false;
    };
    sp > 0
        && line[..sp].iter().all(|&b| crate::grammar::is_token_byte(b))
        && line[sp..].windows(4).any(is_sip)
}

/// The one Content-Length of a header section (long or compact name, folding allowed).
fn content_length_of(head: &[u8]) -> Result<usize, StreamError> {
    let mut found = None;
    for line in LogicalLines::new(head).skip(1) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii_end();
        if !(name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l")) {
            continue;
        }
        let value = std::str::from_utf8(line[colon + 1..].trim_ascii())
            .ok()
            .and_then(parse_content_length)
            .ok_or(StreamError::BadContentLength)?;
        if found.replace(value).is_some() {
            return Err(StreamError::BadContentLength);
        }
    }
    found.ok_or(StreamError::MissingContentLength)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: &[u8] = b"OPTIONS sip:bob@example.com SIP/2.0\r\n\
        Via: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bK1\r\n\
        From: <sip:alice@example.com>;tag=1\r\n\
        To: <sip:bob@example.com>\r\n\
        Call-ID: abc@192.0.2.1\r\n\
        CSeq: 1 OPTIONS\r\n\
        Max-Forwards: 70\r\n\
        Content-Length: 0\r\n\r\n";

    const MESSAGE: &[u8] = b"MESSAGE sip:bob@example.com SIP/2.0\r\n\
        v: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bK2\r\n\
        f: <sip:alice@example.com>;tag=1\r\n\
        t: <sip:bob@example.com>\r\n\
        i: def@192.0.2.1\r\n\
        CSeq: 2 MESSAGE\r\n\
        c: text/plain\r\n\
        l:\r\n 12\r\n\r\n\
        hello\r\n\r\nbob";

    const RESPONSE: &[u8] = b"SIP/2.0 200 OK\r\n\
        Via: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bK1\r\n\
        From: <sip:alice@example.com>;tag=1\r\n\
        To: <sip:bob@example.com>;tag=2\r\n\
        Call-ID: abc@192.0.2.1\r\n\
        CSeq: 1 OPTIONS\r\n\
        Content-Length: 0\r\n\r\n";

    /// A double-space Request-Line: well framed, unparseable.
    fn invalid_request() -> Vec<u8> {
        let text = String::from_utf8_lossy(OPTIONS).replacen("OPTIONS ", "OPTIONS  ", 1);
        text.into_bytes()
    }

    fn drain(f: &mut StreamFramer) -> Vec<Result<Frame, StreamError>> {
        std::iter::from_fn(|| f.next()).collect()
    }

    /// Frames of `stream` when it arrives in the given pieces.
    fn frames_in_pieces(stream: &[u8], cuts: &[usize]) -> Vec<Result<Frame, StreamError>> {
        let mut f = StreamFramer::new();
        let mut out = Vec::new();
        let mut from = 0;
        for &cut in cuts.iter().chain(std::iter::once(&stream.len())) {
            f.push(&stream[from..cut]);
            out.extend(drain(&mut f));
            from = cut;
        }
        out
    }

    fn kinds(frames: &[Result<Frame, StreamError>]) -> Vec<&'static str> {
        frames
            .iter()
            .map(|f| match f {
                Ok(Frame::Message(_)) => "message",
                Ok(Frame::Invalid(_)) => "invalid",
                Ok(Frame::Ping) => "ping",
                Ok(Frame::Pong) => "pong",
                Err(_) => "error",
            })
            .collect()
    }

    fn session() -> Vec<u8> {
        [
            OPTIONS,
            b"\r\n\r\n",
            MESSAGE,
            &invalid_request(),
            b"\r\n",
            RESPONSE,
            b"\r\n\r\n",
        ]
        .concat()
    }

    #[test]
    fn one_read_yields_every_frame_in_order() {
        let frames = frames_in_pieces(&session(), &[]);
        assert_eq!(
            kinds(&frames),
            [
                "message", "ping", "message", "invalid", "pong", "message", "ping"
            ]
        );
        let Some(Ok(Frame::Message(SipMessage::Request(req)))) = frames.get(2) else {
            panic!("third frame must be the MESSAGE")
        };
        assert_eq!(&req.body[..], b"hello\r\n\r\nbob");
    }

    #[test]
    fn every_split_point_gives_the_same_frames() {
        let stream = session();
        let whole = frames_in_pieces(&stream, &[]);
        for cut in 0..=stream.len() {
            assert_eq!(
                frames_in_pieces(&stream, &[cut]),
                whole,
                "split at byte {cut}"
            );
        }
        for cut in 0..stream.len() {
            for second in (cut..stream.len()).step_by(17) {
                assert_eq!(
                    frames_in_pieces(&stream, &[cut, second]),
                    whole,
                    "split at {cut},{second}"
                );
            }
        }
        let every_byte: Vec<usize> = (1..stream.len()).collect();
        assert_eq!(
            frames_in_pieces(&stream, &every_byte),
            whole,
            "byte by byte"
        );
    }

    #[test]
    fn a_lone_crlf_waits_unless_outbound() {
        let mut f = StreamFramer::new();
        f.push(b"\r\n");
        assert_eq!(f.next(), None);
        f.push(b"\r\n");
        assert_eq!(f.next(), Some(Ok(Frame::Ping)));
        let mut f = StreamFramer::new().outbound();
        f.push(b"\r\n");
        assert_eq!(f.next(), Some(Ok(Frame::Pong)));
    }

    #[test]
    fn missing_content_length_is_fatal() {
        let text = String::from_utf8_lossy(OPTIONS).replace("Content-Length: 0\r\n", "");
        let mut f = StreamFramer::new();
        f.push(text.as_bytes());
        assert_eq!(f.next(), Some(Err(StreamError::MissingContentLength)));
        assert_eq!(f.next(), None);
        assert!(f.is_failed());
        f.push(OPTIONS);
        assert_eq!(f.next(), None, "nothing is framed after a fault");
    }

    #[test]
    fn negative_or_repeated_content_length_is_fatal() {
        for bad in [
            "Content-Length: -5",
            "Content-Length: 0\r\nl: 0",
            "Content-Length: x",
        ] {
            let text = String::from_utf8_lossy(OPTIONS).replace("Content-Length: 0", bad);
            let mut f = StreamFramer::new();
            f.push(text.as_bytes());
            assert_eq!(f.next(), Some(Err(StreamError::BadContentLength)), "{bad}");
        }
    }

    #[test]
    fn a_too_large_content_length_waits_then_hits_the_bound() {
        let text =
            String::from_utf8_lossy(OPTIONS).replace("Content-Length: 0", "Content-Length: 1000");
        let limits = StreamLimits {
            max_header_bytes: 1024,
            max_message_bytes: 2048,
        };
        let mut f = StreamFramer::with_limits(limits);
        f.push(text.as_bytes());
        f.push(b"short body");
        assert_eq!(f.next(), None, "waits for the rest of the body");
        let huge =
            String::from_utf8_lossy(OPTIONS).replace("Content-Length: 0", "Content-Length: 5000");
        let mut f = StreamFramer::with_limits(limits);
        f.push(huge.as_bytes());
        assert_eq!(
            f.next(),
            Some(Err(StreamError::MessageTooLarge { limit: 2048 }))
        );
    }

    #[test]
    fn garbage_after_a_too_short_content_length_is_fatal() {
        let text = String::from_utf8_lossy(MESSAGE).replace("l:\r\n 12", "l: 3");
        let frames = frames_in_pieces(&[text.as_bytes(), OPTIONS].concat(), &[]);
        assert_eq!(kinds(&frames), ["message", "error"]);
        assert_eq!(frames[1], Err(StreamError::NotAStartLine));
    }

    #[test]
    fn header_and_buffer_bounds_hold() {
        let limits = StreamLimits {
            max_header_bytes: 256,
            max_message_bytes: 1024,
        };
        let mut f = StreamFramer::with_limits(limits);
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nX-Long: ");
        for _ in 0..10 {
            f.push(&[b'a'; 40]);
        }
        assert_eq!(
            f.next(),
            Some(Err(StreamError::HeaderTooLarge { limit: 256 }))
        );
        let mut f = StreamFramer::with_limits(limits);
        f.push(&[b'x'; 300]);
        assert_eq!(
            f.next(),
            Some(Err(StreamError::HeaderTooLarge { limit: 256 }))
        );
        let mut f = StreamFramer::with_limits(limits);
        for _ in 0..100 {
            f.push(OPTIONS);
        }
        assert!(f.buffered() <= f.buffer_limit());
        let frames = drain(&mut f);
        assert_eq!(
            frames.last(),
            Some(&Err(StreamError::BufferFull { limit: 2048 }))
        );
    }
}
