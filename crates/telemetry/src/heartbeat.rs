//! Replica liveness on the bus (ADR 0020): media relays publish a `Heartbeat` on
//! [`subjects::MEDIA_HEARTBEATS`], SIP edges on [`subjects::EDGE_HEARTBEATS`], each interval;
//! every call-control replica listens and declares a replica dead after three silent
//! intervals. A dead relay's calls are re-anchored by re-INVITE; requests to phones behind a
//! dead edge wait for the phone's binding through a live one. The heartbeat also says the
//! replica's datacenter.
//!
//! A heartbeat rides NATS (at most once): one lost message is not a death, three are.

use std::sync::Arc;
use std::time::Duration;

use bus::{Bus, BusHeaders, BusMessage};
use bytes::Bytes;
use prost::Message as _;
use proto::subjects::{self, types};
use proto::v1;
use tokio::task::JoinHandle;

/// A message on a heartbeat subject that is not a usable heartbeat.
#[derive(Debug, thiserror::Error)]
#[error("unusable heartbeat: {0}")]
pub struct HeartbeatError(String);

/// Publishes this replica's heartbeat on `subject` every `interval` until the returned task is
/// aborted; `load` tells what it carries at each beat. The first beat goes out at once.
pub fn publish_heartbeats(
    bus: Arc<dyn Bus>,
    subject: &'static str,
    id: String,
    datacenter: String,
    interval: Duration,
    load: impl Fn() -> usize + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let interval_ms = u32::try_from(interval.as_millis()).unwrap_or(u32::MAX);
        loop {
            ticks.tick().await;
            let beat = v1::Heartbeat {
                id: id.clone(),
                datacenter: datacenter.clone(),
                interval_ms,
                load: u32::try_from(load()).unwrap_or(u32::MAX),
            };
            let mut headers = BusHeaders::new();
            headers.insert(subjects::TYPE_HEADER, types::HEARTBEAT);
            if let Err(e) = bus
                .publish(subject, headers, Bytes::from(beat.encode_to_vec()))
                .await
            {
                tracing::debug!(error = %e, "heartbeat not published");
            }
        }
    })
}

/// Decodes a message received on a heartbeat subject.
pub fn decode_heartbeat(message: &BusMessage) -> Result<v1::Heartbeat, HeartbeatError> {
    if let Some(kind) = message.headers.get(subjects::TYPE_HEADER)
        && kind != types::HEARTBEAT
    {
        return Err(HeartbeatError(format!(
            "expected a {}, got a {kind}",
            types::HEARTBEAT
        )));
    }
    let beat = v1::Heartbeat::decode(message.payload.as_ref())
        .map_err(|e| HeartbeatError(format!("not a Heartbeat: {e}")))?;
    if !subjects::is_valid_subject(&beat.id, false)
        || beat.id.contains('.')
        || beat.interval_ms == 0
    {
        return Err(HeartbeatError(format!(
            "from {:?} every {} ms",
            beat.id, beat.interval_ms
        )));
    }
    Ok(beat)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test]
    async fn beats_arrive_with_the_replica_its_datacenter_and_load() {
        let bus: Arc<dyn Bus> = Arc::new(bus::InProcessBus::new(bus::InProcessOptions::default()));
        let mut beats = bus.subscribe(subjects::MEDIA_HEARTBEATS).await.unwrap();
        let task = publish_heartbeats(
            bus.clone(),
            subjects::MEDIA_HEARTBEATS,
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
                (beat.id.as_str(), beat.datacenter.as_str()),
                ("media-a1", "dc-a")
            );
            assert_eq!((beat.interval_ms, beat.load), (20, 3));
        }
        task.abort();
    }

    #[test]
    fn a_heartbeat_without_a_usable_id_or_interval_is_refused() {
        let message = |beat: v1::Heartbeat| BusMessage {
            subject: subjects::MEDIA_HEARTBEATS.into(),
            headers: BusHeaders::new(),
            payload: Bytes::from(beat.encode_to_vec()),
            reply_to: None,
        };
        let good = v1::Heartbeat {
            id: "m1".into(),
            interval_ms: 1000,
            ..Default::default()
        };
        assert!(decode_heartbeat(&message(good.clone())).is_ok());
        let no_interval = v1::Heartbeat {
            interval_ms: 0,
            ..good.clone()
        };
        assert!(decode_heartbeat(&message(no_interval)).is_err());
        let dotted = v1::Heartbeat {
            id: "a.b".into(),
            ..good
        };
        assert!(decode_heartbeat(&message(dotted)).is_err());
    }
}
