//! The bus between the edge and call-control. The edge keeps every server transaction (so
//! retransmissions are absorbed here and never cross the bus); call-control gets the request
//! once, as an [`EdgeRequest`], and answers with [`EdgeResponse`] messages on the edge's own
//! response subject, naming the transaction by the handle the edge gave it.
//!
//! The hand-off is a bus request: call-control's acknowledgement (any reply that is not a
//! `BusError`) says a replica took the call. No reply in time, or no call-control at all, and
//! the edge answers 503 with Retry-After, so the phone can try again (or another edge).

use std::sync::Arc;
use std::time::Duration;

use bus::{Bus, BusHeaders};
use bytes::Bytes;
use prost::Message as _;
use proto::subjects::{self, types};
use proto::v1::{EdgeRequest, EdgeResponse, FlowDelivery};

/// Why call-control did not take a request.
#[derive(Debug, thiserror::Error)]
pub enum HandOffError {
    #[error("call-control unreachable: {0}")]
    Bus(#[from] bus::BusError),
    #[error("call-control refused the request")]
    Refused,
}

/// Sends requests to call-control.
#[derive(Debug, Clone)]
pub struct CoreRouter {
    bus: Arc<dyn Bus>,
    timeout: Duration,
}

fn typed(type_name: &str) -> BusHeaders {
    let mut headers = BusHeaders::new();
    headers.insert(subjects::TYPE_HEADER, type_name);
    headers
}

/// How long one hand-off attempt waits for call-control's acknowledgement.
const HAND_OFF_ATTEMPT: Duration = Duration::from_millis(500);

impl CoreRouter {
    pub fn new(bus: Arc<dyn Bus>, timeout: Duration) -> CoreRouter {
        CoreRouter { bus, timeout }
    }

    /// Hands a request to a call-control replica and waits for its acknowledgement. A hand-off
    /// not acknowledged within [`HAND_OFF_ATTEMPT`] is sent again (the queue group picks a
    /// replica again) until the timeout: a replica across a partition that NATS has not
    /// noticed yet swallows what it is given, and a replica acknowledges at once, so silence
    /// means the message was lost. Call-control drops the copies it already had (by edge and
    /// transaction).
    pub async fn hand_off(&self, request: EdgeRequest) -> Result<(), HandOffError> {
        let payload = Bytes::from(request.encode_to_vec());
        let started = tokio::time::Instant::now();
        loop {
            let left = self.timeout.saturating_sub(started.elapsed());
            let attempt = left.min(HAND_OFF_ATTEMPT);
            match self
                .bus
                .request(
                    subjects::CALL_CONTROL_REQUESTS,
                    typed(types::EDGE_REQUEST),
                    payload.clone(),
                    attempt,
                )
                .await
            {
                Ok(reply) => {
                    if reply.headers.get(subjects::TYPE_HEADER) == Some(types::BUS_ERROR) {
                        return Err(HandOffError::Refused);
                    }
                    return Ok(());
                }
                Err(bus::BusError::Timeout { .. })
                    if started.elapsed() + attempt < self.timeout =>
                {
                    tracing::debug!("hand-off not acknowledged: sending it again");
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Passes on something that needs no answer (the ACK of a 2xx, a CANCEL already answered).
    pub async fn notify(&self, request: EdgeRequest) -> Result<(), HandOffError> {
        self.bus
            .publish(
                subjects::CALL_CONTROL_REQUESTS,
                typed(types::EDGE_REQUEST),
                Bytes::from(request.encode_to_vec()),
            )
            .await?;
        Ok(())
    }

    /// Publishes the result of an `EdgeSend` to call-control.
    pub async fn send_result(
        &self,
        subject: &str,
        result: proto::v1::EdgeSendResult,
    ) -> Result<(), HandOffError> {
        self.bus
            .publish(
                subject,
                typed(types::EDGE_SEND_RESULT),
                Bytes::from(result.encode_to_vec()),
            )
            .await?;
        Ok(())
    }

    /// Asks the edge holding a flow to send a message over it.
    pub async fn deliver_via(
        &self,
        edge_id: &str,
        delivery: FlowDelivery,
    ) -> Result<(), HandOffError> {
        self.bus
            .publish(
                &subjects::edge_deliver(edge_id),
                typed(types::FLOW_DELIVERY),
                Bytes::from(delivery.encode_to_vec()),
            )
            .await?;
        Ok(())
    }
}

/// Decodes a call-control response addressed to this edge.
pub fn decode_response(payload: &[u8]) -> Option<EdgeResponse> {
    EdgeResponse::decode(payload).ok()
}

/// Decodes a request call-control asks this edge to send.
pub fn decode_send(payload: &[u8]) -> Option<proto::v1::EdgeSend> {
    proto::v1::EdgeSend::decode(payload).ok()
}

/// Decodes a flow delivery addressed to this edge.
pub fn decode_delivery(payload: &[u8]) -> Option<FlowDelivery> {
    FlowDelivery::decode(payload).ok()
}
