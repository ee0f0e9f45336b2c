//! The bus responder: a queue-group member on `calanque.v1.directory.get` answering
//! `GetRequest` (by kind and id, by SIP username, or by directory number) from the in-memory
//! snapshot with a `GetResponse`, or a `BusError`. This is the cached lookup other services
//! (the registrar, call control) use on the call path: no store round trip.

use std::sync::Arc;

use bus::trace::TraceContext;
use bus::{Bus, BusError, BusHeaders, BusMessage};
use bytes::Bytes;
use prost::Message;
use proto::subjects;
use proto::v1;
use tracing::{debug, warn};

use crate::error::ServiceError;
use crate::model::{Entry, EntryKey};
use crate::repository::Repository;

/// Answers a `GetRequest` from the snapshot (also the gRPC `Get`).
pub fn lookup(
    repository: &Repository,
    request: &v1::GetRequest,
) -> Result<v1::GetResponse, ServiceError> {
    let snapshot = repository.ready_snapshot()?;
    let directory = &snapshot.directory;
    let entry = if !request.sip_username.is_empty() {
        directory
            .device_by_sip_username(&request.sip_username)
            .cloned()
            .map(Entry::Device)
            .ok_or_else(|| {
                ServiceError::NotFound(format!(
                    "device with SIP username {:?}",
                    request.sip_username
                ))
            })?
    } else if !request.number.is_empty() {
        directory
            .number_owner(&request.number)
            .and_then(|key| directory.get(key))
            .ok_or_else(|| ServiceError::NotFound(format!("number {:?}", request.number)))?
    } else {
        let kind = super::kind_from_proto(request.kind)?;
        let key = EntryKey::parse(kind, &request.id).map_err(|fault| {
            ServiceError::bad_request(
                "bad_id",
                format!("{:?} is not a valid {kind} key: {fault}", request.id),
            )
        })?;
        directory
            .get(&key)
            .ok_or_else(|| ServiceError::NotFound(key.to_string()))?
    };
    Ok(v1::GetResponse {
        entry: Some(v1::Entry::from(entry)),
        revision: u64::try_from(snapshot.revision).unwrap_or_default(),
    })
}

fn bus_error(error: &ServiceError) -> v1::BusError {
    let code = match error {
        ServiceError::BadRequest { .. } | ServiceError::Invalid { .. } => {
            v1::BusErrorCode::InvalidArgument
        }
        ServiceError::NotFound(_) => v1::BusErrorCode::NotFound,
        ServiceError::Unavailable(_) => v1::BusErrorCode::Unavailable,
        _ => v1::BusErrorCode::Internal,
    };
    v1::BusError {
        code: code as i32,
        message: error.to_string(),
    }
}

/// Subscribes to `calanque.v1.directory.get` in the directory's queue group.
pub async fn subscribe(bus: &Arc<dyn Bus>) -> Result<bus::Subscription, BusError> {
    bus.queue_subscribe(subjects::DIRECTORY_GET, subjects::DIRECTORY_QUEUE_GROUP)
        .await
}

/// Answers requests until the subscription ends. Run it as a task; abort it to stop.
pub async fn serve(repository: Repository, bus: Arc<dyn Bus>, mut subscription: bus::Subscription) {
    while let Some(message) = subscription.next().await {
        answer(&repository, bus.as_ref(), &message).await;
    }
    debug!("directory bus responder stopped");
}

async fn answer(repository: &Repository, bus: &dyn Bus, message: &BusMessage) {
    if message.reply_to.is_none() {
        return;
    }
    let result = match v1::GetRequest::decode(message.payload.as_ref()) {
        Ok(request) => lookup(repository, &request),
        Err(error) => Err(ServiceError::bad_request(
            "bad_request",
            format!("not a calanque.v1.GetRequest: {error}"),
        )),
    };
    let mut headers = BusHeaders::new();
    if let Some(trace) = TraceContext::extract(&message.headers) {
        trace.child().inject(&mut headers);
    }
    let payload = match result {
        Ok(response) => {
            headers.insert(subjects::TYPE_HEADER, subjects::types::GET_RESPONSE);
            response.encode_to_vec()
        }
        Err(error) => {
            headers.insert(subjects::TYPE_HEADER, subjects::types::BUS_ERROR);
            bus_error(&error).encode_to_vec()
        }
    };
    if let Err(error) = bus.reply(message, headers, Bytes::from(payload)).await {
        warn!(%error, "cannot answer a directory get");
    }
}
