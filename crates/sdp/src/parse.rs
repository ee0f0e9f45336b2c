//! Reading a session description from a message body, and naming the first fault precisely
//! enough for call-control to answer it (400 for garbage, 488 with a Warning for a
//! description that is well-formed but unusable).
//!
//! Tolerated: LF-only line ends, trailing whitespace, empty lines, session-level lines out of
//! the RFC's order. Rejected: anything not `x=…`, unknown line types (RFC 8866 §5 lets a
//! parser reject them, and a PBX has no use for them), `v=` other than 0 or not first, a
//! missing `o=`/`s=`/`t=`, malformed numbers, ports above 65535, and an active media section
//! with no `c=` at either level.

use crate::model::{
    Attribute, Bandwidth, Connection, MediaDescription, Origin, SessionDescription, Timing,
};

/// What is wrong with a description.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    /// Nothing but whitespace.
    #[error("empty session description")]
    Empty,
    /// A line that is not valid UTF-8.
    #[error("line is not UTF-8")]
    NotUtf8,
    /// A line not of the form `<letter>=<value>`.
    #[error("line is not of the form x=value")]
    NotTypeValue,
    /// A line type this parser does not know.
    #[error("unknown line type {0}=")]
    UnknownType(char),
    /// The first line is not `v=`.
    #[error("the description does not start with v=")]
    VersionNotFirst,
    /// `v=` other than 0.
    #[error("unsupported SDP version {0:?}")]
    UnsupportedVersion(String),
    /// A mandatory line is absent.
    #[error("missing {0}= line")]
    Missing(char),
    /// A line that may appear once appears again at the same level.
    #[error("duplicate {0}= line")]
    Duplicate(char),
    /// A line where it may not be: a session-only line in a media section, `r=` before any `t=`.
    #[error("{0}= line not allowed here")]
    Misplaced(char),
    /// A field is missing or does not parse.
    #[error("{line_type}= line: invalid or missing {field}")]
    BadField {
        line_type: char,
        /// The field's name in the RFC's grammar (`sess-version`, `port`, `proto`, …).
        field: &'static str,
    },
    /// An `m=` port above 65535.
    #[error("m= line: port {0} out of range")]
    PortOutOfRange(u64),
    /// A media section with a non-zero port and no `c=` in it or at session level.
    #[error("media section {media} has no c= line and the session has none")]
    MissingConnection {
        /// 1-based index of the media section.
        media: usize,
    },
}

/// A description that could not be read: the fault and the 1-based line it was found on
/// (for a missing line, the line after the last one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SDP line {line}: {kind}")]
pub struct ParseError {
    pub line: usize,
    pub kind: ParseErrorKind,
}

/// How a request carrying an unreadable description is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// 400: the body is not SDP as the grammar defines it.
    BadRequest,
    /// 488 with a Warning: SDP, but not one this PBX can take.
    NotAcceptableHere,
}

impl Rejection {
    pub fn status_code(self) -> u16 {
        match self {
            Rejection::BadRequest => 400,
            Rejection::NotAcceptableHere => 488,
        }
    }
}

impl ParseError {
    fn new(line: usize, kind: ParseErrorKind) -> ParseError {
        ParseError { line, kind }
    }

    fn field(line: usize, line_type: char, field: &'static str) -> ParseError {
        ParseError::new(line, ParseErrorKind::BadField { line_type, field })
    }

    /// Which answer the fault calls for.
    pub fn rejection(&self) -> Rejection {
        match self.kind {
            ParseErrorKind::UnsupportedVersion(_) | ParseErrorKind::MissingConnection { .. } => {
                Rejection::NotAcceptableHere
            }
            _ => Rejection::BadRequest,
        }
    }

    /// The RFC 3261 §20.43 warning code for a Warning header (307: a session description
    /// parameter not understood; 399 otherwise).
    pub fn warning_code(&self) -> u16 {
        match self.kind {
            ParseErrorKind::UnsupportedVersion(_) | ParseErrorKind::UnknownType(_) => 307,
            _ => 399,
        }
    }
}

/// Where the parser is.
enum Section {
    Session,
    Media,
}

