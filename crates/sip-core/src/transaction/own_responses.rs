//! Responses the layer sends on its own, that no TU call made and no event reports: the 100
//! Trying of an INVITE server transaction (§17.2.1), the answer to a CANCEL whose INVITE is
//! gone or already answered (§9.2), 503 when the table is full, and the verdict answers to
//! unparseable requests. A TU that counts what it sends takes them here, or its counts miss
//! exactly the answers an overloaded or attacked endpoint gives most.

use sip_msg::Method;

/// Responses kept until the TU takes them; beyond, they are only counted as unreported, so a
/// TU that never takes them costs a bounded amount of memory.
const KEPT: usize = 4_096;

/// One response the layer sent by itself (its retransmissions are not repeated here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnResponse {
    /// The method answered; `None` when the answer has no readable CSeq (an unparseable
    /// request).
    pub method: Option<Method>,
    pub status: u16,
}

#[derive(Debug, Default)]
pub(crate) struct OwnResponses {
    kept: Vec<OwnResponse>,
    /// Sent while `KEPT` were waiting for the TU.
    pub(crate) unreported: u64,
}

impl OwnResponses {
    pub(crate) fn record(&mut self, method: Option<Method>, status: u16) {
        if self.kept.len() < KEPT {
            self.kept.push(OwnResponse { method, status });
        } else {
            self.unreported += 1;
        }
    }

    pub(crate) fn take(&mut self) -> Vec<OwnResponse> {
        std::mem::take(&mut self.kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_bounded_number_until_taken() {
        let mut own = OwnResponses::default();
        for _ in 0..KEPT + 3 {
            own.record(Some(Method::Invite), 100);
        }
        assert_eq!(own.unreported, 3);
        assert_eq!(own.take().len(), KEPT);
        assert!(own.take().is_empty());
        own.record(None, 400);
        assert_eq!(
            own.take(),
            vec![OwnResponse {
                method: None,
                status: 400
            }]
        );
    }
}
