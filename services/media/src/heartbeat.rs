//! Relay liveness on the bus (ADR 0020): every replica publishes a `MediaHeartbeat` on
//! [`subjects::MEDIA_HEARTBEATS`] each interval; every call-control replica listens and
//! declares a replica dead after three silent intervals, then re-anchors the calls that
//! replica relayed (re-INVITE to both phones with a new relay session). The heartbeat also
//! says the replica's datacenter, which call-control writes into the call's snapshot so that
//! a failover of that datacenter moves the call's media too.
//!
//! A heartbeat rides NATS (at most once): one lost message is not a death, three are.

use std::sync::Arc;
use std::time::Duration;

use bus::{Bus, BusHeaders, BusMessage};
use bytes::Bytes;
use proto::Message as _;
use proto::subjects::{self, types};
use proto::v1;
use tokio::task::JoinHandle;

use crate::MediaError;

/// Publishes this replica's heartbeat every `interval` until the returned task is aborted;
/// `sessions` tells how many sessions it holds at each beat. The first beat goes out at once.
pub fn publish_heartbeats(
    bus: Arc<dyn Bus>,
    media_id: String,
    datacenter: String,
    interval: Duration,
    sessions: impl Fn() -> usize + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let interval_ms = u32::try_from(interval.as_millis()).unwrap_or(u32::MAX);
        loop {
            ticks.tick().await;
            let beat = v1::MediaHeartbeat {
                media_id: media_id.clone(),
                datacenter: datacenter.clone(),
                interval_ms,
                sessions: u32::try_from(sessions()).unwrap_or(u32::MAX),
            };
            let mut headers = BusHeaders::new();
            headers.insert(subjects::TYPE_HEADER, types::MEDIA_HEARTBEAT);
            if let Err(e) = bus
                .publish(
                    subjects::MEDIA_HEARTBEATS,
                    headers,
                    Bytes::from(beat.encode_to_vec()),
                )
                .await
            {
                tracing::debug!(error = %e, "media heartbeat not published");
            }
        }
    })
}

/// Decodes a message received on [`subjects::MEDIA_HEARTBEATS`].
pub fn decode_heartbeat(message: &BusMessage) -> Result<v1::MediaHeartbeat, MediaError> {
    if let Some(kind) = message.headers.get(subjects::TYPE_HEADER)
        && kind != types::MEDIA_HEARTBEAT
    {
        return Err(MediaError::Invalid(format!(
            "expected a {}, got a {kind}",
            types::MEDIA_HEARTBEAT
        )));
    }
    let beat = v1::MediaHeartbeat::decode(message.payload.as_ref())
        .map_err(|e| MediaError::Invalid(format!("not a MediaHeartbeat: {e}")))?;
    if !crate::bus::is_valid_media_id(&beat.media_id) || beat.interval_ms == 0 {
        return Err(MediaError::Invalid(format!(
            "heartbeat from {:?} every {} ms",
            beat.media_id, beat.interval_ms
        )));
    }
    Ok(beat)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test]
    async fn beats_arrive_with_the_replica_its_datacenter_and_sessions() {
        let bus: Arc<dyn Bus> = Arc::new(bus::InProcessBus::new(bus::InProcessOptions::default()));
        let mut beats = bus.subscribe(subjects::MEDIA_HEARTBEATS).await.unwrap();
        let task = publish_heartbeats(
            bus.clone(),
            "media-a1".into(),
            "dc-a".into(),
            Duration::from_millis(20),
            || 3,
        );
        for _ in 0..2 {
            let message = tokio::time::timeout(Duration::from_secs(2), beats.next())
                .await
                .unwrap()
                .unwrap();
            let beat = decode_heartbeat(&message).unwrap();
            assert_eq!(
                (beat.media_id.as_str(), beat.datacenter.as_str()),
                ("media-a1", "dc-a")
            );
            assert_eq!((beat.interval_ms, beat.sessions), (20, 3));
        }
        task.abort();
    }

    #[test]
    fn a_heartbeat_without_a_usable_id_or_interval_is_refused() {
        let message = |beat: v1::MediaHeartbeat| BusMessage {
            subject: subjects::MEDIA_HEARTBEATS.into(),
            headers: BusHeaders::new(),
            payload: Bytes::from(beat.encode_to_vec()),
            reply_to: None,
        };
        let good = v1::MediaHeartbeat {
            media_id: "m1".into(),
            interval_ms: 1000,
            ..Default::default()
        };
        assert!(decode_heartbeat(&message(good.clone())).is_ok());
        let no_interval = v1::MediaHeartbeat {
            interval_ms: 0,
            ..good.clone()
        };
        assert!(decode_heartbeat(&message(no_interval)).is_err());
        let dotted = v1::MediaHeartbeat {
            media_id: "a.b".into(),
            ..good
        };
        assert!(decode_heartbeat(&message(dotted)).is_err());
    }
}
