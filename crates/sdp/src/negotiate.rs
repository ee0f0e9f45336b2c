//! RFC 3264 §6: forming an answer to an offer from what this end supports.
//!
//! Per offered `m=` line, in the offer's order and count: the offered codecs we support are
//! kept in the offer's order and with the offer's payload type numbers (static types by
//! number, dynamic ones by rtpmap encoding name, clock rate and channels); telephone-event is
//! kept when offered and supported, but never makes a stream usable on its own; a stream with
//! nothing in common is rejected with port 0; the direction is the offer's seen from this end,
//! narrowed by what this end wants.

use crate::model::{
    Attribute, Connection, Direction, MediaDescription, Origin, RtpMap, SessionDescription,
};

/// A codec this end can use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codec {
    /// Compared case-insensitively (`PCMU`, `opus`, `telephone-event`).
    pub encoding: String,
    pub clock_rate: u32,
    /// Audio channels; absent means one.
    pub channels: Option<u16>,
    /// `a=fmtp` parameters to answer with; when absent, the offer's are echoed.
    pub fmtp: Option<String>,
}

impl Codec {
    pub fn new(encoding: impl Into<String>, clock_rate: u32) -> Codec {
        Codec {
            encoding: encoding.into(),
            clock_rate,
            channels: None,
            fmtp: None,
        }
    }

    /// G.711 µ-law, static payload type 0.
    pub fn pcmu() -> Codec {
        Codec::new("PCMU", 8000)
    }

    /// G.711 A-law, static payload type 8.
    pub fn pcma() -> Codec {
        Codec::new("PCMA", 8000)
    }

    /// G.722, static payload type 9 (its RTP clock is 8000 by RFC 3551's historical error).
    pub fn g722() -> Codec {
        Codec::new("G722", 8000)
    }

    /// G.729, static payload type 18.
    pub fn g729() -> Codec {
        Codec::new("G729", 8000)
    }

    /// RFC 4733 named telephone events (DTMF 0-15) at a clock rate.
    pub fn telephone_event(clock_rate: u32) -> Codec {
        Codec {
            fmtp: Some("0-16".to_owned()),
            ..Codec::new("telephone-event", clock_rate)
        }
    }

    pub fn is_telephone_event(&self) -> bool {
        self.encoding.eq_ignore_ascii_case("telephone-event")
    }

    /// Whether an offered encoding is this codec.
    pub fn matches(&self, map: &RtpMap) -> bool {
        self.encoding.eq_ignore_ascii_case(&map.encoding)
            && self.clock_rate == map.clock_rate
            && self.channels.unwrap_or(1) == map.channels.unwrap_or(1)
    }
}

/// What this end supports for one kind of media.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaCapability {
    /// `audio`, `video`, …
    pub media: String,
    /// Transport profiles accepted (`RTP/AVP`); compared case-insensitively.
    pub protos: Vec<String>,
    /// The port to answer with; a second accepted stream of the same kind gets `port + 2`,
    /// and so on (the relay usually rewrites them with `with_connection` anyway).
    pub port: u16,
    /// Supported codecs, telephone-event included when DTMF is wanted.
    pub codecs: Vec<Codec>,
    /// `a=ptime` to answer with.
    pub ptime: Option<u32>,
}

/// What the answer is formed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalCapabilities {
    /// The answer's `o=` (this end's session id and version).
    pub origin: Origin,
    /// The answer's session-level `c=`.
    pub connection: Connection,
    pub media: Vec<MediaCapability>,
    /// What this end wants: `sendrecv` normally, `sendonly` to hold, `inactive`, …
    pub direction: Direction,
}

/// Why no answer can be formed; the request is answered 488 with a Warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NegotiationError {
    /// No offered stream has a codec in common with this end.
    #[error("no common codec in any offered stream")]
    NoCommonCodec,
    /// No offered stream is of a media type and transport this end handles.
    #[error("no offered media type or transport is supported")]
    NoSupportedMedia,
}

impl NegotiationError {
    /// The RFC 3261 §20.43 warning code: 305 incompatible media format, 304 media type not
    /// available.
    pub fn warning_code(self) -> u16 {
        match self {
            NegotiationError::NoCommonCodec => 305,
            NegotiationError::NoSupportedMedia => 304,
        }
    }
}

