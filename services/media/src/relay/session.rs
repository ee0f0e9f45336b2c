//! One relayed call: two legs, the latching of each leg's remote, the forwarding decision per
//! datagram, counters and idle detection.
//!
//! Symmetric RTP (RFC 4961 practice, as every SBC does for phones behind NAT): the relay
//! sends a leg's media to the address that leg's media comes *from*, not only to what its SDP
//! says. The first acceptable packet on a port latches its source; afterwards only that source
//! is forwarded, until it has been silent for `relatch_after` (a phone whose NAT mapping
//! changed, or a re-INVITE that moved the media). "Acceptable" means from the SDP's IP address
//! (any port: NATs and some phones send from another port than they advertise), or from
//! anywhere when the leg is flagged as behind NAT (the SDP then names a private address).
//! RTP and RTCP latch separately: a NAT maps the two ports independently.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::ports::PortPair;
use super::rtp::{PacketKind, check_rtcp, check_rtp};

/// Names a session for call-control; unique within one media service instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "m{}", self.0)
    }
}

/// A side of the call: A is the offerer's side (the caller), B the answerer's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Leg {
    A,
    B,
}

impl Leg {
    pub fn other(self) -> Leg {
        match self {
            Leg::A => Leg::B,
            Leg::B => Leg::A,
        }
    }

    fn index(self) -> usize {
        match self {
            Leg::A => 0,
            Leg::B => 1,
        }
    }
}

/// What call-control knows of a leg's far end, from its SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LegOptions {
    /// The RTP address of the `c=`/`m=` lines (RTCP is assumed on port + 1); `None` until the
    /// SDP is known (the answerer's leg at allocation).
    pub remote: Option<SocketAddr>,
    /// The phone is behind NAT (the edge saw its Contact differ from the packet's source):
    /// latch onto the first packet from any address.
    pub behind_nat: bool,
    /// RTP and RTCP share the RTP port (RFC 5761, `a=rtcp-mux` in both offer and answer):
    /// RTCP arriving on the RTP port is told apart by its packet type, and RTCP for this leg
    /// goes to its RTP address. The other leg need not mux: the relay converts.
    pub rtcp_mux: bool,
}

/// The relay's ports of one leg.
pub type LegPorts = PortPair;

/// Timeouts of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// No accepted packet on either leg for this long → the media is reported dead.
    pub idle_timeout: Duration,
    /// A latched source silent for this long may be replaced by a new acceptable source;
    /// `None` latches once for the session's life.
    pub relatch_after: Option<Duration>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            idle_timeout: Duration::from_secs(60),
            relatch_after: Some(Duration::from_secs(2)),
        }
    }
}

/// Traffic of one leg. `*_in` counts datagrams accepted from the leg's phone, `*_out` those
/// sent to it; `drops` counts datagrams that arrived on the leg's ports and were not sent on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LegCounters {
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
    pub drops: u64,
}

/// Send the datagram unchanged from the relay's `from_port` to `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    pub from_port: u16,
    pub to: SocketAddr,
}

/// Why a datagram was not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Not version 2, or shorter than the fixed header.
    Malformed,
    /// Arrived on a port that is not this session's.
    UnknownPort,
    /// Nothing latched yet, and the leg has neither an SDP address nor the NAT flag: there
    /// is no way to tell the phone from a stranger.
    NoRemote,
    /// From a source other than the latched one (or the SDP's address): a third party, or a
    /// re-latch attempt while the latched source is still talking.
    WrongSource,
    /// Accepted, but the other leg's address is not known yet (no SDP, nothing latched).
    PeerUnknown,
    /// Accepted, but the other leg hears a generated stream (ringback, music on hold)
    /// instead.
    PeerHearsPlayback,
}

impl DropReason {
    /// A metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::UnknownPort => "unknown_port",
            DropReason::NoRemote => "no_remote",
            DropReason::WrongSource => "wrong_source",
            DropReason::PeerUnknown => "peer_unknown",
            DropReason::PeerHearsPlayback => "peer_hears_playback",
        }
    }
}

/// The decision for one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Forward(Forward),
    Drop(DropReason),
}

#[derive(Debug, Clone, Copy)]
struct Latch {
    source: SocketAddr,
    last_seen: Instant,
}

