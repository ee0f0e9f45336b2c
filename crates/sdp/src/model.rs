//! The session description as data: every line kept (unknown attributes verbatim, in order),
//! so that printing what was parsed gives the same description back. Typed views of the
//! attributes a PBX reads (rtpmap, fmtp, direction, ptime, rtcp, telephone-event) are
//! computed on demand rather than stored, so they can never disagree with the lines.

use std::fmt;
use std::net::IpAddr;

/// A whole session description (RFC 8866 §5). `v=` is always 0 and so not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    /// `o=`
    pub origin: Origin,
    /// `s=` (`-` when the session has no name; an empty `s=` is tolerated).
    pub session_name: String,
    /// `i=`
    pub information: Option<String>,
    /// `u=`
    pub uri: Option<String>,
    /// `e=` lines.
    pub emails: Vec<String>,
    /// `p=` lines.
    pub phones: Vec<String>,
    /// Session-level `c=`; every media section without its own `c=` uses it.
    pub connection: Option<Connection>,
    /// Session-level `b=` lines.
    pub bandwidths: Vec<Bandwidth>,
    /// `t=` lines (at least one when parsed), each with its `r=` lines.
    pub timing: Vec<Timing>,
    /// `z=`, verbatim.
    pub time_zones: Option<String>,
    /// `k=` (obsolete, kept verbatim).
    pub encryption_key: Option<String>,
    /// Session-level `a=` lines, in order.
    pub attributes: Vec<Attribute>,
    /// `m=` sections, in order.
    pub media: Vec<MediaDescription>,
}

/// The `o=` line: who made the description and which version of it this is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `-` when the user has no login name.
    pub username: String,
    /// A numeric string by the RFC; kept as text because some agents send more than 64 bits.
    pub session_id: String,
    /// Increased on every change of the description (RFC 3264 §8).
    pub session_version: u64,
    /// `IN`
    pub nettype: String,
    /// `IP4` or `IP6`
    pub addrtype: String,
    pub address: String,
}

/// A `c=` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// `IN`
    pub nettype: String,
    /// `IP4` or `IP6`
    pub addrtype: String,
    /// The address as written, with any multicast `/ttl/count` suffix.
    pub address: String,
}

/// A `b=<type>:<kbps>` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bandwidth {
    /// `AS`, `CT`, `TIAS`, …
    pub kind: String,
    pub value: u64,
}

/// A `t=` line and the `r=` lines that follow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timing {
    pub start: u64,
    pub stop: u64,
    /// `r=` lines, verbatim.
    pub repeats: Vec<String>,
}

/// An `a=` line: a property (`a=sendonly`) or a value (`a=rtpmap:0 PCMU/8000`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub name: String,
    pub value: Option<String>,
}

/// An `m=` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    /// `audio`, `video`, `image`, `application`, …
    pub media: String,
    /// 0 marks a rejected or disabled stream (RFC 3264 §5.1, §6).
    pub port: u16,
    /// The `/<number of ports>` suffix.
    pub port_count: Option<u16>,
    /// `RTP/AVP`, `RTP/SAVP`, `UDP/TLS/RTP/SAVPF`, `udptl`, …
    pub proto: String,
    /// Payload type numbers for RTP profiles, format names otherwise.
    pub formats: Vec<String>,
    /// `i=`
    pub information: Option<String>,
    /// Media-level `c=`, overriding the session's.
    pub connection: Option<Connection>,
    pub bandwidths: Vec<Bandwidth>,
    /// `k=` (obsolete, kept verbatim).
    pub encryption_key: Option<String>,
    /// Media-level `a=` lines, in order.
    pub attributes: Vec<Attribute>,
}

/// Media direction (RFC 8866 §6.7, RFC 3264 §5.1); `sendrecv` when none is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Direction {
    #[default]
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

/// `a=rtpmap:<pt> <encoding>/<clock>[/<channels>]`, or the static assignment of RFC 3551
/// when a static payload type comes without one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    pub payload_type: u8,
    /// As written (`PCMU`, `opus`, `telephone-event`); compare case-insensitively.
    pub encoding: String,
    pub clock_rate: u32,
    /// Audio channels; absent means one.
    pub channels: Option<u16>,
}

