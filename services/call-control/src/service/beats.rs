//! Heartbeats stamped when they arrive, not when the service loop gets to them.
//!
//! The service handles one message at a time, and a message can wait on the store or the bus
//! for a long while (a slow link between the datacenters makes each etcd write and bus round
//! trip cost hundreds of milliseconds). Heartbeats handled in that loop were stamped late:
//! relays and edges of both datacenters, this replica's own neighbours included, looked dead
//! after a few slow calls, and their calls were moved for nothing (the slow-link scenario of
//! `make e2e-ha` showed it). A task per subscription now stamps each heartbeat as it comes
//! off the bus, and the loop takes in every waiting one before judging who is dead.

use std::time::Instant;

use bus::BusMessage;
use tokio::sync::mpsc;

/// Heartbeats waiting for the loop; beyond this, one more is dropped (the next one counts).
const WAITING: usize = 4096;

/// Which replicas a heartbeat is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BeatKind {
    Media,
    Edge,
}

/// A heartbeat and when it came off the bus.
pub(super) struct Beat {
    pub(super) kind: BeatKind,
    pub(super) arrived: Instant,
    pub(super) message: BusMessage,
}

/// Starts a stamping task for each subscription; the receiver gets their heartbeats.
pub(super) fn stamp(subscriptions: Vec<(BeatKind, bus::Subscription)>) -> mpsc::Receiver<Beat> {
    let (sender, receiver) = mpsc::channel(WAITING);
    for (kind, mut subscription) in subscriptions {
        let sender = sender.clone();
        tokio::spawn(async move {
            while let Some(message) = subscription.next().await {
                let beat = Beat {
                    kind,
                    arrived: super::now(),
                    message,
                };
                match sender.try_send(beat) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        tracing::debug!(?kind, "heartbeat dropped: the service is behind");
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
            }
        });
    }
    receiver
}