#[derive(Debug, Clone)]
struct LegState {
    ports: PortPair,
    options: LegOptions,
    /// Indexed by [`kind_index`]: RTP, RTCP.
    latched: [Option<Latch>; 2],
    counters: LegCounters,
    /// The leg hears a generated stream; what the other leg sends is not forwarded to it.
    playing: bool,
}

/// RFC 5761 §4: on a muxed port, a second byte in 192–223 (RTCP packet types SR, RR, SDES,
/// BYE, APP, feedback…) is RTCP; RTP payload types that would collide are not used with mux.
fn is_muxed_rtcp(bytes: &[u8]) -> bool {
    bytes.get(1).is_some_and(|pt| (192..=223).contains(pt))
}

fn kind_index(kind: PacketKind) -> usize {
    match kind {
        PacketKind::Rtp => 0,
        PacketKind::Rtcp => 1,
    }
}

impl LegState {
    fn kind_of(&self, local_port: u16) -> Option<PacketKind> {
        if local_port == self.ports.rtp {
            Some(PacketKind::Rtp)
        } else if local_port == self.ports.rtcp() {
            Some(PacketKind::Rtcp)
        } else {
            None
        }
    }

    /// The SDP's address, unless it is a non-address: `c=0.0.0.0` (RFC 2543 hold) or port 0
    /// (a declined stream). Sending there would reach this host (Linux treats 0.0.0.0 as
    /// local), so such a leg has no remote until it sends.
    fn sdp_remote(&self) -> Option<SocketAddr> {
        self.options
            .remote
            .filter(|r| !r.ip().is_unspecified() && r.port() != 0)
    }

    /// May `source` become this leg's latched source?
    fn admits(&self, source: SocketAddr) -> Result<(), DropReason> {
        if self.options.behind_nat {
            return Ok(());
        }
        match self.sdp_remote() {
            Some(remote) if remote.ip() == source.ip() => Ok(()),
            Some(_) => Err(DropReason::WrongSource),
            None => Err(DropReason::NoRemote),
        }
    }

    /// Where this leg's phone receives `kind`: the latched source, else the SDP's address.
    fn destination(&self, kind: PacketKind) -> Option<SocketAddr> {
        if let Some(latch) = self.latched[kind_index(kind)] {
            return Some(latch.source);
        }
        let mut remote = self.sdp_remote()?;
        if kind == PacketKind::Rtcp {
            remote.set_port(remote.port().checked_add(1)?);
        }
        Some(remote)
    }

    fn port(&self, kind: PacketKind) -> u16 {
        match kind {
            PacketKind::Rtp => self.ports.rtp,
            PacketKind::Rtcp => self.ports.rtcp(),
        }
    }
}

/// A relayed call's media state.
#[derive(Debug, Clone)]
pub struct Session {
    id: SessionId,
    config: SessionConfig,
    legs: [LegState; 2],
    last_activity: Instant,
    idle_reported: bool,
}

impl Session {
    pub fn new(
        id: SessionId,
        config: SessionConfig,
        now: Instant,
        a: (PortPair, LegOptions),
        b: (PortPair, LegOptions),
    ) -> Session {
        let leg = |(ports, options): (PortPair, LegOptions)| LegState {
            ports,
            options,
            latched: [None, None],
            counters: LegCounters::default(),
            playing: false,
        };
        Session {
            id,
            config,
            legs: [leg(a), leg(b)],
            last_activity: now,
            idle_reported: false,
        }
    }

    pub fn id(&self) -> SessionId {
        self.id
    }

    pub fn ports(&self, leg: Leg) -> PortPair {
        self.legs[leg.index()].ports
    }

    pub fn counters(&self, leg: Leg) -> LegCounters {
        self.legs[leg.index()].counters
    }

    /// The source latched for `kind` on `leg`, if any.
    pub fn latched(&self, leg: Leg, kind: PacketKind) -> Option<SocketAddr> {
        self.legs[leg.index()].latched[kind_index(kind)].map(|l| l.source)
    }

    /// New SDP for a leg (the answer, or a re-INVITE). A changed address forgets what was
    /// latched (the phone moved its media) and restarts the idle clock.
    pub fn update(&mut self, now: Instant, leg: Leg, options: LegOptions) {
        let state = &mut self.legs[leg.index()];
        if state.options != options {
            state.options = options;
            state.latched = [None, None];
        }
        self.last_activity = now;
        self.idle_reported = false;
    }