/// Parses a session description (a message body).
pub fn parse(body: &[u8]) -> Result<SessionDescription, ParseError> {
    let mut lines = body
        .split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, l)| (i + 1, trim_end(l)))
        .filter(|(_, l)| !l.is_empty());

    // v= first.
    let Some((first_no, first)) = lines.next() else {
        return Err(ParseError::new(1, ParseErrorKind::Empty));
    };
    let (t, value) = split_line(first_no, first)?;
    if t != 'v' {
        return Err(ParseError::new(first_no, ParseErrorKind::VersionNotFirst));
    }
    if value != "0" {
        return Err(ParseError::new(
            first_no,
            ParseErrorKind::UnsupportedVersion(value.to_owned()),
        ));
    }

    let mut origin = None;
    let mut session_name = None;
    let mut sdp = SessionDescription::new(placeholder_origin(), None);
    sdp.timing.clear();
    let mut section = Section::Session;
    // Line numbers of each m= line, for the c= check.
    let mut media_lines = Vec::new();
    let mut last_line = first_no;

    for (no, raw) in lines {
        last_line = no;
        let (t, value) = split_line(no, raw)?;
        match section {
            Section::Session => match t {
                'v' => return Err(ParseError::new(no, ParseErrorKind::Duplicate('v'))),
                'o' => {
                    if origin.is_some() {
                        return Err(ParseError::new(no, ParseErrorKind::Duplicate('o')));
                    }
                    origin = Some(parse_origin(no, value)?);
                }
                's' => {
                    if session_name.is_some() {
                        return Err(ParseError::new(no, ParseErrorKind::Duplicate('s')));
                    }
                    session_name = Some(value.to_owned());
                }
                'i' => set_once(&mut sdp.information, no, 'i', value)?,
                'u' => set_once(&mut sdp.uri, no, 'u', value)?,
                'e' => sdp.emails.push(value.to_owned()),
                'p' => sdp.phones.push(value.to_owned()),
                'c' => {
                    if sdp.connection.is_some() {
                        return Err(ParseError::new(no, ParseErrorKind::Duplicate('c')));
                    }
                    sdp.connection = Some(parse_connection(no, value)?);
                }
                'b' => sdp.bandwidths.push(parse_bandwidth(no, value)?),
                't' => sdp.timing.push(parse_timing(no, value)?),
                'r' => match sdp.timing.last_mut() {
                    Some(t) => t.repeats.push(value.to_owned()),
                    None => return Err(ParseError::new(no, ParseErrorKind::Misplaced('r'))),
                },
                'z' => set_once(&mut sdp.time_zones, no, 'z', value)?,
                'k' => set_once(&mut sdp.encryption_key, no, 'k', value)?,
                'a' => sdp.attributes.push(parse_attribute(no, value)?),
                'm' => {
                    sdp.media.push(parse_media(no, value)?);
                    media_lines.push(no);
                    section = Section::Media;
                }
                other => return Err(ParseError::new(no, ParseErrorKind::UnknownType(other))),
            },
            Section::Media => {
                if t == 'm' {
                    sdp.media.push(parse_media(no, value)?);
                    media_lines.push(no);
                    continue;
                }
                let Some(media) = sdp.media.last_mut() else {
                    return Err(ParseError::new(no, ParseErrorKind::Misplaced(t)));
                };
                match t {
                    'i' => set_once(&mut media.information, no, 'i', value)?,
                    'c' => {
                        if media.connection.is_some() {
                            return Err(ParseError::new(no, ParseErrorKind::Duplicate('c')));
                        }
                        media.connection = Some(parse_connection(no, value)?);
                    }
                    'b' => media.bandwidths.push(parse_bandwidth(no, value)?),
                    'k' => set_once(&mut media.encryption_key, no, 'k', value)?,
                    'a' => media.attributes.push(parse_attribute(no, value)?),
                    'v' | 'o' | 's' | 'u' | 'e' | 'p' | 't' | 'r' | 'z' => {
                        return Err(ParseError::new(no, ParseErrorKind::Misplaced(t)));
                    }
                    other => return Err(ParseError::new(no, ParseErrorKind::UnknownType(other))),
                }
            }
        }
    }

    let end = last_line + 1;
    sdp.origin = origin.ok_or(ParseError::new(end, ParseErrorKind::Missing('o')))?;
    sdp.session_name = session_name.ok_or(ParseError::new(end, ParseErrorKind::Missing('s')))?;
    if sdp.timing.is_empty() {
        return Err(ParseError::new(end, ParseErrorKind::Missing('t')));
    }
    if sdp.connection.is_none() {
        for (i, (media, no)) in sdp.media.iter().zip(&media_lines).enumerate() {
            if media.port != 0 && media.connection.is_none() {
                return Err(ParseError::new(
                    *no,
                    ParseErrorKind::MissingConnection { media: i + 1 },
                ));
            }
        }
    }
    Ok(sdp)
}

