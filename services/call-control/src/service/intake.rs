//! Hand-offs acknowledged when they arrive, not when the service loop gets to them.
//!
//! An edge resends a hand-off that is not acknowledged within 500 ms, and the queue group
//! gives the copy to any replica (ADR 0020). The service handles one message at a time, and a
//! message can wait on the store or the bus for hundreds of milliseconds when the link between
//! the datacenters is slow; acknowledged from the loop, a hand-off queued behind a few slow
//! ones went unacknowledged, its copy was set up by a second replica, and the callee got the
//! call twice (486 to one of them), or the edge gave up (503) — the slow-link scenario of
//! `make e2e-ha` showed both. A task now acknowledges each hand-off as it comes off the bus and
//! queues it for the loop. The queue is bounded: a replica that far behind stops
//! acknowledging, and the edge's next copy goes to another replica.

use std::sync::Arc;

use bus::{Bus, BusHeaders, BusMessage};
use bytes::Bytes;
use tokio::sync::mpsc;

/// Requests taken but not yet handled by the loop.
const WAITING: usize = 256;

/// Starts the task acknowledging and queueing `requests`; the receiver gets them in order.
pub(super) fn acknowledge_on_arrival(
    bus: Arc<dyn Bus>,
    mut requests: bus::Subscription,
) -> mpsc::Receiver<BusMessage> {
    let (sender, receiver) = mpsc::channel(WAITING);
    tokio::spawn(async move {
        while let Some(message) = requests.next().await {
            // Wait for room first: acknowledging a request the loop cannot take yet would
            // keep it here while another replica could have had it.
            let Ok(permit) = sender.reserve().await else {
                return;
            };
            if message.reply_to.is_some()
                && let Err(e) = bus.reply(&message, BusHeaders::new(), Bytes::new()).await
            {
                tracing::debug!(error = %e, "hand-off acknowledgement lost");
            }
            permit.send(message);
        }
    });
    receiver
}