    /// Decides what to do with a datagram that arrived on `local_port` from `source`.
    pub fn on_packet(
        &mut self,
        now: Instant,
        local_port: u16,
        source: SocketAddr,
        bytes: &[u8],
    ) -> Verdict {
        let (leg, kind) = match self.locate(local_port) {
            Some(found) => found,
            None => return Verdict::Drop(DropReason::UnknownPort),
        };
        match self.decide(now, leg, kind, source, bytes) {
            Ok(forward) => {
                let out = &mut self.legs[leg.other().index()].counters;
                out.packets_out += 1;
                out.bytes_out += bytes.len() as u64;
                Verdict::Forward(forward)
            }
            Err(reason) => {
                self.legs[leg.index()].counters.drops += 1;
                Verdict::Drop(reason)
            }
        }
    }

    fn locate(&self, local_port: u16) -> Option<(Leg, PacketKind)> {
        [Leg::A, Leg::B].into_iter().find_map(|leg| {
            self.legs[leg.index()]
                .kind_of(local_port)
                .map(|kind| (leg, kind))
        })
    }

    fn decide(
        &mut self,
        now: Instant,
        leg: Leg,
        kind: PacketKind,
        source: SocketAddr,
        bytes: &[u8],
    ) -> Result<Forward, DropReason> {
        // `kind` is the port's; the latch follows the port, the forwarding the packet.
        let port_kind = kind;
        let kind = if port_kind == PacketKind::Rtp
            && self.legs[leg.index()].options.rtcp_mux
            && is_muxed_rtcp(bytes)
        {
            PacketKind::Rtcp
        } else {
            port_kind
        };
        let well_formed = match kind {
            PacketKind::Rtp => check_rtp(bytes),
            PacketKind::Rtcp => check_rtcp(bytes),
        };
        if !well_formed {
            return Err(DropReason::Malformed);
        }
        let relatch_after = self.config.relatch_after;
        let state = &mut self.legs[leg.index()];
        let slot = kind_index(port_kind);
        match state.latched[slot] {
            Some(ref mut latch) if latch.source == source => latch.last_seen = now,
            Some(latch) => {
                let silent_long_enough = relatch_after
                    .is_some_and(|after| now.saturating_duration_since(latch.last_seen) >= after);
                if !silent_long_enough {
                    return Err(DropReason::WrongSource);
                }
                state.admits(source)?;
                tracing::debug!(session = %self.id, ?leg, ?kind, from = %latch.source, to = %source, "re-latched");
                state.latched[slot] = Some(Latch {
                    source,
                    last_seen: now,
                });
            }
            None => {
                state.admits(source)?;
                state.latched[slot] = Some(Latch {
                    source,
                    last_seen: now,
                });
            }
        }
        state.counters.packets_in += 1;
        state.counters.bytes_in += bytes.len() as u64;
        self.last_activity = now;
        self.idle_reported = false;
        let peer = &self.legs[leg.other().index()];
        if peer.playing && kind == PacketKind::Rtp {
            return Err(DropReason::PeerHearsPlayback);
        }
        // A muxing peer gets its RTCP on its RTP port and address.
        let out = if peer.options.rtcp_mux {
            PacketKind::Rtp
        } else {
            kind
        };
        let to = peer.destination(out).ok_or(DropReason::PeerUnknown)?;
        Ok(Forward {
            from_port: peer.port(out),
            to,
        })
    }

    /// Starts or stops replacing the RTP `leg` receives with a generated stream (RTCP still
    /// flows: the phone's reports about the relayed stream stay true enough, and the
    /// generator sends no reports of its own).
    pub fn set_playing(&mut self, leg: Leg, playing: bool) {
        self.legs[leg.index()].playing = playing;
    }

    /// Where a generated stream for `leg` goes: from the leg's RTP port to its phone (the
    /// latched source, else the SDP's address).
    pub fn playback_route(&self, leg: Leg) -> Option<Forward> {
        let state = &self.legs[leg.index()];
        Some(Forward {
            from_port: state.ports.rtp,
            to: state.destination(PacketKind::Rtp)?,
        })
    }

    /// When the session turns idle if nothing arrives before.
    pub fn idle_deadline(&self) -> Instant {
        self.last_activity + self.config.idle_timeout
    }