/// `a=rtcp:<port> [<nettype> <addrtype> <address>]` (RFC 3605).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rtcp {
    pub port: u16,
    pub connection: Option<Connection>,
}

impl Direction {
    /// The attribute name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// Reads a direction attribute name; `None` for any other attribute.
    pub fn from_attribute_name(name: &str) -> Option<Direction> {
        match name {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }

    /// Built from the two halves.
    pub fn from_flags(sends: bool, receives: bool) -> Direction {
        match (sends, receives) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }

    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    /// The same stream seen from the other end: sendonly ↔ recvonly.
    pub fn reversed(self) -> Direction {
        Direction::from_flags(self.receives(), self.sends())
    }

    /// The first direction attribute in a list, if any.
    pub fn find(attributes: &[Attribute]) -> Option<Direction> {
        attributes
            .iter()
            .filter(|a| a.value.is_none())
            .find_map(|a| Direction::from_attribute_name(&a.name))
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Attribute {
    /// `a=<name>`
    pub fn property(name: impl Into<String>) -> Attribute {
        Attribute {
            name: name.into(),
            value: None,
        }
    }

    /// `a=<name>:<value>`
    pub fn value(name: impl Into<String>, value: impl Into<String>) -> Attribute {
        Attribute {
            name: name.into(),
            value: Some(value.into()),
        }
    }
}

impl Connection {
    /// `IN IP4 <addr>` or `IN IP6 <addr>`.
    pub fn from_ip(ip: IpAddr) -> Connection {
        Connection {
            nettype: "IN".to_owned(),
            addrtype: match ip {
                IpAddr::V4(_) => "IP4",
                IpAddr::V6(_) => "IP6",
            }
            .to_owned(),
            address: ip.to_string(),
        }
    }

    /// The unicast or multicast address without a `/ttl/count` suffix, when it is an IP
    /// address rather than a host name.
    pub fn ip(&self) -> Option<IpAddr> {
        let bare = self.address.split('/').next().unwrap_or_default();
        bare.parse().ok()
    }

    /// `0.0.0.0` (or `::`): the RFC 2543 way to put a call on hold.
    pub fn is_unspecified(&self) -> bool {
        self.ip().is_some_and(|ip| ip.is_unspecified())
    }
}

/// The static payload types of RFC 3551 §6 (those still assigned).
pub fn static_payload_type(pt: u8) -> Option<(&'static str, u32, Option<u16>)> {
    Some(match pt {
        0 => ("PCMU", 8000, None),
        3 => ("GSM", 8000, None),
        4 => ("G723", 8000, None),
        5 => ("DVI4", 8000, None),
        6 => ("DVI4", 16000, None),
        7 => ("LPC", 8000, None),
        8 => ("PCMA", 8000, None),
        9 => ("G722", 8000, None),
        10 => ("L16", 44100, Some(2)),
        11 => ("L16", 44100, None),
        12 => ("QCELP", 8000, None),
        13 => ("CN", 8000, None),
        14 => ("MPA", 90000, None),
        15 => ("G728", 8000, None),
        16 => ("DVI4", 11025, None),
        17 => ("DVI4", 22050, None),
        18 => ("G729", 8000, None),
        25 => ("CelB", 90000, None),
        26 => ("JPEG", 90000, None),
        28 => ("nv", 90000, None),
        31 => ("H261", 90000, None),
        32 => ("MPV", 90000, None),
        33 => ("MP2T", 90000, None),
        34 => ("H263", 90000, None),
        _ => return None,
    })
}

impl RtpMap {
    /// Reads the value of an `a=rtpmap` attribute (`96 opus/48000/2`).
    pub fn parse(value: &str) -> Option<RtpMap> {
        let (pt, rest) = value.split_once(' ')?;
        let payload_type = pt.parse().ok()?;
        let mut parts = rest.trim().split('/');
        let encoding = parts.next().filter(|e| !e.is_empty())?.to_owned();
        let clock_rate = parts.next()?.parse().ok()?;
        let channels = match parts.next() {
            Some(c) => Some(c.parse().ok()?),
            None => None,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(RtpMap {
            payload_type,
            encoding,
            clock_rate,
            channels,
        })
    }

    /// The attribute value, as `parse` reads it.
    pub fn to_value(&self) -> String {
        match self.channels {
            Some(ch) => format!(
                "{} {}/{}/{}",
                self.payload_type, self.encoding, self.clock_rate, ch
            ),
            None => format!(
                "{} {}/{}",
                self.payload_type, self.encoding, self.clock_rate
            ),
        }
    }

    /// Whether this is the RFC 4733 named telephone event payload.
    pub fn is_telephone_event(&self) -> bool {
        self.encoding.eq_ignore_ascii_case("telephone-event")
    }
}

impl Rtcp {
    /// Reads the value of an `a=rtcp` attribute.
    pub fn parse(value: &str) -> Option<Rtcp> {
        let mut fields = value.split_ascii_whitespace();
        let port = fields.next()?.parse().ok()?;
        let connection = match (fields.next(), fields.next(), fields.next()) {
            (None, _, _) => None,
            (Some(n), Some(t), Some(a)) => Some(Connection {
                nettype: n.to_owned(),
                addrtype: t.to_owned(),
                address: a.to_owned(),
            }),
            _ => return None,
        };
        if fields.next().is_some() {
            return None;
        }
        Some(Rtcp { port, connection })
    }

    /// The attribute value, as `parse` reads it.
    pub fn to_value(&self) -> String {
        match &self.connection {
            Some(c) => format!("{} {}", self.port, c),
            None => self.port.to_string(),
        }
    }
}

impl fmt::Display for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.nettype, self.addrtype, self.address)
    }
}

fn attribute_value<'a>(attributes: &'a [Attribute], name: &str) -> Option<&'a str> {
    attributes
        .iter()
        .find(|a| a.name == name)
        .and_then(|a| a.value.as_deref())
}