fn placeholder_origin() -> Origin {
    Origin {
        username: String::new(),
        session_id: String::new(),
        session_version: 0,
        nettype: String::new(),
        addrtype: String::new(),
        address: String::new(),
    }
}

fn trim_end(line: &[u8]) -> &[u8] {
    let end = line
        .iter()
        .rposition(|b| !matches!(b, b'\r' | b' ' | b'\t'))
        .map_or(0, |p| p + 1);
    &line[..end]
}

/// Splits `x=value`.
fn split_line(no: usize, line: &[u8]) -> Result<(char, &str), ParseError> {
    let line =
        std::str::from_utf8(line).map_err(|_| ParseError::new(no, ParseErrorKind::NotUtf8))?;
    let bytes = line.as_bytes();
    match bytes {
        [t, b'=', ..] if t.is_ascii_alphabetic() => Ok((char::from(*t), &line[2..])),
        _ => Err(ParseError::new(no, ParseErrorKind::NotTypeValue)),
    }
}

fn set_once(slot: &mut Option<String>, no: usize, t: char, value: &str) -> Result<(), ParseError> {
    if slot.is_some() {
        return Err(ParseError::new(no, ParseErrorKind::Duplicate(t)));
    }
    *slot = Some(value.to_owned());
    Ok(())
}

/// A field of a space-separated line, or the error naming it.
fn next_field<'a>(
    fields: &mut impl Iterator<Item = &'a str>,
    no: usize,
    t: char,
    name: &'static str,
) -> Result<&'a str, ParseError> {
    fields.next().ok_or(ParseError::field(no, t, name))
}

fn number(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn no_more<'a>(
    mut fields: impl Iterator<Item = &'a str>,
    no: usize,
    t: char,
) -> Result<(), ParseError> {
    match fields.next() {
        None => Ok(()),
        Some(_) => Err(ParseError::field(no, t, "end of line (extra fields)")),
    }
}

fn parse_origin(no: usize, value: &str) -> Result<Origin, ParseError> {
    let mut f = value.split_ascii_whitespace();
    let username = next_field(&mut f, no, 'o', "username")?.to_owned();
    // Numeric by the RFC, but any token is taken: agents exist that send otherwise.
    let session_id = next_field(&mut f, no, 'o', "sess-id")?;
    let session_version = number(next_field(&mut f, no, 'o', "sess-version")?)
        .ok_or(ParseError::field(no, 'o', "sess-version"))?;
    let nettype = next_field(&mut f, no, 'o', "nettype")?.to_owned();
    let addrtype = next_field(&mut f, no, 'o', "addrtype")?.to_owned();
    let address = next_field(&mut f, no, 'o', "unicast-address")?.to_owned();
    no_more(f, no, 'o')?;
    Ok(Origin {
        username,
        session_id: session_id.to_owned(),
        session_version,
        nettype,
        addrtype,
        address,
    })
}

fn parse_connection(no: usize, value: &str) -> Result<Connection, ParseError> {
    let mut f = value.split_ascii_whitespace();
    let nettype = next_field(&mut f, no, 'c', "nettype")?.to_owned();
    let addrtype = next_field(&mut f, no, 'c', "addrtype")?.to_owned();
    let address = next_field(&mut f, no, 'c', "connection-address")?.to_owned();
    no_more(f, no, 'c')?;
    Ok(Connection {
        nettype,
        addrtype,
        address,
    })
}

fn parse_bandwidth(no: usize, value: &str) -> Result<Bandwidth, ParseError> {
    let (kind, bw) = value
        .split_once(':')
        .ok_or(ParseError::field(no, 'b', "bwtype"))?;
    if kind.is_empty() || kind.contains(char::is_whitespace) {
        return Err(ParseError::field(no, 'b', "bwtype"));
    }
    let value = number(bw).ok_or(ParseError::field(no, 'b', "bandwidth"))?;
    Ok(Bandwidth {
        kind: kind.to_owned(),
        value,
    })
}

