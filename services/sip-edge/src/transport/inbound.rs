//! The two queues from the transports to the engine. OPTIONS go in a short queue of their own
//! that the engine takes a few of before each batch of everything else: the failover
//! controllers judge a datacenter by its edge answering OPTIONS within their probe timeout,
//! and behind a registration storm's backlog (thousands of REGISTERs queued) the answer came
//! seconds late, so a busy but healthy datacenter looked dead. With the lane an OPTIONS waits
//! for at most one batch of the others: the answer still proves the engine runs, and says
//! nothing about how deep its queue is (the edge sheds load for that, `overload`).
//!
//! The lane is short, and a full lane sends OPTIONS to the common queue, so an OPTIONS flood
//! gains nothing over any other flood (the engine's protection still admits or drops each);
//! the engine takes at most [`PROBE_BATCH`] from it per batch of others, so nothing starves.

use tokio::sync::mpsc;

use super::{Received, TransportEvent};

/// How many OPTIONS the lane holds; more go to the common queue.
const PROBE_LANE: usize = 64;

/// OPTIONS the engine takes from the lane before each batch of other events.
pub(crate) const PROBE_BATCH: usize = 8;

/// The transports' side.
#[derive(Debug, Clone)]
pub struct InboundSender {
    common: mpsc::Sender<TransportEvent>,
    probes: mpsc::Sender<TransportEvent>,
}

/// The engine's side.
#[derive(Debug)]
pub struct InboundReceiver {
    pub common: mpsc::Receiver<TransportEvent>,
    pub probes: mpsc::Receiver<TransportEvent>,
}

/// The two queues; the common one holds `capacity` events.
pub fn inbound(capacity: usize) -> (InboundSender, InboundReceiver) {
    let (common_tx, common) = mpsc::channel(capacity);
    let (probes_tx, probes) = mpsc::channel(PROBE_LANE);
    (
        InboundSender {
            common: common_tx,
            probes: probes_tx,
        },
        InboundReceiver { common, probes },
    )
}

impl InboundSender {
    /// Queues what was received: an OPTIONS in the lane when it has room, anything else (or an
    /// OPTIONS with the lane full) in the common queue, waiting for room there. `Err` once the
    /// engine is gone.
    pub async fn received(&self, received: Received) -> Result<(), ()> {
        let event = TransportEvent::Received(received);
        let event = if is_options(&event) {
            match self.probes.try_send(event) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::TrySendError::Full(event)) => event,
                Err(mpsc::error::TrySendError::Closed(_)) => return Err(()),
            }
        } else {
            event
        };
        self.common.send(event).await.map_err(|_| ())
    }

    /// Queues an event without waiting (dropped when the common queue is full).
    pub fn try_send(&self, event: TransportEvent) {
        let _ = self.common.try_send(event);
    }
}

/// Whether the message is an OPTIONS request (by its first bytes: the lane is chosen before
/// anything is parsed).
fn is_options(event: &TransportEvent) -> bool {
    matches!(event, TransportEvent::Received(r) if r.data.starts_with(b"OPTIONS "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use sip_msg::Transport;

    fn received(text: &'static str) -> Received {
        Received {
            transport: Transport::Udp,
            source: "127.0.0.1:5070".parse().unwrap(),
            local: "127.0.0.1:5080".parse().unwrap(),
            data: Bytes::from_static(text.as_bytes()),
            received_at: crate::clock::monotonic(),
        }
    }

    fn text(event: TransportEvent) -> Bytes {
        match event {
            TransportEvent::Received(r) => r.data,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn options_take_the_lane_and_overflow_to_the_common_queue() {
        let (sender, mut receiver) = inbound(1_000);
        sender
            .received(received("REGISTER sip:x SIP/2.0\r\n"))
            .await
            .unwrap();
        for _ in 0..PROBE_LANE + 2 {
            sender
                .received(received("OPTIONS sip:x SIP/2.0\r\n"))
                .await
                .unwrap();
        }
        assert_eq!(receiver.probes.len(), PROBE_LANE);
        // The REGISTER, then the two OPTIONS the full lane did not take.
        assert_eq!(receiver.common.len(), 3);
        assert!(text(receiver.common.try_recv().unwrap()).starts_with(b"REGISTER "));
        assert!(text(receiver.common.try_recv().unwrap()).starts_with(b"OPTIONS "));
        assert!(text(receiver.probes.try_recv().unwrap()).starts_with(b"OPTIONS "));
        // Not an OPTIONS request: a response to one, lower case, another method.
        for other in [
            "SIP/2.0 200 OK\r\nCSeq: 1 OPTIONS\r\n",
            "options sip:x SIP/2.0\r\n",
            "OPTIONSX sip:x SIP/2.0\r\n",
        ] {
            sender.received(received(other)).await.unwrap();
        }
        assert_eq!(receiver.common.len(), 4);
    }

    #[tokio::test]
    async fn a_gone_engine_is_reported() {
        let (sender, receiver) = inbound(4);
        drop(receiver);
        assert!(
            sender
                .received(received("OPTIONS sip:x SIP/2.0\r\n"))
                .await
                .is_err()
        );
        assert!(
            sender
                .received(received("INVITE sip:x SIP/2.0\r\n"))
                .await
                .is_err()
        );
    }
}