    /// When to call [`Session::poll_idle`] next; `None` while the silence is already reported
    /// (a packet or an update re-arms it).
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.idle_reported).then(|| self.idle_deadline())
    }

    /// True once per silence: no accepted packet on either leg for the idle timeout. Packets
    /// (or an update) re-arm it.
    pub fn poll_idle(&mut self, now: Instant) -> bool {
        if self.idle_reported || now < self.idle_deadline() {
            return false;
        }
        self.idle_reported = true;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A_PORTS: PortPair = PortPair { rtp: 30_000 };
    const B_PORTS: PortPair = PortPair { rtp: 30_002 };

    #[allow(clippy::disallowed_methods)] // one reading, then a virtual clock
    fn start() -> Instant {
        Instant::now()
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn rtp() -> Vec<u8> {
        let mut p = vec![0x80, 0, 0, 1, 0, 0, 0, 160, 0, 0, 0, 7];
        p.extend_from_slice(&[0xff; 160]);
        p
    }

    fn rtcp() -> Vec<u8> {
        vec![0x80, 201, 0, 1, 0, 0, 0, 7]
    }

    fn session(t0: Instant, a: LegOptions, b: LegOptions) -> Session {
        Session::new(
            SessionId(1),
            SessionConfig {
                idle_timeout: Duration::from_secs(30),
                relatch_after: Some(Duration::from_secs(2)),
            },
            t0,
            (A_PORTS, a),
            (B_PORTS, b),
        )
    }

    fn known(remote: &str) -> LegOptions {
        LegOptions {
            remote: Some(addr(remote)),
            behind_nat: false,
            rtcp_mux: false,
        }
    }

    #[test]
    fn forwards_both_ways_to_the_sdp_then_to_the_latched_source() {
        let t0 = start();
        let mut s = session(t0, known("10.0.0.1:4000"), known("10.0.0.2:5000"));
        // A sends from another port than its SDP said: latched, forwarded to B's SDP address.
        assert_eq!(
            s.on_packet(t0, 30_000, addr("10.0.0.1:4444"), &rtp()),
            Verdict::Forward(Forward {
                from_port: 30_002,
                to: addr("10.0.0.2:5000")
            })
        );
        // B answers: goes to where A's packets come from, not to A's SDP port.
        assert_eq!(
            s.on_packet(t0, 30_002, addr("10.0.0.2:5000"), &rtp()),
            Verdict::Forward(Forward {
                from_port: 30_000,
                to: addr("10.0.0.1:4444")
            })
        );
        // RTCP: B's is expected on SDP port + 1 until B sends some.
        assert_eq!(
            s.on_packet(t0, 30_001, addr("10.0.0.1:4445"), &rtcp()),
            Verdict::Forward(Forward {
                from_port: 30_003,
                to: addr("10.0.0.2:5001")
            })
        );
        let a = s.counters(Leg::A);
        assert_eq!((a.packets_in, a.packets_out, a.drops), (2, 1, 0));
        assert_eq!(a.bytes_in, 172 + 8);
    }

    #[test]
    fn strangers_are_dropped_and_relatching_waits_for_silence() {
        let t0 = start();
        let mut s = session(t0, known("10.0.0.1:4000"), known("10.0.0.2:5000"));
        assert!(matches!(
            s.on_packet(t0, 30_000, addr("10.9.9.9:4000"), &rtp()),
            Verdict::Drop(DropReason::WrongSource)
        ));
        assert!(matches!(
            s.on_packet(t0, 30_000, addr("10.0.0.1:4000"), &rtp()),
            Verdict::Forward(_)
        ));
        // Same IP, other port, while the latched source talks: refused.
        let t1 = t0 + Duration::from_millis(1_000);
        assert_eq!(
            s.on_packet(t1, 30_000, addr("10.0.0.1:4002"), &rtp()),
            Verdict::Drop(DropReason::WrongSource)
        );
        // After 2 s of silence the new port takes over; a stranger still cannot.
        let t2 = t0 + Duration::from_millis(2_500);
        assert_eq!(
            s.on_packet(t2, 30_000, addr("10.9.9.9:4000"), &rtp()),
            Verdict::Drop(DropReason::WrongSource)
        );
        assert!(matches!(
            s.on_packet(t2, 30_000, addr("10.0.0.1:4002"), &rtp()),
            Verdict::Forward(_)
        ));
        assert_eq!(
            s.latched(Leg::A, PacketKind::Rtp),
            Some(addr("10.0.0.1:4002"))
        );
        assert_eq!(s.counters(Leg::A).drops, 3);
    }

    #[test]
    fn a_leg_behind_nat_latches_any_source() {
        let t0 = start();
        let nat = LegOptions {
            remote: Some(addr("192.168.1.10:4000")),
            behind_nat: true,
            rtcp_mux: false,
        };
        let mut s = session(t0, nat, known("10.0.0.2:5000"));
        assert!(matches!(
            s.on_packet(t0, 30_000, addr("203.0.113.7:61000"), &rtp()),
            Verdict::Forward(_)
        ));
        assert_eq!(
            s.on_packet(t0, 30_002, addr("10.0.0.2:5000"), &rtp()),
            Verdict::Forward(Forward {
                from_port: 30_000,
                to: addr("203.0.113.7:61000")
            })
        );
    }

    #[test]
    fn unknown_peer_malformed_and_no_remote() {
        let t0 = start();
        let mut s = session(t0, known("10.0.0.1:4000"), LegOptions::default());
        assert_eq!(
            s.on_packet(t0, 30_000, addr("10.0.0.1:4000"), &rtp()),
            Verdict::Drop(DropReason::PeerUnknown)
        );
        assert_eq!(
            s.on_packet(t0, 30_002, addr("10.0.0.2:5000"), &rtp()),
            Verdict::Drop(DropReason::NoRemote)
        );
        assert_eq!(
            s.on_packet(t0, 30_000, addr("10.0.0.1:4000"), &[0x40; 20]),
            Verdict::Drop(DropReason::Malformed)
        );
        assert_eq!(
            s.on_packet(t0, 31_000, addr("10.0.0.1:4000"), &rtp()),
            Verdict::Drop(DropReason::UnknownPort)
        );
        // The answer arrives: B's SDP address becomes the destination.
        s.update(t0, Leg::B, known("10.0.0.2:5000"));
        assert!(matches!(
            s.on_packet(t0, 30_000, addr("10.0.0.1:4000"), &rtp()),
            Verdict::Forward(_)
        ));
    }

    #[test]
    fn an_sdp_on_hold_the_old_way_is_no_destination() {
        let t0 = start();
        let mut s = session(t0, known("10.0.0.1:4000"), known("0.0.0.0:5000"));
        assert_eq!(
            s.on_packet(t0, 30_000, addr("10.0.0.1:4000"), &rtp()),
            Verdict::Drop(DropReason::PeerUnknown)
        );
        assert_eq!(s.playback_route(Leg::B), None);
        s.update(t0, Leg::B, known("10.0.0.2:0"));
        assert_eq!(
            s.on_packet(t0, 30_000, addr("10.0.0.1:4000"), &rtp()),
            Verdict::Drop(DropReason::PeerUnknown)
        );
        assert_eq!(
            s.on_packet(t0, 30_002, addr("10.0.0.2:5000"), &rtp()),
            Verdict::Drop(DropReason::NoRemote)
        );
    }

    #[test]
    fn dtmf_events_pass_unchanged_as_rtp() {
        let t0 = start();
        let mut s = session(t0, known("10.0.0.1:4000"), known("10.0.0.2:5000"));
        // RFC 4733 event "5", end bit, volume 10, duration 800, payload type 101.
        let event = [
            0x80,
            0x80 | 101,
            0,
            9,
            0,
            0,
            3,
            0x20,
            0,
            0,
            0,
            7,
            5,
            0x8a,
            0x03,
            0x20,
        ];
        assert!(matches!(
            s.on_packet(t0, 30_000, addr("10.0.0.1:4000"), &event),
            Verdict::Forward(_)
        ));
    }

    #[test]
    fn a_leg_hearing_playback_gets_no_relayed_rtp() {
        let t0 = start();
        let mut s = session(t0, known("10.0.0.1:4000"), known("10.0.0.2:5000"));
        assert_eq!(
            s.playback_route(Leg::A),
            Some(Forward {
                from_port: 30_000,
                to: addr("10.0.0.1:4000")
            })
        );
        s.set_playing(Leg::A, true);
        assert_eq!(
            s.on_packet(t0, 30_002, addr("10.0.0.2:5000"), &rtp()),
            Verdict::Drop(DropReason::PeerHearsPlayback)
        );
        assert!(matches!(
            s.on_packet(t0, 30_003, addr("10.0.0.2:5001"), &rtcp()),
            Verdict::Forward(_)
        ));
        assert!(matches!(
            s.on_packet(t0, 30_000, addr("10.0.0.1:4000"), &rtp()),
            Verdict::Forward(_)
        ));
        s.set_playing(Leg::A, false);
        assert!(matches!(
            s.on_packet(t0, 30_002, addr("10.0.0.2:5000"), &rtp()),
            Verdict::Forward(_)
        ));
    }

    #[test]
    fn rtcp_mux_on_one_leg_is_converted_for_the_other() {
        let t0 = start();
        let muxed = LegOptions {
            remote: Some(addr("10.0.0.1:4000")),
            behind_nat: false,
            rtcp_mux: true,
        };
        let mut s = session(t0, muxed, known("10.0.0.2:5000"));
        // A's RTCP comes on the RTP port: to B's RTCP port (+1), from the relay's RTCP port.
        assert_eq!(
            s.on_packet(t0, 30_000, addr("10.0.0.1:4000"), &rtcp()),
            Verdict::Forward(Forward {
                from_port: 30_003,
                to: addr("10.0.0.2:5001")
            })
        );
        // A's RTP, same port: to B's RTP.
        assert_eq!(
            s.on_packet(t0, 30_000, addr("10.0.0.1:4000"), &rtp()),
            Verdict::Forward(Forward {
                from_port: 30_002,
                to: addr("10.0.0.2:5000")
            })
        );
        // B's RTCP on its RTCP port: to A's RTP address, from A's RTP port.
        assert_eq!(
            s.on_packet(t0, 30_003, addr("10.0.0.2:5001"), &rtcp()),
            Verdict::Forward(Forward {
                from_port: 30_000,
                to: addr("10.0.0.1:4000")
            })
        );
        // Both muxed: RTCP stays on the RTP ports.
        let mut both = session(
            t0,
            muxed,
            LegOptions {
                rtcp_mux: true,
                ..known("10.0.0.2:5000")
            },
        );
        assert_eq!(
            both.on_packet(t0, 30_000, addr("10.0.0.1:4000"), &rtcp()),
            Verdict::Forward(Forward {
                from_port: 30_002,
                to: addr("10.0.0.2:5000")
            })
        );
        // RTCP while A hears playback still flows; RTP does not.
        both.set_playing(Leg::A, true);
        assert!(matches!(
            both.on_packet(t0, 30_002, addr("10.0.0.2:5000"), &rtcp()),
            Verdict::Forward(_)
        ));
        assert_eq!(
            both.on_packet(t0, 30_002, addr("10.0.0.2:5000"), &rtp()),
            Verdict::Drop(DropReason::PeerHearsPlayback)
        );
    }

    #[test]
    fn idle_is_reported_once_per_silence() {
        let t0 = start();
        let mut s = session(t0, known("10.0.0.1:4000"), known("10.0.0.2:5000"));
        assert!(!s.poll_idle(t0 + Duration::from_secs(29)));
        s.on_packet(
            t0 + Duration::from_secs(20),
            30_000,
            addr("10.0.0.1:4000"),
            &rtp(),
        );
        assert!(!s.poll_idle(t0 + Duration::from_secs(31)));
        assert_eq!(s.idle_deadline(), t0 + Duration::from_secs(50));
        assert!(s.poll_idle(t0 + Duration::from_secs(50)));
        assert!(!s.poll_idle(t0 + Duration::from_secs(51)), "reported once");
        assert_eq!(s.poll_timeout(), None);
        s.on_packet(
            t0 + Duration::from_secs(52),
            30_002,
            addr("10.0.0.2:5000"),
            &rtp(),
        );
        assert!(
            s.poll_idle(t0 + Duration::from_secs(82)),
            "re-armed by traffic"
        );
        // Dropped traffic (a stranger) is no sign of life.
        s.on_packet(
            t0 + Duration::from_secs(90),
            30_002,
            addr("10.9.9.9:5000"),
            &rtp(),
        );
        s.update(
            t0 + Duration::from_secs(100),
            Leg::A,
            known("10.0.0.1:4000"),
        );
        assert!(!s.poll_idle(t0 + Duration::from_secs(129)));
        assert!(s.poll_idle(t0 + Duration::from_secs(130)));
    }
}