fn parse_timing(no: usize, value: &str) -> Result<Timing, ParseError> {
    let mut f = value.split_ascii_whitespace();
    let start = number(next_field(&mut f, no, 't', "start-time")?).ok_or(ParseError::field(
        no,
        't',
        "start-time",
    ))?;
    let stop = number(next_field(&mut f, no, 't', "stop-time")?).ok_or(ParseError::field(
        no,
        't',
        "stop-time",
    ))?;
    no_more(f, no, 't')?;
    Ok(Timing {
        start,
        stop,
        repeats: Vec::new(),
    })
}

fn parse_attribute(no: usize, value: &str) -> Result<Attribute, ParseError> {
    let (name, value) = match value.split_once(':') {
        Some((n, v)) => (n, Some(v.to_owned())),
        None => (value, None),
    };
    if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(ParseError::field(no, 'a', "att-field"));
    }
    Ok(Attribute {
        name: name.to_owned(),
        value,
    })
}

fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'/' | b':'))
}

fn parse_media(no: usize, value: &str) -> Result<MediaDescription, ParseError> {
    let mut f = value.split_ascii_whitespace();
    let media = next_field(&mut f, no, 'm', "media")?;
    if !is_token(media) {
        return Err(ParseError::field(no, 'm', "media"));
    }
    let ports = next_field(&mut f, no, 'm', "port")?;
    let (port, count) = match ports.split_once('/') {
        Some((p, c)) => (p, Some(c)),
        None => (ports, None),
    };
    let port = number(port).ok_or(ParseError::field(no, 'm', "port"))?;
    let port = u16::try_from(port)
        .map_err(|_| ParseError::new(no, ParseErrorKind::PortOutOfRange(port)))?;
    let port_count = match count {
        None => None,
        Some(c) => Some(
            number(c)
                .and_then(|c| u16::try_from(c).ok())
                .filter(|&c| c > 0)
                .ok_or(ParseError::field(no, 'm', "number of ports"))?,
        ),
    };
    let proto = next_field(&mut f, no, 'm', "proto")?;
    if proto.is_empty() || proto.split('/').any(|p| !is_token(p)) {
        return Err(ParseError::field(no, 'm', "proto"));
    }
    let formats: Vec<String> = f.map(str::to_owned).collect();
    // RFC 8866 requires at least one format; a rejected stream without one is tolerated.
    if formats.is_empty() && port != 0 {
        return Err(ParseError::field(no, 'm', "fmt"));
    }
    let mut description = MediaDescription::new(media, port, proto, formats);
    description.port_count = port_count;
    if description.is_rtp() && description.formats.iter().any(|f| !is_payload_type(f)) {
        return Err(ParseError::field(no, 'm', "fmt (RTP payload type)"));
    }
    Ok(description)
}