/// Forms the answer to an offer. An offer without any active stream (no `m=` line, or all
/// with port 0) is answered with the same streams rejected; an offer with active streams none
/// of which can be accepted is refused.
pub fn answer(
    offer: &SessionDescription,
    local: &LocalCapabilities,
) -> Result<SessionDescription, NegotiationError> {
    let mut sdp = SessionDescription::new(local.origin.clone(), Some(local.connection.clone()));
    let mut offered_active = 0;
    let mut accepted = 0;
    let mut kind_matched = false;
    // How many streams of each capability were accepted, for their ports.
    let mut used = vec![0u16; local.media.len()];

    for offered in &offer.media {
        if offered.port != 0 {
            offered_active += 1;
        }
        let capability = local.media.iter().enumerate().find(|(_, c)| {
            c.media.eq_ignore_ascii_case(&offered.media)
                && c.protos
                    .iter()
                    .any(|p| p.eq_ignore_ascii_case(&offered.proto))
        });
        let answered = match capability {
            Some((index, cap)) if offered.port != 0 => {
                kind_matched = true;
                let direction = offer.media_direction(offered).reversed();
                let direction = Direction::from_flags(
                    direction.sends() && local.direction.sends(),
                    direction.receives() && local.direction.receives(),
                );
                let port = cap.port.wrapping_add(used[index].wrapping_mul(2));
                let stream = accept_stream(offered, cap, port, direction);
                if stream.is_some() {
                    used[index] += 1;
                }
                stream
            }
            _ => None,
        };
        match answered {
            Some(stream) => {
                accepted += 1;
                sdp.media.push(stream);
            }
            None => sdp.media.push(rejected(offered)),
        }
    }

    if offered_active > 0 && accepted == 0 {
        return Err(if kind_matched {
            NegotiationError::NoCommonCodec
        } else {
            NegotiationError::NoSupportedMedia
        });
    }
    Ok(sdp)
}

/// The answer's stream for an accepted offer, or `None` when no codec is in common.
fn accept_stream(
    offered: &MediaDescription,
    cap: &MediaCapability,
    port: u16,
    direction: Direction,
) -> Option<MediaDescription> {
    let mut formats = Vec::new();
    let mut attributes = Vec::new();
    let mut has_media_codec = false;
    let mut kept_clocks = Vec::new();
    let mut events = Vec::new();

    for format in &offered.formats {
        let Some(map) = offered.rtpmap(format) else {
            continue;
        };
        let Some(codec) = cap.codecs.iter().find(|c| c.matches(&map)) else {
            continue;
        };
        if codec.is_telephone_event() {
            events.push((format, map, codec));
            continue;
        }
        has_media_codec = true;
        kept_clocks.push(map.clock_rate);
        push_format(&mut formats, &mut attributes, offered, format, &map, codec);
    }
    if !has_media_codec {
        return None;
    }
    // Telephone events only at the clock rate of a kept codec (RFC 4733 §2.1).
    for (format, map, codec) in events {
        if kept_clocks.contains(&map.clock_rate) {
            push_format(&mut formats, &mut attributes, offered, format, &map, codec);
        }
    }
    if let Some(ptime) = cap.ptime {
        attributes.push(Attribute::value("ptime", ptime.to_string()));
    }
    attributes.push(Attribute::property(direction.as_str()));

    let mut stream =
        MediaDescription::new(offered.media.clone(), port, offered.proto.clone(), formats);
    stream.attributes = attributes;
    Some(stream)
}

fn push_format(
    formats: &mut Vec<String>,
    attributes: &mut Vec<Attribute>,
    offered: &MediaDescription,
    format: &str,
    map: &RtpMap,
    codec: &Codec,
) {
    formats.push(format.to_owned());
    attributes.push(Attribute::value("rtpmap", map.to_value()));
    let fmtp = codec.fmtp.as_deref().or_else(|| offered.fmtp(format));
    if let Some(params) = fmtp {
        attributes.push(Attribute::value("fmtp", format!("{format} {params}")));
    }
}

/// A rejected stream: port 0, the offered formats kept (RFC 3264 §6 wants at least one).
fn rejected(offered: &MediaDescription) -> MediaDescription {
    MediaDescription::new(
        offered.media.clone(),
        0,
        offered.proto.clone(),
        offered.formats.clone(),
    )
}