impl SessionDescription {
    /// A minimal description: `s=-`, `t=0 0`, no media.
    pub fn new(origin: Origin, connection: Option<Connection>) -> SessionDescription {
        SessionDescription {
            origin,
            session_name: "-".to_owned(),
            information: None,
            uri: None,
            emails: Vec::new(),
            phones: Vec::new(),
            connection,
            bandwidths: Vec::new(),
            timing: vec![Timing {
                start: 0,
                stop: 0,
                repeats: Vec::new(),
            }],
            time_zones: None,
            encryption_key: None,
            attributes: Vec::new(),
            media: Vec::new(),
        }
    }

    /// The session-level direction, `sendrecv` when none is given.
    pub fn direction(&self) -> Direction {
        Direction::find(&self.attributes).unwrap_or_default()
    }

    /// The direction that applies to a media section: its own attribute, else the
    /// session's, else `sendrecv`.
    pub fn media_direction(&self, media: &MediaDescription) -> Direction {
        media.direction().unwrap_or_else(|| self.direction())
    }

    /// The `c=` that applies to a media section: its own, else the session's.
    pub fn media_connection<'a>(&'a self, media: &'a MediaDescription) -> Option<&'a Connection> {
        media.connection.as_ref().or(self.connection.as_ref())
    }

    /// The first session-level attribute of that name.
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.name == name)
    }

    /// Sets the session-level direction, removing any other direction attribute there.
    pub fn set_direction(&mut self, direction: Direction) {
        set_direction(&mut self.attributes, direction);
    }
}

pub(crate) fn set_direction(attributes: &mut Vec<Attribute>, direction: Direction) {
    let first = attributes
        .iter()
        .position(|a| a.value.is_none() && Direction::from_attribute_name(&a.name).is_some());
    attributes
        .retain(|a| !(a.value.is_none() && Direction::from_attribute_name(&a.name).is_some()));
    let at = first.unwrap_or(attributes.len()).min(attributes.len());
    attributes.insert(at, Attribute::property(direction.as_str()));
}

impl MediaDescription {
    /// An `m=` section with no attributes.
    pub fn new(
        media: impl Into<String>,
        port: u16,
        proto: impl Into<String>,
        formats: Vec<String>,
    ) -> MediaDescription {
        MediaDescription {
            media: media.into(),
            port,
            port_count: None,
            proto: proto.into(),
            formats,
            information: None,
            connection: None,
            bandwidths: Vec::new(),
            encryption_key: None,
            attributes: Vec::new(),
        }
    }

