//! Reception report blocks (RFC 3550 §6.4) read from relayed RTCP, for the quality metrics:
//! what each phone says about the stream it receives (fraction lost, interarrival jitter).
//! The relay forwards RTCP unchanged; this only reads.

/// RTCP packet types carrying report blocks.
const SENDER_REPORT: u8 = 200;
const RECEIVER_REPORT: u8 = 201;
/// Bytes of a report block.
const BLOCK_LEN: usize = 24;

/// One reception report block's quality figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReceptionReport {
    /// Fraction of packets lost since the previous report, 0–1.
    pub fraction_lost: f64,
    /// Interarrival jitter, in RTP timestamp units.
    pub jitter: u32,
}

/// The report blocks of every SR and RR in a (compound) RTCP datagram. Malformed packets end
/// the walk: what was read before stays.
pub fn reception_reports(datagram: &[u8]) -> Vec<ReceptionReport> {
    let mut reports = Vec::new();
    let mut rest = datagram;
    while rest.len() >= 8 {
        let version = rest[0] >> 6;
        let count = usize::from(rest[0] & 0x1f);
        let packet_type = rest[1];
        // Length in 32-bit words minus one (RFC 3550 §6.4.1).
        let words = usize::from(u16::from_be_bytes([rest[2], rest[3]])) + 1;
        let len = words * 4;
        if version != 2 || len > rest.len() {
            break;
        }
        let packet = &rest[..len];
        let first_block = match packet_type {
            // Header (4), sender SSRC (4), sender info (20).
            SENDER_REPORT => Some(28),
            // Header (4), reporter SSRC (4).
            RECEIVER_REPORT => Some(8),
            _ => None,
        };
        if let Some(offset) = first_block {
            for index in 0..count {
                let start = offset + index * BLOCK_LEN;
                let Some(block) = packet.get(start..start + BLOCK_LEN) else {
                    break;
                };
                reports.push(ReceptionReport {
                    fraction_lost: f64::from(block[4]) / 256.0,
                    jitter: u32::from_be_bytes([block[12], block[13], block[14], block[15]]),
                });
            }
        }
        rest = &rest[len..];
    }
    reports
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report block: SSRC, fraction and cumulative lost, highest sequence, jitter, LSR, DLSR.
    fn block(fraction: u8, jitter: u32) -> Vec<u8> {
        let mut block = Vec::new();
        block.extend_from_slice(&[0, 0, 0, 1]); // SSRC
        block.extend_from_slice(&[fraction, 0, 0, 3]); // fraction, cumulative lost
        block.extend_from_slice(&[0, 0, 0x10, 0]); // highest sequence
        block.extend_from_slice(&jitter.to_be_bytes()); // jitter
        block.extend_from_slice(&[0; 8]); // LSR, DLSR
        block
    }

    fn rr(blocks: &[Vec<u8>]) -> Vec<u8> {
        let len_words = (8 + 24 * blocks.len()) / 4 - 1;
        let mut p = vec![0x80 | blocks.len() as u8, 201];
        p.extend_from_slice(&(len_words as u16).to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 9]);
        for b in blocks {
            p.extend_from_slice(b);
        }
        p
    }

    #[test]
    fn a_receiver_report_gives_its_blocks() {
        let reports = reception_reports(&rr(&[block(64, 80), block(0, 8)]));
        assert_eq!(
            reports,
            vec![
                ReceptionReport {
                    fraction_lost: 0.25,
                    jitter: 80
                },
                ReceptionReport {
                    fraction_lost: 0.0,
                    jitter: 8
                }
            ]
        );
    }

    #[test]
    fn a_compound_packet_with_a_sender_report_and_sdes_is_walked() {
        let mut sr = vec![0x81, 200, 0, 12]; // 13 words = 52 bytes: header+SSRC+info+1 block
        sr.extend_from_slice(&[0, 0, 0, 7]);
        sr.extend_from_slice(&[0; 20]);
        sr.extend_from_slice(&block(128, 160));
        let sdes = [0x81, 202, 0, 1, 0, 0, 0, 7];
        let mut compound = sr.clone();
        compound.extend_from_slice(&sdes);
        compound.extend_from_slice(&rr(&[block(26, 4)]));
        let reports = reception_reports(&compound);
        assert_eq!(reports.len(), 2);
        assert_eq!(reports[0].fraction_lost, 0.5);
        assert_eq!(reports[0].jitter, 160);
        assert_eq!(reports[1].jitter, 4);
    }

    #[test]
    fn garbage_and_truncated_packets_give_what_was_complete() {
        assert!(reception_reports(b"").is_empty());
        assert!(
            reception_reports(&[0x41, 201, 0, 1, 0, 0, 0, 0]).is_empty(),
            "version 1"
        );
        let mut truncated = rr(&[block(64, 80)]);
        truncated.truncate(20);
        assert!(reception_reports(&truncated).is_empty());
        // A count larger than the packet holds: the blocks present are read, no panic.
        let mut lying = rr(&[block(64, 80)]);
        lying[0] = 0x80 | 5;
        assert_eq!(reception_reports(&lying).len(), 1);
    }
}
