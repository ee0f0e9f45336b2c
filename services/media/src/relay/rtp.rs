//! The fixed RTP header (RFC 3550 §5.1) and the sanity checks a relay can afford per packet:
//! version 2 and room for the header. Whether a datagram is RTP or RTCP is decided by the
//! port it arrived on (RTCP on RTP + 1), not by sniffing.

/// Bytes in the fixed RTP header.
pub const RTP_HEADER_LEN: usize = 12;

/// Bytes in the smallest RTCP packet (a header and an SSRC: an empty receiver report).
const RTCP_MIN_LEN: usize = 8;

/// Which port a datagram arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketKind {
    Rtp,
    Rtcp,
}

/// The fields of the fixed header the service reads (the tone generator writes them too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

impl RtpHeader {
    /// Reads the fixed header of a datagram that passed [`check_rtp`].
    pub fn parse(bytes: &[u8]) -> Option<RtpHeader> {
        if !check_rtp(bytes) {
            return None;
        }
        Some(RtpHeader {
            marker: bytes[1] & 0x80 != 0,
            payload_type: bytes[1] & 0x7f,
            sequence: u16::from_be_bytes([bytes[2], bytes[3]]),
            timestamp: u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
            ssrc: u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]),
        })
    }

    /// Writes the fixed header (version 2, no padding, extension or CSRCs).
    pub fn write(&self, out: &mut [u8; RTP_HEADER_LEN]) {
        out[0] = 0x80;
        out[1] = (u8::from(self.marker) << 7) | (self.payload_type & 0x7f);
        out[2..4].copy_from_slice(&self.sequence.to_be_bytes());
        out[4..8].copy_from_slice(&self.timestamp.to_be_bytes());
        out[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
    }
}

/// Version 2 and at least the fixed header.
pub fn check_rtp(bytes: &[u8]) -> bool {
    bytes.len() >= RTP_HEADER_LEN && bytes[0] >> 6 == 2
}

/// Version 2 and at least a header and an SSRC. (SRTCP is also version 2; it passes.)
pub fn check_rtcp(bytes: &[u8]) -> bool {
    bytes.len() >= RTCP_MIN_LEN && bytes[0] >> 6 == 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let header = RtpHeader {
            marker: true,
            payload_type: 101,
            sequence: 0xfffe,
            timestamp: 0x1234_5678,
            ssrc: 0xdead_beef,
        };
        let mut bytes = [0u8; RTP_HEADER_LEN];
        header.write(&mut bytes);
        assert_eq!(RtpHeader::parse(&bytes), Some(header));
    }

    #[test]
    fn rejects_short_and_wrong_version() {
        assert!(!check_rtp(&[0x80; 11]));
        assert!(!check_rtp(&[0x40; 12]));
        assert!(check_rtp(&[0x80; 12]));
        assert!(!check_rtcp(&[0x80; 7]));
        assert!(!check_rtcp(&[0x00; 8]));
        assert!(check_rtcp(&[0x81; 8]));
    }
}