    /// Port 0: the stream is rejected (in an answer) or disabled (in an offer).
    pub fn is_rejected(&self) -> bool {
        self.port == 0
    }

    /// Whether the transport is an RTP profile (`RTP/AVP`, `RTP/SAVPF`, `UDP/TLS/RTP/SAVP`…),
    /// whose formats are payload type numbers.
    pub fn is_rtp(&self) -> bool {
        self.proto
            .split('/')
            .any(|part| part.eq_ignore_ascii_case("RTP"))
    }

    /// The first attribute of that name.
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.name == name)
    }

    /// The explicit media-level direction, if any (see
    /// [`SessionDescription::media_direction`] for the one that applies).
    pub fn direction(&self) -> Option<Direction> {
        Direction::find(&self.attributes)
    }

    /// Sets the media-level direction, removing any other direction attribute there.
    pub fn set_direction(&mut self, direction: Direction) {
        set_direction(&mut self.attributes, direction);
    }

    /// Every readable `a=rtpmap`, in order; malformed ones are skipped.
    pub fn rtpmaps(&self) -> impl Iterator<Item = RtpMap> + '_ {
        self.attributes
            .iter()
            .filter(|a| a.name == "rtpmap")
            .filter_map(|a| a.value.as_deref().and_then(RtpMap::parse))
    }

    /// The encoding of a listed payload type: its `a=rtpmap`, else the static assignment.
    /// `None` for a format that is not listed on the `m=` line or not a known payload type.
    pub fn rtpmap(&self, format: &str) -> Option<RtpMap> {
        if !self.formats.iter().any(|f| f == format) {
            return None;
        }
        let pt: u8 = format.parse().ok()?;
        if let Some(map) = self.rtpmaps().find(|m| m.payload_type == pt) {
            return Some(map);
        }
        static_payload_type(pt).map(|(encoding, clock_rate, channels)| RtpMap {
            payload_type: pt,
            encoding: encoding.to_owned(),
            clock_rate,
            channels,
        })
    }

    /// The `a=fmtp` parameters of a format (the text after `<fmt> `).
    pub fn fmtp(&self, format: &str) -> Option<&str> {
        self.attributes
            .iter()
            .filter(|a| a.name == "fmtp")
            .filter_map(|a| a.value.as_deref())
            .find_map(|v| {
                let (fmt, params) = v.split_once(' ').unwrap_or((v, ""));
                (fmt == format).then(|| params.trim_start())
            })
    }

    /// `a=ptime` in milliseconds.
    pub fn ptime(&self) -> Option<u32> {
        attribute_value(&self.attributes, "ptime").and_then(|v| v.trim().parse().ok())
    }

    /// `a=maxptime` in milliseconds.
    pub fn maxptime(&self) -> Option<u32> {
        attribute_value(&self.attributes, "maxptime").and_then(|v| v.trim().parse().ok())
    }

    /// `a=rtcp` (RFC 3605), when present and readable.
    pub fn rtcp(&self) -> Option<Rtcp> {
        attribute_value(&self.attributes, "rtcp").and_then(Rtcp::parse)
    }

    /// `a=rtcp-mux` (RFC 5761).
    pub fn rtcp_mux(&self) -> bool {
        self.attributes.iter().any(|a| a.name == "rtcp-mux")
    }

    /// The payload type of RFC 4733 telephone events, when listed (the first one; an offer
    /// may list one per clock rate, see [`telephone_events`](Self::telephone_events)).
    pub fn telephone_event(&self) -> Option<u8> {
        self.telephone_events().next().map(|m| m.payload_type)
    }

    /// Every listed telephone-event payload.
    pub fn telephone_events(&self) -> impl Iterator<Item = RtpMap> + '_ {
        self.formats
            .iter()
            .filter_map(|f| self.rtpmap(f))
            .filter(RtpMap::is_telephone_event)
    }

    /// The listed formats with their encodings, in the `m=` line's order; formats without a
    /// known encoding are left out.
    pub fn codecs(&self) -> impl Iterator<Item = RtpMap> + '_ {
        self.formats.iter().filter_map(|f| self.rtpmap(f))
    }
}
