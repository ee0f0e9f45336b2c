//! The rewrites a B2BUA and its media relay make to a description before passing it on:
//! anchoring the media at the relay, hold and resume (RFC 6337 §5), and the `o=` version
//! increase every changed description needs (RFC 3264 §8). Each rewrite that changes the
//! description increases the version itself, so a caller cannot forget it.

use std::net::IpAddr;

use crate::model::{Attribute, Connection, Direction, Rtcp, SessionDescription};

/// Why a rewrite was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    /// One port per `m=` line is needed.
    #[error("{ports} ports given for {media} media sections")]
    PortCountMismatch { media: usize, ports: usize },
}

/// ICE attributes: candidates name addresses around the relay, so they are removed when the
/// media is anchored there (the relay is the only path).
const ICE_ATTRIBUTES: &[&str] = &[
    "candidate",
    "remote-candidates",
    "end-of-candidates",
    "ice-ufrag",
    "ice-pwd",
    "ice-options",
    "ice-lite",
    "ice-mismatch",
];

/// Increases the `o=` session version (RFC 3264 §8: by one for each changed description).
pub fn bump_version(sdp: &mut SessionDescription) {
    sdp.origin.session_version = sdp.origin.session_version.wrapping_add(1);
}

/// Anchors every stream at the relay: the session `c=` becomes `address`, media-level `c=`
/// lines go, each active `m=` line takes its port from `ports` (one per `m=` line; rejected
/// streams keep port 0), `a=rtcp` points at the relay (the next port, or the same with
/// rtcp-mux), and ICE attributes are removed. Returns whether anything changed (the version
/// is then increased).
pub fn with_connection(
    sdp: &mut SessionDescription,
    address: IpAddr,
    ports: &[u16],
) -> Result<bool, RewriteError> {
    if ports.len() != sdp.media.len() {
        return Err(RewriteError::PortCountMismatch {
            media: sdp.media.len(),
            ports: ports.len(),
        });
    }
    let before = sdp.clone();
    let connection = Connection::from_ip(address);
    sdp.connection = Some(connection.clone());
    for (media, &port) in sdp.media.iter_mut().zip(ports) {
        media.connection = None;
        media
            .attributes
            .retain(|a| !ICE_ATTRIBUTES.contains(&a.name.as_str()));
        if media.port == 0 {
            continue;
        }
        media.port = port;
        let rtcp_port = if media.rtcp_mux() {
            port
        } else {
            port.wrapping_add(1)
        };
        let rtcp = Rtcp {
            port: rtcp_port,
            connection: Some(connection.clone()),
        };
        for a in media.attributes.iter_mut().filter(|a| a.name == "rtcp") {
            *a = Attribute::value("rtcp", rtcp.to_value());
        }
    }
    sdp.attributes
        .retain(|a| !ICE_ATTRIBUTES.contains(&a.name.as_str()));
    Ok(changed(&before, sdp))
}

/// Puts the streams on hold the RFC 6337 §5 way: this end stops asking to receive on each
/// active stream (`sendrecv` → `sendonly`, `recvonly` → `inactive`), written at media level.
/// Returns whether anything changed (the version is then increased).
pub fn hold(sdp: &mut SessionDescription) -> bool {
    redirect(sdp, |d| Direction::from_flags(d.sends(), false))
}

/// Takes the streams off hold: this end asks to receive again (`sendonly` → `sendrecv`,
/// `inactive` → `recvonly`). Returns whether anything changed (the version is then increased).
pub fn resume(sdp: &mut SessionDescription) -> bool {
    redirect(sdp, |d| Direction::from_flags(d.sends(), true))
}

fn redirect(sdp: &mut SessionDescription, change: impl Fn(Direction) -> Direction) -> bool {
    let before = sdp.clone();
    let session = sdp.direction();
    for media in sdp.media.iter_mut().filter(|m| m.port != 0) {
        let current = media.direction().unwrap_or(session);
        let wanted = change(current);
        if media.direction() != Some(wanted) {
            media.set_direction(wanted);
        }
    }
    changed(&before, sdp)
}

/// Whether the description puts the other end on hold: it has an active stream and none of
/// its active streams asks to receive (`sendonly`, `inactive`), or their address is
/// `0.0.0.0` (the RFC 2543 way, still sent by old phones).
pub fn is_hold(sdp: &SessionDescription) -> bool {
    let mut active = sdp.media.iter().filter(|m| m.port != 0).peekable();
    if active.peek().is_none() {
        return false;
    }
    active.all(|m| {
        !sdp.media_direction(m).receives()
            || sdp
                .media_connection(m)
                .is_some_and(Connection::is_unspecified)
    })
}

fn changed(before: &SessionDescription, after: &mut SessionDescription) -> bool {
    if before == after {
        return false;
    }
    bump_version(after);
    true
}