/// An RTP payload type: 0–127.
fn is_payload_type(text: &str) -> bool {
    number(text).is_some_and(|n| n <= 127)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::model::Direction;

    const MINIMAL: &str = "v=0\r\no=- 1 2 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n";

    fn with(extra: &str) -> Result<SessionDescription, ParseError> {
        parse(format!("{MINIMAL}{extra}").as_bytes())
    }

    fn fault(text: &str) -> (usize, ParseErrorKind) {
        let e = parse(text.as_bytes()).unwrap_err();
        (e.line, e.kind)
    }

    #[test]
    fn minimal_description() {
        let sdp = parse(MINIMAL.as_bytes()).unwrap();
        assert_eq!(sdp.origin.username, "-");
        assert_eq!(sdp.origin.session_id, "1");
        assert_eq!(sdp.origin.session_version, 2);
        assert_eq!(sdp.origin.address, "192.0.2.1");
        assert_eq!(sdp.session_name, "-");
        assert_eq!(sdp.timing.len(), 1);
        assert!(sdp.media.is_empty());
        assert_eq!(sdp.to_string(), MINIMAL);
    }

    #[test]
    fn version_line() {
        assert_eq!(
            fault("v=1\r\n").1,
            ParseErrorKind::UnsupportedVersion("1".into())
        );
        assert_eq!(
            fault("o=- 1 2 IN IP4 h\r\nv=0\r\n"),
            (1, ParseErrorKind::VersionNotFirst)
        );
        assert_eq!(
            fault(&format!("{MINIMAL}v=0\r\n")),
            (5, ParseErrorKind::Duplicate('v'))
        );
        assert_eq!(fault("\r\n \r\n"), (1, ParseErrorKind::Empty));
    }

    #[test]
    fn origin_line() {
        let bad = |o: &str| fault(&format!("v=0\r\no={o}\r\ns=-\r\nt=0 0\r\n"));
        assert_eq!(
            bad("- 1 x IN IP4 h"),
            (
                2,
                ParseErrorKind::BadField {
                    line_type: 'o',
                    field: "sess-version"
                }
            )
        );
        assert_eq!(
            bad("- 1 2 IN IP4"),
            (
                2,
                ParseErrorKind::BadField {
                    line_type: 'o',
                    field: "unicast-address"
                }
            )
        );
        assert_eq!(
            bad("- 1 2 IN IP4 h extra"),
            (
                2,
                ParseErrorKind::BadField {
                    line_type: 'o',
                    field: "end of line (extra fields)"
                }
            )
        );
        assert_eq!(
            bad("- 1 18446744073709551616 IN IP4 h"),
            (
                2,
                ParseErrorKind::BadField {
                    line_type: 'o',
                    field: "sess-version"
                }
            )
        );
        // A session id longer than 64 bits is taken as text.
        let sdp = parse(b"v=0\r\no=alice 123456789012345678901234 18446744073709551615 IN IP6 ::1\r\ns=x\r\nt=0 0\r\n").unwrap();
        assert_eq!(sdp.origin.session_id, "123456789012345678901234");
        assert_eq!(sdp.origin.session_version, u64::MAX);
        assert_eq!(
            fault("v=0\r\ns=-\r\nt=0 0\r\n"),
            (4, ParseErrorKind::Missing('o'))
        );
    }

    #[test]
    fn session_name_and_text_lines() {
        let sdp = with("").unwrap();
        assert_eq!(sdp.session_name, "-");
        assert_eq!(
            fault("v=0\r\no=- 1 2 IN IP4 h\r\nt=0 0\r\n").1,
            ParseErrorKind::Missing('s')
        );
        let sdp = parse(b"v=0\no=- 1 2 IN IP4 h\ns=A call\ni=About it\nu=http://example.com/x\ne=a@example.com (A)\ne=b@example.com\np=+1 555 0100\nt=0 0\n").unwrap();
        assert_eq!(sdp.session_name, "A call");
        assert_eq!(sdp.information.as_deref(), Some("About it"));
        assert_eq!(sdp.uri.as_deref(), Some("http://example.com/x"));
        assert_eq!(sdp.emails.len(), 2);
        assert_eq!(sdp.phones, ["+1 555 0100"]);
        assert_eq!(
            with("i=a\r\ni=b\r\n").unwrap_err().kind,
            ParseErrorKind::Duplicate('i')
        );
    }

    #[test]
    fn connection_line() {
        let sdp = with("c=IN IP4 224.2.36.42/127\r\n").unwrap();
        let c = sdp.connection.unwrap();
        assert_eq!(c.address, "224.2.36.42/127");
        assert_eq!(c.ip(), Some("224.2.36.42".parse().unwrap()));
        assert_eq!(
            with("c=IN IP4\r\n").unwrap_err(),
            ParseError {
                line: 5,
                kind: ParseErrorKind::BadField {
                    line_type: 'c',
                    field: "connection-address"
                }
            }
        );
        assert_eq!(
            with("c=IN IP4 a\r\nc=IN IP4 b\r\n").unwrap_err().kind,
            ParseErrorKind::Duplicate('c')
        );
    }

    #[test]
    fn bandwidth_line() {
        let sdp = with("b=AS:64\r\nb=TIAS:64000\r\n").unwrap();
        assert_eq!(sdp.bandwidths[1].kind, "TIAS");
        assert_eq!(sdp.bandwidths[1].value, 64000);
        assert_eq!(
            with("b=AS64\r\n").unwrap_err().kind,
            ParseErrorKind::BadField {
                line_type: 'b',
                field: "bwtype"
            }
        );
        assert_eq!(
            with("b=AS:-1\r\n").unwrap_err().kind,
            ParseErrorKind::BadField {
                line_type: 'b',
                field: "bandwidth"
            }
        );
    }

    #[test]
    fn timing_repeat_zone_key_lines() {
        let sdp = parse(b"v=0\r\no=- 1 2 IN IP4 h\r\ns=-\r\nt=2873397496 2873404696\r\nr=7d 1h 0 25h\r\nt=0 0\r\nz=2882844526 -1h 2898848070 0\r\nk=prompt\r\n").unwrap();
        assert_eq!(sdp.timing.len(), 2);
        assert_eq!(sdp.timing[0].start, 2873397496);
        assert_eq!(sdp.timing[0].repeats, ["7d 1h 0 25h"]);
        assert!(sdp.timing[1].repeats.is_empty());
        assert_eq!(
            sdp.time_zones.as_deref(),
            Some("2882844526 -1h 2898848070 0")
        );
        assert_eq!(sdp.encryption_key.as_deref(), Some("prompt"));
        assert_eq!(
            fault("v=0\r\no=- 1 2 IN IP4 h\r\ns=-\r\nr=7d 1h 0\r\nt=0 0\r\n"),
            (4, ParseErrorKind::Misplaced('r'))
        );
        assert_eq!(
            fault("v=0\r\no=- 1 2 IN IP4 h\r\ns=-\r\nt=now 0\r\n"),
            (
                4,
                ParseErrorKind::BadField {
                    line_type: 't',
                    field: "start-time"
                }
            )
        );
        assert_eq!(
            fault("v=0\r\no=- 1 2 IN IP4 h\r\ns=-\r\n"),
            (4, ParseErrorKind::Missing('t'))
        );
    }

    #[test]
    fn attribute_lines() {
        let sdp = with("a=recvonly\r\na=tool:x y:z\r\na=empty:\r\n").unwrap();
        assert_eq!(sdp.attributes.len(), 3);
        assert_eq!(sdp.attributes[1].name, "tool");
        assert_eq!(sdp.attributes[1].value.as_deref(), Some("x y:z"));
        assert_eq!(sdp.attributes[2].value.as_deref(), Some(""));
        assert_eq!(sdp.direction(), Direction::RecvOnly);
        assert_eq!(
            with("a=\r\n").unwrap_err().kind,
            ParseErrorKind::BadField {
                line_type: 'a',
                field: "att-field"
            }
        );
        assert_eq!(
            with("a=two words\r\n").unwrap_err().kind,
            ParseErrorKind::BadField {
                line_type: 'a',
                field: "att-field"
            }
        );
    }

    #[test]
    fn media_line() {
        let sdp = with("c=IN IP4 h\r\nm=audio 49170/2 RTP/AVP 0 8 96\r\nm=image 0 udptl t38\r\n")
            .unwrap();
        let m = &sdp.media[0];
        assert_eq!(
            (m.media.as_str(), m.port, m.port_count),
            ("audio", 49170, Some(2))
        );
        assert_eq!(m.proto, "RTP/AVP");
        assert_eq!(m.formats, ["0", "8", "96"]);
        assert_eq!(sdp.media[1].formats, ["t38"]);
        let bad = |m: &str| with(&format!("c=IN IP4 h\r\nm={m}\r\n")).unwrap_err();
        assert_eq!(
            bad("audio 65536 RTP/AVP 0").kind,
            ParseErrorKind::PortOutOfRange(65536)
        );
        assert_eq!(bad("audio 65536 RTP/AVP 0").line, 6);
        assert_eq!(
            bad("audio x RTP/AVP 0").kind,
            ParseErrorKind::BadField {
                line_type: 'm',
                field: "port"
            }
        );
        assert_eq!(
            bad("audio 1/0 RTP/AVP 0").kind,
            ParseErrorKind::BadField {
                line_type: 'm',
                field: "number of ports"
            }
        );
        assert_eq!(
            bad("audio 1").kind,
            ParseErrorKind::BadField {
                line_type: 'm',
                field: "proto"
            }
        );
        assert_eq!(
            bad("audio 1 RTP/AVP").kind,
            ParseErrorKind::BadField {
                line_type: 'm',
                field: "fmt"
            }
        );
        assert_eq!(
            bad("audio 1 RTP/AVP 128").kind,
            ParseErrorKind::BadField {
                line_type: 'm',
                field: "fmt (RTP payload type)"
            }
        );
        assert_eq!(
            bad("audio 1 RTP/AVP PCMU").kind,
            ParseErrorKind::BadField {
                line_type: 'm',
                field: "fmt (RTP payload type)"
            }
        );
        // A rejected stream without a format is tolerated.
        assert!(with("m=audio 0 RTP/AVP\r\n").is_ok());
    }

    #[test]
    fn media_level_lines() {
        let sdp = with("m=audio 5004 RTP/AVP 0\r\ni=voice\r\nc=IN IP6 2001:db8::1\r\nb=AS:80\r\nk=clear:x\r\na=sendonly\r\n").unwrap();
        let m = &sdp.media[0];
        assert_eq!(m.information.as_deref(), Some("voice"));
        assert_eq!(m.connection.as_ref().unwrap().addrtype, "IP6");
        assert_eq!(m.bandwidths[0].value, 80);
        assert_eq!(m.encryption_key.as_deref(), Some("clear:x"));
        assert_eq!(sdp.media_direction(m), Direction::SendOnly);
        for (line, t) in [
            ("o=- 1 2 IN IP4 h", 'o'),
            ("s=x", 's'),
            ("t=0 0", 't'),
            ("z=0 0", 'z'),
        ] {
            let e = with(&format!("c=IN IP4 h\r\nm=audio 1 RTP/AVP 0\r\n{line}\r\n")).unwrap_err();
            assert_eq!(
                (e.line, e.kind),
                (7, ParseErrorKind::Misplaced(t)),
                "{line}"
            );
        }
    }

    #[test]
    fn media_without_connection() {
        let e = with("m=audio 0 RTP/AVP 0\r\nm=audio 5004 RTP/AVP 0\r\n").unwrap_err();
        assert_eq!(
            (e.line, e.kind.clone()),
            (6, ParseErrorKind::MissingConnection { media: 2 })
        );
        assert_eq!(e.rejection(), Rejection::NotAcceptableHere);
        assert!(with("m=audio 5004 RTP/AVP 0\r\nc=IN IP4 h\r\n").is_ok());
    }

    #[test]
    fn line_form_and_unknown_types() {
        assert_eq!(
            with("garbage\r\n").unwrap_err(),
            ParseError {
                line: 5,
                kind: ParseErrorKind::NotTypeValue
            }
        );
        assert_eq!(
            with("a = b\r\n").unwrap_err().kind,
            ParseErrorKind::NotTypeValue
        );
        assert_eq!(
            with("=x\r\n").unwrap_err().kind,
            ParseErrorKind::NotTypeValue
        );
        assert_eq!(
            with(" a=x\r\n").unwrap_err().kind,
            ParseErrorKind::NotTypeValue
        );
        assert_eq!(
            with("x=1\r\n").unwrap_err().kind,
            ParseErrorKind::UnknownType('x')
        );
        assert_eq!(
            with("a=\u{0}x\r\n").unwrap_err().kind,
            ParseErrorKind::BadField {
                line_type: 'a',
                field: "att-field"
            }
        );
        let mut bytes = MINIMAL.as_bytes().to_vec();
        bytes.extend_from_slice(b"a=\xff\r\n");
        assert_eq!(
            parse(&bytes).unwrap_err(),
            ParseError {
                line: 5,
                kind: ParseErrorKind::NotUtf8
            }
        );
        assert_eq!(
            with("garbage\r\n").unwrap_err().rejection().status_code(),
            400
        );
    }

    #[test]
    fn tolerated_layout() {
        let text = "v=0  \no=- 1 2 IN IP4 h\t\r\n\r\ns=-\nc=IN IP4 h\nt=0 0 \n\n";
        let sdp = parse(text.as_bytes()).unwrap();
        assert_eq!(sdp.connection.unwrap().address, "h");
        // Session-level lines out of order are accepted and printed in order.
        let sdp = parse(b"v=0\r\no=- 1 2 IN IP4 h\r\ns=-\r\nt=0 0\r\nc=IN IP4 h\r\n").unwrap();
        assert_eq!(
            sdp.to_string(),
            "v=0\r\no=- 1 2 IN IP4 h\r\ns=-\r\nc=IN IP4 h\r\nt=0 0\r\n"
        );
    }

    #[test]
    fn error_messages_name_line_and_field() {
        let e = with("m=audio 1 RTP/AVP\r\n").unwrap_err();
        assert_eq!(e.to_string(), "SDP line 5: m= line: invalid or missing fmt");
    }
}
